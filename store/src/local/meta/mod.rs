//! The local store's metadata: typed operations over sled, fronted by a write-ahead log.
//!
//! Every mutation runs under one commit lock and ends in a single log record
//! ([`log`]) whose rows (version, current pointer, blob reference counts, last version id) go
//! to the in-memory tables ([`memtable`]) at once and to sled at the next checkpoint; reads see
//! the tables first, then sled. After a crash a record is replayed whole or not at all. The
//! lock also makes version ids follow commit order, so "newest id" means "last committed".

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::error::{Result, StoreError};
use crate::key::prefix_successor;
use crate::local::records::*;
use crate::local::version::LocalVersion;
use crate::local::volume::{now_nanos, BlobLocation};
use crate::types::*;

mod batch;
pub(crate) mod blob_pages;
mod db;
mod deleted;
mod ended;
mod filter;
pub mod log;
mod memtable;
mod open;
pub(crate) mod pinned;
pub mod rollup;
pub mod rollup_scan;
mod scan;
#[cfg(test)]
mod sled_batch_tests;
#[cfg(test)]
mod sled_finger_tests;
#[cfg(test)]
mod tests;
mod times;
mod uploads;
mod volumes;

use batch::Prefetched;
use blob_pages::{page_key, page_of, BlobPage, PageEdits};
pub(crate) use db::{db_error, DbResult};
#[cfg(test)]
pub(crate) use ended::{ended_rows, VersionLink};
pub use memtable::Merged as Rows;
use memtable::Tables;
pub(crate) use memtable::MAX_ACTIVE_ROWS;
pub(crate) use volumes::RepackGroup;

/// Mutable state guarded by the commit lock.
struct CommitState {
    stats: StatsRecord,
    /// The counters as last written (they are written only when they changed).
    saved_stats: StatsRecord,
    last_version: u128,
    /// Nanosecond time up to which version ids are covered by the persisted lease.
    lease_nanos: u64,
}

/// How far ahead of the newest version id the persisted lease reaches.
const LEASE_NANOS: u64 = 1_000_000_000;

/// A blob row as gc and scrub see it: (location, reference count, freed_at).
pub type BlobRow = (BlobLocation, u64, u64);

/// Typed metadata over sled.
pub struct Meta {
    pub(crate) db: sled::Db,
    tables: Tables,
    commit: Mutex<CommitState>,
    ids: Mutex<IdLease>,
    /// What the log held at open beyond its last sync, until [`Meta::finish_recovery`].
    pending: Mutex<Option<log::Recovered>>,
    /// Blob pages at or above this one held no blob id handed out before this open (see
    /// [`Meta::page_is_new`]).
    page_floor: u64,
    /// One past the highest blob page written since open (0 = none).
    page_hwm: AtomicU64,
    /// Odd while a commit that changes the `d` table is going into the tables, bumped twice
    /// by each such commit: a seqlock for listings that read `c` and `d` side by side
    /// ([`Meta::deleted_epoch`]).
    deleted_epoch: AtomicU64,
    /// Volume id -> its lineage (the `L` table, read through; [`Meta::lineage_of`]).
    lineages: Mutex<HashMap<u64, u64>>,
    /// While a repack is between its scan and its commit: the blobs whose references changed
    /// since it began ([`Meta::watch_refs`]); `watching` says whether to look.
    ref_watch: Mutex<Option<std::collections::HashSet<u64>>>,
    watching: std::sync::atomic::AtomicBool,
}

/// What recovery did at open.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Replay {
    /// Log records applied (changes a crash had not yet checkpointed into sled).
    pub replayed: usize,
    /// Records dropped because data they point at did not survive (only after a power loss).
    pub dropped: usize,
}

/// Ids for blobs, volumes and uploads: handed out from memory below a lease that is persisted
/// *and flushed* before any id above the old lease is used, so no id is ever handed out twice,
/// whatever crashes. (sled's own `generate_id` can repeat ids after a crash early in a
/// store's life.)
struct IdLease {
    next: u64,
    lease: u64,
}

/// Ids reserved by one lease move.
const ID_LEASE: u64 = 1 << 20;

/// One mutation being built: rows to write plus reference-count changes.
struct Txn {
    ops: Vec<log::Op>,
    new_blobs: HashMap<u64, BlobRecord>,
    deltas: HashMap<u64, i64>,
    /// What the change does to the per-prefix rollups ([`rollup`]), made rows at commit.
    events: Vec<rollup::Event>,
    /// Whether it writes a row of the `d` table (a key's newest version became or stopped
    /// being a delete marker).
    flips: bool,
}

