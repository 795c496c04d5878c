//! The rollups counted from scratch: what `du --verify` compares with the maintained rows, and
//! what builds them for a store written before they existed.
//!
//! A count walks the version table (every key's versions, newest first) beside the times
//! table, both in key order, so each prefix's keys are contiguous: an accumulator per open
//! prefix on a stack, folded into its parent when the walk leaves it, costs O(1) per key plus
//! O(rows) per prefix. The namespace is cut into ranges at prefix boundaries (balanced with
//! the maintained totals, when there are any) and counted on one thread per core; the ranges'
//! rows are summed. A count reads a [`Pinned`] view (the in-memory rows copied at one commit,
//! sled read directly, checkpoints held off), so `du --verify` compares counts and maintained
//! rows of the same commit without holding the commit lock. Queries of the maintained rows
//! live here too.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};

use super::blob_pages::{page_key, page_of, BlobPage};
use super::pinned::Pinned;
use super::rollup::{
    access_bucket, ancestors, day_of, kind_key, own_rows, parse_row_key, row_key, RollupBucket,
    RollupTotals, RowKind, HOLE_LINEAGE, KIND_ACCESSED, KIND_MODIFIED, KIND_TOTALS, TABLE,
};
use super::volumes::lineage_id;
use super::{Meta, Txn};
use crate::error::{Result, StoreError};
use crate::key::prefix_successor;
use crate::local::records::{
    decode, encode, misc_key, parse_version_key, table, Extent, KeyTimesRecord, PartRecord,
    UploadRecord, VersionRecord,
};

/// The `m` row saying which rollup format the store maintains (absent: none, build them).
pub const MISC_ROLLUPS: &str = "rollups";
/// The rollup format this build maintains (2: stored rows by volume lineage added).
pub const ROLLUP_FORMAT: u64 = 2;

/// A row's value while counting: totals (8 counters), a bucket (2) or stored bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowValue {
    Totals(RollupTotals),
    Bucket(RollupBucket),
    Stored(u64),
}

/// Counted rows: rollup row key -> value.
pub type Counted = BTreeMap<Vec<u8>, RowValue>;

/// One prefix's maintained rollups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrefixRollup {
    pub prefix: String,
    pub totals: RollupTotals,
    /// (day since the epoch, live objects and bytes last modified that day).
    pub modified: Vec<(u32, RollupBucket)>,
    /// (day, live objects and bytes last read that day); objects never read are not here.
    pub accessed: Vec<(u32, RollupBucket)>,
    /// (volume lineage, bytes of version extents in it), holes under [`HOLE_LINEAGE`].
    pub stored: Vec<(u64, u64)>,
    /// Noncurrent versions and bytes only named snapshots keep (the keys' `s` rows).
    pub snapshot_only: RollupBucket,
}

impl PrefixRollup {
    /// Adds one of the prefix's rows.
    fn add(&mut self, kind: RowKind, v: &[u8]) -> Result<()> {
        match kind {
            RowKind::Totals => self.totals = decode(v)?,
            RowKind::Modified(d) => self.modified.push((d, decode(v)?)),
            RowKind::Accessed(d) => self.accessed.push((d, decode(v)?)),
            RowKind::Stored(l) => self.stored.push((l, decode(v)?)),
            RowKind::SnapshotOnly => self.snapshot_only = decode(v)?,
        }
        Ok(())
    }
}

/// What a verification found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RollupCheck {
    /// Version rows (keys' versions and markers) scanned.
    pub versions: u64,
    /// Rows compared.
    pub rows: u64,
    /// Rows that differ: (row, maintained, counted), at most 100.
    pub mismatches: Vec<String>,
    pub mismatch_count: u64,
}

#[derive(Default)]
struct Acc {
    totals: [u64; 8],
    modified: BTreeMap<u32, (u64, u64)>,
    accessed: BTreeMap<u32, (u64, u64)>,
    stored: BTreeMap<u64, u64>,
}

