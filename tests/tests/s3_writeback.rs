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

/// The decorator keeping the bucket's answers for an hour, opens included: it is the only
/// writer, so every answer must still be right (its own changes write themselves into what
/// it kept).
async fn wb_memory_kept() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = WriteBackConfig::new(dir.path().join("journal"));
    cfg.answer_ttl = Duration::from_secs(3600);
    cfg.open_ttl = Duration::from_secs(3600);
    let wb = WriteBack::open(Arc::new(MemoryStore::new()), cfg).expect("open the journal");
    Fixture::with_guard(wb, dir)
}

mod wb_memory_kept {
    use super::*;
    objfs_tests::conformance_tests!(wb_memory_kept);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn all_cases_share_one_store() {
        let fixture = wb_memory_kept().await;
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
    assert_eq!(
        journal_entries(&journal),
        0,
        "uploaded entries leave the journal"
    );
    // Once closed, nothing is left of them on disk.
    drop(wb);
    let mut files = Vec::new();
    for _ in 0..100 {
        files = std::fs::read_dir(&journal)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != "lock")
            .collect();
        if files.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(files.is_empty(), "{files:?}");
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

/// Every entry left in the journal at `dir` (not done).
fn journal_entries(dir: &std::path::Path) -> usize {
    objfs_store::writeback::entries_on_disk(dir).unwrap()
}

/// Waits until nothing is left but refused changes (and what waits behind them).
fn wait_settled(wb: &WriteBack) -> objfs_store::writeback::Summary {
    assert!(
        !wb.wait_drained(Duration::from_secs(60), |_| {}),
        "the journal drained although the bucket refuses uploads"
    );
    let s = wb.summary();
    assert!(s.settled(), "still uploading after 60 s: {s:?}");
    s
}

/// A bucket that refuses some keys for good (403): those changes are not retried, stay in
/// the journal (readable and listed), are named with the bucket's error by the summary, do
/// not hold back other keys, make an operation that must follow them fail at once instead of
/// waiting for ever (the delete half of a rename whose copy was refused waits too), and
/// reach the bucket once retried after the cause is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_upload_stays_in_the_journal_until_retried() {
    let bucket: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    bucket
        .put("old/u", b"uploaded".to_vec().into(), PutOptions::default())
        .await
        .unwrap();
    let faults = Arc::new(FaultStore::new(bucket.clone()));
    faults.add(Rule::always(Op::Put, Fault::Refuse).on_prefix("deny/"));
    faults.add(Rule::always(Op::Copy, Fault::Refuse).on_prefix("new/"));
    let dir = tempfile::tempdir().unwrap();
    let w = WriteBack::open(faults.clone(), WriteBackConfig::new(dir.path())).unwrap();
    let wb: &dyn ObjectStore = &w;
    for k in ["ok/a", "deny/b", "ok/c"] {
        wb.put(k, k.as_bytes().to_vec().into(), PutOptions::default())
            .await
            .expect("acknowledged from the journal");
    }
    // A rename of an uploaded file: its server-side copy is refused, so its delete waits.
    wb.rename("old/u", "new/u", RenameOptions::default())
        .await
        .unwrap();
    let s = wait_settled(&w);
    let failed: Vec<&str> = s.failed.iter().map(|f| f.key.as_str()).collect();
    assert_eq!(failed, ["deny/b", "new/u"], "{s:?}");
    assert!(s.failed[0].error.contains("AccessDenied"), "{s:?}");
    assert_eq!((s.changes, s.blocked), (3, 3), "{s:?}");
    assert_eq!(journal_entries(dir.path()), 2, "the refused entries stay");
    assert_eq!(read(bucket.as_ref(), "ok/c").await, b"ok/c", "others go on");
    assert_eq!(read(wb, "deny/b").await, b"deny/b");
    assert_eq!(read(wb, "new/u").await, b"uploaded");
    assert_eq!(keys(wb).await, ["deny/b", "new/u", "ok/a", "ok/c"]);
    assert_eq!(keys(bucket.as_ref()).await, ["ok/a", "ok/c", "old/u"]);
    // What must follow a refused change fails now instead of waiting for it.
    let err = wb
        .create_multipart("deny/b", PutOptions::default())
        .await
        .expect_err("a multipart upload must not overtake the refused change");
    assert!(err.to_string().contains("objfs writeback retry"), "{err}");
    assert!(wb
        .delete_version("old/u", "x".parse().unwrap())
        .await
        .is_err());
    // The cause goes away (the policy is fixed): a retry uploads everything.
    faults.clear();
    assert_eq!(w.retry_failed(), 2);
    wait_drained(&w);
    assert!(w.summary().failed.is_empty());
    assert_eq!(read(bucket.as_ref(), "deny/b").await, b"deny/b");
    assert_eq!(read(bucket.as_ref(), "new/u").await, b"uploaded");
    assert_eq!(
        keys(bucket.as_ref()).await,
        ["deny/b", "new/u", "ok/a", "ok/c"]
    );
    assert_eq!(journal_entries(dir.path()), 0);
}

/// A refusal is recorded in the journal: after the journal is closed and opened again (a
/// remount) the change is still failed, with the bucket's error and time, and not tried,
/// even though the bucket would take it now; `retry_failed` uploads it and the record goes.
/// A journal without such records (written before they existed) is uploaded at open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_changes_stay_failed_across_an_open_until_retried() {
    let dir = tempfile::tempdir().unwrap();
    let bucket: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let faults = Arc::new(FaultStore::new(bucket.clone()));
    faults.add(Rule::always(Op::Put, Fault::Refuse).on_prefix("deny/"));
    let before = {
        let w = WriteBack::open(faults.clone(), WriteBackConfig::new(dir.path())).unwrap();
        w.put("deny/k", b"one".to_vec().into(), PutOptions::default())
            .await
            .unwrap();
        let s = wait_settled(&w);
        assert_eq!(s.failed.len(), 1, "{s:?}");
        s.failed[0].clone()
    };
    let records = |d: &std::path::Path| {
        std::fs::read_dir(d)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "failed"))
            .count()
    };
    assert_eq!(records(dir.path()), 1, "the refusal is recorded");
    tokio::time::sleep(Duration::from_millis(300)).await;
    faults.clear();
    let w = WriteBack::open(faults.clone(), WriteBackConfig::new(dir.path())).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = w.summary();
    assert_eq!(s.failed, vec![before], "failed again after the open: {s:?}");
    assert!(s.failed[0].error.contains("AccessDenied"), "{s:?}");
    assert!(s.settled() && s.changes == 1, "{s:?}");
    assert!(
        bucket.head("deny/k", None).await.is_err(),
        "a recorded refusal is not tried at open"
    );
    assert_eq!(read(&w, "deny/k").await, b"one", "still readable");
    assert_eq!(w.retry_failed(), 1);
    wait_drained(&w);
    assert_eq!(read(bucket.as_ref(), "deny/k").await, b"one");
    assert_eq!(records(dir.path()), 0);
    assert_eq!(journal_entries(dir.path()), 0);
    drop(w);
    // A journal with no records (as every journal before them) is uploaded at open.
    tokio::time::sleep(Duration::from_millis(300)).await;
    faults.add(Rule::always(Op::Put, Fault::Refuse));
    {
        let w = WriteBack::open(faults.clone(), WriteBackConfig::new(dir.path())).unwrap();
        w.put("old", b"two".to_vec().into(), PutOptions::default())
            .await
            .unwrap();
        assert_eq!(wait_settled(&w).failed.len(), 1);
    }
    for e in std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
    {
        if e.path().extension().is_some_and(|x| x == "failed") {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    faults.clear();
    let w = WriteBack::open(faults.clone(), WriteBackConfig::new(dir.path())).unwrap();
    wait_drained(&w);
    assert_eq!(read(bucket.as_ref(), "old").await, b"two");
}

/// A pending delete (or the source of a pending rename) under a common prefix: once the
/// bucket holds nothing else under the prefix, the parent's listing no longer shows it,
/// before the delete is uploaded; a prefix that keeps other keys stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_emptied_by_pending_deletes_leaves_the_parent_listing() {
    let bucket: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    for k in ["d/x", "d/sub/y", "m/a", "m/b", "keep/a", "keep/b"] {
        bucket
            .put(k, k.as_bytes().to_vec().into(), PutOptions::default())
            .await
            .unwrap();
    }
    let faults = Arc::new(FaultStore::new(bucket.clone()));
    let dir = tempfile::tempdir().unwrap();
    let w = WriteBack::open(faults.clone(), WriteBackConfig::new(dir.path())).unwrap();
    let wb: &dyn ObjectStore = &w;
    // Nothing reaches the bucket while the listings are checked.
    for op in [Op::Put, Op::Copy, Op::Delete] {
        faults.add(Rule::always(op, Fault::Fail { retryable: true }));
    }
    // d/: both keys overwritten, then deleted, while pending.
    for k in ["d/x", "d/sub/y", "keep/a"] {
        wb.put(k, b"new".to_vec().into(), PutOptions::default())
            .await
            .unwrap();
        wb.delete(k).await.unwrap();
    }
    // m/: both files renamed away (`mv m/* n/`).
    for k in ["a", "b"] {
        wb.rename(
            &format!("m/{k}"),
            &format!("n/{k}"),
            RenameOptions::default(),
        )
        .await
        .unwrap();
    }
    let root = wb.list(&ListRequest::dir("")).await.unwrap();
    assert_eq!(root.common_prefixes, ["keep/", "n/"], "{root:?}");
    let d = wb.list(&ListRequest::dir("d/")).await.unwrap();
    assert!(
        d.objects.is_empty() && d.common_prefixes.is_empty(),
        "{d:?}"
    );
    // Small pages: the hidden prefixes never take a page's place.
    let mut req = ListRequest {
        max_keys: 1,
        ..ListRequest::dir("")
    };
    let mut seen = Vec::new();
    loop {
        let p = wb.list(&req).await.unwrap();
        seen.extend(p.common_prefixes);
        match p.next_token {
            Some(t) => req.continuation = Some(t),
            None => break,
        }
    }
    assert_eq!(seen, ["keep/", "n/"]);
    faults.clear();
    wait_drained(&w);
    let root = bucket.list(&ListRequest::dir("")).await.unwrap();
    assert_eq!(root.common_prefixes, ["keep/", "n/"]);
}

