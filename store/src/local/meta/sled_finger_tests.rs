//! Tests of the vendored sled's `Tree::first_in_with` and its `Finger` (the seek that starts
//! at the index node the last one went through: `store/vendor/sled/PATCHES.md`). A listing
//! as of a past moment seeks the version table once per key with one finger, so every answer
//! must be the one a fresh iterator gives, however stale the finger: checked against a
//! `BTreeMap` for ordered and random seeks, seeks whose answer opens the next leaf or lies
//! past an empty range, fingers kept across batches that split and merge the leaves and across
//! a reopen of the tree, and seeks racing a writer.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use proptest::prelude::*;

// The store's settings, a cache small enough to page leaves out.
use super::sled_batch_tests::open;

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// Rows shaped like the version table's: a key, 0x00, 16 bytes of inverted id; `versions`
/// rows per key, so that one key's rows span leaves.
fn row(key: u16, version: u16) -> Vec<u8> {
    let mut k = format!("v/dir/k{key:04}").into_bytes();
    k.push(0);
    k.extend_from_slice(&(u128::MAX - u128::from(version)).to_be_bytes());
    k
}

/// Where a listing's seek for `key` as of `version` starts, and where the key's rows end.
fn seek(key: u16, version: u16) -> (Vec<u8>, Vec<u8>) {
    let mut end = format!("v/dir/k{key:04}").into_bytes();
    end.push(1);
    (row(key, version), end)
}

fn put(db: &sled::Db, model: &mut Model, ops: &[(u16, u16, bool)]) {
    let mut batch = sled::Batch::default();
    for &(key, version, insert) in ops {
        let k = row(key, version);
        if insert {
            let v = format!("{key}:{version}").into_bytes();
            batch.insert(k.clone(), v.clone());
            model.insert(k, v);
        } else {
            batch.remove(k.clone());
            model.remove(&k);
        }
    }
    db.apply_batch(batch).expect("apply_batch");
}

fn want(model: &Model, lo: &[u8], hi: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    if lo >= hi {
        return None;
    }
    model
        .range(lo.to_vec()..hi.to_vec())
        .next()
        .map(|(k, v)| (k.clone(), v.clone()))
}

fn got(
    db: &sled::Db,
    finger: &mut sled::Finger,
    lo: &[u8],
    hi: &[u8],
) -> Option<(Vec<u8>, Vec<u8>)> {
    db.first_in_with(finger, lo, hi)
        .expect("first_in_with")
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
}

/// Every key's seek as of `version`, in key order, with one finger (a listing's pattern), and
/// the same seeks in reverse order; each against the model.
fn check_seeks(db: &sled::Db, model: &Model, finger: &mut sled::Finger, keys: u16, version: u16) {
    for key in (0..keys).chain((0..keys).rev()) {
        let (lo, hi) = seek(key, version);
        assert_eq!(
            got(db, finger, &lo, &hi),
            want(model, &lo, &hi),
            "key {key} as of {version}"
        );
    }
}

