//! The namespace: finding names (lookup, forget, readlink) and making and removing them
//! (mkdir, mknod, symlink, unlink, rmdir). Renames are in `rename.rs`.
//!
//! A name is a key; creating one is a conditional put (`IfNotExists`), so two mounts racing
//! for a name never both win. A directory whose last entry goes away keeps existing: it gets a
//! marker ([`ObjFs::keep_dir`]).

use std::ffi::OsStr;
use std::path::Path;
use std::time::SystemTime;

use bytes::Bytes;
use objfs_store::Body;

use super::links::stub_target;
use super::{check_name, marker_of, Caller, Entry, Found, ObjFs};
use crate::attr::{Attrs, Kind};
use crate::error::{FsError, FsResult};
use crate::inode::ROOT;

/// Longest symlink target (Linux's PATH_MAX less the NUL).
const MAX_TARGET: usize = 4095;

impl ObjFs {
    /// A lookup answered from memory when it can be: ENOENT for a name known absent (see
    /// `names.rs`), the entry of a file open for writing here (its writer's attributes);
    /// `None` when the store must be asked ([`Self::lookup`]). The adapter answers these
    /// without a trip through the runtime.
    pub fn lookup_cached(&self, parent: u64, name: &OsStr) -> Option<FsResult<Entry>> {
        let name = match check_name(name) {
            Ok(n) => n,
            Err(e) => return Some(Err(e)),
        };
        if self.in_past(parent, Some(name)) {
            return self.lookup_past_cached(parent, name);
        }
        // Not while a rename moves names.
        let _ns = self.namespace.try_read().ok()?;
        let key = match self.child_key(parent, name) {
            Ok(k) => k,
            Err(e) => return Some(Err(e)),
        };
        if self.known_absent(parent, name).is_some() {
            return Some(Err(FsError::NotFound(key)));
        }
        let mut t = self.table().ok()?;
        let n = t.child(parent, name).and_then(|ino| t.get(ino))?;
        // Only an open writer's attributes are exact without the store.
        n.writer.as_ref()?;
        let (a, _) = n.attrs.clone()?;
        let ino = t.lookup(parent, name, a.kind);
        Some(Ok(self.entry(ino, &a)))
    }

    /// Looks `name` up in directory `parent`.
    pub async fn lookup(&self, parent: u64, name: &OsStr) -> FsResult<Entry> {
        if let Some(r) = self.lookup_cached(parent, name) {
            return r;
        }
        let name = check_name(name)?;
        if self.is_reserved(parent, name) {
            return Err(FsError::NotFound(name.to_string()));
        }
        if self.in_past(parent, Some(name)) {
            return self.lookup_past(parent, name).await;
        }
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
        if self.known_absent(parent, name).is_some() {
            return Err(FsError::NotFound(key));
        }
        match self.probe(&key).await? {
            Some(Found::Object(o)) if stub_target(&o).is_some() => self.stub_entry(&o).await,
            Some(f) => {
                let versioned = !matches!(f, Found::Dir { marker: None });
                let marker = matches!(f, Found::Dir { marker: Some(_) });
                let attrs = self.with_times(&key, self.found_attrs(&f), versioned).await;
                let e = self.remember(parent, name, attrs)?;
                if marker {
                    self.marker_seen(e.ino);
                }
                Ok(e)
            }
            None => {
                self.name_gone(parent, name);
                // An inode this mount still had under the name is gone from the store.
                let mut t = self.table()?;
                if let Some(ino) = t.child(parent, name) {
                    if t.get(ino).is_some_and(|n| n.writer.is_none()) {
                        t.detach(parent, name);
                    }
                }
                Err(FsError::NotFound(key))
            }
        }
    }

    /// Drops `n` kernel references of `ino`.
    pub fn forget(&self, ino: u64, n: u64) {
        if let Ok(mut t) = self.table() {
            t.forget(ino, n);
        }
    }

