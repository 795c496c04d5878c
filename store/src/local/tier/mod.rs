//! The remote tier of a local store: cold sealed volumes move, whole, to an S3 bucket, and
//! reads of them stay transparent and verified.
//!
//! * [`TierRecord`] (the store record `tier`): which bucket and prefix, how to reach it.
//! * [`client`]: the S3 client (feature `s3`; without it every remote operation is a clear
//!   error and the local data stays usable), opened lazily so that a store opens while its
//!   remote is down.
//! * [`remote`]: the remote [`VolumeLayout`](super::layout::VolumeLayout): ranged GETs of the
//!   blocks a read needs, through the bounded on-disk [`cache`], verified by the blob checksums.
//! * [`rules`]: lifecycle rules (pure), [`select`]: which volumes they move,
//!   [`mover`]: moving one volume up or down with a crash-safe intent, [`worker`]: the lifecycle
//!   daemon, and the store's tier and lifecycle commands ([`admin`]).
//! * [`scrub`]: scrub's check and repair of tiered volumes; [`gc`]: deleting remote objects
//!   nothing references and compacting remote volumes with much garbage.
//! * [`parallel`]: the bounded fan-out (the record's `jobs`, 4 by default) that uploads,
//!   recalls and remote deletions run in.

pub mod admin;
pub mod cache;
pub mod client;
pub mod gc;
pub mod mover;
pub mod remote;
pub mod repack;
pub mod rules;
pub mod scrub;
pub mod select;
pub mod worker;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};
use crate::local::meta::Meta;

pub use rules::{AgeBy, LifecycleRules, Rule};

/// The store record holding the tier.
pub const RECORD: &str = "tier";

/// The format of [`TierRecord`] this build writes.
pub const TIER_FORMAT: u32 = 1;

/// The remote tier attached to a store (JSON in the store record `tier`, docs/FORMAT.md).
/// Credentials are never here: they come the standard AWS way (the profile names them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierRecord {
    pub format: u32,
    pub bucket: String,
    /// Key prefix in the bucket: empty or ending in `/`.
    pub prefix: String,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub profile: Option<String>,
    /// When it was added (ns since the epoch).
    pub added: u64,
    /// How many volumes move (upload, recall) or remote objects are deleted at once. Absent in
    /// records of earlier builds: [`DEFAULT_JOBS`].
    #[serde(default = "default_jobs")]
    pub jobs: u32,
}

/// Volumes moved at once unless the tier says otherwise (`objfs tier add --jobs`).
pub const DEFAULT_JOBS: u32 = 4;
/// The most a tier may ask for.
pub const MAX_JOBS: u32 = 64;

fn default_jobs() -> u32 {
    DEFAULT_JOBS
}

impl TierRecord {
    /// `s3://bucket/prefix`.
    pub fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    pub fn decode(bytes: &[u8]) -> Result<TierRecord> {
        let r: TierRecord = serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
            what: format!("the store's tier record does not decode: {e}"),
        })?;
        if r.format != TIER_FORMAT {
            return Err(StoreError::Corrupt {
                what: format!(
                    "the store's tier record has format {} (this build reads {TIER_FORMAT})",
                    r.format
                ),
            });
        }
        Ok(r)
    }

    /// Moves at once: the record's `jobs`, within 1..=[`MAX_JOBS`].
    pub fn jobs(&self) -> usize {
        self.jobs.clamp(1, MAX_JOBS) as usize
    }

    pub fn encode(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(|e| StoreError::Metadata(format!("tier record: {e}")))
    }
}

/// The store's tier record, if any.
pub(crate) fn load(meta: &Meta) -> Result<Option<TierRecord>> {
    meta.store_record(RECORD)?
        .map(|b| TierRecord::decode(&b))
        .transpose()
}

/// The key of volume `id`'s object: `PREFIX<2 hex>/<2 hex>/<id as 16 hex>`, the four hex digits
/// from BLAKE3 of the id, so consecutive volumes spread over 65,536 leading prefixes (S3
/// scales request rates per prefix).
pub fn object_key(prefix: &str, id: u64) -> String {
    let h = blake3::hash(&id.to_be_bytes());
    let b = h.as_bytes();
    format!("{prefix}{:02x}/{:02x}/{id:016x}", b[0], b[1])
}

