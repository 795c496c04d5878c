//! FUSE over io_uring (`objfs mount -o io_uring=auto|on|off`, the patch in
//! fs/vendor/fuser/PATCHES.md) on the real kernel: by default the `objfs mount` daemon serves
//! shell tools' work from its per-CPU queues when the kernel offers them, its queue threads
//! stop polling once the mount is idle, it survives `kill -9` without losing what was
//! fsynced, unmounts cleanly, and uses `/dev/fuse` when io_uring is off or not offered
//! (with a warning when it was asked for).
//!
//! The kernel offers FUSE over io_uring only while its module parameter `enable_uring` is
//! set. That is a machine-wide switch read at each mount's handshake, so this binary sets it
//! for its own mounts and puts the old value back (a guard with `Drop`); its cases run one
//! after another in one test so that they agree on the switch. Other test binaries run before
//! or after this one, never beside it, and their mounts do not ask for io_uring anyway.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use objfs_tests::daemon_mount::{thread_ticks, DaemonMount};
use objfs_tests::mount_fixture::{assert_same_tree, is_mounted, run, skip_without_fuse};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const PARAM: &str = "/sys/module/fuse/parameters/enable_uring";

/// Sets `enable_uring` and restores its old value when dropped.
struct UringSwitch {
    old: String,
}

impl UringSwitch {
    /// `None` when this kernel has no FUSE over io_uring or the switch cannot be written
    /// (not root): the caller skips, saying why.
    fn set(on: bool) -> Result<UringSwitch, String> {
        let old = fs::read_to_string(PARAM).map_err(|e| {
            format!("{PARAM}: {e} (a kernel without CONFIG_FUSE_IO_URING, before 6.14)")
        })?;
        let s = UringSwitch {
            old: old.trim().to_string(),
        };
        s.flip(on)?;
        Ok(s)
    }

    fn flip(&self, on: bool) -> Result<(), String> {
        fs::write(PARAM, if on { "Y" } else { "N" })
            .map_err(|e| format!("cannot write {PARAM}: {e} (root is needed)"))
    }
}

impl Drop for UringSwitch {
    fn drop(&mut self) {
        let _ = fs::write(PARAM, &self.old);
    }
}

fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    StdRng::seed_from_u64(seed).fill(&mut v[..]);
    v
}

/// How many io_uring instances process `pid` holds.
fn io_uring_fds(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the daemon's descriptors")
        .filter_map(|fd| fs::read_link(fd.ok()?.path()).ok())
        .filter(|t| t.to_string_lossy().contains("io_uring"))
        .count()
}

