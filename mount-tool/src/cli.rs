//! The command line of `objfs` (clap derive): the subcommands, their flags and their help.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

const MAIN_EXAMPLES: &str = "\
Examples:
  objfs init ~/.objfs/store                   create an empty store
  objfs mount ~/.objfs/store ~/objfs          mount it (creating it if needed)
  objfs status ~/.objfs/store                 objects, versions, space
  objfs umount ~/objfs                        finish uploads and unmount

Logs: set RUST_LOG (e.g. RUST_LOG=objfs=debug); quiet (warnings only) by default.
As a mount(8) helper: ln -s \"$(command -v objfs)\" /sbin/mount.objfs (see docs/OPERATIONS.md).";

const MOUNT_EXAMPLES: &str = "\
Examples:
  objfs mount ~/.objfs/store ~/objfs
  objfs mount --foreground ~/.objfs/store ~/objfs      stay attached; Ctrl-C unmounts
  objfs mount --read-only /srv/objfs/store /mnt/objfs
  objfs mount -o allow_other,part_size=16M,attr_ttl=0.5 /srv/objfs/store /mnt/objfs
  objfs mount --cache-size 1G --max-memory 512M --log-file /var/log/objfs.log STORE MNT

The store is created when STORE does not exist or is an empty directory; a non-empty
directory that is not a store is refused. The mount point is created when missing.
Without --foreground the command returns once the mount is ready (exit 0), or prints why it
failed (exit 1); the daemon keeps running until `objfs umount MOUNTPOINT`. SIGINT and SIGTERM
finish pending uploads, unmount and close the store.

-o options understood by objfs: ro, allow_other, part_size=SIZE, max_memory=SIZE,
cache_size=SIZE, attr_ttl=SECONDS, uid=N, gid=N, file_mode=OCTAL, dir_mode=OCTAL, fsname=NAME,
log_file=PATH, foreground. fstab-only options (defaults, noauto, _netdev, nofail, x-*, ...) are
ignored; any other option is passed through to FUSE (e.g. noexec, nosuid, default_permissions).
Sizes take K, M, G, T suffixes (powers of 1024).";

const UMOUNT_EXAMPLES: &str = "\
Examples:
  objfs umount ~/objfs
  objfs umount --lazy ~/objfs        detach now even if busy (uploads still finish)

Waits until the mount daemon has finished its uploads and closed the store.";

const INIT_EXAMPLES: &str = "\
Examples:
  objfs init ~/.objfs/store
  objfs init --volume-size 256M /srv/objfs/store

STORE must not exist or be an empty directory.";

const STATUS_EXAMPLES: &str = "\
Examples:
  objfs status ~/.objfs/store
  objfs status --json ~/.objfs/store

While the store is mounted its lock is held by the mount daemon: status then says which pid
mounts it and exits 1 (unmount first, or look at `df MOUNTPOINT` for space).";

/// objfs: a versioned object store mounted as a filesystem.
#[derive(Debug, Parser)]
#[command(name = "objfs", version, about, after_help = MAIN_EXAMPLES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Mount a store (created if missing) at a mount point.
    #[command(after_help = MOUNT_EXAMPLES)]
    Mount(MountArgs),
    /// Unmount an objfs mount (finishing its uploads first).
    #[command(visible_alias = "unmount", after_help = UMOUNT_EXAMPLES)]
    Umount(UmountArgs),
    /// Create an empty store.
    #[command(after_help = INIT_EXAMPLES)]
    Init(InitArgs),
    /// Show a store's objects, versions, bytes, volumes and disks.
    #[command(after_help = STATUS_EXAMPLES)]
    Status(StatusArgs),
    /// Erasure-code sealed volumes now, or show what placement has done.
    #[command(after_help = crate::maintenance::PLACE_EXAMPLES)]
    Place(crate::maintenance::PlaceArgs),
    /// Verify every copy and shard and repair them; pause, resume or show the scrub daemon.
    #[command(after_help = crate::maintenance::SCRUB_EXAMPLES)]
    Scrub(crate::maintenance::ScrubArgs),
    /// Reclaim deleted data, compact volumes, abort stale uploads, remove orphaned files.
    #[command(after_help = crate::maintenance::GC_EXAMPLES)]
    Gc(crate::maintenance::GcArgs),
    /// Manage the store's disks: add, remove (moving data off first), replace a failed one.
    #[command(after_help = crate::maintenance::DISK_EXAMPLES)]
    Disk(crate::maintenance::DiskArgs),
}

/// `objfs mount`.
#[derive(Debug, Args, Clone, Default)]
pub struct MountArgs {
    /// The store directory (created if it does not exist or is empty).
    pub store: PathBuf,
    /// Where to mount it (created if it does not exist).
    pub mountpoint: PathBuf,
    /// Stay in the foreground instead of returning once mounted.
    #[arg(short, long)]
    pub foreground: bool,
    /// Mount read-only (every change fails with EROFS).
    #[arg(long)]
    pub read_only: bool,
    /// Let other users see the mount (needs user_allow_other in /etc/fuse.conf unless root).
    #[arg(long)]
    pub allow_other: bool,
    /// Mount options, comma-separated; may be repeated (see below).
    #[arg(short = 'o', value_name = "OPT[,OPT...]")]
    pub options: Vec<String>,
    /// Size of a multipart part, e.g. 8M (default 8M).
    #[arg(long, value_name = "SIZE")]
    pub part_size: Option<String>,
    /// Memory for write buffers not yet uploaded, e.g. 256M (default 256M).
    #[arg(long, value_name = "SIZE")]
    pub max_memory: Option<String>,
    /// Size of the read cache, e.g. 1G (default 256M).
    #[arg(long, value_name = "SIZE")]
    pub cache_size: Option<String>,
    /// How long the kernel caches attributes and names, in seconds (fractions allowed;
    /// default 1).
    #[arg(long, value_name = "SECONDS")]
    pub attr_ttl: Option<String>,
    /// Where the daemon writes its log (appended; default: nowhere).
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
}

/// `objfs umount`.
#[derive(Debug, Args)]
pub struct UmountArgs {
    /// The mount point.
    pub mountpoint: PathBuf,
    /// Detach even if the mount is busy (fusermount3 -u -z).
    #[arg(short = 'z', long)]
    pub lazy: bool,
    /// Return once unmounted, without waiting for the daemon to close the store.
    #[arg(long)]
    pub no_wait: bool,
}

/// `objfs init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The store directory to create (must not exist, or be empty).
    pub store: PathBuf,
    /// Size at which a volume file is sealed, e.g. 1G (default 256M).
    #[arg(long, value_name = "SIZE")]
    pub volume_size: Option<String>,
    /// A data directory (a failure domain: one per device); repeat for several. Default: one,
    /// STORE/data.
    #[arg(long = "disk", value_name = "DIR")]
    pub disks: Vec<PathBuf>,
    /// Erasure coding of sealed volumes, K+M (e.g. 4+2) or "none". Default: by disk count
    /// (see `objfs status` and docs/DURABILITY.md).
    #[arg(long, value_name = "K+M")]
    pub ec: Option<String>,
    /// Copies of new data on distinct disks before it is acknowledged. Default: by disk count.
    #[arg(long, value_name = "R")]
    pub replicas: Option<u8>,
}

/// `objfs status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The store directory.
    pub store: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}
