//! The write-back decorator's memory of its journal: for every key with pending changes, the
//! changes in journal order (what reads see on top of the bucket and what the uploader sends),
//! the files that hold them, and the map between pending version ids and the ids the bucket
//! gave once uploaded, and the keys whose first change the bucket refused for good (a failed
//! change stays in the journal and holds back its key's later changes until it is retried).
//! No I/O here but marking an entry done in its segment once its every change is uploaded.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::types::{Metadata, ObjectInfo, VersionId, VersionInfo};

use super::segment::Segment;

/// One journal entry's place (its segment and where its body is), shared by the changes it
/// holds (two for a rename).
#[derive(Debug)]
pub struct EntryFile {
    segment: Arc<Segment>,
    pub seq: u64,
    pub body_offset: u64,
    pub body_len: u64,
    /// Changes of this entry not yet uploaded; the entry is done when it reaches 0.
    live: AtomicUsize,
    /// The entry's new version (put, copy) is in the bucket: a rename's delete of its source
    /// waits for it, so the object is never under neither name there.
    pub made: AtomicBool,
    /// A refusal of one of its changes was recorded (a failure file is beside it).
    pub failed: AtomicBool,
}

impl EntryFile {
    pub fn new(
        segment: Arc<Segment>,
        seq: u64,
        body_offset: u64,
        body_len: u64,
        changes: usize,
    ) -> Arc<EntryFile> {
        Arc::new(EntryFile {
            segment,
            seq,
            body_offset,
            body_len,
            live: AtomicUsize::new(changes),
            made: AtomicBool::new(changes < 2),
            failed: AtomicBool::new(false),
        })
    }

    /// The file its bytes are in.
    pub fn path(&self) -> &Path {
        self.segment.path()
    }

    /// One change of the entry is done (uploaded or superseded); after the last one the
    /// entry is done in its segment, and its failure file goes.
    pub fn release(&self) {
        if self.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            if self.failed.load(Ordering::Acquire) {
                if let Some(dir) = self.path().parent() {
                    super::journal::remove_failed(dir, self.seq);
                }
            }
            self.segment.entry_done(self.seq);
        }
    }
}

/// Where a pending version's bytes are.
#[derive(Debug, Clone)]
pub enum Data {
    /// In the entry file's body.
    Journal,
    /// In the bucket, as this version of this key (a rename of an uploaded file).
    Remote { key: String, version: VersionId },
}

/// What a pending change does to its key.
#[derive(Debug, Clone)]
pub enum Kind {
    /// A new version with data.
    Put { info: ObjectInfo, data: Data },
    /// A delete marker.
    Delete,
}

/// One pending change of a key.
#[derive(Debug, Clone)]
pub struct Pending {
    pub seq: u64,
    pub key: String,
    /// The id reads see until (and, through the id map, after) the upload.
    pub id: VersionId,
    pub modified: SystemTime,
    pub kind: Kind,
    pub file: Arc<EntryFile>,
    /// The other key of a two-key entry (a rename): such a change is never dropped when
    /// superseded, and the delete half is uploaded only after the other half.
    pub partner: Option<String>,
    /// When the uploader may send it: its commit plus the upload delay (set by
    /// [`State::push`]; a change found at replay is due at once).
    pub due: Instant,
}

impl Pending {
    /// Bytes of data the change will upload from the journal.
    pub fn journal_bytes(&self) -> u64 {
        match &self.kind {
            Kind::Put {
                data: Data::Journal,
                info,
            } => info.size,
            _ => 0,
        }
    }

    /// Whether the uploader may send it now.
    pub fn ready(&self) -> bool {
        match self.kind {
            Kind::Delete if self.partner.is_some() => self.file.made.load(Ordering::Acquire),
            _ => true,
        }
    }
}

/// How an uploaded version keeps looking to this process: the id, time and etag its pending
/// version had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    pub id: VersionId,
    pub modified: SystemTime,
    pub etag: String,
}

/// A change the bucket refused with an error that trying again cannot cure (403, a missing
/// bucket, a request it calls invalid): kept in the journal, not retried until asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    pub key: String,
    /// The journal entry's sequence number (its failure file is `SEQ.failed`, in hex).
    pub seq: u64,
    /// The bucket's error, with its S3 code.
    pub error: String,
    pub since: SystemTime,
}

