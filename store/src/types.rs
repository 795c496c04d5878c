//! The values that cross the [`crate::ObjectStore`] API: version ids, object descriptions,
//! listing requests and pages, write options, multipart descriptors, bodies.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};

use crate::error::{Result, StoreError};

/// User metadata of a version: name -> value. Names are lower-case by convention; the
/// filesystem stores POSIX attributes here under s3fs's names (`x-amz-meta-mode`, ...).
pub type Metadata = BTreeMap<String, String>;

/// A version id: opaque to everything above the backend that made it.
///
/// Ids are compared only for equality (and hashed); they have no order. "Newest first" is the
/// order in which [`crate::ObjectStore::list_versions`] returns versions, and a version's time
/// is [`ObjectInfo::modified`] / [`VersionInfo::modified`]. Each backend decides what its ids
/// look like (the local store: 32 hex digits of a time-ordered number; S3: its own strings,
/// `null` in a bucket without versioning). The text form ([`fmt::Display`]) parses back
/// ([`FromStr`]) to the same id.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct VersionId(Arc<str>);

/// Longest text form of a version id that [`VersionId::from_str`] accepts (S3's ids are far
/// shorter; the bound keeps a hostile string from being carried around).
pub const MAX_VERSION_ID_LEN: usize = 1024;

impl VersionId {
    /// S3's id of the one version a key has in a bucket without versioning.
    pub fn null() -> VersionId {
        VersionId(Arc::from("null"))
    }

    /// Whether this is the [`VersionId::null`] id.
    pub fn is_null(&self) -> bool {
        &*self.0 == "null"
    }

    /// The text form.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// An id made by a backend of this crate (which guarantees the text rules itself).
    pub(crate) fn from_backend(text: impl Into<Arc<str>>) -> VersionId {
        VersionId(text.into())
    }
}

impl fmt::Display for VersionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for VersionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VersionId({})", &*self.0)
    }
}

impl FromStr for VersionId {
    type Err = StoreError;
    /// Any non-empty string of at most [`MAX_VERSION_ID_LEN`] visible ASCII characters. Whether
    /// a backend ever made such an id is its own business: one it did not make is
    /// `NoSuchVersion` there.
    fn from_str(s: &str) -> Result<Self> {
        if s.is_empty() || s.len() > MAX_VERSION_ID_LEN || !s.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(StoreError::InvalidArgument(format!(
                "version id {:?} is not 1..={MAX_VERSION_ID_LEN} visible ASCII characters",
                s.chars().take(64).collect::<String>()
            )));
        }
        Ok(VersionId(Arc::from(s)))
    }
}

/// A live version of an object, as returned by head, get, put and list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub version: VersionId,
    /// Size in bytes.
    pub size: u64,
    /// When this version was made (the store's clock, not a POSIX mtime).
    pub modified: SystemTime,
    /// Opaque content tag: two versions with the same etag in the same store have the same
    /// bytes. Multipart results end in `-N` (N parts), as in S3.
    pub etag: String,
    /// User metadata. Listings of backends that cannot return it cheaply leave it empty and say
    /// so in [`crate::StoreFeatures::list_returns_metadata`].
    pub metadata: Metadata,
}

/// One entry of a version listing: a version with data, or a delete marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    pub key: String,
    pub version: VersionId,
    /// True for the newest version of the key (delete markers included).
    pub is_latest: bool,
    /// True for a delete marker (size 0, no data, empty etag).
    pub is_delete_marker: bool,
    pub size: u64,
    pub modified: SystemTime,
    pub etag: String,
    pub metadata: Metadata,
}

/// A request to list live objects (S3's ListObjectsV2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListRequest {
    /// Only keys starting with this.
    pub prefix: String,
    /// Roll keys up into common prefixes at the first occurrence of this after the prefix.
    pub delimiter: Option<String>,
    /// Start strictly after this key (ignored when a continuation token is given).
    pub start_after: Option<String>,
    /// The `next_token` of the previous page.
    pub continuation: Option<String>,
    /// At most this many entries (objects plus common prefixes); 0 means 1000.
    pub max_keys: usize,
}

