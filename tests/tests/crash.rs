//! Crash test: a child process (`crash_writer`) writes to a LocalStore and is killed with
//! SIGKILL at a random moment, 25 times over the same store so crashes pile up. After each
//! crash the store must open; every write the child acknowledged (durable, or followed by a
//! sync) must read back exactly; every version found must be a complete write the child could
//! have made (its bytes follow from key + seed in its metadata), never partial or garbage; and
//! listing must work. While the child is alive, opening the store must fail with `Locked`.
//!
//! A second test kills the child right after one unsynced write, many times, and checks that
//! the next process can still write (ids of volume files must not be reused after a crash).
//!
//! The last two are about sled's recovery at open being killed (the cause of this file's old
//! flake, about 1 run in 15, "metadata database corrupt at None"): one builds the exact state
//! such a kill leaves, deterministically; the other (ignored: slow) kills real opens in a loop.
//! `tests/tests/crash_ops.rs` is the variant where every operation that returned, durable or
//! not, must survive.
//!
//! `OBJFS_CRASH_SEED` replays a run (the seed is printed at the start).

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use objfs_store::local::{LocalConfig, LocalStore};
use objfs_store::{
    ErrorKind, GetOptions, ListRequest, ListVersionsRequest, ObjectStore, StoreError,
};
use objfs_tests::crash_support::{
    crash_seed, describe_meta_dir, init_small_store, torn_sled_snapshots,
};
use objfs_tests::keyed_bytes;
use objfs_tests::support::{list_all, list_versions_all, Listed, VListed};
use rand::{Rng, SeedableRng};

const ROUNDS: u64 = 25;
const MAX_WRITES: u64 = 200;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Ack {
    key: String,
    len: usize,
    seed: u64,
}

/// Everything the child printed before it died: complete lines only.
#[derive(Debug, Default)]
struct ChildOutput {
    opened: Option<u32>,
    acks: Vec<Ack>,
    done: bool,
}

fn parse_line(line: &str, out: &mut ChildOutput) {
    let words: Vec<&str> = line.split(' ').collect();
    match words.as_slice() {
        ["OPEN", pid] => out.opened = pid.parse().ok(),
        ["ACK", key, len, seed] => out.acks.push(Ack {
            key: key.to_string(),
            len: len.parse().expect("ACK len"),
            seed: seed.parse().expect("ACK seed"),
        }),
        ["DONE"] => out.done = true,
        _ => panic!("unexpected line from crash_writer: {line:?}"),
    }
}

fn seed_of(v: &objfs_store::VersionInfo) -> (u64, usize) {
    let seed = v.metadata.get("seed").and_then(|s| s.parse().ok());
    let len = v.metadata.get("len").and_then(|s| s.parse().ok());
    match (seed, len) {
        (Some(s), Some(l)) => (s, l),
        _ => panic!(
            "version {} of {:?} has no seed/len metadata: {:?}",
            v.version, v.key, v.metadata
        ),
    }
}

async fn read_version(s: &LocalStore, key: &str, v: objfs_store::VersionId) -> Vec<u8> {
    let r = s
        .get(
            key,
            GetOptions {
                version: Some(v.clone()),
                range: None,
            },
        )
        .await
        .unwrap_or_else(|e| panic!("get {key:?} version {v}: {e}"));
    r.bytes()
        .await
        .unwrap_or_else(|e| panic!("body of {key:?} {v}: {e}"))
        .to_vec()
}

