//! Store-level kill -9 test without FUSE (issue 9): a child process (`crash_ops`) runs puts,
//! multipart uploads, copies, renames, deletes and syncs on a LocalStore, most of them not
//! durable, and is killed with SIGKILL at a random moment, many times over the same store.
//!
//! Every operation the child printed `ACK` for (it returned) is **acknowledged**: DESIGN.md
//! asks that it survive the death of the process (it is in the kernel before it returns),
//! durable or not. The one operation it printed `BEGIN` for without an `ACK` was in flight
//! and may show its before- or after-state (a rename both or neither of its halves). After
//! each kill the store must open, and its live keys must be exactly one of those two states:
//! each current version with the bytes of the write it names (`origin`, `seed`, `len` in its
//! metadata, so a copy or rename shows where its bytes came from), and every acknowledged put
//! still in the key's history. Operations acknowledged durably (`durable`, or followed by an
//! acknowledged `sync`) are counted apart: losing those was never allowed.
//!
//! Most rounds kill the child at a random moment of its first 0.4 s of work (every fourth
//! from its start, so that opening and recovering are interrupted too); every fourth is quiet:
//! 1-12 operations, then the kill 0.3-4.5 s later.
//!
//! The older `crash.rs` checks only durable acknowledgements (and passes on a store that keeps
//! non-durable changes in memory); this one fails on such a store.
//!
//! `durable_store_ops_survive_sigkill` is the control: the same with every operation durable
//! before it is acknowledged, which any store must pass (it checks this file's model).
//!
//! Knobs: `OBJFS_CRASH_ROUNDS` (default 30; 10 for the control), `OBJFS_CRASH_SEED` (replay),
//! `OBJFS_CRASH_KEEP_GOING=1` (run every round, adopt what was found, fail at the end with
//! totals).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use objfs_store::local::LocalStore;
use objfs_store::{GetOptions, ListRequest, ListVersionsRequest, ObjectStore};
use objfs_tests::crash_support::{describe_meta_dir, init_small_store};
use objfs_tests::keyed_bytes;
use objfs_tests::support::{list_all, list_versions_all, Listed, VListed};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A live object: the write its bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Obj {
    origin: String,
    seed: u64,
    len: usize,
}

type State = BTreeMap<String, Obj>;

#[derive(Debug, Clone)]
enum SOp {
    Put {
        key: String,
        seed: u64,
        len: usize,
        durable: bool,
        mpu: bool,
    },
    Copy {
        src: String,
        dst: String,
    },
    Rename {
        src: String,
        dst: String,
    },
    Del {
        key: String,
    },
    Sync,
}

impl SOp {
    fn parse(words: &[&str]) -> SOp {
        let num = |s: &str| -> u64 { s.parse().unwrap_or_else(|_| panic!("number {s:?}")) };
        match words {
            [kind @ ("PUT" | "MPU"), key, seed, len, durable] => SOp::Put {
                key: key.to_string(),
                seed: num(seed),
                len: num(len) as usize,
                durable: *durable == "1",
                mpu: *kind == "MPU",
            },
            ["COPY", src, dst] => SOp::Copy {
                src: src.to_string(),
                dst: dst.to_string(),
            },
            ["RENAME", src, dst] => SOp::Rename {
                src: src.to_string(),
                dst: dst.to_string(),
            },
            ["DEL", key] => SOp::Del {
                key: key.to_string(),
            },
            ["SYNC"] => SOp::Sync,
            other => panic!("unexpected operation from crash_ops: {other:?}"),
        }
    }

    fn keys(&self) -> Vec<&str> {
        match self {
            SOp::Put { key, .. } | SOp::Del { key } => vec![key],
            SOp::Copy { dst, .. } => vec![dst],
            SOp::Rename { src, dst } => vec![src, dst],
            SOp::Sync => vec![],
        }
    }

    fn durable(&self) -> bool {
        matches!(self, SOp::Put { durable: true, .. })
    }

