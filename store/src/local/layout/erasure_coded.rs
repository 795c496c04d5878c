//! The erasure-coded layout: K data and M parity shard files (`<id>.sNN`, shard.rs) on K+M
//! distinct disks. Healthy reads take bytes straight from the data shards (the code is
//! systematic; the blob checksums verify them); degraded reads, scrub and drain read verified
//! shard chunks and reconstruct what is missing or corrupt, all through
//! [`ErasureCoded::reconstruct`].

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, IoSliceMut};
use std::ops::Range;
use std::sync::Arc;

use crate::error::{Result, StoreError};
use crate::local::disks::{Disks, FileKind};
use crate::local::erasure::{Scheme, SHARD_CHUNK};
use crate::local::layout::VolumeLayout;
use crate::local::records::{Layout, VolumeRecord};
use crate::local::scrub::ScrubReport;
use crate::local::shard::{self, ShardHeader};
use crate::local::volume::{self, BlobLocation, ReadAt};

/// An erasure-coded volume.
pub(crate) struct ErasureCoded<'a> {
    pool: &'a Disks,
    rec: &'a VolumeRecord,
    k: u8,
    m: u8,
    shard_len: u64,
    disks: &'a [u32],
}

impl<'a> ErasureCoded<'a> {
    pub(crate) fn new(
        pool: &'a Disks,
        rec: &'a VolumeRecord,
        k: u8,
        m: u8,
        shard_len: u64,
        disks: &'a [u32],
    ) -> Self {
        ErasureCoded {
            pool,
            rec,
            k,
            m,
            shard_len,
            disks,
        }
    }

    fn shards(&self) -> usize {
        self.k as usize + self.m as usize
    }

    fn scheme(&self) -> Result<Arc<Scheme>> {
        self.pool.scheme(self.k, self.m)
    }

    /// The header shard `i` of this volume must carry.
    pub(crate) fn header(&self, i: usize) -> ShardHeader {
        ShardHeader::new(self.rec.id, self.k, self.m, self.shard_len, i)
    }

    fn shard_file(&self, i: usize) -> io::Result<Arc<File>> {
        let d = *self
            .disks
            .get(i)
            .ok_or_else(|| io::Error::other("shard has no disk"))?;
        self.pool.file(self.rec.id, d, FileKind::Shard(i as u16))
    }

    /// Writes shard `i` (its whole data) as a new file on disk `disk`.
    pub(crate) fn write_shard(&self, i: usize, disk: u32, data: &[u8]) -> Result<()> {
        let path = self
            .pool
            .file_path(self.rec.id, disk, FileKind::Shard(i as u16));
        shard::write_shard(&path, self.header(i), data)
    }

    /// The chunk-aligned `span` of shard `i`, verified against its header and chunk table;
    /// `None` when the shard is missing, foreign or corrupt there.
    fn read_verified(&self, i: usize, span: Range<u64>) -> Option<Vec<u8>> {
        let f = self.shard_file(i).ok()?;
        match shard::read_header(&f) {
            Ok(Some(h)) if h == self.header(i) => shard::read_verified(&f, &h, span).ok().flatten(),
            _ => None,
        }
    }

    /// The `span` of every shard, the ones in `missing` rebuilt from verified spans of the
    /// others. Fails when fewer than K of the others verify.
    fn reconstruct(&self, span: Range<u64>, missing: &[usize]) -> Result<Vec<Option<Vec<u8>>>> {
        let mut shards: Vec<Option<Vec<u8>>> = (0..self.shards())
            .map(|j| {
                if missing.contains(&j) {
                    None
                } else {
                    self.read_verified(j, span.clone())
                }
            })
            .collect();
        self.scheme()?.reconstruct(&mut shards)?;
        Ok(shards)
    }

