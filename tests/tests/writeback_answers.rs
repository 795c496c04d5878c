//! The write-back decorator keeping the bucket's answers (HEADs, emptiness, directory
//! listings; `store/src/writeback/recent.rs`) against a reference: random sequences of puts,
//! deletes, renames, marker creations, HEADs (for names and for opens) and whole delimited
//! listings run on the decorator (answers kept for an hour, over a memory store) and on a
//! plain memory store, every answer compared, uploads left to land at random moments (with no
//! upload delay, a few milliseconds', or an hour's: then they land at the settles). The
//! decorator is the bucket's only writer, so every kept answer must stay right through its
//! own changes, whether they are still in the journal, in flight or landed.
//!
//! Then a count of the requests that reach the bucket: after a directory was listed, a rename
//! inside it asks the bucket nothing (the source's HEAD was kept, the destination's absence
//! is in the listing), and neither does an unlink of an uploaded file.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use objfs_store::fault::{Fault, FaultStore, Op as FaultOp};
use objfs_store::memory::MemoryStore;
use objfs_store::writeback::{WriteBack, WriteBackConfig};
use objfs_store::{Body, ErrorKind, ListRequest, ObjectStore, PutOptions, RenameOptions, Result};
use proptest::prelude::*;

/// Files and markers in a few directories, so that names, prefixes and markers collide.
const KEYS: &[&str] = &[
    "a", "b", "d/", "d/x", "d/y", "d/e/", "d/e/z", "d/x.", "f/g/h", "f/", "d/e/w",
];
const DIRS: &[&str] = &["", "d/", "d/e/", "f/", "f/g/", "d/x/", "zz/"];

#[derive(Debug, Clone)]
enum Op {
    Put(usize, u8),
    Delete(usize),
    Rename(usize, usize),
    Head(usize),
    HeadForOpen(usize),
    /// A whole delimited listing, `page` entries a request.
    List(usize, usize),
    /// Let the uploads land.
    Settle,
}

fn op() -> impl Strategy<Value = Op> {
    let k = || 0..KEYS.len();
    prop_oneof![
        3 => (k(), any::<u8>()).prop_map(|(k, s)| Op::Put(k, s)),
        2 => k().prop_map(Op::Delete),
        // (A rename onto itself is refused before anything is asked; the fs never sends one.)
        2 => (k(), k()).prop_filter("two names", |(a, b)| a != b).prop_map(|(a, b)| Op::Rename(a, b)),
        3 => k().prop_map(Op::Head),
        2 => k().prop_map(Op::HeadForOpen),
        3 => (0..DIRS.len(), 1usize..4).prop_map(|(d, p)| Op::List(d, p)),
        1 => Just(Op::Settle),
    ]
}

/// What a HEAD said: the size, or the error's kind.
fn head_answer(r: Result<objfs_store::ObjectInfo>) -> std::result::Result<u64, ErrorKind> {
    r.map(|i| i.size).map_err(|e| e.kind())
}

async fn list_all(s: &dyn ObjectStore, prefix: &str, page: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut req = ListRequest {
        prefix: prefix.to_string(),
        delimiter: Some("/".into()),
        max_keys: page,
        ..Default::default()
    };
    loop {
        let p = s.list(&req).await.expect("list");
        out.extend(p.objects.into_iter().map(|o| o.key));
        out.extend(
            p.common_prefixes
                .into_iter()
                .map(|c| format!("{c} (prefix)")),
        );
        match p.next_token {
            Some(t) => req.continuation = Some(t),
            None => break,
        }
    }
    out.sort();
    out
}

fn kept(inner: Arc<dyn ObjectStore>, dir: &std::path::Path, delay: Duration) -> WriteBack {
    let mut cfg = WriteBackConfig::new(dir.join("journal"));
    cfg.upload_delay = delay;
    cfg.answer_ttl = Duration::from_secs(3600);
    cfg.open_ttl = Duration::from_secs(3600);
    WriteBack::open(inner, cfg).expect("open the journal")
}

fn settle(wb: &WriteBack) {
    assert!(
        wb.wait_drained(Duration::from_secs(60), |_| {}),
        "{:?}",
        wb.summary()
    );
}

