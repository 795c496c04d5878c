//! Write-back of an s3 mount through the real `objfs` binary, on the servers `scripts/test`
//! starts (moto, versioned; Garage, without versioning): a `cp -r`, renames of fresh files and
//! `rm` leave exactly the right keys in the bucket (seen through a second client, not the
//! mount) once the unmount drained the journal; a mount killed with SIGKILL right after `cp`
//! returned leaves a journal that the next mount shows at once and uploads, every byte
//! intact. Skipped loudly without the endpoint variables or FUSE; every mount is unmounted
//! ([`DaemonMount`] does in `Drop`).

use std::fs;
use std::path::Path;

use objfs_store::s3::S3Store;
use objfs_store::{GetOptions, ListRequest, ObjectStore};
use objfs_tests::daemon_mount::DaemonMount;
use objfs_tests::s3_cli::{mount_servers, runtime, sh};
use objfs_tests::s3_fixture::Server;

/// Mounts `s3://bucket` at `dir/mnt` with its journal in `dir/journal`.
fn mount(server: &Server, bucket: &str, dir: &Path) -> DaemonMount {
    let journal = dir.join("journal").display().to_string();
    server.mount_bucket(bucket, dir, "mnt", &["--journal-dir", &journal])
}

/// A local tree of `dirs` x `files` small files with distinct contents.
fn make_tree(root: &Path, dirs: usize, files: usize) {
    for d in 0..dirs {
        let dir = root.join(format!("d{d}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..files {
            let body = format!("dir {d} file {f} ").repeat(50 + f);
            fs::write(dir.join(format!("f{f}")), body).unwrap();
        }
    }
}

/// Every file key of the bucket (directory markers, ending in `/`, left out).
fn bucket_files(rt: &tokio::runtime::Runtime, store: &S3Store) -> Vec<String> {
    rt.block_on(async {
        let mut out = Vec::new();
        let mut req = ListRequest::default();
        loop {
            let page = store.list(&req).await.expect("list the bucket");
            out.extend(
                page.objects
                    .into_iter()
                    .map(|o| o.key)
                    .filter(|k| !k.ends_with('/')),
            );
            match page.next_token {
                Some(t) => req.continuation = Some(t),
                None => return out,
            }
        }
    })
}

fn bucket_bytes(rt: &tokio::runtime::Runtime, store: &S3Store, key: &str) -> Vec<u8> {
    rt.block_on(async {
        let r = store.get(key, GetOptions::default()).await;
        let r = r.unwrap_or_else(|e| panic!("get {key}: {e}"));
        r.bytes().await.expect("body").to_vec()
    })
}

/// cp -r, renames of fresh files (the temp-file-then-rename of editors), rm: after the
/// unmount drained the journal the bucket holds exactly the files the mount showed.
#[test]
fn cp_rename_rm_reach_the_bucket_after_the_drain() {
    for server in mount_servers("cp_rename_rm_reach_the_bucket_after_the_drain") {
        let rt = runtime();
        let bucket = server.bucket_for("wb-shell", server.versioned);
        let store = server.open_bucket(&rt, &bucket);
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        make_tree(&src, 4, 10);
        let mut m = mount(&server, &bucket, dir.path());
        let mp = dir.path().join("mnt");
        sh(
            &format!(
                "cp -r {s} tree && for i in 0 1 2 3 4; do echo new $i > tree/.tmp$i && \
                 mv tree/.tmp$i tree/n$i; done && mv tree/d0/f0 tree/d0/moved && \
                 rm tree/d1/f1 tree/n4 && diff -r {s}/d2 tree/d2",
                s = src.display()
            ),
            &mp,
        );
        m.stop();
        let mut want: Vec<String> = Vec::new();
        for d in 0..4 {
            for f in 0..10 {
                want.push(format!("tree/d{d}/f{f}"));
            }
        }
        want.retain(|k| k != "tree/d0/f0" && k != "tree/d1/f1");
        want.push("tree/d0/moved".into());
        want.extend((0..4).map(|i| format!("tree/n{i}")));
        want.sort();
        assert_eq!(bucket_files(&rt, &store), want, "{}", server.name);
        assert_eq!(
            bucket_bytes(&rt, &store, "tree/d0/moved"),
            fs::read(src.join("d0/f0")).unwrap()
        );
        assert_eq!(bucket_bytes(&rt, &store, "tree/n3"), b"new 3\n");
        assert_eq!(
            bucket_bytes(&rt, &store, "tree/d3/f9"),
            fs::read(src.join("d3/f9")).unwrap()
        );
        let left = fs::read_dir(dir.path().join("journal"))
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != "lock")
            .collect::<Vec<_>>();
        assert!(left.is_empty(), "the journal drained: {left:?}");
    }
}

