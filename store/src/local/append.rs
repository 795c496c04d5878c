//! Appends: the one open volume new blobs go into, replicated on R disks before a write is
//! acknowledged. A blob reserves its bytes here (sealing the volume and opening the next one
//! when it would not fit), and the group sync fsyncs the replica files written since the last
//! one.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use crate::error::{Result, StoreError};
use crate::local::disks::{lock, Disks, FileKind, VolumeCatalog};
use crate::local::records::{Layout, VolumeRecord, VolumeState};
use crate::local::volume::{self, now_nanos, volume_header, VOLUME_HEADER_LEN};

/// The volume being appended to, replicated on `disks`.
pub(crate) struct Active {
    pub(crate) id: u64,
    /// Replica files, and the disk each is on.
    files: Vec<Arc<File>>,
    disks: Vec<u32>,
    len: u64,
}

impl Disks {
    /// Reserves `n` bytes for a blob in the active volume (sealing it and starting a new one when
    /// `n` would not fit) and returns the volume, its replica files and the offset.
    pub fn reserve(&self, cat: &dyn VolumeCatalog, n: u64) -> Result<(u64, Vec<Arc<File>>, u64)> {
        let mut active = lock(&self.active);
        if let Some(a) = active.as_ref() {
            if a.len > VOLUME_HEADER_LEN && a.len + n > self.volume_size {
                let (id, len) = (a.id, a.len);
                *active = None;
                self.seal(cat, id, len)?;
            }
        }
        if active.is_none() {
            *active = Some(self.create_volume(cat)?);
        }
        let a = active
            .as_mut()
            .ok_or_else(|| StoreError::Metadata("no active volume".into()))?;
        let offset = a.len;
        a.len += n;
        {
            let mut d = lock(&self.dirty);
            for (disk, f) in a.disks.iter().zip(&a.files) {
                d.insert((a.id, *disk), f.clone());
            }
        }
        Ok((a.id, a.files.clone(), offset))
    }

    fn seal(&self, cat: &dyn VolumeCatalog, id: u64, len: u64) -> Result<()> {
        if let Some(mut rec) = self.record(id) {
            rec.state = VolumeState::Sealed;
            rec.size = len;
            cat.save_volume(&rec)?;
            self.set_record(rec);
        }
        Ok(())
    }

    fn create_volume(&self, cat: &dyn VolumeCatalog) -> Result<Active> {
        let (id, files, disks) = self.new_volume(cat, VolumeState::Open, 0)?;
        Ok(Active {
            id,
            files,
            disks,
            len: VOLUME_HEADER_LEN,
        })
    }

    /// A new replicated volume of `size` bytes (header included), recorded sealed, that no
    /// append goes to: compaction fills it with the live blobs of one volume (so it inherits
    /// that volume's lineage, see `meta::rollup`). Its record is durable when this returns;
    /// until blobs are pointed at it, it holds nothing anyone references, and gc removes it.
    pub(crate) fn create_sealed_volume(
        &self,
        cat: &dyn VolumeCatalog,
        size: u64,
    ) -> Result<(u64, Vec<Arc<File>>)> {
        let (id, files, _) = self.new_volume(cat, VolumeState::Sealed, size)?;
        Ok((id, files))
    }

    /// Creates the replica files of a new volume (header written, fsynced) and its durable
    /// record.
    fn new_volume(
        &self,
        cat: &dyn VolumeCatalog,
        state: VolumeState,
        size: u64,
    ) -> Result<(u64, Vec<Arc<File>>, Vec<u32>)> {
        let disks = self.pick(self.replicas);
        if disks.is_empty() {
            return Err(StoreError::NoSpace("no data disk is online".into()));
        }
        if disks.len() < self.replicas {
            tracing::warn!(
                wanted = self.replicas,
                online = disks.len(),
                "fewer disks online than replicas: new data has fewer copies"
            );
        }
        // An id whose file exists (an orphan of some crash) is skipped: never write over it.
        let mut id = cat.new_volume_id()?;
        for _ in 0..1000 {
            if disks
                .iter()
                .all(|d| !self.file_path(id, *d, FileKind::Replica).exists())
            {
                break;
            }
            id = cat.new_volume_id()?;
        }
        let created = now_nanos();
        let mut files = Vec::with_capacity(disks.len());
        for &d in &disks {
            let path = self.file_path(id, d, FileKind::Replica);
            let ctx = |e| StoreError::io(format!("creating volume {}", path.display()), e);
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(ctx)?;
            file.write_all_at(&volume_header(id, created), 0)
                .map_err(ctx)?;
            // The file must exist after a crash before any metadata names it.
            file.sync_all().map_err(ctx)?;
            volume::sync_dir(&self.path(d))?;
            let file = Arc::new(file);
            self.keep_handle(id, d, FileKind::Replica, file.clone());
            files.push(file);
        }
        let rec = VolumeRecord {
            id,
            state,
            size,
            created,
            layout: Layout::Replicated {
                disks: disks.clone(),
            },
            verified_at: 0,
        };
        // Durable before any blob in it is committed: a replay after a power loss verifies
        // the blobs of unsynced log records against the volumes it knows.
        cat.save_volume_durably(&rec)?;
        self.set_record(rec);
        Ok((id, files, disks))
    }

    /// Seals the active volume (at close, and before `place --now`).
    pub fn seal_active(&self, cat: &dyn VolumeCatalog) -> Result<()> {
        let mut active = lock(&self.active);
        if let Some(a) = active.take() {
            self.seal(cat, a.id, a.len)?;
        }
        Ok(())
    }

    /// fsyncs every replica file written since the last call.
    pub fn sync_dirty(&self) -> Result<()> {
        let dirty: Vec<((u64, u32), Arc<File>)> = lock(&self.dirty).drain().collect();
        for (i, ((id, disk), file)) in dirty.iter().enumerate() {
            if let Err(e) = file.sync_data() {
                let mut d = lock(&self.dirty);
                for (k, f) in &dirty[i..] {
                    d.insert(*k, f.clone());
                }
                return Err(StoreError::io(
                    format!("syncing volume {id:016x} on disk {disk}"),
                    e,
                ));
            }
        }
        Ok(())
    }

    /// Whether replica files were written since the last sync.
    pub fn has_dirty(&self) -> bool {
        !lock(&self.dirty).is_empty()
    }
}
