//! The write-back decorator (objfs_store::writeback) as a store: the conformance suite over it
//! (a memory store inside, and moto when `OBJFS_TEST_S3_ENDPOINT` is set, a loud skip
//! otherwise), and what it adds: writes acknowledged while the bucket is down are uploaded
//! once it is back, a journal left by a dropped decorator (a crashed mount) is replayed and
//! uploaded by the next, and on a bucket without versioning (Garage) a file renamed before it
//! was uploaded never reaches the bucket under its old name.

use std::sync::Arc;
use std::time::Duration;

use objfs_store::fault::{Fault, FaultStore, Op, Rule};
use objfs_store::memory::MemoryStore;
use objfs_store::writeback::{WriteBack, WriteBackConfig};
use objfs_store::{GetOptions, ListRequest, ObjectStore, PutOptions, RenameOptions};
use objfs_tests::Fixture;

/// A decorator over `inner` with a journal in a fresh temporary directory.
fn decorate(inner: Arc<dyn ObjectStore>) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let wb = WriteBack::open(inner, WriteBackConfig::new(dir.path().join("journal")))
        .expect("open the write-back journal");
    Fixture::with_guard(wb, dir)
}

async fn wb_memory() -> Fixture {
    decorate(Arc::new(MemoryStore::new()))
}

mod wb_memory {
    use super::*;
    objfs_tests::conformance_tests!(wb_memory);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn all_cases_share_one_store() {
        let fixture = wb_memory().await;
        let report = objfs_tests::conformance::run_all(fixture.store()).await;
        assert!(report.skipped.is_empty(), "{}", report.summary());
    }
}

async fn wb_moto() -> Option<Fixture> {
    let server = objfs_tests::s3_fixture::moto()?;
    Some(decorate(Arc::new(
        server.fresh_store("wb-conformance").await,
    )))
}

mod wb_moto {
    use super::*;
    objfs_tests::conformance_tests!(wb_moto);
}

async fn read(s: &dyn ObjectStore, key: &str) -> Vec<u8> {
    let r = s.get(key, GetOptions::default()).await;
    r.unwrap_or_else(|e| panic!("get {key}: {e}"))
        .bytes()
        .await
        .expect("body")
        .to_vec()
}

async fn keys(s: &dyn ObjectStore) -> Vec<String> {
    let page = s.list(&ListRequest::default()).await.expect("list");
    page.objects.into_iter().map(|o| o.key).collect()
}

fn wait_drained(wb: &WriteBack) {
    assert!(
        wb.wait_drained(Duration::from_secs(60), |_| {}),
        "uploads did not finish: {:?}",
        wb.summary()
    );
}

/// The bucket refuses every write: puts are still acknowledged (from the journal, readable
/// and listed), nothing is lost, and everything is uploaded once the bucket answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_acknowledged_while_the_bucket_is_down_and_uploaded_after() {
    let bucket: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let faults = Arc::new(FaultStore::new(bucket.clone()));
    for op in [Op::Put, Op::Copy, Op::Delete] {
        faults.add(Rule::always(op, Fault::Fail { retryable: true }));
    }
    let dir = tempfile::tempdir().unwrap();
    let w = WriteBack::open(faults.clone(), WriteBackConfig::new(dir.path())).unwrap();
    let wb: &dyn ObjectStore = &w;
    for i in 0..20 {
        let body = format!("file {i}").into_bytes();
        wb.put(&format!("d/f{i}"), body.into(), PutOptions::default())
            .await
            .expect("a put is acknowledged from the journal");
    }
    wb.rename("d/f0", "d/g0", RenameOptions::default())
        .await
        .unwrap();
    assert_eq!(read(wb, "d/g0").await, b"file 0");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        keys(bucket.as_ref()).await.is_empty(),
        "nothing reached the bucket yet"
    );
    assert!(faults.injected() > 0, "the uploader tried");
    let listed = keys(wb).await;
    assert_eq!(listed.len(), 20);
    assert!(listed.contains(&"d/g0".to_string()) && !listed.contains(&"d/f0".to_string()));
    faults.clear();
    wait_drained(&w);
    let mut want: Vec<String> = (1..20).map(|i| format!("d/f{i}")).collect();
    want.push("d/g0".into());
    want.sort();
    assert_eq!(keys(bucket.as_ref()).await, want);
    assert_eq!(read(bucket.as_ref(), "d/g0").await, b"file 0");
    assert_eq!(read(bucket.as_ref(), "d/f19").await, b"file 19");
}

