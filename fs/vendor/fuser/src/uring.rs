//! objfs patch (PATCHES.md): FUSE over io_uring (Linux 6.14+, `CONFIG_FUSE_IO_URING`, and
//! `/sys/module/fuse/parameters/enable_uring` set by the administrator).
//!
//! Over `/dev/fuse`, a request's caller sleeps while a reader thread, woken from its own sleep,
//! reads the request and writes the reply; on a machine whose idle CPUs halt, both wake-ups
//! cross CPUs. Over io_uring the kernel keeps one queue per CPU: a request goes to the queue
//! of the CPU its caller runs on, and that queue's thread, pinned to the same CPU, takes it
//! with a completion and answers it with the next submission (`COMMIT_AND_FETCH`), which also
//! waits for the queue's next request. The caller and the thread that serves it meet on one
//! CPU, with one `io_uring_enter` per request instead of a `read` and a `writev`.
//!
//! Shapes (the kernel's `include/uapi/linux/fuse.h`, `struct fuse_uring_req_header` and
//! `struct fuse_uring_cmd_req`): each queue entry registers two buffers, a 288-byte header
//! (`in_out`: the request's `fuse_in_header`, then the reply's `fuse_out_header`; `op_in`:
//! the request's first argument, the per-operation struct; `ring_ent_in_out`: flags,
//! `commit_id`, `payload_sz`) and a payload (every other argument of the request, then the
//! whole reply after its header). This module turns a request back into the contiguous
//! `/dev/fuse` layout that fuser's parser reads (the first argument's size is `len - 40 -
//! payload_sz`), and a reply's iovecs into the header and payload.
//!
//! Only requests that expect a reply come this way; FORGET and INTERRUPT still come through
//! `/dev/fuse`, whose reader threads keep running. The kernel uses the rings only once every
//! CPU's queue has registered its entries; until then (or if registering fails) everything
//! goes through `/dev/fuse` as before.

use std::alloc::Layout;
use std::alloc::alloc_zeroed;
use std::alloc::dealloc;
use std::fmt;
use std::io;
use std::io::IoSlice;
use std::os::fd::AsFd;
use std::os::fd::AsRawFd;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;

use io_uring::IoUring;
use io_uring::cqueue;
use io_uring::opcode;
use io_uring::squeue;
use io_uring::types;
use log::debug;
use log::error;
use log::warn;
use parking_lot::Mutex;

use crate::Filesystem;
use crate::ReplyEmpty;
use crate::channel::Channel;
use crate::channel::ChannelSender;
use crate::ll::Operation;
use crate::read_buf::FuseReadBuf;
use crate::request::ReplyTo;
use crate::request::RequestWithSender;
use crate::session::SessionEventLoop;

/// `enum fuse_uring_cmd`.
const CMD_REGISTER: u32 = 1;
const CMD_COMMIT_AND_FETCH: u32 = 2;
/// Offsets in `struct fuse_uring_req_header`.
const IN_OUT: usize = 0;
const OP_IN: usize = 128;
const OP_IN_MAX: usize = 128;
const ENT_IN_OUT: usize = 256;
const COMMIT_ID_AT: usize = ENT_IN_OUT + 8;
const PAYLOAD_SZ_AT: usize = ENT_IN_OUT + 16;
const HEADER_SIZE: usize = 288;
/// The header lives at the start of a page, the payload at the next page.
const PAYLOAD_AT: usize = 4096;
const IN_HEADER: usize = 40;
const OUT_HEADER: usize = 16;
// The layout of `struct fuse_uring_req_header` (in_out[128], op_in[128], then
// `fuse_uring_ent_in_out`: flags u64, commit_id u64, payload_sz u32, padding u32, reserved u64)
// and of an `Entry128`, checked when this compiles. (fuser's own tests are not built here:
// the crate is vendored without its development dependencies; tests/tests/mount_uring.rs
// tests this module on the kernel.)
const _: () = {
    assert!(OP_IN == IN_OUT + 128);
    assert!(ENT_IN_OUT == OP_IN + OP_IN_MAX);
    assert!(COMMIT_ID_AT == ENT_IN_OUT + 8 && PAYLOAD_SZ_AT == COMMIT_ID_AT + 8);
    assert!(HEADER_SIZE == ENT_IN_OUT + 32 && HEADER_SIZE <= PAYLOAD_AT);
    assert!(std::mem::size_of::<squeue::Entry128>() == 128);
};

