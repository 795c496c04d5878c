//! Scrubbing the remote tier: the scrub worker (local/scrub.rs) hands each tiered volume to
//! [`scrub_volume`], which reads it back from the bucket (bypassing the read cache) and checks
//! it, and repairs what it can.
//!
//! * **Full** ([`RemoteScrub::full`]): the whole object is read, its length and BLAKE3 checked
//!   against the volume record, and every live blob region against its header and block
//!   checksums.
//! * **Sampled** (otherwise): a share of the volume's live blob regions ([`sample`]) is read with
//!   ranged GETs and verified; a region that fails, or a missing object, turns the check of that
//!   volume into a full one.
//!
//! Reads are held under a bandwidth cap ([`Throttle`]). A remote that does not answer counts
//! the volume `offline` (not checked), like a copy on an offline disk.
//!
//! **Repair.** A tiered volume has no other copy: its local files were deleted when it moved.
//! What can be repaired is an object whose live blob regions can all still be had verified,
//! each from the object itself or from the tier's read cache (64 KiB chunks of earlier reads,
//! trusted only through the blob checksums): the object is rebuilt ([`rebuild_image`]: header,
//! the live regions at their offsets, zeros elsewhere), uploaded again under its key, read back
//! and checked, and the volume record takes its new BLAKE3 and ETag (durably). Damage outside
//! the live blobs (garbage, the header) is always repairable that way; a missing object only
//! when the cache holds every live region. Anything else is unrepairable: counted, logged and
//! reported with the object's key, and left as it is (the blobs that still verify stay
//! readable).

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::error::{Result, StoreError};
use crate::local::disks::VolumeCatalog;
use crate::local::records::{Layout, RemoteObject, VolumeRecord};
use crate::local::scrub::ScrubReport;
use crate::local::tier::cache::{ChunkKey, CHUNK};
use crate::local::tier::remote::chunks;
use crate::local::tier::Tier;
use crate::local::volume::{blob_disk_len, verify_region, volume_header, BlobLocation};
use crate::local::Inner;

/// How scrub checks the remote tier.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteScrub {
    /// Read every tiered volume whole and check its BLAKE3 (else: sample).
    pub full: bool,
    /// With `full` false: the share of each volume's live blobs read back (0 skips remote
    /// data; any share above 0 reads at least one blob of each volume).
    pub sample: f64,
    /// Bytes per second the remote reads of a pass may average (0: no cap).
    pub bandwidth: u64,
}

impl Default for RemoteScrub {
    fn default() -> Self {
        RemoteScrub {
            full: false,
            sample: 0.05,
            bandwidth: 16 << 20,
        }
    }
}

/// How long to wait before more reads so that `bytes` read over `elapsed` average at most
/// `cap` bytes per second (0: no cap).
pub fn throttle_delay(bytes: u64, elapsed: Duration, cap: u64) -> Duration {
    if cap == 0 {
        return Duration::ZERO;
    }
    let due = Duration::from_secs_f64(bytes as f64 / cap as f64);
    due.saturating_sub(elapsed)
}

/// Holds a pass's remote reads under its bandwidth cap.
pub struct Throttle {
    cap: u64,
    started: Instant,
    bytes: u64,
}

impl Throttle {
    pub fn new(cap: u64) -> Self {
        Throttle {
            cap,
            started: Instant::now(),
            bytes: 0,
        }
    }

    /// Counts `n` bytes read and sleeps as long as the cap asks.
    pub fn account(&mut self, n: u64) {
        self.bytes += n;
        let d = throttle_delay(self.bytes, self.started.elapsed(), self.cap);
        if !d.is_zero() {
            std::thread::sleep(d);
        }
    }
}

