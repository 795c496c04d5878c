//! Prefetch of small objects for a mounted bucket (`objfs_store::prefetch`): its options
//! (`--no-prefetch`, `--prefetch-max-size`, `--prefetch-files`, `--prefetch-parallel`,
//! `--prefetch-memory`, and the same as `-o no_prefetch,prefetch_max_size=...`), putting the
//! decorator over the bucket, and what `objfs status` shows of it (its counters, live).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use objfs_store::prefetch::{Prefetch, PrefetchConfig};
use objfs_store::ObjectStore;
use serde_json::{json, Value};

use crate::options::parse_mem_size;

/// The prefetch options given (`None`: the default).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PrefetchSettings {
    pub off: bool,
    pub max_size: Option<u64>,
    pub files: Option<usize>,
    pub parallel: Option<usize>,
    pub memory: Option<usize>,
}

/// `objfs mount`'s prefetch flags (an s3:// store).
#[derive(Debug, Args, Clone, Default)]
pub struct PrefetchArgs {
    /// For an s3:// store: never fetch a directory's small files ahead of the reader.
    #[arg(long)]
    pub no_prefetch: bool,
    /// For an s3:// store: files of at most SIZE are fetched ahead when their directory is
    /// being read (default 256K; 0 turns prefetch off).
    #[arg(long, value_name = "SIZE")]
    pub prefetch_max_size: Option<String>,
    /// Files a prefetch of a directory fetches ahead of the reader at most (default 128).
    #[arg(long, value_name = "N")]
    pub prefetch_files: Option<String>,
    /// Requests in flight of one prefetch of a directory (default 32).
    #[arg(long, value_name = "N")]
    pub prefetch_parallel: Option<String>,
    /// Memory for prefetched files not read yet (default 64M).
    #[arg(long, value_name = "SIZE")]
    pub prefetch_memory: Option<String>,
}

fn count(text: &str, what: &str) -> Result<usize> {
    text.trim()
        .parse()
        .with_context(|| format!("{what} {text:?}: a whole number"))
}

