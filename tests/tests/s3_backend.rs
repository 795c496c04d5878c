//! The S3 backend beyond the conformance suite, on moto (skipped loudly without
//! `OBJFS_TEST_S3_ENDPOINT`): a store on a prefix sees only its keys and lists them without
//! the prefix, and opening leaves nothing behind (the conditional-write probe removes every
//! version it made).

use objfs_store::s3::S3Store;
use objfs_store::{Body, GetOptions, ListRequest, ListVersionsRequest, ObjectStore, PutOptions};

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
