//! Single-object operations of the S3 backend: PutObject (a streamed body larger than a part
//! goes up as a multipart upload, parts in parallel), GetObject (by range and version; a large
//! read fetches its ranges in parallel, each pinned to the version the first one saw),
//! HeadObject, DeleteObject with and without a version, CopyObject (part by part above 5 GiB),
//! and the conditions of writes (`If-None-Match: *`, `If-Match: <etag>`).
//!
//! PutObject's response carries no time and no metadata, so a put ends with a HEAD of the
//! version it made; CopyObject's carries the new version's time and etag, which with the
//! source's size and the metadata sent describe the copy without a HEAD. Either way, what a
//! write returns is exactly what `head` returns afterwards. A rename is a HEAD of the source,
//! a copy and a delete (three requests, where the generic copy + delete takes six).

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use futures::stream::FuturesUnordered;
use futures::StreamExt;

use aws_sdk_s3::primitives::ByteStream;

use super::blocksum::{self, BlockSums};
use super::errors::{self, Failure};
use super::mapping::{self, clean_etag, quoted_etag, time_from_s3};
use super::S3Store;
use crate::error::{ErrorKind, Result, StoreError};
use crate::types::*;

/// What a conditional write sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Precondition {
    None,
    /// `If-None-Match: *`.
    Absent,
    /// `If-Match: "<etag>"` (the etag of the version the condition names).
    Etag(String),
}

/// The fields of a HEAD or GET answer that describe a version.
pub(super) struct Described<'a> {
    pub version: Option<&'a str>,
    pub etag: Option<&'a str>,
    pub size: u64,
    pub modified: Option<&'a aws_sdk_s3::primitives::DateTime>,
    pub metadata: Option<&'a std::collections::HashMap<String, String>>,
}

impl Described<'_> {
    pub fn info(&self, key: &str) -> ObjectInfo {
        ObjectInfo {
            key: key.to_string(),
            version: S3Store::version_of(self.version),
            size: self.size,
            modified: time_from_s3(self.modified),
            etag: clean_etag(self.etag),
            metadata: mapping::metadata_from_s3(self.metadata),
        }
    }
}

/// A byte stream that fails unless exactly `expected` bytes came (a short or long body is an
/// error, never data).
fn checked(body: ByteStream, expected: u64, what: String) -> ByteStream2 {
    let s = futures::stream::unfold((body, 0u64, false), move |(mut body, seen, done)| {
        let what = what.clone();
        async move {
            if done {
                return None;
            }
            match body.next().await {
                Some(Ok(chunk)) => {
                    let seen = seen + chunk.len() as u64;
                    if seen > expected {
                        let e = short(&what, seen, expected);
                        return Some((Err(e), (body, seen, true)));
                    }
                    Some((Ok(chunk), (body, seen, false)))
                }
                Some(Err(e)) => Some((
                    Err(StoreError::Unavailable {
                        what,
                        reason: format!("the body broke off: {e}"),
                    }),
                    (body, seen, true),
                )),
                None if seen != expected => {
                    Some((Err(short(&what, seen, expected)), (body, seen, true)))
                }
                None => None,
            }
        }
    });
    Box::pin(s)
}

type ByteStream2 = crate::types::ByteStream;

fn short(what: &str, seen: u64, expected: u64) -> StoreError {
    StoreError::Unavailable {
        what: what.to_string(),
        reason: format!("the body had {seen} bytes, {expected} were announced"),
    }
}

impl S3Store {
    /// `NoSuchVersion` without a request for an id a bucket without versioning cannot have
    /// (its one version is `null`).
    fn check_version_possible(
        &self,
        ctx: errors::Ctx<'_>,
        version: Option<&VersionId>,
    ) -> Result<()> {
        match version {
            Some(v) if !self.features.versioning && !v.is_null() => {
                Err(Failure::default().into_missing(ctx))
            }
            _ => Ok(()),
        }
    }

    /// Head of a full key, as the store key `key`.
    pub(super) async fn head_full(
        &self,
        key: &str,
        full: &str,
        version: Option<&VersionId>,
    ) -> Result<ObjectInfo> {
        Ok(self.head_with_sums(key, full, version).await?.0)
    }

