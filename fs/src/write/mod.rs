//! Write handles: a file open for writing is a multipart upload against its previous
//! version (the *base*).
//!
//! The file is cut into chunks of `part_size` bytes (chunk `i` covers
//! `[i * part_size, (i + 1) * part_size)`). Written bytes are kept per chunk with the ranges
//! that are dirty. A chunk that becomes wholly dirty is uploaded at once as part `2i + 1` in
//! the background (bounded by a shared semaphore of upload slots) while the application goes
//! on writing; its buffer is given back to the memory budget when the upload is done.
//!
//! At flush/fsync/release the writer *commits*, so that a version costs what changed: the
//! file is cut into runs of written bytes (uploaded), unchanged bytes of the base (part
//! copies) and zeros past the base's end (parts of zeros: holes in the local store, so a
//! truncate up or a write past the end stores no zeros); `plan.rs` says how runs become parts
//! and merges the cheapest ones when part numbers run short. Backends with a minimum part
//! size get one part per chunk.
//!
//! Files that fit one chunk and have no upload yet are written with a single `put`, unless
//! parts would leave [`REUSE_MIN`] bytes or more out of the upload. Then `complete_multipart`
//! makes the new version, which becomes the base. Background parts are numbered `2i + 1`, so
//! a file has at most 5000 chunks: the chunk size is raised for large existing files, and a
//! file that would outgrow 5000 chunks fails with EFBIG.
//!
//! A write to (or a read of, or a truncate into) a chunk already uploaded, whose bytes were
//! given back, first *checkpoints*: the upload so far is completed into a version that the
//! file's bytes are read from from then on, and a new upload starts. That is correct and rare.
//! Where copies share data (the local and memory stores), the upload and its checkpoints go
//! to a *staging key* under `.objfs/stage/` (a name the mount never shows) and the commit
//! copies the result to the file's key, so a checkpoint is never the file's current version:
//! a crash before the commit leaves the previous version, as DESIGN.md's ruling says, and the
//! staged versions are removed for good once the commit is made (or at the next mount,
//! [`clear_stage`]). Elsewhere (S3, where a copy moves the bytes again) the upload is the
//! file's own and a checkpoint completes it into a version of the file.
//!
//! Errors: a failed background upload is remembered; later writes fail with it and the next
//! flush/fsync/release reports it, drops the buffered data and aborts the upload: the previous
//! version stays current. Nothing is silently dropped.
//!
//! This module is the writer's state (buffers, background part uploads, commit, checkpoint);
//! `plan.rs` plans the parts of a commit (a pure function), `parts.rs` runs them, `ranges.rs`
//! is the range set a buffer keeps of what was written into it.

mod parts;
mod plan;
mod ranges;
mod stage;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use futures::FutureExt;
use objfs_store::{Body, CopyOptions, Metadata, ObjectInfo, ObjectStore, PartInfo, PutOptions};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use crate::attr::{Attrs, Kind, META_MTIME, META_MTIME_NSEC};
use crate::budget::{MemBudget, UNIT};
use crate::error::{FsError, FsResult};
use crate::read::{BlockCache, Source};
use parts::part_number;
pub use ranges::RangeSet;
pub use stage::{clear_stage, STAGE_PREFIX};

/// Most chunks a file may have (two part numbers per chunk).
pub const MAX_CHUNKS: u64 = (objfs_store::MAX_PART_NUMBER / 2) as u64;

/// A writer behind the lock every handle of the file shares.
pub type WriterCell = tokio::sync::Mutex<Writer>;

/// What writers of one mount share.
pub struct WriteCtx {
    pub store: Arc<dyn ObjectStore>,
    pub cache: Arc<BlockCache>,
    pub budget: Arc<MemBudget>,
    /// Upload slots shared by every writer of the mount.
    pub uploads: Arc<Semaphore>,
    pub part_size: u64,
    /// The backend's minimum part size (0: none).
    pub min_part: u64,
    /// Uploads and checkpoints go to a staging key under [`STAGE_PREFIX`] named with this
    /// (unique to the mount), when the store's copies share data; `None` elsewhere.
    pub stage: Option<String>,
}

