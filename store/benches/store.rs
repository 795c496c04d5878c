//! Store benchmarks against a native baseline measured in the same run on the same disk.
//!
//! * put / get of 4 KiB, 1 MiB and 64 MiB objects: the local store vs `std::fs` writing and
//!   reading the same bytes (non-durable vs plain write; durable vs write + fsync);
//! * a delimited listing page of 1,000 entries at a level with 1,000,000 keys below it, vs
//!   `read_dir` of a native directory of 1,000 entries;
//! * listing all versions of a key with 10,000 versions.
//!
//! After criterion's report, a table of ratios (objfs / native throughput) is printed from
//! criterion's own estimates. `OBJFS_BENCH_KEYS` lowers the 1,000,000 keys for a quick run;
//! `OBJFS_BENCH_SETTLE=SECS` waits that long after writing them, so the listing is measured
//! once their checkpoint into sled is over rather than during it.

#[allow(dead_code)] // each bench uses part of what the benches share
mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use common::{bench_dir, count_versions, mean_ns, rt};
use criterion::{BenchmarkId, Criterion, Throughput};
use objfs_store::local::{LocalConfig, LocalStore};
use objfs_store::*;

const SIZES: [(usize, &str); 3] = [(4 << 10, "4KiB"), (1 << 20, "1MiB"), (64 << 20, "64MiB")];

fn data(n: usize) -> bytes::Bytes {
    let mut v = vec![0u8; n];
    let mut x = 0x9E3779B97F4A7C15u64;
    for b in v.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    v.into()
}

fn put_get(c: &mut Criterion) {
    let rt = rt();
    let dir = bench_dir();
    let store = Arc::new(
        LocalStore::init(&dir.path().join("store"), LocalConfig::default()).expect("init"),
    );
    let native = dir.path().join("native");
    std::fs::create_dir_all(&native).expect("native dir");

    for durable in [false, true] {
        let mut g = c.benchmark_group(if durable { "put_durable" } else { "put" });
        g.sample_size(10)
            .measurement_time(Duration::from_secs(4))
            .warm_up_time(Duration::from_millis(500));
        for (n, name) in SIZES {
            if durable && n == 1 << 20 {
                continue;
            }
            let body = data(n);
            g.throughput(Throughput::Bytes(n as u64));
            let mut i = 0u64;
            g.bench_with_input(BenchmarkId::new("objfs", name), &body, |b, body| {
                b.iter(|| {
                    i += 1;
                    let opts = PutOptions {
                        durable,
                        ..Default::default()
                    };
                    rt.block_on(store.put(&format!("put/{name}/{i}"), body.clone().into(), opts))
                        .expect("put")
                })
            });
            let mut j = 0u64;
            g.bench_with_input(BenchmarkId::new("native", name), &body, |b, body| {
                b.iter(|| {
                    j += 1;
                    let p = native.join(format!("{name}-{durable}-{j}"));
                    std::fs::write(&p, body).expect("write");
                    if durable {
                        std::fs::File::open(&p)
                            .and_then(|f| f.sync_all())
                            .expect("fsync");
                    }
                })
            });
        }
        g.finish();
    }

    let mut g = c.benchmark_group("get");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_millis(500));
    for (n, name) in SIZES {
        let body = data(n);
        let key = format!("get/{name}");
        rt.block_on(store.put(&key, body.clone().into(), PutOptions::default()))
            .expect("put");
        let p = native.join(format!("get-{name}"));
        std::fs::write(&p, &body).expect("write");
        g.throughput(Throughput::Bytes(n as u64));
        g.bench_function(BenchmarkId::new("objfs", name), |b| {
            b.iter(|| {
                let r = rt
                    .block_on(async { store.get(&key, GetOptions::default()).await?.bytes().await })
                    .expect("get");
                black_box(r.len())
            })
        });
        g.bench_function(BenchmarkId::new("native", name), |b| {
            b.iter(|| black_box(std::fs::read(&p).expect("read").len()))
        });
    }
    g.finish();
    drop(store);
}

fn small_puts_per_second(c: &mut Criterion) {
    // 4 KiB non-durable puts from one thread, one after another: ops/s is 1 / time.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let dir = bench_dir();
    let store = LocalStore::init(&dir.path().join("store"), LocalConfig::default()).expect("init");
    let body = data(4 << 10);
    let mut g = c.benchmark_group("put_one_thread");
    g.sample_size(20)
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Elements(1));
    let mut i = 0u64;
    g.bench_function("objfs_4KiB", |b| {
        b.iter(|| {
            i += 1;
            rt.block_on(store.put(
                &format!("s/{i}"),
                body.clone().into(),
                PutOptions::default(),
            ))
            .expect("put")
        })
    });
    g.finish();
}

