//! The table of ended versions (`e`, store format 4) and the exact per-snapshot figures built
//! on it: every commit keeps `e` equal to what the version table defines, across reopens (rows
//! in sled and in the log's tables at once) and through the format-3 migration; and what
//! [`exclusive::measure`] reads from it equals what gc's full retention pass counts.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::history::{retention, snapshots};
use crate::local::meta::{ended_rows, VersionLink};
use crate::local::records::{decode, parse_version_key, table, VersionRecord};
use crate::local::retention::tests::tight;
use crate::types::{CompletedPart, ListVersionsRequest};

const KEYS: u8 = 3;

#[derive(Debug, Clone)]
enum Op {
    Put(u8, u8),
    /// A new version sharing the first half of the current one (a part copy) plus new bytes.
    Patch(u8, u8),
    Delete(u8),
    /// Removes the key's n-th version (mod the count) for good.
    DropVersion(u8, u8),
    Rename(u8, u8),
    Copy(u8, u8),
    /// A named snapshot of this moment.
    Snapshot,
    /// A second snapshot of the last snapshot's moment.
    SameMoment,
    /// Close and open again: what was in the log's tables goes into sled.
    Reopen,
}

fn op(with_cross_key: bool) -> impl Strategy<Value = Op> {
    let k = 0..KEYS;
    let simple = prop_oneof![
        4 => (k.clone(), 1u8..40).prop_map(|(k, n)| Op::Put(k, n)),
        2 => (k.clone(), 1u8..40).prop_map(|(k, n)| Op::Patch(k, n)),
        2 => k.clone().prop_map(Op::Delete),
        2 => (k.clone(), any::<u8>()).prop_map(|(k, n)| Op::DropVersion(k, n)),
        2 => Just(Op::Snapshot),
        1 => Just(Op::SameMoment),
        1 => Just(Op::Reopen),
    ];
    if with_cross_key {
        prop_oneof![
            8 => simple,
            1 => (k.clone(), k.clone()).prop_map(|(a, b)| Op::Rename(a, b)),
            1 => (k.clone(), k).prop_map(|(a, b)| Op::Copy(a, b)),
        ]
        .boxed()
    } else {
        simple.boxed()
    }
}

