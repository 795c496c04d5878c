//! `objfs versions`, `objfs cat`, `objfs snapshot` and `objfs retention`: the store's history
//! from the command line. Each resolves where the store is (a mount point, a path inside a
//! mount, or a store directory: target.rs) and sends its request there (history.rs does the
//! work), so the output is the same mounted or not; `--json` prints the answer as it is,
//! text renders it with local times and human units.

use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::time::SystemTime;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use objfs_fs::inode::SNAPDIR;
use objfs_store::history::time::parse_moment;
use serde_json::Value;

use crate::cli::S3Args;
use crate::history::{to_ns, CatSpec, RetentionChange};
use crate::ops::Request;
use crate::progress::Feedback;
use crate::render::{human_bytes, local_time};
use crate::target::{self, Target};
use crate::{platform, runtime};

pub const VERSIONS_EXAMPLES: &str = "\
Examples:
  objfs versions ~/objfs/notes.txt                   a file inside a mount
  objfs versions ~/objfs/photos                      a directory: its marker's versions
  objfs versions --store ~/.objfs/store notes.txt    by key, mounted or not
  objfs versions --json ~/objfs/notes.txt            the schema is in docs/OPERATIONS.md
  objfs versions --store s3://bucket --endpoint http://127.0.0.1:9000 notes.txt

