//! Named snapshots: a name for a moment of the store's history. A snapshot is one record
//! (`snapshot/NAME`, see [`crate::ObjectStore::get_record`]) holding its moment, so creating
//! one is O(1) whatever the number of keys; what it shows is the store as of that moment
//! ([`crate::ObjectStore::list_at`]), and retention and gc keep every version it sees.
//!
//! The record is JSON with a format number (`{"format":1,...}`); docs/FORMAT.md lists its
//! fields. `exclusive` is what the snapshot alone holds (the bytes deleting it would let gc
//! free), measured by gc's retention pass and kept here so `snapshot list` needs no scan.

use std::time::SystemTime;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::time::{from_ns, to_ns};
use crate::error::{Result, StoreError};
use crate::store::ObjectStore;

/// Prefix of every snapshot record's name.
pub const RECORD_PREFIX: &str = "snapshot/";

/// Longest snapshot name in bytes (a file name under `.snapshots/`).
pub const MAX_NAME_LEN: usize = 255;

/// The record format this build writes.
const FORMAT: u32 = 1;

/// A named snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub name: String,
    /// The moment it shows.
    pub at: SystemTime,
    /// When it was created.
    pub created: SystemTime,
    /// What only this snapshot holds, as of gc's last retention pass (`None` before one).
    pub exclusive: Option<Exclusive>,
}

/// What a snapshot alone keeps from being expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exclusive {
    /// Bytes of the versions only this snapshot keeps.
    pub bytes: u64,
    /// How many versions those are.
    pub versions: u64,
    /// When gc measured it.
    pub measured: SystemTime,
}

#[derive(Serialize, Deserialize)]
struct Record {
    format: u32,
    name: String,
    at_ns: u64,
    created_ns: u64,
    exclusive: Option<ExclusiveRecord>,
}

#[derive(Serialize, Deserialize)]
struct ExclusiveRecord {
    bytes: u64,
    versions: u64,
    measured_ns: u64,
}

impl Snapshot {
    /// The record's bytes.
    pub(crate) fn encode(&self) -> Result<Bytes> {
        let rec = Record {
            format: FORMAT,
            name: self.name.clone(),
            at_ns: to_ns(self.at),
            created_ns: to_ns(self.created),
            exclusive: self.exclusive.map(|e| ExclusiveRecord {
                bytes: e.bytes,
                versions: e.versions,
                measured_ns: to_ns(e.measured),
            }),
        };
        serde_json::to_vec(&rec)
            .map(Bytes::from)
            .map_err(|e| StoreError::Metadata(format!("snapshot {}: {e}", self.name)))
    }

    /// Reads the bytes of record `record`.
    pub(crate) fn decode(record: &str, bytes: &[u8]) -> Result<Snapshot> {
        let corrupt = |why: String| StoreError::Corrupt {
            what: format!("store record {record}: {why}"),
        };
        let rec: Record = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
        if rec.format != FORMAT {
            return Err(corrupt(format!(
                "format {} (this build reads format {FORMAT})",
                rec.format
            )));
        }
        Ok(Snapshot {
            name: rec.name,
            at: from_ns(rec.at_ns),
            created: from_ns(rec.created_ns),
            exclusive: rec.exclusive.map(|e| Exclusive {
                bytes: e.bytes,
                versions: e.versions,
                measured: from_ns(e.measured_ns),
            }),
        })
    }
}

/// Checks a snapshot name: 1..=255 bytes of ASCII letters, digits, `.`, `_`, `-`, not
/// starting with `.` or `-` (and so never `.`, `..`, or an `@TIME` entry of `.snapshots/`, nor
/// an option on a command line).
pub fn check_name(name: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(StoreError::InvalidArgument(format!(
            "snapshot name {:?} {why}",
            name.chars().take(64).collect::<String>()
        )))
    };
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return bad(&format!("is not 1..={MAX_NAME_LEN} bytes"));
    }
    if name.starts_with('.') || name.starts_with('-') {
        return bad("starts with '.' or '-'");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return bad("has characters other than letters, digits, '.', '_' and '-'");
    }
    Ok(())
}

fn record_name(name: &str) -> String {
    format!("{RECORD_PREFIX}{name}")
}

