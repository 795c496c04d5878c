//! Reads: a shared LRU cache of fixed-size blocks with a byte budget, and per-handle
//! sequential readahead whose window grows.
//!
//! Blocks are [`BLOCK_SIZE`] bytes of one version of one key, keyed by (key, version, ETag,
//! block index); versions are immutable, so a cached block never goes stale (the ETag tells
//! apart the contents a bucket without versioning keeps under its one version id, `null`). Missing blocks are
//! fetched with ranged gets; contiguous missing blocks are fetched together. A block being
//! fetched is registered as in flight so that concurrent readers (the kernel issues reads of
//! one file in parallel) wait for the one fetch instead of repeating it.
//!
//! Readahead: each handle remembers where its last read ended; a read that starts close to
//! that point is sequential, and then the blocks after it are fetched in the background, in a
//! window that starts at [`INITIAL_WINDOW`] and doubles on each sequential read up to a
//! maximum (64 MiB, or a quarter of the cache budget when that is smaller). A random read
//! resets the window.
//!
//! Under the memory cache, a remote mount may have a disk cache ([`crate::diskcache`]): blocks
//! missing from memory are looked up there before they are fetched, and fetched blocks are
//! written there when the store's answer carried the ETag the reader expected.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use lru::LruCache;
use objfs_store::{GetOptions, ObjectInfo, ObjectStore, VersionId};
use tokio::sync::watch;

use crate::diskcache::{DiskCache, Identity};
use crate::error::{FsError, FsResult};

/// Size of a cache block.
pub const BLOCK_SIZE: u64 = 1024 * 1024;
/// First readahead window.
pub const INITIAL_WINDOW: u64 = 1024 * 1024;
/// Largest readahead window.
pub const MAX_WINDOW: u64 = 64 * 1024 * 1024;
/// Largest single ranged get.
const MAX_FETCH: u64 = 8 * BLOCK_SIZE;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct BlockKey {
    key: Arc<str>,
    version: VersionId,
    etag: Arc<str>,
    idx: u64,
}

type Shared = Option<Result<Bytes, (i32, String)>>;
type Claimed = Vec<(u64, watch::Sender<Shared>)>;

struct CacheInner {
    lru: LruCache<BlockKey, Bytes>,
    bytes: usize,
    inflight: HashMap<BlockKey, watch::Receiver<Shared>>,
}

/// One version of one object, as a reader sees it.
#[derive(Debug, Clone)]
pub struct Source {
    pub key: Arc<str>,
    pub version: VersionId,
    /// The version's ETag: part of a block's identity.
    pub etag: Arc<str>,
    pub size: u64,
}

impl Source {
    /// The version `info` describes.
    pub fn of(info: &ObjectInfo) -> Source {
        Source {
            key: Arc::from(info.key.as_str()),
            version: info.version.clone(),
            etag: Arc::from(info.etag.as_str()),
            size: info.size,
        }
    }

    /// The disk cache's identity of block `idx`, and its length.
    fn block_identity(&self, idx: u64) -> (Identity<'_>, usize) {
        let offset = idx * BLOCK_SIZE;
        let id = Identity {
            key: &self.key,
            version: self.version.as_str(),
            etag: &self.etag,
            size: self.size,
            offset,
        };
        (
            id,
            BLOCK_SIZE.min(self.size.saturating_sub(offset)) as usize,
        )
    }
}

/// The shared block cache.
pub struct BlockCache {
    inner: Mutex<CacheInner>,
    budget: usize,
    max_window: u64,
    disk: Option<Arc<DiskCache>>,
}

enum Plan {
    Hit(Bytes),
    Wait(watch::Receiver<Shared>),
    Fetch,
}

impl BlockCache {
    /// A cache holding at most `budget` bytes (at least a few blocks).
    pub fn new(budget: usize) -> BlockCache {
        BlockCache::with_disk(budget, None)
    }

    /// A cache holding at most `budget` bytes in memory, over `disk` when given.
    pub fn with_disk(budget: usize, disk: Option<Arc<DiskCache>>) -> BlockCache {
        let budget = budget.max(4 * BLOCK_SIZE as usize);
        BlockCache {
            inner: Mutex::new(CacheInner {
                lru: LruCache::unbounded(),
                bytes: 0,
                inflight: HashMap::new(),
            }),
            budget,
            max_window: MAX_WINDOW.min((budget as u64 / 4).max(BLOCK_SIZE)),
            disk,
        }
    }

