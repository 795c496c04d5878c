//! History: the store as of a moment (`head_at`, `list_at`) and store records
//! (`get_record`, `put_record`, `list_records`).
//!
//! Moments are taken from the versions' own times (`modified` of a put, of a delete marker in
//! `list_versions`), never from the test's clock, so the cases hold on a backend whose clock
//! is not the test's. Writes that must be told apart in time are a few milliseconds apart, or
//! the backend's `time_resolution` where that is coarser.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use objfs_store::{ErrorKind, ListRequest, ObjectInfo, ObjectStore};

use crate::support::{assert_kind, det_bytes, list_all, walk_list_at, Listed};

use super::helpers::*;

/// Lets the clock move so that the next write is later than the last one, as the backend
/// tells times apart (a few milliseconds here; a second on S3, whose times are whole seconds).
async fn tick(s: &dyn ObjectStore) {
    let step = s.features().time_resolution + Duration::from_millis(3);
    tokio::time::sleep(step).await;
}

/// The time of the newest version (or delete marker) of `key`.
async fn newest_time(s: &dyn ObjectStore, key: &str) -> SystemTime {
    versions_of(s, key)
        .await
        .first()
        .unwrap_or_else(|| panic!("{key:?} has no version"))
        .modified
}

/// The middle of two moments.
fn between(a: SystemTime, b: SystemTime) -> SystemTime {
    a + b.duration_since(a).unwrap_or_default() / 2
}

#[track_caller]
fn same_version(got: &ObjectInfo, want: &ObjectInfo, what: &str) {
    assert_eq!(got.key, want.key, "{what}: key");
    assert_eq!(got.version, want.version, "{what}: version");
    assert_eq!(got.size, want.size, "{what}: size");
    assert_eq!(got.etag, want.etag, "{what}: etag");
    assert_eq!(got.modified, want.modified, "{what}: modified");
    assert_eq!(got.metadata, want.metadata, "{what}: metadata");
}

async fn head_at_is(s: &dyn ObjectStore, key: &str, at: SystemTime, want: &ObjectInfo, what: &str) {
    let got = s
        .head_at(key, at)
        .await
        .unwrap_or_else(|e| panic!("head_at {key:?} {what}: {e}"));
    same_version(&got, want, what);
}

async fn head_at_absent(s: &dyn ObjectStore, key: &str, at: SystemTime, what: &str) {
    assert_kind(s.head_at(key, at).await, ErrorKind::NotFound, what);
}

/// `head_at` sees, for each moment, the newest version made at or before it: nothing before
/// the key existed, each version from exactly its `modified`, nothing while a delete marker
/// is newest, and history as `delete_version` left it.
pub async fn head_at_moments(s: &dyn ObjectStore) {
    let key = "head_at_moments/k";
    let v1 = put_meta(s, key, b"one", &meta(&[("x-amz-meta-mode", "644")])).await;
    tick(s).await;
    let v2 = put(s, key, det_bytes(2, 300)).await;
    tick(s).await;
    s.delete(key).await.expect("delete").expect("a marker");
    let marker = newest_time(s, key).await;
    tick(s).await;
    let v3 = put(s, key, "three").await;

    head_at_absent(
        s,
        key,
        v1.modified - Duration::from_nanos(1),
        "before it existed",
    )
    .await;
    head_at_is(s, key, v1.modified, &v1, "exactly at v1").await;
    head_at_is(
        s,
        key,
        between(v1.modified, v2.modified),
        &v1,
        "between v1 and v2",
    )
    .await;
    head_at_is(s, key, v2.modified, &v2, "exactly at v2").await;
    head_at_is(
        s,
        key,
        between(v2.modified, marker),
        &v2,
        "before the delete",
    )
    .await;
    head_at_absent(s, key, marker, "exactly at the delete marker").await;
    head_at_absent(s, key, between(marker, v3.modified), "while deleted").await;
    head_at_is(s, key, v3.modified, &v3, "exactly at v3").await;
    let later = v3.modified + Duration::from_secs(3600);
    head_at_is(s, key, later, &v3, "after the last write").await;
    same_version(&s.head(key, None).await.unwrap(), &v3, "head");

    // Removing v2 for good makes v1 what the store shows until the marker.
    s.delete_version(key, v2.version.clone()).await.unwrap();
    head_at_is(s, key, v2.modified, &v1, "v2's moment without v2").await;

    head_at_absent(s, "head_at_moments/never", later, "a key never written").await;
    assert_kind(
        s.head_at("/bad", later).await,
        ErrorKind::InvalidKey,
        "head_at of an invalid key",
    );
}

/// The listing as of `at`, every page size from 1 to one more than the entries, equals
/// `expected`.
async fn check_listing_at(
    s: &dyn ObjectStore,
    prefix: &str,
    delimiter: Option<&str>,
    at: SystemTime,
    expected: &[Listed],
    what: &str,
) {
    for max_keys in 0..=expected.len() + 1 {
        let pages = walk_list_at(s, &list_req(prefix, delimiter, max_keys), Some(at)).await;
        let walked: Vec<Listed> = pages.iter().flat_map(|p| p.entries.clone()).collect();
        assert_eq!(
            walked, expected,
            "{what}: list_at prefix {prefix:?} delimiter {delimiter:?} max_keys {max_keys}"
        );
    }
}

