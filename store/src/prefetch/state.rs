//! What the prefetch decorator knows: the small objects it fetched (their answer and, until a
//! read takes it, their body), the fetches in flight and waiting, what each directory's last
//! listing showed, the signals that a directory is being read, and the changes this process
//! made (so that nothing fetched before a change is kept after it).
//!
//! Everything here is plain data under one lock; the decorator (`mod.rs`) and the sessions
//! (`session.rs`) do the I/O.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;

use crate::types::ObjectInfo;

/// Changes remembered one by one; past that they are forgotten all at once and every answer
/// asked for before is refused (see [`State::valid`]).
const MAX_CHANGED: usize = 16_384;
/// Entries (fetched, waiting or in flight) kept at most; past that the expired ones go, then
/// new fetches are refused until reads or expiry make room.
pub(super) const MAX_ENTRIES: usize = 65_536;
/// Directories tracked at most (signals, listings); past that the idle ones are forgotten.
const MAX_DIRS: usize = 4096;

/// Taken before a request is sent; its answer is kept only if the key did not change since.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ticket {
    pub generation: u64,
    pub sent: Instant,
}

/// One small object fetched whole: its answer, and its body until a read takes it.
pub(super) struct Fetched {
    pub info: ObjectInfo,
    pub body: Option<Bytes>,
    /// When the GET's answer arrived: it is served for the TTL from then.
    pub arrived: Instant,
    /// The directory whose session fetched it.
    pub dir: String,
    /// Served at least once (a HEAD or a GET answered from it).
    pub used: bool,
}

/// Where a key stands.
pub(super) enum Slot {
    /// Listed by a session, not fetched yet.
    Queued {
        dir: String,
        size: u64,
    },
    /// A GET in flight; the channel turns `true` when it ended (kept or not).
    Fetching(watch::Receiver<bool>),
    Ready(Fetched),
}

/// What one directory's listing showed, for the TTL from when it was sent.
pub(super) struct Listing {
    pub sent: Instant,
    /// The listing covered the keys after this one (`None`: from the start) ...
    pub from: Option<String>,
    /// ... up to and including this one (`None`: to the end).
    pub to: Option<String>,
    /// Its common prefixes (subdirectories), each ending in `/`.
    pub prefixes: HashSet<String>,
}

impl Listing {
    /// Whether the listing says that nothing lies below `prefix` (a name of the directory
    /// followed by `/`): it covered that place and had no such common prefix.
    pub fn nothing_below(&self, prefix: &str, ttl: Duration) -> bool {
        self.sent.elapsed() < ttl
            && self.from.as_deref().is_none_or(|f| prefix > f)
            && self.to.as_deref().is_none_or(|t| prefix <= t)
            && !self.prefixes.contains(prefix)
    }
}

/// What is known of one directory (a prefix ending in `/`, or `""`).
#[derive(Default)]
pub(super) struct DirState {
    /// Cold lookups (HEADs nothing here answered) since `window_start`.
    pub misses: u32,
    /// The key of the last cold lookup counted (its GET is not counted again).
    pub last_signal: Option<String>,
    pub window_start: Option<Instant>,
    /// When the directory was last listed by a reader (readdir).
    pub readdir_at: Option<Instant>,
    /// A session is running.
    pub active: bool,
    /// The last session's listing.
    pub listing: Option<Listing>,
    /// Where the next session starts (the last key the previous one listed, when it stopped
    /// before the end).
    pub next_after: Option<String>,
    /// Objects the sessions of this directory fetched, and of those, served.
    pub fetched: usize,
    pub used: usize,
    /// No session before this (the last ones fetched mostly what nobody read).
    pub cold_until: Option<Instant>,
    /// The running session's plan.
    pub plan: Option<Plan>,
}

