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
//! When no version is newer than the moment (it is at or after the newest version id the
//! store has made), the state as of the moment is the current one: the listing is then
//! [`listing::list`] of the current table (one row per entry, no seek), checked afterwards
//! against commits that raced it (a commit moves the store's newest id; the walk above runs
//! instead when one did).
//!
//! Continuation tokens have their own tag (`lat1.`) and the same rules as [`list`]'s: opaque,
//! valid only for the same request and moment.
//!
//! [`list`]: crate::ObjectStore::list

use std::time::{SystemTime, UNIX_EPOCH};

use sled::IVec;

use crate::error::{Result, StoreError};
use crate::key::{prefix_successor, validate, validate_prefix};
use crate::local::listing;
use crate::local::meta::{Meta, Rows};
use crate::local::records::{
    decode, parse_version_key, table, version_key, version_prefix, VersionRecord,
};
use crate::local::version::LocalVersion;
use crate::paging::{self, decode_token, encode_token, Entry, Position};
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
    let ceiling = meta.version_ceiling();
    if bound >= ceiling {
        let page = current_page(meta, req, &position)?;
        if meta.version_ceiling() == ceiling {
            return Ok(page);
        }
    }
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

/// The current listing's page from `position`, its token in this listing's form.
fn current_page(meta: &Meta, req: &ListRequest, position: &Option<Position>) -> Result<ListPage> {
    let current = ListRequest {
        continuation: position.as_ref().map(|p| match p {
            Position::Key(k) => format!("K{k}"),
            Position::Prefix(p) => format!("P{p}"),
        }),
        start_after: None,
        ..req.clone()
    };
    let mut page = listing::list(meta, &current)?;
    page.next_token = match page.next_token.take() {
        None => None,
        Some(t) => Some(match t.split_at_checked(1) {
            Some(("K", k)) => encode_token(TOKEN_TAG, &Position::Key(k.to_string())),
            Some(("P", p)) => encode_token(TOKEN_TAG, &Position::Prefix(p.to_string())),
            _ => {
                return Err(StoreError::Metadata(format!(
                    "the current listing gave a token of another form: {t:?}"
                )))
            }
        }),
    };
    Ok(page)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::local::{LocalConfig, LocalStore};
    use crate::types::{ListPage, ListRequest, PutOptions};
    use crate::ObjectStore;

    /// A page as the test compares it: objects (key, version) and common prefixes.
    type Page = (Vec<(String, String)>, Vec<String>);

    /// Every page of a listing as of `at` (each object as key and version), by `list_at` or
    /// by the reference (`list_at_by_versions`, the trait's walk over every version).
    async fn walk(
        s: &LocalStore,
        req: &ListRequest,
        at: std::time::SystemTime,
        reference: bool,
    ) -> Vec<Page> {
        let mut req = req.clone();
        let mut pages = Vec::new();
        loop {
            let page: ListPage = if reference {
                crate::history::as_of::list_at_by_versions(s, &req, at).await
            } else {
                s.list_at(&req, at).await
            }
            .unwrap();
            let objects = page
                .objects
                .iter()
                .map(|o| (o.key.clone(), o.version.to_string()));
            pages.push((objects.collect(), page.common_prefixes.clone()));
            match page.next_token {
                Some(t) => req.continuation = Some(t),
                None => return pages,
            }
        }
    }

    /// `list_at` equals the walk over every version at every moment of a history of many
    /// versions, delete markers and re-creations, every page size, with and without a
    /// delimiter and `start_after`; at moments after the last write (the current listing
    /// answers) and before, and after a reopen (the version-id lease as the ceiling).
    #[tokio::test]
    async fn list_at_equals_the_walk_over_every_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let store = LocalStore::init(&path, LocalConfig::default()).unwrap();
        let keys = ["a", "b/x", "b/y", "c", "d/e/f", "d/g", "h"];
        let mut moments = Vec::new();
        for round in 0..12usize {
            for (i, key) in keys.iter().enumerate() {
                let key = format!("p/{key}");
                if (round + i) % 5 == 3 {
                    store.delete(&key).await.unwrap();
                } else if (round * 7 + i) % 3 != 0 {
                    let body = format!("{key} {round}").into_bytes();
                    store
                        .put(&key, body.into(), PutOptions::default())
                        .await
                        .unwrap();
                }
            }
            moments.push(std::time::SystemTime::now());
        }
        let check = |store: LocalStore, moments: Vec<std::time::SystemTime>| async move {
            let far = std::time::SystemTime::now() + Duration::from_secs(3600);
            for at in moments.iter().copied().chain([far]) {
                for delimiter in [None, Some("/".to_string())] {
                    for start_after in [None, Some("p/b/x".to_string())] {
                        for max_keys in 1..=keys.len() + 1 {
                            let req = ListRequest {
                                prefix: "p/".into(),
                                delimiter: delimiter.clone(),
                                start_after: start_after.clone(),
                                continuation: None,
                                max_keys,
                            };
                            let got = walk(&store, &req, at, false).await;
                            let want = walk(&store, &req, at, true).await;
                            let flat = |p: &[Page]| {
                                let o: Vec<_> = p.iter().flat_map(|x| x.0.clone()).collect();
                                let c: Vec<_> = p.iter().flat_map(|x| x.1.clone()).collect();
                                (o, c)
                            };
                            assert_eq!(flat(&got), flat(&want), "{req:?} at {at:?}");
                            assert_eq!(got.len(), want.len(), "pages of {req:?} at {at:?}");
                        }
                    }
                }
            }
            store
        };
        let store = check(store, moments.clone()).await;
        store.close().unwrap();
        let store = LocalStore::open(&path).unwrap();
        check(store, moments).await.close().unwrap();
    }
}
