//! Per-prefix rollups: what `objfs du` reads instead of scanning the namespace.
//!
//! Every `/`-delimited prefix of a key (and the root, the empty prefix) has a *totals* row
//! (live objects and bytes, noncurrent versions and bytes, delete markers, incomplete
//! multipart uploads, their parts and bytes), sparse *histogram* rows: live objects and
//! bytes by the day of their last modification (the version's time in the store) and by the
//! day of their last recorded access, and *stored* rows: the bytes of its versions' extents
//! (live and noncurrent) by the lineage of the volume they are in. Rows hold absolute days;
//! ages are computed at query time.
//!
//! Stored rows are what makes bytes per tier a rollup. Data changes tier a whole volume at a
//! time (placement erasure-codes a volume, tiering moves it to the bucket, recall brings it
//! back: the volume keeps its id), and compaction moves every live blob of one volume into
//! one new volume that inherits its *lineage* (the `L` table). So the bytes a prefix has in a
//! lineage change only when a version is written or removed for good, and `du` turns
//! lineages into tiers at query time by the layout of each lineage's newest volume. Holes
//! count under [`HOLE_LINEAGE`].
//!
//! A *snapshot-only* row sums the `s` rows of the prefix's keys: the noncurrent versions only
//! named snapshots keep. That depends on the retention policy at a moment, not on commits (a
//! version becomes one as time passes), so gc's retention pass, which decides every key's
//! versions anyway, records each key's figure in its `s` row when it changes
//! ([`Meta::set_snapshot_only`]), and the prefix rows follow in the same log record: exact
//! as of the pass's last visit to each key.
//!
//! An object's access bucket is the day of the key's recorded access only when that access is
//! not older than the object's current version ([`access_bucket`]): an access recorded before
//! the version was written was a read of an older object, so the new one counts as never
//! read. A commit that writes a new version therefore needs no look-up of the key's times
//! row unless the key had a live version before (whose bucket must be taken out); only
//! [`Meta::set_key_times`] and a version becoming current again (a newest version deleted)
//! read it.
//!
//! A commit records what it changes as [`Event`]s in its transaction; [`Meta::apply`] turns
//! them into signed deltas per row ([`Deltas`], O(depth) rows per changed key), reads each
//! row's current value and writes the new value **in the same log record** as the change, so
//! a replay after a crash yields exactly the totals the commits produced. Rows written by
//! successive commits replace each other in the in-memory table, so a burst of commits under
//! one directory costs sled one row per prefix (and day) per checkpoint, not one per commit.
//! Rows that fall to zero are removed. Key layout and values: docs/FORMAT.md.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::blob_pages::PageEdits;
use super::{Meta, Txn};
use crate::error::Result;
use crate::local::records::{
    decode, encode, key_times_key, snapshot_only_key, table, Extent, InitialFormat, KeyTimesRecord,
};
use crate::local::version::LocalVersion;

/// `R`: the rollup table's tag (first key byte).
pub const TABLE: u8 = b'R';
/// Row kinds after `R` + prefix + 0x00.
pub const KIND_TOTALS: u8 = 0;
pub const KIND_MODIFIED: u8 = 1;
pub const KIND_ACCESSED: u8 = 2;
pub const KIND_STORED: u8 = 3;
pub const KIND_SNAPSHOT_ONLY: u8 = 4;

/// The lineage holes count under (they are stored nowhere).
pub const HOLE_LINEAGE: u64 = crate::local::records::HOLE_BLOB;

/// What a rollup row is, after its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RowKind {
    Totals,
    /// Live objects last modified on this day.
    Modified(u32),
    /// Live objects last read on this day.
    Accessed(u32),
    /// Version bytes in this volume lineage.
    Stored(u64),
    /// Noncurrent versions (and bytes) only named snapshots keep.
    SnapshotOnly,
}

/// Nanoseconds in a histogram bucket (a day).
pub const DAY_NANOS: u64 = 86_400 * 1_000_000_000;

/// The totals row of a prefix.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollupTotals {
    pub live_objects: u64,
    pub live_bytes: u64,
    pub noncurrent_versions: u64,
    pub noncurrent_bytes: u64,
    pub delete_markers: u64,
    pub uploads: u64,
    pub upload_parts: u64,
    pub upload_bytes: u64,
}

/// A histogram row: live objects and their bytes in one day's bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollupBucket {
    pub objects: u64,
    pub bytes: u64,
}

