//! Directory-level prefetch of small objects: a decorator over a remote store (the S3 backend)
//! that, once a directory is being read, fetches its small objects with parallel GETs, so that
//! the reader's lookups (HEAD), its one-key listings below a name and its reads (GET) are
//! answered without a round trip each.
//!
//! * **When.** A HEAD that finds a key in the bucket (a cold lookup: nothing here answered it),
//!   or a GET of a small object that nothing here answered (its lookup and open answered
//!   above, by the write-back's kept answers), is a signal for the key's directory. The
//!   `after`-th such lookup (default 2) within 10 s, or the first one after a delimited
//!   listing of the directory (a readdir), starts a *session* for it, unless one runs there
//!   already or 4 run in all. A directory whose last sessions fetched mostly what nobody then
//!   read gets no session for 30 s.
//! * **What.** A session lists the directory (one delimited listing, at most 4 pages, asked
//!   for with `list_keys`: names and sizes only, so a versioned bucket does not HEAD every
//!   listed object as its `list` does; a later session of the same directory goes on after
//!   the last name one listed) and fetches its objects of at most `max_size` bytes (default
//!   256 KiB), `parallel` GETs at a time (default 32), each whole, within a memory budget
//!   (`memory`, default 64 MiB: a fetch that does not fit is not made). It follows the reader
//!   (`session.rs`): the files after the reader's last request, in the order the reader goes
//!   (listing order, or natural order: `f2` after `f1`), at most `max_files` (default 128)
//!   ahead of it; it ends when the reader has asked for none of its files for 2 s (or the
//!   TTL, if longer), forgetting what it listed and did not fetch. Each GET is the
//!   backend's own, so the body is verified as every GET is (an S3 object's block checksums,
//!   `s3/blocksum.rs`); a fetch that fails keeps nothing (the reader's own request then fails
//!   or succeeds on its own).
//! * **Serving.** A HEAD of the current version of a fetched key is answered from the GET's
//!   answer (the same version, ETag, size, time and metadata a HEAD would give); a GET of that
//!   version, whole or a range, from the body, which the first read covering the whole object
//!   takes (its memory is freed: the filesystem's read cache holds it then). A HEAD or GET of a
//!   key queued but not fetched yet fetches it now; of a key being fetched, waits for that
//!   fetch. A listing below `DIR/NAME/` (a lookup's check for a directory) is answered empty
//!   when the session's listing covered that place and showed no such subdirectory.
//! * **How long.** A fetched object is served for `ttl` (the mount's attribute TTL) from when
//!   its answer arrived, never longer (the kernel counts its own entry and attribute TTLs from
//!   the reply too; counting from the request's start would let a GET slower than the TTL, as
//!   under load, keep nothing): a change another client makes is seen within the TTL plus the
//!   GET's own time. A directory's listing counts from when it was sent.
//! * **Own changes.** Every change made through this decorator (put, copy, delete, rename,
//!   completed multipart upload, ...) forgets what is kept of its key and the listings of the
//!   directories above it, before and after it is made; a fetch or listing sent before such a
//!   change is not kept. Under a write-back decorator (which sits above this one), pending
//!   changes are answered there and never reach this one.
//! * **Counters.** [`PrefetchStats`] (atomics) count sessions, objects and bytes fetched,
//!   failed and skipped fetches, the requests answered here (hits) and the HEADs and GETs
//!   passed on (misses), answers dropped as expired or by own changes; [`Prefetch::status`]
//!   adds what is held now against the memory budget. `objfs status` of a mounted bucket
//!   shows them.

mod session;
mod state;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::Result;
use crate::store::ObjectStore;
use crate::types::*;
use state::{dir_of, Slot, State};

/// The prefetch settings.
#[derive(Debug, Clone, PartialEq)]
pub struct PrefetchConfig {
    /// Objects of at most this many bytes are fetched (0: no prefetch).
    pub max_size: u64,
    /// Objects a session fetches ahead of its reader at most (its window).
    pub max_files: usize,
    /// GETs in flight per session.
    pub parallel: usize,
    /// Bytes of fetched bodies held at most (with those being fetched).
    pub memory: usize,
    /// How long an answer is served after its request was sent (zero: no prefetch).
    pub ttl: Duration,
    /// Cold lookups in a directory (within 10 s) that start a session.
    pub after: u32,
}

