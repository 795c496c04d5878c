//! Fault injection for the S3 backend, against a tiny HTTP server in the test (127.0.0.1 only)
//! that answers 500/503 for a while, refuses, says nothing, or cuts a body short; and a closed
//! port. The store must retry what is retryable (a bounded number of times), then fail with a
//! clear error of the right kind, and never return wrong bytes. With moto running
//! (`OBJFS_TEST_S3_ENDPOINT`), a missing bucket is a clear error at open too.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use objfs_store::s3::{S3Config, S3Store};
use objfs_store::{ErrorKind, GetOptions, ObjectStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the fake server behaves.
#[derive(Clone, Copy, Debug)]
enum Script {
    /// The first `n` requests get `status` (with an S3 error body), the rest succeed.
    FailFirst(usize, u16),
    /// Every request gets `status`.
    Always(u16),
    /// The two requests of open succeed, every later one gets `status`.
    AfterOpen(u16),
    /// Requests succeed, but object bodies stop after 5 of their 11 bytes.
    Truncated,
    /// Connections are accepted and never answered.
    Silent,
}

const BODY: &[u8] = b"hello world";

struct FakeS3 {
    endpoint: String,
    requests: Arc<AtomicUsize>,
    _dir: tempfile::TempDir,
    credentials: PathBuf,
}

impl FakeS3 {
    async fn start(script: Script) -> FakeS3 {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let _ = answer(sock, script, counter).await;
                });
            }
        });
        let (dir, credentials) = credentials_file();
        FakeS3 {
            endpoint: format!("http://127.0.0.1:{port}"),
            requests,
            _dir: dir,
            credentials,
        }
    }

    fn config(&self) -> S3Config {
        config_for(&self.endpoint, &self.credentials)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// A credentials file with dummy keys (the fake server checks no signature), so that no
/// credential provider looks anywhere else.
fn credentials_file() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("credentials");
    std::fs::write(
        &path,
        "[default]\naws_access_key_id = fake\naws_secret_access_key = fake\n",
    )
    .expect("write credentials");
    (dir, path)
}

fn config_for(endpoint: &str, credentials: &std::path::Path) -> S3Config {
    let mut cfg = S3Config::from_url("s3://bucket/p").expect("url");
    cfg.endpoint = Some(endpoint.to_string());
    cfg.region = Some("us-east-1".into());
    cfg.credentials_file = Some(credentials.to_path_buf());
    cfg.max_attempts = 3;
    cfg.initial_backoff = Duration::from_millis(10);
    cfg.connect_timeout = Duration::from_secs(2);
    cfg.read_timeout = Duration::from_secs(2);
    cfg.conditional_put = Some(false);
    cfg
}

/// Reads one request (head and body) from `sock`; returns its head, lower-cased.
async fn read_request(sock: &mut TcpStream) -> std::io::Result<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 1 << 16 {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut have = buf.len() - head_end;
    while have < length {
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        have += n;
    }
    Ok(head)
}

