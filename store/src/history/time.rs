//! Moments in history as people write them: RFC 3339 (`2026-11-30T12:00:00Z`,
//! `2026-11-30T13:00:00+01:00`, fractions of a second allowed) anywhere, and relative to now
//! (`-15m`, `-2h`, `-3d`, `-1h30m`) on the command line. Paths (`.snapshots/@TIME`) take only
//! absolute times, so that a path means the same moment tomorrow. Parsing is the `time`
//! crate's RFC 3339 and humantime's durations; this module only chooses between them and
//! words the errors.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Why a moment was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a time: {reason} (write an RFC 3339 time such as 2026-11-30T12:00:00Z{relative})")]
pub struct TimeError {
    pub input: String,
    pub reason: String,
    /// What else would have been accepted (empty where relative times are not).
    relative: &'static str,
}

/// A moment written absolutely: RFC 3339, with `Z` or an offset.
pub fn parse_absolute(s: &str) -> Result<SystemTime, TimeError> {
    let t = OffsetDateTime::parse(s.trim(), &Rfc3339).map_err(|e| TimeError {
        input: s.to_string(),
        reason: e.to_string(),
        relative: "",
    })?;
    let nanos = t.unix_timestamp_nanos();
    let err = |reason: &str| TimeError {
        input: s.to_string(),
        reason: reason.to_string(),
        relative: "",
    };
    if nanos < 0 {
        return Err(err("it is before 1970"));
    }
    let nanos = u64::try_from(nanos).map_err(|_| err("it is too far in the future"))?;
    Ok(UNIX_EPOCH + Duration::from_nanos(nanos))
}

/// A moment on the command line: RFC 3339, or `-DURATION` before `now` (humantime's units:
/// `s`, `m`, `h`, `d`, `w`, combinable as `1h30m`).
pub fn parse_moment(s: &str, now: SystemTime) -> Result<SystemTime, TimeError> {
    let s = s.trim();
    let Some(ago) = s.strip_prefix('-') else {
        return parse_absolute(s).map_err(|mut e| {
            e.relative = " or a time before now such as -15m, -2h, -3d";
            e
        });
    };
    let err = |reason: String| TimeError {
        input: s.to_string(),
        reason,
        relative: " or a time before now such as -15m, -2h, -3d",
    };
    let d = humantime::parse_duration(ago).map_err(|e| err(e.to_string()))?;
    now.checked_sub(d)
        .filter(|t| *t >= UNIX_EPOCH)
        .ok_or_else(|| err("it is before 1970".into()))
}

/// `t` as nanoseconds since the Unix epoch, the unit of every time in the history records
/// (0 before the epoch, saturating after year 2554).
pub fn to_ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos().min(u64::MAX as u128) as u64)
        .unwrap_or(0)
}

/// The moment `ns` nanoseconds after the Unix epoch (the inverse of [`to_ns`]).
pub fn from_ns(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

/// The RFC 3339 form of `t` in UTC, to the second when it has no fraction and to the
/// nanosecond otherwise: what `.snapshots/@TIME` names and what [`parse_absolute`] reads back
/// to the same moment.
pub fn format_rfc3339(t: SystemTime) -> String {
    let nanos = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0);
    match OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|dt| dt.format(&Rfc3339).ok())
    {
        Some(s) => s,
        None => format!("@{}", nanos / 1_000_000_000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_times_round_trip() {
        for s in [
            "2026-11-30T12:00:00Z",
            "2026-11-30T12:00:00.5Z",
            "1970-01-01T00:00:00Z",
            "2026-11-30T12:00:00.123456789Z",
        ] {
            let t = parse_absolute(s).unwrap();
            assert_eq!(format_rfc3339(t), s);
            assert_eq!(parse_absolute(&format_rfc3339(t)).unwrap(), t);
        }
    }

    #[test]
    fn offsets_are_the_same_moment() {
        assert_eq!(
            parse_absolute("2026-11-30T13:00:00+01:00").unwrap(),
            parse_absolute("2026-11-30T12:00:00Z").unwrap()
        );
    }

    #[test]
    fn relative_times_count_back_from_now() {
        let now = parse_absolute("2026-11-30T12:00:00Z").unwrap();
        let at = |s| parse_moment(s, now).unwrap();
        assert_eq!(at("-15m"), now - Duration::from_secs(900));
        assert_eq!(at("-2h"), now - Duration::from_secs(7200));
        assert_eq!(at("-3d"), now - Duration::from_secs(3 * 86400));
        assert_eq!(at("-1h30m"), now - Duration::from_secs(5400));
        assert_eq!(at("2026-11-30T11:00:00Z"), now - Duration::from_secs(3600));
    }

    #[test]
    fn bad_times_say_what_is_accepted() {
        let now = SystemTime::now();
        for s in [
            "",
            "yesterday",
            "-",
            "-5 parsecs",
            "2026-13-01T00:00:00Z",
            "1960-01-01T00:00:00Z",
        ] {
            let e = parse_moment(s, now).unwrap_err();
            assert!(e.to_string().contains("RFC 3339"), "{e}");
        }
        let e = parse_absolute("-15m").unwrap_err();
        assert!(
            !e.to_string().contains("-2h"),
            "paths take absolute times only: {e}"
        );
        assert!(parse_moment("-100000d", now).is_err());
    }
}
