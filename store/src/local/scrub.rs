//! Scrub: re-verify every copy and shard of every volume and repair what is bad from the good
//! copies or from parity. [`Disks::scrub`] does one volume through its layout; the [`Scrub`]
//! worker walks all of them, one per step, in checkpointed passes (a killed process resumes
//! its pass where it stopped). Tiered volumes are checked in the bucket, sampled or whole, under
//! a bandwidth cap (tier/scrub.rs); the keys of remote objects found beyond repair are kept in
//! the checkpoint `scrub-remote` and shown by status.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::local::daemons::{live_blobs, nanos};
use crate::local::disks::{Disks, VolumeCatalog};
use crate::local::records::Layout;
use crate::local::tier::scrub::{scrub_volume, RemoteScrub, Throttle};
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

/// The checkpoint holding [`RemoteScrubState`].
const REMOTE_STATE: &str = "scrub-remote";

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

/// How many keys of unrepairable remote objects a pass keeps for status (the log has all).
const DAMAGED_KEPT: usize = 100;

/// The remote part of a scrub pass, kept beside [`ScrubCheckpoint`] (checkpoint
/// `scrub-remote`): the keys of the remote objects found damaged beyond repair.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteScrubState {
    /// The pass these keys belong to (its `pass_started`).
    pub pass_started: u64,
    /// Unrepairable objects found so far in that pass (at most 100).
    pub damaged: Vec<String>,
    /// Those of the last finished pass.
    pub last_damaged: Vec<String>,
}

/// Verifies every copy and shard of every volume, one volume per step; repairs what it finds.
pub struct Scrub {
    inner: Arc<Inner>,
    interval: Duration,
    ckpt: ScrubCheckpoint,
    remote: RemoteScrub,
    remote_state: RemoteScrubState,
    throttle: Option<Throttle>,
    blobs: Option<HashMap<u64, Vec<BlobLocation>>>,
    /// What the pass in progress will read in all (an estimate made when it starts).
    bytes_total: u64,
}

/// The bytes a scrub of every volume reads: each live blob on each replica, each shard whole.
fn bytes_to_check(
    inner: &Inner,
    blobs: &HashMap<u64, Vec<BlobLocation>>,
    remote: &RemoteScrub,
) -> u64 {
    inner
        .disks
        .records()
        .iter()
        .map(|r| {
            let live: u64 = blobs
                .get(&r.id)
                .map(|b| b.iter().map(|l| blob_disk_len(l.len, l.block_size)).sum())
                .unwrap_or(0);
            match &r.layout {
                Layout::Replicated { disks } => live * disks.len() as u64,
                Layout::Erasure {
                    k, m, shard_len, ..
                } => shard_len * (u64::from(*k) + u64::from(*m)),
                Layout::Remote(o) if remote.full => o.size,
                // An estimate: the sample's share of the live bytes.
                Layout::Remote(_) => (live as f64 * remote.sample.clamp(0.0, 1.0)) as u64,
            }
        })
        .sum()
}

impl Scrub {
    pub(crate) fn new(inner: Arc<Inner>, interval: Duration, remote: RemoteScrub) -> Result<Self> {
        let ckpt = inner.meta.checkpoint("scrub")?.unwrap_or_default();
        let remote_state = inner.meta.checkpoint(REMOTE_STATE)?.unwrap_or_default();
        Ok(Scrub {
            inner,
            interval,
            ckpt,
            remote,
            remote_state,
            throttle: None,
            blobs: None,
            bytes_total: 0,
        })
    }

    /// Checks one volume: through its layout when local, in the bucket when tiered.
    fn check(
        &mut self,
        rec: &crate::local::records::VolumeRecord,
        locs: &[BlobLocation],
    ) -> Result<ScrubReport> {
        let _guard = self.inner.maintenance();
        if !matches!(rec.layout, Layout::Remote(_)) {
            return self.inner.disks.scrub(&self.inner.meta, rec.id, locs);
        }
        let throttle = self
            .throttle
            .get_or_insert_with(|| Throttle::new(self.remote.bandwidth));
        let seed = self.ckpt.pass_started;
        let out = scrub_volume(&self.inner, rec, locs, &self.remote, throttle, seed)?;
        if let Some(key) = out.unrepairable {
            let st = &mut self.remote_state;
            if st.pass_started != self.ckpt.pass_started {
                st.pass_started = self.ckpt.pass_started;
                st.damaged.clear();
            }
            if st.damaged.len() < DAMAGED_KEPT {
                st.damaged.push(key);
            }
            self.inner
                .meta
                .save_checkpoint(REMOTE_STATE, &self.remote_state)?;
        }
        Ok(out.report)
    }

    /// Ends the remote part of a pass: its damaged keys become the last pass's.
    fn finish_remote(&mut self) -> Result<()> {
        let st = &mut self.remote_state;
        st.last_damaged = if st.pass_started == self.ckpt.pass_started {
            std::mem::take(&mut st.damaged)
        } else {
            Vec::new()
        };
        st.damaged.clear();
        st.pass_started = 0;
        self.throttle = None;
        self.inner
            .meta
            .save_checkpoint(REMOTE_STATE, &self.remote_state)
    }

    /// The keys of the unrepairable remote objects the pass in progress (or else the last one)
    /// found.
    pub fn damaged_remote(&self) -> &[String] {
        if self.ckpt.pass_started != 0 && self.remote_state.pass_started == self.ckpt.pass_started {
            &self.remote_state.damaged
        } else {
            &self.remote_state.last_damaged
        }
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
            self.bytes_total = bytes_to_check(&self.inner, &b, &self.remote);
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
            self.finish_remote()?;
            self.ckpt.pass_started = 0;
            self.blobs = None;
            self.inner.meta.save_checkpoint("scrub", &self.ckpt)?;
            tracing::info!(totals = ?self.ckpt.last_pass, "scrub pass finished");
            return Ok(Step::Idle);
        };
        let locs = blobs.remove(&rec.id).unwrap_or_default();
        let report = self.check(&rec, &locs)?;
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
        let damaged = self.damaged_remote();
        if !damaged.is_empty() {
            p.note = format!(
                "{}; unrepairable remote objects: {}",
                p.note,
                damaged.join(", ")
            );
        }
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
        if let Ok(st) = self.inner.meta.checkpoint(REMOTE_STATE) {
            self.remote_state = st.unwrap_or_default();
        }
        self.blobs = None;
    }
}
