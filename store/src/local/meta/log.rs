//! The metadata write-ahead log: why a commit survives the death of the process.
//!
//! sled 0.34 keeps what it was given in process memory until it is flushed, and a flush costs
//! milliseconds, so committing to sled alone either loses acknowledged changes when the mount
//! process dies or makes every change pay for a flush. The log fixes that: a commit is one
//! record appended to a segment file with `pwrite(2)` (it is then in the kernel and survives a
//! process crash), applied to an in-memory table ([`super::memtable`]), and moved into sled in
//! large batches by the checkpoint after a group sync. Durability against power loss is the
//! group sync's `fdatasync` of the log, shared by every caller waiting for it.
//!
//! The log is not a second database: it holds only what is not yet checkpointed into sled, its
//! records are sled row changes (absolute puts and removes, so replaying a record twice is
//! harmless), and it is emptied by every checkpoint.
//!
//! Recovery ([`recover`]) is a pure function of the segment images: records are read in order
//! until the first that is missing or torn. Records covered by a "synced" record were
//! fsynced with their data and are trusted; later ones may have outlived their data after a
//! power loss, so the store verifies the blobs they introduce and drops the first record that
//! fails together with every later one (DESIGN: "data before metadata, with a log").
//! docs/FORMAT.md gives every byte.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use sled::IVec;

use crate::error::{Result, StoreError};

/// The first 8 bytes of every segment.
pub const MAGIC: &[u8; 8] = b"objfswal";
/// The segment format this build writes and reads.
pub const FORMAT: u32 = 1;
/// Segment header: magic, format (u32 LE), reserved (u32, zero), segment id (u64 LE), the
/// sequence number of its first record (u64 LE), then the first 8 bytes of BLAKE3 of those 32.
pub const HEADER_LEN: u64 = 40;
/// Record frame: body length (u32 LE), then the first 8 bytes of BLAKE3(body).
const FRAME_LEN: usize = 12;
/// The largest body a record may have (a commit is far smaller; a bigger length is a tear).
const MAX_BODY: u32 = 1 << 30;
/// The smallest valid body: sequence number and kind.
const MIN_BODY: u32 = 9;

const KIND_BATCH: u8 = 1;
const KIND_SYNCED: u8 = 2;
const OP_PUT: u8 = 1;
const OP_REMOVE: u8 = 2;

/// One row change: a put (`Some`) or a remove (`None`).
pub type Op = (IVec, Option<IVec>);

/// One commit: row changes applied atomically, and the blobs whose data it introduces (a
/// replay after power loss verifies those before trusting the record).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    pub seq: u64,
    pub ops: Vec<Op>,
    pub fresh_blobs: Vec<u64>,
}

/// A decoded record.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Batch(Batch),
    /// Every record with a sequence number up to `through` was fsynced before this was written.
    Synced {
        seq: u64,
        through: u64,
    },
}

impl Record {
    pub fn seq(&self) -> u64 {
        match self {
            Record::Batch(b) => b.seq,
            Record::Synced { seq, .. } => *seq,
        }
    }
}

fn checksum(body: &[u8]) -> u64 {
    let h = blake3::hash(body);
    let mut first = [0u8; 8];
    first.copy_from_slice(&h.as_bytes()[..8]);
    u64::from_le_bytes(first)
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// Appends the framed encoding of a record to `out`.
pub fn encode(rec: &Record, out: &mut Vec<u8>) {
    match rec {
        Record::Batch(b) => encode_batch(b, out),
        Record::Synced { seq, through } => encode_synced(*seq, *through, out),
    }
}

fn frame(out: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_LEN]);
    body(out);
    let body_len = (out.len() - start - FRAME_LEN) as u32;
    let sum = checksum(&out[start + FRAME_LEN..]);
    out[start..start + 4].copy_from_slice(&body_len.to_le_bytes());
    out[start + 4..start + FRAME_LEN].copy_from_slice(&sum.to_le_bytes());
}

