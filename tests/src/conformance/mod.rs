//! The backend conformance suite: every rule the [`ObjectStore`] trait documents, as one async
//! function per case, taking any `&dyn ObjectStore`, in one module per area ([`objects`],
//! [`versions`], [`copy`], [`listing`], [`version_listing`], [`multipart`], [`bodies`],
//! [`durability`], [`history`]).
//!
//! Each case works under its own key namespace (its name plus `/`), so all cases can share a
//! store ([`run_all`]); [`crate::conformance_tests!`] generates one named `#[tokio::test]` per
//! case for a backend, so a failure says which rule broke. Only `capacity_accounting` needs
//! the store to itself while it runs (its checks are relative to its own writes).
//!
//! Cases assert behaviour, not implementation: version ids are compared only for equality (the
//! order of versions is the order `list_versions` returns), etags only by "different bytes never
//! share an etag", errors by [`ErrorKind`](objfs_store::ErrorKind).
//!
//! # Capabilities
//!
//! Not every backend can do everything (after object_store's integration suite): a bucket
//! without versioning has one `null` version per key, S3 has no atomic rename and a 5 MiB
//! minimum part size. Each case names the [`Capability`]s it needs (in the case list of
//! [`crate::__conformance_cases!`]); a backend's capabilities are derived from its
//! [`StoreFeatures`](objfs_store::StoreFeatures). A case that needs a capability the backend
//! lacks does not run: it is reported as skipped, by name and capability, on stderr (written
//! past the test harness's output capture, so it shows in every `cargo test` run), never passed
//! silently. [`run_all`] prints, per backend, how many cases ran and which were skipped for
//! which capability, e.g.
//!
//! ```text
//! conformance[memory]: skipped multipart_part_copy: needs part-copy
//! conformance[memory]: 42 of 43 cases ran; skipped: multipart_part_copy (part-copy)
//! ```
//!
//! # Remote backends
//!
//! A remote backend's cases run only when its endpoint is given in the environment:
//! [`remote_endpoint`] reads the variable (e.g. `OBJFS_TEST_S3_ENDPOINT` for S3-compatible
//! stores) and, when it is unset, says so loudly (once per test process) so that the backend's
//! tests are visibly skipped rather than passed; with `OBJFS_REQUIRE_S3=1` (exported by
//! `scripts/test`) it panics instead, so that a run meant to test S3 cannot pass by skipping
//! ([`require_s3`]). A fixture returns `Option<Fixture>`: `None`
//! skips the case. The S3 backend runs on moto (`OBJFS_TEST_S3_ENDPOINT`, a versioned bucket)
//! and on Garage (`OBJFS_TEST_GARAGE_ENDPOINT`, no versioning), both started by `scripts/test`
//! (see [`crate::s3_fixture`]).

use std::collections::HashSet;
use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::sync::Mutex;

use objfs_store::key::S3_MAX_KEY_LEN;
use objfs_store::{ObjectStore, StoreFeatures};

use crate::Fixture;

mod helpers;

pub mod bodies;
pub mod copy;
pub mod durability;
pub mod history;
pub mod listing;
pub mod multipart;
pub mod objects;
pub mod version_listing;
pub mod versions;

pub use bodies::*;
pub use copy::*;
pub use durability::*;
pub use history::*;
pub use listing::*;
pub use multipart::*;
pub use objects::*;
pub use version_listing::*;
pub use versions::*;

/// Something a case needs from the backend beyond the core object API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Capability {
    /// Every write keeps a readable version and deletes leave markers.
    Versioning,
    /// `rename` happens in one step (a crash leaves one name, never two).
    AtomicRename,
    /// Writes honour `Condition::IfNotExists` / `IfVersion` atomically.
    ConditionalPut,
    /// `upload_part_copy` (S3's UploadPartCopy).
    PartCopy,
    /// No minimum part size: the case uploads parts of a few bytes.
    SmallParts,
    /// Times kept beside keys (`set_key_times` / `key_times`).
    KeyTimes,
    /// Store records (`get_record` / `put_record` / `list_records`).
    Records,
    /// Keys at least as long as S3 allows ([`S3_MAX_KEY_LEN`] bytes); the cases test the
    /// backend's own maximum (`StoreFeatures::max_key_len`).
    LongKeys,
}

