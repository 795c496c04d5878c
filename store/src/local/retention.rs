//! gc's retention pass: applies the store's retention policy ([`crate::history::retention`])
//! to every key, removing the versions it expires, and measures what each named snapshot
//! alone keeps.
//!
//! The pass walks the version table in key order, a batch of keys per gc step. For each key it
//! reads the versions (newest first), asks [`Expiry::decide`] which expire, and removes those
//! with `delete_version`, oldest first (so a deleted key never shows its old data while its
//! versions go: the delete marker goes last). The policy is applied at the moment the pass
//! started, and the policy and the snapshots are read again for every batch, so a snapshot
//! made during a pass pins what the pass has not reached yet. A batch runs under the store's
//! history lock, which every change to the policy or to a snapshot's record also takes
//! ([`governs`]): a snapshot of a past moment made while a batch runs waits for it, so no
//! batch expires a version that a snapshot existing when the version went could see. The
//! position (the last key done) is checkpointed after every batch: a pass interrupted by a
//! crash or a stop resumes there.
//!
//! Exclusive figures: a version kept only because one snapshot sees it
//! ([`Keep::only_snapshot`]) counts for that snapshot, and so do the blobs its extents
//! reference; a blob whose every reference comes from such versions of that snapshot would be
//! freed by deleting it. At the end of a pass that ran whole in this process, each snapshot's
//! record gets those figures ([`Exclusive`]); a resumed pass saw only part of the store and
//! leaves them as they were.
//!
//! Per key, the noncurrent versions only named snapshots keep (any of them) and their bytes
//! go into the key's `s` row when they changed, with the per-prefix rollups
//! ([`Meta::set_snapshot_only`]): `objfs du` shows them as of the pass's last visit to each
//! key. A batch also clears the rows of keys in its range that have no version left.
//!
//! [`Keep::only_snapshot`]: crate::history::retention::Keep::only_snapshot

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{ErrorKind, Result};
use crate::history::retention::{self, Decision, Expiry, Keep, Policy, VersionFacts};
use crate::history::snapshots::{Exclusive, Snapshot, RECORD_PREFIX};
use crate::local::meta::rollup::RollupBucket;
use crate::local::meta::Meta;
use crate::local::records::{
    decode, parse_version_key, table, version_prefix, Extent, VersionRecord,
};
use crate::local::version::LocalVersion;

/// The checkpoint that holds the pass's position.
pub(crate) const CHECKPOINT: &str = "gc-retention";

/// Keys per batch (a key with more versions than this is still read whole).
const BATCH_KEYS: usize = 1000;

/// Where the pass is, persisted after every batch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PassState {
    /// A pass is under way.
    pub active: bool,
    /// The moment the pass applies the policy at (ns since the epoch).
    pub now: u64,
    /// The last key done; the next batch starts after it.
    pub after: Option<String>,
    /// When the last pass finished (ns since the epoch; 0: never).
    pub finished: u64,
}

/// One version as the pass reads it.
struct Row {
    vid: LocalVersion,
    delete_marker: bool,
    size: u64,
    blobs: Vec<u64>,
}

/// A key and its versions, newest first.
type KeyRows = (String, Vec<Row>);

/// What one snapshot alone keeps, counted so far.
#[derive(Debug, Default)]
struct Tally {
    versions: u64,
    /// Blob -> references from those versions.
    blobs: HashMap<u64, u64>,
}

/// What one batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Batch {
    pub keys: u64,
    pub versions_expired: u64,
    /// Sizes of the expired versions (what they held; the blobs are freed by gc's reclaim).
    pub bytes_expired: u64,
    /// The pass reached the end of the table.
    pub done: bool,
}

/// The retention pass of one gc worker.
pub(crate) struct RetentionPass {
    state: PassState,
    /// This process ran the pass from its start: the tallies cover every key.
    whole: bool,
    tallies: HashMap<String, Tally>,
}

fn ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos().min(u64::MAX as u128) as u64)
        .unwrap_or(0)
}

