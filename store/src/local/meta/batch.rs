//! Copies and deletes, alone or many in one commit.
//!
//! A commit's fixed costs (the commit lock, the log record's frame, checksum and `pwrite`, the
//! version-id and counter bookkeeping) are paid once for a whole batch of changes
//! ([`Meta::commit_changes`], behind `ObjectStore::change_many`): restore executes its steps
//! this way. Each change is first *prepared* by reads only (its source, its condition against
//! the key's current row, read once), so a change that fails leaves nothing behind and the
//! others go on; the prepared ones are then installed into one transaction and logged as one
//! record, which a crash replays whole or not at all. Keys are distinct across a batch (the
//! caller checks), so no change needs to see another's rows before they are committed.
//!
//! A batch reads its rows ahead, sorted ([`Meta::prefetch`]): the sources' version rows and
//! the keys' current rows, and later the blob rows whose counts change, so that rows of
//! neighbouring keys cost a step of one scan each rather than a descent of sled's tree each.
//! A read-ahead that fails fails the whole batch (nothing is applied).

use std::collections::HashMap;

use sled::IVec;

use super::{check_condition, Meta, Txn};
use crate::error::{Result, StoreError};
use crate::local::records::{
    current_key, decode, deleted_key, version_key, CurrentRecord, Migrate, VersionRecord,
};
use crate::local::version::LocalVersion;
use crate::types::{Change, Condition, CopyOptions, Metadata, VersionId};

/// Rows read ahead for a batch ([`super::memtable::Tables::get_sorted`]), by key: `None` is a
/// row known absent. A key not in the map is read when asked for.
pub(super) type Prefetched = HashMap<Vec<u8>, Option<IVec>>;

/// A change whose reads succeeded: what to install.
enum Prepared<'a> {
    /// A new version of `key` (a copy), with the key's current row before it and whether
    /// it had a `d` row (its newest version a delete marker).
    Version {
        key: &'a str,
        rec: VersionRecord,
        prev: Option<CurrentRecord>,
        deleted: bool,
    },
    /// A delete marker on `key`, whose current row is `prev`.
    Marker { key: &'a str, prev: CurrentRecord },
    /// A delete of a key with no live version: nothing to do.
    Nothing,
}

fn delete_marker() -> VersionRecord {
    VersionRecord {
        delete_marker: true,
        size: 0,
        etag: String::new(),
        metadata: Metadata::new(),
        extents: Vec::new(),
    }
}

impl Meta {
    /// The row at `key` decoded, from `pre` when it holds the key.
    pub(super) fn row<T: Migrate>(&self, pre: &Prefetched, key: &[u8]) -> Result<Option<T>> {
        match pre.get(key) {
            Some(Some(v)) => Ok(Some(decode(v)?)),
            Some(None) => Ok(None),
            None => self.get(key),
        }
    }

    /// Reads the rows at `keys` in one sorted scan.
    pub(super) fn prefetch(&self, keys: Vec<Vec<u8>>) -> Result<Prefetched> {
        let rows = self.tables.get_sorted(&keys)?;
        Ok(keys.into_iter().zip(rows).collect())
    }

    /// What a batch of changes reads before it changes anything: each copy's source version
    /// (when named), each key's current row and a copy's target's deleted-key row, in one
    /// scan ([`Meta::prefetch`]).
    fn prefetch_changes(&self, changes: &[Change]) -> Result<Prefetched> {
        let mut keys = Vec::with_capacity(changes.len() * 2);
        for c in changes {
            match c {
                Change::Copy { src, dst, opts } => {
                    if let Some(v) = opts.source_version.as_ref().and_then(LocalVersion::parse) {
                        keys.push(version_key(src, v));
                    }
                    keys.push(current_key(dst));
                    keys.push(deleted_key(dst));
                }
                Change::DeleteIf { key, .. } => keys.push(current_key(key)),
            }
        }
        self.prefetch(keys)
    }

    /// [`Meta::resolve`] of a copy's source, from rows read ahead.
    fn resolve_in(
        &self,
        pre: &Prefetched,
        key: &str,
        version: &Option<VersionId>,
    ) -> Result<VersionRecord> {
        let Some(id) = version else {
            return Ok(self.resolve(key, None)?.1);
        };
        let v = LocalVersion::of(key, id)?;
        match self.row::<VersionRecord>(pre, &version_key(key, v))? {
            Some(rec) if !rec.delete_marker => Ok(rec),
            _ => Err(StoreError::NoSuchVersion {
                key: key.into(),
                version: id.clone(),
            }),
        }
    }

    /// [`Meta::checked_current`], from rows read ahead.
    fn checked_current_in(
        &self,
        pre: &Prefetched,
        key: &str,
        cond: &Condition,
    ) -> Result<Option<CurrentRecord>> {
        let cur = self.row::<CurrentRecord>(pre, &current_key(key))?;
        check_condition(key, cond, cur.as_ref())?;
        Ok(cur)
    }

