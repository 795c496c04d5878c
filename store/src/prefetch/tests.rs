//! The prefetch decorator over the memory store, with every request to the store counted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::{Prefetch, PrefetchConfig};
use crate::error::{Result, StoreError};
use crate::memory::MemoryStore;
use crate::store::ObjectStore;
use crate::types::*;

/// The memory store, counting HEADs, GETs and listings, failing the GETs of chosen keys.
struct Counting {
    inner: MemoryStore,
    heads: AtomicU64,
    gets: AtomicU64,
    lists: AtomicU64,
    /// Listings asked for with `list_keys` (counted in `lists` too).
    key_lists: AtomicU64,
    broken: Mutex<Vec<String>>,
}

impl Counting {
    fn requests(&self) -> (u64, u64, u64) {
        (
            self.heads.load(Ordering::SeqCst),
            self.gets.load(Ordering::SeqCst),
            self.lists.load(Ordering::SeqCst),
        )
    }
}

#[async_trait]
impl ObjectStore for Counting {
    fn describe(&self) -> String {
        "counting".into()
    }
    fn features(&self) -> StoreFeatures {
        self.inner.features()
    }
    async fn put(&self, key: &str, body: Body, opts: PutOptions) -> Result<ObjectInfo> {
        self.inner.put(key, body, opts).await
    }
    async fn get(&self, key: &str, opts: GetOptions) -> Result<GetResult> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        if self.broken.lock().unwrap().iter().any(|k| k == key) {
            return Err(StoreError::Corrupt {
                what: format!("{key}: block 0 does not match"),
            });
        }
        self.inner.get(key, opts).await
    }
    async fn head(&self, key: &str, version: Option<VersionId>) -> Result<ObjectInfo> {
        self.heads.fetch_add(1, Ordering::SeqCst);
        self.inner.head(key, version).await
    }
    async fn delete(&self, key: &str) -> Result<Option<VersionId>> {
        self.inner.delete(key).await
    }
    async fn delete_version(&self, key: &str, version: VersionId) -> Result<()> {
        self.inner.delete_version(key, version).await
    }
    async fn copy(&self, src: &str, dst: &str, opts: CopyOptions) -> Result<ObjectInfo> {
        self.inner.copy(src, dst, opts).await
    }
    async fn list(&self, req: &ListRequest) -> Result<ListPage> {
        self.lists.fetch_add(1, Ordering::SeqCst);
        self.inner.list(req).await
    }
    async fn list_keys(&self, req: &ListRequest) -> Result<ListPage> {
        self.key_lists.fetch_add(1, Ordering::SeqCst);
        self.list(req).await
    }
    async fn list_versions(&self, req: &ListVersionsRequest) -> Result<VersionsPage> {
        self.inner.list_versions(req).await
    }
    async fn create_multipart(&self, key: &str, opts: PutOptions) -> Result<String> {
        self.inner.create_multipart(key, opts).await
    }
    async fn upload_part(&self, key: &str, id: &str, n: u32, body: Body) -> Result<PartInfo> {
        self.inner.upload_part(key, id, n, body).await
    }
    async fn upload_part_copy(
        &self,
        key: &str,
        id: &str,
        n: u32,
        src: &str,
        v: Option<VersionId>,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<PartInfo> {
        self.inner.upload_part_copy(key, id, n, src, v, range).await
    }
    async fn list_parts(&self, key: &str, id: &str) -> Result<Vec<PartInfo>> {
        self.inner.list_parts(key, id).await
    }
    async fn complete_multipart(
        &self,
        key: &str,
        id: &str,
        parts: &[CompletedPart],
    ) -> Result<ObjectInfo> {
        self.inner.complete_multipart(key, id, parts).await
    }
    async fn abort_multipart(&self, key: &str, id: &str) -> Result<()> {
        self.inner.abort_multipart(key, id).await
    }
    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<UploadInfo>> {
        self.inner.list_multipart_uploads(prefix).await
    }
    async fn sync(&self) -> Result<()> {
        self.inner.sync().await
    }
    async fn capacity(&self) -> Result<Capacity> {
        self.inner.capacity().await
    }
}

