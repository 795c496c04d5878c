//! Placement: erasure-coding sealed volumes. [`Disks::place`] turns one replicated volume into
//! K data + M parity shards on K+M distinct disks, records the new layout durably and only
//! then deletes the replicas; the [`Placement`] worker finds sealed volumes old enough and
//! places one per step.

use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Result, StoreError};
use crate::local::daemons::{live_blobs, nanos};
use crate::local::disks::{Disks, FileKind, VolumeCatalog};
use crate::local::layout::ErasureCoded;
use crate::local::records::{Layout, VolumeRecord, VolumeState};
use crate::local::volume::{
    blob_disk_len, now_nanos, volume_header, BlobLocation, VOLUME_HEADER_LEN,
};
use crate::local::worker::{Progress, RunReport, Step, Worker};
use crate::local::Inner;

impl Disks {
    /// Erasure-codes a sealed, replicated volume into K+M shards on distinct disks, records the
    /// new layout durably, then deletes the replicas. `blobs` are the live blobs in it: only
    /// their bytes (verified) are carried over; the rest of the volume becomes zeros.
    /// Returns false when the volume is not eligible (open, already placed, too few disks).
    pub fn place(
        &self,
        cat: &dyn VolumeCatalog,
        id: u64,
        blobs: &[BlobLocation],
        k: u8,
        m: u8,
    ) -> Result<bool> {
        let Some(rec) = self.record(id) else {
            return Ok(false);
        };
        let Layout::Replicated {
            disks: replica_disks,
        } = rec.layout.clone()
        else {
            return Ok(false);
        };
        if rec.state != VolumeState::Sealed {
            return Ok(false);
        }
        let scheme = self.scheme(k, m)?;
        let targets = self.pick(k as usize + m as usize);
        if targets.len() < k as usize + m as usize {
            tracing::warn!(
                volume = id,
                "not enough online disks to place volume {k}+{m}"
            );
            return Ok(false);
        }
        let size = rec.size.max(VOLUME_HEADER_LEN);
        let shard_len = scheme.shard_len(size);
        let mut image = vec![0u8; (shard_len * k as u64) as usize];
        image[..VOLUME_HEADER_LEN as usize].copy_from_slice(&volume_header(id, rec.created));
        for loc in blobs {
            let at = loc.offset as usize;
            match self.read_region(loc) {
                Ok(region) if at + region.len() <= image.len() => {
                    image[at..at + region.len()].copy_from_slice(&region)
                }
                Ok(_) => {
                    return Err(StoreError::Corrupt {
                        what: format!("blob {} lies outside volume {id:016x}", loc.blob),
                    })
                }
                Err(e) => {
                    // Every copy is bad: keep the best bytes we have so reads still report the
                    // loss (the blob checksums stay), never invent data.
                    tracing::error!(volume = id, blob = loc.blob, error = %e, "placing a blob no copy of which verifies");
                    let len = blob_disk_len(loc.len, loc.block_size) as usize;
                    if let Some(f) = replica_disks
                        .iter()
                        .find_map(|d| self.file(id, *d, FileKind::Replica).ok())
                    {
                        if at + len <= image.len() {
                            let _ = f.read_exact_at(&mut image[at..at + len], loc.offset);
                        }
                    }
                }
            }
        }
        let mut parity = vec![vec![0u8; shard_len as usize]; m as usize];
        {
            let data: Vec<&[u8]> = image.chunks(shard_len as usize).collect();
            let mut p: Vec<&mut [u8]> = parity.iter_mut().map(|v| v.as_mut_slice()).collect();
            scheme.encode(&data, &mut p)?;
        }
        let placed = VolumeRecord {
            layout: Layout::Erasure {
                k,
                m,
                shard_len,
                disks: targets.clone(),
            },
            verified_at: now_nanos(),
            ..rec
        };
        let shards = ErasureCoded::new(self, &placed, k, m, shard_len, &targets);
        let data_shards = image.chunks(shard_len as usize);
        for (i, data) in data_shards
            .chain(parity.iter().map(Vec::as_slice))
            .enumerate()
        {
            shards.write_shard(i, targets[i], data)?;
        }
        // Only once the new layout is durable may the replicas go.
        cat.save_volume_durably(&placed)?;
        self.set_record(placed);
        self.forget_handles(id);
        for d in replica_disks {
            let p = self.file_path(id, d, FileKind::Replica);
            if let Err(e) = std::fs::remove_file(&p) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(file = %p.display(), error = %e, "could not remove a placed replica");
                }
            }
        }
        Ok(true)
    }
}

