//! The write-back journal's segments: entries appended to a few large files instead of one
//! file each, and the records of which of them are done.
//!
//! A file per entry cost an inode allocation and a free per change, and ext4 makes an
//! allocation dear once many inodes were freed recently (it scans past them): with thousands
//! of small changes a second that was over half the mount's CPU time. A segment (`N.log`) is
//! appended to until it holds [`SEGMENT_BYTES`], then sealed and the next one begun. An entry
//! that is uploaded (or superseded) is recorded as done in the segment's done file (`N.done`,
//! 16 bytes appended); a sealed segment whose every entry is done is unlinked with its done
//! file. Byte formats: docs/FORMAT.md, "Write-back journal".
//!
//! A journal of the format before segments (one `SEQ.wb` file per entry) is replayed as it
//! is: each such file is a [`Segment`] of one entry, unlinked when the entry is done.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::error::{Result, StoreError};

/// A segment is sealed once it holds this many bytes (an entry is never split).
pub const SEGMENT_BYTES: u64 = 32 << 20;
/// The first bytes of a segment file.
pub const SEGMENT_MAGIC: &[u8; 4] = b"OWBS";
/// The first bytes of a done file.
pub const DONE_MAGIC: &[u8; 4] = b"OWBD";
/// The segment and done file format this code writes (and the only one it reads).
pub const SEGMENT_FORMAT: u8 = 1;
/// Bytes of a segment's or done file's header: magic, format, 3 zero bytes, segment number.
pub const HEADER_LEN: usize = 16;
/// Bytes of one done record: the entry's sequence number and a check of it.
pub const DONE_LEN: usize = 16;

fn io(path: &Path, what: &str, e: std::io::Error) -> StoreError {
    StoreError::io(format!("write-back journal: {what} {}", path.display()), e)
}

/// The header of segment or done file number `n`.
pub fn header(magic: &[u8; 4], n: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..4].copy_from_slice(magic);
    h[4] = SEGMENT_FORMAT;
    h[8..].copy_from_slice(&n.to_le_bytes());
    h
}

/// Reads a header: the segment number, or why it is not one of `magic`'s files.
pub fn read_header(magic: &[u8; 4], bytes: &[u8]) -> std::result::Result<u64, String> {
    if bytes.len() < HEADER_LEN || &bytes[..4] != magic {
        return Err("not a journal segment file (magic)".into());
    }
    if bytes[4] != SEGMENT_FORMAT {
        return Err(format!("unknown segment format {}", bytes[4]));
    }
    let mut n = [0u8; 8];
    n.copy_from_slice(&bytes[8..HEADER_LEN]);
    Ok(u64::from_le_bytes(n))
}

/// The done record of entry `seq`: the number, then the first 8 bytes of its BLAKE3 hash (a
/// record torn by a crash, or damaged, is told from a real one).
pub fn done_record(seq: u64) -> [u8; DONE_LEN] {
    let mut r = [0u8; DONE_LEN];
    r[..8].copy_from_slice(&seq.to_le_bytes());
    r[8..].copy_from_slice(&blake3::hash(&seq.to_le_bytes()).as_bytes()[..8]);
    r
}

/// The sequence numbers a done file's records name (after its header); records that fail
/// their check are skipped: their entries are uploaded again, which loses nothing.
pub fn done_seqs(bytes: &[u8]) -> Vec<u64> {
    bytes
        .get(HEADER_LEN..)
        .unwrap_or_default()
        .chunks_exact(DONE_LEN)
        .filter_map(|r| {
            let mut s = [0u8; 8];
            s.copy_from_slice(&r[..8]);
            let seq = u64::from_le_bytes(s);
            (done_record(seq) == r).then_some(seq)
        })
        .collect()
}

/// One segment file of the journal (or a single-entry file of the format before segments),
/// shared by the entries it holds.
#[derive(Debug)]
pub struct Segment {
    path: PathBuf,
    /// `None`: a single-entry file, unlinked when its entry is done.
    number: Option<u64>,
    /// Entries not yet done.
    live: AtomicUsize,
    /// No entry will be appended any more: unlinked once `live` is 0.
    sealed: AtomicBool,
    /// The files are gone (once only).
    removed: AtomicBool,
    /// The done file, opened for appending at the first done entry.
    done: Mutex<Option<File>>,
}

impl Segment {
    /// Segment `number` at `path`, holding `live` entries not done.
    pub fn new(path: PathBuf, number: u64, live: usize) -> Segment {
        Segment {
            path,
            number: Some(number),
            live: AtomicUsize::new(live),
            sealed: AtomicBool::new(false),
            removed: AtomicBool::new(false),
            done: Mutex::new(None),
        }
    }

