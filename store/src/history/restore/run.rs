//! Executing a restore job: its plan's chunks in order, the steps of a chunk in batches of
//! [`BATCH_STEPS`] ([`ObjectStore::change_many`]: one commit on the local store), at most
//! `jobs` batches at a time, each chunk checked off in the store once all its steps settled.
//!
//! A step applies only if the key's current version is still the one its plan saw: undelete
//! and revert are a server-side copy of the version of the moment onto the key
//! (`IfNotExists` / `IfVersion(expected)`; the local store shares extents, no data is copied),
//! delete (`--exact`) is [`ObjectStore::delete_if`]. When that condition fails the key is read
//! again: if it already shows the step's target (done by an earlier run of this job that was
//! killed before checking its chunk off, or by someone else) the step is settled without a
//! change; otherwise it is a conflict, and the key is left as it is. So a run killed anywhere
//! and run again changes every key of its plan exactly once.

use std::time::{Instant, SystemTime};

use futures::stream::{self, StreamExt};

use super::decide::{restored_metadata, same_state};
use super::job::{self, Job, JobState};
use super::{Action, Outcome, Progress, Step, Watch, RESTORED_FROM};
use crate::error::{ErrorKind, Result, StoreError};
use crate::store::ObjectStore;
use crate::types::{Change, Condition, CopyOptions};

/// How often (in steps settled) progress is reported.
const REPORT_EVERY: u64 = 256;

/// Steps per [`ObjectStore::change_many`] call: on the local store one commit (one log record)
/// each; `jobs` such batches are in flight at once, so backends that run the changes one at a
/// time (over the network) still overlap `jobs` of them.
const BATCH_STEPS: usize = 128;

/// What a run of a job did (the outcomes of chunks executed by earlier runs included).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub steps: u64,
    pub done: u64,
    pub already: u64,
    pub conflicts: u64,
    pub failed: u64,
    /// Chunks an earlier run had checked off (not executed again).
    pub chunks_resumed: u64,
    /// The run stopped before the end (asked to by its watcher); the job can be resumed.
    pub stopped: bool,
    /// Seconds this run spent executing.
    pub seconds: f64,
}

impl Report {
    fn count(&mut self, o: &Outcome) {
        match o {
            Outcome::Done { .. } => self.done += 1,
            Outcome::Already => self.already += 1,
            Outcome::Conflict { .. } => self.conflicts += 1,
            Outcome::Failed { .. } => self.failed += 1,
        }
    }

    /// Every step settled, none a conflict or a failure.
    pub fn all_succeeded(&self) -> bool {
        !self.stopped && self.conflicts == 0 && self.failed == 0
    }
}

fn condition(step: &Step) -> Condition {
    match &step.expected {
        Some(v) => Condition::IfVersion(v.clone()),
        None => Condition::IfNotExists,
    }
}

/// The step's condition failed: the key already shows the step's target, or it changed.
async fn recheck(store: &dyn ObjectStore, job: &Job, step: &Step) -> Outcome {
    match store.head(&step.key, None).await {
        Ok(info) => {
            let restores = step.action != Action::Delete;
            if restores
                && same_state(
                    &info.etag,
                    &info.metadata,
                    &step.source_etag,
                    &step.source_metadata,
                )
            {
                let ours = step.source.as_ref().map(|s| job.mark(s));
                if ours.is_some() && info.metadata.get(RESTORED_FROM) == ours.as_ref() {
                    // This job's own version, made by a run killed before its checkpoint.
                    return Outcome::Done {
                        version: Some(info.version),
                    };
                }
                return Outcome::Already;
            }
            Outcome::Conflict {
                current: Some(info.version),
            }
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            if step.action == Action::Delete {
                Outcome::Already
            } else {
                Outcome::Conflict { current: None }
            }
        }
        Err(e) => Outcome::Failed {
            error: e.to_string(),
        },
    }
}

fn settle(result: Result<Option<crate::types::VersionId>>) -> std::result::Result<Outcome, ()> {
    match result {
        Ok(version) => Ok(Outcome::Done { version }),
        Err(e) if e.kind() == ErrorKind::PreconditionFailed => Err(()),
        Err(e) => Ok(Outcome::Failed {
            error: e.to_string(),
        }),
    }
}

/// The store change a step makes (an error when the plan names no source to restore).
fn change_of(job: &Job, step: &Step) -> std::result::Result<Change, Outcome> {
    match (step.action, &step.source) {
        (Action::Delete, _) => Ok(Change::DeleteIf {
            key: step.key.clone(),
            condition: condition(step),
        }),
        (_, None) => Err(Outcome::Failed {
            error: "the plan's step names no version to restore".into(),
        }),
        (_, Some(source)) => Ok(Change::Copy {
            src: step.key.clone(),
            dst: step.key.clone(),
            opts: CopyOptions {
                source_version: Some(source.clone()),
                metadata: Some(restored_metadata(&step.source_metadata, &job.mark(source))),
                condition: condition(step),
                durable: false,
            },
        }),
    }
}

