//! Builds the aws-sdk-s3 client from an [`S3Config`]: one HTTPS client (hyper + rustls with
//! ring), the standard AWS credential and region chains, the SDK's standard retry mode, and the
//! settings S3-compatible servers need (path-style addressing, an explicit region, checksums
//! only where an operation requires them).

use std::time::Duration;

use aws_config::meta::region::RegionProviderChain;
// aws-config names these by deprecated aliases only (the new names live in aws-runtime, which
// it does not re-export); its loader takes exactly these types.
#[allow(deprecated)]
use aws_config::profile::profile_file::{ProfileFileKind, ProfileFiles};
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::Client;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};

use super::S3Config;

/// The region used when neither the configuration nor AWS's chain names one.
const FALLBACK_REGION: &str = "us-east-1";

#[allow(deprecated)]
/// The client for `cfg` (no request is made: credentials are resolved at the first one).
pub async fn build(cfg: &S3Config) -> Client {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let region = match &cfg.region {
        Some(r) => RegionProviderChain::first_try(Region::new(r.clone())),
        None => RegionProviderChain::default_provider(),
    }
    .or_else(Region::from_static(FALLBACK_REGION));
    let retry = RetryConfig::standard()
        .with_max_attempts(cfg.max_attempts.max(1))
        .with_initial_backoff(cfg.initial_backoff)
        .with_max_backoff(Duration::from_secs(20));
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(cfg.connect_timeout)
        .read_timeout(cfg.read_timeout)
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .region(region)
        .retry_config(retry)
        .timeout_config(timeouts);
    if let Some(p) = &cfg.profile {
        loader = loader.profile_name(p);
    }
    if let Some(f) = &cfg.credentials_file {
        loader = loader.profile_files(
            ProfileFiles::builder()
                .include_default_config_file(true)
                .with_file(ProfileFileKind::Credentials, f)
                .build(),
        );
    }
    let shared = loader.load().await;
    let mut conf = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(cfg.path_style.unwrap_or(cfg.endpoint.is_some()))
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    if let Some(e) = &cfg.endpoint {
        conf = conf.endpoint_url(e);
    }
    Client::from_conf(conf.build())
}
