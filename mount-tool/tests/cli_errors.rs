//! The error paths of issue 11, each with a clear message, the right exit code, and nothing
//! left behind: an `s3://` store that cannot be opened or a local-only command on one, a typo in a store path, a plain directory given as a store,
//! `--pause` on a path that is not a store, unknown `-o` options, a non-empty mount point, a
//! dead mount after `kill -9`, `-o auto_unmount`; plus logs, completions and the man page.

mod common;

use std::fs;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

#[test]
fn s3_locations_fail_clearly_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mp = dir.path().join("m");
    // Nothing answers at port 1 of the loopback: the bucket cannot be opened.
    let dead = ["--endpoint", "http://127.0.0.1:1", "--region", "us-east-1"];
    let env = [
        ("AWS_ACCESS_KEY_ID", "x"),
        ("AWS_SECRET_ACCESS_KEY", "y"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    let mut cases: Vec<(Vec<&str>, &str)> = vec![
        (
            [&["status", "s3://mybucket"][..], &dead].concat(),
            "the endpoint does not answer",
        ),
        (
            vec!["scrub", "s3://mybucket/p", "--now"],
            "works on local stores only",
        ),
        (vec!["init", "s3://mybucket"], "works on local stores only"),
        // History commands reach the bucket (they work on a versioned one).
        (
            [&["versions", "--store", "s3://mybucket", "k"][..], &dead].concat(),
            "the endpoint does not answer",
        ),
    ];
    if !fuse_missing("s3_locations_fail_clearly_and_create_nothing") {
        cases.push((
            [&["mount", "s3://mybucket", s(&mp)][..], &dead].concat(),
            "the endpoint does not answer",
        ));
    }
    for (args, what) in cases {
        let out = Command::new(BIN)
            .args(&args)
            .envs(env)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains(what),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    assert!(names(dir.path()).is_empty(), "left {:?}", names(dir.path()));
}

#[test]
fn a_typo_in_the_store_path_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("stroe");
    let mp = dir.path().join("m");
    let err = fails(&["mount", s(&typo), s(&mp)], 1);
    assert!(err.contains("no objfs store at"), "{err}");
    assert!(err.contains("objfs init"), "says what to do: {err}");
    assert!(err.contains("--init"), "says what to do: {err}");
    // An empty directory is not a store either, without --init.
    let empty = dir.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let err = fails(&["mount", s(&empty), s(&mp)], 1);
    assert!(err.contains("empty directory, not an objfs store"), "{err}");
    assert_eq!(names(dir.path()), vec!["empty".to_string()]);
    assert!(names(&empty).is_empty());
}

#[test]
fn every_command_refuses_a_path_that_is_not_a_store_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no/such/store");
    let plain = dir.path().join("plain-dir");
    fs::create_dir(&plain).unwrap();
    fs::write(plain.join("notes.txt"), b"mine").unwrap();
    for p in [&missing, &plain] {
        for args in [
            vec!["scrub", s(p), "--pause"],
            vec!["scrub", s(p), "--resume"],
            vec!["scrub", s(p)],
            vec!["scrub", s(p), "--now"],
            vec!["gc", s(p)],
            vec!["gc", s(p), "--now"],
            vec!["place", s(p), "--pause"],
            vec!["place", s(p), "--now"],
            vec!["status", s(p)],
            vec!["status", s(p), "--json"],
            vec!["disk", "add", s(p), "/tmp/objfs-never-made"],
        ] {
            let err = fails(&args, 1);
            assert!(
                err.contains("not an objfs store") || err.contains("no objfs store"),
                "{args:?}: {err}"
            );
            assert!(!err.contains("has not run"), "{args:?}: {err}");
        }
    }
    assert!(!dir.path().join("no").exists(), "a directory was created");
    assert_eq!(names(&plain), vec!["notes.txt".to_string()]);
    assert!(!std::path::Path::new("/tmp/objfs-never-made").exists());
}

#[test]
fn unknown_mount_options_are_named_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let mp = dir.path().join("m");
    let err = fails(
        &[
            "mount",
            "--init",
            "-o",
            "ro,frobnicate=3",
            s(&store),
            s(&mp),
        ],
        2,
    );
    assert!(err.contains("\"frobnicate\""), "{err}");
    assert_eq!(err.lines().count(), 1, "said once: {err}");
    assert!(names(dir.path()).is_empty());
    // Usage errors of clap itself, and conflicting flags.
    fails(&["scrub", "x", "--pause", "--resume"], 2);
    fails(&["gc", "x", "--now", "--garbage-ratio", "2"], 2);
    fails(&["completions", "tcsh"], 2);
}

#[test]
fn completions_and_manual_come_from_the_command_line() {
    let bash = ok(&["completions", "bash"]);
    assert!(
        bash.contains("complete") && bash.contains("objfs"),
        "{bash}"
    );
    for sub in ["mount", "scrub", "completions", "man"] {
        assert!(bash.contains(sub), "bash completion lacks {sub}");
    }
    assert!(ok(&["completions", "zsh"]).contains("#compdef objfs"));
    let man = ok(&["man"]);
    assert!(man.contains(".TH objfs"), "{}", &man[..man.len().min(300)]);
    assert!(man.contains("scrub"), "the page lists the subcommands");
    let dir = tempfile::tempdir().unwrap();
    ok(&["man", "--dir", s(dir.path())]);
    let pages = names(dir.path());
    assert!(pages.contains(&"objfs.1".to_string()), "{pages:?}");
    assert!(pages.contains(&"objfs-mount.1".to_string()), "{pages:?}");
}

