//! Listing live objects: order, roll-up, paging, tokens, consistency.

use futures::future::join_all;
use objfs_store::{
    CopyOptions, ErrorKind, ListRequest, ListVersionsRequest, ObjectStore, PutOptions,
};

use crate::support::{assert_kind, list_all, walk_list, Listed};

use super::helpers::*;

/// `list_keys` (the listing for callers that need only names and sizes) gives, page by page,
/// the keys, sizes, ETags and common prefixes `list` gives, with the same paging.
pub async fn list_keys_match_list(s: &dyn ObjectStore) {
    let ns = "list_keys_match_list/";
    for (k, len) in [
        ("a", 3),
        ("b", 0),
        ("c/x", 5),
        ("d", 700),
        ("e/f/g", 1),
        ("h", 9),
    ] {
        put(s, &format!("{ns}{k}"), vec![b'k'; len]).await;
    }
    for delimiter in [None, Some("/")] {
        let mut req = ListRequest {
            prefix: ns.to_string(),
            delimiter: delimiter.map(str::to_string),
            max_keys: 2,
            ..Default::default()
        };
        let mut keys_req = req.clone();
        let mut pages = 0;
        loop {
            let full = s.list(&req).await.expect("list");
            let brief = s.list_keys(&keys_req).await.expect("list_keys");
            let view = |p: &objfs_store::ListPage| -> Vec<(String, u64, String)> {
                p.objects
                    .iter()
                    .map(|o| (o.key.clone(), o.size, o.etag.clone()))
                    .collect()
            };
            let what = format!("{delimiter:?}, page {pages}");
            assert_eq!(view(&brief), view(&full), "{what}");
            assert_eq!(brief.common_prefixes, full.common_prefixes, "{what}");
            assert_eq!(
                brief.next_token.is_some(),
                full.next_token.is_some(),
                "{what}"
            );
            pages += 1;
            match (full.next_token, brief.next_token) {
                (Some(a), Some(b)) => {
                    req.continuation = Some(a);
                    keys_req.continuation = Some(b);
                }
                _ => break,
            }
        }
        assert!(pages >= 2, "{delimiter:?}: the listing was paged");
    }
}

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
    if s.features().versioning {
        // Removing the marker brings the object back.
        s.delete_version(&k, m).await.unwrap();
    } else {
        // Without versions a delete is final: write the key again.
        put(s, &k, "three").await;
    }
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