struct DirtyChunk {
    buf: Vec<u8>,
    ranges: RangeSet,
    permit: Option<OwnedSemaphorePermit>,
}

enum Chunk {
    Dirty(DirtyChunk),
    Uploading(JoinHandle<FsResult<PartInfo>>),
    Uploaded(PartInfo),
}

#[derive(Clone)]
struct Upload {
    id: String,
    key: String,
    meta: Metadata,
}

/// Statistics of the commits of one writer, for tests and logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitStats {
    pub puts: u64,
    pub parts_uploaded: u64,
    pub parts_copied: u64,
    pub bytes_uploaded: u64,
    pub bytes_copied: u64,
    /// Parts of zeros (holes where the store has them) and their bytes.
    pub parts_zeroed: u64,
    pub bytes_zeroed: u64,
    pub checkpoints: u64,
}

/// The open-for-writing state of one file.
pub struct Writer {
    pub id: u64,
    /// The key the next version goes to (follows renames).
    pub key: String,
    /// The file's current version as this writer made or found it, or none for a new file.
    pub base: Option<ObjectInfo>,
    /// The last checkpoint, a version of `stage_key` (not the file's): the file's bytes are
    /// read from it, not from `base`, until the next commit.
    staged: Option<ObjectInfo>,
    /// The staging key of this writer, when the store stages (see the module doc).
    stage_key: Option<String>,
    /// Staged versions no longer needed, removed after the next commit or checkpoint.
    garbage: Vec<ObjectInfo>,
    /// Bytes `[0, base_valid)` of the file equal the source's (the staged checkpoint, else
    /// the base) where not dirty; past it, zeros.
    base_valid: u64,
    /// Size of the file.
    pub size: u64,
    /// Attributes of the next version (size aside).
    pub attrs: Attrs,
    /// Metadata of the next version other than the attributes (xattrs, foreign names).
    pub meta: Metadata,
    chunk: u64,
    min_part: u64,
    chunks: BTreeMap<u64, Chunk>,
    uploading: BTreeSet<u64>,
    upload: Option<Upload>,
    data_dirty: bool,
    meta_dirty: bool,
    explicit_mtime: bool,
    error: Option<FsError>,
    /// The file was unlinked or replaced: commits discard.
    pub unlinked: bool,
    pub stats: CommitStats,
}

impl Writer {
    /// A writer of `key` over `base` (its current version, if any).
    pub fn new(
        id: u64,
        key: String,
        base: Option<ObjectInfo>,
        attrs: Attrs,
        ctx: &WriteCtx,
    ) -> Writer {
        let mut chunk = ctx.part_size.max(ctx.min_part).max(UNIT as u64);
        let base_size = base.as_ref().map(|b| b.size).unwrap_or(0);
        // Leave room to at least double an existing large file.
        let needed = (base_size.saturating_mul(2)).div_ceil(MAX_CHUNKS);
        if needed > chunk {
            let mib = 1024 * 1024;
            chunk = needed.div_ceil(mib) * mib;
        }
        let meta = base
            .as_ref()
            .map(|b| b.metadata.clone())
            .unwrap_or_default();
        Writer {
            id,
            key,
            base,
            staged: None,
            stage_key: ctx
                .stage
                .as_ref()
                .map(|s| format!("{STAGE_PREFIX}{s}-{id}")),
            garbage: Vec::new(),
            base_valid: base_size,
            size: base_size,
            attrs,
            meta,
            chunk,
            min_part: ctx.min_part,
            chunks: BTreeMap::new(),
            uploading: BTreeSet::new(),
            upload: None,
            data_dirty: false,
            meta_dirty: false,
            explicit_mtime: false,
            error: None,
            unlinked: false,
            stats: CommitStats::default(),
        }
    }

    /// The chunk size of this writer.
    pub fn chunk_size(&self) -> u64 {
        self.chunk
    }

    /// Whether bytes were written (or the size changed) since the last commit (a staged
    /// checkpoint holds some).
    pub fn is_data_dirty(&self) -> bool {
        self.data_dirty || self.staged.is_some()
    }

