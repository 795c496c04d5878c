//! Tests of the record encodings and key layouts (`super`): round trips, format migrations,
//! key order.

use super::*;

/// `r` written as format 1 reads back as `r`, and format 2 writes the same bytes behind its
/// own format byte.
fn format_2_keeps_format_1s_layout<T: Migrate + PartialEq + std::fmt::Debug>(r: &T) {
    let old = encode_as(1, r).unwrap();
    assert_eq!(&decode::<T>(&old).unwrap(), r);
    let now = encode(r).unwrap();
    assert_eq!(now[0], 2);
    assert_eq!(&now[1..], &old[1..], "format 2 has format 1's layout");
}

#[test]
fn version_keys_sort_newest_first_and_round_trip() {
    let a = version_key("k", LocalVersion(5));
    let b = version_key("k", LocalVersion(9));
    assert!(b < a, "newer version must sort first");
    assert!(version_key("k", LocalVersion(u128::MAX)) > current_key("zzz"));
    let (k, v) = parse_version_key(&a).unwrap();
    assert_eq!((k, v), ("k", LocalVersion(5)));
    // all rows of "k" sort before any row of "k\x01" and "k/"
    assert!(version_key("k", LocalVersion(0)) < version_prefix("k\u{1}"));
    assert!(version_key("k", LocalVersion(0)) < version_prefix("k/"));
    let e = ended_key(LocalVersion(9), "a/b", LocalVersion(5));
    assert_eq!(
        parse_ended_key(&e).unwrap(),
        (LocalVersion(9), "a/b", LocalVersion(5))
    );
    assert!(ended_from(LocalVersion(9)) <= e);
    assert!(e < ended_from(LocalVersion(10)));
    assert!(parse_ended_key(&e[..20]).is_err());
    for marker in [false, true] {
        let rec = VersionRecord {
            delete_marker: marker,
            size: 7,
            etag: "e".into(),
            metadata: Default::default(),
            extents: vec![],
        };
        assert_eq!(
            VersionRecord::is_marker(&encode(&rec).unwrap()).unwrap(),
            marker
        );
    }
    assert!(VersionRecord::is_marker(&[9, 1]).is_err());
}

#[test]
fn records_round_trip_and_refuse_unknown_format() {
    let r = VersionRecord {
        delete_marker: false,
        size: 3,
        etag: "e".into(),
        metadata: [("a".to_string(), "b".to_string())].into(),
        extents: vec![Extent {
            blob: 1,
            offset: 2,
            len: 3,
        }],
    };
    let bytes = encode(&r).unwrap();
    assert_eq!(decode::<VersionRecord>(&bytes).unwrap(), r);
    let mut bad = bytes.clone();
    bad[0] = 99;
    assert!(decode::<VersionRecord>(&bad).is_err());
    assert!(decode::<VersionRecord>(&[]).is_err());
    assert!(decode::<VersionRecord>(&bytes[..bytes.len() - 1]).is_err());
}

/// The sized encoding writes exactly what the format byte followed by postcard's own
/// encoding is (the bytes FORMAT.md documents), in one allocation of that size.
#[test]
fn encoding_is_the_format_byte_then_postcard_in_one_exact_allocation() {
    let big_page: Vec<u64> = (0..3000u64).map(|i| i * 0x1_0001).collect();
    let r = VersionRecord {
        delete_marker: false,
        size: u64::MAX,
        etag: "x".repeat(300),
        metadata: [("k".repeat(70), "v".repeat(200))].into(),
        extents: (0..50)
            .map(|i| Extent {
                blob: i,
                offset: i * 4096,
                len: 4096,
            })
            .collect(),
    };
    let bytes = encode(&r).unwrap();
    let mut want = vec![VersionRecord::FORMAT];
    want.extend_from_slice(&postcard::to_stdvec(&r).unwrap());
    assert_eq!(bytes, want);
    assert_eq!(bytes.capacity(), bytes.len());
    let page = encode_as(7, &big_page).unwrap();
    assert_eq!(page[0], 7);
    assert_eq!(&page[1..], &postcard::to_stdvec(&big_page).unwrap()[..]);
    assert_eq!(page.capacity(), page.len());
    assert_eq!(encode_as(3, &()).unwrap(), vec![3]);
}

