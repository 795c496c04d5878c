//! Fixtures for the S3 backend's tests: the test servers `scripts/test` starts (moto with a
//! versioned bucket, Garage without versioning), named by environment variables, and a fresh
//! store per test under a prefix of its own, so that tests sharing a bucket do not see each
//! other.
//!
//! | variable | what |
//! | --- | --- |
//! | `OBJFS_TEST_S3_ENDPOINT` | moto's endpoint (`http://127.0.0.1:PORT`) |
//! | `OBJFS_TEST_S3_PROFILE`, `OBJFS_TEST_S3_REGION` | its credentials profile and region |
//! | `OBJFS_TEST_S3_BUCKET` | bucket to use (created, versioning enabled; default `objfs-test`) |
//! | `OBJFS_TEST_GARAGE_ENDPOINT` | Garage's S3 endpoint |
//! | `OBJFS_TEST_GARAGE_PROFILE`, `OBJFS_TEST_GARAGE_REGION` | its profile and region (`garage`) |
//! | `OBJFS_TEST_GARAGE_BUCKET` | its bucket (made by the script with `garage bucket create`) |
//!
//! Credentials come from the shared credentials file (`AWS_SHARED_CREDENTIALS_FILE`), one
//! profile per server. Without an endpoint variable the fixture returns `None` and says loudly
//! that the backend's tests were skipped ([`crate::conformance::remote_endpoint`]).

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
    /// Whether the fixture creates the bucket and enables versioning (moto), or the script
    /// made it (Garage).
    pub make_versioned_bucket: bool,
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
        make_versioned_bucket: true,
    })
}

/// Garage, when `OBJFS_TEST_GARAGE_ENDPOINT` is set (otherwise a loud skip).
pub fn garage() -> Option<Server> {
    let endpoint =
        crate::conformance::remote_endpoint("OBJFS_TEST_GARAGE_ENDPOINT", "s3-garage")?;
    Some(Server {
        name: "garage",
        endpoint,
        bucket: var("OBJFS_TEST_GARAGE_BUCKET").unwrap_or_else(|| "objfs-test".into()),
        profile: var("OBJFS_TEST_GARAGE_PROFILE"),
        region: var("OBJFS_TEST_GARAGE_REGION").unwrap_or_else(|| "garage".into()),
        make_versioned_bucket: false,
    })
}

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A prefix no other test (of this process or an earlier run) uses.
pub fn unique_prefix(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{tag}-{}-{}-{nanos}/",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

impl Server {
    /// The configuration of this server's bucket under `prefix`.
    pub fn config(&self, prefix: &str) -> S3Config {
        let mut cfg = S3Config::from_url(&format!("s3://{}/{prefix}", self.bucket))
            .unwrap_or_else(|e| panic!("{}: bucket {:?}: {e}", self.name, self.bucket));
        cfg.endpoint = Some(self.endpoint.clone());
        cfg.region = Some(self.region.clone());
        cfg.profile = self.profile.clone();
        cfg
    }

    /// A store on a fresh prefix of this server's bucket (the bucket made first where the
    /// fixture makes it).
    pub async fn fresh_store(&self, tag: &str) -> S3Store {
        let cfg = self.config(&unique_prefix(tag));
        if self.make_versioned_bucket {
            create_bucket(&cfg)
                .await
                .unwrap_or_else(|e| panic!("{}: create bucket: {e}", self.name));
            set_versioning(&cfg, true)
                .await
                .unwrap_or_else(|e| panic!("{}: enable versioning: {e}", self.name));
        }
        S3Store::open(cfg)
            .await
            .unwrap_or_else(|e| panic!("{}: open: {e}", self.name))
    }
}
