//! `crash_writer`: the child process of `tests/tests/crash.rs`. It opens an existing
//! LocalStore and writes deterministic objects as fast as it can until it is killed, printing
//! `ACK <key> <len> <seed>` (flushed) for every write that the store has promised to keep: a
//! put or multipart upload with `durable: true` once it returns, and any earlier non-durable
//! write once a later `sync()` returns. The parent kills it with SIGKILL at a random moment
//! and checks that every ACKed write survived and that nothing partial is visible.
//!
//! Usage: `crash_writer <store dir> <round> <max writes> [lazy]`; with `lazy` no write is
//! durable and there is no sync (nothing is acknowledged: for tests of unsynced state). Write `i` of round `r` has seed
//! `r << 32 | i`, key `kNN` and content `objfs_tests::keyed_bytes(key, seed, len)`; the seed and
//! length are stored in user metadata (`seed`, `len`) so the parent can check any version.

use std::error::Error;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use objfs_store::local::LocalStore;
use objfs_store::{Body, Metadata, ObjectStore, PutOptions};
use objfs_tests::keyed_bytes;

/// Number of distinct keys: small, so keys collect many versions across rounds.
const KEYS: u64 = 40;
/// Part size of multipart writes.
const PART: usize = 64 << 10;

/// A well-mixed 64-bit hash of the seed (splitmix64 finaliser).
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Mostly small objects, some up to ~300 KiB.
fn size_of(r: u64) -> usize {
    match r % 10 {
        0 => 0,
        1..=5 => (r >> 8) as usize % 8192,
        6..=8 => (r >> 8) as usize % 65536,
        _ => (r >> 8) as usize % 300_000,
    }
}

fn ack(out: &mut impl Write, key: &str, len: usize, seed: u64) -> std::io::Result<()> {
    writeln!(out, "ACK {key} {len} {seed}")?;
    out.flush()
}

/// Opens the store. Retries for a short while when the previous owner (the parent, which
/// has just closed it) still holds sled's lock: see `model::reopen_right_after_close`.
fn open(path: &Path) -> Result<LocalStore, Box<dyn Error>> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match LocalStore::open(path) {
            Ok(s) => return Ok(s),
            Err(e)
                if e.to_string().contains("could not acquire lock")
                    && Instant::now() < deadline =>
            {
                eprintln!("crash_writer: open: {e}; retrying");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e.into()),
        }
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

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: crash_writer <store dir> <round> <max writes>";
    let path = PathBuf::from(args.get(1).ok_or(usage)?);
    let round: u64 = args.get(2).ok_or(usage)?.parse()?;
    let max: u64 = args.get(3).ok_or(usage)?.parse()?;
    let lazy = args.get(4).is_some_and(|a| a == "lazy");

    let store = open(&path)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    writeln!(out, "OPEN {}", std::process::id())?;
    out.flush()?;

    // Non-durable writes not yet covered by a sync.
    let mut pending: Vec<(String, usize, u64)> = Vec::new();
    for i in 0..max {
        let seed = (round << 32) | i;
        let r = mix(seed);
        let key = format!("k{:02}", r % KEYS);
        let len = size_of(r >> 7);
        let data = keyed_bytes(&key, seed, len);
        let metadata: Metadata = [
            ("seed".to_string(), seed.to_string()),
            ("len".to_string(), len.to_string()),
        ]
        .into();
        let mode = if lazy {
            4 + (r >> 40) % 2
        } else {
            (r >> 40) % 6
        };
        let durable = mode <= 2;
        let opts = PutOptions {
            metadata,
            durable,
            ..Default::default()
        };
        if mode == 2 || mode == 4 {
            multipart(&store, &key, &data, opts).await?;
        } else {
            store.put(&key, Body::from(data), opts).await?;
        }
        if durable {
            ack(&mut out, &key, len, seed)?;
        } else {
            pending.push((key, len, seed));
        }
        if mode == 3 {
            store.sync().await?;
            for (k, l, s) in pending.drain(..) {
                ack(&mut out, &k, l, s)?;
            }
        }
    }
    writeln!(out, "DONE")?;
    out.flush()?;
    // Wait to be killed; never close the store.
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
