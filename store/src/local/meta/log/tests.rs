//! The log's format, its recovery rules, and a power-loss model: the real writer runs over
//! simulated files that lose every write not followed by an fsync (in part, torn, or with
//! later writes surviving earlier ones, as a page cache may), together with simulated data
//! writes, and recovery must return exactly a prefix of the commits that includes every
//! synced one and never a commit whose data is missing.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::{Arc, Mutex};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

fn batch(seq: u64, n: u8, fresh: &[u64]) -> Batch {
    Batch {
        seq,
        ops: (0..n)
            .map(|i| {
                let k = IVec::from(vec![b'k', i, seq as u8]);
                if i % 3 == 2 {
                    (k, None)
                } else {
                    (k, Some(IVec::from(vec![i; i as usize * 7])))
                }
            })
            .collect(),
        fresh_blobs: fresh.to_vec(),
    }
}

fn segment(id: u64, records: &[Record]) -> Vec<u8> {
    let first = records.first().map_or(1, Record::seq);
    let mut out = header(id, first).to_vec();
    for r in records {
        encode(r, &mut out);
    }
    out
}

#[test]
fn records_round_trip() {
    let recs = vec![
        Record::Batch(batch(1, 5, &[7, 9])),
        Record::Synced { seq: 2, through: 1 },
        Record::Batch(batch(3, 0, &[])),
    ];
    let img = segment(4, &recs);
    let read = read_segment(4, &img);
    assert_eq!(read.tear, None);
    assert_eq!(read.first_seq, Some(1));
    assert_eq!(read.records, recs);
}

#[test]
fn a_torn_or_corrupt_tail_ends_the_log() {
    let recs = vec![
        Record::Batch(batch(1, 4, &[])),
        Record::Batch(batch(2, 4, &[])),
    ];
    let img = segment(1, &recs);
    // Every truncation inside the second record keeps exactly the first.
    let first_end = segment(1, &recs[..1]).len();
    for cut in first_end + 1..img.len() {
        let SegmentRead {
            records: got, tear, ..
        } = read_segment(1, &img[..cut]);
        assert_eq!(got, recs[..1], "cut at {cut}");
        assert!(tear.is_some(), "cut at {cut}");
    }
    // A flipped byte in the second record's body fails its checksum.
    let mut bad = img.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x40;
    let SegmentRead {
        records: got, tear, ..
    } = read_segment(1, &bad);
    assert_eq!(got, recs[..1]);
    assert_eq!(
        tear.map(|t| t.reason),
        Some("checksum mismatch".to_string())
    );
    // Zeros (a hole a crash left) are not a record.
    let mut holed = segment(1, &recs[..1]);
    holed.extend_from_slice(&[0u8; 64]);
    let SegmentRead {
        records: got, tear, ..
    } = read_segment(1, &holed);
    assert_eq!(got, recs[..1]);
    assert!(tear.is_some());
    // A header of another segment, or of another format, is refused.
    assert!(read_segment(2, &img).tear.is_some());
    let mut other = img.clone();
    other[8] = 9;
    assert!(read_segment(1, &other).tear.is_some());
}

