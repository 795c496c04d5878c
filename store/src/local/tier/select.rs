//! Which volumes the lifecycle rules send to the remote tier.
//!
//! Volumes move whole, and extents are shared (copies, renames, versions that changed part of
//! a file), so the unit of decision is the blob: a blob *belongs* to every version (and every
//! part of an unfinished multipart upload) with an extent on it. A sealed local volume moves
//! when every version its live blobs belong to is selected by the rules, and none belongs to
//! an upload in progress: a blob shared by a selected version and one that is not keeps its
//! whole volume local. Blobs no version references any more (gc's to reclaim) do not hold a
//! volume back. [`eligible`] is that decision, pure; [`scan`] gathers its inputs.

use std::collections::{HashMap, HashSet};

use crate::error::Result;
use crate::local::meta::{BlobRow, Meta};
use crate::local::records::{
    decode, parse_version_key, table, Layout, VersionRecord, VolumeRecord, VolumeState,
};
use crate::local::tier::rules::{LifecycleRules, VersionFacts};
use crate::local::volume::BlobLocation;

/// The sealed local volumes that may move, in id order: each has at least one live blob, and
/// none of its blobs with references is in `pinned`.
pub fn eligible(
    volumes: &[VolumeRecord],
    blobs: &HashMap<u64, Vec<BlobRow>>,
    pinned: &HashSet<u64>,
) -> Vec<u64> {
    let mut out: Vec<u64> = volumes
        .iter()
        .filter(|v| v.state == VolumeState::Sealed && !matches!(v.layout, Layout::Remote(_)))
        .filter(|v| {
            let rows = blobs.get(&v.id).map(Vec::as_slice).unwrap_or(&[]);
            let referenced: Vec<&BlobRow> = rows.iter().filter(|(_, refs, _)| *refs > 0).collect();
            !referenced.is_empty() && referenced.iter().all(|(l, _, _)| !pinned.contains(&l.blob))
        })
        .map(|v| v.id)
        .collect();
    out.sort_unstable();
    out
}

/// Walks version rows (a key's versions newest first, keys in order) and tells `visit` each
/// data version's key, record and whether the rules select it at `now`; `accessed` gives a
/// key's recorded access time (ns, 0: none), asked once per key with data.
pub(crate) fn walk_selected(
    rows: impl Iterator<Item = Result<(sled::IVec, sled::IVec)>>,
    mut accessed: impl FnMut(&str) -> Result<u64>,
    rules: &LifecycleRules,
    now: u64,
    mut visit: impl FnMut(&str, &VersionRecord, bool),
) -> Result<()> {
    let mut key: Option<String> = None;
    // The newer version of the key seen last (versions come newest first).
    let mut newer_written = 0u64;
    let mut first = true;
    let mut accessed_at: Option<u64> = None;
    for row in rows {
        let (k, v) = row?;
        let (name, vid) = parse_version_key(&k)?;
        if key.as_deref() != Some(name) {
            key = Some(name.to_string());
            first = true;
            newer_written = 0;
            accessed_at = None;
        }
        let rec: VersionRecord = decode(&v)?;
        let written = (vid.0 >> 64) as u64;
        let current = first && !rec.delete_marker;
        if !rec.delete_marker && !rec.extents.is_empty() {
            let at = match accessed_at {
                Some(a) => a,
                None => {
                    let t = accessed(name)?;
                    accessed_at = Some(t);
                    t
                }
            };
            let facts = VersionFacts {
                written,
                current,
                superseded: newer_written,
                accessed: at,
            };
            visit(name, &rec, rules.selects(name, &facts, now));
        }
        first = false;
        newer_written = written;
    }
    Ok(())
}

/// The blobs that must stay local at `now`: those of every version the rules do not select,
/// and of every part of an upload in progress.
pub fn pinned_blobs(meta: &Meta, rules: &LifecycleRules, now: u64) -> Result<HashSet<u64>> {
    let mut pinned = HashSet::new();
    walk_selected(
        meta.range(vec![table::VERSION], Some(vec![table::VERSION + 1])),
        |key| Ok(meta.key_times(key)?.accessed.map(nanos_of).unwrap_or(0)),
        rules,
        now,
        |_, rec, selected| {
            if !selected {
                pinned.extend(rec.extents.iter().filter_map(|e| e.blob_id()));
            }
        },
    )?;
    for u in meta.uploads("")? {
        for (_, part) in meta.parts(&u.upload_id)? {
            pinned.extend(part.extents.iter().filter_map(|e| e.blob_id()));
        }
    }
    Ok(pinned)
}

