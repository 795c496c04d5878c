//! `objfs tier` and `objfs lifecycle`: a local store's remote tier (an S3 bucket cold volumes
//! move to) and the rules that say what is cold. Like every store command they send a request
//! to the mount process when the store is mounted, or open the store themselves.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use objfs_store::local::tier::rules::{AgeBy, Rule};
use objfs_store::local::tier::{TierRecord, TIER_FORMAT};
use objfs_store::local::worker::RunReport;
use objfs_store::local::LocalStore;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::ops::{JobProgress, Request};
use crate::progress::Feedback;
use crate::render::{counters_text, human_bytes, run_progress_text};
use crate::target;

pub const TIER_EXAMPLES: &str = "\
Examples:
  objfs tier add /srv/objfs s3://cold-bucket/objfs --endpoint http://127.0.0.1:3900 --profile cold
  objfs tier list /srv/objfs
  objfs tier recall /srv/objfs photos/2019/      bring back what data under a prefix uses
  objfs tier remove /srv/objfs --recall          recall everything, then detach the tier

Credentials come the standard AWS way (environment, ~/.aws/credentials, --profile), never
from the command line. Tiered volumes are one object each under PREFIX/<2 hex>/<2 hex>/.";

pub const LIFECYCLE_EXAMPLES: &str = "\
Examples:
  objfs lifecycle set /srv/objfs --prefix '' --after 90d --by accessed --noncurrent-after 7d
  objfs lifecycle show /srv/objfs
  objfs lifecycle run /srv/objfs                 move what the rules select now, with progress
  objfs lifecycle remove /srv/objfs --prefix ''

A version is selected when a rule selects it (current: older than --after since written, or
since last read with --by accessed; noncurrent: --noncurrent-after since it was replaced). A
sealed volume moves when every version its data belongs to is selected.";

