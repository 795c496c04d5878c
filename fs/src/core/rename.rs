//! Renames: a file is one store rename (atomic, metadata only); a directory is a tree move
//! (copy every key below it, then delete the originals).
//!
//! A rename holds the namespace lock exclusively and commits and holds every open writer of
//! what it moves, so no byte is written to an old key while the keys change; the writers then
//! follow their files to the new keys.

use std::ffi::OsStr;
use std::time::Instant;

use futures::StreamExt;
use objfs_store::{Condition, CopyOptions, ObjectInfo, RenameOptions};
use tokio::sync::OwnedMutexGuard;

use super::links::stub_target;
use super::tree_list::list_tree;
use super::{check_name, is_precondition, marker_of, Found, ObjFs};

use crate::attr::{Attrs, Kind};
use crate::error::{FsError, FsResult};
use crate::write::Writer;

/// Concurrent copies/deletes of a directory rename.
const RENAME_CONCURRENCY: usize = 8;
/// Keys of a directory rename copied before the copies are deleted.
const RENAME_BATCH: usize = 100_000;

/// Writers a rename holds while it moves their files.
type Held = Vec<(u64, OwnedMutexGuard<Writer>)>;

impl ObjFs {
    /// Renames a file or a whole directory. `flags` are renameat2's.
    pub async fn rename(
        &self,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
    ) -> FsResult<()> {
        self.check_change(parent, name.to_str())?;
        self.check_change(newparent, newname.to_str())?;
        let noreplace = flags & libc::RENAME_NOREPLACE != 0;
        if flags & !libc::RENAME_NOREPLACE != 0 {
            return Err(FsError::Invalid(format!("rename flags {flags:#x}")));
        }
        let name = check_name(name)?;
        let newname = check_name(newname)?;
        let src = self.child_key(parent, name)?;
        let dst = self.child_key(newparent, newname)?;
        if src == dst {
            return Ok(());
        }
        let _ns = self.namespace.write().await;
        if self
            .rename_pending(parent, name, newparent, newname, &dst, noreplace)
            .await?
        {
            return Ok(());
        }
        let (src_dir, df) = tokio::join!(
            self.probe_src(parent, name, &src),
            self.probe_dst(newparent, newname, &dst)
        );
        let src_dir = src_dir?;
        let df = df?;
        if noreplace && df.is_some() {
            return Err(FsError::Exists(dst));
        }
        // A name of a hard-linked file at the destination: its count drops once it is replaced.
        let dst_link = match &df {
            Some(Found::Object(o)) => stub_target(o).map(str::to_string),
            _ => None,
        };
        if let (Some(id), false) = (&dst_link, src_dir) {
            if self.head_live(&src).await?.as_ref().and_then(stub_target) == Some(id.as_str()) {
                // Two names of one file: rename(2) does nothing.
                return Ok(());
            }
        }
        let (held, renamed) = if src_dir {
            (self.rename_dir(&src, &dst, df).await?, None)
        } else {
            if let Some(Found::Dir { .. }) = df {
                return Err(FsError::IsDir(dst));
            }
            self.rename_file((parent, name), &src, &dst, noreplace)
                .await?
        };
        // Whatever was at the destination is gone; the source inode moves there.
        self.detach_name(newparent, newname).await?;
        {
            let mut t = self.table()?;
            if let Some(ino) = t.child(parent, name) {
                t.rename(ino, newparent, newname);
                // The moved inode now is the renamed version (same bytes, new key).
                if let Some(info) = renamed {
                    // What the mount knows of it is exact now.
                    if let Some(n) = t.get_mut(ino) {
                        if n.writer.is_none() {
                            let a = Attrs::from_object(&info, false, &self.cfg);
                            n.attrs = Some((a, Instant::now()));
                        }
                    }
                    t.wrote(ino, info);
                }
            }
        }
        self.rekey_writers(held).await;
        self.name_gone(parent, name);
        self.name_made(newparent, newname);
        self.keep_dir(parent).await?;
        self.dir_changed(parent).await;
        if newparent != parent {
            self.dir_changed(newparent).await;
        }
        if let Some(id) = dst_link {
            if let Err(e) = self.drop_link(&id).await {
                // The count stays above the names left: the file is kept, never lost.
                tracing::warn!(inode = %id, error = %e, "link count not lowered after a rename over a link");
            }
        }
        Ok(())
    }

