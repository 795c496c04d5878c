//! The embedded local store: no server, one directory.
//!
//! * Metadata in sled ([`meta`]): the current version of each key (for listing), every version
//!   (for history), blobs with reference counts, volumes, multipart state.
//! * Data in volume files ([`volume`]): an object's bytes are cut into blobs of at most
//!   `blob_size`, appended to the active volume with a BLAKE3 checksum per block, and verified
//!   on every read. Objects are manifests of extents over blobs, so copies, renames and
//!   multipart part-copies share bytes instead of copying them.
//! * Crash safety: data is written before the metadata that points at it is committed (one
//!   atomic sled batch); durability is group-committed ([`group_sync`]): volumes are fsynced,
//!   then sled is flushed, and one such sync serves every writer waiting for it. A background
//!   flusher does the same every `flush_interval` for non-durable writes.
//!
//! The store's blocking I/O runs on tokio's blocking pool; the async [`ObjectStore`] methods
//! only hand work to it.

pub mod config;
pub mod disks;
pub mod erasure;
pub mod group_sync;
pub mod listing;
pub mod maintenance;
pub mod meta;
pub mod records;
pub mod shard;
pub mod version;
pub mod volume;
pub mod worker;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::stream::{FuturesOrdered, StreamExt};

pub use config::{EcSetting, LocalConfig};
use config::{Marker, StoreLock};
use disks::Disks;
use group_sync::GroupSync;
pub use maintenance::GcOptions;
use meta::Meta;
use records::{slice_extents, BlobRecord, Extent, PartRecord, VersionRecord, VolumeState};
use volume::BlobLocation;
pub use worker::{Progress, WorkerStatus};

use crate::error::{Result, StoreError};
use crate::key::{validate, validate_prefix};
use crate::store::ObjectStore;
use crate::types::*;

/// Reads larger than this are returned as a stream of chunks of about this size.
const READ_CHUNK: u64 = 8 << 20;
/// Blob writes of one request in flight at once.
const WRITE_PIPELINE: usize = 2;

/// Counts and sizes reported by `objfs status`.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreStatus {
    pub path: PathBuf,
    /// Keys with a live current version.
    pub objects: u64,
    /// Versions, delete markers included.
    pub versions: u64,
    pub delete_markers: u64,
    /// Sum of the sizes of live current versions.
    pub logical_bytes: u64,
    pub volumes: u64,
    /// Volumes erasure-coded by placement.
    pub placed_volumes: u64,
    /// Bytes of volume and shard files on disk.
    pub volume_bytes: u64,
    /// Copies of new data.
    pub replicas: u8,
    /// Erasure coding of sealed volumes (K, M).
    pub ec: Option<(u8, u8)>,
    /// Bytes on disk per byte of data once placed.
    pub overhead: f64,
    pub disks: Vec<DiskStatus>,
    /// Conditions an operator should act on (offline disks, too few disks for the policy).
    pub warnings: Vec<String>,
    /// Whether the previous process closed the store cleanly.
    pub last_shutdown_clean: bool,
}

/// One data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskStatus {
    pub path: PathBuf,
    /// Present and ours (a missing or foreign directory is offline).
    pub online: bool,
    /// Taken out of service by `disk remove`.
    pub removed: bool,
    pub total_bytes: u64,
    pub free_bytes: u64,
}

/// The shared state behind a [`LocalStore`]. Field order is drop order: the lock goes last.
pub(crate) struct Inner {
    root: PathBuf,
    cfg: LocalConfig,
    meta: Meta,
    disks: Disks,
    group: GroupSync,
    /// Bumped by every metadata mutation; the flusher syncs when it moved.
    generation: AtomicU64,
    last_shutdown_clean: bool,
    /// Held by a daemon for each unit of work, so two never move the same volume at once.
    maintenance: std::sync::Mutex<()>,
    _lock: StoreLock,
}

/// The embedded store. Dropping it (or [`LocalStore::close`]) syncs and closes it cleanly.
pub struct LocalStore {
    inner: Arc<Inner>,
    flusher: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
    workers: Vec<worker::WorkerHandle>,
    closed: bool,
}

