//! `objfs mount s3://BUCKET` on the test servers `scripts/test` starts (moto, versioned, and
//! Garage, without versioning), through the real `objfs` binary: shell work on the mount
//! (cp -r, diff -r, mv, rm -rf), an overwrite in the middle of a large file read back after a
//! remount and made of part copies (counted through [`s3_proxy`]), history on moto, interop
//! with objects written without objfs, and two mounts of one bucket. Skipped loudly, by name,
//! when the endpoint variables are unset. Each test has a bucket of its own and always
//! unmounts ([`DaemonMount`] does in `Drop`).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use objfs_store::{Body, ObjectStore, PutOptions};
use objfs_tests::daemon_mount::{objfs_binary, DaemonMount};
use objfs_tests::mount_fixture::skip_without_fuse;
use objfs_tests::s3_cli::{mount_servers, runtime, sh};
use objfs_tests::s3_fixture::{self, unique_name, Server};
use objfs_tests::s3_proxy;

/// A tree of small files, nested directories and one file of a few parts.
fn make_tree(root: &Path) {
    for d in 0..3 {
        let dir = root.join(format!("d{d}/sub"));
        fs::create_dir_all(&dir).expect("mkdir");
        for f in 0..5 {
            fs::write(
                dir.join(format!("f{f}.txt")),
                format!("{d}-{f}\n").repeat(d * 100 + f),
            )
            .expect("write");
        }
    }
    fs::write(root.join("big.bin"), objfs_tests::det_bytes(7, 3 << 20)).expect("write big");
}

#[test]
fn shell_work_on_a_mounted_bucket() {
    for server in mount_servers("shell_work_on_a_mounted_bucket") {
        let tmp = tempfile::tempdir().expect("tempdir");
        let src = tmp.path().join("src");
        make_tree(&src);
        let bucket = server.bucket_for("shell", server.versioned);
        let mut m = server.mount_bucket(&bucket, tmp.path(), "mnt", &[]);
        let mp = m.mountpoint.clone();
        sh(
            &format!("cp -r {} {}/tree", src.display(), mp.display()),
            tmp.path(),
        );
        sh(
            &format!("diff -r {} {}/tree", src.display(), mp.display()),
            tmp.path(),
        );
        // mv of a file and of a directory (copy + delete on S3).
        fs::rename(mp.join("tree/big.bin"), mp.join("tree/moved.bin")).expect("mv file");
        fs::rename(mp.join("tree/d1"), mp.join("tree/d1-moved")).expect("mv dir");
        assert!(!mp.join("tree/big.bin").exists() && !mp.join("tree/d1").exists());
        sh(
            &format!(
                "cmp {0}/big.bin {1}/tree/moved.bin && diff -r {0}/d1 {1}/tree/d1-moved",
                src.display(),
                mp.display()
            ),
            tmp.path(),
        );
        m.stop();
        // After a remount, the bucket holds the same tree; rm -rf empties it.
        let mut m = server.mount_bucket(&bucket, tmp.path(), "mnt", &[]);
        sh(
            &format!("diff -r {0}/d2 {1}/tree/d2", src.display(), mp.display()),
            tmp.path(),
        );
        sh(&format!("rm -rf {}/tree", mp.display()), tmp.path());
        assert_eq!(fs::read_dir(&mp).expect("ls").count(), 0, "{}", server.name);
        m.stop();
        let rt = runtime();
        let store = server.open_bucket(&rt, &bucket);
        let left = rt
            .block_on(store.list(&objfs_store::ListRequest::default()))
            .expect("list");
        assert!(
            left.objects.is_empty(),
            "{}: {:?}",
            server.name,
            left.objects
        );
    }
}

