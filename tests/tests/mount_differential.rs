//! Differential tests: the same random sequence of file operations is applied to an objfs mount
//! and to a native directory, and the two are compared (names, file types, sizes, contents,
//! permission bits, symlink targets; and the success or errno of every operation) every few
//! steps and after a remount. The model is mountpoint-s3's reference tests, with the native
//! filesystem as the reference.
//!
//! A fixed list of seeds always runs; then fresh random seeds run until the time budget
//! (`OBJFS_DIFF_SECS`, default 15 s) is spent. A failure names its seed and the last
//! operations; rerun one seed with `OBJFS_DIFF_SEED=N`.

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use objfs_tests::mount_fixture::{snapshot, MountFixture};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

/// One operation, on paths relative to the case's root.
#[derive(Debug, Clone)]
enum Op {
    Create {
        path: String,
        len: usize,
        seed: u64,
    },
    WriteAt {
        path: String,
        offset: u64,
        len: usize,
        seed: u64,
    },
    Append {
        path: String,
        len: usize,
        seed: u64,
    },
    Truncate {
        path: String,
        len: u64,
    },
    Rename {
        from: String,
        to: String,
    },
    Unlink {
        path: String,
    },
    Mkdir {
        path: String,
    },
    Rmdir {
        path: String,
    },
    Chmod {
        path: String,
        mode: u32,
    },
    Symlink {
        target: String,
        path: String,
    },
}

const NAMES: [&str; 8] = ["a", "b", "c", "d", "e", "f", "g", "h"];
/// Symlink targets that never resolve (no generated name starts like these), so no operation
/// follows a link out of the case's root.
const TARGETS: [&str; 4] = [
    "target-x",
    "../target-y",
    "/nonexistent/objfs-target",
    "sub/t z",
];
const FILE_MODES: [u32; 5] = [0o644, 0o600, 0o755, 0o700, 0o444];
const DIR_MODES: [u32; 3] = [0o755, 0o700, 0o750];

fn data(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    StdRng::seed_from_u64(seed).fill(&mut v[..]);
    v
}

fn name(rng: &mut StdRng) -> &'static str {
    NAMES.choose(rng).copied().unwrap_or("a")
}

/// Existing entries under `root` (relative paths, not following links).
fn existing(root: &Path) -> Vec<(String, fs::FileType)> {
    snapshot(root)
        .keys()
        .filter_map(|rel| {
            let md = fs::symlink_metadata(root.join(rel)).ok()?;
            Some((rel.to_string_lossy().into_owned(), md.file_type()))
        })
        .collect()
}

/// What kind of entry an operation wants to act on.
#[derive(Clone, Copy)]
enum Want {
    File,
    Dir,
    Any,
}

struct Gen<'a> {
    rng: &'a mut StdRng,
    ents: Vec<(String, fs::FileType)>,
}