async fn run(ops: Vec<Op>, delay: Duration) {
    let dir = tempfile::tempdir().expect("tempdir");
    let wb = kept(Arc::new(MemoryStore::new()), dir.path(), delay);
    let model = MemoryStore::new();
    let sides: [&dyn ObjectStore; 2] = [&wb, &model];
    for (step, op) in ops.iter().enumerate() {
        let what = format!("step {step}: {op:?}");
        match op {
            Op::Put(k, seed) => {
                let body = vec![*seed; usize::from(*seed % 7)];
                for s in sides {
                    let r = s.put(KEYS[*k], Body::from(body.clone()), PutOptions::default());
                    r.await.unwrap_or_else(|e| panic!("{what}: {e}"));
                }
            }
            Op::Delete(k) => {
                let a = wb.delete(KEYS[*k]).await.map(|v| v.is_some());
                let b = model.delete(KEYS[*k]).await.map(|v| v.is_some());
                assert_eq!(a.map_err(|e| e.kind()), b.map_err(|e| e.kind()), "{what}");
            }
            Op::Rename(a, b) => {
                let opts = RenameOptions::default();
                let x = wb.rename(KEYS[*a], KEYS[*b], opts.clone()).await;
                let y = model.rename(KEYS[*a], KEYS[*b], opts).await;
                assert_eq!(head_answer(x), head_answer(y), "{what}");
            }
            Op::Head(k) => {
                let a = head_answer(wb.head(KEYS[*k], None).await);
                let b = head_answer(model.head(KEYS[*k], None).await);
                assert_eq!(a, b, "{what}");
            }
            Op::HeadForOpen(k) => {
                let a = head_answer(wb.head_for_open(KEYS[*k]).await);
                let b = head_answer(model.head(KEYS[*k], None).await);
                assert_eq!(a, b, "{what}");
            }
            Op::List(d, page) => {
                let a = list_all(&wb, DIRS[*d], *page).await;
                let b = list_all(&model, DIRS[*d], *page).await;
                assert_eq!(a, b, "{what}");
            }
            Op::Settle => settle(&wb),
        }
    }
    settle(&wb);
    // After everything landed, the same answers again, from what was kept.
    for k in KEYS {
        let a = head_answer(wb.head(k, None).await);
        let b = head_answer(model.head(k, None).await);
        assert_eq!(a, b, "after settling: HEAD {k}");
    }
    for d in DIRS {
        assert_eq!(
            list_all(&wb, d, 2).await,
            list_all(&model, d, 2).await,
            "{d}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: objfs_tests::model_cases(), ..ProptestConfig::default() })]
    #[test]
    fn kept_answers_agree_with_the_bucket(
        ops in prop::collection::vec(op(), 1..60),
        delay_ms in prop_oneof![Just(0u64), Just(1), Just(3), Just(3_600_000)],
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(run(ops, Duration::from_millis(delay_ms)));
    }
}

/// After a directory was listed and its files looked up, renames inside it ask the bucket
/// nothing before they are acknowledged: the source's HEAD was kept and the destination's
/// absence is in the listing (the uploads then copy and delete).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renames_in_a_listed_directory_ask_the_bucket_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let faults = Arc::new(FaultStore::new(Arc::new(MemoryStore::new())));
    let wb = kept(faults.clone(), dir.path(), Duration::ZERO);
    for i in 0..50 {
        let body = Body::from(vec![1u8; 10]);
        wb.put(&format!("small/f{i}"), body, PutOptions::default())
            .await
            .unwrap();
    }
    settle(&wb);
    let listed: BTreeSet<String> = list_all(&wb, "small/", 1000).await.into_iter().collect();
    assert_eq!(listed.len(), 50);
    for i in 0..50 {
        wb.head(&format!("small/f{i}"), None).await.unwrap();
    }
    // From here a HEAD or a listing that reaches the bucket fails (and fails the test).
    faults.add_all(&[FaultOp::Head, FaultOp::List], Fault::Refuse);
    for i in 0..50 {
        let (src, dst) = (format!("small/f{i}"), format!("small/g{i}"));
        // What the kernel asks first: the destination's lookup (a HEAD and a listing below
        // the name), then the rename.
        let e = wb.head(&dst, None).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        let below = ListRequest {
            prefix: format!("{dst}/"),
            delimiter: Some("/".into()),
            max_keys: 1,
            ..Default::default()
        };
        assert!(wb.list(&below).await.unwrap().objects.is_empty());
        wb.rename(&src, &dst, RenameOptions::default())
            .await
            .unwrap();
    }
    assert_eq!(
        faults.injected(),
        0,
        "HEADs and listings sent to the bucket by the renames"
    );
    settle(&wb);
    faults.clear();
    let names = list_all(&wb, "small/", 1000).await;
    let want: Vec<String> = {
        let mut v: Vec<String> = (0..50).map(|i| format!("small/g{i}")).collect();
        v.sort();
        v
    };
    assert_eq!(names, want);
    // And the bucket itself agrees (listed without the decorator).
    assert_eq!(list_all(faults.as_ref(), "small/", 1000).await, want);
    // Unlinks of the uploaded files ask nothing either (the copies' answers were kept) and
    // are journaled: the DELETEs go after.
    faults.add_all(&[FaultOp::Head, FaultOp::List], Fault::Refuse);
    for k in &want {
        assert!(wb.delete(k).await.unwrap().is_some(), "{k}");
    }
    assert_eq!(
        faults.injected(),
        0,
        "HEADs and listings sent by the unlinks"
    );
    settle(&wb);
    faults.clear();
    assert!(list_all(faults.as_ref(), "small/", 1000).await.is_empty());
}
