//! The table of deleted keys (`d`): one row per key whose newest version is a delete marker.
//!
//! The current table (`c`) lists live keys; a key deleted since has no row there, so before
//! this table a listing *as of a moment* had to walk the version table to find keys deleted
//! after that moment, paying a seek to the version at the moment and another past the key's
//! older versions for every key changed since. With `c` and `d` side by side, every key that
//! has a version has exactly one row in one of them, and the row says which version is its
//! newest: a listing as of T reads both in key order and seeks the version table only for a
//! key whose newest version is after T ([`crate::local::as_of`]).
//!
//! Rows are written by the commits that change which version of a key is newest (a new
//! version, a delete marker, the removal of a key's newest version by gc or retention), in
//! the same log record as the change. Stores of format 2 have no such table: it is built from
//! the version table at open ([`Meta::migrate_deleted_keys`]) before anything is committed.
//!
//! The key filter ([`super::filter`]) covers `d` keys as it covers `c` keys, so a commit of a
//! new key learns that the key has no `d` row without a read of sled.
//!
//! A listing that reads `c` and `d` with separate scans could miss a key that moves from one
//! to the other between the two reads; [`Meta::deleted_epoch`] tells it whether a commit that
//! moved one ran meanwhile (a seqlock: the commit bumps it to odd before its rows go into the
//! tables and to even after).

use std::sync::atomic::Ordering;

use super::batch::Prefetched;
use super::db::DbResult;
use super::Meta;
use crate::error::Result;
use crate::local::records::{
    after_versions, decode, deleted_key, encode, parse_version_key, table, CurrentRecord,
    DeletedRecord, VersionRecord,
};

/// Rows of one key read before the migration seeks past the rest of them.
const STEPS_BEFORE_SEEK: usize = 4;

impl Meta {
    /// Whether `key` has a `d` row, given its current row `cur` (a key with a current row has
    /// none). Costs no sled read for a key the filter has never seen.
    pub(super) fn is_deleted(&self, key: &str, cur: Option<&CurrentRecord>) -> Result<bool> {
        self.is_deleted_in(&Prefetched::new(), key, cur)
    }

    /// [`Meta::is_deleted`], from rows read ahead when they hold it.
    pub(super) fn is_deleted_in(
        &self,
        pre: &Prefetched,
        key: &str,
        cur: Option<&CurrentRecord>,
    ) -> Result<bool> {
        if cur.is_some() {
            return Ok(false);
        }
        Ok(self.row::<DeletedRecord>(pre, &deleted_key(key))?.is_some())
    }

    /// The seqlock of the `d` table: even when no commit that writes a `d` row is going into
    /// the tables. A reader of `c` and `d` together reads it before and after: an odd value
    /// first, or a different one after, means a key may have moved between the tables while
    /// it read.
    pub fn deleted_epoch(&self) -> u64 {
        self.deleted_epoch.load(Ordering::SeqCst)
    }

    /// Builds the `d` table from the version table: a row for every key whose newest version
    /// is a delete marker, replacing any `d` row already there (an earlier run of this
    /// migration whose marker rewrite a crash prevented, then a format-2 build's commits).
    /// One sled batch, then a flush; runs at open after the log's replay, before any commit.
    /// The key filter is rebuilt after it (a filter saved by a format-2 build knows no `d`
    /// key). Returns the number of deleted keys.
    pub fn migrate_deleted_keys(&self) -> Result<u64> {
        let mut batch = sled::Batch::default();
        for row in self.db.scan_prefix([table::DELETED]) {
            let (k, _) = row.db()?;
            batch.remove(k);
        }
        let end = vec![table::VERSION + 1];
        let mut rows = self.db.range(vec![table::VERSION]..end.clone());
        let mut deleted = 0;
        let mut last: Option<String> = None;
        let mut steps = 0;
        while let Some(row) = rows.next() {
            let (k, v) = row.db()?;
            let (key, vid) = parse_version_key(&k)?;
            if last.as_deref() == Some(key) {
                steps += 1;
                if steps >= STEPS_BEFORE_SEEK {
                    rows = self.db.range(after_versions(key)..end.clone());
                }
                continue;
            }
            let rec: VersionRecord = decode(&v)?;
            if rec.delete_marker {
                batch.insert(deleted_key(key), encode(&DeletedRecord { marker: vid.0 })?);
                deleted += 1;
            }
            last = Some(key.to_string());
            steps = 0;
        }
        self.db.apply_batch(batch).db()?;
        self.db.flush().db()?;
        self.tables.build_filter(super::memtable::FILTER_AT_OPEN)?;
        Ok(deleted)
    }
}
