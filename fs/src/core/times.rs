//! Times that are not versions: a file's last access (relatime) and a directory's last entry
//! change. The design rulings keep them beside the keys (`ObjectStore::set_key_times`), never
//! as versions: reading a file or creating an entry in a directory makes no version.
//!
//! This mount keeps the times it recorded or read in a bounded cache (so `stat` after a change
//! costs no store call) and merges them into the attributes it reports. Changes are written
//! to the store lazily: the newest time per key is held in memory and written by
//! [`ObjFs::flush_times`] — about once a second by the mount ([`TIMES_FLUSH_INTERVAL`]), at
//! `flush_all` (unmount, SIGTERM), or at once when [`MAX_DIRTY_TIMES`] keys wait. A directory
//! that gets a thousand entries in a second costs one record, not a thousand. A crash of the
//! mount loses at most the last interval's times; no version and no name depends on them.
//! The attributes reported:
//!
//! - a directory's mtime and ctime are the time of its last entry change when that is newer
//!   than its marker's version (an explicit `utimens` makes a newer version and wins);
//! - a file's atime is its last recorded access when that is newer than its version (a
//!   `utimens` with an explicit atime makes a newer version and wins).
//!
//! On a store without `key_times` the cache is all there is: the times last while the mount
//! lives (and while the cache keeps them).

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::time::{Duration, SystemTime};

use lru::LruCache;
use objfs_store::KeyTimes;

use super::{lock, marker_of, ObjFs};
use crate::attr::{Attrs, Kind};
use crate::error::FsResult;
use crate::inode::ROOT;

/// Keys whose times the mount remembers.
const CACHED_TIMES: usize = 65_536;
/// Keys whose new times may wait in memory; one more writes them all.
pub const MAX_DIRTY_TIMES: usize = 4096;
/// How often the mount writes the times that wait.
pub const TIMES_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// relatime: an atime older than this is refreshed by a read even when newer than mtime.
const RELATIME_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// The cache of times beside keys, and the changes not written to the store yet.
pub(crate) struct TimesCache {
    cache: LruCache<String, KeyTimes>,
    dirty: HashMap<String, KeyTimes>,
}

impl TimesCache {
    pub(crate) fn new() -> TimesCache {
        TimesCache {
            cache: LruCache::new(NonZeroUsize::new(CACHED_TIMES).unwrap_or(NonZeroUsize::MIN)),
            dirty: HashMap::new(),
        }
    }

    fn get(&mut self, key: &str) -> Option<KeyTimes> {
        let cached = self.cache.get(key).copied();
        match (self.dirty.get(key).copied(), cached) {
            (Some(d), Some(c)) => Some(c.updated(d)),
            (Some(d), None) => Some(d),
            (None, c) => c,
        }
    }
}

/// Merges recorded times into attributes: `versioned` says whether `a` comes from a version
/// (then only times newer than that version count) or is a default (an implicit directory).
pub(crate) fn merge_times(a: &mut Attrs, t: KeyTimes, versioned: bool) {
    let newer = |x: SystemTime| !versioned || x > a.ctime;
    if a.kind == Kind::Dir {
        if let Some(c) = t.changed.filter(|c| newer(*c)) {
            a.mtime = c;
            a.ctime = c;
        }
    } else if let Some(at) = t.accessed.filter(|x| newer(*x)) {
        a.atime = at;
    }
}

/// Whether relatime refreshes an atime at `now`.
pub(crate) fn relatime_due(a: &Attrs, now: SystemTime) -> bool {
    a.atime <= a.mtime
        || a.atime <= a.ctime
        || now.duration_since(a.atime).unwrap_or(Duration::ZERO) >= RELATIME_MAX_AGE
}

impl ObjFs {
    /// The times recorded beside `tkey` (the cache, else the store).
    pub(super) async fn times_of(&self, tkey: &str) -> KeyTimes {
        if let Ok(mut c) = lock(&self.times, "times") {
            if let Some(t) = c.get(tkey) {
                return t;
            }
        }
        if !self.features.key_times {
            return KeyTimes::default();
        }
        let t = match self.store.key_times(tkey).await {
            Ok(t) => t,
            Err(e) => {
                tracing::debug!(key = tkey, error = %e, "times beside the key unavailable");
                KeyTimes::default()
            }
        };
        if let Ok(mut c) = lock(&self.times, "times") {
            // Merged with a change recorded while the store answered.
            let t = match c.dirty.get(tkey) {
                Some(d) => t.updated(*d),
                None => t,
            };
            c.cache.put(tkey.to_string(), t);
            return t;
        }
        t
    }

