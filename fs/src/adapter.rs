//! The fuser adapter: translates kernel requests into [`ObjFs`] calls and results into
//! replies, and nothing else.
//!
//! fuser calls are synchronous. What the core can answer from memory (cached attributes,
//! names known absent, files open for writing, opendir, the release of a read-only handle,
//! forget) is answered on the FUSE thread at once. Every other request runs as a future that
//! is polled once on the FUSE thread that read it and moves to the mount's tokio runtime only
//! if it must wait ([`Adapter::run_here`]): a local-store commit, a write-back journal append
//! or an answer the mount keeps costs no hop to a runtime worker and back. The session reads
//! the kernel's requests on several threads (`mount.rs`), so a request answered on one of
//! them never holds up the next. fsync and fsyncdir always go to the runtime: they wait for
//! a group commit or an upload. Errors become errnos through [`FsError::errno`] (the crate's
//! one mapping) in [`errno`], which also logs the unexpected ones. The core's plain types
//! ([`Attr`], [`Kind`], [`SetTime`]) become fuser's records here and nowhere else.

use std::ffi::OsStr;
use std::future::Future;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::{Duration, SystemTime};

use fuser::{
    CopyFileRangeFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, InitFlags, IoctlFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyIoctl,
    ReplyLseek, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use tokio::runtime::Handle;

use crate::attr::Kind;
use crate::core::{Attr, Caller, Entry, ObjFs, SetAttr, SetTime};
use crate::error::{FsError, FsResult};

/// Largest read and write request asked of the kernel.
pub const MAX_IO: u32 = 1024 * 1024;

/// The fuser `Filesystem` over the core.
pub struct Adapter {
    fs: Arc<ObjFs>,
    rt: Handle,
}

impl Adapter {
    pub fn new(fs: Arc<ObjFs>, rt: Handle) -> Adapter {
        Adapter { fs, rt }
    }

    fn spawn<F>(&self, f: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.rt.spawn(f);
    }

    /// Runs `f` on the FUSE thread as far as it goes without waiting, and hands it to the
    /// runtime only if it must wait. What completes at once (a local-store commit, a journal
    /// append, an answer kept in memory) is answered with no hop to a runtime worker and back
    /// (on this VM each hop is a wake-up of another thread, tens of microseconds); anything
    /// that waits (a tokio lock held by another request, a store call on the blocking pool, a
    /// request to a bucket, which the first poll has started) continues on the runtime as if
    /// spawned at once.
    fn run_here<F>(&self, f: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let mut f = Box::pin(f);
        // Inside the runtime's context, so that what the future starts (a blocking-pool
        // task, a timer) belongs to the runtime.
        let ready = {
            let _rt = self.rt.enter();
            let mut cx = Context::from_waker(Waker::noop());
            f.as_mut().poll(&mut cx).is_ready()
        };
        if !ready {
            // Polled again on the runtime, which registers the task's own waker: a wake sent
            // to the no-op waker above meanwhile is not lost, since that poll checks again.
            self.spawn(f);
        }
    }
}

/// The kernel of a live mount as the core's [`KernelNotifier`]: fuser's notifications.
pub struct FuseNotifier(pub fuser::Notifier);

impl crate::core::KernelNotifier for FuseNotifier {
    fn inval_entry(&self, parent: u64, name: &str) {
        if let Err(e) = self.0.inval_entry(INodeNo(parent), OsStr::new(name)) {
            tracing::debug!(parent, name, error = %e, "inval_entry");
        }
    }

    fn inval_inode(&self, ino: u64) {
        if let Err(e) = self.0.inval_inode(INodeNo(ino), 0, 0) {
            tracing::debug!(ino, error = %e, "inval_inode");
        }
    }
}

/// A core error as the errno replied to the kernel (and the log line for unexpected ones).
pub fn errno(op: &str, e: &FsError) -> Errno {
    if e.is_expected() {
        tracing::debug!(op, error = %e, "request failed");
    } else {
        tracing::warn!(op, error = %e, "request failed");
    }
    Errno::from_i32(e.errno())
}

/// fuser's file type of a [`Kind`].
pub fn file_type(kind: Kind) -> FileType {
    match kind {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
        Kind::Symlink => FileType::Symlink,
        Kind::Fifo => FileType::NamedPipe,
        Kind::CharDev => FileType::CharDevice,
        Kind::BlockDev => FileType::BlockDevice,
        Kind::Socket => FileType::Socket,
    }
}

/// fuser's attribute record of an [`Attr`].
pub fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.blocks,
        atime: a.atime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: a.ctime,
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: a.blksize,
        flags: 0,
    }
}