    /// [`Self::head_full`], and the version's block checksums entry as it is stored, if any.
    pub(super) async fn head_with_sums(
        &self,
        key: &str,
        full: &str,
        version: Option<&VersionId>,
    ) -> Result<(ObjectInfo, Option<String>)> {
        let ctx = self.ctx("HeadObject", key).version(version);
        self.check_version_possible(ctx, version)?;
        let out = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(full)
            .set_version_id(self.version_param(version))
            .send()
            .await
            .map_err(|e| errors::map(ctx, e))?;
        if out.delete_marker() == Some(true) {
            return Err(Failure::default().into_missing(ctx));
        }
        let d = Described {
            version: out.version_id(),
            etag: out.e_tag(),
            size: out.content_length().unwrap_or(0).max(0) as u64,
            modified: out.last_modified(),
            metadata: out.metadata(),
        };
        let entry = blocksum::raw_entry(out.metadata()).map(str::to_string);
        Ok((self.pinned_info(ctx, key, version, d)?, entry))
    }

    /// The version an answer describes, which must be the one asked for (`version`): in a
    /// versioned bucket a different version is `NoSuchVersion`; otherwise the asked id (`null`)
    /// is the version.
    fn pinned_info(
        &self,
        ctx: errors::Ctx<'_>,
        key: &str,
        version: Option<&VersionId>,
        d: Described<'_>,
    ) -> Result<ObjectInfo> {
        let mut info = d.info(key);
        if let Some(v) = version {
            if self.features.versioning && info.version != *v {
                return Err(Failure::default().into_missing(ctx));
            }
            info.version = v.clone();
        }
        Ok(info)
    }