/// On the test servers: the bucket deleted under the decorator (`NoSuchBucket`, a failure
/// retrying cannot cure): the upload fails for good, named with the S3 error, the change
/// stays in the journal, and once the bucket is made again a retry uploads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_bucket_fails_uploads_for_good_until_it_is_back() {
    use objfs_store::s3::{create_bucket, delete_bucket, set_versioning, S3Store};
    let servers = [
        objfs_tests::s3_fixture::moto(),
        objfs_tests::s3_fixture::garage(),
    ];
    for server in servers.into_iter().flatten() {
        let cfg = server.config_of(Some(&objfs_tests::s3_fixture::unique_name("wb-gone")), "");
        let make = || async {
            create_bucket(&cfg).await.expect("create the bucket");
            if server.versioned {
                set_versioning(&cfg, true).await.expect("versioning on");
            }
        };
        make().await;
        let store: Arc<dyn ObjectStore> = Arc::new(S3Store::open(cfg.clone()).await.unwrap());
        let dir = tempfile::tempdir().unwrap();
        let w = WriteBack::open(store.clone(), WriteBackConfig::new(dir.path())).unwrap();
        delete_bucket(&cfg).await.expect("delete the bucket");
        w.put("f", b"kept".to_vec().into(), PutOptions::default())
            .await
            .expect("acknowledged from the journal");
        let s = wait_settled(&w);
        assert_eq!(s.failed.len(), 1, "{}: {s:?}", server.name);
        assert!(
            s.failed[0].error.contains("NoSuchBucket"),
            "{}: {s:?}",
            server.name
        );
        assert_eq!(journal_entries(dir.path()), 1, "{}", server.name);
        assert_eq!(read(&w, "f").await, b"kept");
        make().await;
        assert_eq!(w.retry_failed(), 1);
        wait_drained(&w);
        assert_eq!(read(store.as_ref(), "f").await, b"kept", "{}", server.name);
        assert_eq!(journal_entries(dir.path()), 0, "{}", server.name);
    }
}

