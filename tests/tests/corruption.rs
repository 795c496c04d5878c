//! Corruption and lifecycle tests of the LocalStore's on-disk state.
//!
//! Objects (small, multi-block and multi-blob) are written and the store closed; then bytes of
//! the `*.vol` files are flipped (in block data, block checksums, blob headers, volume headers,
//! at random) or the files truncated, and the store is opened again. The rule checked
//! everywhere: a read either returns exactly the original bytes or fails with
//! `ErrorKind::Corrupt`; reads of the damaged object fail, objects elsewhere still read, and
//! nothing panics. Also: a directory of random files is `NotAStore`, a second open is
//! `Locked`, and a marker of a newer format is `UnsupportedFormat`.
//!
//! Damage is aimed by finding an object's bytes in the volume files (data is stored raw, in
//! blocks followed by their checksum, see docs/FORMAT.md).

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use objfs_store::local::{LocalConfig, LocalStore};
use objfs_store::{ErrorKind, GetOptions, ObjectStore, PutOptions, StoreError};
use objfs_tests::det_bytes;
use rand::{Rng, SeedableRng};

const BLOCK: usize = 4096;
const BLOB_HEADER: usize = 32;

fn cfg() -> LocalConfig {
    LocalConfig {
        volume_size: 256 << 10,
        block_size: BLOCK as u32,
        blob_size: 16 * BLOCK,
        ..Default::default()
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The objects of a test store: key -> bytes.
type Objects = BTreeMap<String, Vec<u8>>;

/// Creates a store with small objects (one block), multi-block objects and multi-blob
/// objects, and closes it.
fn make_store(path: &Path) -> Objects {
    let mut objects = Objects::new();
    for i in 0..12u64 {
        objects.insert(
            format!("small/{i:02}"),
            det_bytes(i, 100 + 250 * i as usize),
        );
    }
    for i in 0..4u64 {
        objects.insert(
            format!("multi/{i}"),
            det_bytes(100 + i, 3 * BLOCK + 777 * i as usize),
        );
    }
    for i in 0..2u64 {
        objects.insert(format!("big/{i}"), det_bytes(200 + i, 40 * BLOCK + 123));
    }
    rt().block_on(async {
        let s = LocalStore::init(path, cfg()).unwrap();
        for (k, v) in &objects {
            s.put(k, v.clone().into(), PutOptions::default())
                .await
                .unwrap();
        }
        s.close().unwrap();
    });
    objects
}

/// Opens a store this process has just closed. Retries briefly on sled's lock, a known race
/// that `model::reopen_right_after_close` reports on its own.
fn open(path: &Path) -> Result<LocalStore, StoreError> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match LocalStore::open(path) {
            Err(e)
                if e.to_string().contains("could not acquire lock")
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20))
            }
            other => return other,
        }
    }
}

fn volumes(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "vol") {
                out.push(p);
            }
        }
    }
    out.sort();
    assert!(!out.is_empty(), "no *.vol files under {}", dir.display());
    out
}

/// Where `needle` lies in the volume files: (file, offset). Panics unless found exactly once.
fn find(dir: &Path, needle: &[u8]) -> (PathBuf, u64) {
    let mut hits = Vec::new();
    for v in volumes(dir) {
        let data = fs::read(&v).unwrap();
        let mut from = 0;
        while let Some(i) = data[from..].windows(needle.len()).position(|w| w == needle) {
            hits.push((v.clone(), (from + i) as u64));
            from += i + 1;
        }
    }
    assert_eq!(
        hits.len(),
        1,
        "expected the bytes once in the volumes, found {hits:?}"
    );
    hits.pop().unwrap()
}

/// Where byte `off` of an object's data lies in the volume files. The search window stays
/// inside the byte's block (blocks are followed by their checksum on disk; objects written
/// by one put start their blobs, and so their blocks, at multiples of the block size).
fn locate(dir: &Path, data: &[u8], off: usize) -> (PathBuf, u64) {
    let block_start = off / BLOCK * BLOCK;
    let block_end = (block_start + BLOCK).min(data.len());
    let start = off.saturating_sub(24).max(block_start);
    let end = (start + 48).min(block_end);
    assert!(
        end - start >= 16 || end - start == block_end - block_start,
        "window too small"
    );
    let (file, at) = find(dir, &data[start..end]);
    (file, at + (off - start) as u64)
}

fn flip(file: &Path, offset: u64) -> u8 {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(file)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).unwrap();
    let old = b[0];
    f.write_all_at(&[old ^ 0x5A], offset).unwrap();
    f.sync_all().unwrap();
    old
}

fn restore(file: &Path, offset: u64, old: u8) {
    let f = OpenOptions::new().write(true).open(file).unwrap();
    f.write_all_at(&[old], offset).unwrap();
    f.sync_all().unwrap();
}

