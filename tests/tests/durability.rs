//! Durability of the local store across disks: erasure-coded placement, degraded reads, scrub
//! repair, lost and replaced disks, gc reclaiming space. Each test builds a store over several
//! disk directories with small volumes so that many stripes exist.

use std::path::{Path, PathBuf};
use std::time::Duration;

use objfs_store::local::{EcSetting, GcOptions, LocalConfig, LocalStore};
use objfs_store::{ErrorKind, GetOptions, ObjectStore, PutOptions};

const K: u8 = 4;
const M: u8 = 2;

fn cfg(disks: &[PathBuf]) -> LocalConfig {
    LocalConfig {
        disks: disks.to_vec(),
        replicas: 2,
        ec: EcSetting::On { k: K, m: M },
        volume_size: 256 << 10,
        block_size: 4096,
        blob_size: 64 << 10,
        ..Default::default()
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    disks: Vec<PathBuf>,
}

fn fixture(n: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let disks = (0..n)
        .map(|i| dir.path().join(format!("disk{i}")))
        .collect();
    Fixture {
        _dir: dir,
        root,
        disks,
    }
}

fn content(i: usize) -> Vec<u8> {
    let len = 1000 + (i * 7919) % 90_000;
    (0..len).map(|j| ((i * 31 + j * 17) % 251) as u8).collect()
}

async fn fill(store: &LocalStore, n: usize) {
    for i in 0..n {
        store
            .put(
                &format!("obj/{i:04}"),
                content(i).into(),
                PutOptions::default(),
            )
            .await
            .unwrap();
    }
}

async fn read(store: &LocalStore, i: usize) -> objfs_store::Result<Vec<u8>> {
    let r = store
        .get(&format!("obj/{i:04}"), GetOptions::default())
        .await?;
    Ok(r.bytes().await?.to_vec())
}

/// Every file of kind `suffix` (e.g. ".s03") under the disks, by volume id.
fn files_with(disks: &[PathBuf], pred: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for d in disks {
        if let Ok(rd) = std::fs::read_dir(d) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if pred(&name) {
                    out.push(e.path());
                }
            }
        }
    }
    out.sort();
    out
}

fn shard_files(disks: &[PathBuf], index: usize) -> Vec<PathBuf> {
    let suffix = format!(".s{index:02}");
    files_with(disks, |n| n.ends_with(&suffix))
}

fn flip_bytes(path: &Path, at: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 64];
    f.read_exact_at(&mut b, at).unwrap();
    for x in b.iter_mut() {
        *x ^= 0x5A;
    }
    f.write_all_at(&b, at).unwrap();
}

#[tokio::test]
async fn placement_then_any_m_lost_shards_read_back_and_scrub_repairs() {
    let fx = fixture(6);
    let store = LocalStore::init(&fx.root, cfg(&fx.disks)).unwrap();
    fill(&store, 60).await;
    let before = store.status().unwrap();
    assert_eq!(before.replicas, 2);
    store.place_now(|_| {}).unwrap();
    let st = store.status().unwrap();
    assert!(st.placed_volumes >= 3, "volumes placed: {st:?}");
    assert_eq!(
        st.placed_volumes, st.volumes,
        "every sealed volume is placed"
    );
    assert!(
        files_with(&fx.disks, |n| n.ends_with(".vol")).is_empty(),
        "replicas freed"
    );
    for i in 0..60 {
        assert_eq!(
            read(&store, i).await.unwrap(),
            content(i),
            "object {i} after placement"
        );
    }

    // Lose M shards of every stripe: one data shard deleted, one corrupted (in data and header).
    for p in shard_files(&fx.disks, 1) {
        std::fs::remove_file(p).unwrap();
    }
    for p in shard_files(&fx.disks, 3) {
        flip_bytes(&p, 64 + 100);
        flip_bytes(&p, 0);
    }
    for i in 0..60 {
        assert_eq!(
            read(&store, i).await.unwrap(),
            content(i),
            "object {i} with {M} shards lost"
        );
    }
    let p = store.scrub_now(|_| {}).unwrap();
    assert!(p.counters["bad"] > 0 && p.counters["repaired"] > 0, "{p:?}");
    assert_eq!(p.counters["unrepairable"], 0, "{p:?}");
    // Full redundancy again: a second pass finds nothing, and shard 1 files exist again.
    let p = store.scrub_now(|_| {}).unwrap();
    assert_eq!(p.counters["bad"], 0, "{p:?}");
    assert_eq!(shard_files(&fx.disks, 1).len(), st.placed_volumes as usize);
    for i in 0..60 {
        assert_eq!(read(&store, i).await.unwrap(), content(i));
    }
}