/// The live blobs a sampled check reads: those whose (seeded) hash falls in the first
/// `share` of the hash space, and at least one when `share` > 0 and there are any.
pub fn sample(locs: &[BlobLocation], share: f64, seed: u64) -> Vec<BlobLocation> {
    if share <= 0.0 || locs.is_empty() {
        return Vec::new();
    }
    if share >= 1.0 {
        return locs.to_vec();
    }
    let score = |l: &BlobLocation| {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&seed.to_le_bytes());
        b[8..].copy_from_slice(&l.blob.to_le_bytes());
        let h = blake3::hash(&b);
        let mut x = [0u8; 8];
        x.copy_from_slice(&h.as_bytes()[..8]);
        u64::from_le_bytes(x) as f64 / u64::MAX as f64
    };
    let mut scored: Vec<(f64, BlobLocation)> = locs.iter().map(|l| (score(l), *l)).collect();
    scored.sort_by(|a, b| a.0.total_cmp(&b.0));
    let picked: Vec<BlobLocation> = scored
        .iter()
        .filter(|(s, _)| *s < share)
        .map(|(_, l)| *l)
        .collect();
    if picked.is_empty() {
        scored.first().map(|(_, l)| vec![*l]).unwrap_or_default()
    } else {
        picked
    }
}

/// A volume's object rebuilt from its live blob regions: the volume header, each region at
/// its offset, zeros elsewhere, `size` bytes.
pub fn rebuild_image(
    id: u64,
    created: u64,
    size: u64,
    regions: &[(BlobLocation, Vec<u8>)],
) -> Result<Vec<u8>> {
    let mut image = vec![0u8; size as usize];
    let header = volume_header(id, created);
    let Some(h) = image.get_mut(..header.len()) else {
        return Err(StoreError::Corrupt {
            what: format!("volume {id:016x} is shorter than its header"),
        });
    };
    h.copy_from_slice(&header);
    for (loc, region) in regions {
        let at = loc.offset as usize;
        let Some(dst) = image.get_mut(at..at + region.len()) else {
            return Err(StoreError::Corrupt {
                what: format!("blob {} lies outside volume {id:016x}", loc.blob),
            });
        };
        dst.copy_from_slice(region);
    }
    Ok(image)
}

/// What checking one tiered volume found and did, and the object's key when it is damaged
/// beyond repair.
#[derive(Debug, Default)]
pub struct VolumeOutcome {
    pub report: ScrubReport,
    pub unrepairable: Option<String>,
}

/// A region of the object's bytes, verified.
fn region_of(bytes: &[u8], loc: &BlobLocation) -> Option<Vec<u8>> {
    let len = blob_disk_len(loc.len, loc.block_size) as usize;
    let at = loc.offset as usize;
    let r = bytes.get(at..at + len)?;
    verify_region(r, loc).then(|| r.to_vec())
}

/// A blob region assembled from the tier cache's chunks only (no request), verified.
fn cached_region(tier: &Tier, id: u64, obj: &RemoteObject, loc: &BlobLocation) -> Option<Vec<u8>> {
    let len = blob_disk_len(loc.len, loc.block_size);
    let range = loc.offset..loc.offset + len;
    let mut out = vec![0u8; len as usize];
    for i in chunks(range.clone()) {
        let start = (i * CHUNK).max(range.start);
        let end = ((i + 1) * CHUNK).min(range.end);
        let dst = out.get_mut((start - range.start) as usize..(end - range.start) as usize)?;
        if !tier
            .cache
            .read(ChunkKey::new(id, &obj.blake3, i), start - i * CHUNK, dst)
        {
            return None;
        }
    }
    verify_region(&out, loc).then_some(out)
}

/// What a failed remote read means: the object is missing (`None`), the remote does not
/// answer (`Some(true)`), or something else went wrong (`Some(false)`).
fn missing_or_offline(e: &StoreError) -> Option<bool> {
    match e {
        StoreError::NotFound { .. } => None,
        StoreError::Unavailable { .. } | StoreError::Throttled { .. } | StoreError::Io { .. } => {
            Some(true)
        }
        StoreError::Backend { .. } => Some(true),
        _ => Some(false),
    }
}

