//! The mount process's side of the control channel: it owns the store (sled has one owner),
//! so every command about a mounted store is executed here, on a thread per connection, by
//! the same [`ops::execute`] a command runs on a store that is not mounted.
//!
//! Only the mounting user and root may connect: the socket is 0600 in a 0700 directory
//! (runtime.rs), and each connection's peer credentials are checked too. A connection sends
//! one request line and gets progress lines, then one result line (ops.rs). When the mount
//! ends, [`ControlServer::stop`] stops accepting, removes the socket and record, lets running
//! jobs stop at their next unit, unmounts the `--at` mounts it serves, and drops the server's
//! references to the store.
//!
//! Three requests are the server's own: `cat` streams a version's bytes raw after its answer
//! line (and a restore's report lines are sent as they come, before its answer); `mount --at` of the mounted store mounts a read-only view of that moment here (the
//! store has one owner) and keeps it until it is unmounted or the live mount ends; and after
//! every request, what it changed behind the kernel's back ([`ops::Request::invalidation`]) is
//! invalidated in the live mount ([`ControlServer::set_fs`]).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use std::path::Path;

use anyhow::{Context, Result};
use objfs_fs::{MountHandle, ObjFs};
use objfs_store::history::time::format_rfc3339;
use objfs_store::local::LocalStore;
use objfs_store::ObjectStore;
use serde_json::{json, Value};
use tracing::{info, warn};

use crate::history::{self, from_ns, CatSpec};
use crate::ops::{self, Envelope, Reply, Request, PROTOCOL_VERSION};
use crate::options::MountSettings;
use crate::runtime::{Record, Registration};

/// Told which keys a command changed in the store behind the kernel's back.
pub type Invalidator = Arc<dyn Fn(&[String]) + Send + Sync>;

/// What every connection needs.
struct Shared {
    store: Mutex<Option<Arc<LocalStore>>>,
    record: Record,
    stopping: AtomicBool,
    /// The live mount's filesystem, told what requests changed.
    fs: Mutex<Option<Arc<ObjFs>>>,
    /// The `mount --at` mounts served here.
    at_mounts: Mutex<Vec<AtMount>>,
    invalidator: Mutex<Option<Invalidator>>,
}

/// A `mount --at` served here.
struct AtMount {
    handle: MountHandle,
    at_ns: u64,
}

/// The running server; [`ControlServer::stop`] (or dropping it) ends it.
pub struct ControlServer {
    shared: Arc<Shared>,
    registration: Option<Registration>,
    thread: Option<JoinHandle<()>>,
}

