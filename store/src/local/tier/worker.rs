//! The lifecycle daemon: moves the volumes the lifecycle rules select (select.rs) to the
//! remote tier, one volume per step, on the one worker pattern (worker.rs: status, throttle,
//! pause/resume, backoff). While the remote is unreachable its steps fail and the runner backs
//! off and tries again; local reads and writes are not affected. A run is one batch: from the
//! scan that finds volumes to move until its queue is empty.

use std::sync::Arc;

use crate::error::Result;
use crate::local::placement::load_last;
use crate::local::tier::{mover, rules, select};
use crate::local::volume::{now_nanos, BlobLocation};
use crate::local::worker::{Progress, RunReport, Step, Worker};
use crate::local::Inner;

/// The checkpoint under which the daemon keeps its last finished run.
const LAST_RUN: &str = "lifecycle-last-run";

/// The lifecycle daemon's name.
pub const NAME: &str = "lifecycle";

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
            let found = select::scan(&self.inner.meta, &volumes, &rules, now_nanos())?;
            self.note = format!("{} rule(s), tier {}", rules.rules.len(), tier.record.url());
            if found.is_empty() {
                return Ok(Step::Idle);
            }
            let bytes: u64 = found
                .iter()
                .filter_map(|(id, _)| self.inner.disks.record(*id))
                .map(|r| r.size)
                .sum();
            self.run = Some(RunReport::start(found.len() as u64, bytes));
            self.queue = found.into_iter().rev().collect();
        }
        let Some((id, locs)) = self.queue.last().cloned() else {
            return Ok(Step::Idle);
        };
        // A failure (the remote down) leaves the volume queued: the runner backs off and the
        // next step tries it again.
        let moved = mover::tier_volume(&self.inner, &tier, id, &locs)?;
        self.queue.pop();
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
        if self.queue.is_empty() {
            self.finish_run()?;
            return Ok(Step::Idle);
        }
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
        for c in ["volumes_tiered", "bytes_tiered"] {
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
