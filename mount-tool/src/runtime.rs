//! Finding a mount's store: the runtime registry.
//!
//! A mount process registers itself in a runtime directory — `$XDG_RUNTIME_DIR/objfs`, else
//! `/run/objfs` for root, else `$TMPDIR/objfs-<uid>` — under a short hash of the store's
//! location (its canonical local path, or its `s3://` URL): `<hash>.sock` is its control
//! socket and `<hash>.json` a [`Record`] of the store, the mount point and the pid. Every
//! command that is given a store or a mount point resolves it here (never from the mount
//! table's `fsname`): a mount point by the records' `mountpoint`, a store by its hash.
//!
//! The directory is created with mode 0700 and the socket and record with 0600, so only the
//! mounting user (and root) can talk to a mount. The mount removes both files when it ends; a
//! record whose process is dead (a `kill -9`, a crash) is stale: lookups ignore it and remove
//! it, and so does the next mount of the same store.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::location::StoreLocation;
use crate::platform;

/// The format version of a [`Record`].
pub const RECORD_VERSION: u32 = 1;

/// What a mount process tells about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub version: u32,
    /// The store's location as the mount opened it (canonical path or URL).
    pub store: String,
    /// Where it is mounted (canonical).
    pub mountpoint: PathBuf,
    /// The mount process.
    pub pid: u32,
    /// Where the mount process logs (none: stderr of a foreground mount).
    pub log_file: Option<PathBuf>,
    pub read_only: bool,
    /// When the mount started (ns since the epoch).
    pub started: u64,
    /// The moment a `mount --at` shows (ns since the epoch); absent for a live mount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<u64>,
}

/// The runtime directory of this user.
pub fn runtime_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_RUNTIME_DIR") {
        let x = PathBuf::from(x);
        if x.is_absolute() {
            return x.join("objfs");
        }
    }
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/run/objfs");
    }
    std::env::temp_dir().join(format!("objfs-{}", nix::unistd::geteuid()))
}

/// 64-bit FNV-1a: stable across builds and platforms (std's hasher is not).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The short name of a store location in the runtime directory.
pub fn key(loc: &StoreLocation) -> String {
    format!("{:012x}", fnv1a(loc.to_string().as_bytes()) >> 16)
}

fn socket_path(dir: &Path, key: &str) -> PathBuf {
    dir.join(format!("{key}.sock"))
}

fn record_path(dir: &Path, key: &str) -> PathBuf {
    dir.join(format!("{key}.json"))
}

/// Removes the files of a registration when dropped (the mount ended).
#[derive(Debug)]
pub struct Registration {
    socket: PathBuf,
    record: PathBuf,
    pid: u32,
}

impl Registration {
    /// The control socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // Only our own files: a later mount of the same store may have replaced them.
        if read_record(&self.record).is_some_and(|r| r.pid == self.pid) {
            let _ = fs::remove_file(&self.record);
            let _ = fs::remove_file(&self.socket);
        }
    }
}

fn read_record(path: &Path) -> Option<Record> {
    let text = fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// Creates the runtime directory (0700) if needed.
fn ensure_dir(dir: &Path) -> Result<()> {
    if !dir.is_dir() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create the runtime directory {}", dir.display()))?;
        // Parents made by `recursive` get the umask; ours is private whatever it is.
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot set the mode of {}", dir.display()))?;
    }
    Ok(())
}

/// Whether the process of `r` is gone (then the record is stale).
fn is_stale(r: &Record) -> bool {
    !platform::process_alive(r.pid)
}

/// Registers a mount: binds its control socket (mode 0600) and writes its record. A stale
/// registration of the same store is removed first.
pub fn register(loc: &StoreLocation, record: &Record) -> Result<(Registration, UnixListener)> {
    let dir = runtime_dir();
    ensure_dir(&dir)?;
    // Sweep what crashed mounts left behind.
    let _ = all();
    let key = key(loc);
    let (sock, rec) = (socket_path(&dir, &key), record_path(&dir, &key));
    if let Some(old) = read_record(&rec) {
        if !is_stale(&old) && old.pid != record.pid {
            bail!(
                "{} is already registered by pid {} (mounted at {})",
                old.store,
                old.pid,
                old.mountpoint.display()
            );
        }
    }
    let _ = fs::remove_file(&sock);
    let listener = UnixListener::bind(&sock)
        .with_context(|| format!("cannot create the control socket {}", sock.display()))?;
    fs::set_permissions(&sock, fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot set the mode of {}", sock.display()))?;
    let text = serde_json::to_string_pretty(record).context("cannot encode the mount record")?;
    let tmp = dir.join(format!(".{key}.json.tmp"));
    let written = (|| -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        fs::rename(&tmp, &rec)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&sock);
        return Err(e).with_context(|| format!("cannot write the mount record {}", rec.display()));
    }
    Ok((
        Registration {
            socket: sock,
            record: rec,
            pid: record.pid,
        },
        listener,
    ))
}

/// A live mount found in the registry.
#[derive(Debug, Clone)]
pub struct Mounted {
    pub record: Record,
    pub socket: PathBuf,
}

/// Checks a record found under `key`: a live one is returned, a stale one removed.
fn live(dir: &Path, key: &str) -> Option<Mounted> {
    let (sock, rec) = (socket_path(dir, key), record_path(dir, key));
    let record = read_record(&rec)?;
    // A dead process, or a socket nobody answers on (a pid reused by another process).
    if is_stale(&record) || UnixStream::connect(&sock).is_err() {
        tracing::info!(store = %record.store, pid = record.pid, "removing a stale mount record");
        let _ = fs::remove_file(&rec);
        let _ = fs::remove_file(&sock);
        return None;
    }
    Some(Mounted {
        record,
        socket: sock,
    })
}

/// The mount of the store at `loc`, if one is registered and alive.
pub fn lookup_store(loc: &StoreLocation) -> Option<Mounted> {
    live(&runtime_dir(), &key(loc))
}

/// Every live registered mount; stale records found on the way are removed.
pub fn all() -> Vec<Mounted> {
    let dir = runtime_dir();
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let keys: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let key = name.strip_suffix(".json")?;
            (!key.starts_with('.')).then(|| key.to_string())
        })
        .collect();
    keys.iter().filter_map(|k| live(&dir, k)).collect()
}

/// The registered mount at `mountpoint` (absolute), if any.
pub fn lookup_mountpoint(mountpoint: &Path) -> Option<Mounted> {
    all()
        .into_iter()
        .find(|m| m.record.mountpoint == mountpoint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_short_stable_and_distinct() {
        let a = key(&StoreLocation::Local("/srv/a".into()));
        let b = key(&StoreLocation::Local("/srv/b".into()));
        assert_eq!(a.len(), 12);
        assert_ne!(a, b);
        assert_eq!(a, key(&StoreLocation::Local("/srv/a".into())));
        // FNV-1a of "a" (a published test vector), so the hash never changes silently.
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
