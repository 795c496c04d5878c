//! The retention policy applied over the [`ObjectStore`] trait: one pass over every key's
//! versions (`list_versions`, in key order), each key decided by the policy's pure expiry
//! ([`retention::Expiry`]) and what it expires removed with `delete_version`, oldest first
//! (a delete marker after the versions under it). This is how a backend without the local
//! store's gc applies retention (an S3 bucket: `objfs gc s3://...`), and, without removing
//! anything, what `objfs retention show --dry-run` counts on every backend.
//!
//! What is never removed: the current version of a live key (the expiry keeps it, and the
//! pass checks again), and every version a named snapshot sees (the policy and the snapshots
//! are read again for every page of the listing, so a snapshot made during a pass pins what
//! the pass has not reached). A version someone else removed meanwhile is skipped.
//!
//! Exclusive figures: a version kept only because one snapshot sees it counts for that
//! snapshot (on S3 every version is an object of its own, so the bytes are exact: what
//! deleting the snapshot lets the next pass free). A pass that removes and runs to its end
//! saves them in each snapshot's record ([`snapshots::save_exclusive`]).

use std::collections::BTreeMap;
use std::time::SystemTime;

use futures::StreamExt;

use super::retention::{self, Decision, Expiry, VersionFacts};
use super::snapshots::{self, Exclusive};
use crate::error::{ErrorKind, Result};
use crate::store::ObjectStore;
use crate::types::{ListVersionsRequest, VersionInfo};

/// Keys whose expired versions are removed at a time.
const CONCURRENT_KEYS: usize = 8;

/// What a pass found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Keys seen.
    pub keys: u64,
    /// Versions and delete markers seen.
    pub versions: u64,
    /// Versions (and markers) the policy expires: removed, unless a dry run.
    pub expired: u64,
    /// Their sizes.
    pub expired_bytes: u64,
    /// What each snapshot alone keeps (by name).
    pub exclusive: BTreeMap<String, (u64, u64)>,
    /// The pass was stopped before its end.
    pub stopped: bool,
}

/// One key decided: its versions (newest first) and what the policy says of each.
struct Decided {
    key: String,
    versions: Vec<VersionInfo>,
    decisions: Vec<Decision>,
}

/// Runs one pass at the moment `now`. `remove` false: only counts (a dry run). `watch` hears
/// the report after every page and stops the pass by returning false.
pub async fn pass(
    store: &dyn ObjectStore,
    now: SystemTime,
    remove: bool,
    watch: &mut dyn FnMut(&PassReport) -> bool,
) -> Result<PassReport> {
    let mut report = PassReport::default();
    let mut req = ListVersionsRequest::default();
    let mut pending: Vec<VersionInfo> = Vec::new();
    loop {
        let page = store.list_versions(&req).await?;
        let last_page = page.next_key_marker.is_none();
        // Read for every page: a snapshot made meanwhile pins what is not reached yet.
        let policy = retention::load(store).await?;
        let snaps = snapshots::list(store).await?;
        let moments: Vec<SystemTime> = snaps.iter().map(|s| s.at).collect();
        let names: Vec<&str> = snaps.iter().map(|s| s.name.as_str()).collect();
        let expiry = Expiry::new(&policy, &moments, now);
        let mut done_keys: Vec<Vec<VersionInfo>> = Vec::new();
        for v in page.versions {
            report.versions += 1;
            if pending.last().is_some_and(|l| l.key != v.key) {
                done_keys.push(std::mem::take(&mut pending));
            }
            pending.push(v);
        }
        if last_page && !pending.is_empty() {
            done_keys.push(std::mem::take(&mut pending));
        }
        let decided: Vec<Decided> = done_keys
            .into_iter()
            .map(|versions| decide(&expiry, versions))
            .collect();
        for d in &decided {
            report.keys += 1;
            for (v, dec) in d.versions.iter().zip(&d.decisions) {
                match dec {
                    Decision::Expire => {
                        report.expired += 1;
                        report.expired_bytes += v.size;
                    }
                    Decision::Keep(k) => {
                        if let Some(name) = k.only_snapshot().and_then(|i| names.get(i)) {
                            let e = report.exclusive.entry(name.to_string()).or_default();
                            e.0 += v.size;
                            e.1 += 1;
                        }
                    }
                }
            }
        }
        if remove {
            let results: Vec<Result<()>> = futures::stream::iter(decided.iter())
                .map(|d| remove_expired(store, d))
                .buffer_unordered(CONCURRENT_KEYS)
                .collect()
                .await;
            results.into_iter().collect::<Result<Vec<()>>>()?;
        }
        if !watch(&report) {
            report.stopped = true;
            return Ok(report);
        }
        match page.next_key_marker {
            Some(k) => {
                req.key_marker = Some(k);
                req.version_marker = page.next_version_marker;
            }
            None => break,
        }
    }
    if remove {
        let measured = SystemTime::now();
        for s in snapshots::list(store).await? {
            let (bytes, versions) = report.exclusive.get(&s.name).copied().unwrap_or((0, 0));
            let ex = Exclusive {
                bytes,
                versions,
                measured,
            };
            snapshots::save_exclusive(store, &s.name, ex).await?;
        }
    }
    Ok(report)
}