    /// Bytes cached now.
    pub fn cached_bytes(&self) -> usize {
        self.inner.lock().map(|g| g.bytes).unwrap_or(0)
    }

    /// Largest readahead window.
    pub fn max_window(&self) -> u64 {
        self.max_window
    }

    fn bkey(src: &Source, idx: u64) -> BlockKey {
        BlockKey {
            key: src.key.clone(),
            version: src.version.clone(),
            etag: src.etag.clone(),
            idx,
        }
    }

    fn lock(&self) -> FsResult<std::sync::MutexGuard<'_, CacheInner>> {
        self.inner
            .lock()
            .map_err(|_| FsError::Internal("block cache lock poisoned".into()))
    }

    fn insert(&self, k: BlockKey, data: Bytes) {
        if let Ok(mut g) = self.inner.lock() {
            g.inflight.remove(&k);
            let len = data.len();
            if let Some(old) = g.lru.put(k, data) {
                g.bytes -= old.len();
            }
            g.bytes += len;
            while g.bytes > self.budget {
                match g.lru.pop_lru() {
                    Some((_, v)) => g.bytes -= v.len(),
                    None => break,
                }
            }
        }
    }

    /// Claims the missing, not in-flight blocks of `blocks` for fetching. Returns the claimed
    /// indexes with their senders.
    fn claim(
        &self,
        src: &Source,
        blocks: Range<u64>,
    ) -> FsResult<Vec<(u64, watch::Sender<Shared>)>> {
        let mut g = self.lock()?;
        let mut out = Vec::new();
        for idx in blocks {
            let k = Self::bkey(src, idx);
            if g.lru.contains(&k) || g.inflight.contains_key(&k) {
                continue;
            }
            let (tx, rx) = watch::channel(None);
            g.inflight.insert(k, rx);
            out.push((idx, tx));
        }
        Ok(out)
    }

    /// Splits claimed blocks into contiguous runs of at most [`MAX_FETCH`] bytes.
    fn runs(claimed: Claimed) -> Vec<Claimed> {
        let mut out: Vec<Claimed> = Vec::new();
        let mut run: Claimed = Vec::new();
        for (idx, tx) in claimed {
            let contiguous = run.last().map(|(l, _)| *l + 1 == idx).unwrap_or(true);
            if !contiguous || (run.len() as u64) * BLOCK_SIZE >= MAX_FETCH {
                out.push(std::mem::take(&mut run));
            }
            run.push((idx, tx));
        }
        if !run.is_empty() {
            out.push(run);
        }
        out
    }

    /// Fetches the claimed blocks (contiguous runs in one get each) and publishes them.
    async fn fetch_claimed(&self, store: &dyn ObjectStore, src: &Source, claimed: Claimed) {
        let runs = Self::runs(claimed);
        futures::future::join_all(runs.into_iter().map(|r| self.fetch_run(store, src, r))).await;
    }

    /// Publishes the blocks of `run` the disk cache holds and returns the others.
    async fn read_disk(&self, src: &Source, run: Claimed) -> Claimed {
        let Some(disk) = self.disk.clone().filter(|_| !src.etag.is_empty()) else {
            return run;
        };
        let idxs: Vec<u64> = run.iter().map(|r| r.0).collect();
        let s = src.clone();
        let found = tokio::task::spawn_blocking(move || {
            idxs.iter()
                .map(|&i| {
                    let (id, len) = s.block_identity(i);
                    disk.get(&id, len)
                })
                .collect::<Vec<_>>()
        })
        .await;
        let Ok(found) = found else {
            return run;
        };
        let mut rest = Vec::new();
        for ((idx, tx), hit) in run.into_iter().zip(found) {
            match hit {
                Some(block) => {
                    self.insert(Self::bkey(src, idx), block.clone());
                    let _ = tx.send(Some(Ok(block)));
                }
                None => rest.push((idx, tx)),
            }
        }
        rest
    }

    /// Writes fetched blocks to the disk cache (failures are the cache's to log).
    async fn write_disk(&self, src: &Source, blocks: Vec<(u64, Bytes)>) {
        let Some(disk) = self.disk.clone().filter(|_| !src.etag.is_empty()) else {
            return;
        };
        let s = src.clone();
        let _ = tokio::task::spawn_blocking(move || {
            for (idx, data) in blocks {
                disk.put(&s.block_identity(idx).0, &data);
            }
        })
        .await;
    }

    /// Fetches a run of claimed blocks: those the disk cache holds from there, the others
    /// from the store (one get per contiguous run that is left).
    async fn fetch_run(&self, store: &dyn ObjectStore, src: &Source, run: Claimed) {
        let rest = self.read_disk(src, run).await;
        let runs = Self::runs(rest);
        futures::future::join_all(runs.into_iter().map(|r| self.fetch_store(store, src, r))).await;
    }

    async fn fetch_store(&self, store: &dyn ObjectStore, src: &Source, run: Claimed) {
        let (Some(first), Some(last)) = (run.first().map(|r| r.0), run.last().map(|r| r.0)) else {
            return;
        };
        let start = first * BLOCK_SIZE;
        let end = ((last + 1) * BLOCK_SIZE).min(src.size);
        let res = async {
            let got = store
                .get(
                    &src.key,
                    GetOptions {
                        version: Some(src.version.clone()),
                        range: Some(start..end),
                    },
                )
                .await?;
            // Only an answer for the ETag the reader expects may fill the disk cache.
            let same = *got.info.etag == *src.etag;
            let data = got.bytes().await?;
            if (data.len() as u64) != end - start {
                return Err(FsError::Corrupt(format!(
                    "{}: short read {} of {} bytes at {start}",
                    src.key,
                    data.len(),
                    end - start
                )));
            }
            Ok::<(Bytes, bool), FsError>((data, same))
        }
        .await;
        match res {
            Ok((data, same)) => {
                let mut fetched = Vec::with_capacity(run.len());
                for (idx, tx) in run {
                    let s = ((idx - first) * BLOCK_SIZE) as usize;
                    let e = (s + BLOCK_SIZE as usize).min(data.len());
                    let block = data.slice(s..e);
                    self.insert(Self::bkey(src, idx), block.clone());
                    let _ = tx.send(Some(Ok(block.clone())));
                    fetched.push((idx, block));
                }
                if same {
                    self.write_disk(src, fetched).await;
                } else {
                    tracing::debug!(key = %src.key, "the object changed since it was opened: \
                        its blocks are not written to the disk cache");
                }
            }
            Err(e) => {
                tracing::warn!(key = %src.key, error = %e, "read failed");
                let shared = (e.errno(), e.to_string());
                if let Ok(mut g) = self.inner.lock() {
                    for (idx, _) in &run {
                        g.inflight.remove(&Self::bkey(src, *idx));
                    }
                }
                for (_, tx) in run {
                    let _ = tx.send(Some(Err(shared.clone())));
                }
            }
        }
    }

    /// Receivers of what the fetch of `claimed` publishes (the value stays readable after the
    /// fetch dropped its senders).
    fn outcomes(claimed: &Claimed) -> Vec<watch::Receiver<Shared>> {
        claimed.iter().map(|(_, tx)| tx.subscribe()).collect()
    }

    /// The error of the first of `outcome` whose fetch failed, with its errno.
    fn first_failure(outcome: &[watch::Receiver<Shared>]) -> FsResult<()> {
        for rx in outcome {
            if let Some(Err((errno, msg))) = rx.borrow().as_ref() {
                return Err(FsError::Errno(*errno, msg.clone()));
            }
        }
        Ok(())
    }

    /// One block, from the cache, from a fetch in flight, or fetched now.
    async fn block(&self, store: &dyn ObjectStore, src: &Source, idx: u64) -> FsResult<Bytes> {
        for _ in 0..8 {
            let plan = {
                let mut g = self.lock()?;
                let k = Self::bkey(src, idx);
                if let Some(b) = g.lru.get(&k) {
                    Plan::Hit(b.clone())
                } else if let Some(rx) = g.inflight.get(&k) {
                    Plan::Wait(rx.clone())
                } else {
                    Plan::Fetch
                }
            };
            match plan {
                Plan::Hit(b) => return Ok(b),
                Plan::Wait(mut rx) => match rx.wait_for(|v| v.is_some()).await {
                    Ok(v) => match v.as_ref() {
                        Some(Ok(b)) => return Ok(b.clone()),
                        Some(Err((errno, msg))) => return Err(FsError::Errno(*errno, msg.clone())),
                        None => continue,
                    },
                    // The fetcher went away without an answer: try again.
                    Err(_) => {
                        if let Ok(mut g) = self.inner.lock() {
                            let k = Self::bkey(src, idx);
                            if g.inflight.get(&k).is_some_and(|r| r.has_changed().is_err()) {
                                g.inflight.remove(&k);
                            }
                        }
                        continue;
                    }
                },
                Plan::Fetch => {
                    let claimed = self.claim(src, idx..idx + 1)?;
                    let outcome = Self::outcomes(&claimed);
                    self.fetch_claimed(store, src, claimed).await;
                    // A failed fetch is this read's answer: not fetched again here (the
                    // caller's next read asks again), and its errno kept (EACCES stays EACCES).
                    Self::first_failure(&outcome)?;
                }
            }
        }
        Err(FsError::Internal(format!(
            "block {idx} of {} could not be fetched",
            src.key
        )))
    }

    /// Bytes `range` of `src` (clamped to its size), through the cache.
    pub async fn read(
        &self,
        store: &dyn ObjectStore,
        src: &Source,
        range: Range<u64>,
    ) -> FsResult<Bytes> {
        let end = range.end.min(src.size);
        if range.start >= end {
            return Ok(Bytes::new());
        }
        let first = range.start / BLOCK_SIZE;
        let last = (end - 1) / BLOCK_SIZE;
        // Claim every missing block of the range at once so they are fetched together.
        let claimed = self.claim(src, first..last + 1)?;
        if !claimed.is_empty() {
            let outcome = Self::outcomes(&claimed);
            self.fetch_claimed(store, src, claimed).await;
            Self::first_failure(&outcome)?;
        }
        let mut blocks = Vec::with_capacity((last - first + 1) as usize);
        for idx in first..=last {
            blocks.push(self.block(store, src, idx).await?);
        }
        Ok(Self::assemble(&blocks, first, range.start, end))
    }

    /// Bytes `range` of `src` (clamped to its size) if every block of it is cached now;
    /// `None` otherwise (nothing is fetched).
    pub fn read_cached(&self, src: &Source, range: Range<u64>) -> Option<Bytes> {
        let end = range.end.min(src.size);
        if range.start >= end {
            return Some(Bytes::new());
        }
        let first = range.start / BLOCK_SIZE;
        let last = (end - 1) / BLOCK_SIZE;
        let blocks: Vec<Bytes> = {
            let mut g = self.inner.lock().ok()?;
            let mut v = Vec::with_capacity((last - first + 1) as usize);
            for idx in first..=last {
                v.push(g.lru.get(&Self::bkey(src, idx))?.clone());
            }
            v
        };
        Some(Self::assemble(&blocks, first, range.start, end))
    }

    /// Bytes `[start, end)` out of consecutive blocks from block `first` (a slice of the block
    /// when one holds them all, else a copy).
    fn assemble(blocks: &[Bytes], first: u64, start: u64, end: u64) -> Bytes {
        if let [b] = blocks {
            let s = (start - first * BLOCK_SIZE) as usize;
            let e = (end - first * BLOCK_SIZE) as usize;
            return b.slice(s.min(b.len())..e.min(b.len()));
        }
        let mut out = BytesMut::with_capacity((end - start) as usize);
        for (k, b) in blocks.iter().enumerate() {
            let bs = (first + k as u64) * BLOCK_SIZE;
            let s = start.max(bs) - bs;
            let e = end.min(bs + b.len() as u64) - bs;
            if s < e {
                out.extend_from_slice(&b[s as usize..e as usize]);
            }
        }
        out.freeze()
    }

    /// Starts fetching `range` of `src` in the background (readahead).
    pub fn prefetch(
        self: &Arc<Self>,
        store: Arc<dyn ObjectStore>,
        src: &Source,
        range: Range<u64>,
    ) {
        let end = range.end.min(src.size);
        if range.start >= end {
            return;
        }
        let first = range.start / BLOCK_SIZE;
        let last = (end - 1) / BLOCK_SIZE;
        let Ok(claimed) = self.claim(src, first..last + 1) else {
            return;
        };
        if claimed.is_empty() {
            return;
        }
        // One background get per run, so a large window is fetched in parallel.
        for run in Self::runs(claimed) {
            let me = self.clone();
            let src = src.clone();
            let store = store.clone();
            tokio::spawn(async move {
                me.fetch_run(store.as_ref(), &src, run).await;
            });
        }
    }
}

