//! Mount options: human sizes (`8M`, `1G`), durations in seconds, and `-o opt[,opt]` lists.
//!
//! Both `objfs mount` and the `mount.objfs` helper funnel their options through
//! [`MountSettings`], so `-o part_size=16M` and `--part-size 16M` mean the same thing. The
//! FUSE and kernel options we know (helper.rs) are passed through; options that only mean
//! something to mount(8) or fstab (`defaults`, `noauto`, `_netdev`, `x-*`, ...) are dropped;
//! any other option is a usage error that names it (dropped with a warning in sloppy mode).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use objfs_fs::config::IoUring;
use objfs_fs::FsConfig;

/// Parses a size: a number (fractions allowed) with an optional binary unit.
///
/// `4096`, `512K`, `8M`, `1.5G`, `2T`, `8MiB`, `8mb` are all accepted; K, M, G and T are powers
/// of 1024 whatever the spelling.
pub fn parse_size(text: &str) -> Result<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        bail!("invalid size {text:?}: expected a number with an optional unit (K, M, G, T)");
    }
    let unit = unit.trim().to_ascii_lowercase();
    let mult: u64 = match unit.as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => bail!("invalid size {text:?}: unknown unit {unit:?} (use K, M, G or T)"),
    };
    if num.contains('.') {
        let value: f64 = num
            .parse()
            .with_context(|| format!("invalid size {text:?}"))?;
        let bytes = value * mult as f64;
        if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
            bail!("invalid size {text:?}: out of range");
        }
        Ok(bytes.round() as u64)
    } else {
        let value: u64 = num
            .parse()
            .with_context(|| format!("invalid size {text:?}"))?;
        value
            .checked_mul(mult)
            .with_context(|| format!("invalid size {text:?}: out of range"))
    }
}

/// Parses a size that must fit in memory (`usize`) and be at least `min` bytes.
pub fn parse_mem_size(text: &str, what: &str, min: u64) -> Result<usize> {
    let bytes = parse_size(text).with_context(|| format!("bad {what}"))?;
    if bytes < min {
        bail!("bad {what}: {text} is less than the minimum of {min} bytes");
    }
    usize::try_from(bytes).with_context(|| format!("bad {what}: {text} is too large"))
}

/// Parses a duration in seconds; fractions are allowed (`0.5`), negatives are not.
pub fn parse_seconds(text: &str) -> Result<Duration> {
    let t = text.trim();
    let t = t.strip_suffix('s').unwrap_or(t);
    let secs: f64 = t
        .parse()
        .with_context(|| format!("invalid duration {text:?}: expected seconds, e.g. 1 or 0.5"))?;
    Duration::try_from_secs_f64(secs)
        .with_context(|| format!("invalid duration {text:?}: must be a non-negative number"))
}

/// Parses `busy_poll=`: whole microseconds, at most [`objfs_fs::config::MAX_BUSY_POLL`].
pub fn parse_busy_poll(text: &str) -> Result<Duration> {
    let t = text.trim();
    let t = t.strip_suffix("us").unwrap_or(t);
    let micros: u64 = t.parse().with_context(|| {
        format!("invalid busy_poll {text:?}: expected whole microseconds, e.g. 200 (0: off)")
    })?;
    let d = Duration::from_micros(micros);
    if d > objfs_fs::config::MAX_BUSY_POLL {
        bail!(
            "invalid busy_poll {text:?}: at most {} microseconds",
            objfs_fs::config::MAX_BUSY_POLL.as_micros()
        );
    }
    Ok(d)
}

/// Parses `io_uring[=on|auto|off]`: no value is `on`.
pub fn parse_io_uring(value: Option<&str>) -> Result<IoUring> {
    match value.map(str::trim) {
        None | Some("on") => Ok(IoUring::On),
        Some("auto") => Ok(IoUring::Auto),
        Some("off") => Ok(IoUring::Off),
        Some(other) => bail!("invalid io_uring {other:?}: expected on, auto or off"),
    }
}

