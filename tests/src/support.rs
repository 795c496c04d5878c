//! Helpers shared by the integration tests: deterministic content, a store fixture that keeps
//! its temporary directory alive, and listing walkers that follow every page while checking
//! the paging invariants of the [`ObjectStore`] contract (order, page size, token presence).

use std::any::Any;
use std::collections::HashSet;
use std::fmt::Debug;
use std::time::SystemTime;

use objfs_store::{
    ErrorKind, ListRequest, ListVersionsRequest, ObjectInfo, ObjectStore, Result, VersionId,
    VersionInfo,
};

/// Cases of a model-based property test: `OBJFS_MODEL_CASES`, 64 by default.
pub fn model_cases() -> u32 {
    std::env::var("OBJFS_MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

/// Deterministic pseudo-random bytes (splitmix64): the same `(seed, len)` always gives the same
/// bytes, on every platform and with every version of `rand`.
pub fn det_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A store under test plus whatever must outlive it (a temporary directory). Fields drop in
/// declaration order, so the store is closed before its directory is removed.
pub struct Fixture {
    pub store: Box<dyn ObjectStore>,
    pub guard: Option<Box<dyn Any + Send>>,
}

impl Fixture {
    /// A fixture without anything to keep alive.
    pub fn new(store: impl ObjectStore) -> Self {
        Fixture {
            store: Box::new(store),
            guard: None,
        }
    }

    /// A fixture that keeps `guard` (e.g. a `TempDir`) alive until after the store is dropped.
    pub fn with_guard(store: impl ObjectStore, guard: impl Any + Send) -> Self {
        Fixture {
            store: Box::new(store),
            guard: Some(Box::new(guard)),
        }
    }

    pub fn store(&self) -> &dyn ObjectStore {
        self.store.as_ref()
    }
}

/// Asserts that `r` failed with an error of `kind`.
#[track_caller]
pub fn assert_kind<T: Debug>(r: Result<T>, kind: ErrorKind, what: &str) {
    match r {
        Ok(v) => panic!("{what}: expected {kind:?}, got Ok({v:?})"),
        Err(e) => assert_eq!(e.kind(), kind, "{what}: expected {kind:?}, got {e}"),
    }
}

/// One entry of a listing, in the merged order of objects and common prefixes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listed {
    Object(String),
    Prefix(String),
}

impl Listed {
    pub fn name(&self) -> &str {
        match self {
            Listed::Object(k) | Listed::Prefix(k) => k,
        }
    }
}

/// One listed page, merged into entry order.
#[derive(Debug, Clone)]
pub struct WalkedPage {
    pub entries: Vec<Listed>,
    pub objects: Vec<ObjectInfo>,
    pub truncated: bool,
}

fn assert_strictly_sorted<'a>(names: impl Iterator<Item = &'a str>, what: &str) {
    let names: Vec<&str> = names.collect();
    for w in names.windows(2) {
        assert!(w[0] < w[1], "{what}: {:?} not before {:?}", w[0], w[1]);
    }
}

/// Lists every page of `req` (following continuation tokens), checking on the way that each
/// page is in byte order, holds at most `page_size` entries, is full when a token follows, that
/// pages continue where the previous one ended, and that a token is followed by a non-empty
/// page. Returns the pages.
pub async fn walk_list(s: &dyn ObjectStore, req: &ListRequest) -> Vec<WalkedPage> {
    walk_list_at(s, req, None).await
}