impl ControlServer {
    /// Serves `listener` (registered by `registration`) for `store`.
    pub fn start(
        listener: UnixListener,
        registration: Registration,
        store: Arc<LocalStore>,
        record: Record,
    ) -> std::io::Result<ControlServer> {
        let shared = Arc::new(Shared {
            store: Mutex::new(Some(store)),
            record,
            stopping: AtomicBool::new(false),
            fs: Mutex::new(None),
            at_mounts: Mutex::new(Vec::new()),
            invalidator: Mutex::new(None),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("objfs-control".into())
            .spawn(move || accept_loop(listener, s))?;
        Ok(ControlServer {
            shared,
            registration: Some(registration),
            thread: Some(thread),
        })
    }

    /// The live mount's filesystem: requests that change the store behind the kernel's back
    /// invalidate what it cached.
    pub fn set_fs(&self, fs: Arc<ObjFs>) {
        if let Ok(mut f) = self.shared.fs.lock() {
            *f = Some(fs);
        }
    }

    /// Installs what [`keys_changed`] calls: the mounted filesystem's invalidation of the keys
    /// a command changed (the mount installs it once the filesystem is up).
    pub fn set_invalidator(&self, f: Invalidator) {
        if let Ok(mut slot) = self.shared.invalidator.lock() {
            *slot = Some(f);
        }
    }

    /// Stops serving: no new connections, the socket and record removed, running jobs asked
    /// to stop, the `--at` mounts unmounted, and the server's reference to the store dropped.
    pub fn stop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        if let Some(reg) = &self.registration {
            // Wake the accept loop.
            let _ = UnixStream::connect(reg.socket());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.registration = None;
        let at_mounts = match self.shared.at_mounts.lock() {
            Ok(mut m) => std::mem::take(&mut *m),
            Err(_) => Vec::new(),
        };
        for AtMount { handle: h, .. } in at_mounts {
            let mp = h.mountpoint().to_path_buf();
            if let Err(e) = h.unmount() {
                warn!(mountpoint = %mp.display(), "unmounting a mount --at: {e}");
            } else {
                info!(mountpoint = %mp.display(), "unmounted the mount --at served here");
            }
        }
        if let Ok(mut f) = self.shared.fs.lock() {
            f.take();
        }
        if let Ok(mut s) = self.shared.store.lock() {
            s.take();
        }
        // The invalidator may hold the filesystem, and through it the store.
        if let Ok(mut f) = self.shared.invalidator.lock() {
            f.take();
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(listener: UnixListener, shared: Arc<Shared>) {
    for conn in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let conn = match conn {
            Ok(c) => c,
            Err(e) => {
                warn!("control socket: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if !peer_allowed(&conn) {
            warn!("control socket: refused a connection from another user");
            continue;
        }
        let s = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("objfs-control-conn".into())
            .spawn(move || {
                if let Err(e) = serve(conn, &s) {
                    info!("control connection ended: {e}");
                }
            });
        if let Err(e) = spawned {
            warn!("control socket: cannot start a thread: {e}");
        }
    }
}

/// Whether the peer is this process's user or root.
pub(crate) fn peer_allowed(conn: &UnixStream) -> bool {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    match getsockopt(conn, PeerCredentials) {
        Ok(c) => c.uid() == 0 || c.uid() == nix::unistd::geteuid().as_raw(),
        Err(_) => false,
    }
}

pub(crate) fn send(w: &mut UnixStream, reply: &Reply) -> std::io::Result<()> {
    let mut line = serde_json::to_string(reply).map_err(std::io::Error::other)?;
    line.push('\n');
    w.write_all(line.as_bytes())?;
    w.flush()
}

/// One connection: a request line, progress lines, a result line.
fn serve(conn: UnixStream, shared: &Shared) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut writer = conn.try_clone()?;
    let mut line = String::new();
    BufReader::new(conn).read_line(&mut line)?;
    if line.trim().is_empty() {
        // A liveness probe (runtime.rs): connected and went away.
        return Ok(());
    }
    let env: Envelope = match serde_json::from_str(line.trim()) {
        Ok(e) => e,
        Err(e) => return send(&mut writer, &Reply::Error(format!("bad request: {e}"))),
    };
    if env.version != PROTOCOL_VERSION {
        let msg = format!(
            "this mount speaks control protocol {PROTOCOL_VERSION}, the command {} (use the same objfs for both)",
            env.version
        );
        return send(&mut writer, &Reply::Error(msg));
    }
    let store = shared.store.lock().ok().and_then(|s| s.clone());
    let Some(store) = store else {
        return send(
            &mut writer,
            &Reply::Error("the store is being unmounted".into()),
        );
    };
    info!(request = ?env.request, "control request");
    reap_at_mounts(shared);
    match &env.request {
        Request::Cat(spec) => return serve_cat(&mut writer, store.as_ref(), spec),
        Request::MountAt {
            mountpoint,
            at_ns,
            options,
        } => {
            let r = mount_at(shared, store, mountpoint, *at_ns, options);
            return send(
                &mut writer,
                &match r {
                    Ok(v) => Reply::Done(v),
                    Err(e) => Reply::Error(format!("{e:#}")),
                },
            );
        }
        _ => {}
    }
    let mut lines = ProgressLines::new(writer.try_clone()?);
    let mut on_progress =
        |p: &ops::JobProgress| !shared.stopping.load(Ordering::SeqCst) && lines.send(p);
    let mut report_writer = writer.try_clone()?;
    let mut result = match &env.request {
        ops::Request::Restore(r) => crate::restore::execute_streaming(
            store.as_ref(),
            r,
            &mut on_progress,
            &mut |keys| keys_changed(shared, keys),
            // A client gone away is seen by the next progress line, which stops the job.
            &mut |l| {
                let _ = send(&mut report_writer, &Reply::Lines(l.to_vec()));
            },
        ),
        req => ops::execute(&store, Some(&shared.record), req, &mut on_progress),
    };
    drop(store);
    if let (Request::Status, Ok(v)) = (&env.request, &mut result) {
        v["mount"]["at_mounts"] = served_at_mounts(shared);
    }
    // Also after a failure: a job stopped half-way changed what it did.
    invalidate(shared, &env.request);
    match result {
        Ok(v) => send(&mut writer, &Reply::Done(v)),
        Err(e) => send(&mut writer, &Reply::Error(format!("{e:#}"))),
    }
}

/// Tells the live mount what `req` changed.
fn invalidate(shared: &Shared, req: &Request) {
    let inv = req.invalidation();
    if inv == ops::Invalidation::default() {
        return;
    }
    if let Some(fs) = shared.fs.lock().ok().and_then(|f| f.clone()) {
        apply_invalidation(&fs, &inv);
    }
}

/// Drops what `inv` names from the mount `fs` and the kernel's caches.
pub(crate) fn apply_invalidation(fs: &ObjFs, inv: &ops::Invalidation) {
    if !inv.keys.is_empty() {
        fs.invalidate_keys(&inv.keys);
    }
    for p in &inv.prefixes {
        fs.invalidate_prefix(p);
    }
    for s in &inv.snapshots {
        fs.invalidate_snapshot(s);
    }
}

/// The progress lines of a job, sent to the client at most ten a second (and always the
/// last of a run); [`ProgressLines::send`] is false once the client went away, which stops
/// the job.
pub(crate) struct ProgressLines {
    writer: UnixStream,
    last: Option<std::time::Instant>,
}

impl ProgressLines {
    pub(crate) fn new(writer: UnixStream) -> ProgressLines {
        ProgressLines { writer, last: None }
    }

    pub(crate) fn send(&mut self, p: &ops::JobProgress) -> bool {
        let recent = self
            .last
            .is_some_and(|t| t.elapsed() < Duration::from_millis(100));
        if recent && p.run.items_done < p.run.items_total {
            return true;
        }
        self.last = Some(std::time::Instant::now());
        send(&mut self.writer, &Reply::Progress(p.clone())).is_ok()
    }
}

/// `cat`: the answer line (which version, its size), then its bytes raw.
pub(crate) fn serve_cat(
    w: &mut UnixStream,
    store: &dyn ObjectStore,
    spec: &CatSpec,
) -> std::io::Result<()> {
    let info = match history::resolve(store, spec) {
        Ok(i) => i,
        Err(e) => return send(w, &Reply::Error(format!("{e:#}"))),
    };
    send(w, &Reply::Done(history::cat_header(&info)))?;
    if let Err(e) = history::write_version(store, &info, w) {
        // The client sees the bytes end early and says so.
        warn!(key = %info.key, "cat: {e:#}");
    }
    Ok(())
}

/// The `--at` mounts served here, as status shows them.
fn served_at_mounts(shared: &Shared) -> Value {
    let list: Vec<Value> = match shared.at_mounts.lock() {
        Ok(m) => m
            .iter()
            .filter(|a| !a.handle.is_finished())
            .map(|a| {
                json!({
                    "mountpoint": a.handle.mountpoint().display().to_string(),
                    "at_ns": a.at_ns,
                })
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    Value::Array(list)
}

/// Drops the `--at` mounts that were unmounted from outside (`objfs umount`).
fn reap_at_mounts(shared: &Shared) {
    let done: Vec<AtMount> = match shared.at_mounts.lock() {
        Ok(mut m) => {
            let (done, live) = std::mem::take(&mut *m)
                .into_iter()
                .partition(|a: &AtMount| a.handle.is_finished());
            *m = live;
            done
        }
        Err(_) => return,
    };
    for AtMount { handle: h, .. } in done {
        info!(mountpoint = %h.mountpoint().display(), "a mount --at served here was unmounted");
        if let Err(e) = h.join() {
            warn!("mount --at ended: {e}");
        }
    }
}

/// When the store at `path` was created (its marker says), if it can be read.
pub fn store_created(path: &Path) -> Option<std::time::SystemTime> {
    objfs_store::local::config::Marker::read(path)
        .ok()
        .map(|m| from_ns(m.created))
}

/// `mount --at` of the store this process has mounted: a read-only view of the moment
/// `at_ns` at `mountpoint`, served here until it is unmounted or the live mount ends.
fn mount_at(
    shared: &Shared,
    store: Arc<LocalStore>,
    mountpoint: &Path,
    at_ns: u64,
    options: &[String],
) -> Result<Value> {
    if shared.stopping.load(Ordering::SeqCst) {
        anyhow::bail!("the store is being unmounted");
    }
    let mut s = MountSettings::default();
    for list in options {
        s.apply_option_list(list)?;
    }
    let at = from_ns(at_ns);
    let mut cfg = s.fs.to_fs_config(&format!(
        "objfs:{}@{}",
        shared.record.store,
        format_rfc3339(at)
    ));
    cfg.at = Some(at);
    cfg.read_only = true;
    cfg.store_created = store_created(store.path());
    let dyn_store: Arc<dyn ObjectStore> = store;
    let h = objfs_fs::mount(dyn_store, mountpoint, cfg)
        .with_context(|| format!("cannot mount {}", mountpoint.display()))?;
    info!(mountpoint = %mountpoint.display(), at = %format_rfc3339(at), "serving a mount --at");
    let v = json!({
        "mountpoint": mountpoint.display().to_string(),
        "at_ns": at_ns,
        "at": format_rfc3339(at),
        "pid": std::process::id(),
    });
    match shared.at_mounts.lock() {
        Ok(mut m) => m.push(AtMount { handle: h, at_ns }),
        Err(_) => anyhow::bail!("the server's state is poisoned"),
    }
    Ok(v)
}
/// The keys a command run here (a restore) changed in the store, which the kernel did not see:
/// the mount must drop what it and the kernel cache of them (names known absent, entries,
/// attributes, pages), or it would show the old state until its TTLs expire. Calls the
/// invalidator the mount installed ([`ControlServer::set_invalidator`]); the lead wires the
/// filesystem's per-key kernel invalidation (`ObjFs::invalidate_keys`, branch pastfs) into it
/// at merge.
fn keys_changed(shared: &Shared, keys: &[String]) {
    if keys.is_empty() {
        return;
    }
    let f = shared.invalidator.lock().ok().and_then(|f| f.clone());
    if let Some(f) = f {
        f(keys);
    }
}
