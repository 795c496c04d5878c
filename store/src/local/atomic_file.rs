//! Replacing a small file atomically: write a temporary file beside it, fsync it, rename it
//! over the old one, fsync the directory. The store marker, the disk markers, shard files and
//! the daemons' status files are all written this way, so a crash leaves the old file or the
//! new one, never a torn one.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::error::{Result, StoreError};
use crate::local::volume::sync_dir;

/// `<path>.tmp`: where a new version of `path` is written before it is renamed over it.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Writes `path` atomically through `fill`, which writes the new contents into the (empty,
/// writable) temporary file. With `durable`, the file is fsynced before the rename and the
/// directory after it; without, a crash may lose the new contents but never tear them.
pub fn replace_with(
    path: &Path,
    durable: bool,
    fill: impl FnOnce(&File) -> io::Result<()>,
) -> Result<()> {
    let tmp = tmp_path(path);
    let ctx = |e| StoreError::io(format!("writing {}", tmp.display()), e);
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(ctx)?;
    fill(&file).map_err(ctx)?;
    if durable {
        file.sync_all().map_err(ctx)?;
    }
    drop(file);
    std::fs::rename(&tmp, path)
        .map_err(|e| StoreError::io(format!("renaming {}", tmp.display()), e))?;
    match path.parent() {
        Some(dir) if durable && !dir.as_os_str().is_empty() => sync_dir(dir),
        _ => Ok(()),
    }
}

/// Replaces `path` by `bytes` atomically (see [`replace_with`]).
pub fn replace(path: &Path, bytes: &[u8], durable: bool) -> Result<()> {
    replace_with(path, durable, |mut f| f.write_all(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_files_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("marker.json");
        replace(&p, b"one", true).unwrap();
        replace(&p, b"two, longer", false).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two, longer");
        assert_eq!(tmp_path(&p), dir.path().join("marker.json.tmp"));
        assert!(!tmp_path(&p).exists());
    }
}
