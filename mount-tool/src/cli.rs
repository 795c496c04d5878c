//! The command line of `objfs` (clap derive): the subcommands, their flags and their help.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

const MAIN_EXAMPLES: &str = "\
Examples:
  objfs init ~/.objfs/store                   create an empty store
  objfs mount ~/.objfs/store ~/objfs          mount it (the default location is created if needed)
  objfs status ~/objfs                        objects, versions, space, daemons (also while mounted)
  objfs umount ~/objfs                        finish uploads and unmount
  objfs completions bash > /etc/bash_completion.d/objfs
  objfs man > /usr/local/share/man/man1/objfs.1

Commands that take STORE also take the mount point of a mounted store; while it is mounted
they talk to the mount process over its control socket.
Exit codes: 0 success, 1 failure, 2 usage error (restore: 3 conflicts, 4 failed steps).
Logs: set RUST_LOG (e.g. RUST_LOG=objfs=debug); a mount daemon logs to STORE/objfs.log.
As a mount(8) helper: ln -s \"$(command -v objfs)\" /sbin/mount.objfs (see docs/OPERATIONS.md).";

const MOUNT_EXAMPLES: &str = "\
Examples:
  objfs mount ~/.objfs/store ~/objfs                   the default store is created if missing
  objfs mount --init /srv/objfs/store /mnt/objfs       create a new store there and mount it
  objfs mount --foreground ~/.objfs/store ~/objfs      stay attached; Ctrl-C unmounts
  objfs mount --read-only /srv/objfs/store /mnt/objfs
  objfs mount -o allow_other,part_size=16M,attr_ttl=0.5 /srv/objfs/store /mnt/objfs
  objfs mount --cache-size 1G --max-memory 512M --log-file /var/log/objfs.log STORE MNT
  objfs mount --at -1h ~/.objfs/store /tmp/an-hour-ago  read-only, as the store was an hour ago

STORE must be an existing store, except with --init or at the default location
~/.objfs/store, where a missing or empty directory becomes a new store. The mount point is
created when missing; a non-empty one is refused unless --allow-non-empty; a dead mount left
there by a killed daemon is cleared (fusermount3 -u -z).
Without --foreground the command returns once the mount is ready (exit 0), or prints why it
failed (exit 1); the daemon keeps running until `objfs umount MOUNTPOINT` and logs to
STORE/objfs.log unless --log-file says otherwise. SIGINT and SIGTERM finish pending uploads,
unmount and close the store.

Every mount has a hidden, read-only .snapshots/ in its root: .snapshots/@RFC3339-TIME/ and
.snapshots/NAME/ are the tree as it was then (-o snapdir=visible lists it in the root).
With --at, while the store is mounted, its mount process serves the second mount point; it
ends with `objfs umount` of either (unmounting the live mount ends it too).

-o options understood by objfs: ro, allow_other, noxattr, snapdir=hidden|visible, part_size=SIZE, max_memory=SIZE,
cache_size=SIZE, attr_ttl=SECONDS, busy_poll=MICROSECONDS, io_uring[=on|auto|off], io_uring_depth=N, uid=N, gid=N, file_mode=OCTAL, dir_mode=OCTAL, fsname=NAME,
log_file=PATH, foreground, allow_non_empty. Passed to FUSE: rw, allow_root, auto_unmount,
default_permissions, noatime, atime, relatime, nodiratime, strictatime, exec, noexec, suid,
nosuid, dev, nodev, sync, async, dirsync, max_read=N, blksize=N, subtype=NAME. fstab-only
options (defaults, auto, noauto, user, users, nouser, owner, group, _netdev, nofail, loop,
comment=..., x-*) are ignored. Any other option is an error naming it (exit 2).
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
  objfs status ~/objfs                        the mount point works too
  objfs status --json ~/.objfs/store          the schema is in docs/OPERATIONS.md

While the store is mounted the mount process answers (over its control socket), with the
same figures plus the mount point, its pid and its log file.";