impl Acc {
    fn merge(&mut self, o: Acc) {
        for i in 0..8 {
            self.totals[i] += o.totals[i];
        }
        for (d, (n, b)) in o.modified {
            let e = self.modified.entry(d).or_default();
            e.0 += n;
            e.1 += b;
        }
        for (d, (n, b)) in o.accessed {
            let e = self.accessed.entry(d).or_default();
            e.0 += n;
            e.1 += b;
        }
        for (l, b) in o.stored {
            *self.stored.entry(l).or_default() += b;
        }
    }
}

fn add_row(out: &mut Counted, row: Vec<u8>, v: RowValue) {
    match (out.get_mut(&row), v) {
        (Some(RowValue::Totals(a)), RowValue::Totals(b)) => {
            a.live_objects += b.live_objects;
            a.live_bytes += b.live_bytes;
            a.noncurrent_versions += b.noncurrent_versions;
            a.noncurrent_bytes += b.noncurrent_bytes;
            a.delete_markers += b.delete_markers;
            a.uploads += b.uploads;
            a.upload_parts += b.upload_parts;
            a.upload_bytes += b.upload_bytes;
        }
        (Some(RowValue::Bucket(a)), RowValue::Bucket(b)) => {
            a.objects += b.objects;
            a.bytes += b.bytes;
        }
        (Some(RowValue::Stored(a)), RowValue::Stored(b)) => *a += b,
        (_, v) => {
            out.insert(row, v);
        }
    }
}

fn emit(out: &mut Counted, prefix: &str, acc: &Acc) {
    let t = acc.totals;
    if t.iter().any(|&x| x != 0) {
        let totals = RollupTotals {
            live_objects: t[0],
            live_bytes: t[1],
            noncurrent_versions: t[2],
            noncurrent_bytes: t[3],
            delete_markers: t[4],
            uploads: t[5],
            upload_parts: t[6],
            upload_bytes: t[7],
        };
        add_row(
            out,
            row_key(prefix, KIND_TOTALS, None),
            RowValue::Totals(totals),
        );
    }
    for (kind, h) in [
        (KIND_MODIFIED, &acc.modified),
        (KIND_ACCESSED, &acc.accessed),
    ] {
        for (&d, &(objects, bytes)) in h {
            if objects != 0 || bytes != 0 {
                let b = RollupBucket { objects, bytes };
                add_row(out, row_key(prefix, kind, Some(d)), RowValue::Bucket(b));
            }
        }
    }
    for (&l, &b) in &acc.stored {
        if b != 0 {
            let row = kind_key(prefix, RowKind::Stored(l));
            add_row(out, row, RowValue::Stored(b));
        }
    }
}

/// Blob id -> lineage of its volume, as of a view: the `L` table read once, blob pages
/// looked up as versions name them (the last pages kept: blobs written together are
/// numbered together).
struct ViewLineage<'v> {
    view: &'v Pinned<'v>,
    lineages: HashMap<u64, u64>,
    pages: HashMap<u64, BlobPage>,
}

impl<'v> ViewLineage<'v> {
    fn new(view: &'v Pinned<'v>) -> Result<Self> {
        let mut lineages = HashMap::new();
        for row in view.range(vec![table::LINEAGE], Some(vec![table::LINEAGE + 1])) {
            let (k, v) = row?;
            lineages.insert(lineage_id(&k)?, decode(&v)?);
        }
        Ok(ViewLineage {
            view,
            lineages,
            pages: HashMap::new(),
        })
    }

