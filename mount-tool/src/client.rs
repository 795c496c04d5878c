//! The command's side of the control channel: send one request to a mount process, relay its
//! progress lines, return its result (protocol in ops.rs); for `cat`, copy the bytes that
//! follow the result ([`call_raw`]); for a restore, hand out the report's lines that come
//! before it ([`call_lines`]).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

use crate::ops::{Envelope, JobProgress, Reply, Request, PROTOCOL_VERSION};
use crate::runtime::Mounted;

/// Connects to the mount process of `m` and sends `req`.
fn send(m: &Mounted, req: &Request) -> Result<BufReader<UnixStream>> {
    let pid = m.record.pid;
    let mut conn = UnixStream::connect(&m.socket).with_context(|| {
        format!(
            "cannot reach the mount process (pid {pid}) at {}",
            m.socket.display()
        )
    })?;
    let env = Envelope {
        version: PROTOCOL_VERSION,
        request: req.clone(),
    };
    let mut line = serde_json::to_string(&env).context("cannot encode the request")?;
    line.push('\n');
    conn.write_all(line.as_bytes())
        .with_context(|| format!("cannot send the request to pid {pid}"))?;
    Ok(BufReader::new(conn))
}

/// Reads reply lines up to the result, relaying progress.
fn answer(
    m: &Mounted,
    reader: &mut BufReader<UnixStream>,
    on_progress: &mut dyn FnMut(&JobProgress),
    on_lines: &mut dyn FnMut(&[Value]),
) -> Result<Value> {
    let pid = m.record.pid;
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader
            .read_line(&mut line)
            .with_context(|| format!("lost the connection to pid {pid}"))?;
        if n == 0 {
            bail!("the mount process (pid {pid}) closed the connection without an answer (see its log)");
        }
        if line.trim().is_empty() {
            continue;
        }
        let reply: Reply = serde_json::from_str(line.trim())
            .with_context(|| format!("the mount process (pid {pid}) sent an unreadable line"))?;
        match reply {
            Reply::Progress(p) => on_progress(&p),
            Reply::Lines(l) => on_lines(&l),
            Reply::Done(v) => return Ok(v),
            Reply::Error(e) => return Err(anyhow!(e)),
        }
    }
}

/// Asks the mount process of `m` to execute `req`.
pub fn call(
    m: &Mounted,
    req: &Request,
    on_progress: &mut dyn FnMut(&JobProgress),
) -> Result<Value> {
    call_lines(m, req, on_progress, &mut |_| {})
}

/// [`call`], handing the lines of the job's report (sent before the result) to `on_lines` as
/// they arrive.
pub fn call_lines(
    m: &Mounted,
    req: &Request,
    on_progress: &mut dyn FnMut(&JobProgress),
    on_lines: &mut dyn FnMut(&[Value]),
) -> Result<Value> {
    let mut reader = send(m, req)?;
    answer(m, &mut reader, on_progress, on_lines)
}

/// Asks the mount process of `m` for a request answered by a result with a `size`, followed
/// by that many bytes (`cat`), which are copied to `out`; returns the result.
pub fn call_raw(m: &Mounted, req: &Request, out: &mut dyn Write) -> Result<Value> {
    let mut reader = send(m, req)?;
    let v = answer(m, &mut reader, &mut |_| {}, &mut |_| {})?;
    let size = v["size"]
        .as_u64()
        .context("the mount process sent no size")?;
    let copied =
        std::io::copy(&mut (&mut reader).take(size), out).context("cannot copy the bytes")?;
    if copied != size {
        bail!(
            "the mount process (pid {}) sent {copied} of {size} bytes (see its log)",
            m.record.pid
        );
    }
    out.flush()?;
    Ok(v)
}