#[tokio::test]
async fn m_plus_one_lost_fails_with_corrupt_never_wrong_bytes() {
    let fx = fixture(6);
    let store = LocalStore::init(&fx.root, cfg(&fx.disks)).unwrap();
    fill(&store, 40).await;
    store.place_now(|_| {}).unwrap();
    // Break M+1 shards of the first placed volume only.
    let victim = shard_files(&fx.disks, 0)[0]
        .file_name()
        .unwrap()
        .to_string_lossy()[..16]
        .to_string();
    for idx in [0usize, 1, 4] {
        let p = shard_files(&fx.disks, idx)
            .into_iter()
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(&victim)
            })
            .unwrap();
        std::fs::remove_file(p).unwrap();
    }
    let (mut ok, mut corrupt) = (0, 0);
    for i in 0..40 {
        match read(&store, i).await {
            Ok(bytes) => {
                assert_eq!(
                    bytes,
                    content(i),
                    "a successful read must return the right bytes"
                );
                ok += 1;
            }
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
                assert!(
                    e.to_string().contains(&format!("obj/{i:04}")),
                    "the error names the object: {e}"
                );
                corrupt += 1;
            }
        }
    }
    assert!(corrupt > 0, "objects in the broken stripe must fail");
    assert!(ok > 0, "the rest of the store keeps working");
    // New writes still work.
    store
        .put("after", "still writable".into(), PutOptions::default())
        .await
        .unwrap();
    let p = store.scrub_now(|_| {}).unwrap();
    assert!(
        p.counters["unrepairable"] > 0,
        "scrub reports what it cannot fix: {p:?}"
    );
}

#[tokio::test]
async fn a_removed_disk_still_reads_and_replace_restores_redundancy() {
    let fx = fixture(6);
    {
        let store = LocalStore::init(&fx.root, cfg(&fx.disks)).unwrap();
        fill(&store, 50).await;
        store.place_now(|_| {}).unwrap();
        // Some data stays replicated (written after placement) so both layouts are covered.
        for i in 50..60 {
            store
                .put(
                    &format!("obj/{i:04}"),
                    content(i).into(),
                    PutOptions::default(),
                )
                .await
                .unwrap();
        }
        store.close().unwrap();
    }
    std::fs::remove_dir_all(&fx.disks[2]).unwrap();
    let store = LocalStore::open(&fx.root).unwrap();
    let st = store.status().unwrap();
    assert!(!st.disks[2].online, "{st:?}");
    assert!(!st.warnings.is_empty());
    for i in 0..60 {
        assert_eq!(
            read(&store, i).await.unwrap(),
            content(i),
            "object {i} with disk 2 gone"
        );
    }
    let new_disk = fx.disks[2].with_file_name("disk2-new");
    store.replace_disk(&fx.disks[2], &new_disk).unwrap();
    let p = store.scrub_now(|_| {}).unwrap();
    assert_eq!(p.counters["unrepairable"], 0, "{p:?}");
    let p = store.scrub_now(|_| {}).unwrap();
    assert_eq!(p.counters["bad"], 0, "full redundancy after replace: {p:?}");
    assert_eq!(p.counters["offline"], 0, "{p:?}");
    assert!(store.status().unwrap().disks[2].online);
    store.close().unwrap();
    // The replacement is remembered.
    let store = LocalStore::open(&fx.root).unwrap();
    assert_eq!(store.status().unwrap().disks[2].path, new_disk);
    for i in 0..60 {
        assert_eq!(read(&store, i).await.unwrap(), content(i));
    }
}

