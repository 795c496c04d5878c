//! Reading the past through real mounts and the command line: `.snapshots/@TIME` and
//! `.snapshots/NAME` with `ls -a`, `cat`, `stat`, `cp -a`, `diff -r`, `find`; `mount --at`
//! served by the mount process of a mounted store and by its own process otherwise;
//! `objfs versions`, `cat`, `snapshot`, `retention` on a mounted and an unmounted store with
//! `--json` parsed. Every mount is unmounted by a guard, also when an assertion fails.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime};

use common::*;
use objfs_store::history::time::format_rfc3339;

/// Runs objfs with its own runtime directory (tests in this file run in parallel).
struct Env {
    rt: PathBuf,
}

impl Env {
    fn run(&self, args: &[&str]) -> Output {
        let rt = s(&self.rt).to_string();
        objfs_env(args, &[("XDG_RUNTIME_DIR", &rt)])
    }

    fn ok(&self, args: &[&str]) -> String {
        succeeded(args, self.run(args))
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.ok(args);
        serde_json::from_str(out.trim())
            .unwrap_or_else(|e| panic!("objfs {args:?}: not JSON ({e}):\n{out}"))
    }

    fn bytes(&self, args: &[&str]) -> Vec<u8> {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "objfs {args:?}: {}",
            text(&out.stderr)
        );
        out.stdout
    }
}

