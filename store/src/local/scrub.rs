//! Scrub: re-verify every copy and shard of every volume and repair what is bad from the good
//! copies or from parity. [`Disks::scrub`] does one volume through its layout; the [`Scrub`]
//! worker walks all of them, one per step, in checkpointed passes (a killed process resumes
//! its pass where it stopped).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::local::daemons::{live_blobs, nanos};
use crate::local::disks::{Disks, VolumeCatalog};
use crate::local::records::Layout;
use crate::local::volume::{blob_disk_len, now_nanos, BlobLocation};
use crate::local::worker::{Progress, RunReport, Step, Worker};
use crate::local::Inner;

/// What one scrub of one volume found and did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScrubReport {
    pub bytes_checked: u64,
    /// Blob regions (replicated) or shard chunks (erasure-coded) that failed verification or
    /// were missing.
    pub bad: u64,
    pub repaired: u64,
    /// Bad data no good copy or enough shards was left to repair from.
    pub unrepairable: u64,
    /// Copies or shards that live on an offline disk (not checked, not repaired).
    pub offline: u64,
}

impl Disks {
    /// Verifies every copy or shard of a volume and repairs what it can. `blobs` are the live
    /// blobs of the volume. A volume found whole (or made whole) records when.
    pub fn scrub(
        &self,
        cat: &dyn VolumeCatalog,
        id: u64,
        blobs: &[BlobLocation],
    ) -> Result<ScrubReport> {
        let Some(rec) = self.record(id) else {
            return Ok(ScrubReport::default());
        };
        let report = self.layout(&rec).scrub(blobs)?;
        if report.unrepairable == 0 {
            if let Some(mut r) = self.record(id) {
                if r.layout == rec.layout {
                    r.verified_at = now_nanos();
                    cat.save_volume(&r)?;
                    self.set_record(r);
                }
            }
        }
        Ok(report)
    }
}

/// Totals of a scrub pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScrubTotals {
    pub volumes: u64,
    pub bytes_checked: u64,
    pub bad: u64,
    pub repaired: u64,
    pub unrepairable: u64,
    pub offline: u64,
}

