//! A restore job as store records, so that a plan is executed as it was printed and a run
//! killed at any point resumes where it was:
//!
//! * `restore/jobs/ID`: what the job is (prefix, moment, `--exact`, how many steps and
//!   chunks) and its state (planned, running, finished). Written after its chunks, so a job
//!   whose record exists has its whole plan.
//! * `restore/ID/plan/NNNNNN`: steps `N * CHUNK_STEPS ..` of the plan, by key.
//! * `restore/ID/done/NNNNNN`: chunk N was executed: the outcome of each of its steps. A chunk
//!   without it is (re-)executed by the next run; its steps that were done already are
//!   recognised as such (run.rs), so nothing is done twice.
//!
//! Every record is JSON with a format number; docs/FORMAT.md lists the fields.
//!
//! Their lifecycle ([`finish`], [`prune`], [`abandon`]): when a job finishes, its plan and
//! checkpoints are removed (they are about 100 bytes a key) and its job record stays, with
//! its outcome, for [`KEEP_FINISHED`] so that `objfs restore --list` shows what ran. A job
//! planned and never started (a `--dry-run` nobody executed) is kept as long. A job that was
//! interrupted is kept until it is resumed to its end or abandoned (`--abandon ID`): its
//! records are what makes it resumable. [`prune`] removes what has expired; the restore
//! command runs it before each job and `gc --now` runs it on every backend.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{Action, Outcome, Step, CHUNK_STEPS};
use crate::error::{Result, StoreError};
pub(crate) use crate::history::time::{from_ns, to_ns};
use crate::store::ObjectStore;
use crate::types::{Metadata, VersionId};

/// The record format this build writes.
const FORMAT: u32 = 1;

/// Prefix of the job records.
pub const JOBS_PREFIX: &str = "restore/jobs/";

/// How long the record of a finished job is kept (and a planned job that never started).
pub const KEEP_FINISHED: Duration = Duration::from_secs(7 * 24 * 3600);

/// How a finished job ended (kept in its record, for `objfs restore --list`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ended {
    pub done: u64,
    pub already: u64,
    pub conflicts: u64,
    pub failed: u64,
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Planned (by a dry run, or a run that has not started executing).
    Planned,
    /// Executing (or killed while executing).
    Running,
    /// Every chunk executed.
    Finished,
}

/// A restore job: what it restores, and how far it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: String,
    pub prefix: String,
    pub at: SystemTime,
    /// The moment as the command line gave it (`-1h` or a time), so that the same command
    /// run again finds this job even when the moment was relative.
    pub as_of: String,
    pub exact: bool,
    pub created: SystemTime,
    pub steps: u64,
    pub chunks: u64,
    /// Keys and versions listed when planning.
    pub keys: u64,
    pub versions: u64,
    pub state: JobState,
    /// When it finished, and how (a finished job).
    pub finished: Option<(SystemTime, Ended)>,
    /// Its plan and checkpoints were removed (a finished job).
    pub plan_removed: bool,
}

#[derive(Serialize, Deserialize)]
struct JobRecord {
    format: u32,
    id: String,
    prefix: String,
    at_ns: u64,
    as_of: String,
    exact: bool,
    created_ns: u64,
    steps: u64,
    chunks: u64,
    keys: u64,
    versions: u64,
    state: JobState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    finished_ns: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ended: Option<Ended>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    plan_removed: bool,
}