#[test]
fn recovery_splits_trusted_from_suspect_and_stops_at_gaps() {
    let s1 = segment(
        1,
        &[
            Record::Batch(batch(1, 2, &[])),
            Record::Batch(batch(2, 2, &[5])),
            Record::Synced { seq: 3, through: 2 },
            Record::Batch(batch(4, 2, &[6])),
        ],
    );
    let s2 = segment(2, &[Record::Batch(batch(5, 1, &[]))]);
    let r = recover(1, &[(1, s1.clone()), (2, s2)]).unwrap();
    assert_eq!(r.trusted.iter().map(|b| b.seq).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(r.suspect.iter().map(|b| b.seq).collect::<Vec<_>>(), [4, 5]);
    assert_eq!(r.last_seq, 5);
    // A segment whose first record does not follow the previous one's last is a gap: stop.
    let s2 = segment(2, &[Record::Batch(batch(9, 1, &[]))]);
    let r = recover(1, &[(1, s1.clone()), (2, s2)]).unwrap();
    assert_eq!(r.suspect.iter().map(|b| b.seq).collect::<Vec<_>>(), [4]);
    assert!(r.tear.is_some());
    // So is a missing segment.
    let s3 = segment(3, &[Record::Batch(batch(5, 1, &[]))]);
    let r = recover(1, &[(1, s1.clone()), (3, s3)]).unwrap();
    assert_eq!(r.suspect.iter().map(|b| b.seq).collect::<Vec<_>>(), [4]);
    assert!(r.tear.is_some());
    // A synced mark beyond the last record means fsynced records are gone: corruption.
    let lying = segment(
        1,
        &[
            Record::Batch(batch(1, 1, &[])),
            Record::Synced { seq: 2, through: 7 },
        ],
    );
    assert!(recover(1, &[(1, lying)]).is_err());
    // Verification keeps a prefix.
    let (kept, dropped) = keep_verified(r.suspect, |b| b.seq != 4);
    assert!(kept.is_empty());
    assert_eq!(dropped, 1);
}

// ---- the power-loss model ----

/// One simulated file: bytes an fsync made durable, and writes since.
#[derive(Default, Clone)]
struct SimFile {
    durable: Vec<u8>,
    pending: Vec<(u64, Vec<u8>)>,
}

fn put_at(bytes: &mut Vec<u8>, off: u64, data: &[u8]) {
    let end = off as usize + data.len();
    if bytes.len() < end {
        bytes.resize(end, 0);
    }
    bytes[off as usize..end].copy_from_slice(data);
}

impl SimFile {
    fn write(&mut self, off: u64, data: &[u8]) {
        self.pending.push((off, data.to_vec()));
    }
    fn sync(&mut self) {
        for (off, data) in std::mem::take(&mut self.pending) {
            put_at(&mut self.durable, off, &data);
        }
    }
    /// What a power loss leaves: the durable bytes, then each pending write kept whole,
    /// torn, or lost, independently (a later one may survive an earlier one).
    fn crash(&self, rng: &mut StdRng) -> Vec<u8> {
        let mut out = self.durable.clone();
        for (off, data) in &self.pending {
            match rng.random_range(0..4) {
                0 => {}
                1 => {
                    let n = rng.random_range(0..=data.len());
                    put_at(&mut out, *off, &data[..n]);
                }
                _ => put_at(&mut out, *off, data),
            }
        }
        out
    }
}

#[derive(Default)]
struct SimState {
    files: BTreeMap<u64, SimFile>,
    /// Segments whose directory entry is durable.
    named: BTreeSet<u64>,
}

#[derive(Clone, Default)]
struct SimDir(Arc<Mutex<SimState>>);

struct SimHandle {
    id: u64,
    dir: SimDir,
}

impl LogFile for SimHandle {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut s = self.dir.0.lock().unwrap();
        s.files.entry(self.id).or_default().write(offset, buf);
        Ok(())
    }
    fn sync_data(&self) -> io::Result<()> {
        let mut s = self.dir.0.lock().unwrap();
        s.files.entry(self.id).or_default().sync();
        Ok(())
    }
}

impl LogDir for SimDir {
    type File = SimHandle;
    fn create(&self, id: u64) -> io::Result<SimHandle> {
        let mut s = self.0.lock().unwrap();
        if s.files.contains_key(&id) {
            return Err(io::ErrorKind::AlreadyExists.into());
        }
        s.files.insert(id, SimFile::default());
        Ok(SimHandle {
            id,
            dir: self.clone(),
        })
    }
    fn sync_dir(&self) -> io::Result<()> {
        let mut s = self.0.lock().unwrap();
        let ids: Vec<u64> = s.files.keys().copied().collect();
        s.named.extend(ids);
        Ok(())
    }
    fn remove(&self, id: u64) -> io::Result<()> {
        self.0.lock().unwrap().files.remove(&id);
        Ok(())
    }
}

