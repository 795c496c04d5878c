//! The tier's read cache: chunks of remote volume objects kept as files in
//! `<store>/tier-cache/`, bounded in bytes, least recently used evicted first.
//!
//! A chunk is [`CHUNK`] bytes of an object at a multiple of [`CHUNK`] (the last one shorter),
//! in the file `<volume id>-<first 8 hex of the object's BLAKE3>-<chunk index>` (so a chunk of
//! a different object for the same volume is never taken for it). Its bytes are never trusted
//! on their own: every read through the cache is verified by the blob header and block
//! checksums, as a local read is, and a chunk that fails is dropped and fetched again
//! (remote.rs). Files are written to a temporary name and renamed; a crash leaves at worst a
//! stray `.tmp` that the next open removes.

use std::fmt;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use lru::LruCache;

use crate::error::{Result, StoreError};

/// The size of a cached chunk.
pub const CHUNK: u64 = 64 << 10;

/// The default bound of the cache.
pub const DEFAULT_CAPACITY: u64 = 1 << 30;

/// The chunk files and their sizes, most recently used first.
pub struct BlockCache {
    dir: PathBuf,
    capacity: u64,
    state: Mutex<State>,
}

struct State {
    lru: LruCache<ChunkKey, u64>,
    bytes: u64,
    /// Open handles on recently read chunk files (a cache hit costs a pread, not an open).
    handles: LruCache<ChunkKey, Arc<File>>,
}

/// A cached chunk: chunk `index` of the object of volume `volume` whose BLAKE3 begins with
/// `tag`. Its file name is its `Display` form. A plain value (no string built or hashed per
/// read: a cache hit must cost about what a local read does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChunkKey {
    volume: u64,
    tag: u32,
    index: u64,
}

impl ChunkKey {
    pub fn new(volume: u64, blake3: &[u8; 32], index: u64) -> ChunkKey {
        ChunkKey {
            volume,
            tag: u32::from_be_bytes([blake3[0], blake3[1], blake3[2], blake3[3]]),
            index,
        }
    }

    /// The key of a chunk file's name (None: not a chunk's name).
    fn parse(name: &str) -> Option<ChunkKey> {
        let mut parts = name.split('-');
        let (v, t, i) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || v.len() != 16 || t.len() != 8 {
            return None;
        }
        Some(ChunkKey {
            volume: u64::from_str_radix(v, 16).ok()?,
            tag: u32::from_str_radix(t, 16).ok()?,
            index: u64::from_str_radix(i, 16).ok()?,
        })
    }
}

impl fmt::Display for ChunkKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}-{:08x}-{:x}", self.volume, self.tag, self.index)
    }
}

/// How many chunk files are kept open.
const HANDLES: usize = 256;

impl BlockCache {
    /// Opens (creating) the cache directory and indexes the chunks in it.
    pub fn open(dir: &Path, capacity: u64) -> Result<BlockCache> {
        let ctx = |e| StoreError::io(format!("opening the tier cache {}", dir.display()), e);
        std::fs::create_dir_all(dir).map_err(ctx)?;
        let mut lru = LruCache::unbounded();
        let mut bytes = 0;
        for e in std::fs::read_dir(dir).map_err(ctx)?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            // A temporary file a crash left, or a name no chunk has (nothing would ever
            // evict it): removed.
            let Some(key) = ChunkKey::parse(&name) else {
                let _ = std::fs::remove_file(e.path());
                continue;
            };
            let len = e.metadata().map(|m| m.len()).unwrap_or(0);
            bytes += len;
            lru.put(key, len);
        }
        let cache = BlockCache {
            dir: dir.to_path_buf(),
            capacity,
            state: Mutex::new(State {
                lru,
                bytes,
                handles: LruCache::new(
                    std::num::NonZeroUsize::new(HANDLES).unwrap_or(std::num::NonZeroUsize::MIN),
                ),
            }),
        };
        cache.evict(0);
        Ok(cache)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes cached now.
    pub fn bytes(&self) -> u64 {
        self.state().bytes
    }

    /// Whether chunk `key` is cached (and marks it used).
    pub fn contains(&self, key: ChunkKey) -> bool {
        self.state().lru.get(&key).is_some()
    }

