//! What the store's benchmarks share: the runtime, a directory on the build's disk, and
//! criterion's estimates read back for the ratio tables.

use std::path::Path;

/// The allocator the objfs binary runs with (docs/ARCHITECTURE.md#dependencies), so the figures
/// are the binary's.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The binary's jemalloc options (mount-tool/src/main.rs).
#[export_name = "_rjem_malloc_conf"]
pub static MALLOC_CONF: &u8 = &b"oversize_threshold:0\0"[0];

/// A two-worker tokio runtime (the machine's cores).
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A fresh directory under target/bench-tmp: the same disk as the build (not tmpfs), so native
/// baselines and objfs share it.
pub fn bench_dir() -> tempfile::TempDir {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-tmp");
    let _ = std::fs::create_dir_all(&base);
    tempfile::tempdir_in(base).expect("bench dir")
}

/// CPU seconds (user + system) used so far by this thread (`RUSAGE_THREAD`) or by the whole
/// process: the steadier figure on a machine whose cores other work shares.
pub fn cpu_seconds(thread: bool) -> f64 {
    let who = if thread {
        libc::RUSAGE_THREAD
    } else {
        libc::RUSAGE_SELF
    };
    // SAFETY: getrusage only writes the struct it is given.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut r) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(r.ru_utime) + t(r.ru_stime)
}

/// The median of `v` (the upper one of an even count); `v` must not be empty.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// A number from the environment, or `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// criterion's mean estimate (ns) of one benchmark, from its JSON output.
pub fn mean_ns(group: &str, id: &str) -> Option<f64> {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/criterion");
    let text =
        std::fs::read_to_string(base.join(group).join(id).join("new/estimates.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["mean"]["point_estimate"].as_f64()
}

/// Lists every version under `prefix`, 1,000 a page; returns how many there were.
pub fn count_versions(
    rt: &tokio::runtime::Runtime,
    store: &dyn objfs_store::ObjectStore,
    prefix: &str,
) -> usize {
    rt.block_on(count_versions_async(store, prefix))
}

/// [`count_versions`] from inside a runtime.
pub async fn count_versions_async(store: &dyn objfs_store::ObjectStore, prefix: &str) -> usize {
    let mut req = objfs_store::ListVersionsRequest {
        prefix: prefix.into(),
        max_keys: 1000,
        ..Default::default()
    };
    let mut n = 0;
    loop {
        let page = store.list_versions(&req).await.expect("list_versions");
        n += page.versions.len();
        match page.next_key_marker {
            Some(k) => {
                req.key_marker = Some(k);
                req.version_marker = page.next_version_marker;
            }
            None => return n,
        }
    }
}
