//! `objfs du`: where a local store's bytes are, per prefix, and how old they are.
//!
//! The figures come from the rollups the store maintains as it commits (never a scan), so
//! `du` costs what it shows, whatever the store holds; `--verify` recounts them from every
//! version in parallel and fails when they differ. A mounted store answers through its
//! control socket ([`Request::Du`], executed by [`execute`] in the mount process), an
//! unmounted one in this process. S3 buckets keep no rollups: `du` says so (bucket.rs).
//! Bytes per tier (local replicated, local erasure-coded, remote) are rollups too, and so are
//! the versions only named snapshots keep per prefix (as gc's last retention pass found them);
//! the store-wide bytes each snapshot alone holds are measured when asked
//! ([`LocalStore::snapshot_exclusive`]).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use objfs_store::local::LocalStore;
use serde_json::{json, Value};

use crate::cli::S3Args;
use crate::history_commands::locate;
use crate::ops::Request;
use crate::progress::Feedback;
use crate::render::human_bytes;

pub const DU_EXAMPLES: &str = "Examples:
  objfs du ~/objfs                           the whole mount, and each directory below it
  objfs du ~/objfs/photos --depth 2          two levels below photos/
  objfs du --store ~/.objfs/store logs/ --top 10   the 10 largest prefixes under logs/
  objfs du ~/objfs --json                    machine-readable (schema in docs/OPERATIONS.md)
  objfs du ~/objfs --csv                     one line per prefix
  objfs du ~/objfs --verify                  recount from every version and compare";

/// `objfs du`.
#[derive(Debug, Args)]
#[command(after_help = DU_EXAMPLES)]
pub struct DuArgs {
    /// A directory inside a mount (its prefix); with --store, a key prefix (default: all).
    pub path: Option<String>,
    /// The store (directory or mount point) to read; PATH is then a key prefix.
    #[arg(long, value_name = "STORE")]
    pub store: Option<PathBuf>,
    #[command(flatten)]
    pub s3: S3Args,
    /// Levels of prefixes below PATH to show.
    #[arg(long, default_value_t = 1)]
    pub depth: usize,
    /// Also list the N largest prefixes below PATH (by live bytes, any depth).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub top: usize,
    /// Print JSON.
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// Print CSV (one line per prefix).
    #[arg(long)]
    pub csv: bool,
    /// Recount everything under PATH from the versions and compare with the rollups.
    #[arg(long)]
    pub verify: bool,
}

/// A directory key becomes its prefix (`photos` -> `photos/`); the root stays empty.
fn as_prefix(key: &str) -> String {
    let k = key.trim_start_matches('/');
    if k.is_empty() || k.ends_with('/') {
        k.to_string()
    } else {
        format!("{k}/")
    }
}

/// `objfs du`.
pub fn du(a: &DuArgs) -> Result<()> {
    let (target, prefix) = match (&a.store, &a.path) {
        (Some(_), p) => locate(p.as_deref().unwrap_or(""), &a.store, &a.s3)?,
        (None, Some(p)) => locate(p, &None, &a.s3)?,
        (None, None) => locate(".", &None, &a.s3)?,
    };
    let req = Request::Du {
        prefix: as_prefix(&prefix),
        depth: a.depth,
        top: a.top,
        verify: a.verify,
    };
    let v = target.execute(&req, &mut Feedback::new(true))?;
    if a.json {
        println!("{v}");
    } else if a.csv {
        print!("{}", csv(&v));
    } else {
        print!("{}", table(&v));
    }
    if let Some(n) = v["verify"]["mismatch_count"].as_u64() {
        if n > 0 {
            bail!("the rollups differ from a recount in {n} row(s)");
        }
    }
    Ok(())
}

/// Executes [`Request::Du`] on an open store (here or in the mount process).
pub fn execute(
    store: &LocalStore,
    prefix: &str,
    depth: usize,
    top: usize,
    verify: bool,
) -> Result<Value> {
    let report = store
        .du(prefix, depth, top)
        .with_context(|| format!("cannot read the rollups of {prefix:?}"))?;
    let mut v = serde_json::to_value(&report).context("cannot encode the report")?;
    // What each snapshot alone holds, measured now (store-wide: snapshots pin versions of
    // any prefix).
    let exact = store
        .snapshot_exclusive()
        .context("cannot measure what each snapshot alone holds")?;
    let held: u64 = exact.values().map(|e| e.bytes).sum();
    v["store"]["snapshot_only_bytes"] = json!(held);
    v["store"]["snapshots"] = json!(exact.len());
    if verify {
        let check = store
            .verify_rollups(prefix)
            .with_context(|| format!("cannot recount {prefix:?}"))?;
        v["verify"] = serde_json::to_value(&check).context("cannot encode the check")?;
    }
    Ok(v)
}

