//! The data plane across disks: where each volume's bytes are, and every operation that moves
//! them — appends to replicated open volumes, reads that fail over between replicas or
//! reconstruct from erasure-coded shards, placement (replicas -> K+M shards), scrub with repair,
//! and removal for gc.
//!
//! A volume is a logical append-only byte range (volume.rs). Its [`Layout`] says where the bytes
//! are: whole replica files on R disks while it is open and until it is placed, then K data and
//! M parity shard files on K+M distinct disks (shard.rs). Blob locations (volume, offset) never
//! change when a volume is placed; only its layout record does.
//!
//! Each disk is a directory holding an `objfs-disk.json` that names the store and the disk's
//! index. A missing or foreign directory is *offline*: nothing is written there and reads go to
//! the other copies. An empty directory at a disk's path is formatted and used again (scrub
//! then rebuilds what it should hold).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, IoSliceMut};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use lru::LruCache;

use crate::error::{Result, StoreError};
use crate::local::config::DiskMarker;
use crate::local::erasure::{Scheme, SHARD_CHUNK};
use crate::local::records::{Layout, VolumeRecord, VolumeState};
use crate::local::shard::{self, ShardHeader};
use crate::local::volume::{
    self, blob_disk_len, now_nanos, shard_path, volume_header, volume_path, BlobLocation, ReadAt,
    VOLUME_HEADER_LEN,
};

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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Which file of a volume on a disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum FileKind {
    Replica,
    Shard(u16),
}

/// The volume being appended to, replicated on `disks`.
struct Active {
    id: u64,
    /// Replica files, and the disk each is on.
    files: Vec<Arc<File>>,
    disks: Vec<u32>,
    len: u64,
}

/// What one scrub of one volume found and did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScrubReport {
    pub bytes_checked: u64,
    /// Blob regions (replicated) or shard chunks (erasure-coded) that failed verification or
    /// were missing.
    pub bad: u64,
    pub repaired: u64,
    /// Bad data no good copy or enough shards was left to repair from.
    pub unrepairable: u64,
    /// Copies or shards that live on an offline disk (not checked, not repaired).
    pub offline: u64,
}

impl std::ops::AddAssign for ScrubReport {
    fn add_assign(&mut self, o: Self) {
        self.bytes_checked += o.bytes_checked;
        self.bad += o.bad;
        self.repaired += o.repaired;
        self.unrepairable += o.unrepairable;
        self.offline += o.offline;
    }
}

/// The store's disks and the volumes on them.
pub struct Disks {
    paths: RwLock<Vec<PathBuf>>,
    store_id: u64,
    online: RwLock<Vec<bool>>,
    replicas: usize,
    volume_size: u64,
    active: Mutex<Option<Active>>,
    handles: Mutex<LruCache<(u64, u32, FileKind), Arc<File>>>,
    dirty: Mutex<HashMap<(u64, u32), Arc<File>>>,
    layouts: RwLock<HashMap<u64, VolumeRecord>>,
    schemes: Mutex<HashMap<(u8, u8), Arc<Scheme>>>,
    next_disk: AtomicUsize,
    /// Disks that take no new data: being drained by `disk remove`, or removed.
    retired: RwLock<std::collections::HashSet<u32>>,
}