    /// The verified `span` of shard `i`: read, or reconstructed when it does not verify.
    fn shard_span(&self, i: usize, span: Range<u64>) -> Result<Vec<u8>> {
        if let Some(d) = self.read_verified(i, span.clone()) {
            return Ok(d);
        }
        let mut shards = self.reconstruct(span, &[i])?;
        shards
            .get_mut(i)
            .and_then(Option::take)
            .ok_or_else(|| StoreError::Corrupt {
                what: format!(
                    "shard {i} of volume {:016x} could not be rebuilt",
                    self.rec.id
                ),
            })
    }

    /// Rebuilds whole shards and damaged chunks found by scrub. `damage` is, per damaged
    /// shard, its bad chunks (`None`: the whole file must be rebuilt).
    fn repair(&self, damage: &[(usize, Option<Vec<u64>>)], rep: &mut ScrubReport) -> Result<()> {
        let chunks = self.shard_len.div_ceil(SHARD_CHUNK);
        let whole: Vec<usize> = damage
            .iter()
            .filter(|(_, b)| b.is_none())
            .map(|(i, _)| *i)
            .collect();
        let mut rebuilt: HashMap<usize, Vec<u8>> = HashMap::new();
        // Rebuild chunk by chunk (bounded memory): 64 chunks (4 MiB) at a time when only whole
        // shards are rebuilt, one at a time when some shard needs chunks repaired in place.
        let step = if whole.len() == damage.len() { 64 } else { 1 };
        let mut c = 0;
        while c < chunks {
            let first = c;
            c = (c + step).min(chunks);
            let span = first * SHARD_CHUNK..(c * SHARD_CHUNK).min(self.shard_len);
            let needs: Vec<usize> = damage
                .iter()
                .filter(|(_, b)| b.as_ref().map(|b| b.contains(&first)).unwrap_or(true))
                .map(|(i, _)| *i)
                .collect();
            if needs.is_empty() {
                continue;
            }
            let Ok(mut shards) = self.reconstruct(span.clone(), &needs) else {
                rep.unrepairable += needs.len() as u64;
                continue;
            };
            for &i in &needs {
                let Some(data) = shards[i].take() else {
                    continue;
                };
                if whole.contains(&i) {
                    rebuilt
                        .entry(i)
                        .or_insert_with(|| Vec::with_capacity(self.shard_len as usize))
                        .extend_from_slice(&data);
                    continue;
                }
                let path =
                    self.pool
                        .file_path(self.rec.id, self.disks[i], FileKind::Shard(i as u16));
                let res = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&path)
                    .map_err(|e| StoreError::io(format!("opening {}", path.display()), e))
                    .and_then(|f| shard::rewrite_chunks(&f, &self.header(i), span.start, &data));
                match res {
                    Ok(()) => rep.repaired += 1,
                    Err(e) => {
                        tracing::error!(error = %e, "could not repair a shard chunk");
                        rep.unrepairable += 1;
                    }
                }
            }
        }
        for i in whole {
            match rebuilt.remove(&i) {
                Some(data) if data.len() as u64 == self.shard_len => {
                    self.write_shard(i, self.disks[i], &data)?;
                    rep.repaired += chunks;
                }
                _ => {}
            }
        }
        self.pool.forget_handles(self.rec.id);
        Ok(())
    }
}

/// Reads logical byte ranges of an erasure-coded volume.
struct ErasureReader<'a> {
    layout: &'a ErasureCoded<'a>,
    /// Verify shard chunks and reconstruct instead of trusting the data shards.
    degraded: bool,
}

impl ErasureReader<'_> {
    fn read_range(&self, range: Range<u64>) -> io::Result<Vec<u8>> {
        let l = self.layout;
        let scheme = l.scheme().map_err(io::Error::other)?;
        let mut out = Vec::with_capacity((range.end - range.start) as usize);
        for (shard_idx, srange) in scheme.pieces(l.shard_len, range) {
            if !self.degraded {
                let f = l.shard_file(shard_idx)?;
                out.extend_from_slice(&shard::read_raw(&f, srange)?);
                continue;
            }
            let span = shard::chunk_span(&srange, l.shard_len);
            let data = l
                .shard_span(shard_idx, span.clone())
                .map_err(io::Error::other)?;
            let from = (srange.start - span.start) as usize;
            let to = (srange.end - span.start) as usize;
            out.extend_from_slice(
                data.get(from..to)
                    .ok_or_else(|| io::Error::other("short shard"))?,
            );
        }
        Ok(out)
    }
}

