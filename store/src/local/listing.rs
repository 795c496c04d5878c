//! Listing objects and versions from the sled tables.
//!
//! A delimited listing never walks the keys under a common prefix: after emitting the prefix it
//! seeks to the first row past it (`prefix_successor`). A page therefore costs O(entries in the
//! page) seeks and row reads, however many keys lie below each entry.
//!
//! Continuation tokens are `K<key>` (resume after this key) or `P<prefix>` (resume after every
//! key under this common prefix). They are opaque to callers.

use crate::error::{Result, StoreError};
use crate::key::{prefix_successor, validate_prefix};
use crate::local::meta::Meta;
use crate::local::records::*;
use crate::local::version::LocalVersion;
use crate::types::*;

enum Last {
    Key(String),
    Prefix(String),
}

fn delimiter(d: &Option<String>) -> Option<&str> {
    d.as_deref().filter(|d| !d.is_empty())
}

/// The common prefix `key` rolls up into, if any.
fn common_prefix<'k>(key: &'k str, prefix: &str, delim: Option<&str>) -> Option<&'k str> {
    let d = delim?;
    let rest = key.get(prefix.len()..)?;
    rest.find(d).map(|i| &key[..prefix.len() + i + d.len()])
}

fn row_key(row: &[u8]) -> Result<&str> {
    std::str::from_utf8(&row[1..]).map_err(|_| StoreError::Corrupt {
        what: "a key in the metadata is not UTF-8".into(),
    })
}

fn with_table(table: u8, s: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + s.len());
    v.push(table);
    v.extend_from_slice(s.as_bytes());
    v
}

fn after(mut v: Vec<u8>) -> Vec<u8> {
    v.push(0);
    v
}

/// Lists live objects.
pub fn list(meta: &Meta, req: &ListRequest) -> Result<ListPage> {
    validate_prefix(&req.prefix)?;
    let delim = delimiter(&req.delimiter);
    let max = req.page_size();
    let floor = current_key(&req.prefix);
    let end = prefix_successor(&floor).unwrap_or_else(|| vec![table::CURRENT + 1]);
    let mut start = match (&req.continuation, &req.start_after) {
        (Some(token), _) => match token.split_at_checked(1) {
            Some(("K", k)) => after(current_key(k)),
            Some(("P", p)) => match prefix_successor(&current_key(p)) {
                Some(s) => s,
                None => return Ok(ListPage::default()),
            },
            _ => {
                return Err(StoreError::InvalidArgument(format!(
                    "continuation token {token:?} is not one of ours"
                )))
            }
        },
        (None, Some(sa)) => after(current_key(sa)),
        (None, None) => floor.clone(),
    };
    if start < floor {
        start = floor;
    }
    let mut page = ListPage::default();
    let mut last: Option<Last> = None;
    let mut count = 0usize;
    let mut iter = meta.range(start, Some(end.clone()));
    loop {
        let Some(row) = iter.next() else { break };
        let (k, v) = row?;
        let key = row_key(&k)?;
        if let Some(cp) = common_prefix(key, &req.prefix, delim) {
            if count == max {
                page.next_token = last.take().map(token);
                return Ok(page);
            }
            page.common_prefixes.push(cp.to_string());
            count += 1;
            let skip = prefix_successor(&with_table(table::CURRENT, cp));
            last = Some(Last::Prefix(cp.to_string()));
            match skip {
                Some(s) if s < end => iter.seek(s),
                _ => break,
            }
            continue;
        }
        if count == max {
            page.next_token = last.take().map(token);
            return Ok(page);
        }
        let cur: CurrentRecord = decode(&v)?;
        let vid = LocalVersion(cur.version);
        page.objects.push(ObjectInfo {
            key: key.to_string(),
            version: vid.id(),
            size: cur.size,
            modified: vid.time(),
            etag: cur.etag,
            metadata: cur.metadata,
        });
        count += 1;
        last = Some(Last::Key(key.to_string()));
    }
    Ok(page)
}

fn token(last: Last) -> String {
    match last {
        Last::Key(k) => format!("K{k}"),
        Last::Prefix(p) => format!("P{p}"),
    }
}

/// Lists versions and delete markers.
pub fn list_versions(meta: &Meta, req: &ListVersionsRequest) -> Result<VersionsPage> {
    validate_prefix(&req.prefix)?;
    let delim = delimiter(&req.delimiter);
    let max = req.page_size();
    let floor = with_table(table::VERSION, &req.prefix);
    let end = prefix_successor(&floor).unwrap_or_else(|| vec![table::VERSION + 1]);
    // The key whose versions we start in the middle of (their first row is not the latest).
    let mut mid_key: Option<String> = None;
    // A version marker this store did not make is no position in its listing (checked first,
    // whatever the key marker is, as the memory store does).
    let version_marker = match &req.version_marker {
        Some(vm) => Some(LocalVersion::parse(vm).ok_or_else(|| {
            StoreError::InvalidArgument(format!("version marker {vm} is not one of ours"))
        })?),
        None => None,
    };
    let mut start = match (&req.key_marker, version_marker) {
        (None, _) => floor.clone(),
        (Some(km), vm) => {
            // A marker that is itself a common prefix (how a page that ended on a prefix
            // continues) resumes after everything under it; a marker inside a prefix resumes
            // right after itself, so the prefix is emitted again if keys follow (as S3 does).
            if let Some(cp) = common_prefix(km, &req.prefix, delim).filter(|cp| *cp == km) {
                match prefix_successor(&with_table(table::VERSION, cp)) {
                    Some(s) => s,
                    None => return Ok(VersionsPage::default()),
                }
            } else if let Some(vm) = vm {
                mid_key = Some(km.clone());
                after(version_key(km, vm))
            } else {
                let mut s = with_table(table::VERSION, km);
                s.push(1);
                s
            }
        }
    };
    if start < floor {
        start = floor;
    }
    let mut page = VersionsPage::default();
    let mut count = 0usize;
    let mut last: Option<(String, Option<LocalVersion>)> = None;
    let mut prev_key = mid_key;
    let mut iter = meta.range(start, Some(end.clone()));
    loop {
        let Some(row) = iter.next() else { break };
        let (k, v) = row?;
        let (key, vid) = parse_version_key(&k)?;
        if let Some(cp) = common_prefix(key, &req.prefix, delim) {
            if count == max {
                return Ok(truncate(page, last));
            }
            page.common_prefixes.push(cp.to_string());
            count += 1;
            last = Some((cp.to_string(), None));
            match prefix_successor(&with_table(table::VERSION, cp)) {
                Some(s) if s < end => iter.seek(s),
                _ => break,
            }
            continue;
        }
        if count == max {
            return Ok(truncate(page, last));
        }
        let rec: VersionRecord = decode(&v)?;
        let is_latest = prev_key.as_deref() != Some(key);
        page.versions.push(VersionInfo {
            key: key.to_string(),
            version: vid.id(),
            is_latest,
            is_delete_marker: rec.delete_marker,
            size: rec.size,
            modified: vid.time(),
            etag: rec.etag,
            metadata: rec.metadata,
        });
        count += 1;
        prev_key = Some(key.to_string());
        last = Some((key.to_string(), Some(vid)));
    }
    Ok(page)
}

fn truncate(mut page: VersionsPage, last: Option<(String, Option<LocalVersion>)>) -> VersionsPage {
    if let Some((k, v)) = last {
        page.next_key_marker = Some(k);
        page.next_version_marker = v.map(LocalVersion::id);
    }
    page
}
