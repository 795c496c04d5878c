//! The remote tier of a local store against moto and Garage (scripts/test starts them;
//! without OBJFS_TEST_S3_ENDPOINT / OBJFS_TEST_GARAGE_ENDPOINT these tests say loudly that they
//! were skipped): files written, a rule applied now, local volume files gone, reads intact and
//! verified, through the store and through a mount; a corrupted remote object is a read error
//! naming its key (EIO at the mount), never data; a remote that does not answer fails tiered
//! reads only, local data stays readable and writable; recall brings everything back; the
//! `objfs tier` and `objfs lifecycle` commands; and kill -9 in the middle of tiering,
//! recalling and remote gc (deleting and compacting tiered volumes), many rounds, loses nothing
//! and leaks no remote object.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use objfs_store::local::tier::rules::Rule;
use objfs_store::local::tier::{TierRecord, DEFAULT_JOBS};
use objfs_store::local::{LocalConfig, LocalStore};
use objfs_store::{GetOptions, ObjectStore, PutOptions};
use objfs_tests::mount_fixture::MountFixture;
use objfs_tests::s3_fixture::{garage, moto, Server};
use objfs_tests::tier_fixture::*;
use rand::Rng;

#[test]
fn tiered_volumes_read_back_verified_and_survive_a_bad_or_absent_remote() {
    if let Some(server) = moto() {
        tier_round_trip(&server);
    }
}

#[test]
fn tiered_volumes_on_garage_read_back_verified_and_survive_a_bad_or_absent_remote() {
    if let Some(server) = garage() {
        tier_round_trip(&server);
    }
}

