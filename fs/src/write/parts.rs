//! Running a commit: the chunks of a writer are cut into segments by source (dirty bytes,
//! base bytes, zeros past the base), `plan.rs` turns them into parts, and this module makes
//! them: uploads (materialized: base bytes and zeros under the dirty bytes), part copies of
//! the base and parts of zeros, a few at once.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use objfs_store::{Body, CompletedPart, GetOptions, ObjectInfo, ObjectStore, MAX_PART_NUMBER};

use super::plan::{plan, ChunkPlan, PieceKind, Planned, Src};
use super::{Chunk, RangeSet, Upload, WriteCtx, Writer};
use crate::error::{FsError, FsResult};

/// Concurrent part uploads of one commit.
const COMMIT_CONCURRENCY: usize = 4;

/// One part of a commit.
enum Job {
    Done(CompletedPart),
    Copy {
        number: u32,
        range: Range<u64>,
    },
    Zeros {
        number: u32,
        len: u64,
    },
    Put {
        number: u32,
        range: Range<u64>,
        /// The chunk's dirty bytes and ranges (relative to `chunk_start`).
        dirty: Option<Arc<(Vec<u8>, RangeSet)>>,
        chunk_start: u64,
    },
}

impl Writer {
    /// The parts of the new version for a file of `n` chunks (the buffers are taken out of
    /// the writer), planned by [`plan`]. Counts what will be uploaded, copied and zeroed.
    fn plan_parts(&mut self, n: u64) -> FsResult<Vec<Job>> {
        let p = self.chunk;
        let mut chunks = std::mem::take(&mut self.chunks);
        let mut layout = Vec::with_capacity(n as usize);
        let mut dirty: HashMap<u64, Arc<(Vec<u8>, RangeSet)>> = HashMap::new();
        let mut done: HashMap<u32, CompletedPart> = HashMap::new();
        for i in 0..n {
            let cs = i * p;
            let range = cs..(cs + p).min(self.size);
            match chunks.remove(&i) {
                Some(Chunk::Uploaded(pi)) => {
                    if pi.size != range.end - range.start {
                        return Err(FsError::Internal(format!(
                            "part {} of {} has {} bytes, expected {}",
                            pi.part_number,
                            self.key,
                            pi.size,
                            range.end - range.start
                        )));
                    }
                    layout.push(ChunkPlan::Fixed {
                        number: pi.part_number,
                    });
                    done.insert(
                        pi.part_number,
                        CompletedPart {
                            part_number: pi.part_number,
                            etag: pi.etag,
                        },
                    );
                }
                Some(Chunk::Dirty(d)) => {
                    layout.push(ChunkPlan::Segments(self.segments(&range, Some(&d.ranges))));
                    dirty.insert(i, Arc::new((d.buf, d.ranges)));
                }
                None => layout.push(ChunkPlan::Segments(self.segments(&range, None))),
                Some(Chunk::Uploading(_)) => {
                    return Err(FsError::Internal("part still uploading".into()));
                }
            }
        }
        let planned = plan(&layout, !self.min_part_size_applies(), MAX_PART_NUMBER)
            .map_err(|e| FsError::Internal(format!("{}: {e}", self.key)))?;
        let mut jobs = Vec::with_capacity(planned.len());
        for x in planned {
            let job = match x {
                Planned::Fixed { number } => Job::Done(done.remove(&number).ok_or_else(|| {
                    FsError::Internal(format!("part {number} was planned twice"))
                })?),
                Planned::Part { number, piece } => {
                    let range = piece.range;
                    let len = range.end - range.start;
                    match piece.kind {
                        PieceKind::Copy => {
                            self.stats.parts_copied += 1;
                            self.stats.bytes_copied += len;
                            Job::Copy { number, range }
                        }
                        PieceKind::Zeros => {
                            self.stats.parts_zeroed += 1;
                            self.stats.bytes_zeroed += len;
                            Job::Zeros { number, len }
                        }
                        PieceKind::Put => {
                            self.stats.parts_uploaded += 1;
                            self.stats.bytes_uploaded += len;
                            Job::Put {
                                number,
                                range,
                                dirty: dirty.get(&piece.chunk).cloned(),
                                chunk_start: piece.chunk * p,
                            }
                        }
                    }
                }
            };
            jobs.push(job);
        }
        Ok(jobs)
    }