    fn of(&mut self, e: &Extent) -> Result<u64> {
        let Some(blob) = e.blob_id() else {
            return Ok(HOLE_LINEAGE);
        };
        let page = page_of(blob).0;
        if self.pages.len() >= 4096 && !self.pages.contains_key(&page) {
            self.pages.clear();
        }
        let p = match self.pages.entry(page) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(slot) => {
                let k = page_key(page);
                let p = match self.view.range(k.to_vec(), prefix_successor(&k)).next() {
                    Some(row) => {
                        let (rk, v) = row?;
                        if rk[..] == k[..] {
                            decode::<BlobPage>(&v)?
                        } else {
                            BlobPage::default()
                        }
                    }
                    None => BlobPage::default(),
                };
                slot.insert(p)
            }
        };
        let volume = p.referenced(blob)?.volume;
        Ok(self.lineages.get(&volume).copied().unwrap_or(volume))
    }
}

/// The stack of open prefixes of a walk in key order.
struct Walk {
    stack: Vec<(String, Acc)>,
    out: Counted,
}

impl Walk {
    fn new() -> Self {
        Walk {
            stack: vec![(String::new(), Acc::default())],
            out: Counted::new(),
        }
    }

    /// The accumulator of `key`'s deepest prefix, closing the prefixes the walk left.
    fn at(&mut self, key: &str) -> &mut Acc {
        while self.stack.len() > 1 && !key.starts_with(&self.stack[self.stack.len() - 1].0) {
            self.pop();
        }
        let top = self.stack[self.stack.len() - 1].0.len();
        for p in ancestors(key).filter(|p| p.len() > top) {
            self.stack.push((p.to_string(), Acc::default()));
        }
        let last = self.stack.len() - 1;
        &mut self.stack[last].1
    }

    fn pop(&mut self) {
        if let Some((p, acc)) = self.stack.pop() {
            emit(&mut self.out, &p, &acc);
            if let Some(parent) = self.stack.last_mut() {
                parent.1.merge(acc);
            }
        }
    }

    fn finish(mut self) -> Counted {
        while !self.stack.is_empty() {
            self.pop();
        }
        self.out
    }
}

/// The two fields of a version row a count needs (postcard ignores the fields after them).
#[derive(serde::Deserialize)]
struct VersionHead {
    delete_marker: bool,
    size: u64,
}

fn version_head(v: &[u8]) -> Result<VersionHead> {
    match v.split_first() {
        // Formats 1 and 2 both begin with these two fields.
        Some((1 | 2, body)) => postcard::from_bytes(body).map_err(|e| StoreError::Corrupt {
            what: format!("version row does not decode: {e}"),
        }),
        _ => Err(StoreError::Corrupt {
            what: "version row of an unknown format".into(),
        }),
    }
}

/// `V` + key: where a key's version rows start.
fn version_bound(key: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(key.len() + 1);
    v.push(table::VERSION);
    v.extend_from_slice(key.as_bytes());
    v
}

/// `t` + key: the key's times row.
fn times_bound(key: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(key.len() + 1);
    v.push(table::KEY_TIMES);
    v.extend_from_slice(key.as_bytes());
    v
}

