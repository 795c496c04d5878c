//! Volume files: large append-only files that pack many blobs, each blob's data cut into
//! blocks that carry their own BLAKE3 checksum, verified on every read.
//!
//! Layout (all integers little-endian; docs/FORMAT.md has the same tables):
//!
//! ```text
//! volume header, 64 bytes
//!   0..8    magic "OBJFSVOL"
//!   8..12   volume format (u32) = 1
//!   12..16  reserved, zero
//!   16..24  volume id (u64)
//!   24..32  created, nanoseconds since the Unix epoch (u64)
//!   32..64  reserved, zero
//! blob, repeated
//!   0..8    magic "OBJFSBLB"
//!   8..16   blob id (u64)
//!   16..24  data length L (u64)
//!   24..28  block size B (u32)
//!   28..32  first 4 bytes of BLAKE3(bytes 0..28 of this header)
//!   then ceil(L / B) blocks, each: min(B, rest) data bytes, then BLAKE3(those bytes), 32 bytes
//! ```
//!
//! A read checks the blob header (so metadata pointing at the wrong place is caught) and the
//! checksum of every block it touches; a mismatch is [`StoreError::Corrupt`], never data.

use std::fs::File;
use std::io::{self, IoSlice, IoSliceMut};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Result, StoreError};

pub const VOLUME_MAGIC: &[u8; 8] = b"OBJFSVOL";
pub const VOLUME_FORMAT: u32 = 1;
pub const VOLUME_HEADER_LEN: u64 = 64;
pub const BLOB_MAGIC: &[u8; 8] = b"OBJFSBLB";
pub const BLOB_HEADER_LEN: u64 = 32;
pub const CHECKSUM_LEN: u64 = 32;

/// Number of blocks a blob of `len` bytes has.
pub fn block_count(len: u64, block_size: u32) -> u64 {
    len.div_ceil(block_size as u64)
}

/// Bytes a blob of `len` data bytes takes in a volume file.
pub fn blob_disk_len(len: u64, block_size: u32) -> u64 {
    BLOB_HEADER_LEN + len + block_count(len, block_size) * CHECKSUM_LEN
}

/// Offset of block `i` of the blob whose header is at `blob_offset`.
fn block_offset(blob_offset: u64, i: u64, block_size: u32) -> u64 {
    blob_offset + BLOB_HEADER_LEN + i * (block_size as u64 + CHECKSUM_LEN)
}

/// Encodes a blob header.
pub fn blob_header(blob: u64, len: u64, block_size: u32) -> [u8; 32] {
    let mut h = [0u8; 32];
    h[0..8].copy_from_slice(BLOB_MAGIC);
    h[8..16].copy_from_slice(&blob.to_le_bytes());
    h[16..24].copy_from_slice(&len.to_le_bytes());
    h[24..28].copy_from_slice(&block_size.to_le_bytes());
    let sum = blake3::hash(&h[0..28]);
    h[28..32].copy_from_slice(&sum.as_bytes()[0..4]);
    h
}

/// Parses and checks a blob header; returns (blob id, length, block size).
pub fn parse_blob_header(h: &[u8; 32]) -> Option<(u64, u64, u32)> {
    if &h[0..8] != BLOB_MAGIC {
        return None;
    }
    let sum = blake3::hash(&h[0..28]);
    if h[28..32] != sum.as_bytes()[0..4] {
        return None;
    }
    let blob = u64::from_le_bytes(h[8..16].try_into().ok()?);
    let len = u64::from_le_bytes(h[16..24].try_into().ok()?);
    let bs = u32::from_le_bytes(h[24..28].try_into().ok()?);
    Some((blob, len, bs))
}

/// Encodes a volume header.
pub fn volume_header(id: u64, created: u64) -> [u8; 64] {
    let mut h = [0u8; 64];
    h[0..8].copy_from_slice(VOLUME_MAGIC);
    h[8..12].copy_from_slice(&VOLUME_FORMAT.to_le_bytes());
    h[16..24].copy_from_slice(&id.to_le_bytes());
    h[24..32].copy_from_slice(&created.to_le_bytes());
    h
}

/// The per-block checksums of `data` cut into `block_size` blocks.
pub fn block_checksums(data: &[u8], block_size: u32) -> Vec<[u8; 32]> {
    data.chunks(block_size as usize)
        .map(|b| *blake3::hash(b).as_bytes())
        .collect()
}

