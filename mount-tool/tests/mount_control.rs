//! A mounted store operated through its control socket while files are being written:
//! `status`, `scrub`, `gc`, `place` (and pause/resume, disk add) answer from the mount
//! process, by store path and by mount point, with JSON figures checked against what was
//! written. The mount is always unmounted by a guard, also when an assertion fails.

mod common;

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use common::*;

const FILE_SIZE: usize = 200_000;

#[test]
fn status_scrub_gc_place_through_the_control_channel_while_writing() {
    if fuse_missing("status_scrub_gc_place_through_the_control_channel_while_writing") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rt = dir.path().join("run");
    // The mount process and every command below share this runtime directory.
    std::env::set_var("XDG_RUNTIME_DIR", &rt);
    let store = dir.path().join("store");
    let mp = dir.path().join("m");
    let disks: Vec<PathBuf> = (0..3).map(|i| dir.path().join(format!("d{i}"))).collect();
    ok(&[
        "init",
        s(&store),
        "--disk",
        s(&disks[0]),
        "--disk",
        s(&disks[1]),
        "--disk",
        s(&disks[2]),
        "--ec",
        "2+1",
        "--volume-size",
        "1M",
    ]);
    let _g = guard(&store, &mp);
    ok(&["mount", s(&store), s(&mp), "--attr-ttl", "0"]);
    let pid = lock_pid(&store).unwrap();

    // A writer: whole files of FILE_SIZE bytes, counted once closed.
    let written = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (written, stop, mp) = (written.clone(), stop.clone(), mp.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) || i < 10 {
                let data: Vec<u8> = (0..FILE_SIZE).map(|b| (b as u64 * 7 + i) as u8).collect();
                fs::write(mp.join(format!("f{i:04}")), &data).expect("write into the mount");
                i += 1;
                written.store(i, Ordering::SeqCst);
            }
            i
        })
    };

    // status while writing: by store and by mount point, the same report, from the mount.
    for target in [&store, &mp] {
        let before = written.load(Ordering::SeqCst);
        let v = json(&["status", "--json", s(target)]);
        let after = written.load(Ordering::SeqCst);
        assert_eq!(v["mount"]["pid"], pid, "{v}");
        assert_eq!(v["mount"]["mountpoint"], s(&mp));
        let objects = v["objects"].as_u64().unwrap();
        assert!(
            (before..=after + 1).contains(&objects),
            "objects {objects} not within {before}..={after}+1"
        );
        assert!(v["logical_bytes"].as_u64().unwrap() <= (after + 1) * FILE_SIZE as u64);
        let names: Vec<&str> = v["daemons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["placement", "scrub", "gc", "lifecycle"]);
        assert!(v["daemons"][1]["running"].as_bool().unwrap());
    }

    // Pause and resume reach the running daemon as commands.
    let v = json(&["scrub", s(&mp), "--pause", "--json"]);
    assert_eq!(v["running"], true, "{v}");
    wait_until("the scrub daemon to pause", || {
        json(&["scrub", s(&store), "--json"])["daemon"]["state"] == "paused"
    });
    ok(&["scrub", s(&mp), "--resume"]);
    wait_until("the scrub daemon to resume", || {
        json(&["scrub", s(&store), "--json"])["daemon"]["state"] != "paused"
    });

    // Jobs run in the mount process while the writer goes on.
    let v = json(&["scrub", s(&mp), "--now", "--json", "-q"]);
    assert_eq!(v["finished"], true, "{v}");
    let run = &v["run"];
    assert_eq!(run["counters"]["unrepairable"], 0, "{v}");
    assert_eq!(run["counters"]["bad"], 0, "{v}");
    assert!(run["bytes_done"].as_u64().unwrap() > 0, "{v}");
    assert!(run["finished"].as_u64().unwrap() >= run["started"].as_u64().unwrap());
    let v = json(&["gc", s(&store), "--now", "--delay", "0", "--json", "-q"]);
    assert_eq!(v["finished"], true, "{v}");
    // Five phases: expiring versions, reclaiming, compacting, stale uploads, orphans.
    assert_eq!(v["run"]["items_done"], 5, "{v}");

    stop.store(true, Ordering::SeqCst);
    let files = writer.join().expect("writer");
    assert_eq!(written.load(Ordering::SeqCst), files);

    // place --now seals and erasure-codes everything; its figures match the store's.
    let v = json(&["place", s(&mp), "--now", "--json", "-q"]);
    assert_eq!(v["finished"], true, "{v}");
    assert_eq!(v["placed_volumes"], v["volumes"], "{v}");
    let placed = v["run"]["counters"]["volumes_placed"].as_u64().unwrap_or(0);
    let placed_bytes = v["run"]["counters"]["bytes_placed"].as_u64().unwrap_or(0);
    assert!(placed > 0, "{v}");
    assert!(placed_bytes > 0, "{v}");
    // The last runs are what status reports for each daemon afterwards.
    let st = json(&["status", "--json", s(&store)]);
    assert_eq!(st["objects"], files, "{st}");
    assert_eq!(st["logical_bytes"], files * FILE_SIZE as u64, "{st}");
    assert_eq!(st["placed_volumes"], st["volumes"], "{st}");
    let placement = &st["daemons"][0]["progress"]["last"];
    assert_eq!(placement["counters"]["bytes_placed"], placed_bytes, "{st}");
    let scrub = &st["daemons"][1]["progress"]["last"];
    assert!(
        scrub["counters"]["bytes_checked"].as_u64().unwrap() > 0,
        "{st}"
    );
    let text = ok(&["status", s(&mp)]);
    assert!(text.contains("bytes placed"), "{text}");
    let longest_number = text
        .split(|c: char| !c.is_ascii_digit())
        .map(str::len)
        .max()
        .unwrap_or(0);
    assert!(longest_number < 12, "raw nanoseconds in: {text}");

    // A disk command through the mount, then the whole tree reads back.
    let d3 = dir.path().join("d3");
    ok(&["disk", "add", s(&mp), s(&d3)]);
    let st = json(&["status", "--json", s(&mp)]);
    assert_eq!(st["disks"].as_array().unwrap().len(), 4, "{st}");
    for i in 0..files {
        let data = fs::read(mp.join(format!("f{i:04}"))).unwrap();
        assert_eq!(data.len(), FILE_SIZE);
        assert_eq!(data[1], (7 + i) as u8);
    }
    ok(&["umount", s(&mp)]);
    assert!(names(&rt.join("objfs")).is_empty(), "unmount left a record");
    // Unmounted: the same report, from the store itself.
    let st = json(&["status", "--json", s(&store)]);
    assert!(st["mount"].is_null());
    assert_eq!(st["objects"], files);
    assert_eq!(
        st["daemons"][0]["progress"]["last"]["counters"]["bytes_placed"],
        placed_bytes
    );
    assert_eq!(st["daemons"][1]["running"], false);
    // Unmounted --now runs show up in the daemon reports at once, with their figures.
    ok(&["scrub", s(&store), "--now", "-q"]);
    let v = json(&["scrub", s(&store), "--json"]);
    let last = &v["daemon"]["progress"]["last"];
    assert!(
        last["counters"]["bytes_checked"].as_u64().unwrap() > 0,
        "{v}"
    );
    assert!(last["finished"].as_u64().unwrap() > 0, "{v}");
    ok(&["gc", s(&store), "--now", "-q"]);
    let text = ok(&["gc", s(&store)]);
    assert!(text.contains("gc: not running"), "{text}");
    assert!(text.contains("5/5 phases"), "{text}");
}
