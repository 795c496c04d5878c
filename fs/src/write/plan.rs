//! Which parts a commit uploads, as a pure function of where each byte of the new file comes
//! from: the part plan that makes a version cost what changed.
//!
//! Every chunk of the file is either *fixed* (uploaded in the background as part `2i + 1`) or
//! a list of segments by source: bytes written since the base (dirty), unchanged bytes of the
//! base, or zeros (past the base's end: a truncate up, a write past the end). Each segment
//! becomes a part of its own: a dirty run is uploaded, a base run is a part copy, a run of
//! zeros is a part of zeros (a hole where the store has them). So a small overwrite uploads
//! the bytes written and shares the rest, and growing a file uploads nothing.
//!
//! Limits, and how the plan meets them:
//! * Part numbers increase in file order and the background parts keep theirs, so the chunks
//!   between two fixed parts (a *pool*) share the numbers between them (at least one per chunk
//!   always remains, see [`plan`]). When a pool has more pieces than numbers, the cheapest
//!   neighbours within a chunk are merged: a merged piece is materialized (base bytes and
//!   zeros read and uploaded with the dirty ones), and the cost of a merge is the bytes it
//!   adds to the upload.
//! * A copy or zeros run of at most [`SMALL_MERGE`] bytes beside a piece that is uploaded
//!   anyway is uploaded with it: a few bytes more, one part and up to two extents fewer.
//! * Backends with a minimum part size (S3's 5 MiB) get one part per chunk, as before:
//!   a copy when the chunk is unchanged base, zeros when it is all zeros, else uploaded.
//! * Where there is no minimum, neighbouring copies (and neighbouring zeros) are joined across
//!   chunks at the end, so an untouched stretch of a large file is one part copy (and one
//!   extent) however many chunks it spans.

use std::ops::Range;

/// Where the bytes of a segment of the new file come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Src {
    Dirty,
    Base,
    Zero,
}

/// How a piece becomes a part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceKind {
    /// A part copy of the same range of the base.
    Copy,
    /// A part of zeros.
    Zeros,
    /// Materialized (dirty bytes over base bytes and zeros) and uploaded.
    Put,
}

/// A run of the new file that becomes one part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// The chunk it lies in (the first one, for a copy or zeros joined across chunks; an
    /// uploaded piece never spans chunks).
    pub chunk: u64,
    /// Absolute byte range of the file.
    pub range: Range<u64>,
    pub kind: PieceKind,
}

impl Piece {
    fn len(&self) -> u64 {
        self.range.end - self.range.start
    }

    /// Bytes that merging this piece into an upload adds.
    fn upload_cost(&self) -> u64 {
        match self.kind {
            PieceKind::Put => 0,
            _ => self.len(),
        }
    }
}

/// One chunk of the file at commit time.
#[derive(Debug, Clone)]
pub enum ChunkPlan {
    /// Uploaded already as part `number`.
    Fixed { number: u32 },
    /// Segments by source, in order, covering the chunk, adjacent ones of different sources.
    Segments(Vec<(Range<u64>, Src)>),
}

/// A part of the commit, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Planned {
    /// A part uploaded in the background.
    Fixed { number: u32 },
    /// A part to make now.
    Part { number: u32, piece: Piece },
}

/// Copy and zeros runs up to this size beside uploaded pieces are uploaded with them.
pub const SMALL_MERGE: u64 = 4096;

/// Plans the parts of a file whose chunks are `chunks` (chunk `i` at index `i`), with part
/// numbers up to `max_number`. `fine` is false when the backend has a minimum part size:
/// then every chunk is one part. Fails only if the fixed numbers leave a pool fewer numbers
/// than it has chunks (they are `2i + 1`, which always leaves enough).
pub fn plan(chunks: &[ChunkPlan], fine: bool, max_number: u32) -> Result<Vec<Planned>, String> {
    let mut out = Vec::new();
    let mut pool: Vec<Piece> = Vec::new();
    let mut pool_chunks = 0u64;
    let mut last = 0u32;
    for (i, c) in chunks.iter().enumerate() {
        match c {
            ChunkPlan::Fixed { number } => {
                let budget = number.checked_sub(last + 1).ok_or_else(|| {
                    format!("part {number} of chunk {i} is not after part {last}")
                })?;
                flush_pool(&mut pool, pool_chunks, budget, last, fine, &mut out)?;
                pool_chunks = 0;
                out.push(Planned::Fixed { number: *number });
                last = *number;
            }
            ChunkPlan::Segments(segs) => {
                pool.extend(pieces_of(i as u64, segs, fine));
                pool_chunks += 1;
            }
        }
    }
    let budget = max_number.saturating_sub(last);
    flush_pool(&mut pool, pool_chunks, budget, last, fine, &mut out)?;
    Ok(out)
}

