//! Shared pieces of the remote tier's tests (tests/tests/tier_moto.rs, tier_maint.rs): a small
//! local store configuration, a tier record for a test server, deterministic file bodies, and
//! what the kill -9 tests know of the keys a killed child wrote.

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;

use objfs_store::local::tier::rules::{AgeBy, Rule};
use objfs_store::local::tier::{TierRecord, DEFAULT_JOBS, TIER_FORMAT};
use objfs_store::local::{EcSetting, LocalConfig, LocalStore};
use objfs_store::s3::S3Store;
use objfs_store::{GetOptions, ListRequest, ObjectStore};

use crate::daemon_mount::objfs_binary;
use crate::s3_fixture::Server;

/// Replicas only, small volumes.
pub fn config() -> LocalConfig {
    LocalConfig {
        ec: EcSetting::Off,
        volume_size: 512 << 10,
        ..Default::default()
    }
}

/// The tier `cold/` in `bucket` of `server`.
pub fn tier_record(server: &Server, bucket: &str, endpoint: &str) -> TierRecord {
    TierRecord {
        format: TIER_FORMAT,
        bucket: bucket.to_string(),
        prefix: "cold/".into(),
        endpoint: Some(endpoint.to_string()),
        region: Some(server.region.clone()),
        profile: server.profile.clone(),
        added: 0,
        jobs: DEFAULT_JOBS,
    }
}

/// A rule that tiers every version at once.
pub fn every_version() -> Rule {
    Rule {
        prefix: String::new(),
        after_secs: 0,
        noncurrent_after_secs: None,
        by: AgeBy::Modified,
    }
}

/// File `n`'s bytes (4 KiB, 100 KB or 700 KB, by key).
pub fn body(key: &str, n: usize) -> Vec<u8> {
    let len = [4096, 100_000, 700_000][n % 3] + n;
    let k: u64 = key.bytes().map(u64::from).sum();
    (0..len)
        .map(|i| ((i as u64 * 31 + k) % 251) as u8)
        .collect()
}

/// A whole object's bytes.
pub async fn read(store: &LocalStore, key: &str) -> objfs_store::Result<Vec<u8>> {
    let got = store.get(key, GetOptions::default()).await?;
    Ok(got.bytes().await?.to_vec())
}

/// Volume and shard files in the store's data directory.
pub fn volume_files(root: &Path) -> usize {
    std::fs::read_dir(root.join("data"))
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.len() > 17 && (n[16..].starts_with(".vol") || n[16..].starts_with(".s"))
                })
                .count()
        })
        .unwrap_or(0)
}

/// The keys under the tier's prefix `cold/`.
pub async fn remote_keys(s3: &S3Store) -> Vec<String> {
    let req = ListRequest {
        prefix: "cold/".into(),
        ..Default::default()
    };
    let page = s3.list(&req).await.expect("list the tier");
    page.objects.into_iter().map(|o| o.key).collect()
}

/// Reopens the store, without its tier cache when `wipe_cache`.
pub fn reopen(root: &Path, wipe_cache: bool) -> LocalStore {
    if wipe_cache {
        let _ = std::fs::remove_dir_all(root.join("tier-cache"));
    }
    LocalStore::open(root).expect("reopen")
}

/// The bytes `tier_runner` writes for `key` with `seed`.
pub fn runner_body(key: &str, seed: u64) -> Vec<u8> {
    let len = 700 + (seed as usize * 7919) % 90_000;
    let k: u64 = key.bytes().map(u64::from).sum();
    (0..len)
        .map(|i| ((i as u64 * 37 + seed * 11 + k) % 253) as u8)
        .collect()
}

/// What the parent knows of a key: the acknowledged seed and the seeds a killed write may
/// have left instead.
#[derive(Default)]
pub struct Expect {
    pub acked: Option<u64>,
    pub candidates: HashSet<u64>,
}

/// Runs `objfs ARGS`; returns (success, stdout + stderr).
pub fn objfs(args: &[&str]) -> (bool, String) {
    let out = Command::new(objfs_binary()).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The bytes per tier `du` shows for the whole store (rollups), after checking that a
/// recount of the rollups agrees with them.
pub fn tiers(store: &LocalStore) -> objfs_store::local::insights::TierBytes {
    let v = store.verify_rollups("").unwrap();
    assert_eq!(v.mismatch_count, 0, "{:#?}", v.mismatches);
    store.du("", 0, 0).unwrap().prefixes[0].tiers
}
