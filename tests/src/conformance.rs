//! The backend conformance suite: every rule the [`ObjectStore`] trait documents, as one async
//! function per area, taking any `&dyn ObjectStore`.
//!
//! Each case works under its own key namespace (its name plus `/`), so all cases can share a
//! store ([`run_all`]); [`crate::conformance_tests!`] generates one named `#[tokio::test]` per
//! case for a backend, so a failure says which rule broke. Only `capacity_accounting` needs
//! the store to itself while it runs (its checks are relative to its own writes).
//!
//! Cases assert behaviour, not implementation: version ids are compared by order, etags only
//! by "different bytes never share an etag", errors by [`ErrorKind`].

use std::ops::Range;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::future::join_all;
use objfs_store::key::KeyError;
use objfs_store::{
    Body, CompletedPart, Condition, CopyOptions, ErrorKind, GetOptions, ListRequest,
    ListVersionsRequest, Metadata, ObjectInfo, ObjectStore, PartInfo, PutOptions, RenameOptions,
    StoreError, VersionId, VersionInfo, MAX_PART_NUMBER,
};

use crate::support::{
    assert_kind, det_bytes, list_all, list_versions_all, walk_list, walk_versions, Listed, VListed,
};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

async fn put(s: &dyn ObjectStore, key: &str, data: impl Into<Vec<u8>>) -> ObjectInfo {
    s.put(key, Body::from(data.into()), PutOptions::default())
        .await
        .unwrap_or_else(|e| panic!("put {key:?}: {e}"))
}