fn u(v: &Value, field: &str) -> u64 {
    v[field].as_u64().unwrap_or(0)
}

fn name(v: &Value) -> String {
    match v["prefix"].as_str().unwrap_or("") {
        "" => "/".to_string(),
        p => p.to_string(),
    }
}

/// Bytes by age class, as `<1d 12K  1d-7d 0  ...`.
fn ages(v: &Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|c| {
                    format!(
                        "{} {}",
                        c["age"].as_str().unwrap_or("?"),
                        human_bytes(u(c, "bytes"))
                    )
                })
                .collect::<Vec<_>>()
                .join("  ")
        })
        .unwrap_or_default()
}

fn row(p: &Value) -> String {
    let indent = "  ".repeat(p["depth"].as_u64().unwrap_or(0) as usize);
    format!(
        "{:<32} {:>10} {:>9} {:>10} {:>9} {:>8} {:>9}\n",
        format!("{indent}{}", name(p)),
        u(p, "live_objects"),
        human_bytes(u(p, "live_bytes")),
        u(p, "noncurrent_versions"),
        human_bytes(u(p, "noncurrent_bytes")),
        u(p, "delete_markers"),
        human_bytes(u(p, "upload_bytes")),
    )
}

/// The text form: one row per prefix, the asked prefix's ages, the largest prefixes, the
/// store-wide figures and the verification.
pub fn table(v: &Value) -> String {
    let mut out = format!(
        "{:<32} {:>10} {:>9} {:>10} {:>9} {:>8} {:>9}\n",
        "PREFIX", "OBJECTS", "SIZE", "NONCURRENT", "NC SIZE", "MARKERS", "UPLOADS"
    );
    let empty = vec![];
    let prefixes = v["prefixes"].as_array().unwrap_or(&empty);
    for p in prefixes {
        out.push_str(&row(p));
    }
    if let Some(first) = prefixes.iter().find(|p| p["depth"] == 0) {
        out.push_str(&format!(
            "\n{}: by age since written:  {}\n",
            name(first),
            ages(&first["modified"])
        ));
        out.push_str(&format!(
            "{}: by age since read:     {}  never read {}\n",
            name(first),
            ages(&first["accessed"]),
            human_bytes(u(first, "never_read_bytes"))
        ));
    }
    if let Some(top) = v["top"].as_array().filter(|t| !t.is_empty()) {
        out.push_str("\nlargest prefixes:\n");
        for p in top {
            let mut p = p.clone();
            p["depth"] = json!(0);
            out.push_str(&row(&p));
        }
    }
    if prefixes.iter().any(|p| p["tiers"].is_object()) {
        out.push_str(&format!(
            "\n{:<32} {:>10} {:>10} {:>9} {:>9} {:>13}\n",
            "PREFIX", "REPLICATED", "ERASURE", "REMOTE", "HOLES", "SNAPSHOT-ONLY"
        ));
        for p in prefixes {
            let indent = "  ".repeat(p["depth"].as_u64().unwrap_or(0) as usize);
            let t = &p["tiers"];
            out.push_str(&format!(
                "{:<32} {:>10} {:>10} {:>9} {:>9} {:>13}\n",
                format!("{indent}{}", name(p)),
                human_bytes(u(t, "local_replicated_bytes")),
                human_bytes(u(t, "local_erasure_coded_bytes")),
                human_bytes(u(t, "remote_bytes")),
                human_bytes(u(t, "hole_bytes")),
                human_bytes(u(&p["snapshot_only"], "snapshot_only_bytes")),
            ));
        }
    }
    let s = &v["store"];
    out.push_str(&format!(
        "\nstore-wide: replicated volumes {}, erasure-coded volumes {}, remote {}, held only by snapshots {} ({} snapshots)\n",
        human_bytes(u(s, "replicated_volume_bytes")),
        human_bytes(u(s, "erasure_coded_volume_bytes")),
        human_bytes(u(s, "remote_bytes")),
        human_bytes(u(s, "snapshot_only_bytes")),
        u(s, "snapshots"),
    ));
    if v["verify"].is_object() {
        let c = &v["verify"];
        out.push_str(&format!(
            "verify: {} versions recounted in {:.2} s ({:.0}/s), {} rollup rows compared, {} differ\n",
            u(c, "versions"),
            c["seconds"].as_f64().unwrap_or(0.0),
            c["versions_per_second"].as_f64().unwrap_or(0.0),
            u(c, "rows"),
            u(c, "mismatch_count"),
        ));
        for m in c["mismatches"].as_array().unwrap_or(&empty) {
            out.push_str(&format!("  {}\n", m.as_str().unwrap_or("")));
        }
    }
    out
}

