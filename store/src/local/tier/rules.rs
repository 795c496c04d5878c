//! Lifecycle rules (the store record `lifecycle`, JSON): which versions are cold enough for the
//! remote tier. Pure: [`LifecycleRules::selects`] decides from a version's facts and the time.
//!
//! A rule names a key prefix and ages. A *current* version is selected when its age is at
//! least `after`: the time since it was written (`by: modified`; the version's time in the
//! store, not a POSIX mtime), or since the key was last read or written (`by: accessed`, the
//! relatime record). A *noncurrent* version is selected when it has been noncurrent for at
//! least `noncurrent_after`, or, without that, by the same `after` as a current one (its age
//! since written). A version is selected when any rule selects it.

use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};

/// The store record holding the rules.
pub const RECORD: &str = "lifecycle";

/// The format of [`LifecycleRules`] this build writes.
pub const RULES_FORMAT: u32 = 1;

/// What a rule's age counts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgeBy {
    /// When the version was written.
    Modified,
    /// When the key was last accessed (or the version written, if later).
    Accessed,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// Keys starting with this (empty: every key).
    pub prefix: String,
    /// Age after which a current version tiers (seconds).
    pub after_secs: u64,
    /// Time after becoming noncurrent after which a noncurrent version tiers (seconds).
    pub noncurrent_after_secs: Option<u64>,
    pub by: AgeBy,
}

/// The store's rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleRules {
    pub format: u32,
    pub rules: Vec<Rule>,
}

impl Default for LifecycleRules {
    fn default() -> Self {
        LifecycleRules {
            format: RULES_FORMAT,
            rules: Vec::new(),
        }
    }
}

/// What the rules look at in one version (times in ns since the epoch; 0 = unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionFacts {
    pub written: u64,
    /// Whether it is the key's live version.
    pub current: bool,
    /// When a newer version replaced it (noncurrent versions).
    pub superseded: u64,
    /// The key's last access.
    pub accessed: u64,
}

const NS: u64 = 1_000_000_000;

fn older_than(since: u64, secs: u64, now: u64) -> bool {
    now.saturating_sub(since) >= secs.saturating_mul(NS)
}

impl Rule {
    /// Whether this rule sends version `f` of `key` to the remote tier at `now`.
    pub fn selects(&self, key: &str, f: &VersionFacts, now: u64) -> bool {
        if !key.starts_with(&self.prefix) {
            return false;
        }
        if f.current {
            let since = match self.by {
                AgeBy::Modified => f.written,
                AgeBy::Accessed => f.written.max(f.accessed),
            };
            return older_than(since, self.after_secs, now);
        }
        match self.noncurrent_after_secs {
            Some(n) => older_than(f.superseded.max(f.written), n, now),
            None => older_than(f.written, self.after_secs, now),
        }
    }
}

impl LifecycleRules {
    pub fn decode(bytes: &[u8]) -> Result<LifecycleRules> {
        let r: LifecycleRules = serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
            what: format!("the store's lifecycle rules do not decode: {e}"),
        })?;
        if r.format != RULES_FORMAT {
            return Err(StoreError::Corrupt {
                what: format!(
                    "the store's lifecycle rules have format {} (this build reads {RULES_FORMAT})",
                    r.format
                ),
            });
        }
        Ok(r)
    }

    pub fn encode(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(|e| StoreError::Metadata(format!("lifecycle rules: {e}")))
    }

    /// Whether any rule selects version `f` of `key`.
    pub fn selects(&self, key: &str, f: &VersionFacts, now: u64) -> bool {
        self.rules.iter().any(|r| r.selects(key, f, now))
    }

    /// Adds `rule`, replacing the one with the same prefix.
    pub fn set(&mut self, rule: Rule) {
        self.rules.retain(|r| r.prefix != rule.prefix);
        self.rules.push(rule);
        self.rules.sort_by(|a, b| a.prefix.cmp(&b.prefix));
    }

    /// Removes the rule for `prefix`; whether there was one.
    pub fn remove(&mut self, prefix: &str) -> bool {
        let n = self.rules.len();
        self.rules.retain(|r| r.prefix != prefix);
        self.rules.len() != n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;

    fn rule(prefix: &str, after: u64, nc: Option<u64>, by: AgeBy) -> Rule {
        Rule {
            prefix: prefix.into(),
            after_secs: after,
            noncurrent_after_secs: nc,
            by,
        }
    }

    fn facts(written_days_ago: u64, current: bool) -> VersionFacts {
        let now = 1000 * DAY * NS;
        VersionFacts {
            written: now - written_days_ago * DAY * NS,
            current,
            superseded: 0,
            accessed: 0,
        }
    }

    #[test]
    fn current_versions_tier_by_age_since_written_or_accessed() {
        let now = 1000 * DAY * NS;
        let r = rule("pins/", 90 * DAY, Some(7 * DAY), AgeBy::Modified);
        assert!(r.selects("pins/a", &facts(90, true), now));
        assert!(!r.selects("pins/a", &facts(89, true), now));
        assert!(!r.selects("boards/a", &facts(400, true), now), "prefix");
        let by_access = rule("", 90 * DAY, None, AgeBy::Accessed);
        let mut f = facts(200, true);
        f.accessed = now - 10 * DAY * NS;
        assert!(!by_access.selects("k", &f, now), "read 10 days ago");
        f.accessed = now - 100 * DAY * NS;
        assert!(by_access.selects("k", &f, now));
        f.accessed = 0;
        assert!(
            by_access.selects("k", &f, now),
            "never read: age since written"
        );
    }

    #[test]
    fn noncurrent_versions_tier_by_time_since_replaced() {
        let now = 1000 * DAY * NS;
        let r = rule("", 90 * DAY, Some(7 * DAY), AgeBy::Modified);
        let mut f = facts(30, false);
        f.superseded = now - 8 * DAY * NS;
        assert!(r.selects("k", &f, now));
        f.superseded = now - 6 * DAY * NS;
        assert!(!r.selects("k", &f, now));
        let plain = rule("", 90 * DAY, None, AgeBy::Modified);
        assert!(!plain.selects("k", &f, now));
        assert!(plain.selects("k", &facts(91, false), now));
        let mut rules = LifecycleRules::default();
        assert!(!rules.selects("k", &f, now));
        rules.set(plain);
        rules.set(rule("", 90 * DAY, Some(7 * DAY), AgeBy::Modified));
        assert_eq!(rules.rules.len(), 1, "same prefix replaces");
        assert!(rules.selects("k", &facts(0, false), now + 7 * DAY * NS));
        assert!(rules.remove(""));
        assert!(!rules.remove(""));
    }

    #[test]
    fn rules_round_trip_and_refuse_other_formats() {
        let mut rules = LifecycleRules::default();
        rules.set(rule("a/", 1, None, AgeBy::Accessed));
        let bytes = rules.encode().unwrap();
        assert_eq!(LifecycleRules::decode(&bytes).unwrap(), rules);
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.contains(r#""by":"accessed""#), "{text}");
        let newer = LifecycleRules { format: 2, ..rules };
        assert!(LifecycleRules::decode(&newer.encode().unwrap()).is_err());
    }
}
