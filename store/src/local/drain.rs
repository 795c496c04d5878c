//! Drain: moving every replica and shard off a disk that is being removed, onto disks the
//! volume does not use yet. Each member is rebuilt on its new disk by its layout (a replica
//! from verified blob regions, a shard from itself or by reconstruction), the new layout is
//! recorded durably, and only then is the old file deleted.

use std::collections::HashMap;

use crate::error::{Result, StoreError};
use crate::local::disks::{Disks, VolumeCatalog};
use crate::local::records::{Layout, VolumeRecord};
use crate::local::volume::BlobLocation;
use crate::local::worker::RunReport;

/// The bytes one member (a replica or a shard) of a volume holds.
fn member_len(rec: &VolumeRecord) -> u64 {
    match &rec.layout {
        Layout::Replicated { .. } => rec.size,
        Layout::Erasure { shard_len, .. } => *shard_len,
        Layout::Remote(_) => 0,
    }
}

impl Disks {
    /// Moves every member on disk `d` elsewhere. `blobs` are the live blobs by volume.
    /// Returns how many replicas and shards were moved. `on_progress` hears after each member
    /// what is done and what there is to do in all.
    pub fn drain(
        &self,
        cat: &dyn VolumeCatalog,
        d: u32,
        blobs: &HashMap<u64, Vec<BlobLocation>>,
        on_progress: &mut dyn FnMut(&RunReport),
    ) -> Result<u64> {
        let mut moved = 0;
        let todo: Vec<_> = self
            .records()
            .into_iter()
            .filter(|rec| self.layout(rec).disks().contains(&d))
            .collect();
        let mut run = RunReport::start(0, 0);
        for rec in &todo {
            let members = self.layout(rec).disks().iter().filter(|x| **x == d).count() as u64;
            run.items_total += members;
            run.bytes_total += members * member_len(rec);
        }
        on_progress(&run);
        for rec in todo {
            let positions: Vec<usize> = self
                .layout(&rec)
                .disks()
                .iter()
                .enumerate()
                .filter(|(_, x)| **x == d)
                .map(|(i, _)| i)
                .collect();
            for pos in positions {
                let cur = self.record(rec.id).unwrap_or_else(|| rec.clone());
                let layout = self.layout(&cur);
                let taken = layout.disks();
                let Some(target) = self.in_service().into_iter().find(|x| !taken.contains(x))
                else {
                    return Err(StoreError::InvalidArgument(format!(
                        "cannot move volume {:016x} off disk {d}: every other online disk already \
                         holds part of it (add a disk first)",
                        rec.id
                    )));
                };
                let locs = blobs.get(&rec.id).map(|v| v.as_slice()).unwrap_or(&[]);
                layout.rebuild_member(pos, target, locs)?;
                let new = VolumeRecord {
                    layout: layout.moved(pos, target),
                    ..cur.clone()
                };
                let old_file = self.file_path(rec.id, d, layout.kind(pos));
                drop(layout);
                cat.save_volume_durably(&new)?;
                self.set_record(new);
                self.forget_handles(rec.id);
                let _ = std::fs::remove_file(old_file);
                moved += 1;
                run.items_done += 1;
                run.bytes_done += member_len(&rec);
                run.count("members_moved", 1);
                on_progress(&run);
            }
        }
        Ok(moved)
    }
}
