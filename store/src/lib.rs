//! objfs-store: the versioned object store under objfs.
//!
//! * [`ObjectStore`] — the one async, object-safe API (S3 semantics) that the filesystem uses.
//! * [`memory::MemoryStore`] — an in-memory backend, obviously right: the test double and the
//!   reference model of the property tests.
//! * `local::LocalStore` (feature `local`) — the embedded store: sled metadata, data appended into volume files
//!   with per-block BLAKE3 checksums, crash-safe commits.
//!
//! Pure rules (keys, ranges) live in [`key`] and [`types`], free of I/O.
//!
//! Backends are cargo features: `local` (on by default) builds [`local`]; `memory` is always
//! there; `s3` (off by default) builds [`s3`], the backend on an S3 bucket (aws-sdk-s3).
//! [`prefetch`] is a decorator that fetches the small objects of a directory being read with
//! parallel GETs and answers the reader's HEADs and GETs from them. [`writeback`] is a decorator that journals a remote store's writes on local disk and
//! uploads them in the background. `testing` builds `fault`, a failure-injecting decorator over any store, for tests.

pub mod error;
#[cfg(feature = "testing")]
pub mod fault;
pub mod history;
pub mod key;
#[cfg(feature = "local")]
pub mod local;
pub mod memory;
pub mod owner_lock;
mod paging;
pub mod prefetch;
#[cfg(feature = "s3")]
pub mod s3;
pub mod store;
pub mod types;
pub mod writeback;

pub use error::{ErrorKind, Result, StoreError};
pub use store::ObjectStore;
pub use types::*;