/// The counters of a scrub pass, by name.
fn totals_counters(t: &ScrubTotals) -> BTreeMap<String, u64> {
    [
        ("volumes", t.volumes),
        ("bytes_checked", t.bytes_checked),
        ("bad", t.bad),
        ("repaired", t.repaired),
        ("unrepairable", t.unrepairable),
        ("offline", t.offline),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

impl ScrubTotals {
    fn add(&mut self, r: ScrubReport) {
        self.volumes += 1;
        self.bytes_checked += r.bytes_checked;
        self.bad += r.bad;
        self.repaired += r.repaired;
        self.unrepairable += r.unrepairable;
        self.offline += r.offline;
    }
}

/// Scrub's persisted checkpoint: where the pass in progress is, and how the last one ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScrubCheckpoint {
    /// ns; 0 = no pass in progress.
    pub pass_started: u64,
    /// The next volume id to verify in this pass.
    pub next_volume: u64,
    pub totals: ScrubTotals,
    pub last_pass_started: u64,
    pub last_pass_finished: u64,
    pub last_pass: ScrubTotals,
}

/// Verifies every copy and shard of every volume, one volume per step; repairs what it finds.
pub struct Scrub {
    inner: Arc<Inner>,
    interval: Duration,
    ckpt: ScrubCheckpoint,
    blobs: Option<HashMap<u64, Vec<BlobLocation>>>,
    /// What the pass in progress will read in all (an estimate made when it starts).
    bytes_total: u64,
}

/// The bytes a scrub of every volume reads: each live blob on each replica, each shard whole.
fn bytes_to_check(inner: &Inner, blobs: &HashMap<u64, Vec<BlobLocation>>) -> u64 {
    inner
        .disks
        .records()
        .iter()
        .map(|r| match &r.layout {
            Layout::Replicated { disks } => {
                let live: u64 = blobs
                    .get(&r.id)
                    .map(|b| b.iter().map(|l| blob_disk_len(l.len, l.block_size)).sum())
                    .unwrap_or(0);
                live * disks.len() as u64
            }
            Layout::Erasure {
                k, m, shard_len, ..
            } => shard_len * (u64::from(*k) + u64::from(*m)),
            // Remote data is not scrubbed yet.
            Layout::Remote(_) => 0,
        })
        .sum()
}

impl Scrub {
    pub(crate) fn new(inner: Arc<Inner>, interval: Duration) -> Result<Self> {
        let ckpt = inner.meta.checkpoint("scrub")?.unwrap_or_default();
        Ok(Scrub {
            inner,
            interval,
            ckpt,
            blobs: None,
            bytes_total: 0,
        })
    }

    /// Starts a pass now unless one is in progress (then it resumes that one).
    pub(crate) fn start_now(&mut self) {
        if self.ckpt.pass_started == 0 {
            self.ckpt.pass_started = now_nanos();
            self.ckpt.next_volume = 0;
            self.ckpt.totals = ScrubTotals::default();
        }
    }

    pub fn checkpoint(&self) -> &ScrubCheckpoint {
        &self.ckpt
    }
}

impl Worker for Scrub {
    fn name(&self) -> &'static str {
        "scrub"
    }

    fn step(&mut self) -> Result<Step> {
        if self.ckpt.pass_started == 0 {
            let due = self
                .ckpt
                .last_pass_started
                .saturating_add(nanos(self.interval));
            if now_nanos() < due {
                return Ok(Step::Idle);
            }
            self.start_now();
        }
        if self.blobs.is_none() {
            let b = live_blobs(&self.inner)?;
            self.bytes_total = bytes_to_check(&self.inner, &b);
            self.blobs = Some(b);
        }
        let Some(blobs) = self.blobs.as_mut() else {
            return Ok(Step::Idle);
        };
        let next = self
            .inner
            .disks
            .records()
            .into_iter()
            .find(|r| r.id >= self.ckpt.next_volume);
        let Some(rec) = next else {
            let c = &mut self.ckpt;
            c.last_pass_started = c.pass_started;
            c.last_pass_finished = now_nanos();
            c.last_pass = c.totals;
            c.pass_started = 0;
            self.blobs = None;
            self.inner.meta.save_checkpoint("scrub", &self.ckpt)?;
            tracing::info!(totals = ?self.ckpt.last_pass, "scrub pass finished");
            return Ok(Step::Idle);
        };
        let locs = blobs.remove(&rec.id).unwrap_or_default();
        let report = {
            let _guard = self.inner.maintenance();
            self.inner.disks.scrub(&self.inner.meta, rec.id, &locs)?
        };
        if report.bad > 0 {
            tracing::warn!(volume = rec.id, ?report, "scrub found damage");
        }
        self.ckpt.totals.add(report);
        self.ckpt.next_volume = rec.id + 1;
        self.inner.meta.save_checkpoint("scrub", &self.ckpt)?;
        Ok(Step::Busy)
    }

    fn progress(&self) -> Progress {
        let running = self.ckpt.pass_started != 0;
        let t = if running {
            self.ckpt.totals
        } else {
            self.ckpt.last_pass
        };
        let total = self.inner.disks.records().len() as u64;
        let mut p = Progress {
            done: t.volumes,
            total,
            note: if running {
                "pass in progress".into()
            } else if self.ckpt.last_pass_finished != 0 {
                "last pass finished".into()
            } else {
                "no pass yet".into()
            },
            ..Default::default()
        };
        p.counters = totals_counters(&t);
        if running {
            let mut run = RunReport {
                started: self.ckpt.pass_started,
                items_done: self.ckpt.totals.volumes,
                items_total: total.max(self.ckpt.totals.volumes),
                bytes_done: self.ckpt.totals.bytes_checked,
                bytes_total: self.bytes_total.max(self.ckpt.totals.bytes_checked),
                counters: totals_counters(&self.ckpt.totals),
                ..Default::default()
            };
            run.counters.remove("volumes");
            p.current = Some(run);
        }
        if self.ckpt.last_pass_finished != 0 {
            let l = self.ckpt.last_pass;
            let mut run = RunReport {
                started: self.ckpt.last_pass_started,
                finished: self.ckpt.last_pass_finished,
                items_done: l.volumes,
                items_total: l.volumes,
                bytes_done: l.bytes_checked,
                bytes_total: l.bytes_checked,
                counters: totals_counters(&l),
            };
            run.counters.remove("volumes");
            p.last = Some(run);
        }
        p
    }

    fn on_resume(&mut self) {
        // A `scrub --now` in this process may have run a pass meanwhile.
        match self.inner.meta.checkpoint("scrub") {
            Ok(c) => self.ckpt = c.unwrap_or_default(),
            Err(e) => tracing::warn!(error = %e, "cannot re-read the scrub checkpoint"),
        }
        self.blobs = None;
    }
}