/// The checkpoint name under which placement keeps its last finished run.
const LAST_RUN: &str = "placement-last-run";

/// Erasure-codes sealed volumes older than `min_age`, one volume per step. A run is one batch:
/// from the moment it finds volumes to place until its queue is empty.
pub struct Placement {
    inner: Arc<Inner>,
    min_age: Duration,
    queue: Vec<u64>,
    blobs: HashMap<u64, Vec<BlobLocation>>,
    run: Option<RunReport>,
    last: Option<RunReport>,
}

impl Placement {
    pub(crate) fn new(inner: Arc<Inner>, min_age: Duration) -> Self {
        let last = load_last(&inner, LAST_RUN);
        Placement {
            inner,
            min_age,
            queue: Vec::new(),
            blobs: HashMap::new(),
            run: None,
            last,
        }
    }

    /// Ends the current run: it becomes the last one, persisted.
    fn finish_run(&mut self) -> Result<()> {
        if let Some(mut run) = self.run.take() {
            run.finish();
            self.inner.meta.save_checkpoint(LAST_RUN, &run)?;
            self.last = Some(run);
        }
        Ok(())
    }
}

/// A daemon's last run as persisted under `name` (none when unreadable: it is only a report).
pub(crate) fn load_last(inner: &Inner, name: &str) -> Option<RunReport> {
    match inner.meta.checkpoint::<RunReport>(name) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(checkpoint = name, error = %e, "cannot read a daemon's last run");
            None
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
            let ready: Vec<(u64, u64)> = self
                .inner
                .disks
                .records()
                .into_iter()
                .filter(|r| {
                    r.state == VolumeState::Sealed
                        && matches!(r.layout, Layout::Replicated { .. })
                        && r.created <= cutoff
                })
                .map(|r| (r.id, r.size))
                .collect();
            if ready.is_empty() {
                return Ok(Step::Idle);
            }
            let bytes: u64 = ready.iter().map(|(_, s)| s).sum();
            self.run = Some(RunReport::start(ready.len() as u64, bytes));
            self.queue = ready.into_iter().map(|(id, _)| id).rev().collect();
            self.blobs = live_blobs(&self.inner)?;
        }
        let Some(id) = self.queue.pop() else {
            return Ok(Step::Idle);
        };
        let placed = {
            let _guard = self.inner.maintenance();
            let locs = self.blobs.remove(&id).unwrap_or_default();
            let size = self.inner.disks.record(id).map(|r| r.size).unwrap_or(0);
            let placed = self.inner.disks.place(&self.inner.meta, id, &locs, k, m)?;
            if let Some(run) = &mut self.run {
                run.items_done += 1;
                run.bytes_done += size;
                if placed {
                    run.count("volumes_placed", 1);
                    run.count("bytes_placed", size);
                }
            }
            placed
        };
        if placed {
            tracing::info!(volume = id, "placed volume as {k}+{m}");
        } else if let Some(run) = &mut self.run {
            // Not eligible (already placed by someone else, or too few disks online).
            if self.inner.disks.record(id).is_some_and(|r| {
                r.state == VolumeState::Sealed && matches!(r.layout, Layout::Replicated { .. })
            }) {
                run.count("volumes_waiting_for_disks", 1);
            }
        }
        if self.queue.is_empty() {
            self.finish_run()?;
            return Ok(Step::Idle);
        }
        Ok(Step::Busy)
    }

    fn progress(&self) -> Progress {
        let run = self.run.as_ref();
        let mut p = Progress {
            done: run.map_or(0, |r| r.items_done),
            total: run.map_or(0, |r| r.items_total),
            queue: self.queue.len() as u64,
            note: match self.inner.cfg.policy().1 {
                Some((k, m)) if run.is_some() => format!("erasure coding {k}+{m}: placing"),
                Some((k, m)) => format!("erasure coding {k}+{m}"),
                None => "no erasure coding configured".into(),
            },
            current: self.run.clone(),
            last: self.last.clone(),
            ..Default::default()
        };
        // The figures of the current run, or else of the last one.
        if let Some(r) = run.or(self.last.as_ref()) {
            p.counters = r.counters.clone();
        }
        for c in [
            "volumes_placed",
            "bytes_placed",
            "volumes_waiting_for_disks",
        ] {
            p.counters.entry(c.into()).or_insert(0);
        }
        p
    }

    fn on_resume(&mut self) {
        // A `place --now` may have placed what was queued; look again.
        self.queue.clear();
        self.blobs.clear();
        self.run = None;
        self.last = load_last(&self.inner, LAST_RUN);
    }
}
