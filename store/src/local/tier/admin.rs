//! The store's tier and lifecycle commands: attach a remote tier (checked reachable), show it,
//! detach it (refused while data is tiered, unless recalled first), recall tiered volumes, and
//! set, remove and show lifecycle rules. `lifecycle --now` is in daemons.rs with the other
//! `--now` jobs.

use std::collections::HashSet;

use serde::Serialize;

use crate::error::{Result, StoreError};
use crate::local::records::{decode, parse_version_key, table, Layout, VersionRecord};
use crate::local::tier::rules::{LifecycleRules, Rule, RECORD as RULES_RECORD};
use crate::local::tier::worker::{batch_len, load_rules, BATCH_BYTES};
use crate::local::tier::{mover, Tier, TierRecord, RECORD};
use crate::local::worker::RunReport;
use crate::local::LocalStore;

/// The tier as `objfs tier list` and `objfs status` show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TierStatus {
    pub url: String,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub profile: Option<String>,
    pub added: u64,
    /// Volumes in the remote tier and their bytes.
    pub volumes: u64,
    pub bytes: u64,
    /// Bytes in the local read cache.
    pub cache_bytes: u64,
}

impl LocalStore {
    fn tier_or_err(&self) -> Result<std::sync::Arc<Tier>> {
        self.inner.disks.tier().ok_or_else(|| {
            StoreError::InvalidArgument("this store has no remote tier (objfs tier add)".into())
        })
    }

    /// Attaches `record`'s bucket as the store's remote tier, once it answers.
    pub fn tier_add(&self, mut record: TierRecord) -> Result<TierStatus> {
        if let Some(t) = self.inner.disks.tier() {
            return Err(StoreError::InvalidArgument(format!(
                "this store already has a remote tier, {} (objfs tier remove first)",
                t.record.url()
            )));
        }
        if !record.prefix.is_empty() && !record.prefix.ends_with('/') {
            record.prefix.push('/');
        }
        record.format = super::TIER_FORMAT;
        record.added = crate::local::volume::now_nanos();
        let tier = Tier::open(&self.inner.root, record.clone())?;
        tier.client.check()?;
        self.inner
            .meta
            .set_store_record(RECORD, Some(record.encode()?))?;
        self.inner.sync_all()?;
        self.inner.disks.set_tier(Some(tier));
        self.tier_status()?
            .ok_or_else(|| StoreError::Metadata("tier vanished".into()))
    }

    /// The remote tier, if any.
    pub fn tier_status(&self) -> Result<Option<TierStatus>> {
        let Some(t) = self.inner.disks.tier() else {
            return Ok(super::load(&self.inner.meta)?.map(|r| TierStatus {
                url: r.url(),
                endpoint: r.endpoint,
                region: r.region,
                profile: r.profile,
                added: r.added,
                volumes: 0,
                bytes: 0,
                cache_bytes: 0,
            }));
        };
        let (mut volumes, mut bytes) = (0, 0);
        for r in self.inner.disks.records() {
            if let Layout::Remote(o) = &r.layout {
                volumes += 1;
                bytes += o.size;
            }
        }
        let r = &t.record;
        Ok(Some(TierStatus {
            url: r.url(),
            endpoint: r.endpoint.clone(),
            region: r.region.clone(),
            profile: r.profile.clone(),
            added: r.added,
            volumes,
            bytes,
            cache_bytes: t.cache.bytes(),
        }))
    }

