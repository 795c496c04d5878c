//! `objfs restore`: bring a directory of a mount (or a key prefix of a store) back to what it
//! was at a moment (the planner and executor are objfs-store's `history::restore`).
//!
//! The command resolves where the store is (a path inside a mount, or `--store`), turns the
//! moment into an absolute time here (so `-1h` means an hour before the command), and sends a
//! [`RestoreRequest`] there: the mount process runs the job when the store is mounted (and
//! tells the mount which keys changed), the command itself when it is not. The job prints the
//! same report either way. Exit codes: 0 every step done (or nothing to do), 3 some keys were
//! conflicts (changed since the plan; left alone), 4 some steps failed; 1 the job could not
//! run, 2 a usage error.

use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::Args;
use objfs_store::history::restore::{
    self, job, Action, Job, JobState, Outcome, Progress, Step, Watch,
};
use objfs_store::history::time::{format_rfc3339, parse_moment};
use objfs_store::local::worker::RunReport;
use objfs_store::ObjectStore;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::ops::{JobProgress, Request};
use crate::progress::Feedback;
use crate::runtime::{self, Mounted};
use crate::target::{self, Target};

pub const RESTORE_EXAMPLES: &str = "\
Examples:
  objfs restore ~/objfs/photos --as-of -2h --dry-run     the plan: what would change, by key
  objfs restore ~/objfs/photos --as-of -2h               execute that plan (the same job)
  objfs restore ~/objfs --as-of 2026-11-30T12:00:00Z --exact
  objfs restore --store /srv/objfs photos/2026/ --as-of -1d --json
  objfs restore --store s3://bucket --endpoint http://127.0.0.1:3900 photos/ --as-of -1h

PATH is a directory inside a mounted objfs (its mount point restores everything); with
--store, the argument is a key prefix instead (\"\" for every key) and the store may be mounted
or not (a versioned s3:// bucket too, its job records kept in the bucket). Keys deleted since the moment are undeleted and keys overwritten since get their old
content back, each as a new version (no data is copied); --exact also deletes keys made since.
Nothing is ever removed from history: a restore can be undone by another restore.
A key changed between the plan and its step is a conflict: reported, left alone.
The plan is saved in the store: the run after a --dry-run executes exactly the printed plan,
and a run that was interrupted (even by kill -9) resumes when the same command is run again.
Exit codes: 0 all done, 3 conflicts, 4 failed steps, 1 the job could not run, 2 usage.";

/// Exit code: some keys changed since the plan (left alone).
pub const EXIT_CONFLICTS: u8 = 3;
/// Exit code: some steps failed.
pub const EXIT_FAILED: u8 = 4;

/// `objfs restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// A directory inside a mounted objfs; with --store, a key prefix ("" for all keys).
    #[arg(required_unless_present_any = ["list", "abandon"])]
    pub what: Option<String>,
    /// The store (a store directory, s3://BUCKET[/PREFIX], or the mount point of a mounted
    /// store): WHAT is a key prefix of it.
    #[arg(long, value_name = "STORE")]
    pub store: Option<PathBuf>,
    #[command(flatten)]
    pub s3: crate::cli::S3Args,
    /// The moment to restore to: RFC 3339 (2026-11-30T12:00:00Z) or before now (-15m, -2h, -3d).
    #[arg(
        long,
        value_name = "TIME",
        allow_hyphen_values = true,
        required_unless_present_any = ["list", "abandon"]
    )]
    pub as_of: Option<String>,
    /// Plan and print the plan (saved in the store: the next run executes it as printed).
    #[arg(long)]
    pub dry_run: bool,
    /// Also delete keys that did not exist at the moment.
    #[arg(long)]
    pub exact: bool,
    /// Listings and steps run at a time.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub jobs: usize,
    /// Plan again even if an unfinished job for the same request exists.
    #[arg(long)]
    pub replan: bool,
    /// JSON lines: one per key changed (or in conflict, or failed), then a summary
    /// (with --dry-run: one per planned step, then a summary).
    #[arg(long)]
    pub json: bool,
    /// No progress display.
    #[arg(short, long)]
    pub quiet: bool,
    /// List the store's restore jobs (interrupted ones until resumed or abandoned, finished
    /// and never-started ones for 7 days) instead of restoring.
    #[arg(long, conflicts_with_all = ["as_of", "dry_run", "exact", "replan", "abandon"])]
    pub list: bool,
    /// Remove the records of job ID (an interrupted job can then not be resumed; what it
    /// restored stays restored).
    #[arg(long, value_name = "ID", conflicts_with_all = ["as_of", "dry_run", "exact", "replan"])]
    pub abandon: Option<String>,
}