/// What `status` shows of the journal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub changes: usize,
    pub bytes: u64,
    pub oldest: Option<SystemTime>,
    /// The last upload failure, while uploads are failing (and being retried).
    pub failing: Option<String>,
    /// Changes refused for good, by key (not retried until [`super::WriteBack::retry_failed`];
    /// recorded in the journal, so a later open shows them failed too).
    pub failed: Vec<Failed>,
    /// Changes held back by the failed ones (later changes of the same keys, and the delete
    /// halves of renames whose copy failed), the failed ones included.
    pub blocked: usize,
}

impl Summary {
    /// Whether nothing is left to upload but what failed (and what waits behind it).
    pub fn settled(&self) -> bool {
        self.changes == self.blocked
    }
}

/// The decorator's pending changes.
#[derive(Debug, Default)]
pub struct State {
    pub keys: BTreeMap<String, VecDeque<Pending>>,
    pub in_flight: HashSet<String>,
    /// Keys whose first change may be ready to upload (may hold stale names: checked when
    /// taken).
    pub ready: VecDeque<String>,
    /// Keys whose first change is not due yet, by due time (moved to `ready` when due; may
    /// hold stale names too).
    pub delayed: BinaryHeap<Reverse<(Instant, String)>>,
    /// How long a change waits in the journal before it is uploaded (the write-back delay):
    /// a file renamed, rewritten or deleted meanwhile is uploaded once in its last form, or
    /// not at all in a bucket without versioning.
    pub delay: Duration,
    /// A change was queued that the uploader must be woken for ([`State::take_wake`]).
    pub wake: bool,
    /// Pending id -> bucket id, and back (a versioned bucket only).
    pub to_bucket: HashMap<VersionId, VersionId>,
    pub from_bucket: HashMap<VersionId, Shown>,
    pub next_seq: u64,
    pub bytes: u64,
    pub changes: usize,
    pub failing: Option<String>,
    /// Keys whose first change failed for good (see [`Failed`]); the uploader leaves them.
    pub failed: BTreeMap<String, Failed>,
    /// In a bucket without versioning only the last change of a key matters: earlier ones not
    /// yet uploading are dropped when a new one comes.
    pub coalesce: bool,
}

impl State {
    /// The newest pending change of `key`.
    pub fn latest(&self, key: &str) -> Option<&Pending> {
        self.keys.get(key).and_then(|q| q.back())
    }

    /// Adds a change at the end of its key's queue.
    pub fn push(&mut self, mut p: Pending) {
        let key = p.key.clone();
        let in_flight = self.in_flight.contains(&key);
        let q = self.keys.entry(key.clone()).or_default();
        if self.coalesce {
            // Keep the change being uploaded (it cannot be recalled) and rename halves; a
            // failed change dropped here is replaced by the new one, which is tried.
            let mut kept = VecDeque::with_capacity(q.len() + 1);
            for (i, old) in q.drain(..).enumerate() {
                if (i == 0 && in_flight) || old.partner.is_some() {
                    kept.push_back(old);
                } else {
                    self.changes -= 1;
                    self.bytes -= old.journal_bytes();
                    old.file.release();
                }
            }
            let front = kept.front().map(|f| f.seq);
            if self.failed.get(&key).is_some_and(|f| Some(f.seq) != front) {
                self.failed.remove(&key);
            }
            *q = kept;
        }
        self.changes += 1;
        self.bytes += p.journal_bytes();
        p.due = Instant::now() + self.delay;
        let due = p.due;
        q.push_back(p);
        if !in_flight && !self.failed.contains_key(&key) {
            self.schedule(key, due);
        }
    }

    /// Queues `key` for the uploader: at once when its first change is `due`, else when it
    /// will be.
    fn schedule(&mut self, key: String, due: Instant) {
        if due <= Instant::now() {
            self.ready.push_back(key);
            self.wake = true;
        } else {
            // The uploader sleeps until the first due change: only a new first changes that.
            self.wake |= self.next_due().is_none_or(|first| due < first);
            self.delayed.push(Reverse((due, key)));
        }
    }

    /// Whether a change queued since the last call needs the uploader woken (it is due now,
    /// or due before anything the uploader waits for).
    pub fn take_wake(&mut self) -> bool {
        std::mem::take(&mut self.wake)
    }

