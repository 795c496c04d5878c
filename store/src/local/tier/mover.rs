//! Moving sealed volumes to the remote tier ([`tier_volumes`]) and back ([`recall_volumes`]),
//! several at once (the tier's `jobs`), so that a crash at any point loses nothing.
//!
//! Up: each volume's image (its header and every blob region, verified) is uploaded whole to
//! its hashed key, read back (streamed, never a second copy in memory) and checked against its
//! BLAKE3, and only then is the volume record switched to [`Layout::Remote`] and made durable;
//! the local files go last. Down: the object is downloaded and checked, written as replica
//! files (fsynced), the record switched back durably, and the object deleted last. A batch
//! runs its transfers in parallel ([`super::parallel`]) and its commits one by one.
//!
//! Each batch first records one intent per volume (the checkpoint `tier-move`, a list of
//! [`Intent`]) and clears those it finished. What a crash (or a failed transfer) leaves is
//! resolved by [`resolve`], intent by intent, before the next batch (every batch's first step,
//! `tier recall`, `tier remove`):
//!
//! | intent | record says | state | resolved by |
//! | --- | --- | --- | --- |
//! | none | anything | nothing in flight | - |
//! | up | local | upload may have happened | rollback: delete the object |
//! | up | remote | committed | finish: delete the local files |
//! | down | remote | replicas may be partial | rollback: delete the new replica files |
//! | down | local | committed | finish: delete the object |

use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};
use crate::local::disks::{FileKind, VolumeCatalog};
use crate::local::records::{Layout, RemoteObject, VolumeRecord, VolumeState};
use crate::local::tier::{object_key, parallel, resolve_in_order, Tier};
use crate::local::volume::{self, volume_header, BlobLocation, VOLUME_HEADER_LEN};
use crate::local::Inner;

/// The checkpoint holding the moves in flight.
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

/// Saves the moves in flight durably. The list is postcard's (a varint count, then each):
/// for zero or one move the same bytes as the `Option<Intent>` earlier builds wrote, so their
/// checkpoints read unchanged.
fn save_intents(inner: &Inner, intents: &[Intent]) -> Result<()> {
    inner.meta.save_checkpoint(INTENT, &intents)?;
    inner.meta.flush()
}

fn load_intents(inner: &Inner) -> Result<Vec<Intent>> {
    Ok(inner
        .meta
        .checkpoint::<Vec<Intent>>(INTENT)?
        .unwrap_or_default())
}

