//! What the commands ask of a store, and the one function that does it, wherever the store is.
//!
//! A [`Request`] is executed by [`execute`] on an open [`LocalStore`]: by the command itself
//! when the store is not mounted, or by the mount process when a command sends the request over
//! the control socket (server.rs). Either way the answer is the same JSON value, which the
//! command prints as text (render.rs) or as it is (`--json`); so a command's output does not
//! depend on whether the store is mounted, except for the `mount` part that says it is.
//!
//! The wire protocol (docs/OPERATIONS.md, "The control socket"): the client writes one line,
//! `{"version":1,"request":{"op":...}}`; the server answers with any number of
//! `{"progress":{...}}` lines ([`JobProgress`]) and then one `{"done":VALUE}` or
//! `{"error":"message"}` line, and closes the connection.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use objfs_store::local::worker::{Progress, RunReport};
use objfs_store::local::{GcOptions, LocalStore, StoreStatus};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::history::{self, CatSpec, RetentionChange};
use crate::runtime::Record;

/// The protocol version a client sends and a server accepts.
pub const PROTOCOL_VERSION: u32 = 1;

/// One line from the client.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    pub version: u32,
    pub request: Request,
}

/// What a command asks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// The store's figures, the mount, and every daemon.
    Status,
    /// Show, pause or resume one daemon (`placement`, `scrub` or `gc`).
    Daemon {
        name: String,
        action: DaemonAction,
    },
    /// Run a daemon's job to its end now (`place|scrub|gc --now`).
    Run {
        name: String,
        #[serde(default)]
        gc: Option<GcSettings>,
        /// `scrub --now`: how to check the remote tier (absent: the defaults).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scrub: Option<ScrubSettings>,
    },
    DiskAdd {
        dir: PathBuf,
    },
    DiskRemove {
        dir: PathBuf,
    },
    DiskReplace {
        old: PathBuf,
        new: PathBuf,
    },
    /// `objfs versions`: every version and delete marker of a key, newest first.
    Versions {
        key: String,
    },
    /// `objfs cat`: one version's bytes. The answer line says which version and its size;
    /// the bytes follow it raw on the connection (server.rs).
    Cat(CatSpec),
    SnapshotCreate {
        name: String,
        /// The moment (ns since the epoch); now when absent.
        #[serde(default)]
        at_ns: Option<u64>,
    },
    SnapshotList,
    SnapshotDelete {
        name: String,
    },
    RetentionShow {
        #[serde(default)]
        dry_run: bool,
    },
    RetentionSet(RetentionChange),
    /// `objfs mount --at` of a mounted store: the mount process serves a read-only mount of
    /// that moment at `mountpoint` (sled has one owner), with these `-o` options.
    MountAt {
        mountpoint: PathBuf,
        at_ns: u64,
        #[serde(default)]
        options: Vec<String>,
    },
    /// `objfs restore` (restore.rs).
    Restore(crate::restore::RestoreRequest),
    /// `objfs tier` and `objfs lifecycle` (tiering.rs).
    Tier(crate::tiering::TierRequest),
    /// `objfs du` (insights.rs): per-prefix rollups of `prefix` and `depth` levels below it,
    /// the `top` largest prefixes, and a recount when `verify`.
    Du {
        prefix: String,
        depth: usize,
        #[serde(default)]
        top: usize,
        #[serde(default)]
        verify: bool,
    },
    /// `objfs writeback retry` (writeback.rs): a mounted bucket's write-back tries the
    /// uploads the bucket refused for good again.
    WritebackRetry,
}

/// What a request changed behind the kernel's back: the mount that serves it tells the
/// kernel (`objfs_fs::ObjFs::invalidate_keys` and friends, server.rs).
#[derive(Debug, Default, PartialEq)]
pub struct Invalidation {
    pub keys: Vec<String>,
    pub prefixes: Vec<String>,
    pub snapshots: Vec<String>,
}

