//! Interop with the AWS CLI, both ways, on moto and on Garage: a file written through an objfs
//! mount is one object that `aws s3 cp` reads back byte for byte, its POSIX attributes in
//! s3fs's user metadata (`x-amz-meta-mode/uid/gid/mtime`, checked with `aws s3api
//! head-object`); and objects `aws s3 cp` uploads (one small, one large enough for the CLI's
//! multipart upload) appear in a mount with sensible attributes and the right bytes, and objects
//! uploaded with s3fs's metadata (a script of mode 0750 with an owner and mtime, a symlink, a
//! directory object) appear with those attributes, the symlink as a symlink. Skipped
//! loudly when the endpoint variables or `OBJFS_TEST_AWS_CLI` are unset (scripts/test sets
//! them). Every mount is unmounted ([`objfs_tests::daemon_mount::DaemonMount`]).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::{Duration, SystemTime};

use objfs_tests::mount_fixture::skip_without_fuse;
use objfs_tests::s3_cli::AwsCli;
use objfs_tests::s3_fixture;

#[test]
fn aws_cli_reads_what_objfs_wrote_and_objfs_shows_what_it_uploaded() {
    let test = "aws_cli_reads_what_objfs_wrote_and_objfs_shows_what_it_uploaded";
    if skip_without_fuse(test) {
        return;
    }
    let servers: Vec<_> = [s3_fixture::moto(), s3_fixture::garage()]
        .into_iter()
        .flatten()
        .collect();
    if servers.is_empty() {
        eprintln!("{test}: SKIPPED: no S3 test server (run it with scripts/test)");
    }
    for server in servers {
        let tmp = tempfile::tempdir().expect("tempdir");
        let Some(aws) = AwsCli::find(test, &server, tmp.path()) else {
            continue;
        };
        let bucket = server.bucket_for("awscli", server.versioned);
        let uid = nix::unistd::getuid().as_raw();
        let gid = nix::unistd::getgid().as_raw();

        // objfs -> aws.
        let mut m = server.mount_bucket(&bucket, tmp.path(), "mnt", &[]);
        let data = objfs_tests::det_bytes(11, 200_000);
        let file = m.mountpoint.join("docs/report.bin");
        fs::create_dir(m.mountpoint.join("docs")).expect("mkdir");
        fs::write(&file, &data).expect("write through the mount");
        fs::set_permissions(&file, fs::Permissions::from_mode(0o640)).expect("chmod");
        let mtime = fs::metadata(&file).expect("stat").mtime();
        m.stop();
        let copied = tmp.path().join("copied.bin");
        aws.run(&[
            "s3",
            "cp",
            &format!("s3://{bucket}/docs/report.bin"),
            &copied.display().to_string(),
        ]);
        assert!(
            fs::read(&copied).expect("read the copy") == data,
            "{}",
            server.name
        );
        let head = aws.run(&[
            "s3api",
            "head-object",
            "--bucket",
            &bucket,
            "--key",
            "docs/report.bin",
        ]);
        let head: serde_json::Value = serde_json::from_slice(&head).expect("head-object JSON");
        let meta = &head["Metadata"];
        assert_eq!(head["ContentLength"], data.len(), "{}: {head}", server.name);
        let mode: u32 = meta["mode"]
            .as_str()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        assert_eq!(
            mode, 0o100640,
            "{}: mode with the file type, as s3fs: {head}",
            server.name
        );
        assert_eq!(meta["uid"], uid.to_string(), "{head}");
        assert_eq!(meta["gid"], gid.to_string(), "{head}");
        assert_eq!(meta["mtime"], mtime.to_string(), "{head}");
        let listed = aws.run(&["s3", "ls", &format!("s3://{bucket}/docs/")]);
        let listed = String::from_utf8_lossy(&listed);
        assert!(listed.contains("report.bin"), "{}: {listed}", server.name);

        // aws -> objfs: a small object and one the CLI uploads in parts (over its 8 MiB
        // threshold).
        let small = tmp.path().join("small.txt");
        fs::write(&small, "uploaded by aws\n").expect("write");
        let large_data = objfs_tests::det_bytes(12, (9 << 20) + 123);
        let large = tmp.path().join("large.bin");
        fs::write(&large, &large_data).expect("write");
        for (src, key) in [(&small, "up/small.txt"), (&large, "up/large.bin")] {
            aws.run(&[
                "s3",
                "cp",
                &src.display().to_string(),
                &format!("s3://{bucket}/{key}"),
            ]);
        }
        // Objects as s3fs writes them: its attributes in user metadata (the full st_mode in
        // decimal, owner, mtime in seconds), a symlink as an object of mode S_IFLNK whose body
        // is the target, a directory as a `d/` object of mode S_IFDIR.
        let exe = tmp.path().join("tool.sh");
        fs::write(&exe, "#!/bin/sh\necho s3fs\n").expect("write");
        let target = tmp.path().join("target.txt");
        fs::write(&target, "tool.sh").expect("write");
        for (src, key, mode) in [
            (&exe, "s3fs/tool.sh", 0o100750),
            (&target, "s3fs/link", 0o120777),
        ] {
            aws.run(&[
                "s3",
                "cp",
                &src.display().to_string(),
                &format!("s3://{bucket}/{key}"),
                "--metadata",
                &format!("mode={mode},uid=1234,gid=5678,mtime=1600000000"),
            ]);
        }
        // (`aws s3 cp` to a key ending in `/` would copy into it: the marker is a put-object.)
        aws.run(&[
            "s3api",
            "put-object",
            "--bucket",
            &bucket,
            "--key",
            "s3fs/private/",
            "--content-type",
            "application/x-directory",
            "--metadata",
            &format!("mode={},uid=1234,gid=5678,mtime=1600000000", 0o040700),
        ]);
        let mut m = server.mount_bucket(&bucket, tmp.path(), "mnt", &[]);
        let s3fs = m.mountpoint.join("s3fs");
        let md = fs::symlink_metadata(s3fs.join("tool.sh")).expect("stat tool.sh");
        assert!(md.is_file(), "{}", server.name);
        assert_eq!(md.mode() & 0o7777, 0o750, "{}: s3fs's mode", server.name);
        assert_eq!((md.uid(), md.gid()), (1234, 5678), "{}", server.name);
        assert_eq!(md.mtime(), 1_600_000_000, "{}: s3fs's mtime", server.name);
        let out = std::process::Command::new(s3fs.join("tool.sh"))
            .output()
            .expect("run the s3fs-written script through the mount");
        assert_eq!(out.stdout, b"s3fs\n", "{}", server.name);
        let md = fs::symlink_metadata(s3fs.join("link")).expect("lstat link");
        assert!(md.file_type().is_symlink(), "{}: S_IFLNK", server.name);
        assert_eq!(
            fs::read_link(s3fs.join("link")).expect("readlink"),
            std::path::Path::new("tool.sh"),
            "{}",
            server.name
        );
        assert_eq!(
            fs::read(s3fs.join("link")).expect("read through the link"),
            b"#!/bin/sh\necho s3fs\n",
            "{}",
            server.name
        );
        let md = fs::metadata(s3fs.join("private")).expect("stat private");
        assert!(md.is_dir(), "{}", server.name);
        assert_eq!(
            md.mode() & 0o7777,
            0o700,
            "{}: s3fs's directory mode",
            server.name
        );
        assert_eq!((md.uid(), md.gid()), (1234, 5678), "{}", server.name);
        let up = m.mountpoint.join("up");
        let d = fs::metadata(&up).expect("stat the prefix");
        assert!(d.is_dir() && d.mode() & 0o7777 == 0o755, "{}", server.name);
        for (name, want) in [
            ("small.txt", b"uploaded by aws\n".to_vec()),
            ("large.bin", large_data),
        ] {
            let p = up.join(name);
            let md = fs::metadata(&p).expect("stat the object");
            assert!(md.is_file(), "{}: {name}", server.name);
            assert_eq!(md.mode() & 0o7777, 0o644, "{}: {name}", server.name);
            assert_eq!((md.uid(), md.gid()), (uid, gid), "{}: {name}", server.name);
            assert_eq!(md.len(), want.len() as u64, "{}: {name}", server.name);
            let age = SystemTime::now()
                .duration_since(md.modified().expect("mtime"))
                .unwrap_or_default();
            assert!(age < Duration::from_secs(600), "{name}: mtime {age:?} ago");
            assert!(
                fs::read(&p).expect("read") == want,
                "{}: {name} bytes",
                server.name
            );
        }
        m.stop();
    }
}