/// The outcome of reading one object (or range): exact, or a failure kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    Exact,
    Failed(ErrorKind),
}

/// Reads `key` (whole or a range) and checks "exact bytes or an error": wrong bytes panic.
async fn read(s: &LocalStore, key: &str, want: &[u8], range: Option<std::ops::Range<u64>>) -> Read {
    let r = s
        .get(
            key,
            GetOptions {
                version: None,
                range: range.clone(),
            },
        )
        .await;
    let body = match r {
        Ok(g) => g.bytes().await,
        Err(e) => return Read::Failed(e.kind()),
    };
    match body {
        Ok(b) => {
            let (a, z) = range.map_or((0, want.len()), |r| {
                (r.start as usize, (r.end as usize).min(want.len()))
            });
            assert!(
                b[..] == want[a..z],
                "{key} {a}..{z}: a read returned WRONG BYTES"
            );
            Read::Exact
        }
        Err(e) => Read::Failed(e.kind()),
    }
}

/// Reads every object; returns key -> outcome.
async fn read_all(s: &LocalStore, objects: &Objects) -> BTreeMap<String, Read> {
    let mut out = BTreeMap::new();
    for (k, v) in objects {
        out.insert(k.clone(), read(s, k, v, None).await);
    }
    out
}

/// Checks that every object reads exactly, except those in `damaged`, which must fail with
/// Corrupt; objects whose data shares a volume with damage may do either.
fn check(outcome: &BTreeMap<String, Read>, damaged: &[&str], maybe: &[String], what: &str) {
    for (k, r) in outcome {
        if damaged.contains(&k.as_str()) {
            assert_eq!(*r, Read::Failed(ErrorKind::Corrupt), "{what}: damaged {k}");
        } else if maybe.contains(k) {
            assert!(
                matches!(r, Read::Exact | Read::Failed(ErrorKind::Corrupt)),
                "{what}: {k}: {r:?}"
            );
        } else {
            assert_eq!(*r, Read::Exact, "{what}: undamaged {k}");
        }
    }
}

/// Keys whose first byte lies in `file`.
fn keys_in(dir: &Path, objects: &Objects, file: &Path) -> Vec<String> {
    objects
        .iter()
        .filter(|(_, v)| !v.is_empty() && locate(dir, v, 0).0 == file)
        .map(|(k, _)| k.clone())
        .collect()
}

#[test]
fn flipped_data_and_checksum_bytes_are_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let objects = make_store(&path);
    let rt = rt();
    // (what, key, byte of the object whose block is hit, extra offset past that byte)
    let targets: Vec<(&str, &str, usize, u64)> = vec![
        ("first data byte of a small object", "small/03", 0, 0),
        (
            "last data byte of a small object",
            "small/07",
            100 + 250 * 7 - 1,
            0,
        ),
        (
            "middle block of a multi-block object",
            "multi/2",
            BLOCK + 10,
            0,
        ),
        (
            "last partial block of a multi-block object",
            "multi/3",
            3 * BLOCK + 5,
            0,
        ),
        (
            "a later blob of a multi-blob object",
            "big/1",
            20 * BLOCK + 3,
            0,
        ),
        // The checksum that follows a small object's only block.
        (
            "checksum of a small object",
            "small/05",
            100 + 250 * 5 - 1,
            1 + 7,
        ),
        // The checksum after the first full block of a multi-block object.
        ("checksum of a full block", "multi/0", BLOCK - 1, 1 + 31),
    ];
    for (what, key, off, extra) in targets {
        let data = &objects[key];
        let (file, at) = locate(&path, data, off);
        let at = at + extra;
        let old = flip(&file, at);
        let s = open(&path).unwrap_or_else(|e| panic!("{what}: open: {e}"));
        rt.block_on(async {
            let outcome = read_all(&s, &objects).await;
            check(&outcome, &[key], &[], what);
            // The damaged block fails also when read alone.
            let b = (off / BLOCK * BLOCK) as u64;
            let r = read(&s, key, data, Some(b..b + 1)).await;
            assert_eq!(
                r,
                Read::Failed(ErrorKind::Corrupt),
                "{what}: ranged read of the block"
            );
            // Other blocks of the same object are never wrong (exact or Corrupt).
            if data.len() > 2 * BLOCK {
                let other = if off < BLOCK { BLOCK as u64 } else { 0 };
                let r = read(&s, key, data, Some(other..other + BLOCK as u64)).await;
                assert!(
                    matches!(r, Read::Exact | Read::Failed(ErrorKind::Corrupt)),
                    "{what}: {r:?}"
                );
            }
        });
        s.close().unwrap();
        // Repaired by hand, the object reads again.
        restore(&file, at, old);
        let s = open(&path).unwrap();
        let outcome = rt.block_on(read_all(&s, &objects));
        check(&outcome, &[], &[], &format!("{what}, restored"));
        s.close().unwrap();
    }
}