    /// Runs `jobs` against the upload `up`, a few at once; the completed parts in order.
    async fn run_parts(
        &self,
        store: &Arc<dyn ObjectStore>,
        up: &Upload,
        jobs: Vec<Job>,
    ) -> FsResult<Vec<CompletedPart>> {
        let base = self.source().cloned();
        let base_valid = self.base_valid;
        futures::stream::iter(jobs)
            .map(|job| {
                let store = store.clone();
                let up = up.clone();
                let base = base.clone();
                async move { run_job(store.as_ref(), &up, base.as_ref(), base_valid, job).await }
            })
            .buffered(COMMIT_CONCURRENCY)
            .try_collect()
            .await
    }

    /// Plans and runs the parts of a file of `n` chunks.
    pub(super) async fn upload_parts(
        &mut self,
        ctx: &WriteCtx,
        up: &Upload,
        n: u64,
    ) -> FsResult<Vec<CompletedPart>> {
        let jobs = self.plan_parts(n)?;
        self.run_parts(&ctx.store, up, jobs).await
    }

    /// The segments of `range` (absolute) by where their bytes come from.
    fn segments(&self, range: &Range<u64>, dirty: Option<&RangeSet>) -> Vec<(Range<u64>, Src)> {
        let cs = (range.start / self.chunk) * self.chunk;
        let rel = (range.start - cs)..(range.end - cs);
        let mut segs: Vec<(Range<u64>, Src)> = Vec::new();
        let mut push = |r: Range<u64>, s: Src| {
            if r.start >= r.end {
                return;
            }
            if let Some(last) = segs.last_mut() {
                if last.1 == s && last.0.end == r.start {
                    last.0.end = r.end;
                    return;
                }
            }
            segs.push((r, s));
        };
        let has_base = self.source().is_some();
        let clean = |g: Range<u64>, push: &mut dyn FnMut(Range<u64>, Src)| {
            let split = if has_base {
                self.base_valid.clamp(g.start, g.end)
            } else {
                g.start
            };
            push(g.start..split, Src::Base);
            push(split..g.end, Src::Zero);
        };
        match dirty {
            None => clean(range.clone(), &mut push),
            Some(ds) => {
                let mut pieces: Vec<(Range<u64>, bool)> = ds
                    .within(&rel)
                    .into_iter()
                    .map(|r| ((cs + r.start)..(cs + r.end), true))
                    .collect();
                pieces.extend(
                    ds.gaps(&rel)
                        .into_iter()
                        .map(|r| ((cs + r.start)..(cs + r.end), false)),
                );
                pieces.sort_by_key(|(r, _)| r.start);
                for (r, is_dirty) in pieces {
                    if is_dirty {
                        push(r, Src::Dirty);
                    } else {
                        clean(r, &mut push);
                    }
                }
            }
        }
        segs
    }

    /// Whether a file of at most one chunk is better made of parts than put whole: where the
    /// backend takes parts of any size and at least [`super::REUSE_MIN`] bytes of it are unchanged
    /// base bytes or zeros (which parts copy or leave as holes instead of uploading).
    pub(super) fn parts_pay(&self) -> bool {
        if self.min_part_size_applies() || self.size < super::REUSE_MIN {
            return false;
        }
        let dirty = match self.chunks.get(&0) {
            Some(Chunk::Dirty(d)) => Some(&d.ranges),
            _ => None,
        };
        let reused: u64 = self
            .segments(&(0..self.size), dirty)
            .iter()
            .filter(|(_, s)| *s != Src::Dirty)
            .map(|(r, _)| r.end - r.start)
            .sum();
        reused >= super::REUSE_MIN
    }

    fn min_part_size_applies(&self) -> bool {
        self.min_part > 0
    }

    /// The whole file (at most one chunk) as bytes.
    pub(super) async fn materialize_small(&mut self, ctx: &WriteCtx) -> FsResult<Bytes> {
        let range = 0..self.size;
        let dirty = match self.chunks.remove(&0) {
            Some(Chunk::Dirty(d)) => Some(Arc::new((d.buf, d.ranges))),
            Some(other) => {
                self.chunks.insert(0, other);
                return Err(FsError::Internal("small file with an uploaded part".into()));
            }
            None => None,
        };
        materialize(
            ctx.store.as_ref(),
            self.source(),
            self.base_valid,
            range,
            dirty.as_deref(),
            0,
        )
        .await
    }
}

