//! Unit tests of the local backend's own behaviour (lifecycle, locking, persistence). The
//! shared conformance suite in tests/ checks the ObjectStore semantics.

use super::*;
use crate::ErrorKind;
use bytes::Bytes;
use version::LocalVersion;

fn small() -> LocalConfig {
    LocalConfig {
        volume_size: 64 << 10,
        block_size: 4096,
        blob_size: 16 << 10,
        ..Default::default()
    }
}

#[tokio::test]
async fn put_get_list_versions_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let store = LocalStore::init(&path, small()).unwrap();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    let v1 = store
        .put("a/big", data.clone().into(), PutOptions::default())
        .await
        .unwrap();
    assert_eq!(v1.size, 100_000);
    let got = store
        .get("a/big", GetOptions::default())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&got[..], &data[..]);
    let part = store
        .get(
            "a/big",
            GetOptions {
                range: Some(5000..70_001),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&part[..], &data[5000..70_001]);
    store
        .put("a/big", "small".into(), PutOptions::default())
        .await
        .unwrap();
    store
        .put("b", "x".into(), PutOptions::default())
        .await
        .unwrap();
    store.delete("b").await.unwrap();
    let page = store.list(&ListRequest::dir("")).await.unwrap();
    assert_eq!(page.common_prefixes, vec!["a/".to_string()]);
    assert!(page.objects.is_empty());
    let vers = store
        .list_versions(&ListVersionsRequest::default())
        .await
        .unwrap();
    assert_eq!(vers.versions.len(), 4);
    assert!(vers.versions[0].is_latest && !vers.versions[1].is_latest);
    assert!(vers.versions[2].is_delete_marker && vers.versions[2].is_latest);

    // The same process cannot open it twice.
    assert!(matches!(
        LocalStore::open(&path),
        Err(StoreError::Locked { .. })
    ));
    store.close().unwrap();

    let store = LocalStore::open(&path).unwrap();
    assert!(store.status().unwrap().last_shutdown_clean);
    let old = store
        .get(
            "a/big",
            GetOptions {
                version: Some(v1.version.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&old[..], &data[..]);
    let st = store.status().unwrap();
    assert_eq!((st.objects, st.versions, st.delete_markers), (1, 4, 1));
    assert!(
        st.volumes >= 2,
        "small volumes must have been sealed and rolled"
    );
    // New writes after reopen get newer ids.
    let v3 = store
        .put("a/big", "again".into(), PutOptions::default())
        .await
        .unwrap();
    let (l3, l1) = (
        LocalVersion::parse(&v3.version).unwrap(),
        LocalVersion::parse(&v1.version).unwrap(),
    );
    assert!(l3 > l1);
}

#[tokio::test]
async fn multipart_with_part_copy_shares_extents() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::init(dir.path(), small()).unwrap();
    let base: Vec<u8> = (0..50_000u32).map(|i| (i % 211) as u8).collect();
    store
        .put("f", base.clone().into(), PutOptions::default())
        .await
        .unwrap();
    let id = store
        .create_multipart("f", PutOptions::default())
        .await
        .unwrap();
    let p2 = store
        .upload_part("f", &id, 2, "MIDDLE".into())
        .await
        .unwrap();
    let p1 = store
        .upload_part_copy("f", &id, 1, "f", None, Some(0..10_000))
        .await
        .unwrap();
    let p3 = store
        .upload_part_copy("f", &id, 3, "f", None, Some(10_006..50_000))
        .await
        .unwrap();
    let done = store
        .complete_multipart(
            "f",
            &id,
            &[
                CompletedPart {
                    part_number: 1,
                    etag: p1.etag,
                },
                CompletedPart {
                    part_number: 2,
                    etag: p2.etag,
                },
                CompletedPart {
                    part_number: 3,
                    etag: p3.etag,
                },
            ],
        )
        .await
        .unwrap();
    assert!(done.etag.ends_with("-3"));
    let mut expect = base.clone();
    expect[10_000..10_006].copy_from_slice(b"MIDDLE");
    let got = store
        .get("f", GetOptions::default())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&got[..], &expect[..]);
    assert!(store.list_multipart_uploads("").await.unwrap().is_empty());
}