    /// A file holding one entry (the format before segments), unlinked when it is done.
    pub fn single(path: PathBuf) -> Segment {
        let s = Segment::new(path, 0, 1);
        Segment {
            number: None,
            sealed: AtomicBool::new(true),
            ..s
        }
    }

    /// The file the entries' bytes are in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its done file's path.
    pub fn done_path(&self) -> PathBuf {
        self.path.with_extension("done")
    }

    /// One more entry appended to it.
    pub fn added(&self) {
        self.live.fetch_add(1, Ordering::SeqCst);
    }

    /// Entry `seq` is done (uploaded, or superseded): recorded in the done file, or the files
    /// unlinked if it was the last entry of a sealed segment.
    pub fn entry_done(&self, seq: u64) {
        let last = self.live.fetch_sub(1, Ordering::SeqCst) == 1;
        if last && self.sealed.load(Ordering::SeqCst) {
            self.remove();
            return;
        }
        if self.number.is_none() {
            return;
        }
        if let Err(e) = self.append_done(seq) {
            // The entry is uploaded again at the next open, which loses nothing.
            tracing::warn!("{e}");
        }
    }

    fn append_done(&self, seq: u64) -> Result<()> {
        let mut done = self.done.lock().unwrap_or_else(|p| p.into_inner());
        let path = self.done_path();
        if done.is_none() {
            let mut f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| io(&path, "cannot open", e))?;
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            if len == 0 {
                let h = header(DONE_MAGIC, self.number.unwrap_or(0));
                f.write_all(&h).map_err(|e| io(&path, "cannot write", e))?;
            }
            *done = Some(f);
        }
        if let Some(f) = done.as_mut() {
            f.write_all(&done_record(seq))
                .map_err(|e| io(&path, "cannot write", e))?;
        }
        Ok(())
    }

    /// No more entries go into it; unlinked now if none is live.
    pub fn seal(&self) {
        self.sealed.store(true, Ordering::SeqCst);
        if self.live.load(Ordering::SeqCst) == 0 {
            self.remove();
        }
    }

    /// Fsyncs its done file (`sync` of the store).
    pub fn sync_done(&self) -> Result<()> {
        let done = self.done.lock().unwrap_or_else(|p| p.into_inner());
        match done.as_ref() {
            Some(f) => f
                .sync_data()
                .map_err(|e| io(&self.done_path(), "cannot sync", e)),
            None => Ok(()),
        }
    }

    fn remove(&self) {
        if self.removed.swap(true, Ordering::SeqCst) {
            return;
        }
        *self.done.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let mut paths = vec![self.path.clone()];
        if self.number.is_some() {
            paths.push(self.done_path());
        }
        for p in paths {
            if let Err(e) = fs::remove_file(&p) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!("write-back journal: cannot remove {}: {e}", p.display());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn done_records_check_themselves() {
        let mut bytes = header(DONE_MAGIC, 3).to_vec();
        for s in [5u64, 9, 1 << 40] {
            bytes.extend_from_slice(&done_record(s));
        }
        bytes[HEADER_LEN + DONE_LEN] ^= 1; // damages the record of 9
        bytes.extend_from_slice(&done_record(11)[..7]); // torn
        assert_eq!(done_seqs(&bytes), [5, 1 << 40]);
        assert_eq!(read_header(DONE_MAGIC, &bytes), Ok(3));
        assert!(read_header(SEGMENT_MAGIC, &bytes).is_err());
    }

    #[test]
    fn a_sealed_segment_goes_with_its_last_entry() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("0000000000000001.log");
        fs::write(&p, header(SEGMENT_MAGIC, 1)).unwrap();
        let s = Segment::new(p.clone(), 1, 0);
        s.added();
        s.added();
        s.entry_done(7);
        assert!(p.exists());
        let done = fs::read(s.done_path()).unwrap();
        assert_eq!(done_seqs(&done), [7]);
        s.seal();
        assert!(p.exists(), "one entry is live");
        s.entry_done(8);
        assert!(!p.exists() && !s.done_path().exists());
        // Sealed with nothing live: at once.
        let q = t.path().join("0000000000000002.log");
        fs::write(&q, b"x").unwrap();
        Segment::new(q.clone(), 2, 0).seal();
        assert!(!q.exists());
        // A single-entry file.
        let w = t.path().join("0000000000000003.wb");
        fs::write(&w, b"x").unwrap();
        Segment::single(w.clone()).entry_done(3);
        assert!(!w.exists());
    }
}
