//! Tests of the metadata's commit path: the filter of new keys and batched changes, through
//! `Meta` itself (no volumes: versions without extents).

use std::path::Path;

use super::log::{read_segment, Record};
use super::Meta;
use crate::local::records::VersionRecord;
use crate::types::{Change, Condition, CopyOptions};
use crate::ErrorKind;

fn open(dir: &Path) -> Meta {
    let m = Meta::open(&dir.join("meta"), &dir.join("wal")).unwrap();
    m.finish_recovery(|_, _| true).unwrap();
    m
}

fn version(size: u64) -> VersionRecord {
    VersionRecord {
        delete_marker: false,
        size,
        etag: format!("e{size}"),
        metadata: Default::default(),
        extents: Vec::new(),
    }
}

fn put(m: &Meta, key: &str, cond: Condition) -> crate::Result<()> {
    m.commit_put(key, Vec::new(), &version(1), cond).map(|_| ())
}

/// Every existing key is seen as existing (its condition fails, the counters do not count it
/// twice) and every new key as new: with the filter built at open, unbuilt (too many keys at
/// open), and built by a checkpoint.
#[test]
fn new_and_existing_keys_are_told_apart_whatever_the_filter_knows() {
    let dir = tempfile::tempdir().unwrap();
    let m = open(dir.path());
    for i in 0..30 {
        put(&m, &format!("k{i}"), Condition::None).unwrap();
    }
    m.checkpoint_log(|| m.flush()).unwrap();
    let check = |m: &Meta, existing: usize| {
        for i in 0..existing {
            let e = put(m, &format!("k{i}"), Condition::IfNotExists).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::PreconditionFailed, "k{i}");
        }
        assert_eq!(m.stats().objects, existing as u64);
        put(m, &format!("k{existing}"), Condition::IfNotExists).unwrap();
        assert_eq!(m.stats().objects, existing as u64 + 1);
        // Overwrites of keys in sled do not count as new objects.
        put(m, "k0", Condition::None).unwrap();
        assert_eq!(m.stats().objects, existing as u64 + 1);
    };
    check(&m, 30);
    m.mark_clean().unwrap();
    drop(m);
    // More keys than the filter is built from at open: sled is read until a checkpoint.
    let m = open(dir.path());
    check(&m, 31);
    m.checkpoint_log(|| m.flush()).unwrap();
    check(&m, 32);
    m.mark_clean().unwrap();
}

/// A clean shutdown saves the filter and the next open reads it instead of scanning sled (in
/// a large store that scan ran at the first checkpoint, over every key). An open after an
/// unclean end, or with a damaged file, does not use it; every open removes the file.
#[test]
fn a_clean_shutdown_hands_the_filter_to_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wal").join("keyfilter");
    let reopen = || {
        let m = open(dir.path());
        m.mark_open().unwrap();
        m
    };
    let known = |m: &Meta, n: usize, new: &str| {
        for i in 0..n {
            let e = put(m, &format!("k{i}"), Condition::IfNotExists).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::PreconditionFailed, "k{i}");
        }
        put(m, new, Condition::IfNotExists).unwrap();
    };
    let m = reopen();
    for i in 0..30 {
        put(&m, &format!("k{i}"), Condition::None).unwrap();
    }
    m.mark_clean().unwrap();
    drop(m);
    let saved = std::fs::read(&file).expect("a clean shutdown saves the filter");
    // 30 keys are more than an open scans (16 in tests): only the saved filter is ready now.
    let m = reopen();
    assert!(m.filter_ready(), "the saved filter is used");
    assert!(!file.exists(), "the open removed it");
    known(&m, 30, "new-a");
    assert_eq!(m.stats().objects, 31);
    for i in 30..40 {
        put(&m, &format!("k{i}"), Condition::None).unwrap();
    }
    m.checkpoint_log(|| m.flush()).unwrap();
    drop(m); // no clean shutdown
             // An old file put back after an unclean end is not used (the keys since are not in it).
    std::fs::write(&file, &saved).unwrap();
    let m = reopen();
    assert!(
        !m.filter_ready(),
        "a file from before an unclean end is not used"
    );
    assert!(!file.exists());
    known(&m, 40, "new-b");
    m.checkpoint_log(|| m.flush()).unwrap();
    assert!(m.filter_ready(), "the checkpoint built it");
    m.mark_clean().unwrap();
    drop(m);
    // A damaged file is not used either.
    let mut bad = std::fs::read(&file).unwrap();
    let mid = bad.len() / 2;
    bad[mid] ^= 1;
    std::fs::write(&file, &bad).unwrap();
    let m = reopen();
    assert!(!m.filter_ready(), "a damaged file is not used");
    known(&m, 40, "new-c");
    m.mark_clean().unwrap();
}

