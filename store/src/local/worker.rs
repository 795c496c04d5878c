//! One pattern for every background task of the local store (placement, scrub, gc, the
//! flusher, the control-file watcher), after garage's workers.
//!
//! A [`Worker`] has a name and does its job in small units ([`Worker::step`]); it persists its
//! own checkpoint after each unit so a restart resumes where it stopped. The runner around it
//! owns everything else, the same for all:
//!
//! * a thread, and a [`WorkerStatus`]: a [`WorkerState`], progress, counters, last error;
//! * a throttle: after a unit that took `t`, sleep `t * tranquility` (state `throttled`), so a
//!   tranquility of 2 uses at most a third of the disk's time; when idle, wait `idle_interval`;
//! * errors back off: after the n-th failure in a row the runner waits `initial * 2^(n-1)`,
//!   at most `max` ([`Backoff`]), then tries again;
//! * commands over a channel ([`Command`]): [`WorkerHandle::pause`], [`WorkerHandle::resume`]
//!   and a clean, prompt stop, each waking the worker from its sleep;
//! * optionally a status file (`<store>/status/<name>.json`) for `objfs status`, written when
//!   the state changes and at most once a second otherwise.
//!
//! ```text
//!            step ok, more to do           step ok, nothing to do
//!   Busy ──────────────────────▶ Throttled      Busy ─────▶ Idle
//!    ▲  ◀── after t*tranquility ──┘              ▲ ◀─ after idle_interval ─┘
//!    │  step failed ─▶ BackingOff ─ after the backoff ─▶ Busy
//!    │  Pause (any time) ─▶ Paused ─ Resume ─▶ Busy
//!    └─ Stop, or the worker says it is finished ─▶ Done
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::local::atomic_file;
use crate::local::volume::now_nanos;

/// What a unit of work found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Did some work; more may be pending.
    Busy,
    /// Nothing to do now.
    Idle,
    /// The job is over for good (the runner ends).
    Done,
}

/// What a worker is doing, as `objfs status` shows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    /// Doing a unit of work.
    #[serde(alias = "running", alias = "starting")]
    Busy,
    /// Resting between units of work (tranquility).
    Throttled,
    /// Nothing to do; looks again after `idle_interval`.
    #[default]
    Idle,
    /// Paused by a command; does nothing until resumed.
    Paused,
    /// The last unit failed; tries again after a backoff.
    #[serde(alias = "error")]
    BackingOff,
    /// Stopped, or finished for good.
    #[serde(alias = "stopped")]
    Done,
}

impl std::fmt::Display for WorkerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WorkerState::Busy => "busy",
            WorkerState::Throttled => "throttled",
            WorkerState::Idle => "idle",
            WorkerState::Paused => "paused",
            WorkerState::BackingOff => "backing off after an error",
            WorkerState::Done => "done",
        })
    }
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
    /// The run in progress (a placement batch, a scrub pass, a round of gc phases), if any.
    #[serde(default)]
    pub current: Option<RunReport>,
    /// The last run that finished (in this process or, persisted, in an earlier one).
    #[serde(default)]
    pub last: Option<RunReport>,
}

/// One run of a daemon: when, how far, and what it found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunReport {
    /// When the run started (ns since the epoch).
    pub started: u64,
    /// When it finished (ns since the epoch); 0 while it runs.
    pub finished: u64,
    /// Units (volumes, phases, disk members) done and to do; total 0 = unknown.
    pub items_done: u64,
    pub items_total: u64,
    /// Bytes done and to do; total 0 = unknown.
    pub bytes_done: u64,
    pub bytes_total: u64,
    /// What it found and did, by name (the same names as [`Progress::counters`]).
    pub counters: BTreeMap<String, u64>,
}

impl RunReport {
    /// A run starting now.
    pub fn start(items_total: u64, bytes_total: u64) -> RunReport {
        RunReport {
            started: now_nanos(),
            items_total,
            bytes_total,
            ..Default::default()
        }
    }

    /// Adds `n` to counter `name`.
    pub fn count(&mut self, name: &str, n: u64) {
        *self.counters.entry(name.to_string()).or_insert(0) += n;
    }

    /// Marks the run finished now.
    pub fn finish(&mut self) {
        self.finished = now_nanos().max(self.started);
    }
}