/// Counts the rollups of the keys in `[lo, hi)` (key bounds, `hi` None: to the end) as of
/// `view`. Decodes only a version row's key, its first two fields, and a live key's times row.
fn count_range(view: &Pinned<'_>, lo: &str, hi: Option<&str>) -> Result<(Counted, u64)> {
    let vend = hi.map_or(vec![table::VERSION + 1], version_bound);
    let tend = hi.map_or(vec![table::KEY_TIMES + 1], times_bound);
    let vrows = view.range(version_bound(lo), Some(vend));
    let mut trows = view.range(times_bound(lo), Some(tend)).peekable();
    let mut lineage = ViewLineage::new(view)?;
    let mut walk = Walk::new();
    // The key of the previous row (its versions come newest first).
    let mut last_key: Option<Vec<u8>> = None;
    let mut versions = 0u64;
    for row in vrows {
        let (k, v) = row?;
        let (key, vid) = parse_version_key(&k)?;
        let head = version_head(&v)?;
        versions += 1;
        let newest = last_key.as_deref() != Some(key.as_bytes());
        if newest {
            let last = last_key.get_or_insert_with(Vec::new);
            last.clear();
            last.extend_from_slice(key.as_bytes());
        }
        let acc = walk.at(key);
        if !head.delete_marker {
            let rec: VersionRecord = decode(&v)?;
            for e in &rec.extents {
                *acc.stored.entry(lineage.of(e)?).or_default() += e.len;
            }
        }
        if head.delete_marker {
            acc.totals[4] += 1;
        } else if newest {
            let nanos = (vid.0 >> 64) as u64;
            acc.totals[0] += 1;
            acc.totals[1] += head.size;
            let e = acc.modified.entry(day_of(nanos)).or_default();
            e.0 += 1;
            e.1 += head.size;
            // The key's access time: advance the times rows to this key.
            let mut accessed = None;
            while let Some(t) = trows.peek() {
                let tk = match t {
                    Ok((tk, _)) => &tk[1..],
                    Err(_) => {
                        if let Some(Err(e)) = trows.next() {
                            return Err(e);
                        }
                        break;
                    }
                };
                match tk.cmp(key.as_bytes()) {
                    std::cmp::Ordering::Less => {
                        trows.next();
                    }
                    std::cmp::Ordering::Equal => {
                        if let Some(Ok((_, tv))) = trows.next() {
                            let rec: KeyTimesRecord = decode(&tv)?;
                            accessed = access_bucket(rec.accessed, nanos);
                        }
                        break;
                    }
                    std::cmp::Ordering::Greater => break,
                }
            }
            if let Some(a) = accessed {
                let e = acc.accessed.entry(a).or_default();
                e.0 += 1;
                e.1 += head.size;
            }
        } else {
            acc.totals[2] += 1;
            acc.totals[3] += head.size;
        }
    }
    Ok((walk.finish(), versions))
}

impl Meta {
    /// Incomplete uploads of keys starting with `prefix`, added to `out`.
    fn count_uploads(view: &Pinned<'_>, prefix: &str, out: &mut Counted) -> Result<()> {
        for row in view.range(vec![table::UPLOAD], Some(vec![table::UPLOAD + 1])) {
            let (k, v) = row?;
            let up: UploadRecord = decode(&v)?;
            if !up.key.starts_with(prefix) {
                continue;
            }
            let id = String::from_utf8_lossy(&k[1..]).into_owned();
            let (mut parts, mut bytes) = (0, 0);
            let parts_of = crate::local::records::part_prefix(&id);
            let parts_end = prefix_successor(&parts_of);
            for p in view.range(parts_of, parts_end) {
                let (_, pv) = p?;
                let rec: PartRecord = decode(&pv)?;
                parts += 1;
                bytes += rec.size;
            }
            for a in ancestors(&up.key).filter(|a| a.starts_with(prefix)) {
                let t = RollupTotals {
                    uploads: 1,
                    upload_parts: parts,
                    upload_bytes: bytes,
                    ..Default::default()
                };
                add_row(out, row_key(a, KIND_TOTALS, None), RowValue::Totals(t));
            }
        }
        Ok(())
    }

    /// The `s` rows of keys starting with `prefix`, summed into their prefixes' rows in `out`.
    fn count_snapshot_only(view: &Pinned<'_>, prefix: &str, out: &mut Counted) -> Result<()> {
        let mut start = vec![table::SNAPSHOT_ONLY];
        start.extend_from_slice(prefix.as_bytes());
        let end = prefix_successor(&start);
        for row in view.range(start, end) {
            let (k, v) = row?;
            let key = std::str::from_utf8(&k[1..]).map_err(|_| StoreError::Corrupt {
                what: format!("snapshot-only row {:?} is not UTF-8", &k[..]),
            })?;
            let b: RollupBucket = decode(&v)?;
            for a in ancestors(key).filter(|a| a.starts_with(prefix)) {
                let row = kind_key(a, RowKind::SnapshotOnly);
                add_row(out, row, RowValue::Bucket(b));
            }
        }
        Ok(())
    }