/// Which daemons run inside the process that owns the store, and how hard they work.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub placement: bool,
    pub scrub: bool,
    pub gc: bool,
    /// Each daemon sleeps this many times the duration of each unit of work.
    pub tranquility: u32,
    /// Seconds between checks for work when idle.
    pub idle_interval: std::time::Duration,
    /// Sealed volumes are erasure-coded once they are this old.
    pub placement_min_age: std::time::Duration,
    /// Time between the starts of two scrub passes.
    pub scrub_interval: std::time::Duration,
    pub gc_options: GcOptions,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            placement: true,
            scrub: true,
            gc: true,
            tranquility: 2,
            idle_interval: std::time::Duration::from_secs(30),
            placement_min_age: std::time::Duration::from_secs(60),
            scrub_interval: std::time::Duration::from_secs(7 * 24 * 3600),
            gc_options: GcOptions::default(),
        }
    }
}

/// A blob just written, not yet committed.
struct WrittenBlob {
    id: u64,
    record: BlobRecord,
    sums: Vec<[u8; 32]>,
}

/// The data of one write: blobs to commit, and what they add up to.
struct Written {
    blobs: Vec<(u64, BlobRecord)>,
    extents: Vec<Extent>,
    size: u64,
    etag: String,
}

impl Written {
    fn assemble(parts: Vec<WrittenBlob>) -> Written {
        let mut h = blake3::Hasher::new();
        let mut extents = Vec::with_capacity(parts.len());
        let mut blobs = Vec::with_capacity(parts.len());
        let mut size = 0;
        for p in parts {
            for s in &p.sums {
                h.update(s);
            }
            size += p.record.len;
            extents.push(Extent {
                blob: p.id,
                offset: 0,
                len: p.record.len,
            });
            blobs.push((p.id, p.record));
        }
        Written {
            blobs,
            extents,
            size,
            etag: h.finalize().to_hex()[..32].to_string(),
        }
    }
}

impl Inner {
    fn write_blob(&self, data: &[u8]) -> Result<WrittenBlob> {
        let bs = self.cfg.block_size;
        let id = self.meta.next_id()?;
        let n = volume::blob_disk_len(data.len() as u64, bs);
        let (vol, files, offset) = self.disks.reserve(&self.meta, n)?;
        let sums = volume::write_blob(&files, offset, id, data, bs)
            .map_err(|e| StoreError::io(format!("writing volume {vol:016x}"), e))?;
        Ok(WrittenBlob {
            id,
            record: BlobRecord {
                volume: vol,
                offset,
                len: data.len() as u64,
                block_size: bs,
                refs: 1,
                freed_at: 0,
            },
            sums,
        })
    }

    /// Reads the bytes of `extents`, in order, into `out` (exactly their total length).
    fn read_extents(
        &self,
        extents: &[Extent],
        out: &mut [u8],
        what: &dyn Fn() -> String,
    ) -> Result<()> {
        let mut pos = 0usize;
        for e in extents {
            let len = e.len as usize;
            let dst = out
                .get_mut(pos..pos + len)
                .ok_or_else(|| StoreError::Corrupt {
                    what: format!("{}: extents add up to more than the object size", what()),
                })?;
            // gc may move the blob between our lookup and the read: look again once.
            let first = self.read_extent(e, dst, what);
            match first {
                Err(StoreError::Corrupt { .. }) => {
                    let b = self.meta.blob(e.blob)?;
                    self.read_extent_at(e, &b, dst, what)?;
                }
                other => other?,
            }
            pos += len;
        }
        Ok(())
    }

    fn read_extent(&self, e: &Extent, dst: &mut [u8], what: &dyn Fn() -> String) -> Result<()> {
        let b = self.meta.blob(e.blob)?;
        self.read_extent_at(e, &b, dst, what)
    }

    fn read_extent_at(
        &self,
        e: &Extent,
        b: &BlobRecord,
        dst: &mut [u8],
        what: &dyn Fn() -> String,
    ) -> Result<()> {
        let loc = BlobLocation {
            blob: e.blob,
            volume: b.volume,
            offset: b.offset,
            len: b.len,
            block_size: b.block_size,
        };
        self.disks
            .read_blob(&loc, e.offset..e.offset + e.len, dst, what)
    }

    fn maintenance(&self) -> std::sync::MutexGuard<'_, ()> {
        self.maintenance.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn read_bytes(&self, extents: &[Extent], len: u64, what: &dyn Fn() -> String) -> Result<Bytes> {
        let mut out = vec![0u8; len as usize];
        self.read_extents(extents, &mut out, what)?;
        Ok(Bytes::from(out))
    }