/// Creates snapshot `name` of the moment `at` (not after `now`). Fails with
/// `PreconditionFailed` when the name is taken.
pub async fn create(
    store: &dyn ObjectStore,
    name: &str,
    at: SystemTime,
    now: SystemTime,
) -> Result<Snapshot> {
    check_name(name)?;
    if at > now {
        return Err(StoreError::InvalidArgument(format!(
            "snapshot {name}: {} is in the future",
            super::time::format_rfc3339(at)
        )));
    }
    if get(store, name).await?.is_some() {
        return Err(StoreError::PreconditionFailed {
            key: record_name(name),
            reason: format!("a snapshot named {name} exists"),
        });
    }
    let snap = Snapshot {
        name: name.to_string(),
        at,
        created: now,
        exclusive: None,
    };
    store
        .put_record(&record_name(name), Some(snap.encode()?), false)
        .await?;
    Ok(snap)
}

/// The snapshot named `name`, if any.
pub async fn get(store: &dyn ObjectStore, name: &str) -> Result<Option<Snapshot>> {
    check_name(name)?;
    let record = record_name(name);
    match store.get_record(&record).await? {
        Some(bytes) => Ok(Some(Snapshot::decode(&record, &bytes)?)),
        None => Ok(None),
    }
}

/// Every snapshot, by name.
pub async fn list(store: &dyn ObjectStore) -> Result<Vec<Snapshot>> {
    store
        .list_records(RECORD_PREFIX)
        .await?
        .into_iter()
        .map(|(record, bytes)| Snapshot::decode(&record, &bytes))
        .collect()
}

/// Deletes snapshot `name` (`NotFound` when there is none) and returns what it was. The
/// versions only it kept are freed by gc's next pass.
pub async fn delete(store: &dyn ObjectStore, name: &str) -> Result<Snapshot> {
    let snap = get(store, name)
        .await?
        .ok_or_else(|| StoreError::NotFound {
            key: format!("snapshot {name}"),
        })?;
    store.put_record(&record_name(name), None, false).await?;
    Ok(snap)
}

/// Records what snapshot `name` alone holds (gc's retention pass). A snapshot deleted
/// meanwhile stays deleted.
pub async fn save_exclusive(store: &dyn ObjectStore, name: &str, ex: Exclusive) -> Result<()> {
    let Some(mut snap) = get(store, name).await? else {
        return Ok(());
    };
    snap.exclusive = Some(ex);
    store
        .put_record(&record_name(name), Some(snap.encode()?), false)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryStore;
    use std::time::Duration;

    #[tokio::test]
    async fn create_list_delete() {
        let store = MemoryStore::new();
        let now = SystemTime::now();
        let at = now - Duration::from_secs(60);
        let s = create(&store, "before-upgrade", at, now).await.unwrap();
        assert_eq!(s.at, at);
        create(&store, "a.1", now, now).await.unwrap();
        let err = create(&store, "a.1", now, now).await.unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::PreconditionFailed);
        let names: Vec<_> = list(&store)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["a.1", "before-upgrade"]);
        let ex = Exclusive {
            bytes: 10,
            versions: 1,
            measured: from_ns(to_ns(now)),
        };
        save_exclusive(&store, "a.1", ex).await.unwrap();
        assert_eq!(
            get(&store, "a.1").await.unwrap().unwrap().exclusive,
            Some(ex)
        );
        delete(&store, "a.1").await.unwrap();
        assert_eq!(
            delete(&store, "a.1").await.unwrap_err().kind(),
            crate::ErrorKind::NotFound
        );
        assert_eq!(list(&store).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn bad_names_and_future_moments_are_refused() {
        let store = MemoryStore::new();
        let now = SystemTime::now();
        for name in [
            "",
            ".",
            "..",
            ".hidden",
            "-rf",
            "@2026",
            "a/b",
            "a b",
            &"x".repeat(256),
        ] {
            let e = create(&store, name, now, now).await.unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument, "{name:?}");
        }
        let e = create(&store, "later", now + Duration::from_secs(60), now)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("future"), "{e}");
        assert!(list(&store).await.unwrap().is_empty());
    }
}
