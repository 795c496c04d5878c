//! History over any backend: the store as of a moment ([`as_of`], the default of
//! `head_at`/`list_at`), moments as people write them ([`time`]), named snapshots
//! ([`snapshots`]) and bringing a prefix back as of a moment ([`restore`]). Everything here
//! goes through the [`crate::ObjectStore`] trait, so it works the same on every backend that
//! keeps versions and records. [`retention`] holds the policy of what history is kept, and
//! [`expire`] applies it over the trait (the retention pass of backends without a local gc).

pub mod as_of;
pub mod expire;
pub mod restore;
pub mod retention;
pub mod snapshots;
pub mod time;
