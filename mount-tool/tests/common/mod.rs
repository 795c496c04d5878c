//! Helpers shared by the `objfs` binary's tests: running it, checking exit codes, and a guard
//! that unmounts (fusermount3 -u -z) and waits for the mount process whatever happened.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_objfs");

pub fn objfs(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run objfs")
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn ok(args: &[&str]) -> String {
    succeeded(args, objfs(args))
}

/// The stdout of a run of `objfs args` that must have succeeded.
pub fn succeeded(args: &[&str], out: Output) -> String {
    assert!(
        out.status.success(),
        "objfs {args:?} failed ({}):\n{}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Runs a command that must fail with `code`; returns its stderr.
pub fn fails(args: &[&str], code: i32) -> String {
    let out = objfs(args);
    assert_eq!(
        out.status.code(),
        Some(code),
        "objfs {args:?}: expected exit {code}, got {}:\n{}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stderr)
}

pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

pub fn is_mounted(mp: &Path) -> bool {
    let want = s(mp).replace(' ', "\\040");
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| m == want)
}

pub fn fuse_missing(test: &str) -> bool {
    let why = if !Path::new("/dev/fuse").exists() {
        Some("/dev/fuse does not exist")
    } else if !["/usr/bin/fusermount3", "/bin/fusermount3"]
        .iter()
        .any(|p| Path::new(p).exists())
    {
        Some("fusermount3 is not installed")
    } else {
        None
    };
    match why {
        None => false,
        Some(why) => {
            if std::env::var("OBJFS_REQUIRE_FUSE").is_ok_and(|v| v == "1") {
                panic!("{test}: FUSE is required (OBJFS_REQUIRE_FUSE=1) but {why}");
            }
            eprintln!("!!! SKIPPING {test}: {why}; install fuse3 to run it !!!");
            true
        }
    }
}

/// The pid in a store's LOCK file (the process that owns it).
pub fn lock_pid(store: &Path) -> Option<i32> {
    fs::read_to_string(store.join("LOCK"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

pub fn alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks for existence.
    let r = unsafe { libc::kill(pid, 0) };
    if r != 0 {
        return false;
    }
    // A zombie is not alive for our purposes.
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|st| {
            !st.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

/// Unmounts on drop, whatever happened, and waits for the daemon to go away.
pub struct MountGuard {
    pub mountpoint: PathBuf,
    pub store: PathBuf,
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        let pid = lock_pid(&self.store);
        if is_mounted(&self.mountpoint) {
            let _ = Command::new("fusermount3")
                .args(["-u", "-z"])
                .arg(&self.mountpoint)
                .status();
        }
        if let Some(pid) = pid {
            let start = Instant::now();
            while alive(pid) && start.elapsed() < Duration::from_secs(30) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

pub fn guard(store: &Path, mp: &Path) -> MountGuard {
    MountGuard {
        mountpoint: mp.to_path_buf(),
        store: store.to_path_buf(),
    }
}

/// Runs objfs with extra environment.
pub fn objfs_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(BIN);
    c.args(args).stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run objfs")
}

/// Runs a command that must succeed and print JSON; returns it parsed.
pub fn json(args: &[&str]) -> serde_json::Value {
    let out = ok(args);
    serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("objfs {args:?}: not JSON ({e}):\n{out}"))
}

pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The names in a directory, sorted.
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Runs objfs with its runtime directory in `rt` (so no other mount is ever found).
pub fn objfs_at(args: &[&str], rt: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .env("XDG_RUNTIME_DIR", rt)
        .stdin(Stdio::null())
        .output()
        .expect("run objfs")
}

/// The JSON objects a `--json` run printed, one a line.
pub fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// A runtime for a test's own calls of the store's API.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// The moment now, with the clock moved past it.
pub fn moment() -> std::time::SystemTime {
    let t = std::time::SystemTime::now();
    std::thread::sleep(Duration::from_millis(5));
    t
}