impl Capability {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Capability::Versioning => "versioning",
            Capability::AtomicRename => "atomic-rename",
            Capability::ConditionalPut => "conditional-put",
            Capability::PartCopy => "part-copy",
            Capability::SmallParts => "no-minimum-part-size",
            Capability::LongKeys => "max-key-length",
            Capability::KeyTimes => "key-times",
            Capability::Records => "records",
        }
    }

    /// Whether a backend with these features has it.
    pub fn held_by(self, f: &StoreFeatures) -> bool {
        match self {
            Capability::Versioning => f.versioning,
            Capability::AtomicRename => f.atomic_rename,
            Capability::ConditionalPut => f.conditional_put,
            Capability::PartCopy => f.part_copy,
            Capability::SmallParts => f.min_part_size == 0,
            Capability::LongKeys => f.max_key_len >= S3_MAX_KEY_LEN,
            Capability::KeyTimes => f.key_times,
            Capability::Records => f.records,
        }
    }
}

/// The first capability in `needs` that `s` lacks.
pub fn missing(s: &dyn ObjectStore, needs: &[Capability]) -> Option<Capability> {
    let f = s.features();
    needs.iter().copied().find(|c| !c.held_by(&f))
}

/// Writes a line to the real stderr, past libtest's capture of `eprintln!`.
fn announce(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

/// The backend's short name for reports (`describe()` up to its location).
fn backend_name(s: &dyn ObjectStore) -> String {
    let d = s.describe();
    d.split([' ', ':']).next().unwrap_or("?").to_string()
}

/// A boxed case future (what the case list expands into).
pub type CaseFuture<'a> = Pin<Box<dyn Future<Output = ()> + 'a>>;

/// Runs one case unless the backend lacks a capability it needs; then reports the skip and
/// returns false.
pub async fn run_case<'a>(
    name: &str,
    s: &'a dyn ObjectStore,
    needs: &[Capability],
    case: impl FnOnce(&'a dyn ObjectStore) -> CaseFuture<'a>,
) -> bool {
    if let Some(cap) = missing(s, needs) {
        announce(&format!(
            "conformance[{}]: skipped {name}: needs {}",
            backend_name(s),
            cap.name()
        ));
        return false;
    }
    case(s).await;
    true
}

/// What a sequential run did: cases run, and cases skipped with the capability they lacked.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub backend: String,
    pub ran: Vec<&'static str>,
    pub skipped: Vec<(&'static str, Capability)>,
}

impl Report {
    /// One line: how many ran, which were skipped for what.
    pub fn summary(&self) -> String {
        let total = self.ran.len() + self.skipped.len();
        let mut line = format!(
            "conformance[{}]: {} of {total} cases ran",
            self.backend,
            self.ran.len()
        );
        if self.skipped.is_empty() {
            line.push_str("; none skipped");
        } else {
            let list: Vec<String> = self
                .skipped
                .iter()
                .map(|(case, cap)| format!("{case} ({})", cap.name()))
                .collect();
            line.push_str(&format!("; skipped: {}", list.join(", ")));
        }
        line
    }
}

/// A case of the list: its name, what it needs, and how to run it.
pub struct Case {
    pub name: &'static str,
    pub needs: &'static [Capability],
    pub run: for<'a> fn(&'a dyn ObjectStore) -> CaseFuture<'a>,
}

/// Every case, in the order of the case list.
pub fn cases() -> Vec<Case> {
    crate::__conformance_cases! {@list}
}

