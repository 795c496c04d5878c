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
use objfs_store::{Body, ObjectInfo};

use super::{check_name, marker_of, Caller, Entry, Found, ObjFs};
use crate::attr::{Attrs, Kind};
use crate::error::{FsError, FsResult};
use crate::inode::ROOT;

/// Longest symlink target (Linux's PATH_MAX less the NUL).
const MAX_TARGET: usize = 4095;

impl ObjFs {
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
                let versioned = !matches!(f, Found::Dir { marker: None });
                let attrs = self.with_times(&key, self.found_attrs(&f), versioned).await;
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

    /// Reads a symlink's target.
    pub async fn readlink(&self, ino: u64) -> FsResult<Bytes> {
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

    /// Writes an empty file at `key` unless something is there (EEXIST).
    pub(super) async fn put_new_file(
        &self,
        key: &str,
        mode: u32,
        caller: Caller,
    ) -> FsResult<ObjectInfo> {
        let a = owned_attrs(Kind::File, &self.cfg, mode, caller);
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
        let key = self.child_key(parent, name)?;
        let dir = attrs.kind == Kind::Dir;
        if dir {
            self.check_key_len(&marker_of(&key))?;
        }
        if self.probe(&key).await?.is_some() {
            return Err(FsError::Exists(key));
        }
        let made = if dir {
            self.create_marker(&key, attrs).await?
        } else {
            self.put_if_absent(&key, body, attrs).await?
        };
        let info = made.ok_or_else(|| FsError::Exists(key.clone()))?;
        self.dir_changed(parent).await;
        self.remember(parent, name, Attrs::from_object(&info, dir, &self.cfg))
    }

    /// Hard links are not supported (EPERM).
    pub async fn link(&self, _ino: u64, _newparent: u64, _newname: &OsStr) -> FsResult<Entry> {
        Err(FsError::NotPermitted("hard links are not supported".into()))
    }

    /// Keeps an implicit directory alive after its last entry went away, by writing its
    /// marker (otherwise it would vanish under the user's feet).
    pub(super) async fn keep_dir(&self, dir: u64) -> FsResult<()> {
        if dir == ROOT {
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
        if self.has_keys_below(&key).await? {
            return Ok(());
        }
        let a = attrs
            .map(|(a, _)| a)
            .filter(|a| a.kind == Kind::Dir)
            .unwrap_or_else(|| self.implicit_dir_attrs());
        // Someone else made it meanwhile: fine.
        self.create_marker(&key, &a).await?;
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
    /// or else a file or symlink. Its inode is detached and the parent kept.
    async fn remove(&self, parent: u64, name: &OsStr, dir: bool) -> FsResult<()> {
        self.check_rw()?;
        let name = check_name(name)?;
        let key = self.child_key(parent, name)?;
        match self.probe(&key).await? {
            None => return Err(FsError::NotFound(key)),
            Some(Found::Dir { .. }) if !dir => return Err(FsError::IsDir(key)),
            Some(Found::Object(_)) if dir => return Err(FsError::NotDir(key)),
            Some(_) => {}
        }
        if dir {
            if !self.dir_is_empty(&key).await? {
                return Err(FsError::NotEmpty(key));
            }
            self.delete_marker(&key).await?;
        } else {
            self.store.delete(&key).await?;
        }
        self.detach_name(parent, name).await?;
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
fn owned_attrs(kind: Kind, cfg: &crate::FsConfig, mode: u32, caller: Caller) -> Attrs {
    let mut a = Attrs::default_for(kind, cfg, SystemTime::now());
    a.perm = mode & 0o7777;
    a.uid = caller.uid;
    a.gid = caller.gid;
    a
}
