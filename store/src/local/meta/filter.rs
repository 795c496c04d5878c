//! Which keys sled's `c`, `d` and `t` tables may hold: a Bloom filter that spares a commit of
//! a new key its sled reads.
//!
//! Every commit reads the key's current row (for its condition and the counters), and a key
//! with no current row its `d` row (a deleted key's, which the new version removes); a commit
//! that ends a live version (a rename, an unlink, an overwrite) reads the key's `t` row (its
//! access time, for the rollup's access buckets), which most keys never have. For a key that
//! is not in the in-memory tables these reads go to sled, and for a row that does not exist
//! they find nothing at the price of a tree descent each (3 to 8 µs, a third of a small put).
//! The filter answers "certainly not in sled" for most of them instead. Its entries are row
//! keys (the table's tag, then the key), so a key's `c`, `d` and `t` rows are separate entries.
//!
//! It is exact where it must be: it never says "absent" for a row sled's `c`, `d` or `t` table
//! holds. That holds because, once the store is open, only the checkpoint writes rows into
//! sled ([`super::memtable::Tables::checkpoint`], one at a time): it adds every `c`, `d` and
//! `t` key it is about to apply before applying it, and it (re)builds the filter from a scan
//! of those tables while no other checkpoint runs. A reader consults the filter only after
//! missing the in-memory tables, which hold a row until sled (and so the filter) has it.
//! A filter that is not built yet, or holds more keys than it was sized for, answers "maybe"
//! for every key until the next checkpoint rebuilds it, twice as large. The migration that
//! builds the `d` table of a format-2 store rebuilds it too (`meta/deleted.rs`). A filter a
//! clean shutdown saved with format 1 knew no `t` key, so it is not read back (format 2).

use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Bits per key the filter is sized for (about 1 % false positives at capacity).
const BITS_PER_KEY: usize = 10;
/// Bit positions per key.
const PROBES: u64 = 7;
/// The fewest keys a filter is sized for (1.25 MiB of bits): a store that starts empty
/// rebuilds it only past a million keys.
const MIN_CAPACITY: usize = 1 << 20;

