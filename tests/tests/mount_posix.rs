//! A POSIX behaviour suite of our own, written from POSIX and the Linux man pages (mknod(2),
//! mkfifo(3), unix(7), chown(2), chmod(2), utimensat(2), rename(2), unlink(2), link(2),
//! path_resolution(7)) and run against a real mount, as root and, with `allow_other`, as
//! another user:
//!
//! - special files of every type (FIFO, character and block device, socket, regular file made
//!   by mknod) through create, stat, readdir, chmod, chown, rename, a remount and unlink, and
//!   FIFOs and sockets that carry data (the kernel's business once the inode exists);
//! - a directory's mtime and ctime follow the entries created, removed and renamed in it;
//! - chown clears the set-user-id and set-group-id bits; a write by another user clears them;
//! - paths up to PATH_MAX (keys of up to 4,096 bytes: a 4,095-byte path and its marker), names up to 255 bytes, ENAMETOOLONG past;
//! - access times with relatime rules, explicit atimes stored, `noatime`;
//! - permissions enforced for another user;
//! - hard links: `ln`, `stat -c %h`, writes and chmod through either name, `mv`, `rm`, a remount;
//! - ioctl answered ENOTTY.
//!
//! The rsync sequence (setattr racing release) is in `mount_rsync.rs`.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{SystemTime, UNIX_EPOCH};

