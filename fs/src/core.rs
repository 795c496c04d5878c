//! The filesystem core: every file operation, async, over `Arc<dyn ObjectStore>`, with no
//! FUSE in sight, so that all of the logic is tested without a mount. The fuser adapter
//! (`adapter.rs`) calls one method per request.
//!
//! Namespace: a directory is a key prefix ending in `/`; it exists when its marker object
//! (`d/`) exists or any key lies below it (implicit directory). A name that is both a file
//! `a` and a directory `a/` is the directory (dir wins). See `docs/SEMANTICS.md`.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use fuser::{FileAttr, TimeOrNow};
use futures::StreamExt;
use objfs_store::key::MAX_KEY_LEN;
use objfs_store::{
    Body, Condition, CopyOptions, ErrorKind, ListRequest, ObjectInfo, ObjectStore, PutOptions,
    RenameOptions, StoreError, StoreFeatures,
};
use tokio::sync::Semaphore;

use crate::attr::{Attrs, Kind};
use crate::budget::MemBudget;
use crate::config::FsConfig;
use crate::dirhandle::{DirEntry, DirHandle, Item, NAME_MAX};
use crate::error::{FsError, FsResult};
use crate::inode::{key_ino, InodeTable, ROOT};
use crate::read::{BlockCache, ReadAhead, Source};
use crate::write::{WriteCtx, Writer, WriterCell};
use crate::xattr;

/// Concurrent part uploads of the whole mount.
const UPLOAD_SLOTS: usize = 4;
/// Entries whose attributes readdirplus fetches at once.
const PLUS_BATCH: usize = 64;
/// Concurrent copies/deletes of a directory rename.
const RENAME_CONCURRENCY: usize = 8;
/// Keys of a directory rename copied before the copies are deleted.
const RENAME_BATCH: usize = 100_000;

/// Who is asking (owner of what a request creates).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
}

/// A directory entry handed to the kernel: inode, attributes and how long to cache them.
#[derive(Debug, Clone)]
pub struct Entry {
    pub ino: u64,
    pub attr: FileAttr,
    pub ttl: Duration,
    pub generation: u64,
}

/// What `setattr` changes.
#[derive(Debug, Clone, Default)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeOrNow>,
    pub mtime: Option<TimeOrNow>,
    pub fh: Option<u64>,
}

/// `statfs` figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatFs {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
    pub frsize: u32,
}

/// An open file.
struct FileHandle {
    ino: u64,
    write: bool,
    /// The version this handle reads (when no writer is active on the file), and the
    /// inode's `local_seq` when it was chosen.
    pinned: Mutex<(Option<ObjectInfo>, u64)>,
    ra: Mutex<ReadAhead>,
}

/// What a name resolves to in the store.
enum Found {
    Dir { marker: Option<ObjectInfo> },
    Object(ObjectInfo),
}

/// The filesystem core.
pub struct ObjFs {
    store: Arc<dyn ObjectStore>,
    cfg: FsConfig,
    features: StoreFeatures,
    started: SystemTime,
    inodes: Mutex<InodeTable>,
    handles: Mutex<HashMap<u64, Arc<FileHandle>>>,
    dirs: Mutex<HashMap<u64, Arc<tokio::sync::Mutex<DirHandle>>>>,
    next_fh: AtomicU64,
    next_writer: AtomicU64,
    wctx: WriteCtx,
    root_attrs: Mutex<Attrs>,
    /// Renames take it exclusively, opens shared: an open that resolves a name and pins its
    /// version never interleaves with a rename that hands the name to another inode.
    namespace: tokio::sync::RwLock<()>,
}

fn lock<'a, T>(m: &'a Mutex<T>, what: &str) -> FsResult<MutexGuard<'a, T>> {
    m.lock()
        .map_err(|_| FsError::Internal(format!("{what} lock poisoned")))
}

fn is_not_found(e: &StoreError) -> bool {
    matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NoSuchVersion)
}

fn is_precondition(e: &StoreError) -> bool {
    e.kind() == ErrorKind::PreconditionFailed
}

fn resolve_time(t: &TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::SpecificTime(t) => *t,
        TimeOrNow::Now => SystemTime::now(),
    }
}

/// Checks a single path component.
fn check_name(name: &OsStr) -> FsResult<&str> {
    let s = name
        .to_str()
        .ok_or_else(|| FsError::Invalid(format!("name {name:?} is not UTF-8")))?;
    if s.len() > NAME_MAX {
        return Err(FsError::NameTooLong(format!("{} bytes", s.len())));
    }
    if s.is_empty() || s == "." || s == ".." || s.contains('/') || s.contains('\0') {
        return Err(FsError::Invalid(format!("name {s:?}")));
    }
    Ok(s)
}

