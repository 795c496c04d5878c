//! `objfs place`, `objfs scrub`, `objfs gc` and `objfs disk`: the store's daemons and disks.
//!
//! Each command resolves its STORE argument (a store or a mount point, target.rs) and sends a
//! request there: to the mount process over the control socket when the store is mounted, or
//! to the store it opens itself when it is not; the output is the same. `--now` runs a
//! daemon's job to its end (in the mount process, with the daemon of the same name paused
//! meanwhile), `--pause` / `--resume` reach the daemon as commands (and are remembered in
//! `STORE/control/<daemon>`, so the next mount starts it paused), and by default the command
//! shows what the daemon is doing and did.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use objfs_store::local::daemons::DaemonReport;
use objfs_store::local::worker::RunReport;
use serde_json::Value;

use crate::ops::{DaemonAction, GcSettings, Request, ScrubSettings};
use crate::progress::Feedback;
use crate::render::{self, counters_text, human_bytes, run_progress_text};
use crate::target::{self, Target};

pub const PLACE_EXAMPLES: &str = "\
Examples:
  objfs place /srv/objfs --now      seal the open volume and erasure-code every sealed volume
  objfs place /mnt/objfs --now      the same on a mounted store (by its mount point)
  objfs place /srv/objfs            show what placement is doing and did
  objfs place /srv/objfs --pause    pause the placement daemon (kept across remounts)";

pub const SCRUB_EXAMPLES: &str = "\
Examples:
  objfs scrub /srv/objfs --now      verify every copy and shard now, repair what is bad
  objfs scrub /srv/objfs --pause    pause the scrub daemon (kept across remounts)
  objfs scrub /srv/objfs --resume
  objfs scrub /srv/objfs --json     the current and last pass: bytes checked, bad, repaired, ...";

pub const GC_EXAMPLES: &str = "\
Examples:
  objfs gc /srv/objfs --now                 reclaim deleted data, compact, abort stale uploads
  objfs gc /srv/objfs --now --delay 0       also reclaim data deleted a moment ago
  objfs gc /srv/objfs                       show what gc is doing and did
  objfs gc s3://bucket --endpoint URL --now one retention pass over a versioned bucket";

pub const DISK_EXAMPLES: &str = "\
Examples:
  objfs disk replace /srv/objfs /mnt/d2 /mnt/d2-new   then: objfs scrub /srv/objfs --now
  objfs disk add /srv/objfs /mnt/d6                   new volumes use it at once
  objfs disk remove /srv/objfs /mnt/d0                moves its data off first";

/// What `place`, `scrub` and `gc` share.
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// The store directory, or the mount point of a mounted store (gc: or s3://BUCKET).
    pub store: PathBuf,
    #[command(flatten)]
    pub s3: crate::cli::S3Args,
    /// Run the job to its end now, with progress (in the mount process if mounted).
    #[arg(long, conflicts_with_all = ["pause", "resume", "status"])]
    pub now: bool,
    /// Pause the daemon (and start it paused at the next mount).
    #[arg(long, conflicts_with_all = ["resume", "status"])]
    pub pause: bool,
    /// Resume a paused daemon.
    #[arg(long, conflicts_with = "status")]
    pub resume: bool,
    /// Show the daemon's state, its current run and its last run (the default).
    #[arg(long)]
    pub status: bool,
    /// Print JSON instead of text (schema in docs/OPERATIONS.md).
    #[arg(long)]
    pub json: bool,
    /// No progress display.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `objfs place`.
#[derive(Debug, Args)]
pub struct PlaceArgs {
    #[command(flatten)]
    pub common: DaemonArgs,
}

/// `objfs scrub`.
#[derive(Debug, Args)]
pub struct ScrubArgs {
    #[command(flatten)]
    pub common: DaemonArgs,
    /// With --now: read every tiered volume whole and check its BLAKE3 (else a sample).
    #[arg(long)]
    pub remote_full: bool,
    /// With --now: the share (0 to 1) of each tiered volume's blobs a sampled check reads.
    #[arg(long, value_name = "SHARE", default_value_t = 0.05)]
    pub remote_sample: f64,
    /// With --now: cap on the remote reads, bytes per second (K, M, G units; 0: none).
    #[arg(long, value_name = "RATE", default_value = "16M")]
    pub remote_bandwidth: String,
}

/// `objfs gc`.
#[derive(Debug, Args)]
pub struct GcArgs {
    #[command(flatten)]
    pub common: DaemonArgs,
    /// With --now: reclaim data only once it has been unreferenced this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    pub delay: u64,
    /// With --now: abort multipart uploads older than this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 86_400)]
    pub upload_ttl: u64,
    /// With --now: compact a volume when at least this share of it is garbage (0 to 1).
    #[arg(long, value_name = "RATIO", default_value_t = 0.5)]
    pub garbage_ratio: f64,
}