fn encode_batch(b: &Batch, out: &mut Vec<u8>) {
    frame(out, |out| {
        out.extend_from_slice(&b.seq.to_le_bytes());
        out.push(KIND_BATCH);
        out.extend_from_slice(&(b.ops.len() as u32).to_le_bytes());
        for (k, v) in &b.ops {
            match v {
                Some(v) => {
                    out.push(OP_PUT);
                    put_bytes(out, k);
                    put_bytes(out, v);
                }
                None => {
                    out.push(OP_REMOVE);
                    put_bytes(out, k);
                }
            }
        }
        out.extend_from_slice(&(b.fresh_blobs.len() as u32).to_le_bytes());
        for id in &b.fresh_blobs {
            out.extend_from_slice(&id.to_le_bytes());
        }
    })
}

fn encode_synced(seq: u64, through: u64, out: &mut Vec<u8>) {
    frame(out, |out| {
        out.extend_from_slice(&seq.to_le_bytes());
        out.push(KIND_SYNCED);
        out.extend_from_slice(&through.to_le_bytes());
    })
}

/// A cursor over a record body; every read is bounds-checked (a body passed its checksum, but
/// a bug must not become a panic).
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Option<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Some(u64::from_le_bytes(a))
    }
    fn bytes(&mut self) -> Option<IVec> {
        let n = self.u32()? as usize;
        self.take(n).map(IVec::from)
    }
}

fn decode_body(body: &[u8]) -> Option<Record> {
    let mut c = Cursor(body);
    let seq = c.u64()?;
    let rec = match c.u8()? {
        KIND_BATCH => {
            let n = c.u32()? as usize;
            let mut ops = Vec::with_capacity(n.min(body.len()));
            for _ in 0..n {
                let op = c.u8()?;
                let k = c.bytes()?;
                match op {
                    OP_PUT => ops.push((k, Some(c.bytes()?))),
                    OP_REMOVE => ops.push((k, None)),
                    _ => return None,
                }
            }
            let n = c.u32()? as usize;
            let mut fresh_blobs = Vec::with_capacity(n.min(body.len()));
            for _ in 0..n {
                fresh_blobs.push(c.u64()?);
            }
            Record::Batch(Batch {
                seq,
                ops,
                fresh_blobs,
            })
        }
        KIND_SYNCED => Record::Synced {
            seq,
            through: c.u64()?,
        },
        _ => return None,
    };
    c.0.is_empty().then_some(rec)
}

/// The header of segment `id`, whose first record will have sequence number `first_seq`.
pub fn header(id: u64, first_seq: u64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&FORMAT.to_le_bytes());
    h[16..24].copy_from_slice(&id.to_le_bytes());
    h[24..32].copy_from_slice(&first_seq.to_le_bytes());
    let sum = checksum(&h[..32]);
    h[32..40].copy_from_slice(&sum.to_le_bytes());
    h
}

/// The first sequence number of a valid header of segment `id`.
fn parse_header(id: u64, bytes: &[u8]) -> Option<u64> {
    let h = bytes.get(..HEADER_LEN as usize)?;
    let mut first = [0u8; 8];
    first.copy_from_slice(&h[24..32]);
    let first_seq = u64::from_le_bytes(first);
    (h == header(id, first_seq)).then_some(first_seq)
}

/// Where reading a segment stopped before its end.
#[derive(Debug, Clone, PartialEq)]
pub struct Tear {
    pub segment: u64,
    pub offset: u64,
    pub reason: String,
}

/// One segment image read: the first sequence number its header promises (None: no valid
/// header), its records in order, and where (if anywhere) they stop being valid.
pub struct SegmentRead {
    pub first_seq: Option<u64>,
    pub records: Vec<Record>,
    pub tear: Option<Tear>,
}

/// Reads one segment image.
pub fn read_segment(id: u64, bytes: &[u8]) -> SegmentRead {
    let first_seq = parse_header(id, bytes);
    let (records, tear) = match first_seq {
        Some(_) => read_records(id, bytes),
        None => (
            Vec::new(),
            Some(Tear {
                segment: id,
                offset: 0,
                reason: "missing or torn header".into(),
            }),
        ),
    };
    SegmentRead {
        first_seq,
        records,
        tear,
    }
}