/// Runs a shell tool; returns its output, checking its exit code.
fn tool(cmd: &str, args: &[&str], cwd: &Path, expect_ok: bool) -> String {
    let out = Command::new(cmd)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert_eq!(
        out.status.success(),
        expect_ok,
        "{cmd} {args:?}: {}\n{}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

/// A moment strictly between what was written before and what comes after.
fn moment() -> String {
    std::thread::sleep(Duration::from_millis(1100));
    let t = format_rfc3339(SystemTime::now());
    std::thread::sleep(Duration::from_millis(1100));
    t
}

/// The tree before the moment: a file with mode 640 and an old mtime, a deeper file, a
/// symlink, a directory with mode 750. (No FIFO: `diff -r` would open it; the core's tests
/// check special files in the past.)
fn write_then(mp: &Path) {
    let d = mp.join("d");
    fs::create_dir(&d).unwrap();
    fs::set_permissions(&d, fs::Permissions::from_mode(0o750)).unwrap();
    fs::write(d.join("a"), b"one\n").unwrap();
    fs::set_permissions(d.join("a"), fs::Permissions::from_mode(0o640)).unwrap();
    tool(
        "touch",
        &["-m", "-d", "2020-01-02 03:04:05", "d/a"],
        mp,
        true,
    );
    fs::create_dir(d.join("sub")).unwrap();
    fs::write(d.join("sub/b"), pattern(300_000)).unwrap();
    std::os::unix::fs::symlink("a", d.join("l")).unwrap();
}

/// The changes after the moment.
fn change_now(mp: &Path) {
    let d = mp.join("d");
    fs::write(d.join("a"), b"two, longer\n").unwrap();
    fs::remove_file(d.join("l")).unwrap();
    fs::remove_file(d.join("sub/b")).unwrap();
    fs::remove_dir(d.join("sub")).unwrap();
    fs::write(d.join("new"), b"made later\n").unwrap();
}

fn erofs(r: std::io::Result<impl std::fmt::Debug>) {
    match r {
        Ok(v) => panic!("expected EROFS, got {v:?}"),
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}"),
    }
}

/// A temporary directory with a runtime directory, and the paths of a store and a mount
/// point in it; `None` (loudly) without FUSE.
fn setup(test: &str) -> Option<(tempfile::TempDir, Env, PathBuf, PathBuf)> {
    if fuse_missing(test) {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let env = Env {
        rt: dir.path().join("run"),
    };
    let (store, mp) = (dir.path().join("store"), dir.path().join("m"));
    Some((dir, env, store, mp))
}

#[test]
fn snapshots_directory_versions_cat_and_mount_at_on_a_mounted_store() {
    let Some((dir, env, store, mp)) =
        setup("snapshots_directory_versions_cat_and_mount_at_on_a_mounted_store")
    else {
        return;
    };
    let at1 = dir.path().join("at1");
    let at2 = dir.path().join("at2");
    env.ok(&["init", s(&store)]);
    let _g = guard(&store, &mp);
    // (The --at mounts are served by the live mount's process: their guards only unmount.)
    let _g1 = guard(&dir.path().join("no-store"), &at1);
    let _g2 = guard(&dir.path().join("no-store"), &at2);
    env.ok(&["mount", s(&store), s(&mp)]);
    write_then(&mp);
    let t = moment();
    change_now(&mp);
    let snap = format!(".snapshots/@{t}");

    // Hidden from the root, there when named; read-only.
    let ls = tool("ls", &["-a"], &mp, true);
    assert_eq!(ls.split_whitespace().collect::<Vec<_>>(), [".", "..", "d"]);
    assert!(mp.join(".snapshots").is_dir());
    let ls = tool("ls", &["-a", &format!("{snap}/d")], &mp, true);
    assert_eq!(
        ls.split_whitespace().collect::<Vec<_>>(),
        [".", "..", "a", "l", "sub"]
    );
    assert_eq!(tool("cat", &[&format!("{snap}/d/a")], &mp, true), "one\n");
    let st = tool(
        "stat",
        &["-c", "%a %s %Y %F", &format!("{snap}/d/a")],
        &mp,
        true,
    );
    assert_eq!(st.trim(), "640 4 1577934245 regular file");
    let st = tool("stat", &["-c", "%a %F", &format!("{snap}/d")], &mp, true);
    assert_eq!(st.trim(), "750 directory");
    assert_eq!(
        fs::read_link(mp.join(&snap).join("d/l")).unwrap(),
        PathBuf::from("a")
    );
    let found = tool("find", &[&snap, "-type", "f"], &mp, true);
    let mut found: Vec<&str> = found.lines().collect();
    found.sort();
    assert_eq!(
        found,
        [format!("{snap}/d/a"), format!("{snap}/d/sub/b")]
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    );
    erofs(fs::write(mp.join(&snap).join("d/a"), b"x"));
    erofs(fs::write(mp.join(&snap).join("d/x"), b"x"));
    erofs(fs::remove_file(mp.join(&snap).join("d/a")));
    erofs(fs::create_dir(mp.join(".snapshots/x")));
    erofs(fs::rename(mp.join("d/a"), mp.join(&snap).join("d/a2")));
    erofs(fs::set_permissions(
        mp.join(&snap).join("d/a"),
        fs::Permissions::from_mode(0o777),
    ));
    assert_eq!(fs::read(mp.join("d/a")).unwrap(), b"two, longer\n");

    // Restoring by hand, and comparing.
    tool("cp", &["-a", &format!("{snap}/d"), "restored"], &mp, true);
    tool("diff", &["-r", &format!("{snap}/d"), "restored"], &mp, true);
    let md = fs::metadata(mp.join("restored/a")).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o640);
    assert_eq!(md.mtime(), 1_577_934_245);
    assert_eq!(
        fs::read(mp.join("restored/sub/b")).unwrap(),
        pattern(300_000)
    );
    assert_eq!(
        fs::read_link(mp.join("restored/l")).unwrap(),
        PathBuf::from("a")
    );
    tool("diff", &["-r", &format!("{snap}/d"), "d"], &mp, false);

    // Named snapshots: made through the control channel, seen at once.
    let v = env.json(&["snapshot", "create", s(&mp), "first", "--at", &t, "--json"]);
    assert_eq!(v["snapshot"]["name"], "first");
    assert_eq!(v["snapshot"]["at"], t.as_str());
    assert!(names(&mp.join(".snapshots")).contains(&"first".to_string()));
    tool(
        "diff",
        &["-r", &format!("{snap}/d"), ".snapshots/first/d"],
        &mp,
        true,
    );
    let v = env.json(&["snapshot", "list", s(&store), "--json"]);
    let list = v["snapshots"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    // Measured by the mount process at once: everything is younger than --keep-all, so the
    // snapshot holds nothing alone yet.
    assert_eq!(list[0]["exclusive_exact"], true, "{v}");
    assert_eq!(list[0]["exclusive_bytes"], 0, "{v}");
    assert!(env
        .ok(&["snapshot", "list", s(&mp)])
        .contains("in 0 version(s)"));

    // versions: newest first, the same mounted by path and by --store.
    let v = env.json(&["versions", "--json", s(&mp.join("d/a"))]);
    assert_eq!(v["key"], "d/a");
    let vs = v["versions"].as_array().unwrap().clone();
    assert!(vs.len() >= 2, "{v}");
    assert_eq!(vs[0]["latest"], true);
    assert_eq!(vs[0]["size"], 12);
    let times: Vec<u64> = vs.iter().map(|x| x["time_ns"].as_u64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
    let by_store = env.json(&["versions", "--json", "--store", s(&store), "d/a"]);
    assert_eq!(by_store["versions"], v["versions"]);
    let old = vs
        .iter()
        .find(|x| x["size"] == 4 && x["mode"] == "0640")
        .expect("the version of `one` with mode 640");
    assert_eq!(old["uid"], u64::from(nix::unistd::getuid().as_raw()));
    let id = old["version"].as_str().unwrap();
    assert_eq!(
        env.bytes(&["cat", "--version", id, s(&mp.join("d/a"))]),
        b"one\n"
    );
    assert_eq!(
        env.bytes(&["cat", "--at", &t, "--store", s(&store), "d/a"]),
        b"one\n"
    );
    // A deleted file's history, through its path in the past.
    let v = env.json(&["versions", "--json", s(&mp.join(&snap).join("d/l"))]);
    assert_eq!(v["key"], "d/l");
    assert_eq!(v["versions"][0]["delete_marker"], true);
    let text_out = env.ok(&["versions", s(&mp.join("d/a"))]);
    assert!(
        text_out.contains("(current)") && text_out.contains("mode 0640"),
        "{text_out}"
    );

    // mount --at while mounted: the mount process serves it; each unmounts on its own.
    let pid = lock_pid(&store).unwrap();
    env.ok(&["mount", "--at", &t, s(&store), s(&at1)]);
    assert!(is_mounted(&at1));
    assert_eq!(lock_pid(&store), Some(pid));
    assert_eq!(fs::read(at1.join("d/a")).unwrap(), b"one\n");
    let st = env.json(&["status", "--json", s(&mp)]);
    assert_eq!(st["mount"]["at_mounts"][0]["mountpoint"], s(&at1), "{st}");
    assert!(env.ok(&["status", s(&store)]).contains("also serves:"));
    tool(
        "diff",
        &["-r", &format!("{snap}/d"), s(&at1.join("d"))],
        &mp,
        true,
    );
    erofs(fs::write(at1.join("x"), b"x"));
    env.ok(&["umount", s(&at1)]);
    assert!(!is_mounted(&at1));
    assert!(is_mounted(&mp));
    assert_eq!(fs::read(mp.join("d/a")).unwrap(), b"two, longer\n");
    std::thread::sleep(Duration::from_millis(1100));
    env.ok(&["mount", "--at", "-1s", s(&store), s(&at2)]);
    assert_eq!(fs::read(at2.join("d/new")).unwrap(), b"made later\n");

    // A snapshot deleted through the control channel is gone from the mount at once.
    assert!(mp.join(".snapshots/first/d").is_dir());
    env.ok(&["snapshot", "delete", s(&mp), "first"]);
    assert!(!mp.join(".snapshots/first").exists());

    // The live mount's unmount ends the --at mount it serves.
    env.ok(&["umount", s(&mp)]);
    wait_until("the --at mount to end", || !is_mounted(&at2));
}

#[test]
fn history_commands_and_mount_at_on_an_unmounted_store() {
    let Some((dir, env, store, mp)) = setup("history_commands_and_mount_at_on_an_unmounted_store")
    else {
        return;
    };
    let at = dir.path().join("at");
    env.ok(&["init", s(&store), "--keep-all", "10m", "--daily", "30d"]);
    let t;
    {
        let _g = guard(&store, &mp);
        env.ok(&["mount", s(&store), s(&mp)]);
        write_then(&mp);
        t = moment();
        change_now(&mp);
        env.ok(&["umount", s(&mp)]);
    }
    // versions and cat open the store themselves.
    let v = env.json(&["versions", "--json", "--store", s(&store), "d/sub/b"]);
    let vs = v["versions"].as_array().unwrap();
    assert_eq!(vs[0]["delete_marker"], true);
    assert_eq!(vs[1]["size"], 300_000);
    assert_eq!(
        env.bytes(&["cat", "--at", &t, "--store", s(&store), "d/sub/b"]),
        pattern(300_000)
    );
    let err = env.run(&["cat", "--at", &t, "--store", s(&store), "d/new"]);
    assert_eq!(err.status.code(), Some(1));
    assert!(
        text(&err.stderr).contains("did not exist"),
        "{}",
        text(&err.stderr)
    );
    let err = env.run(&["versions", "--store", s(&store), "nothing"]);
    assert_eq!(err.status.code(), Some(1));

    // Snapshots and retention on the store directory.
    let v = env.json(&[
        "snapshot",
        "create",
        s(&store),
        "then",
        "--at",
        &t,
        "--json",
    ]);
    assert_eq!(v["snapshot"]["at"], t.as_str());
    let bad = env.run(&["snapshot", "create", s(&store), "then"]);
    assert_eq!(bad.status.code(), Some(1));
    let bad = env.run(&["snapshot", "create", s(&store), "../x"]);
    assert_eq!(bad.status.code(), Some(1));
    let v = env.json(&["retention", "show", s(&store), "--json", "--dry-run"]);
    assert_eq!(v["policy"]["keep_all_s"], 600);
    assert_eq!(v["policy"]["daily_s"], 30 * 86_400);
    assert_eq!(v["policy"]["hourly_s"], 7 * 86_400);
    assert_eq!(v["default"], false);
    // Nothing is older than --keep-all 10m yet: nothing would expire.
    assert_eq!(v["dry_run"]["available"], true);
    assert_eq!(v["dry_run"]["versions"], 0, "{v}");
    let v = env.json(&["retention", "set", s(&store), "--hourly", "2d", "--json"]);
    assert_eq!(v["policy"]["hourly_s"], 2 * 86_400);
    assert_eq!(v["policy"]["keep_all_s"], 600);
    let bad = env.run(&["retention", "set", s(&store), "--hourly", "40d"]);
    assert_eq!(bad.status.code(), Some(1), "hourly after daily");
    let bad = env.run(&["retention", "set", s(&store), "--hourly", "soon"]);
    assert_eq!(bad.status.code(), Some(2));

    // mount --at of an unmounted store: its own process, read-only, with .snapshots too.
    {
        let _g = guard(&store, &at);
        env.ok(&["mount", "--at", &t, s(&store), s(&at)]);
        assert_eq!(fs::read(at.join("d/sub/b")).unwrap(), pattern(300_000));
        assert!(!at.join("d/new").exists());
        assert!(at.join(".snapshots/then/d/sub").is_dir());
        erofs(fs::write(at.join("d/a"), b"x"));
        // Commands reach its process like any mount's.
        let st = env.json(&["status", "--json", s(&store)]);
        assert_eq!(st["mount"]["read_only"], true);
        assert!(st["mount"]["at_ns"].as_u64().is_some(), "{st}");
        let v = env.json(&["snapshot", "list", s(&at), "--json"]);
        assert_eq!(v["snapshots"][0]["name"], "then");
        let v = env.json(&["versions", "--json", s(&at.join("d/a"))]);
        assert_eq!(v["key"], "d/a");
        env.ok(&["umount", s(&at)]);
    }
    let v = env.json(&["snapshot", "delete", s(&store), "then", "--json"]);
    assert_eq!(v["snapshot"]["name"], "then");
    let v = env.json(&["snapshot", "list", s(&store), "--json"]);
    assert!(v["snapshots"].as_array().unwrap().is_empty());
    // Keep nothing but what is current: the dry run counts the old versions (and the delete
    // markers and what they hid), and changes nothing.
    let zero = [
        "--keep-all",
        "0s",
        "--hourly",
        "0s",
        "--daily",
        "0s",
        "--deleted",
        "0s",
    ];
    env.ok(&[&["retention", "set", s(&store)][..], &zero[..]].concat());
    let v = env.json(&["retention", "show", s(&store), "--dry-run", "--json"]);
    assert!(v["dry_run"]["versions"].as_u64().unwrap() > 0, "{v}");
    let again = env.json(&["retention", "show", s(&store), "--dry-run", "--json"]);
    assert_eq!(again["dry_run"]["versions"], v["dry_run"]["versions"]);

    // A snapshot of the moment now holds, alone, what changed since: `snapshot list` measures
    // it at once (no gc pass needed), the same before gc expires the rest and after, and
    // deleting the snapshot lets exactly those versions expire.
    env.ok(&["snapshot", "create", s(&store), "pin", "--at", &t]);
    let held = |env: &Env| {
        let v = env.json(&["snapshot", "list", s(&store), "--json"]);
        let snap = v["snapshots"][0].clone();
        assert_eq!(snap["name"], "pin", "{v}");
        assert_eq!(snap["exclusive_exact"], true, "{v}");
        (
            snap["exclusive_bytes"].as_u64().unwrap(),
            snap["exclusive_versions"].as_u64().unwrap(),
        )
    };
    let (bytes, versions) = held(&env);
    // d/sub/b's 300,000 bytes and d/a's "one\n", the symlink and the directory, with the
    // delete markers over what is gone.
    assert!(bytes >= 300_004, "{bytes}");
    assert!(versions >= 4, "{versions}");
    let text = env.ok(&["snapshot", "list", s(&store)]);
    assert!(
        text.contains(&format!("in {versions} version(s)")),
        "{text}"
    );
    env.ok(&["gc", "--now", s(&store)]);
    assert_eq!(held(&env), (bytes, versions), "the same after gc");
    let v = env.json(&["retention", "show", s(&store), "--dry-run", "--json"]);
    assert_eq!(
        v["dry_run"]["versions"], 0,
        "the snapshot keeps the rest: {v}"
    );
    env.ok(&["snapshot", "delete", s(&store), "pin"]);
    let v = env.json(&["retention", "show", s(&store), "--dry-run", "--json"]);
    assert_eq!(v["dry_run"]["versions"], versions, "{v}");
}

/// A hard-linked file's names are stubs; its bytes and their history are its inode object's.
/// `versions` of a name lists both (`linked`), `cat --version` takes the inode object's ids,
/// and `cat --at` of a name gives the bytes the file had then: on a mounted store (through
/// the mount process) and on an unmounted one.
#[test]
fn versions_and_cat_of_a_hard_linked_file() {
    let Some((_dir, env, store, mp)) = setup("versions_and_cat_of_a_hard_linked_file") else {
        return;
    };
    env.ok(&["init", s(&store)]);
    let _g = guard(&store, &mp);
    env.ok(&["mount", s(&store), s(&mp)]);
    fs::write(mp.join("a"), b"before the link\n").unwrap();
    fs::hard_link(mp.join("a"), mp.join("b")).unwrap();
    fs::write(mp.join("a"), b"linked, first\n").unwrap();
    let t = moment();
    fs::write(mp.join("b"), b"linked, second\n").unwrap();

    let check = |v: &serde_json::Value, name: &str| {
        assert_eq!(v["key"], name);
        let linked = v["linked"].as_array().expect("linked");
        assert_eq!(linked.len(), 1, "{v}");
        let inode = linked[0]["inode"].as_str().unwrap();
        assert!(inode.starts_with(".objfs/inodes/"), "{inode}");
        let iv = linked[0]["versions"].as_array().unwrap();
        // The copy made at the first link, then the two writes.
        assert_eq!(iv.len(), 3, "{v}");
        assert_eq!(iv[0]["size"], 15);
        assert_eq!(iv[1]["size"], 14);
        assert_eq!(iv[2]["size"], 16);
        iv[1]["version"].as_str().unwrap().to_string()
    };
    // Mounted: the mount process answers.
    let v = env.json(&["versions", "--json", s(&mp.join("b"))]);
    let first = check(&v, "b");
    assert_eq!(
        env.bytes(&["cat", "--version", &first, s(&mp.join("a"))]),
        b"linked, first\n"
    );
    assert_eq!(
        env.bytes(&["cat", "--at", &t, s(&mp.join("b"))]),
        b"linked, first\n"
    );
    let text = env.ok(&["versions", s(&mp.join("a"))]);
    assert!(text.contains("A hard link"), "{text}");
    // The name's own history: the plain file before the link, then its stub.
    let own = v["versions"].as_array().unwrap();
    assert_eq!(own.len(), 1, "b was made as a stub: {v}");
    env.ok(&["umount", s(&mp)]);

    // Unmounted: the command opens the store itself.
    let v = env.json(&["versions", "--json", "--store", s(&store), "a"]);
    let first = check(&v, "a");
    let own = v["versions"].as_array().unwrap();
    assert_eq!(own.len(), 2, "the plain file, then its stub: {v}");
    assert_eq!(own[1]["size"], 16);
    assert_eq!(
        env.bytes(&["cat", "--version", &first, "--store", s(&store), "a"]),
        b"linked, first\n"
    );
    assert_eq!(
        env.bytes(&["cat", "--at", &t, "--store", s(&store), "a"]),
        b"linked, first\n"
    );
}
