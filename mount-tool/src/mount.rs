//! `objfs mount` (and `mount.objfs`): open (or, when asked, create) the store, register its
//! control socket, mount it, serve until unmounted or signalled, then finish uploads, unmount,
//! unregister and close the store.
//!
//! Order matters: everything that can be checked without threads (the store path, the mount
//! point, options, FUSE being there) is checked first, in the process the user started, so
//! mistakes are reported directly and nothing is created for a mount that cannot work. Then
//! the process forks (unless `--foreground`); only the child opens the store (sled starts
//! threads), registers itself (runtime.rs, server.rs) and mounts.
//!
//! `--at TIME` mounts the store as it was then, read-only. When the store is mounted already,
//! its mount process owns it (sled has one owner), so the command asks that process to serve
//! the second mount point over the control channel and returns; otherwise it mounts as usual,
//! with a read-only view of the moment.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use nix::sys::signal::{SigSet, Signal};
use objfs_fs::FsConfig;
use objfs_store::local::config::MARKER;
use objfs_store::local::{wait_for_last_reference, DaemonConfig, LocalConfig, LocalStore};
use objfs_store::{ObjectStore, StoreError};
use tracing::{info, warn};

use crate::cli::MountArgs;
use crate::daemon::{self, Notifier};
use crate::location::{self, StoreLocation};
use crate::logging::RotatingFile;
use crate::options::{parse_mem_size, parse_seconds, MountSettings, MIN_PART_SIZE};
use crate::runtime::{self, Record};
use crate::server::ControlServer;
use crate::{helper, logging, platform};

