//! Stores written in store format 1 (one sled row per blob, before blob pages): they open,
//! their blob rows become pages, and they read, count references, scrub and collect garbage
//! exactly as a store written by this build, whether the old rows were in sled or only in the
//! log a crash of the older build left.

use std::path::Path;

use super::*;
use crate::local::meta::blob_pages::{parse_page_key, BlobPage};
use crate::local::records::{blob_key, decode, encode, table, BlobRecord};
use bytes::Bytes;
use sled::IVec;

fn small() -> LocalConfig {
    LocalConfig {
        volume_size: 64 << 10,
        block_size: 4096,
        blob_size: 16 << 10,
        ..Default::default()
    }
}

/// Every blob record, by id: (id, record).
type Blobs = Vec<(u64, BlobRecord)>;

fn blobs_of(store: &LocalStore) -> Blobs {
    let mut out: Blobs = store
        .inner
        .meta
        .blobs_by_volume()
        .unwrap()
        .into_values()
        .flatten()
        .map(|(loc, refs, freed_at)| {
            (
                loc.blob,
                BlobRecord {
                    volume: loc.volume,
                    offset: loc.offset,
                    len: loc.len,
                    block_size: loc.block_size,
                    refs,
                    freed_at,
                },
            )
        })
        .collect();
    out.sort_by_key(|(id, _)| *id);
    out
}

/// Rewrites a closed store as format 1 wrote it: every blob page becomes one `b` row per
/// blob, and the marker says format 1. With `through_log` the change is only in the metadata
/// log (as a crash of an older build leaves its last commits), not in sled. Returns the blob
/// records the store held.
fn downgrade_to_blob_rows(path: &Path, through_log: bool) -> Blobs {
    let meta = meta::Meta::open(&path.join("meta"), &path.join("wal")).unwrap();
    meta.finish_recovery(|_, _| true).unwrap();
    let mut blobs = Vec::new();
    let mut ops = Vec::new();
    for row in meta.db.scan_prefix([table::BLOB_PAGE]) {
        let (k, v) = row.unwrap();
        let page = parse_page_key(&k).unwrap();
        let p: BlobPage = decode(&v).unwrap();
        for (id, rec) in p.iter(page) {
            let row = IVec::from(encode(rec).unwrap());
            ops.push((IVec::from(&blob_key(id)[..]), Some(row)));
            blobs.push((id, *rec));
        }
        ops.push((k, None));
    }
    if through_log {
        // Logged, never checkpointed: the next open replays it.
        meta.log_rows(ops).unwrap();
        assert!(
            meta.db.scan_prefix([table::BLOB]).next().is_none(),
            "the old rows are in the log only"
        );
    } else {
        for (k, v) in ops {
            match v {
                Some(v) => meta.db.insert(k, v).map(drop).unwrap(),
                None => meta.db.remove(k).map(drop).unwrap(),
            }
        }
        meta.db.flush().unwrap();
    }
    drop(meta);
    config::mark_format(path, 1);
    blobs.sort_by_key(|(id, _)| *id);
    blobs
}

async fn read(store: &LocalStore, key: &str, version: Option<VersionId>) -> Bytes {
    store
        .get(
            key,
            GetOptions {
                version,
                range: None,
            },
        )
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
}

async fn migrates(through_log: bool) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let store = LocalStore::init(&path, small()).unwrap();
    // Many blobs (several pages, several volumes), shared ones (a copy: two references) and
    // unreferenced ones (a version removed).
    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let mut expect = Vec::new();
    for i in 0..40 {
        let body: Bytes = if i % 10 == 0 {
            big.clone().into()
        } else {
            Bytes::from(format!("object {i}"))
        };
        let info = store
            .put(
                &format!("d/{i}"),
                body.clone().into(),
                PutOptions::default(),
            )
            .await
            .unwrap();
        expect.push((format!("d/{i}"), info.version, body));
    }
    store
        .copy("d/0", "copy", CopyOptions::default())
        .await
        .unwrap();
    store
        .delete_version("d/1", expect[1].1.clone())
        .await
        .unwrap();
    expect.remove(1);
    let before = blobs_of(&store);
    assert!(before.iter().any(|(_, b)| b.refs == 2), "a shared blob");
    assert!(before.iter().any(|(_, b)| b.refs == 0), "a freed blob");
    store.close().unwrap();

    let old = downgrade_to_blob_rows(&path, through_log);
    assert_eq!(old, before);

    let store = LocalStore::open(&path).unwrap();
    assert!(
        config::is_current_format(&path),
        "the marker says the current format"
    );
    assert!(
        store
            .inner
            .meta
            .db
            .scan_prefix([table::BLOB])
            .next()
            .is_none(),
        "no blob row of format 1 is left"
    );
    assert_eq!(
        blobs_of(&store),
        before,
        "every blob record, references exact"
    );
    for (key, version, body) in &expect {
        assert_eq!(&read(&store, key, None).await, body, "{key}");
        assert_eq!(
            &read(&store, key, Some(version.clone())).await,
            body,
            "{key}"
        );
    }
    assert_eq!(&read(&store, "copy", None).await[..], &big[..]);
    // New blobs after the migration go to pages beside the migrated ones.
    store
        .put(
            "after",
            Bytes::from_static(b"new").into(),
            PutOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(&read(&store, "after", None).await[..], b"new");
    let scrub = store.scrub_now(|_| {}).unwrap();
    assert_eq!(scrub.counters.get("bad").copied().unwrap_or(0), 0);
    assert_eq!(scrub.counters.get("unrepairable").copied().unwrap_or(0), 0);
    store.close().unwrap();

    // Reopened (format 2 now, nothing to migrate): removing every version frees every blob
    // exactly, and gc reclaims every record.
    let store = LocalStore::open(&path).unwrap();
    let versions = store
        .list_versions(&ListVersionsRequest::default())
        .await
        .unwrap();
    for v in versions.versions {
        store.delete_version(&v.key, v.version).await.unwrap();
    }
    let freed = blobs_of(&store);
    assert_eq!(freed.len(), before.len() + 1);
    assert!(freed.iter().all(|(_, b)| b.refs == 0), "{freed:?}");
    let gc = store
        .gc_now(
            GcOptions {
                delay: std::time::Duration::ZERO,
                ..Default::default()
            },
            |_| {},
        )
        .unwrap();
    assert_eq!(gc.counters["blobs_reclaimed"], freed.len() as u64);
    assert!(blobs_of(&store).is_empty());
    store.close().unwrap();
}

#[tokio::test]
async fn opens_a_store_with_one_sled_row_per_blob() {
    migrates(false).await;
}

#[tokio::test]
async fn replays_the_blob_rows_an_older_build_logged_then_migrates_them() {
    migrates(true).await;
}
