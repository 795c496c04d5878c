//! The write-back journal on disk: one file per entry in a directory, the byte format of an
//! entry (docs/FORMAT.md, "Write-back journal"), and the directory's lock.
//!
//! An entry is written to `SEQ.tmp`, then renamed to `SEQ.wb` (with `fsync` of the file and
//! the directory first when the write is durable); only then is the write acknowledged. A
//! crash can therefore leave a torn `.tmp` (never acknowledged: dropped at replay) but never a
//! torn `.wb`; a `.wb` whose checksum fails (a power loss before an unsynced entry reached the
//! disk, or a damaged disk) is moved to `corrupt/` and reported, never uploaded or read.
//! Removing an uploaded entry is an unlink: there is no log to compact.
//!
//! A change the bucket refused for good is recorded beside its entry in `SEQ.failed` (the
//! keys, when and the bucket's error), so that the next open shows it failed again instead of
//! forgetting why; the entry itself is never rewritten. Removing the entry removes that file.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Result, StoreError};
use crate::owner_lock::{LockError, OwnerLock};
use crate::types::Metadata;

/// The first bytes of every entry.
pub const MAGIC: &[u8; 4] = b"OWBJ";
/// The entry format this code writes (and the only one it reads).
pub const FORMAT: u8 = 1;
/// Length of the trailing checksum (BLAKE3 of every byte before it).
const SUM_LEN: usize = 32;

/// How long an open waits for another mount's lock on the journal (a mount that was just
/// unmounted and is still closing) before it refuses.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// What an entry does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// A new version of `key` with the body.
    Put { key: String, id: String },
    /// A delete marker on `key`.
    Delete { key: String, id: String },
    /// The body becomes a new version of `dst` and `src` gets a delete marker: one entry, so a
    /// crash keeps both halves or neither.
    Rename {
        src: String,
        src_marker: String,
        dst: String,
        id: String,
    },
    /// A rename of a file already in the bucket: the bucket's version `src_version` of `src`
    /// is copied to a new version of `dst` (server-side), then `src` gets a delete marker. No
    /// body: `size` and `etag` describe the source's.
    Move {
        src: String,
        src_version: String,
        src_marker: String,
        dst: String,
        id: String,
        size: u64,
        etag: String,
    },
}

impl Op {
    fn code(&self) -> u8 {
        match self {
            Op::Put { .. } => 1,
            Op::Delete { .. } => 2,
            Op::Rename { .. } => 3,
            Op::Move { .. } => 4,
        }
    }
}

/// The etag of a version whose body is in the journal.
pub fn etag_of(body: &[u8]) -> String {
    let h = blake3::hash(body).to_hex();
    format!("wb{}", &h.as_str()[..30])
}

/// One entry's header (everything but the body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub seq: u64,
    /// When the write was acknowledged (its version's time until it is uploaded).
    pub created: SystemTime,
    pub op: Op,
    pub metadata: Metadata,
}

/// A decoded entry: its header, where its body starts in the file, the body's length and
/// etag ([`etag_of`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub header: Header,
    pub body_offset: u64,
    pub body_len: u64,
    pub etag: String,
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// The bytes of an entry before its body (the body's length is the last field).
pub fn encode_head(h: &Header, body_len: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(MAGIC);
    out.push(FORMAT);
    out.push(h.op.code());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&h.seq.to_le_bytes());
    let ns = h
        .created
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    out.extend_from_slice(&ns.to_le_bytes());
    match &h.op {
        Op::Put { key, id } | Op::Delete { key, id } => {
            put_str(&mut out, key);
            put_str(&mut out, id);
        }
        Op::Rename {
            src,
            src_marker,
            dst,
            id,
        } => {
            put_str(&mut out, dst);
            put_str(&mut out, id);
            put_str(&mut out, src);
            put_str(&mut out, src_marker);
        }
        Op::Move {
            src,
            src_version,
            src_marker,
            dst,
            id,
            size,
            etag,
        } => {
            put_str(&mut out, dst);
            put_str(&mut out, id);
            put_str(&mut out, src);
            put_str(&mut out, src_marker);
            put_str(&mut out, src_version);
            out.extend_from_slice(&size.to_le_bytes());
            put_str(&mut out, etag);
        }
    }
    out.extend_from_slice(&(h.metadata.len() as u32).to_le_bytes());
    for (k, v) in &h.metadata {
        put_str(&mut out, k);
        put_str(&mut out, v);
    }
    out.extend_from_slice(&body_len.to_le_bytes());
    out
}

