//! Tests of the write-back journal on disk (journal.rs, segment.rs).

use super::*;

fn header(op: Op) -> Header {
    let mut metadata = Metadata::new();
    metadata.insert("x-amz-meta-mode".into(), "33188".into());
    Header {
        seq: 7,
        created: UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789),
        op,
        metadata,
    }
}

#[test]
fn entries_round_trip() {
    let ops = [
        Op::Put {
            key: "a/b".into(),
            id: "p1".into(),
        },
        Op::Delete {
            key: "a/b".into(),
            id: "p2".into(),
        },
        Op::Rename {
            src: "t.tmp".into(),
            src_marker: "p3".into(),
            dst: "t".into(),
            id: "p4".into(),
        },
        Op::Move {
            src: "u".into(),
            src_version: "b7".into(),
            src_marker: "p5".into(),
            dst: "v".into(),
            id: "p6".into(),
            size: 1 << 40,
            etag: "\"abc\"".into(),
        },
    ];
    for op in ops {
        let h = header(op);
        let bytes = encode(&h, b"hello");
        let d = decode(&bytes).unwrap();
        assert_eq!(d.header, h);
        assert_eq!(d.body_len, 5);
        let o = d.body_offset as usize;
        assert_eq!(&bytes[o..o + 5], b"hello");
    }
}

#[test]
fn torn_and_damaged_entries_are_refused() {
    let h = header(Op::Put {
        key: "k".into(),
        id: "p".into(),
    });
    let bytes = encode(&h, &[9u8; 100]);
    for cut in [0, 3, 10, bytes.len() / 2, bytes.len() - 1] {
        assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
    }
    let mut flipped = bytes.clone();
    flipped[40] ^= 1;
    assert!(decode(&flipped).is_err());
    let mut other_format = bytes;
    other_format[4] = 2;
    assert!(decode(&other_format).is_err());
}

#[test]
fn the_directory_is_locked_and_replay_drops_tmp_and_sets_damage_aside() {
    let t = tempfile::tempdir().unwrap();
    let j = JournalDir::open(t.path()).unwrap();
    assert!(JournalDir::open(t.path()).is_err(), "second open must fail");
    let mut h = header(Op::Put {
        key: "k".into(),
        id: "p".into(),
    });
    let (seg, _) = j.write(&h, b"one", false).unwrap();
    h.seq = 8;
    let (seg8, off8) = j.write(&h, b"two", true).unwrap();
    assert_eq!(seg.path(), seg8.path(), "one segment");
    drop(j);
    let j = JournalDir::open(t.path()).unwrap();
    // A torn, never acknowledged entry of the format before segments, and damage to an
    // acknowledged entry of the segment.
    fs::write(t.path().join("0000000000000009.tmp"), b"OWBJ\x01torn").unwrap();
    let mut bytes = fs::read(seg.path()).unwrap();
    bytes[off8 as usize] ^= 0xff;
    fs::write(seg.path(), bytes).unwrap();
    let (found, bad_entries) = j.replay().unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].decoded.header.seq, 7);
    assert_eq!(bad_entries.len(), 1);
    assert!(bad_entries[0].0.starts_with(t.path().join("corrupt")));
    assert!(!t.path().join("0000000000000009.tmp").exists());
    let f = &found[0];
    let body = read_body(f.segment.path(), f.decoded.body_offset, 1..3).unwrap();
    assert_eq!(body, b"ne");
    // New entries go to a new segment.
    h.seq = 10;
    let (next, _) = j.write(&h, b"three", false).unwrap();
    assert_ne!(next.path(), seg.path());
}