    fn apply(&self, s: &mut State) {
        let source = |s: &State, k: &str| -> Obj {
            s.get(k)
                .cloned()
                .unwrap_or_else(|| panic!("model: {self:?} of {k}, which the model lacks"))
        };
        match self {
            SOp::Put { key, seed, len, .. } => {
                s.insert(
                    key.clone(),
                    Obj {
                        origin: key.clone(),
                        seed: *seed,
                        len: *len,
                    },
                );
            }
            SOp::Copy { src, dst } => {
                let o = source(s, src);
                s.insert(dst.clone(), o);
            }
            SOp::Rename { src, dst } => {
                let o = source(s, src);
                s.remove(src);
                s.insert(dst.clone(), o);
            }
            SOp::Del { key } => {
                s.remove(key);
            }
            SOp::Sync => {}
        }
    }
}

/// What the child printed before it died: complete lines only.
#[derive(Default)]
struct ChildLog {
    opened: bool,
    /// Operation number -> (operation, acknowledged at).
    ops: BTreeMap<u64, (SOp, Option<Instant>)>,
}

impl ChildLog {
    fn line(&mut self, line: &str, at: Instant) {
        let words: Vec<&str> = line.split(' ').collect();
        match words.as_slice() {
            ["OPEN", _] => self.opened = true,
            ["BEGIN", n, rest @ ..] => {
                let n: u64 = n.parse().expect("BEGIN number");
                self.ops.insert(n, (SOp::parse(rest), None));
            }
            ["ACK", n] => {
                let n: u64 = n.parse().expect("ACK number");
                self.ops.get_mut(&n).expect("ACK of a BEGIN").1 = Some(at);
            }
            ["DONE"] => {}
            _ => panic!("unexpected line from crash_ops: {line:?}"),
        }
    }
}

fn meta_u64(info: &objfs_store::ObjectInfo, name: &str) -> Option<u64> {
    info.metadata.get(name).and_then(|v| v.parse().ok())
}

/// The live keys of the store with the write each one shows; problems with the bytes of a
/// current version (which no model state explains) are returned apart.
async fn found_state(s: &LocalStore) -> (State, Vec<String>) {
    let mut state = State::new();
    let mut bad = Vec::new();
    for e in list_all(s, &ListRequest::default()).await {
        let Listed::Object(key) = e else {
            panic!("a prefix without a delimiter: {e:?}")
        };
        let r = s
            .get(&key, GetOptions::default())
            .await
            .unwrap_or_else(|err| panic!("get {key} (listed): {err}"));
        let info = r.info.clone();
        let data = r
            .bytes()
            .await
            .unwrap_or_else(|err| panic!("body of {key}: {err}"));
        let (Some(origin), Some(seed), Some(len)) = (
            info.metadata.get("origin").cloned(),
            meta_u64(&info, "seed"),
            meta_u64(&info, "len"),
        ) else {
            bad.push(format!(
                "{key}: current version without origin/seed/len: {info:?}"
            ));
            continue;
        };
        let len = len as usize;
        if data.len() != len || data.as_ref() != keyed_bytes(&origin, seed, len).as_slice() {
            bad.push(format!(
                "{key}: current version {} has {} B that are not the {len} B of {origin} seed \
                 {seed:#x} (torn or mixed)",
                info.version,
                data.len()
            ));
        }
        state.insert(key, Obj { origin, seed, len });
    }
    (state, bad)
}

/// Every object of a listing as of `at` (key, version), by the store's `list_at` or by the
/// reference walk over every version.
async fn list_at_all(s: &LocalStore, at: SystemTime, reference: bool) -> Vec<(String, String)> {
    let mut req = ListRequest::default();
    let mut out = Vec::new();
    loop {
        let page = if reference {
            objfs_store::history::as_of::list_at_by_versions(s, &req, at).await
        } else {
            s.list_at(&req, at).await
        }
        .unwrap_or_else(|e| panic!("list as of {at:?}: {e}"));
        out.extend(
            page.objects
                .into_iter()
                .map(|o| (o.key, o.version.to_string())),
        );
        match page.next_token {
            Some(t) => req.continuation = Some(t),
            None => return out,
        }
    }
}