    /// What a write with `cond` sends, after checking what can be checked first: the version an
    /// `IfVersion` names must be the current one (its etag then goes in `If-Match`). Without
    /// conditional writes on the bucket, the checks are all there is (not atomic).
    pub(super) async fn precondition(
        &self,
        key: &str,
        full: &str,
        cond: &Condition,
    ) -> Result<Precondition> {
        let failed = |reason: String| StoreError::PreconditionFailed {
            key: key.to_string(),
            reason,
        };
        match cond {
            Condition::None => Ok(Precondition::None),
            Condition::IfNotExists => {
                if self.features.conditional_put {
                    return Ok(Precondition::Absent);
                }
                match self.head_full(key, full, None).await {
                    Ok(cur) => Err(failed(format!("the key exists (version {})", cur.version))),
                    Err(e) if e.kind() == ErrorKind::NotFound => Ok(Precondition::None),
                    Err(e) => Err(e),
                }
            }
            Condition::IfVersion(v) => match self.head_full(key, full, None).await {
                Ok(cur) if cur.version == *v => Ok(if self.features.conditional_put {
                    Precondition::Etag(cur.etag)
                } else {
                    Precondition::None
                }),
                Ok(cur) => Err(failed(format!(
                    "current version is {}, not {v}",
                    cur.version
                ))),
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    Err(failed(format!("no live version (wanted {v})")))
                }
                Err(e) => Err(e),
            },
        }
    }

    /// A failed conditional write: a missing key under `If-Match` is a failed condition too.
    pub(super) fn condition_error(key: &str, pre: &Precondition, e: StoreError) -> StoreError {
        match (pre, e.kind()) {
            (Precondition::Etag(_), ErrorKind::NotFound) => StoreError::PreconditionFailed {
                key: key.to_string(),
                reason: "the key was deleted meanwhile".into(),
            },
            _ => e,
        }
    }

    /// The version a write just made, as `head` describes it.
    pub(super) async fn head_written(
        &self,
        key: &str,
        full: &str,
        version: Option<&str>,
    ) -> Result<ObjectInfo> {
        let v = Self::version_of(version);
        let pin = (self.features.versioning && !v.is_null()).then_some(&v);
        self.head_full(key, full, pin).await
    }

    pub(super) async fn put_object(
        &self,
        key: &str,
        body: Body,
        opts: PutOptions,
    ) -> Result<ObjectInfo> {
        let full = self.full_key(key)?;
        let meta = mapping::metadata_to_s3(&opts.metadata)?;
        let first = match body {
            Body::Bytes(b) => b,
            Body::Stream(mut s) => {
                let mut buf = BytesMut::new();
                let mut ended = false;
                while (buf.len() as u64) < self.part_size {
                    match s.next().await {
                        Some(chunk) => buf.extend_from_slice(&chunk?),
                        None => {
                            ended = true;
                            break;
                        }
                    }
                }
                if !ended {
                    let pre = self.precondition(key, &full, &opts.condition).await?;
                    return self.put_multipart(key, &full, buf, s, meta, pre).await;
                }
                buf.freeze()
            }
        };
        let pre = self.precondition(key, &full, &opts.condition).await?;
        let len = first.len() as i64;
        let (md5, entry) = blocksum::sums_of(first.clone(), meta.clone()).await?;
        let mut meta = meta;
        if let Some(e) = entry {
            meta.insert(blocksum::META_NAME.to_string(), e);
        }
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&full)
            .content_length(len)
            .content_md5(aws_smithy_types::base64::encode(md5))
            .body(ByteStream::from(first))
            .set_metadata(Some(meta));
        req = match &pre {
            Precondition::None => req,
            Precondition::Absent => req.if_none_match("*"),
            Precondition::Etag(e) => req.if_match(quoted_etag(e)),
        };
        // Content-MD5 protects the body on its way (the server checks it): no payload
        // signature, whose SHA-256 both sides would compute (client.rs).
        let out = req
            .customize()
            .disable_payload_signing()
            .send()
            .await
            .map_err(|e| {
                Self::condition_error(key, &pre, errors::map(self.ctx("PutObject", key), e))
            })?;
        self.head_written(key, &full, out.version_id()).await
    }

    /// A streamed body of more than one part: a multipart upload, parts in parallel (at most
    /// `concurrency` in flight, so memory stays bounded), aborted on any failure.
    async fn put_multipart(
        &self,
        key: &str,
        full: &str,
        first: BytesMut,
        rest: crate::types::ByteStream,
        meta: std::collections::HashMap<String, String>,
        pre: Precondition,
    ) -> Result<ObjectInfo> {
        let upload_id = self.create_upload(key, full, meta).await?;
        let uploaded = self.upload_stream(key, full, &upload_id, first, rest).await;
        let result = match uploaded {
            Ok(parts) => {
                self.finish_upload(key, full, &upload_id, &parts_list(&parts), &pre)
                    .await
            }
            Err(e) => Err(e),
        };
        if result.is_err() {
            let _ = self.abort_upload(key, full, &upload_id).await;
        }
        result
    }

    /// Cuts a stream into parts and uploads them, at most `concurrency` (4 at most) in
    /// flight: uploads progress while the next part is awaited from a full window.
    async fn upload_stream(
        &self,
        key: &str,
        full: &str,
        upload_id: &str,
        mut buf: BytesMut,
        mut rest: crate::types::ByteStream,
    ) -> Result<Vec<PartInfo>> {
        let part_size = self.part_size as usize;
        let limit = self.concurrency.min(4);
        let mut inflight = FuturesUnordered::new();
        let mut parts = Vec::new();
        let mut n = 1u32;
        let mut ended = false;
        loop {
            while !ended && buf.len() < part_size {
                match rest.next().await {
                    Some(c) => buf.extend_from_slice(&c?),
                    None => ended = true,
                }
            }
            if buf.is_empty() && n > 1 {
                break;
            }
            let part = buf.split_to(buf.len().min(part_size)).freeze();
            inflight.push(self.send_part(key, full, upload_id, n, part));
            n += 1;
            while inflight.len() >= limit {
                if let Some(p) = inflight.next().await {
                    parts.push(p?);
                }
            }
            if ended && buf.is_empty() {
                break;
            }
        }
        while let Some(p) = inflight.next().await {
            parts.push(p?);
        }
        parts.sort_by_key(|p| p.part_number);
        Ok(parts)
    }

    pub(super) async fn get_object(&self, key: &str, opts: GetOptions) -> Result<GetResult> {
        let full = self.full_key(key)?;
        let version = opts.version.as_ref();
        let (start, end) = match &opts.range {
            None => (0, u64::MAX),
            Some(r) if r.start < r.end => (r.start, r.end),
            // An empty or inverted range: HTTP cannot ask for it; the size decides.
            Some(r) => return self.get_by_head(key, &full, version, r.clone()).await,
        };
        let first_end = end.min(start.saturating_add(self.part_size));
        let ctx = self.ctx("GetObject", key).version(version);
        self.check_version_possible(ctx, version)?;
        let sent = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&full)
            .set_version_id(self.version_param(version))
            .range(mapping::http_range(&(start..first_end)))
            .send()
            .await;
        let Some(out) = errors::unless_status(ctx, sent, 416)? else {
            // The range starts past the end: the size decides.
            let want = opts.range.clone().unwrap_or(0..u64::MAX);
            return self.get_by_head(key, &full, version, want).await;
        };
        if out.delete_marker() == Some(true) {
            return Err(Failure::default().into_missing(ctx));
        }
        let length = out.content_length().unwrap_or(0).max(0) as u64;
        let (got, total) = match out.content_range().and_then(mapping::parse_content_range) {
            Some(cr) => cr,
            // The whole object came (a server that ignores ranges, or an empty object).
            None => (0..length, length),
        };
        let d = Described {
            version: out.version_id(),
            etag: out.e_tag(),
            size: total,
            modified: out.last_modified(),
            metadata: out.metadata(),
        };
        let info = self.pinned_info(ctx, key, version, d)?;
        let want = resolve_range(opts.range.as_ref(), total)?;
        let what = format!("GetObject {key:?} in {}", self.location);
        if got.end - got.start != length {
            return Err(short(&what, length, got.end - got.start));
        }
        let sums = blocksum::sums_in(out.metadata(), &info);
        let body = checked(out.body, length, what.clone());
        if let Some(sums) = sums.filter(|_| want.start < want.end) {
            return Ok(self.get_verified(key, &full, info, sums, (got, want), body, what));
        }
        if got.start != want.start || got.end > want.end {
            // Not the range we asked for: take what we want out of it.
            let all = Body::Stream(body).collect().await?;
            let lo = (want.start - got.start) as usize;
            let hi = (want.end.min(got.end) - got.start) as usize;
            let data = all
                .get(lo..hi)
                .map(Bytes::copy_from_slice)
                .ok_or_else(|| short(&what, all.len() as u64, hi as u64))?;
            return Ok(GetResult {
                info,
                range: want.start..want.start + data.len() as u64,
                body: Body::Bytes(data),
            });
        }
        if got.end >= want.end {
            return Ok(GetResult {
                info,
                range: want,
                body: Body::Stream(body),
            });
        }
        // The rest in ranges fetched in parallel, in order, each pinned to this version.
        let rest = self.ranges_after(key, &full, &info, got.end..want.end);
        Ok(GetResult {
            info,
            range: want,
            body: Body::Stream(Box::pin(body.chain(rest))),
        })
    }

    /// The bytes `want` of a version with block checksums, `body` being the first answer's
    /// (bytes `got`): read from the boundaries of the blocks that cover `want`, every block
    /// checked before its bytes are returned (blocksum.rs). When the first answer does not
    /// start at a block boundary (a read not aligned to the blocks), the covering blocks are
    /// fetched again, pinned to the version and its ETag.
    #[allow(clippy::too_many_arguments)]
    fn get_verified(
        &self,
        key: &str,
        full: &str,
        info: ObjectInfo,
        sums: BlockSums,
        (got, want): (Range<u64>, Range<u64>),
        body: ByteStream2,
        what: String,
    ) -> GetResult {
        let span = sums.span(&want);
        let (span, stream): (Range<u64>, ByteStream2) = if got.start == span.start {
            // The first answer starts the span: the rest follows it (all of what came is
            // checked, also past the span when a server sent more than asked).
            let span = span.start..span.end.max(got.end);
            let rest = self.ranges_after(key, full, &info, got.end..span.end);
            (span, Box::pin(body.chain(rest)))
        } else {
            drop(body);
            let all = self.ranges_after(key, full, &info, span.clone());
            (span, all)
        };
        let checked = blocksum::verified(stream, sums, span.clone(), what);
        GetResult {
            info,
            range: want.clone(),
            body: Body::Stream(blocksum::trimmed(
                checked,
                want.start - span.start,
                want.end - want.start,
            )),
        }
    }

    /// The ranges of `span` as a stream of bytes, `concurrency` requests in flight.
    fn ranges_after(
        &self,
        key: &str,
        full: &str,
        info: &ObjectInfo,
        span: Range<u64>,
    ) -> crate::types::ByteStream {
        let step = self.part_size;
        let ranges: Vec<Range<u64>> = (span.start..span.end)
            .step_by(step as usize)
            .map(|s| s..(s + step).min(span.end))
            .collect();
        let client = self.client.clone();
        let bucket = self.bucket.clone();
        let full = full.to_string();
        let key = key.to_string();
        let location = self.location.clone();
        let pin_version =
            (self.features.versioning && !info.version.is_null()).then(|| info.version.to_string());
        let etag = quoted_etag(&info.etag);
        let version = info.version.clone();
        let s = futures::stream::iter(ranges)
            .map(move |r| {
                let req = client
                    .get_object()
                    .bucket(&bucket)
                    .key(&full)
                    .range(mapping::http_range(&r))
                    .set_version_id(pin_version.clone())
                    .if_match(etag.clone());
                let key = key.clone();
                let location = location.clone();
                let version = version.clone();
                async move {
                    let ctx = errors::Ctx::new("GetObject", &key, &location);
                    let out = req
                        .send()
                        .await
                        .map_err(|e| errors::map(ctx.version(Some(&version)), e))?;
                    let want = r.end - r.start;
                    let got = out
                        .content_range()
                        .and_then(mapping::parse_content_range)
                        .map(|(g, _)| g);
                    let what = format!("GetObject {key:?} in {location}");
                    if got != Some(r.clone()) {
                        return Err(StoreError::Unavailable {
                            what,
                            reason: format!("asked for bytes {r:?}, the answer holds {got:?}"),
                        });
                    }
                    Body::Stream(checked(out.body, want, what))
                        .collect_sized(want as usize)
                        .await
                }
            })
            .buffered(self.concurrency.min(4));
        Box::pin(s)
    }

    /// A read the size decides (an empty range, or one the server refused): head, then an
    /// empty body or `InvalidRange`.
    async fn get_by_head(
        &self,
        key: &str,
        full: &str,
        version: Option<&VersionId>,
        range: Range<u64>,
    ) -> Result<GetResult> {
        let info = self.head_full(key, full, version).await?;
        let r = resolve_range(Some(&range), info.size)?;
        if r.start != r.end {
            return Err(StoreError::Unavailable {
                what: format!("GetObject {key:?} in {}", self.location),
                reason: "the server refused a range that fits the object".into(),
            });
        }
        Ok(GetResult {
            info,
            range: r,
            body: Body::empty(),
        })
    }

    pub(super) async fn delete_object(&self, key: &str) -> Result<Option<VersionId>> {
        let full = self.full_key(key)?;
        match self.head_full(key, &full, None).await {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        }
        let out = self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
            .map_err(|e| errors::map(self.ctx("DeleteObject", key), e))?;
        Ok(Some(if self.features.versioning {
            Self::version_of(out.version_id())
        } else {
            VersionId::null()
        }))
    }

    pub(super) async fn delete_object_version(&self, key: &str, version: VersionId) -> Result<()> {
        let full = self.full_key(key)?;
        let ctx = self.ctx("DeleteObject", key).version(Some(&version));
        if !self.versioned_exists(key, &full, &version).await? {
            return Err(Failure::default().into_missing(ctx));
        }
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(&full)
            .set_version_id(self.version_param(Some(&version)))
            .send()
            .await
            .map_err(|e| errors::map(ctx, e))?;
        Ok(())
    }

    /// Whether `version` (data or delete marker) of the key exists: S3 deletes a version that
    /// is not there without complaint. HEAD by version answers for data; a delete marker
    /// (405, or 404 on some servers) is looked up in the version listing.
    async fn versioned_exists(&self, key: &str, full: &str, version: &VersionId) -> Result<bool> {
        match self.head_full(key, full, Some(version)).await {
            Ok(_) => return Ok(true),
            Err(e) if e.kind() == ErrorKind::NoSuchVersion => {}
            Err(e) => return Err(e),
        }
        if !self.features.versioning {
            return Ok(false);
        }
        self.version_listed(key, version).await
    }

    pub(super) async fn copy_object(
        &self,
        src: &str,
        dst: &str,
        opts: CopyOptions,
    ) -> Result<ObjectInfo> {
        let sfull = self.full_key(src)?;
        let (source, entry) = self
            .head_with_sums(src, &sfull, opts.source_version.as_ref())
            .await?;
        self.copy_from(&source, entry, &sfull, dst, opts).await
    }

    /// Copies `source` (the version of the full key `sfull` a HEAD just described, with its
    /// block checksums entry `entry`) to `dst`; a copy with new metadata keeps the entry (the
    /// bytes are the same).
    async fn copy_from(
        &self,
        source: &ObjectInfo,
        entry: Option<String>,
        sfull: &str,
        dst: &str,
        opts: CopyOptions,
    ) -> Result<ObjectInfo> {
        let dfull = self.full_key(dst)?;
        let meta = match &opts.metadata {
            Some(m) => {
                let mut m = mapping::metadata_to_s3(m)?;
                if let Some(e) = entry {
                    m.insert(blocksum::META_NAME.to_string(), e);
                }
                Some(m)
            }
            None => None,
        };
        // Checked here even where the server honours the headers: some ignore them on copies.
        let pre = match &opts.condition {
            Condition::IfNotExists => match self.head_full(dst, &dfull, None).await {
                Ok(cur) => {
                    return Err(StoreError::PreconditionFailed {
                        key: dst.to_string(),
                        reason: format!("the key exists (version {})", cur.version),
                    })
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    if self.features.conditional_put {
                        Precondition::Absent
                    } else {
                        Precondition::None
                    }
                }
                Err(e) => return Err(e),
            },
            c => self.precondition(dst, &dfull, c).await?,
        };
        let src_version = self.version_param(Some(&source.version));
        if source.size > self.max_copy_size {
            let meta = match meta {
                Some(m) => m,
                None => mapping::metadata_to_s3(&source.metadata)?,
            };
            return self
                .copy_by_parts(
                    dst,
                    &dfull,
                    sfull,
                    src_version.as_deref(),
                    source.size,
                    meta,
                    pre,
                )
                .await;
        }
        let mut req = self
            .client
            .copy_object()
            .bucket(&self.bucket)
            .key(&dfull)
            .copy_source(mapping::copy_source(
                &self.bucket,
                sfull,
                src_version.as_deref(),
            ));
        if let Some(m) = meta {
            req = req
                .metadata_directive(aws_sdk_s3::types::MetadataDirective::Replace)
                .set_metadata(Some(m));
        }
        req = match &pre {
            Precondition::None => req,
            Precondition::Absent => req.if_none_match("*"),
            Precondition::Etag(e) => req.if_match(quoted_etag(e)),
        };
        let out = req.send().await.map_err(|e| {
            let ctx = self.ctx("CopyObject", dst);
            Self::condition_error(dst, &pre, errors::map(ctx, e))
        })?;
        let result = out.copy_object_result();
        // HEAD names the version only in a versioned bucket (Garage names one in write answers
        // even without versioning); an answer that lacks what HEAD would say is completed by HEAD.
        let version = out.version_id().filter(|_| self.features.versioning);
        match (
            result.and_then(|r| r.e_tag()),
            result.and_then(|r| r.last_modified()),
        ) {
            _ if self.features.versioning && version.is_none() => {
                self.head_written(dst, &dfull, None).await
            }
            // The copy is the source's bytes under the metadata sent (or the source's).
            (Some(etag), Some(modified)) => Ok(Described {
                version,
                etag: Some(etag),
                size: source.size,
                modified: Some(modified),
                metadata: None,
            }
            .info(dst))
            .map(|info| ObjectInfo {
                metadata: opts.metadata.unwrap_or_else(|| source.metadata.clone()),
                ..info
            }),
            _ => self.head_written(dst, &dfull, out.version_id()).await,
        }
    }

    /// Renames `src` to `dst`: a HEAD of the source (its current version, checked against
    /// `opts.source_version`), a copy of that version, and a delete of the source.
    pub(super) async fn rename_object(
        &self,
        src: &str,
        dst: &str,
        opts: RenameOptions,
    ) -> Result<ObjectInfo> {
        let sfull = self.full_key(src)?;
        let (source, entry) = self.head_with_sums(src, &sfull, None).await?;
        if let Some(v) = &opts.source_version {
            if *v != source.version {
                return Err(StoreError::PreconditionFailed {
                    key: src.to_string(),
                    reason: format!("current version is {}, not {v}", source.version),
                });
            }
        }
        let copy = CopyOptions {
            source_version: Some(source.version.clone()),
            metadata: None,
            condition: opts.condition,
            durable: opts.durable,
        };
        let info = self.copy_from(&source, entry, &sfull, dst, copy).await?;
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(&sfull)
            .send()
            .await
            .map_err(|e| errors::map(self.ctx("DeleteObject", src), e))?;
        Ok(info)
    }
}

/// The (number, etag) list of uploaded parts, for completion.
pub(super) fn parts_list(parts: &[PartInfo]) -> Vec<CompletedPart> {
    parts
        .iter()
        .map(|p| CompletedPart {
            part_number: p.part_number,
            etag: p.etag.clone(),
        })
        .collect()
}

impl Failure {
    /// `NotFound` or `NoSuchVersion` for `ctx` without a response (a delete marker, a version
    /// a bucket without versioning cannot have).
    pub(super) fn into_missing(self, ctx: errors::Ctx<'_>) -> StoreError {
        Failure {
            status: Some(404),
            ..self
        }
        .into_error(ctx)
    }
}
