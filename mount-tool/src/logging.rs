//! Logging through `tracing`: `RUST_LOG` decides what is shown, warnings only by default.
//! The daemon logs into its `--log-file` (its stderr points there), the foreground to stderr.

use std::io::IsTerminal;
use std::path::Path;

use tracing_subscriber::EnvFilter;

/// Installs the subscriber once; later calls do nothing.
pub fn init(log_file: Option<&Path>) {
    // fuser's session warns "Failed to umount filesystem: Invalid argument" whenever the
    // mount was unmounted from outside (`objfs umount`, `fusermount3 -u`): its own release of
    // the ended mount fails, which is no news. Real unmount failures are reported by objfs.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("warn,fuser::session=error"));
    let ansi = log_file.is_none() && std::io::stderr().is_terminal();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(true)
        .try_init();
}
