//! One pattern for every background daemon (placement, scrub, gc), after garage's workers.
//!
//! A [`Worker`] has a name and does its job in small units ([`Worker::step`]); it persists its
//! own checkpoint after each unit so a restart resumes where it stopped. The runner around it
//! owns everything else, the same for all: a thread, a [`WorkerStatus`] (state, progress,
//! counters, last error), a throttle (after a unit that took `t`, sleep `t * tranquility`, so a
//! tranquility of 2 uses at most a third of the disk's time), pausing through a control file
//! (`<store>/control/<name>` containing `paused`, so `objfs scrub --pause` works while another
//! process owns the store), a status file (`<store>/status/<name>.json`) for `objfs status`,
//! and a clean, prompt stop.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::local::volume::now_nanos;

/// What a unit of work found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Did some work; more may be pending.
    Busy,
    /// Nothing to do now.
    Idle,
}

/// Progress a worker reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Units done and total in the current pass (total 0 = unknown).
    pub done: u64,
    pub total: u64,
    /// Units waiting.
    pub queue: u64,
    /// What it found and did (bytes checked, repaired, reclaimed, ...).
    pub counters: BTreeMap<String, u64>,
    /// A line about the current or last pass.
    pub note: String,
}

/// A background job done in small units.
pub trait Worker: Send + 'static {
    fn name(&self) -> &'static str;
    /// Does one unit of work (and persists the worker's checkpoint).
    fn step(&mut self) -> Result<Step>;
    fn progress(&self) -> Progress;
}

/// The state of a worker, as `objfs status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerStatus {
    pub name: String,
    /// running, idle, paused, error, stopped.
    pub state: String,
    pub progress: Progress,
    pub last_error: Option<String>,
    /// When this status was written (ns since the epoch).
    pub updated: u64,
}

/// How a runner paces its worker.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Sleep this many times the duration of each unit of work.
    pub tranquility: u32,
    /// Sleep this long when the worker is idle or failed.
    pub idle_interval: Duration,
    /// The store directory (for control and status files).
    pub store: PathBuf,
}

/// Whether `<store>/control/<name>` asks the worker to pause.
pub fn is_paused(store: &Path, name: &str) -> bool {
    std::fs::read_to_string(store.join("control").join(name))
        .map(|s| s.trim() == "paused")
        .unwrap_or(false)
}

/// Pauses or resumes a worker of the store in `store` (whichever process runs it).
pub fn set_paused(store: &Path, name: &str, paused: bool) -> std::io::Result<()> {
    let dir = store.join("control");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join(name),
        if paused { "paused\n" } else { "running\n" },
    )
}

/// Reads the status file a worker of the store in `store` last wrote.
pub fn read_status(store: &Path, name: &str) -> Option<WorkerStatus> {
    let text = std::fs::read_to_string(store.join("status").join(format!("{name}.json"))).ok()?;
    serde_json::from_str(&text).ok()
}

fn write_status(store: &Path, st: &WorkerStatus) {
    let dir = store.join("status");
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    if let Ok(text) = serde_json::to_string_pretty(st) {
        let tmp = dir.join(format!("{}.json.tmp", st.name));
        if std::fs::write(&tmp, text).is_ok() {
            let _ = std::fs::rename(&tmp, dir.join(format!("{}.json", st.name)));
        }
    }
}

/// Stop signal shared by a runner and its handle.
#[derive(Default)]
struct Stop {
    flag: AtomicBool,
    lock: Mutex<()>,
    cv: Condvar,
}

impl Stop {
    /// Sleeps up to `d`; returns true when asked to stop.
    fn sleep(&self, d: Duration) -> bool {
        if self.flag.load(Ordering::Acquire) {
            return true;
        }
        let g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let _ = self
            .cv
            .wait_timeout_while(g, d, |_| !self.flag.load(Ordering::Acquire));
        self.flag.load(Ordering::Acquire)
    }
}

/// A running worker.
pub struct WorkerHandle {
    name: &'static str,
    status: Arc<Mutex<WorkerStatus>>,
    stop: Arc<Stop>,
    thread: Option<JoinHandle<()>>,
}