#[tokio::test]
async fn zero_parts_are_holes_that_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::init(dir.path(), small()).unwrap();
    let base: Vec<u8> = (0..30_000u32).map(|i| (i % 199) as u8).collect();
    store
        .put("f", base.clone().into(), PutOptions::default())
        .await
        .unwrap();
    let before = store.status().unwrap().volume_bytes;
    let gib = 1u64 << 30;
    let id = store
        .create_multipart("f", PutOptions::default())
        .await
        .unwrap();
    let p1 = store
        .upload_part_copy("f", &id, 1, "f", None, Some(0..10_000))
        .await
        .unwrap();
    let p2 = store.upload_part_zeros("f", &id, 2, gib).await.unwrap();
    let p3 = store
        .upload_part_copy("f", &id, 3, "f", None, Some(10_000..30_000))
        .await
        .unwrap();
    let parts: Vec<CompletedPart> = [p1, p2, p3]
        .into_iter()
        .map(|p| CompletedPart {
            part_number: p.part_number,
            etag: p.etag,
        })
        .collect();
    let grown = store.complete_multipart("f", &id, &parts).await.unwrap();
    assert_eq!(grown.size, 30_000 + gib);
    assert_eq!(
        store.status().unwrap().volume_bytes,
        before,
        "a GiB of zeros and two part copies wrote no data"
    );
    let rec = store
        .inner
        .meta
        .resolve("f", Some(grown.version.clone()))
        .unwrap()
        .1;
    assert_eq!(rec.extents.iter().filter(|e| e.is_hole()).count(), 1);
    let read = |range: std::ops::Range<u64>| {
        let store = &store;
        async move {
            store
                .get(
                    "f",
                    GetOptions {
                        range: Some(range),
                        ..Default::default()
                    },
                )
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
        }
    };
    let mut want = base[9_000..10_000].to_vec();
    want.extend(std::iter::repeat_n(0u8, 5000));
    assert_eq!(&read(9_000..15_000).await[..], &want[..]);
    let mut want = vec![0u8; 100];
    want.extend_from_slice(&base[10_000..10_100]);
    assert_eq!(&read(10_000 + gib - 100..10_100 + gib).await[..], &want[..]);
    // Holes hold no references: removing every version frees exactly the data blobs.
    let versions = store
        .list_versions(&ListVersionsRequest::default())
        .await
        .unwrap();
    for v in versions.versions {
        store.delete_version("f", v.version).await.unwrap();
    }
    for (_, blobs) in store.inner.meta.blobs_by_volume().unwrap() {
        for (loc, refs, _) in blobs {
            assert_eq!(refs, 0, "blob {} still referenced", loc.blob);
        }
    }
}

#[tokio::test]
async fn open_refuses_what_is_not_a_store() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.txt"), "hi").unwrap();
    let e = LocalStore::open(dir.path()).err().unwrap();
    assert_eq!(e.kind(), ErrorKind::NotAStore, "{e}");
    let e = LocalStore::init(dir.path(), LocalConfig::default())
        .err()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::NotAStore, "{e}");
    let e = LocalStore::open(&dir.path().join("missing")).err().unwrap();
    assert_eq!(e.kind(), ErrorKind::NotAStore, "{e}");
    // A newer format is refused with a clear error.
    let s = dir.path().join("s");
    LocalStore::init(&s, LocalConfig::default())
        .unwrap()
        .close()
        .unwrap();
    let marker = s.join(config::MARKER);
    let text = std::fs::read_to_string(&marker).unwrap().replace(
        &format!("\"format\": {}", config::STORE_FORMAT),
        "\"format\": 99",
    );
    std::fs::write(&marker, text).unwrap();
    let e = LocalStore::open(&s).err().unwrap();
    assert_eq!(e.kind(), ErrorKind::UnsupportedFormat, "{e}");
}

