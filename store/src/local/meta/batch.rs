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

use super::{Meta, Txn};
use crate::error::Result;
use crate::local::records::{CurrentRecord, VersionRecord};
use crate::local::version::LocalVersion;
use crate::types::{Change, Condition, CopyOptions, Metadata, VersionId};

/// A change whose reads succeeded: what to install.
enum Prepared<'a> {
    /// A new version of `key` (a copy), with the key's current row before it.
    Version {
        key: &'a str,
        rec: VersionRecord,
        prev: Option<CurrentRecord>,
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
    /// Reads what a copy needs and checks its condition (the caller holds the commit lock).
    fn prepare_copy<'a>(
        &self,
        src: &str,
        dst: &'a str,
        opts: &CopyOptions,
    ) -> Result<Prepared<'a>> {
        let (_, srec) = self.resolve(src, opts.source_version.clone())?;
        let prev = self.checked_current(dst, &opts.condition)?;
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
        })
    }

    /// Reads what a delete needs and checks its condition.
    fn prepare_delete<'a>(&self, key: &'a str, cond: &Condition) -> Result<Prepared<'a>> {
        Ok(match self.checked_current(key, cond)? {
            Some(prev) => Prepared::Marker { key, prev },
            None => Prepared::Nothing,
        })
    }

    fn prepare<'a>(&self, change: &'a Change) -> Result<Prepared<'a>> {
        match change {
            Change::Copy { src, dst, opts } => self.prepare_copy(src, dst, opts),
            Change::DeleteIf { key, condition } => self.prepare_delete(key, condition),
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
        let mut st = state.stats;
        let mut out = Vec::with_capacity(prepared.len());
        for p in prepared {
            out.push(match p {
                Prepared::Version { key, rec, prev } => {
                    txn.add_refs(&rec.extents, 1);
                    let vid = self.next_version(state, &mut txn)?;
                    Self::install_version(&mut st, &mut txn, key, vid, rec, prev.as_ref())?;
                    Some(vid)
                }
                Prepared::Marker { key, prev } => {
                    let vid = self.next_version(state, &mut txn)?;
                    let rec = delete_marker();
                    Self::install_version(&mut st, &mut txn, key, vid, &rec, Some(prev))?;
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
        let p = self.prepare_copy(src, dst, opts)?;
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
        let p = self.prepare_delete(key, cond)?;
        let vids = self.install(&mut state, std::slice::from_ref(&p))?;
        Ok(vids.into_iter().flatten().next().map(|v| v.id()))
    }

    /// Applies `changes` (on distinct keys) in one commit: each is prepared and, if that
    /// succeeded, installed; one log record holds them all. `Err` means none was applied.
    pub fn commit_changes(&self, changes: &[Change]) -> Result<Vec<Result<Option<VersionId>>>> {
        let mut state = self.lock();
        let mut prepared = Vec::with_capacity(changes.len());
        let mut failed = Vec::new();
        for (i, c) in changes.iter().enumerate() {
            match self.prepare(c) {
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
