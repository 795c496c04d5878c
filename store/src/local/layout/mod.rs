//! Volume layouts: where the bytes of one volume are, and the operations whose method depends
//! on it. A volume is a logical append-only byte range (volume.rs); its layout record says
//! whether it is kept as whole replica files on R disks ([`Replicated`], while open and until
//! placed) or as K data + M parity shard files on K+M distinct disks ([`ErasureCoded`], after
//! placement), or as one object of the store's remote tier (`tier::remote::Remote`, tiering).
//!
//! The rest of the store never matches on the layout: it asks [`Disks::layout`] for the
//! volume's [`VolumeLayout`] and calls one method to read, repair (scrub), rebuild a member
//! elsewhere (drain) or remove the files.

mod erasure_coded;
mod replicated;

use std::ops::Range;

pub(crate) use erasure_coded::ErasureCoded;
pub(crate) use replicated::Replicated;

use crate::error::{Result, StoreError};
use crate::local::disks::{Disks, FileKind};
use crate::local::records::{Layout, VolumeRecord};
use crate::local::scrub::ScrubReport;
use crate::local::volume::{blob_disk_len, BlobLocation};

/// A volume seen through its layout. A *member* is one file of the volume: replica `i` or
/// shard `i`, on disk `disks()[i]`.
pub(crate) trait VolumeLayout {
    /// The disk of each member, in member order.
    fn disks(&self) -> &[u32];

    /// Which file member `pos` is.
    fn kind(&self, pos: usize) -> FileKind;

    /// Reads `range` of a blob's data into `out`, verified: fails over between replicas, or
    /// reconstructs from verified shards. A corrupt block is an error, never data.
    fn read(
        &self,
        loc: &BlobLocation,
        range: Range<u64>,
        out: &mut [u8],
        what: &dyn Fn() -> String,
    ) -> Result<()>;

    /// Fills `buf` with a whole blob region (header and blocks) that verifies; false when no
    /// good copy is left.
    fn read_region(&self, loc: &BlobLocation, buf: &mut [u8]) -> bool;

    /// Verifies every member on an online disk and repairs what it can. `blobs` are the live
    /// blobs of the volume (erasure-coded shards carry their own checksums and ignore them).
    fn scrub(&self, blobs: &[BlobLocation]) -> Result<ScrubReport>;

    /// Writes a complete, verified copy of member `pos` onto disk `target` (for drain), made
    /// from the member itself or from the others.
    fn rebuild_member(&self, pos: usize, target: u32, blobs: &[BlobLocation]) -> Result<()>;

    /// The layout record with member `pos` moved to disk `target`.
    fn moved(&self, pos: usize, target: u32) -> Layout;

    /// Every file of the volume: (disk, kind).
    fn files(&self) -> Vec<(u32, FileKind)> {
        (0..self.disks().len())
            .map(|i| (self.disks()[i], self.kind(i)))
            .collect()
    }
}

impl Disks {
    /// The layout of the volume `rec` describes: the one place that looks at its kind.
    pub(crate) fn layout<'a>(&'a self, rec: &'a VolumeRecord) -> Box<dyn VolumeLayout + 'a> {
        match &rec.layout {
            Layout::Replicated { disks } => Box::new(Replicated::new(self, rec, disks)),
            Layout::Erasure {
                k,
                m,
                shard_len,
                disks,
            } => Box::new(ErasureCoded::new(self, rec, *k, *m, *shard_len, disks)),
            Layout::Remote(obj) => Box::new(crate::local::tier::remote::Remote::new(
                self.tier(),
                rec,
                obj,
            )),
        }
    }

    /// Deletes the files of a volume whose record is gone; returns the bytes freed.
    pub(crate) fn remove_files(&self, rec: &VolumeRecord) -> u64 {
        let mut freed = 0;
        for (d, kind) in self.layout(rec).files() {
            let p = self.file_path(rec.id, d, kind);
            freed += std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
            let _ = std::fs::remove_file(&p);
        }
        freed
    }

    /// Reads `range` of a blob's data into `out`, verified, whatever the volume's layout.
    pub fn read_blob(
        &self,
        loc: &BlobLocation,
        range: Range<u64>,
        out: &mut [u8],
        what: &dyn Fn() -> String,
    ) -> Result<()> {
        // A concurrent placement or compaction may change the layout between our lookup and
        // the read: retry once with the new layout.
        let mut last = None;
        for _ in 0..2 {
            let Some(rec) = self.record(loc.volume) else {
                return Err(StoreError::Corrupt {
                    what: format!("{}: volume {:016x} has no record", what(), loc.volume),
                });
            };
            let read = self.layout(&rec).read(loc, range.clone(), out, what);
            match read {
                Ok(()) => return Ok(()),
                Err(e) => {
                    let changed = self
                        .record(loc.volume)
                        .map(|n| n.layout != rec.layout)
                        .unwrap_or(false);
                    last = Some(e);
                    if !changed {
                        break;
                    }
                }
            }
        }
        Err(last.unwrap_or_else(|| StoreError::Corrupt { what: what() }))
    }

    /// Reads a whole blob region (header + blocks) verified, from any copy or by
    /// reconstruction. Used by placement, scrub, drain and compaction.
    pub fn read_region(&self, loc: &BlobLocation) -> Result<Vec<u8>> {
        let rec = self.record(loc.volume).ok_or_else(|| StoreError::Corrupt {
            what: format!("volume {:016x} has no record", loc.volume),
        })?;
        let mut buf = vec![0u8; blob_disk_len(loc.len, loc.block_size) as usize];
        if self.layout(&rec).read_region(loc, &mut buf) {
            return Ok(buf);
        }
        Err(StoreError::Corrupt {
            what: format!(
                "blob {} in volume {:016x}: no good copy",
                loc.blob, loc.volume
            ),
        })
    }
}
