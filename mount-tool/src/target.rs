//! What a command's STORE argument names, and running a request there.
//!
//! The argument may be a mount point or a store location. It is looked up in the runtime
//! registry (runtime.rs): a mounted store is served by its mount process, over the control
//! socket. Otherwise it must be an existing local store — checked by reading only, so a typo
//! never creates anything — which the command opens itself, or a bucket (`s3://`, reached
//! with `--endpoint/--region/--profile`), which the command opens itself too. Either way the
//! request goes through [`crate::ops::execute`] (a local store) or [`crate::bucket::execute`]
//! (a bucket), so the output is the same mounted or not.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use objfs_store::local::config::MARKER;
use objfs_store::local::LocalStore;
use objfs_store::StoreError;
use serde_json::Value;

use crate::bucket::Bucket;
use crate::cli::S3Args;
use crate::location::StoreLocation;
use crate::ops::{self, Request};
use crate::progress::Feedback;
use crate::runtime::{self, Mounted};
use crate::{client, platform};

/// A store a command works on.
pub enum Target {
    /// Mounted: its mount process executes the requests.
    Mounted(Mounted),
    /// Not mounted: a local store directory (it has a store marker).
    Local(PathBuf),
    /// Not mounted here: a bucket.
    Bucket(Bucket),
}

/// Resolves a command's STORE (or mount point) argument (an s3:// one at AWS).
pub fn resolve(arg: &Path) -> Result<Target> {
    resolve_with(arg, &S3Args::default())
}

/// Resolves a command's STORE (or mount point) argument; an s3:// location is reached as `s3`
/// says (and found mounted under the same endpoint).
pub fn resolve_with(arg: &Path, s3: &S3Args) -> Result<Target> {
    let text = arg.to_string_lossy();
    if !text.contains("://") {
        let abs = platform::absolute(arg)?;
        if let Some(m) = runtime::lookup_mountpoint(&abs) {
            return Ok(Target::Mounted(m));
        }
    }
    let loc = StoreLocation::parse(arg)?;
    if let StoreLocation::S3 { .. } = loc {
        let b = Bucket::new(loc, &s3.settings())?;
        return Ok(match runtime::lookup_store(&b.loc) {
            Some(m) => Target::Mounted(m),
            None => Target::Bucket(b),
        });
    }
    if let Some(m) = runtime::lookup_store(&loc) {
        return Ok(Target::Mounted(m));
    }
    let path = loc.supported_path()?.to_path_buf();
    check_is_store(&path)?;
    Ok(Target::Local(path))
}

/// Fails, with what was found and what to do, unless `path` holds a store. Reads only.
pub fn check_is_store(path: &Path) -> Result<()> {
    let shown = path.display();
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("no objfs store at {shown}: it does not exist (create one with `objfs init {shown}`)")
        }
        Err(e) if platform::is_dead_mount_error(&e) => bail!(
            "{shown} is a dead mount (its process is gone: {e}); clear it with `fusermount3 -u -z {shown}`"
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot use {shown}")),
    };
    if !meta.is_dir() {
        bail!("{shown} is not an objfs store: it is not a directory");
    }
    if path.join(MARKER).is_file() {
        return Ok(());
    }
    if let Ok(Some(entry)) = platform::find_mount(path) {
        if entry.is_fuse() {
            bail!(
                "{shown} is a FUSE mount point ({}) that no objfs mount of this user has \
                 registered in {}; give the store directory, or run the command as the user who mounted it",
                entry.source,
                runtime::runtime_dir().display()
            );
        }
    }
    let empty = std::fs::read_dir(path)
        .map(|mut d| d.next().is_none())
        .unwrap_or(false);
    if empty {
        bail!("{shown} is an empty directory, not an objfs store (create one with `objfs init {shown}`)");
    }
    bail!("{shown} is not an objfs store (it has no {MARKER})")
}

impl Target {
    /// `cat`: writes the version `spec` names to `out`; returns which version it was.
    pub fn cat(
        &self,
        spec: &crate::history::CatSpec,
        out: &mut dyn std::io::Write,
    ) -> Result<Value> {
        match self {
            Target::Mounted(m) => client::call_raw(m, &Request::Cat(spec.clone()), out),
            Target::Local(path) => {
                let store = open_unmounted(path)?;
                let out = crate::history::resolve(&store, spec).and_then(|info| {
                    crate::history::write_version(&store, &info, out)?;
                    Ok(crate::history::cat_header(&info))
                });
                let closed = store.close();
                let out = out?;
                closed.with_context(|| format!("cannot close store {}", path.display()))?;
                Ok(out)
            }
            Target::Bucket(b) => b.cat(spec, out),
        }
    }

    /// Executes `req` where the store is, showing progress on `feedback`.
    pub fn execute(&self, req: &Request, feedback: &mut Feedback) -> Result<Value> {
        self.execute_lines(req, feedback, &mut |_| {})
    }

    /// [`Target::execute`]; a restore's report lines go to `on_lines` as the job makes them
    /// (its answer then carries none).
    pub fn execute_lines(
        &self,
        req: &Request,
        feedback: &mut Feedback,
        on_lines: &mut dyn FnMut(&[Value]),
    ) -> Result<Value> {
        let out = match self {
            Target::Mounted(m) => client::call_lines(m, req, &mut |p| feedback.update(p), on_lines),
            Target::Local(path) => {
                let store = open_unmounted(path)?;
                let mut on_progress = |p: &ops::JobProgress| {
                    feedback.update(p);
                    true
                };
                let out = match req {
                    Request::Restore(r) => crate::restore::execute_streaming(
                        &store,
                        r,
                        &mut on_progress,
                        &mut |_| {},
                        on_lines,
                    ),
                    _ => ops::execute(&store, None, req, &mut on_progress),
                };
                let closed = store.close();
                let out = out?;
                closed.with_context(|| format!("cannot close store {}", path.display()))?;
                Ok(out)
            }
            Target::Bucket(b) => b.execute_lines(req, feedback, on_lines),
        };
        feedback.finish();
        out
    }
}

/// Opens a store that no registered mount serves, explaining a lock held by another process.
fn open_unmounted(path: &Path) -> Result<LocalStore> {
    match LocalStore::open(path) {
        Ok(s) => Ok(s),
        Err(StoreError::Locked { pid, .. }) => {
            let alive = platform::process_alive(pid);
            if alive {
                bail!(
                    "store {} is in use by pid {pid}, which has no control socket in {} \
                     (another command running on it, a mount by another user, or a mount with \
                     another XDG_RUNTIME_DIR); wait for it or run the command as that user",
                    path.display(),
                    runtime::runtime_dir().display()
                )
            }
            bail!(
                "store {} is locked by pid {pid}, which is gone; try again",
                path.display()
            )
        }
        Err(e) => Err(crate::mount::explain_open_error(path, e)),
    }
}