impl ReadAt for ErasureReader<'_> {
    fn read_vectored_exact_at(&self, bufs: &mut [IoSliceMut<'_>], offset: u64) -> io::Result<()> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let data = self.read_range(offset..offset + total as u64)?;
        let mut at = 0;
        for b in bufs.iter_mut() {
            let n = b.len();
            b.copy_from_slice(&data[at..at + n]);
            at += n;
        }
        Ok(())
    }
}

impl VolumeLayout for ErasureCoded<'_> {
    fn disks(&self) -> &[u32] {
        self.disks
    }

    fn kind(&self, pos: usize) -> FileKind {
        FileKind::Shard(pos as u16)
    }

    fn read(
        &self,
        loc: &BlobLocation,
        range: Range<u64>,
        out: &mut [u8],
        what: &dyn Fn() -> String,
    ) -> Result<()> {
        let healthy = ErasureReader {
            layout: self,
            degraded: false,
        };
        match volume::read_blob_range(&healthy, loc, range.clone(), out, what) {
            Err(StoreError::Corrupt { .. } | StoreError::Io { .. }) => {
                let degraded = ErasureReader {
                    layout: self,
                    degraded: true,
                };
                volume::read_blob_range(&degraded, loc, range, out, what).map_err(|e| match e {
                    StoreError::Corrupt { .. } | StoreError::Io { .. } => StoreError::Corrupt {
                        what: format!(
                            "{}: volume {:016x} cannot be reconstructed ({e})",
                            what(),
                            self.rec.id
                        ),
                    },
                    other => other,
                })
            }
            other => other,
        }
    }

    fn read_region(&self, loc: &BlobLocation, buf: &mut [u8]) -> bool {
        [false, true].into_iter().any(|degraded| {
            let r = ErasureReader {
                layout: self,
                degraded,
            };
            r.read_all_at(buf, loc.offset).is_ok() && volume::verify_region(buf, loc)
        })
    }

    fn scrub(&self, _blobs: &[BlobLocation]) -> Result<ScrubReport> {
        let mut rep = ScrubReport::default();
        // Which chunks of which shard are bad (None = the whole shard file must be rebuilt).
        let mut damage: Vec<(usize, Option<Vec<u64>>)> = Vec::new();
        for (i, &d) in self.disks.iter().enumerate().take(self.shards()) {
            if !self.pool.is_online(d) {
                rep.offline += 1;
                continue;
            }
            rep.bytes_checked += self.shard_len;
            let path = self
                .pool
                .file_path(self.rec.id, d, FileKind::Shard(i as u16));
            match File::open(&path) {
                Ok(f) => match shard::verify(&f, &self.header(i)) {
                    Ok(bad) if bad.is_empty() => {}
                    Ok(bad) => damage.push((i, Some(bad))),
                    Err(_) => damage.push((i, None)),
                },
                Err(_) => damage.push((i, None)),
            }
        }
        let chunks = self.shard_len.div_ceil(SHARD_CHUNK);
        for (_, bad) in &damage {
            rep.bad += bad.as_ref().map(|b| b.len() as u64).unwrap_or(chunks);
        }
        if !damage.is_empty() {
            self.repair(&damage, &mut rep)?;
        }
        Ok(rep)
    }

    fn rebuild_member(&self, pos: usize, target: u32, _blobs: &[BlobLocation]) -> Result<()> {
        let data = self.shard_span(pos, 0..self.shard_len)?;
        self.write_shard(pos, target, &data)
    }

    fn moved(&self, pos: usize, target: u32) -> Layout {
        let mut disks = self.disks.to_vec();
        if let Some(d) = disks.get_mut(pos) {
            *d = target;
        }
        Layout::Erasure {
            k: self.k,
            m: self.m,
            shard_len: self.shard_len,
            disks,
        }
    }
}
