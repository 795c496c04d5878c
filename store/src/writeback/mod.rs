//! Remote write-back: a store decorator that acknowledges whole-object writes once they are in
//! a local on-disk journal and uploads them to the store it wraps in the background (DESIGN.md,
//! "Remote write-back"; rclone's `--vfs-cache-mode writes` is the anchor).
//!
//! What goes through the journal: `put`, `delete` (of a key with a live version, pending or in
//! the bucket), `copy` from a pending source, and `rename` (of a pending file: its body moves
//! in the journal; of an uploaded file: a server-side copy + delete queued for the uploader).
//! Everything else passes to the bucket, after the pending changes it must follow: multipart uploads (large files),
//! copies into a pending key and version deletes wait for that key's changes to be uploaded
//! first, so the bucket sees every key's changes in the order they were made.
//!
//! Reads in this process see the journal: `head`/`get` of a pending version read it from the
//! journal (or from the bucket's version a pending rename copies), listings lay the pending
//! changes over the bucket's (listing.rs), and conditional writes are checked against that
//! merged view. Other machines see a change once it is uploaded.
//!
//! Version ids: a pending version has an id of the decorator's own (`wb.` + time + sequence);
//! once uploaded, the bucket's id of that version maps to it (state.rs) for as long as this
//! process lives, so a reader holding the pending id reads the same bytes after the upload and
//! listings keep showing the id that `put` returned. In a bucket without versioning every id
//! is `null`, as the bucket's are, and only a key's last change is uploaded.
//!
//! The journal (journal.rs, segment.rs; docs/FORMAT.md) is replayed when the decorator opens: pending
//! changes are visible at once and uploaded, except those the bucket refused for good before
//! (recorded beside their entries), which stay failed until [`WriteBack::retry_failed`]. [`WriteBack::summary`] tells what is pending;
//! [`WriteBack::wait_drained`] waits for the uploads (unmount).
//!
//! Uploads may wait: with an upload delay ([`WriteBackConfig::upload_delay`], rclone's
//! `--vfs-write-back`) a change is sent that long after it was journaled, so a file written,
//! renamed and deleted within the delay costs the bucket what its last form needs (a bucket
//! without versioning: only the last change of a key). A flush of the key, a drain and a
//! replayed journal do not wait.

mod journal;
mod listing;
mod recent;
mod segment;
pub use journal::entries_on_disk;
pub use recent::AnswerStats;
mod state;
mod uploader;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use tokio::sync::{Notify, RwLock};
use tracing::{error, info};

use crate::error::{Result, StoreError};
use crate::key::check_key_max;
use crate::paging::{Entry, Position};
use crate::store::ObjectStore;
use crate::types::*;

pub use state::{Failed, Summary};

use journal::{Header, JournalDir, Op};
use state::{info_of, Data, EntryFile, Kind, Pending, State};

/// Uploads in flight at once by default.
pub const DEFAULT_CONCURRENCY: usize = 16;

/// How a write-back decorator is set up.
#[derive(Debug, Clone)]
pub struct WriteBackConfig {
    /// The journal's directory (locked: one decorator per directory).
    pub dir: PathBuf,
    /// Uploads in flight at once.
    pub concurrency: usize,
    /// How long the bucket's answers to a HEAD and to a directory listing are reused for
    /// names and attributes (recent.rs): a mount gives its metadata TTL. Zero (the default)
    /// asks the bucket every time.
    pub answer_ttl: Duration,
    /// How long they are reused for an open (`head_for_open`): a mount gives its attribute
    /// TTL. At most `answer_ttl`.
    pub open_ttl: Duration,
    /// How long a change stays in the journal before it is uploaded (zero, the default:
    /// at once). A change superseded meanwhile (a file renamed, deleted or rewritten) is
    /// uploaded in its last form only, or not at all; a flush of the key, a drain and a
    /// replayed journal do not wait.
    pub upload_delay: Duration,
}

impl WriteBackConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        WriteBackConfig {
            dir: dir.into(),
            concurrency: DEFAULT_CONCURRENCY,
            answer_ttl: Duration::ZERO,
            open_ttl: Duration::ZERO,
            upload_delay: Duration::ZERO,
        }
    }
}

