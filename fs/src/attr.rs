//! Object metadata <-> POSIX attributes.
//!
//! POSIX attributes live in an object's user metadata under the names s3fs uses, so a store
//! written by objfs reads right in s3fs and the other way round:
//!
//! | name                | value                                                            |
//! |---------------------|------------------------------------------------------------------|
//! | `x-amz-meta-mode`   | the full `st_mode` (type bits included) as s3fs writes it: a     |
//! |                     | decimal number (`33188` = `0100644`). Read with C `strtol` base  |
//! |                     | 0 rules (a leading `0` means octal, `0x` hex), as s3fs reads it. |
//! | `x-amz-meta-uid`    | decimal uid                                                      |
//! | `x-amz-meta-gid`    | decimal gid                                                      |
//! | `x-amz-meta-mtime`  | whole seconds since the epoch (`"sec"`; `"sec.frac"` is read)   |
//! | `x-objfs-mtime-nsec`| objfs only: the nanoseconds part of the mtime (0..1e9)          |
//!
//! Missing values fall back to the mount's defaults ([`crate::FsConfig`]); a missing mtime
//! falls back to the version's creation time. ctime is the version's creation time (every
//! attribute change makes a new version); atime is not stored and equals mtime.
//! A symlink is an object whose mode has `S_IFLNK`; its body is the target (as in s3fs).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use objfs_store::{Metadata, ObjectInfo};

use crate::config::FsConfig;
use crate::core::Attr;

/// Metadata name of the mode (s3fs's).
pub const META_MODE: &str = "x-amz-meta-mode";
/// Metadata name of the owner (s3fs's).
pub const META_UID: &str = "x-amz-meta-uid";
/// Metadata name of the group (s3fs's).
pub const META_GID: &str = "x-amz-meta-gid";
/// Metadata name of the modification time in whole seconds (s3fs's).
pub const META_MTIME: &str = "x-amz-meta-mtime";
/// Metadata name of the access time set by utimens, whole seconds (s3fs's).
pub const META_ATIME: &str = "x-amz-meta-atime";
/// Metadata name of the nanoseconds part of the access time (objfs's own).
pub const META_ATIME_NSEC: &str = "x-objfs-atime-nsec";
/// Metadata name of a device's number, decimal `st_rdev` (s3fs's).
pub const META_RDEV: &str = "x-amz-meta-rdev";
/// Metadata name of the nanoseconds part of the modification time (objfs's own).
pub const META_MTIME_NSEC: &str = "x-objfs-mtime-nsec";
/// objfs's own: the link count of a hard-linked file, on its inode object (see `core/links.rs`).
pub const META_NLINK: &str = "x-objfs-nlink";

/// Block size reported by `stat` and `statfs`.
pub const BLOCK_SIZE: u32 = 4096;

/// What an inode is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// A named pipe (mkfifo): a zero-byte object; its data never reaches the store.
    Fifo,
    /// A character device: a zero-byte object with its device number.
    CharDev,
    /// A block device: a zero-byte object with its device number.
    BlockDev,
    /// A Unix-domain socket's name: a zero-byte object.
    Socket,
}

impl Kind {
    /// The `S_IFMT` bits.
    pub fn type_bits(self) -> u32 {
        match self {
            Kind::File => libc::S_IFREG,
            Kind::Dir => libc::S_IFDIR,
            Kind::Symlink => libc::S_IFLNK,
            Kind::Fifo => libc::S_IFIFO,
            Kind::CharDev => libc::S_IFCHR,
            Kind::BlockDev => libc::S_IFBLK,
            Kind::Socket => libc::S_IFSOCK,
        }
    }

    /// The kind of an object (not a directory marker) from its full mode; a mode without (or
    /// with an unknown) type is a regular file.
    pub fn of_object_mode(mode: Option<u32>) -> Kind {
        match mode.map(|m| m & libc::S_IFMT) {
            Some(libc::S_IFLNK) => Kind::Symlink,
            Some(libc::S_IFIFO) => Kind::Fifo,
            Some(libc::S_IFCHR) => Kind::CharDev,
            Some(libc::S_IFBLK) => Kind::BlockDev,
            Some(libc::S_IFSOCK) => Kind::Socket,
            _ => Kind::File,
        }
    }

    /// A FIFO, device or socket: an inode the kernel serves once it exists.
    pub fn is_special(self) -> bool {
        matches!(
            self,
            Kind::Fifo | Kind::CharDev | Kind::BlockDev | Kind::Socket
        )
    }
}

