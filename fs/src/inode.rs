//! The inode table: inode number <-> (parent inode, name), kind, kernel lookup count, open
//! count, cached attributes and the file's open writer.
//!
//! Keys are not stored per inode: an inode's key is its parent's key plus its name, found by
//! walking up to the root, so renaming a directory moves every cached descendant at once.
//! An inode lives while the kernel holds a lookup reference, a handle is open on it, it has
//! an open writer, or a cached child points at it; `forget` and `release` drop it when all of
//! those are gone. Memory is therefore bounded by what the kernel caches plus open files, not
//! by the size of the tree.
//!
//! Inode numbers are derived from the key and the kind ([`key_ino`], a 63-bit hash), so the
//! same entry gets the same number again after the kernel forgot it (and in the next mount),
//! and plain `readdir` can report the number `stat` will show without caching anything. A
//! collision with a different live entry (about 1 in 10^7 for a million live inodes) takes
//! the next free number. A renamed inode keeps its number while the kernel holds it.
//!
//! Every inode belongs to a [`View`]: the live namespace, the `.snapshots` directory, or the
//! tree as of a moment (below `.snapshots/@TIME` or `.snapshots/NAME`, or the whole mount of
//! `objfs mount --at`). An inode's key inside its view ([`InodeTable::view_key`]) is the
//! path below the view's root, and its number hashes its whole path, so the same key in two
//! views is two inodes.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use objfs_store::{ObjectInfo, VersionId};

use crate::attr::{Attrs, Kind};
use crate::core::marker_of;
use crate::write::WriterCell;

/// The root directory's inode number.
pub const ROOT: u64 = 1;

/// The name of the snapshot directory in the root of every mount.
pub const SNAPDIR: &str = ".snapshots";

/// The name at the store's root that the mount keeps for itself: the keys under `.objfs/`
/// hold what is not the user's (staged checkpoints of files being written in the local
/// store; S3 keeps its records there and refuses the prefix). It is never listed, a lookup of
/// it is ENOENT and making it is EPERM, in the live tree and in every view of the past.
pub const RESERVED: &str = ".objfs";

/// Which tree an inode belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum View {
    /// The store as it is now.
    Live,
    /// The `.snapshots` directory itself.
    Snapshots,
    /// The store as it was at a moment (read-only).
    At(SystemTime),
}

/// One cached inode.
pub struct Node {
    pub parent: u64,
    pub name: String,
    pub kind: Kind,
    lookups: u64,
    opens: u32,
    children: u32,
    /// Removed (unlinked, or replaced by a rename) while the kernel still held it.
    pub detached: bool,
    /// Attributes and when they were fetched.
    pub attrs: Option<(Attrs, Instant)>,
    /// The newest version this mount wrote (so every handle of the mount reads it).
    pub local_version: Option<ObjectInfo>,
    /// How many versions of this inode this mount has written: a handle or an open that
    /// saw a smaller count knows `local_version` is newer than what it read (version ids are
    /// opaque, so the mount orders its own writes instead of comparing ids).
    pub local_seq: u64,
    /// The writer shared by every write handle of this file.
    pub writer: Option<Arc<WriterCell>>,
    /// Open handles that write (the writer goes when the last one is released).
    pub write_handles: u32,
    /// Created by this mount and not in the store yet: its first version is made when it is
    /// closed (or fsynced). Listed in its directory from the table's pending names.
    pending: bool,
    /// When this directory's marker was last seen to exist (a directory with a marker does
    /// not vanish when its last entry goes, so removing an entry need not look).
    pub marker_seen: Option<Instant>,
    /// The version (id and ETag) whose bytes the kernel's page cache of this inode holds,
    /// as far as this mount knows: set by a read-only open of that version, cleared by an
    /// open for writing (`keep_pages`). A read-only open of the same version again lets the
    /// kernel keep its pages (`FOPEN_KEEP_CACHE`); any other open makes it drop them.
    pub kernel_pages: Option<(VersionId, String)>,
    /// The tree this inode belongs to.
    pub view: View,
}

impl Node {
    /// Whether the kernel may keep this inode's pages for an open of version `identity`
    /// (`None`: an open whose pages cannot be trusted, such as one for writing), and
    /// records it as the version the kernel's pages now hold.
    pub fn keep_pages(&mut self, identity: Option<(VersionId, String)>) -> bool {
        let keep = identity.is_some() && identity == self.kernel_pages;
        self.kernel_pages = identity;
        keep
    }

    /// Records a version this mount wrote of this inode (see [`InodeTable::wrote`], which
    /// also ends a pending file's pending state).
    fn wrote(&mut self, info: ObjectInfo) {
        self.local_version = Some(info);
        self.local_seq += 1;
    }

