//! Opening and closing the metadata: sled, the replay of the log after a crash, the
//! clean-shutdown flag, and the checkpoint that moves logged rows into sled.
//!
//! Opening has two steps because a replay after a power loss needs the volumes: [`Meta::open`]
//! opens sled and applies the log records that a sync covered; the store then opens its disks
//! and calls [`Meta::finish_recovery`], which applies the later records whose fresh blobs
//! still verify, checkpoints, and starts a new log.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::filter::KeyFilter;
use super::log::{self, FsLogDir};
use super::memtable::{apply_rows, Tables, FILTER_AT_OPEN};
use super::{blob_pages, db_error, CommitState, DbResult, IdLease, Meta, Replay, Txn};
use crate::error::{Result, StoreError};
use crate::local::atomic_file::replace_with;
use crate::local::records::*;

/// sled 0.34 writes `snap.<lsn>.generating`, fsyncs it and renames it to `snap.<lsn>`, but
/// also lists `.generating` files as snapshots (they sort last): a process killed between the
/// create and the rename leaves a store sled can never open again ("corrupt at None"). Such a
/// file is never needed: sled rebuilds that snapshot from the previous one (removed only after
/// the rename) and its log. The caller holds the store's lock, so no sled is writing it.
fn remove_unfinished_snapshots(dir: &Path) -> Result<()> {
    let ctx = |e| StoreError::io(format!("reading {}", dir.display()), e);
    let entries = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(ctx(e)),
    };
    for entry in entries {
        let entry = entry.map_err(ctx)?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            let p = entry.path();
            tracing::warn!(file = %p.display(), "removing a metadata snapshot an interrupted open left unfinished");
            std::fs::remove_file(&p)
                .map_err(|e| StoreError::io(format!("removing {}", p.display()), e))?;
        }
    }
    Ok(())
}

fn open_sled(path: &Path) -> Result<sled::Db> {
    remove_unfinished_snapshots(path)?;
    let config = sled::Config::new()
        .path(path)
        .cache_capacity(64 << 20)
        // Only checkpoints flush, after the volumes and the log are synced.
        .flush_every_ms(None)
        .mode(sled::Mode::HighThroughput);
    // The caller holds the store's own lock, so sled's lock can only be held by a sled of
    // this process that is still shutting down (sled 0.34 releases it from a background
    // thread after drop): wait for it, briefly.
    let mut tries = 0;
    loop {
        match config.open() {
            Ok(db) => return Ok(db),
            // sled 0.34 reports it as `Other` wrapping "could not acquire lock ... WouldBlock".
            Err(sled::Error::Io(e))
                if tries < 500
                    && (e.kind() == std::io::ErrorKind::WouldBlock
                        || e.to_string().contains("could not acquire lock")) =>
            {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => return Err(db_error(e)),
        }
    }
}

/// The file a clean shutdown saves the key filter in (docs/FORMAT.md, "The key filter").
const FILTER_FILE: &str = "keyfilter";

/// Reads the saved key filter and removes its file, so that a filter is only ever read by the
/// open right after the shutdown that saved it. `Some` only when `expect_applied` is given
/// (sled is as a clean shutdown left it) and the file holds a valid filter for it; any other
/// file is dropped with a note in the log.
fn take_saved_filter(path: &Path, expect_applied: Option<u64>) -> Option<KeyFilter> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "could not read the saved key filter; rebuilding it");
            Vec::new()
        }
    };
    if let Err(e) = std::fs::remove_file(path) {
        // A file left behind could be read by a later open: use none.
        tracing::warn!(file = %path.display(), error = %e, "could not remove the saved key filter; rebuilding it");
        return None;
    }
    let f = expect_applied.and_then(|applied| KeyFilter::from_bytes(&bytes, applied));
    if f.is_none() {
        tracing::info!(file = %path.display(), "the saved key filter does not match the store; rebuilding it");
    }
    f
}

