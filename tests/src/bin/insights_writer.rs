//! `insights_writer`: the child process of `tests/tests/insights.rs`'s crash test. It opens an
//! existing LocalStore and runs random operations (`objfs_tests::insights_ops`) until it is
//! killed; it prints `OPEN` once the store is open and `OP <n>` after each operation.
//!
//! Usage: `insights_writer <store dir> <seed>`.

use std::error::Error;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use objfs_store::local::LocalStore;
use objfs_tests::insights_ops::random_op;
use rand::rngs::StdRng;
use rand::SeedableRng;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    let path = PathBuf::from(args.get(1).ok_or("usage: insights_writer DIR SEED")?);
    let seed: u64 = args
        .get(2)
        .ok_or("usage: insights_writer DIR SEED")?
        .parse()?;
    // The parent may still be closing the store: retry briefly.
    let deadline = Instant::now() + Duration::from_secs(10);
    let store = loop {
        match LocalStore::open(&path) {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e.into()),
        }
    };
    let mut out = std::io::stdout();
    writeln!(out, "OPEN")?;
    out.flush()?;
    let mut rng = StdRng::seed_from_u64(seed);
    for n in 0u64.. {
        random_op(&store, &mut rng).await;
        writeln!(out, "OP {n}")?;
        out.flush()?;
    }
    Ok(())
}
