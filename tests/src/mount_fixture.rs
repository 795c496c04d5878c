//! A real FUSE mount for the `mount_*` integration tests.
//!
//! [`MountFixture`] creates a [`LocalStore`] in a temporary directory, mounts it in-process with
//! [`objfs_fs::mount`] (the tests crate cannot see the `objfs` binary), waits until the kernel
//! lists the mount, and ALWAYS unmounts in `Drop`, also while a test panics: through the
//! handle first, then `fusermount3 -u -z` as a fall-back. [`MountFixture::remount`] unmounts,
//! closes the store, reopens it and mounts it again, to check what survives.
//!
//! Tests that need FUSE call [`MountFixture::new`] and skip (with a loud message) only when
//! `/dev/fuse` or `fusermount3` is truly absent; with `OBJFS_REQUIRE_FUSE=1` (set by
//! `.ci/run`) they fail instead, so CI can never pass by skipping.
//!
//! Also here: [`snapshot`] (a comparable picture of a directory tree), [`compare_files`]
//! (streamed byte comparison with the first differing offset), and [`run`] (a shell command
//! that must succeed).

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use objfs_fs::{FsConfig, MountHandle};
use objfs_store::local::{LocalConfig, LocalStore};
use objfs_store::ObjectStore;
use tempfile::TempDir;

/// Why FUSE cannot be used here, or `None` when it can.
pub fn fuse_unavailable() -> Option<String> {
    if !Path::new("/dev/fuse").exists() {
        return Some("/dev/fuse does not exist".into());
    }
    if which("fusermount3").is_none() {
        return Some("fusermount3 is not installed (apt-get install fuse3)".into());
    }
    None
}

/// Finds a program in PATH or the usual system directories.
pub fn which(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/bin", "/bin", "/usr/sbin", "/sbin"].map(PathBuf::from));
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// Prints the loud skip message (or panics under `OBJFS_REQUIRE_FUSE=1`); returns true when
/// the calling test must return early.
pub fn skip_without_fuse(test: &str) -> bool {
    match fuse_unavailable() {
        None => false,
        Some(why) => {
            if std::env::var("OBJFS_REQUIRE_FUSE").is_ok_and(|v| v == "1") {
                panic!("{test}: FUSE is required (OBJFS_REQUIRE_FUSE=1) but {why}");
            }
            eprintln!();
            eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
            eprintln!("!!! SKIPPING {test}: {why}");
            eprintln!("!!! this test needs a real FUSE mount; install fuse3 to run it");
            eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
            true
        }
    }
}

/// Whether `mountpoint` is in the kernel's mount table.
pub fn is_mounted(mountpoint: &Path) -> bool {
    let Ok(text) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = mountpoint.to_string_lossy().replace(' ', "\\040");
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|mp| mp == want)
}

/// A mounted objfs over a fresh local store, unmounted on drop.
pub struct MountFixture {
    /// Where the filesystem is mounted.
    pub mountpoint: PathBuf,
    /// The store's directory.
    pub store_path: PathBuf,
    /// A native directory on the same disk, for reference copies.
    pub native: PathBuf,
    cfg: FsConfig,
    store: Option<Arc<LocalStore>>,
    handle: Option<MountHandle>,
    // Last: removed after the mount is gone.
    dir: TempDir,
}

impl MountFixture {
    /// Mounts a fresh store with a small-ish default configuration; `None` (after a loud
    /// message) when FUSE is absent.
    pub fn new(test: &str) -> Option<MountFixture> {
        Self::with_config(test, Self::default_config())
    }

    /// The configuration tests use unless they ask otherwise: no attribute caching (so every
    /// stat reaches the filesystem), default sizes.
    pub fn default_config() -> FsConfig {
        FsConfig {
            attr_ttl: Duration::ZERO,
            fs_name: "objfs-test".into(),
            ..FsConfig::default()
        }
    }

