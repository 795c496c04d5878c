//! What the bucket answered a little while ago, so that the requests a filesystem makes about
//! names it has seen (a lookup's HEAD and one-key listing below the name, then a `stat`, a
//! rename, a create) do not each cost a round trip.
//!
//! Three kinds of answers are kept, each for `ttl` from the moment its request was sent (the
//! mount's metadata TTL: a change another machine makes is seen within it):
//!
//! * a HEAD of a key's current version: the version, or that it has none;
//! * a listing below a prefix ending in `/` (a "directory") that found nothing there;
//! * what the delimited listings of a directory showed (its files and subdirectories), for
//!   the part of it they covered: a name the listing covered and did not show has no object
//!   and nothing below it (the negative lookups of `mv a b`, `cp`, `tar -x` answered here).
//!
//! An open asks for its HEAD with a shorter window (`fresh`, the attribute TTL): the names
//! and attributes of files may be as old as `ttl`, but what an open reads is as fresh as the
//! kernel's own caches allow (close-to-open, see docs/S3.md).
//!
//! Every change this process makes to a key forgets the HEAD kept of it and the emptiness of
//! the prefixes above it, and writes itself into the kept directory listings (the name added,
//! or removed; a change whose outcome is unknown drops them), once when it is made and again
//! when it reaches the bucket; an answer whose request was sent before a change of a key it
//! speaks of (a generation counter, and the generation of each key's last change) is not
//! kept at all. Pending changes are laid over these answers as over the
//! bucket's own (see `api.rs`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::types::{ListPage, ObjectInfo};

/// Answers kept at most (each kind); past that the expired ones go, then all.
const MAX_ANSWERS: usize = 16_384;
/// Names kept at most over all directory listings; past that the listings are forgotten.
const MAX_NAMES: usize = 1 << 20;

/// What the listings of one directory covered and showed.
struct Listed {
    /// When the first page's request was sent.
    sent: Instant,
    /// Covered up to and including this key (`None`: to the end).
    to: Option<String>,
    /// The entries: file names, subdirectory names ending in `/`, and `""` for the marker
    /// (the object named as the directory itself, which its listing shows first).
    names: HashSet<String>,
}

impl Listed {
    fn covers(&self, key: &str) -> bool {
        self.to.as_deref().is_none_or(|t| key <= t)
    }

    /// Whether the covered part ends before `key` (so a listing up to `key` covers more).
    fn covers_none_after(&self, key: &str) -> bool {
        self.to.as_deref().is_some_and(|t| t < key)
    }
}

#[derive(Default)]
struct Maps {
    /// Key -> when asked, the current version (`None`: none).
    heads: HashMap<String, (Instant, Option<ObjectInfo>)>,
    /// Prefix (ending in `/`) -> when a listing found nothing below it.
    empty: HashMap<String, Instant>,
    /// Directory prefix (ending in `/`, or `""`) -> what its listings showed.
    dirs: HashMap<String, Listed>,
    /// Names in `dirs`.
    names: usize,
    /// Bumped by every change this process makes.
    generation: u64,
    /// The changes since `floor`: (generation, key), oldest first, so that a check looks at
    /// the changes made while its request was out only.
    changed: VecDeque<(u64, String)>,
    /// Answers to requests sent before this generation are not kept (the changes before it
    /// were forgotten one by one).
    floor: u64,
}

impl Maps {
    /// Whether a change since `t` touched a key that `hit` picks: an answer to a request
    /// sent at `t` about those keys may be older than the change.
    fn changed_since(&self, t: Ticket, hit: impl Fn(&str) -> bool) -> bool {
        if t.generation == self.generation {
            return false;
        }
        t.generation < self.floor
            || self
                .changed
                .iter()
                .rev()
                .take_while(|(g, _)| *g > t.generation)
                .any(|(_, k)| hit(k))
    }

    /// A listing of `dir` sent at `at` found nothing: kept as a whole listing with no names,
    /// unless a newer one of `dir` is kept.
    fn listed_empty(&mut self, dir: &str, at: Instant) {
        if self.dirs.get(dir).is_some_and(|l| l.sent >= at) {
            return;
        }
        self.drop_dir(dir);
        if self.dirs.len() >= MAX_ANSWERS {
            // Full: not kept (the emptiness it stands for is forgotten, as before).
            return;
        }
        self.dirs.insert(
            dir.to_string(),
            Listed {
                sent: at,
                to: None,
                names: HashSet::new(),
            },
        );
    }

