//! Commit throughput benchmark (issue 9, store side): 4 KiB non-durable puts of new keys on one
//! thread, sustained long enough that the background checkpoint into sled is part of the
//! figure, then the store closed (every logged row applied to sled and flushed).
//!
//! Printed per run: the rate while puts were acknowledged, the rate including the close (what
//! a sustained stream gets once sled has to absorb every row), the CPU per put on the calling
//! thread and in the whole process (getrusage), and, as the baseline measured in the same run
//! on the same disk, the same number of 4 KiB `pwrite`s appended to one file (the floor of any
//! write path: the page-cache copy). Target: >= 50,000 puts/s sustained (docs/BENCHMARKS.md).
//! `OBJFS_BENCH_KEYS` changes the 200,000 puts; `OBJFS_BENCH_ROUNDS` the 3 rounds;
//! `OBJFS_BENCH_SPACE=N` cycles the puts over N keys, so that all but the first N overwrite
//! (each makes a version over a data version: the commit then also files the ended version in
//! the `e` table).

#[allow(dead_code)] // each bench uses part of what the benches share
mod common;

use std::os::unix::fs::FileExt;
use std::time::Instant;

use objfs_store::local::{LocalConfig, LocalStore};
use objfs_store::{ObjectStore, PutOptions};

/// Puts per second the sustained stream must reach.
const TARGET_PUTS_PER_SEC: f64 = 50_000.0;

struct Round {
    acked: f64,
    sustained: f64,
    thread_us: f64,
    process_us: f64,
    native: f64,
}

fn round(rt: &tokio::runtime::Runtime, n: usize, space: usize) -> Round {
    let dir = common::bench_dir();
    let body = bytes::Bytes::from(vec![0x5au8; 4096]);

    // Baseline: the same bytes appended to one file with pwrite.
    let path = dir.path().join("native");
    let f = std::fs::File::create(&path).expect("native file");
    let started = Instant::now();
    for i in 0..n {
        f.write_all_at(&body, (i * body.len()) as u64)
            .expect("pwrite");
    }
    let native = n as f64 / started.elapsed().as_secs_f64();
    drop(f);
    let _ = std::fs::remove_file(&path);

    let store = LocalStore::init(&dir.path().join("store"), LocalConfig::default()).expect("init");
    let (t0, p0) = (common::cpu_seconds(true), common::cpu_seconds(false));
    let started = Instant::now();
    rt.block_on(async {
        for i in 0..n {
            store
                .put(
                    &format!("s/{}", i % space),
                    body.clone().into(),
                    PutOptions::default(),
                )
                .await
                .expect("put");
        }
    });
    let acked_secs = started.elapsed().as_secs_f64();
    let thread_cpu = common::cpu_seconds(true) - t0;
    store.close().expect("close");
    let total_secs = started.elapsed().as_secs_f64();
    let process_cpu = common::cpu_seconds(false) - p0;
    Round {
        acked: n as f64 / acked_secs,
        sustained: n as f64 / total_secs,
        thread_us: thread_cpu * 1e6 / n as f64,
        process_us: process_cpu * 1e6 / n as f64,
        native,
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs this quickly with few keys.
    let quick = std::env::args().any(|a| a == "--test");
    let n = common::env_usize("OBJFS_BENCH_KEYS", if quick { 2_000 } else { 200_000 });
    let rounds = common::env_usize("OBJFS_BENCH_ROUNDS", if quick { 1 } else { 3 });
    let space = common::env_usize("OBJFS_BENCH_SPACE", n).clamp(1, n.max(1));
    // One thread: puts run inline on the calling thread (the local store's small puts do).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let all: Vec<Round> = (0..rounds).map(|_| round(&rt, n, space)).collect();
    let m = |f: fn(&Round) -> f64| common::median(all.iter().map(f).collect());
    let (acked, sustained, native) = (m(|r| r.acked), m(|r| r.sustained), m(|r| r.native));
    let keys = if space >= n {
        "new keys".to_string()
    } else {
        format!("over {space} keys: {} overwrites", n - space)
    };
    println!(
        "commit: {n} puts of 4 KiB ({keys}, not durable) on one thread, median of {rounds} rounds"
    );
    println!("  baseline: 4 KiB pwrite appends           {native:>9.0} /s",);
    println!(
        "  puts acknowledged                         {acked:>9.0} /s  ({:.3}x the baseline)",
        acked / native
    );
    println!(
        "  puts sustained (until close applied them) {sustained:>9.0} /s  ({:.3}x the baseline) = {:.2}x the target of {TARGET_PUTS_PER_SEC:.0}/s",
        sustained / native,
        sustained / TARGET_PUTS_PER_SEC
    );
    println!(
        "  CPU per put: {:.1} us on the calling thread, {:.1} us in the process",
        m(|r| r.thread_us),
        m(|r| r.process_us)
    );
}
