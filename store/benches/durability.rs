//! Durability benchmarks, each against a baseline measured in the same run:
//!
//! * erasure coding (4+2) of a 64 MiB volume through our placement path (`Scheme`) vs calling
//!   reed-solomon-erasure directly on the same buffers; reconstruction of two lost shards the
//!   same way (target: >= 0.9x, our overhead around the library stays small);
//! * scrub rate of placed volumes vs BLAKE3 over the same bytes in memory, and vs reading the
//!   shard files from disk;
//! * rebuilding a lost disk after `disk replace` vs copying the same amount of data on the same
//!   disk (`OBJFS_BENCH_REBUILD_MIB`, default 1024).
//!
//! Build with `--features simd-accel` to try the library's C kernels.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use objfs_store::local::erasure::Scheme;
use objfs_store::local::{EcSetting, LocalConfig, LocalStore};
use objfs_store::{ObjectStore, PutOptions};
use reed_solomon_erasure::galois_8::ReedSolomon;

const VOLUME: usize = 64 << 20;

fn data(n: usize) -> Vec<u8> {
    let mut x = 0x2545F4914F6CDD1Du64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn bench_dir() -> tempfile::TempDir {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-tmp");
    let _ = std::fs::create_dir_all(&base);
    tempfile::tempdir_in(base).expect("bench dir")
}

fn coding(c: &mut Criterion) {
    let image = data(VOLUME);
    let scheme = Scheme::new(4, 2).expect("scheme");
    let rs = ReedSolomon::new(4, 2).expect("rs");
    let sl = scheme.shard_len(VOLUME as u64) as usize;
    let mut g = c.benchmark_group("ec_encode_4+2_64MiB");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Bytes(VOLUME as u64));
    g.bench_function("objfs", |b| {
        let mut parity = vec![vec![0u8; sl]; 2];
        b.iter(|| {
            let d: Vec<&[u8]> = image.chunks(sl).collect();
            let mut p: Vec<&mut [u8]> = parity.iter_mut().map(|v| v.as_mut_slice()).collect();
            scheme.encode(&d, &mut p).expect("encode");
            black_box(&parity);
        })
    });
    g.bench_function("library", |b| {
        let mut parity = vec![vec![0u8; sl]; 2];
        b.iter(|| {
            let d: Vec<&[u8]> = image.chunks(sl).collect();
            let mut p: Vec<&mut [u8]> = parity.iter_mut().map(|v| v.as_mut_slice()).collect();
            rs.encode_sep(&d, &mut p).expect("encode");
            black_box(&parity);
        })
    });
    g.finish();

    let mut shards: Vec<Vec<u8>> = image.chunks(sl).map(|c| c.to_vec()).collect();
    let mut parity = vec![vec![0u8; sl]; 2];
    {
        let d: Vec<&[u8]> = shards.iter().map(|v| v.as_slice()).collect();
        let mut p: Vec<&mut [u8]> = parity.iter_mut().map(|v| v.as_mut_slice()).collect();
        rs.encode_sep(&d, &mut p).expect("encode");
    }
    shards.extend(parity);
    let mut g = c.benchmark_group("ec_reconstruct_2_lost_64MiB");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Bytes(VOLUME as u64));
    g.bench_function("objfs", |b| {
        b.iter_batched(
            || {
                let mut o: Vec<Option<Vec<u8>>> = shards.iter().cloned().map(Some).collect();
                o[0] = None;
                o[2] = None;
                o
            },
            |mut o| {
                scheme.reconstruct(&mut o).expect("reconstruct");
                black_box(o)
            },
            criterion::BatchSize::LargeInput,
        )
    });
    g.bench_function("library", |b| {
        b.iter_batched(
            || {
                let mut o: Vec<Option<Vec<u8>>> = shards.iter().cloned().map(Some).collect();
                o[0] = None;
                o[2] = None;
                o
            },
            |mut o| {
                rs.reconstruct(&mut o).expect("reconstruct");
                black_box(o)
            },
            criterion::BatchSize::LargeInput,
        )
    });
    g.finish();
}

/// A 6-disk 4+2 store holding `mib` MiB of objects, all placed.
fn placed_store(dir: &Path, mib: usize) -> (LocalStore, Vec<std::path::PathBuf>) {
    let disks: Vec<_> = (0..6).map(|i| dir.join(format!("disk{i}"))).collect();
    let cfg = LocalConfig {
        disks: disks.clone(),
        replicas: 2,
        ec: EcSetting::On { k: 4, m: 2 },
        volume_size: 64 << 20,
        ..Default::default()
    };
    let store = LocalStore::init(&dir.join("store"), cfg).expect("init");
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let chunk = data(4 << 20);
    rt.block_on(async {
        for i in 0..mib / 4 {
            store
                .put(
                    &format!("o/{i}"),
                    chunk.clone().into(),
                    PutOptions::default(),
                )
                .await
                .expect("put");
        }
    });
    store.place_now(|_| {}).expect("place");
    (store, disks)
}

