//! Request bodies end to end: the real binary between raw-socket clients and
//! in-test backends on 127.0.0.1. Content-Length and chunked uploads arrive
//! byte for byte, `Expect: 100-continue` is answered before the body is read,
//! an early answer ends the upload, a streamed body is never sent twice, a
//! client leaving mid-upload frees its backend connection, large answers arrive
//! byte for byte over both kept connections, and requests whose
//! framing or head breaks an RFC 9112 rule are refused before any backend.

mod support;

use std::convert::Infallible;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use support::*;

/// Marsaglia's xorshift64: body bytes and chunk sizes from a fixed seed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// FNV-1a (64 bit) over everything given to `update`.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn update(&mut self, data: &[u8]) {
        for &b in data {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// `len` pseudo-random bytes, made as they are sent: a 64 MiB body is never
/// held whole by the test either.
struct Payload {
    rng: XorShift,
    left: u64,
    fnv: Fnv,
}

impl Payload {
    fn new(len: u64, seed: u64) -> Self {
        Payload {
            rng: XorShift(seed),
            left: len,
            fnv: Fnv::new(),
        }
    }

    /// Appends the next `n` bytes (at most what is left) to `out`; returns how many.
    fn take(&mut self, n: usize, out: &mut Vec<u8>) -> usize {
        let n = n.min(self.left as usize);
        let start = out.len();
        while out.len() - start < n {
            let word = self.rng.next().to_le_bytes();
            let want = (n - (out.len() - start)).min(8);
            out.extend_from_slice(&word[..want]);
        }
        self.fnv.update(&out[start..]);
        self.left -= n as u64;
        n
    }
}

/// A web server (hyper, so its HTTP/1 decoding is not floatlb's) that reads
/// every request body to its end and answers with what it got: `len=N
/// fnv=HEX error=E`, then the request's headers as `name: value` lines, in
/// the order received.
struct DigestBackend {
    addr: SocketAddr,
    requests: Arc<AtomicU64>,
    _rt: tokio::runtime::Runtime,
}

impl DigestBackend {
    fn start() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicU64::new(0));
        let count = requests.clone();
        rt.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let count = count.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| digest(req, count.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        DigestBackend {
            addr,
            requests,
            _rt: rt,
        }
    }

    fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    fn table(&self) -> String {
        format!(
            "[health]\nenabled = false\n[[backend]]\nname = \"digest\"\naddress = \"{}\"\n",
            self.addr
        )
    }
}

async fn digest(
    req: Request<Incoming>,
    count: Arc<AtomicU64>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    count.fetch_add(1, Ordering::SeqCst);
    let headers: String = req
        .headers()
        .iter()
        .map(|(k, v)| format!("{}: {}\n", k, String::from_utf8_lossy(v.as_bytes())))
        .collect();
    let mut body = req.into_body();
    let (mut len, mut fnv, mut error) = (0u64, Fnv::new(), "none".to_string());
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Some(d) = f.data_ref() {
                    len += d.len() as u64;
                    fnv.update(d);
                }
            }
            Err(e) => {
                error = e.to_string().replace(' ', "_");
                break;
            }
        }
    }
    let text = format!("len={len} fnv={:016x} error={error}\n{headers}", fnv.0);
    let resp = Response::builder()
        .header("x-backend", "digest")
        .header("content-type", "text/plain")
        .header("cache-control", "no-store")
        .body(Full::new(Bytes::from(text)))
        .unwrap();
    Ok(resp)
}

/// One parsed answer: status, headers (names lowercased), body.
type Answer = (u16, Vec<(String, String)>, Vec<u8>);

/// Reads one answer (`support::read_answer`), and not a byte more: a
/// pipelined answer behind it stays in the socket.
fn read_answer(s: &mut TcpStream) -> Result<Answer, String> {
    support::read_answer(s).map(|a| (a.status, a.headers, a.body))
}

/// Reads until floatlb closes the connection (bounded by the socket's read
/// timeout). Err if it did not close; a reset after the answer counts as a close.
fn read_until_close(s: &mut TcpStream) -> Result<Vec<u8>, (std::io::Error, Vec<u8>)> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok(out),
            Err(e) => return Err((e, out)),
        }
    }
}

fn connect(addr: SocketAddr, read_timeout: Duration) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(read_timeout)).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Framing {
    None,
    Length,
    Chunked,
}

