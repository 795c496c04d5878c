//! Moving one sealed volume to the remote tier ([`tier_volume`]) and back ([`recall_volume`]),
//! so that a crash at any point loses nothing.
//!
//! Up: the volume's image (its header and every blob region, verified) is uploaded whole to
//! its hashed key, read back and checked against its BLAKE3, and only then is the volume
//! record switched to [`Layout::Remote`] and made durable; the local files go last. Down: the
//! object is downloaded and checked, written as replica files (fsynced), the record switched
//! back durably, and the object deleted last.
//!
//! Each move first records an intent (the checkpoint `tier-move`, [`Intent`]) and clears it
//! when done. What a crash leaves is resolved by [`resolve`] before the next move (the
//! lifecycle worker's first step, `tier recall`, `tier remove`):
//!
//! | intent | record says | state | resolved by |
//! | --- | --- | --- | --- |
//! | none | anything | nothing in flight | - |
//! | up | local | upload may have happened | rollback: delete the object |
//! | up | remote | committed | finish: delete the local files |
//! | down | remote | replicas may be partial | rollback: delete the new replica files |
//! | down | local | committed | finish: delete the object |

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};
use crate::local::disks::{FileKind, VolumeCatalog};
use crate::local::records::{Layout, RemoteObject, VolumeRecord, VolumeState};
use crate::local::tier::{object_key, Tier};
use crate::local::volume::{self, volume_header, BlobLocation, VOLUME_HEADER_LEN};
use crate::local::Inner;

/// The checkpoint holding a move in flight.
const INTENT: &str = "tier-move";

/// A move in flight (see the module's table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    pub volume: u64,
    /// true: local -> remote; false: remote -> local.
    pub up: bool,
    /// The object's key.
    pub key: String,
    /// The local layout before (up) or after (down) the move.
    pub local: Layout,
}

/// What resolving an intent does, decided from the intent and the record (pure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    Nothing,
    /// Delete the object (an upload that never committed, or a recall that did).
    DeleteObject,
    /// Delete the local files of the intent's layout (an upload that committed, or a recall
    /// that did not).
    DeleteLocal,
}

pub fn resolution(intent: Option<&Intent>, record: Option<&VolumeRecord>) -> Resolution {
    let Some(i) = intent else {
        return Resolution::Nothing;
    };
    let remote = matches!(record.map(|r| &r.layout), Some(Layout::Remote(_)));
    match (i.up, remote, record.is_some()) {
        // The volume is gone altogether (never after a move; be safe: keep everything).
        (_, _, false) => Resolution::Nothing,
        (true, false, _) => Resolution::DeleteObject,
        (true, true, _) => Resolution::DeleteLocal,
        (false, true, _) => Resolution::DeleteLocal,
        (false, false, _) => Resolution::DeleteObject,
    }
}

fn save_intent(inner: &Inner, intent: Option<&Intent>) -> Result<()> {
    inner.meta.save_checkpoint(INTENT, &intent)?;
    inner.meta.flush()
}

/// Finishes or rolls back what a crash left in flight.
pub(crate) fn resolve(inner: &Inner, tier: &Tier) -> Result<()> {
    let Some(intent) = inner.meta.checkpoint::<Option<Intent>>(INTENT)?.flatten() else {
        return Ok(());
    };
    let rec = inner.disks.record(intent.volume);
    match resolution(Some(&intent), rec.as_ref()) {
        Resolution::Nothing => {}
        Resolution::DeleteObject => tier.client.delete(&intent.key)?,
        Resolution::DeleteLocal => {
            if let Some(rec) = rec {
                let local = VolumeRecord {
                    layout: intent.local.clone(),
                    ..rec
                };
                inner.disks.forget_handles(intent.volume);
                inner.disks.remove_files(&local);
            }
        }
    }
    tracing::info!(
        volume = intent.volume,
        up = intent.up,
        "resolved an interrupted tier move"
    );
    save_intent(inner, None)
}

