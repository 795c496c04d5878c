//! Tests of the vendored sled's `apply_batch` (the patch that applies a batch's writes leaf by
//! leaf, one copy and one `replace` per leaf: `store/vendor/sled/PATCHES.md`). sled's own
//! tests are not built here (a vendored crate is not a workspace member), and every row the
//! store checkpoints goes through this path, so it is checked against a `BTreeMap`: random
//! batches of inserts, overwrites and removes (leaves split and merge under them), sled's
//! cache small enough that leaves are paged out and read back, the tree reopened from disk,
//! and readers running while batches land.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use proptest::prelude::*;

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// sled opened on `dir` as the store opens it (also used by `sled_finger_tests`).
pub(super) fn open(dir: &std::path::Path) -> sled::Db {
    // The store's own settings (`open.rs`), with a cache small enough to page leaves out.
    let config = sled::Config::new()
        .path(dir)
        .cache_capacity(256 << 10)
        .flush_every_ms(None)
        .mode(sled::Mode::HighThroughput);
    // sled 0.34 releases its file lock from a background thread after the last handle is
    // dropped: a reopen right after may find it still held (`open.rs` waits the same way).
    for _ in 0..500 {
        match config.open() {
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return other.expect("open sled"),
        }
    }
    panic!("sled's lock on {} was never released", dir.display());
}

/// Keys of several shapes: short (stored inline in an `IVec`), long, sharing long prefixes
/// (sled encodes keys relative to their leaf's prefix).
fn key(n: u16) -> Vec<u8> {
    match n % 3 {
        0 => format!("k{n:05}").into_bytes(),
        1 => format!("v/some/longer/shared/prefix/{n:05}/of/a/version/row").into_bytes(),
        _ => {
            let mut k = vec![b'c', 0];
            k.extend_from_slice(&n.to_be_bytes());
            k
        }
    }
}

fn value(n: u16, generation: u32, len: usize) -> Vec<u8> {
    let mut v = format!("{n}:{generation}:").into_bytes();
    v.resize(v.len() + len, (generation % 251) as u8);
    v
}

fn apply(db: &sled::Db, model: &mut Model, ops: &[(u16, Option<usize>)], generation: u32) {
    let mut batch = sled::Batch::default();
    // A batch keeps the last write of a key, as the model does.
    for (n, op) in ops {
        let k = key(*n);
        match op {
            Some(len) => {
                let v = value(*n, generation, *len);
                batch.insert(k.clone(), v.clone());
                model.insert(k, v);
            }
            None => {
                batch.remove(k.clone());
                model.remove(&k);
            }
        }
    }
    db.apply_batch(batch).expect("apply_batch");
}

fn check(db: &sled::Db, model: &Model) {
    let got: Vec<(Vec<u8>, Vec<u8>)> = db
        .iter()
        .map(|r| {
            let (k, v) = r.expect("iter");
            (k.to_vec(), v.to_vec())
        })
        .collect();
    let want: Vec<(Vec<u8>, Vec<u8>)> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    assert_eq!(got.len(), want.len(), "row count");
    assert!(got == want, "sled's rows differ from the model's");
    for (k, v) in model.iter().step_by(7) {
        assert_eq!(db.get(k).expect("get").as_deref(), Some(&v[..]));
    }
    let back: Vec<Vec<u8>> = db
        .iter()
        .rev()
        .map(|r| r.expect("rev").0.to_vec())
        .collect();
    assert!(back.iter().eq(model.keys().rev()), "reverse order");
}

fn op() -> impl Strategy<Value = (u16, Option<usize>)> {
    (
        0u16..3_000,
        prop_oneof![3 => (0usize..300).prop_map(Some), 1 => Just(None)],
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random batches, each checked against the model, then the tree reopened from disk.
    #[test]
    fn batches_match_a_model(
        batches in prop::collection::vec(prop::collection::vec(op(), 1..900), 1..12)
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut model = Model::new();
        {
            let db = open(dir.path());
            for (g, ops) in batches.iter().enumerate() {
                apply(&db, &mut model, ops, g as u32);
                check(&db, &model);
            }
            db.flush().expect("flush");
        }
        let db = open(dir.path());
        check(&db, &model);
    }
}

/// Long runs in one leaf and whole leaves emptied: ascending inserts of many keys, every
/// other key removed, the rest overwritten, a range emptied; across a reopen.
#[test]
fn dense_runs_splits_and_merges() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut model = Model::new();
    {
        let db = open(dir.path());
        for chunk in (0u16..20_000).collect::<Vec<_>>().chunks(4_096) {
            let ops: Vec<_> = chunk
                .iter()
                .map(|&n| (n, Some(40 + (n as usize % 90))))
                .collect();
            apply(&db, &mut model, &ops, 1);
        }
        check(&db, &model);
        let ops: Vec<_> = (0u16..20_000).step_by(2).map(|n| (n, None)).collect();
        apply(&db, &mut model, &ops, 2);
        check(&db, &model);
        let ops: Vec<_> = (1u16..20_000).step_by(2).map(|n| (n, Some(8))).collect();
        apply(&db, &mut model, &ops, 3);
        let ops: Vec<_> = (5_000u16..15_000).map(|n| (n, None)).collect();
        apply(&db, &mut model, &ops, 4);
        // No-op writes: the same values again, and removes of absent keys.
        let ops: Vec<_> = (1u16..5_000).step_by(2).map(|n| (n, Some(8))).collect();
        apply(&db, &mut model, &ops, 3);
        let ops: Vec<_> = (6_000u16..7_000).map(|n| (n, None)).collect();
        apply(&db, &mut model, &ops, 5);
        check(&db, &model);
        db.flush().expect("flush");
    }
    let db = open(dir.path());
    check(&db, &model);
}

