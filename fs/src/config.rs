//! Mount configuration: every knob the command line can turn, with the defaults the issue
//! asks for, in one plain struct shared by the core, the adapter and the mount entry point.

use std::time::{Duration, SystemTime};

/// Default size of a multipart part (8 MiB).
pub const DEFAULT_PART_SIZE: usize = 8 * 1024 * 1024;
/// Default budget for write buffers (256 MiB).
pub const DEFAULT_MAX_MEMORY: usize = 256 * 1024 * 1024;
/// Default budget for the read block cache (256 MiB).
pub const DEFAULT_CACHE_SIZE: usize = 256 * 1024 * 1024;
/// Default busy-poll window of the first reader thread (Linux): 200 µs, the window of
/// Linux's own `haltpoll` idle driver (`guest_halt_poll_ns` defaults to 200,000).
pub const DEFAULT_BUSY_POLL: Duration = Duration::from_micros(200);
/// The longest busy-poll window a mount accepts (`-o busy_poll=`): 10 ms.
pub const MAX_BUSY_POLL: Duration = Duration::from_millis(10);

/// Entries per io_uring queue unless `-o io_uring_depth=` says otherwise.
pub const DEFAULT_IO_URING_DEPTH: usize = 16;
/// The most entries per io_uring queue a mount accepts (each holds a 1 MiB payload).
pub const MAX_IO_URING_DEPTH: usize = 256;

/// Whether a mount serves the kernel's requests over FUSE over io_uring (Linux 6.14+; the
/// kernel offers it only while `/sys/module/fuse/parameters/enable_uring` is set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IoUring {
    /// Read `/dev/fuse` only (`-o io_uring=off`).
    Off,
    /// io_uring when the kernel offers it, else `/dev/fuse` (the default).
    #[default]
    Auto,
    /// io_uring; a warning when the kernel does not offer it (`-o io_uring`).
    On,
}

/// How a mount behaves. Build it with `FsConfig { part_size: .., ..Default::default() }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsConfig {
    /// Size of a multipart part (the last part of an object may be smaller). Default 8 MiB.
    pub part_size: usize,
    /// Budget for the buffered, not yet uploaded bytes of all open write handles together;
    /// writers wait for uploads to finish when it is used up. Default 256 MiB.
    pub max_memory: usize,
    /// Budget of the shared read block cache. Default 256 MiB.
    pub cache_size: usize,
    /// A disk cache under the memory one (`--cache-dir`, remote mounts). Default none.
    pub disk_cache: Option<crate::diskcache::DiskCacheHandle>,
    /// How long the kernel may cache attributes and directory entries. Default 1 s.
    pub attr_ttl: Duration,
    /// Linux: after each request, the first reader thread keeps polling `/dev/fuse` this long
    /// before it sleeps, so that a caller's next request finds it awake (`-o busy_poll=`,
    /// microseconds; zero: every reader sleeps in `read(2)`). Default [`DEFAULT_BUSY_POLL`].
    pub busy_poll: Duration,
    /// Linux: serve requests over FUSE over io_uring, one queue per CPU, when the kernel
    /// offers it (`-o io_uring=auto|on|off`). Default [`IoUring::Auto`].
    pub io_uring: IoUring,
    /// Entries per io_uring queue (`-o io_uring_depth=`). Default [`DEFAULT_IO_URING_DEPTH`].
    pub io_uring_depth: usize,
    /// Refuse every change with EROFS.
    pub read_only: bool,
    /// Let other users than the mounting one see the mount (`allow_other`).
    pub allow_other: bool,
    /// Owner of entries whose metadata names none. Default: the current process's uid.
    pub uid: u32,
    /// Group of entries whose metadata names none. Default: the current process's gid.
    pub gid: u32,
    /// Permission bits of files whose metadata names none. Default 0o644.
    pub file_mode: u32,
    /// Permission bits of directories whose metadata names none. Default 0o755.
    pub dir_mode: u32,
    /// The source shown in /proc/mounts, e.g. `objfs:/path/to/store`.
    pub fs_name: String,
    /// Raw `-o` options passed through to the kernel / fusermount3.
    pub extra_options: Vec<String>,
    /// Serve user extended attributes (other namespaces answer ENOTSUP either way, which
    /// makes GNU `ls -l` stop asking after the first file). Off (`-o noxattr`), every xattr
    /// request fails with ENOSYS once and the kernel stops asking.
    pub xattr: bool,
    /// List `.snapshots` in the root directory (`-o snapdir=visible`). Hidden by default; it
    /// can be looked up either way.
    pub snapdir_visible: bool,
    /// Show the store as it was at this moment, read-only (`objfs mount --at`).
    pub at: Option<SystemTime>,
    /// When the store was created, if known: `.snapshots` lists no kept moment before it.
    pub store_created: Option<SystemTime>,
}

impl FsConfig {
    /// Reads never update access times (`-o noatime`); the default is relatime.
    pub fn noatime(&self) -> bool {
        self.extra_options.iter().any(|o| o == "noatime")
    }
}

impl Default for FsConfig {
    fn default() -> Self {
        let (uid, gid) = (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        );
        FsConfig {
            part_size: DEFAULT_PART_SIZE,
            max_memory: DEFAULT_MAX_MEMORY,
            cache_size: DEFAULT_CACHE_SIZE,
            disk_cache: None,
            attr_ttl: Duration::from_secs(1),
            busy_poll: DEFAULT_BUSY_POLL,
            io_uring: IoUring::Auto,
            io_uring_depth: DEFAULT_IO_URING_DEPTH,
            read_only: false,
            allow_other: false,
            uid,
            gid,
            file_mode: 0o644,
            dir_mode: 0o755,
            fs_name: "objfs".to_string(),
            extra_options: Vec::new(),
            xattr: true,
            snapdir_visible: false,
            at: None,
            store_created: None,
        }
    }
}
