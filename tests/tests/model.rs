//! Model-based property test: random sequences of operations run against the LocalStore and
//! the MemoryStore (the reference model), with every result compared after every step, and
//! the whole state (every version of every key, every open upload) compared after each step.
//!
//! Version ids and upload ids differ between backends, so results are compared structurally:
//! each version gets an ordinal (the order in which the test saw it created) on both sides,
//! and ids are translated to ordinals before comparing. Etags are not compared across backends
//! (only their multipart `-N` suffix is); instead, on each backend, one etag must always stand
//! for the same bytes. Timestamps are not compared. Errors are compared by `kind()`.
//!
//! A small key alphabet (`a`, `a/b`, `b/`, `c.d`, ...) makes collisions, roll-ups and
//! prefix-boundary cases frequent. "Reopen" closes the LocalStore and opens it again.
//! `OBJFS_MODEL_CASES` overrides the number of cases (64 by default).
//!
//! Time travel: after every step the harness notes the moment (the shared clock, which both
//! stores take their version times from, moved on before the next step), and `ListAt` /
//! `HeadAt` read both stores as of a moment taken from an earlier step (or the future).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use objfs_store::local::{LocalConfig, LocalStore};
use objfs_store::memory::MemoryStore;
use objfs_store::{
    Body, CompletedPart, Condition, CopyOptions, ErrorKind, GetOptions, ListRequest,
    ListVersionsRequest, Metadata, ObjectInfo, ObjectStore, PartInfo, PutOptions, Result,
    VersionId, VersionInfo,
};
use objfs_tests::det_bytes;
use proptest::prelude::*;

const KEYS: &[&str] = &["a", "a/b", "a/c", "b", "b/", "b/x/y", "c.d"];
const PREFIXES: &[&str] = &["", "a", "a/", "b", "b/", "b/x", "c", "c."];
const DELIMITERS: &[&str] = &["/", "."];
/// Positions for start_after / key_marker: keys and a few strings between them.
const MARKERS: &[&str] = &["a", "a/", "a/b", "a0", "b", "b/", "b/x/", "c", ""];

// ---------------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Cond {
    None,
    IfNotExists,
    /// IfVersion of the key's idx-th version (newest first), or of a never-made id.
    IfVersion(usize),
}

#[derive(Debug, Clone)]
enum PartSpec {
    Upload {
        n: u32,
        seed: u8,
        len: usize,
    },
    Copy {
        n: u32,
        src: usize,
        version: Option<usize>,
        range: Option<(u64, u64)>,
    },
    /// A part of zeros (a hole in the local store).
    Zeros {
        n: u32,
        len: u64,
    },
}

#[derive(Debug, Clone)]
enum Finish {
    /// Complete with the uploaded parts whose index bit is set in `mask`; `corrupt` spoils one
    /// etag, `reverse` reverses the order.
    Complete {
        mask: u8,
        corrupt: bool,
        reverse: bool,
    },
    Abort,
    LeaveOpen,
}

#[derive(Debug, Clone)]
enum Op {
    Put {
        key: usize,
        seed: u8,
        len: usize,
        meta: Option<u8>,
        cond: Cond,
        stream: bool,
    },
    Get {
        key: usize,
        version: Option<usize>,
        range: Option<(u64, u64)>,
    },
    Head {
        key: usize,
        version: Option<usize>,
    },
    Delete {
        key: usize,
    },
    DeleteVersion {
        key: usize,
        idx: usize,
    },
    Copy {
        src: usize,
        dst: usize,
        version: Option<usize>,
        meta: Option<Option<u8>>,
        cond: Cond,
    },
    List {
        prefix: usize,
        delim: Option<usize>,
        max_keys: usize,
        start_after: Option<usize>,
    },
    ListVersions {
        prefix: usize,
        delim: Option<usize>,
        max_keys: usize,
        marker: Option<(usize, Option<usize>)>,
    },
    /// `list_at` as of the moment after an earlier step (`moment` modulo the steps so far;
    /// one past them is the future).
    ListAt {
        prefix: usize,
        delim: Option<usize>,
        max_keys: usize,
        start_after: Option<usize>,
        moment: usize,
    },
    /// `head_at` as of such a moment.
    HeadAt {
        key: usize,
        moment: usize,
    },
    Multipart {
        key: usize,
        meta: Option<u8>,
        cond: Cond,
        parts: Vec<PartSpec>,
        finish: Finish,
    },
    FinishOpen {
        idx: usize,
        finish: Finish,
    },
    ListUploads {
        prefix: usize,
    },
    Capacity,
    Sync,
    Reopen,
}

fn cond() -> impl Strategy<Value = Cond> {
    prop_oneof![
        3 => Just(Cond::None),
        1 => Just(Cond::IfNotExists),
        1 => (0..4usize).prop_map(Cond::IfVersion),
    ]
}

fn key() -> impl Strategy<Value = usize> {
    0..KEYS.len()
}

fn range() -> impl Strategy<Value = Option<(u64, u64)>> {
    prop::option::of((0..320u64, 0..320u64))
}