    /// Makes every completed write durable: fsync volumes, then flush the metadata.
    fn sync_all(&self) -> Result<()> {
        self.group.sync(|| {
            self.disks.sync_dirty()?;
            self.meta.save_stats()?;
            self.meta.flush()
        })
    }

    fn bump(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }

    fn status(&self) -> Result<StoreStatus> {
        let stats = self.meta.stats();
        let records = self.disks.records();
        let online = self.disks.online();
        let disks = self
            .disks
            .paths()
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let up = online.contains(&(i as u32));
                let (total_bytes, free_bytes) = if up {
                    disk_space(d).unwrap_or((0, 0))
                } else {
                    (0, 0)
                };
                DiskStatus {
                    path: d.clone(),
                    online: up,
                    removed: self.disks.is_retired(i as u32) && !up,
                    total_bytes,
                    free_bytes,
                }
            })
            .collect();
        let (replicas, ec) = self.cfg.policy();
        let mut warnings = Vec::new();
        if (replicas as usize) > online.len() {
            warnings.push(format!(
                "{replicas} replicas wanted but only {} disk(s) online: new data has fewer copies",
                online.len()
            ));
        }
        let in_service = (0..self.disks.paths().len() as u32)
            .filter(|d| !self.disks.is_retired(*d) || online.contains(d))
            .count();
        if online.len() < in_service {
            warnings.push(format!(
                "{} of {in_service} disks offline: run `objfs disk replace` and then `objfs scrub --now`",
                in_service - online.len(),
            ));
        }
        if let Some((k, m)) = ec {
            if ((k + m) as usize) > online.len() {
                warnings.push(format!(
                    "erasure coding {k}+{m} needs {} disks online; placement waits",
                    k + m
                ));
            }
        }
        Ok(StoreStatus {
            path: self.root.clone(),
            objects: stats.objects,
            versions: stats.versions,
            delete_markers: stats.delete_markers,
            logical_bytes: stats.live_bytes,
            volumes: records.len() as u64,
            placed_volumes: records
                .iter()
                .filter(|r| matches!(r.layout, records::Layout::Erasure { .. }))
                .count() as u64,
            volume_bytes: self.disks.file_bytes(),
            replicas,
            ec,
            overhead: erasure::overhead(ec, replicas),
            disks,
            warnings,
            last_shutdown_clean: self.last_shutdown_clean,
        })
    }
}

/// (total, free) bytes of the filesystem holding `path`.
fn disk_space(path: &Path) -> Result<(u64, u64)> {
    let s = nix::sys::statvfs::statvfs(path).map_err(|e| {
        StoreError::io(
            format!("statvfs {}", path.display()),
            std::io::Error::from(e),
        )
    })?;
    let frag = s.fragment_size() as u64;
    Ok((s.blocks() as u64 * frag, s.blocks_available() as u64 * frag))
}

