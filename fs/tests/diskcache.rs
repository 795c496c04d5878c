//! The disk cache under the filesystem core, against a store that counts its gets: hits never
//! reach the store, a corrupt block file is fetched again, the bound holds under many reads,
//! and a new core (a remount) with the same directory reads without the store.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use common::*;
use objfs_fs::diskcache::{DiskCache, DiskCacheHandle, BLOCKS_DIR};
use objfs_fs::{FsConfig, ObjFs};
use objfs_store::ObjectStore;

/// `len` bytes that differ with `seed` (BLAKE3's output stream).
fn det(seed: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    let mut h = blake3::Hasher::new();
    h.update(&seed.to_le_bytes());
    h.finalize_xof().fill(&mut out);
    out
}

fn cfg_with(disk: &Arc<DiskCache>) -> FsConfig {
    FsConfig {
        disk_cache: Some(DiskCacheHandle(disk.clone())),
        ..small_cfg()
    }
}

fn block_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for d in std::fs::read_dir(dir.join(BLOCKS_DIR)).unwrap().flatten() {
        for f in std::fs::read_dir(d.path()).unwrap().flatten() {
            out.push(f.path());
        }
    }
    out
}

/// Waits until the disk cache holds `n` blocks (readahead writes them in the background).
async fn settle(disk: &DiskCache, n: u64) {
    for _ in 0..500 {
        if disk.stats().blocks == n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the disk cache holds {:?}, not {n} blocks", disk.stats());
}

fn gets(store: &CountingStore) -> u64 {
    store.counts.gets.load(Ordering::SeqCst)
}

/// Reads `path` through a fresh core (an empty memory cache) over `store` and `disk`.
async fn read_fresh(store: &Arc<CountingStore>, disk: &Arc<DiskCache>, path: &str) -> Vec<u8> {
    let fs = ObjFs::new(store.clone() as Arc<dyn ObjectStore>, cfg_with(disk));
    let ino = lookup(&fs, path).await.expect("lookup").ino;
    read_file(&fs, ino).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_do_not_reach_the_store_and_survive_a_remount() {
    let tmp = tempfile::tempdir().unwrap();
    let store = CountingStore::new();
    let data = det(1, (5 << 20) + 12_345);
    {
        let fs = ObjFs::new(store.clone() as Arc<dyn ObjectStore>, small_cfg());
        write_file(&fs, 1, "f.bin", &data).await;
    }
    let disk = Arc::new(DiskCache::open(tmp.path(), 1 << 30).unwrap());
    store.counts.reset();
    assert_eq!(read_fresh(&store, &disk, "f.bin").await, data);
    let cold = store.counts.get_bytes.load(Ordering::SeqCst);
    assert_eq!(
        cold,
        data.len() as u64,
        "a cold read fetches every byte once"
    );
    settle(&disk, 6).await;

    // A new core, so nothing comes from memory: every block from disk, no get.
    store.counts.reset();
    assert_eq!(read_fresh(&store, &disk, "f.bin").await, data);
    assert_eq!(gets(&store), 0);
    assert_eq!(disk.stats().hits, 6);

    // A remount: the cache reopened from its directory.
    drop(disk);
    let disk = Arc::new(DiskCache::open(tmp.path(), 1 << 30).unwrap());
    assert_eq!(disk.stats().blocks, 6);
    store.counts.reset();
    assert_eq!(read_fresh(&store, &disk, "f.bin").await, data);
    assert_eq!(gets(&store), 0);
    assert_eq!(disk.stats().hits, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_block_file_is_fetched_again() {
    let tmp = tempfile::tempdir().unwrap();
    let store = CountingStore::new();
    let data = det(2, 3 << 20);
    {
        let fs = ObjFs::new(store.clone() as Arc<dyn ObjectStore>, small_cfg());
        write_file(&fs, 1, "f.bin", &data).await;
    }
    let disk = Arc::new(DiskCache::open(tmp.path(), 1 << 30).unwrap());
    assert_eq!(read_fresh(&store, &disk, "f.bin").await, data);
    settle(&disk, 3).await;
    let files = block_files(tmp.path());
    assert_eq!(files.len(), 3);
    // One file gets a flipped data byte, one is cut short.
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(&files[0], &bytes).unwrap();
    let len = std::fs::metadata(&files[1]).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&files[1])
        .unwrap()
        .set_len(len - 100)
        .unwrap();
    store.counts.reset();
    assert_eq!(read_fresh(&store, &disk, "f.bin").await, data);
    assert_eq!(store.counts.get_bytes.load(Ordering::SeqCst), 2 << 20);
    let s = disk.stats();
    assert_eq!((s.dropped, s.hits), (2, 1), "{s:?}");
    // Fetched again, they were written again, and now hit.
    settle(&disk, 3).await;
    store.counts.reset();
    assert_eq!(read_fresh(&store, &disk, "f.bin").await, data);
    assert_eq!(gets(&store), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bound_holds_under_many_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let store = CountingStore::new();
    let files: Vec<Vec<u8>> = (0..12).map(|i| det(10 + i, (1 << 20) + 77)).collect();
    {
        let fs = ObjFs::new(store.clone() as Arc<dyn ObjectStore>, small_cfg());
        for (i, d) in files.iter().enumerate() {
            write_file(&fs, 1, &format!("f{i}"), d).await;
        }
    }
    // Room for about 5 of the 24 blocks.
    let limit = 5 << 20;
    let disk = Arc::new(DiskCache::open(tmp.path(), limit).unwrap());
    let fs = ObjFs::new(store.clone() as Arc<dyn ObjectStore>, cfg_with(&disk));
    for round in 0..3 {
        for i in (0..files.len()).rev() {
            let i = (i * 7 + round) % files.len();
            let ino = lookup(&fs, &format!("f{i}")).await.unwrap().ino;
            assert_eq!(read_file(&fs, ino).await, files[i]);
            let on_disk: u64 = block_files(tmp.path())
                .iter()
                .filter(|p| !p.to_string_lossy().ends_with(".tmp"))
                .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
                .sum();
            let s = disk.stats();
            assert!(on_disk <= limit && s.used <= limit, "{on_disk} {s:?}");
        }
    }
    assert!(disk.stats().evictions > 0);
    // What is left reads back right through a fresh core.
    drop(fs);
    for (i, d) in files.iter().enumerate() {
        assert_eq!(&read_fresh(&store, &disk, &format!("f{i}")).await, d);
    }
}