/// The store's policy (the default when none was set; a damaged record is an error, never
/// the default: it decides what is deleted).
pub(crate) fn policy(meta: &Meta) -> Result<Policy> {
    match meta.store_record(retention::RECORD)? {
        Some(bytes) => Policy::decode(&bytes),
        None => Ok(Policy::default()),
    }
}

/// The store's history lock (see the module docs). A writer of the policy or of a snapshot
/// goes first: the pass takes the lock for its next batch only when no writer waits, so a
/// `snapshot create` waits for at most one batch, never for a whole pass.
#[derive(Default)]
pub(crate) struct HistoryLock {
    lock: Mutex<()>,
    writers: AtomicUsize,
}

impl HistoryLock {
    /// For a change of the policy or of a snapshot's record.
    pub(crate) fn writer(&self) -> MutexGuard<'_, ()> {
        self.writers.fetch_add(1, Ordering::SeqCst);
        let guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.writers.fetch_sub(1, Ordering::SeqCst);
        guard
    }

    /// For one batch of the pass.
    pub(crate) fn pass(&self) -> MutexGuard<'_, ()> {
        while self.writers.load(Ordering::SeqCst) > 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Whether store record `name` is one the pass decides by (the policy, a named snapshot):
/// changing it takes the history lock.
pub(crate) fn governs(name: &str) -> bool {
    name == retention::RECORD || name.starts_with(RECORD_PREFIX)
}

/// Every named snapshot, by name.
pub(crate) fn snapshots(meta: &Meta) -> Result<Vec<Snapshot>> {
    meta.store_records(RECORD_PREFIX)?
        .into_iter()
        .map(|(name, bytes)| Snapshot::decode(&name, &bytes))
        .collect()
}

impl RetentionPass {
    /// The pass as the checkpoint left it.
    pub fn load(meta: &Meta) -> Result<RetentionPass> {
        Ok(RetentionPass {
            state: meta.checkpoint(CHECKPOINT)?.unwrap_or_default(),
            whole: false,
            tallies: HashMap::new(),
        })
    }

    /// Whether a pass is under way.
    pub fn active(&self) -> bool {
        self.state.active
    }

    /// Whether the last pass finished at least `interval` before `now`.
    pub fn due(&self, interval: Duration, now: SystemTime) -> bool {
        ns(now).saturating_sub(self.state.finished) >= crate::local::daemons::nanos(interval)
    }

    /// Starts a pass that applies the policy at `now`.
    pub fn start(&mut self, meta: &Meta, now: SystemTime) -> Result<()> {
        self.state = PassState {
            active: true,
            now: ns(now),
            after: None,
            finished: self.state.finished,
        };
        self.whole = true;
        self.tallies.clear();
        meta.save_checkpoint(CHECKPOINT, &self.state)
    }

    /// The versions of the next batch of keys: (key, versions newest first).
    fn read_batch(&self, meta: &Meta) -> Result<(Vec<KeyRows>, bool)> {
        let start = match &self.state.after {
            Some(k) => {
                let mut s = version_prefix(k);
                if let Some(last) = s.last_mut() {
                    *last = 1;
                }
                s
            }
            None => vec![table::VERSION],
        };
        let mut keys: Vec<KeyRows> = Vec::new();
        for row in meta.range(start, Some(vec![table::VERSION + 1])) {
            let (k, v) = row?;
            let (key, vid) = parse_version_key(&k)?;
            if keys.last().map(|(last, _)| last.as_str()) != Some(key) {
                if keys.len() == BATCH_KEYS {
                    return Ok((keys, false));
                }
                keys.push((key.to_string(), Vec::new()));
            }
            let rec: VersionRecord = decode(&v)?;
            if let Some((_, rows)) = keys.last_mut() {
                rows.push(Row {
                    vid,
                    delete_marker: rec.delete_marker,
                    size: rec.size,
                    blobs: rec.extents.iter().filter_map(Extent::blob_id).collect(),
                });
            }
        }
        Ok((keys, true))
    }