impl Txn {
    fn new() -> Self {
        Txn {
            ops: Vec::new(),
            new_blobs: HashMap::new(),
            deltas: HashMap::new(),
            events: Vec::new(),
            flips: false,
        }
    }

    fn insert(&mut self, key: impl AsRef<[u8]>, value: Vec<u8>) {
        self.ops.push((
            sled::IVec::from(key.as_ref()),
            Some(sled::IVec::from(value)),
        ));
    }

    fn remove(&mut self, key: impl AsRef<[u8]>) {
        self.ops.push((sled::IVec::from(key.as_ref()), None));
    }

    fn add_refs(&mut self, extents: &[Extent], delta: i64) {
        // Holes reference no blob.
        for blob in extents.iter().filter_map(Extent::blob_id) {
            *self.deltas.entry(blob).or_insert(0) += delta;
        }
    }
}

/// Whether `cond` holds for a key whose current row is `cur`.
fn check_condition(key: &str, cond: &Condition, cur: Option<&CurrentRecord>) -> Result<()> {
    match (cond, cur) {
        (Condition::None, _) | (Condition::IfNotExists, None) => Ok(()),
        (Condition::IfNotExists, Some(_)) => Err(StoreError::PreconditionFailed {
            key: key.into(),
            reason: "the key exists".into(),
        }),
        (Condition::IfVersion(v), Some(c))
            if LocalVersion::parse(v) == Some(LocalVersion(c.version)) =>
        {
            Ok(())
        }
        (Condition::IfVersion(v), Some(c)) => Err(StoreError::PreconditionFailed {
            key: key.into(),
            reason: format!("current version is {}, not {v}", LocalVersion(c.version)),
        }),
        (Condition::IfVersion(v), None) => Err(StoreError::PreconditionFailed {
            key: key.into(),
            reason: format!("the key has no live version (expected {v})"),
        }),
    }
}

fn sub(a: u64, b: u64) -> u64 {
    a.saturating_sub(b)
}

