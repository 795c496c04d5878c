//! Shared test support for objfs: the backend conformance suite (run by
//! `tests/tests/conformance.rs` against every backend), listing walkers that check paging
//! invariants, and deterministic content generators shared by the property, crash and
//! corruption tests and the `crash_writer` helper binary.
//!
//! `s3_fixture` names the S3 test servers (moto, Garage) that `scripts/test` starts;
//! `s3_proxy` puts a counting, byte-altering proxy in front of one; `s3_fault_proxy` one that
//! answers 500/503/403 instead of the server on demand;
//! `garage_cluster` starts a Garage cluster of a test's own from the binary it built.
//!
//! `mount_fixture` (owned by the mount tests) mounts a real objfs for `tests/tests/mount_*.rs`;
//! `daemon_mount` runs the real `objfs` binary as the mount daemon, for the kill -9 tests.
//!
//! Nothing else here knows a concrete backend beyond the [`objfs_store::ObjectStore`] trait, so
//! this library builds whatever state the backends are in.

pub mod conformance;
pub mod crash_support;
pub mod daemon_mount;
pub mod garage_cluster;
pub mod insights_ops;
pub mod mount_fixture;
pub mod s3_cli;
pub mod s3_fault_proxy;
pub mod s3_fixture;
pub mod s3_proxy;
pub mod support;
pub mod tier_fixture;
pub mod watchdog;

pub use support::{det_bytes, keyed_bytes, model_cases, Fixture};
