//! `objfs mount` (and `mount.objfs`): open or create the store, mount it, serve until
//! unmounted or signalled, then finish uploads, unmount and close the store.
//!
//! Order matters: everything that can be checked without threads (paths, options, FUSE being
//! there) is checked first, in the process the user started, so mistakes are reported
//! directly. Then the process forks (unless `--foreground`); only the child opens the store
//! (sled starts threads) and mounts.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use nix::sys::signal::{SigSet, Signal};
use objfs_fs::FsConfig;
use objfs_store::local::{wait_for_last_reference, DaemonConfig, LocalConfig, LocalStore};
use objfs_store::{ObjectStore, StoreError};
use tracing::{info, warn};

use crate::cli::MountArgs;
use crate::daemon::{self, Notifier};
use crate::location::{self, StoreLocation};
use crate::options::{parse_mem_size, parse_seconds, MountSettings, MIN_PART_SIZE};
use crate::{helper, logging, platform};

/// A mount to perform, whichever command line it came from.
#[derive(Debug, Clone)]
pub struct MountRequest {
    pub store: PathBuf,
    pub mountpoint: PathBuf,
    pub settings: MountSettings,
    /// Print nothing on success (mount(8) helper without -v).
    pub quiet: bool,
}

impl MountRequest {
    /// From `objfs mount ...`: `-o` lists first, then the explicit flags (which win).
    pub fn from_args(a: &MountArgs) -> Result<MountRequest> {
        let mut s = MountSettings::default();
        for list in &a.options {
            s.apply_option_list(list)?;
        }
        if a.foreground {
            s.foreground = true;
        }
        if a.read_only {
            s.fs.read_only = true;
        }
        if a.allow_other {
            s.fs.allow_other = true;
        }
        if let Some(v) = &a.part_size {
            s.fs.part_size = Some(parse_mem_size(v, "--part-size", MIN_PART_SIZE)?);
        }
        if let Some(v) = &a.max_memory {
            s.fs.max_memory = Some(parse_mem_size(v, "--max-memory", 1)?);
        }
        if let Some(v) = &a.cache_size {
            s.fs.cache_size = Some(parse_mem_size(v, "--cache-size", 0)?);
        }
        if let Some(v) = &a.attr_ttl {
            s.fs.attr_ttl = Some(parse_seconds(v).context("bad --attr-ttl")?);
        }
        if let Some(p) = &a.log_file {
            s.log_file = Some(p.clone());
        }
        Ok(MountRequest {
            store: a.store.clone(),
            mountpoint: a.mountpoint.clone(),
            settings: s,
            quiet: false,
        })
    }

    /// From `mount.objfs STORE DIR [-sfnv] [-o ...]`.
    pub fn from_helper(h: &helper::HelperArgs) -> Result<MountRequest> {
        let mut s = MountSettings {
            sloppy: h.sloppy,
            ..Default::default()
        };
        for list in &h.options {
            s.apply_option_list(list)?;
        }
        if s.sloppy {
            s.fs.extra_options.retain(|o| {
                let keep = helper::is_fuse_option(o);
                if !keep {
                    warn!("ignoring unknown option {o:?} (sloppy mode)");
                }
                keep
            });
        }
        Ok(MountRequest {
            store: h.store.clone(),
            mountpoint: h.mountpoint.clone(),
            settings: s,
            quiet: !h.verbose,
        })
    }
}

/// The source name shown in the mount table for a store.
pub fn fs_name_for(store: &Path) -> String {
    format!("objfs:{}", store.display())
}

/// The store path named by an objfs mount table source, if it is one.
pub fn store_of_source(source: &str) -> Option<PathBuf> {
    source.strip_prefix("objfs:").map(PathBuf::from)
}