fn is_empty_dir(path: &Path) -> Result<bool> {
    let mut it = std::fs::read_dir(path)
        .map_err(|e| StoreError::io(format!("reading {}", path.display()), e))?;
    Ok(it.next().is_none())
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
        let meta = Meta::open(&path.join("meta"))?;
        marker.write(path)?;
        Self::open_locked(path, marker, lock, cfg.flush_interval, Some(meta))
    }

    /// Opens an existing store.
    pub fn open(path: &Path) -> Result<LocalStore> {
        Self::open_with(path, LocalConfig::default().flush_interval)
    }

    /// Opens an existing store with a given background flush interval.
    pub fn open_with(path: &Path, flush_interval: std::time::Duration) -> Result<LocalStore> {
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
        marker: Marker,
        lock: StoreLock,
        flush_interval: std::time::Duration,
        meta: Option<Meta>,
    ) -> Result<LocalStore> {
        let cfg = marker.config(flush_interval);
        cfg.validate()?;
        // init hands over the database it made (opening sled twice in a row races with the
        // first one's shutdown).
        let meta = match meta {
            Some(m) => m,
            None => Meta::open(&path.join("meta"))?,
        };
        let last_shutdown_clean = meta.mark_open()?;
        if !last_shutdown_clean {
            tracing::warn!(store = %path.display(), "store was not closed cleanly; recounting");
            meta.recount_stats()?;
        }
        let (replicas, _) = cfg.policy();
        let paths = marker.disk_paths(path);
        // Never append after a tail a crash may have torn: seal what was open, at the length of
        // its longest replica.
        for v in meta.volumes()? {
            if v.state == VolumeState::Open {
                let len = match &v.layout {
                    records::Layout::Replicated { disks: ds } => ds
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
                let sealed = records::VolumeRecord {
                    state: VolumeState::Sealed,
                    size: len,
                    ..v
                };
                disks::VolumeCatalog::save_volume(&meta, &sealed)?;
            }
        }
        let disks = Disks::open(
            paths,
            marker.created,
            replicas as usize,
            cfg.volume_size,
            meta.volumes()?,
        )?;
        for d in &marker.removed {
            disks.retire(*d, true);
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
            _lock: lock,
        });
        let flusher = spawn_flusher(&inner);
        Ok(LocalStore {
            inner,
            flusher: Some(flusher),
            workers: Vec::new(),
            closed: false,
        })
    }

    /// Syncs everything, records a clean shutdown and releases the store: when it returns, the
    /// store can be opened again (by this process or another).
    pub fn close(mut self) -> Result<()> {
        let r = self.shutdown();
        // Tasks on the blocking pool may still hold the store for a moment; the lock goes with
        // the last reference.
        let t0 = std::time::Instant::now();
        while Arc::strong_count(&self.inner) > 1
            && t0.elapsed() < std::time::Duration::from_secs(10)
        {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        r
    }

    fn shutdown(&mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        for w in &mut self.workers {
            w.stop();
        }
        self.workers.clear();
        if let Some((tx, handle)) = self.flusher.take() {
            drop(tx);
            let _ = handle.join();
        }
        self.inner.disks.seal_active(&self.inner.meta)?;
        self.inner.sync_all()?;
        self.inner.meta.mark_clean()
    }

    /// Counts, sizes and disks.
    pub fn status(&self) -> Result<StoreStatus> {
        self.inner.status()
    }

    /// Starts the background daemons in this process; they stop when the store closes.
    pub fn start_daemons(&mut self, cfg: DaemonConfig) -> Result<()> {
        let runner = worker::RunnerConfig {
            tranquility: cfg.tranquility,
            idle_interval: cfg.idle_interval,
            store: self.inner.root.clone(),
        };
        let spawn = |w: Box<dyn worker::Worker>| {
            worker::spawn(w, runner.clone())
                .map_err(|e| StoreError::io("starting a daemon thread", e))
        };
        if cfg.placement {
            let w = maintenance::Placement::new(self.inner.clone(), cfg.placement_min_age);
            self.workers.push(spawn(Box::new(w))?);
        }
        if cfg.scrub {
            let w = maintenance::Scrub::new(self.inner.clone(), cfg.scrub_interval)?;
            self.workers.push(spawn(Box::new(w))?);
        }
        if cfg.gc {
            let w = maintenance::Gc::new(self.inner.clone(), cfg.gc_options.clone());
            self.workers.push(spawn(Box::new(w))?);
        }
        Ok(())
    }

    /// The daemons running in this process.
    pub fn daemon_status(&self) -> Vec<WorkerStatus> {
        self.workers.iter().map(|w| w.status()).collect()
    }

    /// Seals the open volume and erasure-codes every sealed volume now (`objfs place --now`).
    pub fn place_now(&self, on_progress: impl FnMut(&Progress)) -> Result<Progress> {
        self.inner.disks.seal_active(&self.inner.meta)?;
        self.inner.sync_all()?;
        let mut w = maintenance::Placement::new(self.inner.clone(), std::time::Duration::ZERO);
        worker::run_to_idle(&mut w, on_progress)
    }

    /// Runs a whole scrub pass now (resuming one a killed process left unfinished).
    pub fn scrub_now(&self, on_progress: impl FnMut(&Progress)) -> Result<Progress> {
        self.inner.sync_all()?;
        let mut w = maintenance::Scrub::new(self.inner.clone(), std::time::Duration::ZERO)?;
        w.start_now();
        worker::run_to_idle(&mut w, on_progress)
    }

    /// Runs every gc phase once now.
    pub fn gc_now(&self, opts: GcOptions, on_progress: impl FnMut(&Progress)) -> Result<Progress> {
        self.inner.sync_all()?;
        let mut w = maintenance::Gc::new(self.inner.clone(), opts);
        worker::run_to_idle(&mut w, on_progress)
    }

    /// Adds an empty directory as a new disk; new volumes use it at once (existing data is not
    /// moved).
    pub fn add_disk(&self, path: &Path) -> Result<()> {
        let _guard = self.inner.maintenance();
        let mut marker = Marker::read(&self.inner.root)?;
        if marker
            .disk_paths(&self.inner.root)
            .iter()
            .any(|p| p == path)
        {
            return Err(StoreError::InvalidArgument(format!(
                "{} is already one of the store's disks",
                path.display()
            )));
        }
        let index = self.inner.disks.add(path)?;
        debug_assert_eq!(index as usize, marker.disks.len());
        marker.disks.push(path.to_path_buf());
        marker.write(&self.inner.root)
    }

    /// Takes a disk out of service: moves every replica and shard on it to other disks
    /// (refused, with the reason, when the policy would no longer fit), then records it removed.
    pub fn remove_disk(&self, path: &Path) -> Result<u64> {
        let _guard = self.inner.maintenance();
        let mut marker = Marker::read(&self.inner.root)?;
        let paths = marker.disk_paths(&self.inner.root);
        let index = paths.iter().position(|p| p == path).ok_or_else(|| {
            StoreError::InvalidArgument(format!(
                "{} is not one of the store's disks",
                path.display()
            ))
        })? as u32;
        if marker.removed.contains(&index) {
            return Err(StoreError::InvalidArgument(format!(
                "{} was removed already",
                path.display()
            )));
        }
        let left = paths.len() - marker.removed.len() - 1;
        let (replicas, ec) = self.inner.cfg.policy();
        if let Some((k, m)) = ec {
            if ((k + m) as usize) > left {
                return Err(StoreError::InvalidArgument(format!(
                    "cannot remove {}: erasure coding {k}+{m} needs {} disks and only {left} would remain (add a disk first)",
                    path.display(),
                    k + m
                )));
            }
        }
        if replicas as usize > left {
            return Err(StoreError::InvalidArgument(format!(
                "cannot remove {}: {replicas} replicas need {replicas} disks and only {left} would remain",
                path.display()
            )));
        }
        // New data goes elsewhere from now on; the open volume is sealed so nothing more is
        // appended on this disk.
        self.inner.disks.retire(index, false);
        self.inner.disks.seal_active(&self.inner.meta)?;
        self.inner.sync_all()?;
        let blobs: std::collections::HashMap<u64, Vec<BlobLocation>> = self
            .inner
            .meta
            .blobs_by_volume()?
            .into_iter()
            .map(|(v, b)| (v, b.into_iter().map(|(l, _, _)| l).collect()))
            .collect();
        let moved = self.inner.disks.drain(&self.inner.meta, index, &blobs)?;
        marker.removed.push(index);
        marker.write(&self.inner.root)?;
        self.inner.disks.retire(index, true);
        Ok(moved)
    }

    /// Moves disk `old` (a path in the store's disk list) to the empty directory `new`, and
    /// records it. Run a scrub afterwards to rebuild what the old disk held.
    pub fn replace_disk(&self, old: &Path, new: &Path) -> Result<()> {
        let _guard = self.inner.maintenance();
        let mut marker = Marker::read(&self.inner.root)?;
        let paths = marker.disk_paths(&self.inner.root);
        let index = paths
            .iter()
            .position(|p| {
                p == old
                    || marker
                        .disks
                        .iter()
                        .any(|d| d == old && self.inner.root.join(d) == *p)
            })
            .ok_or_else(|| {
                StoreError::InvalidArgument(format!(
                    "{} is not one of the store's disks ({})",
                    old.display(),
                    paths
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
        if paths.iter().any(|p| p == new) {
            return Err(StoreError::InvalidArgument(format!(
                "{} is already one of the store's disks",
                new.display()
            )));
        }
        self.inner.disks.replace(index as u32, new)?;
        marker.disks[index] = new.to_path_buf();
        marker.write(&self.inner.root)?;
        self.inner.disks.set_path(index as u32, new.to_path_buf());
        Ok(())
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.inner.root
    }

    /// The settings in force.
    pub fn config(&self) -> &LocalConfig {
        &self.inner.cfg
    }

    /// Runs a short operation (page-cache I/O and metadata lookups of a few microseconds) on
    /// the calling task: a hop to the blocking pool costs more than the work itself.
    fn inline<T>(&self, f: impl FnOnce(&Inner) -> Result<T>) -> Result<T> {
        f(&self.inner)
    }

    /// Runs an operation that may wait on the disk (fsync, large transfers, long scans) on
    /// tokio's blocking pool.
    async fn blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| StoreError::Metadata(format!("a store task failed: {e}")))?
    }

    /// Writes a body as blobs (in parallel, in order), without committing them.
    async fn write_body(&self, body: Body) -> Result<Written> {
        let blob_size = self.inner.cfg.blob_size;
        let mut pipe = Pipeline {
            inner: self.inner.clone(),
            inflight: FuturesOrdered::new(),
            done: Vec::new(),
        };
        match body {
            Body::Bytes(b) => {
                if b.len() <= blob_size {
                    // One blob: write it on this task's blocking hop, no pipeline.
                    if b.is_empty() {
                        return Ok(Written::assemble(Vec::new()));
                    }
                    let blob = self.blocking(move |i| i.write_blob(&b)).await?;
                    return Ok(Written::assemble(vec![blob]));
                }
                let mut off = 0;
                while off < b.len() {
                    let end = (off + blob_size).min(b.len());
                    pipe.push(b.slice(off..end)).await?;
                    off = end;
                }
            }
            Body::Stream(mut s) => {
                let mut buf = BytesMut::new();
                while let Some(chunk) = s.next().await {
                    let chunk = chunk?;
                    if buf.is_empty() && chunk.len() == blob_size {
                        pipe.push(chunk).await?;
                        continue;
                    }
                    buf.extend_from_slice(&chunk);
                    while buf.len() >= blob_size {
                        let full = buf.split_to(blob_size).freeze();
                        pipe.push(full).await?;
                    }
                }
                if !buf.is_empty() {
                    pipe.push(buf.freeze()).await?;
                }
            }
        }
        pipe.finish().await.map(Written::assemble)
    }

    fn info(key: &str, vid: version::LocalVersion, rec: &VersionRecord) -> ObjectInfo {
        ObjectInfo {
            key: key.to_string(),
            version: vid.id(),
            size: rec.size,
            modified: vid.time(),
            etag: rec.etag.clone(),
            metadata: rec.metadata.clone(),
        }
    }

    async fn sync_if(&self, durable: bool) -> Result<()> {
        if durable {
            self.blocking(|i| i.sync_all()).await
        } else {
            Ok(())
        }
    }
}

impl Drop for LocalStore {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::warn!(error = %e, "closing the store failed");
        }
    }
}

