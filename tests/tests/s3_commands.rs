//! The `objfs` commands on a bucket, through the real binary, with `--endpoint/--region/
//! --profile` on each: turning versioning on (moto accepts, also through `objfs mount
//! --enable-versioning`; Garage refuses clearly), named snapshots (seen under
//! `.snapshots/NAME/` of a mount), retention, `gc --now` as a retention pass, restore of an
//! unmounted bucket and of a mounted bucket's path, history commands on a bucket that keeps no
//! versions, `df`/`status` of a mounted bucket, and the `mount.objfs` helper (fstab syntax)
//! mounting `s3://BUCKET/PREFIX` with `-o endpoint=,region=,profile=`. Skipped loudly, by
//! name, when the endpoint variables are unset. Every mount is unmounted ([`DaemonMount`], and
//! [`HelperMount`] for the helper's daemon).

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use objfs_store::history::time::format_rfc3339;
use objfs_store::{Body, ErrorKind, GetOptions, ListVersionsRequest, ObjectStore, PutOptions};
use objfs_tests::daemon_mount::objfs_binary;
use objfs_tests::mount_fixture::{force_unmount, is_mounted, skip_without_fuse};
use objfs_tests::s3_cli::runtime;
use objfs_tests::s3_fixture::{self, Server};

/// moto, unless its variables (or FUSE) are missing: then a loud skip.
fn moto(test: &str) -> Option<Server> {
    if skip_without_fuse(test) {
        return None;
    }
    s3_fixture::moto()
}

/// Garage, likewise.
fn garage(test: &str) -> Option<Server> {
    if skip_without_fuse(test) {
        return None;
    }
    s3_fixture::garage()
}

/// S3 times are whole seconds: waits past the next second boundary, twice over, and returns
/// a moment strictly between what was written before and what is written after.
fn moment_between() -> SystemTime {
    std::thread::sleep(Duration::from_millis(2100));
    let t = SystemTime::now();
    std::thread::sleep(Duration::from_millis(1100));
    t
}

#[test]
fn versioning_enable_then_history_snapshots_and_retention_on_moto() {
    let test = "versioning_enable_then_history_snapshots_and_retention_on_moto";
    let Some(server) = moto(test) else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    // A bucket made without versioning: history says so, until versioning is turned on.
    let bucket = server.bucket_for("enable", false);
    let url = format!("s3://{bucket}");
    server.objfs_fails(
        &["snapshot", "list", &url],
        "keeps no versions (its versioning is off)",
    );
    let v = server.objfs_json(&["versioning", "show", &url]);
    assert_eq!(v["versioning"], false, "{v}");
    let out = server.objfs_ok(&["versioning", "enable", &url]);
    assert!(out.contains("versioning on"), "{out}");

    // Mounted: versions, a named snapshot (by the mount process), .snapshots/NAME/.
    let mut m = server.mount_bucket(&bucket, tmp.path(), "mnt", &[]);
    let path = m.mountpoint.join("notes.txt");
    fs::write(&path, "first\n").expect("write");
    let between = format_rfc3339(moment_between());
    fs::write(&path, "second\n").expect("overwrite");
    let v = server.objfs_json(&["versions", "--store", &url, "notes.txt"]);
    assert_eq!(v["versions"].as_array().map(Vec::len), Some(2), "{v}");
    server.objfs_ok(&["snapshot", "create", &url, "before", "--at", &between]);
    let snap = m.mountpoint.join(".snapshots/before/notes.txt");
    assert_eq!(
        fs::read_to_string(&snap).expect("read .snapshots/before"),
        "first\n"
    );
    assert_eq!(fs::read_to_string(&path).expect("read now"), "second\n");
    let names: Vec<String> = fs::read_dir(m.mountpoint.join(".snapshots"))
        .expect("ls .snapshots")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.contains(&"before".to_string()), "{names:?}");
    // The record is in the bucket, under the reserved prefix.
    let rt = runtime();
    let store = server.open_bucket(&rt, &bucket);
    let records = rt
        .block_on(store.list_records("snapshot/"))
        .expect("list records");
    assert_eq!(
        records.len(),
        1,
        "{:?}",
        records.iter().map(|r| &r.0).collect::<Vec<_>>()
    );
    m.stop();

    // Not mounted: the same commands, opened by the command itself.
    let list = server.objfs_json(&["snapshot", "list", &url]);
    assert_eq!(list["snapshots"][0]["name"], "before", "{list}");
    let old = server.objfs_ok(&["cat", "--store", &url, "--at", &between, "notes.txt"]);
    assert_eq!(old, "first\n");
    let set = server.objfs_json(&["retention", "set", &url, "--keep-all", "1h"]);
    assert_eq!(set["policy"]["keep_all_s"], 3600, "{set}");
    let show = server.objfs_json(&["retention", "show", &url, "--dry-run"]);
    assert_eq!(show["policy"]["keep_all_s"], 3600, "{show}");
    assert_eq!(
        show["dry_run"]["versions"], 0,
        "everything is younger than 1h: {show}"
    );
    server.objfs_ok(&["snapshot", "delete", &url, "before"]);
    let list = server.objfs_json(&["snapshot", "list", &url]);
    assert_eq!(
        list["snapshots"].as_array().map(Vec::len),
        Some(0),
        "{list}"
    );
}

