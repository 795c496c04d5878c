//! A failure-injecting decorator over any [`ObjectStore`] (feature `testing`), so that tests
//! can put a real mount over a store that fails the way a remote one does: errors (retryable
//! or not, before or after the operation took effect), delays, throttling, and read bodies
//! that come back short, broken off or altered.
//!
//! [`FaultStore`] forwards every operation to the store inside, after consulting its rules in
//! the order they were added: the first rule that matches the operation (and the key prefix,
//! when it names one) and still has injections left decides what happens. Rules are added
//! and cleared while the store is in use (a test turns faults on and off around a mounted
//! filesystem). Every operation, the default methods of the trait included, is forwarded to
//! the inner store's own implementation, so the decorated store keeps the inner one's
//! semantics (atomic rename, records, history) where no rule applies.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use crate::error::{Result, StoreError};
use crate::store::ObjectStore;
use crate::types::*;

/// The operations a rule can name (one per method of [`ObjectStore`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Put,
    Get,
    Head,
    Delete,
    DeleteIf,
    DeleteVersion,
    Copy,
    ChangeMany,
    Rename,
    List,
    ListVersions,
    CreateMultipart,
    UploadPart,
    UploadPartCopy,
    UploadPartZeros,
    ListParts,
    CompleteMultipart,
    AbortMultipart,
    ListMultipartUploads,
    Sync,
    Capacity,
    HeadAt,
    ListAt,
    GetRecord,
    PutRecord,
    ListRecords,
    SetKeyTimes,
    KeyTimes,
}

impl Op {
    /// Operations that change the store (the ones a "fail writes" rule names).
    pub const WRITES: &'static [Op] = &[
        Op::Put,
        Op::Delete,
        Op::DeleteIf,
        Op::DeleteVersion,
        Op::Copy,
        Op::ChangeMany,
        Op::Rename,
        Op::CreateMultipart,
        Op::UploadPart,
        Op::UploadPartCopy,
        Op::UploadPartZeros,
        Op::CompleteMultipart,
        Op::AbortMultipart,
        Op::PutRecord,
    ];
}

/// What a matching rule does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Fails before the operation reaches the inner store (nothing changes): a retryable
    /// error ([`StoreError::Unavailable`], as a 500 or a dropped connection) or not
    /// ([`StoreError::Backend`]).
    Fail { retryable: bool },
    /// Runs the operation, then fails as [`Fault::Fail`] does: the change happened but its
    /// answer was lost (an S3 request whose response never came).
    FailAfter { retryable: bool },
    /// Fails with [`StoreError::Throttled`] (S3's `503 SlowDown`) before the operation.
    Throttle,
    /// Waits this long, then runs the operation.
    Delay(Duration),
    /// A get whose body lacks its last byte (the range it claims is unchanged).
    ShortBody,
    /// A get whose body carries one byte more than its range.
    LongBody,
    /// A get whose body breaks off with a retryable error after its first chunk.
    BrokenBody,
    /// A get whose body has one byte altered (same length).
    CorruptBody,
    /// Refuses the operation before it reaches the inner store, as a bucket refuses a
    /// request it will never allow (S3's `403 AccessDenied`): [`StoreError::PermissionDenied`].
    Refuse,
}

/// One rule: `fault` for `op` on keys starting with `prefix`, after `skip` matching calls
/// pass through untouched, at most `times` times (`None`: for as long as the rule stands).
#[derive(Debug, Clone)]
pub struct Rule {
    pub op: Op,
    pub prefix: String,
    pub fault: Fault,
    pub skip: u32,
    pub times: Option<u32>,
}

impl Rule {
    /// `fault` on every call of `op`, for as long as the rule stands.
    pub fn always(op: Op, fault: Fault) -> Rule {
        Rule {
            op,
            prefix: String::new(),
            fault,
            skip: 0,
            times: None,
        }
    }

