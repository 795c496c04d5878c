//! The lifecycle daemon: moves the volumes the lifecycle rules select (select.rs) to the
//! remote tier, one batch per step (up to the tier's `jobs` volumes uploaded at once, and at
//! most [`BATCH_BYTES`] of volume images in memory), on the one worker pattern (worker.rs:
//! status, throttle, pause/resume, backoff). While the remote is unreachable its steps fail and the runner backs
//! off and tries again; local reads and writes are not affected. A run lasts from the scan
//! that finds something to do until a scan finds nothing. When no volume can move whole,
//! a step repacks the selected blobs of one mixed volume into a volume of their own
//! (repack.rs), which the next step's scan finds whole.

use std::sync::Arc;

use crate::error::Result;
use crate::local::placement::load_last;
use crate::local::tier::{mover, repack, rules, select};
use crate::local::volume::{now_nanos, BlobLocation};
use crate::local::worker::{Progress, RunReport, Step, Worker};
use crate::local::Inner;

/// The checkpoint under which the daemon keeps its last finished run.
const LAST_RUN: &str = "lifecycle-last-run";

/// The lifecycle daemon's name.
pub const NAME: &str = "lifecycle";

/// The most bytes of volume images one batch holds in memory (a batch takes at least one
/// volume, whatever its size).
pub const BATCH_BYTES: u64 = 1 << 30;

/// How many volumes from the end of `sizes` the next batch takes: at most `jobs`, and more
/// than one only while their sizes stay within `budget` (pure).
pub fn batch_len(sizes: &[u64], jobs: usize, budget: u64) -> usize {
    let mut n = 0;
    let mut bytes = 0u64;
    for &s in sizes.iter().rev().take(jobs.max(1)) {
        if n > 0 && bytes.saturating_add(s) > budget {
            break;
        }
        bytes = bytes.saturating_add(s);
        n += 1;
    }
    n
}

pub struct Lifecycle {
    inner: Arc<Inner>,
    queue: Vec<(u64, Vec<BlobLocation>)>,
    run: Option<RunReport>,
    last: Option<RunReport>,
    note: String,
}

/// The store's lifecycle rules (none set: no rules; a damaged record is an error).
pub(crate) fn load_rules(inner: &Inner) -> Result<rules::LifecycleRules> {
    match inner.meta.store_record(rules::RECORD)? {
        Some(b) => rules::LifecycleRules::decode(&b),
        None => Ok(rules::LifecycleRules::default()),
    }
}

impl Lifecycle {
    pub(crate) fn new(inner: Arc<Inner>) -> Self {
        let last = load_last(&inner, LAST_RUN);
        Lifecycle {
            inner,
            queue: Vec::new(),
            run: None,
            last,
            note: String::new(),
        }
    }

    fn finish_run(&mut self) -> Result<()> {
        if let Some(mut run) = self.run.take() {
            run.finish();
            self.inner.meta.save_checkpoint(LAST_RUN, &run)?;
            self.last = Some(run);
        }
        Ok(())
    }
}

