//! Blob rows grouped in pages: the `B` table.
//!
//! sled 0.34 costs 10 to 13 µs of CPU per inserted row whatever the value's size, so the
//! store keeps the blob records of [`PAGE_BLOBS`] consecutive blob ids in one row (a
//! [`BlobPage`]). Blob ids are handed out in order, so the blobs of puts made one after the
//! other share a page: a commit rewrites the page of each blob it adds or whose reference
//! count it changes, the in-memory tables keep one row per page until a checkpoint, and sled
//! absorbs one page row for up to [`PAGE_BLOBS`] blobs instead of one row each.
//!
//! Every change of a page is a read-modify-write under the commit lock ([`PageEdits`] gathers
//! a transaction's changes so that two blobs of one page in one transaction see each other).
//! Stores written before pages had one `b` row per blob: [`Meta::migrate_blob_rows`] turns
//! them into pages at open (docs/FORMAT.md, "Blob pages").

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use super::batch::Prefetched;
use super::{db::DbResult, Meta, Txn};
use crate::error::{Result, StoreError};
use crate::local::records::{blob_key, decode, encode, table, BlobRecord, InitialFormat};

/// Blob ids per page: blob `id` is slot `id % PAGE_BLOBS` of page `id / PAGE_BLOBS`.
pub const PAGE_BLOBS: u64 = 16;

/// The page holding blob `id`, and its slot there.
pub fn page_of(id: u64) -> (u64, u8) {
    (id / PAGE_BLOBS, (id % PAGE_BLOBS) as u8)
}

/// `B` + page number (u64 BE).
pub fn page_key(page: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = table::BLOB_PAGE;
    k[1..].copy_from_slice(&page.to_be_bytes());
    k
}

/// The page number of a `B` row's key.
pub fn parse_page_key(k: &[u8]) -> Result<u64> {
    let id: [u8; 8] =
        k.get(1..)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| StoreError::Corrupt {
                what: "malformed blob page key".into(),
            })?;
    Ok(u64::from_be_bytes(id))
}

/// The blob records of one page, by slot (ascending, each slot at most once).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobPage {
    pub blobs: Vec<(u8, BlobRecord)>,
}

impl InitialFormat for BlobPage {}

impl BlobPage {
    pub fn get(&self, slot: u8) -> Option<&BlobRecord> {
        self.find(slot).ok().map(|i| &self.blobs[i].1)
    }

    /// The record of blob `id`, which a version or part references (this must be its page):
    /// a missing one is corruption.
    pub fn referenced(&self, id: u64) -> Result<&BlobRecord> {
        self.get(page_of(id).1).ok_or_else(|| StoreError::Corrupt {
            what: format!("blob {id} is referenced but has no record"),
        })
    }

    fn find(&self, slot: u8) -> std::result::Result<usize, usize> {
        self.blobs.binary_search_by_key(&slot, |(s, _)| *s)
    }

    pub fn set(&mut self, slot: u8, rec: BlobRecord) {
        match self.find(slot) {
            Ok(i) => self.blobs[i].1 = rec,
            Err(i) => self.blobs.insert(i, (slot, rec)),
        }
    }

    /// The blobs of page `page`: (blob id, record).
    pub fn iter(&self, page: u64) -> impl Iterator<Item = (u64, &BlobRecord)> {
        self.blobs
            .iter()
            .map(move |(s, r)| (page * PAGE_BLOBS + *s as u64, r))
    }
}

/// The blob record of `id` among a log record's row changes: its page row (or, in a log
/// written before pages, its own `b` row), the last change of that row winning.
pub fn blob_in_ops(ops: &[super::log::Op], id: u64) -> Option<BlobRecord> {
    let (page, slot) = page_of(id);
    let pk = page_key(page);
    let old = blob_key(id);
    let (k, v) = ops
        .iter()
        .rev()
        .find(|(k, _)| k[..] == pk[..] || k[..] == old[..])?;
    let v = v.as_ref()?;
    if k[..] == pk[..] {
        decode::<BlobPage>(v).ok()?.get(slot).cloned()
    } else {
        decode::<BlobRecord>(v).ok()
    }
}

