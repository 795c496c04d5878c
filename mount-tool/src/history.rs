//! What the history commands ask of a store: a key's versions, one old version's bytes, named
//! snapshots, the retention policy, and (on a backend without the local gc) a retention pass.
//! Each runs over the [`ObjectStore`] trait, on a local store (ops.rs) or a bucket
//! (bucket.rs), in the mount process when the store is mounted and in the command otherwise,
//! and answers the same JSON either way; `cat` streams bytes instead (server.rs sends them
//! raw after its answer line).
//!
//! The store's history API is async (`objfs_store::history`); these run it on a small
//! runtime of their own, on the thread that serves the request.

pub use objfs_store::history::time::{from_ns, to_ns};
use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use objfs_fs::attr::{parse_mode, Kind, META_GID, META_MODE, META_UID};
use objfs_fs::core::{inode_key, link_id, stub_target};
use objfs_store::history::retention::{self, Policy};
use objfs_store::history::{expire, snapshots, time};
use objfs_store::{ErrorKind, GetOptions, ObjectInfo, ObjectStore, VersionId, VersionInfo};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The metadata entry a restore leaves on the version it makes (`SOURCE@MOMENT;job=ID`).
use objfs_store::history::restore::RESTORED_FROM;

/// Bytes `cat` reads from the store at a time.
const CAT_CHUNK: u64 = 8 << 20;

/// Which version of a key `cat` writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatSpec {
    pub key: String,
    /// A version id (`objfs versions` shows them).
    #[serde(default)]
    pub version: Option<String>,
    /// The version current at this moment (ns since the epoch).
    #[serde(default)]
    pub at_ns: Option<u64>,
}

/// Changes to the retention policy; `None` keeps the current value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RetentionChange {
    #[serde(default)]
    pub keep_all_s: Option<u64>,
    #[serde(default)]
    pub hourly_s: Option<u64>,
    #[serde(default)]
    pub daily_s: Option<u64>,
    #[serde(default)]
    pub deleted_s: Option<u64>,
}

impl RetentionChange {
    /// The policy `p` with these changes.
    pub fn apply(&self, p: Policy) -> Policy {
        let d = |s: Option<u64>, cur: Duration| s.map_or(cur, Duration::from_secs);
        Policy {
            keep_all: d(self.keep_all_s, p.keep_all),
            hourly: d(self.hourly_s, p.hourly),
            daily: d(self.daily_s, p.daily),
            deleted: d(self.deleted_s, p.deleted),
        }
    }

    /// Whether nothing is changed.
    pub fn is_empty(&self) -> bool {
        *self == RetentionChange::default()
    }
}

/// Runs `f` to its end on a runtime of its own (the store's async API needs tokio).
pub(crate) fn block<T>(f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a runtime")?
        .block_on(f)
}

/// A time in a report: ns since the epoch and its RFC 3339 form.
fn moment_json(t: SystemTime) -> (u64, String) {
    (to_ns(t), time::format_rfc3339(t))
}

/// Every version and delete marker of `key`, newest first (with the command's errors).
async fn key_versions(store: &dyn ObjectStore, key: &str) -> Result<Vec<VersionInfo>> {
    Ok(objfs_store::history::key_versions(store, key).await?)
}

/// The text of a kind, as `versions` reports it.
fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::File => "file",
        Kind::Dir => "directory",
        Kind::Symlink => "symlink",
        Kind::Fifo => "fifo",
        Kind::CharDev => "char device",
        Kind::BlockDev => "block device",
        Kind::Socket => "socket",
    }
}

/// One version as `versions --json` shows it.
fn version_json(v: &VersionInfo) -> Value {
    let (time_ns, time) = moment_json(v.modified);
    let meta = |name: &str| v.metadata.get(name).cloned();
    let mode = meta(META_MODE).and_then(|m| parse_mode(&m));
    let kind = if v.is_delete_marker {
        None
    } else if v.key.ends_with('/') {
        Some(Kind::Dir)
    } else {
        Some(Kind::of_object_mode(mode))
    };
    json!({
        "version": v.version.to_string(),
        "time_ns": time_ns,
        "time": time,
        "size": v.size,
        "delete_marker": v.is_delete_marker,
        "latest": v.is_latest,
        "etag": v.etag,
        "kind": kind.map(kind_name),
        "mode": mode.map(|m| format!("{:04o}", m & 0o7777)),
        "uid": meta(META_UID).and_then(|u| u.trim().parse::<u32>().ok()),
        "gid": meta(META_GID).and_then(|g| g.trim().parse::<u32>().ok()),
        "restored_from": meta(RESTORED_FROM),
    })
}

