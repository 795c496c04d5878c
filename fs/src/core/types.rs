//! The core's own plain types: what its calls take and return.
//!
//! They carry no fuser type, so the core is used and tested without FUSE, and the fuser
//! adapter (`adapter.rs`) is the only place that knows fuser's records and converts to them.

use std::time::{Duration, SystemTime};

use crate::attr::Kind;

/// Who is asking (owner of what a request creates).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
}

/// What `stat` shows of one inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub kind: Kind,
    /// Size in bytes.
    pub size: u64,
    /// 512-byte blocks.
    pub blocks: u64,
    pub atime: SystemTime,
    pub mtime: SystemTime,
    /// When the version holding these attributes was made (also reported as the birth time).
    pub ctime: SystemTime,
    /// Permission bits (`0o7777`), without the type.
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    /// Device number (character and block devices).
    pub rdev: u32,
    /// Preferred I/O size.
    pub blksize: u32,
}

/// A directory entry handed to the kernel: inode, attributes and how long to cache them.
#[derive(Debug, Clone)]
pub struct Entry {
    pub ino: u64,
    pub attr: Attr,
    pub ttl: Duration,
    pub generation: u64,
}

/// An open file handle, and whether the kernel may keep the file's cached pages
/// (`FOPEN_KEEP_CACHE`: the handle reads the very version those pages came from; see
/// [`crate::inode::Node::kernel_pages`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    pub fh: u64,
    pub keep_cache: bool,
}

/// A time that `setattr` sets: a given one, or the time of the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetTime {
    At(SystemTime),
    Now,
}

impl SetTime {
    /// The time this stands for, now.
    pub fn resolve(self) -> SystemTime {
        match self {
            SetTime::At(t) => t,
            SetTime::Now => SystemTime::now(),
        }
    }
}

/// What `setattr` changes.
#[derive(Debug, Clone, Default)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<SetTime>,
    pub mtime: Option<SetTime>,
    pub fh: Option<u64>,
}

/// `statfs` figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatFs {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
    pub frsize: u32,
}
