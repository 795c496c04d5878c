//! The write-back journal on disk: the byte format of an entry (docs/FORMAT.md, "Write-back
//! journal"), the segments entries are appended to (segment.rs), replay, and the directory's
//! lock.
//!
//! An entry is appended to the current segment with one `write(2)` (then `fdatasync` when the
//! write is durable); only then is the write acknowledged. A crash can therefore leave a
//! segment's last record torn, and a power loss can leave an unsynced entry damaged: every
//! entry carries a BLAKE3 checksum, and one that fails it (or a torn tail) is copied to
//! `corrupt/` and reported at replay, never uploaded or read. An uploaded entry is recorded
//! as done beside its segment; a segment goes once all of its entries are done: there is no
//! log to compact.
//!
//! A change the bucket refused for good is recorded in `SEQ.failed` (the keys, when and the
//! bucket's error), so that the next open shows it failed again instead of forgetting why;
//! the entry itself is never rewritten. The entry's end removes that file.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Result, StoreError};
use crate::owner_lock::{LockError, OwnerLock};
use crate::types::Metadata;

use super::segment::{self, Segment, DONE_MAGIC, HEADER_LEN, SEGMENT_BYTES, SEGMENT_MAGIC};

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
    /// The segment entries are appended to, once the first is written.
    current: Mutex<Option<Current>>,
    /// The number of the next segment begun.
    next_segment: AtomicU64,
    /// Held for as long as the journal is open.
    _lock: OwnerLock,
}

impl Drop for JournalDir {
    fn drop(&mut self) {
        // Nothing more is appended: the segment goes once its last entry is done.
        self.seal_current();
    }
}

/// The segment being appended to.
#[derive(Debug)]
struct Current {
    segment: Arc<Segment>,
    file: File,
    len: u64,
    /// Its directory entry is durable.
    dir_synced: bool,
}

/// An entry that failed its check at replay: where its bytes were set aside, and why.
pub type SetAside = (PathBuf, StoreError);

/// One entry found at replay; `decoded.body_offset` is where its body starts in the
/// segment's file.
#[derive(Debug)]
pub struct Found {
    pub segment: Arc<Segment>,
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
            current: Mutex::new(None),
            next_segment: AtomicU64::new(1),
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

    fn segment_path(&self, n: u64) -> PathBuf {
        self.dir.join(format!("{n:016x}.log"))
    }

    /// Begins the next segment (its header written).
    fn begin_segment(&self) -> Result<Current> {
        let n = self.next_segment.fetch_add(1, Ordering::SeqCst);
        let path = self.segment_path(n);
        let mut file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(|e| io(&path, "cannot create", e))?;
        let h = segment::header(SEGMENT_MAGIC, n);
        if let Err(e) = file.write_all(&h) {
            let _ = fs::remove_file(&path);
            return Err(io(&path, "cannot write", e));
        }
        Ok(Current {
            segment: Arc::new(Segment::new(path, n, 0)),
            file,
            len: HEADER_LEN as u64,
            dir_synced: false,
        })
    }

    /// Appends an entry to the current segment (one `write`; a new segment first when it is
    /// full); with `durable`, fdatasyncs it (and the directory, once per segment). Returns the
    /// segment and where the body starts in its file.
    pub fn write(&self, h: &Header, body: &[u8], durable: bool) -> Result<(Arc<Segment>, u64)> {
        let bytes = encode(h, body);
        let mut record = Vec::with_capacity(8 + bytes.len());
        record.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        record.extend_from_slice(&bytes);
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if cur.as_ref().is_some_and(|c| c.len >= SEGMENT_BYTES) {
            if let Some(old) = cur.take() {
                old.segment.seal();
            }
        }
        if cur.is_none() {
            *cur = Some(self.begin_segment()?);
        }
        let Some(c) = cur.as_mut() else {
            return Err(io(&self.dir, "no segment", std::io::Error::other("none")));
        };
        let path = c.segment.path().to_path_buf();
        if let Err(e) = c.file.write_all(&record) {
            // Part of the record may be there: nothing more is appended after it (replay
            // sets such a tail aside).
            if let Some(old) = cur.take() {
                old.segment.seal();
            }
            return Err(io(&path, "cannot write", e));
        }
        let body_offset = c.len + 8 + (bytes.len() - SUM_LEN - body.len()) as u64;
        c.len += record.len() as u64;
        c.segment.added();
        if durable {
            c.file
                .sync_data()
                .map_err(|e| io(&path, "cannot sync", e))?;
            if !c.dir_synced {
                self.sync_dir()?;
                c.dir_synced = true;
            }
        }
        Ok((c.segment.clone(), body_offset))
    }