    /// Brings tiered volumes back to local disks: all of them, or (with `prefix`) those holding
    /// data of a version of a key under it. `on_progress` hears after each volume.
    pub fn tier_recall(
        &self,
        prefix: Option<&str>,
        on_progress: &mut dyn FnMut(&RunReport),
    ) -> Result<RunReport> {
        let tier = self.tier_or_err()?;
        mover::resolve(&self.inner, &tier)?;
        let wanted: Option<HashSet<u64>> = match prefix {
            Some(p) => Some(self.volumes_under(p)?),
            None => None,
        };
        let todo: Vec<(u64, u64)> = self
            .inner
            .disks
            .records()
            .into_iter()
            .filter_map(|r| match &r.layout {
                Layout::Remote(o) => Some((r.id, o.size)),
                _ => None,
            })
            .filter(|(id, _)| wanted.as_ref().is_none_or(|w| w.contains(id)))
            .collect();
        let mut run = RunReport::start(todo.len() as u64, todo.iter().map(|(_, s)| s).sum());
        on_progress(&run);
        // Batches of up to the tier's `jobs` volumes (within the lifecycle daemon's memory
        // budget), downloaded (and their objects deleted) at once.
        let mut left: Vec<(u64, u64)> = todo.iter().rev().copied().collect();
        while !left.is_empty() {
            let sizes: Vec<u64> = left.iter().map(|(_, s)| *s).collect();
            let n = batch_len(&sizes, tier.record.jobs(), BATCH_BYTES).max(1);
            let batch = left.split_off(left.len() - n.min(left.len()));
            let ids: Vec<u64> = batch.iter().map(|(id, _)| *id).collect();
            let done = mover::recall_volumes(&self.inner, &tier, &ids)?;
            let mut failed = None;
            for (id, r) in done.results {
                let got = match r {
                    Ok(got) => got,
                    Err(e) => {
                        failed.get_or_insert(e);
                        continue;
                    }
                };
                run.items_done += 1;
                run.bytes_done += batch.iter().find(|(b, _)| *b == id).map_or(0, |(_, s)| *s);
                if got > 0 {
                    run.count("volumes_recalled", 1);
                    run.count("bytes_recalled", got);
                }
            }
            on_progress(&run);
            if let Some(e) = failed {
                return Err(e);
            }
        }
        run.finish();
        Ok(run)
    }

    /// The volumes holding blobs of versions of keys under `prefix`.
    fn volumes_under(&self, prefix: &str) -> Result<HashSet<u64>> {
        let mut start = vec![table::VERSION];
        start.extend_from_slice(prefix.as_bytes());
        let mut blobs = HashSet::new();
        for row in self.inner.meta.range(start, Some(vec![table::VERSION + 1])) {
            let (k, v) = row?;
            let (key, _) = parse_version_key(&k)?;
            if !key.starts_with(prefix) {
                break;
            }
            let rec: VersionRecord = decode(&v)?;
            blobs.extend(rec.extents.iter().filter_map(|e| e.blob_id()));
        }
        let mut vols = HashSet::new();
        for b in blobs {
            if let Ok(r) = self.inner.meta.blob(b) {
                vols.insert(r.volume);
            }
        }
        Ok(vols)
    }

    /// Detaches the remote tier. With data tiered it is refused unless `recall`, which brings
    /// everything back first.
    pub fn tier_remove(
        &self,
        recall: bool,
        on_progress: &mut dyn FnMut(&RunReport),
    ) -> Result<Option<RunReport>> {
        let status = self
            .tier_status()?
            .ok_or_else(|| StoreError::InvalidArgument("this store has no remote tier".into()))?;
        let mut report = None;
        if status.volumes > 0 {
            if !recall {
                return Err(StoreError::InvalidArgument(format!(
                    "{} volume(s) ({} bytes) are in the remote tier; recall them first (objfs tier remove --recall)",
                    status.volumes, status.bytes
                )));
            }
            report = Some(self.tier_recall(None, on_progress)?);
        }
        self.inner.meta.set_store_record(RECORD, None)?;
        self.inner.sync_all()?;
        self.inner.disks.set_tier(None);
        let _ = std::fs::remove_dir_all(self.inner.root.join("tier-cache"));
        Ok(report)
    }

    /// The store's lifecycle rules.
    pub fn lifecycle_rules(&self) -> Result<LifecycleRules> {
        load_rules(&self.inner)
    }

    /// Adds a rule (replacing the one with the same prefix); returns the rules.
    pub fn set_lifecycle_rule(&self, rule: Rule) -> Result<LifecycleRules> {
        let mut rules = load_rules(&self.inner)?;
        rules.set(rule);
        self.save_rules(&rules)?;
        Ok(rules)
    }

    /// Removes the rule for `prefix`; returns the rules.
    pub fn remove_lifecycle_rule(&self, prefix: &str) -> Result<LifecycleRules> {
        let mut rules = load_rules(&self.inner)?;
        if !rules.remove(prefix) {
            return Err(StoreError::InvalidArgument(format!(
                "there is no lifecycle rule for prefix {prefix:?}"
            )));
        }
        self.save_rules(&rules)?;
        Ok(rules)
    }

    fn save_rules(&self, rules: &LifecycleRules) -> Result<()> {
        self.inner
            .meta
            .set_store_record(RULES_RECORD, Some(rules.encode()?))?;
        self.inner.sync_all()
    }
}
