//! What the prefetch decorator knows: the small objects it fetched (their answer and, until a
//! read takes it, their body), the fetches in flight and waiting, what each directory's last
//! listing showed, the signals that a directory is being read, and the changes this process
//! made (so that nothing fetched before a change is kept after it).
//!
//! Everything here is plain data under one lock; the decorator (`mod.rs`) and the sessions
//! (`session.rs`) do the I/O.

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
