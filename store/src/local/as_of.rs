//! The local store as it was at a moment: [`head_at`] and [`list_at`] by seeking in the
//! version table, so that a listing as of a moment costs O(keys at that level), however many
//! versions each key has.
//!
//! The version table's rows are `v` + key + 0x00 + (u128::MAX - version) big-endian: a key's
//! rows are contiguous and newest first, and version ids grow with time
//! ([`LocalVersion`]), so "the newest version not after T" is the first row at or after
//! `v` + key + 0x00 + inverted(largest id of T's nanosecond): one seek per key. A listing
//! goes from key to key: it reads a key's first row (its newest version; when that is not
//! after T it is the answer and no seek is needed), seeks to the version at T otherwise, and
//! then skips the key's older rows by seeking to `v` + key + 0x01 (keys hold no NUL, so that
//! is the first row of the next key). Under a delimiter, the keys of a common prefix are
//! walked only until one is live at T; then the listing seeks past the prefix. A prefix whose
//! keys were all absent at T costs one step per key under it (they ever existed there).
//!
//! Continuation tokens have their own tag (`lat1.`) and the same rules as [`list`]'s: opaque,
//! valid only for the same request and moment.
//!
//! [`list`]: crate::ObjectStore::list

use std::time::{SystemTime, UNIX_EPOCH};

use sled::IVec;

use crate::error::{Result, StoreError};
use crate::key::{prefix_successor, validate, validate_prefix};
use crate::local::meta::{Meta, Rows};
use crate::local::records::{
    decode, parse_version_key, table, version_key, version_prefix, VersionRecord,
};
use crate::local::version::LocalVersion;
use crate::paging::{self, decode_token, Entry, Position};
use crate::types::{ListPage, ListRequest, ObjectInfo};

/// Tag of this listing's continuation tokens.
const TOKEN_TAG: &str = "lat1.";

/// The largest version id made at or before `at` (`None` before the epoch: no version is).
fn bound(at: SystemTime) -> Option<LocalVersion> {
    if at < UNIX_EPOCH {
        return None;
    }
    Some(LocalVersion::at(at).max_in_nanosecond())
}

/// `v` + key + 0x01: the first row after every version of `key`.
fn after_key(key: &str) -> Vec<u8> {
    let mut k = version_prefix(key);
    if let Some(last) = k.last_mut() {
        *last = 1;
    }
    k
}

fn info(key: &str, vid: LocalVersion, rec: VersionRecord) -> ObjectInfo {
    ObjectInfo {
        key: key.to_string(),
        version: vid.id(),
        size: rec.size,
        modified: vid.time(),
        etag: rec.etag,
        metadata: rec.metadata,
    }
}

/// [`crate::ObjectStore::head_at`]: one seek.
pub fn head_at(meta: &Meta, key: &str, at: SystemTime) -> Result<ObjectInfo> {
    validate(key)?;
    let not_found = || StoreError::NotFound {
        key: key.to_string(),
    };
    let bound = bound(at).ok_or_else(not_found)?;
    let mut rows = meta.range(version_key(key, bound), Some(after_key(key)));
    match rows.next() {
        Some(row) => {
            let (k, v) = row?;
            let (_, vid) = parse_version_key(&k)?;
            let rec: VersionRecord = decode(&v)?;
            if rec.delete_marker {
                Err(not_found())
            } else {
                Ok(info(key, vid, rec))
            }
        }
        None => Err(not_found()),
    }
}

/// A walk over the version table, one key at a time.
struct Cursor {
    rows: Rows,
    /// The end of the listing's range (exclusive).
    end: Vec<u8>,
    /// A row read ahead: the first row of the next key.
    pending: Option<(IVec, IVec)>,
    bound: LocalVersion,
    done: bool,
}

/// A key met by the walk, and its version at the moment (`None`: it had none then).
struct KeyAt {
    key: String,
    version: Option<(LocalVersion, VersionRecord)>,
}

impl Cursor {
    fn next_row(&mut self) -> Result<Option<(IVec, IVec)>> {
        if let Some(row) = self.pending.take() {
            return Ok(Some(row));
        }
        if self.done {
            return Ok(None);
        }
        self.rows.next().transpose()
    }