impl PrefetchConfig {
    /// The defaults, with answers served for `ttl`.
    pub fn new(ttl: Duration) -> PrefetchConfig {
        PrefetchConfig {
            max_size: 256 * 1024,
            max_files: 128,
            parallel: 32,
            memory: 64 << 20,
            ttl,
            after: 2,
        }
    }

    /// Whether anything is prefetched at all.
    pub fn enabled(&self) -> bool {
        self.max_size > 0
            && self.max_files > 0
            && self.parallel > 0
            && self.memory > 0
            && !self.ttl.is_zero()
    }
}

/// What the decorator did so far (shown by `objfs status` of a mounted bucket).
#[derive(Debug, Default)]
pub struct PrefetchStats {
    /// Sessions started (a directory listed and its small objects queued).
    pub sessions: AtomicU64,
    /// Objects fetched and kept, and their bytes.
    pub fetched: AtomicU64,
    pub fetched_bytes: AtomicU64,
    /// Fetches that failed (kept nothing).
    pub failed: AtomicU64,
    /// HEADs, GETs and listings answered here (the hits).
    pub heads: AtomicU64,
    pub gets: AtomicU64,
    pub lists: AtomicU64,
    /// HEADs and GETs nothing here answered: passed to the store.
    pub misses: AtomicU64,
    /// Fetched answers dropped when their TTL ran out, and of those, the ones never served.
    pub expired: AtomicU64,
    pub expired_unused: AtomicU64,
    /// Fetched or queued answers dropped because this process changed their key.
    pub invalidated: AtomicU64,
    /// Objects not fetched for want of room (the memory budget, or the cap on entries).
    pub skipped: AtomicU64,
}

/// Counters of [`PrefetchStats`], read at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrefetchCounts {
    pub sessions: u64,
    pub fetched: u64,
    pub fetched_bytes: u64,
    pub failed: u64,
    pub heads: u64,
    pub gets: u64,
    pub lists: u64,
    pub misses: u64,
    pub expired: u64,
    pub expired_unused: u64,
    pub invalidated: u64,
    pub skipped: u64,
}

impl PrefetchCounts {
    /// Requests answered here.
    pub fn hits(&self) -> u64 {
        self.heads + self.gets + self.lists
    }
}

/// The counters and what is held now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrefetchStatus {
    pub counts: PrefetchCounts,
    /// Bytes of fetched bodies held now (with those reserved by fetches in flight), and the
    /// budget ([`PrefetchConfig::memory`]).
    pub held_bytes: u64,
    pub memory: u64,
    /// Keys held now: fetched (with or without their body), queued or in flight.
    pub entries: u64,
    /// Sessions running now.
    pub running: u64,
}

impl PrefetchStats {
    fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Counts what [`State`] dropped.
    fn dropped(&self, d: state::Dropped) {
        Self::add(&self.expired, d.expired);
        Self::add(&self.expired_unused, d.expired_unused);
        Self::add(&self.invalidated, d.invalidated);
    }
}

pub(crate) struct Shared {
    inner: Arc<dyn ObjectStore>,
    cfg: PrefetchConfig,
    state: Mutex<State>,
    stats: PrefetchStats,
    /// Woken when a reader asks for a file of a running session (its fetchers wait for the
    /// reader to come within their window).
    reader_moved: tokio::sync::Notify,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This process changes (or changed) `key`.
    fn forget(&self, key: &str) {
        if self.cfg.enabled() {
            let d = self.state().forget(key);
            self.stats.dropped(d);
        }
    }
}

/// The decorator (see the module docs).
pub struct Prefetch {
    shared: Arc<Shared>,
}

/// What a lookup of a key found here.
enum Step<T> {
    Answer(T),
    Wait(tokio::sync::watch::Receiver<bool>),
    Claim,
    Pass,
}

impl Prefetch {
    /// `inner` with prefetch as `cfg` says (a disabled config passes everything through).
    pub fn new(inner: Arc<dyn ObjectStore>, cfg: PrefetchConfig) -> Prefetch {
        Prefetch {
            shared: Arc::new(Shared {
                inner,
                cfg,
                state: Mutex::new(State::new()),
                stats: PrefetchStats::default(),
                reader_moved: tokio::sync::Notify::new(),
            }),
        }
    }

    /// The settings.
    pub fn config(&self) -> &PrefetchConfig {
        &self.shared.cfg
    }

