//! Basic object operations: put, get, head, ranges, metadata, conditional writes, key rules.

use std::ops::Range;
use std::time::SystemTime;

use objfs_store::key::KeyError;
use objfs_store::{
    Body, CompletedPart, Condition, CopyOptions, ErrorKind, GetOptions, ListVersionsRequest,
    ObjectStore, PutOptions, StoreError,
};

use crate::support::{assert_kind, det_bytes, list_all, walk_list, Listed};

use super::helpers::*;

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
    let head_v = s.head(&key, Some(info.version.clone())).await.unwrap();
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
        let (got_v, bytes_v) = read_range(s, key, Some(v.clone()), req.clone()).await;
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
    if !s.features().versioning {
        // One version per key: the old one is gone.
        return;
    }
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
        .put(
            key,
            "two".into(),
            cond(Condition::IfVersion(v1.version.clone())),
        )
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
            cond(Condition::IfVersion(never_made())),
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
        s.put(key, "x".into(), cond(Condition::IfVersion(marker.clone())))
            .await,
        ErrorKind::PreconditionFailed,
        "IfVersion of a delete marker",
    );
    let v3 = s
        .put(key, "three".into(), cond(Condition::IfNotExists))
        .await
        .unwrap();
    assert_eq!(read(s, key, None).await, b"three");
    assert_ne!(v3.version, marker);

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
    let max = s.features().max_key_len;
    let too_long = "x".repeat(max + 1);
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
            s.head(k, Some(gv.clone())).await,
            ErrorKind::InvalidKey,
            &ctx("head version"),
        );
        assert_kind(s.delete(k).await, ErrorKind::InvalidKey, &ctx("delete"));
        assert_kind(
            s.delete_version(k, gv.clone()).await,
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
            reason: KeyError::TooLong { len, max: m },
            ..
        }) => assert_eq!((len, m), (max + 1, max)),
        other => panic!("expected InvalidKey TooLong, got {other:?}"),
    }
    // Nothing was written.
    let all = list_all(s, &list_req("invalid_keys/", None, 0)).await;
    assert_eq!(all, vec![Listed::Object(good.into())]);
    assert_eq!(read(s, good, None).await, b"x");
}

/// Keys of every legal shape work: runs of '/', trailing '/', unicode, spaces, and keys of the
/// backend's maximum length (4,096 bytes locally, 1,024 on S3).
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
    let max = s.features().max_key_len;
    let mut long = ns.to_string();
    while long.len() + 3 <= max {
        long.push('x');
    }
    while long.len() < max - 2 {
        long.push('y');
    }
    long.push('é');
    assert_eq!(long.len(), max);
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

/// Times kept beside keys: recorded without a version, each time replacing only its own
/// field, for keys that exist or not, and unchanged by writes of the key.
pub async fn key_times_beside_versions(s: &dyn ObjectStore) {
    use objfs_store::KeyTimes;
    use std::time::{Duration, UNIX_EPOCH};
    let k = "key_times/f";
    assert_eq!(s.key_times(k).await.unwrap(), KeyTimes::default());
    let v1 = put(s, k, "x").await.version;
    let t1 = UNIX_EPOCH + Duration::new(1_700_000_000, 123);
    let t2 = UNIX_EPOCH + Duration::new(1_700_000_500, 0);
    s.set_key_times(
        k,
        KeyTimes {
            accessed: Some(t1),
            changed: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(s.head(k, None).await.unwrap().version, v1, "no new version");
    s.set_key_times(
        k,
        KeyTimes {
            accessed: None,
            changed: Some(t2),
        },
    )
    .await
    .unwrap();
    let want = KeyTimes {
        accessed: Some(t1),
        changed: Some(t2),
    };
    assert_eq!(s.key_times(k).await.unwrap(), want);
    put(s, k, "y").await;
    assert_eq!(s.key_times(k).await.unwrap(), want, "kept across writes");
    // A directory marker that does not exist (an implicit directory) holds times too.
    let d = "key_times/implicit/";
    s.set_key_times(
        d,
        KeyTimes {
            accessed: None,
            changed: Some(t2),
        },
    )
    .await
    .unwrap();
    assert_eq!(s.key_times(d).await.unwrap().changed, Some(t2));
    assert_kind(
        s.set_key_times("", KeyTimes::default()).await,
        ErrorKind::InvalidKey,
        "set_key_times with an empty key",
    );
}