    /// Key ranges that split the keys under `prefix` into about `n` similar parts, using the
    /// maintained totals (one range when there are none).
    fn split(&self, prefix: &str, n: usize) -> Result<Vec<(String, Option<String>)>> {
        let weight = |r: &RollupTotals| r.live_objects + r.noncurrent_versions + r.delete_markers;
        let total = self.rollup(prefix)?.map_or(0, |r| weight(&r.totals));
        let target = (total / (n as u64 * 2)).max(1);
        // Replace any prefix heavier than the target by its children (a bounded number of
        // times), then cut the sorted prefixes into runs of about total / n.
        let mut parts: Vec<(String, u64)> = vec![(prefix.to_string(), total)];
        for _ in 0..64 {
            let Some(i) = parts
                .iter()
                .position(|(p, w)| *w > target && p.len() >= prefix.len())
            else {
                break;
            };
            let (p, _) = parts.remove(i);
            let kids = self.rollup_children(&p)?;
            if kids.is_empty() {
                parts.insert(i, (p, 0));
                continue;
            }
            for (j, k) in kids.into_iter().enumerate() {
                let w = weight(&k.totals);
                parts.insert(i + j, (k.prefix, w));
            }
        }
        let per = (total / n as u64).max(1);
        let mut bounds = vec![prefix.to_string()];
        let mut acc = 0;
        for (p, w) in &parts {
            if acc >= per && p.as_str() > bounds[bounds.len() - 1].as_str() {
                bounds.push(p.clone());
                acc = 0;
            }
            acc += w;
        }
        let end = prefix_successor(prefix.as_bytes()).and_then(|e| String::from_utf8(e).ok());
        let mut out = Vec::new();
        for (i, b) in bounds.iter().enumerate() {
            let hi = bounds.get(i + 1).cloned().or_else(|| end.clone());
            out.push((b.clone(), hi));
        }
        Ok(out)
    }

