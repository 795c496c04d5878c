//! Reports as people read them: sizes in KiB/MiB/GiB, rates, durations, local times, and
//! the text form of every JSON report the commands print (ops.rs makes the JSON; `--json`
//! prints it as it is, this renders the same value as text).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use objfs_store::local::daemons::DaemonReport;
use objfs_store::local::worker::RunReport;
use serde::Deserialize;
use serde_json::Value;

/// A byte count for people: `0 B`, `1023 B`, `1.5 KiB`, `2.0 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A rate: bytes per second.
pub fn human_rate(bytes: u64, secs: f64) -> String {
    if secs <= 0.0 {
        return "-".into();
    }
    format!("{}/s", human_bytes((bytes as f64 / secs) as u64))
}

/// A duration for people: `850 ms`, `12.3 s`, `4 min 10 s`, `2 h 5 min`, `3 d 4 h`.
pub fn human_duration(secs: f64) -> String {
    let s = secs.max(0.0);
    if s < 1.0 {
        return format!("{} ms", (s * 1000.0).round() as u64);
    }
    if s < 60.0 {
        return format!("{s:.1} s");
    }
    let s = s.round() as u64;
    match s {
        0..=3599 => format!("{} min {} s", s / 60, s % 60),
        3600..=86_399 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        _ => format!("{} d {} h", s / 86_400, (s % 86_400) / 3600),
    }
}

extern "C" {
    /// POSIX: reads TZ (localtime_r need not).
    fn tzset();
}

/// Nanoseconds since the epoch as a local time, `2026-12-01 05:07:53 CET`.
pub fn local_time(ns: u64) -> String {
    let secs = (ns / 1_000_000_000) as libc::time_t;
    // SAFETY: localtime_r and strftime write only into the buffers given; tzset reads TZ.
    unsafe {
        tzset();
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&secs, &mut tm).is_null() {
            return format!("{secs} s after the epoch");
        }
        let mut buf = [0u8; 64];
        let n = libc::strftime(
            buf.as_mut_ptr().cast(),
            buf.len(),
            c"%Y-%m-%d %H:%M:%S %Z".as_ptr(),
            &tm,
        );
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

/// Nanoseconds since the epoch, now.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos().min(u64::MAX as u128) as u64)
        .unwrap_or(0)
}

/// Seconds between two ns timestamps.
fn secs_between(from: u64, to: u64) -> f64 {
    to.saturating_sub(from) as f64 / 1e9
}

/// What a daemon's units are called.
fn unit_of(job: &str) -> &'static str {
    match job {
        "gc" => "phases",
        "disk remove" => "replicas/shards",
        "restore" => "keys",
        _ => "volumes",
    }
}

