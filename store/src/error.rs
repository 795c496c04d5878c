//! The typed errors every backend returns.
//!
//! One enum for all backends so callers (the filesystem, the CLI) can act on a failure without
//! knowing which backend produced it. Variants carry enough context (key, version, volume,
//! block) to write a useful log line. What a failure means to a caller is its [`ErrorKind`]:
//! the filesystem maps kinds to errnos itself (objfs-fs's `error` module); this crate has no
//! errno table. A backend's own library errors (sled, an HTTP client) are not variants here:
//! they are wrapped in [`StoreError::Backend`], or mapped by the backend onto a kind that says
//! what happened (a full disk is [`StoreError::NoSpace`] whatever reported it).
//!
//! Both enums are `#[non_exhaustive]`: remote backends will add failures (and already have a
//! retryable class, [`StoreError::is_retryable`]).

use std::io;
use std::path::PathBuf;

use crate::key::KeyError;
use crate::types::VersionId;

/// Result alias used throughout the crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Every way an object-store operation can fail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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

    /// The metadata database failed (a record that does not encode, a task that died).
    #[error("metadata error: {0}")]
    Metadata(String),

    /// A backend's own library failed in a way no other variant describes.
    #[error("{backend}: {source}")]
    Backend {
        /// Which backend (or which of its parts), e.g. `"local metadata (sled)"`.
        backend: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A remote backend could not be reached or failed on its side (connection refused, a 5xx
    /// answer). Retryable.
    #[error("{what} is unavailable: {reason}")]
    Unavailable { what: String, reason: String },

    /// A remote backend asked us to slow down (S3's `503 SlowDown`). Retryable after a pause.
    #[error("throttled by {what}: {reason}")]
    Throttled { what: String, reason: String },

    /// A remote backend refused the request: bad credentials, or no permission for the bucket
    /// or key (S3's 403). Not retryable.
    #[error("permission denied: {0}")]
    PermissionDenied(String),

    /// The remote bucket does not exist (S3's `NoSuchBucket`). Not retryable.
    #[error("no such bucket: {0}")]
    NoSuchBucket(String),

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
            StoreError::Backend { .. } => ErrorKind::Backend,
            StoreError::Unavailable { .. } => ErrorKind::Unavailable,
            StoreError::Throttled { .. } => ErrorKind::Throttled,
            StoreError::PermissionDenied(_) => ErrorKind::PermissionDenied,
            StoreError::NoSuchBucket(_) => ErrorKind::NoSuchBucket,
            StoreError::Io { .. } => ErrorKind::Io,
        }
    }

    /// Whether trying the same operation again later may succeed (a remote that is down or
    /// throttling). Nothing the local store returns is retryable.
    pub fn is_retryable(&self) -> bool {
        self.kind().is_retryable()
    }

    /// The same error again, for results shared between several waiters (one failed group
    /// sync answers every caller it covered). Kind, context and message are kept (a full disk
    /// stays [`StoreError::NoSpace`]); an I/O error keeps its `io::ErrorKind` and OS error code.
    pub fn duplicate(&self) -> StoreError {
        use StoreError::*;
        match self {
            NotFound { key } => NotFound { key: key.clone() },
            NoSuchVersion { key, version } => NoSuchVersion {
                key: key.clone(),
                version: version.clone(),
            },
            NoSuchUpload { upload_id } => NoSuchUpload {
                upload_id: upload_id.clone(),
            },
            InvalidKey { key, reason } => InvalidKey {
                key: key.clone(),
                reason: reason.clone(),
            },
            InvalidPart(m) => InvalidPart(m.clone()),
            InvalidRange { start, end, size } => InvalidRange {
                start: *start,
                end: *end,
                size: *size,
            },
            InvalidArgument(m) => InvalidArgument(m.clone()),
            PreconditionFailed { key, reason } => PreconditionFailed {
                key: key.clone(),
                reason: reason.clone(),
            },
            Corrupt { what } => Corrupt { what: what.clone() },
            NoSpace(m) => NoSpace(m.clone()),
            Locked { path, pid } => Locked {
                path: path.clone(),
                pid: *pid,
            },
            NotAStore { path, reason } => NotAStore {
                path: path.clone(),
                reason: reason.clone(),
            },
            UnsupportedFormat {
                path,
                found,
                supported,
            } => UnsupportedFormat {
                path: path.clone(),
                found: *found,
                supported: *supported,
            },
            Unsupported(m) => Unsupported(m.clone()),
            Metadata(m) => Metadata(m.clone()),
            Backend { backend, source } => Backend {
                backend,
                source: source.to_string().into(),
            },
            Unavailable { what, reason } => Unavailable {
                what: what.clone(),
                reason: reason.clone(),
            },
            Throttled { what, reason } => Throttled {
                what: what.clone(),
                reason: reason.clone(),
            },
            PermissionDenied(m) => PermissionDenied(m.clone()),
            NoSuchBucket(m) => NoSuchBucket(m.clone()),
            Io { context, source } => Io {
                context: context.clone(),
                source: match source.raw_os_error() {
                    Some(code) => io::Error::from_raw_os_error(code),
                    None => io::Error::new(source.kind(), source.to_string()),
                },
            },
        }
    }
}

/// The variant of a [`StoreError`] without its payload: what a caller acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
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
    Backend,
    Unavailable,
    Throttled,
    PermissionDenied,
    NoSuchBucket,
    Io,
}

impl ErrorKind {
    /// The retryable class: a remote that is down or throttling.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorKind::Unavailable | ErrorKind::Throttled)
    }
}