impl ObjFs {
    /// A core over `store` with `cfg`.
    pub fn new(store: Arc<dyn ObjectStore>, cfg: FsConfig) -> Arc<ObjFs> {
        let features = store.features();
        let now = SystemTime::now();
        let cache = Arc::new(BlockCache::new(cfg.cache_size));
        let wctx = WriteCtx {
            store: store.clone(),
            cache,
            budget: Arc::new(MemBudget::new(cfg.max_memory)),
            uploads: Arc::new(Semaphore::new(UPLOAD_SLOTS)),
            part_size: cfg.part_size.max(1) as u64,
            min_part: features.min_part_size,
        };
        let mut root = Attrs::default_for(Kind::Dir, &cfg, now);
        root.mtime = now;
        Arc::new(ObjFs {
            store,
            features,
            started: now,
            inodes: Mutex::new(InodeTable::new()),
            handles: Mutex::new(HashMap::new()),
            dirs: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            next_writer: AtomicU64::new(1),
            wctx,
            root_attrs: Mutex::new(root),
            namespace: tokio::sync::RwLock::new(()),
            cfg,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &FsConfig {
        &self.cfg
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Number of cached inodes (for tests of memory boundedness).
    pub fn cached_inodes(&self) -> usize {
        self.inodes.lock().map(|t| t.len()).unwrap_or(0)
    }

    /// Number of open file handles.
    pub fn open_handles(&self) -> usize {
        self.handles.lock().map(|h| h.len()).unwrap_or(0)
    }

    /// Bytes in the read cache.
    pub fn cached_bytes(&self) -> usize {
        self.wctx.cache.cached_bytes()
    }

    fn table(&self) -> FsResult<MutexGuard<'_, InodeTable>> {
        lock(&self.inodes, "inode table")
    }

    fn check_rw(&self) -> FsResult<()> {
        if self.cfg.read_only {
            Err(FsError::ReadOnly)
        } else {
            Ok(())
        }
    }

    fn entry(&self, ino: u64, attrs: &Attrs) -> Entry {
        Entry {
            ino,
            attr: attrs.to_file_attr(ino),
            ttl: self.cfg.attr_ttl,
            generation: 0,
        }
    }

    /// Key of inode `ino`.
    fn key_of(&self, ino: u64) -> FsResult<(Kind, String)> {
        let t = self.table()?;
        let n = t
            .get(ino)
            .ok_or_else(|| FsError::NotFound(format!("inode {ino}")))?;
        let kind = n.kind;
        let key = t
            .path(ino)
            .ok_or_else(|| FsError::NotFound(format!("inode {ino}")))?;
        Ok((kind, key))
    }

    /// Key of `name` in directory `parent`.
    fn child_key(&self, parent: u64, name: &str) -> FsResult<String> {
        let t = self.table()?;
        let n = t
            .get(parent)
            .ok_or_else(|| FsError::NotFound(format!("inode {parent}")))?;
        if n.kind != Kind::Dir {
            return Err(FsError::NotDir(n.name.clone()));
        }
        let prefix = t
            .dir_prefix(parent)
            .ok_or_else(|| FsError::NotFound(format!("inode {parent}")))?;
        let key = prefix + name;
        if key.len() > MAX_KEY_LEN {
            return Err(FsError::NameTooLong(format!("key of {} bytes", key.len())));
        }
        Ok(key)
    }

    fn implicit_dir_attrs(&self) -> Attrs {
        Attrs::default_for(Kind::Dir, &self.cfg, self.started)
    }

    fn found_attrs(&self, f: &Found) -> Attrs {
        match f {
            Found::Dir { marker: Some(m) } => Attrs::from_object(m, true, &self.cfg),
            Found::Dir { marker: None } => self.implicit_dir_attrs(),
            Found::Object(o) => Attrs::from_object(o, false, &self.cfg),
        }
    }

    /// What `key` is in the store: a directory (wins), a file/symlink, or nothing.
    async fn probe(&self, key: &str) -> FsResult<Option<Found>> {
        let dir_prefix = format!("{key}/");
        let list = async {
            if dir_prefix.len() > MAX_KEY_LEN {
                return Ok(None);
            }
            let req = ListRequest {
                prefix: dir_prefix.clone(),
                max_keys: 1,
                ..Default::default()
            };
            self.store.list(&req).await.map(Some)
        };
        let head = self.store.head(key, None);
        let (l, h) = tokio::join!(list, head);
        if let Some(page) = l? {
            if !page.objects.is_empty() || !page.common_prefixes.is_empty() {
                let marker = page
                    .objects
                    .into_iter()
                    .next()
                    .filter(|o| o.key == dir_prefix);
                let marker = match marker {
                    Some(_) if !self.features.list_returns_metadata => {
                        match self.store.head(&dir_prefix, None).await {
                            Ok(m) => Some(m),
                            Err(e) if is_not_found(&e) => None,
                            Err(e) => return Err(e.into()),
                        }
                    }
                    m => m,
                };
                return Ok(Some(Found::Dir { marker }));
            }
        }
        match h {
            Ok(info) => Ok(Some(Found::Object(info))),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Records a lookup of `name` in `parent` and caches its attributes.
    fn remember(&self, parent: u64, name: &str, attrs: Attrs) -> FsResult<Entry> {
        let mut t = self.table()?;
        let ino = t.lookup(parent, name, attrs.kind);
        let attrs = match t.get_mut(ino) {
            Some(n) if n.writer.is_some() => match &n.attrs {
                Some((a, _)) => a.clone(),
                None => attrs,
            },
            Some(n) => {
                n.attrs = Some((attrs.clone(), Instant::now()));
                attrs
            }
            None => attrs,
        };
        Ok(self.entry(ino, &attrs))
    }

    fn cache_attrs(&self, ino: u64, attrs: &Attrs) {
        if let Ok(mut t) = self.table() {
            if let Some(n) = t.get_mut(ino) {
                n.attrs = Some((attrs.clone(), Instant::now()));
            }
        }
    }

    // ----- namespace -----

    /// Looks `name` up in directory `parent`.
    pub async fn lookup(&self, parent: u64, name: &OsStr) -> FsResult<Entry> {
        let name = check_name(name)?;
        let _ns = self.namespace.read().await;
        let key = self.child_key(parent, name)?;
        // A file this mount is writing answers from memory.
        {
            let mut t = self.table()?;
            if let Some(ino) = t.child(parent, name) {
                if let Some(n) = t.get_mut(ino) {
                    if n.writer.is_some() {
                        if let Some((a, _)) = n.attrs.clone() {
                            let ino = t.lookup(parent, name, a.kind);
                            return Ok(self.entry(ino, &a));
                        }
                    }
                }
            }
        }
        match self.probe(&key).await? {
            Some(f) => {
                let attrs = self.found_attrs(&f);
                self.remember(parent, name, attrs)
            }
            None => Err(FsError::NotFound(key)),
        }
    }

    /// Drops `n` kernel references of `ino`.
    pub fn forget(&self, ino: u64, n: u64) {
        if let Ok(mut t) = self.table() {
            t.forget(ino, n);
        }
    }

    /// Attributes of `ino`.
    pub async fn getattr(&self, ino: u64) -> FsResult<FileAttr> {
        if ino == ROOT {
            return Ok(lock(&self.root_attrs, "root")?.to_file_attr(ROOT));
        }
        let (kind, key, cached, live, detached) = {
            let t = self.table()?;
            let n = t
                .get(ino)
                .ok_or_else(|| FsError::NotFound(format!("inode {ino}")))?;
            let live = n.writer.is_some() || n.detached;
            (n.kind, t.path(ino), n.attrs.clone(), live, n.detached)
        };
        if let Some((a, at)) = &cached {
            if live || at.elapsed() < self.cfg.attr_ttl {
                return Ok(a.to_file_attr(ino));
            }
        }
        if detached {
            // Detached without cached attributes: its old name belongs to someone else now.
            return Err(FsError::NotFound(format!("inode {ino} (removed)")));
        }
        // Resolve the name and cache what it holds only while no rename moves it.
        let _ns = self.namespace.read().await;
        let still_named = self.table()?.get(ino).is_some_and(|n| !n.detached);
        if !still_named {
            return match self.table()?.get(ino).and_then(|n| n.attrs.clone()) {
                Some((a, _)) => Ok(a.to_file_attr(ino)),
                None => Err(FsError::NotFound(format!("inode {ino} (removed)"))),
            };
        }
        let key = key.ok_or_else(|| FsError::NotFound(format!("inode {ino}")))?;
        let attrs = self.fetch_attrs(kind, &key, cached.map(|c| c.0)).await?;
        self.cache_attrs(ino, &attrs);
        Ok(attrs.to_file_attr(ino))
    }

    async fn fetch_attrs(&self, kind: Kind, key: &str, cached: Option<Attrs>) -> FsResult<Attrs> {
        match kind {
            Kind::File | Kind::Symlink => match self.store.head(key, None).await {
                Ok(info) => Ok(Attrs::from_object(&info, false, &self.cfg)),
                Err(e) if is_not_found(&e) => Err(FsError::NotFound(key.to_string())),
                Err(e) => Err(e.into()),
            },
            Kind::Dir => {
                let marker = format!("{key}/");
                match self.store.head(&marker, None).await {
                    Ok(m) => Ok(Attrs::from_object(&m, true, &self.cfg)),
                    Err(e) if is_not_found(&e) => {
                        let page = self
                            .store
                            .list(&ListRequest {
                                prefix: marker.clone(),
                                max_keys: 1,
                                ..Default::default()
                            })
                            .await?;
                        if page.objects.is_empty() && page.common_prefixes.is_empty() {
                            Err(FsError::NotFound(marker))
                        } else {
                            Ok(cached
                                .filter(|c| c.kind == Kind::Dir)
                                .unwrap_or_else(|| self.implicit_dir_attrs()))
                        }
                    }
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// Changes attributes (chmod, chown, utimens, truncate).
    pub async fn setattr(&self, ino: u64, sa: SetAttr) -> FsResult<FileAttr> {
        let only_atime = sa.mode.is_none()
            && sa.uid.is_none()
            && sa.gid.is_none()
            && sa.size.is_none()
            && sa.mtime.is_none();
        if only_atime {
            return self.getattr(ino).await;
        }
        self.check_rw()?;
        if ino == ROOT {
            if sa.size.is_some() {
                return Err(FsError::IsDir("/".into()));
            }
            let mut r = lock(&self.root_attrs, "root")?;
            apply_attrs(&mut r, &sa);
            return Ok(r.to_file_attr(ROOT));
        }
        let (kind, key) = self.key_of(ino)?;
        if let Some(mut g) = self.current_writer(ino).await? {
            if let Some(size) = sa.size {
                // A size change while the file is open for writing is a write: it is part of
                // the version the next close makes.
                g.truncate(&self.wctx, size).await?;
            }
            let explicit = sa.mode.is_some() || sa.uid.is_some() || sa.gid.is_some();
            if explicit || sa.mtime.is_some() {
                let mtime = apply_attrs(&mut g.attrs, &sa);
                g.touch_meta(mtime);
                let cfg = &self.cfg;
                self.publish_writer_meta(ino, &mut g, |meta, base| {
                    let mut a = Attrs::from_object(base, false, cfg);
                    apply_attrs(&mut a, &sa);
                    a.store_into(meta);
                    Ok(())
                })
                .await?;
            }
            let attrs = g.current_attrs();
            drop(g);
            self.cache_attrs(ino, &attrs);
            return Ok(attrs.to_file_attr(ino));
        }
        let attrs = match kind {
            Kind::Dir => {
                if sa.size.is_some() {
                    return Err(FsError::IsDir(key));
                }
                self.set_dir_attrs(&key, &sa).await?
            }
            Kind::Symlink if sa.size.is_some() => {
                return Err(FsError::Invalid("truncate of a symlink".into()))
            }
            _ if sa.size.is_some() => self.truncate_closed(ino, &key, &sa).await?,
            _ => loop {
                let (attrs, info) = self.set_object_attrs(&key, &sa).await?;
                let cfg = &self.cfg;
                let settled = self
                    .settle_meta_change(
                        ino,
                        &info,
                        |w| {
                            let mtime = apply_attrs(&mut w.attrs, &sa);
                            w.touch_meta(mtime);
                        },
                        |meta, base| {
                            let mut a = Attrs::from_object(base, false, cfg);
                            apply_attrs(&mut a, &sa);
                            a.store_into(meta);
                            Ok(())
                        },
                    )
                    .await?;
                if settled {
                    break attrs;
                }
            },
        };
        self.cache_attrs(ino, &attrs);
        Ok(attrs.to_file_attr(ino))
    }

    /// The writer of `ino`, locked, if the file is open for writing. A writer that its last
    /// release committed and dropped while this waited for the lock is not returned: a change
    /// made to it would be in no version.
    async fn current_writer(
        &self,
        ino: u64,
    ) -> FsResult<Option<tokio::sync::OwnedMutexGuard<Writer>>> {
        loop {
            let Some(w) = self.writer_of(ino)? else {
                return Ok(None);
            };
            let g = w.clone().lock_owned().await;
            let current = self
                .writer_of(ino)?
                .is_some_and(|now| Arc::ptr_eq(&now, &w));
            if current {
                return Ok(Some(g));
            }
        }
    }

    /// Acknowledges a metadata change (chmod, chown, utimens, xattr) made to an open writer: it
    /// is in the store when the call returns. A writer with no written bytes pending commits
    /// now (a metadata-only version); one with bytes pending leaves them for its close and
    /// publishes the change over its base version (`edit` changes the base's metadata). A
    /// file that is not in the store yet gets the change with its first version.
    async fn publish_writer_meta<F>(&self, ino: u64, g: &mut Writer, edit: F) -> FsResult<()>
    where
        F: FnOnce(&mut objfs_store::Metadata, &ObjectInfo) -> FsResult<()>,
    {
        let Some(base) = g.base.clone() else {
            return Ok(());
        };
        if g.unlinked {
            return Ok(());
        }
        let info = if g.is_data_dirty() {
            let mut meta = base.metadata.clone();
            edit(&mut meta, &base)?;
            self.store
                .copy(
                    &base.key,
                    &g.key,
                    CopyOptions {
                        source_version: Some(base.version),
                        metadata: Some(meta),
                        ..Default::default()
                    },
                )
                .await?
        } else {
            match g.commit(&self.wctx, false).await? {
                Some(info) => info,
                None => return Ok(()),
            }
        };
        self.note_version(ino, &info);
        Ok(())
    }

    async fn set_dir_attrs(&self, key: &str, sa: &SetAttr) -> FsResult<Attrs> {
        let marker = format!("{key}/");
        match self.store.head(&marker, None).await {
            Ok(m) => {
                let mut a = Attrs::from_object(&m, true, &self.cfg);
                apply_attrs(&mut a, sa);
                let mut meta = m.metadata.clone();
                a.store_into(&mut meta);
                let info = self
                    .store
                    .copy(
                        &marker,
                        &marker,
                        CopyOptions {
                            source_version: Some(m.version),
                            metadata: Some(meta),
                            ..Default::default()
                        },
                    )
                    .await?;
                Ok(Attrs::from_object(&info, true, &self.cfg))
            }
            Err(e) if is_not_found(&e) => {
                // An implicit directory gets a marker to hold its attributes.
                let mut a = self.implicit_dir_attrs();
                apply_attrs(&mut a, sa);
                let mut meta = objfs_store::Metadata::new();
                a.store_into(&mut meta);
                let info = self
                    .store
                    .put(
                        &marker,
                        Body::empty(),
                        PutOptions {
                            metadata: meta,
                            ..Default::default()
                        },
                    )
                    .await?;
                Ok(Attrs::from_object(&info, true, &self.cfg))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// chmod/chown/utimens of a closed file or symlink: a zero-copy copy with new metadata.
    async fn set_object_attrs(&self, key: &str, sa: &SetAttr) -> FsResult<(Attrs, ObjectInfo)> {
        let mut tries = 0;
        loop {
            let cur = match self.store.head(key, None).await {
                Ok(i) => i,
                Err(e) if is_not_found(&e) => return Err(FsError::NotFound(key.to_string())),
                Err(e) => return Err(e.into()),
            };
            let mut a = Attrs::from_object(&cur, false, &self.cfg);
            apply_attrs(&mut a, sa);
            let mut meta = cur.metadata.clone();
            a.store_into(&mut meta);
            match self
                .store
                .copy(
                    key,
                    key,
                    CopyOptions {
                        source_version: Some(cur.version.clone()),
                        metadata: Some(meta),
                        condition: Condition::IfVersion(cur.version),
                        ..Default::default()
                    },
                )
                .await
            {
                Ok(info) => return Ok((Attrs::from_object(&info, false, &self.cfg), info)),
                Err(e) if is_precondition(&e) && tries < 3 => tries += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Truncate of a file nobody has open for writing: a short-lived writer.
    async fn truncate_closed(&self, ino: u64, key: &str, sa: &SetAttr) -> FsResult<Attrs> {
        let base = match self.store.head(key, None).await {
            Ok(i) => i,
            Err(e) if is_not_found(&e) => return Err(FsError::NotFound(key.to_string())),
            Err(e) => return Err(e.into()),
        };
        let attrs = Attrs::from_object(&base, false, &self.cfg);
        let id = self.next_writer.fetch_add(1, Ordering::Relaxed);
        let mut w = Writer::new(id, key.to_string(), Some(base), attrs, &self.wctx);
        if let Some(size) = sa.size {
            w.truncate(&self.wctx, size).await?;
        }
        let mut a = w.attrs.clone();
        let explicit = apply_attrs(&mut a, sa);
        w.attrs = a;
        w.touch_meta(explicit);
        if let Some(info) = w.commit(&self.wctx, false).await? {
            self.note_version(ino, &info);
        }
        Ok(w.current_attrs())
    }

    /// Records a version this mount wrote of `ino`; returns the inode's new `local_seq`.
    fn note_version(&self, ino: u64, info: &ObjectInfo) -> u64 {
        let Ok(mut t) = self.table() else {
            return 0;
        };
        match t.get_mut(ino) {
            Some(n) => {
                n.wrote(info.clone());
                n.local_seq
            }
            None => 0,
        }
    }

    fn local_seq(&self, ino: u64) -> FsResult<u64> {
        Ok(self.table()?.get(ino).map_or(0, |n| n.local_seq))
    }

    /// After `info`, a version carrying a metadata change, was written over the closed file:
    /// a writer that opened meanwhile over the previous version gets the change too
    /// (`to_writer`), published at once. Returns false when a writer committed over the change
    /// and went away before it could be told: the caller makes the change again.
    async fn settle_meta_change<A, E>(
        &self,
        ino: u64,
        info: &ObjectInfo,
        to_writer: A,
        edit: E,
    ) -> FsResult<bool>
    where
        A: FnOnce(&mut Writer),
        E: FnOnce(&mut objfs_store::Metadata, &ObjectInfo) -> FsResult<()>,
    {
        let seq = self.note_version(ino, info);
        match self.current_writer(ino).await? {
            Some(mut g) => {
                to_writer(&mut g);
                self.publish_writer_meta(ino, &mut g, edit).await?;
                Ok(true)
            }
            None => Ok(self.local_seq(ino)? == seq),
        }
    }

    /// Reads a symlink's target.
    pub async fn readlink(&self, ino: u64) -> FsResult<Bytes> {
        let (kind, key) = self.key_of(ino)?;
        if kind != Kind::Symlink {
            return Err(FsError::Invalid(format!("{key} is not a symlink")));
        }
        let got = match self.store.get(&key, Default::default()).await {
            Ok(g) => g,
            Err(e) if is_not_found(&e) => return Err(FsError::NotFound(key)),
            Err(e) => return Err(e.into()),
        };
        Ok(got.bytes().await?)
    }

    /// Creates a directory: writes the marker `key/`.
    pub async fn mkdir(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        caller: Caller,
    ) -> FsResult<Entry> {
        self.check_rw()?;
        let name = check_name(name)?;
        let key = self.child_key(parent, name)?;
        let marker = format!("{key}/");
        if marker.len() > MAX_KEY_LEN {
            return Err(FsError::NameTooLong(format!(
                "key of {} bytes",
                marker.len()
            )));
        }
        if self.probe(&key).await?.is_some() {
            return Err(FsError::Exists(key));
        }
        let now = SystemTime::now();
        let mut a = Attrs::default_for(Kind::Dir, &self.cfg, now);
        a.perm = mode & 0o7777;
        a.uid = caller.uid;
        a.gid = caller.gid;
        let info = self
            .put_if_absent(&marker, Body::empty(), &a)
            .await?
            .ok_or_else(|| FsError::Exists(key.clone()))?;
        self.remember(parent, name, Attrs::from_object(&info, true, &self.cfg))
    }

    /// mknod: regular files only.
    pub async fn mknod(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        caller: Caller,
    ) -> FsResult<Entry> {
        self.check_rw()?;
        if mode & libc::S_IFMT != libc::S_IFREG && mode & libc::S_IFMT != 0 {
            return Err(FsError::NotSupported(
                "special files (devices, FIFOs, sockets)".into(),
            ));
        }
        let name = check_name(name)?;
        let key = self.child_key(parent, name)?;
        if self.probe(&key).await?.is_some() {
            return Err(FsError::Exists(key));
        }
        let info = self.put_new_file(&key, mode, caller).await?;
        self.remember(parent, name, Attrs::from_object(&info, false, &self.cfg))
    }

    /// Writes a new object holding `attrs` (and `body`) only if `key` has no live version:
    /// `Ok(None)` when something is there already.
    async fn put_if_absent(
        &self,
        key: &str,
        body: Body,
        attrs: &Attrs,
    ) -> FsResult<Option<ObjectInfo>> {
        let mut meta = objfs_store::Metadata::new();
        attrs.store_into(&mut meta);
        let opts = PutOptions {
            metadata: meta,
            condition: Condition::IfNotExists,
            ..Default::default()
        };
        match self.store.put(key, body, opts).await {
            Ok(i) => Ok(Some(i)),
            Err(e) if is_precondition(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn put_new_file(&self, key: &str, mode: u32, caller: Caller) -> FsResult<ObjectInfo> {
        let mut a = Attrs::default_for(Kind::File, &self.cfg, SystemTime::now());
        a.perm = mode & 0o7777;
        a.uid = caller.uid;
        a.gid = caller.gid;
        self.put_if_absent(key, Body::empty(), &a)
            .await?
            .ok_or_else(|| FsError::Exists(key.to_string()))
    }

    /// Creates a symlink: an object whose body is the target.
    pub async fn symlink(
        &self,
        parent: u64,
        name: &OsStr,
        target: &Path,
        caller: Caller,
    ) -> FsResult<Entry> {
        self.check_rw()?;
        let name = check_name(name)?;
        let key = self.child_key(parent, name)?;
        let target = target
            .to_str()
            .ok_or_else(|| FsError::Invalid("symlink target is not UTF-8".into()))?
            .to_string();
        if target.len() > 4095 {
            return Err(FsError::NameTooLong("symlink target".into()));
        }
        if self.probe(&key).await?.is_some() {
            return Err(FsError::Exists(key));
        }
        let mut a = Attrs::default_for(Kind::Symlink, &self.cfg, SystemTime::now());
        a.uid = caller.uid;
        a.gid = caller.gid;
        let info = self
            .put_if_absent(&key, Body::Bytes(Bytes::from(target.into_bytes())), &a)
            .await?
            .ok_or_else(|| FsError::Exists(key.clone()))?;
        self.remember(parent, name, Attrs::from_object(&info, false, &self.cfg))
    }

    /// Hard links are not supported (EPERM).
    pub async fn link(&self, _ino: u64, _newparent: u64, _newname: &OsStr) -> FsResult<Entry> {
        Err(FsError::NotPermitted("hard links are not supported".into()))
    }

    /// Keeps an implicit directory alive after its last entry went away, by writing its
    /// marker (otherwise it would vanish under the user's feet).
    async fn keep_dir(&self, dir: u64) -> FsResult<()> {
        if dir == ROOT {
            return Ok(());
        }
        let (prefix, attrs) = {
            let t = self.table()?;
            let Some(n) = t.get(dir) else {
                return Ok(());
            };
            if n.detached {
                return Ok(());
            }
            (t.dir_prefix(dir), n.attrs.clone())
        };
        let Some(prefix) = prefix else {
            return Ok(());
        };
        let page = self
            .store
            .list(&ListRequest {
                prefix: prefix.clone(),
                max_keys: 1,
                ..Default::default()
            })
            .await?;
        if !page.objects.is_empty() || !page.common_prefixes.is_empty() {
            return Ok(());
        }
        let a = attrs
            .map(|(a, _)| a)
            .filter(|a| a.kind == Kind::Dir)
            .unwrap_or_else(|| self.implicit_dir_attrs());
        // Someone else made it meanwhile: fine.
        self.put_if_absent(&prefix, Body::empty(), &a).await?;
        Ok(())
    }

    /// Removes a file or symlink.
    pub async fn unlink(&self, parent: u64, name: &OsStr) -> FsResult<()> {
        self.check_rw()?;
        let name = check_name(name)?;
        let key = self.child_key(parent, name)?;
        match self.probe(&key).await? {
            None => return Err(FsError::NotFound(key)),
            Some(Found::Dir { .. }) => return Err(FsError::IsDir(key)),
            Some(Found::Object(_)) => {}
        }
        self.store.delete(&key).await?;
        self.detach_name(parent, name).await?;
        self.keep_dir(parent).await
    }

    /// Unhooks the cached inode of `name`; its open writer (if any) will discard.
    async fn detach_name(&self, parent: u64, name: &str) -> FsResult<()> {
        let writer = {
            let mut t = self.table()?;
            let w = t
                .child(parent, name)
                .and_then(|ino| t.get(ino))
                .and_then(|n| n.writer.clone());
            t.detach(parent, name);
            w
        };
        if let Some(w) = writer {
            w.lock().await.unlinked = true;
        }
        Ok(())
    }

    /// Removes an empty directory.
    pub async fn rmdir(&self, parent: u64, name: &OsStr) -> FsResult<()> {
        self.check_rw()?;
        let name = check_name(name)?;
        let key = self.child_key(parent, name)?;
        match self.probe(&key).await? {
            None => return Err(FsError::NotFound(key)),
            Some(Found::Object(_)) => return Err(FsError::NotDir(key)),
            Some(Found::Dir { .. }) => {}
        }
        let marker = format!("{key}/");
        if !self.dir_is_empty(&marker).await? {
            return Err(FsError::NotEmpty(key));
        }
        self.store.delete(&marker).await?;
        self.detach_name(parent, name).await?;
        self.keep_dir(parent).await
    }

    async fn dir_is_empty(&self, marker: &str) -> FsResult<bool> {
        let page = self
            .store
            .list(&ListRequest {
                prefix: marker.to_string(),
                max_keys: 2,
                ..Default::default()
            })
            .await?;
        Ok(page.common_prefixes.is_empty() && page.objects.iter().all(|o| o.key == marker))
    }

    /// Commits every open writer of `key` (or below it, for a directory) and keeps them
    /// locked, so nothing is written to the old keys while a rename moves them.
    async fn lock_writers_under(
        &self,
        key: &str,
        dir: bool,
    ) -> FsResult<Vec<(u64, tokio::sync::OwnedMutexGuard<Writer>)>> {
        let writers = self.table()?.writers();
        let below = format!("{key}/");
        let mut held = Vec::new();
        for (ino, path, w) in writers {
            let Some(path) = path else { continue };
            if path == key || (dir && path.starts_with(&below)) {
                let mut g = w.lock_owned().await;
                if let Some(info) = g.commit(&self.wctx, false).await? {
                    let attrs = g.current_attrs();
                    self.note_version(ino, &info);
                    self.cache_attrs(ino, &attrs);
                }
                held.push((ino, g));
            }
        }
        Ok(held)
    }

    /// Points the writers held during a rename at their new keys (and bases).
    async fn rekey_writers(&self, held: Vec<(u64, tokio::sync::OwnedMutexGuard<Writer>)>) {
        for (ino, mut g) in held {
            let path = self.table().ok().and_then(|t| t.path(ino));
            let Some(path) = path else { continue };
            if g.key == path {
                continue;
            }
            g.key = path;
            match self.store.head(&g.key, None).await {
                Ok(info) => g.base = Some(info),
                // The old version stays readable by its id; keep it as the base.
                Err(e) => tracing::warn!(key = %g.key, error = %e, "renamed file not found"),
            }
        }
    }

    /// Renames a file or a whole directory. `flags` are renameat2's.
    pub async fn rename(
        &self,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
    ) -> FsResult<()> {
        self.check_rw()?;
        let noreplace = flags & libc::RENAME_NOREPLACE != 0;
        if flags & !libc::RENAME_NOREPLACE != 0 {
            return Err(FsError::Invalid(format!("rename flags {flags:#x}")));
        }
        let name = check_name(name)?;
        let newname = check_name(newname)?;
        let src = self.child_key(parent, name)?;
        let dst = self.child_key(newparent, newname)?;
        if src == dst {
            return Ok(());
        }
        let _ns = self.namespace.write().await;
        let (sf, df) = tokio::join!(self.probe(&src), self.probe(&dst));
        let sf = sf?.ok_or_else(|| FsError::NotFound(src.clone()))?;
        let df = df?;
        if noreplace && df.is_some() {
            return Err(FsError::Exists(dst));
        }
        let held;
        let mut renamed: Option<ObjectInfo> = None;
        match sf {
            Found::Object(_) => {
                if let Some(Found::Dir { .. }) = df {
                    return Err(FsError::IsDir(dst));
                }
                held = self.lock_writers_under(&src, false).await?;
                // One store operation: atomic in the local store (a crash leaves the file under
                // one name, never two), metadata only, no data copied.
                let res = self
                    .store
                    .rename(
                        &src,
                        &dst,
                        RenameOptions {
                            condition: if noreplace {
                                Condition::IfNotExists
                            } else {
                                Condition::None
                            },
                            ..Default::default()
                        },
                    )
                    .await;
                match res {
                    Ok(info) => renamed = Some(info),
                    Err(e) if is_precondition(&e) => return Err(FsError::Exists(dst)),
                    Err(e) => return Err(e.into()),
                }
            }
            Found::Dir { .. } => {
                match &df {
                    Some(Found::Object(_)) => return Err(FsError::NotDir(dst)),
                    Some(Found::Dir { .. }) => {
                        let dm = format!("{dst}/");
                        if !self.dir_is_empty(&dm).await? {
                            return Err(FsError::NotEmpty(dst));
                        }
                    }
                    None => {}
                }
                if dst.starts_with(&format!("{src}/")) {
                    return Err(FsError::Invalid(format!("rename of {src} into itself")));
                }
                if dst.len() + 1 > MAX_KEY_LEN {
                    return Err(FsError::NameTooLong(dst));
                }
                held = self.lock_writers_under(&src, true).await?;
                if let Some(Found::Dir { .. }) = df {
                    self.store.delete(&format!("{dst}/")).await?;
                }
                self.move_tree(&format!("{src}/"), &format!("{dst}/"))
                    .await?;
            }
        }
        // Whatever was at the destination is gone; the source inode moves there.
        self.detach_name(newparent, newname).await?;
        {
            let mut t = self.table()?;
            if let Some(ino) = t.child(parent, name) {
                t.rename(ino, newparent, newname);
                // The moved inode now is the renamed version (same bytes, new key).
                if let (Some(info), Some(n)) = (renamed, t.get_mut(ino)) {
                    n.wrote(info);
                }
            }
        }
        self.rekey_writers(held).await;
        self.keep_dir(parent).await
    }

    /// Copies every key under `from` to `to`, then deletes the originals: a crash leaves
    /// duplicates, never a loss. Trees of more than [`RENAME_BATCH`] keys are moved in
    /// batches of that many (copies, then deletes, per batch).
    async fn move_tree(&self, from: &str, to: &str) -> FsResult<()> {
        let mut token: Option<String> = None;
        loop {
            let mut batch: Vec<ObjectInfo> = Vec::new();
            let mut more = true;
            while batch.len() < RENAME_BATCH {
                let page = self
                    .store
                    .list(&ListRequest {
                        prefix: from.to_string(),
                        continuation: token.clone(),
                        max_keys: 1000,
                        ..Default::default()
                    })
                    .await?;
                batch.extend(page.objects.into_iter().filter(|o| o.key.starts_with(from)));
                token = page.next_token;
                if token.is_none() {
                    more = false;
                    break;
                }
            }
            // Copies first.
            let copies: Vec<FsResult<String>> = futures::stream::iter(batch.iter().cloned())
                .map(|o| {
                    let store = self.store.clone();
                    let dk = format!("{to}{}", o.key.strip_prefix(from).unwrap_or(&o.key));
                    async move {
                        if dk.len() > MAX_KEY_LEN {
                            return Err(FsError::NameTooLong(dk));
                        }
                        store
                            .copy(
                                &o.key,
                                &dk,
                                CopyOptions {
                                    source_version: Some(o.version),
                                    ..Default::default()
                                },
                            )
                            .await?;
                        Ok(dk)
                    }
                })
                .buffered(RENAME_CONCURRENCY)
                .collect()
                .await;
            if let Some(pos) = copies.iter().position(|r| r.is_err()) {
                // Undo the copies of this batch so the tree stays where it was.
                let made: Vec<String> = copies
                    .iter()
                    .filter_map(|r| r.as_ref().ok().cloned())
                    .collect();
                for k in made {
                    if let Err(e) = self.store.delete(&k).await {
                        tracing::warn!(key = %k, error = %e, "could not undo a copy of a failed rename");
                    }
                }
                let err = copies
                    .into_iter()
                    .nth(pos)
                    .and_then(|r| r.err())
                    .unwrap_or_else(|| FsError::Internal("rename failed".into()));
                return Err(err);
            }
            // Then deletes.
            let deletes: Vec<FsResult<()>> = futures::stream::iter(batch)
                .map(|o| {
                    let store = self.store.clone();
                    async move {
                        store.delete(&o.key).await?;
                        Ok(())
                    }
                })
                .buffered(RENAME_CONCURRENCY)
                .collect()
                .await;
            for r in deletes {
                r?;
            }
            if !more {
                return Ok(());
            }
            // The listing continues after the keys just deleted.
            token = None;
        }
    }

    // ----- files -----

    fn handle(&self, fh: u64) -> FsResult<Arc<FileHandle>> {
        lock(&self.handles, "handles")?
            .get(&fh)
            .cloned()
            .ok_or(FsError::BadHandle(fh))
    }

    /// Opens a file; returns the handle.
    pub async fn open(&self, ino: u64, flags: i32) -> FsResult<u64> {
        let write = flags & libc::O_ACCMODE != libc::O_RDONLY;
        if write {
            self.check_rw()?;
        }
        let _ns = self.namespace.read().await;
        let (kind, key) = self.key_of(ino)?;
        if kind == Kind::Dir {
            return Err(FsError::IsDir(key));
        }
        let (has_writer, detached, local, seq0) = {
            let t = self.table()?;
            let n = t.get(ino);
            (
                n.is_some_and(|n| n.writer.is_some()),
                n.is_some_and(|n| n.detached),
                n.and_then(|n| n.local_version.clone()),
                n.map_or(0, |n| n.local_seq),
            )
        };
        let head = if has_writer {
            None
        } else if detached {
            // Its name belongs to another file now: only its own last version will do.
            match local {
                Some(l) => Some(l),
                None => return Err(FsError::NotFound(key)),
            }
        } else {
            match self.store.head(&key, None).await {
                Ok(i) => Some(i),
                Err(e) if is_not_found(&e) => return Err(FsError::NotFound(key)),
                Err(e) => return Err(e.into()),
            }
        };
        // Decide what the handle reads (and what a new writer starts from) under the table
        // lock, so that a version this mount writes meanwhile is either seen here or sees this
        // handle's writer.
        let pinned = {
            let mut t = self.table()?;
            let n = t
                .get_mut(ino)
                .ok_or_else(|| FsError::NotFound(format!("inode {ino}")))?;
            let pinned = match head {
                // This mount wrote a version of this inode while the head was in flight: it
                // is newer than what the head returned.
                Some(i) if n.local_seq != seq0 => match &n.local_version {
                    Some(l) if l.key == i.key => Some(l.clone()),
                    _ => Some(i),
                },
                other => other,
            };
            if let Some(p) = &pinned {
                // An open inode always has attributes, so fstat keeps working if the name goes.
                n.attrs = Some((Attrs::from_object(p, false, &self.cfg), Instant::now()));
            }
            if write {
                self.attach_writer(n, &key, pinned.clone());
            }
            (pinned, n.local_seq)
        };
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.table()?.open(ino);
        lock(&self.handles, "handles")?.insert(
            fh,
            Arc::new(FileHandle {
                ino,
                write,
                pinned: Mutex::new(if write { (None, pinned.1) } else { pinned }),
                ra: Mutex::new(ReadAhead::default()),
            }),
        );
        Ok(fh)
    }

    /// Counts a write handle on `n`, making its writer over `base` when there is none.
    fn attach_writer(&self, n: &mut crate::inode::Node, key: &str, base: Option<ObjectInfo>) {
        if n.writer.is_none() {
            let attrs = match &base {
                Some(b) => Attrs::from_object(b, false, &self.cfg),
                None => Attrs::default_for(Kind::File, &self.cfg, SystemTime::now()),
            };
            let id = self.next_writer.fetch_add(1, Ordering::Relaxed);
            let w = Writer::new(id, key.to_string(), base, attrs, &self.wctx);
            let a = w.current_attrs();
            let cell = Arc::new(tokio::sync::Mutex::new(w));
            self.wctx.budget.register(&cell);
            n.writer = Some(cell);
            n.attrs = Some((a, Instant::now()));
        }
        n.write_handles += 1;
    }

    /// Creates and opens a file.
    pub async fn create(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        flags: i32,
        caller: Caller,
    ) -> FsResult<(Entry, u64)> {
        self.check_rw()?;
        let name_s = check_name(name)?;
        let key = self.child_key(parent, name_s)?;
        if mode & libc::S_IFMT != libc::S_IFREG && mode & libc::S_IFMT != 0 {
            return Err(FsError::NotSupported("special files".into()));
        }
        let existing = self.probe(&key).await?;
        let info = match existing {
            Some(_) if flags & libc::O_EXCL != 0 => return Err(FsError::Exists(key)),
            Some(Found::Dir { .. }) => return Err(FsError::IsDir(key)),
            Some(Found::Object(_)) => None,
            None => match self.put_new_file(&key, mode, caller).await {
                Ok(i) => Some(i),
                Err(FsError::Exists(k)) if flags & libc::O_EXCL != 0 => {
                    return Err(FsError::Exists(k))
                }
                Err(FsError::Exists(_)) => None,
                Err(e) => return Err(e),
            },
        };
        let entry = match info {
            Some(i) => {
                let e = self.remember(parent, name_s, Attrs::from_object(&i, false, &self.cfg))?;
                self.note_version(e.ino, &i);
                e
            }
            None => self.lookup(parent, name).await?,
        };
        if entry.attr.kind == fuser::FileType::Directory {
            self.forget(entry.ino, 1);
            return Err(FsError::IsDir(key));
        }
        match self.open(entry.ino, flags).await {
            Ok(fh) => {
                if flags & libc::O_TRUNC != 0 {
                    let sa = SetAttr {
                        size: Some(0),
                        fh: Some(fh),
                        ..Default::default()
                    };
                    if let Err(e) = self.setattr(entry.ino, sa).await {
                        let _ = self.release(entry.ino, fh).await;
                        self.forget(entry.ino, 1);
                        return Err(e);
                    }
                }
                let attr = self.getattr(entry.ino).await.unwrap_or(entry.attr);
                Ok((Entry { attr, ..entry }, fh))
            }
            Err(e) => {
                self.forget(entry.ino, 1);
                Err(e)
            }
        }
    }

    /// Reads from an open file.
    pub async fn read(&self, ino: u64, fh: u64, offset: u64, size: u32) -> FsResult<Bytes> {
        tracing::trace!(ino, fh, offset, size, "read");
        let h = self.handle(fh)?;
        let (writer, local, seq, key) = {
            let t = self.table()?;
            let n = t
                .get(h.ino)
                .ok_or_else(|| FsError::NotFound(format!("inode {ino}")))?;
            (
                n.writer.clone(),
                n.local_version.clone(),
                n.local_seq,
                t.path(h.ino),
            )
        };
        if let Some(w) = writer {
            return w
                .lock()
                .await
                .read(&self.wctx, offset, u64::from(size))
                .await;
        }
        let pinned = {
            let mut p = lock(&h.pinned, "handle")?;
            if let Some(lv) = local {
                // A version this mount wrote of this inode (under this or, after a rename,
                // another key) since the handle chose its version replaces it.
                if p.0.is_none() || p.1 < seq {
                    *p = (Some(lv), seq);
                }
            }
            p.0.clone()
        };
        let info = match pinned {
            Some(i) => i,
            None => {
                let key = key.ok_or_else(|| FsError::NotFound(format!("inode {ino}")))?;
                let i = self.store.head(&key, None).await?;
                lock(&h.pinned, "handle")?.0 = Some(i.clone());
                i
            }
        };
        let src = Source {
            key: Arc::from(info.key.as_str()),
            version: info.version,
            size: info.size,
        };
        let end = offset.saturating_add(u64::from(size)).min(info.size);
        if offset >= end {
            return Ok(Bytes::new());
        }
        let ahead = lock(&h.ra, "readahead")?.on_read(
            &(offset..end),
            info.size,
            self.wctx.cache.max_window(),
        );
        if let Some(r) = ahead {
            self.wctx.cache.prefetch(self.store.clone(), &src, r);
        }
        self.wctx
            .cache
            .read(self.store.as_ref(), &src, offset..end)
            .await
    }

    /// Writes to an open file; returns the bytes written.
    pub async fn write(&self, ino: u64, fh: u64, offset: u64, data: &[u8]) -> FsResult<u32> {
        tracing::trace!(ino, fh, offset, len = data.len(), "write");
        let h = self.handle(fh)?;
        if !h.write {
            return Err(FsError::BadHandle(fh));
        }
        let w = self
            .table()?
            .get(h.ino)
            .and_then(|n| n.writer.clone())
            .ok_or_else(|| FsError::Internal(format!("no writer for inode {ino}")))?;
        let mut g = w.lock().await;
        g.write(&self.wctx, offset, data).await?;
        let attrs = g.current_attrs();
        drop(g);
        self.cache_attrs(h.ino, &attrs);
        u32::try_from(data.len()).map_err(|_| FsError::Invalid("write too large".into()))
    }

    async fn commit_handle(&self, h: &FileHandle, durable: bool) -> FsResult<()> {
        let w = self.table()?.get(h.ino).and_then(|n| n.writer.clone());
        let Some(w) = w else {
            return Ok(());
        };
        let mut g = w.lock().await;
        let res = g.commit(&self.wctx, durable).await;
        let attrs = g.current_attrs();
        drop(g);
        if let Ok(Some(info)) = &res {
            self.note_version(h.ino, info);
        }
        self.cache_attrs(h.ino, &attrs);
        res.map(|_| ())
    }

    /// close(2) of a descriptor: completes the upload (a new version).
    pub async fn flush(&self, _ino: u64, fh: u64) -> FsResult<()> {
        let h = self.handle(fh)?;
        if !h.write {
            return Ok(());
        }
        self.commit_handle(&h, false).await
    }

    /// fsync(2): completes the upload and makes it durable.
    pub async fn fsync(&self, _ino: u64, fh: u64, _datasync: bool) -> FsResult<()> {
        let h = self.handle(fh)?;
        if h.write {
            self.commit_handle(&h, true).await
        } else {
            Ok(self.store.sync().await?)
        }
    }

    /// The last close of a handle: the last write handle of a file commits and drops the
    /// writer.
    pub async fn release(&self, _ino: u64, fh: u64) -> FsResult<()> {
        let h = lock(&self.handles, "handles")?
            .remove(&fh)
            .ok_or(FsError::BadHandle(fh))?;
        let mut res = Ok(());
        if h.write {
            let (w, last) = {
                let mut t = self.table()?;
                match t.get_mut(h.ino) {
                    Some(n) => {
                        n.write_handles = n.write_handles.saturating_sub(1);
                        (n.writer.clone(), n.write_handles == 0)
                    }
                    None => (None, false),
                }
            };
            if let (Some(w), true) = (w, last) {
                let mut g = w.lock().await;
                let r = g.commit(&self.wctx, false).await;
                let attrs = g.current_attrs();
                let mut t = self.table()?;
                if let Some(n) = t.get_mut(h.ino) {
                    if let Ok(Some(info)) = &r {
                        n.wrote(info.clone());
                    }
                    n.attrs = Some((attrs, Instant::now()));
                    if n.write_handles == 0 {
                        n.writer = None;
                    }
                }
                drop(g);
                res = r.map(|_| ());
            }
        }
        self.table()?.close(h.ino);
        res
    }

    // ----- directories -----

    /// Opens a directory; returns the handle.
    pub async fn opendir(&self, ino: u64) -> FsResult<u64> {
        let prefix = {
            let t = self.table()?;
            let n = t
                .get(ino)
                .ok_or_else(|| FsError::NotFound(format!("inode {ino}")))?;
            if n.kind != Kind::Dir {
                return Err(FsError::NotDir(n.name.clone()));
            }
            t.dir_prefix(ino)
                .ok_or_else(|| FsError::NotFound(format!("inode {ino}")))?
        };
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        lock(&self.dirs, "dirs")?.insert(
            fh,
            Arc::new(tokio::sync::Mutex::new(DirHandle::new(ino, prefix))),
        );
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
            let items = d.items(self.store.as_ref(), pos, PLUS_BATCH).await?;
            if items.is_empty() {
                return Ok(());
            }
            for (p, item) in items {
                let (child, kind, name) = match &item {
                    Item::Dot => (ino, Kind::Dir, "."),
                    Item::DotDot => (self.parent_of(ino), Kind::Dir, ".."),
                    Item::Entry(e) => {
                        let known = self.table()?.child(ino, &e.name);
                        let child = known.unwrap_or_else(|| {
                            key_ino(&format!("{}{}", d.prefix(), e.name), e.kind)
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
            let items = d.items(self.store.as_ref(), pos, PLUS_BATCH).await?;
            if items.is_empty() {
                return Ok(());
            }
            // Fetch the attributes the listing did not give, concurrently.
            let prefix = d.prefix().to_string();
            let missing: Vec<(u64, DirEntry)> = items
                .iter()
                .filter_map(|(p, it)| match it {
                    Item::Entry(e) if e.attrs.is_none() => Some((*p, (**e).clone())),
                    _ => None,
                })
                .collect();
            let fetched: Vec<(u64, FsResult<Attrs>)> = futures::stream::iter(missing)
                .map(|(p, e)| {
                    let prefix = prefix.clone();
                    async move { (p, self.entry_attrs(&prefix, &e).await) }
                })
                .buffer_unordered(16)
                .collect()
                .await;
            let mut got: HashMap<u64, Attrs> = HashMap::new();
            for (p, r) in fetched {
                match r {
                    Ok(a) => {
                        d.set_attrs(p, a.clone());
                        got.insert(p, a);
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
                    Item::Entry(e) => {
                        let attrs = match e.attrs.clone().or_else(|| got.get(&p).cloned()) {
                            Some(a) => a,
                            // Gone since the listing: skip it.
                            None => continue,
                        };
                        let entry = self.remember(ino, &e.name, attrs)?;
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

    async fn entry_attrs(&self, prefix: &str, e: &DirEntry) -> FsResult<Attrs> {
        let key = format!("{prefix}{}", e.name);
        match (e.kind, &e.object) {
            (Kind::Dir, _) => {
                let marker = format!("{key}/");
                match self.store.head(&marker, None).await {
                    Ok(m) => Ok(Attrs::from_object(&m, true, &self.cfg)),
                    Err(err) if is_not_found(&err) => Ok(self.implicit_dir_attrs()),
                    Err(err) => Err(err.into()),
                }
            }
            (_, Some(o)) if self.features.list_returns_metadata => {
                Ok(Attrs::from_object(o, false, &self.cfg))
            }
            _ => match self.store.head(&key, None).await {
                Ok(i) => Ok(Attrs::from_object(&i, false, &self.cfg)),
                Err(err) if is_not_found(&err) => Err(FsError::NotFound(key)),
                Err(err) => Err(err.into()),
            },
        }
    }

    // ----- filesystem -----

    /// Capacity of the store.
    pub async fn statfs(&self) -> FsResult<StatFs> {
        let c = self.store.capacity().await?;
        let bs = u64::from(crate::attr::BLOCK_SIZE);
        let ffree = c.free_bytes / bs;
        Ok(StatFs {
            blocks: c.total_bytes / bs,
            bfree: c.free_bytes / bs,
            bavail: c.free_bytes / bs,
            files: c.objects.saturating_add(ffree),
            ffree,
            bsize: crate::attr::BLOCK_SIZE,
            namelen: NAME_MAX as u32,
            frsize: crate::attr::BLOCK_SIZE,
        })
    }

    /// Completes the pending uploads of every open file and makes everything durable.
    pub async fn flush_all(&self) -> FsResult<()> {
        let writers = self.table()?.writers();
        let mut first: Option<FsError> = None;
        for (ino, _, w) in writers {
            let mut g = w.lock().await;
            match g.commit(&self.wctx, false).await {
                Ok(Some(info)) => {
                    let attrs = g.current_attrs();
                    drop(g);
                    self.note_version(ino, &info);
                    self.cache_attrs(ino, &attrs);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(inode = ino, error = %e, "flush of an open file failed");
                    first.get_or_insert(e);
                }
            }
        }
        if let Err(e) = self.store.sync().await {
            first.get_or_insert(e.into());
        }
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    // ----- extended attributes -----

    /// Metadata of `ino` for xattrs: (key of the object holding it, its current version).
    async fn xattr_target(&self, ino: u64) -> FsResult<Option<(String, ObjectInfo)>> {
        if ino == ROOT {
            return Ok(None);
        }
        let (kind, key) = self.key_of(ino)?;
        let okey = if kind == Kind::Dir {
            format!("{key}/")
        } else {
            key
        };
        match self.store.head(&okey, None).await {
            Ok(i) => Ok(Some((okey, i))),
            Err(e) if is_not_found(&e) && kind == Kind::Dir => Ok(None),
            Err(e) if is_not_found(&e) => Err(FsError::NotFound(okey)),
            Err(e) => Err(e.into()),
        }
    }

    fn writer_of(&self, ino: u64) -> FsResult<Option<Arc<WriterCell>>> {
        Ok(self.table()?.get(ino).and_then(|n| n.writer.clone()))
    }

    /// getxattr: the value of `name`.
    /// Whether `name` is an attribute objfs can hold (the `user.` namespace). Others
    /// (`security.*`, `system.posix_acl_*`, asked for every file by `ls -l`) never exist, so
    /// the adapter answers them at once.
    pub fn xattr_supported(name: &OsStr) -> bool {
        name.to_str().is_some_and(|n| n.starts_with(xattr::USER_NS))
    }

    pub async fn getxattr(&self, ino: u64, name: &OsStr) -> FsResult<Vec<u8>> {
        let name = name
            .to_str()
            .ok_or_else(|| FsError::NoAttr(format!("{name:?}")))?;
        if !name.starts_with(xattr::USER_NS) {
            return Err(FsError::NoAttr(name.to_string()));
        }
        if let Some(w) = self.writer_of(ino)? {
            return xattr::get(&w.lock().await.meta, name);
        }
        match self.xattr_target(ino).await? {
            Some((_, info)) => xattr::get(&info.metadata, name),
            None => Err(FsError::NoAttr(name.to_string())),
        }
    }

    /// listxattr: the names, NUL-terminated.
    pub async fn listxattr(&self, ino: u64) -> FsResult<Vec<u8>> {
        if let Some(w) = self.writer_of(ino)? {
            return Ok(xattr::list(&w.lock().await.meta));
        }
        Ok(match self.xattr_target(ino).await? {
            Some((_, info)) => xattr::list(&info.metadata),
            None => Vec::new(),
        })
    }

    /// setxattr.
    pub async fn setxattr(&self, ino: u64, name: &OsStr, value: &[u8], flags: i32) -> FsResult<()> {
        self.check_rw()?;
        let name = name
            .to_str()
            .ok_or_else(|| FsError::NotSupported(format!("xattr name {name:?}")))?;
        xattr::check_settable(name)?;
        self.change_meta(ino, |m| xattr::set(m, name, value, flags))
            .await
    }

    /// removexattr.
    pub async fn removexattr(&self, ino: u64, name: &OsStr) -> FsResult<()> {
        self.check_rw()?;
        let name = name
            .to_str()
            .ok_or_else(|| FsError::NoAttr(format!("{name:?}")))?;
        self.change_meta(ino, |m| xattr::remove(m, name)).await
    }

    async fn change_meta<F>(&self, ino: u64, f: F) -> FsResult<()>
    where
        F: Fn(&mut objfs_store::Metadata) -> FsResult<()>,
    {
        if ino == ROOT {
            return Err(FsError::NotSupported(
                "extended attributes on the root".into(),
            ));
        }
        if let Some(mut g) = self.current_writer(ino).await? {
            f(&mut g.meta)?;
            g.touch_meta(None);
            return self
                .publish_writer_meta(ino, &mut g, |meta, _| f(meta))
                .await;
        }
        let mut tries = 0;
        loop {
            match self.xattr_target(ino).await? {
                Some((okey, info)) => {
                    let mut meta = info.metadata.clone();
                    f(&mut meta)?;
                    match self
                        .store
                        .copy(
                            &okey,
                            &okey,
                            CopyOptions {
                                source_version: Some(info.version.clone()),
                                metadata: Some(meta),
                                condition: Condition::IfVersion(info.version),
                                ..Default::default()
                            },
                        )
                        .await
                    {
                        Ok(info) => {
                            let settled = self
                                .settle_meta_change(
                                    ino,
                                    &info,
                                    |w| {
                                        if f(&mut w.meta).is_ok() {
                                            w.touch_meta(None);
                                        }
                                    },
                                    |meta, _| f(meta),
                                )
                                .await?;
                            if settled {
                                return Ok(());
                            }
                        }
                        Err(e) if is_precondition(&e) && tries < 3 => tries += 1,
                        Err(e) => return Err(e.into()),
                    }
                }
                None => {
                    // An implicit directory: a marker carries the attribute.
                    let (_, key) = self.key_of(ino)?;
                    let mut meta = objfs_store::Metadata::new();
                    self.implicit_dir_attrs().store_into(&mut meta);
                    f(&mut meta)?;
                    self.store
                        .put(
                            &format!("{key}/"),
                            Body::empty(),
                            PutOptions {
                                metadata: meta,
                                ..Default::default()
                            },
                        )
                        .await?;
                    return Ok(());
                }
            }
        }
    }
}

/// Applies chmod/chown/utimens to `a`; returns the explicit mtime when one was set.
fn apply_attrs(a: &mut Attrs, sa: &SetAttr) -> Option<SystemTime> {
    if let Some(m) = sa.mode {
        a.perm = m & 0o7777;
    }
    if let Some(u) = sa.uid {
        a.uid = u;
    }
    if let Some(g) = sa.gid {
        a.gid = g;
    }
    let t = sa.mtime.as_ref().map(resolve_time);
    if let Some(t) = t {
        a.mtime = t;
    }
    t
}