/// Sends `POST /digest` with `size` bytes framed as asked (chunk sizes and
/// the bytes from `seed`), reads the answer. Returns the FNV of what was sent.
/// A small body goes out in the same write as the head (floatlb holds it
/// whole); a big one is written as it is made (floatlb streams it).
fn post_digest(s: &mut TcpStream, size: u64, framing: Framing, seed: u64) -> (u64, Answer) {
    let mut out = b"POST /digest HTTP/1.1\r\nHost: bodies.test\r\nUser-Agent: bodies\r\nAccept: */*\r\nX-Custom: one, two\r\n".to_vec();
    match framing {
        Framing::None => {}
        Framing::Length => out.extend_from_slice(format!("Content-Length: {size}\r\n").as_bytes()),
        Framing::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
    const FLUSH: usize = 256 * 1024;
    let mut payload = Payload::new(size, seed);
    let mut sizes = XorShift(seed ^ 0x9e37_79b9_7f4a_7c15);
    let mut n_chunk = 0u64;
    while payload.left > 0 {
        match framing {
            Framing::None => unreachable!("no body to send"),
            Framing::Length => {
                payload.take(FLUSH, &mut out);
            }
            Framing::Chunked => {
                // 1..=100000 bytes, with a chunk extension now and then (RFC 9112 §7.1.1).
                let want = (sizes.next() % 100_000 + 1).min(payload.left) as usize;
                n_chunk = (n_chunk + 1) % 7;
                let ext = if n_chunk == 0 { ";ext=\"q\"" } else { "" };
                out.extend_from_slice(format!("{want:x}{ext}\r\n").as_bytes());
                payload.take(want, &mut out);
                out.extend_from_slice(b"\r\n");
            }
        }
        if out.len() >= FLUSH {
            s.write_all(&out).unwrap();
            out.clear();
        }
    }
    if framing == Framing::Chunked {
        // A trailer section (RFC 9112 §7.1.2): not body bytes.
        out.extend_from_slice(b"0\r\nX-Trailer: t\r\n\r\n");
    }
    s.write_all(&out).unwrap();
    let answer = read_answer(s).unwrap_or_else(|e| panic!("{framing:?} {size} B: {e}"));
    (payload.fnv.0, answer)
}

/// The digest backend's answer: (len, fnv, error, header lines).
fn parse_digest(body: &[u8]) -> (u64, String, String, Vec<String>) {
    let text = String::from_utf8_lossy(body);
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default();
    let field = |name: &str| {
        first
            .split(' ')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or_default()
            .to_string()
    };
    let len = field("len").parse().unwrap_or(u64::MAX);
    let headers = lines.map(str::to_string).collect();
    (len, field("fnv"), field("error"), headers)
}

fn without_framing(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| !l.starts_with("content-length:") && !l.starts_with("transfer-encoding:"))
        .cloned()
        .collect()
}

fn without(headers: &[(String, String)], names: &[&str]) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(k, _)| !names.contains(&k.as_str()))
        .cloned()
        .collect()
}

/// Bodies of 1 B to 64 MiB, with Content-Length and chunked (random chunk
/// sizes, extensions, a trailer), reach the backend byte for byte (RFC 9112
/// §6.3: length from Content-Length, or from the chunked coding, §7.1),
/// framed for it as one Content-Length or as chunked (never both, §6.2), with
/// the same other headers a bodyless request gets; the client gets the same
/// answer head either way.
#[test]
fn answers_are_the_same_with_and_without_a_body() {
    let backend = DigestBackend::start();
    let lb = Floatlb::start(&backend.table());
    let mut s = connect(lb.addr, Duration::from_secs(60));
    let (_, (status, bare_head, body)) = post_digest(&mut s, 0, Framing::None, 1);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let (len, _, error, bare_lines) = parse_digest(&body);
    assert_eq!((len, error.as_str()), (0, "none"));
    assert!(
        bare_lines.iter().any(|l| l == "x-custom: one, two")
            && bare_lines.iter().any(|l| l == "host: bodies.test"),
        "{bare_lines:?}"
    );
    let bare_head = without(&bare_head, &["date", "content-length"]);
    let bare_lines = without_framing(&bare_lines);

    let mut cases: Vec<(u64, Framing)> = Vec::new();
    for size in [1, 1024, 64 * 1024, 1024 * 1024] {
        cases.push((size, Framing::Length));
        cases.push((size, Framing::Chunked));
    }
    // The big one once, chunked: the most chunk boundaries to re-frame.
    cases.push((64 * 1024 * 1024, Framing::Chunked));
    for (i, &(size, framing)) in cases.iter().enumerate() {
        let what = format!("{framing:?} {size} B");
        let (sent_fnv, (status, head, body)) =
            post_digest(&mut s, size, framing, 0x5eed + i as u64);
        assert_eq!(status, 200, "{what}: {}", String::from_utf8_lossy(&body));
        let (len, fnv, error, lines) = parse_digest(&body);
        assert_eq!(
            (len, fnv, error.as_str()),
            (size, format!("{sent_fnv:016x}"), "none"),
            "{what}: the backend got other bytes"
        );
        let framing_lines: Vec<&String> = lines
            .iter()
            .filter(|l| l.starts_with("content-length:") || l.starts_with("transfer-encoding:"))
            .collect();
        let expected = match framing {
            Framing::Length => format!("content-length: {size}"),
            _ => "transfer-encoding: chunked".to_string(),
        };
        assert_eq!(framing_lines, vec![&expected], "{what}: one framing header");
        assert_eq!(
            without_framing(&lines),
            bare_lines,
            "{what}: request headers differ from the bodyless request's"
        );
        assert_eq!(
            without(&head, &["date", "content-length"]),
            bare_head,
            "{what}: answer head differs from the bodyless request's"
        );
    }
    assert_eq!(
        backend.requests(),
        1 + cases.len() as u64,
        "one connection carried them all, each once"
    );
}