impl InitialFormat for RollupTotals {}
impl InitialFormat for RollupBucket {}

/// Number of counters in a totals row (the order of [`RollupTotals`]'s fields).
const TOTALS: usize = 8;

impl RollupTotals {
    fn to_array(self) -> [u64; TOTALS] {
        [
            self.live_objects,
            self.live_bytes,
            self.noncurrent_versions,
            self.noncurrent_bytes,
            self.delete_markers,
            self.uploads,
            self.upload_parts,
            self.upload_bytes,
        ]
    }

    fn from_array(a: [u64; TOTALS]) -> Self {
        RollupTotals {
            live_objects: a[0],
            live_bytes: a[1],
            noncurrent_versions: a[2],
            noncurrent_bytes: a[3],
            delete_markers: a[4],
            uploads: a[5],
            upload_parts: a[6],
            upload_bytes: a[7],
        }
    }
}

/// The prefixes a key counts under: the root, then every prefix ending at one of its `/`.
pub fn ancestors(key: &str) -> impl Iterator<Item = &str> {
    std::iter::once("").chain(
        key.char_indices()
            .filter(|&(_, c)| c == '/')
            .map(move |(i, _)| &key[..=i]),
    )
}

/// `R` + prefix + 0x00 + kind (+ day, u32 big-endian, for histogram rows).
pub fn row_key(prefix: &str, kind: u8, day: Option<u32>) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 7);
    k.push(TABLE);
    k.extend_from_slice(prefix.as_bytes());
    k.push(0);
    k.push(kind);
    if let Some(d) = day {
        k.extend_from_slice(&d.to_be_bytes());
    }
    k
}

/// The key of any row kind of `prefix`.
pub fn kind_key(prefix: &str, kind: RowKind) -> Vec<u8> {
    match kind {
        RowKind::Totals => row_key(prefix, KIND_TOTALS, None),
        RowKind::Modified(d) => row_key(prefix, KIND_MODIFIED, Some(d)),
        RowKind::Accessed(d) => row_key(prefix, KIND_ACCESSED, Some(d)),
        RowKind::SnapshotOnly => row_key(prefix, KIND_SNAPSHOT_ONLY, None),
        RowKind::Stored(lineage) => {
            let mut k = row_key(prefix, KIND_STORED, None);
            k.extend_from_slice(&lineage.to_be_bytes());
            k
        }
    }
}

/// The rows of `prefix` itself: from `R` + prefix + 0x00 to `R` + prefix + 0x01.
pub fn own_rows(prefix: &str) -> (Vec<u8>, Vec<u8>) {
    let mut a = vec![TABLE];
    a.extend_from_slice(prefix.as_bytes());
    let mut b = a.clone();
    a.push(0);
    b.push(1);
    (a, b)
}

/// Splits a rollup row key into its prefix and kind.
pub fn parse_row_key(k: &[u8]) -> Option<(&str, RowKind)> {
    let body = k.strip_prefix(&[TABLE])?;
    let nul = body.iter().position(|&b| b == 0)?;
    let prefix = std::str::from_utf8(&body[..nul]).ok()?;
    let rest = &body[nul + 1..];
    let kind = match rest {
        [KIND_TOTALS] => RowKind::Totals,
        [KIND_MODIFIED, d @ ..] => RowKind::Modified(u32::from_be_bytes(d.try_into().ok()?)),
        [KIND_ACCESSED, d @ ..] => RowKind::Accessed(u32::from_be_bytes(d.try_into().ok()?)),
        [KIND_STORED, l @ ..] => RowKind::Stored(u64::from_be_bytes(l.try_into().ok()?)),
        [KIND_SNAPSHOT_ONLY] => RowKind::SnapshotOnly,
        _ => return None,
    };
    Some((prefix, kind))
}

/// The day bucket of a time in nanoseconds since the epoch.
pub fn day_of(nanos: u64) -> u32 {
    u32::try_from(nanos / DAY_NANOS).unwrap_or(u32::MAX)
}

/// The access bucket of a live object whose version was written at `version_nanos`, given the
/// key's recorded access time (`accessed`, 0: none): None when nothing was recorded or the
/// access is older than the version.
pub fn access_bucket(accessed: u64, version_nanos: u64) -> Option<u32> {
    (accessed != 0 && accessed >= version_nanos).then(|| day_of(accessed))
}

