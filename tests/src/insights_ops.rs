//! Random store operations for the insights tests (`tests/tests/insights.rs` and its child
//! process `insights_writer`), and the brute-force count the rollups are compared with.
//!
//! Keys are nested (`dN/sN/kN`, some at the root and some directory markers) so that every
//! level of prefix rollups is exercised; operations cover everything that changes them: puts
//! and overwrites, deletes, `delete_version` of current, noncurrent and marker versions,
//! copies, renames, `change_many`, multipart uploads completed, aborted or left incomplete
//! (with replaced parts), and access times.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use objfs_store::history::{retention, snapshots};
use objfs_store::local::insights::{PrefixUsage, SnapshotOnly, TierBytes};
use objfs_store::local::meta::rollup::RollupTotals;
use objfs_store::local::LocalStore;
use objfs_store::{
    Body, Change, CompletedPart, Condition, CopyOptions, KeyTimes, ListVersionsRequest,
    ObjectStore, PutOptions, RenameOptions,
};
use rand::rngs::StdRng;
use rand::Rng;

use crate::support::{list_versions_all, VListed};

/// A random key of a small nested namespace.
pub fn random_key(rng: &mut StdRng) -> String {
    match rng.random_range(0..10) {
        0 => format!("top{}", rng.random_range(0..3)),
        1 => format!("d{}/", rng.random_range(0..3)),
        _ => format!(
            "d{}/s{}/k{}",
            rng.random_range(0..3),
            rng.random_range(0..3),
            rng.random_range(0..6)
        ),
    }
}

fn body(rng: &mut StdRng) -> Body {
    let len = match rng.random_range(0..4) {
        0 => 0,
        1 => rng.random_range(1..100),
        _ => rng.random_range(100..20_000),
    };
    Body::from(vec![7u8; len])
}

/// One random operation; returns its name (errors such as "no such key" are expected and
/// ignored: they change nothing).
pub async fn random_op(store: &LocalStore, rng: &mut StdRng) -> &'static str {
    let key = random_key(rng);
    let other = random_key(rng);
    let popts = PutOptions::default();
    match rng.random_range(0..100) {
        0..=34 => {
            let _ = store.put(&key, body(rng), popts).await;
            "put"
        }
        35..=44 => {
            let _ = store.delete(&key).await;
            "delete"
        }
        45..=54 => {
            let req = ListVersionsRequest {
                prefix: key.clone(),
                ..Default::default()
            };
            let vs: Vec<_> = list_versions_all(store, &req)
                .await
                .into_iter()
                .filter_map(|e| match e {
                    VListed::Version(v) if v.key == key => Some(v),
                    _ => None,
                })
                .collect();
            if !vs.is_empty() {
                let v = &vs[rng.random_range(0..vs.len())];
                let _ = store.delete_version(&key, v.version.clone()).await;
            }
            "delete_version"
        }
        55..=62 => {
            if key != other {
                let _ = store.copy(&key, &other, CopyOptions::default()).await;
            }
            "copy"
        }
        63..=68 => {
            if key != other {
                let _ = store.rename(&key, &other, RenameOptions::default()).await;
            }
            "rename"
        }
        69..=72 => {
            let third = random_key(rng);
            if key != other && other != third && key != third {
                let changes = vec![
                    Change::Copy {
                        src: key.clone(),
                        dst: other.clone(),
                        opts: CopyOptions::default(),
                    },
                    Change::DeleteIf {
                        key: third,
                        condition: Condition::None,
                    },
                ];
                let _ = store.change_many(&changes).await;
            }
            "change_many"
        }
        73..=84 => {
            multipart(store, rng, &key).await;
            "multipart"
        }
        _ => {
            // Half now (a read of the current object), half days ago: an access older than
            // the object's version counts as never read.
            let at = if rng.random_bool(0.5) {
                SystemTime::now()
            } else {
                let days = rng.random_range(0..400u64);
                SystemTime::now() - Duration::from_secs(days * 86_400 + 60)
            };
            let times = KeyTimes {
                accessed: Some(at),
                changed: None,
            };
            let _ = store.set_key_times(&key, times).await;
            "access"
        }
    }
}