    fn drop_dir(&mut self, dir: &str) {
        if let Some(l) = self.dirs.remove(dir) {
            self.names -= l.names.len();
        }
    }
}

/// The recent answers of the bucket.
pub struct Recent {
    ttl: Duration,
    fresh: Duration,
    maps: Mutex<Maps>,
    /// Questions answered from what was kept (not sent to the bucket).
    answered: AtomicU64,
}

/// What [`Recent`] keeps, for `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnswerStats {
    /// How long answers are reused for names and attributes, and for opens.
    pub ttl: Duration,
    pub open_ttl: Duration,
    /// HEAD answers, directory listings and the names in them, kept now (expired ones
    /// included until they are trimmed).
    pub heads: usize,
    pub dirs: usize,
    pub names: usize,
    /// HEADs and listings answered from them since the mount started.
    pub answered: u64,
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

/// The directory of `key` and its name there: `("a/b/", "c")` for `a/b/c`, `("a/", "b/")`
/// for the marker `a/b/`, `("", "a")` for `a`.
fn split(key: &str) -> (&str, &str) {
    let body = key.strip_suffix('/').unwrap_or(key);
    let at = body.rfind('/').map_or(0, |i| i + 1);
    (&key[..at], &key[at..])
}

impl Recent {
    /// Keeps answers for `ttl` (zero: keeps nothing); an open reuses them for `fresh` at
    /// most.
    pub fn new(ttl: Duration, fresh: Duration) -> Recent {
        Recent {
            ttl,
            fresh: fresh.min(ttl),
            maps: Mutex::new(Maps::default()),
            answered: AtomicU64::new(0),
        }
    }

    /// What is kept, and how often it answered.
    pub fn stats(&self) -> AnswerStats {
        let m = self.maps();
        AnswerStats {
            ttl: self.ttl,
            open_ttl: self.fresh,
            heads: m.heads.len(),
            dirs: m.dirs.len(),
            names: m.names,
            answered: self.answered.load(Ordering::Relaxed),
        }
    }