/// What the command asks of the store (over the control socket, or run here).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreRequest {
    pub prefix: String,
    /// The moment as given (a rerun with the same words finds the same job).
    pub as_of: String,
    /// The moment, resolved when the command started (ns since the epoch).
    pub at_ns: u64,
    pub exact: bool,
    pub dry_run: bool,
    pub jobs: usize,
    pub replan: bool,
    /// Report every key changed (`--json`), not only conflicts and failures.
    #[serde(default)]
    pub every_key: bool,
    /// `--list`: the store's jobs instead of a restore.
    #[serde(default)]
    pub list: bool,
    /// `--abandon ID`: remove that job's records instead of a restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abandon: Option<String>,
}

/// A path inside a mount: the mount, and the key prefix of the directory it names. The path
/// need not exist (a deleted directory is what one restores): its deepest existing ancestor
/// is resolved, the rest is taken as written.
fn mount_prefix(path: &Path) -> Result<(Mounted, String)> {
    let abs = crate::platform::absolute(path)?;
    let mut base = abs.clone();
    let mut rest: Vec<String> = Vec::new();
    let canonical = loop {
        if let Ok(c) = base.canonicalize() {
            break c;
        }
        let name = base
            .file_name()
            .with_context(|| format!("{} is not a path inside a mount", path.display()))?;
        rest.push(name.to_string_lossy().into_owned());
        if !base.pop() {
            bail!("{} is not a path inside a mount", path.display());
        }
    };
    let mut full = canonical;
    for r in rest.iter().rev() {
        full.push(r);
    }
    let mounts = runtime::all();
    let m = mounts
        .into_iter()
        .filter(|m| full.starts_with(&m.record.mountpoint))
        .max_by_key(|m| m.record.mountpoint.as_os_str().len())
        .with_context(|| {
            format!(
                "{} is not inside an objfs mount of this user (for a store that is not mounted, \
                 use --store STORE and a key prefix)",
                path.display()
            )
        })?;
    let rel = full
        .strip_prefix(&m.record.mountpoint)
        .context("path outside its mount")?;
    let mut prefix = String::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => {
                let n = n
                    .to_str()
                    .with_context(|| format!("{} is not UTF-8", path.display()))?;
                if n == ".snapshots" && prefix.is_empty() {
                    bail!(
                        "{} is inside .snapshots (read-only history)",
                        path.display()
                    );
                }
                prefix.push_str(n);
                prefix.push('/');
            }
            _ => bail!("{} is not a plain path inside the mount", path.display()),
        }
    }
    Ok((m, prefix))
}

/// `objfs restore`.
pub fn command(a: &RestoreArgs) -> Result<()> {
    if a.jobs == 0 || a.jobs > 1024 {
        return Err(crate::usage("--jobs must be between 1 and 1024"));
    }
    if a.list || a.abandon.is_some() {
        return crate::restore_jobs::command(a);
    }
    let (Some(what), Some(as_of)) = (&a.what, &a.as_of) else {
        return Err(crate::usage("restore needs WHAT and --as-of TIME"));
    };
    let now = SystemTime::now();
    let at = parse_moment(as_of, now).map_err(|e| crate::usage(format!("--as-of: {e}")))?;
    if at > now {
        return Err(crate::usage(format!(
            "--as-of: {} is in the future",
            format_rfc3339(at)
        )));
    }
    let (target, prefix) = target_of(a.store.as_deref(), what, &a.s3)?;
    objfs_store::key::validate_prefix(&prefix)
        .map_err(|e| crate::usage(format!("bad prefix {prefix:?}: {e}")))?;
    let req = Request::Restore(RestoreRequest {
        prefix,
        as_of: as_of.clone(),
        at_ns: ns(at),
        exact: a.exact,
        dry_run: a.dry_run,
        jobs: a.jobs,
        replan: a.replan,
        every_key: a.json,
        list: false,
        abandon: None,
    });
    let mut fb = Feedback::new(a.quiet);
    let json_lines = a.json && !a.dry_run;
    let v = target.execute_lines(&req, &mut fb, &mut |lines| {
        for l in lines {
            print_change(l, json_lines);
        }
    })?;
    if let Some(note) = v["note"].as_str() {
        eprintln!("objfs: {note}");
    }
    if a.dry_run {
        print_plan(&v, a.json);
        return Ok(());
    }
    print_run(&v, a.json);
    let conflicts = v["summary"]["conflicts"].as_u64().unwrap_or(0);
    let failed = v["summary"]["failed"].as_u64().unwrap_or(0);
    if failed > 0 {
        return Err(crate::exit_with(
            EXIT_FAILED,
            format!("{failed} step(s) failed (listed above)"),
        ));
    }
    if conflicts > 0 {
        return Err(crate::exit_with(
            EXIT_CONFLICTS,
            format!("{conflicts} key(s) changed since the plan and were left alone (listed above)"),
        ));
    }
    Ok(())
}