fn part_spec() -> impl Strategy<Value = PartSpec> {
    prop_oneof![
        3 => (1..6u32, any::<u8>(), 0..200usize).prop_map(|(n, seed, len)| PartSpec::Upload { n, seed, len }),
        1 => (1..6u32, key(), prop::option::of(0..4usize), range())
            .prop_map(|(n, src, version, range)| PartSpec::Copy { n, src, version, range }),
        1 => (1..6u32, 0..300u64).prop_map(|(n, len)| PartSpec::Zeros { n, len }),
    ]
}

fn finish() -> impl Strategy<Value = Finish> {
    prop_oneof![
        5 => (any::<u8>(), prop::bool::weighted(0.15), prop::bool::weighted(0.1))
            .prop_map(|(mask, corrupt, reverse)| Finish::Complete { mask, corrupt, reverse }),
        1 => Just(Finish::Abort),
        1 => Just(Finish::LeaveOpen),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (key(), 0..4u8, 0..300usize, prop::option::of(0..3u8), cond(), any::<bool>())
            .prop_map(|(key, seed, len, meta, cond, stream)| Op::Put { key, seed, len, meta, cond, stream }),
        3 => (key(), prop::option::of(0..4usize), range())
            .prop_map(|(key, version, range)| Op::Get { key, version, range }),
        2 => (key(), prop::option::of(0..4usize)).prop_map(|(key, version)| Op::Head { key, version }),
        3 => key().prop_map(|key| Op::Delete { key }),
        2 => (key(), 0..5usize).prop_map(|(key, idx)| Op::DeleteVersion { key, idx }),
        2 => (key(), key(), prop::option::of(0..4usize), prop::option::of(prop::option::of(0..3u8)), cond())
            .prop_map(|(src, dst, version, meta, cond)| Op::Copy { src, dst, version, meta, cond }),
        3 => (0..PREFIXES.len(), prop::option::of(0..DELIMITERS.len()), 0..4usize, prop::option::of(0..MARKERS.len()))
            .prop_map(|(prefix, delim, max_keys, start_after)| Op::List { prefix, delim, max_keys, start_after }),
        3 => (0..PREFIXES.len(), prop::option::of(0..DELIMITERS.len()), 0..4usize,
              prop::option::of((0..MARKERS.len(), prop::option::of(0..4usize))))
            .prop_map(|(prefix, delim, max_keys, marker)| Op::ListVersions { prefix, delim, max_keys, marker }),
        3 => (0..PREFIXES.len(), prop::option::of(0..DELIMITERS.len()), 0..4usize, prop::option::of(0..MARKERS.len()), 0..64usize)
            .prop_map(|(prefix, delim, max_keys, start_after, moment)| Op::ListAt { prefix, delim, max_keys, start_after, moment }),
        3 => (key(), 0..64usize).prop_map(|(key, moment)| Op::HeadAt { key, moment }),
        2 => (key(), prop::option::of(0..3u8), cond(), prop::collection::vec(part_spec(), 0..5), finish())
            .prop_map(|(key, meta, cond, parts, finish)| Op::Multipart { key, meta, cond, parts, finish }),
        1 => (0..4usize, finish()).prop_map(|(idx, finish)| Op::FinishOpen { idx, finish }),
        1 => (0..PREFIXES.len()).prop_map(|prefix| Op::ListUploads { prefix }),
        1 => Just(Op::Capacity),
        1 => Just(Op::Sync),
        1 => Just(Op::Reopen),
    ]
}

// ---------------------------------------------------------------------------------------------
// Normalised results
// ---------------------------------------------------------------------------------------------

/// An ObjectInfo without ids, etags and times: the version as an ordinal.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NInfo {
    key: String,
    ord: usize,
    size: u64,
    metadata: Metadata,
    parts: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct NVersion {
    key: String,
    ord: usize,
    is_latest: bool,
    is_delete_marker: bool,
    size: u64,
    metadata: Metadata,
    parts: Option<String>,
}

