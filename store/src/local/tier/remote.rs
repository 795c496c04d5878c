//! The remote volume layout: a tiered volume is one object in the tier's bucket
//! ([`RemoteObject`]); a read fetches, with one ranged GET, the chunks that hold the blob
//! header and the blocks it needs (only those not cached), and verifies them with the blob's
//! header and BLAKE3 block checksums exactly as a local read does ([`volume::read_blob_range`]).
//! A read that fails verification drops the cached chunks of the volume and tries once more
//! straight from the bucket; a second failure is an error naming the object, never data.

use std::io::{self, IoSliceMut};
use std::ops::Range;
use std::sync::Arc;

use crate::error::{Result, StoreError};
use crate::local::disks::FileKind;
use crate::local::layout::VolumeLayout;
use crate::local::records::{Layout, RemoteObject, VolumeRecord};
use crate::local::scrub::ScrubReport;
use crate::local::tier::cache::{ChunkKey, CHUNK};
use crate::local::tier::Tier;
use crate::local::volume::{
    self, blob_disk_len, BlobLocation, ReadAt, BLOB_HEADER_LEN, CHECKSUM_LEN,
};

/// A tiered volume.
pub(crate) struct Remote<'a> {
    tier: Option<Arc<Tier>>,
    rec: &'a VolumeRecord,
    obj: &'a RemoteObject,
}

/// The chunk indices covering `range` of an object.
pub fn chunks(range: Range<u64>) -> Range<u64> {
    if range.start >= range.end {
        return 0..0;
    }
    range.start / CHUNK..(range.end - 1) / CHUNK + 1
}

/// The bytes of a blob a read of `range` of its data touches: its header through the checksum
/// of the last block needed (`read_blob_range` reads the header, then the blocks).
pub fn blob_span(loc: &BlobLocation, range: &Range<u64>) -> Range<u64> {
    let bs = loc.block_size as u64;
    let last = range.end.saturating_sub(1) / bs;
    let last_len = (loc.len - last * bs).min(bs);
    let end = loc.offset + BLOB_HEADER_LEN + last * (bs + CHECKSUM_LEN) + last_len + CHECKSUM_LEN;
    loc.offset..end
}

/// Reads an object through the cache (fetching what is missing).
struct Reader<'a> {
    tier: &'a Tier,
    id: u64,
    obj: &'a RemoteObject,
    /// Skip the cache (a second attempt after a verification failure).
    fresh: bool,
    /// Bytes of the object already made sure of (a read inside them goes straight to the
    /// cached chunks: a read ensures its blob's span once, then reads header and blocks).
    ensured: Range<u64>,
}

impl Reader<'_> {
    fn name(&self, index: u64) -> ChunkKey {
        ChunkKey::new(self.id, &self.obj.blake3, index)
    }

    fn chunk_range(&self, index: u64) -> Range<u64> {
        index * CHUNK..((index + 1) * CHUNK).min(self.obj.size)
    }

    /// Makes sure the chunks covering `range` are cached, fetching the missing run with one
    /// ranged GET.
    fn ensure(&self, range: Range<u64>) -> Result<()> {
        let idx = chunks(range.start.min(self.obj.size)..range.end.min(self.obj.size));
        let missing: Vec<u64> = idx
            .filter(|&i| self.fresh || !self.tier.cache.contains(self.name(i)))
            .collect();
        let (Some(&first), Some(&last)) = (missing.first(), missing.last()) else {
            return Ok(());
        };
        let span = self.chunk_range(first).start..self.chunk_range(last).end;
        let bytes = self
            .tier
            .client
            .get_range(&self.obj.key, span.clone())
            .map_err(|e| {
                tracing::error!(object = %self.tier.describe(&self.obj.key), error = %e, "reading a tiered volume failed");
                e
            })?;
        for i in first..=last {
            let r = self.chunk_range(i);
            let from = (r.start - span.start) as usize;
            let to = (r.end - span.start) as usize;
            if let Some(data) = bytes.get(from..to) {
                self.tier.cache.insert(self.name(i), data);
            }
        }
        Ok(())
    }
}

