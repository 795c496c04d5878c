//! The in-memory backend: a test double for the layers above and the reference model that the
//! property tests compare every other backend against.
//!
//! It is written to be *obviously right*, not fast: one mutex over plain ordered maps, and every
//! listing is computed by filtering and rolling up all keys from scratch (an algorithm that
//! shares nothing with the local store's seek-based listing, so the two check each other).
//! No lock is held across an `.await`: bodies are collected before the state is touched.
//!
//! Its version ids are its own: `m` + 16 hex digits of a counter, opaque to callers like every
//! backend's. A key's versions are kept oldest first, so "newest first" is that order reversed;
//! each version records the clock when it was made as its `modified` time.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

mod listing;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};

use crate::error::{Result, StoreError};
use crate::key::{validate, validate_prefix};
use crate::store::ObjectStore;
use crate::types::{
    check_part_number, resolve_range, Body, Capacity, CompletedPart, Condition, CopyOptions,
    GetOptions, GetResult, KeyTimes, ListPage, ListRequest, ListVersionsRequest, Metadata,
    ObjectInfo, PartInfo, PutOptions, RenameOptions, StoreFeatures, UploadInfo, VersionId,
    VersionInfo, VersionsPage,
};

/// What `capacity()` reports as the size of the (unbounded) memory.
const TOTAL_BYTES: u64 = u64::MAX / 2;

/// One version of a key: data, or a delete marker.
#[derive(Debug, Clone)]
struct Version {
    id: VersionId,
    /// Position in the store's version sequence (the memory store's own "newer than").
    seq: u64,
    modified: SystemTime,
    /// `None` for a delete marker.
    data: Option<Bytes>,
    etag: String,
    metadata: Metadata,
}

impl Version {
    fn info(&self, key: &str) -> ObjectInfo {
        ObjectInfo {
            key: key.to_string(),
            version: self.id.clone(),
            size: self.data.as_ref().map_or(0, |d| d.len() as u64),
            modified: self.modified,
            etag: self.etag.clone(),
            metadata: self.metadata.clone(),
        }
    }

    fn version_info(&self, key: &str, is_latest: bool) -> VersionInfo {
        VersionInfo {
            key: key.to_string(),
            version: self.id.clone(),
            is_latest,
            is_delete_marker: self.data.is_none(),
            size: self.data.as_ref().map_or(0, |d| d.len() as u64),
            modified: self.modified,
            etag: self.etag.clone(),
            metadata: self.metadata.clone(),
        }
    }
}

/// One uploaded part.
#[derive(Debug, Clone)]
struct Part {
    etag: String,
    data: Bytes,
}

/// A multipart upload in progress.
#[derive(Debug)]
struct Upload {
    key: String,
    opts: PutOptions,
    initiated: SystemTime,
    /// Creation order, to sort uploads of one key by initiation even within one clock tick.
    seq: u64,
    parts: BTreeMap<u32, Part>,
}

/// Everything the store holds.
#[derive(Debug, Default)]
struct State {
    /// Key -> versions, oldest first. A key without versions is removed.
    objects: BTreeMap<String, Vec<Version>>,
    /// Upload id -> upload.
    uploads: BTreeMap<String, Upload>,
    /// Versions made so far (the last one's `seq`).
    version_seq: u64,
    /// The newest version's time (times never go back along the sequence).
    last_modified: Option<SystemTime>,
    /// Uploads created so far (for ids and ordering).
    upload_seq: u64,
    /// Times kept beside keys.
    times: BTreeMap<String, KeyTimes>,
    /// Store records by name.
    records: BTreeMap<String, Bytes>,
}

impl State {
    /// A new version (a delete marker when `data` is `None`), not yet stored.
    fn new_version(&mut self, data: Option<Bytes>, etag: String, metadata: Metadata) -> Version {
        self.version_seq += 1;
        let seq = self.version_seq;
        let now = SystemTime::now();
        let modified = self.last_modified.map_or(now, |last| last.max(now));
        self.last_modified = Some(modified);
        Version {
            id: VersionId::from_backend(format!("m{seq:016x}")),
            seq,
            modified,
            data,
            etag,
            metadata,
        }
    }

    /// A new delete marker on `key`; returns its id.
    fn push_marker(&mut self, key: &str) -> VersionId {
        let v = self.new_version(None, String::new(), Metadata::new());
        let id = v.id.clone();
        self.objects.entry(key.to_string()).or_default().push(v);
        id
    }

    /// The current version of `key` when it is live (not a delete marker).
    fn live(&self, key: &str) -> Option<&Version> {
        self.objects
            .get(key)
            .and_then(|vs| vs.last())
            .filter(|v| v.data.is_some())
    }