/// Where the command works: the store `--store` names (WHAT is a key prefix of it), or the
/// mount WHAT is a path inside (and the prefix of that path).
pub(crate) fn target_of(
    store: Option<&Path>,
    what: &str,
    s3: &crate::cli::S3Args,
) -> Result<(Target, String)> {
    Ok(match store {
        Some(store) => (target::resolve_with(store, s3)?, what.to_string()),
        None => {
            let (m, prefix) = mount_prefix(Path::new(what))?;
            (Target::Mounted(m), prefix)
        }
    })
}

fn ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos().min(u64::MAX as u128) as u64)
        .unwrap_or(0)
}

fn print_plan(v: &Value, json: bool) {
    let empty = Vec::new();
    let steps = v["steps"].as_array().unwrap_or(&empty);
    if json {
        for s in steps {
            println!("{s}");
        }
        println!("{}", json!({ "summary": v["summary"] }));
        return;
    }
    let sum = &v["summary"];
    println!(
        "restore job {}: {:?} as of {}{}: {} step(s) ({} undelete, {} revert, {} delete) from {} key(s), {} version(s) listed",
        sum["job"].as_str().unwrap_or(""),
        sum["prefix"].as_str().unwrap_or(""),
        sum["as_of"].as_str().unwrap_or(""),
        if sum["exact"].as_bool() == Some(true) { " (exact)" } else { "" },
        sum["steps"],
        sum["undelete"],
        sum["revert"],
        sum["delete"],
        sum["keys_listed"],
        sum["versions_listed"],
    );
    for s in steps {
        let from = match s["source"].as_str() {
            Some(src) => format!("  (version {src})"),
            None => String::new(),
        };
        println!(
            "{:<8} {}{from}",
            s["action"].as_str().unwrap_or(""),
            s["key"].as_str().unwrap_or("")
        );
    }
    if sum["steps"].as_u64() != Some(0) {
        println!("run the same command without --dry-run to execute this plan");
    }
}

fn print_run(v: &Value, json: bool) {
    let empty = Vec::new();
    for c in v["changes"].as_array().unwrap_or(&empty) {
        print_change(c, json);
    }
    if json {
        println!("{}", json!({ "summary": v["summary"] }));
        return;
    }
    let sum = &v["summary"];
    let secs = sum["seconds"].as_f64().unwrap_or(0.0);
    let done = sum["done"].as_u64().unwrap_or(0);
    println!(
        "restore job {}: {done} key(s) restored as of {} ({} undeleted, {} reverted, {} deleted), {} already so, {} conflict(s), {} failed, in {}{}",
        sum["job"].as_str().unwrap_or(""),
        sum["as_of"].as_str().unwrap_or(""),
        sum["undeleted"],
        sum["reverted"],
        sum["deleted"],
        sum["already"],
        sum["conflicts"],
        sum["failed"],
        crate::render::human_duration(secs),
        if secs > 0.0 && done > 0 {
            format!(" ({:.0} keys/s)", done as f64 / secs)
        } else {
            String::new()
        },
    );
}

/// A step as the reports show it.
/// One line of a run's report, printed as soon as it arrives: every line with `--json`, the
/// conflicts and failures without.
fn print_change(c: &Value, json: bool) {
    if json {
        println!("{c}");
        return;
    }
    match c["outcome"].as_str() {
        Some("conflict") => println!(
            "conflict: {}: changed since the plan ({}); left alone",
            c["key"].as_str().unwrap_or(""),
            match c["version"].as_str() {
                Some(cur) => format!("now version {cur}"),
                None => "now deleted".into(),
            }
        ),
        Some("failed") => println!(
            "failed: {}: {}",
            c["key"].as_str().unwrap_or(""),
            c["error"].as_str().unwrap_or("")
        ),
        _ => {}
    }
}

fn step_json(s: &Step) -> Value {
    json!({
        "key": s.key,
        "action": s.action.as_str(),
        "source": s.source.as_ref().map(|v| v.to_string()),
        "expected": s.expected.as_ref().map(|v| v.to_string()),
        "size": s.source_size,
    })
}

