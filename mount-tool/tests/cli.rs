//! The `objfs` binary end to end: init, status, mount (daemon) + ls + umount, the refusal of
//! a non-empty directory that is not a store, `--help` of every subcommand, the message when
//! a store is mounted twice, `mount.objfs` helper syntax, and SIGTERM in the foreground.
//!
//! Mount tests always unmount through a Drop guard (`fusermount3 -u -z`, then wait for the
//! daemon). They skip loudly when FUSE is absent, and fail instead under OBJFS_REQUIRE_FUSE=1.

mod common;

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

#[test]
fn help_of_every_subcommand_has_examples() {
    for args in [
        &["--help"][..],
        &["mount", "--help"],
        &["umount", "--help"],
        &["init", "--help"],
        &["status", "--help"],
        &["help", "mount"],
    ] {
        let out = ok(args);
        assert!(
            out.contains("Examples:"),
            "objfs {args:?} has no examples:\n{out}"
        );
        assert!(
            out.contains("Usage:"),
            "objfs {args:?} has no usage:\n{out}"
        );
    }
    assert!(ok(&["mount", "--help"]).contains("--read-only"));
    assert!(ok(&["--version"]).starts_with("objfs "));
}

#[test]
fn usage_errors_exit_2() {
    fails(&[], 2);
    fails(&["mount"], 2);
    fails(&["frobnicate"], 2);
    fails(&["mount", "--bogus", "a", "b"], 2);
}

#[test]
fn bad_option_values_are_usage_errors_with_a_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let mp = dir.path().join("mnt");
    let err = fails(
        &["mount", "--init", "--part-size", "8Q", s(&store), s(&mp)],
        2,
    );
    assert!(err.starts_with("objfs: "), "{err}");
    assert!(err.contains("unknown unit"), "{err}");
    let err = fails(&["mount", "--init", "--attr-ttl=-1", s(&store), s(&mp)], 2);
    assert!(err.contains("attr-ttl"), "{err}");
    let err = fails(
        &["mount", "--init", "-o", "part_size", s(&store), s(&mp)],
        2,
    );
    assert!(err.contains("needs a value"), "{err}");
    let err = fails(&["init", "--ec", "x", s(&store)], 2);
    assert!(err.contains("--ec"), "{err}");
    assert!(!store.exists(), "a bad option must not create the store");
    assert!(!mp.exists(), "a bad option must not create the mount point");
}

#[test]
fn init_then_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("nested/store");
    let out = ok(&["init", s(&store)]);
    assert!(out.contains("initialised"), "{out}");
    let st = ok(&["status", s(&store)]);
    for field in [
        "objects:",
        "versions:",
        "delete markers:",
        "logical bytes:",
        "volumes:",
        "disks:",
    ] {
        assert!(st.contains(field), "status lacks {field}:\n{st}");
    }
    assert!(
        st.lines()
            .any(|l| l.starts_with("objects:") && l.trim_end().ends_with(" 0")),
        "{st}"
    );
    let json = ok(&["status", "--json", s(&store)]);
    assert!(json.contains("\"objects\":0"), "{json}");
    let err = fails(&["init", s(&store)], 1);
    assert!(err.contains("already an objfs store"), "{err}");
    let err = fails(&["status", s(&dir.path().join("missing"))], 1);
    assert!(err.contains("no objfs store"), "{err}");
    assert!(!dir.path().join("missing").exists());
}

#[test]
fn a_non_empty_directory_that_is_not_a_store_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let precious = dir.path().join("precious");
    fs::create_dir(&precious).expect("mkdir");
    fs::write(precious.join("thesis.tex"), b"do not touch").expect("write");
    let err = fails(&["init", s(&precious)], 1);
    assert!(err.contains("not empty and not an objfs store"), "{err}");
    let err = fails(&["status", s(&precious)], 1);
    assert!(err.contains("not an objfs store"), "{err}");
    if !fuse_missing("a_non_empty_directory_that_is_not_a_store_is_refused (mount part)") {
        let mp = dir.path().join("mnt");
        let _g = guard(&precious, &mp);
        let err = fails(&["mount", s(&precious), s(&mp)], 1);
        assert!(err.contains("not an objfs store"), "{err}");
        assert!(!is_mounted(&mp));
    }
    let names: Vec<_> = fs::read_dir(&precious)
        .expect("readdir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(
        names,
        vec![std::ffi::OsString::from("thesis.tex")],
        "the directory was touched"
    );
}