#[test]
fn upload_records_of_format_1_migrate() {
    let v = LocalVersion((5u128 << 64) | 9);
    let old = UploadRecordV1 {
        key: "k".into(),
        initiated: 42,
        metadata: [("m".to_string(), "1".to_string())].into(),
        condition: StoredConditionV1::IfVersion(v.0),
        durable: true,
    };
    let bytes = encode_as(1, &old).unwrap();
    let got: UploadRecord = decode(&bytes).unwrap();
    assert_eq!(got.key, "k");
    assert_eq!(got.initiated, 42);
    assert_eq!(got.metadata, old.metadata);
    assert!(got.durable);
    assert_eq!(
        Condition::from(got.condition.clone()),
        Condition::IfVersion(v.id())
    );
    // Written back, it is format 2 and reads back the same.
    let now = encode(&got).unwrap();
    assert_eq!(now[0], 2);
    assert_eq!(decode::<UploadRecord>(&now).unwrap(), got);
    for c in [StoredConditionV1::None, StoredConditionV1::IfNotExists] {
        let r = UploadRecordV1 {
            condition: c,
            ..old.clone()
        };
        let got: UploadRecord = decode(&encode_as(1, &r).unwrap()).unwrap();
        assert_eq!(
            Condition::from(got.condition),
            Condition::from(UploadRecord::migrate(r).condition)
        );
    }
    // A format newer than this build's, or none at all, is refused.
    let mut newer = now.clone();
    newer[0] = 3;
    assert!(decode::<UploadRecord>(&newer).is_err());
    let mut zero = now;
    zero[0] = 0;
    assert!(decode::<UploadRecord>(&zero).is_err());
    // Types at their first format have no previous one.
    assert!(decode::<u64>(&encode_as(2, &7u64).unwrap()).is_err());
    assert_eq!(decode::<u64>(&encode(&7u64).unwrap()).unwrap(), 7);
}

#[test]
fn slicing_extents() {
    let ex = [
        Extent {
            blob: 1,
            offset: 0,
            len: 10,
        },
        Extent {
            blob: 2,
            offset: 5,
            len: 10,
        },
    ];
    assert_eq!(
        slice_extents(&ex, 8..12),
        vec![
            Extent {
                blob: 1,
                offset: 8,
                len: 2
            },
            Extent {
                blob: 2,
                offset: 5,
                len: 2
            }
        ]
    );
    assert_eq!(
        slice_extents(&ex, 10..20),
        vec![Extent {
            blob: 2,
            offset: 5,
            len: 10
        }]
    );
    assert!(slice_extents(&ex, 20..20).is_empty());
    // A hole sliced stays a hole (offset 0), whatever part of it is taken.
    let holed = [ex[0], Extent::hole(100), ex[1]];
    assert_eq!(
        slice_extents(&holed, 5..60),
        vec![
            Extent {
                blob: 1,
                offset: 5,
                len: 5
            },
            Extent::hole(50)
        ]
    );
    assert!(slice_extents(&holed, 50..60)[0].is_hole());
    assert_eq!(slice_extents(&holed, 50..60)[0].blob_id(), None);
    assert_eq!(ex[1].blob_id(), Some(2));
}

#[test]
fn version_records_of_format_1_read_as_they_were() {
    let r = VersionRecord {
        delete_marker: false,
        size: 3,
        etag: "e".into(),
        metadata: Metadata::new(),
        extents: vec![Extent {
            blob: 7,
            offset: 0,
            len: 3,
        }],
    };
    format_2_keeps_format_1s_layout(&r);
    let holed = VersionRecord {
        extents: vec![Extent::hole(9)],
        ..r
    };
    let bytes = encode(&holed).unwrap();
    // The hole's blob id is u64::MAX: ten varint bytes, ff x9 then 01.
    let tail = &bytes[bytes.len() - 12..];
    assert_eq!(
        tail,
        &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0, 9]
    );
    assert_eq!(decode::<VersionRecord>(&bytes).unwrap(), holed);
    let p = PartRecord {
        etag: "p".into(),
        size: 9,
        extents: vec![Extent::hole(9)],
    };
    assert_eq!(encode(&p).unwrap()[0], 2);
    assert_eq!(decode::<PartRecord>(&encode(&p).unwrap()).unwrap(), p);
}

#[test]
fn volume_records_of_format_1_read_and_remote_ones_are_format_2() {
    let r = VolumeRecord {
        id: 3,
        state: VolumeState::Sealed,
        size: 4096,
        created: 9,
        layout: Layout::Erasure {
            k: 2,
            m: 1,
            shard_len: 2048,
            disks: vec![0, 1, 2],
        },
        verified_at: 0,
    };
    format_2_keeps_format_1s_layout(&r);
    let remote = VolumeRecord {
        layout: Layout::Remote(RemoteObject {
            key: "p/ab/cd/0000000000000003".into(),
            size: 4096,
            etag: "e".into(),
            blake3: [7; 32],
        }),
        ..r
    };
    let bytes = encode(&remote).unwrap();
    assert_eq!(decode::<VolumeRecord>(&bytes).unwrap(), remote);
    // An older build (format 1 only) would refuse it rather than misread it.
    assert!(decode::<WithoutRemote<VolumeRecord>>(&bytes).is_err());
}
