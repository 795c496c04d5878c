//! `objfs restore --json` streams its report: one line per key changed as the steps settle,
//! then the summary, on a store that is not mounted (the command runs the job) and through a
//! mount (the lines travel over the control socket before the answer). A job of three chunks
//! is read line by line: the first line arrives while the command is still running, and the
//! lines are the same as ever (every key once, then the summary).

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::SystemTime;

use common::*;
use objfs_store::history::restore::CHUNK_STEPS;
use objfs_store::history::time::format_rfc3339;
use objfs_store::local::LocalStore;
use objfs_store::{ObjectStore, PutOptions};
use serde_json::Value;

/// Writes `n` keys under `prefix`, then deletes them; the moment between.
fn written_then_deleted(store: &Path, prefix: &str, n: usize) -> String {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let s = LocalStore::open(store).unwrap();
    let keys: Vec<String> = (0..n).map(|i| format!("{prefix}{i:06}")).collect();
    rt.block_on(async {
        for k in &keys {
            s.put(k, "x".into(), PutOptions::default()).await.unwrap();
        }
    });
    let at = SystemTime::now();
    std::thread::sleep(std::time::Duration::from_millis(5));
    rt.block_on(async {
        for k in &keys {
            s.delete(k).await.unwrap();
        }
    });
    s.close().unwrap();
    format_rfc3339(at)
}

/// Runs `objfs restore ARGS --json --quiet`, reading its stdout line by line: whether the
/// command was still running when the first line arrived, and every line.
fn streamed(args: &[&str]) -> (bool, Vec<Value>) {
    let mut child = Command::new(BIN)
        .args(args)
        .args(["--json", "--quiet"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    let running = child.try_wait().unwrap().is_none();
    let mut lines = vec![first];
    lines.extend(out.lines().map(|l| l.unwrap()));
    assert!(child.wait().unwrap().success());
    let values = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    (running, values)
}

fn check_report(lines: &[Value], prefix: &str, n: usize) {
    let (summary, keys) = lines.split_last().unwrap();
    assert_eq!(summary["summary"]["done"], n as u64, "{summary}");
    assert_eq!(summary["summary"]["finished"], true);
    let distinct: BTreeSet<&str> = keys.iter().map(|v| v["key"].as_str().unwrap()).collect();
    assert_eq!(keys.len(), n, "one line per key");
    assert_eq!(distinct.len(), n, "every key once");
    for v in keys {
        assert!(v["key"].as_str().unwrap().starts_with(prefix));
        assert_eq!(v["action"], "undelete");
        assert_eq!(v["outcome"], "done");
        assert!(v["version"].is_string(), "{v}");
    }
}

#[test]
fn restore_json_streams_a_line_per_key_before_the_job_ends() {
    let dir = tempfile::tempdir().unwrap();
    let rtd = dir.path().join("run");
    let store = dir.path().join("store");
    std::env::set_var("XDG_RUNTIME_DIR", &rtd);
    let st = s(&store);
    ok(&["init", st]);
    let n = 2 * CHUNK_STEPS + 500;

    // Not mounted: the command runs the job and prints as it goes.
    let at = written_then_deleted(&store, "p/", n);
    let (running, lines) = streamed(&["restore", "--store", st, "p/", "--as-of", &at]);
    assert!(
        running,
        "the first line came only when the command had ended"
    );
    check_report(&lines, "p/", n);

    // Mounted: the mount process runs it, the lines come over the control socket.
    if fuse_missing("restore_json_streams_a_line_per_key_before_the_job_ends") {
        return;
    }
    let at = written_then_deleted(&store, "q/", n);
    let mp = dir.path().join("m");
    let _g = guard(&store, &mp);
    ok(&["mount", st, s(&mp)]);
    let (running, lines) = streamed(&["restore", s(&mp.join("q")), "--as-of", &at]);
    assert!(
        running,
        "the first line came only when the command had ended"
    );
    check_report(&lines, "q/", n);
    assert_eq!(std::fs::read_dir(mp.join("q")).unwrap().count(), n);
}
