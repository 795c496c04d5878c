//! The in-memory backend: a test double for the layers above and the reference model that the
//! property tests compare every other backend against.
//!
//! It is written to be *obviously right*, not fast: one mutex over plain ordered maps, and every
//! listing is computed by filtering and rolling up all keys from scratch (an algorithm that
//! shares nothing with the local store's seek-based listing, so the two check each other).
//! No lock is held across an `.await`: bodies are collected before the state is touched.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};

use crate::error::{Result, StoreError};
use crate::key::{validate, validate_part_number as check_part_number, validate_prefix};
use crate::store::ObjectStore;
use crate::types::{
    resolve_range, Body, Capacity, CompletedPart, Condition, CopyOptions, GetOptions, GetResult,
    ListPage, ListRequest, ListVersionsRequest, Metadata, ObjectInfo, PartInfo, PutOptions,
    RenameOptions, StoreFeatures, UploadInfo, VersionId, VersionInfo, VersionsPage,
};

/// What `capacity()` reports as the size of the (unbounded) memory.
const TOTAL_BYTES: u64 = u64::MAX / 2;

/// Prefix of every continuation token this backend hands out (a format tag).
const TOKEN_TAG: &str = "mem1.";

/// One version of a key: data, or a delete marker.
#[derive(Debug, Clone)]
struct Version {
    id: VersionId,
    /// `None` for a delete marker.
    data: Option<Bytes>,
    etag: String,
    metadata: Metadata,
}

impl Version {
    fn info(&self, key: &str) -> ObjectInfo {
        ObjectInfo {
            key: key.to_string(),
            version: self.id,
            size: self.data.as_ref().map_or(0, |d| d.len() as u64),
            modified: self.id.time(),
            etag: self.etag.clone(),
            metadata: self.metadata.clone(),
        }
    }

    fn version_info(&self, key: &str, is_latest: bool) -> VersionInfo {
        VersionInfo {
            key: key.to_string(),
            version: self.id,
            is_latest,
            is_delete_marker: self.data.is_none(),
            size: self.data.as_ref().map_or(0, |d| d.len() as u64),
            modified: self.id.time(),
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
    /// The last version id handed out.
    last_version: u128,
    /// Uploads created so far (for ids and ordering).
    upload_seq: u64,
}

/// An entry of a listing before paging: an object (or one version) or a common prefix.
#[derive(Debug, Clone)]
enum Entry<T> {
    Item(T),
    Prefix(String),
}

/// Where a listing resumes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Position {
    /// Strictly after this key.
    Key(String),
    /// After this common prefix and every key under it.
    Prefix(String),
}

impl Position {
    /// Whether `key` lies after this position.
    fn admits(&self, key: &str) -> bool {
        match self {
            Position::Key(k) => key > k.as_str(),
            Position::Prefix(p) => key > p.as_str() && !key.starts_with(p.as_str()),
        }
    }
}

impl State {
    fn next_version_id(&mut self) -> VersionId {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
            .min(u64::MAX as u128);
        let id = (now << 64).max(self.last_version.saturating_add(1));
        self.last_version = id;
        VersionId(id)
    }

    /// The current version of `key` when it is live (not a delete marker).
    fn live(&self, key: &str) -> Option<&Version> {
        self.objects
            .get(key)
            .and_then(|vs| vs.last())
            .filter(|v| v.data.is_some())
    }

    /// A version with data: the given one, or the current live one.
    fn find(&self, key: &str, version: Option<VersionId>) -> Result<&Version> {
        match version {
            None => self.live(key).ok_or_else(|| StoreError::NotFound {
                key: key.to_string(),
            }),
            Some(id) => self
                .objects
                .get(key)
                .and_then(|vs| vs.iter().find(|v| v.id == id))
                .filter(|v| v.data.is_some())
                .ok_or_else(|| StoreError::NoSuchVersion {
                    key: key.to_string(),
                    version: id,
                }),
        }
    }

