//! The store's disks: which directories hold its data, which of them are online, which take new
//! data, and the open file handles and volume records every data operation shares.
//!
//! Each disk is a directory holding an `objfs-disk.json` that names the store and the disk's
//! index. A missing or foreign directory is *offline*: nothing is written there and reads go to
//! the other copies. An empty directory at a disk's path is formatted and used again (scrub
//! then rebuilds what it should hold).
//!
//! What is done with the bytes lives beside this: appends to the open volume (`append.rs`),
//! reads and repairs per volume layout (`layout/`), placement, scrub and drain (their own
//! files). A volume's [`Layout`] record says where its bytes are; blob locations (volume,
//! offset) never change when the layout does.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use lru::LruCache;

use crate::error::{Result, StoreError};
use crate::local::append::Active;
use crate::local::config::DiskMarker;
use crate::local::erasure::Scheme;
use crate::local::records::VolumeRecord;
use crate::local::volume::{shard_path, volume_path};

/// Where volume records are persisted (implemented by the metadata layer).
pub trait VolumeCatalog: Send + Sync {
    fn new_volume_id(&self) -> Result<u64>;
    /// Saves a record (durable with the next sync).
    fn save_volume(&self, rec: &VolumeRecord) -> Result<()>;
    /// Saves a record and makes it durable now (before files it replaces are deleted).
    fn save_volume_durably(&self, rec: &VolumeRecord) -> Result<()>;
    /// Removes a record durably.
    fn remove_volume(&self, id: u64) -> Result<()>;
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn read<T: Clone>(l: &RwLock<T>) -> T {
    l.read()
        .map(|v| v.clone())
        .unwrap_or_else(|p| p.into_inner().clone())
}

/// Which file of a volume on a disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum FileKind {
    Replica,
    Shard(u16),
}

/// The store's disks and the volumes on them.
pub struct Disks {
    paths: RwLock<Vec<PathBuf>>,
    store_id: u64,
    online: RwLock<Vec<bool>>,
    pub(crate) replicas: usize,
    pub(crate) volume_size: u64,
    /// The volume being appended to (append.rs).
    pub(crate) active: Mutex<Option<Active>>,
    handles: Mutex<LruCache<(u64, u32, FileKind), Arc<File>>>,
    /// Replica files written since the last sync, by (volume, disk).
    pub(crate) dirty: Mutex<HashMap<(u64, u32), Arc<File>>>,
    layouts: RwLock<HashMap<u64, VolumeRecord>>,
    schemes: Mutex<HashMap<(u8, u8), Arc<Scheme>>>,
    next_disk: AtomicUsize,
    /// Disks that take no new data: being drained by `disk remove`, or removed.
    retired: RwLock<HashSet<u32>>,
    /// The remote tier, when the store has one (tier/).
    tier: RwLock<Option<Arc<crate::local::tier::Tier>>>,
}

pub(crate) fn is_empty_dir(p: &Path) -> bool {
    std::fs::read_dir(p)
        .map(|mut it| it.next().is_none())
        .unwrap_or(false)
}

impl Disks {
    /// Opens the disks: checks each one's marker (formatting empty directories), loads the
    /// volume layouts.
    pub fn open(
        paths: Vec<PathBuf>,
        store_id: u64,
        replicas: usize,
        volume_size: u64,
        records: Vec<VolumeRecord>,
    ) -> Result<Disks> {
        let mut online = Vec::with_capacity(paths.len());
        for (i, p) in paths.iter().enumerate() {
            let expect = DiskMarker {
                store: store_id,
                index: i as u32,
            };
            let ok = match DiskMarker::read(p) {
                Some(m) if m == expect => true,
                Some(m) => {
                    tracing::warn!(disk = %p.display(), found = ?m, "disk belongs to another store or position; offline");
                    false
                }
                None if p.is_dir() && is_empty_dir(p) => {
                    tracing::warn!(disk = %p.display(), "disk is empty; formatting it (scrub will rebuild its data)");
                    expect.write(p).is_ok()
                }
                None => {
                    tracing::warn!(disk = %p.display(), "disk is missing or not ours; offline");
                    false
                }
            };
            online.push(ok);
        }
        if !online.iter().any(|o| *o) {
            return Err(StoreError::NotAStore {
                path: paths.first().cloned().unwrap_or_default(),
                reason: "none of its data disks is available".into(),
            });
        }
        let cap = std::num::NonZeroUsize::new(512).unwrap_or(std::num::NonZeroUsize::MIN);
        Ok(Disks {
            paths: RwLock::new(paths),
            store_id,
            online: RwLock::new(online),
            replicas: replicas.max(1),
            volume_size,
            active: Mutex::new(None),
            handles: Mutex::new(LruCache::new(cap)),
            dirty: Mutex::new(HashMap::new()),
            layouts: RwLock::new(records.into_iter().map(|r| (r.id, r)).collect()),
            schemes: Mutex::new(HashMap::new()),
            next_disk: AtomicUsize::new(0),
            retired: RwLock::new(Default::default()),
            tier: RwLock::new(None),
        })
    }