    /// Expires what the policy expires in the next batch of keys.
    pub fn step(&mut self, meta: &Meta) -> Result<Batch> {
        let policy = policy(meta)?;
        let snaps = snapshots(meta)?;
        let moments: Vec<SystemTime> = snaps.iter().map(|s| s.at).collect();
        let now = UNIX_EPOCH + Duration::from_nanos(self.state.now);
        let expiry = Expiry::new(&policy, &moments, now);
        let (keys, done) = self.read_batch(meta)?;
        let mut batch = Batch {
            keys: keys.len() as u64,
            done,
            ..Default::default()
        };
        let mut snapshot_only: Vec<(String, RollupBucket)> = Vec::with_capacity(keys.len());
        for (key, rows) in &keys {
            let facts: Vec<VersionFacts> = rows
                .iter()
                .map(|r| VersionFacts {
                    modified: r.vid.time(),
                    delete_marker: r.delete_marker,
                })
                .collect();
            let decisions = expiry.decide(&facts);
            let mut only = RollupBucket::default();
            for (row, d) in rows.iter().zip(&decisions) {
                if !row.delete_marker && matches!(d, Decision::Keep(Keep::Snapshot { .. })) {
                    only.objects += 1;
                    only.bytes += row.size;
                }
            }
            snapshot_only.push((key.clone(), only));
            // Oldest first: a delete marker goes after the versions under it.
            for (row, d) in rows.iter().zip(&decisions).rev() {
                match d {
                    Decision::Expire => match meta.commit_delete_version(key, row.vid.id()) {
                        Ok(()) => {
                            batch.versions_expired += 1;
                            batch.bytes_expired += row.size;
                        }
                        // Removed meanwhile by someone else.
                        Err(e) if e.kind() == ErrorKind::NoSuchVersion => {}
                        Err(e) => return Err(e),
                    },
                    Decision::Keep(k) => {
                        if let Some(s) = k.only_snapshot().and_then(|i| snaps.get(i)) {
                            let t = self.tallies.entry(s.name.clone()).or_default();
                            t.versions += 1;
                            for b in &row.blobs {
                                *t.blobs.entry(*b).or_insert(0) += 1;
                            }
                        }
                    }
                }
            }
        }
        self.record_snapshot_only(meta, snapshot_only, done)?;
        if let Some((last, _)) = keys.last() {
            self.state.after = Some(last.clone());
        }
        if done {
            self.finish(meta, &snaps)?;
        }
        meta.save_checkpoint(CHECKPOINT, &self.state)?;
        Ok(batch)
    }

    /// Records the batch's snapshot-only figures (`found`, per key in key order) where they
    /// differ from the keys' `s` rows, and clears the rows of keys in the batch's range that
    /// have no version any more (`done`: the range runs to the end).
    fn record_snapshot_only(
        &self,
        meta: &Meta,
        found: Vec<(String, RollupBucket)>,
        done: bool,
    ) -> Result<()> {
        let until = if done {
            None
        } else {
            match found.last() {
                Some((k, _)) => Some(k.as_str()),
                None => return Ok(()),
            }
        };
        let had: HashMap<String, RollupBucket> = meta
            .snapshot_only_rows(self.state.after.as_deref(), until)?
            .into_iter()
            .collect();
        let mut changes: Vec<(String, RollupBucket)> = Vec::new();
        for key in had.keys() {
            // `found` is in key order (the version table's).
            if found
                .binary_search_by(|(k, _)| k.as_str().cmp(key.as_str()))
                .is_err()
            {
                changes.push((key.clone(), RollupBucket::default()));
            }
        }
        for (key, b) in found {
            if had.get(&key).copied().unwrap_or_default() != b {
                changes.push((key, b));
            }
        }
        meta.set_snapshot_only(&changes)
    }

