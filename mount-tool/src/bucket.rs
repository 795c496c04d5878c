//! Commands on a bucket (`s3://BUCKET[/PREFIX]`): what a bucket answers, mounted or not.
//!
//! A bucket has no store directory and no local daemons, but its history is reached over the
//! same [`ObjectStore`] trait as a local store's: [`execute`] runs the history requests
//! (versions, cat, named snapshots, retention, restore, and `gc --now` as one retention pass:
//! `objfs_store::history::expire`) on an open bucket, in the command when the bucket is not
//! mounted ([`Bucket`]) and in the mount process when it is ([`Control`], its control socket);
//! the answer is the same JSON either way. Every such request needs a versioned bucket: on
//! one without versioning it says so, and `objfs versioning enable` (or `objfs mount
//! --enable-versioning`) turns it on where the server allows it. Requests that need a local
//! store (disks, scrub, placement, daemons) say that they work on local stores only.
//!
//! The named snapshots, the retention policy and the restore jobs are store records, kept in
//! the bucket under `PREFIX/.objfs/records/` (objfs-store's `s3::records`), so every machine
//! that reaches the bucket sees the same ones.

use std::io::{BufRead, BufReader};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::{Arc, Weak};

use anyhow::{anyhow, Result};
use clap::{Args, Subcommand};
use objfs_fs::ObjFs;
use objfs_store::local::worker::RunReport;
use objfs_store::s3::{set_versioning, S3Config, S3Store};
use objfs_store::ObjectStore;
use serde_json::{json, Value};
use tracing::{info, warn};

use crate::cli::S3Args;
use crate::history::{self, CatSpec};
use crate::location::StoreLocation;
use crate::ops::{Envelope, JobProgress, Reply, Request, PROTOCOL_VERSION};
use crate::options::S3Settings;
use crate::progress::Feedback;
use crate::{runtime, s3mount, server};

pub const VERSIONING_EXAMPLES: &str = "\
Examples:
  objfs versioning enable s3://bucket --endpoint http://127.0.0.1:9000
  objfs versioning show s3://bucket --endpoint http://127.0.0.1:9000
  objfs versioning suspend s3://bucket                 on AWS: new writes keep no versions
  objfs mount --enable-versioning s3://bucket ~/b      turn it on, then mount

History (versions, cat, .snapshots/, named snapshots, retention, restore) needs a bucket that
keeps versions. `enable` asks the server (PutBucketVersioning) and checks that the bucket now
reports versioning on; a server without versioning (Garage) refuses and the command says so.
Suspending keeps the versions made so far. A mount of the bucket sees the change when it is
mounted again.";

/// `objfs versioning`.
#[derive(Debug, Args)]
pub struct VersioningArgs {
    #[command(subcommand)]
    pub action: VersioningAction,
    #[command(flatten)]
    pub s3: S3Args,
}

