//! Request bodies end to end: the real binary between raw-socket clients and
//! in-test backends on 127.0.0.1. Content-Length and chunked uploads arrive
//! byte for byte, and `Expect: 100-continue` is answered before the body is
//! read.

mod support;

use std::convert::Infallible;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

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

/// Reads one answer with a Content-Length body, and not a byte more (the head
/// a byte at a time): a pipelined answer behind it stays in the socket.
fn read_answer(s: &mut TcpStream) -> Result<Answer, String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(0) => {
                return Err(format!(
                    "closed before an answer: {:?}",
                    String::from_utf8_lossy(&head)
                ))
            }
            Ok(_) => head.push(byte[0]),
            Err(e) => {
                return Err(format!(
                    "head: {e} after {:?}",
                    String::from_utf8_lossy(&head)
                ))
            }
        }
    }
    let (status, headers, _) = parse_response(&String::from_utf8_lossy(&head));
    let len: usize = header(&headers, "content-length")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no content-length in {:?}", String::from_utf8_lossy(&head)))?;
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).map_err(|e| format!("body: {e}"))?;
    Ok((status, headers, body))
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
        let mut got = Vec::new();
        let mut byte = [0u8; 1];
        while !got.ends_with(b"\r\n\r\n") {
            match s.read(&mut byte) {
                Ok(1) => got.push(byte[0]),
                other => panic!("no 100 Continue: {other:?} after {got:?}"),
            }
        }
        let text = String::from_utf8_lossy(&got).to_string();
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
