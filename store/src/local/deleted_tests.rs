//! The table of deleted keys (`d`, store format 3): every commit that changes which version
//! of a key is newest keeps it equal to "the keys whose newest version is a delete marker",
//! across reopens, and a store of format 2 gets it at open.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use super::*;
use crate::local::records::{decode, parse_version_key, table, DeletedRecord, VersionRecord};
use crate::local::version::LocalVersion;
use bytes::Bytes;

/// What the `d` table must hold, from the version table: each key whose newest row is a
/// delete marker, with that marker's id.
fn deleted_by_versions(store: &LocalStore) -> BTreeMap<String, u128> {
    let meta = &store.inner.meta;
    let mut out = BTreeMap::new();
    let mut last: Option<String> = None;
    for row in meta.range(vec![table::VERSION], Some(vec![table::VERSION + 1])) {
        let (k, v) = row.unwrap();
        let (key, vid) = parse_version_key(&k).unwrap();
        if last.as_deref() == Some(key) {
            continue;
        }
        last = Some(key.to_string());
        let rec: VersionRecord = decode(&v).unwrap();
        if rec.delete_marker {
            out.insert(key.to_string(), vid.0);
        }
    }
    out
}

/// The `d` table as it is.
fn deleted_table(store: &LocalStore) -> BTreeMap<String, u128> {
    let meta = &store.inner.meta;
    meta.range(vec![table::DELETED], Some(vec![table::DELETED + 1]))
        .map(|row| {
            let (k, v) = row.unwrap();
            let rec: DeletedRecord = decode(&v).unwrap();
            (String::from_utf8(k[1..].to_vec()).unwrap(), rec.marker)
        })
        .collect()
}

/// The `d` table is exact, and no key has a row in both `c` and `d`.
fn check(store: &LocalStore, when: &str) {
    let want = deleted_by_versions(store);
    assert_eq!(deleted_table(store), want, "d table {when}");
    for key in want.keys() {
        assert!(
            store.inner.meta.current(key).unwrap().is_none(),
            "{key} is in c and d {when}"
        );
    }
}

async fn put(store: &LocalStore, key: &str, body: &str) -> VersionId {
    let body = Bytes::from(body.to_string());
    store
        .put(key, body.into(), PutOptions::default())
        .await
        .unwrap()
        .version
}

/// Every kind of change that moves a key between live and deleted, each followed by a check.
async fn history(store: &LocalStore) -> Vec<SystemTime> {
    let mut moments = Vec::new();
    let mut step = |store: &LocalStore, what: &str| {
        check(store, what);
        moments.push(SystemTime::now());
    };
    for i in 0..6 {
        put(store, &format!("p/k{i}"), "one").await;
        put(store, &format!("p/k{i}"), "two").await;
    }
    step(store, "after puts");
    store.delete("p/k0").await.unwrap();
    store.delete("p/k1").await.unwrap();
    store.delete("p/absent").await.unwrap();
    step(store, "after deletes");
    // A put on a deleted key.
    put(store, "p/k0", "three").await;
    step(store, "after an undelete by put");
    // A rename: a marker on the source, a version on the target (a deleted key).
    store
        .rename("p/k2", "p/k1", RenameOptions::default())
        .await
        .unwrap();
    step(store, "after a rename onto a deleted key");
    // A batch: a copy onto a deleted key (restore's undelete) and a conditional delete.
    let results = store
        .change_many(&[
            Change::Copy {
                src: "p/k3".into(),
                dst: "p/k2".into(),
                opts: CopyOptions::default(),
            },
            Change::DeleteIf {
                key: "p/k4".into(),
                condition: Condition::None,
            },
        ])
        .await
        .unwrap();
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    step(store, "after a batch");
    // A multipart upload completed onto a deleted key.
    let id = store
        .create_multipart("p/k4", PutOptions::default())
        .await
        .unwrap();
    let part = store
        .upload_part("p/k4", &id, 1, Bytes::from_static(b"mp").into())
        .await
        .unwrap();
    let parts = [CompletedPart {
        part_number: part.part_number,
        etag: part.etag,
    }];
    store.complete_multipart("p/k4", &id, &parts).await.unwrap();
    step(store, "after a multipart upload");
    // Removing versions for good: a newest marker (the key is live again), a newest live
    // version over a marker (deleted again), every version of a key.
    store.delete("p/k5").await.unwrap();
    let newest = |store: &LocalStore, key: &str| {
        let (v, _): (LocalVersion, VersionRecord) = store.inner.meta.newest(key).unwrap().unwrap();
        v.id()
    };
    store
        .delete_version("p/k5", newest(store, "p/k5"))
        .await
        .unwrap();
    step(store, "after removing a newest marker");
    store.delete("p/k3").await.unwrap();
    put(store, "p/k3", "again").await;
    store
        .delete_version("p/k3", newest(store, "p/k3"))
        .await
        .unwrap();
    step(store, "after removing a newest version over a marker");
    while store.inner.meta.newest("p/k3").unwrap().is_some() {
        store
            .delete_version("p/k3", newest(store, "p/k3"))
            .await
            .unwrap();
    }
    step(store, "after removing every version of a key");
    assert!(!deleted_table(store).contains_key("p/k3"));
    // And keys left deleted at the end.
    store.delete("p/k5").await.unwrap();
    store.delete("p/k0").await.unwrap();
    step(store, "after the last deletes");
    moments
}