/// The policy's decisions for one key's versions (newest first). The newest version of a live
/// key is kept whatever the expiry says.
fn decide(expiry: &Expiry, versions: Vec<VersionInfo>) -> Decided {
    let facts: Vec<VersionFacts> = versions
        .iter()
        .map(|v| VersionFacts {
            modified: v.modified,
            delete_marker: v.is_delete_marker,
        })
        .collect();
    let mut decisions = expiry.decide(&facts);
    if let (Some(first), Some(d)) = (versions.first(), decisions.first_mut()) {
        if !first.is_delete_marker {
            *d = Decision::Keep(retention::Keep::Current);
        }
    }
    Decided {
        key: versions.first().map(|v| v.key.clone()).unwrap_or_default(),
        versions,
        decisions,
    }
}

/// Removes what `d` expires, oldest first.
async fn remove_expired(store: &dyn ObjectStore, d: &Decided) -> Result<()> {
    for (v, dec) in d.versions.iter().zip(&d.decisions).rev() {
        if *dec != Decision::Expire {
            continue;
        }
        match store.delete_version(&d.key, v.version.clone()).await {
            Ok(()) => {}
            Err(e) if matches!(e.kind(), ErrorKind::NoSuchVersion | ErrorKind::NotFound) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::history::retention::Policy;
    use crate::memory::MemoryStore;
    use crate::types::{Body, PutOptions};

    async fn put(s: &MemoryStore, key: &str, data: &'static str) {
        s.put(key, Body::from(data), PutOptions::default())
            .await
            .unwrap();
    }

    async fn versions(s: &MemoryStore) -> Vec<VersionInfo> {
        s.list_versions(&ListVersionsRequest::default())
            .await
            .unwrap()
            .versions
    }

    #[tokio::test]
    async fn expires_old_versions_keeps_current_and_snapshots() {
        let s = MemoryStore::new();
        put(&s, "a", "1").await;
        put(&s, "a", "22").await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let snap_at = SystemTime::now();
        tokio::time::sleep(Duration::from_millis(20)).await;
        put(&s, "a", "333").await;
        put(&s, "b", "x").await;
        s.delete("b").await.unwrap();
        let p = Policy {
            keep_all: Duration::ZERO,
            hourly: Duration::ZERO,
            daily: Duration::ZERO,
            deleted: Duration::ZERO,
        };
        retention::save(&s, &p).await.unwrap();
        snapshots::create(&s, "snap", snap_at, SystemTime::now())
            .await
            .unwrap();
        // Far enough ahead that no complete moment falls in the versions' lives.
        let now = SystemTime::now() + Duration::from_secs(1);
        let dry = pass(&s, now, false, &mut |_| true).await.unwrap();
        assert_eq!(dry.keys, 2);
        assert_eq!(versions(&s).await.len(), 5, "a dry run removes nothing");
        let done = pass(&s, now, true, &mut |_| true).await.unwrap();
        assert_eq!(
            done,
            PassReport {
                stopped: false,
                ..dry.clone()
            }
        );
        // "a": 333 (current) and 22 (the snapshot's) stay; "b" goes whole.
        let left: Vec<(String, u64)> = versions(&s)
            .await
            .into_iter()
            .map(|v| (v.key, v.size))
            .collect();
        assert_eq!(left, [("a".to_string(), 3), ("a".to_string(), 2)]);
        assert_eq!(done.expired, 3);
        assert_eq!(done.exclusive.get("snap"), Some(&(2, 1)));
        let snap = snapshots::get(&s, "snap").await.unwrap().unwrap();
        assert_eq!(snap.exclusive.map(|e| (e.bytes, e.versions)), Some((2, 1)));
        // Expiring again expires nothing more.
        let again = pass(&s, now, true, &mut |_| true).await.unwrap();
        assert_eq!(again.expired, 0);
    }
}