    /// Seals the segment being appended to (the next entry begins a new one).
    pub fn seal_current(&self) {
        let taken = self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(c) = taken {
            c.segment.seal();
        }
    }

    /// Fsyncs the directory (the files made and unlinked in it).
    pub fn sync_dir(&self) -> Result<()> {
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io(&self.dir, "cannot sync", e))
    }

    /// Fsyncs every segment, done file and single-entry file, and the directory (`sync` of
    /// the store).
    pub fn sync_all(&self) -> Result<()> {
        {
            let cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(c) = cur.as_ref() {
                c.file
                    .sync_data()
                    .map_err(|e| io(c.segment.path(), "cannot sync", e))?;
                c.segment.sync_done()?;
            }
        }
        for p in self.files_with(&["log", "done", "wb"])? {
            if let Ok(f) = File::open(&p) {
                f.sync_all().map_err(|e| io(&p, "cannot sync", e))?;
            }
        }
        self.sync_dir()
    }

    /// The files of the directory with one of these extensions, sorted by name.
    fn files_with(&self, exts: &[&str]) -> Result<Vec<PathBuf>> {
        let rd = fs::read_dir(&self.dir).map_err(|e| io(&self.dir, "cannot read", e))?;
        let mut out: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .and_then(|x| x.to_str())
                    .is_some_and(|x| exts.contains(&x))
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// Sets `bytes` aside in `corrupt/NAME` and returns where, with `why`.
    fn set_aside(&self, name: &str, bytes: &[u8], why: StoreError) -> SetAside {
        let corrupt = self.dir.join("corrupt");
        let _ = fs::create_dir_all(&corrupt);
        let to = corrupt.join(name);
        if let Err(e) = fs::write(&to, bytes) {
            tracing::warn!("write-back journal: cannot set aside {}: {e}", to.display());
        }
        (to, why)
    }

    /// Every entry not done, by sequence number, from the segments and from single-entry
    /// files (the format before segments). `.tmp` leftovers (never acknowledged) are
    /// removed; an entry that fails its check, and a segment's torn tail, are copied to
    /// `corrupt/` and returned apart. The segments found are sealed (new entries go to a new
    /// one); those with nothing left to upload are removed.
    pub fn replay(&self) -> Result<(Vec<Found>, Vec<SetAside>)> {
        for p in self.files_with(&["tmp"])? {
            let _ = fs::remove_file(&p);
        }
        let mut found = Vec::new();
        let mut bad_entries = Vec::new();
        for path in self.files_with(&["log"])? {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            let bytes = fs::read(&path).map_err(|e| io(&path, "cannot read", e))?;
            let n = match segment::read_header(SEGMENT_MAGIC, &bytes) {
                Ok(n) => n,
                Err(why) => {
                    bad_entries.push(self.set_aside(&name, &bytes, bad(why)));
                    let _ = fs::remove_file(&path);
                    continue;
                }
            };
            self.next_segment.fetch_max(n + 1, Ordering::SeqCst);
            let done = done_of(&path, n);
            let seg = Arc::new(Segment::new(path.clone(), n, 0));
            let (records, torn) = records_of(&bytes);
            for (at, body) in records {
                match decode(&bytes[body.clone()]) {
                    Ok(mut d) if !done.contains(&d.header.seq) => {
                        d.body_offset += body.start as u64;
                        seg.added();
                        found.push(Found {
                            segment: seg.clone(),
                            decoded: d,
                        });
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let name = format!("{name}.{at}");
                        bad_entries.push(self.set_aside(&name, &bytes[body], e));
                    }
                }
            }
            if let Some(at) = torn {
                let why = bad(format!("torn at byte {at} of segment {name}"));
                bad_entries.push(self.set_aside(&format!("{name}.{at}"), &bytes[at..], why));
            }
            seg.seal();
        }
        // Entries of the format before segments, one file each.
        for path in self.files_with(&["wb"])? {
            let bytes = fs::read(&path).map_err(|e| io(&path, "cannot read", e))?;
            match decode(&bytes) {
                Ok(decoded) => found.push(Found {
                    segment: Arc::new(Segment::single(path)),
                    decoded,
                }),
                Err(e) => {
                    let name = path.file_name().unwrap_or_default().to_string_lossy();
                    bad_entries.push(self.set_aside(&name, &bytes, e));
                    let _ = fs::remove_file(&path);
                }
            }
        }
        found.sort_by_key(|f| f.decoded.header.seq);
        Ok((found, bad_entries))
    }
}