/// The pieces of one chunk before any merging.
fn pieces_of(chunk: u64, segs: &[(Range<u64>, Src)], fine: bool) -> Vec<Piece> {
    let kind = |s: Src| match s {
        Src::Dirty => PieceKind::Put,
        Src::Base => PieceKind::Copy,
        Src::Zero => PieceKind::Zeros,
    };
    let (Some(first), Some(last)) = (segs.first(), segs.last()) else {
        return Vec::new();
    };
    if !fine || segs.len() == 1 {
        let k = if segs.len() == 1 {
            kind(first.1)
        } else {
            PieceKind::Put
        };
        return vec![Piece {
            chunk,
            range: first.0.start..last.0.end,
            kind: k,
        }];
    }
    segs.iter()
        .map(|(r, s)| Piece {
            chunk,
            range: r.clone(),
            kind: kind(*s),
        })
        .collect()
}

/// Fits the pieces of one pool into `budget` numbers after `last`, and numbers them.
fn flush_pool(
    pool: &mut Vec<Piece>,
    chunks: u64,
    budget: u32,
    last: u32,
    fine: bool,
    out: &mut Vec<Planned>,
) -> Result<(), String> {
    if pool.is_empty() {
        return Ok(());
    }
    if (budget as u64) < chunks {
        return Err(format!(
            "{chunks} chunks between parts {last} and {} leave too few part numbers",
            last as u64 + budget as u64 + 1
        ));
    }
    if fine {
        while merge_cheapest(pool, SMALL_MERGE) {}
    }
    while pool.len() > budget as usize {
        if !merge_cheapest(pool, u64::MAX) {
            return Err("no merge fits the parts into their numbers".into());
        }
    }
    if fine {
        join_runs(pool);
    }
    for (k, piece) in pool.drain(..).enumerate() {
        out.push(Planned::Part {
            number: last + 1 + k as u32,
            piece,
        });
    }
    Ok(())
}

/// Merges the neighbours within one chunk whose merge adds the fewest bytes to the upload,
/// if that is at most `limit`. Returns whether it merged.
fn merge_cheapest(pool: &mut Vec<Piece>, limit: u64) -> bool {
    let best = pool
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w[0].chunk == w[1].chunk)
        .map(|(j, w)| (w[0].upload_cost() + w[1].upload_cost(), j))
        .min();
    match best {
        Some((cost, j)) if cost <= limit => {
            let b = pool.remove(j + 1);
            let a = &mut pool[j];
            a.range.end = b.range.end;
            a.kind = PieceKind::Put;
            true
        }
        _ => false,
    }
}

/// Joins neighbouring copies, and neighbouring zeros, across chunks.
fn join_runs(pool: &mut Vec<Piece>) {
    let mut joined: Vec<Piece> = Vec::with_capacity(pool.len());
    for p in pool.drain(..) {
        match joined.last_mut() {
            Some(prev)
                if prev.kind == p.kind
                    && prev.kind != PieceKind::Put
                    && prev.range.end == p.range.start =>
            {
                prev.range.end = p.range.end;
            }
            _ => joined.push(p),
        }
    }
    *pool = joined;
}

#[cfg(test)]
mod tests {
    use super::*;
    use PieceKind::*;
    use Src::*;

    fn segs(v: &[(u64, u64, Src)]) -> ChunkPlan {
        ChunkPlan::Segments(v.iter().map(|(a, b, s)| (*a..*b, *s)).collect())
    }

    fn parts(p: &[Planned]) -> Vec<(u32, Range<u64>, PieceKind)> {
        p.iter()
            .filter_map(|x| match x {
                Planned::Part { number, piece } => Some((*number, piece.range.clone(), piece.kind)),
                Planned::Fixed { .. } => None,
            })
            .collect()
    }