/// A background job done in small units.
pub trait Worker: Send + 'static {
    fn name(&self) -> &'static str;
    /// Does one unit of work (and persists the worker's checkpoint).
    fn step(&mut self) -> Result<Step>;
    fn progress(&self) -> Progress;
    /// Called when the worker is resumed after a pause: someone else (a `--now` run in the
    /// same process) may have done its work meanwhile, so a worker re-reads its checkpoint
    /// here.
    fn on_resume(&mut self) {}
}

/// The state of a worker, as `objfs status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerStatus {
    pub name: String,
    pub state: WorkerState,
    pub progress: Progress,
    pub last_error: Option<String>,
    /// When this status was written (ns since the epoch).
    pub updated: u64,
}

/// How long a worker waits after failures in a row: `initial`, doubling, at most `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// The wait after the `failures`-th failure in a row (1 = the first).
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(30);
        self.initial
            .checked_mul(1u32 << doublings)
            .unwrap_or(self.max)
            .min(self.max)
    }
}

/// How a runner paces its worker.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Sleep this many times the duration of each unit of work.
    pub tranquility: u32,
    /// Sleep this long when the worker is idle.
    pub idle_interval: Duration,
    /// Waits after failures.
    pub backoff: Backoff,
    /// Where to publish `<name>.json` status files (`<store>/status`); none: memory only.
    pub status_dir: Option<PathBuf>,
    /// Start paused (a pause asked for before the worker started).
    pub start_paused: bool,
}

impl RunnerConfig {
    /// A worker of the store in `store`, publishing its status there.
    pub fn for_store(store: &Path, tranquility: u32, idle_interval: Duration) -> RunnerConfig {
        RunnerConfig {
            tranquility,
            idle_interval,
            backoff: Backoff::default(),
            status_dir: Some(status_dir(store)),
            start_paused: false,
        }
    }
}

/// What can be asked of a running worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Stop doing work (after the current unit) until resumed.
    Pause,
    Resume,
    /// End after the current unit.
    Stop,
}

/// Sends commands to one worker; cheap to clone (for a watcher that steers several).
#[derive(Debug, Clone)]
pub struct WorkerControl {
    name: &'static str,
    tx: Sender<Command>,
}

impl WorkerControl {
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Sends a command; false when the worker has ended.
    pub fn send(&self, c: Command) -> bool {
        self.tx.send(c).is_ok()
    }
}

/// A running worker.
pub struct WorkerHandle {
    status: Arc<Mutex<WorkerStatus>>,
    control: WorkerControl,
    thread: Option<JoinHandle<()>>,
}

