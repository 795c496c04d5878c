//! An HTTP proxy in front of an S3 test server, on a free port of 127.0.0.1, that fails
//! requests on demand: a rule names a method and an object key and says what to answer
//! instead of the server (500 `InternalError`, 503 `SlowDown`, 403 `AccessDenied`, with the
//! S3 error body), a number of times or until cleared; everything else goes through to the
//! server unchanged. Every request is logged (method, key, what it was answered), so a test can
//! count the retries a client made.
//!
//! It exists because [`crate::s3_proxy`] is a byte pump that cannot answer a request itself,
//! and the fake endpoint of `tests/tests/s3_faults.rs` stores nothing: a mount needs a real
//! server behind the faults (its writes must land, its reads must be right), and a test needs
//! to turn the faults on and off while the mount runs (`tests/tests/s3_mount_faults.rs`).
//!
//! One request per connection: the proxy adds `connection: close` to what it forwards and to
//! what it answers, so it never has to find where an answer ends. A request body is read whole
//! (`content-length` or chunked) before the rules are asked, so an injected answer never cuts
//! an upload short. Dropping the proxy stops it: no new connection is accepted, and the
//! threads of connections in flight end with them.

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What a rule answers instead of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 500 `InternalError`.
    Internal,
    /// 503 `SlowDown`.
    SlowDown,
    /// 403 `AccessDenied`.
    AccessDenied,
}

impl Fault {
    /// HTTP status, reason and S3 error code.
    fn parts(self) -> (u16, &'static str, &'static str) {
        match self {
            Fault::Internal => (500, "Internal Server Error", "InternalError"),
            Fault::SlowDown => (503, "Service Unavailable", "SlowDown"),
            Fault::AccessDenied => (403, "Forbidden", "AccessDenied"),
        }
    }

    /// The HTTP status it answers.
    pub fn status(self) -> u16 {
        self.parts().0
    }
}

/// Which requests a rule fails.
#[derive(Debug, Clone)]
struct Rule {
    /// `GET`, `PUT`, ... (`None`: any).
    method: Option<String>,
    /// The object key, decoded (`None`: any request, bucket requests included).
    key: Option<String>,
    fault: Fault,
    /// How many more requests it fails (`None`: until cleared).
    left: Option<usize>,
}

/// One request the proxy saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    /// The object key (decoded), `None` for a request of the bucket (listings and the like).
    pub key: Option<String>,
    /// The status the proxy answered itself, `None` when the request went to the server.
    pub injected: Option<u16>,
    /// The request's `range` header, if any.
    pub range: Option<String>,
}

#[derive(Debug, Default)]
struct Shared {
    rules: Mutex<Vec<Rule>>,
    seen: Mutex<Vec<Seen>>,
    stop: AtomicBool,
}

