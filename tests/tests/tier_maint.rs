//! Maintenance of the remote tier against moto and Garage (scripts/test starts them): scrub
//! reads tiered volumes back (whole or sampled, under a bandwidth cap), rebuilds a damaged
//! object when every live blob can still be had verified (from the object or the read cache),
//! and reports one it cannot repair with its key; gc deletes tiered volumes nothing references
//! and compacts those with much garbage in the bucket, and every file still reads back. kill -9
//! during remote gc is in tier_moto.rs (`kill_9_while_collecting_remote_garbage_loses_nothing`).

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use objfs_store::local::tier::scrub::RemoteScrub;
use objfs_store::local::{GcOptions, LocalConfig, LocalStore, Progress};
use objfs_store::s3::S3Store;
use objfs_store::{GetOptions, ObjectStore, PutOptions};
use objfs_tests::s3_fixture::{garage, moto, Server};
use objfs_tests::tier_fixture::*;

fn full() -> RemoteScrub {
    RemoteScrub {
        full: true,
        sample: 0.0,
        bandwidth: 0,
    }
}

/// A whole scrub pass now; its counters.
fn scrub(store: &LocalStore, how: RemoteScrub) -> Progress {
    let (p, done) = store.scrub_now_remote_until(how, |_| true).unwrap();
    assert!(done);
    p
}

fn counter(p: &Progress, name: &str) -> u64 {
    p.counters.get(name).copied().unwrap_or(0)
}

fn get_object(rt: &tokio::runtime::Runtime, s3: &S3Store, key: &str) -> Vec<u8> {
    rt.block_on(async { s3.get(key, GetOptions::default()).await?.bytes().await })
        .unwrap()
        .to_vec()
}

fn put_object(rt: &tokio::runtime::Runtime, s3: &S3Store, key: &str, bytes: Vec<u8>) {
    rt.block_on(s3.put(key, Bytes::from(bytes).into(), PutOptions::default()))
        .unwrap();
}

#[test]
fn scrub_checks_tiered_volumes_repairs_what_it_can_and_names_what_it_cannot() {
    if let Some(server) = moto() {
        remote_scrub(&server);
    }
}

#[test]
fn scrub_on_garage_checks_tiered_volumes_repairs_and_names_what_it_cannot() {
    if let Some(server) = garage() {
        remote_scrub(&server);
    }
}

