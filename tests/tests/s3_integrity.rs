//! A GET body with bytes altered but the right length is an error, never data: the real test
//! servers (moto, Garage) behind a TCP proxy that flips one byte of a marker in what the
//! server sends back (requests go through unchanged, so what is stored is right; every
//! answer that carries the marker has one byte altered, as a bad disk, memory or link would).
//! Through the store API (whole, aligned and unaligned ranged reads; a copy with new metadata
//! keeps the checksums) and through a mount (`read` is EIO). Skipped loudly without the
//! endpoint variables (and the mount part without FUSE).

use std::io::Read;

use objfs_store::s3::S3Store;
use objfs_store::{CopyOptions, ErrorKind, GetOptions, ObjectStore, PutOptions};
use objfs_tests::s3_cli::{mount_servers, runtime};
use objfs_tests::s3_fixture::{self, Server};
use objfs_tests::s3_proxy::{self, NEEDLE};

const MIB: usize = 1 << 20;

/// `server` reached through an altering proxy.
fn through_proxy(server: &Server) -> Server {
    Server {
        endpoint: s3_proxy::start(&server.endpoint).0,
        ..server.clone()
    }
}

/// `len` bytes of a pattern, with the marker at `at`.
fn body_with_marker(len: usize, at: Option<usize>) -> Vec<u8> {
    let mut b: Vec<u8> = (0..len).map(|i| b'a' + (i % 23) as u8).collect();
    if let Some(at) = at {
        b[at..at + NEEDLE.len()].copy_from_slice(NEEDLE);
    }
    b
}

async fn get(
    s: &S3Store,
    key: &str,
    range: Option<std::ops::Range<u64>>,
) -> objfs_store::Result<Vec<u8>> {
    let r = s
        .get(
            key,
            GetOptions {
                range,
                ..Default::default()
            },
        )
        .await?;
    Ok(r.bytes().await?.to_vec())
}

fn assert_corrupt(r: objfs_store::Result<Vec<u8>>, what: &str) {
    match r {
        Err(e) => assert_eq!(e.kind(), ErrorKind::Corrupt, "{what}: {e}"),
        Ok(b) => panic!("{what}: {} bytes returned, expected an error", b.len()),
    }
}

async fn store_reads(server: &Server) {
    let via = through_proxy(server);
    let (bucket, _direct) = server.fresh_bucket("integrity").await;
    let store = S3Store::open(via.config_of(Some(&bucket), ""))
        .await
        .expect("open through the proxy");
    let small = body_with_marker(1000, Some(500));
    let big = body_with_marker(3 * MIB + 5, Some(MIB + MIB / 2));
    let clean = body_with_marker(2 * MIB, None);
    for (k, b) in [("small", &small), ("big", &big), ("clean", &clean)] {
        store
            .put(k, b.clone().into(), PutOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{}: put {k}: {e}", server.name));
    }
    let name = server.name;
    assert_corrupt(get(&store, "small", None).await, &format!("{name}: small"));
    assert_corrupt(get(&store, "big", None).await, &format!("{name}: big"));
    let m = MIB as u64;
    assert_corrupt(
        get(&store, "big", Some(m..2 * m)).await,
        &format!("{name}: the altered block"),
    );
    assert_corrupt(
        get(&store, "big", Some(m + 10..m + 20)).await,
        &format!("{name}: a few bytes of the altered block, far from the marker"),
    );
    // The blocks around it are right, and are returned.
    assert_eq!(
        get(&store, "big", Some(0..m)).await.unwrap(),
        &big[..MIB],
        "{name}"
    );
    assert_eq!(
        get(&store, "big", Some(2 * m + 7..3 * m + 5))
            .await
            .unwrap(),
        &big[2 * MIB + 7..],
        "{name}"
    );
    assert_eq!(get(&store, "clean", None).await.unwrap(), clean, "{name}");
    assert_eq!(
        get(&store, "clean", Some(m - 3..m + 3)).await.unwrap(),
        &clean[MIB - 3..MIB + 3],
        "{name}: unaligned across two blocks"
    );
    // A copy with new metadata (chmod of a file) keeps the checksums.
    let mut meta = objfs_store::Metadata::new();
    meta.insert("x-amz-meta-mode".into(), "33261".into());
    let copy = CopyOptions {
        metadata: Some(meta),
        ..Default::default()
    };
    store
        .copy("small", "small-copy", copy)
        .await
        .unwrap_or_else(|e| panic!("{name}: copy: {e}"));
    let head = store.head("small-copy", None).await.unwrap();
    assert_eq!(
        head.metadata.keys().collect::<Vec<_>>(),
        ["x-amz-meta-mode"],
        "{name}: the checksums are not store metadata"
    );
    assert_corrupt(
        get(&store, "small-copy", None).await,
        &format!("{name}: the copy"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altered_bytes_are_an_error_through_the_store_moto() {
    if let Some(s) = s3_fixture::moto() {
        store_reads(&s).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altered_bytes_are_an_error_through_the_store_garage() {
    if let Some(s) = s3_fixture::garage() {
        store_reads(&s).await;
    }
}

/// Through a mount: a file written through it reads back as EIO once the bucket's answers are
/// altered (a fresh mount, so nothing is cached), a clean file beside it reads right.
#[test]
fn altered_bytes_are_eio_through_a_mount() {
    for server in mount_servers("altered_bytes_are_eio_through_a_mount") {
        let rt = runtime();
        let bucket = server.bucket_for("integrity-mnt", server.versioned);
        let via = through_proxy(&server);
        let dir = tempfile::tempdir().unwrap();
        let bad = body_with_marker(2 * MIB + 100, Some(MIB + 4000));
        let clean = body_with_marker(300_000, None);
        {
            let mut m = via.mount_bucket(&bucket, dir.path(), "mnt", &["--write-through"]);
            let mp = dir.path().join("mnt");
            std::fs::write(mp.join("bad.bin"), &bad).expect("write");
            std::fs::write(mp.join("clean.bin"), &clean).expect("write");
            m.stop();
        }
        let mut m = via.mount_bucket(&bucket, dir.path(), "mnt", &["--write-through"]);
        let mp = dir.path().join("mnt");
        let err = std::fs::read(mp.join("bad.bin")).expect_err("altered bytes must not be read");
        assert_eq!(
            err.raw_os_error(),
            Some(libc::EIO),
            "{}: {err}",
            server.name
        );
        // The first block (before the altered one) still reads.
        let mut f = std::fs::File::open(mp.join("bad.bin")).unwrap();
        let mut first = vec![0u8; 4096];
        f.read_exact(&mut first).expect("the first block is right");
        assert_eq!(first, &bad[..4096]);
        assert_eq!(std::fs::read(mp.join("clean.bin")).unwrap(), clean);
        m.stop();
        // The bucket holds the right bytes (the proxy alters answers only).
        let store = server.open_bucket(&rt, &bucket);
        let stored = rt.block_on(async {
            let r = store.get("bad.bin", GetOptions::default()).await.unwrap();
            r.bytes().await.unwrap()
        });
        assert_eq!(&stored[..], &bad[..], "{}", server.name);
    }
}