    /// Mounts a fresh store with `cfg`.
    pub fn with_config(test: &str, cfg: FsConfig) -> Option<MountFixture> {
        if skip_without_fuse(test) {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("objfs-mount-test-")
            .tempdir()
            .expect("create a temporary directory");
        let store_path = dir.path().join("store");
        let mountpoint = dir.path().join("mnt");
        let native = dir.path().join("native");
        fs::create_dir(&mountpoint).expect("create the mount point");
        fs::create_dir(&native).expect("create the native directory");
        let store = LocalStore::init(&store_path, LocalConfig::default()).expect("init store");
        let mut fx = MountFixture {
            mountpoint,
            store_path,
            native,
            cfg,
            store: Some(Arc::new(store)),
            handle: None,
            dir,
        };
        fx.mount();
        Some(fx)
    }

    /// The temporary directory holding the store, the mount point and the native directory.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// The mounted store (`None` between an unmount and a remount), for its status.
    pub fn store(&self) -> Option<&Arc<LocalStore>> {
        self.store.as_ref()
    }

    /// A path inside the mount.
    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.mountpoint.join(rel)
    }

    /// A path inside the native reference directory.
    pub fn native_path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.native.join(rel)
    }

    fn mount(&mut self) {
        let store = self.store.clone().expect("the store is open");
        self.handle = Some(mount_and_wait(store, &self.mountpoint, self.cfg.clone()));
    }

    /// Unmounts (finishing uploads) and closes the store. Safe to call twice.
    pub fn unmount(&mut self) {
        if let Some(h) = self.handle.take() {
            if let Err(e) = h.unmount() {
                eprintln!("unmount of {} failed: {e}", self.mountpoint.display());
            }
        }
        if is_mounted(&self.mountpoint) {
            force_unmount(&self.mountpoint);
        }
        if let Some(store) = self.store.take() {
            close_store(store);
        }
    }

    /// Unmounts, closes the store, reopens it and mounts it again.
    pub fn remount(&mut self) {
        self.unmount();
        let store = LocalStore::open(&self.store_path).expect("reopen the store");
        self.store = Some(Arc::new(store));
        self.mount();
    }
}

impl Drop for MountFixture {
    fn drop(&mut self) {
        // Never panic here: a panic while unwinding aborts and hides the test's own message.
        unmount_quietly(self.handle.take(), &self.mountpoint);
        if let Some(store) = self.store.take() {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| close_store(store)));
        }
    }
}

/// Mounts `store` at `mountpoint` in this process and waits until the kernel lists the mount
/// (panics after 20 s). The caller owns the handle and must unmount.
pub fn mount_and_wait(
    store: Arc<dyn ObjectStore>,
    mountpoint: &Path,
    cfg: FsConfig,
) -> MountHandle {
    let handle = objfs_fs::mount(store, mountpoint, cfg)
        .unwrap_or_else(|e| panic!("mount {}: {e}", mountpoint.display()));
    let start = Instant::now();
    while !is_mounted(mountpoint) {
        if start.elapsed() > Duration::from_secs(20) {
            let _ = handle.unmount();
            panic!("{} did not appear in the mount table", mountpoint.display());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    handle
}

/// Unmounts `handle` without panicking (also while unwinding), and detaches the mount point
/// lazily when the handle could not.
pub fn unmount_quietly(handle: Option<MountHandle>, mountpoint: &Path) {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || match handle {
        Some(h) => h.unmount().map_err(|e| e.to_string()),
        None => Ok(()),
    }));
    if let Ok(Err(e)) = &result {
        eprintln!("unmount of {} failed: {e}", mountpoint.display());
    }
    if result.is_err() || is_mounted(mountpoint) {
        force_unmount(mountpoint);
    }
}

/// `fusermount3 -u -z`: detaches a mount whatever state its server is in.
pub fn force_unmount(mountpoint: &Path) {
    let _ = Command::new("fusermount3")
        .arg("-u")
        .arg("-z")
        .arg(mountpoint)
        .status();
}

