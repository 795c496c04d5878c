//! The past in the core: `.snapshots/@TIME` and `.snapshots/NAME` show the tree as it was
//! (contents, kinds and attributes from the versions then), are read-only (EROFS), hidden from
//! the root's listing unless asked; `mount --at` makes the whole mount such a view; and the
//! invalidation API forgets what changed outside the mount.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use common::*;
use objfs_fs::{FsConfig, KernelNotifier, Kind, ObjFs, SetAttr};
use objfs_store::history::{snapshots, time::format_rfc3339};
use objfs_store::memory::MemoryStore;
use objfs_store::{Body, ObjectStore, PutOptions};

type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

fn cfg() -> FsConfig {
    FsConfig {
        attr_ttl: Duration::from_secs(5),
        ..small_cfg()
    }
}

async fn tick() -> SystemTime {
    tokio::time::sleep(Duration::from_millis(5)).await;
    let t = SystemTime::now();
    tokio::time::sleep(Duration::from_millis(5)).await;
    t
}

/// A tree at T1 (files, a directory with a marker and mode, a symlink, a file with an
/// xattr), then changes after it. Returns the store, the live mount and T1.
async fn history() -> (Arc<MemoryStore>, Arc<ObjFs>, SystemTime) {
    let store = Arc::new(MemoryStore::new());
    let fs = new_fs(store.clone(), cfg());
    let d = fs.mkdir(1, os("d"), 0o750, ME).await.expect("mkdir");
    let d = d.ino;
    let a = write_file(&fs, d, "a", b"one").await;
    fs.setattr(
        a,
        SetAttr {
            mode: Some(0o600),
            ..Default::default()
        },
    )
    .await
    .expect("chmod");
    fs.setxattr(a, os("user.note"), b"then", 0)
        .await
        .expect("setxattr");
    write_file(&fs, d, "gone", b"deleted later").await;
    fs.symlink(d, os("link"), p("a"), ME)
        .await
        .expect("symlink");
    fs.mknod(d, os("pipe"), libc::S_IFIFO | 0o620, 0, ME)
        .await
        .expect("mkfifo");
    let sub = fs.mkdir(d, os("sub"), 0o755, ME).await.expect("mkdir").ino;
    write_file(&fs, sub, "deep", &pattern(300_000, 3)).await;
    let t1 = tick().await;
    write_file(&fs, d, "a", b"two, longer").await;
    fs.unlink(d, os("gone")).await.expect("unlink");
    write_file(&fs, d, "new", b"made later").await;
    (store, fs, t1)
}

