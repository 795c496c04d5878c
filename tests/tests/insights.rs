//! Per-prefix rollups (`objfs du`) against a brute-force count: after random operations, after
//! close and reopen, after gc, after kill -9 of a writer process, and on a store written
//! before the rollups existed.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use objfs_store::local::{GcOptions, LocalStore};
use objfs_tests::crash_support::init_small_store;
use objfs_tests::insights_ops::{
    check_placement, check_rollups, random_op, snapshot_under_a_bare_policy,
};
use objfs_tests::watchdog::Watchdog;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn seed() -> u64 {
    std::env::var("OBJFS_INSIGHTS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_match_a_brute_force_count_after_random_operations() {
    let seed = seed();
    let _dog = Watchdog::start(
        format!("rollups_match_a_brute_force_count_after_random_operations (seed {seed})"),
        Duration::from_secs(600),
        &[],
    );
    eprintln!("OBJFS_INSIGHTS_SEED={seed}");
    let dir = tempfile::tempdir().unwrap();
    init_small_store(dir.path(), 1 << 20);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut store = LocalStore::open(dir.path()).unwrap();
    let mut snapshot_only = 0;
    for round in 0..6 {
        for _ in 0..150 {
            random_op(&store, &mut rng).await;
        }
        check_rollups(&store, &format!("round {round}")).await;
        snapshot_only += check_placement(&store, &format!("round {round}")).await;
        if round == 1 || round == 3 {
            // From here on noncurrent versions alive at these moments are kept by snapshots
            // alone (gc's retention pass expires the others).
            snapshot_under_a_bare_policy(&store, &format!("s{round}")).await;
        }
        if round % 2 == 1 {
            // gc aborts every incomplete upload (ttl 0) and reclaims what nothing references.
            let opts = GcOptions {
                delay: Duration::ZERO,
                upload_ttl: Duration::ZERO,
                ..Default::default()
            };
            store.gc_now(opts, |_| {}).unwrap();
            check_rollups(&store, &format!("round {round} after gc")).await;
            snapshot_only += check_placement(&store, &format!("round {round} after gc")).await;
        }
        store.close().unwrap();
        store = LocalStore::open(dir.path()).unwrap();
        check_rollups(&store, &format!("round {round} after reopen")).await;
    }
    assert!(snapshot_only > 0, "no version was kept by snapshots alone");
    store.close().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_survive_kill_9_of_a_writer() {
    let seed = seed();
    eprintln!("OBJFS_INSIGHTS_SEED={seed}");
    let rounds: u64 = std::env::var("OBJFS_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    let dir = tempfile::tempdir().unwrap();
    init_small_store(dir.path(), 1 << 20);
    let mut rng = StdRng::seed_from_u64(seed);
    for round in 0..rounds {
        let mut child = Command::new(env!("CARGO_BIN_EXE_insights_writer"))
            .arg(dir.path())
            .arg((seed ^ round).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn insights_writer");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        // A round takes well under a second; a stuck one fails with every thread's stack.
        let dog = Watchdog::start(
            format!("round {round} (seed {seed}), writer pid {}", child.id()),
            Duration::from_secs(180),
            &[child.id()],
        );
        // Wait until it opened the store, then let it work a random while.
        for l in lines.by_ref() {
            if l.unwrap() == "OPEN" {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(20..400)));
        child.kill().unwrap();
        child.wait().unwrap();
        let ops = lines.map_while(|l| l.ok()).count();
        let store = LocalStore::open(dir.path()).unwrap();
        check_rollups(&store, &format!("round {round} after kill -9 ({ops} ops)")).await;
        store.close().unwrap();
        drop(dog);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_written_before_rollups_gets_them_at_open() {
    let seed = seed();
    let _dog = Watchdog::start(
        format!("a_store_written_before_rollups_gets_them_at_open (seed {seed})"),
        Duration::from_secs(600),
        &[],
    );
    eprintln!("OBJFS_INSIGHTS_SEED={seed}");
    let dir = tempfile::tempdir().unwrap();
    init_small_store(dir.path(), 1 << 20);
    let mut rng = StdRng::seed_from_u64(seed);
    let store = LocalStore::open(dir.path()).unwrap();
    for _ in 0..300 {
        random_op(&store, &mut rng).await;
    }
    store.forget_rollups().unwrap();
    assert!(store.du("", 1, 0).unwrap().prefixes[0].totals.live_objects == 0);
    store.close().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    check_rollups(&store, "after building at open").await;
    store.close().unwrap();
}