/// `list_at` shows each moment's live keys: keys overwritten show their version of then,
/// keys deleted since show, keys deleted then and re-created since do not, common prefixes
/// that existed only in the past show; with and without a delimiter, every page size,
/// `start_after`, and a prefix inside a directory.
pub async fn list_at_moments(s: &dyn ObjectStore) {
    let ns = "list_at_moments/";
    let k = |name: &str| format!("{ns}{name}");
    // Step 1.
    let a1 = put(s, &k("a"), "a1").await;
    let x1 = put(s, &k("d/x"), "x1").await;
    put(s, &k("gone/y"), "y1").await;
    let z1 = put(s, &k("e/deep/z"), "z1").await;
    let m1 = z1.modified;
    tick(s).await;
    // Step 2: overwrite a, delete gone/y (its directory exists only in the past), add b,
    // delete d/x.
    let a2 = put(s, &k("a"), "a2").await;
    s.delete(&k("gone/y")).await.unwrap();
    put(s, &k("b"), "b1").await;
    s.delete(&k("d/x")).await.unwrap();
    let m2 = newest_time(s, &k("d/x")).await;
    tick(s).await;
    // Step 3: d/x comes back, a goes.
    let x2 = put(s, &k("d/x"), "x2").await;
    s.delete(&k("a")).await.unwrap();
    let m3 = newest_time(s, &k("a")).await;

    let o = |n: &str| obj(ns, n);
    let p = |n: &str| pre(ns, n);
    let before = a1.modified - Duration::from_nanos(1);
    let slash = Some("/");
    check_listing_at(s, ns, slash, before, &[], "before anything").await;
    check_listing_at(
        s,
        ns,
        slash,
        m1,
        &[o("a"), p("d/"), p("e/"), p("gone/")],
        "m1",
    )
    .await;
    check_listing_at(s, ns, slash, m2, &[o("a"), o("b"), p("e/")], "m2").await;
    check_listing_at(s, ns, slash, m3, &[o("b"), p("d/"), p("e/")], "m3").await;
    let flat1 = [o("a"), o("d/x"), o("e/deep/z"), o("gone/y")];
    check_listing_at(s, ns, None, m1, &flat1, "m1 flat").await;
    check_listing_at(s, ns, None, m2, &[o("a"), o("b"), o("e/deep/z")], "m2 flat").await;
    check_listing_at(
        s,
        ns,
        None,
        m3,
        &[o("b"), o("d/x"), o("e/deep/z")],
        "m3 flat",
    )
    .await;
    // The present equals the listing as of now.
    let now_listing = list_all(s, &list_req(ns, slash, 0)).await;
    assert_eq!(now_listing, [o("b"), p("d/"), p("e/")]);
    check_listing_at(
        s,
        ns,
        slash,
        m3 + Duration::from_secs(60),
        &now_listing,
        "now",
    )
    .await;
    // Inside a directory.
    let d = k("d/");
    check_listing_at(s, &d, slash, m1, &[o("d/x")], "d/ at m1").await;
    check_listing_at(s, &d, slash, m2, &[], "d/ at m2").await;
    check_listing_at(s, &k("gone/"), slash, m1, &[o("gone/y")], "gone/ at m1").await;
    check_listing_at(s, &k("gone/"), slash, m2, &[], "gone/ at m2").await;

    // The objects are the versions of then.
    let at = |t| {
        let req = list_req(ns, None, 0);
        async move { s.list_at(&req, t).await.unwrap().objects }
    };
    let objs = at(m1).await;
    same_version(&objs[0], &a1, "a at m1");
    same_version(&objs[1], &x1, "d/x at m1");
    let objs = at(m2).await;
    same_version(&objs[0], &a2, "a at m2");
    let objs = at(m3).await;
    same_version(&objs[1], &x2, "d/x at m3");

    // start_after, within and across common prefixes.
    let from = |after: &str| ListRequest {
        start_after: Some(k(after)),
        ..list_req(ns, slash, 0)
    };
    let got = |req: ListRequest, t| async move {
        let pages = walk_list_at(s, &req, Some(t)).await;
        pages
            .into_iter()
            .flat_map(|p| p.entries)
            .collect::<Vec<_>>()
    };
    assert_eq!(got(from("a"), m1).await, [p("d/"), p("e/"), p("gone/")]);
    assert_eq!(got(from("d/x"), m1).await, [p("e/"), p("gone/")]);
    assert_eq!(got(from("e/zzz"), m1).await, [p("gone/")]);
    assert_eq!(got(from("a"), m2).await, [o("b"), p("e/")]);

    // A token of another listing is refused.
    let bad = ListRequest {
        continuation: Some("not-a-token".into()),
        ..list_req(ns, slash, 0)
    };
    assert_kind(
        s.list_at(&bad, m1).await,
        ErrorKind::InvalidArgument,
        "bad token",
    );
}