/// `user_data` of the no-op that tells a queue's thread to stop.
const STOP: u64 = u64::MAX;
/// `IORING_ENTER_GETEVENTS`.
const ENTER_GETEVENTS: u32 = 1;
/// `IORING_ENTER_NO_IOWAIT` (Linux 6.15): the wait is not I/O wait. A queue's thread waits
/// for requests all the time; counted as I/O wait, an idle mount would show as a CPU 100%
/// in iowait and as full I/O pressure (PSI).
const ENTER_NO_IOWAIT: u32 = 1 << 7;

/// What the handshake agreed on: how many entries per queue and how large a payload.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UringSetup {
    pub(crate) depth: usize,
    pub(crate) payload: usize,
}

impl UringSetup {
    /// The payload the kernel requires of each entry (`fuse_uring_create`: the largest of
    /// 8 KiB, `max_write` and `max_pages` pages), rounded up to a page.
    pub(crate) fn new(depth: usize, max_write: u32, max_pages: u16) -> Self {
        let page = page_size::get();
        let need = (max_write as usize)
            .max(max_pages as usize * page)
            .max(8192);
        Self {
            depth: depth.clamp(1, 1024),
            payload: need.div_ceil(page) * page,
        }
    }
}

/// Requests whose payload is at least this large are dispatched from the entry itself
/// (`handle`), not from a copy: a 1 MiB WRITE is not copied once more. Smaller ones are
/// copied, which costs less than holding their replies back.
const IN_PLACE_PAYLOAD: usize = 4096;

/// One entry's memory: header page then payload, zeroed, page aligned.
struct EntryMem {
    ptr: *mut u8,
    layout: Layout,
    /// The two iovecs registered with the entry (read by the kernel at registration).
    iov: Box<[libc::iovec; 2]>,
    /// A request is being dispatched from this entry's memory: its bytes are read from the
    /// entry, so its reply (written into the same memory, and whose commit hands the entry
    /// back to the kernel) waits in `held` until the dispatch returns. Cleared under `held`.
    dispatching: AtomicBool,
    /// A reply made during such a dispatch: the header then the payload.
    held: Mutex<Option<Vec<u8>>>,
}

impl EntryMem {
    fn new(payload: usize) -> io::Result<Self> {
        let layout = Layout::from_size_align(PAYLOAD_AT + payload, 4096)
            .map_err(|e| io::Error::other(e.to_string()))?;
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        if ptr.is_null() {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        let iov = Box::new([
            libc::iovec {
                iov_base: ptr.cast(),
                iov_len: HEADER_SIZE,
            },
            libc::iovec {
                // SAFETY: within the allocation.
                iov_base: unsafe { ptr.add(PAYLOAD_AT) }.cast(),
                iov_len: payload,
            },
        ]);
        Ok(Self {
            ptr,
            layout,
            iov,
            dispatching: AtomicBool::new(false),
            held: Mutex::new(None),
        })
    }

    fn read_u32(&self, at: usize) -> u32 {
        let mut b = [0u8; 4];
        // SAFETY: `at + 4` is within the header page.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.add(at), b.as_mut_ptr(), 4) };
        u32::from_ne_bytes(b)
    }

    fn read_u64(&self, at: usize) -> u64 {
        let mut b = [0u8; 8];
        // SAFETY: `at + 8` is within the header page.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.add(at), b.as_mut_ptr(), 8) };
        u64::from_ne_bytes(b)
    }
}

impl Drop for EntryMem {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.ptr, self.layout) };
    }
}

/// One CPU's queue: its ring, its entries and the lock that serialises submissions (replies
/// may be sent from any thread).
pub(crate) struct Queue {
    qid: u16,
    fd: RawFd,
    ring: IoUring<squeue::Entry128, cqueue::Entry>,
    submit: Mutex<()>,
    entries: Vec<EntryMem>,
    payload: usize,
    /// Keeps the device open while the queue lives; also answers passthrough requests.
    device: ChannelSender,
}

// SAFETY: the entries' memory is only written by the one party that owns the entry at a
// time (the kernel until a completion, then the request's reply until its commit), and
// the submission queue is only touched under `submit`.
unsafe impl Send for Queue {}
// SAFETY: as above.
unsafe impl Sync for Queue {}