/// `name value` pairs of a counter map, bytes in human units.
pub fn counters_text(c: &BTreeMap<String, u64>) -> String {
    c.iter()
        .filter(|(k, _)| k.as_str() != "volumes")
        .map(|(k, v)| {
            let name = k.replace('_', " ");
            if k.contains("bytes") {
                format!("{name} {}", human_bytes(*v))
            } else {
                format!("{name} {v}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// One line of a run in progress: items, bytes, rate, ETA.
pub fn run_progress_text(job: &str, run: &RunReport) -> String {
    let mut s = String::new();
    if run.items_total > 0 {
        let _ = write!(s, "{}/{} {}", run.items_done, run.items_total, unit_of(job));
    } else {
        let _ = write!(s, "{} {}", run.items_done, unit_of(job));
    }
    if run.bytes_total > 0 {
        let _ = write!(
            s,
            ", {} of {}",
            human_bytes(run.bytes_done),
            human_bytes(run.bytes_total)
        );
    } else if run.bytes_done > 0 {
        let _ = write!(s, ", {}", human_bytes(run.bytes_done));
    }
    let end = if run.finished != 0 {
        run.finished
    } else {
        now_ns()
    };
    let secs = secs_between(run.started, end);
    if run.bytes_done > 0 && secs > 0.0 {
        let _ = write!(s, ", {}", human_rate(run.bytes_done, secs));
        if run.finished == 0 && run.bytes_total > run.bytes_done {
            let left = (run.bytes_total - run.bytes_done) as f64 * secs / run.bytes_done as f64;
            let _ = write!(s, ", ETA {}", human_duration(left));
        }
    }
    s
}

/// The lines about one daemon: its state, its current run, its last run.
pub fn daemon_text(d: &DaemonReport, mount: Option<&MountView>) -> String {
    let mut s = String::new();
    let state = match (&d.state, mount) {
        (Some(st), Some(m)) => format!("{st} (in the mount at {}, pid {})", m.mountpoint, m.pid),
        (Some(st), None) => st.to_string(),
        (None, _) => "not running (the store is not mounted)".into(),
    };
    let paused = matches!(d.state, Some(objfs_store::local::WorkerState::Paused));
    let pending = match (d.pause_requested, d.running, paused) {
        (true, true, false) => " (pause requested)",
        (false, true, true) => " (resume requested)",
        (true, false, _) => " (will start paused)",
        _ => "",
    };
    let _ = writeln!(s, "{}: {state}{pending}", d.name);
    let p = &d.progress;
    if !p.note.is_empty() {
        let _ = writeln!(s, "  doing:        {}", p.note);
    }
    match &p.current {
        Some(run) => {
            let _ = writeln!(
                s,
                "  current run:  started {} ({} ago): {}",
                local_time(run.started),
                human_duration(secs_between(run.started, now_ns())),
                run_progress_text(&d.name, run)
            );
            if !run.counters.is_empty() {
                let _ = writeln!(s, "                {}", counters_text(&run.counters));
            }
        }
        None => {
            let _ = writeln!(s, "  current run:  none");
        }
    }
    match &p.last {
        Some(run) => {
            let _ = writeln!(
                s,
                "  last run:     {} to {} ({}): {}",
                local_time(run.started),
                local_time(run.finished),
                human_duration(secs_between(run.started, run.finished)),
                run_progress_text(&d.name, run)
            );
            if !run.counters.is_empty() {
                let _ = writeln!(s, "                {}", counters_text(&run.counters));
            }
        }
        None => {
            let _ = writeln!(s, "  last run:     none yet");
        }
    }
    if let Some(e) = &d.last_error {
        let _ = writeln!(s, "  last error:   {e}");
    }
    s
}

/// The `mount` part of a report.
#[derive(Debug, Clone, Deserialize)]
pub struct MountView {
    pub mountpoint: String,
    pub pid: u32,
    pub log_file: Option<String>,
    pub read_only: bool,
    pub started: u64,
    /// The moment a `mount --at` shows.
    #[serde(default)]
    pub at_ns: Option<u64>,
    /// The `mount --at` mounts this process serves.
    #[serde(default)]
    pub at_mounts: Vec<AtMountView>,
}

/// A `mount --at` served by a live mount's process.
#[derive(Debug, Clone, Deserialize)]
pub struct AtMountView {
    pub mountpoint: String,
    pub at_ns: u64,
}

#[derive(Debug, Deserialize)]
struct DiskView {
    path: String,
    online: bool,
    removed: bool,
    total_bytes: u64,
    free_bytes: u64,
}

#[derive(Debug, Deserialize)]
struct StatusView {
    path: String,
    objects: u64,
    versions: u64,
    delete_markers: u64,
    logical_bytes: u64,
    volumes: u64,
    volume_bytes: u64,
    placed_volumes: u64,
    replicas: u8,
    ec: Option<String>,
    overhead: f64,
    warnings: Vec<String>,
    last_shutdown_clean: bool,
    disks: Vec<DiskView>,
    mount: Option<MountView>,
    daemons: Vec<DaemonReport>,
}

/// The mount part of a report, if the store is mounted.
pub fn mount_of(v: &Value) -> Option<MountView> {
    serde_json::from_value(v.get("mount")?.clone()).ok()
}

/// `objfs status` as text.
pub fn status_text(v: &Value) -> anyhow::Result<String> {
    let st: StatusView = serde_json::from_value(v.clone())?;
    let mut s = String::new();
    let _ = writeln!(s, "store:           {}", st.path);
    match &st.mount {
        Some(m) => {
            let _ = writeln!(
                s,
                "mounted:         at {} by pid {} since {}{}",
                m.mountpoint,
                m.pid,
                local_time(m.started),
                if m.read_only { " (read-only)" } else { "" }
            );
            if let Some(at) = m.at_ns {
                let _ = writeln!(s, "as of:           {} (mount --at)", local_time(at));
            }
            for a in &m.at_mounts {
                let _ = writeln!(
                    s,
                    "also serves:     {} as of {} (mount --at, read-only)",
                    a.mountpoint,
                    local_time(a.at_ns)
                );
            }
            let _ = writeln!(
                s,
                "log:             {}",
                m.log_file
                    .as_deref()
                    .unwrap_or("stderr of the foreground mount")
            );
        }
        None => {
            let _ = writeln!(s, "mounted:         no");
        }
    }
    let _ = writeln!(s, "objects:         {}", st.objects);
    let _ = writeln!(s, "versions:        {}", st.versions);
    let _ = writeln!(s, "delete markers:  {}", st.delete_markers);
    let _ = writeln!(
        s,
        "logical bytes:   {} ({} bytes)",
        human_bytes(st.logical_bytes),
        st.logical_bytes
    );
    let _ = writeln!(
        s,
        "volumes:         {} ({} on disk, {} erasure-coded)",
        st.volumes,
        human_bytes(st.volume_bytes),
        st.placed_volumes
    );
    let _ = writeln!(
        s,
        "policy:          {} replica(s) for new data, {}; {:.2}x overhead once placed",
        st.replicas,
        match &st.ec {
            Some(ec) => format!("erasure coding {ec}"),
            None => "no erasure coding".to_string(),
        },
        st.overhead
    );
    let _ = writeln!(
        s,
        "last shutdown:   {}",
        if st.last_shutdown_clean {
            "clean"
        } else {
            "NOT clean (recovered on open)"
        }
    );
    s += &crate::tiering::status_text(v);
    s += "disks:\n";
    for d in &st.disks {
        if d.online {
            let pct = if d.total_bytes > 0 {
                d.free_bytes as f64 * 100.0 / d.total_bytes as f64
            } else {
                0.0
            };
            let _ = writeln!(
                s,
                "  {}  {} free of {} ({pct:.0}% free)",
                d.path,
                human_bytes(d.free_bytes),
                human_bytes(d.total_bytes)
            );
        } else if d.removed {
            let _ = writeln!(s, "  {}  removed (holds nothing of the store)", d.path);
        } else {
            let _ = writeln!(s, "  {}  OFFLINE (missing or not this store's)", d.path);
        }
    }
    for w in &st.warnings {
        let _ = writeln!(s, "warning: {w}");
    }
    s += "daemons:\n";
    for d in &st.daemons {
        for line in daemon_text(d, st.mount.as_ref()).lines() {
            let _ = writeln!(s, "  {line}");
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(1 << 30), "1.0 GiB");
        assert_eq!(human_rate(10 << 20, 2.0), "5.0 MiB/s");
        assert_eq!(human_duration(0.25), "250 ms");
        assert_eq!(human_duration(12.34), "12.3 s");
        assert_eq!(human_duration(250.0), "4 min 10 s");
        assert_eq!(human_duration(7500.0), "2 h 5 min");
        assert!(local_time(1_700_000_000_000_000_000).starts_with("2023-11-1"));
    }

    #[test]
    fn progress_lines() {
        let run = RunReport {
            started: 1_000_000_000,
            finished: 3_000_000_000,
            items_done: 3,
            items_total: 3,
            bytes_done: 4 << 20,
            bytes_total: 4 << 20,
            ..Default::default()
        };
        assert_eq!(
            run_progress_text("scrub", &run),
            "3/3 volumes, 4.0 MiB of 4.0 MiB, 2.0 MiB/s"
        );
        let mut c = BTreeMap::new();
        c.insert("bytes_placed".to_string(), 2048);
        c.insert("volumes_placed".to_string(), 2);
        assert_eq!(counters_text(&c), "bytes placed 2.0 KiB, volumes placed 2");
    }
}