impl PrefetchSettings {
    /// Applies `-o NAME[=VALUE]`; `Ok(false)` when the option is not a prefetch option.
    pub fn apply(&mut self, name: &str, value: Option<&str>) -> Result<bool> {
        let need = || {
            value.ok_or_else(|| {
                crate::usage(format!("option {name} needs a value: -o {name}=VALUE"))
            })
        };
        match name {
            "no_prefetch" => self.off = true,
            "prefetch_max_size" => {
                self.max_size = Some(parse_mem_size(need()?, "prefetch_max_size", 0)? as u64)
            }
            "prefetch_files" => self.files = Some(count(need()?, "prefetch_files")?),
            "prefetch_parallel" => self.parallel = Some(count(need()?, "prefetch_parallel")?),
            "prefetch_memory" => self.memory = Some(parse_mem_size(need()?, "prefetch_memory", 0)?),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Applies the flags of `objfs mount` (they win over `-o`).
    pub fn apply_args(&mut self, a: &PrefetchArgs) -> Result<()> {
        self.off |= a.no_prefetch;
        for (name, v) in [
            ("prefetch_max_size", &a.prefetch_max_size),
            ("prefetch_files", &a.prefetch_files),
            ("prefetch_parallel", &a.prefetch_parallel),
            ("prefetch_memory", &a.prefetch_memory),
        ] {
            if let Some(v) = v {
                self.apply(name, Some(v))
                    .map_err(|e| crate::usage(format!("--{}: {e:#}", name.replace('_', "-"))))?;
            }
        }
        Ok(())
    }

    /// The decorator's settings, answers served for `ttl` (the mount's attribute TTL).
    pub fn config(&self, ttl: Duration) -> PrefetchConfig {
        let mut c = PrefetchConfig::new(ttl);
        if let Some(v) = self.max_size {
            c.max_size = v;
        }
        if let Some(v) = self.files {
            c.max_files = v;
        }
        if let Some(v) = self.parallel {
            c.parallel = v;
        }
        if let Some(v) = self.memory {
            c.memory = v;
        }
        if self.off {
            c.max_size = 0;
        }
        c
    }
}

/// The store the mount serves, and the decorator in it (`None`: prefetch off).
pub type Wrapped = (Arc<dyn ObjectStore>, Option<Arc<Prefetch>>);

/// `store` with prefetch over it as `s` says (itself when prefetch is off), and the decorator
/// (for `status`).
pub fn wrap(store: Arc<dyn ObjectStore>, s: &PrefetchSettings, ttl: Duration) -> Wrapped {
    let cfg = s.config(ttl);
    if !cfg.enabled() {
        tracing::info!("prefetch off");
        return (store, None);
    }
    tracing::info!(
        max_size = cfg.max_size,
        files = cfg.max_files,
        parallel = cfg.parallel,
        memory = cfg.memory,
        ttl_ms = cfg.ttl.as_millis() as u64,
        "prefetch of small files on"
    );
    let p = Arc::new(Prefetch::new(store, cfg));
    (p.clone(), Some(p))
}

/// What `status` shows of the prefetch of a mount (`None`: off).
pub fn json(p: Option<&Prefetch>) -> Value {
    let Some(p) = p else {
        return json!({ "enabled": false });
    };
    let c = p.config();
    let st = p.status();
    let n = st.counts;
    json!({
        "enabled": true,
        "max_size": c.max_size,
        "max_files": c.max_files,
        "parallel": c.parallel,
        "ttl_ms": c.ttl.as_millis() as u64,
        "sessions": n.sessions,
        "running": st.running,
        "fetched": n.fetched,
        "fetched_bytes": n.fetched_bytes,
        "failed": n.failed,
        "skipped": n.skipped,
        "hits": n.hits(),
        "hit_heads": n.heads,
        "hit_gets": n.gets,
        "hit_lists": n.lists,
        "misses": n.misses,
        "expired": n.expired,
        "expired_unused": n.expired_unused,
        "invalidated": n.invalidated,
        "entries": st.entries,
        "held_bytes": st.held_bytes,
        "memory_bytes": st.memory,
    })
}

/// The text of [`json`] (`Null`: nothing mounted).
pub fn status_text(v: &Value) -> String {
    if v.is_null() {
        return String::new();
    }
    if v["enabled"].as_bool() != Some(true) {
        return "prefetch:     off (--no-prefetch, --prefetch-max-size 0 or --attr-ttl 0)\n".into();
    }
    let n = |k: &str| v[k].as_u64().unwrap_or(0);
    format!(
        "prefetch:     files up to {} bytes, {} per directory, {} GETs at a time, served {} ms\n  \
         sessions:   {} started, {} running\n  \
         fetched:    {} files, {} bytes; {} failed, {} skipped (no room)\n  \
         answered:   {} requests ({} HEADs, {} GETs, {} listings); {} HEADs/GETs missed\n  \
         dropped:    {} expired ({} never served), {} by this mount's changes\n  \
         held:       {} bytes of {} in {} entries\n",
        n("max_size"),
        n("max_files"),
        n("parallel"),
        n("ttl_ms"),
        n("sessions"),
        n("running"),
        n("fetched"),
        n("fetched_bytes"),
        n("failed"),
        n("skipped"),
        n("hits"),
        n("hit_heads"),
        n("hit_gets"),
        n("hit_lists"),
        n("misses"),
        n("expired"),
        n("expired_unused"),
        n("invalidated"),
        n("held_bytes"),
        n("memory_bytes"),
        n("entries"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_and_flags() {
        let mut s = PrefetchSettings::default();
        assert!(s.apply("prefetch_max_size", Some("64K")).unwrap());
        assert!(s.apply("prefetch_files", Some("100")).unwrap());
        assert!(!s.apply("ro", None).unwrap());
        assert!(s.apply("prefetch_parallel", Some("x")).is_err());
        assert!(s.apply("prefetch_memory", None).is_err());
        let c = s.config(Duration::from_secs(1));
        assert_eq!((c.max_size, c.max_files, c.parallel), (64 << 10, 100, 32));
        assert!(c.enabled());
        s.apply_args(&PrefetchArgs {
            no_prefetch: true,
            ..Default::default()
        })
        .unwrap();
        assert!(!s.config(Duration::from_secs(1)).enabled());
        // A TTL of zero (nothing cached) means no prefetch either.
        assert!(!PrefetchSettings::default().config(Duration::ZERO).enabled());
    }

    #[test]
    fn status_shows_the_counters() {
        let store: Arc<dyn ObjectStore> = Arc::new(objfs_store::memory::MemoryStore::new());
        let s = PrefetchSettings {
            memory: Some(1 << 20),
            ..Default::default()
        };
        let (_, p) = wrap(store.clone(), &s, Duration::from_secs(2));
        let v = json(p.as_deref());
        assert_eq!(v["enabled"], true);
        assert_eq!(v["memory_bytes"], 1 << 20);
        assert_eq!(v["ttl_ms"], 2000);
        assert_eq!(
            (v["sessions"].as_u64(), v["held_bytes"].as_u64()),
            (Some(0), Some(0))
        );
        let text = status_text(&v);
        assert!(
            text.contains("held:       0 bytes of 1048576 in 0 entries"),
            "{text}"
        );
        assert!(text.contains("sessions:   0 started"), "{text}");
        let off = PrefetchSettings {
            off: true,
            ..Default::default()
        };
        let (_, none) = wrap(store, &off, Duration::from_secs(2));
        assert!(none.is_none());
        assert!(status_text(&json(None)).contains("prefetch:     off"));
        assert_eq!(status_text(&Value::Null), "");
    }
}