#[derive(Serialize, Deserialize)]
struct StepRecord {
    key: String,
    action: Action,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    etag: String,
    #[serde(default, skip_serializing_if = "Metadata::is_empty")]
    metadata: Metadata,
    #[serde(default)]
    size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expected: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct ChunkRecord {
    format: u32,
    steps: Vec<StepRecord>,
}

#[derive(Serialize, Deserialize)]
struct OutcomeRecord {
    outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct DoneRecord {
    format: u32,
    outcomes: Vec<OutcomeRecord>,
}

fn corrupt(record: &str, why: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what: format!("store record {record}: {why}"),
    }
}

fn encode<T: Serialize>(record: &str, v: &T) -> Result<Bytes> {
    serde_json::to_vec(v)
        .map(Bytes::from)
        .map_err(|e| StoreError::Metadata(format!("{record}: {e}")))
}

fn parse_version(record: &str, s: Option<String>) -> Result<Option<VersionId>> {
    s.map(|s| s.parse().map_err(|e| corrupt(record, e)))
        .transpose()
}

fn job_record(id: &str) -> String {
    format!("{JOBS_PREFIX}{id}")
}

fn plan_record(id: &str, chunk: u64) -> String {
    format!("restore/{id}/plan/{chunk:06}")
}

fn done_record(id: &str, chunk: u64) -> String {
    format!("restore/{id}/done/{chunk:06}")
}

/// A new job's id: 16 hex digits of a hash of what it restores and when it was made.
pub fn new_id(prefix: &str, at: SystemTime, exact: bool, created: SystemTime) -> String {
    let mut h = blake3::Hasher::new();
    h.update(prefix.as_bytes());
    h.update(&to_ns(at).to_le_bytes());
    h.update(&[exact as u8]);
    h.update(&to_ns(created).to_le_bytes());
    h.finalize().to_hex()[..16].to_string()
}

impl Job {
    fn encode(&self) -> Result<Bytes> {
        encode(
            &job_record(&self.id),
            &JobRecord {
                format: FORMAT,
                id: self.id.clone(),
                prefix: self.prefix.clone(),
                at_ns: to_ns(self.at),
                as_of: self.as_of.clone(),
                exact: self.exact,
                created_ns: to_ns(self.created),
                steps: self.steps,
                chunks: self.chunks,
                keys: self.keys,
                versions: self.versions,
                state: self.state,
                finished_ns: self.finished.map(|(t, _)| to_ns(t)),
                ended: self.finished.map(|(_, e)| e),
                plan_removed: self.plan_removed,
            },
        )
    }

    fn decode(record: &str, bytes: &[u8]) -> Result<Job> {
        let r: JobRecord = serde_json::from_slice(bytes).map_err(|e| corrupt(record, e))?;
        if r.format != FORMAT {
            return Err(corrupt(
                record,
                format!("format {} (this build reads format {FORMAT})", r.format),
            ));
        }
        Ok(Job {
            id: r.id,
            prefix: r.prefix,
            at: from_ns(r.at_ns),
            as_of: r.as_of,
            exact: r.exact,
            created: from_ns(r.created_ns),
            steps: r.steps,
            chunks: r.chunks,
            keys: r.keys,
            versions: r.versions,
            state: r.state,
            finished: r
                .finished_ns
                .map(|t| (from_ns(t), r.ended.unwrap_or_default())),
            plan_removed: r.plan_removed,
        })
    }

    /// The mark a version restored by this job carries ([`super::RESTORED_FROM`]).
    pub fn mark(&self, source: &VersionId) -> String {
        format!("{source}@{};job={}", super::moment_text(self.at), self.id)
    }