    /// A version with data: the given one, or the current live one.
    fn find(&self, key: &str, version: Option<&VersionId>) -> Result<&Version> {
        match version {
            None => self.live(key).ok_or_else(|| StoreError::NotFound {
                key: key.to_string(),
            }),
            Some(id) => self
                .objects
                .get(key)
                .and_then(|vs| vs.iter().find(|v| v.id == *id))
                .filter(|v| v.data.is_some())
                .ok_or_else(|| StoreError::NoSuchVersion {
                    key: key.to_string(),
                    version: id.clone(),
                }),
        }
    }

    fn check_condition(&self, key: &str, condition: &Condition) -> Result<()> {
        let live = self.live(key).map(|v| &v.id);
        let failed = |reason: String| StoreError::PreconditionFailed {
            key: key.to_string(),
            reason,
        };
        match (condition, live) {
            (Condition::None, _) => Ok(()),
            (Condition::IfNotExists, None) => Ok(()),
            (Condition::IfNotExists, Some(v)) => Err(failed(format!("live version {v} exists"))),
            (Condition::IfVersion(want), Some(v)) if want == v => Ok(()),
            (Condition::IfVersion(want), Some(v)) => {
                Err(failed(format!("current version is {v}, not {want}")))
            }
            (Condition::IfVersion(want), None) => {
                Err(failed(format!("no live version (expected {want})")))
            }
        }
    }

    /// Appends a version with data and returns its description.
    fn push(&mut self, key: &str, data: Bytes, etag: String, metadata: Metadata) -> ObjectInfo {
        let v = self.new_version(Some(data), etag, metadata);
        let info = v.info(key);
        self.objects.entry(key.to_string()).or_default().push(v);
        info
    }

    fn upload_mut(&mut self, key: &str, upload_id: &str) -> Result<&mut Upload> {
        match self.uploads.get_mut(upload_id) {
            Some(u) if u.key == key => Ok(u),
            _ => Err(StoreError::NoSuchUpload {
                upload_id: upload_id.to_string(),
            }),
        }
    }
}

/// The in-memory store. Cheap to create; everything is lost when it is dropped.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in another thread cannot leave the maps half-updated in a way that matters to
        // a test double, so a poisoned lock is simply taken over.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The etag of some content: the first 32 hex digits of its BLAKE3 hash.
fn content_etag(data: &[u8]) -> String {
    let hex = blake3::hash(data).to_hex();
    hex.as_str()[..32].to_string()
}

/// The etag of a multipart result: BLAKE3 over the part etags, then `-N`.
fn multipart_etag(part_etags: &[&str]) -> String {
    let mut h = blake3::Hasher::new();
    for e in part_etags {
        h.update(e.as_bytes());
    }
    let hex = h.finalize().to_hex();
    format!("{}-{}", &hex.as_str()[..32], part_etags.len())
}

#[async_trait]
impl ObjectStore for MemoryStore {
    fn describe(&self) -> String {
        "memory".to_string()
    }

    fn features(&self) -> StoreFeatures {
        StoreFeatures::embedded()
    }

    async fn set_key_times(&self, key: &str, times: KeyTimes) -> Result<()> {
        validate(key)?;
        let mut st = self.lock();
        let t = st.times.entry(key.to_string()).or_default();
        *t = t.updated(times);
        Ok(())
    }

    async fn key_times(&self, key: &str) -> Result<KeyTimes> {
        validate(key)?;
        Ok(self.lock().times.get(key).copied().unwrap_or_default())
    }

    async fn put(&self, key: &str, body: Body, opts: PutOptions) -> Result<ObjectInfo> {
        validate(key)?;
        let data = body.collect().await?;
        let mut st = self.lock();
        st.check_condition(key, &opts.condition)?;
        let etag = content_etag(&data);
        Ok(st.push(key, data, etag, opts.metadata))
    }

    async fn get(&self, key: &str, opts: GetOptions) -> Result<GetResult> {
        validate(key)?;
        let st = self.lock();
        let v = st.find(key, opts.version.as_ref())?;
        let data = v.data.clone().unwrap_or_default();
        let range = resolve_range(opts.range.as_ref(), data.len() as u64)?;
        let body = data.slice(range.start as usize..range.end as usize);
        Ok(GetResult {
            info: v.info(key),
            range,
            body: Body::Bytes(body),
        })
    }

    async fn head(&self, key: &str, version: Option<VersionId>) -> Result<ObjectInfo> {
        validate(key)?;
        let st = self.lock();
        Ok(st.find(key, version.as_ref())?.info(key))
    }

    async fn delete(&self, key: &str) -> Result<Option<VersionId>> {
        validate(key)?;
        let mut st = self.lock();
        if st.live(key).is_none() {
            return Ok(None);
        }
        Ok(Some(st.push_marker(key)))
    }

