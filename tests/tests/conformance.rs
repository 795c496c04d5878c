//! Runs the conformance suite (`objfs_tests::conformance`) against every backend: one named
//! test per case per backend, so a failure says which backend broke which rule, and a case the
//! backend cannot run (a missing capability) is reported as skipped. A last test per backend
//! runs all cases in sequence over one shared store, which checks that the cases' key
//! namespaces do not interfere, and prints how many cases ran and which were skipped for which
//! capability.
//!
//! Remote backends run only when their endpoint variable is set (see the suite's module doc);
//! without it they say loudly that they were skipped.

use objfs_store::local::{LocalConfig, LocalStore};
use objfs_store::memory::MemoryStore;
use objfs_tests::Fixture;

async fn memory() -> Fixture {
    Fixture::new(MemoryStore::new())
}

mod memory {
    use super::*;
    objfs_tests::conformance_tests!(memory);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn all_cases_share_one_store() {
        let fixture = memory().await;
        let report = objfs_tests::conformance::run_all(fixture.store()).await;
        assert!(report.skipped.is_empty(), "{}", report.summary());
    }
}

/// A fresh LocalStore with small volumes and blobs, so that sealing volumes and objects made
/// of many blobs happen in ordinary cases.
async fn local() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = LocalConfig {
        volume_size: 1 << 20,
        block_size: 4096,
        blob_size: 256 << 10,
        ..Default::default()
    };
    let store = LocalStore::init(&dir.path().join("store"), cfg).expect("init LocalStore");
    Fixture::with_guard(store, dir)
}

mod local {
    use super::*;
    objfs_tests::conformance_tests!(local);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn all_cases_share_one_store() {
        let fixture = local().await;
        let report = objfs_tests::conformance::run_all(fixture.store()).await;
        assert!(report.skipped.is_empty(), "{}", report.summary());
    }
}

/// An S3-compatible endpoint, when `OBJFS_TEST_S3_ENDPOINT` names one. There is no S3 backend
/// yet, so a set variable fails loudly rather than pass without testing anything.
async fn s3() -> Option<Fixture> {
    let endpoint = objfs_tests::conformance::remote_endpoint("OBJFS_TEST_S3_ENDPOINT", "s3")?;
    panic!("OBJFS_TEST_S3_ENDPOINT={endpoint} is set, but this build has no s3 backend yet");
}

mod s3 {
    use super::*;
    objfs_tests::conformance_tests!(s3);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn all_cases_share_one_store() {
        let Some(fixture) = s3().await else { return };
        let report = objfs_tests::conformance::run_all(fixture.store()).await;
        println!("{}", report.summary());
    }
}