/// Files written, tiered, read back; a corrupt object; the remote down; recall and detach.
fn tier_round_trip(server: &Server) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (bucket, s3) = rt.block_on(server.fresh_bucket("tier"));
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = LocalStore::init(&root, config()).unwrap();
    let keys: Vec<String> = (0..12).map(|i| format!("docs/f{i}")).collect();
    for (i, k) in keys.iter().enumerate() {
        rt.block_on(store.put(k, body(k, i).into(), PutOptions::default()))
            .unwrap();
    }

    // A bucket that does not exist is refused, and the store keeps no tier.
    let mut bad = tier_record(server, "no-such-bucket-objfs-tier", &server.endpoint);
    bad.prefix = "x".into();
    assert!(store.tier_add(bad).is_err());
    assert!(store.tier_status().unwrap().is_none());

    let st = store
        .tier_add(tier_record(server, &bucket, &server.endpoint))
        .unwrap();
    assert_eq!(st.url, format!("s3://{bucket}/cold/"));
    assert!(store
        .tier_add(tier_record(server, &bucket, &server.endpoint))
        .is_err());
    // No rules: nothing moves.
    let (p, done) = store.lifecycle_now_until(|_| true).unwrap();
    assert!(done);
    assert_eq!(p.counters.get("volumes_tiered").copied().unwrap_or(0), 0);
    assert!(volume_files(&root) > 0);

    store.set_lifecycle_rule(every_version()).unwrap();
    let (p, done) = store.lifecycle_now_until(|_| true).unwrap();
    assert!(done);
    let tiered = p.last.as_ref().unwrap().counters["volumes_tiered"];
    assert!(tiered >= 2, "{p:?}");
    // The uploads overlapped, never more than the tier's jobs at once.
    let peak = p.last.as_ref().unwrap().counters["peak_uploads"];
    assert!(
        (2..=u64::from(DEFAULT_JOBS)).contains(&peak),
        "peak uploads {peak}: {p:?}"
    );
    assert_eq!(volume_files(&root), 0, "the local volume files are gone");
    let st = store.tier_status().unwrap().unwrap();
    assert_eq!(st.volumes, tiered);
    // du counts every byte as remote now (rollups: nothing was recounted).
    let total: u64 = keys
        .iter()
        .enumerate()
        .map(|(i, k)| body(k, i).len() as u64)
        .sum();
    let t = tiers(&store);
    assert_eq!(
        (t.remote_bytes, t.local_replicated_bytes),
        (total, 0),
        "{t:?}"
    );
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(rt.block_on(read(&store, k)).unwrap(), body(k, i), "{k}");
    }
    // Ranged reads fetch what they need; read again from the cache.
    let got = rt
        .block_on(store.get(
            &keys[2],
            GetOptions {
                range: Some(300_000..300_100),
                ..Default::default()
            },
        ))
        .unwrap();
    assert_eq!(
        rt.block_on(got.bytes()).unwrap().to_vec(),
        body(&keys[2], 2)[300_000..300_100].to_vec()
    );
    assert!(store.tier_status().unwrap().unwrap().cache_bytes > 0);

    // Objects at hashed keys: cold/<2 hex>/<2 hex>/<volume id>.
    let objects = rt.block_on(remote_keys(&s3));
    assert_eq!(objects.len() as u64, tiered, "{objects:?}");
    for o in &objects {
        let parts: Vec<&str> = o.split('/').collect();
        assert_eq!(parts.len(), 4, "{o}");
        assert!(
            parts[1].len() == 2 && parts[2].len() == 2 && parts[3].len() == 16,
            "{o}"
        );
    }

    // Detaching is refused while data is tiered.
    let err = store.tier_remove(false, &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("recall"), "{err}");

    // A corrupt byte in a remote object: a read error naming the object, never data.
    let victim = objects[0].clone();
    let good = rt
        .block_on(async { s3.get(&victim, GetOptions::default()).await?.bytes().await })
        .unwrap();
    let mut bad = good.to_vec();
    // Inside the data of the volume's first blob (volume header 64, blob header 32).
    bad[64 + 32 + 100] ^= 0x5a;
    rt.block_on(s3.put(&victim, Bytes::from(bad).into(), PutOptions::default()))
        .unwrap();
    store.close().unwrap();
    let store = reopen(&root, true);
    let mut failed = 0;
    for (i, k) in keys.iter().enumerate() {
        match rt.block_on(read(&store, k)) {
            Ok(data) => assert_eq!(data, body(k, i), "{k}: wrong data"),
            Err(e) => {
                failed += 1;
                let msg = e.to_string();
                assert!(msg.contains(&victim), "{k}: {msg}");
                assert_eq!(e.kind(), objfs_store::ErrorKind::Corrupt, "{msg}");
            }
        }
    }
    assert!(failed >= 1, "a corrupted object must fail a read");
    rt.block_on(s3.put(&victim, good.clone().into(), PutOptions::default()))
        .unwrap();
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(rt.block_on(read(&store, k)).unwrap(), body(k, i), "{k}");
    }

    // The remote unreachable (its endpoint a closed port): tiered reads fail with an error,
    // local data is readable and writable, lifecycle fails and leaves everything in place.
    let mut down = tier_record(server, &bucket, "http://127.0.0.1:9");
    down.added = 1;
    rt.block_on(store.put_record("tier", Some(down.encode().unwrap().into()), true))
        .unwrap();
    store.close().unwrap();
    let store = reopen(&root, true);
    let t0 = Instant::now();
    let err = rt.block_on(read(&store, &keys[0])).unwrap_err();
    assert!(
        t0.elapsed() < Duration::from_secs(120),
        "{:?}",
        t0.elapsed()
    );
    assert!(!err.to_string().is_empty());
    rt.block_on(store.put("local/new", b"fresh".to_vec().into(), PutOptions::default()))
        .unwrap();
    assert_eq!(rt.block_on(read(&store, "local/new")).unwrap(), b"fresh");
    assert!(store.lifecycle_now_until(|_| true).is_err());
    assert_eq!(rt.block_on(read(&store, "local/new")).unwrap(), b"fresh");
    assert!(volume_files(&root) > 0, "the new volume stays local");

    // Back up: recall everything, then detach.
    let up = tier_record(server, &bucket, &server.endpoint);
    rt.block_on(store.put_record("tier", Some(up.encode().unwrap().into()), true))
        .unwrap();
    store.close().unwrap();
    let store = reopen(&root, true);
    let mut seen = 0;
    let run = store.tier_recall(None, &mut |_| seen += 1).unwrap();
    assert!(seen >= 2);
    assert_eq!(run.counters["volumes_recalled"], tiered);
    assert_eq!(store.tier_status().unwrap().unwrap().volumes, 0);
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(rt.block_on(read(&store, k)).unwrap(), body(k, i), "{k}");
    }
    assert!(rt.block_on(remote_keys(&s3)).is_empty());
    let t = tiers(&store);
    assert_eq!(
        (t.remote_bytes, t.local_replicated_bytes),
        (0, total + 5),
        "recalled: {t:?}"
    );
    store.tier_remove(false, &mut |_| {}).unwrap();
    assert!(store.tier_status().unwrap().is_none());
    store.close().unwrap();
    let store = reopen(&root, false);
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(rt.block_on(read(&store, k)).unwrap(), body(k, i), "{k}");
    }
    store.close().unwrap();
}