/// The `N` of a multipart etag `...-N`.
fn parts_suffix(etag: &str) -> Option<String> {
    etag.rsplit_once('-')
        .filter(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .map(|(_, n)| n.to_string())
}

fn meta_of(m: Option<u8>) -> Metadata {
    match m {
        None => Metadata::new(),
        Some(n) => [
            (
                "x-amz-meta-mode".to_string(),
                format!("{}", 33188 + n as u32),
            ),
            ("n".to_string(), n.to_string()),
        ]
        .into(),
    }
}

/// The listing request an `Op::List` or `Op::ListAt` names.
fn list_request(
    prefix: usize,
    delim: Option<usize>,
    max_keys: usize,
    start_after: Option<usize>,
) -> ListRequest {
    ListRequest {
        prefix: PREFIXES[prefix].to_string(),
        delimiter: delim.map(|d| DELIMITERS[d].to_string()),
        start_after: start_after.map(|m| MARKERS[m].to_string()),
        continuation: None,
        max_keys,
    }
}

fn kinds<T>(r: &Result<T>) -> Option<ErrorKind> {
    r.as_ref().err().map(|e| e.kind())
}

const M: usize = 0;
const L: usize = 1;

/// An upload the test created, with both backends' ids and the content of its parts.
struct Upload {
    key: String,
    ids: [String; 2],
    open: bool,
    /// part number -> bytes (as the model has them).
    parts: HashMap<u32, Vec<u8>>,
}

/// Both stores and the translation tables between them.
struct Harness {
    mem: MemoryStore,
    local: Option<LocalStore>,
    path: PathBuf,
    _dir: tempfile::TempDir,
    /// Version id -> ordinal, per side.
    ords: [HashMap<VersionId, usize>; 2],
    /// Ordinal -> (model id, local id).
    pairs: Vec<[VersionId; 2]>,
    /// Ordinal -> content (None for delete markers).
    content: Vec<Option<Vec<u8>>>,
    /// Etag -> the bytes it stands for, per side.
    etags: [HashMap<String, Vec<u8>>; 2],
    uploads: Vec<Upload>,
    /// The moment before the first step and after each step.
    moments: Vec<SystemTime>,
}

/// Now, once the clock has moved past it: a version made after this call is later.
fn moment_now() -> SystemTime {
    let t = SystemTime::now();
    while SystemTime::now() <= t {
        std::hint::spin_loop();
    }
    t
}

impl Harness {
    fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let cfg = LocalConfig {
            volume_size: 64 << 10,
            block_size: 512,
            blob_size: 1024,
            ..Default::default()
        };
        let local = LocalStore::init(&path, cfg).unwrap();
        Harness {
            mem: MemoryStore::new(),
            local: Some(local),
            path,
            _dir: dir,
            ords: [HashMap::new(), HashMap::new()],
            pairs: Vec::new(),
            content: Vec::new(),
            etags: [HashMap::new(), HashMap::new()],
            uploads: Vec::new(),
            moments: vec![moment_now()],
        }
    }

    fn l(&self) -> &LocalStore {
        self.local.as_ref().expect("local store is open")
    }

    fn side(&self, side: usize) -> &dyn ObjectStore {
        if side == M {
            &self.mem
        } else {
            self.l()
        }
    }

    /// Checks that on `side`, `etag` always stands for `bytes`.
    fn check_etag(&mut self, side: usize, etag: &str, bytes: &[u8], what: &str) {
        assert!(!etag.is_empty(), "{what}: empty etag for data");
        match self.etags[side].get(etag) {
            Some(prev) => assert!(
                prev == bytes,
                "{what}: side {side} etag {etag} stands for two different contents"
            ),
            None => {
                self.etags[side].insert(etag.to_string(), bytes.to_vec());
            }
        }
    }

    fn ord(&self, side: usize, v: VersionId, what: &str) -> usize {
        *self.ords[side]
            .get(&v)
            .unwrap_or_else(|| panic!("{what}: side {side} returned unknown version {v}"))
    }

    fn register(&mut self, m: VersionId, l: VersionId, content: Option<Vec<u8>>) -> usize {
        // Ids have no order: a new version is an id this side never returned before.
        for (side, v) in [(M, &m), (L, &l)] {
            assert!(
                self.ords[side]
                    .insert(v.clone(), self.pairs.len())
                    .is_none(),
                "side {side}: version id {v} returned for two versions"
            );
        }
        self.pairs.push([m, l]);
        self.content.push(content);
        self.pairs.len() - 1
    }

    fn norm_info(&mut self, side: usize, i: &ObjectInfo, what: &str) -> NInfo {
        let ord = self.ord(side, i.version.clone(), what);
        let content = self.content[ord]
            .clone()
            .unwrap_or_else(|| panic!("{what}: ObjectInfo for a delete marker"));
        assert_eq!(i.size, content.len() as u64, "{what}: size vs content");
        self.check_etag(side, &i.etag, &content, what);
        NInfo {
            key: i.key.clone(),
            ord,
            size: i.size,
            metadata: i.metadata.clone(),
            parts: parts_suffix(&i.etag),
        }
    }

    fn norm_version(&mut self, side: usize, v: &VersionInfo, what: &str) -> NVersion {
        let ord = self.ord(side, v.version.clone(), what);
        match self.content[ord].clone() {
            Some(c) => self.check_etag(side, &v.etag, &c, what),
            None => assert!(v.etag.is_empty() && v.size == 0, "{what}: marker with data"),
        }
        NVersion {
            key: v.key.clone(),
            ord,
            is_latest: v.is_latest,
            is_delete_marker: v.is_delete_marker,
            size: v.size,
            metadata: v.metadata.clone(),
            parts: parts_suffix(&v.etag),
        }
    }

    /// The versions of `key` per the model, newest first.
    async fn versions(&self, key: &str) -> Vec<VersionInfo> {
        let p = self
            .mem
            .list_versions(&ListVersionsRequest {
                prefix: key.to_string(),
                ..Default::default()
            })
            .await
            .unwrap();
        p.versions.into_iter().filter(|v| v.key == key).collect()
    }

    /// Both sides' ids of the key's idx-th version (newest first), or a never-made id.
    async fn pick(&self, key: &str, idx: usize) -> [VersionId; 2] {
        let vs = self.versions(key).await;
        if vs.is_empty() {
            let never: VersionId = "never-made-by-any-backend".parse().unwrap();
            return [never.clone(), never];
        }
        let o = self.ord(M, vs[idx % vs.len()].version.clone(), "pick");
        self.pairs[o].clone()
    }

    async fn condition(&self, key: &str, c: &Cond) -> [Condition; 2] {
        match c {
            Cond::None => [Condition::None, Condition::None],
            Cond::IfNotExists => [Condition::IfNotExists, Condition::IfNotExists],
            Cond::IfVersion(i) => {
                let [m, l] = self.pick(key, *i).await;
                [Condition::IfVersion(m), Condition::IfVersion(l)]
            }
        }
    }

    /// Compares the results of an operation that makes a version, and registers it.
    async fn new_version(&mut self, what: &str, rm: Result<ObjectInfo>, rl: Result<ObjectInfo>) {
        match (rm, rl) {
            (Ok(a), Ok(b)) => {
                let content = self
                    .mem
                    .get(
                        &a.key,
                        GetOptions {
                            version: Some(a.version.clone()),
                            range: None,
                        },
                    )
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap()
                    .to_vec();
                self.register(a.version.clone(), b.version.clone(), Some(content));
                let na = self.norm_info(M, &a, what);
                let nb = self.norm_info(L, &b, what);
                assert_eq!(na, nb, "{what}");
            }
            (Err(a), Err(b)) => assert_eq!(a.kind(), b.kind(), "{what}: {a} / {b}"),
            (a, b) => panic!("{what}: model {a:?}, local {b:?}"),
        }
    }

    async fn apply(&mut self, op: &Op) {
        let what = format!("{op:?}");
        match op {
            Op::Put {
                key,
                seed,
                len,
                meta,
                cond,
                stream,
            } => {
                let k = KEYS[*key];
                let data = det_bytes(*seed as u64, *len);
                let conds = self.condition(k, cond).await;
                let body = |d: &[u8]| -> Body {
                    if *stream {
                        let chunks: Vec<Result<Bytes>> =
                            d.chunks(7).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
                        Body::from_stream(futures::stream::iter(chunks))
                    } else {
                        Body::from(d.to_vec())
                    }
                };
                let opts = |c| PutOptions {
                    metadata: meta_of(*meta),
                    condition: c,
                    durable: false,
                };
                let rm = self.mem.put(k, body(&data), opts(conds[M].clone())).await;
                let rl = self.l().put(k, body(&data), opts(conds[L].clone())).await;
                self.new_version(&what, rm, rl).await;
            }
            Op::Get {
                key,
                version,
                range,
            } => {
                let k = KEYS[*key];
                let v = match version {
                    Some(i) => Some(self.pick(k, *i).await),
                    None => None,
                };
                let r = range.map(|(s, e)| s..e);
                let mut out = Vec::new();
                for side in [M, L] {
                    let res = self
                        .side(side)
                        .get(
                            k,
                            GetOptions {
                                version: v.clone().map(|p| p[side].clone()),
                                range: r.clone(),
                            },
                        )
                        .await;
                    let res = match res {
                        Ok(g) => {
                            let info = g.info.clone();
                            let rr = g.range.clone();
                            let bytes = g.bytes().await.unwrap().to_vec();
                            Ok((self.norm_info(side, &info, &what), rr, bytes))
                        }
                        Err(e) => Err(e.kind()),
                    };
                    out.push(res);
                }
                assert_eq!(out[0], out[1], "{what}");
            }
            Op::Head { key, version } => {
                let k = KEYS[*key];
                let v = match version {
                    Some(i) => Some(self.pick(k, *i).await),
                    None => None,
                };
                let mut out = Vec::new();
                for side in [M, L] {
                    let res = self
                        .side(side)
                        .head(k, v.clone().map(|p| p[side].clone()))
                        .await;
                    out.push(match res {
                        Ok(i) => Ok(self.norm_info(side, &i, &what)),
                        Err(e) => Err(e.kind()),
                    });
                }
                assert_eq!(out[0], out[1], "{what}");
            }
            Op::Delete { key } => {
                let k = KEYS[*key];
                let rm = self.mem.delete(k).await;
                let rl = self.l().delete(k).await;
                match (rm, rl) {
                    (Ok(Some(a)), Ok(Some(b))) => {
                        self.register(a, b, None);
                    }
                    (Ok(None), Ok(None)) => {}
                    (Err(a), Err(b)) => assert_eq!(a.kind(), b.kind(), "{what}"),
                    (a, b) => panic!("{what}: model {a:?}, local {b:?}"),
                }
            }
            Op::DeleteVersion { key, idx } => {
                let k = KEYS[*key];
                let v = self.pick(k, *idx).await;
                let rm = self.mem.delete_version(k, v[M].clone()).await;
                let rl = self.l().delete_version(k, v[L].clone()).await;
                assert_eq!(kinds(&rm), kinds(&rl), "{what}: {rm:?} / {rl:?}");
            }
            Op::Copy {
                src,
                dst,
                version,
                meta,
                cond,
            } => {
                let (s, d) = (KEYS[*src], KEYS[*dst]);
                let v = match version {
                    Some(i) => Some(self.pick(s, *i).await),
                    None => None,
                };
                let conds = self.condition(d, cond).await;
                let opts = |side: usize| CopyOptions {
                    source_version: v.as_ref().map(|p| p[side].clone()),
                    metadata: meta.map(meta_of),
                    condition: conds[side].clone(),
                    durable: false,
                };
                let rm = self.mem.copy(s, d, opts(M)).await;
                let rl = self.l().copy(s, d, opts(L)).await;
                self.new_version(&what, rm, rl).await;
            }
            Op::List {
                prefix,
                delim,
                max_keys,
                start_after,
            } => {
                let req = list_request(*prefix, *delim, *max_keys, *start_after);
                self.compare_list(&req, None, &what).await;
            }
            Op::ListAt {
                prefix,
                delim,
                max_keys,
                start_after,
                moment,
            } => {
                let req = list_request(*prefix, *delim, *max_keys, *start_after);
                let at = self.moment(*moment);
                self.compare_list(&req, Some(at), &what).await;
            }
            Op::HeadAt { key, moment } => {
                let k = KEYS[*key];
                let at = self.moment(*moment);
                let mut out = Vec::new();
                for side in [M, L] {
                    let res = self.side(side).head_at(k, at).await;
                    out.push(match res {
                        Ok(i) => Ok(self.norm_info(side, &i, &what)),
                        Err(e) => Err(e.kind()),
                    });
                }
                assert_eq!(out[0], out[1], "{what}");
            }
            Op::ListVersions {
                prefix,
                delim,
                max_keys,
                marker,
            } => {
                let base = ListVersionsRequest {
                    prefix: PREFIXES[*prefix].to_string(),
                    delimiter: delim.map(|d| DELIMITERS[d].to_string()),
                    max_keys: *max_keys,
                    ..Default::default()
                };
                let mut reqs = [base.clone(), base];
                if let Some((km, vm)) = marker {
                    let km = MARKERS[*km];
                    let vm = match vm {
                        Some(i) if !km.is_empty() => Some(self.pick(km, *i).await),
                        _ => None,
                    };
                    for side in [M, L] {
                        reqs[side].key_marker = Some(km.to_string());
                        reqs[side].version_marker = vm.clone().map(|p| p[side].clone());
                    }
                }
                self.compare_list_versions(reqs, &what).await;
            }
            Op::Multipart {
                key,
                meta,
                cond,
                parts,
                finish,
            } => {
                let k = KEYS[*key];
                let conds = self.condition(k, cond).await;
                let mut ids = Vec::new();
                for side in [M, L] {
                    let opts = PutOptions {
                        metadata: meta_of(*meta),
                        condition: conds[side].clone(),
                        durable: false,
                    };
                    ids.push(self.side(side).create_multipart(k, opts).await.unwrap());
                }
                self.uploads.push(Upload {
                    key: k.to_string(),
                    ids: [ids[0].clone(), ids[1].clone()],
                    open: true,
                    parts: HashMap::new(),
                });
                let u = self.uploads.len() - 1;
                for p in parts {
                    self.upload_part(u, p, &what).await;
                }
                self.compare_parts(u, &what).await;
                self.finish(u, finish, &what).await;
            }
            Op::FinishOpen { idx, finish } => {
                let open: Vec<usize> = (0..self.uploads.len())
                    .filter(|&i| self.uploads[i].open)
                    .collect();
                if !open.is_empty() {
                    let u = open[idx % open.len()];
                    self.finish(u, finish, &what).await;
                }
            }
            Op::ListUploads { prefix } => {
                let p = PREFIXES[*prefix];
                let mut out = Vec::new();
                for side in [M, L] {
                    let list = self.side(side).list_multipart_uploads(p).await.unwrap();
                    out.push(self.norm_uploads(side, &list, &what));
                }
                assert_eq!(out[0], out[1], "{what}");
            }
            Op::Capacity => {
                let cm = self.mem.capacity().await.unwrap();
                let cl = self.l().capacity().await.unwrap();
                assert_eq!(
                    (cm.used_bytes, cm.objects),
                    (cl.used_bytes, cl.objects),
                    "{what}"
                );
                assert!(cl.total_bytes >= cl.free_bytes);
            }
            Op::Sync => {
                self.mem.sync().await.unwrap();
                self.l().sync().await.unwrap();
            }
            Op::Reopen => {
                let local = self.local.take().expect("open");
                local.close().unwrap();
                self.local = Some(LocalStore::open(&self.path).unwrap());
            }
        }
    }

    fn norm_uploads(
        &self,
        side: usize,
        list: &[objfs_store::UploadInfo],
        what: &str,
    ) -> Vec<(String, usize)> {
        list.iter()
            .map(|u| {
                let idx = self
                    .uploads
                    .iter()
                    .position(|x| x.ids[side] == u.upload_id)
                    .unwrap_or_else(|| panic!("{what}: unknown upload {}", u.upload_id));
                assert_eq!(self.uploads[idx].key, u.key);
                (u.key.clone(), idx)
            })
            .collect()
    }

    async fn upload_part(&mut self, u: usize, p: &PartSpec, what: &str) {
        let key = self.uploads[u].key.clone();
        let ids = self.uploads[u].ids.clone();
        let (n, res, content) = match p {
            PartSpec::Upload { n, seed, len } => {
                let data = det_bytes(*seed as u64 + 1000, *len);
                let rm = self
                    .mem
                    .upload_part(&key, &ids[M], *n, data.clone().into())
                    .await;
                let rl = self
                    .l()
                    .upload_part(&key, &ids[L], *n, data.clone().into())
                    .await;
                (*n, [rm, rl], Some(data))
            }
            PartSpec::Copy {
                n,
                src,
                version,
                range,
            } => {
                let s = KEYS[*src];
                let v = match version {
                    Some(i) => Some(self.pick(s, *i).await),
                    None => None,
                };
                let r = range.map(|(a, b)| a..b);
                let content = match self
                    .mem
                    .get(
                        s,
                        GetOptions {
                            version: v.clone().map(|p| p[M].clone()),
                            range: r.clone(),
                        },
                    )
                    .await
                {
                    Ok(g) => Some(g.bytes().await.unwrap().to_vec()),
                    Err(_) => None,
                };
                let rm = self
                    .mem
                    .upload_part_copy(
                        &key,
                        &ids[M],
                        *n,
                        s,
                        v.clone().map(|p| p[M].clone()),
                        r.clone(),
                    )
                    .await;
                let rl = self
                    .l()
                    .upload_part_copy(&key, &ids[L], *n, s, v.map(|p| p[L].clone()), r)
                    .await;
                (*n, [rm, rl], content)
            }
            PartSpec::Zeros { n, len } => {
                let rm = self.mem.upload_part_zeros(&key, &ids[M], *n, *len).await;
                let rl = self.l().upload_part_zeros(&key, &ids[L], *n, *len).await;
                (*n, [rm, rl], Some(vec![0u8; *len as usize]))
            }
        };
        let [rm, rl] = res;
        match (rm, rl) {
            (Ok(a), Ok(b)) => {
                let content = content.expect("model made a part it could not read");
                assert_eq!((a.part_number, a.size), (n, content.len() as u64), "{what}");
                assert_eq!((b.part_number, b.size), (a.part_number, a.size), "{what}");
                self.check_etag(M, &a.etag, &content, what);
                self.check_etag(L, &b.etag, &content, what);
                self.uploads[u].parts.insert(n, content);
            }
            (Err(a), Err(b)) => assert_eq!(a.kind(), b.kind(), "{what}: part {p:?}: {a} / {b}"),
            (a, b) => panic!("{what}: part {p:?}: model {a:?}, local {b:?}"),
        }
    }

    async fn compare_parts(&mut self, u: usize, what: &str) -> [Vec<PartInfo>; 2] {
        let key = self.uploads[u].key.clone();
        let ids = self.uploads[u].ids.clone();
        let pm = self.mem.list_parts(&key, &ids[M]).await.unwrap();
        let pl = self.l().list_parts(&key, &ids[L]).await.unwrap();
        let sm: Vec<(u32, u64)> = pm.iter().map(|p| (p.part_number, p.size)).collect();
        let sl: Vec<(u32, u64)> = pl.iter().map(|p| (p.part_number, p.size)).collect();
        assert_eq!(sm, sl, "{what}: list_parts");
        for (side, list) in [(M, &pm), (L, &pl)] {
            for p in list {
                let c = self.uploads[u].parts[&p.part_number].clone();
                self.check_etag(side, &p.etag, &c, what);
            }
        }
        [pm, pl]
    }

    async fn finish(&mut self, u: usize, f: &Finish, what: &str) {
        let key = self.uploads[u].key.clone();
        let ids = self.uploads[u].ids.clone();
        match f {
            Finish::LeaveOpen => {}
            Finish::Abort => {
                let rm = self.mem.abort_multipart(&key, &ids[M]).await;
                let rl = self.l().abort_multipart(&key, &ids[L]).await;
                assert_eq!(kinds(&rm), kinds(&rl), "{what}: abort");
                rm.unwrap();
                self.uploads[u].open = false;
            }
            Finish::Complete {
                mask,
                corrupt,
                reverse,
            } => {
                let parts = self.compare_parts(u, what).await;
                let lists: Vec<Vec<CompletedPart>> = parts
                    .iter()
                    .map(|list| {
                        let mut sel: Vec<CompletedPart> = list
                            .iter()
                            .enumerate()
                            .filter(|(i, _)| mask & (1 << (i % 8)) != 0)
                            .map(|(_, p)| CompletedPart {
                                part_number: p.part_number,
                                etag: p.etag.clone(),
                            })
                            .collect();
                        if *corrupt {
                            if let Some(p) = sel.first_mut() {
                                p.etag = "bogus".into();
                            }
                        }
                        if *reverse {
                            sel.reverse();
                        }
                        sel
                    })
                    .collect();
                let rm = self.mem.complete_multipart(&key, &ids[M], &lists[M]).await;
                let rl = self.l().complete_multipart(&key, &ids[L], &lists[L]).await;
                if rm.is_ok() {
                    self.uploads[u].open = false;
                }
                self.new_version(&format!("{what}: complete"), rm, rl).await;
            }
        }
    }

    /// The moment after step `idx` (modulo the steps so far; one past them: an hour ahead).
    fn moment(&self, idx: usize) -> SystemTime {
        let n = self.moments.len();
        match self.moments.get(idx % (n + 1)) {
            Some(t) => *t,
            None => SystemTime::now() + Duration::from_secs(3600),
        }
    }

    /// Compares a listing of now (`at` = `None`) or as of `at`, page by page.
    async fn compare_list(&mut self, req: &ListRequest, at: Option<SystemTime>, what: &str) {
        let mut reqs = [req.clone(), req.clone()];
        for page in 0.. {
            assert!(page < 1000, "{what}: listing does not end");
            let (rm, rl) = match at {
                Some(at) => (
                    self.mem.list_at(&reqs[M], at).await,
                    self.l().list_at(&reqs[L], at).await,
                ),
                None => (self.mem.list(&reqs[M]).await, self.l().list(&reqs[L]).await),
            };
            let (pm, pl) = match (rm, rl) {
                (Ok(a), Ok(b)) => (a, b),
                (Err(a), Err(b)) => {
                    assert_eq!(a.kind(), b.kind(), "{what}");
                    return;
                }
                (a, b) => panic!("{what}: page {page}: model {a:?}, local {b:?}"),
            };
            let om: Vec<NInfo> = pm
                .objects
                .iter()
                .map(|o| self.norm_info(M, o, what))
                .collect();
            let ol: Vec<NInfo> = pl
                .objects
                .iter()
                .map(|o| self.norm_info(L, o, what))
                .collect();
            assert_eq!(om, ol, "{what}: page {page} objects");
            assert_eq!(
                pm.common_prefixes, pl.common_prefixes,
                "{what}: page {page} prefixes"
            );
            assert_eq!(
                pm.next_token.is_some(),
                pl.next_token.is_some(),
                "{what}: page {page} truncation"
            );
            match (pm.next_token, pl.next_token) {
                (Some(a), Some(b)) => {
                    reqs[M].continuation = Some(a);
                    reqs[L].continuation = Some(b);
                }
                _ => return,
            }
        }
    }

    async fn compare_list_versions(&mut self, mut reqs: [ListVersionsRequest; 2], what: &str) {
        for page in 0.. {
            assert!(page < 1000, "{what}: version listing does not end");
            let rm = self.mem.list_versions(&reqs[M]).await;
            let rl = self.l().list_versions(&reqs[L]).await;
            let (pm, pl) = match (rm, rl) {
                (Ok(a), Ok(b)) => (a, b),
                (Err(a), Err(b)) => {
                    assert_eq!(a.kind(), b.kind(), "{what}");
                    return;
                }
                (a, b) => panic!("{what}: page {page}: model {a:?}, local {b:?}"),
            };
            let vm: Vec<NVersion> = pm
                .versions
                .iter()
                .map(|v| self.norm_version(M, v, what))
                .collect();
            let vl: Vec<NVersion> = pl
                .versions
                .iter()
                .map(|v| self.norm_version(L, v, what))
                .collect();
            assert_eq!(vm, vl, "{what}: page {page} versions");
            assert_eq!(
                pm.common_prefixes, pl.common_prefixes,
                "{what}: page {page} prefixes"
            );
            assert_eq!(
                pm.next_key_marker, pl.next_key_marker,
                "{what}: page {page} key marker"
            );
            let om = pm.next_version_marker.clone().map(|v| self.ord(M, v, what));
            let ol = pl.next_version_marker.clone().map(|v| self.ord(L, v, what));
            assert_eq!(om, ol, "{what}: page {page} version marker");
            if pm.next_key_marker.is_none() {
                return;
            }
            reqs[M].key_marker = pm.next_key_marker;
            reqs[M].version_marker = pm.next_version_marker;
            reqs[L].key_marker = pl.next_key_marker;
            reqs[L].version_marker = pl.next_version_marker;
        }
    }

    /// Compares everything: all versions of all keys, and all open uploads.
    async fn compare_state(&mut self, what: &str) {
        let all = ListVersionsRequest::default();
        self.compare_list_versions([all.clone(), all], &format!("state after {what}"))
            .await;
        let mut out = Vec::new();
        for side in [M, L] {
            let list = self.side(side).list_multipart_uploads("").await.unwrap();
            out.push(self.norm_uploads(side, &list, what));
        }
        assert_eq!(out[0], out[1], "uploads after {what}");
        let open: Vec<(String, usize)> = self
            .uploads
            .iter()
            .enumerate()
            .filter(|(_, u)| u.open)
            .map(|(i, u)| (u.key.clone(), i))
            .collect();
        let mut got = out[0].clone();
        got.sort_by_key(|x| x.1);
        assert_eq!(got, open, "open uploads after {what}");
    }

    async fn run(&mut self, ops: &[Op]) {
        for (i, op) in ops.iter().enumerate() {
            self.apply(op).await;
            self.compare_state(&format!("step {i} {op:?}")).await;
            self.moments.push(moment_now());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: objfs_tests::model_cases(),
        failure_persistence: None,
        max_shrink_iters: 2000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn local_store_behaves_like_the_model(ops in prop::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let mut h = Harness::new();
            h.run(&ops).await;
            let local = h.local.take().unwrap();
            local.close().unwrap();
        });
    }
}

