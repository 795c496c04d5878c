//! The local store's daemons: placement (erasure coding), scrub and gc, each a [`Worker`] run
//! by the one runner in [`crate::local::worker`], in the mount process or on demand from the
//! command line (`run_to_idle`).
//!
//! They take the store's maintenance lock for each unit of work, so they never move the same
//! volume at once; reads and writes go on beside them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::local::disks::ScrubReport;
use crate::local::records::{Layout, VolumeState};
use crate::local::volume::{blob_disk_len, now_nanos, BlobLocation, VOLUME_HEADER_LEN};
use crate::local::worker::{Progress, Step, Worker};
use crate::local::Inner;

fn nanos(d: Duration) -> u64 {
    d.as_nanos().min(u64::MAX as u128) as u64
}

/// Live blob locations by volume.
fn blob_map(inner: &Inner) -> Result<HashMap<u64, Vec<BlobLocation>>> {
    Ok(inner
        .meta
        .blobs_by_volume()?
        .into_iter()
        .map(|(v, b)| (v, b.into_iter().map(|(l, _, _)| l).collect()))
        .collect())
}

// ---------------------------------------------------------------------------------------------
// Placement
// ---------------------------------------------------------------------------------------------

/// Erasure-codes sealed volumes older than `min_age`, one volume per step.
pub struct Placement {
    inner: Arc<Inner>,
    min_age: Duration,
    queue: Vec<u64>,
    blobs: HashMap<u64, Vec<BlobLocation>>,
    placed: u64,
    bytes: u64,
    waiting: u64,
}

impl Placement {
    pub(crate) fn new(inner: Arc<Inner>, min_age: Duration) -> Self {
        Placement {
            inner,
            min_age,
            queue: Vec::new(),
            blobs: HashMap::new(),
            placed: 0,
            bytes: 0,
            waiting: 0,
        }
    }
}

impl Worker for Placement {
    fn name(&self) -> &'static str {
        "placement"
    }

    fn step(&mut self) -> Result<Step> {
        let Some((k, m)) = self.inner.cfg.policy().1 else {
            return Ok(Step::Idle);
        };
        if self.queue.is_empty() {
            let cutoff = now_nanos().saturating_sub(nanos(self.min_age));
            self.queue = self
                .inner
                .disks
                .records()
                .into_iter()
                .filter(|r| {
                    r.state == VolumeState::Sealed
                        && matches!(r.layout, Layout::Replicated { .. })
                        && r.created <= cutoff
                })
                .map(|r| r.id)
                .rev()
                .collect();
            if self.queue.is_empty() {
                return Ok(Step::Idle);
            }
            self.blobs = blob_map(&self.inner)?;
        }
        let Some(id) = self.queue.pop() else {
            return Ok(Step::Idle);
        };
        let _guard = self.inner.maintenance();
        let locs = self.blobs.remove(&id).unwrap_or_default();
        let size = self.inner.disks.record(id).map(|r| r.size).unwrap_or(0);
        if self.inner.disks.place(&self.inner.meta, id, &locs, k, m)? {
            self.placed += 1;
            self.bytes += size;
            tracing::info!(volume = id, "placed volume as {k}+{m}");
        } else {
            self.waiting += 1;
        }
        Ok(if self.queue.is_empty() {
            Step::Idle
        } else {
            Step::Busy
        })
    }

    fn progress(&self) -> Progress {
        let mut p = Progress {
            done: self.placed,
            queue: self.queue.len() as u64,
            note: match self.inner.cfg.policy().1 {
                Some((k, m)) => format!("erasure coding {k}+{m}"),
                None => "no erasure coding configured".into(),
            },
            ..Default::default()
        };
        p.counters.insert("volumes_placed".into(), self.placed);
        p.counters.insert("bytes_placed".into(), self.bytes);
        p.counters
            .insert("volumes_waiting_for_disks".into(), self.waiting);
        p
    }
}

// ---------------------------------------------------------------------------------------------
// Scrub
// ---------------------------------------------------------------------------------------------

/// Totals of a scrub pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScrubTotals {
    pub volumes: u64,
    pub bytes_checked: u64,
    pub bad: u64,
    pub repaired: u64,
    pub unrepairable: u64,
    pub offline: u64,
}

impl ScrubTotals {
    fn add(&mut self, r: ScrubReport) {
        self.volumes += 1;
        self.bytes_checked += r.bytes_checked;
        self.bad += r.bad;
        self.repaired += r.repaired;
        self.unrepairable += r.unrepairable;
        self.offline += r.offline;
    }
}

/// Scrub's persisted checkpoint: where the pass in progress is, and how the last one ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScrubCheckpoint {
    /// ns; 0 = no pass in progress.
    pub pass_started: u64,
    /// The next volume id to verify in this pass.
    pub next_volume: u64,
    pub totals: ScrubTotals,
    pub last_pass_started: u64,
    pub last_pass_finished: u64,
    pub last_pass: ScrubTotals,
}