impl Gen<'_> {
    /// An existing entry of the wanted kind, if there is one.
    fn existing(&mut self, want: Want) -> Option<String> {
        let candidates: Vec<&String> = self
            .ents
            .iter()
            .filter(|(_, t)| match want {
                Want::File => t.is_file(),
                Want::Dir => t.is_dir(),
                Want::Any => true,
            })
            .map(|(p, _)| p)
            .collect();
        candidates.choose(self.rng).map(|s| (*s).clone())
    }

    /// A name in the root or in an existing directory (it may exist already); now and then a
    /// path whose parent does not exist, for the error paths.
    fn new_path(&mut self) -> String {
        if self.rng.random_bool(0.05) {
            return format!("{}/{}/{}", name(self.rng), name(self.rng), name(self.rng));
        }
        let n = name(self.rng);
        if self.rng.random_bool(0.3) {
            return n.to_string();
        }
        match self.existing(Want::Dir) {
            Some(d) => format!("{d}/{n}"),
            None => n.to_string(),
        }
    }

    /// Mostly an existing entry of the wanted kind, sometimes any new path.
    fn target(&mut self, want: Want) -> String {
        if self.rng.random_bool(0.85) {
            if let Some(p) = self.existing(want) {
                return p;
            }
        }
        self.new_path()
    }

    fn size(&mut self) -> usize {
        match self.rng.random_range(0..10) {
            0 => 0,
            1..=6 => self.rng.random_range(1..5000),
            7 | 8 => self.rng.random_range(5000..200_000),
            _ => self.rng.random_range(200_000..2_000_000),
        }
    }

    fn op(&mut self) -> Op {
        match self.rng.random_range(0..100) {
            0..=17 => {
                let path = if self.rng.random_bool(0.7) {
                    self.new_path()
                } else {
                    self.target(Want::File)
                };
                Op::Create {
                    len: self.size(),
                    seed: self.rng.random(),
                    path,
                }
            }
            18..=32 => {
                let path = self.target(Want::File);
                let offset = match self.rng.random_range(0..4) {
                    0 => 0,
                    1 => self.rng.random_range(0..10_000),
                    2 => self.rng.random_range(0..2_000_000),
                    _ => self.rng.random_range(0..8_000_000), // often past the end: a hole
                };
                Op::WriteAt {
                    path,
                    offset,
                    len: self.size().max(1),
                    seed: self.rng.random(),
                }
            }
            33..=40 => {
                let path = self.target(Want::File);
                Op::Append {
                    path,
                    len: self.size(),
                    seed: self.rng.random(),
                }
            }
            41..=46 => {
                let path = self.target(Want::File);
                let len = match self.rng.random_range(0..3) {
                    0 => 0,
                    1 => self.rng.random_range(0..5000),
                    _ => self.rng.random_range(0..3_000_000),
                };
                Op::Truncate { path, len }
            }
            47..=60 => {
                let from = self.target(Want::Any);
                let to = if self.rng.random_bool(0.3) {
                    self.target(Want::Any)
                } else {
                    self.new_path()
                };
                Op::Rename { from, to }
            }
            61..=66 => Op::Unlink {
                path: self.target(Want::Any),
            },
            67..=78 => Op::Mkdir {
                path: self.new_path(),
            },
            79..=84 => Op::Rmdir {
                path: self.target(Want::Dir),
            },
            85..=93 => {
                let want_file = self.rng.random_bool(0.7);
                let path = self.target(if want_file { Want::File } else { Want::Dir });
                let mode = if want_file {
                    FILE_MODES.choose(self.rng).copied().unwrap_or(0o644)
                } else {
                    DIR_MODES.choose(self.rng).copied().unwrap_or(0o755)
                };
                Op::Chmod { path, mode }
            }
            _ => Op::Symlink {
                target: TARGETS
                    .choose(self.rng)
                    .copied()
                    .unwrap_or("target-x")
                    .to_string(),
                path: self.new_path(),
            },
        }
    }
}

/// A random operation, biased towards paths that exist.
fn gen_op(rng: &mut StdRng, root: &Path) -> Op {
    let ents = existing(root);
    Gen { rng, ents }.op()
}

fn errno(e: std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(-1)
}

fn is_symlink(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink())
}

/// Applies `op` under `root`; `Ok(())` or the errno.
fn apply(root: &Path, op: &Op) -> Result<(), i32> {
    let p = |rel: &str| -> PathBuf { root.join(rel) };
    match op {
        Op::Create { path, len, seed } => {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(p(path))
                .map_err(errno)?;
            f.write_all(&data(*seed, *len)).map_err(errno)?;
            f.sync_all().map_err(errno)
        }
        Op::WriteAt {
            path,
            offset,
            len,
            seed,
        } => {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .open(p(path))
                .map_err(errno)?;
            f.seek(SeekFrom::Start(*offset)).map_err(errno)?;
            f.write_all(&data(*seed, *len)).map_err(errno)
        }
        Op::Append { path, len, seed } => {
            let mut f = fs::OpenOptions::new()
                .append(true)
                .open(p(path))
                .map_err(errno)?;
            f.write_all(&data(*seed, *len)).map_err(errno)
        }
        Op::Truncate { path, len } => {
            let f = fs::OpenOptions::new()
                .write(true)
                .open(p(path))
                .map_err(errno)?;
            f.set_len(*len).map_err(errno)
        }
        Op::Rename { from, to } => fs::rename(p(from), p(to)).map_err(errno),
        Op::Unlink { path } => fs::remove_file(p(path)).map_err(errno),
        Op::Mkdir { path } => fs::create_dir(p(path)).map_err(errno),
        Op::Rmdir { path } => fs::remove_dir(p(path)).map_err(errno),
        Op::Chmod { path, mode } => {
            fs::set_permissions(p(path), fs::Permissions::from_mode(*mode)).map_err(errno)
        }
        Op::Symlink { target, path } => std::os::unix::fs::symlink(target, p(path)).map_err(errno),
    }
}

