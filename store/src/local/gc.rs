//! Garbage collection: expires versions by the retention policy (see [`super::retention`]),
//! reclaims blobs nobody references (after a safety delay), compacts sealed volumes that are
//! mostly garbage, aborts stale multipart uploads and removes files no volume record names.
//! The [`Gc`] worker runs these phases in order; the retention pass does a batch of keys per
//! step, compaction one volume per step. Tiered volumes take part through tier/gc.rs: one that
//! no blob is left in has its object deleted, one with much garbage is compacted in the bucket.

use std::collections::HashSet;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::error::{Result, StoreError};
use crate::local::daemons::{live_blobs, nanos};
use crate::local::placement::load_last;
use crate::local::records::{Layout, VolumeState};
use crate::local::retention::RetentionPass;
use crate::local::tier::gc as tier_gc;
use crate::local::tier::Tier;
use crate::local::volume::{blob_disk_len, now_nanos, BlobLocation, VOLUME_HEADER_LEN};
use crate::local::worker::{Progress, RunReport, Step, Worker};
use crate::local::Inner;

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
    /// A round runs a retention pass when the last one finished at least this long ago
    /// (`gc --now` runs one every time).
    pub retention_interval: Duration,
    /// Apply the retention policy as at this moment instead of the clock's now (to see what
    /// the policy does later, and in tests).
    pub now: Option<SystemTime>,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            delay: Duration::from_secs(600),
            garbage_ratio: 0.5,
            upload_ttl: Duration::from_secs(24 * 3600),
            orphan_age: Duration::from_secs(600),
            retention_interval: Duration::from_secs(3600),
            now: None,
        }
    }
}

/// Expires versions, reclaims unreferenced blobs, compacts volumes with much garbage, aborts
/// stale uploads and removes orphaned files. Phases run in order; the retention pass does a
/// batch of keys per step, compaction one volume per step.
///
/// A run is one round of the five phases; its figures are reported while it runs and, once it
/// has finished, kept (persisted) as the last run.
pub struct Gc {
    inner: Arc<Inner>,
    opts: GcOptions,
    phase: u8,
    run: Option<RunReport>,
    last: Option<RunReport>,
    retention: Option<RetentionPass>,
    /// Run a retention pass this round whatever `retention_interval` says.
    force_retention: bool,
    /// Volumes whose compaction was skipped this round (a live blob that does not verify).
    skipped: HashSet<u64>,
    /// Whether remote work may go on this round: `None` until a remote gc step a crash left
    /// was resolved, `Some(false)` once the remote failed.
    remote_ready: Option<bool>,
}

/// The checkpoint name under which gc keeps its last finished run.
const LAST_RUN: &str = "gc-last-run";

/// The phases, in order, as status shows them.
const PHASES: [&str; 5] = [
    "expiring versions",
    "reclaiming blobs",
    "compacting volumes",
    "aborting stale uploads",
    "removing orphans",
];

impl Gc {
    pub(crate) fn new(inner: Arc<Inner>, opts: GcOptions) -> Self {
        let last = load_last(&inner, LAST_RUN);
        Gc {
            inner,
            opts,
            phase: 0,
            run: None,
            last,
            retention: None,
            force_retention: false,
            skipped: HashSet::new(),
            remote_ready: None,
        }
    }

    /// Makes this worker's next round run a retention pass (`gc --now`).
    pub(crate) fn force_retention(&mut self) {
        self.force_retention = true;
    }

    /// One batch of the retention pass (starting one when due); whether the pass is over for
    /// this round.
    fn retention_step(&mut self, inner: &Inner) -> Result<bool> {
        if self.retention.is_none() {
            self.retention = Some(RetentionPass::load(&inner.meta)?);
        }
        let now = self.opts.now.unwrap_or_else(SystemTime::now);
        let interval = self.opts.retention_interval;
        let force = std::mem::take(&mut self.force_retention);
        let Some(pass) = self.retention.as_mut() else {
            return Ok(true);
        };
        if !pass.active() {
            if !(force || pass.due(interval, now)) {
                return Ok(true);
            }
            pass.start(&inner.meta, now)?;
        }
        let batch = {
            // No snapshot or policy changes while the batch decides and expires.
            let _history = inner.history.pass();
            pass.step(&inner.meta)?
        };
        self.count("retention_keys_scanned", batch.keys);
        self.count("versions_expired", batch.versions_expired);
        self.count("version_bytes_expired", batch.bytes_expired);
        Ok(batch.done)
    }

    fn count(&mut self, name: &str, n: u64) {
        if let Some(run) = &mut self.run {
            run.count(name, n);
            if name == "bytes_freed" {
                run.bytes_done += n;
            }
        }
    }