    /// Whether `other` restores the same thing: the same prefix and `--exact`, and the same
    /// moment, or the same words for it (a relative `-1h` given again).
    pub fn same_request(&self, prefix: &str, at: SystemTime, as_of: &str, exact: bool) -> bool {
        self.prefix == prefix && self.exact == exact && (self.at == at || self.as_of == as_of)
    }
}

/// Saves a new job and its plan: the chunks first, then the job record (durably), so that a
/// job that can be found has its whole plan.
pub async fn save(store: &dyn ObjectStore, job: &Job, steps: &[Step]) -> Result<()> {
    for (n, chunk) in steps.chunks(CHUNK_STEPS).enumerate() {
        let name = plan_record(&job.id, n as u64);
        let rec = ChunkRecord {
            format: FORMAT,
            steps: chunk
                .iter()
                .map(|s| StepRecord {
                    key: s.key.clone(),
                    action: s.action,
                    source: s.source.as_ref().map(|v| v.to_string()),
                    etag: s.source_etag.clone(),
                    metadata: s.source_metadata.clone(),
                    size: s.source_size,
                    expected: s.expected.as_ref().map(|v| v.to_string()),
                })
                .collect(),
        };
        store
            .put_record(&name, Some(encode(&name, &rec)?), false)
            .await?;
    }
    put_job(store, job).await
}

/// Writes a job's record durably (its state changed).
pub async fn put_job(store: &dyn ObjectStore, job: &Job) -> Result<()> {
    store
        .put_record(&job_record(&job.id), Some(job.encode()?), true)
        .await
}

/// Every job, by id.
pub async fn list(store: &dyn ObjectStore) -> Result<Vec<Job>> {
    store
        .list_records(JOBS_PREFIX)
        .await?
        .into_iter()
        .map(|(name, bytes)| Job::decode(&name, &bytes))
        .collect()
}

/// The job called `id`, if any.
pub async fn get(store: &dyn ObjectStore, id: &str) -> Result<Option<Job>> {
    let name = job_record(id);
    crate::key::validate_record_name(&name)?;
    match store.get_record(&name).await? {
        Some(b) => Ok(Some(Job::decode(&name, &b)?)),
        None => Ok(None),
    }
}

/// The unfinished job (the newest one) that restores what the command asks.
pub async fn find_unfinished(
    store: &dyn ObjectStore,
    prefix: &str,
    at: SystemTime,
    as_of: &str,
    exact: bool,
) -> Result<Option<Job>> {
    Ok(list(store)
        .await?
        .into_iter()
        .filter(|j| j.state != JobState::Finished && j.same_request(prefix, at, as_of, exact))
        .max_by_key(|j| j.created))
}

/// The steps of chunk `n` of a job's plan.
pub async fn load_chunk(store: &dyn ObjectStore, id: &str, n: u64) -> Result<Vec<Step>> {
    let name = plan_record(id, n);
    let bytes = store
        .get_record(&name)
        .await?
        .ok_or_else(|| corrupt(&name, "missing (the job's plan is incomplete)"))?;
    let rec: ChunkRecord = serde_json::from_slice(&bytes).map_err(|e| corrupt(&name, e))?;
    if rec.format != FORMAT {
        return Err(corrupt(&name, format!("format {}", rec.format)));
    }
    rec.steps
        .into_iter()
        .map(|s| {
            Ok(Step {
                key: s.key,
                action: s.action,
                source: parse_version(&name, s.source)?,
                source_etag: s.etag,
                source_metadata: s.metadata,
                source_size: s.size,
                expected: parse_version(&name, s.expected)?,
            })
        })
        .collect()
}

/// The whole plan of a job.
pub async fn load_plan(store: &dyn ObjectStore, job: &Job) -> Result<Vec<Step>> {
    let mut steps = Vec::with_capacity(job.steps as usize);
    for n in 0..job.chunks {
        steps.extend(load_chunk(store, &job.id, n).await?);
    }
    Ok(steps)
}

/// The outcomes of chunk `n`, if it was executed.
pub async fn load_done(store: &dyn ObjectStore, id: &str, n: u64) -> Result<Option<Vec<Outcome>>> {
    let name = done_record(id, n);
    let Some(bytes) = store.get_record(&name).await? else {
        return Ok(None);
    };
    let rec: DoneRecord = serde_json::from_slice(&bytes).map_err(|e| corrupt(&name, e))?;
    rec.outcomes
        .into_iter()
        .map(|o| {
            let version = parse_version(&name, o.version)?;
            Ok(match o.outcome.as_str() {
                "done" => Outcome::Done { version },
                "already" => Outcome::Already,
                "conflict" => Outcome::Conflict { current: version },
                "failed" => Outcome::Failed {
                    error: o.error.unwrap_or_default(),
                },
                other => return Err(corrupt(&name, format!("outcome {other:?}"))),
            })
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// Checks chunk `n` off with the outcomes of its steps. Not synced: a record written after the
/// chunk's copies cannot outlive them (the local store replays its log in order and drops
/// everything after a record it lost; an S3 write is durable once acknowledged), so after a
/// power loss a chunk is either checked off with its changes or executed again, which
/// recognises the changes that survived. The job's record, written when it finishes, is
/// synced, and with it every change of the job.
pub async fn save_done(
    store: &dyn ObjectStore,
    id: &str,
    n: u64,
    outcomes: &[Outcome],
) -> Result<()> {
    let name = done_record(id, n);
    let rec = DoneRecord {
        format: FORMAT,
        outcomes: outcomes
            .iter()
            .map(|o| OutcomeRecord {
                outcome: o.as_str().to_string(),
                version: match o {
                    Outcome::Done { version } => version.as_ref().map(|v| v.to_string()),
                    Outcome::Conflict { current } => current.as_ref().map(|v| v.to_string()),
                    _ => None,
                },
                error: match o {
                    Outcome::Failed { error } => Some(error.clone()),
                    _ => None,
                },
            })
            .collect(),
    };
    store
        .put_record(&name, Some(encode(&name, &rec)?), false)
        .await
}

/// Removes a job's plan and checkpoints (records that may be absent already).
async fn remove_plan(store: &dyn ObjectStore, job: &Job) -> Result<()> {
    for n in 0..job.chunks {
        store
            .put_record(&plan_record(&job.id, n), None, false)
            .await?;
        store
            .put_record(&done_record(&job.id, n), None, false)
            .await?;
    }
    Ok(())
}

/// Marks `job` finished (durably, with how it ended), then removes its plan and checkpoints:
/// its record stays, for [`KEEP_FINISHED`]. Killed in between, the plan is removed by the
/// next [`prune`].
pub async fn finish(
    store: &dyn ObjectStore,
    job: &mut Job,
    ended: Ended,
    now: SystemTime,
) -> Result<()> {
    job.state = JobState::Finished;
    job.finished = Some((now, ended));
    put_job(store, job).await?;
    remove_plan(store, job).await?;
    job.plan_removed = true;
    store
        .put_record(&job_record(&job.id), Some(job.encode()?), false)
        .await
}

/// Removes every record of `job`: its plan and checkpoints, then its job record (last, so
/// that a removal cut short is found and finished by the next [`prune`]).
pub async fn remove(store: &dyn ObjectStore, job: &Job) -> Result<()> {
    if !job.plan_removed {
        remove_plan(store, job).await?;
    }
    store.put_record(&job_record(&job.id), None, true).await
}

/// Whether [`prune`] removes `job` at `now`, and whether it only removes its plan.
fn expired(job: &Job, now: SystemTime) -> bool {
    let since = match (job.state, job.finished) {
        (JobState::Finished, Some((t, _))) => t,
        (JobState::Finished, None) | (JobState::Planned, _) => job.created,
        // Interrupted: kept until resumed or abandoned.
        (JobState::Running, _) => return false,
    };
    now.duration_since(since).is_ok_and(|d| d >= KEEP_FINISHED)
}

/// Removes what has expired at `now`: the records of jobs finished (or planned and never
/// started) more than [`KEEP_FINISHED`] ago, and the plan of finished jobs whose removal was
/// cut short. Returns the ids of the jobs removed.
pub async fn prune(store: &dyn ObjectStore, now: SystemTime) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for mut job in list(store).await? {
        if expired(&job, now) {
            remove(store, &job).await?;
            removed.push(job.id);
        } else if job.state == JobState::Finished && !job.plan_removed {
            remove_plan(store, &job).await?;
            job.plan_removed = true;
            store
                .put_record(&job_record(&job.id), Some(job.encode()?), false)
                .await?;
        }
    }
    Ok(removed)
}

/// `objfs restore --abandon ID`: removes the job's records whatever its state (an interrupted
/// job can then not be resumed; its steps done so far stay done). An unknown id is an error.
pub async fn abandon(store: &dyn ObjectStore, id: &str) -> Result<Job> {
    let unknown = || StoreError::InvalidArgument(format!("there is no restore job {id:?}"));
    if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(unknown());
    }
    let job = get(store, id).await?.ok_or_else(unknown)?;
    remove(store, &job).await?;
    Ok(job)
}

/// Removes the other unfinished jobs of the same request (`--replan` plans anew: the older
/// plans could no longer be found by the command). Returns their ids.
pub async fn supersede(store: &dyn ObjectStore, newer: &Job) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for job in list(store).await? {
        if job.id != newer.id
            && job.state != JobState::Finished
            && job.same_request(&newer.prefix, newer.at, &newer.as_of, newer.exact)
        {
            remove(store, &job).await?;
            removed.push(job.id);
        }
    }
    Ok(removed)
}
