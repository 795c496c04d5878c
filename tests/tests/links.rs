//! Hard links and a crash at every step: each link, unlink and rename over a link is run on a
//! store that stops taking writes after its first k of them (a `FaultStore` over the memory
//! store, for every k), and a new core on the same store (a remount) must then find every
//! name readable with the acknowledged bytes, and every inode object's link count at least
//! the number of stubs that name it (never below: a count too low would delete a file that
//! still has a name).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::Arc;

use objfs_fs::{FsConfig, ObjFs};
use objfs_store::fault::{Fault, FaultStore, Op, Rule};
use objfs_store::memory::MemoryStore;
use objfs_store::{ListRequest, ObjectStore};

const DATA: &[u8] = b"the acknowledged bytes";
const OTHER: &[u8] = b"another file";

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn core(store: Arc<dyn ObjectStore>) -> Arc<ObjFs> {
    ObjFs::new(store, FsConfig::default())
}

async fn write(fs: &ObjFs, name: &str, data: &[u8]) -> u64 {
    let (e, fh) = fs
        .create(
            1,
            os(name),
            0o100644,
            libc::O_WRONLY,
            objfs_fs::Caller { uid: 0, gid: 0 },
        )
        .await
        .expect("create");
    fs.write(e.ino, fh, 0, data).await.expect("write");
    fs.flush(e.ino, fh).await.expect("flush");
    fs.release(e.ino, fh).await.expect("release");
    e.ino
}

async fn read(fs: &ObjFs, name: &str) -> Vec<u8> {
    let e = fs.lookup(1, os(name)).await.expect("lookup");
    let fh = fs.open(e.ino, libc::O_RDONLY).await.expect("open");
    let b = fs.read(e.ino, fh, 0, 1 << 20).await.expect("read");
    fs.release(e.ino, fh).await.expect("release");
    b.to_vec()
}

/// The live objects of the store: key -> (size, metadata).
async fn objects(store: &dyn ObjectStore) -> HashMap<String, objfs_store::ObjectInfo> {
    let page = store
        .list(&ListRequest {
            max_keys: 1000,
            ..Default::default()
        })
        .await
        .expect("list");
    page.objects
        .into_iter()
        .map(|o| (o.key.clone(), o))
        .collect()
}

/// What a remount finds: every listed name reads one of `allowed`, the names in `kept` are
/// there, and no inode object has fewer links than stubs.
async fn check_after_crash(store: &Arc<MemoryStore>, kept: &[&str], allowed: &[&[u8]], what: &str) {
    let fs = core(store.clone());
    let objs = objects(store.as_ref()).await;
    let mut stubs: HashMap<String, u32> = HashMap::new();
    for (key, o) in &objs {
        if let Some(id) = o.metadata.get("x-objfs-inode") {
            *stubs.entry(id.clone()).or_default() += 1;
            assert!(
                objs.contains_key(&format!(".objfs/inodes/{id}")),
                "{what}: {key} names a missing inode object"
            );
        }
    }
    for (id, n) in &stubs {
        let o = &objs[&format!(".objfs/inodes/{id}")];
        let count: u32 = o
            .metadata
            .get("x-objfs-nlink")
            .map_or(1, |s| s.parse().expect("count"));
        assert!(
            count >= *n,
            "{what}: inode {id} counts {count} links for {n} stubs"
        );
    }
    for name in objs.keys().filter(|k| !k.starts_with(".objfs/")) {
        let got = read(&fs, name).await;
        assert!(
            allowed.contains(&got.as_slice()),
            "{what}: {name} reads {:?}",
            String::from_utf8_lossy(&got)
        );
    }
    for name in kept {
        assert!(objs.contains_key(*name), "{what}: {name} is gone");
    }
}

/// A store whose writes stop after the first `k` of `seq` (the writes the step makes, in order).
fn crashing(inner: &Arc<MemoryStore>, seq: &[Op], k: usize) -> Arc<FaultStore> {
    let faults = Arc::new(FaultStore::new(inner.clone()));
    for op in Op::WRITES {
        let passed = seq[..k].iter().filter(|o| *o == op).count() as u32;
        faults.add(Rule::always(*op, Fault::Fail { retryable: false }).after(passed));
    }
    faults
}

/// Runs `step` on a store crashing after each of its writes in turn (`seq`), and checks what
/// a remount finds; `setup` makes the state before the step on the bare store.
async fn every_crash_point<S, F>(
    what: &str,
    seq: &[Op],
    kept: &[&str],
    allowed: &[&[u8]],
    setup: S,
    step: F,
) where
    S: AsyncFn(&ObjFs),
    F: AsyncFn(&ObjFs) -> Result<(), objfs_fs::FsError>,
{
    for k in 0..=seq.len() {
        let inner = Arc::new(MemoryStore::new());
        setup(&core(inner.clone())).await;
        let faults = crashing(&inner, seq, k);
        let fs = core(faults.clone());
        let r = step(&fs).await;
        if k == seq.len() {
            r.unwrap_or_else(|e| panic!("{what}: the step failed with every write allowed: {e}"));
            assert_eq!(faults.injected(), 0, "{what}: more writes than {seq:?}");
        } else {
            // The step failed (or, for a rename over a name, only its count drop did, which
            // it logs): the remount below must not care which.
            assert!(faults.injected() > 0, "{what}: fewer writes than {seq:?}");
        }
        check_after_crash(
            &inner,
            kept,
            allowed,
            &format!("{what}, crash after {k} writes"),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_any_step_of_a_link_keeps_every_name() {
    // The first link: inode object, new stub, old name's stub.
    every_crash_point(
        "first link",
        &[Op::Copy, Op::Put, Op::Put],
        &["a"],
        &[DATA],
        async |fs| {
            write(fs, "a", DATA).await;
        },
        async |fs| {
            let e = fs.lookup(1, os("a")).await?;
            fs.link(e.ino, 1, os("b")).await.map(|_| ())
        },
    )
    .await;
    // A further link: the count, then the stub.
    let linked = async |fs: &ObjFs| {
        let a = write(fs, "a", DATA).await;
        fs.link(a, 1, os("b")).await.expect("link");
    };
    every_crash_point(
        "second link",
        &[Op::Copy, Op::Put],
        &["a", "b"],
        &[DATA],
        linked,
        async |fs| {
            let e = fs.lookup(1, os("b")).await?;
            fs.link(e.ino, 1, os("c")).await.map(|_| ())
        },
    )
    .await;
    // Unlink of one of two names: the stub, then the count.
    every_crash_point(
        "unlink of a name",
        &[Op::DeleteIf, Op::Copy],
        &["b"],
        &[DATA],
        linked,
        async |fs| fs.unlink(1, os("a")).await,
    )
    .await;
    // A plain file renamed over a name: the rename, then the count.
    every_crash_point(
        "rename over a name",
        &[Op::Rename, Op::Copy],
        &["a", "b"],
        &[DATA, OTHER],
        async |fs| {
            linked(fs).await;
            write(fs, "x", OTHER).await;
        },
        async |fs| fs.rename(1, os("x"), 1, os("b"), 0).await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_while_the_last_name_goes_leaves_no_name_without_its_file() {
    every_crash_point(
        "unlink of the last name",
        &[Op::DeleteIf, Op::DeleteIf],
        &[],
        &[DATA],
        async |fs| {
            let a = write(fs, "a", DATA).await;
            fs.link(a, 1, os("b")).await.expect("link");
            fs.unlink(1, os("a")).await.expect("unlink");
        },
        async |fs| fs.unlink(1, os("b")).await,
    )
    .await;
}