impl ReadAt for Reader<'_> {
    fn read_vectored_exact_at(&self, bufs: &mut [IoSliceMut<'_>], offset: u64) -> io::Result<()> {
        let total: u64 = bufs.iter().map(|b| b.len() as u64).sum();
        if offset + total > self.obj.size {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if offset < self.ensured.start || offset + total > self.ensured.end {
            self.ensure(offset..offset + total)
                .map_err(|e| io::Error::other(e.to_string()))?;
        }
        let mut at = offset;
        for b in bufs.iter_mut() {
            let mut done = 0usize;
            while done < b.len() {
                let i = at / CHUNK;
                let within = at - i * CHUNK;
                let n = ((CHUNK - within) as usize).min(b.len() - done);
                if !self
                    .tier
                    .cache
                    .read(self.name(i), within, &mut b[done..done + n])
                {
                    return Err(io::Error::other(format!(
                        "chunk {i} of {} left the cache",
                        self.obj.key
                    )));
                }
                done += n;
                at += n as u64;
            }
        }
        Ok(())
    }
}

impl<'a> Remote<'a> {
    pub(crate) fn new(
        tier: Option<Arc<Tier>>,
        rec: &'a VolumeRecord,
        obj: &'a RemoteObject,
    ) -> Self {
        Remote { tier, rec, obj }
    }

    fn tier(&self) -> Result<&Tier> {
        self.tier.as_deref().ok_or_else(|| {
            StoreError::Unsupported(format!(
                "volume {:016x} is in the remote tier ({}), but this store has no tier attached",
                self.rec.id, self.obj.key
            ))
        })
    }

    /// A reader of the object that has made sure of `span` (fetched what the cache lacks).
    fn reader<'b>(&'b self, tier: &'b Tier, fresh: bool, span: Range<u64>) -> Result<Reader<'b>> {
        let mut r = Reader {
            tier,
            id: self.rec.id,
            obj: self.obj,
            fresh,
            ensured: 0..0,
        };
        r.ensure(span.clone())?;
        r.ensured = span;
        Ok(r)
    }
}

impl VolumeLayout for Remote<'_> {
    fn disks(&self) -> &[u32] {
        &[]
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
        let tier = self.tier()?;
        let named = || {
            format!(
                "{} (remote object {})",
                what(),
                tier.describe(&self.obj.key)
            )
        };
        let mut last = None;
        for fresh in [false, true] {
            let r = self.reader(tier, fresh, blob_span(loc, &range))?;
            match volume::read_blob_range(&r, loc, range.clone(), out, &named) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    // Cached chunks may be what is bad: drop them and fetch once more.
                    tier.cache.remove_volume(self.rec.id);
                    last = Some(e);
                }
            }
        }
        let e = last.unwrap_or_else(|| StoreError::Corrupt { what: named() });
        tracing::error!(object = %tier.describe(&self.obj.key), error = %e, "a tiered blob does not verify");
        Err(e)
    }

    fn read_region(&self, loc: &BlobLocation, buf: &mut [u8]) -> bool {
        let Ok(tier) = self.tier() else {
            return false;
        };
        let len = blob_disk_len(loc.len, loc.block_size);
        [false, true].into_iter().any(|fresh| {
            self.reader(tier, fresh, loc.offset..loc.offset + len)
                .is_ok_and(|r| r.read_all_at(buf, loc.offset).is_ok())
                && volume::verify_region(buf, loc)
        })
    }

    fn scrub(&self, _blobs: &[BlobLocation]) -> Result<ScrubReport> {
        // Scrubbing remote data is not done yet (docs/OPERATIONS.md).
        Ok(ScrubReport::default())
    }

    fn rebuild_member(&self, _pos: usize, _target: u32, _blobs: &[BlobLocation]) -> Result<()> {
        Err(StoreError::InvalidArgument(format!(
            "volume {:016x} is in the remote tier: it has no local member to move",
            self.rec.id
        )))
    }

    fn moved(&self, _pos: usize, _target: u32) -> Layout {
        Layout::Remote(self.obj.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_touches_the_chunks_of_its_header_and_blocks() {
        assert_eq!(chunks(0..1), 0..1);
        assert_eq!(chunks(0..CHUNK), 0..1);
        assert_eq!(chunks(CHUNK - 1..CHUNK + 1), 0..2);
        assert_eq!(chunks(5..5), 0..0);
        let loc = BlobLocation {
            blob: 1,
            volume: 1,
            offset: 64,
            len: 100_000,
            block_size: 65536,
        };
        // The first byte: header and block 0 with its checksum.
        assert_eq!(blob_span(&loc, &(0..1)), 64..64 + 32 + 65536 + 32);
        // The last byte: through block 1's checksum, the end of the blob.
        let whole = blob_span(&loc, &(99_999..100_000));
        assert_eq!(whole.end - whole.start, blob_disk_len(100_000, 65536));
    }
}