/// The attributes of a negative entry: inode 0 tells the kernel "no such name" (cached for
/// the entry's TTL).
fn negative_attr() -> FileAttr {
    file_attr(&Attr {
        ino: 0,
        kind: Kind::File,
        size: 0,
        blocks: 0,
        atime: SystemTime::UNIX_EPOCH,
        mtime: SystemTime::UNIX_EPOCH,
        ctime: SystemTime::UNIX_EPOCH,
        perm: 0,
        nlink: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 0,
    })
}

/// How the kernel treats an open file: a read-only one needs no FLUSH at its close (nothing
/// to commit), so the kernel sends none (`FOPEN_NOFLUSH`).
fn open_flags(flags: i32) -> FopenFlags {
    if flags & libc::O_ACCMODE == libc::O_RDONLY {
        FopenFlags::FOPEN_NOFLUSH
    } else {
        FopenFlags::empty()
    }
}

fn set_time(t: TimeOrNow) -> SetTime {
    match t {
        TimeOrNow::SpecificTime(t) => SetTime::At(t),
        TimeOrNow::Now => SetTime::Now,
    }
}

fn caller(req: &Request) -> Caller {
    Caller {
        uid: req.uid(),
        gid: req.gid(),
    }
}

fn owned(name: &OsStr) -> std::ffi::OsString {
    name.to_os_string()
}

