//! Listing every key under a prefix (what a directory move copies), split by prefix so that
//! several sub-trees are listed at once.
//!
//! A flat listing of a prefix is a chain of pages, each of which needs the previous page's
//! continuation token: on a bucket, one round trip after another, however many keys the tree
//! holds. So the tree is first split into sub-prefixes by delimited listings of its first
//! levels (a level costs O(entries at that level)), and the sub-prefixes are then listed flat,
//! up to `jobs` at a time. A level is split again while it has fewer sub-prefixes than `jobs`,
//! at most [`MAX_SPLIT_DEPTH`] levels below the prefix, so a tree whose keys sit in one big
//! sub-directory still lists in parallel. This is the restore planner's approach
//! (`objfs_store::history::restore::plan`) applied to current keys.
//!
//! Every key under the prefix is found exactly once: a delimited listing returns the keys of
//! its level and rolls every deeper key up into exactly one common prefix, and the common
//! prefixes of one level are disjoint.

use futures::stream::{self, StreamExt};
use objfs_store::{ListRequest, ObjectInfo, ObjectStore};

use crate::error::FsResult;

/// How many levels below the prefix are split into sub-prefixes at most.
pub(crate) const MAX_SPLIT_DEPTH: usize = 3;

/// Keys asked for per listing page.
const LIST_PAGE: usize = 1000;

/// At least `limit` keys under `prefix` (every one when there are fewer), listed with up to
/// `jobs` listings in flight, in no particular order; and whether keys were left unlisted
/// (the listing stops once it has `limit`).
pub(crate) async fn list_tree(
    store: &dyn ObjectStore,
    prefix: &str,
    jobs: usize,
    limit: usize,
) -> FsResult<(Vec<ObjectInfo>, bool)> {
    let jobs = jobs.max(1);
    let mut out: Vec<ObjectInfo> = Vec::new();
    let mut frontier = vec![prefix.to_string()];
    let mut depth = 0;
    while !frontier.is_empty() && (depth == 0 || (frontier.len() < jobs && depth < MAX_SPLIT_DEPTH))
    {
        let level = std::mem::take(&mut frontier);
        let mut listings = stream::iter(level)
            .map(|p| list_all(store, p, true, limit))
            .buffer_unordered(jobs);
        while let Some(found) = listings.next().await {
            let found = found?;
            out.extend(found.objects);
            frontier.extend(found.prefixes);
            if found.truncated || out.len() >= limit {
                return Ok((out, true));
            }
        }
        depth += 1;
    }
    let mut listings = stream::iter(frontier)
        .map(|p| list_all(store, p, false, limit))
        .buffer_unordered(jobs);
    while let Some(found) = listings.next().await {
        let found = found?;
        out.extend(found.objects);
        if found.truncated || out.len() >= limit {
            return Ok((out, true));
        }
    }
    Ok((out, false))
}

/// What one listing of a prefix found.
struct Found {
    objects: Vec<ObjectInfo>,
    /// Common prefixes (delimited listings only).
    prefixes: Vec<String>,
    /// The listing stopped at `limit` keys with more left.
    truncated: bool,
}