fn key(k: u8) -> String {
    format!("d/k{k}")
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn config() -> LocalConfig {
    LocalConfig {
        volume_size: 1 << 20,
        block_size: 4096,
        blob_size: 64 << 10,
        ..Default::default()
    }
}

/// What the `e` table must hold, from the version table.
fn derived(store: &LocalStore) -> Vec<Vec<u8>> {
    let meta = &store.inner.meta;
    let mut out = Vec::new();
    let mut links: BTreeMap<String, Vec<VersionLink>> = BTreeMap::new();
    for row in meta.range(vec![table::VERSION], Some(vec![table::VERSION + 1])) {
        let (k, v) = row.unwrap();
        let (key, vid) = parse_version_key(&k).unwrap();
        let rec: VersionRecord = decode(&v).unwrap();
        links.entry(key.to_string()).or_default().push(VersionLink {
            version: vid,
            delete_marker: rec.delete_marker,
        });
    }
    for (key, l) in &links {
        out.extend(ended_rows(key, l));
    }
    out.sort();
    out
}

/// The `e` table as it is.
fn ended_table(store: &LocalStore) -> Vec<Vec<u8>> {
    store
        .inner
        .meta
        .range(vec![table::ENDED], Some(vec![table::ENDED + 1]))
        .map(|row| row.unwrap().0.to_vec())
        .collect()
}

fn check(store: &LocalStore, when: &str) {
    assert_eq!(ended_table(store), derived(store), "e table {when}");
}

async fn versions(store: &LocalStore, key: &str) -> Vec<crate::types::VersionInfo> {
    let req = ListVersionsRequest {
        prefix: key.into(),
        max_keys: 10_000,
        ..Default::default()
    };
    let page = store.list_versions(&req).await.unwrap();
    page.versions.into_iter().filter(|v| v.key == key).collect()
}

/// Applies `op` (failures that the op's preconditions allow are ignored).
async fn apply(store: &mut Option<LocalStore>, path: &Path, op: &Op, snaps: &mut Vec<SystemTime>) {
    if let Op::Reopen = op {
        store.take().unwrap().close().unwrap();
        *store = Some(LocalStore::open(path).unwrap());
        return;
    }
    let s = store.as_ref().unwrap();
    match op {
        Op::Put(k, n) => {
            let body = Bytes::from(vec![*n; *n as usize * 100]);
            s.put(&key(*k), body.into(), PutOptions::default())
                .await
                .unwrap();
        }
        Op::Patch(k, n) => {
            let k = key(*k);
            let Ok(cur) = s.head(&k, None).await else {
                return;
            };
            let id = s.create_multipart(&k, PutOptions::default()).await.unwrap();
            let mut parts = Vec::new();
            let half = cur.size / 2;
            if half > 0 {
                let p = s
                    .upload_part_copy(&k, &id, 1, &k, Some(cur.version.clone()), Some(0..half))
                    .await
                    .unwrap();
                parts.push(CompletedPart {
                    part_number: 1,
                    etag: p.etag,
                });
            }
            let body = Bytes::from(vec![*n; 300]);
            let p = s.upload_part(&k, &id, 2, body.into()).await.unwrap();
            parts.push(CompletedPart {
                part_number: 2,
                etag: p.etag,
            });
            s.complete_multipart(&k, &id, &parts).await.unwrap();
        }
        Op::Delete(k) => {
            let _ = s.delete(&key(*k)).await;
        }
        Op::DropVersion(k, n) => {
            let all = versions(s, &key(*k)).await;
            if !all.is_empty() {
                let v = all[*n as usize % all.len()].version.clone();
                s.delete_version(&key(*k), v).await.unwrap();
            }
        }
        Op::Rename(a, b) => {
            let _ = s.rename(&key(*a), &key(*b), Default::default()).await;
        }
        Op::Copy(a, b) => {
            let _ = s.copy(&key(*a), &key(*b), Default::default()).await;
        }
        Op::Snapshot | Op::SameMoment => {
            let now = SystemTime::now();
            let at = match (op, snaps.last()) {
                (Op::SameMoment, Some(&t)) => t,
                _ => now,
            };
            let name = format!("s{}", snaps.len());
            snapshots::create(s, &name, at, now).await.unwrap();
            snaps.push(at);
        }
        Op::Reopen => unreachable!(),
    }
}

fn gc_at(s: &LocalStore, now: SystemTime) {
    let opts = GcOptions {
        delay: Duration::ZERO,
        now: Some(now),
        ..Default::default()
    };
    s.gc_now(opts, |_| {}).unwrap();
}

/// The figures as (bytes, versions) by snapshot name.
fn figures(m: &BTreeMap<String, snapshots::Exclusive>) -> BTreeMap<String, (u64, u64)> {
    m.iter()
        .map(|(n, e)| (n.clone(), (e.bytes, e.versions)))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// After every op, `e` holds exactly the rows the version table defines.
    #[test]
    fn ended_rows_follow_every_commit(ops in proptest::collection::vec(op(true), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let mut store = Some(LocalStore::init(&path, config()).unwrap());
        let mut snaps = Vec::new();
        rt().block_on(async {
            for (i, o) in ops.iter().enumerate() {
                apply(&mut store, &path, o, &mut snaps).await;
                check(store.as_ref().unwrap(), &format!("after op {i} {o:?}"));
            }
        });
        store.take().unwrap().close().unwrap();
    }

    /// What `snapshot list` measures equals what gc's full pass counts at the same moment,
    /// before that pass expires anything and after.
    #[test]
    fn measured_figures_are_the_pass_figures(ops in proptest::collection::vec(op(false), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let mut store = Some(LocalStore::init(&path, config()).unwrap());
        let mut snaps = Vec::new();
        rt().block_on(async {
            retention::save(store.as_ref().unwrap(), &tight()).await.unwrap();
            for o in &ops {
                apply(&mut store, &path, o, &mut snaps).await;
            }
            let s = store.as_ref().unwrap();
            let now = SystemTime::now() + Duration::from_secs(10 * 86_400);
            let before = figures(&exclusive::measure(&s.inner.meta, now).unwrap());
            gc_at(s, now);
            let mut pass = BTreeMap::new();
            for snap in snapshots::list(s).await.unwrap() {
                let e = snap.exclusive.expect("the pass measured it");
                pass.insert(snap.name, (e.bytes, e.versions));
            }
            assert_eq!(before, pass, "measured before gc vs the pass");
            let after = figures(&exclusive::measure(&s.inner.meta, now).unwrap());
            assert_eq!(after, pass, "measured after gc vs the pass");
        });
        store.take().unwrap().close().unwrap();
    }
}

/// The figures of a small history, by hand: two snapshots each alone see one overwritten
/// version; a third at the same moment as the second shares it; the current version is
/// never anyone's alone.
#[tokio::test]
async fn each_snapshot_holds_what_only_it_sees() {
    let dir = tempfile::tempdir().unwrap();
    let s = LocalStore::init(&dir.path().join("s"), config()).unwrap();
    retention::save(&s, &tight()).await.unwrap();
    let put = |n: usize| s.put("k", Bytes::from(vec![1u8; n]).into(), PutOptions::default());
    put(1000).await.unwrap();
    let t1 = SystemTime::now();
    put(2000).await.unwrap();
    let t2 = SystemTime::now();
    put(4000).await.unwrap();
    put(8000).await.unwrap();
    let t3 = SystemTime::now();
    for (name, at) in [("a", t1), ("b", t2), ("b2", t2), ("c", t3)] {
        snapshots::create(&s, name, at, SystemTime::now())
            .await
            .unwrap();
    }
    let now = SystemTime::now() + Duration::from_secs(86_400);
    let m = figures(&exclusive::measure(&s.inner.meta, now).unwrap());
    let want: BTreeMap<String, (u64, u64)> = [
        ("a", (1000, 1)),
        ("b", (0, 0)),
        ("b2", (0, 0)),
        ("c", (0, 0)),
    ]
    .into_iter()
    .map(|(n, f)| (n.to_string(), f))
    .collect();
    assert_eq!(m, want);
    // Within the keep-all window nothing is any snapshot's alone.
    let m = figures(&exclusive::measure(&s.inner.meta, SystemTime::now()).unwrap());
    assert!(m.values().all(|f| *f == (0, 0)), "{m:?}");
    // Deleting b2 leaves b alone with the 2000-byte version.
    snapshots::delete(&s, "b2").await.unwrap();
    let m = figures(&exclusive::measure(&s.inner.meta, now).unwrap());
    assert_eq!(m["b"], (2000, 1), "{m:?}");
    s.close().unwrap();
}

/// A store of format 3 has no `e` table: it is built at open (over a stale row an older
/// build could have left), and the figures are those from before.
#[tokio::test]
async fn a_format_3_store_gets_its_ended_table_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let mut store = Some(LocalStore::init(&path, config()).unwrap());
    let mut snaps = Vec::new();
    let ops = [
        Op::Put(0, 5),
        Op::Put(1, 6),
        Op::Snapshot,
        Op::Patch(0, 7),
        Op::Put(1, 8),
        Op::Delete(2),
        Op::Put(2, 9),
        Op::Snapshot,
        Op::Delete(0),
        Op::Put(1, 10),
    ];
    for o in &ops {
        apply(&mut store, &path, o, &mut snaps).await;
    }
    let s = store.take().unwrap();
    let now = SystemTime::now() + Duration::from_secs(86_400);
    let want = derived(&s);
    assert!(!want.is_empty());
    let before = figures(&exclusive::measure(&s.inner.meta, now).unwrap());
    s.close().unwrap();

    let meta = meta::Meta::open(&path.join("meta"), &path.join("wal")).unwrap();
    meta.finish_recovery(|_, _| true).unwrap();
    for row in meta.db.scan_prefix([table::ENDED]) {
        meta.db.remove(row.unwrap().0).unwrap();
    }
    let stale = crate::local::records::ended_key(
        version::LocalVersion(9),
        "d/k0",
        version::LocalVersion(5),
    );
    meta.db
        .insert(stale, &crate::local::records::ENDED_VALUE[..])
        .unwrap();
    meta.db.flush().unwrap();
    drop(meta);
    config::mark_format(&path, 3);

    let s = LocalStore::open(&path).unwrap();
    assert!(
        config::is_current_format(&path),
        "the marker says the current format"
    );
    assert_eq!(ended_table(&s), want, "built from the version table");
    let after = figures(&exclusive::measure(&s.inner.meta, now).unwrap());
    assert_eq!(after, before);
    s.close().unwrap();
}
