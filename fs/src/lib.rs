//! objfs-fs: the objfs filesystem.
//!
//! A testable, async core ([`ObjFs`]) that implements the file operations over any
//! [`objfs_store::ObjectStore`], and a thin fuser 0.18 adapter that only translates kernel
//! requests into core calls and core results into replies. [`mount()`] puts the two together on
//! a tokio runtime owned by the mount and returns a [`MountHandle`].
//!
//! Modules: [`config`] (mount options), [`error`] (errors and the one errno mapping),
//! [`attr`] (metadata <-> attributes), [`xattr`] (extended attributes in metadata),
//! [`inode`] (inode table), [`dirhandle`] (listing -> readdir offsets), [`read`] (block cache
//! and readahead), [`diskcache`] (the disk tier under it for remote mounts), [`write`](mod@write) (multipart write handles; commit planning in `write/parts.rs`),
//! [`budget`] (write memory budget), [`closers`] (whose close(2) commits), [`core`] (the filesystem, split by concept: namespace,
//! rename, files, attributes, directories, directory markers; its plain types in
//! [`core::types`]), [`adapter`] (fuser, the only module that sees fuser's types), [`mount`](mod@mount)
//! (entry point).
//!
//! Where the filesystem differs from POSIX is written down in `docs/SEMANTICS.md`.

pub mod adapter;
pub mod attr;
pub mod budget;
pub mod closers;
pub mod config;
pub mod core;
pub mod dirhandle;
pub mod diskcache;
pub mod error;
pub mod inode;
pub mod mount;
pub mod read;
pub mod write;
pub mod xattr;

pub use crate::core::{
    Attr, Caller, Entry, KernelNotifier, ObjFs, Opened, SetAttr, SetTime, StatFs,
};
pub use attr::Kind;
pub use config::FsConfig;
pub use error::{FsError, FsResult};
pub use mount::{mount, MountHandle};
