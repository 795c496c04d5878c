//! Shard files: one shard of an erasure-coded volume, with a BLAKE3 checksum per 64 KiB chunk.
//!
//! ```text
//! header, 64 bytes (little-endian)
//!   0..8    magic "OBJFSSHD"
//!   8..12   shard format (u32) = 1
//!   12..14  shard index (u16)
//!   14      K (u8)        15  M (u8)
//!   16..24  volume id (u64)
//!   24..32  shard length S (u64)
//!   32..36  chunk size C (u32)
//!   36..60  reserved, zero
//!   60..64  first 4 bytes of BLAKE3(bytes 0..60)
//! data:  S bytes at offset 64
//! table: ceil(S / C) BLAKE3 hashes of 32 bytes at offset 64 + S, one per chunk of the data
//! ```
//!
//! Healthy reads take data straight from a data shard (the blob checksums inside the volume
//! verify it). Degraded reads and scrub verify chunks against the table, so a corrupt shard is
//! never fed to the decoder.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::error::{Result, StoreError};
use crate::local::atomic_file;
use crate::local::erasure::SHARD_CHUNK;

pub const SHARD_MAGIC: &[u8; 8] = b"OBJFSSHD";
pub const SHARD_FORMAT: u32 = 1;
pub const SHARD_HEADER_LEN: u64 = 64;

/// What a shard header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardHeader {
    pub index: u16,
    pub k: u8,
    pub m: u8,
    pub volume: u64,
    pub shard_len: u64,
    pub chunk: u32,
}

impl ShardHeader {
    /// The header of shard `index` of volume `volume`, coded K+M with shards of `shard_len`
    /// bytes and the store's chunk size.
    pub fn new(volume: u64, k: u8, m: u8, shard_len: u64, index: usize) -> ShardHeader {
        ShardHeader {
            index: index as u16,
            k,
            m,
            volume,
            shard_len,
            chunk: SHARD_CHUNK as u32,
        }
    }

    pub fn encode(&self) -> [u8; 64] {
        let mut h = [0u8; 64];
        h[0..8].copy_from_slice(SHARD_MAGIC);
        h[8..12].copy_from_slice(&SHARD_FORMAT.to_le_bytes());
        h[12..14].copy_from_slice(&self.index.to_le_bytes());
        h[14] = self.k;
        h[15] = self.m;
        h[16..24].copy_from_slice(&self.volume.to_le_bytes());
        h[24..32].copy_from_slice(&self.shard_len.to_le_bytes());
        h[32..36].copy_from_slice(&self.chunk.to_le_bytes());
        let sum = blake3::hash(&h[0..60]);
        h[60..64].copy_from_slice(&sum.as_bytes()[0..4]);
        h
    }

    pub fn decode(h: &[u8; 64]) -> Option<ShardHeader> {
        if &h[0..8] != SHARD_MAGIC
            || u32::from_le_bytes(h[8..12].try_into().ok()?) != SHARD_FORMAT
            || h[60..64] != blake3::hash(&h[0..60]).as_bytes()[0..4]
        {
            return None;
        }
        Some(ShardHeader {
            index: u16::from_le_bytes(h[12..14].try_into().ok()?),
            k: h[14],
            m: h[15],
            volume: u64::from_le_bytes(h[16..24].try_into().ok()?),
            shard_len: u64::from_le_bytes(h[24..32].try_into().ok()?),
            chunk: u32::from_le_bytes(h[32..36].try_into().ok()?),
        })
    }

    fn chunks(&self) -> u64 {
        self.shard_len.div_ceil(self.chunk as u64)
    }

    fn table_offset(&self) -> u64 {
        SHARD_HEADER_LEN + self.shard_len
    }
}

/// Writes a complete shard file at `path` atomically (through a temporary name, fsynced,
/// renamed, directory fsynced).
pub fn write_shard(path: &Path, header: ShardHeader, data: &[u8]) -> Result<()> {
    atomic_file::replace_with(path, true, |file| {
        file.write_all_at(&header.encode(), 0)?;
        file.write_all_at(data, SHARD_HEADER_LEN)?;
        let table: Vec<u8> = data
            .chunks(header.chunk as usize)
            .flat_map(|c| *blake3::hash(c).as_bytes())
            .collect();
        file.write_all_at(&table, header.table_offset())
    })
}

/// Reads and checks the header of a shard file.
pub fn read_header(file: &File) -> io::Result<Option<ShardHeader>> {
    let mut h = [0u8; 64];
    file.read_exact_at(&mut h, 0)?;
    Ok(ShardHeader::decode(&h))
}

/// Reads `range` of a shard's data without verification (healthy path).
pub fn read_raw(file: &File, range: std::ops::Range<u64>) -> io::Result<Vec<u8>> {
    let mut out = vec![0u8; (range.end - range.start) as usize];
    file.read_exact_at(&mut out, SHARD_HEADER_LEN + range.start)?;
    Ok(out)
}

