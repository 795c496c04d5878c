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

    /// Reads the policy record's bytes.
    pub fn decode(bytes: &[u8]) -> Result<Policy> {
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

/// What expiry needs to know of one version of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionFacts {
    /// When it was made (the store's version time).
    pub modified: SystemTime,
    pub delete_marker: bool,
}

/// Why a version is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// The current version of a live key.
    Current,
    /// It stopped being current less than `keep_all` ago.
    Recent,
    /// It was current at a moment the policy keeps complete (an hour or day boundary).
    Moment,
    /// The last version of a deleted key, within `deleted` of the delete.
    Deleted,
    /// A named snapshot sees it; `only` names the one snapshot (an index into the snapshot
    /// moments) when exactly one does.
    Snapshot { only: Option<usize> },
    /// A delete marker with a kept version older than it (without the marker, that version
    /// would show at moments when the key was deleted). `only` when every older kept version
    /// is kept by that one snapshot alone.
    Marker { only: Option<usize> },
}

impl Keep {
    /// The snapshot that alone keeps this version, if any (what deleting it would free).
    pub fn only_snapshot(self) -> Option<usize> {
        match self {
            Keep::Snapshot { only } | Keep::Marker { only } => only,
            _ => None,
        }
    }
}

/// What to do with one version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Keep(Keep),
    Expire,
}

/// The policy applied at one moment, with the snapshots of the store: decides, key by key,
/// which versions expire. Pure: the same facts give the same decisions.
///
/// A version's life is from its `modified` to the `modified` of the next newer version (the
/// current version's never ends); its age is how long ago its life ended. It is kept when
/// any of these holds: it is the current version of a live key; its age is at most
/// `keep_all`; its life holds one of the moments the policy keeps complete
/// ([`Policy::complete_moments`]: per hour, then per day, the version current at the end of
/// that hour or day); it is the last version of a deleted key and the delete is at most
/// `deleted` old; its life holds a named snapshot's moment. A delete marker is kept when any
/// older version is kept. So every complete moment and every snapshot's moment reads the same
/// version after expiry as before, and expiring again expires nothing more.
#[derive(Debug, Clone)]
pub struct Expiry {
    policy: Policy,
    now: SystemTime,
    /// The complete moments, oldest first.
    moments: Vec<SystemTime>,
    /// The snapshots' moments, oldest first, with their index as given.
    snapshots: Vec<(SystemTime, usize)>,
}

/// The state of "something older is kept" while a key's versions are walked oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Older {
    Nothing,
    /// Kept only by this snapshot.
    Only(usize),
    /// Kept by the policy or by several snapshots.
    Shared,
}

impl Older {
    fn add(self, keep: Keep) -> Older {
        match (self, keep.only_snapshot()) {
            (Older::Nothing, Some(i)) => Older::Only(i),
            (Older::Only(j), Some(i)) if i == j => Older::Only(i),
            _ => Older::Shared,
        }
    }
}

impl Expiry {
    /// `snapshot_moments` in any order; [`Keep::Snapshot`] names them by their index here.
    pub fn new(policy: &Policy, snapshot_moments: &[SystemTime], now: SystemTime) -> Expiry {
        let mut moments = policy.complete_moments(now, UNIX_EPOCH);
        moments.reverse();
        let mut snapshots: Vec<(SystemTime, usize)> = snapshot_moments
            .iter()
            .copied()
            .enumerate()
            .map(|(i, t)| (t, i))
            .collect();
        snapshots.sort();
        Expiry {
            policy: *policy,
            now,
            moments,
            snapshots,
        }
    }

    /// Whether one of the complete moments lies in `[from, to)`.
    fn complete_moment_in(&self, from: SystemTime, to: SystemTime) -> bool {
        let i = self.moments.partition_point(|m| *m < from);
        self.moments.get(i).is_some_and(|m| *m < to)
    }

