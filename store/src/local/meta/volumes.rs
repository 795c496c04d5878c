//! The volume and blob tables of the metadata: volume records, blob records grouped by volume,
//! and the changes the daemons make to them (reclaiming unreferenced blobs, pointing blobs at
//! their new place after compaction, swapping a remote volume for its compacted copy). Apart
//! from `mod.rs` because these are the daemons' rows, not the commits of objects.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;

use super::batch::Prefetched;
use super::blob_pages::{page_of, parse_page_key, BlobPage, PageEdits};
use super::rollup::Event;
use super::{table, volume_key, BlobRow, Meta, Txn};
use crate::error::Result;
use crate::local::disks::VolumeCatalog;
use crate::local::records::*;
use crate::local::volume::BlobLocation;

impl Meta {
    pub fn volumes(&self) -> Result<Vec<VolumeRecord>> {
        let mut out = Vec::new();
        for row in self.scan_prefix([table::VOLUME]) {
            let (_, v) = row?;
            out.push(decode(&v)?);
        }
        Ok(out)
    }

    /// Every blob record, grouped by volume: (location, reference count, freed_at).
    pub fn blobs_by_volume(&self) -> Result<HashMap<u64, Vec<BlobRow>>> {
        let mut out: HashMap<u64, Vec<BlobRow>> = HashMap::new();
        for row in self.scan_prefix([table::BLOB_PAGE]) {
            let (k, v) = row?;
            let page = parse_page_key(&k)?;
            let p: BlobPage = decode(&v)?;
            for (blob, b) in p.iter(page) {
                out.entry(b.volume).or_default().push((
                    BlobLocation {
                        blob,
                        volume: b.volume,
                        offset: b.offset,
                        len: b.len,
                        block_size: b.block_size,
                    },
                    b.refs,
                    b.freed_at,
                ));
            }
        }
        for v in out.values_mut() {
            v.sort_by_key(|(l, _, _)| l.offset);
        }
        Ok(out)
    }

    /// Removes the records of blobs nobody references any more, freed before `cutoff` (ns).
    /// Returns (records removed, data bytes they held).
    pub fn reclaim_blobs(&self, cutoff: u64) -> Result<(u64, u64)> {
        let _state = self.lock();
        let mut txn = Txn::new();
        let (mut n, mut bytes) = (0, 0);
        for row in self.scan_prefix([table::BLOB_PAGE]) {
            let (k, v) = row?;
            let mut p: BlobPage = decode(&v)?;
            let before = p.blobs.len();
            p.blobs.retain(|(_, b)| {
                let gone = b.refs == 0 && b.freed_at != 0 && b.freed_at <= cutoff;
                if gone {
                    n += 1;
                    bytes += b.len;
                }
                !gone
            });
            if p.blobs.len() == before {
                continue;
            }
            if p.blobs.is_empty() {
                txn.remove(k);
            } else {
                txn.insert(k, encode(&p)?);
            }
        }
        self.write_rows(txn)?;
        Ok((n, bytes))
    }

    /// Points the blobs compaction copied from volume `from` into volume `to` at their new
    /// place ((blob, offset in `to`)), and gives `to` the lineage of `from` (in the same
    /// batch, so the per-prefix stored rows stay right: see [`super::rollup`]). Durable when
    /// it returns (the caller synced the copies first). Blobs removed or moved meanwhile are
    /// skipped.
    pub fn relocate_blobs(&self, from: u64, to: u64, moves: &[(u64, u64)]) -> Result<()> {
        {
            let _state = self.lock();
            let mut txn = Txn::new();
            let mut pages = PageEdits::default();
            for &(blob, offset) in moves {
                self.relocate(&mut pages, blob, from, to, offset)?;
            }
            pages.write(self, &mut txn)?;
            let lineage = self.lineage_of(from)?;
            txn.insert(lineage_key(to), encode(&lineage)?);
            self.write_rows(txn)?;
            self.set_lineage(to, lineage);
        }
        self.tables.sync()
    }

