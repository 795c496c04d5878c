//! Benchmark of the remote tier against the S3 server the test variables name (moto from
//! scripts/test, or any OBJFS_TEST_S3_ENDPOINT/PROFILE/REGION; with only
//! OBJFS_TEST_GARAGE_ENDPOINT/PROFILE/REGION set, that Garage): tiering throughput against raw
//! PutObject of the same bytes through the same client, a cold read of a tiered 4 KiB file
//! against a raw ranged GET of 4 KiB, and a cache-hit read against a local read of the same
//! sizes, and a whole scrub of the tiered volumes against raw GetObject of the same objects,
//! interleaved in one run; then mixed volumes (cold and hot files written in turn) repacked
//! and tiered, against raw PutObject of the cold bytes. Prints ratios (docs/BENCHMARKS.md). OBJFS_BENCH_MB sets the
//! bytes tiered (default 64), OBJFS_BENCH_JOBS the tier's `jobs` (default 4); the raw baseline
//! is measured both one PutObject at a time and `jobs` at once.

use std::time::{Duration, Instant};

use bytes::Bytes;
use objfs_store::local::tier::rules::{AgeBy, Rule};
use objfs_store::local::tier::scrub::RemoteScrub;
use objfs_store::local::tier::{TierRecord, DEFAULT_JOBS, TIER_FORMAT};
use objfs_store::local::{EcSetting, LocalConfig, LocalStore};
use objfs_store::{GetOptions, ListRequest, ObjectStore, PutOptions};
use objfs_tests::s3_fixture::{garage, moto};

fn data(n: usize, seed: u64) -> Vec<u8> {
    (0..n)
        .map(|i| ((i as u64 * 131 + seed) % 251) as u8)
        .collect()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64()
}

