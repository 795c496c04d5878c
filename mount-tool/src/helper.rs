//! `mount.objfs`: the mount(8) helper syntax.
//!
//! mount(8) runs `/sbin/mount.objfs SPEC DIR [-sfnv] [-N NS] [-o OPTIONS] [-t TYPE]` for an
//! fstab line or `mount -t objfs`. We translate that into the same settings as `objfs mount`:
//! `-o` goes through the shared option parser, `-f` (fake) exits without mounting, `-s`
//! (sloppy) drops options FUSE would not understand instead of failing, `-n` (no mtab) is
//! accepted and ignored (the kernel keeps the table), `-v` prints what is done.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

/// The parsed helper command line.
#[derive(Debug, Default, PartialEq)]
pub struct HelperArgs {
    pub store: PathBuf,
    pub mountpoint: PathBuf,
    pub options: Vec<String>,
    pub fake: bool,
    pub sloppy: bool,
    pub verbose: bool,
}

/// The usage line shown on errors.
pub const USAGE: &str =
    "usage: mount.objfs STORE MOUNTPOINT [-sfnv] [-o OPTION[,OPTION...]]  (see `objfs mount --help` for the options)";

/// Parses the arguments after argv[0].
pub fn parse(args: &[OsString]) -> Result<HelperArgs> {
    let mut out = HelperArgs::default();
    let mut positional: Vec<PathBuf> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        let text = arg.to_string_lossy();
        if text == "-o" || text == "-N" || text == "-t" {
            let value = args
                .get(i + 1)
                .with_context(|| format!("{text} needs a value\n{USAGE}"))?
                .to_string_lossy()
                .into_owned();
            match text.as_ref() {
                "-o" => out.options.push(value),
                "-N" => bail!("mount namespaces (-N) are not supported by mount.objfs"),
                _ => {} // -t objfs: we know what we are.
            }
            i += 2;
            continue;
        }
        if let Some(value) = text.strip_prefix("-o").filter(|v| !v.is_empty()) {
            out.options.push(value.to_string());
        } else if text == "-h" || text == "--help" {
            bail!("{USAGE}");
        } else if text.starts_with('-') && text.len() > 1 {
            for flag in text[1..].chars() {
                match flag {
                    's' => out.sloppy = true,
                    'f' => out.fake = true,
                    'n' => {}
                    'v' => out.verbose = true,
                    other => bail!("unknown flag -{other}\n{USAGE}"),
                }
            }
        } else {
            positional.push(PathBuf::from(arg));
        }
        i += 1;
    }
    let mut positional = positional.into_iter();
    match (positional.next(), positional.next(), positional.next()) {
        (Some(store), Some(mountpoint), None) => {
            out.store = store;
            out.mountpoint = mountpoint;
            Ok(out)
        }
        _ => bail!("expected exactly a store and a mount point\n{USAGE}"),
    }
}

/// Options the kernel or fusermount3 understand, kept even in sloppy mode.
pub fn is_fuse_option(opt: &str) -> bool {
    let name = opt.split_once('=').map_or(opt, |(n, _)| n);
    matches!(
        name,
        "rw" | "dev"
            | "nodev"
            | "suid"
            | "nosuid"
            | "exec"
            | "noexec"
            | "atime"
            | "noatime"
            | "nodiratime"
            | "relatime"
            | "strictatime"
            | "sync"
            | "async"
            | "dirsync"
            | "auto_unmount"
            | "default_permissions"
            | "allow_root"
            | "max_read"
            | "blksize"
            | "subtype"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn fstab_style() {
        let a = parse(&os(&[
            "/srv/store",
            "/mnt/x",
            "-n",
            "-o",
            "rw,allow_other,_netdev",
            "-sv",
        ]))
        .unwrap();
        assert_eq!(a.store, PathBuf::from("/srv/store"));
        assert_eq!(a.mountpoint, PathBuf::from("/mnt/x"));
        assert_eq!(a.options, vec!["rw,allow_other,_netdev".to_string()]);
        assert!(a.sloppy && a.verbose && !a.fake);
    }

    #[test]
    fn joined_o_and_type() {
        let a = parse(&os(&["s", "m", "-oro", "-t", "objfs", "-f"])).unwrap();
        assert_eq!(a.options, vec!["ro".to_string()]);
        assert!(a.fake);
    }

    #[test]
    fn errors() {
        assert!(parse(&os(&["only-one"])).is_err());
        assert!(parse(&os(&["a", "b", "c"])).is_err());
        assert!(parse(&os(&["a", "b", "-o"])).is_err());
        assert!(parse(&os(&["a", "b", "-x"])).is_err());
        assert!(parse(&os(&["a", "b", "-N", "/proc/1/ns/mnt"])).is_err());
    }

    #[test]
    fn fuse_options() {
        assert!(is_fuse_option("noexec"));
        assert!(is_fuse_option("max_read=4096"));
        assert!(!is_fuse_option("bogus"));
    }
}
