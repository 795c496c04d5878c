//! The `du` figures no rollup carries, counted on demand from a scan of one prefix's versions
//! (`objfs du --placement`): bytes per tier (local replicated, local erasure-coded, remote)
//! and bytes that only named snapshots keep.
//!
//! Why a scan: data moves between tiers a volume at a time (placement, tiering, recall) and
//! blobs move between volumes by compaction, and nothing maps a blob back to the keys that
//! reference it, so a volume's move cannot update per-prefix rows; and "kept only by a
//! snapshot" depends on the retention policy at the present moment, not only on commits. The
//! scan reads a [`Pinned`] view (one commit's rows, no commit lock held), decodes every
//! version under the prefix with its extents, looks up each extent's blob and the blob's
//! volume, and asks the retention decision ([`Expiry`]) which versions only snapshots keep.
//! It costs a read of every version under the prefix: opt-in, never part of plain `du`.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::blob_pages::{page_key, page_of, BlobPage};
use super::pinned::Pinned;
use super::rollup::ancestors;
use super::Meta;
use crate::error::Result;
use crate::history::retention::{Decision, Expiry, Keep, VersionFacts};
use crate::key::prefix_successor;
use crate::local::records::{
    decode, parse_version_key, table, BlobRecord, Extent, Layout, VersionRecord, VolumeRecord,
};
use crate::local::version::LocalVersion;

/// Where one prefix's version bytes are, and what only snapshots keep of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Placement {
    /// Bytes of versions (live and noncurrent) in volumes kept as whole local copies
    /// (open volumes included).
    pub local_replicated_bytes: u64,
    /// Bytes of versions in volumes erasure-coded by placement.
    pub local_erasure_coded_bytes: u64,
    /// Bytes of versions in volumes moved to the remote tier.
    pub remote_bytes: u64,
    /// Bytes of holes (zeros stored nowhere).
    pub hole_bytes: u64,
    /// Noncurrent versions the retention policy would expire but a named snapshot sees, and
    /// their bytes (each version's size; blobs shared with other versions count in full).
    pub snapshot_only_versions: u64,
    pub snapshot_only_bytes: u64,
}

/// One version of the key being read.
struct Row {
    vid: LocalVersion,
    rec: VersionRecord,
}

/// The scan of one prefix: its shown prefixes' figures, filled key by key.
struct Scan<'v> {
    view: &'v Pinned<'v>,
    /// Volume id -> layout, as of the view.
    layouts: HashMap<u64, Layout>,
    /// The asked prefix; prefixes up to `depth` levels below it are shown.
    prefix: &'v str,
    depth: usize,
    expiry: &'v Expiry,
    out: BTreeMap<String, Placement>,
}

impl Scan<'_> {
    /// The shown prefixes `key` counts under: the asked prefix and up to `depth` levels below.
    fn shown(&self, key: &str) -> Vec<String> {
        let base = self.prefix.matches('/').count();
        ancestors(key)
            .filter(|a| a.starts_with(self.prefix) && a.matches('/').count() <= base + self.depth)
            .map(str::to_string)
            .collect()
    }

    fn blob(&self, id: u64) -> Result<Option<BlobRecord>> {
        let (page, slot) = page_of(id);
        let k = page_key(page);
        let end = prefix_successor(&k);
        match self.view.range(k.to_vec(), end).next() {
            Some(row) => {
                let (rk, v) = row?;
                if rk[..] != k[..] {
                    return Ok(None);
                }
                Ok(decode::<BlobPage>(&v)?.get(slot).cloned())
            }
            None => Ok(None),
        }
    }

    /// Adds one key's versions (newest first).
    fn key(&mut self, key: &str, rows: &[Row]) -> Result<()> {
        let mut p = Placement::default();
        for r in rows.iter().filter(|r| !r.rec.delete_marker) {
            for e in &r.rec.extents {
                self.extent(e, &mut p)?;
            }
        }
        let facts: Vec<VersionFacts> = rows
            .iter()
            .map(|r| VersionFacts {
                modified: r.vid.time(),
                delete_marker: r.rec.delete_marker,
            })
            .collect();
        for (r, d) in rows.iter().zip(self.expiry.decide(&facts)) {
            if !r.rec.delete_marker && matches!(d, Decision::Keep(Keep::Snapshot { .. })) {
                p.snapshot_only_versions += 1;
                p.snapshot_only_bytes += r.rec.size;
            }
        }
        for s in self.shown(key) {
            let t = self.out.entry(s).or_default();
            t.local_replicated_bytes += p.local_replicated_bytes;
            t.local_erasure_coded_bytes += p.local_erasure_coded_bytes;
            t.remote_bytes += p.remote_bytes;
            t.hole_bytes += p.hole_bytes;
            t.snapshot_only_versions += p.snapshot_only_versions;
            t.snapshot_only_bytes += p.snapshot_only_bytes;
        }
        Ok(())
    }

    fn extent(&self, e: &Extent, p: &mut Placement) -> Result<()> {
        let Some(blob) = e.blob_id() else {
            p.hole_bytes += e.len;
            return Ok(());
        };
        let rec = self.blob(blob)?.ok_or_else(|| crate::StoreError::Corrupt {
            what: format!("blob {blob} is referenced but has no record"),
        })?;
        match self.layouts.get(&rec.volume) {
            Some(Layout::Erasure { .. }) => p.local_erasure_coded_bytes += e.len,
            Some(Layout::Remote(_)) => p.remote_bytes += e.len,
            // Replicated, and volumes without a record yet (being created).
            _ => p.local_replicated_bytes += e.len,
        }
        Ok(())
    }
}

impl Meta {
    /// Bytes per tier and bytes only snapshots keep, for `prefix` and each prefix up to
    /// `depth` levels below it that holds a version, from a scan of every version under
    /// `prefix` as of one commit; `expiry` is the retention decision at the present moment.
    pub fn placement_scan(
        &self,
        prefix: &str,
        depth: usize,
        expiry: &Expiry,
    ) -> Result<BTreeMap<String, Placement>> {
        let view = self.tables.pin();
        let mut layouts = HashMap::new();
        for row in view.range(vec![table::VOLUME], Some(vec![table::VOLUME + 1])) {
            let (_, v) = row?;
            let rec: VolumeRecord = decode(&v)?;
            layouts.insert(rec.id, rec.layout);
        }
        let mut scan = Scan {
            view: &view,
            layouts,
            prefix,
            depth,
            expiry,
            out: BTreeMap::new(),
        };
        let mut start = vec![table::VERSION];
        start.extend_from_slice(prefix.as_bytes());
        let end = prefix_successor(&start);
        let mut key: Option<String> = None;
        let mut rows: Vec<Row> = Vec::new();
        for row in view.range(start, end) {
            let (k, v) = row?;
            let (kname, vid) = parse_version_key(&k)?;
            if key.as_deref() != Some(kname) {
                if let Some(done) = key.take() {
                    scan.key(&done, &rows)?;
                }
                rows.clear();
                key = Some(kname.to_string());
            }
            rows.push(Row {
                vid,
                rec: decode(&v)?,
            });
        }
        if let Some(done) = key {
            scan.key(&done, &rows)?;
        }
        Ok(scan.out)
    }
}