    fn hit<T>(&self, answer: Option<T>) -> Option<T> {
        if answer.is_some() {
            self.answered.fetch_add(1, Ordering::Relaxed);
        }
        answer
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
    /// prefix of the key, or a listing of its directory covered it and did not show it;
    /// `None` when nothing is known.
    pub fn head(&self, key: &str) -> Option<Option<ObjectInfo>> {
        self.hit(self.head_within(key, self.ttl))
    }

    /// As [`Recent::head`], for an open: only answers sent within the fresh window.
    pub fn head_for_open(&self, key: &str) -> Option<Option<ObjectInfo>> {
        self.hit(self.head_within(key, self.fresh))
    }

    fn head_within(&self, key: &str, window: Duration) -> Option<Option<ObjectInfo>> {
        if window.is_zero() {
            return None;
        }
        let m = self.maps();
        if let Some((at, info)) = m.heads.get(key) {
            if at.elapsed() < window {
                return Some(info.clone());
            }
        }
        let below_empty = key.match_indices('/').any(|(i, _)| {
            m.empty
                .get(&key[..=i])
                .is_some_and(|at| at.elapsed() < window)
        });
        (below_empty || Self::unlisted(&m, key, window)).then_some(None)
    }

    /// Whether a listing of the directory of `key` (sent within `window`) covered its place
    /// and did not show its name: no such object (and for a name ending in `/`, nothing
    /// below it either).
    fn unlisted(m: &Maps, key: &str, window: Duration) -> bool {
        let (dir, name) = split(key);
        if name.is_empty() {
            return false;
        }
        m.dirs
            .get(dir)
            .is_some_and(|l| l.sent.elapsed() < window && l.covers(key) && !l.names.contains(name))
    }

    /// Keeps a HEAD's answer (`None`: no current version).
    pub fn keep_head(&self, t: Ticket, key: &str, info: Option<ObjectInfo>) {
        if !self.enabled() {
            return;
        }
        let mut m = self.maps();
        if m.changed_since(t, |k| k == key) {
            return;
        }
        trim(&mut m.heads, self.ttl, |v| v.0);
        m.heads.insert(key.to_string(), (t.sent, info));
    }

    /// Whether a listing sent within the TTL found nothing below `prefix`, or a listing of
    /// the directory above it did not show it.
    pub fn empty_below(&self, prefix: &str) -> bool {
        if !self.enabled() || !prefix.ends_with('/') {
            return false;
        }
        let m = self.maps();
        let fresh = |at: &Instant| at.elapsed() < self.ttl;
        let empty = m.empty.get(prefix).is_some_and(fresh)
            || m.dirs
                .get(prefix)
                .is_some_and(|l| fresh(&l.sent) && l.to.is_none() && l.names.is_empty())
            || Self::unlisted(&m, prefix, self.ttl);
        self.hit(empty.then_some(())).is_some()
    }

    /// Keeps the answer of a listing (delimited or not) below `prefix` that found nothing
    /// at all from the start.
    pub fn keep_empty(&self, t: Ticket, prefix: &str) {
        if !self.enabled() || !prefix.ends_with('/') {
            return;
        }
        let mut m = self.maps();
        if m.changed_since(t, |k| k.starts_with(prefix)) {
            return;
        }
        trim(&mut m.empty, self.ttl, |v| *v);
        m.empty.insert(prefix.to_string(), t.sent);
    }

    /// Keeps one page of a delimited (`/`) listing below `prefix` that started after `from`
    /// (`None`: at the start; a continuation token's page starts after the previous page's
    /// last entry). The pages of one directory chain up while each starts where the kept
    /// part ends; a page that found nothing from the start is also kept as emptiness.
    pub fn keep_page(&self, t: Ticket, prefix: &str, from: Option<&str>, page: &ListPage) {
        if !self.enabled() || !(prefix.is_empty() || prefix.ends_with('/')) {
            return;
        }
        let mut m = self.maps();
        if m.changed_since(t, |k| k.starts_with(prefix)) {
            m.drop_dir(prefix);
            return;
        }
        let empty = page.objects.is_empty() && page.common_prefixes.is_empty();
        if from.is_none() && empty && page.next_token.is_none() && !prefix.is_empty() {
            trim(&mut m.empty, self.ttl, |v| *v);
            m.empty.insert(prefix.to_string(), t.sent);
        }
        let last_object = page.objects.last().map(|o| o.key.as_str());
        let last_prefix = page.common_prefixes.last().map(String::as_str);
        let to = match page.next_token {
            None => None,
            Some(_) => match last_object.max(last_prefix) {
                Some(k) => Some(k.to_string()),
                None => return,
            },
        };
        let names = page
            .objects
            .iter()
            .map(|o| o.key.as_str())
            .chain(page.common_prefixes.iter().map(String::as_str))
            .filter_map(|k| k.strip_prefix(prefix))
            .map(str::to_string);
        match from {
            None => {
                let names: HashSet<String> = names.collect();
                if let (Some(end), Some(l)) = (&to, m.dirs.get(prefix)) {
                    // A short listing from the start (the one-key listing of a lookup of the
                    // directory itself) that agrees with a longer one kept does not shorten it.
                    let longer = l.sent.elapsed() < self.ttl && !l.covers_none_after(end);
                    let agrees = || {
                        let within = l.names.iter().filter(|n| format!("{prefix}{n}") <= *end);
                        within.count() == names.len() && names.iter().all(|n| l.names.contains(n))
                    };
                    if longer && agrees() {
                        return;
                    }
                }
                m.drop_dir(prefix);
                if m.dirs.len() >= MAX_ANSWERS {
                    let ttl = self.ttl;
                    m.dirs.retain(|_, l| l.sent.elapsed() < ttl);
                    m.names = m.dirs.values().map(|l| l.names.len()).sum();
                }
                m.names += names.len();
                m.dirs.insert(
                    prefix.to_string(),
                    Listed {
                        sent: t.sent,
                        to,
                        names,
                    },
                );
            }
            Some(f) => {
                let Some(l) = m.dirs.get_mut(prefix) else {
                    return;
                };
                // Only a page that starts inside the covered part chains up.
                if l.to.as_deref().is_none_or(|end| f > end) {
                    return;
                }
                let before = l.names.len();
                l.names.extend(names);
                l.to = match (to, l.to.take()) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    _ => None,
                };
                let added = l.names.len() - before;
                m.names += added;
            }
        }
        if m.names > MAX_NAMES {
            m.dirs.clear();
            m.names = 0;
        }
    }

