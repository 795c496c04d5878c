//! Several readers and writers (threads) on one mount, on different files and on the same
//! file. Nothing may be corrupted: a file written by one writer reads back exactly; a file
//! raced by several writers ends up equal to one writer's complete content; a reader never
//! sees bytes that no writer wrote. (Within one mount all handles of a file share its data,
//! as on a local filesystem: see docs/SEMANTICS.md.)

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use objfs_tests::mount_fixture::MountFixture;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    StdRng::seed_from_u64(seed).fill(&mut v[..]);
    v
}

/// Writes `data` in chunks of random size, as a program would.
fn write_in_chunks(path: &Path, data: &[u8], seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut f = File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    let mut pos = 0;
    while pos < data.len() {
        let n = rng.random_range(1..200_000).min(data.len() - pos);
        f.write_all(&data[pos..pos + n])
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        pos += n;
    }
}

fn read_all(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut v = Vec::new();
    File::open(path)?.read_to_end(&mut v)?;
    Ok(v)
}

#[test]
fn writers_on_different_files_with_readers() {
    let Some(fx) = MountFixture::new("writers_on_different_files_with_readers") else {
        return;
    };
    let dir = fx.path("many");
    fs::create_dir(&dir).expect("mkdir");
    const WRITERS: u64 = 6;
    const ROUNDS: u64 = 5;
    let done = Arc::new(AtomicBool::new(false));
    let size = |w: u64, r: u64| ((w * 7919 + r * 104_729) % (3 << 20)) as usize + 1;

    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let dir = dir.clone();
        writers.push(thread::spawn(move || {
            for r in 0..ROUNDS {
                let path = dir.join(format!("w{w}-r{r}"));
                write_in_chunks(&path, &content(w * 1000 + r, size(w, r)), w + r);
            }
        }));
    }
    // Readers keep reading whatever files exist; every complete read must be a prefix of (or
    // equal to) the content its name stands for.
    let mut readers = Vec::new();
    for id in 0..3u64 {
        let dir = dir.clone();
        let done = done.clone();
        readers.push(thread::spawn(move || {
            let mut checked = 0u64;
            while !done.load(Ordering::Relaxed) {
                let Ok(rd) = fs::read_dir(&dir) else { continue };
                for ent in rd.flatten() {
                    let name = ent.file_name().to_string_lossy().into_owned();
                    let Some((w, r)) = name
                        .strip_prefix('w')
                        .and_then(|s| s.split_once("-r"))
                        .and_then(|(w, r)| Some((w.parse::<u64>().ok()?, r.parse::<u64>().ok()?)))
                    else {
                        panic!("reader {id}: unexpected name {name}");
                    };
                    if let Ok(got) = read_all(&ent.path()) {
                        let want = content(w * 1000 + r, size(w, r));
                        assert!(
                            got.len() <= want.len() && got[..] == want[..got.len()],
                            "reader {id}: {name} holds {} bytes that are not a prefix of its content",
                            got.len()
                        );
                        checked += 1;
                    }
                }
            }
            checked
        }));
    }
    for h in writers {
        h.join().expect("writer thread");
    }
    done.store(true, Ordering::Relaxed);
    for h in readers {
        h.join().expect("reader thread");
    }
    for w in 0..WRITERS {
        for r in 0..ROUNDS {
            let path = dir.join(format!("w{w}-r{r}"));
            let got = read_all(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
            assert!(
                got == content(w * 1000 + r, size(w, r)),
                "{} differs from what its writer wrote",
                path.display()
            );
        }
    }
}

/// Writers that each open the same file with O_TRUNC and write the same bytes: within one
/// mount all handles of a file share its data (docs/SEMANTICS.md), as on a local filesystem,
/// so interleaved truncates and writes must still end with exactly that content.
#[test]
fn writers_of_the_same_content_on_one_file() {
    let Some(mut fx) = MountFixture::new("writers_of_the_same_content_on_one_file") else {
        return;
    };
    let path: PathBuf = fx.path("same");
    let data = Arc::new(content(4242, 2_500_017));
    let mut writers = Vec::new();
    for w in 0..5u64 {
        let path = path.clone();
        let data = data.clone();
        writers.push(thread::spawn(move || {
            for round in 0..4 {
                write_in_chunks(&path, &data, w * 10 + round);
            }
        }));
    }
    for h in writers {
        h.join().expect("writer thread");
    }
    assert!(
        read_all(&path).expect("read") == *data,
        "interleaved writers corrupted the file"
    );
    fx.remount();
    assert!(
        read_all(&path).expect("read after remount") == *data,
        "lost after remount"
    );
}

