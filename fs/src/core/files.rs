//! Open files: open and create, read, write, and the commits that make versions (flush at
//! close, fsync, the last release; `flush_all` at unmount).
//!
//! A file open for writing has one writer shared by all its write handles (`write/`); a read
//! handle reads the version it pinned at open, or a newer one this mount wrote since (ordered
//! by the inode's `local_seq`, never by comparing version ids).

use std::ffi::OsStr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use objfs_store::ObjectInfo;

use super::namespace::{is_regular, owned_attrs};
use super::{check_name, lock, Caller, Entry, FileHandle, Found, ObjFs, Opened, SetAttr};
use crate::attr::{Attrs, Kind};
use crate::error::{FsError, FsResult};
use crate::read::{ReadAhead, Source};
use crate::write::{Writer, WriterCell};

/// What a read handle reads now.
enum ReadTarget {
    /// The file is open for writing: its writer (dirty bytes over the base).
    Writer(Arc<WriterCell>),
    /// A version.
    Pinned(ObjectInfo),
    /// The current version of this key, to be looked up.
    Unpinned(String),
}

impl ObjFs {
    fn handle(&self, fh: u64) -> FsResult<Arc<FileHandle>> {
        lock(&self.handles, "handles")?
            .get(&fh)
            .cloned()
            .ok_or(FsError::BadHandle(fh))
    }

    /// Opens a file; returns the handle.
    pub async fn open(&self, ino: u64, flags: i32) -> FsResult<u64> {
        Ok(self.open_file(ino, flags).await?.fh)
    }