/// What a session fetches, in which order, and where the reader is: the session fetches the
/// files after the reader's last one, at most `window` ahead of it, so that what it fetches
/// is read before its TTL runs out however far the directory goes; past the last file it goes
/// on from the first (a reader that started in the middle, or goes backwards, gets those too).
pub(super) struct Plan {
    /// The small files of the directory, in the order they are fetched: the listing's
    /// (byte order, as `ls`, `cp -r`, `tar` and `rsync` read), or natural order (`f2` before
    /// `f10`, as a loop over numbered names reads) once the reader is seen to go that way.
    pub order: Vec<String>,
    /// Whether each file (by position in `order`) was taken by a fetcher already.
    taken: Vec<bool>,
    left: usize,
    index: HashMap<String, usize>,
    /// The position of the reader's last request among these files.
    reader: Option<usize>,
    /// How far after the reader the files are all taken (a hint: fetchers look from there).
    scanned: usize,
    /// Each file's rank in natural order (by position in `order`), computed once, when the
    /// reader first skips in the plan's order (so a reader that jumps around costs one sort,
    /// not a scan of the plan per request).
    ranks: Option<Vec<usize>>,
    pub natural: bool,
    /// When the reader last asked for one of these files (or the session began).
    pub moved: Instant,
}

/// What a session's fetcher does next.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Take {
    Fetch(String),
    /// Nothing within the window: wait for the reader.
    Wait,
    /// Every file was taken.
    Done,
}

impl Plan {
    pub fn new(order: Vec<String>) -> Plan {
        let n = order.len();
        let mut p = Plan {
            order,
            taken: vec![false; n],
            left: n,
            index: HashMap::new(),
            reader: None,
            scanned: 0,
            ranks: None,
            natural: false,
            moved: Instant::now(),
        };
        p.reindex();
        p
    }

    fn reindex(&mut self) {
        self.index = self
            .order
            .iter()
            .enumerate()
            .map(|(i, k)| (k.clone(), i))
            .collect();
    }

    /// The reader asked for `key`. When it is not the file after the reader's last one in the
    /// plan's order but is in natural order, the plan switches to natural order. Fetching
    /// goes on after the reader. Returns whether `key` is one of the plan's files.
    pub fn reader_at(&mut self, key: &str) -> bool {
        let Some(&(mut i)) = self.index.get(key) else {
            return false;
        };
        if let Some(prev) = self.reader {
            if i != prev + 1 && !self.natural && self.is_natural_successor(prev, i) {
                self.natural = true;
                let mut pairs: Vec<(String, bool)> = std::mem::take(&mut self.order)
                    .into_iter()
                    .zip(std::mem::take(&mut self.taken))
                    .collect();
                pairs.sort_by(|a, b| natural_cmp(&a.0, &b.0));
                (self.order, self.taken) = pairs.into_iter().unzip();
                self.ranks = None;
                self.reindex();
                i = self.index[key];
            }
        }
        if self.reader != Some(i) {
            self.scanned = 0;
        }
        self.reader = Some(i);
        self.moved = Instant::now();
        true
    }

    /// Whether the file at `i` comes right after the file at `prev` in natural order (no
    /// file of the plan lies between them).
    fn is_natural_successor(&mut self, prev: usize, i: usize) -> bool {
        let order = &self.order;
        let ranks = self.ranks.get_or_insert_with(|| {
            let mut by_name: Vec<usize> = (0..order.len()).collect();
            by_name.sort_by(|&a, &b| natural_cmp(&order[a], &order[b]));
            let mut ranks = vec![0; order.len()];
            for (rank, pos) in by_name.into_iter().enumerate() {
                ranks[pos] = rank;
            }
            ranks
        });
        ranks[i] == ranks[prev] + 1
    }