/// A running proxy; dropping it stops it.
pub struct FaultProxy {
    /// `http://127.0.0.1:PORT`, to give a client as its endpoint.
    pub endpoint: String,
    addr: std::net::SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// A proxy to `upstream` (`http://HOST:PORT`).
    pub fn start(upstream: &str) -> FaultProxy {
        let upstream = upstream
            .strip_prefix("http://")
            .expect("an http:// endpoint")
            .trim_end_matches('/')
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fault proxy");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let accept = std::thread::Builder::new()
            .name("fault-proxy".into())
            .spawn(move || {
                for client in listener.incoming() {
                    if s.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    let (s, upstream) = (s.clone(), upstream.clone());
                    std::thread::spawn(move || {
                        let _ = serve(client, &upstream, &s);
                    });
                }
            })
            .expect("spawn the proxy");
        FaultProxy {
            endpoint: format!("http://{addr}"),
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// Fails the next `times` requests (`None`: every one until [`FaultProxy::clear`]) of
    /// `method` (`None`: any) on object `key` (`None`: any request at all) with `fault`.
    /// Rules are asked in the order they were added; the first that matches answers.
    pub fn fail(
        &self,
        method: Option<&str>,
        key: Option<&str>,
        fault: Fault,
        times: Option<usize>,
    ) {
        self.shared.rules.lock().unwrap().push(Rule {
            method: method.map(str::to_string),
            key: key.map(str::to_string),
            fault,
            left: times,
        });
    }

    /// Removes every rule: from now on every request goes to the server.
    pub fn clear(&self) {
        self.shared.rules.lock().unwrap().clear();
    }

    /// Every request seen so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// How many requests of `method` on `key` were seen: (answered by the proxy, passed).
    pub fn count(&self, method: &str, key: &str) -> (usize, usize) {
        let seen = self.shared.seen.lock().unwrap();
        let of = seen
            .iter()
            .filter(|s| s.method == method && s.key.as_deref() == Some(key));
        let injected = of.clone().filter(|s| s.injected.is_some()).count();
        (injected, of.count() - injected)
    }

    /// Requests on `key` (any method): (answered by the proxy, passed).
    pub fn count_key(&self, key: &str) -> (usize, usize) {
        let seen = self.shared.seen.lock().unwrap();
        let of = seen.iter().filter(|s| s.key.as_deref() == Some(key));
        let injected = of.clone().filter(|s| s.injected.is_some()).count();
        (injected, of.count() - injected)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which then sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// The first rule matching (`method`, `key`), used up by one.
fn take_fault(shared: &Shared, method: &str, key: Option<&str>) -> Option<Fault> {
    let mut rules = shared.rules.lock().unwrap();
    let i = rules.iter().position(|r| {
        r.left != Some(0)
            && r.method.as_deref().is_none_or(|m| m == method)
            && r.key.as_deref().is_none_or(|k| Some(k) == key)
    })?;
    if let Some(n) = rules[i].left.as_mut() {
        *n -= 1;
    }
    Some(rules[i].fault)
}

/// `%XX` decoded (keys of the tests are ASCII).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Method and object key of a request line `METHOD /BUCKET/KEY?QUERY HTTP/1.1` (path style).
pub fn parse_request_line(line: &str) -> (String, Option<String>) {
    let mut it = line.split(' ');
    let method = it.next().unwrap_or_default().to_string();
    let target = it.next().unwrap_or_default();
    let path = target.split('?').next().unwrap_or("");
    let key = path
        .trim_start_matches('/')
        .split_once('/')
        .map(|(_, k)| percent_decode(k))
        .filter(|k| !k.is_empty());
    (method, key)
}

/// Reads a head (up to the empty line) from `r`: its lines, without line ends.
fn read_head(r: &mut impl BufRead) -> std::io::Result<Option<Vec<String>>> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return if lines.is_empty() {
                Ok(None)
            } else {
                Err(std::io::ErrorKind::UnexpectedEof.into())
            };
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        if line.is_empty() {
            return Ok(Some(lines));
        }
        lines.push(line);
    }
}

fn header<'a>(head: &'a [String], name: &str) -> Option<&'a str> {
    head.iter().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The head again, `connection` headers replaced by `connection: close`.
fn head_bytes(head: &[String]) -> Vec<u8> {
    let mut out = String::new();
    for (i, l) in head.iter().enumerate() {
        let name = l.split_once(':').map(|(n, _)| n.trim());
        if i > 0 && name.is_some_and(|n| n.eq_ignore_ascii_case("connection")) {
            continue;
        }
        out.push_str(l);
        out.push_str("\r\n");
    }
    out.push_str("connection: close\r\n\r\n");
    out.into_bytes()
}

/// The request body as it came (content-length bytes, or chunks up to the last and its
/// trailer, framing included).
fn read_body(r: &mut impl BufRead, head: &[String]) -> std::io::Result<Vec<u8>> {
    let chunked = header(head, "transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut line = String::new();
            r.read_line(&mut line)?;
            body.extend_from_slice(line.as_bytes());
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidData))?;
            if size == 0 {
                // Trailer lines up to the empty one.
                loop {
                    let mut t = String::new();
                    if r.read_line(&mut t)? == 0 {
                        return Ok(body);
                    }
                    body.extend_from_slice(t.as_bytes());
                    if t.trim().is_empty() {
                        return Ok(body);
                    }
                }
            }
            let start = body.len();
            body.resize(start + size + 2, 0);
            r.read_exact(&mut body[start..])?;
        }
    }
    let len: usize = header(head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    body.resize(len, 0);
    r.read_exact(&mut body)?;
    Ok(body)
}