/// A mount to perform, whichever command line it came from.
#[derive(Debug, Clone)]
pub struct MountRequest {
    pub store: PathBuf,
    pub mountpoint: PathBuf,
    pub settings: MountSettings,
    /// Print nothing on success (mount(8) helper without -v).
    pub quiet: bool,
    /// Create the store when STORE is missing or an empty directory (`--init`).
    pub init: bool,
    /// Mount the store as it was at this moment, read-only (`--at`).
    pub at: Option<std::time::SystemTime>,
    /// The `-o` lists and flags as given, for a mount process asked to serve `--at`.
    pub option_lists: Vec<String>,
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
        if a.allow_non_empty {
            s.allow_non_empty = true;
        }
        if a.read_only {
            s.fs.read_only = true;
        }
        if a.allow_other {
            s.fs.allow_other = true;
        }
        let bad = |e: anyhow::Error| crate::usage(format!("{e:#}"));
        if let Some(v) = &a.part_size {
            s.fs.part_size = Some(parse_mem_size(v, "--part-size", MIN_PART_SIZE).map_err(bad)?);
        }
        if let Some(v) = &a.max_memory {
            s.fs.max_memory = Some(parse_mem_size(v, "--max-memory", 1).map_err(bad)?);
        }
        if let Some(v) = &a.cache_size {
            s.fs.cache_size = Some(parse_mem_size(v, "--cache-size", 0).map_err(bad)?);
        }
        if let Some(v) = &a.attr_ttl {
            s.fs.attr_ttl = Some(parse_seconds(v).context("bad --attr-ttl").map_err(bad)?);
        }
        if let Some(p) = &a.log_file {
            s.log_file = Some(p.clone());
        }
        if let Some(d) = &a.cache_dir {
            s.cache_dir = Some(d.clone());
        }
        let given = a.s3.settings();
        for (slot, v) in [
            (&mut s.s3.endpoint, given.endpoint),
            (&mut s.s3.region, given.region),
            (&mut s.s3.profile, given.profile),
        ] {
            if v.is_some() {
                *slot = v;
            }
        }
        s.s3.enable_versioning |= a.enable_versioning;
        s.s3.write_through |= a.write_through;
        if let Some(d) = &a.journal_dir {
            s.s3.journal_dir = Some(d.clone());
        }
        if let Some(v) = &a.metadata_ttl {
            let ttl = parse_seconds(v)
                .context("bad --metadata-ttl")
                .map_err(bad)?;
            s.s3.metadata_ttl = Some(ttl);
        }
        if let Some(v) = &a.upload_delay {
            let d = parse_seconds(v)
                .context("bad --upload-delay")
                .map_err(bad)?;
            s.s3.upload_delay = Some(d);
        }
        s.s3.prefetch.apply_args(&a.prefetch)?;
        let at = match &a.at {
            Some(t) => Some(crate::history_commands::moment(t)?),
            None => s.at,
        };
        if at.is_some() && a.init {
            return Err(crate::usage(
                "--at shows the past of an existing store: not with --init",
            ));
        }
        let mut option_lists = a.options.clone();
        if a.allow_other {
            option_lists.push("allow_other".into());
        }
        for (name, v) in [("cache_size", &a.cache_size), ("attr_ttl", &a.attr_ttl)] {
            if let Some(v) = v {
                option_lists.push(format!("{name}={v}"));
            }
        }
        Ok(MountRequest {
            store: a.store.clone(),
            mountpoint: a.mountpoint.clone(),
            settings: s,
            quiet: false,
            init: a.init,
            at,
            option_lists,
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
        let at = s.at;
        Ok(MountRequest {
            store: h.store.clone(),
            mountpoint: h.mountpoint.clone(),
            settings: s,
            quiet: !h.verbose,
            init: false,
            at,
            option_lists: h.options.clone(),
        })
    }
}

/// The source name shown in the mount table for a store.
pub fn fs_name_for(store: &Path) -> String {
    format!("objfs:{}", store.display())
}

/// Runs a mount request to the end (for the daemon: the parent exits inside).
pub fn run(req: MountRequest) -> Result<()> {
    platform::check_fuse()?;
    let loc = StoreLocation::parse(&req.store)?;
    if let StoreLocation::S3 { .. } = loc {
        return crate::s3mount::run(req, loc);
    }
    if req.settings.cache_dir.is_some() {
        return Err(crate::usage(
            "--cache-dir (cache_dir=) is for remote (s3://) stores: a local store's data is on \
             local disks already",
        ));
    }
    let store = loc.supported_path()?.to_path_buf();
    let create = check_store(&store, req.init)?;
    if let Some(m) = runtime::lookup_store(&StoreLocation::Local(store.clone())) {
        if let Some(at) = req.at {
            return mount_at_by(&m, &req, at);
        }
        bail!(
            "store {} is already mounted at {} (pid {}); unmount it first (`objfs umount {}`)",
            store.display(),
            m.record.mountpoint.display(),
            m.record.pid,
            m.record.mountpoint.display()
        );
    }
    let (mountpoint, create_mp) = check_mountpoint(&req.mountpoint, req.settings.allow_non_empty)?;
    let mut cfg = req.settings.fs.to_fs_config(&fs_name_for(&store));
    if cfg.fs_name.is_empty() {
        cfg.fs_name = "objfs".into();
    }
    if let Some(at) = req.at {
        cfg.at = Some(at);
        cfg.read_only = true;
    }
    cfg.store_created = crate::server::store_created(&store);
    let log_file = match &req.settings.log_file {
        Some(p) => Some(platform::absolute(p)?),
        None => None,
    };
    // A given log file is opened now, so that a bad path is reported plainly.
    let log = match &log_file {
        Some(p) => Some(RotatingFile::open(p, logging::MAX_LOG_BYTES)?),
        None => None,
    };

    let foreground = req.settings.foreground;
    let mut notifier = detach(&log, foreground, req.quiet)?;
    // Block the termination signals before any thread starts, so every thread inherits the
    // mask and only our signal thread receives them (through sigwait).
    let signals = termination_signals();
    signals
        .thread_block()
        .context("cannot block termination signals")?;

    let plan = Plan {
        store: &store,
        create,
        mountpoint: &mountpoint,
        create_mp,
        foreground,
        quiet: req.quiet,
        log,
        read_only: cfg.read_only,
        at: cfg.at,
    };
    match serve(plan, cfg, &mut notifier) {
        Ok(()) => Ok(()),
        Err(e) => {
            notifier.error(&format!("{e:#}"));
            Err(e)
        }
    }
}

/// Stays in the foreground (logging to `log` or stderr) or forks into a daemon whose stderr
/// is `log` (only the child returns); the notifier tells the command how the mount went.
pub(crate) fn detach(
    log: &Option<RotatingFile>,
    foreground: bool,
    quiet: bool,
) -> Result<Notifier> {
    if foreground {
        match log {
            Some(f) => logging::init_file(f.clone()),
            None => logging::init_stderr(),
        }
        return Ok(Notifier::foreground());
    }
    let stderr = match log {
        Some(f) => Some(f.try_clone_file()?),
        None => None,
    };
    daemon::daemonize(stderr, quiet)
}

/// `mount --at` of a store that `m` has mounted: its mount process serves the new mount
/// point (the store has one owner).
fn mount_at_by(m: &runtime::Mounted, req: &MountRequest, at: std::time::SystemTime) -> Result<()> {
    let (mountpoint, create_mp) = check_mountpoint(&req.mountpoint, req.settings.allow_non_empty)?;
    let mp = create_mountpoint(&mountpoint, create_mp)?;
    let r = crate::client::call(
        m,
        &crate::ops::Request::MountAt {
            mountpoint: mp.clone(),
            at_ns: crate::history::to_ns(at),
            options: req.option_lists.clone(),
        },
        &mut |_| {},
    );
    match r {
        Ok(v) => {
            if !req.quiet {
                eprintln!(
                    "objfs: mounted {} as of {} at {} (read-only, served by the mount process of {}, pid {})",
                    m.record.store,
                    v["at"].as_str().unwrap_or("?"),
                    mp.display(),
                    m.record.mountpoint.display(),
                    m.record.pid
                );
            }
            Ok(())
        }
        Err(e) => {
            if create_mp {
                let _ = std::fs::remove_dir(&mp);
            }
            Err(e.context(format!("cannot mount {} as of a moment", mp.display())))
        }
    }
}

/// The default store location, `~/.objfs/store`, where `objfs mount` may create a store
/// without `--init` (so the README's first command works on a fresh machine).
fn default_store() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    platform::absolute(&PathBuf::from(home).join(".objfs").join("store")).ok()
}