impl Request {
    /// What executing this request may have changed in the namespace a mount shows.
    pub fn invalidation(&self) -> Invalidation {
        match self {
            Request::SnapshotCreate { name, .. } | Request::SnapshotDelete { name } => {
                Invalidation {
                    snapshots: vec![name.clone()],
                    ..Default::default()
                }
            }
            _ => Invalidation::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DaemonAction {
    Show,
    Pause,
    Resume,
}

/// `gc --now` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GcSettings {
    pub delay_secs: u64,
    pub upload_ttl_secs: u64,
    pub garbage_ratio: f64,
}

/// `scrub --now` settings for the remote tier (docs/OPERATIONS.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScrubSettings {
    /// Read every tiered volume whole (else a sample of its blobs).
    pub full: bool,
    /// The share of each tiered volume's blobs a sampled check reads (0: none).
    pub sample: f64,
    /// Bytes per second the remote reads may average (0: no cap).
    pub bandwidth: u64,
}

/// One line from the server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    Progress(JobProgress),
    Done(Value),
    Error(String),
    /// Lines of a job's report, sent as they come, before its answer (a restore's per-key
    /// lines).
    Lines(Vec<Value>),
}

/// How far a job is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobProgress {
    /// `placement`, `scrub`, `gc` or `disk remove`.
    pub job: String,
    /// What it is doing (a gc phase, ...).
    pub note: String,
    pub run: RunReport,
}

/// Where the store is mounted, as status shows it.
pub fn mount_json(record: Option<&Record>) -> Value {
    match record {
        Some(r) => json!({
            "mountpoint": r.mountpoint.display().to_string(),
            "pid": r.pid,
            "log_file": r.log_file.as_ref().map(|p| p.display().to_string()),
            "read_only": r.read_only,
            "started": r.started,
            "at_ns": r.at,
            "at_mounts": [],
        }),
        None => Value::Null,
    }
}

/// The store's figures as JSON (the top level of `objfs status --json`).
pub fn store_json(st: &StoreStatus) -> Value {
    let disks: Vec<Value> = st
        .disks
        .iter()
        .map(|d| {
            json!({
                "path": d.path.display().to_string(),
                "online": d.online,
                "removed": d.removed,
                "total_bytes": d.total_bytes,
                "free_bytes": d.free_bytes,
            })
        })
        .collect();
    json!({
        "path": st.path.display().to_string(),
        "objects": st.objects,
        "versions": st.versions,
        "delete_markers": st.delete_markers,
        "logical_bytes": st.logical_bytes,
        "volumes": st.volumes,
        "volume_bytes": st.volume_bytes,
        "placed_volumes": st.placed_volumes,
        "replicas": st.replicas,
        "ec": st.ec.map(|(k, m)| format!("{k}+{m}")),
        "overhead": st.overhead,
        "warnings": st.warnings,
        "last_shutdown_clean": st.last_shutdown_clean,
        "disks": disks,
    })
}

fn to_value<T: Serialize>(v: &T) -> Result<Value> {
    serde_json::to_value(v).context("cannot encode a report")
}

/// The progress of a worker's job as a [`JobProgress`] (none before it has a run).
fn job_progress(job: &str, p: &Progress) -> Option<JobProgress> {
    p.current.as_ref().map(|run| JobProgress {
        job: job.to_string(),
        note: p.note.clone(),
        run: run.clone(),
    })
}

