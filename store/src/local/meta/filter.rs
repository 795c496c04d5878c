//! Which keys sled's `c` table may hold: a Bloom filter that spares a commit of a new key its
//! sled read.
//!
//! Every commit reads the key's current row (for its condition and the counters); for a key
//! that is not in the in-memory tables that read goes to sled, and for a new key it finds
//! nothing at the price of a tree descent (3 to 8 µs, a third of a small put). The filter
//! answers "certainly not in sled" for most new keys instead.
//!
//! It is exact where it must be: it never says "absent" for a key sled's `c` table holds.
//! That holds because, once the store is open, only the checkpoint writes rows into sled
//! ([`super::memtable::Tables::checkpoint`], one at a time): it adds every `c` key it is
//! about to apply before applying it, and it (re)builds the filter from a scan of sled's `c`
//! table while no other checkpoint runs. A reader consults the filter only after missing the
//! in-memory tables, which hold a row until sled (and so the filter) has it. A filter that is
//! not built yet, or holds more keys than it was sized for, answers "maybe" for every key
//! until the next checkpoint rebuilds it, twice as large.

use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Bits per key the filter is sized for (about 1 % false positives at capacity).
const BITS_PER_KEY: usize = 10;
/// Bit positions per key.
const PROBES: u64 = 7;
/// The fewest keys a filter is sized for (1.25 MiB of bits): a store that starts empty
/// rebuilds it only past a million keys.
const MIN_CAPACITY: usize = 1 << 20;

/// A Bloom filter over byte strings, safe to add to and query concurrently.
pub(crate) struct KeyFilter {
    bits: Vec<AtomicU64>,
    /// `bits.len() * 64 - 1` (a power of two minus one).
    mask: u64,
    /// Keys it is sized for; past this it stops answering "absent".
    capacity: usize,
    added: AtomicUsize,
    /// Built from a full scan: "absent" answers may be trusted.
    ready: AtomicBool,
}

/// The hash the filter is addressed by.
pub(crate) fn hash(key: &[u8]) -> u64 {
    BuildHasherDefault::<DefaultHasher>::default().hash_one(key)
}

impl KeyFilter {
    /// An empty filter for about `keys` keys; `ready` when it is known to hold every key (an
    /// empty table), else it answers "maybe" until built.
    pub fn new(keys: usize, ready: bool) -> KeyFilter {
        let capacity = keys.max(MIN_CAPACITY);
        let words = (capacity * BITS_PER_KEY).div_ceil(64).next_power_of_two();
        KeyFilter {
            bits: (0..words).map(|_| AtomicU64::new(0)).collect(),
            mask: (words as u64 * 64) - 1,
            capacity,
            added: AtomicUsize::new(0),
            ready: AtomicBool::new(ready),
        }
    }

    /// A filter that answers "maybe" for every key (until a checkpoint builds one).
    pub fn unbuilt() -> KeyFilter {
        KeyFilter::new(0, false)
    }

    /// A complete filter of the keys whose hashes ([`hash`]) are given, sized for twice as
    /// many.
    pub fn build(hashes: &[u64]) -> KeyFilter {
        let f = KeyFilter::new(hashes.len() * 2, false);
        for &h in hashes {
            f.add_hash(h);
        }
        f.set_ready();
        f
    }

    fn positions(&self, h: u64) -> impl Iterator<Item = u64> + '_ {
        let (h1, h2) = (h, h.rotate_left(32) | 1);
        (0..PROBES).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) & self.mask)
    }

    /// Records `key` as possibly present.
    pub fn add(&self, key: &[u8]) {
        self.add_hash(hash(key))
    }

    fn add_hash(&self, h: u64) {
        for p in self.positions(h) {
            self.bits[(p / 64) as usize].fetch_or(1 << (p % 64), Ordering::Relaxed);
        }
        self.added.fetch_add(1, Ordering::Relaxed);
    }

    fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// Whether it must be rebuilt: never built, or more keys added than it was sized for.
    pub fn needs_build(&self) -> bool {
        !self.ready.load(Ordering::Acquire) || self.added.load(Ordering::Relaxed) > self.capacity
    }

    /// False only when `key` was certainly never added to a complete filter.
    pub fn may_contain(&self, key: &[u8]) -> bool {
        if self.needs_build() {
            return true;
        }
        self.positions(hash(key))
            .all(|p| self.bits[(p / 64) as usize].load(Ordering::Relaxed) & (1 << (p % 64)) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_denies_a_key_added_and_denies_most_others() {
        let hashes: Vec<u64> = (0..5_000)
            .map(|i| hash(format!("ck/{i}").as_bytes()))
            .collect();
        let f = KeyFilter::build(&hashes);
        for i in 5_000..10_000 {
            f.add(format!("ck/{i}").as_bytes());
        }
        assert!((0..10_000).all(|i| f.may_contain(format!("ck/{i}").as_bytes())));
        let false_positives = (0..10_000)
            .filter(|i| f.may_contain(format!("cother/{i}").as_bytes()))
            .count();
        assert!(false_positives < 300, "{false_positives} false positives");
    }

    #[test]
    fn an_unbuilt_or_overfull_filter_answers_maybe() {
        let f = KeyFilter::unbuilt();
        assert!(f.needs_build());
        assert!(f.may_contain(b"cx"));
        let f = KeyFilter::new(0, true);
        assert!(!f.may_contain(b"cx"));
        for i in 0..=MIN_CAPACITY {
            f.add(format!("c{i}").as_bytes());
        }
        assert!(f.needs_build());
        assert!(f.may_contain(b"cx"), "overfull: must not deny");
    }
}