/// Part number of sub-part `sub` (0 or 1) of chunk `i`.
pub(super) fn part_number(i: u64, sub: u64) -> FsResult<u32> {
    u32::try_from(2 * i + 1 + sub)
        .ok()
        .filter(|n| *n <= objfs_store::MAX_PART_NUMBER)
        .ok_or_else(|| FsError::TooBig(format!("chunk {i} is past the last part number")))
}

/// Builds bytes `range` (absolute) of the new file: base bytes below `base_valid`, zeros past
/// it, dirty bytes (relative to `chunk_start`) over both.
async fn materialize(
    store: &dyn ObjectStore,
    base: Option<&ObjectInfo>,
    base_valid: u64,
    range: Range<u64>,
    dirty: Option<&(Vec<u8>, RangeSet)>,
    chunk_start: u64,
) -> FsResult<Bytes> {
    let len = (range.end - range.start) as usize;
    let rel = (range.start - chunk_start)..(range.end - chunk_start);
    // Fully dirty: no base read, no copy of zeros.
    if let Some((buf, ranges)) = dirty {
        if ranges.covers(&rel) {
            return Ok(Bytes::copy_from_slice(
                &buf[rel.start as usize..rel.end as usize],
            ));
        }
    }
    let mut out = vec![0u8; len];
    if let Some(b) = base {
        let gaps = match dirty {
            Some((_, ranges)) => ranges.gaps(&rel),
            None => vec![rel.clone()],
        };
        let need_start = gaps.first().map(|g| g.start + chunk_start);
        let need_end = gaps.last().map(|g| g.end + chunk_start);
        if let (Some(s), Some(e)) = (need_start, need_end) {
            let e = e.min(base_valid);
            if s < e {
                let got = store
                    .get(
                        &b.key,
                        GetOptions {
                            version: Some(b.version.clone()),
                            range: Some(s..e),
                        },
                    )
                    .await?
                    .bytes()
                    .await?;
                if got.len() as u64 != e - s {
                    return Err(FsError::Corrupt(format!(
                        "{}: short read of the previous version",
                        b.key
                    )));
                }
                let dst = (s - range.start) as usize;
                out[dst..dst + got.len()].copy_from_slice(&got);
            }
        }
    }
    if let Some((buf, ranges)) = dirty {
        for r in ranges.within(&rel) {
            let dst = (r.start + chunk_start - range.start) as usize;
            out[dst..dst + (r.end - r.start) as usize]
                .copy_from_slice(&buf[r.start as usize..r.end as usize]);
        }
    }
    Ok(Bytes::from(out))
}

async fn run_job(
    store: &dyn ObjectStore,
    up: &Upload,
    base: Option<&ObjectInfo>,
    base_valid: u64,
    job: Job,
) -> FsResult<CompletedPart> {
    match job {
        Job::Done(p) => Ok(p),
        Job::Zeros { number, len } => {
            let pi = store
                .upload_part_zeros(&up.key, &up.id, number, len)
                .await?;
            Ok(CompletedPart {
                part_number: pi.part_number,
                etag: pi.etag,
            })
        }
        Job::Copy { number, range } => {
            let b = base.ok_or_else(|| FsError::Internal("copy without a base".into()))?;
            let pi = store
                .upload_part_copy(
                    &up.key,
                    &up.id,
                    number,
                    &b.key,
                    Some(b.version.clone()),
                    Some(range),
                )
                .await?;
            Ok(CompletedPart {
                part_number: pi.part_number,
                etag: pi.etag,
            })
        }
        Job::Put {
            number,
            range,
            dirty,
            chunk_start,
        } => {
            let data = materialize(
                store,
                base,
                base_valid,
                range,
                dirty.as_deref(),
                chunk_start,
            )
            .await?;
            let pi = store
                .upload_part(&up.key, &up.id, number, Body::Bytes(data))
                .await?;
            Ok(CompletedPart {
                part_number: pi.part_number,
                etag: pi.etag,
            })
        }
    }
}
