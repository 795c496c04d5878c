//! Commit planning: how the chunks of a writer become the parts of a multipart upload, and
//! running those parts.
//!
//! Each chunk becomes one or two parts (numbered `2i + 1` and `2i + 2`): a chunk the
//! application did not touch is a part copy of the base; a touched one is split where that
//! leaves an unchanged run of the base as a copy of its own, and otherwise materialized (base
//! bytes, dirty bytes over them, zeros past the base) and uploaded.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use objfs_store::{Body, CompletedPart, GetOptions, ObjectInfo, ObjectStore};

use super::{Chunk, RangeSet, Upload, WriteCtx, Writer};
use crate::error::{FsError, FsResult};

/// Concurrent part uploads of one commit.
const COMMIT_CONCURRENCY: usize = 4;

/// Where the bytes of a segment of the new file come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Src {
    Dirty,
    Base,
    Zero,
}

/// One part of a commit.
enum Job {
    Done(CompletedPart),
    Copy {
        number: u32,
        range: Range<u64>,
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
    /// The parts of the new version, chunk by chunk, for a file of `n` chunks (the buffers
    /// are taken out of the writer). Counts what will be uploaded and copied.
    fn plan_parts(&mut self, n: u64) -> FsResult<Vec<Job>> {
        let p = self.chunk;
        let mut chunks = std::mem::take(&mut self.chunks);
        let mut jobs = Vec::new();
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
                    jobs.push(Job::Done(CompletedPart {
                        part_number: pi.part_number,
                        etag: pi.etag,
                    }));
                }
                Some(Chunk::Dirty(d)) => {
                    let segs = self.segments(&range, Some(&d.ranges));
                    let dirty = Arc::new((d.buf, d.ranges));
                    self.plan_chunk(i, &range, segs, Some(dirty), &mut jobs)?;
                }
                None => {
                    let segs = self.segments(&range, None);
                    self.plan_chunk(i, &range, segs, None, &mut jobs)?;
                }
                Some(Chunk::Uploading(_)) => {
                    return Err(FsError::Internal("part still uploading".into()));
                }
            }
        }
        for j in &jobs {
            match j {
                Job::Copy { range, .. } => {
                    self.stats.parts_copied += 1;
                    self.stats.bytes_copied += range.end - range.start;
                }
                Job::Put { range, .. } => {
                    self.stats.parts_uploaded += 1;
                    self.stats.bytes_uploaded += range.end - range.start;
                }
                Job::Done(_) => {}
            }
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
        let base = self.base.clone();
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
        let has_base = self.base.is_some();
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

    /// Turns the segments of chunk `i` into one or two parts.
    fn plan_chunk(
        &self,
        i: u64,
        range: &Range<u64>,
        segs: Vec<(Range<u64>, Src)>,
        dirty: Option<Arc<(Vec<u8>, RangeSet)>>,
        jobs: &mut Vec<Job>,
    ) -> FsResult<()> {
        let cs = i * self.chunk;
        let part = |number: u32, r: Range<u64>, group: &[(Range<u64>, Src)]| -> Job {
            if group.len() == 1 && group[0].1 == Src::Base {
                Job::Copy { number, range: r }
            } else {
                let needs_dirty = group.iter().any(|(_, s)| *s == Src::Dirty);
                Job::Put {
                    number,
                    range: r,
                    dirty: if needs_dirty { dirty.clone() } else { None },
                    chunk_start: cs,
                }
            }
        };
        let whole = |jobs: &mut Vec<Job>| -> FsResult<()> {
            jobs.push(part(part_number(i, 0)?, range.clone(), &segs));
            Ok(())
        };
        if segs.len() <= 1 || self.min_part_size_applies() {
            return whole(jobs);
        }
        // Split after the first segment or before the last one, whichever leaves the longer
        // run of base bytes as a part of its own (a copy).
        let score = |g: &[(Range<u64>, Src)]| -> u64 {
            if g.len() == 1 && g[0].1 == Src::Base {
                g[0].0.end - g[0].0.start
            } else {
                0
            }
        };
        let k = segs.len();
        let a = score(&segs[..1]).max(score(&segs[1..]));
        let b = score(&segs[..k - 1]).max(score(&segs[k - 1..]));
        let cut = if a == 0 && b == 0 {
            return whole(jobs);
        } else if a >= b {
            1
        } else {
            k - 1
        };
        let mid = segs[cut].0.start;
        jobs.push(part(part_number(i, 0)?, range.start..mid, &segs[..cut]));
        jobs.push(part(part_number(i, 1)?, mid..range.end, &segs[cut..]));
        Ok(())
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
            self.base.as_ref(),
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
