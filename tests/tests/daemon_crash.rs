//! kill -9 of a process running placement, scrub and gc at random points, many times: the store
//! reopens, every acknowledged write reads back, and a later run finishes the work with full
//! redundancy.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use objfs_store::local::{EcSetting, GcOptions, LocalConfig, LocalStore};
use objfs_store::{ErrorKind, GetOptions, ObjectStore};
use rand::Rng;

fn body(key: &str, seed: u64) -> Vec<u8> {
    let len = 500 + (seed as usize * 4099) % 70_000;
    let k: u64 = key.bytes().map(u64::from).sum();
    (0..len)
        .map(|i| ((i as u64 * 131 + seed * 7 + k) % 251) as u8)
        .collect()
}

#[test]
fn kill_9_during_daemons_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let disks: Vec<_> = (0..5).map(|i| dir.path().join(format!("d{i}"))).collect();
    let cfg = LocalConfig {
        disks: disks.clone(),
        replicas: 2,
        ec: EcSetting::On { k: 3, m: 2 },
        volume_size: 128 << 10,
        block_size: 4096,
        blob_size: 32 << 10,
        ..Default::default()
    };
    LocalStore::init(&root, cfg).unwrap().close().unwrap();

    // key -> Some(seed) live, None deleted
    let mut expect: HashMap<String, Option<u64>> = HashMap::new();
    let mut seed = 1u64;
    let mut rng = rand::rng();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut rounds = 0;
    while rounds < 12 && Instant::now() < deadline {
        rounds += 1;
        let mut child = Command::new(env!("CARGO_BIN_EXE_daemon_runner"))
            .arg(&root)
            .arg(seed.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut round_last_seed = seed;
        let kill_after = Duration::from_millis(rng.random_range(150..1500));
        let pid = child.id() as i32;
        let killer = std::thread::spawn(move || {
            std::thread::sleep(kill_after);
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        });
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let parts: Vec<&str> = line.split(' ').collect();
            match parts.as_slice() {
                ["PUT", key, s] => {
                    let s: u64 = s.parse().unwrap();
                    seed = seed.max(s);
                    round_last_seed = s;
                    expect.insert(key.to_string(), Some(s));
                }
                ["DEL", key] => {
                    expect.insert(key.to_string(), None);
                }
                _ => {}
            }
        }
        killer.join().unwrap();
        let _ = child.wait();

        // Reopen and check every acknowledged state. The child may have been killed after a
        // write became durable but before it printed the acknowledgement: at most one put
        // (seed `last + 1`) and one delete (of key `(last / 5) % 40`) may be in flight.
        let last = round_last_seed;
        let inflight_put = format!("k/{}", (last + 1) % 40);
        let inflight_del = (last % 5 == 0).then(|| format!("k/{}", (last / 5) % 40));
        let store = LocalStore::open(&root).expect("the store reopens after kill -9");
        rt.block_on(async {
            let keys: Vec<String> = (0..40).map(|i| format!("k/{i}")).collect();
            for key in keys {
                let state = expect.get(&key).copied().flatten();
                let got = match store.get(&key, GetOptions::default()).await {
                    Ok(r) => Some(r.bytes().await.unwrap_or_else(|e| panic!("round {rounds}: {key}: {e}")).to_vec()),
                    Err(e) if e.kind() == ErrorKind::NotFound => None,
                    Err(e) => panic!("round {rounds}: {key}: {e}"),
                };
                let ok = match (&got, state) {
                    (Some(b), Some(s)) if *b == body(&key, s) => true,
                    (None, None) => true,
                    // Not what was acknowledged: only an in-flight operation may explain it.
                    (Some(b), _) if key == inflight_put && *b == body(&key, last + 1) => true,
                    (None, Some(_)) if inflight_del.as_deref() == Some(key.as_str()) => true,
                    (Some(b), None) if expect.contains_key(&key) => {
                        // acknowledged deleted, but an in-flight put of this key came after
                        key == inflight_put && *b == body(&key, last + 1)
                    }
                    (Some(_), None) => false,
                    _ => false,
                };
                assert!(
                    ok,
                    "round {rounds}: {key}: expected {:?}, found {} (last acknowledged seed {last})",
                    state,
                    match &got {
                        Some(b) => format!("{} bytes not matching", b.len()),
                        None => "nothing".into(),
                    }
                );
                // What survived is now the truth (close() below makes it durable).
                if got.is_some() && got.as_deref() != state.map(|s| body(&key, s)).as_deref() {
                    expect.insert(key.clone(), Some(last + 1));
                } else if got.is_none() && state.is_some() {
                    expect.insert(key.clone(), None);
                }
            }
        });
        store.close().unwrap();
        // The next child starts well past every seed this one could have used.
        seed = round_last_seed + 1000;
    }
    assert!(rounds >= 3, "only {rounds} rounds ran");
    assert!(
        expect.len() >= 10,
        "the runner acknowledged too little: {}",
        expect.len()
    );

    // A later run finishes the work: everything placed, full redundancy, nothing lost.
    let store = LocalStore::open(&root).unwrap();
    let p = store.scrub_now(|_| {}).unwrap();
    assert_eq!(p.counters["unrepairable"], 0, "{p:?}");
    store
        .gc_now(
            GcOptions {
                delay: Duration::ZERO,
                orphan_age: Duration::ZERO,
                ..Default::default()
            },
            |_| {},
        )
        .unwrap();
    // gc compacts into the open volume; placement seals and encodes it.
    store.place_now(|_| {}).unwrap();
    let p = store.scrub_now(|_| {}).unwrap();
    assert_eq!(p.counters["bad"], 0, "{p:?}");
    let st = store.status().unwrap();
    assert_eq!(st.placed_volumes, st.volumes, "{st:?}");
    rt.block_on(async {
        for (key, state) in &expect {
            if let Some(s) = state {
                let bytes = store
                    .get(key, GetOptions::default())
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap();
                assert!(bytes.to_vec() == body(key, *s), "{key} after the final run");
            }
        }
    });
    // No orphaned files remain.
    let stray: Vec<_> = disks
        .iter()
        .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(stray.is_empty(), "temporary files left: {stray:?}");
}