use nix::sys::stat::{makedev, mknod, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::mkfifo;
use objfs_fs::FsConfig;
use objfs_tests::mount_fixture::{run, MountFixture};

/// The user the "another user" checks run as.
const NOBODY: u32 = 65534;

fn errno_of(r: std::io::Result<impl Sized>) -> i32 {
    match r {
        Ok(_) => 0,
        Err(e) => e.raw_os_error().unwrap_or(-1),
    }
}

fn nix_errno(r: nix::Result<()>) -> i32 {
    match r {
        Ok(()) => 0,
        Err(e) => e as i32,
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn set_times(p: &Path, atime: Option<i64>, mtime: Option<i64>) {
    let ts = |t: Option<i64>| match t {
        Some(s) => TimeSpec::new(s, 0),
        None => TimeSpec::UTIME_OMIT,
    };
    utimensat(
        nix::fcntl::AT_FDCWD,
        p,
        &ts(atime),
        &ts(mtime),
        UtimensatFlags::NoFollowSymlink,
    )
    .unwrap_or_else(|e| panic!("utimensat {}: {e}", p.display()));
}

/// A mount other users can enter (the fixture's temporary directory is 0700).
fn open_mount(test: &str, cfg: FsConfig) -> Option<MountFixture> {
    let fx = MountFixture::with_config(test, cfg)?;
    fs::set_permissions(fx.root(), fs::Permissions::from_mode(0o755)).expect("chmod tmp");
    fs::set_permissions(&fx.mountpoint, fs::Permissions::from_mode(0o777)).expect("chmod mnt");
    Some(fx)
}

fn shared_config() -> FsConfig {
    FsConfig {
        allow_other: true,
        ..MountFixture::default_config()
    }
}

/// Runs `sh -c script` as `uid`/`gid`; returns its exit code and stderr.
fn sh_as(uid: u32, gid: u32, script: &str) -> (i32, String) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .uid(uid)
        .gid(gid)
        .current_dir("/")
        .output()
        .expect("run sh");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Special {
    Fifo,
    Char,
    Block,
    Socket,
    Regular,
}

impl Special {
    const ALL: [Special; 5] = [
        Special::Fifo,
        Special::Char,
        Special::Block,
        Special::Socket,
        Special::Regular,
    ];

    fn rdev(self) -> u64 {
        match self {
            Special::Char => makedev(1, 3),
            Special::Block => makedev(7, 42),
            _ => 0,
        }
    }

    /// Makes one; a socket's listener is returned so the socket stays bound.
    fn make(self, p: &Path) -> Option<UnixListener> {
        let mode = Mode::from_bits_truncate(0o644);
        let r = match self {
            Special::Fifo => mkfifo(p, mode),
            Special::Char => mknod(p, SFlag::S_IFCHR, mode, self.rdev()),
            Special::Block => mknod(p, SFlag::S_IFBLK, mode, self.rdev()),
            Special::Regular => mknod(p, SFlag::S_IFREG, mode, 0),
            Special::Socket => {
                return Some(
                    UnixListener::bind(p).unwrap_or_else(|e| panic!("bind {}: {e}", p.display())),
                )
            }
        };
        r.unwrap_or_else(|e| panic!("{self:?} {}: {e}", p.display()));
        None
    }

    fn matches(self, t: fs::FileType) -> bool {
        match self {
            Special::Fifo => t.is_fifo(),
            Special::Char => t.is_char_device(),
            Special::Block => t.is_block_device(),
            Special::Socket => t.is_socket(),
            Special::Regular => t.is_file(),
        }
    }
}

fn check_special(kind: Special, p: &Path, perm: u32, uid: u32, gid: u32, when: &str) {
    let m = fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{when}: stat {}: {e}", p.display()));
    assert!(
        kind.matches(m.file_type()),
        "{when}: {} is {:?}, want {kind:?}",
        p.display(),
        m.file_type()
    );
    assert_eq!(
        m.permissions().mode() & 0o7777,
        perm,
        "{when}: mode of {kind:?}"
    );
    assert_eq!((m.uid(), m.gid()), (uid, gid), "{when}: owner of {kind:?}");
    assert_eq!(m.rdev(), kind.rdev(), "{when}: rdev of {kind:?}");
    assert_eq!(m.len(), 0, "{when}: size of {kind:?}");
    let dir = p.parent().expect("parent");
    let name = p.file_name().expect("name");
    let listed = fs::read_dir(dir)
        .expect("readdir")
        .filter_map(Result::ok)
        .find(|e| e.file_name() == name)
        .unwrap_or_else(|| panic!("{when}: {kind:?} not listed"));
    assert!(
        kind.matches(listed.file_type().expect("d_type")),
        "{when}: readdir type of {kind:?}"
    );
}

#[test]
fn special_files_of_every_type() {
    let Some(mut fx) = MountFixture::new("special_files_of_every_type") else {
        return;
    };
    fs::create_dir(fx.path("dev")).expect("mkdir");
    let mut listeners = Vec::new();
    for kind in Special::ALL {
        let p = fx.path(format!("dev/{kind:?}"));
        listeners.extend(kind.make(&p));
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).expect("chmod");
        check_special(kind, &p, 0o640, 0, 0, "made");
        nix::unistd::chown(&p, Some(1234.into()), Some(5678.into())).expect("chown");
        check_special(kind, &p, 0o640, 1234, 5678, "chowned");
        let q = fx.path(format!("dev/{kind:?}-moved"));
        fs::rename(&p, &q).expect("rename");
        assert_eq!(errno_of(fs::symlink_metadata(&p)), libc::ENOENT);
        check_special(kind, &q, 0o640, 1234, 5678, "renamed");
        assert_eq!(
            nix_errno(mknod(
                &q,
                SFlag::S_IFIFO,
                Mode::from_bits_truncate(0o644),
                0
            )),
            libc::EEXIST,
            "mknod over {kind:?}"
        );
    }
    drop(listeners);
    fx.remount();
    for kind in Special::ALL {
        let q = fx.path(format!("dev/{kind:?}-moved"));
        check_special(kind, &q, 0o640, 1234, 5678, "after remount");
        fs::remove_file(&q).expect("unlink");
        assert_eq!(errno_of(fs::symlink_metadata(&q)), libc::ENOENT);
    }
    assert_eq!(fs::read_dir(fx.path("dev")).expect("readdir").count(), 0);
    assert_eq!(
        nix_errno(mkfifo(
            &fx.path("no/such/dir"),
            Mode::from_bits_truncate(0o644)
        )),
        libc::ENOENT
    );
}

#[test]
fn fifos_and_sockets_carry_data() {
    let Some(fx) = MountFixture::new("fifos_and_sockets_carry_data") else {
        return;
    };
    let fifo = fx.path("pipe");
    mkfifo(&fifo, Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let writer = {
        let fifo = fifo.clone();
        thread::spawn(move || {
            let mut w = OpenOptions::new()
                .write(true)
                .open(&fifo)
                .expect("open fifo w");
            w.write_all(b"through the pipe").expect("write fifo");
        })
    };
    let mut got = String::new();
    File::open(&fifo)
        .expect("open fifo r")
        .read_to_string(&mut got)
        .expect("read fifo");
    writer.join().expect("writer");
    assert_eq!(got, "through the pipe");

    let sock = fx.path("sock");
    let listener = UnixListener::bind(&sock).expect("bind");
    let client = {
        let sock = sock.clone();
        thread::spawn(move || {
            let mut s = UnixStream::connect(&sock).expect("connect");
            s.write_all(b"hello socket").expect("send");
        })
    };
    let (mut conn, _) = listener.accept().expect("accept");
    let mut got = String::new();
    conn.read_to_string(&mut got).expect("recv");
    client.join().expect("client");
    assert_eq!(got, "hello socket");
}

/// Sets `dir`'s times into the past, runs `op`, and checks its mtime and ctime moved to now.
fn parent_changes(dir: &Path, what: &str, op: impl FnOnce()) {
    set_times(dir, Some(1_000_000_000), Some(1_000_000_000));
    let before = fs::metadata(dir).expect("stat dir");
    assert_eq!(
        before.mtime(),
        1_000_000_000,
        "{what}: utimens of the directory"
    );
    let start = now_secs() - 2;
    op();
    let after = fs::metadata(dir).expect("stat dir");
    assert!(
        after.mtime() >= start,
        "{what}: mtime of {} not updated",
        dir.display()
    );
    assert!(
        after.ctime() >= start,
        "{what}: ctime of {} not updated",
        dir.display()
    );
}

#[test]
fn directory_times_follow_their_entries() {
    let Some(mut fx) = MountFixture::new("directory_times_follow_their_entries") else {
        return;
    };
    let d = fx.path("d");
    let e = fx.path("e");
    fs::create_dir(&d).expect("mkdir");
    fs::create_dir(&e).expect("mkdir");
    parent_changes(&d, "create", || {
        fs::write(d.join("f"), b"x").expect("create")
    });
    parent_changes(&d, "mkdir", || {
        fs::create_dir(d.join("sub")).expect("mkdir")
    });
    parent_changes(&d, "symlink", || {
        std::os::unix::fs::symlink("f", d.join("l")).expect("symlink")
    });
    parent_changes(&d, "mkfifo", || {
        mkfifo(&d.join("p"), Mode::from_bits_truncate(0o644)).expect("mkfifo")
    });
    parent_changes(&d, "unlink", || {
        fs::remove_file(d.join("l")).expect("unlink")
    });
    parent_changes(&d, "rmdir", || {
        fs::remove_dir(d.join("sub")).expect("rmdir")
    });
    parent_changes(&d, "rename within", || {
        fs::rename(d.join("f"), d.join("g")).expect("rename")
    });
    // A rename between directories changes both.
    set_times(&e, Some(1_000_000_000), Some(1_000_000_000));
    parent_changes(&d, "rename out", || {
        fs::rename(d.join("g"), e.join("g")).expect("rename")
    });
    assert!(
        fs::metadata(&e).expect("stat").mtime() > 1_000_000_000,
        "rename in"
    );
    // An explicit utimens of a directory is kept across a remount.
    set_times(&d, Some(1_200_000_000), Some(1_200_000_000));
    fx.remount();
    assert_eq!(
        fs::metadata(fx.path("d")).expect("stat").mtime(),
        1_200_000_000
    );
}

/// O_TRUNC, ftruncate and a write mark the file's mtime and ctime at once (pjdfstest
/// open/00, ftruncate/00), also while the file is open and its version not made yet, and for
/// a file that was empty already.
#[test]
fn truncate_and_write_mark_mtime_and_ctime() {
    let Some(fx) = MountFixture::new("truncate_and_write_mark_mtime_and_ctime") else {
        return;
    };
    let stamps = |p: &Path| {
        let m = fs::metadata(p).expect("stat");
        ((m.mtime(), m.mtime_nsec()), (m.ctime(), m.ctime_nsec()))
    };
    let later = |what: &str, p: &Path, before: ((i64, i64), (i64, i64))| {
        let after = stamps(p);
        assert!(after.0 > before.0, "{what}: mtime {before:?} -> {after:?}");
        assert!(after.1 > before.1, "{what}: ctime {before:?} -> {after:?}");
    };
    let f = fx.path("f");
    fs::write(&f, b"test\n").expect("write");
    let before = stamps(&f);
    drop(
        OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&f)
            .expect("open O_TRUNC"),
    );
    later("O_TRUNC", &f, before);
    assert_eq!(fs::metadata(&f).expect("stat").len(), 0);
    let before = stamps(&f);
    drop(
        OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&f)
            .expect("open O_TRUNC"),
    );
    later("O_TRUNC of an empty file", &f, before);
    let before = stamps(&f);
    let fh = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&f)
        .expect("open");
    fh.set_len(123).expect("ftruncate");
    later("ftruncate, open", &f, before);
    let before = stamps(&f);
    (&fh).write_all(b"more").expect("write");
    later("write, open", &f, before);
    drop(fh);
    assert_eq!(fs::metadata(&f).expect("stat").len(), 123);
}

