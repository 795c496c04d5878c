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
use objfs_store::ObjectStore;
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

/// The S3 backend on moto (a versioned bucket: versions, delete markers, part copies,
/// conditional writes), each case on a prefix of its own; `None` (a loud skip) without
/// `OBJFS_TEST_S3_ENDPOINT`.
async fn s3_moto() -> Option<Fixture> {
    let server = objfs_tests::s3_fixture::moto()?;
    Some(Fixture::new(server.fresh_store("conformance").await))
}

mod s3_moto {
    use super::*;
    objfs_tests::conformance_tests!(s3_moto);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn all_cases_share_one_store() {
        // Every case in one store, under a prefix of the bucket (listings strip it).
        let Some(server) = objfs_tests::s3_fixture::moto() else {
            return;
        };
        let store = server.fresh_prefixed_store("all-cases", "pre/fix").await;
        let f = store.features();
        assert!(f.versioning && f.conditional_put && f.part_copy, "{f:?}");
        let report = objfs_tests::conformance::run_all(&store).await;
        // S3 has no atomic rename and no times beside keys; the prefix shortens the keys.
        for (case, cap) in &report.skipped {
            use objfs_tests::conformance::Capability::*;
            assert!(
                matches!(cap, AtomicRename | KeyTimes | LongKeys),
                "{case} skipped for {}",
                cap.name()
            );
        }
    }
}

/// The S3 backend on Garage (a real distributed engine, no versioning), each case on a prefix
/// of its own; `None` (a loud skip) without `OBJFS_TEST_GARAGE_ENDPOINT`.
async fn s3_garage() -> Option<Fixture> {
    let server = objfs_tests::s3_fixture::garage()?;
    Some(Fixture::new(server.fresh_store("conformance").await))
}

mod s3_garage {
    use super::*;
    objfs_tests::conformance_tests!(s3_garage);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn all_cases_share_one_store() {
        let Some(fixture) = s3_garage().await else {
            return;
        };
        let f = fixture.store().features();
        assert!(!f.versioning, "{f:?}");
        let report = objfs_tests::conformance::run_all(fixture.store()).await;
        assert!(!report.ran.is_empty(), "{}", report.summary());
    }
}
