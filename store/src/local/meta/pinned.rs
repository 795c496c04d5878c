//! A view of the metadata fixed at one commit boundary, read without holding the commit lock:
//! what `du --verify` counts while commits go on.
//!
//! Pinning takes the checkpoint lock (so sled's rows do not change: only a checkpoint writes
//! the tables into sled) and copies the in-memory rows under the tables' read lock (a commit
//! puts a whole log record into the active table under the write lock, so the copy holds every
//! record up to some commit and nothing after it). Reads merge the copy with sled directly: no
//! window re-reads, no lock per row. Commits continue into the active table meanwhile; while a
//! view lives no checkpoint runs, so a commit waits for room only if the active table fills
//! ([`super::MAX_ACTIVE_ROWS`] rows) before the view is dropped.

use std::cmp::Ordering;
use std::iter::Peekable;
use std::sync::MutexGuard;

use sled::IVec;

use super::db::db_error;
use super::memtable::Rows;
use crate::error::Result;

/// The metadata as of one commit boundary (see the module doc).
pub struct Pinned<'a> {
    /// Holds checkpoints off while the view lives.
    pub(super) _checkpoints: MutexGuard<'a, ()>,
    /// The in-memory rows at the pin, newest of each key (`None`: a removal hiding sled's).
    pub(super) rows: Rows,
    pub(super) db: sled::Db,
}

impl Pinned<'_> {
    /// The row of `key` in the view.
    pub fn get(&self, key: &[u8]) -> Result<Option<IVec>> {
        match self.rows.get(key) {
            Some(row) => Ok(row.clone()),
            None => self.db.get(key).map_err(db_error),
        }
    }

    /// Rows from `start` (inclusive) to `end` (exclusive; `None`: to the end), in key order.
    pub fn range(
        &self,
        start: Vec<u8>,
        end: Option<Vec<u8>>,
    ) -> impl Iterator<Item = Result<(IVec, IVec)>> + '_ {
        use std::ops::Bound;
        let upper = match &end {
            Some(e) => Bound::Excluded(e.clone()),
            None => Bound::Unbounded,
        };
        // (BTreeMap::range panics on an inverted range; sled's yields nothing.)
        let empty = end.as_ref().is_some_and(|e| e[..] <= start[..]);
        let mem = (!empty)
            .then(|| {
                self.rows
                    .range::<[u8], _>((Bound::Included(&start[..]), upper.as_ref().map(|e| &e[..])))
            })
            .into_iter()
            .flatten()
            .peekable();
        let sled = match end {
            Some(e) => self.db.range(start..e),
            None => self.db.range(start..),
        }
        .peekable();
        PinnedIter { mem, sled }
    }
}

struct PinnedIter<M: Iterator, S: Iterator> {
    mem: Peekable<M>,
    sled: Peekable<S>,
}

impl<'m, M, S> Iterator for PinnedIter<M, S>
where
    M: Iterator<Item = (&'m IVec, &'m Option<IVec>)>,
    S: Iterator<Item = sled::Result<(IVec, IVec)>>,
{
    type Item = Result<(IVec, IVec)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let order = match (self.mem.peek(), self.sled.peek()) {
                (None, None) => return None,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) | (_, Some(Err(_))) => Ordering::Greater,
                (Some((mk, _)), Some(Ok((sk, _)))) => mk[..].cmp(&sk[..]),
            };
            if order == Ordering::Greater {
                return self.sled.next().map(|r| r.map_err(db_error));
            }
            if order == Ordering::Equal {
                // The table's row replaces sled's.
                self.sled.next();
            }
            let (k, v) = self.mem.next()?;
            if let Some(v) = v {
                return Some(Ok((k.clone(), v.clone())));
            }
        }
    }
}