/// How the job's watcher reports to the command and the mount.
struct Watcher<'a> {
    on_progress: &'a mut dyn FnMut(&JobProgress) -> bool,
    on_changed: &'a mut dyn FnMut(&[String]),
    /// Hears the report's per-key lines, a few hundred at a time as steps settle.
    on_lines: &'a mut dyn FnMut(&[Value]),
    run: RunReport,
    /// Lines not yet handed to `on_lines`.
    changes: Vec<Value>,
    /// Keep a line for every key changed, not only for conflicts and failures.
    every_key: bool,
    /// What the progress display says while the steps run (the job, resumed or not).
    exec_note: String,
    by_action: [u64; 3],
}

impl Watcher<'_> {
    /// Hands the lines gathered so far to `on_lines`.
    fn flush(&mut self) {
        if !self.changes.is_empty() {
            (self.on_lines)(&self.changes);
            self.changes.clear();
        }
    }
}

fn action_index(a: Action) -> usize {
    match a {
        Action::Undelete => 0,
        Action::Revert => 1,
        Action::Delete => 2,
    }
}

impl Watch for Watcher<'_> {
    fn progress(&mut self, p: &Progress) -> bool {
        self.flush();
        let note = if p.planning {
            format!(
                "planning: {} keys, {} versions listed",
                p.keys_listed, p.versions_listed
            )
        } else {
            self.exec_note.clone()
        };
        if p.planning {
            self.run.items_done = p.keys_listed;
            self.run.items_total = 0;
        } else {
            self.run.items_done = p.steps_settled;
            self.run.items_total = p.steps_total;
        }
        (self.on_progress)(&JobProgress {
            job: "restore".into(),
            note,
            run: self.run.clone(),
        })
    }

    fn settled(&mut self, step: &Step, outcome: &Outcome) {
        if let Outcome::Done { .. } = outcome {
            self.by_action[action_index(step.action)] += 1;
        }
        let wanted = match outcome {
            Outcome::Already => false,
            Outcome::Done { .. } => self.every_key,
            Outcome::Conflict { .. } | Outcome::Failed { .. } => true,
        };
        if !wanted {
            return;
        }
        let mut v = step_json(step);
        v["outcome"] = json!(outcome.as_str());
        match outcome {
            Outcome::Done { version } | Outcome::Conflict { current: version } => {
                v["version"] = json!(version.as_ref().map(|v| v.to_string()))
            }
            Outcome::Failed { error } => v["error"] = json!(error),
            Outcome::Already => {}
        }
        self.changes.push(v);
    }

    fn changed(&mut self, keys: &[String]) {
        self.flush();
        (self.on_changed)(keys);
    }
}

pub(crate) fn job_json(j: &Job) -> Value {
    json!({
        "job": j.id,
        "prefix": j.prefix,
        "as_of": format_rfc3339(j.at),
        "as_of_given": j.as_of,
        "exact": j.exact,
        "planned": format_rfc3339(j.created),
        "steps": j.steps,
        "keys_listed": j.keys,
        "versions_listed": j.versions,
    })
}

/// Runs a restore request on `store` (in the mount process, or in the command when the store
/// is not mounted): finds the unfinished job for it or plans one, then prints (dry run) or
/// executes it. `on_changed` hears the keys each batch changed. The per-key lines of a run
/// are in the answer's `changes` ([`execute_streaming`] hands them out as they come).
pub fn execute(
    store: &dyn ObjectStore,
    req: &RestoreRequest,
    on_progress: &mut dyn FnMut(&JobProgress) -> bool,
    on_changed: &mut dyn FnMut(&[String]),
) -> Result<Value> {
    let mut lines = Vec::new();
    let mut v = execute_streaming(store, req, on_progress, on_changed, &mut |l| {
        lines.extend_from_slice(l)
    })?;
    if v.get("changes").is_some() {
        v["changes"] = Value::Array(lines);
    }
    Ok(v)
}