    /// The next file to fetch: the first not yet taken after the reader's position (going
    /// round past the last file) for which `wanted` holds (still queued), at most `window`
    /// positions after the reader.
    pub fn take(&mut self, window: usize, wanted: impl Fn(&str) -> bool) -> Take {
        let n = self.order.len();
        // Before the reader's first request, the first file is "after" it.
        let from = self.reader.map_or(n.saturating_sub(1), |r| r);
        while self.left > 0 {
            let step = self.scanned + 1;
            if step > window.max(1) || step > n {
                return Take::Wait;
            }
            let pos = (from + step) % n;
            if self.taken[pos] {
                self.scanned = step;
                continue;
            }
            self.taken[pos] = true;
            self.left -= 1;
            self.scanned = step;
            if wanted(&self.order[pos]) {
                return Take::Fetch(self.order[pos].clone());
            }
        }
        Take::Done
    }
}

/// Natural order: runs of ASCII digits compare as numbers (`f2` < `f10`), everything else
/// bytewise; equal numbers with different leading zeros fall back to byte order.
pub(super) fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    loop {
        match (x.first(), y.first()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(c), Some(d)) if c.is_ascii_digit() && d.is_ascii_digit() => {
                let run = |s: &[u8]| s.iter().take_while(|c| c.is_ascii_digit()).count();
                let (n, m) = (run(x), run(y));
                let trim = |s: &[u8]| {
                    let z = s.iter().take_while(|c| **c == b'0').count();
                    s[z..].to_vec()
                };
                let (u, v) = (trim(&x[..n]), trim(&y[..m]));
                let ord = u.len().cmp(&v.len()).then_with(|| u.cmp(&v));
                if ord != Ordering::Equal {
                    return ord;
                }
                x = &x[n..];
                y = &y[m..];
            }
            (Some(c), Some(d)) => {
                if c != d {
                    return c.cmp(d);
                }
                x = &x[1..];
                y = &y[1..];
            }
        }
    }
}

/// Entries a sweep or a change dropped (for the decorator's counters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Dropped {
    /// Fetched answers whose TTL ran out, and of those, the ones never served.
    pub expired: u64,
    pub expired_unused: u64,
    /// Fetched or queued answers dropped by a change of their key.
    pub invalidated: u64,
}

/// The decorator's state.
pub(super) struct State {
    pub slots: HashMap<String, Slot>,
    pub dirs: HashMap<String, DirState>,
    /// Bytes of bodies held, and reserved by fetches in flight.
    pub bytes: usize,
    /// Sessions running.
    pub active: usize,
    generation: u64,
    /// Key -> the generation of this process's last change of it.
    changed: HashMap<String, u64>,
    /// Tickets older than this are refused (the change map was cleared).
    floor: u64,
}

/// The directory of `key`: its prefix up to and including the last `/` (`""` at the top).
pub(super) fn dir_of(key: &str) -> &str {
    match key.rfind('/') {
        Some(i) => &key[..=i],
        None => "",
    }
}

impl State {
    pub fn new() -> State {
        State {
            slots: HashMap::new(),
            dirs: HashMap::new(),
            bytes: 0,
            active: 0,
            generation: 0,
            changed: HashMap::new(),
            floor: 0,
        }
    }

    pub fn ticket(&self) -> Ticket {
        Ticket {
            generation: self.generation,
            sent: Instant::now(),
        }
    }

    /// Whether an answer about `key` asked for with `t` may be kept: this process did not
    /// change the key since.
    pub fn valid(&self, t: Ticket, key: &str) -> bool {
        t.generation >= self.floor && self.changed.get(key).is_none_or(|g| *g <= t.generation)
    }

    /// Whether a listing of `dir` asked for with `t` may be kept: no key below it changed.
    fn listing_valid(&self, t: Ticket, dir: &str) -> bool {
        t.generation >= self.floor
            && !self
                .changed
                .iter()
                .any(|(k, g)| *g > t.generation && k.starts_with(dir))
    }