/// A multipart upload: completed (some parts left out or replaced), aborted, or left
/// incomplete.
async fn multipart(store: &LocalStore, rng: &mut StdRng, key: &str) {
    let Ok(id) = store.create_multipart(key, PutOptions::default()).await else {
        return;
    };
    let n = rng.random_range(1..4u32);
    let mut parts = Vec::new();
    for p in 1..=n {
        if let Ok(info) = store.upload_part(key, &id, p, body(rng)).await {
            parts.push(info);
        }
    }
    if rng.random_bool(0.3) {
        // Replace part 1.
        if let Ok(info) = store.upload_part(key, &id, 1, body(rng)).await {
            parts.retain(|p| p.part_number != 1);
            parts.insert(0, info);
        }
    }
    match rng.random_range(0..3) {
        0 => {
            let list: Vec<CompletedPart> = parts
                .iter()
                .filter(|p| p.part_number != 2 || rng.random_bool(0.5))
                .map(|p| CompletedPart {
                    part_number: p.part_number,
                    etag: p.etag.clone(),
                })
                .collect();
            if !list.is_empty() {
                let _ = store.complete_multipart(key, &id, &list).await;
            }
        }
        1 => {
            let _ = store.abort_multipart(key, &id).await;
        }
        _ => {}
    }
}

/// Figures of one prefix counted through the public API: the totals, and the live objects
/// with a recorded access and their bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counted {
    pub totals: RollupTotals,
    pub read_objects: u64,
    pub read_bytes: u64,
}

impl From<&PrefixUsage> for Counted {
    fn from(u: &PrefixUsage) -> Self {
        Counted {
            totals: u.totals,
            read_objects: u.totals.live_objects - u.never_read_objects,
            read_bytes: u.totals.live_bytes - u.never_read_bytes,
        }
    }
}

fn prefixes_of(key: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    for (i, c) in key.char_indices() {
        if c == '/' {
            out.push(key[..=i].to_string());
        }
    }
    out
}

/// Every prefix's figures, counted by listing every version, upload and part.
pub async fn brute_force(store: &LocalStore) -> BTreeMap<String, Counted> {
    let mut out: BTreeMap<String, Counted> = BTreeMap::new();
    let all = list_versions_all(store, &ListVersionsRequest::default()).await;
    for e in all {
        let VListed::Version(v) = e else { continue };
        let read = if v.is_latest && !v.is_delete_marker {
            // Read: an access recorded, not older than the version (docs/FORMAT.md).
            let accessed = store.key_times(&v.key).await.unwrap().accessed;
            accessed.is_some_and(|a| a >= v.modified)
        } else {
            false
        };
        for p in prefixes_of(&v.key) {
            let c = out.entry(p).or_default();
            let t = &mut c.totals;
            if v.is_delete_marker {
                t.delete_markers += 1;
            } else if v.is_latest {
                t.live_objects += 1;
                t.live_bytes += v.size;
                if read {
                    c.read_objects += 1;
                    c.read_bytes += v.size;
                }
            } else {
                t.noncurrent_versions += 1;
                t.noncurrent_bytes += v.size;
            }
        }
    }
    for u in store.list_multipart_uploads("").await.unwrap() {
        let parts = store.list_parts(&u.key, &u.upload_id).await.unwrap();
        for p in prefixes_of(&u.key) {
            let t = &mut out.entry(p).or_default().totals;
            t.uploads += 1;
            t.upload_parts += parts.len() as u64;
            t.upload_bytes += parts.iter().map(|p| p.size).sum::<u64>();
        }
    }
    out
}

/// Compares `du` of every prefix (all depths) with [`brute_force`] and checks `--verify`;
/// panics with the differences.
pub async fn check_rollups(store: &LocalStore, when: &str) {
    let expected = brute_force(store).await;
    let du = store.du("", 64, 0).unwrap();
    let got: BTreeMap<String, Counted> = du
        .prefixes
        .iter()
        .filter(|u| Counted::from(*u) != Counted::default())
        .map(|u| (u.prefix.clone(), Counted::from(u)))
        .collect();
    assert_eq!(got, expected, "{when}: du differs from a brute-force count");
    for u in &du.prefixes {
        let m: u64 = u.modified.iter().map(|c| c.objects).sum();
        assert_eq!(
            m, u.totals.live_objects,
            "{when}: modification histogram of {:?}",
            u.prefix
        );
    }
    let v = store.verify_rollups("").unwrap();
    assert_eq!(v.mismatch_count, 0, "{when}: verify: {:#?}", v.mismatches);
    for p in ["d1/", "d0/s2/"] {
        let v = store.verify_rollups(p).unwrap();
        assert_eq!(
            v.mismatch_count, 0,
            "{when}: verify {p}: {:#?}",
            v.mismatches
        );
    }
}