fn read_misc<T: Migrate>(db: &sled::Db, name: &str) -> Result<Option<T>> {
    match db.get(misc_key(name)).db()? {
        Some(v) => Ok(Some(decode(&v)?)),
        None => Ok(None),
    }
}

impl Meta {
    /// Opens (or creates) the database at `path` with its log in `log_dir`, and applies the
    /// log records a sync covered. [`Meta::finish_recovery`] must follow before any commit.
    pub fn open(path: &Path, log_dir: &Path) -> Result<Meta> {
        let db = open_sled(path)?;
        let dir = FsLogDir {
            path: log_dir.to_path_buf(),
        };
        let applied = read_misc::<u64>(&db, misc::LOG_APPLIED)?.unwrap_or(0);
        let segments = log::read_all(&dir, applied)?;
        let recovered = log::recover(applied + 1, &segments)?;
        if let Some(t) = &recovered.tear {
            tracing::info!(segment = t.segment, offset = t.offset, reason = %t.reason,
                "metadata log ends with a torn record (a crash mid-append; it was never acknowledged)");
        }
        for b in &recovered.trusted {
            apply_rows(&db, b.ops.iter().map(|(k, v)| (k, v)))?;
        }
        let lease = read_misc::<u64>(&db, misc::ID_LEASE)?.unwrap_or(1);
        Ok(Meta {
            tables: Tables::new(db.clone(), dir),
            db,
            commit: Mutex::new(CommitState {
                stats: StatsRecord::default(),
                saved_stats: StatsRecord::default(),
                last_version: 0,
                lease_nanos: 0,
            }),
            ids: Mutex::new(IdLease { next: lease, lease }),
            pending: Mutex::new(Some(recovered)),
            page_floor: lease.div_ceil(blob_pages::PAGE_BLOBS),
            page_hwm: Default::default(),
            lineages: Default::default(),
            ref_watch: Default::default(),
            watching: Default::default(),
            deleted_epoch: Default::default(),
        })
    }

