//! An HTTP proxy in front of an S3 test server, on a free port of 127.0.0.1, that fails
//! requests on demand: a rule names a method and an object key and says what to answer
//! instead of the server (500 `InternalError`, 503 `SlowDown`, 403 `AccessDenied`, with the
//! S3 error body), a number of times or until cleared; everything else goes through to the
//! server unchanged. Every request is logged (method, key, what it was answered), so a test can
//! count the retries a client made.
//!
//! It also measures concurrency: every request is in flight for a span the proxy records
//! ([`FaultProxy::peak`] is the most requests of a kind that were in flight at once), and the
//! answers of chosen requests can be held back a while ([`FaultProxy::delay`]), so that requests
//! a client makes in parallel overlap for certain even on a fast local server, while requests it
//! makes one after another still never do (`tests/tests/s3_parallel.rs`).
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
use std::sync::{Arc, Mutex, MutexGuard};
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
    /// The query string of the request line (after `?`, as sent; empty without one).
    pub query: String,
}

impl Seen {
    /// Whether the query string has parameter `name` (`partNumber`, `uploads`, ...).
    pub fn has_param(&self, name: &str) -> bool {
        self.query
            .split('&')
            .any(|p| p.split('=').next() == Some(name))
    }

    /// Whether it is an UploadPart: a PUT of a part (`partNumber` and `uploadId`).
    pub fn is_upload_part(&self) -> bool {
        self.method == "PUT" && self.has_param("partNumber") && self.has_param("uploadId")
    }

    /// Whether it is a GET of a byte range of an object (a `range` header).
    pub fn is_ranged_get(&self) -> bool {
        self.method == "GET" && self.key.is_some() && self.range.is_some()
    }
}

/// Which requests have their answers held back, and for how long.
struct Delay {
    matches: Box<dyn Fn(&Seen) -> bool + Send + Sync>,
    by: Duration,
}

impl std::fmt::Debug for Delay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delay").field("by", &self.by).finish()
    }
}

/// The requests seen, with the span each was in flight, on one clock.
#[derive(Debug, Default)]
struct Log {
    seen: Vec<Seen>,
    /// For `seen[i]`: the ticks at which it began and (once it has) stopped being in flight.
    spans: Vec<(u64, Option<u64>)>,
    /// The last tick given out. Ticks are taken under the log's lock, so they are unique and
    /// ordered as the events were: a request that begins after another ended (on any thread)
    /// has a later tick.
    clock: u64,
}

impl Log {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }
}

/// `m` locked, also when a thread panicked holding it (what it guards stays usable).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Ends a request's span in flight when dropped (or at [`InFlight::end`]), so a request whose
/// connection fails half way is not counted in flight for ever.
struct InFlight<'a> {
    shared: &'a Shared,
    index: usize,
}

impl InFlight<'_> {
    fn end(self) {}
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut log = lock(&self.shared.log);
        let t = log.tick();
        if let Some(span) = log.spans.get_mut(self.index) {
            span.1.get_or_insert(t);
        }
    }
}

/// The most spans of `spans` open at once (an open end is open for ever).
fn peak_of(spans: impl Iterator<Item = (u64, Option<u64>)>) -> usize {
    let mut events: Vec<(u64, i64)> = spans
        .flat_map(|(b, e)| [(b, 1), (e.unwrap_or(u64::MAX), -1)])
        .collect();
    // Ticks are unique; an open end (u64::MAX) sorts last either way.
    events.sort_unstable();
    let (mut now, mut peak) = (0i64, 0i64);
    for (_, d) in events {
        now += d;
        peak = peak.max(now);
    }
    usize::try_from(peak).unwrap_or(0)
}

