//! Mount entry point: builds the core and a tokio runtime owned by the mount, mounts through
//! fuser (pure-Rust mount via `fusermount3`), runs the session (its reader threads) from a
//! thread of its own, and hands back a [`MountHandle`] that completes pending uploads and
//! unmounts.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use fuser::{Config, MountOption, Session, SessionACL, SessionUnmounter};
use objfs_store::ObjectStore;
use tokio::runtime::Runtime;

use crate::adapter::Adapter;
use crate::config::{FsConfig, IoUring};
use crate::core::{ObjFs, TIMES_FLUSH_INTERVAL};
use crate::error::{FsError, FsResult};

/// How the session thread ended.
#[derive(Default)]
struct Done {
    finished: bool,
    error: Option<String>,
}

/// A live mount. Dropping it unmounts (after completing pending uploads).
pub struct MountHandle {
    fs: Arc<ObjFs>,
    rt: Option<Runtime>,
    mountpoint: PathBuf,
    unmounter: Mutex<Option<SessionUnmounter>>,
    done: Arc<(Mutex<Done>, Condvar)>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

fn mount_options(cfg: &FsConfig) -> Config {
    let mut opts = vec![
        MountOption::FSName(cfg.fs_name.clone()),
        MountOption::Subtype("objfs".into()),
        MountOption::DefaultPermissions,
        MountOption::NoDev,
        MountOption::NoSuid,
    ];
    opts.push(if cfg.read_only {
        MountOption::RO
    } else {
        MountOption::RW
    });
    let mut acl = if cfg.allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    for o in &cfg.extra_options {
        for part in o.split(',').filter(|p| !p.is_empty()) {
            let opt = match part {
                // fusermount3 handles auto_unmount, and fuser wants allow_root (or
                // allow_other) with it; root and the owner is what a plain mount allows anyway.
                "auto_unmount" => {
                    if acl == SessionACL::Owner {
                        acl = SessionACL::RootAndOwner;
                    }
                    MountOption::AutoUnmount
                }
                "allow_root" => {
                    if acl == SessionACL::Owner {
                        acl = SessionACL::RootAndOwner;
                    }
                    continue;
                }
                "ro" => MountOption::RO,
                "rw" => MountOption::RW,
                "noatime" => MountOption::NoAtime,
                "atime" => MountOption::Atime,
                "exec" => MountOption::Exec,
                "noexec" => MountOption::NoExec,
                "dirsync" => MountOption::DirSync,
                "sync" => MountOption::Sync,
                "async" => MountOption::Async,
                "allow_other" | "default_permissions" | "nodev" | "nosuid" | "dev" | "suid" => {
                    continue
                }
                p if p.starts_with("fsname=") || p.starts_with("subtype=") => continue,
                other => MountOption::CUSTOM(other.to_string()),
            };
            if (opt == MountOption::RO && !cfg.read_only)
                || (opt == MountOption::RW && cfg.read_only)
            {
                continue;
            }
            if !opts.contains(&opt) {
                opts.push(opt);
            }
        }
    }
    let mut c = Config::default();
    c.mount_options = opts;
    c.acl = acl;
    c.n_threads = Some(session_threads());
    // Each thread reads from its own clone of the device (FUSE_DEV_IOC_CLONE): the kernel
    // then keeps a request's reply path on the thread that read it.
    c.clone_fd = cfg!(target_os = "linux");
    // The first reader polls the device for a while after each request instead of going to
    // sleep at once (the patch in fs/vendor/fuser/PATCHES.md): on a machine whose idle cores
    // halt, waking a sleeping reader costs more than a small request's whole work.
    c.spin = (cfg!(target_os = "linux") && !cfg.busy_poll.is_zero()).then_some(cfg.busy_poll);
    // FUSE over io_uring (the same patch): per-CPU queues instead of the device's reads.
    // Not with auto_unmount (`uring_allowed`).
    c.io_uring = (cfg!(target_os = "linux")
        && cfg.io_uring != IoUring::Off
        && uring_allowed(&c.mount_options))
    .then_some(cfg.io_uring_depth);
    c
}

/// Whether FUSE over io_uring may be used with these mount options: not with `auto_unmount`.
/// When the mount process dies, fusermount3 (which `auto_unmount` leaves watching) checks at
/// once that the mount answers ENOTCONN before it unmounts it; the kernel tears a dead
/// process's io_uring queues down in the background, so the connection still looks alive at
/// that moment and fusermount3 leaves the dead mount behind (seen in
/// `cli_errors::auto_unmount_removes_the_mount_when_the_process_dies`).
fn uring_allowed(options: &[MountOption]) -> bool {
    !options.contains(&MountOption::AutoUnmount)
}

/// How many threads read the kernel's requests. One is not enough even on one core: the
/// adapter answers most requests on the thread that read them (the local store), and the
/// kernel's asynchronous requests (RELEASE after a close, FORGET) would otherwise queue the
/// next synchronous one behind them. Measured on 2 cores (docs/BENCHMARKS.md, session 18):
/// two or three threads against one, every small-file operation as fast or faster. fuser
/// runs more than one only on Linux.
fn session_threads() -> usize {
    if !cfg!(target_os = "linux") {
        return 1;
    }
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(2, 4)
}

/// Mounts `store` at `mountpoint`; returns when the mount is live (the kernel answers
/// getattr on the root).
pub fn mount(
    store: Arc<dyn ObjectStore>,
    mountpoint: &Path,
    cfg: FsConfig,
) -> FsResult<MountHandle> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("objfs-worker")
        .build()
        .map_err(|e| FsError::Internal(format!("cannot start the runtime: {e}")))?;
    let options = mount_options(&cfg);
    let (io_uring, depth) = (cfg.io_uring, cfg.io_uring_depth);
    tracing::info!(store = %store.describe(), mountpoint = %mountpoint.display(), "mounting");
    let fs = ObjFs::new(store, cfg);
    rt.block_on(fs.clear_stage());
    spawn_times_flusher(rt.handle(), &fs);
    let adapter = Adapter::new(fs.clone(), rt.handle().clone());
    let mut session = Session::new(adapter, mountpoint, &options)?;
    if session.io_uring_active() {
        tracing::info!(
            entries_per_queue = depth,
            "requests go over FUSE over io_uring, one queue per CPU"
        );
    } else if io_uring == IoUring::On && !uring_allowed(&options.mount_options) {
        tracing::warn!(
            "-o io_uring: not used with auto_unmount (fusermount3 could not tell that a dead \
             mount's connection is gone); requests go through /dev/fuse"
        );
    } else if io_uring == IoUring::On {
        tracing::warn!(
            "-o io_uring: the kernel does not offer FUSE over io_uring (it needs Linux 6.14 or \
             later and /sys/module/fuse/parameters/enable_uring set to Y); requests go \
             through /dev/fuse"
        );
    }
    fs.set_notifier(Arc::new(crate::adapter::FuseNotifier(session.notifier())));
    let unmounter = session.unmount_callable();
    let done = Arc::new((Mutex::new(Done::default()), Condvar::new()));
    let thread = {
        let done = done.clone();
        let fs = fs.clone();
        let handle = rt.handle().clone();
        std::thread::Builder::new()
            .name("objfs-fuse".into())
            .spawn(move || {
                let res = match session.run() {
                    // The connection was aborted (`/sys/fs/fuse/connections/N/abort`, or the
                    // kernel ending it under a lazy unmount): the session is over as after an
                    // unmount (fuser only takes ENODEV for that). Requests in flight failed
                    // for their callers, so none was acknowledged; what is open is completed
                    // below like at any unmount.
                    Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => {
                        tracing::warn!(
                            "the kernel aborted the FUSE connection; the session is over"
                        );
                        Ok(())
                    }
                    r => r,
                };
                // Whatever is still open when the session ends is completed now.
                let flushed = block_on(&handle, async move { fs.flush_all().await });
                let (lock, cv) = &*done;
                if let Ok(mut d) = lock.lock() {
                    d.finished = true;
                    d.error = match (res, flushed) {
                        (Err(e), _) => Some(format!("session: {e}")),
                        (Ok(()), Err(e)) => Some(format!("flush at unmount: {e}")),
                        _ => None,
                    };
                }
                cv.notify_all();
            })
            .map_err(FsError::Mount)?
    };
    let h = MountHandle {
        fs,
        rt: Some(rt),
        mountpoint: mountpoint.to_path_buf(),
        unmounter: Mutex::new(Some(unmounter)),
        done,
        thread: Mutex::new(Some(thread)),
    };
    // The mount is live once the kernel answers a getattr of the root through us.
    let root = std::fs::metadata(mountpoint)?;
    raise_readahead(&root);
    tracing::info!(mountpoint = %mountpoint.display(), "mounted");
    Ok(h)
}