#[test]
fn done_entries_are_not_replayed_and_a_done_segment_goes() {
    let t = tempfile::tempdir().unwrap();
    let j = JournalDir::open(t.path()).unwrap();
    let mut segs = Vec::new();
    for seq in 1..=4 {
        let h = header(Op::Put {
            key: format!("k{seq}"),
            id: "p".into(),
        });
        segs.push(j.write(&Header { seq, ..h }, b"body", false).unwrap().0);
    }
    segs[0].entry_done(1);
    segs[2].entry_done(3);
    // A torn tail: a record cut short by a crash.
    let path = segs[0].path().to_path_buf();
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(&100u64.to_le_bytes()).unwrap();
    f.write_all(b"OWBJ").unwrap();
    drop((f, j));
    let j = JournalDir::open(t.path()).unwrap();
    let (found, bad_entries) = j.replay().unwrap();
    let seqs: Vec<u64> = found.iter().map(|f| f.decoded.header.seq).collect();
    assert_eq!(seqs, [2, 4]);
    assert_eq!(bad_entries.len(), 1, "the torn tail is set aside");
    // The replayed segment is sealed: it goes with its last entry, done file and all.
    let done = path.with_extension("done");
    assert!(path.exists() && done.exists());
    found[0].segment.entry_done(2);
    assert!(path.exists());
    found[1].segment.entry_done(4);
    assert!(!path.exists() && !done.exists());
    drop(found);
    let (found, _) = j.replay().unwrap();
    assert!(found.is_empty());
}

#[test]
fn a_full_segment_is_sealed_and_the_next_begun() {
    let t = tempfile::tempdir().unwrap();
    let j = JournalDir::open(t.path()).unwrap();
    let big = vec![7u8; SEGMENT_BYTES as usize];
    let h = header(Op::Put {
        key: "k".into(),
        id: "p".into(),
    });
    let (first, _) = j
        .write(
            &Header {
                seq: 1,
                ..h.clone()
            },
            &big,
            false,
        )
        .unwrap();
    let (second, off) = j.write(&Header { seq: 2, ..h }, b"small", false).unwrap();
    assert_ne!(first.path(), second.path());
    assert_eq!(read_body(second.path(), off, 0..5).unwrap(), b"small");
    // The sealed one goes as soon as its entry is done.
    first.entry_done(1);
    assert!(!first.path().exists());
    assert!(second.path().exists());
}

#[test]
fn entries_of_the_format_before_segments_are_replayed_and_go_when_done() {
    let t = tempfile::tempdir().unwrap();
    let h = header(Op::Put {
        key: "old".into(),
        id: "p".into(),
    });
    let old = t.path().join("0000000000000007.wb");
    fs::write(&old, encode(&h, b"legacy")).unwrap();
    fs::write(t.path().join("0000000000000008.wb"), b"OWBJ\x01damaged").unwrap();
    let j = JournalDir::open(t.path()).unwrap();
    let (found, bad_entries) = j.replay().unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(bad_entries.len(), 1);
    let f = &found[0];
    assert_eq!(f.segment.path(), old);
    let body = read_body(f.segment.path(), f.decoded.body_offset, 0..6).unwrap();
    assert_eq!(body, b"legacy");
    f.segment.entry_done(7);
    assert!(!old.exists());
}

#[test]
fn refusals_are_kept_by_sequence_number_until_removed() {
    let t = tempfile::tempdir().unwrap();
    let j = JournalDir::open(t.path()).unwrap();
    let r = Refusal {
        key: "k".into(),
        since: UNIX_EPOCH + Duration::from_nanos(1_700_000_000_000_000_001),
        error: "AccessDenied: no (HTTP 403)".into(),
    };
    j.write_failed(7, std::slice::from_ref(&r)).unwrap();
    // A damaged one is removed at open and reported.
    let mut damaged = encode_failed(10, std::slice::from_ref(&r));
    damaged[20] ^= 1;
    fs::write(t.path().join("000000000000000a.failed"), damaged).unwrap();
    let (found, bad_files) = j.failures().unwrap();
    assert_eq!(found, vec![(7, vec![r.clone()])]);
    assert_eq!(bad_files.len(), 1);
    assert!(!t.path().join("000000000000000a.failed").exists());
    remove_failed(t.path(), 7);
    assert!(!t.path().join("0000000000000007.failed").exists());
    j.write_failed(8, std::slice::from_ref(&r)).unwrap();
    assert_eq!(j.clear_failed().unwrap(), 1);
    let cut = encode_failed(7, &[r]);
    assert!(decode_failed(&cut[..cut.len() - 1]).is_err());
}