    /// Whether there is anything to commit.
    pub fn is_dirty(&self) -> bool {
        self.is_data_dirty() || self.meta_dirty
    }

    /// Where the file's bytes not in buffers come from: the staged checkpoint, else the base.
    fn source(&self) -> Option<&ObjectInfo> {
        self.staged.as_ref().or(self.base.as_ref())
    }

    /// Bytes held in buffers now.
    pub fn buffered_bytes(&self) -> usize {
        self.chunks
            .values()
            .map(|c| match c {
                Chunk::Dirty(d) => d.buf.len(),
                _ => 0,
            })
            .sum()
    }

    /// The attributes as the file is now.
    pub fn current_attrs(&self) -> Attrs {
        let mut a = self.attrs.clone();
        a.kind = Kind::File;
        a.size = self.size;
        a
    }

    /// A write by a process without CAP_FSETID: drops the set-id bits
    /// ([`crate::attr::killed_setid`]); the next version carries the new mode. False when
    /// there was nothing to drop.
    pub fn kill_setid(&mut self) -> bool {
        let perm = crate::attr::killed_setid(self.attrs.perm);
        if perm == self.attrs.perm {
            return false;
        }
        self.attrs.perm = perm;
        self.touch_meta(None);
        true
    }

    /// Marks the metadata changed (chmod, chown, utimens, xattr) so the next commit writes it;
    /// the status changed now (ctime), as the version made at the commit will say.
    pub fn touch_meta(&mut self, explicit_mtime: Option<SystemTime>) {
        if let Some(t) = explicit_mtime {
            self.attrs.mtime = t;
            self.explicit_mtime = true;
        }
        self.attrs.ctime = SystemTime::now();
        self.meta_dirty = true;
    }

    /// A write or truncate: the data and the status changed now (mtime and ctime, as POSIX
    /// marks them), until the version made at the commit carries its own times.
    fn data_changed_now(&mut self) {
        let now = SystemTime::now();
        self.attrs.mtime = now;
        self.attrs.ctime = now;
        self.explicit_mtime = false;
    }

    fn check_size(&self, end: u64) -> FsResult<()> {
        if end.div_ceil(self.chunk) > MAX_CHUNKS {
            return Err(FsError::TooBig(format!(
                "{}: {end} bytes is more than {MAX_CHUNKS} parts of {} bytes",
                self.key, self.chunk
            )));
        }
        Ok(())
    }

    /// Collects the results of background uploads that finished.
    fn poll_uploads(&mut self) {
        let done: Vec<u64> = self
            .uploading
            .iter()
            .copied()
            .filter(|i| matches!(self.chunks.get(i), Some(Chunk::Uploading(h)) if h.is_finished()))
            .collect();
        for i in done {
            self.uploading.remove(&i);
            if let Some(Chunk::Uploading(mut h)) = self.chunks.remove(&i) {
                match (&mut h).now_or_never() {
                    Some(Ok(Ok(pi))) => {
                        self.chunks.insert(i, Chunk::Uploaded(pi));
                    }
                    Some(Ok(Err(e))) => self.fail(e),
                    Some(Err(e)) => self.fail(FsError::Internal(format!("upload task: {e}"))),
                    // Finished but not ready to this poll (tokio's cooperative budget): look
                    // again next time.
                    None => {
                        self.chunks.insert(i, Chunk::Uploading(h));
                        self.uploading.insert(i);
                    }
                }
            }
        }
    }

    fn fail(&mut self, e: FsError) {
        tracing::error!(key = %self.key, error = %e, "upload failed; the write will be reported as failed");
        if self.error.is_none() {
            self.error = Some(e);
        }
    }

    fn check_error(&mut self) -> FsResult<()> {
        self.poll_uploads();
        match &self.error {
            Some(e) => Err(e.duplicate()),
            None => Ok(()),
        }
    }

    fn chunk_is_remote(&self, i: u64) -> bool {
        matches!(
            self.chunks.get(&i),
            Some(Chunk::Uploading(_)) | Some(Chunk::Uploaded(_))
        )
    }