/// Executes one batch of steps (on distinct keys) as one [`ObjectStore::change_many`]; the
/// steps whose condition failed are read again ([`recheck`]).
pub async fn apply_batch(store: &dyn ObjectStore, job: &Job, steps: &[Step]) -> Vec<Outcome> {
    let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(steps.len());
    let mut changes = Vec::with_capacity(steps.len());
    let mut at = Vec::with_capacity(steps.len());
    for (i, s) in steps.iter().enumerate() {
        match change_of(job, s) {
            Ok(c) => {
                changes.push(c);
                at.push(i);
                outcomes.push(None);
            }
            Err(o) => outcomes.push(Some(o)),
        }
    }
    match store.change_many(&changes).await {
        Ok(results) => {
            for (i, r) in at.into_iter().zip(results) {
                outcomes[i] = match settle(r) {
                    Ok(o) => Some(o),
                    Err(()) => Some(recheck(store, job, &steps[i]).await),
                };
            }
        }
        Err(e) => {
            for i in at {
                outcomes[i] = Some(Outcome::Failed {
                    error: e.to_string(),
                });
            }
        }
    }
    outcomes
        .into_iter()
        .map(|o| {
            o.unwrap_or(Outcome::Failed {
                error: "the store returned no result for the step".into(),
            })
        })
        .collect()
}

/// Executes `job` (planned, or interrupted) to its end: every chunk an earlier run did not
/// check off, at most `jobs` steps at a time. `watch` hears every step settled (those of
/// chunks checked off earlier too, from their records), progress, and the keys each chunk
/// changed.
pub async fn execute(
    store: &dyn ObjectStore,
    job: &mut Job,
    jobs: usize,
    watch: &mut dyn Watch,
) -> Result<Report> {
    if job.state == JobState::Finished {
        return Err(StoreError::InvalidArgument(format!(
            "restore job {} has finished already",
            job.id
        )));
    }
    let started = Instant::now();
    if job.state == JobState::Planned {
        job.state = JobState::Running;
        job::put_job(store, job).await?;
    }
    let mut report = Report {
        steps: job.steps,
        ..Default::default()
    };
    let mut progress = Progress {
        job: job.id.clone(),
        planning: false,
        keys_listed: job.keys,
        versions_listed: job.versions,
        steps_total: job.steps,
        steps_settled: 0,
    };
    let jobs = jobs.max(1);
    for n in 0..job.chunks {
        let steps = job::load_chunk(store, &job.id, n).await?;
        if let Some(outcomes) = job::load_done(store, &job.id, n).await? {
            report.chunks_resumed += 1;
            for (s, o) in steps.iter().zip(&outcomes) {
                report.count(o);
                watch.settled(s, o);
            }
            progress.steps_settled += steps.len() as u64;
            watch.progress(&progress);
            continue;
        }
        let job_ref: &Job = job;
        let mut results = stream::iter(steps.chunks(BATCH_STEPS))
            .map(|b| apply_batch(store, job_ref, b))
            .buffered(jobs);
        let mut outcomes = Vec::with_capacity(steps.len());
        let mut changed = Vec::new();
        'chunk: while let Some(batch) = results.next().await {
            for o in batch {
                let s = &steps[outcomes.len()];
                report.count(&o);
                watch.settled(s, &o);
                if matches!(o, Outcome::Done { .. }) {
                    changed.push(s.key.clone());
                }
                outcomes.push(o);
                progress.steps_settled += 1;
                if progress.steps_settled % REPORT_EVERY == 0 && !watch.progress(&progress) {
                    report.stopped = true;
                    break 'chunk;
                }
            }
        }
        drop(results);
        watch.changed(&changed);
        if report.stopped {
            report.seconds = started.elapsed().as_secs_f64();
            return Ok(report);
        }
        job::save_done(store, &job.id, n, &outcomes).await?;
    }
    watch.progress(&progress);
    let ended = job::Ended {
        done: report.done,
        already: report.already,
        conflicts: report.conflicts,
        failed: report.failed,
    };
    job::finish(store, job, ended, SystemTime::now()).await?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// What a restore command asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Every key starting with this.
    pub prefix: String,
    /// The moment to restore to.
    pub at: SystemTime,
    /// The moment as the command line gave it (a resumed job is found by it too).
    pub as_of: String,
    /// Delete keys that were not live at the moment.
    pub exact: bool,
    /// Listings or steps at a time.
    pub jobs: usize,
}

/// Plans a new job and saves it (state planned): what `objfs restore` does before executing,
/// and all that `--dry-run` does.
pub async fn plan_job(
    store: &dyn ObjectStore,
    req: &Request,
    now: SystemTime,
    companion: Option<super::Companion<'_>>,
    watch: &mut dyn Watch,
) -> Result<(Job, Vec<Step>)> {
    if req.at > now {
        return Err(StoreError::InvalidArgument(format!(
            "{} is in the future",
            super::moment_text(req.at)
        )));
    }
    let plan = super::plan::plan(
        store,
        &req.prefix,
        req.at,
        req.exact,
        req.jobs,
        companion,
        watch,
    )
    .await?;
    let steps = plan.steps.len() as u64;
    let job = Job {
        id: job::new_id(&req.prefix, req.at, req.exact, now),
        prefix: req.prefix.clone(),
        at: req.at,
        as_of: req.as_of.clone(),
        exact: req.exact,
        created: now,
        steps,
        chunks: steps.div_ceil(super::CHUNK_STEPS as u64),
        keys: plan.keys,
        versions: plan.versions,
        state: JobState::Planned,
        finished: None,
        plan_removed: false,
    };
    job::save(store, &job, &plan.steps).await?;
    Ok((job, plan.steps))
}