    #[test]
    fn a_small_overwrite_uploads_only_what_was_written() {
        // Four chunks of 100,000 bytes; bytes 150,000..160,000 written.
        let c = [
            segs(&[(0, 100_000, Base)]),
            segs(&[
                (100_000, 150_000, Base),
                (150_000, 160_000, Dirty),
                (160_000, 200_000, Base),
            ]),
            segs(&[(200_000, 300_000, Base)]),
            segs(&[(300_000, 400_000, Base)]),
        ];
        let p = plan(&c, true, 10_000).unwrap();
        assert_eq!(
            parts(&p),
            vec![
                (1, 0..150_000, Copy),
                (2, 150_000..160_000, Put),
                (3, 160_000..400_000, Copy)
            ]
        );
        // With a minimum part size: one part per chunk.
        let p = plan(&c, false, 10_000).unwrap();
        assert_eq!(
            parts(&p),
            vec![
                (1, 0..100_000, Copy),
                (2, 100_000..200_000, Put),
                (3, 200_000..300_000, Copy),
                (4, 300_000..400_000, Copy)
            ]
        );
    }

    #[test]
    fn zeros_become_zero_parts_and_join_across_chunks() {
        let c = [
            segs(&[(0, 30_000, Base), (30_000, 100_000, Zero)]),
            segs(&[(100_000, 200_000, Zero)]),
            segs(&[(200_000, 250_000, Zero), (250_000, 260_000, Dirty)]),
        ];
        let p = plan(&c, true, 10_000).unwrap();
        assert_eq!(
            parts(&p),
            vec![
                (1, 0..30_000, Copy),
                (2, 30_000..250_000, Zeros),
                (3, 250_000..260_000, Put)
            ]
        );
        let p = plan(&c, false, 10_000).unwrap();
        assert_eq!(
            parts(&p),
            vec![
                (1, 0..100_000, Put),
                (2, 100_000..200_000, Zeros),
                (3, 200_000..260_000, Put)
            ]
        );
    }

    #[test]
    fn small_gaps_merge_and_pools_fit_between_fixed_parts() {
        // A 4,000-byte gap between two writes is uploaded with them.
        let c = [segs(&[
            (0, 10_000, Base),
            (10_000, 11_000, Dirty),
            (11_000, 15_000, Base),
            (15_000, 16_000, Dirty),
            (16_000, 30_000, Base),
        ])];
        let p = plan(&c, true, 10_000).unwrap();
        assert_eq!(
            parts(&p),
            vec![
                (1, 0..10_000, Copy),
                (2, 10_000..16_000, Put),
                (3, 16_000..30_000, Copy)
            ]
        );
        // Chunk 1 between fixed parts 1 and 5 has numbers 2..=4: its five pieces merge down
        // to three, the cheapest copy (4,990 bytes) uploaded with the writes around it.
        let c = [
            ChunkPlan::Fixed { number: 1 },
            segs(&[
                (100_000, 105_000, Base),
                (105_000, 105_010, Dirty),
                (105_010, 110_000, Base),
                (110_000, 110_010, Dirty),
                (110_010, 200_000, Base),
            ]),
            ChunkPlan::Fixed { number: 5 },
        ];
        let p = plan(&c, true, 10_000).unwrap();
        assert_eq!(p[0], Planned::Fixed { number: 1 });
        assert_eq!(p[4], Planned::Fixed { number: 5 });
        assert_eq!(
            parts(&p),
            vec![
                (2, 100_000..105_000, Copy),
                (3, 105_000..110_010, Put),
                (4, 110_010..200_000, Copy)
            ]
        );
        // One number left: the chunk is one upload.
        let c = [
            ChunkPlan::Fixed { number: 1 },
            segs(&[
                (100_000, 150_000, Base),
                (150_000, 150_010, Dirty),
                (150_010, 170_000, Base),
                (170_000, 170_010, Dirty),
                (170_010, 200_000, Base),
            ]),
            ChunkPlan::Fixed { number: 3 },
        ];
        let p = plan(&c, true, 10_000).unwrap();
        assert_eq!(parts(&p), vec![(2, 100_000..200_000, Put)]);
        // Numbers that cannot fit the chunks are refused, not misnumbered.
        let c = [
            ChunkPlan::Fixed { number: 2 },
            segs(&[(100, 200, Base)]),
            ChunkPlan::Fixed { number: 3 },
        ];
        assert!(plan(&c, true, 10_000).is_err());
    }
}
