//! Multipart uploads: parts, completion rules, upload ids, part copies, conditions.

use std::ops::Range;
use std::time::{Duration, SystemTime};

use objfs_store::{
    Body, CompletedPart, Condition, ErrorKind, ObjectStore, PutOptions, MAX_PART_NUMBER,
};

use crate::support::{assert_kind, det_bytes, list_all};

use super::helpers::*;

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
        s.upload_part_copy(&key, &id, 6, &src, Some(never_made()), None)
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
                condition: Condition::IfVersion(cur.clone()),
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

/// upload_part_zeros: parts of zeros between data parts and part copies read back as zeros,
/// whole and in ranges across every boundary; they survive copies, part copies of their
/// ranges and the removal of the version they came from; bad numbers and uploads are refused.
pub async fn multipart_zero_parts(s: &dyn ObjectStore) {
    let ns = "multipart_zero_parts/";
    let src = format!("{ns}src");
    let key = format!("{ns}obj");
    let d = det_bytes(31, 3000);
    put(s, &src, d.clone()).await;
    let id = s
        .create_multipart(&key, PutOptions::default())
        .await
        .unwrap();
    let p1 = s.upload_part(&key, &id, 1, "head".into()).await.unwrap();
    let p2 = s.upload_part_zeros(&key, &id, 2, 5000).await.unwrap();
    assert_eq!(p2.size, 5000);
    let p3 = s
        .upload_part_copy(&key, &id, 3, &src, None, Some(100..600))
        .await
        .unwrap();
    let p4 = s.upload_part_zeros(&key, &id, 4, 0).await.unwrap();
    assert_eq!(p4.size, 0);
    s.upload_part(&key, &id, 5, "replaced".into())
        .await
        .unwrap();
    let p5 = s.upload_part_zeros(&key, &id, 5, 70_000).await.unwrap();
    let p6 = s.upload_part(&key, &id, 6, "tail".into()).await.unwrap();
    assert_eq!(
        s.list_parts(&key, &id).await.unwrap(),
        vec![
            p1.clone(),
            p2.clone(),
            p3.clone(),
            p4.clone(),
            p5.clone(),
            p6.clone()
        ]
    );
    for n in [0, MAX_PART_NUMBER + 1] {
        assert_kind(
            s.upload_part_zeros(&key, &id, n, 10).await,
            ErrorKind::InvalidPart,
            &format!("zero part {n}"),
        );
    }
    assert_kind(
        s.upload_part_zeros(&key, "no-such-upload", 1, 10).await,
        ErrorKind::NoSuchUpload,
        "zero part of an unknown upload",
    );
    let info = s
        .complete_multipart(&key, &id, &done(&[&p1, &p2, &p3, &p4, &p5, &p6]))
        .await
        .unwrap();
    let mut want = b"head".to_vec();
    want.extend(std::iter::repeat_n(0u8, 5000));
    want.extend_from_slice(&d[100..600]);
    want.extend(std::iter::repeat_n(0u8, 70_000));
    want.extend_from_slice(b"tail");
    assert_eq!(info.size, want.len() as u64);
    assert_eq!(read(s, &key, None).await, want);
    let n = want.len() as u64;
    for r in [
        2..4,
        2..6000,
        4000..5300,
        5004..5504,
        5400..75_504,
        5504..n,
        n - 2..n,
    ] {
        let (_, got) = read_range(s, &key, None, r.clone()).await;
        assert_eq!(got, want[r.start as usize..r.end as usize], "range {r:?}");
    }

    // A copy, and a part copy of a range that starts and ends inside zeros.
    let copy = format!("{ns}copy");
    s.copy(&key, &copy, Default::default()).await.unwrap();
    let id2 = s
        .create_multipart(&format!("{ns}sliced"), PutOptions::default())
        .await
        .unwrap();
    let q1 = s
        .upload_part_copy(
            &format!("{ns}sliced"),
            &id2,
            1,
            &key,
            None,
            Some(1000..6000),
        )
        .await
        .unwrap();
    let q2 = s
        .upload_part_zeros(&format!("{ns}sliced"), &id2, 2, 3)
        .await
        .unwrap();
    s.complete_multipart(&format!("{ns}sliced"), &id2, &done(&[&q1, &q2]))
        .await
        .unwrap();
    let mut sliced = want[1000..6000].to_vec();
    sliced.extend_from_slice(&[0, 0, 0]);
    // The object the copies came from is removed for good: they stand on their own.
    for v in versions_of(s, &key).await {
        s.delete_version(&key, v.version).await.unwrap();
    }
    assert_eq!(read(s, &copy, None).await, want);
    assert_eq!(read(s, &format!("{ns}sliced"), None).await, sliced);

    // An object of zeros only.
    let zeros = format!("{ns}zeros");
    let id3 = s
        .create_multipart(&zeros, PutOptions::default())
        .await
        .unwrap();
    let z = s.upload_part_zeros(&zeros, &id3, 1, 3 << 20).await.unwrap();
    let info = s
        .complete_multipart(&zeros, &id3, &done(&[&z]))
        .await
        .unwrap();
    assert_eq!(info.size, 3 << 20);
    let got = read(s, &zeros, None).await;
    assert_eq!(got.len(), 3 << 20);
    assert!(got.iter().all(|b| *b == 0));
}
