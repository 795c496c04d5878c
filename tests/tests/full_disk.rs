//! A full disk gives a clear `NoSpace` error (ENOSPC through the mount), leaves the store
//! intact, and reads keep working. The disk is a small tmpfs mounted for the test (needs root,
//! which CI has; elsewhere the test says loudly that it did not run).

use std::path::{Path, PathBuf};
use std::process::Command;

use objfs_store::local::{EcSetting, LocalConfig, LocalStore};
use objfs_store::{ErrorKind, GetOptions, ObjectStore, PutOptions};

/// A tmpfs mounted for the life of the value.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test]
async fn full_disk_is_enospc_and_reads_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let Some(fs) = Tmpfs::mount(&dir.path().join("small"), "2m") else {
        eprintln!("SKIPPED full_disk_is_enospc_and_reads_go_on: cannot mount a tmpfs (not root?)");
        return;
    };
    let disk = fs.0.join("disk");
    let cfg = LocalConfig {
        disks: vec![disk],
        replicas: 1,
        ec: EcSetting::Off,
        volume_size: 512 << 10,
        block_size: 4096,
        blob_size: 64 << 10,
        ..Default::default()
    };
    let root = dir.path().join("store");
    let store = LocalStore::init(&root, cfg).unwrap();
    let body = |i: usize| vec![(i % 251) as u8; 100_000];
    let mut written = 0;
    let err = loop {
        match store
            .put(
                &format!("f/{written}"),
                body(written).into(),
                PutOptions::default(),
            )
            .await
        {
            Ok(_) => written += 1,
            Err(e) => break e,
        }
        assert!(written < 100, "a 2 MiB disk cannot hold 10 MB");
    };
    assert_eq!(err.kind(), ErrorKind::NoSpace, "{err}");
    assert_eq!(objfs_fs::error::store_errno(&err), libc::ENOSPC);
    assert!(written >= 5, "only {written} objects fit");
    for i in 0..written {
        let got = store
            .get(&format!("f/{i}"), GetOptions::default())
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert!(got.to_vec() == body(i), "object {i} after the disk filled");
    }
    // Small metadata-only operations still work, and the store closes and reopens intact.
    store.delete("f/0").await.unwrap();
    store.close().unwrap();
    let store = LocalStore::open(&root).unwrap();
    for i in 1..written {
        let got = store
            .get(&format!("f/{i}"), GetOptions::default())
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert!(got.to_vec() == body(i), "object {i} after reopen");
    }
    store.close().unwrap();
    drop(fs);
}
