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

use super::namespace::is_regular;
use super::{check_name, lock, Caller, Entry, FileHandle, Found, ObjFs, SetAttr};
use crate::attr::{Attrs, Kind};
use crate::error::{FsError, FsResult};
use crate::read::{ReadAhead, Source};
use crate::write::Writer;

impl ObjFs {
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
            Some(self.head_existing(&key).await?)
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
                read_seen: std::sync::atomic::AtomicBool::new(false),
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
        if !is_regular(mode) {
            return Err(FsError::NotSupported("special files".into()));
        }
        let existing = self.probe(&key).await?;
        let info = match existing {
            Some(_) if flags & libc::O_EXCL != 0 => return Err(FsError::Exists(key)),
            Some(Found::Dir { .. }) => return Err(FsError::IsDir(key)),
            Some(Found::Object(_)) => None,
            None => match self.put_new_file(&key, mode, caller).await {
                Ok(i) => {
                    self.dir_changed(parent).await;
                    Some(i)
                }
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
        if entry.attr.kind == Kind::Dir {
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
        if !h.read_seen.swap(true, Ordering::Relaxed) {
            self.file_read(h.ino).await?;
        }
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
            version: info.version.clone(),
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
            .writer_of(h.ino)?
            .ok_or_else(|| FsError::Internal(format!("no writer for inode {ino}")))?;
        let mut g = w.lock().await;
        g.write(&self.wctx, offset, data).await?;
        let attrs = g.current_attrs();
        drop(g);
        self.cache_attrs(h.ino, &attrs);
        u32::try_from(data.len()).map_err(|_| FsError::Invalid("write too large".into()))
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