/// Verifies every copy and shard of every volume, one volume per step; repairs what it finds.
pub struct Scrub {
    inner: Arc<Inner>,
    interval: Duration,
    ckpt: ScrubCheckpoint,
    blobs: Option<HashMap<u64, Vec<BlobLocation>>>,
}

impl Scrub {
    pub(crate) fn new(inner: Arc<Inner>, interval: Duration) -> Result<Self> {
        let ckpt = inner.meta.checkpoint("scrub")?.unwrap_or_default();
        Ok(Scrub {
            inner,
            interval,
            ckpt,
            blobs: None,
        })
    }

    /// Starts a pass now unless one is in progress (then it resumes that one).
    pub(crate) fn start_now(&mut self) {
        if self.ckpt.pass_started == 0 {
            self.ckpt.pass_started = now_nanos();
            self.ckpt.next_volume = 0;
            self.ckpt.totals = ScrubTotals::default();
        }
    }

    pub fn checkpoint(&self) -> &ScrubCheckpoint {
        &self.ckpt
    }
}

impl Worker for Scrub {
    fn name(&self) -> &'static str {
        "scrub"
    }

    fn step(&mut self) -> Result<Step> {
        if self.ckpt.pass_started == 0 {
            let due = self
                .ckpt
                .last_pass_started
                .saturating_add(nanos(self.interval));
            if now_nanos() < due {
                return Ok(Step::Idle);
            }
            self.start_now();
        }
        let blobs = match &mut self.blobs {
            Some(b) => b,
            None => self.blobs.insert(blob_map(&self.inner)?),
        };
        let next = self
            .inner
            .disks
            .records()
            .into_iter()
            .find(|r| r.id >= self.ckpt.next_volume);
        let Some(rec) = next else {
            let c = &mut self.ckpt;
            c.last_pass_started = c.pass_started;
            c.last_pass_finished = now_nanos();
            c.last_pass = c.totals;
            c.pass_started = 0;
            self.blobs = None;
            self.inner.meta.save_checkpoint("scrub", &self.ckpt)?;
            tracing::info!(totals = ?self.ckpt.last_pass, "scrub pass finished");
            return Ok(Step::Idle);
        };
        let locs = blobs.remove(&rec.id).unwrap_or_default();
        let report = {
            let _guard = self.inner.maintenance();
            self.inner.disks.scrub(&self.inner.meta, rec.id, &locs)?
        };
        if report.bad > 0 {
            tracing::warn!(volume = rec.id, ?report, "scrub found damage");
        }
        self.ckpt.totals.add(report);
        self.ckpt.next_volume = rec.id + 1;
        self.inner.meta.save_checkpoint("scrub", &self.ckpt)?;
        Ok(Step::Busy)
    }

    fn progress(&self) -> Progress {
        let t = if self.ckpt.pass_started != 0 {
            self.ckpt.totals
        } else {
            self.ckpt.last_pass
        };
        let total = self.inner.disks.records().len() as u64;
        let mut p = Progress {
            done: t.volumes,
            total,
            note: if self.ckpt.pass_started != 0 {
                "pass in progress".into()
            } else if self.ckpt.last_pass_finished != 0 {
                "last pass finished".into()
            } else {
                "no pass yet".into()
            },
            ..Default::default()
        };
        p.counters.insert("bytes_checked".into(), t.bytes_checked);
        p.counters.insert("bad".into(), t.bad);
        p.counters.insert("repaired".into(), t.repaired);
        p.counters.insert("unrepairable".into(), t.unrepairable);
        p.counters.insert("offline".into(), t.offline);
        p.counters
            .insert("last_pass_finished".into(), self.ckpt.last_pass_finished);
        p
    }
}

// ---------------------------------------------------------------------------------------------
// GC
// ---------------------------------------------------------------------------------------------

/// What gc reclaims and when.
#[derive(Debug, Clone, PartialEq)]
pub struct GcOptions {
    /// A blob nobody references is reclaimed this long after its last reference went (so reads
    /// that already resolved it finish).
    pub delay: Duration,
    /// Compact a sealed volume when at least this share of it is garbage.
    pub garbage_ratio: f64,
    /// Abort multipart uploads older than this.
    pub upload_ttl: Duration,
    /// Delete files no volume record names once they are this old.
    pub orphan_age: Duration,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            delay: Duration::from_secs(600),
            garbage_ratio: 0.5,
            upload_ttl: Duration::from_secs(24 * 3600),
            orphan_age: Duration::from_secs(600),
        }
    }
}

/// Reclaims unreferenced blobs, compacts volumes with much garbage, aborts stale uploads and
/// removes orphaned files. Phases run in order; compaction does one volume per step.
pub struct Gc {
    inner: Arc<Inner>,
    opts: GcOptions,
    phase: u8,
    counters: std::collections::BTreeMap<String, u64>,
}