/// A whole entry: head, body, checksum.
pub fn encode(h: &Header, body: &[u8]) -> Vec<u8> {
    let mut out = encode_head(h, body.len() as u64);
    out.extend_from_slice(body);
    let sum = blake3::hash(&out);
    out.extend_from_slice(sum.as_bytes());
    out
}

/// Why an entry's bytes were refused.
fn bad(why: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        what: format!("write-back journal entry: {}", why.into()),
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.b.len());
        let end = end.ok_or_else(|| bad("truncated"))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(a))
    }
    fn u64(&mut self) -> Result<u64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    fn string(&mut self) -> Result<String> {
        let n = self.u32()? as usize;
        let s = self.take(n)?;
        String::from_utf8(s.to_vec()).map_err(|_| bad("a string is not UTF-8"))
    }
}

/// Decodes a whole entry, checking its checksum first (a torn or damaged entry is `Corrupt`).
pub fn decode(bytes: &[u8]) -> Result<Decoded> {
    if bytes.len() < 5 + SUM_LEN || &bytes[..4] != MAGIC {
        return Err(bad("not an entry (magic)"));
    }
    if bytes[4] != FORMAT {
        return Err(bad(format!("unknown format {}", bytes[4])));
    }
    let (data, sum) = bytes.split_at(bytes.len() - SUM_LEN);
    if blake3::hash(data).as_bytes() != sum {
        return Err(bad("checksum mismatch (torn or damaged)"));
    }
    let mut c = Cursor { b: data, at: 5 };
    let code = c.take(3)?[0];
    let seq = c.u64()?;
    let created = UNIX_EPOCH + Duration::from_nanos(c.u64()?);
    let (key, id) = (c.string()?, c.string()?);
    let op = match code {
        1 => Op::Put { key, id },
        2 => Op::Delete { key, id },
        3 => Op::Rename {
            dst: key,
            id,
            src: c.string()?,
            src_marker: c.string()?,
        },
        4 => Op::Move {
            dst: key,
            id,
            src: c.string()?,
            src_marker: c.string()?,
            src_version: c.string()?,
            size: c.u64()?,
            etag: c.string()?,
        },
        n => return Err(bad(format!("unknown operation {n}"))),
    };
    let mut metadata = Metadata::new();
    for _ in 0..c.u32()? {
        let k = c.string()?;
        metadata.insert(k, c.string()?);
    }
    let body_len = c.u64()?;
    let body_offset = c.at as u64;
    if body_offset.checked_add(body_len) != Some(data.len() as u64) {
        return Err(bad("body length does not match the entry"));
    }
    Ok(Decoded {
        header: Header {
            seq,
            created,
            op,
            metadata,
        },
        body_offset,
        body_len,
        etag: etag_of(&data[body_offset as usize..]),
    })
}

fn io(path: &Path, what: &str, e: std::io::Error) -> StoreError {
    StoreError::io(format!("write-back journal: {what} {}", path.display()), e)
}

/// The journal directory, locked for this process.
#[derive(Debug)]
pub struct JournalDir {
    dir: PathBuf,
    /// Held for as long as the journal is open.
    _lock: OwnerLock,
}

/// An entry that failed its check at replay: where it was moved, and why.
pub type SetAside = (PathBuf, StoreError);

/// One entry found at replay.
#[derive(Debug)]
pub struct Found {
    pub path: PathBuf,
    pub decoded: Decoded,
}

impl JournalDir {
    /// Opens (creating) `dir` and locks it: a second mount on the same journal is refused.
    pub fn open(dir: &Path) -> Result<JournalDir> {
        fs::create_dir_all(dir).map_err(|e| io(dir, "cannot create", e))?;
        let lock_path = dir.join("lock");
        // A mount just unmounted may still be finishing its uploads: wait for it a little.
        let lock = OwnerLock::acquire(&lock_path, LOCK_WAIT).map_err(|e| match e {
            LockError::Held { .. } => StoreError::InvalidArgument(format!(
                "the write-back journal {} is in use by another mount{}",
                dir.display(),
                e.holder()
            )),
            LockError::Io { path, source } => io(&path, "cannot lock", source),
        })?;
        Ok(JournalDir {
            dir: dir.to_path_buf(),
            _lock: lock,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn entry_path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:016x}.wb"))
    }

    /// Writes an entry and renames it into place; fsyncs file and directory when `durable`.
    /// Returns the entry's path and where its body starts.
    pub fn write(&self, h: &Header, body: &[u8], durable: bool) -> Result<(PathBuf, u64)> {
        let bytes = encode(h, body);
        let body_offset = (bytes.len() - SUM_LEN - body.len()) as u64;
        let tmp = self.dir.join(format!("{:016x}.tmp", h.seq));
        let path = self.entry_path(h.seq);
        let mut f = File::create(&tmp).map_err(|e| io(&tmp, "cannot create", e))?;
        f.write_all(&bytes)
            .map_err(|e| io(&tmp, "cannot write", e))?;
        if durable {
            f.sync_all().map_err(|e| io(&tmp, "cannot sync", e))?;
        }
        drop(f);
        fs::rename(&tmp, &path).map_err(|e| io(&path, "cannot rename into", e))?;
        if durable {
            self.sync_dir()?;
        }
        Ok((path, body_offset))
    }

    /// Fsyncs the directory (the renames and unlinks in it).
    pub fn sync_dir(&self) -> Result<()> {
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io(&self.dir, "cannot sync", e))
    }