#[test]
fn mixed_volumes_are_repacked_and_their_selected_part_tiered() {
    if let Some(server) = moto() {
        mixed_volumes(&server);
    }
}

#[test]
fn mixed_volumes_on_garage_are_repacked_and_their_selected_part_tiered() {
    if let Some(server) = garage() {
        mixed_volumes(&server);
    }
}

/// Files under `cold/` and `hot/` written in turn, so every volume holds both; a rule for
/// `cold/` only: the cold files' blobs are repacked into volumes of their own and those tiered,
/// the hot ones stay local; du's bytes per tier say so and a recount agrees; gc compacts the
/// old volumes' garbage; everything reads back, also after a reopen.
fn mixed_volumes(server: &Server) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (bucket, _s3) = rt.block_on(server.fresh_bucket("tier-mixed"));
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = LocalStore::init(&root, config()).unwrap();
    let files: Vec<(String, Vec<u8>)> = (0..24)
        .map(|i| {
            let dir = if i % 2 == 0 { "cold" } else { "hot" };
            let key = format!("{dir}/f{i:02}");
            let bytes = body(&key, 1);
            (key, bytes)
        })
        .collect();
    let (mut cold, mut hot) = (0u64, 0u64);
    for (k, b) in &files {
        rt.block_on(store.put(k, b.clone().into(), PutOptions::default()))
            .unwrap();
        if k.starts_with("cold/") {
            cold += b.len() as u64;
        } else {
            hot += b.len() as u64;
        }
    }
    store
        .tier_add(tier_record(server, &bucket, &server.endpoint))
        .unwrap();
    store
        .set_lifecycle_rule(Rule {
            prefix: "cold/".into(),
            ..every_version()
        })
        .unwrap();
    let (p, done) = store.lifecycle_now_until(|_| true).unwrap();
    assert!(done);
    let last = p.last.clone().unwrap();
    assert!(last.counters["volumes_repacked"] >= 1, "{last:?}");
    assert!(last.counters["volumes_tiered"] >= 1, "{last:?}");
    let by_prefix = |store: &LocalStore| {
        tiers(store);
        let du = store.du("", 1, 0).unwrap();
        let of = |p: &str| du.prefixes.iter().find(|u| u.prefix == p).unwrap().tiers;
        (of("cold/"), of("hot/"))
    };
    let (c, h) = by_prefix(&store);
    assert_eq!(
        (c.remote_bytes, c.local_replicated_bytes),
        (cold, 0),
        "{c:?}"
    );
    assert_eq!(
        (h.remote_bytes, h.local_replicated_bytes),
        (0, hot),
        "{h:?}"
    );
    for (k, b) in &files {
        assert_eq!(&rt.block_on(read(&store, k)).unwrap(), b, "{k}");
    }
    // A second pass finds nothing more to do: no new run.
    let tiered = store.tier_status().unwrap().unwrap().volumes;
    let (p, _) = store.lifecycle_now_until(|_| true).unwrap();
    assert_eq!(p.last.unwrap().started, last.started);
    assert_eq!(store.tier_status().unwrap().unwrap().volumes, tiered);

    // The old volumes' copies of the cold blobs are garbage that gc compacts away.
    let opts = objfs_store::local::GcOptions {
        delay: Duration::ZERO,
        garbage_ratio: 0.2,
        ..Default::default()
    };
    let p = store.gc_now(opts, |_| {}).unwrap();
    assert!(
        p.last.unwrap().counters["volumes_compacted"] >= 1,
        "gc compacts the repacked volumes"
    );
    assert_eq!(by_prefix(&store), (c, h));
    store.close().unwrap();
    let store = reopen(&root, true);
    assert_eq!(by_prefix(&store), (c, h));
    for (k, b) in &files {
        assert_eq!(&rt.block_on(read(&store, k)).unwrap(), b, "{k}");
    }
    store.close().unwrap();
}