/// Parses `io_uring_depth=`: entries per queue, 1 to [`objfs_fs::config::MAX_IO_URING_DEPTH`].
pub fn parse_io_uring_depth(text: &str) -> Result<usize> {
    let t = text.trim();
    let depth: usize = t
        .parse()
        .with_context(|| format!("invalid io_uring_depth {text:?}: expected a number, e.g. 16"))?;
    if !(1..=objfs_fs::config::MAX_IO_URING_DEPTH).contains(&depth) {
        bail!(
            "invalid io_uring_depth {text:?}: from 1 to {} entries per queue",
            objfs_fs::config::MAX_IO_URING_DEPTH
        );
    }
    Ok(depth)
}

/// Parses a permission mode in octal (`0644`, `755`).
pub fn parse_mode(text: &str) -> Result<u32> {
    let t = text.trim();
    let t = t.strip_prefix("0o").unwrap_or(t);
    let mode = u32::from_str_radix(t, 8)
        .with_context(|| format!("invalid mode {text:?}: expected octal, e.g. 0644"))?;
    if mode > 0o7777 {
        bail!("invalid mode {text:?}: more than 0o7777");
    }
    Ok(mode)
}

/// Smallest part size we accept (S3's own minimum for non-final parts is 5 MiB, but the local
/// store takes smaller ones; 64 KiB keeps the part count of a 10,000-part upload sensible).
pub const MIN_PART_SIZE: u64 = 64 * 1024;

/// Everything a mount needs besides the two paths, gathered from flags and `-o` options.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MountSettings {
    /// The filesystem configuration handed to `objfs_fs::mount`.
    pub fs: FsConfigOverrides,
    /// Stay attached to the terminal.
    pub foreground: bool,
    /// Where the daemon writes its log.
    pub log_file: Option<PathBuf>,
    /// Accept unknown options silently (mount(8)'s `-s`).
    pub sloppy: bool,
    /// Mount over a mount point that is not empty.
    pub allow_non_empty: bool,
    /// How to reach an `s3://` store (ignored for a local one).
    pub s3: S3Settings,
    /// A disk cache of object data (`--cache-dir`, `-o cache_dir=`; s3 stores only).
    pub cache_dir: Option<PathBuf>,
    /// `-o at=TIME` (fstab's `--at`): mount the store as of this moment, read-only. A
    /// relative time is resolved when the option is read (when the mount starts).
    pub at: Option<std::time::SystemTime>,
}

/// How long a mount of a bucket reuses the bucket's answers for names and attributes (a
/// change another machine makes is seen within it; opens ask again after `--attr-ttl`).
pub const DEFAULT_METADATA_TTL: Duration = Duration::from_secs(60);

/// How long a write-back mount keeps a change in its journal before uploading it (a file
/// renamed or deleted meanwhile is uploaded in its last form only, or not at all, and a burst
/// of small files is written before its uploads take the cores): 1 s, measured against 0 in
/// docs/BENCHMARKS.md (session 16). Small beside the metadata TTL other machines see
/// changes through.
pub const DEFAULT_UPLOAD_DELAY: Duration = Duration::from_secs(1);

/// How to reach an `s3://` store: `--endpoint/--region/--profile` or `-o endpoint=,region=,
/// profile=`. Credentials are never here: they come the standard AWS way.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct S3Settings {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub profile: Option<String>,
    /// Turn the bucket's versioning on before mounting (`--enable-versioning`).
    pub enable_versioning: bool,
    /// A close waits for the upload: no write-back journal (`--write-through`, `-o
    /// write_through`).
    pub write_through: bool,
    /// The write-back journal's directory (`--journal-dir`, `-o journal_dir=`).
    pub journal_dir: Option<PathBuf>,
    /// How long the bucket's answers are reused for names and attributes (`--metadata-ttl`,
    /// `-o metadata_ttl=`; default [`DEFAULT_METADATA_TTL`]).
    pub metadata_ttl: Option<Duration>,
    /// How long a change waits in the write-back journal before it is uploaded
    /// (`--upload-delay`, `-o upload_delay=`; default [`DEFAULT_UPLOAD_DELAY`]).
    pub upload_delay: Option<Duration>,
    /// Prefetch of small files (`--no-prefetch`, `--prefetch-*`, `-o prefetch_*=`).
    pub prefetch: crate::prefetch::PrefetchSettings,
}

