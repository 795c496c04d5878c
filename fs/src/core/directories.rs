//! Directories: open directory handles and what `readdir` and `readdirplus` hand the
//! kernel from them, and `statfs`.
//!
//! A handle pages through the delimited listing of its prefix (`dirhandle.rs`); plain readdir
//! reports each entry's inode number without caching anything, readdirplus fetches the
//! attributes the listing did not carry (concurrently) and counts each entry as a lookup.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::StreamExt;

use super::links::stub_target;
use super::{lock, Entry, ObjFs, StatFs};
use crate::attr::{Attrs, Kind, BLOCK_SIZE};
use crate::dirhandle::{DirEntry, DirHandle, Item, Listing, NAME_MAX};
use crate::error::{FsError, FsResult};
use crate::inode::{key_ino, View, ROOT};

/// Entries whose attributes readdirplus fetches at once.
const PLUS_BATCH: usize = 64;
/// Attribute fetches of readdirplus in flight at once.
const PLUS_FETCHES: usize = 16;

impl ObjFs {
    /// Opens a directory; returns the handle.
    pub async fn opendir(&self, ino: u64) -> FsResult<u64> {
        self.opendir_now(ino)
    }

    /// [`Self::opendir`] without a runtime: it does no I/O (the listing starts at the first
    /// readdir).
    pub fn opendir_now(&self, ino: u64) -> FsResult<u64> {
        let handle = if self.in_past(ino, None) {
            self.opendir_past(ino)?
        } else {
            DirHandle::new(ino, self.dir_prefix(ino)?)
        };
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        lock(&self.dirs, "dirs")?.insert(fh, Arc::new(tokio::sync::Mutex::new(handle)));
        Ok(fh)
    }

    /// Closes a directory handle.
    pub fn releasedir(&self, fh: u64) {
        if let Ok(mut d) = self.dirs.lock() {
            d.remove(&fh);
        }
    }

    fn dir_handle(&self, fh: u64) -> FsResult<Arc<tokio::sync::Mutex<DirHandle>>> {
        lock(&self.dirs, "dirs")?
            .get(&fh)
            .cloned()
            .ok_or(FsError::BadHandle(fh))
    }

    fn parent_of(&self, ino: u64) -> u64 {
        self.table()
            .ok()
            .and_then(|t| t.get(ino).map(|n| n.parent))
            .unwrap_or(ROOT)
    }

    /// Plain readdir from `offset`. `add(ino, next_offset, kind, name)` returns true when
    /// the reply is full.
    pub async fn readdir<F>(&self, ino: u64, fh: u64, offset: u64, mut add: F) -> FsResult<()>
    where
        F: FnMut(u64, u64, Kind, &str) -> bool,
    {
        let dh = self.dir_handle(fh)?;
        let mut d = dh.lock().await;
        let mut pos = offset;
        loop {
            let items = d
                .items(self.store.as_ref(), pos, PLUS_BATCH, &|| {
                    self.pending_entries(ino)
                })
                .await?;
            if items.is_empty() {
                return Ok(());
            }
            for (p, item) in items {
                let (child, kind, name) = match &item {
                    Item::Dot => (ino, Kind::Dir, "."),
                    Item::DotDot => (self.parent_of(ino), Kind::Dir, ".."),
                    Item::Entry(e) => {
                        let known = self.table()?.child(ino, &e.name);
                        let linked = match (&e.object, e.at) {
                            (Some(o), None) if d.listing() == Listing::Live => {
                                self.stub_ino(o, e.kind)
                            }
                            _ => None,
                        };
                        let child = known.or(linked).unwrap_or_else(|| {
                            key_ino(&format!("{}{}", d.path_prefix(), e.name), e.kind)
                        });
                        (child, e.kind, e.name.as_str())
                    }
                };
                if add(child, p + 1, kind, name) {
                    return Ok(());
                }
                pos = p + 1;
            }
        }
    }