fn remote_scrub(server: &Server) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (bucket, s3) = rt.block_on(server.fresh_bucket("tier-scrub"));
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = LocalStore::init(&root, config()).unwrap();
    let keys: Vec<String> = (0..12).map(|i| format!("s/f{i}")).collect();
    for (i, k) in keys.iter().enumerate() {
        rt.block_on(store.put(k, body(k, i).into(), PutOptions::default()))
            .unwrap();
    }
    store
        .tier_add(tier_record(server, &bucket, &server.endpoint))
        .unwrap();
    store.set_lifecycle_rule(every_version()).unwrap();
    store.lifecycle_now_until(|_| true).unwrap();
    let objects = rt.block_on(remote_keys(&s3));
    assert!(objects.len() >= 3, "{objects:?}");
    let remote_bytes: u64 = objects
        .iter()
        .map(|o| get_object(&rt, &s3, o).len() as u64)
        .sum();

    // Whole: every object read and found as written.
    let p = scrub(&store, full());
    assert_eq!(counter(&p, "bad"), 0, "{p:?}");
    assert!(counter(&p, "bytes_checked") >= remote_bytes, "{p:?}");
    // Sampled: a share of the blobs, fewer bytes.
    let sampled = RemoteScrub {
        full: false,
        sample: 0.01,
        bandwidth: 0,
    };
    let p = scrub(&store, sampled.clone());
    assert_eq!(counter(&p, "bad"), 0, "{p:?}");
    let checked = counter(&p, "bytes_checked");
    assert!(
        checked > 0 && checked < remote_bytes,
        "{checked} of {remote_bytes}"
    );
    // Under a cap, a pass takes at least its bytes over the cap.
    let cap = remote_bytes / 2;
    let t0 = Instant::now();
    scrub(
        &store,
        RemoteScrub {
            bandwidth: cap,
            ..full()
        },
    );
    assert!(
        t0.elapsed() >= Duration::from_millis(1500),
        "{remote_bytes} bytes at {cap}/s in {:?}",
        t0.elapsed()
    );

    // Every file read once: the read cache now holds every live block.
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(rt.block_on(read(&store, k)).unwrap(), body(k, i), "{k}");
    }
    // 1. A corrupt byte in a blob's data, the cache intact: rebuilt from the cache.
    let a = objects[0].clone();
    let mut bad = get_object(&rt, &s3, &a);
    bad[64 + 32 + 100] ^= 0x5a;
    put_object(&rt, &s3, &a, bad);
    // A sampled pass that reads the blob sees it too (every blob sampled).
    let p = scrub(
        &store,
        RemoteScrub {
            sample: 1.0,
            ..sampled.clone()
        },
    );
    assert_eq!(counter(&p, "bad"), 1, "{p:?}");
    assert_eq!(counter(&p, "repaired"), 1, "{p:?}");
    assert_eq!(counter(&p, "unrepairable"), 0, "{p:?}");
    let p = scrub(&store, full());
    assert_eq!(counter(&p, "bad"), 0, "repaired for good: {p:?}");

    // 2. Damage outside every live blob (the volume header), no cache: rebuilt from the
    //    object itself.
    let b = objects[1].clone();
    let mut bad = get_object(&rt, &s3, &b);
    bad[40] ^= 0xff;
    put_object(&rt, &s3, &b, bad);
    store.close().unwrap();
    let store = reopen(&root, true);
    let p = scrub(&store, full());
    assert_eq!(
        (counter(&p, "bad"), counter(&p, "repaired")),
        (1, 1),
        "{p:?}"
    );
    assert_eq!(get_object(&rt, &s3, &b)[40], 0, "the header is whole again");

    // 3. A blob's data corrupt and nothing cached: unrepairable, named by its key.
    let mut bad = get_object(&rt, &s3, &a);
    for x in bad.iter_mut().skip(64 + 32).take(1000) {
        *x ^= 0x11;
    }
    put_object(&rt, &s3, &a, bad);
    // 4. An object gone, nothing cached: unrepairable too.
    let c = objects[2].clone();
    rt.block_on(s3.delete(&c)).unwrap();
    store.close().unwrap();
    let store = reopen(&root, true);
    let p = scrub(&store, full());
    assert!(counter(&p, "unrepairable") >= 2, "{p:?}");
    assert_eq!(counter(&p, "repaired"), 0, "{p:?}");
    assert!(p.note.contains(&a) && p.note.contains(&c), "{}", p.note);
    // The status of the daemon says the same after the pass.
    let st = store.daemon_reports().unwrap();
    let sc = st.iter().find(|d| d.name == "scrub").unwrap();
    assert!(sc.progress.note.contains(&c), "{:?}", sc.progress);
    // The files of intact volumes still read; those of the damaged ones are errors, never data.
    for (i, k) in keys.iter().enumerate() {
        if let Ok(data) = rt.block_on(read(&store, k)) {
            assert_eq!(data, body(k, i), "{k}");
        }
    }
    store.close().unwrap();
}

#[test]
fn gc_deletes_and_compacts_tiered_volumes_in_the_bucket() {
    if let Some(server) = moto() {
        remote_gc(&server);
    }
}

#[test]
fn gc_on_garage_deletes_and_compacts_tiered_volumes_in_the_bucket() {
    if let Some(server) = garage() {
        remote_gc(&server);
    }
}