impl Worker for Lifecycle {
    fn name(&self) -> &'static str {
        NAME
    }

    fn step(&mut self) -> Result<Step> {
        let Some(tier) = self.inner.disks.tier() else {
            self.note = "no remote tier".into();
            return Ok(Step::Idle);
        };
        if self.queue.is_empty() {
            mover::resolve(&self.inner, &tier)?;
            let rules = load_rules(&self.inner)?;
            if rules.rules.is_empty() {
                self.note = "no lifecycle rules".into();
                return Ok(Step::Idle);
            }
            let volumes = self.inner.disks.records();
            let now = now_nanos();
            let plan = select::plan(&self.inner.meta, &volumes, &rules, now)?;
            self.note = format!("{} rule(s), tier {}", rules.rules.len(), tier.record.url());
            let found = plan.whole;
            if found.is_empty() {
                // Nothing moves whole: repack up to `jobs` mixed volumes (so that the next
                // batch uploads as many at once), then scan again.
                let take = plan.repack.len().min(tier.record.jobs().max(1));
                let done = repack::repack(&self.inner, &rules, now, &plan.repack[..take])?;
                if done.is_empty() {
                    self.finish_run()?;
                    return Ok(Step::Idle);
                }
                let run = self.run.get_or_insert_with(|| RunReport::start(0, 0));
                for r in &done {
                    tracing::info!(
                        volume = r.volume,
                        blobs = r.blobs,
                        bytes = r.bytes,
                        "repacked the selected blobs of a mixed volume"
                    );
                    run.count("volumes_repacked", 1);
                    run.count("bytes_repacked", r.bytes);
                }
                return Ok(Step::Busy);
            }
            let bytes: u64 = found
                .iter()
                .filter_map(|(id, _)| self.inner.disks.record(*id))
                .map(|r| r.size)
                .sum();
            // A run that repacked first goes on (its counters kept).
            let run = self.run.get_or_insert_with(|| RunReport::start(0, 0));
            run.items_total += found.len() as u64;
            run.bytes_total += bytes;
            self.queue = found.into_iter().rev().collect();
        }
        let sizes: Vec<u64> = self
            .queue
            .iter()
            .map(|(id, _)| self.inner.disks.record(*id).map_or(0, |r| r.size))
            .collect();
        let n = batch_len(&sizes, tier.record.jobs(), BATCH_BYTES);
        let batch = self.queue[self.queue.len() - n..].to_vec();
        if batch.is_empty() {
            return Ok(Step::Idle);
        }
        // A failure (the remote down) leaves the volumes that did not move queued: the runner
        // backs off and the next step tries them again.
        let done = mover::tier_volumes(&self.inner, &tier, &batch)?;
        let mut failed = None;
        let mut moved_ids = Vec::new();
        for (id, r) in done.results {
            let moved = match r {
                Ok(m) => m,
                Err(e) => {
                    failed.get_or_insert(e);
                    continue;
                }
            };
            moved_ids.push(id);
            if let Some(run) = &mut self.run {
                run.items_done += 1;
                run.bytes_done += moved;
                if moved > 0 {
                    run.count("volumes_tiered", 1);
                    run.count("bytes_tiered", moved);
                }
            }
            if moved > 0 {
                tracing::info!(
                    volume = id,
                    bytes = moved,
                    "moved a volume to the remote tier"
                );
            }
        }
        self.queue.retain(|(id, _)| !moved_ids.contains(id));
        if let Some(run) = &mut self.run {
            let peak = run.counters.entry("peak_uploads".into()).or_insert(0);
            *peak = (*peak).max(done.peak as u64);
        }
        if let Some(e) = failed {
            return Err(e);
        }
        // An empty queue: the next step scans again (a repack may have made a volume that can
        // move whole); the run ends when a scan finds nothing to do.
        Ok(Step::Busy)
    }

    fn progress(&self) -> Progress {
        let run = self.run.as_ref();
        let mut p = Progress {
            done: run.map_or(0, |r| r.items_done),
            total: run.map_or(0, |r| r.items_total),
            queue: self.queue.len() as u64,
            note: self.note.clone(),
            current: self.run.clone(),
            last: self.last.clone(),
            ..Default::default()
        };
        if let Some(r) = run.or(self.last.as_ref()) {
            p.counters = r.counters.clone();
        }
        for c in [
            "volumes_tiered",
            "bytes_tiered",
            "peak_uploads",
            "volumes_repacked",
            "bytes_repacked",
        ] {
            p.counters.entry(c.into()).or_insert(0);
        }
        p
    }

    fn on_resume(&mut self) {
        self.queue.clear();
        self.run = None;
        self.last = load_last(&self.inner, LAST_RUN);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_takes_up_to_jobs_volumes_within_the_memory_budget() {
        // The queue is worked from its end.
        assert_eq!(batch_len(&[1, 1, 1, 1, 1, 1], 4, 100), 4);
        assert_eq!(batch_len(&[1, 1], 4, 100), 2);
        assert_eq!(batch_len(&[], 4, 100), 0);
        assert_eq!(batch_len(&[5, 5, 60, 50], 4, 100), 1);
        assert_eq!(batch_len(&[5, 5, 40, 50], 4, 100), 4);
        assert_eq!(batch_len(&[5, 10, 40, 50], 4, 100), 3);
        // One volume larger than the budget still goes, alone.
        assert_eq!(batch_len(&[1, 500], 4, 100), 1);
        assert_eq!(batch_len(&[1, 1, 1], 0, 100), 1);
    }
}