/// A decorator over `inner` whose uploads wait `delay` (the mount's `--upload-delay`).
fn delayed(inner: Arc<dyn ObjectStore>, dir: &std::path::Path, delay: Duration) -> WriteBack {
    let mut cfg = WriteBackConfig::new(dir);
    cfg.upload_delay = delay;
    WriteBack::open(inner, cfg).expect("open the journal")
}

/// With an upload delay, a change reaches the bucket by itself, and never before the delay
/// has passed; a drain, and an operation that must follow a key's pending changes (a version
/// delete), do not wait for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_wait_the_delay_but_a_drain_or_a_flush_of_the_key_does_not() {
    let bucket: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let dir = tempfile::tempdir().unwrap();
    let delay = Duration::from_millis(700);
    let wb = delayed(bucket.clone(), &dir.path().join("a"), delay);
    assert_eq!(wb.upload_delay(), delay);
    let put_at = std::time::Instant::now();
    wb.put("a", b"1".to_vec().into(), PutOptions::default())
        .await
        .unwrap();
    let arrived = loop {
        if bucket.head("a", None).await.is_ok() {
            break std::time::Instant::now();
        }
        assert!(put_at.elapsed() < Duration::from_secs(60), "never uploaded");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(
        arrived - put_at >= delay,
        "uploaded {:?} after the put",
        arrived - put_at
    );
    assert_eq!(read(bucket.as_ref(), "a").await, b"1");
    drop(wb);

    // An hour's delay: the drain (an unmount) sends everything now.
    let wb = delayed(
        bucket.clone(),
        &dir.path().join("b"),
        Duration::from_secs(3600),
    );
    for k in ["b1", "b2"] {
        wb.put(k, b"2".to_vec().into(), PutOptions::default())
            .await
            .unwrap();
    }
    assert!(bucket.head("b1", None).await.is_err());
    wait_drained(&wb);
    assert_eq!(read(bucket.as_ref(), "b2").await, b"2");

    // A version delete waits for the key's pending changes: they go at once.
    let v = wb
        .put("c", b"3".to_vec().into(), PutOptions::default())
        .await
        .unwrap()
        .version;
    tokio::time::timeout(Duration::from_secs(60), wb.delete_version("c", v))
        .await
        .expect("the version delete waited for the upload delay")
        .unwrap();
    assert!(bucket.head("c", None).await.is_err());
    assert_eq!(wb.summary().changes, 0);
}

