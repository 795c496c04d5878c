//! Attributes: getattr, setattr (chmod, chown, utimens, truncate) and extended attributes.
//!
//! An explicit metadata change makes a version (a copy in place: data shared). On a closed
//! file it is a compare-and-swap rewrite of the current version ([`ObjFs::rewrite_meta`]); on
//! a directory, of its marker; on a file open for writing it goes into the writer and is
//! published at once ([`ObjFs::publish_writer_meta`]). A change that returned is always in a
//! version: a writer that opened or committed meanwhile is settled with it
//! ([`ObjFs::settle_meta_change`]).

use std::ffi::OsStr;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use objfs_store::{Metadata, ObjectInfo};

use super::{lock, Attr, ObjFs, SetAttr};
use crate::attr::{Attrs, Kind};
use crate::config::FsConfig;
use crate::error::{FsError, FsResult};
use crate::inode::{View, ROOT};
use crate::write::{copy_version, Writer};
use crate::xattr;

impl ObjFs {
    /// The attributes of `ino` when they are at hand (cached within the TTL, an open writer's,
    /// an unlinked open file's, the root's); `None` when the store must be asked
    /// ([`Self::getattr`]). The adapter answers these without a trip through the runtime.
    pub fn getattr_cached(&self, ino: u64) -> Option<Attr> {
        if ino == ROOT {
            return lock(&self.root_attrs, "root").ok().map(|r| r.to_attr(ROOT));
        }
        let t = self.table().ok()?;
        let n = t.get(ino)?;
        let (a, at) = n.attrs.as_ref()?;
        // An open writer's, a detached inode's and the past's attributes never go stale.
        let live = n.writer.is_some() || n.detached || n.view != View::Live;
        if !live && at.elapsed() >= self.cfg.attr_ttl {
            return None;
        }
        let mut attr = a.to_attr(ino);
        if n.detached {
            // Unlinked (or replaced) while open: no name links to it any more.
            attr.nlink = 0;
        }
        Some(attr)
    }

    /// Attributes of `ino`.
    pub async fn getattr(&self, ino: u64) -> FsResult<Attr> {
        if let Some(a) = self.getattr_cached(ino) {
            return Ok(a);
        }
        if self.in_past(ino, None) {
            return self.getattr_past(ino).await;
        }
        let (kind, key, cached, detached) = {
            let t = self.table()?;
            let n = t
                .get(ino)
                .ok_or_else(|| FsError::NotFound(format!("inode {ino}")))?;
            (n.kind, t.path(ino), n.attrs.clone(), n.detached)
        };
        if detached {
            // Detached without cached attributes: its old name belongs to someone else now.
            return Err(FsError::NotFound(format!("inode {ino} (removed)")));
        }
        // Resolve the name and cache what it holds only while no rename moves it.
        let _ns = self.namespace.read().await;
        let still_named = self.table()?.get(ino).is_some_and(|n| !n.detached);
        if !still_named {
            return match self.table()?.get(ino).and_then(|n| n.attrs.clone()) {
                Some((a, _)) => Ok(a.to_attr(ino)),
                None => Err(FsError::NotFound(format!("inode {ino} (removed)"))),
            };
        }
        let key = key.ok_or_else(|| FsError::NotFound(format!("inode {ino}")))?;
        let attrs = self.fetch_attrs(kind, &key, cached.map(|c| c.0)).await?;
        self.cache_attrs(ino, &attrs);
        Ok(attrs.to_attr(ino))
    }

    async fn fetch_attrs(&self, kind: Kind, key: &str, cached: Option<Attrs>) -> FsResult<Attrs> {
        if kind != Kind::Dir {
            let info = self.head_existing(key).await?;
            let a = Attrs::from_object(&info, false, &self.cfg);
            return Ok(self.with_times(key, a, true).await);
        }
        if let Some(m) = self.head_marker(key).await? {
            let a = Attrs::from_object(&m, true, &self.cfg);
            return Ok(self.with_times(key, a, true).await);
        }
        if !self.has_keys_below(key).await? {
            return Err(FsError::NotFound(super::marker_of(key)));
        }
        let a = cached
            .filter(|c| c.kind == Kind::Dir)
            .unwrap_or_else(|| self.implicit_dir_attrs());
        Ok(self.with_times(key, a, false).await)
    }

