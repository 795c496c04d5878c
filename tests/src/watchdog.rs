//! A deadline for a test step that could hang (opening a store a kill -9 left behind, waiting
//! for a child process): when the step outlives its limit, the watchdog prints every thread's
//! stack of this process and of the children it was given (with gdb when installed, else the
//! kernel's view from /proc), kills the children and aborts the test binary.
//!
//! A hang then fails one test within minutes, with the stacks that explain it, instead of
//! stalling the whole CI run until its time limit with no clue where it stood.

use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Writes to the process's stderr itself: the test harness captures `eprintln!` (in every
/// thread a test spawns) and would drop it when the binary aborts.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

/// Guards one step; dropping it ends the watch.
pub struct Watchdog {
    done: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    /// Watches `what` for `limit`; `children` are pids of processes the step waits on.
    pub fn start(what: impl Into<String>, limit: Duration, children: &[u32]) -> Watchdog {
        let what = what.into();
        let children = children.to_vec();
        let done = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = done.clone();
        let thread = std::thread::Builder::new()
            .name("watchdog".into())
            .spawn(move || {
                let deadline = Instant::now() + limit;
                let (lock, cv) = &*flag;
                let mut finished = lock.lock().unwrap_or_else(|p| p.into_inner());
                while !*finished {
                    let now = Instant::now();
                    if now >= deadline {
                        drop(finished);
                        fire(&what, limit, &children);
                    }
                    finished = cv
                        .wait_timeout(finished, deadline - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            })
            .ok();
        Watchdog { done, thread }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let (lock, cv) = &*self.done;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
        cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn fire(what: &str, limit: Duration, children: &[u32]) -> ! {
    say!("WATCHDOG: {what} still running after {limit:?}; stacks follow");
    let me = std::process::id();
    for pid in std::iter::once(me).chain(children.iter().copied()) {
        say!("==== stacks of pid {pid}");
        print_stacks(pid);
    }
    for pid in children {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    say!("WATCHDOG: aborting the test binary");
    std::process::abort();
}

/// Prints every thread's stack of process `pid` to stderr (gdb; /proc wait channels without
/// it): what a test that gives up on a process shows of where it hangs.
pub fn print_stacks(pid: u32) {
    // gdb writes to a file, not a pipe: when it attaches to this process it stops the
    // thread that would read the pipe, and would block on a full one.
    let out = std::env::temp_dir().join(format!("objfs-watchdog-{}-{pid}.txt", std::process::id()));
    let gdb = std::fs::File::create(&out).and_then(|f| {
        let err = f.try_clone()?;
        Command::new("gdb")
            .args(["-p", &pid.to_string(), "-batch", "-nx"])
            .args(["-ex", "set pagination off", "-ex", "thread apply all bt 30"])
            .stdin(Stdio::null())
            .stdout(f)
            .stderr(err)
            .status()
    });
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let _ = std::fs::remove_file(&out);
    if gdb.is_ok_and(|s| s.success()) && text.contains("Thread") {
        say!("{text}");
        return;
    }
    // No gdb: each thread's name, state and kernel wait channel (and kernel stack, as root).
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        say!("(pid {pid} is gone)");
        return;
    };
    for t in tasks.flatten() {
        let p = t.path();
        let read = |f: &str| std::fs::read_to_string(p.join(f)).unwrap_or_default();
        say!(
            "-- thread {} {} wchan={} {}",
            t.file_name().to_string_lossy(),
            read("comm").trim(),
            read("wchan").trim(),
            read("stat").split_whitespace().nth(2).unwrap_or("?"),
        );
        let stack = read("stack");
        if !stack.is_empty() {
            say!("{stack}");
        }
    }
}
