//! Names this mount knows to be absent, so that a lookup, create, mkdir or rename of such a
//! name asks the store nothing and the kernel can cache the answer (a negative entry).
//!
//! A name is known absent when this mount removed it (unlink, rmdir, the source of a rename),
//! when a lookup found nothing in the store, or when it lies in a directory this mount made
//! and has not made since. Knowledge is kept for the attribute TTL (`FsConfig::attr_ttl`, 1 s
//! by default) from the moment it was learnt, never longer: another client of the same store
//! (a second mount, a command through the control channel) that creates the name is seen by
//! this mount within that window — the same window as every attribute and entry the kernel
//! caches. Every name this mount makes ends its own absence at once. With a TTL of zero
//! nothing is cached.

use std::collections::HashSet;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use lru::LruCache;

use super::{lock, ObjFs};

/// Absent names remembered (oldest forgotten first).
const ABSENT_NAMES: usize = 65_536;
/// Directories whose every entry the mount knows (it made them).
const KNOWN_DIRS: usize = 1024;
/// Names tracked in one known directory; past that the directory is forgotten.
const KNOWN_DIR_NAMES: usize = 4096;

/// A directory whose every name this mount knows: it made it at `since`, and `names` are the
/// names made in it since.
struct KnownDir {
    since: Instant,
    names: HashSet<String>,
}

/// The negative name cache.
pub(crate) struct NameCache {
    absent: LruCache<(u64, String), Instant>,
    dirs: LruCache<u64, KnownDir>,
}

impl NameCache {
    pub(crate) fn new() -> NameCache {
        NameCache {
            absent: LruCache::new(NonZeroUsize::new(ABSENT_NAMES).unwrap_or(NonZeroUsize::MIN)),
            dirs: LruCache::new(NonZeroUsize::new(KNOWN_DIRS).unwrap_or(NonZeroUsize::MIN)),
        }
    }

    /// How much longer `name` in `dir` is known absent, if it is.
    fn absent(&mut self, dir: u64, name: &str, ttl: Duration) -> Option<Duration> {
        let left = |since: Instant| ttl.checked_sub(since.elapsed()).filter(|d| !d.is_zero());
        let key = (dir, name.to_string());
        if let Some(since) = self.absent.get(&key).copied() {
            match left(since) {
                Some(d) => return Some(d),
                None => {
                    self.absent.pop(&key);
                }
            }
        }
        let known = self.dirs.get(&dir)?;
        if known.names.contains(name) {
            return None;
        }
        match left(known.since) {
            Some(d) => Some(d),
            None => {
                self.dirs.pop(&dir);
                None
            }
        }
    }

    fn made(&mut self, dir: u64, name: &str) {
        self.absent.pop(&(dir, name.to_string()));
        let full = match self.dirs.peek_mut(&dir) {
            Some(k) => {
                k.names.insert(name.to_string());
                k.names.len() > KNOWN_DIR_NAMES
            }
            None => false,
        };
        if full {
            self.dirs.pop(&dir);
        }
    }

    fn gone(&mut self, dir: u64, name: &str) {
        self.absent.put((dir, name.to_string()), Instant::now());
        if let Some(k) = self.dirs.peek_mut(&dir) {
            k.names.remove(name);
        }
    }
}

impl ObjFs {
    /// How much longer `name` in `parent` is known absent (see the module docs), if it is.
    pub fn known_absent(&self, parent: u64, name: &str) -> Option<Duration> {
        if self.cfg.attr_ttl.is_zero() {
            return None;
        }
        let mut c = lock(&self.names, "names").ok()?;
        c.absent(parent, name, self.cfg.attr_ttl)
    }

    /// `name` in `parent` exists now (this mount made it).
    pub(super) fn name_made(&self, parent: u64, name: &str) {
        if let Ok(mut c) = lock(&self.names, "names") {
            c.made(parent, name);
        }
    }

    /// `name` in `parent` is absent now (this mount removed it, or the store has nothing).
    pub(super) fn name_gone(&self, parent: u64, name: &str) {
        if self.cfg.attr_ttl.is_zero() {
            return;
        }
        if let Ok(mut c) = lock(&self.names, "names") {
            c.gone(parent, name);
        }
    }

    /// `dir` was just made by this mount: it holds nothing.
    pub(super) fn dir_made(&self, dir: u64) {
        if self.cfg.attr_ttl.is_zero() {
            return;
        }
        if let Ok(mut c) = lock(&self.names, "names") {
            c.dirs.put(
                dir,
                KnownDir {
                    since: Instant::now(),
                    names: HashSet::new(),
                },
            );
        }
    }

    /// The names known absent one by one (not those of directories made here), by directory.
    pub(super) fn absent_names(&self) -> Vec<(u64, String)> {
        match lock(&self.names, "names") {
            Ok(c) => c.absent.iter().map(|(k, _)| k.clone()).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Forgets every name known absent: for a change this mount did not make through the
    /// kernel (a restore through the control channel) that the kernel is told about as well.
    pub fn forget_absent_names(&self) {
        if let Ok(mut c) = lock(&self.names, "names") {
            *c = NameCache::new();
        }
    }

    /// `dir` was removed or moved: what this mount knew of its names is dropped.
    pub(super) fn dir_forgotten(&self, dir: u64) {
        if let Ok(mut c) = lock(&self.names, "names") {
            c.dirs.pop(&dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absence_expires_and_made_names_end_it() {
        let ttl = Duration::from_millis(200);
        let mut c = NameCache::new();
        assert!(c.absent(1, "a", ttl).is_none());
        c.gone(1, "a");
        assert!(c.absent(1, "a", ttl).is_some());
        c.made(1, "a");
        assert!(c.absent(1, "a", ttl).is_none());
        c.dirs.put(
            7,
            KnownDir {
                since: Instant::now(),
                names: HashSet::new(),
            },
        );
        assert!(c.absent(7, "x", ttl).is_some());
        c.made(7, "x");
        assert!(c.absent(7, "x", ttl).is_none());
        assert!(c.absent(7, "y", ttl).is_some());
        c.gone(1, "b");
        std::thread::sleep(ttl);
        assert!(c.absent(1, "b", ttl).is_none());
        assert!(c.absent(7, "y", ttl).is_none());
    }
}
