//! The filesystem core: every file operation, async, over `Arc<dyn ObjectStore>`, with no
//! FUSE in sight, so that all of the logic is tested without a mount. The fuser adapter
//! (`adapter.rs`) calls one method per request and converts the core's plain [`types`].
//!
//! Namespace: a directory is a key prefix ending in `/`; it exists when its marker object
//! (`d/`) exists or any key lies below it (implicit directory). A name that is both a file
//! `a` and a directory `a/` is the directory (dir wins). See `docs/SEMANTICS.md`.
//!
//! [`ObjFs`] is one struct; its operations are split by concept, one `impl ObjFs` block per
//! module: `namespace` (lookup, create and remove names), `rename` (renames and tree
//! moves), `files` (open files: read, write, flush, release), `attributes` (getattr,
//! setattr, xattrs), `directories` (readdir handles, statfs), `markers` (every store call
//! on a directory marker), `times` (times beside keys, written lazily), `names` (names known
//! to be absent), `snapshots` (the past: `.snapshots/` and `mount --at`, read-only),
//! `invalidate` (forgetting what changed outside the kernel's view), `links` (hard links:
//! stubs naming inode objects). This module holds the struct and the helpers they share.

mod attributes;
mod directories;
mod files;
mod invalidate;
mod links;
mod markers;
mod names;
mod namespace;
mod rename;
pub mod snapshots;
mod times;
mod tree_list;
pub mod types;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use objfs_store::{
    Body, Condition, CopyOptions, ErrorKind, Metadata, ObjectInfo, ObjectStore, PutOptions,
    StoreError, StoreFeatures,
};
use tokio::sync::Semaphore;

use crate::attr::{Attrs, Kind};
use crate::budget::MemBudget;
use crate::config::FsConfig;
use crate::dirhandle::{DirHandle, NAME_MAX};
use crate::error::{FsError, FsResult};
use crate::inode::{InodeTable, View};
use crate::read::{BlockCache, ReadAhead};
use crate::write::{WriteCtx, Writer, WriterCell};

pub use invalidate::KernelNotifier;
pub use links::{inode_key, link_id, stub_target, INODES, META_LINK};
pub use markers::marker_of;
pub use times::{MAX_DIRTY_TIMES, TIMES_FLUSH_INTERVAL};
pub use types::{Attr, Caller, Entry, Opened, SetAttr, SetTime, StatFs};

/// Concurrent part uploads of the whole mount.
const UPLOAD_SLOTS: usize = 4;
/// Times a compare-and-swap metadata rewrite is tried again after losing a race.
const CAS_RETRIES: u32 = 3;

/// An open file.
struct FileHandle {
    ino: u64,
    write: bool,
    /// The version this handle reads (when no writer is active on the file), and the
    /// inode's `local_seq` when it was chosen.
    pinned: Mutex<(Option<ObjectInfo>, u64)>,
    ra: Mutex<ReadAhead>,
    /// A read went through this handle (relatime looks once per handle).
    read_seen: std::sync::atomic::AtomicBool,
    /// The threads that opened this handle or wrote through it: whose close commits.
    closers: crate::closers::Closers,
}

/// What a name resolves to in the store (or, `Pending`, in this mount only).
enum Found {
    Dir {
        marker: Option<ObjectInfo>,
    },
    Object(ObjectInfo),
    /// A file created by this mount that has no version yet.
    Pending,
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
    /// Times beside keys this mount recorded or read (see `times.rs`).
    times: Mutex<times::TimesCache>,
    /// Names this mount knows to be absent (see `names.rs`).
    names: Mutex<names::NameCache>,
    /// Renames take it exclusively, opens shared: an open that resolves a name and pins its
    /// version never interleaves with a rename that hands the name to another inode.
    namespace: tokio::sync::RwLock<()>,
    /// Where invalidations of changes made outside the kernel go (see `invalidate.rs`).
    notifier: Mutex<Option<Arc<dyn KernelNotifier>>>,
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
    /// The longest key the store takes (a backend capability: 4,096 bytes locally, 1,024 on
    /// S3); a longer path is ENAMETOOLONG.
    pub(super) fn max_key_len(&self) -> usize {
        self.features.max_key_len
    }

    /// Checks that `key` fits the store's key length.
    pub(super) fn check_key_len(&self, key: &str) -> FsResult<()> {
        if key.len() > self.max_key_len() {
            return Err(FsError::NameTooLong(format!("key of {} bytes", key.len())));
        }
        Ok(())
    }
}

