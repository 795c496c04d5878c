//! The disk cache of s3 mounts (`--cache-dir DIR --cache-size SIZE`) on the test servers
//! `scripts/test` starts (moto, versioned, and Garage, without versioning):
//!
//! * through the filesystem core: an object overwritten by another writer (the same size, so
//!   only its ETag differs; on Garage its version id stays `null`) is never read from the
//!   cache as its old bytes, by the same core or a new one, before or after a remount of the
//!   cache;
//! * through the real `objfs` binary: a remount reads from the cache (status counts the hits),
//!   `objfs status` shows the cache, a second mount of the same cache directory is refused,
//!   and a local store refuses `--cache-dir`.
//!
//! Skipped loudly, by name, when the endpoint variables are unset. Mounts always unmount
//! ([`DaemonMount`] does in `Drop`).

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use objfs_fs::diskcache::{DiskCache, DiskCacheHandle};
use objfs_fs::{FsConfig, ObjFs};
use objfs_store::{Body, ObjectStore, PutOptions};
use objfs_tests::daemon_mount::{objfs_binary, DaemonMount};
use objfs_tests::mount_fixture::skip_without_fuse;
use objfs_tests::s3_fixture::{self, Server};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

fn all_servers(test: &str) -> Vec<Server> {
    let all: Vec<Server> = [s3_fixture::moto(), s3_fixture::garage()]
        .into_iter()
        .flatten()
        .collect();
    if all.is_empty() {
        eprintln!("{test}: SKIPPED: no S3 test server (run it with scripts/test)");
    }
    all
}

/// The whole file `name` in the root, read through `fs` with a new handle.
async fn read_all(fs: &ObjFs, name: &str) -> Vec<u8> {
    let ino = fs.lookup(1, OsStr::new(name)).await.expect("lookup").ino;
    let fh = fs.open(ino, libc::O_RDONLY).await.expect("open");
    let mut out = Vec::new();
    loop {
        let b = fs
            .read(ino, fh, out.len() as u64, 256 * 1024)
            .await
            .expect("read");
        if b.is_empty() {
            break;
        }
        out.extend_from_slice(&b);
    }
    fs.release(ino, fh).await.expect("release");
    out
}

fn core(store: &Arc<dyn ObjectStore>, disk: &Arc<DiskCache>) -> Arc<ObjFs> {
    ObjFs::new(
        store.clone(),
        FsConfig {
            disk_cache: Some(DiskCacheHandle(disk.clone())),
            attr_ttl: Duration::ZERO,
            ..FsConfig::default()
        },
    )
}

