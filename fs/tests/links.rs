//! Hard links in the filesystem core against the in-memory store: one inode object per
//! file, stubs for its names, the count, and what a new core on the same store sees.

mod common;

use std::sync::Arc;

use common::*;
use objfs_fs::{Kind, ObjFs, SetAttr};
use objfs_store::memory::MemoryStore;
use objfs_store::{ListRequest, ObjectStore};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The live keys under `.objfs/inodes/`.
async fn inode_objects(store: &dyn ObjectStore) -> Vec<String> {
    let page = store
        .list(&ListRequest {
            prefix: ".objfs/inodes/".into(),
            max_keys: 1000,
            ..Default::default()
        })
        .await
        .expect("list");
    page.objects.into_iter().map(|o| o.key).collect()
}

/// Writes `data` over the whole file `ino` through a new handle (truncating it first).
async fn rewrite(fs: &ObjFs, ino: u64, data: &[u8]) {
    let fh = fs.open(ino, libc::O_WRONLY).await.expect("open");
    let sa = SetAttr {
        size: Some(0),
        fh: Some(fh),
        ..Default::default()
    };
    fs.setattr(ino, sa).await.expect("truncate");
    fs.write(ino, fh, 0, data).await.expect("write");
    fs.flush(ino, fh).await.expect("flush");
    fs.release(ino, fh).await.expect("release");
}