#[test]
fn a_non_empty_mount_point_is_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let mp = dir.path().join("m");
    fs::create_dir(&mp).unwrap();
    fs::write(mp.join("keep"), b"x").unwrap();
    ok(&["init", s(&store)]);
    let err = fails(&["mount", s(&store), s(&mp)], 1);
    assert!(err.contains("is not empty"), "{err}");
    assert!(err.contains("--allow-non-empty"), "{err}");
    if fuse_missing("a_non_empty_mount_point_is_refused_unless_allowed (mount part)") {
        return;
    }
    let _g = guard(&store, &mp);
    ok(&["mount", "--allow-non-empty", s(&store), s(&mp)]);
    assert!(is_mounted(&mp));
    assert!(names(&mp).is_empty(), "the mount hides what was there");
    ok(&["umount", s(&mp)]);
    assert_eq!(names(&mp), vec!["keep".to_string()]);
}

/// kill -9 of the mount process: the record is stale (ignored and removed), commands open
/// the store themselves, and the next mount clears the dead mount and says so.
#[test]
fn a_dead_mount_is_recognised_and_cleared() {
    if fuse_missing("a_dead_mount_is_recognised_and_cleared") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rt = dir.path().join("run");
    let store = dir.path().join("store");
    let mp = dir.path().join("m");
    let env = [("XDG_RUNTIME_DIR", s(&rt))];
    let _g = guard(&store, &mp);
    let out = objfs_env(&["mount", "--init", s(&store), s(&mp)], &env);
    assert!(out.status.success(), "{}", text(&out.stderr));
    {
        use std::io::Write;
        // fsynced: durable whatever happens to the mount process.
        let mut f = fs::File::create(mp.join("f")).unwrap();
        f.write_all(b"data").unwrap();
        f.sync_all().unwrap();
    }
    let pid = lock_pid(&store).unwrap();
    assert_eq!(names(&rt.join("objfs")).len(), 2, "socket and record");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&rt.join("objfs")), 0o700);
        for n in names(&rt.join("objfs")) {
            assert_eq!(mode(&rt.join("objfs").join(&n)), 0o600, "{n}");
        }
    }
    // SAFETY: killing the mount process this test started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    wait_until("the mount process to die", || !alive(pid));
    let err = fs::metadata(&mp).unwrap_err();
    // ENOTCONN, or ECONNABORTED on kernels that mark the connection aborted, or ECANCELED
    // while the kernel tears down the dead process's io_uring queues (when it uses them).
    assert!(
        matches!(
            err.raw_os_error(),
            Some(libc::ENOTCONN) | Some(libc::ECONNABORTED) | Some(libc::ECANCELED)
        ),
        "{err}"
    );
    // status opens the store itself (the record is stale), and cleans the record.
    let out = objfs_env(&["status", "--json", s(&store)], &env);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["mount"].is_null(), "{v}");
    assert_eq!(v["objects"], 1);
    assert!(
        names(&rt.join("objfs")).is_empty(),
        "the stale record was kept"
    );
    // Mounting again recognises the dead mount and clears it.
    let out = objfs_env(&["mount", s(&store), s(&mp)], &env);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("was a dead mount"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(fs::read(mp.join("f")).unwrap(), b"data");
    let out = objfs_env(&["umount", s(&mp)], &env);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        names(&rt.join("objfs")).is_empty(),
        "unmount left {:?}",
        names(&rt.join("objfs"))
    );
}

#[test]
fn auto_unmount_removes_the_mount_when_the_process_dies() {
    if fuse_missing("auto_unmount_removes_the_mount_when_the_process_dies") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let mp = dir.path().join("m");
    let _g = guard(&store, &mp);
    ok(&["mount", "--init", "-o", "auto_unmount", s(&store), s(&mp)]);
    assert!(is_mounted(&mp));
    let pid = lock_pid(&store).unwrap();
    // SAFETY: killing the mount process this test started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    wait_until("fusermount3 to unmount after the process died", || {
        !is_mounted(&mp)
    });
}

/// A daemon logs into STORE/objfs.log by default and status says so; --log-file works with
/// --foreground too.
#[test]
fn logs_go_to_a_file_in_both_modes() {
    if fuse_missing("logs_go_to_a_file_in_both_modes") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let mp = dir.path().join("m");
    let _g = guard(&store, &mp);
    ok(&["mount", "--init", s(&store), s(&mp)]);
    let log = store.join("objfs.log");
    let v = json(&["status", "--json", s(&mp)]);
    assert_eq!(v["mount"]["log_file"], s(&log), "{v}");
    assert!(ok(&["status", s(&mp)]).contains(&format!("log:             {}", s(&log))));
    ok(&["umount", s(&mp)]);
    let text_log = fs::read_to_string(&log).unwrap();
    assert!(text_log.contains("mounted"), "{text_log}");

    let flog = dir.path().join("fg.log");
    let mut child = Command::new(BIN)
        .args(["mount", "-f", "--log-file", s(&flog), s(&store), s(&mp)])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the foreground mount", || is_mounted(&mp));
    let v = json(&["status", "--json", s(&mp)]);
    assert_eq!(v["mount"]["log_file"], s(&flog), "{v}");
    ok(&["umount", s(&mp)]);
    let mut waited = 0;
    while child.try_wait().unwrap().is_none() && waited < 300 {
        std::thread::sleep(Duration::from_millis(100));
        waited += 1;
    }
    let _ = child.kill();
    let _ = child.wait();
    let text_log = fs::read_to_string(&flog).unwrap();
    assert!(text_log.contains("mounted"), "{text_log}");
}