    /// Opens a file; returns the handle and whether the kernel may keep its cached pages.
    pub async fn open_file(&self, ino: u64, flags: i32) -> FsResult<Opened> {
        if self.in_past(ino, None) {
            return self.open_past(ino, flags).await;
        }
        let write = flags & libc::O_ACCMODE != libc::O_RDONLY;
        if write {
            self.check_rw()?;
        }
        let _ns = self.namespace.read().await;
        let (kind, key) = self.key_of(ino)?;
        if kind == Kind::Dir {
            return Err(FsError::IsDir(key));
        }
        if kind.is_special() {
            // The kernel serves FIFOs, devices and sockets itself; an open never gets here.
            return Err(FsError::NotSupported(format!("open of special file {key}")));
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
            Some(self.head_for_open(&key).await?)
        };
        // Decide what the handle reads (and what a new writer starts from) under the table
        // lock, so that a version this mount writes meanwhile is either seen here or sees this
        // handle's writer.
        let mut stale = false;
        let (pinned, keep_cache) = {
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
                let a = Attrs::from_object(p, false, &self.cfg);
                // The version opened is not the one the kernel was told of (changed elsewhere
                // since the lookup's answer): the kernel forgets its size and pages, so that
                // reads past the old size are not cut short.
                stale = n.attrs.as_ref().is_some_and(|(k, _)| {
                    k.kind == Kind::File && (k.size != a.size || k.mtime != a.mtime)
                });
                n.attrs = Some((a, Instant::now()));
            }
            // The kernel keeps this file's pages only for a read-only open of the version
            // they came from, with no writer on the file: every other open drops them.
            let identity = pinned
                .as_ref()
                .filter(|_| !write && n.writer.is_none() && !n.detached)
                .map(|p| (p.version.clone(), p.etag.clone()));
            let keep_cache = n.keep_pages(identity) && !stale;
            if write {
                self.attach_writer(n, &key, pinned.clone());
            }
            ((pinned, n.local_seq), keep_cache)
        };
        self.table()?.open(ino);
        if stale {
            self.forget_kernel_attrs(ino);
        }
        let fh = self.new_handle(ino, write, if write { (None, pinned.1) } else { pinned })?;
        Ok(Opened { fh, keep_cache })
    }

    /// Counts a write handle on `n`, making its writer over `base` when there is none.
    fn attach_writer(&self, n: &mut crate::inode::Node, key: &str, base: Option<ObjectInfo>) {
        if n.writer.is_none() {
            let attrs = match &base {
                Some(b) => Attrs::from_object(b, false, &self.cfg),
                None => Attrs::default_for(Kind::File, &self.cfg, SystemTime::now()),
            };
            let w = self.new_writer(key, base, attrs);
            let a = w.current_attrs();
            n.writer = Some(self.register_writer(w));
            n.attrs = Some((a, Instant::now()));
        }
        n.write_handles += 1;
    }

    fn new_writer(&self, key: &str, base: Option<ObjectInfo>, attrs: Attrs) -> Writer {
        let id = self.next_writer.fetch_add(1, Ordering::Relaxed);
        Writer::new(id, key.to_string(), base, attrs, &self.wctx)
    }

    fn register_writer(&self, w: Writer) -> Arc<WriterCell> {
        let cell = Arc::new(tokio::sync::Mutex::new(w));
        self.wctx.budget.register(&cell);
        cell
    }

    pub(super) fn new_handle(
        &self,
        ino: u64,
        write: bool,
        pinned: (Option<ObjectInfo>, u64),
    ) -> FsResult<u64> {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        lock(&self.handles, "handles")?.insert(
            fh,
            Arc::new(FileHandle {
                ino,
                write,
                pinned: Mutex::new(pinned),
                ra: Mutex::new(ReadAhead::default()),
                read_seen: std::sync::atomic::AtomicBool::new(false),
                closers: Default::default(),
            }),
        );
        Ok(fh)
    }

    /// Creates and opens a file.
    ///
    /// A new name is made in this mount only (a *pending* file: inode, attributes and a writer
    /// with no base): lookups, `stat` and listings of this mount show it at once, and its first
    /// version — empty when nothing was written — is made when it is closed (or fsynced), so
    /// a small file costs one store commit. Other clients see it from then on, as with every
    /// object store. An existing name is opened (and truncated with `O_TRUNC`); `O_EXCL`
    /// fails with EEXIST for a name in the store or pending in this mount.
    pub async fn create(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        flags: i32,
        caller: Caller,
    ) -> FsResult<(Entry, u64)> {
        let name_s = check_name(name)?;
        self.check_change(parent, Some(name_s))?;
        let key = self.child_key(parent, name_s)?;
        if !is_regular(mode) {
            return Err(FsError::NotSupported("special files".into()));
        }
        let excl = flags & libc::O_EXCL != 0;
        if self.open_for_writing(parent, name_s)? {
            // Pending, or being written: it exists in this mount.
            if excl {
                return Err(FsError::Exists(key));
            }
            return self.create_existing(parent, name, &key, flags).await;
        }
        let existing = if self.known_absent(parent, name_s).is_some() {
            None
        } else {
            self.probe(&key).await?
        };
        match existing {
            Some(_) if excl => Err(FsError::Exists(key)),
            Some(Found::Dir { .. }) => Err(FsError::IsDir(key)),
            Some(Found::Object(_)) | Some(Found::Pending) => {
                self.create_existing(parent, name, &key, flags).await
            }
            None => {
                let attrs = owned_attrs(Kind::File, &self.cfg, mode, caller);
                match self.create_pending(parent, name_s, &key, attrs)? {
                    Some(made) => {
                        self.dir_changed(parent).await;
                        Ok(made)
                    }
                    // Another create of this mount made it meanwhile.
                    None if excl => Err(FsError::Exists(key)),
                    None => self.create_existing(parent, name, &key, flags).await,
                }
            }
        }
    }

    /// Whether `name` in `parent` is a file this mount has open for writing (pending or not).
    fn open_for_writing(&self, parent: u64, name: &str) -> FsResult<bool> {
        let t = self.table()?;
        Ok(t.child(parent, name)
            .and_then(|ino| t.get(ino))
            .is_some_and(|n| n.writer.is_some()))
    }

    /// Makes the pending file `name` in `parent` and its first write handle; `None` when a
    /// file of that name is open for writing in this mount already.
    fn create_pending(
        &self,
        parent: u64,
        name: &str,
        key: &str,
        attrs: Attrs,
    ) -> FsResult<Option<(Entry, u64)>> {
        let mut w = self.new_writer(key, None, attrs);
        // Dirty from the start: a close with nothing written still makes the empty object.
        w.touch_meta(None);
        let a = w.current_attrs();
        let ino = {
            let mut t = self.table()?;
            if let Some(old) = t.child(parent, name) {
                if t.get(old).is_some_and(|n| n.writer.is_some()) {
                    return Ok(None);
                }
                // What this mount knew under the name is gone from the store.
                t.detach(parent, name);
            }
            let ino = t.lookup(parent, name, Kind::File);
            let n = t
                .get_mut(ino)
                .ok_or_else(|| FsError::Internal(format!("inode {ino} vanished")))?;
            n.writer = Some(self.register_writer(w));
            n.write_handles = 1;
            n.attrs = Some((a.clone(), Instant::now()));
            t.set_pending(ino);
            t.open(ino);
            ino
        };
        self.name_made(parent, name);
        let fh = self.new_handle(ino, true, (None, 0))?;
        Ok(Some((self.entry(ino, &a), fh)))
    }

    /// create(2) of a name that exists: opens it (truncated with `O_TRUNC`).
    async fn create_existing(
        &self,
        parent: u64,
        name: &OsStr,
        key: &str,
        flags: i32,
    ) -> FsResult<(Entry, u64)> {
        let entry = self.lookup(parent, name).await?;
        if entry.attr.kind == Kind::Dir {
            self.forget(entry.ino, 1);
            return Err(FsError::IsDir(key.to_string()));
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
        if !h.read_seen.swap(true, Ordering::Relaxed) {
            self.file_read(h.ino).await?;
        }
        let info = match self.read_target(&h, ino)? {
            ReadTarget::Writer(w) => {
                return w
                    .lock()
                    .await
                    .read(&self.wctx, offset, u64::from(size))
                    .await;
            }
            ReadTarget::Pinned(i) => i,
            ReadTarget::Unpinned(key) => {
                let i = self.store.head(&key, None).await?;
                lock(&h.pinned, "handle")?.0 = Some(i.clone());
                i
            }
        };
        let src = Source::of(&info);
        let end = offset.saturating_add(u64::from(size)).min(info.size);
        if offset >= end {
            return Ok(Bytes::new());
        }
        self.read_ahead(&h, &src, offset..end)?;
        self.wctx
            .cache
            .read(self.store.as_ref(), &src, offset..end)
            .await
    }

    /// [`ObjFs::read`] answered without waiting when the handle has read before and every
    /// block asked for is in the block cache (readahead put it there); `None` when the read
    /// must go through `read`. Called on the FUSE thread, inside the mount's runtime (the
    /// readahead it starts runs there).
    pub fn read_now(&self, ino: u64, fh: u64, offset: u64, size: u32) -> Option<FsResult<Bytes>> {
        let h = self.handle(fh).ok()?;
        if !h.read_seen.load(Ordering::Relaxed) {
            return None;
        }
        let ReadTarget::Pinned(info) = self.read_target(&h, ino).ok()? else {
            return None;
        };
        let src = Source::of(&info);
        let end = offset.saturating_add(u64::from(size)).min(info.size);
        if offset >= end {
            return Some(Ok(Bytes::new()));
        }
        let data = self.wctx.cache.read_cached(&src, offset..end)?;
        tracing::trace!(ino, fh, offset, size, "read (cached)");
        if let Err(e) = self.read_ahead(&h, &src, offset..end) {
            return Some(Err(e));
        }
        Some(Ok(data))
    }

    /// What a read of handle `h` reads: the file's writer, or the version the handle pinned
    /// (a version this mount wrote of the inode since the handle chose one replaces it), or,
    /// when it has none yet, the current version of the key.
    fn read_target(&self, h: &FileHandle, ino: u64) -> FsResult<ReadTarget> {
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
            return Ok(ReadTarget::Writer(w));
        }
        let mut p = lock(&h.pinned, "handle")?;
        if let Some(lv) = local {
            if p.0.is_none() || p.1 < seq {
                *p = (Some(lv), seq);
            }
        }
        match &p.0 {
            Some(i) => Ok(ReadTarget::Pinned(i.clone())),
            None => {
                Ok(ReadTarget::Unpinned(key.ok_or_else(|| {
                    FsError::NotFound(format!("inode {ino}"))
                })?))
            }
        }
    }

    /// Records a read of `range` on the handle's readahead and starts fetching what follows.
    fn read_ahead(
        &self,
        h: &FileHandle,
        src: &Source,
        range: std::ops::Range<u64>,
    ) -> FsResult<()> {
        let ahead =
            lock(&h.ra, "readahead")?.on_read(&range, src.size, self.wctx.cache.max_window());
        if let Some(r) = ahead {
            self.wctx.cache.prefetch(self.store.clone(), src, r);
        }
        Ok(())
    }

    /// Writes to an open file; returns the bytes written.
    pub async fn write(&self, ino: u64, fh: u64, offset: u64, data: &[u8]) -> FsResult<u32> {
        tracing::trace!(ino, fh, offset, len = data.len(), "write");
        let h = self.handle(fh)?;
        if !h.write {
            return Err(FsError::BadHandle(fh));
        }
        let w = self
            .writer_of(h.ino)?
            .ok_or_else(|| FsError::Internal(format!("no writer for inode {ino}")))?;
        let mut g = w.lock().await;
        g.write(&self.wctx, offset, data).await?;
        let attrs = g.current_attrs();
        drop(g);
        self.cache_attrs(h.ino, &attrs);
        u32::try_from(data.len()).map_err(|_| FsError::Invalid("write too large".into()))
    }

    /// [`ObjFs::write`] answered without waiting, when the writer is free and the write needs
    /// no wait ([`crate::write::Writer::try_write_now`]); `None` when it must go through
    /// `write`. Called on the FUSE thread, inside the mount's runtime. The handle remembers
    /// `tid` as one of its writers either way ([`ObjFs::note_thread`], without a second
    /// lookup of the handle). `kill_setid`: the writer has no CAP_FSETID (the kernel's
    /// FUSE_WRITE_KILL_SUIDGID), so the file's set-id bits go first, as [`ObjFs::kill_setid`]
    /// does (when the writer is busy, `None`: the caller runs both).
    pub fn write_now(
        &self,
        ino: u64,
        fh: u64,
        offset: u64,
        data: &[u8],
        tid: u32,
        kill_setid: bool,
    ) -> Option<FsResult<u32>> {
        let h = self.handle(fh).ok().filter(|h| h.write)?;
        h.closers.note(tid);
        let w = self.writer_of(h.ino).ok()??;
        let mut g = w.try_lock().ok()?;
        let killed = kill_setid && g.kill_setid();
        let result = g.try_write_now(&self.wctx, offset, data);
        if killed || result.is_some() {
            self.cache_attrs(h.ino, &g.current_attrs());
        }
        if let Err(e) = result? {
            return Some(Err(e));
        }
        tracing::trace!(ino, fh, offset, len = data.len(), "write (at once)");
        drop(g);
        Some(u32::try_from(data.len()).map_err(|_| FsError::Invalid("write too large".into())))
    }

    /// After a write by a process without CAP_FSETID (the kernel's FUSE_WRITE_KILL_SUIDGID,
    /// with FUSE_HANDLE_KILLPRIV_V2): the file's set-id bits go, as on a local filesystem; the
    /// version its close makes carries the new mode.
    pub async fn kill_setid(&self, fh: u64) -> FsResult<()> {
        let h = self.handle(fh)?;
        let Some(w) = self.writer_of(h.ino)? else {
            return Ok(());
        };
        let mut g = w.lock().await;
        if g.kill_setid() {
            let attrs = g.current_attrs();
            drop(g);
            self.cache_attrs(h.ino, &attrs);
        }
        Ok(())
    }

    async fn commit_handle(&self, h: &FileHandle, durable: bool) -> FsResult<()> {
        let Some(w) = self.writer_of(h.ino)? else {
            return Ok(());
        };
        let mut g = w.lock().await;
        let res = self.commit_writer(h.ino, &mut g, durable).await;
        if !matches!(res, Ok(Some(_))) {
            // A failed commit dropped what was written: the file is its base again.
            self.cache_attrs(h.ino, &g.current_attrs());
        }
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

    /// Remembers that thread `tid` (a FUSE request's pid) opened write handle `fh` or wrote
    /// through it (see [`crate::closers`]).
    pub fn note_thread(&self, fh: u64, tid: u32) {
        if let Ok(h) = self.handle(fh) {
            if h.write {
                h.closers.note(tid);
            }
        }
    }

    /// close(2) of a descriptor by thread `tid`: [`ObjFs::flush`] when the thread opened the
    /// handle or wrote through it, or belongs to a process that did; nothing when it is
    /// another process that only inherited the descriptor (a child closing it at exec). The
    /// writer's own close, an fsync or the last close (release) makes the version then.
    pub async fn close(&self, ino: u64, fh: u64, tid: u32) -> FsResult<()> {
        let h = self.handle(fh)?;
        if !h.write {
            return Ok(());
        }
        if !h.closers.is_writers(tid) {
            tracing::debug!(
                ino,
                fh,
                tid,
                "close by a process that did not write: no version"
            );
            return Ok(());
        }
        self.commit_handle(&h, false).await
    }

    /// fsync(2) of a directory: every change this mount has made to the namespace (renames,
    /// unlinks, mkdirs, closed files) becomes durable: the store's group sync. A file created
    /// and still open has no name in the store yet (it gets one at its close).
    pub async fn fsyncdir(&self) -> FsResult<()> {
        Ok(self.store.sync().await?)
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

    /// Ends a read-only handle at once (it has nothing to commit); `None` for a write handle,
    /// which [`Self::release`] must end. The adapter answers these without a trip through
    /// the runtime.
    pub fn release_read(&self, fh: u64) -> Option<FsResult<()>> {
        let h = {
            let mut hs = lock(&self.handles, "handles").ok()?;
            if hs.get(&fh)?.write {
                return None;
            }
            hs.remove(&fh)?
        };
        Some(self.table().map(|mut t| t.close(h.ino)))
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
                if let Ok(Some(info)) = &r {
                    t.wrote(h.ino, info.clone());
                }
                if t.get(h.ino).is_some_and(|n| n.is_pending()) {
                    if let Some(b) = &g.base {
                        t.wrote(h.ino, b.clone());
                    }
                }
                let mut gone = None;
                if let Some(n) = t.get_mut(h.ino) {
                    n.attrs = Some((attrs, Instant::now()));
                    if n.write_handles == 0 {
                        n.writer = None;
                        if n.is_pending() {
                            // Created here and never made into a version (its commit
                            // failed): there is no such file.
                            gone = Some((n.parent, n.name.clone()));
                        }
                    }
                }
                if let Some((parent, name)) = gone {
                    if t.child(parent, &name) == Some(h.ino) {
                        t.detach(parent, &name);
                    }
                }
                drop(g);
                res = r.map(|_| ());
            }
        }
        self.table()?.close(h.ino);
        res
    }

    /// Completes the pending uploads of every open file, writes the times that wait in memory,
    /// and makes everything durable.
    pub async fn flush_all(&self) -> FsResult<()> {
        let writers = self.table()?.writers();
        let mut first: Option<FsError> = None;
        for (ino, _, w) in writers {
            let mut g = w.lock().await;
            match self.commit_writer(ino, &mut g, false).await {
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(inode = ino, error = %e, "flush of an open file failed");
                    first.get_or_insert(e);
                }
            }
        }
        self.flush_times().await;
        if let Err(e) = self.store.sync().await {
            first.get_or_insert(e.into());
        }
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
