//! Write-back of an s3 mount (DESIGN.md, "Remote write-back"): where its journal lives, putting
//! the decorator over the bucket, waiting for the journal to drain at unmount, and what
//! `objfs status` shows of it.
//!
//! By default an s3 mount acknowledges a closed file once it is in the journal and uploads it
//! in the background (objfs_store::writeback). The journal is `--journal-dir DIR` (`-o
//! journal_dir=`), else `CACHE_DIR/writeback` with `--cache-dir`, else
//! `$XDG_CACHE_HOME/objfs/writeback/KEY` (`~/.cache/...` without XDG_CACHE_HOME), KEY naming
//! the bucket, prefix and endpoint as the runtime directory does. `--write-through` (`-o
//! write_through`) turns it off: a close returns once the bucket has the file.
//!
//! An upload the bucket refuses for good (403, a missing bucket, a request it calls invalid)
//! stays in the journal, shown by `status` as failed (also after a remount: the journal records
//! the refusal); `objfs writeback retry MNT` tries it again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use objfs_store::writeback::{Summary, WriteBack, WriteBackConfig};
use objfs_store::ObjectStore;
use serde_json::{json, Value};
use tracing::{info, warn};

use crate::cli::S3Args;
use crate::location::StoreLocation;
use crate::ops::Request;
use crate::options::MountSettings;
use crate::progress::Feedback;

/// How long an unmount waits for the journal to drain before it leaves the rest for the next
/// mount.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(300);

/// The journal directory of a mount of `loc` (`None`: write-through).
pub fn journal_dir(settings: &MountSettings, loc: &StoreLocation) -> Result<Option<PathBuf>> {
    if settings.s3.write_through {
        return Ok(None);
    }
    if let Some(d) = &settings.s3.journal_dir {
        return Ok(Some(crate::platform::absolute(d)?));
    }
    if let Some(d) = &settings.cache_dir {
        return Ok(Some(crate::platform::absolute(d)?.join("writeback")));
    }
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(x) => PathBuf::from(x),
        None => {
            let home = std::env::var_os("HOME").context(
                "neither XDG_CACHE_HOME nor HOME is set: give the write-back journal a \
                 directory with --journal-dir, or mount with --write-through",
            )?;
            PathBuf::from(home).join(".cache")
        }
    };
    let key = crate::runtime::key(loc);
    Ok(Some(base.join("objfs").join("writeback").join(key)))
}

/// The store the mount serves, and the decorator in it (`None`: write-through).
pub type Wrapped = (Arc<dyn ObjectStore>, Option<Arc<WriteBack>>);

/// Puts the write-back decorator over `store` when `dir` is given (its journal replayed);
/// the bucket's answers are reused for `metadata_ttl` for names and attributes, and for
/// `attr_ttl` (the window in which the kernel reuses attributes and names) for opens.
pub fn wrap(
    store: Arc<dyn ObjectStore>,
    dir: Option<PathBuf>,
    metadata_ttl: Duration,
    attr_ttl: Duration,
    upload_delay: Duration,
) -> Result<Wrapped> {
    let Some(dir) = dir else {
        return Ok((store, None));
    };
    let mut cfg = WriteBackConfig::new(&dir);
    cfg.answer_ttl = metadata_ttl;
    cfg.open_ttl = attr_ttl;
    cfg.upload_delay = upload_delay;
    let wb = WriteBack::open(store, cfg)
        .with_context(|| format!("cannot open the write-back journal {}", dir.display()))?;
    let wb = Arc::new(wb);
    let s = wb.summary();
    info!(
        journal = %dir.display(),
        pending = s.changes,
        bytes = s.bytes,
        "write-back on"
    );
    Ok((wb.clone(), Some(wb)))
}

/// After the unmount: waits for the uploads (logging progress), at most [`DRAIN_TIMEOUT`].
pub fn drain(wb: &WriteBack) {
    let s = wb.summary();
    if s.changes == 0 {
        wb.seal_journal();
        return;
    }
    info!(
        pending = s.changes,
        bytes = s.bytes,
        "unmounted: uploading what the write-back journal holds"
    );
    let done = wb.wait_drained(DRAIN_TIMEOUT, |s| {
        info!(
            pending = s.changes,
            bytes = s.bytes,
            failing = s.failing.as_deref().unwrap_or(""),
            "uploading"
        )
    });
    let s = wb.summary();
    if done {
        info!("write-back journal drained");
    } else if s.settled() {
        for f in &s.failed {
            warn!(key = %f.key, "the bucket refused this upload: {}", f.error);
        }
        warn!(
            failed = s.failed.len(),
            pending = s.changes,
            journal = %wb.journal_dir().display(),
            "uploads the bucket refused stay in the journal, failed (also at the next mount): \
             fix the cause, then `objfs writeback retry`"
        );
    } else {
        warn!(
            pending = s.changes,
            bytes = s.bytes,
            journal = %wb.journal_dir().display(),
            "the journal did not drain in {} s: it stays and is uploaded at the next mount",
            DRAIN_TIMEOUT.as_secs()
        );
    }
}