    /// Reads what a copy needs and checks its condition (the caller holds the commit lock).
    fn prepare_copy<'a>(
        &self,
        pre: &Prefetched,
        src: &str,
        dst: &'a str,
        opts: &CopyOptions,
    ) -> Result<Prepared<'a>> {
        let srec = self.resolve_in(pre, src, &opts.source_version)?;
        let prev = self.checked_current_in(pre, dst, &opts.condition)?;
        let deleted = self.is_deleted_in(pre, dst, prev.as_ref())?;
        let rec = VersionRecord {
            delete_marker: false,
            size: srec.size,
            etag: srec.etag,
            metadata: opts.metadata.clone().unwrap_or(srec.metadata),
            extents: srec.extents,
        };
        Ok(Prepared::Version {
            key: dst,
            rec,
            prev,
            deleted,
        })
    }

    /// Reads what a delete needs and checks its condition.
    fn prepare_delete<'a>(
        &self,
        pre: &Prefetched,
        key: &'a str,
        cond: &Condition,
    ) -> Result<Prepared<'a>> {
        Ok(match self.checked_current_in(pre, key, cond)? {
            Some(prev) => Prepared::Marker { key, prev },
            None => Prepared::Nothing,
        })
    }

    fn prepare<'a>(&self, pre: &Prefetched, change: &'a Change) -> Result<Prepared<'a>> {
        match change {
            Change::Copy { src, dst, opts } => self.prepare_copy(pre, src, dst, opts),
            Change::DeleteIf { key, condition } => self.prepare_delete(pre, key, condition),
        }
    }

    /// Installs prepared changes in one record; returns each one's new version (None for
    /// [`Prepared::Nothing`]).
    fn install(
        &self,
        state: &mut super::CommitState,
        prepared: &[Prepared<'_>],
    ) -> Result<Vec<Option<LocalVersion>>> {
        let mut txn = Txn::new();
        // A version, a current row and a blob row per change, plus the rollups.
        txn.ops.reserve(prepared.len() * 3 + 8);
        let mut st = state.stats;
        let mut out = Vec::with_capacity(prepared.len());
        for p in prepared {
            out.push(match p {
                Prepared::Version {
                    key,
                    rec,
                    prev,
                    deleted,
                } => {
                    txn.add_refs(&rec.extents, 1);
                    let vid = self.next_version(state, &mut txn)?;
                    let prev = prev.as_ref();
                    Self::install_version(&mut st, &mut txn, key, vid, rec, prev, *deleted)?;
                    Some(vid)
                }
                Prepared::Marker { key, prev } => {
                    let vid = self.next_version(state, &mut txn)?;
                    let rec = delete_marker();
                    Self::install_version(&mut st, &mut txn, key, vid, &rec, Some(prev), false)?;
                    Some(vid)
                }
                Prepared::Nothing => None,
            });
        }
        self.apply(state, st, txn)?;
        Ok(out)
    }

    /// Commits a copy of a version of `src` as a new version of `dst`, sharing its extents.
    pub fn commit_copy(
        &self,
        src: &str,
        dst: &str,
        opts: &CopyOptions,
    ) -> Result<(LocalVersion, VersionRecord)> {
        let mut state = self.lock();
        let p = self.prepare_copy(&Prefetched::new(), src, dst, opts)?;
        let vid = self.install(&mut state, std::slice::from_ref(&p))?;
        match (p, vid.first()) {
            (Prepared::Version { rec, .. }, Some(Some(vid))) => Ok((*vid, rec)),
            _ => Err(crate::StoreError::Metadata(
                "a copy installed no version".into(),
            )),
        }
    }

    /// Adds a delete marker when `key` has a live version.
    pub fn commit_delete(&self, key: &str, cond: &Condition) -> Result<Option<VersionId>> {
        let mut state = self.lock();
        let p = self.prepare_delete(&Prefetched::new(), key, cond)?;
        let vids = self.install(&mut state, std::slice::from_ref(&p))?;
        Ok(vids.into_iter().flatten().next().map(|v| v.id()))
    }

    /// Applies `changes` (on distinct keys) in one commit: each is prepared and, if that
    /// succeeded, installed; one log record holds them all. `Err` means none was applied.
    pub fn commit_changes(&self, changes: &[Change]) -> Result<Vec<Result<Option<VersionId>>>> {
        let mut state = self.lock();
        let pre = if changes.len() > 1 {
            self.prefetch_changes(changes)?
        } else {
            Prefetched::new()
        };
        let mut prepared = Vec::with_capacity(changes.len());
        let mut failed = Vec::new();
        for (i, c) in changes.iter().enumerate() {
            match self.prepare(&pre, c) {
                Ok(p) => prepared.push(p),
                Err(e) => {
                    failed.push((i, e));
                    prepared.push(Prepared::Nothing);
                }
            }
        }
        let vids = self.install(&mut state, &prepared)?;
        let mut out: Vec<Result<Option<VersionId>>> =
            vids.into_iter().map(|v| Ok(v.map(|v| v.id()))).collect();
        for (i, e) in failed {
            out[i] = Err(e);
        }
        Ok(out)
    }
}