/// Writes all of `bufs` at `offset`, retrying partial writes.
fn pwritev_all(file: &File, mut bufs: &mut [IoSlice<'_>], mut offset: u64) -> io::Result<()> {
    while !bufs.is_empty() {
        // At most IOV_MAX (1024) slices per call.
        let n = bufs.len().min(1024);
        let written = nix::sys::uio::pwritev(file, &bufs[..n], offset as libc::off_t)
            .map_err(io::Error::from)?;
        if written == 0 {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "pwritev wrote nothing",
            ));
        }
        offset += written as u64;
        IoSlice::advance_slices(&mut bufs, written);
    }
    Ok(())
}

/// Reads exactly into all of `bufs` from `offset`; a short file is `UnexpectedEof`.
fn preadv_all(file: &File, mut bufs: &mut [IoSliceMut<'_>], mut offset: u64) -> io::Result<()> {
    while !bufs.is_empty() {
        let n = bufs.len().min(1024);
        let read = nix::sys::uio::preadv(file, &mut bufs[..n], offset as libc::off_t)
            .map_err(io::Error::from)?;
        if read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "volume file ends early",
            ));
        }
        offset += read as u64;
        IoSliceMut::advance_slices(&mut bufs, read);
    }
    Ok(())
}

/// Writes one blob (header, then blocks each followed by its checksum) at `offset` of every
/// replica file, each with one vectored write and no copy of the data. Returns the block
/// checksums.
pub fn write_blob(
    files: &[Arc<File>],
    offset: u64,
    blob: u64,
    data: &[u8],
    block_size: u32,
) -> io::Result<Vec<[u8; 32]>> {
    let header = blob_header(blob, data.len() as u64, block_size);
    let sums = block_checksums(data, block_size);
    for file in files {
        let mut slices = Vec::with_capacity(1 + 2 * sums.len());
        slices.push(IoSlice::new(&header));
        for (chunk, sum) in data.chunks(block_size as usize).zip(&sums) {
            slices.push(IoSlice::new(chunk));
            slices.push(IoSlice::new(sum));
        }
        pwritev_all(file, &mut slices, offset)?;
    }
    Ok(sums)
}

/// Blobs of at least this many bytes start their write-back to disk as soon as they are
/// written ([`start_writeback`]).
pub const EARLY_WRITEBACK_MIN: u64 = 1 << 20;

/// Asks the kernel to start writing `len` bytes at `offset` of each file to disk now
/// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`), without waiting for it. Large blobs written in
/// a stream (a large file, a multipart upload) then reach the disk while the next ones are
/// written, so the fsync of a durable write waits for the last blobs only, not for every
/// dirty page at once. A hint: durability still comes from the group sync's fsync, and a
/// failure is only logged.
pub fn start_writeback(files: &[Arc<File>], offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(off), Ok(n)) = (
        libc::off64_t::try_from(offset),
        libc::off64_t::try_from(len),
    ) else {
        return;
    };
    for file in files {
        // SAFETY: a plain system call on a descriptor this `File` owns for the call's duration;
        // no memory is passed.
        let rc =
            unsafe { libc::sync_file_range(file.as_raw_fd(), off, n, libc::SYNC_FILE_RANGE_WRITE) };
        if rc != 0 {
            tracing::debug!(error = %io::Error::last_os_error(), "sync_file_range");
        }
    }
}

