//! Write-back of an s3 mount through the real `objfs` binary, on the servers `scripts/test`
//! starts (moto, versioned; Garage, without versioning): a `cp -r`, renames of fresh files and
//! `rm` leave exactly the right keys in the bucket (seen through a second client, not the
//! mount) once the unmount drained the journal; a mount killed with SIGKILL right after `cp`
//! returned leaves a journal that the next mount shows at once and uploads, every byte
//! intact. Skipped loudly without the endpoint variables or FUSE; every mount is unmounted
//! ([`DaemonMount`] does in `Drop`).

use std::fs;
use std::path::Path;
use std::process::Command;

use objfs_store::s3::{create_bucket, set_versioning, S3Store};
use objfs_store::{GetOptions, ListRequest, ObjectStore};
use objfs_tests::daemon_mount::DaemonMount;
use objfs_tests::mount_fixture::skip_without_fuse;
use objfs_tests::s3_fixture::{self, unique_name, Server};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

fn servers(test: &str) -> Vec<Server> {
    if skip_without_fuse(test) {
        return Vec::new();
    }
    let all: Vec<Server> = [s3_fixture::moto(), s3_fixture::garage()]
        .into_iter()
        .flatten()
        .collect();
    if all.is_empty() {
        eprintln!("{test}: SKIPPED: no S3 test server (run it with scripts/test)");
    }
    all
}

fn new_bucket(rt: &tokio::runtime::Runtime, server: &Server, tag: &str) -> (String, S3Store) {
    let bucket = unique_name(tag);
    let cfg = server.config_of(Some(&bucket), "");
    let store = rt.block_on(async {
        create_bucket(&cfg).await.expect("create the bucket");
        if server.versioned {
            set_versioning(&cfg, true).await.expect("versioning on");
        }
        S3Store::open(cfg).await.expect("open the bucket")
    });
    (bucket, store)
}

/// Mounts `s3://bucket` at `dir/name` with its journal in `dir/journal`.
fn mount(server: &Server, bucket: &str, dir: &Path, name: &str) -> DaemonMount {
    let journal = dir.join("journal");
    let mut args = vec![
        "--endpoint".to_string(),
        server.endpoint.clone(),
        "--region".into(),
        server.region.clone(),
        "--journal-dir".into(),
        journal.display().to_string(),
    ];
    if let Some(p) = &server.profile {
        args.extend(["--profile".into(), p.clone()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    DaemonMount::start_source(
        &format!("s3://{bucket}"),
        &dir.join(name),
        &args,
        &dir.join(format!("{name}.log")),
    )
}

fn sh(script: &str, cwd: &Path) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(cwd)
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "`{script}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
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
    for server in servers("cp_rename_rm_reach_the_bucket_after_the_drain") {
        let rt = rt();
        let (bucket, store) = new_bucket(&rt, &server, "wb-shell");
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        make_tree(&src, 4, 10);
        let mut m = mount(&server, &bucket, dir.path(), "mnt");
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
            .filter(|e| e.path().extension().is_some_and(|x| x == "wb"))
            .count();
        assert_eq!(left, 0, "the journal drained");
    }
}

/// SIGKILL of the mount right after `cp -r` returned: the next mount (same journal) shows
/// every file at once and uploads it; the bucket then holds every byte.
#[test]
fn a_killed_mount_uploads_its_journal_at_the_next_mount() {
    for server in servers("a_killed_mount_uploads_its_journal_at_the_next_mount") {
        let rt = rt();
        let (bucket, store) = new_bucket(&rt, &server, "wb-kill");
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        make_tree(&src, 3, 20);
        let mut m = mount(&server, &bucket, dir.path(), "mnt");
        let mp = dir.path().join("mnt");
        sh(&format!("cp -r {} tree", src.display()), &mp);
        m.kill9();
        drop(m);
        let mut m = mount(&server, &bucket, dir.path(), "mnt");
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