/// Moments between the versions the store holds (up to 8, spread over them) where `list_at`
/// differs from the reference walk: after a replay, the `c` and `d` tables must agree with
/// the version table.
async fn as_of_mismatches(s: &LocalStore, versions: &[VListed]) -> Vec<String> {
    let mut times: Vec<SystemTime> = versions
        .iter()
        .filter_map(|e| match e {
            VListed::Version(v) => Some(v.modified),
            _ => None,
        })
        .collect();
    times.sort();
    times.dedup();
    let step = times.len().div_ceil(8).max(1);
    let mut out = Vec::new();
    for at in times.into_iter().step_by(step) {
        let got = list_at_all(s, at, false).await;
        let want = list_at_all(s, at, true).await;
        if got != want {
            out.push(format!("as of {at:?}: list_at {got:?}, the walk {want:?}"));
        }
    }
    out
}

fn diff(want: &State, got: &State) -> Vec<String> {
    let keys: BTreeSet<&String> = want.keys().chain(got.keys()).collect();
    keys.into_iter()
        .filter(|k| want.get(*k) != got.get(*k))
        .cloned()
        .collect()
}

fn show(o: Option<&Obj>) -> String {
    match o {
        None => "absent".into(),
        Some(o) => format!("write {:#x} ({} B, written as {})", o.seed, o.len, o.origin),
    }
}

fn spawn_child(
    path: &Path,
    round: u64,
    seed: u64,
    max_ops: u64,
    all_durable: bool,
) -> (Child, mpsc::Receiver<(String, Instant)>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_crash_ops"))
        .arg(path)
        .arg(round.to_string())
        .arg(seed.to_string())
        .arg(max_ops.to_string())
        .args(all_durable.then_some("durable"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn crash_ops");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut line = String::new();
        loop {
            line.clear();
            match r.read_line(&mut line) {
                // A line cut by the kill does not count.
                Ok(n) if n > 0 && line.ends_with('\n') => {
                    if tx
                        .send((line.trim_end().to_string(), Instant::now()))
                        .is_err()
                    {
                        return;
                    }
                }
                _ => return,
            }
        }
    });
    (child, rx)
}

/// Kills the child when dropped (a failing test never leaves it behind).
struct KillOnDrop(Option<Child>);

impl KillOnDrop {
    fn kill(&mut self) -> std::process::ExitStatus {
        let mut c = self.0.take().expect("the child runs");
        let _ = c.kill();
        c.wait().expect("reap crash_ops")
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
    })
}

/// Every store operation that returned before the kill, durable or not, is there after a
/// reopen (fails on a store that keeps non-durable changes in process memory).
#[test]
fn acknowledged_store_ops_survive_sigkill() {
    crash_rounds("acknowledged_store_ops_survive_sigkill", false, 30);
}

/// The control: every operation durable before it is acknowledged (the child runs with
/// `durable`). Any store must pass it; it shows that the model of this file is right, so a
/// failure of the test above is the store's.
#[test]
fn durable_store_ops_survive_sigkill() {
    crash_rounds("durable_store_ops_survive_sigkill", true, 10);
}