impl WorkerHandle {
    pub fn name(&self) -> &'static str {
        self.control.name
    }

    pub fn status(&self) -> WorkerStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Asks the worker to pause after its current unit.
    pub fn pause(&self) {
        self.control.send(Command::Pause);
    }

    /// Asks a paused worker to go on.
    pub fn resume(&self) {
        self.control.send(Command::Resume);
    }

    /// A sender of commands to this worker.
    pub fn control(&self) -> WorkerControl {
        self.control.clone()
    }

    /// Asks the worker to stop after its current unit, and waits for it.
    pub fn stop(&mut self) {
        self.control.send(Command::Stop);
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

/// `<store>/status`.
fn status_dir(store: &Path) -> PathBuf {
    store.join("status")
}

/// Reads the status file a worker of the store in `store` last wrote.
pub fn read_status(store: &Path, name: &str) -> Option<WorkerStatus> {
    let text = std::fs::read_to_string(status_dir(store).join(format!("{name}.json"))).ok()?;
    serde_json::from_str(&text).ok()
}

fn write_status(dir: &Path, st: &WorkerStatus) {
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    if let Ok(text) = serde_json::to_string_pretty(st) {
        let path = dir.join(format!("{}.json", st.name));
        let _ = atomic_file::replace(&path, text.as_bytes(), false);
    }
}

/// The loop around one worker, on its own thread.
struct Runner {
    worker: Box<dyn Worker>,
    cfg: RunnerConfig,
    status: Arc<Mutex<WorkerStatus>>,
    commands: Receiver<Command>,
    paused: bool,
    failures: u32,
    /// The state last written to the status file, and when.
    written: Option<(WorkerState, Instant)>,
}

impl Runner {
    fn run(mut self) {
        loop {
            let (state, wait, error) = if self.paused {
                (WorkerState::Paused, None, None)
            } else {
                self.step()
            };
            self.publish(state, error);
            if state == WorkerState::Done || !self.wait(wait) {
                break;
            }
        }
        self.publish(WorkerState::Done, None);
    }

    /// Runs one unit: the state it leaves the worker in, how long to wait (`None`: until a
    /// command), and the error it failed with.
    fn step(&mut self) -> (WorkerState, Option<Duration>, Option<String>) {
        self.set(|s| s.state = WorkerState::Busy);
        let name = self.worker.name();
        let t0 = Instant::now();
        match self.worker.step() {
            Ok(Step::Busy) => {
                self.failures = 0;
                let rest = t0.elapsed() * self.cfg.tranquility;
                let state = if rest.is_zero() {
                    WorkerState::Busy
                } else {
                    WorkerState::Throttled
                };
                (state, Some(rest), None)
            }
            Ok(Step::Idle) => {
                self.failures = 0;
                (WorkerState::Idle, Some(self.cfg.idle_interval), None)
            }
            Ok(Step::Done) => (WorkerState::Done, None, None),
            Err(e) => {
                self.failures = self.failures.saturating_add(1);
                let wait = self.cfg.backoff.delay(self.failures);
                tracing::error!(worker = name, error = %e, failures = self.failures, retry_in = ?wait, "worker step failed");
                (WorkerState::BackingOff, Some(wait), Some(e.to_string()))
            }
        }
    }

    fn set(&self, f: impl FnOnce(&mut WorkerStatus)) -> WorkerStatus {
        let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut s);
        s.clone()
    }

    /// Records the state in memory, and in the status file when it changed or a second passed.
    fn publish(&mut self, state: WorkerState, error: Option<String>) {
        let progress = self.worker.progress();
        let snapshot = self.set(|s| {
            s.state = state;
            s.progress = progress;
            if error.is_some() {
                s.last_error = error;
            }
            s.updated = now_nanos();
        });
        let Some(dir) = &self.cfg.status_dir else {
            return;
        };
        let due = match self.written {
            Some((last, at)) => last != state || at.elapsed() >= Duration::from_secs(1),
            None => true,
        };
        if due {
            write_status(dir, &snapshot);
            self.written = Some((state, Instant::now()));
        }
    }

    /// Waits `wait` (or, for `None`, until a command), applying commands as they come. Returns
    /// early when the worker is paused or resumed; false when it must stop.
    fn wait(&mut self, wait: Option<Duration>) -> bool {
        let deadline = wait.map(|w| Instant::now() + w);
        loop {
            let received = match deadline {
                None => self
                    .commands
                    .recv()
                    .map_err(|_| RecvTimeoutError::Disconnected),
                Some(t) => match t.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => self.commands.recv_timeout(left),
                    _ => return true,
                },
            };
            match received {
                Err(RecvTimeoutError::Timeout) => return true,
                Ok(Command::Stop) | Err(RecvTimeoutError::Disconnected) => return false,
                Ok(Command::Pause) if !self.paused => {
                    self.paused = true;
                    return true;
                }
                Ok(Command::Resume) if self.paused => {
                    self.paused = false;
                    self.worker.on_resume();
                    return true;
                }
                Ok(_) => {}
            }
        }
    }
}

/// Runs `worker` on its own thread until stopped (or finished).
pub fn spawn(worker: Box<dyn Worker>, cfg: RunnerConfig) -> std::io::Result<WorkerHandle> {
    let name = worker.name();
    let status = Arc::new(Mutex::new(WorkerStatus {
        name: name.to_string(),
        state: if cfg.start_paused {
            WorkerState::Paused
        } else {
            WorkerState::Busy
        },
        ..Default::default()
    }));
    let (tx, rx) = mpsc::channel();
    let runner = Runner {
        worker,
        paused: cfg.start_paused,
        cfg,
        status: status.clone(),
        commands: rx,
        failures: 0,
        written: None,
    };
    let thread = std::thread::Builder::new()
        .name(format!("objfs-{name}"))
        .spawn(move || runner.run())?;
    Ok(WorkerHandle {
        status,
        control: WorkerControl { name, tx },
        thread: Some(thread),
    })
}

/// Runs `worker` in the calling thread until it is idle (the `--now` commands), reporting
/// progress after every unit. Same steps as the daemon, no throttle.
pub fn run_to_idle(
    worker: &mut dyn Worker,
    mut on_progress: impl FnMut(&Progress),
) -> Result<Progress> {
    run_until(worker, |p| {
        on_progress(p);
        true
    })
    .map(|(p, _)| p)
}

