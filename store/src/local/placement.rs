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
use crate::local::worker::{Progress, Step, Worker};
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
            self.blobs = live_blobs(&self.inner)?;
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