/// What one commit changes, per key (each applies to all the key's prefixes, with `sign`).
#[derive(Debug, Clone)]
pub(crate) enum Event {
    /// A live current version of `size` bytes written at `nanos` (+1 added, -1 gone);
    /// `fresh`: a version this commit writes (its access bucket is known without a look-up
    /// unless the key's earlier version leaves in the same commit).
    Live {
        key: String,
        size: u64,
        nanos: u64,
        sign: i64,
        fresh: bool,
    },
    /// A noncurrent (data) version.
    Noncurrent { key: String, size: u64, sign: i64 },
    /// A delete marker.
    Marker { key: String, sign: i64 },
    /// An incomplete multipart upload of `key`: uploads, parts and bytes changed by these.
    Upload {
        key: String,
        uploads: i64,
        parts: i64,
        bytes: i64,
    },
    /// A data version's extents written (+1) or removed for good (-1): their bytes by the
    /// lineage of their blobs' volumes (resolved at commit).
    Stored {
        key: String,
        extents: Vec<Extent>,
        sign: i64,
    },
    /// `bytes` (signed) of a key's versions moved in or out of volume lineage `lineage` (a
    /// repack moving blobs to a new volume).
    StoredIn {
        key: String,
        lineage: u64,
        bytes: i64,
    },
    /// A key's snapshot-only versions and bytes changed by these.
    SnapshotOnly {
        key: String,
        versions: i64,
        bytes: i64,
    },
    /// A live object moving between access-day buckets (`from`/`to` None: no access recorded).
    Access {
        key: String,
        size: u64,
        from: Option<u32>,
        to: Option<u32>,
    },
}

