//! `objfs init`, `objfs status` and `objfs umount`.

use std::io::ErrorKind as IoErrorKind;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use objfs_store::local::config::MARKER;
use objfs_store::local::{EcSetting, LocalConfig};
use objfs_store::StoreError;

use crate::cli::{InitArgs, StatusArgs, UmountArgs};
use crate::location::{self, StoreLocation};
use crate::mount::explain_open_error;
use crate::ops::Request;
use crate::options::parse_size;
use crate::progress::Feedback;
use crate::{platform, render, runtime, target};

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
        Ok(_) if path.join(MARKER).is_file() => {
            bail!("{} is already an objfs store", path.display())
        }
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
        cfg.volume_size =
            parse_size(v).map_err(|e| crate::usage(format!("bad --volume-size: {e:#}")))?;
    }
    for d in &a.disks {
        cfg.disks.push(platform::absolute(d)?);
    }
    if let Some(r) = a.replicas {
        if r == 0 {
            return Err(crate::usage("--replicas must be at least 1"));
        }
        cfg.replicas = r;
    }
    if let Some(ec) = &a.ec {
        cfg.ec = parse_ec(ec).map_err(|e| crate::usage(format!("{e:#}")))?;
    }
    // A bad duration is reported before anything is created.
    a.retention.change()?;
    let store = location::init(&loc, cfg).map_err(|e| explain_open_error(&path, e))?;
    if let Some(local) = store.local() {
        crate::history_commands::init_retention(local, &a.retention)?;
    }
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

/// `objfs status STORE` (or a mount point): from the mount process when the store is
/// mounted, from the store itself when it is not; the same report either way.
pub fn status(a: &StatusArgs) -> Result<()> {
    let loc = StoreLocation::parse(&a.store).ok();
    let v = match loc {
        Some(loc @ StoreLocation::S3 { .. }) => crate::s3mount::status(loc, &a.s3.settings())?,
        _ => target::resolve(&a.store)?.execute(&Request::Status, &mut Feedback::new(true))?,
    };
    if a.json {
        println!("{v}");
    } else if v.get("s3").is_some() {
        print!("{}", crate::s3mount::status_text(&v));
    } else {
        print!("{}", render::status_text(&v)?);
    }
    Ok(())
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
    // Which process serves it: the runtime registry says (never the mount table's fsname).
    let daemon_pid = runtime::lookup_mountpoint(&mp).map(|m| m.record.pid);
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
