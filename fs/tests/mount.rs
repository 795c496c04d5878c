//! Real-mount smoke tests: mount the in-memory store with `objfs_fs::mount` in a temporary
//! directory and drive it with `std::fs`. The guard always unmounts, also when a test
//! panics (through the handle, then `fusermount3 -u -z` as a fall-back).

mod common;

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use objfs_fs::{FsConfig, MountHandle};
use objfs_store::memory::MemoryStore;
use objfs_store::ObjectStore;

struct Mounted {
    handle: Option<MountHandle>,
    dir: tempfile::TempDir,
    store: Arc<MemoryStore>,
}

impl Mounted {
    fn new(cfg: FsConfig) -> Option<Mounted> {
        if !Path::new("/dev/fuse").exists() {
            eprintln!("SKIPPING: /dev/fuse is missing");
            return None;
        }
        let store = Arc::new(MemoryStore::new());
        Some(Self::with_store(store, cfg))
    }

    fn with_store(store: Arc<MemoryStore>, cfg: FsConfig) -> Mounted {
        let dir = tempfile::tempdir().expect("tempdir");
        let dyn_store: Arc<dyn ObjectStore> = store.clone();
        let handle = objfs_fs::mount(dyn_store, dir.path(), cfg).expect("mount");
        Mounted {
            handle: Some(handle),
            dir,
            store,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn unmount(&mut self) {
        if let Some(h) = self.handle.take() {
            if let Err(e) = h.unmount() {
                eprintln!("unmount: {e}");
            }
        }
        force_unmount(self.dir.path());
    }
}

fn is_mounted(p: &Path) -> bool {
    let want = p.to_string_lossy().to_string();
    fs::read_to_string("/proc/self/mountinfo")
        .map(|t| {
            t.lines()
                .filter_map(|l| l.split(' ').nth(4))
                .any(|m| m == want)
        })
        .unwrap_or(false)
}

fn force_unmount(p: &Path) {
    if is_mounted(p) {
        let _ = Command::new("fusermount3")
            .arg("-u")
            .arg("-z")
            .arg(p)
            .status();
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        self.unmount();
    }
}

fn cfg() -> FsConfig {
    FsConfig {
        part_size: 1024 * 1024,
        max_memory: 16 * 1024 * 1024,
        attr_ttl: Duration::from_millis(100),
        fs_name: "objfs:test".into(),
        ..FsConfig::default()
    }
}

fn sh(dir: &Path, script: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "{script}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn files_dirs_attrs_and_remount() {
    let Some(mut m) = Mounted::new(cfg()) else {
        return;
    };
    assert!(is_mounted(m.dir.path()));
    fs::create_dir_all(m.path("a/b/c")).expect("mkdir -p");
    fs::write(m.path("a/b/c/hello.txt"), b"hello").expect("write");
    assert_eq!(fs::read(m.path("a/b/c/hello.txt")).expect("read"), b"hello");
    let data = common::pattern(5 * 1024 * 1024 + 333, 1);
    fs::write(m.path("a/big.bin"), &data).expect("write big");
    assert_eq!(fs::read(m.path("a/big.bin")).expect("read big"), data);

    // Overwrite in the middle with seeks, append, truncate.
    let mut f = fs::OpenOptions::new()
        .write(true)
        .open(m.path("a/big.bin"))
        .expect("open");
    f.seek(SeekFrom::Start(2_000_000)).expect("seek");
    f.write_all(b"MIDDLE").expect("write");
    drop(f);
    let mut expect = data.clone();
    expect[2_000_000..2_000_006].copy_from_slice(b"MIDDLE");
    assert_eq!(fs::read(m.path("a/big.bin")).expect("read"), expect);
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(m.path("a/big.bin"))
        .expect("open");
    f.write_all(b"TAIL").expect("append");
    drop(f);
    expect.extend_from_slice(b"TAIL");
    assert_eq!(fs::read(m.path("a/big.bin")).expect("read"), expect);
    let f = fs::OpenOptions::new()
        .write(true)
        .open(m.path("a/big.bin"))
        .expect("open");
    f.set_len(1000).expect("truncate");
    drop(f);
    assert_eq!(
        fs::read(m.path("a/big.bin")).expect("read"),
        &expect[..1000]
    );

    // Reads through the mount see written data before close.
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(m.path("rw.txt"))
        .expect("open rw");
    f.write_all(b"visible before close").expect("write");
    let mut other = fs::File::open(m.path("rw.txt")).expect("open 2");
    let mut s = String::new();
    other.read_to_string(&mut s).expect("read");
    assert_eq!(s, "visible before close");
    drop(other);
    drop(f);

    fs::set_permissions(m.path("a/b/c/hello.txt"), fs::Permissions::from_mode(0o600))
        .expect("chmod");
    std::os::unix::fs::symlink("b/c/hello.txt", m.path("a/link")).expect("symlink");
    assert_eq!(
        fs::read_link(m.path("a/link")).expect("readlink"),
        PathBuf::from("b/c/hello.txt")
    );
    assert_eq!(fs::read(m.path("a/link")).expect("read via link"), b"hello");
    fs::hard_link(m.path("a/b/c/hello.txt"), m.path("a/hard")).expect("link");
    assert_eq!(fs::metadata(m.path("a/hard")).expect("stat").nlink(), 2);
    assert_eq!(
        fs::read(m.path("a/hard")).expect("read via hard link"),
        b"hello"
    );
    fs::remove_file(m.path("a/hard")).expect("unlink hard link");
    assert_eq!(
        fs::metadata(m.path("a/b/c/hello.txt"))
            .expect("stat")
            .nlink(),
        1
    );
    fs::rename(m.path("a/b"), m.path("a/moved")).expect("rename dir");
    assert!(!m.path("a/b").exists());
    assert_eq!(
        fs::read(m.path("a/moved/c/hello.txt")).expect("read"),
        b"hello"
    );
    let err = fs::remove_dir(m.path("a/moved")).map_err(|e| e.raw_os_error());
    assert_eq!(err, Err(Some(libc::ENOTEMPTY)));

    // Everything survives a remount on the same store.
    let store = m.store.clone();
    m.unmount();
    assert!(!is_mounted(m.dir.path()));
    let m2 = Mounted::with_store(store, cfg());
    let meta = fs::metadata(m2.path("a/moved/c/hello.txt")).expect("stat");
    assert_eq!(meta.mode() & 0o7777, 0o600);
    assert_eq!(meta.len(), 5);
    assert_eq!(
        fs::read(m2.path("a/big.bin")).expect("read"),
        &expect[..1000]
    );
    assert_eq!(
        fs::read_link(m2.path("a/link")).expect("readlink"),
        PathBuf::from("b/c/hello.txt")
    );
    let mut names: Vec<String> = fs::read_dir(m2.path("a"))
        .expect("readdir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec!["big.bin", "link", "moved"]);
}

/// Pages of `path` in the kernel's page cache (`mincore` over a mapping of it). Opening the
/// file to map it is itself an open: the mount's answer keeps or drops the pages first.
fn resident_pages(path: &Path) -> usize {
    use std::os::fd::AsRawFd;
    let f = fs::File::open(path).expect("open for mincore");
    let len = f.metadata().expect("fstat").len() as usize;
    if len == 0 {
        return 0;
    }
    let page = 4096;
    let pages = len.div_ceil(page);
    let mut vec = vec![0u8; pages];
    // SAFETY: a read-only shared mapping of an open file, unmapped before returning; mincore
    // writes one byte per page into `vec`, which holds `pages` bytes.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        );
        assert_ne!(p, libc::MAP_FAILED, "mmap");
        assert_eq!(libc::mincore(p, len, vec.as_mut_ptr()), 0, "mincore");
        libc::munmap(p, len);
    }
    vec.iter().filter(|b| **b & 1 == 1).count()
}

/// A file reopened at the same version keeps the kernel's pages (`FOPEN_KEEP_CACHE`): the
/// second read is the page cache's. A version made elsewhere (here: straight into the store,
/// as another machine would on a bucket, with the same size so only the bytes differ), and
/// one written through another handle of this mount, make the next open drop them, and the
/// reads return the new bytes.
#[test]
fn reopen_keeps_the_page_cache_only_for_the_same_version() {
    let Some(m) = Mounted::new(cfg()) else {
        return;
    };
    let a = common::pattern(3 * 1024 * 1024 + 100, 7);
    fs::write(m.path("f.bin"), &a).expect("write");
    // The first read-only open drops whatever the writes left; the read fills the cache.
    assert_eq!(fs::read(m.path("f.bin")).expect("read"), a);
    let pages = a.len().div_ceil(4096);
    assert_eq!(
        resident_pages(&m.path("f.bin")),
        pages,
        "kept at the same version"
    );
    assert_eq!(fs::read(m.path("f.bin")).expect("reread"), a);

    // Changed in the store behind the mount's back, same size.
    let b = common::pattern(a.len(), 8);
    assert_ne!(a, b);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(m.store.put("f.bin", b.clone().into(), Default::default()))
        .expect("put behind the mount");
    std::thread::sleep(Duration::from_millis(300)); // past the attribute TTL
    assert_eq!(
        resident_pages(&m.path("f.bin")),
        0,
        "a new version drops the pages"
    );
    assert_eq!(fs::read(m.path("f.bin")).expect("read new"), b);
    assert_eq!(resident_pages(&m.path("f.bin")), pages);

    // Written through this mount (another handle): the pages the write left are the new
    // bytes; an open for writing forgets the version, so the next open drops them anyway.
    let mut w = fs::OpenOptions::new()
        .write(true)
        .open(m.path("f.bin"))
        .expect("open for writing");
    w.seek(SeekFrom::Start(4096)).expect("seek");
    w.write_all(b"written through the mount").expect("write");
    drop(w);
    let mut c = b.clone();
    c[4096..4096 + 25].copy_from_slice(b"written through the mount");
    assert_eq!(fs::read(m.path("f.bin")).expect("read written"), c);
    assert_eq!(resident_pages(&m.path("f.bin")), pages);
    assert_eq!(fs::read(m.path("f.bin")).expect("reread written"), c);
}

/// A file of a past moment (`.snapshots/@T/`) is one version for good: reopened, it keeps
/// the kernel's pages too, and reads the bytes it had then, not the live file's.
#[test]
fn a_moment_keeps_its_page_cache() {
    let Some(m) = Mounted::new(cfg()) else {
        return;
    };
    let a = common::pattern(1024 * 1024 + 10, 3);
    fs::write(m.path("f.bin"), &a).expect("write");
    std::thread::sleep(Duration::from_millis(1100));
    let then = objfs_store::history::time::format_rfc3339(std::time::SystemTime::now());
    std::thread::sleep(Duration::from_millis(1100));
    let b = common::pattern(a.len(), 4);
    fs::write(m.path("f.bin"), &b).expect("write again");
    let past = m.path(&format!(".snapshots/@{then}/f.bin"));
    assert_eq!(fs::read(&past).expect("read the past"), a);
    assert_eq!(resident_pages(&past), a.len().div_ceil(4096), "kept");
    assert_eq!(fs::read(&past).expect("read the past again"), a);
    assert_eq!(fs::read(m.path("f.bin")).expect("read now"), b);
}

#[test]
fn shell_tools() {
    let Some(m) = Mounted::new(cfg()) else {
        return;
    };
    let root = m.dir.path();
    let src = tempfile::tempdir().expect("tempdir");
    sh(
        src.path(),
        "mkdir -p t/d1/d2 && echo one > t/d1/f1 && head -c 3000000 /dev/urandom > t/d1/d2/r.bin \
         && ln -s d1/f1 t/l && chmod 751 t/d1",
    );
    let s = src.path().display();
    sh(root, &format!("cp -a {s}/t copy && diff -r {s}/t copy"));
    sh(root, "ls -la copy copy/d1 >/dev/null && find copy | sort > /dev/null && stat copy/d1/f1 >/dev/null");
    assert_eq!(sh(root, "stat -c %a copy/d1").trim(), "751");
    sh(
        root,
        &format!(
            "tar -C {s} -cf - t | tar -xf - -C . --transform s/^t/untar/ && diff -r {s}/t untar"
        ),
    );
    sh(
        root,
        &format!("tar -cf {s}/back.tar copy && tar -tf {s}/back.tar | grep -q r.bin"),
    );
    sh(root, "touch -d '2001-02-03 04:05:06' copy/d1/f1 && test \"$(stat -c %Y copy/d1/f1)\" = 981173106");
    sh(root, "dd if=/dev/zero of=dd.bin bs=4k count=10 2>/dev/null && dd if=/dev/urandom of=dd.bin bs=4k seek=5 count=1 conv=notrunc 2>/dev/null && test $(stat -c %s dd.bin) = 40960");
    sh(root, "truncate -s 10M sparse && test $(stat -c %s sparse) = 10485760 && truncate -s 10 sparse && test $(stat -c %s sparse) = 10");
    sh(
        root,
        "mv copy moved && test -f moved/d1/d2/r.bin && test ! -e copy",
    );
    sh(
        root,
        "setfattr -n user.k -v val moved/d1/f1 2>/dev/null || true",
    );
    sh(root, "rm -rf moved untar && test ! -e moved");
    sh(root, "df . >/dev/null");
}

/// What `python3 -c script path` prints.
fn python(script: &str, path: &Path) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(path)
        .output()
        .expect("python3");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `-o noxattr`: every xattr call fails with EOPNOTSUPP (the kernel then stops asking, which
/// is what makes `ls -l` cheap); files work as usual. With xattrs on, user xattrs round-trip,
/// and the names of other namespaces (what `ls -l` asks of every file until one answers
/// "not supported") are not supported: get, set and remove fail with EOPNOTSUPP (the value
/// set is a valid ACL, which the kernel checks before the filesystem sees it).
#[test]
fn xattrs_on_and_off() {
    let probe = "import os, sys\n\
p = sys.argv[1]\n\
try:\n    os.setxattr(p, 'user.color', b'blue'); print('set', os.getxattr(p, 'user.color').decode())\n\
except OSError as e: print('errno', e.errno)\n";
    let others = "import os, sys\n\
p = sys.argv[1]\n\
acl = bytes([2, 0, 0, 0, 1, 0, 6, 0, 255, 255, 255, 255, 4, 0, 4, 0, 255, 255, 255, 255, 32, 0, 4, 0, 255, 255, 255, 255])\n\
ops = [lambda n: os.getxattr(p, n), lambda n: os.setxattr(p, n, acl), lambda n: os.removexattr(p, n)]\n\
def run(op, n):\n    try:\n        op(n); return 'ok'\n    except OSError as e:\n        return str(e.errno)\n\
for n in ['security.selinux', 'system.posix_acl_access', 'trusted.x']:\n    print('\\n'.join(run(op, n) for op in ops))\n";
    for on in [true, false] {
        let Some(m) = Mounted::new(FsConfig { xattr: on, ..cfg() }) else {
            return;
        };
        fs::write(m.path("f"), b"data").expect("write");
        let out = python(probe, &m.path("f")).trim().to_string();
        if on {
            assert_eq!(out, "set blue");
        } else {
            assert_eq!(out, format!("errno {}", libc::EOPNOTSUPP));
        }
        let answers: Vec<String> = python(others, &m.path("f"))
            .lines()
            .map(str::to_string)
            .collect();
        // Reading an ACL may also be answered "no ACL" (ENODATA) by the kernel's own ACL
        // cache of the inode, without asking the filesystem; anything else is EOPNOTSUPP.
        let expected = |i: usize, a: &str| {
            a == libc::EOPNOTSUPP.to_string() || (i == 3 && a == libc::ENODATA.to_string())
        };
        assert_eq!(answers.len(), 9, "{answers:?}");
        assert!(
            answers.iter().enumerate().all(|(i, a)| expected(i, a)),
            "{answers:?}"
        );
        let ls = sh(m.dir.path(), "ls -l f");
        assert!(ls.contains(" 4 "), "{ls}");
        assert_eq!(fs::read(m.path("f")).expect("read"), b"data");
    }
}