    async fn delete_if(&self, key: &str, condition: Condition) -> Result<Option<VersionId>> {
        validate(key)?;
        let mut st = self.lock();
        st.check_condition(key, &condition)?;
        if st.live(key).is_none() {
            return Ok(None);
        }
        Ok(Some(st.push_marker(key)))
    }

    async fn delete_version(&self, key: &str, version: VersionId) -> Result<()> {
        validate(key)?;
        let mut st = self.lock();
        let no_such = || StoreError::NoSuchVersion {
            key: key.to_string(),
            version: version.clone(),
        };
        let versions = st.objects.get_mut(key).ok_or_else(no_such)?;
        let idx = versions
            .iter()
            .position(|v| v.id == version)
            .ok_or_else(no_such)?;
        versions.remove(idx);
        if versions.is_empty() {
            st.objects.remove(key);
        }
        Ok(())
    }

    async fn copy(&self, src: &str, dst: &str, opts: CopyOptions) -> Result<ObjectInfo> {
        validate(src)?;
        validate(dst)?;
        let mut st = self.lock();
        let source = st.find(src, opts.source_version.as_ref())?.clone();
        st.check_condition(dst, &opts.condition)?;
        let metadata = opts.metadata.unwrap_or(source.metadata);
        let data = source.data.unwrap_or_default();
        Ok(st.push(dst, data, source.etag, metadata))
    }

    async fn rename(&self, src: &str, dst: &str, opts: RenameOptions) -> Result<ObjectInfo> {
        validate(src)?;
        validate(dst)?;
        if src == dst {
            return Err(StoreError::InvalidArgument(format!(
                "cannot rename {src:?} onto itself"
            )));
        }
        let mut st = self.lock();
        let source = st.find(src, None)?.clone();
        if let Some(v) = opts.source_version {
            if v != source.id {
                return Err(StoreError::PreconditionFailed {
                    key: src.to_string(),
                    reason: format!("current version is {}, not {v}", source.id),
                });
            }
        }
        st.check_condition(dst, &opts.condition)?;
        let data = source.data.unwrap_or_default();
        let info = st.push(dst, data, source.etag, source.metadata);
        st.push_marker(src);
        Ok(info)
    }

    async fn create_multipart(&self, key: &str, opts: PutOptions) -> Result<String> {
        validate(key)?;
        let mut st = self.lock();
        st.upload_seq += 1;
        let seq = st.upload_seq;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let upload_id = format!("mem-{seq}-{nanos:x}");
        st.uploads.insert(
            upload_id.clone(),
            Upload {
                key: key.to_string(),
                opts,
                initiated: SystemTime::now(),
                seq,
                parts: BTreeMap::new(),
            },
        );
        Ok(upload_id)
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: Body,
    ) -> Result<PartInfo> {
        validate(key)?;
        check_part_number(part_number)?;
        let data = body.collect().await?;
        let mut st = self.lock();
        let upload = st.upload_mut(key, upload_id)?;
        let etag = content_etag(&data);
        let info = PartInfo {
            part_number,
            etag: etag.clone(),
            size: data.len() as u64,
        };
        upload.parts.insert(part_number, Part { etag, data });
        Ok(info)
    }

    async fn upload_part_copy(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        src: &str,
        src_version: Option<VersionId>,
        range: Option<Range<u64>>,
    ) -> Result<PartInfo> {
        validate(key)?;
        validate(src)?;
        check_part_number(part_number)?;
        let mut st = self.lock();
        st.upload_mut(key, upload_id)?;
        let source = st.find(src, src_version.as_ref())?;
        let whole = source.data.clone().unwrap_or_default();
        let r = resolve_range(range.as_ref(), whole.len() as u64)?;
        let data = whole.slice(r.start as usize..r.end as usize);
        let etag = content_etag(&data);
        let info = PartInfo {
            part_number,
            etag: etag.clone(),
            size: data.len() as u64,
        };
        st.upload_mut(key, upload_id)?
            .parts
            .insert(part_number, Part { etag, data });
        Ok(info)
    }

    /// The model keeps the zeros themselves (one zeroed allocation, which the OS maps lazily):
    /// a part of zeros reads back like any other part.
    async fn upload_part_zeros(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        len: u64,
    ) -> Result<PartInfo> {
        let len = usize::try_from(len).map_err(|_| {
            StoreError::InvalidArgument(format!("a part of {len} zero bytes is too large"))
        })?;
        let body = Body::Bytes(Bytes::from(vec![0u8; len]));
        self.upload_part(key, upload_id, part_number, body).await
    }

