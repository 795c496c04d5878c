//! `crash_ops`: the child process of `tests/tests/crash_ops.rs`. It opens an existing
//! LocalStore and runs store operations one after another until it is killed: puts, multipart
//! uploads, copies, renames, deletes (mostly not durable, some durable) and syncs. Before each
//! operation it prints `BEGIN <n> <op...>` and after it returned `ACK <n>` (each line flushed),
//! so the parent knows which operations were acknowledged and which one was in flight.
//!
//! Usage: `crash_ops <store dir> <round> <seed> <max ops> [durable]`; with `durable` every
//! operation is durable before its `ACK` (puts, copies and renames with `durable: true`, a
//! delete followed by a sync): the control run, which any store must pass. Operations:
//!
//! * `PUT <key> <seed> <len> <durable>` and `MPU <key> <seed> <len> <durable>` (multipart:
//!   parts of 64 KiB uploaded in reverse order, then complete): a new version of `key` with
//!   `objfs_tests::keyed_bytes(key, seed, len)` and user metadata `origin` (= key), `seed`,
//!   `len`;
//! * `COPY <src> <dst>`, `RENAME <src> <dst>`: `dst` gets `src`'s current version (data and
//!   metadata: `origin` still names the key the bytes were written under); a rename also
//!   deletes `src`;
//! * `DEL <key>` (a delete marker; the key may already be absent); `SYNC`.
//!
//! The choices follow from (seed, round) and from the keys live at open, which the child lists.

use std::collections::BTreeSet;
use std::error::Error;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use objfs_store::local::LocalStore;
use objfs_store::{
    Body, CopyOptions, ListRequest, Metadata, ObjectStore, PutOptions, RenameOptions,
};
use objfs_tests::keyed_bytes;
use objfs_tests::support::{list_all, Listed};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Keys `k00`..: few, so operations meet existing keys often.
const KEYS: u32 = 16;
const PART: usize = 64 << 10;

fn open(path: &Path) -> Result<LocalStore, Box<dyn Error>> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match LocalStore::open(path) {
            Ok(s) => return Ok(s),
            Err(e)
                if e.to_string().contains("could not acquire lock")
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn line(out: &mut impl Write, text: &str) -> std::io::Result<()> {
    writeln!(out, "{text}")?;
    out.flush()
}

fn opts(key: &str, seed: u64, len: usize, durable: bool) -> PutOptions {
    let metadata: Metadata = [
        ("origin".to_string(), key.to_string()),
        ("seed".to_string(), seed.to_string()),
        ("len".to_string(), len.to_string()),
    ]
    .into();
    PutOptions {
        metadata,
        durable,
        ..Default::default()
    }
}

async fn multipart(
    store: &LocalStore,
    key: &str,
    data: &[u8],
    opts: PutOptions,
) -> Result<(), Box<dyn Error>> {
    objfs_tests::crash_support::multipart_put(store, key, data, PART, opts).await
}

fn size(rng: &mut StdRng) -> usize {
    match rng.random_range(0..10u32) {
        0 => 0,
        1..=6 => rng.random_range(1..16 << 10),
        7 | 8 => rng.random_range(16 << 10..128 << 10),
        _ => rng.random_range(128 << 10..400 << 10),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: crash_ops <store dir> <round> <seed> <max ops>";
    let path = PathBuf::from(args.get(1).ok_or(usage)?);
    let round: u64 = args.get(2).ok_or(usage)?.parse()?;
    let seed: u64 = args.get(3).ok_or(usage)?.parse()?;
    let max: u64 = args.get(4).ok_or(usage)?.parse()?;
    let all_durable = args.get(5).is_some_and(|a| a == "durable");
    let mut rng = StdRng::seed_from_u64(seed ^ round.wrapping_mul(0x9E37_79B9_7F4A_7C15));

    let store = open(&path)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    line(&mut out, &format!("OPEN {}", std::process::id()))?;
    let mut live: BTreeSet<String> = list_all(&store, &ListRequest::default())
        .await
        .into_iter()
        .map(|e| match e {
            Listed::Object(k) => k,
            Listed::Prefix(p) => p,
        })
        .collect();

    for n in 0..max {
        let key = format!("k{:02}", rng.random_range(0..KEYS));
        let src: Option<String> = if live.is_empty() {
            None
        } else {
            live.iter().nth(rng.random_range(0..live.len())).cloned()
        };
        // A rename or copy target other than the source.
        let mut other = format!("k{:02}", rng.random_range(0..KEYS));
        if src.as_ref() == Some(&other) {
            other = format!(
                "k{:02}",
                (rng.random_range(1..KEYS) + other[1..].parse::<u32>()?) % KEYS
            );
        }
        let durable = all_durable || rng.random_range(0..16u32) == 0;
        let wseed = (round << 32) | n;
        let choice = rng.random_range(0..1000u32);
        match (choice, src) {
            (0..=449, _) | (450..=849, None) => {
                let len = size(&mut rng);
                let mpu = (380..=449).contains(&choice);
                let kind = if mpu { "MPU" } else { "PUT" };
                line(
                    &mut out,
                    &format!("BEGIN {n} {kind} {key} {wseed} {len} {}", durable as u8),
                )?;
                let data = keyed_bytes(&key, wseed, len);
                if mpu {
                    multipart(&store, &key, &data, opts(&key, wseed, len, durable)).await?;
                } else {
                    store
                        .put(&key, Body::from(data), opts(&key, wseed, len, durable))
                        .await?;
                }
                live.insert(key);
            }
            (450..=599, Some(src)) => {
                line(&mut out, &format!("BEGIN {n} RENAME {src} {other}"))?;
                let o = RenameOptions {
                    durable,
                    ..Default::default()
                };
                store.rename(&src, &other, o).await?;
                live.remove(&src);
                live.insert(other);
            }
            (600..=749, Some(src)) => {
                line(&mut out, &format!("BEGIN {n} COPY {src} {other}"))?;
                let o = CopyOptions {
                    durable,
                    ..Default::default()
                };
                store.copy(&src, &other, o).await?;
                live.insert(other);
            }
            (750..=849, Some(src)) => {
                line(&mut out, &format!("BEGIN {n} DEL {src}"))?;
                store.delete(&src).await?;
                if all_durable {
                    store.sync().await?;
                }
                live.remove(&src);
            }
            (850..=994, _) => {
                line(&mut out, &format!("BEGIN {n} DEL {key}"))?;
                store.delete(&key).await?;
                if all_durable {
                    store.sync().await?;
                }
                live.remove(&key);
            }
            _ => {
                line(&mut out, &format!("BEGIN {n} SYNC"))?;
                store.sync().await?;
            }
        }
        line(&mut out, &format!("ACK {n}"))?;
    }
    line(&mut out, "DONE")?;
    // Wait to be killed; never close the store.
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
