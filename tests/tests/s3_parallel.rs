//! The S3 backend's parallelism, measured: docs/ARCHITECTURE.md ("The S3 backend") promises
//! that a streamed `put` longer than one part (8 MiB) goes up as a multipart upload with at
//! most 4 parts in flight, and that a `get` of a long object fetches the rest in part-sized
//! ranges, 4 in flight. Nothing else asserts either number: a backend that sent its parts or
//! ranges one at a time would pass every other test, only slower.
//!
//! On each test server `scripts/test` starts (moto, versioned; Garage, without versioning),
//! a store reaches the server through `objfs_tests::s3_fault_proxy`, which records when each
//! request was in flight and holds back the answers to UploadPart and ranged GET requests by
//! [`DELAY`], so that requests the client runs in parallel overlap for certain even on a fast
//! local server (a client that runs them one after another still peaks at 1: the delay cannot
//! make serial requests overlap). The test asserts that the peak of each kind in flight is at
//! least 2 and at most 4, and that the bytes are exact (read back through a store that does
//! not go through the proxy, and through the proxy).
//!
//! Skipped loudly without the endpoint variables (a failure under `OBJFS_REQUIRE_S3=1`). The
//! proxy is stopped when its guard is dropped, also when the test fails.

use std::time::Duration;

use objfs_store::s3::S3Store;
use objfs_store::{Body, GetOptions, ObjectStore, PutOptions};
use objfs_tests::s3_fault_proxy::{FaultProxy, Seen};
use objfs_tests::s3_fixture::{self, Server};

const MIB: usize = 1 << 20;

/// The object: five whole parts of the default 8 MiB and a short sixth, so the upload has more
/// parts than the window and the read more ranges than the window after its first request.
const LEN: usize = 40 * MIB + 12_345;

/// How long the proxy holds back each answer to an UploadPart or a ranged GET.
const DELAY: Duration = Duration::from_millis(300);

/// What the backend documents as its most requests in flight per operation.
const MAX_IN_FLIGHT: usize = 4;

/// Bytes that differ from part to part and within each (a part sent twice, or in the wrong
/// place, shows).
fn content(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// `data` as a stream of 1 MiB chunks (a streamed body: only those go up by parts).
fn streamed(data: &[u8]) -> Body {
    let chunks: Vec<objfs_store::Result<bytes::Bytes>> = data
        .chunks(MIB)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    Body::from_stream(futures::stream::iter(chunks))
}

/// The whole object `key` read through `store`.
async fn read_all(store: &S3Store, key: &str, what: &str) -> Vec<u8> {
    store
        .get(key, GetOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{what}: get {key}: {e}"))
        .bytes()
        .await
        .unwrap_or_else(|e| panic!("{what}: read {key}: {e}"))
        .to_vec()
}

/// Where two byte strings first differ, for a message.
fn first_difference(a: &[u8], b: &[u8]) -> String {
    match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(i) => format!("they differ first at byte {i}"),
        None => format!("{} bytes, {} expected", a.len(), b.len()),
    }
}

/// The put and the get of a long object on `server`, through a delaying proxy.
async fn parts_and_ranges_run_in_parallel(server: Server) {
    let name = server.name;
    // A bucket of its own, made directly (its own store reads the object back past the proxy).
    let (bucket, direct) = server.fresh_bucket("parallel").await;
    let proxy = FaultProxy::start(&server.endpoint);
    proxy.delay(|s| s.is_upload_part() || s.is_ranged_get(), DELAY);
    let proxied = Server {
        endpoint: proxy.endpoint.clone(),
        ..server.clone()
    };
    let cfg = proxied.config_of(Some(&bucket), "");
    assert_eq!(
        cfg.part_size,
        8 * MIB as u64,
        "{name}: the test's sizes assume 8 MiB parts"
    );
    let store = S3Store::open(cfg)
        .await
        .unwrap_or_else(|e| panic!("{name}: open through the proxy: {e}"));

    let key = "big/object";
    let of = |s: &Seen| s.key.as_deref() == Some(key);
    let data = content(LEN);

    // 1. A streamed put: a multipart upload, its parts in parallel, at most 4 at once.
    let info = store
        .put(key, streamed(&data), PutOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{name}: put {LEN} bytes: {e}"));
    assert_eq!(info.size, LEN as u64, "{name}: the size put");
    let seen = proxy.seen();
    let parts = seen.iter().filter(|s| of(s) && s.is_upload_part()).count();
    let expected_parts = LEN.div_ceil(8 * MIB);
    assert_eq!(
        parts, expected_parts,
        "{name}: a streamed put of {LEN} bytes goes up as {expected_parts} UploadParts \
         (requests seen: {seen:?})"
    );
    assert!(
        seen.iter()
            .any(|s| of(s) && s.method == "POST" && s.has_param("uploads")),
        "{name}: no CreateMultipartUpload"
    );
    assert!(
        !seen
            .iter()
            .any(|s| of(s) && s.method == "PUT" && !s.is_upload_part()),
        "{name}: a PutObject besides the parts"
    );
    let upload_peak = proxy.peak(|s| of(s) && s.is_upload_part());
    eprintln!("{name}: {parts} UploadParts, at most {upload_peak} in flight at once");
    assert!(
        (2..=MAX_IN_FLIGHT).contains(&upload_peak),
        "{name}: UploadParts in flight at once: {upload_peak}, expected 2 to {MAX_IN_FLIGHT}"
    );
    let back = read_all(&direct, key, &format!("{name} (directly)")).await;
    assert!(
        back == data,
        "{name}: the object read back directly is not what was put: {}",
        first_difference(&back, &data)
    );

    // 2. A full read through the proxy: the rest after the first part in ranges, in parallel,
    // at most 4 at once.
    let before = proxy.seen().len();
    let got = read_all(&store, key, &format!("{name} (through the proxy)")).await;
    assert!(
        got == data,
        "{name}: the object read through the proxy is wrong: {}",
        first_difference(&got, &data)
    );
    let seen = proxy.seen();
    let ranges = seen[before..]
        .iter()
        .filter(|s| of(s) && s.is_ranged_get())
        .count();
    assert!(
        ranges >= expected_parts,
        "{name}: a read of {LEN} bytes made {ranges} ranged GETs, expected at least \
         {expected_parts} (requests seen: {:?})",
        &seen[before..]
    );
    let get_peak = proxy.peak(|s| of(s) && s.is_ranged_get());
    eprintln!("{name}: {ranges} ranged GETs, at most {get_peak} in flight at once");
    assert!(
        (2..=MAX_IN_FLIGHT).contains(&get_peak),
        "{name}: ranged GETs in flight at once: {get_peak}, expected 2 to {MAX_IN_FLIGHT}"
    );
    drop(proxy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_and_ranges_run_in_parallel_moto() {
    if let Some(server) = s3_fixture::moto() {
        parts_and_ranges_run_in_parallel(server).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_and_ranges_run_in_parallel_garage() {
    if let Some(server) = s3_fixture::garage() {
        parts_and_ranges_run_in_parallel(server).await;
    }
}
