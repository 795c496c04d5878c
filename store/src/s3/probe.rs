//! What opening a bucket asks before anything else: does it exist and answer (HeadBucket, so a
//! missing bucket or an unreachable endpoint is a clear error at open, not at the first file),
//! does it keep versions (GetBucketVersioning), and does it honour conditional writes (a probe
//! object under the reserved prefix `.objfs/`, written with `If-None-Match: *` twice and with a
//! wrong `If-Match`, then removed with every version it made).

use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::BucketVersioningStatus;

use super::errors::{self, Failure};
use super::{S3Store, RESERVED_PREFIX};
use crate::error::{Result, StoreError};

impl S3Store {
    /// HeadBucket: the bucket exists and these credentials reach it.
    pub(super) async fn check_bucket(&self) -> Result<()> {
        let sent = self.client.head_bucket().bucket(&self.bucket).send().await;
        match sent {
            Ok(_) => Ok(()),
            Err(e) => {
                let f = Failure::of(&e);
                if f.status == Some(404) {
                    return Err(StoreError::NoSuchBucket(format!(
                        "bucket {:?} does not exist at {} ({})",
                        self.bucket,
                        self.location,
                        f.request_id
                            .map(|r| format!("HTTP 404, request {r}"))
                            .unwrap_or_else(|| "HTTP 404".into())
                    )));
                }
                Err(f.into_error(self.ctx("HeadBucket", "")))
            }
        }
    }

    /// Whether the bucket keeps versions (GetBucketVersioning says `Enabled`). A suspended
    /// bucket, one never versioned, and a server without the call count as unversioned.
    pub(super) async fn bucket_versioning(&self) -> Result<bool> {
        match self
            .client
            .get_bucket_versioning()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(out) => Ok(out.status() == Some(&BucketVersioningStatus::Enabled)),
            Err(e) => {
                let f = Failure::of(&e);
                if matches!(f.status, Some(501)) || f.code.as_deref() == Some("NotImplemented") {
                    return Ok(false);
                }
                // An answer the SDK cannot parse (moto names its root element
                // `GetBucketVersioningResponse`): read the status from the body.
                let body = e
                    .raw_response()
                    .filter(|r| r.status().as_u16() == 200)
                    .and_then(|r| r.body().bytes())
                    .map(|b| String::from_utf8_lossy(b).into_owned());
                if let Some(body) = body {
                    return Ok(body.contains("<Status>Enabled</Status>"));
                }
                Err(f.into_error(self.ctx("GetBucketVersioning", "")))
            }
        }
    }

    /// Whether writes honour `If-None-Match: *` and `If-Match` (a server that ignores them
    /// would overwrite: the probe's second write then succeeds, and conditions are off).
    pub(super) async fn probe_conditional_put(&self) -> Result<bool> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let key = format!(
            "{}{RESERVED_PREFIX}probe-{}-{nanos}",
            self.prefix,
            std::process::id()
        );
        let mut made: Vec<Option<String>> = Vec::new();
        let result = self.probe_writes(&key, &mut made).await;
        // Remove what the probe made, whatever it found.
        for v in &made {
            let req = self.client.delete_object().bucket(&self.bucket).key(&key);
            let req = match v {
                Some(v) if self.features.versioning => req.version_id(v),
                _ => req,
            };
            let _ = req.send().await;
        }
        let supported = result?;
        tracing::debug!(store = %self.location, supported, "probed conditional writes");
        Ok(supported)
    }

    async fn probe_writes(&self, key: &str, made: &mut Vec<Option<String>>) -> Result<bool> {
        let put = |cond: Cond| {
            let req = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .body(ByteStream::from_static(b"objfs probe"));
            match cond {
                Cond::Absent => req.if_none_match("*"),
                Cond::WrongEtag => req.if_match("\"00000000000000000000000000000000\""),
            }
        };
        let ctx = self.ctx("PutObject", key);
        match put(Cond::Absent).send().await {
            Ok(out) => made.push(out.version_id().map(str::to_string)),
            Err(e) => {
                let f = Failure::of(&e);
                // A server that rejects the header outright has no conditional writes.
                if matches!(f.status, Some(400 | 501)) {
                    return Ok(false);
                }
                return Err(f.into_error(ctx));
            }
        }
        for cond in [Cond::Absent, Cond::WrongEtag] {
            match put(cond).send().await {
                Ok(out) => {
                    made.push(out.version_id().map(str::to_string));
                    return Ok(false);
                }
                Err(e) => {
                    let f = Failure::of(&e);
                    if !matches!(f.status, Some(412 | 409)) {
                        // Anything but "precondition failed": not honoured as S3 does.
                        if f.status.is_some_and(|s| s < 500) {
                            return Ok(false);
                        }
                        return Err(errors::map(ctx, e));
                    }
                }
            }
        }
        Ok(true)
    }
}

#[derive(Clone, Copy)]
enum Cond {
    Absent,
    WrongEtag,
}