/// RFC 9110 §10.1.1: a client that sends `Expect: 100-continue` may wait for
/// a 100 before its body, and a server that reads the body sends the 100
/// first. floatlb answers the expectation itself, so the backend does not
/// get it (its own 100 would have nowhere to go). "A server that receives a
/// 100-continue expectation in an HTTP/1.0 request MUST ignore that
/// expectation": no 100 to an HTTP/1.0 client.
#[test]
fn expect_100_continue_waits_for_the_100() {
    let backend = DigestBackend::start();
    let lb = Floatlb::start(&backend.table());
    let mut s = connect(lb.addr, Duration::from_secs(10));
    let continue_100 = |s: &mut TcpStream| {
        // The body is held back until the 100 came: no 100, no answer (the read gives up at 10 s).
        let text = support::read_head(s).unwrap_or_else(|e| panic!("no 100 Continue: {e}"));
        assert!(text.starts_with("HTTP/1.1 100 "), "{text:?}");
    };
    let cases: [(&str, &[u8]); 2] = [
        ("Content-Length: 11\r\n", b"hello world"),
        (
            "Transfer-Encoding: chunked\r\n",
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        ),
    ];
    for (framing, body) in cases {
        s.write_all(
            format!("POST /digest HTTP/1.1\r\nHost: t\r\n{framing}Expect: 100-continue\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
        continue_100(&mut s);
        s.write_all(body).unwrap();
        let (status, _, answer) = read_answer(&mut s).expect("the final answer");
        assert_eq!(status, 200, "{framing}");
        let (len, fnv, _, lines) = parse_digest(&answer);
        let mut want = Fnv::new();
        want.update(b"hello world");
        assert_eq!((len, fnv), (11, format!("{:016x}", want.0)), "{framing}");
        assert!(
            !lines.iter().any(|l| l.starts_with("expect:")),
            "{framing}: the backend saw the expectation: {lines:?}"
        );
    }
    assert_eq!(backend.requests(), 2);

    // HTTP/1.0: the expectation is ignored; the body follows the head unasked.
    let mut s = connect(lb.addr, Duration::from_secs(10));
    s.write_all(b"POST /digest HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        .unwrap();
    // Time for a wrong 100 to be written before the body arrives.
    std::thread::sleep(Duration::from_millis(100));
    s.write_all(b"hello").unwrap();
    let text = read_until_close(&mut s).expect("answer, then close");
    let text = String::from_utf8_lossy(&text);
    assert!(
        text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200"),
        "{text:?}"
    );
    assert!(
        !text.contains(" 100 "),
        "a 100 reached an HTTP/1.0 client: {text:?}"
    );
    assert_eq!(backend.requests(), 3);
}

/// How many answers `text` holds: status lines, "HTTP/1.x NNN ", wherever they
/// start (an answer glued to the end of a previous body counts too).
fn status_lines(text: &str) -> usize {
    text.match_indices("HTTP/1.")
        .filter(|(i, _)| {
            let b = &text.as_bytes()[i + 7..];
            b.len() >= 6
                && matches!(b[0], b'0' | b'1')
                && b[1] == b' '
                && b[2..5].iter().all(u8::is_ascii_digit)
                && b[5] == b' '
        })
        .count()
}

/// What a raw backend saw of one request.
#[derive(Clone, Default)]
struct RawSeen {
    /// Which accepted connection (from 0), and which request on it (from 0).
    conn: usize,
    nth: usize,
    /// The request line.
    line: String,
    /// Body bytes read (as framed on the wire).
    body: Vec<u8>,
    /// How the connection ended while the backend read on: "eof", "reset", "timeout".
    ended: Option<String>,
}

impl std::fmt::Debug for RawSeen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The body by its length and first bytes: some are megabytes.
        let start = &self.body[..self.body.len().min(40)];
        write!(
            f,
            "{{conn {} #{} {:?} body {} B {:?}.. ended {:?}}}",
            self.conn,
            self.nth,
            self.line,
            self.body.len(),
            String::from_utf8_lossy(start),
            self.ended
        )
    }
}

/// A backend on raw sockets whose behaviour the request path picks:
/// - `/cut`: reads the head and some body bytes, then closes without answering;
/// - `/second-cut`: reads the whole (Content-Length) body; answers 200 if it is
///   the connection's first request, closes without answering otherwise (as a
///   backend whose keep-alive timer fired as the request came);
/// - `/early`: answers 413 after the head alone (no `Connection: close`),
///   waits, then reads on until the connection ends;
/// - `/hold`: never answers, reads until the connection ends;
/// - anything else: reads a Content-Length body, answers 200 `ok`, keeps the
///   connection.
struct RawBackend {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<RawSeen>>>,
}

impl RawBackend {
    fn start() -> Self {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            // Bounded, as every loop here: no test opens this many connections.
            for (conn, s) in l.incoming().enumerate().take(1000) {
                let Ok(s) = s else { continue };
                let log = log.clone();
                std::thread::spawn(move || raw_connection(s, conn, &log));
            }
        });
        RawBackend { addr, seen }
    }

    fn table(&self) -> String {
        format!(
            "[health]\nenabled = false\n[[backend]]\nname = \"raw\"\naddress = \"{}\"\n",
            self.addr
        )
    }

    fn seen(&self) -> Vec<RawSeen> {
        self.seen.lock().unwrap().clone()
    }

    /// Requests whose line starts with `prefix`.
    fn seen_of(&self, prefix: &str) -> Vec<RawSeen> {
        self.seen()
            .into_iter()
            .filter(|r| r.line.starts_with(prefix))
            .collect()
    }

    /// Waits (bounded) until the request starting with `prefix` satisfies `pred`.
    fn wait_for(&self, prefix: &str, what: &str, pred: impl Fn(&RawSeen) -> bool) -> RawSeen {
        let start = Instant::now();
        loop {
            if let Some(r) = self.seen_of(prefix).into_iter().find(|r| pred(r)) {
                return r;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "backend never saw {what}: {:?}",
                self.seen()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn raw_connection(mut s: TcpStream, conn: usize, log: &Mutex<Vec<RawSeen>>) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    for nth in 0..1000 {
        let end = loop {
            if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => pending.extend_from_slice(&buf[..n]),
            }
        };
        let head = String::from_utf8_lossy(&pending[..end]).to_string();
        pending.drain(..end + 4);
        let line = head.lines().next().unwrap_or_default().to_string();
        let target = line.split(' ').nth(1).unwrap_or_default().to_string();
        let path = target.split('?').next().unwrap_or_default().to_string();
        let length = content_length(&head).unwrap_or(0);
        let at = {
            let mut log = log.lock().unwrap();
            log.push(RawSeen {
                conn,
                nth,
                line,
                ..Default::default()
            });
            log.len() - 1
        };
        let record = |bytes: &[u8], ended: Option<&str>| {
            let mut log = log.lock().unwrap();
            log[at].body.extend_from_slice(bytes);
            if let Some(e) = ended {
                log[at].ended = Some(e.to_string());
            }
        };
        // Reads on until the connection ends, recording what came and how it ended.
        let drain = |s: &mut TcpStream, buf: &mut [u8]| loop {
            match s.read(buf) {
                Ok(0) => return record(&[], Some("eof")),
                Ok(n) => record(&buf[..n], None),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                    return record(&[], Some("reset"))
                }
                Err(_) => return record(&[], Some("timeout")),
            }
        };
        record(&pending, None);
        match path.as_str() {
            "/cut" => {
                if pending.is_empty() {
                    if let Ok(n) = s.read(&mut buf) {
                        record(&buf[..n], None);
                    }
                }
                return;
            }
            "/early" => {
                let answer =
                    b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 9\r\n\r\ntoo large";
                if s.write_all(answer).is_err() {
                    return;
                }
                // Reads nothing for a while: the upload cannot finish meanwhile.
                std::thread::sleep(Duration::from_millis(300));
                return drain(&mut s, &mut buf);
            }
            "/hold" => return drain(&mut s, &mut buf),
            "/big" => {
                // `bytes` of [`pattern`] under a Content-Length, the
                // connection kept; with `cut`, closed after that many.
                let query = |k: &str| -> Option<usize> {
                    target.split(['?', '&']).find_map(|kv| {
                        let (key, v) = kv.split_once('=')?;
                        (key == k).then(|| v.parse().ok())?
                    })
                };
                let size = query("bytes").unwrap_or(0);
                let send = query("cut").unwrap_or(size).min(size);
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n");
                if s.write_all(head.as_bytes()).is_err() {
                    return;
                }
                for at in (0..send).step_by(100_000) {
                    let piece: Vec<u8> = (at..send.min(at + 100_000)).map(pattern).collect();
                    if s.write_all(&piece).is_err() {
                        return;
                    }
                }
                if send < size {
                    return;
                }
                continue;
            }
            _ => {}
        }
        while pending.len() < length {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    record(&buf[..n], None);
                    pending.extend_from_slice(&buf[..n]);
                }
            }
        }
        pending.drain(..length);
        if path == "/second-cut" && nth > 0 {
            return;
        }
        if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .is_err()
        {
            return;
        }
    }
}

