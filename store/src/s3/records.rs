//! Store records on a bucket: named snapshots, the retention policy and restore checkpoints
//! (see "Records" in store.rs) kept as small objects under the reserved prefix
//! `PREFIX/.objfs/records/NAME`, so that every machine mounting the bucket sees the same ones.
//!
//! The reserved prefix is not part of the store's key space: keys under it are refused, and
//! listings leave it out, so a mount never shows `.objfs`. A record is written with one
//! PutObject (S3 makes it durable before answering) and removed with one DeleteObject (in a
//! versioned bucket that leaves a delete marker under the reserved prefix, like any delete).

use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use futures::StreamExt;

use super::errors;
use super::{S3Store, RESERVED_PREFIX};
use crate::error::{Result, StoreError};

/// Where records live, under the reserved prefix.
const RECORDS: &str = "records/";

impl S3Store {
    /// The full key of a record, its name checked by the record-name rules (which also keep
    /// it within S3's key length).
    fn record_key(&self, name: &str) -> Result<String> {
        crate::key::validate_record_name(name)?;
        let full = format!("{}{name}", self.prefix_of_records());
        if full.len() > crate::key::S3_MAX_KEY_LEN {
            return Err(StoreError::InvalidArgument(format!(
                "record name {name:?} is too long for the store's prefix"
            )));
        }
        Ok(full)
    }

    pub(super) async fn record_get(&self, name: &str) -> Result<Option<Bytes>> {
        let full = self.record_key(name)?;
        self.record_get_full(name, &full).await
    }

    async fn record_get_full(&self, name: &str, full: &str) -> Result<Option<Bytes>> {
        let sent = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(full)
            .send()
            .await;
        let Some(out) = errors::unless_status(self.ctx("GetObject", name), sent, 404)? else {
            return Ok(None);
        };
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| StoreError::Unavailable {
                what: format!("record {name:?} at {}", self.location),
                reason: format!("the body broke off: {e}"),
            })?;
        Ok(Some(body.into_bytes()))
    }

    /// Writes (`Some`) or removes (`None`) a record. S3 acknowledges a write once it is
    /// durable, so `durable` changes nothing here.
    pub(super) async fn record_put(&self, name: &str, value: Option<Bytes>) -> Result<()> {
        let full = self.record_key(name)?;
        match value {
            Some(v) => {
                self.client
                    .put_object()
                    .bucket(&self.bucket)
                    .key(&full)
                    .body(ByteStream::from(v))
                    .send()
                    .await
                    .map_err(|e| errors::map(self.ctx("PutObject", name), e))?;
            }
            None => {
                self.client
                    .delete_object()
                    .bucket(&self.bucket)
                    .key(&full)
                    .send()
                    .await
                    .map_err(|e| errors::map(self.ctx("DeleteObject", name), e))?;
            }
        }
        Ok(())
    }

    /// The records whose names start with `prefix`, in byte order of their names (a record
    /// removed between the listing and its read is left out).
    pub(super) async fn record_list(&self, prefix: &str) -> Result<Vec<(String, Bytes)>> {
        let base = self.prefix_of_records();
        let full_prefix = format!("{base}{prefix}");
        let mut names = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&full_prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| errors::map(self.ctx("ListObjectsV2", prefix), e))?;
            names.extend(
                out.contents()
                    .iter()
                    .filter_map(|o| o.key()?.strip_prefix(base.as_str()).map(str::to_string))
                    .filter(|n| !n.is_empty()),
            );
            match out.next_continuation_token() {
                Some(t) if out.is_truncated() == Some(true) && !t.is_empty() => {
                    token = Some(t.to_string())
                }
                _ => break,
            }
        }
        names.sort();
        let read: Vec<Result<Option<(String, Bytes)>>> = futures::stream::iter(names)
            .map(|name| async move {
                let full = format!("{}{name}", self.prefix_of_records());
                Ok(self.record_get_full(&name, &full).await?.map(|v| (name, v)))
            })
            .buffered(self.concurrency * 2)
            .collect()
            .await;
        read.into_iter().filter_map(|r| r.transpose()).collect()
    }

    fn prefix_of_records(&self) -> String {
        format!("{}{RESERVED_PREFIX}{RECORDS}", self.prefix)
    }
}
