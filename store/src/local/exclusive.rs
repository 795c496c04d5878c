//! What each named snapshot alone holds, measured when asked: `objfs snapshot list` on a local
//! store, exact as of the call, without a scan of the store.
//!
//! Retention decides by [`Expiry`]: a noncurrent version that no rule of the policy keeps and
//! exactly one snapshot sees is kept for that snapshot alone ([`Keep::only_snapshot`]), and
//! so is a delete marker over such versions. Such a version of the snapshot at T was made
//! after the previous snapshot's moment and ended (by the version over it) after T, but not
//! after the next snapshot's moment; otherwise a neighbour sees it too. The table of ended
//! versions ([`super::meta::ended`](crate::local::meta)) holds the data versions by the id of
//! the version that ended them, so the candidates of every snapshot are the rows between its
//! moment and the next one: each row is read once whatever the number of snapshots, and the
//! keys nothing ended since the oldest snapshot are never read.
//!
//! Each candidate key's versions are then decided whole, as gc's retention pass decides
//! them ([`Expiry::decide`] with the policy and every snapshot at this moment), so the count
//! is the pass's own. Bytes are those of blobs that deleting the snapshot lets gc free: every
//! reference to the blob comes from versions only that snapshot keeps or from versions of the
//! same keys that the policy expires now (gc's next pass removes those anyway). A blob shared
//! with another key (a copy, a rename) whose version there would also expire is counted once
//! gc has expired it. All reads go through one [`Pinned`](crate::local::meta::pinned) view, so
//! the figures describe one commit while commits go on.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::SystemTime;

use crate::error::Result;
use crate::history::retention::{self, Decision, Expiry, Policy, VersionFacts};
use crate::history::snapshots::{Exclusive, Snapshot, RECORD_PREFIX};
use crate::key::prefix_successor;
use crate::local::meta::blob_pages::{page_key, page_of, BlobPage};
use crate::local::meta::pinned::Pinned;
use crate::local::meta::Meta;
use crate::local::records::{
    after_versions, decode, ended_from, parse_ended_key, parse_version_key, store_record_key,
    table, version_prefix, Extent, StoreRecordRow, VersionRecord,
};
use crate::local::version::LocalVersion;
use crate::local::LocalStore;

impl LocalStore {
    /// What each named snapshot alone holds now, by name (see the module docs).
    pub fn snapshot_exclusive(&self) -> Result<BTreeMap<String, Exclusive>> {
        measure(&self.inner.meta, SystemTime::now())
    }
}

/// A store record's value in the view.
fn record(view: &Pinned<'_>, name: &str) -> Result<Option<Vec<u8>>> {
    match view.get(&store_record_key(name))? {
        Some(v) => Ok(Some(decode::<StoreRecordRow>(&v)?.value)),
        None => Ok(None),
    }
}

/// Every named snapshot in the view.
fn snapshots(view: &Pinned<'_>) -> Result<Vec<Snapshot>> {
    let start = store_record_key(RECORD_PREFIX);
    let end = prefix_successor(&start);
    let mut out = Vec::new();
    for row in view.range(start, end) {
        let (k, v) = row?;
        let name = String::from_utf8_lossy(&k[1..]).into_owned();
        out.push(Snapshot::decode(
            &name,
            &decode::<StoreRecordRow>(&v)?.value,
        )?);
    }
    Ok(out)
}

/// The first version id made after `t`.
fn after(t: SystemTime) -> LocalVersion {
    LocalVersion(LocalVersion::at(t).max_in_nanosecond().0.saturating_add(1))
}