#[test]
fn garage_refuses_versioning_clearly_and_history_says_so() {
    let test = "garage_refuses_versioning_clearly_and_history_says_so";
    let Some(server) = garage(test) else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let bucket = server.bucket_for("noversions", false);
    let url = format!("s3://{bucket}");
    server.objfs_fails(&["versioning", "enable", &url], "versioning");
    let out = server.objfs(&["versioning", "enable", &url]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refused to turn on versioning") || err.contains("still reports it off"),
        "{err}"
    );
    // A mount asked to turn it on fails the same way, and mounts nothing.
    let mp = tmp.path().join("mnt");
    let mut args = vec!["mount", "--enable-versioning", url.as_str()];
    let mp_text = mp.display().to_string();
    args.push(&mp_text);
    server.objfs_fails(&args, "versioning");
    assert!(!is_mounted(&mp));
    // History commands, mounted or not, say the bucket keeps no versions.
    for args in [
        vec!["snapshot", "list", url.as_str()],
        vec!["retention", "show", url.as_str()],
        vec!["versions", "--store", url.as_str(), "a.txt"],
        vec!["restore", "--store", url.as_str(), "", "--as-of", "-1m"],
        vec!["gc", url.as_str(), "--now"],
    ] {
        server.objfs_fails(&args, "keeps no versions");
    }
    let mut m = server.mount_bucket(&bucket, tmp.path(), "mnt", &[]);
    fs::write(m.mountpoint.join("a.txt"), "a\n").expect("write");
    server.objfs_fails(
        &[
            "versions",
            &m.mountpoint.join("a.txt").display().to_string(),
        ],
        "keeps no versions",
    );
    server.objfs_fails(&["snapshot", "create", &url, "x"], "keeps no versions");
    m.stop();
}