    /// Counts the rollups of every key under `prefix` (the rows of `prefix` and below) as of
    /// `view`, on one thread per core over ranges split at prefix boundaries. Returns the rows
    /// and the number of version rows read.
    pub fn count_rollups(&self, view: &Pinned<'_>, prefix: &str) -> Result<(Counted, u64)> {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let ranges = if prefix.is_empty() && self.rollup("")?.is_none() {
            vec![(String::new(), None)]
        } else {
            self.split(prefix, threads * 4)?
        };
        let next = std::sync::atomic::AtomicUsize::new(0);
        let results: Vec<Result<(Counted, u64)>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads.min(ranges.len()))
                .map(|_| {
                    s.spawn(|| {
                        let mut out = Counted::new();
                        let mut n = 0;
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some((lo, hi)) = ranges.get(i) else { break };
                            let (c, v) = count_range(view, lo, hi.as_deref())?;
                            n += v;
                            for (k, v) in c {
                                add_row(&mut out, k, v);
                            }
                        }
                        Ok((out, n))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(StoreError::Metadata("a count thread panicked".into()))
                    })
                })
                .collect()
        });
        let mut out = Counted::new();
        let mut versions = 0;
        for r in results {
            let (c, v) = r?;
            versions += v;
            for (k, v) in c {
                // Rows of prefixes above `prefix` got parts of its keys only: not compared.
                if parse_row_key(&k).is_some_and(|(p, _)| p.starts_with(prefix)) {
                    add_row(&mut out, k, v);
                }
            }
        }
        Self::count_uploads(view, prefix, &mut out)?;
        Self::count_snapshot_only(view, prefix, &mut out)?;
        Ok((out, versions))
    }

    /// The maintained rows of `prefix` and below, as of `view`.
    fn stored_rows(view: &Pinned<'_>, prefix: &str) -> Result<Counted> {
        let mut start = vec![TABLE];
        start.extend_from_slice(prefix.as_bytes());
        let end = prefix_successor(&start);
        let mut out = Counted::new();
        for row in view.range(start, end) {
            let (k, v) = row?;
            let value = match parse_row_key(&k) {
                Some((_, RowKind::Totals)) => RowValue::Totals(decode(&v)?),
                Some((_, RowKind::Stored(_))) => RowValue::Stored(decode(&v)?),
                Some(_) => RowValue::Bucket(decode(&v)?),
                None => {
                    return Err(StoreError::Corrupt {
                        what: format!("malformed rollup row key {:?}", &k[..]),
                    })
                }
            };
            out.insert(k.to_vec(), value);
        }
        Ok(out)
    }

    /// Recounts the rollups of `prefix` and compares them with the maintained rows, both read
    /// from one [`Pinned`] view, so they describe the same commit. Commits go on meanwhile;
    /// checkpoints wait.
    pub fn verify_rollups(&self, prefix: &str) -> Result<RollupCheck> {
        let (counted, versions, stored) = {
            let view = self.tables.pin();
            let (counted, versions) = self.count_rollups(&view, prefix)?;
            (counted, versions, Self::stored_rows(&view, prefix)?)
        };
        let mut check = RollupCheck {
            versions,
            ..Default::default()
        };
        let mut keys: Vec<&Vec<u8>> = counted.keys().chain(stored.keys()).collect();
        keys.sort();
        keys.dedup();
        for k in keys {
            check.rows += 1;
            let (a, b) = (stored.get(k), counted.get(k));
            if a != b {
                check.mismatch_count += 1;
                if check.mismatches.len() < 100 {
                    let name = parse_row_key(k)
                        .map(|(p, kind)| format!("{p:?} {kind:?}"))
                        .unwrap_or_else(|| format!("{k:?}"));
                    check
                        .mismatches
                        .push(format!("{name}: maintained {a:?}, counted {b:?}"));
                }
            }
        }
        Ok(check)
    }

    /// Builds the rollups when the store has none of this format (a store written before
    /// them): counts everything, replaces every rollup row, then records the format. Runs at
    /// open, before any commit; a crash meanwhile leaves no format row, so the next open
    /// builds again. Returns whether it built.
    pub fn ensure_rollups(&self) -> Result<bool> {
        if self.get::<u64>(&misc_key(MISC_ROLLUPS))? == Some(ROLLUP_FORMAT) {
            return Ok(false);
        }
        let _state = self.lock();
        let counted = {
            let view = self.tables.pin();
            self.count_rollups(&view, "")?.0
        };
        let mut txn = Txn::new();
        let mut rows = 0;
        let flush = |txn: &mut Txn, rows: &mut usize, force: bool| -> Result<()> {
            if *rows >= 10_000 || (force && *rows > 0) {
                self.write_rows(std::mem::replace(txn, Txn::new()))?;
                *rows = 0;
                // Nothing else runs yet: move rows into sled so memory stays bounded.
                self.tables.checkpoint(|| self.tables.sync())?;
            }
            Ok(())
        };
        for row in self.scan_prefix([TABLE]) {
            let (k, _) = row?;
            if !counted.contains_key(&k[..]) {
                txn.remove(k);
                rows += 1;
                flush(&mut txn, &mut rows, false)?;
            }
        }
        for (k, v) in &counted {
            match v {
                RowValue::Totals(t) => txn.insert(k, encode(t)?),
                RowValue::Bucket(b) => txn.insert(k, encode(b)?),
                RowValue::Stored(b) => txn.insert(k, encode(b)?),
            }
            rows += 1;
            flush(&mut txn, &mut rows, false)?;
        }
        flush(&mut txn, &mut rows, true)?;
        let mut txn = Txn::new();
        txn.insert(misc_key(MISC_ROLLUPS), encode(&ROLLUP_FORMAT)?);
        self.write_rows(txn)?;
        self.tables.checkpoint(|| self.tables.sync())?;
        Ok(true)
    }

    /// Removes every rollup row and the format row, as in a store written before rollups
    /// existed (for tests of [`Meta::ensure_rollups`]).
    pub fn forget_rollups(&self) -> Result<()> {
        let _state = self.lock();
        let mut txn = Txn::new();
        for row in self.scan_prefix([TABLE]) {
            txn.remove(row?.0);
        }
        txn.remove(misc_key(MISC_ROLLUPS));
        self.write_rows(txn)
    }

    /// The maintained rollups of `prefix` (None: no key under it).
    pub fn rollup(&self, prefix: &str) -> Result<Option<PrefixRollup>> {
        let (lo, hi) = own_rows(prefix);
        let mut out = PrefixRollup {
            prefix: prefix.to_string(),
            ..Default::default()
        };
        let mut any = false;
        for row in self.range(lo, Some(hi)) {
            let (k, v) = row?;
            any = true;
            match parse_row_key(&k) {
                Some((_, kind)) => out.add(kind, &v)?,
                None => {
                    return Err(StoreError::Corrupt {
                        what: format!("malformed rollup row key {:?}", &k[..]),
                    })
                }
            }
        }
        Ok(any.then_some(out))
    }

    /// The rollups of the prefixes one level below `prefix` (`a/b/` under `a/`), in order:
    /// one pass over the children's own rows (a prefix's own rows sort before its
    /// sub-prefixes'), with a seek past each child that has deeper rows, whatever lies there.
    pub fn rollup_children(&self, prefix: &str) -> Result<Vec<PrefixRollup>> {
        let mut start = vec![TABLE];
        start.extend_from_slice(prefix.as_bytes());
        let end = prefix_successor(&start);
        // Skip the prefix's own rows.
        let (_, at) = own_rows(prefix);
        let mut rows = self.range(at, end);
        let mut out: Vec<PrefixRollup> = Vec::new();
        while let Some(row) = rows.next() {
            let (k, v) = row?;
            let rest = &k[1 + prefix.len()..];
            let Some(slash) = rest.iter().position(|&b| b == b'/') else {
                return Err(StoreError::Corrupt {
                    what: format!("rollup row {:?} names no prefix", &k[..]),
                });
            };
            let child_end = 1 + prefix.len() + slash + 1;
            if k.get(child_end) != Some(&0) {
                // A row of a prefix below the child: skip the child's subtree.
                match prefix_successor(&k[..child_end]) {
                    Some(s) => rows.seek(s),
                    None => break,
                }
                continue;
            }
            let child = std::str::from_utf8(&k[1..child_end]).map_err(|_| StoreError::Corrupt {
                what: format!("rollup row {:?} is not UTF-8", &k[..]),
            })?;
            if out.last().is_none_or(|r| r.prefix != child) {
                out.push(PrefixRollup {
                    prefix: child.to_string(),
                    ..Default::default()
                });
            }
            let r = out
                .last_mut()
                .ok_or_else(|| StoreError::Metadata("no child".into()))?;
            match parse_row_key(&k) {
                Some((_, kind)) => r.add(kind, &v)?,
                None => {
                    return Err(StoreError::Corrupt {
                        what: format!("malformed rollup row key {:?}", &k[..]),
                    })
                }
            }
        }
        Ok(out)
    }

    /// The totals of every prefix strictly below `prefix`, in key order.
    pub fn rollup_descendants(&self, prefix: &str) -> Result<Vec<(String, RollupTotals)>> {
        let mut start = vec![TABLE];
        start.extend_from_slice(prefix.as_bytes());
        let mut out = Vec::new();
        for row in self.scan_prefix(&start) {
            let (k, v) = row?;
            if let Some((p, RowKind::Totals)) = parse_row_key(&k) {
                if p != prefix {
                    out.push((p.to_string(), decode(&v)?));
                }
            }
        }
        Ok(out)
    }
}