/// Runs every case the backend supports in turn against one shared store, prints the report
/// (cases run, cases skipped and why) and returns it.
pub async fn run_all(s: &dyn ObjectStore) -> Report {
    let mut report = Report {
        backend: backend_name(s),
        ..Default::default()
    };
    for case in cases() {
        match missing(s, case.needs) {
            Some(cap) => {
                announce(&format!(
                    "conformance[{}]: skipped {}: needs {}",
                    report.backend,
                    case.name,
                    cap.name()
                ));
                report.skipped.push((case.name, cap));
            }
            None => {
                (case.run)(s).await;
                report.ran.push(case.name);
            }
        }
    }
    announce(&report.summary());
    report
}

/// What the suite would run on a backend with `features`, without running anything.
pub fn plan(backend: &str, features: &StoreFeatures) -> Report {
    let mut report = Report {
        backend: backend.to_string(),
        ..Default::default()
    };
    for case in cases() {
        match case.needs.iter().copied().find(|c| !c.held_by(features)) {
            Some(cap) => report.skipped.push((case.name, cap)),
            None => report.ran.push(case.name),
        }
    }
    report
}

/// Variables already announced as unset (each once per process).
static ANNOUNCED: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// Whether the S3 tests must run: `OBJFS_REQUIRE_S3=1` (exported by `scripts/test`, which
/// starts the servers and sets every variable the S3 tests read). Skips become failures then.
pub fn require_s3() -> bool {
    std::env::var("OBJFS_REQUIRE_S3").is_ok_and(|v| v == "1")
}

/// Panics when [`require_s3`] holds: `what` is missing.
pub fn fail_if_s3_required(what: &str) {
    if require_s3() {
        panic!("the S3 tests are required (OBJFS_REQUIRE_S3=1) but {what}");
    }
}

/// The endpoint of a remote backend under test, from the environment variable `var`; when it is
/// unset, prints (once per process) that `backend`'s conformance cases are skipped, or panics
/// under `OBJFS_REQUIRE_S3=1`.
pub fn remote_endpoint(var: &str, backend: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Some(v),
        _ => {
            fail_if_s3_required(&format!(
                "{var} is not set (the {backend} tests would be skipped)"
            ));
            let mut seen = ANNOUNCED.lock().unwrap_or_else(|p| p.into_inner());
            if seen
                .get_or_insert_with(HashSet::new)
                .insert(var.to_string())
            {
                announce(&format!(
                    "conformance[{backend}]: SKIPPED, every case: {var} is not set \
                     (set it to the endpoint of a test server to run them)"
                ));
            }
            None
        }
    }
}

/// A fixture, or none (a remote backend without its endpoint): what `$make` may return.
pub trait MaybeFixture {
    fn into_fixture(self) -> Option<Fixture>;
}

impl MaybeFixture for Fixture {
    fn into_fixture(self) -> Option<Fixture> {
        Some(self)
    }
}

impl MaybeFixture for Option<Fixture> {
    fn into_fixture(self) -> Option<Fixture> {
        self
    }
}

/// Generates one `#[tokio::test]` per conformance case. `$make` is an async fn (a path to one)
/// returning a [`crate::Fixture`] (or an `Option<Fixture>`, `None` skipping every case), called
/// afresh for every case. A case whose capabilities the backend lacks is reported as skipped.
#[macro_export]
macro_rules! conformance_tests {
    ($make:path) => {
        $crate::__conformance_cases!(@tests $make);
    };
}

