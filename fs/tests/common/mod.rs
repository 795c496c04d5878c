//! Shared helpers of the fs tests: a store wrapper that counts calls and bytes and can be
//! told to fail, and path-level helpers over the core.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use objfs_fs::{Caller, Entry, FsConfig, FsError, Kind, ObjFs};
use objfs_store::memory::MemoryStore;
use objfs_store::{
    Body, Capacity, CompletedPart, CopyOptions, GetOptions, GetResult, KeyTimes, ListPage,
    ListRequest, ListVersionsRequest, ObjectInfo, ObjectStore, PartInfo, PutOptions, RenameOptions,
    Result, StoreError, StoreFeatures, UploadInfo, VersionId, VersionsPage,
};

/// Counts of what went through a [`CountingStore`].
#[derive(Default)]
pub struct Counts {
    pub puts: AtomicU64,
    pub put_bytes: AtomicU64,
    pub parts: AtomicU64,
    pub part_bytes: AtomicU64,
    pub part_copies: AtomicU64,
    pub part_copy_bytes: AtomicU64,
    /// Parts of zeros (`upload_part_zeros`) and their bytes.
    pub zero_parts: AtomicU64,
    pub zero_part_bytes: AtomicU64,
    pub gets: AtomicU64,
    pub get_bytes: AtomicU64,
    pub copies: AtomicU64,
    pub lists: AtomicU64,
    pub heads: AtomicU64,
    pub completes: AtomicU64,
    pub deletes: AtomicU64,
    pub renames: AtomicU64,
    pub times_sets: AtomicU64,
    /// Puts and copies asked to be durable.
    pub durable: AtomicU64,
}

impl Counts {
    pub fn get(a: &AtomicU64) -> u64 {
        a.load(Ordering::SeqCst)
    }
    /// Every call that changes the store (a metadata commit each).
    pub fn commits(&self) -> u64 {
        [
            &self.puts,
            &self.copies,
            &self.completes,
            &self.deletes,
            &self.renames,
            &self.times_sets,
        ]
        .iter()
        .map(|a| Self::get(a))
        .sum()
    }
    pub fn reset(&self) {
        for a in [
            &self.puts,
            &self.put_bytes,
            &self.parts,
            &self.part_bytes,
            &self.part_copies,
            &self.part_copy_bytes,
            &self.zero_parts,
            &self.zero_part_bytes,
            &self.gets,
            &self.get_bytes,
            &self.copies,
            &self.lists,
            &self.heads,
            &self.completes,
            &self.deletes,
            &self.renames,
            &self.times_sets,
            &self.durable,
        ] {
            a.store(0, Ordering::SeqCst);
        }
    }
}

/// A store that counts, and fails uploads while `fail_uploads` is set (with an I/O error), or
/// uploads and syncs while `full` is set (with "no space").
pub struct CountingStore {
    pub inner: Arc<MemoryStore>,
    pub counts: Counts,
    pub fail_uploads: AtomicBool,
    pub full: AtomicBool,
    pub min_part: u64,
    /// Microseconds each put and copy waits before it runs (a slow store widens races).
    pub delay_us: AtomicU64,
    /// Reports copies that move bytes (`zero_copy` off), as S3 does.
    pub copies_move_bytes: AtomicBool,
}

impl CountingStore {
    pub fn new() -> Arc<CountingStore> {
        Self::with_min_part(0)
    }

    /// A counting store over a fresh memory store that reports this minimum part size.
    pub fn with_min_part(min_part: u64) -> Arc<CountingStore> {
        Arc::new(CountingStore {
            inner: Arc::new(MemoryStore::new()),
            counts: Counts::default(),
            fail_uploads: AtomicBool::new(false),
            full: AtomicBool::new(false),
            min_part,
            delay_us: AtomicU64::new(0),
            copies_move_bytes: AtomicBool::new(false),
        })
    }

    async fn pause(&self) {
        let us = self.delay_us.load(Ordering::SeqCst);
        if us > 0 {
            tokio::time::sleep(std::time::Duration::from_micros(us)).await;
        }
    }

    fn is_full(&self) -> Result<()> {
        if self.full.load(Ordering::SeqCst) {
            Err(StoreError::NoSpace("injected: the disk is full".into()))
        } else {
            Ok(())
        }
    }