/// Waits until process `pid` holds `n` io_uring instances (the queues are made once the
/// session runs, just after the kernel lists the mount); returns how many it holds then.
fn queues_made(pid: u32, n: usize) -> usize {
    // Not a timed assertion: a generous bound on queues that never come.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let have = io_uring_fds(pid);
        if have >= n || std::time::Instant::now() >= deadline {
            return have;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Completions posted on process `pid`'s io_uring instances so far (the kernel's `CqTail`
/// in their fdinfo): one per request a queue received, plus the queues' own no-ops.
fn completions(pid: u32) -> u64 {
    let mut n = 0;
    for fd in fs::read_dir(format!("/proc/{pid}/fd")).expect("the daemon's descriptors") {
        let fd = fd.unwrap();
        if !fs::read_link(fd.path()).is_ok_and(|t| t.to_string_lossy().contains("io_uring")) {
            continue;
        }
        let info = fs::read_to_string(format!(
            "/proc/{pid}/fdinfo/{}",
            fd.file_name().to_string_lossy()
        ))
        .unwrap_or_default();
        n += info
            .lines()
            .find_map(|l| l.strip_prefix("CqTail:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    n
}

/// Voluntary context switches of the daemon's `/dev/fuse` reader threads (fuser names them
/// `fuser-N`; the queues' threads are `fuser-uring-N`): a reader sleeps once per request.
fn reader_switches(pid: u32) -> u64 {
    let mut n = 0;
    for task in fs::read_dir(format!("/proc/{pid}/task")).expect("the daemon's threads") {
        let task = task.unwrap().path();
        let comm = fs::read_to_string(task.join("comm")).unwrap_or_default();
        let is_reader = comm
            .trim()
            .strip_prefix("fuser-")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if !is_reader {
            continue;
        }
        let status = fs::read_to_string(task.join("status")).unwrap_or_default();
        n += status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    n
}

/// Asserts that the mount's log says why io_uring is not used.
fn assert_logged(log: &Path, why: &str, m: &DaemonMount) {
    assert!(
        fs::read_to_string(log).unwrap().contains(why),
        "the log says why io_uring is not used ({why:?})\n{}",
        m.log_tail()
    );
}

/// The CPUs the kernel makes a queue for (`nr_cpu_ids`).
fn possible_cpus() -> usize {
    let text = fs::read_to_string("/sys/devices/system/cpu/possible").expect("possible CPUs");
    text.trim()
        .split(',')
        .filter_map(|r| r.rsplit('-').next()?.parse::<usize>().ok())
        .max()
        .expect("a CPU range")
        + 1
}

/// A native tree with sizes around the page and the 1 MiB payload of a queue entry.
fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("a/b")).unwrap();
    fs::create_dir_all(root.join("empty")).unwrap();
    let sizes = [0usize, 1, 4095, 4096, 65537, 1 << 20, (3 << 20) + 5];
    for (i, size) in sizes.iter().enumerate() {
        fs::write(root.join(format!("f{i}.bin")), bytes(i as u64, *size)).unwrap();
        fs::write(
            root.join(format!("a/b/g{i}")),
            bytes(100 + i as u64, size / 3),
        )
        .unwrap();
    }
    std::os::unix::fs::symlink("f1.bin", root.join("link")).unwrap();
}

/// Shell work on `mnt` checked against native copies in `scratch`.
fn shell_work(mnt: &Path, scratch: &Path) {
    let native = scratch.join("native");
    make_tree(&native);
    let tree = mnt.join("tree");
    run(
        "cp",
        &["-a", native.to_str().unwrap(), tree.to_str().unwrap()],
        mnt,
    );
    assert_same_tree(&native, &tree);
    run(
        "diff",
        &["-r", native.to_str().unwrap(), tree.to_str().unwrap()],
        mnt,
    );

    // tar out of the mount and back into it.
    let tarball = scratch.join("tree.tar");
    run(
        "tar",
        &[
            "cf",
            tarball.to_str().unwrap(),
            "-C",
            tree.to_str().unwrap(),
            ".",
        ],
        mnt,
    );
    fs::create_dir(mnt.join("untar")).unwrap();
    run(
        "tar",
        &["xf", tarball.to_str().unwrap(), "-C", "untar"],
        mnt,
    );
    assert_same_tree(&native, &mnt.join("untar"));

    // mv of a directory, chmod, truncate, a large file through 1 MiB payloads both ways.
    run("mv", &["untar", "moved"], mnt);
    assert!(!mnt.join("untar").exists());
    assert_same_tree(&native, &mnt.join("moved"));
    run("chmod", &["600", "moved/f2.bin"], mnt);
    let md = fs::metadata(mnt.join("moved/f2.bin")).unwrap();
    assert_eq!(md.permissions().mode() & 0o777, 0o600);
    run("truncate", &["-s", "100", "moved/f6.bin"], mnt);
    assert_eq!(fs::metadata(mnt.join("moved/f6.bin")).unwrap().size(), 100);
    let big = bytes(7, (24 << 20) + 4097);
    fs::File::create(mnt.join("big"))
        .and_then(|mut f| f.write_all(&big).and_then(|_| f.sync_all()))
        .expect("write and fsync a large file");
    assert!(
        fs::read(mnt.join("big")).unwrap() == big,
        "the large file reads back other bytes"
    );

    // Small files: create, rename, unlink, listed by ls.
    let d = mnt.join("small");
    fs::create_dir(&d).unwrap();
    for n in 0..300 {
        fs::write(d.join(format!("f{n}")), format!("file {n}")).unwrap();
    }
    for n in 0..300 {
        fs::rename(d.join(format!("f{n}")), d.join(format!("g{n}"))).unwrap();
    }
    for n in (0..300).step_by(2) {
        fs::remove_file(d.join(format!("g{n}"))).unwrap();
    }
    assert_eq!(
        run("ls", &[], &d).lines().count(),
        150,
        "ls lists the files left"
    );
    for n in (1..300).step_by(2) {
        assert_eq!(
            fs::read_to_string(d.join(format!("g{n}"))).unwrap(),
            format!("file {n}")
        );
    }
    run("rm", &["-rf", "moved"], mnt);
    assert!(!mnt.join("moved").exists());
}

/// A mount point and a log file for case `name`.
fn daemon(tmp: &Path, name: &str) -> (PathBuf, PathBuf) {
    let mnt = tmp.join(format!("mnt-{name}"));
    fs::create_dir(&mnt).unwrap();
    (mnt, tmp.join(format!("{name}.log")))
}

#[test]
fn io_uring_mounts() {
    let test = "io_uring_mounts";
    if skip_without_fuse(test) {
        return;
    }
    let switch = match UringSwitch::set(true) {
        Ok(s) => s,
        Err(why) => {
            eprintln!("!!! SKIPPING {test}: {why}");
            return;
        }
    };
    let tmp = tempfile::Builder::new()
        .prefix("objfs-uring-")
        .tempdir()
        .expect("temporary directory");
    let store = tmp.path().join("store");

    // 1. Offered, default options: the queues serve the work, their threads go quiet once
    //    the mount is idle, and the mount unmounts cleanly.
    let (mnt, log) = daemon(tmp.path(), "on");
    let mut m = DaemonMount::start(&store, &mnt, &[], &log);
    assert_eq!(
        queues_made(m.pid(), possible_cpus()),
        possible_cpus(),
        "one io_uring queue per possible CPU\n{}",
        m.log_tail()
    );
    let scratch = tmp.path().join("scratch-on");
    fs::create_dir(&scratch).unwrap();
    let (served0, readers0) = (completions(m.pid()), reader_switches(m.pid()));
    shell_work(&mnt, &scratch);
    let served = completions(m.pid()) - served0;
    // The /dev/fuse readers still take FORGET and INTERRUPT (~170 wake-ups here); with
    // io_uring off they take all of the ~5,000 requests (case 3 prints how many).
    let readers = reader_switches(m.pid()) - readers0;
    eprintln!(
        "{test}: the queues served {served} requests; the /dev/fuse readers woke {readers} times"
    );
    assert!(
        served > 2_000,
        "the queues served {served} requests of ~5,000\n{}",
        m.log_tail()
    );
    assert!(
        readers * 4 < served,
        "the /dev/fuse readers woke {readers} times against {served} requests served by the \
         queues"
    );
    // Idle: the queue threads poll for a request only for a moment after each one.
    std::thread::sleep(std::time::Duration::from_millis(100));
    let before = thread_ticks(m.pid(), |n| n.starts_with("fuser-"));
    std::thread::sleep(std::time::Duration::from_secs(1));
    let used = thread_ticks(m.pid(), |n| n.starts_with("fuser-")) - before;
    assert!(
        used < 25,
        "an idle mount's queue and reader threads used {used} ticks in a second"
    );
    m.stop();

    // 2. kill -9 while files are written: every fsynced file is there after a remount (the
    //    kernel tears the queues down with the process), which also uses io_uring.
    let mut m = DaemonMount::start(&store, &mnt, &["-o", "io_uring"], &log);
    let d = mnt.join("crash");
    fs::create_dir(&d).unwrap();
    for n in 0..100 {
        let mut f = fs::File::create(d.join(format!("c{n}"))).unwrap();
        f.write_all(&bytes(1000 + n, 5000 + n as usize)).unwrap();
        f.sync_all().unwrap();
    }
    // Unsynced writes in flight when the daemon dies.
    let writer = {
        let d = d.clone();
        std::thread::spawn(move || {
            for n in 0..10_000 {
                if fs::write(d.join(format!("u{n}")), b"unsynced").is_err() {
                    break;
                }
            }
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(50));
    m.kill9();
    writer
        .join()
        .expect("the writer ends once the mount is gone");
    let mut m = DaemonMount::start(&store, &mnt, &["-o", "io_uring"], &log);
    assert_eq!(
        queues_made(m.pid(), possible_cpus()),
        possible_cpus(),
        "{}",
        m.log_tail()
    );
    for n in 0..100 {
        assert!(
            fs::read(d.join(format!("c{n}"))).unwrap() == bytes(1000 + n, 5000 + n as usize),
            "fsynced file c{n} after kill -9"
        );
    }
    m.stop();

    // `-o io_uring=off`: /dev/fuse even when io_uring is offered.
    let mut m = DaemonMount::start(&store, &mnt, &["-o", "io_uring=off"], &log);
    assert!(fs::read(d.join("c7")).is_ok());
    assert_eq!(io_uring_fds(m.pid()), 0, "io_uring=off made queues");
    m.stop();

    // `auto_unmount`: /dev/fuse (fusermount3 must see the connection gone as soon as the
    // process dies, which a dead process's io_uring queues delay), and the dead mount is
    // unmounted by fusermount3.
    let au_log = tmp.path().join("auto-unmount.log");
    let mut m = DaemonMount::start(&store, &mnt, &["-o", "auto_unmount,io_uring"], &au_log);
    assert!(fs::read(d.join("c7")).is_ok());
    assert_eq!(io_uring_fds(m.pid()), 0, "queues with auto_unmount");
    assert_logged(&au_log, "not used with auto_unmount", &m);
    m.sigkill();
    // Not a timed assertion: a generous bound on an unmount that never comes.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while is_mounted(&mnt) {
        assert!(
            std::time::Instant::now() < deadline,
            "fusermount3 left the dead auto_unmount mount behind"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    m.detach();

    // 3. Not offered: by default /dev/fuse, silently; `-o io_uring` warns.
    switch.flip(false).expect("switch io_uring off");
    let quiet_log = tmp.path().join("auto-off.log");
    let mut m = DaemonMount::start(&store, &mnt, &[], &quiet_log);
    assert!(fs::read(d.join("c7")).is_ok());
    assert_eq!(io_uring_fds(m.pid()), 0, "queues though not offered");
    m.stop();
    assert!(
        !fs::read_to_string(&quiet_log).unwrap().contains("io_uring"),
        "a default mount warned about io_uring not being offered"
    );
    let mut m = DaemonMount::start(&store, &mnt, &["-o", "io_uring"], &log);
    // A request answered: the session runs, so the mount has logged what it chose.
    assert!(fs::read(d.join("c7")).is_ok());
    assert_eq!(io_uring_fds(m.pid()), 0, "no queues when not offered");
    assert_logged(&log, "the kernel does not offer FUSE over io_uring", &m);
    let scratch = tmp.path().join("scratch-off");
    fs::create_dir(&scratch).unwrap();
    fs::remove_dir_all(mnt.join("tree")).unwrap();
    fs::remove_dir_all(mnt.join("small")).unwrap();
    let readers0 = reader_switches(m.pid());
    shell_work(&mnt, &scratch);
    eprintln!(
        "{test}: without io_uring the /dev/fuse readers woke {} times for the same work",
        reader_switches(m.pid()) - readers0
    );
    m.stop();
    drop(switch);
}