/// The tier columns of the CSV form.
const TIER_FIELDS: [&str; 4] = [
    "local_replicated_bytes",
    "local_erasure_coded_bytes",
    "remote_bytes",
    "hole_bytes",
];

/// The snapshot-only columns of the CSV form.
const SNAPSHOT_FIELDS: [&str; 2] = ["snapshot_only_versions", "snapshot_only_bytes"];

/// The CSV form: a header, then one line per prefix (ages as bytes per class).
pub fn csv(v: &Value) -> String {
    let fields = [
        "live_objects",
        "live_bytes",
        "noncurrent_versions",
        "noncurrent_bytes",
        "delete_markers",
        "uploads",
        "upload_parts",
        "upload_bytes",
        "never_read_objects",
        "never_read_bytes",
    ];
    let classes: Vec<String> = objfs_store::local::insights::AGE_CLASSES
        .iter()
        .map(|c| c.2.to_string())
        .collect();
    let empty = vec![];
    let rows = v["prefixes"].as_array().unwrap_or(&empty);
    let mut out = String::from("prefix,depth,");
    out.push_str(&fields.join(","));
    for kind in ["modified", "accessed"] {
        for c in &classes {
            out.push_str(&format!(",{kind}_{c}_bytes"));
        }
    }
    for f in TIER_FIELDS.iter().chain(&SNAPSHOT_FIELDS) {
        out.push_str(&format!(",{f}"));
    }
    out.push('\n');
    for p in rows {
        let prefix = p["prefix"].as_str().unwrap_or("").replace('"', "\"\"");
        out.push_str(&format!("\"{prefix}\",{}", u(p, "depth")));
        for f in fields {
            out.push_str(&format!(",{}", u(p, f)));
        }
        for kind in ["modified", "accessed"] {
            for c in p[kind].as_array().unwrap_or(&empty) {
                out.push_str(&format!(",{}", u(c, "bytes")));
            }
        }
        for f in TIER_FIELDS {
            out.push_str(&format!(",{}", u(&p["tiers"], f)));
        }
        for f in SNAPSHOT_FIELDS {
            out.push_str(&format!(",{}", u(&p["snapshot_only"], f)));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_become_prefixes() {
        assert_eq!(as_prefix(""), "");
        assert_eq!(as_prefix("photos"), "photos/");
        assert_eq!(as_prefix("photos/"), "photos/");
        assert_eq!(as_prefix("/a/b"), "a/b/");
    }

    #[test]
    fn csv_quotes_prefixes_and_has_a_column_per_field() {
        let v = json!({"prefixes": [{"prefix": "a\"b/", "depth": 1, "live_objects": 3,
            "modified": [{"age": "<1d", "objects": 1, "bytes": 5}]}]});
        let text = csv(&v);
        let mut lines = text.lines();
        let header = lines.next().unwrap();
        assert!(header.starts_with("prefix,depth,live_objects,"));
        let line = lines.next().unwrap();
        assert!(line.starts_with("\"a\"\"b/\",1,3,"), "{line}");
        assert!(line.ends_with(",5,0,0,0,0,0,0"), "{line}");
    }

    #[test]
    fn tiers_and_snapshot_only_have_columns_and_a_table() {
        let v = json!({"prefixes": [{"prefix": "", "depth": 0, "live_objects": 2,
            "tiers": {"local_replicated_bytes": 10, "local_erasure_coded_bytes": 20,
                "remote_bytes": 30, "hole_bytes": 0},
            "snapshot_only": {"snapshot_only_versions": 1, "snapshot_only_bytes": 7}}]});
        let text = csv(&v);
        let mut lines = text.lines();
        assert!(lines
            .next()
            .unwrap()
            .ends_with(",remote_bytes,hole_bytes,snapshot_only_versions,snapshot_only_bytes"));
        assert!(lines.next().unwrap().ends_with(",10,20,30,0,1,7"));
        let t = table(&v);
        assert!(t.contains("REPLICATED"), "{t}");
        let row = t
            .lines()
            .skip_while(|l| !l.contains("SNAPSHOT-ONLY"))
            .nth(1)
            .unwrap();
        assert!(
            row.starts_with('/') && row.trim_end().ends_with("7 B"),
            "{row}"
        );
    }
}
