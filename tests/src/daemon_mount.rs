//! A mount served by the real `objfs` binary, for tests that kill the mount process.
//!
//! [`objfs_binary`] finds (and builds when needed) the `objfs` executable of this workspace;
//! [`DaemonMount::start`] runs `objfs mount --foreground STORE MOUNTPOINT` as a child process
//! (so the child *is* the mount daemon: its pid is [`DaemonMount::pid`], checked against the
//! pid the store's lock names), waits until the kernel lists the mount, and ALWAYS cleans up
//! in `Drop`, also while a test panics: SIGKILL to the daemon if it still runs, then
//! `fusermount3 -u -z` if the mount point still holds its mount (never another mount made at
//! the same path after this one was detached or stopped).
//!
//! [`DaemonMount::kill9`] is the crash: SIGKILL, reap the child, then detach the dead mount
//! (after a kill -9 the mount point answers ENOTCONN until it is unmounted).
//! [`DaemonMount::stop`] is a clean unmount: SIGTERM, which finishes uploads, unmounts and
//! closes the store, and must exit 0.
//!
//! The daemon's stderr goes to a log file beside the store; panics quote its tail.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::mount_fixture::{force_unmount, is_mounted};

/// The `objfs` binary to test: `$OBJFS_BIN` when set; otherwise the one of this workspace's
/// target directory and profile (the directory above the running test's `deps/`), brought up
/// to date with `cargo build -p objfs-mount-tool` first (a no-op when it is fresh), so a test
/// never runs a stale binary against freshly built tests.
pub fn objfs_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("OBJFS_BIN") {
            let p = PathBuf::from(p);
            assert!(p.is_file(), "OBJFS_BIN={} is not a file", p.display());
            return p;
        }
        let exe = std::env::current_exe().expect("the test's own path");
        // <target>/<profile>/deps/<test>-<hash>
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test runs from <target>/<profile>/deps")
            .to_path_buf();
        let target_dir = profile_dir
            .parent()
            .expect("<target>/<profile>")
            .to_path_buf();
        let profile = profile_dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("debug")
            .to_string();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-q", "-p", "objfs-mount-tool", "--bin", "objfs"])
            .arg("--target-dir")
            .arg(&target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        match profile.as_str() {
            "debug" => {}
            "release" => {
                cmd.arg("--release");
            }
            other => {
                cmd.args(["--profile", other]);
            }
        }
        let bin = profile_dir.join("objfs");
        // A build here takes minutes when the binary is stale (its feature set differs from
        // the workspace's test build, so `cargo test` never builds it): say so, or the first
        // test that mounts looks hung. scripts/test builds it before the tests.
        eprintln!("objfs_binary: `cargo build -p objfs-mount-tool --bin objfs` (a no-op when fresh)");
        let started = std::time::Instant::now();
        let status = cmd.status();
        if started.elapsed() > std::time::Duration::from_secs(5) {
            eprintln!(
                "objfs_binary: building the objfs binary took {:.0} s (counted in this test's time)",
                started.elapsed().as_secs_f64()
            );
        }
        match status {
            Ok(s) if s.success() => {}
            other => {
                // Offline or without cargo: a binary that is there is still worth testing.
                assert!(
                    bin.is_file(),
                    "building the objfs binary failed ({other:?}) and {} does not exist; \
                     build it (cargo build --release -p objfs-mount-tool) or set OBJFS_BIN",
                    bin.display()
                );
                eprintln!(
                    "warning: `cargo build -p objfs-mount-tool` failed ({other:?}); testing the \
                     existing {}",
                    bin.display()
                );
            }
        }
        assert!(bin.is_file(), "{} was not built", bin.display());
        bin
    })
    .clone()
}

/// A running `objfs mount --foreground` child process and its mount point.
pub struct DaemonMount {
    child: Option<Child>,
    pid: u32,
    /// Whether the mount point may still hold this daemon's mount (false once it was
    /// detached or cleanly unmounted: the path may then hold another mount).
    attached: bool,
    /// The mount point.
    pub mountpoint: PathBuf,
    /// The store directory (or the s3:// source).
    pub store: PathBuf,
    /// Where the daemon's stderr goes.
    pub log: PathBuf,
}

impl DaemonMount {
    /// Mounts `store` (created when missing) at `mountpoint` with extra `objfs mount`
    /// arguments (e.g. `["-o", "part_size=256K"]`), appending the daemon's stderr to `log`.
    /// Returns once the kernel lists the mount and the store's lock names the child.
    pub fn start(store: &Path, mountpoint: &Path, args: &[&str], log: &Path) -> DaemonMount {
        // A store that does not exist yet is made by this first mount (objfs mount creates
        // a store only when asked to, outside the default location).
        let init = !store.join("objfs-store.json").exists();
        let mut all: Vec<&str> = init.then_some("--init").into_iter().collect();
        all.extend_from_slice(args);
        let m = DaemonMount::spawn(store.as_os_str(), mountpoint, &all, log);
        // The daemon pid, seen from the store: its lock names the process that owns it.
        match objfs_store::local::LocalStore::open(store) {
            Err(objfs_store::StoreError::Locked { pid: owner, .. }) => assert_eq!(
                owner, m.pid,
                "the store's lock names pid {owner}, not the mount daemon {}",
                m.pid
            ),
            Err(e) => panic!("opening a mounted store: expected Locked, got {e}"),
            Ok(_) => panic!("a mounted store opened a second time"),
        }
        m
    }