fn at(t: SystemTime) -> String {
    format!(".snapshots/@{}", format_rfc3339(t))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moment_shows_the_tree_as_it_was() -> TestResult {
    let (_store, fs, t1) = history().await;
    let root = at(t1);
    let a = lookup(&fs, &format!("{root}/d/a")).await?;
    assert_eq!(read_file(&fs, a.ino).await, b"one");
    assert_eq!(a.attr.perm, 0o600);
    assert_eq!(a.attr.size, 3);
    assert_eq!(fs.getxattr(a.ino, os("user.note")).await?, b"then");
    // The same key now and then are two inodes.
    let live = lookup(&fs, "d/a").await?;
    assert_ne!(live.ino, a.ino);
    assert_eq!(read_file(&fs, live.ino).await, b"two, longer");
    let d = lookup(&fs, &format!("{root}/d")).await?;
    assert_eq!(d.attr.kind, Kind::Dir);
    assert_eq!(d.attr.perm, 0o750);
    let mut names = list_dir(&fs, d.ino).await;
    names.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        names,
        vec![
            ("a".to_string(), Kind::File),
            ("gone".to_string(), Kind::File),
            ("link".to_string(), Kind::Symlink),
            ("pipe".to_string(), Kind::Fifo),
            ("sub".to_string(), Kind::Dir),
        ]
    );
    assert_eq!(
        errno(lookup(&fs, &format!("{root}/d/new")).await),
        libc::ENOENT
    );
    let gone = lookup(&fs, &format!("{root}/d/gone")).await?;
    assert_eq!(read_file(&fs, gone.ino).await, b"deleted later");
    let pipe = lookup(&fs, &format!("{root}/d/pipe")).await?;
    assert_eq!((pipe.attr.kind, pipe.attr.perm), (Kind::Fifo, 0o620));
    let link = lookup(&fs, &format!("{root}/d/link")).await?;
    assert_eq!(&fs.readlink(link.ino).await?[..], b"a");
    let deep = lookup(&fs, &format!("{root}/d/sub/deep")).await?;
    assert_eq!(read_file(&fs, deep.ino).await, pattern(300_000, 3));
    // readdirplus hands out the same attributes.
    let fh = fs.opendir(d.ino).await?;
    let mut plus = Vec::new();
    fs.readdirplus(d.ino, fh, 0, |_, name, e| {
        plus.push((name.to_string(), e.attr.perm, e.attr.size));
        false
    })
    .await?;
    fs.releasedir(fh);
    assert!(plus.contains(&("a".to_string(), 0o600, 3)), "{plus:?}");
    // A moment before anything existed is an empty tree.
    let empty = lookup(&fs, ".snapshots/@2000-01-01T00:00:00Z").await?;
    assert!(list_dir(&fs, empty.ino).await.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapdir_is_hidden_unless_asked_and_lists_snapshots_and_moments() -> TestResult {
    let (store, fs, t1) = history().await;
    let root: Vec<String> = list_dir(&fs, 1).await.into_iter().map(|e| e.0).collect();
    assert_eq!(root, ["d"]);
    let snap = lookup(&fs, ".snapshots").await?;
    assert_eq!(snap.attr.kind, Kind::Dir);
    assert_eq!(snap.attr.perm, 0o555);
    snapshots::create(store.as_ref(), "before", t1, SystemTime::now()).await?;
    let listed = list_dir(&fs, snap.ino).await;
    assert!(listed.contains(&("before".to_string(), Kind::Dir)));
    // Moments the default policy keeps complete: hours, then days.
    let moments = listed.iter().filter(|(n, _)| n.starts_with('@')).count();
    assert!(moments > 168, "{moments}");
    let a = lookup(&fs, ".snapshots/before/d/a").await?;
    assert_eq!(read_file(&fs, a.ino).await, b"one");
    assert_eq!(errno(lookup(&fs, ".snapshots/nope").await), libc::ENOENT);
    assert_eq!(
        errno(lookup(&fs, ".snapshots/@yesterday").await),
        libc::ENOENT
    );
    assert_eq!(
        errno(lookup(&fs, ".snapshots/@2999-01-01T00:00:00Z").await),
        libc::ENOENT
    );
    // Deleted: gone from the next lookup.
    snapshots::delete(store.as_ref(), "before").await?;
    fs.invalidate_snapshot("before");
    assert_eq!(errno(lookup(&fs, ".snapshots/before").await), libc::ENOENT);

    let visible = new_fs(
        store.clone(),
        FsConfig {
            snapdir_visible: true,
            ..cfg()
        },
    );
    let mut root: Vec<String> = list_dir(&visible, 1)
        .await
        .into_iter()
        .map(|e| e.0)
        .collect();
    root.sort();
    assert_eq!(root, [".snapshots", "d"]);
    let fh = visible.opendir(1).await?;
    let mut plus = Vec::new();
    visible
        .readdirplus(1, fh, 0, |_, name, e| {
            plus.push((name.to_string(), e.ino));
            false
        })
        .await?;
    visible.releasedir(fh);
    let snap_ino = plus.iter().find(|(n, _)| n == ".snapshots").map(|e| e.1);
    assert_eq!(snap_ino, Some(lookup(&visible, ".snapshots").await?.ino));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_in_the_past_is_erofs() -> TestResult {
    let (store, fs, t1) = history().await;
    let root = at(t1);
    let d = lookup(&fs, &format!("{root}/d")).await?.ino;
    let a = lookup(&fs, &format!("{root}/d/a")).await?.ino;
    let snap = lookup(&fs, ".snapshots").await?.ino;
    let live_d = lookup(&fs, "d").await?.ino;
    let view_root = lookup(&fs, &root).await?.ino;
    let erofs = libc::EROFS;
    assert_eq!(
        errno(fs.create(d, os("x"), 0o100644, libc::O_WRONLY, ME).await),
        erofs
    );
    assert_eq!(errno(fs.mkdir(d, os("x"), 0o755, ME).await), erofs);
    assert_eq!(errno(fs.mkdir(snap, os("x"), 0o755, ME).await), erofs);
    assert_eq!(
        errno(fs.mknod(d, os("x"), libc::S_IFIFO | 0o644, 0, ME).await),
        erofs
    );
    assert_eq!(errno(fs.symlink(d, os("x"), p("a"), ME).await), erofs);
    assert_eq!(errno(fs.unlink(d, os("a")).await), erofs);
    assert_eq!(errno(fs.rmdir(d, os("sub")).await), erofs);
    assert_eq!(errno(fs.rmdir(snap, os(&root[11..])).await), erofs);
    assert_eq!(
        errno(fs.rename(d, os("a"), live_d, os("back"), 0).await),
        erofs
    );
    assert_eq!(
        errno(fs.rename(live_d, os("a"), d, os("a2"), 0).await),
        erofs
    );
    assert_eq!(
        errno(fs.rename(1, os("d"), view_root, os("d2"), 0).await),
        erofs
    );
    assert_eq!(errno(fs.link(a, live_d, os("hard")).await), erofs);
    let chmod = SetAttr {
        mode: Some(0o777),
        ..Default::default()
    };
    assert_eq!(errno(fs.setattr(a, chmod.clone()).await), erofs);
    assert_eq!(errno(fs.setattr(snap, chmod).await), erofs);
    assert_eq!(errno(fs.setxattr(a, os("user.x"), b"1", 0).await), erofs);
    assert_eq!(errno(fs.removexattr(a, os("user.note")).await), erofs);
    assert_eq!(errno(fs.open(a, libc::O_WRONLY).await), erofs);
    assert_eq!(
        errno(fs.open(a, libc::O_RDONLY | libc::O_TRUNC).await),
        erofs
    );
    // The name `.snapshots` in the root is not the live namespace's to use.
    assert_eq!(errno(fs.mkdir(1, os(".snapshots"), 0o755, ME).await), erofs);
    assert_eq!(
        errno(
            fs.create(1, os(".snapshots"), 0o100644, libc::O_WRONLY, ME)
                .await
        ),
        erofs
    );
    assert_eq!(errno(fs.rmdir(1, os(".snapshots")).await), erofs);
    assert_eq!(
        errno(fs.rename(live_d, os("a"), 1, os(".snapshots"), 0).await),
        erofs
    );
    // Nothing changed: the live file and the past are intact.
    assert_eq!(store.head("d/a", None).await?.size, 11);
    assert_eq!(read_file(&fs, a).await, b"one");
    assert!(store.head(".snapshots", None).await.is_err());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mount_at_is_the_whole_tree_then_read_only() -> TestResult {
    let (store, _live, t1) = history().await;
    let fs = new_fs(
        store.clone(),
        FsConfig {
            at: Some(t1),
            ..cfg()
        },
    );
    let mut names: Vec<String> = list_dir(&fs, 1).await.into_iter().map(|e| e.0).collect();
    names.sort();
    assert_eq!(names, ["d"]);
    let a = lookup(&fs, "d/a").await?;
    assert_eq!(read_file(&fs, a.ino).await, b"one");
    assert_eq!(errno(lookup(&fs, "d/new").await), libc::ENOENT);
    assert_eq!(
        errno(fs.create(1, os("x"), 0o100644, libc::O_WRONLY, ME).await),
        libc::EROFS
    );
    // `.snapshots` works here too.
    let now = lookup(
        &fs,
        &format!(".snapshots/@{}/d/new", format_rfc3339(SystemTime::now())),
    )
    .await?;
    assert_eq!(read_file(&fs, now.ino).await, b"made later");
    Ok(())
}

/// What the kernel was told.
#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl KernelNotifier for Recorder {
    fn inval_entry(&self, parent: u64, name: &str) {
        self.0
            .lock()
            .unwrap()
            .push(format!("entry {parent} {name}"));
    }
    fn inval_inode(&self, ino: u64) {
        self.0.lock().unwrap().push(format!("inode {ino}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidation_forgets_absent_names_and_attributes_and_tells_the_kernel() -> TestResult {
    let store = Arc::new(MemoryStore::new());
    let fs = new_fs(store.clone(), cfg());
    let rec = Arc::new(Recorder::default());
    fs.set_notifier(rec.clone());
    let d = fs.mkdir(1, os("d"), 0o755, ME).await?.ino;
    let f = write_file(&fs, d, "f", b"old").await;
    assert_eq!(errno(fs.lookup(d, os("back")).await), libc::ENOENT);
    // Changed outside the mount (as a restore through the control channel would).
    store
        .put(
            "d/back",
            Body::from(&b"restored"[..]),
            PutOptions::default(),
        )
        .await?;
    store
        .put(
            "d/f",
            Body::from(&b"restored too"[..]),
            PutOptions::default(),
        )
        .await?;
    // Within the TTL the mount still knows the name absent and the old attributes.
    assert_eq!(errno(fs.lookup(d, os("back")).await), libc::ENOENT);
    assert_eq!(fs.getattr(f).await?.size, 3);
    fs.invalidate_keys(&["d/back".to_string(), "d/f".to_string()]);
    assert_eq!(fs.lookup(d, os("back")).await?.attr.size, 8);
    assert_eq!(fs.getattr(f).await?.size, 12);
    assert_eq!(read_file(&fs, f).await, b"restored too");
    let told = rec.0.lock().unwrap().clone();
    assert!(told.contains(&format!("entry {d} back")), "{told:?}");
    assert!(told.contains(&format!("inode {f}")), "{told:?}");
    assert!(told.contains(&"entry 1 d".to_string()), "{told:?}");
    // A prefix: every cached inode under it.
    rec.0.lock().unwrap().clear();
    store
        .put("d/f", Body::from(&b"x"[..]), PutOptions::default())
        .await?;
    assert_eq!(errno(fs.lookup(d, os("zz-later")).await), libc::ENOENT);
    fs.invalidate_prefix("d/");
    assert_eq!(fs.getattr(f).await?.size, 1);
    let told = rec.0.lock().unwrap().clone();
    assert!(told.contains(&format!("inode {f}")), "{told:?}");
    assert!(told.contains(&format!("entry {d} f")), "{told:?}");
    // The kernel's negative entry of a name under the prefix goes too.
    assert!(told.contains(&format!("entry {d} zz-later")), "{told:?}");
    rec.0.lock().unwrap().clear();
    assert_eq!(errno(fs.lookup(d, os("other")).await), libc::ENOENT);
    fs.invalidate_prefix("elsewhere/");
    let told = rec.0.lock().unwrap().clone();
    assert!(!told.contains(&format!("entry {d} other")), "{told:?}");
    Ok(())
}

/// Every file under directory `ino` (recursively) with its bytes, and every directory (as
/// `path/`), by path below it.
async fn tree(fs: &ObjFs, ino: u64, prefix: &str, out: &mut Vec<(String, Vec<u8>)>) {
    for (name, kind) in list_dir(fs, ino).await {
        let e = fs
            .lookup(ino, os(&name))
            .await
            .expect("lookup a listed name");
        let path = format!("{prefix}{name}");
        if kind == Kind::Dir {
            out.push((format!("{path}/"), Vec::new()));
            Box::pin(tree(fs, e.ino, &format!("{path}/"), out)).await;
        } else {
            out.push((path, read_file(fs, e.ino).await));
        }
        fs.forget(e.ino, 1);
    }
}

/// 40 random writes, unlinks and renames; the live tree after each, read back later through
/// `.snapshots/@TIME` of the moment after it, is the same, byte for byte. On the memory store
/// and on the local store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_moment_reads_back_the_tree_it_had() -> TestResult {
    moments_read_back(Arc::new(MemoryStore::new())).await?;
    let dir = tempfile::tempdir()?;
    let local = objfs_store::local::LocalStore::init(dir.path(), Default::default())?;
    moments_read_back(Arc::new(local)).await
}

async fn moments_read_back(store: Arc<dyn ObjectStore>) -> TestResult {
    let fs = new_fs(store, cfg());
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut moments = Vec::new();
    for step in 0..40 {
        let dir = format!("d{}", next(3));
        let d = match lookup(&fs, &dir).await {
            Ok(e) => e.ino,
            Err(_) => fs.mkdir(1, os(&dir), 0o755, ME).await?.ino,
        };
        let name = format!("f{}", next(4));
        match next(4) {
            0 | 1 => {
                let len = next(3000) as usize;
                write_file(&fs, d, &name, &pattern(len, step as u8)).await;
            }
            2 => {
                let _ = fs.unlink(d, os(&name)).await;
            }
            _ => {
                let to = format!("f{}", next(4));
                let _ = fs.rename(d, os(&name), d, os(&to), 0).await;
            }
        }
        let when = tick().await;
        let mut now = Vec::new();
        tree(&fs, 1, "", &mut now).await;
        moments.push((when, now));
    }
    for (when, then) in moments {
        let root = lookup(&fs, &at(when)).await?;
        let mut seen = Vec::new();
        tree(&fs, root.ino, "", &mut seen).await;
        assert_eq!(seen, then, "as of {}", format_rfc3339(when));
    }
    Ok(())
}

/// Times kept beside keys (a directory's last entry change, a file's last access) show in the
/// past when they had been recorded by then; a later one is not shown there (only the newest
/// is kept, so what it replaced is not known: the version's own times stand).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn times_beside_keys_show_as_they_were() -> TestResult {
    let store = Arc::new(MemoryStore::new());
    let fs = new_fs(store.clone(), cfg());
    let d = fs.mkdir(1, os("d"), 0o755, ME).await?.ino;
    tick().await;
    let x = write_file(&fs, d, "x", b"data").await;
    let changed_then = fs.getattr(d).await?.mtime;
    let t1 = tick().await;
    write_file(&fs, d, "y", b"later").await;
    let changed_now = fs.getattr(d).await?.mtime;
    assert!(changed_then < t1 && t1 < changed_now);
    assert_eq!(read_file(&fs, x).await, b"data");
    let accessed = fs.getattr(x).await?.atime;
    assert!(accessed > t1, "the read set the atime");
    let t2 = tick().await;

    let then = lookup(&fs, &format!("{}/d", at(t1))).await?;
    assert!(
        then.attr.mtime < changed_then,
        "the change after t1 is not shown at t1"
    );
    let x1 = lookup(&fs, &format!("{}/d/x", at(t1))).await?;
    assert!(x1.attr.atime < t1, "the access after t1 is not shown at t1");
    let later = lookup(&fs, &format!("{}/d", at(t2))).await?;
    assert_eq!(later.attr.mtime, changed_now);
    let x2 = lookup(&fs, &format!("{}/d/x", at(t2))).await?;
    assert_eq!(
        x2.attr.atime, accessed,
        "the access before t2 is shown at t2"
    );
    // readdirplus of the past directory hands out the same times.
    let fh = fs.opendir(then.ino).await?;
    let mut plus = Vec::new();
    fs.readdirplus(then.ino, fh, 0, |_, name, e| {
        plus.push((name.to_string(), e.attr.atime));
        false
    })
    .await?;
    let x_then = plus.iter().find(|(n, _)| n == "x").map(|(_, a)| *a);
    assert_eq!(x_then, Some(x1.attr.atime));
    Ok(())
}