#[test]
fn mount_ls_umount_status() {
    if fuse_missing("mount_ls_umount_status") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let mp = dir.path().join("mnt"); // does not exist: mount creates it
    let _g = guard(&store, &mp);
    let out = objfs(&["mount", "--init", s(&store), s(&mp)]);
    assert!(out.status.success(), "mount failed: {}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("created a new store"),
        "{}",
        text(&out.stderr)
    );
    assert!(is_mounted(&mp), "not mounted after objfs mount returned");
    fs::write(mp.join("hello.txt"), b"hello\n").expect("write into the mount");
    fs::create_dir(mp.join("sub")).expect("mkdir in the mount");
    let ls = Command::new("ls").arg(&mp).output().expect("ls");
    assert_eq!(text(&ls.stdout), "hello.txt\nsub\n");
    ok(&["umount", s(&mp)]);
    assert!(!is_mounted(&mp));
    // umount waited for the daemon: the store is free again.
    let st = ok(&["status", s(&store)]);
    assert!(
        st.lines()
            .any(|l| l.starts_with("objects:") && !l.trim_end().ends_with(" 0")),
        "{st}"
    );
    // Mount again (no "created" this time) and find the file.
    let out = objfs(&["mount", s(&store), s(&mp)]);
    assert!(
        out.status.success(),
        "remount failed: {}",
        text(&out.stderr)
    );
    assert!(
        !text(&out.stderr).contains("created"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(fs::read(mp.join("hello.txt")).expect("read"), b"hello\n");
    ok(&["umount", s(&mp)]);
    let err = fails(&["umount", s(&mp)], 1);
    assert!(err.contains("is not mounted"), "{err}");
}

#[test]
fn mounting_a_store_twice_says_who_holds_it() {
    if fuse_missing("mounting_a_store_twice_says_who_holds_it") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let mp1 = dir.path().join("mnt1");
    let mp2 = dir.path().join("mnt2");
    let _g1 = guard(&store, &mp1);
    let _g2 = guard(&store, &mp2);
    ok(&["mount", "--init", s(&store), s(&mp1)]);
    let pid = lock_pid(&store).expect("the daemon's pid in LOCK");
    let err = fails(&["mount", s(&store), s(&mp2)], 1);
    assert!(
        err.contains(&format!("already mounted at {}", s(&mp1))),
        "{err}"
    );
    assert!(err.contains(&format!("pid {pid}")), "{err}");
    assert!(!is_mounted(&mp2));
    assert!(
        !mp2.exists(),
        "a refused mount must not create its mount point"
    );
    // status works while mounted (through the mount process) and names the mount.
    let st = ok(&["status", s(&store)]);
    assert!(st.contains(&format!("at {} by pid {pid}", s(&mp1))), "{st}");
    // Mounting over an existing mount point is refused too.
    let other = dir.path().join("other");
    let err = fails(&["mount", "--init", s(&other), s(&mp1)], 1);
    assert!(err.contains("already a mount point"), "{err}");
    assert!(!other.exists());
    ok(&["umount", s(&mp1)]);
    assert!(!alive(pid), "the daemon is still running after umount");
}

#[test]
fn mount_helper_syntax_read_only() {
    if fuse_missing("mount_helper_syntax_read_only") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let mp = dir.path().join("mnt");
    fs::create_dir(&mp).expect("mkdir");
    ok(&["init", s(&store)]);
    let helper = dir.path().join("mount.objfs");
    std::os::unix::fs::symlink(BIN, &helper).expect("symlink mount.objfs");
    let _g = guard(&store, &mp);
    // -f (fake) does nothing.
    let out = Command::new(&helper)
        .args([s(&store), s(&mp), "-f", "-o", "ro"])
        .output()
        .expect("run mount.objfs");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!is_mounted(&mp));
    let out = Command::new(&helper)
        .args([
            s(&store),
            s(&mp),
            "-n",
            "-o",
            "ro,defaults,_netdev,attr_ttl=0.5",
        ])
        .output()
        .expect("run mount.objfs");
    assert!(
        out.status.success(),
        "mount.objfs failed: {}",
        text(&out.stderr)
    );
    assert!(is_mounted(&mp));
    let err = fs::write(mp.join("x"), b"x").expect_err("a read-only mount took a write");
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    ok(&["umount", s(&mp)]);
    let out = Command::new(&helper)
        .args([s(&store)])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("usage: mount.objfs"));
}