/// Checks the store after a crash. `round` selects whose versions are read back in full
/// (`None`: all of them).
async fn verify(s: &LocalStore, acks: &[Ack], round: Option<u64>) -> usize {
    let all = list_versions_all(s, &ListVersionsRequest::default()).await;
    let mut by_key: BTreeMap<String, Vec<objfs_store::VersionInfo>> = BTreeMap::new();
    for e in all {
        match e {
            VListed::Version(v) => by_key.entry(v.key.clone()).or_default().push(v),
            VListed::Prefix(p) => panic!("prefix {p:?} without a delimiter"),
        }
    }
    let mut checked = 0;
    for (key, versions) in &by_key {
        assert!(
            versions[0].is_latest,
            "{key}: first listed version is not the latest"
        );
        let mut prev_seed: Option<u64> = None;
        for v in versions {
            assert!(
                !v.is_delete_marker,
                "{key}: the writer never deletes, found marker {}",
                v.version
            );
            let (seed, len) = seed_of(v);
            assert_eq!(v.size, len as u64, "{key} {}: size vs metadata", v.version);
            // Versions newest first <=> seeds in decreasing write order.
            if let Some(p) = prev_seed {
                assert!(seed < p, "{key}: version order disagrees with write order");
            }
            prev_seed = Some(seed);
            if round.is_none_or(|r| seed >> 32 == r) {
                let got = read_version(s, key, v.version.clone()).await;
                assert!(
                    got == keyed_bytes(key, seed, len),
                    "{key} version {} (seed {seed:#x}, {len} bytes): wrong bytes",
                    v.version
                );
                checked += 1;
            }
        }
        // The current version reads as the newest one.
        let cur = s
            .get(key, GetOptions::default())
            .await
            .unwrap_or_else(|e| panic!("get {key}: {e}"));
        assert_eq!(cur.info.version, versions[0].version);
    }
    // Every acknowledged write is there, and nothing older than it is current.
    let mut newest_ack: HashMap<&str, u64> = HashMap::new();
    for a in acks {
        let versions = by_key
            .get(&a.key)
            .unwrap_or_else(|| panic!("acknowledged {a:?} lost: key has no versions"));
        let v = versions
            .iter()
            .find(|v| seed_of(v).0 == a.seed)
            .unwrap_or_else(|| panic!("acknowledged {a:?} lost"));
        assert_eq!(v.size, a.len as u64);
        if round.is_none_or(|r| a.seed >> 32 == r) {
            let got = read_version(s, &a.key, v.version.clone()).await;
            assert!(
                got == keyed_bytes(&a.key, a.seed, a.len),
                "acknowledged {a:?}: wrong bytes"
            );
        }
        let e = newest_ack.entry(&a.key).or_insert(0);
        *e = (*e).max(a.seed);
    }
    for (key, seed) in newest_ack {
        let latest = seed_of(&by_key[key][0]).0;
        assert!(
            latest >= seed,
            "{key}: current write {latest:#x} is older than acknowledged {seed:#x}"
        );
    }
    // Listing shows exactly the keys.
    let listed = list_all(s, &ListRequest::default()).await;
    let want: Vec<Listed> = by_key.keys().cloned().map(Listed::Object).collect();
    assert_eq!(listed, want);
    let cap = s.capacity().await.unwrap();
    assert_eq!(cap.objects, by_key.len() as u64);
    checked
}

fn assert_locked(path: &Path, pid: u32) {
    match LocalStore::open(path) {
        Err(StoreError::Locked { pid: p, .. }) => assert_eq!(p, pid, "Locked names the owner"),
        Err(e) => panic!("open while the writer runs: expected Locked, got {e}"),
        Ok(_) => panic!("open while the writer runs: expected Locked, got a store"),
    }
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let started = Instant::now();
    let seed: u64 = crash_seed();
    println!("OBJFS_CRASH_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    init_small_store(&path, 1 << 20);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let mut acks: Vec<Ack> = Vec::new();
    let (mut kills_after_open, mut total_checked) = (0, 0);
    for round in 0..ROUNDS {
        let mut child = Command::new(env!("CARGO_BIN_EXE_crash_writer"))
            .arg(&path)
            .arg(round.to_string())
            .arg(MAX_WRITES.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn crash_writer");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            loop {
                line.clear();
                match r.read_line(&mut line) {
                    // Only complete lines count: a line cut by the kill was not acknowledged.
                    Ok(n) if n > 0 && line.ends_with('\n') => {
                        if tx.send(line.trim_end().to_string()).is_err() {
                            return;
                        }
                    }
                    _ => return,
                }
            }
        });
        let mut out = ChildOutput::default();
        // Most rounds wait until the child owns the store (checking the lock on the way) and
        // kill it while it writes; every fourth round kills it at any moment from its start,
        // so crashes while opening (and recovering) happen too.
        let delay = if round % 4 == 3 {
            rng.random_range(0..500u64)
        } else {
            let line = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("crash_writer did not open the store");
            parse_line(&line, &mut out);
            let pid = out.opened.expect("first line is OPEN");
            assert_eq!(pid, child.id());
            if round % 2 == 0 {
                assert_locked(&path, pid);
            }
            rng.random_range(0..400u64)
        };
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().expect("SIGKILL");
        let status = child.wait().unwrap();
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "round {round}: crash_writer stopped on its own ({status}): see its error above"
        );
        reader.join().unwrap();
        for line in rx.try_iter() {
            parse_line(&line, &mut out);
        }
        if out.opened.is_some() {
            kills_after_open += 1;
        }
        println!(
            "round {round}: killed after {delay} ms, {} acks{}",
            out.acks.len(),
            if out.done { " (all writes done)" } else { "" }
        );
        acks.extend(out.acks);

        let store =
            match LocalStore::open(&path) {
                Ok(s) => s,
                Err(e) => panic!(
                "round {round}: the store does not open after a crash (killed {delay} ms after \
                 {}): {e}\n{}",
                if out.opened.is_some() { "it opened the store" } else { "it started" },
                describe_meta_dir(&path)
            ),
            };
        if out.opened.is_some() {
            let st = store.status().unwrap();
            assert!(
                !st.last_shutdown_clean,
                "round {round}: a SIGKILL is not a clean shutdown"
            );
        }
        total_checked += rt.block_on(verify(&store, &acks, Some(round)));
        store.close().unwrap();
    }
    assert!(
        kills_after_open >= ROUNDS / 2,
        "too few rounds got to write: {kills_after_open}"
    );
    assert!(!acks.is_empty(), "the writer never acknowledged anything");

    // A last full check of every version, after a clean reopen.
    let store = reopen(&path);
    let st = store.status().unwrap();
    assert!(st.last_shutdown_clean);
    total_checked += rt.block_on(verify(&store, &acks, None));
    // The store still takes writes.
    rt.block_on(async {
        let info = store
            .put("after-crashes", "ok".into(), Default::default())
            .await
            .unwrap();
        assert_eq!(info.size, 2);
        let e = store.head("never-written", None).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
    });
    store.close().unwrap();
    println!(
        "{} acknowledged writes, {total_checked} versions read back, {:?}",
        acks.len(),
        started.elapsed()
    );
}