async fn put_meta(s: &dyn ObjectStore, key: &str, data: &[u8], meta: &Metadata) -> ObjectInfo {
    s.put(
        key,
        Body::from(data.to_vec()),
        PutOptions {
            metadata: meta.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("put {key:?}: {e}"))
}

async fn read(s: &dyn ObjectStore, key: &str, version: Option<VersionId>) -> Vec<u8> {
    let r = s
        .get(
            key,
            GetOptions {
                version,
                range: None,
            },
        )
        .await
        .unwrap_or_else(|e| panic!("get {key:?} {version:?}: {e}"));
    assert_eq!(r.info.key, key);
    if let Some(v) = version {
        assert_eq!(r.info.version, v);
    }
    let size = r.info.size;
    assert_eq!(r.range, 0..size);
    let data = r
        .bytes()
        .await
        .unwrap_or_else(|e| panic!("body {key:?}: {e}"));
    assert_eq!(data.len() as u64, size, "body length of {key:?}");
    data.to_vec()
}

async fn read_range(
    s: &dyn ObjectStore,
    key: &str,
    version: Option<VersionId>,
    range: Range<u64>,
) -> (Range<u64>, Vec<u8>) {
    let r = s
        .get(
            key,
            GetOptions {
                version,
                range: Some(range.clone()),
            },
        )
        .await
        .unwrap_or_else(|e| panic!("get {key:?} {range:?}: {e}"));
    let got = r.range.clone();
    let data = r
        .bytes()
        .await
        .unwrap_or_else(|e| panic!("body {key:?}: {e}"));
    assert_eq!(
        data.len() as u64,
        got.end - got.start,
        "body length of {key:?} {range:?}"
    );
    (got, data.to_vec())
}

fn meta(pairs: &[(&str, &str)]) -> Metadata {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn done(parts: &[&PartInfo]) -> Vec<CompletedPart> {
    parts
        .iter()
        .map(|p| CompletedPart {
            part_number: p.part_number,
            etag: p.etag.clone(),
        })
        .collect()
}

fn objects(entries: &[Listed]) -> Vec<String> {
    entries
        .iter()
        .filter_map(|e| match e {
            Listed::Object(k) => Some(k.clone()),
            Listed::Prefix(_) => None,
        })
        .collect()
}

fn obj(ns: &str, k: &str) -> Listed {
    Listed::Object(format!("{ns}{k}"))
}

fn pre(ns: &str, k: &str) -> Listed {
    Listed::Prefix(format!("{ns}{k}"))
}

/// (key, version, is_latest, is_delete_marker) of the versions of a version listing.
fn vsummary(entries: &[VListed]) -> Vec<(String, VersionId, bool, bool)> {
    entries
        .iter()
        .filter_map(|e| match e {
            VListed::Version(v) => {
                Some((v.key.clone(), v.version, v.is_latest, v.is_delete_marker))
            }
            VListed::Prefix(_) => None,
        })
        .collect()
}

async fn versions_of(s: &dyn ObjectStore, key: &str) -> Vec<VersionInfo> {
    list_versions_all(
        s,
        &ListVersionsRequest {
            prefix: key.to_string(),
            ..Default::default()
        },
    )
    .await
    .into_iter()
    .filter_map(|e| match e {
        VListed::Version(v) if v.key == key => Some(v),
        _ => None,
    })
    .collect()
}

fn list_req(prefix: &str, delimiter: Option<&str>, max_keys: usize) -> ListRequest {
    ListRequest {
        prefix: prefix.to_string(),
        delimiter: delimiter.map(str::to_string),
        max_keys,
        ..Default::default()
    }
}

/// Lists with every page size from 1 to `entries + 1` and checks each walk yields `expected`.
async fn check_listing(
    s: &dyn ObjectStore,
    prefix: &str,
    delimiter: Option<&str>,
    expected: &[Listed],
) {
    let full = list_all(s, &list_req(prefix, delimiter, 0)).await;
    assert_eq!(
        full, expected,
        "listing prefix {prefix:?} delimiter {delimiter:?}"
    );
    for max_keys in 1..=expected.len() + 1 {
        let pages = walk_list(s, &list_req(prefix, delimiter, max_keys)).await;
        let walked: Vec<Listed> = pages.iter().flat_map(|p| p.entries.clone()).collect();
        assert_eq!(
            walked, expected,
            "listing prefix {prefix:?} delimiter {delimiter:?} max_keys {max_keys}"
        );
        let want_pages = expected.len().div_ceil(max_keys).max(1);
        assert_eq!(pages.len(), want_pages, "page count at max_keys {max_keys}");
    }
}

fn within(t: SystemTime, before: SystemTime, after: SystemTime) -> bool {
    let slack = Duration::from_secs(5);
    t + slack >= before && t <= after + slack
}

// ---------------------------------------------------------------------------------------------
// Basic reads and writes
// ---------------------------------------------------------------------------------------------

/// put, then get and head see the same version, size and bytes.
pub async fn put_get_head(s: &dyn ObjectStore) {
    let ns = "put_get_head/";
    let key = format!("{ns}obj");
    let data = det_bytes(1, 5000);
    let before = SystemTime::now();
    let info = put(s, &key, data.clone()).await;
    let after = SystemTime::now();
    assert_eq!(info.key, key);
    assert_eq!(info.size, 5000);
    assert!(!info.etag.is_empty());
    assert!(
        within(info.modified, before, after),
        "modified {:?}",
        info.modified
    );
    assert!(info.metadata.is_empty());

    let head = s.head(&key, None).await.unwrap();
    assert_eq!(head, info);
    let head_v = s.head(&key, Some(info.version)).await.unwrap();
    assert_eq!(head_v, info);

    let got = s.get(&key, GetOptions::default()).await.unwrap();
    assert_eq!(got.info, info);
    assert_eq!(got.range, 0..5000);
    assert_eq!(got.bytes().await.unwrap().to_vec(), data);

    // Different bytes never share an etag.
    let other = put(s, &format!("{ns}other"), det_bytes(2, 5000)).await;
    assert_ne!(other.etag, info.etag);

    // Missing keys.
    assert_kind(
        s.head(&format!("{ns}missing"), None).await,
        ErrorKind::NotFound,
        "head missing",
    );
    assert_kind(
        s.get(&format!("{ns}missing"), GetOptions::default()).await,
        ErrorKind::NotFound,
        "get missing",
    );
}

/// Zero-byte objects exist, read back empty and have an etag.
pub async fn empty_object(s: &dyn ObjectStore) {
    let key = "empty_object/dir/";
    let info = s
        .put(key, Body::empty(), PutOptions::default())
        .await
        .unwrap();
    assert_eq!(info.size, 0);
    assert!(!info.etag.is_empty());
    assert_eq!(read(s, key, None).await, Vec::<u8>::new());
    let (r, d) = read_range(s, key, None, 0..0).await;
    assert_eq!((r, d.len()), (0..0, 0));
    let (r, d) = read_range(s, key, None, 0..10).await;
    assert_eq!((r, d.len()), (0..0, 0));
    assert_kind(
        s.get(
            key,
            GetOptions {
                version: None,
                range: Some(1..2),
            },
        )
        .await,
        ErrorKind::InvalidRange,
        "range past an empty object",
    );
    let l = list_all(s, &list_req("empty_object/", None, 0)).await;
    assert_eq!(l, vec![Listed::Object(key.into())]);
}

/// Ranged reads: inner, empty, at the end, clamped, and invalid ones.
pub async fn get_ranges(s: &dyn ObjectStore) {
    let key = "get_ranges/obj";
    let data = det_bytes(3, 1000);
    let v = put(s, key, data.clone()).await.version;
    for (req, want) in [
        (0..1000, 0..1000),
        (3..7, 3..7),
        (0..1, 0..1),
        (999..1000, 999..1000),
        (5..5, 5..5),
        (0..0, 0..0),
        (1000..1000, 1000..1000),
        (990..5000, 990..1000),
        (0..u64::MAX, 0..1000),
        (1000..2000, 1000..1000),
    ] {
        let (got, bytes) = read_range(s, key, None, req.clone()).await;
        assert_eq!(got, want, "range {req:?}");
        assert_eq!(
            bytes,
            data[want.start as usize..want.end as usize],
            "range {req:?}"
        );
        let (got_v, bytes_v) = read_range(s, key, Some(v), req.clone()).await;
        assert_eq!((got_v, bytes_v), (got, bytes), "versioned range {req:?}");
    }
    for bad in [
        1001..1002,
        1001..1001,
        5000..6000,
        Range { start: 7, end: 3 },
        u64::MAX..u64::MAX,
    ] {
        assert_kind(
            s.get(
                key,
                GetOptions {
                    version: None,
                    range: Some(bad.clone()),
                },
            )
            .await,
            ErrorKind::InvalidRange,
            &format!("range {bad:?}"),
        );
    }
}

/// User metadata comes back from head, get, list and version listing unchanged.
pub async fn metadata_round_trip(s: &dyn ObjectStore) {
    let ns = "metadata_round_trip/";
    let key = format!("{ns}f");
    let m = meta(&[
        ("x-amz-meta-mode", "33188"),
        ("x-amz-meta-uid", "1000"),
        ("x-amz-meta-gid", "100"),
        ("x-amz-meta-mtime", "1700000000.123456789"),
        ("empty", ""),
        ("unicode", "ünïcödé ✓ \"quoted\" = ; \n newline"),
    ]);
    let info = put_meta(s, &key, b"data", &m).await;
    assert_eq!(info.metadata, m);
    assert_eq!(s.head(&key, None).await.unwrap().metadata, m);
    assert_eq!(
        s.get(&key, GetOptions::default())
            .await
            .unwrap()
            .info
            .metadata,
        m
    );
    if s.features().list_returns_metadata {
        let pages = walk_list(s, &list_req(ns, None, 0)).await;
        assert_eq!(pages[0].objects.len(), 1);
        assert_eq!(pages[0].objects[0].metadata, m);
        assert_eq!(pages[0].objects[0].version, info.version);
        assert_eq!(pages[0].objects[0].size, 4);
        assert_eq!(pages[0].objects[0].etag, info.etag);
    }
    let vs = versions_of(s, &key).await;
    assert_eq!(vs.len(), 1);
    assert_eq!(vs[0].metadata, m);
    // A new version with other metadata does not change the old one.
    let m2 = meta(&[("x-amz-meta-mode", "16877")]);
    let info2 = put_meta(s, &key, b"data", &m2).await;
    assert_eq!(s.head(&key, None).await.unwrap().metadata, m2);
    assert_eq!(s.head(&key, Some(info.version)).await.unwrap().metadata, m);
    assert_eq!(
        s.head(&key, Some(info2.version)).await.unwrap().metadata,
        m2
    );
}

/// Conditional puts: IfNotExists and IfVersion, and failed writes leave no trace.
pub async fn conditions(s: &dyn ObjectStore) {
    let key = "conditions/k";
    let cond = |c| PutOptions {
        condition: c,
        ..Default::default()
    };
    let v1 = s
        .put(key, "one".into(), cond(Condition::IfNotExists))
        .await
        .unwrap();
    assert_kind(
        s.put(key, "two".into(), cond(Condition::IfNotExists)).await,
        ErrorKind::PreconditionFailed,
        "IfNotExists on a live key",
    );
    let v2 = s
        .put(key, "two".into(), cond(Condition::IfVersion(v1.version)))
        .await
        .unwrap();
    assert_kind(
        s.put(key, "three".into(), cond(Condition::IfVersion(v1.version)))
            .await,
        ErrorKind::PreconditionFailed,
        "IfVersion of an old version",
    );
    assert_kind(
        s.put(
            key,
            "three".into(),
            cond(Condition::IfVersion(VersionId(1))),
        )
        .await,
        ErrorKind::PreconditionFailed,
        "IfVersion of an unknown version",
    );
    assert_eq!(read(s, key, None).await, b"two");
    assert_eq!(
        versions_of(s, key).await.len(),
        2,
        "failed puts made versions"
    );

    // After a delete there is no live version: IfNotExists succeeds, IfVersion fails.
    let marker = s.delete(key).await.unwrap().expect("a delete marker");
    assert_kind(
        s.put(key, "x".into(), cond(Condition::IfVersion(v2.version)))
            .await,
        ErrorKind::PreconditionFailed,
        "IfVersion on a deleted key",
    );
    assert_kind(
        s.put(key, "x".into(), cond(Condition::IfVersion(marker)))
            .await,
        ErrorKind::PreconditionFailed,
        "IfVersion of a delete marker",
    );
    let v3 = s
        .put(key, "three".into(), cond(Condition::IfNotExists))
        .await
        .unwrap();
    assert_eq!(read(s, key, None).await, b"three");
    assert!(v3.version > marker);

    // IfVersion on a key never written.
    assert_kind(
        s.put(
            "conditions/never",
            "x".into(),
            cond(Condition::IfVersion(v3.version)),
        )
        .await,
        ErrorKind::PreconditionFailed,
        "IfVersion on a missing key",
    );
    assert_kind(
        s.head("conditions/never", None).await,
        ErrorKind::NotFound,
        "a failed conditional put created the key",
    );
}

/// Every operation rejects bad keys with InvalidKey before looking at anything else.
pub async fn invalid_keys(s: &dyn ObjectStore) {
    let good = "invalid_keys/good";
    let gv = put(s, good, "x").await.version;
    let too_long = "x".repeat(1025);
    let bad: Vec<(&str, String)> = vec![
        ("empty", String::new()),
        ("too long", too_long.clone()),
        ("nul", "invalid_keys/a\0b".to_string()),
        ("leading slash", "/invalid_keys/a".to_string()),
    ];
    for (what, k) in &bad {
        let k = k.as_str();
        let ctx = |op: &str| format!("{op} with {what} key");
        assert_kind(
            s.put(k, "x".into(), PutOptions::default()).await,
            ErrorKind::InvalidKey,
            &ctx("put"),
        );
        assert_kind(
            s.get(k, GetOptions::default()).await,
            ErrorKind::InvalidKey,
            &ctx("get"),
        );
        assert_kind(s.head(k, None).await, ErrorKind::InvalidKey, &ctx("head"));
        assert_kind(
            s.head(k, Some(gv)).await,
            ErrorKind::InvalidKey,
            &ctx("head version"),
        );
        assert_kind(s.delete(k).await, ErrorKind::InvalidKey, &ctx("delete"));
        assert_kind(
            s.delete_version(k, gv).await,
            ErrorKind::InvalidKey,
            &ctx("delete_version"),
        );
        assert_kind(
            s.copy(k, good, CopyOptions::default()).await,
            ErrorKind::InvalidKey,
            &ctx("copy src"),
        );
        assert_kind(
            s.copy(good, k, CopyOptions::default()).await,
            ErrorKind::InvalidKey,
            &ctx("copy dst"),
        );
        assert_kind(
            s.create_multipart(k, PutOptions::default()).await,
            ErrorKind::InvalidKey,
            &ctx("create_multipart"),
        );
        assert_kind(
            s.upload_part(k, "nope", 1, "x".into()).await,
            ErrorKind::InvalidKey,
            &ctx("upload_part"),
        );
        assert_kind(
            s.upload_part_copy(k, "nope", 1, good, None, None).await,
            ErrorKind::InvalidKey,
            &ctx("upload_part_copy dst"),
        );
        assert_kind(
            s.list_parts(k, "nope").await,
            ErrorKind::InvalidKey,
            &ctx("list_parts"),
        );
        assert_kind(
            s.complete_multipart(
                k,
                "nope",
                &[CompletedPart {
                    part_number: 1,
                    etag: "e".into(),
                }],
            )
            .await,
            ErrorKind::InvalidKey,
            &ctx("complete_multipart"),
        );
        assert_kind(
            s.abort_multipart(k, "nope").await,
            ErrorKind::InvalidKey,
            &ctx("abort_multipart"),
        );
        if !k.is_empty() {
            // An empty prefix is fine; the other bad keys are bad prefixes too.
            assert_kind(
                s.list(&list_req(k, None, 0)).await,
                ErrorKind::InvalidKey,
                &ctx("list prefix"),
            );
            assert_kind(
                s.list_versions(&ListVersionsRequest {
                    prefix: k.into(),
                    ..Default::default()
                })
                .await,
                ErrorKind::InvalidKey,
                &ctx("list_versions prefix"),
            );
            assert_kind(
                s.list_multipart_uploads(k).await,
                ErrorKind::InvalidKey,
                &ctx("list_multipart_uploads"),
            );
        }
    }
    // upload_part_copy with a bad source key, into a real upload.
    let dst = "invalid_keys/mp";
    let id = s
        .create_multipart(dst, PutOptions::default())
        .await
        .unwrap();
    for (what, k) in &bad {
        assert_kind(
            s.upload_part_copy(dst, &id, 1, k, None, None).await,
            ErrorKind::InvalidKey,
            &format!("upload_part_copy with {what} source"),
        );
    }
    s.abort_multipart(dst, &id).await.unwrap();
    // The reason says what is wrong.
    match s.put(&too_long, "x".into(), PutOptions::default()).await {
        Err(StoreError::InvalidKey {
            reason: KeyError::TooLong { len },
            ..
        }) => assert_eq!(len, 1025),
        other => panic!("expected InvalidKey TooLong, got {other:?}"),
    }
    // Nothing was written.
    let all = list_all(s, &list_req("invalid_keys/", None, 0)).await;
    assert_eq!(all, vec![Listed::Object(good.into())]);
    assert_eq!(read(s, good, None).await, b"x");
}

/// Keys of every legal shape work: runs of '/', trailing '/', unicode, spaces, 1024 bytes.
pub async fn key_shapes(s: &dyn ObjectStore) {
    let ns = "key_shapes/";
    let mut keys: Vec<String> = [
        "a//b",
        "a///",
        "a/",
        "ü/日本語 ✓",
        "sp ace",
        "tab\there",
        "%2F",
        "a\\b",
        "..",
        ".",
    ]
    .iter()
    .map(|k| format!("{ns}{k}"))
    .collect();
    // The longest legal key, ending in a multi-byte character.
    let mut long = ns.to_string();
    while long.len() + 3 <= 1024 {
        long.push('x');
    }
    while long.len() < 1024 - 2 {
        long.push('y');
    }
    long.push('é');
    assert_eq!(long.len(), 1024);
    keys.push(long);
    for (i, k) in keys.iter().enumerate() {
        put(s, k, det_bytes(i as u64, 10 + i)).await;
    }
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(read(s, k, None).await, det_bytes(i as u64, 10 + i), "{k:?}");
    }
    let mut sorted = keys.clone();
    sorted.sort();
    let listed = list_all(s, &list_req(ns, None, 0)).await;
    assert_eq!(objects(&listed), sorted);
    for k in &keys {
        s.delete(k).await.unwrap().expect("marker");
    }
    assert!(list_all(s, &list_req(ns, None, 0)).await.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Versions
// ---------------------------------------------------------------------------------------------

/// Versions are ordered, each readable by id, and the newest is current.
pub async fn versions_ordering(s: &dyn ObjectStore) {
    let key = "versions_ordering/k";
    let before = SystemTime::now();
    let mut infos = Vec::new();
    for i in 0..5u64 {
        infos.push(put(s, key, det_bytes(i, 100 + i as usize)).await);
    }
    let after = SystemTime::now();
    for w in infos.windows(2) {
        assert!(w[0].version < w[1].version, "version ids must increase");
    }
    for info in &infos {
        assert!(within(info.version.time(), before, after), "version time");
        assert!(info.version <= VersionId::at(after + Duration::from_secs(5)));
    }
    assert_eq!(s.head(key, None).await.unwrap().version, infos[4].version);
    for (i, info) in infos.iter().enumerate() {
        assert_eq!(
            read(s, key, Some(info.version)).await,
            det_bytes(i as u64, 100 + i)
        );
        let h = s.head(key, Some(info.version)).await.unwrap();
        assert_eq!(h.size, 100 + i as u64);
        assert_eq!(h.etag, info.etag);
    }
    let vs = versions_of(s, key).await;
    let ids: Vec<VersionId> = vs.iter().map(|v| v.version).collect();
    let mut want: Vec<VersionId> = infos.iter().map(|i| i.version).collect();
    want.reverse();
    assert_eq!(ids, want, "newest first");
    assert!(vs[0].is_latest);
    assert!(vs[1..].iter().all(|v| !v.is_latest));
    assert!(vs.iter().all(|v| !v.is_delete_marker));
    assert_eq!(vs[0].size, 104);
    assert_eq!(vs[0].etag, infos[4].etag);

    // Unknown versions, and versions of another key.
    let other = put(s, "versions_ordering/other", "o").await;
    for (what, v) in [
        ("unknown", VersionId(12345)),
        ("other key's", other.version),
    ] {
        assert_kind(
            s.head(key, Some(v)).await,
            ErrorKind::NoSuchVersion,
            &format!("head {what}"),
        );
        assert_kind(
            s.get(
                key,
                GetOptions {
                    version: Some(v),
                    range: None,
                },
            )
            .await,
            ErrorKind::NoSuchVersion,
            &format!("get {what}"),
        );
    }
    assert_kind(
        s.head("versions_ordering/never", Some(other.version)).await,
        ErrorKind::NoSuchVersion,
        "head with a version of a key never written",
    );
}

/// Delete adds a marker only over a live version; markers hide the key but keep history.
pub async fn delete_markers(s: &dyn ObjectStore) {
    let key = "delete_markers/k";
    assert_eq!(
        s.delete(key).await.unwrap(),
        None,
        "delete of a missing key"
    );
    assert!(
        versions_of(s, key).await.is_empty(),
        "delete of a missing key made a marker"
    );
    let v1 = put(s, key, "one").await;
    let m1 = s.delete(key).await.unwrap().expect("marker");
    assert!(m1 > v1.version);
    assert_eq!(s.delete(key).await.unwrap(), None, "second delete");
    assert_kind(s.head(key, None).await, ErrorKind::NotFound, "head deleted");
    assert_kind(
        s.get(key, GetOptions::default()).await,
        ErrorKind::NotFound,
        "get deleted",
    );
    assert_kind(
        s.head(key, Some(m1)).await,
        ErrorKind::NoSuchVersion,
        "head marker",
    );
    assert_kind(
        s.get(
            key,
            GetOptions {
                version: Some(m1),
                range: None,
            },
        )
        .await,
        ErrorKind::NoSuchVersion,
        "get marker",
    );
    assert_eq!(
        read(s, key, Some(v1.version)).await,
        b"one",
        "old version after delete"
    );
    assert!(list_all(s, &list_req("delete_markers/", None, 0))
        .await
        .is_empty());

    let vs = versions_of(s, key).await;
    assert_eq!(vs.len(), 2);
    assert_eq!(vs[0].version, m1);
    assert!(vs[0].is_delete_marker && vs[0].is_latest);
    assert_eq!(vs[0].size, 0);
    assert_eq!(vs[0].etag, "");
    assert!(!vs[1].is_delete_marker && !vs[1].is_latest);

    // Writing again after a delete.
    let v2 = put(s, key, "two").await;
    assert!(v2.version > m1);
    assert_eq!(read(s, key, None).await, b"two");
    let m2 = s.delete(key).await.unwrap().expect("marker");
    let vs = versions_of(s, key).await;
    let ids: Vec<_> = vs.iter().map(|v| (v.version, v.is_delete_marker)).collect();
    assert_eq!(
        ids,
        vec![
            (m2, true),
            (v2.version, false),
            (m1, true),
            (v1.version, false)
        ]
    );
}

/// delete_version removes one version for good: latest, older, markers (undelete).
pub async fn delete_version(s: &dyn ObjectStore) {
    let key = "delete_version/k";
    let v1 = put(s, key, "one").await.version;
    let v2 = put(s, key, "two").await.version;
    let v3 = put(s, key, "three").await.version;
    let m = s.delete(key).await.unwrap().expect("marker");

    // Removing the marker undeletes.
    s.delete_version(key, m).await.unwrap();
    assert_eq!(s.head(key, None).await.unwrap().version, v3);
    assert_eq!(read(s, key, None).await, b"three");
    assert_kind(
        s.delete_version(key, m).await,
        ErrorKind::NoSuchVersion,
        "marker twice",
    );

    // Removing the latest makes the previous one current.
    s.delete_version(key, v3).await.unwrap();
    assert_eq!(s.head(key, None).await.unwrap().version, v2);
    assert_eq!(read(s, key, None).await, b"two");
    assert_kind(
        s.head(key, Some(v3)).await,
        ErrorKind::NoSuchVersion,
        "removed version",
    );

    // Removing an older one leaves the current one.
    s.delete_version(key, v1).await.unwrap();
    assert_eq!(s.head(key, None).await.unwrap().version, v2);
    assert_kind(
        s.get(
            key,
            GetOptions {
                version: Some(v1),
                range: None,
            },
        )
        .await,
        ErrorKind::NoSuchVersion,
        "removed older version",
    );
    let vs = versions_of(s, key).await;
    assert_eq!(vs.len(), 1);
    assert!(vs[0].is_latest);

    // Unknown versions and keys.
    assert_kind(
        s.delete_version(key, VersionId(7)).await,
        ErrorKind::NoSuchVersion,
        "unknown version",
    );
    assert_kind(
        s.delete_version("delete_version/never", v2).await,
        ErrorKind::NoSuchVersion,
        "unknown key",
    );

    // Removing the last version removes the key from every listing.
    s.delete_version(key, v2).await.unwrap();
    assert_kind(
        s.head(key, None).await,
        ErrorKind::NotFound,
        "all versions removed",
    );
    assert!(versions_of(s, key).await.is_empty());
    assert!(list_all(s, &list_req("delete_version/", None, 0))
        .await
        .is_empty());
    // And the key can be written again.
    put(s, key, "again").await;
    assert_eq!(read(s, key, None).await, b"again");

    // Removing a marker that is not the newest keeps the key live.
    let k2 = "delete_version/k2";
    let a = put(s, k2, "a").await.version;
    let m = s.delete(k2).await.unwrap().expect("marker");
    let b = put(s, k2, "b").await.version;
    s.delete_version(k2, m).await.unwrap();
    assert_eq!(s.head(k2, None).await.unwrap().version, b);
    s.delete_version(k2, b).await.unwrap();
    assert_eq!(s.head(k2, None).await.unwrap().version, a);
}

// ---------------------------------------------------------------------------------------------
// Copy
// ---------------------------------------------------------------------------------------------

/// Copy keeps or replaces metadata, copies old versions, and stays independent of its source.
/// Rename: dst gets src's data and metadata as a new version, src gets a delete marker (its
/// history stays), NOREPLACE and source-version conditions, errors.
pub async fn rename_semantics(s: &dyn ObjectStore) {
    let ns = "rename_semantics/";
    let (a, b) = (format!("{ns}a"), format!("{ns}b"));
    let m = meta(&[("x-amz-meta-mode", "33188")]);
    let d = det_bytes(40, 90_000);
    let v = put_meta(s, &a, &d, &m).await;
    let r = s.rename(&a, &b, RenameOptions::default()).await.unwrap();
    assert_eq!(r.key, b);
    assert_eq!(r.size, d.len() as u64);
    assert_eq!(r.metadata, m);
    assert!(r.version > v.version);
    assert_eq!(read(s, &b, None).await, d);
    assert_kind(s.head(&a, None).await, ErrorKind::NotFound, "rename step 1");
    // The source keeps its history: the old version, then a delete marker.
    let hist = s
        .list_versions(&ListVersionsRequest {
            prefix: a.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let of_a: Vec<_> = hist.versions.iter().filter(|x| x.key == a).collect();
    assert_eq!(of_a.len(), 2);
    assert!(of_a[0].is_delete_marker && of_a[0].is_latest);
    assert_eq!(of_a[1].version, v.version);
    // NOREPLACE: refused when the destination exists; nothing changes.
    let c = format!("{ns}c");
    put(s, &c, "other").await;
    let e = s
        .rename(
            &b,
            &c,
            RenameOptions {
                condition: Condition::IfNotExists,
                ..Default::default()
            },
        )
        .await;
    assert_kind(e, ErrorKind::PreconditionFailed, "rename step 2");
    assert_eq!(read(s, &b, None).await, d);
    assert_eq!(read(s, &c, None).await, b"other".to_vec());
    // Replacing rename over an existing key.
    s.rename(&b, &c, RenameOptions::default()).await.unwrap();
    assert_eq!(read(s, &c, None).await, d);
    assert_kind(s.head(&b, None).await, ErrorKind::NotFound, "rename step 3");
    // Source-version condition.
    let cur = s.head(&c, None).await.unwrap().version;
    let e = s
        .rename(
            &c,
            &a,
            RenameOptions {
                source_version: Some(VersionId(cur.0 - 1)),
                ..Default::default()
            },
        )
        .await;
    assert_kind(e, ErrorKind::PreconditionFailed, "rename step 4");
    s.rename(
        &c,
        &a,
        RenameOptions {
            source_version: Some(cur),
            durable: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(read(s, &a, None).await, d);
    // Errors: a missing source, bad keys.
    assert_kind(
        s.rename(&format!("{ns}missing"), &b, RenameOptions::default())
            .await,
        ErrorKind::NotFound,
        "rename step 5",
    );
    assert_kind(
        s.rename(&a, "/bad", RenameOptions::default()).await,
        ErrorKind::InvalidKey,
        "rename step 6",
    );
}

pub async fn copy_semantics(s: &dyn ObjectStore) {
    let ns = "copy_semantics/";
    let src = format!("{ns}src");
    let m1 = meta(&[("x-amz-meta-mode", "33188")]);
    let d1 = det_bytes(10, 70_000);
    let s1 = put_meta(s, &src, &d1, &m1).await;
    let d2 = det_bytes(11, 300);
    let s2 = put(s, &src, d2.clone()).await;

    // Current version, metadata kept (the current version has none).
    let c = s
        .copy(&src, &format!("{ns}a"), CopyOptions::default())
        .await
        .unwrap();
    assert_eq!(c.key, format!("{ns}a"));
    assert_eq!(c.size, 300);
    assert!(c.metadata.is_empty());
    assert!(c.version > s2.version, "a copy is a new version");
    assert_eq!(read(s, &format!("{ns}a"), None).await, d2);

    // An old version, metadata kept.
    let c = s
        .copy(
            &src,
            &format!("{ns}b"),
            CopyOptions {
                source_version: Some(s1.version),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(c.size, 70_000);
    assert_eq!(c.metadata, m1);
    assert_eq!(s.head(&format!("{ns}b"), None).await.unwrap().metadata, m1);
    assert_eq!(read(s, &format!("{ns}b"), None).await, d1);

    // Metadata replaced.
    let m3 = meta(&[("new", "yes")]);
    let c = s
        .copy(
            &src,
            &format!("{ns}c"),
            CopyOptions {
                source_version: Some(s1.version),
                metadata: Some(m3.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(c.metadata, m3);
    assert_eq!(s.head(&format!("{ns}c"), None).await.unwrap().metadata, m3);
    // Replacing with empty metadata clears it.
    let c = s
        .copy(
            &src,
            &format!("{ns}d"),
            CopyOptions {
                source_version: Some(s1.version),
                metadata: Some(Metadata::new()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(c.metadata.is_empty());

    // Onto itself: a new version with the same bytes.
    let c = s
        .copy(
            &src,
            &src,
            CopyOptions {
                source_version: Some(s1.version),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(c.version > s2.version);
    assert_eq!(read(s, &src, None).await, d1);
    assert_eq!(versions_of(s, &src).await.len(), 3);

    // The copy does not change when the source changes or goes away for good.
    for v in versions_of(s, &src).await {
        s.delete_version(&src, v.version).await.unwrap();
    }
    assert_kind(
        s.head(&src, None).await,
        ErrorKind::NotFound,
        "source removed",
    );
    assert_eq!(read(s, &format!("{ns}b"), None).await, d1);
    assert_eq!(read(s, &format!("{ns}c"), None).await, d1);
    assert_eq!(read(s, &format!("{ns}a"), None).await, d2);
    let (r, part) = read_range(s, &format!("{ns}b"), None, 65_000..66_000).await;
    assert_eq!(r, 65_000..66_000);
    assert_eq!(part, d1[65_000..66_000]);
}

/// Copy fails cleanly on missing sources, missing versions and conditions.
pub async fn copy_errors(s: &dyn ObjectStore) {
    let ns = "copy_errors/";
    let src = format!("{ns}src");
    let dst = format!("{ns}dst");
    assert_kind(
        s.copy(&src, &dst, CopyOptions::default()).await,
        ErrorKind::NotFound,
        "missing source",
    );
    let v1 = put(s, &src, "one").await.version;
    let m = s.delete(&src).await.unwrap().expect("marker");
    assert_kind(
        s.copy(&src, &dst, CopyOptions::default()).await,
        ErrorKind::NotFound,
        "deleted source",
    );
    assert_kind(
        s.copy(
            &src,
            &dst,
            CopyOptions {
                source_version: Some(m),
                ..Default::default()
            },
        )
        .await,
        ErrorKind::NoSuchVersion,
        "source version is a marker",
    );
    assert_kind(
        s.copy(
            &src,
            &dst,
            CopyOptions {
                source_version: Some(VersionId(99)),
                ..Default::default()
            },
        )
        .await,
        ErrorKind::NoSuchVersion,
        "unknown source version",
    );
    // A deleted key's old version can still be copied.
    let c = s
        .copy(
            &src,
            &dst,
            CopyOptions {
                source_version: Some(v1),
                condition: Condition::IfNotExists,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(read(s, &dst, None).await, b"one");
    // Conditions apply to the destination.
    assert_kind(
        s.copy(
            &src,
            &dst,
            CopyOptions {
                source_version: Some(v1),
                condition: Condition::IfNotExists,
                ..Default::default()
            },
        )
        .await,
        ErrorKind::PreconditionFailed,
        "copy IfNotExists onto a live key",
    );
    assert_kind(
        s.copy(
            &src,
            &dst,
            CopyOptions {
                source_version: Some(v1),
                condition: Condition::IfVersion(v1),
                ..Default::default()
            },
        )
        .await,
        ErrorKind::PreconditionFailed,
        "copy IfVersion mismatch",
    );
    let c2 = s
        .copy(
            &src,
            &dst,
            CopyOptions {
                source_version: Some(v1),
                condition: Condition::IfVersion(c.version),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(c2.version > c.version);
    assert_eq!(
        versions_of(s, &dst).await.len(),
        2,
        "failed copies made versions"
    );
}

// ---------------------------------------------------------------------------------------------
// Listing
// ---------------------------------------------------------------------------------------------

/// Keys that sort around '/', runs of '/', and prefixes at and off '/' boundaries.
pub async fn list_sort_around_slash(s: &dyn ObjectStore) {
    let ns = "list_sort_around_slash/";
    let keys = [
        "a", "a.", "a-", "a/", "a0", "a/b", "a//b", "a///", "ab", "a/b/c", "b",
    ];
    for k in keys {
        put(s, &format!("{ns}{k}"), k).await;
    }
    // Byte order: '-' (2D) < '.' (2E) < '/' (2F) < '0' (30) < 'b'.
    let flat = [
        "a", "a-", "a.", "a/", "a///", "a//b", "a/b", "a/b/c", "a0", "ab", "b",
    ];
    let want: Vec<Listed> = flat.iter().map(|k| obj(ns, k)).collect();
    check_listing(s, ns, None, &want).await;

    check_listing(
        s,
        ns,
        Some("/"),
        &[
            obj(ns, "a"),
            obj(ns, "a-"),
            obj(ns, "a."),
            pre(ns, "a/"),
            obj(ns, "a0"),
            obj(ns, "ab"),
            obj(ns, "b"),
        ],
    )
    .await;
    check_listing(
        s,
        &format!("{ns}a/"),
        Some("/"),
        &[
            obj(ns, "a/"),
            pre(ns, "a//"),
            obj(ns, "a/b"),
            pre(ns, "a/b/"),
        ],
    )
    .await;
    check_listing(
        s,
        &format!("{ns}a//"),
        Some("/"),
        &[pre(ns, "a///"), obj(ns, "a//b")],
    )
    .await;
    check_listing(s, &format!("{ns}a///"), Some("/"), &[obj(ns, "a///")]).await;
    // A prefix that is not at a '/' boundary.
    check_listing(
        s,
        &format!("{ns}a"),
        Some("/"),
        &[
            obj(ns, "a"),
            obj(ns, "a-"),
            obj(ns, "a."),
            pre(ns, "a/"),
            obj(ns, "a0"),
            obj(ns, "ab"),
        ],
    )
    .await;
    check_listing(
        s,
        &format!("{ns}a/b"),
        Some("/"),
        &[obj(ns, "a/b"), pre(ns, "a/b/")],
    )
    .await;
    check_listing(
        s,
        &format!("{ns}a/b"),
        None,
        &[obj(ns, "a/b"), obj(ns, "a/b/c")],
    )
    .await;
    check_listing(s, &format!("{ns}zzz"), Some("/"), &[]).await;
}

/// Unicode keys sort by bytes and roll up like any other.
pub async fn list_unicode(s: &dyn ObjectStore) {
    let ns = "list_unicode/";
    for k in ["zü", "é/x", "日本/y", "日本/z/w", "e", "ée"] {
        put(s, &format!("{ns}{k}"), k).await;
    }
    check_listing(
        s,
        ns,
        Some("/"),
        &[
            obj(ns, "e"),
            obj(ns, "zü"),
            pre(ns, "é/"),
            obj(ns, "ée"),
            pre(ns, "日本/"),
        ],
    )
    .await;
    check_listing(
        s,
        &format!("{ns}日本/"),
        Some("/"),
        &[obj(ns, "日本/y"), pre(ns, "日本/z/")],
    )
    .await;
    // A prefix ending inside nothing special: the first byte of a character sequence.
    check_listing(
        s,
        &format!("{ns}é"),
        Some("/"),
        &[pre(ns, "é/"), obj(ns, "ée")],
    )
    .await;
}

/// Delimiters other than "/": single characters and multi-character strings.
pub async fn list_other_delimiters(s: &dyn ObjectStore) {
    let ns = "list_other_delimiters/";
    for k in ["a.b.c", "a.d", "ab", "x//y", "x/y", "x///z"] {
        put(s, &format!("{ns}{k}"), k).await;
    }
    check_listing(
        s,
        ns,
        Some("."),
        &[
            pre(ns, "a."),
            obj(ns, "ab"),
            obj(ns, "x///z"),
            obj(ns, "x//y"),
            obj(ns, "x/y"),
        ],
    )
    .await;
    check_listing(
        s,
        ns,
        Some("//"),
        &[
            obj(ns, "a.b.c"),
            obj(ns, "a.d"),
            obj(ns, "ab"),
            pre(ns, "x//"),
            obj(ns, "x/y"),
        ],
    )
    .await;
    check_listing(
        s,
        &format!("{ns}x//"),
        Some("//"),
        &[obj(ns, "x///z"), obj(ns, "x//y")],
    )
    .await;
}

/// max_keys 1 walks everything one entry per page; exact page sizes end without a token.
pub async fn list_paging(s: &dyn ObjectStore) {
    let ns = "list_paging/";
    let keys: Vec<String> = (0..12).map(|i| format!("{ns}k{i:02}")).collect();
    for k in &keys {
        put(s, k, "x").await;
    }
    let want: Vec<Listed> = keys.iter().cloned().map(Listed::Object).collect();
    check_listing(s, ns, None, &want).await;
    // A page exactly as large as what is left has no token.
    let p = s.list(&list_req(ns, None, 12)).await.unwrap();
    assert_eq!(p.objects.len(), 12);
    assert_eq!(p.next_token, None, "no more entries follow");
    let p = s.list(&list_req(ns, None, 11)).await.unwrap();
    assert_eq!(p.objects.len(), 11);
    assert!(p.next_token.is_some(), "one more entry follows");
    let p2 = s
        .list(&ListRequest {
            continuation: p.next_token,
            ..list_req(ns, None, 11)
        })
        .await
        .unwrap();
    assert_eq!(p2.objects.len(), 1);
    assert_eq!(p2.objects[0].key, keys[11]);
    assert_eq!(p2.next_token, None);
    // An empty listing is one page without a token.
    let p = s
        .list(&list_req(&format!("{ns}none"), None, 1))
        .await
        .unwrap();
    assert!(p.objects.is_empty() && p.common_prefixes.is_empty() && p.next_token.is_none());
}

/// A page that ends on a common prefix resumes after everything under it, even keys written
/// under it after the page was returned; keys written later in order do show up.
pub async fn list_token_across_common_prefix(s: &dyn ObjectStore) {
    let ns = "list_token_across_common_prefix/";
    for k in ["a/1", "a/2", "a/3/x", "b", "c/1", "c/2", "d"] {
        put(s, &format!("{ns}{k}"), k).await;
    }
    check_listing(
        s,
        ns,
        Some("/"),
        &[pre(ns, "a/"), obj(ns, "b"), pre(ns, "c/"), obj(ns, "d")],
    )
    .await;

    let req = list_req(ns, Some("/"), 1);
    let p1 = s.list(&req).await.unwrap();
    assert_eq!(p1.common_prefixes, vec![format!("{ns}a/")]);
    assert!(p1.objects.is_empty());
    let token = p1.next_token.expect("more follow");
    put(s, &format!("{ns}a/9"), "late").await;
    put(s, &format!("{ns}a/zz/y"), "late").await;
    put(s, &format!("{ns}bb"), "late").await;
    let rest = list_all(
        s,
        &ListRequest {
            continuation: Some(token),
            ..req.clone()
        },
    )
    .await;
    assert_eq!(
        rest,
        vec![obj(ns, "b"), obj(ns, "bb"), pre(ns, "c/"), obj(ns, "d")]
    );

    // The same with two entries per page, ending on c/.
    let req = list_req(ns, Some("/"), 3);
    let p1 = s.list(&req).await.unwrap();
    assert_eq!(
        p1.objects.iter().map(|o| o.key.clone()).collect::<Vec<_>>(),
        vec![format!("{ns}b"), format!("{ns}bb")]
    );
    assert_eq!(p1.common_prefixes, vec![format!("{ns}a/")]);
    let p2 = s
        .list(&ListRequest {
            continuation: p1.next_token.clone(),
            ..req.clone()
        })
        .await
        .unwrap();
    assert_eq!(p2.common_prefixes, vec![format!("{ns}c/")]);
    assert_eq!(
        p2.objects.iter().map(|o| o.key.clone()).collect::<Vec<_>>(),
        vec![format!("{ns}d")]
    );
    assert_eq!(p2.next_token, None);

    // Deep prefixes: a page ending on a//-style prefixes.
    for k in ["e//1", "e//2", "e///3", "e/f"] {
        put(s, &format!("{ns}{k}"), k).await;
    }
    check_listing(
        s,
        &format!("{ns}e/"),
        Some("/"),
        &[pre(ns, "e//"), obj(ns, "e/f")],
    )
    .await;
    check_listing(
        s,
        &format!("{ns}e//"),
        Some("/"),
        &[pre(ns, "e///"), obj(ns, "e//1"), obj(ns, "e//2")],
    )
    .await;
}

/// start_after is a key position; a continuation token overrides it.
pub async fn list_start_after(s: &dyn ObjectStore) {
    let ns = "list_start_after/";
    for i in 0..10 {
        put(s, &format!("{ns}k{i}"), "x").await;
    }
    put(s, &format!("{ns}m/1"), "x").await;
    put(s, &format!("{ns}m/2"), "x").await;
    let after = |sa: &str, delim: Option<&str>, max: usize| ListRequest {
        start_after: Some(sa.to_string()),
        ..list_req(ns, delim, max)
    };
    let all = |from: usize| -> Vec<Listed> {
        (from..10)
            .map(|i| obj(ns, &format!("k{i}")))
            .chain([obj(ns, "m/1"), obj(ns, "m/2")])
            .collect()
    };
    assert_eq!(
        list_all(s, &after(&format!("{ns}k4"), None, 0)).await,
        all(5)
    );
    assert_eq!(
        list_all(s, &after(&format!("{ns}k4"), None, 1)).await,
        all(5)
    );
    assert_eq!(
        list_all(s, &after(&format!("{ns}k45"), None, 2)).await,
        all(5),
        "start_after a missing key"
    );
    assert_eq!(
        list_all(s, &after("", None, 0)).await,
        all(0),
        "empty start_after"
    );
    assert_eq!(
        list_all(s, &after("a", None, 0)).await,
        all(0),
        "start_after before the prefix"
    );
    assert_eq!(
        list_all(s, &after(&format!("{ns}k"), None, 0)).await,
        all(0)
    );
    let p = s.list(&after(&format!("{ns}z"), None, 0)).await.unwrap();
    assert!(
        p.objects.is_empty() && p.next_token.is_none(),
        "start_after past the end"
    );
    let p = s.list(&after("zzzz", None, 0)).await.unwrap();
    assert!(
        p.objects.is_empty() && p.next_token.is_none(),
        "start_after past the prefix"
    );
    // Keys after start_after still roll up into their common prefix.
    assert_eq!(
        list_all(s, &after(&format!("{ns}k8"), Some("/"), 0)).await,
        vec![obj(ns, "k9"), pre(ns, "m/")]
    );
    assert_eq!(
        list_all(s, &after(&format!("{ns}m/1"), Some("/"), 0)).await,
        vec![pre(ns, "m/")]
    );
    assert_eq!(
        list_all(s, &after(&format!("{ns}m/2"), Some("/"), 0)).await,
        vec![]
    );
    // A continuation token wins over start_after.
    let p1 = s.list(&list_req(ns, None, 2)).await.unwrap();
    let mut req = after(&format!("{ns}k8"), None, 2);
    req.continuation = p1.next_token;
    let p2 = s.list(&req).await.unwrap();
    let got: Vec<String> = p2.objects.into_iter().map(|o| o.key).collect();
    assert_eq!(got, vec![format!("{ns}k2"), format!("{ns}k3")]);
}

/// The empty prefix lists the whole store, in order, with this case's keys among them.
pub async fn list_empty_prefix(s: &dyn ObjectStore) {
    let ns = "list_empty_prefix/";
    for k in ["a", "b/c", "d"] {
        put(s, &format!("{ns}{k}"), "x").await;
    }
    for max_keys in [0, 1, 3] {
        let all = list_all(s, &list_req("", None, max_keys)).await;
        let mine: Vec<Listed> = all
            .into_iter()
            .filter(|e| e.name().starts_with(ns))
            .collect();
        assert_eq!(
            mine,
            vec![obj(ns, "a"), obj(ns, "b/c"), obj(ns, "d")],
            "max_keys {max_keys}"
        );
        let top = list_all(s, &list_req("", Some("/"), max_keys)).await;
        assert!(
            top.contains(&Listed::Prefix(ns.to_string())),
            "max_keys {max_keys}: {top:?}"
        );
        assert!(!top
            .iter()
            .any(|e| e.name().starts_with(ns) && e.name() != ns));
    }
}

/// Listings see every completed write at once, and only completed writes.
pub async fn list_consistency(s: &dyn ObjectStore) {
    let ns = "list_consistency/";
    let k = format!("{ns}k");
    let lst = || list_req(ns, None, 0);
    assert!(list_all(s, &lst()).await.is_empty());
    let v1 = put(s, &k, "one").await;
    let pages = walk_list(s, &lst()).await;
    assert_eq!(pages[0].objects.len(), 1);
    assert_eq!(pages[0].objects[0].version, v1.version);
    assert_eq!(pages[0].objects[0].size, 3);
    let v2 = put(s, &k, "three").await;
    let pages = walk_list(s, &lst()).await;
    assert_eq!(pages[0].objects[0].version, v2.version);
    assert_eq!(pages[0].objects[0].size, 5);
    assert_eq!(pages[0].objects[0].etag, v2.etag);
    let m = s.delete(&k).await.unwrap().expect("marker");
    assert!(list_all(s, &lst()).await.is_empty());
    s.delete_version(&k, m).await.unwrap();
    assert_eq!(list_all(s, &lst()).await, vec![Listed::Object(k.clone())]);
    // An upload in progress is not listed; its completion is.
    let mk = format!("{ns}mp");
    let id = s
        .create_multipart(&mk, PutOptions::default())
        .await
        .unwrap();
    let p = s.upload_part(&mk, &id, 1, "part".into()).await.unwrap();
    assert_eq!(list_all(s, &lst()).await, vec![Listed::Object(k.clone())]);
    s.complete_multipart(&mk, &id, &done(&[&p])).await.unwrap();
    assert_eq!(
        list_all(s, &lst()).await,
        vec![Listed::Object(k.clone()), Listed::Object(mk)]
    );
    // A copy is listed.
    s.copy(&k, &format!("{ns}copy"), CopyOptions::default())
        .await
        .unwrap();
    assert_eq!(list_all(s, &lst()).await.len(), 3);
}

/// A continuation token that this store did not make is an InvalidArgument.
pub async fn list_invalid_token(s: &dyn ObjectStore) {
    let ns = "list_invalid_token/";
    put(s, &format!("{ns}a"), "x").await;
    for bad in [
        "%%% not a token %%%",
        "\u{0}\u{1}",
        "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff!",
    ] {
        assert_kind(
            s.list(&ListRequest {
                continuation: Some(bad.to_string()),
                ..list_req(ns, None, 1)
            })
            .await,
            ErrorKind::InvalidArgument,
            &format!("token {bad:?}"),
        );
    }
}

/// max_keys 0 means 1000.
pub async fn list_default_page_size(s: &dyn ObjectStore) {
    let ns = "list_default_page_size/";
    let keys: Vec<String> = (0..1001).map(|i| format!("{ns}{i:05}")).collect();
    for chunk in keys.chunks(50) {
        join_all(chunk.iter().map(|k| put(s, k, "x"))).await;
    }
    let p = s.list(&list_req(ns, None, 0)).await.unwrap();
    assert_eq!(p.objects.len(), 1000);
    assert!(p.next_token.is_some());
    let p2 = s
        .list(&ListRequest {
            continuation: p.next_token,
            ..list_req(ns, None, 0)
        })
        .await
        .unwrap();
    assert_eq!(p2.objects.len(), 1);
    assert_eq!(p2.objects[0].key, keys[1000]);
    assert_eq!(p2.next_token, None);
    let v = s
        .list_versions(&ListVersionsRequest {
            prefix: ns.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(v.versions.len(), 1000);
    assert_eq!(v.next_key_marker.as_deref(), Some(keys[999].as_str()));
}

// ---------------------------------------------------------------------------------------------
// Version listing
// ---------------------------------------------------------------------------------------------

/// Versions and markers: key asc, version desc, is_latest on the newest of each key.
pub async fn list_versions_order(s: &dyn ObjectStore) {
    let ns = "list_versions_order/";
    let a1 = put(s, &format!("{ns}a"), "1").await.version;
    let b1 = put(s, &format!("{ns}b"), "1").await.version;
    let a2 = put(s, &format!("{ns}a"), "22").await.version;
    let am = s.delete(&format!("{ns}a")).await.unwrap().expect("marker");
    let c1 = put(s, &format!("{ns}a/c"), "1").await.version;
    let b2 = put(s, &format!("{ns}b"), "2").await.version;
    let all = list_versions_all(
        s,
        &ListVersionsRequest {
            prefix: ns.into(),
            ..Default::default()
        },
    )
    .await;
    let k = |x: &str| format!("{ns}{x}");
    assert_eq!(
        vsummary(&all),
        vec![
            (k("a"), am, true, true),
            (k("a"), a2, false, false),
            (k("a"), a1, false, false),
            (k("a/c"), c1, true, false),
            (k("b"), b2, true, false),
            (k("b"), b1, false, false),
        ]
    );
    if let VListed::Version(v) = &all[1] {
        assert_eq!(v.size, 2);
        assert!(!v.etag.is_empty());
    }
    // Delimited: a/ rolls up even though it holds only one key.
    let d = list_versions_all(
        s,
        &ListVersionsRequest {
            prefix: ns.into(),
            delimiter: Some("/".into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(d.len(), 6);
    assert_eq!(d[3], VListed::Prefix(k("a/")));
    assert_eq!(vsummary(&d).len(), 5);
}

/// Paging a version listing with markers, including page boundaries inside one key.
pub async fn list_versions_paging(s: &dyn ObjectStore) {
    let ns = "list_versions_paging/";
    let k = |x: &str| format!("{ns}{x}");
    let mut a = Vec::new();
    for i in 0..4 {
        a.push(put(s, &k("a"), format!("a{i}")).await.version);
    }
    a.push(s.delete(&k("a")).await.unwrap().expect("marker"));
    let b1 = put(s, &k("b"), "b1").await.version;
    let b2 = put(s, &k("b"), "b2").await.version;
    let c1 = put(s, &k("c"), "c1").await.version;
    let full_req = ListVersionsRequest {
        prefix: ns.into(),
        ..Default::default()
    };
    let full = vsummary(&list_versions_all(s, &full_req).await);
    let want: Vec<(String, VersionId)> = a
        .iter()
        .rev()
        .map(|v| (k("a"), *v))
        .chain([(k("b"), b2), (k("b"), b1), (k("c"), c1)])
        .collect();
    assert_eq!(
        full.iter().map(|e| (e.0.clone(), e.1)).collect::<Vec<_>>(),
        want
    );
    for max_keys in 1..=9 {
        let pages = walk_versions(
            s,
            &ListVersionsRequest {
                max_keys,
                ..full_req.clone()
            },
        )
        .await;
        let walked: Vec<VListed> = pages.iter().flat_map(|p| p.entries.clone()).collect();
        assert_eq!(vsummary(&walked), full, "max_keys {max_keys}");
        assert_eq!(
            pages.len(),
            8usize.div_ceil(max_keys),
            "max_keys {max_keys}"
        );
    }
    // A page boundary inside a's versions.
    let p = s
        .list_versions(&ListVersionsRequest {
            max_keys: 2,
            ..full_req.clone()
        })
        .await
        .unwrap();
    assert_eq!(p.next_key_marker, Some(k("a")));
    assert_eq!(p.next_version_marker, Some(a[3]));
    let after = |km: &str, vm: Option<VersionId>| ListVersionsRequest {
        key_marker: Some(km.to_string()),
        version_marker: vm,
        ..full_req.clone()
    };
    let ids = |entries: Vec<VListed>| {
        vsummary(&entries)
            .into_iter()
            .map(|e| e.1)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(list_versions_all(s, &after(&k("a"), Some(a[3]))).await),
        vec![a[2], a[1], a[0], b2, b1, c1]
    );
    assert_eq!(
        ids(list_versions_all(s, &after(&k("a"), Some(a[4]))).await),
        vec![a[3], a[2], a[1], a[0], b2, b1, c1]
    );
    assert_eq!(
        ids(list_versions_all(s, &after(&k("a"), Some(a[0]))).await),
        vec![b2, b1, c1]
    );
    // A key marker alone skips all of that key's versions.
    assert_eq!(
        ids(list_versions_all(s, &after(&k("a"), None)).await),
        vec![b2, b1, c1]
    );
    assert_eq!(
        ids(list_versions_all(s, &after(&k("a0"), None)).await),
        vec![b2, b1, c1],
        "missing key marker"
    );
    assert_eq!(
        ids(list_versions_all(s, &after(&k("b"), Some(b2))).await),
        vec![b1, c1]
    );
    assert_eq!(
        ids(list_versions_all(s, &after(&k("c"), None)).await),
        Vec::<VersionId>::new()
    );
    assert_eq!(ids(list_versions_all(s, &after("", None)).await).len(), 8);
    // is_latest is about the key, not the page.
    let p = s.list_versions(&after(&k("a"), Some(a[4]))).await.unwrap();
    assert!(
        !p.versions[0].is_latest,
        "a[3] is not the latest even first in its page"
    );
    let p = s.list_versions(&after(&k("b"), None)).await.unwrap();
    assert!(p.versions[0].is_latest);
}

/// Delimited version listing: a page ending on a common prefix resumes after all of it.
pub async fn list_versions_delimiter(s: &dyn ObjectStore) {
    let ns = "list_versions_delimiter/";
    let k = |x: &str| format!("{ns}{x}");
    put(s, &k("d/1"), "x").await;
    put(s, &k("d/2"), "x").await;
    put(s, &k("d/2"), "y").await;
    let e1 = put(s, &k("e"), "x").await.version;
    let e2 = put(s, &k("e"), "y").await.version;
    put(s, &k("f/x/y"), "x").await;
    let req = ListVersionsRequest {
        prefix: ns.into(),
        delimiter: Some("/".into()),
        max_keys: 1,
        ..Default::default()
    };
    let p1 = s.list_versions(&req).await.unwrap();
    assert_eq!(p1.common_prefixes, vec![k("d/")]);
    assert!(p1.versions.is_empty());
    assert_eq!(p1.next_key_marker, Some(k("d/")));
    assert_eq!(p1.next_version_marker, None);
    put(s, &k("d/3"), "late").await;
    let rest = list_versions_all(
        s,
        &ListVersionsRequest {
            key_marker: p1.next_key_marker,
            ..req.clone()
        },
    )
    .await;
    assert_eq!(rest.len(), 3, "{rest:?}");
    assert_eq!(
        vsummary(&rest).iter().map(|e| e.1).collect::<Vec<_>>(),
        vec![e2, e1]
    );
    assert_eq!(rest[2], VListed::Prefix(k("f/")));
    let all = list_versions_all(s, &req).await;
    assert_eq!(all.len(), 4);
    // Inside a prefix.
    let inner = list_versions_all(
        s,
        &ListVersionsRequest {
            prefix: k("d/"),
            delimiter: Some("/".into()),
            max_keys: 2,
            ..Default::default()
        },
    )
    .await;
    let keys: Vec<String> = inner.iter().map(|e| e.name().to_string()).collect();
    assert_eq!(keys, vec![k("d/1"), k("d/2"), k("d/2"), k("d/3")]);
    let f = list_versions_all(
        s,
        &ListVersionsRequest {
            prefix: k("f/"),
            delimiter: Some("/".into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(f, vec![VListed::Prefix(k("f/x/"))]);
}

/// A key marker (like `start_after`) is a key position, also when it lies under a common
/// prefix: keys after it that roll up still give their prefix. Only a marker that *is* a
/// common prefix of the listing (a page ended on it) skips everything under it.
pub async fn list_versions_key_marker_inside_prefix(s: &dyn ObjectStore) {
    let ns = "list_versions_key_marker_inside_prefix/";
    let k = |x: &str| format!("{ns}{x}");
    put(s, &k("a/b"), "x").await;
    put(s, &k("a/c"), "x").await;
    let b = put(s, &k("b"), "x").await.version;
    let req = |marker: &str| ListVersionsRequest {
        prefix: ns.into(),
        delimiter: Some("/".into()),
        key_marker: Some(k(marker)),
        ..Default::default()
    };
    let p = s.list_versions(&req("a/b")).await.unwrap();
    assert_eq!(
        p.common_prefixes,
        vec![k("a/")],
        "a/c lies after the marker a/b"
    );
    assert_eq!(
        p.versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        vec![b]
    );
    let p = s.list_versions(&req("a/c")).await.unwrap();
    assert!(p.common_prefixes.is_empty(), "nothing under a/ after a/c");
    assert_eq!(p.versions.len(), 1);
    let p = s.list_versions(&req("a/")).await.unwrap();
    assert!(
        p.common_prefixes.is_empty(),
        "the marker a/ is the prefix itself"
    );
    // The same positions in `list`.
    let l = |sa: &str| ListRequest {
        start_after: Some(k(sa)),
        ..list_req(ns, Some("/"), 0)
    };
    assert_eq!(
        list_all(s, &l("a/b")).await,
        vec![pre(ns, "a/"), obj(ns, "b")]
    );
    assert_eq!(list_all(s, &l("a/c")).await, vec![obj(ns, "b")]);
}

// ---------------------------------------------------------------------------------------------
// Multipart
// ---------------------------------------------------------------------------------------------

/// Parts in any order, a replaced part, list_parts, metadata from create, etag "-N".
pub async fn multipart_basic(s: &dyn ObjectStore) {
    let key = "multipart_basic/obj";
    let m = meta(&[("x-amz-meta-mode", "33188")]);
    let id = s
        .create_multipart(
            key,
            PutOptions {
                metadata: m.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(!id.is_empty());
    let d: Vec<Vec<u8>> = (0..3)
        .map(|i| det_bytes(100 + i, 1000 + 37 * i as usize))
        .collect();
    let p3 = s
        .upload_part(key, &id, 3, d[2].clone().into())
        .await
        .unwrap();
    let p1 = s
        .upload_part(key, &id, 1, d[0].clone().into())
        .await
        .unwrap();
    let p2_old = s
        .upload_part(key, &id, 2, "to be replaced".into())
        .await
        .unwrap();
    assert_eq!((p3.part_number, p3.size), (3, d[2].len() as u64));
    assert_eq!((p1.part_number, p1.size), (1, 1000));
    let parts = s.list_parts(key, &id).await.unwrap();
    assert_eq!(parts, vec![p1.clone(), p2_old.clone(), p3.clone()]);
    let p2 = s
        .upload_part(key, &id, 2, d[1].clone().into())
        .await
        .unwrap();
    assert_ne!(p2.etag, p2_old.etag);
    let parts = s.list_parts(key, &id).await.unwrap();
    assert_eq!(parts, vec![p1.clone(), p2.clone(), p3.clone()]);
    // Not visible before completion.
    assert_kind(
        s.head(key, None).await,
        ErrorKind::NotFound,
        "before complete",
    );
    // The old etag of a replaced part is no longer accepted.
    assert_kind(
        s.complete_multipart(key, &id, &done(&[&p1, &p2_old, &p3]))
            .await,
        ErrorKind::InvalidPart,
        "etag of a replaced part",
    );
    let info = s
        .complete_multipart(key, &id, &done(&[&p1, &p2, &p3]))
        .await
        .unwrap();
    assert!(info.etag.ends_with("-3"), "multipart etag {:?}", info.etag);
    assert_eq!(info.metadata, m);
    let want: Vec<u8> = d.concat();
    assert_eq!(info.size, want.len() as u64);
    assert_eq!(read(s, key, None).await, want);
    assert_eq!(s.head(key, None).await.unwrap(), info);
    // Ranges across part boundaries.
    let (r, got) = read_range(s, key, None, 990..1010).await;
    assert_eq!((r.clone(), got), (990..1010, want[990..1010].to_vec()));
    // The upload is gone.
    assert_kind(
        s.list_parts(key, &id).await,
        ErrorKind::NoSuchUpload,
        "list_parts after complete",
    );
    assert_kind(
        s.complete_multipart(key, &id, &done(&[&p1, &p2, &p3]))
            .await,
        ErrorKind::NoSuchUpload,
        "complete twice",
    );
    assert!(s
        .list_multipart_uploads("multipart_basic/")
        .await
        .unwrap()
        .is_empty());
}

/// Parts uploaded but not listed in complete are discarded; a single part works.
pub async fn multipart_unlisted_parts(s: &dyn ObjectStore) {
    let key = "multipart_unlisted_parts/obj";
    let id = s
        .create_multipart(key, PutOptions::default())
        .await
        .unwrap();
    let p1 = s.upload_part(key, &id, 1, "one-".into()).await.unwrap();
    let _p2 = s.upload_part(key, &id, 2, "two-".into()).await.unwrap();
    let p5 = s.upload_part(key, &id, 5, "five".into()).await.unwrap();
    let info = s
        .complete_multipart(key, &id, &done(&[&p1, &p5]))
        .await
        .unwrap();
    assert!(info.etag.ends_with("-2"), "{:?}", info.etag);
    assert_eq!(read(s, key, None).await, b"one-five");
    // A single (empty) part.
    let id = s
        .create_multipart(key, PutOptions::default())
        .await
        .unwrap();
    let p = s.upload_part(key, &id, 7, Body::empty()).await.unwrap();
    assert_eq!(p.size, 0);
    let info = s.complete_multipart(key, &id, &done(&[&p])).await.unwrap();
    assert_eq!(info.size, 0);
    assert!(info.etag.ends_with("-1"));
    assert_eq!(read(s, key, None).await, b"");
    assert_eq!(versions_of(s, key).await.len(), 2);
}

/// Part numbers are 1..=10000.
pub async fn multipart_part_numbers(s: &dyn ObjectStore) {
    let key = "multipart_part_numbers/obj";
    let src = "multipart_part_numbers/src";
    put(s, src, "src").await;
    let id = s
        .create_multipart(key, PutOptions::default())
        .await
        .unwrap();
    for n in [0, MAX_PART_NUMBER + 1, u32::MAX] {
        assert_kind(
            s.upload_part(key, &id, n, "x".into()).await,
            ErrorKind::InvalidPart,
            &format!("part {n}"),
        );
        assert_kind(
            s.upload_part_copy(key, &id, n, src, None, None).await,
            ErrorKind::InvalidPart,
            &format!("part copy {n}"),
        );
    }
    assert!(s.list_parts(key, &id).await.unwrap().is_empty());
    let last = s
        .upload_part(key, &id, MAX_PART_NUMBER, "last".into())
        .await
        .unwrap();
    let first = s.upload_part(key, &id, 1, "first-".into()).await.unwrap();
    assert_kind(
        s.complete_multipart(
            key,
            &id,
            &[CompletedPart {
                part_number: 0,
                etag: first.etag.clone(),
            }],
        )
        .await,
        ErrorKind::InvalidPart,
        "complete with part 0",
    );
    s.complete_multipart(key, &id, &done(&[&first, &last]))
        .await
        .unwrap();
    assert_eq!(read(s, key, None).await, b"first-last");
}

/// Complete rejects empty, duplicate, unordered, missing and mismatched parts, and the upload
/// survives a rejected complete.
pub async fn multipart_complete_errors(s: &dyn ObjectStore) {
    let key = "multipart_complete_errors/obj";
    let id = s
        .create_multipart(key, PutOptions::default())
        .await
        .unwrap();
    let p1 = s.upload_part(key, &id, 1, "a".into()).await.unwrap();
    let p2 = s.upload_part(key, &id, 2, "b".into()).await.unwrap();
    let p3 = s.upload_part(key, &id, 3, "c".into()).await.unwrap();
    let bad_etag = CompletedPart {
        part_number: 2,
        etag: "0123456789abcdef0123456789abcdef".into(),
    };
    let cases: Vec<(&str, Vec<CompletedPart>)> = vec![
        ("empty list", vec![]),
        ("duplicate", done(&[&p1, &p1, &p2])),
        ("unordered", done(&[&p2, &p1, &p3])),
        ("missing part", {
            let mut v = done(&[&p1, &p2]);
            v.push(CompletedPart {
                part_number: 4,
                etag: p3.etag.clone(),
            });
            v
        }),
        ("wrong etag", {
            let mut v = done(&[&p1]);
            v.push(bad_etag);
            v
        }),
        (
            "etag of another part",
            vec![CompletedPart {
                part_number: 1,
                etag: p2.etag.clone(),
            }],
        ),
    ];
    for (what, parts) in cases {
        assert_kind(
            s.complete_multipart(key, &id, &parts).await,
            ErrorKind::InvalidPart,
            what,
        );
        assert_kind(
            s.head(key, None).await,
            ErrorKind::NotFound,
            &format!("{what} created the object"),
        );
    }
    assert_eq!(
        s.list_parts(key, &id).await.unwrap().len(),
        3,
        "upload survives"
    );
    s.complete_multipart(key, &id, &done(&[&p1, &p2, &p3]))
        .await
        .unwrap();
    assert_eq!(read(s, key, None).await, b"abc");
}

/// Unknown, aborted, completed and foreign upload ids are NoSuchUpload everywhere.
pub async fn multipart_unknown_upload(s: &dyn ObjectStore) {
    let ns = "multipart_unknown_upload/";
    let key = format!("{ns}obj");
    let src = format!("{ns}src");
    put(s, &src, "source").await;
    let check = |id: String, key: String, what: &'static str| {
        let src = src.clone();
        async move {
            let cp = [CompletedPart {
                part_number: 1,
                etag: "e".into(),
            }];
            assert_kind(
                s.upload_part(&key, &id, 1, "x".into()).await,
                ErrorKind::NoSuchUpload,
                what,
            );
            assert_kind(
                s.upload_part_copy(&key, &id, 1, &src, None, None).await,
                ErrorKind::NoSuchUpload,
                what,
            );
            assert_kind(s.list_parts(&key, &id).await, ErrorKind::NoSuchUpload, what);
            assert_kind(
                s.complete_multipart(&key, &id, &cp).await,
                ErrorKind::NoSuchUpload,
                what,
            );
            assert_kind(
                s.abort_multipart(&key, &id).await,
                ErrorKind::NoSuchUpload,
                what,
            );
        }
    };
    check("never-created".into(), key.clone(), "unknown id").await;
    check(String::new(), key.clone(), "empty id").await;

    let id = s
        .create_multipart(&key, PutOptions::default())
        .await
        .unwrap();
    let p = s.upload_part(&key, &id, 1, "x".into()).await.unwrap();
    // An id is valid only with its key.
    check(id.clone(), format!("{ns}other"), "id with another key").await;
    assert_eq!(
        s.list_parts(&key, &id).await.unwrap(),
        vec![p],
        "foreign use must not harm the upload"
    );
    s.abort_multipart(&key, &id).await.unwrap();
    check(id, key.clone(), "aborted id").await;
    assert_kind(
        s.head(&key, None).await,
        ErrorKind::NotFound,
        "aborted upload made an object",
    );

    let id = s
        .create_multipart(&key, PutOptions::default())
        .await
        .unwrap();
    let p = s.upload_part(&key, &id, 1, "x".into()).await.unwrap();
    s.complete_multipart(&key, &id, &done(&[&p])).await.unwrap();
    check(id, key.clone(), "completed id").await;
    assert!(s.list_multipart_uploads(ns).await.unwrap().is_empty());
}

/// upload_part_copy: ranges of the current version, whole old versions, clamping, errors.
pub async fn multipart_part_copy(s: &dyn ObjectStore) {
    let ns = "multipart_part_copy/";
    let src = format!("{ns}src");
    let key = format!("{ns}obj");
    let d1 = det_bytes(21, 1000);
    let d2 = det_bytes(22, 3000);
    let v1 = put(s, &src, d1.clone()).await.version;
    let _v2 = put(s, &src, d2.clone()).await.version;
    let id = s
        .create_multipart(&key, PutOptions::default())
        .await
        .unwrap();
    let p1 = s
        .upload_part_copy(&key, &id, 1, &src, None, Some(100..600))
        .await
        .unwrap();
    assert_eq!(p1.size, 500);
    let p2 = s
        .upload_part_copy(&key, &id, 2, &src, Some(v1), None)
        .await
        .unwrap();
    assert_eq!(p2.size, 1000);
    let p3 = s.upload_part(&key, &id, 3, "tail".into()).await.unwrap();
    let p4 = s
        .upload_part_copy(&key, &id, 4, &src, None, Some(2900..5000))
        .await
        .unwrap();
    assert_eq!(p4.size, 100, "range end clamped");
    let p5 = s
        .upload_part_copy(&key, &id, 5, &src, None, Some(3000..3000))
        .await
        .unwrap();
    assert_eq!(p5.size, 0);
    assert_eq!(
        s.list_parts(&key, &id).await.unwrap(),
        vec![p1.clone(), p2.clone(), p3.clone(), p4.clone(), p5.clone()]
    );

    assert_kind(
        s.upload_part_copy(&key, &id, 6, &src, None, Some(3001..3002))
            .await,
        ErrorKind::InvalidRange,
        "range past the end",
    );
    assert_kind(
        s.upload_part_copy(&key, &id, 6, &src, None, Some(Range { start: 10, end: 5 }))
            .await,
        ErrorKind::InvalidRange,
        "inverted range",
    );
    assert_kind(
        s.upload_part_copy(&key, &id, 6, &format!("{ns}missing"), None, None)
            .await,
        ErrorKind::NotFound,
        "missing source",
    );
    assert_kind(
        s.upload_part_copy(&key, &id, 6, &src, Some(VersionId(5)), None)
            .await,
        ErrorKind::NoSuchVersion,
        "missing source version",
    );
    let other = format!("{ns}deleted");
    let ov = put(s, &other, "x").await.version;
    let om = s.delete(&other).await.unwrap().expect("marker");
    assert_kind(
        s.upload_part_copy(&key, &id, 6, &other, None, None).await,
        ErrorKind::NotFound,
        "deleted source",
    );
    assert_kind(
        s.upload_part_copy(&key, &id, 6, &other, Some(om), None)
            .await,
        ErrorKind::NoSuchVersion,
        "marker source",
    );
    let p6 = s
        .upload_part_copy(&key, &id, 6, &other, Some(ov), None)
        .await
        .unwrap();
    assert_eq!(
        s.list_parts(&key, &id).await.unwrap().len(),
        6,
        "failed part copies made parts"
    );

    let info = s
        .complete_multipart(&key, &id, &done(&[&p1, &p2, &p3, &p4, &p5, &p6]))
        .await
        .unwrap();
    let mut want = d2[100..600].to_vec();
    want.extend_from_slice(&d1);
    want.extend_from_slice(b"tail");
    want.extend_from_slice(&d2[2900..3000]);
    want.extend_from_slice(b"x");
    assert_eq!(info.size, want.len() as u64);
    assert_eq!(read(s, &key, None).await, want);
    // The result stands on its own when the sources are removed for good.
    for v in versions_of(s, &src).await {
        s.delete_version(&src, v.version).await.unwrap();
    }
    assert_eq!(read(s, &key, None).await, want);
    let (_, got) = read_range(s, &key, None, 450..1600).await;
    assert_eq!(got, want[450..1600]);
}

/// list_multipart_uploads: by key then initiation, filtered by prefix, without finished ones.
pub async fn multipart_list_uploads(s: &dyn ObjectStore) {
    let ns = "multipart_list_uploads/";
    let k = |x: &str| format!("{ns}{x}");
    let u_b = s
        .create_multipart(&k("b"), PutOptions::default())
        .await
        .unwrap();
    let u_a1 = s
        .create_multipart(&k("a"), PutOptions::default())
        .await
        .unwrap();
    let u_a2 = s
        .create_multipart(&k("a"), PutOptions::default())
        .await
        .unwrap();
    let u_c = s
        .create_multipart(&k("c/x"), PutOptions::default())
        .await
        .unwrap();
    let ids = [&u_b, &u_a1, &u_a2, &u_c];
    for (i, a) in ids.iter().enumerate() {
        for b in &ids[i + 1..] {
            assert_ne!(a, b, "upload ids must be unique");
        }
    }
    let list = s.list_multipart_uploads(ns).await.unwrap();
    let got: Vec<(String, String)> = list
        .iter()
        .map(|u| (u.key.clone(), u.upload_id.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (k("a"), u_a1.clone()),
            (k("a"), u_a2.clone()),
            (k("b"), u_b.clone()),
            (k("c/x"), u_c.clone())
        ]
    );
    assert!(list[0].initiated <= list[1].initiated);
    let now = SystemTime::now();
    assert!(list
        .iter()
        .all(|u| within(u.initiated, now - Duration::from_secs(60), now)));
    let c = s.list_multipart_uploads(&k("c/")).await.unwrap();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].upload_id, u_c);
    assert!(s
        .list_multipart_uploads(&k("zzz"))
        .await
        .unwrap()
        .is_empty());
    let everything = s.list_multipart_uploads("").await.unwrap();
    assert!(everything.iter().filter(|u| u.key.starts_with(ns)).count() == 4);
    // Uploads are not objects.
    assert!(list_all(s, &list_req(ns, None, 0)).await.is_empty());

    s.abort_multipart(&k("a"), &u_a1).await.unwrap();
    let p = s.upload_part(&k("a"), &u_a2, 1, "x".into()).await.unwrap();
    s.complete_multipart(&k("a"), &u_a2, &done(&[&p]))
        .await
        .unwrap();
    let got: Vec<String> = s
        .list_multipart_uploads(ns)
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.upload_id)
        .collect();
    assert_eq!(got, vec![u_b.clone(), u_c.clone()]);
    s.abort_multipart(&k("b"), &u_b).await.unwrap();
    s.abort_multipart(&k("c/x"), &u_c).await.unwrap();
    assert!(s.list_multipart_uploads(ns).await.unwrap().is_empty());
}

/// The condition of create_multipart is checked at completion; a failure keeps the upload.
pub async fn multipart_condition(s: &dyn ObjectStore) {
    let key = "multipart_condition/obj";
    let v1 = put(s, key, "existing").await.version;
    let id = s
        .create_multipart(
            key,
            PutOptions {
                condition: Condition::IfNotExists,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let p = s.upload_part(key, &id, 1, "new".into()).await.unwrap();
    assert_kind(
        s.complete_multipart(key, &id, &done(&[&p])).await,
        ErrorKind::PreconditionFailed,
        "IfNotExists at complete",
    );
    assert_eq!(read(s, key, None).await, b"existing");
    assert_eq!(versions_of(s, key).await.len(), 1);
    // Once the key is deleted, the same upload completes.
    s.delete(key).await.unwrap();
    s.complete_multipart(key, &id, &done(&[&p])).await.unwrap();
    assert_eq!(read(s, key, None).await, b"new");

    // IfVersion, checked at complete time, not at create time.
    let cur = s.head(key, None).await.unwrap().version;
    let id = s
        .create_multipart(
            key,
            PutOptions {
                condition: Condition::IfVersion(cur),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let p = s.upload_part(key, &id, 1, "newer".into()).await.unwrap();
    put(s, key, "interloper").await;
    assert_kind(
        s.complete_multipart(key, &id, &done(&[&p])).await,
        ErrorKind::PreconditionFailed,
        "IfVersion at complete",
    );
    assert_ne!(v1, cur);
    s.abort_multipart(key, &id).await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Bodies and sizes
// ---------------------------------------------------------------------------------------------

fn chunked(data: &[u8], sizes: impl Fn(usize) -> usize) -> Body {
    let mut chunks = Vec::new();
    let mut off = 0;
    let mut i = 0;
    while off < data.len() {
        let n = sizes(i).min(data.len() - off);
        chunks.push(Ok(Bytes::copy_from_slice(&data[off..off + n])));
        off += n;
        i += 1;
    }
    Body::from_stream(futures::stream::iter(chunks))
}

/// Streamed bodies of many small (and empty) chunks are stored exactly.
pub async fn streaming_bodies(s: &dyn ObjectStore) {
    let ns = "streaming_bodies/";
    let data = det_bytes(30, 40_000);
    let info = s
        .put(
            &format!("{ns}a"),
            chunked(&data, |i| i % 97),
            PutOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(info.size, 40_000);
    assert_eq!(read(s, &format!("{ns}a"), None).await, data);
    // The same bytes as one buffer.
    put(s, &format!("{ns}b"), data.clone()).await;
    assert_eq!(read(s, &format!("{ns}b"), None).await, data);
    // A stream without chunks is an empty object.
    let info = s
        .put(
            &format!("{ns}empty"),
            Body::from_stream(futures::stream::iter(Vec::new())),
            PutOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(info.size, 0);
    // A part from a stream.
    let key = format!("{ns}mp");
    let id = s
        .create_multipart(&key, PutOptions::default())
        .await
        .unwrap();
    let p1 = s
        .upload_part(&key, &id, 1, chunked(&data, |i| 1 + i % 13))
        .await
        .unwrap();
    assert_eq!(p1.size, 40_000);
    let p2 = s
        .upload_part(&key, &id, 2, chunked(b"end", |_| 1))
        .await
        .unwrap();
    s.complete_multipart(&key, &id, &done(&[&p1, &p2]))
        .await
        .unwrap();
    let mut want = data.clone();
    want.extend_from_slice(b"end");
    assert_eq!(read(s, &key, None).await, want);
}

/// A body stream that fails makes the write fail and leaves nothing behind.
pub async fn streaming_error_is_atomic(s: &dyn ObjectStore) {
    let ns = "streaming_error_is_atomic/";
    let failing = || {
        let chunks: Vec<objfs_store::Result<Bytes>> = vec![
            Ok(Bytes::from(det_bytes(1, 5000))),
            Ok(Bytes::from(det_bytes(2, 5000))),
            Err(StoreError::io(
                "test body",
                std::io::Error::other("the client went away"),
            )),
        ];
        Body::from_stream(futures::stream::iter(chunks))
    };
    let key = format!("{ns}k");
    assert!(s.put(&key, failing(), PutOptions::default()).await.is_err());
    assert_kind(s.head(&key, None).await, ErrorKind::NotFound, "failed put");
    assert!(versions_of(s, &key).await.is_empty());
    let v1 = put(s, &key, "good").await.version;
    assert!(s.put(&key, failing(), PutOptions::default()).await.is_err());
    assert_eq!(s.head(&key, None).await.unwrap().version, v1);
    assert_eq!(read(s, &key, None).await, b"good");
    // A failing part leaves the previous part of that number in place.
    let mk = format!("{ns}mp");
    let id = s
        .create_multipart(&mk, PutOptions::default())
        .await
        .unwrap();
    let p1 = s.upload_part(&mk, &id, 1, "part one".into()).await.unwrap();
    assert!(s.upload_part(&mk, &id, 1, failing()).await.is_err());
    assert!(s.upload_part(&mk, &id, 2, failing()).await.is_err());
    assert_eq!(s.list_parts(&mk, &id).await.unwrap(), vec![p1.clone()]);
    s.complete_multipart(&mk, &id, &done(&[&p1])).await.unwrap();
    assert_eq!(read(s, &mk, None).await, b"part one");
}

/// A 20 MiB object spanning many internal blobs, read whole and across boundaries.
pub async fn large_object(s: &dyn ObjectStore) {
    let key = "large_object/big";
    let size = 20 << 20;
    let data = det_bytes(40, size);
    let info = s
        .put(key, chunked(&data, |_| 64 << 10), PutOptions::default())
        .await
        .unwrap();
    assert_eq!(info.size, size as u64);
    assert!(
        read(s, key, None).await == data,
        "whole 20 MiB read differs"
    );
    let mut ranges: Vec<Range<u64>> = vec![0..1, 0..4096, 4095..4097, 0..(256 << 10) + 1];
    for b in [4096u64, 65536, 256 << 10, 1 << 20, 3 << 20, 10 << 20] {
        ranges.push(b - 1..b + 1);
        ranges.push(b - 100..b + 5000);
    }
    ranges.push((256 << 10) - 10..3 * (256 << 10) + 10);
    ranges.push((1 << 20) - 7..(5 << 20) + 13);
    ranges.push(size as u64 - 1..size as u64);
    ranges.push(size as u64 - 5000..size as u64 + 5000);
    ranges.push(size as u64..size as u64);
    for r in ranges {
        let (got, bytes) = read_range(s, key, None, r.clone()).await;
        let end = r.end.min(size as u64);
        assert_eq!(got, r.start..end);
        assert!(
            bytes == data[r.start as usize..end as usize],
            "range {r:?} differs"
        );
    }
    // Copy shares the data and reads the same.
    s.copy(key, "large_object/copy", CopyOptions::default())
        .await
        .unwrap();
    let (_, bytes) = read_range(s, "large_object/copy", None, (7 << 20) - 3..(9 << 20) + 3).await;
    assert!(bytes == data[(7 << 20) - 3..(9 << 20) + 3]);
}

/// A large multipart object made of a copied range of a large object and fresh parts.
pub async fn large_multipart(s: &dyn ObjectStore) {
    let ns = "large_multipart/";
    let src = format!("{ns}src");
    let key = format!("{ns}obj");
    let sdata = det_bytes(50, 6 << 20);
    put(s, &src, sdata.clone()).await;
    let id = s
        .create_multipart(&key, PutOptions::default())
        .await
        .unwrap();
    let fresh = det_bytes(51, (3 << 20) + 17);
    let r = ((1 << 20) + 3)..((5 << 20) + 7);
    let (p1, p2, p3) = futures::join!(
        s.upload_part_copy(&key, &id, 1, &src, None, Some(r.clone())),
        s.upload_part(&key, &id, 2, chunked(&fresh, |_| 100_000)),
        s.upload_part_copy(&key, &id, 3, &src, None, None),
    );
    let (p1, p2, p3) = (p1.unwrap(), p2.unwrap(), p3.unwrap());
    s.complete_multipart(&key, &id, &done(&[&p1, &p2, &p3]))
        .await
        .unwrap();
    let mut want = sdata[r.start as usize..r.end as usize].to_vec();
    want.extend_from_slice(&fresh);
    want.extend_from_slice(&sdata);
    assert!(read(s, &key, None).await == want, "large multipart differs");
    let b1 = p1.size;
    let b2 = p1.size + p2.size;
    for r in [b1 - 10..b1 + 10, b2 - 4097..b2 + 4097, b1 - 1..b2 + 1] {
        let (_, got) = read_range(s, &key, None, r.clone()).await;
        assert!(got == want[r.start as usize..r.end as usize], "range {r:?}");
    }
}

/// Concurrent writes to one key all make versions; concurrent parts all land.
pub async fn concurrent_writes(s: &dyn ObjectStore) {
    let key = "concurrent_writes/k";
    let results = join_all((0..8u64).map(|i| {
        s.put(
            key,
            det_bytes(i, 1000 + i as usize).into(),
            PutOptions::default(),
        )
    }))
    .await;
    let infos: Vec<ObjectInfo> = results.into_iter().map(|r| r.unwrap()).collect();
    let mut ids: Vec<VersionId> = infos.iter().map(|i| i.version).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 8, "version ids must be unique");
    let newest = infos.iter().max_by_key(|i| i.version).unwrap();
    assert_eq!(s.head(key, None).await.unwrap().version, newest.version);
    let i = infos
        .iter()
        .position(|x| x.version == newest.version)
        .unwrap();
    assert_eq!(read(s, key, None).await, det_bytes(i as u64, 1000 + i));
    assert_eq!(versions_of(s, key).await.len(), 8);
    // IfNotExists races: exactly one wins.
    let k2 = "concurrent_writes/once";
    let res = join_all((0..6).map(|_| {
        s.put(
            k2,
            "x".into(),
            PutOptions {
                condition: Condition::IfNotExists,
                ..Default::default()
            },
        )
    }))
    .await;
    assert_eq!(
        res.iter().filter(|r| r.is_ok()).count(),
        1,
        "exactly one IfNotExists wins"
    );
    for r in res.into_iter().filter_map(|r| r.err()) {
        assert_eq!(r.kind(), ErrorKind::PreconditionFailed);
    }
    // Parts concurrently.
    let mk = "concurrent_writes/mp";
    let id = s.create_multipart(mk, PutOptions::default()).await.unwrap();
    let parts: Vec<PartInfo> = join_all(
        (1..=16u32)
            .rev()
            .map(|n| s.upload_part(mk, &id, n, det_bytes(n as u64, 3000).into())),
    )
    .await
    .into_iter()
    .map(|r| r.unwrap())
    .collect();
    let mut parts_sorted = parts.clone();
    parts_sorted.sort_by_key(|p| p.part_number);
    assert_eq!(s.list_parts(mk, &id).await.unwrap(), parts_sorted);
    let refs: Vec<&PartInfo> = parts_sorted.iter().collect();
    s.complete_multipart(mk, &id, &done(&refs)).await.unwrap();
    let want: Vec<u8> = (1..=16u64).flat_map(|n| det_bytes(n, 3000)).collect();
    assert_eq!(read(s, mk, None).await, want);
}

// ---------------------------------------------------------------------------------------------
// Durability, capacity, description
// ---------------------------------------------------------------------------------------------

/// Durable writes and sync succeed and change nothing visible.
pub async fn sync_and_durable(s: &dyn ObjectStore) {
    let ns = "sync_and_durable/";
    let durable = PutOptions {
        durable: true,
        ..Default::default()
    };
    s.put(&format!("{ns}a"), "durable".into(), durable.clone())
        .await
        .unwrap();
    put(s, &format!("{ns}b"), "plain").await;
    s.sync().await.unwrap();
    s.sync().await.unwrap();
    s.copy(
        &format!("{ns}a"),
        &format!("{ns}c"),
        CopyOptions {
            durable: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let id = s
        .create_multipart(&format!("{ns}d"), durable)
        .await
        .unwrap();
    let p = s
        .upload_part(&format!("{ns}d"), &id, 1, "mp".into())
        .await
        .unwrap();
    s.complete_multipart(&format!("{ns}d"), &id, &done(&[&p]))
        .await
        .unwrap();
    s.sync().await.unwrap();
    assert_eq!(read(s, &format!("{ns}a"), None).await, b"durable");
    assert_eq!(read(s, &format!("{ns}b"), None).await, b"plain");
    assert_eq!(read(s, &format!("{ns}c"), None).await, b"durable");
    assert_eq!(read(s, &format!("{ns}d"), None).await, b"mp");
}

/// used_bytes and objects follow the live current versions (relative checks only).
pub async fn capacity_accounting(s: &dyn ObjectStore) {
    let ns = "capacity_accounting/";
    let c0 = s.capacity().await.unwrap();
    assert!(c0.total_bytes >= c0.free_bytes, "{c0:?}");
    assert!(c0.total_bytes > 0);
    let a = format!("{ns}a");
    put(s, &a, vec![7u8; 10_000]).await;
    let c1 = s.capacity().await.unwrap();
    assert_eq!(c1.used_bytes, c0.used_bytes + 10_000, "after put");
    assert_eq!(c1.objects, c0.objects + 1);
    // An overwrite replaces the size; old versions are not live.
    put(s, &a, vec![8u8; 4_000]).await;
    let c2 = s.capacity().await.unwrap();
    assert_eq!(c2.used_bytes, c0.used_bytes + 4_000, "after overwrite");
    assert_eq!(c2.objects, c0.objects + 1);
    // A copy is a live object of its own (logical bytes).
    s.copy(&a, &format!("{ns}b"), CopyOptions::default())
        .await
        .unwrap();
    let c3 = s.capacity().await.unwrap();
    assert_eq!(c3.used_bytes, c0.used_bytes + 8_000, "after copy");
    assert_eq!(c3.objects, c0.objects + 2);
    // A delete hides the object.
    let m = s.delete(&a).await.unwrap().expect("marker");
    let c4 = s.capacity().await.unwrap();
    assert_eq!(c4.used_bytes, c0.used_bytes + 4_000, "after delete");
    assert_eq!(c4.objects, c0.objects + 1);
    // Undelete brings it back.
    s.delete_version(&a, m).await.unwrap();
    let c5 = s.capacity().await.unwrap();
    assert_eq!(c5.used_bytes, c0.used_bytes + 8_000, "after undelete");
    assert_eq!(c5.objects, c0.objects + 2);
    // A multipart result counts once completed.
    let mk = format!("{ns}mp");
    let id = s
        .create_multipart(&mk, PutOptions::default())
        .await
        .unwrap();
    let p = s
        .upload_part(&mk, &id, 1, vec![1u8; 3_000].into())
        .await
        .unwrap();
    s.complete_multipart(&mk, &id, &done(&[&p])).await.unwrap();
    let c6 = s.capacity().await.unwrap();
    assert_eq!(c6.used_bytes, c0.used_bytes + 11_000, "after multipart");
    assert_eq!(c6.objects, c0.objects + 3);
    // Removing every version of everything returns to the start.
    for k in [a, format!("{ns}b"), mk] {
        for v in versions_of(s, &k).await {
            s.delete_version(&k, v.version).await.unwrap();
        }
    }
    let c7 = s.capacity().await.unwrap();
    assert_eq!(
        (c7.used_bytes, c7.objects),
        (c0.used_bytes, c0.objects),
        "after removing all"
    );
    assert!(c7.total_bytes >= c7.free_bytes);
}

/// describe() names the backend; features() are coherent.
pub async fn describe_and_features(s: &dyn ObjectStore) {
    assert!(!s.describe().trim().is_empty());
    let f = s.features();
    // A backend with a minimum part size must still accept a small last part.
    let key = "describe_and_features/mp";
    let id = s
        .create_multipart(key, PutOptions::default())
        .await
        .unwrap();
    let first = det_bytes(60, f.min_part_size.max(1) as usize);
    let p1 = s
        .upload_part(key, &id, 1, first.clone().into())
        .await
        .unwrap();
    let p2 = s
        .upload_part(key, &id, 2, "small last".into())
        .await
        .unwrap();
    s.complete_multipart(key, &id, &done(&[&p1, &p2]))
        .await
        .unwrap();
    let mut want = first;
    want.extend_from_slice(b"small last");
    assert_eq!(read(s, key, None).await, want);
}

/// Generates one `#[tokio::test]` per conformance case. `$make` is an async fn (a path to one)
/// returning a [`crate::Fixture`], called afresh for every case.
#[macro_export]
macro_rules! conformance_tests {
    ($make:path) => {
        $crate::__conformance_cases!(@tests $make);
    };
}

/// The one list of conformance cases, expanded into tests or into a sequential run.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    (@expand tests [$make:path] $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let fixture = $make().await;
                $crate::conformance::$case(fixture.store()).await;
            }
        )*
    };
    (@expand run [$s:ident] $($case:ident),*) => {
        $( $crate::conformance::$case($s).await; )*
    };
    (@$mode:ident $($arg:tt)*) => {
        $crate::__conformance_cases!(@expand $mode [$($arg)*]
            put_get_head,
            empty_object,
            get_ranges,
            metadata_round_trip,
            conditions,
            invalid_keys,
            key_shapes,
            rename_semantics,
            versions_ordering,
            delete_markers,
            delete_version,
            copy_semantics,
            copy_errors,
            list_sort_around_slash,
            list_unicode,
            list_other_delimiters,
            list_paging,
            list_token_across_common_prefix,
            list_start_after,
            list_empty_prefix,
            list_consistency,
            list_invalid_token,
            list_default_page_size,
            list_versions_order,
            list_versions_paging,
            list_versions_delimiter,
            list_versions_key_marker_inside_prefix,
            multipart_basic,
            multipart_unlisted_parts,
            multipart_part_numbers,
            multipart_complete_errors,
            multipart_unknown_upload,
            multipart_part_copy,
            multipart_list_uploads,
            multipart_condition,
            streaming_bodies,
            streaming_error_is_atomic,
            large_object,
            large_multipart,
            concurrent_writes,
            sync_and_durable,
            capacity_accounting,
            describe_and_features
        );
    };
}

/// Runs every case in turn against one shared store.
pub async fn run_all(s: &dyn ObjectStore) {
    crate::__conformance_cases!(@run s);
}