    /// Writes `data` at `offset`.
    pub async fn write(&mut self, ctx: &WriteCtx, offset: u64, data: &[u8]) -> FsResult<()> {
        self.check_error()?;
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or_else(|| FsError::TooBig(self.key.clone()))?;
        self.check_size(end)?;
        for (i, rs, src) in self.pieces(offset, data) {
            if self.chunk_is_remote(i) {
                self.checkpoint(ctx).await?;
            }
            let re = rs + src.len() as u64;
            let extra = self.reserve_memory(ctx, i, re as usize).await?;
            if self.put_piece(i, rs, src, extra)? {
                let up = self.ensure_upload(ctx).await?;
                self.spawn_part(ctx, &up, i)?;
            }
        }
        self.after_write(end);
        Ok(())
    }

    /// Writes `data` at `offset` when that needs no wait (the FUSE thread answers such a
    /// write at once, without a hop to the runtime): no chunk to checkpoint, memory free now,
    /// and a chunk that fills up has its multipart upload already (its part is then started on
    /// the current tokio runtime, which the caller must have entered). `None`, with nothing
    /// changed, when the write needs [`Writer::write`].
    pub fn try_write_now(
        &mut self,
        ctx: &WriteCtx,
        offset: u64,
        data: &[u8],
    ) -> Option<FsResult<()>> {
        // A part that fills up is started on the runtime: there must be one.
        tokio::runtime::Handle::try_current().ok()?;
        if let Err(e) = self.check_error() {
            return Some(Err(e));
        }
        let end = offset.checked_add(data.len() as u64)?;
        self.check_size(end).ok()?;
        let pieces = self.pieces(offset, data);
        // Every piece must be possible before any is applied.
        let mut grants = Vec::with_capacity(pieces.len());
        for (i, rs, src) in &pieces {
            let re = rs + src.len() as u64;
            if self.chunk_is_remote(*i) || (self.upload.is_none() && self.fills(*i, *rs..re)) {
                return None;
            }
            let (want, held) = self.memory_units(*i, re as usize);
            let extra = if want > held {
                Some(ctx.budget.try_acquire(want - held)?)
            } else {
                None
            };
            grants.push(extra);
        }
        for ((i, rs, src), extra) in pieces.into_iter().zip(grants) {
            match self.put_piece(i, rs, src, extra) {
                Ok(true) => {
                    let up = self.upload.clone()?;
                    if let Err(e) = self.spawn_part(ctx, &up, i) {
                        return Some(Err(e));
                    }
                }
                Ok(false) => {}
                Err(e) => return Some(Err(e)),
            }
        }
        self.after_write(end);
        Some(Ok(()))
    }

