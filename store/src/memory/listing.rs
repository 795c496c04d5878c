//! Listing for the memory store, computed from scratch: filter every key, roll up common
//! prefixes, then page. It shares no algorithm with the local store's seek-based listing, so
//! the two check each other in the property tests. Continuation tokens are `mem1.` + `k`/`p` +
//! the hex of a key (resume after it) or of a common prefix (resume after everything under it).

use super::{State, Version};
use crate::error::{Result, StoreError};
use crate::key::validate_prefix;
use crate::types::{
    ListPage, ListRequest, ListVersionsRequest, ObjectInfo, VersionId, VersionInfo, VersionsPage,
};

/// Prefix of every continuation token this backend hands out (a format tag).
const TOKEN_TAG: &str = "mem1.";

/// An entry of a listing before paging: an object (or one version) or a common prefix.
#[derive(Debug, Clone)]
enum Entry<T> {
    Item(T),
    Prefix(String),
}

/// Where a listing resumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Position {
    /// Strictly after this key.
    Key(String),
    /// After this common prefix and every key under it.
    Prefix(String),
}

impl Position {
    /// Whether `key` lies after this position.
    fn admits(&self, key: &str) -> bool {
        match self {
            Position::Key(k) => key > k.as_str(),
            Position::Prefix(p) => key > p.as_str() && !key.starts_with(p.as_str()),
        }
    }
}

/// The common prefix `key` rolls up into under `prefix` and `delimiter`, if any: the prefix
/// plus the rest of the key up to and including the first delimiter after the prefix.
pub(super) fn roll_up(prefix: &str, delimiter: Option<&str>, key: &str) -> Option<String> {
    let d = delimiter.filter(|d| !d.is_empty())?;
    let rest = key.strip_prefix(prefix)?;
    let idx = rest.find(d)?;
    Some(key[..prefix.len() + idx + d.len()].to_string())
}

pub(super) fn encode_token(pos: &Position) -> String {
    let (kind, name) = match pos {
        Position::Key(k) => ('k', k),
        Position::Prefix(p) => ('p', p),
    };
    let hex: String = name.bytes().map(|b| format!("{b:02x}")).collect();
    format!("{TOKEN_TAG}{kind}{hex}")
}

pub(super) fn decode_token(token: &str) -> Result<Position> {
    let bad = || StoreError::InvalidArgument(format!("invalid continuation token {token:?}"));
    let body = token.strip_prefix(TOKEN_TAG).ok_or_else(bad)?;
    let mut chars = body.chars();
    let kind = chars.next().ok_or_else(bad)?;
    let hex = chars.as_str();
    if hex.len() % 2 != 0 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| bad()))
        .collect::<Result<Vec<u8>>>()?;
    let name = String::from_utf8(bytes).map_err(|_| bad())?;
    match kind {
        'k' => Ok(Position::Key(name)),
        'p' => Ok(Position::Prefix(name)),
        _ => Err(bad()),
    }
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
    /// Lists live objects.
    pub(super) fn list(&self, req: &ListRequest) -> Result<ListPage> {
        validate_prefix(&req.prefix)?;
        let position = match &req.continuation {
            Some(token) => Some(decode_token(token)?),
            None => req.start_after.clone().map(Position::Key),
        };
        let delimiter = req.delimiter.as_deref();
        let st = self;

        let mut entries: Vec<Entry<ObjectInfo>> = Vec::new();
        for (key, versions) in &st.objects {
            if !key.starts_with(req.prefix.as_str()) {
                continue;
            }
            if let Some(pos) = &position {
                if !pos.admits(key) {
                    continue;
                }
            }
            let Some(current) = versions.last().filter(|v| v.data.is_some()) else {
                continue;
            };
            match roll_up(&req.prefix, delimiter, key) {
                Some(p) => {
                    let dup = matches!(entries.last(), Some(Entry::Prefix(last)) if *last == p);
                    if !dup {
                        entries.push(Entry::Prefix(p));
                    }
                }
                None => entries.push(Entry::Item(current.info(key))),
            }
        }

        let page_size = req.page_size();
        let truncated = entries.len() > page_size;
        entries.truncate(page_size);
        let next_token = if truncated {
            entries.last().map(|e| match e {
                Entry::Item(o) => encode_token(&Position::Key(o.key.clone())),
                Entry::Prefix(p) => encode_token(&Position::Prefix(p.clone())),
            })
        } else {
            None
        };
        let mut page = ListPage {
            next_token,
            ..Default::default()
        };
        for e in entries {
            match e {
                Entry::Item(o) => page.objects.push(o),
                Entry::Prefix(p) => page.common_prefixes.push(p),
            }
        }
        Ok(page)
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