impl fmt::Debug for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("qid", &self.qid)
            .field("entries", &self.entries.len())
            .finish()
    }
}

impl Queue {
    fn new(qid: u16, ch: &Channel, setup: UringSetup) -> io::Result<Self> {
        let slots = setup.depth as u32 + 1;
        let ring = IoUring::<squeue::Entry128, cqueue::Entry>::builder()
            .setup_cqsize(slots * 2)
            .build(slots)?;
        let entries = (0..setup.depth)
            .map(|_| EntryMem::new(setup.payload))
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Self {
            qid,
            fd: ch.as_fd().as_raw_fd(),
            ring,
            submit: Mutex::new(()),
            entries,
            payload: setup.payload,
            device: ch.sender(),
        })
    }

    fn command(&self, idx: usize, cmd_op: u32, commit_id: u64) -> squeue::Entry128 {
        // `struct fuse_uring_cmd_req`: flags, commit_id, qid.
        let mut cmd = [0u8; 80];
        cmd[8..16].copy_from_slice(&commit_id.to_ne_bytes());
        cmd[16..18].copy_from_slice(&self.qid.to_ne_bytes());
        let mut op = opcode::UringCmd80::new(types::Fd(self.fd), cmd_op).cmd(cmd);
        let register = cmd_op == CMD_REGISTER;
        if register {
            op = op.addr(Some(self.entries[idx].iov.as_ptr() as u64));
        }
        let mut sqe = op.build().user_data(idx as u64);
        if register {
            // The number of iovecs goes in the SQE's `len` (offset 24), which the crate's
            // builder does not expose. SAFETY: `Entry128` is `repr(C)`: a 64-byte SQE then
            // 64 bytes of command.
            let raw = unsafe { &mut *(&mut sqe as *mut squeue::Entry128).cast::<[u8; 128]>() };
            raw[24..28].copy_from_slice(&2u32.to_ne_bytes());
        }
        sqe
    }

    /// Queues `sqe` and submits it, unless the caller is this queue's own thread serving
    /// its completions: its next wait submits what it queued in the same system call, so
    /// that the reply, the wake-up of its caller and the thread's sleep are one
    /// `io_uring_enter` (and the caller finds its CPU free instead of being moved away).
    fn push(&self, sqe: &squeue::Entry128) -> io::Result<()> {
        let _held = self.submit.lock();
        // SAFETY: the submission queue is only used under `submit`; the entry's buffers
        // (and iovecs) outlive the ring.
        unsafe {
            let mut sq = self.ring.submission_shared();
            sq.push(sqe)
                .map_err(|_| io::Error::other("io_uring submission queue full"))?;
        }
        if SERVING.with(|s| s.get()) == Some(self.qid) {
            return Ok(());
        }
        loop {
            match self.ring.submitter().submit() {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Submissions queued and not yet handed to the kernel.
    fn pending(&self) -> u32 {
        let _held = self.submit.lock();
        // SAFETY: the submission queue is only used under `submit`.
        unsafe { self.ring.submission_shared() }.len() as u32
    }

    /// Tells the queue's thread to stop (the session is over).
    pub(crate) fn stop(&self) {
        let nop = squeue::Entry128::from(opcode::Nop::new().build().user_data(STOP));
        if let Err(e) = self.push(&nop) {
            warn!("io_uring queue {}: cannot stop: {e}", self.qid);
        }
    }
}

thread_local! {
    /// The queue whose completions this thread is serving right now, if any.
    static SERVING: std::cell::Cell<Option<u16>> = const { std::cell::Cell::new(None) };
}

/// The reply side of a request that came through a queue entry.
#[derive(Debug, Clone)]
pub(crate) struct UringReply {
    queue: Arc<Queue>,
    idx: usize,
    commit_id: u64,
}

impl UringReply {
    /// Writes the reply (header, then payload) into the entry and commits it, which also
    /// hands the entry back to the kernel for the queue's next request. A reply to a request
    /// still being dispatched from the entry's memory is kept until the dispatch returns.
    pub(crate) fn send(&self, data: &[IoSlice<'_>]) -> io::Result<()> {
        let e = &self.queue.entries[self.idx];
        // A reply exists only once its request's dispatch has begun, so it sees the flag
        // set if it is; the lock settles a race with the dispatch's end.
        if e.dispatching.load(Ordering::Acquire) {
            let mut held = e.held.lock();
            if e.dispatching.load(Ordering::Acquire) {
                *held = Some(data.iter().flat_map(|s| s.iter().copied()).collect());
                return Ok(());
            }
        }
        self.commit(data)
    }

    /// Writes the reply into the entry and commits it (see `send`).
    fn commit(&self, data: &[IoSlice<'_>]) -> io::Result<()> {
        let q = &self.queue;
        let e = &q.entries[self.idx];
        let (header, rest) = data
            .split_first()
            .ok_or_else(|| io::Error::other("empty FUSE reply"))?;
        if header.len() != OUT_HEADER {
            return Err(io::Error::other("FUSE reply without its header"));
        }
        let total: usize = rest.iter().map(|s| s.len()).sum();
        let mut out = [0u8; OUT_HEADER];
        out.copy_from_slice(header);
        let mut payload_sz = total;
        if total > q.payload {
            error!("io_uring: reply of {total} bytes larger than the entry's payload");
            out[0..4].copy_from_slice(&(OUT_HEADER as u32).to_ne_bytes());
            out[4..8].copy_from_slice(&(-libc::EIO).to_ne_bytes());
            payload_sz = 0;
        }
        // SAFETY: the entry belongs to this request until the commit below; the writes stay
        // within its header page and payload.
        unsafe {
            std::ptr::copy_nonoverlapping(out.as_ptr(), e.ptr.add(IN_OUT), OUT_HEADER);
            if payload_sz > 0 {
                let mut at = e.ptr.add(PAYLOAD_AT);
                for s in rest {
                    std::ptr::copy_nonoverlapping(s.as_ptr(), at, s.len());
                    at = at.add(s.len());
                }
            }
            let sz = (payload_sz as u32).to_ne_bytes();
            std::ptr::copy_nonoverlapping(sz.as_ptr(), e.ptr.add(PAYLOAD_SZ_AT), 4);
        }
        q.push(&q.command(self.idx, CMD_COMMIT_AND_FETCH, self.commit_id))
    }

    pub(crate) fn device(&self) -> &ChannelSender {
        &self.queue.device
    }
}

/// The number of CPU ids a list like `/sys/devices/system/cpu/possible` covers (`0-3`,
/// `0,2-5`): its highest id plus one.
fn cpu_ids(list: &str) -> Option<usize> {
    list.trim()
        .split(',')
        .map(|r| r.rsplit('-').next()?.trim().parse::<usize>().ok())
        .collect::<Option<Vec<_>>>()?
        .into_iter()
        .max()
        .map(|max| max + 1)
}

/// The queue ids the kernel expects: one per possible CPU (`nr_cpu_ids`).
fn possible_cpus() -> usize {
    let parsed = std::fs::read_to_string("/sys/devices/system/cpu/possible")
        .ok()
        .and_then(|s| cpu_ids(&s));
    match parsed {
        Some(n) => n,
        // SAFETY: sysconf has no memory-safety preconditions.
        None => unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) }.max(1) as usize,
    }
}

/// Creates one queue per possible CPU and starts its thread; returns the queues (to stop
/// them when the session ends) and the threads.
pub(crate) fn start<FS: Filesystem>(
    ch: &Channel,
    setup: UringSetup,
    make_loop: impl Fn(String) -> SessionEventLoop<FS>,
) -> io::Result<(Vec<Arc<Queue>>, Vec<std::thread::JoinHandle<()>>)> {
    let n = possible_cpus();
    let queues = (0..n)
        .map(|qid| Queue::new(qid as u16, ch, setup).map(Arc::new))
        .collect::<io::Result<Vec<_>>>()?;
    let mut threads = Vec::with_capacity(n);
    for q in &queues {
        let name = format!("fuser-uring-{}", q.qid);
        let event_loop = make_loop(name.clone());
        let q = q.clone();
        threads.push(
            std::thread::Builder::new()
                .name(name)
                .spawn(move || serve(&q, &event_loop))?,
        );
    }
    debug!(
        "io_uring: {n} queues of {} entries, {} byte payloads",
        setup.depth, setup.payload
    );
    Ok((queues, threads))
}

/// Pins the calling thread to `cpu` (a queue serves the callers of its CPU); a CPU that is
/// offline just leaves the thread unpinned.
fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET stays within it for
    // cpu < CPU_SETSIZE, checked.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if cpu >= libc::CPU_SETSIZE as usize {
            return;
        }
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            debug!(
                "io_uring queue {cpu}: not pinned: {}",
                io::Error::last_os_error()
            );
        }
    }
}