/// Sequential-access state of one open handle.
#[derive(Debug, Clone)]
pub struct ReadAhead {
    last_end: u64,
    window: u64,
    prefetched_to: u64,
}

impl Default for ReadAhead {
    fn default() -> Self {
        ReadAhead {
            last_end: 0,
            window: INITIAL_WINDOW,
            prefetched_to: 0,
        }
    }
}

impl ReadAhead {
    /// Records a read of `range` and returns the range to prefetch, if any.
    pub fn on_read(
        &mut self,
        range: &Range<u64>,
        size: u64,
        max_window: u64,
    ) -> Option<Range<u64>> {
        // The kernel sends the reads of a sequential stream in parallel, so they may arrive
        // slightly out of order: anything near the last end counts as sequential.
        let near = range.start + INITIAL_WINDOW >= self.last_end
            && range.start <= self.last_end + INITIAL_WINDOW;
        if near {
            if range.start >= self.last_end {
                self.window = (self.window * 2).min(max_window.max(INITIAL_WINDOW));
            }
        } else {
            self.window = INITIAL_WINDOW;
            self.prefetched_to = 0;
        }
        self.last_end = self.last_end.max(range.end);
        if !near {
            self.last_end = range.end;
            return None;
        }
        let from = self.prefetched_to.max(range.end);
        let to = (range.end + self.window).min(size);
        if from >= to {
            return None;
        }
        self.prefetched_to = to;
        Some(from..to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_grows_and_resets() {
        let mut ra = ReadAhead::default();
        let size = 1 << 40;
        let mut off = 0;
        let mut last = 0;
        for _ in 0..10 {
            let r = off..off + 128 * 1024;
            if let Some(p) = ra.on_read(&r, size, MAX_WINDOW) {
                assert!(p.start >= r.end);
                last = p.end - r.end;
            }
            off = r.end;
        }
        assert!(last > INITIAL_WINDOW);
        assert!(ra.window <= MAX_WINDOW);
        // A jump far away is random access: no prefetch, window reset.
        assert!(ra
            .on_read(&(1 << 35..(1 << 35) + 4096), size, MAX_WINDOW)
            .is_none());
        assert_eq!(ra.window, INITIAL_WINDOW);
    }

    /// A fetch the store refuses is the read's answer: one request per read (no fetching
    /// again inside the cache), the store's errno kept (403 is EACCES, not EIO), nothing
    /// cached; the next read asks again and succeeds once the store allows it.
    #[tokio::test]
    async fn a_failed_fetch_is_answered_once_with_its_errno() {
        use objfs_store::fault::{Fault, FaultStore, Op, Rule};
        use objfs_store::memory::MemoryStore;
        use objfs_store::{Body, PutOptions};
        let inner: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
        let body = vec![7u8; 3 * BLOCK_SIZE as usize / 2];
        inner
            .put("k", Body::from(body.clone()), PutOptions::default())
            .await
            .unwrap();
        let src = Source::of(&inner.head("k", None).await.unwrap());
        let store = FaultStore::new(inner);
        store.add(Rule::always(Op::Get, Fault::Refuse));
        let cache = BlockCache::new(16 << 20);
        for (n, range) in [(1, 0..4096), (2, 0..src.size), (3, BLOCK_SIZE..src.size)] {
            let err = cache.read(&store, &src, range).await.unwrap_err();
            assert_eq!(err.errno(), libc::EACCES, "{err}");
            assert_eq!(store.injected(), n, "one request per read");
        }
        store.clear();
        store.add(Rule::times(Op::Get, Fault::Fail { retryable: true }, 1));
        let err = cache.read(&store, &src, 0..4096).await.unwrap_err();
        assert_eq!(err.errno(), libc::EIO, "{err}");
        assert_eq!(
            cache.cached_bytes(),
            0,
            "nothing of a failed fetch is cached"
        );
        let got = cache.read(&store, &src, 0..src.size).await.unwrap();
        assert!(got[..] == body[..]);
        assert_eq!(store.injected(), 4);
    }
}
