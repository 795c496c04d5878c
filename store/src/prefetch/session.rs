//! Directory sessions: when a directory is being read (see [`Shared::cold_lookup`]), one
//! delimited listing of it gives its names and sizes, and its small objects are fetched whole
//! with parallel GETs, whose answers then serve the HEADs and GETs of the reader.
//!
//! A session follows its reader ([`Plan`]): it fetches the files after the one the reader
//! asked for last, in the order the reader goes (the listing's byte order, or natural order
//! once the reader is seen to read `f2` after `f1`), at most `max_files` ahead of it. Fetching
//! far ahead of a slow reader only fetched answers that expired (the TTL) before it came to
//! them; fetching in byte order while the reader went `f0, f1, f2, ...` fetched `f100` before
//! `f2`. The session ends when every file was taken, or when the reader has asked for none
//! of its files for [`IDLE`]; files it listed and did not fetch are forgotten then.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::watch;

use super::state::{dir_of, Fetched, Listing, Plan, Slot, State, Take, MAX_ENTRIES};
use super::Shared;
use crate::types::{GetOptions, ListRequest};

/// Sessions running at once (over all directories).
const MAX_SESSIONS: usize = 4;
/// Pages of a directory's listing one session reads at most (1,000 names each).
const MAX_PAGES: usize = 4;
/// Cold lookups count towards a session when they come within this window.
const SIGNAL_WINDOW: Duration = Duration::from_secs(10);
/// A directory whose sessions fetched mostly what nobody read gets none for this long.
const COOL_DOWN: Duration = Duration::from_secs(30);
/// A session whose reader asked for none of its files for this long (or the TTL, if longer)
/// ends.
const IDLE: Duration = Duration::from_secs(2);
/// How often a fetcher waiting for the reader looks again (it is also woken when the reader
/// moves).
const WAIT_STEP: Duration = Duration::from_millis(100);

/// Ends a session's bookkeeping however the session ends.
struct SessionGuard {
    shared: Arc<Shared>,
    dir: String,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        let mut s = self.shared.state();
        s.active = s.active.saturating_sub(1);
        let plan = s.dirs.get_mut(&self.dir).and_then(|d| {
            d.active = false;
            d.plan.take()
        });
        // What the session listed and did not fetch is forgotten (a read of it goes to the
        // bucket as any read).
        for k in plan.map(|p| p.order).unwrap_or_default() {
            if matches!(s.slots.get(&k), Some(Slot::Queued { .. })) {
                s.slots.remove(&k);
            }
        }
    }
}

/// A fetch in flight: on drop (finished or abandoned) its reservation is released and its
/// slot, if it still says "in flight", removed; waiters are woken by the sender's drop.
struct InFlight<'a> {
    shared: &'a Shared,
    key: &'a str,
    reserved: usize,
    _done: watch::Sender<bool>,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut s = self.shared.state();
        s.bytes = s.bytes.saturating_sub(self.reserved);
        if matches!(s.slots.get(self.key), Some(Slot::Fetching(_))) {
            s.slots.remove(self.key);
        }
    }
}