/// Checks the store path before anything is created; returns whether a new store is to be
/// made there. Says what it found and what to do otherwise.
fn check_store(path: &Path, init: bool) -> Result<bool> {
    let shown = path.display();
    let may_create = init || default_store().is_some_and(|d| d == path);
    let how =
        format!("create one with `objfs init {shown}` or `objfs mount --init {shown} MOUNTPOINT`");
    match std::fs::metadata(path) {
        Ok(m) if !m.is_dir() => {
            bail!("{shown} exists and is not a directory: it cannot be a store")
        }
        Ok(_) if path.join(MARKER).is_file() => Ok(false),
        Ok(_) => {
            let empty = std::fs::read_dir(path)
                .with_context(|| format!("cannot read {shown}"))?
                .next()
                .is_none();
            match (empty, may_create) {
                (true, true) => Ok(true),
                (true, false) => bail!("{shown} is an empty directory, not an objfs store; {how}"),
                (false, _) => bail!(
                    "refusing to use {shown}: it is not empty and is not an objfs store; give a \
                     store, or a new or empty directory with --init"
                ),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if may_create {
                Ok(true)
            } else {
                bail!("no objfs store at {shown}: it does not exist; {how}")
            }
        }
        Err(e) => Err(e).with_context(|| format!("cannot use {shown}")),
    }
}

/// Checks the mount point; returns its absolute path and whether it must be created (that is
/// done by the mount process once the store is open, so a failed mount leaves nothing behind).
/// A dead mount left there by a killed mount process is cleared.
pub(crate) fn check_mountpoint(mp: &Path, allow_non_empty: bool) -> Result<(PathBuf, bool)> {
    let abs = platform::absolute(mp)?;
    let shown = abs.display();
    if let Some(entry) = platform::find_mount(&abs)? {
        match std::fs::metadata(&abs) {
            Err(e) if platform::is_dead_mount_error(&e) && entry.is_fuse() => {
                // The process behind it is gone (kill -9, crash): detach what is left.
                let (prog, args) = platform::unmount_command(&abs, true)?;
                let cmd = format!(
                    "{} {}",
                    prog.display(),
                    args.iter()
                        .map(|a| a.to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                        .join(" ")
                );
                platform::unmount(&abs, true).with_context(|| {
                    format!(
                        "{shown} is a dead mount ({e}) and clearing it failed; run `{cmd}` and mount again"
                    )
                })?;
                eprintln!("objfs: {shown} was a dead mount ({e}); cleared it with `{cmd}`");
            }
            _ => {
                let by = match runtime::lookup_mountpoint(&abs) {
                    Some(m) => format!("objfs mount of {} by pid {}", m.record.store, m.record.pid),
                    None => format!("{} from {}", entry.fstype, entry.source),
                };
                bail!("{shown} is already a mount point ({by}); unmount it first (`objfs umount {shown}`)");
            }
        }
    }
    match std::fs::metadata(&abs) {
        Ok(m) if m.is_dir() => {
            let entries = std::fs::read_dir(&abs)
                .with_context(|| format!("cannot read mount point {shown}"))?
                .count();
            if entries > 0 && !allow_non_empty {
                bail!(
                    "mount point {shown} is not empty ({entries} entries), and mounting would hide \
                     them; give an empty directory, or --allow-non-empty to mount over them"
                );
            }
            Ok((abs, false))
        }
        Ok(_) => bail!("mount point {shown} is not a directory"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((abs, true)),
        Err(e) => Err(e).with_context(|| format!("cannot use mount point {shown}")),
    }
}

/// Creates the mount point if needed; returns its canonical path.
pub(crate) fn create_mountpoint(abs: &Path, create: bool) -> Result<PathBuf> {
    if create {
        std::fs::create_dir_all(abs)
            .with_context(|| format!("cannot create mount point {}", abs.display()))?;
    }
    abs.canonicalize()
        .with_context(|| format!("cannot resolve mount point {}", abs.display()))
}

pub(crate) fn termination_signals() -> SigSet {
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

/// Opens the store (creating it when `create`) and starts its daemons.
fn open_store(path: &Path, create: bool, notifier: &mut Notifier) -> Result<LocalStore> {
    let location = StoreLocation::Local(path.to_path_buf());
    let store = if create {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let (store, created) = location::open_or_init(&location, LocalConfig::default())
            .map_err(|e| explain_open_error(path, e))?;
        if created {
            notifier.info(&format!("created a new store at {}", path.display()));
        }
        store
    } else {
        location::open(&location).map_err(|e| explain_open_error(path, e))?
    };
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

/// What [`serve`] sets up.
struct Plan<'a> {
    store: &'a Path,
    create: bool,
    mountpoint: &'a Path,
    create_mp: bool,
    foreground: bool,
    quiet: bool,
    /// The log file given on the command line (opened already).
    log: Option<RotatingFile>,
    read_only: bool,
    /// The moment of a `mount --at`.
    at: Option<std::time::SystemTime>,
}

/// The daemon's default log: `STORE/objfs.log`, from now on also its stderr.
fn start_default_log(store: &Path) -> Result<PathBuf> {
    let path = logging::default_log_file(store);
    let f = RotatingFile::open(&path, logging::MAX_LOG_BYTES)?;
    daemon::redirect_stderr(&f.try_clone_file()?)?;
    logging::init_file(f);
    Ok(path)
}

/// Opens, registers, mounts, waits, and tears down in order.
fn serve(plan: Plan<'_>, cfg: FsConfig, notifier: &mut Notifier) -> Result<()> {
    let store_path = plan.store;
    let store = open_store(store_path, plan.create, notifier)?;
    let store_path = store_path
        .canonicalize()
        .unwrap_or_else(|_| store_path.to_path_buf());
    // A daemon logs to its --log-file (set up before the fork) or, by default, into the store.
    let log_file = match (&plan.log, plan.foreground) {
        (Some(f), false) => {
            logging::init_file(f.clone());
            plan_log_path(&plan)
        }
        (Some(_), true) => plan_log_path(&plan),
        (None, false) => Some(start_default_log(&store_path)?),
        (None, true) => None,
    };
    let store = Arc::new(store);
    let mountpoint = plan.mountpoint;
    let create_mp = plan.create_mp;
    let mp = match create_mountpoint(mountpoint, create_mp) {
        Ok(mp) => mp,
        Err(e) => {
            close_store(store, &store_path);
            return Err(e);
        }
    };
    let record = Record {
        version: runtime::RECORD_VERSION,
        store: store_path.display().to_string(),
        mountpoint: mp.clone(),
        pid: std::process::id(),
        log_file: log_file.clone(),
        read_only: plan.read_only,
        started: crate::render::now_ns(),
        at: plan.at.map(crate::history::to_ns),
    };
    let server = runtime::register(&StoreLocation::Local(store_path.clone()), &record).and_then(
        |(reg, listener)| {
            ControlServer::start(listener, reg, store.clone(), record)
                .context("cannot start the control server")
        },
    );
    let mut server = match server {
        Ok(s) => s,
        Err(e) => {
            if create_mp {
                let _ = std::fs::remove_dir(&mp);
            }
            close_store(store, &store_path);
            return Err(e);
        }
    };
    let dyn_store: Arc<dyn ObjectStore> = store.clone();
    let handle = match objfs_fs::mount(dyn_store, &mp, cfg)
        .map_err(anyhow::Error::new)
        .with_context(|| format!("cannot mount {}", mountpoint.display()))
    {
        Ok(h) => h,
        Err(e) => {
            server.stop();
            if create_mp {
                let _ = std::fs::remove_dir(&mp);
            }
            close_store(store, &store_path);
            return Err(e);
        }
    };
    server.set_fs(handle.fs().clone());
    // Weak: the filesystem (and the store it holds) must go when the mount ends.
    let fs = Arc::downgrade(handle.fs());
    server.set_invalidator(Arc::new(move |keys: &[String]| {
        if let Some(fs) = fs.upgrade() {
            // Entries, attributes and negative entries of the keys, in the mount and the
            // kernel (FUSE notifications).
            fs.invalidate_keys(keys);
        }
    }));
    let mountpoint = mp.as_path();
    info!(store = %store_path.display(), mountpoint = %mountpoint.display(), "mounted");
    if plan.foreground && !plan.quiet {
        eprintln!(
            "objfs: mounted {} at {} (pid {}); Ctrl-C or `objfs umount {}` to unmount",
            store_path.display(),
            mountpoint.display(),
            std::process::id(),
            mountpoint.display()
        );
    }
    notifier.ready();

    let result = serve_until_unmounted(handle, mountpoint)?;
    // No new commands; jobs running for one stop at their next unit.
    server.stop();
    close_store(store, &store_path);
    result
}

/// Serves until a signal comes (then finishes uploads and unmounts) or the session ends from
/// outside (`objfs umount`, `fusermount3 -u`), whichever is first.
pub(crate) fn serve_until_unmounted(
    handle: objfs_fs::MountHandle,
    mountpoint: &Path,
) -> Result<Result<()>> {
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
    Ok(result)
}

/// The absolute path of the log file given on the command line.
fn plan_log_path(plan: &Plan<'_>) -> Option<PathBuf> {
    plan.log.as_ref().map(|f| f.path().to_path_buf())
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
