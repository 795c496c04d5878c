//! The rows committed since the last checkpoint, in memory, in front of sled.
//!
//! A commit appends its record to the log ([`super::log`]) and puts its rows in the active
//! table, both under one write lock, so the log's order is the tables' order. Reads look in the
//! active table, then the frozen ones (newest first), then sled; a range scan merges a snapshot
//! of the tables' rows in the range with a sled iterator.
//!
//! A checkpoint freezes the active table and starts a new log segment at the same instant,
//! waits for a group sync that covers the frozen rows (volumes, then the log: data before
//! metadata), applies them to sled in large batches, flushes sled, records the last segment
//! it covered, and removes those segments. sled therefore only ever holds rows whose record and
//! data were fsynced, and a replay after a crash starts from sled's last flush.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Condvar, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use sled::IVec;

use super::db::{db_error, DbResult};
use super::filter::{self, KeyFilter};
use super::log::{self, Batch, FsLogDir, LogWriter};
pub use super::pinned::Pinned;
pub use super::scan::Merged;
use crate::error::{Result, StoreError};
use crate::local::records::{encode, misc, misc_key, table};

/// Rows by key: a put (`Some`) or a remove (`None`) that hides sled's row.
pub(super) type Rows = BTreeMap<IVec, Option<IVec>>;

/// A table no longer written, waiting for its checkpoint.
struct Frozen {
    rows: Rows,
    /// The last log record whose rows it holds.
    last_seq: u64,
}

pub(super) struct Mem {
    active: Rows,
    frozen: Vec<Arc<Frozen>>,
    /// None until recovery has finished (no commit may be logged before).
    log: Option<LogWriter<FsLogDir>>,
    /// Segments that hold records not yet checkpointed into sled.
    segments: Vec<u64>,
    /// Every record up to this one is fsynced.
    synced_through: u64,
}

impl Mem {
    /// Tables holding `rows` in the active table only, with no log (tests of scans).
    #[cfg(test)]
    pub(super) fn with_rows(rows: Rows) -> Mem {
        Mem {
            active: rows,
            frozen: Vec::new(),
            log: None,
            segments: Vec::new(),
            synced_through: 0,
        }
    }

    /// Whether any table holds a row (or a removal) in `start..end`.
    fn has_rows_in(&self, start: &[u8], end: &[u8]) -> bool {
        start < end
            && self
                .frozen
                .iter()
                .map(|f| &f.rows)
                .chain([&self.active])
                .any(|t| {
                    t.range::<[u8], _>((Bound::Included(start), Bound::Excluded(end)))
                        .next()
                        .is_some()
                })
    }

    /// The first `limit` keys from `start` (before `end`) that any table holds, each with its
    /// newest row, and the last of them when there may be more (`None`: this is all of them).
    ///
    /// Each table gives at most `limit` rows, so every row of every table up to the `limit`-th
    /// key of their union is among them: the window is complete up to its last key.
    pub(super) fn window(
        &self,
        start: Bound<&[u8]>,
        end: &Option<Vec<u8>>,
        limit: usize,
    ) -> (Vec<(IVec, Option<IVec>)>, Option<IVec>) {
        let upper = match end {
            Some(e) => Bound::Excluded(&e[..]),
            None => Bound::Unbounded,
        };
        // (BTreeMap::range panics on an inverted or empty-exclusive range; sled's yields nothing.)
        let empty = match (start, end) {
            (Bound::Included(s), Some(e)) => e[..] <= *s,
            (Bound::Excluded(s), Some(e)) => e[..] <= *s,
            _ => false,
        };
        let mut union = Rows::new();
        if !empty {
            // Oldest first, so a newer table's row replaces an older one's.
            for t in self.frozen.iter().map(|f| &f.rows).chain([&self.active]) {
                for (k, v) in t.range::<[u8], _>((start, upper)).take(limit) {
                    union.insert(k.clone(), v.clone());
                }
            }
        }
        let more = union.len() >= limit;
        let rows: Vec<_> = union.into_iter().take(limit).collect();
        let hi = if more {
            rows.last().map(|(k, _)| k.clone())
        } else {
            None
        };
        (rows, hi)
    }
}

