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
