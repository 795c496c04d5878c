//! Version listing: order, paging with markers, delimiters.

use objfs_store::{ErrorKind, ListRequest, ListVersionsRequest, ObjectStore, VersionId};

use crate::support::{assert_kind, list_all, list_versions_all, walk_versions, VListed};

use super::helpers::*;

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
        .map(|v| (k("a"), v.clone()))
        .chain([
            (k("b"), b2.clone()),
            (k("b"), b1.clone()),
            (k("c"), c1.clone()),
        ])
        .collect();
    assert_eq!(
        full.iter()
            .map(|e| (e.0.clone(), e.1.clone()))
            .collect::<Vec<_>>(),
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
    assert_eq!(p.next_version_marker, Some(a[3].clone()));
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
        ids(list_versions_all(s, &after(&k("a"), Some(a[3].clone()))).await),
        vec![
            a[2].clone(),
            a[1].clone(),
            a[0].clone(),
            b2.clone(),
            b1.clone(),
            c1.clone()
        ]
    );
    assert_eq!(
        ids(list_versions_all(s, &after(&k("a"), Some(a[4].clone()))).await),
        vec![
            a[3].clone(),
            a[2].clone(),
            a[1].clone(),
            a[0].clone(),
            b2.clone(),
            b1.clone(),
            c1.clone()
        ]
    );
    assert_eq!(
        ids(list_versions_all(s, &after(&k("a"), Some(a[0].clone()))).await),
        vec![b2.clone(), b1.clone(), c1.clone()]
    );
    // A key marker alone skips all of that key's versions.
    assert_eq!(
        ids(list_versions_all(s, &after(&k("a"), None)).await),
        vec![b2.clone(), b1.clone(), c1.clone()]
    );
    assert_eq!(
        ids(list_versions_all(s, &after(&k("a0"), None)).await),
        vec![b2.clone(), b1.clone(), c1.clone()],
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
    // A version marker the store never made is no position.
    assert_kind(
        s.list_versions(&after(&k("a"), Some(never_made()))).await,
        ErrorKind::InvalidArgument,
        "a version marker the store never made",
    );
    // is_latest is about the key, not the page.
    let p = s
        .list_versions(&after(&k("a"), Some(a[4].clone())))
        .await
        .unwrap();
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
        vsummary(&rest)
            .iter()
            .map(|e| e.1.clone())
            .collect::<Vec<_>>(),
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
        p.versions
            .iter()
            .map(|v| v.version.clone())
            .collect::<Vec<_>>(),
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
