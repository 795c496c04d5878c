//! Garbage collection in the remote tier, for gc's compaction phase (local/gc.rs):
//!
//! * tiered volumes none of whose blobs is left (every one reached refs 0 and was reclaimed)
//!   are deleted, several at once ([`delete_volumes`]): their records durably, then their
//!   objects, at most the tier's `jobs` DELETEs in flight;
//! * a tiered volume with much garbage is compacted **remote to remote** ([`compact_volume`]):
//!   its live blob regions are read (ranged GETs through the read cache, each verified by its
//!   checksums), packed into a new volume image under a new volume id, uploaded to that id's
//!   hashed key, read back (streamed) and checked; then one durable metadata batch points the blobs at
//!   the new volume, adds its record and removes the old one; the old object goes last.
//!   Compacting in the bucket (rather than recalling the volume and letting the lifecycle
//!   daemon tier it again) never needs local disk space for cold data and keeps the data cold;
//!   it costs the GETs of the live regions and one PUT of them.
//!
//! Both are crash-safe through the intent checkpoint `tier-gc` (a list of [`GcIntent`], one per
//! volume), written before the first remote write and cleared after the last; [`resolve`]
//! finishes or rolls back what a crash left, intent by intent, before gc's next remote work:
//!
//! | intent | records | state | resolution |
//! | --- | --- | --- | --- |
//! | none | any | nothing in flight | - |
//! | delete | old present | not committed | nothing (gc tries again) |
//! | delete | old absent | committed; the object may remain | delete the old object |
//! | compact | new absent | not committed; the new object may exist | delete the new object |
//! | compact | new present | committed; the old object may remain | delete the old object |

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};
use crate::local::records::{Layout, RemoteObject, VolumeRecord, VolumeState};
use crate::local::tier::{object_key, parallel, resolve_in_order, Tier};
use crate::local::volume::{now_nanos, volume_header, BlobLocation, VOLUME_HEADER_LEN};
use crate::local::Inner;

/// The checkpoint holding a remote deletion or compaction in flight.
const INTENT: &str = "tier-gc";

/// A remote deletion (`new` = 0) or compaction in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcIntent {
    /// The volume deleted or compacted.
    pub old: u64,
    pub old_key: String,
    /// The volume compaction writes (0: a deletion).
    pub new: u64,
    pub new_key: String,
}

/// What resolving an intent does (pure; see the module's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GcResolution {
    Nothing,
    DeleteOld,
    DeleteNew,
}

pub fn resolution(intent: Option<&GcIntent>, old_exists: bool, new_exists: bool) -> GcResolution {
    match intent {
        None => GcResolution::Nothing,
        Some(i) if i.new == 0 => {
            if old_exists {
                GcResolution::Nothing
            } else {
                GcResolution::DeleteOld
            }
        }
        Some(_) if new_exists => GcResolution::DeleteOld,
        Some(_) => GcResolution::DeleteNew,
    }
}

/// Saves the steps in flight durably: postcard's list, for zero or one step the same bytes as
/// the `Option<GcIntent>` earlier builds wrote (so their checkpoints read unchanged).
fn save_intents(inner: &Inner, intents: &[GcIntent]) -> Result<()> {
    inner.meta.save_checkpoint(INTENT, &intents)?;
    inner.meta.flush()
}

