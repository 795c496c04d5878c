//! Ordinary shell tools against a real objfs mount: ls, cp -r, mv, rm -rf, cat, diff -r,
//! tar, find, stat, chmod, touch -d, ln -s, dd with seeks, truncate; and std::fs from Rust.
//!
//! Every test checks results (contents against a native copy, stat fields), not only exit
//! codes. Each test has its own mount (see `objfs_tests::mount_fixture`).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use objfs_tests::mount_fixture::{assert_same_tree, compare_files, run, MountFixture};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    StdRng::seed_from_u64(seed).fill(&mut v[..]);
    v
}

/// A small tree with awkward sizes, nesting, an empty dir, a symlink and odd names.
fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("a/b/c")).unwrap();
    fs::create_dir_all(root.join("empty")).unwrap();
    let sizes = [
        0usize,
        1,
        17,
        4095,
        4096,
        4097,
        65536,
        1 << 20,
        (3 << 20) + 5,
    ];
    for (i, size) in sizes.iter().enumerate() {
        fs::write(root.join(format!("f{i}.bin")), bytes(i as u64, *size)).unwrap();
        fs::write(
            root.join(format!("a/b/g{i}.bin")),
            bytes(100 + i as u64, *size / 3),
        )
        .unwrap();
    }
    fs::write(root.join("a/b/c/with space.txt"), b"spaces are fine\n").unwrap();
    fs::write(root.join("a/ünïcödé.txt"), "unicode names\n").unwrap();
    std::os::unix::fs::symlink("b/c/with space.txt", root.join("a/link")).unwrap();
}

fn stat_field(path: &Path, fmt: &str) -> String {
    run("stat", &["-c", fmt, path.to_str().unwrap()], Path::new("/"))
        .trim()
        .to_string()
}

#[test]
fn ls_la_lists_files_with_sizes() {
    let Some(fx) = MountFixture::new("ls_la_lists_files_with_sizes") else {
        return;
    };
    fs::write(fx.path("hello.txt"), b"hello world\n").unwrap();
    fs::create_dir(fx.path("sub")).unwrap();
    fs::write(fx.path("sub/inner"), bytes(7, 12345)).unwrap();
    let out = run("ls", &["-la", "--time-style=+"], &fx.mountpoint);
    let line = out
        .lines()
        .find(|l| l.ends_with(" hello.txt"))
        .unwrap_or_else(|| panic!("hello.txt not in ls -la:\n{out}"));
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert!(fields[0].starts_with("-rw"), "{line}");
    assert_eq!(fields[4], "12", "size column of {line}");
    let sub = out
        .lines()
        .find(|l| l.ends_with(" sub"))
        .unwrap_or_else(|| panic!("sub not in ls -la:\n{out}"));
    assert!(sub.starts_with('d'), "{sub}");
    assert!(out.lines().any(|l| l.ends_with(" .")), "no . in\n{out}");
    assert!(out.lines().any(|l| l.ends_with(" ..")), "no .. in\n{out}");
    let inner = run("ls", &["-l", "sub"], &fx.mountpoint);
    assert!(inner.contains(" 12345 "), "{inner}");
    assert_eq!(run("cat", &["hello.txt"], &fx.mountpoint), "hello world\n");
}

#[test]
fn cp_r_then_diff_r_is_identical() {
    let Some(fx) = MountFixture::new("cp_r_then_diff_r_is_identical") else {
        return;
    };
    let src = fx.native_path("tree");
    make_tree(&src);
    run(
        "cp",
        &[
            "-r",
            src.to_str().unwrap(),
            fx.path("tree").to_str().unwrap(),
        ],
        fx.root(),
    );
    run(
        "diff",
        &[
            "-r",
            src.to_str().unwrap(),
            fx.path("tree").to_str().unwrap(),
        ],
        fx.root(),
    );
    assert_same_tree(&src, &fx.path("tree"));
    // And back out again.
    let back = fx.native_path("back");
    run(
        "cp",
        &[
            "-r",
            fx.path("tree").to_str().unwrap(),
            back.to_str().unwrap(),
        ],
        fx.root(),
    );
    assert_same_tree(&src, &back);
    for f in ["f8.bin", "a/b/g8.bin", "a/b/c/with space.txt"] {
        compare_files(&src.join(f), &fx.path("tree").join(f));
    }
}

