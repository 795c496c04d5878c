//! The sled side of the metadata: what sled's failures mean to a caller. The shared error enum knows nothing of sled, so the mapping
//! lives here, private to the local store.

use crate::error::{Result, StoreError};

/// What a sled failure means to a caller: its I/O errors keep their cause (a full disk is
/// `NoSpace`), corruption is `Corrupt`, anything else is wrapped as the backend's own error.
/// (The shared error enum knows nothing of sled.)
pub(crate) fn db_error(e: sled::Error) -> StoreError {
    match e {
        sled::Error::Io(source) => StoreError::io("metadata database", source),
        sled::Error::Corruption { at, .. } => StoreError::Corrupt {
            what: format!("metadata database corrupt at {at:?}"),
        },
        other => StoreError::Backend {
            backend: "local metadata (sled)",
            source: Box::new(other),
        },
    }
}

/// `.db()?` turns a sled result into a store result (see [`db_error`]).
pub(crate) trait DbResult<T> {
    fn db(self) -> Result<T>;
}

impl<T> DbResult<T> for std::result::Result<T, sled::Error> {
    fn db(self) -> Result<T> {
        self.map_err(db_error)
    }
}
