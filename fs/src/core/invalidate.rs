//! Changes the kernel did not make through this mount: a restore or a command run through the
//! control channel, a snapshot made or deleted. The kernel caches entries (also negative
//! ones) and attributes for the attribute TTL, and the core caches attributes and names
//! known absent (`names.rs`); [`ObjFs::invalidate_keys`] and [`ObjFs::invalidate_prefix`]
//! forget what the core knows of the changed keys and tell the kernel to do the same, through
//! a [`KernelNotifier`] the mount installs (fuser's `Notifier`: `inval_entry`,
//! `inval_inode`; `mount.rs`). Without a notifier (the core used without a mount) only the
//! core forgets.
//!
//! Negative entries go too: every name this mount told the kernel absent that is one of the
//! keys, lies under the prefix, or is a directory above one of them. (Names in a directory
//! this mount made less than the attribute TTL ago are known absent as a whole, not one by
//! one: the kernel may keep a negative entry of such a name for the rest of that TTL.)
//!
//! Open files keep reading the version they opened (close-to-open, as with every change made
//! elsewhere); the next open sees the change.

use std::sync::Arc;

use super::{lock, ObjFs};
use crate::inode::{InodeTable, ROOT, SNAPDIR};

/// Where the core sends its invalidations: the kernel of a live mount.
pub trait KernelNotifier: Send + Sync {
    /// Forget the entry `name` in directory `parent` (positive or negative).
    fn inval_entry(&self, parent: u64, name: &str);
    /// Forget the attributes and cached data of `ino`.
    fn inval_inode(&self, ino: u64);
}

/// What to tell the kernel.
#[derive(Default)]
struct Invalidations {
    entries: Vec<(u64, String)>,
    inodes: Vec<u64>,
}

impl Invalidations {
    /// The entries on the way from the root to `key` that are cached, and the inode of
    /// each directory passed (its listing changed). Stops where the table has no inode.
    fn walk(&mut self, t: &InodeTable, key: &str) -> Option<u64> {
        let mut cur = ROOT;
        let parts: Vec<&str> = key.split('/').filter(|p| !p.is_empty()).collect();
        for part in parts {
            self.inodes.push(cur);
            self.entries.push((cur, part.to_string()));
            cur = t.child(cur, part)?;
        }
        Some(cur)
    }
}

/// Forgets what the core cached of `ino` (its attributes, the marker it saw, the version this
/// mount last wrote), unless a writer or an unlinked open file keeps them authoritative.
fn forget_node(t: &mut InodeTable, ino: u64) {
    if let Some(n) = t.get_mut(ino) {
        if n.writer.is_none() && !n.detached {
            n.attrs = None;
            n.marker_seen = None;
            n.local_version = None;
            n.kernel_pages = None;
        }
    }
}

impl ObjFs {
    /// Installs where invalidations go (the mount does it once the session exists).
    pub fn set_notifier(&self, notifier: Arc<dyn KernelNotifier>) {
        if let Ok(mut n) = lock(&self.notifier, "notifier") {
            *n = Some(notifier);
        }
    }

    /// `keys` changed outside this mount (files, or directory markers `d/`): the core and
    /// the kernel forget their entries, the directories on the way to them, and every name
    /// known absent.
    pub fn invalidate_keys(&self, keys: &[String]) {
        let mut inv = Invalidations::default();
        if let Ok(mut t) = self.table() {
            for key in keys {
                if let Some(ino) = inv.walk(&t, key) {
                    forget_node(&mut t, ino);
                    inv.inodes.push(ino);
                }
            }
        }
        self.absent_entries(&mut inv, |k| {
            keys.iter().any(|key| {
                let key = key.trim_end_matches('/');
                key == k || key.strip_prefix(k).is_some_and(|r| r.starts_with('/'))
            })
        });
        self.forget_absent_names();
        self.notify(inv);
    }

    /// Every key under `prefix` may have changed (a restore of a prefix): as
    /// [`Self::invalidate_keys`] for each cached inode under it and the way to it.
    pub fn invalidate_prefix(&self, prefix: &str) {
        let mut inv = Invalidations::default();
        if let Ok(mut t) = self.table() {
            if let Some(ino) = inv.walk(&t, prefix) {
                forget_node(&mut t, ino);
                inv.inodes.push(ino);
            }
            for (ino, key) in t.live_inodes() {
                if key.starts_with(prefix) {
                    forget_node(&mut t, ino);
                    inv.inodes.push(ino);
                    if let Some(n) = t.get(ino) {
                        inv.entries.push((n.parent, n.name.clone()));
                    }
                }
            }
        }
        self.absent_entries(&mut inv, |k| {
            k.starts_with(prefix)
                || prefix
                    .strip_prefix(k)
                    .is_some_and(|r| r.is_empty() || r.starts_with('/'))
        });
        self.forget_absent_names();
        self.notify(inv);
    }

    /// A named snapshot was made or deleted: the listing of `.snapshots` and the entry `name`
    /// there are forgotten.
    pub fn invalidate_snapshot(&self, name: &str) {
        let mut inv = Invalidations::default();
        if let Ok(t) = self.table() {
            if let Some(dir) = t.child(ROOT, SNAPDIR) {
                inv.inodes.push(dir);
                inv.entries.push((dir, name.to_string()));
            }
        }
        self.notify(inv);
    }

    /// The kernel forgets the attributes and cached pages of `ino` (an open found a version
    /// other than the one the kernel was told of).
    pub(super) fn forget_kernel_attrs(&self, ino: u64) {
        let inv = Invalidations {
            inodes: vec![ino],
            ..Default::default()
        };
        self.notify(inv);
    }

    /// Adds the negative entries this mount handed out for names whose key `hit` picks.
    fn absent_entries(&self, inv: &mut Invalidations, hit: impl Fn(&str) -> bool) {
        let absent = self.absent_names();
        let Ok(t) = self.table() else {
            return;
        };
        for (dir, name) in absent {
            let Some(path) = t.path(dir) else {
                continue;
            };
            let key = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}/{name}")
            };
            if t.view(dir) == Some(crate::inode::View::Live) && hit(&key) {
                inv.entries.push((dir, name));
            }
        }
    }

    fn notify(&self, inv: Invalidations) {
        let notifier = lock(&self.notifier, "notifier")
            .ok()
            .and_then(|n| n.clone());
        let Some(n) = notifier else {
            return;
        };
        let mut inodes = inv.inodes;
        inodes.sort_unstable();
        inodes.dedup();
        for ino in inodes {
            n.inval_inode(ino);
        }
        for (parent, name) in inv.entries {
            n.inval_entry(parent, &name);
        }
    }
}