/// The keys whose versions may be kept by one snapshot alone (see the module docs).
fn candidate_keys(view: &Pinned<'_>, snaps: &[Snapshot]) -> Result<BTreeSet<String>> {
    let mut moments: Vec<SystemTime> = snaps.iter().map(|s| s.at).collect();
    moments.sort();
    let mut keys = BTreeSet::new();
    for (i, &t) in moments.iter().enumerate() {
        // Two snapshots of one moment share everything they see.
        let shared = (i > 0 && moments[i - 1] == t) || moments.get(i + 1) == Some(&t);
        if shared {
            continue;
        }
        let prev = i.checked_sub(1).map(|j| moments[j]);
        let start = ended_from(after(t));
        let end = match moments.get(i + 1) {
            Some(&next) => ended_from(after(next)),
            None => vec![table::ENDED + 1],
        };
        for row in view.range(start, Some(end)) {
            let (k, _) = row?;
            let (_, key, vid) = parse_ended_key(&k)?;
            let made = vid.time();
            if made <= t && prev.is_none_or(|p| made > p) {
                keys.insert(key.to_string());
            }
        }
    }
    Ok(keys)
}

/// What the snapshots alone keep, counted so far.
#[derive(Default)]
struct Tally {
    versions: u64,
    /// Blob -> references from those versions.
    blobs: HashMap<u64, u64>,
}

/// What each named snapshot alone holds at `now`, by name.
pub(crate) fn measure(meta: &Meta, now: SystemTime) -> Result<BTreeMap<String, Exclusive>> {
    let view = meta.pinned();
    let policy = match record(&view, retention::RECORD)? {
        Some(bytes) => Policy::decode(&bytes)?,
        None => Policy::default(),
    };
    let snaps = snapshots(&view)?;
    let moments: Vec<SystemTime> = snaps.iter().map(|s| s.at).collect();
    let expiry = Expiry::new(&policy, &moments, now);
    let mut tallies: Vec<Tally> = snaps.iter().map(|_| Tally::default()).collect();
    // Blob -> references from versions of the candidate keys that expire now.
    let mut expiring: HashMap<u64, u64> = HashMap::new();
    for key in candidate_keys(&view, &snaps)? {
        let mut facts = Vec::new();
        let mut rows = Vec::new();
        for row in view.range(version_prefix(&key), Some(after_versions(&key))) {
            let (k, v) = row?;
            let (_, vid) = parse_version_key(&k)?;
            facts.push(VersionFacts {
                modified: vid.time(),
                delete_marker: VersionRecord::is_marker(&v)?,
            });
            rows.push(v);
        }
        let decisions = expiry.decide(&facts);
        if !decisions
            .iter()
            .any(|d| matches!(d, Decision::Keep(k) if k.only_snapshot().is_some()))
        {
            // Nothing here is one snapshot's alone: its blobs matter to no figure.
            continue;
        }
        for ((d, f), v) in decisions.iter().zip(&facts).zip(&rows) {
            let counts = match d {
                Decision::Expire => &mut expiring,
                Decision::Keep(k) => match k.only_snapshot().and_then(|i| tallies.get_mut(i)) {
                    Some(t) => {
                        t.versions += 1;
                        &mut t.blobs
                    }
                    None => continue,
                },
            };
            if f.delete_marker {
                continue;
            }
            let rec: VersionRecord = decode(v)?;
            for b in rec.extents.iter().filter_map(Extent::blob_id) {
                *counts.entry(b).or_insert(0) += 1;
            }
        }
    }
    let mut out = BTreeMap::new();
    for (snap, tally) in snaps.iter().zip(tallies) {
        let mut bytes = 0;
        for (blob, refs) in &tally.blobs {
            let (page, slot) = page_of(*blob);
            let rec = match view.get(&page_key(page))? {
                Some(v) => decode::<BlobPage>(&v)?.get(slot).copied(),
                None => None,
            };
            // A blob referenced from elsewhere too is not this snapshot's alone.
            if let Some(rec) = rec {
                if rec.refs == refs + expiring.get(blob).copied().unwrap_or(0) {
                    bytes += rec.len;
                }
            }
        }
        out.insert(
            snap.name.clone(),
            Exclusive {
                bytes,
                versions: tally.versions,
                measured: now,
            },
        );
    }
    Ok(out)
}
