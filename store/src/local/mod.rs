//! The embedded local store: no server, one directory.
//!
//! * Metadata in sled ([`meta`]): the current version of each key (for listing), every version
//!   (for history), blobs with reference counts, volumes, multipart state.
//! * Data in volume files ([`volume`]): an object's bytes are cut into blobs of at most
//!   `blob_size`, appended to the active volume with a BLAKE3 checksum per block, and verified
//!   on every read. Objects are manifests of extents over blobs, so copies, renames and
//!   multipart part-copies share bytes instead of copying them.
//! * Crash safety: data is written before the metadata that points at it is committed (one
//!   atomic sled batch); durability is group-committed ([`group_sync`]): volumes are fsynced,
//!   then sled is flushed, and one such sync serves every writer waiting for it. A background
//!   [`flusher`] does the same every `flush_interval` for non-durable writes.
//!
//! This file holds the shared state and the [`ObjectStore`] impl; each concept has its own
//! module: [`lifecycle`] (init, open, close), [`write`] and [`read`] (the data paths),
//! [`listing`] and [`as_of`] (the store now and as of a moment),
//! [`multipart`], [`status`], the disks and volume layouts ([`disks`], [`append`], [`layout`]),
//! the daemons ([`daemons`], [`placement`], [`scrub`], [`gc`] with its [`retention`] pass,
//! [`drain`]) and the one worker
//! pattern they all run on ([`worker`], [`control`]).
//!
//! The store's blocking I/O runs on tokio's blocking pool; the async [`ObjectStore`] methods
//! only hand work to it.

pub mod append;
pub mod as_of;
pub mod atomic_file;
pub mod config;
pub mod control;
pub mod daemons;
pub mod disk_admin;
pub mod disks;
pub mod drain;
pub mod erasure;
pub mod exclusive;
pub mod flusher;
pub mod gc;
pub mod group_sync;
pub mod insights;
pub(crate) mod layout;
pub mod lifecycle;
pub mod listing;
pub mod meta;
pub mod multipart;
pub mod placement;
pub mod read;
pub mod records;
pub(crate) mod retention;
pub mod scrub;
pub mod shard;
pub mod status;
pub mod tier;
pub mod version;
pub mod volume;
pub mod worker;
pub mod write;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use config::StoreLock;
pub use config::{EcSetting, LocalConfig};
pub use daemons::DaemonConfig;
use disks::Disks;
pub use gc::GcOptions;
use group_sync::GroupSync;
pub use lifecycle::wait_for_last_reference;
use meta::Meta;
use records::VersionRecord;
pub use status::{DiskStatus, StoreStatus};
pub use worker::{Progress, WorkerState, WorkerStatus};

use crate::error::{Result, StoreError};
use crate::key::validate;
use crate::store::ObjectStore;
use crate::types::*;

/// Bodies and reads up to this size are handled inline on the calling task.
const INLINE_LIMIT: u64 = 256 << 10;

/// Listings of at most this many keys run inline on the calling task: a page costs one seek
/// and a row read per entry (a common prefix is skipped with a seek, deleted keys have no
/// current row), a few microseconds, less than a hop to the blocking pool.
const INLINE_LIST_KEYS: usize = 16;

/// The shared state behind a [`LocalStore`]. Field order is drop order: the lock goes last.
pub(crate) struct Inner {
    root: PathBuf,
    cfg: LocalConfig,
    meta: Meta,
    disks: Disks,
    group: GroupSync,
    /// Bumped by every metadata mutation; the flusher syncs when it moved.
    generation: AtomicU64,
    last_shutdown_clean: bool,
    /// Held by a daemon for each unit of work, so two never move the same volume at once.
    maintenance: std::sync::Mutex<()>,
    /// Held by gc's retention pass for each batch (from reading the policy and the snapshots
    /// to the last version it expires) and by every change to those records, so a snapshot
    /// made or a policy set during a pass is seen whole by the next batch and never by half
    /// of one.
    history: retention::HistoryLock,
    _lock: StoreLock,
}