/// The times recorded beside keys are found wherever their rows are (the in-memory tables,
/// sled) and whatever the filter knows (saved by a clean shutdown, unbuilt after an unclean
/// end, rebuilt by a checkpoint): the filter covers the `t` table, and must never deny one of
/// its rows. A key without times reads as none.
#[test]
fn recorded_times_are_found_whatever_the_filter_knows() {
    use crate::types::KeyTimes;
    use std::time::{Duration, UNIX_EPOCH};
    let dir = tempfile::tempdir().unwrap();
    let at = |i: u64| UNIX_EPOCH + Duration::from_secs(1_700_000_000 + i);
    let reopen = || {
        let m = open(dir.path());
        m.mark_open().unwrap();
        m
    };
    let check = |m: &Meta, n: u64, when: &str| {
        for i in 0..n {
            let t = m.key_times(&format!("k{i}")).unwrap();
            assert_eq!(t.accessed, Some(at(i)), "k{i} {when}");
        }
        for i in n..n + 20 {
            let t = m.key_times(&format!("k{i}")).unwrap();
            assert_eq!(t, KeyTimes::default(), "k{i} has no times {when}");
        }
    };
    let m = reopen();
    for i in 0..30 {
        put(&m, &format!("k{i}"), Condition::None).unwrap();
        let times = KeyTimes {
            accessed: Some(at(i)),
            changed: None,
        };
        m.set_key_times(&format!("k{i}"), times).unwrap();
    }
    check(&m, 30, "in the in-memory tables");
    m.checkpoint_log(|| m.flush()).unwrap();
    check(&m, 30, "in sled");
    m.mark_clean().unwrap();
    drop(m);
    let m = reopen();
    assert!(m.filter_ready(), "the saved filter is used");
    check(&m, 30, "with the saved filter");
    let times = KeyTimes {
        accessed: Some(at(30)),
        changed: None,
    };
    m.set_key_times("k30", times).unwrap();
    m.checkpoint_log(|| m.flush()).unwrap();
    check(&m, 31, "after a checkpoint added one");
    drop(m); // no clean shutdown: the next open scans (more rows than it scans in tests)
    let m = reopen();
    assert!(!m.filter_ready());
    check(&m, 31, "with no filter");
    put(&m, "other", Condition::None).unwrap(); // a checkpoint with nothing to do builds nothing
    m.checkpoint_log(|| m.flush()).unwrap();
    assert!(m.filter_ready(), "the checkpoint built it");
    check(&m, 31, "with the rebuilt filter");
    m.mark_clean().unwrap();
}