fn lock_map_set(
    m: &Mutex<Option<std::collections::HashSet<u64>>>,
) -> MutexGuard<'_, Option<std::collections::HashSet<u64>>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn lock_map<K, V>(m: &Mutex<HashMap<K, V>>) -> MutexGuard<'_, HashMap<K, V>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Meta {
    fn lock(&self) -> MutexGuard<'_, CommitState> {
        self.commit.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new id, never handed out before in this store.
    pub fn next_id(&self) -> Result<u64> {
        let mut ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        if ids.next >= ids.lease {
            let lease = ids.next + ID_LEASE;
            self.db
                .insert(misc_key(misc::ID_LEASE), encode(&lease)?)
                .db()?;
            self.db.flush().db()?;
            ids.lease = lease;
        }
        let id = ids.next;
        ids.next += 1;
        Ok(id)
    }

    /// Makes everything committed so far durable (the log's fdatasync; the caller synced the
    /// volumes first).
    pub fn flush(&self) -> Result<()> {
        self.tables.sync()
    }

    /// Commits rows that carry no fresh data (no reference counts, no version).
    fn write_rows(&self, mut txn: Txn) -> Result<()> {
        self.rollup_rows(&mut txn, &mut PageEdits::default())?;
        self.tables.commit(log::Batch {
            seq: 0,
            ops: txn.ops,
            fresh_blobs: Vec::new(),
        })
    }

    pub fn stats(&self) -> StatsRecord {
        self.lock().stats
    }

    /// An id at or above every version id made so far (the last one made, or after an open
    /// the version-id lease). Read under the commit lock, so every version below it is in the
    /// tables.
    pub fn version_ceiling(&self) -> LocalVersion {
        LocalVersion(self.lock().last_version)
    }

    fn get<T: Migrate>(&self, key: &[u8]) -> Result<Option<T>> {
        match self.tables.get(key)? {
            Some(v) => Ok(Some(decode(&v)?)),
            None => Ok(None),
        }
    }

    pub fn current(&self, key: &str) -> Result<Option<CurrentRecord>> {
        self.get(&current_key(key))
    }

    pub fn version(&self, key: &str, v: LocalVersion) -> Result<Option<VersionRecord>> {
        self.get(&version_key(key, v))
    }

    pub fn blob(&self, id: u64) -> Result<BlobRecord> {
        self.blob_in(&Prefetched::new(), id)
    }

    /// [`Meta::blob`], from rows read ahead when they hold it.
    fn blob_in(&self, pre: &Prefetched, id: u64) -> Result<BlobRecord> {
        let page = self.row::<BlobPage>(pre, &page_key(page_of(id).0))?;
        page.unwrap_or_default().referenced(id).copied()
    }

    /// The newest version row of `key` (delete markers included).
    pub fn newest(&self, key: &str) -> Result<Option<(LocalVersion, VersionRecord)>> {
        self.nth_newest(key, 0)
    }

    fn nth_newest(&self, key: &str, n: usize) -> Result<Option<(LocalVersion, VersionRecord)>> {
        match self.scan_prefix(version_prefix(key)).nth(n) {
            Some(row) => {
                let (k, v) = row?;
                let (_, vid) = parse_version_key(&k)?;
                Ok(Some((vid, decode(&v)?)))
            }
            None => Ok(None),
        }
    }

    /// The version a read asks for: the current live one, or a given one with data (an id
    /// this store cannot have made is `NoSuchVersion`).
    pub fn resolve(
        &self,
        key: &str,
        version: Option<VersionId>,
    ) -> Result<(LocalVersion, VersionRecord)> {
        match version {
            None => {
                // The current pointer and its version row are written in one batch; a
                // concurrent delete_version may remove both between our two reads, so retry.
                for _ in 0..8 {
                    let Some(cur) = self.current(key)? else {
                        return Err(StoreError::NotFound { key: key.into() });
                    };
                    let vid = LocalVersion(cur.version);
                    if let Some(rec) = self.version(key, vid)? {
                        return Ok((vid, rec));
                    }
                }
                Err(StoreError::NotFound { key: key.into() })
            }
            Some(id) => {
                let v = LocalVersion::of(key, &id)?;
                match self.version(key, v)? {
                    Some(rec) if !rec.delete_marker => Ok((v, rec)),
                    _ => Err(StoreError::NoSuchVersion {
                        key: key.into(),
                        version: id,
                    }),
                }
            }
        }
    }

    /// The current row of `key`, after checking `cond` against it: one read serves both the
    /// condition and the counters of the version installed next.
    fn checked_current(&self, key: &str, cond: &Condition) -> Result<Option<CurrentRecord>> {
        let cur = self.current(key)?;
        check_condition(key, cond, cur.as_ref())?;
        Ok(cur)
    }

    /// The next version id: the clock, or one more than the last id when the clock has not
    /// moved (or went back). Ids must also grow across restarts, so a lease on id time is
    /// persisted, as a single insert that precedes (in sled's log) every batch using an id it
    /// covers; at open, ids restart above the lease. The lease moves once a second.
    fn next_version(&self, state: &mut CommitState, txn: &mut Txn) -> Result<LocalVersion> {
        let now = (now_nanos() as u128) << 64;
        let id = now.max(state.last_version + 1);
        let id_nanos = (id >> 64) as u64;
        if id_nanos >= state.lease_nanos {
            // In the same record as the first version it covers (a failed commit resets it).
            let lease = id_nanos.saturating_add(LEASE_NANOS);
            txn.insert(misc_key(misc::VERSION_HWM), encode(&lease)?);
            state.lease_nanos = lease;
        }
        state.last_version = id;
        Ok(LocalVersion(id))
    }

    /// Persists the counters (by the flusher and at close; recounted after a crash).
    pub fn save_stats(&self) -> Result<()> {
        let mut state = self.lock();
        if state.stats == state.saved_stats {
            return Ok(());
        }
        let mut txn = Txn::new();
        txn.insert(misc_key(misc::STATS), encode(&state.stats)?);
        self.write_rows(txn)?;
        state.saved_stats = state.stats;
        Ok(())
    }

    /// Recounts the counters from the tables (after an unclean shutdown, when the saved ones
    /// may be behind).
    pub fn recount_stats(&self) -> Result<StatsRecord> {
        let mut st = StatsRecord::default();
        for row in self.scan_prefix([table::CURRENT]) {
            let (_, v) = row?;
            let cur: CurrentRecord = decode(&v)?;
            st.objects += 1;
            st.live_bytes += cur.size;
        }
        for row in self.scan_prefix([table::VERSION]) {
            let (_, v) = row?;
            let rec: VersionRecord = decode(&v)?;
            st.versions += 1;
            if rec.delete_marker {
                st.delete_markers += 1;
            }
        }
        self.lock().stats = st;
        self.save_stats()?;
        Ok(st)
    }

    /// Adds a version row and moves the current pointer, the deleted-key row and the counters
    /// accordingly; `prev` is the key's current row before this version and `deleted` whether
    /// it has a `d` row (both read by the caller, under the lock; see [`Meta::is_deleted`]).
    fn install_version(
        st: &mut StatsRecord,
        txn: &mut Txn,
        key: &str,
        vid: LocalVersion,
        rec: &VersionRecord,
        prev: Option<&CurrentRecord>,
        deleted: bool,
    ) -> Result<()> {
        if let Some(prev) = prev {
            Self::end_version(txn, key, vid, LocalVersion(prev.version));
            st.objects = sub(st.objects, 1);
            st.live_bytes = sub(st.live_bytes, prev.size);
            txn.live(key, prev.size, LocalVersion(prev.version), -1, false);
            txn.events.push(rollup::Event::Noncurrent {
                key: key.into(),
                size: prev.size,
                sign: 1,
            });
        }
        txn.insert(version_key(key, vid), encode(rec)?);
        st.versions += 1;
        if rec.delete_marker {
            st.delete_markers += 1;
            txn.events.push(rollup::Event::Marker {
                key: key.into(),
                sign: 1,
            });
            txn.remove(current_key(key));
            txn.insert(deleted_key(key), encode(&DeletedRecord { marker: vid.0 })?);
            txn.flips = true;
        } else {
            if deleted {
                txn.remove(deleted_key(key));
                txn.flips = true;
            }
            st.objects += 1;
            st.live_bytes += rec.size;
            txn.live(key, rec.size, vid, 1, true);
            let cur = CurrentRecord {
                version: vid.0,
                size: rec.size,
                etag: rec.etag.clone(),
                metadata: rec.metadata.clone(),
            };
            txn.insert(current_key(key), encode(&cur)?);
        }
        if !rec.delete_marker {
            txn.stored(key, &rec.extents, 1);
        }
        Ok(())
    }

    /// Applies the reference-count changes, the counters and the batch, atomically.
    fn apply(&self, state: &mut CommitState, stats: StatsRecord, mut txn: Txn) -> Result<()> {
        // The rollup reads the pages of blobs referenced again (a rename's, a copy's) for
        // their lineage; the reference counts below find them read.
        let mut pages = PageEdits::default();
        self.rollup_rows(&mut txn, &mut pages)?;
        let now = now_nanos();
        let fresh_blobs: Vec<u64> = txn.new_blobs.keys().copied().collect();
        let deltas = std::mem::take(&mut txn.deltas);
        let new_blobs = std::mem::take(&mut txn.new_blobs);
        if self.watching.load(Ordering::SeqCst) {
            if let Some(w) = lock_map_set(&self.ref_watch).as_mut() {
                w.extend(deltas.keys().copied());
            }
        }
        // The pages to change: a page no blob was ever put in is known empty without a read
        // (a read of sled that finds nothing, on the commit's thread, for the first blob of
        // every page); the others are read in one scan when there are several (a batch of
        // copies).
        let mut touched: Vec<u64> = deltas
            .keys()
            .chain(new_blobs.keys())
            .map(|&id| page_of(id).0)
            .filter(|&p| !pages.holds(p))
            .collect();
        touched.sort_unstable();
        touched.dedup();
        let (fresh, read): (Vec<u64>, Vec<u64>) =
            touched.into_iter().partition(|&p| self.page_is_new(p));
        let mut pre = if read.len() > 1 {
            self.prefetch(read.iter().map(|&p| page_key(p).to_vec()).collect())?
        } else {
            Prefetched::new()
        };
        for p in fresh {
            pre.insert(page_key(p).to_vec(), None);
        }
        for (&id, rec) in &new_blobs {
            let (page, slot) = page_of(id);
            pages.page(self, &pre, page)?.set(slot, *rec);
        }
        for (id, delta) in deltas {
            let (page, slot) = page_of(id);
            let p = pages.page(self, &pre, page)?;
            let mut rec = *p.referenced(id)?;
            rec.refs = if delta >= 0 {
                rec.refs + delta as u64
            } else {
                sub(rec.refs, delta.unsigned_abs())
            };
            if rec.refs == 0 && rec.freed_at == 0 {
                rec.freed_at = now;
            }
            p.set(slot, rec);
        }
        pages.write(self, &mut txn)?;
        let flips = txn.flips;
        if flips {
            self.deleted_epoch.fetch_add(1, Ordering::SeqCst);
        }
        let logged = self.tables.commit(log::Batch {
            seq: 0,
            ops: txn.ops,
            fresh_blobs,
        });
        if flips {
            self.deleted_epoch.fetch_add(1, Ordering::SeqCst);
        }
        if logged.is_err() {
            // A version-id lease in the lost record must be written again by the next commit.
            state.lease_nanos = 0;
        }
        logged?;
        state.stats = stats;
        Ok(())
    }

    /// Commits a new version made of freshly written blobs.
    pub fn commit_put(
        &self,
        key: &str,
        blobs: Vec<(u64, BlobRecord)>,
        rec: &VersionRecord,
        cond: Condition,
    ) -> Result<LocalVersion> {
        let mut state = self.lock();
        let cur = self.checked_current(key, &cond)?;
        let deleted = self.is_deleted(key, cur.as_ref())?;
        let mut txn = Txn::new();
        txn.new_blobs.extend(blobs);
        let mut st = state.stats;
        let vid = self.next_version(&mut state, &mut txn)?;
        Self::install_version(&mut st, &mut txn, key, vid, rec, cur.as_ref(), deleted)?;
        self.apply(&mut state, st, txn)?;
        Ok(vid)
    }

    /// Renames atomically: a new version of `dst` sharing the extents of `src`'s current
    /// version, and a delete marker on `src`, in one batch.
    pub fn commit_rename(
        &self,
        src: &str,
        dst: &str,
        opts: &RenameOptions,
    ) -> Result<(LocalVersion, VersionRecord)> {
        if src == dst {
            return Err(StoreError::InvalidArgument(format!(
                "cannot rename {src:?} onto itself"
            )));
        }
        let mut state = self.lock();
        // One read of the source's current row serves its version and its counters (under
        // the commit lock, no other commit moves it between the reads).
        let src_cur = self.current(src)?;
        let not_found = || StoreError::NotFound { key: src.into() };
        let sv = LocalVersion(src_cur.as_ref().ok_or_else(not_found)?.version);
        let srec = self.version(src, sv)?.ok_or_else(not_found)?;
        if let Some(v) = &opts.source_version {
            if LocalVersion::parse(v) != Some(sv) {
                return Err(StoreError::PreconditionFailed {
                    key: src.into(),
                    reason: format!("current version is {sv}, not {v}"),
                });
            }
        }
        let dst_cur = self.checked_current(dst, &opts.condition)?;
        let rec = VersionRecord {
            delete_marker: false,
            ..srec
        };
        let marker = VersionRecord {
            delete_marker: true,
            size: 0,
            etag: String::new(),
            metadata: Metadata::new(),
            extents: Vec::new(),
        };
        let mut txn = Txn::new();
        txn.add_refs(&rec.extents, 1);
        let mut st = state.stats;
        let vid = self.next_version(&mut state, &mut txn)?;
        let deleted = self.is_deleted(dst, dst_cur.as_ref())?;
        Self::install_version(&mut st, &mut txn, dst, vid, &rec, dst_cur.as_ref(), deleted)?;
        let mid = self.next_version(&mut state, &mut txn)?;
        Self::install_version(
            &mut st,
            &mut txn,
            src,
            mid,
            &marker,
            src_cur.as_ref(),
            false,
        )?;
        self.apply(&mut state, st, txn)?;
        Ok((vid, rec))
    }

    /// Removes one version for good; the next newest becomes current.
    pub fn commit_delete_version(&self, key: &str, id: VersionId) -> Result<()> {
        let mut state = self.lock();
        let v = LocalVersion::of(key, &id)?;
        let no_such = || StoreError::NoSuchVersion {
            key: key.into(),
            version: id.clone(),
        };
        let rec = self.version(key, v)?.ok_or_else(no_such)?;
        let newest = self.newest(key)?.map(|(id, _)| id);
        let cur = self.current(key)?;
        let mut txn = Txn::new();
        let mut st = state.stats;
        txn.remove(version_key(key, v));
        self.unlink_ended(&mut txn, key, v, rec.delete_marker)?;
        txn.add_refs(&rec.extents, -1);
        if !rec.delete_marker {
            txn.stored(key, &rec.extents, -1);
        }
        st.versions = sub(st.versions, 1);
        if rec.delete_marker {
            st.delete_markers = sub(st.delete_markers, 1);
            txn.events.push(rollup::Event::Marker {
                key: key.into(),
                sign: -1,
            });
        } else if cur.as_ref().map(|c| c.version) == Some(v.0) {
            txn.live(key, rec.size, v, -1, false);
        } else {
            txn.events.push(rollup::Event::Noncurrent {
                key: key.into(),
                size: rec.size,
                sign: -1,
            });
        }
        if newest == Some(v) {
            if let Some(prev) = &cur {
                st.objects = sub(st.objects, 1);
                st.live_bytes = sub(st.live_bytes, prev.size);
            }
            match self.nth_newest(key, 1)? {
                Some((nv, nrec)) if !nrec.delete_marker => {
                    st.objects += 1;
                    st.live_bytes += nrec.size;
                    txn.events.push(rollup::Event::Noncurrent {
                        key: key.into(),
                        size: nrec.size,
                        sign: -1,
                    });
                    txn.live(key, nrec.size, nv, 1, false);
                    let cur = CurrentRecord {
                        version: nv.0,
                        size: nrec.size,
                        etag: nrec.etag,
                        metadata: nrec.metadata,
                    };
                    txn.insert(current_key(key), encode(&cur)?);
                    if rec.delete_marker {
                        txn.remove(deleted_key(key));
                        txn.flips = true;
                    }
                }
                Some((nv, _)) => {
                    // The next newest is a delete marker: the key is deleted as of it.
                    txn.remove(current_key(key));
                    txn.insert(deleted_key(key), encode(&DeletedRecord { marker: nv.0 })?);
                    txn.flips = true;
                }
                None => {
                    // The key's last version: it has no row in either table any more.
                    txn.remove(current_key(key));
                    if rec.delete_marker {
                        txn.remove(deleted_key(key));
                        txn.flips = true;
                    }
                }
            }
        }
        self.apply(&mut state, st, txn)
    }

    /// A worker's checkpoint.
    pub fn checkpoint<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        match self.tables.get(&misc_key(&format!("ckpt:{name}")))? {
            Some(v) => Ok(Some(decode_initial(&v)?)),
            None => Ok(None),
        }
    }

    pub fn save_checkpoint<T: serde::Serialize>(&self, name: &str, value: &T) -> Result<()> {
        let mut txn = Txn::new();
        txn.insert(
            misc_key(&format!("ckpt:{name}")),
            encode_as(INITIAL_FORMAT, value)?,
        );
        self.write_rows(txn)
    }

    /// Rows whose keys start with `start` and are below `end` (merged over the log's tables
    /// and sled).
    pub fn range(&self, start: Vec<u8>, end: Option<Vec<u8>>) -> Rows {
        self.tables.range(start, end)
    }

    /// The first row in `start..end` ([`memtable::Tables::first_in`]): one seek, for a
    /// caller that wants no more than that row.
    pub fn first_in(&self, start: &[u8], end: &[u8]) -> Result<Option<(sled::IVec, sled::IVec)>> {
        self.tables
            .first_in(start, end, &mut sled::Finger::default())
    }

    /// [`Meta::first_in`] for a caller that seeks forward many times (a listing's seek per
    /// key): `finger` keeps where the last seek went down sled's tree, so that the next one
    /// can start there ([`sled::Tree::first_in_with`]).
    pub fn first_in_with(
        &self,
        finger: &mut sled::Finger,
        start: &[u8],
        end: &[u8],
    ) -> Result<Option<(sled::IVec, sled::IVec)>> {
        self.tables.first_in(start, end, finger)
    }

    /// Rows whose keys start with `prefix`.
    fn scan_prefix(&self, prefix: impl AsRef<[u8]>) -> Rows {
        let p = prefix.as_ref().to_vec();
        let end = prefix_successor(&p);
        self.tables.range(p, end)
    }

    /// The first key (of any table) after every key starting with `prefix`.
    pub fn after_prefix(prefix: &[u8]) -> Option<Vec<u8>> {
        prefix_successor(prefix)
    }
}
