//! Rows kept beside the keys' versions. Times (`t` table): last access and a directory's last
//! entry change. They are not versions (reading never makes a version) and are written
//! lazily: an insert that the next group commit or flusher pass makes durable, never a sync of
//! its own. Store records (`r` table): named snapshots, the retention policy, restore
//! checkpoints, written through the log like every row.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::rollup::{access_bucket, Event};
use super::Meta;
use crate::error::Result;
use crate::local::records::{
    decode, encode, key_times_key, store_record_key, KeyTimesRecord, StoreRecordRow,
};
use crate::types::KeyTimes;

fn to_nanos(t: Option<SystemTime>) -> u64 {
    t.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| {
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1)
        })
}

fn from_nanos(n: u64) -> Option<SystemTime> {
    (n != 0).then(|| UNIX_EPOCH + Duration::from_nanos(n))
}

impl Meta {
    /// The times recorded beside `key`.
    pub fn key_times(&self, key: &str) -> Result<KeyTimes> {
        Ok(match self.tables.get(&key_times_key(key))? {
            Some(v) => {
                let r: KeyTimesRecord = decode(&v)?;
                KeyTimes {
                    accessed: from_nanos(r.accessed),
                    changed: from_nanos(r.changed),
                }
            }
            None => KeyTimes::default(),
        })
    }

    /// Records `times` beside `key` (each time given replaces the recorded one).
    pub fn set_key_times(&self, key: &str, times: KeyTimes) -> Result<()> {
        // Under the commit lock: a live key's access day is a rollup bucket.
        let _state = self.lock();
        let row = key_times_key(key);
        let old = self.key_times(key)?;
        let now = old.updated(times);
        let rec = KeyTimesRecord {
            accessed: to_nanos(now.accessed),
            changed: to_nanos(now.changed),
        };
        let mut txn = super::Txn::new();
        if let Some(cur) = self.current(key)? {
            // The buckets of the current version before and after (see `access_bucket`).
            let vt = (cur.version >> 64) as u64;
            let from = access_bucket(to_nanos(old.accessed), vt);
            let to = access_bucket(rec.accessed, vt);
            if from != to {
                txn.events.push(Event::Access {
                    key: key.into(),
                    size: cur.size,
                    from,
                    to,
                });
            }
        }
        txn.insert(row, encode(&rec)?);
        self.write_rows(txn)
    }
}

impl Meta {
    /// A store record, if any.
    pub fn store_record(&self, name: &str) -> Result<Option<Vec<u8>>> {
        match self.tables.get(&store_record_key(name))? {
            Some(v) => Ok(Some(decode::<StoreRecordRow>(&v)?.value)),
            None => Ok(None),
        }
    }

    /// Writes (`Some`) or removes (`None`) a store record: in the log when this returns, in
    /// sled with the next checkpoint.
    pub fn set_store_record(&self, name: &str, value: Option<Vec<u8>>) -> Result<()> {
        // Under the commit lock, as [`Meta::update_store_record`] is.
        let _state = self.lock();
        let mut txn = super::Txn::new();
        match value {
            Some(value) => txn.insert(store_record_key(name), encode(&StoreRecordRow { value })?),
            None => txn.remove(store_record_key(name)),
        }
        self.write_rows(txn)
    }

    /// The store records whose names start with `prefix`, by name.
    pub fn store_records(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let mut out = Vec::new();
        for row in self.scan_prefix(store_record_key(prefix)) {
            let (k, v) = row?;
            let name =
                String::from_utf8(k[1..].to_vec()).map_err(|_| crate::StoreError::Corrupt {
                    what: format!("store record name {:?} is not UTF-8", &k[1..]),
                })?;
            out.push((name, decode::<StoreRecordRow>(&v)?.value));
        }
        Ok(out)
    }

    /// Rewrites store record `name` with `f` when it exists, atomically with respect to
    /// [`Meta::set_store_record`] (a record removed meanwhile stays removed). Returns whether
    /// it existed.
    pub fn update_store_record(
        &self,
        name: &str,
        f: impl FnOnce(&[u8]) -> Result<Vec<u8>>,
    ) -> Result<bool> {
        let _state = self.lock();
        let Some(old) = self.store_record(name)? else {
            return Ok(false);
        };
        let mut txn = super::Txn::new();
        txn.insert(
            store_record_key(name),
            encode(&StoreRecordRow { value: f(&old)? })?,
        );
        self.write_rows(txn)?;
        Ok(true)
    }
}