/// 4 KiB overwritten in the middle of a 17 MiB file (parts of 5 MiB) read back right, also
/// after a remount; and, counted through a proxy, where the server copies parts (the store's
/// `part_copy`), the new version was made of UploadPartCopy requests for the unchanged ranges:
/// the bytes uploaded (UploadPart and PutObject) are about one part's, not the file's.
#[test]
fn overwrite_in_the_middle_of_a_large_file() {
    use std::io::{Seek, SeekFrom, Write};
    for server in mount_servers("overwrite_in_the_middle_of_a_large_file") {
        let tmp = tempfile::tempdir().expect("tempdir");
        let bucket = server.bucket_for("overwrite", server.versioned);
        let part_copy = server.open_bucket(&runtime(), &bucket).features().part_copy;
        // The mount talks to the server through a proxy that records its requests.
        let (endpoint, counts) = s3_proxy::start(&server.endpoint);
        let proxied = Server {
            endpoint,
            ..server.clone()
        };
        // Parts of 5 MiB (S3's smallest): 17 MiB is four parts.
        let part = 5u64 << 20;
        let mut m = proxied.mount_bucket(&bucket, tmp.path(), "mnt", &["--part-size", "5M"]);
        let path = m.mountpoint.join("large.bin");
        let mut want = objfs_tests::det_bytes(3, 17 << 20);
        fs::write(&path, &want).expect("write");
        let before = counts.requests().len();
        let at = (8 << 20) + 123;
        let patch = vec![0xA5u8; 4096];
        want[at..at + patch.len()].copy_from_slice(&patch);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open");
        f.seek(SeekFrom::Start(at as u64)).expect("seek");
        f.write_all(&patch).expect("overwrite");
        f.sync_all().expect("fsync");
        drop(f);
        assert!(fs::read(&path).expect("read") == want, "{}", server.name);
        // Unmounting finishes every upload: what the overwrite cost is all counted now.
        m.stop();
        let requests = counts.requests();
        let after = &requests[before..];
        let of = |op: &'static str| after.iter().filter(move |r| r.operation() == op);
        let copies = of("UploadPartCopy").count();
        let copied: u64 = of("UploadPartCopy").filter_map(|r| r.copy_range).sum();
        let uploaded: u64 = of("UploadPart")
            .chain(of("PutObject"))
            .map(|r| r.body)
            .sum();
        let size = want.len() as u64;
        let seen = format!(
            "{}: {copies} part copies of {copied} bytes, {uploaded} bytes uploaded, for an \
             overwrite of {} bytes in a file of {size}",
            server.name,
            patch.len()
        );
        eprintln!("overwrite_in_the_middle_of_a_large_file: {seen}");
        assert!(of("CompleteMultipartUpload").count() >= 1, "{seen}");
        if part_copy {
            // The overwrite touches one part; the three others are copied on the server.
            assert!(copies >= 3, "{seen}");
            assert!(uploaded >= patch.len() as u64, "{seen}");
            assert!(uploaded <= part + (part >> 3), "{seen}");
            assert!(copied + uploaded >= size && copied >= size - part, "{seen}");
        } else {
            assert_eq!(copies, 0, "{seen}");
        }
        let mut m = server.mount_bucket(&bucket, tmp.path(), "mnt", &[]);
        let got = fs::read(m.mountpoint.join("large.bin")).expect("read after remount");
        assert!(got == want, "{}: bytes differ after remount", server.name);
        m.stop();
    }
}

