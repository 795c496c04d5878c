//! What the bucket answered a moment ago, so that the requests a filesystem makes in a row
//! about one name (a lookup's HEAD and one-key listing below it, then the HEAD of an open,
//! a rename or a create) cost one round trip, not one each.
//!
//! Two kinds of answers are kept, each for `ttl` from the moment its request was sent (the
//! mount gives its attribute TTL: the kernel caches attributes and names for as long, so a
//! change another machine makes is seen within the same window as before):
//!
//! * a HEAD of a key's current version: the version, or that it has none;
//! * a listing below a prefix ending in `/` (a "directory") that found nothing there.
//!
//! Every change this process makes to a key forgets what was kept of that key and of the
//! prefixes above it (so its own writes are never hidden); an answer whose request was sent
//! before such a change (a generation counter) is not kept at all. Pending changes are laid
//! over these answers as over the bucket's own (see `api.rs`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::types::ObjectInfo;

/// Answers kept at most (each kind); past that the expired ones go, then all.
const MAX_ANSWERS: usize = 16_384;

#[derive(Default)]
struct Maps {
    /// Key -> when asked, the current version (`None`: none).
    heads: HashMap<String, (Instant, Option<ObjectInfo>)>,
    /// Prefix (ending in `/`) -> when a listing found nothing below it.
    empty: HashMap<String, Instant>,
    /// Bumped by every change this process makes.
    generation: u64,
}

/// The recent answers of the bucket.
pub struct Recent {
    ttl: Duration,
    maps: Mutex<Maps>,
}

/// Taken before a request is sent; its answer is kept only if nothing changed meanwhile.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    generation: u64,
    sent: Instant,
}

fn trim<V>(map: &mut HashMap<String, V>, ttl: Duration, at: impl Fn(&V) -> Instant) {
    if map.len() < MAX_ANSWERS {
        return;
    }
    map.retain(|_, v| at(v).elapsed() < ttl);
    if map.len() >= MAX_ANSWERS {
        map.clear();
    }
}

impl Recent {
    /// Keeps answers for `ttl` (zero: keeps nothing).
    pub fn new(ttl: Duration) -> Recent {
        Recent {
            ttl,
            maps: Mutex::new(Maps::default()),
        }
    }

    fn maps(&self) -> std::sync::MutexGuard<'_, Maps> {
        self.maps.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether anything is kept at all.
    pub fn enabled(&self) -> bool {
        !self.ttl.is_zero()
    }

    /// Before sending a request whose answer may be kept.
    pub fn ticket(&self) -> Ticket {
        Ticket {
            generation: self.maps().generation,
            sent: Instant::now(),
        }
    }

    /// The bucket's current version of `key` as a HEAD sent within the TTL found it, or
    /// `Some(None)` when it had none — also when a listing found nothing below a directory
    /// prefix of the key (`d/` for `d/x` and for the marker `d/` itself); `None` when nothing
    /// is known.
    pub fn head(&self, key: &str) -> Option<Option<ObjectInfo>> {
        if !self.enabled() {
            return None;
        }
        let m = self.maps();
        if let Some((at, info)) = m.heads.get(key) {
            if at.elapsed() < self.ttl {
                return Some(info.clone());
            }
        }
        if m.empty.is_empty() {
            return None;
        }
        let below_empty = key.match_indices('/').any(|(i, _)| {
            m.empty
                .get(&key[..=i])
                .is_some_and(|at| at.elapsed() < self.ttl)
        });
        below_empty.then_some(None)
    }

    /// Keeps a HEAD's answer (`None`: no current version).
    pub fn keep_head(&self, t: Ticket, key: &str, info: Option<ObjectInfo>) {
        if !self.enabled() {
            return;
        }
        let mut m = self.maps();
        if m.generation != t.generation {
            return;
        }
        trim(&mut m.heads, self.ttl, |v| v.0);
        m.heads.insert(key.to_string(), (t.sent, info));
    }

