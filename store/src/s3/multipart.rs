//! Multipart uploads on S3: CreateMultipartUpload, UploadPart, UploadPartCopy (a range of an
//! existing version, pinned by id), ListParts, CompleteMultipartUpload (with the upload's
//! condition as `If-None-Match` / `If-Match`), AbortMultipartUpload, ListMultipartUploads; and
//! the copy of an object above CopyObject's 5 GiB limit, part by part in parallel.

use std::collections::HashMap;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart as S3Part};

use super::errors;
use super::mapping::{self, clean_etag, quoted_etag, time_from_s3};
use super::objects::{parts_list, Precondition};
use super::S3Store;
use crate::error::{Result, StoreError};
use crate::types::*;

/// Part size of a copy above 5 GiB (S3 allows 5 MiB to 5 GiB per part, 10,000 parts).
const COPY_PART_SIZE: u64 = 512 << 20;

/// The part size of a multipart copy of `size` bytes: [`COPY_PART_SIZE`], or the single-copy
/// limit when that is smaller (a server that copies less at once copies less per part too),
/// but at least the server's smallest part and large enough to stay within
/// [`MAX_PART_NUMBER`] parts.
fn copy_part_size(size: u64, max_copy_size: u64, min_part_size: u64) -> u64 {
    COPY_PART_SIZE
        .min(max_copy_size)
        .max(min_part_size)
        .max(size.div_ceil(u64::from(MAX_PART_NUMBER)))
        .max(1)
}

/// An empty upload id names no upload (the SDK would refuse to send it).
fn check_upload_id(id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(StoreError::NoSuchUpload {
            upload_id: String::new(),
        });
    }
    Ok(())
}

fn part_number_i32(n: u32) -> Result<i32> {
    check_part_number(n)?;
    Ok(n as i32)
}

impl S3Store {
    /// CreateMultipartUpload of a full key with S3 metadata.
    pub(super) async fn create_upload(
        &self,
        key: &str,
        full: &str,
        meta: HashMap<String, String>,
    ) -> Result<String> {
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(full)
            .set_metadata(Some(meta))
            .send()
            .await
            .map_err(|e| errors::map(self.ctx("CreateMultipartUpload", key), e))?;
        out.upload_id()
            .filter(|id| !id.is_empty())
            .map(str::to_string)
            .ok_or_else(|| StoreError::Backend {
                backend: "s3",
                source: format!("CreateMultipartUpload {key:?}: the answer has no upload id")
                    .into(),
            })
    }

    /// UploadPart of one buffered part.
    pub(super) async fn send_part(
        &self,
        key: &str,
        full: &str,
        upload_id: &str,
        n: u32,
        bytes: Bytes,
    ) -> Result<PartInfo> {
        let size = bytes.len() as u64;
        let req = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(full)
            .upload_id(upload_id)
            .part_number(part_number_i32(n)?)
            .content_length(size as i64)
            .body(ByteStream::from(bytes));
        // The SHA-256 of the body on both sides is the costliest part of an upload where TLS
        // or the loopback already protects the bytes (client.rs).
        let sent = if self.sign_parts {
            req.send().await
        } else {
            req.customize().disable_payload_signing().send().await
        };
        let out =
            sent.map_err(|e| errors::map(self.ctx("UploadPart", key).upload(upload_id), e))?;
        Ok(PartInfo {
            part_number: n,
            etag: clean_etag(out.e_tag()),
            size,
        })
    }

