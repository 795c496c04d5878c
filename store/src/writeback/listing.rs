//! Listings of the write-back decorator: the bucket's listing with the pending changes laid
//! over it (a pending put shows its version, a pending delete hides the key), in byte order,
//! with prefix/delimiter roll-up and the decorator's own continuation tokens.

use std::collections::BTreeMap;

use crate::error::{Result, StoreError};
use crate::paging::{decode_token, object_page, roll_up, Entry, Position};
use crate::types::{
    ListPage, ListRequest, ListVersionsRequest, ObjectInfo, VersionInfo, VersionsPage,
};

use super::state::{Kind, Pending, State};

/// The tag of the decorator's continuation tokens.
pub const TOKEN_TAG: &str = "wb1";

/// A pending key as a listing sees it: its live version, or `None` (deleted).
pub type Overlay = Vec<(String, Option<ObjectInfo>)>;

/// The name an entry sorts by.
fn name<T>(e: &Entry<T>, key: impl Fn(&T) -> &str) -> String {
    match e {
        Entry::Item(t) => key(t).to_string(),
        Entry::Prefix(p) => p.clone(),
    }
}

/// The pending keys under `prefix` after `after` (byte order), as listings see them.
pub fn overlay(state: &State, prefix: &str, after: Option<&Position>) -> Overlay {
    state
        .keys
        .range(prefix.to_string()..)
        .take_while(|(k, _)| k.starts_with(prefix))
        .filter(|(k, _)| after.is_none_or(|a| a.admits(k)))
        .filter_map(|(k, q)| {
            let last = q.back()?;
            Some((k.clone(), live_info(last)))
        })
        .collect()
}

/// The live version a pending change leaves, `None` for a delete.
pub fn live_info(p: &Pending) -> Option<ObjectInfo> {
    match &p.kind {
        Kind::Put { info, .. } => Some(ObjectInfo {
            version: p.id.clone(),
            modified: p.modified,
            ..info.clone()
        }),
        Kind::Delete => None,
    }
}

/// The bucket's entries of a page (objects and common prefixes) in byte order.
pub fn page_entries(page: ListPage) -> Vec<Entry<ObjectInfo>> {
    let mut out: Vec<Entry<ObjectInfo>> = page.objects.into_iter().map(Entry::Item).collect();
    out.extend(page.common_prefixes.into_iter().map(Entry::Prefix));
    out.sort_by_key(|e| name(e, |o| &o.key));
    out
}

/// Lays `overlay` over the bucket's entries `inner` (byte order). When the bucket has more
/// entries than `inner` holds, `bound` is the last name of `inner`: overlay entries beyond it
/// wait for the next page. A pending delete hides the bucket's object of that key.
pub fn merge(
    inner: &[Entry<ObjectInfo>],
    overlay: &[(String, Option<ObjectInfo>)],
    prefix: &str,
    delimiter: Option<&str>,
    bound: Option<&str>,
) -> Vec<Entry<ObjectInfo>> {
    let mut ov: Vec<(String, Option<Entry<ObjectInfo>>)> = Vec::new();
    for (key, info) in overlay {
        let entry = match (roll_up(prefix, delimiter, key), info) {
            (Some(p), Some(_)) => (p.clone(), Some(Entry::Prefix(p))),
            // A pending delete below a common prefix does not hide the prefix.
            (Some(_), None) => continue,
            (None, Some(i)) => (key.clone(), Some(Entry::Item(i.clone()))),
            (None, None) => (key.clone(), None),
        };
        if bound.is_some_and(|b| entry.0.as_str() > b) {
            break;
        }
        ov.push(entry);
    }
    let mut out: Vec<Entry<ObjectInfo>> = Vec::with_capacity(inner.len() + ov.len());
    let push = |out: &mut Vec<Entry<ObjectInfo>>, e: Entry<ObjectInfo>| {
        if let (Entry::Prefix(p), Some(Entry::Prefix(last))) = (&e, out.last()) {
            if p == last {
                return;
            }
        }
        out.push(e);
    };
    let (mut i, mut j) = (0, 0);
    while i < inner.len() || j < ov.len() {
        let a = inner.get(i).map(|e| name(e, |o| &o.key));
        let b = ov.get(j).map(|(n, _)| n.clone());
        match (a, b) {
            (Some(a), Some(b)) if a == b => {
                // The pending change replaces (or hides) the bucket's entry of the same name.
                match (&inner[i], &ov[j].1) {
                    (Entry::Prefix(_), _) => push(&mut out, inner[i].clone()),
                    (Entry::Item(_), Some(e)) => push(&mut out, e.clone()),
                    (Entry::Item(_), None) => {}
                }
                i += 1;
                j += 1;
            }
            (Some(a), Some(b)) if a < b => {
                push(&mut out, inner[i].clone());
                i += 1;
            }
            (Some(_), None) => {
                push(&mut out, inner[i].clone());
                i += 1;
            }
            (_, Some(_)) => {
                if let Some(e) = &ov[j].1 {
                    push(&mut out, e.clone());
                }
                j += 1;
            }
            (None, None) => break,
        }
    }
    out
}