/// Executes `req` on `store`. `mount` is the mount the store is served by (when this runs in
/// the mount process); `on_progress` hears how far a long job is and stops it by returning
/// false.
pub fn execute(
    store: &LocalStore,
    mount: Option<&Record>,
    req: &Request,
    on_progress: &mut dyn FnMut(&JobProgress) -> bool,
) -> Result<Value> {
    match req {
        Request::Status => {
            let st = store.status().context("cannot read the store's status")?;
            let mut v = store_json(&st);
            v["mount"] = mount_json(mount);
            v["daemons"] = to_value(&store.daemon_reports()?)?;
            (v["tier"], v["lifecycle"]) = crate::tiering::status_json(store)?;
            // The per-prefix rollups of the root: the whole store's insights.
            let du = store.du("", 0, 0).context("cannot read the rollups")?;
            v["insights"] = to_value(&du.prefixes.first())?;
            v["insights_store"] = to_value(&du.store)?;
            Ok(v)
        }
        Request::Daemon { name, action } => {
            let name = daemon_name(name)?;
            match action {
                DaemonAction::Show => {
                    let reports = store.daemon_reports()?;
                    let r = reports
                        .iter()
                        .find(|r| r.name == name)
                        .with_context(|| format!("no daemon called {name}"))?;
                    Ok(json!({"daemon": to_value(r)?, "mount": mount_json(mount)}))
                }
                DaemonAction::Pause | DaemonAction::Resume => {
                    let paused = *action == DaemonAction::Pause;
                    let running = store.set_daemon_paused(name, paused)?;
                    Ok(json!({"daemon": name, "paused": paused, "running": running}))
                }
            }
        }
        Request::Restore(r) => crate::restore::execute(store, r, on_progress, &mut |_| {}),
        Request::Run { name, gc, scrub } => run_job(
            store,
            daemon_name(name)?,
            (gc.as_ref(), scrub.as_ref()),
            on_progress,
        ),
        Request::DiskAdd { dir } => {
            store
                .add_disk(dir)
                .with_context(|| format!("cannot add disk {}", dir.display()))?;
            Ok(json!({"action": "add", "disk": dir.display().to_string(), "moved": 0}))
        }
        Request::DiskRemove { dir } => {
            let dir = store_disk_name(store, dir)?;
            let mut cb = |r: &RunReport| {
                on_progress(&JobProgress {
                    job: "disk remove".into(),
                    note: "moving data off the disk".into(),
                    run: r.clone(),
                });
            };
            let moved = store
                .remove_disk_with(&dir, &mut cb)
                .with_context(|| format!("cannot remove disk {}", dir.display()))?;
            Ok(json!({"action": "remove", "disk": dir.display().to_string(), "moved": moved}))
        }
        Request::DiskReplace { old, new } => {
            let old = store_disk_name(store, old)?;
            store
                .replace_disk(&old, new)
                .with_context(|| format!("cannot replace disk {}", old.display()))?;
            Ok(json!({
                "action": "replace",
                "disk": old.display().to_string(),
                "new": new.display().to_string(),
                "store": store.path().display().to_string(),
                "moved": 0,
            }))
        }
        Request::Du {
            prefix,
            depth,
            top,
            verify,
        } => crate::insights::execute(store, prefix, *depth, *top, *verify),
        Request::Versions { key } => history::versions(store, key),
        Request::Cat(spec) => Ok(history::cat_header(&history::resolve(store, spec)?)),
        Request::SnapshotCreate { name, at_ns } => history::snapshot_create(store, name, *at_ns),
        Request::SnapshotList => {
            let exact = store
                .snapshot_exclusive()
                .context("cannot measure what each snapshot alone holds")?;
            history::snapshot_list(store, Some(exact))
        }
        Request::SnapshotDelete { name } => history::snapshot_delete(store, name),
        Request::RetentionShow { dry_run } => history::retention_show(store, *dry_run),
        Request::RetentionSet(change) => history::retention_set(store, change),
        Request::Tier(t) => crate::tiering::execute(store, t, on_progress),
        Request::MountAt { .. } => {
            bail!("only the process that mounts the store serves another mount of it")
        }
        Request::WritebackRetry => bail!(crate::writeback::NOT_A_BUCKET),
    }
}

/// The daemon names the commands use (`place` is the placement daemon).
fn daemon_name(name: &str) -> Result<&'static str> {
    Ok(match name {
        "place" | "placement" => "placement",
        "scrub" => "scrub",
        "gc" => "gc",
        "lifecycle" => "lifecycle",
        other => bail!("no daemon called {other:?} (there are placement, scrub, gc and lifecycle)"),
    })
}