    /// This process changed `key`: its entry goes, the listings of the directories above it
    /// go, and answers to requests already sent about it will not be kept.
    pub fn forget(&mut self, key: &str) -> Dropped {
        self.generation += 1;
        if self.changed.len() >= MAX_CHANGED {
            self.changed.clear();
            self.floor = self.generation;
        }
        self.changed.insert(key.to_string(), self.generation);
        if let Some(Slot::Ready(f)) = self.slots.get(key) {
            let len = f.body.as_ref().map_or(0, Bytes::len);
            self.bytes = self.bytes.saturating_sub(len);
        }
        let mut dropped = Dropped::default();
        if matches!(
            self.slots.get(key),
            Some(Slot::Ready(_) | Slot::Queued { .. })
        ) {
            self.slots.remove(key);
            dropped.invalidated = 1;
        }
        for (i, _) in key.match_indices('/') {
            if let Some(d) = self.dirs.get_mut(&key[..=i]) {
                d.listing = None;
            }
        }
        if let Some(d) = self.dirs.get_mut("") {
            d.listing = None;
        }
        if let Some(d) = self.dirs.get_mut(&format!("{key}/")) {
            d.listing = None;
        }
        dropped
    }

    /// Keeps a session's listing of `dir` (unless a key below it changed since `t`).
    pub fn keep_listing(&mut self, t: Ticket, dir: &str, listing: Listing) {
        if !self.listing_valid(t, dir) {
            return;
        }
        if let Some(d) = self.dirs.get_mut(dir) {
            d.listing = Some(listing);
        }
    }

    /// The directory `dir`'s state, made when missing (idle directories are forgotten when
    /// there are too many).
    pub fn dir(&mut self, dir: &str) -> &mut DirState {
        if !self.dirs.contains_key(dir) && self.dirs.len() >= MAX_DIRS {
            self.dirs.retain(|_, d| d.active);
        }
        self.dirs.entry(dir.to_string()).or_default()
    }

    /// Removes the answers older than `ttl` (their bodies' bytes freed).
    pub fn sweep(&mut self, ttl: Duration) -> Dropped {
        let mut freed = 0;
        let mut dropped = Dropped::default();
        self.slots.retain(|_, s| match s {
            Slot::Ready(f) if f.arrived.elapsed() >= ttl => {
                freed += f.body.as_ref().map_or(0, Bytes::len);
                dropped.expired += 1;
                dropped.expired_unused += u64::from(!f.used);
                false
            }
            _ => true,
        });
        self.bytes = self.bytes.saturating_sub(freed);
        dropped
    }

