//! The pure core of restore: from one key's versions, what must happen to it so that it shows
//! what it showed at the moment; and when a key already shows a version's state. No I/O here,
//! so the planner's one decision per key is tested against a model (tests.rs) without a store.

use std::time::SystemTime;

use super::{Action, Step, RESTORED_FROM};
use crate::types::{Metadata, VersionInfo};

/// The version `versions` (one key's, newest first) showed at `at`: its newest version made at
/// or before `at`, unless that is a delete marker.
pub fn live_at(versions: &[VersionInfo], at: SystemTime) -> Option<&VersionInfo> {
    versions
        .iter()
        .find(|v| v.modified <= at)
        .filter(|v| !v.is_delete_marker)
}

/// The key's live version now: its newest, unless that is a delete marker.
pub fn live_now(versions: &[VersionInfo]) -> Option<&VersionInfo> {
    versions.first().filter(|v| !v.is_delete_marker)
}

/// Whether two versions show the same thing: the same bytes (the same etag, in one store) and
/// the same metadata, apart from the restore's own entry ([`RESTORED_FROM`]).
pub fn same_state(etag_a: &str, meta_a: &Metadata, etag_b: &str, meta_b: &Metadata) -> bool {
    etag_a == etag_b && without_mark(meta_a).eq(without_mark(meta_b))
}

fn without_mark(m: &Metadata) -> impl Iterator<Item = (&String, &String)> {
    m.iter().filter(|(k, _)| k.as_str() != RESTORED_FROM)
}

/// The metadata of the version a restore makes from a source version: the source's own (POSIX
/// attributes included), plus [`RESTORED_FROM`] naming the source, the moment and the job.
pub fn restored_metadata(source: &Metadata, mark: &str) -> Metadata {
    let mut m = source.clone();
    m.insert(RESTORED_FROM.to_string(), mark.to_string());
    m
}

/// What must happen to the key whose versions (newest first) are `versions` so that it shows
/// what it showed at `at`; `None` when it already does. With `exact`, a key that was not live
/// at `at` but is now gets deleted; without, it is left alone.
pub fn decide(versions: &[VersionInfo], at: SystemTime, exact: bool) -> Option<Step> {
    let key = &versions.first()?.key;
    let then = live_at(versions, at);
    let now = live_now(versions);
    let (action, source, expected) = match (then, now) {
        (None, None) => return None,
        (None, Some(c)) if exact => (Action::Delete, None, Some(c)),
        (None, Some(_)) => return None,
        (Some(a), None) => (Action::Undelete, Some(a), None),
        (Some(a), Some(c)) if same_state(&a.etag, &a.metadata, &c.etag, &c.metadata) => {
            return None
        }
        (Some(a), Some(c)) => (Action::Revert, Some(a), Some(c)),
    };
    Some(Step {
        key: key.clone(),
        action,
        source: source.map(|s| s.version.clone()),
        source_etag: source.map(|s| s.etag.clone()).unwrap_or_default(),
        source_metadata: source.map(|s| s.metadata.clone()).unwrap_or_default(),
        source_size: source.map(|s| s.size).unwrap_or(0),
        expected: expected.map(|c| c.version.clone()),
    })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::types::VersionId;

    fn t(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    /// Versions of key "k", oldest first: (time, Some(etag)) or (time, None) for a marker.
    fn history(spec: &[(u64, Option<&str>)]) -> Vec<VersionInfo> {
        let n = spec.len();
        spec.iter()
            .enumerate()
            .rev()
            .map(|(i, (time, etag))| VersionInfo {
                key: "k".into(),
                version: format!("v{i}").parse::<VersionId>().unwrap(),
                is_latest: i + 1 == n,
                is_delete_marker: etag.is_none(),
                size: etag.map_or(0, |e| e.len() as u64),
                modified: t(*time),
                etag: etag.unwrap_or_default().to_string(),
                metadata: Metadata::new(),
            })
            .collect()
    }

    fn action(spec: &[(u64, Option<&str>)], at: u64, exact: bool) -> Option<(Action, String)> {
        decide(&history(spec), t(at), exact).map(|s| {
            (
                s.action,
                s.source.map(|v| v.to_string()).unwrap_or_default(),
            )
        })
    }

    #[test]
    fn the_four_cases() {
        // Deleted since: undeleted from the version of the moment.
        let deleted = [(1, Some("a")), (5, None)];
        assert_eq!(
            action(&deleted, 3, false),
            Some((Action::Undelete, "v0".into()))
        );
        // Overwritten since: its old content back.
        let overwritten = [(1, Some("a")), (5, Some("b"))];
        assert_eq!(
            action(&overwritten, 3, false),
            Some((Action::Revert, "v0".into()))
        );
        // Created since: deleted only with --exact.
        let created = [(5, Some("b"))];
        assert_eq!(action(&created, 3, false), None);
        assert_eq!(action(&created, 3, true), Some((Action::Delete, "".into())));
        // Unchanged, or back to the same bytes since, or dead at both ends: nothing.
        assert_eq!(action(&[(1, Some("a"))], 3, true), None);
        assert_eq!(
            action(&[(1, Some("a")), (4, Some("b")), (5, Some("a"))], 3, true),
            None
        );
        assert_eq!(action(&[(1, Some("a")), (2, None)], 3, true), None);
        assert_eq!(action(&[(4, Some("a")), (5, None)], 3, true), None);
        // A version made exactly at the moment counts as current then.
        assert_eq!(
            action(&[(3, Some("a")), (5, None)], 3, false),
            Some((Action::Undelete, "v0".into()))
        );
    }

    #[test]
    fn a_restored_version_counts_as_its_source() {
        let mut vs = history(&[(1, Some("a")), (5, Some("b")), (6, Some("a"))]);
        vs[0].metadata = restored_metadata(&Metadata::new(), "v0@x");
        assert!(decide(&vs, t(3), true).is_none());
        // But not when its metadata differs otherwise (a chmod after the restore).
        vs[0]
            .metadata
            .insert("x-amz-meta-mode".into(), "33188".into());
        assert_eq!(decide(&vs, t(3), true).unwrap().action, Action::Revert);
    }

    #[test]
    fn the_step_records_what_it_expects() {
        let s = decide(&history(&[(1, Some("a")), (5, Some("b"))]), t(3), false).unwrap();
        assert_eq!(s.expected.unwrap().as_str(), "v1");
        assert_eq!(s.source_etag, "a");
        let s = decide(&history(&[(1, Some("a")), (5, None)]), t(3), false).unwrap();
        assert_eq!(s.expected, None);
    }
}
