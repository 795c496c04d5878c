//! Repacking mixed volumes for the lifecycle daemon. Volumes move to the bucket whole
//! (select.rs), so a sealed volume holding both data the rules select and data they keep
//! local (written at the same time, read at different times) would never move. Such a volume,
//! when its selected blobs are at least [`MIN_SHARE`] of it, has those blobs copied into a new
//! volume of their own, which the daemon's next scan finds whole and tiers; the old volume's
//! copies become garbage that gc compacts.
//!
//! Copying a blob changes the volume lineage its bytes count under in the per-prefix rollups
//! (`meta::rollup`), so the repack must know every version that references each blob it
//! moves. It starts a watch on reference counts ([`Meta::watch_refs`]), then reads a view of
//! the metadata (`meta::pinned`, no lock held) for the versions referencing the candidate
//! blobs and whether the rules select each, copies the blobs (each region verified), and
//! commits ([`Meta::repack_blobs`]): only blobs no commit touched since the watch began move,
//! with their versions' bytes moved from the old volume's lineage to the new one's in the same
//! log record. A crash before the commit leaves the new volume with nothing referenced in it
//! (gc deletes it); after it, a sealed volume like any other.
//!
//! [`Meta::watch_refs`]: crate::local::meta::Meta::watch_refs
//! [`Meta::repack_blobs`]: crate::local::meta::Meta::repack_blobs

use std::collections::{HashMap, HashSet};

use crate::error::Result;
use crate::local::gc::copy_regions;
use crate::local::meta::{BlobRow, RepackGroup};
use crate::local::records::{
    decode, key_times_key, table, KeyTimesRecord, Layout, PartRecord, VolumeRecord, VolumeState,
};
use crate::local::tier::rules::LifecycleRules;
use crate::local::tier::select::walk_selected;
use crate::local::volume::{blob_disk_len, BlobLocation, VOLUME_HEADER_LEN};
use crate::local::Inner;

/// A mixed volume is repacked when its selected blobs take at least this share of its bytes.
pub const MIN_SHARE: f64 = 0.25;

/// Sealed local volumes that hold both blobs the rules select and blobs they keep local
/// (`pinned`), with selected blobs of at least `min_share` of the volume: (volume, its
/// selected referenced blobs), the most selected bytes first (pure).
pub fn candidates(
    volumes: &[VolumeRecord],
    blobs: &HashMap<u64, Vec<BlobRow>>,
    pinned: &HashSet<u64>,
    min_share: f64,
) -> Vec<(u64, Vec<BlobLocation>)> {
    let mut out: Vec<(u64, u64, Vec<BlobLocation>)> = Vec::new();
    for v in volumes {
        if v.state != VolumeState::Sealed
            || matches!(v.layout, Layout::Remote(_))
            || v.size <= VOLUME_HEADER_LEN
        {
            continue;
        }
        let rows = blobs.get(&v.id).map(Vec::as_slice).unwrap_or(&[]);
        let referenced = rows.iter().filter(|(_, refs, _)| *refs > 0);
        let (kept, movable): (Vec<&BlobRow>, Vec<&BlobRow>) =
            referenced.partition(|(l, _, _)| pinned.contains(&l.blob));
        // Nothing kept: the volume moves whole. Nothing selected: it stays.
        if kept.is_empty() || movable.is_empty() {
            continue;
        }
        let bytes: u64 = movable
            .iter()
            .map(|(l, _, _)| blob_disk_len(l.len, l.block_size))
            .sum();
        if bytes as f64 >= min_share * v.size as f64 {
            out.push((v.id, bytes, movable.iter().map(|(l, _, _)| *l).collect()));
        }
    }
    out.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    out.into_iter().map(|(id, _, locs)| (id, locs)).collect()
}

/// What a repack did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repacked {
    /// The new volume.
    pub volume: u64,
    pub blobs: u64,
    /// Bytes copied (blob regions).
    pub bytes: u64,
}

/// The versions (key, extent bytes) that reference each of `candidates`, and the candidates
/// the rules keep local (a version not selected, or a part of an upload in progress), as of a
/// view taken now.
type References = (HashMap<u64, Vec<(String, u64)>>, HashSet<u64>);

fn references(
    inner: &Inner,
    candidates: &HashSet<u64>,
    rules: &LifecycleRules,
    now: u64,
) -> Result<References> {
    let view = inner.meta.pinned();
    let mut refs: HashMap<u64, Vec<(String, u64)>> = HashMap::new();
    let mut pinned = HashSet::new();
    let accessed = |key: &str| -> Result<u64> {
        let k = key_times_key(key);
        let end = crate::key::prefix_successor(&k);
        match view.range(k.clone(), end).next() {
            Some(row) => {
                let (rk, v) = row?;
                if rk[..] == k[..] {
                    Ok(decode::<KeyTimesRecord>(&v)?.accessed)
                } else {
                    Ok(0)
                }
            }
            None => Ok(0),
        }
    };
    walk_selected(
        view.range(vec![table::VERSION], Some(vec![table::VERSION + 1])),
        accessed,
        rules,
        now,
        |key, rec, selected| {
            for e in &rec.extents {
                let Some(b) = e.blob_id().filter(|b| candidates.contains(b)) else {
                    continue;
                };
                if selected {
                    refs.entry(b).or_default().push((key.to_string(), e.len));
                } else {
                    pinned.insert(b);
                }
            }
        },
    )?;
    for row in view.range(vec![table::PART], Some(vec![table::PART + 1])) {
        let (_, v) = row?;
        let part: PartRecord = decode(&v)?;
        pinned.extend(
            part.extents
                .iter()
                .filter_map(|e| e.blob_id())
                .filter(|b| candidates.contains(b)),
        );
    }
    Ok((refs, pinned))
}

