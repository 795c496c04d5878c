//! The create path through a real mount with the default attribute TTL (1 s), so the kernel
//! caches entries and negative entries as it does for users: a file created and not yet
//! closed is listed, renamed and unlinked like any other; a file created and closed without a
//! write is an empty file after a remount; names the mount knows absent come back as soon as
//! they are made.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::time::Duration;

use objfs_tests::mount_fixture::{run, MountFixture};

fn cached() -> objfs_fs::FsConfig {
    objfs_fs::FsConfig {
        attr_ttl: Duration::from_secs(1),
        ..MountFixture::default_config()
    }
}

fn names(out: &str) -> Vec<String> {
    out.lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn created_files_are_listed_renamed_and_unlinked_before_close() {
    let Some(fx) = MountFixture::with_config("created_files_before_close", cached()) else {
        return;
    };
    fs::create_dir(fx.path("d")).unwrap();
    let mut a = fs::File::create(fx.path("d/a")).unwrap();
    let mut gone = fs::File::create(fx.path("d/gone")).unwrap();
    let empty = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .open(fx.path("d/empty"))
        .unwrap();
    assert_eq!(
        names(&run("ls", &["-1", "d"], &fx.mountpoint)),
        ["a", "empty", "gone"]
    );
    // O_EXCL sees a name that is only in this mount so far.
    let again = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(fx.path("d/a"));
    assert_eq!(again.unwrap_err().kind(), std::io::ErrorKind::AlreadyExists);
    // Rename and unlink while open.
    fs::rename(fx.path("d/a"), fx.path("d/b")).unwrap();
    fs::remove_file(fx.path("d/gone")).unwrap();
    assert_eq!(
        names(&run("ls", &["-1", "d"], &fx.mountpoint)),
        ["b", "empty"]
    );
    a.write_all(b"written after the rename").unwrap();
    gone.write_all(b"never seen").unwrap();
    // A directory holding a file not closed yet is not empty.
    let err = fs::remove_dir(fx.path("d")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOTEMPTY));
    drop(a);
    drop(gone);
    drop(empty);
    assert_eq!(
        fs::read(fx.path("d/b")).unwrap(),
        b"written after the rename"
    );
    assert!(!fx.path("d/a").exists());
    assert!(!fx.path("d/gone").exists());
    let mut fx = fx;
    fx.remount();
    assert_eq!(
        names(&run("ls", &["-1", "d"], &fx.mountpoint)),
        ["b", "empty"]
    );
    let m = fs::metadata(fx.path("d/empty")).unwrap();
    assert_eq!((m.len(), m.permissions().mode() & 0o777), (0, 0o640));
    assert_eq!(
        fs::read(fx.path("d/b")).unwrap(),
        b"written after the rename"
    );
}

#[test]
fn absent_names_come_back_when_made() {
    let Some(fx) = MountFixture::with_config("absent_names_come_back", cached()) else {
        return;
    };
    fs::create_dir(fx.path("d")).unwrap();
    // Negative lookups (cached by the kernel and the mount for the TTL)...
    for name in ["f", "g", "sub", "ln"] {
        assert!(fs::symlink_metadata(fx.path("d").join(name)).is_err());
    }
    // ...then each name is made at once, with every kind of entry.
    fs::write(fx.path("d/f"), b"file").unwrap();
    fs::File::create(fx.path("d/g")).unwrap();
    fs::create_dir(fx.path("d/sub")).unwrap();
    std::os::unix::fs::symlink("f", fx.path("d/ln")).unwrap();
    assert_eq!(fs::read(fx.path("d/f")).unwrap(), b"file");
    assert_eq!(fs::read(fx.path("d/ln")).unwrap(), b"file");
    assert_eq!(fs::metadata(fx.path("d/g")).unwrap().len(), 0);
    assert!(fs::metadata(fx.path("d/sub")).unwrap().is_dir());
    // Unlinked, then absent, then made again; renamed away, then its old name is free.
    fs::remove_file(fx.path("d/f")).unwrap();
    assert!(fs::metadata(fx.path("d/f")).is_err());
    fs::write(fx.path("d/f"), b"again").unwrap();
    assert_eq!(fs::read(fx.path("d/f")).unwrap(), b"again");
    fs::rename(fx.path("d/f"), fx.path("d/h")).unwrap();
    assert!(fs::metadata(fx.path("d/f")).is_err());
    fs::write(fx.path("d/f"), b"third").unwrap();
    assert_eq!(fs::read(fx.path("d/h")).unwrap(), b"again");
    assert_eq!(fs::read(fx.path("d/f")).unwrap(), b"third");
    // The directory's mtime follows its entries, without waiting for the lazy write.
    let stamp = |m: &fs::Metadata| (m.mtime(), m.mtime_nsec());
    let before = stamp(&fs::metadata(fx.path("d")).unwrap());
    std::thread::sleep(Duration::from_millis(1100));
    fs::write(fx.path("d/late"), b"x").unwrap();
    // Past the kernel's attribute TTL: the mount answers.
    std::thread::sleep(Duration::from_millis(1100));
    let after = fs::metadata(fx.path("d")).unwrap();
    assert!(stamp(&after) > before, "{:?} > {before:?}", stamp(&after));
    assert!(after.mtime() as u64 + 5 >= now_secs());
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