    /// Reads `buf.len()` bytes at `offset` of cached chunk `key`; false when it is not there.
    pub fn read(&self, key: ChunkKey, offset: u64, buf: &mut [u8]) -> bool {
        let handle = {
            let mut s = self.state();
            if s.lru.get(&key).is_none() {
                return false;
            }
            s.handles.get(&key).cloned()
        };
        let file = match handle {
            Some(f) => f,
            None => match File::open(self.dir.join(key.to_string())) {
                Ok(f) => {
                    let f = Arc::new(f);
                    self.state().handles.put(key, f.clone());
                    f
                }
                Err(_) => {
                    self.remove(key);
                    return false;
                }
            },
        };
        match file.read_exact_at(buf, offset) {
            Ok(()) => true,
            Err(_) => {
                self.remove(key);
                false
            }
        }
    }

    /// Keeps `data` as chunk `key`, evicting the least recently used chunks beyond the bound.
    pub fn insert(&self, key: ChunkKey, data: &[u8]) {
        if data.len() as u64 > self.capacity {
            return;
        }
        let name = key.to_string();
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!("{name}.tmp"));
        let written = std::fs::write(&tmp, data).and_then(|_| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            tracing::warn!(file = %path.display(), error = %e, "could not cache a remote chunk");
            let _ = std::fs::remove_file(&tmp);
            return;
        }
        self.evict(data.len() as u64);
        let mut s = self.state();
        s.handles.pop(&key);
        if let Some(old) = s.lru.put(key, data.len() as u64) {
            s.bytes -= old.min(s.bytes);
        }
        s.bytes += data.len() as u64;
    }

    /// Drops chunk `key`.
    pub fn remove(&self, key: ChunkKey) {
        let mut s = self.state();
        s.handles.pop(&key);
        if let Some(len) = s.lru.pop(&key) {
            s.bytes -= len.min(s.bytes);
        }
        let _ = std::fs::remove_file(self.dir.join(key.to_string()));
    }

    /// Drops every chunk of volume `volume`.
    pub fn remove_volume(&self, volume: u64) {
        let keys: Vec<ChunkKey> = self
            .state()
            .lru
            .iter()
            .map(|(k, _)| *k)
            .filter(|k| k.volume == volume)
            .collect();
        for k in keys {
            self.remove(k);
        }
    }

    /// Evicts until `incoming` more bytes fit.
    fn evict(&self, incoming: u64) {
        let mut s = self.state();
        while s.bytes + incoming > self.capacity {
            let Some((key, len)) = s.lru.pop_lru() else {
                break;
            };
            s.bytes -= len.min(s.bytes);
            s.handles.pop(&key);
            let _ = std::fs::remove_file(self.dir.join(key.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_kept_bounded_and_evicted_least_recent_first() {
        let dir = tempfile::tempdir().unwrap();
        let c = BlockCache::open(dir.path(), 3 * 100).unwrap();
        let tag = [1u8; 32];
        let names: Vec<ChunkKey> = (0..4).map(|i| ChunkKey::new(7, &tag, i)).collect();
        for n in &names[..3] {
            c.insert(*n, &[5u8; 100]);
        }
        assert_eq!(c.bytes(), 300);
        // Use chunk 0 so that chunk 1 is the least recent.
        let mut buf = [0u8; 10];
        assert!(c.read(names[0], 20, &mut buf));
        assert_eq!(buf, [5u8; 10]);
        c.insert(names[3], &[6u8; 100]);
        assert_eq!(c.bytes(), 300);
        assert!(!c.contains(names[1]));
        assert!(c.contains(names[0]) && c.contains(names[3]));
        assert!(!dir.path().join(names[1].to_string()).exists());
        // Reopening indexes what is there; a stray temporary file goes, and so does a file
        // that is no chunk.
        std::fs::write(dir.path().join("x.tmp"), b"t").unwrap();
        std::fs::write(dir.path().join("stray"), b"t").unwrap();
        drop(c);
        let c = BlockCache::open(dir.path(), 300).unwrap();
        assert_eq!(c.bytes(), 300);
        assert!(!dir.path().join("x.tmp").exists());
        c.remove_volume(7);
        assert_eq!(c.bytes(), 0);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert_eq!(
            ChunkKey::new(1, &tag, 10).to_string(),
            "0000000000000001-01010101-a"
        );
        assert_eq!(
            ChunkKey::parse("0000000000000001-01010101-a"),
            Some(ChunkKey::new(1, &tag, 10))
        );
        assert_eq!(ChunkKey::parse("0000000000000001-0101-a"), None);
    }
}
