//! A set of byte ranges: what a write buffer holds of its chunk.
//!
//! Each dirty chunk of a writer keeps the ranges written into it, so that reads and commits
//! know which bytes come from the buffer and which from the base version (its gaps).

use std::ops::Range;

/// Sorted, disjoint, non-adjacent ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeSet(Vec<Range<u64>>);

impl RangeSet {
    pub fn insert(&mut self, r: Range<u64>) {
        if r.start >= r.end {
            return;
        }
        let mut start = r.start;
        let mut end = r.end;
        let mut out = Vec::with_capacity(self.0.len() + 1);
        let mut placed = false;
        for x in self.0.drain(..) {
            if x.end < start {
                out.push(x);
            } else if x.start > end {
                if !placed {
                    out.push(start..end);
                    placed = true;
                }
                out.push(x);
            } else {
                start = start.min(x.start);
                end = end.max(x.end);
            }
        }
        if !placed {
            out.push(start..end);
        }
        self.0 = out;
    }

    /// Whether `r` is wholly inside the set.
    pub fn covers(&self, r: &Range<u64>) -> bool {
        self.0.iter().any(|x| x.start <= r.start && x.end >= r.end)
    }

    /// The parts of `r` in the set.
    pub fn within(&self, r: &Range<u64>) -> Vec<Range<u64>> {
        self.0
            .iter()
            .filter_map(|x| {
                let s = x.start.max(r.start);
                let e = x.end.min(r.end);
                (s < e).then_some(s..e)
            })
            .collect()
    }

    /// The parts of `r` not in the set.
    pub fn gaps(&self, r: &Range<u64>) -> Vec<Range<u64>> {
        let mut out = Vec::new();
        let mut pos = r.start;
        for x in &self.0 {
            if x.end <= pos {
                continue;
            }
            if x.start >= r.end {
                break;
            }
            if x.start > pos {
                out.push(pos..x.start);
            }
            pos = pos.max(x.end);
        }
        if pos < r.end {
            out.push(pos..r.end);
        }
        out
    }

    /// Drops everything at or after `at`.
    pub fn truncate(&mut self, at: u64) {
        self.0.retain(|x| x.start < at);
        if let Some(last) = self.0.last_mut() {
            last.end = last.end.min(at);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rangeset_ops() {
        let mut s = RangeSet::default();
        s.insert(10..20);
        s.insert(30..40);
        s.insert(20..25);
        assert_eq!(s.0, vec![10..25, 30..40]);
        s.insert(0..100);
        assert_eq!(s.0, vec![0..100]);
        let mut s = RangeSet::default();
        s.insert(10..20);
        s.insert(30..40);
        assert_eq!(s.gaps(&(0..50)), vec![0..10, 20..30, 40..50]);
        assert_eq!(s.within(&(15..35)), vec![15..20, 30..35]);
        assert!(s.covers(&(12..18)));
        assert!(!s.covers(&(12..32)));
        s.truncate(35);
        assert_eq!(s.0, vec![10..20, 30..35]);
        s.truncate(10);
        assert!(s.is_empty());
    }
}