impl Inner {
    fn maintenance(&self) -> std::sync::MutexGuard<'_, ()> {
        self.maintenance.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The embedded store. Dropping it (or [`LocalStore::close`]) syncs and closes it cleanly.
pub struct LocalStore {
    inner: Arc<Inner>,
    /// The background group commit (flusher.rs); none if its thread could not start.
    flusher: Option<worker::WorkerHandle>,
    /// The daemons started by [`LocalStore::start_daemons`].
    workers: Vec<worker::WorkerHandle>,
    /// The control-file watcher that steers the daemons.
    control: Option<worker::WorkerHandle>,
    closed: bool,
}

impl LocalStore {
    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.inner.root
    }

    /// The settings in force.
    pub fn config(&self) -> &LocalConfig {
        &self.inner.cfg
    }

    /// Runs a short operation (page-cache I/O and metadata lookups of a few microseconds) on
    /// the calling task: a hop to the blocking pool costs more than the work itself.
    fn inline<T>(&self, f: impl FnOnce(&Inner) -> Result<T>) -> Result<T> {
        f(&self.inner)
    }

    /// Runs an operation that may wait on the disk (fsync, large transfers, long scans) on
    /// tokio's blocking pool.
    async fn blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| StoreError::Metadata(format!("a store task failed: {e}")))?
    }

    fn info(key: &str, vid: version::LocalVersion, rec: &VersionRecord) -> ObjectInfo {
        ObjectInfo {
            key: key.to_string(),
            version: vid.id(),
            size: rec.size,
            modified: vid.time(),
            etag: rec.etag.clone(),
            metadata: rec.metadata.clone(),
        }
    }
}

#[async_trait]
impl ObjectStore for LocalStore {
    fn describe(&self) -> String {
        format!("local:{}", self.inner.root.display())
    }

    fn features(&self) -> StoreFeatures {
        StoreFeatures::embedded()
    }

    async fn set_key_times(&self, key: &str, times: KeyTimes) -> Result<()> {
        validate(key)?;
        // A metadata insert of a few microseconds, not synced: no hop to the blocking pool.
        self.inline(|i| i.meta.set_key_times(key, times))
    }

    async fn key_times(&self, key: &str) -> Result<KeyTimes> {
        validate(key)?;
        self.inline(|i| i.meta.key_times(key))
    }

    async fn get_record(&self, name: &str) -> Result<Option<Bytes>> {
        crate::key::validate_record_name(name)?;
        self.inline(|i| Ok(i.meta.store_record(name)?.map(Bytes::from)))
    }

    async fn put_record(&self, name: &str, value: Option<Bytes>, durable: bool) -> Result<()> {
        crate::key::validate_record_name(name)?;
        self.inline(|i| {
            let _pass = retention::governs(name).then(|| i.history.writer());
            i.meta.set_store_record(name, value.map(|v| v.to_vec()))
        })?;
        self.sync_if(durable).await
    }

    async fn list_records(&self, prefix: &str) -> Result<Vec<(String, Bytes)>> {
        self.inline(|i| {
            Ok(i.meta
                .store_records(prefix)?
                .into_iter()
                .map(|(n, v)| (n, Bytes::from(v)))
                .collect())
        })
    }

    async fn put(&self, key: &str, body: Body, opts: PutOptions) -> Result<ObjectInfo> {
        self.put_object(key, body, opts).await
    }

    async fn get(&self, key: &str, opts: GetOptions) -> Result<GetResult> {
        self.get_object(key, opts).await
    }

    async fn head(&self, key: &str, version: Option<VersionId>) -> Result<ObjectInfo> {
        validate(key)?;
        self.inline(|i| {
            let (vid, rec) = i.meta.resolve(key, version)?;
            Ok(Self::info(key, vid, &rec))
        })
    }

    async fn delete(&self, key: &str) -> Result<Option<VersionId>> {
        validate(key)?;
        self.inline(|i| {
            let r = i.meta.commit_delete(key, &Condition::None)?;
            i.bump();
            Ok(r)
        })
    }

    async fn delete_if(&self, key: &str, condition: Condition) -> Result<Option<VersionId>> {
        validate(key)?;
        self.inline(|i| {
            let r = i.meta.commit_delete(key, &condition)?;
            i.bump();
            Ok(r)
        })
    }

