//! What `objfs status` and `df` show of a local store: counts and sizes, the policy and its
//! overhead, every disk with its space, warnings an operator should act on, and the logical
//! capacity (the store's own files plus the disks' free space, divided by the redundancy).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{Result, StoreError};
use crate::local::records::Layout;
use crate::local::{erasure, Inner, LocalStore};
use crate::types::Capacity;

/// Counts and sizes reported by `objfs status`.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreStatus {
    pub path: PathBuf,
    /// Keys with a live current version.
    pub objects: u64,
    /// Versions, delete markers included.
    pub versions: u64,
    pub delete_markers: u64,
    /// Sum of the sizes of live current versions.
    pub logical_bytes: u64,
    pub volumes: u64,
    /// Volumes erasure-coded by placement.
    pub placed_volumes: u64,
    /// Bytes of volume and shard files on disk.
    pub volume_bytes: u64,
    /// Copies of new data.
    pub replicas: u8,
    /// Erasure coding of sealed volumes (K, M).
    pub ec: Option<(u8, u8)>,
    /// Bytes on disk per byte of data once placed.
    pub overhead: f64,
    pub disks: Vec<DiskStatus>,
    /// Conditions an operator should act on (offline disks, too few disks for the policy).
    pub warnings: Vec<String>,
    /// Whether the previous process closed the store cleanly.
    pub last_shutdown_clean: bool,
}

/// One data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskStatus {
    pub path: PathBuf,
    /// Present and ours (a missing or foreign directory is offline).
    pub online: bool,
    /// Taken out of service by `disk remove`.
    pub removed: bool,
    pub total_bytes: u64,
    pub free_bytes: u64,
}

impl Inner {
    pub(crate) fn status(&self) -> Result<StoreStatus> {
        let stats = self.meta.stats();
        let records = self.disks.records();
        let online = self.disks.online();
        let disks = self
            .disks
            .paths()
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let up = online.contains(&(i as u32));
                let (total_bytes, free_bytes) = if up {
                    disk_space(d).unwrap_or((0, 0))
                } else {
                    (0, 0)
                };
                DiskStatus {
                    path: d.clone(),
                    online: up,
                    removed: self.disks.is_retired(i as u32) && !up,
                    total_bytes,
                    free_bytes,
                }
            })
            .collect();
        let (replicas, ec) = self.cfg.policy();
        let mut warnings = Vec::new();
        if (replicas as usize) > online.len() {
            warnings.push(format!(
                "{replicas} replicas wanted but only {} disk(s) online: new data has fewer copies",
                online.len()
            ));
        }
        let in_service = (0..self.disks.paths().len() as u32)
            .filter(|d| !self.disks.is_retired(*d) || online.contains(d))
            .count();
        if online.len() < in_service {
            warnings.push(format!(
                "{} of {in_service} disks offline: run `objfs disk replace` and then `objfs scrub --now`",
                in_service - online.len(),
            ));
        }
        if let Some((k, m)) = ec {
            if ((k + m) as usize) > online.len() {
                warnings.push(format!(
                    "erasure coding {k}+{m} needs {} disks online; placement waits",
                    k + m
                ));
            }
        }
        Ok(StoreStatus {
            path: self.root.clone(),
            objects: stats.objects,
            versions: stats.versions,
            delete_markers: stats.delete_markers,
            logical_bytes: stats.live_bytes,
            volumes: records.len() as u64,
            placed_volumes: records
                .iter()
                .filter(|r| matches!(r.layout, Layout::Erasure { .. }))
                .count() as u64,
            volume_bytes: self.disks.file_bytes(),
            replicas,
            ec,
            overhead: erasure::overhead(ec, replicas),
            disks,
            warnings,
            last_shutdown_clean: self.last_shutdown_clean,
        })
    }

    /// Logical capacity and use, as `df` on a mount shows it: the store's own footprint (its
    /// volume and shard files) plus the free space of its disks (each filesystem counted
    /// once, however many disks share it), both divided by the redundancy. So "used" is what
    /// the store holds, not what everything else on the host disk holds.
    pub(crate) fn capacity(&self) -> Result<Capacity> {
        let mut free_bytes = 0u64;
        let mut seen = std::collections::HashSet::new();
        for d in self.disks.online() {
            let path = self.disks.path(d);
            let dev = std::fs::metadata(&path).map(|m| m.dev()).ok();
            if dev.is_some_and(|dev| !seen.insert(dev)) {
                continue;
            }
            let (_, f) = disk_space(&path)?;
            free_bytes += f;
        }
        let own = self.disks.file_bytes();
        // Logical capacity: what the disks hold divided by the redundancy.
        let (replicas, ec) = self.cfg.policy();
        let over = erasure::overhead(ec, replicas)
            .max(replicas as f64)
            .max(1.0);
        let used_on_disk = (own as f64 / over) as u64;
        let free_bytes = (free_bytes as f64 / over) as u64;
        let s = self.meta.stats();
        Ok(Capacity {
            total_bytes: used_on_disk.saturating_add(free_bytes),
            free_bytes,
            used_bytes: s.live_bytes,
            objects: s.objects,
        })
    }
}

impl LocalStore {
    /// Counts, sizes and disks.
    pub fn status(&self) -> Result<StoreStatus> {
        self.inner.status()
    }
}

/// (total, free) bytes of the filesystem holding `path`.
pub(crate) fn disk_space(path: &Path) -> Result<(u64, u64)> {
    let s = nix::sys::statvfs::statvfs(path).map_err(|e| {
        StoreError::io(
            format!("statvfs {}", path.display()),
            std::io::Error::from(e),
        )
    })?;
    let frag = s.fragment_size() as u64;
    Ok((s.blocks() as u64 * frag, s.blocks_available() as u64 * frag))
}