/// Every page of one listing of `prefix` (delimited by `/` when `delimited`), stopping once
/// it holds `limit` keys.
async fn list_all(
    store: &dyn ObjectStore,
    prefix: String,
    delimited: bool,
    limit: usize,
) -> FsResult<Found> {
    let mut found = Found {
        objects: Vec::new(),
        prefixes: Vec::new(),
        truncated: false,
    };
    let mut token: Option<String> = None;
    loop {
        let page = store
            .list(&ListRequest {
                prefix: prefix.clone(),
                delimiter: delimited.then(|| "/".to_string()),
                continuation: token.take(),
                max_keys: LIST_PAGE,
                ..Default::default()
            })
            .await?;
        found.objects.extend(
            page.objects
                .into_iter()
                .filter(|o| o.key.starts_with(&prefix)),
        );
        found.prefixes.extend(
            page.common_prefixes
                .into_iter()
                .filter(|p| p.starts_with(&prefix)),
        );
        match page.next_token {
            None => return Ok(found),
            Some(t) if found.objects.len() < limit => token = Some(t),
            Some(_) => {
                found.truncated = true;
                return Ok(found);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;
    use std::time::Duration;

    use objfs_store::fault::{Fault, FaultStore, Op, Rule};
    use objfs_store::memory::MemoryStore;
    use objfs_store::{ObjectStore, PutOptions};

    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
    }

    async fn put_keys(store: &dyn ObjectStore, keys: &[String]) {
        for k in keys {
            let body = bytes::Bytes::from_static(b"x").into();
            store
                .put(k, body, PutOptions::default())
                .await
                .expect("put");
        }
    }

    /// Every key under `prefix`, by one flat listing.
    async fn flat(store: &dyn ObjectStore, prefix: &str) -> BTreeSet<String> {
        let f = list_all(store, prefix.to_string(), false, usize::MAX)
            .await
            .expect("list");
        f.objects.into_iter().map(|o| o.key).collect()
    }

    /// Trees of every shape the split meets: keys beside sub-directories at each level, one
    /// deep sub-directory holding everything (split again), directory markers (`d/`), names
    /// that sort around `/` (`a!`, `a0`), neighbours of the prefix that must not be listed
    /// (`dir2/...`, `dir!x`), and levels of more than a page.
    fn tree() -> Vec<String> {
        let mut keys = vec![
            "dir/".to_string(),
            "dir/top".into(),
            "dir/a/".into(),
            "dir/a/x".into(),
            "dir/a!".into(),
            "dir/a0".into(),
            "dir/a/b/c/d/e/deep".into(),
            "dir/only/one/two/three/f".into(),
            "dir2/outside".into(),
            "dir!x".into(),
            "di".into(),
        ];
        for i in 0..1500 {
            keys.push(format!("dir/wide/f{i:04}"));
        }
        for i in 0..30 {
            keys.push(format!("dir/many/s{i:02}/g"));
            keys.push(format!("dir/many/s{i:02}/sub/h"));
        }
        for i in 0..1200 {
            keys.push(format!("dir/f{i:04}"));
        }
        keys
    }

    #[test]
    fn the_split_listing_finds_every_key_once() {
        rt().block_on(async {
            let store = MemoryStore::new();
            put_keys(&store, &tree()).await;
            for prefix in ["dir/", "dir/a/", "dir/only/", "dir/many/", "", "nothing/"] {
                let want = flat(&store, prefix).await;
                for jobs in [1, 2, 8, 64] {
                    let (got, more) = list_tree(&store, prefix, jobs, usize::MAX)
                        .await
                        .expect("list_tree");
                    assert!(!more, "{prefix} jobs {jobs}: nothing is left");
                    let n = got.len();
                    let got: BTreeSet<String> = got.into_iter().map(|o| o.key).collect();
                    assert_eq!(n, got.len(), "{prefix} jobs {jobs}: a key listed twice");
                    assert_eq!(got, want, "{prefix} jobs {jobs}");
                }
            }
            assert!(flat(&store, "dir/").await.len() > 2700);
        });
    }

    #[test]
    fn a_limit_stops_the_listing_and_says_more_is_left() {
        rt().block_on(async {
            let store = MemoryStore::new();
            put_keys(&store, &tree()).await;
            let all = flat(&store, "dir/").await;
            for limit in [1, 10, 999, 1000, 2000] {
                let (got, more) = list_tree(&store, "dir/", 8, limit).await.expect("list");
                assert!(more, "limit {limit}");
                assert!(got.len() >= limit.min(all.len()), "limit {limit}");
                let keys: BTreeSet<String> = got.iter().map(|o| o.key.clone()).collect();
                assert_eq!(keys.len(), got.len(), "no key twice");
                assert!(keys.is_subset(&all));
            }
            // A limit above the tree's size lists it whole.
            let (got, more) = list_tree(&store, "dir/", 8, all.len() + 1)
                .await
                .expect("list");
            assert!(!more);
            assert_eq!(got.len(), all.len());
        });
    }

    #[test]
    fn sub_trees_are_listed_at_the_same_time() {
        rt().block_on(async {
            let inner: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
            let keys: Vec<String> = (0..16)
                .flat_map(|d| (0..20).map(move |f| format!("t/d{d:02}/f{f:02}")))
                .collect();
            put_keys(inner.as_ref(), &keys).await;
            let store = FaultStore::new(inner);
            // Every listing takes a while, as a bucket's round trip does.
            store.add(Rule::always(
                Op::List,
                Fault::Delay(Duration::from_millis(20)),
            ));
            let (got, more) = list_tree(&store, "t/", 8, usize::MAX).await.expect("list");
            assert!(!more);
            assert_eq!(got.len(), keys.len());
            assert_eq!(store.peak_in_flight(), 8, "16 sub-trees, 8 at a time");
            // One at a time when asked.
            let store1 = FaultStore::new(store.inner().clone());
            let (got, _) = list_tree(&store1, "t/", 1, usize::MAX).await.expect("list");
            assert_eq!(got.len(), keys.len());
            assert_eq!(store1.peak_in_flight(), 1);
        });
    }
}
