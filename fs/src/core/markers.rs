//! Directory markers: every store call on a directory's `d/` key goes through here.
//!
//! A directory `d` is the prefix `d/`. Its marker is the zero-byte object `d/` that holds its
//! attributes; without one the directory exists implicitly while a key lies below it. The
//! marker's key is built in one place ([`marker_of`]) and read, listed below, written,
//! rewritten and deleted by the helpers of this module, so the rule "a directory is its
//! prefix" lives in one file.

use std::time::Instant;

use objfs_store::{Body, Condition, ListPage, ListRequest, Metadata, ObjectInfo};

use super::ObjFs;
use crate::attr::Attrs;
use crate::error::FsResult;

/// The marker key of directory `dir`, which is also the prefix of everything in it:
/// `a/b` -> `a/b/`.
pub fn marker_of(dir: &str) -> String {
    format!("{dir}/")
}

impl ObjFs {
    /// Directory `ino` was seen to have a marker just now.
    pub(super) fn marker_seen(&self, ino: u64) {
        if let Ok(mut t) = self.table() {
            if let Some(n) = t.get_mut(ino) {
                n.marker_seen = Some(Instant::now());
            }
        }
    }

    /// Whether directory `ino` was seen to have a marker within the attribute TTL: then it
    /// outlives its last entry without a look at the store. (A marker goes only with an rmdir
    /// of the empty directory or a rename of it; another client doing either is seen within
    /// the TTL, like every cached attribute.)
    pub(super) fn marker_known(&self, ino: u64) -> bool {
        self.table()
            .ok()
            .and_then(|t| t.get(ino).and_then(|n| n.marker_seen))
            .is_some_and(|at| at.elapsed() < self.cfg.attr_ttl)
    }

    /// The marker of directory `dir`, or `None` when it has none (an implicit directory, or
    /// no directory at all).
    pub(super) async fn head_marker(&self, dir: &str) -> FsResult<Option<ObjectInfo>> {
        self.head_live(&marker_of(dir)).await
    }

    /// The first `max_keys` keys below directory `dir` (its marker included), or `None` when
    /// `dir/` is too long to be a key (then nothing can lie below it).
    pub(super) async fn list_below(
        &self,
        dir: &str,
        max_keys: usize,
    ) -> FsResult<Option<ListPage>> {
        let prefix = marker_of(dir);
        if prefix.len() > self.max_key_len() {
            return Ok(None);
        }
        let req = ListRequest {
            prefix,
            max_keys,
            ..Default::default()
        };
        Ok(Some(self.store.list(&req).await?))
    }

    /// Whether any key lies below directory `dir` (its own marker counts).
    pub(super) async fn has_keys_below(&self, dir: &str) -> FsResult<bool> {
        Ok(self
            .list_below(dir, 1)
            .await?
            .is_some_and(|p| !p.objects.is_empty() || !p.common_prefixes.is_empty()))
    }

    /// Whether directory `dir` holds nothing but its marker.
    pub(super) async fn dir_is_empty(&self, dir: &str) -> FsResult<bool> {
        let marker = marker_of(dir);
        Ok(match self.list_below(dir, 2).await? {
            Some(page) => {
                page.common_prefixes.is_empty() && page.objects.iter().all(|o| o.key == marker)
            }
            None => true,
        })
    }

    /// Writes the marker of `dir` holding `attrs` only if there is none: `Ok(None)` when one
    /// is there already.
    pub(super) async fn create_marker(
        &self,
        dir: &str,
        attrs: &Attrs,
    ) -> FsResult<Option<ObjectInfo>> {
        self.put_if_absent(&marker_of(dir), Body::empty(), attrs)
            .await
    }

    /// Deletes the marker of `dir`.
    pub(super) async fn delete_marker(&self, dir: &str) -> FsResult<()> {
        self.store.delete(&marker_of(dir)).await?;
        Ok(())
    }

    /// Changes the marker's metadata of directory `dir` with `edit` (given the directory's
    /// attributes now and the metadata to change). A marker is rewritten over its current
    /// version; an implicit directory gets a marker holding its default attributes with the
    /// change.
    pub(super) async fn edit_marker<F>(&self, dir: &str, edit: F) -> FsResult<ObjectInfo>
    where
        F: Fn(&Attrs, &mut Metadata) -> FsResult<()>,
    {
        let key = marker_of(dir);
        let rewritten = self
            .rewrite_meta(&key, |meta, cur| {
                edit(&Attrs::from_object(cur, true, &self.cfg), meta)
            })
            .await?;
        if let Some(info) = rewritten {
            return Ok(info);
        }
        let implicit = self.implicit_dir_attrs();
        let made = self
            .put_with_attrs(&key, Body::empty(), &implicit, Condition::None, |meta| {
                edit(&implicit, meta)
            })
            .await?;
        made.ok_or_else(|| {
            crate::error::FsError::Internal(format!("{key}: unconditional put refused"))
        })
    }
}