    fn check_condition(&self, key: &str, condition: Condition) -> Result<()> {
        let live = self.live(key).map(|v| v.id);
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
        let id = self.next_version_id();
        let v = Version {
            id,
            data: Some(data),
            etag,
            metadata,
        };
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

/// The common prefix `key` rolls up into under `prefix` and `delimiter`, if any: the prefix
/// plus the rest of the key up to and including the first delimiter after the prefix.
fn roll_up(prefix: &str, delimiter: Option<&str>, key: &str) -> Option<String> {
    let d = delimiter.filter(|d| !d.is_empty())?;
    let rest = key.strip_prefix(prefix)?;
    let idx = rest.find(d)?;
    Some(key[..prefix.len() + idx + d.len()].to_string())
}

fn encode_token(pos: &Position) -> String {
    let (kind, name) = match pos {
        Position::Key(k) => ('k', k),
        Position::Prefix(p) => ('p', p),
    };
    let hex: String = name.bytes().map(|b| format!("{b:02x}")).collect();
    format!("{TOKEN_TAG}{kind}{hex}")
}

fn decode_token(token: &str) -> Result<Position> {
    let bad = || StoreError::InvalidArgument(format!("invalid continuation token {token:?}"));
    let body = token.strip_prefix(TOKEN_TAG).ok_or_else(bad)?;
    let mut chars = body.chars();
    let kind = chars.next().ok_or_else(bad)?;
    let hex = chars.as_str();
    if hex.len() % 2 != 0 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| bad()))
        .collect::<Result<Vec<u8>>>()?;
    let name = String::from_utf8(bytes).map_err(|_| bad())?;
    match kind {
        'k' => Ok(Position::Key(name)),
        'p' => Ok(Position::Prefix(name)),
        _ => Err(bad()),
    }
}

#[async_trait]
impl ObjectStore for MemoryStore {
    fn describe(&self) -> String {
        "memory".to_string()
    }

    fn features(&self) -> StoreFeatures {
        StoreFeatures {
            list_returns_metadata: true,
            zero_copy: true,
            min_part_size: 0,
            atomic_rename: true,
        }
    }

    async fn put(&self, key: &str, body: Body, opts: PutOptions) -> Result<ObjectInfo> {
        validate(key)?;
        let data = body.collect().await?;
        let mut st = self.lock();
        st.check_condition(key, opts.condition)?;
        let etag = content_etag(&data);
        Ok(st.push(key, data, etag, opts.metadata))
    }

    async fn get(&self, key: &str, opts: GetOptions) -> Result<GetResult> {
        validate(key)?;
        let st = self.lock();
        let v = st.find(key, opts.version)?;
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
        Ok(st.find(key, version)?.info(key))
    }

    async fn delete(&self, key: &str) -> Result<Option<VersionId>> {
        validate(key)?;
        let mut st = self.lock();
        if st.live(key).is_none() {
            return Ok(None);
        }
        let id = st.next_version_id();
        st.objects
            .entry(key.to_string())
            .or_default()
            .push(Version {
                id,
                data: None,
                etag: String::new(),
                metadata: Metadata::new(),
            });
        Ok(Some(id))
    }