/// Signed changes per rollup row, summed over a commit's events: totals by prefix, buckets by
/// (prefix, kind, day). The prefixes borrow from the events' keys (no row key is built until a
/// row is written), and the maps iterate in the rows' key order (0x00 after the prefix sorts
/// below every key byte, as a shorter string sorts before its extensions).
#[derive(Debug, Default)]
pub(crate) struct Deltas<'a> {
    totals: BTreeMap<&'a str, [i64; TOTALS]>,
    buckets: BTreeMap<(&'a str, u8, u32), [i64; 2]>,
    stored: BTreeMap<(&'a str, u64), i64>,
    snapshot_only: BTreeMap<&'a str, [i64; 2]>,
}

impl<'a> Deltas<'a> {
    fn total(&mut self, key: &'a str, field: usize, by: i64, field2: usize, by2: i64) {
        for p in ancestors(key) {
            let row = self.totals.entry(p).or_default();
            row[field] += by;
            row[field2] += by2;
        }
    }

    fn bucket(&mut self, key: &'a str, kind: u8, day: u32, n: i64, bytes: i64) {
        for p in ancestors(key) {
            let row = self.buckets.entry((p, kind, day)).or_default();
            row[0] += n;
            row[1] += bytes;
        }
    }

    /// Adds `bytes` (signed) in `lineage` to every prefix of `key`.
    fn stored(&mut self, key: &'a str, lineage: u64, bytes: i64) {
        for p in ancestors(key) {
            *self.stored.entry((p, lineage)).or_default() += bytes;
        }
    }

    /// Adds `event`; `accessed` gives a live key's recorded access time (read by the caller;
    /// 0: none); `lineage` the lineage of a blob's volume (for [`Event::Stored`]).
    pub(crate) fn add(
        &mut self,
        event: &'a Event,
        accessed: u64,
        lineage: &mut impl FnMut(u64) -> Result<u64>,
    ) -> Result<()> {
        match event {
            Event::Live {
                key,
                size,
                nanos,
                sign,
                ..
            } => {
                let b = *sign * *size as i64;
                self.total(key, 0, *sign, 1, b);
                self.bucket(key, KIND_MODIFIED, day_of(*nanos), *sign, b);
                if let Some(a) = access_bucket(accessed, *nanos) {
                    self.bucket(key, KIND_ACCESSED, a, *sign, b);
                }
            }
            Event::Noncurrent { key, size, sign } => {
                self.total(key, 2, *sign, 3, *sign * *size as i64)
            }
            Event::Marker { key, sign } => self.total(key, 4, *sign, 4, 0),
            Event::Upload {
                key,
                uploads,
                parts,
                bytes,
            } => {
                self.total(key, 5, *uploads, 6, *parts);
                self.total(key, 7, *bytes, 7, 0);
            }
            Event::Access {
                key,
                size,
                from,
                to,
            } => {
                let b = *size as i64;
                if let Some(f) = from {
                    self.bucket(key, KIND_ACCESSED, *f, -1, -b);
                }
                if let Some(t) = to {
                    self.bucket(key, KIND_ACCESSED, *t, 1, b);
                }
            }
            Event::StoredIn {
                key,
                lineage,
                bytes,
            } => self.stored(key, *lineage, *bytes),
            Event::SnapshotOnly {
                key,
                versions,
                bytes,
            } => {
                for p in ancestors(key) {
                    let row = self.snapshot_only.entry(p).or_default();
                    row[0] += versions;
                    row[1] += bytes;
                }
            }
            Event::Stored { key, extents, sign } => {
                // One row per lineage the version uses, summed first (a file of many
                // extents in one volume touches each of its prefixes' rows once).
                let mut by: Vec<(u64, u64)> = Vec::with_capacity(1);
                for e in extents {
                    let l = match e.blob_id() {
                        Some(blob) => lineage(blob)?,
                        None => HOLE_LINEAGE,
                    };
                    match by.iter_mut().find(|(x, _)| *x == l) {
                        Some((_, n)) => *n += e.len,
                        None => by.push((l, e.len)),
                    }
                }
                for (l, n) in by {
                    self.stored(key, l, *sign * n as i64);
                }
            }
        }
        Ok(())
    }
}

impl Txn {
    /// A live version of `key` appears (`sign` 1) or stops being live (-1); `fresh`: `vid`
    /// is a version this commit writes.
    pub(super) fn live(&mut self, key: &str, size: u64, vid: LocalVersion, sign: i64, fresh: bool) {
        self.events.push(Event::Live {
            key: key.into(),
            size,
            nanos: (vid.0 >> 64) as u64,
            sign,
            fresh,
        });
    }

    /// A data version of `key` made of `extents` is written (`sign` 1) or removed for good
    /// (-1).
    pub(super) fn stored(&mut self, key: &str, extents: &[Extent], sign: i64) {
        if extents.is_empty() {
            return;
        }
        self.events.push(Event::Stored {
            key: key.into(),
            extents: extents.to_vec(),
            sign,
        });
    }

    /// An incomplete upload of `key` changes by these many uploads, parts and bytes.
    pub(super) fn upload(&mut self, key: &str, uploads: i64, parts: i64, bytes: i64) {
        self.events.push(Event::Upload {
            key: key.into(),
            uploads,
            parts,
            bytes,
        });
    }
}

fn add_signed(v: u64, d: i64) -> u64 {
    if d >= 0 {
        v.saturating_add(d as u64)
    } else {
        v.saturating_sub(d.unsigned_abs())
    }
}

impl Meta {
    /// The access time recorded for `key` in nanoseconds (0: none).
    pub(crate) fn accessed_nanos(&self, key: &str) -> Result<u64> {
        Ok(match self.tables.get(&key_times_key(key))? {
            Some(v) => decode::<KeyTimesRecord>(&v)?.accessed,
            None => 0,
        })
    }

    /// Turns the transaction's rollup events into rows of the same transaction: each touched
    /// row is read (under the commit lock), changed and written, or removed when it is zero.
    /// The blob pages read for lineages are kept in `pages` (the caller's reference-count
    /// changes use them).
    pub(super) fn rollup_rows(&self, txn: &mut Txn, pages: &mut PageEdits) -> Result<()> {
        if txn.events.is_empty() {
            return Ok(());
        }
        let events = std::mem::take(&mut txn.events);
        // The keys whose times row matters: a live version leaving, or an older one becoming
        // current again. A fresh version alone counts as never read (see `access_bucket`).
        let mut access: HashMap<&str, u64> = HashMap::new();
        for e in &events {
            if let Event::Live {
                key, fresh: false, ..
            } = e
            {
                if !access.contains_key(key.as_str()) {
                    access.insert(key, self.accessed_nanos(key)?);
                }
            }
        }
        // A blob's lineage: its volume's, from the blob's record (in this commit when it is
        // fresh), a few volumes per commit.
        let new_blobs = &txn.new_blobs;
        let mut lineage = |blob: u64| -> Result<u64> {
            let volume = match new_blobs.get(&blob) {
                Some(b) => b.volume,
                None => pages.blob(self, blob)?.volume,
            };
            self.lineage_of(volume)
        };
        let mut deltas = Deltas::default();
        for e in &events {
            let accessed = match e {
                Event::Live { key, .. } => access.get(key.as_str()).copied().unwrap_or(0),
                _ => 0,
            };
            deltas.add(e, accessed, &mut lineage)?;
        }
        // Sorted, so a record's rows (and the reads) go in key order.
        for (prefix, d) in deltas.totals {
            if d.iter().all(|&x| x == 0) {
                continue;
            }
            let row = row_key(prefix, KIND_TOTALS, None);
            let old = match self.tables.get(&row)? {
                Some(v) => decode::<RollupTotals>(&v)?.to_array(),
                None => [0; TOTALS],
            };
            let mut new = [0u64; TOTALS];
            for i in 0..TOTALS {
                new[i] = add_signed(old[i], d[i]);
            }
            if new.iter().all(|&x| x == 0) {
                txn.remove(row);
            } else {
                txn.insert(row, encode(&RollupTotals::from_array(new))?);
            }
        }
        for ((prefix, kind, day), d) in deltas.buckets {
            self.add_to_bucket(txn, row_key(prefix, kind, Some(day)), d)?;
        }
        for (prefix, d) in deltas.snapshot_only {
            self.add_to_bucket(txn, kind_key(prefix, RowKind::SnapshotOnly), d)?;
        }
        for ((prefix, lineage), d) in deltas.stored {
            if d == 0 {
                continue;
            }
            let row = kind_key(prefix, RowKind::Stored(lineage));
            let old = match self.tables.get(&row)? {
                Some(v) => decode::<u64>(&v)?,
                None => 0,
            };
            match add_signed(old, d) {
                0 => txn.remove(row),
                new => txn.insert(row, encode(&new)?),
            }
        }
        Ok(())
    }
}

impl Meta {
    /// Adds `d` (objects, bytes) to the bucket row `row` in `txn` (removed when it falls to
    /// zero).
    fn add_to_bucket(&self, txn: &mut Txn, row: Vec<u8>, d: [i64; 2]) -> Result<()> {
        if d == [0, 0] {
            return Ok(());
        }
        let old = match self.tables.get(&row)? {
            Some(v) => decode::<RollupBucket>(&v)?,
            None => RollupBucket::default(),
        };
        let new = RollupBucket {
            objects: add_signed(old.objects, d[0]),
            bytes: add_signed(old.bytes, d[1]),
        };
        if new == RollupBucket::default() {
            txn.remove(row);
        } else {
            txn.insert(row, encode(&new)?);
        }
        Ok(())
    }

    /// The `s` rows of keys in `(after, until]` (None: from the first key / to the last), in
    /// key order: what gc's retention pass last recorded for them.
    pub(crate) fn snapshot_only_rows(
        &self,
        after: Option<&str>,
        until: Option<&str>,
    ) -> Result<Vec<(String, RollupBucket)>> {
        let start = match after {
            Some(k) => {
                let mut s = snapshot_only_key(k);
                s.push(0);
                s
            }
            None => vec![table::SNAPSHOT_ONLY],
        };
        let mut out = Vec::new();
        for row in self.range(start, Some(vec![table::SNAPSHOT_ONLY + 1])) {
            let (k, v) = row?;
            let key = std::str::from_utf8(&k[1..]).map_err(|_| crate::StoreError::Corrupt {
                what: format!("snapshot-only row {:?} is not UTF-8", &k[..]),
            })?;
            if until.is_some_and(|u| key > u) {
                break;
            }
            out.push((key.to_string(), decode(&v)?));
        }
        Ok(out)
    }

    /// Records what only snapshots keep of each key (`changes`: key, its new figure; zero
    /// removes the row) in one log record, with the prefixes' rows: each key's old figure is
    /// read under the commit lock, so the prefix rows stay the sum of the `s` rows.
    pub(crate) fn set_snapshot_only(&self, changes: &[(String, RollupBucket)]) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let _state = self.lock();
        let mut txn = Txn::new();
        for (key, new) in changes {
            let row = snapshot_only_key(key);
            let old: RollupBucket = self.get(&row)?.unwrap_or_default();
            if old == *new {
                continue;
            }
            if *new == RollupBucket::default() {
                txn.remove(&row);
            } else {
                txn.insert(&row, encode(new)?);
            }
            txn.events.push(Event::SnapshotOnly {
                key: key.clone(),
                versions: new.objects as i64 - old.objects as i64,
                bytes: new.bytes as i64 - old.bytes as i64,
            });
        }
        self.write_rows(txn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ancestors_are_root_and_each_slash() {
        let a: Vec<_> = ancestors("a/b/c").collect();
        assert_eq!(a, vec!["", "a/", "a/b/"]);
        let a: Vec<_> = ancestors("a/b/").collect();
        assert_eq!(a, vec!["", "a/", "a/b/"]);
        let a: Vec<_> = ancestors("top").collect();
        assert_eq!(a, vec![""]);
    }

    #[test]
    fn row_keys_round_trip_and_sort_by_prefix() {
        let t = row_key("a/", KIND_TOTALS, None);
        let m = row_key("a/", KIND_MODIFIED, Some(20_000));
        assert_eq!(parse_row_key(&t), Some(("a/", RowKind::Totals)));
        assert_eq!(parse_row_key(&m), Some(("a/", RowKind::Modified(20_000))));
        let st = kind_key("a/", RowKind::Stored(7));
        assert_eq!(parse_row_key(&st), Some(("a/", RowKind::Stored(7))));
        assert!(m < st && st < row_key("a/b/", KIND_TOTALS, None));
        assert_eq!(
            kind_key("a/", RowKind::Accessed(3)),
            row_key("a/", KIND_ACCESSED, Some(3))
        );
        // A prefix's own rows sort before its sub-prefixes' rows.
        assert!(m < row_key("a/b/", KIND_TOTALS, None));
        let (lo, hi) = own_rows("a/");
        assert!(lo <= t && t < hi && m < hi);
        assert!(row_key("a/b/", KIND_TOTALS, None) > hi);
        assert_eq!(parse_row_key(b"Rbad"), None);
    }

    #[test]
    fn deltas_sum_per_row() {
        let mut d = Deltas::default();
        let live = |sign| Event::Live {
            key: "x/y".into(),
            size: 10,
            nanos: 3 * DAY_NANOS,
            sign,
            fresh: false,
        };
        let events = [live(1), live(1), live(-1)];
        let mut none = |_| -> Result<u64> { unreachable!("no extents") };
        d.add(&events[0], 4 * DAY_NANOS, &mut none).unwrap();
        d.add(&events[1], 0, &mut none).unwrap();
        d.add(&events[2], 0, &mut none).unwrap();
        let root = d.totals[""];
        assert_eq!(root[0..2], [1, 10]);
        assert_eq!(d.buckets[&("x/", KIND_MODIFIED, 3)], [1, 10]);
        assert_eq!(d.buckets[&("x/", KIND_ACCESSED, 4)], [1, 10]);
        // The maps iterate in the rows' key order.
        let keys: Vec<_> = d
            .buckets
            .keys()
            .map(|&(p, k, day)| row_key(p, k, Some(day)))
            .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        let mut t = Deltas::default();
        for k in ["a/b/c", "a/bc", "a0", "a/"] {
            t.total(k, 0, 1, 1, 1);
        }
        let keys: Vec<_> = t
            .totals
            .keys()
            .map(|p| row_key(p, KIND_TOTALS, None))
            .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn stored_bytes_sum_per_lineage_and_holes_count_apart() {
        let ext = |blob, len| Extent {
            blob,
            offset: 0,
            len,
        };
        let put = Event::Stored {
            key: "a/b/f".into(),
            extents: vec![ext(1, 10), ext(2, 5), Extent::hole(7), ext(3, 4)],
            sign: 1,
        };
        let gone = Event::Stored {
            key: "a/c".into(),
            extents: vec![ext(3, 4)],
            sign: -1,
        };
        // Blobs 1 and 2 are in lineage 100, blob 3 in 200.
        let mut lineage = |b: u64| -> Result<u64> { Ok(if b == 3 { 200 } else { 100 }) };
        let mut d = Deltas::default();
        d.add(&put, 0, &mut lineage).unwrap();
        d.add(&gone, 0, &mut lineage).unwrap();
        assert_eq!(d.stored[&("a/b/", 100)], 15);
        assert_eq!(d.stored[&("a/b/", 200)], 4);
        assert_eq!(d.stored[&("a/b/", HOLE_LINEAGE)], 7);
        assert_eq!(d.stored[&("a/", 200)], 0);
        assert_eq!(d.stored[&("", 100)], 15);
        assert!(!d.stored.contains_key(&("a/c", 200)));
    }

    #[test]
    fn an_access_older_than_the_version_is_no_access() {
        assert_eq!(access_bucket(0, 5), None);
        assert_eq!(access_bucket(4, 5), None);
        assert_eq!(access_bucket(5, 5), Some(0));
        assert_eq!(access_bucket(DAY_NANOS * 2, 5), Some(2));
    }
}
