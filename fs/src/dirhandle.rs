//! Directory handles: a delimited listing of one directory turned into the kernel's readdir
//! offsets.
//!
//! The stream of a handle is `.`, `..`, then the directory's entries; the entry at position
//! `i` is returned with offset `i + 1` (the offset to continue from). The handle lists the
//! store page by page as the kernel reads and keeps what it read, so offsets stay stable while
//! it is open. Memory is bounded: entries more than [`SLACK`] positions behind the furthest
//! offset asked for are dropped; seeking back before them (rare: `seekdir`) lists again from
//! the start and counts, which gives the same offsets when the directory did not change.
//! `rewinddir` (offset 0 after reading) starts a fresh listing, as POSIX allows.
//!
//! Names: an object `d/x` is the file `x`; a common prefix `d/x/` is the directory `x`; the
//! marker `d/` itself is skipped, as are names that are empty, `.`, `..`, or longer than 255
//! bytes. When a file `x` and a directory `x/` both exist the directory wins: the file is
//! held back until the listing has passed `x/`, and dropped if `x/` shows up.
//!
//! Files this mount created and has not closed yet (pending files: not in the store) are
//! merged into the listing in key order: the caller hands them over when a listing starts
//! ([`Extras`]), and a name the store lists as well is shown once.
//!
//! What is listed is a [`Listing`]: the store now, the store as of a moment (`list_at`, for
//! the directories of a snapshot view), or the snapshot directory (named snapshots and the
//! moments the retention policy keeps complete). In the mount's root a key named `.snapshots`
//! is never listed: the snapshot directory has that name.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::SystemTime;

use objfs_store::{ListPage, ListRequest, ObjectInfo, ObjectStore};

use crate::attr::{Attrs, Kind, META_MODE};
use crate::error::FsResult;
use crate::inode::{RESERVED, SNAPDIR};

/// Entries kept behind the furthest offset read.
pub const SLACK: usize = 1024;
/// Entries asked per listing page.
pub const PAGE: usize = 1000;
/// Longest name shown.
pub const NAME_MAX: usize = 255;

/// One entry of a directory.
#[derive(Debug, Clone)]
pub struct DirEntry {
    pub name: String,
    pub kind: Kind,
    /// The listed object (files and symlinks), with metadata when the backend lists it. Shared:
    /// readdirplus hands entries around by value, and a clone must not copy the metadata map.
    pub object: Option<Arc<ObjectInfo>>,
    /// Attributes, once known (readdirplus fills them in).
    pub attrs: Option<Attrs>,
    /// The moment an entry of the snapshot directory shows.
    pub at: Option<SystemTime>,
}

/// What a directory handle lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// The store now.
    Live,
    /// The store as it was at a moment.
    At(SystemTime),
    /// The snapshot directory; no kept moment before `since` (the store's creation).
    Snapshots { since: Option<SystemTime> },
}

/// What a listing adds to the store's entries when it starts: the directory's pending files.
pub type Extras<'a> = &'a (dyn Fn() -> Vec<DirEntry> + Send + Sync);

/// An item of the stream: `.`, `..`, or an entry.
#[derive(Debug, Clone)]
pub enum Item {
    Dot,
    DotDot,
    Entry(Box<DirEntry>),
}

/// An open directory.
pub struct DirHandle {
    pub ino: u64,
    prefix: String,
    /// The whole path of the directory with a trailing `/` (`""` for the root): what inode
    /// numbers hash (it differs from `prefix` in a snapshot view).
    path_prefix: String,
    listing: Listing,
    /// The mount's root: a key named `.snapshots` is not listed.
    hide_snapdir: bool,
    window: VecDeque<DirEntry>,
    /// Entry index (0 = first entry after `..`) of `window[0]`.
    win_start: u64,
    token: Option<String>,
    started: bool,
    done: bool,
    /// Files whose name might still turn out to be a directory.
    pending: VecDeque<DirEntry>,
    read_any: bool,
    /// Entries the store does not list yet (pending files), sorted by name, merged in.
    extra: VecDeque<DirEntry>,
}

impl DirHandle {
    /// A handle on the directory whose listing prefix is `prefix` (`""` for the root).
    pub fn new(ino: u64, prefix: String) -> DirHandle {
        let path_prefix = prefix.clone();
        DirHandle::with_listing(ino, prefix, path_prefix, Listing::Live)
    }

