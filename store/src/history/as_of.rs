//! The store as it was at a moment, computed from `list_versions`: the default of
//! [`ObjectStore::head_at`] and [`ObjectStore::list_at`] for backends that cannot seek to a
//! key's version at a time (S3: this costs what ListObjectVersions costs, O(versions under the
//! prefix)). The local and memory stores override both.
//!
//! A key is live at `at` when its newest version whose `modified` is not after `at` exists and
//! is not a delete marker; that version is what the listing shows.

use std::time::SystemTime;

use crate::error::{Result, StoreError};
use crate::paging::{self, decode_token, Entry, Position};
use crate::store::ObjectStore;
use crate::types::{ListPage, ListRequest, ListVersionsRequest, ObjectInfo, VersionInfo};

/// Tag of this listing's continuation tokens.
const TOKEN_TAG: &str = "at1.";

/// What a key showed at a moment.
fn live_info(v: &VersionInfo) -> ObjectInfo {
    ObjectInfo {
        key: v.key.clone(),
        version: v.version.clone(),
        size: v.size,
        modified: v.modified,
        etag: v.etag.clone(),
        metadata: v.metadata.clone(),
    }
}

/// [`ObjectStore::head_at`] by listing the key's versions, newest first, until one is not
/// newer than `at`.
pub async fn head_at_by_versions<S: ObjectStore + ?Sized>(
    store: &S,
    key: &str,
    at: SystemTime,
) -> Result<ObjectInfo> {
    crate::key::validate(key)?;
    let not_found = || StoreError::NotFound {
        key: key.to_string(),
    };
    let mut req = ListVersionsRequest {
        prefix: key.to_string(),
        ..Default::default()
    };
    loop {
        let page = store.list_versions(&req).await?;
        for v in &page.versions {
            if v.key != key {
                // Keys come in byte order and `key` is the first with this prefix.
                return Err(not_found());
            }
            if v.modified <= at {
                return if v.is_delete_marker {
                    Err(not_found())
                } else {
                    Ok(live_info(v))
                };
            }
        }
        match page.next_key_marker {
            Some(k) if k == key => {
                req.key_marker = Some(k);
                req.version_marker = page.next_version_marker;
            }
            _ => return Err(not_found()),
        }
    }
}

/// [`ObjectStore::list_at`] by walking every version under the prefix.
pub async fn list_at_by_versions<S: ObjectStore + ?Sized>(
    store: &S,
    req: &ListRequest,
    at: SystemTime,
) -> Result<ListPage> {
    crate::key::validate_prefix(&req.prefix)?;
    let position = match &req.continuation {
        Some(token) => Some(decode_token(TOKEN_TAG, token)?),
        None => req.start_after.clone().map(Position::Key),
    };
    let delimiter = req.delimiter.as_deref();
    let page_size = req.page_size();
    let mut vreq = ListVersionsRequest {
        prefix: req.prefix.clone(),
        key_marker: match &position {
            Some(Position::Key(k)) => Some(k.clone()),
            // Keys under the prefix sort after it; `admits` skips them below.
            Some(Position::Prefix(p)) => Some(p.clone()),
            None => None,
        },
        ..Default::default()
    };
    let mut entries: Vec<Entry<ObjectInfo>> = Vec::new();
    // The key whose version at `at` was found (or known absent) already: its older versions
    // are skipped.
    let mut decided: Option<String> = None;
    loop {
        let page = store.list_versions(&vreq).await?;
        for v in &page.versions {
            if decided.as_deref() == Some(v.key.as_str()) || v.modified > at {
                continue;
            }
            decided = Some(v.key.clone());
            if v.is_delete_marker || position.as_ref().is_some_and(|p| !p.admits(&v.key)) {
                continue;
            }
            paging::push_rolled(&mut entries, &req.prefix, delimiter, &v.key, || {
                live_info(v)
            });
            if entries.len() > page_size {
                return Ok(paging::object_page(entries, page_size, TOKEN_TAG));
            }
        }
        if page.next_key_marker.is_none() {
            return Ok(paging::object_page(entries, page_size, TOKEN_TAG));
        }
        vreq.key_marker = page.next_key_marker;
        vreq.version_marker = page.next_version_marker;
    }
}