/// Opens the store right after this process closed it. Retries briefly on sled's lock, a
/// known race that `model::reopen_right_after_close` reports on its own.
fn reopen(path: &Path) -> LocalStore {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match LocalStore::open(path) {
            Ok(s) => return s,
            Err(e)
                if e.to_string().contains("could not acquire lock")
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("reopen: {e}"),
        }
    }
}

/// A process killed right after its first (non-durable) write leaves a volume file that the
/// metadata may not know; the next process must still be able to write (volume ids must not
/// be handed out twice across crashes).
#[test]
fn writes_work_after_a_crash_right_after_the_first_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    init_small_store(&path, 1 << 20);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for round in 0..40u64 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_crash_writer"))
            .args([path.to_str().unwrap(), &round.to_string(), "1", "lazy"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn crash_writer");
        let mut r = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        // Wait for DONE (the one write returned), then kill at once: before any flush.
        while r.read_line(&mut line).unwrap() > 0 && !line.contains("DONE") {
            line.clear();
        }
        assert!(
            line.contains("DONE"),
            "round {round}: crash_writer did not finish its write"
        );
        child.kill().unwrap();
        child.wait().unwrap();
        let store = LocalStore::open(&path).unwrap_or_else(|e| panic!("round {round}: open: {e}"));
        rt.block_on(async {
            let key = format!("parent/{round}");
            let info = store
                .put(&key, vec![7u8; 5000].into(), Default::default())
                .await
                .unwrap_or_else(|e| panic!("round {round}: put after a crash: {e}"));
            assert_eq!(info.size, 5000);
        });
        store.close().unwrap();
        // Give sled's threads time to let go of the database (see `reopen`).
        drop(reopen(&path));
    }
}

/// The newest finished sled snapshot (`snap.<16 hex digits>`) in `<store>/meta`, as its lsn.
fn newest_snapshot_lsn(store: &Path) -> Option<u64> {
    std::fs::read_dir(store.join("meta"))
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let hex = name.strip_prefix("snap.")?;
            (hex.len() == 16).then(|| u64::from_str_radix(hex, 16).ok())?
        })
        .max()
}