const COMPLETIONS_EXAMPLES: &str = "\
Examples:
  objfs completions bash > /etc/bash_completion.d/objfs
  objfs completions zsh > \"${fpath[1]}/_objfs\"
  objfs completions fish > ~/.config/fish/completions/objfs.fish";

const MAN_EXAMPLES: &str = "\
Examples:
  objfs man > /usr/local/share/man/man1/objfs.1 && man objfs
  objfs man --dir /usr/local/share/man/man1     objfs.1 and one page per subcommand";

/// objfs: a versioned object store mounted as a filesystem.
#[derive(Debug, Parser)]
#[command(name = "objfs", version, about, after_help = MAIN_EXAMPLES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands. Parsed once per process: the size of `mount`'s options does not matter.
#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)]
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
    /// List every version and delete marker of a file, newest first.
    #[command(after_help = crate::history_commands::VERSIONS_EXAMPLES)]
    Versions(crate::history_commands::VersionsArgs),
    /// Write an old version of a file to stdout (by id, or as of a moment).
    #[command(after_help = crate::history_commands::CAT_EXAMPLES)]
    Cat(crate::history_commands::CatArgs),
    /// Named snapshots: create, list, delete.
    #[command(after_help = crate::history_commands::SNAPSHOT_EXAMPLES)]
    Snapshot(crate::history_commands::SnapshotArgs),
    /// Show or change how long history is kept.
    #[command(after_help = crate::history_commands::RETENTION_EXAMPLES)]
    Retention(crate::history_commands::RetentionArgs),
    /// Bring a directory (or key prefix) back to what it was at a moment; resumable.
    #[command(after_help = crate::restore::RESTORE_EXAMPLES)]
    Restore(crate::restore::RestoreArgs),
    /// Turn a bucket's versioning on (history, snapshots, restore) or suspend it.
    #[command(after_help = crate::bucket::VERSIONING_EXAMPLES)]
    Versioning(crate::bucket::VersioningArgs),
    /// A local store's remote tier: add, list, recall, remove.
    #[command(after_help = crate::tiering::TIER_EXAMPLES)]
    Tier(crate::tiering::TierArgs),
    /// Lifecycle rules: what moves to the remote tier, and when.
    #[command(after_help = crate::tiering::LIFECYCLE_EXAMPLES)]
    Lifecycle(crate::tiering::LifecycleArgs),
    /// Print a shell completion script.
    #[command(after_help = COMPLETIONS_EXAMPLES)]
    Completions(CompletionsArgs),
    /// Print the manual page (roff), or write one page per command into a directory.
    #[command(after_help = MAN_EXAMPLES)]
    Man(ManArgs),
    /// Where the bytes are, per prefix, and how old they are (from rollups, not a scan).
    Du(crate::insights::DuArgs),
    /// A mounted bucket's write-back journal: try the uploads the bucket refused again.
    #[command(after_help = crate::writeback::WRITEBACK_EXAMPLES)]
    Writeback(crate::writeback::WritebackArgs),
}