/// The Content-Length of a head, if it has one.
fn content_length(head: &str) -> Option<usize> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse().ok())?
    })
}

/// Byte `i` of a `/big` answer: a period of 251 (a prime), so a byte lost,
/// doubled or moved anywhere in a body shows.
fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

/// Reads one answer with a Content-Length body from `s`: (head, body, whether
/// the connection ended before the body did).
fn read_sized_answer(s: &mut TcpStream) -> (String, Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let end = loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return (String::from_utf8_lossy(&got).into(), Vec::new(), true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&got[..end]).to_string();
    let length = content_length(&head).expect("a Content-Length");
    let mut body = got.split_off(end);
    while body.len() < length {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return (head, body, true),
            Ok(n) => body.extend_from_slice(&buf[..n]),
        }
    }
    assert_eq!(body.len(), length, "bytes past the answer's end: {head}");
    (head, body, false)
}

/// Large answers (spliced from the backend's socket to the client's, past
/// 128 KiB on cleartext) arrive byte for byte, the body's end is where its
/// Content-Length says (RFC 9112 §6.3 item 6), so both the client's
/// connection and the backend's are used again; a backend that closes inside
/// such a body ends the client's connection short of the length, never a hang
/// and never an answer that looks whole (RFC 9112 §8: incomplete messages).
#[test]
fn large_answers_arrive_whole_and_keep_both_connections() {
    let backend = RawBackend::start();
    let lb = Floatlb::start(&backend.table());
    let mut s = connect(lb.addr, Duration::from_secs(10));
    for (nth, size) in [(0, 3 * 1024 * 1024 + 7), (1, 200_001), (2, 1000)] {
        let req = format!("GET /big?bytes={size} HTTP/1.1\r\nHost: t\r\n\r\n");
        s.write_all(req.as_bytes()).unwrap();
        let (head, body, cut) = read_sized_answer(&mut s);
        assert!(head.starts_with("HTTP/1.1 200"), "answer {nth}: {head}");
        assert!(!cut, "answer {nth} ended early at {} of {size}", body.len());
        let wrong = body.iter().enumerate().position(|(i, b)| *b != pattern(i));
        assert_eq!(wrong, None, "answer {nth}: first wrong byte");
    }
    // All three on the backend's first connection, in order: the spliced
    // bodies were counted to their end and the connection went back to the pool.
    let seen: Vec<(usize, usize)> = backend
        .seen_of("GET /big")
        .iter()
        .map(|r| (r.conn, r.nth))
        .collect();
    assert_eq!(seen, [(0, 0), (0, 1), (0, 2)]);

    // A backend that closes 1 MB into a 2 MiB body: the client gets the head,
    // at most what was sent, then its connection ends.
    let mut s = connect(lb.addr, Duration::from_secs(10));
    s.write_all(b"GET /big?bytes=2097152&cut=1000000 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let (head, body, cut) = read_sized_answer(&mut s);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(cut, "a cut body must not look whole");
    assert!(body.len() <= 1_000_000, "{} bytes", body.len());
    let wrong = body.iter().enumerate().position(|(i, b)| *b != pattern(i));
    assert_eq!(wrong, None, "first wrong byte of the cut answer");
}

/// An answer that comes before the upload ends is relayed, and then the
/// client's connection closes (RFC 9110 §10.1.1: a server answering before the
/// whole content says whether it closes; RFC 9112 §9.6: after `close` it
/// does): the rest of the body is nobody's to read. The backend's connection,
/// which still expects that body, is dropped too, never pooled.
#[test]
fn an_early_answer_is_relayed_and_the_connection_closed() {
    let backend = RawBackend::start();
    let lb = Floatlb::start(&backend.table());
    // 64 MiB: more than every socket buffer on the way can hold.
    const SIZE: u64 = 64 * 1024 * 1024;
    let mut s = connect(lb.addr, Duration::from_secs(10));
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        w.write_all(
            format!("POST /early HTTP/1.1\r\nHost: t\r\nContent-Length: {SIZE}\r\n\r\n").as_bytes(),
        )
        .unwrap();
        let mut payload = Payload::new(SIZE, 3);
        let mut block = Vec::with_capacity(1 << 16);
        while payload.left > 0 {
            block.clear();
            payload.take(1 << 16, &mut block);
            // Fails once floatlb has closed the connection.
            if w.write_all(&block).is_err() {
                break;
            }
        }
    });
    let got = read_until_close(&mut s);
    writer.join().unwrap();
    let got = got.unwrap_or_else(|(e, got)| {
        panic!(
            "connection not closed after the early answer ({e}): {:?}",
            String::from_utf8_lossy(&got)
        )
    });
    let text = String::from_utf8_lossy(&got);
    let (status, headers, body) = parse_response(&text);
    assert_eq!((status, body.as_str()), (413, "too large"), "{text:?}");
    assert_eq!(status_lines(&text), 1, "{text:?}");
    assert!(
        header(&headers, "connection").is_some_and(|v| v.eq_ignore_ascii_case("close")),
        "the early answer must say the connection closes: {text:?}"
    );
    // The backend connection ends (floatlb dropped it), and the next request opens a new one.
    let early = backend.wait_for("POST /early", "the end of the early connection", |r| {
        r.ended.is_some()
    });
    assert_ne!(early.ended.as_deref(), Some("timeout"), "{early:?}");
    // floatlb may read and drop what the client still sends (a lingering
    // close), but the backend, which answered first, never got it all.
    assert!(
        (early.body.len() as u64) < SIZE,
        "the whole body reached the backend: the answer was not early"
    );
    let (status, _, body) = http_get(lb.addr, "/next");
    assert_eq!((status, body.as_str()), (200, "ok"));
    let next = backend.seen_of("GET /next");
    assert_eq!(next.len(), 1, "{:?}", backend.seen());
    assert_ne!(
        next[0].conn, early.conn,
        "the early answer's connection was used again"
    );
    lb.wait_status("nothing in flight", |s| {
        s.contains("\"in_flight\":0") && s.contains("\"connections_active\":0")
    });
}