#[tokio::test]
async fn every_change_keeps_the_deleted_table_exact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let store = LocalStore::init(&path, LocalConfig::default()).unwrap();
    history(&store).await;
    assert!(!deleted_table(&store).is_empty());
    store.close().unwrap();
    let store = LocalStore::open(&path).unwrap();
    check(&store, "after a reopen");
    // Keys deleted before the reopen: the filter a clean close saved knows their `d` rows,
    // so a put on one removes it.
    for key in deleted_table(&store).into_keys() {
        put(&store, &key, "back").await;
    }
    check(&store, "after putting every deleted key back");
    assert!(deleted_table(&store).is_empty());
    store.close().unwrap();
}

/// Rewrites a closed store as format 2 left it: no `d` rows (and a stale one on a live key,
/// which the migration must not keep), the marker saying format 2.
fn downgrade_to_format_2(path: &Path) {
    let meta = meta::Meta::open(&path.join("meta"), &path.join("wal")).unwrap();
    meta.finish_recovery(|_, _| true).unwrap();
    for row in meta.db.scan_prefix([table::DELETED]) {
        let (k, _) = row.unwrap();
        meta.db.remove(k).unwrap();
    }
    let stale = crate::local::records::deleted_key("p/k1");
    let rec = crate::local::records::encode(&DeletedRecord { marker: 1 }).unwrap();
    meta.db.insert(stale, rec).unwrap();
    meta.db.flush().unwrap();
    drop(meta);
    config::mark_format(path, 2);
}

/// Every object under `p/` as of `at`: (key, version).
async fn listing(store: &LocalStore, at: SystemTime) -> Vec<(String, String)> {
    let req = ListRequest {
        prefix: "p/".into(),
        delimiter: None,
        start_after: None,
        continuation: None,
        max_keys: 1000,
    };
    let page = store.list_at(&req, at).await.unwrap();
    page.objects
        .iter()
        .map(|o| (o.key.clone(), o.version.to_string()))
        .collect()
}

#[tokio::test]
async fn a_format_2_store_gets_its_deleted_table_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let store = LocalStore::init(&path, LocalConfig::default()).unwrap();
    let moments = history(&store).await;
    let want = deleted_by_versions(&store);
    let mut before = Vec::new();
    for at in &moments {
        before.push(listing(&store, *at).await);
    }
    store.close().unwrap();
    downgrade_to_format_2(&path);

    let store = LocalStore::open(&path).unwrap();
    assert!(
        config::is_current_format(&path),
        "the marker says the current format"
    );
    assert_eq!(deleted_table(&store), want, "built from the version table");
    check(&store, "after the migration");
    for (at, was) in moments.iter().zip(&before) {
        assert_eq!(&listing(&store, *at).await, was, "as of {at:?}");
    }
    // The filter knows the migrated rows: putting a deleted key back removes its row.
    let key = want.keys().next().unwrap().clone();
    put(&store, &key, "back").await;
    check(&store, "after a put on a migrated deleted key");
    store.close().unwrap();
}

/// Keys moving between `c` and `d` (deletes and puts back) while listings as of an earlier
/// moment run: every listing is the same, complete one (the seqlock sends a raced page to the
/// walk of the version table).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_as_of_a_moment_are_whole_while_keys_are_deleted_and_put_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let store = std::sync::Arc::new(LocalStore::init(&path, LocalConfig::default()).unwrap());
    for i in 0..300 {
        put(&store, &format!("p/k{i:03}"), "v").await;
    }
    let at = SystemTime::now();
    let want = listing(&store, at).await;
    assert_eq!(want.len(), 300);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flipper = {
        let (store, stop) = (store.clone(), stop.clone());
        tokio::spawn(async move {
            let mut flips = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let key = format!("p/k{:03}", flips % 300);
                store.delete(&key).await.unwrap();
                put(&store, &key, "again").await;
                flips += 1;
            }
            flips
        })
    };
    /// Stops the flipper however the listings end (a failed assertion included).
    struct Stop(std::sync::Arc<std::sync::atomic::AtomicBool>);
    impl Drop for Stop {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    let guard = Stop(stop);
    for round in 0..200 {
        assert_eq!(listing(&store, at).await, want, "listing {round}");
    }
    drop(guard);
    let flips = flipper.await.unwrap();
    assert!(flips > 0, "keys moved while the listings ran");
    check(&store, "after the flips");
}