/// The parts of [`FsConfig`] that options can set; `None` keeps the default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FsConfigOverrides {
    pub part_size: Option<usize>,
    pub max_memory: Option<usize>,
    pub cache_size: Option<usize>,
    pub attr_ttl: Option<Duration>,
    /// `-o busy_poll=MICROSECONDS` (0: off).
    pub busy_poll: Option<Duration>,
    /// `-o io_uring[=on|auto|off]`.
    pub io_uring: Option<IoUring>,
    /// `-o io_uring_depth=N`.
    pub io_uring_depth: Option<usize>,
    pub read_only: bool,
    pub allow_other: bool,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub file_mode: Option<u32>,
    pub dir_mode: Option<u32>,
    pub fs_name: Option<String>,
    pub extra_options: Vec<String>,
    /// `-o noxattr`: no extended attributes at all (EOPNOTSUPP for `user.*` too).
    pub no_xattr: bool,
    /// `-o snapdir=visible`: list `.snapshots` in the root.
    pub snapdir_visible: bool,
}

impl FsConfigOverrides {
    /// Builds the filesystem configuration; `default_fs_name` is used unless `fsname=` was given.
    pub fn to_fs_config(&self, default_fs_name: &str) -> FsConfig {
        let d = FsConfig::default();
        FsConfig {
            part_size: self.part_size.unwrap_or(d.part_size),
            max_memory: self.max_memory.unwrap_or(d.max_memory),
            cache_size: self.cache_size.unwrap_or(d.cache_size),
            attr_ttl: self.attr_ttl.unwrap_or(d.attr_ttl),
            busy_poll: self.busy_poll.unwrap_or(d.busy_poll),
            io_uring: self.io_uring.unwrap_or(d.io_uring),
            io_uring_depth: self.io_uring_depth.unwrap_or(d.io_uring_depth),
            read_only: self.read_only,
            allow_other: self.allow_other,
            uid: self.uid.unwrap_or(d.uid),
            gid: self.gid.unwrap_or(d.gid),
            file_mode: self.file_mode.unwrap_or(d.file_mode),
            dir_mode: self.dir_mode.unwrap_or(d.dir_mode),
            fs_name: self
                .fs_name
                .clone()
                .unwrap_or_else(|| default_fs_name.to_string()),
            extra_options: self.extra_options.clone(),
            xattr: !self.no_xattr,
            snapdir_visible: self.snapdir_visible,
            ..d
        }
    }
}

/// Options that only mount(8) and fstab care about; they never reach the kernel.
fn is_userspace_only(name: &str) -> bool {
    matches!(
        name,
        "defaults"
            | "auto"
            | "noauto"
            | "user"
            | "users"
            | "nouser"
            | "owner"
            | "group"
            | "_netdev"
            | "nofail"
            | "rw"
            | "loop"
            | "comment"
    ) || name.starts_with("x-")
}