    /// `fault` on the next `n` calls of `op`.
    pub fn times(op: Op, fault: Fault, n: u32) -> Rule {
        Rule {
            times: Some(n),
            ..Rule::always(op, fault)
        }
    }

    /// Only for keys (or record names) starting with `prefix`.
    pub fn on_prefix(mut self, prefix: &str) -> Rule {
        self.prefix = prefix.to_string();
        self
    }

    /// Lets the first `n` matching calls through.
    pub fn after(mut self, n: u32) -> Rule {
        self.skip = n;
        self
    }
}

/// The decorator: the store inside, the rules, and how many faults were injected.
pub struct FaultStore {
    inner: Arc<dyn ObjectStore>,
    rules: Mutex<Vec<Rule>>,
    injected: AtomicU64,
    calls: AtomicU64,
    /// Operations running now, and the most that ever ran at once.
    in_flight: AtomicU64,
    peak: AtomicU64,
}

impl FaultStore {
    /// `inner` with no rules (every operation passes through).
    pub fn new(inner: Arc<dyn ObjectStore>) -> FaultStore {
        FaultStore {
            inner,
            rules: Mutex::new(Vec::new()),
            injected: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            peak: AtomicU64::new(0),
        }
    }

    /// Adds a rule (after the existing ones).
    pub fn add(&self, rule: Rule) {
        if let Ok(mut g) = self.rules.lock() {
            g.push(rule);
        }
    }

    /// Adds `fault` for every operation of `ops` (one rule each, for as long as they stand).
    pub fn add_all(&self, ops: &[Op], fault: Fault) {
        for op in ops {
            self.add(Rule::always(*op, fault.clone()));
        }
    }

    /// Removes every rule: from now on every operation passes through.
    pub fn clear(&self) {
        if let Ok(mut g) = self.rules.lock() {
            g.clear();
        }
    }

    /// How many faults were injected so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    /// How many operations were called so far (faulted or not).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// The most operations that ran at the same time so far (a test's measure of how much
    /// its caller does in parallel). Counts every operation but `get` (whose body outlives
    /// the call).
    pub fn peak_in_flight(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    /// The store inside.
    pub fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    /// The fault for this call, if a rule applies (and counts the call against it).
    fn pick(&self, op: Op, key: &str) -> Option<Fault> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut g = self.rules.lock().ok()?;
        let rule = g.iter_mut().find(|r| {
            r.op == op && key.starts_with(r.prefix.as_str()) && r.times.is_none_or(|t| t > 0)
        })?;
        if rule.skip > 0 {
            rule.skip -= 1;
            return None;
        }
        if let Some(t) = rule.times.as_mut() {
            *t -= 1;
        }
        self.injected.fetch_add(1, Ordering::Relaxed);
        Some(rule.fault.clone())
    }

    /// Runs `f` under the rules for `op` on `key`.
    async fn run<T, F>(&self, op: Op, key: &str, f: F) -> Result<T>
    where
        F: std::future::Future<Output = Result<T>>,
    {
        let now = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(now, Ordering::Relaxed);
        let _running = Running(&self.in_flight);
        apply(self.pick(op, key), op, key, f).await
    }
}

/// Counts an operation out of [`FaultStore::in_flight`] when it ends (or is dropped).
struct Running<'a>(&'a AtomicU64);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Runs `f` with `fault` (if any) applied.
async fn apply<T, F>(fault: Option<Fault>, op: Op, key: &str, f: F) -> Result<T>
where
    F: std::future::Future<Output = Result<T>>,
{
    match fault {
        None => f.await,
        Some(Fault::Fail { retryable }) => Err(injected(op, key, retryable)),
        Some(Fault::Throttle) => Err(StoreError::Throttled {
            what: format!("{op:?} {key:?}"),
            reason: "injected throttling".into(),
        }),
        Some(Fault::FailAfter { retryable }) => {
            let _ = f.await;
            Err(injected(op, key, retryable))
        }
        Some(Fault::Delay(d)) => {
            tokio::time::sleep(d).await;
            f.await
        }
        Some(Fault::Refuse) => Err(StoreError::PermissionDenied(format!(
            "{op:?} {key:?}: injected AccessDenied (HTTP 403)"
        ))),
        // Body faults apply to gets only (see `get`); elsewhere they change nothing.
        Some(_) => f.await,
    }
}