#[test]
fn flipped_blob_header_bytes_are_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let objects = make_store(&path);
    let rt = rt();
    for (key, header_byte) in [
        ("small/02", 0u64),
        ("small/04", 9),
        ("multi/1", 17),
        ("small/09", 25),
        ("big/0", 29),
    ] {
        let data = &objects[key];
        let (file, at) = locate(&path, data, 0);
        let header = at - BLOB_HEADER as u64;
        let mut magic = [0u8; 8];
        fs::File::open(&file)
            .unwrap()
            .read_exact_at(&mut magic, header)
            .unwrap();
        assert_eq!(
            &magic, b"OBJFSBLB",
            "{key}: a blob header precedes the object's first byte"
        );
        let old = flip(&file, header + header_byte);
        let s = open(&path).unwrap();
        let outcome = rt.block_on(read_all(&s, &objects));
        check(
            &outcome,
            &[key],
            &[],
            &format!("blob header byte {header_byte} of {key}"),
        );
        s.close().unwrap();
        restore(&file, header + header_byte, old);
    }
}

#[test]
fn flipped_volume_header_never_gives_wrong_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let objects = make_store(&path);
    let rt = rt();
    let file = locate(&path, &objects["small/01"], 0).0;
    let in_file = keys_in(&path, &objects, &file);
    assert!(in_file.contains(&"small/01".to_string()));
    // Blobs carry their own checksummed headers, so a damaged volume header need not fail
    // reads; but no read may return wrong bytes, and nothing may panic.
    for byte in [0u64, 3, 8, 12, 16, 24, 40, 63] {
        let old = flip(&file, byte);
        match open(&path) {
            Ok(s) => {
                let outcome = rt.block_on(read_all(&s, &objects));
                check(
                    &outcome,
                    &[],
                    &in_file,
                    &format!("volume header byte {byte}"),
                );
                s.close().unwrap();
            }
            Err(e) => assert_eq!(
                e.kind(),
                ErrorKind::Corrupt,
                "open with a bad volume header: {e}"
            ),
        }
        restore(&file, byte, old);
    }
}

#[test]
fn random_flips_never_return_wrong_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let objects = make_store(&path);
    let rt = rt();
    let seed: u64 = rand::random();
    println!("seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let vols = volumes(&path);
    let mut corrupt_seen = 0;
    for round in 0..30 {
        let file = &vols[rng.random_range(0..vols.len())];
        let len = fs::metadata(file).unwrap().len();
        // Several flips at once, anywhere in the file.
        let flips: Vec<(u64, u8)> = (0..3)
            .map(|_| {
                let at = rng.random_range(0..len);
                (at, flip(file, at))
            })
            .collect();
        match open(&path) {
            Ok(s) => {
                let outcome = rt.block_on(read_all(&s, &objects));
                for (k, r) in &outcome {
                    match r {
                        Read::Exact => {}
                        Read::Failed(ErrorKind::Corrupt) => corrupt_seen += 1,
                        Read::Failed(k2) => {
                            panic!("round {round} (seed {seed}): {k}: {k2:?}, not Corrupt")
                        }
                    }
                }
                s.close().unwrap();
            }
            Err(e) => assert_eq!(e.kind(), ErrorKind::Corrupt, "round {round}: open: {e}"),
        }
        for (at, old) in flips.into_iter().rev() {
            restore(file, at, old);
        }
    }
    assert!(
        corrupt_seen > 0,
        "90 random flips never hit an object (seed {seed})"
    );
    let s = open(&path).unwrap();
    check(
        &rt.block_on(read_all(&s, &objects)),
        &[],
        &[],
        "after restoring every flip",
    );
    s.close().unwrap();
}

#[test]
fn truncated_volume_is_corrupt_not_panic() {
    let rt = rt();
    for cut in [
        "middle of a block",
        "just after the header",
        "empty",
        "short header",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let objects = make_store(&path);
        let (file, at) = locate(&path, &objects["multi/2"], 2 * BLOCK);
        let in_file = keys_in(&path, &objects, &file);
        let new_len = match cut {
            "middle of a block" => at + 100,
            "just after the header" => 64,
            "empty" => 0,
            _ => 10,
        };
        // Objects whose last byte lies past the cut lose data.
        let damaged: Vec<String> = objects
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .filter(|(_, v)| {
                let (f, o) = locate(&path, v, v.len() - 48.min(v.len()));
                f == file && o + 48 > new_len
            })
            .map(|(k, _)| k.clone())
            .collect();
        assert!(damaged.contains(&"multi/2".to_string()));
        OpenOptions::new()
            .write(true)
            .open(&file)
            .unwrap()
            .set_len(new_len)
            .unwrap();
        match open(&path) {
            Ok(s) => {
                let outcome = rt.block_on(read_all(&s, &objects));
                let d: Vec<&str> = damaged.iter().map(String::as_str).collect();
                check(
                    &outcome,
                    &d,
                    &in_file,
                    &format!("volume cut at {new_len} ({cut})"),
                );
                // Listing and writing still work.
                rt.block_on(async {
                    let page = s.list(&Default::default()).await.unwrap();
                    assert!(!page.objects.is_empty());
                    s.put("new", "after the cut".into(), PutOptions::default())
                        .await
                        .unwrap();
                    let got = s
                        .get("new", GetOptions::default())
                        .await
                        .unwrap()
                        .bytes()
                        .await
                        .unwrap();
                    assert_eq!(&got[..], b"after the cut");
                });
                s.close().unwrap();
            }
            Err(e) => assert_eq!(e.kind(), ErrorKind::Corrupt, "{cut}: open: {e}"),
        }
    }
}