fn remote_gc(server: &Server) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (bucket, s3) = rt.block_on(server.fresh_bucket("tier-gc"));
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let cfg = LocalConfig {
        volume_size: 96 << 10,
        block_size: 4096,
        ..config()
    };
    let store = LocalStore::init(&root, cfg).unwrap();
    let file = |k: &str, gen: u64| runner_body(k, gen);
    let keys: Vec<String> = (0..24).map(|i| format!("g/f{i}")).collect();
    for k in &keys {
        rt.block_on(store.put(k, file(k, 1).into(), PutOptions::default()))
            .unwrap();
    }
    store
        .tier_add(tier_record(server, &bucket, &server.endpoint))
        .unwrap();
    store.set_lifecycle_rule(every_version()).unwrap();
    store.lifecycle_now_until(|_| true).unwrap();
    let before = rt.block_on(remote_keys(&s3));
    assert!(before.len() >= 2, "{before:?}");
    // Most keys rewritten (their tiered versions become noncurrent), one in three kept.
    for (i, k) in keys.iter().enumerate() {
        if i % 3 != 0 {
            rt.block_on(store.put(k, file(k, 2).into(), PutOptions::default()))
                .unwrap();
        }
    }
    // gc as if a year had passed: every noncurrent version expires and is reclaimed now.
    let opts = GcOptions {
        delay: Duration::ZERO,
        garbage_ratio: 0.3,
        now: Some(SystemTime::now() + Duration::from_secs(400 * 86_400)),
        ..Default::default()
    };
    let p = store.gc_now(opts, |_| {}).unwrap();
    let last = p.last.clone().unwrap();
    let deleted = last
        .counters
        .get("remote_volumes_deleted")
        .copied()
        .unwrap_or(0);
    let compacted = last
        .counters
        .get("remote_volumes_compacted")
        .copied()
        .unwrap_or(0);
    assert!(deleted + compacted >= 1, "{last:?}");
    assert!(
        last.counters
            .get("remote_bytes_freed")
            .copied()
            .unwrap_or(0)
            > 0,
        "{last:?}"
    );
    // Every object left is a tiered volume's; none of the collected ones remains.
    let after = rt.block_on(remote_keys(&s3));
    assert_eq!(
        after.len() as u64,
        store.tier_status().unwrap().unwrap().volumes,
        "{after:?}"
    );
    assert!(
        after.len() < before.len() || compacted > 0,
        "{before:?} -> {after:?}"
    );
    // Every file reads back, from the bucket, verified.
    store.close().unwrap();
    let store = reopen(&root, true);
    for (i, k) in keys.iter().enumerate() {
        let gen = if i % 3 != 0 { 2 } else { 1 };
        assert_eq!(rt.block_on(read(&store, k)).unwrap(), file(k, gen), "{k}");
    }
    let p = scrub(&store, full());
    assert_eq!(counter(&p, "bad"), 0, "{p:?}");
    // du: the kept first versions are remote (in the volume a compaction made, too), the
    // rewritten ones local.
    let (mut remote, mut local) = (0, 0);
    for (i, k) in keys.iter().enumerate() {
        if i % 3 == 0 {
            remote += file(k, 1).len() as u64;
        } else {
            local += file(k, 2).len() as u64;
        }
    }
    let t = tiers(&store);
    assert_eq!(
        (t.remote_bytes, t.local_replicated_bytes),
        (remote, local),
        "{t:?}"
    );
    // Tiering the rewritten versions too, then every key deleted and expired: the bucket
    // empties.
    store.lifecycle_now_until(|_| true).unwrap();
    for k in &keys {
        rt.block_on(store.delete(k)).unwrap();
    }
    let opts = GcOptions {
        delay: Duration::ZERO,
        garbage_ratio: 0.3,
        now: Some(SystemTime::now() + Duration::from_secs(400 * 86_400)),
        ..Default::default()
    };
    store.gc_now(opts, |_| {}).unwrap();
    assert_eq!(store.tier_status().unwrap().unwrap().volumes, 0);
    assert!(rt.block_on(remote_keys(&s3)).is_empty());
    store.close().unwrap();
}