#[test]
fn chown_and_foreign_writes_clear_setid_bits() {
    let Some(fx) = open_mount("chown_and_foreign_writes_clear_setid_bits", shared_config()) else {
        return;
    };
    let p = fx.path("prog");
    fs::write(&p, b"#!/bin/sh\n").expect("write");
    fs::set_permissions(&p, fs::Permissions::from_mode(0o6755)).expect("chmod");
    assert_eq!(fs::metadata(&p).expect("stat").mode() & 0o7777, 0o6755);
    nix::unistd::chown(&p, Some(4321.into()), Some(4321.into())).expect("chown");
    let m = fs::metadata(&p).expect("stat");
    assert_eq!(m.mode() & 0o7777, 0o755, "chown clears S_ISUID and S_ISGID");
    assert_eq!((m.uid(), m.gid()), (4321, 4321));

    // A write by a user who is not the owner clears them too.
    let q = fx.path("shared");
    fs::write(&q, b"data").expect("write");
    fs::set_permissions(&q, fs::Permissions::from_mode(0o6777)).expect("chmod");
    let (code, err) = sh_as(NOBODY, NOBODY, &format!("printf more >> '{}'", q.display()));
    assert_eq!(code, 0, "append as nobody: {err}");
    let m = fs::metadata(&q).expect("stat");
    assert_eq!(
        m.mode() & 0o6000,
        0,
        "a write by another user clears the set-id bits"
    );
    assert_eq!(fs::read(&q).expect("read"), b"datamore");

    // S_ISGID without S_IXGRP (mandatory locking) stays; S_ISUID goes.
    let g = fx.path("locking");
    fs::write(&g, b"data").expect("write");
    fs::set_permissions(&g, fs::Permissions::from_mode(0o6746)).expect("chmod");
    let (code, err) = sh_as(NOBODY, NOBODY, &format!("printf x >> '{}'", g.display()));
    assert_eq!(code, 0, "append as nobody: {err}");
    assert_eq!(fs::metadata(&g).expect("stat").mode() & 0o7777, 0o2746);

    // A truncate by another user clears them too.
    let t = fx.path("truncated");
    fs::write(&t, b"data").expect("write");
    fs::set_permissions(&t, fs::Permissions::from_mode(0o6777)).expect("chmod");
    let (code, err) = sh_as(NOBODY, NOBODY, &format!("truncate -s 2 '{}'", t.display()));
    assert_eq!(code, 0, "truncate as nobody: {err}");
    let m = fs::metadata(&t).expect("stat");
    assert_eq!(
        m.mode() & 0o6000,
        0,
        "a truncate by another user clears them"
    );
    assert_eq!(m.len(), 2);

    // Root (CAP_FSETID) keeps them through writes and truncates, as on a local disk.
    let r = fx.path("roots");
    fs::write(&r, b"data").expect("write");
    fs::set_permissions(&r, fs::Permissions::from_mode(0o6755)).expect("chmod");
    let mut fh = OpenOptions::new().append(true).open(&r).expect("open");
    fh.write_all(b"more").expect("write");
    fh.set_len(6).expect("ftruncate");
    drop(fh);
    let m = fs::metadata(&r).expect("stat");
    assert_eq!(
        m.mode() & 0o7777,
        0o6755,
        "root's write keeps the set-id bits"
    );
    assert_eq!(fs::read(&r).expect("read"), b"datamo");
}