/// What the decorator and its uploader share.
pub(crate) struct Shared {
    pub(crate) inner: Arc<dyn ObjectStore>,
    journal: JournalDir,
    state: Mutex<State>,
    /// Wakes the uploader (new changes, a key to hurry, shutdown).
    pub(crate) wake: Notify,
    /// Told after every upload (flushes and drains wait on it).
    pub(crate) progress: Notify,
    /// Held (shared) by each upload; taken alone by a version listing, which must not see a
    /// change both pending and in the bucket under two ids.
    pub(crate) gate: RwLock<()>,
    /// Serialises journal writes (one order on disk and in memory) and conditional checks.
    write: tokio::sync::Mutex<()>,
    pub(crate) stop: AtomicBool,
    pub(crate) concurrency: usize,
    versioned: bool,
    max_key_len: usize,
    /// The bucket's time resolution.
    resolution: Duration,
    /// Makes pending ids unique across runs.
    boot: u64,
    /// The bucket's recent answers (recent.rs).
    recent: recent::Recent,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The change `p` was refused for good: its key is failed, and the refusal is recorded
    /// beside its entry (under the state's lock, so a retry cannot come between the two).
    pub(crate) fn record_failure(&self, p: &Pending, error: String) {
        let mut st = self.lock();
        if !st.fail(p, error) {
            return;
        }
        let refusals = st.refusals_of(p.seq);
        p.file.failed.store(true, Ordering::Release);
        if let Err(e) = self.journal.write_failed(p.seq, &refusals) {
            error!(
                key = %p.key,
                "write-back journal: cannot record the refusal (shown failed until the mount \
                 ends, then tried again at the next one): {e}"
            );
        }
    }
}

/// The write-back decorator over a remote store.
pub struct WriteBack {
    shared: Arc<Shared>,
}

impl Drop for WriteBack {
    fn drop(&mut self) {
        // Pending changes stay in the journal for the next run.
        self.shared.stop.store(true, Ordering::Release);
        self.shared.wake.notify_one();
    }
}

/// Reads of a pending body up to this many bytes are made on the calling task.
const INLINE_READ: usize = 128 * 1024;

