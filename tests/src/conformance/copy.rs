//! Server-side copy and rename.

use objfs_store::{
    Change, Condition, CopyOptions, ErrorKind, ListVersionsRequest, Metadata, ObjectStore,
    RenameOptions, VersionId,
};

use crate::support::{assert_kind, det_bytes};

use super::helpers::*;

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
    assert_ne!(r.version, v.version);
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
                source_version: Some(never_made()),
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
    assert_ne!(c.version, s2.version, "a copy is a new version");
    assert_eq!(read(s, &format!("{ns}a"), None).await, d2);

    // An old version, metadata kept.
    let c = s
        .copy(
            &src,
            &format!("{ns}b"),
            CopyOptions {
                source_version: Some(s1.version.clone()),
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
                source_version: Some(s1.version.clone()),
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
                source_version: Some(s1.version.clone()),
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
    assert_ne!(c.version, s2.version);
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
                source_version: Some(never_made()),
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
                source_version: Some(v1.clone()),
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
                source_version: Some(v1.clone()),
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
                source_version: Some(v1.clone()),
                condition: Condition::IfVersion(v1.clone()),
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
                condition: Condition::IfVersion(c.version.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_ne!(c2.version, c.version);
    assert_eq!(
        versions_of(s, &dst).await.len(),
        2,
        "failed copies made versions"
    );
}

/// `change_many`: each change as its single-key operation would, in order, one result per
/// change; a failed change changes nothing and the others still apply; a key in two changes is
/// refused before anything changes.
pub async fn change_many_batches(s: &dyn ObjectStore) {
    let ns = "change_many_batches/";
    let k = |n: &str| format!("{ns}{n}");
    let a = put(s, &k("a"), "alpha").await;
    let b1 = put(s, &k("b"), "bravo").await.version;
    s.delete(&k("b")).await.unwrap().expect("marker");
    let d = put(s, &k("d"), "delta").await.version;
    let copy = |src: &str, dst: &str, source_version: Option<VersionId>, condition| Change::Copy {
        src: k(src),
        dst: k(dst),
        opts: CopyOptions {
            source_version,
            metadata: Some(meta(&[("x-amz-meta-restored", "1")])),
            condition,
            durable: false,
        },
    };
    let changes = vec![
        copy("a", "a2", None, Condition::IfNotExists),
        copy("b", "b", Some(b1.clone()), Condition::IfNotExists),
        Change::DeleteIf {
            key: k("d"),
            condition: Condition::IfVersion(a.version.clone()),
        },
        Change::DeleteIf {
            key: k("never"),
            condition: Condition::None,
        },
        copy("missing", "m2", None, Condition::None),
        copy("c", "c", Some(never_made()), Condition::None),
    ];
    let out = s.change_many(&changes).await.unwrap();
    assert_eq!(out.len(), changes.len());
    let a2 = out[0].as_ref().unwrap().clone().expect("a2's version");
    let b2 = out[1].as_ref().unwrap().clone().expect("b's new version");
    assert_ne!(a2, b2);
    assert_result_kind(
        &out[2],
        ErrorKind::PreconditionFailed,
        "delete with a wrong version",
    );
    assert_eq!(out[3].as_ref().unwrap(), &None, "nothing to delete");
    assert_result_kind(&out[4], ErrorKind::NotFound, "missing source");
    assert_result_kind(&out[5], ErrorKind::NoSuchVersion, "unknown source version");
    // The applied changes show, with their metadata; the failed ones left nothing behind.
    assert_eq!(read(s, &k("a2"), None).await, b"alpha");
    assert_eq!(read(s, &k("b"), None).await, b"bravo");
    let hb = s.head(&k("b"), None).await.unwrap();
    assert_eq!(hb.version, b2);
    assert_eq!(
        hb.metadata.get("x-amz-meta-restored").map(String::as_str),
        Some("1")
    );
    assert_eq!(s.head(&k("d"), None).await.unwrap().version, d);
    assert_eq!(versions_of(s, &k("d")).await.len(), 1);
    assert_eq!(versions_of(s, &k("b")).await.len(), 3);
    assert_kind(s.head(&k("m2"), None).await, ErrorKind::NotFound, "m2");
    assert_kind(
        s.head(&k("never"), None).await,
        ErrorKind::NotFound,
        "never",
    );
    // A second batch sees the first: conditions on the versions it made.
    let out = s
        .change_many(&[
            Change::DeleteIf {
                key: k("b"),
                condition: Condition::IfVersion(b2.clone()),
            },
            copy("a2", "a3", Some(a2.clone()), Condition::IfNotExists),
        ])
        .await
        .unwrap();
    assert!(out[0].as_ref().unwrap().is_some(), "{out:?}");
    assert!(out[1].as_ref().unwrap().is_some(), "{out:?}");
    assert_kind(
        s.head(&k("b"), None).await,
        ErrorKind::NotFound,
        "b deleted",
    );
    assert_eq!(read(s, &k("a3"), None).await, b"alpha");
    // A key in two changes: refused, nothing applied.
    assert_kind(
        s.change_many(&[
            copy("a", "x", None, Condition::None),
            Change::DeleteIf {
                key: k("x"),
                condition: Condition::None,
            },
        ])
        .await,
        ErrorKind::InvalidArgument,
        "a key in two changes",
    );
    assert_kind(s.head(&k("x"), None).await, ErrorKind::NotFound, "x");
    // An empty batch is nothing.
    assert!(s.change_many(&[]).await.unwrap().is_empty());
}

fn assert_result_kind(r: &objfs_store::Result<Option<VersionId>>, kind: ErrorKind, what: &str) {
    match r {
        Ok(v) => panic!("{what}: expected {kind:?}, got Ok({v:?})"),
        Err(e) => assert_eq!(e.kind(), kind, "{what}: expected {kind:?}, got {e}"),
    }
}