/// A fresh core on the same store, as a remount makes.
fn remount(store: &Arc<MemoryStore>) -> Arc<ObjFs> {
    new_fs(store.clone(), small_cfg())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_share_one_inode_data_and_count() -> TestResult {
    let store = Arc::new(MemoryStore::new());
    let fs = remount(&store);
    let d = fs.mkdir(1, os("d"), 0o755, ME).await?;
    let a = write_file(&fs, 1, "a", b"first").await;
    let b = fs.link(a, d.ino, os("b")).await?;
    assert_eq!(b.ino, a, "one inode for both names");
    assert_eq!(b.attr.nlink, 2);
    assert_eq!(b.attr.size, 5);
    // One object holds the data; both names are zero-byte stubs.
    let inodes = inode_objects(store.as_ref()).await;
    assert_eq!(inodes.len(), 1, "{inodes:?}");
    assert_eq!(store.head("a", None).await?.size, 0);
    assert_eq!(store.head("d/b", None).await?.size, 0);
    assert_eq!(store.head(&inodes[0], None).await?.size, 5);
    // Both names look up to the same inode with the count.
    let la = lookup(&fs, "a").await?;
    let lb = lookup(&fs, "d/b").await?;
    assert_eq!((la.ino, lb.ino), (a, a));
    assert_eq!((la.attr.nlink, lb.attr.nlink), (2, 2));
    assert_eq!(fs.getattr(a).await?.nlink, 2);
    // A write through one name is read through the other, and makes a version of the one
    // inode object.
    rewrite(&fs, la.ino, b"second version").await;
    assert_eq!(read_file(&fs, lb.ino).await, b"second version");
    assert_eq!(lookup(&fs, "d/b").await?.attr.size, 14);
    assert_eq!(inode_objects(store.as_ref()).await, inodes);
    assert_eq!(store.head("a", None).await?.size, 0);
    // chmod through one name shows through the other (applied once, to the inode object).
    let sa = SetAttr {
        mode: Some(0o600),
        ..Default::default()
    };
    fs.setattr(lb.ino, sa).await?;
    let again = remount(&store);
    assert_eq!(lookup(&again, "a").await?.attr.perm, 0o600);
    assert_eq!(
        lookup(&again, "a").await?.attr.nlink,
        2,
        "the count survives the write and chmod"
    );
    // A third name of an already linked file.
    let c = fs.link(lb.ino, 1, os("c")).await?;
    assert_eq!((c.ino, c.attr.nlink), (a, 3));
    assert_eq!(inode_objects(store.as_ref()).await.len(), 1);
    // readdirplus and readdir show the file's inode and attributes under every name.
    let fh = fs.opendir(1).await?;
    let mut plus = Vec::new();
    fs.readdirplus(1, fh, 0, |_, name, e| {
        plus.push((name.to_string(), e.ino, e.attr.size, e.attr.nlink));
        false
    })
    .await?;
    fs.releasedir(fh);
    for n in ["a", "c"] {
        let got = plus.iter().find(|p| p.0 == n).expect("listed");
        assert_eq!((got.1, got.2, got.3), (a, 14, 3), "{n}: {plus:?}");
    }
    let fh = fs.opendir(d.ino).await?;
    let mut plain = Vec::new();
    fs.readdir(d.ino, fh, 0, |ino, _, kind, name| {
        plain.push((name.to_string(), ino, kind));
        false
    })
    .await?;
    fs.releasedir(fh);
    assert!(
        plain.contains(&("b".to_string(), a, Kind::File)),
        "{plain:?}"
    );
    // The reserved name stays hidden.
    let root: Vec<String> = list_dir(&fs, 1).await.into_iter().map(|e| e.0).collect();
    assert_eq!(root, ["a", "c", "d"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_unlink_in_either_order() -> TestResult {
    for first_old in [true, false] {
        let store = Arc::new(MemoryStore::new());
        let fs = remount(&store);
        let a = write_file(&fs, 1, "a", b"payload").await;
        fs.link(a, 1, os("b")).await?;
        let (first, second) = if first_old { ("a", "b") } else { ("b", "a") };
        fs.unlink(1, os(first)).await?;
        assert_eq!(errno(lookup(&fs, first).await), libc::ENOENT);
        let left = lookup(&fs, second).await?;
        assert_eq!(left.attr.nlink, 1, "one name left");
        assert_eq!(read_file(&fs, left.ino).await, b"payload");
        let fresh = remount(&store);
        let left = lookup(&fresh, second).await?;
        assert_eq!((left.attr.nlink, left.attr.size), (1, 7));
        assert_eq!(read_file(&fresh, left.ino).await, b"payload");
        assert_eq!(inode_objects(store.as_ref()).await.len(), 1);
        // The last name deletes the inode object (a delete marker: its history stays).
        fs.unlink(1, os(second)).await?;
        assert_eq!(errno(lookup(&fs, second).await), libc::ENOENT);
        assert!(inode_objects(store.as_ref()).await.is_empty());
        let fresh = remount(&store);
        assert!(list_dir(&fresh, 1).await.is_empty());
        let versions = store
            .list_versions(&objfs_store::ListVersionsRequest {
                prefix: ".objfs/inodes/".into(),
                max_keys: 1000,
                ..Default::default()
            })
            .await?;
        assert!(
            versions.versions.iter().any(|v| v.size == 7),
            "the file's versions stay in history"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_rename_and_remount() -> TestResult {
    let store = Arc::new(MemoryStore::new());
    let fs = remount(&store);
    let d = fs.mkdir(1, os("d"), 0o755, ME).await?;
    let a = write_file(&fs, 1, "a", b"linked").await;
    fs.link(a, 1, os("b")).await?;
    // Renaming a name moves its stub; the file keeps its inode and count.
    fs.rename(1, os("b"), d.ino, os("moved"), 0).await?;
    assert_eq!(errno(lookup(&fs, "b").await), libc::ENOENT);
    let m = lookup(&fs, "d/moved").await?;
    assert_eq!((m.ino, m.attr.nlink), (a, 2));
    // A rename between two names of one file does nothing.
    fs.rename(1, os("a"), d.ino, os("moved"), 0).await?;
    assert!(lookup(&fs, "a").await.is_ok());
    assert_eq!(lookup(&fs, "d/moved").await?.attr.nlink, 2);
    // A plain file renamed over a name lowers the count.
    write_file(&fs, 1, "other", b"other").await;
    fs.rename(1, os("other"), d.ino, os("moved"), 0).await?;
    let a_now = lookup(&fs, "a").await?;
    assert_eq!(a_now.attr.nlink, 1);
    assert_eq!(read_file(&fs, a_now.ino).await, b"linked");
    assert_eq!(
        read_file(&fs, lookup(&fs, "d/moved").await?.ino).await,
        b"other"
    );
    // Links survive a remount: a new core on the same store.
    fs.link(a_now.ino, d.ino, os("again")).await?;
    fs.flush_all().await?;
    let fresh = remount(&store);
    let x = lookup(&fresh, "a").await?;
    let y = lookup(&fresh, "d/again").await?;
    assert_eq!(x.ino, y.ino);
    assert_eq!((x.attr.nlink, y.attr.nlink), (2, 2));
    rewrite(&fresh, y.ino, b"after remount").await;
    assert_eq!(read_file(&fresh, x.ino).await, b"after remount");
    // A directory holding a name can be renamed (its stubs move with it).
    fresh.rename(1, os("d"), 1, os("e"), 0).await?;
    let z = lookup(&fresh, "e/again").await?;
    assert_eq!((z.ino, z.attr.nlink), (x.ino, 2));
    assert_eq!(read_file(&fresh, z.ino).await, b"after remount");
    // Errors: an existing name, a directory.
    assert_eq!(errno(fresh.link(x.ino, 1, os("e")).await), libc::EEXIST);
    assert_eq!(
        lookup(&fresh, "a").await?.attr.nlink,
        2,
        "a failed link keeps the count"
    );
    let e = lookup(&fresh, "e").await?;
    assert_eq!(
        errno(fresh.link(e.ino, 1, os("dirlink")).await),
        libc::EPERM
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_of_an_open_file_keep_its_bytes() -> TestResult {
    let store = Arc::new(MemoryStore::new());
    let fs = remount(&store);
    // Linked while open for writing: what was written and what is written after is the file's.
    let (e, fh) = fs
        .create(1, os("open"), 0o100644, libc::O_WRONLY, ME)
        .await?;
    fs.write(e.ino, fh, 0, b"before ").await?;
    let l = fs.link(e.ino, 1, os("alias")).await?;
    assert_eq!((l.ino, l.attr.nlink), (e.ino, 2));
    fs.write(e.ino, fh, 7, b"after").await?;
    fs.flush(e.ino, fh).await?;
    fs.release(e.ino, fh).await?;
    let fresh = remount(&store);
    for n in ["open", "alias"] {
        let x = lookup(&fresh, n).await?;
        assert_eq!(x.attr.nlink, 2, "{n}");
        assert_eq!(read_file(&fresh, x.ino).await, b"before after", "{n}");
    }
    // A symlink and a FIFO link too (their type is the inode object's).
    let s = fs.symlink(1, os("sym"), p("open"), ME).await?;
    fs.link(s.ino, 1, os("sym2")).await?;
    let s2 = lookup(&fresh, "sym2").await?;
    assert_eq!(s2.attr.kind, Kind::Symlink);
    assert_eq!(&fresh.readlink(s2.ino).await?[..], b"open");
    let f = fs
        .mknod(1, os("fifo"), libc::S_IFIFO | 0o644, 0, ME)
        .await?;
    fs.link(f.ino, 1, os("fifo2")).await?;
    let f2 = lookup(&fresh, "fifo2").await?;
    assert_eq!((f2.attr.kind, f2.attr.nlink), (Kind::Fifo, 2));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_links_where_copies_move_bytes() -> TestResult {
    // As on S3: the first link's copy would move the file's bytes, so link stays EPERM.
    let store = CountingStore::new();
    store
        .copies_move_bytes
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let fs = new_fs(store.clone(), small_cfg());
    let a = write_file(&fs, 1, "a", b"bytes").await;
    assert_eq!(errno(fs.link(a, 1, os("b")).await), libc::EPERM);
    assert_eq!(errno(lookup(&fs, "b").await), libc::ENOENT);
    assert_eq!(lookup(&fs, "a").await?.attr.nlink, 1);
    assert_eq!(
        store.inner.head("a", None).await?.size,
        5,
        "the file is untouched"
    );
    Ok(())
}

/// The past (`.snapshots/@TIME`, `mount --at`) shows a linked file's names with the file's
/// bytes and attributes as of that moment (its inode object's version then), not the empty
/// stubs the names are: through lookup, read, readdirplus and after later writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_past_shows_a_linked_file_as_it_was() -> TestResult {
    use objfs_store::history::time::format_rfc3339;
    let tick = || async {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let t = std::time::SystemTime::now();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        t
    };
    let store = Arc::new(MemoryStore::new());
    let fs = remount(&store);
    let a = write_file(&fs, 1, "a", b"before the link").await;
    let before = tick().await;
    fs.link(a, 1, os("b")).await?;
    rewrite(&fs, a, b"linked, first").await;
    let sa = SetAttr {
        mode: Some(0o640),
        ..Default::default()
    };
    fs.setattr(a, sa).await?;
    let linked = tick().await;
    rewrite(&fs, a, b"linked, second and longer").await;

    let view = |t| format!(".snapshots/@{}", format_rfc3339(t));
    // Before the link: `a` was a plain file, `b` did not exist.
    let old = lookup(&fs, &format!("{}/a", view(before))).await?;
    assert_eq!(read_file(&fs, old.ino).await, b"before the link");
    assert_eq!(
        errno(lookup(&fs, &format!("{}/b", view(before))).await),
        libc::ENOENT
    );
    // While linked: both names show the file's bytes and attributes then.
    for name in ["a", "b"] {
        let e = lookup(&fs, &format!("{}/{name}", view(linked))).await?;
        assert_eq!(read_file(&fs, e.ino).await, b"linked, first", "{name}");
        assert_eq!((e.attr.size, e.attr.perm), (13, 0o640), "{name}");
    }
    let root = lookup(&fs, &view(linked)).await?;
    let fh = fs.opendir(root.ino).await?;
    let mut plus = Vec::new();
    fs.readdirplus(root.ino, fh, 0, |_, name, e| {
        if name != "." && name != ".." {
            plus.push((name.to_string(), e.attr.size, e.attr.perm));
        }
        false
    })
    .await?;
    fs.releasedir(fh);
    plus.sort();
    assert_eq!(
        plus,
        vec![("a".to_string(), 13, 0o640), ("b".to_string(), 13, 0o640)],
        "the reserved name stays hidden in the past too"
    );
    // Now: the newest bytes.
    assert_eq!(
        read_file(&fs, lookup(&fs, "b").await?.ino).await,
        b"linked, second and longer"
    );
    Ok(())
}
