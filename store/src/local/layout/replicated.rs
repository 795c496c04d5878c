//! The replicated layout: the volume is a whole file on each of R disks (`<id>.vol`). Reads
//! take the first copy that verifies; scrub checks every live blob in every copy and rewrites
//! bad regions from a good copy, and rebuilds a missing copy from verified blob regions.

use std::fs::{File, OpenOptions};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use crate::error::{Result, StoreError};
use crate::local::disks::{Disks, FileKind};
use crate::local::layout::VolumeLayout;
use crate::local::records::{Layout, VolumeRecord};
use crate::local::scrub::ScrubReport;
use crate::local::volume::{self, blob_disk_len, volume_header, BlobLocation};

/// A replicated volume.
pub(crate) struct Replicated<'a> {
    pool: &'a Disks,
    rec: &'a VolumeRecord,
    disks: &'a [u32],
}

impl<'a> Replicated<'a> {
    pub(crate) fn new(pool: &'a Disks, rec: &'a VolumeRecord, disks: &'a [u32]) -> Self {
        Replicated { pool, rec, disks }
    }

    fn replica(&self, d: u32) -> std::io::Result<Arc<File>> {
        self.pool.file(self.rec.id, d, FileKind::Replica)
    }

    /// Writes a whole new replica on disk `d` from verified blob regions (read from any copy),
    /// fsyncs it and its directory. Returns the file and how many blobs no copy of which
    /// verified (left as holes).
    fn write_replica(&self, d: u32, blobs: &[BlobLocation]) -> Result<(File, u64)> {
        let path = self.pool.file_path(self.rec.id, d, FileKind::Replica);
        let ctx = |e| StoreError::io(format!("rebuilding {}", path.display()), e);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(ctx)?;
        file.write_all_at(&volume_header(self.rec.id, self.rec.created), 0)
            .map_err(ctx)?;
        let mut missing = 0;
        for loc in blobs {
            match self.pool.read_region(loc) {
                Ok(region) => file.write_all_at(&region, loc.offset).map_err(ctx)?,
                Err(_) => missing += 1,
            }
        }
        if self.rec.size > 0 {
            let len = file.metadata().map(|m| m.len()).unwrap_or(0);
            file.set_len(self.rec.size.max(len)).map_err(ctx)?;
        }
        file.sync_all().map_err(ctx)?;
        volume::sync_dir(&self.pool.path(d))?;
        Ok((file, missing))
    }

    /// Rewrites one blob region of the replica on disk `d` from a good copy.
    fn repair_region(&self, d: u32, loc: &BlobLocation, region: &[u8]) -> bool {
        // Open for writing: cached handles are read-only.
        let path = self.pool.file_path(self.rec.id, d, FileKind::Replica);
        let w = OpenOptions::new().write(true).open(&path);
        match w.and_then(|w| {
            w.write_all_at(region, loc.offset)
                .and_then(|_| w.sync_data())
        }) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "could not repair a replica");
                false
            }
        }
    }
}

impl VolumeLayout for Replicated<'_> {
    fn disks(&self) -> &[u32] {
        self.disks
    }

    fn kind(&self, _pos: usize) -> FileKind {
        FileKind::Replica
    }

    fn read(
        &self,
        loc: &BlobLocation,
        range: Range<u64>,
        out: &mut [u8],
        what: &dyn Fn() -> String,
    ) -> Result<()> {
        let online = |d: &u32| self.pool.is_online(*d);
        let mut order: Vec<u32> = self.disks.iter().copied().filter(online).collect();
        order.extend(self.disks.iter().copied().filter(|d| !online(d)));
        let mut errors = Vec::new();
        for d in order {
            let f = match self.replica(d) {
                Ok(f) => f,
                Err(e) => {
                    errors.push(format!("disk {d}: {e}"));
                    continue;
                }
            };
            match volume::read_blob_range(&*f, loc, range.clone(), out, what) {
                Ok(()) => {
                    if !errors.is_empty() {
                        tracing::warn!(
                            volume = self.rec.id,
                            "read served by another replica: {}",
                            errors.join("; ")
                        );
                    }
                    return Ok(());
                }
                Err(e @ (StoreError::Corrupt { .. } | StoreError::Io { .. })) => {
                    errors.push(format!("disk {d}: {e}"));
                }
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Corrupt {
            what: format!(
                "{}: no replica of volume {:016x} is readable ({})",
                what(),
                self.rec.id,
                errors.join("; ")
            ),
        })
    }

    fn read_region(&self, loc: &BlobLocation, buf: &mut [u8]) -> bool {
        self.disks.iter().any(|&d| {
            self.replica(d).is_ok_and(|f| {
                f.read_exact_at(buf, loc.offset).is_ok() && volume::verify_region(buf, loc)
            })
        })
    }

    fn scrub(&self, blobs: &[BlobLocation]) -> Result<ScrubReport> {
        let mut rep = ScrubReport::default();
        let mut files: Vec<(u32, Arc<File>)> = Vec::new();
        for &d in self.disks {
            if !self.pool.is_online(d) {
                rep.offline += 1;
                continue;
            }
            let file = match self.replica(d) {
                Ok(f) => f,
                Err(_) => {
                    // A replica file missing on an online disk: rebuild it from the others.
                    rep.bad += 1;
                    let (file, missing) = self.write_replica(d, blobs)?;
                    rep.unrepairable += missing;
                    if missing == 0 {
                        rep.repaired += 1;
                    }
                    let file = Arc::new(file);
                    self.pool
                        .keep_handle(self.rec.id, d, FileKind::Replica, file.clone());
                    file
                }
            };
            files.push((d, file));
        }
        for loc in blobs {
            let len = blob_disk_len(loc.len, loc.block_size) as usize;
            let mut good: Option<Vec<u8>> = None;
            let mut bad_on = Vec::new();
            for (d, f) in &files {
                let mut buf = vec![0u8; len];
                rep.bytes_checked += len as u64;
                if f.read_exact_at(&mut buf, loc.offset).is_ok() && volume::verify_region(&buf, loc)
                {
                    good.get_or_insert(buf);
                } else {
                    bad_on.push(*d);
                }
            }
            rep.bad += bad_on.len() as u64;
            match good {
                Some(region) => {
                    for d in bad_on {
                        if self.repair_region(d, loc, &region) {
                            rep.repaired += 1;
                        } else {
                            rep.unrepairable += 1;
                        }
                    }
                }
                None if !bad_on.is_empty() => {
                    tracing::error!(
                        volume = self.rec.id,
                        blob = loc.blob,
                        "no replica of this blob verifies"
                    );
                    rep.unrepairable += 1;
                }
                None => {}
            }
        }
        Ok(rep)
    }

    fn rebuild_member(&self, _pos: usize, target: u32, blobs: &[BlobLocation]) -> Result<()> {
        let (_, missing) = self.write_replica(target, blobs)?;
        if missing > 0 {
            return Err(StoreError::Corrupt {
                what: format!(
                    "volume {:016x}: {missing} blob(s) have no good copy to move",
                    self.rec.id
                ),
            });
        }
        Ok(())
    }

    fn moved(&self, pos: usize, target: u32) -> Layout {
        let mut disks = self.disks.to_vec();
        if let Some(d) = disks.get_mut(pos) {
            *d = target;
        }
        Layout::Replicated { disks }
    }
}
