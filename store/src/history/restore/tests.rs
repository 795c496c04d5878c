//! Restore against a model: random histories on the memory store, a moment between them,
//! plan and execute, and check that the prefix shows what it showed at the moment, that
//! nothing outside it moved, that every step made exactly one version, that a second plan
//! is empty, and that keys changed between plan and run are conflicts left alone.

use std::collections::BTreeMap;
use std::time::SystemTime;

use proptest::prelude::*;

use super::job::{self, JobState};
use super::*;
use crate::memory::MemoryStore;
use crate::store::ObjectStore;
use crate::types::{Condition, ListRequest, ListVersionsRequest, Metadata, PutOptions};

const KEYS: &[&str] = &[
    "p/a", "p/b", "p/d/", "p/d/x", "p/d/y", "p/e/f/g", "p/z", "pq", "q/a",
];
const PREFIX: &str = "p/";

#[derive(Debug, Clone)]
enum Op {
    Put(usize, u8),
    /// A metadata-only change (a chmod): same bytes, new mode.
    Chmod(usize, u8),
    Delete(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..KEYS.len(), 0u8..4).prop_map(|(k, c)| Op::Put(k, c)),
        1 => (0..KEYS.len(), 0u8..3).prop_map(|(k, m)| Op::Chmod(k, m)),
        2 => (0..KEYS.len()).prop_map(Op::Delete),
    ]
}

async fn apply_op(store: &MemoryStore, op: &Op) {
    match op {
        Op::Put(k, c) => {
            let body = format!("content {c}").into_bytes();
            store
                .put(KEYS[*k], body.into(), PutOptions::default())
                .await
                .unwrap();
        }
        Op::Chmod(k, m) => {
            let Ok(cur) = store.head(KEYS[*k], None).await else {
                return;
            };
            let mut meta = cur.metadata.clone();
            meta.insert("x-amz-meta-mode".into(), format!("3318{m}"));
            let opts = crate::types::CopyOptions {
                metadata: Some(meta),
                ..Default::default()
            };
            store.copy(KEYS[*k], KEYS[*k], opts).await.unwrap();
        }
        Op::Delete(k) => {
            store.delete(KEYS[*k]).await.unwrap();
        }
    }
}

/// The moment now, with the clock moved past it (versions made after are newer).
fn moment() -> SystemTime {
    let t = SystemTime::now();
    while SystemTime::now() <= t {
        std::hint::spin_loop();
    }
    t
}

/// What a listing shows, key -> (etag, metadata without the restore's mark).
type View = BTreeMap<String, (String, Metadata)>;

async fn view(store: &MemoryStore, prefix: &str, at: Option<SystemTime>) -> View {
    let mut out = View::new();
    let mut req = ListRequest {
        prefix: prefix.into(),
        ..Default::default()
    };
    loop {
        let page = match at {
            Some(t) => store.list_at(&req, t).await.unwrap(),
            None => store.list(&req).await.unwrap(),
        };
        for o in page.objects {
            let mut m = o.metadata;
            m.remove(RESTORED_FROM);
            out.insert(o.key, (o.etag, m));
        }
        match page.next_token {
            Some(t) => req.continuation = Some(t),
            None => return out,
        }
    }
}