#[tokio::test]
async fn gc_returns_space_and_keeps_live_data() {
    let fx = fixture(3);
    let mut c = cfg(&fx.disks);
    c.ec = EcSetting::Off;
    let store = LocalStore::init(&fx.root, c).unwrap();
    fill(&store, 80).await;
    // An upload left behind, and a second version of every other object.
    let id = store
        .create_multipart("stale", PutOptions::default())
        .await
        .unwrap();
    store
        .upload_part("stale", &id, 1, vec![9u8; 50_000].into())
        .await
        .unwrap();
    store.sync().await.unwrap();
    let before = store.status().unwrap().volume_bytes;
    // Delete every version of 3/4 of the objects for good.
    for i in 0..80 {
        if i % 4 != 0 {
            let key = format!("obj/{i:04}");
            let v = store.head(&key, None).await.unwrap().version;
            store.delete_version(&key, v).await.unwrap();
        }
    }
    let opts = GcOptions {
        delay: Duration::ZERO,
        upload_ttl: Duration::ZERO,
        ..Default::default()
    };
    let p = store.gc_now(opts, |_| {}).unwrap();
    assert!(p.counters["blobs_reclaimed"] >= 60, "{p:?}");
    assert!(p.counters["volumes_compacted"] >= 1, "{p:?}");
    assert_eq!(p.counters["uploads_aborted"], 1, "{p:?}");
    let after = store.status().unwrap().volume_bytes;
    assert!(
        after < before / 2,
        "volume files shrank from {before} to {after}"
    );
    for i in (0..80).step_by(4) {
        assert_eq!(
            read(&store, i).await.unwrap(),
            content(i),
            "live object {i} after gc"
        );
    }
    assert!(store.list_multipart_uploads("").await.unwrap().is_empty());
    store.close().unwrap();
    let store = LocalStore::open(&fx.root).unwrap();
    for i in (0..80).step_by(4) {
        assert_eq!(
            read(&store, i).await.unwrap(),
            content(i),
            "live object {i} after reopen"
        );
    }
}

#[tokio::test]
async fn impossible_policies_are_refused() {
    let fx = fixture(3);
    let mut c = cfg(&fx.disks);
    c.ec = EcSetting::On { k: 4, m: 2 };
    let e = LocalStore::init(&fx.root, c).err().unwrap();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.to_string().contains("needs 6 disks"), "{e}");
    let mut c = cfg(&fx.disks);
    c.ec = EcSetting::Off;
    c.replicas = 4;
    let e = LocalStore::init(&fx.root, c).err().unwrap();
    assert!(e.to_string().contains("4 replicas need 4 disks"), "{e}");
    assert!(
        !fx.root.join("objfs-store.json").exists(),
        "a refused init leaves no store"
    );
}

#[tokio::test]
async fn disks_can_be_added_and_removed_without_losing_data() {
    let fx = fixture(5);
    let mut c = cfg(&fx.disks);
    c.ec = EcSetting::On { k: 3, m: 2 };
    let store = LocalStore::init(&fx.root, c).unwrap();
    fill(&store, 50).await;
    store.place_now(|_| {}).unwrap();
    for i in 50..60 {
        store
            .put(
                &format!("obj/{i:04}"),
                content(i).into(),
                PutOptions::default(),
            )
            .await
            .unwrap();
    }
    // 3+2 on 5 disks: removing one would leave too few.
    let e = store.remove_disk(&fx.disks[0]).err().unwrap();
    assert!(e.to_string().contains("needs 5 disks"), "{e}");
    let extra = fx.disks[0].with_file_name("disk-extra");
    store.add_disk(&extra).unwrap();
    assert_eq!(store.status().unwrap().disks.len(), 6);
    let moved = store.remove_disk(&fx.disks[0]).unwrap();
    assert!(moved > 0);
    let left: Vec<_> = std::fs::read_dir(&fx.disks[0])
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".vol") || n.contains(".s"))
        .collect();
    assert!(left.is_empty(), "the removed disk still holds {left:?}");
    for i in 0..60 {
        assert_eq!(
            read(&store, i).await.unwrap(),
            content(i),
            "object {i} after disk remove"
        );
    }
    // New data never goes to the removed disk; scrub finds full redundancy.
    for i in 60..70 {
        store
            .put(
                &format!("obj/{i:04}"),
                content(i).into(),
                PutOptions::default(),
            )
            .await
            .unwrap();
    }
    store.place_now(|_| {}).unwrap();
    let p = store.scrub_now(|_| {}).unwrap();
    assert_eq!(
        (p.counters["bad"], p.counters["unrepairable"]),
        (0, 0),
        "{p:?}"
    );
    store.close().unwrap();
    let store = LocalStore::open(&fx.root).unwrap();
    let st = store.status().unwrap();
    assert!(st.disks[0].removed && !st.disks[0].online, "{st:?}");
    assert!(
        st.warnings.is_empty(),
        "a removed disk is not a problem: {:?}",
        st.warnings
    );
    for i in 0..70 {
        assert_eq!(
            read(&store, i).await.unwrap(),
            content(i),
            "object {i} after reopen"
        );
    }
    assert!(std::fs::read_dir(&fx.disks[0])
        .unwrap()
        .flatten()
        .all(|e| !e.file_name().to_string_lossy().ends_with(".vol")));
}
