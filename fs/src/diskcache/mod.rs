//! A local disk cache of object data for remote mounts (`--cache-dir DIR --cache-size SIZE`).
//!
//! It sits under the in-memory block cache of [`crate::read`]: a block missing from memory is
//! looked up here before it is fetched from the store, and a block fetched from the store is
//! written here. It exists so that a remote mount reads data it has read before at local disk
//! speed, across remounts, within a bound the user chooses.
//!
//! * **Identity.** A block is named by key, version id, the ETag and size of the version, and
//!   its offset ([`block::Identity`]). The ETag is what makes a cached block impossible to
//!   serve for other content: a bucket without versioning calls every version `null`, so an
//!   overwrite by another machine changes only the ETag. Blocks are written under the identity
//!   the store's answer carried (its ETag), never under the one a reader asked for.
//! * **Files.** One file per block under `DIR/blocks/XX/`, named by a hash of the identity,
//!   with a header saying whose block it is and a BLAKE3 hash of the whole file
//!   ([`block`], docs/FORMAT.md). A read checks both; a corrupt, truncated or foreign file is
//!   deleted and counted as a miss, so the block is fetched again. Files are written to a
//!   temporary name and renamed, and never fsynced: a cache loses nothing by a crash, and what
//!   a power loss leaves half-written fails its hash.
//! * **Bound.** An LRU index ([`index`]) of the files' sizes bounded by SIZE: a write that
//!   goes over it deletes the least recently used files. At open the index is rebuilt by
//!   scanning `DIR/blocks` (by modification time, which a hit refreshes), so the cache survives
//!   a remount.
//! * **One owner.** `DIR/objfs-cache.lock` is held (flock) while the cache is open and names
//!   the holder's pid; a second mount with the same directory waits up to 5 s (for a mount
//!   that was just unmounted and is closing), then gets [`DiskCacheError::InUse`].
//! * **Never fails a read.** A write that fails (a full disk, an unwritable directory) is
//!   logged and the read goes on uncached; a lookup that fails is a miss.

pub mod block;
pub mod index;

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use objfs_store::owner_lock::{LockError, OwnerLock};

pub use block::Identity;
use index::Index;

/// Name of the lock file in the cache directory.
pub const LOCK_FILE: &str = "objfs-cache.lock";

/// How long an open waits for another mount's lock (a mount that was just unmounted and is
/// still closing) before it refuses.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// Directory of the block files in the cache directory.
pub const BLOCKS_DIR: &str = "blocks";

/// Why a cache directory could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum DiskCacheError {
    /// Another process has the directory open as its cache.
    #[error(
        "the cache directory {dir} is in use by another mount{holder}: give each mount its own \
         --cache-dir"
    )]
    InUse { dir: PathBuf, holder: String },
    /// The directory cannot be used (created, written, locked).
    #[error("cannot use {path} as a cache directory: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What the cache holds and has done, for `objfs status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskCacheStats {
    pub dir: PathBuf,
    /// The byte limit (SIZE).
    pub limit: u64,
    /// Bytes of block files now.
    pub used: u64,
    /// Block files now.
    pub blocks: u64,
    /// Blocks served from disk.
    pub hits: u64,
    /// Blocks looked up and not found (then fetched from the store).
    pub misses: u64,
    /// Blocks written.
    pub fills: u64,
    /// Block files deleted to stay within the limit.
    pub evictions: u64,
    /// Block files refused (corrupt, truncated, foreign) and deleted.
    pub dropped: u64,
    /// Writes that failed (full disk, unwritable directory): those reads went uncached.
    pub write_errors: u64,
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    fills: AtomicU64,
    evictions: AtomicU64,
    dropped: AtomicU64,
    write_errors: AtomicU64,
}