/// Waits until readahead's background writes have reached the disk cache.
async fn settle(disk: &DiskCache, blocks: u64) {
    for _ in 0..500 {
        if disk.stats().blocks >= blocks {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "the disk cache holds {:?}, not {blocks} blocks",
        disk.stats()
    );
}

#[test]
fn an_overwrite_by_another_writer_is_never_read_from_the_cache() {
    for server in all_servers("an_overwrite_by_another_writer_is_never_read_from_the_cache") {
        let name = server.name;
        let tmp = tempfile::tempdir().expect("tempdir");
        let rt = rt();
        rt.block_on(async {
            let (_, s3) = server.fresh_bucket("cache-overwrite").await;
            let store: Arc<dyn ObjectStore> = Arc::new(s3);
            // Three blocks; both contents the same size, so only the ETag tells them apart.
            let old = objfs_tests::det_bytes(1, (2 << 20) + 4321);
            let new = objfs_tests::det_bytes(2, old.len());
            let put =
                |d: &Vec<u8>| store.put("f.bin", Body::from(d.clone()), PutOptions::default());
            put(&old).await.expect("put the old bytes");
            let disk = Arc::new(DiskCache::open(tmp.path(), 1 << 30).expect("cache"));
            let a = core(&store, &disk);
            assert!(read_all(&a, "f.bin").await == old, "{name}: first read");
            settle(&disk, 3).await;
            // A new core reads the old bytes from disk only.
            let b = core(&store, &disk);
            assert!(read_all(&b, "f.bin").await == old, "{name}: cached read");
            assert_eq!(disk.stats().hits, 3, "{name}: {:?}", disk.stats());

            // Another machine overwrites the object.
            let info = put(&new).await.expect("put the new bytes");
            if !server.versioned {
                assert!(info.version.is_null(), "{name}: {info:?}");
            }
            let before = disk.stats();
            assert!(
                read_all(&a, "f.bin").await == new,
                "{name}: core a after overwrite"
            );
            // a's read fills the new blocks (in the background): wait for them, so that b and
            // the fresh core both read them from disk (the count is then exact).
            for _ in 0..500 {
                if disk.stats().fills >= before.fills + 3 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(
                disk.stats().hits,
                before.hits,
                "{name}: the old blocks are never hits for the new version"
            );
            let hits = before.hits;
            assert!(
                read_all(&b, "f.bin").await == new,
                "{name}: core b after overwrite"
            );
            let fresh = core(&store, &disk);
            assert!(read_all(&fresh, "f.bin").await == new, "{name}: new core");
            assert_eq!(
                disk.stats().hits - hits,
                6,
                "{name}: only the new blocks hit, for b and for the fresh core"
            );

            // A remount of the cache keeps the new bytes, and never the old ones.
            drop((a, b, fresh));
            // Background fills of the dropped cores may still hold the cache (and its lock)
            // for a moment, as a process that is exiting would.
            for _ in 0..500 {
                if Arc::strong_count(&disk) == 1 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            drop(disk);
            let disk = Arc::new(DiskCache::open(tmp.path(), 1 << 30).expect("reopen"));
            let c = core(&store, &disk);
            assert!(read_all(&c, "f.bin").await == new, "{name}: after remount");
            assert_eq!(disk.stats().hits, 3, "{name}: {:?}", disk.stats());
            put(&old).await.expect("put the old bytes again");
            assert!(read_all(&c, "f.bin").await == old, "{name}: back to old");
        });
    }
}

fn objfs(args: &[&str]) -> std::process::Output {
    Command::new(objfs_binary())
        .args(args)
        .output()
        .expect("run objfs")
}

/// `objfs status s3://bucket --json` of a mounted bucket.
fn status_json(server: &Server, bucket: &str) -> serde_json::Value {
    let mut args = vec![
        "status".to_string(),
        format!("s3://{bucket}"),
        "--json".into(),
    ];
    args.extend(server.cli_args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = objfs(&args);
    assert!(
        out.status.success(),
        "objfs status: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("status json")
}

fn mount_with_cache(server: &Server, bucket: &str, dir: &Path, cache: &Path) -> DaemonMount {
    let mut args = server.cli_args();
    args.extend(["--cache-dir".to_string(), cache.display().to_string()]);
    args.extend(["--cache-size".to_string(), "64M".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    DaemonMount::start_source(
        &format!("s3://{bucket}"),
        &dir.join("mnt"),
        &args,
        &dir.join("mnt.log"),
    )
}

#[test]
fn a_mount_with_a_cache_dir_reads_from_it_after_a_remount() {
    if skip_without_fuse("a_mount_with_a_cache_dir_reads_from_it_after_a_remount") {
        return;
    }
    for server in all_servers("a_mount_with_a_cache_dir_reads_from_it_after_a_remount") {
        let name = server.name;
        let tmp = tempfile::tempdir().expect("tempdir");
        let cache = tmp.path().join("cache");
        let rt = rt();
        let (bucket, store) = rt.block_on(server.fresh_bucket("cache-mount"));
        let data = objfs_tests::det_bytes(5, (3 << 20) + 99);
        let mut m = mount_with_cache(&server, &bucket, tmp.path(), &cache);
        let path = m.mountpoint.join("big.bin");
        std::fs::write(&path, &data).expect("write");
        m.stop();

        let mut m = mount_with_cache(&server, &bucket, tmp.path(), &cache);
        assert!(std::fs::read(&path).expect("cold read") == data, "{name}");
        // The blocks read reach the cache in the background: wait for all 4 (not a timed
        // assertion: a generous bound, then the checks below say what is missing).
        let mut v = status_json(&server, &bucket);
        for _ in 0..200 {
            if v["cache"]["blocks"].as_u64() >= Some(4) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
            v = status_json(&server, &bucket);
        }
        let c = &v["cache"];
        assert_eq!(c["enabled"], true, "{name}: {v}");
        assert_eq!(c["limit_bytes"], 64 << 20, "{name}: {v}");
        assert_eq!(
            Path::new(c["dir"].as_str().unwrap_or("")),
            cache.canonicalize().expect("cache dir"),
            "{name}: {v}"
        );
        assert!(c["misses"].as_u64() >= Some(4), "{name}: {v}");
        assert!(c["used_bytes"].as_u64() > Some(3 << 20), "{name}: {v}");
        // Another bucket mounted with the same cache directory is refused.
        let (other, _) = rt.block_on(server.fresh_bucket("cache-other"));
        let mut args = vec![
            "mount".to_string(),
            format!("s3://{other}"),
            tmp.path().join("mnt2").display().to_string(),
            "--cache-dir".into(),
            cache.display().to_string(),
        ];
        args.extend(server.cli_args());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = objfs(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains("in use by another mount"), "{name}: {err}");
        m.stop();

        // A remount reads every block from the cache.
        let mut m = mount_with_cache(&server, &bucket, tmp.path(), &cache);
        assert!(std::fs::read(&path).expect("warm read") == data, "{name}");
        let v = status_json(&server, &bucket);
        assert_eq!(v["cache"]["hits"], 4, "{name}: {v}");
        assert_eq!(v["cache"]["misses"], 0, "{name}: {v}");
        let mut args = vec!["status".to_string(), format!("s3://{bucket}")];
        args.extend(server.cli_args());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let text = String::from_utf8_lossy(&objfs(&args).stdout).into_owned();
        assert!(
            text.contains("4 blocks from disk, 0 from the store"),
            "{text}"
        );

        // Overwritten by another writer (same size): the mount reads the new bytes.
        let new = objfs_tests::det_bytes(6, data.len());
        rt.block_on(store.put("big.bin", Body::from(new.clone()), PutOptions::default()))
            .expect("overwrite");
        std::thread::sleep(Duration::from_millis(1500));
        assert!(
            std::fs::read(&path).expect("read") == new,
            "{name}: stale bytes"
        );
        m.stop();
    }
}

#[test]
fn a_local_store_refuses_a_cache_dir() {
    if skip_without_fuse("a_local_store_refuses_a_cache_dir") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = tmp.path().join("store");
    let mp = tmp.path().join("mnt");
    let cache = tmp.path().join("cache");
    let out = objfs(&[
        "mount",
        "--init",
        store.to_str().expect("utf-8"),
        mp.to_str().expect("utf-8"),
        "--cache-dir",
        cache.to_str().expect("utf-8"),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("for remote (s3://) stores"), "{err}");
    assert!(!store.exists() && !cache.exists());
}
