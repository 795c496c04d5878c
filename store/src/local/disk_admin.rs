//! `objfs disk add`, `remove` and `replace` on a local store: the policy checks, the store
//! marker's disk list, and the disks' service state around the data movement (drain.rs for
//! remove; scrub rebuilds a replaced disk).

use std::path::Path;

use crate::error::{Result, StoreError};
use crate::local::config::Marker;
use crate::local::daemons::live_blobs;
use crate::local::worker::RunReport;
use crate::local::LocalStore;

impl LocalStore {
    /// Adds an empty directory as a new disk; new volumes use it at once (existing data is not
    /// moved).
    pub fn add_disk(&self, path: &Path) -> Result<()> {
        let _guard = self.inner.maintenance();
        let mut marker = Marker::read(&self.inner.root)?;
        if marker
            .disk_paths(&self.inner.root)
            .iter()
            .any(|p| p == path)
        {
            return Err(StoreError::InvalidArgument(format!(
                "{} is already one of the store's disks",
                path.display()
            )));
        }
        let index = self.inner.disks.add(path)?;
        debug_assert_eq!(index as usize, marker.disks.len());
        marker.disks.push(path.to_path_buf());
        marker.write(&self.inner.root)
    }

    /// Takes a disk out of service: moves every replica and shard on it to other disks
    /// (refused, with the reason, when the policy would no longer fit), then records it removed.
    pub fn remove_disk(&self, path: &Path) -> Result<u64> {
        self.remove_disk_with(path, &mut |_| {})
    }

    /// [`LocalStore::remove_disk`], telling `on_progress` how far the data movement is.
    pub fn remove_disk_with(
        &self,
        path: &Path,
        on_progress: &mut dyn FnMut(&RunReport),
    ) -> Result<u64> {
        let _guard = self.inner.maintenance();
        let mut marker = Marker::read(&self.inner.root)?;
        let paths = marker.disk_paths(&self.inner.root);
        let index = paths.iter().position(|p| p == path).ok_or_else(|| {
            StoreError::InvalidArgument(format!(
                "{} is not one of the store's disks",
                path.display()
            ))
        })? as u32;
        if marker.removed.contains(&index) {
            return Err(StoreError::InvalidArgument(format!(
                "{} was removed already",
                path.display()
            )));
        }
        let left = paths.len() - marker.removed.len() - 1;
        let (replicas, ec) = self.inner.cfg.policy();
        if let Some((k, m)) = ec {
            if ((k + m) as usize) > left {
                return Err(StoreError::InvalidArgument(format!(
                    "cannot remove {}: erasure coding {k}+{m} needs {} disks and only {left} would remain (add a disk first)",
                    path.display(),
                    k + m
                )));
            }
        }
        if replicas as usize > left {
            return Err(StoreError::InvalidArgument(format!(
                "cannot remove {}: {replicas} replicas need {replicas} disks and only {left} would remain",
                path.display()
            )));
        }
        // New data goes elsewhere from now on; the open volume is sealed so nothing more is
        // appended on this disk.
        self.inner.disks.retire(index, false);
        self.inner.disks.seal_active(&self.inner.meta)?;
        self.inner.sync_all()?;
        let blobs = live_blobs(&self.inner)?;
        let moved = self
            .inner
            .disks
            .drain(&self.inner.meta, index, &blobs, on_progress)?;
        marker.removed.push(index);
        marker.write(&self.inner.root)?;
        self.inner.disks.retire(index, true);
        Ok(moved)
    }

    /// Moves disk `old` (a path in the store's disk list) to the empty directory `new`, and
    /// records it. Run a scrub afterwards to rebuild what the old disk held.
    pub fn replace_disk(&self, old: &Path, new: &Path) -> Result<()> {
        let _guard = self.inner.maintenance();
        let mut marker = Marker::read(&self.inner.root)?;
        let paths = marker.disk_paths(&self.inner.root);
        let index = paths
            .iter()
            .position(|p| {
                p == old
                    || marker
                        .disks
                        .iter()
                        .any(|d| d == old && self.inner.root.join(d) == *p)
            })
            .ok_or_else(|| {
                StoreError::InvalidArgument(format!(
                    "{} is not one of the store's disks ({})",
                    old.display(),
                    paths
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
        if paths.iter().any(|p| p == new) {
            return Err(StoreError::InvalidArgument(format!(
                "{} is already one of the store's disks",
                new.display()
            )));
        }
        self.inner.disks.replace(index as u32, new)?;
        marker.disks[index] = new.to_path_buf();
        marker.write(&self.inner.root)?;
        self.inner.disks.set_path(index as u32, new.to_path_buf());
        Ok(())
    }
}
