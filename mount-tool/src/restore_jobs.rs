//! The restore jobs a store keeps, for the user: `objfs restore --list` shows them and
//! `objfs restore --abandon ID` removes one; `gc --now` removes those that expired. What is
//! kept and for how long is objfs-store's `history::restore::job` (a finished job's record for
//! 7 days, its plan removed when it finishes; a never-started plan as long; an interrupted job
//! until it is resumed or abandoned).

use std::time::SystemTime;

use anyhow::{Context, Result};
use objfs_store::history::restore::{job, JobState};
use objfs_store::history::time::format_rfc3339;
use objfs_store::ObjectStore;
use serde_json::{json, Value};

use crate::ops::Request;
use crate::progress::Feedback;
use crate::restore::{job_json, target_of, RestoreArgs, RestoreRequest};

/// `objfs restore --list` and `objfs restore --abandon ID`.
pub fn command(a: &RestoreArgs) -> Result<()> {
    let what = match (&a.store, &a.what) {
        (Some(_), w) => w.clone().unwrap_or_default(),
        (None, Some(w)) => w.clone(),
        (None, None) => {
            return Err(crate::usage(
                "--list and --abandon need --store STORE or a path inside a mount",
            ))
        }
    };
    let (target, _) = target_of(a.store.as_deref(), &what, &a.s3)?;
    let req = Request::Restore(RestoreRequest {
        prefix: String::new(),
        as_of: String::new(),
        at_ns: 0,
        exact: false,
        dry_run: false,
        jobs: 1,
        replan: false,
        every_key: false,
        list: a.list,
        abandon: a.abandon.clone(),
    });
    let v = target.execute(&req, &mut Feedback::new(true))?;
    if let Some(gone) = v.get("abandoned") {
        if a.json {
            println!("{v}");
        } else {
            println!(
                "abandoned restore job {} ({} job of {:?} as of {}): its records are removed",
                gone["job"].as_str().unwrap_or(""),
                gone["state"].as_str().unwrap_or(""),
                gone["prefix"].as_str().unwrap_or(""),
                gone["as_of"].as_str().unwrap_or(""),
            );
        }
        return Ok(());
    }
    let empty = Vec::new();
    let jobs = v["jobs"].as_array().unwrap_or(&empty);
    if a.json {
        for j in jobs {
            println!("{j}");
        }
        return Ok(());
    }
    if jobs.is_empty() {
        println!("no restore jobs");
        return Ok(());
    }
    println!(
        "{:<16}  {:<9}  {:<20}  {:>8}  PREFIX",
        "JOB", "STATE", "AS OF", "STEPS"
    );
    for j in jobs {
        let detail = match j["state"].as_str() {
            Some("finished") => format!(
                "  finished {}: {} done, {} already, {} conflicts, {} failed",
                j["finished"].as_str().unwrap_or("?"),
                j["ended"]["done"],
                j["ended"]["already"],
                j["ended"]["conflicts"],
                j["ended"]["failed"]
            ),
            Some("running") => "  interrupted: the same command resumes it".into(),
            _ => "  planned: the same command executes it".into(),
        };
        println!(
            "{:<16}  {:<9}  {:<20}  {:>8}  {:?}{detail}",
            j["job"].as_str().unwrap_or(""),
            j["state"].as_str().unwrap_or(""),
            j["as_of"].as_str().unwrap_or(""),
            j["steps"],
            j["prefix"].as_str().unwrap_or(""),
        );
    }
    Ok(())
}

/// A job as `--list` shows it.
fn listed(j: &job::Job) -> Value {
    let mut v = job_json(j);
    v["state"] = json!(match j.state {
        JobState::Planned => "planned",
        JobState::Running => "running",
        JobState::Finished => "finished",
    });
    if let Some((t, ended)) = j.finished {
        v["finished"] = json!(format_rfc3339(t));
        v["ended"] = json!(ended);
    }
    v
}

/// Executes `--list` or `--abandon` on `store` (after removing what expired).
pub async fn execute(store: &dyn ObjectStore, req: &RestoreRequest) -> Result<Value> {
    job::prune(store, SystemTime::now())
        .await
        .context("cannot remove the store's expired restore jobs")?;
    if let Some(id) = &req.abandon {
        let gone = job::abandon(store, id).await?;
        return Ok(json!({ "abandoned": listed(&gone) }));
    }
    let mut jobs = job::list(store)
        .await
        .context("cannot read the store's restore jobs")?;
    jobs.sort_by_key(|j| j.created);
    Ok(json!({ "jobs": jobs.iter().map(listed).collect::<Vec<_>>() }))
}

/// What `gc --now` does about restore jobs: removes those that expired; their ids.
pub fn prune_expired(store: &dyn ObjectStore) -> Result<Vec<String>> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a runtime")?
        .block_on(job::prune(store, SystemTime::now()))
        .context("cannot remove the store's expired restore jobs")
}
