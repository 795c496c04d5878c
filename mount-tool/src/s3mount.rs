//! Mounting an `s3://BUCKET[/PREFIX]` store, and `objfs status` of one.
//!
//! A bucket has no directory of its own on this machine, so this is apart from mount.rs's
//! local mounts, which own a sled store, its daemons and its log: here the mount process opens
//! an [`S3Store`] (credentials the standard AWS way, never from argv), mounts it with the same
//! filesystem and options, registers in the runtime directory under the location *and*
//! endpoint (so `status` and `umount` find it), and serves its control socket (bucket.rs:
//! status, and the history of a versioned bucket). `--enable-versioning` turns the bucket's
//! versioning on first. A daemon logs to `RUNTIME_DIR/KEY.log` by default. With `--cache-dir`,
//! the mount process opens a disk cache of object data (disk_cache.rs), and `status` shows it.
//! Unless `--write-through`, closed files go through a write-back journal (writeback.rs),
//! drained before the process ends.
//!
//! The bucket is opened in the mount process (after the fork, like a local store), so what
//! goes wrong there — a missing bucket, refused credentials, an endpoint that does not answer —
//! is reported to the command that started it and makes it fail (exit status 1).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use objfs_store::s3::{S3Config, S3Store, S3_MIN_PART_SIZE};
use objfs_store::{ObjectStore, StoreError};
use serde_json::{json, Value};
use tracing::info;

use crate::daemon::Notifier;
use crate::disk_cache::{self, CacheRequest, CacheState};
use crate::location::StoreLocation;
use crate::logging::{self, RotatingFile};
use crate::mount::{self, MountRequest};
use crate::ops::Request;
use crate::options::S3Settings;
use crate::platform;
use crate::runtime::{self, Record};

/// The backend's configuration of `loc` with `s`.
pub fn config(loc: &StoreLocation, s: &S3Settings) -> Result<S3Config> {
    let StoreLocation::S3 { bucket, prefix, .. } = loc else {
        bail!("{loc} is not an s3 location");
    };
    let mut cfg = S3Config::from_url(&format!("s3://{bucket}/{prefix}"))
        .map_err(|e| crate::usage(format!("{loc}: {e}")))?;
    cfg.endpoint.clone_from(&s.endpoint);
    cfg.region.clone_from(&s.region);
    cfg.profile.clone_from(&s.profile);
    Ok(cfg)
}

/// Explains a failure to open a bucket the way a user needs it.
fn explain(loc: &StoreLocation, e: StoreError) -> anyhow::Error {
    let hint = match &e {
        StoreError::NoSuchBucket(_) => {
            "the bucket does not exist: create it with your S3 tools (or check the name and \
             --endpoint)"
        }
        StoreError::PermissionDenied(_) => {
            "the credentials were refused: check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, \
             AWS_PROFILE or --profile, and the bucket's policy"
        }
        StoreError::Unavailable { .. } => {
            "the endpoint does not answer: check --endpoint and that the server is running"
        }
        _ => "",
    };
    let e = anyhow::Error::new(e);
    if hint.is_empty() {
        e.context(format!("cannot open {loc}"))
    } else {
        e.context(format!("cannot open {loc}: {hint}"))
    }
}

/// Opens the bucket (on a runtime of its own, dropped once it is open: the mount's runtime
/// makes every later request).
pub fn open(loc: &StoreLocation, cfg: S3Config) -> Result<S3Store> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a runtime")?;
    rt.block_on(S3Store::open(cfg)).map_err(|e| explain(loc, e))
}

/// What `objfs status` shows of an s3 store: where it is and what it can do.
pub fn status_json(cfg: &S3Config, store: &S3Store, record: Option<&Record>) -> Value {
    let f = store.features();
    json!({
        "s3": {
            "location": store.describe(),
            "endpoint": cfg.endpoint.as_deref().unwrap_or("AWS"),
            "bucket": cfg.bucket,
            "prefix": cfg.prefix,
            "versioning": f.versioning,
            "conditional_put": f.conditional_put,
            "part_size": cfg.part_size.max(S3_MIN_PART_SIZE),
            "max_key_len": f.max_key_len,
        },
        "mount": crate::ops::mount_json(record),
        // Filled in by the mount process (disk_cache.rs): its disk cache, live.
        "cache": Value::Null,
        // Filled in by the mount process (writeback.rs): its write-back journal, live.
        "writeback": Value::Null,
        // Filled in by the mount process (prefetch.rs): its prefetch counters, live.
        "prefetch": Value::Null,
    })
}