/// Rewrites every multipart upload row of a closed store in the previous (format 1) layout,
/// and checks that every other row is format 1 already: afterwards the metadata is what the
/// build before record format dispatch wrote.
fn downgrade_to_format_1(path: &Path) {
    use records::{
        decode, encode_as, table, StoredCondition, StoredConditionV1, UploadRecord, UploadRecordV1,
    };
    let meta = meta::Meta::open(&path.join("meta"), &path.join("wal")).unwrap();
    let mut uploads = 0;
    for row in meta.db.iter() {
        let (k, v) = row.unwrap();
        if k[0] == table::VERSION || k[0] == table::PART || k[0] == table::VOLUME {
            // Format 2 only allows holes (versions, parts) or a remote layout (volumes): the
            // same layout for what format 1 could hold, so format 1 is the byte changed.
            assert_eq!(
                v[0], 2,
                "version, part and volume rows are written in format 2"
            );
            let mut old = v.to_vec();
            old[0] = 1;
            meta.db.insert(k, old).unwrap();
            continue;
        }
        if k[0] != table::UPLOAD {
            assert_eq!(v[0], 1, "row {:?} is not format 1", &k[..k.len().min(16)]);
            continue;
        }
        assert_eq!(v[0], 2, "upload rows are written in format 2");
        let r: UploadRecord = decode(&v).unwrap();
        let condition = match r.condition {
            StoredCondition::None => StoredConditionV1::None,
            StoredCondition::IfNotExists => StoredConditionV1::IfNotExists,
            StoredCondition::IfVersion(text) => {
                let id: VersionId = text.parse().unwrap();
                StoredConditionV1::IfVersion(LocalVersion::parse(&id).unwrap().0)
            }
        };
        let old = UploadRecordV1 {
            key: r.key,
            initiated: r.initiated,
            metadata: r.metadata,
            condition,
            durable: r.durable,
        };
        meta.db.insert(k, encode_as(1, &old).unwrap()).unwrap();
        uploads += 1;
    }
    assert_eq!(uploads, 3);
    meta.db.flush().unwrap();
}

#[tokio::test]
async fn opens_a_store_written_in_the_previous_record_format() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let store = LocalStore::init(&path, small()).unwrap();
    let big: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
    let v1 = store
        .put("a/big", big.clone().into(), PutOptions::default())
        .await
        .unwrap();
    let v2 = store
        .put("a/big", "second".into(), PutOptions::default())
        .await
        .unwrap();
    store
        .put("gone", "x".into(), PutOptions::default())
        .await
        .unwrap();
    let marker = store.delete("gone").await.unwrap().unwrap();
    // Uploads whose completion checks a condition: on the current version (must still hold
    // after migration), on an old version (must still fail) and on absence.
    let mut uploads = Vec::new();
    for (key, condition) in [
        ("a/big", Condition::IfVersion(v2.version.clone())),
        ("a/big", Condition::IfVersion(v1.version.clone())),
        ("new", Condition::IfNotExists),
    ] {
        let opts = PutOptions {
            metadata: [("x-amz-meta-mode".to_string(), "33188".to_string())].into(),
            condition,
            durable: false,
        };
        let id = store.create_multipart(key, opts).await.unwrap();
        let part = store
            .upload_part(key, &id, 1, Bytes::from(format!("part of {id}")).into())
            .await
            .unwrap();
        uploads.push((key, id, part));
    }
    store.close().unwrap();

    downgrade_to_format_1(&path);

    let store = LocalStore::open(&path).unwrap();
    let get = |key: &'static str, version: Option<VersionId>| {
        let store = &store;
        async move {
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
    };
    assert_eq!(&get("a/big", None).await[..], b"second");
    assert_eq!(&get("a/big", Some(v1.version.clone())).await[..], &big[..]);
    assert_eq!(
        store.head("gone", None).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let vers = store
        .list_versions(&ListVersionsRequest::default())
        .await
        .unwrap();
    let ids: Vec<_> = vers.versions.iter().map(|v| v.version.clone()).collect();
    assert_eq!(
        ids,
        vec![
            v2.version.clone(),
            v1.version.clone(),
            marker,
            ids[3].clone()
        ]
    );
    let listed = store.list_multipart_uploads("").await.unwrap();
    assert_eq!(listed.len(), 3);
    for (key, id, part) in &uploads {
        assert_eq!(store.list_parts(key, id).await.unwrap(), vec![part.clone()]);
    }
    let done = |p: &PartInfo| {
        vec![CompletedPart {
            part_number: p.part_number,
            etag: p.etag.clone(),
        }]
    };
    let (key, id, part) = &uploads[1];
    assert_eq!(
        store
            .complete_multipart(key, id, &done(part))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::PreconditionFailed,
        "a condition on an old version must still fail after migration"
    );
    for (key, id, part) in [&uploads[0], &uploads[2]] {
        let info = store
            .complete_multipart(key, id, &done(part))
            .await
            .unwrap();
        assert_eq!(info.metadata["x-amz-meta-mode"], "33188");
        assert_eq!(
            get(key, None).await,
            Bytes::from(format!("part of {id}")),
            "{key}"
        );
    }
    store.close().unwrap();
}