    fn failing(&self) -> Result<()> {
        self.is_full()?;
        if self.fail_uploads.load(Ordering::SeqCst) {
            Err(StoreError::Io {
                context: "injected upload failure".into(),
                source: std::io::Error::other("injected"),
            })
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl ObjectStore for CountingStore {
    fn describe(&self) -> String {
        "counting(memory)".into()
    }
    fn features(&self) -> StoreFeatures {
        let inner = self.inner.features();
        StoreFeatures {
            min_part_size: self.min_part,
            zero_copy: inner.zero_copy && !self.copies_move_bytes.load(Ordering::SeqCst),
            ..inner
        }
    }
    async fn put(&self, key: &str, body: Body, opts: PutOptions) -> Result<ObjectInfo> {
        self.failing()?;
        self.pause().await;
        let b = body.collect().await?;
        self.counts.puts.fetch_add(1, Ordering::SeqCst);
        if opts.durable {
            self.counts.durable.fetch_add(1, Ordering::SeqCst);
        }
        self.counts
            .put_bytes
            .fetch_add(b.len() as u64, Ordering::SeqCst);
        self.inner.put(key, Body::Bytes(b), opts).await
    }
    async fn get(&self, key: &str, opts: GetOptions) -> Result<GetResult> {
        self.counts.gets.fetch_add(1, Ordering::SeqCst);
        let r = self.inner.get(key, opts).await?;
        self.counts
            .get_bytes
            .fetch_add(r.range.end - r.range.start, Ordering::SeqCst);
        Ok(r)
    }
    async fn head(&self, key: &str, version: Option<VersionId>) -> Result<ObjectInfo> {
        self.counts.heads.fetch_add(1, Ordering::SeqCst);
        self.inner.head(key, version).await
    }
    async fn delete(&self, key: &str) -> Result<Option<VersionId>> {
        self.counts.deletes.fetch_add(1, Ordering::SeqCst);
        self.inner.delete(key).await
    }
    async fn delete_version(&self, key: &str, version: VersionId) -> Result<()> {
        self.inner.delete_version(key, version).await
    }
    async fn rename(&self, src: &str, dst: &str, opts: RenameOptions) -> Result<ObjectInfo> {
        self.counts.renames.fetch_add(1, Ordering::SeqCst);
        self.inner.rename(src, dst, opts).await
    }
    async fn copy(&self, src: &str, dst: &str, opts: CopyOptions) -> Result<ObjectInfo> {
        self.counts.copies.fetch_add(1, Ordering::SeqCst);
        if opts.durable {
            self.counts.durable.fetch_add(1, Ordering::SeqCst);
        }
        self.pause().await;
        self.inner.copy(src, dst, opts).await
    }
    async fn list(&self, req: &ListRequest) -> Result<ListPage> {
        self.counts.lists.fetch_add(1, Ordering::SeqCst);
        self.inner.list(req).await
    }
    async fn list_versions(&self, req: &ListVersionsRequest) -> Result<VersionsPage> {
        self.inner.list_versions(req).await
    }
    async fn create_multipart(&self, key: &str, opts: PutOptions) -> Result<String> {
        self.inner.create_multipart(key, opts).await
    }
    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: Body,
    ) -> Result<PartInfo> {
        self.failing()?;
        let b = body.collect().await?;
        self.counts.parts.fetch_add(1, Ordering::SeqCst);
        self.counts
            .part_bytes
            .fetch_add(b.len() as u64, Ordering::SeqCst);
        if self.min_part > 0 {
            // Checked at completion by S3; recorded here for the tests to look at.
        }
        self.inner
            .upload_part(key, upload_id, part_number, Body::Bytes(b))
            .await
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
        self.failing()?;
        self.counts.part_copies.fetch_add(1, Ordering::SeqCst);
        let r = self
            .inner
            .upload_part_copy(key, upload_id, part_number, src, src_version, range)
            .await?;
        self.counts
            .part_copy_bytes
            .fetch_add(r.size, Ordering::SeqCst);
        Ok(r)
    }
    async fn upload_part_zeros(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        len: u64,
    ) -> Result<PartInfo> {
        self.failing()?;
        self.counts.zero_parts.fetch_add(1, Ordering::SeqCst);
        self.counts.zero_part_bytes.fetch_add(len, Ordering::SeqCst);
        self.inner
            .upload_part_zeros(key, upload_id, part_number, len)
            .await
    }
    async fn list_parts(&self, key: &str, upload_id: &str) -> Result<Vec<PartInfo>> {
        self.inner.list_parts(key, upload_id).await
    }
    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> Result<ObjectInfo> {
        self.failing()?;
        self.counts.completes.fetch_add(1, Ordering::SeqCst);
        self.inner.complete_multipart(key, upload_id, parts).await
    }
    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<()> {
        self.inner.abort_multipart(key, upload_id).await
    }
    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<UploadInfo>> {
        self.inner.list_multipart_uploads(prefix).await
    }
    async fn sync(&self) -> Result<()> {
        self.is_full()?;
        self.inner.sync().await
    }
    async fn capacity(&self) -> Result<Capacity> {
        self.inner.capacity().await
    }
    async fn set_key_times(&self, key: &str, times: KeyTimes) -> Result<()> {
        self.counts.times_sets.fetch_add(1, Ordering::SeqCst);
        self.inner.set_key_times(key, times).await
    }
    async fn key_times(&self, key: &str) -> Result<KeyTimes> {
        self.inner.key_times(key).await
    }
}

pub const ME: Caller = Caller {
    uid: 1000,
    gid: 1000,
};

/// A small-part configuration so tests exercise many parts with little data.
pub fn small_cfg() -> FsConfig {
    FsConfig {
        part_size: 64 * 1024,
        max_memory: 4 * 1024 * 1024,
        cache_size: 8 * 1024 * 1024,
        uid: 1000,
        gid: 1000,
        ..FsConfig::default()
    }
}

pub fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// Looks up a path relative to the root ("" is the root itself).
pub async fn lookup(fs: &ObjFs, path: &str) -> std::result::Result<Entry, FsError> {
    let mut cur: Option<Entry> = None;
    let mut parent = 1;
    for part in path.split('/').filter(|p| !p.is_empty()) {
        let e = fs.lookup(parent, os(part)).await?;
        parent = e.ino;
        cur = Some(e);
    }
    match cur {
        Some(e) => Ok(e),
        None => Err(FsError::Invalid("empty path".into())),
    }
}

/// The inode of a directory path ("" is the root).
pub async fn dir(fs: &ObjFs, path: &str) -> u64 {
    if path.is_empty() {
        return 1;
    }
    lookup(fs, path).await.map(|e| e.ino).unwrap_or(0)
}

/// Writes a whole file (create or truncate), returning its inode.
pub async fn write_file(fs: &ObjFs, parent: u64, name: &str, data: &[u8]) -> u64 {
    let (e, fh) = fs
        .create(
            parent,
            os(name),
            0o100644,
            libc::O_WRONLY | libc::O_TRUNC,
            ME,
        )
        .await
        .expect("create");
    let mut off = 0usize;
    while off < data.len() {
        let n = (data.len() - off).min(128 * 1024);
        fs.write(e.ino, fh, off as u64, &data[off..off + n])
            .await
            .expect("write");
        off += n;
    }
    fs.flush(e.ino, fh).await.expect("flush");
    fs.release(e.ino, fh).await.expect("release");
    e.ino
}

/// Reads a whole file through a new handle.
pub async fn read_file(fs: &ObjFs, ino: u64) -> Vec<u8> {
    let fh = fs.open(ino, libc::O_RDONLY).await.expect("open");
    let mut out = Vec::new();
    loop {
        let b = fs
            .read(ino, fh, out.len() as u64, 128 * 1024)
            .await
            .expect("read");
        if b.is_empty() {
            break;
        }
        out.extend_from_slice(&b);
    }
    fs.release(ino, fh).await.expect("release");
    out
}

/// Every entry of a directory via plain readdir, as (name, kind).
pub async fn list_dir(fs: &ObjFs, ino: u64) -> Vec<(String, Kind)> {
    let fh = fs.opendir(ino).await.expect("opendir");
    let mut out = Vec::new();
    let mut off = 0;
    loop {
        let mut got = Vec::new();
        fs.readdir(ino, fh, off, |_, next, kind, name| {
            got.push((next, name.to_string(), kind));
            got.len() >= 7
        })
        .await
        .expect("readdir");
        if got.is_empty() {
            break;
        }
        for (next, name, kind) in got {
            off = next;
            if name != "." && name != ".." {
                out.push((name, kind));
            }
        }
    }
    fs.releasedir(fh);
    out
}

/// Deterministic test data.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (((i as u64 * 2654435761u64) >> 7) as u8) ^ seed)
        .collect()
}

pub fn errno<T: std::fmt::Debug>(r: std::result::Result<T, FsError>) -> i32 {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.errno(),
    }
}

pub fn new_fs(store: Arc<dyn ObjectStore>, cfg: FsConfig) -> Arc<ObjFs> {
    ObjFs::new(store, cfg)
}

pub fn p(s: &str) -> &Path {
    Path::new(s)
}