/// The disk cache of one mount.
pub struct DiskCache {
    dir: PathBuf,
    blocks: PathBuf,
    index: Mutex<Index>,
    counters: Counters,
    /// A write failure was logged as a warning (later ones are logged at debug level).
    warned: AtomicBool,
    tmp_seq: AtomicU64,
    _lock: OwnerLock,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DiskCacheError + '_ {
    move |source| DiskCacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl DiskCache {
    /// Opens (creating it if needed) the cache in `dir`, bounded by `limit` bytes: takes its
    /// lock, then rebuilds the index from the block files there (deleting leftover temporary
    /// files and whatever is over the limit).
    pub fn open(dir: &Path, limit: u64) -> Result<DiskCache, DiskCacheError> {
        let blocks = dir.join(BLOCKS_DIR);
        fs::create_dir_all(&blocks).map_err(io_err(&blocks))?;
        let dir = fs::canonicalize(dir).map_err(io_err(dir))?;
        let blocks = dir.join(BLOCKS_DIR);
        let lock_path = dir.join(LOCK_FILE);
        // A mount just unmounted may still be closing: wait for it a little.
        let lock = OwnerLock::acquire(&lock_path, LOCK_WAIT).map_err(|e| match e {
            LockError::Held { .. } => DiskCacheError::InUse {
                dir: dir.clone(),
                holder: e.holder(),
            },
            LockError::Io { path, source } => io_err(&path)(source),
        })?;
        let mut index = Index::new(limit);
        let mut evicted = Vec::new();
        for (name, size) in scan(&blocks) {
            evicted.extend(index.insert(name, size));
        }
        let cache = DiskCache {
            dir,
            blocks,
            index: Mutex::new(index),
            counters: Counters::default(),
            warned: AtomicBool::new(false),
            tmp_seq: AtomicU64::new(0),
            _lock: lock,
        };
        cache.delete(&evicted);
        tracing::info!(
            dir = %cache.dir.display(),
            limit,
            blocks = cache.stats().blocks,
            used = cache.stats().used,
            "disk cache opened"
        );
        Ok(cache)
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_of(&self, name: &str) -> PathBuf {
        self.blocks.join(&name[..2]).join(name)
    }

    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        // The index holds no invariant a panic elsewhere could break half-way.
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The block `id`, `len` bytes long, when a good file holds it. Blocking I/O.
    pub fn get(&self, id: &Identity<'_>, len: usize) -> Option<Bytes> {
        let name = id.file_name();
        if !self.index().touch(&name) {
            self.counters.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let path = self.path_of(&name);
        let read = File::open(&path).and_then(|mut f| {
            let mut buf = Vec::with_capacity(len + 1024);
            f.read_to_end(&mut buf)?;
            // Refreshes the file's place in the order a rescan rebuilds (best effort).
            let _ = f.set_modified(SystemTime::now());
            Ok(buf)
        });
        let refused = match read {
            Ok(buf) => match block::check(&buf, id) {
                Ok(r) if r.len() == len => {
                    self.counters.hits.fetch_add(1, Ordering::Relaxed);
                    return Some(Bytes::from(buf).slice(r));
                }
                Ok(r) => format!("holds {} bytes, not {len}", r.len()),
                Err(e) => e.to_string(),
            },
            Err(e) if e.kind() == ErrorKind::NotFound => "is gone".to_string(),
            Err(e) => format!("cannot be read: {e}"),
        };
        tracing::warn!(file = %path.display(), key = id.key, offset = id.offset,
            "disk cache: block file {refused}: dropped, the block is fetched again");
        self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        self.counters.misses.fetch_add(1, Ordering::Relaxed);
        self.index().remove(&name);
        let _ = fs::remove_file(&path);
        None
    }

    /// Writes the block `id` holding `data`. Failures are logged and counted, never returned:
    /// the read that fetched the block goes on without the cache. Blocking I/O.
    pub fn put(&self, id: &Identity<'_>, data: &[u8]) {
        let name = id.file_name();
        let path = self.path_of(&name);
        if let Err(e) = self.write_file(name, &path, id, data) {
            self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
            if !self.warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(dir = %self.dir.display(), error = %e,
                    "disk cache: cannot write a block, reading on without caching it \
                     (further failures are logged at debug level)");
            } else {
                tracing::debug!(file = %path.display(), error = %e, "disk cache: write failed");
            }
        }
    }

    /// Writes the file under a temporary name, then, holding the index, deletes what the
    /// bound evicts and renames it into place: the named block files never exceed the bound.
    fn write_file(
        &self,
        name: String,
        path: &Path,
        id: &Identity<'_>,
        data: &[u8],
    ) -> std::io::Result<()> {
        let bytes =
            block::encode(id, data).map_err(|e| std::io::Error::new(ErrorKind::InvalidInput, e))?;
        let seq = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        let parent = path.parent().unwrap_or(&self.blocks);
        let tmp = parent.join(format!(".{seq}.tmp"));
        let create = || OpenOptions::new().write(true).create_new(true).open(&tmp);
        let mut f = match create() {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                fs::create_dir_all(parent)?;
                create()?
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                fs::remove_file(&tmp)?;
                create()?
            }
            r => r?,
        };
        if let Err(e) = f.write_all(&bytes) {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        drop(f);
        let mut index = self.index();
        let evicted = index.insert(name.clone(), bytes.len() as u64);
        self.delete(&evicted);
        if evicted.contains(&name) {
            let _ = fs::remove_file(&tmp);
            return Ok(());
        }
        if let Err(e) = fs::rename(&tmp, path) {
            index.remove(&name);
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        self.counters.fills.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn delete(&self, names: &[String]) {
        for n in names {
            self.counters.evictions.fetch_add(1, Ordering::Relaxed);
            let _ = fs::remove_file(self.path_of(n));
        }
    }

    /// What the cache holds and has done.
    pub fn stats(&self) -> DiskCacheStats {
        let (used, blocks, limit) = {
            let ix = self.index();
            (ix.bytes(), ix.len() as u64, ix.limit())
        };
        let c = &self.counters;
        DiskCacheStats {
            dir: self.dir.clone(),
            limit,
            used,
            blocks,
            hits: c.hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            fills: c.fills.load(Ordering::Relaxed),
            evictions: c.evictions.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            write_errors: c.write_errors.load(Ordering::Relaxed),
        }
    }
}

/// The block files under `blocks` as (name, size), least recently used first (by
/// modification time). Leftover temporary files are deleted; other files are left alone.
fn scan(blocks: &Path) -> Vec<(String, u64)> {
    let mut found: Vec<(SystemTime, String, u64)> = Vec::new();
    let Ok(dirs) = fs::read_dir(blocks) else {
        return Vec::new();
    };
    for d in dirs.flatten() {
        let Ok(files) = fs::read_dir(d.path()) else {
            continue;
        };
        for f in files.flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                let _ = fs::remove_file(f.path());
                continue;
            }
            let is_block = name.len() == 64
                && name.bytes().all(|b| b.is_ascii_hexdigit())
                && d.file_name().to_string_lossy() == name[..2];
            let Ok(meta) = f.metadata() else { continue };
            if is_block && meta.is_file() {
                let t = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                found.push((t, name, meta.len()));
            }
        }
    }
    found.sort();
    found.into_iter().map(|(_, n, s)| (n, s)).collect()
}

/// A shared disk cache as a mount option ([`crate::FsConfig::disk_cache`]): equal when it is
/// the same cache.
#[derive(Clone)]
pub struct DiskCacheHandle(pub Arc<DiskCache>);

impl PartialEq for DiskCacheHandle {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for DiskCacheHandle {}

impl std::fmt::Debug for DiskCacheHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DiskCache({})", self.0.dir.display())
    }
}

#[cfg(test)]
mod tests;