/// The pages one transaction reads or changes, each read once; only the changed ones are
/// written. The rollup's lineage of a blob a commit references again (a rename, a copy) reads
/// the blob's page through here too, so the reference count's change finds it read.
#[derive(Default)]
pub(super) struct PageEdits {
    /// Each page read, and whether the transaction changed it.
    pages: BTreeMap<u64, (BlobPage, bool)>,
}

impl PageEdits {
    /// The page `page` with its changed flag, read (from `pre` when it holds it) the first
    /// time it is asked for.
    fn entry(&mut self, meta: &Meta, pre: &Prefetched, page: u64) -> Result<&mut (BlobPage, bool)> {
        use std::collections::btree_map::Entry;
        Ok(match self.pages.entry(page) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                let p = meta.row::<BlobPage>(pre, &page_key(page))?;
                e.insert((p.unwrap_or_default(), false))
            }
        })
    }

    /// The page `page`, to change (it is written by [`PageEdits::write`]).
    pub fn page(&mut self, meta: &Meta, pre: &Prefetched, page: u64) -> Result<&mut BlobPage> {
        let e = self.entry(meta, pre, page)?;
        e.1 = true;
        Ok(&mut e.0)
    }

    /// The record of blob `id` as its page holds it (read once for the transaction; the
    /// page is not written unless something changes it).
    pub fn blob(&mut self, meta: &Meta, id: u64) -> Result<BlobRecord> {
        let page = &self.entry(meta, &Prefetched::new(), page_of(id).0)?.0;
        page.referenced(id).copied()
    }

    /// Whether page `page` is read already.
    pub fn holds(&self, page: u64) -> bool {
        self.pages.contains_key(&page)
    }

    /// Adds the rows of the changed pages to `txn` (a page left empty is removed).
    pub fn write(self, meta: &Meta, txn: &mut Txn) -> Result<()> {
        for (page, (p, changed)) in self.pages {
            if !changed {
                continue;
            }
            if p.blobs.is_empty() {
                txn.remove(page_key(page));
            } else {
                meta.page_hwm.fetch_max(page + 1, Ordering::Relaxed);
                txn.insert(page_key(page), encode(&p)?);
            }
        }
        Ok(())
    }
}

impl Meta {
    /// Whether page `page` is certainly absent: no blob id of it was handed out before this
    /// open (every id handed out lies below the id lease read at open, [`Meta::next_id`]),
    /// and no commit since wrote it or a page above it. Every write of a page row happens
    /// under the commit lock through [`PageEdits::write`], which raises the mark above it
    /// (gc's reclaim only rewrites or removes pages that exist), so a page that holds a row
    /// is never taken for new; a page below the mark that was never written is merely read.
    pub(super) fn page_is_new(&self, page: u64) -> bool {
        page >= self.page_floor && page >= self.page_hwm.load(Ordering::Relaxed)
    }

    /// Turns the `b` rows of a store written before blob pages into `B` pages, in one sled
    /// batch (atomic: a crash leaves either every `b` row or none), then flushes. Runs at
    /// open after the log's replay, before any commit (the in-memory tables hold no blob rows,
    /// and the rows a replay of an old log put in sled are migrated with the rest). Returns
    /// the number of blob rows migrated.
    pub fn migrate_blob_rows(&self) -> Result<u64> {
        let mut pages: BTreeMap<u64, BlobPage> = BTreeMap::new();
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for row in self.db.scan_prefix([table::BLOB]) {
            let (k, v) = row.db()?;
            let id: [u8; 8] = k[1..].try_into().map_err(|_| StoreError::Corrupt {
                what: "malformed blob row key".into(),
            })?;
            let id = u64::from_be_bytes(id);
            let (page, slot) = page_of(id);
            let rec: BlobRecord = decode(&v)?;
            let p = match pages.entry(page) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(match self.db.get(page_key(page)).db()? {
                        Some(v) => decode(&v)?,
                        None => BlobPage::default(),
                    })
                }
            };
            p.set(slot, rec);
            batch.remove(k);
            n += 1;
        }
        if n == 0 {
            return Ok(0);
        }
        for (page, p) in &pages {
            batch.insert(&page_key(*page)[..], encode(p)?);
        }
        self.db.apply_batch(batch).db()?;
        self.db.flush().db()?;
        Ok(n)
    }
}

