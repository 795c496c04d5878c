//! Helpers of the crash tests: what a store's metadata directory looks like when it does not
//! open after a crash, so the failure message says which file is in which state.

use std::fs;
use std::path::Path;

/// The files of `<store>/meta` (sled's directory) with their sizes, and a diagnosis when a
/// known bad state is recognised.
pub fn describe_meta_dir(store: &Path) -> String {
    let meta = store.join("meta");
    let mut out = format!("contents of {}:", meta.display());
    let mut names: Vec<(String, u64)> = match fs::read_dir(&meta) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| {
                let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                (e.file_name().to_string_lossy().into_owned(), len)
            })
            .collect(),
        Err(e) => return format!("{out} cannot read it: {e}"),
    };
    names.sort();
    for (n, len) in &names {
        out.push_str(&format!("\n  {n:<40} {len:>12} B"));
    }
    if let Some((n, len)) = torn_sled_snapshots(store).first() {
        out.push_str(&format!(
            "\n=> {n} ({len} B) is a snapshot sled 0.34 did not finish writing: the process was \
             killed during sled's recovery at open (between creating snap.<lsn>.generating and \
             renaming it). sled lists `.generating` files as snapshots and this name sorts last, \
             so every later open reads it as the newest snapshot and fails \
             (see crash.rs `a_snapshot_left_unfinished_at_open_does_not_brick_the_store`)."
        ));
    }
    out
}

/// `snap.*.generating` files in `<store>/meta`, with their sizes: left by a process killed while
/// sled wrote a snapshot.
pub fn torn_sled_snapshots(store: &Path) -> Vec<(String, u64)> {
    let Ok(rd) = fs::read_dir(store.join("meta")) else {
        return Vec::new();
    };
    let mut v: Vec<(String, u64)> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name.starts_with("snap.") && name.ends_with(".generating"))
                .then(|| (name, e.metadata().map(|m| m.len()).unwrap_or(0)))
        })
        .collect();
    v.sort();
    v
}
