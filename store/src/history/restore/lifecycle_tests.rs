//! The lifecycle of a restore job's records, on both embedded backends: a finished job keeps
//! only its job record (with how it ended) for `KEEP_FINISHED`, a planned job that never ran
//! as long, an interrupted one until it is resumed or abandoned; `--replan` supersedes the
//! older plan of the same request.

use std::time::{Duration, SystemTime};

use super::job::{self, JobState, KEEP_FINISHED};
use super::*;
use crate::local::LocalStore;
use crate::memory::MemoryStore;
use crate::store::ObjectStore;
use crate::types::PutOptions;

const DAY: Duration = Duration::from_secs(24 * 3600);
const NS: Duration = Duration::from_nanos(1);

/// Every record under `restore/`, by name.
async fn records(store: &dyn ObjectStore) -> Vec<String> {
    let mut names: Vec<String> = store
        .list_records("restore/")
        .await
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    names.sort();
    names
}

/// `n` keys under `p/` written, then deleted; the moment between.
async fn deleted_keys(store: &dyn ObjectStore, n: usize) -> SystemTime {
    for i in 0..n {
        store
            .put(&format!("p/{i:06}"), "x".into(), PutOptions::default())
            .await
            .unwrap();
    }
    let at = SystemTime::now();
    while SystemTime::now() <= at {
        std::hint::spin_loop();
    }
    for i in 0..n {
        store.delete(&format!("p/{i:06}")).await.unwrap();
    }
    at
}

fn request(at: SystemTime, as_of: &str) -> Request {
    Request {
        prefix: "p/".into(),
        at,
        as_of: as_of.into(),
        exact: false,
        jobs: 2,
    }
}

struct StopAt(u64);
impl Watch for StopAt {
    fn progress(&mut self, p: &Progress) -> bool {
        p.steps_settled < self.0
    }
}

async fn lifecycle(store: &dyn ObjectStore) {
    let n = CHUNK_STEPS + 300;
    let at = deleted_keys(store, n).await;
    let now = SystemTime::now();

    // A finished job: only its record stays, with how it ended, for KEEP_FINISHED.
    let (mut done, _) = plan_job(store, &request(at, "a"), now, None, &mut Unwatched)
        .await
        .unwrap();
    assert_eq!(done.chunks, 2);
    assert_eq!(records(store).await.len(), 3, "two plan chunks and the job");
    let report = execute(store, &mut done, 2, &mut Unwatched).await.unwrap();
    assert!(report.all_succeeded(), "{report:?}");
    let finished_at = SystemTime::now();
    assert_eq!(
        records(store).await,
        vec![format!("restore/jobs/{}", done.id)]
    );
    let kept = job::get(store, &done.id).await.unwrap().unwrap();
    assert_eq!(kept.state, JobState::Finished);
    assert!(kept.plan_removed);
    let (when, ended) = kept.finished.expect("how it ended");
    assert!(when <= finished_at);
    assert_eq!(
        ended,
        job::Ended {
            done: n as u64,
            ..Default::default()
        }
    );

    // Interrupted (stopped in its second chunk) and planned-only jobs of other requests.
    for i in 0..n {
        store.delete(&format!("p/{i:06}")).await.unwrap();
    }
    let (mut stopped, _) = plan_job(store, &request(at, "b"), now + NS, None, &mut Unwatched)
        .await
        .unwrap();
    let r = execute(store, &mut stopped, 2, &mut StopAt(CHUNK_STEPS as u64 + 10))
        .await
        .unwrap();
    assert!(r.stopped);
    let earlier = at - Duration::from_nanos(1);
    let (planned, _) = plan_job(
        store,
        &request(earlier, "c"),
        now + 2 * NS,
        None,
        &mut Unwatched,
    )
    .await
    .unwrap();
    assert_eq!(planned.state, JobState::Planned);

    // Within a week nothing goes; after it, the finished and the never-started jobs go, the
    // interrupted one stays (however old) with its whole plan and checkpoint.
    assert!(job::prune(store, now + DAY).await.unwrap().is_empty());
    assert_eq!(job::list(store).await.unwrap().len(), 3);
    let mut removed = job::prune(store, finished_at + KEEP_FINISHED + DAY)
        .await
        .unwrap();
    removed.sort();
    let mut expected = vec![done.id.clone(), planned.id.clone()];
    expected.sort();
    assert_eq!(removed, expected);
    assert!(job::prune(store, now + 100 * KEEP_FINISHED)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        records(store).await,
        vec![
            format!("restore/{}/done/000000", stopped.id),
            format!("restore/{}/plan/000000", stopped.id),
            format!("restore/{}/plan/000001", stopped.id),
            format!("restore/jobs/{}", stopped.id),
        ]
    );

    // Abandoned: every record gone; unknown or malformed ids are errors that change nothing.
    for bad in ["0123456789abcdef", "../jobs/x", ""] {
        let e = job::abandon(store, bad).await.unwrap_err();
        assert!(e.to_string().contains("no restore job"), "{e}");
    }
    assert_eq!(records(store).await.len(), 4);
    let gone = job::abandon(store, &stopped.id).await.unwrap();
    assert_eq!(gone.state, JobState::Running);
    assert!(records(store).await.is_empty());

    // --replan: the newer plan of the same request supersedes the older unfinished one.
    let (first, _) = plan_job(store, &request(at, "d"), now, None, &mut Unwatched)
        .await
        .unwrap();
    let (second, _) = plan_job(store, &request(at, "d"), now + DAY, None, &mut Unwatched)
        .await
        .unwrap();
    assert_eq!(
        job::supersede(store, &second).await.unwrap(),
        vec![first.id]
    );
    let left: Vec<String> = job::list(store)
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(left, vec![second.id]);
}

#[tokio::test]
async fn job_records_live_as_long_as_they_are_useful_on_memory() {
    lifecycle(&MemoryStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_records_live_as_long_as_they_are_useful_on_local() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::init(&dir.path().join("s"), Default::default()).unwrap();
    lifecycle(&store).await;
}