/// The kernel's readahead of a mount, in KiB, asked for when the mount may set it.
pub const READAHEAD_KB: u32 = 8192;

/// Raises the kernel's readahead of the mount (its backing device's `read_ahead_kb`) to
/// [`READAHEAD_KB`]. FUSE starts every mount at 128 KiB and lets the filesystem only lower it
/// at INIT, so a sequential read otherwise reaches the mount as 128 KiB requests, one or two
/// at a time; with 8 MiB the kernel sends 1 MiB requests (`max_write`/`max_pages`), several in
/// parallel. Only root may write the setting: otherwise it stays 128 KiB (logged, not an
/// error).
fn raise_readahead(root: &std::fs::Metadata) {
    use std::os::unix::fs::MetadataExt;
    let dev = root.dev();
    let path = format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        nix::sys::stat::major(dev),
        nix::sys::stat::minor(dev)
    );
    match std::fs::write(&path, READAHEAD_KB.to_string()) {
        Ok(()) => tracing::debug!(path, kb = READAHEAD_KB, "readahead raised"),
        Err(e) => {
            tracing::info!(path, error = %e, "the mount's readahead stays the kernel's 128 KiB")
        }
    }
}

/// Writes the times that wait in memory about once per [`TIMES_FLUSH_INTERVAL`], for as long
/// as the core lives (the runtime's end stops it).
fn spawn_times_flusher(rt: &tokio::runtime::Handle, fs: &Arc<ObjFs>) {
    let weak = Arc::downgrade(fs);
    rt.spawn(async move {
        let mut tick = tokio::time::interval(TIMES_FLUSH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(fs) = weak.upgrade() else {
                return;
            };
            if fs.dirty_times() > 0 {
                fs.flush_times().await;
            }
        }
    });
}