/// The inode objects the versions of a name link to (a hard-linked file's names are stubs;
/// its bytes and their history are the inode object's), newest link first, each once.
fn linked_inodes(vs: &[VersionInfo]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in vs {
        if let Some(id) = link_id(&v.metadata) {
            let k = inode_key(id);
            if !out.contains(&k) {
                out.push(k);
            }
        }
    }
    out
}

/// `objfs versions`: every version and delete marker of `key`, newest first; for a name of a
/// hard-linked file also every version of the inode object that holds its bytes (`linked`).
pub fn versions(store: &dyn ObjectStore, key: &str) -> Result<Value> {
    let vs = block(key_versions(store, key))?;
    if vs.is_empty() {
        bail!("{key}: the store has no version of it");
    }
    let mut linked = Vec::new();
    for inode in linked_inodes(&vs) {
        let iv = block(key_versions(store, &inode))?;
        linked.push(json!({
            "inode": inode,
            "versions": iv.iter().map(version_json).collect::<Vec<_>>(),
        }));
    }
    Ok(json!({
        "key": key,
        "versions": vs.iter().map(version_json).collect::<Vec<_>>(),
        "linked": linked,
    }))
}

/// The version `cat` writes: the given id, or the one current at the given moment.
pub fn resolve(store: &dyn ObjectStore, spec: &CatSpec) -> Result<ObjectInfo> {
    let key = &spec.key;
    block(async {
        let info = match (&spec.version, spec.at_ns) {
            (Some(v), None) => {
                let id: VersionId = v.parse()?;
                match store.head(key, Some(id.clone())).await {
                    Ok(i) => i,
                    // A version of the inode object of a hard-linked name (`versions` lists
                    // them under `linked`).
                    Err(e) if e.kind() == ErrorKind::NoSuchVersion => {
                        match linked_version(store, key, &id).await? {
                            Some(i) => i,
                            None => {
                                bail!("{key} has no version {v} with data (see `objfs versions`)")
                            }
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            (None, Some(ns)) => {
                let at = from_ns(ns);
                let found = store.head_at(key, at).await.map_err(|e| {
                    if e.kind() == ErrorKind::NotFound {
                        anyhow::anyhow!(
                            "{key} did not exist at {} (or was deleted then)",
                            time::format_rfc3339(at)
                        )
                    } else {
                        anyhow::Error::new(e)
                    }
                })?;
                // A name of a hard-linked file then: the bytes its inode object had then.
                match stub_target(&found).map(inode_key) {
                    Some(inode) => store.head_at(&inode, at).await.unwrap_or(found),
                    None => found,
                }
            }
            _ => bail!("cat takes exactly one of --version and --at"),
        };
        Ok(info)
    })
}

/// Version `id` of an inode object a version of `key` links to, if it is one.
async fn linked_version(
    store: &dyn ObjectStore,
    key: &str,
    id: &VersionId,
) -> Result<Option<ObjectInfo>> {
    for inode in linked_inodes(&key_versions(store, key).await?) {
        match store.head(&inode, Some(id.clone())).await {
            Ok(i) => return Ok(Some(i)),
            Err(e) if matches!(e.kind(), ErrorKind::NoSuchVersion | ErrorKind::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(None)
}

/// What `cat` answers before the bytes.
pub fn cat_header(info: &ObjectInfo) -> Value {
    let (time_ns, time) = moment_json(info.modified);
    json!({
        "key": info.key,
        "version": info.version.to_string(),
        "size": info.size,
        "time_ns": time_ns,
        "time": time,
    })
}

/// Writes the bytes of `info` (a version) to `out`.
pub fn write_version(
    store: &dyn ObjectStore,
    info: &ObjectInfo,
    out: &mut dyn Write,
) -> Result<()> {
    block(async {
        let mut off = 0;
        while off < info.size {
            let end = (off + CAT_CHUNK).min(info.size);
            let got = store
                .get(
                    &info.key,
                    GetOptions {
                        version: Some(info.version.clone()),
                        range: Some(off..end),
                    },
                )
                .await?
                .bytes()
                .await?;
            if got.is_empty() {
                bail!("{}: the version ended early at byte {off}", info.key);
            }
            out.write_all(&got)?;
            off += got.len() as u64;
        }
        out.flush()?;
        Ok(())
    })
}

/// A snapshot as `snapshot list --json` shows it; `exact`: its figures were measured now
/// (a local store), not by gc's last pass.
fn snapshot_json(s: &snapshots::Snapshot, exact: bool) -> Value {
    let (at_ns, at) = moment_json(s.at);
    let (created_ns, _) = moment_json(s.created);
    json!({
        "name": s.name,
        "at_ns": at_ns,
        "at": at,
        "created_ns": created_ns,
        "exclusive_bytes": s.exclusive.map(|e| e.bytes),
        "exclusive_versions": s.exclusive.map(|e| e.versions),
        "measured_ns": s.exclusive.map(|e| to_ns(e.measured)),
        "exclusive_exact": exact,
    })
}

/// `objfs snapshot create`.
pub fn snapshot_create(store: &dyn ObjectStore, name: &str, at_ns: Option<u64>) -> Result<Value> {
    let now = SystemTime::now();
    let at = at_ns.map_or(now, from_ns);
    let s = block(async { Ok(snapshots::create(store, name, at, now).await?) })?;
    Ok(json!({"action": "create", "snapshot": snapshot_json(&s, false)}))
}

/// `objfs snapshot list`. `exact`: what each snapshot alone holds, measured now by the
/// store (a local store's [`LocalStore::snapshot_exclusive`]); otherwise the figures are
/// those gc's last retention pass recorded.
///
/// [`LocalStore::snapshot_exclusive`]: objfs_store::local::LocalStore::snapshot_exclusive
pub fn snapshot_list(
    store: &dyn ObjectStore,
    exact: Option<BTreeMap<String, snapshots::Exclusive>>,
) -> Result<Value> {
    let mut all = block(async { Ok(snapshots::list(store).await?) })?;
    if let Some(exact) = &exact {
        for s in &mut all {
            // A snapshot made between the two reads has no figure yet.
            s.exclusive = exact.get(&s.name).copied();
        }
    }
    let list: Vec<Value> = all
        .iter()
        .map(|s| snapshot_json(s, exact.is_some() && s.exclusive.is_some()))
        .collect();
    Ok(json!({ "snapshots": list }))
}

/// `objfs snapshot delete`.
pub fn snapshot_delete(store: &dyn ObjectStore, name: &str) -> Result<Value> {
    let s = block(async { Ok(snapshots::delete(store, name).await?) })?;
    Ok(json!({"action": "delete", "snapshot": snapshot_json(&s, false)}))
}

/// The policy as JSON (seconds).
fn policy_json(p: &Policy) -> Value {
    json!({
        "keep_all_s": p.keep_all.as_secs(),
        "hourly_s": p.hourly.as_secs(),
        "daily_s": p.daily.as_secs(),
        "deleted_s": p.deleted.as_secs(),
    })
}

/// `objfs retention show`.
pub fn retention_show(store: &dyn ObjectStore, dry_run: bool) -> Result<Value> {
    let p = block(async { Ok(retention::load(store).await?) })?;
    let set = block(async { Ok(store.get_record(retention::RECORD).await?.is_some()) })?;
    let dry = if dry_run {
        // What the retention pass would expire now: the same pass, removing nothing.
        let r = block(async {
            Ok(expire::pass(store, SystemTime::now(), false, &mut |_| true).await?)
        })?;
        json!({"available": true, "versions": r.expired, "free_bytes": r.expired_bytes})
    } else {
        Value::Null
    };
    Ok(json!({
        "policy": policy_json(&p),
        "default": !set,
        "dry_run": dry,
    }))
}

/// `objfs retention set` (and `init --keep-all ...`).
pub fn retention_set(store: &dyn ObjectStore, change: &RetentionChange) -> Result<Value> {
    let p = block(async {
        let p = change.apply(retention::load(store).await?);
        retention::save(store, &p).await?;
        Ok(p)
    })?;
    Ok(json!({"policy": policy_json(&p), "default": false}))
}

/// One retention pass over the trait, removing what the policy expires (`objfs gc` of a
/// bucket: history::expire). `on_progress` hears the counts after every listing page.
pub fn retention_pass(
    store: &dyn ObjectStore,
    on_progress: &mut dyn FnMut(&expire::PassReport) -> bool,
) -> Result<Value> {
    let started = std::time::Instant::now();
    let r = block(async { Ok(expire::pass(store, SystemTime::now(), true, on_progress).await?) })?;
    let exclusive: serde_json::Map<String, Value> = r
        .exclusive
        .iter()
        .map(|(name, (bytes, versions))| {
            (name.clone(), json!({"bytes": bytes, "versions": versions}))
        })
        .collect();
    Ok(json!({
        "job": "gc",
        "finished": !r.stopped,
        "nothing_to_do": Value::Null,
        "run": Value::Null,
        "retention_pass": {
            "keys": r.keys,
            "versions": r.versions,
            "expired_versions": r.expired,
            "expired_bytes": r.expired_bytes,
            "snapshots_exclusive": exclusive,
            "seconds": started.elapsed().as_secs_f64(),
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_changes_keep_what_is_not_given() {
        let c = RetentionChange {
            keep_all_s: Some(600),
            ..Default::default()
        };
        let p = c.apply(Policy::default());
        assert_eq!(p.keep_all, Duration::from_secs(600));
        assert_eq!(p.daily, Policy::default().daily);
        assert!(!c.is_empty());
        assert!(RetentionChange::default().is_empty());
    }
}