fn read_records(id: u64, bytes: &[u8]) -> (Vec<Record>, Option<Tear>) {
    let tear = |offset: usize, reason: &str| Tear {
        segment: id,
        offset: offset as u64,
        reason: reason.to_string(),
    };
    let mut out = Vec::new();
    let mut pos = HEADER_LEN as usize;
    while pos < bytes.len() {
        let Some(frame) = bytes.get(pos..pos + FRAME_LEN) else {
            return (out, Some(tear(pos, "torn frame")));
        };
        let len = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]);
        if !(MIN_BODY..=MAX_BODY).contains(&len) {
            return (out, Some(tear(pos, "bad record length")));
        }
        let mut sum = [0u8; 8];
        sum.copy_from_slice(&frame[4..12]);
        let start = pos + FRAME_LEN;
        let Some(body) = bytes.get(start..start + len as usize) else {
            return (out, Some(tear(pos, "torn record")));
        };
        if checksum(body) != u64::from_le_bytes(sum) {
            return (out, Some(tear(pos, "checksum mismatch")));
        }
        match decode_body(body) {
            Some(r) => out.push(r),
            None => return (out, Some(tear(pos, "malformed record"))),
        }
        pos = start + len as usize;
    }
    (out, None)
}

/// What recovery found in the log.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Batches covered by a synced record: apply them as they are.
    pub trusted: Vec<Batch>,
    /// Later batches: apply each only if the blobs it introduces verify, and stop at the first
    /// that does not.
    pub suspect: Vec<Batch>,
    /// The highest sequence number read.
    pub last_seq: u64,
    /// Where the valid records ended before the end of the log, if they did.
    pub tear: Option<Tear>,
}