    /// Whether this is a file created by this mount that has no version in the store yet.
    pub fn is_pending(&self) -> bool {
        self.pending
    }

    fn new(parent: u64, name: String, kind: Kind, view: View) -> Node {
        Node {
            parent,
            name,
            kind,
            lookups: 0,
            opens: 0,
            children: 0,
            detached: false,
            attrs: None,
            local_version: None,
            local_seq: 0,
            writer: None,
            write_handles: 0,
            pending: false,
            marker_seen: None,
            kernel_pages: None,
            view,
        }
    }

    /// How many lookups the kernel holds.
    pub fn lookups(&self) -> u64 {
        self.lookups
    }
}

/// The table. Not thread-safe by itself: the core keeps it under a mutex and never holds
/// that mutex across an await.
pub struct InodeTable {
    nodes: HashMap<u64, Node>,
    names: HashMap<(u64, String), u64>,
    /// Pending files (created here, not in the store yet) by directory, by name.
    pending: HashMap<u64, BTreeMap<String, u64>>,
}

impl Default for InodeTable {
    fn default() -> Self {
        Self::new()
    }
}

impl InodeTable {
    /// A table holding only the root.
    pub fn new() -> InodeTable {
        let mut nodes = HashMap::new();
        nodes.insert(ROOT, Node::new(ROOT, String::new(), Kind::Dir, View::Live));
        InodeTable {
            nodes,
            names: HashMap::new(),
            pending: HashMap::new(),
        }
    }

    /// Number of cached inodes (the root included).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Always false: the root is always there.
    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn get(&self, ino: u64) -> Option<&Node> {
        self.nodes.get(&ino)
    }

    pub fn get_mut(&mut self, ino: u64) -> Option<&mut Node> {
        self.nodes.get_mut(&ino)
    }

    /// The inode currently named `name` in `parent`, if cached.
    pub fn child(&self, parent: u64, name: &str) -> Option<u64> {
        self.names.get(&(parent, name.to_string())).copied()
    }

    /// The key of `ino` (`""` for the root, `a/b` for a file or directory).
    pub fn path(&self, ino: u64) -> Option<String> {
        let mut parts: Vec<&str> = Vec::new();
        let mut cur = ino;
        let mut guard = 0usize;
        while cur != ROOT {
            let n = self.nodes.get(&cur)?;
            parts.push(&n.name);
            cur = n.parent;
            guard += 1;
            if guard > 4096 {
                return None;
            }
        }
        parts.reverse();
        Some(parts.join("/"))
    }

    /// The listing prefix of directory `ino` (`""` for the root, `a/b/` otherwise).
    pub fn dir_prefix(&self, ino: u64) -> Option<String> {
        let p = self.path(ino)?;
        Some(if p.is_empty() { p } else { marker_of(&p) })
    }

    /// Makes the whole table a view of the store at a moment (`objfs mount --at`): the root
    /// and everything below it.
    pub fn set_root_view(&mut self, view: View) {
        if let Some(r) = self.nodes.get_mut(&ROOT) {
            r.view = view;
        }
    }

    /// The view of `ino`.
    pub fn view(&self, ino: u64) -> Option<View> {
        self.nodes.get(&ino).map(|n| n.view)
    }

    /// The view a child `name` of `parent` belongs to when nobody says otherwise: the
    /// snapshot directory in the root, else the parent's view.
    fn child_view(&self, parent: u64, name: &str) -> View {
        if parent == ROOT && name == SNAPDIR {
            return View::Snapshots;
        }
        self.view(parent).unwrap_or(View::Live)
    }

    /// The view of `ino` and its key inside it: the path below the view's root (`""` for
    /// the root of a view, `a/b` below it).
    pub fn view_key(&self, ino: u64) -> Option<(View, String)> {
        let view = self.view(ino)?;
        let mut parts: Vec<&str> = Vec::new();
        let mut cur = ino;
        while cur != ROOT {
            let n = self.nodes.get(&cur)?;
            if self.view(n.parent)? != view {
                break;
            }
            parts.push(&n.name);
            cur = n.parent;
            if parts.len() > 4096 {
                return None;
            }
        }
        parts.reverse();
        Some((view, parts.join("/")))
    }

    /// Records one kernel lookup of `name` in `parent` as a `kind`, returning its inode.
    /// An existing inode of another kind under that name is detached and a new one made
    /// (the kernel must not see an inode change type).
    pub fn lookup(&mut self, parent: u64, name: &str, kind: Kind) -> u64 {
        let view = self.child_view(parent, name);
        self.lookup_in(parent, name, kind, view)
    }