/// The common prefixes of `merged` that may be empty once the pending changes are uploaded:
/// those with pending changes under them, every one a delete (a pending put under a prefix
/// keeps it). Each with the pending deletes under it, in byte order. Whether such a prefix
/// stays depends on what else the bucket holds under it ([`hides_all`]).
pub fn doubtful_prefixes(
    merged: &[Entry<ObjectInfo>],
    overlay: &[(String, Option<ObjectInfo>)],
) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for e in merged {
        let Entry::Prefix(p) = e else { continue };
        let start = overlay.partition_point(|(k, _)| k.as_str() < p.as_str());
        let under: Vec<&(String, Option<ObjectInfo>)> = overlay[start..]
            .iter()
            .take_while(|(k, _)| k.starts_with(p.as_str()))
            .collect();
        if !under.is_empty() && under.iter().all(|(_, i)| i.is_none()) {
            out.push((p.clone(), under.iter().map(|(k, _)| k.clone()).collect()));
        }
    }
    out
}

/// Whether a complete listing (`complete`: no more pages) of the bucket's keys under a
/// prefix, `keys`, holds nothing but keys in `deleted` (sorted): then the prefix is empty in
/// the merged view.
pub fn hides_all(keys: &[String], complete: bool, deleted: &[String]) -> bool {
    complete && keys.iter().all(|k| deleted.binary_search(k).is_ok())
}

/// Whether a bucket's page says there is nothing at all after where it started.
pub fn found_nothing(page: &ListPage) -> bool {
    page.objects.is_empty() && page.common_prefixes.is_empty() && page.next_token.is_none()
}

/// Where a listing of `req` resumes: the decorator's token, or `start_after`.
pub fn position(req: &ListRequest) -> Result<Option<Position>> {
    match &req.continuation {
        Some(t) => decode_token(TOKEN_TAG, t).map(Some),
        None => Ok(req.start_after.clone().map(Position::Key)),
    }
}

/// The bucket's listing request that starts at `pos` (after a common prefix: at the prefix,
/// whose entry the caller drops).
pub fn inner_request(req: &ListRequest, pos: Option<&Position>, page: usize) -> ListRequest {
    ListRequest {
        prefix: req.prefix.clone(),
        delimiter: req.delimiter.clone(),
        start_after: pos.map(|p| match p {
            Position::Key(k) | Position::Prefix(k) => k.clone(),
        }),
        continuation: None,
        max_keys: page,
    }
}

/// A page of the merged entries (more than a page when more follow).
pub fn list_page(entries: Vec<Entry<ObjectInfo>>, page_size: usize) -> ListPage {
    object_page(entries, page_size, TOKEN_TAG)
}

/// The version-listing entries of one key: its pending changes (newest first) over the
/// bucket's versions, or in a bucket without versioning (`coalesce`) the last change alone.
pub fn key_versions(
    pending: &[Pending],
    bucket: Vec<VersionInfo>,
    coalesce: bool,
) -> Vec<VersionInfo> {
    let mut out: Vec<VersionInfo> = Vec::new();
    let chosen: Vec<&Pending> = if coalesce {
        pending.last().into_iter().collect()
    } else {
        pending.iter().rev().collect()
    };
    for p in chosen {
        let (size, etag, metadata, marker) = match &p.kind {
            Kind::Put { info, .. } => (info.size, info.etag.clone(), info.metadata.clone(), false),
            Kind::Delete => (0, String::new(), Default::default(), true),
        };
        if coalesce && marker {
            return Vec::new();
        }
        out.push(VersionInfo {
            key: p.key.clone(),
            version: p.id.clone(),
            is_latest: out.is_empty(),
            is_delete_marker: marker,
            size,
            modified: p.modified,
            etag,
            metadata,
        });
    }
    if coalesce && !out.is_empty() {
        return out;
    }
    let had = !out.is_empty();
    out.extend(bucket.into_iter().map(|mut v| {
        if had {
            v.is_latest = false;
        }
        v
    }));
    out
}