/// A fixed sequence through every kind of operation, so the harness itself is exercised even
/// when proptest draws few cases.
#[test]
fn fixed_sequence_through_every_operation() {
    let ops = vec![
        Op::Put {
            key: 0,
            seed: 1,
            len: 10,
            meta: Some(1),
            cond: Cond::IfNotExists,
            stream: false,
        },
        Op::Put {
            key: 1,
            seed: 2,
            len: 3000 % 300,
            meta: None,
            cond: Cond::None,
            stream: true,
        },
        Op::Put {
            key: 4,
            seed: 1,
            len: 10,
            meta: None,
            cond: Cond::None,
            stream: false,
        },
        Op::Put {
            key: 5,
            seed: 3,
            len: 0,
            meta: None,
            cond: Cond::None,
            stream: false,
        },
        Op::Put {
            key: 0,
            seed: 3,
            len: 299,
            meta: None,
            cond: Cond::IfVersion(0),
            stream: false,
        },
        Op::Get {
            key: 0,
            version: Some(1),
            range: Some((2, 5)),
        },
        Op::Head {
            key: 1,
            version: None,
        },
        Op::Copy {
            src: 0,
            dst: 2,
            version: Some(1),
            meta: Some(Some(2)),
            cond: Cond::None,
        },
        Op::Delete { key: 0 },
        Op::List {
            prefix: 0,
            delim: Some(0),
            max_keys: 1,
            start_after: None,
        },
        Op::ListVersions {
            prefix: 0,
            delim: Some(0),
            max_keys: 1,
            marker: None,
        },
        Op::ListVersions {
            prefix: 0,
            delim: None,
            max_keys: 2,
            marker: Some((0, Some(1))),
        },
        Op::Multipart {
            key: 6,
            meta: Some(2),
            cond: Cond::None,
            parts: vec![
                PartSpec::Upload {
                    n: 2,
                    seed: 5,
                    len: 100,
                },
                PartSpec::Copy {
                    n: 1,
                    src: 0,
                    version: Some(1),
                    range: Some((1, 4)),
                },
                PartSpec::Zeros { n: 3, len: 50 },
            ],
            finish: Finish::Complete {
                mask: 0xff,
                corrupt: false,
                reverse: false,
            },
        },
        Op::Multipart {
            key: 3,
            meta: None,
            cond: Cond::None,
            parts: vec![PartSpec::Upload {
                n: 1,
                seed: 5,
                len: 100,
            }],
            finish: Finish::LeaveOpen,
        },
        Op::Reopen,
        Op::ListUploads { prefix: 0 },
        Op::FinishOpen {
            idx: 0,
            finish: Finish::Complete {
                mask: 1,
                corrupt: false,
                reverse: false,
            },
        },
        Op::DeleteVersion { key: 0, idx: 0 },
        Op::ListAt {
            prefix: 0,
            delim: Some(0),
            max_keys: 1,
            start_after: None,
            moment: 3,
        },
        Op::HeadAt { key: 0, moment: 2 },
        Op::HeadAt { key: 0, moment: 63 },
        Op::Capacity,
        Op::Sync,
        Op::Reopen,
        Op::List {
            prefix: 2,
            delim: Some(0),
            max_keys: 0,
            start_after: Some(1),
        },
    ];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut h = Harness::new();
        h.run(&ops).await;
        // The sequence really made versions, a multipart object and a finished upload.
        assert!(h.pairs.len() >= 8, "{} versions", h.pairs.len());
        assert!(h.uploads.iter().all(|u| !u.open));
        let obj = h.mem.head("c.d", None).await.unwrap();
        assert!(obj.etag.ends_with("-3"));
        h.local.take().unwrap().close().unwrap();
    });
}

