//! What `objfs restore` tells its user beyond the happy path, with the real binary: a step
//! that fails is listed by key with its error and the exit code says so (4), the other keys
//! are restored all the same; and on a terminal a progress bar shows keys done, rate and ETA.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::str::FromStr;

use common::*;
use objfs_store::history::time::format_rfc3339;
use objfs_store::local::LocalStore;
use objfs_store::{ObjectStore, PutOptions, VersionId};
use serde_json::Value;

fn put(s: &LocalStore, rt: &tokio::runtime::Runtime, key: &str, body: &str) {
    rt.block_on(s.put(key, body.as_bytes().to_vec().into(), PutOptions::default()))
        .unwrap();
}

/// Writes `{prefix}a`, `b`, `c`, overwrites them after a moment, plans their restore as of
/// that moment (`--dry-run`), then removes the version the plan restores `{prefix}b` from (as
/// if it went between plan and run). Returns the moment.
fn plan_with_a_lost_source(
    store: &Path,
    rtd: &Path,
    rt: &tokio::runtime::Runtime,
    prefix: &str,
) -> String {
    let s = LocalStore::open(store).unwrap();
    for k in ["a", "b", "c"] {
        put(&s, rt, &format!("{prefix}{k}"), &format!("old {k}"));
    }
    let at = moment();
    for k in ["a", "b", "c"] {
        put(&s, rt, &format!("{prefix}{k}"), &format!("new {k}"));
    }
    s.close().unwrap();
    let t = format_rfc3339(at);
    let st = store.to_str().unwrap();
    let dry = objfs_at(
        &[
            "restore",
            "--store",
            st,
            prefix,
            "--as-of",
            &t,
            "--dry-run",
            "--json",
        ],
        rtd,
    );
    assert!(dry.status.success(), "{}", text(&dry.stderr));
    let plan = json_lines(&dry);
    let b = format!("{prefix}b");
    let step = plan
        .iter()
        .find(|v| v["key"] == b.as_str())
        .unwrap_or_else(|| panic!("{b} is planned: {plan:?}"));
    assert_eq!(step["action"], "revert");
    let source = VersionId::from_str(step["source"].as_str().unwrap()).unwrap();
    let s = LocalStore::open(store).unwrap();
    rt.block_on(s.delete_version(&b, source)).unwrap();
    s.close().unwrap();
    t
}

#[test]
fn a_failed_step_is_listed_by_key_with_its_error_and_exits_4() {
    let dir = tempfile::tempdir().unwrap();
    let rtd = dir.path().join("run");
    let store = dir.path().join("store");
    let rt = runtime();
    LocalStore::init(&store, Default::default())
        .unwrap()
        .close()
        .unwrap();
    let st = store.to_str().unwrap();

    // As text: a `failed:` line naming the key and the error, the others restored, exit 4.
    let t = plan_with_a_lost_source(&store, &rtd, &rt, "p/");
    let out = objfs_at(&["restore", "--store", st, "p/", "--as-of", &t], &rtd);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        text(&out.stderr).contains("executing the planned restore job"),
        "the printed plan is the one run: {}",
        text(&out.stderr)
    );
    let failed: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("failed: "))
        .collect();
    assert_eq!(failed.len(), 1, "{stdout}");
    assert!(failed[0].starts_with("failed: p/b: "), "{stdout}");
    assert!(
        failed[0].len() > "failed: p/b: ".len(),
        "the error is given: {stdout}"
    );
    assert!(
        stdout.contains("2 key(s) restored") && stdout.contains("1 failed"),
        "{stdout}"
    );
    assert!(
        text(&out.stderr).contains("1 step(s) failed"),
        "{}",
        text(&out.stderr)
    );
    // The other keys were restored; the failed one kept its newest version.
    let s = LocalStore::open(&store).unwrap();
    rt.block_on(async {
        for (k, want) in [("p/a", "old a"), ("p/b", "new b"), ("p/c", "old c")] {
            let got = s.get(k, Default::default()).await.unwrap();
            assert_eq!(got.bytes().await.unwrap(), want.as_bytes(), "{k}");
        }
    });
    s.close().unwrap();

    // As JSON: a line for the failed key with its error, and the summary's count.
    let t = plan_with_a_lost_source(&store, &rtd, &rt, "q/");
    let out = objfs_at(
        &["restore", "--store", st, "q/", "--as-of", &t, "--json"],
        &rtd,
    );
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let result = json_lines(&out);
    let (summary, changes) = result.split_last().unwrap();
    assert_eq!(summary["summary"]["failed"], 1, "{summary}");
    assert_eq!(summary["summary"]["done"], 2, "{summary}");
    let failed: Vec<&Value> = changes
        .iter()
        .filter(|c| c["outcome"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "{changes:?}");
    assert_eq!(failed[0]["key"], "q/b");
    assert!(failed[0]["error"].as_str().is_some_and(|e| !e.is_empty()));
}

#[test]
fn a_restore_on_a_terminal_shows_a_progress_bar() {
    let Ok(script) = which("script") else {
        panic!("`script` (util-linux) is needed to give the command a terminal");
    };
    let dir = tempfile::tempdir().unwrap();
    let rtd = dir.path().join("run");
    std::fs::create_dir_all(&rtd).unwrap();
    let store = dir.path().join("store");
    let rt = runtime();
    let s = LocalStore::init(&store, Default::default()).unwrap();
    const N: usize = 20_000;
    rt.block_on(async {
        for i in 0..N {
            let k = format!("p/d{:02}/f{i:05}", i % 50);
            s.put(&k, b"x".to_vec().into(), PutOptions::default())
                .await
                .unwrap();
        }
    });
    let at = moment();
    rt.block_on(async {
        for i in 0..N {
            s.delete(&format!("p/d{:02}/f{i:05}", i % 50))
                .await
                .unwrap();
        }
    });
    s.close().unwrap();
    let cmd = format!(
        "{BIN} restore --store {} p/ --as-of {}",
        store.display(),
        format_rfc3339(at)
    );
    // `script` runs the command on a pseudo-terminal and copies what it wrote to stdout.
    let out = Command::new(script)
        .args(["-qec", &cmd, "/dev/null"])
        .env("XDG_RUNTIME_DIR", &rtd)
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .output()
        .expect("run script");
    let screen = text(&out.stdout);
    assert!(out.status.success(), "{screen}{}", text(&out.stderr));
    // The bar: keys done of the total, a rate, an ETA; then the report.
    assert!(screen.contains("ETA"), "no bar drawn: {screen:?}");
    assert!(screen.contains("/s"), "no rate: {screen:?}");
    assert!(
        screen.contains(&format!("/{N}")),
        "no count of the {N} planned keys: {screen:?}"
    );
    assert!(
        screen.contains(&format!("{N} key(s) restored")),
        "{screen:?}"
    );
    // Without a terminal there is no bar (stdout carries only the report).
    let plain = objfs_at(
        &[
            "restore",
            "--store",
            store.to_str().unwrap(),
            "p/",
            "--as-of",
            &format_rfc3339(at),
        ],
        &rtd,
    );
    assert!(plain.status.success(), "{}", text(&plain.stderr));
    assert!(!text(&plain.stdout).contains("ETA"));
    assert!(!text(&plain.stderr).contains("ETA"));
}

/// The path of `tool` on PATH.
fn which(tool: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
        .ok_or(())
}