/// Runs a mount request to the end (for the daemon: the parent exits inside).
pub fn run(req: MountRequest) -> Result<()> {
    platform::check_fuse()?;
    let store = StoreLocation::parse(&req.store)?
        .supported_path()?
        .to_path_buf();
    if store.exists() && !store.is_dir() {
        bail!("{} exists and is not a directory", store.display());
    }
    let (mountpoint, create_mp) = check_mountpoint(&req.mountpoint)?;
    let mut cfg = req.settings.fs.to_fs_config(&fs_name_for(&store));
    if cfg.fs_name.is_empty() {
        cfg.fs_name = "objfs".into();
    }
    let log_file = match &req.settings.log_file {
        Some(p) => Some(platform::absolute(p)?),
        None => None,
    };

    let mut notifier = if req.settings.foreground {
        logging::init(None);
        Notifier::foreground()
    } else {
        let n = daemon::daemonize(log_file.as_deref(), req.quiet)?;
        logging::init(log_file.as_deref());
        n
    };
    // Block the termination signals before any thread starts, so every thread inherits the
    // mask and only our signal thread receives them (through sigwait).
    let signals = termination_signals();
    signals
        .thread_block()
        .context("cannot block termination signals")?;

    match serve(
        &store,
        (&mountpoint, create_mp),
        cfg,
        &mut notifier,
        req.settings.foreground,
        req.quiet,
    ) {
        Ok(()) => Ok(()),
        Err(e) => {
            notifier.error(&format!("{e:#}"));
            Err(e)
        }
    }
}

/// Checks the mount point; returns its absolute path and whether it must be created (that is
/// done by the mount process once the store is open, so a failed mount leaves nothing behind).
fn check_mountpoint(mp: &Path) -> Result<(PathBuf, bool)> {
    let abs = platform::absolute(mp)?;
    if let Some(entry) = platform::find_mount(&abs)? {
        bail!(
            "{} is already a mount point ({} from {}); unmount it first",
            abs.display(),
            entry.fstype,
            entry.source
        );
    }
    match std::fs::metadata(&abs) {
        Ok(m) if m.is_dir() => Ok((abs, false)),
        Ok(_) => bail!("mount point {} is not a directory", abs.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((abs, true)),
        Err(e) => Err(e).with_context(|| format!("cannot use mount point {}", abs.display())),
    }
}

/// Creates the mount point if needed; returns its canonical path.
fn create_mountpoint(abs: &Path, create: bool) -> Result<PathBuf> {
    if create {
        std::fs::create_dir_all(abs)
            .with_context(|| format!("cannot create mount point {}", abs.display()))?;
    }
    abs.canonicalize()
        .with_context(|| format!("cannot resolve mount point {}", abs.display()))
}

fn termination_signals() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGHUP);
    set
}

/// Explains a store error the way a user needs it.
pub fn explain_open_error(path: &Path, e: StoreError) -> anyhow::Error {
    match e {
        StoreError::Locked { pid, .. } => anyhow::anyhow!(
            "store {} is in use by pid {pid} (is it mounted already? `objfs umount` it first)",
            path.display()
        ),
        StoreError::NotAStore { reason, .. } => {
            anyhow::anyhow!("{} is not an objfs store ({reason})", path.display())
        }
        StoreError::UnsupportedFormat {
            found, supported, ..
        } => anyhow::anyhow!(
            "store {} has format {found}, this objfs reads format {supported}: use a newer objfs",
            path.display()
        ),
        other => anyhow::Error::new(other).context(format!("cannot open store {}", path.display())),
    }
}

/// Opens the store, creating it when the path is missing or an empty directory.
fn open_store(path: &Path, notifier: &mut Notifier) -> Result<LocalStore> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let location = StoreLocation::Local(path.to_path_buf());
    let (store, created) =
        location::open_or_init(&location, LocalConfig::default()).map_err(|e| match e {
            StoreError::NotAStore { .. } if path.is_dir() => anyhow::anyhow!(
                "refusing to use {}: it is not empty and is not an objfs store; give a new or \
                 empty directory (or an existing store)",
                path.display()
            ),
            e => explain_open_error(path, e),
        })?;
    if created {
        notifier.info(&format!("created a new store at {}", path.display()));
    }
    // Placement, scrub and gc run inside the mount process (docs/DURABILITY.md): the
    // embedded store's own daemons.
    let Some(mut store) = store.into_local() else {
        bail!(
            "{}: only local stores can be mounted by this build",
            path.display()
        );
    };
    store
        .start_daemons(DaemonConfig::default())
        .map_err(|e| anyhow::anyhow!("cannot start the store's daemons: {e}"))?;
    Ok(store)
}