/// The saved filter's first bytes.
const SAVED_MAGIC: &[u8; 8] = b"objfs-kf";
/// The saved filter's format: 2 covers the `t` table (1 covered `c` and `d` only).
const SAVED_FORMAT: u32 = 2;
/// Bytes before the saved filter's bit words.
const SAVED_HEADER: usize = 56;
/// A key whose hash, saved with the filter, tells whether this build hashes as the one that
/// saved it.
const PROBE_KEY: &[u8] = b"keyfilter-probe";

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

    /// Records `key` as possibly present (counted even when it is already).
    #[cfg(test)]
    pub fn add(&self, key: &[u8]) {
        self.add_hash(hash(key))
    }

    /// [`KeyFilter::add`], unless a complete filter already answers "maybe" for `key` (its
    /// bits are all set): an overwrite of a key sled holds does not count towards the keys
    /// the filter is sized for. Counting every overwrite made a store whose keys are
    /// rewritten often rebuild the filter, a scan of every current row, again and again.
    pub fn add_new(&self, key: &[u8]) {
        let h = hash(key);
        if self.needs_build() || !self.contains_hash(h) {
            self.add_hash(h);
        }
    }

    fn contains_hash(&self, h: u64) -> bool {
        self.positions(h)
            .all(|p| self.bits[(p / 64) as usize].load(Ordering::Relaxed) & (1 << (p % 64)) != 0)
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

    /// The filter as the file a clean shutdown leaves (docs/FORMAT.md, "The key filter"),
    /// valid for sled as it stands with [`crate::local::records::misc::LOG_APPLIED`] =
    /// `log_applied`. `None` when it is not complete (nothing worth saving).
    pub fn to_bytes(&self, log_applied: u64) -> Option<Vec<u8>> {
        if self.needs_build() {
            return None;
        }
        let mut out = Vec::with_capacity(SAVED_HEADER + 8 * self.bits.len() + 32);
        out.extend_from_slice(SAVED_MAGIC);
        out.extend_from_slice(&SAVED_FORMAT.to_le_bytes());
        out.extend_from_slice(&(PROBES as u32).to_le_bytes());
        out.extend_from_slice(&log_applied.to_le_bytes());
        out.extend_from_slice(&hash(PROBE_KEY).to_le_bytes());
        out.extend_from_slice(&(self.capacity as u64).to_le_bytes());
        out.extend_from_slice(&(self.added.load(Ordering::Relaxed) as u64).to_le_bytes());
        out.extend_from_slice(&(self.bits.len() as u64).to_le_bytes());
        for w in &self.bits {
            out.extend_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
        }
        let sum = blake3::hash(&out);
        out.extend_from_slice(sum.as_bytes());
        Some(out)
    }

    /// A complete filter read back from [`KeyFilter::to_bytes`], or `None` when the bytes
    /// are not one (torn, corrupt, another format), were saved for another state of sled
    /// (`log_applied` differs), or were hashed by another build's hasher (the probe key's
    /// hash differs: std's `DefaultHasher` may change between Rust releases).
    pub fn from_bytes(b: &[u8], log_applied: u64) -> Option<KeyFilter> {
        let body_len = b.len().checked_sub(32)?;
        let (body, sum) = b.split_at(body_len);
        if body.len() < SAVED_HEADER || blake3::hash(body).as_bytes() != sum {
            return None;
        }
        let u32_at = |at: usize| body[at..at + 4].try_into().ok().map(u32::from_le_bytes);
        let u64_at = |at: usize| body[at..at + 8].try_into().ok().map(u64::from_le_bytes);
        let words = usize::try_from(u64_at(48)?).ok()?;
        if &body[..8] != SAVED_MAGIC
            || u32_at(8)? != SAVED_FORMAT
            || u64::from(u32_at(12)?) != PROBES
            || u64_at(16)? != log_applied
            || u64_at(24)? != hash(PROBE_KEY)
            || !words.is_power_of_two()
            || body.len() != SAVED_HEADER + 8 * words
        {
            return None;
        }
        let bits = body[SAVED_HEADER..]
            .chunks_exact(8)
            .map(|c| c.try_into().map(|w| AtomicU64::new(u64::from_le_bytes(w))))
            .collect::<std::result::Result<Vec<_>, _>>()
            .ok()?;
        Some(KeyFilter {
            bits,
            mask: (words as u64 * 64) - 1,
            capacity: usize::try_from(u64_at(32)?).ok()?,
            added: AtomicUsize::new(usize::try_from(u64_at(40)?).ok()?),
            ready: AtomicBool::new(true),
        })
    }

    /// False only when `key` was certainly never added to a complete filter.
    pub fn may_contain(&self, key: &[u8]) -> bool {
        self.needs_build() || self.contains_hash(hash(key))
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
    fn a_saved_filter_reads_back_only_for_the_state_it_was_saved_for() {
        let hashes: Vec<u64> = (0..3_000)
            .map(|i| hash(format!("ck/{i}").as_bytes()))
            .collect();
        let f = KeyFilter::build(&hashes);
        f.add(b"cextra");
        let bytes = f.to_bytes(41).expect("a complete filter saves");
        let g = KeyFilter::from_bytes(&bytes, 41).expect("reads back");
        assert!(!g.needs_build());
        assert_eq!(g.added.load(Ordering::Relaxed), 3_001);
        assert_eq!(g.capacity, f.capacity);
        assert!((0..3_000).all(|i| g.may_contain(format!("ck/{i}").as_bytes())));
        assert!(g.may_contain(b"cextra"));
        let denied = |x: &KeyFilter| {
            (0..2_000)
                .filter(|i| !x.may_contain(format!("cother/{i}").as_bytes()))
                .count()
        };
        assert_eq!(denied(&f), denied(&g), "the same bits");
        // Another state of sled, a flipped bit anywhere, a torn file, another format: refused.
        assert!(KeyFilter::from_bytes(&bytes, 42).is_none());
        for at in [0, 9, 20, 60, bytes.len() / 2, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[at] ^= 0x10;
            assert!(KeyFilter::from_bytes(&bad, 41).is_none(), "flip at {at}");
        }
        assert!(KeyFilter::from_bytes(&bytes[..bytes.len() - 1], 41).is_none());
        assert!(KeyFilter::from_bytes(&bytes[..40], 41).is_none());
        assert!(KeyFilter::from_bytes(&[], 41).is_none());
        // A file saved by format 1 (no `t` keys in it), checksum and all: refused.
        let mut old = bytes[..bytes.len() - 32].to_vec();
        old[8..12].copy_from_slice(&1u32.to_le_bytes());
        let sum = blake3::hash(&old);
        old.extend_from_slice(sum.as_bytes());
        assert!(KeyFilter::from_bytes(&old, 41).is_none(), "format 1");
        // Nothing to save before a filter is complete.
        assert!(KeyFilter::unbuilt().to_bytes(1).is_none());
    }

    #[test]
    fn rewriting_the_same_keys_does_not_fill_the_filter() {
        let hashes: Vec<u64> = (0..1_000)
            .map(|i| hash(format!("ck/{i}").as_bytes()))
            .collect();
        let f = KeyFilter::build(&hashes);
        for _ in 0..(MIN_CAPACITY / 1_000 + 2) {
            for i in 0..1_000 {
                f.add_new(format!("ck/{i}").as_bytes());
            }
        }
        assert!(
            !f.needs_build(),
            "added {}",
            f.added.load(Ordering::Relaxed)
        );
        assert_eq!(f.added.load(Ordering::Relaxed), 1_000);
        // New keys still count, and are found.
        for i in 0..500 {
            f.add_new(format!("cnew/{i}").as_bytes());
        }
        let added = f.added.load(Ordering::Relaxed);
        assert!(
            (1_490..=1_500).contains(&added),
            "{added} (a few false positives)"
        );
        assert!((0..500).all(|i| f.may_contain(format!("cnew/{i}").as_bytes())));
        // Unbuilt: every add counts (the rebuild that follows scans sled anyway).
        let u = KeyFilter::unbuilt();
        u.add_new(b"cx");
        u.add_new(b"cx");
        assert_eq!(u.added.load(Ordering::Relaxed), 2);
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