    /// Mounts a store that is not a directory (`s3://BUCKET/PREFIX`, with `--endpoint` and
    /// friends in `args`) at `mountpoint`; returns once the kernel lists the mount.
    pub fn start_source(source: &str, mountpoint: &Path, args: &[&str], log: &Path) -> DaemonMount {
        DaemonMount::spawn(source.as_ref(), mountpoint, args, log)
    }

    /// Runs `objfs mount --foreground ARGS SOURCE MOUNTPOINT` and waits for the mount.
    fn spawn(
        source: &std::ffi::OsStr,
        mountpoint: &Path,
        args: &[&str],
        log: &Path,
    ) -> DaemonMount {
        let bin = objfs_binary();
        assert!(
            !is_mounted(mountpoint),
            "{} is already a mount point",
            mountpoint.display()
        );
        let err = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("open the daemon log {}: {e}", log.display()));
        let child = Command::new(&bin)
            .arg("mount")
            .arg("--foreground")
            .args(args)
            .arg(source)
            .arg(mountpoint)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let pid = child.id();
        let mut m = DaemonMount {
            child: Some(child),
            pid,
            attached: true,
            mountpoint: mountpoint.to_path_buf(),
            store: PathBuf::from(source),
            log: log.to_path_buf(),
        };
        // Not a timed assertion: a generous bound on a mount that never comes up.
        let deadline = Instant::now() + Duration::from_secs(120);
        while !is_mounted(mountpoint) {
            if let Some(status) = m.try_wait() {
                panic!(
                    "objfs mount exited ({status}) before the mount appeared\n{}",
                    m.log_tail()
                );
            }
            if Instant::now() >= deadline {
                // Where the daemon hangs, for the log of a run that fails here.
                let stacks = crate::watchdog::print_stacks(m.pid);
                panic!(
                    "{} did not appear in the mount table within 120 s\n{}\n\
                     --- the daemon's threads (full stacks above) ---\n{stacks}",
                    mountpoint.display(),
                    m.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        m
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// SIGKILL to the daemon, reap it, then detach the dead mount with `fusermount3 -u -z`.
    /// Returns how the daemon ended (it may have died on its own before).
    pub fn kill9(&mut self) -> ExitStatus {
        let status = self.sigkill();
        self.detach();
        status
    }

    /// SIGKILL to the daemon and reap it; the mount point stays dead (ENOTCONN) until
    /// [`DaemonMount::detach`]. Every request in flight fails once the daemon is gone.
    pub fn sigkill(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("the daemon runs");
        let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGKILL);
        child.wait().expect("reap the mount daemon")
    }

    /// SIGTERM to the daemon (it finishes uploads, unmounts, lazily when busy, and closes the
    /// store once the last open descriptor lets go) and reap it.
    pub fn sigterm(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("the daemon runs");
        let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGTERM);
        child.wait().expect("reap the mount daemon")
    }

    /// `fusermount3 -u -z` of a mount whose daemon is gone (nothing when it is not mounted).
    pub fn detach(&mut self) {
        if is_mounted(&self.mountpoint) {
            force_unmount(&self.mountpoint);
        }
        self.attached = false;
        assert!(
            !is_mounted(&self.mountpoint),
            "{} is still mounted after fusermount3 -u -z",
            self.mountpoint.display()
        );
    }

    /// A clean unmount: SIGTERM (finish uploads, unmount, close the store) and wait; panics
    /// unless the daemon exits 0 and the mount is gone.
    pub fn stop(&mut self) {
        let mut child = self.child.take().expect("the daemon runs");
        kill(Pid::from_raw(self.pid as i32), Signal::SIGTERM).expect("SIGTERM to the daemon");
        let status = child.wait().expect("reap the mount daemon");
        let mounted = is_mounted(&self.mountpoint);
        if mounted {
            force_unmount(&self.mountpoint);
        }
        self.attached = false;
        assert!(
            status.success() && !mounted,
            "clean unmount failed: daemon {status}, still mounted: {mounted}\n{}",
            self.log_tail()
        );
    }

    /// The last lines of the daemon's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(30);
        format!(
            "--- last lines of {} ---\n{}",
            self.log.display(),
            lines[from..].join("\n")
        )
    }
}

impl Drop for DaemonMount {
    fn drop(&mut self) {
        // Never panic here (a panic while unwinding aborts and hides the test's message).
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGKILL);
            let _ = child.wait();
        }
        if self.attached && is_mounted(&self.mountpoint) {
            force_unmount(&self.mountpoint);
        }
    }
}

/// CPU ticks (utime + stime) used so far by the threads of process `pid` whose name
/// (`/proc/PID/task/TID/comm`) `name_matches` accepts.
pub fn thread_ticks(pid: u32, name_matches: impl Fn(&str) -> bool) -> u64 {
    let mut ticks = 0;
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    for task in tasks.flatten() {
        let task = task.path();
        let comm = fs::read_to_string(task.join("comm")).unwrap_or_default();
        if !name_matches(comm.trim()) {
            continue;
        }
        let stat = fs::read_to_string(task.join("stat")).unwrap_or_default();
        // Fields after the command's closing parenthesis: state is field 3; utime and stime
        // are fields 14 and 15.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 12 {
            ticks +=
                fields[11].parse::<u64>().unwrap_or(0) + fields[12].parse::<u64>().unwrap_or(0);
        }
    }
    ticks
}
