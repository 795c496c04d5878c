//! Runs the conformance suite (`objfs_tests::conformance`) against every backend: one named
//! test per case per backend, so a failure says which backend broke which rule. A last test
//! runs all cases in sequence over one shared store, which checks that the cases' key
//! namespaces do not interfere.

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
        objfs_tests::conformance::run_all(fixture.store()).await;
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
        objfs_tests::conformance::run_all(fixture.store()).await;
    }
}
