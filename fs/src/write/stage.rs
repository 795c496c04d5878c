//! Staging: where a writer's upload and checkpoints go when the store's copies share data, so
//! that a checkpoint is never the file's current version (see the module doc of `write`), and
//! the removal of what a dead mount staged.

use objfs_store::ObjectStore;

use super::{WriteCtx, Writer};
use crate::error::FsResult;

/// Where writers stage their uploads and checkpoints (under the reserved root name).
pub const STAGE_PREFIX: &str = ".objfs/stage/";

/// Removes for good every version under [`STAGE_PREFIX`] and aborts every upload there: what
/// writers of an earlier mount staged and did not commit (it died). Run before a mount serves
/// (no writer of its own exists yet). Returns how many versions and uploads went.
pub async fn clear_stage(store: &dyn ObjectStore) -> FsResult<usize> {
    let mut n = 0;
    for u in store.list_multipart_uploads(STAGE_PREFIX).await? {
        store.abort_multipart(&u.key, &u.upload_id).await?;
        n += 1;
    }
    let mut req = objfs_store::ListVersionsRequest {
        prefix: STAGE_PREFIX.to_string(),
        ..Default::default()
    };
    loop {
        let page = store.list_versions(&req).await?;
        for v in &page.versions {
            store.delete_version(&v.key, v.version.clone()).await?;
            n += 1;
        }
        if page.next_key_marker.is_none() {
            break;
        }
        req.key_marker = page.next_key_marker;
        req.version_marker = page.next_version_marker;
    }
    Ok(n)
}

impl Writer {
    /// A checkpoint into the staging key `stage`.
    pub(super) async fn stage(&mut self, ctx: &WriteCtx, stage: &str) -> FsResult<()> {
        self.poll_uploads();
        if let Some(e) = self.error.take() {
            self.reset(ctx).await;
            return Err(e);
        }
        // (An unlinked file is staged too: its descriptors still read what was written.)
        if !self.data_dirty {
            return Ok(());
        }
        match self.write_version(ctx, stage, false).await {
            Ok(info) => {
                if let Some(old) = self.staged.replace(info.clone()) {
                    self.garbage.push(old);
                }
                self.size = info.size;
                self.base_valid = info.size;
                self.chunks.clear();
                self.uploading.clear();
                self.upload = None;
                self.data_dirty = false;
                self.drop_garbage(ctx).await;
                Ok(())
            }
            Err(e) => {
                tracing::error!(key = %self.key, error = %e, "checkpoint failed; the previous version stays");
                self.reset(ctx).await;
                Err(e)
            }
        }
    }

    /// Removes the staged versions no longer needed, for good (a failure is logged: the next
    /// mount's [`clear_stage`] removes what is left).
    pub(super) async fn drop_garbage(&mut self, ctx: &WriteCtx) {
        for v in std::mem::take(&mut self.garbage) {
            if let Err(e) = ctx.store.delete_version(&v.key, v.version.clone()).await {
                tracing::warn!(key = %v.key, error = %e, "cannot remove a staged version");
            }
        }
    }
}