fn main() {
    let server = if std::env::var_os("OBJFS_TEST_S3_ENDPOINT").is_some() {
        moto()
    } else {
        garage()
    };
    let Some(server) = server else {
        eprintln!(
            "tier_bench: neither OBJFS_TEST_S3_ENDPOINT nor OBJFS_TEST_GARAGE_ENDPOINT is set; nothing measured"
        );
        return;
    };
    println!("tier_bench: against {} at {}", server.name, server.endpoint);
    let mb: usize = std::env::var("OBJFS_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let jobs: u32 = std::env::var("OBJFS_BENCH_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_JOBS);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (bucket, s3) = rt.block_on(server.fresh_bucket("tier-bench"));
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = LocalStore::init(&root, cfg_mixed()).unwrap();
    let put = |s: &LocalStore, k: &str, b: Vec<u8>| {
        rt.block_on(s.put(k, b.into(), PutOptions::default()))
            .unwrap();
    };
    for i in 0..mb / 4 {
        put(&store, &format!("cold/big{i}"), data(4 << 20, i as u64));
    }
    let small = 400;
    for i in 0..small {
        put(&store, &format!("cold/small{i}"), data(4096, i as u64));
    }
    store.place_now(|_| {}).unwrap();
    for i in 0..small {
        put(&store, &format!("hot/small{i}"), data(4096, i as u64));
    }
    store.tier_add(store_tier(&server, &bucket, jobs)).unwrap();
    store.set_lifecycle_rule(cold_rule()).unwrap();

    // Tiering throughput, between two baselines: raw PutObject of volume-sized objects.
    let raw_put = |tag: &str, bytes: u64| -> Duration {
        let body = Bytes::from(data(8 << 20, 7));
        let n = bytes.div_ceil(8 << 20).max(1);
        let t0 = Instant::now();
        for i in 0..n {
            rt.block_on(s3.put(
                &format!("raw/{tag}/{i}"),
                body.clone().into(),
                PutOptions::default(),
            ))
            .unwrap();
        }
        t0.elapsed() * (bytes as u32) / ((n * (8 << 20)) as u32).max(1)
    };
    // The same, `jobs` PutObjects at once.
    let raw_put_par = |tag: &str, bytes: u64| -> Duration {
        let body = Bytes::from(data(8 << 20, 7));
        let n = bytes.div_ceil(8 << 20).max(1);
        let t0 = Instant::now();
        let keys: Vec<String> = (0..n).map(|i| format!("raw/{tag}/{i}")).collect();
        for chunk in keys.chunks(jobs.max(1) as usize) {
            rt.block_on(futures::future::join_all(chunk.iter().map(|k| {
                let b = body.clone();
                let s3 = &s3;
                async move { s3.put(k, b.into(), PutOptions::default()).await }
            })))
            .into_iter()
            .for_each(|r| {
                r.unwrap();
            });
        }
        t0.elapsed() * (bytes as u32) / ((n * (8 << 20)) as u32).max(1)
    };
    let target = (mb as u64) << 20;
    let b1 = raw_put("a", target);
    let p1 = raw_put_par("pa", target);
    let t0 = Instant::now();
    let (p, _) = store.lifecycle_now_until(|_| true).unwrap();
    let tier_time = t0.elapsed();
    let run = p.last.unwrap();
    let tiered = run.counters.get("bytes_tiered").copied().unwrap_or(0);
    let p2 = raw_put_par("pb", tiered);
    let b2 = raw_put("b", tiered);
    let avg = |a: Duration, b: Duration| {
        Duration::from_secs_f64(
            (a.as_secs_f64() * tiered as f64 / target as f64 + b.as_secs_f64()) / 2.0,
        )
    };
    let (base, par) = (avg(b1, b2), avg(p1, p2));
    println!(
        "tiering: {} volumes, {:.1} MiB in {:.2?} with {jobs} job(s) (peak {} uploads at once): {:.1} MiB/s; raw PutObject of the same bytes {:.1} MiB/s one at a time, {:.1} MiB/s {jobs} at once; ratio {:.2}x / {:.2}x (tiering also reads every object back to verify it)",
        run.counters.get("volumes_tiered").copied().unwrap_or(0),
        tiered as f64 / (1 << 20) as f64,
        tier_time,
        run.counters.get("peak_uploads").copied().unwrap_or(1),
        mbps(tiered, tier_time),
        mbps(tiered, base),
        mbps(tiered, par),
        base.as_secs_f64() / tier_time.as_secs_f64(),
        par.as_secs_f64() / tier_time.as_secs_f64()
    );

    // Cold reads: no chunk cached; files 20 apart lie in distinct 64 KiB chunks.
    store.close().unwrap();
    let _ = std::fs::remove_dir_all(root.join("tier-cache"));
    let store = LocalStore::open(&root).unwrap();
    let objects = rt
        .block_on(s3.list(&ListRequest {
            prefix: "cold/".into(),
            ..Default::default()
        }))
        .unwrap()
        .objects;
    let (mut cold, mut raw) = (Vec::new(), Vec::new());
    for i in 0..small / 20 {
        let t = Instant::now();
        let got = rt
            .block_on(async {
                store
                    .get(&format!("cold/small{}", i * 20), GetOptions::default())
                    .await?
                    .bytes()
                    .await
            })
            .unwrap();
        cold.push(t.elapsed());
        assert_eq!(got.len(), 4096);
        let o = &objects[i % objects.len()].key;
        let t = Instant::now();
        let r = rt
            .block_on(async {
                s3.get(
                    o,
                    GetOptions {
                        range: Some(65536..65536 + 4096),
                        ..Default::default()
                    },
                )
                .await?
                .bytes()
                .await
            })
            .unwrap();
        raw.push(t.elapsed());
        assert_eq!(r.len(), 4096);
    }
    let (c, r) = (median(cold), median(raw));
    println!(
        "cold read of a tiered 4 KiB file: median {c:.2?}; raw ranged GET of 4 KiB {r:.2?}; ratio {:.2}x",
        r.as_secs_f64() / c.as_secs_f64()
    );

    // Cache hits against local reads, interleaved passes over 400 files of 4 KiB.
    let pass = |prefix: &str| -> Duration {
        let t = Instant::now();
        for i in 0..small {
            let got = rt
                .block_on(async {
                    store
                        .get(&format!("{prefix}{i}"), GetOptions::default())
                        .await?
                        .bytes()
                        .await
                })
                .unwrap();
            assert_eq!(got.len(), 4096);
        }
        t.elapsed()
    };
    pass("cold/small");
    let (mut hit, mut local) = (Vec::new(), Vec::new());
    for _ in 0..7 {
        hit.push(pass("cold/small"));
        local.push(pass("hot/small"));
    }
    let (h, l) = (median(hit), median(local));
    println!(
        "4 KiB reads: cache hit {:.1} us, local {:.1} us; cache hit at {:.2}x a local read (target >= 0.8x)",
        h.as_secs_f64() * 1e6 / small as f64,
        l.as_secs_f64() * 1e6 / small as f64,
        l.as_secs_f64() / h.as_secs_f64()
    );
    // 1 MiB reads: tiered big files (cache hits after one pass) against local copies.
    for i in 0..4 {
        put(&store, &format!("hot/big{i}"), data(1 << 20, i));
    }
    let big = |prefix: &str| -> Duration {
        let t = Instant::now();
        for i in 0..4 {
            let got = rt
                .block_on(async {
                    store
                        .get(
                            &format!("{prefix}{i}"),
                            GetOptions {
                                range: Some(0..1 << 20),
                                ..Default::default()
                            },
                        )
                        .await?
                        .bytes()
                        .await
                })
                .unwrap();
            assert_eq!(got.len(), 1 << 20);
        }
        t.elapsed()
    };
    big("cold/big");
    let (mut hit, mut local) = (Vec::new(), Vec::new());
    for _ in 0..7 {
        hit.push(big("cold/big"));
        local.push(big("hot/big"));
    }
    let (h, l) = (median(hit), median(local));
    println!(
        "1 MiB reads: cache hit {:.2} ms, local {:.2} ms; cache hit at {:.2}x a local read",
        h.as_secs_f64() * 1e3 / 4.0,
        l.as_secs_f64() * 1e3 / 4.0,
        l.as_secs_f64() / h.as_secs_f64()
    );

    // A whole remote scrub against raw GetObject of the same objects, before and after.
    let objects: Vec<String> = rt
        .block_on(s3.list(&ListRequest {
            prefix: "cold/".into(),
            ..Default::default()
        }))
        .unwrap()
        .objects
        .into_iter()
        .map(|o| o.key)
        .collect();
    let raw_get = || {
        let t0 = Instant::now();
        for o in &objects {
            rt.block_on(async { s3.get(o, GetOptions::default()).await?.bytes().await })
                .unwrap();
        }
        t0.elapsed()
    };
    let g1 = raw_get();
    let whole = RemoteScrub {
        full: true,
        sample: 0.0,
        bandwidth: 0,
    };
    let t0 = Instant::now();
    let (p, _) = store.scrub_now_remote_until(whole, |_| true).unwrap();
    let scrub_time = t0.elapsed();
    let g2 = raw_get();
    let checked = p.counters.get("bytes_checked").copied().unwrap_or(0);
    let remote: u64 = store.tier_status().unwrap().map_or(0, |t| t.bytes);
    let g = (g1 + g2) / 2;
    println!(
        "remote scrub (whole): {:.1} MiB of {} objects in {:.2?}: {:.1} MiB/s (local volumes included: {:.1} MiB checked in all); raw GetObject of the same objects {:.1} MiB/s; ratio {:.2}x",
        remote as f64 / (1 << 20) as f64,
        objects.len(),
        scrub_time,
        mbps(remote, scrub_time),
        checked as f64 / (1 << 20) as f64,
        mbps(remote, g),
        g.as_secs_f64() / scrub_time.as_secs_f64()
    );
    store.close().unwrap();

    // Mixed volumes: 64 KiB files under cold/ and hot/ written in turn, so every volume holds
    // both; the rule for cold/ repacks each volume's cold blobs into a volume of their own,
    // then tiers those. Against raw PutObject of the same bytes, one at a time.
    let root = dir.path().join("mixed");
    let store = LocalStore::init(&root, cfg_mixed()).unwrap();
    let n = (mb << 20) / (64 << 10);
    for i in 0..n {
        put(&store, &format!("cold/m{i}"), data(64 << 10, i as u64));
        put(&store, &format!("hot/m{i}"), data(64 << 10, i as u64 + 1));
    }
    let mut rec = store_tier(&server, &bucket, jobs);
    rec.prefix = "mixed/".into();
    store.tier_add(rec).unwrap();
    store.set_lifecycle_rule(cold_rule()).unwrap();
    let cold = (n as u64) * (64 << 10);
    let r1 = raw_put("m1", cold);
    let t0 = Instant::now();
    let (p, _) = store.lifecycle_now_until(|_| true).unwrap();
    let mixed_time = t0.elapsed();
    let r2 = raw_put("m2", cold);
    let run = p.last.unwrap();
    let c = |name: &str| run.counters.get(name).copied().unwrap_or(0);
    let raw = (r1 + r2) / 2;
    println!(
        "mixed volumes: {:.1} MiB of cold files among as many hot ones; {} volumes repacked ({:.1} MiB copied), {} tiered ({:.1} MiB) in {:.2?}: {:.1} MiB/s of cold data; raw PutObject of the same bytes {:.1} MiB/s; ratio {:.2}x",
        cold as f64 / (1 << 20) as f64,
        c("volumes_repacked"),
        c("bytes_repacked") as f64 / (1 << 20) as f64,
        c("volumes_tiered"),
        c("bytes_tiered") as f64 / (1 << 20) as f64,
        mixed_time,
        mbps(cold, mixed_time),
        mbps(cold, raw),
        raw.as_secs_f64() / mixed_time.as_secs_f64()
    );
    store.close().unwrap();
}

/// The mixed-volume phase's store: replicas only, 8 MiB volumes.
fn cfg_mixed() -> LocalConfig {
    LocalConfig {
        ec: EcSetting::Off,
        volume_size: 8 << 20,
        ..Default::default()
    }
}

/// Every version under `cold/` tiers at once.
fn cold_rule() -> Rule {
    Rule {
        prefix: "cold/".into(),
        after_secs: 0,
        noncurrent_after_secs: None,
        by: AgeBy::Modified,
    }
}

/// The tier record of `bucket` on `server`.
fn store_tier(server: &objfs_tests::s3_fixture::Server, bucket: &str, jobs: u32) -> TierRecord {
    TierRecord {
        format: TIER_FORMAT,
        bucket: bucket.to_string(),
        prefix: "cold/".into(),
        endpoint: Some(server.endpoint.clone()),
        region: Some(server.region.clone()),
        profile: server.profile.clone(),
        added: 0,
        jobs,
    }
}
