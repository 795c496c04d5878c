//! `objfs place`, `objfs scrub`, `objfs gc` and `objfs disk`: the store's daemons on demand.
//!
//! The daemons normally run inside the mount process. These commands run the same workers in
//! the foreground on a store that is not mounted (`--now`), or steer the ones running in the
//! mount through the store's control and status files (`--pause`, `--resume`, `--status`),
//! which work whichever process owns the store: `--pause` writes `STORE/control/<daemon>`,
//! and the mount's control watcher sends the daemon a pause command within about a second.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use objfs_store::local::control::{is_paused, set_paused};
use objfs_store::local::worker::read_status;
use objfs_store::local::{GcOptions, LocalStore, Progress, WorkerState};
use objfs_store::StoreError;

use crate::commands::human_bytes;
use crate::location::{self, StoreLocation};
use crate::platform;

pub const PLACE_EXAMPLES: &str = "\
Examples:
  objfs place /srv/objfs --now     seal the open volume and erasure-code every sealed volume
  objfs place /srv/objfs           show what placement has done (also while mounted)";

pub const SCRUB_EXAMPLES: &str = "\
Examples:
  objfs scrub /srv/objfs --now      verify every copy and shard now, repair what is bad
  objfs scrub /srv/objfs --pause    pause the scrub of the mounted store
  objfs scrub /srv/objfs --resume
  objfs scrub /srv/objfs --status   the last pass: bytes checked, bad, repaired, unrepairable";

pub const GC_EXAMPLES: &str = "\
Examples:
  objfs gc /srv/objfs --now                 reclaim deleted data, compact, abort stale uploads
  objfs gc /srv/objfs --now --delay 0       also reclaim data deleted a moment ago
  objfs gc /srv/objfs                       show what gc has done (also while mounted)";

pub const DISK_EXAMPLES: &str = "\
Examples:
  objfs disk replace /srv/objfs /mnt/d2 /mnt/d2-new   then: objfs scrub /srv/objfs --now
  objfs disk add /srv/objfs /mnt/d6                   new volumes use it at once
  objfs disk remove /srv/objfs /mnt/d0                moves its data off first";

/// `objfs place`.
#[derive(Debug, Args)]
pub struct PlaceArgs {
    /// The store directory.
    pub store: PathBuf,
    /// Seal the open volume and erasure-code everything pending now, then exit.
    #[arg(long)]
    pub now: bool,
}

/// `objfs scrub`.
#[derive(Debug, Args)]
pub struct ScrubArgs {
    /// The store directory.
    pub store: PathBuf,
    /// Run a whole pass now in the foreground (the store must not be mounted).
    #[arg(long, conflicts_with_all = ["pause", "resume", "status"])]
    pub now: bool,
    /// Pause the scrub daemon (of the mount that owns the store).
    #[arg(long, conflicts_with_all = ["resume", "status"])]
    pub pause: bool,
    /// Resume a paused scrub daemon.
    #[arg(long, conflicts_with = "status")]
    pub resume: bool,
    /// Show the scrub daemon's state and its last pass (the default).
    #[arg(long)]
    pub status: bool,
}

/// `objfs gc`.
#[derive(Debug, Args)]
pub struct GcArgs {
    /// The store directory.
    pub store: PathBuf,
    /// Run every gc phase now in the foreground (the store must not be mounted).
    #[arg(long)]
    pub now: bool,
    /// Reclaim data only once it has been unreferenced this many seconds (default 600).
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    pub delay: u64,
    /// Abort multipart uploads older than this many seconds (default 86400).
    #[arg(long, value_name = "SECONDS", default_value_t = 86_400)]
    pub upload_ttl: u64,
    /// Compact a volume when at least this share of it is garbage (default 0.5).
    #[arg(long, value_name = "RATIO", default_value_t = 0.5)]
    pub garbage_ratio: f64,
}

/// `objfs disk`.
#[derive(Debug, Args)]
pub struct DiskArgs {
    #[command(subcommand)]
    pub command: DiskCommand,
}

#[derive(Debug, Subcommand)]
pub enum DiskCommand {
    /// Add an empty directory as a new disk (existing data stays where it is).
    Add {
        /// The store directory.
        store: PathBuf,
        /// An empty (or missing) directory.
        dir: PathBuf,
    },
    /// Take a disk out of service, moving every replica and shard on it to other disks first.
    Remove {
        /// The store directory.
        store: PathBuf,
        /// The disk directory, as `objfs status` shows it.
        dir: PathBuf,
    },
    /// Replace a failed or missing disk by an empty directory; a scrub then rebuilds it.
    Replace {
        /// The store directory.
        store: PathBuf,
        /// The disk directory being replaced, as the store names it (see `objfs status`).
        old: PathBuf,
        /// An empty (or missing) directory to use instead.
        new: PathBuf,
    },
}

/// Opens the store for a foreground run, explaining a mounted store.
fn open_for(what: &str, store: &Path) -> Result<LocalStore> {
    match location::open_local(what, &StoreLocation::Local(store.to_path_buf())) {
        Ok(s) => Ok(s),
        Err(StoreError::Locked { pid, .. }) => bail!(
            "{} is in use by pid {pid} (mounted?): its daemons run there; \
             use `objfs {what} {} --status` (scrub also takes --pause/--resume), or unmount first",
            store.display(),
            store.display()
        ),
        Err(e) => Err(e).with_context(|| format!("cannot open store {}", store.display())),
    }
}

