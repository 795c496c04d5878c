//! A real FUSE mount over a failing store: [`FaultStore`] (objfs-store's `testing` feature)
//! over an in-memory store, driven by shell tools and plain syscalls.
//!
//! What must hold whatever the store does: a slow or throttled store only makes work slower;
//! a failing write makes the syscall fail with EIO (never a success that was not kept); what
//! was acknowledged before is never lost; a read never returns bytes the file does not hold
//! (a short, long or broken body is EIO); and once the faults stop the same mount works
//! again. The filesystem does not retry a failed store operation itself: retries are the
//! backend's (the S3 client's, tested against a failing HTTP server in `s3_faults.rs`), so an
//! injected transient failure reaches the caller once, and the caller's retry succeeds.
//!
//! Each test mounts its own store and always unmounts ([`FaultMount`]'s `Drop`).

use std::fs;
use std::io::Write;
use std::os::fd::IntoRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use objfs_fs::{FsConfig, MountHandle};
use objfs_store::fault::{Fault, FaultStore, Op, Rule};
use objfs_store::memory::MemoryStore;
use objfs_store::ObjectStore;
use objfs_tests::det_bytes;
use objfs_tests::mount_fixture::{
    compare_files, mount_and_wait, skip_without_fuse, unmount_quietly, MountFixture,
};
use tempfile::TempDir;

/// A mount over a [`FaultStore`] around a memory store; unmounted on drop.
struct FaultMount {
    faults: Arc<FaultStore>,
    mnt: PathBuf,
    native: PathBuf,
    cfg: FsConfig,
    handle: Option<MountHandle>,
    _dir: TempDir,
}