/// The error an injected failure returns.
fn injected(op: Op, key: &str, retryable: bool) -> StoreError {
    let what = format!("{op:?} {key:?}");
    if retryable {
        StoreError::Unavailable {
            what,
            reason: "injected failure (retryable)".into(),
        }
    } else {
        StoreError::Backend {
            backend: "fault injection",
            source: format!("{what}: injected failure").into(),
        }
    }
}

/// `got` with its body damaged as `fault` says.
async fn damage(mut got: GetResult, fault: &Fault) -> Result<GetResult> {
    let what = format!("get {:?}", got.info.key);
    got.body = match fault {
        Fault::BrokenBody => {
            let first = match got.body {
                Body::Bytes(b) => b.slice(..b.len().min(1)),
                Body::Stream(mut s) => s.next().await.transpose()?.unwrap_or_default(),
            };
            let broken = StoreError::Unavailable {
                what,
                reason: "injected: the body broke off".into(),
            };
            Body::from_stream(futures::stream::iter([Ok(first), Err(broken)]))
        }
        Fault::ShortBody | Fault::LongBody | Fault::CorruptBody => {
            let data = got.body.collect().await?;
            let mut b = BytesMut::from(&data[..]);
            match fault {
                Fault::ShortBody => b.truncate(b.len().saturating_sub(1)),
                Fault::LongBody => b.extend_from_slice(b"!"),
                _ => {
                    if let Some(x) = b.last_mut() {
                        *x ^= 0x5a;
                    }
                }
            }
            Body::Bytes(b.freeze())
        }
        _ => got.body,
    };
    Ok(got)
}

#[async_trait]
impl ObjectStore for FaultStore {
    fn describe(&self) -> String {
        format!("faults over {}", self.inner.describe())
    }

    fn features(&self) -> StoreFeatures {
        self.inner.features()
    }

    async fn put(&self, key: &str, body: Body, opts: PutOptions) -> Result<ObjectInfo> {
        self.run(Op::Put, key, self.inner.put(key, body, opts))
            .await
    }

    async fn get(&self, key: &str, opts: GetOptions) -> Result<GetResult> {
        match self.pick(Op::Get, key) {
            Some(
                f @ (Fault::ShortBody | Fault::LongBody | Fault::BrokenBody | Fault::CorruptBody),
            ) => damage(self.inner.get(key, opts).await?, &f).await,
            other => apply(other, Op::Get, key, self.inner.get(key, opts)).await,
        }
    }

    async fn head(&self, key: &str, version: Option<VersionId>) -> Result<ObjectInfo> {
        self.run(Op::Head, key, self.inner.head(key, version)).await
    }

    async fn delete(&self, key: &str) -> Result<Option<VersionId>> {
        self.run(Op::Delete, key, self.inner.delete(key)).await
    }

    async fn delete_if(&self, key: &str, condition: Condition) -> Result<Option<VersionId>> {
        self.run(Op::DeleteIf, key, self.inner.delete_if(key, condition))
            .await
    }

    async fn delete_version(&self, key: &str, version: VersionId) -> Result<()> {
        self.run(
            Op::DeleteVersion,
            key,
            self.inner.delete_version(key, version),
        )
        .await
    }

    async fn copy(&self, src: &str, dst: &str, opts: CopyOptions) -> Result<ObjectInfo> {
        self.run(Op::Copy, dst, self.inner.copy(src, dst, opts))
            .await
    }

    async fn change_many(&self, changes: &[Change]) -> Result<Vec<Result<Option<VersionId>>>> {
        self.run(Op::ChangeMany, "", self.inner.change_many(changes))
            .await
    }

