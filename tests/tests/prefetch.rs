//! Prefetch of a directory's small files through a bucket mount, on the real test servers
//! (moto, Garage), reached through a proxy that counts the requests and alters a marker in
//! the answers (`objfs_tests::s3_proxy`): the files read right, with far fewer requests than
//! the same reads with `--no-prefetch`; a file another client changes after the prefetch is
//! read new once the mount's TTL has passed; a file whose body arrives altered is EIO, never
//! data; `objfs status` of the live mount shows the prefetch's counters moving. Skipped loudly
//! without the endpoint variables or FUSE.

use std::path::Path;
use std::time::{Duration, Instant};

use objfs_store::{ObjectStore, PutOptions};
use objfs_tests::s3_cli::{mount_servers, runtime};
use objfs_tests::s3_fixture::Server;
use objfs_tests::s3_proxy::{self, Counts, Snapshot, NEEDLE};

/// Small files read in order.
const FILES: usize = 40;
/// Small files beside them, not read before the change of test (c).
const OTHERS: usize = 5;
/// The mounts' attribute TTL, and so how long prefetched answers are served.
const TTL_S: u64 = 3;

fn small(tag: &str, i: usize) -> Vec<u8> {
    (0..4096)
        .map(|j| b'a' + ((i * 7 + j + tag.len()) % 26) as u8)
        .collect()
}

fn minus(a: Snapshot, b: Snapshot) -> Snapshot {
    (a.0 - b.0, a.1 - b.1, a.2 - b.2, a.3 - b.3)
}

/// Reads `d/f0..` in order through the mount at `mp`; the requests that took.
fn read_files(mp: &Path, counts: &Counts, what: &str) -> Snapshot {
    let before = counts.snapshot();
    for i in 0..FILES {
        let got = std::fs::read(mp.join(format!("d/f{i}"))).expect("read a small file");
        assert!(got == small("f", i), "{what}: d/f{i} read wrong bytes");
    }
    minus(counts.snapshot(), before)
}