/// sled 0.34 writes a snapshot while it opens a database whose log grew since the last one:
/// `snap.<lsn>.generating` is created, written, fsynced and renamed to `snap.<lsn>`. sled also
/// counts `.generating` files as snapshots (its filter skips only `.in___motion`), and that
/// name sorts after every finished snapshot; so a process killed between the create and the
/// rename leaves a file that every later open reads as the newest snapshot: empty ("empty/
/// corrupt snapshot file found") or torn (crc mismatch), and the store never opens again
/// ("metadata database corrupt at None"). That was the flake of
/// `acknowledged_writes_survive_sigkill` (a round that kills the child ~5 ms after its start).
///
/// This builds exactly the state such a kill leaves, after a store with data was closed and
/// opened again (so the log is past its snapshot): an empty, then a torn, `.generating`
/// snapshot named after the newest one's successor. The store must open, with its data. (The
/// fix belongs in the store's open: such a file is never needed, the snapshot it would have
/// held is rebuilt from the previous one and the log; see docs/DURABILITY.md.)
#[test]
fn a_snapshot_left_unfinished_at_open_does_not_brick_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let keys: Vec<String> = (0..50).map(|i| format!("obj/{i:03}")).collect();
    let store = LocalStore::init(&path, LocalConfig::default()).unwrap();
    rt.block_on(async {
        for (i, k) in keys.iter().enumerate() {
            store
                .put(
                    k,
                    keyed_bytes(k, i as u64, 3000 + i).into(),
                    Default::default(),
                )
                .await
                .unwrap();
        }
    });
    store.close().unwrap();
    // An open after writes writes a snapshot: now there is a finished one to shadow.
    reopen(&path).close().unwrap();
    for torn in [false, true] {
        let lsn = newest_snapshot_lsn(&path).unwrap_or(0);
        let name = format!("snap.{:016X}.generating", lsn + 1);
        let bytes = if torn {
            // The first bytes of a real snapshot: what a kill in the middle of the write leaves.
            let real = std::fs::read(path.join("meta").join(format!("snap.{lsn:016X}")))
                .unwrap_or_else(|_| vec![0x79; 64]);
            real[..real.len() / 2].to_vec()
        } else {
            Vec::new()
        };
        std::fs::write(path.join("meta").join(&name), &bytes).unwrap();
        assert_eq!(torn_sled_snapshots(&path).len(), 1);
        let store = match LocalStore::open(&path) {
            Ok(s) => s,
            Err(e) => panic!(
                "a store whose open was killed while sled wrote its snapshot ({name}, {} B) \
                 does not open: {e}\n{}",
                bytes.len(),
                describe_meta_dir(&path)
            ),
        };
        rt.block_on(async {
            for (i, k) in keys.iter().enumerate() {
                let got = store
                    .get(k, GetOptions::default())
                    .await
                    .unwrap_or_else(|e| panic!("get {k}: {e}"))
                    .bytes()
                    .await
                    .unwrap();
                assert!(
                    got == keyed_bytes(k, i as u64, 3000 + i),
                    "{k}: wrong bytes"
                );
            }
        });
        store.close().unwrap();
        // Give sled's threads time to let go of the database (see `reopen`).
        drop(reopen(&path));
    }
}

/// The same with real kills: the child (which opens the store, then writes) is killed 0-15 ms
/// after it starts, over and over, so that some kills land inside sled's recovery at open; every
/// time the store must open. A kill lands in the snapshot window about once in 250 tries here,
/// so this takes a while: run it with
/// `cargo test --release -p objfs-tests --test crash -- --ignored kills_during_open`
/// (`OBJFS_CRASH_ROUNDS` tries, default 600).
#[test]
#[ignore = "slow (minutes); reproduces the sled snapshot-at-open failure with real kills"]
fn kills_during_open_never_brick_the_store() {
    let tries: u64 = std::env::var("OBJFS_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600);
    let seed: u64 = crash_seed();
    println!("OBJFS_CRASH_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    init_small_store(&path, 1 << 20);
    // Kills that left an unfinished sled snapshot (the state the deterministic test builds).
    let mut unfinished = 0;
    for i in 0..tries {
        let mut child = Command::new(env!("CARGO_BIN_EXE_crash_writer"))
            .arg(&path)
            .arg(i.to_string())
            .arg(MAX_WRITES.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn crash_writer");
        // Every fifth try lets the child write for a while, so the log keeps growing past
        // the last snapshot and the next open has a snapshot to write.
        let ms = if i % 5 == 4 {
            rng.random_range(100..300)
        } else {
            rng.random_range(0..15)
        };
        std::thread::sleep(Duration::from_millis(ms));
        let _ = child.kill();
        let _ = child.wait();
        if !torn_sled_snapshots(&path).is_empty() {
            unfinished += 1;
        }
        match LocalStore::open(&path) {
            Ok(s) => s.close().unwrap(),
            Err(e) => panic!(
                "try {i}: the store does not open after a kill {ms} ms after the child \
                 started: {e}\n{}",
                describe_meta_dir(&path)
            ),
        }
    }
    println!("{tries} kills, {unfinished} of them left an unfinished sled snapshot; all reopened");
}
