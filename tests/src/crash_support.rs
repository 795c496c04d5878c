//! Helpers of the crash tests: the seed and the small-blob store they share, the multipart
//! upload their writers make, and what a store's metadata directory looks like when it does
//! not open after a crash, so the failure message says which file is in which state.

use std::error::Error;
use std::fs;
use std::path::Path;

use objfs_store::local::{LocalConfig, LocalStore};
use objfs_store::{Body, CompletedPart, ObjectStore, PutOptions};

/// The seed of a randomised crash test: `OBJFS_CRASH_SEED` to replay one, else a random one.
pub fn crash_seed() -> u64 {
    std::env::var("OBJFS_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random)
}

/// Makes (and closes) a store at `path` with small volumes and blobs, so a few writes span
/// many blobs and volumes.
pub fn init_small_store(path: &Path, volume_size: u64) {
    let cfg = LocalConfig {
        volume_size,
        block_size: 4096,
        blob_size: 64 << 10,
        ..Default::default()
    };
    LocalStore::init(path, cfg)
        .and_then(|s| s.close())
        .unwrap_or_else(|e| panic!("init {}: {e}", path.display()));
}

/// Writes `data` as a multipart upload of `part`-byte parts (an empty body is one empty
/// part), uploading the parts in reverse order to exercise out-of-order parts.
pub async fn multipart_put(
    store: &LocalStore,
    key: &str,
    data: &[u8],
    part: usize,
    opts: PutOptions,
) -> Result<(), Box<dyn Error>> {
    let id = store.create_multipart(key, opts).await?;
    let chunks: Vec<&[u8]> = if data.is_empty() {
        vec![&[][..]]
    } else {
        data.chunks(part).collect()
    };
    let mut parts = Vec::new();
    for (i, c) in chunks.iter().enumerate().rev() {
        let n = i as u32 + 1;
        let p = store
            .upload_part(key, &id, n, Body::from(c.to_vec()))
            .await?;
        parts.push(CompletedPart {
            part_number: n,
            etag: p.etag,
        });
    }
    parts.reverse();
    store.complete_multipart(key, &id, &parts).await?;
    Ok(())
}

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