/// Runs `f` on the runtime and waits for it from a plain thread (also safe when the caller
/// is itself inside some other runtime, where `block_on` would panic).
fn block_on<F, T>(handle: &tokio::runtime::Handle, f: F) -> FsResult<T>
where
    F: std::future::Future<Output = FsResult<T>> + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    handle.spawn(async move {
        let _ = tx.send(f.await);
    });
    rx.recv()
        .map_err(|_| FsError::Internal("runtime stopped".into()))?
}

impl MountHandle {
    /// The core behind the mount.
    pub fn fs(&self) -> &Arc<ObjFs> {
        &self.fs
    }

    /// Where the filesystem is mounted.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Completes the pending uploads of every open file (e.g. on SIGTERM).
    pub fn flush_all(&self) -> FsResult<()> {
        let rt = self
            .rt
            .as_ref()
            .ok_or_else(|| FsError::Internal("runtime gone".into()))?;
        let fs = self.fs.clone();
        block_on(rt.handle(), async move { fs.flush_all().await })
    }

    /// Whether the session has ended (unmounted).
    pub fn is_finished(&self) -> bool {
        self.done.0.lock().map(|d| d.finished).unwrap_or(true)
    }

    fn wait_timeout(&self, timeout: Option<Duration>) -> FsResult<bool> {
        let (lock, cv) = &*self.done;
        let mut d = lock
            .lock()
            .map_err(|_| FsError::Internal("mount state poisoned".into()))?;
        while !d.finished {
            d = match timeout {
                None => cv
                    .wait(d)
                    .map_err(|_| FsError::Internal("mount state poisoned".into()))?,
                Some(t) => {
                    let (g, res) = cv
                        .wait_timeout(d, t)
                        .map_err(|_| FsError::Internal("mount state poisoned".into()))?;
                    if res.timed_out() && !g.finished {
                        return Ok(false);
                    }
                    g
                }
            };
        }
        match &d.error {
            Some(e) => Err(FsError::Internal(e.clone())),
            None => Ok(true),
        }
    }