#[derive(Debug, Subcommand)]
pub enum VersioningAction {
    /// Turn the bucket's versioning on (where the server allows it).
    Enable {
        /// s3://BUCKET[/PREFIX] (versioning is the whole bucket's).
        store: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Suspend it: new writes replace the current version; versions made so far stay.
    Suspend {
        store: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Whether the bucket keeps versions.
    Show {
        store: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

/// A bucket a command reaches itself (not mounted on this machine).
pub struct Bucket {
    /// The location with its endpoint (what the runtime registry is keyed by).
    pub loc: StoreLocation,
    pub cfg: S3Config,
}

impl Bucket {
    /// The bucket `loc` reached as `s` says.
    pub fn new(loc: StoreLocation, s: &S3Settings) -> Result<Bucket> {
        let cfg = s3mount::config(&loc, s)?;
        let loc = loc.with_endpoint(cfg.endpoint.clone());
        Ok(Bucket { loc, cfg })
    }

    /// Opens it (a clear error when it cannot be reached).
    pub fn open(&self) -> Result<S3Store> {
        s3mount::open(&self.loc, self.cfg.clone())
    }

    /// Executes `req` on the bucket, here; a restore's report lines go to `on_lines` as the
    /// job makes them.
    pub fn execute_lines(
        &self,
        req: &Request,
        feedback: &mut Feedback,
        on_lines: &mut dyn FnMut(&[Value]),
    ) -> Result<Value> {
        // What a bucket never serves is said without reaching it.
        if matches!(req, Request::Du { .. }) {
            return Err(no_du(&self.loc.to_string()));
        }
        if matches!(req, Request::WritebackRetry) {
            anyhow::bail!(
                "{} is not mounted here: a write-back journal is uploaded (its refused changes \
                 tried again) when the bucket is mounted with it",
                self.loc
            );
        }
        if !matches!(req, Request::Status | Request::MountAt { .. }) && !is_history(req) {
            return Err(local_only(&self.loc.to_string()));
        }
        let store = self.open()?;
        if let Request::Restore(r) = req {
            check_versioned(&store, &self.loc.to_string())?;
            return crate::restore::execute_streaming(
                &store,
                r,
                &mut |p| {
                    feedback.update(p);
                    true
                },
                &mut |_| {},
                on_lines,
            );
        }
        let status = s3mount::status_json(&self.cfg, &store, None);
        execute(
            &store,
            &status,
            req,
            &mut |p| {
                feedback.update(p);
                true
            },
            &mut |_| {},
        )
    }

    /// `cat`: writes the version `spec` names to `out`.
    pub fn cat(&self, spec: &CatSpec, out: &mut dyn std::io::Write) -> Result<Value> {
        let store = self.open()?;
        check_versioned(&store, &self.loc.to_string())?;
        let info = history::resolve(&store, spec)?;
        history::write_version(&store, &info, out)?;
        Ok(history::cat_header(&info))
    }
}

/// The error of a history request on a bucket that keeps no versions.
fn no_versions(location: &str) -> anyhow::Error {
    anyhow!(
        "{location} keeps no versions (its versioning is off): there is no history to show, \
         snapshot or restore; turn it on with `objfs versioning enable` where the server allows \
         it (Garage has no versioning)"
    )
}

fn check_versioned(store: &dyn ObjectStore, location: &str) -> Result<()> {
    if store.features().versioning {
        Ok(())
    } else {
        Err(no_versions(location))
    }
}

/// Whether `req` reads or changes a bucket's history (it needs versioning).
fn is_history(req: &Request) -> bool {
    matches!(req, Request::Run { name, .. } if name == "gc")
        || matches!(
            req,
            Request::Versions { .. }
                | Request::Cat(_)
                | Request::SnapshotCreate { .. }
                | Request::SnapshotList
                | Request::SnapshotDelete { .. }
                | Request::RetentionShow { .. }
                | Request::RetentionSet(_)
                | Request::Restore(_)
        )
}

/// `du` of a bucket: not available (docs/OPERATIONS.md says why).
fn no_du(location: &str) -> anyhow::Error {
    anyhow!(
        "du is not available for {location}: its figures come from the per-prefix rollups a \
         local store maintains as it writes, and a bucket has none (a scan of the bucket's \
         version listing would cost one request per 1,000 versions)"
    )
}

/// The error for a request a bucket does not serve (disks, scrub, placement: local stores').
fn local_only(location: &str) -> anyhow::Error {
    anyhow!(
        "{location} is an S3 bucket: this command works on local stores only (a bucket \
         answers status, versions, cat, snapshot, retention, restore, gc --now and \
         versioning)"
    )
}

/// Executes `req` on the open bucket `store` whose status is `status` (what `objfs status`
/// shows of it). `on_progress` hears long jobs (restore, the retention pass) and stops them
/// by returning false; `on_changed` hears the keys a restore changed.
pub fn execute(
    store: &dyn ObjectStore,
    status: &Value,
    req: &Request,
    on_progress: &mut dyn FnMut(&JobProgress) -> bool,
    on_changed: &mut dyn FnMut(&[String]),
) -> Result<Value> {
    let location = status["s3"]["location"].as_str().unwrap_or("this bucket");
    let gc = matches!(req, Request::Run { name, .. } if name == "gc");
    if is_history(req) {
        check_versioned(store, location)?;
    }
    match req {
        Request::Status => Ok(status.clone()),
        Request::Versions { key } => history::versions(store, key),
        Request::Cat(spec) => Ok(history::cat_header(&history::resolve(store, spec)?)),
        Request::SnapshotCreate { name, at_ns } => history::snapshot_create(store, name, *at_ns),
        Request::SnapshotList => history::snapshot_list(store, None),
        Request::SnapshotDelete { name } => history::snapshot_delete(store, name),
        Request::RetentionShow { dry_run } => history::retention_show(store, *dry_run),
        Request::RetentionSet(change) => history::retention_set(store, change),
        Request::Restore(r) => crate::restore::execute(store, r, on_progress, on_changed),
        Request::Run { .. } if gc => {
            crate::restore_jobs::prune_expired(store)?;
            let mut run = RunReport::start(0, 0);
            history::retention_pass(store, &mut |r| {
                run.items_done = r.versions;
                on_progress(&JobProgress {
                    job: "gc".into(),
                    note: format!(
                        "retention pass: {} keys, {} versions, {} expired",
                        r.keys, r.versions, r.expired
                    ),
                    run: run.clone(),
                })
            })
        }
        Request::MountAt { .. } => Err(anyhow!(
            "a mount of a bucket's past is a process of its own: `objfs mount s3://... MNT --at \
             TIME` (a live mount's .snapshots/@TIME/ shows it too)"
        )),
        Request::Du { .. } => Err(no_du(location)),
        _ => Err(local_only(location)),
    }
}

/// Turns the versioning of the bucket of `cfg` on or off (suspended), then checks that the
/// bucket reports what was asked. A server that refuses, or that accepts and keeps no
/// versions, is a clear error.
pub fn set_bucket_versioning(loc: &StoreLocation, cfg: &S3Config, enabled: bool) -> Result<()> {
    let what = if enabled { "turn on" } else { "suspend" };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(set_versioning(cfg, enabled)).map_err(|e| {
        anyhow!(
            "{loc}: the server refused to {what} versioning: {e}{}",
            if enabled {
                " (this server may have no bucket versioning: Garage has none; the bucket \
                 works as a plain filesystem without history)"
            } else {
                ""
            }
        )
    })?;
    drop(rt);
    let now = s3mount::open(loc, cfg.clone())?.features().versioning;
    if now != enabled {
        return Err(anyhow!(
            "{loc}: the server accepted the request to {what} versioning but the bucket still \
             reports it {}",
            if now { "on" } else { "off" }
        ));
    }
    Ok(())
}

/// `objfs versioning`.
pub fn versioning(a: &VersioningArgs) -> Result<()> {
    let (store, json, set) = match &a.action {
        VersioningAction::Enable { store, json } => (store, *json, Some(true)),
        VersioningAction::Suspend { store, json } => (store, *json, Some(false)),
        VersioningAction::Show { store, json } => (store, *json, None),
    };
    let loc = StoreLocation::parse(store)?;
    if !matches!(loc, StoreLocation::S3 { .. }) {
        return Err(crate::usage(format!(
            "{loc}: versioning is a bucket's (give s3://BUCKET); a local store always keeps \
             versions"
        )));
    }
    let b = Bucket::new(loc, &a.s3.settings())?;
    if let Some(enabled) = set {
        set_bucket_versioning(&b.loc, &b.cfg, enabled)?;
    }
    let versioning = b.open()?.features().versioning;
    let mounted = runtime::lookup_store(&b.loc);
    if json {
        println!(
            "{}",
            json!({
                "location": b.loc.to_string(),
                "versioning": versioning,
                "mounted_at": mounted.as_ref().map(|m| m.record.mountpoint.display().to_string()),
            })
        );
        return Ok(());
    }
    println!(
        "{}: versioning {}",
        b.loc,
        if versioning { "on" } else { "off" }
    );
    if let (Some(m), Some(_)) = (&mounted, set) {
        println!(
            "its mount at {} sees the change when it is mounted again",
            m.record.mountpoint.display()
        );
    }
    Ok(())
}

/// The control socket of an s3 mount: `status`, and on a versioned bucket every history
/// request ([`execute`]); `cat` streams its bytes. A thread per connection; what a request
/// changed behind the kernel's back is invalidated in the mount.
pub struct Control {
    pub store: Weak<dyn ObjectStore>,
    pub status: Value,
    pub fs: Weak<ObjFs>,
    /// The mount's disk cache (shown live by `status`).
    pub cache: crate::disk_cache::CacheState,
    /// The mount's write-back journal (shown live by `status`; `None`: write-through).
    pub writeback: Option<Arc<objfs_store::writeback::WriteBack>>,
    /// The mount's prefetch decorator (shown live by `status`; `None`: prefetch off).
    pub prefetch: Option<Arc<objfs_store::prefetch::Prefetch>>,
}

impl Control {
    /// Serves `listener` until the process ends.
    pub fn serve(self, listener: UnixListener) {
        let this = Arc::new(self);
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            if !server::peer_allowed(&conn) {
                continue;
            }
            let me = this.clone();
            let spawned = std::thread::Builder::new()
                .name("objfs-control-conn".into())
                .spawn(move || {
                    if let Err(e) = me.connection(conn) {
                        info!("control connection ended: {e}");
                    }
                });
            if let Err(e) = spawned {
                warn!("control socket: cannot start a thread: {e}");
            }
        }
    }

    fn connection(&self, conn: UnixStream) -> std::io::Result<()> {
        let mut writer = conn.try_clone()?;
        let mut line = String::new();
        BufReader::new(conn).read_line(&mut line)?;
        if line.trim().is_empty() {
            return Ok(());
        }
        let env = match serde_json::from_str::<Envelope>(line.trim()) {
            Err(e) => return server::send(&mut writer, &Reply::Error(format!("bad request: {e}"))),
            Ok(env) => env,
        };
        if env.version != PROTOCOL_VERSION {
            let msg = format!(
                "this mount speaks control protocol {PROTOCOL_VERSION}, the command {}",
                env.version
            );
            return server::send(&mut writer, &Reply::Error(msg));
        }
        info!(request = ?env.request, "control request");
        let Some(store) = self.store.upgrade() else {
            let msg = "the store is being unmounted".to_string();
            return server::send(&mut writer, &Reply::Error(msg));
        };
        let location = self.status["s3"]["location"].as_str().unwrap_or("");
        if let Request::Cat(spec) = &env.request {
            if let Err(e) = check_versioned(store.as_ref(), location) {
                return server::send(&mut writer, &Reply::Error(format!("{e:#}")));
            }
            return server::serve_cat(&mut writer, store.as_ref(), spec);
        }
        let mut lines = server::ProgressLines::new(writer.try_clone()?);
        let fs = self.fs.clone();
        let mut status = self.status.clone();
        status["cache"] = self.cache.json();
        status["writeback"] = crate::writeback::json(self.writeback.as_deref());
        status["prefetch"] = crate::prefetch::json(self.prefetch.as_deref());
        let mut on_changed = |keys: &[String]| {
            if let Some(fs) = fs.upgrade() {
                fs.invalidate_keys(keys);
            }
        };
        let result = match &env.request {
            Request::WritebackRetry => crate::writeback::retry(self.writeback.as_deref()),
            // The report's lines go out as they come (the client goes away: the next
            // progress line fails, which stops the job).
            Request::Restore(r) => {
                let mut report_writer = writer.try_clone()?;
                check_versioned(store.as_ref(), location).and_then(|()| {
                    crate::restore::execute_streaming(
                        store.as_ref(),
                        r,
                        &mut |p| lines.send(p),
                        &mut on_changed,
                        &mut |l| {
                            let _ = server::send(&mut report_writer, &Reply::Lines(l.to_vec()));
                        },
                    )
                })
            }
            req => execute(
                store.as_ref(),
                &status,
                req,
                &mut |p| lines.send(p),
                &mut on_changed,
            ),
        };
        drop(store);
        if let Some(fs) = self.fs.upgrade() {
            server::apply_invalidation(&fs, &env.request.invalidation());
        }
        match result {
            Ok(v) => server::send(&mut writer, &Reply::Done(v)),
            Err(e) => server::send(&mut writer, &Reply::Error(format!("{e:#}"))),
        }
    }
}
