//! Fixtures for the S3 backend's tests: the test servers `scripts/test` starts (moto with a
//! versioned bucket, Garage without versioning), named by environment variables, and a fresh
//! store per test under a prefix of its own, so that tests sharing a bucket do not see each
//! other.
//!
//! | variable | what |
//! | --- | --- |
//! | `OBJFS_TEST_S3_ENDPOINT` | moto's endpoint (`http://127.0.0.1:PORT`) |
//! | `OBJFS_TEST_S3_PROFILE`, `OBJFS_TEST_S3_REGION` | its credentials profile and region |
//! | `OBJFS_TEST_S3_BUCKET` | a bucket that exists (for tests that need one bucket) |
//! | `OBJFS_TEST_GARAGE_ENDPOINT` | Garage's S3 endpoint |
//! | `OBJFS_TEST_GARAGE_PROFILE`, `OBJFS_TEST_GARAGE_REGION` | its profile and region (`garage`) |
//! | `OBJFS_TEST_GARAGE_BUCKET` | its bucket (made by the script with `garage bucket create`) |
//!
//! Each test store gets a bucket of its own, made through the S3 API (the script allows
//! Garage's test key to create buckets), so tests never see each other's keys.
//!
//! Credentials come from the shared credentials file (`AWS_SHARED_CREDENTIALS_FILE`), one
//! profile per server. Without an endpoint variable the fixture returns `None` and says loudly
//! that the backend's tests were skipped, or panics under `OBJFS_REQUIRE_S3=1` (which
//! `scripts/test` exports; [`crate::conformance::remote_endpoint`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use objfs_store::s3::{create_bucket, set_versioning, S3Config, S3Store};

/// A test server as the environment names it.
#[derive(Debug, Clone)]
pub struct Server {
    /// `moto` or `garage`, for messages.
    pub name: &'static str,
    pub endpoint: String,
    pub bucket: String,
    pub profile: Option<String>,
    pub region: String,
    /// Whether the fixture enables versioning on the buckets it makes (moto).
    pub versioned: bool,
    /// The server's smallest part other than the last (moto runs with none).
    pub min_part_size: u64,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// moto, when `OBJFS_TEST_S3_ENDPOINT` is set (otherwise a loud skip).
pub fn moto() -> Option<Server> {
    let endpoint = crate::conformance::remote_endpoint("OBJFS_TEST_S3_ENDPOINT", "s3-moto")?;
    Some(Server {
        name: "moto",
        endpoint,
        bucket: var("OBJFS_TEST_S3_BUCKET").unwrap_or_else(|| "objfs-test".into()),
        profile: var("OBJFS_TEST_S3_PROFILE"),
        region: var("OBJFS_TEST_S3_REGION").unwrap_or_else(|| "us-east-1".into()),
        versioned: true,
        min_part_size: 0,
    })
}

/// Garage, when `OBJFS_TEST_GARAGE_ENDPOINT` is set (otherwise a loud skip).
pub fn garage() -> Option<Server> {
    let endpoint = crate::conformance::remote_endpoint("OBJFS_TEST_GARAGE_ENDPOINT", "s3-garage")?;
    Some(Server {
        name: "garage",
        endpoint,
        bucket: var("OBJFS_TEST_GARAGE_BUCKET").unwrap_or_else(|| "objfs-test".into()),
        profile: var("OBJFS_TEST_GARAGE_PROFILE"),
        region: var("OBJFS_TEST_GARAGE_REGION").unwrap_or_else(|| "garage".into()),
        versioned: false,
        min_part_size: objfs_store::s3::S3_MIN_PART_SIZE,
    })
}

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A name no other test (of this process or an earlier run) uses: lower-case letters, digits
/// and dashes, at most 63 bytes (a valid bucket name).
pub fn unique_name(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let tag: String = tag.chars().take(24).collect();
    format!(
        "objfs-{tag}-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

impl Server {
    /// The configuration of bucket `bucket` (this server's own bucket when `None`) under
    /// `prefix`.
    pub fn config_of(&self, bucket: Option<&str>, prefix: &str) -> S3Config {
        let bucket = bucket.unwrap_or(&self.bucket);
        let mut cfg = S3Config::from_url(&format!("s3://{bucket}/{prefix}"))
            .unwrap_or_else(|e| panic!("{}: bucket {bucket:?}: {e}", self.name));
        cfg.endpoint = Some(self.endpoint.clone());
        cfg.region = Some(self.region.clone());
        cfg.profile = self.profile.clone();
        cfg.min_part_size = self.min_part_size;
        cfg
    }

    /// The configuration of this server's bucket under `prefix`.
    pub fn config(&self, prefix: &str) -> S3Config {
        self.config_of(None, prefix)
    }

    /// A store on a bucket of its own, made for it (versioned on moto), so that tests never
    /// see each other's keys and keys may be as long as S3 allows.
    pub async fn fresh_store(&self, tag: &str) -> S3Store {
        let cfg = self.config_of(Some(&unique_name(tag)), "");
        self.open_new_bucket(cfg).await
    }

    /// A store on a fresh prefix of a bucket of its own (listings strip the prefix).
    pub async fn fresh_prefixed_store(&self, tag: &str, prefix: &str) -> S3Store {
        let cfg = self.config_of(Some(&unique_name(tag)), prefix);
        self.open_new_bucket(cfg).await
    }

    /// A bucket of its own (versioned on moto), made now: its name and a store on it.
    pub async fn fresh_bucket(&self, tag: &str) -> (String, S3Store) {
        let bucket = unique_name(tag);
        let store = self
            .open_new_bucket(self.config_of(Some(&bucket), ""))
            .await;
        (bucket, store)
    }

    /// The `objfs` options that reach this server: `--endpoint`, `--region`, `--profile`.
    pub fn cli_args(&self) -> Vec<String> {
        let mut out: Vec<String> = [("--endpoint", &self.endpoint), ("--region", &self.region)]
            .into_iter()
            .chain(self.profile.as_ref().map(|p| ("--profile", p)))
            .flat_map(|(flag, v)| [flag.to_string(), v.clone()])
            .collect();
        out.shrink_to_fit();
        out
    }

    async fn open_new_bucket(&self, cfg: S3Config) -> S3Store {
        create_bucket(&cfg)
            .await
            .unwrap_or_else(|e| panic!("{}: create bucket: {e}", self.name));
        if self.versioned {
            set_versioning(&cfg, true)
                .await
                .unwrap_or_else(|e| panic!("{}: enable versioning: {e}", self.name));
        }
        S3Store::open(cfg)
            .await
            .unwrap_or_else(|e| panic!("{}: open: {e}", self.name))
    }
}
