//! Command-line tools against the S3 test servers: the `objfs` binary with a server's
//! `--endpoint/--region/--profile`, buckets made for one test (versioned or not), mounts of
//! them, and the AWS CLI (`OBJFS_TEST_AWS_CLI`, installed by `scripts/test` from PyPI in a venv
//! of its own) configured for a server: path-style addressing, the server's profile from the
//! shared credentials file, checksums only where required.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use objfs_store::s3::{create_bucket, set_versioning, S3Store};

use crate::daemon_mount::{objfs_binary, DaemonMount};
use crate::mount_fixture::skip_without_fuse;
use crate::s3_fixture::{unique_name, Server};

/// A runtime for the store API beside the commands.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// The servers a mount test runs on (moto, Garage): those whose variables are set, each
/// missing one said loudly; none without FUSE (said loudly too).
pub fn mount_servers(test: &str) -> Vec<Server> {
    if skip_without_fuse(test) {
        return Vec::new();
    }
    let all: Vec<Server> = [crate::s3_fixture::moto(), crate::s3_fixture::garage()]
        .into_iter()
        .flatten()
        .collect();
    if all.is_empty() {
        eprintln!("{test}: SKIPPED: no S3 test server (run it with scripts/test)");
    }
    all
}

/// Runs `sh -c script` in `cwd`, which must succeed.
pub fn sh(script: &str, cwd: &Path) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(cwd)
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "`{script}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Server {
    /// A bucket of its own for a test (versioning on when `versioned`); its name.
    pub fn bucket_for(&self, tag: &str, versioned: bool) -> String {
        let bucket = unique_name(tag);
        let cfg = self.config_of(Some(&bucket), "");
        runtime().block_on(async {
            create_bucket(&cfg).await.expect("create the bucket");
            if versioned {
                set_versioning(&cfg, true).await.expect("versioning on");
            }
        });
        bucket
    }

    /// The store API's view of `bucket`.
    pub fn open_bucket(&self, rt: &tokio::runtime::Runtime, bucket: &str) -> S3Store {
        rt.block_on(S3Store::open(self.config_of(Some(bucket), "")))
            .expect("open the bucket")
    }

    /// Mounts `s3://bucket` at `dir/name` with `extra` arguments (the log beside it).
    pub fn mount_bucket(
        &self,
        bucket: &str,
        dir: &Path,
        name: &str,
        extra: &[&str],
    ) -> DaemonMount {
        let mut args = self.cli_args();
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        DaemonMount::start_source(
            &format!("s3://{bucket}"),
            &dir.join(name),
            &args,
            &dir.join(format!("{name}.log")),
        )
    }

    /// Runs `objfs ARGS` with this server's options appended.
    pub fn objfs(&self, args: &[&str]) -> Output {
        Command::new(objfs_binary())
            .args(args)
            .args(self.cli_args())
            .output()
            .expect("run objfs")
    }

    /// `objfs ARGS` (this server's options appended), which must succeed; its stdout.
    pub fn objfs_ok(&self, args: &[&str]) -> String {
        let out = self.objfs(args);
        assert!(
            out.status.success(),
            "{}: objfs {args:?} failed ({}): {}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `objfs ARGS --json` parsed.
    pub fn objfs_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.push("--json");
        let text = self.objfs_ok(&all);
        serde_json::from_str(text.trim())
            .unwrap_or_else(|e| panic!("objfs {all:?}: not JSON ({e}): {text}"))
    }

    /// `objfs ARGS`, which must fail with exit status 1 and `what` in its message.
    pub fn objfs_fails(&self, args: &[&str], what: &str) {
        let out = self.objfs(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}: objfs {args:?}: expected a failure saying {what:?}; stdout {} stderr {err}",
            self.name,
            String::from_utf8_lossy(&out.stdout),
        );
        assert!(
            err.contains(what),
            "{}: objfs {args:?}: expected {what:?} in: {err}",
            self.name
        );
    }
}

/// The AWS CLI configured for one server.
pub struct AwsCli {
    bin: PathBuf,
    server: Server,
    /// A config file of its own: path-style addressing, checksums only where required.
    config: PathBuf,
}

impl AwsCli {
    /// The CLI `OBJFS_TEST_AWS_CLI` names, for `server`, its config written into `dir`; `None`
    /// (said loudly, with why) when the variable is unset (a panic under `OBJFS_REQUIRE_S3=1`).
    pub fn find(test: &str, server: &Server, dir: &Path) -> Option<AwsCli> {
        let Some(bin) = std::env::var_os("OBJFS_TEST_AWS_CLI").filter(|v| !v.is_empty()) else {
            crate::conformance::fail_if_s3_required(&format!(
                "OBJFS_TEST_AWS_CLI is not set ({test} would be skipped on {})",
                server.name
            ));
            eprintln!(
                "{test}: SKIPPED on {}: OBJFS_TEST_AWS_CLI is not set (scripts/test installs \
                 the AWS CLI and sets it)",
                server.name
            );
            return None;
        };
        let config = dir.join(format!("aws-config-{}", server.name));
        let section = match &server.profile {
            Some(p) => format!("profile {p}"),
            None => "default".into(),
        };
        std::fs::write(
            &config,
            format!(
                "[{section}]\nregion = {}\nrequest_checksum_calculation = when_required\n\
                 response_checksum_validation = when_required\ns3 =\n    addressing_style = path\n",
                server.region
            ),
        )
        .expect("write the AWS CLI's config");
        Some(AwsCli {
            bin: PathBuf::from(bin),
            server: server.clone(),
            config,
        })
    }

    /// Runs `aws ARGS --endpoint-url E` (with the server's profile), which must succeed; its
    /// stdout.
    pub fn run(&self, args: &[&str]) -> Vec<u8> {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .args(["--endpoint-url", &self.server.endpoint])
            .env("AWS_CONFIG_FILE", &self.config);
        if let Some(p) = &self.server.profile {
            cmd.args(["--profile", p]);
        }
        let out = cmd.output().expect("run the AWS CLI");
        assert!(
            out.status.success(),
            "{}: aws {args:?} failed ({}): {}",
            self.server.name,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }
}