impl SimDir {
    /// The segment images after a power loss (a segment whose name was never synced may be
    /// gone entirely).
    fn crash(&self, rng: &mut StdRng) -> Vec<(u64, Vec<u8>)> {
        let s = self.0.lock().unwrap();
        let mut out = Vec::new();
        for (id, f) in &s.files {
            if s.named.contains(id) || rng.random_bool(0.5) {
                out.push((*id, f.crash(rng)));
            }
        }
        out
    }
}

/// One crash scenario: random commits (some with fresh data written first), group syncs
/// (data, then log, then the synced mark) and rotations, then a power loss.
fn scenario(seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = Arc::new(SimDir::default());
    let mut w = LogWriter::create(dir.clone(), 1, 1).unwrap();
    // The data volume: blob id -> (offset, bytes); one simulated file.
    let mut data = SimFile::default();
    let mut blobs: BTreeMap<u64, (u64, Vec<u8>)> = BTreeMap::new();
    let mut data_len = 0u64;
    let mut next_blob = 1u64;
    let mut committed: Vec<u64> = Vec::new();
    let mut synced_through = 0u64;
    for _ in 0..rng.random_range(1..60) {
        match rng.random_range(0..10) {
            0..=6 => {
                let mut fresh = Vec::new();
                for _ in 0..rng.random_range(0..3) {
                    let bytes: Vec<u8> = (0..rng.random_range(1..200))
                        .map(|_| rng.random())
                        .collect();
                    data.write(data_len, &bytes);
                    blobs.insert(next_blob, (data_len, bytes.clone()));
                    data_len += bytes.len() as u64;
                    fresh.push(next_blob);
                    next_blob += 1;
                }
                let mut b = batch(0, rng.random_range(1..6), &fresh);
                w.append(&mut b).unwrap();
                committed.push(b.seq);
            }
            7 | 8 => {
                data.sync();
                let h = w.sync_handles();
                h.run(&*dir).unwrap();
                synced_through = h.through;
                w.append_synced(h.through).unwrap();
            }
            _ => {
                w.rotate().unwrap();
            }
        }
    }
    let images = dir.crash(&mut rng);
    let surviving_data = data.crash(&mut rng);
    let r = recover(1, &images).unwrap_or_else(|e| panic!("seed {seed}: recovery failed: {e}"));
    let (kept, _) = keep_verified(r.suspect, |b| {
        b.fresh_blobs.iter().all(|id| {
            let (off, bytes) = &blobs[id];
            surviving_data.get(*off as usize..*off as usize + bytes.len()) == Some(&bytes[..])
        })
    });
    let got: Vec<u64> = r.trusted.iter().chain(&kept).map(|b| b.seq).collect();
    // A prefix of what was committed...
    assert_eq!(got[..], committed[..got.len()], "seed {seed}: not a prefix");
    // ...that holds every commit a sync covered...
    let synced = committed.iter().filter(|s| **s <= synced_through).count();
    assert!(
        got.len() >= synced,
        "seed {seed}: lost synced commits ({} < {synced})",
        got.len()
    );
    // ...and never a commit whose data is missing.
    for b in r.trusted.iter().chain(&kept) {
        for id in &b.fresh_blobs {
            let (off, bytes) = &blobs[id];
            assert_eq!(
                surviving_data.get(*off as usize..*off as usize + bytes.len()),
                Some(&bytes[..]),
                "seed {seed}: commit {} kept without its blob {id}",
                b.seq
            );
        }
    }
}

#[test]
fn power_loss_keeps_a_verified_prefix_with_every_synced_commit() {
    let base: u64 = std::env::var("OBJFS_LOG_MODEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed);
    let rounds: u64 = std::env::var("OBJFS_LOG_MODEL_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000);
    for i in 0..rounds {
        scenario(base.wrapping_add(i));
    }
}