fn is_empty_dir(p: &Path) -> bool {
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
        })
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
        self.paths
            .read()
            .map(|p| p.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
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

    fn online_flags(&self) -> Vec<bool> {
        self.online
            .read()
            .map(|o| o.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Indices of the disks that are online.
    pub fn online(&self) -> Vec<u32> {
        self.online_flags()
            .iter()
            .enumerate()
            .filter(|(_, o)| **o)
            .map(|(i, _)| i as u32)
            .collect()
    }

    pub fn is_online(&self, d: u32) -> bool {
        self.online_flags()
            .get(d as usize)
            .copied()
            .unwrap_or(false)
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

    fn set_record(&self, rec: VolumeRecord) {
        if let Ok(mut l) = self.layouts.write() {
            l.insert(rec.id, rec);
        }
    }

    fn scheme(&self, k: u8, m: u8) -> Result<Arc<Scheme>> {
        let mut s = lock(&self.schemes);
        if let Some(x) = s.get(&(k, m)) {
            return Ok(x.clone());
        }
        let x = Arc::new(Scheme::new(k as usize, m as usize)?);
        s.insert((k, m), x.clone());
        Ok(x)
    }

    /// Picks `n` distinct online disks, rotating the starting point so volumes spread out.
    fn pick(&self, n: usize) -> Vec<u32> {
        let retired = self.retired.read().map(|r| r.clone()).unwrap_or_default();
        let online: Vec<u32> = self
            .online()
            .into_iter()
            .filter(|d| !retired.contains(d))
            .collect();
        if online.is_empty() {
            return Vec::new();
        }
        let start = self.next_disk.fetch_add(1, Ordering::Relaxed) % online.len();
        (0..n.min(online.len()))
            .map(|i| online[(start + i) % online.len()])
            .collect()
    }

    fn file_path(&self, id: u64, disk: u32, kind: FileKind) -> PathBuf {
        let dir = self.path(disk);
        match kind {
            FileKind::Replica => volume_path(&dir, id),
            FileKind::Shard(i) => shard_path(&dir, id, i as usize),
        }
    }

    fn file(&self, id: u64, disk: u32, kind: FileKind) -> io::Result<Arc<File>> {
        if let Some(f) = lock(&self.handles).get(&(id, disk, kind)) {
            return Ok(f.clone());
        }
        let f = Arc::new(File::open(self.file_path(id, disk, kind))?);
        lock(&self.handles).put((id, disk, kind), f.clone());
        Ok(f)
    }

    fn forget_handles(&self, id: u64) {
        let mut h = lock(&self.handles);
        let keys: Vec<_> = h.iter().map(|(k, _)| *k).filter(|k| k.0 == id).collect();
        for k in keys {
            h.pop(&k);
        }
    }

    // ---- writes ----

    /// Reserves `n` bytes for a blob in the active volume (sealing it and starting a new one when
    /// `n` would not fit) and returns the volume, its replica files and the offset.
    pub fn reserve(&self, cat: &dyn VolumeCatalog, n: u64) -> Result<(u64, Vec<Arc<File>>, u64)> {
        let mut active = lock(&self.active);
        if let Some(a) = active.as_ref() {
            if a.len > VOLUME_HEADER_LEN && a.len + n > self.volume_size {
                let (id, len) = (a.id, a.len);
                *active = None;
                self.seal(cat, id, len)?;
            }
        }
        if active.is_none() {
            *active = Some(self.create_volume(cat)?);
        }
        let a = active
            .as_mut()
            .ok_or_else(|| StoreError::Metadata("no active volume".into()))?;
        let offset = a.len;
        a.len += n;
        {
            let mut d = lock(&self.dirty);
            for (disk, f) in a.disks.iter().zip(&a.files) {
                d.insert((a.id, *disk), f.clone());
            }
        }
        Ok((a.id, a.files.clone(), offset))
    }

    fn seal(&self, cat: &dyn VolumeCatalog, id: u64, len: u64) -> Result<()> {
        if let Some(mut rec) = self.record(id) {
            rec.state = VolumeState::Sealed;
            rec.size = len;
            cat.save_volume(&rec)?;
            self.set_record(rec);
        }
        Ok(())
    }

    fn create_volume(&self, cat: &dyn VolumeCatalog) -> Result<Active> {
        let disks = self.pick(self.replicas);
        if disks.is_empty() {
            return Err(StoreError::NoSpace("no data disk is online".into()));
        }
        if disks.len() < self.replicas {
            tracing::warn!(
                wanted = self.replicas,
                online = disks.len(),
                "fewer disks online than replicas: new data has fewer copies"
            );
        }
        // An id whose file exists (an orphan of some crash) is skipped: never write over it.
        let mut id = cat.new_volume_id()?;
        for _ in 0..1000 {
            if disks
                .iter()
                .all(|d| !self.file_path(id, *d, FileKind::Replica).exists())
            {
                break;
            }
            id = cat.new_volume_id()?;
        }
        let created = now_nanos();
        let mut files = Vec::with_capacity(disks.len());
        for &d in &disks {
            let path = self.file_path(id, d, FileKind::Replica);
            let ctx = |e| StoreError::io(format!("creating volume {}", path.display()), e);
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(ctx)?;
            file.write_all_at(&volume_header(id, created), 0)
                .map_err(ctx)?;
            // The file must exist after a crash before any metadata names it.
            file.sync_all().map_err(ctx)?;
            volume::sync_dir(&self.path(d))?;
            let file = Arc::new(file);
            lock(&self.handles).put((id, d, FileKind::Replica), file.clone());
            files.push(file);
        }
        let rec = VolumeRecord {
            id,
            state: VolumeState::Open,
            size: 0,
            created,
            layout: Layout::Replicated {
                disks: disks.clone(),
            },
            verified_at: 0,
        };
        cat.save_volume(&rec)?;
        self.set_record(rec);
        Ok(Active {
            id,
            files,
            disks,
            len: VOLUME_HEADER_LEN,
        })
    }

    /// Seals the active volume (at close, and before `place --now`).
    pub fn seal_active(&self, cat: &dyn VolumeCatalog) -> Result<()> {
        let mut active = lock(&self.active);
        if let Some(a) = active.take() {
            self.seal(cat, a.id, a.len)?;
        }
        Ok(())
    }

    /// fsyncs every replica file written since the last call.
    pub fn sync_dirty(&self) -> Result<()> {
        let dirty: Vec<((u64, u32), Arc<File>)> = lock(&self.dirty).drain().collect();
        for (i, ((id, disk), file)) in dirty.iter().enumerate() {
            if let Err(e) = file.sync_data() {
                let mut d = lock(&self.dirty);
                for (k, f) in &dirty[i..] {
                    d.insert(*k, f.clone());
                }
                return Err(StoreError::io(
                    format!("syncing volume {id:016x} on disk {disk}"),
                    e,
                ));
            }
        }
        Ok(())
    }

    pub fn has_dirty(&self) -> bool {
        !lock(&self.dirty).is_empty()
    }

    // ---- reads ----

    /// Reads `range` of a blob's data into `out`, verified. Replicated volumes fail over between
    /// copies; erasure-coded ones read the data shard, and reconstruct from verified shards when
    /// it is missing or corrupt.
    pub fn read_blob(
        &self,
        loc: &BlobLocation,
        range: std::ops::Range<u64>,
        out: &mut [u8],
        what: &dyn Fn() -> String,
    ) -> Result<()> {
        // A concurrent placement or compaction may change the layout between our lookup and
        // the read: retry once with the new layout.
        let mut last = None;
        for _ in 0..2 {
            let Some(rec) = self.record(loc.volume) else {
                return Err(StoreError::Corrupt {
                    what: format!("{}: volume {:016x} has no record", what(), loc.volume),
                });
            };
            let r = match &rec.layout {
                Layout::Replicated { disks } => {
                    self.read_replicated(&rec, disks, loc, range.clone(), out, what)
                }
                Layout::Erasure { .. } => self.read_erasure(&rec, loc, range.clone(), out, what),
            };
            match r {
                Ok(()) => return Ok(()),
                Err(e) => {
                    let changed = self
                        .record(loc.volume)
                        .map(|n| n.layout != rec.layout)
                        .unwrap_or(false);
                    last = Some(e);
                    if !changed {
                        break;
                    }
                }
            }
        }
        Err(last.unwrap_or_else(|| StoreError::Corrupt { what: what() }))
    }

    fn read_replicated(
        &self,
        rec: &VolumeRecord,
        disks: &[u32],
        loc: &BlobLocation,
        range: std::ops::Range<u64>,
        out: &mut [u8],
        what: &dyn Fn() -> String,
    ) -> Result<()> {
        let mut order: Vec<u32> = disks
            .iter()
            .copied()
            .filter(|d| self.is_online(*d))
            .collect();
        order.extend(disks.iter().copied().filter(|d| !self.is_online(*d)));
        let mut errors = Vec::new();
        for d in order {
            let f = match self.file(rec.id, d, FileKind::Replica) {
                Ok(f) => f,
                Err(e) => {
                    errors.push(format!("disk {d}: {e}"));
                    continue;
                }
            };
            match volume::read_blob_range(&*f, loc, range.clone(), out, what) {
                Ok(()) => {
                    if !errors.is_empty() {
                        tracing::warn!(
                            volume = rec.id,
                            "read served by another replica: {}",
                            errors.join("; ")
                        );
                    }
                    return Ok(());
                }
                Err(e @ (StoreError::Corrupt { .. } | StoreError::Io { .. })) => {
                    errors.push(format!("disk {d}: {e}"));
                }
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Corrupt {
            what: format!(
                "{}: no replica of volume {:016x} is readable ({})",
                what(),
                rec.id,
                errors.join("; ")
            ),
        })
    }

    fn read_erasure(
        &self,
        rec: &VolumeRecord,
        loc: &BlobLocation,
        range: std::ops::Range<u64>,
        out: &mut [u8],
        what: &dyn Fn() -> String,
    ) -> Result<()> {
        let healthy = ErasureReader {
            disks: self,
            rec,
            degraded: false,
        };
        match volume::read_blob_range(&healthy, loc, range.clone(), out, what) {
            Ok(()) => Ok(()),
            Err(StoreError::Corrupt { .. } | StoreError::Io { .. }) => {
                let degraded = ErasureReader {
                    disks: self,
                    rec,
                    degraded: true,
                };
                volume::read_blob_range(&degraded, loc, range, out, what).map_err(|e| match e {
                    StoreError::Corrupt { .. } | StoreError::Io { .. } => StoreError::Corrupt {
                        what: format!(
                            "{}: volume {:016x} cannot be reconstructed ({e})",
                            what(),
                            rec.id
                        ),
                    },
                    other => other,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Reads a whole blob region (header + blocks) verified, from any copy or by
    /// reconstruction. Used by placement, scrub and compaction.
    pub fn read_region(&self, loc: &BlobLocation) -> Result<Vec<u8>> {
        let len = blob_disk_len(loc.len, loc.block_size) as usize;
        let rec = self.record(loc.volume).ok_or_else(|| StoreError::Corrupt {
            what: format!("volume {:016x} has no record", loc.volume),
        })?;
        let mut buf = vec![0u8; len];
        match &rec.layout {
            Layout::Replicated { disks } => {
                for &d in disks {
                    if let Ok(f) = self.file(rec.id, d, FileKind::Replica) {
                        if f.read_exact_at(&mut buf, loc.offset).is_ok()
                            && volume::verify_region(&buf, loc)
                        {
                            return Ok(buf);
                        }
                    }
                }
            }
            Layout::Erasure { .. } => {
                for degraded in [false, true] {
                    let r = ErasureReader {
                        disks: self,
                        rec: &rec,
                        degraded,
                    };
                    if r.read_all_at(&mut buf, loc.offset).is_ok()
                        && volume::verify_region(&buf, loc)
                    {
                        return Ok(buf);
                    }
                }
            }
        }
        Err(StoreError::Corrupt {
            what: format!(
                "blob {} in volume {:016x}: no good copy",
                loc.blob, loc.volume
            ),
        })
    }

    // ---- placement ----

    /// Erasure-codes a sealed, replicated volume into K+M shards on distinct disks, records the
    /// new layout durably, then deletes the replicas. `blobs` are the live blobs in it: only
    /// their bytes (verified) are carried over; the rest of the volume becomes zeros.
    /// Returns false when the volume is not eligible (open, already placed, too few disks).
    pub fn place(
        &self,
        cat: &dyn VolumeCatalog,
        id: u64,
        blobs: &[BlobLocation],
        k: u8,
        m: u8,
    ) -> Result<bool> {
        let Some(rec) = self.record(id) else {
            return Ok(false);
        };
        let Layout::Replicated {
            disks: replica_disks,
        } = rec.layout.clone()
        else {
            return Ok(false);
        };
        if rec.state != VolumeState::Sealed {
            return Ok(false);
        }
        let scheme = self.scheme(k, m)?;
        let targets = self.pick(k as usize + m as usize);
        if targets.len() < k as usize + m as usize {
            tracing::warn!(
                volume = id,
                "not enough online disks to place volume {k}+{m}"
            );
            return Ok(false);
        }
        let size = rec.size.max(VOLUME_HEADER_LEN);
        let shard_len = scheme.shard_len(size);
        let mut image = vec![0u8; (shard_len * k as u64) as usize];
        image[..VOLUME_HEADER_LEN as usize].copy_from_slice(&volume_header(id, rec.created));
        for loc in blobs {
            let at = loc.offset as usize;
            match self.read_region(loc) {
                Ok(region) if at + region.len() <= image.len() => {
                    image[at..at + region.len()].copy_from_slice(&region)
                }
                Ok(_) => {
                    return Err(StoreError::Corrupt {
                        what: format!("blob {} lies outside volume {id:016x}", loc.blob),
                    })
                }
                Err(e) => {
                    // Every copy is bad: keep the best bytes we have so reads still report the
                    // loss (the blob checksums stay), never invent data.
                    tracing::error!(volume = id, blob = loc.blob, error = %e, "placing a blob no copy of which verifies");
                    let len = blob_disk_len(loc.len, loc.block_size) as usize;
                    if let Some(f) = replica_disks
                        .iter()
                        .find_map(|d| self.file(id, *d, FileKind::Replica).ok())
                    {
                        if at + len <= image.len() {
                            let _ = f.read_exact_at(&mut image[at..at + len], loc.offset);
                        }
                    }
                }
            }
        }
        let mut parity = vec![vec![0u8; shard_len as usize]; m as usize];
        {
            let data: Vec<&[u8]> = image.chunks(shard_len as usize).collect();
            let mut p: Vec<&mut [u8]> = parity.iter_mut().map(|v| v.as_mut_slice()).collect();
            scheme.encode(&data, &mut p)?;
        }
        for (i, &d) in targets.iter().enumerate() {
            let data: &[u8] = if i < k as usize {
                &image[i * shard_len as usize..(i + 1) * shard_len as usize]
            } else {
                &parity[i - k as usize]
            };
            let header = ShardHeader {
                index: i as u16,
                k,
                m,
                volume: id,
                shard_len,
                chunk: SHARD_CHUNK as u32,
            };
            shard::write_shard(
                &self.file_path(id, d, FileKind::Shard(i as u16)),
                header,
                data,
            )?;
        }
        for d in &targets {
            volume::sync_dir(&self.path(*d))?;
        }
        let placed = VolumeRecord {
            layout: Layout::Erasure {
                k,
                m,
                shard_len,
                disks: targets,
            },
            verified_at: now_nanos(),
            ..rec
        };
        // Only once the new layout is durable may the replicas go.
        cat.save_volume_durably(&placed)?;
        self.set_record(placed);
        self.forget_handles(id);
        for d in replica_disks {
            let p = self.file_path(id, d, FileKind::Replica);
            if let Err(e) = std::fs::remove_file(&p) {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(file = %p.display(), error = %e, "could not remove a placed replica");
                }
            }
        }
        Ok(true)
    }

    // ---- scrub ----

    /// Verifies every copy or shard of a volume and repairs what it can. `blobs` are the live
    /// blobs of a replicated volume (unused for erasure-coded ones, whose shards carry their
    /// own checksums).
    pub fn scrub(
        &self,
        cat: &dyn VolumeCatalog,
        id: u64,
        blobs: &[BlobLocation],
    ) -> Result<ScrubReport> {
        let Some(rec) = self.record(id) else {
            return Ok(ScrubReport::default());
        };
        let report = match &rec.layout {
            Layout::Replicated { disks } => self.scrub_replicated(&rec, disks, blobs)?,
            Layout::Erasure {
                k,
                m,
                shard_len,
                disks,
            } => self.scrub_erasure(&rec, *k, *m, *shard_len, disks)?,
        };
        if report.unrepairable == 0 {
            if let Some(mut r) = self.record(id) {
                if r.layout == rec.layout {
                    r.verified_at = now_nanos();
                    cat.save_volume(&r)?;
                    self.set_record(r);
                }
            }
        }
        Ok(report)
    }

    fn scrub_replicated(
        &self,
        rec: &VolumeRecord,
        disks: &[u32],
        blobs: &[BlobLocation],
    ) -> Result<ScrubReport> {
        let mut rep = ScrubReport::default();
        let mut files: Vec<(u32, Option<Arc<File>>)> = Vec::new();
        for &d in disks {
            if !self.is_online(d) {
                rep.offline += 1;
                continue;
            }
            files.push((d, self.file(rec.id, d, FileKind::Replica).ok()));
        }
        // A replica file missing on an online disk: rebuild it from the others.
        for (d, f) in files.iter_mut() {
            if f.is_some() {
                continue;
            }
            rep.bad += 1;
            let path = self.file_path(rec.id, *d, FileKind::Replica);
            let mut ok = true;
            let ctx = |e| StoreError::io(format!("rebuilding {}", path.display()), e);
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .map_err(ctx)?;
            file.write_all_at(&volume_header(rec.id, rec.created), 0)
                .map_err(ctx)?;
            for loc in blobs {
                match self.read_region(loc) {
                    Ok(region) => file.write_all_at(&region, loc.offset).map_err(ctx)?,
                    Err(_) => {
                        ok = false;
                        rep.unrepairable += 1;
                    }
                }
            }
            if rec.size > 0 {
                file.set_len(rec.size.max(file.metadata().map(|m| m.len()).unwrap_or(0)))
                    .map_err(ctx)?;
            }
            file.sync_all().map_err(ctx)?;
            volume::sync_dir(&self.path(*d))?;
            if ok {
                rep.repaired += 1;
            }
            let file = Arc::new(file);
            lock(&self.handles).put((rec.id, *d, FileKind::Replica), file.clone());
            *f = Some(file);
        }
        for loc in blobs {
            let len = blob_disk_len(loc.len, loc.block_size) as usize;
            let mut good: Option<Vec<u8>> = None;
            let mut bad_on = Vec::new();
            for (d, f) in &files {
                let Some(f) = f else { continue };
                let mut buf = vec![0u8; len];
                rep.bytes_checked += len as u64;
                if f.read_exact_at(&mut buf, loc.offset).is_ok() && volume::verify_region(&buf, loc)
                {
                    if good.is_none() {
                        good = Some(buf);
                    }
                } else {
                    bad_on.push((*d, f.clone()));
                }
            }
            rep.bad += bad_on.len() as u64;
            match good {
                Some(region) => {
                    for (d, f) in bad_on {
                        // Open for writing: handles are read-only.
                        let path = self.file_path(rec.id, d, FileKind::Replica);
                        let w = OpenOptions::new().write(true).open(&path);
                        match w.and_then(|w| {
                            w.write_all_at(&region, loc.offset)
                                .and_then(|_| w.sync_data())
                        }) {
                            Ok(()) => {
                                rep.repaired += 1;
                                drop(f);
                            }
                            Err(e) => {
                                tracing::error!(file = %path.display(), error = %e, "could not repair a replica");
                                rep.unrepairable += 1;
                            }
                        }
                    }
                }
                None if !bad_on.is_empty() => {
                    tracing::error!(
                        volume = rec.id,
                        blob = loc.blob,
                        "no replica of this blob verifies"
                    );
                    rep.unrepairable += 1;
                }
                None => {}
            }
        }
        Ok(rep)
    }

    fn scrub_erasure(
        &self,
        rec: &VolumeRecord,
        k: u8,
        m: u8,
        shard_len: u64,
        disks: &[u32],
    ) -> Result<ScrubReport> {
        let mut rep = ScrubReport::default();
        let n = k as usize + m as usize;
        let header = |i: usize| ShardHeader {
            index: i as u16,
            k,
            m,
            volume: rec.id,
            shard_len,
            chunk: SHARD_CHUNK as u32,
        };
        // Which chunks of which shard are bad (None = the whole shard file must be rebuilt).
        let mut damage: Vec<(usize, Option<Vec<u64>>)> = Vec::new();
        for (i, &d) in disks.iter().enumerate().take(n) {
            if !self.is_online(d) {
                rep.offline += 1;
                continue;
            }
            rep.bytes_checked += shard_len;
            let path = self.file_path(rec.id, d, FileKind::Shard(i as u16));
            match File::open(&path) {
                Ok(f) => match shard::verify(&f, &header(i)) {
                    Ok(bad) if bad.is_empty() => {}
                    Ok(bad) => damage.push((i, Some(bad))),
                    Err(_) => damage.push((i, None)),
                },
                Err(_) => damage.push((i, None)),
            }
        }
        let chunks = shard_len.div_ceil(SHARD_CHUNK);
        for (_, bad) in &damage {
            rep.bad += bad.as_ref().map(|b| b.len() as u64).unwrap_or(chunks);
        }
        if damage.is_empty() {
            return Ok(rep);
        }
        let scheme = self.scheme(k, m)?;
        let damaged: Vec<usize> = damage.iter().map(|(i, _)| *i).collect();
        // Rebuild chunk by chunk (bounded memory), from verified chunks of the other shards.
        let mut rebuilt: HashMap<usize, Vec<u8>> = HashMap::new();
        let whole: Vec<usize> = damage
            .iter()
            .filter(|(_, b)| b.is_none())
            .map(|(i, _)| *i)
            .collect();
        // Spans of chunks: 64 chunks (4 MiB) at a time when only whole shards are rebuilt,
        // one chunk at a time when some shard needs individual chunks repaired in place.
        let step = if damage.iter().all(|(_, b)| b.is_none()) {
            64
        } else {
            1
        };
        let mut c = 0;
        while c < chunks {
            let first = c;
            c = (c + step).min(chunks);
            let span = first * SHARD_CHUNK..(c * SHARD_CHUNK).min(shard_len);
            let needs: Vec<usize> = damage
                .iter()
                .filter(|(_, b)| b.as_ref().map(|b| b.contains(&first)).unwrap_or(true))
                .map(|(i, _)| *i)
                .collect();
            if needs.is_empty() {
                continue;
            }
            let mut shards: Vec<Option<Vec<u8>>> = (0..n)
                .map(|j| {
                    if needs.contains(&j) {
                        return None;
                    }
                    let d = *disks.get(j)?;
                    let f = self.file(rec.id, d, FileKind::Shard(j as u16)).ok()?;
                    shard::read_verified(&f, &header(j), span.clone())
                        .ok()
                        .flatten()
                })
                .collect();
            if scheme.reconstruct(&mut shards).is_err() {
                rep.unrepairable += needs.len() as u64;
                continue;
            }
            for &i in &needs {
                let Some(data) = shards[i].take() else {
                    continue;
                };
                if whole.contains(&i) {
                    rebuilt
                        .entry(i)
                        .or_insert_with(|| Vec::with_capacity(shard_len as usize))
                        .extend_from_slice(&data);
                } else {
                    let d = disks[i];
                    let path = self.file_path(rec.id, d, FileKind::Shard(i as u16));
                    let res = OpenOptions::new()
                        .read(true)
                        .write(true)
                        .open(&path)
                        .map_err(|e| StoreError::io(format!("opening {}", path.display()), e))
                        .and_then(|f| shard::rewrite_chunks(&f, &header(i), span.start, &data));
                    match res {
                        Ok(()) => rep.repaired += 1,
                        Err(e) => {
                            tracing::error!(error = %e, "could not repair a shard chunk");
                            rep.unrepairable += 1;
                        }
                    }
                }
            }
        }
        for i in whole {
            match rebuilt.remove(&i) {
                Some(data) if data.len() as u64 == shard_len => {
                    let d = disks[i];
                    shard::write_shard(
                        &self.file_path(rec.id, d, FileKind::Shard(i as u16)),
                        header(i),
                        &data,
                    )?;
                    volume::sync_dir(&self.path(d))?;
                    rep.repaired += chunks;
                }
                _ => {}
            }
        }
        self.forget_handles(rec.id);
        let _ = damaged;
        Ok(rep)
    }

    // ---- removal ----

    /// Deletes a volume: its record (durably), then its files. Returns the bytes freed.
    pub fn delete_volume(&self, cat: &dyn VolumeCatalog, id: u64) -> Result<u64> {
        let Some(rec) = self.record(id) else {
            return Ok(0);
        };
        cat.remove_volume(id)?;
        if let Ok(mut l) = self.layouts.write() {
            l.remove(&id);
        }
        self.forget_handles(id);
        lock(&self.dirty).retain(|(v, _), _| *v != id);
        let mut freed = 0;
        for (d, kind) in Self::files_of(&rec) {
            let p = self.file_path(id, d, kind);
            freed += std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
            let _ = std::fs::remove_file(&p);
        }
        Ok(freed)
    }

    fn files_of(rec: &VolumeRecord) -> Vec<(u32, FileKind)> {
        match &rec.layout {
            Layout::Replicated { disks } => disks.iter().map(|d| (*d, FileKind::Replica)).collect(),
            Layout::Erasure { disks, .. } => disks
                .iter()
                .enumerate()
                .map(|(i, d)| (*d, FileKind::Shard(i as u16)))
                .collect(),
        }
    }

    /// Bytes of all volume and shard files on disk.
    pub fn file_bytes(&self) -> u64 {
        self.records()
            .iter()
            .flat_map(|r| {
                Self::files_of(r)
                    .into_iter()
                    .map(move |(d, k)| (r.id, d, k))
            })
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
        let known: std::collections::HashSet<PathBuf> = self
            .records()
            .iter()
            .flat_map(|r| {
                Self::files_of(r)
                    .into_iter()
                    .map(move |(d, k)| (r.id, d, k))
            })
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
            if let Ok(mut o) = self.online.write() {
                if let Some(x) = o.get_mut(d as usize) {
                    *x = false;
                }
            }
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

    /// Moves every replica and shard off disk `d` onto disks the volume does not use yet,
    /// recording each new layout durably before deleting the old file. `blobs` are the live
    /// blobs by volume (a moved replica is rebuilt from verified blob regions).
    pub fn drain(
        &self,
        cat: &dyn VolumeCatalog,
        d: u32,
        blobs: &HashMap<u64, Vec<BlobLocation>>,
    ) -> Result<u64> {
        let mut moved = 0;
        for rec in self.records() {
            let uses: Vec<usize> = match &rec.layout {
                Layout::Replicated { disks } | Layout::Erasure { disks, .. } => disks
                    .iter()
                    .enumerate()
                    .filter(|(_, x)| **x == d)
                    .map(|(i, _)| i)
                    .collect(),
            };
            for pos in uses {
                let taken: Vec<u32> = match &rec.layout {
                    Layout::Replicated { disks } | Layout::Erasure { disks, .. } => disks.clone(),
                };
                let retired = self.retired.read().map(|r| r.clone()).unwrap_or_default();
                let Some(target) = self
                    .online()
                    .into_iter()
                    .find(|x| !taken.contains(x) && !retired.contains(x))
                else {
                    return Err(StoreError::InvalidArgument(format!(
                        "cannot move volume {:016x} off disk {d}: every other online disk already \
                         holds part of it (add a disk first)",
                        rec.id
                    )));
                };
                let mut new = self.record(rec.id).unwrap_or_else(|| rec.clone());
                match &mut new.layout {
                    Layout::Replicated { disks } => {
                        let locs = blobs.get(&rec.id).map(|v| v.as_slice()).unwrap_or(&[]);
                        let path = self.file_path(rec.id, target, FileKind::Replica);
                        let ctx = |e| StoreError::io(format!("writing {}", path.display()), e);
                        let file = OpenOptions::new()
                            .write(true)
                            .create(true)
                            .truncate(true)
                            .open(&path)
                            .map_err(ctx)?;
                        file.write_all_at(&volume_header(rec.id, rec.created), 0)
                            .map_err(ctx)?;
                        for loc in locs {
                            file.write_all_at(&self.read_region(loc)?, loc.offset)
                                .map_err(ctx)?;
                        }
                        if rec.size > 0 {
                            file.set_len(rec.size).map_err(ctx)?;
                        }
                        file.sync_all().map_err(ctx)?;
                        disks[pos] = target;
                    }
                    Layout::Erasure {
                        k,
                        m,
                        shard_len,
                        disks,
                    } => {
                        let (k, m, shard_len) = (*k, *m, *shard_len);
                        let header = ShardHeader {
                            index: pos as u16,
                            k,
                            m,
                            volume: rec.id,
                            shard_len,
                            chunk: SHARD_CHUNK as u32,
                        };
                        let data = self.shard_data(rec.id, &taken, k, m, shard_len, pos)?;
                        shard::write_shard(
                            &self.file_path(rec.id, target, FileKind::Shard(pos as u16)),
                            header,
                            &data,
                        )?;
                        disks[pos] = target;
                    }
                }
                volume::sync_dir(&self.path(target))?;
                cat.save_volume_durably(&new)?;
                let old_kind = match &rec.layout {
                    Layout::Replicated { .. } => FileKind::Replica,
                    Layout::Erasure { .. } => FileKind::Shard(pos as u16),
                };
                self.set_record(new);
                self.forget_handles(rec.id);
                let _ = std::fs::remove_file(self.file_path(rec.id, d, old_kind));
                moved += 1;
            }
        }
        Ok(moved)
    }

    /// The whole data of shard `index` of a volume: the file itself when it verifies, otherwise
    /// reconstructed from the other shards.
    fn shard_data(
        &self,
        id: u64,
        disks: &[u32],
        k: u8,
        m: u8,
        shard_len: u64,
        index: usize,
    ) -> Result<Vec<u8>> {
        let header = |j: usize| ShardHeader {
            index: j as u16,
            k,
            m,
            volume: id,
            shard_len,
            chunk: SHARD_CHUNK as u32,
        };
        let read = |j: usize| -> Option<Vec<u8>> {
            let f = self
                .file(id, *disks.get(j)?, FileKind::Shard(j as u16))
                .ok()?;
            shard::read_verified(&f, &header(j), 0..shard_len)
                .ok()
                .flatten()
        };
        if let Some(d) = read(index) {
            return Ok(d);
        }
        let scheme = self.scheme(k, m)?;
        let mut shards: Vec<Option<Vec<u8>>> = (0..k as usize + m as usize)
            .map(|j| if j == index { None } else { read(j) })
            .collect();
        scheme.reconstruct(&mut shards)?;
        shards[index].take().ok_or_else(|| StoreError::Corrupt {
            what: format!("shard {index} of volume {id:016x} could not be rebuilt"),
        })
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
        if let Ok(mut o) = self.online.write() {
            if let Some(x) = o.get_mut(index as usize) {
                *x = true;
            }
        }
        let mut h = lock(&self.handles);
        let keys: Vec<_> = h.iter().map(|(k, _)| *k).filter(|k| k.1 == index).collect();
        for k in keys {
            h.pop(&k);
        }
        Ok(())
    }
}

/// Reads logical byte ranges of an erasure-coded volume.
struct ErasureReader<'a> {
    disks: &'a Disks,
    rec: &'a VolumeRecord,
    /// Verify shard chunks and reconstruct instead of trusting the data shards.
    degraded: bool,
}

impl ErasureReader<'_> {
    fn read_range(&self, range: std::ops::Range<u64>) -> io::Result<Vec<u8>> {
        let Layout::Erasure {
            k,
            m,
            shard_len,
            disks,
        } = &self.rec.layout
        else {
            return Err(io::Error::other("not an erasure-coded volume"));
        };
        let scheme = self.disks.scheme(*k, *m).map_err(io::Error::other)?;
        let mut out = Vec::with_capacity((range.end - range.start) as usize);
        for (shard_idx, srange) in scheme.pieces(*shard_len, range) {
            if !self.degraded {
                let d = *disks
                    .get(shard_idx)
                    .ok_or_else(|| io::Error::other("shard has no disk"))?;
                let f = self
                    .disks
                    .file(self.rec.id, d, FileKind::Shard(shard_idx as u16))?;
                out.extend_from_slice(&shard::read_raw(&f, srange)?);
                continue;
            }
            let span = shard::chunk_span(&srange, *shard_len);
            let header = |j: usize| ShardHeader {
                index: j as u16,
                k: *k,
                m: *m,
                volume: self.rec.id,
                shard_len: *shard_len,
                chunk: SHARD_CHUNK as u32,
            };
            let read = |j: usize| -> Option<Vec<u8>> {
                let d = *disks.get(j)?;
                let f = self
                    .disks
                    .file(self.rec.id, d, FileKind::Shard(j as u16))
                    .ok()?;
                match shard::read_header(&f) {
                    Ok(Some(h)) if h == header(j) => {
                        shard::read_verified(&f, &h, span.clone()).ok().flatten()
                    }
                    _ => None,
                }
            };
            let data = match read(shard_idx) {
                Some(d) => d,
                None => {
                    let n = *k as usize + *m as usize;
                    let mut shards: Vec<Option<Vec<u8>>> = (0..n)
                        .map(|j| if j == shard_idx { None } else { read(j) })
                        .collect();
                    scheme.reconstruct(&mut shards).map_err(io::Error::other)?;
                    shards[shard_idx]
                        .take()
                        .ok_or_else(|| io::Error::other("reconstruction gave nothing"))?
                }
            };
            let from = (srange.start - span.start) as usize;
            let to = (srange.end - span.start) as usize;
            out.extend_from_slice(
                data.get(from..to)
                    .ok_or_else(|| io::Error::other("short shard"))?,
            );
        }
        Ok(out)
    }
}

impl ReadAt for ErasureReader<'_> {
    fn read_vectored_exact_at(&self, bufs: &mut [IoSliceMut<'_>], offset: u64) -> io::Result<()> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let data = self.read_range(offset..offset + total as u64)?;
        let mut at = 0;
        for b in bufs.iter_mut() {
            let n = b.len();
            b.copy_from_slice(&data[at..at + n]);
            at += n;
        }
        Ok(())
    }
}
