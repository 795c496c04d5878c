//! The [`ObjectStore`] trait: one versioned, S3-shaped API that every backend implements and
//! one conformance suite checks (`tests/`), so the filesystem never knows which backend it runs on.

use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::{Result, StoreError};
use crate::types::*;

/// The largest piece of the zeros body [`ObjectStore::upload_part_zeros`] uploads by default.
const ZERO_PIECE: u64 = 1 << 20;

/// A body of `len` zero bytes, as a stream of pieces that share one buffer.
fn zeros_body(len: u64) -> Body {
    if len == 0 {
        return Body::empty();
    }
    let piece = Bytes::from(vec![0u8; len.min(ZERO_PIECE) as usize]);
    let pieces = len.div_ceil(ZERO_PIECE);
    let stream = futures::stream::iter((0..pieces).map(move |i| {
        let n = (len - i * ZERO_PIECE).min(ZERO_PIECE) as usize;
        Ok(piece.slice(..n))
    }));
    Body::from_stream(stream)
}

/// A versioned object store with S3 semantics.
///
/// Semantics every backend must follow (checked by the conformance suite):
///
/// * **Keys** follow [`crate::key::check_key`]; a bad key is [`StoreError::InvalidKey`]
///   (`crate::StoreError`) before anything else is looked at.
/// * **Versions.** Every put, copy and completed multipart upload makes a new immutable version
///   with a fresh [`VersionId`], different from every id the store made before. Ids are opaque:
///   compared for equality only; a version's time is its `modified`, and newest first is the
///   order `list_versions` returns. An id the backend did not make is `NoSuchVersion` (as a
///   listing's `version_marker`, `InvalidArgument`). `delete` adds a
///   delete marker (a version without data) when the key has a live version, and does nothing
///   otherwise. `delete_version` removes one version (data or marker) for good; removing the
///   newest version makes the next newest one current again (so removing a delete marker
///   undeletes).
/// * **Current version.** `head`/`get` without a version see the newest version of the key;
///   when that is a delete marker (or there is none) they fail with `NotFound`. With a version,
///   they see that version, or fail with `NoSuchVersion` when it does not exist or is a delete
///   marker.
/// * **Listing** (`list`) shows keys whose newest version is not a delete marker, in byte order,
///   with S3's prefix/delimiter roll-up. Strongly consistent: a completed write is visible to the
///   next list. A page holds at most `max_keys` entries (objects + common prefixes); `next_token`
///   is `Some` exactly when more entries follow. A continuation token is opaque and only valid
///   for the same prefix and delimiter. Listing one level costs O(entries in the page), however
///   many keys lie below it.
/// * **Version listing** (`list_versions`) shows every version and delete marker: keys in byte
///   order, versions of a key newest first, `is_latest` on the newest of each key.
/// * **Multipart**: parts are numbered 1..=10000, may be uploaded in any order and concurrently,
///   re-uploading a number replaces that part; complete takes a list of (number, etag) in strictly
///   increasing order that must match uploaded parts, and concatenates them. Parts that were
///   uploaded but not listed are discarded. An upload id is valid only with its key. A part
///   may be a range of an existing version (`upload_part_copy`) or a run of zeros
///   (`upload_part_zeros`); both read back exactly as if their bytes had been uploaded.
/// * **History** (`head_at`, `list_at`): the store as it was at a moment `at`: for each key,
///   its newest version whose `modified` is not after `at`, unless that is a delete marker.
///   The defaults compute it from `list_versions` (cost O(versions)); a backend that can seek
///   to a key's version at a time (the local store) overrides them so that a listing as of a
///   moment costs O(entries at that level).
/// * **Records** (`get_record`, `put_record`, `list_records`): small named values the store
///   keeps apart from its keys: never listed by `list`, never versioned. Named snapshots, the
///   retention policy and restore checkpoints live there. Names follow
///   [`crate::key::check_record_name`]. A `put_record` that returned survives a crash of the
///   process; with `durable` (or after `sync`) a power loss too.
/// * **Durability**: a write with `durable: true`, or any write followed by a successful `sync`,
///   survives a crash. Any write is atomic: after a crash it is wholly present or wholly absent.
#[async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    /// A short name of the backend and its location, for logs.
    fn describe(&self) -> String;

    /// What this backend can do.
    fn features(&self) -> StoreFeatures;

    /// Writes a new version of `key` with the whole body.
    async fn put(&self, key: &str, body: Body, opts: PutOptions) -> Result<ObjectInfo>;

    /// Reads the current (or a given) version, whole or a byte range.
    async fn get(&self, key: &str, opts: GetOptions) -> Result<GetResult>;

    /// Describes the current (or a given) version without reading data.
    async fn head(&self, key: &str, version: Option<VersionId>) -> Result<ObjectInfo>;

    /// The current version of `key` for an open, which reads what it returns: as
    /// [`ObjectStore::head`], except that a decorator reusing the bucket's answers for names
    /// and attributes (the write-back's, for the metadata TTL) reuses them here only within
    /// its shorter window for opens (close-to-open consistency on a shared bucket).
    async fn head_for_open(&self, key: &str) -> Result<ObjectInfo> {
        self.head(key, None).await
    }

    /// Adds a delete marker when `key` has a live version; returns the marker's id, or `None`
    /// when there was nothing to delete.
    async fn delete(&self, key: &str) -> Result<Option<VersionId>>;

    /// [`ObjectStore::delete`] only when `condition` holds for the key's current live version
    /// (else `PreconditionFailed`, and nothing changes): restore deletes a key only if it is
    /// still the version its plan saw. Backends with [`StoreFeatures::conditional_put`] (local,
    /// memory) check and delete in one step; this default checks with a `head` first, so a
    /// write between the two is not noticed.
    async fn delete_if(&self, key: &str, condition: Condition) -> Result<Option<VersionId>> {
        let current = match self.head(key, None).await {
            Ok(info) => Some(info.version),
            Err(StoreError::NotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        let failed = |reason: String| StoreError::PreconditionFailed {
            key: key.to_string(),
            reason,
        };
        match (&condition, current) {
            (Condition::None, _) | (Condition::IfNotExists, None) => {}
            (Condition::IfNotExists, Some(v)) => {
                return Err(failed(format!("live version {v} exists")))
            }
            (Condition::IfVersion(want), Some(v)) if *want == v => {}
            (Condition::IfVersion(want), Some(v)) => {
                return Err(failed(format!("current version is {v}, not {want}")))
            }
            (Condition::IfVersion(want), None) => {
                return Err(failed(format!("no live version (expected {want})")))
            }
        }
        self.delete(key).await
    }

    /// Removes one version (or delete marker) of `key` for good.
    async fn delete_version(&self, key: &str, version: VersionId) -> Result<()>;

    /// Copies a version of `src` to a new version of `dst` without sending data through the
    /// caller (the local store shares extents: no bytes are copied).
    async fn copy(&self, src: &str, dst: &str, opts: CopyOptions) -> Result<ObjectInfo>;

    /// Applies `changes` in order, each as its own operation would ([`ObjectStore::copy`],
    /// [`ObjectStore::delete_if`]), and returns one result per change: the version it made
    /// (`None`: a delete that found no live version). A change that fails (its condition, a
    /// missing source) changes nothing, and the others still apply. No key may appear in two
    /// changes (`InvalidArgument` for the whole call, before anything changes). A backend may
    /// commit the changes together: the local store makes them one metadata log record under
    /// one hold of its commit lock, so they survive a crash together, and an `Err` of the call
    /// means none was applied. This default runs them one at a time. Restore runs its steps
    /// through this.
    async fn change_many(&self, changes: &[Change]) -> Result<Vec<Result<Option<VersionId>>>> {
        check_distinct_keys(changes)?;
        let mut out = Vec::with_capacity(changes.len());
        for c in changes {
            out.push(match c {
                Change::Copy { src, dst, opts } => self
                    .copy(src, dst, opts.clone())
                    .await
                    .map(|info| Some(info.version)),
                Change::DeleteIf { key, condition } => self.delete_if(key, condition.clone()).await,
            });
        }
        Ok(out)
    }

    /// Moves the current version of `src` to a new version of `dst` (same data and metadata)
    /// and adds a delete marker to `src`. Where `features().atomic_rename` holds (the local and
    /// memory stores) both happen in one commit: after a crash, either both or neither. This
    /// default, for backends without such a primitive, copies then deletes.
    async fn rename(&self, src: &str, dst: &str, opts: RenameOptions) -> Result<ObjectInfo> {
        let current = self.head(src, None).await?;
        if let Some(v) = opts.source_version {
            if v != current.version {
                return Err(crate::StoreError::PreconditionFailed {
                    key: src.to_string(),
                    reason: format!("current version is {}, not {v}", current.version),
                });
            }
        }
        let copy = CopyOptions {
            source_version: Some(current.version),
            metadata: None,
            condition: opts.condition,
            durable: opts.durable,
        };
        let info = self.copy(src, dst, copy).await?;
        self.delete(src).await?;
        if opts.durable {
            self.sync().await?;
        }
        Ok(info)
    }

    /// Lists live objects.
    async fn list(&self, req: &ListRequest) -> Result<ListPage>;

    /// [`ObjectStore::list`] for a caller that needs only each object's key, size, time and
    /// ETag (and the common prefixes): a backend that learns an object's version id and
    /// metadata with a request of its own per listed object (S3 with versioning: a HEAD each)
    /// may leave them out (a null version id, no metadata). By default, `list`.
    async fn list_keys(&self, req: &ListRequest) -> Result<ListPage> {
        self.list(req).await
    }

    /// Lists versions and delete markers.
    async fn list_versions(&self, req: &ListVersionsRequest) -> Result<VersionsPage>;

    /// Starts a multipart upload; the metadata and durability of `opts` apply to the version
    /// that `complete_multipart` makes (its condition is checked at completion).
    async fn create_multipart(&self, key: &str, opts: PutOptions) -> Result<String>;

    /// Uploads (or replaces) one part.
    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: Body,
    ) -> Result<PartInfo>;

    /// Makes one part out of a byte range of an existing version (S3's UploadPartCopy).
    /// `range` of `None` copies the whole source.
    async fn upload_part_copy(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        src: &str,
        src_version: Option<VersionId>,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<PartInfo>;

    /// Uploads (or replaces) one part of `len` zero bytes. Backends that can keep a run of
    /// zeros without storing it (the local store: a hole extent) override this so that it
    /// costs metadata only; this default uploads real zeros, streamed in pieces of at most
    /// 1 MiB, so every backend reads the part back the same.
    async fn upload_part_zeros(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        len: u64,
    ) -> Result<PartInfo> {
        self.upload_part(key, upload_id, part_number, zeros_body(len))
            .await
    }

    /// Lists the parts uploaded so far, by part number.
    async fn list_parts(&self, key: &str, upload_id: &str) -> Result<Vec<PartInfo>>;

    /// Completes the upload: the listed parts, concatenated, become a new version of `key`.
    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> Result<ObjectInfo>;

    /// Abandons the upload and its parts.
    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<()>;

    /// Uploads in progress whose key starts with `prefix`, by key then initiation time.
    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<UploadInfo>>;

    /// Makes every write completed so far durable.
    async fn sync(&self) -> Result<()>;

    /// Capacity and usage.
    async fn capacity(&self) -> Result<Capacity>;

    /// The version of `key` that was current at `at`: its newest version made at or before
    /// `at`. `NotFound` when there is none or it is a delete marker.
    async fn head_at(&self, key: &str, at: SystemTime) -> Result<ObjectInfo> {
        crate::history::as_of::head_at_by_versions(self, key, at).await
    }

    /// [`ObjectStore::list`] as the store was at `at` (see "History" above). The page and
    /// token rules are `list`'s; a token is valid only for the same request and `at`.
    async fn list_at(&self, req: &ListRequest, at: SystemTime) -> Result<ListPage> {
        crate::history::as_of::list_at_by_versions(self, req, at).await
    }

    /// A record (see "Records" above), `None` when there is none. Backends without
    /// [`StoreFeatures::records`] answer `Unsupported`.
    async fn get_record(&self, name: &str) -> Result<Option<Bytes>> {
        Err(StoreError::Unsupported(format!(
            "{}: store records ({name})",
            self.describe()
        )))
    }

    /// Writes (`Some`) or removes (`None`) a record.
    async fn put_record(&self, name: &str, value: Option<Bytes>, durable: bool) -> Result<()> {
        let _ = (value, durable);
        Err(StoreError::Unsupported(format!(
            "{}: store records ({name})",
            self.describe()
        )))
    }

    /// The records whose names start with `prefix`, in byte order of their names.
    async fn list_records(&self, prefix: &str) -> Result<Vec<(String, Bytes)>> {
        Err(StoreError::Unsupported(format!(
            "{}: store records ({prefix})",
            self.describe()
        )))
    }

    /// Records times beside `key` (see [`KeyTimes`]): each time given replaces the recorded
    /// one; the key need not exist. Lazy: the record is kept with the next group commit, not
    /// synced now, and never makes a version. Backends without
    /// [`StoreFeatures::key_times`] answer `Unsupported`.
    async fn set_key_times(&self, key: &str, times: KeyTimes) -> Result<()> {
        let _ = times;
        Err(StoreError::Unsupported(format!(
            "{}: times beside keys ({key})",
            self.describe()
        )))
    }

    /// The times recorded beside `key` (all `None` when nothing is recorded, or when the
    /// backend keeps none).
    async fn key_times(&self, key: &str) -> Result<KeyTimes> {
        let _ = key;
        Ok(KeyTimes::default())
    }
}

/// Refuses a batch of changes in which a key appears in two changes (see
/// [`ObjectStore::change_many`]).
pub fn check_distinct_keys(changes: &[Change]) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for key in changes.iter().flat_map(Change::keys) {
        if !seen.insert(key) {
            return Err(StoreError::InvalidArgument(format!(
                "the key {key:?} appears in two changes of one batch"
            )));
        }
    }
    Ok(())
}