    /// A handle that lists `listing` under `prefix`, for the directory whose whole path is
    /// `path_prefix`.
    pub fn with_listing(
        ino: u64,
        prefix: String,
        path_prefix: String,
        listing: Listing,
    ) -> DirHandle {
        DirHandle {
            ino,
            hide_snapdir: ino == crate::inode::ROOT,
            prefix,
            path_prefix,
            listing,
            window: VecDeque::new(),
            win_start: 0,
            token: None,
            started: false,
            done: false,
            pending: VecDeque::new(),
            read_any: false,
            extra: VecDeque::new(),
        }
    }

    /// The listing prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The directory's whole path with a trailing `/` (what inode numbers hash).
    pub fn path_prefix(&self) -> &str {
        &self.path_prefix
    }

    /// What the handle lists.
    pub fn listing(&self) -> Listing {
        self.listing
    }

    fn restart(&mut self) {
        self.window.clear();
        self.win_start = 0;
        self.token = None;
        self.started = false;
        self.done = false;
        self.pending.clear();
        self.extra.clear();
    }

    /// Up to `n` items from stream position `pos`, each with its position; `extras` gives
    /// the entries to merge in when a listing (re)starts.
    pub async fn items(
        &mut self,
        store: &dyn ObjectStore,
        pos: u64,
        n: usize,
        extras: Extras<'_>,
    ) -> FsResult<Vec<(u64, Item)>> {
        if pos == 0 && self.read_any {
            self.restart();
        }
        self.read_any = true;
        let mut out = Vec::new();
        let mut pos = pos;
        while pos < 2 && out.len() < n {
            out.push((pos, if pos == 0 { Item::Dot } else { Item::DotDot }));
            pos += 1;
        }
        if out.len() >= n {
            return Ok(out);
        }
        let want = pos - 2;
        if want < self.win_start {
            self.restart();
        }
        let need_end = want + (n - out.len()) as u64;
        while !self.done && self.win_start + (self.window.len() as u64) < need_end {
            self.fetch_page(store, extras).await?;
            // Keep memory bounded while skipping forward.
            let keep_from = want.saturating_sub(SLACK as u64);
            while self.win_start < keep_from && !self.window.is_empty() {
                self.window.pop_front();
                self.win_start += 1;
            }
        }
        let keep_from = want.saturating_sub(SLACK as u64);
        while self.win_start < keep_from && !self.window.is_empty() {
            self.window.pop_front();
            self.win_start += 1;
        }
        let mut i = want;
        while out.len() < n {
            let Some(idx) = i.checked_sub(self.win_start) else {
                break;
            };
            match self.window.get(idx as usize) {
                Some(e) => out.push((i + 2, Item::Entry(Box::new(e.clone())))),
                None => break,
            }
            i += 1;
        }
        Ok(out)
    }

    /// Stores attributes learnt for the entry at stream position `pos`.
    pub fn set_attrs(&mut self, pos: u64, attrs: Attrs) {
        if let Some(idx) = pos
            .checked_sub(2)
            .and_then(|i| i.checked_sub(self.win_start))
        {
            if let Some(e) = self.window.get_mut(idx as usize) {
                e.attrs = Some(attrs);
            }
        }
    }