    /// CompleteMultipartUpload with a precondition, then the head of the new version.
    pub(super) async fn finish_upload(
        &self,
        key: &str,
        full: &str,
        upload_id: &str,
        parts: &[CompletedPart],
        pre: &Precondition,
    ) -> Result<ObjectInfo> {
        let list: Vec<S3Part> = parts
            .iter()
            .map(|p| {
                Ok(S3Part::builder()
                    .part_number(part_number_i32(p.part_number)?)
                    .e_tag(quoted_etag(p.etag.trim_matches('"')))
                    .build())
            })
            .collect::<Result<_>>()?;
        let mut req = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(full)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(list))
                    .build(),
            );
        req = match pre {
            Precondition::None => req,
            Precondition::Absent => req.if_none_match("*"),
            Precondition::Etag(e) => req.if_match(quoted_etag(e)),
        };
        let out = req.send().await.map_err(|e| {
            let ctx = self.ctx("CompleteMultipartUpload", key).upload(upload_id);
            Self::condition_error(key, pre, errors::map(ctx, e))
        })?;
        self.head_written(key, full, out.version_id()).await
    }

    pub(super) async fn abort_upload(&self, key: &str, full: &str, upload_id: &str) -> Result<()> {
        self.client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(full)
            .upload_id(upload_id)
            .send()
            .await
            .map_err(|e| errors::map(self.ctx("AbortMultipartUpload", key).upload(upload_id), e))?;
        Ok(())
    }

    /// UploadPartCopy of `range` of a full source key (at a pinned version).
    async fn send_part_copy(
        &self,
        key: &str,
        full: &str,
        upload_id: &str,
        n: u32,
        source: &str,
        range: std::ops::Range<u64>,
    ) -> Result<PartInfo> {
        let out = self
            .client
            .upload_part_copy()
            .bucket(&self.bucket)
            .key(full)
            .upload_id(upload_id)
            .part_number(part_number_i32(n)?)
            .copy_source(source)
            .copy_source_range(mapping::http_range(&range))
            .send()
            .await
            .map_err(|e| errors::map(self.ctx("UploadPartCopy", key).upload(upload_id), e))?;
        Ok(PartInfo {
            part_number: n,
            etag: clean_etag(out.copy_part_result().and_then(|r| r.e_tag())),
            size: range.end - range.start,
        })
    }

    /// A copy above the single-copy limit ([`super::S3Config::max_copy_size`]): a multipart
    /// upload of part copies, in parallel, aborted on failure.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn copy_by_parts(
        &self,
        dst: &str,
        dfull: &str,
        sfull: &str,
        src_version: Option<&str>,
        size: u64,
        meta: HashMap<String, String>,
        pre: Precondition,
    ) -> Result<ObjectInfo> {
        let upload_id = self.create_upload(dst, dfull, meta).await?;
        let source = mapping::copy_source(&self.bucket, sfull, src_version);
        let part = copy_part_size(size, self.max_copy_size, self.features.min_part_size);
        let ranges: Vec<(u32, std::ops::Range<u64>)> = (0..size)
            .step_by(part as usize)
            .enumerate()
            .map(|(i, s)| (i as u32 + 1, s..(s + part).min(size)))
            .collect();
        let result: Result<Vec<PartInfo>> = futures::stream::iter(ranges)
            .map(|(n, r)| self.send_part_copy(dst, dfull, &upload_id, n, &source, r))
            .buffered(self.concurrency)
            .try_collect()
            .await;
        let result = match result {
            Ok(parts) => {
                self.finish_upload(dst, dfull, &upload_id, &parts_list(&parts), &pre)
                    .await
            }
            Err(e) => Err(e),
        };
        if result.is_err() {
            let _ = self.abort_upload(dst, dfull, &upload_id).await;
        }
        result
    }

    pub(super) async fn mp_create(&self, key: &str, opts: PutOptions) -> Result<String> {
        let full = self.full_key(key)?;
        let meta = mapping::metadata_to_s3(&opts.metadata)?;
        let id = self.create_upload(key, &full, meta).await?;
        if opts.condition != Condition::None {
            self.conditions().insert(id.clone(), opts.condition);
        }
        Ok(id)
    }

    fn conditions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Condition>> {
        self.upload_conditions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    pub(super) async fn mp_upload_part(
        &self,
        key: &str,
        upload_id: &str,
        n: u32,
        body: Body,
    ) -> Result<PartInfo> {
        let full = self.full_key(key)?;
        check_upload_id(upload_id)?;
        check_part_number(n)?;
        let bytes = body.collect().await?;
        self.send_part(key, &full, upload_id, n, bytes).await
    }

    pub(super) async fn mp_upload_part_copy(
        &self,
        key: &str,
        upload_id: &str,
        n: u32,
        src: &str,
        src_version: Option<VersionId>,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<PartInfo> {
        let full = self.full_key(key)?;
        let sfull = self.full_key(src)?;
        check_upload_id(upload_id)?;
        check_part_number(n)?;
        let source = self.head_full(src, &sfull, src_version.as_ref()).await?;
        let r = resolve_range(range.as_ref(), source.size)?;
        if r.start == r.end {
            // HTTP cannot name an empty range: an empty part is an empty upload.
            return self.send_part(key, &full, upload_id, n, Bytes::new()).await;
        }
        let version = self.version_param(Some(&source.version));
        let copy_source = mapping::copy_source(&self.bucket, &sfull, version.as_deref());
        self.send_part_copy(key, &full, upload_id, n, &copy_source, r)
            .await
    }

    pub(super) async fn mp_list_parts(&self, key: &str, upload_id: &str) -> Result<Vec<PartInfo>> {
        let full = self.full_key(key)?;
        check_upload_id(upload_id)?;
        let mut parts = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let sent = self
                .client
                .list_parts()
                .bucket(&self.bucket)
                .key(&full)
                .upload_id(upload_id)
                .set_part_number_marker(marker.take())
                .send()
                .await;
            let ctx = self.ctx("ListParts", key).upload(upload_id);
            let (page, next) = match sent {
                Ok(out) => {
                    let page: Vec<mapping::ListedPart> = out
                        .parts()
                        .iter()
                        .map(|p| {
                            (
                                p.part_number().unwrap_or(0).max(0) as u32,
                                clean_etag(p.e_tag()),
                                p.size().unwrap_or(0).max(0) as u64,
                            )
                        })
                        .collect();
                    let next = out
                        .next_part_number_marker()
                        .filter(|m| out.is_truncated() == Some(true) && !m.is_empty())
                        .map(str::to_string);
                    (page, next)
                }
                Err(e) => {
                    // An answer the SDK does not parse (moto's root element): read by hand.
                    let by_hand = e
                        .raw_response()
                        .filter(|r| r.status().as_u16() == 200)
                        .and_then(|r| r.body().bytes())
                        .and_then(|b| mapping::parse_list_parts(&String::from_utf8_lossy(b)));
                    match by_hand {
                        Some(p) => p,
                        None => return Err(errors::map(ctx, e)),
                    }
                }
            };
            parts.extend(page.into_iter().map(|(part_number, etag, size)| PartInfo {
                part_number,
                etag,
                size,
            }));
            match next {
                Some(m) => marker = Some(m),
                None => break,
            }
        }
        parts.sort_by_key(|p| p.part_number);
        Ok(parts)
    }

    pub(super) async fn mp_complete(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> Result<ObjectInfo> {
        let full = self.full_key(key)?;
        check_upload_id(upload_id)?;
        if parts.is_empty() {
            return Err(StoreError::InvalidPart("no parts to complete".into()));
        }
        for (i, p) in parts.iter().enumerate() {
            check_part_number(p.part_number)?;
            if i > 0 && parts[i - 1].part_number >= p.part_number {
                return Err(StoreError::InvalidPart(format!(
                    "part {} follows part {}: numbers must increase",
                    p.part_number,
                    parts[i - 1].part_number
                )));
            }
        }
        // Some servers complete an upload a second time without complaint (moto, and S3 for a
        // while): the upload must still be there.
        self.check_upload(key, &full, upload_id).await?;
        let cond = self.conditions().get(upload_id).cloned();
        let pre = match &cond {
            Some(c) => self.precondition(key, &full, c).await?,
            None => Precondition::None,
        };
        let info = self
            .finish_upload(key, &full, upload_id, parts, &pre)
            .await?;
        self.conditions().remove(upload_id);
        Ok(info)
    }

    /// NoSuchUpload unless the upload is in progress (ListParts of at most one part).
    async fn check_upload(&self, key: &str, full: &str, upload_id: &str) -> Result<()> {
        let sent = self
            .client
            .list_parts()
            .bucket(&self.bucket)
            .key(full)
            .upload_id(upload_id)
            .max_parts(1)
            .send()
            .await;
        match sent {
            Ok(_) => Ok(()),
            // An answer the SDK does not parse (moto's root element) is still an answer.
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 200) => Ok(()),
            Err(e) => Err(errors::map(self.ctx("ListParts", key).upload(upload_id), e)),
        }
    }

    pub(super) async fn mp_abort(&self, key: &str, upload_id: &str) -> Result<()> {
        let full = self.full_key(key)?;
        check_upload_id(upload_id)?;
        self.abort_upload(key, &full, upload_id).await?;
        self.conditions().remove(upload_id);
        Ok(())
    }

    pub(super) async fn mp_list_uploads(&self, prefix: &str) -> Result<Vec<UploadInfo>> {
        let full_prefix = self.full_prefix(prefix)?;
        let mut uploads = Vec::new();
        let mut key_marker: Option<String> = None;
        let mut id_marker: Option<String> = None;
        loop {
            let out = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(&full_prefix)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .send()
                .await
                .map_err(|e| errors::map(self.ctx("ListMultipartUploads", prefix), e))?;
            for u in out.uploads() {
                let (Some(k), Some(id)) = (u.key().and_then(|k| self.listed_key(k)), u.upload_id())
                else {
                    continue;
                };
                uploads.push(UploadInfo {
                    key: k,
                    upload_id: id.to_string(),
                    initiated: time_from_s3(u.initiated()),
                });
            }
            if out.is_truncated() != Some(true) {
                break;
            }
            key_marker = out.next_key_marker().map(str::to_string);
            id_marker = out.next_upload_id_marker().map(str::to_string);
            if key_marker.is_none() {
                break;
            }
        }
        uploads.sort_by(|a, b| a.key.cmp(&b.key).then(a.initiated.cmp(&b.initiated)));
        Ok(uploads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_parts_follow_the_limit_the_server_minimum_and_the_part_count() {
        // S3's defaults: 512 MiB parts.
        assert_eq!(copy_part_size(6 << 30, 5 << 30, 5 << 20), COPY_PART_SIZE);
        // A smaller single-copy limit is the part size too.
        assert_eq!(copy_part_size(20 << 20, 8 << 20, 0), 8 << 20);
        // ... but never below the server's smallest part.
        assert_eq!(copy_part_size(20 << 20, 1 << 20, 5 << 20), 5 << 20);
        // S3's largest object (5 TiB) fits in 10,000 parts (512 MiB parts would need 10,240).
        let size = 5u64 << 40;
        let part = copy_part_size(size, 5 << 30, 5 << 20);
        assert!(size.div_ceil(part) <= u64::from(MAX_PART_NUMBER), "{part}");
        assert_eq!(copy_part_size(0, 0, 0), 1);
    }
}