/// fstab's `-o at=TIME`: mount.objfs mounts the store as of that moment, read-only, like
/// `objfs mount --at`; a bad time is a usage error and mounts nothing.
#[test]
fn mount_helper_at_option_mounts_the_past() {
    if fuse_missing("mount_helper_at_option_mounts_the_past") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let mp = dir.path().join("mnt");
    fs::create_dir(&mp).expect("mkdir");
    ok(&["init", s(&store)]);
    let t;
    {
        let _g = guard(&store, &mp);
        ok(&["mount", s(&store), s(&mp)]);
        fs::write(mp.join("a"), b"then").expect("write");
        std::thread::sleep(Duration::from_millis(20));
        t = objfs_store::history::time::format_rfc3339(std::time::SystemTime::now());
        std::thread::sleep(Duration::from_millis(20));
        fs::write(mp.join("a"), b"now, longer").expect("overwrite");
        fs::write(mp.join("b"), b"made later").expect("write");
        ok(&["umount", s(&mp)]);
    }
    let helper = dir.path().join("mount.objfs");
    std::os::unix::fs::symlink(BIN, &helper).expect("symlink mount.objfs");
    let bad = Command::new(&helper)
        .args([s(&store), s(&mp), "-o", "defaults,at=yesterday"])
        .output()
        .expect("run mount.objfs");
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("\"yesterday\" is not a time"),
        "{}",
        text(&bad.stderr)
    );
    assert!(!is_mounted(&mp));
    let _g = guard(&store, &mp);
    let out = Command::new(&helper)
        .args([s(&store), s(&mp), "-n", "-o", &format!("defaults,at={t}")])
        .output()
        .expect("run mount.objfs");
    assert!(
        out.status.success(),
        "mount.objfs failed: {}",
        text(&out.stderr)
    );
    assert!(is_mounted(&mp));
    assert_eq!(fs::read(mp.join("a")).expect("read the past"), b"then");
    assert!(!mp.join("b").exists(), "made after the moment");
    let err = fs::write(mp.join("x"), b"x").expect_err("a mount of the past took a write");
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    ok(&["umount", s(&mp)]);
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn foreground_mount_stops_cleanly_on_sigterm() {
    if fuse_missing("foreground_mount_stops_cleanly_on_sigterm") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let mp = dir.path().join("mnt");
    let _g = guard(&store, &mp);
    let child = Command::new(BIN)
        .args([
            "mount",
            "--init",
            "--foreground",
            s(&store),
            s(&mp),
            "--attr-ttl",
            "0",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn objfs mount -f");
    let mut child = KillOnDrop(child);
    let mut exited = None;
    wait_until("the foreground mount", || {
        exited = child.0.try_wait().ok().flatten();
        exited.is_some() || is_mounted(&mp)
    });
    if let Some(status) = exited {
        let mut err = String::new();
        if let Some(mut e) = child.0.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        panic!("objfs mount --foreground exited early ({status}): {err}");
    }
    // A file still open when the signal comes: its data must be uploaded before exit.
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    fs::write(mp.join("big"), &data).expect("write");
    let pid = i32::try_from(child.0.id()).expect("pid");
    // SAFETY: sending SIGTERM to our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.0.try_wait().expect("wait") {
            break st;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "objfs did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "objfs exited with {status} after SIGTERM");
    assert!(!is_mounted(&mp));
    // The store was closed (its lock is free) and holds the file.
    ok(&["status", s(&store)]);
    ok(&["mount", s(&store), s(&mp)]);
    assert!(fs::read(mp.join("big")).expect("read back") == data);
    ok(&["umount", s(&mp)]);
}

/// init with several disks and a policy, the daemons on demand, disk add / remove, and the
/// refusals, with their exit codes and messages.
#[test]
fn disks_policy_and_daemons_on_demand() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let d: Vec<PathBuf> = (0..4).map(|i| dir.path().join(format!("d{i}"))).collect();
    let err = fails(
        &[
            "init",
            s(&store),
            "--disk",
            s(&d[0]),
            "--disk",
            s(&d[1]),
            "--ec",
            "4+2",
        ],
        1,
    );
    assert!(err.contains("needs 6 disks"), "{err}");
    ok(&[
        "init",
        s(&store),
        "--disk",
        s(&d[0]),
        "--disk",
        s(&d[1]),
        "--disk",
        s(&d[2]),
        "--ec",
        "2+1",
    ]);
    let st = ok(&["status", s(&store), "--json"]);
    assert!(st.contains("\"ec\":\"2+1\""), "{st}");
    assert!(st.contains("\"replicas\":2"), "{st}");
    let out = ok(&["place", s(&store), "--now"]);
    assert!(out.contains("volumes erasure-coded"), "{out}");
    let out = ok(&["scrub", s(&store), "--now"]);
    assert!(out.contains("unrepairable 0"), "{out}");
    ok(&["gc", s(&store), "--now", "--delay", "0"]);
    ok(&["scrub", s(&store), "--pause"]);
    assert!(ok(&["scrub", s(&store), "--status"]).contains("scrub"));
    ok(&["scrub", s(&store), "--resume"]);
    let err = fails(&["disk", "remove", s(&store), s(&d[0])], 1);
    assert!(err.contains("needs 3 disks"), "{err}");
    ok(&["disk", "add", s(&store), s(&d[3])]);
    let out = ok(&["disk", "remove", s(&store), s(&d[0])]);
    assert!(out.contains("removed"), "{out}");
    let st = ok(&["status", s(&store)]);
    assert!(st.contains("removed (holds nothing of the store)"), "{st}");
    let err = fails(
        &["disk", "remove", s(&store), s(&dir.path().join("nope"))],
        1,
    );
    assert!(err.contains("not one of the store's disks"), "{err}");
}

/// `objfs du --store` on an unmounted store: the rollups' figures, `--verify` (which recounts
/// them while nothing else runs), and `--placement` in each form (a new store: zeros, but
/// every field and column present).
#[test]
fn du_of_a_store_with_verify_tiers_and_snapshot_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    ok(&["init", s(&store)]);
    let v = json(&["du", "--store", s(&store), "--json", "--verify"]);
    let root = &v["prefixes"][0];
    assert_eq!(root["prefix"], "");
    assert_eq!(root["live_objects"], 0);
    assert_eq!(v["verify"]["mismatch_count"], 0, "{v}");
    for f in [
        "local_replicated_bytes",
        "local_erasure_coded_bytes",
        "remote_bytes",
        "hole_bytes",
    ] {
        assert_eq!(root["tiers"][f], 0, "{f}: {v}");
    }
    for f in ["snapshot_only_versions", "snapshot_only_bytes"] {
        assert_eq!(root["snapshot_only"][f], 0, "{f}: {v}");
    }
    let csv = ok(&["du", "--store", s(&store), "--csv"]);
    let header = csv.lines().next().unwrap_or("");
    assert!(
        header.ends_with(
            ",local_replicated_bytes,local_erasure_coded_bytes,remote_bytes,hole_bytes,snapshot_only_versions,snapshot_only_bytes"
        ),
        "{header}"
    );
    assert_eq!(csv.lines().count(), 2, "{csv}");
    let text = ok(&["du", "--store", s(&store)]);
    assert!(
        text.contains("REPLICATED") && text.contains("SNAPSHOT-ONLY"),
        "{text}"
    );
}
