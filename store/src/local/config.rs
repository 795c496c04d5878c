//! The store directory: its marker file (which says "this is an objfs store, format N"), its
//! settings, and the process lock that lets one process own a store at a time.
//!
//! ```text
//! <store>/objfs-store.json   marker + settings (JSON, written once by init, atomically)
//! <store>/LOCK               flock()ed by the owning process, holds its pid
//! <store>/meta/              sled database
//! <store>/data/              volume files (<16 hex digits>.vol) of the default disk
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};

/// Format of the store as a whole; bumped on any incompatible change of any persisted part.
pub const STORE_FORMAT: u32 = 1;
/// Name of the marker file.
pub const MARKER: &str = "objfs-store.json";
const MAGIC: &str = "objfs-store";

/// Settings of a local store, fixed at init (the flush interval is per process).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalConfig {
    /// A volume is sealed when the next blob would take it past this size.
    pub volume_size: u64,
    /// Bytes covered by one checksum.
    pub block_size: u32,
    /// Largest blob: objects are cut into blobs of this size.
    pub blob_size: usize,
    /// How often non-durable writes are made durable in the background.
    pub flush_interval: Duration,
}

impl Default for LocalConfig {
    fn default() -> Self {
        LocalConfig {
            volume_size: 256 << 20,
            block_size: 64 << 10,
            blob_size: 8 << 20,
            flush_interval: Duration::from_millis(500),
        }
    }
}

impl LocalConfig {
    /// Refuses settings that cannot work.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(StoreError::InvalidArgument(m.to_string()));
        if self.block_size < 512 || self.block_size > (16 << 20) {
            return bad("block size must be between 512 bytes and 16 MiB");
        }
        if self.blob_size < self.block_size as usize || self.blob_size > (256 << 20) {
            return bad("blob size must be at least one block and at most 256 MiB");
        }
        if self.blob_size % self.block_size as usize != 0 {
            return bad("blob size must be a multiple of the block size");
        }
        if self.volume_size < 4096 {
            return bad("volume size must be at least 4 KiB");
        }
        Ok(())
    }
}

/// The marker file's contents.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Marker {
    pub magic: String,
    pub format: u32,
    pub created: u64,
    pub volume_size: u64,
    pub block_size: u32,
    pub blob_size: u64,
    /// Data directories, relative to the store or absolute.
    pub disks: Vec<PathBuf>,
}

impl Marker {
    pub fn new(cfg: &LocalConfig) -> Self {
        Marker {
            magic: MAGIC.into(),
            format: STORE_FORMAT,
            created: crate::local::volume::now_nanos(),
            volume_size: cfg.volume_size,
            block_size: cfg.block_size,
            blob_size: cfg.blob_size as u64,
            disks: vec![PathBuf::from("data")],
        }
    }

    /// Reads the marker of `root`, telling "not a store" from "newer format".
    pub fn read(root: &Path) -> Result<Marker> {
        let path = root.join(MARKER);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let reason = if !root.exists() {
                    "it does not exist".to_string()
                } else if !root.is_dir() {
                    "it is not a directory".to_string()
                } else {
                    format!("it has no {MARKER} (run `objfs init` to make one)")
                };
                return Err(StoreError::NotAStore {
                    path: root.to_path_buf(),
                    reason,
                });
            }
            Err(e) => return Err(StoreError::io(format!("reading {}", path.display()), e)),
        };
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| StoreError::NotAStore {
                path: root.to_path_buf(),
                reason: format!("{MARKER} is not valid JSON: {e}"),
            })?;
        if value.get("magic").and_then(|m| m.as_str()) != Some(MAGIC) {
            return Err(StoreError::NotAStore {
                path: root.to_path_buf(),
                reason: format!("{MARKER} does not name an objfs store"),
            });
        }
        let format = value.get("format").and_then(|f| f.as_u64()).unwrap_or(0);
        if format != STORE_FORMAT as u64 {
            return Err(StoreError::UnsupportedFormat {
                path: root.to_path_buf(),
                found: format.min(u32::MAX as u64) as u32,
                supported: STORE_FORMAT,
            });
        }
        serde_json::from_value(value).map_err(|e| StoreError::NotAStore {
            path: root.to_path_buf(),
            reason: format!("{MARKER} is malformed: {e}"),
        })
    }

    /// Writes the marker atomically (temp file, fsync, rename, fsync the directory).
    pub fn write(&self, root: &Path) -> Result<()> {
        let tmp = root.join(format!("{MARKER}.tmp"));
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| StoreError::Metadata(format!("encoding the marker: {e}")))?;
        let ctx = |e| StoreError::io(format!("writing {}", tmp.display()), e);
        let mut f = File::create(&tmp).map_err(ctx)?;
        f.write_all(text.as_bytes()).map_err(ctx)?;
        f.sync_all().map_err(ctx)?;
        fs::rename(&tmp, root.join(MARKER))
            .map_err(|e| StoreError::io(format!("renaming {}", tmp.display()), e))?;
        crate::local::volume::sync_dir(root)
    }

    /// The settings recorded in the marker.
    pub fn config(&self, flush_interval: Duration) -> LocalConfig {
        LocalConfig {
            volume_size: self.volume_size,
            block_size: self.block_size,
            blob_size: self.blob_size as usize,
            flush_interval,
        }
    }

    /// Absolute data directories.
    pub fn disk_paths(&self, root: &Path) -> Vec<PathBuf> {
        self.disks.iter().map(|d| root.join(d)).collect()
    }
}

/// Exclusive ownership of a store directory by this process.
pub struct StoreLock {
    _lock: Flock<File>,
}

impl StoreLock {
    /// Takes the lock of `root`, or says which process holds it.
    pub fn acquire(root: &Path) -> Result<StoreLock> {
        let path = root.join("LOCK");
        let ctx = |e| StoreError::io(format!("opening {}", path.display()), e);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(ctx)?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut lock) => {
                let pid = std::process::id().to_string();
                let w = (|| -> std::io::Result<()> {
                    lock.set_len(0)?;
                    lock.seek(SeekFrom::Start(0))?;
                    lock.write_all(pid.as_bytes())?;
                    lock.flush()
                })();
                w.map_err(|e| StoreError::io(format!("writing {}", path.display()), e))?;
                Ok(StoreLock { _lock: lock })
            }
            Err((mut file, errno)) if errno == nix::errno::Errno::EWOULDBLOCK => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                Err(StoreError::Locked {
                    path: root.to_path_buf(),
                    pid: text.trim().parse().unwrap_or(0),
                })
            }
            Err((_, errno)) => Err(StoreError::io(
                format!("locking {}", path.display()),
                std::io::Error::from(errno),
            )),
        }
    }
}