impl ListRequest {
    /// A delimited listing of one "directory" level.
    pub fn dir(prefix: impl Into<String>) -> Self {
        ListRequest {
            prefix: prefix.into(),
            delimiter: Some("/".into()),
            ..Default::default()
        }
    }

    /// The effective page size.
    pub fn page_size(&self) -> usize {
        if self.max_keys == 0 {
            1000
        } else {
            self.max_keys
        }
    }
}

/// One page of a listing. Objects and common prefixes are each in byte order of their keys and
/// together hold at most `max_keys` entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    pub objects: Vec<ObjectInfo>,
    pub common_prefixes: Vec<String>,
    /// Present exactly when more entries follow; pass it as `continuation`.
    pub next_token: Option<String>,
}

/// A request to list versions (S3's ListObjectVersions).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListVersionsRequest {
    pub prefix: String,
    pub delimiter: Option<String>,
    /// Start after this key (all its versions), or, with `version_marker`, after that version
    /// of this key.
    pub key_marker: Option<String>,
    pub version_marker: Option<VersionId>,
    /// At most this many entries (versions plus common prefixes); 0 means 1000.
    pub max_keys: usize,
}

impl ListVersionsRequest {
    /// The effective page size.
    pub fn page_size(&self) -> usize {
        if self.max_keys == 0 {
            1000
        } else {
            self.max_keys
        }
    }
}

/// One page of a version listing: keys in byte order, each key's versions newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionsPage {
    pub versions: Vec<VersionInfo>,
    pub common_prefixes: Vec<String>,
    /// Present exactly when more entries follow: pass them as `key_marker` / `version_marker`.
    pub next_key_marker: Option<String>,
    pub next_version_marker: Option<VersionId>,
}

/// A condition on the key's current live version, checked atomically with the write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Condition {
    /// Write unconditionally.
    #[default]
    None,
    /// Write only if the key has no live version (S3's `If-None-Match: *`).
    IfNotExists,
    /// Write only if the key's current live version is this one.
    IfVersion(VersionId),
}

/// Options of a write that makes a new version (put, copy, complete multipart).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutOptions {
    pub metadata: Metadata,
    pub condition: Condition,
    /// Make the version durable before returning (as if `sync` followed).
    pub durable: bool,
}

/// Options of a read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GetOptions {
    /// A given version instead of the current one.
    pub version: Option<VersionId>,
    /// A byte range instead of the whole object. `start` must be `<= size`; `end` is clamped to
    /// the size (as HTTP ranges are); `start > end` is invalid.
    pub range: Option<Range<u64>>,
}

/// Options of a server-side copy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyOptions {
    /// Copy this version of the source instead of its current one.
    pub source_version: Option<VersionId>,
    /// Replace the metadata (None keeps the source's).
    pub metadata: Option<Metadata>,
    pub condition: Condition,
    pub durable: bool,
}

/// One change of [`crate::ObjectStore::change_many`]: a single-key operation to run in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// [`crate::ObjectStore::copy`] of `src` to `dst`.
    Copy {
        src: String,
        dst: String,
        opts: CopyOptions,
    },
    /// [`crate::ObjectStore::delete_if`] of `key`.
    DeleteIf { key: String, condition: Condition },
}

impl Change {
    /// The keys the change reads or writes.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        let (a, b) = match self {
            Change::Copy { src, dst, .. } => (src.as_str(), Some(dst.as_str())),
            Change::DeleteIf { key, .. } => (key.as_str(), None),
        };
        std::iter::once(a).chain(b.filter(|b| *b != a))
    }
}

/// Options of a rename.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenameOptions {
    /// Rename only if the source's current version is this one (else `PreconditionFailed`).
    pub source_version: Option<VersionId>,
    /// Condition on the destination's current version (`IfNotExists` = RENAME_NOREPLACE).
    pub condition: Condition,
    pub durable: bool,
}

