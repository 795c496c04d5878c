//! History benchmarks of the local store, each against a baseline measured in the same run:
//!
//! * a listing of 1,000 entries as of a past moment, each key with 100 versions (the moment
//!   halfway through them), vs the current listing of the same directory (target <= 1.5x);
//!   The same listing computed from `list_versions` (the trait's default) is shown too;
//! * versions listed per second (`list_versions` over those 100,000 versions) vs entries of
//!   the current listing per second;
//! * creating a named snapshot in a store of 1,000,000 keys (target <= 1 ms) vs a put of an
//!   empty object;
//! * listing 10,000 named snapshots (what `ls .snapshots` reads; target <= 100 ms) vs listing
//!   10,000 keys;
//! * measuring what each named snapshot alone holds (`snapshot list`'s exact figures): 9
//!   snapshots taken while the 1,000 keys got their 100 versions, under a policy that keeps
//!   nothing else, then the same with 10,000 more, vs a full scan of the store's versions
//!   (what a measure by gc's pass reads; the target is to read what changed, not the store).
//!
//! After criterion's report, a table of times and ratios is printed from criterion's own
//! estimates. `OBJFS_BENCH_KEYS` lowers the 1,000,000 keys for a quick run.

#[allow(dead_code)] // each bench uses part of what the benches share
mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::{bench_dir, count_versions, mean_ns, rt};
use criterion::{Criterion, Throughput};
use objfs_store::history::{self, snapshots};
use objfs_store::local::{LocalConfig, LocalStore};
use objfs_store::*;

const KEYS: usize = 1000;
const VERSIONS: usize = 100;
const SNAPSHOTS: usize = 10_000;

/// Writes `f(i)` for i in 0..n, on four tasks.
fn put_all(
    rt: &tokio::runtime::Runtime,
    store: &Arc<LocalStore>,
    n: usize,
    f: fn(usize) -> String,
) {
    rt.block_on(async {
        let mut tasks = Vec::new();
        for t in 0..4 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in (t..n).step_by(4) {
                    let body = bytes::Bytes::from_static(b"v").into();
                    store.put(&f(i), body, PutOptions::default()).await?;
                }
                Ok::<_, StoreError>(())
            }));
        }
        for t in tasks {
            t.await.expect("join").expect("put");
        }
    });
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let rt = rt();
    let dir = bench_dir();
    let path = dir.path().join("store");
    let store = Arc::new(LocalStore::init(&path, LocalConfig::default()).expect("init"));
    let bulk: usize = std::env::var("OBJFS_BENCH_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    eprintln!("history: writing {bulk} keys, then {KEYS} keys x {VERSIONS} versions...");
    put_all(&rt, &store, bulk, |i| {
        format!("bulk/d{:04}/f{:05}", i / 1000, i % 1000)
    });
    let mut middle = SystemTime::now();
    let mut moments = Vec::new();
    for round in 0..VERSIONS {
        if round == VERSIONS / 2 {
            middle = SystemTime::now();
        }
        if round > 0 && round % 10 == 0 {
            moments.push(SystemTime::now());
        }
        put_all(&rt, &store, KEYS, |i| format!("hist/k{i:04}"));
    }
    // Close and open again: the rows go from the log's tables into sled, as in a store that
    // has been running a while.
    let store = Arc::into_inner(store).expect("one owner");
    store.close().expect("close");
    let store = LocalStore::open(&path).expect("open");

    let dir_req = ListRequest {
        max_keys: 1000,
        ..ListRequest::dir("hist/")
    };
    let mut g = c.benchmark_group("history_list_1000x100");
    g.sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(KEYS as u64));
    g.bench_function("current", |b| {
        b.iter(|| {
            let page = rt.block_on(store.list(&dir_req)).expect("list");
            assert_eq!(page.objects.len(), KEYS);
            black_box(page)
        })
    });
    for (id, at) in [
        ("as_of_middle", middle),
        ("as_of_now", SystemTime::now() + Duration::from_secs(3600)),
    ] {
        g.bench_function(id, |b| {
            b.iter(|| {
                let page = rt.block_on(store.list_at(&dir_req, at)).expect("list_at");
                assert_eq!(page.objects.len(), KEYS);
                black_box(page)
            })
        });
    }
    // The same listing computed from list_versions (the trait's default, what a backend
    // without seeks does): O(versions).
    g.sample_size(10);
    g.bench_function("by_versions", |b| {
        b.iter(|| {
            let page = rt
                .block_on(history::as_of::list_at_by_versions(
                    &store, &dir_req, middle,
                ))
                .expect("list_at_by_versions");
            assert_eq!(page.objects.len(), KEYS);
            black_box(page)
        })
    });
    g.finish();

    let mut g = c.benchmark_group("history_list_versions");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Elements((KEYS * VERSIONS) as u64));
    g.bench_function("objfs", |b| {
        b.iter(|| {
            let n = count_versions(&rt, &store, "hist/");
            assert_eq!(n, KEYS * VERSIONS);
        })
    });
    g.finish();

    // What each snapshot alone holds: 9 snapshots among the 100 versions of 1,000 keys.
    let nothing = Duration::ZERO;
    let keep_nothing = history::retention::Policy {
        keep_all: nothing,
        hourly: nothing,
        daily: nothing,
        deleted: nothing,
    };
    rt.block_on(async {
        history::retention::save(&store, &keep_nothing)
            .await
            .expect("policy");
        for (i, at) in moments.iter().enumerate() {
            snapshots::create(&store, &format!("m{i}"), *at, SystemTime::now())
                .await
                .expect("snapshot");
        }
    });
    let exclusive = store.snapshot_exclusive().expect("measure");
    let held: u64 = exclusive.values().map(|e| e.versions).sum();
    eprintln!(
        "history: {} snapshots alone hold {held} versions",
        exclusive.len()
    );
    assert_eq!(
        held,
        moments.len() as u64 * KEYS as u64,
        "each alone sees one version per key"
    );
    let mut g = c.benchmark_group("history_exclusive");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    g.bench_function("snapshots_9", |b| {
        b.iter(|| black_box(store.snapshot_exclusive().expect("measure")))
    });
    g.bench_function("full_scan", |b| {
        b.iter(|| black_box(count_versions(&rt, &store, "")))
    });
    g.finish();

    eprintln!("history: creating {SNAPSHOTS} snapshots...");
    let now = SystemTime::now();
    rt.block_on(async {
        for i in 0..SNAPSHOTS {
            let at = now - Duration::from_secs(i as u64);
            snapshots::create(&store, &format!("s{i:05}"), at, now)
                .await
                .expect("snapshot");
        }
    });
    let mut g = c.benchmark_group("history_list_10000");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(SNAPSHOTS as u64));
    g.bench_function("snapshots", |b| {
        b.iter(|| {
            let list = rt.block_on(snapshots::list(&store)).expect("list");
            assert_eq!(list.len(), SNAPSHOTS + moments.len());
            black_box(list)
        })
    });
    g.bench_function("exclusive", |b| {
        b.iter(|| black_box(store.snapshot_exclusive().expect("measure")))
    });
    g.bench_function("keys", |b| {
        b.iter(|| {
            let mut req = ListRequest {
                prefix: "bulk/".into(),
                max_keys: 1000,
                ..Default::default()
            };
            let mut n = 0;
            while n < SNAPSHOTS.min(bulk) {
                let page = rt.block_on(store.list(&req)).expect("list");
                n += page.objects.len();
                match page.next_token {
                    Some(t) => req.continuation = Some(t),
                    None => break,
                }
            }
            black_box(n)
        })
    });
    g.finish();

    let mut g = c.benchmark_group("history_snapshot_create");
    g.sample_size(20).measurement_time(Duration::from_secs(3));
    let mut i = 0u64;
    g.bench_function("snapshot", |b| {
        b.iter(|| {
            i += 1;
            let t = SystemTime::now();
            rt.block_on(snapshots::create(&store, &format!("c{i}"), t, t))
                .expect("create")
        })
    });
    let mut j = 0u64;
    g.bench_function("put_empty", |b| {
        b.iter(|| {
            j += 1;
            let body = bytes::Bytes::new().into();
            rt.block_on(store.put(&format!("empty/{j}"), body, PutOptions::default()))
                .expect("put")
        })
    });
    g.finish();
    c.final_summary();
    store.close().expect("close");
    report(bulk);
}