    /// Reads a symlink's target.
    pub async fn readlink(&self, ino: u64) -> FsResult<Bytes> {
        if self.in_past(ino, None) {
            return self.readlink_past(ino).await;
        }
        let (kind, key) = self.key_of(ino)?;
        if kind != Kind::Symlink {
            return Err(FsError::Invalid(format!("{key} is not a symlink")));
        }
        let got = match self.store.get(&key, Default::default()).await {
            Ok(g) => g,
            Err(e) if super::is_not_found(&e) => return Err(FsError::NotFound(key)),
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
        let a = owned_attrs(Kind::Dir, &self.cfg, mode, caller);
        self.make_name(parent, name, Body::empty(), &a).await
    }

    /// mknod: a regular file, FIFO, character or block device, or socket. A special file is a
    /// zero-byte object whose mode (type bits included) and device number are its metadata;
    /// opening it is the kernel's business and never reaches the store.
    pub async fn mknod(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        rdev: u32,
        caller: Caller,
    ) -> FsResult<Entry> {
        self.check_rw()?;
        let kind = match mode & libc::S_IFMT {
            0 | libc::S_IFREG => Kind::File,
            libc::S_IFIFO => Kind::Fifo,
            libc::S_IFCHR => Kind::CharDev,
            libc::S_IFBLK => Kind::BlockDev,
            libc::S_IFSOCK => Kind::Socket,
            libc::S_IFDIR => return Err(FsError::Invalid("mknod of a directory".into())),
            t => return Err(FsError::Invalid(format!("mknod of file type {t:o}"))),
        };
        let mut a = owned_attrs(kind, &self.cfg, mode, caller);
        if matches!(kind, Kind::CharDev | Kind::BlockDev) {
            a.rdev = rdev;
        }
        self.make_name(parent, name, Body::empty(), &a).await
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
        let target = target
            .to_str()
            .ok_or_else(|| FsError::Invalid("symlink target is not UTF-8".into()))?
            .to_string();
        if target.len() > MAX_TARGET {
            return Err(FsError::NameTooLong("symlink target".into()));
        }
        let mut a = Attrs::default_for(Kind::Symlink, &self.cfg, SystemTime::now());
        a.uid = caller.uid;
        a.gid = caller.gid;
        let body = Body::Bytes(Bytes::from(target.into_bytes()));
        self.make_name(parent, name, body, &a).await
    }

    /// Makes `name` in `parent` a new entry holding `attrs` (a directory's marker, or an
    /// object with `body`), unless the name exists (EEXIST, also when another mount wins the
    /// race for it).
    async fn make_name(
        &self,
        parent: u64,
        name: &OsStr,
        body: Body,
        attrs: &Attrs,
    ) -> FsResult<Entry> {
        let name = check_name(name)?;
        self.check_change(parent, Some(name))?;
        let key = self.child_key(parent, name)?;
        let dir = attrs.kind == Kind::Dir;
        if dir {
            self.check_key_len(&marker_of(&key))?;
        }
        if self.exists_here(parent, name)?
            || (self.known_absent(parent, name).is_none() && self.probe(&key).await?.is_some())
        {
            return Err(FsError::Exists(key));
        }
        let made = if dir {
            self.create_marker(&key, attrs).await?
        } else {
            self.put_if_absent(&key, body, attrs).await?
        };
        let info = made.ok_or_else(|| FsError::Exists(key.clone()))?;
        self.name_made(parent, name);
        self.dir_changed(parent).await;
        let e = self.remember(parent, name, Attrs::from_object(&info, dir, &self.cfg))?;
        if dir {
            self.marker_seen(e.ino);
            self.dir_made(e.ino);
        }
        Ok(e)
    }

    /// The kind of what this mount saw under `name` in `parent` within the attribute TTL (or
    /// has open for writing), if anything.
    pub(super) fn fresh_kind(&self, parent: u64, name: &str) -> FsResult<Option<Kind>> {
        let t = self.table()?;
        let n = t.child(parent, name).and_then(|i| t.get(i));
        Ok(n.and_then(|n| match &n.attrs {
            Some((a, at)) if n.writer.is_some() || at.elapsed() < self.cfg.attr_ttl => Some(a.kind),
            _ => None,
        }))
    }

    /// Whether `name` in `parent` is a file pending in this mount (not in the store yet).
    pub(super) fn exists_here(&self, parent: u64, name: &str) -> FsResult<bool> {
        let t = self.table()?;
        Ok(t.child(parent, name)
            .and_then(|i| t.get(i))
            .is_some_and(|n| n.is_pending()))
    }

    /// Keeps an implicit directory alive after its last entry went away, by writing its
    /// marker (otherwise it would vanish under the user's feet).
    pub(super) async fn keep_dir(&self, dir: u64) -> FsResult<()> {
        if dir == ROOT || self.marker_known(dir) {
            return Ok(());
        }
        let (key, attrs) = {
            let t = self.table()?;
            let Some(n) = t.get(dir) else {
                return Ok(());
            };
            if n.detached {
                return Ok(());
            }
            (t.path(dir), n.attrs.clone())
        };
        let Some(key) = key else {
            return Ok(());
        };
        if let Some(page) = self.list_below(&key, 1).await? {
            let marker = marker_of(&key);
            if page.objects.first().is_some_and(|o| o.key == marker) {
                self.marker_seen(dir);
                return Ok(());
            }
            if !page.objects.is_empty() || !page.common_prefixes.is_empty() {
                return Ok(());
            }
        }
        let a = attrs
            .map(|(a, _)| a)
            .filter(|a| a.kind == Kind::Dir)
            .unwrap_or_else(|| self.implicit_dir_attrs());
        // Someone else made it meanwhile: fine.
        self.create_marker(&key, &a).await?;
        self.marker_seen(dir);
        Ok(())
    }

    /// Removes a file or symlink.
    pub async fn unlink(&self, parent: u64, name: &OsStr) -> FsResult<()> {
        self.remove(parent, name, false).await
    }

    /// Removes an empty directory.
    pub async fn rmdir(&self, parent: u64, name: &OsStr) -> FsResult<()> {
        self.remove(parent, name, true).await
    }

    /// Removes `name` from `parent`: a directory (`dir`, only when empty: its marker goes)
    /// or else a file or symlink. Its inode is detached and the parent kept. A pending file
    /// (created here, never closed) is only forgotten: the store never had it.
    async fn remove(&self, parent: u64, name: &OsStr, dir: bool) -> FsResult<()> {
        let name = check_name(name)?;
        self.check_change(parent, Some(name))?;
        let key = self.child_key(parent, name)?;
        let (pending, child) = {
            let t = self.table()?;
            let child = t.child(parent, name);
            let pending = child.and_then(|i| t.get(i)).is_some_and(|n| n.is_pending());
            (pending, child)
        };
        if let (true, Some(c)) = (pending, child) {
            if dir {
                return Err(FsError::NotDir(key));
            }
            if let Some(mut g) = self.current_writer(c).await? {
                // Still pending with its writer held: no commit can make it a version now.
                if self.settle_pending(c, &g) {
                    g.unlinked = true;
                    {
                        let mut t = self.table()?;
                        if t.child(parent, name) == Some(c) {
                            t.detach(parent, name);
                        }
                    }
                    drop(g);
                    self.name_gone(parent, name);
                    self.dir_changed(parent).await;
                    return Ok(());
                }
            }
        }
        // What this mount saw under the name within the TTL needs no second look.
        let known = self.fresh_kind(parent, name)?;
        let (is_dir, stub) = match known {
            Some(k) => (k == Kind::Dir, false),
            None => match self.probe(&key).await? {
                None => return Err(FsError::NotFound(key)),
                Some(Found::Object(o)) => (false, stub_target(&o).is_some()),
                Some(f) => (matches!(f, Found::Dir { .. }), false),
            },
        };
        match (is_dir, dir) {
            (true, false) => return Err(FsError::IsDir(key)),
            (false, true) => return Err(FsError::NotDir(key)),
            _ => {}
        }
        if stub {
            // A name of a hard-linked file (see `links.rs`).
            self.unlink_stub(&key).await?;
            self.name_gone(parent, name);
            self.keep_dir(parent).await?;
            self.dir_changed(parent).await;
            return Ok(());
        }
        if dir {
            let has_pending = child.is_some_and(|c| self.table().is_ok_and(|t| t.has_pending(c)));
            if has_pending || !self.dir_is_empty(&key).await? {
                return Err(FsError::NotEmpty(key));
            }
            self.delete_marker(&key).await?;
            if let Some(c) = child {
                self.dir_forgotten(c);
            }
        } else if self.store.delete(&key).await?.is_none() && known.is_some() {
            // Gone from the store since this mount last looked (another client removed it).
            self.detach_name(parent, name).await?;
            self.name_gone(parent, name);
            return Err(FsError::NotFound(key));
        }
        self.detach_name(parent, name).await?;
        self.name_gone(parent, name);
        self.keep_dir(parent).await?;
        self.dir_changed(parent).await;
        Ok(())
    }

    /// Unhooks the cached inode of `name`; its open writer (if any) will discard.
    pub(super) async fn detach_name(&self, parent: u64, name: &str) -> FsResult<()> {
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
}

/// Whether `mode` asks for a regular file (or gives no type).
pub(super) fn is_regular(mode: u32) -> bool {
    mode & libc::S_IFMT == libc::S_IFREG || mode & libc::S_IFMT == 0
}

/// The mount's default attributes of a new `kind` with `mode`'s permissions, owned by
/// `caller`.
pub(super) fn owned_attrs(kind: Kind, cfg: &crate::FsConfig, mode: u32, caller: Caller) -> Attrs {
    let mut a = Attrs::default_for(kind, cfg, SystemTime::now());
    a.perm = mode & 0o7777;
    a.uid = caller.uid;
    a.gid = caller.gid;
    a
}
