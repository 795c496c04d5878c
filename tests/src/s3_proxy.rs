//! A TCP proxy in front of an S3 test server, on a free port of 127.0.0.1: it counts the
//! requests that go through (HEAD, object GET, listing) and, in what the server sends back,
//! alters one byte of every occurrence of a marker ([`NEEDLE`] becomes [`ALTERED`]), as a bad
//! disk, memory or link would. Requests go through unchanged, so what is stored is right.
//! Its threads live as long as the test process.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The marker the proxy alters in answers (one byte: the last).
pub const NEEDLE: &[u8] = b"objfs:corrupt:me";
pub const ALTERED: &[u8] = b"objfs:corrupt:mE";

/// Requests seen, by kind.
#[derive(Debug, Default)]
pub struct Counts {
    pub heads: AtomicU64,
    /// GETs of an object.
    pub gets: AtomicU64,
    /// GETs of a bucket (listings and the like).
    pub lists: AtomicU64,
    /// Every other request.
    pub others: AtomicU64,
}

/// (heads, gets, lists, others) at one moment.
pub type Snapshot = (u64, u64, u64, u64);

impl Counts {
    pub fn snapshot(&self) -> Snapshot {
        (
            self.heads.load(Ordering::SeqCst),
            self.gets.load(Ordering::SeqCst),
            self.lists.load(Ordering::SeqCst),
            self.others.load(Ordering::SeqCst),
        )
    }

    /// Counts one request line (`METHOD PATH HTTP/1.1`).
    fn request_line(&self, line: &str) {
        let mut it = line.split(' ');
        let (Some(method), Some(target)) = (it.next(), it.next()) else {
            return;
        };
        let path = target.split('?').next().unwrap_or("");
        // Path-style: /BUCKET or /BUCKET/ is the bucket, /BUCKET/KEY an object.
        let object = path
            .trim_start_matches('/')
            .split_once('/')
            .is_some_and(|(_, k)| !k.is_empty());
        let slot = match (method, object) {
            ("HEAD", true) => &self.heads,
            ("GET", true) => &self.gets,
            ("GET", false) => &self.lists,
            _ => &self.others,
        };
        slot.fetch_add(1, Ordering::SeqCst);
    }
}

/// Replaces every `NEEDLE` in `buf` by `ALTERED`.
pub fn alter(buf: &mut [u8]) {
    let mut i = 0;
    while i + NEEDLE.len() <= buf.len() {
        if &buf[i..i + NEEDLE.len()] == NEEDLE {
            buf[i..i + NEEDLE.len()].copy_from_slice(ALTERED);
            i += NEEDLE.len();
        } else {
            i += 1;
        }
    }
}

/// Server to client: everything, with the marker altered. A marker may straddle two reads,
/// so the last bytes wait for the next read (or for a pause of the server).
fn pump_altering(mut from: TcpStream, mut to: TcpStream) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(20)));
    let keep = NEEDLE.len() - 1;
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                pending.extend_from_slice(&buf[..n]);
                alter(&mut pending);
                if pending.len() > keep {
                    let out: Vec<u8> = pending.drain(..pending.len() - keep).collect();
                    if to.write_all(&out).is_err() {
                        return;
                    }
                }
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                if !pending.is_empty() && to.write_all(&pending).is_err() {
                    return;
                }
                pending.clear();
            }
            Err(_) => break,
        }
    }
    let _ = to.write_all(&pending);
    let _ = to.shutdown(Shutdown::Write);
}

/// Client to server: everything as it is, counting the request lines (a line that starts
/// with an HTTP method and ends in `HTTP/1.x`; the mounts under test send no bodies that
/// hold such lines: they only read).
fn pump_counting(mut from: TcpStream, mut to: TcpStream, counts: Arc<Counts>) {
    let mut buf = vec![0u8; 1 << 16];
    let mut line: Vec<u8> = Vec::new();
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for &b in &buf[..n] {
            if b == b'\n' {
                let l = String::from_utf8_lossy(&line);
                let l = l.trim_end_matches('\r');
                if l.ends_with("HTTP/1.1") || l.ends_with("HTTP/1.0") {
                    counts.request_line(l);
                }
                line.clear();
            } else if line.len() < 4096 {
                line.push(b);
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// A proxy to `endpoint` (`http://HOST:PORT`): its endpoint and its counts.
pub fn start(endpoint: &str) -> (String, Arc<Counts>) {
    let upstream = endpoint
        .strip_prefix("http://")
        .expect("an http:// endpoint")
        .trim_end_matches('/')
        .to_string();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
    let addr = listener.local_addr().expect("proxy address");
    let counts = Arc::new(Counts::default());
    let c = counts.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(&upstream) else {
                continue;
            };
            let (Ok(c_read), Ok(s_write)) = (client.try_clone(), server.try_clone()) else {
                continue;
            };
            let c = c.clone();
            std::thread::spawn(move || pump_counting(c_read, s_write, c));
            std::thread::spawn(move || pump_altering(server, client));
        }
    });
    (format!("http://{addr}"), counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_are_told_apart() {
        let c = Counts::default();
        c.request_line("HEAD /b/d/f1 HTTP/1.1");
        c.request_line("GET /b/d/f1?versionId=x HTTP/1.1");
        c.request_line("GET /b?list-type=2&prefix=d%2F HTTP/1.1");
        c.request_line("GET /b/?list-type=2 HTTP/1.1");
        c.request_line("PUT /b/d/f1 HTTP/1.1");
        assert_eq!(c.snapshot(), (1, 1, 2, 1));
        let mut b = b"xx objfs:corrupt:me yy".to_vec();
        alter(&mut b);
        assert_eq!(&b, b"xx objfs:corrupt:mE yy");
    }
}