async fn answer(
    mut sock: TcpStream,
    script: Script,
    counter: Arc<AtomicUsize>,
) -> std::io::Result<()> {
    loop {
        let head = read_request(&mut sock).await?;
        let n = counter.fetch_add(1, Ordering::SeqCst);
        let fail = match script {
            Script::FailFirst(k, status) if n < k => Some(status),
            Script::Always(status) => Some(status),
            Script::AfterOpen(status) if n >= 2 => Some(status),
            Script::Silent => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                return Ok(());
            }
            _ => None,
        };
        if let Some(status) = fail {
            let (reason, code) = match status {
                403 => ("Forbidden", "AccessDenied"),
                404 => ("Not Found", "NoSuchBucket"),
                503 => ("Service Unavailable", "SlowDown"),
                _ => ("Internal Server Error", "InternalError"),
            };
            let body = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
                 <Message>injected</Message><RequestId>fake-{n}</RequestId></Error>"
            );
            let body = if head.starts_with("head ") {
                String::new()
            } else {
                body
            };
            let resp = format!(
                "HTTP/1.1 {status} {reason}\r\ncontent-type: application/xml\r\n\
                 x-amz-request-id: fake-{n}\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            sock.write_all(resp.as_bytes()).await?;
            continue;
        }
        let first = head.lines().next().unwrap_or_default().to_string();
        if first.starts_with("get ") && first.contains("versioning") {
            let body =
                "<VersioningConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"/>";
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/xml\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            sock.write_all(resp.as_bytes()).await?;
        } else if first.starts_with("get ") {
            let resp = format!(
                "HTTP/1.1 206 Partial Content\r\ncontent-length: {len}\r\n\
                 content-range: bytes 0-{last}/{len}\r\netag: \"5eb63bbbe01eeed093cb22bb8f5acdc3\"\r\n\
                 last-modified: Tue, 01 Dec 2026 08:00:00 GMT\r\n\r\n",
                len = BODY.len(),
                last = BODY.len() - 1
            );
            sock.write_all(resp.as_bytes()).await?;
            if matches!(script, Script::Truncated) {
                sock.write_all(&BODY[..5]).await?;
                sock.shutdown().await?;
                return Ok(());
            }
            sock.write_all(BODY).await?;
        } else {
            sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .await?;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_5xx_then_succeeds_with_the_right_bytes() {
    let fake = FakeS3::start(Script::FailFirst(2, 503)).await;
    let store = S3Store::open(fake.config())
        .await
        .expect("open after retries");
    assert!(!store.features().versioning);
    assert!(fake.requests() >= 4, "two failures and two answers at open");
    let got = store.get("key", GetOptions::default()).await.expect("get");
    assert_eq!(got.range, 0..BODY.len() as u64);
    assert_eq!(got.bytes().await.expect("body").as_ref(), BODY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_500_fails_after_bounded_retries() {
    let fake = FakeS3::start(Script::Always(500)).await;
    let start = Instant::now();
    let err = S3Store::open(fake.config())
        .await
        .expect_err("open must fail");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.is_retryable());
    let msg = err.to_string();
    // HeadBucket answers have no body: the status (and request id) say what failed.
    assert!(
        msg.contains("HTTP 500") && msg.contains("HeadBucket"),
        "{msg}"
    );
    assert!(
        msg.contains("request fake-"),
        "the request id is in the message: {msg}"
    );
    assert_eq!(fake.requests(), 3, "max_attempts requests, no more");
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowdown_is_throttled_after_retries() {
    let fake = FakeS3::start(Script::Always(503)).await;
    let err = S3Store::open(fake.config())
        .await
        .expect_err("open must fail");
    assert_eq!(err.kind(), ErrorKind::Throttled, "{err}");
    assert_eq!(fake.requests(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_is_permission_denied_without_retries() {
    let fake = FakeS3::start(Script::Always(403)).await;
    let err = S3Store::open(fake.config())
        .await
        .expect_err("open must fail");
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert_eq!(fake.requests(), 1, "a 403 is not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_bucket_is_clear_at_open() {
    let fake = FakeS3::start(Script::Always(404)).await;
    let err = S3Store::open(fake.config())
        .await
        .expect_err("open must fail");
    assert_eq!(err.kind(), ErrorKind::NoSuchBucket, "{err}");
    assert!(err.to_string().contains("\"bucket\""), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_body_is_an_error_never_data() {
    let fake = FakeS3::start(Script::Truncated).await;
    let store = S3Store::open(fake.config()).await.expect("open");
    let result = match store.get("key", GetOptions::default()).await {
        Ok(got) => got.bytes().await,
        Err(e) => Err(e),
    };
    let err = result.expect_err("a body cut short must not read as data");
    assert!(
        matches!(err.kind(), ErrorKind::Unavailable | ErrorKind::Backend),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_during_work_carry_the_s3_code() {
    // Open takes 2 requests (HeadBucket, GetBucketVersioning); then every GET fails.
    let fake = FakeS3::start(Script::AfterOpen(500)).await;
    let store = S3Store::open(fake.config()).await.expect("open");
    let err = store
        .get("key", GetOptions::default())
        .await
        .expect_err("get must fail");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("InternalError") && msg.contains("HTTP 500") && msg.contains("\"key\""),
        "{msg}"
    );
    assert_eq!(fake.requests(), 2 + 3, "open, then max_attempts GETs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_port_is_unreachable_at_open() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let (_dir, creds) = credentials_file();
    let cfg = config_for(&format!("http://127.0.0.1:{port}"), &creds);
    let start = Instant::now();
    let err = S3Store::open(cfg).await.expect_err("open must fail");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains("cannot reach"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_endpoint_times_out() {
    let fake = FakeS3::start(Script::Silent).await;
    let mut cfg = fake.config();
    cfg.read_timeout = Duration::from_millis(300);
    cfg.max_attempts = 2;
    let start = Instant::now();
    let err = S3Store::open(cfg).await.expect_err("open must fail");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains("timed out"), "{err}");
    assert_eq!(fake.requests(), 2, "each attempt timed out once");
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_missing_bucket_is_clear_at_open() {
    let Some(server) = objfs_tests::s3_fixture::moto() else {
        return;
    };
    let mut cfg = server.config("");
    cfg.bucket = "objfs-no-such-bucket".into();
    let err = S3Store::open(cfg).await.expect_err("open must fail");
    assert_eq!(err.kind(), ErrorKind::NoSuchBucket, "{err}");
    assert!(err.to_string().contains("objfs-no-such-bucket"), "{err}");
}