/// Finishes or rolls back one intent.
fn resolve_one(inner: &Inner, tier: &Tier, intent: &Intent) -> Result<()> {
    let rec = inner.disks.record(intent.volume);
    match resolution(Some(intent), rec.as_ref()) {
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
    Ok(())
}

/// Finishes or rolls back what a crash (or a failed transfer) left in flight. On a failure
/// the intents not yet resolved stay for the next time.
pub(crate) fn resolve(inner: &Inner, tier: &Tier) -> Result<()> {
    let intents = load_intents(inner)?;
    resolve_in_order(
        &intents,
        |intent| resolve_one(inner, tier, intent),
        |rest| save_intents(inner, rest),
    )
}

/// Test hook: `OBJFS_TIER_PAUSE_MS` sleeps between the steps of a move (crash tests).
pub(crate) fn test_pause() {
    if let Some(ms) = std::env::var("OBJFS_TIER_PAUSE_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// What a batch of moves did.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// Per volume: the bytes moved (0: not eligible) or why it failed.
    pub results: Vec<(u64, Result<u64>)>,
    /// The most transfers that were in flight at the same time.
    pub peak: usize,
}

/// Counts the transfers in flight and their peak.
#[derive(Default)]
struct Gauge {
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl Gauge {
    fn during<R>(&self, f: impl FnOnce() -> R) -> R {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(n, Ordering::SeqCst);
        let r = f();
        self.now.fetch_sub(1, Ordering::SeqCst);
        r
    }
}

/// One volume of an upload batch.
struct Up {
    id: u64,
    rec: VolumeRecord,
    blobs: Vec<BlobLocation>,
    key: String,
}

/// The volume's image: its header and every blob region (each verified).
fn image_of(inner: &Inner, up: &Up) -> Result<Vec<u8>> {
    let size = up.rec.size.max(VOLUME_HEADER_LEN);
    let mut image = vec![0u8; size as usize];
    image[..VOLUME_HEADER_LEN as usize].copy_from_slice(&volume_header(up.id, up.rec.created));
    for loc in &up.blobs {
        // Never tier a blob that does not verify: that is scrub's to repair first.
        let region = inner.disks.read_region(loc)?;
        let at = loc.offset as usize;
        let Some(dst) = image.get_mut(at..at + region.len()) else {
            return Err(StoreError::Corrupt {
                what: format!("blob {} lies outside volume {:016x}", loc.blob, up.id),
            });
        };
        dst.copy_from_slice(&region);
    }
    Ok(image)
}

/// Uploads one volume and checks the copy the bucket returns; the remote object on success.
fn upload(inner: &Inner, tier: &Tier, up: &Up) -> Result<RemoteObject> {
    let image = image_of(inner, up)?;
    let size = image.len() as u64;
    let hash = *blake3::hash(&image).as_bytes();
    let etag = tier.client.put(&up.key, Bytes::from(image))?;
    test_pause();
    let (len, back) = tier.client.hash(&up.key)?;
    if len != size || back != hash {
        let _ = tier.client.delete(&up.key);
        return Err(StoreError::Corrupt {
            what: format!(
                "volume {:016x}: the copy read back from {} does not match what was written",
                up.id,
                tier.describe(&up.key)
            ),
        });
    }
    Ok(RemoteObject {
        key: up.key.clone(),
        size,
        etag,
        blake3: hash,
    })
}

/// Moves the sealed local volumes of `batch` (with their live blobs) to the remote tier, the
/// uploads at most the tier's `jobs` at once. A volume not eligible (open, already remote,
/// gone) moves 0 bytes. An error of the whole batch (its intents not saved) moved nothing.
pub(crate) fn tier_volumes(
    inner: &Inner,
    tier: &Tier,
    batch: &[(u64, Vec<BlobLocation>)],
) -> Result<Batch> {
    let _busy = inner.maintenance();
    resolve(inner, tier)?;
    let mut out = Batch::default();
    let mut todo = Vec::new();
    for (id, blobs) in batch {
        match inner.disks.record(*id) {
            Some(rec)
                if rec.state == VolumeState::Sealed && !matches!(rec.layout, Layout::Remote(_)) =>
            {
                todo.push(Up {
                    id: *id,
                    rec,
                    blobs: blobs.clone(),
                    key: object_key(&tier.record.prefix, *id),
                })
            }
            _ => out.results.push((*id, Ok(0))),
        }
    }
    if todo.is_empty() {
        return Ok(out);
    }
    let intent = |u: &Up| Intent {
        volume: u.id,
        up: true,
        key: u.key.clone(),
        local: u.rec.layout.clone(),
    };
    save_intents(inner, &todo.iter().map(intent).collect::<Vec<_>>())?;
    let gauge = Gauge::default();
    let uploaded = parallel(tier.record.jobs(), &todo, |u| {
        gauge.during(|| upload(inner, tier, u))
    });
    out.peak = gauge.peak.load(Ordering::SeqCst);
    // Commit one by one; what fails keeps its intent (resolve deletes its object).
    let mut left = Vec::new();
    let mut committed = Vec::new();
    for (u, r) in todo.iter().zip(uploaded) {
        let r = r.and_then(|obj| {
            let tiered = VolumeRecord {
                layout: Layout::Remote(obj),
                ..u.rec.clone()
            };
            // Only once the remote layout is durable may the local files go.
            VolumeCatalog::save_volume_durably(&inner.meta, &tiered)?;
            inner.disks.set_record(tiered);
            Ok(())
        });
        match r {
            Ok(()) => committed.push(u),
            Err(e) => {
                left.push(intent(u));
                out.results.push((u.id, Err(e)));
            }
        }
    }
    if !committed.is_empty() {
        test_pause();
    }
    for u in committed {
        inner.disks.forget_handles(u.id);
        inner.disks.remove_files(&u.rec);
        out.results
            .push((u.id, Ok(u.rec.size.max(VOLUME_HEADER_LEN))));
    }
    save_intents(inner, &left)?;
    Ok(out)
}

/// One volume of a recall batch.
struct Down {
    id: u64,
    rec: VolumeRecord,
    obj: RemoteObject,
    local: Layout,
    disks: Vec<u32>,
}

/// Downloads one volume, checks it and writes its replica files (fsynced).
fn download(inner: &Inner, tier: &Tier, d: &Down) -> Result<()> {
    let bytes = tier.client.get(&d.obj.key)?;
    if bytes.len() as u64 != d.obj.size || *blake3::hash(&bytes).as_bytes() != d.obj.blake3 {
        return Err(StoreError::Corrupt {
            what: format!(
                "volume {:016x}: {} does not match its recorded BLAKE3; not recalled",
                d.id,
                tier.describe(&d.obj.key)
            ),
        });
    }
    for &disk in &d.disks {
        let path = inner.disks.file_path(d.id, disk, FileKind::Replica);
        let ctx = |e| StoreError::io(format!("recalling into {}", path.display()), e);
        let f = std::fs::File::create(&path).map_err(ctx)?;
        std::io::Write::write_all(&mut &f, &bytes).map_err(ctx)?;
        f.sync_all().map_err(ctx)?;
        volume::sync_dir(&inner.disks.path(disk))?;
    }
    Ok(())
}

/// Brings the tiered volumes `ids` back to local replica files, at most the tier's `jobs` at
/// once (downloads, then the deletions of the objects). Per volume: the bytes downloaded (0
/// when it is not remote) or why it failed.
pub(crate) fn recall_volumes(inner: &Inner, tier: &Tier, ids: &[u64]) -> Result<Batch> {
    let _busy = inner.maintenance();
    resolve(inner, tier)?;
    let mut out = Batch::default();
    let mut todo = Vec::new();
    for &id in ids {
        let Some(rec) = inner.disks.record(id) else {
            out.results.push((id, Ok(0)));
            continue;
        };
        let Layout::Remote(obj) = rec.layout.clone() else {
            out.results.push((id, Ok(0)));
            continue;
        };
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
        todo.push(Down {
            id,
            rec,
            obj,
            local,
            disks,
        });
    }
    if todo.is_empty() {
        return Ok(out);
    }
    let intent = |d: &Down| Intent {
        volume: d.id,
        up: false,
        key: d.obj.key.clone(),
        local: d.local.clone(),
    };
    save_intents(inner, &todo.iter().map(intent).collect::<Vec<_>>())?;
    let gauge = Gauge::default();
    let downloaded = parallel(tier.record.jobs(), &todo, |d| {
        gauge.during(|| download(inner, tier, d))
    });
    out.peak = gauge.peak.load(Ordering::SeqCst);
    // Commit one by one; what fails keeps its intent (resolve deletes its partial replicas).
    let mut left = Vec::new();
    let mut committed = Vec::new();
    for (d, r) in todo.iter().zip(downloaded) {
        let r = r.and_then(|()| {
            let back = VolumeRecord {
                layout: d.local.clone(),
                verified_at: volume::now_nanos(),
                ..d.rec.clone()
            };
            VolumeCatalog::save_volume_durably(&inner.meta, &back)?;
            inner.disks.set_record(back);
            tier.cache.remove_volume(d.id);
            Ok(())
        });
        match r {
            Ok(()) => committed.push(d),
            Err(e) => {
                left.push(intent(d));
                out.results.push((d.id, Err(e)));
            }
        }
    }
    if !committed.is_empty() {
        test_pause();
    }
    // The objects go last, in parallel; one that stays keeps its intent.
    let deleted = parallel(tier.record.jobs(), &committed, |d| {
        tier.client.delete(&d.obj.key)
    });
    for (d, r) in committed.iter().zip(deleted) {
        if r.is_err() {
            left.push(intent(d));
        }
        out.results.push((d.id, Ok(d.obj.size)));
    }
    save_intents(inner, &left)?;
    Ok(out)
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

    #[test]
    fn intents_of_earlier_builds_read_as_lists() {
        let i = Intent {
            volume: 9,
            up: true,
            key: "k".into(),
            local: Layout::Replicated { disks: vec![0, 1] },
        };
        // Earlier builds saved an `Option<Intent>`.
        let old_some = postcard::to_stdvec(&Some(i.clone())).unwrap();
        let old_none = postcard::to_stdvec(&None::<Intent>).unwrap();
        let read = |b: &[u8]| postcard::from_bytes::<Vec<Intent>>(b).unwrap();
        assert_eq!(read(&old_some), vec![i.clone()]);
        assert!(read(&old_none).is_empty());
        assert_eq!(postcard::to_stdvec(&vec![i.clone()]).unwrap(), old_some);
        let two = vec![i.clone(), Intent { volume: 10, ..i }];
        assert_eq!(read(&postcard::to_stdvec(&two).unwrap()), two);
    }
}