#[tokio::test]
async fn versions_after_a_clean_reopen_carry_the_real_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let store = LocalStore::init(&path, small()).unwrap();
    store
        .put("k", Bytes::from_static(b"1").into(), PutOptions::default())
        .await
        .unwrap();
    store.close().unwrap();
    let store = LocalStore::open(&path).unwrap();
    let info = store
        .put("k", Bytes::from_static(b"2").into(), PutOptions::default())
        .await
        .unwrap();
    // Not up to a version-id lease (1 s) ahead of the clock.
    assert!(info.modified <= std::time::SystemTime::now());
    store.close().unwrap();
}

/// A whole-store version listing while the flusher checkpoints a new store's rows into sled
/// lists every version once, in order (with unfused sled iterators, listings repeated a
/// window's rows in about half the runs: `meta/scan.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_listing_during_checkpoints_lists_each_version_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::init(&dir.path().join("s"), Default::default()).unwrap();
    let n = 24_000;
    let key = |i: usize| format!("p/{:02x}/k{i:06}", i % 16);
    let put = |k: String, body: String| {
        let store = &store;
        async move {
            store
                .put(&k, Bytes::from(body).into(), PutOptions::default())
                .await
                .unwrap();
        }
    };
    for i in 0..n {
        put(key(i), format!("v1 {i}")).await;
    }
    for i in 0..n {
        if i % 10 == 0 {
            put(key(i), format!("v2 {i}")).await;
        } else {
            store.delete(&key(i)).await.unwrap();
        }
    }
    for round in 0..6 {
        let mut counts = std::collections::BTreeMap::<String, usize>::new();
        let mut req = ListVersionsRequest::default();
        let mut pages = 0;
        loop {
            let page = store.list_versions(&req).await.unwrap();
            pages += 1;
            // Keys in order; a key's versions together, none twice.
            for w in page.versions.windows(2) {
                let (a, b) = (&w[0], &w[1]);
                assert!(
                    a.key < b.key || (a.key == b.key && a.version != b.version),
                    "round {round}, page {pages}: {}@{:?} after {}@{:?}",
                    b.key,
                    b.version,
                    a.key,
                    a.version
                );
            }
            for v in page.versions {
                *counts.entry(v.key).or_insert(0) += 1;
            }
            match page.next_key_marker {
                Some(k) => {
                    req.key_marker = Some(k);
                    req.version_marker = page.next_version_marker;
                }
                None => break,
            }
        }
        let bad: Vec<_> = counts.iter().filter(|(_, &c)| c != 2).take(5).collect();
        assert_eq!(counts.len(), n, "round {round}");
        assert!(bad.is_empty(), "round {round}, {pages} pages: {bad:?}");
    }
}
