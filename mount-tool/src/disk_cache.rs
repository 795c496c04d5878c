//! The disk cache of an s3 mount (`--cache-dir DIR --cache-size SIZE`, `-o cache_dir=,
//! cache_size=`): what the options mean, opening it in the mount process, and what `objfs
//! status` shows of it.
//!
//! With `--cache-dir`, `--cache-size` bounds the disk cache (default [`DEFAULT_DISK_CACHE`])
//! and the memory cache in front of it keeps its default size; without it, `--cache-size` is
//! the memory cache's size as on a local mount. A directory another mount uses is refused
//! (the mount fails with a clear message); a directory that cannot be used otherwise (not
//! writable, not creatable) is logged as a warning and the mount reads uncached.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use objfs_fs::diskcache::{DiskCache, DiskCacheError, DiskCacheHandle};
use objfs_fs::FsConfig;
use serde_json::{json, Value};

use crate::options::MountSettings;

/// The disk cache's size when `--cache-dir` is given without `--cache-size` (10 GiB).
pub const DEFAULT_DISK_CACHE: u64 = 10 << 30;

/// A disk cache asked for: its directory (absolute) and byte bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheRequest {
    pub dir: PathBuf,
    pub limit: u64,
}

/// The disk cache `settings` ask for, with `cfg` adjusted: the memory cache keeps its default
/// size when `--cache-size` bounds the disk cache. Checked before the mount forks.
pub fn request(settings: &MountSettings, cfg: &mut FsConfig) -> Result<Option<CacheRequest>> {
    let Some(dir) = &settings.cache_dir else {
        return Ok(None);
    };
    let limit = settings
        .fs
        .cache_size
        .map_or(DEFAULT_DISK_CACHE, |s| s as u64);
    cfg.cache_size = FsConfig::default().cache_size;
    Ok(Some(CacheRequest {
        dir: crate::platform::absolute(dir)?,
        limit,
    }))
}

/// The cache of a running mount, for `status`.
#[derive(Clone, Default)]
pub enum CacheState {
    /// No `--cache-dir`.
    #[default]
    None,
    /// Asked for, but its directory cannot be used: the mount reads uncached.
    Off {
        dir: PathBuf,
        reason: String,
    },
    On(Arc<DiskCache>),
}

impl CacheState {
    /// Opens the cache in the mount process. A directory in use by another mount is an error
    /// (the mount fails); any other failure is logged and leaves the mount uncached.
    pub fn open(req: Option<&CacheRequest>) -> Result<CacheState> {
        let Some(req) = req else {
            return Ok(CacheState::None);
        };
        match DiskCache::open(&req.dir, req.limit) {
            Ok(c) => Ok(CacheState::On(Arc::new(c))),
            Err(e @ DiskCacheError::InUse { .. }) => Err(e.into()),
            Err(e) => {
                tracing::warn!(error = %e, "the disk cache is off: reads go to the store");
                Ok(CacheState::Off {
                    dir: req.dir.clone(),
                    reason: e.to_string(),
                })
            }
        }
    }

    /// The handle the filesystem reads through, when the cache is on.
    pub fn handle(&self) -> Option<DiskCacheHandle> {
        match self {
            CacheState::On(c) => Some(DiskCacheHandle(c.clone())),
            _ => None,
        }
    }

    /// `status`'s `cache` object (null without `--cache-dir`).
    pub fn json(&self) -> Value {
        match self {
            CacheState::None => Value::Null,
            CacheState::Off { dir, reason } => json!({
                "dir": dir,
                "enabled": false,
                "reason": reason,
            }),
            CacheState::On(c) => {
                let s = c.stats();
                json!({
                    "dir": s.dir,
                    "enabled": true,
                    "limit_bytes": s.limit,
                    "used_bytes": s.used,
                    "blocks": s.blocks,
                    "hits": s.hits,
                    "misses": s.misses,
                    "fills": s.fills,
                    "evictions": s.evictions,
                    "dropped": s.dropped,
                    "write_errors": s.write_errors,
                })
            }
        }
    }
}

/// The text lines of `status`'s `cache` object; `mounted` says whether a mount answered.
pub fn status_text(v: &Value, mounted: bool) -> String {
    let n = |k: &str| v[k].as_u64().unwrap_or(0);
    if v.is_null() {
        return if mounted {
            "disk cache:   none (mount with --cache-dir DIR --cache-size SIZE)\n".into()
        } else {
            "disk cache:   shown while mounted\n".into()
        };
    }
    let dir = v["dir"].as_str().unwrap_or("?");
    if v["enabled"].as_bool() != Some(true) {
        return format!(
            "disk cache:   {dir}: off, reads go to the store ({})\n",
            v["reason"].as_str().unwrap_or("?")
        );
    }
    let (hits, misses) = (n("hits"), n("misses"));
    let ratio = if hits + misses == 0 {
        String::new()
    } else {
        format!(
            " ({:.1}% hits)",
            100.0 * hits as f64 / (hits + misses) as f64
        )
    };
    format!(
        "disk cache:   {dir}\n  size:       {} of {} bytes used, {} blocks\n  \
         reads:      {hits} blocks from disk, {misses} from the store{ratio}\n  \
         writes:     {} blocks, {} evicted, {} refused (bad checksum), {} failed\n",
        n("used_bytes"),
        n("limit_bytes"),
        n("blocks"),
        n("fills"),
        n("evictions"),
        n("dropped"),
        n("write_errors"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_and_sizes() {
        let mut s = MountSettings::default();
        let mut cfg = FsConfig::default();
        assert_eq!(request(&s, &mut cfg).unwrap(), None);
        s.apply_option_list("cache_dir=/var/cache/objfs,cache_size=10G")
            .unwrap();
        let mut cfg = s.fs.to_fs_config("x");
        assert_eq!(cfg.cache_size, 10 << 30);
        let r = request(&s, &mut cfg).unwrap().unwrap();
        assert_eq!(r.limit, 10 << 30);
        assert_eq!(r.dir, PathBuf::from("/var/cache/objfs"));
        // The memory cache in front keeps its default size.
        assert_eq!(cfg.cache_size, FsConfig::default().cache_size);
        let mut s = MountSettings::default();
        s.apply_option("cache_dir=/c").unwrap();
        let r = request(&s, &mut s.fs.to_fs_config("x")).unwrap().unwrap();
        assert_eq!(r.limit, DEFAULT_DISK_CACHE);
        assert!(s.apply_option("cache_dir").is_err());
    }

    #[test]
    fn status_lines() {
        let tmp = tempfile::tempdir().unwrap();
        let req = CacheRequest {
            dir: tmp.path().to_path_buf(),
            limit: 1 << 20,
        };
        let on = CacheState::open(Some(&req)).unwrap();
        let text = status_text(&on.json(), true);
        assert!(text.contains("0 of 1048576 bytes used"), "{text}");
        // A second mount of the same directory is refused with a clear message.
        let err = CacheState::open(Some(&req)).err().unwrap().to_string();
        assert!(err.contains("in use by another mount"), "{err}");
        let off = CacheState::open(Some(&CacheRequest {
            dir: PathBuf::from("/proc/objfs-no-such-dir"),
            limit: 1,
        }))
        .unwrap();
        assert!(status_text(&off.json(), true).contains("off, reads go to the store"));
        assert!(status_text(&Value::Null, true).contains("--cache-dir"));
    }
}