    async fn rename(&self, src: &str, dst: &str, opts: RenameOptions) -> Result<ObjectInfo> {
        self.run(Op::Rename, src, self.inner.rename(src, dst, opts))
            .await
    }

    async fn list(&self, req: &ListRequest) -> Result<ListPage> {
        self.run(Op::List, &req.prefix, self.inner.list(req)).await
    }

    async fn list_keys(&self, req: &ListRequest) -> Result<ListPage> {
        self.run(Op::List, &req.prefix, self.inner.list_keys(req))
            .await
    }

    async fn list_versions(&self, req: &ListVersionsRequest) -> Result<VersionsPage> {
        self.run(Op::ListVersions, &req.prefix, self.inner.list_versions(req))
            .await
    }

    async fn create_multipart(&self, key: &str, opts: PutOptions) -> Result<String> {
        self.run(
            Op::CreateMultipart,
            key,
            self.inner.create_multipart(key, opts),
        )
        .await
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: Body,
    ) -> Result<PartInfo> {
        let f = self.inner.upload_part(key, upload_id, part_number, body);
        self.run(Op::UploadPart, key, f).await
    }

    async fn upload_part_copy(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        src: &str,
        src_version: Option<VersionId>,
        range: Option<Range<u64>>,
    ) -> Result<PartInfo> {
        let f = self
            .inner
            .upload_part_copy(key, upload_id, part_number, src, src_version, range);
        self.run(Op::UploadPartCopy, key, f).await
    }

    async fn upload_part_zeros(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        len: u64,
    ) -> Result<PartInfo> {
        let f = self
            .inner
            .upload_part_zeros(key, upload_id, part_number, len);
        self.run(Op::UploadPartZeros, key, f).await
    }

    async fn list_parts(&self, key: &str, upload_id: &str) -> Result<Vec<PartInfo>> {
        self.run(Op::ListParts, key, self.inner.list_parts(key, upload_id))
            .await
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> Result<ObjectInfo> {
        let f = self.inner.complete_multipart(key, upload_id, parts);
        self.run(Op::CompleteMultipart, key, f).await
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<()> {
        let f = self.inner.abort_multipart(key, upload_id);
        self.run(Op::AbortMultipart, key, f).await
    }

    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<UploadInfo>> {
        let f = self.inner.list_multipart_uploads(prefix);
        self.run(Op::ListMultipartUploads, prefix, f).await
    }

    async fn sync(&self) -> Result<()> {
        self.run(Op::Sync, "", self.inner.sync()).await
    }

    async fn capacity(&self) -> Result<Capacity> {
        self.run(Op::Capacity, "", self.inner.capacity()).await
    }

    async fn head_at(&self, key: &str, at: SystemTime) -> Result<ObjectInfo> {
        self.run(Op::HeadAt, key, self.inner.head_at(key, at)).await
    }

    async fn list_at(&self, req: &ListRequest, at: SystemTime) -> Result<ListPage> {
        self.run(Op::ListAt, &req.prefix, self.inner.list_at(req, at))
            .await
    }

    async fn get_record(&self, name: &str) -> Result<Option<Bytes>> {
        self.run(Op::GetRecord, name, self.inner.get_record(name))
            .await
    }

    async fn put_record(&self, name: &str, value: Option<Bytes>, durable: bool) -> Result<()> {
        let f = self.inner.put_record(name, value, durable);
        self.run(Op::PutRecord, name, f).await
    }

    async fn list_records(&self, prefix: &str) -> Result<Vec<(String, Bytes)>> {
        self.run(Op::ListRecords, prefix, self.inner.list_records(prefix))
            .await
    }

    async fn set_key_times(&self, key: &str, times: KeyTimes) -> Result<()> {
        self.run(Op::SetKeyTimes, key, self.inner.set_key_times(key, times))
            .await
    }

    async fn key_times(&self, key: &str) -> Result<KeyTimes> {
        self.run(Op::KeyTimes, key, self.inner.key_times(key)).await
    }
}