    /// Ends the pass; when it ran whole here, records what each snapshot alone keeps.
    fn finish(&mut self, meta: &Meta, snaps: &[Snapshot]) -> Result<()> {
        self.state.active = false;
        self.state.after = None;
        self.state.finished = crate::local::volume::now_nanos();
        if !std::mem::take(&mut self.whole) {
            return Ok(());
        }
        let measured = UNIX_EPOCH + Duration::from_nanos(self.state.finished);
        for snap in snaps {
            let tally = self.tallies.remove(&snap.name).unwrap_or_default();
            let mut bytes = 0;
            for (blob, refs) in &tally.blobs {
                // A blob gone or referenced from elsewhere too is not this snapshot's alone.
                if let Ok(rec) = meta.blob(*blob) {
                    if rec.refs == *refs {
                        bytes += rec.len;
                    }
                }
            }
            let ex = Exclusive {
                bytes,
                versions: tally.versions,
                measured,
            };
            let record = format!("{RECORD_PREFIX}{}", snap.name);
            meta.update_store_record(&record, |old| {
                let mut s = Snapshot::decode(&record, old)?;
                s.exclusive = Some(ex);
                Ok(s.encode()?.to_vec())
            })?;
        }
        self.tallies.clear();
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::{Duration, SystemTime};

    use crate::history::{retention, snapshots};
    use crate::local::{GcOptions, LocalConfig, LocalStore};
    use crate::types::{ListRequest, ListVersionsRequest, PutOptions, VersionInfo};
    use crate::ObjectStore;

    fn store() -> (tempfile::TempDir, LocalStore) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = LocalConfig {
            volume_size: 1 << 20,
            block_size: 4096,
            blob_size: 64 << 10,
            ..Default::default()
        };
        let s = LocalStore::init(&dir.path().join("s"), cfg).unwrap();
        (dir, s)
    }

    /// Everything older than a minute goes, except what the rules keep; a deleted key's last
    /// version stays two minutes.
    pub(crate) fn tight() -> retention::Policy {
        let s = Duration::from_secs;
        retention::Policy {
            keep_all: s(60),
            hourly: s(60),
            daily: s(60),
            deleted: s(120),
        }
    }

    async fn put(s: &LocalStore, key: &str, data: Vec<u8>) -> crate::ObjectInfo {
        s.put(key, data.into(), PutOptions::default())
            .await
            .unwrap()
    }

    async fn versions(s: &LocalStore, prefix: &str) -> Vec<VersionInfo> {
        let req = ListVersionsRequest {
            prefix: prefix.into(),
            max_keys: 100_000,
            ..Default::default()
        };
        s.list_versions(&req).await.unwrap().versions
    }

    fn gc_at(s: &LocalStore, now: SystemTime) -> std::collections::BTreeMap<String, u64> {
        let opts = GcOptions {
            delay: Duration::ZERO,
            now: Some(now),
            ..Default::default()
        };
        s.gc_now(opts, |_| {}).unwrap().counters
    }