#[cfg(test)]
impl Meta {
    /// Commits `ops` through the log as one record (tests: rows an older build logged).
    pub(crate) fn log_rows(&self, ops: Vec<super::log::Op>) -> Result<()> {
        let _state = self.lock();
        let mut txn = Txn::new();
        txn.ops = ops;
        self.write_rows(txn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(refs: u64) -> BlobRecord {
        BlobRecord {
            volume: 3,
            offset: 64 + refs,
            len: 100,
            block_size: 4096,
            refs,
            freed_at: 0,
        }
    }

    #[test]
    fn a_page_keeps_its_slots_sorted_and_finds_each() {
        let mut p = BlobPage::default();
        for slot in [7u8, 0, 15, 3] {
            p.set(slot, rec(slot as u64));
        }
        p.set(3, rec(30));
        let slots: Vec<u8> = p.blobs.iter().map(|(s, _)| *s).collect();
        assert_eq!(slots, vec![0, 3, 7, 15]);
        assert_eq!(p.get(3), Some(&rec(30)));
        assert_eq!(p.get(4), None);
        p.blobs.retain(|(s, _)| *s != 7 && *s != 8);
        let ids: Vec<u64> = p.iter(5).map(|(id, _)| id).collect();
        assert_eq!(ids, vec![80, 83, 95]);
        let bytes = encode(&p).unwrap();
        assert_eq!(bytes[0], 1, "format byte");
        assert_eq!(decode::<BlobPage>(&bytes).unwrap(), p);
    }

    #[test]
    fn blob_ids_map_to_pages_and_keys_parse_back() {
        assert_eq!(page_of(0), (0, 0));
        assert_eq!(page_of(17), (1, 1));
        assert_eq!(page_of(u64::MAX - 1), (u64::MAX / 16, 14));
        let k = page_key(0x0102_0304_0506_0708);
        assert_eq!(k[0], b'B');
        assert_eq!(parse_page_key(&k).unwrap(), 0x0102_0304_0506_0708);
        assert!(parse_page_key(b"B12").is_err());
    }

    #[test]
    fn a_log_record_finds_a_blob_in_its_page_or_its_old_row() {
        let mut p = BlobPage::default();
        p.set(2, rec(1));
        let page_row = |p: &BlobPage| {
            (
                sled::IVec::from(&page_key(4)[..]),
                Some(sled::IVec::from(encode(p).unwrap())),
            )
        };
        let mut later = p.clone();
        later.set(2, rec(9));
        let ops = vec![page_row(&p), page_row(&later)];
        assert_eq!(
            blob_in_ops(&ops, 4 * 16 + 2),
            Some(rec(9)),
            "the last change wins"
        );
        assert_eq!(blob_in_ops(&ops, 4 * 16 + 3), None);
        let old = vec![(
            sled::IVec::from(&blob_key(66)[..]),
            Some(sled::IVec::from(encode(&rec(5)).unwrap())),
        )];
        assert_eq!(blob_in_ops(&old, 66), Some(rec(5)));
        let removed = vec![(sled::IVec::from(&page_key(4)[..]), None)];
        assert_eq!(blob_in_ops(&removed, 66), None);
    }
}