/// `objfs disk`.
#[derive(Debug, Args)]
pub struct DiskArgs {
    #[command(subcommand)]
    pub command: DiskCommand,
    /// Print JSON instead of text (schema in docs/OPERATIONS.md).
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress display.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum DiskCommand {
    /// Add an empty directory as a new disk (existing data stays where it is).
    Add {
        /// The store directory, or the mount point of a mounted store.
        store: PathBuf,
        /// An empty (or missing) directory.
        dir: PathBuf,
    },
    /// Take a disk out of service, moving every replica and shard on it to other disks first.
    Remove {
        /// The store directory, or the mount point of a mounted store.
        store: PathBuf,
        /// The disk directory, as `objfs status` shows it.
        dir: PathBuf,
    },
    /// Replace a failed or missing disk by an empty directory; a scrub then rebuilds it.
    Replace {
        /// The store directory, or the mount point of a mounted store.
        store: PathBuf,
        /// The disk directory being replaced, as the store names it (see `objfs status`).
        old: PathBuf,
        /// An empty (or missing) directory to use instead.
        new: PathBuf,
    },
}

fn print_json(v: &Value) {
    println!("{v}");
}

/// `place`, `scrub` or `gc` without `--now`: show, pause or resume the daemon.
fn steer(name: &str, a: &DaemonArgs) -> Result<()> {
    let target = target::resolve_with(&a.store, &a.s3)?;
    let action = if a.pause {
        DaemonAction::Pause
    } else if a.resume {
        DaemonAction::Resume
    } else {
        DaemonAction::Show
    };
    let req = Request::Daemon {
        name: name.to_string(),
        action,
    };
    let v = target.execute(&req, &mut Feedback::new(true))?;
    if a.json {
        print_json(&v);
        return Ok(());
    }
    match action {
        DaemonAction::Show => {
            let d: DaemonReport = serde_json::from_value(v["daemon"].clone())?;
            print!("{}", render::daemon_text(&d, render::mount_of(&v).as_ref()));
        }
        DaemonAction::Pause | DaemonAction::Resume => {
            let verb = if a.pause { "paused" } else { "resumed" };
            if v["running"].as_bool() == Some(true) {
                println!("{name} daemon {verb}");
            } else {
                println!(
                    "{name} daemon {verb} (the store is not mounted: the next mount starts it {})",
                    if a.pause { "paused" } else { "running" }
                );
            }
        }
    }
    Ok(())
}

/// `place|scrub|gc --now`: runs the job with progress; returns its report.
fn run_now(name: &str, a: &DaemonArgs, gc: Option<GcSettings>) -> Result<Value> {
    run_request(
        a,
        Request::Run {
            name: name.to_string(),
            gc,
            scrub: None,
        },
    )
}

/// Runs a job's request with progress; prints and returns its report.
fn run_request(a: &DaemonArgs, req: Request) -> Result<Value> {
    let Request::Run { name, .. } = &req else {
        bail!("not a job");
    };
    let name = name.clone();
    let target = target::resolve_with(&a.store, &a.s3)?;
    let mut fb = Feedback::new(a.quiet);
    let v = target.execute(&req, &mut fb)?;
    if a.json {
        print_json(&v);
        return Ok(v);
    }
    if let Some(why) = v["nothing_to_do"].as_str() {
        println!("{why}: nothing to place");
        return Ok(v);
    }
    if let Some(p) = v.get("retention_pass") {
        println!("{name}: {}", retention_pass_text(p));
        return Ok(v);
    }
    let run: Option<RunReport> = serde_json::from_value(v["run"].clone())?;
    if v["finished"].as_bool() != Some(true) {
        println!("{name}: stopped before the end (the mount is going away)");
    }
    match &run {
        Some(run) => {
            println!("{name}: {}", run_progress_text(&name, run));
            println!("{name}: {}", counters_text(&run.counters));
        }
        None => println!("{name}: nothing to do"),
    }
    Ok(v)
}

/// `objfs place`.
pub fn place(a: &PlaceArgs) -> Result<()> {
    let a = &a.common;
    if !a.now {
        return steer("placement", a);
    }
    let v = run_now("placement", a, None)?;
    if !a.json && v["nothing_to_do"].is_null() {
        println!(
            "{} of {} volumes erasure-coded",
            v["placed_volumes"], v["volumes"]
        );
    }
    Ok(())
}

/// `objfs scrub`.
pub fn scrub(args: &ScrubArgs) -> Result<()> {
    let a = &args.common;
    if !a.now {
        return steer("scrub", a);
    }
    if !(0.0..=1.0).contains(&args.remote_sample) {
        return Err(crate::usage("--remote-sample must be between 0 and 1"));
    }
    let settings = ScrubSettings {
        full: args.remote_full,
        sample: args.remote_sample,
        bandwidth: crate::options::parse_size(&args.remote_bandwidth)?,
    };
    let v = run_request(
        a,
        Request::Run {
            name: "scrub".into(),
            gc: None,
            scrub: Some(settings),
        },
    )?;
    let unrepairable = v["run"]["counters"]["unrepairable"].as_u64().unwrap_or(0);
    if unrepairable > 0 {
        let note = v["progress"]["note"].as_str().unwrap_or("");
        let remote = note
            .split_once("unrepairable remote objects: ")
            .map(|(_, keys)| format!("; remote objects: {keys}"))
            .unwrap_or_default();
        bail!(
            "{unrepairable} damaged block(s), shard chunk(s) or blob(s) could not be repaired (see the log){remote}"
        );
    }
    Ok(())
}

/// `objfs gc`.
pub fn gc(a: &GcArgs) -> Result<()> {
    if !a.common.now {
        return steer("gc", &a.common);
    }
    if !(0.0..=1.0).contains(&a.garbage_ratio) {
        return Err(crate::usage("--garbage-ratio must be between 0 and 1"));
    }
    let settings = GcSettings {
        delay_secs: a.delay,
        upload_ttl_secs: a.upload_ttl,
        garbage_ratio: a.garbage_ratio,
    };
    let v = run_now("gc", &a.common, Some(settings))?;
    if !a.common.json && v.get("retention_pass").is_none() {
        println!(
            "volume files: {} -> {}",
            human_bytes(v["volume_bytes_before"].as_u64().unwrap_or(0)),
            human_bytes(v["volume_bytes_after"].as_u64().unwrap_or(0))
        );
    }
    Ok(())
}

/// The text of a bucket's retention pass (`objfs gc s3://...`).
fn retention_pass_text(p: &Value) -> String {
    let mut out = format!(
        "retention pass over {} key(s), {} version(s): {} expired ({}) in {}",
        p["keys"],
        p["versions"],
        p["expired_versions"],
        human_bytes(p["expired_bytes"].as_u64().unwrap_or(0)),
        render::human_duration(p["seconds"].as_f64().unwrap_or(0.0)),
    );
    if let Some(snaps) = p["snapshots_exclusive"].as_object() {
        for (name, e) in snaps {
            out.push_str(&format!(
                "\n  snapshot {name} alone keeps {} version(s), {}",
                e["versions"],
                human_bytes(e["bytes"].as_u64().unwrap_or(0))
            ));
        }
    }
    out
}

/// A disk path as the store may name it: absolute paths as given (a failed disk cannot be
/// resolved), relative ones against this command's directory (the mount process's is `/`).
fn from_here(p: &std::path::Path) -> Result<PathBuf> {
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    crate::platform::absolute(p)
}

/// `objfs disk`.
pub fn disk(a: &DiskArgs) -> Result<()> {
    let abs = crate::platform::absolute;
    let (store, req) = match &a.command {
        DiskCommand::Add { store, dir } => (store, Request::DiskAdd { dir: abs(dir)? }),
        DiskCommand::Remove { store, dir } => (
            store,
            Request::DiskRemove {
                dir: from_here(dir)?,
            },
        ),
        DiskCommand::Replace { store, old, new } => (
            store,
            Request::DiskReplace {
                old: from_here(old)?,
                new: abs(new)?,
            },
        ),
    };
    let target = target::resolve(store)?;
    let mut fb = Feedback::new(a.quiet);
    let v = target.execute(&req, &mut fb)?;
    if a.json {
        print_json(&v);
        return Ok(());
    }
    let disk = v["disk"].as_str().unwrap_or("");
    match v["action"].as_str() {
        Some("add") => println!("disk {disk} added; new volumes use it"),
        Some("remove") => println!(
            "disk {disk} removed: {} replica(s)/shard(s) moved to other disks; it holds nothing of the store now",
            v["moved"]
        ),
        _ => {
            let store_arg = match &target {
                Target::Mounted(m) => m.record.mountpoint.display().to_string(),
                Target::Local(p) => p.display().to_string(),
                Target::Bucket(b) => b.loc.to_string(),
            };
            println!(
                "disk {disk} replaced by {}; run `objfs scrub {store_arg} --now` to rebuild its data",
                v["new"].as_str().unwrap_or("")
            )
        }
    }
    Ok(())
}