/// Like [`run_to_idle`], but `on_progress` may stop the run between two units by returning
/// false (a client that went away, an unmount). Returns the progress and whether the job ran
/// to its end.
pub fn run_until(
    worker: &mut dyn Worker,
    mut on_progress: impl FnMut(&Progress) -> bool,
) -> Result<(Progress, bool)> {
    loop {
        let step = worker.step()?;
        let p = worker.progress();
        let go_on = on_progress(&p);
        if step != Step::Busy {
            return Ok((p, true));
        }
        if !go_on {
            return Ok((p, false));
        }
    }
}

/// Writes the status file of `st` in the store in `store` (a `--now` run in a process without
/// daemons records what it did, so the file never shows an older state than the store has).
pub fn record_status(store: &Path, st: &WorkerStatus) {
    write_status(&status_dir(store), st);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::StoreError;

    struct Counter {
        n: u64,
        limit: u64,
        /// Steps that fail before the counting starts.
        fail: u32,
    }

    impl Worker for Counter {
        fn name(&self) -> &'static str {
            "counter"
        }
        fn step(&mut self) -> Result<Step> {
            if self.fail > 0 {
                self.fail -= 1;
                return Err(StoreError::Metadata("disk gone".into()));
            }
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

    fn wait_for(h: &WorkerHandle, what: impl Fn(&WorkerStatus) -> bool) -> WorkerStatus {
        let t0 = Instant::now();
        loop {
            let st = h.status();
            if what(&st) || t0.elapsed() > Duration::from_secs(5) {
                return st;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn runs_pauses_resumes_reports_and_stops() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = RunnerConfig::for_store(dir.path(), 0, Duration::from_millis(20));
        cfg.start_paused = true;
        let mut h = spawn(
            Box::new(Counter {
                n: 0,
                limit: 50,
                fail: 0,
            }),
            cfg,
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(h.status().state, WorkerState::Paused);
        assert_eq!(h.status().progress.done, 0, "a paused worker does nothing");
        h.resume();
        let st = wait_for(&h, |s| {
            s.progress.done == 50 && s.state == WorkerState::Idle
        });
        assert_eq!(st.progress.done, 50);
        assert_eq!(st.state, WorkerState::Idle);
        assert_eq!(
            read_status(dir.path(), "counter").unwrap().state,
            WorkerState::Idle
        );
        h.pause();
        let st = wait_for(&h, |s| s.state == WorkerState::Paused);
        assert_eq!(st.state, WorkerState::Paused);
        let t = Instant::now();
        h.stop();
        assert!(t.elapsed() < Duration::from_secs(2), "stop must be prompt");
        assert_eq!(
            read_status(dir.path(), "counter").unwrap().state,
            WorkerState::Done
        );
    }

    #[test]
    fn errors_back_off_and_the_worker_recovers() {
        let cfg = RunnerConfig {
            tranquility: 0,
            idle_interval: Duration::from_secs(60),
            backoff: Backoff {
                initial: Duration::from_millis(10),
                max: Duration::from_millis(40),
            },
            status_dir: None,
            start_paused: false,
        };
        let h = spawn(
            Box::new(Counter {
                n: 0,
                limit: 3,
                fail: 4,
            }),
            cfg,
        )
        .unwrap();
        // 10 + 20 + 40 + 40 ms of backoff, then the work.
        let st = wait_for(&h, |s| s.progress.done == 3);
        assert_eq!(st.progress.done, 3);
        assert!(st.last_error.unwrap_or_default().contains("disk gone"));
    }

    #[test]
    fn backoff_doubles_up_to_its_bound() {
        let b = Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(10),
        };
        let d: Vec<u64> = (1..=6).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(d, vec![1, 2, 4, 8, 10, 10]);
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(10));
    }

    #[test]
    fn states_read_back_from_old_and_new_status_files() {
        for (text, state) in [
            ("\"running\"", WorkerState::Busy),
            ("\"stopped\"", WorkerState::Done),
            ("\"error\"", WorkerState::BackingOff),
            ("\"throttled\"", WorkerState::Throttled),
            ("\"backing_off\"", WorkerState::BackingOff),
        ] {
            assert_eq!(serde_json::from_str::<WorkerState>(text).unwrap(), state);
        }
        assert_eq!(
            serde_json::to_string(&WorkerState::Paused).unwrap(),
            "\"paused\""
        );
    }

    #[test]
    fn run_to_idle_finishes_the_job() {
        let mut c = Counter {
            n: 0,
            limit: 7,
            fail: 0,
        };
        let mut seen = 0;
        let p = run_to_idle(&mut c, |_| seen += 1).unwrap();
        assert_eq!(p.done, 7);
        assert_eq!(seen, 8);
    }
}