    /// Whether a listing sent within the TTL found nothing below `prefix`.
    pub fn empty_below(&self, prefix: &str) -> bool {
        if !self.enabled() || !prefix.ends_with('/') {
            return false;
        }
        let m = self.maps();
        m.empty
            .get(prefix)
            .is_some_and(|at| at.elapsed() < self.ttl)
    }

    /// Keeps that a listing found nothing below `prefix` (only prefixes ending in `/`).
    pub fn keep_empty(&self, t: Ticket, prefix: &str) {
        if !self.enabled() || !prefix.ends_with('/') {
            return;
        }
        let mut m = self.maps();
        if m.generation != t.generation {
            return;
        }
        trim(&mut m.empty, self.ttl, |v| *v);
        m.empty.insert(prefix.to_string(), t.sent);
    }

    /// This process changed `key`: forgets its HEAD, the emptiness of every prefix above it
    /// (and of `key/`), and makes answers to requests already sent unkeepable.
    pub fn forget(&self, key: &str) {
        if !self.enabled() {
            return;
        }
        let mut m = self.maps();
        m.generation += 1;
        m.heads.remove(key);
        if m.empty.is_empty() {
            return;
        }
        for (i, _) in key.match_indices('/') {
            m.empty.remove(&key[..=i]);
        }
        m.empty.remove(&format!("{key}/"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::VersionId;

    fn info(key: &str) -> ObjectInfo {
        ObjectInfo {
            key: key.into(),
            version: VersionId::null(),
            size: 1,
            modified: std::time::UNIX_EPOCH,
            etag: String::new(),
            metadata: Default::default(),
        }
    }

    #[test]
    fn answers_are_kept_for_the_ttl_and_forgotten_on_change() {
        let r = Recent::new(Duration::from_secs(60));
        let t = r.ticket();
        r.keep_head(t, "a/b/c", Some(info("a/b/c")));
        r.keep_head(t, "a/x", None);
        r.keep_empty(t, "a/b/");
        r.keep_empty(t, "a/b/c/");
        r.keep_empty(t, "a/b"); // not a directory prefix: not kept
        assert_eq!(r.head("a/b/c").unwrap().unwrap().key, "a/b/c");
        assert_eq!(r.head("a/x"), Some(None));
        assert!(r.head("a/y").is_none());
        assert!(r.empty_below("a/b/") && r.empty_below("a/b/c/"));
        assert!(!r.empty_below("a/b"));
        // Nothing below a/b/: neither a/b/ (a marker) nor a/b/z exists.
        assert_eq!(r.head("a/b/"), Some(None));
        assert_eq!(r.head("a/b/z"), Some(None));
        assert!(r.head("a/q").is_none());
        // A change of a/b/c/d forgets the prefixes above it, not the HEAD of a/x.
        r.forget("a/b/c/d");
        assert!(!r.empty_below("a/b/") && !r.empty_below("a/b/c/"));
        assert_eq!(r.head("a/x"), Some(None));
        r.forget("a/x");
        assert!(r.head("a/x").is_none());
    }

    #[test]
    fn an_answer_to_a_request_sent_before_a_change_is_not_kept() {
        let r = Recent::new(Duration::from_secs(60));
        let t = r.ticket();
        r.forget("elsewhere");
        r.keep_head(t, "k", None);
        r.keep_empty(t, "k/");
        assert!(r.head("k").is_none() && !r.empty_below("k/"));
    }

    #[test]
    fn nothing_is_kept_without_a_ttl_or_past_it() {
        let r = Recent::new(Duration::ZERO);
        r.keep_head(r.ticket(), "k", None);
        assert!(r.head("k").is_none());
        let r = Recent::new(Duration::from_millis(1));
        r.keep_head(r.ticket(), "k", None);
        std::thread::sleep(Duration::from_millis(5));
        assert!(r.head("k").is_none());
    }
}
