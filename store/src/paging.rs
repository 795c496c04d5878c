//! Listing positions and continuation tokens shared by the listings that are computed by
//! filtering and rolling up (the memory store's, and the "as of a moment" listing built on
//! `list_versions`): a token is a backend's tag + `k`/`p` + the hex of a key (resume after it)
//! or of a common prefix (resume after everything under it).

use crate::error::{Result, StoreError};
use crate::types::{ListPage, ObjectInfo};

/// An entry of a listing before paging: an object (or one version) or a common prefix.
#[derive(Debug, Clone)]
pub(crate) enum Entry<T> {
    Item(T),
    Prefix(String),
}

/// Where a listing resumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Position {
    /// Strictly after this key.
    Key(String),
    /// After this common prefix and every key under it.
    Prefix(String),
}

impl Position {
    /// Whether `key` lies after this position.
    pub(crate) fn admits(&self, key: &str) -> bool {
        match self {
            Position::Key(k) => key > k.as_str(),
            Position::Prefix(p) => key > p.as_str() && !key.starts_with(p.as_str()),
        }
    }
}

/// The common prefix `key` rolls up into under `prefix` and `delimiter`, if any: the prefix
/// plus the rest of the key up to and including the first delimiter after the prefix.
pub(crate) fn roll_up(prefix: &str, delimiter: Option<&str>, key: &str) -> Option<String> {
    let d = delimiter.filter(|d| !d.is_empty())?;
    let rest = key.strip_prefix(prefix)?;
    let idx = rest.find(d)?;
    Some(key[..prefix.len() + idx + d.len()].to_string())
}

pub(crate) fn encode_token(tag: &str, pos: &Position) -> String {
    let (kind, name) = match pos {
        Position::Key(k) => ('k', k),
        Position::Prefix(p) => ('p', p),
    };
    let hex: String = name.bytes().map(|b| format!("{b:02x}")).collect();
    format!("{tag}{kind}{hex}")
}

pub(crate) fn decode_token(tag: &str, token: &str) -> Result<Position> {
    let bad = || StoreError::InvalidArgument(format!("invalid continuation token {token:?}"));
    let body = token.strip_prefix(tag).ok_or_else(bad)?;
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

/// Adds `key` to `entries` (in key order): as its common prefix when it rolls up into one
/// (once per prefix), else as the item `item()` makes.
pub(crate) fn push_rolled<T>(
    entries: &mut Vec<Entry<T>>,
    prefix: &str,
    delimiter: Option<&str>,
    key: &str,
    item: impl FnOnce() -> T,
) {
    match roll_up(prefix, delimiter, key) {
        Some(p) => {
            let dup = matches!(entries.last(), Some(Entry::Prefix(last)) if *last == p);
            if !dup {
                entries.push(Entry::Prefix(p));
            }
        }
        None => entries.push(Entry::Item(item())),
    }
}

/// Cuts `entries` (more than a page when more follow) to a page of a listing of live objects,
/// with a token of `tag` when more follow.
pub(crate) fn object_page(
    mut entries: Vec<Entry<ObjectInfo>>,
    page_size: usize,
    tag: &str,
) -> ListPage {
    let truncated = entries.len() > page_size;
    entries.truncate(page_size);
    let next_token = if truncated {
        entries.last().map(|e| match e {
            Entry::Item(o) => encode_token(tag, &Position::Key(o.key.clone())),
            Entry::Prefix(p) => encode_token(tag, &Position::Prefix(p.clone())),
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
    page
}