/// Opens, mounts, waits, and tears down in order.
fn serve(
    store_path: &Path,
    (mountpoint, create_mp): (&Path, bool),
    cfg: FsConfig,
    notifier: &mut Notifier,
    foreground: bool,
    quiet: bool,
) -> Result<()> {
    let store = Arc::new(open_store(store_path, notifier)?);
    let mounted = create_mountpoint(mountpoint, create_mp).and_then(|mp| {
        let dyn_store: Arc<dyn ObjectStore> = store.clone();
        objfs_fs::mount(dyn_store, &mp, cfg)
            .map(|h| (h, mp))
            .map_err(anyhow::Error::new)
            .with_context(|| format!("cannot mount {}", mountpoint.display()))
    });
    let (handle, mountpoint) = match mounted {
        Ok(x) => x,
        Err(e) => {
            if create_mp {
                let _ = std::fs::remove_dir(mountpoint);
            }
            close_store(store, store_path);
            return Err(e);
        }
    };
    let mountpoint = mountpoint.as_path();
    info!(store = %store_path.display(), mountpoint = %mountpoint.display(), "mounted");
    if foreground && !quiet {
        eprintln!(
            "objfs: mounted {} at {} (pid {}); Ctrl-C or `objfs umount {}` to unmount",
            store_path.display(),
            mountpoint.display(),
            std::process::id(),
            mountpoint.display()
        );
    }
    notifier.ready();

    let (tx, rx) = mpsc::channel::<Signal>();
    std::thread::Builder::new()
        .name("objfs-signals".into())
        .spawn(move || {
            let set = termination_signals();
            loop {
                match set.wait() {
                    Ok(sig) => {
                        if tx.send(sig).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        warn!("sigwait failed: {e}");
                        return;
                    }
                }
            }
        })
        .context("cannot start the signal thread")?;

    // Serve until a signal comes or the session ends from outside (`objfs umount`,
    // `fusermount3 -u`), whichever is first.
    let result = loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(sig) => {
                info!("{sig}: finishing uploads, then unmounting");
                let flushed = handle
                    .flush_all()
                    .map_err(|e| anyhow::Error::new(e).context("finishing uploads failed"));
                if let Err(e) = &flushed {
                    warn!("{e:#}");
                }
                // Unmounts (lazily when busy: the session then ends when the last user lets
                // go) and waits for the session to end.
                let unmounted = handle
                    .unmount()
                    .map_err(anyhow::Error::new)
                    .with_context(|| format!("cannot unmount {}", mountpoint.display()));
                break flushed.and(unmounted);
            }
            Err(RecvTimeoutError::Timeout) if !handle.is_finished() => continue,
            Err(_) => {
                info!("unmounted from outside");
                break handle.join().map_err(anyhow::Error::new);
            }
        }
    };
    close_store(store, store_path);
    result
}

/// Closes the store once the filesystem has let go of it (waits up to 30 s for background
/// tasks to drop their references), so its lock is released and everything is synced.
fn close_store(store: Arc<LocalStore>, path: &Path) {
    match wait_for_last_reference(store, Duration::from_secs(30)) {
        Ok(s) => {
            if let Err(e) = s.close() {
                warn!("closing store {} failed: {e}", path.display());
            }
        }
        Err(_) => warn!(
            "store {} is still referenced after unmount; dropping it without close",
            path.display()
        ),
    }
}