    /// readdirplus from `offset`: every entry comes with attributes and counts as a lookup
    /// (unless the reply was full). `add(next_offset, name, entry)` returns true when full.
    pub async fn readdirplus<F>(&self, ino: u64, fh: u64, offset: u64, mut add: F) -> FsResult<()>
    where
        F: FnMut(u64, &str, &Entry) -> bool,
    {
        let dh = self.dir_handle(fh)?;
        let mut d = dh.lock().await;
        // Entries give attributes to inodes by name: not while a rename moves names.
        let _ns = self.namespace.read().await;
        let mut pos = offset;
        loop {
            let items = d
                .items(self.store.as_ref(), pos, PLUS_BATCH, &|| {
                    self.pending_entries(ino)
                })
                .await?;
            if items.is_empty() {
                return Ok(());
            }
            // Fetch the attributes the listing did not give, concurrently.
            let prefix = d.prefix().to_string();
            let listing = d.listing();
            let missing: Vec<(u64, DirEntry)> = items
                .iter()
                .filter_map(|(p, it)| match it {
                    Item::Entry(e) if e.attrs.is_none() => Some((*p, (**e).clone())),
                    _ => None,
                })
                .collect();
            let fetched: Vec<(u64, FsResult<(Attrs, bool)>)> = futures::stream::iter(missing)
                .map(|(p, e)| {
                    let prefix = prefix.clone();
                    async move {
                        let r = match listing {
                            Listing::Live => self.entry_attrs(&prefix, &e).await,
                            past => self
                                .entry_attrs_past(past, &prefix, &e)
                                .await
                                .map(|(a, _)| (a, false)),
                        };
                        (p, r)
                    }
                })
                .buffer_unordered(PLUS_FETCHES)
                .collect()
                .await;
            let mut got: HashMap<u64, (Attrs, bool)> = HashMap::new();
            for (p, r) in fetched {
                match r {
                    Ok((a, marker)) => {
                        d.set_attrs(p, a.clone());
                        got.insert(p, (a, marker));
                    }
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e),
                }
            }
            for (p, item) in items {
                pos = p + 1;
                let (name, entry, counted) = match &item {
                    Item::Dot | Item::DotDot => {
                        let target = if matches!(item, Item::Dot) {
                            ino
                        } else {
                            self.parent_of(ino)
                        };
                        let attr = match self.table()?.get(target).and_then(|n| n.attrs.clone()) {
                            Some((a, _)) => a,
                            None if target == ROOT => lock(&self.root_attrs, "root")?.clone(),
                            None => self.implicit_dir_attrs(),
                        };
                        let name = if matches!(item, Item::Dot) { "." } else { ".." };
                        (name.to_string(), self.entry(target, &attr), false)
                    }
                    Item::Entry(e)
                        if listing == Listing::Live
                            && e.object.as_ref().is_some_and(|o| stub_target(o).is_some()) =>
                    {
                        // A name of a hard-linked file: the file's own inode and attributes.
                        let Some(o) = e.object.as_ref() else { continue };
                        match self.stub_entry(o).await {
                            Ok(entry) => (e.name.clone(), entry, true),
                            Err(err) if err.is_not_found() => continue,
                            Err(err) => return Err(err),
                        }
                    }
                    Item::Entry(e) => {
                        let (attrs, marker) = match e.attrs.clone() {
                            Some(a) => (a, false),
                            None => match got.get(&p).cloned() {
                                Some(f) => f,
                                // Gone since the listing: skip it.
                                None => continue,
                            },
                        };
                        let entry = match e.at {
                            // An entry of `.snapshots`: the root of a view of its moment.
                            Some(at) => self.remember_in(ino, &e.name, attrs, View::At(at))?,
                            None => self.remember(ino, &e.name, attrs)?,
                        };
                        if marker {
                            self.marker_seen(entry.ino);
                        }
                        (e.name.clone(), entry, true)
                    }
                };
                if add(p + 1, &name, &entry) {
                    if counted {
                        self.forget(entry.ino, 1);
                    }
                    return Ok(());
                }
            }
        }
    }

    /// The pending files of directory `ino` as listing entries (see `dirhandle.rs`).
    fn pending_entries(&self, ino: u64) -> Vec<DirEntry> {
        let snapdir = if ino == ROOT {
            self.snapdir_entry()
        } else {
            None
        };
        let Ok(t) = self.table() else {
            return Vec::new();
        };
        t.pending_in(ino)
            .into_iter()
            .filter_map(|(name, child)| {
                let (a, _) = t.get(child)?.attrs.clone()?;
                Some(DirEntry {
                    name,
                    kind: Kind::File,
                    object: None,
                    attrs: Some(a),
                    at: None,
                })
            })
            .chain(snapdir)
            .collect()
    }

    /// The attributes of a listed entry that the listing did not carry, and whether it is a
    /// directory with a marker.
    async fn entry_attrs(&self, prefix: &str, e: &DirEntry) -> FsResult<(Attrs, bool)> {
        let key = format!("{prefix}{}", e.name);
        let (a, versioned) = match (e.kind, &e.object) {
            (Kind::Dir, _) => match self.head_marker(&key).await? {
                Some(m) => (Attrs::from_object(&m, true, &self.cfg), true),
                None => (self.implicit_dir_attrs(), false),
            },
            (_, Some(o)) if self.features.list_returns_metadata => {
                (Attrs::from_object(o, false, &self.cfg), true)
            }
            _ => (
                Attrs::from_object(&self.head_existing(&key).await?, false, &self.cfg),
                true,
            ),
        };
        let marker = e.kind == Kind::Dir && versioned;
        Ok((self.with_times(&key, a, versioned).await, marker))
    }

    /// Capacity of the store.
    pub async fn statfs(&self) -> FsResult<StatFs> {
        let c = self.store.capacity().await?;
        let bs = u64::from(BLOCK_SIZE);
        let ffree = c.free_bytes / bs;
        Ok(StatFs {
            blocks: c.total_bytes / bs,
            bfree: c.free_bytes / bs,
            bavail: c.free_bytes / bs,
            files: c.objects.saturating_add(ffree),
            ffree,
            bsize: BLOCK_SIZE,
            namelen: NAME_MAX as u32,
            frsize: BLOCK_SIZE,
        })
    }
}