Newest first: version id, when it was made, size, and who made it (owner and mode from its
metadata; \"restore of V\" for a version `objfs restore` made). Delete markers are listed too.";

pub const CAT_EXAMPLES: &str = "\
Examples:
  objfs cat --version 0192f1c3e5a87b2c0000000000000001 ~/objfs/notes.txt > old.txt
  objfs cat --at -2h ~/objfs/notes.txt             as it was two hours ago
  objfs cat --at 2026-11-30T12:00:00Z --store ~/.objfs/store notes.txt

Writes the bytes of one version to stdout (the file as it was, also after it was deleted).";

pub const SNAPSHOT_EXAMPLES: &str = "\
Examples:
  objfs snapshot create ~/objfs before-upgrade       the store as of now, by name
  objfs snapshot create ~/objfs nightly --at -1h     as of an hour ago
  objfs snapshot list ~/objfs                        name, moment, bytes only it holds
  objfs snapshot delete ~/objfs before-upgrade
  objfs snapshot list s3://bucket --endpoint http://127.0.0.1:9000   a versioned bucket

A snapshot is a name for a moment: creating one costs one record whatever the number of files,
and it keeps every version it sees from retention and gc. Browse it under
MOUNTPOINT/.snapshots/NAME/ or mount it with `objfs mount --at`.";

pub const RETENTION_EXAMPLES: &str = "\
Examples:
  objfs retention show ~/objfs
  objfs retention show --dry-run ~/objfs               also what gc would free now
  objfs retention set ~/objfs --keep-all 10m           keep every version for 10 minutes
  objfs retention set ~/objfs --hourly 3d --daily 30d --deleted 30d
  objfs retention show s3://bucket --endpoint http://127.0.0.1:9000 --dry-run

Versions are kept by age (how long ago they stopped being current): all of them for
--keep-all, then one per hour until --hourly, then one per day until --daily; a deleted key's
last version for --deleted. The current version of a live key is always kept, and named
snapshots keep what they see. Durations: 90s, 10m, 24h, 7d, 1w. Default: 24h, 7d, 90d, 90d.";

/// `objfs versions`.
#[derive(Debug, Args)]
pub struct VersionsArgs {
    /// A file or directory inside a mount; with --store, a key.
    pub path: String,
    /// The store (directory, s3://BUCKET[/PREFIX] or mount point) whose KEY to show.
    #[arg(long, value_name = "STORE")]
    pub store: Option<PathBuf>,
    #[command(flatten)]
    pub s3: S3Args,
    /// Print JSON instead of text (schema in docs/OPERATIONS.md).
    #[arg(long)]
    pub json: bool,
}

/// `objfs cat`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("which").required(true).args(["version", "at"]))]
pub struct CatArgs {
    /// A file inside a mount; with --store, a key.
    pub path: String,
    /// The store (directory, s3://BUCKET[/PREFIX] or mount point) whose KEY to read.
    #[arg(long, value_name = "STORE")]
    pub store: Option<PathBuf>,
    #[command(flatten)]
    pub s3: S3Args,
    /// This version (an id `objfs versions` shows).
    #[arg(long, value_name = "ID")]
    pub version: Option<String>,
    /// The version current at this moment: RFC 3339, or -15m, -2h, -3d before now.
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub at: Option<String>,
}

/// `objfs snapshot`.
#[derive(Debug, Args)]
pub struct SnapshotArgs {
    #[command(subcommand)]
    pub action: SnapshotAction,
    #[command(flatten)]
    pub s3: S3Args,
}

#[derive(Debug, Subcommand)]
pub enum SnapshotAction {
    /// Name a moment of the store (now, or --at).
    Create {
        /// The store directory, or the mount point of a mounted store.
        store: PathBuf,
        /// Letters, digits, '.', '_' and '-' (not first: '.' or '-').
        name: String,
        /// The moment: RFC 3339, or -15m, -2h, -3d before now (default: now).
        #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
        at: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// The named snapshots: moment and the bytes only each holds.
    List {
        store: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Delete a named snapshot (gc then frees what only it held).
    Delete {
        store: PathBuf,
        name: String,
        #[arg(long)]
        json: bool,
    },
}

/// `objfs retention`.
#[derive(Debug, Args)]
pub struct RetentionArgs {
    #[command(subcommand)]
    pub action: RetentionAction,
    #[command(flatten)]
    pub s3: S3Args,
}

/// The policy's durations as options (`retention set`, `init`).
#[derive(Debug, Args, Default, Clone)]
pub struct RetentionOptions {
    /// Keep every version this long after it stopped being current (e.g. 24h, 10m).
    #[arg(long, value_name = "DURATION")]
    pub keep_all: Option<String>,
    /// Then one version per hour until this age (e.g. 7d).
    #[arg(long, value_name = "DURATION")]
    pub hourly: Option<String>,
    /// Then one version per day until this age (e.g. 90d).
    #[arg(long, value_name = "DURATION")]
    pub daily: Option<String>,
    /// Keep the last version of a deleted key this long (e.g. 90d).
    #[arg(long, value_name = "DURATION")]
    pub deleted: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum RetentionAction {
    /// Print the policy (and, with --dry-run, what gc would free now).
    Show {
        store: PathBuf,
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Change the policy (options not given keep their value).
    Set {
        store: PathBuf,
        #[command(flatten)]
        policy: RetentionOptions,
        #[arg(long)]
        json: bool,
    },
}

impl RetentionOptions {
    /// The change these options make (a usage error for a bad duration).
    pub fn change(&self) -> Result<RetentionChange> {
        let d = |v: &Option<String>, flag: &str| -> Result<Option<u64>> {
            v.as_deref()
                .map(|s| {
                    humantime::parse_duration(s.trim())
                        .map(|d| d.as_secs())
                        .map_err(|e| {
                            crate::usage(format!(
                                "--{flag} {s:?}: {e} (write a duration such as 10m, 24h, 7d)"
                            ))
                        })
                })
                .transpose()
        };
        Ok(RetentionChange {
            keep_all_s: d(&self.keep_all, "keep-all")?,
            hourly_s: d(&self.hourly, "hourly")?,
            daily_s: d(&self.daily, "daily")?,
            deleted_s: d(&self.deleted, "deleted")?,
        })
    }
}

/// A moment on the command line (a usage error when it is not one).
pub fn moment(text: &str) -> Result<SystemTime> {
    parse_moment(text, SystemTime::now()).map_err(|e| crate::usage(e.to_string()))
}

/// The store and key a PATH inside a mount names: the mount of the longest registered
/// mount point above it; the key is the path below it (below `.snapshots/X/` there: the same
/// key's history), with a trailing `/` for a directory (its marker).
fn mounted_path(path: &Path) -> Result<(Target, String)> {
    // A symlink names itself, not its target: only the directories above it are resolved.
    let abs = match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => {
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            platform::absolute(parent)?.join(name)
        }
        _ => platform::absolute(path)?,
    };
    let m = runtime::all()
        .into_iter()
        .filter(|m| abs.starts_with(&m.record.mountpoint))
        .max_by_key(|m| m.record.mountpoint.as_os_str().len())
        .with_context(|| {
            format!(
                "{} is not inside a mounted objfs store of this user (give --store STORE KEY for a store that is not mounted)",
                abs.display()
            )
        })?;
    let rel = abs
        .strip_prefix(&m.record.mountpoint)
        .context("not below its mount point")?;
    let mut parts: Vec<String> = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(p) => parts.push(
                p.to_str()
                    .with_context(|| format!("{} is not UTF-8", abs.display()))?
                    .to_string(),
            ),
            _ => bail!("{}: cannot name a key", abs.display()),
        }
    }
    if parts.first().map(String::as_str) == Some(SNAPDIR) {
        parts.drain(..parts.len().min(2));
    }
    if parts.is_empty() {
        bail!(
            "{} is the root of the mount, which has no versions; name a file or directory in it",
            abs.display()
        );
    }
    let mut key = parts.join("/");
    if std::fs::symlink_metadata(&abs).is_ok_and(|md| md.is_dir()) {
        key.push('/');
    }
    Ok((Target::Mounted(m), key))
}

/// Where `PATH` (or `--store STORE KEY`) is.
pub(crate) fn locate(path: &str, store: &Option<PathBuf>, s3: &S3Args) -> Result<(Target, String)> {
    match store {
        Some(s) => Ok((target::resolve_with(s, s3)?, path.to_string())),
        None => mounted_path(Path::new(path)),
    }
}

/// Executes `req` at `target` quietly and prints its answer.
fn run_and_print(
    target: &Target,
    req: &Request,
    json: bool,
    text: fn(&Value) -> String,
) -> Result<()> {
    let v = target.execute(req, &mut Feedback::new(true))?;
    if json {
        println!("{v}");
    } else {
        print!("{}", text(&v));
    }
    Ok(())
}

/// `objfs versions`.
pub fn versions(a: &VersionsArgs) -> Result<()> {
    let (target, key) = locate(&a.path, &a.store, &a.s3)?;
    run_and_print(&target, &Request::Versions { key }, a.json, versions_text)
}

/// `objfs cat`.
pub fn cat(a: &CatArgs) -> Result<()> {
    let (target, key) = locate(&a.path, &a.store, &a.s3)?;
    if key.ends_with('/') {
        bail!("{}: is a directory", a.path);
    }
    let spec = CatSpec {
        key,
        version: a.version.clone(),
        at_ns: a.at.as_deref().map(moment).transpose()?.map(to_ns),
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    target.cat(&spec, &mut out)?;
    out.flush()?;
    Ok(())
}

/// `objfs snapshot`.
pub fn snapshot(a: &SnapshotArgs) -> Result<()> {
    match &a.action {
        SnapshotAction::Create {
            store,
            name,
            at,
            json,
        } => {
            let at_ns = at.as_deref().map(moment).transpose()?.map(to_ns);
            let req = Request::SnapshotCreate {
                name: name.clone(),
                at_ns,
            };
            run_and_print(&target::resolve_with(store, &a.s3)?, &req, *json, |v| {
                format!("created {}", snapshot_line(&v["snapshot"]))
            })
        }
        SnapshotAction::List { store, json } => run_and_print(
            &target::resolve_with(store, &a.s3)?,
            &Request::SnapshotList,
            *json,
            snapshots_text,
        ),
        SnapshotAction::Delete { store, name, json } => {
            let req = Request::SnapshotDelete { name: name.clone() };
            run_and_print(&target::resolve_with(store, &a.s3)?, &req, *json, |v| {
                format!(
                    "deleted {} (gc frees what only it held)\n",
                    snapshot_line(&v["snapshot"]).trim_end()
                )
            })
        }
    }
}

/// `objfs retention`.
pub fn retention(a: &RetentionArgs) -> Result<()> {
    match &a.action {
        RetentionAction::Show {
            store,
            dry_run,
            json,
        } => {
            let req = Request::RetentionShow { dry_run: *dry_run };
            run_and_print(
                &target::resolve_with(store, &a.s3)?,
                &req,
                *json,
                retention_text,
            )
        }
        RetentionAction::Set {
            store,
            policy,
            json,
        } => {
            let change = policy.change()?;
            if change.is_empty() {
                return Err(crate::usage(
                    "retention set needs at least one of --keep-all, --hourly, --daily, --deleted",
                ));
            }
            let req = Request::RetentionSet(change);
            run_and_print(
                &target::resolve_with(store, &a.s3)?,
                &req,
                *json,
                retention_text,
            )
        }
    }
}

/// A duration in whole units: `90 d`, `24 h`, `10 min`, `30 s`.
fn duration_text(secs: u64) -> String {
    match secs {
        0 => "0 s".into(),
        s if s % 86_400 == 0 => format!("{} d", s / 86_400),
        s if s % 3600 == 0 => format!("{} h", s / 3600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// "restore of V (as of T)" from a restore's mark `V@T;job=ID`.
fn restored_text(mark: &str) -> String {
    let head = mark.split(';').next().unwrap_or(mark);
    match head.split_once('@') {
        Some((v, t)) => format!("restore of {v} (as of {t})"),
        None => format!("restore of {head}"),
    }
}

fn versions_text(v: &Value) -> String {
    let empty = Vec::new();
    let mut out = versions_table(
        v["key"].as_str().unwrap_or("?"),
        v["versions"].as_array().unwrap_or(&empty),
    );
    for l in v["linked"].as_array().unwrap_or(&empty) {
        out += &format!(
            "\nA hard link: the file's bytes and their history are {} (`objfs cat --version` takes these ids too)\n",
            l["inode"].as_str().unwrap_or("?")
        );
        out += &versions_table(
            l["inode"].as_str().unwrap_or("?"),
            l["versions"].as_array().unwrap_or(&empty),
        );
    }
    out
}

/// The table of one key's versions, newest first.
fn versions_table(key: &str, vs: &[Value]) -> String {
    let mut out = format!(
        "{}: {} version{} (newest first)\n",
        key,
        vs.len(),
        if vs.len() == 1 { "" } else { "s" }
    );
    out += &format!(
        "{:<34} {:<25} {:>10}  {}\n",
        "VERSION", "TIME", "SIZE", "WHAT"
    );
    for x in vs {
        let when = x["time_ns"].as_u64().map(local_time).unwrap_or_default();
        let (size, what) = if x["delete_marker"].as_bool() == Some(true) {
            ("-".to_string(), "delete marker".to_string())
        } else {
            let mut w = Vec::new();
            if let Some(k) = x["kind"].as_str() {
                w.push(k.to_string());
            }
            if let Some(m) = x["mode"].as_str() {
                w.push(format!("mode {m}"));
            }
            match (x["uid"].as_u64(), x["gid"].as_u64()) {
                (Some(u), Some(g)) => w.push(format!("uid {u} gid {g}")),
                (Some(u), None) => w.push(format!("uid {u}")),
                _ => {}
            }
            if let Some(r) = x["restored_from"].as_str() {
                w.push(restored_text(r));
            }
            (human_bytes(x["size"].as_u64().unwrap_or(0)), w.join(", "))
        };
        let current = if x["latest"].as_bool() == Some(true) {
            "  (current)"
        } else {
            ""
        };
        out += &format!(
            "{:<34} {:<25} {:>10}  {what}{current}\n",
            x["version"].as_str().unwrap_or("?"),
            when,
            size
        );
    }
    out
}

fn snapshot_line(s: &Value) -> String {
    let at = s["at_ns"].as_u64().map(local_time).unwrap_or_default();
    format!(
        "snapshot {} of {at} ({})\n",
        s["name"].as_str().unwrap_or("?"),
        s["at"].as_str().unwrap_or("?")
    )
}

fn snapshots_text(v: &Value) -> String {
    let empty = Vec::new();
    let all = v["snapshots"].as_array().unwrap_or(&empty);
    if all.is_empty() {
        return "no named snapshots (make one with `objfs snapshot create STORE NAME`)\n".into();
    }
    let mut out = format!("{:<24} {:<25} {}\n", "NAME", "TIME", "ONLY IT HOLDS");
    for s in all {
        let held = match (s["exclusive_bytes"].as_u64(), s["measured_ns"].as_u64()) {
            (Some(b), Some(_)) if s["exclusive_exact"].as_bool() == Some(true) => format!(
                "{} in {} version(s)",
                human_bytes(b),
                s["exclusive_versions"].as_u64().unwrap_or(0)
            ),
            (Some(b), Some(m)) => format!("{} (measured {})", human_bytes(b), local_time(m)),
            _ => "not measured yet (gc measures it)".to_string(),
        };
        out += &format!(
            "{:<24} {:<25} {held}\n",
            s["name"].as_str().unwrap_or("?"),
            s["at_ns"].as_u64().map(local_time).unwrap_or_default()
        );
    }
    out
}

fn retention_text(v: &Value) -> String {
    let p = &v["policy"];
    let d = |k: &str| duration_text(p[k].as_u64().unwrap_or(0));
    let mut out = format!(
        "retention policy{}:\n  every version for         {}\n  then one per hour until   {}\n  then one per day until    {}\n  a deleted key's last version for {}\n  (the current version of a live key, and what named snapshots see, are always kept)\n",
        if v["default"].as_bool() == Some(true) { " (the default)" } else { "" },
        d("keep_all_s"),
        d("hourly_s"),
        d("daily_s"),
        d("deleted_s"),
    );
    let dry = &v["dry_run"];
    if !dry.is_null() {
        match dry["free_bytes"].as_u64() {
            Some(b) => {
                out += &format!(
                    "gc would expire now: {} versions, {} (logical: bytes shared with kept versions stay)\n",
                    dry["versions"].as_u64().unwrap_or(0),
                    human_bytes(b)
                )
            }
            None => {
                out += &format!(
                    "dry run: {}\n",
                    dry["reason"].as_str().unwrap_or("not available")
                )
            }
        }
    }
    out
}

/// The `--keep-all ...` options of `objfs init`, applied to the new store.
pub fn init_retention(
    store: &objfs_store::local::LocalStore,
    opts: &RetentionOptions,
) -> Result<()> {
    let change = opts.change()?;
    if !change.is_empty() {
        crate::history::retention_set(store, &change)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts() {
        assert_eq!(duration_text(86_400 * 90), "90 d");
        assert_eq!(duration_text(600), "10 min");
        assert_eq!(duration_text(7200), "2 h");
        assert_eq!(
            restored_text("0192@2026-11-30T12:00:00Z;job=7"),
            "restore of 0192 (as of 2026-11-30T12:00:00Z)"
        );
    }
}