    /// Whether tiered volumes may be collected now: the store has a tier and what a crash left
    /// of an earlier remote step is resolved.
    fn remote_ready(&mut self) -> bool {
        if let Some(r) = self.remote_ready {
            return r;
        }
        let ready = match self.inner.disks.tier() {
            None => false,
            Some(tier) => match tier_gc::resolve(&self.inner, &tier) {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(error = %e, "remote gc postponed: the remote tier fails");
                    false
                }
            },
        };
        self.remote_ready = Some(ready);
        ready
    }

    /// The sealed volume with the most garbage above the threshold, and its live blobs.
    fn pick_volume(&mut self) -> Result<Option<(u64, Vec<BlobLocation>)>> {
        let blobs = live_blobs(&self.inner)?;
        let remote = self.remote_ready();
        let mut best: Option<(f64, u64)> = None;
        for r in self.inner.disks.records() {
            // Tiered volumes only while the remote answers (tier/gc.rs).
            if r.state != VolumeState::Sealed
                || r.size <= VOLUME_HEADER_LEN
                || (matches!(r.layout, Layout::Remote(_)) && !remote)
                || self.skipped.contains(&r.id)
            {
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

    /// Deletes or compacts tiered volume `id` (tier/gc.rs). A remote failure ends remote work
    /// for this round; what it left is resolved at the next.
    fn collect_remote(&mut self, id: u64, locs: &[BlobLocation]) -> Result<()> {
        let Some(tier) = self.inner.disks.tier() else {
            self.skipped.insert(id);
            return Ok(());
        };
        let done = if locs.is_empty() {
            self.delete_remote(&tier, id)
        } else {
            tier_gc::compact_volume(&self.inner, &tier, id, locs).map(|c| match c {
                Some(c) => {
                    self.count("remote_volumes_compacted", 1);
                    self.count("remote_bytes_moved", c.moved);
                    self.count("remote_bytes_freed", c.freed);
                }
                None => {
                    self.skipped.insert(id);
                    self.count("compactions_skipped", 1);
                }
            })
        };
        if let Err(e) = done {
            tracing::warn!(volume = id, error = %e, "remote gc stopped for this round");
            self.skipped.insert(id);
            self.remote_ready = Some(false);
        }
        Ok(())
    }

    /// Deletes tiered volume `id`, which has no blob left, with up to the tier's `jobs` - 1
    /// others like it, their DELETEs in parallel (tier/gc.rs).
    fn delete_remote(&mut self, tier: &Tier, id: u64) -> Result<()> {
        let live = live_blobs(&self.inner)?;
        let mut ids = vec![id];
        for r in self.inner.disks.records() {
            if ids.len() >= tier.record.jobs() {
                break;
            }
            if r.id != id
                && r.state == VolumeState::Sealed
                && r.size > VOLUME_HEADER_LEN
                && matches!(r.layout, Layout::Remote(_))
                && !self.skipped.contains(&r.id)
                && live.get(&r.id).is_none_or(|b| b.is_empty())
            {
                ids.push(r.id);
            }
        }
        let mut failed = None;
        for (_, r) in tier_gc::delete_volumes(&self.inner, tier, &ids)? {
            match r {
                Ok(freed) if freed > 0 => {
                    self.count("remote_volumes_deleted", 1);
                    self.count("remote_bytes_freed", freed);
                }
                Ok(_) => {}
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// Copies the live blobs of volume `id` into a new volume of their size (which inherits
    /// `id`'s lineage, so no per-prefix rollup changes), switches their records in one
    /// durable batch, then deletes the old volume.
    fn compact(&mut self, id: u64, locs: &[BlobLocation]) -> Result<()> {
        if matches!(
            self.inner.disks.record(id).map(|r| r.layout),
            Some(Layout::Remote(_))
        ) {
            return self.collect_remote(id, locs);
        }
        let inner = self.inner.clone();
        if !locs.is_empty() {
            let size = VOLUME_HEADER_LEN
                + locs
                    .iter()
                    .map(|l| blob_disk_len(l.len, l.block_size))
                    .sum::<u64>();
            let (vol, files) = inner.disks.create_sealed_volume(&inner.meta, size)?;
            let moves = match self.copy_live(id, locs, vol, &files) {
                Ok(Some(moves)) => moves,
                done => {
                    // Nothing points at the new volume: it goes again.
                    if let Err(e) = inner.disks.delete_volume(&inner.meta, vol) {
                        tracing::warn!(volume = vol, error = %e, "cannot remove an unused compaction volume; gc removes it later");
                    }
                    return done.map(|_| ());
                }
            };
            inner.meta.relocate_blobs(id, vol, &moves)?;
            self.count("bytes_moved", size - VOLUME_HEADER_LEN);
        }
        let freed = inner.disks.delete_volume(&inner.meta, id)?;
        self.count("volumes_compacted", 1);
        self.count("bytes_freed", freed);
        Ok(())
    }

    /// [`copy_regions`], counting a volume whose live blob does not verify as skipped.
    fn copy_live(
        &mut self,
        id: u64,
        locs: &[BlobLocation],
        vol: u64,
        files: &[Arc<std::fs::File>],
    ) -> Result<Option<Vec<(u64, u64)>>> {
        let copied = copy_regions(&self.inner, id, locs, vol, files)?;
        if copied.is_none() {
            self.skipped.insert(id);
            self.count("compactions_skipped", 1);
        }
        Ok(copied)
    }
}

/// Writes the blob regions `locs` of volume `id` one after the other into the new volume `vol`
/// (its replica `files`, from just past its header) and makes them durable: their (blob,
/// offset in `vol`), or None when one does not verify (logged; the caller gives up, leaving
/// the volume for repair). Shared by compaction and the tier's repack.
pub(crate) fn copy_regions(
    inner: &Inner,
    id: u64,
    locs: &[BlobLocation],
    vol: u64,
    files: &[Arc<std::fs::File>],
) -> Result<Option<Vec<(u64, u64)>>> {
    let mut moves = Vec::with_capacity(locs.len());
    let mut off = VOLUME_HEADER_LEN;
    for loc in locs {
        let want = blob_disk_len(loc.len, loc.block_size);
        let region = match inner.disks.read_region(loc) {
            Ok(r) if r.len() as u64 == want => r,
            Ok(r) => {
                return Err(StoreError::Corrupt {
                    what: format!(
                        "blob {} of volume {id:016x} reads as {} bytes, not {want}",
                        loc.blob,
                        r.len()
                    ),
                })
            }
            Err(e) => {
                tracing::error!(volume = id, blob = loc.blob, error = %e, "cannot copy a blob that does not verify");
                return Ok(None);
            }
        };
        for f in files {
            f.write_all_at(&region, off)
                .map_err(|e| StoreError::io(format!("copying into volume {vol:016x}"), e))?;
        }
        moves.push((loc.blob, off));
        off += region.len() as u64;
    }
    // The copies must be durable before the records point at them.
    for f in files {
        f.sync_data()
            .map_err(|e| StoreError::io(format!("syncing volume {vol:016x}"), e))?;
    }
    Ok(Some(moves))
}

impl Worker for Gc {
    fn name(&self) -> &'static str {
        "gc"
    }

    fn step(&mut self) -> Result<Step> {
        let inner = self.inner.clone();
        let _guard = inner.maintenance();
        if self.run.is_none() {
            self.run = Some(RunReport::start(PHASES.len() as u64, 0));
        }
        let step = self.phase_step(&inner)?;
        if let Some(run) = &mut self.run {
            run.items_done = u64::from(self.phase);
        }
        if step == Step::Idle {
            if let Some(mut run) = self.run.take() {
                run.items_done = run.items_total;
                run.finish();
                self.inner.meta.save_checkpoint(LAST_RUN, &run)?;
                self.last = Some(run);
            }
        }
        Ok(step)
    }

    fn progress(&self) -> Progress {
        let run = self.run.as_ref();
        Progress {
            done: run.map_or(0, |_| u64::from(self.phase)),
            total: PHASES.len() as u64,
            counters: run
                .or(self.last.as_ref())
                .map(|r| r.counters.clone())
                .unwrap_or_default(),
            note: match run {
                Some(_) => PHASES.get(self.phase as usize).unwrap_or(&"").to_string(),
                None => "waiting for the next round".to_string(),
            },
            current: self.run.clone(),
            last: self.last.clone(),
            ..Default::default()
        }
    }

    fn on_resume(&mut self) {
        // A `gc --now` in this process may have run a round meanwhile.
        self.last = load_last(&self.inner, LAST_RUN);
        // ... and moved the retention pass on: read its position again.
        self.retention = None;
    }
}

impl Gc {
    /// One unit of the current phase.
    fn phase_step(&mut self, inner: &Inner) -> Result<Step> {
        match self.phase {
            0 => {
                if self.retention_step(inner)? {
                    self.phase = 1;
                }
                Ok(Step::Busy)
            }
            1 => {
                let cutoff = now_nanos().saturating_sub(nanos(self.opts.delay));
                let (n, bytes) = inner.meta.reclaim_blobs(cutoff)?;
                self.count("blobs_reclaimed", n);
                self.count("blob_bytes_reclaimed", bytes);
                self.phase = 2;
                Ok(Step::Busy)
            }
            2 => {
                match self.pick_volume()? {
                    Some((id, locs)) => self.compact(id, &locs)?,
                    None => {
                        self.skipped.clear();
                        self.remote_ready = None;
                        self.phase = 3
                    }
                }
                Ok(Step::Busy)
            }
            3 => {
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
                self.phase = 4;
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
}