fn scrub(c: &mut Criterion) {
    let dir = bench_dir();
    let mib = 256;
    let (store, disks) = placed_store(dir.path(), mib);
    let on_disk: u64 = disks
        .iter()
        .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
        .filter(|e| e.file_name().to_string_lossy().contains(".s"))
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum();
    let mut g = c.benchmark_group("scrub_256MiB_placed");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(8))
        .throughput(Throughput::Bytes(on_disk));
    g.bench_function("objfs", |b| {
        b.iter(|| store.scrub_now(|_| {}).expect("scrub"))
    });
    let mem = data(on_disk as usize);
    g.bench_function("blake3_memory", |b| {
        b.iter(|| {
            for c in mem.chunks(64 << 10) {
                black_box(blake3::hash(c));
            }
        })
    });
    let files: Vec<_> = disks
        .iter()
        .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains(".s"))
        .collect();
    g.bench_function("read_from_disk", |b| {
        b.iter(|| {
            for f in &files {
                black_box(std::fs::read(f).expect("read").len());
            }
        })
    });
    g.finish();
}

/// One timed run (seconds each): rebuild of a lost disk vs copying as many bytes.
fn rebuild() -> Option<(f64, f64, u64)> {
    let mib: usize = std::env::var("OBJFS_BENCH_REBUILD_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let dir = bench_dir();
    let (store, disks) = placed_store(dir.path(), mib);
    let lost: u64 = std::fs::read_dir(&disks[1])
        .ok()?
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    std::fs::remove_dir_all(&disks[1]).ok()?;
    let new = dir.path().join("disk1-new");
    let t = Instant::now();
    store.replace_disk(&disks[1], &new).ok()?;
    let p = store.scrub_now(|_| {}).ok()?;
    let rebuild = t.elapsed().as_secs_f64();
    assert_eq!(p.counters.get("unrepairable").copied().unwrap_or(0), 0);
    // Baseline: copy the same number of bytes (the volume data) on the same disk.
    let src = dir.path().join("copy-src");
    std::fs::write(&src, data(lost as usize)).ok()?;
    let t = Instant::now();
    std::fs::copy(&src, dir.path().join("copy-dst")).ok()?;
    std::fs::File::open(dir.path().join("copy-dst"))
        .and_then(|f| f.sync_all())
        .ok()?;
    Some((rebuild, t.elapsed().as_secs_f64(), lost))
}

fn mean_ns(group: &str, id: &str) -> Option<f64> {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/criterion");
    let text =
        std::fs::read_to_string(base.join(group).join(id).join("new/estimates.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["mean"]["point_estimate"].as_f64()
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    coding(&mut c);
    scrub(&mut c);
    c.final_summary();
    let simd = if cfg!(feature = "simd-accel") {
        "simd-accel"
    } else {
        "pure Rust"
    };
    println!("\n== durability vs baselines (same run; reed-solomon-erasure: {simd}) ==");
    let mbs = |bytes: f64, ns: f64| bytes / (ns / 1e9) / 1e6;
    for g in ["ec_encode_4+2_64MiB", "ec_reconstruct_2_lost_64MiB"] {
        if let (Some(o), Some(l)) = (mean_ns(g, "objfs"), mean_ns(g, "library")) {
            println!(
                "{g:<30} objfs {:>7.0} MB/s  library {:>7.0} MB/s  ratio {:.2}x  (target >= 0.9x)",
                mbs(VOLUME as f64, o),
                mbs(VOLUME as f64, l),
                l / o
            );
        }
    }
    if let (Some(o), Some(m), Some(d)) = (
        mean_ns("scrub_256MiB_placed", "objfs"),
        mean_ns("scrub_256MiB_placed", "blake3_memory"),
        mean_ns("scrub_256MiB_placed", "read_from_disk"),
    ) {
        println!("scrub (1 core)                 objfs {:.2}x of BLAKE3 from memory, {:.2}x of reading the files", m / o, d / o);
    }
    match rebuild() {
        Some((r, cp, bytes)) => println!(
            "rebuild of a lost disk         {:.1} MiB in {r:.2} s ({:.0} MB/s); copying as much: {cp:.2} s; ratio {:.2}x",
            bytes as f64 / 1048576.0,
            bytes as f64 / r / 1e6,
            cp / r
        ),
        None => println!("rebuild: could not run"),
    }
}