impl Gc {
    pub(crate) fn new(inner: Arc<Inner>, opts: GcOptions) -> Self {
        Gc {
            inner,
            opts,
            phase: 0,
            counters: Default::default(),
        }
    }

    fn count(&mut self, name: &str, n: u64) {
        *self.counters.entry(name.into()).or_insert(0) += n;
    }

    /// The sealed volume with the most garbage above the threshold, and its live blobs.
    fn pick_volume(&self) -> Result<Option<(u64, Vec<BlobLocation>)>> {
        let blobs = blob_map(&self.inner)?;
        let mut best: Option<(f64, u64)> = None;
        for r in self.inner.disks.records() {
            if r.state != VolumeState::Sealed || r.size <= VOLUME_HEADER_LEN {
                continue;
            }
            let live: u64 = VOLUME_HEADER_LEN
                + blobs
                    .get(&r.id)
                    .map(|b| b.iter().map(|l| blob_disk_len(l.len, l.block_size)).sum())
                    .unwrap_or(0);
            let garbage = 1.0 - live as f64 / r.size as f64;
            if garbage >= self.opts.garbage_ratio && best.map(|(g, _)| garbage > g).unwrap_or(true)
            {
                best = Some((garbage, r.id));
            }
        }
        Ok(best.map(|(_, id)| {
            let locs = blobs.get(&id).cloned().unwrap_or_default();
            (id, locs)
        }))
    }

    /// Copies the live blobs of volume `id` into the active volume, switches their records in
    /// one durable batch, then deletes the old volume.
    fn compact(&mut self, id: u64, locs: &[BlobLocation]) -> Result<()> {
        let inner = &self.inner;
        let mut moves = Vec::with_capacity(locs.len());
        let mut moved = 0u64;
        for loc in locs {
            let region = match inner.disks.read_region(loc) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(volume = id, blob = loc.blob, error = %e, "cannot compact: a live blob does not verify");
                    self.count("compactions_skipped", 1);
                    return Ok(());
                }
            };
            let (vol, files, off) = inner.disks.reserve(&inner.meta, region.len() as u64)?;
            for f in &files {
                std::os::unix::fs::FileExt::write_all_at(&**f, &region, off).map_err(|e| {
                    crate::StoreError::io(format!("compacting into volume {vol:016x}"), e)
                })?;
            }
            moved += region.len() as u64;
            moves.push((loc.blob, id, vol, off));
        }
        // The copies must be durable before the records point at them.
        inner.disks.sync_dirty()?;
        inner.meta.relocate_blobs(&moves)?;
        let freed = inner.disks.delete_volume(&inner.meta, id)?;
        self.count("volumes_compacted", 1);
        self.count("bytes_moved", moved);
        self.count("bytes_freed", freed);
        Ok(())
    }
}

impl Worker for Gc {
    fn name(&self) -> &'static str {
        "gc"
    }

    fn step(&mut self) -> Result<Step> {
        let inner = self.inner.clone();
        let _guard = inner.maintenance();
        match self.phase {
            0 => {
                let cutoff = now_nanos().saturating_sub(nanos(self.opts.delay));
                let (n, bytes) = inner.meta.reclaim_blobs(cutoff)?;
                self.count("blobs_reclaimed", n);
                self.count("blob_bytes_reclaimed", bytes);
                self.phase = 1;
                Ok(Step::Busy)
            }
            1 => {
                match self.pick_volume()? {
                    Some((id, locs)) => self.compact(id, &locs)?,
                    None => self.phase = 2,
                }
                Ok(Step::Busy)
            }
            2 => {
                let cutoff = now_nanos().saturating_sub(nanos(self.opts.upload_ttl));
                for u in inner.meta.uploads("")? {
                    let started = u
                        .initiated
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(nanos)
                        .unwrap_or(0);
                    if started <= cutoff {
                        match inner.meta.commit_abort(&u.key, &u.upload_id) {
                            Ok(()) => self.count("uploads_aborted", 1),
                            Err(e) => {
                                tracing::warn!(upload = %u.upload_id, error = %e, "could not abort a stale upload")
                            }
                        }
                    }
                }
                self.phase = 3;
                Ok(Step::Busy)
            }
            _ => {
                for p in inner.disks.orphan_files(self.opts.orphan_age) {
                    let size = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
                    if std::fs::remove_file(&p).is_ok() {
                        tracing::info!(file = %p.display(), "removed an orphaned file");
                        self.count("orphan_files_removed", 1);
                        self.count("bytes_freed", size);
                    }
                }
                self.phase = 0;
                Ok(Step::Idle)
            }
        }
    }

    fn progress(&self) -> Progress {
        Progress {
            done: self.phase as u64,
            total: 4,
            counters: self.counters.clone(),
            note: [
                "reclaiming blobs",
                "compacting volumes",
                "aborting stale uploads",
                "removing orphans",
            ]
            .get(self.phase as usize)
            .unwrap_or(&"")
            .to_string(),
            ..Default::default()
        }
    }
}