    /// Moves to the first row at or after `to` (forward only: `to` is after every row
    /// consumed so far).
    fn seek(&mut self, to: Option<Vec<u8>>) {
        if let (Some(to), Some((k, _))) = (&to, &self.pending) {
            if k[..] >= to[..] {
                // The row read ahead is the next row anyway (the scan is past it: seeking
                // back would lose it).
                return;
            }
        }
        self.pending = None;
        match to {
            Some(to) if to < self.end => self.rows.seek(to),
            _ => self.done = true,
        }
    }

    /// The next key and its version at the moment, leaving the cursor on the key after it.
    fn next_key(&mut self) -> Result<Option<KeyAt>> {
        let Some((k, v)) = self.next_row()? else {
            return Ok(None);
        };
        let (key, newest) = parse_version_key(&k)?;
        let key = key.to_string();
        if newest <= self.bound {
            // The key's newest version is the one: skip its older rows. One step first (most
            // keys have one version), a seek when more versions follow.
            let rec: VersionRecord = decode(&v)?;
            self.skip_rest_of(&key)?;
            return Ok(Some(KeyAt {
                key,
                version: Some((newest, rec)),
            }));
        }
        self.seek(Some(version_key(&key, self.bound)));
        let Some((k, v)) = self.next_row()? else {
            return Ok(Some(KeyAt { key, version: None }));
        };
        let (next_key, vid) = parse_version_key(&k)?;
        if next_key != key {
            // The key had no version yet; this row is the next key's newest.
            self.pending = Some((k, v));
            return Ok(Some(KeyAt { key, version: None }));
        }
        let rec: VersionRecord = decode(&v)?;
        // A key with a version after the moment has had several: seek past the rest at once.
        self.seek(Some(after_key(&key)));
        Ok(Some(KeyAt {
            key,
            version: Some((vid, rec)),
        }))
    }

    /// Moves past the remaining (older) rows of `key`.
    fn skip_rest_of(&mut self, key: &str) -> Result<()> {
        let Some((k, v)) = self.next_row()? else {
            return Ok(());
        };
        let (next_key, _) = parse_version_key(&k)?;
        if next_key == key {
            self.seek(Some(after_key(key)));
        } else {
            self.pending = Some((k, v));
        }
        Ok(())
    }
}

/// [`crate::ObjectStore::list_at`]: O(keys at the level) seeks and row reads.
pub fn list_at(meta: &Meta, req: &ListRequest, at: SystemTime) -> Result<ListPage> {
    validate_prefix(&req.prefix)?;
    let position = match &req.continuation {
        Some(token) => Some(decode_token(TOKEN_TAG, token)?),
        None => req.start_after.clone().map(Position::Key),
    };
    let Some(bound) = bound(at) else {
        return Ok(ListPage::default());
    };
    let delimiter = req.delimiter.as_deref().filter(|d| !d.is_empty());
    let page_size = req.page_size();
    let mut floor = vec![table::VERSION];
    floor.extend_from_slice(req.prefix.as_bytes());
    let end = prefix_successor(&floor).unwrap_or_else(|| vec![table::VERSION + 1]);
    let start = match &position {
        Some(Position::Key(k)) => Some(after_key(k)),
        Some(Position::Prefix(p)) => {
            let mut row = vec![table::VERSION];
            row.extend_from_slice(p.as_bytes());
            prefix_successor(&row)
        }
        None => Some(floor.clone()),
    };
    let start = match start {
        Some(s) if s >= end => return Ok(ListPage::default()),
        Some(s) => s.max(floor),
        None => return Ok(ListPage::default()),
    };
    let mut cursor = Cursor {
        rows: meta.range(start, Some(end.clone())),
        end,
        pending: None,
        bound,
        done: false,
    };
    let mut entries: Vec<Entry<ObjectInfo>> = Vec::new();
    while let Some(KeyAt { key, version }) = cursor.next_key()? {
        let Some((vid, rec)) = version.filter(|(_, r)| !r.delete_marker) else {
            continue;
        };
        let rolled = paging::roll_up(&req.prefix, delimiter, &key);
        paging::push_rolled(&mut entries, &req.prefix, delimiter, &key, || {
            info(&key, vid, rec)
        });
        if entries.len() > page_size {
            break;
        }
        if let Some(cp) = rolled {
            // One live key is enough: skip the rest of the prefix.
            let mut row = vec![table::VERSION];
            row.extend_from_slice(cp.as_bytes());
            cursor.seek(prefix_successor(&row));
        }
    }
    Ok(paging::object_page(entries, page_size, TOKEN_TAG))
}
