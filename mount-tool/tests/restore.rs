//! `objfs restore` end to end with the real binary: on a store that is not mounted (the
//! printed plan is the one executed, a key changed between plan and run is a conflict with
//! exit code 3), killed with SIGKILL again and again mid-run and run again (every planned key
//! gets exactly one new version, none is missed, the prefix ends as it was at the moment), and
//! through a mount's control channel (the mount shows the restored files).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use common::*;
use objfs_store::history::restore::{job, JobState};
use objfs_store::history::time::format_rfc3339;
use objfs_store::local::LocalStore;
use objfs_store::{ListRequest, ListVersionsRequest, ObjectStore, PutOptions};
use serde_json::Value;

/// key -> etag of what `prefix` shows (now, or at a moment).
async fn view(s: &LocalStore, prefix: &str, at: Option<SystemTime>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut req = ListRequest {
        prefix: prefix.into(),
        ..Default::default()
    };
    loop {
        let page = match at {
            Some(t) => s.list_at(&req, t).await.unwrap(),
            None => s.list(&req).await.unwrap(),
        };
        out.extend(page.objects.into_iter().map(|o| (o.key, o.etag)));
        match page.next_token {
            Some(t) => req.continuation = Some(t),
            None => return out,
        }
    }
}

/// key -> how many versions (delete markers included) it has.
async fn version_counts(s: &LocalStore) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    let mut req = ListVersionsRequest::default();
    loop {
        let page = s.list_versions(&req).await.unwrap();
        for v in page.versions {
            *out.entry(v.key).or_insert(0) += 1;
        }
        match page.next_key_marker {
            Some(k) => {
                req.key_marker = Some(k);
                req.version_marker = page.next_version_marker;
            }
            None => return out,
        }
    }
}

fn put(s: &LocalStore, rt: &tokio::runtime::Runtime, key: &str, body: String) {
    rt.block_on(s.put(key, body.into_bytes().into(), PutOptions::default()))
        .unwrap();
}

#[test]
fn restore_on_an_unmounted_store_executes_the_printed_plan_and_reports_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let rtd = dir.path().join("run");
    let store = dir.path().join("store");
    let rt = runtime();
    let s = LocalStore::init(&store, Default::default()).unwrap();
    for k in ["p/a", "p/b", "p/c", "p/d/", "p/d/e", "q/x"] {
        put(&s, &rt, k, format!("old {k}"));
    }
    let at = moment();
    rt.block_on(async {
        s.delete("p/a").await.unwrap();
        s.delete("p/d/e").await.unwrap();
        s.delete("p/d/").await.unwrap();
        s.delete("q/x").await.unwrap();
    });
    put(&s, &rt, "p/b", "new b".into());
    put(&s, &rt, "p/c", "new c".into());
    put(&s, &rt, "p/made", "made since".into());
    s.close().unwrap();
    let t = format_rfc3339(at);
    let st = store.to_str().unwrap();
    let args = ["restore", "--store", st, "p/", "--as-of", &t, "--json"];

    let dry = objfs_at(&[&args[..], &["--dry-run"]].concat(), &rtd);
    assert!(dry.status.success(), "{}", text(&dry.stderr));
    let plan = json_lines(&dry);
    let (summary, steps) = plan.split_last().unwrap();
    let planned: BTreeSet<(String, String)> = steps
        .iter()
        .map(|v| {
            (
                v["key"].as_str().unwrap().into(),
                v["action"].as_str().unwrap().into(),
            )
        })
        .collect();
    let want: BTreeSet<(String, String)> = [
        ("p/a", "undelete"),
        ("p/b", "revert"),
        ("p/c", "revert"),
        ("p/d/", "undelete"),
        ("p/d/e", "undelete"),
    ]
    .iter()
    .map(|(k, a)| (k.to_string(), a.to_string()))
    .collect();
    assert_eq!(planned, want);
    let job = summary["summary"]["job"].as_str().unwrap().to_string();

    // p/c changes between the plan and the run: a conflict, left alone.
    let s = LocalStore::open(&store).unwrap();
    put(&s, &rt, "p/c", "newer c".into());
    s.close().unwrap();

    let out = objfs_at(&args, &rtd);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&format!("executing the planned restore job {job}")),
        "{}",
        text(&out.stderr)
    );
    let result = json_lines(&out);
    let (summary, changes) = result.split_last().unwrap();
    assert_eq!(summary["summary"]["job"].as_str(), Some(job.as_str()));
    assert_eq!(summary["summary"]["done"], 4);
    assert_eq!(summary["summary"]["conflicts"], 1);
    let conflict: Vec<_> = changes
        .iter()
        .filter(|c| c["outcome"] == "conflict")
        .collect();
    assert_eq!(conflict.len(), 1);
    assert_eq!(conflict[0]["key"], "p/c");

    let s = LocalStore::open(&store).unwrap();
    rt.block_on(async {
        let now = view(&s, "", None).await;
        let then = view(&s, "", Some(at)).await;
        for k in ["p/a", "p/b", "p/d/", "p/d/e"] {
            assert_eq!(now.get(k), then.get(k), "{k}");
        }
        assert_ne!(
            now.get("p/c"),
            then.get("p/c"),
            "the conflict was left alone"
        );
        assert!(
            now.contains_key("p/made"),
            "not --exact: keys made since stay"
        );
        assert!(!now.contains_key("q/x"), "outside the prefix: untouched");
        let info = s.head("p/a", None).await.unwrap();
        assert!(info.metadata["x-amz-meta-objfs-restored-from"].ends_with(&format!("job={job}")));
    });
    s.close().unwrap();

    // Run again (a new plan: only p/c), then --exact removes what was made since.
    let out = objfs_at(&args, &rtd);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(json_lines(&out).last().unwrap()["summary"]["reverted"], 1);
    let exact = objfs_at(&[&args[..], &["--exact"]].concat(), &rtd);
    assert!(exact.status.success(), "{}", text(&exact.stderr));
    let s = LocalStore::open(&store).unwrap();
    rt.block_on(async {
        assert_eq!(view(&s, "p/", None).await, view(&s, "p/", Some(at)).await);
    });
    s.close().unwrap();

    // Bad input: a clear message and exit 2, nothing planned.
    let e = objfs_at(&["restore", "--store", st, "p/", "--as-of", "soon"], &rtd);
    assert_eq!(e.status.code(), Some(2));
    assert!(text(&e.stderr).contains("RFC 3339"), "{}", text(&e.stderr));
    let e = objfs_at(&["restore", "--store", st, "/p", "--as-of", "-1m"], &rtd);
    assert_eq!(e.status.code(), Some(2), "{}", text(&e.stderr));
}

