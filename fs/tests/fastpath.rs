//! The requests the FUSE thread answers without a hop to the runtime (`ObjFs::write_now`,
//! `ObjFs::read_now`): writes taken at once and writes through the runtime land in the order
//! they were made; a part upload that fails in the background is reported by the fsync or
//! close that follows, and the previous version stays; a read is answered at once only from
//! blocks the cache holds, never before the handle's first read went through the store.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use objfs_store::ObjectStore;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Writes `data` at `off` as the adapter does: at once when possible, else through the runtime.
/// Returns whether it was taken at once.
async fn adapter_write(fs: &objfs_fs::ObjFs, ino: u64, fh: u64, off: u64, data: &[u8]) -> bool {
    match fs.write_now(ino, fh, off, data, 1, false) {
        Some(r) => {
            assert_eq!(r.expect("write at once") as usize, data.len());
            true
        }
        None => {
            fs.write(ino, fh, off, data).await.expect("write");
            false
        }
    }
}

fn apply(model: &mut Vec<u8>, off: usize, data: &[u8]) {
    if model.len() < off + data.len() {
        model.resize(off + data.len(), 0);
    }
    model[off..off + data.len()].copy_from_slice(data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_at_once_and_through_the_runtime_land_in_order() -> TestResult {
    let store = CountingStore::new();
    let fs = new_fs(store.clone(), small_cfg());
    let (e, fh) = fs
        .create(1, os("f"), 0o100644, libc::O_RDWR | libc::O_TRUNC, ME)
        .await?;
    let mut model = Vec::new();
    let (mut at_once, mut through) = (0, 0);
    // Sequential pieces across many 64 KiB chunks (parts start in the background), every
    // third one forced through the runtime.
    let piece = 24 * 1024;
    for i in 0..40usize {
        let data = pattern(piece, i as u8);
        let off = (i * piece) as u64;
        if i % 3 == 2 {
            fs.write(e.ino, fh, off, &data).await?;
            through += 1;
        } else if adapter_write(&fs, e.ino, fh, off, &data).await {
            at_once += 1;
        } else {
            through += 1;
        }
        apply(&mut model, off as usize, &data);
    }
    assert!(at_once >= 20, "{at_once} writes at once, {through} not");
    // Overwrites: of a chunk still buffered, of a chunk already uploaded (a checkpoint, so
    // never at once), a write past the end that leaves a gap of zeros, and a read of the
    // writer in between.
    for (off, seed) in [
        (5 * 64 * 1024 + 100, 50u8),
        (1000, 51),
        (2_000_000, 52),
        (7, 53),
    ] {
        let data = pattern(3000, seed);
        adapter_write(&fs, e.ino, fh, off, &data).await;
        apply(&mut model, off as usize, &data);
        let back = fs.read(e.ino, fh, off, 3000).await?;
        assert_eq!(&back[..], &data[..]);
    }
    fs.flush(e.ino, fh).await?;
    fs.release(e.ino, fh).await?;
    assert_eq!(read_file(&fs, e.ino).await, model);
    assert_eq!(store.head("f", None).await?.size, model.len() as u64);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_background_part_is_eio_at_fsync_and_close() -> TestResult {
    let store = CountingStore::new();
    let fs = new_fs(store.clone(), small_cfg());
    let old = pattern(200 * 1024, 1);
    let ino = write_file(&fs, 1, "f", &old).await;
    let v_before = store.head("f", None).await?.version;
    for at_close in [false, true] {
        let fh = fs.open(ino, libc::O_WRONLY).await?;
        // The first chunk fills through the runtime (it starts the upload); the next ones at
        // once, their parts failing in the background.
        adapter_write(&fs, ino, fh, 0, &pattern(64 * 1024, 2)).await;
        store.fail_uploads.store(true, Ordering::SeqCst);
        let mut failed_write = false;
        for i in 1..6u64 {
            let off = i * 64 * 1024;
            let data = pattern(64 * 1024, i as u8);
            let r = match fs.write_now(ino, fh, off, &data, 1, false) {
                Some(r) => r.map(|_| ()),
                None => fs.write(ino, fh, off, &data).await.map(|_| ()),
            };
            if r.is_err() {
                // Once a part failed, later writes report it too (EIO), at once or not.
                assert_eq!(errno(r), libc::EIO);
                failed_write = true;
            }
        }
        let r = if at_close {
            fs.flush(ino, fh).await
        } else {
            fs.fsync(ino, fh, false).await
        };
        store.fail_uploads.store(false, Ordering::SeqCst);
        if !failed_write || r.is_err() {
            assert_eq!(errno(r), libc::EIO, "at_close {at_close}");
        }
        fs.release(ino, fh).await?;
        assert_eq!(store.head("f", None).await?.version, v_before);
        assert_eq!(read_file(&fs, ino).await, old);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_at_once_come_from_the_cache_only() -> TestResult {
    let store = CountingStore::new();
    let fs = new_fs(store.clone(), small_cfg());
    let data = pattern(6 << 20, 3);
    let ino = write_file(&fs, 1, "f", &data).await;
    let fh = fs.open(ino, libc::O_RDONLY).await?;
    // Before the handle's first read (access time, version pin), nothing is answered at once.
    assert!(fs.read_now(ino, fh, 0, 4096).is_none());
    let step = 256 * 1024u64;
    let mut off = 0u64;
    let mut at_once = 0;
    while off < data.len() as u64 {
        let got = match fs.read_now(ino, fh, off, step as u32) {
            Some(r) => {
                at_once += 1;
                r?
            }
            None => fs.read(ino, fh, off, step as u32).await?,
        };
        let end = (off as usize + step as usize).min(data.len());
        assert_eq!(&got[..], &data[off as usize..end], "at {off}");
        off += step;
        // Give the readahead time to land, as the kernel's next request would.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(at_once > 0, "readahead never served a read at once");
    // Past the end: empty, at once.
    let past = fs.read_now(ino, fh, data.len() as u64, 4096);
    assert!(matches!(past, Some(Ok(ref b)) if b.is_empty()));
    fs.release(ino, fh).await?;
    Ok(())
}

/// A write taken at once for a caller without CAP_FSETID (`kill_setid`) drops the set-id bits
/// before its answer, as the path through the runtime does; the close's version has the mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_at_once_drops_setid_bits_when_asked() -> TestResult {
    let store = CountingStore::new();
    let fs = new_fs(store.clone(), small_cfg());
    let (e, fh) = fs
        .create(1, os("f"), 0o106755, libc::O_RDWR | libc::O_TRUNC, ME)
        .await?;
    // A privileged write keeps them.
    assert_eq!(
        fs.write_now(e.ino, fh, 0, b"root", 1, false).transpose()?,
        Some(4)
    );
    assert_eq!(fs.getattr(e.ino).await?.perm, 0o6755);
    // S_ISUID always goes; S_ISGID with group execute goes too.
    assert_eq!(
        fs.write_now(e.ino, fh, 4, b"user", 1, true).transpose()?,
        Some(4)
    );
    assert_eq!(fs.getattr(e.ino).await?.perm, 0o755);
    fs.release(e.ino, fh).await?;
    let f = lookup(&fs, "f").await?;
    assert_eq!(f.attr.perm, 0o755);
    assert_eq!(read_file(&fs, f.ino).await, b"rootuser");
    Ok(())
}
