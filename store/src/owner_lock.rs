//! One owner for a directory: an exclusive `flock` on a lock file that also names its holder.
//!
//! The write-back journal and the mount's disk cache each belong to one mount at a time. The
//! lock is an `flock` (released by the kernel when the holder's process ends, however it ends),
//! and the file holds the holder's pid as text, so that a refusal can say who holds it.
//!
//! A mount that was just unmounted may still be finishing (uploading, closing) when the next
//! mount of the same location starts; [`OwnerLock::acquire`] therefore waits up to a given
//! time for the lock to be released before it reports the holder.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often a waiting [`OwnerLock::acquire`] tries again.
const RETRY: Duration = Duration::from_millis(50);

/// Why a lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it (its pid, when the file names one).
    #[error("{} is locked by {}", path.display(), holder_text(*pid))]
    Held { path: PathBuf, pid: Option<u32> },
    #[error("cannot use the lock file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn holder_text(pid: Option<u32>) -> String {
    match pid {
        Some(p) => format!("pid {p}"),
        None => "another process".to_string(),
    }
}

impl LockError {
    /// " (pid N)" when the holder is known, else "": for messages that name the holder.
    pub fn holder(&self) -> String {
        match self {
            LockError::Held { pid: Some(p), .. } => format!(" (pid {p})"),
            _ => String::new(),
        }
    }
}

/// An exclusive lock held for as long as the value lives.
#[derive(Debug)]
pub struct OwnerLock {
    _file: File,
}

impl OwnerLock {
    /// Takes the lock of `path` (created if needed), waiting up to `wait` while another
    /// process holds it, and writes this process's pid into it.
    pub fn acquire(path: &Path, wait: Duration) -> Result<OwnerLock, LockError> {
        let io = |source| LockError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .map_err(io)?;
        let start = Instant::now();
        loop {
            // SAFETY: flock on a descriptor this function owns; no memory is involved.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                break;
            }
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(io(e));
            }
            if start.elapsed() >= wait {
                let mut text = String::new();
                let _ = file.seek(SeekFrom::Start(0));
                let _ = file.read_to_string(&mut text);
                return Err(LockError::Held {
                    path: path.to_path_buf(),
                    pid: text.trim().parse().ok(),
                });
            }
            std::thread::sleep(RETRY);
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(OwnerLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_owner_is_refused_with_the_holder_named_then_admitted_once_released() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("lock");
        let first = OwnerLock::acquire(&path, Duration::ZERO).unwrap();
        // flock locks belong to open files: a second open in this process conflicts too.
        let err = OwnerLock::acquire(&path, Duration::from_millis(120)).unwrap_err();
        match &err {
            LockError::Held { pid, .. } => assert_eq!(*pid, Some(std::process::id())),
            other => panic!("{other}"),
        }
        assert_eq!(err.holder(), format!(" (pid {})", std::process::id()));
        // Released while a second owner waits: it gets the lock.
        let waiter = {
            let path = path.clone();
            std::thread::spawn(move || OwnerLock::acquire(&path, Duration::from_secs(10)))
        };
        std::thread::sleep(Duration::from_millis(150));
        drop(first);
        assert!(waiter.join().unwrap().is_ok());
    }
}