#[test]
fn uploads_run_in_parallel_at_most_jobs_at_once() {
    let Some(server) = moto() else { return };
    let rt = tokio::runtime::Runtime::new().unwrap();
    for jobs in [1u32, 3] {
        let (bucket, s3) = rt.block_on(server.fresh_bucket("tier-jobs"));
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let store = LocalStore::init(&root, config()).unwrap();
        let keys: Vec<String> = (0..24).map(|i| format!("p/f{i}")).collect();
        for (i, k) in keys.iter().enumerate() {
            rt.block_on(store.put(k, body(k, i).into(), PutOptions::default()))
                .unwrap();
        }
        let rec = tier_record(&server, &bucket, &server.endpoint);
        store.tier_add(TierRecord { jobs, ..rec }).unwrap();
        store.set_lifecycle_rule(every_version()).unwrap();
        let (p, done) = store.lifecycle_now_until(|_| true).unwrap();
        assert!(done);
        let last = p.last.unwrap();
        let tiered = last.counters["volumes_tiered"];
        assert!(tiered > u64::from(jobs), "{last:?}");
        let peak = last.counters["peak_uploads"];
        if jobs == 1 {
            assert_eq!(peak, 1, "{last:?}");
        } else {
            assert!(
                (2..=u64::from(jobs)).contains(&peak),
                "{jobs} jobs: peak {peak}"
            );
        }
        assert_eq!(volume_files(&root), 0);
        assert_eq!(rt.block_on(remote_keys(&s3)).len() as u64, tiered);
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(rt.block_on(read(&store, k)).unwrap(), body(k, i), "{k}");
        }
        // Recall and the deletions of the objects run in batches of `jobs` too.
        let run = store.tier_recall(None, &mut |_| {}).unwrap();
        assert_eq!(run.counters["volumes_recalled"], tiered);
        assert!(rt.block_on(remote_keys(&s3)).is_empty());
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(rt.block_on(read(&store, k)).unwrap(), body(k, i), "{k}");
        }
        store.close().unwrap();
    }
}

#[test]
fn kill_9_while_tiering_and_recalling_loses_nothing() {
    if let Some(server) = moto() {
        kill_9_rounds(&server, None);
    }
}

#[test]
fn kill_9_while_collecting_remote_garbage_loses_nothing() {
    if let Some(server) = moto() {
        kill_9_rounds(&server, Some("gc"));
    }
}

#[test]
fn kill_9_while_repacking_mixed_volumes_loses_nothing() {
    if let Some(server) = moto() {
        kill_9_rounds(&server, Some("mixed"));
    }
}