/// Runs a Python script that walks into `root` one component at a time (so that no path given
/// to a syscall is longer than PATH_MAX) and prints what it found.
fn deep_walk(root: &Path, script: &str) -> String {
    let prog = format!(
        "import os, errno\nos.chdir({:?})\n\
         def down(names):\n    for n in names:\n        os.chdir(n)\n\
         def try_(f):\n    try:\n        f()\n        return 'ok'\n    except OSError as e:\n        return errno.errorcode[e.errno]\n{script}",
        root.display().to_string()
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(&prog)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn paths_up_to_path_max() {
    let Some(mut fx) = MountFixture::new("paths_up_to_path_max") else {
        return;
    };
    // 19 directories of 200 bytes (3,819 bytes of key with the slashes), then names that bring
    // keys to 4,075 bytes (fine) and past 4,096 bytes (ENAMETOOLONG); 256-byte names never fit.
    let made = deep_walk(
        &fx.mountpoint,
        "for i in range(19):\n    os.mkdir('n' * 200)\n    os.chdir('n' * 200)\n\
         open('f' * 255, 'w').write('deep')\n\
         print(try_(lambda: os.mkdir('x' * 200)), try_(lambda: os.mkdir('x' * 200 + '/' + 'y' * 100)),\n\
               try_(lambda: open('g' * 256, 'w')), try_(lambda: open('x' * 200 + '/' + 'z' * 75, 'w')),\n\
               try_(lambda: os.mkdir('x' * 200 + '/' + 'w' * 75)))",
    );
    // The last two are a file and a directory whose paths are 4,095 bytes: the directory's
    // marker key takes the 4,096th.
    assert_eq!(made, "ok ENAMETOOLONG ENAMETOOLONG ok ok");
    fx.remount();
    let read = deep_walk(
        &fx.mountpoint,
        "down(['n' * 200] * 19)\nprint(open('f' * 255).read(), len(os.listdir('x' * 200)))",
    );
    assert_eq!(read, "deep 2");
}

#[test]
fn access_times_follow_relatime() {
    let Some(mut fx) = MountFixture::new("access_times_follow_relatime") else {
        return;
    };
    let p = fx.path("f");
    fs::write(&p, b"read me").expect("write");
    // An explicit atime is stored and read back, also after a remount.
    set_times(&p, Some(1_100_000_000), Some(1_300_000_000));
    let m = fs::metadata(&p).expect("stat");
    assert_eq!((m.atime(), m.mtime()), (1_100_000_000, 1_300_000_000));
    fx.remount();
    let p = fx.path("f");
    assert_eq!(fs::metadata(&p).expect("stat").atime(), 1_100_000_000);
    // atime older than mtime: a read updates it.
    let start = now_secs() - 2;
    fs::read(&p).expect("read");
    let a1 = fs::metadata(&p).expect("stat").atime();
    assert!(
        a1 >= start,
        "relatime: a read after a write updates atime ({a1})"
    );
    // Newer than mtime and ctime and less than a day old: a read leaves it.
    fs::read(&p).expect("read");
    assert_eq!(
        fs::metadata(&p).expect("stat").atime(),
        a1,
        "relatime: no update"
    );
    // Set into the past (which makes ctime now, as on any filesystem): refreshed by the next
    // read, and the refresh survives a remount.
    set_times(&p, Some(now_secs() - 2 * 86400), None);
    fs::read(&p).expect("read");
    let a3 = fs::metadata(&p).expect("stat").atime();
    assert!(a3 >= start, "relatime: a day-old atime is refreshed");
    fx.remount();
    assert_eq!(fs::metadata(fx.path("f")).expect("stat").atime(), a3);
}

#[test]
fn noatime_never_updates_access_times() {
    let cfg = FsConfig {
        extra_options: vec!["noatime".into()],
        ..MountFixture::default_config()
    };
    let Some(fx) = MountFixture::with_config("noatime_never_updates_access_times", cfg) else {
        return;
    };
    let p = fx.path("f");
    fs::write(&p, b"x").expect("write");
    set_times(&p, Some(1_100_000_000), None);
    fs::read(&p).expect("read");
    assert_eq!(fs::metadata(&p).expect("stat").atime(), 1_100_000_000);
}

#[test]
fn another_user_meets_the_permissions() {
    let Some(fx) = open_mount("another_user_meets_the_permissions", shared_config()) else {
        return;
    };
    let closed = fx.path("closed");
    let open = fx.path("open");
    let sticky = fx.path("sticky");
    for (d, mode) in [(&closed, 0o755), (&open, 0o777), (&sticky, 0o1777)] {
        fs::create_dir(d).expect("mkdir");
        fs::set_permissions(d, fs::Permissions::from_mode(mode)).expect("chmod");
    }
    fs::write(sticky.join("roots"), b"r").expect("write");
    fs::set_permissions(sticky.join("roots"), fs::Permissions::from_mode(0o666)).expect("chmod");
    let q = |p: &Path| format!("'{}'", p.display());
    let cases = [
        (format!("ls {}", q(&fx.mountpoint)), 0),
        (format!("touch {}/x", q(&closed)), 1),
        (
            format!("touch {}/mine && test -O {}/mine", q(&open), q(&open)),
            0,
        ),
        (format!("chmod 777 {}/roots", q(&sticky)), 1),
        (format!("rm -f {}/roots", q(&sticky)), 1),
        (
            format!("touch {}/own && rm {}/own", q(&sticky), q(&sticky)),
            0,
        ),
        (format!("printf ok > {}/roots", q(&sticky)), 0),
    ];
    for (script, want) in cases {
        let (code, err) = sh_as(NOBODY, NOBODY, &script);
        assert_eq!(code, want, "as nobody: {script}: {err}");
    }
    let mine = fs::metadata(open.join("mine")).expect("stat");
    assert_eq!(
        (mine.uid(), mine.gid()),
        (NOBODY, NOBODY),
        "owner of a new file"
    );
    assert!(sticky.join("roots").exists());
}

/// `stat -c FORMAT path` through the real command.
fn stat_c(fx: &MountFixture, format: &str, rel: &str) -> String {
    run("stat", &["-c", format, rel], &fx.mountpoint)
        .trim()
        .to_string()
}

#[test]
fn hard_links_share_one_file() {
    let Some(mut fx) = MountFixture::new("hard_links_share_one_file") else {
        return;
    };
    let mnt = fx.mountpoint.clone();
    fs::create_dir(fx.path("d")).expect("mkdir");
    fs::write(fx.path("a"), b"first").expect("write");
    run("ln", &["a", "d/b"], &mnt);
    assert_eq!(stat_c(&fx, "%h %s", "a"), "2 5");
    assert_eq!(stat_c(&fx, "%h %s", "d/b"), "2 5");
    assert_eq!(
        stat_c(&fx, "%i", "a"),
        stat_c(&fx, "%i", "d/b"),
        "one inode"
    );
    // A write through one name is read through the other; chmod applies to both.
    fs::write(fx.path("d/b"), b"written through b").expect("write b");
    assert_eq!(
        fs::read(fx.path("a")).expect("read a"),
        b"written through b"
    );
    run("chmod", &["600", "a"], &mnt);
    assert_eq!(stat_c(&fx, "%a", "d/b"), "600");
    // A third name, ls -l and find -links see the count.
    run("ln", &["d/b", "c"], &mnt);
    assert_eq!(stat_c(&fx, "%h", "a"), "3");
    let found = run("find", &[".", "-type", "f", "-links", "3"], &mnt);
    let mut found: Vec<&str> = found.lines().collect();
    found.sort();
    assert_eq!(found, ["./a", "./c", "./d/b"]);
    // ln onto an existing name, and of a directory, fail as on a local filesystem.
    assert_eq!(
        errno_of(fs::hard_link(fx.path("a"), fx.path("c"))),
        libc::EEXIST
    );
    assert_eq!(
        errno_of(fs::hard_link(fx.path("d"), fx.path("e"))),
        libc::EPERM
    );
    // mv moves one name; rm removes one name and lowers the count.
    run("mv", &["c", "d/moved"], &mnt);
    assert_eq!(stat_c(&fx, "%h", "d/moved"), "3");
    run("rm", &["a"], &mnt);
    assert_eq!(stat_c(&fx, "%h", "d/b"), "2");
    // Everything survives a remount.
    fx.remount();
    assert_eq!(stat_c(&fx, "%h %a", "d/b"), "2 600");
    assert_eq!(stat_c(&fx, "%i", "d/b"), stat_c(&fx, "%i", "d/moved"));
    assert_eq!(
        fs::read(fx.path("d/moved")).expect("read moved"),
        b"written through b"
    );
    fs::OpenOptions::new()
        .append(true)
        .open(fx.path("d/moved"))
        .and_then(|mut f| f.write_all(b"!"))
        .expect("append");
    assert_eq!(
        fs::read(fx.path("d/b")).expect("read b"),
        b"written through b!"
    );
    // The last name takes the file with it; the reserved store name stays hidden.
    run("rm", &["d/b"], &mnt);
    assert_eq!(stat_c(&fx, "%h", "d/moved"), "1");
    run("rm", &["d/moved"], &mnt);
    fx.remount();
    let left: Vec<String> = fs::read_dir(fx.path(""))
        .expect("readdir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["d"]);
    assert!(fs::read_dir(fx.path("d"))
        .expect("readdir d")
        .next()
        .is_none());
}

#[test]
fn ioctl_is_enotty() {
    let Some(fx) = MountFixture::new("ioctl_is_enotty") else {
        return;
    };
    let p = fx.path("f");
    fs::write(&p, b"x").expect("write");
    let f = File::open(&p).expect("open");
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes one winsize into `ws`, which lives across the call.
    let r = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&f),
            libc::TIOCGWINSZ,
            &mut ws,
        )
    };
    let e = std::io::Error::last_os_error().raw_os_error();
    assert_eq!((r, e), (-1, Some(libc::ENOTTY)));
}