    /// Moves blob `blob` to (`to`, `offset`) in `pages` if it is still in `from` (returns
    /// whether it did).
    fn relocate(
        &self,
        pages: &mut PageEdits,
        blob: u64,
        from: u64,
        to: u64,
        offset: u64,
    ) -> Result<bool> {
        let (page, slot) = page_of(blob);
        let p = pages.page(self, &Prefetched::new(), page)?;
        if let Some(mut rec) = p.get(slot).cloned() {
            if rec.volume == from {
                rec.volume = to;
                rec.offset = offset;
                p.set(slot, rec);
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Replaces volume `old` by `new` in one durable batch (remote compaction): each blob of
    /// `moves` (blob, offset in `new`) still in `old` points at `new`, `new`'s record is
    /// added and `old`'s removed.
    pub fn swap_volume(&self, moves: &[(u64, u64)], old: u64, new: &VolumeRecord) -> Result<()> {
        {
            let _state = self.lock();
            let mut txn = Txn::new();
            let mut pages = PageEdits::default();
            for &(blob, offset) in moves {
                self.relocate(&mut pages, blob, old, new.id, offset)?;
            }
            pages.write(self, &mut txn)?;
            let lineage = self.lineage_of(old)?;
            txn.insert(volume_key(new.id), encode(new)?);
            txn.insert(lineage_key(new.id), encode(&lineage)?);
            txn.remove(volume_key(old));
            txn.remove(lineage_key(old));
            self.write_rows(txn)?;
            self.set_lineage(new.id, lineage);
            self.forget_lineage(old);
        }
        self.tables.sync()
    }

    /// Starts noting the blobs whose reference counts any commit changes (for a repack:
    /// [`Meta::repack_blobs`] moves only blobs no commit touched since). False when a watch is
    /// already on.
    pub(crate) fn watch_refs(&self) -> bool {
        let _state = self.lock();
        let mut w = super::lock_map_set(&self.ref_watch);
        if w.is_some() {
            return false;
        }
        *w = Some(HashSet::new());
        self.watching.store(true, Ordering::SeqCst);
        true
    }

    /// Ends the watch (a repack that commits nothing).
    pub(crate) fn unwatch_refs(&self) {
        let _state = self.lock();
        self.watching.store(false, Ordering::SeqCst);
        *super::lock_map_set(&self.ref_watch) = None;
    }

    /// Commits a repack of one or more volumes, each `(from, to, moves)`: the blobs copied
    /// from volume `from` into the new volume `to` ((blob, offset in `to`)) point at it, except
    /// those whose references changed since [`Meta::watch_refs`] (or that left `from`), and the
    /// bytes of the versions that reference a moved blob (`refs`: blob -> (key, extent bytes),
    /// as of a view taken after the watch began, so exact for every blob no commit touched
    /// since) move from `from`'s lineage to `to`'s in the per-prefix rows. One log record; ends
    /// the watch; durable when it returns. Returns the blobs moved, per volume.
    pub(crate) fn repack_blobs(
        &self,
        groups: &[RepackGroup],
        refs: &HashMap<u64, Vec<(String, u64)>>,
    ) -> Result<Vec<Vec<u64>>> {
        let moved = {
            let _state = self.lock();
            self.watching.store(false, Ordering::SeqCst);
            let changed = super::lock_map_set(&self.ref_watch)
                .take()
                .unwrap_or_default();
            let mut txn = Txn::new();
            let mut pages = PageEdits::default();
            let mut out = Vec::with_capacity(groups.len());
            for (from, to, moves) in groups {
                let (src, dst) = (self.lineage_of(*from)?, self.lineage_of(*to)?);
                let mut moved = Vec::new();
                for &(blob, offset) in moves {
                    if changed.contains(&blob)
                        || !self.relocate(&mut pages, blob, *from, *to, offset)?
                    {
                        continue;
                    }
                    moved.push(blob);
                    for (key, bytes) in refs.get(&blob).into_iter().flatten() {
                        txn.events.push(Event::StoredIn {
                            key: key.clone(),
                            lineage: src,
                            bytes: -(*bytes as i64),
                        });
                        txn.events.push(Event::StoredIn {
                            key: key.clone(),
                            lineage: dst,
                            bytes: *bytes as i64,
                        });
                    }
                }
                out.push(moved);
            }
            pages.write(self, &mut txn)?;
            self.write_rows(txn)?;
            out
        };
        self.tables.sync()?;
        Ok(moved)
    }

    /// The lineage of volume `id` ([`table::LINEAGE`]): the volume its blobs were first
    /// written to. Read once per volume, then remembered (a volume's lineage never changes:
    /// it is written before any version references a blob in the volume).
    pub(crate) fn lineage_of(&self, id: u64) -> Result<u64> {
        if let Some(&l) = super::lock_map(&self.lineages).get(&id) {
            return Ok(l);
        }
        let l = self.get::<u64>(&lineage_key(id))?.unwrap_or(id);
        super::lock_map(&self.lineages).insert(id, l);
        Ok(l)
    }

    fn set_lineage(&self, id: u64, lineage: u64) {
        super::lock_map(&self.lineages).insert(id, lineage);
    }

    fn forget_lineage(&self, id: u64) {
        super::lock_map(&self.lineages).remove(&id);
    }

    /// A view of the metadata as of one commit (for a scan that must not hold the commit
    /// lock: see [`super::pinned`]).
    pub(crate) fn pinned(&self) -> super::pinned::Pinned<'_> {
        self.tables.pin()
    }

    /// Every volume made by compaction and its lineage (the `L` table).
    pub fn lineages(&self) -> Result<HashMap<u64, u64>> {
        let mut out = HashMap::new();
        for row in self.scan_prefix([table::LINEAGE]) {
            let (k, v) = row?;
            out.insert(lineage_id(&k)?, decode(&v)?);
        }
        Ok(out)
    }
}

/// One volume of a repack: (from, to, (blob, offset in `to`) of each blob copied).
pub(crate) type RepackGroup = (u64, u64, Vec<(u64, u64)>);

/// The volume id of an `L` row key.
pub(super) fn lineage_id(k: &[u8]) -> Result<u64> {
    k.get(1..9)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| crate::StoreError::Corrupt {
            what: format!("malformed lineage row key {k:?}"),
        })
}

impl VolumeCatalog for Meta {
    fn new_volume_id(&self) -> Result<u64> {
        self.next_id()
    }

    fn save_volume(&self, rec: &VolumeRecord) -> Result<()> {
        let mut txn = Txn::new();
        txn.insert(volume_key(rec.id), encode(rec)?);
        self.write_rows(txn)
    }

    fn save_volume_durably(&self, rec: &VolumeRecord) -> Result<()> {
        self.save_volume(rec)?;
        self.tables.sync()
    }

    fn remove_volume(&self, id: u64) -> Result<()> {
        let mut txn = Txn::new();
        txn.remove(volume_key(id));
        txn.remove(lineage_key(id));
        self.write_rows(txn)?;
        self.forget_lineage(id);
        self.tables.sync()
    }
}
