//! The table of ended versions (`e`): one row per data version that is no longer the newest
//! of its key, filed under the version made over it. The ZFS dead list, in time order.
//!
//! A named snapshot at T sees a data version when the version was made at or before T and
//! the one over it after T. What one snapshot *alone* sees (what deleting it could free) was
//! therefore made after the previous snapshot's moment and ended by the next snapshot's: its
//! `e` row lies between T and the next moment, and its own id after the previous one. So
//! [`crate::local::exclusive`] reads, per snapshot, the rows ending between its moment and
//! the next, never the whole version table: the cost is what changed around the snapshot,
//! whatever the size of the store.
//!
//! Rows are written in the same log record as the change that ends or revives a version:
//! a new version over a data version files that one under the new one
//! ([`Meta::install_version`](super::Meta)); removing a version for good
//! ([`Meta::commit_delete_version`](super::Meta::commit_delete_version)) drops its own row
//! and refiles the version under it, which the removal moves up to the next newer version
//! (or makes current when the removed one was newest). Delete markers have no row: they hold
//! no bytes, and the version under a marker is filed under the marker. Stores before format
//! 4 have no such table: it is built from the version table at open
//! ([`Meta::migrate_ended`]) before anything is committed.

use super::db::DbResult;
use super::{Meta, Txn};
use crate::error::Result;
use crate::local::records::{
    after_versions, decode, ended_key, parse_version_key, table, version_key, version_prefix,
    VersionRecord, ENDED_VALUE,
};
use crate::local::version::LocalVersion;

/// Rows per sled batch of the migration.
const MIGRATION_BATCH: usize = 100_000;

/// One version as the `e` rows are derived from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct VersionLink {
    pub version: LocalVersion,
    pub delete_marker: bool,
}

/// The `e` row keys of one key's versions (newest first): each data version under a newer
/// version is filed under that one. The definition the commits maintain and the migration
/// builds.
pub(crate) fn ended_rows(key: &str, newest_first: &[VersionLink]) -> Vec<Vec<u8>> {
    newest_first
        .windows(2)
        .filter(|w| !w[1].delete_marker)
        .map(|w| ended_key(w[0].version, key, w[1].version))
        .collect()
}

impl Meta {
    /// Files `prev` (the key's current data version) under `vid`, the version made over it.
    pub(super) fn end_version(txn: &mut Txn, key: &str, vid: LocalVersion, prev: LocalVersion) {
        txn.insert(ended_key(vid, key, prev), ENDED_VALUE.to_vec());
    }

    /// The `e` rows that removing version `v` (a delete marker when `marker`) of `key`
    /// changes: its own row goes, and the version under it is refiled under the version
    /// over it (or has no row any more when `v` was the newest: it becomes the newest).
    /// Read under the commit lock.
    pub(super) fn unlink_ended(
        &self,
        txn: &mut Txn,
        key: &str,
        v: LocalVersion,
        marker: bool,
    ) -> Result<()> {
        let at = version_key(key, v);
        // Newer versions sort first: the one over `v` is the last row before it.
        let newer = match self.tables.last_in(&version_prefix(key), &at)? {
            Some((k, _)) => Some(parse_version_key(&k)?.1),
            None => None,
        };
        let mut after = at;
        after.push(0);
        let older = match self.first_in(&after, &after_versions(key))? {
            Some((k, val)) => {
                let rec: VersionRecord = decode(&val)?;
                Some((parse_version_key(&k)?.1, rec.delete_marker))
            }
            None => None,
        };
        if let (Some(n), false) = (newer, marker) {
            txn.remove(ended_key(n, key, v));
        }
        if let Some((o, false)) = older {
            txn.remove(ended_key(v, key, o));
            if let Some(n) = newer {
                Self::end_version(txn, key, n, o);
            }
        }
        Ok(())
    }

    /// Builds the `e` table from the version table, replacing any row already there (an
    /// earlier run of this migration that a crash cut short, then an older build's commits).
    /// Runs at open after the log's replay, before any commit, writing sled directly in
    /// batches, then flushes. Returns the number of rows.
    pub fn migrate_ended(&self) -> Result<u64> {
        let mut batch = sled::Batch::default();
        let mut pending = 0;
        let apply = |batch: &mut sled::Batch, pending: &mut usize| -> Result<()> {
            self.db.apply_batch(std::mem::take(batch)).db()?;
            *pending = 0;
            Ok(())
        };
        for row in self.db.scan_prefix([table::ENDED]) {
            let (k, _) = row.db()?;
            batch.remove(k);
            pending += 1;
            if pending >= MIGRATION_BATCH {
                apply(&mut batch, &mut pending)?;
            }
        }
        apply(&mut batch, &mut pending)?;
        let mut rows = 0;
        let mut key: Option<String> = None;
        let mut links: Vec<VersionLink> = Vec::new();
        let mut file = |key: &Option<String>,
                        links: &mut Vec<VersionLink>,
                        batch: &mut sled::Batch,
                        pending: &mut usize|
         -> Result<()> {
            if let Some(key) = key {
                for k in ended_rows(key, links) {
                    batch.insert(k, &ENDED_VALUE[..]);
                    *pending += 1;
                    rows += 1;
                }
            }
            links.clear();
            if *pending >= MIGRATION_BATCH {
                apply(batch, pending)?;
            }
            Ok(())
        };
        for row in self.db.scan_prefix([table::VERSION]) {
            let (k, v) = row.db()?;
            let (k, vid) = parse_version_key(&k)?;
            if key.as_deref() != Some(k) {
                file(&key, &mut links, &mut batch, &mut pending)?;
                key = Some(k.to_string());
            }
            let rec: VersionRecord = decode(&v)?;
            links.push(VersionLink {
                version: vid,
                delete_marker: rec.delete_marker,
            });
        }
        file(&key, &mut links, &mut batch, &mut pending)?;
        apply(&mut batch, &mut pending)?;
        self.db.flush().db()?;
        Ok(rows)
    }
}