/// The log, the in-memory tables and sled, read and written as one database.
pub(crate) struct Tables {
    db: sled::Db,
    dir: Arc<FsLogDir>,
    mem: Arc<RwLock<Mem>>,
    /// One checkpoint at a time (the flusher's and the one at close).
    checkpointing: Mutex<()>,
    /// Commits wait here while the active table is full (a checkpoint empties it).
    room: Condvar,
    room_lock: Mutex<()>,
    /// Which keys sled's `c`, `d` and `t` tables may hold (see [`super::filter`]).
    filter: RwLock<Arc<KeyFilter>>,
}

/// Rows the active table may hold before commits wait for a checkpoint (the flusher starts
/// one at a quarter of this): memory stays bounded when sled cannot keep up.
pub(crate) const MAX_ACTIVE_ROWS: usize = 400_000;

/// The most current keys the filter is built from at open (more wait for the first checkpoint).
#[cfg(not(test))]
pub(crate) const FILTER_AT_OPEN: usize = 100_000;
#[cfg(test)]
pub(crate) const FILTER_AT_OPEN: usize = 16;

/// Whether the key filter covers a row key: the `c`, `d` and `t` tables' (a key's current
/// row, the row of a key whose newest version is a delete marker, and the times recorded
/// beside a key, which most keys never have but a rename, unlink or overwrite reads).
fn filtered(key: &[u8]) -> bool {
    matches!(
        key.first(),
        Some(&table::CURRENT) | Some(&table::DELETED) | Some(&table::KEY_TIMES)
    )
}

/// Unwanted rows [`Tables::get_sorted`] steps over before it reads by `get` instead (a step
/// reads a row of the leaf sled's iterator holds; a get descends the tree).
const SORTED_GET_STEPS: usize = 8;

/// Rows a checkpoint applies to sled per batch.
const APPLY_CHUNK: usize = 16_384;

impl Tables {
    pub fn new(db: sled::Db, dir: FsLogDir) -> Tables {
        Tables {
            db,
            dir: Arc::new(dir),
            mem: Arc::new(RwLock::new(Mem {
                active: Rows::new(),
                frozen: Vec::new(),
                log: None,
                segments: Vec::new(),
                synced_through: 0,
            })),
            checkpointing: Mutex::new(()),
            room: Condvar::new(),
            room_lock: Mutex::new(()),
            filter: RwLock::new(Arc::new(KeyFilter::unbuilt())),
        }
    }