/// A decorator dropped with its uploads failing stands for a mount killed before it
/// uploaded: the next one over the same journal shows the files at once and uploads them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_left_behind_is_replayed_and_uploaded() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    let bucket: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let faults = Arc::new(FaultStore::new(bucket.clone()));
    faults.add(Rule::always(Op::Put, Fault::Fail { retryable: true }));
    {
        let wb = WriteBack::open(faults.clone(), WriteBackConfig::new(&journal)).unwrap();
        for i in 0..10 {
            let body = vec![i as u8; 1000 + i];
            wb.put(&format!("k{i}"), body.into(), PutOptions::default())
                .await
                .unwrap();
        }
        assert_eq!(wb.summary().changes, 10);
        assert!(
            WriteBack::open(faults.clone(), WriteBackConfig::new(&journal)).is_err(),
            "a second decorator on the same journal is refused"
        );
    }
    // The first uploader stops a moment after its decorator is dropped.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let wb = WriteBack::open(faults.clone(), WriteBackConfig::new(&journal)).unwrap();
    assert_eq!(wb.summary().changes, 10, "replayed");
    assert_eq!(read(&wb, "k3").await, vec![3u8; 1003]);
    assert!(keys(bucket.as_ref()).await.is_empty());
    faults.clear();
    wait_drained(&wb);
    for i in 0..10 {
        assert_eq!(
            read(bucket.as_ref(), &format!("k{i}")).await,
            vec![i as u8; 1000 + i]
        );
    }
    let left: Vec<_> = std::fs::read_dir(&journal)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "wb"))
        .collect();
    assert!(left.is_empty(), "uploaded entries leave the journal");
}

/// On a bucket without versioning, the temp-file-then-rename of editors and rsync uploads the
/// final name only, and a delete of a file never uploaded reaches the bucket as nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_renamed_before_upload_never_reaches_the_bucket_under_its_old_name() {
    let Some(server) = objfs_tests::s3_fixture::garage() else {
        return;
    };
    let bucket: Arc<dyn ObjectStore> = Arc::new(server.fresh_store("wb-rename").await);
    let faults = Arc::new(FaultStore::new(bucket.clone()));
    // Hold the uploads until the renames are journaled.
    faults.add(Rule::always(Op::Put, Fault::Fail { retryable: true }));
    faults.add(Rule::always(Op::Delete, Fault::Fail { retryable: true }));
    let dir = tempfile::tempdir().unwrap();
    let wb = WriteBack::open(faults.clone(), WriteBackConfig::new(dir.path())).unwrap();
    for i in 0..5 {
        let tmp = format!(".f{i}.tmp");
        wb.put(&tmp, b"data".to_vec().into(), PutOptions::default())
            .await
            .unwrap();
        wb.rename(&tmp, &format!("f{i}"), RenameOptions::default())
            .await
            .unwrap();
    }
    wb.put("gone", b"x".to_vec().into(), PutOptions::default())
        .await
        .unwrap();
    wb.delete("gone").await.unwrap();
    faults.clear();
    // An upload of an old name would fail for ever, and the journal would never drain.
    faults.add(Rule::always(Op::Put, Fault::Fail { retryable: true }).on_prefix(".f"));
    faults.add(Rule::always(Op::Copy, Fault::Fail { retryable: true }).on_prefix(".f"));
    wait_drained(&wb);
    let want: Vec<String> = (0..5).map(|i| format!("f{i}")).collect();
    assert_eq!(keys(bucket.as_ref()).await, want);
    for k in &want {
        assert_eq!(read(bucket.as_ref(), k).await, b"data");
    }
}