impl ObjFs {
    /// A core over `store` with `cfg`.
    pub fn new(store: Arc<dyn ObjectStore>, cfg: FsConfig) -> Arc<ObjFs> {
        let features = store.features();
        let now = SystemTime::now();
        let disk = cfg.disk_cache.as_ref().map(|d| d.0.clone());
        let cache = Arc::new(BlockCache::with_disk(cfg.cache_size, disk));
        let wctx = WriteCtx {
            store: store.clone(),
            cache,
            budget: Arc::new(MemBudget::new(cfg.max_memory)),
            uploads: Arc::new(Semaphore::new(UPLOAD_SLOTS)),
            part_size: cfg.part_size.max(1) as u64,
            min_part: features.min_part_size,
            // Checkpoints are staged where a copy shares data (see `write`'s module doc).
            stage: (features.zero_copy
                && features.versioning
                && !cfg.read_only
                && cfg.at.is_none())
            .then(|| {
                format!(
                    "{:x}",
                    now.duration_since(UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_nanos()
                )
            }),
        };
        let mut cfg = cfg;
        let mut inodes = InodeTable::new();
        if let Some(at) = cfg.at {
            // `objfs mount --at`: the whole mount is the store as of that moment.
            cfg.read_only = true;
            inodes.set_root_view(View::At(at));
        }
        let mut root = Attrs::default_for(Kind::Dir, &cfg, cfg.at.unwrap_or(now));
        if cfg.at.is_none() {
            root.mtime = now;
        }
        Arc::new(ObjFs {
            store,
            features,
            started: now,
            inodes: Mutex::new(inodes),
            handles: Mutex::new(HashMap::new()),
            dirs: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            next_writer: AtomicU64::new(1),
            wctx,
            root_attrs: Mutex::new(root),
            times: Mutex::new(times::TimesCache::new()),
            names: Mutex::new(names::NameCache::new()),
            namespace: tokio::sync::RwLock::new(()),
            notifier: Mutex::new(None),
            cfg,
        })
    }

    /// Removes what writers of an earlier mount staged and never committed (the mount died):
    /// run before the mount serves. A failure is logged, not fatal (the staged versions are
    /// only garbage; the next mount tries again).
    pub async fn clear_stage(&self) {
        if self.wctx.stage.is_none() {
            return;
        }
        match crate::write::clear_stage(self.store.as_ref()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "removed checkpoints an earlier mount staged"),
            Err(e) => {
                tracing::warn!(error = %e, "cannot remove the checkpoints an earlier mount staged")
            }
        }
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
            attr: attrs.to_attr(ino),
            ttl: self.cfg.attr_ttl,
            generation: 0,
        }
    }

    /// Key of inode `ino` (EROFS for an inode in the past: see `snapshots.rs`).
    fn key_of(&self, ino: u64) -> FsResult<(Kind, String)> {
        let t = self.table()?;
        let n = t
            .get(ino)
            .ok_or_else(|| FsError::NotFound(format!("inode {ino}")))?;
        if n.view != View::Live {
            return Err(FsError::ReadOnly);
        }
        let kind = n.kind;
        let key = t
            .path(ino)
            .ok_or_else(|| FsError::NotFound(format!("inode {ino}")))?;
        Ok((kind, key))
    }

    /// The prefix of the keys in directory `ino` (`""` for the root, `a/b/` otherwise).
    fn dir_prefix(&self, ino: u64) -> FsResult<String> {
        let t = self.table()?;
        let n = t
            .get(ino)
            .ok_or_else(|| FsError::NotFound(format!("inode {ino}")))?;
        if n.kind != Kind::Dir {
            return Err(FsError::NotDir(n.name.clone()));
        }
        if n.view != View::Live {
            return Err(FsError::ReadOnly);
        }
        t.dir_prefix(ino)
            .ok_or_else(|| FsError::NotFound(format!("inode {ino}")))
    }

    /// Key of `name` in directory `parent`.
    fn child_key(&self, parent: u64, name: &str) -> FsResult<String> {
        let key = self.dir_prefix(parent)? + name;
        self.check_key_len(&key)?;
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
            Found::Pending => Attrs::default_for(Kind::File, &self.cfg, SystemTime::now()),
        }
    }

    /// What `key` is in the store: a directory (wins), a file/symlink, or nothing.
    async fn probe(&self, key: &str) -> FsResult<Option<Found>> {
        let (below, head) = tokio::join!(self.list_below(key, 1), self.head_live(key));
        let below = match (below, &head) {
            // The file is there (the journal of a write-back mount may know it while the
            // bucket cannot be listed): it is shown rather than an error for what might lie
            // below its name.
            (Err(e), Ok(Some(_))) => {
                tracing::debug!(key, error = %e, "listing below a file failed: the file is shown");
                None
            }
            (below, _) => below?,
        };
        if let Some(page) = below {
            if !page.objects.is_empty() || !page.common_prefixes.is_empty() {
                let marker_key = marker_of(key);
                let marker = page
                    .objects
                    .into_iter()
                    .next()
                    .filter(|o| o.key == marker_key);
                let marker = match marker {
                    Some(_) if !self.features.list_returns_metadata => {
                        self.head_marker(key).await?
                    }
                    m => m,
                };
                return Ok(Some(Found::Dir { marker }));
            }
        }
        Ok(head?.map(Found::Object))
    }

    /// The current version of `key`, or `None` when it has no live version.
    async fn head_live(&self, key: &str) -> FsResult<Option<ObjectInfo>> {
        match self.store.head(key, None).await {
            Ok(i) => Ok(Some(i)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The current version of `key` for an open (see [`ObjectStore::head_for_open`]); ENOENT
    /// when it has none.
    async fn head_for_open(&self, key: &str) -> FsResult<ObjectInfo> {
        match self.store.head_for_open(key).await {
            Ok(i) => Ok(i),
            Err(e) if is_not_found(&e) => Err(FsError::NotFound(key.to_string())),
            Err(e) => Err(e.into()),
        }
    }

    /// The current version of `key`; ENOENT when it has none.
    async fn head_existing(&self, key: &str) -> FsResult<ObjectInfo> {
        self.head_live(key)
            .await?
            .ok_or_else(|| FsError::NotFound(key.to_string()))
    }

    /// Writes a new object holding `attrs` (with `edit` applied to its metadata) and `body`
    /// under `condition`: `Ok(None)` when the condition did not hold.
    async fn put_with_attrs<F>(
        &self,
        key: &str,
        body: Body,
        attrs: &Attrs,
        condition: Condition,
        edit: F,
    ) -> FsResult<Option<ObjectInfo>>
    where
        F: FnOnce(&mut Metadata) -> FsResult<()>,
    {
        let mut meta = Metadata::new();
        attrs.store_into(&mut meta);
        edit(&mut meta)?;
        let opts = PutOptions {
            metadata: meta,
            condition,
            ..Default::default()
        };
        match self.store.put(key, body, opts).await {
            Ok(i) => Ok(Some(i)),
            Err(e) if is_precondition(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes a new object holding `attrs` (and `body`) only if `key` has no live version:
    /// `Ok(None)` when something is there already.
    async fn put_if_absent(
        &self,
        key: &str,
        body: Body,
        attrs: &Attrs,
    ) -> FsResult<Option<ObjectInfo>> {
        self.put_with_attrs(key, body, attrs, Condition::IfNotExists, |_| Ok(()))
            .await
    }

    /// Writes a new version of `key` whose metadata is the current version's changed by
    /// `edit` (data shared: a copy in place), over that version only: when another writer
    /// made a version meanwhile, the change is made again over that one. `Ok(None)` when
    /// `key` has no live version. The one compare-and-swap metadata rewrite of the core.
    async fn rewrite_meta<F>(&self, key: &str, edit: F) -> FsResult<Option<ObjectInfo>>
    where
        F: Fn(&mut Metadata, &ObjectInfo) -> FsResult<()>,
    {
        let mut tries = 0;
        loop {
            let Some(cur) = self.head_live(key).await? else {
                return Ok(None);
            };
            let mut meta = cur.metadata.clone();
            edit(&mut meta, &cur)?;
            let opts = CopyOptions {
                source_version: Some(cur.version.clone()),
                metadata: Some(meta),
                condition: Condition::IfVersion(cur.version.clone()),
                ..Default::default()
            };
            match self.store.copy(key, key, opts).await {
                Ok(info) => return Ok(Some(info)),
                Err(e) if is_precondition(&e) && tries < CAS_RETRIES => tries += 1,
                Err(e) => return Err(e.into()),
            }
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

    fn writer_of(&self, ino: u64) -> FsResult<Option<Arc<WriterCell>>> {
        Ok(self.table()?.get(ino).and_then(|n| n.writer.clone()))
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

    /// Commits the writer `g` of `ino` (see [`Writer::commit`]); a version it made is recorded
    /// as this mount's newest of the inode, with its attributes.
    async fn commit_writer(
        &self,
        ino: u64,
        g: &mut Writer,
        durable: bool,
    ) -> FsResult<Option<ObjectInfo>> {
        let res = g.commit(&self.wctx, durable).await;
        if let Ok(Some(info)) = &res {
            self.note_version(ino, info);
            self.cache_attrs(ino, &g.current_attrs());
        }
        self.settle_pending(ino, g);
        res
    }

    /// A pending file whose writer made a version on its own (a checkpoint while writing) is
    /// in the store: pending no more. Returns whether `ino` is still pending.
    fn settle_pending(&self, ino: u64, g: &Writer) -> bool {
        let Ok(mut t) = self.table() else {
            return false;
        };
        if !t.get(ino).is_some_and(|n| n.is_pending()) {
            return false;
        }
        match &g.base {
            Some(b) => {
                t.wrote(ino, b.clone());
                false
            }
            None => true,
        }
    }

    /// Records a version this mount wrote of `ino`; returns the inode's new `local_seq`.
    fn note_version(&self, ino: u64, info: &ObjectInfo) -> u64 {
        let Ok(mut t) = self.table() else {
            return 0;
        };
        t.wrote(ino, info.clone());
        t.get(ino).map_or(0, |n| n.local_seq)
    }

    fn local_seq(&self, ino: u64) -> FsResult<u64> {
        Ok(self.table()?.get(ino).map_or(0, |n| n.local_seq))
    }
}