/// One entry of a whole merged version listing: a version, or a common prefix with the
/// greatest key under it.
#[derive(Debug, Clone)]
pub enum VItem {
    Version(VersionInfo),
    Prefix { prefix: String, last_key: String },
}

impl VItem {
    fn name(&self) -> &str {
        match self {
            VItem::Version(v) => &v.key,
            VItem::Prefix { prefix, .. } => prefix,
        }
    }

    /// Whether the entry follows the key marker `km` (no version marker): a version of a
    /// later key; a common prefix after it, or one the marker lies inside with a key after
    /// the marker (a prefix given back as the marker itself is done).
    fn after_key(&self, km: &str) -> bool {
        match self {
            VItem::Version(v) => v.key.as_str() > km,
            VItem::Prefix { prefix, last_key } => {
                if km.starts_with(prefix.as_str()) {
                    km != prefix && last_key.as_str() > km
                } else {
                    prefix.as_str() > km
                }
            }
        }
    }
}

/// A page of a whole merged version listing (`items` in order), after the request's markers.
pub fn versions_page(items: Vec<VItem>, req: &ListVersionsRequest) -> Result<VersionsPage> {
    let mut start = 0;
    if let Some(km) = &req.key_marker {
        start = match &req.version_marker {
            None => items
                .iter()
                .position(|e| e.after_key(km))
                .unwrap_or(items.len()),
            Some(vm) => {
                let at = items.iter().position(
                    |e| matches!(e, VItem::Version(v) if v.key == *km && v.version == *vm),
                );
                match at {
                    Some(i) => i + 1,
                    None => {
                        return Err(StoreError::InvalidArgument(format!(
                            "version marker {vm} is not a version of {km}"
                        )))
                    }
                }
            }
        };
    }
    let size = req.page_size();
    let rest = &items[start.min(items.len())..];
    let mut page = VersionsPage::default();
    for e in rest.iter().take(size) {
        match e {
            VItem::Version(v) => page.versions.push(v.clone()),
            VItem::Prefix { prefix, .. } => page.common_prefixes.push(prefix.clone()),
        }
    }
    if rest.len() > size {
        match &rest[size - 1] {
            VItem::Version(v) => {
                page.next_key_marker = Some(v.key.clone());
                page.next_version_marker = Some(v.version.clone());
            }
            VItem::Prefix { prefix, .. } => page.next_key_marker = Some(prefix.clone()),
        }
    }
    Ok(page)
}