impl Filesystem for Adapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        if let Err(nearest) = config.set_max_write(MAX_IO) {
            let _ = config.set_max_write(nearest);
        }
        if let Err(nearest) = config.set_max_readahead(MAX_IO) {
            let _ = config.set_max_readahead(nearest);
        }
        let _ = config.set_max_background(64);
        let _ = config.set_congestion_threshold(48);
        // FUSE_HANDLE_KILLPRIV_V2: this filesystem drops the set-id bits on a write, truncate
        // or chown that must drop them (`write`, `setattr`), so the kernel may cache per inode
        // that there is nothing to drop (SB_NOSEC). Without it, every write(2) first asks the
        // daemon for `security.capability`: one more round trip per write.
        for flag in [
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_MAX_PAGES,
            InitFlags::FUSE_HANDLE_KILLPRIV_V2,
        ] {
            let _ = config.add_capabilities(flag);
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        // Answered from memory when the core can, without a trip through the runtime.
        if let Some(r) = self.fs.lookup_cached(parent.0, name) {
            return reply_lookup(&self.fs, reply, parent.0, name, r);
        }
        let (fs, name) = (self.fs.clone(), owned(name));
        self.run_here(async move {
            let r = fs.lookup(parent.0, &name).await;
            reply_lookup(&fs, reply, parent.0, &name, r);
        });
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.fs.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        if let Some(a) = self.fs.getattr_cached(ino.0) {
            return reply.attr(&self.fs.config().attr_ttl, &file_attr(&a));
        }
        let fs = self.fs.clone();
        self.run_here(async move {
            let r = fs.getattr(ino.0).await;
            reply_attr(reply, "getattr", fs.config().attr_ttl, r);
        });
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let fs = self.fs.clone();
        // What the kernel marks FATTR_KILL_SUIDGID (fuser does not pass that flag on): a chown
        // always, a truncate by a caller without CAP_FSETID, taken here as any caller but root.
        let kill = uid.is_some() || gid.is_some() || (size.is_some() && req.uid() != 0);
        let sa = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: atime.map(set_time),
            mtime: mtime.map(set_time),
            fh: fh.map(|f| f.0),
        };
        self.run_here(async move {
            let r = fs.setattr_killing_setid(ino.0, sa, kill).await;
            reply_attr(reply, "setattr", fs.config().attr_ttl, r);
        });
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let fs = self.fs.clone();
        self.run_here(async move {
            match fs.readlink(ino.0).await {
                Ok(t) => reply.data(&t),
                Err(e) => reply.error(errno("readlink", &e)),
            }
        });
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let (fs, name, who) = (self.fs.clone(), owned(name), caller(req));
        self.run_here(async move {
            let made = fs.mknod(parent.0, &name, mode, rdev, who).await;
            reply_entry(reply, "mknod", made);
        });
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let (fs, name, who) = (self.fs.clone(), owned(name), caller(req));
        self.run_here(async move {
            reply_entry(reply, "mkdir", fs.mkdir(parent.0, &name, mode, who).await);
        });
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let (fs, name) = (self.fs.clone(), owned(name));
        self.run_here(async move {
            reply_empty(reply, "unlink", fs.unlink(parent.0, &name).await);
        });
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let (fs, name) = (self.fs.clone(), owned(name));
        self.run_here(async move {
            reply_empty(reply, "rmdir", fs.rmdir(parent.0, &name).await);
        });
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let (fs, name, who) = (self.fs.clone(), owned(link_name), caller(req));
        let target = target.to_path_buf();
        self.run_here(async move {
            reply_entry(
                reply,
                "symlink",
                fs.symlink(parent.0, &name, &target, who).await,
            );
        });
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let (fs, name, newname) = (self.fs.clone(), owned(name), owned(newname));
        self.run_here(async move {
            reply_empty(
                reply,
                "rename",
                fs.rename(parent.0, &name, newparent.0, &newname, flags.bits())
                    .await,
            );
        });
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let (fs, newname) = (self.fs.clone(), owned(newname));
        self.run_here(async move {
            reply_entry(reply, "link", fs.link(ino.0, newparent.0, &newname).await);
        });
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let (fs, tid) = (self.fs.clone(), req.pid());
        self.run_here(async move {
            match fs.open_file(ino.0, flags.0).await {
                Ok(o) => {
                    fs.note_thread(o.fh, tid);
                    let mut fopen = open_flags(flags.0);
                    if o.keep_cache {
                        fopen |= FopenFlags::FOPEN_KEEP_CACHE;
                    }
                    reply.opened(FileHandle(o.fh), fopen)
                }
                Err(e) => reply.error(errno("open", &e)),
            }
        });
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let fs = self.fs.clone();
        self.run_here(async move {
            match fs.read(ino.0, fh.0, offset, size).await {
                Ok(d) => reply.data(&d),
                Err(e) => reply.error(errno("read", &e)),
            }
        });
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        // A write by a caller without CAP_FSETID drops the file's set-id bits
        // (FUSE_HANDLE_KILLPRIV_V2), before the reply. A write that needs no wait is copied
        // into its buffer here, with no hop (the bits dropped with it). Either way the handle
        // now knows this thread as a writer (`closers`).
        let kill = write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID);
        let now = {
            let _rt = self.rt.enter();
            self.fs
                .write_now(ino.0, fh.0, offset, data, req.pid(), kill)
        };
        match now {
            Some(Ok(n)) => return reply.written(n),
            Some(Err(e)) => return reply.error(errno("write", &e)),
            None => {}
        }
        let (fs, data) = (self.fs.clone(), data.to_vec());
        self.run_here(async move {
            let mut r = fs.write(ino.0, fh.0, offset, &data).await;
            if kill && r.is_ok() {
                r = fs.kill_setid(fh.0).await.and(r);
            }
            match r {
                Ok(n) => reply.written(n),
                Err(e) => reply.error(errno("write", &e)),
            }
        });
    }

    fn flush(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let (fs, tid) = (self.fs.clone(), req.pid());
        self.run_here(async move {
            reply_empty(reply, "flush", fs.close(ino.0, fh.0, tid).await);
        });
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        if let Some(r) = self.fs.release_read(fh.0) {
            return reply_empty(reply, "release", r);
        }
        let fs = self.fs.clone();
        self.run_here(async move {
            reply_empty(reply, "release", fs.release(ino.0, fh.0).await);
        });
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let fs = self.fs.clone();
        self.spawn(async move {
            reply_empty(reply, "fsync", fs.fsync(ino.0, fh.0, datasync).await);
        });
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.fs.opendir_now(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(errno("opendir", &e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let fs = self.fs.clone();
        self.run_here(async move {
            let res = fs
                .readdir(ino.0, fh.0, offset, |child, off, kind, name| {
                    reply.add(INodeNo(child), off, file_type(kind), name)
                })
                .await;
            match res {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno("readdir", &e)),
            }
        });
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let fs = self.fs.clone();
        self.run_here(async move {
            let res = fs
                .readdirplus(ino.0, fh.0, offset, |off, name, e| {
                    reply.add(
                        INodeNo(e.ino),
                        off,
                        name,
                        &e.ttl,
                        &file_attr(&e.attr),
                        Generation(e.generation),
                    )
                })
                .await;
            match res {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno("readdirplus", &e)),
            }
        });
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.fs.releasedir(fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let fs = self.fs.clone();
        self.spawn(async move {
            reply_empty(reply, "fsyncdir", fs.fsyncdir().await);
        });
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let fs = self.fs.clone();
        self.run_here(async move {
            match fs.statfs().await {
                Ok(s) => reply.statfs(
                    s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.frsize,
                ),
                Err(e) => reply.error(errno("statfs", &e)),
            }
        });
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        if !self.fs.config().xattr {
            return reply.error(Errno::ENOSYS);
        }
        let (fs, name, value) = (self.fs.clone(), owned(name), value.to_vec());
        self.run_here(async move {
            reply_empty(
                reply,
                "setxattr",
                fs.setxattr(ino.0, &name, &value, flags).await,
            );
        });
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        if !self.fs.config().xattr {
            return reply.error(Errno::ENOSYS);
        }
        if !ObjFs::xattr_supported(name) {
            // No store work to do. ENOTSUP, not ENODATA: GNU `ls -l` asks every file for
            // `security.selinux` and `system.posix_acl_access` until a file of the
            // filesystem answers "not supported", then stops asking (a round trip each).
            return reply.error(Errno::EOPNOTSUPP);
        }
        let (fs, name) = (self.fs.clone(), owned(name));
        self.run_here(async move {
            match fs.getxattr(ino.0, &name).await {
                Ok(v) => reply_xattr(reply, &v, size),
                Err(e) => reply.error(errno("getxattr", &e)),
            }
        });
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        if !self.fs.config().xattr {
            return reply.error(Errno::ENOSYS);
        }
        let fs = self.fs.clone();
        self.run_here(async move {
            match fs.listxattr(ino.0).await {
                Ok(v) => reply_xattr(reply, &v, size),
                Err(e) => reply.error(errno("listxattr", &e)),
            }
        });
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        if !self.fs.config().xattr {
            return reply.error(Errno::ENOSYS);
        }
        let (fs, name) = (self.fs.clone(), owned(name));
        self.run_here(async move {
            reply_empty(reply, "removexattr", fs.removexattr(ino.0, &name).await);
        });
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let (fs, name, who, tid) = (self.fs.clone(), owned(name), caller(req), req.pid());
        self.run_here(async move {
            match fs.create(parent.0, &name, mode, flags, who).await {
                Ok((e, fh)) => {
                    fs.note_thread(fh, tid);
                    reply.created(
                        &e.ttl,
                        &file_attr(&e.attr),
                        Generation(e.generation),
                        FileHandle(fh),
                        FopenFlags::empty(),
                    )
                }
                Err(e) => reply.error(errno("create", &e)),
            }
        });
    }

    // Requests objfs does not serve, answered quietly: the kernel (or libc) then does without.
    // fuser's defaults log a warning each time, and Python asks ioctl(TCGETS) of every file
    // it opens.

    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        reply.error(Errno::ENOTTY);
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _length: u64,
        _mode: i32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EOPNOTSUPP);
    }

    fn lseek(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: i64,
        _whence: i32,
        reply: ReplyLseek,
    ) {
        // ENOSYS: the kernel answers SEEK_DATA/SEEK_HOLE itself from then on.
        reply.error(Errno::ENOSYS);
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        _ino_in: INodeNo,
        _fh_in: FileHandle,
        _offset_in: u64,
        _ino_out: INodeNo,
        _fh_out: FileHandle,
        _offset_out: u64,
        _len: u64,
        _flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        // ENOSYS: the kernel falls back to reads and writes, and stops asking.
        reply.error(Errno::ENOSYS);
    }
}