/// Repacks the selected blobs of each volume of `volumes` ((volume, its selected blobs)) into
/// a new volume per volume, with one watch, one scan of a view and one commit for them all
/// (see the module docs). Returns what moved; a volume whose blobs did not verify, became kept
/// or were touched meanwhile moves nothing (nothing at all moves while another repack is under
/// way).
pub(crate) fn repack(
    inner: &Inner,
    rules: &LifecycleRules,
    now: u64,
    volumes: &[(u64, Vec<BlobLocation>)],
) -> Result<Vec<Repacked>> {
    if volumes.is_empty() || !inner.meta.watch_refs() {
        return Ok(Vec::new());
    }
    // Per volume copied: the group to commit, and the bytes copied.
    let mut groups: Vec<(RepackGroup, u64)> = Vec::new();
    let prepared = (|| -> Result<HashMap<u64, Vec<(String, u64)>>> {
        let candidates: HashSet<u64> = volumes
            .iter()
            .flat_map(|(_, locs)| locs.iter().map(|l| l.blob))
            .collect();
        let (refs, pinned) = references(inner, &candidates, rules, now)?;
        for (id, movable) in volumes {
            let locs: Vec<BlobLocation> = movable
                .iter()
                .filter(|l| !pinned.contains(&l.blob) && refs.contains_key(&l.blob))
                .copied()
                .collect();
            if locs.is_empty() {
                continue;
            }
            let bytes: u64 = locs
                .iter()
                .map(|l| blob_disk_len(l.len, l.block_size))
                .sum();
            let (vol, files) = inner
                .disks
                .create_sealed_volume(&inner.meta, VOLUME_HEADER_LEN + bytes)?;
            match copy_regions(inner, *id, &locs, vol, &files) {
                Ok(Some(moves)) => groups.push(((*id, vol, moves), bytes)),
                Ok(None) => discard(inner, vol),
                Err(e) => {
                    discard(inner, vol);
                    return Err(e);
                }
            }
        }
        Ok(refs)
    })();
    let refs = match prepared {
        Ok(refs) if !groups.is_empty() => refs,
        other => {
            inner.meta.unwatch_refs();
            for ((_, vol, _), _) in &groups {
                discard(inner, *vol);
            }
            return other.map(|_| Vec::new());
        }
    };
    // The kill -9 tests widen the window between the copies and the commit.
    super::mover::test_pause();
    let commit: Vec<RepackGroup> = groups.iter().map(|(g, _)| g.clone()).collect();
    let moved = inner.meta.repack_blobs(&commit, &refs)?;
    let mut out = Vec::new();
    for (((_, vol, _), bytes), blobs) in groups.iter().zip(moved) {
        if blobs.is_empty() {
            discard(inner, *vol);
        } else {
            out.push(Repacked {
                volume: *vol,
                blobs: blobs.len() as u64,
                bytes: *bytes,
            });
        }
    }
    Ok(out)
}

/// Removes a new volume nothing points at (gc would, later).
fn discard(inner: &Inner, vol: u64) {
    if let Err(e) = inner.disks.delete_volume(&inner.meta, vol) {
        tracing::warn!(volume = vol, error = %e, "cannot remove an unused repack volume; gc removes it later");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vol(id: u64, size: u64) -> VolumeRecord {
        VolumeRecord {
            id,
            state: VolumeState::Sealed,
            size,
            created: 0,
            layout: Layout::Replicated { disks: vec![0] },
            verified_at: 0,
        }
    }

    fn row(volume: u64, blob: u64, len: u64, refs: u64) -> BlobRow {
        (
            BlobLocation {
                blob,
                volume,
                offset: 64,
                len,
                block_size: 65536,
            },
            refs,
            0,
        )
    }

    #[test]
    fn mixed_volumes_with_enough_selected_bytes_are_candidates() {
        let vols = vec![
            vol(1, 10_000),
            vol(2, 10_000),
            vol(3, 10_000),
            vol(4, 10_000),
        ];
        let blobs: HashMap<u64, Vec<BlobRow>> = [
            // Half selected, half kept: a candidate with its selected blob.
            (1, vec![row(1, 10, 4000, 1), row(1, 11, 4000, 1)]),
            // Selected blobs under a quarter of the volume: not worth it.
            (2, vec![row(2, 20, 1000, 1), row(2, 21, 8000, 1)]),
            // Nothing kept: moves whole, not repacked.
            (3, vec![row(3, 30, 4000, 1)]),
            // The kept blob is unreferenced garbage: moves whole too.
            (4, vec![row(4, 40, 4000, 1), row(4, 41, 4000, 0)]),
        ]
        .into_iter()
        .collect();
        let pinned: HashSet<u64> = [11, 21, 41].into_iter().collect();
        let got = candidates(&vols, &blobs, &pinned, MIN_SHARE);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, 1);
        assert_eq!(
            got[0].1.iter().map(|l| l.blob).collect::<Vec<_>>(),
            vec![10]
        );
    }
}