#[test]
fn mv_and_rm_rf() {
    let Some(mut fx) = MountFixture::new("mv_and_rm_rf") else {
        return;
    };
    let src = fx.native_path("tree");
    make_tree(&src);
    run("cp", &["-r", src.to_str().unwrap(), "tree"], &fx.mountpoint);
    // Rename a file, within and across directories.
    run(
        "mv",
        &["tree/f3.bin", "tree/f3-renamed.bin"],
        &fx.mountpoint,
    );
    run("mv", &["tree/f4.bin", "tree/a/b/c/"], &fx.mountpoint);
    // Rename a whole directory with contents.
    run("mv", &["tree/a", "tree/z"], &fx.mountpoint);
    // Overwrite an existing file by rename.
    run("mv", &["tree/f5.bin", "tree/f6.bin"], &fx.mountpoint);
    // Mirror on the native side.
    fs::rename(src.join("f3.bin"), src.join("f3-renamed.bin")).unwrap();
    fs::rename(src.join("f4.bin"), src.join("a/b/c/f4.bin")).unwrap();
    fs::rename(src.join("a"), src.join("z")).unwrap();
    fs::rename(src.join("f5.bin"), src.join("f6.bin")).unwrap();
    assert_same_tree(&src, &fx.path("tree"));
    assert!(!fx.path("tree/a").exists());
    assert_eq!(
        fs::read_link(fx.path("tree/z/link")).unwrap(),
        Path::new("b/c/with space.txt")
    );
    assert_eq!(
        fs::read(fx.path("tree/z/link")).unwrap(),
        b"spaces are fine\n"
    );

    run("rm", &["-rf", "tree/z"], &fx.mountpoint);
    fs::remove_dir_all(src.join("z")).unwrap();
    assert_same_tree(&src, &fx.path("tree"));
    run("rm", &["-rf", "tree"], &fx.mountpoint);
    assert_eq!(fs::read_dir(&fx.mountpoint).unwrap().count(), 0);
    // Nothing comes back after a remount.
    fx.remount();
    assert_eq!(fs::read_dir(&fx.mountpoint).unwrap().count(), 0);
}