/// Something a blob can be read from at an offset: a replica file, or an erasure-coded volume.
pub trait ReadAt {
    /// Fills all of `bufs` from `offset`; a short source is `UnexpectedEof`.
    fn read_vectored_exact_at(&self, bufs: &mut [IoSliceMut<'_>], offset: u64) -> io::Result<()>;

    fn read_all_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.read_vectored_exact_at(&mut [IoSliceMut::new(buf)], offset)
    }
}

impl ReadAt for File {
    fn read_vectored_exact_at(&self, bufs: &mut [IoSliceMut<'_>], offset: u64) -> io::Result<()> {
        preadv_all(self, bufs, offset)
    }
}

/// Where a blob is, as the read path needs it.
#[derive(Debug, Clone, Copy)]
pub struct BlobLocation {
    pub blob: u64,
    pub volume: u64,
    pub offset: u64,
    pub len: u64,
    pub block_size: u32,
}

/// Reads `range` of a blob's data into `out` (which must be exactly `range` long), checking
/// the blob header and every block touched. `what` names the object for error messages.
pub fn read_blob_range(
    file: &dyn ReadAt,
    loc: &BlobLocation,
    range: std::ops::Range<u64>,
    out: &mut [u8],
    what: &dyn Fn() -> String,
) -> Result<()> {
    let corrupt = |detail: String| StoreError::Corrupt {
        what: format!(
            "{}: volume {:016x} blob {} {detail}",
            what(),
            loc.volume,
            loc.blob
        ),
    };
    let io_err = |e: io::Error| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            corrupt("is truncated".into())
        } else {
            StoreError::io(format!("reading volume {:016x}", loc.volume), e)
        }
    };
    if range.start >= range.end {
        return Ok(());
    }
    if range.end > loc.len || out.len() as u64 != range.end - range.start {
        return Err(corrupt(format!(
            "range {}..{} is outside the blob's {} bytes",
            range.start, range.end, loc.len
        )));
    }
    let mut header = [0u8; 32];
    file.read_all_at(&mut header, loc.offset).map_err(io_err)?;
    match parse_blob_header(&header) {
        Some((id, len, bs)) if id == loc.blob && len == loc.len && bs == loc.block_size => {}
        _ => return Err(corrupt("has a bad header".into())),
    }

    let bs = loc.block_size as u64;
    let first = range.start / bs;
    let last = (range.end - 1) / bs;
    let block_len = |i: u64| -> u64 { (loc.len - i * bs).min(bs) };
    let whole = |i: u64| i * bs >= range.start && i * bs + block_len(i) <= range.end;
    // Blocks wholly inside the range are read straight into `out`; the (at most two) partial
    // edge blocks are read into scratch buffers and copied.
    let mut head = if whole(first) {
        Vec::new()
    } else {
        vec![0u8; block_len(first) as usize]
    };
    let mut tail = if last == first || whole(last) {
        Vec::new()
    } else {
        vec![0u8; block_len(last) as usize]
    };
    let nblocks = (last - first + 1) as usize;
    let mut sums = vec![[0u8; 32]; nblocks];
    {
        let mut slices: Vec<IoSliceMut<'_>> = Vec::with_capacity(2 * nblocks);
        let mut rest: &mut [u8] = out;
        if !whole(first) {
            // The head piece goes to the start of `out` later; whole blocks follow it.
            let head_piece = (range.end.min(first * bs + block_len(first)) - range.start) as usize;
            rest = &mut std::mem::take(&mut rest)[head_piece..];
        }
        let mut head_slot = Some(head.as_mut_slice());
        let mut tail_slot = Some(tail.as_mut_slice());
        for (i, sum) in (first..=last).zip(sums.iter_mut()) {
            let target: &mut [u8] = if whole(i) {
                let (this, more) = std::mem::take(&mut rest).split_at_mut(block_len(i) as usize);
                rest = more;
                this
            } else if i == first {
                head_slot.take().unwrap_or_default()
            } else {
                tail_slot.take().unwrap_or_default()
            };
            slices.push(IoSliceMut::new(target));
            slices.push(IoSliceMut::new(sum));
        }
        file.read_vectored_exact_at(&mut slices, block_offset(loc.offset, first, loc.block_size))
            .map_err(io_err)?;
    }
    // Verify every block, then move the edge pieces into place.
    for (i, sum) in (first..=last).zip(&sums) {
        let bstart = i * bs;
        let blen = block_len(i) as usize;
        let pos = (bstart.max(range.start) - range.start) as usize;
        let data: &[u8] = if whole(i) {
            &out[pos..pos + blen]
        } else if i == first {
            &head
        } else {
            &tail
        };
        if blake3::hash(data).as_bytes() != sum {
            return Err(corrupt(format!("block {i} fails its checksum")));
        }
        if !whole(i) {
            let from = (range.start.max(bstart) - bstart) as usize;
            let to = (range.end.min(bstart + blen as u64) - bstart) as usize;
            let src = if i == first { &head } else { &tail };
            out[pos..pos + (to - from)].copy_from_slice(&src[from..to]);
        }
    }
    Ok(())
}