/// A key with many versions: every version is what `list_at` and `head_at` show from its
/// moment on, and a directory whose keys were all absent at a moment but one is listed once.
pub async fn list_at_many_versions(s: &dyn ObjectStore) {
    let ns = "list_at_many_versions/";
    let key = format!("{ns}many");
    let mut made = Vec::new();
    for i in 0..12u64 {
        made.push(put(s, &key, det_bytes(i, 10 + i as usize)).await);
        tick(s).await;
    }
    // A directory of keys that come and go: only `dir/k5` is live at `mid`.
    let mut times = Vec::new();
    for i in 0..10 {
        if i == 5 || i == 6 {
            // k5's life is apart from the others' in time, however coarse the backend's clock.
            tick(s).await;
        }
        let k = format!("{ns}dir/k{i}");
        put(s, &k, "x").await;
        if i != 5 {
            s.delete(&k).await.unwrap();
        }
        times.push(newest_time(s, &k).await);
    }
    let mid = *times.last().unwrap();
    let after = format!("{ns}zlast");
    put(s, &after, "z").await;
    for (i, v) in made.iter().enumerate() {
        head_at_is(s, &key, v.modified, v, &format!("version {i}")).await;
        let page = s.list_at(&list_req(ns, Some("/"), 0), v.modified).await;
        let page = page.unwrap();
        assert_eq!(page.objects.len(), 1, "at version {i}: {page:?}");
        same_version(&page.objects[0], v, &format!("listed version {i}"));
        assert!(page.common_prefixes.is_empty());
    }
    let listed = [pre(ns, "dir/"), obj(ns, "many"), obj(ns, "zlast")];
    let at_end = mid + Duration::from_secs(60);
    check_listing_at(s, ns, Some("/"), at_end, &listed, "end").await;
    check_listing_at(
        s,
        &format!("{ns}dir/"),
        Some("/"),
        mid,
        &[obj(ns, "dir/k5")],
        "dir",
    )
    .await;
    // Before k5 existed, the directory was empty at every moment of its keys' lives.
    check_listing_at(s, ns, Some("/"), times[4], &[obj(ns, "many")], "before k5").await;
}

/// Records: absent until put, read back, overwritten, listed by prefix in name order,
/// removed; never seen by `list` or `list_versions`; bad names refused with
/// `InvalidArgument`.
pub async fn records_basic(s: &dyn ObjectStore) {
    let ns = "records_basic/";
    let name = |n: &str| format!("{ns}{n}");
    let get = |n: String| async move { s.get_record(&n).await.unwrap() };
    let set = |n: String, v: Option<&'static str>, durable: bool| async move {
        s.put_record(&n, v.map(Bytes::from), durable).await.unwrap()
    };
    assert_eq!(get(name("a")).await, None);
    for (n, v) in [("b", "2"), ("a", "1"), ("c/d", "3"), ("a.x", "4")] {
        set(name(n), Some(v), false).await;
    }
    set(name("durable"), Some("d"), true).await;
    assert_eq!(get(name("a")).await, Some(Bytes::from("1")));
    set(name("a"), Some("one"), false).await;
    assert_eq!(get(name("a")).await, Some(Bytes::from("one")));
    let listed = s.list_records(ns).await.unwrap();
    let names: Vec<&str> = listed.iter().map(|(n, _)| n.as_str()).collect();
    let want = ["a", "a.x", "b", "c/d", "durable"].map(name);
    assert_eq!(names, want);
    assert_eq!(listed[0].1, Bytes::from("one"));
    let under_a = s.list_records(&name("a")).await.unwrap();
    assert_eq!(under_a.len(), 2, "prefix a: {under_a:?}");
    assert!(s.list_records(&name("zz")).await.unwrap().is_empty());
    // Records are not keys.
    assert!(list_all(s, &list_req(ns, None, 0)).await.is_empty());
    assert!(versions_of(s, &name("a")).await.is_empty());
    assert_kind(s.head(&name("a"), None).await, ErrorKind::NotFound, "head");
    // Removal, twice.
    set(name("b"), None, false).await;
    set(name("b"), None, false).await;
    assert_eq!(get(name("b")).await, None);
    assert_eq!(s.list_records(ns).await.unwrap().len(), 4);
    // Bad names.
    let long = "x".repeat(objfs_store::key::MAX_RECORD_NAME_LEN + 1);
    for bad in ["", "/abs", "a b", "tab\t", "ünï", "nul\0", long.as_str()] {
        assert_kind(
            s.get_record(bad).await,
            ErrorKind::InvalidArgument,
            &format!("get_record {bad:?}"),
        );
        assert_kind(
            s.put_record(bad, Some(Bytes::from("v")), false).await,
            ErrorKind::InvalidArgument,
            &format!("put_record {bad:?}"),
        );
    }
    let longest = "y".repeat(objfs_store::key::MAX_RECORD_NAME_LEN);
    set(longest.clone(), Some("ok"), false).await;
    assert_eq!(get(longest.clone()).await, Some(Bytes::from("ok")));
    set(longest, None, false).await;
}