/// The records of a segment's bytes (after its header): where each starts, and the range of
/// its entry's bytes; then where a torn tail starts, if there is one.
fn records_of(bytes: &[u8]) -> (Vec<(usize, std::ops::Range<usize>)>, Option<usize>) {
    let mut out = Vec::new();
    let mut at = HEADER_LEN;
    while at < bytes.len() {
        let len = bytes
            .get(at..at + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_le_bytes);
        let end = len
            .and_then(|l| usize::try_from(l).ok())
            .and_then(|l| (at + 8).checked_add(l))
            .filter(|e| *e <= bytes.len());
        let Some(end) = end else {
            return (out, Some(at));
        };
        out.push((at, at + 8..end));
        at = end;
    }
    (out, None)
}

/// The entries of segment `n` (at `path`) recorded done.
fn done_of(path: &Path, n: u64) -> std::collections::HashSet<u64> {
    match fs::read(path.with_extension("done")) {
        Ok(b) if segment::read_header(DONE_MAGIC, &b) == Ok(n) => {
            segment::done_seqs(&b).into_iter().collect()
        }
        _ => Default::default(),
    }
}

/// How many entries the journal directory `dir` holds that are not done (what the next open
/// would replay), read without taking its lock: for `status` of an unmounted journal and
/// for tests.
pub fn entries_on_disk(dir: &Path) -> Result<usize> {
    let rd = fs::read_dir(dir).map_err(|e| io(dir, "cannot read", e))?;
    let mut n = 0;
    for path in rd.filter_map(|e| e.ok().map(|e| e.path())) {
        match path.extension().and_then(|x| x.to_str()) {
            Some("wb") => n += 1,
            Some("log") => {
                let bytes = fs::read(&path).map_err(|e| io(&path, "cannot read", e))?;
                let Ok(number) = segment::read_header(SEGMENT_MAGIC, &bytes) else {
                    continue;
                };
                let done = done_of(&path, number);
                let (records, _) = records_of(&bytes);
                n += records
                    .into_iter()
                    .filter_map(|(_, body)| decode(&bytes[body]).ok())
                    .filter(|d| !done.contains(&d.header.seq))
                    .count();
            }
            _ => {}
        }
    }
    Ok(n)
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

    /// Every failure file, by sequence number. One that fails its check is removed and
    /// reported (its changes are then tried again, which loses nothing); the caller removes
    /// those whose entry is no longer pending (uploaded or superseded, and a crash came
    /// before the failure file went).
    pub fn failures(&self) -> Result<(Vec<Failures>, Vec<SetAside>)> {
        let mut found = Vec::new();
        let mut damaged = Vec::new();
        for path in self.files_with(&["failed"])? {
            let decoded = fs::read(&path)
                .map_err(|e| io(&path, "cannot read", e))
                .and_then(|b| decode_failed(&b));
            match decoded {
                Ok((seq, r)) if path == failed_path_of(&self.entry_path(seq)) => {
                    found.push((seq, r))
                }
                Ok(_) => remove_file(&path),
                Err(e) => {
                    remove_file(&path);
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
    remove_file(&failed_path_of(&dir.join(format!("{seq:016x}.wb"))));
}

/// Removes a file of the journal, if it is there.
fn remove_file(p: &Path) {
    if let Err(e) = fs::remove_file(p) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!("write-back journal: cannot remove {}: {e}", p.display());
        }
    }
}

#[cfg(test)]
#[path = "journal_tests.rs"]
mod tests;