/// [`execute`], with the run's per-key lines (every key changed with `every_key`, else the
/// conflicts and failures) handed to `on_lines` as the steps settle, a few hundred at a time
/// and always by the end of each chunk, instead of in the answer (whose `changes` is empty).
pub fn execute_streaming(
    store: &dyn ObjectStore,
    req: &RestoreRequest,
    on_progress: &mut dyn FnMut(&JobProgress) -> bool,
    on_changed: &mut dyn FnMut(&[String]),
    on_lines: &mut dyn FnMut(&[Value]),
) -> Result<Value> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("objfs-restore")
        .build()
        .context("cannot start the restore's runtime")?;
    let mut w = Watcher {
        on_progress,
        on_changed,
        on_lines,
        run: RunReport::start(0, 0),
        changes: Vec::new(),
        every_key: req.every_key,
        exec_note: String::new(),
        by_action: [0; 3],
    };
    if req.list || req.abandon.is_some() {
        return rt.block_on(crate::restore_jobs::execute(store, req));
    }
    let out = rt.block_on(run(store, req, &mut w));
    w.flush();
    out
}

async fn run(store: &dyn ObjectStore, req: &RestoreRequest, w: &mut Watcher<'_>) -> Result<Value> {
    let at = UNIX_EPOCH + Duration::from_nanos(req.at_ns);
    job::prune(store, SystemTime::now())
        .await
        .context("cannot remove the store's expired restore jobs")?;
    let found = if req.replan {
        None
    } else {
        job::find_unfinished(store, &req.prefix, at, &req.as_of, req.exact)
            .await
            .context("cannot read the store's restore jobs")?
    };
    let plan_started = std::time::Instant::now();
    let (mut job, note, steps) = match found {
        Some(j) => {
            let what = match (req.dry_run, j.state) {
                (true, _) => "showing the unfinished",
                (false, JobState::Running) => "resuming the interrupted",
                (false, _) => "executing the planned",
            };
            let note = format!(
                "{what} restore job {} (planned at {}, {} steps; --replan plans anew)",
                j.id,
                format_rfc3339(j.created),
                j.steps,
            );
            let steps = if req.dry_run {
                job::load_plan(store, &j).await?
            } else {
                Vec::new()
            };
            (j, Some(note), steps)
        }
        None => {
            let r = restore::Request {
                prefix: req.prefix.clone(),
                at,
                as_of: req.as_of.clone(),
                exact: req.exact,
                jobs: req.jobs,
            };
            // A hard link's name stands for its inode object: restored with it, so the name
            // shows the bytes it showed then (docs/SEMANTICS.md, "Hard links").
            let linked = |m: &objfs_store::types::Metadata| {
                objfs_fs::core::link_id(m).map(objfs_fs::core::inode_key)
            };
            let (j, s) = restore::plan_job(store, &r, SystemTime::now(), Some(&linked), w)
                .await
                .context("cannot plan the restore")?;
            let older = job::supersede(store, &j)
                .await
                .context("cannot remove the older plans of this restore")?;
            let note = (!older.is_empty()).then(|| {
                format!(
                    "planned anew as job {}; removed the older unfinished job(s) {}",
                    j.id,
                    older.join(", ")
                )
            });
            (j, note, s)
        }
    };
    let plan_secs = plan_started.elapsed().as_secs_f64();
    let mut summary = job_json(&job);
    summary["plan_seconds"] = json!(plan_secs);
    if req.dry_run {
        let mut counts = [0u64; 3];
        for s in &steps {
            counts[action_index(s.action)] += 1;
        }
        summary["undelete"] = json!(counts[0]);
        summary["revert"] = json!(counts[1]);
        summary["delete"] = json!(counts[2]);
        summary["dry_run"] = json!(true);
        let steps: Vec<Value> = steps.iter().map(step_json).collect();
        return Ok(json!({ "note": note, "summary": summary, "steps": steps }));
    }
    w.run = RunReport::start(job.steps, 0);
    w.exec_note = match job.state {
        JobState::Running => format!("keys, job {} resumed", job.id),
        _ => format!("keys, job {}", job.id),
    };
    let report = restore::execute(store, &mut job, req.jobs, w)
        .await
        .with_context(|| format!("restore job {} stopped", job.id))?;
    summary["done"] = json!(report.done);
    summary["undeleted"] = json!(w.by_action[0]);
    summary["reverted"] = json!(w.by_action[1]);
    summary["deleted"] = json!(w.by_action[2]);
    summary["already"] = json!(report.already);
    summary["conflicts"] = json!(report.conflicts);
    summary["failed"] = json!(report.failed);
    summary["chunks_resumed"] = json!(report.chunks_resumed);
    summary["finished"] = json!(!report.stopped);
    summary["seconds"] = json!(report.seconds);
    w.flush();
    if report.stopped {
        bail!(
            "restore job {} stopped before its end (the mount is going away); run the same command again to resume it",
            job.id
        );
    }
    Ok(json!({ "note": note, "summary": summary, "changes": [] }))
}
