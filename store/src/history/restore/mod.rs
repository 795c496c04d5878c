//! `objfs restore`: bring every key under a prefix back to what it was at a moment, as a new
//! version of each key that changed since (history is never destroyed, so a restore can be
//! undone by another restore). This is the trivago job of the seed article, done the way it
//! describes and with what it wished it had:
//!
//! * **Plan** ([`plan`]): list every version under the prefix, in parallel per sub-prefix
//!   (the first levels found with a delimiter), and decide per key ([`decide`], a pure
//!   function of its versions): undelete, revert, delete (`--exact`) or nothing. Each step
//!   records the version it expects to be current. Keys outside the prefix that a version of
//!   the moment stands for ([`Companion`]: a hard link's object) are decided the same way.
//! * **Job** ([`job`]): the plan is saved in the store as records before anything changes
//!   (`restore/jobs/ID` says what the job is, `restore/ID/plan/N` hold its steps in chunks,
//!   `restore/ID/done/N` check off each chunk as it is executed), so that `--dry-run` prints a
//!   plan the run then executes as printed, and a run killed at any point resumes.
//! * **Run** ([`run`]): execute the steps, in parallel, each only if the key's current version
//!   is still the one the plan saw (a conditional copy or delete); a key changed since is a
//!   conflict, reported and left alone. A step whose key already shows its target (done before
//!   a crash) counts as done and changes nothing, so no key is restored twice.

pub mod decide;
pub mod job;
#[cfg(test)]
mod lifecycle_tests;
pub mod plan;
pub mod run;
#[cfg(test)]
mod tests;

use std::time::SystemTime;

use crate::types::{Metadata, VersionId};

/// For a version a key showed at the moment, another key whose state then is part of it
/// (`None`: none): the object a hard link's stub names, in objfs's mount (the filesystem
/// passes `objfs_fs::core::link_id`). The planner restores such keys too, wherever they are,
/// so that a restored name shows the bytes it showed then ([`plan`]).
pub type Companion<'a> = &'a (dyn Fn(&Metadata) -> Option<String> + Sync);

pub use job::{Job, JobState};
pub use plan::{plan, Plan};
pub use run::{execute, plan_job, Report, Request};

/// The metadata entry of a version a restore made: `SOURCE@MOMENT;job=ID` (the version it
/// brought back, the moment restored to, the job). Under s3fs's prefix for user metadata, so
/// that other S3 tools show it too.
pub const RESTORED_FROM: &str = "x-amz-meta-objfs-restored-from";

/// Steps per plan record (and per checkpoint).
pub const CHUNK_STEPS: usize = 10_000;

/// What a step does to its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The key is deleted now but was live at the moment: its version of then comes back.
    Undelete,
    /// The key was overwritten since: its version of then comes back as a new version.
    Revert,
    /// (`--exact`) The key was not live at the moment but is now: a delete marker.
    Delete,
}

impl Action {
    /// The word the reports use.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Undelete => "undelete",
            Action::Revert => "revert",
            Action::Delete => "delete",
        }
    }
}

/// One key's change in a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub key: String,
    pub action: Action,
    /// The version the key showed at the moment (what undelete and revert bring back).
    pub source: Option<VersionId>,
    /// That version's etag, metadata and size (a step needs no read to be executed, and a
    /// rerun recognises a key that already shows it).
    pub source_etag: String,
    pub source_metadata: Metadata,
    pub source_size: u64,
    /// The live version the key had when planned; `None`: no live version (deleted).
    pub expected: Option<VersionId>,
}

/// What executing a step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Changed now: the new version (or delete marker) made.
    Done { version: Option<VersionId> },
    /// The key already showed its target (done by an earlier run of this job, or by someone
    /// else): nothing changed.
    Already,
    /// The key changed since it was planned (its current version is not the expected one):
    /// left alone.
    Conflict { current: Option<VersionId> },
    /// The store refused the step.
    Failed { error: String },
}

impl Outcome {
    /// The word the reports use.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Done { .. } => "done",
            Outcome::Already => "already",
            Outcome::Conflict { .. } => "conflict",
            Outcome::Failed { .. } => "failed",
        }
    }
}

/// How far a restore is: planning (keys and versions listed) or running (steps settled).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    pub job: String,
    pub planning: bool,
    pub keys_listed: u64,
    pub versions_listed: u64,
    pub steps_total: u64,
    pub steps_settled: u64,
}

/// Who watches a restore: its progress, each step settled, each batch of changed keys (the
/// mount invalidates the kernel's caches of them). Returning false from
/// [`Watch::progress`] stops the job at its next step; it can be resumed.
pub trait Watch {
    fn progress(&mut self, _p: &Progress) -> bool {
        true
    }
    fn settled(&mut self, _step: &Step, _outcome: &Outcome) {}
    fn changed(&mut self, _keys: &[String]) {}
}

/// A [`Watch`] that watches nothing.
pub struct Unwatched;

impl Watch for Unwatched {}

/// The moment a job restores to, as the restored versions' mark names it.
pub(crate) fn moment_text(at: SystemTime) -> String {
    super::time::format_rfc3339(at)
}