/// The chunk-aligned range covering `range` of a shard of `shard_len` bytes.
pub fn chunk_span(range: &std::ops::Range<u64>, shard_len: u64) -> std::ops::Range<u64> {
    let c = SHARD_CHUNK;
    let start = range.start / c * c;
    let end = (range.end.div_ceil(c) * c).min(shard_len);
    start..end
}

/// Reads the chunk-aligned `span` of a shard's data and verifies every chunk in it against the
/// table. `Ok(None)` when any chunk fails (the shard is corrupt there); `Err` for I/O errors.
pub fn read_verified(
    file: &File,
    h: &ShardHeader,
    span: std::ops::Range<u64>,
) -> io::Result<Option<Vec<u8>>> {
    let c = h.chunk as u64;
    if span.start % c != 0 || span.end > h.shard_len || span.start > span.end {
        return Ok(None);
    }
    let data = read_raw(file, span.clone())?;
    let first = span.start / c;
    let n = (span.end - span.start).div_ceil(c);
    let mut table = vec![0u8; (n * 32) as usize];
    file.read_exact_at(&mut table, h.table_offset() + first * 32)?;
    for (i, chunk) in data.chunks(c as usize).enumerate() {
        if blake3::hash(chunk).as_bytes()[..] != table[i * 32..i * 32 + 32] {
            return Ok(None);
        }
    }
    Ok(Some(data))
}

/// Verifies a whole shard file: the chunk indices that fail (empty = healthy), or an error when
/// the header itself is unreadable or does not match.
pub fn verify(file: &File, expect: &ShardHeader) -> Result<Vec<u64>> {
    let h = read_header(file)
        .map_err(|e| StoreError::io("reading a shard header", e))?
        .filter(|h| h == expect)
        .ok_or_else(|| StoreError::Corrupt {
            what: format!(
                "shard {} of volume {:016x} has a bad header",
                expect.index, expect.volume
            ),
        })?;
    let mut bad = Vec::new();
    let c = h.chunk as u64;
    let mut table = vec![0u8; (h.chunks() * 32) as usize];
    file.read_exact_at(&mut table, h.table_offset())
        .map_err(|e| StoreError::io("reading a shard table", e))?;
    let step = 64; // chunks per read (4 MiB)
    let mut i = 0;
    while i < h.chunks() {
        let end = (i + step).min(h.chunks());
        let span = i * c..(end * c).min(h.shard_len);
        match read_raw(file, span) {
            Ok(data) => {
                for (j, chunk) in data.chunks(c as usize).enumerate() {
                    let idx = i as usize + j;
                    if blake3::hash(chunk).as_bytes()[..] != table[idx * 32..idx * 32 + 32] {
                        bad.push(idx as u64);
                    }
                }
            }
            Err(_) => bad.extend(i..end),
        }
        i = end;
    }
    Ok(bad)
}

/// Rewrites chunks of an existing shard file in place (scrub repair), then fsyncs it.
pub fn rewrite_chunks(file: &File, h: &ShardHeader, data_at: u64, data: &[u8]) -> Result<()> {
    let ctx = |e| {
        StoreError::io(
            format!("repairing shard {} of volume {:016x}", h.index, h.volume),
            e,
        )
    };
    file.write_all_at(data, SHARD_HEADER_LEN + data_at)
        .map_err(ctx)?;
    let c = h.chunk as u64;
    let first = data_at / c;
    let table: Vec<u8> = data
        .chunks(c as usize)
        .flat_map(|ch| *blake3::hash(ch).as_bytes())
        .collect();
    file.write_all_at(&table, h.table_offset() + first * 32)
        .map_err(ctx)?;
    file.sync_data().map_err(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;

    #[test]
    fn write_verify_and_detect_rot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0000000000000001.s00");
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 239) as u8).collect();
        let h = ShardHeader::new(1, 2, 1, data.len() as u64, 0);
        write_shard(&path, h, &data).unwrap();
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        assert_eq!(read_header(&f).unwrap(), Some(h));
        assert!(verify(&f, &h).unwrap().is_empty());
        let span = chunk_span(&(70_000..70_010), h.shard_len);
        assert_eq!(span, 65_536..131_072);
        assert_eq!(
            read_verified(&f, &h, span.clone()).unwrap().unwrap(),
            &data[65_536..131_072]
        );
        f.write_all_at(&[0xAA], SHARD_HEADER_LEN + 70_000).unwrap();
        assert_eq!(verify(&f, &h).unwrap(), vec![1]);
        assert!(read_verified(&f, &h, span).unwrap().is_none());
        // last, short chunk
        let tail = chunk_span(&(199_999..200_000), h.shard_len);
        assert_eq!(tail.end, 200_000);
        assert!(read_verified(&f, &h, tail).unwrap().is_some());
        let mut fixed = data[65_536..131_072].to_vec();
        fixed[0] = data[65_536];
        rewrite_chunks(&f, &h, 65_536, &fixed).unwrap();
        assert!(verify(&f, &h).unwrap().is_empty());
    }
}