/// Checks tiered volume `rec` (live blobs `locs`) and repairs it if it can.
pub(crate) fn scrub_volume(
    inner: &Inner,
    rec: &VolumeRecord,
    locs: &[BlobLocation],
    opts: &RemoteScrub,
    throttle: &mut Throttle,
    seed: u64,
) -> Result<VolumeOutcome> {
    let Layout::Remote(obj) = &rec.layout else {
        return Ok(VolumeOutcome::default());
    };
    let offline = || VolumeOutcome {
        report: ScrubReport {
            offline: 1,
            ..Default::default()
        },
        unrepairable: None,
    };
    let Some(tier) = inner.disks.tier() else {
        return Ok(offline());
    };
    if !opts.full {
        if opts.sample <= 0.0 {
            return Ok(VolumeOutcome::default());
        }
        let mut checked = 0;
        let mut whole = true;
        for loc in sample(locs, opts.sample, seed) {
            let len = blob_disk_len(loc.len, loc.block_size);
            match tier
                .client
                .get_range(&obj.key, loc.offset..loc.offset + len)
            {
                Ok(b) => {
                    throttle.account(len);
                    checked += len;
                    if !verify_region(&b, &loc) {
                        whole = false;
                        break;
                    }
                }
                Err(e) => match missing_or_offline(&e) {
                    Some(true) => return Ok(offline()),
                    // Missing, or a short object (Corrupt): check it whole.
                    _ => {
                        whole = false;
                        break;
                    }
                },
            }
        }
        if whole {
            return Ok(VolumeOutcome {
                report: ScrubReport {
                    bytes_checked: checked,
                    ..Default::default()
                },
                unrepairable: None,
            });
        }
    }
    full_check(inner, &tier, rec, obj, locs, throttle)
}

/// Reads the whole object, checks it, and rebuilds it when it can.
fn full_check(
    inner: &Inner,
    tier: &Tier,
    rec: &VolumeRecord,
    obj: &RemoteObject,
    locs: &[BlobLocation],
    throttle: &mut Throttle,
) -> Result<VolumeOutcome> {
    let got = match tier.client.get(&obj.key) {
        Ok(b) => {
            throttle.account(b.len() as u64);
            Some(b)
        }
        Err(e) => match missing_or_offline(&e) {
            None => None,
            Some(true) => {
                return Ok(VolumeOutcome {
                    report: ScrubReport {
                        offline: 1,
                        ..Default::default()
                    },
                    unrepairable: None,
                })
            }
            Some(false) => return Err(e),
        },
    };
    let checked = got.as_ref().map_or(0, |b| b.len() as u64);
    let intact = got
        .as_ref()
        .is_some_and(|b| b.len() as u64 == obj.size && *blake3::hash(b).as_bytes() == obj.blake3);
    let mut report = ScrubReport {
        bytes_checked: checked,
        ..Default::default()
    };
    // Every live region, from the object or else from the cache.
    let mut regions = Vec::with_capacity(locs.len());
    let (mut bad, mut lost) = (0u64, 0u64);
    for loc in locs {
        let from_object = got.as_ref().and_then(|b| region_of(b, loc));
        if from_object.is_none() {
            bad += 1;
        }
        match from_object.or_else(|| cached_region(tier, rec.id, obj, loc)) {
            Some(r) => regions.push((*loc, r)),
            None => lost += 1,
        }
    }
    if intact && bad == 0 {
        return Ok(VolumeOutcome {
            report,
            unrepairable: None,
        });
    }
    // Damage outside every live region still counts once: the object is not what was written.
    report.bad = bad.max(1);
    let what = tier.describe(&obj.key);
    if lost > 0 {
        report.unrepairable = lost;
        report.repaired = report.bad - lost;
        tracing::error!(
            object = %what,
            volume = rec.id,
            blobs_lost = lost,
            missing = got.is_none(),
            "scrub: a remote object is damaged and no good copy of its live blobs is left"
        );
        return Ok(VolumeOutcome {
            report,
            unrepairable: Some(obj.key.clone()),
        });
    }
    rewrite(inner, tier, rec, obj, &regions)?;
    report.repaired = report.bad;
    tracing::warn!(object = %what, volume = rec.id, bad = report.bad, "scrub: rebuilt a damaged remote object");
    Ok(VolumeOutcome {
        report,
        unrepairable: None,
    })
}