/// `objfs completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `objfs man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write objfs.1 and objfs-SUBCOMMAND.1 into this directory instead of printing objfs.1.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// `objfs mount`.
#[derive(Debug, Args, Clone, Default)]
pub struct MountArgs {
    /// The store: a directory holding a store (or, with --init, where to create one), or
    /// s3://BUCKET[/PREFIX] (with --endpoint, --region, --profile as needed).
    pub store: PathBuf,
    /// Where to mount it (created if it does not exist).
    pub mountpoint: PathBuf,
    /// Create a new store at STORE when it is missing or an empty directory.
    #[arg(long)]
    pub init: bool,
    /// Mount over a mount point that is not empty (its files are hidden while mounted).
    #[arg(long)]
    pub allow_non_empty: bool,
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
    /// Size of the read cache, e.g. 1G: in memory (default 256M), or with --cache-dir the
    /// disk cache's bound (default 10G).
    #[arg(long, value_name = "SIZE")]
    pub cache_size: Option<String>,
    /// A local disk cache of object data for an s3:// store (LRU, bounded by --cache-size,
    /// checksummed, kept across remounts); one mount per directory.
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// How long the kernel caches attributes and names, in seconds (fractions allowed;
    /// default 1).
    #[arg(long, value_name = "SECONDS")]
    pub attr_ttl: Option<String>,
    /// Where the mount writes its log, also with --foreground (appended, rotated at 10 MiB;
    /// default: STORE/objfs.log for a daemon, stderr in the foreground).
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
    /// Mount the store as it was at TIME, read-only: RFC 3339, or -15m, -2h, -3d before now.
    /// While the store is mounted, its mount process serves this mount too.
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub at: Option<String>,
    /// Turn the bucket's versioning on before mounting it (an s3:// store; an error where the
    /// server refuses, e.g. Garage, which has no versioning).
    #[arg(long)]
    pub enable_versioning: bool,
    /// For an s3:// store: a close waits until the bucket has the file, instead of returning
    /// once the file is in the local write-back journal (uploaded in the background).
    #[arg(long)]
    pub write_through: bool,
    /// For an s3:// store: the write-back journal's directory (default CACHE_DIR/writeback
    /// with --cache-dir, else ~/.cache/objfs/writeback/KEY); one mount per directory.
    #[arg(long, value_name = "DIR")]
    pub journal_dir: Option<PathBuf>,
    /// For an s3:// store: how long the bucket's answers (a file's attributes, that a name
    /// does not exist, a directory's listing) are reused, in seconds (default 60): a change
    /// another machine makes is seen within it. An open asks again after --attr-ttl.
    #[arg(long, value_name = "SECONDS")]
    pub metadata_ttl: Option<String>,
    /// For an s3:// store with write-back: how long a closed file waits in the journal before
    /// it is uploaded, in seconds (default 1; 0: at once). A file renamed, rewritten or
    /// deleted meanwhile is uploaded in its last form only; other machines see a change this
    /// much later. Unmount uploads everything without waiting.
    #[arg(long, value_name = "SECONDS")]
    pub upload_delay: Option<String>,
    #[command(flatten)]
    pub prefetch: crate::prefetch::PrefetchArgs,
    #[command(flatten)]
    pub s3: S3Args,
}

/// How to reach an `s3://BUCKET[/PREFIX]` store, the same for every command that takes a
/// store (flattened into each; global, so a subcommand's own options may come after it).
/// Credentials come the standard AWS way (environment, ~/.aws/credentials and config,
/// instance roles), never from the command line.
#[derive(Debug, Args, Clone, Default)]
pub struct S3Args {
    /// The S3-compatible endpoint of an s3:// store, e.g. http://127.0.0.1:3900 (default: AWS).
    #[arg(long, value_name = "URL", global = true)]
    pub endpoint: Option<String>,
    /// The region of an s3:// store (default: AWS's chain, then us-east-1).
    #[arg(long, value_name = "REGION", global = true)]
    pub region: Option<String>,
    /// The AWS profile (shared config files) whose credentials reach an s3:// store.
    #[arg(long, value_name = "NAME", global = true)]
    pub profile: Option<String>,
}

impl S3Args {
    /// The settings these options give.
    pub fn settings(&self) -> crate::options::S3Settings {
        crate::options::S3Settings {
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            profile: self.profile.clone(),
            enable_versioning: false,
            ..Default::default()
        }
    }
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
    /// How long history is kept (default: every version 24h, hourly 7d, daily 90d, deleted
    /// keys 90d; see `objfs retention --help`).
    #[command(flatten)]
    pub retention: crate::history_commands::RetentionOptions,
}

/// `objfs status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The store directory, s3://BUCKET[/PREFIX], or the mount point of a mounted store.
    pub store: PathBuf,
    #[command(flatten)]
    pub s3: S3Args,
    /// Print JSON instead of text (schema in docs/OPERATIONS.md).
    #[arg(long)]
    pub json: bool,
}