fn listing(c: &mut Criterion) {
    let rt = rt();
    let dir = bench_dir();
    let store = Arc::new(
        LocalStore::init(&dir.path().join("store"), LocalConfig::default()).expect("init"),
    );
    let total: usize = std::env::var("OBJFS_BENCH_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dirs = 1000usize;
    let per_dir = (total / dirs).max(1);
    eprintln!(
        "listing: writing {} keys ({dirs} directories x {per_dir})...",
        dirs * per_dir
    );
    rt.block_on(async {
        let mut tasks = Vec::new();
        for t in 0..4 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for d in (t..dirs).step_by(4) {
                    for f in 0..per_dir {
                        store
                            .put(
                                &format!("top/d{d:04}/f{f:05}"),
                                bytes::Bytes::new().into(),
                                PutOptions::default(),
                            )
                            .await?;
                    }
                }
                Ok::<_, StoreError>(())
            }));
        }
        for t in tasks {
            t.await.expect("join").expect("put");
        }
    });
    if let Some(secs) = std::env::var("OBJFS_BENCH_SETTLE")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        std::thread::sleep(Duration::from_secs(secs));
    }
    let native = dir.path().join("native-dir");
    std::fs::create_dir_all(&native).expect("mkdir");
    for d in 0..dirs {
        std::fs::create_dir_all(native.join(format!("d{d:04}"))).expect("mkdir");
    }

    let mut g = c.benchmark_group("list_1000_of_1M");
    g.sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1000));
    g.bench_function("objfs", |b| {
        b.iter(|| {
            let req = ListRequest {
                max_keys: 1000,
                ..ListRequest::dir("top/")
            };
            let page = rt.block_on(store.list(&req)).expect("list");
            assert_eq!(page.common_prefixes.len(), 1000);
            black_box(page)
        })
    });
    g.bench_function("native", |b| {
        b.iter(|| {
            let n = std::fs::read_dir(&native)
                .expect("read_dir")
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                .count();
            assert_eq!(n, 1000);
        })
    });
    g.finish();

    // A key with 10,000 versions.
    rt.block_on(async {
        for _ in 0..10_000 {
            store
                .put(
                    "hist/key",
                    bytes::Bytes::from_static(b"v").into(),
                    PutOptions::default(),
                )
                .await
                .expect("put");
        }
    });
    let mut g = c.benchmark_group("list_versions_10000");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(10_000));
    g.bench_function("objfs", |b| {
        b.iter(|| {
            let n = count_versions(&rt, store.as_ref(), "hist/key");
            assert_eq!(n, 10_000);
        })
    });
    g.finish();
}

fn report() {
    println!("\n== objfs-store vs native (same run, same disk) ==");
    println!(
        "{:<22} {:>8} {:>14} {:>14} {:>8}  target",
        "benchmark", "size", "objfs", "native", "ratio"
    );
    for (group, target) in [
        ("put", Some(0.7)),
        ("put_durable", None),
        ("get", Some(0.8)),
    ] {
        for (n, name) in SIZES {
            let (Some(o), Some(nat)) = (
                mean_ns(group, &format!("objfs/{name}")),
                mean_ns(group, &format!("native/{name}")),
            ) else {
                continue;
            };
            let mbs = |ns: f64| n as f64 / (ns / 1e9) / 1e6;
            let t = match (target, n) {
                (Some(t), x) if x == 64 << 20 => format!(">= {t}x"),
                _ => String::new(),
            };
            println!(
                "{group:<22} {name:>8} {:>9.0} MB/s {:>9.0} MB/s {:>7.2}x  {t}",
                mbs(o),
                mbs(nat),
                nat / o
            );
        }
    }
    if let Some(o) = mean_ns("put_one_thread", "objfs_4KiB") {
        println!(
            "{:<22} {:>8} {:>11.0} op/s {:>14} {:>8}  >= 20000 op/s",
            "put 1 thread",
            "4KiB",
            1e9 / o,
            "",
            ""
        );
    }
    if let (Some(o), Some(nat)) = (
        mean_ns("list_1000_of_1M", "objfs"),
        mean_ns("list_1000_of_1M", "native"),
    ) {
        println!(
            "{:<22} {:>8} {:>11.2} ms {:>11.2} ms {:>7.2}x  <= 5 ms",
            "list page of 1000",
            "1M keys",
            o / 1e6,
            nat / 1e6,
            nat / o
        );
    }
    if let Some(o) = mean_ns("list_versions_10000", "objfs") {
        println!(
            "{:<22} {:>8} {:>11.2} ms",
            "list 10000 versions",
            "1 key",
            o / 1e6
        );
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    put_get(&mut c);
    small_puts_per_second(&mut c);
    listing(&mut c);
    c.final_summary();
    report();
}