    /// The snapshots whose moment lies in `[from, to)`: `None` if none, else
    /// `Some(only)` as in [`Keep::Snapshot`].
    fn snapshots_in(&self, from: SystemTime, to: SystemTime) -> Option<Option<usize>> {
        let i = self.snapshots.partition_point(|(m, _)| *m < from);
        let mut seen = self.snapshots[i..].iter().take_while(|(m, _)| *m < to);
        let first = seen.next()?;
        Some(match seen.next() {
            None => Some(first.1),
            Some(_) => None,
        })
    }

    fn age(&self, ended: SystemTime) -> Duration {
        self.now.duration_since(ended).unwrap_or(Duration::ZERO)
    }

    /// Why the data version `i` of `versions` (newest first) is kept, if it is.
    fn keep_data(&self, versions: &[VersionFacts], i: usize) -> Option<Keep> {
        if i == 0 {
            return Some(Keep::Current);
        }
        let (from, to) = (versions[i].modified, versions[i - 1].modified);
        if self.age(to) <= self.policy.keep_all {
            return Some(Keep::Recent);
        }
        if self.complete_moment_in(from, to) {
            return Some(Keep::Moment);
        }
        let deleted_key = versions[..i].iter().all(|v| v.delete_marker);
        if deleted_key && self.age(to) <= self.policy.deleted {
            return Some(Keep::Deleted);
        }
        self.snapshots_in(from, to)
            .map(|only| Keep::Snapshot { only })
    }

    /// The decisions for one key's versions, newest first (the order of `list_versions`),
    /// one per version.
    pub fn decide(&self, versions: &[VersionFacts]) -> Vec<Decision> {
        let mut out = vec![Decision::Expire; versions.len()];
        let mut older = Older::Nothing;
        for i in (0..versions.len()).rev() {
            let keep = if versions[i].delete_marker {
                match older {
                    Older::Nothing => None,
                    Older::Only(s) => Some(Keep::Marker { only: Some(s) }),
                    Older::Shared => Some(Keep::Marker { only: None }),
                }
            } else {
                self.keep_data(versions, i)
            };
            if let Some(k) = keep {
                out[i] = Decision::Keep(k);
                older = older.add(k);
            }
        }
        out
    }
}