    /// Ends recovery: applies the log records beyond the last sync whose fresh blobs
    /// `verify` accepts (in order, stopping at the first that fails), makes sled durable,
    /// removes the old log and starts a new one. Commits work from here on.
    pub fn finish_recovery(
        &self,
        mut verify: impl FnMut(u64, &BlobRecord) -> bool,
    ) -> Result<Replay> {
        let Some(rec) = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        else {
            return Ok(Replay::default());
        };
        let trusted = rec.trusted.len();
        let (kept, dropped) = log::keep_verified(rec.suspect, |b| {
            b.fresh_blobs
                .iter()
                .all(|id| blob_pages::blob_in_ops(&b.ops, *id).is_some_and(|r| verify(*id, &r)))
        });
        for b in &kept {
            apply_rows(&self.db, b.ops.iter().map(|(k, v)| (k, v)))?;
        }
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "metadata log: dropped records written after the last sync whose data did not survive (power loss)"
            );
        }
        // The new log starts after every segment present, so none of them is read again.
        let dir = self.tables.log_dir();
        let existing = dir.list()?;
        let applied = read_misc::<u64>(&self.db, misc::LOG_APPLIED)?.unwrap_or(0);
        let last = existing.last().copied().unwrap_or(0).max(applied);
        self.db
            .insert(misc_key(misc::LOG_APPLIED), encode(&last)?)
            .db()?;
        self.db.flush().db()?;
        log::remove_below(dir, existing, last + 1);
        // The filter a clean shutdown saved, when sled is exactly as it left it: the flag
        // still says clean (`mark_open` comes later), no log record was applied since, and
        // the file names the same applied segment. Else sled holds every replayed row and
        // nothing writes into it until the first checkpoint: the filter of its current keys
        // is built from a scan now (when it is small) or by that checkpoint.
        let clean = read_misc::<bool>(&self.db, misc::CLEAN)?.unwrap_or(false);
        let unchanged = clean && trusted == 0 && kept.is_empty() && dropped == 0;
        match take_saved_filter(&self.filter_file(), unchanged.then_some(applied)) {
            Some(f) => self.tables.install_filter(f),
            None => self.tables.build_filter(FILTER_AT_OPEN)?,
        }
        self.tables.start_log(last + 1, rec.last_seq + 1)?;
        // The counters and the version-id lease as the replay left them.
        let stats = read_misc(&self.db, misc::STATS)?.unwrap_or_default();
        // Every version id ever handed out is below the lease (see `next_version`).
        let vlease = read_misc::<u64>(&self.db, misc::VERSION_HWM)?.unwrap_or(0);
        *self.lock() = CommitState {
            stats,
            saved_stats: stats,
            last_version: (vlease as u128) << 64,
            lease_nanos: vlease,
        };
        Ok(Replay {
            replayed: trusted + kept.len(),
            dropped,
        })
    }

    /// Moves what was committed into sled: `sync` must make the volumes and then the log
    /// durable (the store's group sync); see [`Tables::checkpoint`].
    pub fn checkpoint_log(&self, sync: impl FnOnce() -> Result<()>) -> Result<bool> {
        self.tables.checkpoint(sync)
    }

    /// Whether rows are waiting for a checkpoint, and how many are in the active table.
    pub fn log_backlog(&self) -> (bool, usize) {
        self.tables.backlog()
    }

    /// Where a clean shutdown leaves the key filter: `keyfilter` in the log's directory.
    fn filter_file(&self) -> PathBuf {
        self.tables.log_dir().path.join(FILTER_FILE)
    }

    /// Saves the key filter for the next open (after the last checkpoint: nothing writes
    /// into sled any more). Failing to save costs the next open a scan, nothing else.
    fn save_filter(&self) -> Result<()> {
        let applied = read_misc::<u64>(&self.db, misc::LOG_APPLIED)?.unwrap_or(0);
        let Some(bytes) = self.tables.filter_bytes(applied) else {
            return Ok(());
        };
        let path = self.filter_file();
        if let Err(e) = replace_with(&path, true, |f| (&*f).write_all(&bytes)) {
            tracing::warn!(file = %path.display(), error = %e, "could not save the key filter; the next open rebuilds it");
        }
        Ok(())
    }

    /// Whether the key filter can answer "absent" now (tests: was a saved one read back?).
    #[cfg(test)]
    pub(crate) fn filter_ready(&self) -> bool {
        self.tables.filter_bytes(0).is_some()
    }

    /// Reads and sets the clean-shutdown flag; returns whether the last shutdown was clean.
    pub fn mark_open(&self) -> Result<bool> {
        let was_clean = read_misc::<bool>(&self.db, misc::CLEAN)?.unwrap_or(true);
        self.db
            .insert(misc_key(misc::CLEAN), encode(&false)?)
            .db()?;
        self.db.flush().db()?;
        Ok(was_clean)
    }

    /// Records a clean shutdown: everything logged goes into sled, the log is emptied, and the
    /// version-id lease shrinks to just past the last id made, so the next open issues ids
    /// (and version times) from now, not from up to a lease ahead (the lease only matters
    /// after a crash, when the last id made is not known). The caller synced the volumes.
    pub fn mark_clean(&self) -> Result<()> {
        self.save_stats()?;
        {
            let mut state = self.lock();
            let next = ((state.last_version >> 64) as u64).saturating_add(1);
            if next < state.lease_nanos {
                let mut txn = Txn::new();
                txn.insert(misc_key(misc::VERSION_HWM), encode(&next)?);
                self.write_rows(txn)?;
                state.lease_nanos = next;
            }
        }
        self.tables.checkpoint(|| self.tables.sync())?;
        self.save_filter()?;
        self.db.insert(misc_key(misc::CLEAN), encode(&true)?).db()?;
        self.db.flush().db()?;
        Ok(())
    }
}