    async fn delete_version(&self, key: &str, version: VersionId) -> Result<()> {
        validate(key)?;
        self.inline(|i| {
            i.meta.commit_delete_version(key, version)?;
            i.bump();
            Ok(())
        })
    }

    async fn copy(&self, src: &str, dst: &str, opts: CopyOptions) -> Result<ObjectInfo> {
        validate(src)?;
        validate(dst)?;
        let info = self.inline(|i| {
            let (vid, rec) = i.meta.commit_copy(src, dst, &opts)?;
            i.bump();
            Ok(Self::info(dst, vid, &rec))
        })?;
        self.sync_if(opts.durable).await?;
        Ok(info)
    }

    async fn change_many(&self, changes: &[Change]) -> Result<Vec<Result<Option<VersionId>>>> {
        crate::store::check_distinct_keys(changes)?;
        for key in changes.iter().flat_map(Change::keys) {
            validate(key)?;
        }
        let out = self.inline(|i| {
            let r = i.meta.commit_changes(changes)?;
            i.bump();
            Ok(r)
        })?;
        let durable = changes
            .iter()
            .any(|c| matches!(c, Change::Copy { opts, .. } if opts.durable));
        self.sync_if(durable).await?;
        Ok(out)
    }

    async fn rename(&self, src: &str, dst: &str, opts: RenameOptions) -> Result<ObjectInfo> {
        validate(src)?;
        validate(dst)?;
        let info = self.inline(|i| {
            let (vid, rec) = i.meta.commit_rename(src, dst, &opts)?;
            i.bump();
            Ok(Self::info(dst, vid, &rec))
        })?;
        self.sync_if(opts.durable).await?;
        Ok(info)
    }

    async fn list(&self, req: &ListRequest) -> Result<ListPage> {
        // A page of a few keys (the filesystem's "is anything below this name?" probe) reads
        // a few rows: cheaper than the hop to the blocking pool.
        if req.page_size() <= INLINE_LIST_KEYS {
            return self.inline(|i| listing::list(&i.meta, req));
        }
        let req = req.clone();
        self.blocking(move |i| listing::list(&i.meta, &req)).await
    }

    async fn head_at(&self, key: &str, at: std::time::SystemTime) -> Result<ObjectInfo> {
        self.inline(|i| as_of::head_at(&i.meta, key, at))
    }

    async fn list_at(&self, req: &ListRequest, at: std::time::SystemTime) -> Result<ListPage> {
        let req = req.clone();
        self.blocking(move |i| as_of::list_at(&i.meta, &req, at))
            .await
    }

    async fn list_versions(&self, req: &ListVersionsRequest) -> Result<VersionsPage> {
        let req = req.clone();
        self.blocking(move |i| listing::list_versions(&i.meta, &req))
            .await
    }

    async fn create_multipart(&self, key: &str, opts: PutOptions) -> Result<String> {
        self.start_upload(key, opts).await
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: Body,
    ) -> Result<PartInfo> {
        self.put_part(key, upload_id, part_number, body).await
    }

    async fn upload_part_copy(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        src: &str,
        src_version: Option<VersionId>,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<PartInfo> {
        self.copy_part(key, upload_id, part_number, src, src_version, range)
            .await
    }

    async fn upload_part_zeros(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        len: u64,
    ) -> Result<PartInfo> {
        self.zero_part(key, upload_id, part_number, len).await
    }

    async fn list_parts(&self, key: &str, upload_id: &str) -> Result<Vec<PartInfo>> {
        self.parts(key, upload_id).await
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> Result<ObjectInfo> {
        self.complete_upload(key, upload_id, parts).await
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<()> {
        self.abort_upload(key, upload_id).await
    }

    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<UploadInfo>> {
        self.uploads(prefix).await
    }

    async fn sync(&self) -> Result<()> {
        self.blocking(|i| i.sync_all()).await
    }

    async fn capacity(&self) -> Result<Capacity> {
        self.inline(|i| i.capacity())
    }
}

#[cfg(test)]
mod deleted_tests;
#[cfg(test)]
mod exclusive_tests;
#[cfg(test)]
mod format1_tests;
#[cfg(test)]
mod tests;