/// Keeps up to [`WRITE_PIPELINE`] blob writes of one request running while the next chunk is
/// gathered, and collects the results in order.
struct Pipeline {
    inner: Arc<Inner>,
    inflight: FuturesOrdered<tokio::task::JoinHandle<Result<WrittenBlob>>>,
    done: Vec<WrittenBlob>,
}

impl Pipeline {
    async fn push(&mut self, data: Bytes) -> Result<()> {
        while self.inflight.len() >= WRITE_PIPELINE {
            self.take_one().await?;
        }
        let inner = self.inner.clone();
        self.inflight
            .push_back(tokio::task::spawn_blocking(move || inner.write_blob(&data)));
        Ok(())
    }

    async fn take_one(&mut self) -> Result<()> {
        if let Some(r) = self.inflight.next().await {
            let blob =
                r.map_err(|e| StoreError::Metadata(format!("a write task failed: {e}")))??;
            self.done.push(blob);
        }
        Ok(())
    }

    async fn finish(mut self) -> Result<Vec<WrittenBlob>> {
        while !self.inflight.is_empty() {
            self.take_one().await?;
        }
        Ok(self.done)
    }
}

fn spawn_flusher(inner: &Arc<Inner>) -> (mpsc::Sender<()>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel::<()>();
    let weak = Arc::downgrade(inner);
    let interval = inner.cfg.flush_interval;
    let handle = std::thread::Builder::new()
        .name("objfs-flusher".into())
        .spawn(move || {
            let mut flushed = 0u64;
            loop {
                match rx.recv_timeout(interval) {
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                let Some(inner) = weak.upgrade() else { return };
                let generation = inner.generation.load(Ordering::Acquire);
                if generation != flushed || inner.disks.has_dirty() {
                    match inner.sync_all() {
                        Ok(()) => flushed = generation,
                        Err(e) => tracing::error!(error = %e, "background flush failed"),
                    }
                }
            }
        });
    match handle {
        Ok(h) => (tx, h),
        Err(e) => {
            tracing::error!(error = %e, "could not start the flusher thread; writes are made durable only by sync");
            let (tx2, _) = mpsc::channel();
            (tx2, std::thread::spawn(|| {}))
        }
    }
}

/// Bodies and reads up to this size are handled inline on the calling task.
const INLINE_LIMIT: u64 = 256 << 10;

#[async_trait]
impl ObjectStore for LocalStore {
    fn describe(&self) -> String {
        format!("local:{}", self.inner.root.display())
    }

    fn features(&self) -> StoreFeatures {
        StoreFeatures {
            list_returns_metadata: true,
            zero_copy: true,
            min_part_size: 0,
            atomic_rename: true,
            versioning: true,
            conditional_put: true,
            part_copy: true,
            max_key_len: crate::key::MAX_KEY_LEN,
        }
    }

    async fn put(&self, key: &str, body: Body, opts: PutOptions) -> Result<ObjectInfo> {
        validate(key)?;
        let key = key.to_string();
        let durable = opts.durable;
        let commit = move |i: &Inner, w: Written| {
            let rec = VersionRecord {
                delete_marker: false,
                size: w.size,
                etag: w.etag,
                metadata: opts.metadata,
                extents: w.extents,
            };
            let vid = i.meta.commit_put(&key, w.blobs, &rec, opts.condition)?;
            i.bump();
            Ok(Self::info(&key, vid, &rec))
        };
        let info = match body {
            Body::Bytes(b) if (b.len() as u64) <= INLINE_LIMIT => self.inline(|i| {
                let parts = if b.is_empty() {
                    Vec::new()
                } else {
                    vec![i.write_blob(&b)?]
                };
                commit(i, Written::assemble(parts))
            })?,
            body => {
                let w = self.write_body(body).await?;
                self.inline(|i| commit(i, w))?
            }
        };
        self.sync_if(durable).await?;
        Ok(info)
    }

    async fn get(&self, key: &str, opts: GetOptions) -> Result<GetResult> {
        validate(key)?;
        let (vid, rec) = self.inline(|i| i.meta.resolve(key, opts.version))?;
        let range = resolve_range(opts.range.as_ref(), rec.size)?;
        let info = Self::info(key, vid, &rec);
        let len = range.end - range.start;
        let name = format!("{key} (version {vid})");
        if len <= INLINE_LIMIT {
            let extents = slice_extents(&rec.extents, range.clone());
            let body = self.inline(|i| i.read_bytes(&extents, len, &|| name.clone()))?;
            return Ok(GetResult {
                info,
                range,
                body: Body::Bytes(body),
            });
        }
        // Larger reads stream in chunks, read on the blocking pool two at a time (one per core).
        let mut chunks = Vec::new();
        let mut at = range.start;
        while at < range.end {
            let end = (at + READ_CHUNK).min(range.end);
            chunks.push(slice_extents(&rec.extents, at..end));
            at = end;
        }
        let inner = self.inner.clone();
        let stream = futures::stream::iter(chunks)
            .map(move |ex| {
                let inner = inner.clone();
                let name = name.clone();
                async move {
                    let len = ex.iter().map(|e| e.len).sum();
                    tokio::task::spawn_blocking(move || {
                        inner.read_bytes(&ex, len, &|| name.clone())
                    })
                    .await
                    .map_err(|e| StoreError::Metadata(format!("a read task failed: {e}")))?
                }
            })
            .buffered(2);
        Ok(GetResult {
            info,
            range,
            body: Body::from_stream(stream),
        })
    }

    async fn head(&self, key: &str, version: Option<VersionId>) -> Result<ObjectInfo> {
        validate(key)?;
        self.inline(|i| {
            let (vid, rec) = i.meta.resolve(key, version)?;
            Ok(Self::info(key, vid, &rec))
        })
    }

    async fn delete(&self, key: &str) -> Result<Option<VersionId>> {
        validate(key)?;
        self.inline(|i| {
            let r = i.meta.commit_delete(key)?;
            i.bump();
            Ok(r)
        })
    }

    async fn delete_version(&self, key: &str, version: VersionId) -> Result<()> {
        validate(key)?;
        self.inline(|i| {
            i.meta.commit_delete_version(key, version)?;
            i.bump();
            Ok(())
        })
    }

    async fn copy(&self, src: &str, dst: &str, opts: CopyOptions) -> Result<ObjectInfo> {
        validate(src)?;
        validate(dst)?;
        let info = self.inline(|i| {
            let (vid, rec) = i.meta.commit_copy(src, dst, &opts)?;
            i.bump();
            Ok(Self::info(dst, vid, &rec))
        })?;
        self.sync_if(opts.durable).await?;
        Ok(info)
    }

    async fn rename(&self, src: &str, dst: &str, opts: RenameOptions) -> Result<ObjectInfo> {
        validate(src)?;
        validate(dst)?;
        let info = self.inline(|i| {
            let (vid, rec) = i.meta.commit_rename(src, dst, &opts)?;
            i.bump();
            Ok(Self::info(dst, vid, &rec))
        })?;
        self.sync_if(opts.durable).await?;
        Ok(info)
    }

    async fn list(&self, req: &ListRequest) -> Result<ListPage> {
        let req = req.clone();
        self.blocking(move |i| listing::list(&i.meta, &req)).await
    }

    async fn list_versions(&self, req: &ListVersionsRequest) -> Result<VersionsPage> {
        let req = req.clone();
        self.blocking(move |i| listing::list_versions(&i.meta, &req))
            .await
    }

    async fn create_multipart(&self, key: &str, opts: PutOptions) -> Result<String> {
        validate(key)?;
        self.inline(|i| i.meta.create_upload(key, &opts))
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: Body,
    ) -> Result<PartInfo> {
        validate(key)?;
        check_part_number(part_number)?;
        // Refuse before writing any data when the upload does not exist.
        self.inline(|i| i.meta.upload(key, upload_id).map(|_| ()))?;
        let w = self.write_body(body).await?;
        self.inline(|i| {
            let rec = PartRecord {
                etag: w.etag,
                size: w.size,
                extents: w.extents,
            };
            i.meta
                .commit_part(key, upload_id, part_number, w.blobs, &rec)?;
            i.bump();
            Ok(PartInfo {
                part_number,
                etag: rec.etag,
                size: rec.size,
            })
        })
    }

    async fn upload_part_copy(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        src: &str,
        src_version: Option<VersionId>,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<PartInfo> {
        validate(key)?;
        validate(src)?;
        check_part_number(part_number)?;
        self.inline(|i| {
            let rec =
                i.meta
                    .commit_part_copy(key, upload_id, part_number, src, src_version, range)?;
            i.bump();
            Ok(PartInfo {
                part_number,
                etag: rec.etag,
                size: rec.size,
            })
        })
    }

    async fn list_parts(&self, key: &str, upload_id: &str) -> Result<Vec<PartInfo>> {
        validate(key)?;
        self.inline(|i| {
            i.meta.upload(key, upload_id)?;
            Ok(i.meta
                .parts(upload_id)?
                .into_iter()
                .map(|(n, p)| PartInfo {
                    part_number: n,
                    etag: p.etag,
                    size: p.size,
                })
                .collect())
        })
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> Result<ObjectInfo> {
        validate(key)?;
        let (info, durable) = self.inline(|i| {
            let (vid, rec, durable) = i.meta.commit_complete(key, upload_id, parts)?;
            i.bump();
            Ok((Self::info(key, vid, &rec), durable))
        })?;
        self.sync_if(durable).await?;
        Ok(info)
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<()> {
        validate(key)?;
        self.inline(|i| {
            i.meta.commit_abort(key, upload_id)?;
            i.bump();
            Ok(())
        })
    }

    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<UploadInfo>> {
        validate_prefix(prefix)?;
        let p = prefix.to_string();
        self.blocking(move |i| i.meta.uploads(&p)).await
    }

    async fn sync(&self) -> Result<()> {
        self.blocking(|i| i.sync_all()).await
    }

    async fn capacity(&self) -> Result<Capacity> {
        self.inline(|i| {
            let (mut total_bytes, mut free_bytes) = (0, 0);
            for d in i.disks.online() {
                let (t, f) = disk_space(&i.disks.path(d))?;
                total_bytes += t;
                free_bytes += f;
            }
            // Logical capacity: what the disks hold divided by the redundancy.
            let (replicas, ec) = i.cfg.policy();
            let over = erasure::overhead(ec, replicas)
                .max(replicas as f64)
                .max(1.0);
            let (total_bytes, free_bytes) = (
                (total_bytes as f64 / over) as u64,
                (free_bytes as f64 / over) as u64,
            );
            let s = i.meta.stats();
            Ok(Capacity {
                total_bytes,
                free_bytes,
                used_bytes: s.live_bytes,
                objects: s.objects,
            })
        })
    }
}

#[cfg(test)]
mod tests;
