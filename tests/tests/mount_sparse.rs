//! A version costs what changed, through a real mount: `truncate -s 1G`, a write far past the
//! end (`dd seek=`) and a small overwrite of a large file add (almost) nothing to the store's
//! volume files, and the file reads back as zeros and data, before and after a remount.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;

use objfs_tests::mount_fixture::MountFixture;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

fn volume_bytes(fx: &MountFixture) -> u64 {
    let store = fx.store().expect("mounted");
    store.status().expect("status").volume_bytes
}

fn read_at(f: &File, off: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0xAAu8; len];
    f.read_exact_at(&mut buf, off)
        .unwrap_or_else(|e| panic!("read {len} at {off}: {e}"));
    buf
}

/// What the file must hold: zeros except `data` at `at` and `patch` at `patch_at`.
fn check(fx: &MountFixture, data: &[u8], at: u64, patch: &[u8], patch_at: u64) {
    let f = File::open(fx.path("sparse")).expect("open");
    assert_eq!(f.metadata().expect("stat").len(), at + data.len() as u64);
    for off in [0, 4096, GIB - 10, GIB + 5 * MIB, at - 100] {
        assert!(
            read_at(&f, off, 100).iter().all(|b| *b == 0),
            "zeros at {off}"
        );
    }
    let got = read_at(&f, at - 10, data.len() + 10);
    assert!(got[..10].iter().all(|b| *b == 0));
    assert_eq!(&got[10..], data);
    let got = read_at(&f, patch_at, patch.len());
    assert_eq!(got, patch);
}

#[test]
fn growing_and_patching_a_sparse_file_stores_what_was_written() {
    let Some(mut fx) =
        MountFixture::new("growing_and_patching_a_sparse_file_stores_what_was_written")
    else {
        return;
    };
    let path = fx.path("sparse");
    File::create(&path).expect("create");
    let v0 = volume_bytes(&fx);

    // truncate -s 1G
    OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open")
        .set_len(GIB)
        .expect("truncate");
    assert_eq!(std::fs::metadata(&path).expect("stat").len(), GIB);
    let v1 = volume_bytes(&fx);
    assert!(
        v1 - v0 < 64 * 1024,
        "truncate -s 1G stored {} bytes",
        v1 - v0
    );

    // dd seek=: 64 KiB two GiB in.
    let data: Vec<u8> = (0..64 * 1024u32).map(|i| (i % 251) as u8 + 1).collect();
    let at = 2 * GIB + 123;
    {
        let f = OpenOptions::new().write(true).open(&path).expect("open");
        f.write_all_at(&data, at).expect("pwrite");
        f.sync_all().expect("fsync");
    }
    let v2 = volume_bytes(&fx);
    assert!(
        v2 - v1 < data.len() as u64 + 64 * 1024,
        "a 64 KiB write past the end stored {} bytes",
        v2 - v1
    );

    // A 1 MiB overwrite in the middle of the (2 GiB) file stores about 1 MiB.
    let patch: Vec<u8> = (0..MIB as u32).map(|i| (i % 241) as u8 + 1).collect();
    let patch_at = GIB / 2 + 7;
    {
        let f = OpenOptions::new().write(true).open(&path).expect("open");
        f.write_all_at(&patch, patch_at).expect("pwrite");
    }
    let v3 = volume_bytes(&fx);
    assert!(
        v3 - v2 < MIB + 64 * 1024,
        "a 1 MiB overwrite stored {} bytes",
        v3 - v2
    );

    check(&fx, &data, at, &patch, patch_at);
    fx.remount();
    check(&fx, &data, at, &patch, patch_at);
}
