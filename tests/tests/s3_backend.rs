//! The S3 backend beyond the conformance suite, on moto (skipped loudly without
//! `OBJFS_TEST_S3_ENDPOINT`): a store on a prefix sees only its keys and lists them without
//! the prefix, opening leaves nothing behind (the conditional-write probe removes every
//! version it made), and a copy or rename of an object above the single-copy limit
//! (`S3Config::max_copy_size`, lowered to 8 MiB) goes by UploadPartCopy parts, counted
//! through [`s3_proxy`], with the bytes, size and metadata of the source.

use objfs_store::s3::{create_bucket, set_versioning, S3Store};
use objfs_store::{
    Body, CopyOptions, ErrorKind, GetOptions, ListRequest, ListVersionsRequest, Metadata,
    ObjectStore, PutOptions, RenameOptions,
};
use objfs_tests::s3_fixture::{unique_name, Server};
use objfs_tests::s3_proxy::{self, Counts, Request};

async fn put(s: &dyn ObjectStore, key: &str, data: &'static str) {
    s.put(key, Body::from(data), PutOptions::default())
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_holds_the_store() {
    let Some(server) = objfs_tests::s3_fixture::moto() else {
        return;
    };
    let inner = server.fresh_prefixed_store("prefix", "a/b").await;
    assert_eq!(inner.prefix(), "a/b/");
    let root = S3Store::open(server.config_of(Some(inner.bucket()), ""))
        .await
        .expect("open the bucket's root");
    put(&inner, "d/k", "inner").await;
    put(&root, "outside", "root").await;

    let page = inner.list(&ListRequest::dir("")).await.expect("list");
    assert_eq!(page.common_prefixes, vec!["d/".to_string()]);
    assert!(page.objects.is_empty(), "{page:?}");
    let got = root
        .get("a/b/d/k", GetOptions::default())
        .await
        .expect("the full key")
        .bytes()
        .await
        .expect("body");
    assert_eq!(got.as_ref(), b"inner");
    let all = root.list(&ListRequest::default()).await.expect("list root");
    let keys: Vec<&str> = all.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(
        keys,
        vec!["a/b/d/k", "outside"],
        "and nothing under .objfs/"
    );
    let versions = root
        .list_versions(&ListVersionsRequest::default())
        .await
        .expect("list versions");
    assert!(
        versions.versions.iter().all(|v| !v.key.contains(".objfs/")),
        "the probe left versions: {versions:?}"
    );
    let cap = inner.capacity().await.expect("capacity");
    assert_eq!(
        (cap.objects, cap.used_bytes),
        (1, 5),
        "only the prefix counts"
    );
}

const MIB: u64 = 1 << 20;

/// 20 MiB whose every MiB differs from the others (and every byte from its neighbours), so a
/// part copied from the wrong range, or shifted by a byte, shows.
fn distinct_mibs() -> Vec<u8> {
    (0..20 * MIB)
        .map(|i| ((i / MIB) as u8).wrapping_mul(16) ^ (i % 251) as u8)
        .collect()
}

/// The requests recorded after the first `from`: how many of each S3 operation that writes.
fn ops_since(counts: &Counts, from: usize) -> (Vec<Request>, String) {
    let after: Vec<Request> = counts.requests().split_off(from);
    let mut ops: Vec<&str> = after
        .iter()
        .map(Request::operation)
        .filter(|o| *o != "other")
        .collect();
    ops.sort_unstable();
    let text = format!("{ops:?}");
    (after, text)
}

fn count(reqs: &[Request], op: &str) -> usize {
    reqs.iter().filter(|r| r.operation() == op).count()
}

async fn read_all(s: &dyn ObjectStore, key: &str) -> Vec<u8> {
    s.get(key, GetOptions::default())
        .await
        .unwrap_or_else(|e| panic!("get {key}: {e}"))
        .bytes()
        .await
        .unwrap_or_else(|e| panic!("read {key}: {e}"))
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_above_the_single_copy_limit_go_by_parts() {
    let Some(server) = objfs_tests::s3_fixture::moto() else {
        return;
    };
    let (endpoint, counts) = s3_proxy::start(&server.endpoint);
    let proxied = Server {
        endpoint,
        ..server.clone()
    };
    let bucket = unique_name("bigcopy");
    let mut cfg = proxied.config_of(Some(&bucket), "");
    create_bucket(&cfg).await.expect("create the bucket");
    set_versioning(&cfg, true).await.expect("versioning on");
    let plain = S3Store::open(cfg.clone()).await.expect("open");
    cfg.max_copy_size = 8 * MIB;
    let store = S3Store::open(cfg)
        .await
        .expect("open with an 8 MiB copy limit");

    let data = distinct_mibs();
    let meta: Metadata = [("color".to_string(), "blue".to_string())].into();
    let source = store
        .put(
            "big",
            Body::from(data.clone()),
            PutOptions {
                metadata: meta.clone(),
                ..Default::default()
            },
        )
        .await
        .expect("put 20 MiB");
    // One PutObject: an MD5 ETag, so a `-N` ETag below is the copy's own.
    assert!(!source.etag.contains('-'), "{}", source.etag);
    store
        .put(
            "small",
            Body::from(vec![7u8; MIB as usize]),
            PutOptions::default(),
        )
        .await
        .expect("put 1 MiB");

    // Above the limit: parts of at most 8 MiB (8 + 8 + 4), copied on the server.
    let from = counts.requests().len();
    let info = store
        .copy("big", "copy", CopyOptions::default())
        .await
        .expect("copy 20 MiB");
    let (reqs, ops) = ops_since(&counts, from);
    assert_eq!(count(&reqs, "UploadPartCopy"), 3, "{ops}");
    assert_eq!(count(&reqs, "CopyObject"), 0, "{ops}");
    assert_eq!(
        count(&reqs, "UploadPart") + count(&reqs, "PutObject"),
        0,
        "{ops}"
    );
    assert_eq!(count(&reqs, "CompleteMultipartUpload"), 1, "{ops}");
    let mut ranges: Vec<u64> = reqs.iter().filter_map(|r| r.copy_range).collect();
    ranges.sort_unstable();
    assert_eq!(ranges, [4 * MIB, 8 * MIB, 8 * MIB], "{ops}");
    assert_eq!(info.size, 20 * MIB);
    assert!(info.etag.ends_with("-3"), "a multipart ETag: {}", info.etag);
    let head = store.head("copy", None).await.expect("head the copy");
    assert_eq!(head.size, 20 * MIB);
    assert_eq!(head.metadata.get("color").map(String::as_str), Some("blue"));
    assert!(
        read_all(&store, "copy").await == data,
        "the copy's bytes differ"
    );

    // A rename is a copy (by parts) and a delete marker on the source.
    let from = counts.requests().len();
    let moved = store
        .rename("copy", "moved", RenameOptions::default())
        .await
        .expect("rename 20 MiB");
    let (reqs, ops) = ops_since(&counts, from);
    assert_eq!(count(&reqs, "UploadPartCopy"), 3, "{ops}");
    assert_eq!(count(&reqs, "CopyObject"), 0, "{ops}");
    assert_eq!(count(&reqs, "DeleteObject"), 1, "{ops}");
    assert_eq!(moved.size, 20 * MIB);
    assert!(moved.etag.ends_with("-3"), "{}", moved.etag);
    let head = store.head("moved", None).await.expect("head the renamed");
    assert_eq!(head.metadata.get("color").map(String::as_str), Some("blue"));
    assert!(
        read_all(&store, "moved").await == data,
        "the renamed bytes differ"
    );
    let gone = store
        .head("copy", None)
        .await
        .expect_err("the rename's source");
    assert_eq!(gone.kind(), ErrorKind::NotFound, "{gone}");

    // At or under the limit, one CopyObject; and with the default limit (5 GiB), the 20 MiB
    // object is one CopyObject too.
    for (s, src, dst) in [
        (&store, "small", "small-copy"),
        (&plain, "big", "plain-copy"),
    ] {
        let from = counts.requests().len();
        let info = s
            .copy(src, dst, CopyOptions::default())
            .await
            .unwrap_or_else(|e| panic!("copy {src}: {e}"));
        let (reqs, ops) = ops_since(&counts, from);
        assert_eq!(count(&reqs, "CopyObject"), 1, "{src}: {ops}");
        assert_eq!(count(&reqs, "UploadPartCopy"), 0, "{src}: {ops}");
        assert_eq!(info.size, s.head(src, None).await.expect("head").size);
        assert!(read_all(s, dst).await == read_all(s, src).await, "{dst}");
    }
}