    /// The remote tier, if the store has one.
    pub fn tier(&self) -> Option<Arc<crate::local::tier::Tier>> {
        read(&self.tier)
    }

    /// Attaches (`Some`) or detaches the remote tier.
    pub(crate) fn set_tier(&self, tier: Option<Arc<crate::local::tier::Tier>>) {
        if let Ok(mut t) = self.tier.write() {
            *t = tier;
        }
    }

    /// Formats a fresh data directory as disk `index` of store `store_id`.
    pub fn format(path: &Path, store_id: u64, index: u32) -> Result<()> {
        std::fs::create_dir_all(path)
            .map_err(|e| StoreError::io(format!("creating {}", path.display()), e))?;
        DiskMarker {
            store: store_id,
            index,
        }
        .write(path)
    }

    /// The disk directories, by index.
    pub fn paths(&self) -> Vec<PathBuf> {
        read(&self.paths)
    }

    /// Directory of disk `d`.
    pub fn path(&self, d: u32) -> PathBuf {
        let p = self.paths();
        p.get(d as usize).cloned().unwrap_or_default()
    }

    /// Points disk `d` at a new directory (after `replace`).
    pub fn set_path(&self, d: u32, path: PathBuf) {
        if let Ok(mut p) = self.paths.write() {
            if let Some(x) = p.get_mut(d as usize) {
                *x = path;
            }
        }
    }

    pub fn replicas(&self) -> usize {
        self.replicas
    }

    /// Indices of the disks that are online.
    pub fn online(&self) -> Vec<u32> {
        read(&self.online)
            .iter()
            .enumerate()
            .filter(|(_, o)| **o)
            .map(|(i, _)| i as u32)
            .collect()
    }

    pub fn is_online(&self, d: u32) -> bool {
        read(&self.online).get(d as usize).copied().unwrap_or(false)
    }

    fn set_online(&self, d: u32, up: bool) {
        if let Ok(mut o) = self.online.write() {
            if let Some(x) = o.get_mut(d as usize) {
                *x = up;
            }
        }
    }

    pub fn record(&self, id: u64) -> Option<VolumeRecord> {
        self.layouts.read().ok().and_then(|l| l.get(&id).cloned())
    }

    pub fn records(&self) -> Vec<VolumeRecord> {
        let mut v: Vec<VolumeRecord> = self
            .layouts
            .read()
            .map(|l| l.values().cloned().collect())
            .unwrap_or_default();
        v.sort_by_key(|r| r.id);
        v
    }

    pub(crate) fn set_record(&self, rec: VolumeRecord) {
        if let Ok(mut l) = self.layouts.write() {
            l.insert(rec.id, rec);
        }
    }

    pub(crate) fn forget_record(&self, id: u64) {
        if let Ok(mut l) = self.layouts.write() {
            l.remove(&id);
        }
    }

    /// The K+M codec (made once per scheme).
    pub(crate) fn scheme(&self, k: u8, m: u8) -> Result<Arc<Scheme>> {
        let mut s = lock(&self.schemes);
        if let Some(x) = s.get(&(k, m)) {
            return Ok(x.clone());
        }
        let x = Arc::new(Scheme::new(k as usize, m as usize)?);
        s.insert((k, m), x.clone());
        Ok(x)
    }

    fn retired_set(&self) -> HashSet<u32> {
        read(&self.retired)
    }

    /// Online disks that take new data.
    pub(crate) fn in_service(&self) -> Vec<u32> {
        let retired = self.retired_set();
        self.online()
            .into_iter()
            .filter(|d| !retired.contains(d))
            .collect()
    }

    /// Picks `n` distinct disks in service, rotating the starting point so volumes spread out.
    pub(crate) fn pick(&self, n: usize) -> Vec<u32> {
        let online = self.in_service();
        if online.is_empty() {
            return Vec::new();
        }
        let start = self.next_disk.fetch_add(1, Ordering::Relaxed) % online.len();
        (0..n.min(online.len()))
            .map(|i| online[(start + i) % online.len()])
            .collect()
    }

    pub(crate) fn file_path(&self, id: u64, disk: u32, kind: FileKind) -> PathBuf {
        let dir = self.path(disk);
        match kind {
            FileKind::Replica => volume_path(&dir, id),
            FileKind::Shard(i) => shard_path(&dir, id, i as usize),
        }
    }

    /// A read-only handle on a volume's file, from the cache or opened now.
    pub(crate) fn file(&self, id: u64, disk: u32, kind: FileKind) -> io::Result<Arc<File>> {
        if let Some(f) = lock(&self.handles).get(&(id, disk, kind)) {
            return Ok(f.clone());
        }
        let f = Arc::new(File::open(self.file_path(id, disk, kind))?);
        self.keep_handle(id, disk, kind, f.clone());
        Ok(f)
    }