/// Deterministic pseudo-random numbers (no rand dependency here).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[test]
fn restore_killed_with_sigkill_resumes_and_changes_every_planned_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let rtd = dir.path().join("run");
    let store = dir.path().join("store");
    let rt = runtime();
    // 24,000 keys in 16 sub-prefixes (3 plan chunks): all deleted or overwritten after T.
    let n = 24_000;
    let key = |i: usize| format!("p/{:02x}/k{i:06}", i % 16);
    let s = LocalStore::init(&store, Default::default()).unwrap();
    for i in 0..n {
        put(&s, &rt, &key(i), format!("v1 {i}"));
    }
    put(&s, &rt, "q/outside", "x".into());
    let at = moment();
    for i in 0..n {
        if i % 10 == 0 {
            put(&s, &rt, &key(i), format!("v2 {i}"));
        } else {
            rt.block_on(s.delete(&key(i))).unwrap();
        }
    }
    rt.block_on(s.delete("q/outside")).unwrap();
    let before = rt.block_on(version_counts(&s));
    s.close().unwrap();

    let t = format_rfc3339(at);
    let st = store.to_str().unwrap();
    let args = [
        "restore", "--store", st, "p/", "--as-of", &t, "--json", "--quiet",
    ];
    let dry = objfs_at(&[&args[..], &["--dry-run"]].concat(), &rtd);
    assert!(dry.status.success(), "{}", text(&dry.stderr));
    let plan = json_lines(&dry);
    let (summary, steps) = plan.split_last().unwrap();
    let job = summary["summary"]["job"].as_str().unwrap().to_string();
    let planned: BTreeSet<String> = steps
        .iter()
        .map(|v| v["key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(planned.len(), n);

    // Kill the run at random moments until one finishes.
    let mut rng = Lcg(0x5eed_0f4e_5704_e5a1);
    let (mut kills, mut resumed, mut mid_run, mut delay) = (0, 0, 0, 100);
    let finished = loop {
        assert!(kills < 60, "the restore never finished");
        let mut child = Command::new(BIN)
            .args(args)
            .env("XDG_RUNTIME_DIR", &rtd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_millis(delay + rng.below(200));
        let mut status = None;
        while Instant::now() < deadline {
            if let Some(st) = child.try_wait().unwrap() {
                status = Some(st);
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        if status.is_none() && kills < 8 {
            child.kill().unwrap();
        }
        let out = child.wait_with_output().unwrap();
        if text(&out.stderr).contains("resuming the interrupted restore job") {
            resumed += 1;
        }
        if out.status.signal() == Some(9) {
            kills += 1;
            // Where the kill landed: before the job ran (aim later), or mid-run.
            let s = LocalStore::open(&store).unwrap();
            let state = rt.block_on(job::get(&s, &job)).unwrap().unwrap().state;
            s.close().unwrap();
            match state {
                JobState::Planned => delay += 150,
                JobState::Running => mid_run += 1,
                JobState::Finished => {}
            }
            continue;
        }
        assert!(out.status.success(), "{}", text(&out.stderr));
        break out;
    };
    assert!(
        mid_run >= 2 && resumed > 0,
        "kills {kills}, mid-run {mid_run}, resumed {resumed}"
    );
    let result = json_lines(&finished);
    let (summary, changes) = result.split_last().unwrap();
    let sum = &summary["summary"];
    assert_eq!(
        sum["job"].as_str(),
        Some(job.as_str()),
        "the printed plan ran"
    );
    assert_eq!(
        (sum["conflicts"].as_u64(), sum["failed"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(sum["done"].as_u64(), Some(n as u64), "{sum}");
    let done: BTreeSet<String> = changes
        .iter()
        .map(|c| c["key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(done, planned);

    // Exactly one new version per planned key, none elsewhere; the prefix is as it was.
    let s = LocalStore::open(&store).unwrap();
    let after = rt.block_on(version_counts(&s));
    for (k, c) in &after {
        let want = before.get(k).copied().unwrap_or(0) + usize::from(planned.contains(k));
        assert_eq!(*c, want, "{k}: {c} versions, want {want}");
    }
    rt.block_on(async {
        assert_eq!(view(&s, "p/", None).await, view(&s, "p/", Some(at)).await);
        assert!(view(&s, "q/", None).await.is_empty());
    });
    s.close().unwrap();
    eprintln!("restore crash test: {kills} kills, {mid_run} mid-run");
}

#[test]
fn restore_through_a_mount_shows_the_restored_files() {
    if fuse_missing("restore_through_a_mount_shows_the_restored_files") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rtd = dir.path().join("run");
    let store = dir.path().join("store");
    let mp = dir.path().join("m");
    std::env::set_var("XDG_RUNTIME_DIR", &rtd);
    let (st, m) = (s(&store), s(&mp));
    ok(&["init", st]);
    let _g = guard(&store, &mp);
    // Names and attributes cached by the kernel for 0.2 s: the restore clears the mount's own
    // caches (names known absent); the kernel's entries expire (see the wait below).
    ok(&["mount", st, m, "--attr-ttl", "0.2"]);
    std::fs::create_dir_all(mp.join("photos/2026")).unwrap();
    for i in 0..20 {
        std::fs::write(
            mp.join(format!("photos/2026/img{i:02}.jpg")),
            format!("image {i}"),
        )
        .unwrap();
    }
    std::fs::write(mp.join("photos/index"), "index v1").unwrap();
    let chmod = std::os::unix::fs::PermissionsExt::from_mode(0o600);
    std::fs::set_permissions(mp.join("photos/2026/img03.jpg"), chmod).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let at = moment();
    // The accident: the directory removed, the index overwritten; the mount saw both.
    std::fs::remove_dir_all(mp.join("photos/2026")).unwrap();
    std::fs::write(mp.join("photos/index"), "index v2").unwrap();
    assert!(!mp.join("photos/2026").exists());
    assert_eq!(
        std::fs::read_to_string(mp.join("photos/index")).unwrap(),
        "index v2"
    );

    let t = format_rfc3339(at);
    let photos = mp.join("photos");
    let accident = moment();
    // A directory that no longer exists is named by its path, then the rest of photos/.
    let out = ok(&["restore", s(&mp.join("photos/2026")), "--as-of", &t]);
    assert!(out.contains("21 key(s) restored"), "{out}");
    let out = ok(&["restore", s(&photos), "--as-of", &t]);
    assert!(out.contains("1 key(s) restored"), "{out}");
    // Through the same mount, once the kernel's entries (cached before the restore) expired.
    std::thread::sleep(Duration::from_millis(300));
    let mut listed = names(&mp.join("photos/2026"));
    listed.sort();
    assert_eq!(listed.len(), 20, "{listed:?}");
    for i in 0..20 {
        let p = mp.join(format!("photos/2026/img{i:02}.jpg"));
        assert_eq!(std::fs::read_to_string(&p).unwrap(), format!("image {i}"));
    }
    assert_eq!(
        std::fs::read_to_string(mp.join("photos/index")).unwrap(),
        "index v1"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(mp.join("photos/2026/img03.jpg"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(
        mode & 0o777,
        0o600,
        "the POSIX attributes of the old version"
    );
    // The restore is undone by a restore (--exact: what the first one brought back goes).
    let undo = ok(&[
        "restore",
        s(&photos),
        "--as-of",
        &format_rfc3339(accident),
        "--exact",
        "--json",
        "--quiet",
    ]);
    let undo: Value = serde_json::from_str(undo.lines().last().unwrap()).unwrap();
    assert_eq!(undo["summary"]["done"], 22, "{undo}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(!mp.join("photos/2026").exists());
    assert_eq!(
        std::fs::read_to_string(mp.join("photos/index")).unwrap(),
        "index v2"
    );
}

/// A hard-linked file restored by one of its names shows the bytes it had at the moment: the
/// object the names link to comes back too (it is outside the directory restored), whether
/// the names were overwritten through or removed since; and it is one file again (a write
/// through one name shows through the other).
#[test]
fn restore_of_hard_linked_names_brings_back_their_bytes() {
    if fuse_missing("restore_of_hard_linked_names_brings_back_their_bytes") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rtd = dir.path().join("run");
    let store = dir.path().join("store");
    let mp = dir.path().join("m");
    std::env::set_var("XDG_RUNTIME_DIR", &rtd);
    let (st, m) = (s(&store), s(&mp));
    ok(&["init", st]);
    let _g = guard(&store, &mp);
    ok(&["mount", st, m, "--attr-ttl", "0.2"]);
    let d = mp.join("d");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("a"), "as it was").unwrap();
    std::fs::hard_link(d.join("a"), d.join("b")).unwrap();
    std::fs::write(d.join("kept"), "kept").unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let at = format_rfc3339(moment());
    std::thread::sleep(Duration::from_millis(20));
    // Overwritten through one name: the stubs stay as they were, only the object changed.
    std::fs::write(d.join("b"), "overwritten").unwrap();
    let t2 = moment();
    let dry = ok(&["restore", s(&d), "--as-of", &at, "--dry-run", "--json"]);
    // One JSON line per step, then the summary.
    let keys: Vec<String> = dry
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter_map(|v| v["key"].as_str().map(String::from))
        .collect();
    assert_eq!(keys.len(), 1, "only the linked object changed: {dry}");
    assert!(keys[0].starts_with(".objfs/inodes/"), "{dry}");
    let out = ok(&["restore", s(&d), "--as-of", &at]);
    assert!(out.contains("1 key(s) restored"), "{out}");
    std::thread::sleep(Duration::from_millis(300));
    for name in ["a", "b"] {
        assert_eq!(
            std::fs::read_to_string(d.join(name)).unwrap(),
            "as it was",
            "{name}"
        );
    }
    // Every name removed (the object gets a delete marker with its last name), then restored.
    std::fs::remove_file(d.join("a")).unwrap();
    std::fs::remove_file(d.join("b")).unwrap();
    let out = ok(&["restore", s(&d), "--as-of", &at]);
    assert!(
        out.contains("3 key(s) restored"),
        "the names and their object: {out}"
    );
    std::thread::sleep(Duration::from_millis(300));
    for name in ["a", "b"] {
        assert_eq!(
            std::fs::read_to_string(d.join(name)).unwrap(),
            "as it was",
            "{name}"
        );
    }
    std::fs::write(d.join("a"), "one file again").unwrap();
    assert_eq!(
        std::fs::read_to_string(d.join("b")).unwrap(),
        "one file again"
    );
    // The state after the overwrite, restored by the same rule.
    let out = ok(&["restore", s(&d), "--as-of", &format_rfc3339(t2)]);
    assert!(out.contains("1 key(s) restored"), "{out}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(std::fs::read_to_string(d.join("a")).unwrap(), "overwritten");
    assert_eq!(std::fs::read_to_string(d.join("kept")).unwrap(), "kept");
}

/// The job records' lifecycle through the command: a finished job is listed (its plan
/// removed), a dry run's planned job too, `--replan` replaces an unfinished plan of the same
/// request, `--abandon` removes a job, and an unknown id is an error that changes nothing.
#[test]
fn restore_jobs_are_listed_finished_jobs_keep_only_their_record_and_abandon_removes_one() {
    let dir = tempfile::tempdir().unwrap();
    let rtd = dir.path().join("run");
    let store = dir.path().join("store");
    let rt = runtime();
    let s = LocalStore::init(&store, Default::default()).unwrap();
    for k in ["p/a", "p/b", "q/a"] {
        put(&s, &rt, k, format!("old {k}"));
    }
    let at = format_rfc3339(moment());
    rt.block_on(async {
        for k in ["p/a", "p/b", "q/a"] {
            s.delete(k).await.unwrap();
        }
    });
    s.close().unwrap();
    let st = store.to_str().unwrap();
    let list = || {
        let out = objfs_at(&["restore", "--store", st, "--list", "--json"], &rtd);
        assert!(out.status.success(), "{}", text(&out.stderr));
        json_lines(&out)
    };
    assert!(list().is_empty());

    let ok = objfs_at(
        &["restore", "--store", st, "p/", "--as-of", &at, "-q"],
        &rtd,
    );
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    let dry = |extra: &[&str]| {
        let out = objfs_at(
            &[
                &[
                    "restore",
                    "--store",
                    st,
                    "q/",
                    "--as-of",
                    &at,
                    "--dry-run",
                    "-q",
                ],
                extra,
            ]
            .concat(),
            &rtd,
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
    };
    dry(&[]);
    dry(&["--replan"]);
    let jobs = list();
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    let (finished, planned) = (&jobs[0], &jobs[1]);
    assert_eq!(finished["state"], "finished");
    assert_eq!(finished["prefix"], "p/");
    assert_eq!(finished["ended"]["done"], 2);
    assert_eq!(planned["state"], "planned");
    assert_eq!(planned["prefix"], "q/");
    let finished_id = finished["job"].as_str().unwrap().to_string();
    let planned_id = planned["job"].as_str().unwrap().to_string();
    let names = |s: &LocalStore| -> Vec<String> {
        let mut v: Vec<String> = rt
            .block_on(s.list_records("restore/"))
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        v.sort();
        v
    };
    let s = LocalStore::open(&store).unwrap();
    let mut want = vec![
        format!("restore/{planned_id}/plan/000000"),
        format!("restore/jobs/{finished_id}"),
        format!("restore/jobs/{planned_id}"),
    ];
    want.sort();
    assert_eq!(
        names(&s),
        want,
        "the finished job's plan is gone, the superseded plan too"
    );
    s.close().unwrap();

    let text_list = objfs_at(&["restore", "--store", st, "--list"], &rtd);
    let shown = text(&text_list.stdout);
    assert!(
        shown.contains(&finished_id) && shown.contains("finished"),
        "{shown}"
    );
    assert!(
        shown.contains("planned: the same command executes it"),
        "{shown}"
    );

    let bad = objfs_at(
        &["restore", "--store", st, "--abandon", "0123456789abcdef"],
        &rtd,
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        text(&bad.stderr).contains("no restore job"),
        "{}",
        text(&bad.stderr)
    );
    let gone = objfs_at(&["restore", "--store", st, "--abandon", &planned_id], &rtd);
    assert!(gone.status.success(), "{}", text(&gone.stderr));
    assert!(text(&gone.stdout).contains(&format!("abandoned restore job {planned_id}")));
    let s = LocalStore::open(&store).unwrap();
    assert_eq!(names(&s), vec![format!("restore/jobs/{finished_id}")]);
    s.close().unwrap();

    let usage = objfs_at(&["restore", "--list"], &rtd);
    assert_eq!(usage.status.code(), Some(2), "{}", text(&usage.stderr));
    let usage = objfs_at(&["restore", "--store", st, "p/"], &rtd);
    assert_eq!(usage.status.code(), Some(2), "{}", text(&usage.stderr));
}
