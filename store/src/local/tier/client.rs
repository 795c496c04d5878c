//! The tier's S3 client: whole-object PUT, ranged GET, a streamed BLAKE3 of a whole object (the
//! read-back check of an upload, which never holds a second copy) and DELETE of volume objects,
//! on a small runtime of its own so that the store's blocking code can wait for it from any
//! thread, several threads at once (the tier's parallel moves).
//!
//! It rides on [`crate::s3::S3Store`] (retries with backoff, error mapping: an endpoint that
//! does not answer is `Unavailable` after the SDK's attempts), opened on first use and again
//! after a failure, so a store opens and serves its local data while its remote is down.
//! Built without the `s3` feature, every operation is an error saying so.

use std::ops::Range;

use bytes::Bytes;

use crate::error::{Result, StoreError};
use crate::local::tier::TierRecord;

#[cfg(feature = "s3")]
mod imp {
    use std::future::Future;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::s3::{S3Config, S3Store};
    use crate::store::ObjectStore;
    use crate::types::{Body, GetOptions, PutOptions};

    /// A lazily opened connection to the tier's bucket.
    pub struct Client {
        cfg: S3Config,
        store: Mutex<Option<Arc<S3Store>>>,
        rt: Option<tokio::runtime::Runtime>,
    }

    impl Drop for Client {
        fn drop(&mut self) {
            // Dropping a runtime blocks; this may run on an async task.
            if let Some(rt) = self.rt.take() {
                rt.shutdown_background();
            }
        }
    }

    impl Client {
        pub fn new(rec: &TierRecord) -> Result<Client> {
            let mut cfg = S3Config::from_url(&format!("s3://{}", rec.bucket))?;
            cfg.endpoint = rec.endpoint.clone();
            cfg.region = rec.region.clone();
            cfg.profile = rec.profile.clone();
            // The tier writes no conditional requests: skip the probe.
            cfg.conditional_put = Some(false);
            cfg.min_part_size = 5 << 20;
            if let Ok(n) = std::env::var("OBJFS_TIER_MAX_ATTEMPTS") {
                cfg.max_attempts = n.parse().unwrap_or(cfg.max_attempts).max(1);
            }
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("objfs-tier")
                .enable_all()
                .build()
                .map_err(|e| StoreError::io("starting the tier's runtime", e))?;
            Ok(Client {
                cfg,
                store: Mutex::new(None),
                rt: Some(rt),
            })
        }

        /// Runs `fut` on the client's runtime and waits for it (from any thread, async or not).
        fn run<T: Send + 'static>(
            &self,
            fut: impl Future<Output = Result<T>> + Send + 'static,
        ) -> Result<T> {
            let Some(rt) = &self.rt else {
                return Err(StoreError::Unavailable {
                    what: "the remote tier".into(),
                    reason: "its client is shut down".into(),
                });
            };
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            rt.spawn(async move {
                let _ = tx.send(fut.await);
            });
            rx.recv().map_err(|_| StoreError::Unavailable {
                what: "the remote tier".into(),
                reason: "its request was dropped".into(),
            })?
        }

        fn store(&self) -> Result<Arc<S3Store>> {
            let mut s = self.store.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(s) = &*s {
                return Ok(s.clone());
            }
            let cfg = self.cfg.clone();
            let opened = Arc::new(self.run(async move { S3Store::open(cfg).await })?);
            *s = Some(opened.clone());
            Ok(opened)
        }

        /// Checks that the bucket answers.
        pub fn check(&self) -> Result<()> {
            self.store().map(|_| ())
        }

        /// Writes `body` as object `key`; returns its ETag.
        pub fn put(&self, key: &str, body: Bytes) -> Result<String> {
            let s = self.store()?;
            let key = key.to_string();
            self.run(async move {
                let info = s
                    .put(&key, Body::Bytes(body), PutOptions::default())
                    .await?;
                Ok(info.etag)
            })
        }

        /// Bytes `range` of object `key` (exactly those: a short object is an error).
        pub fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
            let s = self.store()?;
            let k = key.to_string();
            let want = range.end - range.start;
            let got = self.run(async move {
                let opts = GetOptions {
                    version: None,
                    range: Some(range),
                };
                s.get(&k, opts).await?.bytes().await
            })?;
            if got.len() as u64 != want {
                return Err(StoreError::Corrupt {
                    what: format!(
                        "remote object {key}: {} bytes where {want} were asked for",
                        got.len()
                    ),
                });
            }
            Ok(got)
        }

        /// The whole object `key`.
        pub fn get(&self, key: &str) -> Result<Bytes> {
            let s = self.store()?;
            let k = key.to_string();
            self.run(async move { s.get(&k, GetOptions::default()).await?.bytes().await })
        }

        /// The size and BLAKE3 of the whole object `key`, hashed as it streams in.
        pub fn hash(&self, key: &str) -> Result<(u64, [u8; 32])> {
            use futures::StreamExt;
            let s = self.store()?;
            let k = key.to_string();
            self.run(async move {
                let mut body = s.get(&k, GetOptions::default()).await?.body.into_stream();
                let mut h = blake3::Hasher::new();
                let mut len = 0u64;
                while let Some(chunk) = body.next().await {
                    let chunk = chunk?;
                    len += chunk.len() as u64;
                    h.update(&chunk);
                }
                Ok((len, *h.finalize().as_bytes()))
            })
        }

        /// Deletes object `key` (a missing one is fine).
        pub fn delete(&self, key: &str) -> Result<()> {
            let s = self.store()?;
            let k = key.to_string();
            self.run(async move {
                match s.delete(&k).await {
                    Ok(_) | Err(StoreError::NotFound { .. }) => Ok(()),
                    Err(e) => Err(e),
                }
            })
        }
    }
}

#[cfg(not(feature = "s3"))]
mod imp {
    use super::*;

    /// Without the `s3` feature: every remote operation says so.
    pub struct Client;

    fn missing() -> StoreError {
        StoreError::Unsupported(
            "this store has a remote tier, but this build of objfs has no S3 support (feature `s3`)"
                .into(),
        )
    }

    impl Client {
        pub fn new(_rec: &TierRecord) -> Result<Client> {
            Ok(Client)
        }
        pub fn check(&self) -> Result<()> {
            Err(missing())
        }
        pub fn put(&self, _key: &str, _body: Bytes) -> Result<String> {
            Err(missing())
        }
        pub fn get_range(&self, _key: &str, _range: Range<u64>) -> Result<Bytes> {
            Err(missing())
        }
        pub fn get(&self, _key: &str) -> Result<Bytes> {
            Err(missing())
        }
        pub fn hash(&self, _key: &str) -> Result<(u64, [u8; 32])> {
            Err(missing())
        }
        pub fn delete(&self, _key: &str) -> Result<()> {
            Err(missing())
        }
    }
}

pub use imp::Client;
