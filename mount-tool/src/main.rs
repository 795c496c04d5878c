//! `objfs`: create, mount, inspect and unmount objfs stores.
//!
//! One binary, two faces: `objfs SUBCOMMAND ...` (clap), and, when invoked as `mount.objfs`
//! (a symlink in /sbin), the mount(8) helper syntax. Errors print as `objfs: <message>` and
//! exit 1; usage errors exit 2 (clap's default).

mod cli;
mod commands;
mod daemon;
mod helper;
mod location;
mod logging;
mod maintenance;
mod mount;
mod options;
mod platform;

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

use crate::cli::{Cli, Command};
use crate::mount::MountRequest;

fn run(cli: Cli) -> Result<()> {
    if let Command::Mount(a) = &cli.command {
        // The mount sets up its own logging (a daemon may log to a file).
        return mount::run(MountRequest::from_args(a)?);
    }
    logging::init(None);
    match cli.command {
        Command::Mount(_) => Ok(()),
        Command::Umount(a) => commands::umount(&a),
        Command::Init(a) => commands::init(&a),
        Command::Status(a) => commands::status(&a),
        Command::Place(a) => maintenance::place(&a),
        Command::Scrub(a) => maintenance::scrub(&a),
        Command::Gc(a) => maintenance::gc(&a),
        Command::Disk(a) => maintenance::disk(&a),
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

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let invoked_as = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let result = if invoked_as == "mount.objfs" {
        run_helper(args.get(1..).unwrap_or(&[]))
    } else {
        run(Cli::parse())
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("objfs: {e:#}");
            ExitCode::FAILURE
        }
    }
}