#[test]
fn directory_of_random_files_is_not_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("junk");
    fs::create_dir(&p).unwrap();
    fs::write(p.join("notes.txt"), b"hello").unwrap();
    fs::write(p.join("data.vol"), det_bytes(1, 5000)).unwrap();
    fs::create_dir(p.join("sub")).unwrap();
    fs::write(p.join("sub/x"), det_bytes(2, 100)).unwrap();
    for (what, r) in [
        ("open", LocalStore::open(&p).map(|_| ())),
        ("init", LocalStore::init(&p, cfg()).map(|_| ())),
        (
            "open_or_init",
            LocalStore::open_or_init(&p, cfg()).map(|_| ()),
        ),
    ] {
        match r {
            Err(e) => assert_eq!(e.kind(), ErrorKind::NotAStore, "{what}: {e}"),
            Ok(()) => panic!("{what} of a directory of random files succeeded"),
        }
    }
    // Nothing was changed.
    assert_eq!(fs::read(p.join("notes.txt")).unwrap(), b"hello");
    assert_eq!(fs::read_dir(&p).unwrap().count(), 3);
    // A missing directory is not a store either (open never creates one).
    let missing = dir.path().join("missing");
    assert_eq!(
        LocalStore::open(&missing).err().map(|e| e.kind()),
        Some(ErrorKind::NotAStore)
    );
    assert!(!missing.exists());
}

#[test]
fn second_open_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let (first, created) = LocalStore::open_or_init(&path, cfg()).unwrap();
    assert!(created);
    match LocalStore::open(&path) {
        Err(StoreError::Locked { pid, .. }) => assert_eq!(pid, std::process::id()),
        Err(e) => panic!("expected Locked, got {e}"),
        Ok(_) => panic!("expected Locked, got a second store"),
    }
    let r = LocalStore::open_or_init(&path, cfg());
    assert_eq!(r.err().map(|e| e.kind()), Some(ErrorKind::Locked));
    // The first store is unharmed and works.
    rt().block_on(async {
        first
            .put("k", "v".into(), PutOptions::default())
            .await
            .unwrap();
    });
    first.close().unwrap();
    let (again, created) = {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match LocalStore::open_or_init(&path, cfg()) {
                Err(e)
                    if e.to_string().contains("could not acquire lock")
                        && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(20))
                }
                other => break other.unwrap(),
            }
        }
    };
    assert!(!created);
    let got = rt().block_on(async {
        again
            .get("k", GetOptions::default())
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
    });
    assert_eq!(&got[..], b"v");
    drop(again);
    // Drop releases the lock too.
    assert!(open(&path).is_ok());
}

#[test]
fn newer_format_is_unsupported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    LocalStore::init(&path, cfg()).unwrap().close().unwrap();
    let marker = path.join(objfs_store::local::config::MARKER);
    let text = fs::read_to_string(&marker).unwrap();
    // Replace the number after `"format":` (the marker is JSON; no JSON crate needed).
    let at = text
        .find("\"format\"")
        .expect("the marker names its format")
        + "\"format\"".len();
    let rest = &text[at..];
    let colon = rest.find(':').unwrap() + 1;
    let digits_from = colon + rest[colon..].len() - rest[colon..].trim_start().len();
    let digits_len = rest[digits_from..]
        .bytes()
        .take_while(u8::is_ascii_digit)
        .count();
    assert!(digits_len > 0, "format is a number: {text}");
    let new = format!(
        "{}{}999{}",
        &text[..at],
        &rest[..digits_from],
        &rest[digits_from + digits_len..]
    );
    fs::write(&marker, new).unwrap();
    match open(&path) {
        Err(StoreError::UnsupportedFormat { found, .. }) => assert_eq!(found, 999),
        Err(e) => panic!("expected UnsupportedFormat, got {e}"),
        Ok(_) => panic!("a store of format 999 opened"),
    }
}