    /// This process changed `key`: forgets its HEAD, the emptiness of every prefix above it
    /// (and of `key/`), and makes answers to requests already sent unkeepable. The kept
    /// listings are left as they are: [`Recent::now_exists`], [`Recent::now_absent`] or
    /// [`Recent::unknown`] says what became of the key.
    pub fn forget(&self, key: &str) {
        if !self.enabled() {
            return;
        }
        let mut m = self.maps();
        m.generation += 1;
        if m.changed.len() >= MAX_ANSWERS {
            // Answers to requests sent before the oldest change still listed are not kept.
            if let Some((g, _)) = m.changed.pop_front() {
                m.floor = g;
            }
        }
        let g = m.generation;
        m.changed.push_back((g, key.to_string()));
        m.heads.remove(key);
        if m.empty.is_empty() {
            return;
        }
        // "Nothing below P" is a whole listing of P that showed nothing: it goes on as one,
        // so that the change (written into it by the caller) and the names after it are
        // still answered (a directory this mount made: the lookups of the files created in
        // it, and of the destinations of renames there).
        for (i, _) in key.match_indices('/') {
            let prefix = &key[..=i];
            if let Some(at) = m.empty.remove(prefix) {
                if at.elapsed() < self.ttl {
                    m.listed_empty(prefix, at);
                }
            }
        }
        m.empty.remove(&format!("{key}/"));
    }

    /// The directories above `key` (deepest first) with the name each holds it under.
    fn levels(key: &str) -> impl Iterator<Item = (&str, &str)> {
        let mut rest = Some(key);
        std::iter::from_fn(move || {
            let k = rest?;
            let (dir, name) = split(k);
            if name.is_empty() {
                return None;
            }
            // The name of this level is the part of `key` after `dir` up to its next `/`.
            let name = match key[dir.len()..].find('/') {
                Some(i) => &key[dir.len()..dir.len() + i + 1],
                None => name,
            };
            rest = (!dir.is_empty()).then_some(dir);
            Some((dir, name))
        })
    }

    /// For a marker (a key ending in `/`), its own directory and the name it has there.
    fn marker(key: &str) -> Option<(&str, &str)> {
        key.ends_with('/').then_some((key, ""))
    }

    /// `key` has a current version now (a put, the destination of a rename, a marker made):
    /// every kept listing above it shows its name there.
    pub fn now_exists(&self, key: &str) {
        self.forget(key);
        if !self.enabled() {
            return;
        }
        let mut m = self.maps();
        let mut added = 0;
        for (dir, name) in Self::levels(key).chain(Self::marker(key)) {
            if let Some(l) = m.dirs.get_mut(dir) {
                added += usize::from(l.names.insert(name.to_string()));
            }
        }
        m.names += added;
    }

    /// `key` has no current version now (a delete, the source of a rename): the listing of
    /// its directory no longer shows a file's name; what lies above, and a directory's own
    /// name (other keys may keep it), is no longer known.
    pub fn now_absent(&self, key: &str) {
        self.forget(key);
        if !self.enabled() {
            return;
        }
        let mut guard = self.maps();
        let m = &mut *guard;
        if let Some((dir, name)) = Self::marker(key) {
            if let Some(l) = m.dirs.get_mut(dir) {
                if l.names.remove(name) {
                    m.names -= 1;
                }
            }
        }
        for (i, (dir, name)) in Self::levels(key).enumerate() {
            if i == 0 && !name.ends_with('/') {
                if let Some(l) = m.dirs.get_mut(dir) {
                    if l.names.remove(name) {
                        m.names -= 1;
                    }
                }
            } else {
                m.drop_dir(dir);
            }
        }
    }

    /// A change of `key` sent straight to the bucket ended: it made the key exist (`exists`)
    /// or not if it succeeded (`ok`); a failed one leaves its outcome unknown.
    pub fn sent(&self, key: &str, ok: bool, exists: bool) {
        match (ok, exists) {
            (true, true) => self.now_exists(key),
            (true, false) => self.now_absent(key),
            (false, _) => self.unknown(key),
        }
    }

    /// A change of `key` whose outcome is not known (a request that failed, a version
    /// removed): nothing kept about it or the directories above it is trusted.
    pub fn unknown(&self, key: &str) {
        self.forget(key);
        if !self.enabled() {
            return;
        }
        let mut m = self.maps();
        let levels = Self::levels(key).chain(Self::marker(key));
        let dirs: Vec<String> = levels.map(|(d, _)| d.to_string()).collect();
        for d in dirs {
            m.drop_dir(&d);
        }
    }
}

#[cfg(test)]
#[path = "recent_tests.rs"]
mod tests;
