//! A corrupt block under readahead is never served: the filesystem core over a local store
//! whose volume has one flipped byte in the middle of a large file, read sequentially as the
//! FUSE adapter reads it (at once from the block cache when it can, else through the store).
//! Every read returns the file's exact bytes or fails with EIO; the reads that cover the
//! damaged block fail, the first ones (before the readahead reached it) succeed.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use objfs_fs::{FsConfig, ObjFs};
use objfs_store::local::{LocalConfig, LocalStore};
use objfs_store::{ObjectStore, PutOptions};
use objfs_tests::det_bytes;

/// The volume files of a one-disk store (its disk is `STORE/data`).
fn volumes(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir.join("data"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "vol"))
        .collect()
}

/// Where `needle` lies in the volume files (exactly one place).
fn find(dir: &Path, needle: &[u8]) -> (PathBuf, u64) {
    for v in volumes(dir) {
        let bytes = fs::read(&v).unwrap();
        if let Some(at) = bytes.windows(needle.len()).position(|w| w == needle) {
            return (v, at as u64);
        }
    }
    panic!("bytes not found in any volume");
}

#[test]
fn a_corrupt_block_under_readahead_is_eio_never_data() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let data = det_bytes(7, 24 << 20);
    let bad = (13 << 20) + 12345usize;
    let store = LocalStore::init(dir.path(), LocalConfig::default()).unwrap();
    rt.block_on(async {
        store
            .put("big", data.clone().into(), PutOptions::default())
            .await
            .unwrap();
    });
    let (file, at) = find(dir.path(), &data[bad..bad + 64]);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&file)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 0x5A], at).unwrap();
    f.sync_all().unwrap();

    let store: Arc<dyn ObjectStore> = Arc::new(store);
    let fs = ObjFs::new(store, FsConfig::default());
    let (ok, failed) = rt.block_on(async {
        let e = fs.lookup(1, std::ffi::OsStr::new("big")).await.unwrap();
        let fh = fs.open(e.ino, libc::O_RDONLY).await.unwrap();
        let step = 1u64 << 20;
        let (mut ok, mut failed) = (Vec::new(), Vec::new());
        let mut off = 0u64;
        while off < data.len() as u64 {
            let r = match fs.read_now(e.ino, fh, off, step as u32) {
                Some(r) => r,
                None => fs.read(e.ino, fh, off, step as u32).await,
            };
            match r {
                Ok(got) => {
                    let end = (off + step) as usize;
                    assert_eq!(&got[..], &data[off as usize..end], "wrong bytes at {off}");
                    ok.push(off);
                }
                Err(err) => {
                    assert_eq!(err.errno(), libc::EIO, "at {off}: {err}");
                    failed.push(off);
                }
            }
            off += step;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Once more, block by block: the damaged block fails every time, never data.
        for _ in 0..3 {
            let off = (bad as u64 >> 20) << 20;
            let r = match fs.read_now(e.ino, fh, off, step as u32) {
                Some(r) => r,
                None => fs.read(e.ino, fh, off, step as u32).await,
            };
            assert_eq!(r.expect_err("corrupt block served").errno(), libc::EIO);
        }
        fs.release(e.ino, fh).await.unwrap();
        (ok, failed)
    });
    let bad_block = ((bad as u64) >> 20) << 20;
    assert!(
        failed.contains(&bad_block),
        "the damaged block read: {failed:?}"
    );
    assert!(ok.contains(&0), "the first block failed: {failed:?}");
}
