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
/// it): what a test that gives up on a process shows of where it hangs. Returns a short form
/// (each thread's state, CPU time and top frames, one line each) for a panic message, which
/// the end of a long log keeps when the full stacks scroll away.
pub fn print_stacks(pid: u32) -> String {
    let states = thread_states(pid);
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
        return format!("{states}{}", short_stacks(&text));
    }
    // No gdb: each thread's name, state and kernel wait channel (and kernel stack, as root).
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        say!("(pid {pid} is gone)");
        return format!("(pid {pid} is gone)");
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
    states
}

/// One line per thread of `pid`: id, name, state (R runs, S/D waits) and CPU ticks used, which
/// tell a spinning thread from a blocked one.
fn thread_states(pid: u32) -> String {
    let mut out = String::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        // Fields after the parenthesised name: state is the 1st, utime the 12th, stime the 13th.
        let (name, rest) = match (stat.find('('), stat.rfind(')')) {
            (Some(a), Some(b)) if a < b => (&stat[a + 1..b], &stat[b + 1..]),
            _ => ("?", ""),
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let get = |i: usize| f.get(i).copied().unwrap_or("?");
        out.push_str(&format!(
            "thread {} {name}: state {} utime {} stime {}\n",
            t.file_name().to_string_lossy(),
            get(0),
            get(11),
            get(12)
        ));
    }
    out
}

/// The top frames of each thread in gdb's `thread apply all bt` output, one short line each:
/// function names without their generic arguments, with file and line.
fn short_stacks(gdb: &str) -> String {
    let mut out = String::new();
    let mut depth = 0;
    for line in gdb.lines() {
        if line.starts_with("Thread ") {
            out.push_str(line);
            out.push('\n');
            depth = 0;
        } else if let Some(rest) = line.strip_prefix('#') {
            depth += 1;
            if depth > 14 {
                continue;
            }
            // "#3  0x00ab in f<T> (args) at file:line", or "#4  g () at ..." when inlined.
            let (n, body) = rest.split_once(' ').unwrap_or((rest, ""));
            let body = body.trim_start();
            let body = match body.strip_prefix("0x") {
                Some(b) => b.split_once(" in ").map_or(b, |(_, f)| f),
                None => body,
            };
            let func = strip_generics(body.split(" (").next().unwrap_or(""));
            let at = line.rsplit(" at ").next().filter(|_| line.contains(" at "));
            out.push_str(&format!("  #{n} {func}"));
            if let Some(at) = at {
                out.push_str(&format!(" @ {at}"));
            }
            out.push('\n');
        }
    }
    out
}

/// `a::b<c::d<e>>::f` -> `a::b::f`.
fn strip_generics(s: &str) -> String {
    let mut out = String::new();
    let mut level = 0usize;
    for c in s.chars() {
        match c {
            '<' => level += 1,
            '>' => level = level.saturating_sub(1),
            _ if level == 0 => out.push(c),
            _ => {}
        }
    }
    out
}