    /// Whether the source of a rename is a directory (ENOENT when it is nothing): what this
    /// mount saw under the name within the TTL, else what the store holds.
    async fn probe_src(&self, parent: u64, name: &str, src: &str) -> FsResult<bool> {
        if let Some(kind) = self.fresh_kind(parent, name)? {
            return Ok(kind == Kind::Dir);
        }
        match self.probe(src).await? {
            Some(f) => Ok(matches!(f, Found::Dir { .. })),
            None => Err(FsError::NotFound(src.to_string())),
        }
    }

    /// What the destination of a rename is: nothing when this mount knows the name absent
    /// (see `names.rs`), else what the store holds, or a file pending in this mount.
    async fn probe_dst(&self, parent: u64, name: &str, dst: &str) -> FsResult<Option<Found>> {
        if self.exists_here(parent, name)? {
            return Ok(Some(Found::Pending));
        }
        if self.known_absent(parent, name).is_some() {
            return Ok(None);
        }
        self.probe(dst).await
    }

    /// Renames a pending file (created here, not in the store yet): when nothing is at the
    /// destination in the store, the file only changes its name in this mount and its first
    /// version goes to the new key at its close; no store call. Over an existing object, the
    /// file is committed first and renamed as any other. Returns whether it was done here.
    async fn rename_pending(
        &self,
        parent: u64,
        name: &str,
        newparent: u64,
        newname: &str,
        dst: &str,
        noreplace: bool,
    ) -> FsResult<bool> {
        let ino = {
            let t = self.table()?;
            match t.child(parent, name) {
                Some(i) if t.get(i).is_some_and(|n| n.is_pending()) => i,
                _ => return Ok(false),
            }
        };
        let Some(mut g) = self.current_writer(ino).await? else {
            return Ok(false);
        };
        if !self.settle_pending(ino, &g) {
            // Its close (or a checkpoint) made it a version meanwhile.
            return Ok(false);
        }
        match self.probe_dst(newparent, newname, dst).await? {
            Some(_) if noreplace => return Err(FsError::Exists(dst.to_string())),
            Some(Found::Dir { .. }) => return Err(FsError::IsDir(dst.to_string())),
            Some(Found::Object(_)) => {
                // Replaces a file of the store: commit first, then a store rename.
                self.commit_writer(ino, &mut g, false).await?;
                return Ok(false);
            }
            Some(Found::Pending) | None => {}
        }
        self.detach_name(newparent, newname).await?;
        {
            let mut t = self.table()?;
            t.rename(ino, newparent, newname);
        }
        g.key = dst.to_string();
        drop(g);
        self.name_gone(parent, name);
        self.name_made(newparent, newname);
        self.dir_changed(parent).await;
        if newparent != parent {
            self.dir_changed(newparent).await;
        }
        Ok(true)
    }

    /// Renames the file `src` to `dst`: one store operation, atomic in the local store (a
    /// crash leaves the file under one name, never two), metadata only, no data copied.
    async fn rename_file(
        &self,
        (parent, name): (u64, &str),
        src: &str,
        dst: &str,
        noreplace: bool,
    ) -> FsResult<(Held, Option<ObjectInfo>)> {
        let held = self.lock_writer_of(parent, name).await?;
        let opts = RenameOptions {
            condition: if noreplace {
                Condition::IfNotExists
            } else {
                Condition::None
            },
            ..Default::default()
        };
        match self.store.rename(src, dst, opts).await {
            Ok(info) => Ok((held, Some(info))),
            Err(e) if is_precondition(&e) => Err(FsError::Exists(dst.to_string())),
            Err(e) => Err(e.into()),
        }
    }

    /// Moves the directory `src` (and everything below it) to `dst`, which is `df` now.
    async fn rename_dir(&self, src: &str, dst: &str, df: Option<Found>) -> FsResult<Held> {
        match &df {
            Some(Found::Object(_)) | Some(Found::Pending) => {
                return Err(FsError::NotDir(dst.to_string()))
            }
            Some(Found::Dir { .. }) if !self.dir_is_empty(dst).await? => {
                return Err(FsError::NotEmpty(dst.to_string()))
            }
            _ => {}
        }
        let (from, to) = (marker_of(src), marker_of(dst));
        if dst.starts_with(&from) {
            return Err(FsError::Invalid(format!("rename of {src} into itself")));
        }
        if to.len() > self.max_key_len() {
            return Err(FsError::NameTooLong(dst.to_string()));
        }
        let held = self.lock_writers_under(src, true).await?;
        if let Some(Found::Dir { .. }) = df {
            self.delete_marker(dst).await?;
        }
        self.move_tree(&from, &to).await?;
        Ok(held)
    }