/// kill -9 of `tier_runner` (in `mode`, if any) at random points, many rounds: everything
/// acknowledged reads back after each, and the per-prefix rollups agree with a recount; at
/// the end no remote object is left that no volume record names. In `mixed` mode the rule
/// selects `k/` only (the runner also writes `h/`), so lifecycle repacks.
fn kill_9_rounds(server: &Server, mode: Option<&str>) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (bucket, s3) = rt.block_on(server.fresh_bucket("tier-crash"));
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let cfg = LocalConfig {
        volume_size: 96 << 10,
        block_size: 4096,
        ..config()
    };
    let store = LocalStore::init(&root, cfg).unwrap();
    store
        .tier_add(tier_record(server, &bucket, &server.endpoint))
        .unwrap();
    let rule = Rule {
        prefix: if mode == Some("mixed") { "k/" } else { "" }.into(),
        ..every_version()
    };
    store.set_lifecycle_rule(rule).unwrap();
    store.close().unwrap();

    let mut expect: HashMap<String, Expect> = HashMap::new();
    let mut seed = 1u64;
    let mut rng = rand::rng();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut rounds = 0;
    let mut max_tiered = 0;
    let mut repacked = 0;
    while rounds < 15 && Instant::now() < deadline {
        rounds += 1;
        let mut child = Command::new(env!("CARGO_BIN_EXE_tier_runner"))
            .arg(&root)
            .arg(seed.to_string())
            .args(mode)
            .env("OBJFS_TIER_PAUSE_MS", "15")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let kill_after = Duration::from_millis(rng.random_range(300..3000));
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
            let (Some(op), Some(key), Some(s)) = (parts.first(), parts.get(1), parts.get(2)) else {
                continue;
            };
            let Ok(s) = s.parse::<u64>() else { continue };
            if *op == "REPACKED" {
                repacked += s;
                continue;
            }
            seed = seed.max(s + 1);
            let e = expect.entry(key.to_string()).or_default();
            match *op {
                "WILL" => {
                    e.candidates.insert(s);
                }
                "PUT" => {
                    e.acked = Some(s);
                    e.candidates = [s].into_iter().collect();
                }
                _ => {}
            }
        }
        let _ = child.wait();
        killer.join().unwrap();

        // Everything acknowledged reads back, whatever was in flight.
        let store = LocalStore::open(&root).expect("reopen after kill -9");
        for (key, e) in &expect {
            match rt.block_on(read(&store, key)) {
                Ok(data) => assert!(
                    e.candidates.iter().any(|s| runner_body(key, *s) == data),
                    "round {rounds}: {key} reads neither its acknowledged nor an in-flight value"
                ),
                Err(err) => assert!(
                    e.acked.is_none(),
                    "round {rounds}: acknowledged {key} does not read: {err}"
                ),
            }
        }
        max_tiered = max_tiered.max(store.tier_status().unwrap().unwrap().volumes);
        let v = store.verify_rollups("").unwrap();
        assert_eq!(v.mismatch_count, 0, "round {rounds}: {:#?}", v.mismatches);
        store.close().unwrap();
        seed += 1000;
    }
    assert!(rounds >= 3, "only {rounds} rounds");
    assert!(max_tiered > 0, "nothing was ever tiered");
    if mode == Some("mixed") {
        assert!(repacked > 0, "nothing was ever repacked");
    }
    // A last lifecycle run and gc round resolve what the last kill left: every remote object
    // is then a tiered volume's; recall all and check again.
    let store = LocalStore::open(&root).unwrap();
    store.lifecycle_now_until(|_| true).unwrap();
    store.gc_now(Default::default(), |_| {}).unwrap();
    let objects = rt.block_on(remote_keys(&s3));
    assert_eq!(
        objects.len() as u64,
        store.tier_status().unwrap().unwrap().volumes,
        "remote objects left that no volume names: {objects:?}"
    );
    store.tier_recall(None, &mut |_| {}).unwrap();
    assert!(rt.block_on(remote_keys(&s3)).is_empty());
    for (key, e) in &expect {
        if e.acked.is_some() {
            let data = rt.block_on(read(&store, key)).unwrap();
            assert!(
                e.candidates.iter().any(|s| runner_body(key, *s) == data),
                "{key}"
            );
        }
    }
    store.close().unwrap();
}