fn nanos_of(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos().min(u64::MAX as u128) as u64)
        .unwrap_or(0)
}

/// What the lifecycle daemon does next: volumes to move whole, and mixed volumes whose
/// selected blobs are worth repacking into a volume of their own (repack.rs).
#[derive(Debug, Default)]
pub struct Plan {
    pub whole: Vec<(u64, Vec<BlobLocation>)>,
    pub repack: Vec<(u64, Vec<BlobLocation>)>,
}

/// The plan at `now`.
pub fn plan(
    meta: &Meta,
    volumes: &[VolumeRecord],
    rules: &LifecycleRules,
    now: u64,
) -> Result<Plan> {
    if rules.rules.is_empty() {
        return Ok(Plan::default());
    }
    let pinned = pinned_blobs(meta, rules, now)?;
    let blobs = meta.blobs_by_volume()?;
    let whole = eligible(volumes, &blobs, &pinned)
        .into_iter()
        .map(|id| {
            let locs = blobs
                .get(&id)
                .map(|b| b.iter().map(|(l, _, _)| *l).collect())
                .unwrap_or_default();
            (id, locs)
        })
        .collect();
    let repack = super::repack::candidates(volumes, &blobs, &pinned, super::repack::MIN_SHARE);
    Ok(Plan { whole, repack })
}

/// The volumes to move now, with their blobs.
pub fn scan(
    meta: &Meta,
    volumes: &[VolumeRecord],
    rules: &LifecycleRules,
    now: u64,
) -> Result<Vec<(u64, Vec<BlobLocation>)>> {
    Ok(plan(meta, volumes, rules, now)?.whole)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::records::RemoteObject;

    fn vol(id: u64, state: VolumeState, remote: bool) -> VolumeRecord {
        VolumeRecord {
            id,
            state,
            size: 1000,
            created: 0,
            layout: if remote {
                Layout::Remote(RemoteObject {
                    key: "k".into(),
                    size: 1000,
                    etag: String::new(),
                    blake3: [0; 32],
                })
            } else {
                Layout::Replicated { disks: vec![0] }
            },
            verified_at: 0,
        }
    }

    fn row(volume: u64, blob: u64, refs: u64) -> BlobRow {
        (
            BlobLocation {
                blob,
                volume,
                offset: 64,
                len: 10,
                block_size: 65536,
            },
            refs,
            0,
        )
    }

    #[test]
    fn a_volume_moves_only_when_no_live_blob_of_it_is_pinned() {
        let vols = vec![
            vol(1, VolumeState::Sealed, false),
            vol(2, VolumeState::Sealed, false),
            vol(3, VolumeState::Open, false),
            vol(4, VolumeState::Sealed, true),
            vol(5, VolumeState::Sealed, false),
            vol(6, VolumeState::Sealed, false),
        ];
        let blobs: HashMap<u64, Vec<BlobRow>> = [
            (1, vec![row(1, 10, 1), row(1, 11, 2)]),
            (2, vec![row(2, 20, 1), row(2, 21, 1)]),
            (3, vec![row(3, 30, 1)]),
            (4, vec![row(4, 40, 1)]),
            (5, vec![row(5, 50, 0)]),
            (6, vec![row(6, 60, 1), row(6, 61, 0)]),
        ]
        .into_iter()
        .collect();
        // Blob 21 is shared with a version the rules keep; blob 61 is unreferenced.
        let pinned: HashSet<u64> = [21, 61].into_iter().collect();
        assert_eq!(eligible(&vols, &blobs, &pinned), vec![1, 6]);
        assert_eq!(eligible(&vols, &blobs, &HashSet::new()), vec![1, 2, 6]);
    }
}