    /// Marks `f` served (counted once for its directory).
    pub fn mark_used(dirs: &mut HashMap<String, DirState>, f: &mut Fetched) {
        if !f.used {
            f.used = true;
            if let Some(d) = dirs.get_mut(&f.dir) {
                d.used += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_refuses_answers_asked_before_it() {
        let mut s = State::new();
        let t = s.ticket();
        assert!(s.valid(t, "d/a"));
        s.forget("d/a");
        assert!(!s.valid(t, "d/a"));
        assert!(s.valid(t, "d/b"));
        assert!(s.valid(s.ticket(), "d/a"));
        // A listing of d/ asked before the change of d/a is not kept.
        s.dir("d/");
        let listing = || Listing {
            sent: Instant::now(),
            from: None,
            to: None,
            prefixes: HashSet::new(),
        };
        s.keep_listing(t, "d/", listing());
        assert!(s.dirs["d/"].listing.is_none());
        s.keep_listing(s.ticket(), "d/", listing());
        assert!(s.dirs["d/"].listing.is_some());
        // A change below d/ drops it.
        s.forget("d/x/y");
        assert!(s.dirs["d/"].listing.is_none());
    }

    #[test]
    fn a_listing_answers_only_the_places_it_covered() {
        let ttl = Duration::from_secs(60);
        let l = Listing {
            sent: Instant::now(),
            from: Some("d/b".into()),
            to: Some("d/m".into()),
            prefixes: ["d/sub/".to_string()].into_iter().collect(),
        };
        assert!(l.nothing_below("d/c/", ttl));
        assert!(!l.nothing_below("d/a/", ttl), "before the listing's start");
        assert!(!l.nothing_below("d/z/", ttl), "after its end");
        assert!(!l.nothing_below("d/sub/", ttl), "a subdirectory");
        assert!(!l.nothing_below("d/c/", Duration::ZERO), "expired");
        assert_eq!(dir_of("a/b/c"), "a/b/");
        assert_eq!(dir_of("c"), "");
    }

    #[test]
    fn natural_order_compares_numbers_as_numbers() {
        let mut v = vec!["f10", "f2", "f1", "g", "f02", "f", "f1a", "f1b", "f100"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            v,
            ["f", "f1", "f1a", "f1b", "f02", "f2", "f10", "f100", "g"]
        );
    }

    #[test]
    fn a_plan_follows_the_reader_within_its_window() {
        let keys: Vec<String> = {
            let mut k: Vec<String> = (0..30).map(|i| format!("d/f{i}")).collect();
            k.sort();
            k
        };
        let all = |_: &str| true;
        // A reader in listing order: fetches run at most 4 ahead of it.
        let mut p = Plan::new(keys.clone());
        assert!(p.reader_at("d/f0"));
        let taken: Vec<Take> = (0..5).map(|_| p.take(4, all)).collect();
        assert_eq!(taken[0], Take::Fetch("d/f1".into()));
        assert_eq!(
            taken[3],
            Take::Fetch("d/f12".into()),
            "listing order: f1, f10, f11..."
        );
        assert_eq!(taken[4], Take::Wait);
        assert!(p.reader_at("d/f1"));
        assert_eq!(p.take(4, all), Take::Fetch("d/f13".into()));
        assert!(!p.natural);
        // A reader in natural order: f0, f1, then f2 (not f10): the plan switches, and goes
        // on after f2, skipping what was taken already.
        let mut p = Plan::new(keys.clone());
        p.reader_at("d/f0");
        p.reader_at("d/f1");
        assert_eq!(p.take(4, all), Take::Fetch("d/f10".into()));
        assert!(p.reader_at("d/f2"));
        assert!(p.natural);
        let fetched = |k: &str| k != "d/f3";
        assert_eq!(p.take(4, fetched), Take::Fetch("d/f4".into()));
        assert_eq!(p.take(4, all), Take::Fetch("d/f5".into()));
        assert_eq!(p.take(4, all), Take::Fetch("d/f6".into()));
        assert_eq!(p.take(4, all), Take::Wait);
        // Near the end it goes round to the files before the reader (f0 and f1 here; f2,
        // which the reader read itself, is no longer queued), within the window.
        assert!(p.reader_at("d/f28"));
        let not_f2 = |k: &str| k != "d/f2";
        let rest: Vec<Take> = (0..4).map(|_| p.take(4, not_f2)).collect();
        assert_eq!(
            rest,
            [
                Take::Fetch("d/f29".into()),
                Take::Fetch("d/f0".into()),
                Take::Fetch("d/f1".into()),
                Take::Wait
            ]
        );
        assert!(p.reader_at("d/f29"));
        let mut n = 0;
        while let Take::Fetch(_) = p.take(100, all) {
            n += 1;
        }
        // Taken before: f10, f3, f4, f5, f6, f29, f0, f1, f2.
        assert_eq!(n, 30 - 9, "every file not taken yet, once");
        assert_eq!(p.take(100, all), Take::Done);
        assert!(!p.reader_at("d/other"));
    }

    #[test]
    fn too_many_changes_refuse_every_older_answer() {
        let mut s = State::new();
        let t = s.ticket();
        for i in 0..=MAX_CHANGED {
            s.forget(&format!("k{i}"));
        }
        assert!(!s.valid(t, "never-changed"));
        assert!(s.valid(s.ticket(), "never-changed"));
    }
}