impl Shared {
    /// A HEAD of `key` found it in the bucket (nothing here answered it): a signal that its
    /// directory is being read. The `after`-th such lookup within [`SIGNAL_WINDOW`], or the
    /// first after a readdir of the directory, starts a session, unless one runs there
    /// already, [`MAX_SESSIONS`] run, or the directory cools down.
    pub(super) fn cold_lookup(self: &Arc<Self>, key: &str) {
        if !self.cfg.enabled() {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let dir = dir_of(key).to_string();
        let after = self.cfg.after.max(1);
        let parallel = self.cfg.parallel;
        let start_after = {
            let mut s = self.state();
            if s.active >= MAX_SESSIONS {
                return;
            }
            let now = Instant::now();
            let d = s.dir(&dir);
            if d.active || d.cold_until.is_some_and(|t| now < t) {
                return;
            }
            // A read's HEAD and GET that both came here are one signal.
            if d.last_signal.as_deref() == Some(key) {
                return;
            }
            d.last_signal = Some(key.to_string());
            if d.window_start.is_none_or(|w| w.elapsed() > SIGNAL_WINDOW) {
                d.window_start = Some(now);
                d.misses = 0;
            }
            d.misses += 1;
            let readdir = d.readdir_at.is_some_and(|t| t.elapsed() < SIGNAL_WINDOW);
            if d.misses < after && !readdir {
                return;
            }
            d.misses = 0;
            d.readdir_at = None;
            if d.fetched >= parallel && d.used * 2 < d.fetched {
                tracing::debug!(dir = %dir, fetched = d.fetched, used = d.used,
                    "prefetch: the directory's last objects were mostly not read; pausing");
                d.cold_until = Some(now + COOL_DOWN);
                d.fetched = 0;
                d.used = 0;
                return;
            }
            d.fetched = 0;
            d.used = 0;
            d.active = true;
            let from = d.next_after.clone();
            s.active += 1;
            from
        };
        self.stats.sessions.fetch_add(1, Ordering::Relaxed);
        let guard = SessionGuard {
            shared: self.clone(),
            dir: dir.clone(),
        };
        let me = self.clone();
        let key = key.to_string();
        rt.spawn(async move {
            me.session(&dir, start_after, &key).await;
            drop(guard);
        });
    }

    /// One session: lists `dir` (after `start_after`), queues its small objects and fetches
    /// them after the reader, whose last request was `reader` (the lookup that started it).
    async fn session(self: &Arc<Self>, dir: &str, start_after: Option<String>, reader: &str) {
        let ticket = self.state().ticket();
        let mut candidates: Vec<(String, u64)> = Vec::new();
        let mut prefixes = HashSet::new();
        let mut last: Option<String> = None;
        let mut token: Option<String> = None;
        let mut complete = false;
        for _ in 0..MAX_PAGES {
            let req = ListRequest {
                prefix: dir.to_string(),
                delimiter: Some("/".into()),
                start_after: if token.is_none() {
                    start_after.clone()
                } else {
                    None
                },
                continuation: token.take(),
                max_keys: 1000,
            };
            // Names and sizes are all a session needs: no HEAD per object (which a versioned
            // bucket's `list` sends, and which would cost what the prefetch saves).
            let page = match self.inner.list_keys(&req).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::debug!(dir = %dir, error = %e, "prefetch: listing failed");
                    return;
                }
            };
            for o in page.objects {
                if last.as_deref().is_none_or(|l| o.key.as_str() > l) {
                    last = Some(o.key.clone());
                }
                let small = o.size > 0 && o.size <= self.cfg.max_size;
                if small && !o.key.ends_with('/') {
                    candidates.push((o.key, o.size));
                }
            }
            for p in page.common_prefixes {
                if last.as_deref().is_none_or(|l| p.as_str() > l) {
                    last = Some(p.clone());
                }
                prefixes.insert(p);
            }
            token = page.next_token;
            if token.is_none() {
                complete = true;
                break;
            }
        }
        {
            let mut s = self.state();
            let listing = Listing {
                sent: ticket.sent,
                from: start_after.clone(),
                to: if complete { None } else { last.clone() },
                prefixes,
            };
            s.keep_listing(ticket, dir, listing);
            s.dir(dir).next_after = if complete { None } else { last };
            let ttl = self.cfg.ttl;
            let dropped = s.sweep(ttl);
            self.stats.dropped(dropped);
            // The plan holds every small file listed (a reader's request for one already
            // kept still moves the reader); only those not kept are queued.
            let mut plan = Plan::new(candidates.iter().map(|(k, _)| k.clone()).collect());
            plan.reader_at(reader);
            s.dir(dir).plan = Some(plan);
            candidates.retain(|(k, _)| !s.slots.contains_key(k));
            let room = MAX_ENTRIES.saturating_sub(s.slots.len());
            if candidates.len() > room {
                let n = (candidates.len() - room) as u64;
                self.stats.skipped.fetch_add(n, Ordering::Relaxed);
                candidates.truncate(room);
            }
            for (k, size) in &candidates {
                s.slots.insert(
                    k.clone(),
                    Slot::Queued {
                        dir: dir.to_string(),
                        size: *size,
                    },
                );
            }
        }
        tracing::debug!(dir = %dir, objects = candidates.len(), "prefetch: fetching");
        let parallel = self.cfg.parallel.max(1);
        futures::stream::iter(0..parallel)
            .for_each_concurrent(parallel, |_| self.fetcher(dir))
            .await;
    }

    /// One of a session's `parallel` fetchers: takes the plan's next file and fetches it,
    /// until the plan is done or its reader idle.
    async fn fetcher(&self, dir: &str) {
        let idle = IDLE.max(self.cfg.ttl);
        loop {
            let step = {
                let mut guard = self.state();
                let State { dirs, slots, .. } = &mut *guard;
                match dirs.get_mut(dir).and_then(|d| d.plan.as_mut()) {
                    None => Take::Done,
                    Some(plan) if plan.moved.elapsed() > idle => Take::Done,
                    Some(plan) => plan.take(self.cfg.max_files, |k| {
                        matches!(slots.get(k), Some(Slot::Queued { .. }))
                    }),
                }
            };
            match step {
                Take::Fetch(k) => self.fetch_one(&k).await,
                Take::Done => return,
                Take::Wait => {
                    let _ = tokio::time::timeout(WAIT_STEP, self.reader_moved.notified()).await;
                }
            }
        }
    }

    /// A reader asked for `key` (a HEAD or GET that came here): the session of its directory,
    /// if one runs and listed it, fetches after it from now on.
    pub(super) fn reader_at(&self, key: &str) {
        let moved = {
            let mut s = self.state();
            s.dirs
                .get_mut(dir_of(key))
                .and_then(|d| d.plan.as_mut())
                .is_some_and(|p| p.reader_at(key))
        };
        if moved {
            self.reader_moved.notify_waiters();
        }
    }

    /// Fetches `key` whole if it is queued (a session's background fetch, or a reader that
    /// asked for it first), within the memory budget; keeps the answer unless this process
    /// changed the key meanwhile. The GET is the backend's, so its body is verified as every
    /// GET is (an S3 object's block checksums): a body that fails is not kept.
    pub(super) async fn fetch_one(&self, key: &str) {
        let (tx, ticket, dir, reserved) = {
            let mut s = self.state();
            let Some(Slot::Queued { dir, size }) = s.slots.get(key) else {
                return;
            };
            let (dir, size) = (dir.clone(), *size as usize);
            if s.bytes + size > self.cfg.memory {
                let dropped = s.sweep(self.cfg.ttl);
                self.stats.dropped(dropped);
            }
            if s.bytes + size > self.cfg.memory {
                s.slots.remove(key);
                self.stats.skipped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            s.bytes += size;
            let (tx, rx) = watch::channel(false);
            s.slots.insert(key.to_string(), Slot::Fetching(rx));
            (tx, s.ticket(), dir, size)
        };
        let flight = InFlight {
            shared: self,
            key,
            reserved,
            _done: tx,
        };
        let got = async {
            let g = self.inner.get(key, GetOptions::default()).await?;
            let info = g.info.clone();
            let body = g.bytes().await?;
            Ok::<_, crate::StoreError>((info, body))
        }
        .await;
        let mut s = self.state();
        match got {
            Ok((info, body)) if s.valid(ticket, key) && body.len() as u64 == info.size => {
                let len = body.len();
                s.bytes += len;
                if let Some(d) = s.dirs.get_mut(&dir) {
                    d.fetched += 1;
                }
                s.slots.insert(
                    key.to_string(),
                    Slot::Ready(Fetched {
                        info,
                        body: Some(body),
                        // Served for the TTL from its arrival, as the kernel counts its own
                        // TTLs from the reply: under load a GET may take longer than the TTL.
                        arrived: Instant::now(),
                        dir,
                        used: false,
                    }),
                );
                self.stats.fetched.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .fetched_bytes
                    .fetch_add(len as u64, Ordering::Relaxed);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(key = %key, error = %e, "prefetch: fetch failed (not kept)");
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        drop(s);
        drop(flight);
    }
}