    async fn fetch_page(&mut self, store: &dyn ObjectStore, extras: Extras<'_>) -> FsResult<()> {
        if self.done {
            return Ok(());
        }
        if !self.started {
            let mut e = extras();
            e.sort_by(|a, b| a.name.cmp(&b.name));
            self.extra = e.into();
        }
        if self.started && self.token.is_none() {
            self.finish();
            return Ok(());
        }
        let req = ListRequest {
            prefix: self.prefix.clone(),
            delimiter: Some("/".into()),
            continuation: self.token.clone(),
            max_keys: PAGE,
            ..Default::default()
        };
        let page = match self.listing {
            Listing::Live => store.list(&req).await?,
            Listing::At(t) => store.list_at(&req, t).await?,
            Listing::Snapshots { since } => {
                // Small and listed at once: named snapshots and kept moments, in name order.
                for (name, at) in crate::core::snapshots::snapdir_entries(store, since).await? {
                    self.window.push_back(DirEntry {
                        name,
                        kind: Kind::Dir,
                        object: None,
                        attrs: None,
                        at: Some(at),
                    });
                }
                ListPage::default()
            }
        };
        self.started = true;
        self.token = page.next_token.clone();
        // Merge objects and common prefixes in key order.
        let mut objs = page.objects.into_iter().peekable();
        let mut pres = page.common_prefixes.into_iter().peekable();
        loop {
            let take_obj = match (objs.peek(), pres.peek()) {
                (Some(o), Some(p)) => o.key.as_str() < p.as_str(),
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            if take_obj {
                if let Some(o) = objs.next() {
                    self.push_extras_before(Some(&o.key));
                    self.push_object(o);
                }
            } else if let Some(p) = pres.next() {
                self.push_extras_before(Some(&p));
                self.push_prefix(p);
            }
        }
        if self.token.is_none() {
            self.finish();
        }
        Ok(())
    }

    fn finish(&mut self) {
        self.push_extras_before(None);
        self.done = true;
        while let Some(e) = self.pending.pop_front() {
            self.window.push_back(e);
        }
    }

    fn valid_name(&self, name: &str) -> bool {
        !name.is_empty()
            && name != "."
            && name != ".."
            && name.len() <= NAME_MAX
            && !(self.hide_snapdir && name == SNAPDIR)
            && !(self.prefix.is_empty() && name == RESERVED)
    }

    /// Releases held-back files that sort before `key` as directories.
    fn release_before(&mut self, key: &str) {
        while let Some(front) = self.pending.front() {
            let as_dir = format!("{}{}/", self.prefix, front.name);
            if as_dir.as_str() < key {
                if let Some(e) = self.pending.pop_front() {
                    self.window.push_back(e);
                }
            } else {
                break;
            }
        }
    }

    /// Merges the extra entries whose key sorts before `key` (all of them for `None`); one
    /// whose key is `key` is dropped (the store lists it).
    fn push_extras_before(&mut self, key: Option<&str>) {
        while let Some(front) = self.extra.front() {
            let k = format!("{}{}", self.prefix, front.name);
            if let Some(key) = key {
                if k.as_str() >= key {
                    // (A hidden `.snapshots` key does not stand for the snapshot directory.)
                    if k == key && !(self.hide_snapdir && front.name == SNAPDIR) {
                        self.extra.pop_front();
                    }
                    return;
                }
            }
            self.release_before(&k);
            if let Some(e) = self.extra.pop_front() {
                self.pending.push_back(e);
            }
        }
    }

    fn push_object(&mut self, o: ObjectInfo) {
        self.release_before(&o.key);
        let Some(name) = o.key.strip_prefix(&self.prefix) else {
            return;
        };
        if !self.valid_name(name) || name.contains('/') {
            return;
        }
        let kind = Kind::of_object_mode(
            o.metadata
                .get(META_MODE)
                .and_then(|m| crate::attr::parse_mode(m)),
        );
        self.pending.push_back(DirEntry {
            name: name.to_string(),
            kind,
            object: Some(Arc::new(o)),
            attrs: None,
            at: None,
        });
    }

    fn push_prefix(&mut self, p: String) {
        self.release_before(&p);
        let Some(name) = p
            .strip_prefix(&self.prefix)
            .and_then(|s| s.strip_suffix('/'))
        else {
            return;
        };
        if !self.valid_name(name) || name.contains('/') {
            return;
        }
        // The directory wins over a file of the same name. Files still held back stay held
        // back (they may yet meet their own directory), so they come after this entry.
        self.pending.retain(|e| e.name != name);
        self.window.push_back(DirEntry {
            name: name.to_string(),
            kind: Kind::Dir,
            object: None,
            attrs: None,
            at: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use objfs_store::memory::MemoryStore;
    use objfs_store::{Body, PutOptions};

    #[tokio::test]
    async fn window_stays_bounded_and_offsets_replay() -> FsResult<()> {
        let store = MemoryStore::new();
        for i in 0..6000 {
            store
                .put(
                    &format!("d/{i:06}"),
                    Body::from(&b""[..]),
                    PutOptions::default(),
                )
                .await?;
        }
        let mut h = DirHandle::new(2, "d/".into());
        let mut pos = 0;
        let mut seen = Vec::new();
        loop {
            let items = h.items(&store, pos, 100, &Vec::new).await?;
            if items.is_empty() {
                break;
            }
            assert!(
                h.window.len() <= SLACK + 2 * PAGE + 100,
                "{}",
                h.window.len()
            );
            for (p, it) in items {
                if let Item::Entry(e) = it {
                    seen.push((p, e.name.clone()));
                }
                pos = p + 1;
            }
        }
        assert_eq!(seen.len(), 6000);
        // Far behind the window: listed again from the start, same entry at the offset.
        let (p, name) = seen[10].clone();
        let again = h.items(&store, p, 1, &Vec::new).await?;
        match &again[0].1 {
            Item::Entry(e) => assert_eq!(e.name, name),
            other => panic!("{other:?}"),
        }
        Ok(())
    }
}