/// A multipart upload in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadInfo {
    pub key: String,
    pub upload_id: String,
    pub initiated: SystemTime,
}

/// A part uploaded to a multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartInfo {
    /// 1..=10000.
    pub part_number: u32,
    pub etag: String,
    pub size: u64,
}

/// A part named in a complete request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedPart {
    pub part_number: u32,
    pub etag: String,
}

/// Highest part number (S3's limit).
pub const MAX_PART_NUMBER: u32 = 10_000;

/// Checks a multipart part number against `1..=MAX_PART_NUMBER` (shared by every backend).
pub fn check_part_number(n: u32) -> Result<()> {
    if n == 0 || n > MAX_PART_NUMBER {
        return Err(StoreError::InvalidPart(format!(
            "part number {n} is outside 1..={MAX_PART_NUMBER}"
        )));
    }
    Ok(())
}

/// Capacity of the store, for `statfs`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capacity {
    /// Bytes the store could hold in all (the disks' size).
    pub total_bytes: u64,
    /// Bytes still free on the disks.
    pub free_bytes: u64,
    /// Bytes of live data the store holds (logical, before redundancy).
    pub used_bytes: u64,
    /// Live objects (current versions that are not delete markers).
    pub objects: u64,
}

/// What a backend can do, so the layers above can adapt (and the conformance suite knows
/// which of its cases apply).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreFeatures {
    /// Listings carry user metadata (no head needed per entry).
    pub list_returns_metadata: bool,
    /// Rename by copy is free of data copies (extents are shared).
    pub zero_copy: bool,
    /// Smallest size of a multipart part other than the last (0: no minimum).
    pub min_part_size: u64,
    /// `rename` is atomic (a crash leaves the object under one name, never two).
    pub atomic_rename: bool,
    /// Every write makes a new version that stays readable by id, and deletes leave markers
    /// (false for a bucket without versioning: one `null` version per key).
    pub versioning: bool,
    /// Writes honour [`Condition`] atomically (S3's `If-None-Match` / `If-Match`).
    pub conditional_put: bool,
    /// `upload_part_copy` is supported (S3's UploadPartCopy).
    pub part_copy: bool,
    /// Longest key in bytes.
    pub max_key_len: usize,
    /// [`crate::ObjectStore::set_key_times`] keeps times beside keys (otherwise the mount
    /// keeps them in memory only).
    pub key_times: bool,
    /// [`crate::ObjectStore::get_record`] and friends keep records (named snapshots, the
    /// retention policy, restore checkpoints).
    pub records: bool,
    /// The finest difference between two versions' times the backend keeps: versions made
    /// at least this far apart have different `modified` times (S3 stamps whole seconds).
    pub time_resolution: std::time::Duration,
}

impl StoreFeatures {
    /// Everything an embedded store (local, memory) does: metadata in listings, zero-copy
    /// copies, no minimum part size, atomic rename, versioning, conditional writes, part copies,
    /// keys up to [`crate::key::MAX_KEY_LEN`] bytes and times beside keys.
    pub const fn embedded() -> StoreFeatures {
        StoreFeatures {
            list_returns_metadata: true,
            zero_copy: true,
            min_part_size: 0,
            atomic_rename: true,
            versioning: true,
            conditional_put: true,
            part_copy: true,
            max_key_len: crate::key::MAX_KEY_LEN,
            key_times: true,
            records: true,
            time_resolution: std::time::Duration::from_nanos(1),
        }
    }
}

/// Times kept beside a key's versions, never versions themselves: the last access of a file
/// (relatime updates by reads) and, on a directory's marker key (`d/`), the last time an entry
/// was created, removed or renamed in it. `None` is "not recorded".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyTimes {
    pub accessed: Option<SystemTime>,
    pub changed: Option<SystemTime>,
}

