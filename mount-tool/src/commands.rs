//! `objfs init`, `objfs status` and `objfs umount`.

use std::io::ErrorKind as IoErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use objfs_store::local::worker::read_status;
use objfs_store::local::{EcSetting, LocalConfig, StoreStatus};
use objfs_store::StoreError;

use crate::cli::{InitArgs, StatusArgs, UmountArgs};
use crate::location::{self, StoreLocation};
use crate::mount::{explain_open_error, fs_name_for, store_of_source};
use crate::options::parse_size;
use crate::platform;

/// Whether `path` is a directory with nothing in it.
fn is_empty_dir(path: &Path) -> Result<bool> {
    let mut entries =
        std::fs::read_dir(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(entries.next().is_none())
}

/// `objfs init STORE`.
pub fn init(a: &InitArgs) -> Result<()> {
    let loc = StoreLocation::parse(&a.store)?;
    let path = loc.supported_path()?.to_path_buf();
    match std::fs::metadata(&path) {
        Ok(m) if !m.is_dir() => bail!("{} exists and is not a directory", path.display()),
        Ok(_) => {
            if !is_empty_dir(&path)? {
                match location::open(&loc) {
                    Ok(s) => {
                        s.close().ok();
                        bail!("{} is already an objfs store", path.display());
                    }
                    Err(StoreError::Locked { pid, .. }) => bail!(
                        "{} is already an objfs store (in use by pid {pid})",
                        path.display()
                    ),
                    Err(_) => bail!(
                        "{} is not empty and not an objfs store; refusing to initialise it",
                        path.display()
                    ),
                }
            }
        }
        Err(e) if e.kind() == IoErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot use {}", path.display())),
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let mut cfg = LocalConfig::default();
    if let Some(v) = &a.volume_size {
        cfg.volume_size = parse_size(v).context("bad --volume-size")?;
    }
    for d in &a.disks {
        cfg.disks.push(platform::absolute(d)?);
    }
    if let Some(r) = a.replicas {
        if r == 0 {
            bail!("--replicas must be at least 1");
        }
        cfg.replicas = r;
    }
    if let Some(ec) = &a.ec {
        cfg.ec = parse_ec(ec)?;
    }
    let store = location::init(&loc, cfg).map_err(|e| explain_open_error(&path, e))?;
    store
        .close()
        .with_context(|| format!("cannot close store {}", path.display()))?;
    println!("initialised an empty objfs store at {}", path.display());
    Ok(())
}

/// `K+M` or `none`.
fn parse_ec(s: &str) -> Result<EcSetting> {
    if s.eq_ignore_ascii_case("none") || s.eq_ignore_ascii_case("off") {
        return Ok(EcSetting::Off);
    }
    let (k, m) = s
        .split_once('+')
        .context("--ec takes K+M (e.g. 4+2) or none")?;
    let k: u8 = k.trim().parse().context("--ec: K is not a number")?;
    let m: u8 = m.trim().parse().context("--ec: M is not a number")?;
    if k == 0 || m == 0 {
        bail!("--ec: K and M must both be at least 1");
    }
    Ok(EcSetting::On { k, m })
}

/// Formats a byte count for people: `1.5 GiB (1610612736 bytes)` style, short form.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The mount points at which `store` is mounted, from the mount table.
fn mounts_of(store: &Path) -> Vec<PathBuf> {
    let name = fs_name_for(store);
    platform::mount_table()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.source == name)
        .map(|e| e.mountpoint)
        .collect()
}

/// `objfs status STORE`.
///
/// The store's lock is held by a mount daemon while it is mounted; status then names the pid
/// (and mount point) and fails, rather than show figures it cannot read consistently.
pub fn status(a: &StatusArgs) -> Result<()> {
    let loc = StoreLocation::parse(&a.store)?;
    let path = loc.supported_path()?.to_path_buf();
    if !path.is_dir() {
        bail!("no store at {}", path.display());
    }
    let store = match location::open_local("status", &loc) {
        Ok(s) => s,
        Err(StoreError::Locked { pid, .. }) => {
            let mps = mounts_of(&path);
            let at = if mps.is_empty() {
                String::new()
            } else {
                let list: Vec<String> = mps.iter().map(|m| m.display().to_string()).collect();
                format!(" at {}", list.join(", "))
            };
            bail!(
                "store {} is mounted by pid {pid}{at}; status needs the store to itself: \
                 unmount it first (`objfs umount MOUNTPOINT`), or use `df` on the mount point",
                path.display()
            );
        }
        Err(e) => return Err(explain_open_error(&path, e)),
    };
    let st = store.status();
    let closed = store.close();
    let st = st.with_context(|| format!("cannot read the status of {}", path.display()))?;
    closed.with_context(|| format!("cannot close store {}", path.display()))?;
    if a.json {
        println!("{}", status_json(&st));
    } else {
        print!("{}", status_text(&st));
    }
    Ok(())
}

fn status_text(st: &StoreStatus) -> String {
    let mut s = String::new();
    s += &format!("store:           {}\n", st.path.display());
    s += &format!("objects:         {}\n", st.objects);
    s += &format!("versions:        {}\n", st.versions);
    s += &format!("delete markers:  {}\n", st.delete_markers);
    s += &format!(
        "logical bytes:   {} ({} bytes)\n",
        human_bytes(st.logical_bytes),
        st.logical_bytes
    );
    s += &format!(
        "volumes:         {} ({} on disk, {} erasure-coded)\n",
        st.volumes,
        human_bytes(st.volume_bytes),
        st.placed_volumes
    );
    s += &format!(
        "policy:          {} replica(s) for new data, {}; {:.2}x overhead once placed\n",
        st.replicas,
        match st.ec {
            Some((k, m)) => format!("erasure coding {k}+{m}"),
            None => "no erasure coding".to_string(),
        },
        st.overhead
    );
    s += &format!(
        "last shutdown:   {}\n",
        if st.last_shutdown_clean {
            "clean"
        } else {
            "NOT clean (recovered on open)"
        }
    );
    s += "disks:\n";
    for d in &st.disks {
        let pct = if d.total_bytes > 0 {
            d.free_bytes as f64 * 100.0 / d.total_bytes as f64
        } else {
            0.0
        };
        if d.online {
            s += &format!(
                "  {}  {} free of {} ({pct:.0}% free)\n",
                d.path.display(),
                human_bytes(d.free_bytes),
                human_bytes(d.total_bytes)
            );
        } else if d.removed {
            s += &format!(
                "  {}  removed (holds nothing of the store)\n",
                d.path.display()
            );
        } else {
            s += &format!(
                "  {}  OFFLINE (missing or not this store's)\n",
                d.path.display()
            );
        }
    }
    for w in &st.warnings {
        s += &format!("warning: {w}\n");
    }
    let daemons: Vec<String> = ["placement", "scrub", "gc"]
        .iter()
        .filter_map(|n| {
            read_status(&st.path, n).map(|d| format!("  {n}: {} ({})", d.state, d.progress.note))
        })
        .collect();
    if !daemons.is_empty() {
        s += "daemons (as last seen):\n";
        s += &daemons.join("\n");
        s += "\n";
    }
    s
}

fn status_json(st: &StoreStatus) -> String {
    let disks: Vec<serde_json::Value> = st
        .disks
        .iter()
        .map(|d| {
            serde_json::json!({
                "path": d.path.display().to_string(),
                "online": d.online,
                "removed": d.removed,
                "total_bytes": d.total_bytes,
                "free_bytes": d.free_bytes,
            })
        })
        .collect();
    serde_json::json!({
        "path": st.path.display().to_string(),
        "objects": st.objects,
        "versions": st.versions,
        "delete_markers": st.delete_markers,
        "logical_bytes": st.logical_bytes,
        "volumes": st.volumes,
        "volume_bytes": st.volume_bytes,
        "placed_volumes": st.placed_volumes,
        "replicas": st.replicas,
        "ec": st.ec.map(|(k, m)| format!("{k}+{m}")),
        "overhead": st.overhead,
        "warnings": st.warnings,
        "last_shutdown_clean": st.last_shutdown_clean,
        "disks": disks,
    })
    .to_string()
}

/// `objfs umount MOUNTPOINT`: unmount, then wait for the daemon to finish and release the
/// store (so that the store can be used again as soon as this returns).
pub fn umount(a: &UmountArgs) -> Result<()> {
    let mp = platform::absolute(&a.mountpoint)?;
    let entry =
        platform::find_mount(&mp)?.with_context(|| format!("{} is not mounted", mp.display()))?;
    if !entry.is_fuse() {
        bail!(
            "{} is not an objfs mount ({} from {})",
            mp.display(),
            entry.fstype,
            entry.source
        );
    }
    // Which daemon serves it: the store's lock names the pid.
    let daemon_pid = store_of_source(&entry.source).and_then(|store| {
        match location::open(&StoreLocation::Local(store)) {
            Err(StoreError::Locked { pid, .. }) => Some(pid),
            Ok(s) => {
                s.close().ok();
                None
            }
            Err(_) => None,
        }
    });
    platform::unmount(&mp, a.lazy).with_context(|| format!("cannot unmount {}", mp.display()))?;
    if a.no_wait || a.lazy {
        return Ok(());
    }
    if let Some(pid) = daemon_pid {
        wait_for_exit(pid, Duration::from_secs(600))?;
    }
    Ok(())
}

/// Waits for the mount daemon to exit (it finishes uploads and closes the store first).
fn wait_for_exit(pid: u32, limit: Duration) -> Result<()> {
    let start = Instant::now();
    let mut told = false;
    while platform::process_alive(pid) {
        if !told && start.elapsed() > Duration::from_secs(3) {
            eprintln!("objfs: waiting for the mount daemon (pid {pid}) to finish uploads and close the store...");
            told = true;
        }
        if start.elapsed() > limit {
            bail!(
                "unmounted, but the mount daemon (pid {pid}) is still running after {} s",
                limit.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(1 << 30), "1.0 GiB");
    }
}