impl WorkerHandle {
    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn status(&self) -> WorkerStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Asks the worker to stop after its current unit, and waits for it.
    pub fn stop(&mut self) {
        self.stop.flag.store(true, Ordering::Release);
        self.stop.cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `worker` on its own thread until stopped.
pub fn spawn(mut worker: Box<dyn Worker>, cfg: RunnerConfig) -> std::io::Result<WorkerHandle> {
    let name = worker.name();
    let status = Arc::new(Mutex::new(WorkerStatus {
        name: name.to_string(),
        state: "starting".into(),
        ..Default::default()
    }));
    let stop = Arc::new(Stop::default());
    let (st, sp) = (status.clone(), stop.clone());
    let thread = std::thread::Builder::new()
        .name(format!("objfs-{name}"))
        .spawn(move || {
            let mut last_write = Instant::now() - Duration::from_secs(10);
            loop {
                if sp.flag.load(Ordering::Acquire) {
                    break;
                }
                let (state, sleep, err) = if is_paused(&cfg.store, name) {
                    ("paused", Duration::from_millis(500), None)
                } else {
                    let t0 = Instant::now();
                    match worker.step() {
                        Ok(Step::Busy) => ("running", t0.elapsed() * cfg.tranquility, None),
                        Ok(Step::Idle) => ("idle", cfg.idle_interval, None),
                        Err(e) => {
                            tracing::error!(worker = name, error = %e, "worker step failed");
                            ("error", cfg.idle_interval, Some(e.to_string()))
                        }
                    }
                };
                let snapshot = {
                    let mut s = st.lock().unwrap_or_else(|p| p.into_inner());
                    s.state = state.into();
                    s.progress = worker.progress();
                    if err.is_some() {
                        s.last_error = err;
                    }
                    s.updated = now_nanos();
                    s.clone()
                };
                if state != "running" || last_write.elapsed() >= Duration::from_secs(1) {
                    write_status(&cfg.store, &snapshot);
                    last_write = Instant::now();
                }
                if sp.sleep(sleep) {
                    break;
                }
            }
            let mut s = st.lock().unwrap_or_else(|p| p.into_inner());
            s.state = "stopped".into();
            s.updated = now_nanos();
            write_status(&cfg.store, &s);
        })?;
    Ok(WorkerHandle {
        name,
        status,
        stop,
        thread: Some(thread),
    })
}

/// Runs `worker` in the calling thread until it is idle (the `--now` commands), reporting
/// progress after every unit. Same steps as the daemon, no throttle.
pub fn run_to_idle(
    worker: &mut dyn Worker,
    mut on_progress: impl FnMut(&Progress),
) -> Result<Progress> {
    loop {
        let step = worker.step()?;
        on_progress(&worker.progress());
        if step == Step::Idle {
            return Ok(worker.progress());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counter {
        n: u64,
        limit: u64,
    }

    impl Worker for Counter {
        fn name(&self) -> &'static str {
            "counter"
        }
        fn step(&mut self) -> Result<Step> {
            if self.n < self.limit {
                self.n += 1;
                Ok(Step::Busy)
            } else {
                Ok(Step::Idle)
            }
        }
        fn progress(&self) -> Progress {
            Progress {
                done: self.n,
                total: self.limit,
                ..Default::default()
            }
        }
    }

    #[test]
    fn runs_pauses_reports_and_stops() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = RunnerConfig {
            tranquility: 0,
            idle_interval: Duration::from_millis(20),
            store: dir.path().to_path_buf(),
        };
        let mut h = spawn(Box::new(Counter { n: 0, limit: 50 }), cfg).unwrap();
        let t0 = Instant::now();
        while h.status().progress.done < 50 && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(h.status().progress.done, 50);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(read_status(dir.path(), "counter").unwrap().state, "idle");
        set_paused(dir.path(), "counter", true).unwrap();
        std::thread::sleep(Duration::from_millis(700));
        assert_eq!(h.status().state, "paused");
        let t = Instant::now();
        h.stop();
        assert!(t.elapsed() < Duration::from_secs(2), "stop must be prompt");
        assert_eq!(read_status(dir.path(), "counter").unwrap().state, "stopped");
    }

    #[test]
    fn run_to_idle_finishes_the_job() {
        let mut c = Counter { n: 0, limit: 7 };
        let mut seen = 0;
        let p = run_to_idle(&mut c, |_| seen += 1).unwrap();
        assert_eq!(p.done, 7);
        assert_eq!(seen, 8);
    }
}