#[derive(Debug, Default)]
struct Shared {
    rules: Mutex<Vec<Rule>>,
    log: Mutex<Log>,
    delays: Mutex<Vec<Delay>>,
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
        lock(&self.shared.rules).push(Rule {
            method: method.map(str::to_string),
            key: key.map(str::to_string),
            fault,
            left: times,
        });
    }

    /// Removes every rule: from now on every request goes to the server.
    pub fn clear(&self) {
        lock(&self.shared.rules).clear();
    }

    /// Every request seen so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        lock(&self.shared.log).seen.clone()
    }

    /// Holds back the server's answer to every request `matching` selects by `by` before it is
    /// written back to the client (the request stays in flight meanwhile; see
    /// [`FaultProxy::peak`]). Answers the proxy injects are never delayed. The first delay
    /// added that matches applies. A delay makes requests a client runs in parallel overlap
    /// for certain; it cannot make requests run one after another overlap.
    pub fn delay(&self, matching: impl Fn(&Seen) -> bool + Send + Sync + 'static, by: Duration) {
        lock(&self.shared.delays).push(Delay {
            matches: Box::new(matching),
            by,
        });
    }

    /// The most requests `matching` selects that were in flight at the same time, so far
    /// (e.g. `proxy.peak(|s| s.is_upload_part())`).
    ///
    /// A request is in flight from when the proxy has read its head until the proxy starts
    /// writing its answer back (the server's answer head in hand, after any
    /// [`FaultProxy::delay`]; or an injected answer). It ends *before* the first byte of the
    /// answer goes out, not after the last, so that no scheduling of the proxy's threads can
    /// make two requests overlap here when the client sent the second only after it had the
    /// answer to the first: a client that runs requests one after another peaks at 1, always.
    /// A request still in flight counts as in flight.
    pub fn peak(&self, matching: impl Fn(&Seen) -> bool) -> usize {
        let log = lock(&self.shared.log);
        peak_of(
            log.seen
                .iter()
                .zip(&log.spans)
                .filter(|(s, _)| matching(s))
                .map(|(_, span)| *span),
        )
    }

    /// How many requests of `method` on `key` were seen: (answered by the proxy, passed).
    pub fn count(&self, method: &str, key: &str) -> (usize, usize) {
        let log = lock(&self.shared.log);
        let of = log
            .seen
            .iter()
            .filter(|s| s.method == method && s.key.as_deref() == Some(key));
        let injected = of.clone().filter(|s| s.injected.is_some()).count();
        (injected, of.count() - injected)
    }

    /// Requests on `key` (any method): (answered by the proxy, passed).
    pub fn count_key(&self, key: &str) -> (usize, usize) {
        let log = lock(&self.shared.log);
        let of = log.seen.iter().filter(|s| s.key.as_deref() == Some(key));
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
    let mut rules = lock(&shared.rules);
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

/// The query string of a request line `METHOD TARGET HTTP/1.1` (after `?`; empty without one).
fn query_of(line: &str) -> &str {
    line.split(' ')
        .nth(1)
        .and_then(|t| t.split_once('?'))
        .map_or("", |(_, q)| q)
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
    // In flight from here: the head has been read.
    let began = lock(&shared.log).tick();
    let body = read_body(&mut reader, &head)?;
    let (method, key) = parse_request_line(&head[0]);
    let fault = take_fault(shared, &method, key.as_deref());
    let seen = Seen {
        method: method.clone(),
        key: key.clone(),
        injected: fault.map(Fault::status),
        range: header(&head, "range").map(str::to_string),
        query: query_of(&head[0]).to_string(),
    };
    let delay = lock(&shared.delays)
        .iter()
        .find(|d| (d.matches)(&seen))
        .map(|d| d.by);
    let in_flight = {
        let mut log = lock(&shared.log);
        log.seen.push(seen);
        log.spans.push((began, None));
        InFlight {
            shared,
            index: log.seen.len() - 1,
        }
    };
    let mut client = client;
    if let Some(fault) = fault {
        in_flight.end();
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
    if let Some(by) = delay {
        std::thread::sleep(by);
    }
    // Out of flight before any of the answer goes back (see `FaultProxy::peak`).
    in_flight.end();
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

    #[test]
    fn peaks_count_spans_open_at_once() {
        assert_eq!(peak_of([].into_iter()), 0);
        // 1-4 and 2-3 overlap; 5-6 touches neither.
        assert_eq!(
            peak_of([(1, Some(4)), (2, Some(3)), (5, Some(6))].into_iter()),
            2
        );
        // One after another (each begins after the last ended): never more than one.
        assert_eq!(peak_of([(1, Some(2)), (3, Some(4))].into_iter()), 1);
        // Still open.
        assert_eq!(peak_of([(1, None), (3, Some(4))].into_iter()), 2);
        assert_eq!(
            query_of("PUT /b/k?partNumber=2&uploadId=u HTTP/1.1"),
            "partNumber=2&uploadId=u"
        );
        assert_eq!(query_of("GET /b/k HTTP/1.1"), "");
    }

    /// Requests sent together overlap under a delay; requests sent one after another do not.
    #[test]
    fn delayed_answers_show_parallel_requests() {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let up = format!("http://{}", server.local_addr().unwrap());
        std::thread::spawn(move || {
            for sock in server.incoming() {
                let Ok(sock) = sock else { return };
                std::thread::spawn(move || {
                    let mut r = BufReader::new(sock.try_clone().unwrap());
                    if let Ok(Some(head)) = read_head(&mut r) {
                        let _ = read_body(&mut r, &head);
                        let mut sock = sock;
                        let _ = sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
                    }
                });
            }
        });
        let proxy = FaultProxy::start(&up);
        proxy.delay(|s| s.method == "GET", Duration::from_millis(100));
        let addr = proxy.addr;
        let ask = move |target: &str| {
            let mut c = TcpStream::connect(addr).unwrap();
            write!(c, "GET {target} HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
            let mut out = String::new();
            c.read_to_string(&mut out).unwrap();
            assert!(out.ends_with("ok"), "{out}");
        };
        ask("/b/serial");
        ask("/b/serial");
        let together: Vec<_> = (0..3)
            .map(|_| std::thread::spawn(move || ask("/b/parallel?x=1")))
            .collect();
        for t in together {
            t.join().unwrap();
        }
        let key = |k: &'static str| move |s: &Seen| s.key.as_deref() == Some(k);
        assert_eq!(proxy.peak(key("serial")), 1);
        assert_eq!(proxy.peak(key("parallel")), 3);
        assert!(proxy.seen().iter().any(|s| s.query == "x=1"));
    }
}