#[test]
fn restore_a_bucket_prefix_unmounted_and_a_mounted_path() {
    let test = "restore_a_bucket_prefix_unmounted_and_a_mounted_path";
    let Some(server) = moto(test) else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let bucket = server.bucket_for("restore", true);
    let url = format!("s3://{bucket}");
    let rt = runtime();
    let store = server.open_bucket(&rt, &bucket);
    let put = |k: &str, v: &'static str| {
        rt.block_on(store.put(k, Body::from(v), PutOptions::default()))
            .expect("put");
    };
    for i in 0..5 {
        put(&format!("photos/{i}.jpg"), "old");
    }
    put("keep/x.txt", "x");
    let before = format_rfc3339(moment_between());
    for i in 0..3 {
        rt.block_on(store.delete(&format!("photos/{i}.jpg")))
            .expect("delete");
    }
    put("photos/4.jpg", "new");
    // Unmounted: a dry run, then the job, its records in the bucket.
    let plan = server.objfs_ok(&[
        "restore",
        "--store",
        &url,
        "photos/",
        "--as-of",
        &before,
        "--dry-run",
    ]);
    assert!(
        plan.contains("4 step(s) (3 undelete, 1 revert, 0 delete)"),
        "{plan}"
    );
    server.objfs_ok(&[
        "restore", "--store", &url, "photos/", "--as-of", &before, "--quiet",
    ]);
    for i in 0..5 {
        let got = rt
            .block_on(async {
                store
                    .get(&format!("photos/{i}.jpg"), Default::default())
                    .await?
                    .bytes()
                    .await
            })
            .expect("restored");
        assert_eq!(&got[..], b"old", "photos/{i}.jpg");
    }
    let jobs = rt
        .block_on(store.list_records("restore/jobs/"))
        .expect("job records");
    assert_eq!(jobs.len(), 1, "one job record in the bucket");

    // Mounted: delete through the mount, restore the mount's directory by its path.
    let mut m = server.mount_bucket(&bucket, tmp.path(), "mnt", &[]);
    let dir = m.mountpoint.join("photos");
    let moment = format_rfc3339(moment_between());
    fs::remove_file(dir.join("0.jpg")).expect("rm");
    fs::write(dir.join("1.jpg"), "changed").expect("overwrite");
    server.objfs_ok(&[
        "restore",
        &dir.display().to_string(),
        "--as-of",
        &moment,
        "--quiet",
    ]);
    assert_eq!(
        fs::read_to_string(dir.join("0.jpg")).expect("undeleted"),
        "old"
    );
    assert_eq!(
        fs::read_to_string(dir.join("1.jpg")).expect("reverted"),
        "old"
    );
    m.stop();
    // History was never destroyed: every version is still listed.
    let versions = rt
        .block_on(store.list_versions(&ListVersionsRequest {
            prefix: "photos/0.jpg".into(),
            ..Default::default()
        }))
        .expect("versions");
    assert!(versions.versions.len() >= 5, "{:?}", versions.versions);
}

#[test]
fn gc_of_a_bucket_expires_by_the_policy_and_keeps_current_and_snapshots() {
    let test = "gc_of_a_bucket_expires_by_the_policy_and_keeps_current_and_snapshots";
    let Some(server) = moto(test) else { return };
    let bucket = server.bucket_for("gc", true);
    let url = format!("s3://{bucket}");
    let rt = runtime();
    let store = server.open_bucket(&rt, &bucket);
    let put = |k: &str, v: &'static str| {
        rt.block_on(store.put(k, Body::from(v), PutOptions::default()))
            .expect("put");
    };
    put("a", "1");
    let t1 = moment_between();
    put("a", "22");
    let pinned = format_rfc3339(moment_between());
    put("a", "333");
    let _ = t1;
    put("gone", "g");
    rt.block_on(store.delete("gone")).expect("delete");
    server.objfs_ok(&["snapshot", "create", &url, "pin", "--at", &pinned]);
    server.objfs_ok(&[
        "retention",
        "set",
        &url,
        "--keep-all",
        "1s",
        "--hourly",
        "1s",
        "--daily",
        "1s",
        "--deleted",
        "1s",
    ]);
    std::thread::sleep(Duration::from_millis(2100));
    let dry = server.objfs_json(&["retention", "show", &url, "--dry-run"]);
    assert_eq!(dry["dry_run"]["versions"], 3, "{dry}");
    let v = server.objfs_json(&["gc", &url, "--now"]);
    assert_eq!(v["retention_pass"]["expired_versions"], 3, "{v}");
    assert_eq!(
        v["retention_pass"]["snapshots_exclusive"]["pin"]["bytes"], 2,
        "{v}"
    );
    let left: Vec<(String, u64, bool)> = rt
        .block_on(store.list_versions(&ListVersionsRequest::default()))
        .expect("versions")
        .versions
        .into_iter()
        .map(|v| (v.key, v.size, v.is_delete_marker))
        .collect();
    // "a": the current version and the one the snapshot sees; "gone": nothing.
    assert_eq!(
        left,
        [("a".to_string(), 3, false), ("a".to_string(), 2, false)],
        "{left:?}"
    );
    let list = server.objfs_json(&["snapshot", "list", &url]);
    assert_eq!(list["snapshots"][0]["exclusive_bytes"], 2, "{list}");
    let again = server.objfs_json(&["gc", &url, "--now"]);
    assert_eq!(again["retention_pass"]["expired_versions"], 0, "{again}");
}