    /// setattr of a change that drops set-id privileges (`kill`): a chown of anything but a
    /// directory, or a truncate by a process without CAP_FSETID. With
    /// FUSE_HANDLE_KILLPRIV_V2 the kernel leaves that to the filesystem (it marks the request
    /// FATTR_KILL_SUIDGID, which fuser does not pass on; the adapter derives `kill`). The
    /// bits go as [`crate::attr::killed_setid`] says, in the same change, unless the request
    /// sets the mode itself.
    pub async fn setattr_killing_setid(
        &self,
        ino: u64,
        mut sa: SetAttr,
        kill: bool,
    ) -> FsResult<Attr> {
        if kill && sa.mode.is_none() {
            let a = self.getattr(ino).await?;
            let perm = u32::from(a.perm);
            let killed = crate::attr::killed_setid(perm);
            if a.kind != Kind::Dir && killed != perm {
                sa.mode = Some(killed);
            }
        }
        self.setattr(ino, sa).await
    }

    /// Changes attributes (chmod, chown, utimens, truncate).
    pub async fn setattr(&self, ino: u64, sa: SetAttr) -> FsResult<Attr> {
        self.check_change(ino, None)?;
        if ino == ROOT {
            if sa.size.is_some() {
                return Err(FsError::IsDir("/".into()));
            }
            let mut r = lock(&self.root_attrs, "root")?;
            apply_attrs(&mut r, &sa);
            return Ok(r.to_attr(ROOT));
        }
        let (kind, key) = self.key_of(ino)?;
        if let Some(mut g) = self.current_writer(ino).await? {
            if let Some(size) = sa.size {
                // A size change while the file is open for writing is a write: it is part of
                // the version the next close makes.
                g.truncate(&self.wctx, size).await?;
            }
            let explicit = sa.mode.is_some() || sa.uid.is_some() || sa.gid.is_some();
            if explicit || sa.mtime.is_some() || sa.atime.is_some() {
                let mtime = apply_attrs(&mut g.attrs, &sa);
                g.touch_meta(mtime);
                self.publish_writer_meta(ino, &mut g, edit_attrs(&self.cfg, &sa))
                    .await?;
            }
            let attrs = g.current_attrs();
            drop(g);
            self.cache_attrs(ino, &attrs);
            return Ok(attrs.to_attr(ino));
        }
        let attrs = match kind {
            Kind::Dir => {
                if sa.size.is_some() {
                    return Err(FsError::IsDir(key));
                }
                let info = self
                    .edit_marker(&key, |cur, meta| {
                        let mut a = cur.clone();
                        apply_attrs(&mut a, &sa);
                        a.store_into(meta);
                        Ok(())
                    })
                    .await?;
                Attrs::from_object(&info, true, &self.cfg)
            }
            k if sa.size.is_some() && k != Kind::File => {
                return Err(FsError::Invalid(format!("truncate of a {k:?}")))
            }
            _ if sa.size.is_some() => self.truncate_closed(ino, &key, &sa).await?,
            _ => {
                let to_writer = |w: &mut Writer| {
                    let mtime = apply_attrs(&mut w.attrs, &sa);
                    w.touch_meta(mtime);
                };
                let info = self
                    .change_closed_meta(ino, &key, edit_attrs(&self.cfg, &sa), to_writer)
                    .await?;
                Attrs::from_object(&info, false, &self.cfg)
            }
        };
        self.cache_attrs(ino, &attrs);
        Ok(attrs.to_attr(ino))
    }

    /// Acknowledges a metadata change (chmod, chown, utimens, xattr) made to an open writer: it
    /// is in the store when the call returns. A writer with no written bytes pending commits
    /// now (a metadata-only version); one with bytes pending leaves them for its close and
    /// publishes the change over its base version (`edit` changes the base's metadata). A
    /// file that is not in the store yet gets the change with its first version.
    async fn publish_writer_meta<F>(&self, ino: u64, g: &mut Writer, edit: F) -> FsResult<()>
    where
        F: FnOnce(&mut Metadata, &ObjectInfo) -> FsResult<()>,
    {
        let Some(base) = g.base.clone() else {
            return Ok(());
        };
        if g.unlinked {
            return Ok(());
        }
        if !g.is_data_dirty() {
            self.commit_writer(ino, g, false).await?;
            return Ok(());
        }
        let mut meta = base.metadata.clone();
        edit(&mut meta, &base)?;
        let info = copy_version(self.store.as_ref(), &base, &g.key, meta, false).await?;
        self.note_version(ino, &info);
        Ok(())
    }

