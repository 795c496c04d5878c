//! Range scans over the in-memory tables and sled together, a window of the tables at a time.
//!
//! Rows committed since the last checkpoint live in the memory tables ([`super::memtable`]),
//! older ones in sled. A scan merges both in key order, a table's row replacing sled's and a
//! table's removal hiding it. The tables are read [`WINDOW`] keys at a time under their read
//! lock, never as a whole: a listing page that seeks past common prefixes costs what it reads,
//! however many rows the tables hold (copying every row of the range up front made a page of
//! 1,000 entries over 1,000,000 fresh keys cost 0.8 s instead of 2 ms).
//!
//! Why no row is missed: a checkpoint writes rows into sled before it drops the table that
//! held them. Each window is copied first and sled's iterator is (re)opened after it, from the
//! window's start, so a row that was in no table when the window was copied was in sled before
//! the iterator opened. Sled rows beyond the window's last key wait until the next window is
//! read, so a newer table row beyond it still replaces them.

use std::cmp::Ordering;
use std::ops::Bound;
use std::sync::{Arc, RwLock};

use sled::IVec;

use super::db::db_error;
use super::memtable::Mem;
use crate::error::Result;

/// Keys read from the tables per window.
const WINDOW: usize = 256;

/// A range scan over the tables and sled, in key order, removes hidden.
pub struct Merged {
    mem: Arc<RwLock<Mem>>,
    db: sled::Db,
    end: Option<Vec<u8>>,
    /// The current window of the tables' rows, and where the scan is in it.
    window: Vec<(IVec, Option<IVec>)>,
    pos: usize,
    /// The window's last key when more may follow (`None`: it reaches `end`).
    hi: Option<IVec>,
    sled: std::iter::Fuse<sled::Iter>,
    peeked: Option<(IVec, IVec)>,
}

impl Merged {
    pub(super) fn new(
        mem: Arc<RwLock<Mem>>,
        db: sled::Db,
        start: Vec<u8>,
        end: Option<Vec<u8>>,
    ) -> Merged {
        let (window, hi) = read(&mem, Bound::Included(&start), &end);
        let sled = sled_range(&db, &start, &end);
        Merged {
            mem,
            db,
            end,
            window,
            pos: 0,
            hi,
            sled,
            peeked: None,
        }
    }

    /// Continues the scan from `start` (forward only: skipping a listing's common prefix).
    pub fn seek(&mut self, start: Vec<u8>) {
        match &self.hi {
            Some(hi) if start[..] > hi[..] => self.read_window(Bound::Included(&start)),
            _ => {
                self.pos += self.window[self.pos..].partition_point(|(k, _)| k[..] < start[..]);
            }
        }
        self.peeked = None;
        self.sled = sled_range(&self.db, &start, &self.end);
    }

    /// Reads the tables' next window from `start`, then reopens sled's iterator there.
    fn read_window(&mut self, start: Bound<&[u8]>) {
        let (rows, hi) = read(&self.mem, start, &self.end);
        self.window = rows;
        self.pos = 0;
        self.hi = hi;
        self.peeked = None;
        let from = match start {
            Bound::Included(s) => s.to_vec(),
            Bound::Excluded(s) => [s, &[0]].concat(),
            Bound::Unbounded => Vec::new(),
        };
        self.sled = sled_range(&self.db, &from, &self.end);
    }
}

type Window = (Vec<(IVec, Option<IVec>)>, Option<IVec>);

fn read(mem: &RwLock<Mem>, start: Bound<&[u8]>, end: &Option<Vec<u8>>) -> Window {
    let m = mem.read().unwrap_or_else(|p| p.into_inner());
    m.window(start, end, WINDOW)
}

fn sled_range(db: &sled::Db, start: &[u8], end: &Option<Vec<u8>>) -> std::iter::Fuse<sled::Iter> {
    match end {
        Some(e) => db.range(start.to_vec()..e.clone()),
        None => db.range(start.to_vec()..),
    }
    .fuse()
}

impl Iterator for Merged {
    type Item = Result<(IVec, IVec)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.peeked.is_none() {
                match self.sled.next() {
                    Some(Ok(row)) => self.peeked = Some(row),
                    Some(Err(e)) => return Some(Err(db_error(e))),
                    None => {}
                }
            }
            // A sled row past the window waits for the window that covers it.
            let sled_row = self
                .peeked
                .as_ref()
                .filter(|(sk, _)| self.hi.as_ref().is_none_or(|hi| sk[..] <= hi[..]));
            let order = match (self.window.get(self.pos), sled_row) {
                (None, None) => match self.hi.take() {
                    Some(hi) => {
                        self.read_window(Bound::Excluded(&hi));
                        continue;
                    }
                    None => return None,
                },
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some((wk, _)), Some((sk, _))) => wk.cmp(sk),
            };
            match order {
                Ordering::Greater => return self.peeked.take().map(Ok),
                // The table's row replaces sled's.
                Ordering::Equal => self.peeked = None,
                Ordering::Less => {}
            }
            let (k, v) = self.window[self.pos].clone();
            self.pos += 1;
            if let Some(v) = v {
                return Some(Ok((k, v)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A checkpoint copies the table's rows `c` and `d` into sled after the scan's sled
    /// iterator has read sled's last leaf (then `a`, `b`): the scan lists each row once, in
    /// order. Unfused, sled's iterator said `None` after `b`, then `c` once asked again, after
    /// the window had given `c` already.
    #[test]
    fn rows_a_checkpoint_appends_mid_scan_are_listed_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = super::super::sled_batch_tests::open(dir.path());
        let row = |k: &str| (IVec::from(k.as_bytes()), IVec::from(&b"x"[..]));
        for k in ["a", "b"] {
            db.insert(k, "x").expect("insert");
        }
        let table = ["a", "b", "c", "d"]
            .into_iter()
            .map(|k| (IVec::from(k.as_bytes()), Some(IVec::from(&b"x"[..]))))
            .collect();
        let mem = Arc::new(RwLock::new(Mem::with_rows(table)));
        let mut scan = Merged::new(mem, db.clone(), b"a".to_vec(), None);
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(scan.next().expect("a row").expect("no error"));
        }
        for k in ["c", "d"] {
            db.insert(k, "x").expect("insert");
        }
        got.extend(scan.map(|r| r.expect("no error")));
        assert_eq!(got, vec![row("a"), row("b"), row("c"), row("d")]);
    }
}