/// The POSIX attributes of an entry, independent of its inode number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attrs {
    pub kind: Kind,
    /// Size in bytes (the target length for a symlink, 0 for a directory).
    pub size: u64,
    /// Permission bits (`0o7777`), without the type.
    pub perm: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: SystemTime,
    /// Last access: set by utimens (stored) or by a read (relatime, kept beside the versions).
    pub atime: SystemTime,
    /// When the version holding these attributes was made.
    pub ctime: SystemTime,
    /// Device number of a character or block device (0 otherwise).
    pub rdev: u32,
    /// Link count: 2 for a directory, the count of a hard-linked file's inode object, else 1.
    pub nlink: u32,
}

impl Attrs {
    /// Attributes of something that has no metadata: the mount's defaults.
    pub fn default_for(kind: Kind, cfg: &FsConfig, now: SystemTime) -> Attrs {
        let perm = match kind {
            Kind::Dir => cfg.dir_mode,
            Kind::Symlink => 0o777,
            _ => cfg.file_mode,
        } & 0o7777;
        Attrs {
            kind,
            size: 0,
            perm,
            uid: cfg.uid,
            gid: cfg.gid,
            mtime: now,
            atime: now,
            ctime: now,
            rdev: 0,
            nlink: if kind == Kind::Dir { 2 } else { 1 },
        }
    }

    /// Attributes of an object (a file, a symlink, or a directory marker when `dir`).
    pub fn from_object(info: &ObjectInfo, dir: bool, cfg: &FsConfig) -> Attrs {
        let mode = info.metadata.get(META_MODE).and_then(|s| parse_mode(s));
        let kind = if dir {
            Kind::Dir
        } else {
            Kind::of_object_mode(mode)
        };
        let mut a = Attrs::default_for(kind, cfg, info.modified);
        if let Some(m) = mode {
            a.perm = m & 0o7777;
        }
        if let Some(u) = info
            .metadata
            .get(META_UID)
            .and_then(|s| s.trim().parse().ok())
        {
            a.uid = u;
        }
        if let Some(g) = info
            .metadata
            .get(META_GID)
            .and_then(|s| s.trim().parse().ok())
        {
            a.gid = g;
        }
        if let Some(t) = parse_mtime(&info.metadata) {
            a.mtime = t;
        }
        a.atime = parse_time(&info.metadata, META_ATIME, META_ATIME_NSEC).unwrap_or(a.mtime);
        if matches!(kind, Kind::CharDev | Kind::BlockDev) {
            a.rdev = parse_u32(&info.metadata, META_RDEV).unwrap_or(0);
        }
        if !dir {
            a.nlink = parse_u32(&info.metadata, META_NLINK)
                .filter(|n| *n > 0)
                .unwrap_or(1);
        }
        a.size = if dir { 0 } else { info.size };
        a
    }

    /// The full `st_mode`.
    pub fn mode(&self) -> u32 {
        self.kind.type_bits() | (self.perm & 0o7777)
    }

    /// Writes these attributes into `meta` (other entries are kept).
    pub fn store_into(&self, meta: &mut Metadata) {
        meta.insert(META_MODE.into(), self.mode().to_string());
        meta.insert(META_UID.into(), self.uid.to_string());
        meta.insert(META_GID.into(), self.gid.to_string());
        let d = self
            .mtime
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        meta.insert(META_MTIME.into(), d.as_secs().to_string());
        meta.insert(META_MTIME_NSEC.into(), d.subsec_nanos().to_string());
        let d = self
            .atime
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        meta.insert(META_ATIME.into(), d.as_secs().to_string());
        meta.insert(META_ATIME_NSEC.into(), d.subsec_nanos().to_string());
        if matches!(self.kind, Kind::CharDev | Kind::BlockDev) {
            meta.insert(META_RDEV.into(), self.rdev.to_string());
        } else {
            meta.remove(META_RDEV);
        }
    }

    /// What `stat` shows of inode `ino` with these attributes.
    pub fn to_attr(&self, ino: u64) -> Attr {
        Attr {
            ino,
            kind: self.kind,
            size: self.size,
            blocks: self.size.div_ceil(512),
            atime: self.atime,
            mtime: self.mtime,
            ctime: self.ctime,
            perm: (self.perm & 0o7777) as u16,
            nlink: self.nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: self.rdev,
            blksize: BLOCK_SIZE,
        }
    }
}

