//! History over any backend: the store as of a moment ([`as_of`], the default of
//! `head_at`/`list_at`), moments as people write them ([`time`]), named snapshots
//! ([`snapshots`]) and bringing a prefix back as of a moment ([`restore`]). Everything here
//! goes through the [`crate::ObjectStore`] trait, so it works the same on every backend that
//! keeps versions and records. [`retention`] holds the policy of what history is kept, and
//! [`expire`] applies it over the trait (the retention pass of backends without a local gc).

pub mod as_of;
pub mod expire;
pub mod restore;
pub mod retention;
pub mod snapshots;
pub mod time;

use crate::error::Result;
use crate::store::ObjectStore;
use crate::types::{ListVersionsRequest, VersionInfo};

/// Every version and delete marker of `key` alone, newest first: a version listing with the
/// key as prefix, stopped at the first other key (keys that merely start with it).
pub async fn key_versions<S: ObjectStore + ?Sized>(
    store: &S,
    key: &str,
) -> Result<Vec<VersionInfo>> {
    let mut req = ListVersionsRequest {
        prefix: key.to_string(),
        ..Default::default()
    };
    let mut out = Vec::new();
    loop {
        let page = store.list_versions(&req).await?;
        let mut past = false;
        for v in page.versions {
            if v.key == key {
                out.push(v);
            } else {
                past = true;
                break;
            }
        }
        match page.next_key_marker {
            Some(k) if !past && k == key => {
                req.key_marker = Some(k);
                req.version_marker = page.next_version_marker;
            }
            _ => return Ok(out),
        }
    }
}
