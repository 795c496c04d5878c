//! Listing for the memory store, computed from scratch: filter every key, roll up common
//! prefixes, then page. It shares no algorithm with the local store's seek-based listing, so
//! the two check each other in the property tests. Continuation tokens are `mem1.` + `k`/`p` +
//! the hex of a key (resume after it) or of a common prefix (resume after everything under it).

use super::{State, Version};
use crate::error::{Result, StoreError};
use crate::key::validate_prefix;
use crate::paging;
pub(super) use crate::paging::{roll_up, Entry, Position};
use crate::types::{
    ListPage, ListRequest, ListVersionsRequest, ObjectInfo, VersionId, VersionInfo, VersionsPage,
};

/// Prefix of every continuation token this backend hands out (a format tag).
const TOKEN_TAG: &str = "mem1.";

#[cfg(test)]
pub(super) fn encode_token(pos: &Position) -> String {
    paging::encode_token(TOKEN_TAG, pos)
}

pub(super) fn decode_token(token: &str) -> Result<Position> {
    paging::decode_token(TOKEN_TAG, token)
}

/// The sequence number behind one of this store's version ids (`m` + 16 hex digits).
pub(super) fn seq_of(id: &VersionId) -> Option<u64> {
    let hex = id.as_str().strip_prefix('m')?;
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

impl State {
    /// Lists the objects whose version chosen by `pick` (from a key's versions, oldest
    /// first) is live: the newest for a listing of now, the newest not after a moment for a
    /// listing as of then.
    pub(super) fn list_with(
        &self,
        req: &ListRequest,
        pick: impl Fn(&[Version]) -> Option<&Version>,
    ) -> Result<ListPage> {
        validate_prefix(&req.prefix)?;
        let position = match &req.continuation {
            Some(token) => Some(decode_token(token)?),
            None => req.start_after.clone().map(Position::Key),
        };
        let delimiter = req.delimiter.as_deref();
        let mut entries: Vec<Entry<ObjectInfo>> = Vec::new();
        for (key, versions) in &self.objects {
            if !key.starts_with(req.prefix.as_str()) {
                continue;
            }
            if let Some(pos) = &position {
                if !pos.admits(key) {
                    continue;
                }
            }
            let Some(current) = pick(versions).filter(|v| v.data.is_some()) else {
                continue;
            };
            paging::push_rolled(&mut entries, &req.prefix, delimiter, key, || {
                current.info(key)
            });
        }
        Ok(paging::object_page(entries, req.page_size(), TOKEN_TAG))
    }

    /// Lists versions and delete markers, each key's newest first (the order of its `Vec`,
    /// reversed).
    pub(super) fn list_versions(&self, req: &ListVersionsRequest) -> Result<VersionsPage> {
        validate_prefix(&req.prefix)?;
        let delimiter = req.delimiter.as_deref();
        // A key marker that is itself a common prefix of this listing (a page ended on it)
        // resumes after everything under it; such a string is never listed as a key, because
        // every key equal to it rolls up into it.
        let marker_is_prefix = req
            .key_marker
            .as_deref()
            .is_some_and(|m| roll_up(&req.prefix, delimiter, m).as_deref() == Some(m));
        let st = self;
        // The version marker's place in the sequence (ids are compared by the store that made
        // them, never by their text).
        let marker_seq = match &req.version_marker {
            Some(vm) => Some(seq_of(vm).ok_or_else(|| {
                StoreError::InvalidArgument(format!("version marker {vm} is not one of ours"))
            })?),
            None => None,
        };

        let mut entries: Vec<Entry<VersionInfo>> = Vec::new();
        for (key, versions) in &st.objects {
            if !key.starts_with(req.prefix.as_str()) {
                continue;
            }
            let newest = versions.last().map(|v| v.seq);
            // The versions of this key that lie after the markers, newest first.
            let after: Vec<&Version> = versions
                .iter()
                .rev()
                .filter(|v| match req.key_marker.as_deref() {
                    None => true,
                    Some(m) if marker_is_prefix => key.as_str() > m && !key.starts_with(m),
                    Some(m) => match key.as_str().cmp(m) {
                        std::cmp::Ordering::Greater => true,
                        std::cmp::Ordering::Less => false,
                        std::cmp::Ordering::Equal => marker_seq.is_some_and(|vm| v.seq < vm),
                    },
                })
                .collect();
            if after.is_empty() {
                continue;
            }
            match roll_up(&req.prefix, delimiter, key) {
                Some(p) => {
                    let dup = matches!(entries.last(), Some(Entry::Prefix(last)) if *last == p);
                    if !dup {
                        entries.push(Entry::Prefix(p));
                    }
                }
                None => {
                    for v in after {
                        entries.push(Entry::Item(v.version_info(key, Some(v.seq) == newest)));
                    }
                }
            }
        }

        let page_size = req.page_size();
        let truncated = entries.len() > page_size;
        entries.truncate(page_size);
        let mut page = VersionsPage::default();
        if truncated {
            match entries.last() {
                Some(Entry::Item(v)) => {
                    page.next_key_marker = Some(v.key.clone());
                    page.next_version_marker = Some(v.version.clone());
                }
                Some(Entry::Prefix(p)) => page.next_key_marker = Some(p.clone()),
                None => {}
            }
        }
        for e in entries {
            match e {
                Entry::Item(v) => page.versions.push(v),
                Entry::Prefix(p) => page.common_prefixes.push(p),
            }
        }
        Ok(page)
    }
}
