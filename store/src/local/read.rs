//! The read path: a version's extents are resolved to blob locations and read verified (every
//! block's checksum, through the volume's layout: replicas fail over, shards reconstruct);
//! hole extents read as zeros without touching a volume.
//! Small reads run on the calling task; larger ones stream in chunks read on the blocking pool.

use bytes::Bytes;
use futures::stream::StreamExt;

use crate::error::{Result, StoreError};
use crate::key::validate;
use crate::local::records::{slice_extents, BlobRecord, Extent};
use crate::local::volume::BlobLocation;
use crate::local::{Inner, LocalStore, INLINE_LIMIT};
use crate::types::{resolve_range, Body, GetOptions, GetResult};

/// Reads larger than this are returned as a stream of chunks of about this size.
const READ_CHUNK: u64 = 8 << 20;

impl Inner {
    /// Reads the bytes of `extents`, in order, into `out` (exactly their total length).
    fn read_extents(
        &self,
        extents: &[Extent],
        out: &mut [u8],
        what: &dyn Fn() -> String,
    ) -> Result<()> {
        let mut pos = 0usize;
        for e in extents {
            let len = e.len as usize;
            let dst = out
                .get_mut(pos..pos + len)
                .ok_or_else(|| StoreError::Corrupt {
                    what: format!("{}: extents add up to more than the object size", what()),
                })?;
            if e.is_hole() {
                dst.fill(0);
                pos += len;
                continue;
            }
            // gc may move the blob between our lookup and the read: look again once.
            let first = self.read_extent(e, dst, what);
            match first {
                Err(StoreError::Corrupt { .. }) => {
                    let b = self.meta.blob(e.blob)?;
                    self.read_extent_at(e, &b, dst, what)?;
                }
                other => other?,
            }
            pos += len;
        }
        // Extents that cover less than the buffer leave the rest as zeros (the buffer is not
        // zeroed memory).
        if let Some(rest) = out.get_mut(pos..) {
            rest.fill(0);
        }
        Ok(())
    }

    fn read_extent(&self, e: &Extent, dst: &mut [u8], what: &dyn Fn() -> String) -> Result<()> {
        let b = self.meta.blob(e.blob)?;
        self.read_extent_at(e, &b, dst, what)
    }

    fn read_extent_at(
        &self,
        e: &Extent,
        b: &BlobRecord,
        dst: &mut [u8],
        what: &dyn Fn() -> String,
    ) -> Result<()> {
        let loc = BlobLocation {
            blob: e.blob,
            volume: b.volume,
            offset: b.offset,
            len: b.len,
            block_size: b.block_size,
        };
        self.disks
            .read_blob(&loc, e.offset..e.offset + e.len, dst, what)
    }

    pub(crate) fn read_bytes(
        &self,
        extents: &[Extent],
        len: u64,
        what: &dyn Fn() -> String,
    ) -> Result<Bytes> {
        let mut out = read_buffer(len as usize);
        self.read_extents(extents, &mut out, what)?;
        Ok(Bytes::from(out))
    }
}

/// A buffer of `len` bytes for a read to fill, every byte of which the read overwrites.
///
/// Not `vec![0; len]`: that asks the allocator for zeroed memory, and jemalloc zeroes a large
/// extent it takes back from its free ones by returning the pages to the kernel
/// (`MADV_DONTNEED`), so every page of every 8 MiB read chunk was faulted in afresh (65,536
/// faults for a 256 MiB file, ~15 % of the mount's CPU for a sequential read). Memory asked
/// for as uninitialized reuses the freed pages as they are; they are then filled here,
/// with a byte that is not zero so that the compiler cannot turn the fill back into a
/// request for zeroed memory.
fn read_buffer(len: usize) -> Vec<u8> {
    vec![0xa5; len]
}

impl LocalStore {
    /// `ObjectStore::get`: small reads inline, larger ones as a stream of chunks.
    pub(super) async fn get_object(&self, key: &str, opts: GetOptions) -> Result<GetResult> {
        validate(key)?;
        let (vid, rec) = self.inline(|i| i.meta.resolve(key, opts.version))?;
        let range = resolve_range(opts.range.as_ref(), rec.size)?;
        let info = Self::info(key, vid, &rec);
        let len = range.end - range.start;
        let name = format!("{key} (version {vid})");
        if len <= INLINE_LIMIT {
            let extents = slice_extents(&rec.extents, range.clone());
            let body = self.inline(|i| i.read_bytes(&extents, len, &|| name.clone()))?;
            return Ok(GetResult {
                info,
                range,
                body: Body::Bytes(body),
            });
        }
        // Larger reads stream in chunks, read on the blocking pool two at a time (one per core).
        let mut chunks = Vec::new();
        let mut at = range.start;
        while at < range.end {
            let end = (at + READ_CHUNK).min(range.end);
            chunks.push(slice_extents(&rec.extents, at..end));
            at = end;
        }
        let inner = self.inner.clone();
        let stream = futures::stream::iter(chunks)
            .map(move |ex| {
                let inner = inner.clone();
                let name = name.clone();
                async move {
                    let len = ex.iter().map(|e| e.len).sum();
                    tokio::task::spawn_blocking(move || {
                        inner.read_bytes(&ex, len, &|| name.clone())
                    })
                    .await
                    .map_err(|e| StoreError::Metadata(format!("a read task failed: {e}")))?
                }
            })
            .buffered(2);
        Ok(GetResult {
            info,
            range,
            body: Body::from_stream(stream),
        })
    }
}