    /// Fsyncs every entry and the directory (`sync` of the store).
    pub fn sync_all(&self) -> Result<()> {
        for p in self.entry_files()? {
            if let Ok(f) = File::open(&p) {
                f.sync_all().map_err(|e| io(&p, "cannot sync", e))?;
            }
        }
        self.sync_dir()
    }

    fn entry_files(&self) -> Result<Vec<PathBuf>> {
        let rd = fs::read_dir(&self.dir).map_err(|e| io(&self.dir, "cannot read", e))?;
        let mut out: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "wb"))
            .collect();
        out.sort();
        Ok(out)
    }

    /// Every entry, by sequence number: `.tmp` leftovers (never acknowledged) are removed,
    /// entries that fail their checksum are moved to `corrupt/` and returned apart.
    pub fn replay(&self) -> Result<(Vec<Found>, Vec<SetAside>)> {
        let rd = fs::read_dir(&self.dir).map_err(|e| io(&self.dir, "cannot read", e))?;
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "tmp") {
                let _ = fs::remove_file(&p);
            }
        }
        let mut found = Vec::new();
        let mut bad_entries = Vec::new();
        for path in self.entry_files()? {
            let bytes = fs::read(&path).map_err(|e| io(&path, "cannot read", e))?;
            match decode(&bytes) {
                Ok(decoded) => found.push(Found { path, decoded }),
                Err(e) => {
                    let corrupt = self.dir.join("corrupt");
                    let _ = fs::create_dir_all(&corrupt);
                    let to = corrupt.join(path.file_name().unwrap_or_default());
                    let _ = fs::rename(&path, &to);
                    bad_entries.push((to, e));
                }
            }
        }
        found.sort_by_key(|f| f.decoded.header.seq);
        Ok((found, bad_entries))
    }
}

/// The first bytes of a failure file (`SEQ.failed`).
pub const FAIL_MAGIC: &[u8; 4] = b"OWBF";
/// The failure file format this code writes (and the only one it reads).
pub const FAIL_FORMAT: u8 = 1;

/// The refusals recorded for one journal entry, by its sequence number.
pub type Failures = (u64, Vec<Refusal>);

/// One change of an entry that the bucket refused for good, as a failure file keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub key: String,
    pub since: SystemTime,
    /// The bucket's error, with its S3 code.
    pub error: String,
}

fn ns_of(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// The bytes of the failure file of entry `seq`.
pub fn encode_failed(seq: u64, refusals: &[Refusal]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(FAIL_MAGIC);
    out.push(FAIL_FORMAT);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&(refusals.len() as u32).to_le_bytes());
    for r in refusals {
        put_str(&mut out, &r.key);
        out.extend_from_slice(&ns_of(r.since).to_le_bytes());
        put_str(&mut out, &r.error);
    }
    let sum = blake3::hash(&out);
    out.extend_from_slice(sum.as_bytes());
    out
}

/// Decodes a failure file: the entry's sequence number and its refused changes.
pub fn decode_failed(bytes: &[u8]) -> Result<(u64, Vec<Refusal>)> {
    if bytes.len() < 8 + SUM_LEN || &bytes[..4] != FAIL_MAGIC {
        return Err(bad("failure file: not one (magic)"));
    }
    if bytes[4] != FAIL_FORMAT {
        return Err(bad(format!("failure file: unknown format {}", bytes[4])));
    }
    let (data, sum) = bytes.split_at(bytes.len() - SUM_LEN);
    if blake3::hash(data).as_bytes() != sum {
        return Err(bad("failure file: checksum mismatch"));
    }
    let mut c = Cursor { b: data, at: 8 };
    let seq = c.u64()?;
    let n = c.u32()?;
    let mut out = Vec::new();
    for _ in 0..n {
        let key = c.string()?;
        let since = UNIX_EPOCH + Duration::from_nanos(c.u64()?);
        out.push(Refusal {
            key,
            since,
            error: c.string()?,
        });
    }
    if c.at != data.len() {
        return Err(bad("failure file: trailing bytes"));
    }
    Ok((seq, out))
}

