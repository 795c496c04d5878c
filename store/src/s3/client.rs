//! Builds the aws-sdk-s3 client from an [`S3Config`]: one HTTPS client (hyper + rustls with
//! ring), the standard AWS credential and region chains, the SDK's standard retry mode, and the
//! settings S3-compatible servers need (path-style addressing, an explicit region, checksums
//! only where an operation requires them), and whether request bodies need a payload signature
//! on the way to the endpoint.

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

/// Whether a request body sent to `endpoint` (`None`: AWS, over HTTPS) needs SigV4's payload
/// signature (`x-amz-content-sha256`, a SHA-256 of the body on both sides) to be protected on
/// its way: not over HTTPS (TLS protects it) nor to this machine (a loopback address or
/// `localhost`: no wire). Elsewhere (plain HTTP to another host) it is the only check an
/// UploadPart's bytes get; a PutObject carries `Content-MD5`, which the server checks, and
/// never needs it.
pub fn payload_signing_needed(endpoint: Option<&str>) -> bool {
    let Some(e) = endpoint else {
        return false;
    };
    let Ok(uri) = e.parse::<http::Uri>() else {
        return true;
    };
    if uri.scheme_str() == Some("https") {
        return false;
    }
    let host = uri.host().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host
        .parse::<std::net::IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or_else(|_| host.eq_ignore_ascii_case("localhost"));
    !loopback
}

#[cfg(test)]
mod tests {
    use super::payload_signing_needed as needed;

    #[test]
    fn bodies_are_signed_only_over_plain_http_to_another_host() {
        assert!(!needed(None));
        assert!(!needed(Some("https://s3.example.com")));
        assert!(!needed(Some("http://127.0.0.1:3900")));
        assert!(!needed(Some("http://127.8.9.1:3900")));
        assert!(!needed(Some("http://localhost:9000/")));
        assert!(!needed(Some("http://[::1]:9000")));
        assert!(needed(Some("http://10.0.0.5:3900")));
        assert!(needed(Some("http://garage.lan:3900")));
        assert!(needed(Some("http://[fe80::1]:3900")));
        assert!(needed(Some("not a uri at all")));
    }
}
