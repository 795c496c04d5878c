//! A TCP proxy in front of an S3 test server, on a free port of 127.0.0.1: it counts the
//! requests that go through (HEAD, object GET, listing), records each one ([`Request`]: its
//! S3 operation, body size and copied range, from the request's head and framing), and, in
//! what the server sends back, alters one byte of every occurrence of a marker ([`NEEDLE`]
//! becomes [`ALTERED`]), as a bad disk, memory or link would. Requests go through unchanged,
//! so what is stored is right. Its threads live as long as the test process.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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
    /// Every request, in the order their heads went through.
    requests: Mutex<Vec<Request>>,
}

/// One request that went through, as far as the tests need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The path (path-style: `/BUCKET/KEY`), without the query.
    pub path: String,
    /// The query string (after `?`), as sent.
    pub query: String,
    /// Whether it names a copy source (`x-amz-copy-source`).
    pub copy_source: bool,
    /// The bytes of `x-amz-copy-source-range` (`bytes=A-B`), when given.
    pub copy_range: Option<u64>,
    /// The bytes of its body (decoded: an `aws-chunked` body counts its payload).
    pub body: u64,
}

impl Request {
    fn has_param(&self, name: &str) -> bool {
        self.query
            .split('&')
            .any(|p| p.split('=').next() == Some(name))
    }

    /// The S3 operation of a request that writes (the ones the tests count), else `"other"`.
    pub fn operation(&self) -> &'static str {
        let part = self.has_param("partNumber") && self.has_param("uploadId");
        match (self.method.as_str(), part, self.copy_source) {
            ("PUT", true, true) => "UploadPartCopy",
            ("PUT", true, false) => "UploadPart",
            ("PUT", false, true) => "CopyObject",
            ("PUT", false, false) if is_object(&self.path) => "PutObject",
            ("POST", _, _) if self.has_param("uploads") => "CreateMultipartUpload",
            ("POST", _, _) if self.has_param("uploadId") => "CompleteMultipartUpload",
            ("DELETE", _, _) if self.has_param("uploadId") => "AbortMultipartUpload",
            ("DELETE", _, _) if is_object(&self.path) => "DeleteObject",
            _ => "other",
        }
    }
}