fn body(key: &str, n: usize) -> Bytes {
    Bytes::from(format!("{key:>8}").repeat(n))
}

/// A directory `d/` of `files` small objects `d/fN`, one large one and a subdirectory.
async fn setup(files: usize, cfg: impl FnOnce(&mut PrefetchConfig)) -> (Arc<Counting>, Prefetch) {
    let c = Arc::new(Counting {
        inner: MemoryStore::new(),
        heads: AtomicU64::new(0),
        gets: AtomicU64::new(0),
        lists: AtomicU64::new(0),
        key_lists: AtomicU64::new(0),
        broken: Mutex::new(Vec::new()),
    });
    for i in 0..files {
        let k = format!("d/f{i}");
        c.put(&k, Body::Bytes(body(&k, 100)), PutOptions::default())
            .await
            .unwrap();
    }
    let big = Bytes::from(vec![7u8; 300 * 1024]);
    c.put("d/big", Body::Bytes(big), PutOptions::default())
        .await
        .unwrap();
    c.put("d/sub/x", Body::Bytes(body("x", 1)), PutOptions::default())
        .await
        .unwrap();
    let mut pc = PrefetchConfig::new(Duration::from_secs(30));
    cfg(&mut pc);
    let p = Prefetch::new(c.clone(), pc);
    (c, p)
}