fn run(server: &Server) {
    let name = server.name;
    let rt = runtime();
    let bucket = server.bucket_for("prefetch", server.versioned);
    let store = server.open_bucket(&rt, &bucket);
    let mut bad = small("bad", 0);
    bad[1000..1000 + NEEDLE.len()].copy_from_slice(NEEDLE);
    rt.block_on(async {
        let mut objects: Vec<(String, Vec<u8>)> = (0..FILES)
            .map(|i| (format!("d/f{i}"), small("f", i)))
            .chain((0..OTHERS).map(|i| (format!("d/g{i}"), small("g", i))))
            .collect();
        objects.push(("d/zbad".into(), bad.clone()));
        objects.push(("d/big".into(), vec![b'z'; 1 << 20]));
        for (k, b) in objects {
            store
                .put(&k, b.into(), PutOptions::default())
                .await
                .unwrap_or_else(|e| panic!("{name}: put {k}: {e}"));
        }
    });
    let (endpoint, counts) = s3_proxy::start(&server.endpoint);
    let via = Server {
        endpoint,
        ..server.clone()
    };
    let dir = tempfile::tempdir().unwrap();
    let ttl = TTL_S.to_string();
    let mp = dir.path().join("mnt");

    // The baseline: the same reads without prefetch.
    let mut m = via.mount_bucket(
        &bucket,
        dir.path(),
        "mnt",
        &["--no-prefetch", "--attr-ttl", &ttl],
    );
    let base = read_files(&mp, &counts, &format!("{name}, --no-prefetch"));
    let v = status(&via, &bucket);
    assert_eq!(v["prefetch"]["enabled"], false, "{name}: {v}");
    m.stop();

    let mut m = via.mount_bucket(&bucket, dir.path(), "mnt", &["--attr-ttl", &ttl]);
    let start = counts.snapshot();
    // (a) the right bytes, (b) fewer requests.
    let pre = read_files(&mp, &counts, &format!("{name}, prefetch"));
    eprintln!("{name}: requests (HEAD, GET, list, other) for {FILES} cold reads: without prefetch {base:?}, with {pre:?}");
    assert!(
        base.0 >= FILES as u64 && base.2 >= FILES as u64,
        "{name}: baseline {base:?}"
    );
    assert!(
        pre.2 <= 10,
        "{name}: the listings below prefetched names asked the bucket: {pre:?}"
    );
    // The lookups are answered from the prefetched GETs, on the versioned bucket too (whose
    // plain listings head every object: the prefetch's own listing does not).
    assert!(
        pre.0 <= 10 && pre.0 * 4 <= base.0,
        "{name}: the lookups of prefetched files asked the bucket: {pre:?} against {base:?}"
    );
    let total = |s: Snapshot| s.0 + s.1 + s.2 + s.3;
    assert!(
        total(pre) * 2 <= total(base),
        "{name}: {pre:?} is not half of {base:?}"
    );
    // The session fetched the other small files of d/ after the reader's too (and tried
    // d/zbad), not d/big.
    let deadline = Instant::now() + Duration::from_secs(20);
    while minus(counts.snapshot(), start).1 < (FILES + OTHERS + 1) as u64 {
        assert!(
            Instant::now() < deadline,
            "{name}: the session never fetched the other files"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // `objfs status` of the live mount shows what the prefetch did (its counters, through the
    // control socket), once the fetches in flight have ended.
    let v = loop {
        let v = status(&via, &bucket);
        let p = &v["prefetch"];
        if n(p, "fetched") + n(p, "failed") >= (FILES + OTHERS + 1) as u64 {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: status never showed the fetches: {v}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let p = &v["prefetch"];
    eprintln!("{name}: status after {FILES} reads: {p}");
    assert_eq!(p["enabled"], true, "{name}: {v}");
    assert!(n(p, "sessions") >= 1, "{name}: {p}");
    assert!(n(p, "fetched") >= (FILES + OTHERS) as u64, "{name}: {p}");
    assert!(
        n(p, "failed") >= 1,
        "{name}: d/zbad's fetch failed its checksums: {p}"
    );
    assert_eq!(n(p, "fetched_bytes"), n(p, "fetched") * 4096, "{name}: {p}");
    assert!(
        n(p, "hit_heads") >= FILES as u64 - 10 && n(p, "hit_gets") >= FILES as u64 - 10,
        "{name}: the reads were not answered from the prefetched files: {p}"
    );
    assert!(n(p, "hit_lists") >= FILES as u64 - 10, "{name}: {p}");
    assert_eq!(
        n(p, "hits"),
        n(p, "hit_heads") + n(p, "hit_gets") + n(p, "hit_lists"),
        "{name}: {p}"
    );
    // The first two lookups (the signal) and their reads went to the bucket.
    assert!(n(p, "misses") >= 2, "{name}: {p}");
    assert_eq!(n(p, "memory_bytes"), 64 << 20, "{name}: {p}");
    assert!(n(p, "held_bytes") <= n(p, "memory_bytes"), "{name}: {p}");
    // The others' bodies (d/g*), not read yet, are held, unless their TTL already ran out
    // (a slow machine): then they were dropped and counted as expired.
    assert!(
        n(p, "held_bytes") >= OTHERS as u64 * 4096 || n(p, "expired_unused") >= 1,
        "{name}: {p}"
    );
    assert_eq!(n(p, "invalidated"), 0, "{name}: {p}");
    let text = via.objfs_ok(&["status", &format!("s3://{bucket}")]);
    assert!(
        text.contains("prefetch:     files up to 262144 bytes") && text.contains("  held:  "),
        "{name}: {text}"
    );

    // (c) Another client rewrites d/g3 after it was prefetched: once the TTL has passed since
    // the prefetch, the mount reads the new bytes.
    let fresh = small("changed", 3);
    rt.block_on(store.put("d/g3", fresh.clone().into(), PutOptions::default()))
        .unwrap_or_else(|e| panic!("{name}: rewrite d/g3: {e}"));
    std::thread::sleep(Duration::from_secs(TTL_S) + Duration::from_millis(300));
    let got = std::fs::read(mp.join("d/g3")).expect("read d/g3");
    assert!(got == fresh, "{name}: d/g3 read stale bytes after the TTL");
    // An unchanged neighbour still reads right (prefetched or not by now).
    assert!(
        std::fs::read(mp.join("d/g1")).unwrap() == small("g", 1),
        "{name}: d/g1"
    );

    // (d) A body altered on the way is EIO, whether the prefetch or the read fetched it.
    let err = std::fs::read(mp.join("d/zbad")).expect_err("altered bytes must not be read");
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{name}: {err}");
    // Past the TTL every answer of the first session was dropped as expired (d/g* never
    // served); none by this mount's changes (it made none).
    let p = status(&via, &bucket)["prefetch"].clone();
    assert!(
        n(&p, "expired") >= (FILES + OTHERS) as u64 && n(&p, "expired_unused") >= OTHERS as u64,
        "{name}: {p}"
    );
    assert_eq!(n(&p, "invalidated"), 0, "{name}: {p}");
    m.stop();
}

/// `objfs status s3://BUCKET --json` through `via` (the mount's control socket).
fn status(via: &Server, bucket: &str) -> serde_json::Value {
    via.objfs_json(&["status", &format!("s3://{bucket}")])
}

/// A counter of a status object (0 when missing).
fn n(v: &serde_json::Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or(0)
}

#[test]
fn prefetched_small_files_read_right_with_fewer_requests() {
    for server in mount_servers("prefetched_small_files_read_right_with_fewer_requests") {
        run(&server);
    }
}