/// `objfs status s3://...`: from the mount process when mounted, from the bucket otherwise.
pub fn status(loc: StoreLocation, s: &S3Settings) -> Result<Value> {
    let cfg = config(&loc, s)?;
    let loc = loc.with_endpoint(cfg.endpoint.clone());
    if let Some(m) = runtime::lookup_store(&loc) {
        return crate::client::call(&m, &Request::Status, &mut |_| {});
    }
    let store = open(&loc, cfg.clone())?;
    Ok(status_json(&cfg, &store, None))
}

/// The text of an s3 status (`v` from [`status_json`]).
pub fn status_text(v: &Value) -> String {
    let s = &v["s3"];
    let yes = |b: &Value| {
        if b.as_bool() == Some(true) {
            "yes"
        } else {
            "no"
        }
    };
    let mut out = format!(
        "store:        {}\nendpoint:     {}\nbucket:       {}\nprefix:       {}\n\
         versioning:   {}{}\nconditional writes: {}\npart size:    {} bytes\nmax key:      {} bytes\n",
        s["location"].as_str().unwrap_or("?"),
        s["endpoint"].as_str().unwrap_or("?"),
        s["bucket"].as_str().unwrap_or("?"),
        s["prefix"].as_str().filter(|p| !p.is_empty()).unwrap_or("(none)"),
        yes(&s["versioning"]),
        if s["versioning"].as_bool() == Some(true) {
            ""
        } else {
            " (this bucket keeps no versions: no history, snapshots or restore; \
             `objfs versioning enable` turns it on where the server allows it)"
        },
        yes(&s["conditional_put"]),
        s["part_size"],
        s["max_key_len"],
    );
    match v["mount"].as_object() {
        Some(m) => out.push_str(&format!(
            "mounted at:   {} (pid {}{})\n",
            m.get("mountpoint").and_then(Value::as_str).unwrap_or("?"),
            m.get("pid").and_then(Value::as_u64).unwrap_or(0),
            if m.get("read_only").and_then(Value::as_bool) == Some(true) {
                ", read-only"
            } else {
                ""
            }
        )),
        None => out.push_str("mounted:      no\n"),
    }
    out.push_str(&disk_cache::status_text(
        &v["cache"],
        v["mount"].is_object(),
    ));
    out.push_str(&crate::writeback::status_text(&v["writeback"]));
    out.push_str(&crate::prefetch::status_text(&v["prefetch"]));
    out
}

/// The default log of a daemonised mount of `loc`: in the runtime directory.
fn default_log(loc: &StoreLocation) -> PathBuf {
    runtime::runtime_dir().join(format!("{}.log", runtime::key(loc)))
}

/// `objfs mount s3://...` (and `mount.objfs`): checks, forks, opens the bucket, mounts,
/// serves until unmounted.
pub fn run(req: MountRequest, loc: StoreLocation) -> Result<()> {
    if req.init {
        return Err(crate::usage(
            "--init creates a local store; an s3 store is a bucket: create it with your S3 tools",
        ));
    }
    let s3 = config(&loc, &req.settings.s3)?;
    let loc = loc.with_endpoint(s3.endpoint.clone());
    // A mount of a moment (`--at`) is read-only and served by a process of its own beside
    // a live mount of the bucket, if any: it registers nothing (no control socket).
    if let (None, Some(m)) = (req.at, runtime::lookup_store(&loc)) {
        bail!(
            "{loc} is already mounted at {} (pid {}); unmount it first (`objfs umount {}`)",
            m.record.mountpoint.display(),
            m.record.pid,
            m.record.mountpoint.display()
        );
    }
    let (mountpoint, create_mp) =
        mount::check_mountpoint(&req.mountpoint, req.settings.allow_non_empty)?;
    let mut cfg = req.settings.fs.to_fs_config(&format!("objfs:{loc}"));
    let cache = disk_cache::request(&req.settings, &mut cfg)?;
    let journal = match req.at {
        None => crate::writeback::journal_dir(&req.settings, &loc)?,
        Some(at) => {
            cfg.at = Some(at);
            cfg.read_only = true;
            None
        }
    };
    let log_path = match &req.settings.log_file {
        Some(p) => Some(platform::absolute(p)?),
        None if req.settings.foreground => None,
        None => {
            let p = default_log(&loc);
            if let Some(dir) = p.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            Some(p)
        }
    };
    let log = match &log_path {
        Some(p) => Some(RotatingFile::open(p, logging::MAX_LOG_BYTES)?),
        None => None,
    };
    let mut notifier = mount::detach(&log, req.settings.foreground, req.quiet)?;
    if let (Some(f), false) = (&log, req.settings.foreground) {
        logging::init_file(f.clone());
    }
    mount::termination_signals()
        .thread_block()
        .context("cannot block termination signals")?;
    let served = Served {
        loc: &loc,
        s3,
        mountpoint,
        create_mp,
        log_path,
        req: &req,
        cache,
        journal,
    };
    match served.serve(cfg, &mut notifier) {
        Ok(()) => Ok(()),
        Err(e) => {
            notifier.error(&format!("{e:#}"));
            Err(e)
        }
    }
}

