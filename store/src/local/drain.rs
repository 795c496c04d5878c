//! Drain: moving every replica and shard off a disk that is being removed, onto disks the
//! volume does not use yet. Each member is rebuilt on its new disk by its layout (a replica
//! from verified blob regions, a shard from itself or by reconstruction), the new layout is
//! recorded durably, and only then is the old file deleted.

use std::collections::HashMap;

use crate::error::{Result, StoreError};
use crate::local::disks::{Disks, VolumeCatalog};
use crate::local::volume::BlobLocation;

impl Disks {
    /// Moves every member on disk `d` elsewhere. `blobs` are the live blobs by volume.
    /// Returns how many replicas and shards were moved.
    pub fn drain(
        &self,
        cat: &dyn VolumeCatalog,
        d: u32,
        blobs: &HashMap<u64, Vec<BlobLocation>>,
    ) -> Result<u64> {
        let mut moved = 0;
        for rec in self.records() {
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
                let new = crate::local::records::VolumeRecord {
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
            }
        }
        Ok(moved)
    }
}
