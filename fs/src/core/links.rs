//! Hard links, one object per file: the first `link(2)` of a file moves its data (a copy in
//! place: the store shares the extents, no byte is copied) to an *inode object*
//! `.objfs/inodes/ID` under the reserved root name, and every name of the file becomes a
//! zero-byte *stub* whose metadata names that ID ([`META_LINK`]). The inode object carries
//! the file's attributes and its link count ([`META_NLINK`]); its versions are the file's
//! history.
//!
//! In the mount every name of a linked file resolves to one inode, whose key is the inode
//! object's: lookups, `getattr`, `readdirplus`, reads, writes (each close a version of the
//! inode object), chmod/chown/utimens and xattrs all go there, so they apply once for all
//! names. An unlink removes a stub and lowers the count (the last one deletes the inode
//! object: a delete marker, history kept); a rename moves a stub like any object.
//!
//! Crash order: the count is raised before a stub is made and lowered after a stub is
//! removed, and the inode object is written before the first stub; so after a crash at any
//! step every name reads its acknowledged bytes, and the count is never below the number of
//! stubs (at worst above it: an inode object nobody names is left, never one deleted under a
//! name). Only stores whose copies share data and keep versions (local, memory) have links;
//! elsewhere `link` is EPERM. See docs/ARCHITECTURE.md and docs/FORMAT.md.

use std::ffi::OsStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, UNIX_EPOCH};

use objfs_store::{Body, Condition, CopyOptions, Metadata, ObjectInfo, PutOptions};
use tokio::sync::OwnedMutexGuard;

use super::{check_name, is_precondition, Entry, ObjFs, CAS_RETRIES};
use crate::attr::{Attrs, Kind, META_MODE, META_NLINK};
use crate::error::{FsError, FsResult};
use crate::inode::{key_ino, InodeTable, RESERVED, ROOT};
use crate::write::Writer;

/// Metadata of a stub: the ID of the inode object the name links to.
pub const META_LINK: &str = "x-objfs-inode";
/// The prefix of inode objects.
pub const INODES: &str = ".objfs/inodes/";
/// The directory of inode objects under [`RESERVED`].
const INODES_DIR: &str = "inodes";
/// Longest inode ID a stub may name.
const MAX_ID: usize = 64;

/// Makes inode IDs of one process distinct when the clock is coarse.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// The inode ID a stub names; `None` when `info` is not a stub.
pub fn stub_target(info: &ObjectInfo) -> Option<&str> {
    link_id(&info.metadata)
}