/// Test hook: `OBJFS_TIER_PAUSE_MS` sleeps between the steps of a move (crash tests).
fn test_pause() {
    if let Some(ms) = std::env::var("OBJFS_TIER_PAUSE_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// Moves sealed local volume `id` (live blobs `blobs`) to the remote tier. Returns the bytes
/// uploaded, or 0 when the volume is not eligible (open, already remote, gone).
pub(crate) fn tier_volume(
    inner: &Inner,
    tier: &Tier,
    id: u64,
    blobs: &[BlobLocation],
) -> Result<u64> {
    let _busy = inner.maintenance();
    let Some(rec) = inner.disks.record(id) else {
        return Ok(0);
    };
    if rec.state != VolumeState::Sealed || matches!(rec.layout, Layout::Remote(_)) {
        return Ok(0);
    }
    let size = rec.size.max(VOLUME_HEADER_LEN);
    let mut image = vec![0u8; size as usize];
    image[..VOLUME_HEADER_LEN as usize].copy_from_slice(&volume_header(id, rec.created));
    for loc in blobs {
        // Never tier a blob that does not verify: that is scrub's to repair first.
        let region = inner.disks.read_region(loc)?;
        let at = loc.offset as usize;
        let Some(dst) = image.get_mut(at..at + region.len()) else {
            return Err(StoreError::Corrupt {
                what: format!("blob {} lies outside volume {id:016x}", loc.blob),
            });
        };
        dst.copy_from_slice(&region);
    }
    let hash = *blake3::hash(&image).as_bytes();
    let key = object_key(&tier.record.prefix, id);
    save_intent(
        inner,
        Some(&Intent {
            volume: id,
            up: true,
            key: key.clone(),
            local: rec.layout.clone(),
        }),
    )?;
    let etag = tier.client.put(&key, Bytes::from(image))?;
    test_pause();
    let back = tier.client.get(&key)?;
    if back.len() as u64 != size || *blake3::hash(&back).as_bytes() != hash {
        let _ = tier.client.delete(&key);
        save_intent(inner, None)?;
        return Err(StoreError::Corrupt {
            what: format!(
                "volume {id:016x}: the copy read back from {} does not match what was written",
                tier.describe(&key)
            ),
        });
    }
    let tiered = VolumeRecord {
        layout: Layout::Remote(RemoteObject {
            key,
            size,
            etag,
            blake3: hash,
        }),
        ..rec.clone()
    };
    // Only once the remote layout is durable may the local files go.
    VolumeCatalog::save_volume_durably(&inner.meta, &tiered)?;
    inner.disks.set_record(tiered);
    test_pause();
    inner.disks.forget_handles(id);
    inner.disks.remove_files(&rec);
    save_intent(inner, None)?;
    Ok(size)
}

/// Brings tiered volume `id` back to local replica files. Returns the bytes downloaded (0 when
/// it is not remote).
pub(crate) fn recall_volume(inner: &Inner, tier: &Tier, id: u64) -> Result<u64> {
    let _busy = inner.maintenance();
    let Some(rec) = inner.disks.record(id) else {
        return Ok(0);
    };
    let Layout::Remote(obj) = rec.layout.clone() else {
        return Ok(0);
    };
    let bytes = tier.client.get(&obj.key)?;
    if bytes.len() as u64 != obj.size || *blake3::hash(&bytes).as_bytes() != obj.blake3 {
        return Err(StoreError::Corrupt {
            what: format!(
                "volume {id:016x}: {} does not match its recorded BLAKE3; not recalled",
                tier.describe(&obj.key)
            ),
        });
    }
    let disks = inner.disks.pick(inner.disks.replicas());
    if disks.is_empty() {
        return Err(StoreError::Unavailable {
            what: "the store's disks".into(),
            reason: "no disk in service to recall a volume to".into(),
        });
    }
    let local = Layout::Replicated {
        disks: disks.clone(),
    };
    save_intent(
        inner,
        Some(&Intent {
            volume: id,
            up: false,
            key: obj.key.clone(),
            local: local.clone(),
        }),
    )?;
    for &d in &disks {
        let path = inner.disks.file_path(id, d, FileKind::Replica);
        let ctx = |e| StoreError::io(format!("recalling into {}", path.display()), e);
        let f = std::fs::File::create(&path).map_err(ctx)?;
        std::io::Write::write_all(&mut &f, &bytes).map_err(ctx)?;
        f.sync_all().map_err(ctx)?;
        volume::sync_dir(&inner.disks.path(d))?;
    }
    test_pause();
    let back = VolumeRecord {
        layout: local,
        verified_at: volume::now_nanos(),
        ..rec
    };
    VolumeCatalog::save_volume_durably(&inner.meta, &back)?;
    inner.disks.set_record(back);
    tier.cache.remove_volume(id);
    tier.client.delete(&obj.key)?;
    save_intent(inner, None)?;
    Ok(obj.size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(layout: Layout) -> VolumeRecord {
        VolumeRecord {
            id: 1,
            state: VolumeState::Sealed,
            size: 100,
            created: 0,
            layout,
            verified_at: 0,
        }
    }

    #[test]
    fn a_crash_at_any_step_is_finished_or_rolled_back() {
        let local = Layout::Replicated { disks: vec![0] };
        let remote = Layout::Remote(RemoteObject {
            key: "k".into(),
            size: 100,
            etag: "e".into(),
            blake3: [0; 32],
        });
        let up = Intent {
            volume: 1,
            up: true,
            key: "k".into(),
            local: local.clone(),
        };
        let down = Intent {
            up: false,
            ..up.clone()
        };
        let r = |l: &Layout| Some(rec(l.clone()));
        assert_eq!(resolution(None, r(&local).as_ref()), Resolution::Nothing);
        // Up, before the record changed: the object may exist and nothing points at it.
        assert_eq!(
            resolution(Some(&up), r(&local).as_ref()),
            Resolution::DeleteObject
        );
        // Up, committed: the local files are left over.
        assert_eq!(
            resolution(Some(&up), r(&remote).as_ref()),
            Resolution::DeleteLocal
        );
        // Down, before the record changed: the new replicas may be partial.
        assert_eq!(
            resolution(Some(&down), r(&remote).as_ref()),
            Resolution::DeleteLocal
        );
        // Down, committed: the object is left over.
        assert_eq!(
            resolution(Some(&down), r(&local).as_ref()),
            Resolution::DeleteObject
        );
        assert_eq!(resolution(Some(&up), None), Resolution::Nothing);
    }
}