/// Whether the op would follow a symlink at its final component (skipped: it would act on
/// the link's target, outside what the two trees compare).
fn follows_link(root: &Path, op: &Op) -> bool {
    match op {
        Op::Create { path, .. }
        | Op::WriteAt { path, .. }
        | Op::Append { path, .. }
        | Op::Truncate { path, .. }
        | Op::Chmod { path, .. } => is_symlink(&root.join(path)),
        _ => false,
    }
}

fn describe_tail(log: &[Op]) -> String {
    let start = log.len().saturating_sub(12);
    log[start..]
        .iter()
        .enumerate()
        .map(|(i, op)| format!("  #{}: {op:?}", start + i))
        .collect::<Vec<_>>()
        .join("\n")
}

fn compare(native: &Path, mounted: &Path, seed: u64, log: &[Op]) {
    let a = snapshot(native);
    let b = snapshot(mounted);
    if a != b {
        let mut diffs = Vec::new();
        for (k, v) in &a {
            match b.get(k) {
                None => diffs.push(format!(
                    "  {} missing in mount (native: {v:?})",
                    k.display()
                )),
                Some(w) if w != v => {
                    diffs.push(format!("  {}: native {v:?} vs mount {w:?}", k.display()))
                }
                _ => {}
            }
        }
        for (k, w) in &b {
            if !a.contains_key(k) {
                diffs.push(format!("  {} only in mount: {w:?}", k.display()));
            }
        }
        panic!(
            "seed {seed}: trees differ after {} ops:\n{}\nlast ops:\n{}",
            log.len(),
            diffs.join("\n"),
            describe_tail(log)
        );
    }
}

/// Runs one seed's sequence in `<root>/s<seed>` of both trees.
fn run_case(fx: &MountFixture, seed: u64, steps: usize) {
    let native = fx.native_path(format!("s{seed}"));
    let mounted = fx.path(format!("s{seed}"));
    fs::create_dir(&native).expect("mkdir native case root");
    fs::create_dir(&mounted).expect("mkdir mounted case root");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut log: Vec<Op> = Vec::new();
    let mut failed = 0usize;
    for step in 0..steps {
        let op = gen_op(&mut rng, &native);
        if follows_link(&native, &op) {
            continue;
        }
        let want = apply(&native, &op);
        let got = apply(&mounted, &op);
        log.push(op);
        if want.is_err() {
            failed += 1;
        }
        if want != got {
            panic!(
                "seed {seed} step {step}: native {want:?} vs mount {got:?} (errno)\nlast ops:\n{}",
                describe_tail(&log)
            );
        }
        if step % 5 == 4 {
            compare(&native, &mounted, seed, &log);
        }
    }
    compare(&native, &mounted, seed, &log);
    let entries = snapshot(&native).len();
    eprintln!(
        "seed {seed} (rerun with OBJFS_DIFF_SEED={seed}): {} ops, {failed} of them failed alike \
         on both sides; {entries} entries at the end",
        log.len()
    );
}

const FIXED_SEEDS: [u64; 6] = [1, 2, 3, 42, 1234, 0xdead_beef];
const STEPS: usize = 120;

#[test]
fn random_operations_match_native() {
    let Some(mut fx) = MountFixture::new("random_operations_match_native") else {
        return;
    };
    if let Some(seed) = std::env::var("OBJFS_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        run_case(&fx, seed, STEPS * 3);
        return;
    }
    let mut seeds: Vec<u64> = FIXED_SEEDS.to_vec();
    for &seed in &FIXED_SEEDS {
        run_case(&fx, seed, STEPS);
    }
    let budget = Duration::from_secs(
        std::env::var("OBJFS_DIFF_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(15),
    );
    let start = Instant::now();
    let mut seeder = StdRng::from_os_rng();
    while start.elapsed() < budget {
        let seed: u64 = seeder.random_range(1_000_000..u64::MAX / 2);
        run_case(&fx, seed, STEPS);
        seeds.push(seed);
    }
    // Everything must be the same after the store was closed and reopened.
    fx.remount();
    for seed in seeds {
        compare(
            &fx.native_path(format!("s{seed}")),
            &fx.path(format!("s{seed}")),
            seed,
            &[],
        );
    }
}