    /// Blocks until the filesystem is unmounted from outside (`fusermount3 -u`) and the
    /// pending uploads are completed.
    pub fn wait(&self) -> FsResult<()> {
        self.wait_timeout(None).map(|_| ())
    }

    /// Like [`MountHandle::wait`], consuming the handle.
    pub fn join(mut self) -> FsResult<()> {
        let r = self.wait();
        self.cleanup();
        r
    }

    /// Completes every pending upload, then unmounts and waits for the session to end.
    pub fn unmount(mut self) -> FsResult<()> {
        let r = self.unmount_inner();
        self.cleanup();
        r
    }

    fn unmount_inner(&mut self) -> FsResult<()> {
        let flushed = if self.is_finished() {
            Ok(())
        } else {
            self.flush_all()
        };
        let unmounter = self.unmounter.lock().ok().and_then(|mut u| u.take());
        if let Some(mut u) = unmounter {
            if let Err(e) = u.unmount() {
                // Busy (a file or directory is still in use): detach now; the session ends
                // when the last user goes away.
                tracing::warn!(mountpoint = %self.mountpoint.display(), error = %e, "unmount failed; detaching lazily");
                lazy_unmount(&self.mountpoint)?;
            }
        }
        // A lazy unmount ends the session only when the last open file is closed.
        match self.wait_timeout(Some(Duration::from_secs(30)))? {
            true => {}
            false => tracing::warn!(
                mountpoint = %self.mountpoint.display(),
                "unmounted lazily: the session ends when the last open file is closed"
            ),
        }
        flushed
    }

    fn cleanup(&mut self) {
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        let rt = self.rt.take();
        if self.is_finished() {
            if let Some(t) = thread {
                let _ = t.join();
            }
            if let Some(rt) = rt {
                rt.shutdown_background();
            }
            return;
        }
        // Still serving (lazily detached, files open): keep the runtime until the session
        // ends, then let it go.
        let done = self.done.clone();
        let reaper = std::thread::Builder::new()
            .name("objfs-reaper".into())
            .spawn(move || {
                if let Some(t) = thread {
                    let _ = t.join();
                }
                let (lock, cv) = &*done;
                if let Ok(mut d) = lock.lock() {
                    while !d.finished {
                        d = match cv.wait(d) {
                            Ok(d) => d,
                            Err(_) => break,
                        };
                    }
                }
                if let Some(rt) = rt {
                    rt.shutdown_background();
                }
            });
        if let Err(e) = reaper {
            tracing::warn!(error = %e, "cannot start the reaper thread; the runtime is leaked");
        }
    }
}

/// Detaches the mount even while it is busy: on Linux umount2(MNT_DETACH) as root, otherwise
/// `fusermount3 -u -z`; on macOS a forced unmount (macFUSE has no lazy unmount).
fn lazy_unmount(mountpoint: &Path) -> FsResult<()> {
    #[cfg(target_os = "linux")]
    {
        use nix::mount::{umount2, MntFlags};
        if umount2(mountpoint, MntFlags::MNT_DETACH).is_ok() {
            return Ok(());
        }
        let status = std::process::Command::new("fusermount3")
            .arg("-u")
            .arg("-z")
            .arg("--")
            .arg(mountpoint)
            .status()?;
        if status.success() {
            return Ok(());
        }
        Err(FsError::Internal(format!(
            "fusermount3 -u -z {} failed: {status}",
            mountpoint.display()
        )))
    }
    #[cfg(not(target_os = "linux"))]
    {
        use nix::mount::{unmount, MntFlags};
        unmount(mountpoint, MntFlags::MNT_FORCE).map_err(|e| {
            FsError::Internal(format!(
                "forced unmount of {} failed: {e}",
                mountpoint.display()
            ))
        })
    }
}

impl Drop for MountHandle {
    fn drop(&mut self) {
        if self.rt.is_some() {
            if let Err(e) = self.unmount_inner() {
                tracing::warn!(error = %e, "unmount on drop");
            }
            self.cleanup();
        }
    }
}
