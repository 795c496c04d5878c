//! The local store as it was at a moment: [`head_at`] and [`list_at`], so that a listing as
//! of a moment costs O(keys at that level), however many versions each key has.
//!
//! The version table's rows are `v` + key + 0x00 + (u128::MAX - version) big-endian: a key's
//! rows are contiguous and newest first, and version ids grow with time
//! ([`LocalVersion`]), so "the newest version not after T" is the first row at or after
//! `v` + key + 0x00 + inverted(largest id of T's nanosecond): one seek ([`head_at`]).
//!
//! A listing reads the keys from the current table (`c`, live keys) and the table of deleted
//! keys (`d`, keys whose newest version is a delete marker) side by side, in key order: every
//! key that has a version has a row in exactly one of them, naming its newest version. When
//! that version is not after T it is the answer (a live key's row carries what the listing
//! shows; a deleted key is absent), with no seek; otherwise one seek in the version table
//! finds the version at T. Under a delimiter, the keys of a common prefix are read only until
//! one is live at T; then the listing skips past the prefix. A prefix whose keys were all
//! absent at T costs one step per key under it (they ever existed there).
//!
//! A commit that moves a key between `c` and `d` (a delete, an undelete, gc removing a newest
//! version) while the listing reads could make it miss the key in both; the listing reads the
//! `d` table's seqlock ([`Meta::deleted_epoch`]) before and after, and when such a commit ran
//! meanwhile it lists the page again by the walk of the version table alone
//! ([`Cursor`]: per key, a seek to the version at T and a seek past the key's older rows),
//! which sees only rows that no commit changes.
//!
//! When no version is newer than the moment (it is at or after the newest version id the
//! store has made), the state as of the moment is the current one: the listing is then
//! [`listing::list`] of the current table (one row per entry, no seek), checked afterwards
//! against commits that raced it (a commit moves the store's newest id; the walks above run
//! instead when one did).
//!
//! Continuation tokens have their own tag (`lat1.`) and the same rules as [`list`]'s: opaque,
//! valid only for the same request and moment, whichever walk made them.
//!
//! [`list`]: crate::ObjectStore::list

use std::time::{SystemTime, UNIX_EPOCH};

use sled::IVec;

use crate::error::{Result, StoreError};
use crate::key::{prefix_successor, validate, validate_prefix};
use crate::local::listing;
use crate::local::meta::{Meta, Rows};
use crate::local::records::{
    after_versions as after_key, decode, parse_version_key, table, version_key, CurrentRecord,
    DeletedRecord, VersionRecord,
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
    live_at(meta, &mut sled::Finger::default(), key, bound)?.ok_or_else(not_found)
}

/// The live version of `key` at `bound` (`None`: absent then), by one seek (from where
/// `finger` says the last one went: a listing's keys come in order).
fn live_at(
    meta: &Meta,
    finger: &mut sled::Finger,
    key: &str,
    bound: LocalVersion,
) -> Result<Option<ObjectInfo>> {
    let Some((k, v)) = meta.first_in_with(finger, &version_key(key, bound), &after_key(key))?
    else {
        return Ok(None);
    };
    let (_, vid) = parse_version_key(&k)?;
    let rec: VersionRecord = decode(&v)?;
    Ok((!rec.delete_marker).then(|| info(key, vid, rec)))
}

/// What a key's row in `c` or `d` says of its newest version.
enum Newest {
    /// The `c` row, still encoded (a key changed since the moment needs only its version).
    Live(IVec),
    Deleted(DeletedRecord),
    /// A row in both tables (never written so; the version table decides).
    Unknown,
}

/// The rows of `c` and `d` in one range, merged in key order: every key that has a version.
struct KeyRows {
    current: Rows,
    deleted: Rows,
    /// The next row of each, read ahead (key without the table tag, value).
    next_current: Option<(IVec, IVec)>,
    next_deleted: Option<(IVec, IVec)>,
    /// The range's end, without the table tag (`None`: the table's end).
    end: Option<Vec<u8>>,
    /// Nothing is left (a seek went past the end).
    done: bool,
    /// Each scan came to its end (asked again, sled's iterator would descend the tree again
    /// to find nothing).
    current_done: bool,
    deleted_done: bool,
}

/// `tag` + `rest`, or the first key after table `tag` when `rest` is `None`.
fn tagged(tag: u8, rest: Option<&[u8]>) -> Vec<u8> {
    match rest {
        Some(r) => [&[tag][..], r].concat(),
        None => vec![tag + 1],
    }
}