#[test]
fn history_of_a_file_overwritten_through_the_mount() {
    if skip_without_fuse("history_of_a_file_overwritten_through_the_mount") {
        return;
    }
    let Some(server) = s3_fixture::moto() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let bucket = server.bucket_for("history", server.versioned);
    let mut m = server.mount_bucket(&bucket, tmp.path(), "mnt", &[]);
    let path = m.mountpoint.join("notes.txt");
    fs::write(&path, "first\n").expect("write");
    // Versions are told apart by their times, at S3's 1 s resolution.
    std::thread::sleep(Duration::from_millis(2100));
    let between = SystemTime::now();
    std::thread::sleep(Duration::from_millis(1100));
    fs::write(&path, "second\n").expect("overwrite");
    let out = Command::new(objfs_binary())
        .args(["versions", "--json"])
        .arg(&path)
        .output()
        .expect("objfs versions");
    assert!(
        out.status.success(),
        "objfs versions: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["versions"].as_array().map(Vec::len), Some(2), "{v}");
    let moment = objfs_store::history::time::format_rfc3339(between);
    let old = m.mountpoint.join(format!(".snapshots/@{moment}/notes.txt"));
    assert_eq!(fs::read_to_string(&old).expect("read the past"), "first\n");
    assert_eq!(fs::read_to_string(&path).expect("read now"), "second\n");
    m.stop();
}

#[test]
fn objects_written_without_objfs_and_files_written_with_it() {
    for server in mount_servers("objects_written_without_objfs_and_files_written_with_it") {
        let tmp = tempfile::tempdir().expect("tempdir");
        let bucket = server.bucket_for("interop", server.versioned);
        let rt = runtime();
        let store = server.open_bucket(&rt, &bucket);
        rt.block_on(store.put("plain/hello.txt", Body::from("hi\n"), PutOptions::default()))
            .expect("put without metadata");
        let mut m = server.mount_bucket(&bucket, tmp.path(), "mnt", &[]);
        let mp = m.mountpoint.clone();
        let f = fs::metadata(mp.join("plain/hello.txt")).expect("stat the object");
        let d = fs::metadata(mp.join("plain")).expect("stat the prefix");
        assert_eq!(f.mode() & 0o7777, 0o644, "{}", server.name);
        assert_eq!(d.mode() & 0o7777, 0o755, "{}", server.name);
        assert!(f.is_file() && d.is_dir());
        assert_eq!(f.uid(), nix::unistd::getuid().as_raw());
        assert_eq!(f.gid(), nix::unistd::getgid().as_raw());
        let age = SystemTime::now()
            .duration_since(f.modified().expect("mtime"))
            .unwrap_or_default();
        assert!(
            age < Duration::from_secs(600),
            "mtime from Last-Modified: {age:?}"
        );
        assert_eq!(
            fs::read_to_string(mp.join("plain/hello.txt")).expect("read"),
            "hi\n"
        );

        let mine = mp.join("mine.txt");
        fs::write(&mine, "objfs\n").expect("write");
        fs::set_permissions(&mine, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod");
        let mtime = fs::metadata(&mine).expect("stat").mtime();
        m.stop();
        let info = rt
            .block_on(store.head("mine.txt", None))
            .expect("one object");
        let meta = |k: &str| info.metadata.get(k).cloned().unwrap_or_default();
        assert_eq!(info.size, 6);
        assert_eq!(
            meta("x-amz-meta-mode")
                .trim()
                .parse::<u32>()
                .ok()
                .map(|m| m & 0o7777),
            Some(0o600),
            "{:?}",
            info.metadata
        );
        assert_eq!(
            meta("x-amz-meta-uid"),
            nix::unistd::getuid().as_raw().to_string()
        );
        assert_eq!(
            meta("x-amz-meta-gid"),
            nix::unistd::getgid().as_raw().to_string()
        );
        assert_eq!(
            meta("x-amz-meta-mtime"),
            mtime.to_string(),
            "{:?}",
            info.metadata
        );
    }
}

#[test]
fn two_mounts_of_one_bucket_see_each_others_closed_files() {
    for server in mount_servers("two_mounts_of_one_bucket_see_each_others_closed_files") {
        let tmp = tempfile::tempdir().expect("tempdir");
        let bucket = server.bucket_for("two", server.versioned);
        // a's closes are uploads, so that b's first question is answered by the bucket.
        let mut a = server.mount_bucket(
            &bucket,
            tmp.path(),
            "a",
            &["-o", "attr_ttl=1", "--write-through"],
        );
        // Two processes standing in for two machines. One machine registers one mount per
        // location (URL and endpoint), so the second reaches the same server by another name.
        let mp_b = tmp.path().join("b");
        let mut args = server.cli_args();
        // b reuses the bucket's answers for names and attributes for 5 s; opens ask again
        // after the attribute TTL.
        args.extend(["--attr-ttl", "1", "--metadata-ttl", "5"].map(String::from));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let endpoint_b = server.endpoint.replace("127.0.0.1", "localhost");
        let mut args_b: Vec<&str> = args.clone();
        args_b[1] = &endpoint_b;
        let mut b = DaemonMount::start_source(
            &format!("s3://{bucket}"),
            &mp_b,
            &args_b,
            &tmp.path().join("b.log"),
        );
        // b lists the root first: its answer (no shared.txt) is kept for the metadata TTL.
        let before: Vec<_> = fs::read_dir(&mp_b).expect("ls b").collect();
        assert!(before.is_empty(), "{}: {before:?}", server.name);
        fs::write(a.mountpoint.join("shared.txt"), "from a\n").expect("write on a");
        let start = Instant::now();
        loop {
            match fs::read_to_string(mp_b.join("shared.txt")) {
                Ok(t) if t == "from a\n" => break,
                _ if start.elapsed() < Duration::from_secs(15) => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                other => panic!("{}: b never saw a's file: {other:?}", server.name),
            }
        }
        // An overwrite on a is read whole by the next open on b past the attribute TTL,
        // although b's answer for the name (the old size) is still within its metadata TTL.
        let longer = "from a, a second version that is longer than the first\n";
        fs::write(a.mountpoint.join("shared.txt"), longer).expect("overwrite on a");
        std::thread::sleep(Duration::from_millis(1500));
        let got = fs::read_to_string(mp_b.join("shared.txt")).expect("read on b");
        assert_eq!(got, longer, "{}: b's open read an old version", server.name);
        a.stop();
        b.stop();
    }
}

/// Runs `objfs mount SOURCE MP ARGS` (a daemon) expecting it to fail with exit status 1 and
/// `what` in its message; unmounts whatever it mounted if it did not fail.
fn mount_fails(source: &str, mp: &Path, args: &[&str], env: &[(&str, &str)], what: &str) {
    let out = Command::new(objfs_binary())
        .arg("mount")
        .arg(source)
        .arg(mp)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run objfs mount");
    if objfs_tests::mount_fixture::is_mounted(mp) {
        objfs_tests::mount_fixture::force_unmount(mp);
        panic!("objfs mount {source} {args:?} mounted; expected: {what}");
    }
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{source} {args:?}: {err}");
    assert!(
        err.contains(what),
        "{source} {args:?}: expected {what:?} in: {err}"
    );
    assert!(!mp.exists(), "a failed mount left its mount point behind");
}

#[test]
fn mount_time_errors_are_clear() {
    if skip_without_fuse("mount_time_errors_are_clear") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let mp = tmp.path().join("mnt");
    // Nothing listens on a port just released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let dead = format!("http://127.0.0.1:{port}");
    mount_fails(
        "s3://nobody",
        &mp,
        &["--endpoint", &dead, "--region", "us-east-1"],
        &[
            ("AWS_ACCESS_KEY_ID", "x"),
            ("AWS_SECRET_ACCESS_KEY", "y"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
        "the endpoint does not answer",
    );
    for server in mount_servers("mount_time_errors_are_clear") {
        let args = server.cli_args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let missing = unique_name("missing");
        mount_fails(
            &format!("s3://{missing}"),
            &mp,
            &args,
            &[],
            "the bucket does not exist",
        );
        if server.name == "garage" {
            // Garage checks signatures (moto accepts any key).
            mount_fails(
                &format!("s3://{}", server.bucket),
                &mp,
                &["--endpoint", &server.endpoint, "--region", &server.region],
                &[
                    ("AWS_ACCESS_KEY_ID", "GKbad"),
                    ("AWS_SECRET_ACCESS_KEY", "bad"),
                ],
                "the credentials were refused",
            );
        }
    }
}

/// `objfs mount s3://... --at TIME`: on a versioned bucket (moto) the files as they were at
/// that moment, read-only, beside a live mount of the same bucket; a bucket without
/// versioning (Garage) is refused, nothing mounted.
#[test]
fn a_mount_of_a_past_moment_of_a_bucket() {
    for server in mount_servers("a_mount_of_a_past_moment_of_a_bucket") {
        let tmp = tempfile::tempdir().expect("tempdir");
        let bucket = server.bucket_for("at", server.versioned);
        let moment = objfs_store::history::time::format_rfc3339(SystemTime::now());
        if !server.versioned {
            let mp = tmp.path().join("past");
            fs::create_dir(&mp).unwrap();
            let url = format!("s3://{bucket}");
            let mp_s = mp.display().to_string();
            server.objfs_fails(
                &["mount", &url, &mp_s, "--at", &moment],
                "keeps no versions",
            );
            assert!(!objfs_tests::mount_fixture::is_mounted(&mp));
            continue;
        }
        let rt = runtime();
        let store = server.open_bucket(&rt, &bucket);
        let put = |k: &str, v: &str| {
            rt.block_on(store.put(k, Body::from(v.as_bytes().to_vec()), PutOptions::default()))
                .expect("put");
        };
        put("d/f.txt", "old\n");
        put("gone.txt", "here then\n");
        // Versions are told apart by their times, at S3's 1 s resolution.
        std::thread::sleep(Duration::from_millis(2100));
        let between = SystemTime::now();
        std::thread::sleep(Duration::from_millis(1100));
        put("d/f.txt", "new\n");
        put("later.txt", "not yet\n");
        rt.block_on(store.delete("gone.txt")).expect("delete");
        let mut live = server.mount_bucket(&bucket, tmp.path(), "live", &[]);
        let moment = objfs_store::history::time::format_rfc3339(between);
        let mut past = server.mount_bucket(&bucket, tmp.path(), "past", &["--at", &moment]);
        let p = past.mountpoint.clone();
        assert_eq!(fs::read_to_string(p.join("d/f.txt")).unwrap(), "old\n");
        assert_eq!(
            fs::read_to_string(p.join("gone.txt")).unwrap(),
            "here then\n"
        );
        assert!(!p.join("later.txt").exists());
        let mut names: Vec<String> = fs::read_dir(&p)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["d", "gone.txt"]);
        let err = fs::write(p.join("new.txt"), "x").expect_err("read-only");
        assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
        assert_eq!(
            fs::read_to_string(live.mountpoint.join("d/f.txt")).unwrap(),
            "new\n"
        );
        past.stop();
        live.stop();
    }
}
