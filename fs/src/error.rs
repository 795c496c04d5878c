//! The filesystem's error type and the ONE place where an error becomes an errno.
//!
//! The core returns [`FsError`]; the fuser adapter calls [`FsError::errno`] and nothing else
//! decides which errno a caller sees. A store error is kept whole inside [`FsError::Store`]
//! (its cause is logged with it) and mapped here from its [`ErrorKind`] by [`store_errno`]:
//! the store itself has no errno table. A full store is ENOSPC wherever it surfaces (a write,
//! a background part upload reported at close, an fsync), never a generic EIO.

use std::io;

use objfs_store::key::KeyError;
use objfs_store::{ErrorKind, StoreError};

/// Result alias of the filesystem crate.
pub type FsResult<T> = std::result::Result<T, FsError>;

/// Every way a filesystem operation can fail.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// No such file or directory (ENOENT).
    #[error("no such file or directory: {0}")]
    NotFound(String),
    /// The name exists already (EEXIST).
    #[error("already exists: {0}")]
    Exists(String),
    /// A path component, or the target of an operation that needs one, is not a directory
    /// (ENOTDIR).
    #[error("not a directory: {0}")]
    NotDir(String),
    /// A directory where a file was needed (EISDIR).
    #[error("is a directory: {0}")]
    IsDir(String),
    /// rmdir of, or rename over, a directory that is not empty (ENOTEMPTY).
    #[error("directory not empty: {0}")]
    NotEmpty(String),
    /// A name longer than 255 bytes or a key longer than 1024 bytes (ENAMETOOLONG).
    #[error("name too long: {0}")]
    NameTooLong(String),
    /// A change on a read-only mount (EROFS).
    #[error("read-only filesystem")]
    ReadOnly,
    /// The store is full (ENOSPC).
    #[error("no space left: {0}")]
    NoSpace(String),
    /// Stored data failed its checksum (EIO). Never returned as data.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// The operation is not permitted (EPERM), e.g. hard links.
    #[error("operation not permitted: {0}")]
    NotPermitted(String),
    /// The operation is not supported (ENOTSUP), e.g. device nodes, FIFOs, sockets.
    #[error("not supported: {0}")]
    NotSupported(String),
    /// A bad argument (EINVAL).
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// An unknown inode or file handle (ENOENT for inodes, EBADF for handles).
    #[error("bad file handle {0}")]
    BadHandle(u64),
    /// The extended attribute does not exist (ENODATA).
    #[error("no such attribute: {0}")]
    NoAttr(String),
    /// The reply buffer is too small (ERANGE).
    #[error("buffer too small: need {0} bytes")]
    Range(usize),
    /// The object store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// Mounting or unmounting failed.
    #[error("mount: {0}")]
    Mount(#[from] io::Error),
    /// A file would need more parts than a multipart upload can have (EFBIG).
    #[error("file too large: {0}")]
    TooBig(String),
    /// A copy of another error (for results shared between waiters), with its errno.
    #[error("{1}")]
    Errno(i32, String),
    /// An internal failure (a task panicked, a runtime could not start) (EIO).
    #[error("internal error: {0}")]
    Internal(String),
}

impl FsError {
    /// The errno a caller sees for this error. The only mapping of errors to errnos.
    pub fn errno(&self) -> i32 {
        match self {
            FsError::NotFound(_) => libc::ENOENT,
            FsError::Exists(_) => libc::EEXIST,
            FsError::NotDir(_) => libc::ENOTDIR,
            FsError::IsDir(_) => libc::EISDIR,
            FsError::NotEmpty(_) => libc::ENOTEMPTY,
            FsError::NameTooLong(_) => libc::ENAMETOOLONG,
            FsError::ReadOnly => libc::EROFS,
            FsError::NoSpace(_) => libc::ENOSPC,
            FsError::Corrupt(_) => libc::EIO,
            FsError::NotPermitted(_) => libc::EPERM,
            FsError::NotSupported(_) => libc::ENOTSUP,
            FsError::Invalid(_) => libc::EINVAL,
            FsError::BadHandle(_) => libc::EBADF,
            FsError::NoAttr(_) => libc::ENODATA,
            FsError::Range(_) => libc::ERANGE,
            FsError::Store(e) => store_errno(e),
            FsError::Mount(e) => e.raw_os_error().unwrap_or(libc::EIO),
            FsError::TooBig(_) => libc::EFBIG,
            FsError::Errno(e, _) => *e,
            FsError::Internal(_) => libc::EIO,
        }
    }

    /// True for errors that are a normal answer (ENOENT on lookup, EEXIST, ...), which are
    /// not worth a warning in the log.
    pub fn is_expected(&self) -> bool {
        matches!(
            self,
            FsError::NotFound(_)
                | FsError::Exists(_)
                | FsError::NotDir(_)
                | FsError::IsDir(_)
                | FsError::NotEmpty(_)
                | FsError::NameTooLong(_)
                | FsError::ReadOnly
                | FsError::NotPermitted(_)
                | FsError::NotSupported(_)
                | FsError::NoAttr(_)
                | FsError::Range(_)
                | FsError::Invalid(_)
        ) || matches!(self, FsError::Store(e) if e.kind() == ErrorKind::NotFound)
    }

    /// An error with the same errno and message (errors are not `Clone`; results shared
    /// between several waiters are handed out with this).
    pub fn duplicate(&self) -> FsError {
        FsError::Errno(self.errno(), self.to_string())
    }

    /// Whether this is a "not found" of any origin.
    pub fn is_not_found(&self) -> bool {
        match self {
            FsError::NotFound(_) => true,
            FsError::Errno(e, _) => *e == libc::ENOENT,
            FsError::Store(e) => matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NoSuchVersion),
            _ => false,
        }
    }
}

/// The errno of a store error, by its kind: the only table from store errors to errnos.
/// Kinds it does not name (the backend failed: corrupt data, I/O, metadata, ...; and kinds a
/// newer store adds) are EIO.
pub fn store_errno(e: &StoreError) -> i32 {
    match e.kind() {
        ErrorKind::NotFound | ErrorKind::NoSuchVersion | ErrorKind::NoSuchUpload => libc::ENOENT,
        ErrorKind::InvalidKey => match e {
            StoreError::InvalidKey {
                reason: KeyError::TooLong { .. },
                ..
            } => libc::ENAMETOOLONG,
            // A name the backend keeps for itself (`.objfs` at the root of an S3 store).
            StoreError::InvalidKey {
                reason: KeyError::Reserved { .. },
                ..
            } => libc::EPERM,
            _ => libc::EINVAL,
        },
        ErrorKind::InvalidPart | ErrorKind::InvalidRange | ErrorKind::InvalidArgument => {
            libc::EINVAL
        }
        // A conditional write lost a race: the name exists now.
        ErrorKind::PreconditionFailed => libc::EEXIST,
        ErrorKind::NoSpace => libc::ENOSPC,
        ErrorKind::Locked => libc::EBUSY,
        ErrorKind::Unsupported => libc::ENOTSUP,
        ErrorKind::PermissionDenied => libc::EACCES,
        _ => libc::EIO,
    }
}