/// The inode ID in the metadata of a stub (of any version of one); `None` for anything else.
pub fn link_id(meta: &Metadata) -> Option<&str> {
    meta.get(META_LINK).map(String::as_str).filter(|id| {
        !id.is_empty() && id.len() <= MAX_ID && id.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// The key of inode object `id`.
pub fn inode_key(id: &str) -> String {
    format!("{INODES}{id}")
}

/// The link count an inode object records (1 when it records none).
fn count_of(info: &ObjectInfo) -> u32 {
    info.metadata
        .get(META_NLINK)
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1)
}

/// A new inode ID: the time in nanoseconds and a counter, in hex.
fn new_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    format!("{nanos:x}{:04x}", n & 0xffff)
}

/// The node of the directory `.objfs/inodes` in the table, made if needed.
fn inodes_dir(t: &mut InodeTable) -> u64 {
    let objfs = t.insert(ROOT, RESERVED, Kind::Dir);
    t.insert(objfs, INODES_DIR, Kind::Dir)
}

/// The metadata of a stub linking to `id`: the file's type (for listings) and the link.
fn stub_meta(id: &str, kind: Kind) -> Metadata {
    let mut m = Metadata::new();
    m.insert(META_MODE.into(), kind.type_bits().to_string());
    m.insert(META_LINK.into(), id.to_string());
    m
}

impl ObjFs {
    /// Whether this store has hard links: copies share data and versions are kept.
    fn links_supported(&self) -> bool {
        self.features.zero_copy && self.features.versioning
    }

    /// The cached inode of inode object `id`, if any.
    fn inode_node(&self, id: &str) -> FsResult<Option<u64>> {
        Ok(self.table()?.find_live(&inode_key(id)))
    }

    /// The inode number the name of stub `info` (of `kind`) shows in a plain listing.
    pub(super) fn stub_ino(&self, info: &ObjectInfo, kind: Kind) -> Option<u64> {
        let id = stub_target(info)?;
        Some(
            self.inode_node(id)
                .ok()
                .flatten()
                .unwrap_or_else(|| key_ino(&inode_key(id), kind)),
        )
    }

    /// The entry of the file stub `stub` links to (one kernel lookup counted). ENOENT when
    /// its inode object is gone (never by objfs's own order of steps).
    pub(super) async fn stub_entry(&self, stub: &ObjectInfo) -> FsResult<Entry> {
        let id = stub_target(stub)
            .ok_or_else(|| FsError::Internal(format!("{} is not a link", stub.key)))?;
        let key = inode_key(id);
        let Some(info) = self.head_live(&key).await? else {
            tracing::warn!(name = %stub.key, inode = %key, "a link names a missing inode object");
            return Err(FsError::NotFound(stub.key.clone()));
        };
        let attrs = self
            .with_times(&key, Attrs::from_object(&info, false, &self.cfg), true)
            .await;
        let dir = inodes_dir(&mut *self.table()?);
        self.remember(dir, id, attrs)
    }

    /// link(2): gives the file `ino` the new name `newname` in `newparent`. EPERM for a
    /// directory and on stores without links (S3).
    pub async fn link(&self, ino: u64, newparent: u64, newname: &OsStr) -> FsResult<Entry> {
        self.check_change(newparent, newname.to_str())?;
        self.check_change(ino, None)?;
        if !self.links_supported() {
            return Err(FsError::NotPermitted(
                "hard links need a store whose copies share data (local, memory)".into(),
            ));
        }
        let newname = check_name(newname)?;
        let newkey = self.child_key(newparent, newname)?;
        let _ns = self.namespace.write().await;
        let (kind, key) = self.key_of(ino)?;
        if kind == Kind::Dir {
            return Err(FsError::NotPermitted(format!(
                "hard link of directory {key}"
            )));
        }
        if self.table()?.get(ino).is_some_and(|n| n.detached) {
            return Err(FsError::NotFound(key));
        }
        if self.exists_here(newparent, newname)?
            || (self.known_absent(newparent, newname).is_none()
                && self.probe(&newkey).await?.is_some())
        {
            return Err(FsError::Exists(newkey));
        }
        // What was written through an open descriptor is in the file before it is linked,
        // and the writer stays held so nothing is written while the file changes keys.
        let mut held = self.current_writer(ino).await?;
        if let Some(g) = held.as_mut() {
            self.commit_writer(ino, g, false).await?;
        }
        let id = match key.strip_prefix(INODES) {
            Some(id) => {
                let id = id.to_string();
                self.add_name(ino, &id, kind, &newkey, held.as_mut())
                    .await?;
                id
            }
            None => {
                self.first_link(ino, &key, kind, &newkey, held.as_mut())
                    .await?
            }
        };
        self.name_made(newparent, newname);
        self.dir_changed(newparent).await;
        let attrs = match held.as_ref() {
            Some(g) => g.current_attrs(),
            None => self
                .table()?
                .get(ino)
                .and_then(|n| n.attrs.clone())
                .map(|(a, _)| a)
                .ok_or_else(|| FsError::Internal(format!("inode {ino} lost its attributes")))?,
        };
        let mut t = self.table()?;
        let dir = inodes_dir(&mut t);
        let same = t.lookup(dir, &id, kind);
        if same != ino {
            return Err(FsError::Internal(format!(
                "inode {id} is {same}, not {ino}"
            )));
        }
        Ok(self.entry(ino, &attrs))
    }

    /// The first link of the plain file `key` (inode `ino`): its current version is copied
    /// to a new inode object with a count of 2, then `newkey` and then `key` become stubs.
    /// The inode moves to the inode object's key. Returns the new ID.
    async fn first_link(
        &self,
        ino: u64,
        key: &str,
        kind: Kind,
        newkey: &str,
        held: Option<&mut OwnedMutexGuard<Writer>>,
    ) -> FsResult<String> {
        let cur = self.head_existing(key).await?;
        if let Some(id) = stub_target(&cur) {
            // Another mount linked it meanwhile.
            return Err(FsError::Internal(format!(
                "{key} became a link to {id} outside this mount; look it up again"
            )));
        }
        let mut meta = cur.metadata.clone();
        meta.insert(META_NLINK.into(), "2".into());
        let (id, info) = loop {
            let id = new_id();
            let opts = CopyOptions {
                source_version: Some(cur.version.clone()),
                metadata: Some(meta.clone()),
                condition: Condition::IfNotExists,
                ..Default::default()
            };
            match self.store.copy(key, &inode_key(&id), opts).await {
                Ok(info) => break (id, info),
                Err(e) if is_precondition(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        };
        let ikey = inode_key(&id);
        if !self
            .put_stub(newkey, &id, kind, Condition::IfNotExists)
            .await?
        {
            self.undo_link(&[&ikey]).await;
            return Err(FsError::Exists(newkey.to_string()));
        }
        if !self
            .put_stub(key, &id, kind, Condition::IfVersion(cur.version.clone()))
            .await?
        {
            self.undo_link(&[newkey, &ikey]).await;
            return Err(FsError::Internal(format!(
                "{key} changed outside this mount while it was linked"
            )));
        }
        let attrs = Attrs::from_object(&info, false, &self.cfg);
        {
            let mut t = self.table()?;
            let dir = inodes_dir(&mut t);
            t.rename(ino, dir, &id);
            t.wrote(ino, info.clone());
        }
        if let Some(g) = held {
            g.key = inode_key(&id);
            follow(g, &info, 2);
            self.cache_attrs(ino, &g.current_attrs());
        } else {
            self.cache_attrs(ino, &attrs);
        }
        Ok(id)
    }

    /// A further name `newkey` for the linked file `id` (inode `ino`): the count first, then
    /// the stub (the count goes back down when the name is taken meanwhile: EEXIST).
    async fn add_name(
        &self,
        ino: u64,
        id: &str,
        kind: Kind,
        newkey: &str,
        mut held: Option<&mut OwnedMutexGuard<Writer>>,
    ) -> FsResult<()> {
        self.count_links(ino, id, 1, held.as_deref_mut()).await?;
        if !self
            .put_stub(newkey, id, kind, Condition::IfNotExists)
            .await?
        {
            self.count_links(ino, id, -1, held).await?;
            return Err(FsError::Exists(newkey.to_string()));
        }
        Ok(())
    }

    /// Deletes what a link that failed made (the stubs first, then the inode object).
    async fn undo_link(&self, keys: &[&str]) {
        for k in keys {
            if let Err(e) = self.store.delete(k).await {
                tracing::warn!(key = %k, error = %e, "could not undo a failed link");
            }
        }
    }

    /// Writes the stub `key` linking to `id` under `condition`; false when it did not hold.
    async fn put_stub(
        &self,
        key: &str,
        id: &str,
        kind: Kind,
        condition: Condition,
    ) -> FsResult<bool> {
        let opts = PutOptions {
            metadata: stub_meta(id, kind),
            condition,
            ..Default::default()
        };
        match self.store.put(key, Body::empty(), opts).await {
            Ok(_) => Ok(true),
            Err(e) if is_precondition(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes the name `key`, a stub (unlink): the stub goes, then the
    /// count of its inode object drops (the last name deletes the object).
    pub(super) async fn unlink_stub(&self, key: &str) -> FsResult<()> {
        let _ns = self.namespace.write().await;
        let Some(cur) = self.head_live(key).await? else {
            return Err(FsError::NotFound(key.to_string()));
        };
        let Some(id) = stub_target(&cur).map(str::to_string) else {
            // No longer a link (another mount changed it): a plain unlink.
            self.store.delete(key).await?;
            return Ok(());
        };
        match self
            .store
            .delete_if(key, Condition::IfVersion(cur.version.clone()))
            .await
        {
            Ok(_) => {}
            Err(e) if is_precondition(&e) => {
                return Err(FsError::Internal(format!(
                    "{key} changed outside this mount while it was removed"
                )))
            }
            Err(e) => return Err(e.into()),
        }
        self.drop_link(&id).await
    }

    /// Lowers the count of inode object `id` after one of its stubs went (a rename over it,
    /// an unlink). The namespace lock is held by the caller.
    pub(super) async fn drop_link(&self, id: &str) -> FsResult<()> {
        let ino = self.inode_node(id)?;
        let mut held = match ino {
            Some(i) => self.current_writer(i).await?,
            None => None,
        };
        if let (Some(i), Some(g)) = (ino, held.as_mut()) {
            self.commit_writer(i, g, false).await?;
        }
        match ino {
            Some(i) => self.count_links(i, id, -1, held.as_mut()).await,
            None => self.count_links(0, id, -1, None).await,
        }
    }

    /// Adds `delta` to the count of inode object `id` (a metadata-only version over the
    /// current one, retried when another writer won); at 0 the object is deleted. `ino` is its
    /// cached inode (0 for none) and `held` its open writer, committed and held by the
    /// caller, which follows the new version.
    async fn count_links(
        &self,
        ino: u64,
        id: &str,
        delta: i64,
        held: Option<&mut OwnedMutexGuard<Writer>>,
    ) -> FsResult<()> {
        let key = inode_key(id);
        let mut tries = 0;
        let (info, n) = loop {
            let cur = self.head_existing(&key).await?;
            let n = u32::try_from((i64::from(count_of(&cur)) + delta).max(0)).unwrap_or(0);
            let res = if n == 0 {
                self.store
                    .delete_if(&key, Condition::IfVersion(cur.version.clone()))
                    .await
                    .map(|_| None)
            } else {
                let mut meta = cur.metadata.clone();
                meta.insert(META_NLINK.into(), n.to_string());
                let opts = CopyOptions {
                    source_version: Some(cur.version.clone()),
                    metadata: Some(meta),
                    condition: Condition::IfVersion(cur.version.clone()),
                    ..Default::default()
                };
                self.store.copy(&key, &key, opts).await.map(Some)
            };
            match res {
                Ok(info) => break (info, n),
                Err(e) if is_precondition(&e) && tries < CAS_RETRIES => tries += 1,
                Err(e) => return Err(e.into()),
            }
        };
        if ino == 0 {
            return Ok(());
        }
        match info {
            Some(info) => {
                self.note_version(ino, &info);
                match held {
                    Some(g) => {
                        follow(g, &info, n);
                        self.cache_attrs(ino, &g.current_attrs());
                    }
                    None => self.cache_attrs(ino, &Attrs::from_object(&info, false, &self.cfg)),
                }
            }
            None => {
                // The last name went: the file is an unlinked one now.
                if let Some(g) = held {
                    g.unlinked = true;
                }
                let mut t = self.table()?;
                if let Some((a, at)) = t.get_mut(ino).and_then(|n| n.attrs.as_mut()) {
                    a.nlink = 0;
                    *at = Instant::now();
                }
                if let Some(dir) = t.find_live(INODES.trim_end_matches('/')) {
                    t.detach(dir, id);
                }
            }
        }
        Ok(())
    }
}

/// Points a committed, held writer at the version `info` of its file (same data, new
/// metadata) with link count `n`.
fn follow(g: &mut Writer, info: &ObjectInfo, n: u32) {
    g.base = Some(info.clone());
    g.meta = info.metadata.clone();
    g.attrs.nlink = n;
}