/// Readers iterate and get while a writer applies batches: every scan is in order and every
/// value read is one that was written for its key; the end state is the model's.
#[test]
fn readers_during_batches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path());
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (db, done) = (db.clone(), done.clone());
            std::thread::spawn(move || {
                let mut scans = 0;
                while !done.load(Ordering::Relaxed) || scans == 0 {
                    let mut last: Option<Vec<u8>> = None;
                    for r in db.iter() {
                        let (k, v) = r.expect("iter");
                        if let Some(l) = &last {
                            assert!(l.as_slice() < &k[..], "scan out of order");
                        }
                        let digits = v.split(|&b| b == b':').next().unwrap_or_default();
                        let n: u16 = std::str::from_utf8(digits)
                            .ok()
                            .and_then(|s| s.parse().ok())
                            .expect("a value written by the test");
                        assert_eq!(key(n), k.to_vec(), "value under the wrong key");
                        last = Some(k.to_vec());
                    }
                    scans += 1;
                }
                scans
            })
        })
        .collect();
    let mut model = Model::new();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for g in 0..60u32 {
        let ops: Vec<_> = (0..700)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let n = (seed % 4_000) as u16;
                (
                    n,
                    if seed % 5 == 0 {
                        None
                    } else {
                        Some((seed % 200) as usize)
                    },
                )
            })
            .collect();
        apply(&db, &mut model, &ops, g);
    }
    done.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().expect("reader") > 0);
    }
    check(&db, &model);
}

/// The store's checkpoint pattern: each batch appends rows at the end of one key region (the
/// `e` table, keyed by a growing id), inserts one row per key into another (`v`: key, 0,
/// version) and overwrites a third (`c`), while readers scan the `v` region. Every scan is
/// strictly increasing and holds every `v` row applied before it began.
#[test]
fn scans_during_batches_spanning_regions() {
    fn v_key(k: u32, version: u32) -> Vec<u8> {
        let mut out = format!("vp/{:02}/k{k:06}", k % 30).into_bytes();
        out.push(0);
        out.extend_from_slice(&(u32::MAX - version).to_be_bytes());
        out
    }
    const KEYS: u32 = 6_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path());
    let applied = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (db, done, applied) = (db.clone(), done.clone(), applied.clone());
            std::thread::spawn(move || {
                let mut scans = 0;
                while !done.load(Ordering::Relaxed) || scans == 0 {
                    let before = applied.load(Ordering::SeqCst);
                    let mut last: Option<Vec<u8>> = None;
                    let mut n = 0;
                    for r in db.range(b"v".to_vec()..b"w".to_vec()) {
                        let (k, _) = r.expect("iter");
                        if let Some(l) = &last {
                            assert!(
                                l.as_slice() < &k[..],
                                "scan {scans}: {:?} after {:?}",
                                String::from_utf8_lossy(&k),
                                String::from_utf8_lossy(l)
                            );
                        }
                        last = Some(k.to_vec());
                        n += 1;
                    }
                    assert!(
                        n >= before,
                        "scan {scans}: {n} rows, {before} applied before"
                    );
                    scans += 1;
                }
                scans
            })
        })
        .collect();
    let mut ending = 0u64;
    let mut v_rows = 0;
    for version in 0..8u32 {
        let mut order: Vec<u32> = (0..KEYS).collect();
        let mut seed = 0x2545_f491_4f6c_dd1du64 ^ version as u64;
        for i in (1..order.len()).rev() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            order.swap(i, (seed % (i as u64 + 1)) as usize);
        }
        for chunk in order.chunks(2_000) {
            let mut batch = sled::Batch::default();
            for &k in chunk {
                ending += 1;
                let mut e = b"e".to_vec();
                e.extend_from_slice(&ending.to_be_bytes());
                e.extend_from_slice(format!("p/{k:06}").as_bytes());
                batch.insert(e, vec![1u8]);
                batch.insert(v_key(k, version), vec![7u8; 40]);
                batch.insert(format!("cp/{k:06}").into_bytes(), vec![version as u8; 30]);
            }
            db.apply_batch(batch).expect("apply_batch");
            v_rows += chunk.len();
            applied.store(v_rows, Ordering::SeqCst);
        }
    }
    done.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().expect("reader") > 0);
    }
    assert_eq!(db.range(b"v".to_vec()..b"w".to_vec()).count(), v_rows);
}