    /// What was fetched and answered so far.
    pub fn counts(&self) -> PrefetchCounts {
        let s = &self.shared.stats;
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        PrefetchCounts {
            sessions: l(&s.sessions),
            fetched: l(&s.fetched),
            fetched_bytes: l(&s.fetched_bytes),
            failed: l(&s.failed),
            heads: l(&s.heads),
            gets: l(&s.gets),
            lists: l(&s.lists),
            misses: l(&s.misses),
            expired: l(&s.expired),
            expired_unused: l(&s.expired_unused),
            invalidated: l(&s.invalidated),
            skipped: l(&s.skipped),
        }
    }

    /// The counters, and what is held now. Answers whose TTL ran out are dropped first (and
    /// counted as expired), so that what is shown as held is what could still be served.
    pub fn status(&self) -> PrefetchStatus {
        let (held_bytes, entries, running) = {
            let mut s = self.shared.state();
            let d = s.sweep(self.shared.cfg.ttl);
            self.shared.stats.dropped(d);
            (s.bytes as u64, s.slots.len() as u64, s.active as u64)
        };
        PrefetchStatus {
            counts: self.counts(),
            held_bytes,
            memory: self.shared.cfg.memory as u64,
            entries,
            running,
        }
    }

    /// Bytes of fetched bodies held now.
    pub fn held_bytes(&self) -> usize {
        self.shared.state().bytes
    }

    /// Answers from what is kept: `look` decides on a fetched entry (`None`: pass to the
    /// inner store); a queued key is fetched now, a key in flight waited for (once each).
    async fn answer<T>(
        &self,
        key: &str,
        look: impl Fn(&mut State, &str) -> Option<T>,
    ) -> Option<T> {
        if !self.shared.cfg.enabled() {
            return None;
        }
        self.shared.reader_at(key);
        for _ in 0..3 {
            let step = {
                let mut s = self.shared.state();
                match s.slots.get(key) {
                    None => Step::Pass,
                    Some(Slot::Queued { .. }) => Step::Claim,
                    Some(Slot::Fetching(rx)) => Step::Wait(rx.clone()),
                    Some(Slot::Ready(_)) => match look(&mut s, key) {
                        Some(t) => Step::Answer(t),
                        None => Step::Pass,
                    },
                }
            };
            match step {
                Step::Answer(t) => return Some(t),
                Step::Pass => return None,
                Step::Claim => self.shared.fetch_one(key).await,
                Step::Wait(mut rx) => {
                    let _ = rx.wait_for(|done| *done).await;
                }
            }
        }
        None
    }