    async fn list_parts(&self, key: &str, upload_id: &str) -> Result<Vec<PartInfo>> {
        validate(key)?;
        let mut st = self.lock();
        let upload = st.upload_mut(key, upload_id)?;
        Ok(upload
            .parts
            .iter()
            .map(|(n, p)| PartInfo {
                part_number: *n,
                etag: p.etag.clone(),
                size: p.data.len() as u64,
            })
            .collect())
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> Result<ObjectInfo> {
        validate(key)?;
        let mut st = self.lock();
        let upload = st.upload_mut(key, upload_id)?;
        if parts.is_empty() {
            return Err(StoreError::InvalidPart(
                "complete needs at least one part".to_string(),
            ));
        }
        let mut data = BytesMut::new();
        let mut etags = Vec::with_capacity(parts.len());
        let mut previous = 0u32;
        for cp in parts {
            check_part_number(cp.part_number)?;
            if cp.part_number <= previous {
                return Err(StoreError::InvalidPart(format!(
                    "part {} listed after part {previous}: numbers must strictly increase",
                    cp.part_number
                )));
            }
            previous = cp.part_number;
            let part = upload.parts.get(&cp.part_number).ok_or_else(|| {
                StoreError::InvalidPart(format!("part {} was not uploaded", cp.part_number))
            })?;
            if part.etag != cp.etag {
                return Err(StoreError::InvalidPart(format!(
                    "part {} has etag {}, not {}",
                    cp.part_number, part.etag, cp.etag
                )));
            }
            data.extend_from_slice(&part.data);
            etags.push(part.etag.as_str());
        }
        let etag = multipart_etag(&etags);
        let condition = upload.opts.condition.clone();
        let metadata = upload.opts.metadata.clone();
        st.check_condition(key, &condition)?;
        st.uploads.remove(upload_id);
        Ok(st.push(key, data.freeze(), etag, metadata))
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<()> {
        validate(key)?;
        let mut st = self.lock();
        st.upload_mut(key, upload_id)?;
        st.uploads.remove(upload_id);
        Ok(())
    }

    async fn list(&self, req: &ListRequest) -> Result<ListPage> {
        self.lock().list_with(req, |versions| versions.last())
    }

    async fn head_at(&self, key: &str, at: SystemTime) -> Result<ObjectInfo> {
        validate(key)?;
        let st = self.lock();
        st.objects
            .get(key)
            .and_then(|versions| newest_at(versions, at))
            .filter(|v| v.data.is_some())
            .map(|v| v.info(key))
            .ok_or_else(|| StoreError::NotFound {
                key: key.to_string(),
            })
    }

    async fn list_at(&self, req: &ListRequest, at: SystemTime) -> Result<ListPage> {
        self.lock()
            .list_with(req, |versions| newest_at(versions, at))
    }

    async fn get_record(&self, name: &str) -> Result<Option<Bytes>> {
        crate::key::validate_record_name(name)?;
        Ok(self.lock().records.get(name).cloned())
    }

    async fn put_record(&self, name: &str, value: Option<Bytes>, _durable: bool) -> Result<()> {
        crate::key::validate_record_name(name)?;
        let mut st = self.lock();
        match value {
            Some(v) => st.records.insert(name.to_string(), v),
            None => st.records.remove(name),
        };
        Ok(())
    }

    async fn list_records(&self, prefix: &str) -> Result<Vec<(String, Bytes)>> {
        Ok(self
            .lock()
            .records
            .range(prefix.to_string()..)
            .take_while(|(n, _)| n.starts_with(prefix))
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect())
    }

    async fn list_versions(&self, req: &ListVersionsRequest) -> Result<VersionsPage> {
        self.lock().list_versions(req)
    }

    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<UploadInfo>> {
        validate_prefix(prefix)?;
        let st = self.lock();
        let mut uploads: Vec<(&String, u64, UploadInfo)> = st
            .uploads
            .iter()
            .filter(|(_, u)| u.key.starts_with(prefix))
            .map(|(id, u)| {
                (
                    &u.key,
                    u.seq,
                    UploadInfo {
                        key: u.key.clone(),
                        upload_id: id.clone(),
                        initiated: u.initiated,
                    },
                )
            })
            .collect();
        uploads.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        Ok(uploads.into_iter().map(|(_, _, u)| u).collect())
    }

    async fn sync(&self) -> Result<()> {
        Ok(())
    }

    async fn capacity(&self) -> Result<Capacity> {
        let st = self.lock();
        let (mut used, mut objects) = (0u64, 0u64);
        for versions in st.objects.values() {
            if let Some(data) = versions.last().and_then(|v| v.data.as_ref()) {
                used += data.len() as u64;
                objects += 1;
            }
        }
        Ok(Capacity {
            total_bytes: TOTAL_BYTES,
            free_bytes: TOTAL_BYTES,
            used_bytes: used,
            objects,
        })
    }
}

/// The newest of `versions` (oldest first) made at or before `at`.
fn newest_at(versions: &[Version], at: SystemTime) -> Option<&Version> {
    versions.iter().rev().find(|v| v.modified <= at)
}

#[cfg(test)]
mod tests;