#[test]
fn df_and_status_of_a_mounted_bucket() {
    for server in [
        moto("df_and_status_of_a_mounted_bucket"),
        garage("df_and_status_of_a_mounted_bucket"),
    ]
    .into_iter()
    .flatten()
    {
        let tmp = tempfile::tempdir().expect("tempdir");
        let bucket = server.bucket_for("df", server.versioned);
        let url = format!("s3://{bucket}");
        // Write-through: with the write-back journal, statfs adds pending bytes to a listing of
        // the bucket, and an upload landing between the two can be counted once too few
        // (docs/S3.md, write-back); this test checks the bucket's exact figures.
        let mut m = server.mount_bucket(&bucket, tmp.path(), "mnt", &["--write-through"]);
        fs::write(m.mountpoint.join("one.bin"), vec![1u8; 1 << 20]).expect("write");
        fs::create_dir(m.mountpoint.join("d")).expect("mkdir");
        fs::write(m.mountpoint.join("d/two.bin"), vec![2u8; 3 << 20]).expect("write");
        let st = nix::sys::statvfs::statvfs(&m.mountpoint).expect("statvfs");
        let frsize = st.fragment_size() as u64;
        let used = (st.blocks() as u64 - st.blocks_free() as u64) * frsize;
        let total = st.blocks() as u64 * frsize;
        // A nominal 1 PiB free, and the bytes the bucket holds (files and directory markers).
        assert!(total >= 1 << 50, "{}: total {total}", server.name);
        assert_eq!(st.blocks_available(), st.blocks_free());
        assert!(
            (4 << 20..(4 << 20) + 64 * frsize).contains(&used),
            "{}: used {used}",
            server.name
        );
        let objects = st.files() as u64 - st.files_free() as u64;
        assert!(
            (2..=3).contains(&objects),
            "{}: objects {objects}",
            server.name
        );
        let status = server.objfs_json(&["status", &url]);
        assert_eq!(
            status["mount"]["mountpoint"],
            m.mountpoint.display().to_string(),
            "{status}"
        );
        assert_eq!(status["s3"]["versioning"], server.versioned, "{status}");
        // The mount point names the same store.
        let by_mp = server.objfs_json(&["status", &m.mountpoint.display().to_string()]);
        assert_eq!(by_mp["s3"]["bucket"], bucket.as_str(), "{by_mp}");
        m.stop();
    }
}

/// `objfs mount --enable-versioning` of a bucket made without versioning (moto allows it):
/// the mount comes up with versioning on, a file overwritten twice has three versions (seen
/// through the mount and in the bucket after unmounting), and the bucket stays versioned.
#[test]
fn mount_enable_versioning_turns_it_on_on_moto() {
    let test = "mount_enable_versioning_turns_it_on_on_moto";
    let Some(server) = moto(test) else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let bucket = server.bucket_for("mountver", false);
    let url = format!("s3://{bucket}");
    let v = server.objfs_json(&["versioning", "show", &url]);
    assert_eq!(v["versioning"], false, "a fresh bucket: {v}");
    let mut m = server.mount_bucket(&bucket, tmp.path(), "mnt", &["--enable-versioning"]);
    let mp = m.mountpoint.display().to_string();
    let status = server.objfs_json(&["status", &mp]);
    assert_eq!(status["s3"]["versioning"], true, "{status}");
    let path = m.mountpoint.join("notes.txt");
    for text in ["one\n", "two\n", "three\n"] {
        fs::write(&path, text).expect("write");
    }
    let v = server.objfs_json(&["versions", &path.display().to_string()]);
    assert_eq!(v["versions"].as_array().map(Vec::len), Some(3), "{v}");
    m.stop();
    let v = server.objfs_json(&["versioning", "show", &url]);
    assert_eq!(v["versioning"], true, "{v}");
    let rt = runtime();
    let store = server.open_bucket(&rt, &bucket);
    assert!(store.features().versioning);
    let versions = rt
        .block_on(store.list_versions(&ListVersionsRequest {
            prefix: "notes.txt".into(),
            ..Default::default()
        }))
        .expect("versions")
        .versions;
    let sizes: Vec<u64> = versions.iter().map(|v| v.size).collect();
    assert_eq!(sizes, [6, 4, 4], "newest first: {versions:?}");
}