/// A body streamed from the client is gone once sent: a backend failing
/// before it answers gets a 502 and never a second copy, for a POST (RFC 9112
/// §9.3.1: "A proxy MUST NOT automatically retry non-idempotent requests")
/// and for an idempotent PUT alike (RFC 9110 §9.2.2 would allow it, but the
/// body is no longer there to send). A body that came whole with its head is
/// held, so a PUT whose pooled connection the backend closed is sent again
/// on a new connection and succeeds.
#[test]
fn a_streamed_body_is_never_sent_twice() {
    let backend = RawBackend::start();
    let lb = Floatlb::start(&backend.table());
    // Repeated request heads: if floatlb took what follows the cut for the
    // next request, a second answer (or a request for /smuggled) shows it.
    let body = "GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n".repeat(3000);
    for method in ["POST", "PUT"] {
        let head = format!(
            "{method} /cut HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let mut s = connect(lb.addr, Duration::from_secs(10));
        s.write_all(head.as_bytes()).unwrap();
        // floatlb starts on the head alone: the body is streamed.
        std::thread::sleep(Duration::from_millis(50));
        // floatlb may stop reading once the backend is gone: the write may fail.
        let _ = s.write_all(body.as_bytes());
        let (status, headers, text) = read_answer(&mut s).expect("an answer");
        assert_eq!(status, 502, "{method}: {}", String::from_utf8_lossy(&text));
        // Whether floatlb had read the whole body when the backend failed
        // depends on socket buffers. Either way no byte of it may be taken for
        // a request (RFC 9112 §9.3: read the entire body or close).
        if header(&headers, "connection").is_some_and(|v| v.eq_ignore_ascii_case("close")) {
            let rest = read_until_close(&mut s)
                .unwrap_or_else(|(e, _)| panic!("{method}: not closed after close: {e}"));
            assert!(
                rest.is_empty(),
                "{method}: {:?}",
                String::from_utf8_lossy(&rest)
            );
        } else {
            s.write_all(b"GET /after HTTP/1.1\r\nHost: t\r\n\r\n")
                .unwrap();
            let (status, _, text) = read_answer(&mut s).expect("the next answer");
            assert_eq!(
                (status, text.as_slice()),
                (200, &b"ok"[..]),
                "{method}: the connection kept part of the body"
            );
        }
        let seen = backend.seen_of(&format!("{method} /cut"));
        assert_eq!(seen.len(), 1, "{method} sent more than once: {seen:?}");
    }
    assert!(backend.seen_of("GET /smuggled").is_empty());

    // On a pooled connection: streamed, the PUT fails once and is not sent again...
    let mut s = connect(lb.addr, Duration::from_secs(10));
    s.write_all(b"GET /warm HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_answer(&mut s).map(|a| a.0), Ok(200));
    let body = vec![b'p'; 20_000];
    s.write_all(
        format!(
            "PUT /second-cut HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    s.write_all(&body).unwrap();
    let (status, _, text) = read_answer(&mut s).expect("an answer");
    assert_eq!(status, 502, "{}", String::from_utf8_lossy(&text));
    let seen = backend.seen_of("PUT /second-cut");
    assert_eq!(seen.len(), 1, "a streamed body was sent again: {seen:?}");
    assert!(seen[0].nth > 0, "it went on a pooled connection: {seen:?}");

    // ...whole with its head, it is sent again on a new connection and succeeds.
    let mut s = connect(lb.addr, Duration::from_secs(10));
    s.write_all(b"GET /warm HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_answer(&mut s).map(|a| a.0), Ok(200));
    s.write_all(b"PUT /second-cut HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nwhole body!")
        .unwrap();
    let (status, _, text) = read_answer(&mut s).expect("an answer");
    assert_eq!(
        (status, text.as_slice()),
        (200, &b"ok"[..]),
        "{:?}",
        backend.seen()
    );
    let seen = backend.seen_of("PUT /second-cut");
    assert_eq!(seen.len(), 3, "{seen:?}");
    let (cut, replay) = (&seen[1], &seen[2]);
    assert!(cut.nth > 0 && replay.nth == 0, "{seen:?}");
    assert_ne!(cut.conn, replay.conn, "{seen:?}");
    assert_eq!(cut.body, b"whole body!", "{seen:?}");
    assert_eq!(replay.body, b"whole body!", "the replay carried the body");
}

/// A client that leaves inside its body (chunked, cut inside a chunk or
/// between chunks; Content-Length, cut short) makes floatlb drop the backend
/// connection without finishing the body for it: the backend never sees a
/// last chunk (RFC 9112 §7.1) or a full length (§6.3) that the client did not
/// send. Then nothing is left in flight and the next request is served.
/// (`client_aborting_mid_upload_leaks_nothing` in tests/proxy.rs counts
/// descriptors for Content-Length uploads.)
#[test]
fn a_client_leaving_mid_upload_frees_the_backend_connection() {
    let backend = RawBackend::start();
    let lb = Floatlb::start(&backend.table());
    let cases: [(&str, &str, &[u8], usize); 3] = [
        (
            "chunked, inside a chunk",
            "Transfer-Encoding: chunked",
            &[b"1000\r\n" as &[u8], &[b'c'; 2048]].concat(),
            2048,
        ),
        (
            "chunked, between chunks",
            "Transfer-Encoding: chunked",
            b"10\r\n0123456789abcdef\r\n",
            16,
        ),
        (
            "Content-Length, cut short",
            "Content-Length: 1000000",
            &[b'l'; 10_000],
            10_000,
        ),
    ];
    for (i, (what, framing, sent, body_bytes)) in cases.iter().enumerate() {
        let mut s = connect(lb.addr, Duration::from_secs(10));
        s.write_all(
            format!("POST /hold?case={i} HTTP/1.1\r\nHost: t\r\n{framing}\r\n\r\n").as_bytes(),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(20));
        s.write_all(sent).unwrap();
        // Leaves once the backend has what was sent, so floatlb is mid-body.
        let prefix = format!("POST /hold?case={i} ");
        backend.wait_for(&prefix, what, |r| {
            r.body.iter().filter(|&&b| b != b'\r' && b != b'\n').count() >= *body_bytes
        });
        drop(s);
        let r = backend.wait_for(&prefix, &format!("{what}: the connection's end"), |r| {
            r.ended.is_some()
        });
        assert_ne!(
            r.ended.as_deref(),
            Some("timeout"),
            "{what}: floatlb kept the backend connection: {r:?}"
        );
        if framing.starts_with("Transfer") {
            assert!(
                !r.body.ends_with(b"0\r\n\r\n"),
                "{what}: the backend got a last chunk the client never sent: {:?}",
                String::from_utf8_lossy(&r.body)
            );
        } else {
            assert_eq!(r.body.len(), sent.len(), "{what}");
        }
        lb.wait_status(what, |s| {
            s.contains("\"in_flight\":0") && s.contains("\"connections_active\":0")
        });
        let (status, _, body) = http_get(lb.addr, "/next");
        assert_eq!(
            (status, body.as_str()),
            (200, "ok"),
            "{what}: still serving"
        );
    }
}

/// Sends `request` on a fresh connection; returns what came back before the
/// close, or why there was no close.
fn refused(addr: SocketAddr, request: &[u8]) -> Result<String, String> {
    let mut s = connect(addr, Duration::from_secs(10));
    // A refusal may come (and the connection close) before all of it is written.
    let _ = s.write_all(request);
    match read_until_close(&mut s) {
        Ok(got) => Ok(String::from_utf8_lossy(&got).to_string()),
        Err((e, got)) => Err(format!(
            "connection not closed ({e}): {:?}",
            String::from_utf8_lossy(&got)
        )),
    }
}

/// Requests that break a MUST of RFC 9112 (or that floatlb refuses as a
/// reverse proxy) get one 4xx, the connection closes, and no backend sees
/// anything. Those in `smuggling_vectors_get_400_close_and_reach_no_backend`
/// (tests/proxy.rs) are not repeated.
#[test]
fn invalid_requests_get_a_4xx_and_a_close_and_reach_no_backend() {
    let a = TestBackend::start("a");
    let lb = Floatlb::start(&format!(
        "[health]\nenabled = false\n{}",
        backend_tables(&[(&a, 1)])
    ));
    let many_fields: String = (0..101).map(|i| format!("X-F{i}: {i}\r\n")).collect();
    let vectors: Vec<(&str, u16, Vec<u8>)> = vec![
        // RFC 9112 §3.2: "A server MUST respond with a 400 ... to any HTTP/1.1
        // request message that lacks a Host header field and to any request
        // message that contains more than one Host header field line or a Host
        // header field with an invalid field value."
        ("HTTP/1.1 without Host", 400, b"GET / HTTP/1.1\r\n\r\n".to_vec()),
        (
            "two Host lines",
            400,
            b"GET / HTTP/1.1\r\nHost: t\r\nHost: t\r\n\r\n".to_vec(),
        ),
        (
            "Host with a slash",
            400,
            b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n".to_vec(),
        ),
        (
            "Host with userinfo",
            400,
            b"GET / HTTP/1.1\r\nHost: user@t\r\n\r\n".to_vec(),
        ),
        (
            "Host with a bad port",
            400,
            b"GET / HTTP/1.1\r\nHost: t:8x\r\n\r\n".to_vec(),
        ),
        // RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message means the
        // framing is faulty; the connection closes.
        (
            "Transfer-Encoding in HTTP/1.0",
            400,
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
        ),
        // RFC 9112 §6.3 item 4: chunked not the final coding: 400 and close.
        (
            "Transfer-Encoding without chunked",
            400,
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\nabc".to_vec(),
        ),
        // RFC 9112 §7: chunked is never applied twice.
        (
            "chunked twice, on two lines",
            400,
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
        ),
        // RFC 9112 §6.3 item 5: an invalid Content-Length: 400 and close.
        (
            "Content-Length with a sign",
            400,
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: +5\r\n\r\nhello".to_vec(),
        ),
        // RFC 9112 §7.1: chunk-size is hex digits; these bodies came whole with the head.
        (
            "chunk size past 64 bits",
            400,
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n".to_vec(),
        ),
        (
            "negative chunk size",
            400,
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n".to_vec(),
        ),
        (
            "chunk data longer than its size",
            400,
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n".to_vec(),
        ),
        // RFC 9112 §5.2: obs-fold outside message/http: reject with 400 (a tab this time).
        (
            "obs-fold with a tab",
            400,
            b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\r\n\tb\r\n\r\n".to_vec(),
        ),
        // RFC 9112 §3 and §3.2: the request-target has no whitespace, and is
        // ASCII (RFC 3986); "invalid request-line: 400".
        (
            "space in the target",
            400,
            b"GET /a b HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
        ),
        (
            "non-ASCII byte in the target",
            400,
            b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
        ),
        // RFC 9110 §9.3.6 / §15.5.6: a reverse proxy opens no tunnel where a client asks.
        (
            "CONNECT",
            405,
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n".to_vec(),
        ),
        // RFC 6585 §5: 431 for header fields too large (here: more than 100).
        (
            "101 header fields",
            431,
            format!("GET / HTTP/1.1\r\nHost: t\r\n{many_fields}\r\n").into_bytes(),
        ),
    ];
    let mut failures = Vec::new();
    for (name, want, request) in &vectors {
        let before = a.requests();
        match refused(lb.addr, request) {
            Err(e) => failures.push(format!("{name}: {e}")),
            Ok(text) => {
                let (status, _, _) = parse_response(&text);
                if status != *want || status_lines(&text) != 1 {
                    failures.push(format!("{name}: not one {want}: {text:?}"));
                }
            }
        }
        if a.requests() != before {
            failures.push(format!("{name}: reached the backend"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    // Still serving.
    assert_eq!(http_get(lb.addr, "/").0, 200);
    assert_eq!(a.requests(), 1);
}

/// A 70 000-byte target, refused before any backend with the status given
/// `extra` configuration.
fn long_target_status(extra: &str) -> u16 {
    let a = TestBackend::start("a");
    let lb = Floatlb::start(&format!(
        "{extra}[health]\nenabled = false\n{}",
        backend_tables(&[(&a, 1)])
    ));
    let request = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(70_000));
    let text = refused(lb.addr, request.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status_lines(&text), 1, "{text:?}");
    assert_eq!(a.requests(), 0);
    parse_response(&text).0
}

/// RFC 9112 §3: "A server that receives a request-target longer than any URI
/// it wishes to parse MUST respond with a 414 (URI Too Long)". With room for
/// the head (max-header-size 128 KiB), a 70 000-byte target is longer than the
/// 65 533 bytes floatlb parses.
#[test]
fn a_target_over_64_kib_gets_414() {
    assert_eq!(
        long_target_status("[proxy]\nmax-header-size = 131072\n"),
        414
    );
}

/// The same 70 000-byte target with the default 64 KiB head limit: the
/// request line alone does not fit, so it is the target that is too long
/// (RFC 9112 §3, 414), as nginx answers when a request line outgrows its
/// buffer; 431 (RFC 6585 §5) is for header fields.
#[test]
fn a_request_line_over_the_head_limit_gets_414() {
    assert_eq!(long_target_status(""), 414);
}

/// RFC 9110 §15.5.6: "The origin server MUST generate an Allow header field
/// in a 405 response"; floatlb answers CONNECT itself, as the origin would
/// (a gateway acts as the origin server for its clients, RFC 9110 §3.7).
#[test]
fn the_405_to_connect_names_the_allowed_methods() {
    let a = TestBackend::start("a");
    let lb = Floatlb::start(&format!(
        "[health]\nenabled = false\n{}",
        backend_tables(&[(&a, 1)])
    ));
    let text = refused(
        lb.addr,
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (status, headers, _) = parse_response(&text);
    assert_eq!(status, 405, "{text:?}");
    let allow = header(&headers, "allow").unwrap_or_else(|| panic!("no Allow: {text:?}"));
    assert!(
        allow.contains("GET") && !allow.contains("CONNECT"),
        "{allow}"
    );
}

/// An HTTP/1.0 request with a body is answered and its connection closed
/// (RFC 9112 §9.3: 1.0 is not persistent unless keep-alive was asked), or kept
/// when it was; pipelined requests with bodies of both framings (RFC 9112
/// §9.3.2) are each read exactly to their end and answered in order on one
/// connection.
#[test]
fn http10_client_with_a_body_and_pipelined_requests_with_bodies() {
    let a = TestBackend::start("a");
    let lb = Floatlb::start(&format!(
        "[health]\nenabled = false\n{}",
        backend_tables(&[(&a, 1)])
    ));
    let mut s = connect(lb.addr, Duration::from_secs(10));
    s.write_all(b"POST /upload HTTP/1.0\r\nContent-Length: 5\r\n\r\nhello")
        .unwrap();
    let text = read_until_close(&mut s).expect("answer, then close");
    let (status, headers, body) = parse_response(&String::from_utf8_lossy(&text));
    assert_eq!((status, body.as_str()), (200, "5"));
    assert!(
        header(&headers, "transfer-encoding").is_none(),
        "{headers:?}"
    );

    let mut s = connect(lb.addr, Duration::from_secs(10));
    s.write_all(
        b"POST /upload HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 4\r\n\r\nkeep",
    )
    .unwrap();
    let (status, _, body) = read_answer(&mut s).expect("1.0 keep-alive answer");
    assert_eq!((status, body.as_slice()), (200, &b"4"[..]));
    s.write_all(b"POST /upload HTTP/1.0\r\nContent-Length: 3\r\n\r\nend")
        .unwrap();
    let text = read_until_close(&mut s).expect("answer, then close");
    let (status, _, body) = parse_response(&String::from_utf8_lossy(&text));
    assert_eq!(
        (status, body.as_str()),
        (200, "3"),
        "same connection, then closed"
    );

    let mut s = connect(lb.addr, Duration::from_secs(10));
    s.write_all(
        b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc\
POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n7;x=1\r\nefghijk\r\n0\r\n\r\n\
POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 7\r\n\r\n1234567",
    )
    .unwrap();
    for (i, want) in ["3", "11", "7"].iter().enumerate() {
        let (status, _, body) =
            read_answer(&mut s).unwrap_or_else(|e| panic!("pipelined {i}: {e}"));
        assert_eq!(
            (status, String::from_utf8_lossy(&body).as_ref()),
            (200, *want),
            "pipelined {i}"
        );
    }
    // The connection is still open, with nothing left over.
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let text = read_until_close(&mut s).expect("answer, then close");
    let text = String::from_utf8_lossy(&text);
    assert_eq!(status_lines(&text), 1, "{text:?}");
    assert_eq!(parse_response(&text).2, "a");
    assert_eq!(a.requests(), 3 + 3 + 1);
}
