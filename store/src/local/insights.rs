//! Storage insights (`objfs du`): where a local store's bytes are, per prefix, and how old
//! they are, read from the rollups the metadata maintains as it commits
//! ([`crate::local::meta::rollup`]), never from a scan; and the check that recounts them.
//!
//! Histogram rows hold absolute days; this module turns them into ages (days before today)
//! at query time, and the bytes a prefix has in each volume lineage into bytes per tier, by
//! the layout of the lineage's newest volume ([`Tiers`]). What only named snapshots keep is a
//! rollup of what gc's retention pass found for each key on its last visit.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::Result;
use crate::key::validate_prefix;
use crate::local::meta::rollup::{day_of, RollupBucket, RollupTotals, HOLE_LINEAGE};
use crate::local::meta::rollup_scan::PrefixRollup;
use crate::local::records::{Layout, VolumeState};
use crate::local::volume::now_nanos;
use crate::local::{Inner, LocalStore};

/// Age classes shown by `du`, in days: `[lo, hi)`.
pub const AGE_CLASSES: [(u32, Option<u32>, &str); 6] = [
    (0, Some(1), "<1d"),
    (1, Some(7), "1d-7d"),
    (7, Some(30), "7d-30d"),
    (30, Some(90), "30d-90d"),
    (90, Some(365), "90d-1y"),
    (365, None, ">=1y"),
];

/// Live objects and bytes in one age class.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AgeClass {
    pub age: &'static str,
    pub objects: u64,
    pub bytes: u64,
}

/// One prefix's figures.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PrefixUsage {
    pub prefix: String,
    /// Levels below the asked prefix (0 for the prefix itself).
    pub depth: usize,
    /// Live objects and bytes, noncurrent versions and bytes, delete markers, incomplete
    /// multipart uploads of keys under the prefix with their parts and part bytes.
    #[serde(flatten)]
    pub totals: RollupTotals,
    /// Live objects by age since their version was written.
    pub modified: Vec<AgeClass>,
    /// Live objects by age since their last recorded access (relatime).
    pub accessed: Vec<AgeClass>,
    /// Live objects with no recorded access.
    pub never_read_objects: u64,
    pub never_read_bytes: u64,
    /// Bytes of its versions (live and noncurrent) by tier.
    pub tiers: TierBytes,
    /// What only named snapshots keep, as gc's last retention pass over each key found it.
    pub snapshot_only: SnapshotOnly,
}

/// The noncurrent versions of a prefix that the retention policy would expire but a named
/// snapshot sees, and their bytes (each version's size; blobs shared with other versions
/// count in full).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SnapshotOnly {
    pub snapshot_only_versions: u64,
    pub snapshot_only_bytes: u64,
}

/// Where a prefix's version bytes are (each version counts its extents in full, even when
/// it shares blobs with other versions, as after a rename or a copy).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TierBytes {
    /// In volumes kept as whole local copies (the open volume included).
    pub local_replicated_bytes: u64,
    /// In volumes erasure-coded by placement.
    pub local_erasure_coded_bytes: u64,
    /// In volumes moved to the remote tier.
    pub remote_bytes: u64,
    /// Holes: zeros stored nowhere.
    pub hole_bytes: u64,
}

/// Volume lineage -> the layout of its newest volume, which holds its blobs (compaction
/// moves them to a volume with a higher id, then deletes the old one).
pub struct Tiers(HashMap<u64, (u64, Layout)>);

impl Tiers {
    fn of(inner: &Inner) -> Result<Tiers> {
        let lineages = inner.meta.lineages()?;
        let mut out: HashMap<u64, (u64, Layout)> = HashMap::new();
        for v in inner.disks.records() {
            let l = lineages.get(&v.id).copied().unwrap_or(v.id);
            if out.get(&l).is_none_or(|(id, _)| *id < v.id) {
                out.insert(l, (v.id, v.layout));
            }
        }
        Ok(Tiers(out))
    }

    /// A prefix's stored rows as bytes per tier. A lineage with no volume (none should be
    /// left while versions reference it) counts as local and replicated.
    pub fn bytes(&self, stored: &[(u64, u64)]) -> TierBytes {
        let mut t = TierBytes::default();
        for &(l, b) in stored {
            if l == HOLE_LINEAGE {
                t.hole_bytes += b;
                continue;
            }
            match self.0.get(&l).map(|(_, layout)| layout) {
                Some(Layout::Erasure { .. }) => t.local_erasure_coded_bytes += b,
                Some(Layout::Remote(_)) => t.remote_bytes += b,
                _ => t.local_replicated_bytes += b,
            }
        }
        t
    }
}

/// Figures that are not per prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StoreWide {
    /// Sealed volumes kept as whole copies: their reserved bytes (per copy).
    pub replicated_volume_bytes: u64,
    /// Sealed volumes erasure-coded by placement: their reserved bytes (data, not shards).
    pub erasure_coded_volume_bytes: u64,
    /// Volumes still open for appends (their size is known at sealing).
    pub open_volumes: u64,
    /// Sealed volumes moved to the remote tier (`objfs tier`): their bytes.
    pub remote_bytes: u64,
}

/// What `du` answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DuReport {
    pub prefix: String,
    /// The prefix, then the prefixes below it down to the asked depth, in key order.
    pub prefixes: Vec<PrefixUsage>,
    /// The largest prefixes below it by live bytes (when asked).
    pub top: Vec<PrefixUsage>,
    pub store: StoreWide,
    /// Microseconds the rollups took to read.
    pub micros: u64,
}