/// A journal left by a mount that ended (a crash) is uploaded by the next open without the
/// delay: its changes already waited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_journal_does_not_wait_the_delay() {
    let bucket: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let faults = Arc::new(FaultStore::new(bucket.clone()));
    faults.add(Rule::always(Op::Put, Fault::Fail { retryable: true }));
    let dir = tempfile::tempdir().unwrap();
    {
        let wb = delayed(faults.clone(), dir.path(), Duration::ZERO);
        wb.put("r", b"left".to_vec().into(), PutOptions::default())
            .await
            .unwrap();
    }
    faults.clear();
    let wb = delayed(bucket.clone(), dir.path(), Duration::from_secs(3600));
    let start = std::time::Instant::now();
    while bucket.head("r", None).await.is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the replayed change waited: {:?}",
            wb.summary()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(read(bucket.as_ref(), "r").await, b"left");
}

/// On Garage (no versioning), with an upload delay: a file written under a temporary name and
/// renamed, and a file written and deleted, within the delay never reach the bucket as those
/// writes (uploads of the temporary names are refused for good here, which would leave them
/// failed in the journal); the bucket ends with the renamed files only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn within_the_delay_temporary_files_never_reach_a_bucket_without_versioning() {
    let Some(server) = objfs_tests::s3_fixture::garage() else {
        return;
    };
    let bucket: Arc<dyn ObjectStore> = Arc::new(server.fresh_store("wb-delay").await);
    let faults = Arc::new(FaultStore::new(bucket.clone()));
    faults.add(Rule::always(Op::Put, Fault::Refuse).on_prefix(".t"));
    faults.add(Rule::always(Op::Copy, Fault::Refuse).on_prefix(".t"));
    faults.add(Rule::always(Op::Put, Fault::Refuse).on_prefix("scratch"));
    let dir = tempfile::tempdir().unwrap();
    let wb = delayed(faults.clone(), dir.path(), Duration::from_secs(3600));
    for i in 0..5 {
        let tmp = format!(".t{i}");
        wb.put(&tmp, b"data".to_vec().into(), PutOptions::default())
            .await
            .unwrap();
        wb.rename(&tmp, &format!("f{i}"), RenameOptions::default())
            .await
            .unwrap();
    }
    wb.put("scratch", b"x".to_vec().into(), PutOptions::default())
        .await
        .unwrap();
    wb.delete("scratch").await.unwrap();
    wait_drained(&wb);
    assert!(wb.summary().failed.is_empty(), "{:?}", wb.summary());
    let want: Vec<String> = (0..5).map(|i| format!("f{i}")).collect();
    assert_eq!(keys(bucket.as_ref()).await, want);
    for k in &want {
        assert_eq!(read(bucket.as_ref(), k).await, b"data");
    }
}

/// An unlink of an uploaded file is journaled like a write: it returns while the bucket
/// refuses deletes, reads see the file gone at once, and the DELETE reaches the bucket once
/// it answers; a delete of a key that does not exist makes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_of_uploaded_files_are_journaled() {
    let bucket: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    bucket
        .put("up", b"old".to_vec().into(), PutOptions::default())
        .await
        .unwrap();
    let faults = Arc::new(FaultStore::new(bucket.clone()));
    faults.add(Rule::always(Op::Delete, Fault::Fail { retryable: true }));
    let dir = tempfile::tempdir().unwrap();
    let wb = delayed(faults.clone(), dir.path(), Duration::ZERO);
    assert!(wb.delete("up").await.unwrap().is_some());
    assert!(wb.delete("never").await.unwrap().is_none());
    assert!(wb.head("up", None).await.is_err());
    assert!(keys(&wb).await.is_empty());
    assert_eq!(wb.summary().changes, 1);
    assert!(bucket.head("up", None).await.is_ok());
    faults.clear();
    wait_drained(&wb);
    assert!(bucket.head("up", None).await.is_err());
    let versions = bucket
        .list_versions(&objfs_store::ListVersionsRequest::default())
        .await
        .unwrap();
    assert!(
        versions.versions.iter().all(|v| v.key == "up"),
        "a marker for a key that never existed: {versions:?}"
    );
}
