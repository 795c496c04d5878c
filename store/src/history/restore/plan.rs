//! Planning a restore: list every version under the prefix and decide per key ([`decide`]).
//!
//! The listing is the seed article's: one version listing is a sequence of pages (each needs
//! the previous page's markers), so the prefix is first split into sub-prefixes by listing its
//! first levels with a delimiter (which costs O(entries at that level)), and then the versions
//! under each sub-prefix are listed in parallel, at most `jobs` listings at a time. A level is
//! split again while there are fewer sub-prefixes than `jobs` (up to [`MAX_SPLIT_DEPTH`]
//! levels), so that a prefix with one big directory still lists in parallel.
//!
//! A key whose version of the moment stands for another key ([`Companion`]: a hard link's
//! stub and the object holding the file) brings that key into the plan too, even outside the
//! prefix: its versions are listed (one listing per such key, `jobs` at a time) and decided
//! like the others, never with `--exact` (it was live then). Several names of one object add
//! it once.
//!
//! On a backend whose version listings carry no metadata (S3), each restoring step's source
//! metadata is read with a head, and a key counts as unchanged when its current version has
//! the etag of its version of the moment (a metadata-only change is not seen there).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use futures::stream::{self, StreamExt};

use super::decide::{decide, live_at};
use super::{Companion, Progress, Step, Watch};
use crate::error::Result;
use crate::store::ObjectStore;
use crate::types::{ListVersionsRequest, VersionInfo};

/// How many levels below the prefix are split into sub-prefixes at most.
pub const MAX_SPLIT_DEPTH: usize = 3;

/// A restore's plan: the steps, by key, and what was listed to make it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// Keys and versions (delete markers included) listed under the prefix.
    pub keys: u64,
    pub versions: u64,
    /// How many sub-prefixes were listed in parallel.
    pub subprefixes: u64,
}

/// Running counts of what the listings have seen.
#[derive(Default)]
struct Counts {
    keys: AtomicU64,
    versions: AtomicU64,
}

/// What one listing found: steps for its keys, the common prefixes (with a delimiter), and
/// the keys its versions of the moment stand for ([`Companion`]).
struct Found {
    steps: Vec<Step>,
    prefixes: Vec<String>,
    companions: Vec<String>,
}

/// Decides one key (its versions, newest first) into `found`.
fn decide_key(
    found: &mut Found,
    versions: &[VersionInfo],
    at: SystemTime,
    exact: bool,
    companion: Option<Companion>,
) {
    found.steps.extend(decide(versions, at, exact));
    if let Some(then) = companion.and_then(|c| live_at(versions, at).and_then(|v| c(&v.metadata))) {
        found.companions.push(then);
    }
}

/// Lists every version under `prefix` (with `delimiter`, only the keys of its first level, and
/// its common prefixes) and decides each key.
async fn list_and_decide<S: ObjectStore + ?Sized>(
    store: &S,
    prefix: String,
    delimiter: Option<&str>,
    at: SystemTime,
    exact: bool,
    counts: &Counts,
    companion: Option<Companion<'_>>,
) -> Result<Found> {
    let mut req = ListVersionsRequest {
        prefix,
        delimiter: delimiter.map(str::to_string),
        ..Default::default()
    };
    let mut found = Found {
        steps: Vec::new(),
        prefixes: Vec::new(),
        companions: Vec::new(),
    };
    // One key's versions, newest first (a key's versions may span pages).
    let mut key_versions: Vec<VersionInfo> = Vec::new();
    loop {
        let page = store.list_versions(&req).await?;
        counts
            .versions
            .fetch_add(page.versions.len() as u64, Ordering::Relaxed);
        for v in page.versions {
            if key_versions.first().is_some_and(|f| f.key != v.key) {
                counts.keys.fetch_add(1, Ordering::Relaxed);
                decide_key(&mut found, &key_versions, at, exact, companion);
                key_versions.clear();
            }
            key_versions.push(v);
        }
        found.prefixes.extend(page.common_prefixes);
        match page.next_key_marker {
            Some(k) => {
                req.key_marker = Some(k);
                req.version_marker = page.next_version_marker;
            }
            None => break,
        }
    }
    if !key_versions.is_empty() {
        counts.keys.fetch_add(1, Ordering::Relaxed);
        decide_key(&mut found, &key_versions, at, exact, companion);
    }
    Ok(found)
}

