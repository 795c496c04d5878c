//! A bucket on a three-node Garage cluster (replication factor 3, the default consistency
//! mode: writes need two of three nodes) mounted with objfs; one node is killed with SIGKILL
//! while `cp -r` copies some 40 MiB into the mount. The copy must complete (the mount goes on
//! with two nodes) and read back byte for byte, before and after a remount.
//!
//! The mount talks to the first node's S3 endpoint; the node killed is another one (losing the
//! endpoint itself is losing the server, which `s3_faults.rs` covers). The cluster is this
//! test's own ([`GarageCluster`], from `OBJFS_TEST_GARAGE_BIN`, which `scripts/test` sets; the
//! test is skipped loudly without it), and every process it starts (nodes, mount, cp) is
//! stopped by a guard, also when the test fails.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use objfs_fs::MountHandle;
use objfs_store::s3::{S3Config, S3Store};
use objfs_store::ObjectStore;
use objfs_tests::det_bytes;
use objfs_tests::garage_cluster::{garage_binary, GarageCluster};
use objfs_tests::mount_fixture::{
    compare_files, mount_and_wait, skip_without_fuse, unmount_quietly, MountFixture,
};

/// A mount of the cluster's bucket through node 0, unmounted on drop. Its runtime opened the
/// store and lives as long as the mount.
struct ClusterMount {
    mnt: PathBuf,
    handle: Option<MountHandle>,
    _rt: tokio::runtime::Runtime,
}

impl ClusterMount {
    fn new(cluster: &GarageCluster, mnt: &Path) -> ClusterMount {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let mut cfg = S3Config::from_url(&format!("s3://{}", cluster.bucket)).expect("the url");
        cfg.endpoint = Some(cluster.endpoint(0));
        cfg.region = Some(GarageCluster::REGION.into());
        cfg.profile = Some(GarageCluster::PROFILE.into());
        cfg.credentials_file = Some(cluster.credentials.clone());
        // A layout just applied takes a moment to reach every node: open until it answers.
        let start = Instant::now();
        let store = loop {
            match rt.block_on(S3Store::open(cfg.clone())) {
                Ok(s) => break s,
                Err(e) if start.elapsed() < Duration::from_secs(30) => {
                    eprintln!("opening the bucket: {e} (trying again)");
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => panic!("open the bucket: {e}"),
            }
        };
        let store: Arc<dyn ObjectStore> = Arc::new(store);
        let handle = mount_and_wait(store, mnt, MountFixture::default_config());
        ClusterMount {
            mnt: mnt.to_path_buf(),
            handle: Some(handle),
            _rt: rt,
        }
    }
}

impl Drop for ClusterMount {
    fn drop(&mut self) {
        unmount_quietly(self.handle.take(), &self.mnt);
    }
}

/// A child process killed on drop (the `cp` that a failing test leaves behind).
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Ten files of 4 MiB (each below the part size: one PutObject at close) and twenty small
/// ones: about 40 MiB.
fn make_tree(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for i in 0..10u64 {
        let p = PathBuf::from(format!("big{i:02}.bin"));
        fs::write(root.join(&p), det_bytes(i, 4 << 20)).expect("write");
        files.push(p);
    }
    fs::create_dir(root.join("small")).expect("mkdir");
    for i in 0..20u64 {
        let p = PathBuf::from(format!("small/s{i:02}.txt"));
        fs::write(root.join(&p), det_bytes(100 + i, 1000 + i as usize * 37)).expect("write");
        files.push(p);
    }
    files
}

fn assert_copied(native: &Path, copy: &Path, files: &[PathBuf]) {
    for f in files {
        compare_files(&native.join(f), &copy.join(f));
    }
}

#[test]
fn node_killed_during_a_copy_loses_nothing() {
    const TEST: &str = "node_killed_during_a_copy_loses_nothing";
    if skip_without_fuse(TEST) {
        return;
    }
    let Some(bin) = garage_binary(TEST) else {
        return;
    };
    let mut cluster = GarageCluster::start(&bin, 3, 3, "objfs-cluster");
    let dir = tempfile::Builder::new()
        .prefix("objfs-cluster-test-")
        .tempdir()
        .expect("a temporary directory");
    let native = dir.path().join("native");
    let mnt = dir.path().join("mnt");
    fs::create_dir(&native).expect("mkdir");
    fs::create_dir(&mnt).expect("mkdir");
    let files = make_tree(&native);

    let mount = ClusterMount::new(&cluster, &mnt);
    let copy = mnt.join("copy");
    let mut cp = Reaped(
        Command::new("cp")
            .arg("-r")
            .arg(&native)
            .arg(&copy)
            .spawn()
            .expect("start cp"),
    );
    // Kill a node once the copy is under way: its first files are in the bucket.
    let start = Instant::now();
    loop {
        let done = fs::read_dir(&copy).map(|d| d.count()).unwrap_or(0);
        if done >= 3 {
            break;
        }
        assert!(
            cp.0.try_wait().expect("cp's status").is_none(),
            "cp ended before a node could be killed"
        );
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "the copy made no progress"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        cp.0.try_wait().expect("cp's status").is_none(),
        "cp ended before a node could be killed"
    );
    cluster.kill(2);
    eprintln!("{TEST}: node 2 killed after {:?}", start.elapsed());
    let status = cp.0.wait().expect("wait for cp");
    assert!(
        status.success(),
        "cp -r failed after a node was killed ({status}); node 0's log:\n{}",
        cluster.log_tail(0)
    );
    eprintln!("{TEST}: copy done after {:?}", start.elapsed());
    assert_copied(&native, &copy, &files);

    // A fresh mount (new store, empty caches) reads the same bytes from the two nodes left.
    drop(mount);
    let _mount = ClusterMount::new(&cluster, &mnt);
    assert_copied(&native, &copy, &files);
}
