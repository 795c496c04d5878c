//! The typed errors every backend returns.
//!
//! One enum for all backends so callers (the filesystem, the CLI) can map a failure to an errno
//! or a message without knowing which backend produced it. Variants carry enough context (key,
//! version, volume, block) to write a useful log line.

use std::io;
use std::path::PathBuf;

use crate::key::KeyError;
use crate::types::VersionId;

/// Result alias used throughout the crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Every way an object-store operation can fail.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The key has no live version (never written, or its newest version is a delete marker).
    #[error("no such key: {key:?}")]
    NotFound { key: String },

    /// The key exists but the requested version does not (or is a delete marker where data was
    /// asked for).
    #[error("no such version {version} of key {key:?}")]
    NoSuchVersion { key: String, version: VersionId },

    /// The multipart upload id is unknown (never created, completed or aborted).
    #[error("no such multipart upload {upload_id:?}")]
    NoSuchUpload { upload_id: String },

    /// The key violates the key rules (see [`crate::key`]).
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey { key: String, reason: KeyError },

    /// A multipart part number or part list is not acceptable.
    #[error("invalid part: {0}")]
    InvalidPart(String),

    /// A byte range that does not fit the object.
    #[error("invalid range {start}..{end} for object of {size} bytes")]
    InvalidRange { start: u64, end: u64, size: u64 },

    /// An argument other than a key is not acceptable (bad token, zero max keys, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// A conditional write found a different current version than it required.
    #[error("precondition failed for key {key:?}: {reason}")]
    PreconditionFailed { key: String, reason: String },

    /// Stored bytes failed their checksum and could not be repaired. Never returned as data.
    #[error("corrupt data: {what}")]
    Corrupt { what: String },

    /// The disk (or the configured capacity) is full.
    #[error("no space left: {0}")]
    NoSpace(String),

    /// Another process owns the store.
    #[error("store {path} is in use by pid {pid}")]
    Locked { path: PathBuf, pid: u32 },

    /// The directory is not an objfs store (and is not empty, so it was not initialised).
    #[error("{path} is not an objfs store: {reason}")]
    NotAStore { path: PathBuf, reason: String },

    /// The store was written by a newer (or unknown) format version.
    #[error("unsupported store format {found} at {path} (this build reads format {supported})")]
    UnsupportedFormat {
        path: PathBuf,
        found: u32,
        supported: u32,
    },

    /// The operation is not supported by this backend.
    #[error("not supported: {0}")]
    Unsupported(String),

    /// The metadata database failed.
    #[error("metadata error: {0}")]
    Metadata(String),

    /// An I/O error with what we were doing when it happened.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

impl StoreError {
    /// Wraps an [`io::Error`], turning "disk full" into [`StoreError::NoSpace`].
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        let context = context.into();
        match source.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => StoreError::NoSpace(context),
            _ => StoreError::Io { context, source },
        }
    }

    /// A short, stable name of the variant, for tests and logs.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::NotFound { .. } => ErrorKind::NotFound,
            StoreError::NoSuchVersion { .. } => ErrorKind::NoSuchVersion,
            StoreError::NoSuchUpload { .. } => ErrorKind::NoSuchUpload,
            StoreError::InvalidKey { .. } => ErrorKind::InvalidKey,
            StoreError::InvalidPart(_) => ErrorKind::InvalidPart,
            StoreError::InvalidRange { .. } => ErrorKind::InvalidRange,
            StoreError::InvalidArgument(_) => ErrorKind::InvalidArgument,
            StoreError::PreconditionFailed { .. } => ErrorKind::PreconditionFailed,
            StoreError::Corrupt { .. } => ErrorKind::Corrupt,
            StoreError::NoSpace(_) => ErrorKind::NoSpace,
            StoreError::Locked { .. } => ErrorKind::Locked,
            StoreError::NotAStore { .. } => ErrorKind::NotAStore,
            StoreError::UnsupportedFormat { .. } => ErrorKind::UnsupportedFormat,
            StoreError::Unsupported(_) => ErrorKind::Unsupported,
            StoreError::Metadata(_) => ErrorKind::Metadata,
            StoreError::Io { .. } => ErrorKind::Io,
        }
    }

    /// The errno a filesystem should report for this error.
    pub fn errno(&self) -> i32 {
        match self.kind() {
            ErrorKind::NotFound | ErrorKind::NoSuchVersion | ErrorKind::NoSuchUpload => {
                libc::ENOENT
            }
            ErrorKind::InvalidKey => match self {
                StoreError::InvalidKey {
                    reason: KeyError::TooLong { .. },
                    ..
                } => libc::ENAMETOOLONG,
                _ => libc::EINVAL,
            },
            ErrorKind::InvalidPart | ErrorKind::InvalidRange | ErrorKind::InvalidArgument => {
                libc::EINVAL
            }
            ErrorKind::PreconditionFailed => libc::EEXIST,
            ErrorKind::NoSpace => libc::ENOSPC,
            ErrorKind::Locked => libc::EBUSY,
            ErrorKind::Unsupported => libc::ENOTSUP,
            ErrorKind::Corrupt
            | ErrorKind::NotAStore
            | ErrorKind::UnsupportedFormat
            | ErrorKind::Metadata
            | ErrorKind::Io => libc::EIO,
        }
    }
}

/// The variant of a [`StoreError`] without its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    NotFound,
    NoSuchVersion,
    NoSuchUpload,
    InvalidKey,
    InvalidPart,
    InvalidRange,
    InvalidArgument,
    PreconditionFailed,
    Corrupt,
    NoSpace,
    Locked,
    NotAStore,
    UnsupportedFormat,
    Unsupported,
    Metadata,
    Io,
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        match e {
            sled::Error::Io(source) => StoreError::io("metadata database", source),
            sled::Error::Corruption { at, .. } => StoreError::Corrupt {
                what: format!("metadata database corrupt at {at:?}"),
            },
            other => StoreError::Metadata(other.to_string()),
        }
    }
}