/// A batch of changes is one log record: replayed whole after the process dies.
#[test]
fn a_batch_of_changes_is_one_record_and_replays_whole() {
    let dir = tempfile::tempdir().unwrap();
    let m = open(dir.path());
    let mut vids = Vec::new();
    for i in 0..5 {
        vids.push(
            m.commit_put(&format!("k{i}"), Vec::new(), &version(i), Condition::None)
                .unwrap(),
        );
    }
    m.checkpoint_log(|| m.flush()).unwrap();
    let changes: Vec<Change> = (0..5)
        .map(|i| match i {
            0 | 1 => Change::DeleteIf {
                key: format!("k{i}"),
                condition: Condition::IfVersion(vids[i as usize].id()),
            },
            2 => Change::DeleteIf {
                key: "k2".into(),
                condition: Condition::IfNotExists,
            },
            _ => Change::Copy {
                src: format!("k{i}"),
                dst: format!("c{i}"),
                opts: CopyOptions::default(),
            },
        })
        .collect();
    let out = m.commit_changes(&changes).unwrap();
    assert!(out[0].as_ref().unwrap().is_some() && out[1].as_ref().unwrap().is_some());
    assert_eq!(
        out[2].as_ref().unwrap_err().kind(),
        ErrorKind::PreconditionFailed
    );
    assert!(out[3].is_ok() && out[4].is_ok());
    let stats = m.stats();
    assert_eq!(stats.objects, 5);
    // One record in the log since the checkpoint.
    let dir_log = m.tables.log_dir();
    let ids = dir_log.list().unwrap();
    let batches: usize = ids
        .iter()
        .map(|&id| {
            read_segment(id, &dir_log.read(id).unwrap())
                .records
                .iter()
                .filter(|r| matches!(r, Record::Batch(_)))
                .count()
        })
        .sum();
    assert_eq!(batches, 1);
    // The process dies (no checkpoint, no clean close): the record is replayed whole.
    drop(m);
    let m = open(dir.path());
    assert!(m.current("k0").unwrap().is_none() && m.current("k1").unwrap().is_none());
    assert!(m.current("k2").unwrap().is_some());
    assert_eq!(m.current("c3").unwrap().unwrap().size, 3);
    assert_eq!(m.current("c4").unwrap().unwrap().size, 4);
    assert_eq!(m.recount_stats().unwrap(), stats);
}

/// The live keys a scan of the current table yields, from `from`, seeking to each of `seeks`
/// once the scan passes the key before it.
fn scan_current(m: &Meta, from: &str, seeks: &[&str]) -> Vec<String> {
    use crate::local::records::{current_key, table};
    let mut it = m.range(current_key(from), Some(vec![table::CURRENT + 1]));
    let mut seeks = seeks.iter().peekable();
    let mut out = Vec::new();
    while let Some(row) = it.next() {
        let (k, _) = row.unwrap();
        let key = String::from_utf8(k[1..].to_vec()).unwrap();
        out.push(key.clone());
        if let Some(s) = seeks.next_if(|s| key.as_str() < **s) {
            it.seek(current_key(s));
        }
    }
    out
}

/// Scans read the memory tables a window at a time: across many windows, rows of the tables
/// replace sled's, removals hide them, and seeks past a window land where they should.
#[test]
fn scans_merge_tables_and_sled_across_windows() {
    let dir = tempfile::tempdir().unwrap();
    let m = open(dir.path());
    let mut live = std::collections::BTreeSet::new();
    for i in 0..2000 {
        let k = format!("k{i:05}");
        put(&m, &k, Condition::None).unwrap();
        live.insert(k);
    }
    m.checkpoint_log(|| m.flush()).unwrap();
    // Now in the active table only: removals, new keys between sled's, rewrites.
    for i in 0..2000 {
        let k = format!("k{i:05}");
        if i % 3 == 0 {
            m.commit_delete(&k, &Condition::None).unwrap();
            live.remove(&k);
        }
        if i % 5 == 0 {
            let n = format!("k{i:05}n");
            put(&m, &n, Condition::None).unwrap();
            live.insert(n);
        }
        if i % 7 == 1 {
            put(&m, &k, Condition::None).unwrap();
            live.insert(k);
        }
    }
    let all: Vec<String> = live.iter().cloned().collect();
    assert_eq!(scan_current(&m, "", &[]), all);
    let from: Vec<String> = live.range("k00700".to_string()..).cloned().collect();
    assert_eq!(scan_current(&m, "k00700", &[]), from);
    // Seeks within the first window and far past several windows, against the same walk of
    // the model.
    let seeks = ["k00010", "k01500", "k01990"];
    let mut want = Vec::new();
    let mut next = live.iter().next().cloned();
    let mut targets = seeks.iter().peekable();
    while let Some(k) = next {
        want.push(k.clone());
        next = match targets.next_if(|s| k.as_str() < **s) {
            Some(s) => live.range(s.to_string()..).next().cloned(),
            None => live
                .range((std::ops::Bound::Excluded(k), std::ops::Bound::Unbounded))
                .next()
                .cloned(),
        };
    }
    assert!(want.len() > 10, "{want:?}");
    assert_eq!(scan_current(&m, "", &seeks), want);
}

