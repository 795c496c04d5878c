//! The S3 backend (feature `s3`): [`S3Store`] implements [`ObjectStore`] on a bucket of AWS S3
//! or an S3-compatible server (moto, Garage, MinIO, Ceph RGW), so objfs can keep its objects
//! off the machine. Every trait operation maps onto S3 API calls (see docs/ARCHITECTURE.md,
//! "The S3 backend"); this module holds the configuration, the opening of a bucket (client,
//! existence check, capability detection) and the trait implementation, which delegates to
//! [`objects`], [`listing`] and [`multipart`].
//!
//! Everything goes through aws-sdk-s3: credentials the standard AWS way (environment, shared
//! config and credentials files, profiles, instance roles), retries with exponential backoff
//! and jitter (the SDK's standard mode: 5xx, throttling, timeouts, connection errors),
//! path-style addressing and checksums only where an operation requires them for non-AWS
//! endpoints.

mod admin;
mod blocksum;
mod capacity;
mod client;
mod errors;
mod listing;
mod mapping;
mod multipart;
mod objects;
mod probe;
mod records;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use bytes::Bytes;

use crate::error::{Result, StoreError};
use crate::key::S3_MAX_KEY_LEN;
use crate::store::ObjectStore;
use crate::types::*;

pub use admin::{create_bucket, delete_bucket, set_versioning};
pub use mapping::parse_url;

/// Smallest part of a multipart upload other than the last (S3's limit).
pub const S3_MIN_PART_SIZE: u64 = 5 << 20;

/// Largest object a single CopyObject copies (S3's limit); larger copies go part by part.
/// The default of [`S3Config::max_copy_size`].
pub const S3_MAX_COPY_SIZE: u64 = 5 << 30;

/// The reserved prefix (under the store's prefix) where opening writes and removes its probe.
pub const RESERVED_PREFIX: &str = ".objfs/";

/// Whether a store key lies under the reserved prefix (and so is not one of the store's).
fn is_reserved(key: &str) -> bool {
    key.starts_with(RESERVED_PREFIX)
}

/// How to reach a bucket. Credentials are not here: they come the standard AWS way
/// (environment variables, `~/.aws/credentials` and `~/.aws/config`, the profile below,
/// instance roles).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    pub bucket: String,
    /// Keys are stored under this prefix (empty, or normalised to end in `/`); listings strip it.
    pub prefix: String,
    /// An S3-compatible endpoint (`http://127.0.0.1:3900`); `None` is AWS.
    pub endpoint: Option<String>,
    /// The region; `None` takes AWS's default chain, then `us-east-1`.
    pub region: Option<String>,
    /// A profile of the shared config files.
    pub profile: Option<String>,
    /// A shared credentials file to read instead of `~/.aws/credentials` (and
    /// `AWS_SHARED_CREDENTIALS_FILE`); the config file is still the default one.
    pub credentials_file: Option<std::path::PathBuf>,
    /// Path-style addressing (`endpoint/bucket/key`); `None`: on exactly when an endpoint is
    /// given.
    pub path_style: Option<bool>,
    /// Attempts per request, the first included (the SDK's standard retry mode).
    pub max_attempts: u32,
    /// First backoff between attempts (doubled each time, with jitter, up to 20 s).
    pub initial_backoff: Duration,
    pub connect_timeout: Duration,
    /// How long to wait for a response to start.
    pub read_timeout: Duration,
    /// Requests in flight per operation (parts of an upload, ranges of a read, heads of a
    /// listing).
    pub concurrency: usize,
    /// Size of the parts a large streamed put is cut into, and of the ranges a large read is
    /// fetched in (at least 5 MiB).
    pub part_size: u64,
    /// Whether the bucket honours conditional writes; `None` probes it at open.
    pub conditional_put: Option<bool>,
    /// The server's smallest part other than the last (5 MiB on S3 and Garage; a test server
    /// may accept less), reported in [`StoreFeatures::min_part_size`].
    pub min_part_size: u64,
    /// The largest object copied by one CopyObject ([`S3_MAX_COPY_SIZE`], S3's 5 GiB, by
    /// default); a larger copy (or rename) is a multipart upload of UploadPartCopy parts of at
    /// most this size and 512 MiB (larger only where the server's smallest part or S3's
    /// 10,000 parts require it). A setting for tests, which exercise that path with small
    /// objects, and for servers whose single-copy limit is smaller than S3's.
    pub max_copy_size: u64,
}

