//! The mount process's side of the control channel: it owns the store (sled has one owner),
//! so every command about a mounted store is executed here, on a thread per connection, by
//! the same [`ops::execute`] a command runs on a store that is not mounted.
//!
//! Only the mounting user and root may connect: the socket is 0600 in a 0700 directory
//! (runtime.rs), and each connection's peer credentials are checked too. A connection sends
//! one request line and gets progress lines, then one result line (ops.rs). When the mount
//! ends, [`ControlServer::stop`] stops accepting, removes the socket and record, lets running
//! jobs stop at their next unit, and drops the server's references to the store.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use objfs_store::local::LocalStore;
use tracing::{info, warn};

use crate::ops::{self, Envelope, Reply, PROTOCOL_VERSION};
use crate::runtime::{Record, Registration};

/// Told which keys a command changed in the store behind the kernel's back.
pub type Invalidator = Arc<dyn Fn(&[String]) + Send + Sync>;

/// What every connection needs.
struct Shared {
    store: Mutex<Option<Arc<LocalStore>>>,
    record: Record,
    stopping: AtomicBool,
    invalidator: Mutex<Option<Invalidator>>,
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

    /// Installs what [`keys_changed`] calls: the mounted filesystem's invalidation of the keys
    /// a command changed (the mount installs it once the filesystem is up).
    pub fn set_invalidator(&self, f: Invalidator) {
        if let Ok(mut slot) = self.shared.invalidator.lock() {
            *slot = Some(f);
        }
    }

    /// Stops serving: no new connections, the socket and record removed, running jobs asked
    /// to stop, and the server's reference to the store dropped.
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
fn peer_allowed(conn: &UnixStream) -> bool {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    match getsockopt(conn, PeerCredentials) {
        Ok(c) => c.uid() == 0 || c.uid() == nix::unistd::geteuid().as_raw(),
        Err(_) => false,
    }
}

fn send(w: &mut UnixStream, reply: &Reply) -> std::io::Result<()> {
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
    let mut progress_writer = writer.try_clone()?;
    let mut last: Option<std::time::Instant> = None;
    let mut on_progress = |p: &ops::JobProgress| {
        if shared.stopping.load(Ordering::SeqCst) {
            return false;
        }
        // At most ten lines a second; a client that went away stops the job.
        let recent = last.is_some_and(|t| t.elapsed() < Duration::from_millis(100));
        if recent && p.run.items_done < p.run.items_total {
            return true;
        }
        last = Some(std::time::Instant::now());
        send(&mut progress_writer, &Reply::Progress(p.clone())).is_ok()
    };
    let result = match &env.request {
        ops::Request::Restore(r) => {
            crate::restore::execute(&store, r, &mut on_progress, &mut |keys| {
                keys_changed(shared, keys)
            })
        }
        req => ops::execute(&store, Some(&shared.record), req, &mut on_progress),
    };
    drop(store);
    match result {
        Ok(v) => send(&mut writer, &Reply::Done(v)),
        Err(e) => send(&mut writer, &Reply::Error(format!("{e:#}"))),
    }
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
