//! Listings on S3: ListObjectsV2 (prefix, delimiter, continuation tokens) and
//! ListObjectVersions (key and version-id markers), with the store's prefix added to requests
//! and stripped from answers; and capacity, counted by listing.
//!
//! S3's listings carry no version id (ListObjectsV2) and no user metadata (both), and the SDK
//! hands versions and delete markers back as two lists. So: in a versioned bucket, `list`
//! heads each object (in parallel) for its version id and metadata (`list_keys`, for callers
//! that need only names and sizes, does not); `list_versions` heads each
//! version for its metadata and merges versions and markers back into S3's order (keys in byte
//! order, each key newest first) by their millisecond times. A bucket without versioning lists
//! its versions with ListObjectsV2 (one `null` version per key).

use futures::StreamExt;

use super::errors;
use super::mapping::{clean_etag, millis_from_s3, time_from_s3};
use super::S3Store;
use crate::error::{ErrorKind, Result, StoreError};
use crate::types::*;

/// Tag of the continuation tokens this backend hands out (around the server's own token).
const TOKEN_TAG: &str = "s3v1.";

/// Sorts after every key that starts with a string it is appended to (U+10FFFF is the largest
/// character): "after everything under this common prefix".
const PAST_PREFIX: char = '\u{10FFFF}';

/// One page of ListObjectsV2, with full keys.
pub(super) struct RawPage {
    pub(super) objects: Vec<ObjectInfo>,
    prefixes: Vec<String>,
    pub(super) next: Option<String>,
}

