//! Versions: ids, history newest first, delete markers, delete_version.

use std::time::SystemTime;

use objfs_store::{ErrorKind, GetOptions, ObjectStore, VersionId};

use crate::support::{assert_kind, det_bytes, list_all};

use super::helpers::*;

/// Versions are new ids, listed newest first, each readable by id, and the newest is current.
pub async fn versions_ordering(s: &dyn ObjectStore) {
    let key = "versions_ordering/k";
    let before = SystemTime::now();
    let mut infos = Vec::new();
    for i in 0..5u64 {
        infos.push(put(s, key, det_bytes(i, 100 + i as usize)).await);
    }
    let after = SystemTime::now();
    let made: Vec<VersionId> = infos.iter().map(|i| i.version.clone()).collect();
    assert_distinct(&made, "every put makes a new version");
    for w in infos.windows(2) {
        assert!(
            w[0].modified <= w[1].modified,
            "version times must not go back"
        );
    }
    for info in &infos {
        assert!(within(info.modified, before, after), "version time");
    }
    assert_eq!(s.head(key, None).await.unwrap().version, infos[4].version);
    for (i, info) in infos.iter().enumerate() {
        assert_eq!(
            read(s, key, Some(info.version.clone())).await,
            det_bytes(i as u64, 100 + i)
        );
        let h = s.head(key, Some(info.version.clone())).await.unwrap();
        assert_eq!(h.size, 100 + i as u64);
        assert_eq!(h.etag, info.etag);
    }
    let vs = versions_of(s, key).await;
    let ids: Vec<VersionId> = vs.iter().map(|v| v.version.clone()).collect();
    let mut want: Vec<VersionId> = infos.iter().map(|i| i.version.clone()).collect();
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
        ("unknown", never_made()),
        ("other key's", other.version.clone()),
    ] {
        assert_kind(
            s.head(key, Some(v.clone())).await,
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
    assert_ne!(m1, v1.version);
    assert_eq!(s.delete(key).await.unwrap(), None, "second delete");
    assert_kind(s.head(key, None).await, ErrorKind::NotFound, "head deleted");
    assert_kind(
        s.get(key, GetOptions::default()).await,
        ErrorKind::NotFound,
        "get deleted",
    );
    assert_kind(
        s.head(key, Some(m1.clone())).await,
        ErrorKind::NoSuchVersion,
        "head marker",
    );
    assert_kind(
        s.get(
            key,
            GetOptions {
                version: Some(m1.clone()),
                range: None,
            },
        )
        .await,
        ErrorKind::NoSuchVersion,
        "get marker",
    );
    assert_eq!(
        read(s, key, Some(v1.version.clone())).await,
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
    assert_ne!(v2.version, m1);
    assert_eq!(read(s, key, None).await, b"two");
    let m2 = s.delete(key).await.unwrap().expect("marker");
    let vs = versions_of(s, key).await;
    let ids: Vec<_> = vs
        .iter()
        .map(|v| (v.version.clone(), v.is_delete_marker))
        .collect();
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
    s.delete_version(key, m.clone()).await.unwrap();
    assert_eq!(s.head(key, None).await.unwrap().version, v3);
    assert_eq!(read(s, key, None).await, b"three");
    assert_kind(
        s.delete_version(key, m).await,
        ErrorKind::NoSuchVersion,
        "marker twice",
    );

    // Removing the latest makes the previous one current.
    s.delete_version(key, v3.clone()).await.unwrap();
    assert_eq!(s.head(key, None).await.unwrap().version, v2);
    assert_eq!(read(s, key, None).await, b"two");
    assert_kind(
        s.head(key, Some(v3)).await,
        ErrorKind::NoSuchVersion,
        "removed version",
    );

    // Removing an older one leaves the current one.
    s.delete_version(key, v1.clone()).await.unwrap();
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
        s.delete_version(key, never_made()).await,
        ErrorKind::NoSuchVersion,
        "unknown version",
    );
    assert_kind(
        s.delete_version("delete_version/never", v2.clone()).await,
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