    #[tokio::test]
    async fn gc_expires_exactly_what_the_policy_says() {
        let (_d, s) = store();
        retention::save(&s, &tight()).await.unwrap();
        let mut live = Vec::new();
        for i in 0..5u8 {
            live.push(put(&s, "live", vec![i; 5000]).await);
        }
        put(&s, "gone", vec![7; 3000]).await;
        let last = put(&s, "gone", vec![8; 3000]).await;
        s.delete("gone").await.unwrap();
        put(&s, "young", vec![9; 10]).await;
        let t = SystemTime::now();
        // Nothing is a minute old yet.
        let c = gc_at(&s, t);
        assert_eq!(c["versions_expired"], 0, "{c:?}");
        assert_eq!(c["retention_keys_scanned"], 3);
        // 90 s later: the live key keeps its current version; the deleted key its last
        // version (and the marker over it) for 120 s.
        let c = gc_at(&s, t + Duration::from_secs(90));
        assert_eq!(c["versions_expired"], 5, "{c:?}");
        assert_eq!(c["version_bytes_expired"], 4 * 5000 + 3000);
        assert!(c["blob_bytes_reclaimed"] >= 4 * 5000 + 3000, "{c:?}");
        let v = versions(&s, "live").await;
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].version, live[4].version);
        let v = versions(&s, "gone").await;
        assert_eq!(v.len(), 2);
        assert!(v[0].is_delete_marker);
        assert_eq!(v[1].version, last.version);
        assert_eq!(versions(&s, "young").await.len(), 1);
        let got = s.get("live", Default::default()).await.unwrap();
        assert_eq!(got.bytes().await.unwrap().to_vec(), vec![4u8; 5000]);
        // Again: nothing more.
        let c = gc_at(&s, t + Duration::from_secs(90));
        assert_eq!(c["versions_expired"], 0, "{c:?}");
        // Past the grace of deleted keys, the deleted key goes whole.
        let c = gc_at(&s, t + Duration::from_secs(200));
        assert_eq!(c["versions_expired"], 2, "{c:?}");
        assert!(versions(&s, "gone").await.is_empty());
        assert_eq!(versions(&s, "").await.len(), 2);
    }

    #[tokio::test]
    async fn snapshots_pin_and_know_what_they_alone_keep() {
        let (_d, s) = store();
        retention::save(&s, &tight()).await.unwrap();
        let v1 = put(&s, "k", vec![1; 1000]).await;
        put(&s, "other", vec![5; 100]).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        let at = SystemTime::now();
        let now = at + Duration::from_millis(1);
        snapshots::create(&s, "before", at, now).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        put(&s, "k", vec![2; 2000]).await;
        let v3 = put(&s, "k", vec![3; 3000]).await;
        s.delete("other").await.unwrap();
        let later = now + Duration::from_secs(600);
        let c = gc_at(&s, later);
        // v2 goes; v1 and other's version (and marker) stay for the snapshot.
        assert_eq!(c["versions_expired"], 1, "{c:?}");
        let ids: Vec<_> = versions(&s, "k")
            .await
            .into_iter()
            .map(|v| v.version)
            .collect();
        assert_eq!(ids, [v3.version.clone(), v1.version.clone()]);
        assert_eq!(s.head_at("k", at).await.unwrap().version, v1.version);
        assert!(s.head_at("other", at).await.is_ok());
        let snap = snapshots::get(&s, "before").await.unwrap().unwrap();
        let ex = snap.exclusive.expect("measured");
        assert_eq!((ex.versions, ex.bytes), (3, 1100), "{ex:?}");
        // A second snapshot of the same moment shares them: neither holds anything alone.
        snapshots::create(&s, "same", at, now).await.unwrap();
        gc_at(&s, later);
        for name in ["before", "same"] {
            let ex = snapshots::get(&s, name).await.unwrap().unwrap().exclusive;
            let ex = ex.expect("measured");
            assert_eq!((ex.versions, ex.bytes), (0, 0), "{name}");
        }
        // Without the snapshots, what they pinned goes.
        snapshots::delete(&s, "before").await.unwrap();
        snapshots::delete(&s, "same").await.unwrap();
        let c = gc_at(&s, later);
        assert_eq!(c["versions_expired"], 3, "{c:?}");
        assert_eq!(versions(&s, "").await.len(), 1);
        assert!(s.list_records("snapshot/").await.unwrap().is_empty());
    }

    /// A snapshot of a past moment made while a pass runs: every version it could see once
    /// it existed stays, whichever batch the pass was in (the history lock; without it, the
    /// batch under way expired versions the new snapshot already showed).
    #[test]
    fn a_snapshot_made_during_a_pass_keeps_what_it_saw() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (_d, s) = store();
        let n = 3 * super::BATCH_KEYS;
        let at = rt.block_on(async {
            retention::save(&s, &tight()).await.unwrap();
            for i in 0..n {
                put(&s, &format!("k{i:05}"), vec![1; 10]).await;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            let at = SystemTime::now();
            tokio::time::sleep(Duration::from_millis(5)).await;
            for i in 0..n {
                put(&s, &format!("k{i:05}"), vec![2; 10]).await;
                put(&s, &format!("k{i:05}"), vec![3; 10]).await;
            }
            at
        });
        let later = SystemTime::now() + Duration::from_secs(600);
        let seen = std::thread::scope(|scope| {
            let pass = scope.spawn(|| gc_at(&s, later));
            rt.block_on(async {
                // Into the first batch: its first key lost its old versions.
                while versions(&s, "k00000").await.len() == 3 {
                    tokio::task::yield_now().await;
                }
                snapshots::create(&s, "late", at, SystemTime::now())
                    .await
                    .unwrap();
                // What the snapshot shows now that it exists.
                let req = ListRequest {
                    max_keys: 100_000,
                    ..Default::default()
                };
                let seen = s.list_at(&req, at).await.unwrap();
                let c = pass.join().unwrap();
                assert!(c["versions_expired"] > 0, "{c:?}");
                seen
            })
        });
        let seen: Vec<_> = seen.objects.iter().map(|o| o.key.clone()).collect();
        // The snapshot came after the pass had expired some keys' old versions, before all.
        assert!(!seen.is_empty() && seen.len() < n, "{}", seen.len());
        rt.block_on(async {
            let req = ListRequest {
                max_keys: 100_000,
                ..Default::default()
            };
            let after = s.list_at(&req, at).await.unwrap();
            let after: Vec<_> = after.objects.iter().map(|o| o.key.clone()).collect();
            assert_eq!(after, seen, "the snapshot lost versions it showed");
            for k in &after {
                let got = s.get(k, crate::GetOptions::default()).await.unwrap();
                assert_eq!(got.bytes().await.unwrap().to_vec(), vec![3u8; 10]);
            }
        });
    }

    #[tokio::test]
    async fn a_stopped_pass_resumes_where_it_stopped() {
        let (dir, s) = store();
        retention::save(&s, &tight()).await.unwrap();
        let n = 2 * super::BATCH_KEYS + 10;
        for i in 0..n {
            let k = format!("k{i:05}");
            put(&s, &k, vec![1; 10]).await;
            put(&s, &k, vec![2; 10]).await;
        }
        let now = SystemTime::now() + Duration::from_secs(600);
        let opts = GcOptions {
            now: Some(now),
            ..Default::default()
        };
        // Stop after the first batch.
        let (p, finished) = s.gc_now_until(opts.clone(), |_| false).unwrap();
        assert!(!finished);
        assert_eq!(p.counters["versions_expired"], super::BATCH_KEYS as u64);
        let path = s.path().to_path_buf();
        s.close().unwrap();
        let s = LocalStore::open(&path).unwrap();
        let p = s.gc_now(opts, |_| {}).unwrap();
        assert_eq!(
            p.counters["versions_expired"],
            (n - super::BATCH_KEYS) as u64
        );
        assert_eq!(versions(&s, "").await.len(), n);
        drop(dir);
    }

    /// The gc daemon (not `gc --now`) runs a retention pass once one is due and expires what
    /// the policy says; then, its last pass younger than the interval, it runs none.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_gc_daemon_expires_by_the_policy_when_a_pass_is_due() {
        let (_d, mut s) = store();
        retention::save(&s, &tight()).await.unwrap();
        let mut made = Vec::new();
        for i in 0..3u8 {
            made.push(put(&s, "k", vec![i; 100]).await);
        }
        put(&s, "young", vec![9; 10]).await;
        // The policy applied 90 s from now: every version but the current ones is old enough.
        let later = SystemTime::now() + Duration::from_secs(90);
        let cfg = crate::local::DaemonConfig {
            placement: false,
            scrub: false,
            lifecycle: false,
            gc: true,
            tranquility: 0,
            idle_interval: Duration::from_millis(20),
            gc_options: GcOptions {
                delay: Duration::ZERO,
                now: Some(later),
                retention_interval: Duration::from_secs(3600),
                ..Default::default()
            },
            ..Default::default()
        };
        s.start_daemons(cfg).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while versions(&s, "k").await.len() > 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "the daemon expired nothing: {:?}",
                s.daemon_status()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let v = versions(&s, "k").await;
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].version, made[2].version, "the current version stays");
        assert_eq!(versions(&s, "young").await.len(), 1);
        let got = s.get("k", Default::default()).await.unwrap();
        assert_eq!(got.bytes().await.unwrap().to_vec(), vec![2u8; 100]);

        // A pass finished at the policy's moment: none is due for an hour of it, so versions
        // made now stay through many idle rounds of the daemon.
        put(&s, "k", vec![3; 100]).await;
        put(&s, "k", vec![4; 100]).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(versions(&s, "k").await.len(), 3, "no pass before it is due");
        s.close().unwrap();
    }
}
