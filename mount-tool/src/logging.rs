//! Logging through `tracing`: `RUST_LOG` decides what is shown, `info` for a mount's log file
//! and warnings only on a terminal by default.
//!
//! A mount logs to a file when it has one: `--log-file PATH` (foreground or not), and by
//! default a daemonised mount of a local store logs to `STORE/objfs.log`. The file is rotated
//! by size with no extra crate (tracing-appender rotates by time only): [`RotatingFile`] counts
//! what it writes and, past [`MAX_LOG_BYTES`], renames the file to `objfs.log.1` (replacing the
//! previous one) and starts a new one; the same check runs when the mount starts. So a log
//! takes at most about twice that size.

use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// A log file is rotated once it is larger than this.
pub const MAX_LOG_BYTES: u64 = 10 << 20;

/// The default log file of a daemonised mount of the store in `store`.
pub fn default_log_file(store: &Path) -> PathBuf {
    store.join("objfs.log")
}

/// The rotated-out previous log of `path`.
fn previous(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_os_string();
    p.push(".1");
    PathBuf::from(p)
}

struct Inner {
    path: PathBuf,
    file: File,
    size: u64,
    max: u64,
}

impl Inner {
    fn rotate(&mut self) -> std::io::Result<()> {
        std::fs::rename(&self.path, previous(&self.path))?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// An append-only log file rotated by size; cheap to clone.
#[derive(Clone)]
pub struct RotatingFile(Arc<Mutex<Inner>>);

impl RotatingFile {
    /// Opens (creating) `path`, rotating it first when it is already too large.
    pub fn open(path: &Path, max: u64) -> Result<RotatingFile> {
        let open = || {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open log file {}", path.display()))
        };
        let mut file = open()?;
        let mut size = file.metadata().map(|m| m.len()).unwrap_or(0);
        if size > max {
            std::fs::rename(path, previous(path))
                .with_context(|| format!("cannot rotate log file {}", path.display()))?;
            file = open()?;
            size = 0;
        }
        Ok(RotatingFile(Arc::new(Mutex::new(Inner {
            path: path.to_path_buf(),
            file,
            size,
            max,
        }))))
    }

    /// The file's path.
    pub fn path(&self) -> PathBuf {
        self.0
            .lock()
            .map(|g| g.path.clone())
            .unwrap_or_else(|p| p.into_inner().path.clone())
    }

    /// A handle on the current file (for the daemon's stderr).
    pub fn try_clone_file(&self) -> Result<File> {
        let g = self
            .0
            .lock()
            .map_err(|_| anyhow::anyhow!("log lock poisoned"))?;
        g.file.try_clone().context("cannot duplicate the log file")
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if g.size + buf.len() as u64 > g.max && g.size > 0 {
            // A failed rotation keeps writing to the current file.
            let _ = g.rotate();
        }
        let n = g.file.write(buf)?;
        g.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        g.file.flush()
    }
}

impl<'a> MakeWriter<'a> for RotatingFile {
    type Writer = RotatingFile;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

fn filter(default: &str) -> EnvFilter {
    // fuser's session warns "Failed to umount filesystem: Invalid argument" whenever the
    // mount was unmounted from outside (`objfs umount`, `fusermount3 -u`): its own release of
    // the ended mount fails, which is no news. Real unmount failures are reported by objfs.
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default))
}

/// Logs to stderr (warnings only unless RUST_LOG says otherwise). Later calls do nothing.
pub fn init_stderr() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter("warn,fuser::session=error"))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(true)
        .try_init();
}

/// Logs to `file` (info and up unless RUST_LOG says otherwise).
pub fn init_file(file: RotatingFile) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter("info,fuser=warn,fuser::session=error"))
        .with_writer(file)
        .with_ansi(false)
        .with_target(true)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("objfs.log");
        let mut f = RotatingFile::open(&path, 100).unwrap();
        for _ in 0..3 {
            f.write_all(&[b'x'; 60]).unwrap();
        }
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 60);
        assert_eq!(std::fs::metadata(previous(&path)).unwrap().len(), 60);
        drop(f);
        // Too large at startup: rotated before use.
        std::fs::write(&path, vec![b'y'; 150]).unwrap();
        let _f = RotatingFile::open(&path, 100).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        assert_eq!(std::fs::metadata(previous(&path)).unwrap().len(), 150);
    }
}