/// SIGKILL of the mount right after `cp -r` returned: the next mount (same journal) shows
/// every file at once and uploads it; the bucket then holds every byte.
#[test]
fn a_killed_mount_uploads_its_journal_at_the_next_mount() {
    for server in mount_servers("a_killed_mount_uploads_its_journal_at_the_next_mount") {
        let rt = runtime();
        let bucket = server.bucket_for("wb-kill", server.versioned);
        let store = server.open_bucket(&rt, &bucket);
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        make_tree(&src, 3, 20);
        let mut m = mount(&server, &bucket, dir.path());
        let mp = dir.path().join("mnt");
        sh(&format!("cp -r {} tree", src.display()), &mp);
        m.kill9();
        drop(m);
        let mut m = mount(&server, &bucket, dir.path());
        sh(&format!("diff -r {} tree", src.display()), &mp);
        m.stop();
        let files = bucket_files(&rt, &store);
        assert_eq!(files.len(), 60, "{}: {files:?}", server.name);
        for d in 0..3 {
            for f in 0..20 {
                let rel = format!("d{d}/f{f}");
                assert_eq!(
                    bucket_bytes(&rt, &store, &format!("tree/{rel}")),
                    fs::read(src.join(&rel)).unwrap(),
                    "{}: {rel}",
                    server.name
                );
            }
        }
    }
}

/// `objfs status MNT --json`'s write-back object, once `done` says it is what the test waits
/// for (60 s at most).
fn wait_writeback(
    server: &Server,
    mp: &Path,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let mp = mp.display().to_string();
    let start = std::time::Instant::now();
    loop {
        let v = server.objfs_json(&["status", &mp]);
        let wb = v["writeback"].clone();
        if done(&wb) {
            return wb;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "{}: {what}: still {wb}",
            server.name
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// The bucket deleted under a mount while a file is open: its close is acknowledged (the
/// journal has it), the upload is refused for good (`NoSuchBucket`) and not retried; `objfs
/// status` names it, with the S3 error, in text and JSON. The refusal is kept in the
/// journal: the mount is unmounted, the bucket made again and mounted again, and `status`
/// still shows the change FAILED with the same error (not tried at the remount); `objfs
/// writeback retry` then uploads it, and the bucket holds the bytes.
#[test]
fn a_refused_upload_is_shown_by_status_and_retried_on_request() {
    use objfs_store::s3::{create_bucket, delete_bucket, set_versioning};
    use std::io::Write;
    for server in mount_servers("a_refused_upload_is_shown_by_status_and_retried_on_request") {
        let rt = runtime();
        let bucket = server.bucket_for("wb-refused", server.versioned);
        let store = server.open_bucket(&rt, &bucket);
        let cfg = server.config_of(Some(&bucket), "");
        let dir = tempfile::tempdir().unwrap();
        let mut m = mount(&server, &bucket, dir.path());
        let mp = dir.path().join("mnt");
        let mut f = fs::File::create(mp.join("kept.txt")).expect("create");
        rt.block_on(delete_bucket(&cfg)).expect("delete the bucket");
        f.write_all(b"acknowledged\n").expect("write");
        drop(f);
        let wb = wait_writeback(&server, &mp, "the upload refused", |wb| {
            wb["failed_count"].as_u64() == Some(1)
        });
        assert_eq!(wb["failed"][0]["key"], "kept.txt", "{wb}");
        let error = wb["failed"][0]["error"].as_str().unwrap_or("");
        assert!(error.contains("NoSuchBucket"), "{}: {wb}", server.name);
        assert_eq!(wb["pending"].as_u64(), Some(1), "{wb}");
        let text = server.objfs_ok(&["status", &mp.display().to_string()]);
        assert!(
            text.contains("FAILED") && text.contains("kept.txt") && text.contains("NoSuchBucket"),
            "{text}"
        );
        assert_eq!(fs::read(mp.join("kept.txt")).unwrap(), b"acknowledged\n");
        m.stop();
        rt.block_on(async {
            create_bucket(&cfg).await.expect("make the bucket again");
            if server.versioned {
                set_versioning(&cfg, true).await.expect("versioning on");
            }
        });
        let mut m = mount(&server, &bucket, dir.path());
        std::thread::sleep(std::time::Duration::from_secs(1));
        let again = wait_writeback(&server, &mp, "the refusal after the remount", |wb| {
            wb["failed_count"].as_u64() == Some(1)
        });
        assert_eq!(again["failed"][0]["key"], "kept.txt", "{again}");
        assert_eq!(
            again["failed"][0]["error"], wb["failed"][0]["error"],
            "{again}"
        );
        let text = server.objfs_ok(&["status", &mp.display().to_string()]);
        assert!(
            text.contains("FAILED") && text.contains("NoSuchBucket"),
            "{}: after the remount: {text}",
            server.name
        );
        assert_eq!(fs::read(mp.join("kept.txt")).unwrap(), b"acknowledged\n");
        assert!(
            rt.block_on(store.head("kept.txt", None)).is_err(),
            "{}: a recorded refusal is not tried at the remount",
            server.name
        );
        let out = server.objfs_ok(&["writeback", "retry", &mp.display().to_string()]);
        assert!(out.contains("1 refused upload"), "{out}");
        wait_writeback(&server, &mp, "the retry", |wb| {
            wb["pending"].as_u64() == Some(0)
        });
        m.stop();
        assert_eq!(bucket_bytes(&rt, &store, "kept.txt"), b"acknowledged\n");
    }
}