/// [`walk_list`] of the listing as of `at` (`list_at`), or of now (`list`) when `at` is `None`.
pub async fn walk_list_at(
    s: &dyn ObjectStore,
    req: &ListRequest,
    at: Option<SystemTime>,
) -> Vec<WalkedPage> {
    let mut req = req.clone();
    let mut pages: Vec<WalkedPage> = Vec::new();
    let mut last: Option<Listed> = None;
    loop {
        assert!(pages.len() < 100_000, "listing does not end: {req:?}");
        let page = match at {
            Some(at) => s.list_at(&req, at).await,
            None => s.list(&req).await,
        }
        .unwrap_or_else(|e| panic!("list {req:?} at {at:?}: {e}"));
        let what = format!("list {req:?} at {at:?}");
        assert_strictly_sorted(page.objects.iter().map(|o| o.key.as_str()), &what);
        assert_strictly_sorted(page.common_prefixes.iter().map(|p| p.as_str()), &what);
        let mut entries: Vec<Listed> = page
            .objects
            .iter()
            .map(|o| Listed::Object(o.key.clone()))
            .chain(page.common_prefixes.iter().cloned().map(Listed::Prefix))
            .collect();
        entries.sort_by(|a, b| a.name().cmp(b.name()));
        assert_strictly_sorted(entries.iter().map(|e| e.name()), &what);
        assert!(
            entries.len() <= req.page_size(),
            "{what}: {} entries in a page of {}",
            entries.len(),
            req.page_size()
        );
        for e in &entries {
            assert!(
                e.name().starts_with(req.prefix.as_str()),
                "{what}: {e:?} outside the prefix"
            );
            if let Listed::Prefix(p) = e {
                let d = req.delimiter.as_deref().unwrap_or("");
                assert!(!d.is_empty() && p.ends_with(d), "{what}: bad prefix {p:?}");
            }
        }
        if let (Some(prev), Some(first)) = (&last, entries.first()) {
            assert!(
                first.name() > prev.name(),
                "{what}: page starts at {first:?}, not after {prev:?}"
            );
            if let Listed::Prefix(p) = prev {
                assert!(
                    !first.name().starts_with(p.as_str()),
                    "{what}: page repeats entries under {p:?}"
                );
            }
        }
        let truncated = page.next_token.is_some();
        if truncated {
            assert_eq!(
                entries.len(),
                req.page_size(),
                "{what}: truncated page is not full"
            );
        }
        if !pages.is_empty() {
            assert!(!entries.is_empty(), "{what}: a token led to an empty page");
        }
        if let Some(e) = entries.last() {
            last = Some(e.clone());
        }
        pages.push(WalkedPage {
            entries,
            objects: page.objects,
            truncated,
        });
        match page.next_token {
            Some(t) => req.continuation = Some(t),
            None => return pages,
        }
    }
}

/// All entries of a listing, following every page.
pub async fn list_all(s: &dyn ObjectStore, req: &ListRequest) -> Vec<Listed> {
    walk_list(s, req)
        .await
        .into_iter()
        .flat_map(|p| p.entries)
        .collect()
}

/// One entry of a version listing, in merged order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VListed {
    Version(VersionInfo),
    Prefix(String),
}

impl VListed {
    pub fn name(&self) -> &str {
        match self {
            VListed::Version(v) => &v.key,
            VListed::Prefix(p) => p,
        }
    }
}

/// One page of a version listing, merged into entry order, with its markers.
#[derive(Debug, Clone)]
pub struct WalkedVersionsPage {
    pub entries: Vec<VListed>,
    pub next_key_marker: Option<String>,
    pub next_version_marker: Option<VersionId>,
}

/// Where a version-listing entry stands: its name, and for a version its time. Version ids
/// have no order: within a key, the order is the backend's (newest first), which the walker
/// checks through the versions' times and by never seeing an id twice.
fn vpos(e: &VListed) -> (String, Option<SystemTime>) {
    match e {
        VListed::Version(v) => (v.key.clone(), Some(v.modified)),
        VListed::Prefix(p) => (p.clone(), None),
    }
}

