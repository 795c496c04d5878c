//! The create path of the core: a new file lives in the mount only until its close (one store
//! commit per small file), names known absent answer without the store, and directory times
//! are written lazily.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use objfs_fs::{FsConfig, Kind};
use objfs_store::ObjectStore;

type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

fn cfg() -> FsConfig {
    FsConfig {
        attr_ttl: Duration::from_secs(5),
        ..small_cfg()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_write_close_is_one_store_commit() -> TestResult {
    let store = CountingStore::new();
    let fs = new_fs(store.clone(), cfg());
    let d = fs.mkdir(1, os("d"), 0o755, ME).await?.ino;
    store.counts.reset();
    for i in 0..10 {
        let name = format!("f{i}");
        // What the kernel does for open(O_CREAT): a lookup, then create.
        assert_eq!(errno(fs.lookup(d, os(&name)).await), libc::ENOENT);
        let (e, fh) = fs
            .create(d, os(&name), 0o100644, libc::O_WRONLY | libc::O_TRUNC, ME)
            .await?;
        fs.write(e.ino, fh, 0, b"four kib or so").await?;
        fs.flush(e.ino, fh).await?;
        fs.release(e.ino, fh).await?;
        fs.forget(e.ino, 1);
    }
    assert_eq!(store.counts.commits(), 10, "one commit per file");
    assert_eq!(Counts::get(&store.counts.puts), 10);
    // Lookups in a directory this mount just made ask the store nothing.
    assert_eq!(Counts::get(&store.counts.heads), 0);
    assert_eq!(Counts::get(&store.counts.lists), 0);
    // The directory's mtime waits in memory and is written once.
    fs.flush_times().await;
    assert_eq!(Counts::get(&store.counts.times_sets), 1);
    assert_eq!(store.head("d/f3", None).await?.size, 14);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_file_is_visible_here_and_an_empty_object_at_close() -> TestResult {
    let store = CountingStore::new();
    let fs = new_fs(store.clone(), cfg());
    let who = objfs_fs::Caller { uid: 4242, gid: 77 };
    let (e, fh) = fs
        .create(1, os("new"), 0o100640, libc::O_WRONLY, who)
        .await?;
    // Not in the store yet, but this mount shows it everywhere.
    assert!(store.head("new", None).await.is_err());
    let names: Vec<String> = list_dir(&fs, 1).await.into_iter().map(|e| e.0).collect();
    assert_eq!(names, vec!["new".to_string()]);
    let l = fs.lookup(1, os("new")).await?;
    assert_eq!(l.ino, e.ino);
    let a = fs.getattr(e.ino).await?;
    assert_eq!((a.size, a.perm, a.uid, a.gid), (0, 0o640, 4242, 77));
    // readdirplus hands its attributes over too.
    let plus = readdirplus_names(&fs, 1).await;
    assert_eq!(plus, vec![("new".to_string(), 0o640, Kind::File)]);
    assert_eq!(
        errno(fs.create(1, os("new"), 0o100644, libc::O_EXCL, ME).await),
        libc::EEXIST
    );
    // Close with nothing written: an empty object with the creator's attributes.
    fs.flush(e.ino, fh).await?;
    let info = store.head("new", None).await?;
    assert_eq!(info.size, 0);
    assert_eq!(
        info.metadata.get("x-amz-meta-uid").map(String::as_str),
        Some("4242")
    );
    assert_eq!(
        info.metadata.get("x-amz-meta-mode").map(String::as_str),
        Some("33184")
    );
    fs.release(e.ino, fh).await?;
    // A second core (another mount) sees it now.
    let other = new_fs(store.clone(), cfg());
    assert_eq!(lookup(&other, "new").await?.attr.size, 0);
    assert_eq!(
        errno(fs.create(1, os("new"), 0o100644, libc::O_EXCL, ME).await),
        libc::EEXIST
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_files_can_be_renamed_and_unlinked_before_close() -> TestResult {
    let store = CountingStore::new();
    let fs = new_fs(store.clone(), cfg());
    let d = fs.mkdir(1, os("d"), 0o755, ME).await?.ino;
    store.counts.reset();
    // Rename before close: the name moves in the mount; the version goes to the new key.
    let (a, fa) = fs.create(d, os("a"), 0o100644, libc::O_WRONLY, ME).await?;
    fs.write(a.ino, fa, 0, b"first").await?;
    fs.rename(d, os("a"), d, os("b"), 0).await?;
    assert_eq!(store.counts.commits(), 0, "no store call before close");
    assert_eq!(errno(fs.lookup(d, os("a")).await), libc::ENOENT);
    assert_eq!(fs.lookup(d, os("b")).await?.ino, a.ino);
    fs.write(a.ino, fa, 5, b" and more").await?;
    fs.flush(a.ino, fa).await?;
    fs.release(a.ino, fa).await?;
    assert_eq!(
        &store.get("d/b", Default::default()).await?.bytes().await?[..],
        b"first and more"
    );
    assert!(store.head("d/a", None).await.is_err());
    // Unlink before close: nothing ever reaches the store.
    store.counts.reset();
    let (c, fc) = fs.create(d, os("c"), 0o100644, libc::O_WRONLY, ME).await?;
    fs.write(c.ino, fc, 0, b"doomed").await?;
    fs.unlink(d, os("c")).await?;
    assert_eq!(fs.getattr(c.ino).await?.nlink, 0);
    fs.write(c.ino, fc, 6, b"!").await?;
    fs.flush(c.ino, fc).await?;
    fs.release(c.ino, fc).await?;
    assert_eq!(Counts::get(&store.counts.puts), 0);
    assert!(store.head("d/c", None).await.is_err());
    let names: Vec<String> = list_dir(&fs, d).await.into_iter().map(|e| e.0).collect();
    assert_eq!(names, vec!["b".to_string()]);
    // Rename of a pending file over a file of the store: committed first, then renamed.
    let (x, fx) = fs.create(d, os("x"), 0o100644, libc::O_WRONLY, ME).await?;
    fs.write(x.ino, fx, 0, b"new b").await?;
    fs.rename(d, os("x"), d, os("b"), 0).await?;
    fs.write(x.ino, fx, 5, b"!").await?;
    fs.flush(x.ino, fx).await?;
    fs.release(x.ino, fx).await?;
    assert_eq!(
        &store.get("d/b", Default::default()).await?.bytes().await?[..],
        b"new b!"
    );
    assert!(store.head("d/x", None).await.is_err());
    // A pending file keeps its directory from being removed.
    let e = fs.mkdir(d, os("e"), 0o755, ME).await?.ino;
    let (p, fp) = fs.create(e, os("p"), 0o100644, libc::O_WRONLY, ME).await?;
    assert_eq!(errno(fs.rmdir(d, os("e")).await), libc::ENOTEMPTY);
    assert_eq!(errno(fs.rmdir(e, os("p")).await), libc::ENOTDIR);
    fs.release(p.ino, fp).await?;
    assert_eq!(store.head("d/e/p", None).await?.size, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsync_of_a_new_file_commits_durably() -> TestResult {
    let store = CountingStore::new();
    let fs = new_fs(store.clone(), cfg());
    let (e, fh) = fs.create(1, os("f"), 0o100644, libc::O_WRONLY, ME).await?;
    fs.fsync(e.ino, fh, false).await?;
    assert_eq!(store.head("f", None).await?.size, 0);
    assert_eq!(Counts::get(&store.counts.durable), 1);
    fs.write(e.ino, fh, 0, b"data").await?;
    fs.fsync(e.ino, fh, false).await?;
    assert_eq!(store.head("f", None).await?.size, 4);
    assert_eq!(Counts::get(&store.counts.durable), 2);
    fs.flush(e.ino, fh).await?;
    fs.release(e.ino, fh).await?;
    assert_eq!(
        Counts::get(&store.counts.puts),
        2,
        "close after fsync has nothing to add"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_first_commit_leaves_no_file() -> TestResult {
    let store = CountingStore::new();
    let fs = new_fs(store.clone(), cfg());
    let (e, fh) = fs.create(1, os("f"), 0o100644, libc::O_WRONLY, ME).await?;
    fs.write(e.ino, fh, 0, b"data").await?;
    store.full.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(errno(fs.flush(e.ino, fh).await), libc::ENOSPC);
    let _ = fs.release(e.ino, fh).await;
    store.full.store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(errno(fs.lookup(1, os("f")).await), libc::ENOENT);
    assert!(list_dir(&fs, 1).await.is_empty());
    // The name is free again.
    write_file(&fs, 1, "f", b"again").await;
    assert_eq!(store.head("f", None).await?.size, 5);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_known_absent_answer_without_the_store() -> TestResult {
    let store = CountingStore::new();
    let fs = new_fs(store.clone(), cfg());
    write_file(&fs, 1, "gone", b"x").await;
    fs.unlink(1, os("gone")).await?;
    store.counts.reset();
    assert_eq!(errno(fs.lookup(1, os("gone")).await), libc::ENOENT);
    assert_eq!(errno(fs.lookup(1, os("gone")).await), libc::ENOENT);
    assert!(fs.known_absent(1, "gone").is_some());
    assert_eq!(
        Counts::get(&store.counts.heads) + Counts::get(&store.counts.lists),
        0
    );
    // A lookup that found nothing is remembered too.
    assert_eq!(errno(fs.lookup(1, os("never")).await), libc::ENOENT);
    let asked = Counts::get(&store.counts.heads);
    assert_eq!(errno(fs.lookup(1, os("never")).await), libc::ENOENT);
    assert_eq!(Counts::get(&store.counts.heads), asked);
    // Creating a name after its negative lookup works, and ends the absence.
    let (e, fh) = fs
        .create(1, os("never"), 0o100644, libc::O_WRONLY, ME)
        .await?;
    assert!(fs.known_absent(1, "never").is_none());
    fs.release(e.ino, fh).await?;
    assert_eq!(fs.lookup(1, os("never")).await?.ino, e.ino);
    let made = fs.mkdir(1, os("gone"), 0o755, ME).await?;
    assert_eq!(fs.lookup(1, os("gone")).await?.ino, made.ino);
    fs.symlink(1, os("ln"), p("target"), ME).await?;
    fs.rename(1, os("ln"), 1, os("ln2"), 0).await?;
    assert!(fs.known_absent(1, "ln").is_some());
    assert_eq!(fs.lookup(1, os("ln2")).await?.attr.kind, Kind::Symlink);
    fs.forget_absent_names();
    assert!(fs.known_absent(1, "ln").is_none());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absence_lasts_the_attribute_ttl_only() -> TestResult {
    let store = CountingStore::new();
    let short = FsConfig {
        attr_ttl: Duration::from_millis(300),
        ..small_cfg()
    };
    let a = new_fs(store.clone(), short.clone());
    let b = new_fs(store.clone(), short);
    assert_eq!(errno(a.lookup(1, os("f")).await), libc::ENOENT);
    // Another mount of the same store makes the name.
    write_file(&b, 1, "f", b"from b").await;
    let left = a.known_absent(1, "f").expect("still known absent");
    assert!(left <= Duration::from_millis(300));
    assert_eq!(errno(a.lookup(1, os("f")).await), libc::ENOENT);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(a.lookup(1, os("f")).await?.attr.size, 6);
    // With a TTL of zero nothing is cached.
    let none = new_fs(
        store.clone(),
        FsConfig {
            attr_ttl: Duration::ZERO,
            ..small_cfg()
        },
    );
    assert_eq!(errno(none.lookup(1, os("g")).await), libc::ENOENT);
    assert!(none.known_absent(1, "g").is_none());
    write_file(&b, 1, "g", b"").await;
    assert!(none.lookup(1, os("g")).await.is_ok());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_times_are_written_lazily_and_shown_at_once() -> TestResult {
    let store = CountingStore::new();
    let fs = new_fs(store.clone(), cfg());
    let d = fs.mkdir(1, os("d"), 0o755, ME).await?;
    tokio::time::sleep(Duration::from_millis(20)).await;
    store.counts.reset();
    for i in 0..20 {
        write_file(&fs, d.ino, &format!("f{i}"), b"x").await;
    }
    fs.unlink(d.ino, os("f0")).await?;
    fs.rename(d.ino, os("f1"), d.ino, os("g1"), 0).await?;
    assert_eq!(Counts::get(&store.counts.times_sets), 0);
    assert!(fs.dirty_times() >= 1);
    let shown = fs.getattr(d.ino).await?.mtime;
    assert!(
        shown > d.attr.mtime,
        "the directory's mtime follows its entries"
    );
    fs.flush_all().await?;
    assert_eq!(Counts::get(&store.counts.times_sets), 1);
    assert_eq!(fs.dirty_times(), 0);
    // Another mount reads the time from the store.
    let other = new_fs(store.clone(), cfg());
    assert_eq!(lookup(&other, "d").await?.attr.mtime, shown);
    Ok(())
}

/// Every entry of a directory via readdirplus, as (name, permissions, kind).
async fn readdirplus_names(fs: &Arc<objfs_fs::ObjFs>, ino: u64) -> Vec<(String, u16, Kind)> {
    let fh = fs.opendir(ino).await.expect("opendir");
    let mut out = Vec::new();
    fs.readdirplus(ino, fh, 0, |_, name, e| {
        if name != "." && name != ".." {
            out.push((name.to_string(), e.attr.perm, e.attr.kind));
        }
        false
    })
    .await
    .expect("readdirplus");
    fs.releasedir(fh);
    out
}