impl KeyTimes {
    /// `self` with every time `newer` records replacing its own.
    pub fn updated(self, newer: KeyTimes) -> KeyTimes {
        KeyTimes {
            accessed: newer.accessed.or(self.accessed),
            changed: newer.changed.or(self.changed),
        }
    }
}

/// A stream of byte chunks.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send + 'static>>;

/// The data of a write, or of a read: whole bytes, or a stream of chunks.
pub enum Body {
    Bytes(Bytes),
    Stream(ByteStream),
}

impl Body {
    /// An empty body.
    pub fn empty() -> Body {
        Body::Bytes(Bytes::new())
    }

    /// A body from a stream of chunks.
    pub fn from_stream<S>(s: S) -> Body
    where
        S: Stream<Item = Result<Bytes>> + Send + 'static,
    {
        Body::Stream(Box::pin(s))
    }

    /// Collects the whole body into one buffer.
    pub async fn collect(self) -> Result<Bytes> {
        self.collect_sized(0).await
    }

    /// Collects the whole body into one buffer sized for `expected` bytes up front (no
    /// regrowing); a body of one chunk is returned without a copy.
    pub async fn collect_sized(self, expected: usize) -> Result<Bytes> {
        match self {
            Body::Bytes(b) => Ok(b),
            Body::Stream(mut s) => {
                let Some(first) = s.next().await else {
                    return Ok(Bytes::new());
                };
                let first = first?;
                let Some(second) = s.next().await else {
                    return Ok(first);
                };
                let mut buf = BytesMut::with_capacity(expected.max(first.len()));
                buf.extend_from_slice(&first);
                buf.extend_from_slice(&second?);
                while let Some(chunk) = s.next().await {
                    buf.extend_from_slice(&chunk?);
                }
                Ok(buf.freeze())
            }
        }
    }

    /// Turns the body into a stream (one chunk for `Bytes`).
    pub fn into_stream(self) -> ByteStream {
        match self {
            Body::Bytes(b) => Box::pin(futures::stream::once(async move { Ok(b) })),
            Body::Stream(s) => s,
        }
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Body::Bytes(b) => write!(f, "Body::Bytes({} bytes)", b.len()),
            Body::Stream(_) => write!(f, "Body::Stream"),
        }
    }
}

impl From<Bytes> for Body {
    fn from(b: Bytes) -> Self {
        Body::Bytes(b)
    }
}

impl From<Vec<u8>> for Body {
    fn from(b: Vec<u8>) -> Self {
        Body::Bytes(Bytes::from(b))
    }
}

impl From<&'static [u8]> for Body {
    fn from(b: &'static [u8]) -> Self {
        Body::Bytes(Bytes::from_static(b))
    }
}

impl From<&'static str> for Body {
    fn from(b: &'static str) -> Self {
        Body::Bytes(Bytes::from_static(b.as_bytes()))
    }
}

/// The result of a get: which version, which bytes of it, and the bytes.
pub struct GetResult {
    pub info: ObjectInfo,
    /// The byte range of the object that `body` holds.
    pub range: Range<u64>,
    pub body: Body,
}

impl GetResult {
    /// Collects the body.
    pub async fn bytes(self) -> Result<Bytes> {
        let len = (self.range.end - self.range.start) as usize;
        self.body.collect_sized(len).await
    }
}

impl fmt::Debug for GetResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GetResult")
            .field("info", &self.info)
            .field("range", &self.range)
            .field("body", &self.body)
            .finish()
    }
}

/// Resolves a requested range against an object size (shared by every backend).
pub fn resolve_range(range: Option<&Range<u64>>, size: u64) -> Result<Range<u64>> {
    match range {
        None => Ok(0..size),
        Some(r) => {
            if r.start > r.end || r.start > size {
                return Err(StoreError::InvalidRange {
                    start: r.start,
                    end: r.end,
                    size,
                });
            }
            Ok(r.start..r.end.min(size))
        }
    }
}
