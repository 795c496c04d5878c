//! Restore benchmark (issue 10): 100,000 objects under one prefix, all deleted after a moment,
//! restored as of that moment on the local store. Planning (the parallel version listing and
//! the decisions, plus saving the plan as records) and execution (the conditional copies and
//! the checkpoints) are timed apart, each as keys per second.
//!
//! Two layouts: keys spread over 256 sub-prefixes (`img/xx/NNNNNN.jpg`, as hashed key prefixes
//! spread them, the S3 performance seed) and all keys at one level (`flat/NNNNNN.jpg`).
//! Baselines measured in the same run on the same store: the deletes that made the accident
//! (one unconditional single-key store operation per key, sequential), and one sequential
//! listing of every version under the prefix without decisions (before the plan, while the
//! store still applies the deletes to sled in the background, and again after it).
//!
//! Target: the whole restore at >= 20,000 keys/s (docs/BENCHMARKS.md; trivago's parallel S3
//! version listing reached ~3,300 versions/s). `OBJFS_BENCH_KEYS` changes the 100,000 keys,
//! `OBJFS_BENCH_JOBS` the parallelism (default 16, the command's default).

#[allow(dead_code)] // each bench uses part of what the benches share
mod common;

use std::path::Path;
use std::time::{Instant, SystemTime};

use objfs_store::history::restore::{self, Unwatched};
use objfs_store::local::{LocalConfig, LocalStore};
use objfs_store::{ObjectStore, PutOptions};

/// Keys per second the whole restore must reach.
const TARGET_KEYS_PER_SEC: f64 = 20_000.0;

fn bench_dir() -> tempfile::TempDir {
    // Same disk as the build (not tmpfs).
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-tmp");
    let _ = std::fs::create_dir_all(&base);
    tempfile::tempdir_in(base).expect("bench dir")
}

fn rate(n: usize, secs: f64) -> f64 {
    n as f64 / secs.max(1e-9)
}

async fn layout(name: &str, prefix: &str, key: impl Fn(usize) -> String, n: usize, jobs: usize) {
    let dir = bench_dir();
    let store = LocalStore::init(&dir.path().join("store"), LocalConfig::default()).expect("init");
    for i in 0..n {
        let body = format!("image {i}").into_bytes();
        store
            .put(&key(i), body.into(), PutOptions::default())
            .await
            .expect("put");
    }
    let t = SystemTime::now();
    while SystemTime::now() <= t {
        std::hint::spin_loop();
    }
    eprintln!("restore/{name}: {n} objects written; deleting");
    let started = Instant::now();
    for i in 0..n {
        store.delete(&key(i)).await.expect("delete");
    }
    let delete_secs = started.elapsed().as_secs_f64();
    store.sync().await.expect("sync");

    let started = Instant::now();
    let versions = common::count_versions_async(&store, prefix).await;
    let list_secs = started.elapsed().as_secs_f64();

    // The accident is in the past when the restore runs: sled holds it (the background
    // checkpoint of the deletes would otherwise run during the plan and the execution).
    store.close().expect("close");
    let store = LocalStore::open(&dir.path().join("store")).expect("open");

    let req = restore::Request {
        prefix: prefix.into(),
        at: t,
        as_of: "bench".into(),
        exact: false,
        jobs,
    };
    eprintln!("restore/{name}: planning");
    let plan_cpu = common::cpu_seconds(false);
    let started = Instant::now();
    let (mut job, steps) = restore::plan_job(&store, &req, SystemTime::now(), None, &mut Unwatched)
        .await
        .expect("plan");
    let plan_secs = started.elapsed().as_secs_f64();
    let plan_cpu = common::cpu_seconds(false) - plan_cpu;
    assert_eq!(steps.len(), n);
    // The same listing again, now that the background checkpoint of the deletes into sled
    // (which the first one competed with) is done: the fairer baseline for the plan.
    let started = Instant::now();
    let versions_again = common::count_versions_async(&store, prefix).await;
    let list_again_secs = started.elapsed().as_secs_f64();
    assert_eq!(versions, versions_again);
    eprintln!("restore/{name}: executing");
    let exec_cpu = common::cpu_seconds(false);
    let started = Instant::now();
    let report = restore::execute(&store, &mut job, jobs, &mut Unwatched)
        .await
        .expect("execute");
    let exec_secs = started.elapsed().as_secs_f64();
    let exec_cpu = common::cpu_seconds(false) - exec_cpu;
    assert!(
        report.all_succeeded() && report.done == n as u64,
        "{report:?}"
    );
    let total = plan_secs + exec_secs;

    println!("restore/{name}: {n} keys deleted, restored with --jobs {jobs}");
    println!(
        "  baseline: deletes (one store op per key)  {:>9.0} keys/s  ({delete_secs:.2} s)",
        rate(n, delete_secs)
    );
    println!(
        "  baseline: one listing of all versions     {:>9.0} versions/s  ({list_secs:.2} s, {versions} versions)",
        rate(versions, list_secs)
    );
    println!(
        "  baseline: the same listing after the plan {:>9.0} versions/s  ({list_again_secs:.2} s)",
        rate(versions, list_again_secs)
    );
    println!(
        "  plan (parallel listing + decisions + plan records) {:>9.0} keys/s  ({plan_secs:.2} s, {:.2}x the time of the listing after it)",
        rate(n, plan_secs),
        plan_secs / list_again_secs.max(1e-9)
    );
    println!(
        "  execute (conditional copies + checkpoints)         {:>9.0} keys/s  ({exec_secs:.2} s, {:.2}x the deletes' time)",
        rate(n, exec_secs),
        exec_secs / delete_secs.max(1e-9)
    );
    println!(
        "  CPU (whole process, the checkpoint into sled included): plan {:.1} us/key, execute {:.1} us/key",
        plan_cpu * 1e6 / n as f64,
        exec_cpu * 1e6 / n as f64
    );
    println!(
        "  whole restore                                      {:>9.0} keys/s  ({total:.2} s) = {:.2}x the target of {TARGET_KEYS_PER_SEC:.0} keys/s",
        rate(n, total),
        rate(n, total) / TARGET_KEYS_PER_SEC
    );
    store.close().expect("close");
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs this quickly with few keys.
    let quick = std::env::args().any(|a| a == "--test");
    let n = common::env_usize("OBJFS_BENCH_KEYS", if quick { 2_000 } else { 100_000 });
    let jobs = common::env_usize("OBJFS_BENCH_JOBS", 16);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        layout(
            "256-subprefixes",
            "img/",
            |i| format!("img/{:02x}/{i:06}.jpg", i % 256),
            n,
            jobs,
        )
        .await;
        layout("flat", "flat/", |i| format!("flat/{i:06}.jpg"), n, jobs).await;
    });
}