    /// The fetched entry of `key` if it is fresh; an expired one is dropped (and counted).
    fn fresh<'a>(
        s: &'a mut State,
        key: &str,
        ttl: Duration,
        stats: &PrefetchStats,
    ) -> Option<&'a mut state::Fetched> {
        let expired =
            matches!(s.slots.get(key), Some(Slot::Ready(f)) if f.arrived.elapsed() >= ttl);
        if expired {
            if let Some(Slot::Ready(f)) = s.slots.remove(key) {
                let len = f.body.as_ref().map_or(0, Bytes::len);
                s.bytes = s.bytes.saturating_sub(len);
                stats.dropped(state::Dropped {
                    expired: 1,
                    expired_unused: u64::from(!f.used),
                    invalidated: 0,
                });
            }
            return None;
        }
        match s.slots.get_mut(key) {
            Some(Slot::Ready(f)) => Some(f),
            _ => None,
        }
    }

    async fn head_here(&self, key: &str, version: Option<&VersionId>) -> Option<ObjectInfo> {
        let (ttl, stats) = (self.shared.cfg.ttl, &self.shared.stats);
        let info = self
            .answer(key, |s, k| {
                let f = Self::fresh(s, k, ttl, stats)?;
                if version.is_some_and(|v| *v != f.info.version) {
                    return None;
                }
                let info = f.info.clone();
                let (dirs, slots) = (&mut s.dirs, &mut s.slots);
                if let Some(Slot::Ready(f)) = slots.get_mut(k) {
                    State::mark_used(dirs, f);
                }
                Some(info)
            })
            .await?;
        self.shared.stats.heads.fetch_add(1, Ordering::Relaxed);
        Some(info)
    }

    async fn get_here(&self, key: &str, opts: &GetOptions) -> Option<GetResult> {
        let (ttl, stats) = (self.shared.cfg.ttl, &self.shared.stats);
        let got = self
            .answer(key, |s, k| {
                let (info, range, data, freed) = {
                    let f = Self::fresh(s, k, ttl, stats)?;
                    if opts.version.as_ref().is_some_and(|v| *v != f.info.version) {
                        return None;
                    }
                    let body = f.body.clone()?;
                    let range = resolve_range(opts.range.as_ref(), f.info.size).ok()?;
                    if range.end > body.len() as u64 {
                        return None;
                    }
                    let data = body.slice(range.start as usize..range.end as usize);
                    // A read of the whole object takes the body: the reader has it now (the
                    // filesystem's read cache keeps it).
                    let whole = range.start == 0 && range.end == f.info.size;
                    let freed = if whole {
                        f.body = None;
                        body.len()
                    } else {
                        0
                    };
                    (f.info.clone(), range, data, freed)
                };
                s.bytes = s.bytes.saturating_sub(freed);
                let (dirs, slots) = (&mut s.dirs, &mut s.slots);
                if let Some(Slot::Ready(f)) = slots.get_mut(k) {
                    State::mark_used(dirs, f);
                }
                Some(GetResult {
                    info,
                    range,
                    body: Body::Bytes(data),
                })
            })
            .await?;
        self.shared.stats.gets.fetch_add(1, Ordering::Relaxed);
        Some(got)
    }

    /// A listing below `DIR/NAME/` that a session's listing of `DIR/` answers: nothing there.
    fn list_here(&self, req: &ListRequest) -> Option<ListPage> {
        if !self.shared.cfg.enabled()
            || req.start_after.is_some()
            || req.continuation.is_some()
            || !req.prefix.ends_with('/')
        {
            return None;
        }
        let dir = dir_of(&req.prefix[..req.prefix.len() - 1]);
        let s = self.shared.state();
        let listing = s.dirs.get(dir)?.listing.as_ref()?;
        if !listing.nothing_below(&req.prefix, self.shared.cfg.ttl) {
            return None;
        }
        self.shared.stats.lists.fetch_add(1, Ordering::Relaxed);
        Some(ListPage::default())
    }

    /// A HEAD or GET that nothing here answered.
    fn missed(&self) {
        if self.shared.cfg.enabled() {
            self.shared.stats.misses.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A readdir of `req.prefix` (a signal for its directory).
    fn note_readdir(&self, req: &ListRequest) {
        let dir_like = req.prefix.is_empty() || req.prefix.ends_with('/');
        if !self.shared.cfg.enabled()
            || req.delimiter.as_deref() != Some("/")
            || !dir_like
            || req.start_after.is_some()
            || req.continuation.is_some()
        {
            return;
        }
        let mut s = self.shared.state();
        s.dir(&req.prefix).readdir_at = Some(std::time::Instant::now());
    }

    /// Runs a change of `keys`, forgetting them before and after.
    async fn changing<T>(&self, keys: &[&str], op: impl std::future::Future<Output = T>) -> T {
        for k in keys {
            self.shared.forget(k);
        }
        let out = op.await;
        for k in keys {
            self.shared.forget(k);
        }
        out
    }
}

#[async_trait]
impl ObjectStore for Prefetch {
    fn describe(&self) -> String {
        self.shared.inner.describe()
    }

    fn features(&self) -> StoreFeatures {
        self.shared.inner.features()
    }

    async fn put(&self, key: &str, body: Body, opts: PutOptions) -> Result<ObjectInfo> {
        let inner = &self.shared.inner;
        self.changing(&[key], inner.put(key, body, opts)).await
    }

    async fn get(&self, key: &str, opts: GetOptions) -> Result<GetResult> {
        if let Some(got) = self.get_here(key, &opts).await {
            return Ok(got);
        }
        self.missed();
        let got = self.shared.inner.get(key, opts).await;
        // A read of a small file that nothing here answered is a cold lookup too: its
        // lookup and open may have been answered above (the write-back's kept answers).
        if let Ok(g) = &got {
            if g.info.size <= self.shared.cfg.max_size {
                self.shared.cold_lookup(key);
            }
        }
        got
    }

    async fn head(&self, key: &str, version: Option<VersionId>) -> Result<ObjectInfo> {
        if let Some(info) = self.head_here(key, version.as_ref()).await {
            return Ok(info);
        }
        self.missed();
        let plain = version.is_none();
        let got = self.shared.inner.head(key, version).await;
        if plain && got.is_ok() {
            self.shared.cold_lookup(key);
        }
        got
    }

    async fn delete(&self, key: &str) -> Result<Option<VersionId>> {
        self.changing(&[key], self.shared.inner.delete(key)).await
    }

    async fn delete_if(&self, key: &str, condition: Condition) -> Result<Option<VersionId>> {
        let inner = &self.shared.inner;
        self.changing(&[key], inner.delete_if(key, condition)).await
    }

    async fn delete_version(&self, key: &str, version: VersionId) -> Result<()> {
        let inner = &self.shared.inner;
        self.changing(&[key], inner.delete_version(key, version))
            .await
    }

    async fn copy(&self, src: &str, dst: &str, opts: CopyOptions) -> Result<ObjectInfo> {
        let inner = &self.shared.inner;
        self.changing(&[dst], inner.copy(src, dst, opts)).await
    }

    async fn change_many(&self, changes: &[Change]) -> Result<Vec<Result<Option<VersionId>>>> {
        let keys: Vec<&str> = changes.iter().flat_map(Change::keys).collect();
        let inner = &self.shared.inner;
        self.changing(&keys, inner.change_many(changes)).await
    }

    async fn rename(&self, src: &str, dst: &str, opts: RenameOptions) -> Result<ObjectInfo> {
        let inner = &self.shared.inner;
        self.changing(&[src, dst], inner.rename(src, dst, opts))
            .await
    }

    async fn list(&self, req: &ListRequest) -> Result<ListPage> {
        if let Some(page) = self.list_here(req) {
            return Ok(page);
        }
        self.note_readdir(req);
        self.shared.inner.list(req).await
    }

    async fn list_versions(&self, req: &ListVersionsRequest) -> Result<VersionsPage> {
        self.shared.inner.list_versions(req).await
    }

    async fn create_multipart(&self, key: &str, opts: PutOptions) -> Result<String> {
        self.shared.inner.create_multipart(key, opts).await
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: Body,
    ) -> Result<PartInfo> {
        let inner = &self.shared.inner;
        inner.upload_part(key, upload_id, part_number, body).await
    }

    async fn upload_part_copy(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        src: &str,
        src_version: Option<VersionId>,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<PartInfo> {
        let inner = &self.shared.inner;
        inner
            .upload_part_copy(key, upload_id, part_number, src, src_version, range)
            .await
    }

    async fn upload_part_zeros(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        len: u64,
    ) -> Result<PartInfo> {
        let inner = &self.shared.inner;
        inner
            .upload_part_zeros(key, upload_id, part_number, len)
            .await
    }

    async fn list_parts(&self, key: &str, upload_id: &str) -> Result<Vec<PartInfo>> {
        self.shared.inner.list_parts(key, upload_id).await
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> Result<ObjectInfo> {
        let inner = &self.shared.inner;
        self.changing(&[key], inner.complete_multipart(key, upload_id, parts))
            .await
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<()> {
        self.shared.inner.abort_multipart(key, upload_id).await
    }

    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<UploadInfo>> {
        self.shared.inner.list_multipart_uploads(prefix).await
    }

    async fn sync(&self) -> Result<()> {
        self.shared.inner.sync().await
    }

    async fn capacity(&self) -> Result<Capacity> {
        self.shared.inner.capacity().await
    }

    async fn head_at(&self, key: &str, at: SystemTime) -> Result<ObjectInfo> {
        self.shared.inner.head_at(key, at).await
    }

    async fn list_at(&self, req: &ListRequest, at: SystemTime) -> Result<ListPage> {
        self.shared.inner.list_at(req, at).await
    }

    async fn get_record(&self, name: &str) -> Result<Option<Bytes>> {
        self.shared.inner.get_record(name).await
    }

    async fn put_record(&self, name: &str, value: Option<Bytes>, durable: bool) -> Result<()> {
        self.shared.inner.put_record(name, value, durable).await
    }

    async fn list_records(&self, prefix: &str) -> Result<Vec<(String, Bytes)>> {
        self.shared.inner.list_records(prefix).await
    }

    async fn set_key_times(&self, key: &str, times: KeyTimes) -> Result<()> {
        self.shared.inner.set_key_times(key, times).await
    }

    async fn key_times(&self, key: &str) -> Result<KeyTimes> {
        self.shared.inner.key_times(key).await
    }
}