/// A mount of a bucket, after the checks.
struct Served<'a> {
    loc: &'a StoreLocation,
    s3: S3Config,
    mountpoint: PathBuf,
    create_mp: bool,
    log_path: Option<PathBuf>,
    req: &'a MountRequest,
    cache: Option<CacheRequest>,
    /// The write-back journal (`None`: `--write-through`).
    journal: Option<PathBuf>,
}

impl Served<'_> {
    /// How long the bucket's answers are reused for names and attributes.
    fn metadata_ttl(&self) -> std::time::Duration {
        let s3 = &self.req.settings.s3;
        s3.metadata_ttl
            .unwrap_or(crate::options::DEFAULT_METADATA_TTL)
    }

    fn serve(self, mut cfg: objfs_fs::FsConfig, notifier: &mut Notifier) -> Result<()> {
        if self.req.settings.s3.enable_versioning {
            crate::bucket::set_bucket_versioning(self.loc, &self.s3, true)?;
        }
        let store = Arc::new(open(self.loc, self.s3.clone())?);
        if cfg.at.is_some() && !store.features().versioning {
            bail!(
                "{} keeps no versions (its versioning is off): --at needs a versioned bucket \
                 (turn it on with `objfs versioning enable` where the server allows it; only \
                 what is written after that has a past)",
                self.loc
            );
        }
        // Under the write-back decorator, so that its pending changes win over what was
        // prefetched from the bucket. A mount of a moment reads the past: no prefetch.
        let (bucket, prefetch): crate::prefetch::Wrapped = match cfg.at {
            None => {
                crate::prefetch::wrap(store.clone(), &self.req.settings.s3.prefetch, cfg.attr_ttl)
            }
            Some(_) => (store.clone(), None),
        };
        let (dyn_store, writeback) = crate::writeback::wrap(
            bucket,
            self.journal.clone(),
            self.metadata_ttl(),
            cfg.attr_ttl,
            self.req
                .settings
                .s3
                .upload_delay
                .unwrap_or(crate::options::DEFAULT_UPLOAD_DELAY),
        )?;
        let cache = CacheState::open(self.cache.as_ref())?;
        cfg.disk_cache = cache.handle();
        let read_only = cfg.read_only;
        let mp = mount::create_mountpoint(&self.mountpoint, self.create_mp)?;
        let remove_mp = || {
            if self.create_mp {
                let _ = std::fs::remove_dir(&mp);
            }
        };
        let record = Record {
            version: runtime::RECORD_VERSION,
            store: self.loc.to_string(),
            mountpoint: mp.clone(),
            pid: std::process::id(),
            log_file: self.log_path.clone(),
            read_only,
            started: crate::render::now_ns(),
            at: cfg.at.map(crate::history::to_ns),
        };
        let registered = match cfg.at {
            Some(_) => None,
            None => match runtime::register(self.loc, &record) {
                Ok(r) => Some(r),
                Err(e) => {
                    remove_mp();
                    return Err(e);
                }
            },
        };
        let status = status_json(&self.s3, &store, Some(&record));
        // The control thread's reference ends with the process (it never stops accepting).
        let control_store = Arc::downgrade(&dyn_store);
        let handle = match objfs_fs::mount(dyn_store, &mp, cfg)
            .map_err(anyhow::Error::new)
            .with_context(|| format!("cannot mount {}", self.mountpoint.display()))
        {
            Ok(h) => h,
            Err(e) => {
                drop(registered);
                remove_mp();
                return Err(e);
            }
        };
        let (registration, listener) = registered.unzip();
        if let Some(listener) = listener {
            let control = crate::bucket::Control {
                store: control_store,
                status,
                fs: Arc::downgrade(handle.fs()),
                cache,
                writeback: writeback.clone(),
                prefetch,
            };
            std::thread::Builder::new()
                .name("objfs-control".into())
                .spawn(move || control.serve(listener))
                .context("cannot start the control server")?;
        }
        info!(store = %self.loc, mountpoint = %mp.display(), "mounted");
        if self.req.settings.foreground && !self.req.quiet {
            eprintln!(
                "objfs: mounted {} at {} (pid {}); Ctrl-C or `objfs umount {}` to unmount",
                self.loc,
                mp.display(),
                std::process::id(),
                mp.display()
            );
        }
        notifier.ready();
        let result = mount::serve_until_unmounted(handle, &mp)?;
        if let Some(wb) = &writeback {
            crate::writeback::drain(wb);
        }
        // The registration goes (socket and record removed) once the mount has ended.
        drop(registration);
        result
    }
}
