//! The platform layer: everything that differs between Linux and macOS lives here, and nothing
//! else in the command looks at the operating system.
//!
//! * Linux: mounts go through `/dev/fuse` and the setuid `fusermount3` helper (fuser's pure-Rust
//!   mount); unmounting is `fusermount3 -u` (falling back to `fusermount -u`, or to `umount` for
//!   root when neither is installed); the mount table is `/proc/self/mountinfo`.
//! * macOS: mounts go through macFUSE (fuser talks to its `mount_macfuse` helper); unmounting is
//!   `umount` (`diskutil unmount force` for a forced one); the mount table is the output of
//!   `mount`.
//!
//! Other Unixes compile with the macOS behaviour (`umount`, `mount` output), untested.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// One entry of the mount table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// What was mounted (for objfs: `objfs:/path/to/store`).
    pub source: String,
    /// Where.
    pub mountpoint: PathBuf,
    /// The filesystem type (`fuse`, `fuse.objfs`, `macfuse`, ...).
    pub fstype: String,
}

impl MountEntry {
    /// Whether this looks like a FUSE mount.
    pub fn is_fuse(&self) -> bool {
        self.fstype.starts_with("fuse") || self.fstype.contains("fuse")
    }
}

/// Whether a stat failed because the FUSE process behind the path is gone: the kernel answers
/// ENOTCONN, or ECONNABORTED once the connection was aborted (newer kernels, `auto_unmount`'s
/// helper, or a write to `/sys/fs/fuse/connections/N/abort`), or ECANCELED for a request
/// caught while the kernel tears down a dead process's FUSE-over-io_uring queues.
pub fn is_dead_mount_error(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOTCONN) | Some(libc::ECONNABORTED) | Some(libc::ECANCELED)
    )
}

/// Makes `path` absolute without touching it when it cannot be resolved (a dead FUSE mount
/// fails every stat with ENOTCONN, yet must still be found in the mount table).
pub fn absolute(path: &Path) -> Result<PathBuf> {
    if let Ok(p) = path.canonicalize() {
        return Ok(p);
    }
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    Ok(cwd.join(path))
}

/// Undoes the octal escapes (`\040` for a space) of `/proc/self/mountinfo`.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn unescape_mountinfo(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `/proc/self/mountinfo` text.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    let mut out = Vec::new();
    for line in text.lines() {
        // id parent major:minor root mountpoint options [optional...] - fstype source superopts
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        if left.len() < 5 || right.len() < 2 {
            continue;
        }
        out.push(MountEntry {
            mountpoint: PathBuf::from(unescape_mountinfo(left[4])),
            fstype: unescape_mountinfo(right[0]),
            source: unescape_mountinfo(right[1]),
        });
    }
    out
}

/// Parses the output of macOS's `mount`: `source on /path (type, options...)`.
#[cfg_attr(target_os = "linux", allow(dead_code))]
fn parse_mount_output(text: &str) -> Vec<MountEntry> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((source, rest)) = line.split_once(" on ") else {
            continue;
        };
        let Some(paren) = rest.rfind(" (") else {
            continue;
        };
        let (mp, opts) = rest.split_at(paren);
        let fstype = opts
            .trim_start_matches(" (")
            .split([',', ')'])
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        out.push(MountEntry {
            source: source.to_string(),
            mountpoint: PathBuf::from(mp),
            fstype,
        });
    }
    out
}

/// The current mount table.
pub fn mount_table() -> Result<Vec<MountEntry>> {
    #[cfg(target_os = "linux")]
    {
        let text = std::fs::read_to_string("/proc/self/mountinfo")
            .context("cannot read /proc/self/mountinfo")?;
        Ok(parse_mountinfo(&text))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let out = Command::new("mount")
            .output()
            .context("cannot run `mount` to read the mount table")?;
        Ok(parse_mount_output(&String::from_utf8_lossy(&out.stdout)))
    }
}

/// The mount at exactly `mountpoint` (the newest one when mounts are stacked), if any.
pub fn find_mount(mountpoint: &Path) -> Result<Option<MountEntry>> {
    let mp = absolute(mountpoint)?;
    Ok(mount_table()?.into_iter().rfind(|e| e.mountpoint == mp))
}

