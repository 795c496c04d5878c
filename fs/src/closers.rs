//! Whose close(2) makes a version.
//!
//! FUSE sends FLUSH for every close of a descriptor, and a descriptor has more closers than
//! the program that wrote through it: a child made by `fork` holds a copy of every open
//! descriptor, and when it calls `exec` the kernel closes the ones marked `O_CLOEXEC` (all
//! of them, in Rust, Go, Python and glibc's `fopen("...e")`). A program that spawns a
//! compiler, a shell or a helper while it writes a file therefore sends a FLUSH of that file
//! from the child, in the middle of the writes. Committing there makes a version out of a
//! half-written file (a wasted upload, and the version a crash leaves if the mount dies
//! before the writer's own close).
//!
//! So a write handle remembers the threads that opened it and wrote through it (FUSE gives
//! the thread id of each request), and a FLUSH commits only when it comes from one of them or
//! from another thread of the same process. A FLUSH from any other process (a child that
//! only inherited the descriptor) does not commit: the writer's own close, an fsync, or the
//! last close of the file (RELEASE) does. When anything is unknown (a thread id of 0 from
//! another pid namespace, a thread that exited, too many threads), the FLUSH commits, as
//! before. mountpoint-s3 makes the same choice for the same reason.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Threads remembered per handle before every close is taken for the writer's.
const MAX_THREADS: usize = 32;

/// The threads that opened a write handle or wrote through it.
#[derive(Debug, Default)]
pub struct Closers {
    tids: Mutex<Vec<u32>>,
    /// More threads than [`MAX_THREADS`] (or a thread id of 0): every close commits.
    any: AtomicBool,
}

impl Closers {
    /// Remembers `tid` (a FUSE request's pid: the calling thread's id in the mount's pid
    /// namespace, 0 when it has none there).
    pub fn note(&self, tid: u32) {
        if self.any.load(Ordering::Relaxed) {
            return;
        }
        let Ok(mut t) = self.tids.lock() else {
            self.any.store(true, Ordering::Relaxed);
            return;
        };
        if t.last() == Some(&tid) || t.contains(&tid) {
            return;
        }
        if tid == 0 || t.len() >= MAX_THREADS {
            self.any.store(true, Ordering::Relaxed);
            return;
        }
        t.push(tid);
    }

    /// Whether a close by thread `tid` is the writer's (commits), or a close by another
    /// process that only inherited the descriptor (does not).
    pub fn is_writers(&self, tid: u32) -> bool {
        self.is_writers_with(tid, thread_group)
    }

    /// [`Closers::is_writers`] with the thread-to-process lookup given (tests).
    pub fn is_writers_with(&self, tid: u32, group: impl Fn(u32) -> Option<u32>) -> bool {
        if tid == 0 || self.any.load(Ordering::Relaxed) {
            return true;
        }
        let known = match self.tids.lock() {
            Ok(t) => t.clone(),
            Err(_) => return true,
        };
        if known.is_empty() || known.contains(&tid) {
            return true;
        }
        let Some(closer) = group(tid) else {
            return true;
        };
        // Another thread of a process that opened or wrote (a Go program moves goroutines
        // between threads), or a thread that is gone: the writer's, to be safe.
        known.iter().any(|&t| group(t).is_none_or(|g| g == closer))
    }
}

/// The process (thread group) of thread `tid`, from `/proc/<tid>/status`; `None` when it is
/// gone or unreadable.
#[cfg(target_os = "linux")]
pub fn thread_group(tid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The process of `tid`: macFUSE and the BSDs give the process id itself.
#[cfg(not(target_os = "linux"))]
pub fn thread_group(tid: u32) -> Option<u32> {
    Some(tid)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Threads 10, 11 and 12 are process 10; 20 is process 20; 30 is gone.
    fn group(t: u32) -> Option<u32> {
        match t {
            10..=12 => Some(10),
            20 => Some(20),
            _ => None,
        }
    }

    #[test]
    fn a_close_by_the_opener_or_a_writer_commits() {
        let c = Closers::default();
        c.note(10);
        c.note(11);
        assert!(c.is_writers_with(10, group));
        assert!(c.is_writers_with(11, group));
    }

    #[test]
    fn a_close_by_another_thread_of_the_writers_process_commits() {
        let c = Closers::default();
        c.note(10);
        assert!(c.is_writers_with(12, group));
    }

    #[test]
    fn a_close_by_a_child_that_inherited_the_descriptor_does_not() {
        let c = Closers::default();
        c.note(10);
        c.note(11);
        assert!(!c.is_writers_with(20, group));
        // Once the child writes through it, its close is a writer's.
        c.note(20);
        assert!(c.is_writers_with(20, group));
    }

    #[test]
    fn anything_unknown_commits() {
        let c = Closers::default();
        assert!(c.is_writers_with(20, group), "no thread known");
        c.note(10);
        assert!(c.is_writers_with(0, group), "no pid in this namespace");
        assert!(c.is_writers_with(31, group), "closer unknown");
        c.note(30);
        assert!(c.is_writers_with(20, group), "a writer thread is gone");
        let many = Closers::default();
        for t in 100..100 + MAX_THREADS as u32 + 1 {
            many.note(t);
        }
        assert!(many.is_writers_with(20, group), "too many threads");
        let zero = Closers::default();
        zero.note(0);
        assert!(zero.is_writers_with(20, group), "an opener without a pid");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn thread_group_is_the_process_of_a_thread() {
        let me = unsafe { libc::gettid() } as u32;
        assert_eq!(thread_group(me), Some(std::process::id()));
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            tx.send(unsafe { libc::gettid() } as u32).unwrap();
            let _ = done_rx.recv();
        });
        let other = rx.recv().unwrap();
        assert_ne!(other, me);
        assert_eq!(thread_group(other), Some(std::process::id()));
        done_tx.send(()).unwrap();
        t.join().unwrap();
        assert_eq!(thread_group(u32::MAX), None);
    }
}