/// Decides `key` alone (a companion outside the prefix).
async fn decide_one<S: ObjectStore + ?Sized>(
    store: &S,
    key: String,
    at: SystemTime,
    counts: &Counts,
) -> Result<Option<Step>> {
    let versions = crate::history::key_versions(store, &key).await?;
    if versions.is_empty() {
        return Ok(None);
    }
    counts.keys.fetch_add(1, Ordering::Relaxed);
    counts
        .versions
        .fetch_add(versions.len() as u64, Ordering::Relaxed);
    Ok(decide(&versions, at, false))
}

/// Reads the metadata of each step's source version, for backends whose version listings do
/// not carry it (S3): one head per undelete or revert, `jobs` at a time. Without it the
/// restored versions would lose their POSIX attributes.
async fn fill_metadata<S: ObjectStore + ?Sized>(
    store: &S,
    steps: &mut [Step],
    jobs: usize,
) -> Result<()> {
    let heads = stream::iter(steps.iter().enumerate())
        .filter_map(|(i, s)| async move { s.source.clone().map(|v| (i, s.key.clone(), v)) })
        .map(|(i, key, v)| async move { store.head(&key, Some(v)).await.map(|info| (i, info)) })
        .buffer_unordered(jobs)
        .collect::<Vec<_>>()
        .await;
    for h in heads {
        let (i, info) = h?;
        if let Some(step) = steps.get_mut(i) {
            step.source_metadata = info.metadata;
        }
    }
    Ok(())
}

/// Plans the restore of every key under `prefix` to what it showed at `at` (`exact`: keys
/// made since are deleted too), listing at most `jobs` sub-prefixes at a time; with
/// `companion`, also of the keys outside the prefix that its versions of the moment stand for.
pub async fn plan<S: ObjectStore + ?Sized>(
    store: &S,
    prefix: &str,
    at: SystemTime,
    exact: bool,
    jobs: usize,
    companion: Option<Companion<'_>>,
    watch: &mut dyn Watch,
) -> Result<Plan> {
    crate::key::validate_prefix(prefix)?;
    let jobs = jobs.max(1);
    let counts = Arc::new(Counts::default());
    let mut progress = Progress {
        planning: true,
        ..Default::default()
    };
    let mut report = |watch: &mut dyn Watch, counts: &Counts| {
        progress.keys_listed = counts.keys.load(Ordering::Relaxed);
        progress.versions_listed = counts.versions.load(Ordering::Relaxed);
        watch.progress(&progress)
    };
    let mut steps = Vec::new();
    let mut companions = BTreeSet::new();
    // Split level by level while there are too few sub-prefixes to keep `jobs` listings busy.
    let mut frontier = vec![prefix.to_string()];
    let mut depth = 0;
    while !frontier.is_empty() && (depth == 0 || (frontier.len() < jobs && depth < MAX_SPLIT_DEPTH))
    {
        let level = std::mem::take(&mut frontier);
        let mut listings = stream::iter(level)
            .map(|p| list_and_decide(store, p, Some("/"), at, exact, &counts, companion))
            .buffer_unordered(jobs);
        while let Some(found) = listings.next().await {
            let found = found?;
            steps.extend(found.steps);
            companions.extend(found.companions);
            frontier.extend(found.prefixes);
            report(watch, &counts);
        }
        depth += 1;
    }
    let subprefixes = frontier.len() as u64;
    let mut listings = stream::iter(frontier)
        .map(|p| list_and_decide(store, p, None, at, exact, &counts, companion))
        .buffer_unordered(jobs);
    while let Some(found) = listings.next().await {
        let found = found?;
        steps.extend(found.steps);
        companions.extend(found.companions);
        report(watch, &counts);
    }
    drop(listings);
    // Companions under the prefix were listed and decided with it.
    let mut decided = stream::iter(companions.into_iter().filter(|k| !k.starts_with(prefix)))
        .map(|k| decide_one(store, k, at, &counts))
        .buffer_unordered(jobs);
    while let Some(step) = decided.next().await {
        steps.extend(step?);
        report(watch, &counts);
    }
    drop(decided);
    if !store.features().list_returns_metadata {
        fill_metadata(store, &mut steps, jobs).await?;
    }
    steps.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(Plan {
        steps,
        keys: counts.keys.load(Ordering::Relaxed),
        versions: counts.versions.load(Ordering::Relaxed),
        subprefixes,
    })
}