/// `objfs tier`.
#[derive(Debug, Args)]
pub struct TierArgs {
    #[command(subcommand)]
    pub command: TierCommand,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress display.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum TierCommand {
    /// Attach an S3 bucket (and prefix) as the store's remote tier (checked reachable).
    Add {
        /// The store directory, or the mount point of a mounted store.
        store: PathBuf,
        /// s3://BUCKET[/PREFIX]
        url: String,
        #[command(flatten)]
        s3: crate::cli::S3Args,
        /// Volumes uploaded or recalled, and remote objects deleted, at once (1 to 64).
        #[arg(long, value_name = "N", default_value_t = objfs_store::local::tier::DEFAULT_JOBS)]
        jobs: u32,
    },
    /// Show the remote tier: where, and how much is there.
    List { store: PathBuf },
    /// Detach the remote tier (refused while data is tiered, unless --recall).
    Remove {
        store: PathBuf,
        /// Bring every tiered volume back to local disks first.
        #[arg(long)]
        recall: bool,
    },
    /// Bring tiered volumes back to local disks: all, or those holding data under PREFIX.
    Recall {
        store: PathBuf,
        prefix: Option<String>,
    },
}

/// `objfs lifecycle`.
#[derive(Debug, Args)]
pub struct LifecycleArgs {
    #[command(subcommand)]
    pub command: LifecycleCommand,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress display.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum By {
    Modified,
    Accessed,
}

#[derive(Debug, Subcommand)]
pub enum LifecycleCommand {
    /// Add a rule (replacing the rule with the same prefix).
    Set {
        store: PathBuf,
        /// Keys starting with this ('' for all).
        #[arg(long)]
        prefix: String,
        /// Age after which a current version moves: 90d, 12h, 30m.
        #[arg(long, value_name = "AGE")]
        after: String,
        /// Time after being replaced after which a noncurrent version moves.
        #[arg(long, value_name = "AGE")]
        noncurrent_after: Option<String>,
        /// What the age counts from.
        #[arg(long, value_enum, default_value = "modified")]
        by: By,
    },
    /// Remove the rule for a prefix.
    Remove {
        store: PathBuf,
        #[arg(long)]
        prefix: String,
    },
    /// Show the rules and the lifecycle daemon.
    Show { store: PathBuf },
    /// Move what the rules select now (the lifecycle daemon's job, run to its end).
    Run { store: PathBuf },
    /// Pause the lifecycle daemon (kept across remounts).
    Pause { store: PathBuf },
    /// Resume the lifecycle daemon.
    Resume { store: PathBuf },
}

/// What the tier and lifecycle commands ask of a store (inside [`Request::Tier`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "tier_op", rename_all = "snake_case")]
pub enum TierRequest {
    Add {
        url: String,
        endpoint: Option<String>,
        region: Option<String>,
        profile: Option<String>,
        /// Transfers at once (absent from requests of earlier builds: the default).
        #[serde(default = "default_jobs")]
        jobs: u32,
    },
    List,
    Remove {
        recall: bool,
    },
    Recall {
        prefix: Option<String>,
    },
    RuleSet {
        prefix: String,
        after_secs: u64,
        noncurrent_after_secs: Option<u64>,
        by: By,
    },
    RuleRemove {
        prefix: String,
    },
    RuleShow,
}

fn default_jobs() -> u32 {
    objfs_store::local::tier::DEFAULT_JOBS
}

fn to_value<T: Serialize>(v: &T) -> Result<Value> {
    serde_json::to_value(v).context("cannot encode a report")
}

/// The tier and the rules as `objfs status` shows them.
pub fn status_json(store: &LocalStore) -> Result<(Value, Value)> {
    Ok((
        to_value(&store.tier_status()?)?,
        to_value(&store.lifecycle_rules()?.rules)?,
    ))
}

/// Executes a tier request on `store`.
pub fn execute(
    store: &LocalStore,
    req: &TierRequest,
    on_progress: &mut dyn FnMut(&JobProgress) -> bool,
) -> Result<Value> {
    let report = |job: &str| {
        let job = job.to_string();
        move |r: &RunReport| {
            let _ = on_progress(&JobProgress {
                job: job.clone(),
                note: String::new(),
                run: r.clone(),
            });
        }
    };
    Ok(match req {
        TierRequest::Add {
            url,
            endpoint,
            region,
            profile,
            jobs,
        } => {
            if !(1..=objfs_store::local::tier::MAX_JOBS).contains(jobs) {
                return Err(crate::usage(format!(
                    "--jobs must be between 1 and {}",
                    objfs_store::local::tier::MAX_JOBS
                )));
            }
            let (bucket, prefix) = objfs_store::s3::parse_url(url)?;
            let rec = TierRecord {
                format: TIER_FORMAT,
                bucket,
                prefix,
                endpoint: endpoint.clone(),
                region: region.clone(),
                profile: profile.clone(),
                added: 0,
                jobs: *jobs,
            };
            let st = store
                .tier_add(rec)
                .with_context(|| format!("cannot attach {url} as the remote tier"))?;
            json!({"tier": to_value(&st)?})
        }
        TierRequest::List => json!({"tier": to_value(&store.tier_status()?)?}),
        TierRequest::Remove { recall } => {
            let mut cb = report("tier recall");
            let run = store.tier_remove(*recall, &mut cb)?;
            json!({"removed": true, "recall": to_value(&run)?})
        }
        TierRequest::Recall { prefix } => {
            let mut cb = report("tier recall");
            let run = store.tier_recall(prefix.as_deref(), &mut cb)?;
            json!({"recall": to_value(&run)?, "tier": to_value(&store.tier_status()?)?})
        }
        TierRequest::RuleSet {
            prefix,
            after_secs,
            noncurrent_after_secs,
            by,
        } => {
            let rules = store.set_lifecycle_rule(Rule {
                prefix: prefix.clone(),
                after_secs: *after_secs,
                noncurrent_after_secs: *noncurrent_after_secs,
                by: match by {
                    By::Modified => AgeBy::Modified,
                    By::Accessed => AgeBy::Accessed,
                },
            })?;
            json!({"rules": to_value(&rules.rules)?})
        }
        TierRequest::RuleRemove { prefix } => {
            json!({"rules": to_value(&store.remove_lifecycle_rule(prefix)?.rules)?})
        }
        TierRequest::RuleShow => {
            let reports = store.daemon_reports()?;
            let daemon = reports.iter().find(|r| r.name == "lifecycle");
            json!({
                "rules": to_value(&store.lifecycle_rules()?.rules)?,
                "tier": to_value(&store.tier_status()?)?,
                "daemon": to_value(&daemon)?,
            })
        }
    })
}

/// Parses an age: 90d, 12h, 1w, 30m, 45s (humantime).
pub fn parse_age(text: &str) -> Result<u64> {
    let d: Duration = humantime::parse_duration(text.trim())
        .with_context(|| format!("{text:?} is not an age (e.g. 90d, 12h, 30m)"))?;
    Ok(d.as_secs())
}

fn age_text(secs: u64) -> String {
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

/// The rules as text lines.
pub fn rules_text(rules: &Value) -> String {
    let Some(rules) = rules.as_array().filter(|r| !r.is_empty()) else {
        return "  (no lifecycle rules)\n".into();
    };
    let mut s = String::new();
    for r in rules {
        let nc = match r["noncurrent_after_secs"].as_u64() {
            Some(n) => format!(", noncurrent after {}", age_text(n)),
            None => String::new(),
        };
        s += &format!(
            "  prefix {:?}: after {} since {}{nc}\n",
            r["prefix"].as_str().unwrap_or(""),
            age_text(r["after_secs"].as_u64().unwrap_or(0)),
            r["by"].as_str().unwrap_or("modified"),
        );
    }
    s
}

fn tier_text(t: &Value) -> String {
    if t.is_null() {
        return "no remote tier\n".into();
    }
    let mut s = format!("tier:            {}", t["url"].as_str().unwrap_or(""));
    if let Some(e) = t["endpoint"].as_str() {
        s += &format!(" at {e}");
    }
    s += &format!(
        "\n                 {} volume(s), {} remote; {} cached locally\n",
        t["volumes"].as_u64().unwrap_or(0),
        human_bytes(t["bytes"].as_u64().unwrap_or(0)),
        human_bytes(t["cache_bytes"].as_u64().unwrap_or(0)),
    );
    s
}

/// The lines `objfs status` adds for the tier and the rules.
pub fn status_text(v: &Value) -> String {
    if v["tier"].is_null() && v["lifecycle"].as_array().is_none_or(|a| a.is_empty()) {
        return String::new();
    }
    let mut s = tier_text(&v["tier"]);
    s += "lifecycle:\n";
    s += &rules_text(&v["lifecycle"]);
    s
}

fn print_run(job: &str, v: &Value) -> Result<()> {
    let run: Option<RunReport> = serde_json::from_value(v.clone())?;
    if let Some(run) = run {
        println!("{job}: {}", run_progress_text(job, &run));
        println!("{job}: {}", counters_text(&run.counters));
    }
    Ok(())
}

/// `objfs tier`.
pub fn tier(a: &TierArgs) -> Result<()> {
    let (store, req) = match &a.command {
        TierCommand::Add {
            store,
            url,
            s3,
            jobs,
        } => (
            store,
            TierRequest::Add {
                url: url.clone(),
                endpoint: s3.endpoint.clone(),
                region: s3.region.clone(),
                profile: s3.profile.clone(),
                jobs: *jobs,
            },
        ),
        TierCommand::List { store } => (store, TierRequest::List),
        TierCommand::Remove { store, recall } => (store, TierRequest::Remove { recall: *recall }),
        TierCommand::Recall { store, prefix } => (
            store,
            TierRequest::Recall {
                prefix: prefix.clone(),
            },
        ),
    };
    let target = target::resolve(store)?;
    let v = target.execute(&Request::Tier(req.clone()), &mut Feedback::new(a.quiet))?;
    if a.json {
        println!("{v}");
        return Ok(());
    }
    match req {
        TierRequest::Remove { .. } => {
            print_run("tier recall", &v["recall"])?;
            println!("remote tier removed");
        }
        TierRequest::Recall { .. } => {
            print_run("tier recall", &v["recall"])?;
            print!("{}", tier_text(&v["tier"]));
        }
        _ => print!("{}", tier_text(&v["tier"])),
    }
    Ok(())
}

/// `objfs lifecycle`.
pub fn lifecycle(a: &LifecycleArgs) -> Result<()> {
    let (store, req) = match &a.command {
        LifecycleCommand::Set {
            store,
            prefix,
            after,
            noncurrent_after,
            by,
        } => (
            store,
            Request::Tier(TierRequest::RuleSet {
                prefix: prefix.clone(),
                after_secs: parse_age(after)?,
                noncurrent_after_secs: noncurrent_after.as_deref().map(parse_age).transpose()?,
                by: *by,
            }),
        ),
        LifecycleCommand::Remove { store, prefix } => (
            store,
            Request::Tier(TierRequest::RuleRemove {
                prefix: prefix.clone(),
            }),
        ),
        LifecycleCommand::Show { store } => (store, Request::Tier(TierRequest::RuleShow)),
        LifecycleCommand::Run { store } => (
            store,
            Request::Run {
                name: "lifecycle".into(),
                gc: None,
                scrub: None,
            },
        ),
        LifecycleCommand::Pause { store } | LifecycleCommand::Resume { store } => (
            store,
            Request::Daemon {
                name: "lifecycle".into(),
                action: if matches!(a.command, LifecycleCommand::Pause { .. }) {
                    crate::ops::DaemonAction::Pause
                } else {
                    crate::ops::DaemonAction::Resume
                },
            },
        ),
    };
    let target = target::resolve(store)?;
    let v = target.execute(&req, &mut Feedback::new(a.quiet))?;
    if a.json {
        println!("{v}");
        return Ok(());
    }
    match &a.command {
        LifecycleCommand::Run { .. } => {
            if v["run"].is_null() {
                println!("lifecycle: nothing to move");
            } else {
                print_run("lifecycle", &v["run"])?;
            }
            if v["finished"].as_bool() != Some(true) {
                bail!("lifecycle: stopped before the end (the mount is going away)");
            }
        }
        LifecycleCommand::Pause { .. } | LifecycleCommand::Resume { .. } => {
            println!(
                "lifecycle daemon {}",
                if matches!(a.command, LifecycleCommand::Pause { .. }) {
                    "paused"
                } else {
                    "resumed"
                }
            );
        }
        _ => {
            if !v["tier"].is_null() || v.get("tier").is_some() {
                print!("{}", tier_text(&v["tier"]));
            }
            println!("lifecycle rules:");
            print!("{}", rules_text(&v["rules"]));
            if let Some(d) = v.get("daemon").filter(|d| !d.is_null()) {
                let counters = &d["progress"]["counters"];
                println!(
                    "lifecycle daemon: {}; tiered so far: {} volume(s), {}",
                    if d["running"].as_bool() == Some(true) {
                        "running"
                    } else {
                        "not running (store not mounted)"
                    },
                    counters["volumes_tiered"].as_u64().unwrap_or(0),
                    human_bytes(counters["bytes_tiered"].as_u64().unwrap_or(0)),
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_parse_in_days_hours_and_minutes() {
        assert_eq!(parse_age("90d").unwrap(), 90 * 86_400);
        assert_eq!(parse_age("7d").unwrap(), 7 * 86_400);
        assert_eq!(parse_age("12h").unwrap(), 12 * 3600);
        assert_eq!(parse_age("0s").unwrap(), 0);
        assert!(parse_age("soon").is_err());
        let req: TierRequest =
            serde_json::from_str(r#"{"tier_op":"recall","prefix":"a/"}"#).unwrap();
        assert_eq!(
            req,
            TierRequest::Recall {
                prefix: Some("a/".into())
            }
        );
    }
}
