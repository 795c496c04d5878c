//! Persisted metadata records and the sled key encodings that index them.
//!
//! Every value is one format byte followed by the record in postcard's wire format
//! (<https://postcard.jamesmunns.com/wire-format>): integers as LEB128 varints, strings and byte
//! strings length-prefixed, `Vec`/`BTreeMap` as a varint count then the items, enums as a varint
//! discriminant. docs/FORMAT.md lists every record field by field.
//!
//! Records evolve one type at a time (after garage's `Migrate`): each record type has a current
//! format ([`Migrate::FORMAT`], what this build writes) and knows the layout of its previous
//! format ([`Migrate::Previous`]) and how to bring it up to date ([`Migrate::migrate`]).
//! [`decode`] dispatches on the format byte: the current format decodes directly, an older one
//! decodes as the previous layout (recursively) and migrates, anything else is refused as
//! corrupt. Types still at their first format implement [`InitialFormat`] instead. A migrated
//! record is rewritten in the current format the next time the store writes that row.
//!
//! All rows live in one sled tree so that one `Batch` commits a write atomically; the first byte
//! of a sled key says which table the row belongs to (each table's key layout is in
//! `records/keys.rs`).

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::error::{Result, StoreError};
use crate::local::version::LocalVersion;
use crate::types::{Condition, Metadata};

mod keys;
pub use keys::*;

/// The first format of every record type (and the only one of types that never changed).
pub const INITIAL_FORMAT: u8 = 1;

/// A persisted record type that can read its previous format.
pub trait Migrate: Serialize + DeserializeOwned {
    /// The format byte this build writes for this type.
    const FORMAT: u8;
    /// Whether a previous format exists (false only for [`InitialFormat`] types).
    const HAS_PREVIOUS: bool = true;
    /// The layout of the previous format.
    type Previous: Migrate;
    /// Brings a record of the previous format up to date.
    fn migrate(previous: Self::Previous) -> Self;
}

/// A record type still at its first format: nothing to migrate from.
pub trait InitialFormat: Serialize + DeserializeOwned {}

/// The previous format of a type that has none (never decoded).
#[derive(Debug, Serialize, Deserialize)]
pub enum NoPrevious {}

impl<T: InitialFormat> Migrate for T {
    const FORMAT: u8 = INITIAL_FORMAT;
    const HAS_PREVIOUS: bool = false;
    type Previous = NoPrevious;
    fn migrate(previous: NoPrevious) -> Self {
        match previous {}
    }
}

impl InitialFormat for NoPrevious {}
impl InitialFormat for u64 {}
impl InitialFormat for bool {}

/// A byte range of a blob's data that forms part of an object, or a *hole*: `len` bytes that
/// read as zeros and are stored nowhere (blob id [`HOLE_BLOB`], offset 0). A hole references
/// no blob, so it holds no reference count and nothing reads, scrubs or collects it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extent {
    pub blob: u64,
    /// Offset within the blob's data (0 for a hole).
    pub offset: u64,
    pub len: u64,
}

/// The blob id of a hole extent. Ids are handed out counting up from 0 in leases of 2^20, so
/// no blob ever has this one.
pub const HOLE_BLOB: u64 = u64::MAX;

impl Extent {
    /// `len` bytes of zeros, stored nowhere.
    pub fn hole(len: u64) -> Extent {
        Extent {
            blob: HOLE_BLOB,
            offset: 0,
            len,
        }
    }

    /// Whether this extent is a hole (reads as zeros, has no blob).
    pub fn is_hole(&self) -> bool {
        self.blob == HOLE_BLOB
    }

    /// The blob this extent reads from, `None` for a hole.
    pub fn blob_id(&self) -> Option<u64> {
        (!self.is_hole()).then_some(self.blob)
    }
}

/// One version of a key: its data as extents, or a delete marker (format 2: extents may be
/// holes; format 1 had the same layout without holes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRecord {
    pub delete_marker: bool,
    pub size: u64,
    pub etag: String,
    pub metadata: Metadata,
    pub extents: Vec<Extent>,
}