    /// Moves the keys whose time came to the uploads' queue.
    fn promote(&mut self, now: Instant) {
        while self
            .delayed
            .peek()
            .is_some_and(|Reverse((due, _))| *due <= now)
        {
            if let Some(Reverse((_, key))) = self.delayed.pop() {
                self.ready.push_back(key);
            }
        }
    }

    /// Makes every delayed change ready now (an unmount, a flush).
    pub fn hurry(&mut self) {
        while let Some(Reverse((_, key))) = self.delayed.pop() {
            self.ready.push_back(key);
        }
    }

    /// When the next delayed change becomes due.
    pub fn next_due(&self) -> Option<Instant> {
        self.delayed.peek().map(|Reverse((due, _))| *due)
    }

    /// The change `p` (in flight) was refused for good: it stays, its key waits. `false` when
    /// it was superseded meanwhile (then the next change is tried instead).
    pub fn fail(&mut self, p: &Pending, error: String) -> bool {
        self.in_flight.remove(&p.key);
        let still = self
            .keys
            .get(&p.key)
            .and_then(|q| q.front())
            .is_some_and(|f| f.seq == p.seq);
        if !still {
            // Superseded meanwhile (a bucket without versioning): the next change is tried.
            self.ready.push_back(p.key.clone());
            return false;
        }
        let failed = Failed {
            key: p.key.clone(),
            seq: p.seq,
            error,
            since: SystemTime::now(),
        };
        self.failed.insert(p.key.clone(), failed);
        true
    }

    /// A refusal recorded in the journal (found at open): `key` is failed again if entry
    /// `seq` still holds its first change; whether it does.
    pub fn restore_failed(&mut self, seq: u64, key: &str, error: &str, since: SystemTime) -> bool {
        let front = self.keys.get(key).and_then(|q| q.front()).map(|f| f.seq);
        if front != Some(seq) {
            return false;
        }
        let failed = Failed {
            key: key.to_string(),
            seq,
            error: error.to_string(),
            since,
        };
        self.failed.insert(key.to_string(), failed);
        true
    }

    /// The refused changes of entry `seq`, as its failure file records them.
    pub fn refusals_of(&self, seq: u64) -> Vec<super::journal::Refusal> {
        self.failed
            .values()
            .filter(|f| f.seq == seq)
            .map(|f| super::journal::Refusal {
                key: f.key.clone(),
                since: f.since,
                error: f.error.clone(),
            })
            .collect()
    }

    /// Forgets every failure, so that the uploader tries those changes again; how many.
    pub fn retry_failed(&mut self) -> usize {
        let keys: Vec<String> = std::mem::take(&mut self.failed).into_keys().collect();
        let n = keys.len();
        self.ready.extend(keys);
        self.failing = None;
        n
    }

    /// The error of `key`'s failed change, if its first change failed for good.
    pub fn failure(&self, key: &str) -> Option<&Failed> {
        self.failed.get(key)
    }

    /// Changes that wait for a failed one: every change of a failed key, and the delete half
    /// of a rename whose copy (the partner key) failed, with the changes behind it.
    fn blocked(&self) -> usize {
        self.keys
            .iter()
            .filter(|(k, q)| {
                self.failed.contains_key(*k)
                    || q.front().is_some_and(|f| {
                        !f.ready()
                            && f.partner
                                .as_ref()
                                .is_some_and(|p| self.failed.contains_key(p))
                    })
            })
            .map(|(_, q)| q.len())
            .sum()
    }

    /// The version id readers know for the bucket's `id`.
    pub fn shown(&self, id: VersionId) -> VersionId {
        self.from_bucket
            .get(&id)
            .map(|s| s.id.clone())
            .unwrap_or(id)
    }

    /// The bucket's description of a version as this process knows it.
    pub fn shown_info(&self, mut info: ObjectInfo) -> ObjectInfo {
        if let Some(s) = self.from_bucket.get(&info.version) {
            info.version = s.id.clone();
            info.modified = s.modified;
            info.etag.clone_from(&s.etag);
        }
        info
    }

    /// The same for an entry of a version listing.
    pub fn shown_version(&self, mut v: VersionInfo) -> VersionInfo {
        if let Some(s) = self.from_bucket.get(&v.version) {
            v.version = s.id.clone();
            v.modified = s.modified;
            v.etag.clone_from(&s.etag);
        }
        v
    }