    /// Records `t` beside `tkey`: in the cache at once, and in the store lazily when it keeps
    /// times (see the module docs).
    async fn record_times(&self, tkey: &str, t: KeyTimes) {
        let full = match lock(&self.times, "times") {
            Ok(mut c) => {
                let now = c.get(tkey).unwrap_or_default().updated(t);
                c.cache.put(tkey.to_string(), now);
                if self.features.key_times {
                    let d = c.dirty.entry(tkey.to_string()).or_default();
                    *d = d.updated(t);
                }
                c.dirty.len() >= MAX_DIRTY_TIMES
            }
            Err(_) => false,
        };
        if full {
            self.flush_times().await;
        }
    }

    /// Writes the times that wait in memory to the store. A failure is logged, not returned:
    /// these times are not acknowledged changes.
    pub async fn flush_times(&self) {
        let dirty = match lock(&self.times, "times") {
            Ok(mut c) => std::mem::take(&mut c.dirty),
            Err(_) => return,
        };
        for (key, t) in dirty {
            if let Err(e) = self.store.set_key_times(&key, t).await {
                tracing::debug!(key, error = %e, "recording times beside the key failed");
            }
        }
    }

    /// How many keys have times not written to the store yet.
    pub fn dirty_times(&self) -> usize {
        lock(&self.times, "times").map_or(0, |c| c.dirty.len())
    }

    /// The attributes of the object or directory `key` with the times recorded beside it.
    pub(super) async fn with_times(&self, key: &str, mut a: Attrs, versioned: bool) -> Attrs {
        let tkey = if a.kind == Kind::Dir {
            marker_of(key)
        } else {
            key.to_string()
        };
        let t = self.times_of(&tkey).await;
        merge_times(&mut a, t, versioned);
        a
    }

    /// As [`ObjFs::with_times`], for what `key` was at `at`: a time recorded beside it counts
    /// only when it is not after `at`. These times only move forward, so a recorded time up to
    /// `at` is exactly the one the key had at `at`; a later one replaced what it had then,
    /// which is not known (the version's own times stand).
    pub(super) async fn with_times_at(
        &self,
        key: &str,
        a: Attrs,
        versioned: bool,
        at: SystemTime,
    ) -> Attrs {
        if a.kind != Kind::Dir && a.kind != Kind::File {
            return a;
        }
        let tkey = if a.kind == Kind::Dir {
            marker_of(key)
        } else {
            key.to_string()
        };
        let t = self.times_of(&tkey).await;
        let upto = |x: Option<SystemTime>| x.filter(|x| *x <= at);
        let t = KeyTimes {
            accessed: upto(t.accessed),
            changed: upto(t.changed),
        };
        let mut a = a;
        merge_times(&mut a, t, versioned);
        a
    }

    /// An entry was created, removed or renamed in directory `dir`: its mtime and ctime are
    /// now.
    pub(super) async fn dir_changed(&self, dir: u64) {
        let now = SystemTime::now();
        if dir == ROOT {
            if let Ok(mut r) = lock(&self.root_attrs, "root") {
                r.mtime = now;
                r.ctime = now;
            }
            return;
        }
        let Ok((_, key)) = self.key_of(dir) else {
            return;
        };
        if let Ok(mut t) = self.table() {
            if let Some((a, _)) = t.get_mut(dir).and_then(|n| n.attrs.as_mut()) {
                a.mtime = now;
                a.ctime = now;
            }
        }
        let t = KeyTimes {
            accessed: None,
            changed: Some(now),
        };
        self.record_times(&marker_of(&key), t).await;
    }

    /// A read of `ino` (the first through a handle): relatime refreshes its atime, unless the
    /// mount is `noatime`.
    pub(super) async fn file_read(&self, ino: u64) -> FsResult<()> {
        if self.cfg.noatime() {
            return Ok(());
        }
        let cached = self.table()?.get(ino).and_then(|n| n.attrs.clone());
        let Some((a, _)) = cached else {
            return Ok(());
        };
        let now = SystemTime::now();
        if a.kind != Kind::File || !relatime_due(&a, now) {
            return Ok(());
        }
        let Ok((_, key)) = self.key_of(ino) else {
            return Ok(());
        };
        if let Ok(mut t) = self.table() {
            if let Some((a, _)) = t.get_mut(ino).and_then(|n| n.attrs.as_mut()) {
                a.atime = now;
            }
        }
        let t = KeyTimes {
            accessed: Some(now),
            changed: None,
        };
        self.record_times(&key, t).await;
        Ok(())
    }
}