#[test]
fn tiered_files_read_through_a_mount_and_a_corrupt_object_is_eio() {
    let Some(server) = moto() else { return };
    let Some(mut fx) = MountFixture::new("tiered_files_read_through_a_mount") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (bucket, s3) = rt.block_on(server.fresh_bucket("tier-mount"));
    let names: Vec<String> = (0..6).map(|i| format!("f{i}")).collect();
    for (i, n) in names.iter().enumerate() {
        std::fs::write(fx.path(n), body(n, i)).unwrap();
    }
    {
        let store = fx.store().unwrap();
        store
            .tier_add(tier_record(&server, &bucket, &server.endpoint))
            .unwrap();
        store.set_lifecycle_rule(every_version()).unwrap();
        let (p, _) = store.lifecycle_now_until(|_| true).unwrap();
        assert!(p.last.unwrap().counters["volumes_tiered"] >= 1);
    }
    assert_eq!(volume_files(&fx.store_path), 0);
    // A fresh mount (no kernel page cache), with no chunk cached: every read is remote.
    fx.unmount();
    let _ = std::fs::remove_dir_all(fx.store_path.join("tier-cache"));
    fx.remount();
    for (i, n) in names.iter().enumerate() {
        assert_eq!(std::fs::read(fx.path(n)).unwrap(), body(n, i), "{n}");
    }
    // Writes keep working beside the tiered data.
    std::fs::write(fx.path("new"), b"local").unwrap();
    assert_eq!(std::fs::read(fx.path("new")).unwrap(), b"local");

    // Every tiered object corrupted: reads fail with EIO, never return other bytes.
    let objects = rt.block_on(remote_keys(&s3));
    assert!(!objects.is_empty());
    for o in &objects {
        let good = rt
            .block_on(async { s3.get(o, GetOptions::default()).await?.bytes().await })
            .unwrap();
        let mut bad = good.to_vec();
        for b in bad.iter_mut().skip(64 + 32) {
            *b ^= 0x11;
        }
        rt.block_on(s3.put(o, Bytes::from(bad).into(), PutOptions::default()))
            .unwrap();
    }
    fx.unmount();
    let _ = std::fs::remove_dir_all(fx.store_path.join("tier-cache"));
    fx.remount();
    for n in &names {
        let err = std::fs::read(fx.path(n)).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EIO), "{n}: {err}");
    }
    assert_eq!(std::fs::read(fx.path("new")).unwrap(), b"local");
}

#[test]
fn tier_and_lifecycle_commands_attach_apply_show_recall_and_remove() {
    let Some(server) = moto() else { return };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (bucket, _s3) = rt.block_on(server.fresh_bucket("tier-cli"));
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = LocalStore::init(&root, config()).unwrap();
    let keys: Vec<String> = (0..6).map(|i| format!("a/f{i}")).collect();
    for (i, k) in keys.iter().enumerate() {
        rt.block_on(store.put(k, body(k, i).into(), PutOptions::default()))
            .unwrap();
    }
    store.close().unwrap();
    let st = root.to_str().unwrap();
    let (ok, out) = objfs(&["tier", "list", st]);
    assert!(ok && out.contains("no remote tier"), "{out}");
    let url = format!("s3://{bucket}/cold");
    let mut add = vec!["tier", "add", st, url.as_str()];
    let remote = server.cli_args();
    add.extend(remote.iter().map(String::as_str));
    let (ok, out) = objfs(&add);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("s3://{bucket}/cold/")), "{out}");
    let (ok, out) = objfs(&["lifecycle", "set", st, "--prefix", "", "--after", "0s"]);
    assert!(ok, "{out}");
    let (ok, out) = objfs(&["lifecycle", "set", st, "--prefix", "a/", "--after", "soon"]);
    assert!(!ok && out.contains("soon"), "{out}");
    let (ok, out) = objfs(&["lifecycle", "show", st]);
    assert!(ok && out.contains("prefix \"\""), "{out}");
    let (ok, out) = objfs(&["lifecycle", "run", st, "-q"]);
    assert!(ok, "{out}");
    assert!(out.contains("volumes tiered"), "{out}");
    assert_eq!(volume_files(&root), 0);
    let (ok, out) = objfs(&["status", st, "--json"]);
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(v["tier"]["volumes"].as_u64().unwrap() >= 1, "{v}");
    assert_eq!(v["lifecycle"].as_array().unwrap().len(), 1, "{v}");
    let (ok, out) = objfs(&["status", st]);
    assert!(
        ok && out.contains("tier:") && out.contains("lifecycle:"),
        "{out}"
    );
    let (ok, out) = objfs(&["tier", "remove", st]);
    assert!(!ok && out.contains("recall"), "{out}");
    let (ok, out) = objfs(&["tier", "recall", st, "-q"]);
    assert!(ok && out.contains("volumes recalled"), "{out}");
    assert!(volume_files(&root) > 0);
    let (ok, out) = objfs(&["tier", "remove", st, "--recall", "-q"]);
    assert!(ok && out.contains("removed"), "{out}");
    let (ok, out) = objfs(&["tier", "list", st]);
    assert!(ok && out.contains("no remote tier"), "{out}");
    let store = LocalStore::open(&root).unwrap();
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(rt.block_on(read(&store, k)).unwrap(), body(k, i), "{k}");
    }
    store.close().unwrap();
}