    /// [`Self::lookup`] of an inode of `view` (the root of a snapshot view).
    pub fn lookup_in(&mut self, parent: u64, name: &str, kind: Kind, view: View) -> u64 {
        let ino = self.insert_in(parent, name, kind, view);
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.lookups += 1;
        }
        ino
    }

    /// The inode for `name` in `parent` as a `kind`, made if needed, without a lookup
    /// reference (the caller must give it one, or open it, or let [`Self::maybe_drop`] go).
    pub fn insert(&mut self, parent: u64, name: &str, kind: Kind) -> u64 {
        let view = self.child_view(parent, name);
        self.insert_in(parent, name, kind, view)
    }

    /// [`Self::insert`] of an inode of `view`. An inode of another kind or view under the
    /// name is detached first (a named snapshot made again of another moment is another
    /// tree).
    pub fn insert_in(&mut self, parent: u64, name: &str, kind: Kind, view: View) -> u64 {
        if let Some(ino) = self.child(parent, name) {
            if self.nodes.get(&ino).map(|n| (n.kind, n.view)) == Some((kind, view)) {
                return ino;
            }
            self.detach(parent, name);
        }
        let key = match self.path(parent) {
            Some(p) if p.is_empty() => name.to_string(),
            Some(p) => format!("{p}/{name}"),
            None => name.to_string(),
        };
        let mut ino = key_ino(&key, kind);
        while self.nodes.contains_key(&ino) {
            ino = if ino >= MAX_INO { FIRST_INO } else { ino + 1 };
        }
        self.nodes
            .insert(ino, Node::new(parent, name.to_string(), kind, view));
        self.names.insert((parent, name.to_string()), ino);
        if let Some(p) = self.nodes.get_mut(&parent) {
            p.children += 1;
        }
        ino
    }

    /// The inode cached under `key` in the live view, if any (walking down from the root).
    pub fn find_live(&self, key: &str) -> Option<u64> {
        if self.view(ROOT) != Some(View::Live) {
            return None;
        }
        let mut cur = ROOT;
        for part in key.split('/').filter(|p| !p.is_empty()) {
            cur = self.child(cur, part)?;
        }
        Some(cur)
    }

    /// Every cached inode of the live view (the root excluded), with its key.
    pub fn live_inodes(&self) -> Vec<(u64, String)> {
        self.nodes
            .iter()
            .filter(|(ino, n)| **ino != ROOT && n.view == View::Live)
            .filter_map(|(ino, _)| Some((*ino, self.path(*ino)?)))
            .collect()
    }

    /// Drops `n` kernel lookups of `ino` (FUSE forget).
    pub fn forget(&mut self, ino: u64, n: u64) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.lookups = node.lookups.saturating_sub(n);
        }
        self.maybe_drop(ino);
    }

    /// Counts an open handle.
    pub fn open(&mut self, ino: u64) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.opens += 1;
        }
    }

    /// Uncounts an open handle.
    pub fn close(&mut self, ino: u64) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.opens = node.opens.saturating_sub(1);
        }
        self.maybe_drop(ino);
    }

    /// Removes `ino` (and then its parents) when nothing references it any more.
    pub fn maybe_drop(&mut self, ino: u64) {
        let mut cur = ino;
        loop {
            if cur == ROOT {
                return;
            }
            let Some(n) = self.nodes.get(&cur) else {
                return;
            };
            if n.lookups > 0 || n.opens > 0 || n.children > 0 || n.writer.is_some() {
                return;
            }
            let parent = n.parent;
            let key = (parent, n.name.clone());
            self.unpend(cur);
            self.nodes.remove(&cur);
            if self.names.get(&key) == Some(&cur) {
                self.names.remove(&key);
            }
            match self.nodes.get_mut(&parent) {
                Some(p) => p.children = p.children.saturating_sub(1),
                None => return,
            }
            cur = parent;
        }
    }

    /// Unhooks whatever inode is named `name` in `parent` (after unlink, rmdir, or when a
    /// rename replaced it). The inode stays until the kernel forgets it.
    pub fn detach(&mut self, parent: u64, name: &str) -> Option<u64> {
        let ino = self.names.remove(&(parent, name.to_string()))?;
        self.unpend(ino);
        if let Some(n) = self.nodes.get_mut(&ino) {
            // Its attributes are frozen: the name now belongs to another file (or none), so
            // they can never be fetched again, and open handles still need them (fstat).
            n.detached = true;
        }
        self.maybe_drop(ino);
        Some(ino)
    }

    /// Moves `ino` to `name` in `new_parent`, detaching what was there.
    pub fn rename(&mut self, ino: u64, new_parent: u64, new_name: &str) {
        if self.child(new_parent, new_name) == Some(ino) {
            return;
        }
        self.detach(new_parent, new_name);
        let Some(n) = self.nodes.get(&ino) else {
            return;
        };
        let old = (n.parent, n.name.clone());
        let pending = n.pending;
        self.unpend(ino);
        if self.names.get(&old) == Some(&ino) {
            self.names.remove(&old);
        }
        if let Some(p) = self.nodes.get_mut(&old.0) {
            p.children = p.children.saturating_sub(1);
        }
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.parent = new_parent;
            n.name = new_name.to_string();
            n.detached = false;
        }
        if let Some(p) = self.nodes.get_mut(&new_parent) {
            p.children += 1;
        }
        self.names.insert((new_parent, new_name.to_string()), ino);
        if pending {
            self.set_pending(ino);
        }
        self.maybe_drop(old.0);
    }

    /// Marks `ino` a pending file: created by this mount, in no version yet.
    pub fn set_pending(&mut self, ino: u64) {
        let Some(n) = self.nodes.get_mut(&ino) else {
            return;
        };
        n.pending = true;
        self.pending
            .entry(n.parent)
            .or_default()
            .insert(n.name.clone(), ino);
    }

    /// Ends the pending state of `ino` (it has a version now, or is gone).
    fn unpend(&mut self, ino: u64) {
        let Some(n) = self.nodes.get_mut(&ino) else {
            return;
        };
        if !n.pending {
            return;
        }
        n.pending = false;
        if let Some(names) = self.pending.get_mut(&n.parent) {
            if names.get(&n.name) == Some(&ino) {
                names.remove(&n.name);
            }
            if names.is_empty() {
                self.pending.remove(&n.parent);
            }
        }
    }

    /// Records a version this mount wrote of `ino`: every handle of the mount reads it, and a
    /// pending file is pending no more.
    pub fn wrote(&mut self, ino: u64, info: ObjectInfo) {
        self.unpend(ino);
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.wrote(info);
        }
    }

    /// The pending files of directory `dir`, by name.
    pub fn pending_in(&self, dir: u64) -> Vec<(String, u64)> {
        self.pending
            .get(&dir)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default()
    }

    /// Whether directory `dir` holds a pending file.
    pub fn has_pending(&self, dir: u64) -> bool {
        self.pending.get(&dir).is_some_and(|m| !m.is_empty())
    }

    /// Every inode with an open writer, with its key.
    pub fn writers(&self) -> Vec<(u64, Option<String>, Arc<WriterCell>)> {
        self.nodes
            .iter()
            .filter_map(|(ino, n)| {
                n.writer
                    .as_ref()
                    .map(|w| (*ino, self.path(*ino), w.clone()))
            })
            .collect()
    }
}

