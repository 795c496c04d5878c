//! Pause and resume from another process, until the live control channel exists: `objfs scrub
//! --pause` writes `<store>/control/<worker>` (`paused` or `running`), and one
//! [`ControlWatcher`] in the process that runs the daemons reads those files about once a
//! second and turns each change into a [`Command`] sent to the worker. Workers themselves
//! never read the files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::Result;
use crate::local::worker::{Command, Progress, RunnerConfig, Step, Worker, WorkerControl};

/// How often the watcher looks at the control files.
pub const POLL: Duration = Duration::from_secs(1);

fn control_file(store: &Path, name: &str) -> PathBuf {
    store.join("control").join(name)
}

/// Whether `<store>/control/<name>` asks the worker to pause.
pub fn is_paused(store: &Path, name: &str) -> bool {
    std::fs::read_to_string(control_file(store, name))
        .map(|s| s.trim() == "paused")
        .unwrap_or(false)
}

/// Pauses or resumes a worker of the store in `store` (whichever process runs it).
pub fn set_paused(store: &Path, name: &str, paused: bool) -> std::io::Result<()> {
    std::fs::create_dir_all(store.join("control"))?;
    std::fs::write(
        control_file(store, name),
        if paused { "paused\n" } else { "running\n" },
    )
}

/// Turns changes of the control files into commands to the workers they name.
pub struct ControlWatcher {
    store: PathBuf,
    /// Each worker, and whether it was last told to pause.
    workers: Vec<(WorkerControl, bool)>,
    sent: u64,
}

impl ControlWatcher {
    /// Watches the control files of `workers`, each with whether it was started paused.
    pub fn new(store: &Path, workers: Vec<(WorkerControl, bool)>) -> ControlWatcher {
        ControlWatcher {
            store: store.to_path_buf(),
            workers,
            sent: 0,
        }
    }

    /// The runner settings of the watcher: a look every [`POLL`], no status file.
    pub fn runner() -> RunnerConfig {
        RunnerConfig {
            tranquility: 0,
            idle_interval: POLL,
            backoff: Default::default(),
            status_dir: None,
            start_paused: false,
        }
    }
}

impl Worker for ControlWatcher {
    fn name(&self) -> &'static str {
        "control"
    }

    fn step(&mut self) -> Result<Step> {
        for (w, told) in &mut self.workers {
            let paused = is_paused(&self.store, w.name());
            if paused != *told {
                let c = if paused {
                    Command::Pause
                } else {
                    Command::Resume
                };
                tracing::info!(worker = w.name(), command = ?c, "control file changed");
                w.send(c);
                *told = paused;
                self.sent += 1;
            }
        }
        Ok(Step::Idle)
    }

    fn progress(&self) -> Progress {
        let mut p = Progress {
            note: "watching the control files".into(),
            ..Default::default()
        };
        p.counters.insert("commands_sent".into(), self.sent);
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::worker::{spawn, WorkerState};
    use std::time::Instant;

    struct Ticker(u64);

    impl Worker for Ticker {
        fn name(&self) -> &'static str {
            "ticker"
        }
        fn step(&mut self) -> Result<Step> {
            self.0 += 1;
            Ok(Step::Idle)
        }
        fn progress(&self) -> Progress {
            Progress {
                done: self.0,
                ..Default::default()
            }
        }
    }

    #[test]
    fn control_file_changes_become_commands() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path();
        set_paused(store, "ticker", true).unwrap();
        let mut cfg = RunnerConfig::for_store(store, 0, Duration::from_millis(10));
        cfg.start_paused = is_paused(store, "ticker");
        let paused = cfg.start_paused;
        let ticker = spawn(Box::new(Ticker(0)), cfg).unwrap();
        let mut runner = ControlWatcher::runner();
        runner.idle_interval = Duration::from_millis(20);
        let _watcher = spawn(
            Box::new(ControlWatcher::new(store, vec![(ticker.control(), paused)])),
            runner,
        )
        .unwrap();
        let until = |want: WorkerState| {
            let t0 = Instant::now();
            while ticker.status().state != want && t0.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(5));
            }
            ticker.status().state
        };
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(until(WorkerState::Paused), WorkerState::Paused);
        assert_eq!(ticker.status().progress.done, 0);
        set_paused(store, "ticker", false).unwrap();
        assert_eq!(until(WorkerState::Idle), WorkerState::Idle);
        set_paused(store, "ticker", true).unwrap();
        assert_eq!(until(WorkerState::Paused), WorkerState::Paused);
    }
}