/// Test hook: `OBJFS_TIER_PAUSE_MS` sleeps between the steps (crash tests).
fn test_pause() {
    if let Some(ms) = std::env::var("OBJFS_TIER_PAUSE_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// Finishes or rolls back one step.
fn resolve_one(inner: &Inner, tier: &Tier, intent: &GcIntent) -> Result<()> {
    let old = inner.disks.record(intent.old).is_some();
    let new = intent.new != 0 && inner.disks.record(intent.new).is_some();
    match resolution(Some(intent), old, new) {
        GcResolution::Nothing => {}
        GcResolution::DeleteOld => {
            tier.client.delete(&intent.old_key)?;
            tier.cache.remove_volume(intent.old);
        }
        GcResolution::DeleteNew => tier.client.delete(&intent.new_key)?,
    }
    tracing::info!(
        volume = intent.old,
        new = intent.new,
        "resolved an interrupted remote gc step"
    );
    Ok(())
}

/// Finishes or rolls back what a crash left in flight (what fails stays for the next time).
pub(crate) fn resolve(inner: &Inner, tier: &Tier) -> Result<()> {
    let intents = inner
        .meta
        .checkpoint::<Vec<GcIntent>>(INTENT)?
        .unwrap_or_default();
    resolve_in_order(
        &intents,
        |intent| resolve_one(inner, tier, intent),
        |rest| save_intents(inner, rest),
    )
}

/// Deletes the tiered volumes `ids`, which have no blob left: their records (durably), then
/// their objects, at most the tier's `jobs` at once. Per volume: the object's size (0: not a
/// tiered volume) or why its object could not be deleted (its intent stays; the next
/// [`resolve`] deletes it).
pub(crate) fn delete_volumes(
    inner: &Inner,
    tier: &Tier,
    ids: &[u64],
) -> Result<Vec<(u64, Result<u64>)>> {
    let mut out = Vec::new();
    let mut todo = Vec::new();
    for &id in ids {
        match inner.disks.record(id).map(|r| r.layout) {
            Some(Layout::Remote(obj)) => todo.push((id, obj)),
            _ => out.push((id, Ok(0))),
        }
    }
    if todo.is_empty() {
        return Ok(out);
    }
    let intent = |(id, obj): &(u64, RemoteObject)| GcIntent {
        old: *id,
        old_key: obj.key.clone(),
        new: 0,
        new_key: String::new(),
    };
    save_intents(inner, &todo.iter().map(intent).collect::<Vec<_>>())?;
    let mut left = Vec::new();
    let mut gone = Vec::new();
    for t in &todo {
        match inner.disks.delete_volume(&inner.meta, t.0) {
            Ok(_) => gone.push(t),
            // Not committed: the next round tries again (resolve leaves it).
            Err(e) => out.push((t.0, Err(e))),
        }
    }
    if !gone.is_empty() {
        test_pause();
    }
    let deleted = parallel(tier.record.jobs(), &gone, |(_, obj)| {
        tier.client.delete(&obj.key)
    });
    for (t, r) in gone.iter().zip(deleted) {
        tier.cache.remove_volume(t.0);
        match r {
            Ok(()) => out.push((t.0, Ok(t.1.size))),
            Err(e) => {
                left.push(intent(t));
                out.push((t.0, Err(e)));
            }
        }
    }
    save_intents(inner, &left)?;
    Ok(out)
}

/// Where compaction puts each live region in the new volume: packed after the header, in the
/// order given. Returns the new locations and the new volume's size (pure).
pub fn pack(new_volume: u64, regions: &[(BlobLocation, u64)]) -> (Vec<BlobLocation>, u64) {
    let mut at = VOLUME_HEADER_LEN;
    let mut out = Vec::with_capacity(regions.len());
    for (loc, len) in regions {
        out.push(BlobLocation {
            volume: new_volume,
            offset: at,
            ..*loc
        });
        at += len;
    }
    (out, at)
}

/// What one compaction did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Compacted {
    pub new_volume: u64,
    /// Bytes of live regions rewritten.
    pub moved: u64,
    /// Bytes of the old object deleted.
    pub freed: u64,
}

/// Rewrites the live blobs `locs` of tiered volume `id` into a new tiered volume and deletes
/// the old one. `None` when a live blob cannot be read verified (nothing changed).
pub(crate) fn compact_volume(
    inner: &Inner,
    tier: &Tier,
    id: u64,
    locs: &[BlobLocation],
) -> Result<Option<Compacted>> {
    let Some(rec) = inner.disks.record(id) else {
        return Ok(None);
    };
    let Layout::Remote(old_obj) = rec.layout.clone() else {
        return Ok(None);
    };
    let mut locs = locs.to_vec();
    locs.sort_by_key(|l| l.offset);
    let mut regions = Vec::with_capacity(locs.len());
    for loc in &locs {
        match inner.disks.read_region(loc) {
            Ok(r) => regions.push(r),
            Err(e) => {
                tracing::error!(volume = id, blob = loc.blob, error = %e, "cannot compact a remote volume: a live blob does not verify");
                return Ok(None);
            }
        }
    }
    let new_id = inner.meta.next_id()?;
    let sized: Vec<(BlobLocation, u64)> = locs
        .iter()
        .zip(&regions)
        .map(|(l, r)| (*l, r.len() as u64))
        .collect();
    let (placed, size) = pack(new_id, &sized);
    let created = now_nanos();
    let mut image = vec![0u8; size as usize];
    image[..VOLUME_HEADER_LEN as usize].copy_from_slice(&volume_header(new_id, created));
    for (loc, region) in placed.iter().zip(&regions) {
        let at = loc.offset as usize;
        image[at..at + region.len()].copy_from_slice(region);
    }
    let moved: u64 = regions.iter().map(|r| r.len() as u64).sum();
    let hash = *blake3::hash(&image).as_bytes();
    let new_key = object_key(&tier.record.prefix, new_id);
    save_intents(
        inner,
        &[GcIntent {
            old: id,
            old_key: old_obj.key.clone(),
            new: new_id,
            new_key: new_key.clone(),
        }],
    )?;
    let etag = tier.client.put(&new_key, Bytes::from(image))?;
    test_pause();
    let (len, back) = tier.client.hash(&new_key)?;
    if len != size || back != hash {
        let _ = tier.client.delete(&new_key);
        save_intents(inner, &[])?;
        return Err(StoreError::Corrupt {
            what: format!(
                "compacting volume {id:016x}: the new object read back from {} does not match",
                tier.describe(&new_key)
            ),
        });
    }
    let new_rec = VolumeRecord {
        id: new_id,
        state: VolumeState::Sealed,
        size,
        created,
        layout: Layout::Remote(RemoteObject {
            key: new_key,
            size,
            etag,
            blake3: hash,
        }),
        verified_at: now_nanos(),
    };
    let moves: Vec<(u64, u64)> = placed.iter().map(|l| (l.blob, l.offset)).collect();
    inner.meta.swap_volume(&moves, id, &new_rec)?;
    inner.disks.set_record(new_rec);
    inner.disks.forget_record(id);
    test_pause();
    tier.client.delete(&old_obj.key)?;
    tier.cache.remove_volume(id);
    save_intents(inner, &[])?;
    Ok(Some(Compacted {
        new_volume: new_id,
        moved,
        freed: old_obj.size,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_at_any_step_of_remote_gc_is_finished_or_rolled_back() {
        let delete = GcIntent {
            old: 5,
            old_key: "a".into(),
            new: 0,
            new_key: String::new(),
        };
        let compact = GcIntent {
            new: 9,
            new_key: "b".into(),
            ..delete.clone()
        };
        assert_eq!(resolution(None, true, false), GcResolution::Nothing);
        // A deletion not yet committed: leave it to the next round.
        assert_eq!(
            resolution(Some(&delete), true, false),
            GcResolution::Nothing
        );
        // Committed: the object may remain.
        assert_eq!(
            resolution(Some(&delete), false, false),
            GcResolution::DeleteOld
        );
        // A compaction before its commit: the new object may exist, nothing points at it.
        assert_eq!(
            resolution(Some(&compact), true, false),
            GcResolution::DeleteNew
        );
        // After: the old object may remain.
        assert_eq!(
            resolution(Some(&compact), false, true),
            GcResolution::DeleteOld
        );
    }

    #[test]
    fn compaction_packs_live_regions_after_the_header() {
        let l = |blob, offset| BlobLocation {
            blob,
            volume: 3,
            offset,
            len: 10,
            block_size: 65536,
        };
        let (placed, size) = pack(8, &[(l(1, 5000), 74), (l(2, 9000), 100)]);
        assert_eq!(placed[0].offset, 64);
        assert_eq!(placed[1].offset, 64 + 74);
        assert!(placed.iter().all(|p| p.volume == 8));
        assert_eq!(placed[1].blob, 2);
        assert_eq!(size, 64 + 74 + 100);
        assert_eq!(pack(8, &[]).1, 64);
    }
}