/// Shrunk from a failure: a key marker that lies *under* a common prefix (but is not the
/// prefix itself) is a key position, like `start_after` in `list`: keys after it that roll up
/// still produce their common prefix (`a/c` > `a/b` gives `a/`).
#[test]
fn regression_key_marker_inside_common_prefix() {
    let ops = vec![
        Op::Put {
            key: 2,
            seed: 0,
            len: 0,
            meta: None,
            cond: Cond::None,
            stream: false,
        },
        Op::ListVersions {
            prefix: 0,
            delim: Some(0),
            max_keys: 0,
            marker: Some((2, None)),
        },
    ];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut h = Harness::new();
        h.run(&ops).await;
        let page = h
            .mem
            .list_versions(&ListVersionsRequest {
                delimiter: Some("/".into()),
                key_marker: Some("a/b".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(page.common_prefixes, vec!["a/".to_string()]);
    });
}

/// Closing a LocalStore and opening it again at once must work every time (the property test
/// does it at random; this does it many times in a row).
#[test]
fn reopen_right_after_close() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let mut s = LocalStore::init(&path, LocalConfig::default()).unwrap();
        for i in 0..100u64 {
            s.put("k", det_bytes(i, 10).into(), PutOptions::default())
                .await
                .unwrap();
            s.close().unwrap();
            s = LocalStore::open(&path).unwrap_or_else(|e| panic!("reopen #{i} after close: {e}"));
            let got = s
                .get("k", GetOptions::default())
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            assert_eq!(got.to_vec(), det_bytes(i, 10));
        }
        s.close().unwrap();
    });
}