    /// Commits the open writer of the file `name` in `parent` (if any) and keeps it locked: what
    /// [`Self::lock_writers_under`] does for one file, without a look at every open file.
    async fn lock_writer_of(&self, parent: u64, name: &str) -> FsResult<Held> {
        let ino = self.table()?.child(parent, name);
        let Some(ino) = ino else {
            return Ok(Vec::new());
        };
        let Some(mut g) = self.current_writer(ino).await? else {
            return Ok(Vec::new());
        };
        self.commit_writer(ino, &mut g, false).await?;
        Ok(vec![(ino, g)])
    }

    /// Commits every open writer of `key` (or below it, for a directory) and keeps them
    /// locked, so nothing is written to the old keys while a rename moves them.
    async fn lock_writers_under(&self, key: &str, dir: bool) -> FsResult<Held> {
        let writers = self.table()?.writers();
        let below = marker_of(key);
        let mut held = Vec::new();
        for (ino, path, w) in writers {
            let Some(path) = path else { continue };
            if path == key || (dir && path.starts_with(&below)) {
                let mut g = w.lock_owned().await;
                self.commit_writer(ino, &mut g, false).await?;
                held.push((ino, g));
            }
        }
        Ok(held)
    }

    /// Points the writers held during a rename at their new keys (and bases).
    async fn rekey_writers(&self, held: Held) {
        for (ino, mut g) in held {
            let path = self.table().ok().and_then(|t| t.path(ino));
            let Some(path) = path else { continue };
            if g.key == path {
                continue;
            }
            g.key = path;
            match self.store.head(&g.key, None).await {
                Ok(info) => g.base = Some(info),
                // The old version stays readable by its id; keep it as the base.
                Err(e) => tracing::warn!(key = %g.key, error = %e, "renamed file not found"),
            }
        }
    }

    /// Copies every key under `from` to `to`, then deletes the originals: a crash leaves
    /// duplicates, never a loss. Trees of more than [`RENAME_BATCH`] keys are moved in
    /// batches of that many (copies, then deletes, per batch). The keys are listed split by
    /// sub-prefix, [`RENAME_CONCURRENCY`] listings at a time (`tree_list`).
    async fn move_tree(&self, from: &str, to: &str) -> FsResult<()> {
        loop {
            let (batch, more) =
                list_tree(self.store.as_ref(), from, RENAME_CONCURRENCY, RENAME_BATCH).await?;
            self.copy_batch(&batch, from, to).await?;
            // Then deletes.
            let deletes: Vec<FsResult<()>> = futures::stream::iter(batch)
                .map(|o| {
                    let store = self.store.clone();
                    async move {
                        store.delete(&o.key).await?;
                        Ok(())
                    }
                })
                .buffered(RENAME_CONCURRENCY)
                .collect()
                .await;
            for r in deletes {
                r?;
            }
            if !more {
                return Ok(());
            }
            // The listing starts again after the keys just deleted.
        }
    }

    /// Copies `batch` from under `from` to under `to`; when a copy fails, the copies made are
    /// deleted again so the tree stays where it was.
    async fn copy_batch(&self, batch: &[ObjectInfo], from: &str, to: &str) -> FsResult<()> {
        let copies: Vec<FsResult<String>> = futures::stream::iter(batch.iter().cloned())
            .map(|o| {
                let store = self.store.clone();
                let max_key_len = self.max_key_len();
                let dk = format!("{to}{}", o.key.strip_prefix(from).unwrap_or(&o.key));
                async move {
                    if dk.len() > max_key_len {
                        return Err(FsError::NameTooLong(dk));
                    }
                    let opts = CopyOptions {
                        source_version: Some(o.version.clone()),
                        ..Default::default()
                    };
                    store.copy(&o.key, &dk, opts).await?;
                    Ok(dk)
                }
            })
            .buffered(RENAME_CONCURRENCY)
            .collect()
            .await;
        let Some(pos) = copies.iter().position(|r| r.is_err()) else {
            return Ok(());
        };
        let made: Vec<String> = copies
            .iter()
            .filter_map(|r| r.as_ref().ok().cloned())
            .collect();
        for k in made {
            if let Err(e) = self.store.delete(&k).await {
                tracing::warn!(key = %k, error = %e, "could not undo a copy of a failed rename");
            }
        }
        Err(copies
            .into_iter()
            .nth(pos)
            .and_then(|r| r.err())
            .unwrap_or_else(|| FsError::Internal("rename failed".into())))
    }
}