/// A mount made by the `mount.objfs` helper: the daemon forks away, so this guard unmounts
/// (`fusermount3 -u -z`) and waits for the daemon in `Drop`, whatever happened, and kills it
/// if it outlives the wait.
struct HelperMount {
    mountpoint: PathBuf,
    /// The daemon's pid, once `objfs status` named it.
    pid: Option<i32>,
}

/// Whether process `pid` runs (a zombie does not).
fn alive(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|st| {
        !st.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// Waits up to `limit` for process `pid` to end; whether it did.
fn ended(pid: i32, limit: Duration) -> bool {
    let start = Instant::now();
    while alive(pid) {
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

impl Drop for HelperMount {
    fn drop(&mut self) {
        if is_mounted(&self.mountpoint) {
            force_unmount(&self.mountpoint);
        }
        if let Some(pid) = self.pid {
            if !ended(pid, Duration::from_secs(30)) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

/// fstab's `s3://BUCKET/PREFIX MNT objfs _netdev,endpoint=...,region=...,profile=...`: mount(8)
/// runs `mount.objfs SOURCE MNT -n -o OPTIONS`; the helper mounts the bucket's prefix with
/// the endpoint, region and profile of its options, a file written through it reaches the
/// bucket under the prefix, and `objfs umount` ends the daemon.
#[test]
fn mount_helper_mounts_an_s3_source_with_its_options() {
    let test = "mount_helper_mounts_an_s3_source_with_its_options";
    let Some(server) = moto(test) else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let bucket = server.bucket_for("fstab", true);
    let source = format!("s3://{bucket}/fstab/home");
    let mp = tmp.path().join("mnt");
    fs::create_dir(&mp).expect("mkdir");
    let helper = tmp.path().join("mount.objfs");
    std::os::unix::fs::symlink(objfs_binary(), &helper).expect("symlink mount.objfs");
    let mut opts = format!(
        "rw,_netdev,endpoint={},region={},journal_dir={}",
        server.endpoint,
        server.region,
        tmp.path().join("journal").display()
    );
    if let Some(p) = &server.profile {
        opts.push_str(&format!(",profile={p}"));
    }
    let mut guard = HelperMount {
        mountpoint: mp.clone(),
        pid: None,
    };
    let out = Command::new(&helper)
        .arg(&source)
        .arg(&mp)
        .args(["-n", "-o", &opts])
        .output()
        .expect("run mount.objfs");
    assert!(
        out.status.success(),
        "mount.objfs {source} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        is_mounted(&mp),
        "mount.objfs returned, but nothing is mounted"
    );
    let status = server.objfs_json(&["status", &mp.display().to_string()]);
    guard.pid = status["mount"]["pid"].as_i64().map(|p| p as i32);
    assert!(guard.pid.is_some(), "{status}");
    assert_eq!(status["s3"]["bucket"], bucket.as_str(), "{status}");
    assert_eq!(status["s3"]["prefix"], "fstab/home/", "{status}");
    assert_eq!(
        status["s3"]["endpoint"],
        server.endpoint.as_str(),
        "{status}"
    );

    let data = b"written through mount.objfs\n";
    fs::create_dir(mp.join("docs")).expect("mkdir through the mount");
    fs::write(mp.join("docs/hello.txt"), data).expect("write through the mount");
    // The upload runs in the background (write-back): the object appears under the prefix.
    let rt = runtime();
    let root = server.open_bucket(&rt, &bucket);
    let key = "fstab/home/docs/hello.txt";
    let start = Instant::now();
    let got = loop {
        let r = rt.block_on(async { root.get(key, GetOptions::default()).await?.bytes().await });
        match r {
            Ok(b) => break b,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                assert!(
                    start.elapsed() < Duration::from_secs(60),
                    "{key} did not reach the bucket within 60 s"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("get {key}: {e}"),
        }
    };
    assert_eq!(&got[..], data);
    let outside = rt.block_on(root.head("docs/hello.txt", None));
    assert!(outside.is_err(), "written outside the prefix: {outside:?}");

    let out = Command::new(objfs_binary())
        .arg("umount")
        .arg(&mp)
        .output()
        .expect("objfs umount");
    assert!(
        out.status.success(),
        "objfs umount: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!is_mounted(&mp));
    let pid = guard.pid.expect("the daemon's pid");
    assert!(
        ended(pid, Duration::from_secs(30)),
        "the daemon {pid} still runs after umount"
    );
}
