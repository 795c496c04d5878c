//! Child process for the kill -9 test of tiering (tests/tests/tier_moto.rs): opens a local
//! store that has a remote tier and a rule selecting everything, and loops forever over
//! durable writes, `lifecycle --now` and, every third round, a recall of everything. Prints
//! `WILL <key> <seed>` before a write, `PUT <key> <seed>` once it is acknowledged, and
//! `REPACKED - <n>` after each lifecycle run (the volumes its last run repacked). The
//! parent kills it at random points (OBJFS_TIER_PAUSE_MS widens the windows inside a move).
//! With a third argument `gc`, each round also runs gc as if a year had passed (every
//! noncurrent version expires, nothing waits), so tiered volumes are deleted and compacted in
//! the bucket while the parent kills. With `mixed`, each write to `k/` is followed by one to
//! `h/` (which the parent's rule does not select), so volumes are mixed and lifecycle repacks
//! them; each round also runs gc (local compaction of the repacked volumes' garbage).

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use objfs_store::local::{GcOptions, LocalStore};
use objfs_store::{ObjectStore, PutOptions};

/// The bytes of `key` written with `seed` (the parent recomputes them).
pub fn body(key: &str, seed: u64) -> Vec<u8> {
    let len = 700 + (seed as usize * 7919) % 90_000;
    let k: u64 = key.bytes().map(u64::from).sum();
    (0..len)
        .map(|i| ((i as u64 * 37 + seed * 11 + k) % 253) as u8)
        .collect()
}

/// gc that applies the retention policy a year from now and reclaims at once.
pub fn year_on() -> GcOptions {
    GcOptions {
        delay: Duration::ZERO,
        garbage_ratio: 0.3,
        now: Some(SystemTime::now() + Duration::from_secs(400 * 86_400)),
        ..Default::default()
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(root) = args.get(1).map(PathBuf::from) else {
        eprintln!("usage: tier_runner <store> <start-seed>");
        std::process::exit(2);
    };
    let mut seed: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    let gc = args.get(3).map(String::as_str) == Some("gc");
    let mixed = args.get(3).map(String::as_str) == Some("mixed");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let store = LocalStore::open(&root).expect("open");
    let out = std::io::stdout();
    let mut round = 0u64;
    loop {
        round += 1;
        for i in 0..6 {
            for dir in ["k", "h"] {
                if dir == "h" && !mixed {
                    continue;
                }
                seed += 1;
                let key = format!("{dir}/{}", (seed + i) % 25);
                let _ = writeln!(out.lock(), "WILL {key} {seed}");
                let opts = PutOptions {
                    durable: true,
                    ..Default::default()
                };
                rt.block_on(store.put(&key, body(&key, seed).into(), opts))
                    .expect("put");
                let _ = writeln!(out.lock(), "PUT {key} {seed}");
            }
        }
        let (p, _) = store.lifecycle_now_until(|_| true).expect("lifecycle");
        let repacked = p.last.map_or(0, |r| {
            r.counters.get("volumes_repacked").copied().unwrap_or(0)
        });
        let _ = writeln!(out.lock(), "REPACKED - {repacked}");
        if mixed {
            let opts = GcOptions {
                delay: Duration::ZERO,
                garbage_ratio: 0.3,
                ..Default::default()
            };
            store.gc_now(opts, |_| {}).expect("gc");
        }
        if gc {
            store.gc_now(year_on(), |_| {}).expect("gc");
            if round % 4 != 0 {
                continue;
            }
        }
        if round % 3 == 0 {
            store.tier_recall(None, &mut |_| {}).expect("recall");
        }
    }
}