/// A queue's thread: registers the entries, then serves each completion (a request) and
/// commits its reply, until the connection ends or the session stops it.
fn serve<FS: Filesystem>(q: &Arc<Queue>, event_loop: &SessionEventLoop<FS>) {
    pin(q.qid as usize);
    for idx in 0..q.entries.len() {
        if let Err(e) = q.push(&q.command(idx, CMD_REGISTER, 0)) {
            warn!("io_uring queue {}: cannot register: {e}", q.qid);
            return;
        }
    }
    let mut live = q.entries.len();
    let mut buf = FuseReadBuf::new();
    let buf = buf.as_mut();
    let mut done = Vec::with_capacity(q.entries.len() + 1);
    let mut no_iowait = ENTER_NO_IOWAIT;
    loop {
        // Submits what this thread's replies queued (and anything another thread queued in
        // the meantime: the kernel takes at most what is there) and waits for a completion.
        let pending = q.pending();
        // SAFETY: plain io_uring_enter on this queue's ring.
        let waited = unsafe {
            q.ring.submitter().enter::<libc::sigset_t>(
                pending,
                1,
                ENTER_GETEVENTS | no_iowait,
                None,
            )
        };
        if let Err(e) = waited {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            if e.raw_os_error() == Some(libc::EINVAL) && no_iowait != 0 {
                // A kernel before 6.15 does not know the flag (and submitted nothing).
                no_iowait = 0;
                continue;
            }
            error!("io_uring queue {}: wait failed: {e}", q.qid);
            return;
        }
        // SAFETY: only this thread reads the completion queue.
        done.extend(unsafe { q.ring.completion_shared() }.map(|c| (c.user_data(), c.result())));
        SERVING.with(|s| s.set(Some(q.qid)));
        let stop = serve_completions(q, &mut done, &mut live, buf, event_loop);
        SERVING.with(|s| s.set(None));
        if stop {
            // Replies queued but not submitted are moot: the connection is over.
            return;
        }
        if let Some(window) = event_loop.spin {
            spin_for_next(q, window);
        }
    }
}

