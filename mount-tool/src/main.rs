//! `objfs`: create, mount, inspect, maintain and unmount objfs stores.
//!
//! One binary, two faces: `objfs SUBCOMMAND ...` (clap), and, when invoked as `mount.objfs`
//! (a symlink in /sbin), the mount(8) helper syntax. Errors print as `objfs: <message>`;
//! failures exit 1, usage errors exit 2 (clap's own and [`UsageError`]s: a bad option value,
//! an unknown `-o` option). The mount(8) helper exits 1 for both, as mount(8) expects.

mod bucket;
mod cli;
mod client;
mod commands;
mod daemon;
mod disk_cache;
mod helper;
mod history;
mod history_commands;
mod insights;
mod location;
mod logging;
mod maintenance;
mod manual;
mod mount;
mod ops;
mod options;
mod platform;
mod prefetch;
mod progress;
mod render;
mod restore;
mod restore_jobs;
mod runtime;
mod s3mount;
mod server;
mod target;
mod tiering;
mod writeback;

use std::ffi::OsString;
use std::fmt;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

use crate::cli::{Cli, Command};
use crate::mount::MountRequest;

/// A mistake in how the command was called (exit 2), as opposed to a failure (exit 1).
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// A failure with its own exit code (restore's conflicts and failed steps).
#[derive(Debug)]
pub struct ExitWith(pub u8, pub String);

impl fmt::Display for ExitWith {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.1)
    }
}

impl std::error::Error for ExitWith {}

/// A failure `msg` that exits with `code`.
pub fn exit_with(code: u8, msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(ExitWith(code, msg.into()))
}

/// A usage error with `msg`.
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.into()))
}

fn run(cli: Cli) -> Result<()> {
    if let Command::Mount(a) = &cli.command {
        // The mount sets up its own logging (a daemon logs to a file).
        return mount::run(MountRequest::from_args(a)?);
    }
    logging::init_stderr();
    match cli.command {
        Command::Mount(_) => Ok(()),
        Command::Umount(a) => commands::umount(&a),
        Command::Init(a) => commands::init(&a),
        Command::Status(a) => commands::status(&a),
        Command::Place(a) => maintenance::place(&a),
        Command::Scrub(a) => maintenance::scrub(&a),
        Command::Gc(a) => maintenance::gc(&a),
        Command::Disk(a) => maintenance::disk(&a),
        Command::Versions(a) => history_commands::versions(&a),
        Command::Cat(a) => history_commands::cat(&a),
        Command::Snapshot(a) => history_commands::snapshot(&a),
        Command::Retention(a) => history_commands::retention(&a),
        Command::Restore(a) => restore::command(&a),
        Command::Versioning(a) => bucket::versioning(&a),
        Command::Tier(a) => tiering::tier(&a),
        Command::Lifecycle(a) => tiering::lifecycle(&a),
        Command::Completions(a) => manual::completions(&a),
        Command::Man(a) => manual::man(&a),
        Command::Du(a) => insights::du(&a),
        Command::Writeback(a) => writeback::command(&a),
    }
}

/// `mount.objfs STORE DIR [-sfnv] [-o OPTS]`.
fn run_helper(args: &[OsString]) -> Result<()> {
    let h = helper::parse(args)?;
    let req = MountRequest::from_helper(&h)?;
    if h.fake {
        if h.verbose {
            eprintln!(
                "mount.objfs: would mount {} at {} (fake)",
                h.store.display(),
                h.mountpoint.display()
            );
        }
        return Ok(());
    }
    mount::run(req)
}

/// jemalloc, not the C library's malloc: in a daemon that has taken a million small puts,
/// glibc's free lists make every allocation slow (a listing of 1,000 keys went from 0.7 ms to
/// 77 ms; docs/BENCHMARKS.md, "The allocator"). jemalloc also spends less CPU per put.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read at its start (`malloc_conf`). `oversize_threshold:0`: an
/// allocation of 8 MiB or more (a part's buffer) otherwise comes from an arena that returns
/// its pages to the kernel at every free, so each part's buffer was faulted in afresh and the
/// mount spent about 1.5x the CPU on a sequential write.
#[cfg(not(target_env = "msvc"))]
#[export_name = "_rjem_malloc_conf"]
pub static MALLOC_CONF: &u8 = &b"oversize_threshold:0\0"[0];

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let invoked_as = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let helper = invoked_as == "mount.objfs";
    let result = if helper {
        run_helper(args.get(1..).unwrap_or(&[]))
    } else {
        run(Cli::parse())
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("objfs: {e:#}");
            let usage_error = e.chain().any(|c| c.is::<UsageError>());
            let own_code = e
                .chain()
                .find_map(|c| c.downcast_ref::<ExitWith>().map(|x| x.0));
            if let Some(code) = own_code {
                ExitCode::from(code)
            } else if usage_error && !helper {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