    /// Caches a handle just made for a volume's file.
    pub(crate) fn keep_handle(&self, id: u64, disk: u32, kind: FileKind, f: Arc<File>) {
        lock(&self.handles).put((id, disk, kind), f);
    }

    /// Drops the cached handles that match (their files were replaced or deleted).
    fn forget_handles_where(&self, pred: impl Fn(&(u64, u32, FileKind)) -> bool) {
        let mut h = lock(&self.handles);
        let keys: Vec<_> = h.iter().map(|(k, _)| *k).filter(|k| pred(k)).collect();
        for k in keys {
            h.pop(&k);
        }
    }

    /// Drops the cached handles of volume `id`.
    pub(crate) fn forget_handles(&self, id: u64) {
        self.forget_handles_where(|k| k.0 == id);
    }

    /// Deletes a volume: its record (durably), then its files. Returns the bytes freed.
    pub fn delete_volume(&self, cat: &dyn VolumeCatalog, id: u64) -> Result<u64> {
        let Some(rec) = self.record(id) else {
            return Ok(0);
        };
        cat.remove_volume(id)?;
        self.forget_record(id);
        self.forget_handles(id);
        lock(&self.dirty).retain(|(v, _), _| *v != id);
        Ok(self.remove_files(&rec))
    }

    /// Every file the volume records name: (volume, disk, kind).
    fn known_files(&self) -> Vec<(u64, u32, FileKind)> {
        self.records()
            .iter()
            .flat_map(|r| {
                self.layout(r)
                    .files()
                    .into_iter()
                    .map(move |(d, k)| (r.id, d, k))
            })
            .collect()
    }

    /// Bytes of all volume and shard files on disk.
    pub fn file_bytes(&self) -> u64 {
        self.known_files()
            .into_iter()
            .map(|(id, d, k)| {
                std::fs::metadata(self.file_path(id, d, k))
                    .map(|m| m.len())
                    .unwrap_or(0)
            })
            .sum()
    }

    /// Files in the disk directories that no volume record names (left by a crash between
    /// creating a file and recording it, or by an interrupted placement) and that are older
    /// than `min_age`.
    pub fn orphan_files(&self, min_age: std::time::Duration) -> Vec<PathBuf> {
        let known: HashSet<PathBuf> = self
            .known_files()
            .into_iter()
            .map(|(id, d, k)| self.file_path(id, d, k))
            .collect();
        let active = lock(&self.active).as_ref().map(|a| a.id);
        let mut out = Vec::new();
        for (i, dir) in self.paths().iter().enumerate() {
            if !self.is_online(i as u32) {
                continue;
            }
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                let name = e.file_name().to_string_lossy().into_owned();
                let ours = name.len() > 17
                    && name[..16].bytes().all(|b| b.is_ascii_hexdigit())
                    && (name[16..].starts_with(".vol") || name[16..].starts_with(".s"));
                if !ours || known.contains(&p) {
                    continue;
                }
                if let Some(a) = active {
                    if name.starts_with(&format!("{a:016x}")) {
                        continue;
                    }
                }
                let old = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .map(|age| age >= min_age)
                    .unwrap_or(false);
                if old {
                    out.push(p);
                }
            }
        }
        out
    }

    /// Takes disk `d` out of the pool for new data (draining or removed). A removed disk is
    /// also offline.
    pub fn retire(&self, d: u32, removed: bool) {
        if let Ok(mut r) = self.retired.write() {
            r.insert(d);
        }
        if removed {
            self.set_online(d, false);
        }
    }

    /// Whether disk `d` takes no new data.
    pub fn is_retired(&self, d: u32) -> bool {
        self.retired.read().map(|r| r.contains(&d)).unwrap_or(false)
    }

    /// Adds a new, empty data directory as disk number `paths().len()`.
    pub fn add(&self, path: &Path) -> Result<u32> {
        if path.exists() && !is_empty_dir(path) {
            return Err(StoreError::InvalidArgument(format!(
                "{} is not empty; a new disk must be an empty directory",
                path.display()
            )));
        }
        let mut paths = self
            .paths
            .write()
            .map_err(|_| StoreError::Metadata("disk list poisoned".into()))?;
        let index = paths.len() as u32;
        Self::format(path, self.store_id, index)?;
        paths.push(path.to_path_buf());
        if let Ok(mut o) = self.online.write() {
            o.push(true);
        }
        Ok(index)
    }

    /// Moves disk `index` to a new, empty directory (`disk replace`); scrub then rebuilds it.
    pub fn replace(&self, index: u32, new_path: &Path) -> Result<()> {
        if new_path.exists() && !is_empty_dir(new_path) && DiskMarker::read(new_path).is_none() {
            return Err(StoreError::InvalidArgument(format!(
                "{} is not empty; a replacement disk must be an empty directory",
                new_path.display()
            )));
        }
        Self::format(new_path, self.store_id, index)?;
        self.set_online(index, true);
        self.forget_handles_where(|k| k.1 == index);
        Ok(())
    }
}