/// Submits the replies queued so far, then keeps the CPU for up to `window` waiting for the
/// queue's next request (yielding to any other task that wants the CPU, such as the caller
/// just answered), so that the CPU does not go idle between a caller's requests.
fn spin_for_next(q: &Queue, window: std::time::Duration) {
    let pending = q.pending();
    if pending > 0 {
        // SAFETY: plain io_uring_enter on this queue's ring; a failure is seen by the wait.
        let _ = unsafe {
            q.ring
                .submitter()
                .enter::<libc::sigset_t>(pending, 0, 0, None)
        };
    }
    let start = std::time::Instant::now();
    // SAFETY: only this thread reads the completion queue.
    while unsafe { q.ring.completion_shared() }.is_empty() && start.elapsed() < window {
        // The syscall also runs the task work that posts the completion.
        // SAFETY: no preconditions.
        unsafe { libc::sched_yield() };
    }
}

/// Serves the completions in `done`; true when the queue's thread must stop.
fn serve_completions<FS: Filesystem>(
    q: &Arc<Queue>,
    done: &mut Vec<(u64, i32)>,
    live: &mut usize,
    buf: &mut [u8],
    event_loop: &SessionEventLoop<FS>,
) -> bool {
    for (user_data, res) in done.drain(..) {
        if user_data == STOP {
            return true;
        }
        let idx = user_data as usize;
        if idx >= q.entries.len() {
            continue;
        }
        if res == 0 {
            handle(q, idx, buf, event_loop);
            continue;
        }
        if res != -libc::ENOTCONN {
            warn!(
                "io_uring queue {} entry {idx}: {}",
                q.qid,
                io::Error::from_raw_os_error(-res)
            );
        }
        *live -= 1;
        if *live == 0 {
            return true;
        }
    }
    false
}

