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

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use objfs_store::writeback::{Summary, WriteBack, WriteBackConfig};
use objfs_store::ObjectStore;
use serde_json::{json, Value};
use tracing::{info, warn};

use crate::location::StoreLocation;
use crate::options::MountSettings;

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

/// Puts the write-back decorator over `store` when `dir` is given (its journal replayed).
pub fn wrap(store: Arc<dyn ObjectStore>, dir: Option<PathBuf>) -> Result<Wrapped> {
    let Some(dir) = dir else {
        return Ok((store, None));
    };
    let wb = WriteBack::open(store, WriteBackConfig::new(&dir))
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
    if done {
        info!("write-back journal drained");
    } else {
        let s = wb.summary();
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
    json!({
        "enabled": true,
        "journal": wb.journal_dir().display().to_string(),
        "pending": s.changes,
        "pending_bytes": s.bytes,
        "oldest_age_s": age,
        "failing": s.failing,
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
    out.push('\n');
    if let Some(f) = v["failing"].as_str() {
        out.push_str(&format!("  failing:    {f} (retrying)\n"));
    }
    out
}