    /// Truncate of a file nobody has open for writing: a short-lived writer.
    async fn truncate_closed(&self, ino: u64, key: &str, sa: &SetAttr) -> FsResult<Attrs> {
        let base = self.head_existing(key).await?;
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

    /// A metadata change (`edit`) of the closed file `ino` at `key`: rewritten over its
    /// current version, then settled with a writer that opened meanwhile (`to_writer`); made
    /// again when a writer committed over it before it could be told. Returns the version
    /// that holds the change.
    async fn change_closed_meta<E, A>(
        &self,
        ino: u64,
        key: &str,
        edit: E,
        to_writer: A,
    ) -> FsResult<ObjectInfo>
    where
        E: Fn(&mut Metadata, &ObjectInfo) -> FsResult<()>,
        A: Fn(&mut Writer),
    {
        loop {
            let info = self
                .rewrite_meta(key, &edit)
                .await?
                .ok_or_else(|| FsError::NotFound(key.to_string()))?;
            if self
                .settle_meta_change(ino, &info, &to_writer, &edit)
                .await?
            {
                return Ok(info);
            }
        }
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
        E: FnOnce(&mut Metadata, &ObjectInfo) -> FsResult<()>,
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

    // ----- extended attributes -----

    /// Metadata of `ino` for xattrs: its current version (a directory's marker), or `None`
    /// for the root and implicit directories.
    async fn xattr_source(&self, ino: u64) -> FsResult<Option<ObjectInfo>> {
        if self.in_past(ino, None) {
            return self.xattr_source_past(ino).await;
        }
        if ino == ROOT {
            return Ok(None);
        }
        match self.key_of(ino)? {
            (Kind::Dir, key) => self.head_marker(&key).await,
            (_, key) => self.head_existing(&key).await.map(Some),
        }
    }

    /// Whether `name` is an attribute objfs can hold (the `user.` namespace). Others
    /// (`security.selinux`, `system.posix_acl_access`, asked by `ls -l`) are not supported
    /// (ENOTSUP), so the adapter answers them at once.
    pub fn xattr_supported(name: &OsStr) -> bool {
        name.to_str().is_some_and(xattr::supported)
    }

    /// getxattr: the value of `name`.
    pub async fn getxattr(&self, ino: u64, name: &OsStr) -> FsResult<Vec<u8>> {
        let name = name
            .to_str()
            .ok_or_else(|| xattr::unsupported(&name.to_string_lossy()))?;
        if !xattr::supported(name) {
            return Err(xattr::unsupported(name));
        }
        if let Some(w) = self.writer_of(ino)? {
            return xattr::get(&w.lock().await.meta, name);
        }
        match self.xattr_source(ino).await? {
            Some(info) => xattr::get(&info.metadata, name),
            None => Err(FsError::NoAttr(name.to_string())),
        }
    }

    /// listxattr: the names, NUL-terminated.
    pub async fn listxattr(&self, ino: u64) -> FsResult<Vec<u8>> {
        if let Some(w) = self.writer_of(ino)? {
            return Ok(xattr::list(&w.lock().await.meta));
        }
        Ok(match self.xattr_source(ino).await? {
            Some(info) => xattr::list(&info.metadata),
            None => Vec::new(),
        })
    }

    /// setxattr.
    pub async fn setxattr(&self, ino: u64, name: &OsStr, value: &[u8], flags: i32) -> FsResult<()> {
        self.check_change(ino, None)?;
        let name = name
            .to_str()
            .ok_or_else(|| FsError::NotSupported(format!("xattr name {name:?}")))?;
        xattr::check_settable(name)?;
        self.change_meta(ino, |m| xattr::set(m, name, value, flags))
            .await
    }

    /// removexattr.
    pub async fn removexattr(&self, ino: u64, name: &OsStr) -> FsResult<()> {
        self.check_change(ino, None)?;
        let name = name
            .to_str()
            .ok_or_else(|| xattr::unsupported(&name.to_string_lossy()))?;
        self.change_meta(ino, |m| xattr::remove(m, name)).await
    }

    /// An xattr change `f` of `ino`, wherever its metadata lives now.
    async fn change_meta<F>(&self, ino: u64, f: F) -> FsResult<()>
    where
        F: Fn(&mut Metadata) -> FsResult<()>,
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
        match self.key_of(ino)? {
            (Kind::Dir, key) => {
                self.edit_marker(&key, |_, meta| f(meta)).await?;
            }
            (_, key) => {
                let to_writer = |w: &mut Writer| {
                    if f(&mut w.meta).is_ok() {
                        w.touch_meta(None);
                    }
                };
                self.change_closed_meta(ino, &key, |meta, _| f(meta), to_writer)
                    .await?;
            }
        }
        Ok(())
    }
}

/// The edit of a version's metadata that applies `sa` to the attributes it holds.
fn edit_attrs<'a>(
    cfg: &'a FsConfig,
    sa: &'a SetAttr,
) -> impl Fn(&mut Metadata, &ObjectInfo) -> FsResult<()> + 'a {
    move |meta, base| {
        let mut a = Attrs::from_object(base, false, cfg);
        apply_attrs(&mut a, sa);
        a.store_into(meta);
        Ok(())
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
    if let Some(t) = sa.atime {
        a.atime = t.resolve();
    }
    let t = sa.mtime.map(|t| t.resolve());
    if let Some(t) = t {
        a.mtime = t;
    }
    t
}