/// xattr replies: size 0 asks for the length; a too small buffer is ERANGE.
fn reply_xattr(reply: ReplyXattr, v: &[u8], size: u32) {
    if size == 0 {
        reply.size(v.len() as u32);
    } else if v.len() > size as usize {
        reply.error(errno("xattr", &FsError::Range(v.len())));
    } else {
        reply.data(v);
    }
}

/// Replies to a request that returns nothing.
fn reply_empty(reply: ReplyEmpty, op: &str, r: FsResult<()>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(errno(op, &e)),
    }
}

/// Replies to a request that returns a directory entry.
fn reply_entry(reply: ReplyEntry, op: &str, r: FsResult<Entry>) {
    match r {
        Ok(e) => reply.entry(&e.ttl, &file_attr(&e.attr), Generation(e.generation)),
        Err(e) => reply.error(errno(op, &e)),
    }
}

/// Replies to a lookup: a name the core knows absent is a negative entry (inode 0) that the
/// kernel keeps for as long as the core would answer the same (see `core/names.rs`).
fn reply_lookup(fs: &ObjFs, reply: ReplyEntry, parent: u64, name: &OsStr, r: FsResult<Entry>) {
    match r {
        Err(e) if e.is_not_found() => {
            let ttl = name.to_str().and_then(|n| fs.known_absent(parent, n));
            match ttl {
                Some(ttl) => reply.entry(&ttl, &negative_attr(), Generation(0)),
                None => reply.error(errno("lookup", &e)),
            }
        }
        r => reply_entry(reply, "lookup", r),
    }
}

/// Replies to a request that returns attributes.
fn reply_attr(reply: ReplyAttr, op: &str, ttl: Duration, r: FsResult<Attr>) {
    match r {
        Ok(a) => reply.attr(&ttl, &file_attr(&a)),
        Err(e) => reply.error(errno(op, &e)),
    }
}