/// FUSE sends FLUSH for every close of a descriptor, also when a child made by `fork` closes
/// the copy it inherited as it execs (`O_CLOEXEC`, which every `Command` child does): that
/// close is not the writer's and makes no version of the half-written file. A child that
/// writes through the descriptor is a writer: its close makes a version. The writer's own
/// close makes the last one.
#[test]
fn a_child_closing_an_inherited_descriptor_makes_no_version() {
    use objfs_store::{GetOptions, ListVersionsRequest, ObjectStore};
    use std::os::fd::AsRawFd;
    let Some(fx) = MountFixture::new("inherited_close") else {
        return;
    };
    let store = fx.store().expect("mounted").clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    // The versions of key `f`, newest first, with their bytes.
    let versions = || -> Vec<Vec<u8>> {
        rt.block_on(async {
            let req = ListVersionsRequest {
                prefix: "f".into(),
                ..Default::default()
            };
            let mut out = Vec::new();
            for v in store.list_versions(&req).await.expect("list").versions {
                if v.key != "f" {
                    continue;
                }
                let opts = GetOptions {
                    version: Some(v.version.clone()),
                    range: None,
                };
                let body = store.get("f", opts).await.expect("get");
                out.push(body.bytes().await.expect("bytes").to_vec());
            }
            out
        })
    };

    let mut f = File::create(fx.path("f")).expect("create");
    f.write_all(b"first half, ").expect("write");
    let st = Command::new("true").status().expect("spawn true");
    assert!(st.success());
    assert!(
        versions().is_empty(),
        "a child closed its inherited copy at exec: no version of the open file"
    );

    // A child that writes through the descriptor (as its fd 3) and closes it.
    let fd = f.as_raw_fd();
    let mut child = Command::new("sh");
    child.args(["-c", "printf 'child, ' >&3 && exec 3>&-"]);
    // SAFETY: between fork and exec only async-signal-safe calls (dup2, fcntl).
    unsafe {
        child.pre_exec(move || {
            let r = if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, 3)
            };
            if r < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let st = child.status().expect("spawn sh");
    assert!(st.success());
    assert_eq!(
        versions(),
        vec![b"first half, child, ".to_vec()],
        "the child that wrote made a version at its close"
    );

    f.write_all(b"second half").expect("write");
    drop(f);
    let all = versions();
    assert_eq!(all.len(), 2, "the writer's close made the second version");
    assert_eq!(all[0], b"first half, child, second half");
    assert_eq!(
        fs::read(fx.path("f")).expect("read"),
        b"first half, child, second half"
    );
}