/// Rebuilds the request in `buf` as `/dev/fuse` would have delivered it and dispatches it.
fn handle<FS: Filesystem>(
    q: &Arc<Queue>,
    idx: usize,
    buf: &mut [u8],
    event_loop: &SessionEventLoop<FS>,
) {
    let e = &q.entries[idx];
    let len = e.read_u32(IN_OUT) as usize;
    let payload = e.read_u32(PAYLOAD_SZ_AT) as usize;
    let reply = UringReply {
        queue: q.clone(),
        idx,
        commit_id: e.read_u64(COMMIT_ID_AT),
    };
    let arg0 = len.checked_sub(IN_HEADER + payload);
    let Some(arg0) = arg0.filter(|a| *a <= OP_IN_MAX && payload <= q.payload && len <= buf.len())
    else {
        error!(
            "io_uring queue {}: request of {len} bytes with a {payload} byte payload",
            q.qid
        );
        answer_eio(&reply, e.read_u64(IN_OUT + 8));
        return;
    };
    if payload >= IN_PLACE_PAYLOAD {
        // The request's header and first argument are moved to just before the payload, in
        // the unused rest of the header page, and the request is parsed where it lies.
        let start = PAYLOAD_AT - IN_HEADER - arg0;
        // SAFETY: the kernel wrote the request into the entry before the completion, and the
        // entry is not handed back before the reply; `start >= HEADER_SIZE` (arg0 is at most
        // OP_IN_MAX), so the moved bytes overwrite nothing the kernel or a reply uses.
        unsafe {
            std::ptr::copy_nonoverlapping(e.ptr.add(IN_OUT), e.ptr.add(start), IN_HEADER);
            std::ptr::copy_nonoverlapping(e.ptr.add(OP_IN), e.ptr.add(start + IN_HEADER), arg0);
        }
        e.dispatching.store(true, Ordering::Release);
        {
            // SAFETY: as above; while `dispatching` is set no reply writes into the entry
            // or hands it back (`UringReply::send`), so these bytes stay as the kernel wrote
            // them until the dispatch returns, and `request` does not outlive this block.
            let request = unsafe { std::slice::from_raw_parts(e.ptr.add(start), len) };
            dispatch(&reply, request, e, event_loop);
        }
        let held = {
            let mut h = e.held.lock();
            e.dispatching.store(false, Ordering::Release);
            h.take()
        };
        if let Some(r) = held {
            let (header, rest) = r.split_at(OUT_HEADER.min(r.len()));
            if let Err(err) = reply.commit(&[IoSlice::new(header), IoSlice::new(rest)]) {
                error!("io_uring queue {}: {err}", q.qid);
            }
        }
        return;
    }
    // SAFETY: the kernel wrote the request into the entry before the completion, and the
    // entry is not handed back before the reply; the ranges were checked above.
    unsafe {
        std::ptr::copy_nonoverlapping(e.ptr.add(IN_OUT), buf.as_mut_ptr(), IN_HEADER);
        std::ptr::copy_nonoverlapping(e.ptr.add(OP_IN), buf.as_mut_ptr().add(IN_HEADER), arg0);
        std::ptr::copy_nonoverlapping(
            e.ptr.add(PAYLOAD_AT),
            buf.as_mut_ptr().add(IN_HEADER + arg0),
            payload,
        );
    }
    dispatch(&reply, &buf[..len], e, event_loop);
}

/// Parses a request in the `/dev/fuse` layout and dispatches it (DESTROY is answered here).
fn dispatch<FS: Filesystem>(
    reply: &UringReply,
    request: &[u8],
    e: &EntryMem,
    event_loop: &SessionEventLoop<FS>,
) {
    match RequestWithSender::new(ReplyTo::Uring(reply.clone()), request) {
        Some(req) => {
            if let Ok(Operation::Destroy(_)) = req.request.operation() {
                req.reply::<ReplyEmpty>().ok();
            } else {
                req.dispatch(event_loop);
            }
        }
        None => answer_eio(reply, e.read_u64(IN_OUT + 8)),
    }
}

/// Answers a request that cannot be parsed with EIO, so that neither its caller nor the
/// entry is left waiting.
fn answer_eio(reply: &UringReply, unique: u64) {
    let mut out = [0u8; OUT_HEADER];
    out[0..4].copy_from_slice(&(OUT_HEADER as u32).to_ne_bytes());
    out[4..8].copy_from_slice(&(-libc::EIO).to_ne_bytes());
    out[8..16].copy_from_slice(&unique.to_ne_bytes());
    if let Err(err) = reply.send(&[IoSlice::new(&out)]) {
        error!("io_uring queue {}: {err}", reply.queue.qid);
    }
}
