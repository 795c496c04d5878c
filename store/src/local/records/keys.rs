//! The sled key of every table: its first byte says which table a row is in ([`table`]), the
//! rest is laid out so that the rows a read wants lie together in key order (a key's versions
//! newest first, an upload's parts by number, ended versions by the version that ended them).
//! docs/FORMAT.md gives each layout byte by byte.

use super::INITIAL_FORMAT;
use crate::error::{Result, StoreError};
use crate::local::version::LocalVersion;

/// Table tags: the first byte of every sled key.
pub mod table {
    /// `c` + key -> [`crate::local::records::CurrentRecord`]: the live version of a key (absent
    /// when the newest version is a delete marker). Listing scans only this table.
    pub const CURRENT: u8 = b'c';
    /// `d` + key -> [`crate::local::records::DeletedRecord`]: a key whose newest version is a
    /// delete marker (store format 3). With [`CURRENT`] it names every key that has a version: a
    /// key has a row in exactly one of the two. Listings as of a moment read both in key order.
    pub const DELETED: u8 = b'd';
    /// `v` + key + 0x00 + (u128::MAX - version) big-endian ->
    /// [`crate::local::records::VersionRecord`]: every version, a key's versions newest first.
    pub const VERSION: u8 = b'v';
    /// `b` + blob id (u64 BE) -> [`crate::local::records::BlobRecord`]: one row per blob, the
    /// layout of store format 1. Read only to migrate such a store (and to replay its log) into
    /// [`BLOB_PAGE`].
    pub const BLOB: u8 = b'b';
    /// `e` + ending version (u128 BE) + key + 0x00 + version (u128 BE) -> one format byte: a data
    /// version that is no longer the newest of its key, filed under the version made over it (store
    /// format 4). A named snapshot at T sees exactly the data versions made at or before T whose
    /// row lies after T, so what one snapshot alone sees is found from the rows ending between it
    /// and the next snapshot (`meta::ended`).
    pub const ENDED: u8 = b'e';
    /// `B` + page number (u64 BE) -> a page of up to 16 blob records
    /// (`meta::blob_pages::BlobPage`): where blobs are and how many extents reference them.
    pub const BLOB_PAGE: u8 = b'B';
    /// `V` + volume id (u64 BE) -> [`crate::local::records::VolumeRecord`].
    pub const VOLUME: u8 = b'V';
    /// `L` + volume id (u64 BE) -> u64: the *lineage* of a volume made by compaction, the id of the
    /// volume its blobs were first written to (a volume without a row is its own lineage).
    /// Per-prefix rollups count bytes by lineage, so a compaction, which moves every live blob of
    /// one volume into one new volume, changes no rollup row.
    pub const LINEAGE: u8 = b'L';
    /// `u` + upload id -> [`crate::local::records::UploadRecord`].
    pub const UPLOAD: u8 = b'u';
    /// `p` + upload id + 0x00 + part number (u32 BE) -> [`crate::local::records::PartRecord`].
    pub const PART: u8 = b'p';
    /// `t` + key -> [`crate::local::records::KeyTimesRecord`]: times kept beside a key's versions.
    pub const KEY_TIMES: u8 = b't';
    /// `s` + key -> RollupBucket (`meta::rollup`): the key's noncurrent versions (and their bytes)
    /// that only named snapshots keep, as gc's last retention pass over the key found them; absent
    /// when none. Summed per prefix by the rollups.
    pub const SNAPSHOT_ONLY: u8 = b's';
    /// `r` + name -> [`crate::local::records::StoreRecordRow`]: a store record (named snapshots,
    /// the retention policy, restore checkpoints), opaque bytes of the layer that wrote it.
    pub const STORE_RECORD: u8 = b'r';
    /// `m` + name -> miscellaneous store state ([`crate::local::records::StatsRecord`], version id
    /// high-water mark, clean-shutdown flag).
    pub const MISC: u8 = b'm';
}

/// `c` + key.
pub fn current_key(key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + key.len());
    k.push(table::CURRENT);
    k.extend_from_slice(key.as_bytes());
    k
}

/// `d` + key.
pub fn deleted_key(key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + key.len());
    k.push(table::DELETED);
    k.extend_from_slice(key.as_bytes());
    k
}

/// `v` + key + 0x00: the start of a key's version rows.
pub fn version_prefix(key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + key.len() + 16);
    k.push(table::VERSION);
    k.extend_from_slice(key.as_bytes());
    k.push(0);
    k
}

/// `v` + key + 0x01: the first row after every version of `key` (keys hold no NUL, so no
/// other key's rows lie between).
pub fn after_versions(key: &str) -> Vec<u8> {
    let mut k = version_prefix(key);
    if let Some(last) = k.last_mut() {
        *last = 1;
    }
    k
}

/// `v` + key + 0x00 + inverted version id.
pub fn version_key(key: &str, version: LocalVersion) -> Vec<u8> {
    let mut k = version_prefix(key);
    k.extend_from_slice(&(u128::MAX - version.0).to_be_bytes());
    k
}