/// Finds `name` in `PATH` (and the usual system directories, which a daemon's or a mount
/// helper's PATH may lack).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for d in ["/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin"] {
        dirs.push(PathBuf::from(d));
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// Checks that FUSE can be used here, with a message that says how to fix it otherwise.
pub fn check_fuse() -> Result<()> {
    #[cfg(target_os = "linux")]
    {
        if !Path::new("/dev/fuse").exists() {
            bail!(
                "/dev/fuse does not exist: load the fuse module (`modprobe fuse`) or, in a \
                 container, pass the device through (`--device /dev/fuse --cap-add SYS_ADMIN`)"
            );
        }
        let root = nix::unistd::geteuid().is_root();
        if !root && find_program("fusermount3").is_none() && find_program("fusermount").is_none() {
            bail!("fusermount3 is not installed: install the fuse3 package (`sudo apt-get install fuse3`)");
        }
        Ok(())
    }
    #[cfg(target_os = "macos")]
    {
        if !Path::new("/Library/Filesystems/macfuse.fs").exists() {
            bail!("macFUSE is not installed: install it from https://osxfuse.github.io/ (or `brew install --cask macfuse`)");
        }
        Ok(())
    }
    #[cfg(not(any(target_os = "linux", target_os = "macos")))]
    {
        Ok(())
    }
}

/// The command that unmounts `mountpoint`; `lazy` detaches it even while it is busy.
pub fn unmount_command(mountpoint: &Path, lazy: bool) -> Result<(PathBuf, Vec<OsString>)> {
    let mp = mountpoint.as_os_str().to_os_string();
    #[cfg(target_os = "linux")]
    {
        for helper in ["fusermount3", "fusermount"] {
            if let Some(prog) = find_program(helper) {
                let mut args: Vec<OsString> = vec!["-u".into()];
                if lazy {
                    args.push("-z".into());
                }
                args.push(mp);
                return Ok((prog, args));
            }
        }
        if let Some(prog) = find_program("umount") {
            let mut args: Vec<OsString> = Vec::new();
            if lazy {
                args.push("-l".into());
            }
            args.push(mp);
            return Ok((prog, args));
        }
        bail!("neither fusermount3 nor umount is installed: install the fuse3 package")
    }
    #[cfg(not(target_os = "linux"))]
    {
        if lazy {
            if let Some(prog) = find_program("diskutil") {
                return Ok((prog, vec!["unmount".into(), "force".into(), mp]));
            }
            if let Some(prog) = find_program("umount") {
                return Ok((prog, vec!["-f".into(), mp]));
            }
        }
        let prog = find_program("umount").context("umount is not installed")?;
        Ok((prog, vec![mp]))
    }
}

/// Unmounts `mountpoint` with the platform's tool, returning its error text on failure.
pub fn unmount(mountpoint: &Path, lazy: bool) -> Result<()> {
    let (prog, args) = unmount_command(mountpoint, lazy)?;
    let out = Command::new(&prog)
        .args(&args)
        .output()
        .with_context(|| format!("cannot run {}", prog.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        let err = if err.is_empty() {
            format!("{} exited with {}", prog.display(), out.status)
        } else {
            err
        };
        bail!("{err}");
    }
    Ok(())
}

/// Whether process `pid` is still alive (a zombie, dead but not yet reaped by its parent,
/// is not).
pub fn process_alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    let exists = match nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None) {
        Ok(()) => true,
        Err(nix::errno::Errno::EPERM) => true,
        Err(_) => false,
    };
    exists && !is_zombie(pid)
}

/// Whether `pid` is a zombie (Linux: state `Z` in /proc/PID/stat; elsewhere never known).
fn is_zombie(pid: u32) -> bool {
    #[cfg(target_os = "linux")]
    {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|st| {
                st.rsplit(')')
                    .next()
                    .is_some_and(|rest| rest.trim_start().starts_with('Z'))
            })
            .unwrap_or(false)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = pid;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo() {
        let text = "36 35 98:0 /mnt1 /mnt/my\\040dir rw,noatime master:1 - fuse.objfs objfs:/srv/s\\040t rw,user_id=0\n\
                    37 35 98:0 / /proc rw - proc proc rw\n";
        let t = parse_mountinfo(text);
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].mountpoint, PathBuf::from("/mnt/my dir"));
        assert_eq!(t[0].source, "objfs:/srv/s t");
        assert_eq!(t[0].fstype, "fuse.objfs");
        assert!(t[0].is_fuse());
        assert!(!t[1].is_fuse());
    }

    #[test]
    fn mount_output() {
        let text = "/dev/disk1s1 on / (apfs, local, journaled)\nobjfs:/Users/a/s on /Users/a/m (macfuse, nodev, nosuid, synchronous, mounted by a)\n";
        let t = parse_mount_output(text);
        assert_eq!(t.len(), 2);
        assert_eq!(t[1].mountpoint, PathBuf::from("/Users/a/m"));
        assert_eq!(t[1].source, "objfs:/Users/a/s");
        assert_eq!(t[1].fstype, "macfuse");
        assert!(t[1].is_fuse());
    }
}
