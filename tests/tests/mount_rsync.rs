//! rsync through a real mount: the exact per-file syscall sequence `rsync -a` makes, on many
//! files at once and checked after a remount (a setattr that returned must be in the store,
//! not only in the mount's memory), and a `rsync -a` + `rsync -anc` round trip that must find
//! nothing left to do, before and after a remount.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::thread;

use nix::sys::stat::{fchmod, utimensat, Mode, UtimensatFlags};
use nix::sys::time::TimeSpec;
use objfs_tests::mount_fixture::{run, MountFixture};

const FILES: usize = 10_000;
const THREADS: usize = 8;
/// 2001-09-09T01:46:40Z: far from "now", as rsync sets it from the source.
const MTIME: i64 = 1_000_000_000;

fn content(i: usize) -> Vec<u8> {
    format!("file {i} {}\n", "x".repeat(i % 300)).into_bytes()
}

/// One file the way rsync writes it: create 0600 exclusively, fchmod, write, close, set the
/// times by path, reopen read-only, fchmod to the final mode, close, rename into place.
fn rsync_one(dir: &Path, i: usize) {
    let tmp = dir.join(format!(".f{i}.XXXXXX"));
    let dst = dir.join(format!("f{i}"));
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .unwrap_or_else(|e| panic!("create {}: {e}", tmp.display()));
    fchmod(&f, Mode::from_bits_truncate(0o600)).expect("fchmod 0600");
    f.write_all(&content(i)).expect("write");
    drop(f);
    let t = TimeSpec::new(MTIME + i as i64, 0);
    utimensat(
        nix::fcntl::AT_FDCWD,
        &tmp,
        &t,
        &t,
        UtimensatFlags::NoFollowSymlink,
    )
    .expect("utimensat");
    let r = File::open(&tmp).expect("open read-only");
    fchmod(&r, Mode::from_bits_truncate(0o644)).expect("fchmod 0644");
    drop(r);
    fs::rename(&tmp, &dst).expect("rename");
}

fn check_one(dir: &Path, i: usize) -> Option<String> {
    let p = dir.join(format!("f{i}"));
    let m = match fs::symlink_metadata(&p) {
        Ok(m) => m,
        Err(e) => return Some(format!("f{i}: {e}")),
    };
    let mode = m.permissions().mode() & 0o7777;
    let data = fs::read(&p).unwrap_or_default();
    if mode != 0o644 || m.mtime() != MTIME + i as i64 || data != content(i) {
        return Some(format!(
            "f{i}: mode {mode:o} mtime {} size {}",
            m.mtime(),
            data.len()
        ));
    }
    None
}

fn check_all(dir: &Path) -> Vec<String> {
    (0..FILES).filter_map(|i| check_one(dir, i)).collect()
}

#[test]
fn rsync_sequence_loses_no_setattr() {
    let Some(mut fx) = MountFixture::new("rsync_sequence_loses_no_setattr") else {
        return;
    };
    let dir = fx.path("dst");
    fs::create_dir(&dir).expect("mkdir");
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let dir = dir.clone();
            thread::spawn(move || {
                for i in (t..FILES).step_by(THREADS) {
                    rsync_one(&dir, i);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker");
    }
    let wrong = check_all(&dir);
    assert!(wrong.is_empty(), "before remount: {wrong:?}");
    fx.remount();
    let wrong = check_all(&fx.path("dst"));
    assert!(
        wrong.is_empty(),
        "{} files wrong after remount: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(20)]
    );
}

/// A tree with the attributes rsync -a carries: modes, past mtimes, symlinks, nested and
/// empty directories.
fn make_tree(root: &Path) {
    let modes = [0o644, 0o755, 0o600, 0o444, 0o640, 0o700];
    for d in 0..6 {
        let dir = root.join(format!("d{d}/sub{}", d % 3));
        fs::create_dir_all(&dir).expect("mkdir");
        for f in 0..40 {
            let p = dir.join(format!("file{f}.txt"));
            fs::write(&p, content(d * 100 + f)).expect("write");
            fs::set_permissions(&p, fs::Permissions::from_mode(modes[(d + f) % modes.len()]))
                .expect("chmod");
            let t = TimeSpec::new(MTIME + (d * 1000 + f) as i64, 0);
            utimensat(
                nix::fcntl::AT_FDCWD,
                &p,
                &t,
                &t,
                UtimensatFlags::NoFollowSymlink,
            )
            .expect("utimensat");
        }
        std::os::unix::fs::symlink("file0.txt", dir.join("link")).expect("symlink");
    }
    fs::create_dir_all(root.join("empty/deeper")).expect("mkdir");
    fs::set_permissions(root.join("d1"), fs::Permissions::from_mode(0o750)).expect("chmod dir");
}

/// What `rsync -anc` would still change (itemized), empty when the trees agree.
fn pending(src: &Path, dst: &Path) -> String {
    let s = format!("{}/", src.display());
    let d = format!("{}/", dst.display());
    run("rsync", &["-anci", &s, &d], Path::new("/"))
}

#[test]
fn rsync_round_trip_finds_nothing_to_do() {
    if objfs_tests::mount_fixture::which("rsync").is_none() {
        panic!("rsync is not installed (apt-get install rsync); .ci/run installs it");
    }
    let Some(mut fx) = MountFixture::new("rsync_round_trip_finds_nothing_to_do") else {
        return;
    };
    let src = fx.native_path("src");
    make_tree(&src);
    let dst = fx.path("dst");
    run(
        "rsync",
        &[
            "-a",
            &format!("{}/", src.display()),
            &format!("{}/", dst.display()),
        ],
        Path::new("/"),
    );
    assert_eq!(pending(&src, &dst), "", "right after rsync -a");
    fx.remount();
    let dst = fx.path("dst");
    assert_eq!(pending(&src, &dst), "", "after a remount");
    // And back out of the mount into a fresh native tree.
    let back = fx.native_path("back");
    run(
        "rsync",
        &[
            "-a",
            &format!("{}/", dst.display()),
            &format!("{}/", back.display()),
        ],
        Path::new("/"),
    );
    assert_eq!(pending(&src, &back), "", "out of the mount again");
}