/// Orders a version listing of every key under `prefix` (byte order, each key's versions as
/// given), keys rolled up into common prefixes at `delimiter`.
pub fn version_items(
    by_key: BTreeMap<String, Vec<VersionInfo>>,
    prefix: &str,
    delimiter: Option<&str>,
) -> Vec<VItem> {
    let mut out: Vec<VItem> = Vec::new();
    for (k, vs) in by_key {
        if vs.is_empty() {
            continue;
        }
        match roll_up(prefix, delimiter, &k) {
            Some(p) => match out.last_mut() {
                Some(VItem::Prefix { prefix, last_key }) if *prefix == p => *last_key = k,
                _ => out.push(VItem::Prefix {
                    prefix: p,
                    last_key: k,
                }),
            },
            None => out.extend(vs.into_iter().map(VItem::Version)),
        }
    }
    out.sort_by(|a, b| a.name().cmp(b.name()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::VersionId;

    fn obj(key: &str, v: &str) -> ObjectInfo {
        ObjectInfo {
            key: key.into(),
            version: VersionId::from_backend(v.to_string()),
            size: 1,
            modified: std::time::UNIX_EPOCH,
            etag: String::new(),
            metadata: Default::default(),
        }
    }

    fn names(es: &[Entry<ObjectInfo>]) -> Vec<String> {
        es.iter()
            .map(|e| match e {
                Entry::Item(o) => format!("{}@{}", o.key, o.version),
                Entry::Prefix(p) => format!("{p}/"),
            })
            .collect()
    }

    #[test]
    fn pending_changes_replace_hide_and_add_in_order() {
        let inner = vec![
            Entry::Item(obj("a", "b1")),
            Entry::Prefix("d/".into()),
            Entry::Item(obj("m", "b2")),
            Entry::Item(obj("z", "b3")),
        ];
        let ov: Overlay = vec![
            ("a".into(), Some(obj("a", "p1"))),
            ("c".into(), Some(obj("c", "p2"))),
            ("d/x".into(), Some(obj("d/x", "p3"))),
            ("e/y".into(), Some(obj("e/y", "p4"))),
            ("m".into(), None),
            ("q/gone".into(), None),
        ];
        let m = merge(&inner, &ov, "", Some("/"), None);
        assert_eq!(names(&m), ["a@p1", "c@p2", "d//", "e//", "z@b3"]);
        // Without a delimiter nothing rolls up.
        let m = merge(&inner[..1], &ov[..3], "", None, None);
        assert_eq!(names(&m), ["a@p1", "c@p2", "d/x@p3"]);
    }

    #[test]
    fn prefixes_with_only_pending_deletes_under_them_are_in_doubt() {
        let merged = vec![
            Entry::Item(obj("a", "b1")),
            Entry::Prefix("d/".into()),
            Entry::Prefix("e/".into()),
            Entry::Prefix("f/".into()),
        ];
        let ov: Overlay = vec![
            ("d/x".into(), None),
            ("d/y/z".into(), None),
            ("e/gone".into(), None),
            ("e/kept".into(), Some(obj("e/kept", "p1"))),
        ];
        let doubt = doubtful_prefixes(&merged, &ov);
        assert_eq!(
            doubt,
            [(
                "d/".to_string(),
                vec!["d/x".to_string(), "d/y/z".to_string()]
            )]
        );
        let deleted = &doubt[0].1;
        assert!(hides_all(&["d/x".into(), "d/y/z".into()], true, deleted));
        assert!(!hides_all(&["d/x".into(), "d/w".into()], true, deleted));
        assert!(!hides_all(&["d/x".into()], false, deleted));
    }

    #[test]
    fn overlay_entries_past_the_bound_wait_for_the_next_page() {
        let inner = vec![Entry::Item(obj("b", "b1"))];
        let ov: Overlay = vec![
            ("a".into(), Some(obj("a", "p1"))),
            ("c".into(), Some(obj("c", "p2"))),
        ];
        let m = merge(&inner, &ov, "", None, Some("b"));
        assert_eq!(names(&m), ["a@p1", "b@b1"]);
    }

    #[test]
    fn version_pages_follow_markers() {
        let v = |k: &str, id: &str| VersionInfo {
            key: k.into(),
            version: VersionId::from_backend(id.to_string()),
            is_latest: false,
            is_delete_marker: false,
            size: 0,
            modified: std::time::UNIX_EPOCH,
            etag: String::new(),
            metadata: Default::default(),
        };
        let mut by_key = BTreeMap::new();
        by_key.insert("a".to_string(), vec![v("a", "2"), v("a", "1")]);
        by_key.insert("b".to_string(), vec![v("b", "3")]);
        by_key.insert("c/x".to_string(), vec![v("c/x", "4")]);
        let items = version_items(by_key, "", Some("/"));
        let req = ListVersionsRequest {
            max_keys: 2,
            ..Default::default()
        };
        let p1 = versions_page(items.clone(), &req).unwrap();
        assert_eq!(p1.versions.len(), 2);
        assert_eq!(p1.next_key_marker.as_deref(), Some("a"));
        let req2 = ListVersionsRequest {
            key_marker: p1.next_key_marker,
            version_marker: p1.next_version_marker,
            max_keys: 2,
            ..Default::default()
        };
        let p2 = versions_page(items.clone(), &req2).unwrap();
        assert_eq!(p2.versions.len(), 1);
        assert_eq!(p2.common_prefixes, ["c/"]);
        assert!(p2.next_key_marker.is_none());
        // A marker inside a prefix: the prefix follows while a key under it does.
        let inside = |km: &str| ListVersionsRequest {
            key_marker: Some(km.into()),
            ..Default::default()
        };
        let p = versions_page(items.clone(), &inside("c/a")).unwrap();
        assert_eq!(p.common_prefixes, ["c/"]);
        assert!(versions_page(items.clone(), &inside("c/x"))
            .unwrap()
            .common_prefixes
            .is_empty());
        assert!(versions_page(items, &inside("c/"))
            .unwrap()
            .common_prefixes
            .is_empty());
    }
}