/// Reads segments (ascending ids, the first being `first`) until the first missing segment or
/// missing or torn record; everything after it is ignored (a record can only have been fsynced
/// if everything before it was). A tear *before* a synced record's coverage would mean
/// fsynced bytes were lost: that is corruption.
pub fn recover(first: u64, segments: &[(u64, Vec<u8>)]) -> Result<Recovered> {
    let mut records = Vec::new();
    let mut tear = None;
    let mut expected_seq: Option<u64> = None;
    'segments: for (expected_id, (id, bytes)) in (first..).zip(segments) {
        if *id != expected_id {
            tear = Some(Tear {
                segment: expected_id,
                offset: 0,
                reason: "segment missing".into(),
            });
            break;
        }
        let read = read_segment(*id, bytes);
        // A segment must start where the previous one ended: an empty-looking end of a
        // segment may be records a crash lost.
        if let (Some(e), Some(f)) = (expected_seq, read.first_seq) {
            if e != f {
                tear = Some(Tear {
                    segment: *id,
                    offset: 0,
                    reason: format!("segment starts at record {f}, expected {e}"),
                });
                break;
            }
        }
        if read.first_seq.is_some() {
            expected_seq = read.first_seq;
        }
        let t = read.tear;
        for r in read.records {
            // Sequence numbers grow by one; a gap means a segment went missing.
            if let Some(e) = expected_seq {
                if r.seq() != e {
                    tear = Some(Tear {
                        segment: *id,
                        offset: 0,
                        reason: format!(
                            "sequence jumps from {} to {}",
                            e.saturating_sub(1),
                            r.seq()
                        ),
                    });
                    break 'segments;
                }
            }
            expected_seq = Some(r.seq() + 1);
            records.push(r);
        }
        if t.is_some() {
            tear = t;
            break;
        }
    }
    let through = records
        .iter()
        .filter_map(|r| match r {
            Record::Synced { through, .. } => Some(*through),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    let last_seq = records.last().map(Record::seq).unwrap_or(0);
    if through > last_seq {
        return Err(StoreError::Corrupt {
            what: format!(
                "metadata log: records up to {through} were synced but it ends at {last_seq}"
            ),
        });
    }
    let mut out = Recovered {
        last_seq,
        tear,
        ..Default::default()
    };
    for r in records {
        if let Record::Batch(b) = r {
            if b.seq <= through {
                out.trusted.push(b);
            } else {
                out.suspect.push(b);
            }
        }
    }
    Ok(out)
}

/// The batches of `suspect` to keep: each in order while `verify` accepts every blob it
/// introduces; the first that fails and all later ones are dropped (they may depend on it).
pub fn keep_verified(
    suspect: Vec<Batch>,
    mut verify: impl FnMut(&Batch) -> bool,
) -> (Vec<Batch>, usize) {
    let total = suspect.len();
    let mut kept = Vec::with_capacity(total);
    for b in suspect {
        if !verify(&b) {
            break;
        }
        kept.push(b);
    }
    let dropped = total - kept.len();
    (kept, dropped)
}

// ---- files ----

/// A segment file as the writer needs it (a trait so the power-loss model can run the writer
/// over simulated files).
pub trait LogFile: Send + Sync {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    fn sync_data(&self) -> io::Result<()>;
}

/// The directory of segments.
pub trait LogDir: Send + Sync {
    type File: LogFile;
    /// Creates segment `id` (empty; fails if it exists).
    fn create(&self, id: u64) -> io::Result<Self::File>;
    /// Makes created segments' names durable.
    fn sync_dir(&self) -> io::Result<()>;
    fn remove(&self, id: u64) -> io::Result<()>;
}

impl LogFile for File {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(self, buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        File::sync_data(self)
    }
}

/// The segments of a store: `<store>/wal/<id as 16 hex digits>.wal`.
pub struct FsLogDir {
    pub path: PathBuf,
}

impl FsLogDir {
    pub fn segment_path(&self, id: u64) -> PathBuf {
        self.path.join(format!("{id:016x}.wal"))
    }

    /// The ids of the segments present, ascending.
    pub fn list(&self) -> Result<Vec<u64>> {
        let ctx = |e| StoreError::io(format!("listing {}", self.path.display()), e);
        let mut ids = Vec::new();
        let entries = match std::fs::read_dir(&self.path) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ids),
            Err(e) => return Err(ctx(e)),
        };
        for entry in entries {
            let entry = entry.map_err(ctx)?;
            let name = entry.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".wal")) else {
                continue;
            };
            if let Ok(id) = u64::from_str_radix(stem, 16) {
                if stem.len() == 16 {
                    ids.push(id);
                }
            }
        }
        ids.sort_unstable();
        Ok(ids)
    }

    pub fn read(&self, id: u64) -> Result<Vec<u8>> {
        let p = self.segment_path(id);
        std::fs::read(&p).map_err(|e| StoreError::io(format!("reading {}", p.display()), e))
    }
}

