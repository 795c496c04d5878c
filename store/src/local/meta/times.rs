//! Times kept beside keys (`t` table): last access and a directory's last entry change. They
//! are not versions (reading never makes a version) and are written lazily: an insert that
//! the next group commit or flusher pass makes durable, never a sync of its own.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::Meta;
use crate::error::Result;
use crate::local::records::{decode, encode, key_times_key, KeyTimesRecord};
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
        let row = key_times_key(key);
        let now = self.key_times(key)?.updated(times);
        let rec = KeyTimesRecord {
            accessed: to_nanos(now.accessed),
            changed: to_nanos(now.changed),
        };
        let mut txn = super::Txn::new();
        txn.insert(row, encode(&rec)?);
        self.write_rows(txn)
    }
}