impl KeyRows {
    fn new(meta: &Meta, start: &[u8], end: Option<Vec<u8>>) -> Result<KeyRows> {
        let c_end = tagged(table::CURRENT, end.as_deref());
        let d_end = tagged(table::DELETED, end.as_deref());
        let mut rows = KeyRows {
            current: meta.range(tagged(table::CURRENT, Some(start)), Some(c_end)),
            deleted: meta.range(tagged(table::DELETED, Some(start)), Some(d_end)),
            next_current: None,
            next_deleted: None,
            end,
            done: false,
            current_done: false,
            deleted_done: false,
        };
        rows.fill()?;
        Ok(rows)
    }

    fn fill(&mut self) -> Result<()> {
        if self.done {
            return Ok(());
        }
        if self.next_current.is_none() && !self.current_done {
            self.next_current = self.current.next().transpose()?;
            self.current_done = self.next_current.is_none();
        }
        if self.next_deleted.is_none() && !self.deleted_done {
            self.next_deleted = self.deleted.next().transpose()?;
            self.deleted_done = self.next_deleted.is_none();
        }
        Ok(())
    }

    /// The next key and what its row says.
    fn next(&mut self) -> Result<Option<(String, Newest)>> {
        self.fill()?;
        let order = match (&self.next_current, &self.next_deleted) {
            (None, None) => return Ok(None),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some((c, _)), Some((d, _))) => c[1..].cmp(&d[1..]),
        };
        let (k, newest) = match order {
            std::cmp::Ordering::Less => {
                let Some((k, v)) = self.next_current.take() else {
                    return Ok(None);
                };
                (k, Newest::Live(v))
            }
            std::cmp::Ordering::Greater => {
                let Some((k, v)) = self.next_deleted.take() else {
                    return Ok(None);
                };
                (k, Newest::Deleted(decode(&v)?))
            }
            std::cmp::Ordering::Equal => {
                self.next_deleted = None;
                let Some((k, _)) = self.next_current.take() else {
                    return Ok(None);
                };
                (k, Newest::Unknown)
            }
        };
        let key = std::str::from_utf8(&k[1..]).map_err(|_| StoreError::Corrupt {
            what: "a key in the metadata is not UTF-8".into(),
        })?;
        Ok(Some((key.to_string(), newest)))
    }

    /// Continues from the first key at or after `to` (forward only; `None`: nothing is left).
    fn seek(&mut self, to: Option<Vec<u8>>) {
        let to = match to {
            Some(t) if self.end.as_ref().is_none_or(|e| t < *e) => t,
            _ => {
                self.next_current = None;
                self.next_deleted = None;
                self.done = true;
                return;
            }
        };
        let ahead =
            |row: &Option<(IVec, IVec)>| row.as_ref().is_some_and(|(k, _)| k[1..] >= to[..]);
        // A scan at its end stays there (seeks are forward only).
        if !ahead(&self.next_current) && !self.current_done {
            self.next_current = None;
            self.current.seek(tagged(table::CURRENT, Some(&to)));
        }
        if !ahead(&self.next_deleted) && !self.deleted_done {
            self.next_deleted = None;
            self.deleted.seek(tagged(table::DELETED, Some(&to)));
        }
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

/// [`crate::ObjectStore::list_at`]: O(keys at the level) row reads, and a seek per key
/// changed since the moment.
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
    let epoch = meta.deleted_epoch();
    if epoch % 2 == 0 {
        let page = list_by_keys(meta, req, &position, bound)?;
        if meta.deleted_epoch() == epoch {
            return Ok(page);
        }
    }
    list_by_versions(meta, req, &position, bound)
}

/// The page as of `bound` from the `c` and `d` tables, seeking the version table for keys
/// changed since (see the module doc).
fn list_by_keys(
    meta: &Meta,
    req: &ListRequest,
    position: &Option<Position>,
    bound: LocalVersion,
) -> Result<ListPage> {
    let delimiter = req.delimiter.as_deref().filter(|d| !d.is_empty());
    let page_size = req.page_size();
    let floor = req.prefix.as_bytes().to_vec();
    let end = prefix_successor(&floor);
    let start = match position {
        Some(Position::Key(k)) => Some([k.as_bytes(), &[0]].concat()),
        Some(Position::Prefix(p)) => prefix_successor(p.as_bytes()),
        None => Some(floor.clone()),
    };
    let start = match start {
        Some(s) if end.as_ref().is_some_and(|e| s >= *e) => return Ok(ListPage::default()),
        Some(s) => s.max(floor),
        None => return Ok(ListPage::default()),
    };
    let mut keys = KeyRows::new(meta, &start, end)?;
    let mut finger = sled::Finger::default();
    let mut entries: Vec<Entry<ObjectInfo>> = Vec::new();
    while let Some((key, newest)) = keys.next()? {
        let object = match newest {
            Newest::Live(row) if LocalVersion(CurrentRecord::version_of(&row)?) <= bound => {
                let cur: CurrentRecord = decode(&row)?;
                let vid = LocalVersion(cur.version);
                Some(ObjectInfo {
                    key: key.clone(),
                    version: vid.id(),
                    size: cur.size,
                    modified: vid.time(),
                    etag: cur.etag,
                    metadata: cur.metadata,
                })
            }
            Newest::Deleted(d) if LocalVersion(d.marker) <= bound => None,
            // Changed since the moment (or in both tables): the version table says.
            _ => live_at(meta, &mut finger, &key, bound)?,
        };
        let Some(object) = object else {
            continue;
        };
        let rolled = paging::roll_up(&req.prefix, delimiter, &key);
        paging::push_rolled(&mut entries, &req.prefix, delimiter, &key, || object);
        if entries.len() > page_size {
            break;
        }
        if let Some(cp) = rolled {
            // One live key is enough: skip the rest of the prefix.
            keys.seek(prefix_successor(cp.as_bytes()));
        }
    }
    Ok(paging::object_page(entries, page_size, TOKEN_TAG))
}

