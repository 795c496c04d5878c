//! The store's daemons in the process that owns it: which run ([`DaemonConfig`]), starting
//! them with the one watcher that turns control-file changes into pause/resume commands,
//! pausing and resuming them by command, reporting what each did ([`DaemonReport`]), and
//! running the same workers to completion on demand (`place --now`, `scrub --now`,
//! `gc --now`), with the daemon of the same name paused meanwhile when it runs here.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};
use crate::local::control::{self, ControlWatcher};
use crate::local::gc::{Gc, GcOptions};
use crate::local::placement::Placement;
use crate::local::scrub::Scrub;
use crate::local::tier::scrub::RemoteScrub;
use crate::local::tier::worker::Lifecycle;
use crate::local::volume::{now_nanos, BlobLocation};
use crate::local::worker::{self, Progress, RunnerConfig, Worker, WorkerState, WorkerStatus};
use crate::local::{Inner, LocalStore};

/// Which daemons run inside the process that owns the store, and how hard they work.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub placement: bool,
    pub scrub: bool,
    pub gc: bool,
    /// The lifecycle daemon (tier/worker.rs): idle unless the store has a tier and rules.
    pub lifecycle: bool,
    /// Each daemon sleeps this many times the duration of each unit of work.
    pub tranquility: u32,
    /// Seconds between checks for work when idle.
    pub idle_interval: Duration,
    /// Sealed volumes are erasure-coded once they are this old.
    pub placement_min_age: Duration,
    /// Time between the starts of two scrub passes.
    pub scrub_interval: Duration,
    /// How the scrub daemon checks the remote tier.
    pub scrub_remote: RemoteScrub,
    pub gc_options: GcOptions,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            placement: true,
            scrub: true,
            gc: true,
            lifecycle: true,
            tranquility: 2,
            idle_interval: Duration::from_secs(30),
            placement_min_age: Duration::from_secs(60),
            scrub_interval: Duration::from_secs(7 * 24 * 3600),
            scrub_remote: RemoteScrub::default(),
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
                cfg.scrub_remote.clone(),
            )?));
        }
        if cfg.gc {
            let w = Gc::new(self.inner.clone(), cfg.gc_options.clone());
            daemons.push(Box::new(w));
        }
        if cfg.lifecycle {
            daemons.push(Box::new(Lifecycle::new(self.inner.clone())));
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

    /// What each daemon (placement, scrub, gc) is doing and did: live figures for the ones
    /// running in this process, and for the others what the store recorded of their last run.
    pub fn daemon_reports(&self) -> Result<Vec<DaemonReport>> {
        let root = &self.inner.root;
        let mut out = Vec::new();
        for name in DAEMONS {
            let pause_requested = control::is_paused(root, name);
            let report = match self.workers.iter().find(|w| w.name() == name) {
                Some(w) => {
                    let st = w.status();
                    DaemonReport {
                        name: name.to_string(),
                        running: true,
                        state: Some(st.state),
                        pause_requested,
                        progress: st.progress,
                        last_error: st.last_error,
                    }
                }
                None => DaemonReport {
                    name: name.to_string(),
                    running: false,
                    state: None,
                    pause_requested,
                    progress: self.idle_worker(name, Duration::ZERO)?.progress(),
                    last_error: None,
                },
            };
            out.push(report);
        }
        Ok(out)
    }

    /// A fresh worker of daemon `name` (its checkpoint and last run loaded).
    fn idle_worker(&self, name: &str, arg: Duration) -> Result<Box<dyn Worker>> {
        Ok(match name {
            "placement" => Box::new(Placement::new(self.inner.clone(), arg)),
            "scrub" => Box::new(Scrub::new(self.inner.clone(), arg, RemoteScrub::default())?),
            "gc" => Box::new(Gc::new(self.inner.clone(), GcOptions::default())),
            "lifecycle" => Box::new(Lifecycle::new(self.inner.clone())),
            other => {
                return Err(StoreError::InvalidArgument(format!(
                    "no daemon called {other:?} (there are placement, scrub, gc and lifecycle)"
                )))
            }
        })
    }

    /// Pauses or resumes daemon `name`: a command to the worker when it runs in this process,
    /// and the control file, so that the next process that runs the daemons starts it in the
    /// same state. Returns whether a running worker got the command.
    pub fn set_daemon_paused(&self, name: &str, paused: bool) -> Result<bool> {
        if !DAEMONS.contains(&name) {
            return Err(StoreError::InvalidArgument(format!(
                "no daemon called {name:?} (there are placement, scrub, gc and lifecycle)"
            )));
        }
        control::set_paused(&self.inner.root, name, paused)
            .map_err(|e| StoreError::io("writing a daemon's control file", e))?;
        Ok(match self.workers.iter().find(|w| w.name() == name) {
            Some(w) => {
                if paused {
                    w.pause()
                } else {
                    w.resume()
                }
                true
            }
            None => false,
        })
    }

    /// Runs `job` with the daemon `name` of this process (if it runs here) paused, so the two
    /// never work on the same thing; the daemon is resumed afterwards unless it was paused
    /// before, and re-reads its checkpoint when it resumes.
    pub(crate) fn with_daemon_paused<T>(
        &self,
        name: &str,
        job: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        let Some(w) = self.workers.iter().find(|w| w.name() == name) else {
            let out = job();
            // No daemon here: record what the run left in the status file `objfs status`
            // falls back to, so it never shows older figures than the store holds.
            if let Ok(worker) = self.idle_worker(name, Duration::ZERO) {
                let st = WorkerStatus {
                    name: name.to_string(),
                    state: WorkerState::Done,
                    progress: worker.progress(),
                    last_error: out.as_ref().err().map(|e| e.to_string()),
                    updated: now_nanos(),
                };
                worker::record_status(&self.inner.root, &st);
            }
            return out;
        };
        let was_paused = w.status().state == WorkerState::Paused;
        w.pause();
        let t0 = Instant::now();
        while w.status().state != WorkerState::Paused && w.status().state != WorkerState::Done {
            if t0.elapsed() > Duration::from_secs(600) {
                w.resume();
                return Err(StoreError::Metadata(format!(
                    "the {name} daemon did not pause within 10 minutes"
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let out = job();
        if !was_paused {
            let resumed_at = now_nanos();
            w.resume();
            // Until the worker has re-read its checkpoint and published its status, a report
            // would show its figures from before the job.
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(5) {
                let st = w.status();
                if st.state == WorkerState::Done
                    || (st.state != WorkerState::Paused && st.updated >= resumed_at)
                {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        out
    }

    /// Seals the open volume and erasure-codes every sealed volume now (`objfs place --now`).
    pub fn place_now(&self, mut on_progress: impl FnMut(&Progress)) -> Result<Progress> {
        self.place_now_until(|p| {
            on_progress(p);
            true
        })
        .map(|(p, _)| p)
    }

    /// [`LocalStore::place_now`] that `on_progress` can stop by returning false; also says
    /// whether the job ran to its end.
    pub fn place_now_until(
        &self,
        on_progress: impl FnMut(&Progress) -> bool,
    ) -> Result<(Progress, bool)> {
        self.with_daemon_paused("placement", || {
            self.inner.disks.seal_active(&self.inner.meta)?;
            self.inner.sync_all()?;
            let mut w = Placement::new(self.inner.clone(), Duration::ZERO);
            worker::run_until(&mut w, on_progress)
        })
    }

    /// Runs a whole scrub pass now (resuming one a killed process left unfinished).
    pub fn scrub_now(&self, mut on_progress: impl FnMut(&Progress)) -> Result<Progress> {
        self.scrub_now_until(|p| {
            on_progress(p);
            true
        })
        .map(|(p, _)| p)
    }

    /// [`LocalStore::scrub_now`] that `on_progress` can stop by returning false (the pass is
    /// checkpointed: the next one resumes it).
    pub fn scrub_now_until(
        &self,
        on_progress: impl FnMut(&Progress) -> bool,
    ) -> Result<(Progress, bool)> {
        self.scrub_now_remote_until(RemoteScrub::default(), on_progress)
    }

    /// [`LocalStore::scrub_now_until`] checking the remote tier as `remote` says (whole or
    /// sampled, under a bandwidth cap).
    pub fn scrub_now_remote_until(
        &self,
        remote: RemoteScrub,
        on_progress: impl FnMut(&Progress) -> bool,
    ) -> Result<(Progress, bool)> {
        self.with_daemon_paused("scrub", || {
            self.inner.sync_all()?;
            let mut w = Scrub::new(self.inner.clone(), Duration::ZERO, remote)?;
            w.start_now();
            worker::run_until(&mut w, on_progress)
        })
    }

    /// Runs every gc phase once now (a retention pass included, or the rest of one a
    /// stopped process left unfinished).
    pub fn gc_now(
        &self,
        opts: GcOptions,
        mut on_progress: impl FnMut(&Progress),
    ) -> Result<Progress> {
        self.gc_now_until(opts, |p| {
            on_progress(p);
            true
        })
        .map(|(p, _)| p)
    }

    /// [`LocalStore::gc_now`] that `on_progress` can stop by returning false.
    pub fn gc_now_until(
        &self,
        opts: GcOptions,
        on_progress: impl FnMut(&Progress) -> bool,
    ) -> Result<(Progress, bool)> {
        self.with_daemon_paused("gc", || {
            self.inner.sync_all()?;
            let mut w = Gc::new(self.inner.clone(), opts);
            w.force_retention();
            worker::run_until(&mut w, on_progress)
        })
    }
}

impl LocalStore {
    /// Moves every volume the lifecycle rules select to the remote tier now (`objfs lifecycle
    /// --now`), finishing or rolling back a move a crash left first; `on_progress` can stop it
    /// between two volumes by returning false.
    pub fn lifecycle_now_until(
        &self,
        on_progress: impl FnMut(&Progress) -> bool,
    ) -> Result<(Progress, bool)> {
        self.with_daemon_paused("lifecycle", || {
            self.inner.disks.seal_active(&self.inner.meta)?;
            self.inner.sync_all()?;
            let mut w = Lifecycle::new(self.inner.clone());
            worker::run_until(&mut w, on_progress)
        })
    }
}

/// The daemons a store runs, by name.
pub const DAEMONS: [&str; 4] = ["placement", "scrub", "gc", "lifecycle"];

/// What one daemon is doing and did, as `objfs status` and `objfs scrub|place|gc` report it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaemonReport {
    pub name: String,
    /// Whether the daemon runs (in the process that owns the store).
    pub running: bool,
    /// Its state when it runs.
    pub state: Option<WorkerState>,
    /// Whether the control file asks it to be paused (it starts paused next time).
    pub pause_requested: bool,
    pub progress: Progress,
    pub last_error: Option<String>,
}