fn crash_rounds(test: &str, all_durable: bool, default_rounds: u64) {
    let started = Instant::now();
    let seed = env_u64("OBJFS_CRASH_SEED").unwrap_or_else(rand::random);
    let rounds = env_u64("OBJFS_CRASH_ROUNDS").unwrap_or(default_rounds);
    let keep_going = std::env::var("OBJFS_CRASH_KEEP_GOING").is_ok_and(|v| v == "1");
    println!("{test}: OBJFS_CRASH_SEED={seed} OBJFS_CRASH_ROUNDS={rounds}");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    init_small_store(&path, 4 << 20);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let mut model = State::new();
    // Acknowledged puts: (key, seed) that must stay in the key's history.
    let mut history: BTreeSet<(String, u64)> = BTreeSet::new();
    let mut failures: Vec<String> = Vec::new();
    let (mut acked_total, mut durable_total, mut bad_rounds) = (0u64, 0u64, 0u64);
    let mut by_kind: BTreeMap<&'static str, u64> = BTreeMap::new();
    let (mut lost_total, mut lost_durable, mut lost_oldest_ms) = (0u64, 0u64, 0u128);

    for round in 0..rounds {
        // Every fourth round is quiet: a few operations, then the child waits for the kill
        // 0.3-4.5 s later (the store used to keep such changes in memory until its flush).
        let quiet = round % 4 == 1;
        let max_ops = if quiet {
            rng.random_range(1..=12)
        } else {
            1_000_000
        };
        let (child, rx) = spawn_child(&path, round, seed, max_ops, all_durable);
        let mut child = KillOnDrop(Some(child));
        let mut log = ChildLog::default();
        // Most rounds kill while the child works; every fourth at any moment from its start,
        // so that opening (and recovering) is interrupted too.
        let early = round % 4 == 3;
        let delay = if early {
            Duration::from_millis(rng.random_range(0..120))
        } else {
            let (line, at) = rx
                .recv_timeout(Duration::from_secs(60))
                .expect("crash_ops did not open the store");
            log.line(&line, at);
            assert!(log.opened, "first line is OPEN, got {line:?}");
            if quiet {
                Duration::from_millis(rng.random_range(300..4500))
            } else {
                Duration::from_millis(rng.random_range(0..400))
            }
        };
        std::thread::sleep(delay);
        let kill_time = Instant::now();
        let status = child.kill();
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "round {round}: crash_ops stopped on its own ({status}): see its error above"
        );
        // The reader thread ends at EOF; every complete line is in the channel.
        while let Ok((line, at)) = rx.recv_timeout(Duration::from_secs(60)) {
            log.line(&line, at);
        }

        let acked: Vec<(u64, SOp, Instant)> = log
            .ops
            .iter()
            .filter_map(|(n, (op, at))| at.map(|at| (*n, op.clone(), at)))
            .collect();
        let inflight: Vec<&SOp> = log
            .ops
            .values()
            .filter(|(_, at)| at.is_none())
            .map(|(op, _)| op)
            .collect();
        assert!(inflight.len() <= 1, "more than one operation in flight");
        // Durable: the op asked for it, or an acknowledged sync followed.
        let mut durable: HashMap<u64, bool> = HashMap::new();
        let mut covered = false;
        for (n, op, _) in acked.iter().rev() {
            covered |= matches!(op, SOp::Sync);
            durable.insert(*n, all_durable || covered || op.durable());
        }
        let mut acked_state = model.clone();
        let mut last_touch: HashMap<String, (u64, &SOp, Instant)> = HashMap::new();
        for (n, op, at) in &acked {
            op.apply(&mut acked_state);
            let kind = match op {
                SOp::Put { mpu: true, .. } => "multipart",
                SOp::Put { .. } => "put",
                SOp::Copy { .. } => "copy",
                SOp::Rename { .. } => "rename",
                SOp::Del { .. } => "delete",
                SOp::Sync => "sync",
            };
            *by_kind.entry(kind).or_default() += 1;
            for k in op.keys() {
                last_touch.insert(k.to_string(), (*n, op, *at));
            }
        }
        acked_total += acked.len() as u64;
        durable_total += durable.values().filter(|d| **d).count() as u64;
        let mut candidates = vec![("the acknowledged state".to_string(), acked_state.clone())];
        if let Some(op) = inflight.first() {
            let mut after = acked_state.clone();
            op.apply(&mut after);
            candidates.push((format!("the acknowledged state + in-flight {op:?}"), after));
        }

        let store = LocalStore::open(&path).unwrap_or_else(|e| {
            panic!(
                "round {round}: the store does not open after a kill {} ms after {}: {e}\n{}",
                delay.as_millis(),
                if log.opened {
                    "it opened"
                } else {
                    "the child started"
                },
                describe_meta_dir(&path)
            )
        });
        let (found, torn) = rt.block_on(found_state(&store));
        let all_versions = rt.block_on(list_versions_all(&store, &ListVersionsRequest::default()));
        let as_of = rt.block_on(as_of_mismatches(&store, &all_versions));
        assert!(
            as_of.is_empty(),
            "round {round}: listings as of past moments differ from the walk over every \
             version after the reopen (the current and deleted-key tables disagree with the \
             version table):\n{}",
            as_of.join("\n")
        );
        let versions: BTreeSet<(String, u64)> = all_versions
            .into_iter()
            .filter_map(|e| match e {
                VListed::Version(v) if !v.is_delete_marker => v
                    .metadata
                    .get("seed")
                    .and_then(|s| s.parse().ok())
                    .map(|s| (v.key, s)),
                _ => None,
            })
            .collect();
        store.close().unwrap();

        for (_, op, _) in &acked {
            if let SOp::Put { key, seed, .. } = op {
                history.insert((key.clone(), *seed));
            }
        }
        let lost_history: Vec<(String, u64)> = history.difference(&versions).cloned().collect();
        let mut problems: Vec<String> = torn;
        let diffs: Vec<Vec<String>> = candidates.iter().map(|(_, c)| diff(c, &found)).collect();
        let matched = diffs.iter().position(|d| d.is_empty());
        match matched {
            Some(i) => model = candidates[i].1.clone(),
            None => {
                let (ci, d) = diffs
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, d)| d.len())
                    .unwrap();
                let (cname, want) = &candidates[ci];
                let mut msg = format!("keys differing from {cname}:");
                let mut lost_ops = BTreeSet::new();
                for k in d {
                    let cause = match last_touch.get(k) {
                        Some((n, op, at)) => {
                            let ms = kill_time.saturating_duration_since(*at).as_millis();
                            let d = durable[n];
                            if lost_ops.insert(*n) {
                                lost_total += 1;
                                lost_durable += d as u64;
                                lost_oldest_ms = lost_oldest_ms.max(ms);
                            }
                            format!(
                                "last acknowledged op on it: #{n} {op:?}{}, {ms} ms before the kill",
                                if d { " (DURABLE)" } else { "" }
                            )
                        }
                        None => "not changed by an acknowledged op this round".into(),
                    };
                    msg.push_str(&format!(
                        "\n  {k}: expected {}, found {} ({cause})",
                        show(want.get(k)),
                        show(found.get(k))
                    ));
                }
                problems.push(msg);
                model = found.clone();
            }
        }
        if !lost_history.is_empty() {
            problems.push(format!(
                "{} acknowledged puts are gone from their key's history, e.g. {:?}",
                lost_history.len(),
                &lost_history[..lost_history.len().min(5)]
            ));
            for h in &lost_history {
                history.remove(h);
            }
        }
        println!(
            "round {round}: {}killed {} ms after {}: {} ops acknowledged ({} durably), in flight: \
             {}: {}",
            if quiet { "quiet, " } else { "" },
            delay.as_millis(),
            if early { "start" } else { "open" },
            acked.len(),
            durable.values().filter(|d| **d).count(),
            inflight
                .first()
                .map(|o| format!("{o:?}"))
                .unwrap_or_else(|| "nothing".into()),
            if problems.is_empty() {
                "every acknowledged op is there"
            } else {
                "acknowledged ops LOST"
            }
        );
        if !problems.is_empty() {
            bad_rounds += 1;
            let msg = format!("round {round}: {}", problems.join("\n"));
            println!("{msg}");
            failures.push(msg);
            if !keep_going {
                break;
            }
        }
    }

    let summary = format!(
        "{test}: {bad_rounds} of the rounds run lost acknowledged ops; {acked_total} ops acknowledged \
         ({durable_total} durably; {by_kind:?}); {lost_total} acknowledged ops lost \
         ({lost_durable} of them durable), acknowledged up to {lost_oldest_ms} ms before the \
         kill; {:?}; OBJFS_CRASH_SEED={seed}",
        started.elapsed()
    );
    println!("{summary}");
    assert!(
        failures.is_empty(),
        "{summary}\nfirst failure:\n{}",
        failures[0]
    );
    assert!(acked_total > 0, "nothing was ever acknowledged");
}