/// The failure file beside the entry file `entry`.
fn failed_path_of(entry: &Path) -> PathBuf {
    entry.with_extension("failed")
}

impl JournalDir {
    /// Records that the bucket refused these changes of entry `seq` for good (replacing what
    /// was recorded of it): written to a temporary name, fsynced, renamed into place.
    pub fn write_failed(&self, seq: u64, refusals: &[Refusal]) -> Result<()> {
        let path = failed_path_of(&self.entry_path(seq));
        let tmp = self.dir.join(format!("{seq:016x}.failed.tmp"));
        let mut f = File::create(&tmp).map_err(|e| io(&tmp, "cannot create", e))?;
        f.write_all(&encode_failed(seq, refusals))
            .and_then(|()| f.sync_all())
            .map_err(|e| io(&tmp, "cannot write", e))?;
        drop(f);
        fs::rename(&tmp, &path).map_err(|e| io(&path, "cannot rename into", e))?;
        self.sync_dir()
    }

    /// Forgets every recorded refusal (their changes are tried again); how many files.
    pub fn clear_failed(&self) -> Result<usize> {
        let rd = fs::read_dir(&self.dir).map_err(|e| io(&self.dir, "cannot read", e))?;
        let mut n = 0;
        for p in rd.filter_map(|e| e.ok().map(|e| e.path())) {
            if p.extension().is_some_and(|x| x == "failed") {
                fs::remove_file(&p).map_err(|e| io(&p, "cannot remove", e))?;
                n += 1;
            }
        }
        if n > 0 {
            self.sync_dir()?;
        }
        Ok(n)
    }

    /// Every failure file whose entry is still there, by sequence number. A failure file
    /// without its entry (the entry was uploaded or superseded, and a crash came before the
    /// failure file went) is removed; one that fails its check is removed and reported (its
    /// changes are then tried again, which loses nothing).
    pub fn failures(&self) -> Result<(Vec<Failures>, Vec<SetAside>)> {
        let rd = fs::read_dir(&self.dir).map_err(|e| io(&self.dir, "cannot read", e))?;
        let mut paths: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "failed"))
            .collect();
        paths.sort();
        let mut found = Vec::new();
        let mut damaged = Vec::new();
        for path in paths {
            let entry = path.with_extension("wb");
            let decoded = fs::read(&path)
                .map_err(|e| io(&path, "cannot read", e))
                .and_then(|b| decode_failed(&b));
            match decoded {
                Ok((seq, r)) if entry.exists() && entry == self.entry_path(seq) => {
                    found.push((seq, r))
                }
                Ok(_) => remove(&path),
                Err(e) => {
                    remove(&path);
                    damaged.push((path, e));
                }
            }
        }
        Ok((found, damaged))
    }
}

/// Reads `range` (relative to the body) of the body of the entry at `path`.
pub fn read_body(path: &Path, body_offset: u64, range: std::ops::Range<u64>) -> Result<Vec<u8>> {
    let mut f = File::open(path).map_err(|e| io(path, "cannot open", e))?;
    f.seek(SeekFrom::Start(body_offset + range.start))
        .map_err(|e| io(path, "cannot seek", e))?;
    let mut buf = vec![0u8; (range.end - range.start) as usize];
    f.read_exact(&mut buf)
        .map_err(|e| io(path, "cannot read", e))?;
    Ok(buf)
}

/// Removes the failure file of entry `seq` in the journal directory `dir`.
pub fn remove_failed(dir: &Path, seq: u64) {
    remove(&failed_path_of(&dir.join(format!("{seq:016x}.wb"))));
}

