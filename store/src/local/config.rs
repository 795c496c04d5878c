//! The store directory: its marker file (which says "this is an objfs store, format N"), its
//! settings, and the process lock that lets one process own a store at a time.
//!
//! ```text
//! <store>/objfs-store.json   marker + settings (JSON, written once by init, atomically)
//! <store>/LOCK               flock()ed by the owning process, holds its pid
//! <store>/meta/              sled database
//! <store>/data/              the default disk (others may be anywhere)
//! <disk>/objfs-disk.json     which store and which disk number this directory is
//! <disk>/<id>.vol            a replica of volume <id> (16 hex digits)
//! <disk>/<id>.s<NN>          shard NN of erasure-coded volume <id>
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};
use crate::local::atomic_file;

/// Format of the store as a whole; bumped on any incompatible change of any persisted part.
pub const STORE_FORMAT: u32 = 4;
/// The oldest store format this build opens (and migrates to [`STORE_FORMAT`] at open): 1, one
/// sled row per blob, before blob pages (format 2: blob pages, no table of deleted keys;
/// format 3: no table of ended versions).
pub const OLDEST_FORMAT: u32 = 1;
/// Name of the marker file.
pub const MARKER: &str = "objfs-store.json";
const MAGIC: &str = "objfs-store";

/// Erasure coding wanted at init.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EcSetting {
    /// The default for the number of disks ([`crate::local::erasure::default_policy`]).
    #[default]
    Auto,
    /// Keep replicas; never erasure-code.
    Off,
    /// K data + M parity shards.
    On { k: u8, m: u8 },
}

/// Settings of a local store, fixed at init (the flush interval is per process).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalConfig {
    /// Data directories, each a failure domain. Empty: one, `<store>/data`.
    pub disks: Vec<PathBuf>,
    /// Copies of new data, on distinct disks, before it is acknowledged. 0: the default for the
    /// number of disks.
    pub replicas: u8,
    /// Erasure coding of sealed volumes.
    pub ec: EcSetting,
    /// A volume is sealed when the next blob would take it past this size.
    pub volume_size: u64,
    /// Bytes covered by one checksum.
    pub block_size: u32,
    /// Largest blob: objects are cut into blobs of this size.
    pub blob_size: usize,
    /// How often non-durable writes are made durable in the background (the window in which
    /// a power loss may lose them). 5 s, like ext4's default journal commit interval.
    pub flush_interval: Duration,
}

impl Default for LocalConfig {
    fn default() -> Self {
        LocalConfig {
            disks: Vec::new(),
            replicas: 0,
            ec: EcSetting::Auto,
            volume_size: 256 << 20,
            block_size: 64 << 10,
            blob_size: 8 << 20,
            flush_interval: Duration::from_secs(5),
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
        if self.volume_size > (64 << 30) {
            return bad("volume size must be at most 64 GiB");
        }
        let n = self.disks.len().max(1);
        let (replicas, ec) = self.policy();
        if replicas as usize > n {
            return Err(StoreError::InvalidArgument(format!(
                "{replicas} replicas need {replicas} disks; the store has {n}"
            )));
        }
        if let Some((k, m)) = ec {
            if k == 0 || m == 0 {
                return bad("erasure coding needs K >= 1 and M >= 1");
            }
            if (k + m) as usize > n {
                return Err(StoreError::InvalidArgument(format!(
                    "erasure coding {k}+{m} needs {} disks (one per shard); the store has {n}",
                    k + m
                )));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for d in &self.disks {
            if !seen.insert(d) {
                return Err(StoreError::InvalidArgument(format!(
                    "disk {} is named twice",
                    d.display()
                )));
            }
        }
        Ok(())
    }

    /// The policy these settings resolve to: (replicas, erasure coding).
    pub fn policy(&self) -> (u8, Option<(u8, u8)>) {
        let (def_r, def_ec) = crate::local::erasure::default_policy(self.disks.len().max(1));
        let r = if self.replicas == 0 {
            def_r
        } else {
            self.replicas
        };
        let ec = match self.ec {
            EcSetting::Auto => def_ec,
            EcSetting::Off => None,
            EcSetting::On { k, m } => Some((k, m)),
        };
        (r, ec)
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
    /// Data directories, relative to the store or absolute. Index = disk number.
    pub disks: Vec<PathBuf>,
    /// Copies of new data.
    pub replicas: u8,
    /// Erasure coding of sealed volumes: [K, M], or none.
    pub ec: Option<[u8; 2]>,
    /// Disk numbers taken out of service by `disk remove` (numbers stay stable; a removed
    /// disk holds nothing and is never used again).
    #[serde(default)]
    pub removed: Vec<u32>,
}

impl Marker {
    pub fn new(cfg: &LocalConfig) -> Self {
        let (replicas, ec) = cfg.policy();
        let disks = if cfg.disks.is_empty() {
            vec![PathBuf::from("data")]
        } else {
            cfg.disks.clone()
        };
        Marker {
            replicas,
            ec: ec.map(|(k, m)| [k, m]),
            magic: MAGIC.into(),
            format: STORE_FORMAT,
            created: crate::local::volume::now_nanos(),
            volume_size: cfg.volume_size,
            block_size: cfg.block_size,
            blob_size: cfg.blob_size as u64,
            disks,
            removed: Vec::new(),
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
        if !(OLDEST_FORMAT as u64..=STORE_FORMAT as u64).contains(&format) {
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
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| StoreError::Metadata(format!("encoding the marker: {e}")))?;
        atomic_file::replace(&root.join(MARKER), text.as_bytes(), true)
    }

    /// The settings recorded in the marker.
    pub fn config(&self, flush_interval: Duration) -> LocalConfig {
        LocalConfig {
            disks: self.disks.clone(),
            replicas: self.replicas,
            ec: match self.ec {
                Some([k, m]) => EcSetting::On { k, m },
                None => EcSetting::Off,
            },
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

/// Name of the file that says which store and disk a data directory belongs to.
pub const DISK_MARKER: &str = "objfs-disk.json";

/// Identity of a data directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskMarker {
    /// The store's `created` time, which identifies the store.
    pub store: u64,
    pub index: u32,
}

impl DiskMarker {
    /// Reads the marker of a disk; `None` when the directory is missing, empty or foreign.
    pub fn read(dir: &Path) -> Option<DiskMarker> {
        let text = fs::read_to_string(dir.join(DISK_MARKER)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Writes the marker (temp file, fsync, rename, fsync the directory).
    pub fn write(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_string(self)
            .map_err(|e| StoreError::Metadata(format!("encoding the disk marker: {e}")))?;
        atomic_file::replace(&dir.join(DISK_MARKER), text.as_bytes(), true)
    }
}

/// Rewrites the marker of the store at `path` (of the current format) to say `format`: what a
/// store written by an older build looks like, for the migration tests.
#[cfg(test)]
pub(crate) fn mark_format(path: &Path, format: u32) {
    let marker = path.join(MARKER);
    let text = std::fs::read_to_string(&marker).expect("marker");
    let current = format!("\"format\": {STORE_FORMAT}");
    assert!(text.contains(&current), "{text}");
    std::fs::write(
        &marker,
        text.replace(&current, &format!("\"format\": {format}")),
    )
    .expect("marker");
}

/// Whether the marker of the store at `path` says the current format.
#[cfg(test)]
pub(crate) fn is_current_format(path: &Path) -> bool {
    let text = std::fs::read_to_string(path.join(MARKER)).expect("marker");
    text.contains(&format!("\"format\": {STORE_FORMAT}"))
}