/// Serves one request of `client`: an injected answer, or the server's.
fn serve(client: TcpStream, upstream: &str, shared: &Shared) -> std::io::Result<()> {
    // A client that stops talking does not keep a thread for ever.
    client.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let Some(head) = read_head(&mut reader)? else {
        return Ok(());
    };
    if shared.stop.load(Ordering::SeqCst) {
        return Ok(());
    }
    let body = read_body(&mut reader, &head)?;
    let (method, key) = parse_request_line(&head[0]);
    let fault = take_fault(shared, &method, key.as_deref());
    shared.seen.lock().unwrap().push(Seen {
        method: method.clone(),
        key: key.clone(),
        injected: fault.map(Fault::status),
        range: header(&head, "range").map(str::to_string),
    });
    let mut client = client;
    if let Some(fault) = fault {
        let (status, reason, code) = fault.parts();
        let xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
             <Message>injected by the test's proxy</Message><Key>{}</Key>\
             <RequestId>fault-proxy</RequestId></Error>",
            key.as_deref().unwrap_or("")
        );
        // A HEAD answer has no body (its length is still the one a GET would have).
        let xml = if method == "HEAD" { String::new() } else { xml };
        let resp = format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/xml\r\n\
             x-amz-request-id: fault-proxy\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{xml}",
            xml.len()
        );
        client.write_all(resp.as_bytes())?;
        let _ = client.shutdown(Shutdown::Both);
        return Ok(());
    }
    let mut server = TcpStream::connect(upstream)?;
    server.set_read_timeout(Some(Duration::from_secs(120)))?;
    server.write_all(&head_bytes(&head))?;
    server.write_all(&body)?;
    let mut from = BufReader::new(server);
    let Some(resp_head) = read_head(&mut from)? else {
        let _ = client.shutdown(Shutdown::Both);
        return Ok(());
    };
    client.write_all(&head_bytes(&resp_head))?;
    // The server closes after its answer (connection: close): the rest is the body.
    std::io::copy(&mut from, &mut client)?;
    let _ = client.shutdown(Shutdown::Both);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn request_lines_name_their_key() {
        assert_eq!(
            parse_request_line("GET /b/d/f%201?versionId=x HTTP/1.1"),
            ("GET".to_string(), Some("d/f 1".to_string()))
        );
        assert_eq!(
            parse_request_line("GET /b?list-type=2&prefix=d%2F HTTP/1.1"),
            ("GET".to_string(), None)
        );
        assert_eq!(
            parse_request_line("PUT /b/ HTTP/1.1"),
            ("PUT".to_string(), None)
        );
    }

    #[test]
    fn rules_match_in_order_and_run_out() {
        let s = Shared::default();
        s.rules.lock().unwrap().push(Rule {
            method: Some("GET".into()),
            key: Some("k".into()),
            fault: Fault::SlowDown,
            left: Some(2),
        });
        s.rules.lock().unwrap().push(Rule {
            method: None,
            key: None,
            fault: Fault::Internal,
            left: None,
        });
        assert_eq!(take_fault(&s, "GET", Some("k")), Some(Fault::SlowDown));
        assert_eq!(take_fault(&s, "PUT", Some("k")), Some(Fault::Internal));
        assert_eq!(take_fault(&s, "GET", Some("k")), Some(Fault::SlowDown));
        assert_eq!(take_fault(&s, "GET", Some("k")), Some(Fault::Internal));
        s.rules.lock().unwrap().clear();
        assert_eq!(take_fault(&s, "GET", None), None);
    }

    /// Through a proxy to a tiny server: a request passes with its body, one is failed
    /// without reaching the server, and both are logged.
    #[test]
    fn passes_through_and_injects() {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let up = format!("http://{}", server.local_addr().unwrap());
        let got = std::thread::spawn(move || {
            let (sock, _) = server.accept().unwrap();
            let mut r = BufReader::new(sock.try_clone().unwrap());
            let head = read_head(&mut r).unwrap().unwrap();
            let body = read_body(&mut r, &head).unwrap();
            let mut sock = sock;
            sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .unwrap();
            (head, body)
        });
        let proxy = FaultProxy::start(&up);
        proxy.fail(Some("GET"), Some("k"), Fault::AccessDenied, Some(1));
        let ask = |req: &[u8]| {
            let mut c = TcpStream::connect(proxy.addr).unwrap();
            c.write_all(req).unwrap();
            let mut out = String::new();
            c.read_to_string(&mut out).unwrap();
            out
        };
        let denied = ask(b"GET /b/k HTTP/1.1\r\nhost: x\r\n\r\n");
        assert!(denied.starts_with("HTTP/1.1 403") && denied.contains("AccessDenied"));
        let ok = ask(b"PUT /b/k HTTP/1.1\r\nhost: x\r\nconnection: keep-alive\r\ncontent-length: 5\r\n\r\nhello");
        assert!(ok.starts_with("HTTP/1.1 200") && ok.ends_with("ok"), "{ok}");
        let (head, body) = got.join().unwrap();
        assert_eq!(head[0], "PUT /b/k HTTP/1.1");
        assert_eq!(header(&head, "connection"), Some("close"));
        assert_eq!(body, b"hello");
        assert_eq!(proxy.count("GET", "k"), (1, 0));
        assert_eq!(proxy.count("PUT", "k"), (0, 1));
        assert_eq!(proxy.count_key("k"), (1, 1));
    }
}