fn op() -> impl Strategy<Value = (u16, u16, bool)> {
    (
        0u16..60,
        0u16..120,
        prop_oneof![4 => Just(true), 1 => Just(false)],
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random batches; after each, ordered and reversed seeks with a finger kept from the
    /// batches before (stale: leaves split and merged since), and random seeks (any bounds,
    /// empty ranges included) with the same finger; then the tree reopened, the old finger
    /// still in hand.
    #[test]
    fn seeks_match_a_model(
        batches in prop::collection::vec(prop::collection::vec(op(), 1..2_000), 1..6),
        moments in prop::collection::vec(0u16..130, 1..4),
        random in prop::collection::vec((0u16..64, 0u16..130, 0u16..64, 0u16..130), 0..200),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut model = Model::new();
        let mut finger = sled::Finger::default();
        {
            let db = open(dir.path());
            for ops in &batches {
                put(&db, &mut model, ops);
                for &m in &moments {
                    check_seeks(&db, &model, &mut finger, 64, m);
                }
                for &(k1, v1, k2, v2) in &random {
                    let (lo, _) = seek(k1, v1);
                    let (hi, _) = seek(k2, v2);
                    prop_assert_eq!(got(&db, &mut finger, &lo, &hi), want(&model, &lo, &hi));
                }
            }
            db.flush().expect("flush");
        }
        let db = open(dir.path());
        for &m in &moments {
            check_seeks(&db, &model, &mut finger, 64, m);
        }
    }
}

/// Many versions of each key (a key's rows span several leaves, as in the history bench),
/// seeks as of moments whose row is at a leaf's end or past every row of the key; then most
/// versions removed (leaves merge) and the same seeks with the same finger.
#[test]
fn seeks_across_leaves_splits_and_merges() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path());
    let mut model = Model::new();
    for version in (0..200u16).step_by(2) {
        let ops: Vec<_> = (0..300u16).map(|key| (key, version, true)).collect();
        put(&db, &mut model, &ops);
    }
    let mut finger = sled::Finger::default();
    for moment in [0, 1, 57, 99, 100, 101, 198, 199, 250] {
        check_seeks(&db, &model, &mut finger, 300, moment);
    }
    // Every tenth version kept, and none below 10 for even keys: a seek as of 0..9 there
    // runs into the next key's rows, which the upper bound excludes.
    let ops: Vec<_> = (0..300u16)
        .flat_map(|key| {
            (0..200u16)
                .filter(move |v| v % 10 != 0 || (*v == 0 && key % 2 == 0))
                .map(move |v| (key, v, false))
        })
        .collect();
    put(&db, &mut model, &ops);
    for moment in [0, 5, 10, 11, 150, 199, 250] {
        check_seeks(&db, &model, &mut finger, 300, moment);
    }
    // A finger from this tree used on a fresh one (the same tree name, other pages).
    let other_dir = tempfile::tempdir().expect("tempdir");
    let other = open(other_dir.path());
    let mut other_model = Model::new();
    put(&other, &mut other_model, &[(7, 3, true), (150, 1, true)]);
    check_seeks(&other, &other_model, &mut finger, 300, 4);
    // And on another tree of the first database (the finger names its tree: ignored here).
    let tree = db.open_tree("another").expect("open_tree");
    let mut batch = sled::Batch::default();
    let mut tree_model = Model::new();
    for key in (0..300u16).step_by(3) {
        let (k, v) = (row(key, 1), format!("{key}:1").into_bytes());
        batch.insert(k.clone(), v.clone());
        tree_model.insert(k, v);
    }
    tree.apply_batch(batch).expect("apply_batch");
    check_seeks(&db, &model, &mut finger, 300, 150);
    for key in (0..300u16).chain((0..300).rev()) {
        let (lo, hi) = seek(key, 150);
        let got = tree
            .first_in_with(&mut finger, &lo, &hi)
            .expect("first_in_with")
            .map(|(k, v)| (k.to_vec(), v.to_vec()));
        assert_eq!(
            got,
            want(&tree_model, &lo, &hi),
            "key {key} in another tree"
        );
    }
}

/// Seeks with one finger while a writer adds and removes versions of other moments: every
/// answer is a row of the key sought, at or below the moment, with its own value; the rows
/// of the moments sought are never touched, so each seek's answer is known.
#[test]
fn seeks_during_batches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path());
    let mut model = Model::new();
    // Even versions stay; odd ones come and go.
    for version in (0..60u16).step_by(2) {
        let ops: Vec<_> = (0..400u16).map(|key| (key, version, true)).collect();
        put(&db, &mut model, &ops);
    }
    let stable = model.clone();
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (db, done, stable) = (db.clone(), done.clone(), stable.clone());
            std::thread::spawn(move || {
                let mut finger = sled::Finger::default();
                let mut rounds = 0;
                while !done.load(Ordering::Relaxed) || rounds == 0 {
                    for key in 0..400u16 {
                        // As of an even moment: the answer is that moment's row whatever the
                        // writer does to the odd ones around it.
                        let moment = 2 * ((key + rounds) % 30);
                        let (lo, hi) = seek(key, moment);
                        let (k, v) = got(&db, &mut finger, &lo, &hi).expect("a stable row");
                        assert_eq!(k, lo, "key {key} as of {moment}");
                        assert_eq!(Some(&v), stable.get(&k));
                    }
                    rounds += 1;
                }
                rounds
            })
        })
        .collect();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..40 {
        let ops: Vec<_> = (0..1_500)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let key = (seed % 400) as u16;
                let version = 2 * ((seed >> 20) % 60) as u16 + 1;
                (key, version, seed % 3 != 0)
            })
            .collect();
        put(&db, &mut model, &ops);
    }
    done.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().expect("reader") > 0);
    }
    let mut finger = sled::Finger::default();
    for moment in [0, 1, 59, 60, 61, 119, 200] {
        check_seeks(&db, &model, &mut finger, 400, moment);
    }
}