/// Takes a snapshot of now under a retention policy that keeps nothing by age, so that from
/// here on noncurrent versions whose life holds a snapshot's moment are kept by snapshots
/// alone (what [`check_placement`] counts).
pub async fn snapshot_under_a_bare_policy(store: &LocalStore, name: &str) {
    let bare = retention::Policy {
        keep_all: Duration::ZERO,
        hourly: Duration::ZERO,
        daily: Duration::ZERO,
        deleted: Duration::ZERO,
    };
    retention::save(store, &bare).await.unwrap();
    let now = SystemTime::now();
    snapshots::create(store, name, now, now).await.unwrap();
}

/// Compares the bytes per tier and what only snapshots keep, per prefix, of `du` (rollups)
/// with a count through the public API: every data version's bytes local and replicated
/// (these stores have neither erasure coding nor a remote tier), and the noncurrent versions
/// whose life (from their time to the next newer version's) holds a snapshot's moment as kept
/// only by snapshots (the policy keeps nothing by age once a snapshot exists:
/// [`snapshot_under_a_bare_policy`]). What only snapshots keep is as of gc's last retention
/// pass, so it is compared only `after_gc`. Returns the versions kept only by snapshots.
pub async fn check_placement(store: &LocalStore, when: &str, after_gc: bool) -> u64 {
    let moments: Vec<SystemTime> = snapshots::list(store)
        .await
        .unwrap()
        .iter()
        .map(|s| s.at)
        .collect();
    let mut want_tiers: BTreeMap<String, TierBytes> = BTreeMap::new();
    let mut want: BTreeMap<String, SnapshotOnly> = BTreeMap::new();
    let all = list_versions_all(store, &ListVersionsRequest::default()).await;
    let mut newer: Option<(String, SystemTime)> = None;
    for e in all {
        let VListed::Version(v) = e else { continue };
        // Versions come newest first per key: the life of this one ends at the newer one's time.
        let ends = newer.as_ref().filter(|(k, _)| *k == v.key).map(|(_, t)| *t);
        newer = Some((v.key.clone(), v.modified));
        if v.is_delete_marker {
            continue;
        }
        let snapshot_only =
            ends.is_some_and(|end| moments.iter().any(|m| v.modified <= *m && *m < end));
        for p in prefixes_of(&v.key) {
            want_tiers
                .entry(p.clone())
                .or_default()
                .local_replicated_bytes += v.size;
            if snapshot_only {
                let w = want.entry(p).or_default();
                w.snapshot_only_versions += 1;
                w.snapshot_only_bytes += v.size;
            }
        }
    }
    let report = store.du("", 64, 0).unwrap();
    let got_tiers: BTreeMap<String, TierBytes> = report
        .prefixes
        .iter()
        .filter(|p| p.tiers != TierBytes::default())
        .map(|p| (p.prefix.clone(), p.tiers))
        .collect();
    want_tiers.retain(|_, w| *w != TierBytes::default());
    assert_eq!(
        got_tiers, want_tiers,
        "{when}: du's bytes per tier differ from a count"
    );
    if !after_gc {
        return 0;
    }
    let got: BTreeMap<String, SnapshotOnly> = report
        .prefixes
        .iter()
        .filter(|p| p.snapshot_only != SnapshotOnly::default())
        .map(|p| (p.prefix.clone(), p.snapshot_only))
        .collect();
    want.retain(|_, w| *w != SnapshotOnly::default());
    assert_eq!(
        got, want,
        "{when}: du's snapshot-only figures differ from a count"
    );
    want.get("").map_or(0, |w| w.snapshot_only_versions)
}
