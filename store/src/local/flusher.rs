//! The background flusher: every `flush_interval` (5 s by default), and sooner when many rows
//! wait in memory, it checkpoints the metadata log: the writes that did not ask for durability
//! are made durable with the same group sync durable writes use (fsync the volumes written,
//! then the log), and the logged rows move into sled ([`crate::local::meta::Meta::checkpoint_log`]).
//! It acts only when something changed. It is a [`Worker`] like the daemons; it holds the store
//! weakly and ends when the store is gone.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::local::worker::{self, Backoff, Progress, RunnerConfig, Step, Worker, WorkerHandle};
use crate::local::Inner;

/// Syncs the store when metadata or volumes changed since its last sync.
pub(crate) struct Flusher {
    inner: Weak<Inner>,
    /// The metadata generation the last sync covered.
    flushed: u64,
    syncs: u64,
    interval: Duration,
    last: Instant,
}

/// Rows in memory that trigger a checkpoint before the interval is up.
const EARLY_ROWS: usize = crate::local::meta::MAX_ACTIVE_ROWS / 4;
/// How often the flusher looks at the backlog.
const POLL: Duration = Duration::from_millis(100);

impl Worker for Flusher {
    fn name(&self) -> &'static str {
        "flusher"
    }

    fn step(&mut self) -> Result<Step> {
        let Some(inner) = self.inner.upgrade() else {
            return Ok(Step::Done);
        };
        let generation = inner.generation.load(Ordering::Acquire);
        let (logged, rows) = inner.meta.log_backlog();
        let due = self.last.elapsed() >= self.interval;
        let changed = logged || generation != self.flushed || inner.disks.has_dirty();
        if rows >= EARLY_ROWS || (due && changed) {
            if !inner.meta.checkpoint_log(|| inner.sync_all())? {
                inner.sync_all()?;
            }
            self.flushed = generation;
            self.syncs += 1;
            self.last = Instant::now();
        }
        Ok(Step::Idle)
    }

    fn progress(&self) -> Progress {
        let mut p = Progress {
            note: "group commit of non-durable writes".into(),
            ..Default::default()
        };
        p.counters.insert("syncs".into(), self.syncs);
        p
    }
}

/// Starts the flusher of a store (no status file: it is part of every open store, not a
/// daemon the operator steers). A failed sync is retried after a backoff of one interval,
/// doubling up to four.
pub(crate) fn start(inner: &Arc<Inner>) -> std::io::Result<WorkerHandle> {
    let interval = inner.cfg.flush_interval.max(Duration::from_millis(1));
    let cfg = RunnerConfig {
        tranquility: 0,
        idle_interval: interval.min(POLL),
        backoff: Backoff {
            initial: interval,
            max: interval * 4,
        },
        status_dir: None,
        start_paused: false,
    };
    let flusher = Flusher {
        inner: Arc::downgrade(inner),
        flushed: 0,
        syncs: 0,
        interval,
        last: Instant::now(),
    };
    worker::spawn(Box::new(flusher), cfg)
}
