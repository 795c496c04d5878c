//! The write path: an object's bytes become blobs appended to the open volume (in parallel, in
//! order), then one atomic metadata commit points a version at them; durable writes then wait
//! for a group sync (fsync the volumes written, then flush the metadata).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::stream::{FuturesOrdered, StreamExt};

use crate::error::{Result, StoreError};
use crate::key::validate;
use crate::local::records::{BlobRecord, Extent, VersionRecord};
use crate::local::{volume, Inner, LocalStore, INLINE_LIMIT};
use crate::types::{Body, ObjectInfo, PutOptions};

/// Blob writes of one request in flight at once.
const WRITE_PIPELINE: usize = 2;

/// A blob just written, not yet committed.
pub(crate) struct WrittenBlob {
    id: u64,
    record: BlobRecord,
    sums: Vec<[u8; 32]>,
}

/// The data of one write: blobs to commit, and what they add up to.
pub(crate) struct Written {
    pub(crate) blobs: Vec<(u64, BlobRecord)>,
    pub(crate) extents: Vec<Extent>,
    pub(crate) size: u64,
    pub(crate) etag: String,
}

impl Written {
    fn assemble(parts: Vec<WrittenBlob>) -> Written {
        let mut h = blake3::Hasher::new();
        let mut extents = Vec::with_capacity(parts.len());
        let mut blobs = Vec::with_capacity(parts.len());
        let mut size = 0;
        for p in parts {
            for s in &p.sums {
                h.update(s);
            }
            size += p.record.len;
            extents.push(Extent {
                blob: p.id,
                offset: 0,
                len: p.record.len,
            });
            blobs.push((p.id, p.record));
        }
        Written {
            blobs,
            extents,
            size,
            etag: h.finalize().to_hex()[..32].to_string(),
        }
    }
}

impl Inner {
    pub(crate) fn write_blob(&self, data: &[u8]) -> Result<WrittenBlob> {
        let bs = self.cfg.block_size;
        let id = self.meta.next_id()?;
        let n = volume::blob_disk_len(data.len() as u64, bs);
        let (vol, files, offset) = self.disks.reserve(&self.meta, n)?;
        let sums = volume::write_blob(&files, offset, id, data, bs)
            .map_err(|e| StoreError::io(format!("writing volume {vol:016x}"), e))?;
        if data.len() as u64 >= volume::EARLY_WRITEBACK_MIN {
            volume::start_writeback(&files, offset, n);
        }
        Ok(WrittenBlob {
            id,
            record: BlobRecord {
                volume: vol,
                offset,
                len: data.len() as u64,
                block_size: bs,
                refs: 1,
                freed_at: 0,
            },
            sums,
        })
    }

    /// Makes every completed write durable: fsync volumes, then flush the metadata.
    pub(crate) fn sync_all(&self) -> Result<()> {
        self.group.sync(|| {
            self.disks.sync_dirty()?;
            self.meta.save_stats()?;
            self.meta.flush()
        })
    }

    pub(crate) fn bump(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }
}

impl LocalStore {
    /// Writes a body as blobs (in parallel, in order), without committing them.
    pub(super) async fn write_body(&self, body: Body) -> Result<Written> {
        let blob_size = self.inner.cfg.blob_size;
        let mut pipe = Pipeline {
            inner: self.inner.clone(),
            inflight: FuturesOrdered::new(),
            done: Vec::new(),
        };
        match body {
            Body::Bytes(b) => {
                if b.len() <= blob_size {
                    // One blob: write it on this task's blocking hop, no pipeline.
                    if b.is_empty() {
                        return Ok(Written::assemble(Vec::new()));
                    }
                    let blob = self.blocking(move |i| i.write_blob(&b)).await?;
                    return Ok(Written::assemble(vec![blob]));
                }
                let mut off = 0;
                while off < b.len() {
                    let end = (off + blob_size).min(b.len());
                    pipe.push(b.slice(off..end)).await?;
                    off = end;
                }
            }
            Body::Stream(mut s) => {
                let mut buf = BytesMut::new();
                while let Some(chunk) = s.next().await {
                    let chunk = chunk?;
                    if buf.is_empty() && chunk.len() == blob_size {
                        pipe.push(chunk).await?;
                        continue;
                    }
                    buf.extend_from_slice(&chunk);
                    while buf.len() >= blob_size {
                        let full = buf.split_to(blob_size).freeze();
                        pipe.push(full).await?;
                    }
                }
                if !buf.is_empty() {
                    pipe.push(buf.freeze()).await?;
                }
            }
        }
        pipe.finish().await.map(Written::assemble)
    }

    /// `ObjectStore::put`: blobs first, then one commit, then a sync when asked for.
    pub(super) async fn put_object(
        &self,
        key: &str,
        body: Body,
        opts: PutOptions,
    ) -> Result<ObjectInfo> {
        validate(key)?;
        let key = key.to_string();
        let durable = opts.durable;
        let commit = move |i: &Inner, w: Written| {
            let rec = VersionRecord {
                delete_marker: false,
                size: w.size,
                etag: w.etag,
                metadata: opts.metadata,
                extents: w.extents,
            };
            let vid = i.meta.commit_put(&key, w.blobs, &rec, opts.condition)?;
            i.bump();
            Ok(Self::info(&key, vid, &rec))
        };
        let info = match body {
            Body::Bytes(b) if (b.len() as u64) <= INLINE_LIMIT => self.inline(|i| {
                let parts = if b.is_empty() {
                    Vec::new()
                } else {
                    vec![i.write_blob(&b)?]
                };
                commit(i, Written::assemble(parts))
            })?,
            body => {
                let w = self.write_body(body).await?;
                self.inline(|i| commit(i, w))?
            }
        };
        self.sync_if(durable).await?;
        Ok(info)
    }

    pub(super) async fn sync_if(&self, durable: bool) -> Result<()> {
        if durable {
            self.blocking(|i| i.sync_all()).await
        } else {
            Ok(())
        }
    }
}

/// Keeps up to [`WRITE_PIPELINE`] blob writes of one request running while the next chunk is
/// gathered, and collects the results in order.
struct Pipeline {
    inner: Arc<Inner>,
    inflight: FuturesOrdered<tokio::task::JoinHandle<Result<WrittenBlob>>>,
    done: Vec<WrittenBlob>,
}

impl Pipeline {
    async fn push(&mut self, data: Bytes) -> Result<()> {
        while self.inflight.len() >= WRITE_PIPELINE {
            self.take_one().await?;
        }
        let inner = self.inner.clone();
        self.inflight
            .push_back(tokio::task::spawn_blocking(move || inner.write_blob(&data)));
        Ok(())
    }

    async fn take_one(&mut self) -> Result<()> {
        if let Some(r) = self.inflight.next().await {
            let blob =
                r.map_err(|e| StoreError::Metadata(format!("a write task failed: {e}")))??;
            self.done.push(blob);
        }
        Ok(())
    }

    async fn finish(mut self) -> Result<Vec<WrittenBlob>> {
        while !self.inflight.is_empty() {
            self.take_one().await?;
        }
        Ok(self.done)
    }
}