/// Whether a path-style path names an object (`/BUCKET/KEY`), not a bucket.
fn is_object(path: &str) -> bool {
    path.trim_start_matches('/')
        .split_once('/')
        .is_some_and(|(_, k)| !k.is_empty())
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

    /// Every request so far, in order (`requests()[n..]`: those after the first `n`).
    pub fn requests(&self) -> Vec<Request> {
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Counts one request line (`METHOD PATH HTTP/1.1`).
    fn request_line(&self, line: &str) {
        let mut it = line.split(' ');
        let (Some(method), Some(target)) = (it.next(), it.next()) else {
            return;
        };
        let path = target.split('?').next().unwrap_or("");
        // Path-style: /BUCKET or /BUCKET/ is the bucket, /BUCKET/KEY an object.
        let object = is_object(path);
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

/// Where a parse of a request stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// In a request's head (request line and headers).
    Head,
    /// In a body: this many bytes to go.
    Body(u64),
    /// In the size line of a chunk of a chunked body.
    ChunkSize,
    /// In a chunk's data and the CRLF after it: this many bytes to go.
    ChunkData(u64),
    /// In the trailers after the last chunk.
    Trailers,
    /// Lost (a head too long to be one): the rest is passed on uncounted.
    Lost,
}

/// The requests of one connection, from the bytes the client sends: heads are parsed and
/// recorded, bodies skipped by their framing (`Content-Length` or chunked), so that body bytes
/// are never taken for a request.
struct RequestParser {
    state: Framing,
    /// The head, or the chunk line, read so far.
    buf: Vec<u8>,
    /// The request whose chunked body is being read (its index in [`Counts::requests`]).
    current: Option<usize>,
}

/// The longest head (or chunk line) the parser reads.
const MAX_HEAD: usize = 64 << 10;

impl RequestParser {
    fn new() -> RequestParser {
        RequestParser {
            state: Framing::Head,
            buf: Vec::new(),
            current: None,
        }
    }

    /// Reads the next bytes the client sent.
    fn feed(&mut self, mut data: &[u8], counts: &Counts) {
        while !data.is_empty() {
            match self.state {
                Framing::Lost => return,
                Framing::Body(n) | Framing::ChunkData(n) => {
                    let take = n.min(data.len() as u64);
                    data = &data[take as usize..];
                    let left = n - take;
                    self.state = match (self.state, left) {
                        (Framing::Body(_), 0) => Framing::Head,
                        (Framing::Body(_), _) => Framing::Body(left),
                        (_, 0) => Framing::ChunkSize,
                        _ => Framing::ChunkData(left),
                    };
                }
                Framing::Head | Framing::ChunkSize | Framing::Trailers => {
                    let b = data[0];
                    data = &data[1..];
                    self.buf.push(b);
                    if self.buf.len() > MAX_HEAD {
                        self.state = Framing::Lost;
                    } else if b == b'\n' {
                        self.line_end(counts);
                    }
                }
            }
        }
    }

    /// A line of a head, a chunk size line or a trailer line has ended.
    fn line_end(&mut self, counts: &Counts) {
        match self.state {
            Framing::Head => {
                let head = String::from_utf8_lossy(&self.buf).into_owned();
                if head.trim().is_empty() {
                    // Blank lines between requests.
                    self.buf.clear();
                } else if head.ends_with("\r\n\r\n") || head.ends_with("\n\n") {
                    self.buf.clear();
                    self.head(&head, counts);
                }
            }
            Framing::ChunkSize => {
                let line = String::from_utf8_lossy(&self.buf).into_owned();
                self.buf.clear();
                let hex = line.split(';').next().unwrap_or("").trim();
                match u64::from_str_radix(hex, 16) {
                    Ok(0) => self.state = Framing::Trailers,
                    Ok(n) => {
                        if let Some(i) = self.current {
                            let mut all = counts.requests.lock().unwrap_or_else(|p| p.into_inner());
                            if let Some(r) = all.get_mut(i) {
                                r.body += n;
                            }
                        }
                        self.state = Framing::ChunkData(n + 2);
                    }
                    Err(_) => self.state = Framing::Lost,
                }
            }
            Framing::Trailers => {
                let blank = self.buf.iter().all(|b| b.is_ascii_whitespace());
                self.buf.clear();
                if blank {
                    self.state = Framing::Head;
                    self.current = None;
                }
            }
            _ => {}
        }
    }

    /// Records a complete head and sets the framing of its body.
    fn head(&mut self, head: &str, counts: &Counts) {
        let mut lines = head.lines();
        let first = lines.next().unwrap_or("").trim_end_matches('\r');
        counts.request_line(first);
        let mut words = first.split(' ');
        let method = words.next().unwrap_or("").to_string();
        let target = words.next().unwrap_or("");
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let mut header = std::collections::HashMap::new();
        for l in lines {
            if let Some((name, value)) = l.split_once(':') {
                header.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
            }
        }
        let number = |name: &str| header.get(name).and_then(|v| v.parse::<u64>().ok());
        let length = number("content-length").unwrap_or(0);
        let chunked = header
            .get("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let copy_range = header
            .get("x-amz-copy-source-range")
            .and_then(|v| v.strip_prefix("bytes="))
            .and_then(|v| v.split_once('-'))
            .and_then(|(a, b)| Some(b.parse::<u64>().ok()? + 1 - a.parse::<u64>().ok()?));
        let request = Request {
            method,
            path: path.to_string(),
            query: query.to_string(),
            copy_source: header.contains_key("x-amz-copy-source"),
            copy_range,
            body: if chunked {
                0
            } else {
                number("x-amz-decoded-content-length").unwrap_or(length)
            },
        };
        let mut all = counts.requests.lock().unwrap_or_else(|p| p.into_inner());
        all.push(request);
        self.state = if chunked {
            self.current = Some(all.len() - 1);
            Framing::ChunkSize
        } else if length > 0 {
            Framing::Body(length)
        } else {
            Framing::Head
        };
    }
}

/// Client to server: everything as it is, recording the requests ([`RequestParser`]).
fn pump_counting(mut from: TcpStream, mut to: TcpStream, counts: Arc<Counts>) {
    let mut buf = vec![0u8; 1 << 16];
    let mut parser = RequestParser::new();
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        parser.feed(&buf[..n], &counts);
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

    #[test]
    fn requests_are_parsed_with_their_bodies_skipped() {
        let c = Counts::default();
        let mut p = RequestParser::new();
        let mut stream: Vec<u8> = Vec::new();
        stream.extend_from_slice(
            b"PUT /b/k?partNumber=2&uploadId=u HTTP/1.1\r\nHost: h\r\nContent-Length: 30\r\n\r\n",
        );
        // A body that holds what looks like a request line.
        stream.extend_from_slice(b"x\nGET /b/nope HTTP/1.1\r\n\r\nabcd");
        stream.extend_from_slice(
            b"PUT /b/k?uploadId=u&partNumber=3 HTTP/1.1\r\nx-amz-copy-source: b/s\r\n\
              X-Amz-Copy-Source-Range: bytes=8-15\r\n\r\n",
        );
        stream.extend_from_slice(b"PUT /b/c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        stream.extend_from_slice(b"5;ext\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n");
        stream.extend_from_slice(b"PUT /b/d HTTP/1.1\r\nx-amz-copy-source: b/c\r\n\r\n");
        stream.extend_from_slice(b"POST /b/k?uploads HTTP/1.1\r\n\r\n");
        // Fed at once, and a byte at a time: framing must not depend on how reads fall.
        let whole = Counts::default();
        RequestParser::new().feed(&stream, &whole);
        for b in &stream {
            p.feed(std::slice::from_ref(b), &c);
        }
        let r = c.requests();
        assert_eq!(r, whole.requests());
        let ops: Vec<&str> = r.iter().map(Request::operation).collect();
        assert_eq!(
            ops,
            [
                "UploadPart",
                "UploadPartCopy",
                "PutObject",
                "CopyObject",
                "CreateMultipartUpload"
            ]
        );
        assert_eq!(r[0].body, 30);
        assert_eq!(r[1].copy_range, Some(8));
        assert_eq!(r[2].body, 8);
        assert_eq!(
            c.snapshot(),
            (0, 0, 0, 5),
            "the GET in the body is not a request"
        );
    }
}
