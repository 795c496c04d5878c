//! The retention policy: which past versions a store keeps, so that history's cost stays
//! bounded. The policy is a store record (`retention`, JSON with a format number); this module
//! holds its type, its default, its record, and the moments it keeps complete (what
//! `.snapshots/` lists). Deciding which versions to expire is a pure function of a key's
//! versions, the policy, the snapshots and the time (see `expire`), applied by gc.
//!
//! The policy, by tiers of age (a version's age is how long ago it stopped being current):
//! every version younger than `keep_all`; then one per hour (the last current in each hour)
//! until `hourly`; then one per day until `daily`. The current version of a live key is always
//! kept; the last version of a deleted key is kept for `deleted` after the delete. Named
//! snapshots keep every version they see.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};
use crate::store::ObjectStore;

/// The record that holds the policy.
pub const RECORD: &str = "retention";

/// The record format this build writes.
const FORMAT: u32 = 1;

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

/// How long history is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Every version is kept this long after it stopped being current.
    pub keep_all: Duration,
    /// Then one version per hour, until this age.
    pub hourly: Duration,
    /// Then one version per day, until this age.
    pub daily: Duration,
    /// The last version of a deleted key is kept this long after the delete.
    pub deleted: Duration,
}

impl Default for Policy {
    /// 24 hours of every version, one per hour for 7 days, one per day for 90 days; a deleted
    /// key's last version for 90 days.
    fn default() -> Policy {
        Policy {
            keep_all: DAY,
            hourly: 7 * DAY,
            daily: 90 * DAY,
            deleted: 90 * DAY,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Record {
    format: u32,
    keep_all_s: u64,
    hourly_s: u64,
    daily_s: u64,
    deleted_s: u64,
}

impl Policy {
    /// Checks that the tiers are in order (`keep_all <= hourly <= daily`).
    pub fn check(&self) -> Result<()> {
        if self.keep_all > self.hourly || self.hourly > self.daily {
            return Err(StoreError::InvalidArgument(format!(
                "retention tiers must grow: keep-all {} <= hourly {} <= daily {}",
                humantime::format_duration(self.keep_all),
                humantime::format_duration(self.hourly),
                humantime::format_duration(self.daily)
            )));
        }
        Ok(())
    }

    fn encode(&self) -> Result<Bytes> {
        let rec = Record {
            format: FORMAT,
            keep_all_s: self.keep_all.as_secs(),
            hourly_s: self.hourly.as_secs(),
            daily_s: self.daily.as_secs(),
            deleted_s: self.deleted.as_secs(),
        };
        serde_json::to_vec(&rec)
            .map(Bytes::from)
            .map_err(|e| StoreError::Metadata(format!("retention policy: {e}")))
    }

    fn decode(bytes: &[u8]) -> Result<Policy> {
        let corrupt = |why: String| StoreError::Corrupt {
            what: format!("store record {RECORD}: {why}"),
        };
        let rec: Record = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
        if rec.format != FORMAT {
            return Err(corrupt(format!(
                "format {} (this build reads format {FORMAT})",
                rec.format
            )));
        }
        Ok(Policy {
            keep_all: Duration::from_secs(rec.keep_all_s),
            hourly: Duration::from_secs(rec.hourly_s),
            daily: Duration::from_secs(rec.daily_s),
            deleted: Duration::from_secs(rec.deleted_s),
        })
    }

    /// The moments this policy keeps complete at `now`, newest first: every hour boundary
    /// within `hourly`, then every day boundary (UTC midnight) within `daily`. (Any moment
    /// within `keep_all` is complete too; those are not listed one by one.) A moment before
    /// `since` (the store's creation) is not listed.
    pub fn complete_moments(&self, now: SystemTime, since: SystemTime) -> Vec<SystemTime> {
        let mut out = Vec::new();
        let floor = |t: SystemTime, step: Duration| {
            let s = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
            UNIX_EPOCH + Duration::from_secs(s - s % step.as_secs())
        };
        let mut t = floor(now, HOUR);
        while now.duration_since(t).unwrap_or_default() <= self.hourly && t >= since {
            out.push(t);
            t -= HOUR;
        }
        let mut d = floor(t, DAY);
        while now.duration_since(d).unwrap_or_default() <= self.daily && d >= since {
            if out.last() != Some(&d) {
                out.push(d);
            }
            d -= DAY;
        }
        out
    }
}

/// The store's policy: its record, or the default when none was set.
pub async fn load(store: &dyn ObjectStore) -> Result<Policy> {
    match store.get_record(RECORD).await? {
        Some(bytes) => Policy::decode(&bytes),
        None => Ok(Policy::default()),
    }
}

/// Sets the store's policy (durably: it decides what gc may delete).
pub async fn save(store: &dyn ObjectStore, policy: &Policy) -> Result<()> {
    policy.check()?;
    store.put_record(RECORD, Some(policy.encode()?), true).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryStore;

    #[tokio::test]
    async fn default_until_set_then_round_trips() {
        let store = MemoryStore::new();
        assert_eq!(load(&store).await.unwrap(), Policy::default());
        let p = Policy {
            keep_all: Duration::from_secs(600),
            hourly: Duration::from_secs(600),
            daily: DAY,
            deleted: DAY,
        };
        save(&store, &p).await.unwrap();
        assert_eq!(load(&store).await.unwrap(), p);
        let bad = Policy {
            keep_all: DAY,
            hourly: HOUR,
            ..p
        };
        assert!(save(&store, &bad).await.is_err());
        assert_eq!(load(&store).await.unwrap(), p);
    }

    #[test]
    fn complete_moments_are_hours_then_days() {
        let now = crate::history::time::parse_absolute("2026-11-30T12:34:56Z").unwrap();
        let m = Policy::default().complete_moments(now, UNIX_EPOCH);
        let fmt = |t| crate::history::time::format_rfc3339(t);
        assert_eq!(fmt(m[0]), "2026-11-30T12:00:00Z");
        assert_eq!(fmt(m[1]), "2026-11-30T11:00:00Z");
        // 7 days of hours (the first boundary is within the hour of now), then days.
        assert_eq!(
            m.iter()
                .filter(|t| now.duration_since(**t).unwrap() <= 7 * DAY)
                .count(),
            168
        );
        assert!(
            m.windows(2).all(|w| w[0] > w[1]),
            "newest first, no repeats"
        );
        let last = *m.last().unwrap();
        assert!(now.duration_since(last).unwrap() <= 90 * DAY);
        assert!(now.duration_since(last).unwrap() > 89 * DAY);
        // Nothing before the store existed.
        let since = now - 2 * HOUR;
        assert_eq!(Policy::default().complete_moments(now, since).len(), 2);
    }
}