impl VersionRecord {
    /// Whether an encoded record is a delete marker, without decoding the rest (it is the
    /// first field in every format: the format byte, then a postcard bool).
    pub fn is_marker(bytes: &[u8]) -> Result<bool> {
        match bytes {
            [1 | 2, 0, ..] => Ok(false),
            [1 | 2, 1, ..] => Ok(true),
            _ => decode::<VersionRecord>(bytes).map(|r| r.delete_marker),
        }
    }
}

/// The live version of a key, duplicated from its [`VersionRecord`] minus the extents so that
/// listing reads one small row per entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrentRecord {
    pub version: u128,
    pub size: u64,
    pub etag: String,
    pub metadata: Metadata,
}

/// A key whose newest version is a delete marker: that marker's id (the row of table
/// [`table::DELETED`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedRecord {
    pub marker: u128,
}

/// Where a blob lives and how many extents reference it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRecord {
    pub volume: u64,
    /// Offset of the blob header in the volume file.
    pub offset: u64,
    /// Bytes of data (excluding header and checksums).
    pub len: u64,
    pub block_size: u32,
    /// Extents (in versions and in parts) that reference this blob.
    pub refs: u64,
    /// When `refs` last dropped to zero (nanoseconds since the epoch), for gc's safety delay.
    pub freed_at: u64,
}

/// Life stage of a volume file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VolumeState {
    /// Blobs are being appended.
    Open,
    /// Full; never appended to again.
    Sealed,
}

/// Where the bytes of a volume are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Layout {
    /// Whole copies, file `<disk>/<id>.vol` on each of these disks.
    Replicated { disks: Vec<u32> },
    /// K data + M parity shards of `shard_len` bytes; shard `i` is file `<disk>/<id>.s<i>` on
    /// `disks[i]`.
    Erasure {
        k: u8,
        m: u8,
        shard_len: u64,
        disks: Vec<u32>,
    },
    /// Tiered (volume record format 2): the whole volume is one object of the store's remote
    /// tier (tier/), at `key` under the tier's bucket; no local file.
    Remote(RemoteObject),
}

/// Where a tiered volume's object is and what it must be (tier/remote.rs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteObject {
    /// The object's key in the bucket (the tier prefix included).
    pub key: String,
    /// Its length (the volume's size).
    pub size: u64,
    /// The ETag the bucket gave it.
    pub etag: String,
    /// BLAKE3 of the whole object, checked when it was written and when it is recalled.
    pub blake3: [u8; 32],
}

/// A volume: a logical append-only file of blobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRecord {
    pub id: u64,
    pub state: VolumeState,
    /// Bytes reserved when it was sealed (0 while open).
    pub size: u64,
    pub created: u64,
    pub layout: Layout,
    /// When scrub last verified every copy or shard (ns; 0 = never).
    pub verified_at: u64,
}

/// A multipart upload in progress (format 2: the condition keeps the caller's version id as
/// given, see [`StoredCondition`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecord {
    pub key: String,
    pub initiated: u64,
    pub metadata: Metadata,
    pub condition: StoredCondition,
    pub durable: bool,
}

/// [`Condition`] in persisted form: the version is the opaque id's text, so a condition on an
/// id this store did not make is kept as given (and fails at completion, as it must).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoredCondition {
    None,
    IfNotExists,
    IfVersion(String),
}

impl From<Condition> for StoredCondition {
    fn from(c: Condition) -> Self {
        match c {
            Condition::None => StoredCondition::None,
            Condition::IfNotExists => StoredCondition::IfNotExists,
            Condition::IfVersion(v) => StoredCondition::IfVersion(v.as_str().to_string()),
        }
    }
}

impl From<StoredCondition> for Condition {
    fn from(c: StoredCondition) -> Self {
        match c {
            StoredCondition::None => Condition::None,
            StoredCondition::IfNotExists => Condition::IfNotExists,
            // Only text that parsed as a VersionId is ever stored; anything else (a damaged
            // row) can only be a version this store never made.
            StoredCondition::IfVersion(v) => {
                Condition::IfVersion(v.parse().unwrap_or_else(|_| LocalVersion::NEVER.id()))
            }
        }
    }
}

