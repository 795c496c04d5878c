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
        check_placement(&store, &format!("round {round}"), false).await;
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
            snapshot_only +=
                check_placement(&store, &format!("round {round} after gc"), true).await;
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

/// Bytes per tier are rollups that follow the data: erasure-coded by placement, moved back
/// to replicated volumes by compaction (whose new volume inherits the old one's lineage),
/// erasure-coded again, and the same after a reopen; a recount agrees at every step.
#[tokio::test]
async fn bytes_per_tier_follow_placement_and_compaction() {
    use objfs_store::local::{EcSetting, LocalConfig};
    use objfs_store::{ObjectStore, PutOptions};
    use objfs_tests::tier_fixture::tiers;

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let cfg = LocalConfig {
        disks: (0..3)
            .map(|i| dir.path().join(format!("disk{i}")))
            .collect(),
        replicas: 2,
        ec: EcSetting::On { k: 2, m: 1 },
        volume_size: 256 << 10,
        block_size: 4096,
        blob_size: 64 << 10,
        ..Default::default()
    };
    let store = LocalStore::init(&root, cfg).unwrap();
    let body = |i: usize| vec![(i % 251) as u8; 20_000 + (i * 7919) % 40_000];
    let (mut a, mut b) = (0u64, 0u64);
    let mut b_versions = Vec::new();
    for i in 0..40 {
        let key = format!("{}/f{i:02}", if i % 4 == 0 { "a" } else { "b" });
        let info = store
            .put(&key, body(i).into(), PutOptions::default())
            .await
            .unwrap();
        if i % 4 == 0 {
            a += info.size;
        } else {
            b += info.size;
            b_versions.push((key, info.version));
        }
    }
    let t = tiers(&store);
    assert_eq!(
        (t.local_replicated_bytes, t.local_erasure_coded_bytes),
        (a + b, 0)
    );

    store.place_now(|_| {}).unwrap();
    let t = tiers(&store);
    assert_eq!(
        (t.local_replicated_bytes, t.local_erasure_coded_bytes),
        (0, a + b)
    );
    let du = store.du("", 1, 0).unwrap();
    let of = |p: &str| du.prefixes.iter().find(|u| u.prefix == p).unwrap().tiers;
    assert_eq!(of("a/").local_erasure_coded_bytes, a);
    assert_eq!(of("b/").local_erasure_coded_bytes, b);

    // Every version of b/ removed for good: the volumes are mostly garbage, gc compacts
    // them, and a/'s bytes move into new replicated volumes.
    for (key, v) in b_versions {
        store.delete_version(&key, v).await.unwrap();
    }
    let opts = GcOptions {
        delay: Duration::ZERO,
        garbage_ratio: 0.3,
        ..Default::default()
    };
    let p = store.gc_now(opts, |_| {}).unwrap();
    let last = p.last.clone().unwrap();
    let compacted = last.counters.get("volumes_compacted").copied().unwrap_or(0);
    assert!(compacted >= 1, "{last:?}");
    let t = tiers(&store);
    assert_eq!(
        t.local_replicated_bytes + t.local_erasure_coded_bytes,
        a,
        "{t:?}"
    );
    assert!(
        t.local_replicated_bytes > 0,
        "compacted bytes are replicated: {t:?}"
    );

    // The lineages are on disk: the same after a reopen; placement codes the new volumes.
    store.close().unwrap();
    let store = LocalStore::open(&root).unwrap();
    assert_eq!(tiers(&store), t);
    store.place_now(|_| {}).unwrap();
    let t = tiers(&store);
    assert_eq!(
        (t.local_replicated_bytes, t.local_erasure_coded_bytes),
        (0, a)
    );
    store.close().unwrap();
}

/// What only snapshots keep is a rollup gc's retention pass keeps: none before a pass, the
/// overwritten version a snapshot sees after one, none again once the snapshot is deleted
/// and a pass expired the version (its key's row cleared); a recount agrees each time.
#[tokio::test]
async fn what_only_snapshots_keep_follows_gc_passes() {
    use objfs_store::history::snapshots;
    use objfs_store::{ObjectStore, PutOptions};

    let dir = tempfile::tempdir().unwrap();
    init_small_store(dir.path(), 1 << 20);
    let store = LocalStore::open(dir.path()).unwrap();
    let only = |store: &LocalStore| {
        let v = store.verify_rollups("").unwrap();
        assert_eq!(v.mismatch_count, 0, "{:#?}", v.mismatches);
        let du = store.du("", 1, 0).unwrap();
        let of = |p: &str| {
            du.prefixes
                .iter()
                .find(|u| u.prefix == p)
                .map(|u| u.snapshot_only)
                .unwrap_or_default()
        };
        (of(""), of("p/"), of("q/"))
    };
    for k in ["p/a", "p/b", "q/c"] {
        store
            .put(k, vec![1u8; 1000].into(), PutOptions::default())
            .await
            .unwrap();
    }
    snapshot_under_a_bare_policy(&store, "s").await;
    store
        .put("p/a", vec![2u8; 10].into(), PutOptions::default())
        .await
        .unwrap();
    store.delete("q/c").await.unwrap();
    let gc = || GcOptions {
        delay: Duration::ZERO,
        ..Default::default()
    };
    let (root, p, q) = only(&store);
    assert_eq!(root.snapshot_only_versions, 0, "before a pass");
    assert_eq!((p.snapshot_only_versions, q.snapshot_only_versions), (0, 0));

    store.gc_now(gc(), |_| {}).unwrap();
    let (root, p, q) = only(&store);
    assert_eq!((p.snapshot_only_versions, p.snapshot_only_bytes), (1, 1000));
    assert_eq!((q.snapshot_only_versions, q.snapshot_only_bytes), (1, 1000));
    assert_eq!(
        (root.snapshot_only_versions, root.snapshot_only_bytes),
        (2, 2000)
    );

    snapshots::delete(&store, "s").await.unwrap();
    store.gc_now(gc(), |_| {}).unwrap();
    let (root, _, _) = only(&store);
    assert_eq!(root.snapshot_only_versions, 0, "after the snapshot went");
    store.close().unwrap();
}