/// The decisions for one key's versions (newest first) under `policy` at `now`, with named
/// snapshots at `snapshot_moments` (see [`Expiry`]).
pub fn expire(
    versions_newest_first: &[VersionFacts],
    policy: &Policy,
    snapshot_moments: &[SystemTime],
    now: SystemTime,
) -> Vec<Decision> {
    Expiry::new(policy, snapshot_moments, now).decide(versions_newest_first)
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

    // ---- expiry ----

    use proptest::prelude::*;

    fn at(s: &str) -> SystemTime {
        crate::history::time::parse_absolute(s).unwrap()
    }

    fn data(t: &str) -> VersionFacts {
        VersionFacts {
            modified: at(t),
            delete_marker: false,
        }
    }

    fn marker(t: &str) -> VersionFacts {
        VersionFacts {
            modified: at(t),
            delete_marker: true,
        }
    }

    fn kept(d: &[Decision]) -> Vec<bool> {
        d.iter().map(|d| matches!(d, Decision::Keep(_))).collect()
    }

    #[test]
    fn hourly_keeps_the_version_current_at_the_end_of_each_hour() {
        let p = Policy {
            keep_all: HOUR,
            hourly: 7 * DAY,
            daily: 7 * DAY,
            deleted: DAY,
        };
        let now = at("2026-11-30T12:00:00Z");
        // Newest first: four versions in the 08:00-09:00 hour, one in the next.
        let vs = [
            data("2026-11-30T09:30:00Z"),
            data("2026-11-30T08:50:00Z"),
            data("2026-11-30T08:40:00Z"),
            data("2026-11-30T08:20:00Z"),
            data("2026-11-30T08:10:00Z"),
        ];
        let d = expire(&vs, &p, &[], now);
        assert_eq!(d[0], Decision::Keep(Keep::Current));
        // 08:50 was current at 09:00; the others of that hour were not current at a boundary.
        assert_eq!(d[1], Decision::Keep(Keep::Moment));
        assert_eq!(kept(&d), [true, true, false, false, false]);
        // Within keep_all of now, everything is kept.
        let d = expire(&vs, &p, &[], at("2026-11-30T09:15:00Z"));
        assert_eq!(kept(&d), [true, true, true, true, true]);
        // 08:20's life ended at 08:40, more than keep_all before 09:45.
        let d = expire(&vs, &p, &[], at("2026-11-30T09:45:00Z"));
        assert_eq!(kept(&d), [true, true, true, false, false]);
        // A snapshot at 08:25 keeps 08:20 for itself alone.
        let d = expire(&vs, &p, &[at("2026-11-30T08:25:00Z")], now);
        assert_eq!(d[3], Decision::Keep(Keep::Snapshot { only: Some(0) }));
        assert_eq!(kept(&d), [true, true, false, true, false]);
        // Two snapshots seeing the same version share it.
        let two = [at("2026-11-30T08:25:00Z"), at("2026-11-30T08:30:00Z")];
        let d = expire(&vs, &p, &two, now);
        assert_eq!(d[3], Decision::Keep(Keep::Snapshot { only: None }));
    }

    #[test]
    fn daily_then_nothing_beyond_the_daily_tier() {
        let p = Policy {
            keep_all: HOUR,
            hourly: DAY,
            daily: 11 * DAY,
            deleted: DAY,
        };
        // The oldest complete moment is midnight of 11-20, 10.5 days before now.
        let now = at("2026-11-30T12:00:00Z");
        let vs = [
            data("2026-11-20T12:00:00Z"),
            data("2026-11-20T06:00:00Z"), // made after midnight, replaced before the next
            data("2026-11-19T18:00:00Z"), // current at 11-20T00:00
            data("2026-11-19T12:00:00Z"),
            data("2026-11-01T12:00:00Z"), // current at midnights 11-02 .. 11-19: too old
            data("2026-10-01T00:00:00Z"),
        ];
        let d = expire(&vs, &p, &[], now);
        assert_eq!(kept(&d), [true, false, true, false, false, false]);
        assert_eq!(d[2], Decision::Keep(Keep::Moment));
    }

    #[test]
    fn deleted_keys_keep_their_last_version_then_go_whole() {
        let p = Policy {
            keep_all: HOUR,
            hourly: HOUR,
            daily: HOUR,
            deleted: 3 * DAY,
        };
        let vs = [
            marker("2026-11-20T12:00:30Z"),
            data("2026-11-20T12:00:20Z"),
            data("2026-11-20T12:00:10Z"),
        ];
        let d = expire(&vs, &p, &[], at("2026-11-22T12:00:00Z"));
        assert_eq!(
            d,
            [
                Decision::Keep(Keep::Marker { only: None }),
                Decision::Keep(Keep::Deleted),
                Decision::Expire
            ]
        );
        // After `deleted`, nothing of the key is left (the marker alone would hide nothing).
        let d = expire(&vs, &p, &[], at("2026-11-24T12:00:00Z"));
        assert_eq!(kept(&d), [false, false, false]);
        // A snapshot before the delete keeps the version and the marker, for itself.
        let snap = [at("2026-11-20T12:00:25Z")];
        let d = expire(&vs, &p, &snap, at("2026-11-24T12:00:00Z"));
        assert_eq!(
            d,
            [
                Decision::Keep(Keep::Marker { only: Some(0) }),
                Decision::Keep(Keep::Snapshot { only: Some(0) }),
                Decision::Expire
            ]
        );
    }

    /// The version (index into `vs`) a reader sees at `m` among the versions `keep` keeps:
    /// `None` when there is none or it is a delete marker.
    fn read_at(vs: &[VersionFacts], keep: &[bool], m: SystemTime) -> Option<usize> {
        let i = (0..vs.len()).find(|&i| keep[i] && vs[i].modified <= m)?;
        (!vs[i].delete_marker).then_some(i)
    }

    fn arb_case() -> impl Strategy<Value = (Vec<VersionFacts>, Policy, Vec<SystemTime>, SystemTime)>
    {
        let gap = prop_oneof![0..120u64, 0..7200u64, 0..400_000u64, 0..20_000_000u64];
        (
            prop::collection::vec((gap.clone(), prop::bool::weighted(0.25)), 1..24),
            (
                0..3 * 86_400u64,
                0..30 * 86_400u64,
                0..200 * 86_400u64,
                0..120 * 86_400u64,
            ),
            prop::collection::vec(0..1000u32, 0..4),
            gap,
        )
            .prop_map(|(steps, (a, h, d, del), snaps, tail)| {
                let base = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
                let mut t = base;
                let mut oldest_first = Vec::new();
                for (g, m) in steps {
                    t += Duration::from_secs(g);
                    oldest_first.push(VersionFacts {
                        modified: t,
                        delete_marker: m,
                    });
                }
                let now = t + Duration::from_secs(tail);
                let span = now.duration_since(base).unwrap();
                let snaps = snaps.into_iter().map(|s| base + span * s / 1000).collect();
                let s = Duration::from_secs;
                let policy = Policy {
                    keep_all: s(a),
                    hourly: s(a + h),
                    daily: s(a + h + d),
                    deleted: s(del),
                };
                oldest_first.reverse();
                (oldest_first, policy, snaps, now)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn expiry_keeps_what_the_policy_promises((vs, policy, snaps, now) in arb_case()) {
            let d = expire(&vs, &policy, &snaps, now);
            prop_assert_eq!(d.len(), vs.len());
            let keep = kept(&d);
            // The current version of a live key is never expired.
            if !vs[0].delete_marker {
                prop_assert_eq!(d[0], Decision::Keep(Keep::Current));
            }
            // Every complete moment, every snapshot moment and every moment within keep_all
            // reads the same version as before.
            let all = vec![true; vs.len()];
            let mut moments = policy.complete_moments(now, UNIX_EPOCH);
            moments.extend(&snaps);
            let recent = now.checked_sub(policy.keep_all).unwrap_or(UNIX_EPOCH);
            moments.extend([recent, recent + (now.duration_since(recent).unwrap() / 2), now]);
            moments.extend(vs.iter().map(|v| v.modified).filter(|t| *t >= recent));
            for m in moments {
                prop_assert_eq!(read_at(&vs, &all, m), read_at(&vs, &keep, m), "at {:?}", m);
            }
            // A deleted key's last version stays for `deleted` after the delete.
            if let Some(j) = vs.iter().position(|v| !v.delete_marker) {
                if j > 0 && now.duration_since(vs[j - 1].modified).unwrap_or_default() <= policy.deleted {
                    prop_assert!(keep[j]);
                }
            }
            // Markers are kept exactly when something older is.
            for i in 0..vs.len() {
                if vs[i].delete_marker {
                    prop_assert_eq!(keep[i], keep[i + 1..].iter().any(|k| *k));
                }
            }
            // Expiring again expires nothing more.
            let rest: Vec<VersionFacts> =
                vs.iter().zip(&keep).filter(|(_, k)| **k).map(|(v, _)| *v).collect();
            let again = expire(&rest, &policy, &snaps, now);
            prop_assert!(again.iter().all(|d| matches!(d, Decision::Keep(_))), "{:?}", again);
        }

        #[test]
        fn only_names_the_one_snapshot_whose_loss_would_expire_it(
            (vs, policy, snaps, now) in arb_case()
        ) {
            let d = expire(&vs, &policy, &snaps, now);
            for (s, _) in snaps.iter().enumerate() {
                let others: Vec<SystemTime> = snaps
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != s)
                    .map(|(_, t)| *t)
                    .collect();
                let without = expire(&vs, &policy, &others, now);
                for i in 0..vs.len() {
                    let only_s = matches!(d[i], Decision::Keep(k) if k.only_snapshot() == Some(s));
                    if only_s {
                        prop_assert_eq!(without[i], Decision::Expire, "version {}", i);
                    }
                }
            }
        }
    }
}