    fn filter(&self) -> Arc<KeyFilter> {
        self.filter
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Builds the filter of sled's `c`, `d` and `t` keys from a scan, unless there are more than
    /// `limit` (then it answers "maybe" for every key until the first checkpoint builds it, on
    /// the flusher's thread). Only while nothing else writes into sled: at the end of
    /// recovery, after a migration at open, or inside a checkpoint.
    pub fn build_filter(&self, limit: usize) -> Result<()> {
        let mut hashes = Vec::new();
        let rows = self
            .db
            .scan_prefix([table::CURRENT])
            .chain(self.db.scan_prefix([table::DELETED]))
            .chain(self.db.scan_prefix([table::KEY_TIMES]));
        for row in rows {
            let (k, _) = row.db()?;
            if hashes.len() == limit {
                *self.filter.write().unwrap_or_else(|p| p.into_inner()) =
                    Arc::new(KeyFilter::unbuilt());
                return Ok(());
            }
            hashes.push(filter::hash(&k));
        }
        *self.filter.write().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(KeyFilter::build(&hashes));
        Ok(())
    }

    /// The filter as a clean shutdown saves it (`None` when it is not complete), for sled
    /// with `LOG_APPLIED` = `log_applied`. Only while nothing writes into sled.
    pub fn filter_bytes(&self, log_applied: u64) -> Option<Vec<u8>> {
        self.filter().to_bytes(log_applied)
    }

    /// Makes `f` (read back from a clean shutdown's file) the filter. Only at open, before
    /// any checkpoint.
    pub fn install_filter(&self, f: KeyFilter) {
        *self.filter.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(f);
    }

    fn read(&self) -> RwLockReadGuard<'_, Mem> {
        self.mem.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Mem> {
        self.mem.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The log's directory.
    pub fn log_dir(&self) -> &FsLogDir {
        &self.dir
    }

    /// Starts logging in a fresh segment `id` (after recovery emptied the log).
    pub fn start_log(&self, id: u64, next_seq: u64) -> Result<()> {
        let w = LogWriter::create(self.dir.clone(), id, next_seq)?;
        let mut m = self.write();
        m.segments = vec![id];
        m.synced_through = next_seq.saturating_sub(1);
        m.log = Some(w);
        Ok(())
    }

    /// The current row of `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<IVec>> {
        {
            let m = self.read();
            if let Some(v) = m.active.get(key) {
                return Ok(v.clone());
            }
            for f in m.frozen.iter().rev() {
                if let Some(v) = f.rows.get(key) {
                    return Ok(v.clone());
                }
            }
        }
        // A current (or deleted-key) row that is in no table and certainly not in sled.
        if filtered(key) && !self.filter().may_contain(key) {
            return Ok(None);
        }
        self.db.get(key).db()
    }

    /// The rows of `keys`, each as [`Tables::get`] gives it (the tables first, then sled),
    /// with the sled reads done by one forward scan in key order while the keys lie close
    /// together: the scan steps over at most [`SORTED_GET_STEPS`] unwanted rows between two
    /// wanted ones. Rows of neighbouring keys (a batch's versions, blobs written one after the
    /// other) then cost a step each instead of a descent of sled's tree each; at the first
    /// longer gap the keys are taken to be scattered and the rest are read by `get`.
    pub fn get_sorted(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<IVec>>> {
        let mut out: Vec<Option<IVec>> = vec![None; keys.len()];
        let mut order: Vec<usize> = Vec::with_capacity(keys.len());
        {
            let keys_filter = self.filter();
            let m = self.read();
            'key: for (i, k) in keys.iter().enumerate() {
                for t in [&m.active]
                    .into_iter()
                    .chain(m.frozen.iter().rev().map(|f| &f.rows))
                {
                    if let Some(v) = t.get(&k[..]) {
                        out[i] = v.clone();
                        continue 'key;
                    }
                }
                if filtered(k) && !keys_filter.may_contain(k) {
                    continue;
                }
                order.push(i);
            }
        }
        order.sort_by(|&a, &b| keys[a].cmp(&keys[b]));
        let sorted = order.len();
        order.dedup_by(|a, b| keys[*a] == keys[*b]);
        let duplicates = order.len() < sorted;
        let (Some(&first), Some(&last)) = (order.first(), order.last()) else {
            return Ok(out);
        };
        let mut scan = Some(self.db.range(keys[first].clone()..=keys[last].clone()));
        let mut ahead: Option<(IVec, IVec)> = None;
        for &i in &order {
            let key = &keys[i];
            let Some(rows) = scan.as_mut() else {
                out[i] = self.db.get(key).db()?;
                continue;
            };
            let mut stepped = 0;
            out[i] = loop {
                let row = match ahead.take() {
                    Some(row) => Some(row),
                    None => rows.next().transpose().db()?,
                };
                let Some((k, v)) = row else { break None };
                match k[..].cmp(&key[..]) {
                    std::cmp::Ordering::Less if stepped < SORTED_GET_STEPS => stepped += 1,
                    std::cmp::Ordering::Less => {
                        // Scattered keys: a get each from here on.
                        scan = None;
                        break self.db.get(key).db()?;
                    }
                    std::cmp::Ordering::Equal => break Some(v),
                    std::cmp::Ordering::Greater => {
                        ahead = Some((k, v));
                        break None;
                    }
                }
            };
        }
        Ok(if duplicates {
            copy_duplicates(keys, out)
        } else {
            out
        })
    }

    /// Rows from `start` (inclusive) to `end` (exclusive; `None`: to the end), removes hidden,
    /// merged with sled's (see [`Merged`]).
    /// The first row in `start..end`, as [`Tables::range`]'s first: by one descent of sled's
    /// tree, read in place, when no in-memory table holds a row there (the common case for
    /// old rows, which checkpoints moved into sled). A row that a checkpoint moves meanwhile
    /// is in sled before it leaves the tables, so it is not missed. `finger` lets a caller
    /// that seeks forward many times start each descent where the last one went
    /// ([`sled::Tree::first_in_with`]).
    pub fn first_in(
        &self,
        start: &[u8],
        end: &[u8],
        finger: &mut sled::Finger,
    ) -> Result<Option<(IVec, IVec)>> {
        if self.read().has_rows_in(start, end) {
            return self
                .range(start.to_vec(), Some(end.to_vec()))
                .next()
                .transpose();
        }
        self.db.first_in_with(finger, start, end).db()
    }

    /// The last row in `start..end`, as a reverse [`Tables::range`] would give it first: the
    /// tables' rows in the range (copied under their read lock) merged backwards with sled's.
    /// A row a checkpoint moves meanwhile is in sled before it leaves the tables (the copy
    /// is taken first), so it is not missed.
    pub fn last_in(&self, start: &[u8], end: &[u8]) -> Result<Option<(IVec, IVec)>> {
        if start >= end {
            return Ok(None);
        }
        let union: Rows = {
            let m = self.read();
            let mut union = Rows::new();
            // Oldest first, so a newer table's row replaces an older one's.
            for t in m.frozen.iter().map(|f| &f.rows).chain([&m.active]) {
                for (k, v) in t.range::<[u8], _>((Bound::Included(start), Bound::Excluded(end))) {
                    union.insert(k.clone(), v.clone());
                }
            }
            union
        };
        let mut mem = union.into_iter().rev().peekable();
        let mut sled = self.db.range(start..end).rev().peekable();
        loop {
            let take_mem = match (mem.peek(), sled.peek()) {
                (None, None) => return Ok(None),
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (_, Some(Err(_))) => false,
                (Some((mk, _)), Some(Ok((sk, _)))) => match mk[..].cmp(&sk[..]) {
                    std::cmp::Ordering::Less => false,
                    std::cmp::Ordering::Greater => true,
                    std::cmp::Ordering::Equal => {
                        // The table's row replaces (or hides) sled's.
                        sled.next();
                        true
                    }
                },
            };
            if take_mem {
                if let Some((k, Some(v))) = mem.next() {
                    return Ok(Some((k, v)));
                }
            } else if let Some(row) = sled.next() {
                return row.db().map(Some);
            }
        }
    }

    pub fn range(&self, start: Vec<u8>, end: Option<Vec<u8>>) -> Merged {
        Merged::new(self.mem.clone(), self.db.clone(), start, end)
    }

    /// The tables and sled as of the last commit, fixed until the view is dropped (see
    /// [`Pinned`]): checkpoints wait meanwhile.
    pub fn pin(&self) -> Pinned<'_> {
        let checkpoints = self.checkpointing.lock().unwrap_or_else(|p| p.into_inner());
        let (frozen, active) = {
            let m = self.read();
            (m.frozen.clone(), m.active.clone())
        };
        let mut rows = Rows::new();
        // Oldest first, so a newer table's row replaces an older one's.
        for f in &frozen {
            rows.extend(f.rows.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        rows.extend(active);
        Pinned {
            _checkpoints: checkpoints,
            rows,
            db: self.db.clone(),
        }
    }

    /// Logs `batch` and makes its rows visible. When this returns the change survives the
    /// death of the process; it survives power loss after the next [`Tables::sync`].
    pub fn commit(&self, mut batch: Batch) -> Result<()> {
        if batch.ops.is_empty() {
            return Ok(());
        }
        let mut m = self.write();
        while m.active.len() >= MAX_ACTIVE_ROWS {
            drop(m);
            let g = self.room_lock.lock().unwrap_or_else(|p| p.into_inner());
            let _ = self.room.wait_timeout(g, Duration::from_millis(50));
            m = self.write();
        }
        let log = m.log.as_mut().ok_or_else(|| {
            StoreError::Metadata("the metadata log is not open (store still recovering)".into())
        })?;
        log.append(&mut batch)?;
        for (k, v) in batch.ops {
            m.active.insert(k, v);
        }
        Ok(())
    }

    /// Whether anything was committed since the last checkpoint, and the rows in the active
    /// table (the flusher checkpoints early when it grows).
    pub fn backlog(&self) -> (bool, usize) {
        let m = self.read();
        (!m.active.is_empty() || !m.frozen.is_empty(), m.active.len())
    }

    /// fdatasyncs the log through its last record (and the directory when a segment was
    /// created), then records that it did. Runs without blocking commits.
    pub fn sync(&self) -> Result<()> {
        let handles = {
            let mut m = self.write();
            match m.log.as_mut() {
                Some(l) => l.sync_handles(),
                None => return Ok(()),
            }
        };
        if let Err(e) = handles.run(&*self.dir) {
            if let Some(l) = self.write().log.as_mut() {
                l.sync_failed(handles);
            }
            return Err(e);
        }
        let mut m = self.write();
        if handles.through > m.synced_through {
            m.synced_through = handles.through;
            if let Some(l) = m.log.as_mut() {
                // The mark only spares a replay the check of fsynced records; losing it is
                // harmless, so a failure to write it is only logged.
                if let Err(e) = l.append_synced(handles.through) {
                    tracing::warn!(error = %e, "could not mark the metadata log synced");
                }
            }
        }
        Ok(())
    }

    /// Checkpoints: freezes the rows committed so far and starts a new segment, runs `sync`
    /// (which must make the volumes and then the log durable), applies the frozen rows to
    /// sled, flushes sled and removes the segments it now covers. Returns whether there was
    /// anything to do.
    pub fn checkpoint(&self, sync: impl FnOnce() -> Result<()>) -> Result<bool> {
        let _one = self.checkpointing.lock().unwrap_or_else(|p| p.into_inner());
        let cut = {
            let mut m = self.write();
            if m.active.is_empty() && m.frozen.is_empty() {
                return Ok(false);
            }
            let log = m.log.as_mut().ok_or_else(|| {
                StoreError::Metadata("the metadata log is not open (store still recovering)".into())
            })?;
            let last_seq = log.last_seq();
            let cut = log.rotate()?;
            let rows = std::mem::take(&mut m.active);
            if !rows.is_empty() {
                m.frozen.push(Arc::new(Frozen { rows, last_seq }));
            }
            m.segments.push(cut);
            cut
        };
        self.room.notify_all();
        sync()?;
        let (frozen, synced) = {
            let m = self.read();
            (m.frozen.clone(), m.synced_through)
        };
        if frozen.iter().any(|f| f.last_seq > synced) {
            // `sync` did not cover the log: never let sled hold rows ahead of it.
            self.sync()?;
        }
        // The filter learns the current rows before sled holds them (readers that miss the
        // frozen tables once they are gone must find them there).
        let keys = self.filter();
        for f in &frozen {
            for (k, v) in &f.rows {
                if v.is_some() && filtered(k) {
                    keys.add_new(k);
                }
            }
        }
        // Every other table first and the current rows last, so the pages listings and
        // lookups read most are the ones sled's cache holds after the checkpoint.
        for f in &frozen {
            let current = |k: &IVec| k.first() == Some(&table::CURRENT);
            apply_rows(&self.db, f.rows.iter().filter(|(k, _)| !current(k)))?;
            apply_rows(&self.db, f.rows.iter().filter(|(k, _)| current(k)))?;
        }
        if keys.needs_build() {
            self.build_filter(usize::MAX)?;
        }
        self.db
            .insert(misc_key(misc::LOG_APPLIED), encode(&(cut - 1))?)
            .db()?;
        self.db.flush().db()?;
        let old = {
            let mut m = self.write();
            m.frozen
                .retain(|f| !frozen.iter().any(|g| Arc::ptr_eq(f, g)));
            let (old, keep): (Vec<u64>, Vec<u64>) = m.segments.iter().partition(|&&s| s < cut);
            m.segments = keep;
            old
        };
        log::remove_below(&*self.dir, old, cut);
        Ok(true)
    }
}

/// Gives keys that appear more than once in `keys` the row found for their first
/// occurrence ([`Tables::get_sorted`] reads each key once).
fn copy_duplicates(keys: &[Vec<u8>], mut out: Vec<Option<IVec>>) -> Vec<Option<IVec>> {
    let mut first: BTreeMap<&[u8], usize> = BTreeMap::new();
    for (i, k) in keys.iter().enumerate() {
        match first.get(&k[..]) {
            Some(&f) => out[i] = out[f].clone(),
            None => {
                first.insert(k, i);
            }
        }
    }
    out
}

/// Applies rows to sled in batches (a replay or a checkpoint: not atomic as a whole, which is
/// fine because the log that holds them stays until sled is flushed).
pub(crate) fn apply_rows<'a>(
    db: &sled::Db,
    rows: impl IntoIterator<Item = (&'a IVec, &'a Option<IVec>)>,
) -> Result<()> {
    let mut batch = sled::Batch::default();
    let mut n = 0;
    for (k, v) in rows {
        match v {
            Some(v) => batch.insert(k.clone(), v.clone()),
            None => batch.remove(k.clone()),
        }
        n += 1;
        if n == APPLY_CHUNK {
            db.apply_batch(std::mem::take(&mut batch))
                .map_err(db_error)?;
            n = 0;
        }
    }
    if n > 0 {
        db.apply_batch(batch).map_err(db_error)?;
    }
    Ok(())
}