    /// The bucket's id for a version a reader names.
    pub fn bucket_id(&self, id: VersionId) -> VersionId {
        self.to_bucket.get(&id).cloned().unwrap_or(id)
    }

    /// The first change of `key` was uploaded (the bucket's id, if it made a version).
    pub fn uploaded(&mut self, key: &str, seq: u64, bucket: Option<VersionId>) {
        self.in_flight.remove(key);
        let Some(q) = self.keys.get_mut(key) else {
            return;
        };
        let Some(pos) = q.iter().position(|p| p.seq == seq) else {
            return;
        };
        let Some(p) = q.remove(pos) else { return };
        match q.front().map(|next| next.due) {
            None => {
                self.keys.remove(key);
            }
            Some(due) => self.schedule(key.to_string(), due),
        }
        self.changes -= 1;
        self.bytes -= p.journal_bytes();
        if let (Some(b), false) = (bucket, self.coalesce) {
            let etag = match &p.kind {
                Kind::Put { info, .. } => info.etag.clone(),
                Kind::Delete => String::new(),
            };
            let shown = Shown {
                id: p.id.clone(),
                modified: p.modified,
                etag,
            };
            self.to_bucket.insert(p.id.clone(), b.clone());
            self.from_bucket.insert(b, shown);
        }
        if let (Kind::Put { .. }, Some(src)) = (&p.kind, &p.partner) {
            p.file.made.store(true, Ordering::Release);
            // The delete half (the rename's source) may go now.
            self.ready.push_back(src.clone());
        }
        p.file.release();
    }

    /// Whether the change `p` (in flight, failing) no longer needs uploading: in a bucket
    /// without versioning a later change of its key replaces it. Then it is dropped.
    pub fn drop_superseded(&mut self, p: &Pending) -> bool {
        if !self.coalesce || p.partner.is_some() {
            return false;
        }
        let Some(q) = self.keys.get_mut(&p.key) else {
            return false;
        };
        if q.len() < 2 || q.front().map(|f| f.seq) != Some(p.seq) {
            return false;
        }
        if let Some(old) = q.pop_front() {
            self.changes -= 1;
            self.bytes -= old.journal_bytes();
            old.file.release();
        }
        self.in_flight.remove(&p.key);
        self.ready.push_back(p.key.clone());
        true
    }

    /// The next change to upload, marked in flight.
    pub fn take_ready(&mut self) -> Option<Pending> {
        self.promote(Instant::now());
        while let Some(key) = self.ready.pop_front() {
            if self.in_flight.contains(&key) || self.failed.contains_key(&key) {
                continue;
            }
            let Some(first) = self.keys.get(&key).and_then(|q| q.front()) else {
                continue;
            };
            if !first.ready() {
                continue;
            }
            let p = first.clone();
            self.in_flight.insert(key);
            return Some(p);
        }
        None
    }

    pub fn summary(&self) -> Summary {
        Summary {
            changes: self.changes,
            bytes: self.bytes,
            oldest: self
                .keys
                .values()
                .filter_map(|q| q.front().map(|p| p.modified))
                .min(),
            failing: self.failing.clone(),
            failed: self.failed.values().cloned().collect(),
            blocked: self.blocked(),
        }
    }
}