fn print_progress(name: &str, p: &Progress) {
    let mut line = format!("{name}: {}", p.note);
    if p.total > 0 {
        line.push_str(&format!(", {}/{}", p.done, p.total));
    }
    for (k, v) in &p.counters {
        let v = if k.contains("bytes") {
            human_bytes(*v)
        } else {
            v.to_string()
        };
        line.push_str(&format!(", {k} {v}"));
    }
    println!("{line}");
}

/// Prints the status file a daemon last wrote, or says there is none.
fn print_daemon(store: &Path, name: &str) {
    match read_status(store, name) {
        Some(st) => {
            let paused = is_paused(store, name);
            let pending = match (paused, st.state) {
                (true, WorkerState::Paused) => "",
                (true, _) => " (pause requested)",
                (false, WorkerState::Paused) => " (resume requested)",
                (false, _) => "",
            };
            println!("{name} daemon: {}{pending}", st.state);
            print_progress(name, &st.progress);
            if let Some(e) = st.last_error {
                println!("{name}: last error: {e}");
            }
        }
        None => println!("{name} daemon: has not run on this store yet"),
    }
}

/// `objfs place`.
pub fn place(a: &PlaceArgs) -> Result<()> {
    let path = location::local_dir("place", &a.store)?;
    if !a.now {
        print_daemon(&path, "placement");
        return Ok(());
    }
    let store = open_for("place", &path)?;
    let st = store.status()?;
    if st.ec.is_none() {
        println!("this store has no erasure coding configured (replicas only): nothing to place");
        store.close()?;
        return Ok(());
    }
    let p = store.place_now(|p| {
        if p.done > 0 {
            eprintln!("placed {} volume(s), {} waiting", p.done, p.queue);
        }
    })?;
    print_progress("placement", &p);
    let st = store.status()?;
    println!(
        "{} of {} volumes erasure-coded",
        st.placed_volumes, st.volumes
    );
    store.close()?;
    Ok(())
}

/// `objfs scrub`.
pub fn scrub(a: &ScrubArgs) -> Result<()> {
    let path = location::local_dir("scrub", &a.store)?;
    if a.pause || a.resume {
        set_paused(&path, "scrub", a.pause)
            .with_context(|| format!("cannot write the control file of {}", path.display()))?;
        println!("scrub {}", if a.pause { "paused" } else { "resumed" });
        return Ok(());
    }
    if !a.now {
        print_daemon(&path, "scrub");
        return Ok(());
    }
    let store = open_for("scrub", &path)?;
    let p = store.scrub_now(|p| eprint!("\rscrub: {}/{} volumes", p.done, p.total))?;
    eprintln!();
    print_progress("scrub", &p);
    store.close()?;
    let unrepairable = p.counters.get("unrepairable").copied().unwrap_or(0);
    if unrepairable > 0 {
        bail!(
            "{unrepairable} damaged block(s) or shard chunk(s) could not be repaired (see the log)"
        );
    }
    Ok(())
}

/// `objfs gc`.
pub fn gc(a: &GcArgs) -> Result<()> {
    let path = location::local_dir("gc", &a.store)?;
    if !a.now {
        print_daemon(&path, "gc");
        return Ok(());
    }
    if !(0.0..=1.0).contains(&a.garbage_ratio) {
        bail!("--garbage-ratio must be between 0 and 1");
    }
    let store = open_for("gc", &path)?;
    let before = store.status()?.volume_bytes;
    let opts = GcOptions {
        delay: Duration::from_secs(a.delay),
        upload_ttl: Duration::from_secs(a.upload_ttl),
        garbage_ratio: a.garbage_ratio,
        ..Default::default()
    };
    let p = store.gc_now(opts, |_| {})?;
    let after = store.status()?.volume_bytes;
    print_progress("gc", &p);
    println!(
        "volume files: {} -> {}",
        human_bytes(before),
        human_bytes(after)
    );
    store.close()?;
    Ok(())
}

/// `objfs disk`.
pub fn disk(a: &DiskArgs) -> Result<()> {
    match &a.command {
        DiskCommand::Add { store, dir } => {
            let path = location::local_dir("disk add", store)?;
            let dir = platform::absolute(dir)?;
            let s = open_for("disk add", &path)?;
            s.add_disk(&dir)
                .with_context(|| format!("cannot add disk {}", dir.display()))?;
            s.close()?;
            println!("disk {} added; new volumes use it", dir.display());
            Ok(())
        }
        DiskCommand::Remove { store, dir } => {
            let path = location::local_dir("disk remove", store)?;
            let s = open_for("disk remove", &path)?;
            let dir = if s.status()?.disks.iter().any(|d| &d.path == dir) {
                dir.clone()
            } else {
                platform::absolute(dir)?
            };
            let moved = s
                .remove_disk(&dir)
                .with_context(|| format!("cannot remove disk {}", dir.display()))?;
            s.close()?;
            println!(
                "disk {} removed: {moved} replica(s)/shard(s) moved to other disks; it holds nothing of the store now",
                dir.display()
            );
            Ok(())
        }
        DiskCommand::Replace { store, old, new } => {
            let path = location::local_dir("disk replace", store)?;
            let new = platform::absolute(new)?;
            let s = open_for("disk replace", &path)?;
            // The store names its disks as given at init: accept the path as written or absolute.
            let old = if s.status()?.disks.iter().any(|d| &d.path == old) {
                old.clone()
            } else {
                platform::absolute(old)?
            };
            s.replace_disk(&old, &new)
                .with_context(|| format!("cannot replace disk {}", old.display()))?;
            s.close()?;
            println!(
                "disk {} replaced by {}; run `objfs scrub {} --now` to rebuild its data",
                old.display(),
                new.display(),
                path.display()
            );
            Ok(())
        }
    }
}
