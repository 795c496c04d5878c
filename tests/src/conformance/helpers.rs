//! Helpers shared by the conformance cases: reads that check what they read, listing
//! shorthands, and the version-id stand-ins cases use for ids no backend made.

use std::ops::Range;
use std::time::{Duration, SystemTime};

use objfs_store::{
    Body, CompletedPart, GetOptions, ListRequest, ListVersionsRequest, Metadata, ObjectInfo,
    ObjectStore, PartInfo, PutOptions, VersionId, VersionInfo,
};

use crate::support::{list_all, list_versions_all, walk_list, Listed, VListed};

pub(crate) async fn put(s: &dyn ObjectStore, key: &str, data: impl Into<Vec<u8>>) -> ObjectInfo {
    s.put(key, Body::from(data.into()), PutOptions::default())
        .await
        .unwrap_or_else(|e| panic!("put {key:?}: {e}"))
}

pub(crate) async fn put_meta(
    s: &dyn ObjectStore,
    key: &str,
    data: &[u8],
    meta: &Metadata,
) -> ObjectInfo {
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

pub(crate) async fn read(s: &dyn ObjectStore, key: &str, version: Option<VersionId>) -> Vec<u8> {
    let r = s
        .get(
            key,
            GetOptions {
                version: version.clone(),
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

pub(crate) async fn read_range(
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

pub(crate) fn meta(pairs: &[(&str, &str)]) -> Metadata {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(crate) fn done(parts: &[&PartInfo]) -> Vec<CompletedPart> {
    parts
        .iter()
        .map(|p| CompletedPart {
            part_number: p.part_number,
            etag: p.etag.clone(),
        })
        .collect()
}

pub(crate) fn objects(entries: &[Listed]) -> Vec<String> {
    entries
        .iter()
        .filter_map(|e| match e {
            Listed::Object(k) => Some(k.clone()),
            Listed::Prefix(_) => None,
        })
        .collect()
}

pub(crate) fn obj(ns: &str, k: &str) -> Listed {
    Listed::Object(format!("{ns}{k}"))
}

pub(crate) fn pre(ns: &str, k: &str) -> Listed {
    Listed::Prefix(format!("{ns}{k}"))
}

/// (key, version, is_latest, is_delete_marker) of the versions of a version listing.
pub(crate) fn vsummary(entries: &[VListed]) -> Vec<(String, VersionId, bool, bool)> {
    entries
        .iter()
        .filter_map(|e| match e {
            VListed::Version(v) => Some((
                v.key.clone(),
                v.version.clone(),
                v.is_latest,
                v.is_delete_marker,
            )),
            VListed::Prefix(_) => None,
        })
        .collect()
}

pub(crate) async fn versions_of(s: &dyn ObjectStore, key: &str) -> Vec<VersionInfo> {
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

pub(crate) fn list_req(prefix: &str, delimiter: Option<&str>, max_keys: usize) -> ListRequest {
    ListRequest {
        prefix: prefix.to_string(),
        delimiter: delimiter.map(str::to_string),
        max_keys,
        ..Default::default()
    }
}

/// Lists with every page size from 1 to `entries + 1` and checks each walk yields `expected`.
pub(crate) async fn check_listing(
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

pub(crate) fn within(t: SystemTime, before: SystemTime, after: SystemTime) -> bool {
    let slack = Duration::from_secs(5);
    t + slack >= before && t <= after + slack
}

/// A version id no backend made (each backend answers `NoSuchVersion` for it).
pub(crate) fn never_made() -> VersionId {
    "never-made-by-any-backend"
        .parse()
        .expect("a valid version id text")
}

/// Asserts that `ids` are pairwise different (what "a new version" means for opaque ids).
#[track_caller]
pub(crate) fn assert_distinct(ids: &[VersionId], what: &str) {
    let set: std::collections::HashSet<&VersionId> = ids.iter().collect();
    assert_eq!(set.len(), ids.len(), "{what}: version ids repeat: {ids:?}");
}