/// A decimal u32 metadata value.
fn parse_u32(meta: &Metadata, name: &str) -> Option<u32> {
    meta.get(name).and_then(|s| s.trim().parse().ok())
}

/// Parses a mode the way s3fs does (`strtol(s, NULL, 0)`): decimal, or octal with a leading
/// `0`, or hex with `0x`.
/// Permission bits after a change that drops set-id privileges (a write, a truncate or a
/// chown by a process without CAP_FSETID): S_ISUID goes, and S_ISGID when the file is
/// group-executable (without S_IXGRP it marks mandatory locking, which stays), as the kernel's
/// `setattr_should_drop_suidgid` decides for a local filesystem.
pub fn killed_setid(perm: u32) -> u32 {
    let mut p = perm & !0o4000;
    if p & 0o2010 == 0o2010 {
        p &= !0o2000;
    }
    p
}

pub fn parse_mode(s: &str) -> Option<u32> {
    let s = s.trim();
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u32::from_str_radix(hex, 16).ok()
    } else if s.len() > 1 && s.starts_with('0') {
        u32::from_str_radix(&s[1..], 8).ok()
    } else {
        s.parse().ok()
    }
}

/// Reads the mtime: `x-amz-meta-mtime` as `sec` or `sec.frac`, refined by
/// `x-objfs-mtime-nsec` when the seconds value has no fraction.
pub fn parse_mtime(meta: &Metadata) -> Option<SystemTime> {
    parse_time(meta, META_MTIME, META_MTIME_NSEC)
}

/// Reads a time stored as `secs` (whole seconds or `sec.frac`, s3fs's forms), refined by
/// `nsec` when the seconds have no fraction.
pub fn parse_time(meta: &Metadata, secs: &str, nsec: &str) -> Option<SystemTime> {
    let s = meta.get(secs)?.trim();
    let (secs, frac) = match s.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    let secs: i64 = secs.parse().ok()?;
    let nanos: u32 = match frac {
        Some(f) => {
            let digits: String = f.chars().take(9).collect();
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                0
            } else {
                let scale = 10u32.pow(9 - digits.len() as u32);
                digits.parse::<u32>().ok()? * scale
            }
        }
        None => meta
            .get(nsec)
            .and_then(|n| n.trim().parse::<u32>().ok())
            .filter(|n| *n < 1_000_000_000)
            .unwrap_or(0),
    };
    if secs >= 0 {
        Some(UNIX_EPOCH + Duration::new(secs as u64, nanos))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setid_bits_drop_as_the_kernel_drops_them() {
        assert_eq!(
            killed_setid(0o6755),
            0o0755,
            "both go when group-executable"
        );
        assert_eq!(
            killed_setid(0o6745),
            0o2745,
            "S_ISGID without S_IXGRP stays"
        );
        assert_eq!(killed_setid(0o4700), 0o0700);
        assert_eq!(killed_setid(0o2775), 0o0775);
        assert_eq!(killed_setid(0o1777), 0o1777, "the sticky bit stays");
        assert_eq!(killed_setid(0o0644), 0o0644);
    }

    #[test]
    fn modes_parse_like_strtol() {
        assert_eq!(parse_mode("33188"), Some(0o100644));
        assert_eq!(parse_mode("0100644"), Some(0o100644));
        assert_eq!(parse_mode("0x81a4"), Some(0o100644));
        assert_eq!(parse_mode("0"), Some(0));
        assert_eq!(parse_mode("rw"), None);
    }

    #[test]
    fn mtime_roundtrip_keeps_nanos() {
        let cfg = FsConfig::default();
        let mut a = Attrs::default_for(Kind::File, &cfg, UNIX_EPOCH);
        a.mtime = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        let mut m = Metadata::new();
        a.store_into(&mut m);
        assert_eq!(m.get(META_MTIME).map(String::as_str), Some("1700000000"));
        assert_eq!(m.get(META_MODE).map(String::as_str), Some("33188"));
        assert_eq!(parse_mtime(&m), Some(a.mtime));
        m.insert(META_MTIME.into(), "1700000000.5".into());
        assert_eq!(
            parse_mtime(&m),
            Some(UNIX_EPOCH + Duration::new(1_700_000_000, 500_000_000))
        );
    }
}