/// What `du --verify` found.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct VerifyReport {
    pub prefix: String,
    /// Version rows read.
    pub versions: u64,
    /// Rollup rows compared.
    pub rows: u64,
    pub mismatch_count: u64,
    /// The first differences, described.
    pub mismatches: Vec<String>,
    pub seconds: f64,
    pub versions_per_second: f64,
}

fn classes(rows: &[(u32, RollupBucket)], today: u32) -> Vec<AgeClass> {
    let mut out: Vec<AgeClass> = AGE_CLASSES
        .iter()
        .map(|&(_, _, age)| AgeClass {
            age,
            ..Default::default()
        })
        .collect();
    for (day, b) in rows {
        let age = today.saturating_sub(*day);
        let i = AGE_CLASSES
            .iter()
            .position(|&(lo, hi, _)| age >= lo && hi.is_none_or(|h| age < h))
            .unwrap_or(AGE_CLASSES.len() - 1);
        out[i].objects += b.objects;
        out[i].bytes += b.bytes;
    }
    out
}

/// A prefix's figures from its rollup rows, with ages as of `today`.
pub fn usage(r: &PrefixRollup, depth: usize, today: u32, tiers: &Tiers) -> PrefixUsage {
    let t = r.totals;
    let read: (u64, u64) = r
        .accessed
        .iter()
        .fold((0, 0), |a, (_, b)| (a.0 + b.objects, a.1 + b.bytes));
    PrefixUsage {
        prefix: r.prefix.clone(),
        depth,
        totals: t,
        modified: classes(&r.modified, today),
        accessed: classes(&r.accessed, today),
        never_read_objects: t.live_objects.saturating_sub(read.0),
        never_read_bytes: t.live_bytes.saturating_sub(read.1),
        tiers: tiers.bytes(&r.stored),
        snapshot_only: SnapshotOnly {
            snapshot_only_versions: r.snapshot_only.objects,
            snapshot_only_bytes: r.snapshot_only.bytes,
        },
    }
}

impl Inner {
    fn du(&self, prefix: &str, depth: usize, top: usize) -> Result<DuReport> {
        let started = Instant::now();
        let today = day_of(now_nanos());
        let tiers = Tiers::of(self)?;
        let mut prefixes = Vec::new();
        let root = self.meta.rollup(prefix)?.unwrap_or_else(|| PrefixRollup {
            prefix: prefix.to_string(),
            ..Default::default()
        });
        prefixes.push(usage(&root, 0, today, &tiers));
        let mut frontier = vec![prefix.to_string()];
        for level in 1..=depth {
            let mut next = Vec::new();
            for p in &frontier {
                for c in self.meta.rollup_children(p)? {
                    prefixes.push(usage(&c, level, today, &tiers));
                    next.push(c.prefix);
                }
            }
            frontier = next;
        }
        prefixes.sort_by(|a, b| a.prefix.cmp(&b.prefix));
        let mut top_rows = Vec::new();
        if top > 0 {
            let mut all = self.meta.rollup_descendants(prefix)?;
            all.sort_by(|a, b| b.1.live_bytes.cmp(&a.1.live_bytes).then(a.0.cmp(&b.0)));
            for (p, _) in all.into_iter().take(top) {
                if let Some(r) = self.meta.rollup(&p)? {
                    let d = p[prefix.len()..].matches('/').count();
                    top_rows.push(usage(&r, d, today, &tiers));
                }
            }
        }
        let mut store = StoreWide::default();
        for v in self.disks.records() {
            if v.state != VolumeState::Sealed {
                store.open_volumes += 1;
                continue;
            }
            match v.layout {
                Layout::Replicated { .. } => store.replicated_volume_bytes += v.size,
                Layout::Erasure { .. } => store.erasure_coded_volume_bytes += v.size,
                Layout::Remote(_) => store.remote_bytes += v.size,
            }
        }
        Ok(DuReport {
            prefix: prefix.to_string(),
            prefixes,
            top: top_rows,
            store,
            micros: started.elapsed().as_micros() as u64,
        })
    }
}

impl LocalStore {
    /// Per-prefix figures of `prefix` and the prefixes `depth` levels below it, and the `top`
    /// largest prefixes below it (0: none), from the maintained rollups.
    pub fn du(&self, prefix: &str, depth: usize, top: usize) -> Result<DuReport> {
        if !prefix.is_empty() {
            validate_prefix(prefix)?;
        }
        self.inner.du(prefix, depth, top)
    }

    /// Recounts the rollups of `prefix` and below from the versions (in parallel) and
    /// compares them with the maintained ones, both as of one commit. Checkpoints the log
    /// first (so the view it pins copies few rows); commits go on meanwhile, checkpoints wait.
    pub fn verify_rollups(&self, prefix: &str) -> Result<VerifyReport> {
        if !prefix.is_empty() {
            validate_prefix(prefix)?;
        }
        let started = Instant::now();
        self.inner.meta.checkpoint_log(|| self.inner.sync_all())?;
        let c = self.inner.meta.verify_rollups(prefix)?;
        let secs = started
            .elapsed()
            .max(Duration::from_micros(1))
            .as_secs_f64();
        Ok(VerifyReport {
            prefix: prefix.to_string(),
            versions: c.versions,
            rows: c.rows,
            mismatch_count: c.mismatch_count,
            mismatches: c.mismatches,
            seconds: secs,
            versions_per_second: c.versions as f64 / secs,
        })
    }

    /// Removes the rollups and their format row, leaving the store as one written before
    /// them: the next open builds them (tests only).
    #[cfg(feature = "testing")]
    pub fn forget_rollups(&self) -> Result<()> {
        self.inner.meta.forget_rollups()
    }
}