impl MountSettings {
    /// Applies one `-o` argument (a comma-separated list).
    pub fn apply_option_list(&mut self, list: &str) -> Result<()> {
        for opt in list.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            self.apply_option(opt)?;
        }
        Ok(())
    }

    /// Applies one option, `name` or `name=value`; every mistake is a usage error.
    pub fn apply_option(&mut self, opt: &str) -> Result<()> {
        self.apply_one(opt).map_err(|e| {
            if e.chain().any(|c| c.is::<crate::UsageError>()) {
                e
            } else {
                crate::usage(format!("-o {opt}: {e:#}"))
            }
        })
    }

    fn apply_one(&mut self, opt: &str) -> Result<()> {
        let (name, value) = match opt.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (opt, None),
        };
        let need = |v: Option<&str>| -> Result<String> {
            v.map(str::to_string).ok_or_else(|| {
                crate::usage(format!("option {name} needs a value: -o {name}=VALUE"))
            })
        };
        let fs = &mut self.fs;
        match name {
            "endpoint" => self.s3.endpoint = Some(need(value)?),
            "region" => self.s3.region = Some(need(value)?),
            "profile" => self.s3.profile = Some(need(value)?),
            "ro" => fs.read_only = true,
            "allow_other" => fs.allow_other = true,
            "noxattr" => fs.no_xattr = true,
            "snapdir" => {
                fs.snapdir_visible = match need(value)?.as_str() {
                    "visible" => true,
                    "hidden" => false,
                    v => bail!("snapdir={v}: say snapdir=hidden or snapdir=visible"),
                }
            }
            "part_size" => {
                fs.part_size = Some(parse_mem_size(&need(value)?, "part_size", MIN_PART_SIZE)?)
            }
            "max_memory" => fs.max_memory = Some(parse_mem_size(&need(value)?, "max_memory", 1)?),
            "cache_size" => fs.cache_size = Some(parse_mem_size(&need(value)?, "cache_size", 0)?),
            "attr_ttl" => fs.attr_ttl = Some(parse_seconds(&need(value)?)?),
            "busy_poll" => fs.busy_poll = Some(parse_busy_poll(&need(value)?)?),
            "io_uring" => fs.io_uring = Some(parse_io_uring(value)?),
            "io_uring_depth" => fs.io_uring_depth = Some(parse_io_uring_depth(&need(value)?)?),
            "uid" => {
                let v = need(value)?;
                fs.uid = Some(v.parse().with_context(|| format!("bad uid {v:?}"))?)
            }
            "gid" => {
                let v = need(value)?;
                fs.gid = Some(v.parse().with_context(|| format!("bad gid {v:?}"))?)
            }
            "file_mode" => fs.file_mode = Some(parse_mode(&need(value)?)?),
            "dir_mode" => fs.dir_mode = Some(parse_mode(&need(value)?)?),
            "fsname" => fs.fs_name = Some(need(value)?),
            "cache_dir" => self.cache_dir = Some(PathBuf::from(need(value)?)),
            "at" => self.at = Some(crate::history_commands::moment(&need(value)?)?),
            "write_through" => self.s3.write_through = true,
            "journal_dir" => self.s3.journal_dir = Some(PathBuf::from(need(value)?)),
            "metadata_ttl" => self.s3.metadata_ttl = Some(parse_seconds(&need(value)?)?),
            "upload_delay" => self.s3.upload_delay = Some(parse_seconds(&need(value)?)?),
            n if self.s3.prefetch.apply(n, value)? => {}
            "log_file" => self.log_file = Some(PathBuf::from(need(value)?)),
            "foreground" => self.foreground = true,
            "allow_non_empty" | "nonempty" => self.allow_non_empty = true,
            n if is_userspace_only(n) => {}
            _ if crate::helper::is_fuse_option(opt) => fs.extra_options.push(opt.to_string()),
            _ if self.sloppy => {
                tracing::warn!("ignoring unknown option {opt:?} (sloppy mode)");
            }
            _ => {
                return Err(crate::usage(format!(
                    "unknown mount option {name:?} in -o {opt}: see `objfs mount --help` for \
                     the options objfs and FUSE understand"
                )))
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("8M").unwrap(), 8 << 20);
        assert_eq!(parse_size("8MiB").unwrap(), 8 << 20);
        assert_eq!(parse_size("8mb").unwrap(), 8 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("1.5K").unwrap(), 1536);
        assert_eq!(parse_size(" 2T ").unwrap(), 2 << 40);
        assert!(parse_size("").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("8Q").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999T").is_err());
        assert!(parse_size("1.2.3M").is_err());
    }

    #[test]
    fn seconds() {
        assert_eq!(parse_seconds("1").unwrap(), Duration::from_secs(1));
        assert_eq!(parse_seconds("0.25").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_seconds("2s").unwrap(), Duration::from_secs(2));
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("NaN").is_err());
        assert!(parse_seconds("x").is_err());
    }

    #[test]
    fn io_uring_modes_and_depths() {
        assert_eq!(parse_io_uring(None).unwrap(), IoUring::On);
        assert_eq!(parse_io_uring(Some("on")).unwrap(), IoUring::On);
        assert_eq!(parse_io_uring(Some("auto")).unwrap(), IoUring::Auto);
        assert_eq!(parse_io_uring(Some("off")).unwrap(), IoUring::Off);
        for bad in ["", "yes", "0", "16"] {
            assert!(parse_io_uring(Some(bad)).is_err(), "{bad:?} accepted");
        }
        assert_eq!(parse_io_uring_depth("8").unwrap(), 8);
        assert_eq!(parse_io_uring_depth("256").unwrap(), 256);
        for bad in ["", "x", "0", "-1", "257", "1.5"] {
            assert!(parse_io_uring_depth(bad).is_err(), "{bad:?} accepted");
        }
        let mut s = MountSettings::default();
        let c = s.fs.to_fs_config("x");
        assert_eq!(
            (c.io_uring, c.io_uring_depth),
            (IoUring::Auto, 16),
            "the defaults"
        );
        s.apply_option("io_uring").unwrap();
        assert_eq!(s.fs.to_fs_config("x").io_uring, IoUring::On);
        s.apply_option_list("io_uring=off,io_uring_depth=4")
            .unwrap();
        let c = s.fs.to_fs_config("x");
        assert_eq!((c.io_uring, c.io_uring_depth), (IoUring::Off, 4));
        assert!(s.apply_option("io_uring=lots").is_err());
        assert!(s.apply_option("io_uring_depth").is_err());
    }

    #[test]
    fn busy_poll_windows() {
        assert_eq!(parse_busy_poll("200").unwrap(), Duration::from_micros(200));
        assert_eq!(parse_busy_poll("50us").unwrap(), Duration::from_micros(50));
        assert_eq!(parse_busy_poll("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_busy_poll("10000").unwrap(), Duration::from_millis(10));
        for bad in ["10001", "-1", "0.5", "x", ""] {
            assert!(parse_busy_poll(bad).is_err(), "{bad:?} accepted");
        }
        let mut s = MountSettings::default();
        assert_eq!(
            s.fs.to_fs_config("x").busy_poll,
            objfs_fs::config::DEFAULT_BUSY_POLL
        );
        s.apply_option("busy_poll=0").unwrap();
        assert_eq!(s.fs.to_fs_config("x").busy_poll, Duration::ZERO);
        assert!(s.apply_option("busy_poll").is_err());
    }

    #[test]
    fn modes() {
        assert_eq!(parse_mode("0644").unwrap(), 0o644);
        assert_eq!(parse_mode("755").unwrap(), 0o755);
        assert!(parse_mode("0999").is_err());
        assert!(parse_mode("77777").is_err());
    }

    #[test]
    fn option_lists() {
        let mut s = MountSettings::default();
        s.apply_option_list("ro,allow_other,part_size=16M,attr_ttl=0.5,defaults,_netdev,x-systemd.automount,noexec,uid=1000,file_mode=0600")
            .unwrap();
        assert!(s.fs.read_only);
        assert!(s.fs.allow_other);
        assert_eq!(s.fs.part_size, Some(16 << 20));
        assert_eq!(s.fs.attr_ttl, Some(Duration::from_millis(500)));
        assert_eq!(s.fs.uid, Some(1000));
        assert_eq!(s.fs.file_mode, Some(0o600));
        assert_eq!(s.fs.extra_options, vec!["noexec".to_string()]);
        let cfg = s.fs.to_fs_config("objfs:/x");
        assert_eq!(cfg.fs_name, "objfs:/x");
        assert_eq!(cfg.part_size, 16 << 20);
        assert!(s.apply_option("part_size").is_err());
        s.apply_option("noxattr").unwrap();
        assert!(!s.fs.to_fs_config("x").xattr);
        assert!(s.apply_option("part_size=1K").is_err());
    }

    #[test]
    fn at_takes_the_times_mount_at_takes() {
        use std::time::{Duration, SystemTime, UNIX_EPOCH};
        let mut s = MountSettings::default();
        s.apply_option_list("ro,at=2026-11-30T12:00:00Z,noatime")
            .unwrap();
        assert_eq!(s.at, Some(UNIX_EPOCH + Duration::from_secs(1_796_040_000)));
        assert_eq!(
            s.fs.extra_options,
            vec!["noatime".to_string()],
            "at= never reaches the kernel"
        );
        let before = SystemTime::now();
        s.apply_option("at=-2h").unwrap();
        let after = SystemTime::now();
        let at = s.at.unwrap();
        assert!(at >= before - Duration::from_secs(7200));
        assert!(at <= after - Duration::from_secs(7200));
        s.apply_option("at=2026-11-30T13:00:00.5+01:00").unwrap();
        assert_eq!(
            s.at,
            Some(UNIX_EPOCH + Duration::from_millis(1_796_040_000_500))
        );
        for bad in [
            "at",
            "at=",
            "at=yesterday",
            "at=2026-13-01T00:00:00Z",
            "at=-2x",
        ] {
            let e = s.apply_option(bad).unwrap_err();
            assert!(
                e.chain().any(|c| c.is::<crate::UsageError>()),
                "{bad}: {e:#}"
            );
        }
    }
}