impl S3Store {
    pub(super) async fn list_raw(
        &self,
        op_key: &str,
        full_prefix: &str,
        delimiter: Option<&str>,
        start_after: Option<String>,
        token: Option<String>,
        max_keys: usize,
    ) -> Result<RawPage> {
        let out = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(full_prefix)
            .set_delimiter(delimiter.filter(|d| !d.is_empty()).map(str::to_string))
            .set_start_after(start_after)
            .set_continuation_token(token)
            .max_keys(max_keys.clamp(1, 1000) as i32)
            .send()
            .await
            .map_err(|e| errors::map(self.ctx("ListObjectsV2", op_key), e))?;
        let objects = out
            .contents()
            .iter()
            .filter_map(|o| {
                Some(ObjectInfo {
                    key: self.listed_key(o.key()?)?,
                    version: VersionId::null(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                    modified: time_from_s3(o.last_modified()),
                    etag: clean_etag(o.e_tag()),
                    metadata: Metadata::new(),
                })
            })
            .collect();
        let prefixes = out
            .common_prefixes()
            .iter()
            .filter_map(|p| self.listed_key(p.prefix()?))
            .collect();
        let next = match out.next_continuation_token() {
            Some(t) if out.is_truncated() == Some(true) && !t.is_empty() => Some(t.to_string()),
            _ => None,
        };
        Ok(RawPage {
            objects,
            prefixes,
            next,
        })
    }

    /// A page of ListObjectsV2; with `head`, each object headed for its version id and
    /// metadata (what `list` does in a versioned bucket), else as listed (`list_keys`: a null
    /// version id, no metadata).
    pub(super) async fn list_objects(&self, req: &ListRequest, head: bool) -> Result<ListPage> {
        let full_prefix = self.full_prefix(&req.prefix)?;
        let token = match &req.continuation {
            Some(t) => Some(
                t.strip_prefix(TOKEN_TAG)
                    .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic()))
                    .ok_or_else(|| {
                        StoreError::InvalidArgument(format!("invalid continuation token {t:?}"))
                    })?
                    .to_string(),
            ),
            None => None,
        };
        // A start before the prefix is the prefix's start (Garage lists nothing for it when
        // other keys lie between the two).
        let start_after = match (&token, &req.start_after) {
            (None, Some(s)) => Some(format!("{}{s}", self.prefix)).filter(|s| *s >= full_prefix),
            _ => None,
        };
        let raw = self
            .list_raw(
                &req.prefix,
                &full_prefix,
                req.delimiter.as_deref(),
                start_after,
                token,
                req.page_size(),
            )
            .await?;
        let objects = if head {
            self.head_all(raw.objects).await?
        } else {
            raw.objects
        };
        Ok(ListPage {
            objects,
            common_prefixes: raw.prefixes,
            next_token: raw.next.map(|t| format!("{TOKEN_TAG}{t}")),
        })
    }

    /// The current versions of listed objects, headed in parallel (those deleted meanwhile
    /// are left out).
    async fn head_all(&self, listed: Vec<ObjectInfo>) -> Result<Vec<ObjectInfo>> {
        let heads: Vec<Result<ObjectInfo>> = futures::stream::iter(listed)
            .map(|o| async move {
                let full = format!("{}{}", self.prefix, o.key);
                self.head_full(&o.key, &full, None).await
            })
            .buffered(self.concurrency * 2)
            .collect()
            .await;
        let mut out = Vec::with_capacity(heads.len());
        for h in heads {
            match h {
                Ok(info) => out.push(info),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    pub(super) async fn list_object_versions(
        &self,
        req: &ListVersionsRequest,
    ) -> Result<VersionsPage> {
        let full_prefix = self.full_prefix(&req.prefix)?;
        if req.version_marker.is_some() && req.key_marker.is_none() {
            return Err(StoreError::InvalidArgument(
                "a version marker needs a key marker".into(),
            ));
        }
        if !self.features.versioning {
            return self.list_versions_unversioned(req, &full_prefix).await;
        }
        let out = self
            .client
            .list_object_versions()
            .bucket(&self.bucket)
            .prefix(&full_prefix)
            .set_delimiter(req.delimiter.clone().filter(|d| !d.is_empty()))
            .set_key_marker(
                req.key_marker
                    .as_ref()
                    .map(|k| format!("{}{k}", self.prefix)),
            )
            .set_version_id_marker(req.version_marker.as_ref().map(|v| v.to_string()))
            .max_keys(req.page_size().clamp(1, 1000) as i32)
            .send()
            .await
            .map_err(|e| errors::map(self.ctx("ListObjectVersions", &req.prefix), e))?;
        // (time in ms, entry): merged back into S3's order below.
        let mut entries: Vec<(i64, VersionInfo)> = Vec::new();
        for v in out.versions() {
            let Some(key) = v.key().and_then(|k| self.listed_key(k)) else {
                continue;
            };
            entries.push((
                millis_from_s3(v.last_modified()),
                VersionInfo {
                    key,
                    version: Self::version_of(v.version_id()),
                    is_latest: v.is_latest() == Some(true),
                    is_delete_marker: false,
                    size: v.size().unwrap_or(0).max(0) as u64,
                    modified: time_from_s3(v.last_modified()),
                    etag: clean_etag(v.e_tag()),
                    metadata: Metadata::new(),
                },
            ));
        }
        for m in out.delete_markers() {
            let Some(key) = m.key().and_then(|k| self.listed_key(k)) else {
                continue;
            };
            entries.push((
                millis_from_s3(m.last_modified()),
                VersionInfo {
                    key,
                    version: Self::version_of(m.version_id()),
                    is_latest: m.is_latest() == Some(true),
                    is_delete_marker: true,
                    size: 0,
                    modified: time_from_s3(m.last_modified()),
                    etag: String::new(),
                    metadata: Metadata::new(),
                },
            ));
        }
        entries.sort_by(|(ta, a), (tb, b)| {
            a.key
                .as_bytes()
                .cmp(b.key.as_bytes())
                .then(b.is_latest.cmp(&a.is_latest))
                .then(tb.cmp(ta))
        });
        let versions = self
            .with_metadata(entries.into_iter().map(|(_, v)| v).collect())
            .await?;
        let truncated = out.is_truncated() == Some(true);
        let next_key_marker = out
            .next_key_marker()
            .filter(|_| truncated)
            .and_then(|k| self.store_key(k));
        let next_version_marker = out
            .next_version_id_marker()
            .filter(|v| truncated && !v.is_empty())
            .map(|v| Self::version_of(Some(v)));
        Ok(VersionsPage {
            versions,
            common_prefixes: out
                .common_prefixes()
                .iter()
                .filter_map(|p| self.listed_key(p.prefix()?))
                .collect(),
            next_key_marker,
            next_version_marker,
        })
    }

    /// Versions with their user metadata, headed by version in parallel (versions removed
    /// meanwhile are left out).
    async fn with_metadata(&self, versions: Vec<VersionInfo>) -> Result<Vec<VersionInfo>> {
        let heads: Vec<Result<Option<VersionInfo>>> = futures::stream::iter(versions)
            .map(|mut v| async move {
                if v.is_delete_marker {
                    return Ok(Some(v));
                }
                let full = format!("{}{}", self.prefix, v.key);
                match self.head_full(&v.key, &full, Some(&v.version)).await {
                    Ok(info) => {
                        v.metadata = info.metadata;
                        Ok(Some(v))
                    }
                    Err(e) if e.kind() == ErrorKind::NoSuchVersion => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .buffered(self.concurrency * 2)
            .collect()
            .await;
        heads.into_iter().filter_map(|h| h.transpose()).collect()
    }

    /// A bucket without versioning: its objects, each a `null` version, by ListObjectsV2.
    async fn list_versions_unversioned(
        &self,
        req: &ListVersionsRequest,
        full_prefix: &str,
    ) -> Result<VersionsPage> {
        let start_after = req
            .key_marker
            .as_ref()
            .map(|m| {
                let rolled = super::mapping::rolls_up(&req.prefix, req.delimiter.as_deref(), m);
                let mut s = format!("{}{m}", self.prefix);
                if rolled {
                    s.push(PAST_PREFIX);
                }
                s
            })
            .filter(|s| s.as_str() >= full_prefix);
        let raw = self
            .list_raw(
                &req.prefix,
                full_prefix,
                req.delimiter.as_deref(),
                start_after,
                None,
                req.page_size(),
            )
            .await?;
        let objects = self.head_all_versions(raw.objects).await?;
        let mut page = VersionsPage {
            versions: objects,
            common_prefixes: raw.prefixes,
            ..Default::default()
        };
        if raw.next.is_some() {
            // The last entry in byte order, object or common prefix.
            let last_obj = page.versions.last().map(|v| v.key.clone());
            let last_pre = page.common_prefixes.last().cloned();
            page.next_key_marker = last_obj.into_iter().chain(last_pre).max();
            page.next_version_marker = page
                .next_key_marker
                .as_ref()
                .filter(|k| page.versions.last().is_some_and(|v| &v.key == *k))
                .map(|_| VersionId::null());
        }
        Ok(page)
    }

    async fn head_all_versions(&self, listed: Vec<ObjectInfo>) -> Result<Vec<VersionInfo>> {
        Ok(self
            .head_all(listed)
            .await?
            .into_iter()
            .map(|o| VersionInfo {
                key: o.key,
                version: o.version,
                is_latest: true,
                is_delete_marker: false,
                size: o.size,
                modified: o.modified,
                etag: o.etag,
                metadata: o.metadata,
            })
            .collect())
    }

    /// Whether `version` of `key` (data or delete marker) is in the version listing.
    pub(super) async fn version_listed(&self, key: &str, version: &VersionId) -> Result<bool> {
        let mut req = ListVersionsRequest {
            prefix: key.to_string(),
            ..Default::default()
        };
        loop {
            let page = self.list_object_versions(&req).await?;
            if page
                .versions
                .iter()
                .any(|v| v.key == key && v.version == *version)
            {
                return Ok(true);
            }
            let past = page.versions.last().is_some_and(|v| v.key.as_str() > key);
            if past || page.next_key_marker.is_none() {
                return Ok(false);
            }
            req.key_marker = page.next_key_marker;
            req.version_marker = page.next_version_marker;
        }
    }
}