impl Migrate for UploadRecord {
    const FORMAT: u8 = 2;
    type Previous = UploadRecordV1;
    fn migrate(old: UploadRecordV1) -> Self {
        UploadRecord {
            key: old.key,
            initiated: old.initiated,
            metadata: old.metadata,
            condition: match old.condition {
                StoredConditionV1::None => StoredCondition::None,
                StoredConditionV1::IfNotExists => StoredCondition::IfNotExists,
                StoredConditionV1::IfVersion(v) => {
                    StoredCondition::IfVersion(LocalVersion(v).to_string())
                }
            },
            durable: old.durable,
        }
    }
}

/// [`UploadRecord`] as format 1 laid it out: the condition's version as the local store's
/// `u128`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecordV1 {
    pub key: String,
    pub initiated: u64,
    pub metadata: Metadata,
    pub condition: StoredConditionV1,
    pub durable: bool,
}

impl InitialFormat for UploadRecordV1 {}

/// [`StoredCondition`] of format 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoredConditionV1 {
    None,
    IfNotExists,
    IfVersion(u128),
}

/// An uploaded part (format 2: extents may be holes, as in [`VersionRecord`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRecord {
    pub etag: String,
    pub size: u64,
    pub extents: Vec<Extent>,
}

/// A record of format 1 of a type whose format 2 only added hole extents: the same layout
/// (serde-transparent), so migrating is taking the record as it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WithoutHoles<T>(pub T);

impl<T: Serialize + DeserializeOwned> InitialFormat for WithoutHoles<T> {}

impl Migrate for VersionRecord {
    const FORMAT: u8 = 2;
    type Previous = WithoutHoles<VersionRecord>;
    fn migrate(old: WithoutHoles<VersionRecord>) -> Self {
        old.0
    }
}

impl Migrate for PartRecord {
    const FORMAT: u8 = 2;
    type Previous = WithoutHoles<PartRecord>;
    fn migrate(old: WithoutHoles<PartRecord>) -> Self {
        old.0
    }
}

/// Store-wide counters, updated in the same batch as the rows they count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsRecord {
    /// Keys with a live current version.
    pub objects: u64,
    /// Sum of the sizes of live current versions.
    pub live_bytes: u64,
    /// Versions, delete markers included.
    pub versions: u64,
    pub delete_markers: u64,
}

impl InitialFormat for CurrentRecord {}

impl CurrentRecord {
    /// The `version` of an encoded record, without decoding the rest (it is the first field:
    /// the format byte, then its varint). A listing as of a past moment needs only that for a
    /// key changed since.
    pub fn version_of(bytes: &[u8]) -> Result<u128> {
        match bytes.split_first() {
            Some((&INITIAL_FORMAT, body)) => postcard::take_from_bytes::<u128>(body)
                .map(|(version, _)| version)
                .map_err(|e| StoreError::Corrupt {
                    what: format!("current record does not decode: {e}"),
                }),
            _ => decode::<CurrentRecord>(bytes).map(|r| r.version),
        }
    }
}
impl InitialFormat for DeletedRecord {}
impl InitialFormat for BlobRecord {}
impl Migrate for VolumeRecord {
    const FORMAT: u8 = 2;
    type Previous = WithoutRemote<VolumeRecord>;
    fn migrate(old: WithoutRemote<VolumeRecord>) -> Self {
        old.0
    }
}

/// A volume record of format 1: the same layout without the [`Layout::Remote`] variant
/// (added at the end, so format 1 bytes decode unchanged). The format byte moved so that an
/// older build refuses a tiered volume's record instead of misreading it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WithoutRemote<T>(pub T);

impl<T: Serialize + DeserializeOwned> InitialFormat for WithoutRemote<T> {}
impl InitialFormat for StatsRecord {}
impl InitialFormat for KeyTimesRecord {}