fn report(bulk: usize) {
    println!("\n== objfs-store history (same run, same disk) ==");
    println!(
        "{:<34} {:>12} {:>12} {:>8}  target",
        "benchmark", "objfs", "baseline", "ratio"
    );
    let row = |what: &str, o: f64, base: f64, target: &str| {
        println!(
            "{what:<34} {:>9.3} ms {:>9.3} ms {:>7.2}x  {target}",
            o / 1e6,
            base / 1e6,
            o / base
        );
    };
    let g = "history_list_1000x100";
    if let (Some(cur), Some(mid), Some(now)) = (
        mean_ns(g, "current"),
        mean_ns(g, "as_of_middle"),
        mean_ns(g, "as_of_now"),
    ) {
        row("list 1000 as of T (100 v/key)", mid, cur, "<= 1.5x");
        row("list 1000 as of now (100 v/key)", now, cur, "<= 1.5x");
    }
    if let (Some(by), Some(cur)) = (mean_ns(g, "by_versions"), mean_ns(g, "current")) {
        row("  ... from list_versions (default)", by, cur, "");
    }
    if let (Some(v), Some(cur)) = (
        mean_ns("history_list_versions", "objfs"),
        mean_ns(g, "current"),
    ) {
        let vps = (KEYS * VERSIONS) as f64 / (v / 1e9);
        let eps = KEYS as f64 / (cur / 1e9);
        println!(
            "{:<34} {:>9.0} /s {:>9.0} /s {:>7.2}x  (versions/s vs entries/s of list)",
            "list_versions",
            vps,
            eps,
            vps / eps
        );
    }
    let g = "history_list_10000";
    if let (Some(s), Some(k)) = (mean_ns(g, "snapshots"), mean_ns(g, "keys")) {
        row("list 10000 snapshots", s, k, "<= 100 ms (vs 10000 keys)");
    }
    let g = "history_exclusive";
    if let Some(full) = mean_ns(g, "full_scan") {
        if let Some(e) = mean_ns(g, "snapshots_9") {
            row(
                "snapshot list, exact (9 snaps)",
                e,
                full,
                "< 1x (vs full version scan)",
            );
        }
        if let Some(e) = mean_ns("history_list_10000", "exclusive") {
            row(
                "  ... with 10,009 snapshots",
                e,
                full,
                "< 1x (vs full version scan)",
            );
        }
    }
    let g = "history_snapshot_create";
    if let (Some(s), Some(p)) = (mean_ns(g, "snapshot"), mean_ns(g, "put_empty")) {
        row(
            &format!("snapshot create ({bulk} keys)"),
            s,
            p,
            "<= 1 ms (vs empty put)",
        );
    }
}