impl S3Config {
    /// The configuration of `s3://BUCKET[/PREFIX]` with default settings.
    pub fn from_url(url: &str) -> Result<S3Config> {
        let (bucket, prefix) = parse_url(url)?;
        Ok(S3Config {
            bucket,
            prefix,
            endpoint: None,
            region: None,
            profile: None,
            credentials_file: None,
            path_style: None,
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            concurrency: 8,
            part_size: 8 << 20,
            conditional_put: None,
            min_part_size: S3_MIN_PART_SIZE,
            max_copy_size: S3_MAX_COPY_SIZE,
        })
    }

    /// `s3://bucket/prefix/` and, when not AWS, `at <endpoint>`.
    pub fn location(&self) -> String {
        let url = format!("s3://{}/{}", self.bucket, self.prefix);
        match &self.endpoint {
            Some(e) => format!("{url} at {e}"),
            None => url,
        }
    }
}

/// A bucket (or a prefix of one) as an [`ObjectStore`].
pub struct S3Store {
    client: Client,
    bucket: String,
    prefix: String,
    location: String,
    features: StoreFeatures,
    concurrency: usize,
    part_size: u64,
    /// Copies of larger objects go part by part ([`S3Config::max_copy_size`]).
    max_copy_size: u64,
    /// UploadPart bodies are signed (plain HTTP to another host: [`client::payload_signing_needed`]).
    sign_parts: bool,
    /// Conditions of multipart uploads in progress, checked at completion (S3 keeps none with
    /// the upload; an upload resumed by another process completes unconditionally).
    upload_conditions: Mutex<HashMap<String, Condition>>,
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Store")
            .field("location", &self.location)
            .field("features", &self.features)
            .finish()
    }
}

