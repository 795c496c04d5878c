//! Child process for the kill -9 test of the daemons: opens a multi-disk local store and loops
//! forever over writes, deletes, placement, scrub and gc, printing `PUT <key> <seed>` and
//! `DEL <key>` once each change is durable. The parent kills it at random points.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use objfs_store::local::{GcOptions, LocalStore};
use objfs_store::{ObjectStore, PutOptions};

/// The bytes of `key` written with `seed` (the parent recomputes them).
pub fn body(key: &str, seed: u64) -> Vec<u8> {
    let len = 500 + (seed as usize * 4099) % 70_000;
    let k: u64 = key.bytes().map(u64::from).sum();
    (0..len)
        .map(|i| ((i as u64 * 131 + seed * 7 + k) % 251) as u8)
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(root) = args.get(1).map(PathBuf::from) else {
        eprintln!("usage: daemon_runner <store> <start-seed>");
        std::process::exit(2);
    };
    let mut seed: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let store = LocalStore::open(&root).expect("open");
    let out = std::io::stdout();
    rt.block_on(async {
        loop {
            for _ in 0..12 {
                seed += 1;
                let key = format!("k/{}", seed % 40);
                store
                    .put(
                        &key,
                        body(&key, seed).into(),
                        PutOptions {
                            durable: true,
                            ..Default::default()
                        },
                    )
                    .await
                    .expect("put");
                let _ = writeln!(out.lock(), "PUT {key} {seed}");
                if seed % 5 == 0 {
                    let key = format!("k/{}", (seed / 5) % 40);
                    if store.delete(&key).await.expect("delete").is_some() {
                        store.sync().await.expect("sync");
                        let _ = writeln!(out.lock(), "DEL {key}");
                    }
                }
            }
            store.place_now(|_| {}).expect("place");
            store.scrub_now(|_| {}).expect("scrub");
            let gc = GcOptions {
                delay: Duration::ZERO,
                ..Default::default()
            };
            store.gc_now(gc, |_| {}).expect("gc");
        }
    });
}