impl LogDir for FsLogDir {
    type File = File;
    fn create(&self, id: u64) -> io::Result<File> {
        std::fs::create_dir_all(&self.path)?;
        OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(self.segment_path(id))
    }
    fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.path)?.sync_all()
    }
    fn remove(&self, id: u64) -> io::Result<()> {
        match std::fs::remove_file(self.segment_path(id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

// ---- the writer ----

/// Appends records to the current segment. Not synchronised: its owner (the memtable's lock)
/// orders appends, and [`LogWriter::sync_handles`] lets a sync run without that lock.
pub struct LogWriter<D: LogDir> {
    dir: Arc<D>,
    file: Arc<D::File>,
    id: u64,
    len: u64,
    next_seq: u64,
    /// Segments rotated away whose records a sync has not covered yet.
    unsynced: Vec<Arc<D::File>>,
    /// A segment was created since the directory was last synced.
    dir_dirty: bool,
    buf: Vec<u8>,
}

/// What a sync must flush, taken under the owner's lock and run without it.
pub struct SyncHandles<F> {
    files: Vec<Arc<F>>,
    dir: bool,
    /// The last sequence number the sync covers.
    pub through: u64,
}

fn io_err(what: &str, e: io::Error) -> StoreError {
    StoreError::io(format!("metadata log: {what}"), e)
}

impl<D: LogDir> LogWriter<D> {
    /// Starts segment `id`; the first record gets sequence number `next_seq`.
    pub fn create(dir: Arc<D>, id: u64, next_seq: u64) -> Result<Self> {
        let file = dir
            .create(id)
            .map_err(|e| io_err("creating a segment", e))?;
        file.write_at(&header(id, next_seq), 0)
            .map_err(|e| io_err("writing a segment header", e))?;
        Ok(LogWriter {
            dir,
            file: Arc::new(file),
            id,
            len: HEADER_LEN,
            next_seq,
            unsynced: Vec::new(),
            dir_dirty: true,
            buf: Vec::with_capacity(4096),
        })
    }

    /// The sequence number of the last record appended (0 before any).
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// Appends one batch, giving it the next sequence number. When this returns, the record
    /// is in the kernel. On failure nothing is considered written: the next append overwrites
    /// the tail.
    pub fn append(&mut self, batch: &mut Batch) -> Result<()> {
        batch.seq = self.next_seq;
        self.buf.clear();
        encode_batch(batch, &mut self.buf);
        self.write()
    }

    /// Records that everything through `through` is fsynced.
    pub fn append_synced(&mut self, through: u64) -> Result<()> {
        self.buf.clear();
        encode_synced(self.next_seq, through, &mut self.buf);
        self.write()
    }

    fn write(&mut self) -> Result<()> {
        self.file
            .write_at(&self.buf, self.len)
            .map_err(|e| io_err("appending", e))?;
        self.len += self.buf.len() as u64;
        self.next_seq += 1;
        // A huge record must not keep a huge buffer alive.
        if self.buf.capacity() > 1 << 20 {
            self.buf = Vec::with_capacity(4096);
        }
        Ok(())
    }

    /// Continues in a new segment (the next id); the old one stays to be synced.
    pub fn rotate(&mut self) -> Result<u64> {
        let id = self.id + 1;
        let file = self
            .dir
            .create(id)
            .map_err(|e| io_err("creating a segment", e))?;
        file.write_at(&header(id, self.next_seq), 0)
            .map_err(|e| io_err("writing a segment header", e))?;
        let old = std::mem::replace(&mut self.file, Arc::new(file));
        self.unsynced.push(old);
        self.id = id;
        self.len = HEADER_LEN;
        self.dir_dirty = true;
        Ok(id)
    }

    /// What a sync covering every record so far must flush.
    pub fn sync_handles(&mut self) -> SyncHandles<D::File> {
        let mut files = std::mem::take(&mut self.unsynced);
        files.push(self.file.clone());
        let dir = std::mem::replace(&mut self.dir_dirty, false);
        SyncHandles {
            files,
            dir,
            through: self.last_seq(),
        }
    }

    /// Puts back what a failed sync did not flush.
    pub fn sync_failed(&mut self, h: SyncHandles<D::File>) {
        let current = self.file.clone();
        self.unsynced
            .extend(h.files.into_iter().filter(|f| !Arc::ptr_eq(f, &current)));
        self.dir_dirty |= h.dir;
    }
}

impl<F: LogFile> SyncHandles<F> {
    /// fdatasyncs the files (oldest first) and, when a segment was created, the directory.
    pub fn run<D: LogDir<File = F>>(&self, dir: &D) -> Result<()> {
        for f in &self.files {
            f.sync_data().map_err(|e| io_err("syncing", e))?;
        }
        if self.dir {
            dir.sync_dir()
                .map_err(|e| io_err("syncing its directory", e))?;
        }
        Ok(())
    }
}

/// Opens the log directory for recovery: the ids present and their images.
pub fn read_all(dir: &FsLogDir, after: u64) -> Result<Vec<(u64, Vec<u8>)>> {
    let mut out = Vec::new();
    for id in dir.list()? {
        if id > after {
            out.push((id, dir.read(id)?));
        }
    }
    Ok(out)
}

/// Removes every segment with an id below `below` (they are checkpointed into sled).
pub fn remove_below<D: LogDir>(dir: &D, ids: impl IntoIterator<Item = u64>, below: u64) {
    for id in ids {
        if id < below {
            if let Err(e) = dir.remove(id) {
                tracing::warn!(segment = id, error = %e, "could not remove a checkpointed log segment");
            }
        }
    }
}

#[cfg(test)]
mod tests;