/// The one list of conformance cases with the capabilities each needs, expanded into tests or
/// into the [`cases`] table.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    (@expand tests [$make:path] $($case:ident [$($cap:ident),*]),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(fixture) = $crate::conformance::MaybeFixture::into_fixture($make().await)
                else {
                    return;
                };
                $crate::conformance::run_case(
                    stringify!($case),
                    fixture.store(),
                    &[$($crate::conformance::Capability::$cap),*],
                    |s| Box::pin($crate::conformance::$case(s)),
                )
                .await;
            }
        )*
    };
    (@expand list [] $($case:ident [$($cap:ident),*]),*) => {
        vec![$(
            $crate::conformance::Case {
                name: stringify!($case),
                needs: &[$($crate::conformance::Capability::$cap),*],
                run: |s| Box::pin($crate::conformance::$case(s)),
            }
        ),*]
    };
    (@$mode:ident $($arg:tt)*) => {
        $crate::__conformance_cases! {@expand $mode [$($arg)*]
            put_get_head [],
            empty_object [],
            get_ranges [],
            metadata_round_trip [],
            conditions [ConditionalPut, Versioning],
            invalid_keys [],
            key_shapes [LongKeys],
            key_times_beside_versions [KeyTimes],
            rename_semantics [AtomicRename, Versioning, ConditionalPut],
            versions_ordering [Versioning],
            delete_markers [Versioning],
            delete_version [Versioning],
            copy_semantics [Versioning],
            copy_errors [Versioning, ConditionalPut],
            change_many_batches [Versioning, ConditionalPut],
            list_sort_around_slash [],
            list_keys_match_list [],
            list_unicode [],
            list_other_delimiters [],
            list_paging [],
            list_token_across_common_prefix [],
            list_start_after [],
            list_empty_prefix [],
            list_consistency [],
            list_invalid_token [],
            list_default_page_size [],
            list_versions_order [Versioning],
            list_versions_paging [Versioning],
            list_versions_delimiter [Versioning],
            list_versions_key_marker_inside_prefix [Versioning],
            head_at_moments [Versioning],
            list_at_moments [Versioning],
            list_at_many_versions [Versioning],
            records_basic [Records],
            multipart_basic [SmallParts],
            multipart_unlisted_parts [SmallParts],
            multipart_part_numbers [SmallParts],
            multipart_complete_errors [SmallParts],
            multipart_unknown_upload [SmallParts],
            multipart_part_copy [SmallParts, PartCopy, Versioning],
            multipart_zero_parts [SmallParts, PartCopy, Versioning],
            multipart_list_uploads [SmallParts],
            multipart_condition [SmallParts, ConditionalPut, Versioning],
            streaming_bodies [],
            streaming_error_is_atomic [],
            large_object [],
            large_multipart [PartCopy],
            concurrent_writes [Versioning, SmallParts],
            sync_and_durable [],
            capacity_accounting [],
            describe_and_features []
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything: what the memory store (the reference model) supports.
    fn full() -> StoreFeatures {
        objfs_store::memory::MemoryStore::new().features()
    }

    #[test]
    fn a_full_backend_runs_every_case() {
        let r = plan("full", &full());
        assert!(r.skipped.is_empty());
        assert_eq!(r.ran.len(), cases().len());
        let names: HashSet<&str> = cases().iter().map(|c| c.name).collect();
        assert_eq!(names.len(), cases().len(), "case names are unique");
    }

    #[test]
    fn missing_capabilities_skip_by_name() {
        // An S3 bucket without versioning: no atomic rename, 5 MiB parts.
        let f = StoreFeatures {
            versioning: false,
            atomic_rename: false,
            min_part_size: 5 << 20,
            ..full()
        };
        let r = plan("s3", &f);
        assert!(r
            .skipped
            .contains(&("versions_ordering", Capability::Versioning)));
        assert!(r
            .skipped
            .contains(&("multipart_basic", Capability::SmallParts)));
        assert!(r.ran.contains(&"list_paging"));
        assert_eq!(r.ran.len() + r.skipped.len(), cases().len());
        let line = r.summary();
        println!("{line}");
        assert!(line.contains("versions_ordering (versioning)"), "{line}");
        assert!(line.starts_with(&format!("conformance[s3]: {} of", r.ran.len())));
    }
}
