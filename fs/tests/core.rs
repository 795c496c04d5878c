//! Tests of the filesystem core against the in-memory store, without FUSE.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use common::*;
use objfs_fs::{FsConfig, FsError, Kind, ObjFs, SetAttr, SetTime};
use objfs_store::memory::MemoryStore;
use objfs_store::{Body, ListRequest, ObjectStore, PutOptions};

type TestResult = Result<(), Box<dyn std::error::Error>>;

async fn put(store: &dyn ObjectStore, key: &str, data: &'static [u8]) {
    store
        .put(key, Body::from(data), PutOptions::default())
        .await
        .expect("put");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_markers_implicit_dirs_and_dir_wins() -> TestResult {
    let store = Arc::new(MemoryStore::new());
    put(store.as_ref(), "implicit/deep/file.txt", b"x").await;
    put(store.as_ref(), "both", b"file shadowed by a directory").await;
    put(store.as_ref(), "both/inner", b"y").await;
    put(store.as_ref(), "both-x", b"sorts between both and both/").await;
    put(store.as_ref(), "plain", b"z").await;
    let fs = new_fs(store.clone(), small_cfg());

    let d = fs.mkdir(1, os("made"), 0o750, ME).await?;
    assert_eq!(d.attr.kind, Kind::Dir);
    assert_eq!(d.attr.perm, 0o750);
    assert!(
        store.head("made/", None).await.is_ok(),
        "mkdir writes the marker"
    );

    let root = list_dir(&fs, 1).await;
    let names: Vec<&str> = root.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names.iter().filter(|n| **n == "both").count(),
        1,
        "{names:?}"
    );
    let both = root.iter().find(|(n, _)| n == "both").map(|(_, k)| *k);
    assert_eq!(both, Some(Kind::Dir), "the directory wins");
    for n in ["implicit", "made", "plain", "both-x"] {
        assert!(names.contains(&n), "{n} in {names:?}");
    }
    assert_eq!(lookup(&fs, "both").await?.attr.kind, Kind::Dir);
    assert_eq!(lookup(&fs, "implicit/deep").await?.attr.kind, Kind::Dir);
    let f = lookup(&fs, "implicit/deep/file.txt").await?;
    assert_eq!(f.attr.kind, Kind::File);
    assert_eq!(read_file(&fs, f.ino).await, b"x");
    assert_eq!(errno(lookup(&fs, "nope").await), libc::ENOENT);
    assert_eq!(errno(lookup(&fs, "plain/x").await), libc::ENOTDIR);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readdir_pages_and_offsets_are_stable() -> TestResult {
    let store = Arc::new(MemoryStore::new());
    for i in 0..2500 {
        store
            .put(
                &format!("big/f{i:05}"),
                Body::from(&b"."[..]),
                PutOptions::default(),
            )
            .await?;
    }
    for i in 0..30 {
        store
            .put(
                &format!("big/sub{i:02}/x"),
                Body::from(&b"."[..]),
                PutOptions::default(),
            )
            .await?;
    }
    let fs = new_fs(store.clone(), small_cfg());
    let big = dir(&fs, "big").await;
    let all = list_dir(&fs, big).await;
    assert_eq!(all.len(), 2530);
    let mut names: Vec<_> = all.iter().map(|(n, _)| n.clone()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 2530);

    // Offsets given out stay valid: read a stretch, then go back to an earlier offset.
    let fh = fs.opendir(big).await?;
    let mut seen: Vec<(u64, String)> = Vec::new();
    let mut off = 0;
    while seen.len() < 1500 {
        let mut got = Vec::new();
        fs.readdir(big, fh, off, |_, next, _, name| {
            got.push((next, name.to_string()));
            got.len() >= 50
        })
        .await?;
        assert!(!got.is_empty());
        off = got.last().map(|g| g.0).unwrap_or(off);
        seen.extend(got);
    }
    // Within the window kept by the handle and before it (relisted): same entries.
    for back in [seen[1400].0, seen[10].0] {
        let mut again = Vec::new();
        fs.readdir(big, fh, back, |_, next, _, name| {
            again.push((next, name.to_string()));
            again.len() >= 3
        })
        .await?;
        let idx = seen.iter().position(|s| s.0 == back).unwrap_or(0);
        assert_eq!(again[0].1, seen[idx + 1].1);
    }
    fs.releasedir(fh);

    // readdirplus counts lookups only for entries that fit.
    let before = fs.cached_inodes();
    let fh = fs.opendir(big).await?;
    let mut n = 0;
    fs.readdirplus(big, fh, 0, |_, _, _| {
        n += 1;
        n > 20
    })
    .await?;
    fs.releasedir(fh);
    // ".", ".." and 18 entries were accepted; the 21st was refused.
    assert_eq!(fs.cached_inodes(), before + 18);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_drops_inodes() -> TestResult {
    let store = Arc::new(MemoryStore::new());
    put(store.as_ref(), "a/b/c", b"1").await;
    let fs = new_fs(store, small_cfg());
    let a = lookup(&fs, "a").await?;
    let b = lookup(&fs, "a/b").await?;
    let c = lookup(&fs, "a/b/c").await?;
    assert_eq!(fs.cached_inodes(), 4);
    // A second lookup is a second reference.
    let c2 = lookup(&fs, "a/b/c").await?;
    assert_eq!(c.ino, c2.ino);
    fs.forget(c.ino, 1);
    assert_eq!(fs.cached_inodes(), 4);
    // The path walks looked "a" up 4 times and "a/b" 3 times.
    fs.forget(a.ino, 4);
    fs.forget(b.ino, 3);
    assert_eq!(fs.cached_inodes(), 4, "children keep their parents");
    fs.forget(c.ino, 1);
    assert_eq!(fs.cached_inodes(), 1);
    // A new lookup gives the same inode number again (derived from the key).
    let c3 = lookup(&fs, "a/b/c").await?;
    assert_eq!(c3.ino, c.ino);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_read_back_and_small_files() -> TestResult {
    let store = CountingStore::new();
    let fs = new_fs(store.clone(), small_cfg());
    // Empty file created and closed: a zero-byte object.
    let e = write_file(&fs, 1, "empty", b"").await;
    assert_eq!(store.head("empty", None).await?.size, 0);
    assert_eq!(read_file(&fs, e).await, b"");
    // Small file: one put, no multipart.
    store.counts.reset();
    let ino = write_file(&fs, 1, "small", b"hello world").await;
    assert_eq!(Counts::get(&store.counts.completes), 0);
    assert_eq!(read_file(&fs, ino).await, b"hello world");
    // Large file: parts uploaded while writing (before any flush).
    let data = pattern(10 * 64 * 1024 + 123, 1);
    let (e, fh) = fs.create(1, os("big"), 0o100644, libc::O_RDWR, ME).await?;
    store.counts.reset();
    for (i, c) in data.chunks(100_000).enumerate() {
        fs.write(e.ino, fh, (i * 100_000) as u64, c).await?;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        Counts::get(&store.counts.parts) >= 8,
        "parts go up while writing"
    );
    assert_eq!(Counts::get(&store.counts.completes), 0);
    // Reads of the same mount see the data before close (this one checkpoints).
    let got = fs.read(e.ino, fh, 64 * 1024 * 3 + 5, 1000).await?;
    assert_eq!(&got[..], &data[64 * 1024 * 3 + 5..64 * 1024 * 3 + 1005]);
    let attr = fs.getattr(e.ino).await?;
    assert_eq!(attr.size, data.len() as u64);
    fs.flush(e.ino, fh).await?;
    fs.release(e.ino, fh).await?;
    assert_eq!(read_file(&fs, e.ino).await, data);
    assert_eq!(store.inner.list_multipart_uploads("").await?.len(), 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_ranges_become_part_copies() -> TestResult {
    let store = CountingStore::new();
    let fs = new_fs(store.clone(), small_cfg());
    let chunk = 64 * 1024usize;
    let mut data = pattern(10 * chunk + 100, 2);
    let ino = write_file(&fs, 1, "f", &data).await;

    // Overwrite 100 bytes in the middle of chunk 4.
    store.counts.reset();
    let fh = fs.open(ino, libc::O_RDWR).await?;
    let patch = vec![0xAAu8; 100];
    let at = 4 * chunk + 10_000;
    fs.write(ino, fh, at as u64, &patch).await?;
    fs.release(ino, fh).await?;
    data[at..at + 100].copy_from_slice(&patch);
    assert_eq!(read_file(&fs, ino).await, data);
    let c = &store.counts;
    // Only the 100 bytes are sent; what lies before and after them is one copy each.
    assert_eq!(Counts::get(&c.part_bytes), 100);
    assert_eq!(Counts::get(&c.part_copies), 2);
    assert_eq!(Counts::get(&c.part_copy_bytes), data.len() as u64 - 100);

    // Append 50 bytes: everything before is copied, only the 50 bytes are sent, with the
    // 100 old bytes of the last chunk (a run that short goes with its neighbour's upload).
    c.reset();
    let fh = fs.open(ino, libc::O_WRONLY).await?;
    let tail = vec![0x55u8; 50];
    fs.write(ino, fh, data.len() as u64, &tail).await?;
    fs.release(ino, fh).await?;
    data.extend_from_slice(&tail);
    assert_eq!(read_file(&fs, ino).await, data);
    assert_eq!(Counts::get(&c.part_bytes), 150);
    assert_eq!(Counts::get(&c.part_copy_bytes), data.len() as u64 - 150);

    // Truncate to a shorter, unaligned size: nothing is sent.
    c.reset();
    let new_len = 3 * chunk + 7;
    fs.setattr(
        ino,
        SetAttr {
            size: Some(new_len as u64),
            ..Default::default()
        },
    )
    .await?;
    data.truncate(new_len);
    assert_eq!(Counts::get(&c.part_bytes), 0);
    assert_eq!(Counts::get(&c.put_bytes), 0);
    assert_eq!(read_file(&fs, ino).await, data);

    // Grow by truncate: zeros, unchanged bytes copied.
    c.reset();
    let grown = 5 * chunk + 3;
    fs.setattr(
        ino,
        SetAttr {
            size: Some(grown as u64),
            ..Default::default()
        },
    )
    .await?;
    data.resize(grown, 0);
    assert_eq!(Counts::get(&c.part_copy_bytes), new_len as u64);
    assert_eq!(Counts::get(&c.part_bytes) + Counts::get(&c.put_bytes), 0);
    assert_eq!(Counts::get(&c.zero_part_bytes), (grown - new_len) as u64);
    assert_eq!(read_file(&fs, ino).await, data);
    assert_eq!(fs.getattr(ino).await?.size, grown as u64);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_part_size_gives_one_part_per_chunk() -> TestResult {
    let store = CountingStore::with_min_part(64 * 1024);
    let fs = new_fs(store.clone(), small_cfg());
    let chunk = 64 * 1024usize;
    let mut data = pattern(4 * chunk + 10, 3);
    let ino = write_file(&fs, 1, "f", &data).await;
    store.counts.reset();
    let fh = fs.open(ino, libc::O_WRONLY).await?;
    fs.write(ino, fh, data.len() as u64, b"tail").await?;
    fs.release(ino, fh).await?;
    data.extend_from_slice(b"tail");
    assert_eq!(read_file(&fs, ino).await, data);
    // The last chunk (10 old bytes + 4 new) is one part; the 4 full chunks are copies.
    assert_eq!(Counts::get(&store.counts.part_copies), 4);
    assert_eq!(Counts::get(&store.counts.parts), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrite_of_uploaded_part_checkpoints_and_stays_correct() -> TestResult {
    let store = CountingStore::new();
    let fs = new_fs(store.clone(), small_cfg());
    let chunk = 64 * 1024usize;
    let mut data = pattern(6 * chunk, 4);
    let (e, fh) = fs.create(1, os("zip"), 0o100644, libc::O_RDWR, ME).await?;
    fs.write(e.ino, fh, 0, &data).await?;
    // Patch the "header" as archive writers do.
    fs.write(e.ino, fh, 10, b"HEADER").await?;
    data[10..16].copy_from_slice(b"HEADER");
    fs.write(e.ino, fh, data.len() as u64, b"more").await?;
    data.extend_from_slice(b"more");
    fs.release(e.ino, fh).await?;
    assert_eq!(read_file(&fs, e.ino).await, data);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_failure_is_reported_and_previous_version_stays() -> TestResult {
    let store = CountingStore::new();
    let fs = new_fs(store.clone(), small_cfg());
    let old = pattern(3 * 64 * 1024, 5);
    let ino = write_file(&fs, 1, "f", &old).await;
    let v_before = store.head("f", None).await?.version;

    let fh = fs.open(ino, libc::O_WRONLY).await?;
    store.fail_uploads.store(true, Ordering::SeqCst);
    fs.write(ino, fh, 0, &pattern(64 * 1024, 9)).await.ok();
    let r = fs.flush(ino, fh).await;
    assert_eq!(errno(r), libc::EIO);
    store.fail_uploads.store(false, Ordering::SeqCst);
    fs.release(ino, fh).await?;
    assert_eq!(store.head("f", None).await?.version, v_before);
    assert_eq!(read_file(&fs, ino).await, old);

    // Small file through put.
    let fh = fs.open(ino, libc::O_WRONLY).await?;
    fs.setattr(
        ino,
        SetAttr {
            size: Some(5),
            fh: Some(fh),
            ..Default::default()
        },
    )
    .await?;
    store.fail_uploads.store(true, Ordering::SeqCst);
    assert_eq!(errno(fs.release(ino, fh).await), libc::EIO);
    store.fail_uploads.store(false, Ordering::SeqCst);
    assert_eq!(read_file(&fs, ino).await, old);
    Ok(())
}

/// A full store is ENOSPC to the caller wherever the failure surfaces (a background part
/// upload reported at close, the put of a small file at release, the sync of an fsync), and
/// the previous version stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_store_is_enospc_at_flush_release_and_fsync() -> TestResult {
    let store = CountingStore::new();
    let fs = new_fs(store.clone(), small_cfg());
    let old = pattern(3 * 64 * 1024, 6);
    let ino = write_file(&fs, 1, "f", &old).await;
    let v_before = store.head("f", None).await?.version;

    // A part uploaded in the background fails; close reports it.
    let fh = fs.open(ino, libc::O_WRONLY).await?;
    store.full.store(true, Ordering::SeqCst);
    fs.write(ino, fh, 0, &pattern(64 * 1024, 10)).await.ok();
    assert_eq!(errno(fs.flush(ino, fh).await), libc::ENOSPC);
    store.full.store(false, Ordering::SeqCst);
    fs.release(ino, fh).await?;
    assert_eq!(store.head("f", None).await?.version, v_before);

    // A small file is one put at the last release.
    let (e, fh) = fs
        .create(1, os("small"), 0o100644, libc::O_WRONLY, ME)
        .await?;
    fs.write(e.ino, fh, 0, b"hello").await?;
    store.full.store(true, Ordering::SeqCst);
    assert_eq!(errno(fs.release(e.ino, fh).await), libc::ENOSPC);
    store.full.store(false, Ordering::SeqCst);

    // fsync: the sync that makes the version durable fails.
    let fh = fs.open(ino, libc::O_RDONLY).await?;
    store.full.store(true, Ordering::SeqCst);
    assert_eq!(errno(fs.fsync(ino, fh, false).await), libc::ENOSPC);
    store.full.store(false, Ordering::SeqCst);
    fs.release(ino, fh).await?;
    assert_eq!(read_file(&fs, ino).await, old);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_budget_bounds_buffers_and_never_deadlocks() -> TestResult {
    let store = CountingStore::new();
    let cfg = FsConfig {
        max_memory: 256 * 1024,
        ..small_cfg()
    };
    let fs = new_fs(store.clone(), cfg);
    // Several files open at once, written round-robin with partial chunks.
    let mut files = Vec::new();
    for i in 0..6 {
        let (e, fh) = fs
            .create(1, os(&format!("f{i}")), 0o100644, libc::O_WRONLY, ME)
            .await?;
        files.push((e.ino, fh, Vec::new()));
    }
    for round in 0..12 {
        for (i, (ino, fh, data)) in files.iter_mut().enumerate() {
            let piece = pattern(40_000, (round * 7 + i) as u8);
            fs.write(*ino, *fh, data.len() as u64, &piece).await?;
            data.extend_from_slice(&piece);
        }
    }
    for (ino, fh, data) in &files {
        fs.release(*ino, *fh).await?;
        assert_eq!(&read_file(&fs, *ino).await, data);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_files_and_directories() -> TestResult {
    let store = CountingStore::new();
    let fs = new_fs(store.clone(), small_cfg());
    let d = fs.mkdir(1, os("src"), 0o755, ME).await?;
    let sub = fs.mkdir(d.ino, os("sub"), 0o700, ME).await?;
    write_file(&fs, d.ino, "a", b"A").await;
    let big = pattern(5 * 64 * 1024, 6);
    write_file(&fs, sub.ino, "b", &big).await;

    // File rename: a copy of metadata, no data parts.
    store.counts.reset();
    fs.rename(d.ino, os("a"), 1, os("a2"), 0).await?;
    assert_eq!(Counts::get(&store.counts.parts), 0);
    assert_eq!(Counts::get(&store.counts.put_bytes), 0);
    assert_eq!(errno(lookup(&fs, "src/a").await), libc::ENOENT);
    let a2 = lookup(&fs, "a2").await?;
    assert_eq!(read_file(&fs, a2.ino).await, b"A");

    // Directory rename moves every key, marker included; cached inodes follow.
    let b_before = lookup(&fs, "src/sub/b").await?;
    fs.rename(1, os("src"), 1, os("dst"), 0).await?;
    assert_eq!(errno(lookup(&fs, "src").await), libc::ENOENT);
    let b = lookup(&fs, "dst/sub/b").await?;
    assert_eq!(b.ino, b_before.ino);
    assert_eq!(read_file(&fs, b.ino).await, big);
    assert!(store.head("dst/", None).await.is_ok());
    assert!(store.head("dst/sub/", None).await.is_ok());
    assert_eq!(lookup(&fs, "dst/sub").await?.attr.perm, 0o700);
    let left = store
        .list(&ListRequest {
            prefix: "src/".into(),
            ..Default::default()
        })
        .await?;
    assert!(left.objects.is_empty());

    // POSIX errors.
    write_file(&fs, 1, "f1", b"1").await;
    write_file(&fs, 1, "f2", b"2").await;
    fs.mkdir(1, os("e1"), 0o755, ME).await?;
    assert_eq!(
        errno(
            fs.rename(1, os("f1"), 1, os("f2"), libc::RENAME_NOREPLACE)
                .await
        ),
        libc::EEXIST
    );
    assert_eq!(
        errno(fs.rename(1, os("f1"), 1, os("dst"), 0).await),
        libc::EISDIR
    );
    assert_eq!(
        errno(fs.rename(1, os("dst"), 1, os("f1"), 0).await),
        libc::ENOTDIR
    );
    assert_eq!(
        errno(fs.rename(1, os("e1"), 1, os("dst"), 0).await),
        libc::ENOTEMPTY
    );
    assert_eq!(
        errno(fs.rename(1, os("nope"), 1, os("x"), 0).await),
        libc::ENOENT
    );
    // Over an existing file: replaced.
    fs.rename(1, os("f1"), 1, os("f2"), 0).await?;
    let f2 = lookup(&fs, "f2").await?;
    assert_eq!(read_file(&fs, f2.ino).await, b"1");
    // A directory over an empty directory.
    fs.rename(1, os("dst"), 1, os("e1"), 0).await?;
    assert_eq!(
        read_file(&fs, lookup(&fs, "e1/sub/b").await?.ino).await,
        big
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_of_a_file_open_for_writing() -> TestResult {
    let store = Arc::new(MemoryStore::new());
    let fs = new_fs(store.clone(), small_cfg());
    let (e, fh) = fs
        .create(1, os("tmp"), 0o100644, libc::O_WRONLY, ME)
        .await?;
    fs.write(e.ino, fh, 0, b"first ").await?;
    fs.rename(1, os("tmp"), 1, os("final"), 0).await?;
    fs.write(e.ino, fh, 6, b"second").await?;
    fs.release(e.ino, fh).await?;
    assert!(store.head("tmp", None).await.is_err());
    let f = lookup(&fs, "final").await?;
    assert_eq!(read_file(&fs, f.ino).await, b"first second");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attributes_and_xattrs_persist_across_a_new_core() -> TestResult {
    let store = Arc::new(MemoryStore::new());
    let t = UNIX_EPOCH + Duration::new(1_600_000_000, 123_456_789);
    {
        let fs = new_fs(store.clone(), small_cfg());
        let ino = write_file(&fs, 1, "f", b"data").await;
        fs.setattr(
            ino,
            SetAttr {
                mode: Some(0o100600),
                uid: Some(4242),
                gid: Some(4343),
                mtime: Some(SetTime::At(t)),
                ..Default::default()
            },
        )
        .await?;
        let d = fs.mkdir(1, os("d"), 0o711, ME).await?;
        fs.setattr(
            d.ino,
            SetAttr {
                uid: Some(7),
                ..Default::default()
            },
        )
        .await?;
        fs.symlink(1, os("l"), p("f"), ME).await?;
        fs.setxattr(ino, os("user.color"), b"blue", 0).await?;
        fs.setxattr(ino, os("user.bin"), &[0, 1, 2, 255], 0).await?;
        fs.setxattr(d.ino, os("user.dir"), b"yes", 0).await?;
        assert_eq!(
            errno(
                fs.setxattr(ino, os("user.color"), b"x", libc::XATTR_CREATE)
                    .await
            ),
            libc::EEXIST
        );
        assert_eq!(
            errno(fs.setxattr(ino, os("security.x"), b"x", 0).await),
            libc::ENOTSUP
        );
        fs.removexattr(ino, os("user.bin")).await?;
        fs.setxattr(ino, os("user.bin"), &[9, 0, 9], 0).await?;
        // Implicit directory gets a marker for its attributes.
        store
            .put("imp/x", Body::from(&b"1"[..]), PutOptions::default())
            .await?;
        let imp = lookup(&fs, "imp").await?;
        fs.setattr(
            imp.ino,
            SetAttr {
                mode: Some(0o700),
                ..Default::default()
            },
        )
        .await?;
    }
    assert_eq!(
        store
            .head("f", None)
            .await?
            .metadata
            .get("x-amz-meta-mode")
            .map(String::as_str),
        Some("33152")
    );
    let fs = new_fs(store.clone(), small_cfg());
    let f = lookup(&fs, "f").await?;
    assert_eq!(f.attr.perm, 0o600);
    assert_eq!(f.attr.uid, 4242);
    assert_eq!(f.attr.gid, 4343);
    assert_eq!(f.attr.mtime, t);
    assert_eq!(read_file(&fs, f.ino).await, b"data");
    let d = lookup(&fs, "d").await?;
    assert_eq!(d.attr.perm, 0o711);
    assert_eq!(d.attr.uid, 7);
    let l = lookup(&fs, "l").await?;
    assert_eq!(l.attr.kind, Kind::Symlink);
    assert_eq!(&fs.readlink(l.ino).await?[..], b"f");
    assert_eq!(fs.getxattr(f.ino, os("user.color")).await?, b"blue");
    assert_eq!(fs.getxattr(f.ino, os("user.bin")).await?, vec![9, 0, 9]);
    let names = fs.listxattr(f.ino).await?;
    assert_eq!(names, b"user.bin\0user.color\0");
    assert_eq!(fs.getxattr(d.ino, os("user.dir")).await?, b"yes");
    assert_eq!(
        errno(fs.getxattr(f.ino, os("user.none")).await),
        libc::ENODATA
    );
    for name in ["security.selinux", "system.posix_acl_access", "trusted.x"] {
        assert_eq!(errno(fs.getxattr(f.ino, os(name)).await), libc::ENOTSUP);
        assert_eq!(errno(fs.removexattr(f.ino, os(name)).await), libc::ENOTSUP);
    }
    assert_eq!(lookup(&fs, "imp").await?.attr.perm, 0o700);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_numbers() -> TestResult {
    let store = Arc::new(MemoryStore::new());
    let fs = new_fs(store.clone(), small_cfg());
    let d = fs.mkdir(1, os("d"), 0o755, ME).await?;
    write_file(&fs, d.ino, "f", b"1").await;
    assert_eq!(errno(fs.mkdir(1, os("d"), 0o755, ME).await), libc::EEXIST);
    assert_eq!(errno(fs.rmdir(1, os("d")).await), libc::ENOTEMPTY);
    assert_eq!(errno(fs.unlink(1, os("d")).await), libc::EISDIR);
    assert_eq!(errno(fs.rmdir(d.ino, os("f")).await), libc::ENOTDIR);
    assert_eq!(errno(fs.unlink(1, os("missing")).await), libc::ENOENT);
    assert_eq!(
        errno(
            fs.create(d.ino, os("f"), 0o100644, libc::O_EXCL | libc::O_WRONLY, ME)
                .await
        ),
        libc::EEXIST
    );
    let long = "n".repeat(256);
    assert_eq!(errno(fs.lookup(1, os(&long)).await), libc::ENAMETOOLONG);
    assert_eq!(
        errno(fs.mkdir(1, os(&long), 0o755, ME).await),
        libc::ENAMETOOLONG
    );
    // A key longer than the store's 4,096 bytes through nesting (20 x 201 = 4,020 is fine).
    let mut parent = 1;
    let comp = "c".repeat(200);
    for _ in 0..20 {
        parent = fs.mkdir(parent, os(&comp), 0o755, ME).await?.ino;
    }
    assert_eq!(
        errno(
            fs.create(parent, os(&comp), 0o100644, libc::O_WRONLY, ME)
                .await
        ),
        libc::ENAMETOOLONG
    );
    let f = lookup(&fs, "d/f").await?;
    assert_eq!(errno(fs.link(f.ino, 1, os("d")).await), libc::EEXIST);
    assert_eq!(errno(fs.link(d.ino, 1, os("hard")).await), libc::EPERM);
    let fifo = fs
        .mknod(1, os("fifo"), libc::S_IFIFO | 0o644, 0, ME)
        .await?;
    assert_eq!(fifo.attr.kind, Kind::Fifo);
    let dev = fs
        .mknod(1, os("dev"), libc::S_IFCHR | 0o600, 0x0103, ME)
        .await?;
    assert_eq!((dev.attr.kind, dev.attr.rdev), (Kind::CharDev, 0x0103));
    assert_eq!(
        errno(fs.mknod(1, os("fifo"), libc::S_IFIFO | 0o644, 0, ME).await),
        libc::EEXIST
    );
    fs.mknod(1, os("regular"), libc::S_IFREG | 0o644, 0, ME)
        .await?;
    // rmdir of the last entry of an implicit directory keeps the directory.
    store
        .put("imp/only", Body::from(&b"1"[..]), PutOptions::default())
        .await?;
    let imp = lookup(&fs, "imp").await?;
    fs.unlink(imp.ino, os("only")).await?;
    assert!(lookup(&fs, "imp").await.is_ok());
    fs.rmdir(1, os("imp")).await?;
    assert_eq!(errno(lookup(&fs, "imp").await), libc::ENOENT);

    // Read-only mount.
    let ro = new_fs(
        store.clone(),
        FsConfig {
            read_only: true,
            ..small_cfg()
        },
    );
    assert_eq!(errno(ro.mkdir(1, os("x"), 0o755, ME).await), libc::EROFS);
    let f = lookup(&ro, "d/f").await?;
    assert_eq!(errno(ro.open(f.ino, libc::O_WRONLY).await), libc::EROFS);
    assert_eq!(read_file(&ro, f.ino).await, b"1");
    assert_eq!(errno(ro.unlink(1, os("regular")).await), libc::EROFS);
    let st = ro.statfs().await?;
    assert_eq!(st.bsize, 4096);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_handles_pin_one_version_and_see_local_writes() -> TestResult {
    let store = Arc::new(MemoryStore::new());
    let fs = new_fs(store.clone(), small_cfg());
    let ino = write_file(&fs, 1, "f", b"version one").await;
    let rfh = fs.open(ino, libc::O_RDONLY).await?;
    assert_eq!(&fs.read(ino, rfh, 0, 100).await?[..], b"version one");
    // Another client replaces the object: this handle keeps reading its version.
    store
        .put("f", Body::from(&b"external v2"[..]), PutOptions::default())
        .await?;
    assert_eq!(&fs.read(ino, rfh, 0, 100).await?[..], b"version one");
    // A write through this mount is seen by the open handle (one page cache per mount).
    let wfh = fs.open(ino, libc::O_WRONLY).await?;
    fs.write(ino, wfh, 0, b"LOCAL").await?;
    assert_eq!(&fs.read(ino, rfh, 0, 100).await?[..], b"LOCALnal v2");
    fs.release(ino, wfh).await?;
    assert_eq!(&fs.read(ino, rfh, 0, 100).await?[..], b"LOCALnal v2");
    fs.release(ino, rfh).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_reads_prefetch_and_cache_is_bounded() -> TestResult {
    let store = CountingStore::new();
    let cfg = FsConfig {
        cache_size: 4 * 1024 * 1024,
        ..small_cfg()
    };
    let fs = new_fs(store.clone(), cfg);
    let data = pattern(12 * 1024 * 1024 + 17, 8);
    store
        .inner
        .put("big", Body::from(data.clone()), PutOptions::default())
        .await?;
    let e = lookup(&fs, "big").await?;
    store.counts.reset();
    assert_eq!(read_file(&fs, e.ino).await, data);
    // Fetched in large ranged gets, not one per 128 KiB read.
    assert!(
        Counts::get(&store.counts.gets) < 30,
        "{} gets",
        Counts::get(&store.counts.gets)
    );
    assert!(fs.cached_bytes() <= 4 * 1024 * 1024);
    // Random reads are right too.
    let fh = fs.open(e.ino, libc::O_RDONLY).await?;
    for off in [5_000_000u64, 17, 12 * 1024 * 1024, 3_333_333] {
        let got = fs.read(e.ino, fh, off, 4096).await?;
        let end = (off as usize + 4096).min(data.len());
        assert_eq!(&got[..], &data[off as usize..end]);
    }
    fs.release(e.ino, fh).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlinked_open_file_is_not_recreated() -> TestResult {
    let store = Arc::new(MemoryStore::new());
    let fs: Arc<ObjFs> = new_fs(store.clone(), small_cfg());
    let (e, fh) = fs.create(1, os("gone"), 0o100644, libc::O_RDWR, ME).await?;
    fs.write(e.ino, fh, 0, b"temp data").await?;
    fs.unlink(1, os("gone")).await?;
    assert_eq!(&fs.read(e.ino, fh, 0, 100).await?[..], b"temp data");
    fs.release(e.ino, fh).await?;
    assert!(store.head("gone", None).await.is_err());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unlinked_open_file_keeps_what_its_checkpoints_staged() -> TestResult {
    let store = CountingStore::new();
    let fs = new_fs(store.clone(), small_cfg());
    let chunk = 64 * 1024usize;
    let (e, fh) = fs.create(1, os("tmp"), 0o100644, libc::O_RDWR, ME).await?;
    fs.unlink(1, os("tmp")).await?;
    let mut data = pattern(4 * chunk, 6);
    fs.write(e.ino, fh, 0, &data).await?;
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Into an uploaded chunk: a checkpoint, staged although the file has no name.
    fs.write(e.ino, fh, 7, b"again").await?;
    data[7..12].copy_from_slice(b"again");
    assert_eq!(staged_versions(store.as_ref()).await, 1);
    assert_eq!(
        &fs.read(e.ino, fh, 0, data.len() as u32).await?[..],
        &data[..]
    );
    fs.release(e.ino, fh).await?;
    assert!(store.head("tmp", None).await.is_err());
    assert_eq!(staged_versions(store.as_ref()).await, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsync_and_flush_all() -> TestResult {
    let store = Arc::new(MemoryStore::new());
    let fs = new_fs(store.clone(), small_cfg());
    let (e, fh) = fs.create(1, os("f"), 0o100644, libc::O_WRONLY, ME).await?;
    fs.write(e.ino, fh, 0, b"abc").await?;
    fs.fsync(e.ino, fh, false).await?;
    assert_eq!(store.head("f", None).await?.size, 3);
    fs.write(e.ino, fh, 3, b"def").await?;
    fs.flush_all().await?;
    assert_eq!(store.head("f", None).await?.size, 6);
    fs.release(e.ino, fh).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dir_wins_across_listing_pages() -> TestResult {
    let store = Arc::new(MemoryStore::new());
    // "x" (a file), then 2500 names that sort between "x" and "x/" ('-' < '/'), then "x/".
    put(store.as_ref(), "x", b"shadowed").await;
    for i in 0..2500 {
        store
            .put(
                &format!("x-{i:05}"),
                Body::from(&b"."[..]),
                PutOptions::default(),
            )
            .await?;
    }
    put(store.as_ref(), "x/inside", b"1").await;
    put(store.as_ref(), "y", b"plain file").await;
    let fs = new_fs(store.clone(), small_cfg());
    let all = list_dir(&fs, 1).await;
    assert_eq!(all.len(), 2502);
    let xs: Vec<_> = all.iter().filter(|(n, _)| n == "x").collect();
    assert_eq!(xs.len(), 1);
    assert_eq!(xs[0].1, Kind::Dir);
    assert!(all.iter().any(|(n, k)| n == "y" && *k == Kind::File));
    assert_eq!(errno(fs.unlink(1, os("x")).await), libc::EISDIR);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_while_a_multipart_upload_is_in_flight() -> TestResult {
    let store = CountingStore::new();
    let fs = new_fs(store.clone(), small_cfg());
    let d = fs.mkdir(1, os("d"), 0o755, ME).await?;
    let (e, fh) = fs
        .create(d.ino, os("f"), 0o100644, libc::O_WRONLY, ME)
        .await?;
    let mut data = pattern(3 * 64 * 1024 + 10, 11);
    fs.write(e.ino, fh, 0, &data).await?;
    fs.rename(1, os("d"), 1, os("d2"), 0).await?;
    let more = pattern(2 * 64 * 1024, 12);
    fs.write(e.ino, fh, data.len() as u64, &more).await?;
    data.extend_from_slice(&more);
    fs.release(e.ino, fh).await?;
    assert!(store.head("d/f", None).await.is_err(), "old key stays gone");
    let f = lookup(&fs, "d2/f").await?;
    assert_eq!(f.ino, e.ino);
    assert_eq!(read_file(&fs, f.ino).await, data);
    assert!(store.inner.list_multipart_uploads("").await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xattrs_and_chmod_of_an_open_file_land_at_close() -> TestResult {
    let store = Arc::new(MemoryStore::new());
    let fs = new_fs(store.clone(), small_cfg());
    let (e, fh) = fs.create(1, os("f"), 0o100644, libc::O_WRONLY, ME).await?;
    fs.write(e.ino, fh, 0, b"abc").await?;
    fs.setxattr(e.ino, os("user.a"), b"1", 0).await?;
    fs.setattr(
        e.ino,
        SetAttr {
            mode: Some(0o640),
            ..Default::default()
        },
    )
    .await?;
    assert_eq!(fs.getxattr(e.ino, os("user.a")).await?, b"1");
    fs.release(e.ino, fh).await?;
    let info = store.head("f", None).await?;
    assert_eq!(info.size, 3);
    assert_eq!(
        info.metadata
            .get("x-objfs-xattr-user.a")
            .map(String::as_str),
        Some("1")
    );
    assert_eq!(
        info.metadata.get("x-amz-meta-mode").map(String::as_str),
        Some("33184")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_and_readers() -> TestResult {
    let store = Arc::new(MemoryStore::new());
    let fs = new_fs(
        store.clone(),
        FsConfig {
            max_memory: 1024 * 1024,
            ..small_cfg()
        },
    );
    let mut tasks = Vec::new();
    for t in 0..8u8 {
        let fs = fs.clone();
        tasks.push(tokio::spawn(async move {
            let name = format!("c{t}");
            let data = pattern(200_000 + t as usize * 1000, t);
            let ino = write_file(&fs, 1, &name, &data).await;
            for _ in 0..3 {
                assert_eq!(read_file(&fs, ino).await, data);
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    assert_eq!(list_dir(&fs, 1).await.len(), 8);
    Ok(())
}

/// A small deterministic generator for the differential test.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

/// Random writes, truncates, reads, flushes and reopens against a `Vec<u8>` model, with
/// tiny parts and a tiny memory budget so checkpoints, copies and spills all happen.
async fn differential(seed: u64, min_part: u64) -> TestResult {
    let base = CountingStore::new();
    let store = Arc::new(CountingStore {
        inner: base.inner.clone(),
        counts: Default::default(),
        fail_uploads: Default::default(),
        full: Default::default(),
        min_part,
        delay_us: Default::default(),
        copies_move_bytes: Default::default(),
    });
    let cfg = FsConfig {
        part_size: 64 * 1024,
        max_memory: 1024 * 1024,
        cache_size: 4 * 1024 * 1024,
        ..small_cfg()
    };
    let fs = new_fs(store.clone(), cfg);
    let mut rng = Lcg(seed);
    let mut model: Vec<u8> = Vec::new();
    let ino = write_file(&fs, 1, "f", &model).await;
    let mut committed = model.clone();
    let mut fh = fs.open(ino, libc::O_RDWR).await?;
    for step in 0..300 {
        match rng.below(10) {
            0..=4 => {
                let len = 1 + rng.below(150_000) as usize;
                let off = rng.below(model.len() as u64 + 100_000) as usize;
                let data = pattern(len, rng.below(256) as u8);
                fs.write(ino, fh, off as u64, &data).await?;
                if model.len() < off + len {
                    model.resize(off + len, 0);
                }
                model[off..off + len].copy_from_slice(&data);
            }
            5 => {
                let size = rng.below(model.len() as u64 * 2 + 1000) as usize;
                fs.setattr(
                    ino,
                    SetAttr {
                        size: Some(size as u64),
                        fh: Some(fh),
                        ..Default::default()
                    },
                )
                .await?;
                model.resize(size, 0);
            }
            6 | 7 => {
                let off = rng.below(model.len() as u64 + 10);
                let len = 1 + rng.below(200_000);
                let got = fs.read(ino, fh, off, len as u32).await?;
                let s = (off as usize).min(model.len());
                let e = (off + len).min(model.len() as u64) as usize;
                assert_eq!(
                    &got[..],
                    &model[s..e.max(s)],
                    "seed {seed} step {step} read {off}+{len}"
                );
            }
            8 => {
                fs.flush(ino, fh).await?;
                committed = model.clone();
            }
            _ => {
                fs.release(ino, fh).await?;
                committed = model.clone();
                assert_eq!(
                    read_file(&fs, ino).await,
                    model,
                    "seed {seed} step {step} reopen"
                );
                fh = fs.open(ino, libc::O_RDWR).await?;
            }
        }
        assert_eq!(fs.getattr(ino).await?.size, model.len() as u64);
        if store.features().zero_copy {
            // Checkpoints are staged: the store's current version is what the last commit
            // made (what a crash of the mount would leave), whatever was written since.
            let current = store.get("f", Default::default()).await?.bytes().await?;
            assert!(
                current[..] == committed[..],
                "seed {seed} step {step}: the current version is not the last commit"
            );
        }
    }
    fs.release(ino, fh).await?;
    assert_eq!(staged_versions(store.as_ref()).await, 0);
    assert_eq!(read_file(&fs, ino).await, model);
    // A new core on the same store reads the same bytes.
    let fs2 = new_fs(store.clone(), small_cfg());
    let e = lookup(&fs2, "f").await?;
    assert_eq!(read_file(&fs2, e.ino).await, model);
    assert!(store.inner.list_multipart_uploads("").await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn differential_random_io() -> TestResult {
    for seed in 1..=6 {
        differential(seed, 0).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn differential_random_io_with_min_part_size() -> TestResult {
    for seed in 100..=103 {
        differential(seed, 64 * 1024).await?;
    }
    Ok(())
}

/// rsync's per-file sequence, with release (which the kernel sends after `close()` has
/// returned) racing the setattr calls that follow the close. Every setattr that returned must
/// be in the store, as a fresh core over the same store (a remount) sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn setattr_racing_release_is_never_lost() -> TestResult {
    let store = CountingStore::new();
    // Commits that take a while, as on a real store, leave room for the race.
    store.delay_us.store(300, Ordering::SeqCst);
    let fs = new_fs(store.clone(), small_cfg());
    let want_mtime = UNIX_EPOCH + Duration::from_secs(1_500_000_000);
    let mut tasks = Vec::new();
    for i in 0..400u32 {
        let fs = fs.clone();
        tasks.push(tokio::spawn(async move {
            let tmp = format!(".f{i}.tmp");
            let (e, fh) = fs
                .create(
                    1,
                    os(&tmp),
                    0o100600,
                    libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
                    ME,
                )
                .await?;
            let chmod = |mode| SetAttr {
                mode: Some(mode),
                ..Default::default()
            };
            fs.setattr(
                e.ino,
                SetAttr {
                    fh: Some(fh),
                    ..chmod(0o600)
                },
            )
            .await?;
            fs.write(e.ino, fh, 0, format!("data {i}").as_bytes())
                .await?;
            fs.flush(e.ino, fh).await?;
            // close() has returned; release arrives whenever the kernel sends it.
            let release = {
                let fs = fs.clone();
                tokio::spawn(async move {
                    if i % 3 == 0 {
                        tokio::task::yield_now().await;
                    }
                    fs.release(e.ino, fh).await
                })
            };
            fs.setattr(
                e.ino,
                SetAttr {
                    mtime: Some(SetTime::At(want_mtime)),
                    atime: Some(SetTime::At(want_mtime)),
                    ..Default::default()
                },
            )
            .await?;
            let rfh = fs.open(e.ino, libc::O_RDONLY).await?;
            fs.setattr(
                e.ino,
                SetAttr {
                    fh: Some(rfh),
                    ..chmod(0o644)
                },
            )
            .await?;
            fs.flush(e.ino, rfh).await?;
            fs.release(e.ino, rfh).await?;
            release
                .await
                .map_err(|e| objfs_fs::FsError::Internal(e.to_string()))??;
            fs.rename(1, os(&tmp), 1, os(&format!("f{i}")), 0).await?;
            Ok::<(), objfs_fs::FsError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    fs.flush_all().await?;
    store.delay_us.store(0, Ordering::SeqCst);
    let again = new_fs(store.clone(), small_cfg());
    let mut wrong = Vec::new();
    for i in 0..400u32 {
        let e = lookup(&again, &format!("f{i}")).await?;
        if e.attr.perm != 0o644 || e.attr.mtime != want_mtime || e.attr.size == 0 {
            wrong.push((i, format!("{:o}", e.attr.perm), e.attr.mtime, e.attr.size));
        }
    }
    assert!(wrong.is_empty(), "files with lost attributes: {wrong:?}");
    Ok(())
}

/// Every version under the staging prefix (what writers staged and did not remove).
async fn staged_versions(store: &dyn ObjectStore) -> usize {
    let req = objfs_store::ListVersionsRequest {
        prefix: objfs_fs::write::STAGE_PREFIX.to_string(),
        ..Default::default()
    };
    store
        .list_versions(&req)
        .await
        .expect("list")
        .versions
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_is_staged_not_the_current_version() -> TestResult {
    let store = CountingStore::new();
    let fs = new_fs(store.clone(), small_cfg());
    let chunk = 64 * 1024usize;
    let old = pattern(4 * chunk, 1);
    let ino = write_file(&fs, 1, "f", &old).await;
    let v_old = store.head("f", None).await?.version;

    // Overwrite chunk 0 whole (it is uploaded at once), then patch it: a checkpoint.
    let fh = fs.open(ino, libc::O_RDWR).await?;
    let mut data = old.clone();
    let new0 = pattern(chunk, 7);
    fs.write(ino, fh, 0, &new0).await?;
    data[..chunk].copy_from_slice(&new0);
    tokio::time::sleep(Duration::from_millis(50)).await;
    fs.write(ino, fh, 100, b"patch").await?;
    data[100..105].copy_from_slice(b"patch");
    // The checkpoint did not touch the file's key: its current version is still the old one,
    // and the staged version is there instead.
    assert_eq!(store.head("f", None).await?.version, v_old);
    let got = store.get("f", Default::default()).await?.bytes().await?;
    assert_eq!(
        &got[..],
        &old[..],
        "a crash now would find the previous version"
    );
    assert_eq!(staged_versions(store.as_ref()).await, 1);
    // The mount reads what was written.
    assert_eq!(&fs.read(ino, fh, 0, 200).await?[..], &data[..200]);
    fs.flush(ino, fh).await?;
    fs.release(ino, fh).await?;
    assert_eq!(read_file(&fs, ino).await, data);
    assert_ne!(store.head("f", None).await?.version, v_old);
    assert_eq!(
        staged_versions(store.as_ref()).await,
        0,
        "the commit removes what it staged"
    );
    assert_eq!(store.list_multipart_uploads("").await?.len(), 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_file_checkpointed_is_not_in_the_store_until_its_close() -> TestResult {
    let store = CountingStore::new();
    let fs = new_fs(store.clone(), small_cfg());
    let chunk = 64 * 1024usize;
    let (e, fh) = fs.create(1, os("n"), 0o100644, libc::O_RDWR, ME).await?;
    let mut data = pattern(3 * chunk, 3);
    fs.write(e.ino, fh, 0, &data).await?;
    tokio::time::sleep(Duration::from_millis(50)).await;
    fs.write(e.ino, fh, 10, b"HEADER").await?;
    data[10..16].copy_from_slice(b"HEADER");
    assert_eq!(
        errno(store.head("n", None).await.map_err(FsError::from)),
        libc::ENOENT
    );
    // The mount shows it meanwhile, with its size.
    assert_eq!(fs.getattr(e.ino).await?.size, data.len() as u64);
    fs.release(e.ino, fh).await?;
    assert_eq!(read_file(&fs, e.ino).await, data);
    assert_eq!(staged_versions(store.as_ref()).await, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_after_a_checkpoint_keeps_the_previous_version() -> TestResult {
    let store = CountingStore::new();
    let fs = new_fs(store.clone(), small_cfg());
    let chunk = 64 * 1024usize;
    let old = pattern(3 * chunk, 5);
    let ino = write_file(&fs, 1, "f", &old).await;
    let fh = fs.open(ino, libc::O_RDWR).await?;
    fs.write(ino, fh, 0, &pattern(chunk, 8)).await?;
    tokio::time::sleep(Duration::from_millis(50)).await;
    fs.write(ino, fh, 5, b"x").await?;
    store.fail_uploads.store(true, Ordering::SeqCst);
    fs.write(ino, fh, chunk as u64, &pattern(chunk, 9))
        .await
        .ok();
    assert_eq!(errno(fs.flush(ino, fh).await), libc::EIO);
    store.fail_uploads.store(false, Ordering::SeqCst);
    fs.release(ino, fh).await.ok();
    assert_eq!(read_file(&fs, ino).await, old);
    assert_eq!(staged_versions(store.as_ref()).await, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reserved_root_name_is_hidden_and_refused() -> TestResult {
    let store = Arc::new(MemoryStore::new());
    put(store.as_ref(), ".objfs/stage/left-1", b"left over").await;
    put(store.as_ref(), "a", b"a").await;
    let fs = new_fs(store.clone(), small_cfg());
    let names: Vec<String> = list_dir(&fs, 1).await.into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, vec!["a".to_string()]);
    assert_eq!(errno(lookup(&fs, ".objfs").await), libc::ENOENT);
    assert_eq!(
        errno(fs.create(1, os(".objfs"), 0o100644, libc::O_RDWR, ME).await),
        libc::EPERM
    );
    assert_eq!(
        errno(fs.mkdir(1, os(".objfs"), 0o755, ME).await),
        libc::EPERM
    );
    // Below the root the name is an ordinary one.
    let d = fs.mkdir(1, os("d"), 0o755, ME).await?;
    write_file(&fs, d.ino, ".objfs", b"mine").await;
    assert_eq!(
        read_file(&fs, lookup(&fs, "d/.objfs").await?.ino).await,
        b"mine"
    );
    // What an earlier mount staged goes at the next mount.
    fs.clear_stage().await;
    assert_eq!(staged_versions(store.as_ref()).await, 0);
    assert_eq!(store.head("a", None).await?.size, 1);
    Ok(())
}
