//! Daemonizing the mount: fork before any thread exists, report readiness through a pipe.
//!
//! The parent forks at once (no threads, no runtime, no store open yet: sled and the
//! filesystem start threads, which do not survive a fork). The child calls `setsid`, moves to
//! `/`, points its standard streams at `/dev/null` (stderr at the log file when one is given;
//! the default log in the store directory takes stderr over once the store is open), then
//! opens the store and mounts. It talks to the parent over a pipe, one line per message:
//!
//! * `info <text>`  — something the user should see (e.g. "created a new store"); the parent
//!   prints it and keeps waiting;
//! * `ready`        — the mount is live; the parent exits 0;
//! * `error <text>` — the mount failed; the parent prints the text and exits 1.
//!
//! If the pipe closes without either (the child crashed), the parent reports how it ended.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use anyhow::{Context, Result};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

/// The child's end of the pipe to the parent.
pub struct Notifier {
    pipe: Option<File>,
}

impl Notifier {
    /// A notifier that prints to stderr (foreground mode: there is no parent to tell).
    pub fn foreground() -> Notifier {
        Notifier { pipe: None }
    }

    fn send(&mut self, line: &str) {
        let one_line = line.replace('\n', " | ");
        match &mut self.pipe {
            Some(p) => {
                // The parent may be gone (killed); there is no one else to tell then.
                let _ = writeln!(p, "{one_line}");
                let _ = p.flush();
            }
            None => {
                if let Some(text) = one_line.strip_prefix("info ") {
                    eprintln!("objfs: {text}");
                }
            }
        }
    }

    /// Tells the user something while the mount is being set up.
    pub fn info(&mut self, text: &str) {
        self.send(&format!("info {text}"));
    }

    /// Reports that the mount is live and closes the pipe (the parent exits 0).
    pub fn ready(&mut self) {
        self.send("ready");
        self.pipe = None;
    }

    /// Reports a failure and closes the pipe (the parent exits 1).
    pub fn error(&mut self, text: &str) {
        self.send(&format!("error {text}"));
        self.pipe = None;
    }
}

/// Forks. In the parent this waits for the child's verdict and never returns (it exits the
/// process with 0 on readiness, 1 otherwise); in the child it returns the notifier to report
/// through.
///
/// Must be called while the process has a single thread.
pub fn daemonize(log: Option<File>, quiet: bool) -> Result<Notifier> {
    let (read_end, write_end) = nix::unistd::pipe().context("cannot create a pipe")?;
    std::io::stdout().flush().ok();
    std::io::stderr().flush().ok();
    // SAFETY: the process is single-threaded here (we fork before opening the store or
    // starting any runtime), so the child may run arbitrary code.
    match unsafe { fork() }.context("cannot fork the mount daemon")? {
        ForkResult::Parent { child } => {
            drop(write_end);
            let code = wait_for_child(child, read_end, quiet);
            std::process::exit(code);
        }
        ForkResult::Child => {
            drop(read_end);
            setup_child(log)?;
            Ok(Notifier {
                pipe: Some(File::from(write_end)),
            })
        }
    }
}

/// The child's setup: new session, `/` as working directory, standard streams redirected.
fn setup_child(log: Option<File>) -> Result<()> {
    nix::unistd::setsid().context("setsid failed")?;
    std::env::set_current_dir("/").context("cannot change to /")?;
    let null = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .context("cannot open /dev/null")?;
    let err_target: OwnedFd = match log {
        Some(f) => f.into(),
        None => null.try_clone().context("cannot dup /dev/null")?.into(),
    };
    redirect(null.as_fd().as_raw_fd(), libc::STDIN_FILENO)?;
    redirect(null.as_fd().as_raw_fd(), libc::STDOUT_FILENO)?;
    redirect(err_target.as_raw_fd(), libc::STDERR_FILENO)?;
    Ok(())
}

/// Points stderr at `file` (the daemon's log, once it is known).
pub fn redirect_stderr(file: &File) -> Result<()> {
    redirect(file.as_raw_fd(), libc::STDERR_FILENO)
}

fn redirect(from: i32, to: i32) -> Result<()> {
    // SAFETY: dup2 on two open descriptors; `to` is one of the standard streams.
    let rc = unsafe { libc::dup2(from, to) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error()).context("dup2 failed");
    }
    Ok(())
}

/// The parent: relays `info` lines, returns the exit code for `ready` / `error` / a crash.
fn wait_for_child(child: Pid, read_end: OwnedFd, quiet: bool) -> i32 {
    let reader = BufReader::new(File::from(read_end));
    for line in reader.lines() {
        let Ok(line) = line else { break };
        if let Some(text) = line.strip_prefix("info ") {
            if !quiet {
                eprintln!("objfs: {text}");
            }
        } else if line == "ready" {
            return 0;
        } else if let Some(text) = line.strip_prefix("error ") {
            eprintln!("objfs: {text}");
            return 1;
        }
    }
    let how = match waitpid(child, None) {
        Ok(WaitStatus::Exited(_, code)) => format!("exited with code {code}"),
        Ok(WaitStatus::Signaled(_, sig, _)) => format!("was killed by {sig}"),
        Ok(other) => format!("ended ({other:?})"),
        Err(e) => format!("could not be waited for ({e})"),
    };
    eprintln!("objfs: the mount daemon {how} before the mount was ready (see its log: STORE/objfs.log or --log-file; or mount with --foreground)");
    1
}