/// Writers that each write their own temporary file and rename it over one name (what editors
/// and `rsync` do): readers always see one writer's complete content, and the name ends up
/// holding one writer's complete content.
#[test]
fn atomic_replace_by_rename_never_shows_a_mix() {
    let Some(fx) = MountFixture::new("atomic_replace_by_rename_never_shows_a_mix") else {
        return;
    };
    let target: PathBuf = fx.path("contended");
    const WRITERS: u64 = 5;
    let size = |w: u64| (w as usize + 1) * 400_000 + 17;
    let candidates: Arc<Vec<Vec<u8>>> =
        Arc::new((0..WRITERS).map(|w| content(500 + w, size(w))).collect());
    let done = Arc::new(AtomicBool::new(false));

    let mut readers = Vec::new();
    for _ in 0..2 {
        let target = target.clone();
        let candidates = candidates.clone();
        let done = done.clone();
        readers.push(thread::spawn(move || {
            let mut seen = 0u64;
            while !done.load(Ordering::Relaxed) {
                match read_all(&target) {
                    Ok(got) => {
                        assert!(
                            candidates.contains(&got),
                            "a reader saw {} bytes that are not one writer's complete content",
                            got.len()
                        );
                        seen += 1;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => panic!("reading {}: {e}", target.display()),
                }
            }
            seen
        }));
    }
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let target = target.clone();
        let candidates = candidates.clone();
        writers.push(thread::spawn(move || {
            for round in 0..4 {
                let tmp = target.with_file_name(format!(".contended.{w}.{round}.tmp"));
                write_in_chunks(&tmp, &candidates[w as usize], w * 10 + round);
                fs::rename(&tmp, &target).expect("rename over the target");
            }
        }));
    }
    for h in writers {
        h.join().expect("writer thread");
    }
    done.store(true, Ordering::Relaxed);
    let seen: u64 = readers
        .into_iter()
        .map(|h| h.join().expect("reader thread"))
        .sum();
    let got = read_all(&target).expect("read the contended file");
    assert!(
        candidates.contains(&got),
        "the contended file ({} bytes) equals no writer's complete content",
        got.len()
    );
    let names: Vec<String> = fs::read_dir(&fx.mountpoint)
        .expect("readdir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        vec!["contended".to_string()],
        "temporary files left behind"
    );
    eprintln!("readers checked {seen} complete reads");
}

#[test]
fn parallel_positional_reads_and_disjoint_writes_on_one_file() {
    let Some(mut fx) =
        MountFixture::new("parallel_positional_reads_and_disjoint_writes_on_one_file")
    else {
        return;
    };
    let path = fx.path("shared");
    const REGION: usize = 1 << 20;
    const THREADS: usize = 4;
    let original = content(77, REGION * THREADS);
    fs::write(&path, &original).expect("write original");

    // Readers share one handle and read the whole file at random offsets concurrently.
    let f = Arc::new(File::open(&path).expect("open for reading"));
    let original = Arc::new(original);
    let mut readers = Vec::new();
    for t in 0..THREADS {
        let f = f.clone();
        let original = original.clone();
        readers.push(thread::spawn(move || {
            let mut rng = StdRng::seed_from_u64(t as u64);
            let mut buf = vec![0u8; 70_000];
            for _ in 0..200 {
                let off = rng.random_range(0..original.len() - buf.len());
                f.read_exact_at(&mut buf, off as u64).expect("pread");
                assert!(
                    buf[..] == original[off..off + buf.len()],
                    "pread at {off} is wrong"
                );
            }
        }));
    }
    for h in readers {
        h.join().expect("reader thread");
    }
    drop(f);

    // Writers share one write handle, each owning a disjoint region.
    let wf = Arc::new(
        OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open for writing"),
    );
    let mut writers = Vec::new();
    for t in 0..THREADS {
        let wf = wf.clone();
        writers.push(thread::spawn(move || {
            let data = content(900 + t as u64, REGION);
            let mut rng = StdRng::seed_from_u64(t as u64 + 99);
            // In random order of 64 KiB pieces.
            let mut pieces: Vec<usize> = (0..REGION / 65536).collect();
            for i in (1..pieces.len()).rev() {
                pieces.swap(i, rng.random_range(0..=i));
            }
            for p in pieces {
                let off = p * 65536;
                wf.write_all_at(&data[off..off + 65536], (t * REGION + off) as u64)
                    .expect("pwrite");
            }
        }));
    }
    for h in writers {
        h.join().expect("writer thread");
    }
    wf.sync_all().expect("fsync");
    drop(wf);
    let expected: Vec<u8> = (0..THREADS)
        .flat_map(|t| content(900 + t as u64, REGION))
        .collect();
    assert!(
        read_all(&path).expect("read back") == expected,
        "disjoint writes mixed up"
    );
    fx.remount();
    assert!(
        read_all(&path).expect("read after remount") == expected,
        "lost after remount"
    );
}