/// The page as of `bound` from the version table alone: a seek to each changed key's version
/// at the moment and one past its older rows. Used when a commit moved a key between `c` and
/// `d` while [`list_by_keys`] read them.
fn list_by_versions(
    meta: &Meta,
    req: &ListRequest,
    position: &Option<Position>,
    bound: LocalVersion,
) -> Result<ListPage> {
    let delimiter = req.delimiter.as_deref().filter(|d| !d.is_empty());
    let page_size = req.page_size();
    let mut floor = vec![table::VERSION];
    floor.extend_from_slice(req.prefix.as_bytes());
    let end = prefix_successor(&floor).unwrap_or_else(|| vec![table::VERSION + 1]);
    let start = match position {
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

/// [`list_at`] by the walk of the version table alone, whatever the seqlock says (tests: the
/// fallback must give the same pages).
#[cfg(test)]
pub(crate) fn list_at_by_version_table(
    meta: &Meta,
    req: &ListRequest,
    at: SystemTime,
) -> Result<ListPage> {
    let position = match &req.continuation {
        Some(token) => Some(decode_token(TOKEN_TAG, token)?),
        None => req.start_after.clone().map(Position::Key),
    };
    match bound(at) {
        Some(bound) => list_by_versions(meta, req, &position, bound),
        None => Ok(ListPage::default()),
    }
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

    /// How a test lists as of a moment.
    #[derive(Clone, Copy, Debug)]
    enum By {
        /// `list_at` (the `c` and `d` tables when a commit did not race it).
        Store,
        /// The walk of the version table alone (what `list_at` falls back to).
        VersionTable,
        /// The reference: `list_at_by_versions`, the trait's walk over every version.
        Reference,
    }

    /// Every page of a listing as of `at` (each object as key and version).
    async fn walk(
        s: &LocalStore,
        req: &ListRequest,
        at: std::time::SystemTime,
        by: By,
    ) -> Vec<Page> {
        let mut req = req.clone();
        let mut pages = Vec::new();
        loop {
            let page: ListPage = match by {
                By::Store => s.list_at(&req, at).await,
                By::VersionTable => super::list_at_by_version_table(&s.inner.meta, &req, at),
                By::Reference => crate::history::as_of::list_at_by_versions(s, &req, at).await,
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
        // Newest versions removed for good (gc, retention): a marker (the key is live again
        // as of now), a live version (the one before it current again), a whole key.
        for key in ["p/c", "p/d/g", "p/h"] {
            let (v, _) = store.inner.meta.newest(key).unwrap().unwrap();
            store.delete_version(key, v.id()).await.unwrap();
            moments.push(std::time::SystemTime::now());
        }
        while let Some((v, _)) = store.inner.meta.newest("p/a").unwrap() {
            store.delete_version("p/a", v.id()).await.unwrap();
        }
        moments.push(std::time::SystemTime::now());
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
                            let want = walk(&store, &req, at, By::Reference).await;
                            let flat = |p: &[Page]| {
                                let o: Vec<_> = p.iter().flat_map(|x| x.0.clone()).collect();
                                let c: Vec<_> = p.iter().flat_map(|x| x.1.clone()).collect();
                                (o, c)
                            };
                            for by in [By::Store, By::VersionTable] {
                                let got = walk(&store, &req, at, by).await;
                                assert_eq!(flat(&got), flat(&want), "{by:?} {req:?} at {at:?}");
                                assert_eq!(got.len(), want.len(), "pages of {req:?} at {at:?}");
                            }
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