/// Checks a whole blob region (header, then blocks with their checksums) held in memory.
pub fn verify_region(region: &[u8], loc: &BlobLocation) -> bool {
    let Some(h) = region
        .get(0..32)
        .and_then(|h| <&[u8; 32]>::try_from(h).ok())
    else {
        return false;
    };
    match parse_blob_header(h) {
        Some((id, len, bs)) if id == loc.blob && len == loc.len && bs == loc.block_size => {}
        _ => return false,
    }
    if region.len() as u64 != blob_disk_len(loc.len, loc.block_size) {
        return false;
    }
    let mut at = BLOB_HEADER_LEN as usize;
    let mut left = loc.len as usize;
    while left > 0 {
        let n = left.min(loc.block_size as usize);
        let (data, sum) = (&region[at..at + n], &region[at + n..at + n + 32]);
        if blake3::hash(data).as_bytes()[..] != *sum {
            return false;
        }
        at += n + 32;
        left -= n;
    }
    true
}

/// `<dir>/<16 hex digits>.vol`: a replica of volume `id`.
pub fn volume_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:016x}.vol"))
}

/// `<dir>/<16 hex digits>.s<NN>`: shard `index` of volume `id`.
pub fn shard_path(dir: &Path, id: u64, index: usize) -> PathBuf {
    dir.join(format!("{id:016x}.s{index:02}"))
}

/// fsyncs a directory so that entries created in it survive a crash.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(format!("syncing directory {}", dir.display()), e))
}

/// Nanoseconds since the Unix epoch.
pub fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos().min(u64::MAX as u128) as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(blob: u64, len: u64, bs: u32) -> BlobLocation {
        BlobLocation {
            blob,
            volume: 1,
            offset: 100,
            len,
            block_size: bs,
        }
    }

    #[test]
    fn write_then_read_every_range() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("v"))
            .unwrap();
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        let file = Arc::new(file);
        write_blob(std::slice::from_ref(&file), 100, 9, &data, 64).unwrap();
        let l = loc(9, data.len() as u64, 64);
        for start in [0u64, 1, 63, 64, 65, 500, 999] {
            for end in [start + 1, start + 64, start + 130, 1000] {
                let end = end.min(1000);
                if end <= start {
                    continue;
                }
                let mut out = vec![0u8; (end - start) as usize];
                read_blob_range(&*file, &l, start..end, &mut out, &|| {
                    format!("{start}..{end}")
                })
                .unwrap();
                assert_eq!(
                    &out[..],
                    &data[start as usize..end as usize],
                    "{start}..{end}"
                );
            }
        }
    }

    #[test]
    fn flipped_bit_is_corrupt_never_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v");
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let data = vec![5u8; 300];
        let file = Arc::new(file);
        write_blob(std::slice::from_ref(&file), 0, 1, &data, 100).unwrap();
        // flip a byte inside block 1 (offset: header 32 + block0 100 + sum 32 + 10)
        let mut b = [0u8; 1];
        std::os::unix::fs::FileExt::read_exact_at(&*file, &mut b, 32 + 132 + 10).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&*file, &[b[0] ^ 1], 32 + 132 + 10).unwrap();
        let l = BlobLocation {
            blob: 1,
            volume: 1,
            offset: 0,
            len: 300,
            block_size: 100,
        };
        let mut out = vec![0u8; 300];
        let err = read_blob_range(&*file, &l, 0..300, &mut out, &|| "k".into()).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        // block 0 and 2 still read
        let mut out = vec![0u8; 100];
        read_blob_range(&*file, &l, 0..100, &mut out, &|| "k".into()).unwrap();
        read_blob_range(&*file, &l, 200..300, &mut out, &|| "k".into()).unwrap();
        // wrong blob id in metadata is caught by the header check
        let wrong = BlobLocation { blob: 2, ..l };
        assert!(read_blob_range(&*file, &wrong, 0..100, &mut out, &|| "k".into()).is_err());
    }

    #[test]
    fn header_round_trip() {
        let h = blob_header(7, 123, 4096);
        assert_eq!(parse_blob_header(&h), Some((7, 123, 4096)));
        let mut bad = h;
        bad[9] ^= 1;
        assert_eq!(parse_blob_header(&bad), None);
        assert_eq!(blob_disk_len(0, 4096), 32);
        assert_eq!(blob_disk_len(4097, 4096), 32 + 4097 + 64);
    }
}