/// An entry's place in the journal, shared by its one or two changes.
fn entry_file(
    h: &Header,
    segment: Arc<segment::Segment>,
    body_offset: u64,
    body_len: u64,
) -> Arc<EntryFile> {
    let changes = match h.op {
        Op::Rename { .. } | Op::Move { .. } => 2,
        _ => 1,
    };
    EntryFile::new(segment, h.seq, body_offset, body_len, changes)
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

impl WriteBack {
    /// Opens (replays) the journal in `cfg.dir` over `inner` and starts the uploader.
    pub fn open(inner: Arc<dyn ObjectStore>, cfg: WriteBackConfig) -> Result<WriteBack> {
        let journal = JournalDir::open(&cfg.dir)?;
        let f = inner.features();
        let shared = Arc::new(Shared {
            inner,
            journal,
            state: Mutex::new(State {
                coalesce: !f.versioning,
                ..Default::default()
            }),
            wake: Notify::new(),
            progress: Notify::new(),
            gate: RwLock::new(()),
            write: tokio::sync::Mutex::new(()),
            stop: AtomicBool::new(false),
            concurrency: cfg.concurrency.max(1),
            versioned: f.versioning,
            max_key_len: f.max_key_len,
            resolution: f.time_resolution,
            boot: now_ns(),
            recent: recent::Recent::new(cfg.answer_ttl, cfg.open_ttl),
        });
        let wb = WriteBack { shared };
        wb.replay()?;
        // What was journaled before is due now; new changes wait the delay.
        wb.shared.lock().delay = cfg.upload_delay;
        uploader::start(wb.shared.clone()).map_err(|e| StoreError::io("write-back uploader", e))?;
        Ok(wb)
    }

    /// The journal's directory.
    pub fn journal_dir(&self) -> &Path {
        self.shared.journal.path()
    }

    fn replay(&self) -> Result<()> {
        let (found, damaged) = self.shared.journal.replay()?;
        for (path, e) in &damaged {
            error!(
                "write-back journal: an entry failed its check and was set aside in {}: {e}",
                path.display()
            );
        }
        let mut st = self.shared.lock();
        for f in &found {
            let d = &f.decoded;
            st.next_seq = st.next_seq.max(d.header.seq + 1);
            let file = entry_file(&d.header, f.segment.clone(), d.body_offset, d.body_len);
            self.apply(&mut st, &d.header, file, &d.etag);
        }
        self.restore_failures(&mut st)?;
        if !found.is_empty() {
            info!(
                changes = st.changes,
                bytes = st.bytes,
                "write-back journal replayed: uploading what it holds"
            );
        }
        Ok(())
    }

    /// Marks failed again the changes whose refusal the journal recorded (they wait for
    /// `objfs writeback retry`, as they did before the journal was closed).
    fn restore_failures(&self, st: &mut State) -> Result<()> {
        let (failures, damaged) = self.shared.journal.failures()?;
        for (path, e) in &damaged {
            error!(
                "write-back journal: a failure record failed its check and was removed ({}); \
                 its changes are tried again: {e}",
                path.display()
            );
        }
        for (seq, refusals) in failures {
            let mut kept = Vec::new();
            for r in refusals {
                if st.restore_failed(seq, &r.key, &r.error, r.since) {
                    if let Some(p) = st.keys.get(&r.key).and_then(|q| q.front()) {
                        p.file.failed.store(true, Ordering::Release);
                    }
                    error!(
                        key = %r.key,
                        "write-back: the bucket refused this change before; it stays in the \
                         journal, failed, until `objfs writeback retry`: {}",
                        r.error
                    );
                    kept.push(r);
                }
            }
            if kept.is_empty() {
                journal::remove_failed(self.shared.journal.path(), seq);
            }
        }
        Ok(())
    }

    /// Makes the pending changes of an entry (written now or found at replay) visible and
    /// returns the version it makes.
    fn apply(&self, st: &mut State, h: &Header, file: Arc<EntryFile>, etag: &str) -> ObjectInfo {
        let id = |s: &str| VersionId::from_backend(s.to_string());
        let info = |key: &str, vid: &str, size: u64, etag: &str| {
            let mut i = info_of(key, id(vid), size, etag.to_string(), h.metadata.clone());
            i.modified = h.created;
            i
        };
        let mk = |key: &str, vid: &str, kind: Kind, partner: Option<&String>| Pending {
            seq: h.seq,
            key: key.to_string(),
            id: id(vid),
            modified: h.created,
            kind,
            file: file.clone(),
            partner: partner.cloned(),
            due: Instant::now(),
        };
        let (dst, vid, src, marker, made, data) = match &h.op {
            Op::Put { key, id: v } => {
                let made = info(key, v, file.body_len, etag);
                let kind = Kind::Put {
                    info: made.clone(),
                    data: Data::Journal,
                };
                st.push(mk(key, v, kind, None));
                return made;
            }
            Op::Delete { key, id: v } => {
                st.push(mk(key, v, Kind::Delete, None));
                return info(key, v, 0, "");
            }
            Op::Rename {
                src,
                src_marker,
                dst,
                id: v,
            } => (
                dst,
                v,
                src,
                src_marker,
                info(dst, v, file.body_len, etag),
                Data::Journal,
            ),
            Op::Move {
                src,
                src_version,
                src_marker,
                dst,
                id: v,
                size,
                etag,
            } => (
                dst,
                v,
                src,
                src_marker,
                info(dst, v, *size, etag),
                Data::Remote {
                    key: src.clone(),
                    version: id(src_version),
                },
            ),
        };
        let kind = Kind::Put {
            info: made.clone(),
            data,
        };
        st.push(mk(dst, vid, kind, Some(src)));
        st.push(mk(src, marker, Kind::Delete, Some(dst)));
        made
    }

    /// The next sequence number of the journal.
    fn next_seq(&self) -> u64 {
        let mut st = self.shared.lock();
        let s = st.next_seq;
        st.next_seq += 1;
        s
    }

    /// A fresh pending id for entry `seq` (`tag` tells two ids of one entry apart), or `null`
    /// in a bucket without versioning.
    fn new_id(&self, seq: u64, tag: &str) -> String {
        if self.shared.versioned {
            format!("wb.{:x}.{seq:x}{tag}", self.shared.boot)
        } else {
            "null".to_string()
        }
    }

    /// Writes an entry to the journal and makes it visible; the caller holds `write`.
    fn commit(
        &self,
        seq: u64,
        op: Op,
        metadata: Metadata,
        body: &[u8],
        durable: bool,
    ) -> Result<ObjectInfo> {
        let recent = &self.shared.recent;
        match &op {
            Op::Put { key, .. } => recent.now_exists(key),
            Op::Delete { key, .. } => recent.now_absent(key),
            Op::Rename { src, dst, .. } | Op::Move { src, dst, .. } => {
                recent.now_absent(src);
                recent.now_exists(dst);
            }
        }
        let h = Header {
            seq,
            created: self.now(),
            op,
            metadata,
        };
        let (segment, off) = self.shared.journal.write(&h, body, durable)?;
        let etag = journal::etag_of(body);
        let file = entry_file(&h, segment, off, body.len() as u64);
        let (info, wake) = {
            let mut st = self.shared.lock();
            let info = self.apply(&mut st, &h, file, &etag);
            (info, st.take_wake())
        };
        // With an upload delay the uploader sleeps until its first due change: a change due
        // later does not wake it (a thread switch per change).
        if wake {
            self.shared.wake.notify_one();
        }
        Ok(info)
    }

    /// Now, cut to the bucket's time resolution: a pending version's time stays its time
    /// after the upload, and must not order it after a version the bucket makes later in the
    /// same second.
    fn now(&self) -> SystemTime {
        let res = self.shared.resolution.as_nanos().max(1) as u64;
        let ns = now_ns();
        UNIX_EPOCH + Duration::from_nanos(ns - ns % res)
    }

    /// What the journal holds now.
    pub fn summary(&self) -> Summary {
        self.shared.lock().summary()
    }

    /// The bucket's answers kept for names and attributes (recent.rs).
    pub fn answers(&self) -> AnswerStats {
        self.shared.recent.stats()
    }

    /// Waits until every pending change is uploaded (`true`), or until nothing is left but
    /// changes the bucket refused for good and those waiting behind them, or `timeout`
    /// passed (both `false`: [`WriteBack::summary`] tells which), calling `progress` about
    /// once a second while it waits.
    pub fn wait_drained(&self, timeout: Duration, mut progress: impl FnMut(&Summary)) -> bool {
        let start = Instant::now();
        let mut last = Instant::now();
        loop {
            self.hurry();
            let s = self.summary();
            if s.changes == 0 {
                self.seal_journal();
                return true;
            }
            if s.settled() || start.elapsed() >= timeout {
                return false;
            }
            if last.elapsed() >= Duration::from_secs(1) {
                progress(&s);
                last = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Appends no more to the journal's current segment: it goes once its entries are all
    /// uploaded (at once when they are), and the next change begins a new one. Called when
    /// the journal drained, so that an unmounted journal holds no segment at all.
    pub fn seal_journal(&self) {
        self.shared.journal.seal_current();
    }

    /// How long a change waits before it is uploaded.
    pub fn upload_delay(&self) -> Duration {
        self.shared.lock().delay
    }

    /// Sends every pending change now, without waiting for the upload delay.
    pub fn hurry(&self) {
        let mut st = self.shared.lock();
        if st.next_due().is_some() {
            st.hurry();
            drop(st);
            self.shared.wake.notify_one();
        }
    }

    /// Makes the uploader try again every change the bucket refused for good (after the
    /// cause was fixed: a bucket policy, a bucket made again); how many keys.
    pub fn retry_failed(&self) -> usize {
        let n = {
            let mut st = self.shared.lock();
            if let Err(e) = self.shared.journal.clear_failed() {
                error!("write-back journal: cannot forget the recorded refusals: {e}");
            }
            st.retry_failed()
        };
        if n > 0 {
            info!(keys = n, "write-back: trying the failed uploads again");
            self.shared.wake.notify_one();
        }
        n
    }

    /// Waits until `key` has no pending change (hurrying it to the front of the uploads); an
    /// error when a change of it (or the copy of a rename it is the source of) was refused
    /// for good: what must follow it cannot go to the bucket.
    async fn flush_key(&self, key: &str) -> Result<()> {
        loop {
            let notified = self.shared.progress.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = self.shared.lock();
                let Some(q) = st.keys.get(key) else {
                    return Ok(());
                };
                let partner = q.front().and_then(|f| f.partner.clone());
                let failed = st
                    .failure(key)
                    .or_else(|| partner.as_deref().and_then(|p| st.failure(p)));
                if let Some(f) = failed {
                    return Err(StoreError::Unavailable {
                        what: format!("write-back of {key:?}"),
                        reason: format!(
                            "an earlier change of {:?} was refused by the bucket and waits in \
                             the journal ({}); retry it with `objfs writeback retry`",
                            f.key, f.error
                        ),
                    });
                }
                st.ready.push_front(key.to_string());
            }
            self.shared.wake.notify_one();
            let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
        }
    }

    fn check_key(&self, key: &str) -> Result<()> {
        check_key_max(key, self.shared.max_key_len).map_err(|reason| StoreError::InvalidKey {
            key: key.to_string(),
            reason,
        })
    }

    /// The pending version of `key` a reader asks for: `Some(Ok)` a live pending version,
    /// `Some(Err)` a pending delete (or a pending id that is a marker), `None` ask the bucket.
    fn pending_version(
        &self,
        key: &str,
        version: Option<&VersionId>,
    ) -> Option<Result<(ObjectInfo, Pending)>> {
        let st = self.shared.lock();
        let q = st.keys.get(key)?;
        let p = match version {
            None => q.back()?,
            Some(v) if v.is_null() && !self.shared.versioned => q.back()?,
            Some(v) => q.iter().find(|p| p.id == *v)?,
        };
        Some(match listing::live_info(p) {
            Some(info) => Ok((info, p.clone())),
            None => Err(match version {
                None => StoreError::NotFound {
                    key: key.to_string(),
                },
                Some(v) => StoreError::NoSuchVersion {
                    key: key.to_string(),
                    version: v.clone(),
                },
            }),
        })
    }

    /// The bucket's answer with its version id shown as this process knows it.
    fn shown(&self, info: ObjectInfo) -> ObjectInfo {
        if self.shared.versioned {
            return self.shared.lock().shown_info(info);
        }
        info
    }

    fn bucket_id(&self, v: Option<VersionId>) -> Option<VersionId> {
        v.map(|v| self.shared.lock().bucket_id(v))
    }

    fn bucket_condition(&self, c: Condition) -> Condition {
        match c {
            Condition::IfVersion(v) => Condition::IfVersion(self.shared.lock().bucket_id(v)),
            c => c,
        }
    }

    /// The merged current version of `key`, `None` when it has none.
    async fn current(&self, key: &str) -> Result<Option<ObjectInfo>> {
        match self.head(key, None).await {
            Ok(i) => Ok(Some(i)),
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Checks `condition` against the merged view of `key`.
    async fn check_condition(&self, key: &str, condition: &Condition) -> Result<()> {
        if *condition == Condition::None {
            return Ok(());
        }
        let cur = self.current(key).await?.map(|i| i.version);
        let failed = |reason: String| StoreError::PreconditionFailed {
            key: key.to_string(),
            reason,
        };
        match (condition, cur) {
            (Condition::IfNotExists, Some(v)) => Err(failed(format!("live version {v} exists"))),
            (Condition::IfVersion(want), Some(v)) if *want != v => {
                Err(failed(format!("current version is {v}, not {want}")))
            }
            (Condition::IfVersion(want), None) => {
                Err(failed(format!("no live version (expected {want})")))
            }
            _ => Ok(()),
        }
    }

    /// The body of a pending version (from the journal, or from the bucket's version a
    /// pending rename copies), range resolved against its size.
    async fn pending_body(&self, p: &Pending, range: std::ops::Range<u64>) -> Result<Body> {
        match &p.kind {
            Kind::Put {
                data: Data::Remote { key, version },
                ..
            } => {
                let version = Some(version.clone()).filter(|v| !v.is_null());
                let opts = GetOptions {
                    version,
                    range: Some(range),
                };
                Ok(self.shared.inner.get(key, opts).await?.body)
            }
            _ => {
                // The file may be unlinked once uploaded: open it while it is pending.
                let file = {
                    let st = self.shared.lock();
                    let still = st
                        .keys
                        .get(&p.key)
                        .is_some_and(|q| q.iter().any(|o| o.seq == p.seq));
                    if still {
                        std::fs::File::open(p.file.path()).ok()
                    } else {
                        None
                    }
                };
                let Some(file) = file else {
                    // Uploaded meanwhile: the bucket has it under the mapped id.
                    let version = self.bucket_id(Some(p.id.clone()));
                    let opts = GetOptions {
                        version: version.filter(|v| !v.is_null()),
                        range: Some(range),
                    };
                    return Ok(self.shared.inner.get(&p.key, opts).await?.body);
                };
                let off = p.file.body_offset + range.start;
                let len = (range.end - range.start) as usize;
                let read = move || -> std::io::Result<Vec<u8>> {
                    use std::os::unix::fs::FileExt;
                    let mut buf = vec![0u8; len];
                    file.read_exact_at(&mut buf, off)?;
                    Ok(buf)
                };
                // A small read of what was just written is a copy from the page cache: done
                // here (a rename of a pending file, a read of a small one) rather than with a
                // hop to the blocking pool and back.
                let buf = if len <= INLINE_READ {
                    read()
                } else {
                    tokio::task::spawn_blocking(read)
                        .await
                        .map_err(|e| StoreError::io("write-back read", std::io::Error::other(e)))?
                }
                .map_err(|e| StoreError::io("write-back journal read", e))?;
                Ok(Body::from(buf))
            }
        }
    }

    /// The whole body of a pending version.
    async fn pending_bytes(&self, p: &Pending, size: u64) -> Result<bytes::Bytes> {
        self.pending_body(p, 0..size)
            .await?
            .collect_sized(size as usize)
            .await
    }
}

mod api;