/// Times kept beside a key: nanoseconds since the epoch, 0 for "not recorded".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyTimesRecord {
    /// Last access (relatime updates by reads).
    pub accessed: u64,
    /// On a directory marker key: the last time an entry was created, removed or renamed in it.
    pub changed: u64,
}

/// A store record's value (see [`crate::ObjectStore::get_record`]): bytes whose format is
/// the business of the layer that wrote them (JSON with a `format` field, for every record
/// objfs writes today).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreRecordRow {
    pub value: Vec<u8>,
}

impl InitialFormat for StoreRecordRow {}

/// `r` + name.
pub fn store_record_key(name: &str) -> Vec<u8> {
    let mut k = vec![table::STORE_RECORD];
    k.extend_from_slice(name.as_bytes());
    k
}

/// Encodes a record value in its type's current format.
pub fn encode<T: Migrate>(value: &T) -> Result<Vec<u8>> {
    encode_as(T::FORMAT, value)
}

/// Encodes `value` behind the format byte `format` (the current format of its type, or, in
/// tests, an old layout under its old format byte).
///
/// The value is sized first (a counting pass, no allocation), so the record is one allocation
/// of its exact size: the body is written behind the format byte, never grown and copied (every
/// commit encodes several records; growing a vector from empty cost more than the encoding).
pub fn encode_as<T: Serialize>(format: u8, value: &T) -> Result<Vec<u8>> {
    let failed = |e: postcard::Error| StoreError::Metadata(format!("encoding a record: {e}"));
    let size = postcard::experimental::serialized_size(value).map_err(failed)?;
    let mut out = Vec::with_capacity(1 + size);
    out.push(format);
    postcard::to_extend(value, out).map_err(failed)
}

/// Decodes a record value: the current format directly, older formats through
/// [`Migrate::migrate`]; unknown (newer) formats are refused.
pub fn decode<T: Migrate>(bytes: &[u8]) -> Result<T> {
    match bytes.split_first() {
        Some((&format, body)) => decode_format(format, body),
        None => Err(StoreError::Corrupt {
            what: "empty metadata record".into(),
        }),
    }
}

fn decode_format<T: Migrate>(format: u8, body: &[u8]) -> Result<T> {
    if format == T::FORMAT {
        return postcard::from_bytes(body).map_err(|e| StoreError::Corrupt {
            what: format!("metadata record (format {format}) does not decode: {e}"),
        });
    }
    if T::HAS_PREVIOUS && format < T::FORMAT {
        return decode_format::<T::Previous>(format, body).map(T::migrate);
    }
    Err(StoreError::Corrupt {
        what: format!("metadata record has unknown format {format}"),
    })
}

/// Decodes a value that has no record type of its own (a worker's checkpoint): format 1 only.
pub fn decode_initial<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    match bytes.split_first() {
        Some((&INITIAL_FORMAT, body)) => {
            postcard::from_bytes(body).map_err(|e| StoreError::Corrupt {
                what: format!("metadata record does not decode: {e}"),
            })
        }
        Some((other, _)) => Err(StoreError::Corrupt {
            what: format!("metadata record has unknown format {other}"),
        }),
        None => Err(StoreError::Corrupt {
            what: "empty metadata record".into(),
        }),
    }
}

/// The extents that cover `range` of an object made of `extents` (a pure function: used by
/// reads, part copies and range copies).
pub fn slice_extents(extents: &[Extent], range: std::ops::Range<u64>) -> Vec<Extent> {
    let mut out = Vec::new();
    let mut pos = 0u64;
    for e in extents {
        let (start, end) = (pos, pos + e.len);
        pos = end;
        if end <= range.start || start >= range.end {
            continue;
        }
        let from = range.start.max(start);
        let to = range.end.min(end);
        out.push(if e.is_hole() {
            Extent::hole(to - from)
        } else {
            Extent {
                blob: e.blob,
                offset: e.offset + (from - start),
                len: to - from,
            }
        });
    }
    out
}

#[cfg(test)]
mod tests;
