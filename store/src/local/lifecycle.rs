//! A local store's life: init (a new store directory and its disks), open (lock, metadata,
//! sealing what a crash left open, the disks, the flusher), and close (stop the workers, seal,
//! sync, record a clean shutdown, release the lock once the last reference is gone).

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Result, StoreError};
use crate::local::config::{self, LocalConfig, Marker, StoreLock};
use crate::local::disks::{Disks, VolumeCatalog};
use crate::local::group_sync::GroupSync;
use crate::local::meta::Meta;
use crate::local::records::{Layout, VolumeRecord, VolumeState};
use crate::local::{flusher, volume, Inner, LocalStore};

/// Waits up to `timeout` for every other reference to `arc` to go, and returns the value; or
/// gives the `Arc` back when others still hold it then. (Background tasks may hold a store for
/// a moment after the work that needed it is done.)
pub fn wait_for_last_reference<T>(
    mut arc: Arc<T>,
    timeout: Duration,
) -> std::result::Result<T, Arc<T>> {
    let t0 = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        match Arc::try_unwrap(arc) {
            Ok(v) => return Ok(v),
            Err(a) if t0.elapsed() >= timeout => return Err(a),
            Err(a) => arc = a,
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

fn is_empty_dir(path: &Path) -> Result<bool> {
    let mut it = std::fs::read_dir(path)
        .map_err(|e| StoreError::io(format!("reading {}", path.display()), e))?;
    Ok(it.next().is_none())
}

/// Seals every volume a crash left open, at the length of its longest replica: nothing is ever
/// appended after a tail a crash may have torn.
fn seal_torn_volumes(meta: &Meta, paths: &[std::path::PathBuf]) -> Result<()> {
    for v in meta.volumes()? {
        if v.state != VolumeState::Open {
            continue;
        }
        let len = match &v.layout {
            Layout::Replicated { disks: ds } => ds
                .iter()
                .filter_map(|d| {
                    let dir = paths.get(*d as usize)?;
                    std::fs::metadata(volume::volume_path(dir, v.id)).ok()
                })
                .map(|m| m.len())
                .max()
                .unwrap_or(0),
            _ => v.size,
        };
        let sealed = VolumeRecord {
            state: VolumeState::Sealed,
            size: len,
            ..v
        };
        VolumeCatalog::save_volume(meta, &sealed)?;
    }
    Ok(())
}

impl LocalStore {
    /// Makes a new store in `path`, which must be missing or an empty directory.
    pub fn init(path: &Path, cfg: LocalConfig) -> Result<LocalStore> {
        cfg.validate()?;
        if path.exists() {
            if !path.is_dir() {
                return Err(StoreError::NotAStore {
                    path: path.into(),
                    reason: "it is not a directory".into(),
                });
            }
            if path.join(config::MARKER).exists() {
                return Err(StoreError::InvalidArgument(format!(
                    "{} is already an objfs store",
                    path.display()
                )));
            }
            if !is_empty_dir(path)? {
                return Err(StoreError::NotAStore {
                    path: path.into(),
                    reason: format!(
                        "the directory is not empty and has no {} (refusing to init over it)",
                        config::MARKER
                    ),
                });
            }
        }
        std::fs::create_dir_all(path)
            .map_err(|e| StoreError::io(format!("creating {}", path.display()), e))?;
        let lock = StoreLock::acquire(path)?;
        let marker = Marker::new(&cfg);
        for (i, d) in marker.disk_paths(path).iter().enumerate() {
            if d.exists() && !is_empty_dir(d)? {
                return Err(StoreError::InvalidArgument(format!(
                    "disk {} is not empty; a new store needs empty disk directories",
                    d.display()
                )));
            }
            Disks::format(d, marker.created, i as u32)?;
        }
        // The marker is written last: a store without one is an interrupted init, which a
        // later init may overwrite.
        let meta = Meta::open(&path.join("meta"), &path.join("wal"))?;
        marker.write(path)?;
        Self::open_locked(path, marker, lock, cfg.flush_interval, Some(meta))
    }

    /// Opens an existing store.
    pub fn open(path: &Path) -> Result<LocalStore> {
        Self::open_with(path, LocalConfig::default().flush_interval)
    }

    /// Opens an existing store with a given background flush interval.
    pub fn open_with(path: &Path, flush_interval: Duration) -> Result<LocalStore> {
        let marker = Marker::read(path)?;
        let lock = StoreLock::acquire(path)?;
        Self::open_locked(path, marker, lock, flush_interval, None)
    }

    /// Opens the store in `path`, or makes one there when `path` is missing or an empty
    /// directory. Returns whether it was made.
    pub fn open_or_init(path: &Path, cfg: LocalConfig) -> Result<(LocalStore, bool)> {
        if path.join(config::MARKER).exists() {
            return Ok((Self::open_with(path, cfg.flush_interval)?, false));
        }
        if !path.exists() || (path.is_dir() && is_empty_dir(path)?) {
            return Ok((Self::init(path, cfg)?, true));
        }
        // Not a store and not empty: let open() explain why.
        Self::open(path).map(|s| (s, false))
    }

    fn open_locked(
        path: &Path,
        mut marker: Marker,
        lock: StoreLock,
        flush_interval: Duration,
        meta: Option<Meta>,
    ) -> Result<LocalStore> {
        let cfg = marker.config(flush_interval);
        cfg.validate()?;
        // init hands over the database it made (opening sled twice in a row races with the
        // first one's shutdown).
        let meta = match meta {
            Some(m) => m,
            None => Meta::open(&path.join("meta"), &path.join("wal"))?,
        };
        let (replicas, _) = cfg.policy();
        let paths = marker.disk_paths(path);
        let disks = Disks::open(
            paths.clone(),
            marker.created,
            replicas as usize,
            cfg.volume_size,
            meta.volumes()?,
        )?;
        // Log records beyond the last sync are kept only if the blobs they introduce verify
        // (after a power loss their data may not have reached the disk).
        let replay = meta.finish_recovery(|blob, rec| {
            let loc = volume::BlobLocation {
                blob,
                volume: rec.volume,
                offset: rec.offset,
                len: rec.len,
                block_size: rec.block_size,
            };
            disks.read_region(&loc).is_ok()
        })?;
        if replay.replayed > 0 || replay.dropped > 0 {
            tracing::info!(store = %path.display(), replayed = replay.replayed, dropped = replay.dropped, "replayed the metadata log");
        }
        // A store of format 1 kept one sled row per blob: they become pages now (after the
        // replay, which may have put more of them into sled), then the marker says format 2.
        let migrated = meta.migrate_blob_rows()?;
        if migrated > 0 {
            tracing::info!(store = %path.display(), blobs = migrated, "moved the blob records into pages (store format 2)");
        }
        // A store before format 3 has no table of deleted keys: it is built from the version
        // table now (before anything is committed), then the marker says format 3.
        if marker.format < 3 {
            let deleted = meta.migrate_deleted_keys()?;
            tracing::info!(store = %path.display(), deleted, "built the table of deleted keys (store format 3)");
        }
        // A store before format 4 has no table of ended versions: built the same way.
        if marker.format < 4 {
            let ended = meta.migrate_ended()?;
            tracing::info!(store = %path.display(), ended, "built the table of ended versions (store format 4)");
        }
        if marker.format < config::STORE_FORMAT {
            marker.format = config::STORE_FORMAT;
            marker.write(path)?;
        }
        let last_shutdown_clean = meta.mark_open()?;
        if !last_shutdown_clean {
            tracing::warn!(store = %path.display(), "store was not closed cleanly; recounting");
            meta.recount_stats()?;
        }
        // A store written before the per-prefix rollups (or by an older format) gets them now.
        if meta.ensure_rollups()? {
            tracing::info!(store = %path.display(), "built the per-prefix rollups");
        }
        seal_torn_volumes(&meta, &paths)?;
        for v in meta.volumes()? {
            disks.set_record(v);
        }
        for d in &marker.removed {
            disks.retire(*d, true);
        }
        // The remote tier, if the store has one (no network yet: it connects on first use).
        if let Some(rec) = crate::local::tier::load(&meta)? {
            disks.set_tier(Some(crate::local::tier::Tier::open(path, rec)?));
        }
        let inner = Arc::new(Inner {
            root: path.to_path_buf(),
            cfg,
            meta,
            disks,
            group: GroupSync::default(),
            generation: AtomicU64::new(0),
            last_shutdown_clean,
            maintenance: std::sync::Mutex::new(()),
            history: Default::default(),
            _lock: lock,
        });
        let flusher = match flusher::start(&inner) {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::error!(error = %e, "could not start the flusher thread; writes are made durable only by sync");
                None
            }
        };
        Ok(LocalStore {
            inner,
            flusher,
            workers: Vec::new(),
            control: None,
            closed: false,
        })
    }

    /// Syncs everything, records a clean shutdown and releases the store: when it returns, the
    /// store can be opened again (by this process or another).
    pub fn close(mut self) -> Result<()> {
        let r = self.shutdown();
        // Tasks on the blocking pool may still hold the store for a moment; the lock goes with
        // the last reference.
        let inner = self.inner.clone();
        drop(self);
        if wait_for_last_reference(inner, Duration::from_secs(10)).is_err() {
            tracing::warn!(
                "the store is still referenced 10 s after close; it closes with the last reference"
            );
        }
        r
    }

    fn shutdown(&mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        // The watcher first (it steers the daemons), then the daemons, then the flusher.
        let watcher = self.control.take().into_iter();
        let flusher = self.flusher.take().into_iter();
        for mut w in watcher.chain(self.workers.drain(..)).chain(flusher) {
            w.stop();
        }
        self.inner.disks.seal_active(&self.inner.meta)?;
        self.inner.sync_all()?;
        self.inner.meta.mark_clean()
    }
}

impl Drop for LocalStore {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::warn!(error = %e, "closing the store failed");
        }
    }
}
