//! `ls .snapshots` with 10,000 named snapshots, through the filesystem core over a local
//! store, against a baseline measured in the same run: listing a live directory of 10,000
//! files. Also the time of `snapshot create` with 10,000 keys in the store against an empty
//! store (a snapshot is one record). Targets (docs/BENCHMARKS.md): `ls .snapshots` with
//! 10,000 snapshots <= 100 ms; snapshot create <= 1 ms.
//!
//! `cargo bench -p objfs-fs --bench snapdir`

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use objfs_fs::{FsConfig, ObjFs};
use objfs_store::history::snapshots;
use objfs_store::local::{LocalConfig, LocalStore};
use objfs_store::{Body, ObjectStore, PutOptions};

const N: usize = 10_000;
const ROUNDS: usize = 5;

/// Every entry of directory `ino` through readdirplus (what `ls -l` makes the kernel ask).
async fn list_all(fs: &ObjFs, ino: u64) -> usize {
    let fh = fs.opendir(ino).await.expect("opendir");
    let mut off = 0;
    let mut n = 0;
    loop {
        let mut got = 0;
        fs.readdirplus(ino, fh, off, |next, name, e| {
            off = next;
            got += 1;
            if name != "." && name != ".." {
                // What the kernel does when it lets the entry go.
                fs.forget(e.ino, 1);
            }
            got >= 256
        })
        .await
        .expect("readdirplus");
        if got == 0 {
            break;
        }
        n += got;
    }
    fs.releasedir(fh);
    n
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn time_list(fs: &ObjFs, ino: u64) -> (Duration, usize) {
    let mut times = Vec::new();
    let mut n = 0;
    for _ in 0..ROUNDS {
        let t = Instant::now();
        n = list_all(fs, ino).await;
        times.push(t.elapsed());
    }
    (median(times), n)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(LocalStore::init(dir.path(), LocalConfig::default()).expect("init"));
    // An empty store first: the cost of creating a snapshot with nothing in it.
    let mut empty = Vec::new();
    for i in 0..ROUNDS {
        let t = Instant::now();
        snapshots::create(
            store.as_ref(),
            &format!("e{i}"),
            SystemTime::now(),
            SystemTime::now(),
        )
        .await
        .expect("create");
        empty.push(t.elapsed());
    }
    for i in 0..N {
        store
            .put(
                &format!("live/f{i:05}"),
                Body::from(&b"x"[..]),
                PutOptions::default(),
            )
            .await
            .expect("put");
    }
    let mut full = Vec::new();
    for i in 0..N {
        let t = Instant::now();
        snapshots::create(
            store.as_ref(),
            &format!("s{i:05}"),
            SystemTime::now(),
            SystemTime::now(),
        )
        .await
        .expect("create");
        if i % (N / 10) == 0 {
            full.push(t.elapsed());
        }
    }
    let fs = ObjFs::new(store.clone(), FsConfig::default());
    let live = fs.lookup(1, OsStr::new("live")).await.expect("live").ino;
    let snapdir = fs
        .lookup(1, OsStr::new(".snapshots"))
        .await
        .expect("snapdir")
        .ino;
    let (base, nb) = time_list(&fs, live).await;
    let (snap, ns) = time_list(&fs, snapdir).await;
    let (ce, cf) = (median(empty), median(full));
    let t = Instant::now();
    let recs = store
        .list_records("snapshot/")
        .await
        .expect("records")
        .len();
    println!(
        "(list_records of {recs}: {:.1} ms)",
        t.elapsed().as_secs_f64() * 1e3
    );
    let t = Instant::now();
    let all = snapshots::list(store.as_ref()).await.expect("list").len();
    println!(
        "(snapshots::list of {all}: {:.1} ms)",
        t.elapsed().as_secs_f64() * 1e3
    );
    let t = Instant::now();
    let entries = objfs_fs::core::snapshots::snapdir_entries(store.as_ref(), None)
        .await
        .expect("entries");
    println!(
        "(of which reading the {} snapshot records and the policy: {:.1} ms)",
        entries.len(),
        t.elapsed().as_secs_f64() * 1e3
    );
    println!("ls of a live directory of 10,000 files ({nb} entries with . and .., the baseline): {:.1} ms", base.as_secs_f64() * 1e3);
    println!(
        "ls .snapshots ({ns} entries: {} named snapshots and the kept moments): {:.1} ms = {:.2}x the baseline (target <= 100 ms)",
        N + ROUNDS,
        snap.as_secs_f64() * 1e3,
        snap.as_secs_f64() / base.as_secs_f64()
    );
    println!(
        "snapshot create: {:.3} ms with {N} keys and {N} snapshots, {:.3} ms in an empty store = {:.2}x (target <= 1 ms)",
        cf.as_secs_f64() * 1e3,
        ce.as_secs_f64() * 1e3,
        cf.as_secs_f64() / ce.as_secs_f64()
    );
    drop(fs);
    if let Ok(s) = Arc::try_unwrap(store) {
        let _ = s.close();
    }
}