    /// `data` at `offset` cut at chunk boundaries: (chunk, offset in the chunk, bytes).
    fn pieces<'d>(&self, offset: u64, data: &'d [u8]) -> Vec<(u64, u64, &'d [u8])> {
        let p = self.chunk;
        let end = offset + data.len() as u64;
        let mut out = Vec::new();
        let mut pos = offset;
        while pos < end {
            let i = pos / p;
            let cs = i * p;
            let n = end.min(cs + p) - pos;
            let at = (pos - offset) as usize;
            out.push((i, pos - cs, &data[at..at + n as usize]));
            pos += n;
        }
        out
    }

    /// Whether writing `rel` (relative to the chunk) into chunk `i` would make it whole.
    fn fills(&self, i: u64, rel: Range<u64>) -> bool {
        let mut r = match self.chunks.get(&i) {
            Some(Chunk::Dirty(d)) => d.ranges.clone(),
            _ => RangeSet::default(),
        };
        r.insert(rel);
        r.covers(&(0..self.chunk))
    }

    fn after_write(&mut self, end: u64) {
        self.size = self.size.max(end);
        self.data_dirty = true;
        self.data_changed_now();
    }

    /// Memory units a buffer of `len` bytes for chunk `i` needs, and those it holds.
    fn memory_units(&self, i: u64, len: usize) -> (usize, usize) {
        let held = match self.chunks.get(&i) {
            Some(Chunk::Dirty(d)) => d.permit.as_ref().map(|p| p.num_permits()).unwrap_or(0),
            _ => 0,
        };
        (MemBudget::units(len), held)
    }

    /// The memory a buffer of `len` bytes for chunk `i` still needs, from the budget (waiting
    /// for it; when this writer's own buffers hold it, after a checkpoint).
    async fn reserve_memory(
        &mut self,
        ctx: &WriteCtx,
        i: u64,
        len: usize,
    ) -> FsResult<Option<OwnedSemaphorePermit>> {
        if matches!(self.chunks.get(&i), Some(c) if !matches!(c, Chunk::Dirty(_))) {
            return Err(FsError::Internal("chunk is not a buffer".into()));
        }
        let (want_units, held) = self.memory_units(i, len);
        if want_units <= held {
            return Ok(None);
        }
        if let Some(p) = ctx.budget.acquire(ctx, want_units - held).await? {
            return Ok(Some(p));
        }
        // This writer's own buffers hold the memory: checkpoint, then ask again.
        tracing::info!(key = %self.key, "write memory exhausted: checkpointing");
        self.checkpoint(ctx).await?;
        loop {
            if let Some(p) = ctx.budget.acquire(ctx, want_units).await? {
                return Ok(Some(p));
            }
        }
    }

    /// Copies `src` into chunk `i` at `rs` (its buffer made or grown, holding `extra` memory
    /// too); returns whether the chunk is now whole. Bytes appended at the buffer's end are
    /// copied once, with no zeroing first (a sequential write); only a gap before `rs` is
    /// zero-filled.
    fn put_piece(
        &mut self,
        i: u64,
        rs: u64,
        src: &[u8],
        extra: Option<OwnedSemaphorePermit>,
    ) -> FsResult<bool> {
        let p = self.chunk;
        let d = match self.chunks.entry(i).or_insert_with(|| {
            Chunk::Dirty(DirtyChunk {
                buf: Vec::new(),
                ranges: RangeSet::default(),
                permit: None,
            })
        }) {
            Chunk::Dirty(d) => d,
            _ => return Err(FsError::Internal("chunk is not a buffer".into())),
        };
        if let Some(extra) = extra {
            match d.permit.as_mut() {
                Some(p) => p.merge(extra),
                None => d.permit = Some(extra),
            }
        }
        let start = rs as usize;
        let end = start + src.len();
        if d.buf.capacity() < end {
            // Doubling (at least to the next budget unit, at most the chunk): a chunk written
            // in order is moved at most about once in all. glibc grows a large block in place
            // with mremap, jemalloc copies it: growing by a unit at a time copied an 8 MiB
            // part's bytes 3.5 times over. The capacity beyond the bytes written is not
            // charged to the budget; it is address space that no write has touched yet.
            let cap = (MemBudget::units(end) * UNIT)
                .max(2 * d.buf.capacity())
                .min(p as usize)
                .max(end);
            d.buf.reserve_exact(cap - d.buf.len());
        }
        if d.buf.len() < start {
            d.buf.resize(start, 0);
        }
        let overlap = (d.buf.len() - start).min(src.len());
        d.buf[start..start + overlap].copy_from_slice(&src[..overlap]);
        d.buf.extend_from_slice(&src[overlap..]);
        d.ranges.insert(rs..end as u64);
        Ok(d.ranges.covers(&(0..p)))
    }

    async fn ensure_upload(&mut self, ctx: &WriteCtx) -> FsResult<Upload> {
        if let Some(u) = &self.upload {
            return Ok(u.clone());
        }
        let meta = self.build_meta(None);
        let key = self.stage_key.clone().unwrap_or_else(|| self.key.clone());
        let id = ctx
            .store
            .create_multipart(
                &key,
                PutOptions {
                    metadata: meta.clone(),
                    ..Default::default()
                },
            )
            .await?;
        let u = Upload { id, key, meta };
        self.upload = Some(u.clone());
        Ok(u)
    }

    /// Starts the upload of the whole chunk `i` as a part of `up`, on the current runtime.
    fn spawn_part(&mut self, ctx: &WriteCtx, up: &Upload, i: u64) -> FsResult<()> {
        let up = up.clone();
        let Some(Chunk::Dirty(d)) = self.chunks.remove(&i) else {
            return Err(FsError::Internal("no buffer to upload".into()));
        };
        let number = part_number(i, 0)?;
        let store = ctx.store.clone();
        let slots = ctx.uploads.clone();
        let body = Bytes::from(d.buf);
        let permit = d.permit;
        let len = body.len() as u64;
        let handle = tokio::spawn(async move {
            let _slot = slots
                .acquire_owned()
                .await
                .map_err(|_| FsError::Internal("upload slots closed".into()))?;
            let r = store
                .upload_part(&up.key, &up.id, number, Body::Bytes(body))
                .await
                .map_err(FsError::from);
            drop(permit);
            r
        });
        self.stats.parts_uploaded += 1;
        self.stats.bytes_uploaded += len;
        self.chunks.insert(i, Chunk::Uploading(handle));
        self.uploading.insert(i);
        Ok(())
    }

    /// Reads `[offset, offset + len)` of the file as it is now (dirty data over the base).
    pub async fn read(&mut self, ctx: &WriteCtx, offset: u64, len: u64) -> FsResult<Bytes> {
        self.check_error()?;
        let end = offset.saturating_add(len).min(self.size);
        if offset >= end {
            return Ok(Bytes::new());
        }
        let p = self.chunk;
        if (offset / p..=(end - 1) / p).any(|i| self.chunk_is_remote(i)) {
            self.checkpoint(ctx).await?;
        }
        let mut out = vec![0u8; (end - offset) as usize];
        let mut pos = offset;
        while pos < end {
            let i = pos / p;
            let cs = i * p;
            let se = end.min(cs + p);
            let rel = (pos - cs)..(se - cs);
            match self.chunks.get(&i) {
                Some(Chunk::Dirty(d)) => {
                    for g in d.ranges.gaps(&rel) {
                        self.fill_base(ctx, &mut out, offset, (cs + g.start)..(cs + g.end))
                            .await?;
                    }
                    if let Some(Chunk::Dirty(d)) = self.chunks.get(&i) {
                        for r in d.ranges.within(&rel) {
                            let dst = (cs + r.start - offset) as usize;
                            out[dst..dst + (r.end - r.start) as usize]
                                .copy_from_slice(&d.buf[r.start as usize..r.end as usize]);
                        }
                    }
                }
                _ => self.fill_base(ctx, &mut out, offset, pos..se).await?,
            }
            pos = se;
        }
        Ok(Bytes::from(out))
    }

    /// Copies base bytes of `range` (absolute) into `out` (which starts at `out_start`).
    async fn fill_base(
        &self,
        ctx: &WriteCtx,
        out: &mut [u8],
        out_start: u64,
        range: Range<u64>,
    ) -> FsResult<()> {
        let Some(base) = self.source() else {
            return Ok(());
        };
        let end = range.end.min(self.base_valid);
        if range.start >= end {
            return Ok(());
        }
        let src = Source::of(base);
        let data = ctx
            .cache
            .read(ctx.store.as_ref(), &src, range.start..end)
            .await?;
        let dst = (range.start - out_start) as usize;
        let n = data.len().min(out.len().saturating_sub(dst));
        out[dst..dst + n].copy_from_slice(&data[..n]);
        Ok(())
    }

    /// Sets the size (truncate or extend with zeros).
    pub async fn truncate(&mut self, ctx: &WriteCtx, new_size: u64) -> FsResult<()> {
        self.check_error()?;
        self.check_size(new_size)?;
        let p = self.chunk;
        if new_size < self.size {
            if new_size % p != 0 && self.chunk_is_remote(new_size / p) {
                self.checkpoint(ctx).await?;
            }
            let keep = new_size.div_ceil(p);
            let dropped: Vec<u64> = self.chunks.range(keep..).map(|(i, _)| *i).collect();
            for i in dropped {
                // A part still uploading finishes in the background and is left out.
                self.chunks.remove(&i);
                self.uploading.remove(&i);
            }
            if new_size % p != 0 {
                let i = new_size / p;
                let rel = new_size - i * p;
                if let Some(Chunk::Dirty(d)) = self.chunks.get_mut(&i) {
                    d.ranges.truncate(rel);
                    d.buf.truncate(rel as usize);
                }
            }
            self.base_valid = self.base_valid.min(new_size);
        }
        self.size = new_size;
        self.data_dirty = true;
        self.data_changed_now();
        Ok(())
    }

    /// The metadata of the next version. With the metadata an upload was started with, the
    /// mtime of that upload is kept unless one was set explicitly (utimens).
    fn build_meta(&self, upload_meta: Option<&Metadata>) -> Metadata {
        let mut m = self.meta.clone();
        let mut a = self.attrs.clone();
        a.kind = Kind::File;
        a.store_into(&mut m);
        if let (Some(um), false) = (upload_meta, self.explicit_mtime) {
            for k in [META_MTIME, META_MTIME_NSEC] {
                match um.get(k) {
                    Some(v) => m.insert(k.to_string(), v.clone()),
                    None => m.remove(k),
                };
            }
        }
        m
    }

    /// Completes the upload so far into a version the file's bytes are read from from then on:
    /// a staged version where the store stages (the file's current version stays), else a
    /// version of the file. A failure is remembered (and reported by the next flush) as well
    /// as returned.
    pub async fn checkpoint(&mut self, ctx: &WriteCtx) -> FsResult<()> {
        self.stats.checkpoints += 1;
        let r = match self.stage_key.clone() {
            Some(stage) => self.stage(ctx, &stage).await,
            None => self.commit(ctx, false).await.map(|_| ()),
        };
        match r {
            Ok(()) => Ok(()),
            Err(e) => {
                let d = e.duplicate();
                self.error = Some(e);
                Err(d)
            }
        }
    }

    /// Makes the new version (flush, fsync with `durable`, release). Returns it, or `None`
    /// when there was nothing to write.
    pub async fn commit(&mut self, ctx: &WriteCtx, durable: bool) -> FsResult<Option<ObjectInfo>> {
        self.poll_uploads();
        if let Some(e) = self.error.take() {
            self.reset(ctx).await;
            return Err(e);
        }
        if self.unlinked {
            self.reset(ctx).await;
            return Ok(None);
        }
        if !self.is_dirty() {
            if durable {
                ctx.store.sync().await?;
            }
            return Ok(None);
        }
        let key = self.key.clone();
        match self.write_version(ctx, &key, durable).await {
            Ok(info) => {
                self.after_commit(&info);
                self.drop_garbage(ctx).await;
                Ok(Some(info))
            }
            Err(e) => {
                tracing::error!(key = %self.key, error = %e, "commit failed; the previous version stays");
                self.reset(ctx).await;
                Err(e)
            }
        }
    }

    fn after_commit(&mut self, info: &ObjectInfo) {
        self.base = Some(info.clone());
        if let Some(s) = self.staged.take() {
            self.garbage.push(s);
        }
        self.size = info.size;
        self.base_valid = info.size;
        self.chunks.clear();
        self.uploading.clear();
        self.upload = None;
        self.data_dirty = false;
        self.meta_dirty = false;
        self.explicit_mtime = false;
        self.meta = info.metadata.clone();
        if let Some(t) = crate::attr::parse_mtime(&info.metadata) {
            self.attrs.mtime = t;
        }
        self.attrs.ctime = info.modified;
    }

    /// Drops everything not committed; the base stays the current version.
    async fn reset(&mut self, ctx: &WriteCtx) {
        if let Some(u) = self.upload.take() {
            if let Err(e) = ctx.store.abort_multipart(&u.key, &u.id).await {
                tracing::warn!(key = %u.key, error = %e, "abort of multipart upload failed");
            }
        }
        if let Some(s) = self.staged.take() {
            self.garbage.push(s);
        }
        self.drop_garbage(ctx).await;
        self.chunks.clear();
        self.uploading.clear();
        let size = self.base.as_ref().map(|b| b.size).unwrap_or(0);
        self.size = size;
        self.base_valid = size;
        self.data_dirty = false;
        self.meta_dirty = false;
        self.explicit_mtime = false;
    }

    /// Writes the file as it is now into a new version of `target` (the file's key, or the
    /// staging key for a checkpoint). An upload staged for the file's key is completed into
    /// the staging key and copied to `target` with the final metadata.
    async fn write_version(
        &mut self,
        ctx: &WriteCtx,
        target: &str,
        durable: bool,
    ) -> FsResult<ObjectInfo> {
        let store = ctx.store.clone();
        if !self.data_dirty {
            let meta = self.build_meta(None);
            return match self.source() {
                Some(b) => copy_version(store.as_ref(), b, target, meta, durable).await,
                None => put_version(store.as_ref(), target, Body::empty(), meta, durable).await,
            };
        }
        let p = self.chunk;
        let n = self.size.div_ceil(p);
        if self.upload.is_none() && n <= 1 && !self.parts_pay() {
            let data = self.materialize_small(ctx).await?;
            let meta = self.build_meta(None);
            self.stats.puts += 1;
            self.stats.bytes_uploaded += data.len() as u64;
            return put_version(store.as_ref(), target, Body::Bytes(data), meta, durable).await;
        }
        let up = self.ensure_upload(ctx).await?;
        // Wait for the parts in flight.
        let inflight: Vec<u64> = self.uploading.iter().copied().collect();
        for i in inflight {
            self.uploading.remove(&i);
            if let Some(Chunk::Uploading(h)) = self.chunks.remove(&i) {
                let pi = h
                    .await
                    .map_err(|e| FsError::Internal(format!("upload task: {e}")))??;
                self.chunks.insert(i, Chunk::Uploaded(pi));
            }
        }
        let parts = self.upload_parts(ctx, &up, n).await?;
        let mut info = store.complete_multipart(&up.key, &up.id, &parts).await?;
        self.upload = None;
        if up.key != target {
            // Staged for the file: copy it to the file's key with the final metadata.
            if durable {
                store.sync().await?;
            }
            let staged = info;
            let meta = self.build_meta(None);
            let copied = copy_version(store.as_ref(), &staged, target, meta, durable).await;
            self.garbage.push(staged);
            return copied;
        }
        if durable {
            store.sync().await?;
        }
        if self.stage_key.as_deref() == Some(target) {
            // A checkpoint: its metadata does not matter (the commit sets the final one).
            return Ok(info);
        }
        let final_meta = self.build_meta(Some(&up.meta));
        if final_meta != up.meta {
            info = copy_version(store.as_ref(), &info, &self.key, final_meta, durable).await?;
        }
        Ok(info)
    }
}

/// Files of one chunk are put whole unless parts would leave at least this many bytes out of
/// the upload (below it, one put costs less than a multipart upload's commits).
pub const REUSE_MIN: u64 = 128 * 1024;

/// Puts `body` as a new version of `key` with `meta`.
async fn put_version(
    store: &dyn ObjectStore,
    key: &str,
    body: Body,
    meta: Metadata,
    durable: bool,
) -> FsResult<ObjectInfo> {
    let opts = PutOptions {
        metadata: meta,
        durable,
        ..Default::default()
    };
    Ok(store.put(key, body, opts).await?)
}

/// A new version of `to` that shares the data of the version `from` and carries `meta`
/// (a metadata-only version when `to` is `from`'s key).
pub async fn copy_version(
    store: &dyn ObjectStore,
    from: &ObjectInfo,
    to: &str,
    meta: Metadata,
    durable: bool,
) -> FsResult<ObjectInfo> {
    let opts = CopyOptions {
        source_version: Some(from.version.clone()),
        metadata: Some(meta),
        durable,
        ..Default::default()
    };
    Ok(store.copy(&from.key, to, opts).await?)
}