async fn version_counts(store: &MemoryStore) -> BTreeMap<String, usize> {
    let page = store
        .list_versions(&ListVersionsRequest {
            max_keys: 100_000,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    for v in page.versions {
        *out.entry(v.key).or_insert(0) += 1;
    }
    out
}

fn outside(v: &View) -> View {
    v.iter()
        .filter(|(k, _)| !k.starts_with(PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn req(at: SystemTime, as_of: &str, exact: bool, jobs: usize) -> Request {
    Request {
        prefix: PREFIX.into(),
        at,
        as_of: as_of.into(),
        exact,
        jobs,
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn restore_brings_the_prefix_back_to_the_moment(
        before in proptest::collection::vec(op(), 0..25),
        after in proptest::collection::vec(op(), 0..25),
        exact in any::<bool>(),
        jobs in 1usize..5,
    ) {
        rt().block_on(async {
            let store = MemoryStore::new();
            for o in &before {
                apply_op(&store, o).await;
            }
            let at = moment();
            for o in &after {
                apply_op(&store, o).await;
            }
            let then = view(&store, PREFIX, Some(at)).await;
            let now_all = view(&store, "", None).await;
            let counts_before = version_counts(&store).await;
            let (mut job, steps) =
                plan_job(&store, &req(at, "t", exact, jobs), SystemTime::now(), None, &mut Unwatched)
                    .await
                    .unwrap();
            let report = execute(&store, &mut job, jobs, &mut Unwatched).await.unwrap();
            prop_assert!(report.all_succeeded(), "{report:?}");
            prop_assert_eq!(report.done, steps.len() as u64);
            let restored = view(&store, PREFIX, None).await;
            if exact {
                prop_assert_eq!(&restored, &then);
            } else {
                // Every key of the moment is back; keys made since are as they were.
                for (k, v) in &then {
                    prop_assert_eq!(restored.get(k), Some(v), "{}", k);
                }
                for (k, v) in &restored {
                    if !then.contains_key(k) {
                        prop_assert_eq!(now_all.get(k), Some(v), "{}", k);
                    }
                }
            }
            // Nothing outside the prefix moved.
            let all_after = view(&store, "", None).await;
            prop_assert_eq!(outside(&all_after), outside(&now_all));
            // Each step made exactly one version of its key; no other key got one.
            let counts_after = version_counts(&store).await;
            for (k, n) in &counts_after {
                let made = steps.iter().filter(|s| &s.key == k).count();
                prop_assert_eq!(*n, counts_before.get(k).copied().unwrap_or(0) + made, "{}", k);
            }
            // Done: planning again finds nothing to do.
            let again = plan::plan(&store, PREFIX, at, exact, jobs, None, &mut Unwatched).await.unwrap();
            prop_assert!(again.steps.is_empty(), "{:?}", again.steps);
            Ok(())
        })?;
    }
}

#[tokio::test]
async fn keys_changed_between_plan_and_run_are_conflicts_left_alone() {
    let store = MemoryStore::new();
    for k in ["p/a", "p/b", "p/c", "p/d"] {
        store
            .put(k, "old".into(), PutOptions::default())
            .await
            .unwrap();
    }
    let at = moment();
    store
        .put("p/a", "new".into(), PutOptions::default())
        .await
        .unwrap();
    store
        .put("p/b", "new".into(), PutOptions::default())
        .await
        .unwrap();
    store.delete("p/c").await.unwrap();
    store.delete("p/d").await.unwrap();
    store
        .put("p/e", "made".into(), PutOptions::default())
        .await
        .unwrap();
    let (mut job, steps) = plan_job(
        &store,
        &req(at, "t", true, 2),
        SystemTime::now(),
        None,
        &mut Unwatched,
    )
    .await
    .unwrap();
    assert_eq!(steps.len(), 5);
    // Changed meanwhile: p/b overwritten again, p/c undeleted by hand, p/e deleted.
    store
        .put("p/b", "newer".into(), PutOptions::default())
        .await
        .unwrap();
    store
        .put("p/c", "by hand".into(), PutOptions::default())
        .await
        .unwrap();
    store.delete("p/e").await.unwrap();
    struct Collect(Vec<(String, Outcome)>);
    impl Watch for Collect {
        fn settled(&mut self, s: &Step, o: &Outcome) {
            self.0.push((s.key.clone(), o.clone()));
        }
    }
    let mut seen = Collect(Vec::new());
    let report = execute(&store, &mut job, 2, &mut seen).await.unwrap();
    let outcome = |k: &str| seen.0.iter().find(|(key, _)| key == k).unwrap().1.as_str();
    assert_eq!(outcome("p/a"), "done");
    assert_eq!(outcome("p/b"), "conflict");
    assert_eq!(outcome("p/c"), "conflict");
    assert_eq!(outcome("p/d"), "done");
    // Deleted by someone else: the key already shows its target.
    assert_eq!(outcome("p/e"), "already");
    assert_eq!((report.done, report.conflicts, report.already), (2, 2, 1));
    assert!(!report.all_succeeded());
    let get = |k: &'static str| {
        let s = &store;
        async move {
            s.get(k, Default::default())
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
        }
    };
    assert_eq!(get("p/b").await, "newer");
    assert_eq!(get("p/c").await, "by hand");
    assert_eq!(get("p/a").await, "old");
    assert_eq!(get("p/d").await, "old");
    assert_eq!(job.state, JobState::Finished);
}

#[tokio::test]
async fn a_stopped_run_resumes_without_doing_a_key_twice() {
    let store = MemoryStore::new();
    let n = CHUNK_STEPS + 700;
    for i in 0..n {
        let k = format!("p/{:02}/{i:06}", i % 7);
        store
            .put(&k, "x".into(), PutOptions::default())
            .await
            .unwrap();
    }
    let at = moment();
    for i in 0..n {
        store
            .delete(&format!("p/{:02}/{i:06}", i % 7))
            .await
            .unwrap();
    }
    let (mut job, steps) = plan_job(
        &store,
        &req(at, "-1h", false, 4),
        SystemTime::now(),
        None,
        &mut Unwatched,
    )
    .await
    .unwrap();
    assert_eq!(steps.len(), n);
    assert_eq!(job.chunks, 2);
    // The watcher stops the run in the second chunk.
    struct StopAt(u64);
    impl Watch for StopAt {
        fn progress(&mut self, p: &Progress) -> bool {
            p.steps_settled < self.0
        }
    }
    let first = execute(&store, &mut job, 4, &mut StopAt(CHUNK_STEPS as u64 + 300))
        .await
        .unwrap();
    assert!(first.stopped);
    assert_eq!(job.state, JobState::Running);
    // The same command finds the unfinished job (a relative moment given again).
    let later = SystemTime::now();
    let mut found = job::find_unfinished(&store, PREFIX, later, "-1h", false)
        .await
        .unwrap()
        .expect("the unfinished job");
    assert_eq!(found.id, job.id);
    let second = execute(&store, &mut found, 4, &mut Unwatched)
        .await
        .unwrap();
    assert!(second.all_succeeded(), "{second:?}");
    assert_eq!(second.chunks_resumed, 1);
    // Steps done by the stopped run count as done (this job's mark), none as changes twice.
    assert_eq!(second.done, n as u64);
    let counts = version_counts(&store).await;
    assert!(counts.values().all(|c| *c == 3), "put, delete, restore");
    assert!(job::find_unfinished(&store, PREFIX, later, "-1h", false)
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn moments_in_the_future_are_refused() {
    let store = MemoryStore::new();
    let now = SystemTime::now();
    let later = now + std::time::Duration::from_secs(60);
    let e = plan_job(
        &store,
        &req(later, "x", false, 1),
        now,
        None,
        &mut Unwatched,
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("future"), "{e}");
    assert!(job::list(&store).await.unwrap().is_empty());
}

/// `delete_if` (what `--exact` uses) on both embedded backends: a marker only when the
/// condition on the current version holds, nothing changed otherwise.
#[tokio::test]
async fn delete_if_deletes_only_the_expected_version() {
    let dir = tempfile::tempdir().unwrap();
    let local = crate::local::LocalStore::init(&dir.path().join("s"), Default::default()).unwrap();
    let memory = MemoryStore::new();
    for store in [&local as &dyn ObjectStore, &memory] {
        let v1 = store
            .put("k", "1".into(), PutOptions::default())
            .await
            .unwrap();
        let v2 = store
            .put("k", "2".into(), PutOptions::default())
            .await
            .unwrap();
        let stale = Condition::IfVersion(v1.version.clone());
        let e = store.delete_if("k", stale).await.unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::PreconditionFailed);
        let e = store
            .delete_if("k", Condition::IfNotExists)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::PreconditionFailed);
        assert_eq!(store.head("k", None).await.unwrap().version, v2.version);
        let current = Condition::IfVersion(v2.version.clone());
        let marker = store.delete_if("k", current.clone()).await.unwrap();
        assert!(marker.is_some());
        assert_eq!(
            store.head("k", None).await.unwrap_err().kind(),
            crate::ErrorKind::NotFound
        );
        // Deleted: the old condition fails, IfNotExists holds and adds nothing.
        let e = store.delete_if("k", current).await.unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::PreconditionFailed);
        assert_eq!(
            store.delete_if("k", Condition::IfNotExists).await.unwrap(),
            None
        );
    }
    local.close().unwrap();
}

/// The memory store as a backend whose version listings carry no metadata (S3's
/// ListObjectVersions): everything else as the memory store does it.
struct NoListedMetadata(MemoryStore);

#[async_trait::async_trait]
impl ObjectStore for NoListedMetadata {
    fn describe(&self) -> String {
        "memory without listed metadata".into()
    }
    fn features(&self) -> crate::types::StoreFeatures {
        crate::types::StoreFeatures {
            list_returns_metadata: false,
            ..self.0.features()
        }
    }
    async fn put(
        &self,
        key: &str,
        body: crate::types::Body,
        opts: PutOptions,
    ) -> crate::Result<crate::types::ObjectInfo> {
        self.0.put(key, body, opts).await
    }
    async fn get(
        &self,
        key: &str,
        opts: crate::types::GetOptions,
    ) -> crate::Result<crate::types::GetResult> {
        self.0.get(key, opts).await
    }
    async fn head(
        &self,
        key: &str,
        version: Option<crate::types::VersionId>,
    ) -> crate::Result<crate::types::ObjectInfo> {
        self.0.head(key, version).await
    }
    async fn delete(&self, key: &str) -> crate::Result<Option<crate::types::VersionId>> {
        self.0.delete(key).await
    }
    async fn delete_version(&self, key: &str, v: crate::types::VersionId) -> crate::Result<()> {
        self.0.delete_version(key, v).await
    }
    async fn copy(
        &self,
        src: &str,
        dst: &str,
        opts: crate::types::CopyOptions,
    ) -> crate::Result<crate::types::ObjectInfo> {
        self.0.copy(src, dst, opts).await
    }
    async fn list(&self, req: &ListRequest) -> crate::Result<crate::types::ListPage> {
        self.0.list(req).await
    }
    async fn list_versions(
        &self,
        req: &ListVersionsRequest,
    ) -> crate::Result<crate::types::VersionsPage> {
        let mut page = self.0.list_versions(req).await?;
        for v in &mut page.versions {
            v.metadata.clear();
        }
        Ok(page)
    }
    async fn create_multipart(&self, key: &str, opts: PutOptions) -> crate::Result<String> {
        self.0.create_multipart(key, opts).await
    }
    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        n: u32,
        body: crate::types::Body,
    ) -> crate::Result<crate::types::PartInfo> {
        self.0.upload_part(key, upload_id, n, body).await
    }
    async fn upload_part_copy(
        &self,
        key: &str,
        upload_id: &str,
        n: u32,
        src: &str,
        v: Option<crate::types::VersionId>,
        range: Option<std::ops::Range<u64>>,
    ) -> crate::Result<crate::types::PartInfo> {
        self.0
            .upload_part_copy(key, upload_id, n, src, v, range)
            .await
    }
    async fn list_parts(
        &self,
        key: &str,
        upload_id: &str,
    ) -> crate::Result<Vec<crate::types::PartInfo>> {
        self.0.list_parts(key, upload_id).await
    }
    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[crate::types::CompletedPart],
    ) -> crate::Result<crate::types::ObjectInfo> {
        self.0.complete_multipart(key, upload_id, parts).await
    }
    async fn abort_multipart(&self, key: &str, upload_id: &str) -> crate::Result<()> {
        self.0.abort_multipart(key, upload_id).await
    }
    async fn list_multipart_uploads(
        &self,
        prefix: &str,
    ) -> crate::Result<Vec<crate::types::UploadInfo>> {
        self.0.list_multipart_uploads(prefix).await
    }
    async fn sync(&self) -> crate::Result<()> {
        self.0.sync().await
    }
    async fn capacity(&self) -> crate::Result<crate::types::Capacity> {
        self.0.capacity().await
    }
    async fn get_record(&self, name: &str) -> crate::Result<Option<bytes::Bytes>> {
        self.0.get_record(name).await
    }
    async fn put_record(
        &self,
        name: &str,
        value: Option<bytes::Bytes>,
        durable: bool,
    ) -> crate::Result<()> {
        self.0.put_record(name, value, durable).await
    }
    async fn list_records(&self, prefix: &str) -> crate::Result<Vec<(String, bytes::Bytes)>> {
        self.0.list_records(prefix).await
    }
}

/// Where listings carry no metadata, the plan reads each source's metadata, so a restored
/// version keeps its POSIX attributes.
#[tokio::test]
async fn restored_versions_keep_their_metadata_where_listings_carry_none() {
    let store = NoListedMetadata(MemoryStore::new());
    let mode = |m: &str| {
        let mut meta = Metadata::new();
        meta.insert("x-amz-meta-mode".into(), m.into());
        PutOptions {
            metadata: meta,
            ..Default::default()
        }
    };
    store.put("p/a", "a".into(), mode("33152")).await.unwrap();
    store.put("p/b", "b".into(), mode("33188")).await.unwrap();
    let at = moment();
    store.delete("p/a").await.unwrap();
    store.put("p/b", "b2".into(), mode("33261")).await.unwrap();
    let (mut job, steps) = plan_job(
        &store,
        &req(at, "t", false, 4),
        SystemTime::now(),
        None,
        &mut Unwatched,
    )
    .await
    .unwrap();
    assert_eq!(steps.len(), 2);
    let report = execute(&store, &mut job, 4, &mut Unwatched).await.unwrap();
    assert!(report.all_succeeded(), "{report:?}");
    for (k, m) in [("p/a", "33152"), ("p/b", "33188")] {
        let info = store.head(k, None).await.unwrap();
        assert_eq!(info.metadata["x-amz-meta-mode"], m, "{k}");
        assert!(info.metadata.contains_key(RESTORED_FROM));
    }
}

/// Keys a version of the moment stands for ([`Companion`]) are restored with the prefix, even
/// outside it, once however many names stand for them; one under the prefix is not decided
/// twice; and nothing else outside the prefix moves.
#[tokio::test]
async fn companions_of_the_moment_are_restored_with_the_prefix() {
    let store = MemoryStore::new();
    let link = |id: &str| {
        let mut meta = Metadata::new();
        meta.insert("link".into(), id.into());
        PutOptions {
            metadata: meta,
            ..Default::default()
        }
    };
    let companion = |m: &Metadata| m.get("link").cloned();
    store
        .put("obj/1", "one".into(), Default::default())
        .await
        .unwrap();
    store
        .put("obj/2", "two".into(), Default::default())
        .await
        .unwrap();
    store
        .put("obj/3", "three".into(), Default::default())
        .await
        .unwrap();
    store.put("p/a", "".into(), link("obj/1")).await.unwrap();
    store.put("p/b", "".into(), link("obj/1")).await.unwrap();
    store.put("p/c", "".into(), link("obj/2")).await.unwrap();
    store.put("p/d", "".into(), link("p/obj/9")).await.unwrap();
    store
        .put("p/obj/9", "nine".into(), Default::default())
        .await
        .unwrap();
    let at = moment();
    // Overwritten behind unchanged names, deleted with its names, and a key nobody names then.
    store
        .put("obj/1", "ONE".into(), Default::default())
        .await
        .unwrap();
    store.delete("p/c").await.unwrap();
    store.delete("obj/2").await.unwrap();
    store
        .put("obj/3", "THREE".into(), Default::default())
        .await
        .unwrap();
    store
        .put("p/obj/9", "NINE".into(), Default::default())
        .await
        .unwrap();
    let before = version_counts(&store).await;
    let mut r = req(at, "t", false, 3);
    r.prefix = "p/".into();
    let (mut job, steps) = plan_job(
        &store,
        &r,
        SystemTime::now(),
        Some(&companion),
        &mut Unwatched,
    )
    .await
    .unwrap();
    let planned: Vec<(&str, Action)> = steps.iter().map(|s| (s.key.as_str(), s.action)).collect();
    assert_eq!(
        planned,
        [
            ("obj/1", Action::Revert),
            ("obj/2", Action::Undelete),
            ("p/c", Action::Undelete),
            ("p/obj/9", Action::Revert),
        ]
    );
    let report = execute(&store, &mut job, 3, &mut Unwatched).await.unwrap();
    assert!(report.all_succeeded(), "{report:?}");
    let body = |k: &'static str| {
        let store = &store;
        async move {
            store
                .get(k, Default::default())
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
        }
    };
    assert_eq!(body("obj/1").await, "one");
    assert_eq!(body("obj/2").await, "two");
    assert_eq!(
        body("obj/3").await,
        "THREE",
        "named by nothing under p/ then"
    );
    assert_eq!(body("p/obj/9").await, "nine");
    let after = version_counts(&store).await;
    for (k, n) in &before {
        let made = usize::from(["obj/1", "obj/2", "p/c", "p/obj/9"].contains(&k.as_str()));
        assert_eq!(after[k], n + made, "{k}");
    }
    // Planned again: nothing left to do.
    let (_, again) = plan_job(
        &store,
        &r,
        SystemTime::now(),
        Some(&companion),
        &mut Unwatched,
    )
    .await
    .unwrap();
    assert!(again.is_empty(), "{again:?}");
}
