//! A 256 MiB file through a real mount: written sequentially, overwritten at random offsets,
//! appended to, truncated, compared with a native copy after each phase (streamed comparison
//! plus a whole-file hash), then compared again after unmount and remount.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use objfs_tests::mount_fixture::{compare_files, MountFixture};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const MIB: usize = 1 << 20;
const SIZE: usize = 256 * MIB;

/// FNV-1a over a whole file, streamed.
fn file_hash(p: &Path) -> (u64, u64) {
    let mut f = File::open(p).unwrap_or_else(|e| panic!("open {}: {e}", p.display()));
    let mut buf = vec![0u8; 4 * MIB];
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut len = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
        if n == 0 {
            break;
        }
        for &b in &buf[..n] {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        len += n as u64;
    }
    (len, h)
}

fn check(native: &Path, mounted: &Path, phase: &str) {
    compare_files(native, mounted);
    assert_eq!(file_hash(native), file_hash(mounted), "hash after {phase}");
}

/// Applies the same write to both files.
fn both(files: &[&File; 2], data: &[u8], offset: u64) {
    for f in files {
        f.write_all_at(data, offset).expect("pwrite");
    }
}

#[test]
fn big_file_write_overwrite_append_truncate_remount() {
    let Some(mut fx) = MountFixture::new("big_file_write_overwrite_append_truncate_remount") else {
        return;
    };
    let native = fx.native_path("big");
    let mounted = fx.path("big");
    let mut rng = StdRng::seed_from_u64(0x0b16_f11e);

    // Phase 1: sequential write in 1 MiB blocks.
    {
        let mut a = File::create(&native).expect("create native");
        let mut b = File::create(&mounted).expect("create mounted");
        let mut block = vec![0u8; MIB];
        for _ in 0..SIZE / MIB {
            rng.fill(&mut block[..]);
            a.write_all(&block).expect("write native");
            b.write_all(&block).expect("write mounted");
        }
        b.sync_all().expect("fsync mounted");
    }
    assert_eq!(fs::metadata(&mounted).expect("stat").len(), SIZE as u64);
    check(&native, &mounted, "sequential write");

    // Phase 2: overwrites at random offsets (small, unaligned, and multi-MiB) in one open.
    {
        let (a, b) = open_both(&native, &mounted, OpenOptions::new().write(true));
        for i in 0..64 {
            let len = match i % 4 {
                0 => rng.random_range(1..100),
                1 => rng.random_range(100..70_000),
                2 => rng.random_range(MIB..3 * MIB),
                _ => 4096,
            };
            let offset = rng.random_range(0..(SIZE - len) as u64);
            let mut data = vec![0u8; len];
            rng.fill(&mut data[..]);
            both(&[&a, &b], &data, offset);
        }
        // The very first and very last bytes.
        both(&[&a, &b], b"HEAD", 0);
        both(&[&a, &b], b"TAIL", (SIZE - 4) as u64);
    }
    check(&native, &mounted, "random overwrites");

    // Phase 3: append 10 MiB + 123 bytes in odd-sized writes.
    {
        let (mut a, mut b) = open_both(&native, &mounted, OpenOptions::new().append(true));
        let mut left = 10 * MIB + 123;
        while left > 0 {
            let n = rng.random_range(1..300_000).min(left);
            let mut data = vec![0u8; n];
            rng.fill(&mut data[..]);
            a.write_all(&data).expect("append native");
            b.write_all(&data).expect("append mounted");
            left -= n;
        }
    }
    assert_eq!(
        fs::metadata(&mounted).expect("stat").len(),
        (SIZE + 10 * MIB + 123) as u64
    );
    check(&native, &mounted, "append");

    // Phase 4: truncate into the middle, then extend with a hole and write past it.
    {
        let (a, b) = open_both(&native, &mounted, OpenOptions::new().write(true));
        let cut = (200 * MIB + 7) as u64;
        a.set_len(cut).expect("truncate native");
        b.set_len(cut).expect("truncate mounted");
    }
    check(&native, &mounted, "truncate down");
    {
        let (a, b) = open_both(&native, &mounted, OpenOptions::new().write(true));
        let len = (230 * MIB) as u64;
        a.set_len(len).expect("extend native");
        b.set_len(len).expect("extend mounted");
        both(&[&a, &b], b"after the hole", len - 100);
    }
    check(&native, &mounted, "extend with a hole");

    // Phase 5: everything is still there after unmount, store close, reopen and mount.
    fx.remount();
    check(&native, &mounted, "remount");

    // Phase 6: a small overwrite in a fresh open after the remount (a new version built from
    // the old one), then remount again.
    {
        let (a, b) = open_both(&native, &mounted, OpenOptions::new().write(true));
        both(&[&a, &b], b"patched after remount", (123 * MIB + 5) as u64);
    }
    check(&native, &mounted, "patch after remount");
    fx.remount();
    check(&native, &mounted, "second remount");
}

/// Opens the native and the mounted copy with the same options.
fn open_both(native: &Path, mounted: &Path, opts: &OpenOptions) -> (File, File) {
    (
        opts.open(native).expect("open native"),
        opts.open(mounted).expect("open mounted"),
    )
}