/// The store names its disks as they were given at init: accept a path as the store names it,
/// or else its absolute form.
fn store_disk_name(store: &LocalStore, dir: &Path) -> Result<PathBuf> {
    let st = store.status()?;
    if st.disks.iter().any(|d| d.path == dir) {
        return Ok(dir.to_path_buf());
    }
    crate::platform::absolute(dir)
}

/// `place|scrub|gc --now`.
fn run_job(
    store: &LocalStore,
    name: &'static str,
    (gc, scrub): (Option<&GcSettings>, Option<&ScrubSettings>),
    on_progress: &mut dyn FnMut(&JobProgress) -> bool,
) -> Result<Value> {
    let before = store.status()?;
    let started_at = crate::render::now_ns();
    let mut cb = |p: &Progress| match job_progress(name, p) {
        Some(jp) => on_progress(&jp),
        None => true,
    };
    let (progress, finished) = match name {
        "placement" => {
            if before.ec.is_none() {
                return Ok(json!({
                    "job": name,
                    "finished": true,
                    "nothing_to_do": "this store has no erasure coding configured (replicas only)",
                    "progress": Value::Null,
                    "run": Value::Null,
                    "volumes": before.volumes,
                    "placed_volumes": before.placed_volumes,
                    "volume_bytes_before": before.volume_bytes,
                    "volume_bytes_after": before.volume_bytes,
                }));
            }
            store.place_now_until(&mut cb)?
        }
        "scrub" => match scrub {
            Some(s) => {
                let remote = objfs_store::local::tier::scrub::RemoteScrub {
                    full: s.full,
                    sample: s.sample,
                    bandwidth: s.bandwidth,
                };
                store.scrub_now_remote_until(remote, &mut cb)?
            }
            None => store.scrub_now_until(&mut cb)?,
        },
        "lifecycle" => store.lifecycle_now_until(&mut cb)?,
        _ => {
            let d = GcOptions::default();
            let opts = match gc {
                Some(s) => GcOptions {
                    delay: Duration::from_secs(s.delay_secs),
                    upload_ttl: Duration::from_secs(s.upload_ttl_secs),
                    garbage_ratio: s.garbage_ratio,
                    ..d
                },
                None => d,
            };
            let out = store.gc_now_until(opts, &mut cb)?;
            crate::restore_jobs::prune_expired(store)?;
            out
        }
    };
    let after = store.status()?;
    // The run this request made: the one in progress if it was stopped, else the last one if
    // it finished just now (none when there was nothing to do).
    let run = match (&progress.current, &progress.last) {
        (Some(cur), _) if !finished => Some(cur.clone()),
        (_, Some(last)) if last.finished >= started_at => Some(last.clone()),
        _ => None,
    };
    Ok(json!({
        "job": name,
        "finished": finished,
        "nothing_to_do": Value::Null,
        "run": to_value(&run)?,
        "progress": to_value(&progress)?,
        "volumes": after.volumes,
        "placed_volumes": after.placed_volumes,
        "volume_bytes_before": before.volume_bytes,
        "volume_bytes_after": after.volume_bytes,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_as_documented() {
        let line = r#"{"version":1,"request":{"op":"daemon","name":"scrub","action":"pause"}}"#;
        let e: Envelope = serde_json::from_str(line).unwrap();
        assert_eq!(
            e.request,
            Request::Daemon {
                name: "scrub".into(),
                action: DaemonAction::Pause
            }
        );
        let r: Envelope =
            serde_json::from_str(r#"{"version":1,"request":{"op":"status"}}"#).unwrap();
        assert_eq!(r.request, Request::Status);
        let reply = serde_json::to_string(&Reply::Error("x".into())).unwrap();
        assert_eq!(reply, r#"{"error":"x"}"#);
        assert!(daemon_name("frob").is_err());
        assert_eq!(daemon_name("place").unwrap(), "placement");
    }
}