/// Checkpoints move rows from the memory tables into sled while a scan runs: every key that was
/// live before the scan started is still seen exactly once, in order.
#[test]
fn a_scan_misses_no_row_while_checkpoints_move_rows() {
    let dir = tempfile::tempdir().unwrap();
    let m = std::sync::Arc::new(open(dir.path()));
    let mut want = Vec::new();
    for i in 0..3000 {
        let k = format!("k{i:05}");
        put(&m, &k, Condition::None).unwrap();
        want.push(k);
        if i == 1000 {
            m.checkpoint_log(|| m.flush()).unwrap();
        }
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mover = {
        let (m, stop) = (m.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                put(&m, &format!("z{n:06}"), Condition::None).unwrap();
                if n % 50 == 0 {
                    m.checkpoint_log(|| m.flush()).unwrap();
                }
                n += 1;
            }
        })
    };
    for _ in 0..5 {
        let rows = m.range(
            crate::local::records::current_key("k"),
            Some(crate::local::records::current_key("l")),
        );
        let mut got = Vec::new();
        for row in rows {
            got.push(String::from_utf8(row.unwrap().0[1..].to_vec()).unwrap());
            if got.len() % 100 == 0 {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        assert_eq!(got, want);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    mover.join().unwrap();
}

/// A pinned view holds the rows of the last commit before it, from the tables and sled,
/// whatever commits after it; and `verify_rollups` (which counts from such a view) agrees
/// with the maintained rollups exactly while commits and checkpoints go on.
#[test]
fn a_pinned_view_is_one_commit_and_verify_agrees_while_commits_go_on() {
    use crate::local::records::{current_key, table};
    let dir = tempfile::tempdir().unwrap();
    let m = std::sync::Arc::new(open(dir.path()));
    for i in 0..600 {
        put(&m, &format!("d{}/k{i:04}", i % 7), Condition::None).unwrap();
    }
    m.checkpoint_log(|| m.flush()).unwrap();
    for i in (0..600).step_by(4) {
        m.commit_delete(&format!("d{}/k{i:04}", i % 7), &Condition::None)
            .unwrap();
    }
    put(&m, "d0/new", Condition::None).unwrap();
    let current = |rows: Vec<crate::Result<(sled::IVec, sled::IVec)>>| -> Vec<String> {
        rows.into_iter()
            .map(|r| String::from_utf8(r.unwrap().0[1..].to_vec()).unwrap())
            .collect()
    };
    let all = || m.range(current_key(""), Some(vec![table::CURRENT + 1]));
    let want = current(all().collect());
    assert_eq!(want.len(), 600 - 150 + 1);
    {
        let view = m.tables.pin();
        put(&m, "d0/later", Condition::None).unwrap();
        m.commit_delete("d1/k0001", &Condition::None).unwrap();
        let seen = current(
            view.range(current_key(""), Some(vec![table::CURRENT + 1]))
                .collect(),
        );
        assert_eq!(seen, want);
        assert_ne!(current(all().collect()), want);
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let made = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let writer = {
        let (m, stop, made) = (m.clone(), stop.clone(), made.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                made.store(n, std::sync::atomic::Ordering::Relaxed);
                let k = format!("d{}/w{}", n % 5, n % 300);
                if n % 3 == 2 {
                    m.commit_delete(&k, &Condition::None).unwrap();
                } else {
                    put(&m, &k, Condition::None).unwrap();
                }
                if n % 97 == 0 {
                    m.checkpoint_log(|| m.flush()).unwrap();
                }
                n += 1;
            }
            n
        })
    };
    for p in ["", "d0/", "d3/", "", "d1/"] {
        let c = m.verify_rollups(p).unwrap();
        assert_eq!(c.mismatch_count, 0, "{p:?}: {:?}", c.mismatches);
        assert!(c.versions > 0 && c.rows > 0);
    }
    // On a loaded machine the writer may not have run yet: let it make some commits (the
    // verifies above may then have raced fewer of them, never none across the whole test).
    while made.load(std::sync::atomic::Ordering::Relaxed) < 200 && !writer.is_finished() {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(m.verify_rollups("").unwrap().mismatch_count, 0);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(writer.join().unwrap() > 0);
    assert_eq!(m.verify_rollups("").unwrap().mismatch_count, 0);
}

/// `get_sorted` gives every key what `get` gives it, in any order, with duplicates, over rows
/// in sled and in the tables, present and absent, close together (steps) and far apart
/// (seeks), current rows the filter rules out included.
#[test]
fn a_sorted_get_gives_what_gets_give() {
    use crate::local::records::{current_key, version_key};
    let dir = tempfile::tempdir().unwrap();
    let m = open(dir.path());
    for i in 0..200 {
        put(&m, &format!("k{i:03}"), Condition::None).unwrap();
    }
    m.checkpoint_log(|| m.flush()).unwrap();
    // Newer versions, deletes and fresh keys in the tables, over the rows in sled.
    for i in (0..200).step_by(3) {
        put(&m, &format!("k{i:03}"), Condition::None).unwrap();
    }
    for i in (0..200).step_by(7) {
        m.commit_delete(&format!("k{i:03}"), &Condition::None)
            .unwrap();
    }
    for i in 200..230 {
        put(&m, &format!("k{i:03}"), Condition::None).unwrap();
    }
    let mut keys = Vec::new();
    for i in (0..260).step_by(2) {
        let key = format!("k{i:03}");
        keys.push(current_key(&key));
        if let Some((vid, _)) = m.newest(&key).unwrap() {
            keys.push(version_key(&key, vid));
            keys.push(version_key(
                &key,
                crate::local::version::LocalVersion(vid.0 + 1),
            ));
        }
    }
    // Far apart: one key in 40 (seeks), and a duplicate.
    let sparse: Vec<Vec<u8>> = keys.iter().step_by(40).cloned().collect();
    for set in [keys.clone(), sparse] {
        let mut set = set;
        set.push(set[0].clone());
        set.reverse();
        set.swap(1, 5);
        let expected: Vec<_> = set.iter().map(|k| m.tables.get(k).unwrap()).collect();
        assert!(expected.iter().any(Option::is_some) && expected.iter().any(Option::is_none));
        assert_eq!(m.tables.get_sorted(&set).unwrap(), expected);
    }
    assert_eq!(m.tables.get_sorted(&[]).unwrap(), Vec::new());
}

/// A repack moves only blobs no commit touched since its watch began, and moves the bytes of
/// the versions it was told of from the old volume's lineage to the new one's: a copy of a
/// candidate blob meanwhile keeps that blob where it is, and the rows stay what a recount says.
#[test]
fn a_repack_skips_blobs_a_commit_touched_during_it() {
    use std::collections::HashMap;

    use crate::local::records::{BlobRecord, Extent};

    let dir = tempfile::tempdir().unwrap();
    let m = open(dir.path());
    let blob = |volume| BlobRecord {
        volume,
        offset: 64,
        len: 100,
        block_size: 4096,
        refs: 0,
        freed_at: 0,
    };
    let with = |b: u64| VersionRecord {
        extents: vec![Extent {
            blob: b,
            offset: 0,
            len: 100,
        }],
        ..version(100)
    };
    // Blobs 1 and 2 in volume 7, one version each.
    m.commit_put("a/x", vec![(1, blob(7))], &with(1), Condition::None)
        .unwrap();
    m.commit_put("a/y", vec![(2, blob(7))], &with(2), Condition::None)
        .unwrap();
    assert!(m.watch_refs());
    assert!(!m.watch_refs(), "one watch at a time");
    // A copy of a/y references blob 2 again while the repack runs.
    m.commit_changes(&[Change::Copy {
        src: "a/y".into(),
        dst: "b/y".into(),
        opts: CopyOptions::default(),
    }])
    .unwrap();
    let refs: HashMap<u64, Vec<(String, u64)>> = [
        (1, vec![("a/x".to_string(), 100)]),
        (2, vec![("a/y".to_string(), 100)]),
    ]
    .into_iter()
    .collect();
    let moved = m
        .repack_blobs(&[(7, 9, vec![(1, 64), (2, 164)])], &refs)
        .unwrap();
    assert_eq!(moved, vec![vec![1]]);
    assert_eq!(m.blob(1).unwrap().volume, 9);
    assert_eq!(m.blob(2).unwrap().volume, 7);
    let c = m.verify_rollups("").unwrap();
    assert_eq!(c.mismatch_count, 0, "{:#?}", c.mismatches);
    let root = m.rollup("a/").unwrap().unwrap();
    let mut stored = root.stored.clone();
    stored.sort();
    assert_eq!(stored, vec![(7, 100), (9, 100)]);
    // The watch ended with the repack: a new one may start.
    assert!(m.watch_refs());
    m.unwatch_refs();
}

/// `Tables::last_in` gives the last live row of a range whether it is in sled or in the
/// log's tables, with the tables' rows replacing sled's and their removals hiding them.
#[test]
fn last_in_merges_the_tables_and_sled_backwards() {
    let dir = tempfile::tempdir().unwrap();
    let m = open(dir.path());
    let row = |k: &str, v: Option<&str>| {
        let mut txn = super::Txn::new();
        match v {
            Some(v) => txn.insert(k.as_bytes(), v.as_bytes().to_vec()),
            None => txn.remove(k.as_bytes()),
        }
        m.write_rows(txn).unwrap();
    };
    let last = |start: &str, end: &str| {
        m.tables
            .last_in(start.as_bytes(), end.as_bytes())
            .unwrap()
            .map(|(k, v)| {
                (
                    String::from_utf8(k.to_vec()).unwrap(),
                    String::from_utf8(v.to_vec()).unwrap(),
                )
            })
    };
    let pair = |k: &str, v: &str| Some((k.to_string(), v.to_string()));
    for k in ["xa", "xb", "xc", "xd"] {
        row(k, Some("sled"));
    }
    m.checkpoint_log(|| m.flush()).unwrap();
    assert_eq!(last("xa", "xz"), pair("xd", "sled"));
    assert_eq!(last("xa", "xd"), pair("xc", "sled"), "the end is excluded");
    assert_eq!(last("xd", "xa"), None, "an inverted range");
    assert_eq!(last("xe", "xz"), None);
    // In the tables: a removal hides sled's last rows, a newer value replaces one.
    row("xd", None);
    row("xc", None);
    row("xb", Some("table"));
    assert_eq!(last("xa", "xz"), pair("xb", "table"));
    row("xe", Some("table"));
    assert_eq!(last("xa", "xz"), pair("xe", "table"));
    assert_eq!(last("xa", "xe"), pair("xb", "table"));
    row("xb", None);
    row("xa", None);
    assert_eq!(last("xa", "xe"), None, "everything in sled is hidden");
    // After a checkpoint the same answers come from sled alone.
    m.checkpoint_log(|| m.flush()).unwrap();
    assert_eq!(last("xa", "xz"), pair("xe", "table"));
    assert_eq!(last("xa", "xe"), None);
}
