//! The store's share of a mount's rename and unlink: `rename` and `delete` of 4 KiB objects
//! in one directory, one thread, against `rename(2)` and `unlink(2)` of as many 4 KiB files
//! in a native directory on the same disk, measured in the same run.
//!
//! A mount's rename is the kernel's round trips (the destination's LOOKUP, the directory's
//! GETATTR, the RENAME) plus this commit; fsbench's figure (issue 9: rename >= 0.3x native,
//! unlink >= 0.5x) is the whole. This bench isolates the commit, which the mount's reader
//! thread waits for before it replies: `N` keys `d/f{i}` renamed to `d/g{i}` and back
//! (`OBJFS_BENCH_ROUNDS` passes, 2 by default), then deleted. `OBJFS_BENCH_KEYS` sets N
//! (20,000). Prints the median microseconds per call and the calling thread's CPU per call.
//!
//! The objects are put, then the store is closed and opened again, so that their rows are in
//! sled as in a store that has run for a while (a clean close checkpoints every row) and not
//! in the in-memory tables: a commit then reads them from sled. Before session 28 the renames
//! followed the puts in the same process, and how many of the rows the 5 s flusher had moved
//! into sled depended on how fast the run went.

#[allow(dead_code)] // each bench uses part of what the benches share
mod common;

use std::time::Instant;

use objfs_store::local::{LocalConfig, LocalStore};
use objfs_store::{ObjectStore, PutOptions, RenameOptions};

/// Microseconds per call and the calling thread's CPU microseconds per call.
struct Timed {
    us: f64,
    cpu_us: f64,
}

fn timed(n: usize, f: impl FnOnce()) -> Timed {
    let cpu = common::cpu_seconds(true);
    let started = Instant::now();
    f();
    Timed {
        us: started.elapsed().as_secs_f64() * 1e6 / n as f64,
        cpu_us: (common::cpu_seconds(true) - cpu) * 1e6 / n as f64,
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs this quickly with few keys.
    let quick = std::env::args().any(|a| a == "--test");
    let n = common::env_usize("OBJFS_BENCH_KEYS", if quick { 200 } else { 20_000 });
    let rounds = common::env_usize("OBJFS_BENCH_ROUNDS", if quick { 1 } else { 2 }).max(1);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = common::bench_dir();
    let body = vec![0x5au8; 4096];

    // Baseline: the same renames and unlinks of files in a native directory.
    let native = dir.path().join("native");
    std::fs::create_dir(&native).expect("native dir");
    for i in 0..n {
        std::fs::write(native.join(format!("f{i}")), &body).expect("native file");
    }
    let mut native_renames = Vec::new();
    for r in 0..2 * rounds {
        let (a, b) = if r % 2 == 0 { ("f", "g") } else { ("g", "f") };
        let t = timed(n, || {
            for i in 0..n {
                std::fs::rename(
                    native.join(format!("{a}{i}")),
                    native.join(format!("{b}{i}")),
                )
                .expect("rename");
            }
        });
        native_renames.push(t.us);
    }
    let native_unlink = timed(n, || {
        for i in 0..n {
            std::fs::remove_file(native.join(format!("f{i}"))).expect("unlink");
        }
    });

    let path = dir.path().join("store");
    let store = LocalStore::init(&path, LocalConfig::default()).expect("init");
    let body = bytes::Bytes::from(body);
    rt.block_on(async {
        for i in 0..n {
            let key = format!("d/f{i}");
            store
                .put(&key, body.clone().into(), PutOptions::default())
                .await
                .expect("put");
        }
    });
    store.close().expect("close");
    let store = LocalStore::open(&path).expect("open");
    let (mut renames, mut rename_cpu) = (Vec::new(), Vec::new());
    for r in 0..2 * rounds {
        let (a, b) = if r % 2 == 0 { ("f", "g") } else { ("g", "f") };
        let t = timed(n, || {
            rt.block_on(async {
                for i in 0..n {
                    let (src, dst) = (format!("d/{a}{i}"), format!("d/{b}{i}"));
                    store
                        .rename(&src, &dst, RenameOptions::default())
                        .await
                        .expect("rename");
                }
            })
        });
        renames.push(t.us);
        rename_cpu.push(t.cpu_us);
    }
    let unlink = timed(n, || {
        rt.block_on(async {
            for i in 0..n {
                store.delete(&format!("d/f{i}")).await.expect("delete");
            }
        })
    });
    store.close().expect("close");

    let native_rename = common::median(native_renames);
    let passes: Vec<String> = renames
        .iter()
        .zip(&rename_cpu)
        .map(|(us, cpu)| format!("{us:.1} ({cpu:.1})"))
        .collect();
    let rename = common::median(renames);
    println!("rename: {n} objects of 4 KiB in one directory, one thread, {rounds} round(s) there and back");
    println!(
        "  rename   store {rename:>7.1} us ({:.1} us CPU)  native {native_rename:>6.1} us  store/native {:.2}x the time",
        common::median(rename_cpu),
        rename / native_rename
    );
    println!(
        "  delete   store {:>7.1} us ({:.1} us CPU)  native {:>6.1} us  store/native {:.2}x the time",
        unlink.us,
        unlink.cpu_us,
        native_unlink.us,
        unlink.us / native_unlink.us
    );
    // The first pass reads the rows sled holds; later ones mostly what the passes before
    // left in the in-memory tables (until the flusher's next checkpoint moves them).
    println!("  rename passes, us (CPU us): {}", passes.join(", "));
}
