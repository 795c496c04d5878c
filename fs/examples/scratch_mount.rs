//! Mounts a store for trying the filesystem by hand:
//! `scratch_mount MOUNTPOINT [LOCAL_STORE_DIR]` (in-memory store without a directory).
//! Blocks until unmounted from outside (`fusermount3 -u MOUNTPOINT`).

use std::path::PathBuf;
use std::sync::Arc;

use objfs_fs::FsConfig;
use objfs_store::ObjectStore;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args().skip(1);
    let mp = PathBuf::from(
        args.next()
            .ok_or("usage: scratch_mount MOUNTPOINT [STORE_DIR]")?,
    );
    let store: Arc<dyn ObjectStore> = match args.next() {
        Some(dir) => {
            let (s, _) = objfs_store::local::LocalStore::open_or_init(
                std::path::Path::new(&dir),
                Default::default(),
            )?;
            Arc::new(s)
        }
        None => Arc::new(objfs_store::memory::MemoryStore::new()),
    };
    let cfg = FsConfig {
        fs_name: "objfs:scratch".into(),
        ..FsConfig::default()
    };
    let h = objfs_fs::mount(store, &mp, cfg)?;
    eprintln!("mounted at {}", mp.display());
    h.join()?;
    eprintln!("unmounted");
    Ok(())
}