/// An object description of a pending put.
pub fn info_of(
    key: &str,
    id: VersionId,
    size: u64,
    etag: String,
    metadata: Metadata,
) -> ObjectInfo {
    ObjectInfo {
        key: key.to_string(),
        version: id,
        size,
        modified: SystemTime::now(),
        etag,
        metadata,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` single-entry files in `dir` (entries 0..n), 3 bytes of body each.
    fn entry_files(dir: &std::path::Path, n: u64) -> Vec<Arc<EntryFile>> {
        (0..n)
            .map(|i| {
                let p = dir.join(format!("{i}"));
                std::fs::write(&p, b"x").unwrap();
                EntryFile::new(Arc::new(Segment::single(p)), i, 0, 3, 1)
            })
            .collect()
    }

    fn pending(seq: u64, key: &str, file: &Arc<EntryFile>) -> Pending {
        Pending {
            seq,
            key: key.into(),
            id: VersionId::from_backend(format!("p{seq}")),
            modified: SystemTime::now(),
            kind: Kind::Put {
                info: info_of(key, VersionId::null(), 3, "e".into(), Metadata::new()),
                data: Data::Journal,
            },
            file: file.clone(),
            partner: None,
            due: Instant::now(),
        }
    }

    #[test]
    fn coalescing_keeps_the_upload_in_flight_and_rename_halves() {
        let t = tempfile::tempdir().unwrap();
        let mut s = State {
            coalesce: true,
            ..Default::default()
        };
        let files = entry_files(t.path(), 4);
        s.push(pending(1, "k", &files[0]));
        let first = s.take_ready().unwrap();
        assert_eq!(first.seq, 1);
        s.push(pending(2, "k", &files[1]));
        s.push(pending(3, "k", &files[2]));
        // 2 was superseded by 3 (its file is gone); 1 is being uploaded.
        let seqs: Vec<u64> = s.keys["k"].iter().map(|p| p.seq).collect();
        assert_eq!(seqs, [1, 3]);
        assert!(!t.path().join("1").exists());
        assert_eq!(s.summary().changes, 2);
        s.uploaded("k", 1, Some(VersionId::null()));
        assert!(!t.path().join("0").exists());
        assert_eq!(s.take_ready().unwrap().seq, 3);
        s.uploaded("k", 3, None);
        assert!(s.keys.is_empty());
        assert_eq!(s.summary(), Summary::default());
    }

    #[test]
    fn ids_map_both_ways_in_a_versioned_bucket() {
        let t = tempfile::tempdir().unwrap();
        let f = entry_files(t.path(), 1).remove(0);
        let mut s = State::default();
        s.push(pending(5, "k", &f));
        let taken = s.take_ready().unwrap();
        let b = VersionId::from_backend("bucket-1");
        s.uploaded("k", taken.seq, Some(b.clone()));
        assert_eq!(s.shown(b.clone()), taken.id);
        assert_eq!(s.bucket_id(taken.id.clone()), b);
        assert!(s.take_ready().is_none());
    }

    #[test]
    fn delayed_changes_wait_until_due_or_hurried() {
        let t = tempfile::tempdir().unwrap();
        let mut s = State {
            delay: Duration::from_secs(3600),
            ..Default::default()
        };
        let files = entry_files(t.path(), 3);
        s.push(pending(1, "a", &files[0]));
        s.push(pending(2, "b", &files[1]));
        assert!(s.take_ready().is_none(), "taken before its time");
        let due = s.next_due().unwrap();
        assert!(due > Instant::now() + Duration::from_secs(3000));
        // A flush of one key puts it first, whatever its time.
        s.ready.push_front("b".into());
        assert_eq!(s.take_ready().unwrap().seq, 2);
        // The next change of a key uploaded early waits its own time.
        s.push(pending(3, "b", &files[2]));
        s.uploaded("b", 2, None);
        assert!(s.take_ready().is_none());
        // A drain: everything now, each key once.
        s.hurry();
        assert!(s.next_due().is_none());
        let mut taken: Vec<u64> = std::iter::from_fn(|| s.take_ready())
            .map(|p| p.seq)
            .collect();
        taken.sort();
        assert_eq!(taken, [1, 3]);
    }

    #[test]
    fn the_uploader_is_woken_only_for_a_change_due_before_what_it_waits_for() {
        let t = tempfile::tempdir().unwrap();
        let files = entry_files(t.path(), 4);
        let mut s = State {
            delay: Duration::from_secs(3600),
            ..Default::default()
        };
        s.push(pending(1, "a", &files[0]));
        assert!(
            s.take_wake(),
            "the first delayed change: the uploader sleeps for ever"
        );
        assert!(!s.take_wake(), "taken");
        s.push(pending(2, "b", &files[1]));
        assert!(!s.take_wake(), "due after the first");
        // Without a delay every change is due now.
        s.delay = Duration::ZERO;
        s.push(pending(3, "c", &files[2]));
        assert!(s.take_wake());
        // A change of a key being uploaded waits for that upload, not for a wake.
        let taken = s.take_ready().unwrap();
        s.push(pending(4, &taken.key, &files[3]));
        assert!(!s.take_wake());
    }

    #[test]
    fn a_zero_delay_makes_changes_ready_at_once() {
        let t = tempfile::tempdir().unwrap();
        let f = entry_files(t.path(), 1).remove(0);
        let mut s = State::default();
        s.push(pending(1, "k", &f));
        assert!(s.next_due().is_none());
        assert_eq!(s.take_ready().unwrap().seq, 1);
    }
}
