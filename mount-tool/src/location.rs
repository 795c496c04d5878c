//! The store factory: every command opens "a store" from a location, here, instead of building
//! a backend itself.
//!
//! A location is what the user typed for STORE: a path (a local store) or a URL. `file://`
//! URLs are local paths; `s3://bucket/prefix` names a bucket of AWS S3 or of an S3-compatible
//! endpoint (given apart, `--endpoint`), which s3mount.rs opens and mounts. Commands that only
//! make sense on a local store (disks, scrub, placement, gc, history on a store not mounted)
//! get a clear "works on local stores only" for it, never a stray directory called `s3:`.
//! [`Store`] is what the factory returns for a local store.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use objfs_store::local::{LocalConfig, LocalStore};
use objfs_store::StoreError;

use crate::platform;

/// Where a store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// A local store directory (absolute).
    Local(PathBuf),
    /// A bucket (and key prefix) of AWS S3 or of an S3-compatible endpoint; the URL and the
    /// endpoint together identify the store (its control socket, runtime.rs).
    S3 {
        bucket: String,
        prefix: String,
        endpoint: Option<String>,
    },
}

impl StoreLocation {
    /// Parses what the user gave as STORE.
    pub fn parse(arg: &Path) -> Result<StoreLocation> {
        let text = arg.to_string_lossy();
        if let Some(rest) = text.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                bail!("{text}: an s3 location is s3://BUCKET[/PREFIX]");
            }
            return Ok(StoreLocation::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.trim_end_matches('/').to_string(),
                endpoint: None,
            });
        }
        if let Some(path) = text.strip_prefix("file://") {
            return Ok(StoreLocation::Local(platform::absolute(Path::new(path))?));
        }
        if let Some((scheme, _)) = text.split_once("://") {
            if !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric()) {
                bail!(
                    "{text}: unknown store scheme {scheme:?} (give a directory, file:// or s3://)"
                );
            }
        }
        Ok(StoreLocation::Local(platform::absolute(arg)?))
    }

    /// The same location at `endpoint` (an s3 location; a local one is unchanged).
    pub fn with_endpoint(self, endpoint: Option<String>) -> StoreLocation {
        match self {
            StoreLocation::S3 { bucket, prefix, .. } => StoreLocation::S3 {
                bucket,
                prefix,
                endpoint,
            },
            local => local,
        }
    }

    /// The local directory of a store, for commands that work on local stores only (an s3
    /// location gets a clear error saying so).
    pub fn supported_path(&self) -> Result<&Path, StoreError> {
        match self {
            StoreLocation::Local(p) => Ok(p),
            other => Err(not_supported(other)),
        }
    }
}

impl fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreLocation::Local(p) => write!(f, "{}", p.display()),
            StoreLocation::S3 {
                bucket,
                prefix,
                endpoint,
            } => {
                write!(f, "s3://{bucket}")?;
                if !prefix.is_empty() {
                    write!(f, "/{prefix}")?;
                }
                match endpoint {
                    Some(e) => write!(f, " at {e}"),
                    None => Ok(()),
                }
            }
        }
    }
}

/// An open store, by backend.
pub enum Store {
    Local(LocalStore),
}

impl Store {
    /// Syncs and closes the store.
    pub fn close(self) -> Result<(), StoreError> {
        match self {
            Store::Local(s) => s.close(),
        }
    }

    /// The embedded store, when that is what this is.
    /// The local store, if this is one.
    pub fn local(&self) -> Option<&LocalStore> {
        match self {
            Store::Local(s) => Some(s),
        }
    }

    pub fn into_local(self) -> Option<LocalStore> {
        match self {
            Store::Local(s) => Some(s),
        }
    }
}

/// The error for a command that works on local stores only, given an s3 location.
fn not_supported(loc: &StoreLocation) -> StoreError {
    StoreError::Unsupported(format!(
        "{loc} is an S3 bucket: this command works on local stores only (an s3 store can be \
         mounted and shown by `objfs status`)"
    ))
}

/// Opens an existing store.
pub fn open(loc: &StoreLocation) -> Result<Store, StoreError> {
    match loc {
        StoreLocation::Local(p) => LocalStore::open(p).map(Store::Local),
        StoreLocation::S3 { .. } => Err(not_supported(loc)),
    }
}

/// Opens a store, creating it (with `cfg`) when it does not exist yet; says whether it did.
pub fn open_or_init(loc: &StoreLocation, cfg: LocalConfig) -> Result<(Store, bool), StoreError> {
    match loc {
        StoreLocation::Local(p) => {
            LocalStore::open_or_init(p, cfg).map(|(s, created)| (Store::Local(s), created))
        }
        StoreLocation::S3 { .. } => Err(not_supported(loc)),
    }
}

/// Creates a new, empty store.
pub fn init(loc: &StoreLocation, cfg: LocalConfig) -> Result<Store, StoreError> {
    match loc {
        StoreLocation::Local(p) => LocalStore::init(p, cfg).map(Store::Local),
        StoreLocation::S3 { .. } => Err(not_supported(loc)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse() {
        assert_eq!(
            StoreLocation::parse(Path::new("s3://bucket/a/b")).unwrap(),
            StoreLocation::S3 {
                bucket: "bucket".into(),
                prefix: "a/b".into(),
                endpoint: None
            }
        );
        assert_eq!(
            StoreLocation::parse(Path::new("s3://bucket"))
                .unwrap()
                .to_string(),
            "s3://bucket"
        );
        assert!(StoreLocation::parse(Path::new("s3:///x")).is_err());
        assert!(StoreLocation::parse(Path::new("gs://b")).is_err());
        assert_eq!(
            StoreLocation::parse(Path::new("file:///srv/store")).unwrap(),
            StoreLocation::Local(PathBuf::from("/srv/store"))
        );
        match StoreLocation::parse(Path::new("rel/store")).unwrap() {
            StoreLocation::Local(p) => assert!(p.is_absolute() && p.ends_with("rel/store")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn s3_locations_are_not_local_stores() {
        let loc = StoreLocation::parse(Path::new("s3://bucket/p/")).unwrap();
        let e = open(&loc).err().unwrap();
        assert!(e.to_string().contains("works on local stores only"), "{e}");
        assert!(loc.supported_path().is_err());
        let at = loc.with_endpoint(Some("http://127.0.0.1:9000".into()));
        assert_eq!(at.to_string(), "s3://bucket/p at http://127.0.0.1:9000");
    }
}