impl S3Store {
    /// Opens a bucket: builds the client, checks that the bucket answers (a missing bucket is
    /// [`StoreError::NoSuchBucket`], an endpoint that does not answer
    /// [`StoreError::Unavailable`], refused credentials [`StoreError::PermissionDenied`]),
    /// reads its versioning state and probes conditional writes.
    pub async fn open(cfg: S3Config) -> Result<S3Store> {
        let prefix = mapping::normalize_prefix(&cfg.prefix)?;
        if prefix.len() >= S3_MAX_KEY_LEN {
            return Err(StoreError::InvalidArgument(format!(
                "prefix {prefix:?} leaves no room for keys"
            )));
        }
        let client = client::build(&cfg).await;
        let location = S3Config {
            prefix: prefix.clone(),
            ..cfg.clone()
        }
        .location();
        let max_key_len = S3_MAX_KEY_LEN - prefix.len();
        let mut store = S3Store {
            client,
            bucket: cfg.bucket.clone(),
            prefix,
            location,
            features: StoreFeatures {
                list_returns_metadata: false,
                zero_copy: false,
                min_part_size: cfg.min_part_size,
                atomic_rename: false,
                versioning: false,
                conditional_put: false,
                part_copy: true,
                max_key_len,
                key_times: false,
                records: true,
                // HEAD and GET carry HTTP dates: whole seconds.
                time_resolution: Duration::from_secs(1),
            },
            concurrency: cfg.concurrency.max(1),
            part_size: cfg.part_size.max(S3_MIN_PART_SIZE),
            max_copy_size: cfg.max_copy_size.max(1),
            sign_parts: client::payload_signing_needed(cfg.endpoint.as_deref()),
            upload_conditions: Mutex::new(HashMap::new()),
        };
        store.check_bucket().await?;
        let versioning = store.bucket_versioning().await?;
        store.features.versioning = versioning;
        // Listings of a versioned bucket head every object for its version id, and so carry
        // its metadata too.
        store.features.list_returns_metadata = versioning;
        store.features.conditional_put = match cfg.conditional_put {
            Some(c) => c,
            None => store.probe_conditional_put().await?,
        };
        tracing::info!(store = %store.location, features = ?store.features, "opened S3 bucket");
        Ok(store)
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The prefix every key is stored under (empty, or ending in `/`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The full key of a store key (checked against the key rules first; keys under the
    /// reserved prefix are not the store's).
    fn full_key(&self, key: &str) -> Result<String> {
        crate::key::check_key_max(key, self.features.max_key_len).map_err(|reason| {
            StoreError::InvalidKey {
                key: key.chars().take(64).collect(),
                reason,
            }
        })?;
        if is_reserved(key) {
            return Err(StoreError::InvalidKey {
                key: key.chars().take(64).collect(),
                reason: crate::key::KeyError::Reserved {
                    prefix: RESERVED_PREFIX,
                },
            });
        }
        Ok(format!("{}{key}", self.prefix))
    }

    /// The full prefix of a listing prefix (empty, or checked as a key).
    fn full_prefix(&self, prefix: &str) -> Result<String> {
        if prefix.is_empty() {
            return Ok(self.prefix.clone());
        }
        self.full_key(prefix)
    }

    /// The store key of a full key from a response (`None` when it is not under the prefix).
    fn store_key(&self, full: &str) -> Option<String> {
        full.strip_prefix(self.prefix.as_str())
            .filter(|k| !k.is_empty())
            .map(str::to_string)
    }

    /// The store key of a listed full key: `None` when it is not under the prefix or lies under
    /// the reserved prefix (listings leave the store's own records out).
    fn listed_key(&self, full: &str) -> Option<String> {
        self.store_key(full).filter(|k| !is_reserved(k))
    }

    /// A version id from a response (`null` when the bucket has no versioning).
    fn version_of(v: Option<&str>) -> VersionId {
        match v {
            Some(v) if !v.is_empty() => VersionId::from_backend(v),
            _ => VersionId::null(),
        }
    }

    /// The `versionId` to send for a version: none for `null` in a bucket without versioning
    /// (its one version is the current one).
    fn version_param(&self, v: Option<&VersionId>) -> Option<String> {
        match v {
            Some(v) if !v.is_null() || self.features.versioning => Some(v.to_string()),
            _ => None,
        }
    }

    fn ctx<'a>(&'a self, op: &'static str, key: &'a str) -> errors::Ctx<'a> {
        errors::Ctx::new(op, key, &self.location)
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    fn describe(&self) -> String {
        format!("s3 {}", self.location)
    }

    fn features(&self) -> StoreFeatures {
        self.features
    }

    async fn put(&self, key: &str, body: Body, opts: PutOptions) -> Result<ObjectInfo> {
        self.put_object(key, body, opts).await
    }

    async fn get(&self, key: &str, opts: GetOptions) -> Result<GetResult> {
        self.get_object(key, opts).await
    }

    async fn head(&self, key: &str, version: Option<VersionId>) -> Result<ObjectInfo> {
        let full = self.full_key(key)?;
        self.head_full(key, &full, version.as_ref()).await
    }

    async fn delete(&self, key: &str) -> Result<Option<VersionId>> {
        self.delete_object(key).await
    }

    async fn delete_version(&self, key: &str, version: VersionId) -> Result<()> {
        self.delete_object_version(key, version).await
    }

    async fn copy(&self, src: &str, dst: &str, opts: CopyOptions) -> Result<ObjectInfo> {
        self.copy_object(src, dst, opts).await
    }

    /// Copy + delete as the default, with one HEAD of the source instead of four.
    async fn rename(&self, src: &str, dst: &str, opts: RenameOptions) -> Result<ObjectInfo> {
        self.rename_object(src, dst, opts).await
    }

    async fn list(&self, req: &ListRequest) -> Result<ListPage> {
        self.list_objects(req, self.features.versioning).await
    }

    async fn list_keys(&self, req: &ListRequest) -> Result<ListPage> {
        self.list_objects(req, false).await
    }

    async fn list_versions(&self, req: &ListVersionsRequest) -> Result<VersionsPage> {
        self.list_object_versions(req).await
    }

    async fn create_multipart(&self, key: &str, opts: PutOptions) -> Result<String> {
        self.mp_create(key, opts).await
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: Body,
    ) -> Result<PartInfo> {
        self.mp_upload_part(key, upload_id, part_number, body).await
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
        self.mp_upload_part_copy(key, upload_id, part_number, src, src_version, range)
            .await
    }

    async fn list_parts(&self, key: &str, upload_id: &str) -> Result<Vec<PartInfo>> {
        self.mp_list_parts(key, upload_id).await
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> Result<ObjectInfo> {
        self.mp_complete(key, upload_id, parts).await
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<()> {
        self.mp_abort(key, upload_id).await
    }

    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<UploadInfo>> {
        self.mp_list_uploads(prefix).await
    }

    /// S3 acknowledges a write once it is durable: nothing to do.
    async fn sync(&self) -> Result<()> {
        Ok(())
    }

    async fn capacity(&self) -> Result<Capacity> {
        self.count_capacity().await
    }

    async fn get_record(&self, name: &str) -> Result<Option<Bytes>> {
        self.record_get(name).await
    }

    async fn put_record(&self, name: &str, value: Option<Bytes>, _durable: bool) -> Result<()> {
        self.record_put(name, value).await
    }

    async fn list_records(&self, prefix: &str) -> Result<Vec<(String, Bytes)>> {
        self.record_list(prefix).await
    }
}