/// Removes an uploaded entry's file, and its failure file if it has one.
pub fn remove(path: &Path) {
    for p in [path.to_path_buf(), failed_path_of(path)] {
        if let Err(e) = fs::remove_file(&p) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!("write-back journal: cannot remove {}: {e}", p.display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(op: Op) -> Header {
        let mut metadata = Metadata::new();
        metadata.insert("x-amz-meta-mode".into(), "33188".into());
        Header {
            seq: 7,
            created: UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789),
            op,
            metadata,
        }
    }

    #[test]
    fn entries_round_trip() {
        let ops = [
            Op::Put {
                key: "a/b".into(),
                id: "p1".into(),
            },
            Op::Delete {
                key: "a/b".into(),
                id: "p2".into(),
            },
            Op::Rename {
                src: "t.tmp".into(),
                src_marker: "p3".into(),
                dst: "t".into(),
                id: "p4".into(),
            },
            Op::Move {
                src: "u".into(),
                src_version: "b7".into(),
                src_marker: "p5".into(),
                dst: "v".into(),
                id: "p6".into(),
                size: 1 << 40,
                etag: "\"abc\"".into(),
            },
        ];
        for op in ops {
            let h = header(op);
            let bytes = encode(&h, b"hello");
            let d = decode(&bytes).unwrap();
            assert_eq!(d.header, h);
            assert_eq!(d.body_len, 5);
            let o = d.body_offset as usize;
            assert_eq!(&bytes[o..o + 5], b"hello");
        }
    }

    #[test]
    fn torn_and_damaged_entries_are_refused() {
        let h = header(Op::Put {
            key: "k".into(),
            id: "p".into(),
        });
        let bytes = encode(&h, &[9u8; 100]);
        for cut in [0, 3, 10, bytes.len() / 2, bytes.len() - 1] {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        flipped[40] ^= 1;
        assert!(decode(&flipped).is_err());
        let mut other_format = bytes;
        other_format[4] = 2;
        assert!(decode(&other_format).is_err());
    }

    #[test]
    fn the_directory_is_locked_and_replay_drops_tmp_and_quarantines_damage() {
        let t = tempfile::tempdir().unwrap();
        let j = JournalDir::open(t.path()).unwrap();
        assert!(JournalDir::open(t.path()).is_err(), "second open must fail");
        let mut h = header(Op::Put {
            key: "k".into(),
            id: "p".into(),
        });
        j.write(&h, b"one", false).unwrap();
        h.seq = 8;
        let (p8, _) = j.write(&h, b"two", true).unwrap();
        // A torn, never acknowledged entry, and a damaged acknowledged one.
        fs::write(t.path().join("0000000000000009.tmp"), b"OWBJ\x01torn").unwrap();
        let mut damaged = fs::read(&p8).unwrap();
        damaged[30] ^= 0xff;
        fs::write(&p8, damaged).unwrap();
        let (found, bad_entries) = j.replay().unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].decoded.header.seq, 7);
        assert_eq!(bad_entries.len(), 1);
        assert!(bad_entries[0].0.starts_with(t.path().join("corrupt")));
        assert!(!t.path().join("0000000000000009.tmp").exists());
        let f = &found[0];
        assert_eq!(
            read_body(&f.path, f.decoded.body_offset, 1..3).unwrap(),
            b"ne"
        );
    }

    #[test]
    fn refusals_are_kept_beside_their_entry_and_go_with_it() {
        let t = tempfile::tempdir().unwrap();
        let j = JournalDir::open(t.path()).unwrap();
        let h = header(Op::Put {
            key: "k".into(),
            id: "p".into(),
        });
        let (entry, _) = j.write(&h, b"body", false).unwrap();
        let r = Refusal {
            key: "k".into(),
            since: UNIX_EPOCH + Duration::from_nanos(1_700_000_000_000_000_001),
            error: "AccessDenied: no (HTTP 403)".into(),
        };
        j.write_failed(7, std::slice::from_ref(&r)).unwrap();
        // An orphan (its entry is gone) and a damaged one are removed at open.
        j.write_failed(9, std::slice::from_ref(&r)).unwrap();
        let mut damaged = encode_failed(10, std::slice::from_ref(&r));
        damaged[20] ^= 1;
        fs::write(t.path().join("000000000000000a.failed"), damaged).unwrap();
        fs::write(t.path().join("000000000000000a.wb"), b"x").unwrap();
        let (found, bad_files) = j.failures().unwrap();
        assert_eq!(found, vec![(7, vec![r.clone()])]);
        assert_eq!(bad_files.len(), 1);
        assert!(!t.path().join("0000000000000009.failed").exists());
        assert!(!t.path().join("000000000000000a.failed").exists());
        // Removing the entry removes its failure file; clearing removes them all.
        j.write_failed(8, std::slice::from_ref(&r)).unwrap();
        remove(&entry);
        assert!(!t.path().join("0000000000000007.failed").exists());
        assert_eq!(j.clear_failed().unwrap(), 1);
        let cut = encode_failed(7, &[r]);
        assert!(decode_failed(&cut[..cut.len() - 1]).is_err());
    }
}