/// What `status` shows of the write-back of a mount (`None`: write-through).
pub fn json(wb: Option<&WriteBack>) -> Value {
    let Some(wb) = wb else {
        return json!({ "enabled": false });
    };
    let s: Summary = wb.summary();
    let age = s
        .oldest
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .map(|d| d.as_secs_f64());
    let failed: Vec<Value> = s
        .failed
        .iter()
        .take(FAILED_SHOWN)
        .map(|f| {
            json!({
                "key": f.key,
                "entry": format!("{:016x}", f.seq),
                "error": f.error,
                "since_s": SystemTime::now().duration_since(f.since).ok().map(|d| d.as_secs_f64()),
            })
        })
        .collect();
    let a = wb.answers();
    json!({
        "enabled": true,
        "metadata_ttl_s": a.ttl.as_secs_f64(),
        "open_ttl_s": a.open_ttl.as_secs_f64(),
        "upload_delay_s": wb.upload_delay().as_secs_f64(),
        "answers": {
            "heads": a.heads,
            "dirs": a.dirs,
            "names": a.names,
            "answered": a.answered,
        },
        "journal": wb.journal_dir().display().to_string(),
        "pending": s.changes,
        "pending_bytes": s.bytes,
        "oldest_age_s": age,
        "failing": s.failing,
        "failed_count": s.failed.len(),
        "failed": failed,
        "blocked": s.blocked,
    })
}

/// The text of [`json`] (`Null`: not mounted).
pub fn status_text(v: &Value) -> String {
    if v.is_null() {
        return String::new();
    }
    if v["enabled"].as_bool() != Some(true) {
        return "write-back:   off (--write-through: a close waits for the upload)\n".into();
    }
    let mut out = format!(
        "write-back:   journal {}\n  pending:    {} changes, {} bytes",
        v["journal"].as_str().unwrap_or("?"),
        v["pending"].as_u64().unwrap_or(0),
        v["pending_bytes"].as_u64().unwrap_or(0),
    );
    if let Some(a) = v["oldest_age_s"].as_f64() {
        out.push_str(&format!(", oldest {a:.1} s ago"));
    }
    if let Some(d) = v["upload_delay_s"].as_f64().filter(|d| *d > 0.0) {
        out.push_str(&format!("; uploaded {d} s after the close"));
    }
    out.push('\n');
    let a = &v["answers"];
    out.push_str(&format!(
        "  answers:    kept {} s for names and attributes, {} s for opens; {} HEADs, {} \
         directory listings ({} names) kept; {} questions answered from them\n",
        v["metadata_ttl_s"].as_f64().unwrap_or(0.0),
        v["open_ttl_s"].as_f64().unwrap_or(0.0),
        a["heads"].as_u64().unwrap_or(0),
        a["dirs"].as_u64().unwrap_or(0),
        a["names"].as_u64().unwrap_or(0),
        a["answered"].as_u64().unwrap_or(0),
    ));
    if let Some(f) = v["failing"].as_str() {
        out.push_str(&format!("  failing:    {f} (retrying)\n"));
    }
    let n = v["failed_count"].as_u64().unwrap_or(0);
    if n > 0 {
        out.push_str(&format!(
            "  FAILED:     {n} upload(s) refused by the bucket, kept in the journal ({} change(s) \
             wait behind them); fix the cause, then `objfs writeback retry`\n",
            v["blocked"].as_u64().unwrap_or(0)
        ));
        for f in v["failed"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "    {} ({}): {}\n",
                f["key"].as_str().unwrap_or("?"),
                f["entry"]
                    .as_str()
                    .map(|e| format!("journal entry {e}"))
                    .unwrap_or_default(),
                f["error"].as_str().unwrap_or("?")
            ));
        }
        if n > FAILED_SHOWN as u64 {
            out.push_str(&format!("    ... and {} more\n", n - FAILED_SHOWN as u64));
        }
    }
    out
}

/// Failed uploads `status` lists one by one (the count is always whole).
const FAILED_SHOWN: usize = 20;

/// Why `writeback retry` does not apply to a local store.
pub const NOT_A_BUCKET: &str =
    "a local store has no write-back journal (only mounts of s3:// buckets do)";

pub const WRITEBACK_EXAMPLES: &str = "\
Examples:
  objfs status /mnt/b              # FAILED: uploads the bucket refused (403, missing bucket)
  objfs writeback retry /mnt/b     # after fixing the cause: try them again now
  objfs writeback retry s3://b --endpoint http://127.0.0.1:3900

A refused upload stays in the journal (nothing acknowledged is dropped) and holds back the
later changes of its file; it stays failed at the next mount of the bucket too (the journal
records the refusal), until `objfs writeback retry`.";

/// `objfs writeback`.
#[derive(Debug, Args)]
pub struct WritebackArgs {
    #[command(subcommand)]
    pub action: WritebackAction,
}

#[derive(Debug, Subcommand)]
pub enum WritebackAction {
    /// Try the uploads the bucket refused (shown as FAILED by `objfs status`) again now.
    Retry {
        /// The mount point, or the s3:// location of a mounted bucket.
        store: PathBuf,
        #[command(flatten)]
        s3: S3Args,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `objfs writeback retry`: asks the mount process.
pub fn command(a: &WritebackArgs) -> Result<()> {
    let WritebackAction::Retry { store, s3, json } = &a.action;
    let target = crate::target::resolve_with(Path::new(store), s3)?;
    let v = target.execute(&Request::WritebackRetry, &mut Feedback::new(true))?;
    if *json {
        println!("{v}");
    } else {
        println!(
            "{} refused upload(s) queued again; `objfs status` shows whether they went through",
            v["retried"].as_u64().unwrap_or(0)
        );
    }
    Ok(())
}

/// The mount process's side of `writeback retry`.
pub fn retry(wb: Option<&WriteBack>) -> Result<Value> {
    let Some(wb) = wb else {
        bail!("this mount writes through (--write-through): it has no write-back journal");
    };
    Ok(json!({ "retried": wb.retry_failed() }))
}