impl FaultMount {
    fn new(test: &str) -> Option<FaultMount> {
        if skip_without_fuse(test) {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("objfs-faults-")
            .tempdir()
            .expect("a temporary directory");
        let mnt = dir.path().join("mnt");
        let native = dir.path().join("native");
        fs::create_dir(&mnt).expect("mkdir mnt");
        fs::create_dir(&native).expect("mkdir native");
        let inner: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
        let cfg = FsConfig {
            // Several parts per large file, so that uploads are multipart.
            part_size: 1 << 20,
            ..MountFixture::default_config()
        };
        let mut m = FaultMount {
            faults: Arc::new(FaultStore::new(inner)),
            mnt,
            native,
            cfg,
            handle: None,
            _dir: dir,
        };
        m.mount();
        Some(m)
    }

    fn mount(&mut self) {
        let store: Arc<dyn ObjectStore> = self.faults.clone();
        self.handle = Some(mount_and_wait(store, &self.mnt, self.cfg.clone()));
    }

    /// Unmounts (which finishes what it can) and mounts the same store again: nothing of the
    /// first mount's caches is left.
    fn remount(&mut self) {
        unmount_quietly(self.handle.take(), &self.mnt);
        self.mount();
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }
}

impl Drop for FaultMount {
    fn drop(&mut self) {
        self.faults.clear();
        unmount_quietly(self.handle.take(), &self.mnt);
    }
}

/// Runs `sh -c script` in `cwd`; its success and stderr.
fn sh(script: &str, cwd: &Path) -> (bool, String) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(cwd)
        .output()
        .expect("run sh");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A tree of small files and one of 5 MiB (several parts) under `root`.
fn make_tree(root: &Path) {
    for d in 0..3 {
        let dir = root.join(format!("d{d}"));
        fs::create_dir_all(&dir).expect("mkdir");
        for f in 0..4 {
            fs::write(
                dir.join(format!("f{f}")),
                det_bytes(d * 10 + f, 3000 * f as usize),
            )
            .expect("write");
        }
    }
    fs::write(root.join("big.bin"), det_bytes(99, 5 << 20)).expect("write big");
}

/// Every file of the native tree reads back the same through the mount.
fn assert_tree_reads_back(m: &FaultMount, rel: &str) {
    for d in 0..3 {
        for f in 0..4 {
            let p = format!("d{d}/f{f}");
            compare_files(&m.native.join(&p), &m.path(&format!("{rel}/{p}")));
        }
    }
    compare_files(
        &m.native.join("big.bin"),
        &m.path(&format!("{rel}/big.bin")),
    );
}

/// Writes `data` into a new file and closes it, returning close's error too (`fs::write`
/// drops the file and so ignores it): a version is made at close.
fn write_and_close(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = fs::File::create(path)?;
    f.write_all(data)?;
    let fd = f.into_raw_fd();
    // SAFETY: `fd` was just taken out of the File, which no longer owns it.
    if unsafe { libc::close(fd) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The errno of a failed `io::Result`.
fn errno<T: std::fmt::Debug>(r: std::io::Result<T>) -> i32 {
    match r {
        Ok(v) => panic!("expected a failure, got {v:?}"),
        Err(e) => e.raw_os_error().unwrap_or(-1),
    }
}

#[test]
fn slow_store_only_makes_work_slower() {
    let Some(mut m) = FaultMount::new("slow_and_throttled_store_only_makes_work_slower") else {
        return;
    };
    make_tree(&m.native);
    // Every data operation answers late (a slow or throttling endpoint).
    for op in [
        Op::Put,
        Op::UploadPart,
        Op::CompleteMultipart,
        Op::Get,
        Op::Head,
        Op::List,
    ] {
        m.faults
            .add(Rule::always(op, Fault::Delay(Duration::from_millis(15))));
    }
    let (ok, err) = sh(
        &format!("cp -r {}/. {}/copy", m.native.display(), m.mnt.display()),
        &m.mnt,
    );
    assert!(ok, "cp -r on a slow store failed: {err}");
    assert_tree_reads_back(&m, "copy");
    assert!(m.faults.injected() > 20, "delays were injected");
    m.faults.clear();
    m.remount();
    assert_tree_reads_back(&m, "copy");
}

/// Persistent write failures of each kind: every change fails with EIO while they last,
/// reads of what was acknowledged before go on, nothing acknowledged is lost, and the mount
/// works again once they stop.
#[test]
fn failing_writes_fail_cleanly_and_lose_nothing() {
    let Some(mut m) = FaultMount::new("failing_writes_fail_cleanly_and_lose_nothing") else {
        return;
    };
    make_tree(&m.native);
    let (ok, err) = sh(
        &format!("cp -r {}/. {}/kept", m.native.display(), m.mnt.display()),
        &m.mnt,
    );
    assert!(ok, "cp -r: {err}");
    let faults = [
        Fault::Fail { retryable: true },
        Fault::Fail { retryable: false },
        Fault::Throttle,
        Fault::FailAfter { retryable: true },
    ];
    for (i, fault) in faults.iter().enumerate() {
        write_and_close(&m.path(&format!("victim{i}a")), b"victim a").expect("write victim");
        write_and_close(&m.path(&format!("victim{i}b")), b"victim b").expect("write victim");
        m.faults.add_all(Op::WRITES, fault.clone());
        // A large copy: its parts or its completion fail, and so does cp.
        let (ok, _) = sh(
            &format!(
                "cp {}/big.bin {}/lost{i}.bin",
                m.native.display(),
                m.mnt.display()
            ),
            &m.mnt,
        );
        assert!(
            !ok,
            "{fault:?}: cp of a large file succeeded on a failing store"
        );
        // A small write fails at close with EIO; so do mkdir, rename and unlink.
        let small = m.path(&format!("small{i}"));
        assert_eq!(
            errno(write_and_close(&small, b"not kept")),
            libc::EIO,
            "{fault:?}: close"
        );
        assert_eq!(errno(fs::create_dir(m.path(&format!("dir{i}")))), libc::EIO);
        let (a, moved) = (m.path(&format!("victim{i}a")), m.path(&format!("moved{i}")));
        assert_eq!(
            errno(fs::rename(&a, &moved)),
            libc::EIO,
            "{fault:?}: rename"
        );
        let b = m.path(&format!("victim{i}b"));
        assert_eq!(errno(fs::remove_file(&b)), libc::EIO, "{fault:?}: unlink");
        // What was acknowledged before reads back while writes fail.
        assert_tree_reads_back(&m, "kept");
        m.faults.clear();
        // The same mount works again.
        let after = m.path(&format!("after{i}"));
        write_and_close(&after, format!("after {i}").as_bytes()).expect("write after");
        assert_eq!(
            fs::read(&after).expect("read after"),
            format!("after {i}").as_bytes()
        );
    }
    m.remount();
    assert_tree_reads_back(&m, "kept");
    for (i, fault) in faults.iter().enumerate() {
        assert_eq!(
            fs::read_to_string(m.path(&format!("after{i}"))).expect("read after remount"),
            format!("after {i}")
        );
        // A failed change did not happen. One whose answer was lost did: a copy that failed
        // part way may then have left a version of the bytes cp had written (a prefix of the
        // source), never other bytes.
        let lost_answer = matches!(fault, Fault::FailAfter { .. });
        if let Ok(data) = fs::read(m.path(&format!("lost{i}.bin"))) {
            assert!(lost_answer, "{fault:?}: a failed copy left lost{i}.bin");
            let source = fs::read(m.native.join("big.bin")).expect("read the source");
            assert!(
                source.starts_with(&data),
                "{fault:?}: lost{i}.bin ({} bytes) is not a prefix of the source",
                data.len()
            );
        }
        if let Ok(data) = fs::read(m.path(&format!("small{i}"))) {
            assert!(lost_answer, "{fault:?}: small{i} kept");
            assert_eq!(data, b"not kept");
        }
        let a = fs::read(m.path(&format!("victim{i}a")));
        let moved = fs::read(m.path(&format!("moved{i}")));
        match (a, moved) {
            (Ok(d), Err(_)) => assert_eq!(d, b"victim a"),
            (Err(_), Ok(d)) if lost_answer => assert_eq!(d, b"victim a"),
            other => panic!("{fault:?}: after a failed rename: {other:?}"),
        }
        match fs::read(m.path(&format!("victim{i}b"))) {
            Ok(d) => assert_eq!(d, b"victim b"),
            Err(e) => assert!(
                lost_answer,
                "{fault:?}: a failed unlink removed the file: {e}"
            ),
        }
    }
}

/// A store that fails a few times, then works: each failure reaches the caller once as EIO
/// (the filesystem does not retry above the backend), and the caller's retry succeeds.
#[test]
fn transient_failures_then_success() {
    let Some(mut m) = FaultMount::new("transient_failures_then_success") else {
        return;
    };
    make_tree(&m.native);
    fs::create_dir(m.path("copy")).expect("mkdir copy");
    // The first put (a directory's marker) is throttled, a later one fails, and so does the
    // third part of the large file's background upload.
    m.faults.add(Rule::times(Op::Put, Fault::Throttle, 1));
    m.faults
        .add(Rule::times(Op::Put, Fault::Fail { retryable: true }, 1).after(4));
    m.faults
        .add(Rule::times(Op::UploadPart, Fault::Fail { retryable: true }, 1).after(2));
    let copy = format!("cp -r {}/. {}/copy", m.native.display(), m.mnt.display());
    let (first, _) = sh(&copy, &m.mnt);
    assert!(!first, "the first copy met the injected failures");
    let injected = m.faults.injected();
    assert!(injected >= 2, "only {injected} failures were injected");
    let (ok, err) = sh(&copy, &m.mnt);
    assert!(ok, "the retried copy failed: {err}");
    assert_tree_reads_back(&m, "copy");
    m.remount();
    assert_tree_reads_back(&m, "copy");
}

/// Reads whose body comes back wrong (short, long, broken off) fail with EIO: never data.
/// Once the store answers right again, the same file reads back whole.
#[test]
fn bad_read_bodies_are_errors_never_data() {
    let Some(mut m) = FaultMount::new("bad_read_bodies_are_errors_never_data") else {
        return;
    };
    let data = det_bytes(5, (3 << 20) + 123);
    let native = m.native.join("f.bin");
    fs::write(&native, &data).expect("write native");
    write_and_close(&m.path("f.bin"), &data).expect("write through the mount");
    for fault in [Fault::ShortBody, Fault::LongBody, Fault::BrokenBody] {
        // A fresh mount: nothing of the file is cached.
        m.remount();
        m.faults.add(Rule::always(Op::Get, fault.clone()));
        assert_eq!(errno(fs::read(m.path("f.bin"))), libc::EIO, "{fault:?}");
        // A read of a range inside the file fails too, and never returns other bytes.
        let f = fs::File::open(m.path("f.bin")).expect("open");
        let mut buf = vec![0u8; 8192];
        match f.read_at(&mut buf, 2 << 20) {
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EIO), "{fault:?}"),
            Ok(n) => assert_eq!(&buf[..n], &data[(2 << 20)..(2 << 20) + n], "{fault:?}"),
        }
        drop(f);
        m.faults.clear();
        // The failed reads left nothing wrong in the cache.
        compare_files(&native, &m.path("f.bin"));
    }
}