    async fn delete_version(&self, key: &str, version: VersionId) -> Result<()> {
        validate(key)?;
        let mut st = self.lock();
        let no_such = || StoreError::NoSuchVersion {
            key: key.to_string(),
            version,
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
        let source = st.find(src, opts.source_version)?.clone();
        st.check_condition(dst, opts.condition)?;
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
        st.check_condition(dst, opts.condition)?;
        let data = source.data.unwrap_or_default();
        let info = st.push(dst, data, source.etag, source.metadata);
        let id = st.next_version_id();
        st.objects
            .entry(src.to_string())
            .or_default()
            .push(Version {
                id,
                data: None,
                etag: String::new(),
                metadata: Metadata::new(),
            });
        Ok(info)
    }

    async fn list(&self, req: &ListRequest) -> Result<ListPage> {
        validate_prefix(&req.prefix)?;
        let position = match &req.continuation {
            Some(token) => Some(decode_token(token)?),
            None => req.start_after.clone().map(Position::Key),
        };
        let delimiter = req.delimiter.as_deref();
        let st = self.lock();

        let mut entries: Vec<Entry<ObjectInfo>> = Vec::new();
        for (key, versions) in &st.objects {
            if !key.starts_with(req.prefix.as_str()) {
                continue;
            }
            if let Some(pos) = &position {
                if !pos.admits(key) {
                    continue;
                }
            }
            let Some(current) = versions.last().filter(|v| v.data.is_some()) else {
                continue;
            };
            match roll_up(&req.prefix, delimiter, key) {
                Some(p) => {
                    let dup = matches!(entries.last(), Some(Entry::Prefix(last)) if *last == p);
                    if !dup {
                        entries.push(Entry::Prefix(p));
                    }
                }
                None => entries.push(Entry::Item(current.info(key))),
            }
        }

        let page_size = req.page_size();
        let truncated = entries.len() > page_size;
        entries.truncate(page_size);
        let next_token = if truncated {
            entries.last().map(|e| match e {
                Entry::Item(o) => encode_token(&Position::Key(o.key.clone())),
                Entry::Prefix(p) => encode_token(&Position::Prefix(p.clone())),
            })
        } else {
            None
        };
        let mut page = ListPage {
            next_token,
            ..Default::default()
        };
        for e in entries {
            match e {
                Entry::Item(o) => page.objects.push(o),
                Entry::Prefix(p) => page.common_prefixes.push(p),
            }
        }
        Ok(page)
    }

    async fn list_versions(&self, req: &ListVersionsRequest) -> Result<VersionsPage> {
        validate_prefix(&req.prefix)?;
        let delimiter = req.delimiter.as_deref();
        // A key marker that is itself a common prefix of this listing (a page ended on it)
        // resumes after everything under it; such a string is never listed as a key, because
        // every key equal to it rolls up into it.
        let marker_is_prefix = req
            .key_marker
            .as_deref()
            .is_some_and(|m| roll_up(&req.prefix, delimiter, m).as_deref() == Some(m));
        let st = self.lock();

        let mut entries: Vec<Entry<VersionInfo>> = Vec::new();
        for (key, versions) in &st.objects {
            if !key.starts_with(req.prefix.as_str()) {
                continue;
            }
            let newest = versions.last().map(|v| v.id);
            // The versions of this key that lie after the markers, newest first.
            let after: Vec<&Version> = versions
                .iter()
                .rev()
                .filter(|v| match req.key_marker.as_deref() {
                    None => true,
                    Some(m) if marker_is_prefix => key.as_str() > m && !key.starts_with(m),
                    Some(m) => match key.as_str().cmp(m) {
                        std::cmp::Ordering::Greater => true,
                        std::cmp::Ordering::Less => false,
                        std::cmp::Ordering::Equal => req.version_marker.is_some_and(|vm| v.id < vm),
                    },
                })
                .collect();
            if after.is_empty() {
                continue;
            }
            match roll_up(&req.prefix, delimiter, key) {
                Some(p) => {
                    let dup = matches!(entries.last(), Some(Entry::Prefix(last)) if *last == p);
                    if !dup {
                        entries.push(Entry::Prefix(p));
                    }
                }
                None => {
                    for v in after {
                        entries.push(Entry::Item(v.version_info(key, Some(v.id) == newest)));
                    }
                }
            }
        }

        let page_size = req.page_size();
        let truncated = entries.len() > page_size;
        entries.truncate(page_size);
        let mut page = VersionsPage::default();
        if truncated {
            match entries.last() {
                Some(Entry::Item(v)) => {
                    page.next_key_marker = Some(v.key.clone());
                    page.next_version_marker = Some(v.version);
                }
                Some(Entry::Prefix(p)) => page.next_key_marker = Some(p.clone()),
                None => {}
            }
        }
        for e in entries {
            match e {
                Entry::Item(v) => page.versions.push(v),
                Entry::Prefix(p) => page.common_prefixes.push(p),
            }
        }
        Ok(page)
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
        let source = st.find(src, src_version)?;
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
        let condition = upload.opts.condition;
        let metadata = upload.opts.metadata.clone();
        st.check_condition(key, condition)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    async fn put(s: &MemoryStore, key: &str, data: &'static str) -> ObjectInfo {
        s.put(key, data.into(), PutOptions::default())
            .await
            .unwrap()
    }

    /// Follows every page of a listing and returns (objects, prefixes) in page order.
    async fn list_all(s: &MemoryStore, mut req: ListRequest) -> (Vec<String>, Vec<String>, usize) {
        let (mut objs, mut prefixes, mut pages) = (Vec::new(), Vec::new(), 0);
        loop {
            let page = s.list(&req).await.unwrap();
            pages += 1;
            assert!(page.objects.len() + page.common_prefixes.len() <= req.page_size());
            objs.extend(page.objects.into_iter().map(|o| o.key));
            prefixes.extend(page.common_prefixes);
            match page.next_token {
                Some(t) => req.continuation = Some(t),
                None => return (objs, prefixes, pages),
            }
        }
    }

    #[test]
    fn version_ids_strictly_increase() {
        rt().block_on(async {
            let s = MemoryStore::new();
            let mut last = VersionId(0);
            for _ in 0..100 {
                let v = put(&s, "k", "x").await.version;
                assert!(v > last);
                last = v;
            }
        });
    }

    #[test]
    fn roll_up_rules() {
        assert_eq!(roll_up("", Some("/"), "a/b/c"), Some("a/".into()));
        assert_eq!(roll_up("a/", Some("/"), "a/b/c"), Some("a/b/".into()));
        assert_eq!(roll_up("a/", Some("/"), "a/b"), None);
        assert_eq!(roll_up("a", Some("/"), "a//b"), Some("a/".into()));
        assert_eq!(roll_up("a/", Some("/"), "a//b"), Some("a//".into()));
        assert_eq!(roll_up("", None, "a/b"), None);
        assert_eq!(roll_up("", Some(""), "a/b"), None);
        assert_eq!(roll_up("x", Some("/"), "a/b"), None);
        assert_eq!(roll_up("", Some("ab"), "xxabyab"), Some("xxab".into()));
    }

    #[test]
    fn token_round_trip_and_garbage() {
        for p in [
            Position::Key("a/ü".into()),
            Position::Prefix("a//".into()),
            Position::Key(String::new()),
        ] {
            assert_eq!(decode_token(&encode_token(&p)).unwrap(), p);
        }
        for bad in [
            "", "garbage", "mem1.", "mem1.k0", "mem1.kzz", "mem1.x61", "mem1.kff",
        ] {
            assert_eq!(
                decode_token(bad).unwrap_err().kind(),
                ErrorKind::InvalidArgument,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn token_after_common_prefix_skips_keys_added_under_it() {
        rt().block_on(async {
            let s = MemoryStore::new();
            for k in ["a/1", "a/2", "b", "c/1"] {
                put(&s, k, "x").await;
            }
            let req = ListRequest {
                delimiter: Some("/".into()),
                max_keys: 1,
                ..Default::default()
            };
            let p1 = s.list(&req).await.unwrap();
            assert_eq!(p1.common_prefixes, vec!["a/".to_string()]);
            // A key written under the prefix after the page was returned must not bring the
            // prefix back.
            put(&s, "a/zzz", "x").await;
            let p2 = s
                .list(&ListRequest {
                    continuation: p1.next_token.clone(),
                    ..req.clone()
                })
                .await
                .unwrap();
            assert_eq!(p2.objects.len(), 1);
            assert_eq!(p2.objects[0].key, "b");
            assert!(p2.common_prefixes.is_empty());
            let (objs, prefixes, pages) = list_all(&s, req).await;
            assert_eq!(objs, vec!["b"]);
            assert_eq!(prefixes, vec!["a/", "c/"]);
            assert_eq!(pages, 3);
        });
    }

    #[test]
    fn list_skips_deleted_and_sorts_bytes() {
        rt().block_on(async {
            let s = MemoryStore::new();
            for k in ["a/b", "a0", "a-", "a.", "a/", "é", "z"] {
                put(&s, k, "x").await;
            }
            s.delete("z").await.unwrap();
            let (objs, prefixes, _) = list_all(&s, ListRequest::default()).await;
            assert_eq!(objs, vec!["a-", "a.", "a/", "a/b", "a0", "é"]);
            assert!(prefixes.is_empty());
            let (objs, prefixes, _) = list_all(&s, ListRequest::dir("")).await;
            assert_eq!(objs, vec!["a-", "a.", "a0", "é"]);
            assert_eq!(prefixes, vec!["a/"]);
            // start_after is a key position: keys after it still roll up.
            let (objs, prefixes, _) = list_all(
                &s,
                ListRequest {
                    start_after: Some("a/".into()),
                    ..ListRequest::dir("")
                },
            )
            .await;
            assert_eq!(objs, vec!["a0", "é"]);
            assert_eq!(prefixes, vec!["a/"]);
        });
    }

    #[test]
    fn list_versions_markers() {
        rt().block_on(async {
            let s = MemoryStore::new();
            let a1 = put(&s, "a", "1").await.version;
            let a2 = put(&s, "a", "2").await.version;
            let a3 = s.delete("a").await.unwrap().unwrap();
            let b1 = put(&s, "b/x", "1").await.version;
            let c1 = put(&s, "c", "1").await.version;

            let req = ListVersionsRequest {
                max_keys: 2,
                ..Default::default()
            };
            let p1 = s.list_versions(&req).await.unwrap();
            let ids: Vec<_> = p1.versions.iter().map(|v| v.version).collect();
            assert_eq!(ids, vec![a3, a2]);
            assert!(p1.versions[0].is_latest && p1.versions[0].is_delete_marker);
            assert!(!p1.versions[1].is_latest);
            assert_eq!(p1.next_key_marker.as_deref(), Some("a"));
            assert_eq!(p1.next_version_marker, Some(a2));
            let p2 = s
                .list_versions(&ListVersionsRequest {
                    key_marker: p1.next_key_marker,
                    version_marker: p1.next_version_marker,
                    ..req.clone()
                })
                .await
                .unwrap();
            let ids: Vec<_> = p2.versions.iter().map(|v| v.version).collect();
            assert_eq!(ids, vec![a1, b1]);

            // Delimited: the prefix b/ ends a page, the next resumes after it.
            let req = ListVersionsRequest {
                delimiter: Some("/".into()),
                key_marker: Some("a".into()),
                max_keys: 1,
                ..Default::default()
            };
            let p = s.list_versions(&req).await.unwrap();
            assert_eq!(p.common_prefixes, vec!["b/".to_string()]);
            assert_eq!(p.next_key_marker.as_deref(), Some("b/"));
            assert_eq!(p.next_version_marker, None);
            let p = s
                .list_versions(&ListVersionsRequest {
                    key_marker: p.next_key_marker,
                    ..req
                })
                .await
                .unwrap();
            assert_eq!(p.versions.len(), 1);
            assert_eq!(p.versions[0].version, c1);
            assert!(p.common_prefixes.is_empty());
            assert_eq!(p.next_key_marker, None);
        });
    }

    #[test]
    fn delete_version_and_undelete() {
        rt().block_on(async {
            let s = MemoryStore::new();
            assert_eq!(s.delete("k").await.unwrap(), None);
            let v1 = put(&s, "k", "one").await.version;
            let m = s.delete("k").await.unwrap().unwrap();
            assert_eq!(s.delete("k").await.unwrap(), None);
            assert_eq!(
                s.head("k", None).await.unwrap_err().kind(),
                ErrorKind::NotFound
            );
            assert_eq!(
                s.head("k", Some(m)).await.unwrap_err().kind(),
                ErrorKind::NoSuchVersion
            );
            s.delete_version("k", m).await.unwrap();
            assert_eq!(s.head("k", None).await.unwrap().version, v1);
            assert_eq!(
                s.delete_version("k", m).await.unwrap_err().kind(),
                ErrorKind::NoSuchVersion
            );
            s.delete_version("k", v1).await.unwrap();
            assert_eq!(
                s.delete_version("k", v1).await.unwrap_err().kind(),
                ErrorKind::NoSuchVersion
            );
            assert!(s.objects_is_empty());
        });
    }

    #[test]
    fn multipart_complete_checks_and_keeps_upload_on_failure() {
        rt().block_on(async {
            let s = MemoryStore::new();
            let src = put(&s, "src", "0123456789").await;
            let id = s
                .create_multipart(
                    "m",
                    PutOptions {
                        metadata: [("x".to_string(), "y".to_string())].into(),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            let p2 = s.upload_part("m", &id, 2, "-tail".into()).await.unwrap();
            let p1 = s
                .upload_part_copy("m", &id, 1, "src", Some(src.version), Some(2..5))
                .await
                .unwrap();
            assert_eq!(p1.size, 3);
            let bad = [
                CompletedPart {
                    part_number: 2,
                    etag: p2.etag.clone(),
                },
                CompletedPart {
                    part_number: 1,
                    etag: p1.etag.clone(),
                },
            ];
            assert_eq!(
                s.complete_multipart("m", &id, &bad)
                    .await
                    .unwrap_err()
                    .kind(),
                ErrorKind::InvalidPart
            );
            assert_eq!(
                s.complete_multipart("other", &id, &bad)
                    .await
                    .unwrap_err()
                    .kind(),
                ErrorKind::NoSuchUpload
            );
            let good = [
                CompletedPart {
                    part_number: 1,
                    etag: p1.etag.clone(),
                },
                CompletedPart {
                    part_number: 2,
                    etag: p2.etag.clone(),
                },
            ];
            let info = s.complete_multipart("m", &id, &good).await.unwrap();
            assert!(info.etag.ends_with("-2"));
            assert_eq!(info.metadata.get("x").map(String::as_str), Some("y"));
            let got = s.get("m", GetOptions::default()).await.unwrap();
            assert_eq!(&got.bytes().await.unwrap()[..], b"234-tail");
            assert_eq!(
                s.list_parts("m", &id).await.unwrap_err().kind(),
                ErrorKind::NoSuchUpload
            );
        });
    }

    impl MemoryStore {
        fn objects_is_empty(&self) -> bool {
            self.lock().objects.is_empty()
        }
    }
}