/// Runs `f` on every item, at most `jobs` at once (the calling thread and up to `jobs - 1`
/// scoped threads taking items in turn); the results come back in the items' order. A thread
/// that cannot be started only lowers the concurrency.
pub(crate) fn parallel<T: Sync, R: Send>(
    jobs: usize,
    items: &[T],
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(i) else {
                return done;
            };
            done.push((i, f(item)));
        }
    };
    let mut out = std::thread::scope(|s| {
        let helpers: Vec<_> = (1..jobs.min(items.len()))
            .filter_map(|_| {
                std::thread::Builder::new()
                    .name("objfs-tier-job".into())
                    .spawn_scoped(s, work)
                    .ok()
            })
            .collect();
        let mut out = work();
        for h in helpers {
            match h.join() {
                Ok(done) => out.extend(done),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        out
    });
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}

/// A store's open tier: its record, its client, its read cache.
pub struct Tier {
    pub record: TierRecord,
    pub(crate) client: client::Client,
    pub(crate) cache: cache::BlockCache,
}

impl Tier {
    /// The tier of the store in `root` as `record` describes it (no network yet).
    pub(crate) fn open(root: &Path, record: TierRecord) -> Result<Arc<Tier>> {
        let client = client::Client::new(&record)?;
        let cache = cache::BlockCache::open(&root.join("tier-cache"), cache::DEFAULT_CAPACITY)?;
        Ok(Arc::new(Tier {
            record,
            client,
            cache,
        }))
    }

    /// `s3://bucket/key`, for messages.
    pub fn describe(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.record.bucket)
    }
}

/// Resolves the intents a crash (or a failed transfer) left, in order. At the first failure
/// the intents from it on are saved for the next time; when all are resolved, none are left.
pub(crate) fn resolve_in_order<T>(
    intents: &[T],
    mut resolve_one: impl FnMut(&T) -> Result<()>,
    save: impl Fn(&[T]) -> Result<()>,
) -> Result<()> {
    if intents.is_empty() {
        return Ok(());
    }
    for (n, intent) in intents.iter().enumerate() {
        if let Err(e) = resolve_one(intent) {
            save(&intents[n..])?;
            return Err(e);
        }
    }
    save(&[])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn object_keys_spread_over_hashed_prefixes() {
        let keys: Vec<String> = (0..4096u64).map(|i| object_key("t/", i)).collect();
        for (i, k) in keys.iter().enumerate() {
            let parts: Vec<&str> = k.split('/').collect();
            assert_eq!(parts.len(), 4, "{k}");
            assert_eq!(parts[0], "t");
            assert_eq!(parts[1].len(), 2);
            assert_eq!(parts[2].len(), 2);
            assert_eq!(parts[3], format!("{i:016x}"));
        }
        let first: HashSet<&str> = keys.iter().map(|k| &k[2..4]).collect();
        assert_eq!(first.len(), 256, "every first-level prefix is used");
        let two: HashSet<&str> = keys.iter().map(|k| &k[2..7]).collect();
        assert!(two.len() > 3000, "{} two-level prefixes", two.len());
        assert_eq!(object_key("", 7), object_key("", 7));
        assert!(!object_key("", 7).starts_with('/'));
    }

    #[test]
    fn tier_records_round_trip_and_refuse_other_formats() {
        let r = TierRecord {
            format: TIER_FORMAT,
            bucket: "b".into(),
            prefix: "p/".into(),
            endpoint: Some("http://127.0.0.1:9".into()),
            region: None,
            profile: Some("x".into()),
            added: 5,
            jobs: 7,
        };
        assert_eq!(TierRecord::decode(&r.encode().unwrap()).unwrap(), r);
        // Records of earlier builds have no `jobs`: the default.
        let old = br#"{"format":1,"bucket":"b","prefix":"","endpoint":null,"region":null,"profile":null,"added":1}"#;
        assert_eq!(
            TierRecord::decode(old).unwrap().jobs(),
            DEFAULT_JOBS as usize
        );
        assert_eq!(
            TierRecord {
                jobs: 0,
                ..r.clone()
            }
            .jobs(),
            1
        );
        assert_eq!(
            TierRecord {
                jobs: 1000,
                ..r.clone()
            }
            .jobs(),
            MAX_JOBS as usize
        );
        let newer = TierRecord { format: 2, ..r };
        assert!(TierRecord::decode(&newer.encode().unwrap()).is_err());
        assert!(TierRecord::decode(b"{").is_err());
        assert_eq!(newer.url(), "s3://b/p/");
    }

    #[test]
    fn parallel_runs_every_item_once_in_order_and_at_most_jobs_at_once() {
        let items: Vec<u64> = (0..50).collect();
        let now = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let out = parallel(4, &items, |&i| {
            let n = now.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(n, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(2));
            now.fetch_sub(1, Ordering::SeqCst);
            i * 2
        });
        assert_eq!(out, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        let peak = peak.load(Ordering::SeqCst);
        assert!((1..=4).contains(&peak), "peak {peak}");
        assert_eq!(parallel(1, &items, |&i| i), items);
        assert!(parallel(8, &[] as &[u64], |&i| i).is_empty());
    }
}
