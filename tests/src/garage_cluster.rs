//! A Garage cluster of a few nodes on 127.0.0.1, started by a test and stopped when it ends
//! (also on failure: [`GarageCluster`]'s `Drop` kills every node it started).
//!
//! The binary is the one `scripts/test` built, named by `OBJFS_TEST_GARAGE_BIN`; without it
//! [`garage_binary`] says loudly that the test was skipped (under `OBJFS_REQUIRE_S3=1` it
//! fails instead). Each node gets its own configuration (free ports for RPC, S3 and admin, the
//! sqlite metadata engine the test build has, the given replication factor, the default
//! consistency mode), the nodes are connected with `garage node connect`, a layout over all of
//! them (one zone each) is applied, and a key and a bucket are made. Its credentials go into a shared credentials file of the
//! cluster's own, so the caller's environment is never changed.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The Garage binary `scripts/test` built, or `None` after a loud message.
pub fn garage_binary(test: &str) -> Option<PathBuf> {
    match std::env::var_os("OBJFS_TEST_GARAGE_BIN").filter(|v| !v.is_empty()) {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            crate::conformance::fail_if_s3_required(&format!(
                "OBJFS_TEST_GARAGE_BIN is not set ({test} would be skipped)"
            ));
            eprintln!();
            eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
            eprintln!("!!! SKIPPING {test}: OBJFS_TEST_GARAGE_BIN is not set");
            eprintln!("!!! run it with scripts/test, which builds Garage and sets it");
            eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
            None
        }
    }
}

/// One node: its process (while it runs), configuration and ports.
struct Node {
    child: Option<Child>,
    conf: PathBuf,
    rpc_port: u16,
    s3_port: u16,
}

/// A running cluster and what a client needs to use it.
pub struct GarageCluster {
    bin: PathBuf,
    nodes: Vec<Node>,
    /// The bucket made for the test.
    pub bucket: String,
    /// A shared credentials file with the bucket's key as profile [`Self::PROFILE`].
    pub credentials: PathBuf,
    dir: TempDir,
}

/// A free TCP port on 127.0.0.1 (free when asked; the node binds it right after).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

fn wait_port(port: u16, what: &str) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{what} did not listen on 127.0.0.1:{port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A random 32-byte secret in hex.
fn rpc_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl GarageCluster {
    /// The profile of the credentials file.
    pub const PROFILE: &'static str = "cluster";
    /// The region Garage answers to.
    pub const REGION: &'static str = "garage";

    /// Starts `n` nodes with `replication_factor`, connects them, applies a layout over all
    /// of them and makes a key and a bucket `bucket`.
    pub fn start(bin: &Path, n: usize, replication_factor: usize, bucket: &str) -> GarageCluster {
        let dir = tempfile::Builder::new()
            .prefix("objfs-garage-cluster-")
            .tempdir()
            .expect("a temporary directory");
        let secret = rpc_secret();
        let mut cluster = GarageCluster {
            bin: bin.to_path_buf(),
            nodes: Vec::new(),
            bucket: bucket.to_string(),
            credentials: dir.path().join("credentials"),
            dir,
        };
        for i in 0..n {
            let node = cluster.write_config(i, replication_factor, &secret);
            cluster.nodes.push(node);
            cluster.spawn(i);
        }
        for node in &cluster.nodes {
            wait_port(node.rpc_port, "garage (rpc)");
            wait_port(node.s3_port, "garage (s3)");
        }
        let ids: Vec<String> = (0..n).map(|i| cluster.node_id(i)).collect();
        for id in &ids[1..] {
            cluster.cli(0, &["node", "connect", id]);
        }
        for (i, id) in ids.iter().enumerate() {
            let short = id.split('@').next().unwrap_or(id);
            let zone = format!("dc{}", i + 1);
            cluster.cli(0, &["layout", "assign", "-z", &zone, "-c", "1G", short]);
        }
        cluster.cli(0, &["layout", "apply", "--version", "1"]);
        cluster.make_key_and_bucket();
        cluster
    }

    fn write_config(&self, i: usize, replication_factor: usize, secret: &str) -> Node {
        let (rpc_port, s3_port, admin_port) = (free_port(), free_port(), free_port());
        let d = self.dir.path();
        let conf = d.join(format!("node{i}.toml"));
        let text = format!(
            r#"metadata_dir = "{meta}"
data_dir = "{data}"
db_engine = "sqlite"
replication_factor = {replication_factor}
rpc_bind_addr = "127.0.0.1:{rpc_port}"
rpc_public_addr = "127.0.0.1:{rpc_port}"
rpc_secret = "{secret}"

[s3_api]
s3_region = "{region}"
api_bind_addr = "127.0.0.1:{s3_port}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:{admin_port}"
"#,
            meta = d.join(format!("meta{i}")).display(),
            data = d.join(format!("data{i}")).display(),
            region = Self::REGION,
        );
        fs::write(&conf, text).expect("write a node's configuration");
        Node {
            child: None,
            conf,
            rpc_port,
            s3_port,
        }
    }

    fn spawn(&mut self, i: usize) {
        let log = fs::File::create(self.dir.path().join(format!("node{i}.log")))
            .expect("create a node's log");
        let err = log.try_clone().expect("clone a log handle");
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(&self.nodes[i].conf)
            .arg("server")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.bin.display()));
        self.nodes[i].child = Some(child);
    }

    /// Runs `garage ARGS` against node `i`; its stdout (panics with stderr on failure).
    pub fn cli(&self, i: usize, args: &[&str]) -> String {
        let out = Command::new(&self.bin)
            .arg("-c")
            .arg(&self.nodes[i].conf)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", self.bin.display()));
        assert!(
            out.status.success(),
            "garage {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `ID@ADDR` of node `i` (asked until the node answers, for 30 s at most).
    fn node_id(&self, i: usize) -> String {
        let start = Instant::now();
        loop {
            let out = Command::new(&self.bin)
                .arg("-c")
                .arg(&self.nodes[i].conf)
                .args(["node", "id", "-q"])
                .output();
            if let Ok(o) = out {
                let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
                if o.status.success() && id.contains('@') {
                    return id;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "node {i} has no id"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn make_key_and_bucket(&self) {
        let info = self.cli(0, &["key", "create", "objfs-cluster"]);
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
                .unwrap_or_else(|| panic!("no {name:?} in `garage key create`:\n{info}"))
        };
        let (id, secret) = (field("Key ID:"), field("Secret key:"));
        self.cli(0, &["bucket", "create", &self.bucket]);
        self.cli(
            0,
            &[
                "bucket",
                "allow",
                "--read",
                "--write",
                "--owner",
                &self.bucket,
                "--key",
                "objfs-cluster",
            ],
        );
        fs::write(
            &self.credentials,
            format!(
                "[{}]\naws_access_key_id = {id}\naws_secret_access_key = {secret}\n",
                Self::PROFILE
            ),
        )
        .expect("write the credentials file");
    }

    /// The S3 endpoint of node `i`.
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[i].s3_port)
    }

    /// Kills node `i` with SIGKILL (no clean shutdown) and reaps it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The last lines of node `i`'s log, for failure messages.
    pub fn log_tail(&self, i: usize) -> String {
        let text =
            fs::read_to_string(self.dir.path().join(format!("node{i}.log"))).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for GarageCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}