async fn settle(p: &Prefetch, fetched: u64) {
    // (A session whose reader stopped ends 2 s after its last request.)
    for _ in 0..1000 {
        if p.counts().fetched + p.counts().failed >= fetched && p.shared.state().active == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("prefetch did not settle: {:?}", p.counts());
}

/// What a filesystem does to read a file cold: the lookup's HEAD and one-key listing below
/// the name, then a GET of the version the HEAD gave.
async fn read_like_a_mount(p: &Prefetch, key: &str) -> Bytes {
    let info = p.head(key, None).await.unwrap();
    let below = ListRequest {
        prefix: format!("{key}/"),
        max_keys: 1,
        ..Default::default()
    };
    let page = p.list(&below).await.unwrap();
    assert!(page.objects.is_empty() && page.common_prefixes.is_empty());
    let got = p
        .get(
            key,
            GetOptions {
                version: Some(info.version.clone()),
                range: Some(0..info.size),
            },
        )
        .await
        .unwrap();
    assert_eq!(got.info.etag, info.etag);
    got.bytes().await.unwrap()
}

#[tokio::test]
async fn the_second_cold_read_fetches_the_directory_and_later_reads_ask_nothing() {
    let (c, p) = setup(40, |_| {}).await;
    // One cold lookup starts nothing.
    assert_eq!(read_like_a_mount(&p, "d/f0").await, body("d/f0", 100));
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(p.counts().fetched, 0);
    assert_eq!(read_like_a_mount(&p, "d/f1").await, body("d/f1", 100));
    settle(&p, 40).await;
    // Every small object of d/ (not the large one, not below d/sub/) was fetched once.
    assert_eq!(p.counts().fetched, 40);
    let before = c.requests();
    for i in 2..40 {
        let k = format!("d/f{i}");
        assert_eq!(read_like_a_mount(&p, &k).await, body(&k, 100));
    }
    assert_eq!(c.requests(), before, "no request for the prefetched files");
    // The session listed d/ once, with `list_keys` (no HEAD per listed object).
    assert_eq!(c.key_lists.load(Ordering::SeqCst), 1);
    let n = p.counts();
    assert_eq!((n.heads, n.gets, n.lists, n.hits()), (38, 38, 38, 114));
    assert_eq!(n.sessions, 1);
    assert_eq!(n.fetched_bytes, 40 * body("d/f0", 100).len() as u64);
    // The two reads before the session: a HEAD and a GET each went to the store.
    assert_eq!(n.misses, 4);
    // Bodies read whole were handed over: only the two read before the session are held.
    assert_eq!(p.held_bytes(), body("d/f0", 100).len() * 2);
    // The large object and a name below a subdirectory still go to the store.
    p.head("d/big", None).await.unwrap();
    let sub = p.list(&ListRequest::dir("d/sub/")).await.unwrap();
    assert_eq!(sub.objects.len(), 1);
    assert_eq!(c.requests().0, before.0 + 1);
    assert_eq!(c.requests().2, before.2 + 1);
    let st = p.status();
    assert_eq!(st.counts.misses, 5);
    assert_eq!(st.held_bytes, p.held_bytes() as u64);
    assert_eq!(st.memory, 64 << 20);
    assert_eq!(
        st.entries, 40,
        "fetched entries stay (without their bodies) until the TTL"
    );
    assert_eq!(st.running, 0);
    assert_eq!((st.counts.expired, st.counts.invalidated), (0, 0));
}

#[tokio::test]
async fn a_readdir_then_one_lookup_starts_a_session() {
    let (_c, p) = setup(10, |_| {}).await;
    p.list(&ListRequest::dir("d/")).await.unwrap();
    p.head("d/f3", None).await.unwrap();
    settle(&p, 10).await;
    assert_eq!(p.counts().fetched, 10);
}

#[tokio::test]
async fn own_changes_are_never_hidden() {
    let (_c, p) = setup(10, |_| {}).await;
    p.head("d/f0", None).await.unwrap();
    p.head("d/f1", None).await.unwrap();
    settle(&p, 10).await;
    p.put("d/f5", Body::Bytes(body("new", 3)), PutOptions::default())
        .await
        .unwrap();
    assert_eq!(read_like_a_mount(&p, "d/f5").await, body("new", 3));
    p.delete("d/f6").await.unwrap();
    assert!(p.head("d/f6", None).await.is_err());
    // A subdirectory made under a listed directory is seen below its name at once.
    p.put(
        "d/f7/inner",
        Body::Bytes(body("i", 1)),
        PutOptions::default(),
    )
    .await
    .unwrap();
    let below = ListRequest {
        prefix: "d/f7/".into(),
        max_keys: 1,
        ..Default::default()
    };
    assert_eq!(p.list(&below).await.unwrap().objects.len(), 1);
    // d/f5 and d/f6 were fetched: both dropped by the changes.
    assert_eq!(p.counts().invalidated, 2);
    assert_eq!(p.status().entries, 8);
}

#[tokio::test]
async fn another_clients_change_is_seen_after_the_ttl() {
    let ttl = Duration::from_millis(300);
    let (c, p) = setup(10, |cfg| cfg.ttl = ttl).await;
    p.head("d/f0", None).await.unwrap();
    p.head("d/f1", None).await.unwrap();
    settle(&p, 10).await;
    // Another client (straight to the store) rewrites d/f4.
    c.put("d/f4", Body::Bytes(body("other", 7)), PutOptions::default())
        .await
        .unwrap();
    tokio::time::sleep(ttl).await;
    assert_eq!(read_like_a_mount(&p, "d/f4").await, body("other", 7));
    // d/f4's expired answer was dropped by the read, the other nine by the status, none of
    // them ever served; nothing is held any more.
    assert_eq!(p.counts().expired, 1);
    let st = p.status();
    assert_eq!((st.counts.expired, st.counts.expired_unused), (10, 10));
    assert_eq!((st.entries, st.held_bytes), (0, 0));
}

#[tokio::test]
async fn a_failed_fetch_keeps_nothing_and_the_read_fails_on_its_own() {
    let (c, p) = setup(10, |_| {}).await;
    c.broken.lock().unwrap().push("d/f7".into());
    p.head("d/f0", None).await.unwrap();
    p.head("d/f1", None).await.unwrap();
    settle(&p, 10).await;
    assert_eq!(p.counts().failed, 1);
    let gets = c.requests().1;
    let info = p.head("d/f7", None).await.unwrap();
    let err = p
        .get(
            "d/f7",
            GetOptions {
                version: Some(info.version),
                range: None,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), crate::ErrorKind::Corrupt);
    assert_eq!(c.requests().1, gets + 1, "the read asked the store itself");
}

#[tokio::test]
async fn the_memory_budget_and_the_file_cap_hold() {
    let one = body("d/f0", 100).len();
    let (_c, p) = setup(30, |cfg| {
        cfg.memory = one * 5;
        cfg.parallel = 1;
    })
    .await;
    p.head("d/f0", None).await.unwrap();
    p.head("d/f1", None).await.unwrap();
    settle(&p, 5).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(p.counts().fetched, 5);
    assert!(p.held_bytes() <= one * 5);
    // The other 25 small files did not fit: not fetched, counted.
    assert_eq!(p.counts().skipped, 25);
    assert_eq!(p.status().held_bytes, 5 * one as u64);

    // A window of 8: 8 files after the reader's, then nothing until it moves; the session
    // ends when it has not for 2 s.
    let (_c, p) = setup(30, |cfg| {
        cfg.max_files = 8;
        cfg.ttl = Duration::from_millis(500);
    })
    .await;
    p.head("d/f0", None).await.unwrap();
    p.head("d/f1", None).await.unwrap();
    settle(&p, 8).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(p.counts().fetched, 8);
    // What it fetched expired since (its TTL is 0.5 s); what it did not fetch is forgotten
    // (not left queued).
    let st = p.status();
    assert_eq!((st.entries, st.counts.expired), (0, 8), "{st:?}");
}

/// Reads whose lookups and opens were answered above (the write-back's kept answers) reach
/// here as GETs only: two of a directory's small files start its session too; a read's HEAD
/// and GET together are one signal (the test above).
#[tokio::test]
async fn cold_gets_alone_start_a_session() {
    let (_c, p) = setup(40, |_| {}).await;
    for k in ["d/f0", "d/f1"] {
        let got = p.get(k, GetOptions::default()).await.unwrap();
        assert_eq!(got.bytes().await.unwrap(), body(k, 100));
    }
    settle(&p, 40).await;
    assert_eq!(p.counts().sessions, 1);
    assert!(p.counts().fetched > 0, "{:?}", p.counts());
}

/// A reader going through numbered names in natural order (`f0, f1, f2, ...`, not the
/// listing's `f0, f1, f10, f100, ...`), over more files than the window: after the two cold
/// reads that start the session, every file is served here, fetched once, just ahead of it.
#[tokio::test]
async fn a_reader_in_natural_order_is_followed() {
    let (c, p) = setup(300, |cfg| cfg.max_files = 32).await;
    for i in 0..300 {
        let k = format!("d/f{i}");
        assert_eq!(read_like_a_mount(&p, &k).await, body(&k, 100));
        if i == 1 {
            // The session (started by this second cold lookup) has listed the directory.
            for _ in 0..1000 {
                let planned = p
                    .shared
                    .state()
                    .dirs
                    .get("d/")
                    .is_some_and(|d| d.plan.is_some());
                if planned {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    let (heads, gets, _) = c.requests();
    assert_eq!(heads, 2, "the two cold lookups only");
    assert_eq!(gets, 300, "one GET per file");
    let n = p.counts();
    assert_eq!(n.sessions, 1);
    assert!(n.fetched >= 298, "{n:?}");
    assert!(n.hits() >= 298 * 3, "{n:?}");
    assert_eq!((n.expired, n.skipped), (0, 0));
}

#[tokio::test]
async fn off_passes_everything_through() {
    let (c, p) = setup(10, |cfg| cfg.max_size = 0).await;
    for i in 0..10 {
        let k = format!("d/f{i}");
        assert_eq!(read_like_a_mount(&p, &k).await, body(&k, 100));
    }
    assert_eq!(p.counts().fetched, 0);
    assert_eq!(c.requests(), (10, 10, 10));
}