/// Lists every page of a version listing, following the markers and checking order, page size,
/// marker presence (exactly when truncated) and marker values (the last entry of the page).
pub async fn walk_versions(
    s: &dyn ObjectStore,
    req: &ListVersionsRequest,
) -> Vec<WalkedVersionsPage> {
    let mut req = req.clone();
    let mut pages: Vec<WalkedVersionsPage> = Vec::new();
    let mut last: Option<(String, Option<SystemTime>)> = None;
    let mut seen: HashSet<(String, VersionId)> = HashSet::new();
    loop {
        assert!(pages.len() < 100_000, "version listing does not end");
        let page = s
            .list_versions(&req)
            .await
            .unwrap_or_else(|e| panic!("list_versions {req:?}: {e}"));
        let what = format!("list_versions {req:?}");
        let mut entries: Vec<VListed> = page
            .versions
            .iter()
            .cloned()
            .map(VListed::Version)
            .chain(page.common_prefixes.iter().cloned().map(VListed::Prefix))
            .collect();
        // Versions come key asc / newest first within the vector, each seen once in the walk.
        for w in page.versions.windows(2) {
            assert!(
                w[0].key < w[1].key || (w[0].key == w[1].key && w[0].modified >= w[1].modified),
                "{what}: versions out of order: {w:?}"
            );
        }
        for v in &page.versions {
            assert!(
                seen.insert((v.key.clone(), v.version.clone())),
                "{what}: version {} of {:?} listed twice",
                v.version,
                v.key
            );
        }
        assert_strictly_sorted(page.common_prefixes.iter().map(|p| p.as_str()), &what);
        // A stable sort by name keeps each key's versions in the backend's order.
        entries.sort_by(|a, b| a.name().cmp(b.name()));
        assert!(entries.len() <= req.page_size(), "{what}: page too big");
        if let (Some((pk, pt)), Some(first)) = (&last, entries.first()) {
            let (fk, ft) = vpos(first);
            let continues =
                fk > *pk || (fk == *pk && matches!((pt, ft), (Some(p), Some(f)) if f <= *p));
            assert!(continues, "{what}: page does not continue");
        }
        let truncated = page.next_key_marker.is_some();
        if page.next_version_marker.is_some() {
            assert!(truncated, "{what}: version marker without key marker");
        }
        if truncated {
            assert_eq!(
                entries.len(),
                req.page_size(),
                "{what}: truncated page not full"
            );
            match entries.last() {
                Some(VListed::Version(v)) => {
                    assert_eq!(
                        page.next_key_marker.as_deref(),
                        Some(v.key.as_str()),
                        "{what}"
                    );
                    assert_eq!(
                        page.next_version_marker.as_ref(),
                        Some(&v.version),
                        "{what}"
                    );
                }
                Some(VListed::Prefix(p)) => {
                    assert_eq!(page.next_key_marker.as_deref(), Some(p.as_str()), "{what}");
                    assert_eq!(page.next_version_marker, None, "{what}");
                }
                None => panic!("{what}: truncated empty page"),
            }
        }
        if !pages.is_empty() {
            assert!(!entries.is_empty(), "{what}: markers led to an empty page");
        }
        if let Some(e) = entries.last() {
            last = Some(vpos(e));
        }
        let (nk, nv) = (page.next_key_marker.clone(), page.next_version_marker);
        pages.push(WalkedVersionsPage {
            entries,
            next_key_marker: nk.clone(),
            next_version_marker: nv.clone(),
        });
        if nk.is_none() {
            return pages;
        }
        req.key_marker = nk;
        req.version_marker = nv;
    }
}

/// All entries of a version listing, following every page.
pub async fn list_versions_all(s: &dyn ObjectStore, req: &ListVersionsRequest) -> Vec<VListed> {
    walk_versions(s, req)
        .await
        .into_iter()
        .flat_map(|p| p.entries)
        .collect()
}

/// FNV-1a of a key, to derive content from key and seed together.
pub fn key_hash(key: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    h
}

/// The content the crash writer writes for `key` with `seed`: a function of both, so a version
/// that shows another key's (or another write's) bytes is caught.
pub fn keyed_bytes(key: &str, seed: u64, len: usize) -> Vec<u8> {
    det_bytes(key_hash(key) ^ seed.rotate_left(17), len)
}