/// Splits a version row key into (key, version).
pub fn parse_version_key(row: &[u8]) -> Result<(&str, LocalVersion)> {
    let bad = || StoreError::Corrupt {
        what: format!("malformed version row key ({} bytes)", row.len()),
    };
    if row.len() < 1 + 1 + 16 || row[0] != table::VERSION {
        return Err(bad());
    }
    let (head, inv) = row.split_at(row.len() - 16);
    let key_bytes = &head[1..head.len() - 1];
    if head[head.len() - 1] != 0 {
        return Err(bad());
    }
    let inv: [u8; 16] = inv.try_into().map_err(|_| bad())?;
    let key = std::str::from_utf8(key_bytes).map_err(|_| bad())?;
    Ok((key, LocalVersion(u128::MAX - u128::from_be_bytes(inv))))
}

/// `e` + `end` + key + 0x00 + `version`: the row of data version `version` of `key`, ended
/// by version `end` (the next newer one).
pub fn ended_key(end: LocalVersion, key: &str, version: LocalVersion) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + 16 + key.len() + 1 + 16);
    k.push(table::ENDED);
    k.extend_from_slice(&end.0.to_be_bytes());
    k.extend_from_slice(key.as_bytes());
    k.push(0);
    k.extend_from_slice(&version.0.to_be_bytes());
    k
}

/// `e` + `end`: the first `e` row of versions ended by `end` or later.
pub fn ended_from(end: LocalVersion) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(table::ENDED);
    k.extend_from_slice(&end.0.to_be_bytes());
    k
}

/// Splits an `e` row key into (ending version, key, version).
pub fn parse_ended_key(row: &[u8]) -> Result<(LocalVersion, &str, LocalVersion)> {
    let bad = || StoreError::Corrupt {
        what: format!("malformed ended-version row key ({} bytes)", row.len()),
    };
    if row.len() < 1 + 16 + 1 + 1 + 16 || row[0] != table::ENDED {
        return Err(bad());
    }
    let end: [u8; 16] = row[1..17].try_into().map_err(|_| bad())?;
    let (head, vid) = row.split_at(row.len() - 16);
    if head[head.len() - 1] != 0 {
        return Err(bad());
    }
    let key = std::str::from_utf8(&head[17..head.len() - 1]).map_err(|_| bad())?;
    let vid: [u8; 16] = vid.try_into().map_err(|_| bad())?;
    Ok((
        LocalVersion(u128::from_be_bytes(end)),
        key,
        LocalVersion(u128::from_be_bytes(vid)),
    ))
}

/// The value of every `e` row: its format byte, no body.
pub const ENDED_VALUE: [u8; 1] = [INITIAL_FORMAT];

/// `b` + blob id: the row of a blob in store format 1 (migrated into pages at open).
pub fn blob_key(blob: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = table::BLOB;
    k[1..].copy_from_slice(&blob.to_be_bytes());
    k
}

/// `V` + volume id.
pub fn volume_key(volume: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = table::VOLUME;
    k[1..].copy_from_slice(&volume.to_be_bytes());
    k
}

/// `s` + key.
pub fn snapshot_only_key(key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(table::SNAPSHOT_ONLY);
    k.extend_from_slice(key.as_bytes());
    k
}

/// `L` + volume id.
pub fn lineage_key(volume: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = table::LINEAGE;
    k[1..].copy_from_slice(&volume.to_be_bytes());
    k
}

/// `u` + upload id.
pub fn upload_key(upload_id: &str) -> Vec<u8> {
    let mut k = vec![table::UPLOAD];
    k.extend_from_slice(upload_id.as_bytes());
    k
}

/// `p` + upload id + 0x00: the start of an upload's part rows.
pub fn part_prefix(upload_id: &str) -> Vec<u8> {
    let mut k = vec![table::PART];
    k.extend_from_slice(upload_id.as_bytes());
    k.push(0);
    k
}

/// `p` + upload id + 0x00 + part number.
pub fn part_key(upload_id: &str, part: u32) -> Vec<u8> {
    let mut k = part_prefix(upload_id);
    k.extend_from_slice(&part.to_be_bytes());
    k
}

/// `t` + key bytes.
pub fn key_times_key(key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(table::KEY_TIMES);
    k.extend_from_slice(key.as_bytes());
    k
}

/// `m` + name.
pub fn misc_key(name: &str) -> Vec<u8> {
    let mut k = vec![table::MISC];
    k.extend_from_slice(name.as_bytes());
    k
}

/// Names of the `m` rows.
pub mod misc {
    pub const STATS: &str = "stats";
    pub const VERSION_HWM: &str = "version-hwm";
    pub const CLEAN: &str = "clean-shutdown";
    pub const ID_LEASE: &str = "id-lease";
    /// The last metadata log segment whose records are all in sled (written only to sled, flushed
    /// with the rows it covers).
    pub const LOG_APPLIED: &str = "log-applied";
}