/// Closes the store once the filesystem has dropped its references (waits up to 10 s).
fn close_store(mut store: Arc<LocalStore>) {
    for _ in 0..1000 {
        match Arc::try_unwrap(store) {
            Ok(s) => {
                if let Err(e) = s.close() {
                    eprintln!("closing the store failed: {e}");
                }
                return;
            }
            Err(s) => {
                store = s;
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    eprintln!("the store is still referenced after unmount; dropping it unclosed");
}

/// Runs a command that must succeed; returns its stdout. Panics with its stderr otherwise.
pub fn run(program: &str, args: &[&str], cwd: &Path) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} in {} failed ({}):\nstdout: {}\nstderr: {}",
        cwd.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What a tree entry is, for comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A regular file with its size and a 64-bit hash of its bytes.
    File {
        size: u64,
        hash: u64,
    },
    Dir,
    Symlink(PathBuf),
}

/// One entry of a [`snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    /// Permission bits (mode & 0o7777); 0 for symlinks.
    pub perm: u32,
}

/// Every entry under `root` (relative path -> entry), walked without following symlinks.
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Entry>) {
    let rd = fs::read_dir(dir).unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()));
    for ent in rd {
        let ent = ent.unwrap_or_else(|e| panic!("read_dir entry in {}: {e}", dir.display()));
        let p = ent.path();
        let rel = p
            .strip_prefix(root)
            .expect("entry under root")
            .to_path_buf();
        let md = fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()));
        let ft = md.file_type();
        if ft.is_symlink() {
            let target =
                fs::read_link(&p).unwrap_or_else(|e| panic!("readlink {}: {e}", p.display()));
            out.insert(
                rel,
                Entry {
                    kind: Kind::Symlink(target),
                    perm: 0,
                },
            );
        } else if ft.is_dir() {
            out.insert(
                rel,
                Entry {
                    kind: Kind::Dir,
                    perm: md.permissions().mode() & 0o7777,
                },
            );
            walk(root, &p, out);
        } else {
            let data = fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
            assert_eq!(
                data.len() as u64,
                md.size(),
                "{}: stat size differs from the bytes read",
                p.display()
            );
            out.insert(
                rel,
                Entry {
                    kind: Kind::File {
                        size: md.size(),
                        hash: hash_bytes(&data),
                    },
                    perm: md.permissions().mode() & 0o7777,
                },
            );
        }
    }
}

/// A 64-bit FNV-1a hash (stable, dependency-free; for comparing, not for security).
pub fn hash_bytes(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Asserts that two trees are equal, naming the first difference.
pub fn assert_same_tree(native: &Path, mounted: &Path) {
    let a = snapshot(native);
    let b = snapshot(mounted);
    for (k, v) in &a {
        match b.get(k) {
            None => panic!("{} is missing in the mount", k.display()),
            Some(w) => assert_eq!(v, w, "{} differs (native vs mount)", k.display()),
        }
    }
    for k in b.keys() {
        assert!(a.contains_key(k), "{} is in the mount only", k.display());
    }
}

/// Compares two files by streaming both (1 MiB chunks); panics at the first differing byte.
pub fn compare_files(expected: &Path, actual: &Path) {
    let open = |p: &Path| fs::File::open(p).unwrap_or_else(|e| panic!("open {}: {e}", p.display()));
    let (mut a, mut b) = (open(expected), open(actual));
    let la = a.metadata().map(|m| m.len()).unwrap_or(0);
    let lb = b.metadata().map(|m| m.len()).unwrap_or(0);
    assert_eq!(
        la,
        lb,
        "size of {} vs {}",
        expected.display(),
        actual.display()
    );
    let mut ba = vec![0u8; 1 << 20];
    let mut bb = vec![0u8; 1 << 20];
    let mut offset: u64 = 0;
    loop {
        let na = read_full(&mut a, &mut ba);
        let nb = read_full(&mut b, &mut bb);
        assert_eq!(na, nb, "short read at {offset} of {}", actual.display());
        if na == 0 {
            break;
        }
        if ba[..na] != bb[..nb] {
            let i = ba[..na]
                .iter()
                .zip(&bb[..nb])
                .position(|(x, y)| x != y)
                .unwrap_or(0);
            panic!(
                "{} and {} differ at byte {}",
                expected.display(),
                actual.display(),
                offset + i as u64
            );
        }
        offset += na as u64;
    }
}

fn read_full(f: &mut fs::File, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("read: {e}"),
        }
    }
    n
}
