//! Tests of the disk cache on real files: hits, refused files, the bound, reopening, the lock,
//! and failing writes.

use std::os::unix::fs::PermissionsExt;

use super::*;

fn id(key: &str, etag: &str, offset: u64) -> Identity<'static> {
    Identity {
        key: Box::leak(key.to_string().into_boxed_str()),
        version: "null",
        etag: Box::leak(etag.to_string().into_boxed_str()),
        size: 1 << 30,
        offset,
    }
}

fn data(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

fn block_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for d in fs::read_dir(dir.join(BLOCKS_DIR)).unwrap().flatten() {
        for f in fs::read_dir(d.path()).unwrap().flatten() {
            out.push(f.path());
        }
    }
    out
}

#[test]
fn put_then_get_and_other_etags_miss() {
    let tmp = tempfile::tempdir().unwrap();
    let c = DiskCache::open(tmp.path(), 1 << 30).unwrap();
    let a = id("k", "e1", 0);
    assert!(c.get(&a, 4096).is_none());
    c.put(&a, &data(1, 4096));
    assert_eq!(c.get(&a, 4096).unwrap(), data(1, 4096));
    // The same key and version id with another ETag (an overwrite in a bucket without
    // versioning) is another block.
    assert!(c.get(&id("k", "e2", 0), 4096).is_none());
    // A lookup that expects another length refuses the file.
    assert!(c.get(&a, 4095).is_none());
    let s = c.stats();
    assert_eq!((s.hits, s.fills, s.dropped), (1, 1, 1));
    assert_eq!(s.blocks, 0);
}

#[test]
fn corrupt_and_truncated_files_are_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let c = DiskCache::open(tmp.path(), 1 << 30).unwrap();
    let (a, b) = (id("k", "e", 0), id("k", "e", 1 << 20));
    c.put(&a, &data(1, 10_000));
    c.put(&b, &data(2, 10_000));
    let pa = c.path_of(&a.file_name());
    let mut bytes = fs::read(&pa).unwrap();
    bytes[block::FIXED_HEADER + 100] ^= 1;
    fs::write(&pa, &bytes).unwrap();
    let pb = c.path_of(&b.file_name());
    let len = fs::metadata(&pb).unwrap().len();
    File::options()
        .write(true)
        .open(&pb)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    assert!(c.get(&a, 10_000).is_none());
    assert!(c.get(&b, 10_000).is_none());
    assert!(!pa.exists() && !pb.exists());
    assert_eq!(c.stats().dropped, 2);
    assert_eq!(c.stats().used, 0);
    // Written again, they read back right.
    c.put(&a, &data(1, 10_000));
    assert_eq!(c.get(&a, 10_000).unwrap(), data(1, 10_000));
}

#[test]
fn the_bound_holds_and_evicts_least_recently_used() {
    let tmp = tempfile::tempdir().unwrap();
    let file_size = block::encode(&id("k", "e", 0), &data(0, 1000))
        .unwrap()
        .len() as u64;
    let c = DiskCache::open(tmp.path(), 10 * file_size).unwrap();
    for i in 0..10 {
        c.put(&id("k", "e", i), &data(i as u8, 1000));
    }
    // Block 0 is used again, so block 1 is the oldest.
    assert!(c.get(&id("k", "e", 0), 1000).is_some());
    for i in 10..200u64 {
        c.put(&id("k", "e", i), &data(i as u8, 1000));
        if i == 10 {
            assert!(c.get(&id("k", "e", 1), 1000).is_none());
            assert!(c.get(&id("k", "e", 0), 1000).is_some());
        }
        let s = c.stats();
        assert!(s.used <= 10 * file_size, "{s:?}");
    }
    assert_eq!(block_files(tmp.path()).len(), 10);
    assert_eq!(c.stats().blocks, 10);
    assert!(c.stats().evictions >= 190);
}

#[test]
fn survives_reopening_within_a_smaller_bound() {
    let tmp = tempfile::tempdir().unwrap();
    let file_size = block::encode(&id("k", "e", 0), &data(0, 1000))
        .unwrap()
        .len() as u64;
    {
        let c = DiskCache::open(tmp.path(), 1 << 30).unwrap();
        for i in 0..6 {
            c.put(&id("k", "e", i), &data(i as u8, 1000));
            // Distinct modification times, so the rebuilt order is the order of use.
            let p = c.path_of(&id("k", "e", i).file_name());
            let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000 + i);
            File::options()
                .write(true)
                .open(p)
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
        // A leftover temporary file of a write that never finished.
        fs::create_dir_all(tmp.path().join(BLOCKS_DIR).join("ab")).unwrap();
        fs::write(tmp.path().join(BLOCKS_DIR).join("ab/.77.tmp"), b"half").unwrap();
    }
    let c = DiskCache::open(tmp.path(), 4 * file_size).unwrap();
    let s = c.stats();
    assert_eq!((s.blocks, s.used), (4, 4 * file_size));
    assert!(!tmp.path().join(BLOCKS_DIR).join("ab/.77.tmp").exists());
    for i in 0..2 {
        assert!(c.get(&id("k", "e", i), 1000).is_none(), "block {i} evicted");
    }
    for i in 2..6 {
        assert_eq!(c.get(&id("k", "e", i), 1000).unwrap(), data(i as u8, 1000));
    }
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let c = DiskCache::open(tmp.path(), 1 << 20).unwrap();
    let err = DiskCache::open(tmp.path(), 1 << 20).err().unwrap();
    let msg = err.to_string();
    assert!(matches!(err, DiskCacheError::InUse { .. }), "{msg}");
    assert!(
        msg.contains(&format!("pid {}", std::process::id())),
        "{msg}"
    );
    drop(c);
    DiskCache::open(tmp.path(), 1 << 20).unwrap();
}

#[test]
fn an_unwritable_directory_degrades_to_uncached() {
    if nix::unistd::geteuid().is_root() {
        eprintln!("skipped: root writes through permission bits");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let c = DiskCache::open(tmp.path(), 1 << 20).unwrap();
    let blocks = tmp.path().join(BLOCKS_DIR);
    fs::set_permissions(&blocks, fs::Permissions::from_mode(0o500)).unwrap();
    let a = id("k", "e", 0);
    c.put(&a, &data(1, 100));
    c.put(&id("k", "e", 1), &data(1, 100));
    assert!(c.get(&a, 100).is_none());
    let s = c.stats();
    assert_eq!((s.write_errors, s.fills, s.used), (2, 0, 0));
    fs::set_permissions(&blocks, fs::Permissions::from_mode(0o700)).unwrap();
    c.put(&a, &data(1, 100));
    assert!(c.get(&a, 100).is_some());
}