/// Smallest hashed inode number (0 is invalid, 1 is the root).
const FIRST_INO: u64 = 2;
/// Largest inode number (63 bits, so signed 64-bit consumers are fine too).
const MAX_INO: u64 = (1 << 63) - 1;

/// The inode number of `key` as a `kind` when no other live entry has it: a 63-bit hash.
pub fn key_ino(key: &str, kind: Kind) -> u64 {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    kind.hash(&mut h);
    (h.finish() & MAX_INO).max(FIRST_INO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_forget() {
        let mut t = InodeTable::new();
        let a = t.lookup(ROOT, "a", Kind::Dir);
        let b = t.lookup(a, "b", Kind::File);
        assert_eq!(t.path(b).as_deref(), Some("a/b"));
        assert_eq!(t.dir_prefix(a).as_deref(), Some("a/"));
        assert_eq!(t.dir_prefix(ROOT).as_deref(), Some(""));
        assert_eq!(t.lookup(a, "b", Kind::File), b);
        // The parent stays while a child is cached, even with no lookups of its own.
        t.forget(a, 1);
        assert!(t.get(a).is_some());
        t.forget(b, 1);
        assert!(t.get(b).is_some());
        t.forget(b, 1);
        assert!(t.get(b).is_none());
        assert!(t.get(a).is_none());
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn kind_change_makes_new_inode_and_rename_moves_subtree() {
        let mut t = InodeTable::new();
        let f = t.lookup(ROOT, "x", Kind::File);
        let d = t.lookup(ROOT, "x", Kind::Dir);
        assert_ne!(f, d);
        assert_eq!(f, key_ino("x", Kind::File));
        assert!(t.get(f).is_some_and(|n| n.detached));
        let c = t.lookup(d, "c", Kind::File);
        let e = t.lookup(ROOT, "e", Kind::Dir);
        t.rename(d, e, "y");
        assert_eq!(t.path(c).as_deref(), Some("e/y/c"));
        assert_eq!(t.child(ROOT, "x"), None);
        assert_eq!(t.child(e, "y"), Some(d));
        assert_eq!(key_ino("e/y/c", Kind::File), key_ino("e/y/c", Kind::File));
        assert_ne!(key_ino("x", Kind::File), key_ino("x", Kind::Dir));
    }
}
