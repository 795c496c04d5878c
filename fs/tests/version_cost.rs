//! A version costs what changed: what the core sends to the store (counted by a wrapper over
//! the memory store) for a truncate up, a write past the end, sparse writes and small
//! overwrites, and that every such file reads back exactly.

mod common;

use common::*;
use objfs_fs::{FsConfig, SetAttr};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn sent(c: &Counts) -> u64 {
    Counts::get(&c.part_bytes) + Counts::get(&c.put_bytes)
}

async fn set_size(fs: &objfs_fs::ObjFs, ino: u64, size: u64) -> TestResult {
    let sa = SetAttr {
        size: Some(size),
        ..Default::default()
    };
    fs.setattr(ino, sa).await?;
    Ok(())
}

/// Reads `len` bytes at `off` through a new handle.
async fn read_at(fs: &objfs_fs::ObjFs, ino: u64, off: u64, len: u32) -> Vec<u8> {
    let fh = fs.open(ino, libc::O_RDONLY).await.expect("open");
    let b = fs.read(ino, fh, off, len).await.expect("read");
    fs.release(ino, fh).await.expect("release");
    b.to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn growing_a_file_sends_no_zeros() -> TestResult {
    let store = CountingStore::new();
    let fs = new_fs(store.clone(), small_cfg());
    let ino = write_file(&fs, 1, "sparse", b"0123456789").await;
    let c = &store.counts;

    // truncate -s 64M: the 10 bytes are copied, the rest is one part of zeros.
    c.reset();
    let mib = 1u64 << 20;
    set_size(&fs, ino, 64 * mib).await?;
    assert_eq!(sent(c), 0);
    assert_eq!(Counts::get(&c.part_copy_bytes), 10);
    assert_eq!(Counts::get(&c.zero_parts), 1);
    assert_eq!(Counts::get(&c.zero_part_bytes), 64 * mib - 10);

    // A write past the end (dd seek=): the gap is zeros, only the written bytes are sent.
    c.reset();
    let fh = fs.open(ino, libc::O_WRONLY).await?;
    fs.write(ino, fh, 100 * mib, b"far").await?;
    fs.flush(ino, fh).await?;
    fs.release(ino, fh).await?;
    assert_eq!(sent(c), 3);
    assert_eq!(Counts::get(&c.zero_part_bytes), 36 * mib);
    assert_eq!(Counts::get(&c.part_copy_bytes), 64 * mib);
    assert_eq!(fs.getattr(ino).await?.size, 100 * mib + 3);

    assert_eq!(read_at(&fs, ino, 0, 12).await, b"0123456789\0\0");
    assert_eq!(read_at(&fs, ino, 50 * mib, 4096).await, vec![0u8; 4096]);
    let mut want = vec![0u8; 4093];
    want.extend_from_slice(b"far");
    assert_eq!(read_at(&fs, ino, 100 * mib - 4093, 8192).await, want);

    // A new file written sparsely in one go (a chunk here and there, holes between).
    c.reset();
    let (e, fh) = fs
        .create(1, os("holes"), 0o100644, libc::O_RDWR, ME)
        .await?;
    fs.write(e.ino, fh, 3 * mib, b"a").await?;
    fs.write(e.ino, fh, 7 * mib + 5000, b"bc").await?;
    // Read back through the open handle before the commit: zeros around the writes.
    let b = fs.read(e.ino, fh, 3 * mib - 1, 3).await?;
    assert_eq!(&b[..], b"\0a\0");
    fs.release(e.ino, fh).await?;
    assert_eq!(sent(c), 3);
    assert_eq!(Counts::get(&c.zero_part_bytes), 7 * mib + 5000 - 1);
    let got = read_file(&fs, e.ino).await;
    let mut want = vec![0u8; (7 * mib + 5002) as usize];
    want[(3 * mib) as usize] = b'a';
    want[(7 * mib + 5000) as usize..].copy_from_slice(b"bc");
    assert!(got == want, "the sparse file reads back");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_overwrite_sends_only_the_written_bytes() -> TestResult {
    let store = CountingStore::new();
    // Default chunks (8 MiB): a 2 MiB file is one chunk.
    let cfg = FsConfig {
        uid: 1000,
        gid: 1000,
        ..FsConfig::default()
    };
    let fs = new_fs(store.clone(), cfg);
    let mut data = pattern(2 << 20, 7);
    let ino = write_file(&fs, 1, "f", &data).await;
    let c = &store.counts;

    // Three writes far apart in one chunk, one version: three uploads of their bytes.
    c.reset();
    let fh = fs.open(ino, libc::O_RDWR).await?;
    for (at, len) in [(10_000usize, 100usize), (500_000, 3000), (1_900_000, 1)] {
        let patch = vec![0xEEu8; len];
        fs.write(ino, fh, at as u64, &patch).await?;
        data[at..at + len].copy_from_slice(&patch);
    }
    fs.fsync(ino, fh, false).await?;
    fs.release(ino, fh).await?;
    assert_eq!(sent(c), 3101);
    assert_eq!(Counts::get(&c.puts), 0);
    assert_eq!(Counts::get(&c.part_copies), 4);
    assert_eq!(read_file(&fs, ino).await, data);

    // Writes 2 KiB apart: the gap goes with them (one part instead of three).
    c.reset();
    let fh = fs.open(ino, libc::O_RDWR).await?;
    for at in [20_000usize, 22_100] {
        fs.write(ino, fh, at as u64, b"xy").await?;
        data[at..at + 2].copy_from_slice(b"xy");
    }
    fs.release(ino, fh).await?;
    assert_eq!(sent(c), 2102);
    assert_eq!(Counts::get(&c.part_copies), 2);
    assert_eq!(read_file(&fs, ino).await, data);

    // A small file is still put whole: parts would save less than they cost.
    let small = pattern(50_000, 9);
    let s = write_file(&fs, 1, "small", &small).await;
    c.reset();
    let fh = fs.open(s, libc::O_RDWR).await?;
    fs.write(s, fh, 10, b"z").await?;
    fs.release(s, fh).await?;
    assert_eq!((Counts::get(&c.puts), sent(c)), (1, 50_000));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_minimum_part_size_whole_chunks_of_zeros_are_zero_parts() -> TestResult {
    let store = CountingStore::with_min_part(64 * 1024);
    let fs = new_fs(store.clone(), small_cfg());
    let chunk = 64 * 1024u64;
    let ino = write_file(&fs, 1, "f", &pattern(chunk as usize + 10, 5)).await;
    store.counts.reset();
    set_size(&fs, ino, 5 * chunk).await?;
    let c = &store.counts;
    // Chunk 0 is copied; chunk 1 (10 old bytes, then zeros) is uploaded whole; chunks 2..5
    // are zeros, one part each (parts are never smaller than the minimum).
    assert_eq!(Counts::get(&c.part_copies), 1);
    assert_eq!(Counts::get(&c.part_bytes), chunk);
    assert_eq!(Counts::get(&c.zero_parts), 3);
    let mut want = pattern(chunk as usize + 10, 5);
    want.resize(5 * chunk as usize, 0);
    assert_eq!(read_file(&fs, ino).await, want);
    Ok(())
}
