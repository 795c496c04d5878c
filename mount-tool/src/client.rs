//! The command's side of the control channel: send one request to a mount process, relay its
//! progress lines, return its result (protocol in ops.rs).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

use crate::ops::{Envelope, JobProgress, Reply, Request, PROTOCOL_VERSION};
use crate::runtime::Mounted;

/// Asks the mount process of `m` to execute `req`.
pub fn call(
    m: &Mounted,
    req: &Request,
    on_progress: &mut dyn FnMut(&JobProgress),
) -> Result<Value> {
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
    let reader = BufReader::new(conn);
    for line in reader.lines() {
        let line = line.with_context(|| format!("lost the connection to pid {pid}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let reply: Reply = serde_json::from_str(&line)
            .with_context(|| format!("the mount process (pid {pid}) sent an unreadable line"))?;
        match reply {
            Reply::Progress(p) => on_progress(&p),
            Reply::Done(v) => return Ok(v),
            Reply::Error(e) => return Err(anyhow!(e)),
        }
    }
    bail!("the mount process (pid {pid}) closed the connection without an answer (see its log)")
}