/// Uploads the rebuilt object under its key, checks it, and records its new checksum.
fn rewrite(
    inner: &Inner,
    tier: &Tier,
    rec: &VolumeRecord,
    obj: &RemoteObject,
    regions: &[(BlobLocation, Vec<u8>)],
) -> Result<()> {
    let image = rebuild_image(rec.id, rec.created, obj.size, regions)?;
    let hash = *blake3::hash(&image).as_bytes();
    let etag = tier.client.put(&obj.key, Bytes::from(image))?;
    let back = tier.client.get(&obj.key)?;
    if back.len() as u64 != obj.size || *blake3::hash(&back).as_bytes() != hash {
        return Err(StoreError::Corrupt {
            what: format!(
                "volume {:016x}: the rebuilt object read back from {} does not match",
                rec.id,
                tier.describe(&obj.key)
            ),
        });
    }
    // The record may have changed meanwhile (a recall): only a record still naming this object
    // takes the new checksum.
    let Some(cur) = inner.disks.record(rec.id) else {
        return Ok(());
    };
    if cur.layout != rec.layout {
        return Ok(());
    }
    let fixed = VolumeRecord {
        layout: Layout::Remote(RemoteObject {
            key: obj.key.clone(),
            size: obj.size,
            etag,
            blake3: hash,
        }),
        ..cur
    };
    VolumeCatalog::save_volume_durably(&inner.meta, &fixed)?;
    inner.disks.set_record(fixed);
    tier.cache.remove_volume(rec.id);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(blob: u64, offset: u64, len: u64) -> BlobLocation {
        BlobLocation {
            blob,
            volume: 1,
            offset,
            len,
            block_size: 65536,
        }
    }

    #[test]
    fn the_bandwidth_cap_delays_only_reads_ahead_of_it() {
        assert_eq!(throttle_delay(1 << 30, Duration::ZERO, 0), Duration::ZERO);
        assert_eq!(
            throttle_delay(10 << 20, Duration::from_secs(1), 10 << 20),
            Duration::ZERO
        );
        let d = throttle_delay(20 << 20, Duration::from_secs(1), 10 << 20);
        assert!((d.as_secs_f64() - 1.0).abs() < 1e-6, "{d:?}");
        assert_eq!(
            throttle_delay(5 << 20, Duration::from_secs(3), 10 << 20),
            Duration::ZERO
        );
    }

    #[test]
    fn a_sample_takes_its_share_and_never_nothing() {
        let locs: Vec<BlobLocation> = (1..=1000).map(|i| loc(i, i * 100, 10)).collect();
        assert!(sample(&locs, 0.0, 1).is_empty());
        assert_eq!(sample(&locs, 1.0, 1).len(), 1000);
        let s = sample(&locs, 0.1, 7);
        assert!((60..=140).contains(&s.len()), "{}", s.len());
        // Deterministic for a seed, different for another.
        let ids = |v: &[BlobLocation]| v.iter().map(|l| l.blob).collect::<Vec<_>>();
        assert_eq!(ids(&s), ids(&sample(&locs, 0.1, 7)));
        assert_ne!(ids(&s), ids(&sample(&locs, 0.1, 8)));
        // A tiny share still reads one blob of a small volume.
        assert_eq!(sample(&locs[..3], 0.0001, 3).len(), 1);
        assert!(sample(&[], 0.5, 1).is_empty());
    }

    #[test]
    fn a_rebuilt_image_is_header_regions_and_zeros() {
        let regions = vec![
            (loc(5, 64, 1), vec![1u8; 40]),
            (loc(6, 200, 1), vec![2u8; 10]),
        ];
        let img = rebuild_image(9, 77, 300, &regions).unwrap();
        assert_eq!(img.len(), 300);
        assert_eq!(&img[..64], &volume_header(9, 77)[..]);
        assert!(img[64..104].iter().all(|&b| b == 1));
        assert!(img[104..200].iter().all(|&b| b == 0));
        assert!(img[200..210].iter().all(|&b| b == 2));
        assert!(img[210..].iter().all(|&b| b == 0));
        assert!(rebuild_image(9, 77, 205, &regions).is_err());
        assert!(rebuild_image(9, 77, 10, &[]).is_err());
    }
}
