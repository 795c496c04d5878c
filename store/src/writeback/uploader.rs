//! The write-back uploader: a thread with a runtime of its own that sends pending changes to
//! the bucket, a bounded number at a time, each key's changes in journal order, until the
//! decorator is dropped. A change leaves the journal only once the bucket acknowledged it.
//! A failure that may pass (the bucket down, throttling, a 5xx, a timeout, an unknown error)
//! is retried with backoff for as long as it lasts; one that cannot (see [`permanent`]: 403,
//! a missing bucket, a request the bucket calls invalid) stops that key: its change stays in
//! the journal, logged and shown by `status` as failed (also after a restart: the refusal is
//! recorded in the journal), until it is retried on request.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tracing::{error, info, warn};

use super::state::{Data, Kind, Pending};
use super::{journal, Shared};
use crate::error::{ErrorKind, Result, StoreError};
use crate::types::{Body, CopyOptions, ObjectInfo, PutOptions, VersionId};

/// First and longest wait between two tries of a failing upload.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Whether the bucket's answer `e` to an upload will be the same however often it is tried:
/// refused credentials or permissions, a bucket that does not exist, a request it calls
/// invalid, a copy whose source version is gone, a journal entry whose body is damaged.
/// Everything else (the bucket unreachable, 5xx, throttling, local I/O, errors of no known
/// kind) is retried.
pub fn permanent(e: &StoreError) -> bool {
    matches!(
        e.kind(),
        ErrorKind::PermissionDenied
            | ErrorKind::NoSuchBucket
            | ErrorKind::InvalidArgument
            | ErrorKind::InvalidKey
            | ErrorKind::InvalidPart
            | ErrorKind::InvalidRange
            | ErrorKind::PreconditionFailed
            | ErrorKind::NotFound
            | ErrorKind::NoSuchVersion
            | ErrorKind::Unsupported
            | ErrorKind::Corrupt
    )
}

/// Starts the uploader thread.
pub fn start(shared: Arc<Shared>) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("objfs-writeback-io")
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("objfs-writeback".into())
        .spawn(move || rt.block_on(run(shared)))?;
    Ok(())
}

async fn run(shared: Arc<Shared>) {
    let mut tasks: JoinSet<()> = JoinSet::new();
    loop {
        if shared.stop.load(Ordering::Acquire) {
            tasks.shutdown().await;
            return;
        }
        let woken = shared.wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        while tasks.len() < shared.concurrency {
            let next = shared.lock().take_ready();
            let Some(p) = next else { break };
            let s = shared.clone();
            tasks.spawn(async move { upload(&s, p).await });
        }
        // The next delayed change, if there is room to send it.
        let due = shared
            .lock()
            .next_due()
            .filter(|_| tasks.len() < shared.concurrency);
        let until = due.map(tokio::time::Instant::from_std);
        tokio::select! {
            _ = &mut woken => {}
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = tokio::time::sleep_until(until.unwrap_or_else(far_future)), if until.is_some() => {}
        }
    }
}

fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(3600)
}

/// Sends one change until the bucket takes it (then forgets it) or refuses it for good (then
/// marks its key failed).
async fn upload(shared: &Shared, p: Pending) {
    let mut wait = FIRST_BACKOFF;
    let mut tries = 0u32;
    loop {
        let result = {
            // Version listings wait for changes in flight (see `list_versions`).
            let _gate = shared.gate.read().await;
            let r = send(shared, &p).await;
            if let Ok(made) = &r {
                // Answers the bucket gave while the change was in flight are not kept, and
                // the kept listings show it (again) before the journal stops answering; the
                // new version's description is the bucket's answer for the key from now.
                let recent = &shared.recent;
                let version = match made {
                    Made::Marker(v) => {
                        recent.now_absent(&p.key);
                        v.clone()
                    }
                    Made::Version(info) => {
                        recent.now_exists(&p.key);
                        recent.keep_head(recent.ticket(), &p.key, Some(info.clone()));
                        Some(info.version.clone())
                    }
                };
                shared.lock().uploaded(&p.key, p.seq, version);
            }
            r
        };
        match result {
            Ok(_) => {
                if tries > 0 {
                    info!(key = %p.key, tries, "write-back: uploaded after retries");
                    shared.lock().failing = None;
                }
                shared.progress.notify_waiters();
                shared.wake.notify_one();
                return;
            }
            Err(e) if permanent(&e) => {
                error!(
                    key = %p.key,
                    entry = %format_args!("{:016x}", p.seq),
                    segment = %p.file.path().display(),
                    tries = tries + 1,
                    "write-back: the bucket refused an upload; it stays in the journal and is \
                     not retried until `objfs writeback retry`: {e}"
                );
                shared.record_failure(&p, e.to_string());
                shared.progress.notify_waiters();
                shared.wake.notify_one();
                return;
            }
            Err(e) => {
                tries += 1;
                warn!(key = %p.key, tries, "write-back: upload failed, will retry: {e}");
                shared.lock().failing = Some(format!("{}: {e}", p.key));
                if shared.stop.load(Ordering::Acquire) {
                    return;
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(MAX_BACKOFF);
                if shared.lock().drop_superseded(&p) {
                    shared.progress.notify_waiters();
                    shared.wake.notify_one();
                    return;
                }
            }
        }
    }
}

/// What an upload made in the bucket.
enum Made {
    /// A delete: the marker's id, if the bucket made one.
    Marker(Option<VersionId>),
    /// A new version.
    Version(ObjectInfo),
}

/// One try.
async fn send(shared: &Shared, p: &Pending) -> Result<Made> {
    let inner = &shared.inner;
    match &p.kind {
        Kind::Delete => inner.delete(&p.key).await.map(Made::Marker),
        Kind::Put {
            info,
            data: Data::Journal,
        } => {
            let path = p.file.path().to_path_buf();
            let (off, len) = (p.file.body_offset, p.file.body_len);
            let body = tokio::task::spawn_blocking(move || journal::read_body(&path, off, 0..len))
                .await
                .map_err(|e| StoreError::Unavailable {
                    what: "write-back".into(),
                    reason: e.to_string(),
                })??;
            if body.len() as u64 != info.size {
                return Err(StoreError::Corrupt {
                    what: format!("write-back journal entry of {}", p.key),
                });
            }
            let opts = PutOptions {
                metadata: info.metadata.clone(),
                ..Default::default()
            };
            let made = inner.put(&p.key, Body::from(body), opts).await?;
            Ok(Made::Version(made))
        }
        Kind::Put {
            info,
            data: Data::Remote { key, version },
        } => {
            let opts = CopyOptions {
                source_version: Some(version.clone()).filter(|v| !v.is_null()),
                metadata: Some(info.metadata.clone()),
                ..Default::default()
            };
            let made = inner.copy(key, &p.key, opts).await?;
            Ok(Made::Version(made))
        }
    }
}
