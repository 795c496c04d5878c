//! The local store's version ids: time-ordered numbers inside, opaque [`VersionId`]s outside.
//!
//! Above the backend a version id is an opaque string (S3's are). Inside, the local store keeps
//! a `u128` whose high 64 bits are the nanoseconds since the Unix epoch when the version was
//! made and whose low bits make ids unique within a nanosecond (see `Meta::next_version`), so
//! that "newest first" is the sled key order of the version table and "as of time T" is a seek.
//! [`LocalVersion`] is that number; its text form, the [`VersionId`] callers see, is 32
//! lower-case hex digits. An id in any other form was not made by this store: it is
//! `NoSuchVersion` (never a panic).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::StoreError;
use crate::types::VersionId;

/// A version id of the local store, ordered by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct LocalVersion(pub(crate) u128);

impl LocalVersion {
    /// An id the store never makes (ids start above the clock's nanoseconds shifted by 64 bits,
    /// and at least at 1): a condition on it never holds.
    pub const NEVER: LocalVersion = LocalVersion(0);

    /// The smallest id made at `t` (for "as of T" lookups: every version made at or before `t`
    /// is `<= LocalVersion::at(t).max_in_nanosecond()`).
    pub fn at(t: SystemTime) -> LocalVersion {
        let nanos = t
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_nanos()
            .min(u64::MAX as u128);
        LocalVersion(nanos << 64)
    }

    /// The largest id in the same nanosecond as `self`.
    pub fn max_in_nanosecond(self) -> LocalVersion {
        LocalVersion(self.0 | u64::MAX as u128)
    }

    /// When this version was made.
    pub fn time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos((self.0 >> 64) as u64)
    }

    /// The opaque id callers see: 32 lower-case hex digits.
    pub fn id(self) -> VersionId {
        VersionId::from_backend(format!("{:032x}", self.0))
    }

    /// The local id behind `id`, or `None` when this store cannot have made it.
    pub fn parse(id: &VersionId) -> Option<LocalVersion> {
        let s = id.as_str();
        if s.len() != 32 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        u128::from_str_radix(s, 16).ok().map(LocalVersion)
    }

    /// [`LocalVersion::parse`], or `NoSuchVersion` of `key`.
    pub fn of(key: &str, id: &VersionId) -> Result<LocalVersion, StoreError> {
        Self::parse(id).ok_or_else(|| StoreError::NoSuchVersion {
            key: key.to_string(),
            version: id.clone(),
        })
    }
}

impl fmt::Display for LocalVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl From<LocalVersion> for VersionId {
    fn from(v: LocalVersion) -> VersionId {
        v.id()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip_and_foreign_ids() {
        let v = LocalVersion((7u128 << 64) | 3);
        let id = v.id();
        assert_eq!(id.as_str().len(), 32);
        assert_eq!(LocalVersion::parse(&id), Some(v));
        assert_eq!(id.to_string().parse::<VersionId>().unwrap(), id);
        for foreign in ["null", "x", "0000000000000000000000000000000G", "ABCDEF"] {
            let f: VersionId = foreign.parse().unwrap();
            assert_eq!(LocalVersion::parse(&f), None, "{foreign}");
            assert!(matches!(
                LocalVersion::of("k", &f),
                Err(StoreError::NoSuchVersion { .. })
            ));
        }
        // Upper-case hex is not a form this store writes.
        let upper: VersionId = format!("{:032X}", u128::MAX).parse().unwrap();
        assert_eq!(LocalVersion::parse(&upper), None);
    }

    #[test]
    fn time_order() {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let a = LocalVersion::at(t);
        assert_eq!(a.time(), t);
        assert!(a < a.max_in_nanosecond());
        assert!(a.max_in_nanosecond() < LocalVersion::at(t + Duration::from_nanos(1)));
    }
}