#[test]
fn tar_of_2000_small_files_round_trips() {
    let Some(mut fx) = MountFixture::new("tar_of_2000_small_files_round_trips") else {
        return;
    };
    let src = fx.native_path("src");
    for d in 0..20 {
        let dir = src.join(format!("dir{d:02}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..100 {
            let n = d * 100 + f;
            fs::write(
                dir.join(format!("file{f:03}.txt")),
                bytes(n, (n as usize * 37) % 3000),
            )
            .unwrap();
        }
    }
    let tarball = fx.native_path("src.tar");
    run(
        "tar",
        &[
            "-cf",
            tarball.to_str().unwrap(),
            "-C",
            fx.native.to_str().unwrap(),
            "src",
        ],
        fx.root(),
    );
    // Extract into the mount.
    run(
        "tar",
        &[
            "-xf",
            tarball.to_str().unwrap(),
            "-C",
            fx.mountpoint.to_str().unwrap(),
        ],
        fx.root(),
    );
    run(
        "diff",
        &[
            "-r",
            src.to_str().unwrap(),
            fx.path("src").to_str().unwrap(),
        ],
        fx.root(),
    );
    let found = run("find", &["src", "-type", "f"], &fx.mountpoint);
    assert_eq!(found.lines().count(), 2000);
    let dirs = run("find", &["src", "-type", "d"], &fx.mountpoint);
    assert_eq!(dirs.lines().count(), 21);
    // Create a tar inside the mount from the mounted tree, extract it natively, compare.
    run("tar", &["-cf", "copy.tar", "src"], &fx.mountpoint);
    fx.remount();
    let out = fx.native_path("out");
    fs::create_dir(&out).unwrap();
    run(
        "tar",
        &[
            "-xf",
            fx.path("copy.tar").to_str().unwrap(),
            "-C",
            out.to_str().unwrap(),
        ],
        fx.root(),
    );
    assert_same_tree(&src, &out.join("src"));
    assert_same_tree(&src, &fx.path("src"));
}

#[test]
fn stat_chmod_touch_and_symlinks() {
    let Some(mut fx) = MountFixture::new("stat_chmod_touch_and_symlinks") else {
        return;
    };
    fs::write(fx.path("f"), b"0123456789").unwrap();
    fs::create_dir(fx.path("d")).unwrap();
    assert_eq!(stat_field(&fx.path("f"), "%s %F"), "10 regular file");
    assert_eq!(stat_field(&fx.path("d"), "%F"), "directory");

    run("chmod", &["600", "f"], &fx.mountpoint);
    assert_eq!(stat_field(&fx.path("f"), "%a"), "600");
    run("chmod", &["751", "d"], &fx.mountpoint);
    assert_eq!(stat_field(&fx.path("d"), "%a"), "751");
    run("chmod", &["u+x,g+r", "f"], &fx.mountpoint);
    assert_eq!(stat_field(&fx.path("f"), "%a"), "740");

    run(
        "touch",
        &["-d", "2001-02-03 04:05:06 UTC", "f"],
        &fx.mountpoint,
    );
    assert_eq!(stat_field(&fx.path("f"), "%Y"), "981173106");
    run("touch", &["-m", "-d", "@1234567890", "d"], &fx.mountpoint);
    assert_eq!(stat_field(&fx.path("d"), "%Y"), "1234567890");
    // touch of a new name creates an empty file.
    run("touch", &["new"], &fx.mountpoint);
    assert_eq!(stat_field(&fx.path("new"), "%s %F"), "0 regular empty file");

    run("ln", &["-s", "f", "link"], &fx.mountpoint);
    run(
        "ln",
        &["-s", "../nowhere/at/all", "d/dangling"],
        &fx.mountpoint,
    );
    // A new entry in d made its mtime now (as on any filesystem); set it back.
    assert_ne!(stat_field(&fx.path("d"), "%Y"), "1234567890");
    run("touch", &["-m", "-d", "@1234567890", "d"], &fx.mountpoint);
    assert_eq!(stat_field(&fx.path("link"), "%F"), "symbolic link");
    assert_eq!(run("readlink", &["link"], &fx.mountpoint).trim(), "f");
    assert_eq!(run("cat", &["link"], &fx.mountpoint), "0123456789");
    assert_eq!(
        fs::read_link(fx.path("d/dangling")).unwrap(),
        Path::new("../nowhere/at/all")
    );
    assert!(
        fs::metadata(fx.path("d/dangling")).is_err(),
        "dangling link resolves"
    );

    // Everything survives a remount.
    fx.remount();
    assert_eq!(stat_field(&fx.path("f"), "%a %s %Y"), "740 10 981173106");
    assert_eq!(stat_field(&fx.path("d"), "%a %Y"), "751 1234567890");
    assert_eq!(fs::read_link(fx.path("link")).unwrap(), Path::new("f"));
    assert_eq!(fs::read(fx.path("link")).unwrap(), b"0123456789");
    let md = fs::symlink_metadata(fx.path("link")).unwrap();
    assert!(md.file_type().is_symlink());
    assert_eq!(md.size(), 1, "a symlink's size is its target's length");
}

#[test]
fn dd_with_seeks_and_truncate() {
    let Some(mut fx) = MountFixture::new("dd_with_seeks_and_truncate") else {
        return;
    };
    let native = fx.native_path("data");
    let mounted = fx.path("data");
    let patch = fx.native_path("patch");
    fs::write(&native, bytes(1, 5 << 20)).unwrap();
    fs::write(&patch, bytes(2, 300_000)).unwrap();
    run(
        "cp",
        &[native.to_str().unwrap(), mounted.to_str().unwrap()],
        fx.root(),
    );
    compare_files(&native, &mounted);
    let patch_s = format!("if={}", patch.display());
    // (block size, seek in blocks, count) — in the middle, across the end, far past the end.
    let cases: [(&str, &str, &str); 4] = [
        ("4096", "100", "10"),
        ("1000", "7", "1"),
        ("65536", "78", "4"),
        ("4096", "3000", "2"),
    ];
    for (bs, seek, count) in cases {
        for target in [&native, &mounted] {
            run(
                "dd",
                &[
                    &patch_s,
                    &format!("of={}", target.display()),
                    &format!("bs={bs}"),
                    &format!("seek={seek}"),
                    &format!("count={count}"),
                    "conv=notrunc",
                    "status=none",
                ],
                fx.root(),
            );
        }
        compare_files(&native, &mounted);
    }
    // dd reading with skip from the mount equals the same from the native file.
    let skip_native = run(
        "sh",
        &[
            "-c",
            &format!(
                "dd if={} bs=4096 skip=33 count=5 status=none | od -An -tx1 | md5sum",
                native.display()
            ),
        ],
        fx.root(),
    );
    let skip_mount = run(
        "sh",
        &[
            "-c",
            &format!(
                "dd if={} bs=4096 skip=33 count=5 status=none | od -An -tx1 | md5sum",
                mounted.display()
            ),
        ],
        fx.root(),
    );
    assert_eq!(skip_native, skip_mount);
    // truncate down, up (a hole of zeros), to zero and back.
    for size in ["3000000", "7000001", "+100", "-1", "0", "4096"] {
        for target in [&native, &mounted] {
            run(
                "truncate",
                &["-s", size, target.to_str().unwrap()],
                fx.root(),
            );
        }
        compare_files(&native, &mounted);
    }
    run(
        "dd",
        &[
            &patch_s,
            &format!("of={}", mounted.display()),
            "bs=1",
            "seek=10000",
            "count=77",
            "conv=notrunc",
            "status=none",
        ],
        fx.root(),
    );
    run(
        "dd",
        &[
            &patch_s,
            &format!("of={}", native.display()),
            "bs=1",
            "seek=10000",
            "count=77",
            "conv=notrunc",
            "status=none",
        ],
        fx.root(),
    );
    compare_files(&native, &mounted);
    fx.remount();
    compare_files(&native, &mounted);
}

#[test]
fn std_fs_from_rust() {
    let Some(mut fx) = MountFixture::new("std_fs_from_rust") else {
        return;
    };
    let m = &fx.mountpoint.clone();
    fs::create_dir_all(m.join("x/y/z")).unwrap();
    fs::write(m.join("x/y/z/file"), b"first").unwrap();
    {
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(m.join("x/y/z/file"))
            .unwrap();
        f.write_all(b" second").unwrap();
        f.sync_all().unwrap();
    }
    assert_eq!(fs::read(m.join("x/y/z/file")).unwrap(), b"first second");
    let md = fs::metadata(m.join("x/y/z/file")).unwrap();
    assert_eq!(md.len(), 12);
    assert!(md.is_file());
    assert!(fs::metadata(m.join("x/y")).unwrap().is_dir());

    // create_new fails on an existing file.
    let e = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(m.join("x/y/z/file"))
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
    // Missing files and directories.
    assert_eq!(
        fs::read(m.join("nope")).unwrap_err().kind(),
        std::io::ErrorKind::NotFound
    );
    assert_eq!(
        fs::remove_dir(m.join("x")).unwrap_err().raw_os_error(),
        Some(libc::ENOTEMPTY)
    );

    fs::rename(m.join("x/y/z/file"), m.join("x/moved")).unwrap();
    assert!(!m.join("x/y/z/file").exists());
    assert_eq!(fs::read(m.join("x/moved")).unwrap(), b"first second");
    fs::set_permissions(m.join("x/moved"), fs::Permissions::from_mode(0o640)).unwrap();
    assert_eq!(
        fs::metadata(m.join("x/moved"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o640
    );

    let mut names: Vec<String> = fs::read_dir(m.join("x"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec!["moved".to_string(), "y".to_string()]);

    fs::remove_file(m.join("x/moved")).unwrap();
    fs::remove_dir_all(m.join("x")).unwrap();
    assert!(!m.join("x").exists());

    // An empty directory and an empty file persist across a remount.
    fs::create_dir(m.join("keep")).unwrap();
    fs::File::create(m.join("keep/empty")).unwrap();
    fx.remount();
    assert!(fs::metadata(m.join("keep")).unwrap().is_dir());
    assert_eq!(fs::metadata(m.join("keep/empty")).unwrap().len(), 0);
}

/// POSIX: a file replaced by `rename(new, name)` stays readable, whole and unchanged, through
/// handles opened before the rename (what readers of a config file replaced by an editor or
/// by `rsync` rely on).
#[test]
fn rename_over_an_open_file_keeps_the_open_handle_intact() {
    use std::io::Read;
    let Some(fx) = MountFixture::new("rename_over_an_open_file_keeps_the_open_handle_intact")
    else {
        return;
    };
    for (old_len, new_len) in [(3_000_000usize, 2_000_000usize), (2_000_000, 3_000_000)] {
        let old = bytes(old_len as u64, old_len);
        let new = bytes(new_len as u64 + 1, new_len);
        fs::write(fx.path("t"), &old).unwrap();
        fs::write(fx.path("n"), &new).unwrap();
        let mut f = fs::File::open(fx.path("t")).unwrap();
        let mut head = vec![0u8; 1000];
        f.read_exact(&mut head).unwrap();
        fs::rename(fx.path("n"), fx.path("t")).unwrap();
        assert_eq!(
            f.metadata().unwrap().len(),
            old_len as u64,
            "fstat of the replaced file's handle ({old_len} -> {new_len})"
        );
        let mut rest = Vec::new();
        f.read_to_end(&mut rest).unwrap();
        head.extend_from_slice(&rest);
        assert_eq!(
            head.len(),
            old_len,
            "bytes read through the replaced file's handle"
        );
        assert!(head == old, "the replaced file's handle read other bytes");
        assert!(
            fs::read(fx.path("t")).unwrap() == new,
            "the new file under the name"
        );
    }
}

/// POSIX (and docs/SEMANTICS.md): an open file that is unlinked keeps working through its open
/// descriptors: fstat, reading the rest of it.
#[test]
fn unlink_of_an_open_file_keeps_the_open_handle_working() {
    use std::io::Read;
    let Some(fx) = MountFixture::new("unlink_of_an_open_file_keeps_the_open_handle_working") else {
        return;
    };
    let data = bytes(31, 3_000_000);
    fs::write(fx.path("t"), &data).unwrap();
    let mut f = fs::File::open(fx.path("t")).unwrap();
    let mut got = vec![0u8; 1000];
    f.read_exact(&mut got).unwrap();
    fs::remove_file(fx.path("t")).unwrap();
    assert!(!fx.path("t").exists());
    let md = f.metadata().expect("fstat of an open, unlinked file");
    assert_eq!(md.len(), data.len() as u64);
    f.read_to_end(&mut got)
        .expect("reading an open, unlinked file");
    assert!(got == data, "an open, unlinked file read other bytes");
}

/// CPU ticks (utime + stime) of the threads of process `pid` that read FUSE requests
/// (fuser names them `fuser-N`).
fn reader_ticks(pid: u32) -> u64 {
    objfs_tests::daemon_mount::thread_ticks(pid, |name| name.starts_with("fuser-"))
}

/// How many of process `pid`'s descriptors of `/dev/fuse` are non-blocking.
fn nonblocking_fuse_fds(pid: u32) -> usize {
    let mut n = 0;
    for fd in fs::read_dir(format!("/proc/{pid}/fd")).expect("the daemon's descriptors") {
        let fd = fd.unwrap();
        if fs::read_link(fd.path()).is_ok_and(|t| t == Path::new("/dev/fuse")) {
            let info = fs::read_to_string(format!(
                "/proc/{pid}/fdinfo/{}",
                fd.file_name().to_string_lossy()
            ))
            .unwrap_or_default();
            let flags = info
                .lines()
                .find_map(|l| l.strip_prefix("flags:"))
                .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
                .unwrap_or(0);
            if flags & libc::O_NONBLOCK as u32 != 0 {
                n += 1;
            }
        }
    }
    n
}

/// The first reader thread busy-polls the FUSE device after each request (`-o busy_poll`, the
/// patch in fs/vendor/fuser/PATCHES.md). With it on (the default, and a 10 ms window) and off,
/// the same shell work gives the same results; exactly one device descriptor is non-blocking
/// when it is on and none when it is off; and once the mount is idle its reader threads use
/// no CPU (the polling stops after its window: a thread that kept polling would use about 100
/// ticks a second).
#[test]
fn busy_polling_on_and_off() {
    use objfs_tests::daemon_mount::DaemonMount;
    use objfs_tests::mount_fixture::skip_without_fuse;
    let test = "busy_polling_on_and_off";
    if skip_without_fuse(test) {
        return;
    }
    let tmp = tempfile::Builder::new()
        .prefix("objfs-busy-poll-")
        .tempdir()
        .expect("temporary directory");
    // Over /dev/fuse whatever the kernel's io_uring switch says (mount_uring.rs tests the
    // polling of the io_uring queues).
    let cases: [(&[&str], usize); 3] = [
        (&["-o", "io_uring=off"], 1),
        (&["-o", "busy_poll=10000,io_uring=off"], 1),
        (&["-o", "busy_poll=0,io_uring=off"], 0),
    ];
    for (i, (args, polling)) in cases.into_iter().enumerate() {
        let store = tmp.path().join(format!("store{i}"));
        let mnt = tmp.path().join(format!("mnt{i}"));
        let log = tmp.path().join(format!("objfs{i}.log"));
        fs::create_dir(&mnt).unwrap();
        let mut m = DaemonMount::start(&store, &mnt, args, &log);
        let d = mnt.join("d");
        fs::create_dir(&d).unwrap();
        // The kernel lists the mount before the session's reader threads run; a request
        // answered means the first one has set its descriptor up.
        assert_eq!(
            nonblocking_fuse_fds(m.pid()),
            polling,
            "{args:?}: non-blocking /dev/fuse descriptors"
        );
        for n in 0..300 {
            fs::write(d.join(format!("f{n}")), format!("file {n} of {args:?}")).unwrap();
        }
        for n in 0..300 {
            fs::rename(d.join(format!("f{n}")), d.join(format!("g{n}"))).unwrap();
        }
        for n in (0..300).step_by(2) {
            fs::remove_file(d.join(format!("g{n}"))).unwrap();
        }
        let out = run("ls", &[], &d);
        let names: Vec<&str> = out.lines().collect();
        assert_eq!(names.len(), 150, "{args:?}: ls lists the files left");
        for n in (1..300).step_by(2) {
            assert_eq!(
                fs::read_to_string(d.join(format!("g{n}"))).unwrap(),
                format!("file {n} of {args:?}")
            );
            assert!(!d.join(format!("f{n}")).exists());
        }
        // Idle: the readers sleep once the window has passed.
        std::thread::sleep(Duration::from_millis(100));
        let before = reader_ticks(m.pid());
        std::thread::sleep(Duration::from_secs(1));
        let used = reader_ticks(m.pid()) - before;
        assert!(
            used < 25,
            "{args:?}: an idle mount's reader threads used {used} ticks in a second"
        );
        m.stop();
    }
}
