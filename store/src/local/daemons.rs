//! The store's daemons in the process that owns it: which run ([`DaemonConfig`]), starting
//! them with the one watcher that turns control-file changes into pause/resume commands, and
//! running the same workers to completion on demand (`place --now`, `scrub --now`,
//! `gc --now`).

use std::collections::HashMap;
use std::time::Duration;

use crate::error::{Result, StoreError};
use crate::local::control::{self, ControlWatcher};
use crate::local::gc::{Gc, GcOptions};
use crate::local::placement::Placement;
use crate::local::scrub::Scrub;
use crate::local::volume::BlobLocation;
use crate::local::worker::{self, Progress, RunnerConfig, Worker, WorkerStatus};
use crate::local::{Inner, LocalStore};

/// Which daemons run inside the process that owns the store, and how hard they work.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub placement: bool,
    pub scrub: bool,
    pub gc: bool,
    /// Each daemon sleeps this many times the duration of each unit of work.
    pub tranquility: u32,
    /// Seconds between checks for work when idle.
    pub idle_interval: Duration,
    /// Sealed volumes are erasure-coded once they are this old.
    pub placement_min_age: Duration,
    /// Time between the starts of two scrub passes.
    pub scrub_interval: Duration,
    pub gc_options: GcOptions,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            placement: true,
            scrub: true,
            gc: true,
            tranquility: 2,
            idle_interval: Duration::from_secs(30),
            placement_min_age: Duration::from_secs(60),
            scrub_interval: Duration::from_secs(7 * 24 * 3600),
            gc_options: GcOptions::default(),
        }
    }
}

/// A duration in nanoseconds (saturating).
pub(crate) fn nanos(d: Duration) -> u64 {
    d.as_nanos().min(u64::MAX as u128) as u64
}

/// Live blob locations by volume.
pub(crate) fn live_blobs(inner: &Inner) -> Result<HashMap<u64, Vec<BlobLocation>>> {
    Ok(inner
        .meta
        .blobs_by_volume()?
        .into_iter()
        .map(|(v, b)| (v, b.into_iter().map(|(l, _, _)| l).collect()))
        .collect())
}

impl LocalStore {
    /// Starts the background daemons in this process; they stop when the store closes. A
    /// daemon whose control file says `paused` starts paused; changes of the control files
    /// reach the daemons as commands (control.rs).
    pub fn start_daemons(&mut self, cfg: DaemonConfig) -> Result<()> {
        let root = self.inner.root.clone();
        let mut daemons: Vec<Box<dyn Worker>> = Vec::new();
        if cfg.placement {
            let w = Placement::new(self.inner.clone(), cfg.placement_min_age);
            daemons.push(Box::new(w));
        }
        if cfg.scrub {
            daemons.push(Box::new(Scrub::new(
                self.inner.clone(),
                cfg.scrub_interval,
            )?));
        }
        if cfg.gc {
            let w = Gc::new(self.inner.clone(), cfg.gc_options.clone());
            daemons.push(Box::new(w));
        }
        let started = |e| StoreError::io("starting a daemon thread", e);
        let mut controls = Vec::new();
        for w in daemons {
            let mut runner = RunnerConfig::for_store(&root, cfg.tranquility, cfg.idle_interval);
            runner.start_paused = control::is_paused(&root, w.name());
            let handle = worker::spawn(w, runner.clone()).map_err(started)?;
            controls.push((handle.control(), runner.start_paused));
            self.workers.push(handle);
        }
        let watcher = ControlWatcher::new(&root, controls);
        let watcher =
            worker::spawn(Box::new(watcher), ControlWatcher::runner()).map_err(started)?;
        self.control = Some(watcher);
        Ok(())
    }

    /// The daemons running in this process.
    pub fn daemon_status(&self) -> Vec<WorkerStatus> {
        self.workers.iter().map(|w| w.status()).collect()
    }

    /// Seals the open volume and erasure-codes every sealed volume now (`objfs place --now`).
    pub fn place_now(&self, on_progress: impl FnMut(&Progress)) -> Result<Progress> {
        self.inner.disks.seal_active(&self.inner.meta)?;
        self.inner.sync_all()?;
        let mut w = Placement::new(self.inner.clone(), Duration::ZERO);
        worker::run_to_idle(&mut w, on_progress)
    }

    /// Runs a whole scrub pass now (resuming one a killed process left unfinished).
    pub fn scrub_now(&self, on_progress: impl FnMut(&Progress)) -> Result<Progress> {
        self.inner.sync_all()?;
        let mut w = Scrub::new(self.inner.clone(), Duration::ZERO)?;
        w.start_now();
        worker::run_to_idle(&mut w, on_progress)
    }

    /// Runs every gc phase once now.
    pub fn gc_now(&self, opts: GcOptions, on_progress: impl FnMut(&Progress)) -> Result<Progress> {
        self.inner.sync_all()?;
        let mut w = Gc::new(self.inner.clone(), opts);
        worker::run_to_idle(&mut w, on_progress)
    }
}
