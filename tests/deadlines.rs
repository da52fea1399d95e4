//! Issue 29: every phase has a deadline. A backend that stalls inside its
//! answer's body, a client that stops reading its answer, a slow POST body and
//! a slowloris head are each ended at their timeout, counted by side and phase
//! (`floatlb_timeouts_total`), logged with their termination code, and the
//! backend's slot is let go (`/status.json` in-flight back to 0). Over
//! HTTP/1 with raw sockets and curl, and over HTTP/2 with curl.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::Floatlb;

/// A backend that misbehaves by path, on a thread per connection:
/// `/stall` sends its head and 10 of 100 body bytes, then nothing until the
/// connection is closed; `/never` answers nothing; `/drip` sends its head and
/// then a body byte every 100 ms; `/big` sends a 32 MiB body as fast as it is taken;
/// anything else reads the head (and, for `/up`, waits for a body that may
/// never come) and answers 200 with `ok`.
struct Misbehaving {
    addr: SocketAddr,
}

impl Misbehaving {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                std::thread::spawn(move || Self::serve(conn));
            }
        });
        Misbehaving { addr }
    }

    fn serve(mut s: TcpStream) {
        // Bounded: no connection outlives the test by much.
        s.set_read_timeout(Some(Duration::from_secs(20))).ok();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match s.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => return,
            }
        }
        let text = String::from_utf8_lossy(&head).to_string();
        let path = text.split(' ').nth(1).unwrap_or("/").to_string();
        match path.as_str() {
            "/stall" => {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
                // Until floatlb closes it.
                let _ = s.read_to_end(&mut Vec::new());
            }
            "/never" => {
                // No answer at all, until floatlb closes the connection.
                let _ = s.read_to_end(&mut Vec::new());
            }
            "/drip" => {
                // A byte every 100 ms: each wait short, the whole long.
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n");
                for _ in 0..100 {
                    std::thread::sleep(Duration::from_millis(100));
                    if s.write_all(b"x").is_err() {
                        return;
                    }
                }
            }
            "/big" => {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 33554432\r\n\r\n");
                let piece = vec![b'x'; 64 * 1024];
                for _ in 0..512 {
                    if s.write_all(&piece).is_err() {
                        return;
                    }
                }
            }
            _ => {
                if path == "/up" {
                    // The body, or the connection's end when floatlb gives up.
                    let _ = s.read_exact(&mut [0u8; 100]);
                }
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
            }
        }
    }
}

/// One test's floatlb, its misbehaving backend and its access log.
struct Case {
    lb: Floatlb,
    log: PathBuf,
    _dir: tempfile::TempDir,
    _web: Misbehaving,
}

impl Case {
    /// `timeouts` in `[timeouts]`, and `extra` tables.
    fn start(timeouts: &str, extra: impl FnOnce(&Path) -> String) -> Case {
        let web = Misbehaving::start();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("access.log");
        let lb = start(&web, timeouts, &log, &extra(dir.path()));
        Case {
            lb,
            log,
            _dir: dir,
            _web: web,
        }
    }

    /// Sends `request` on a new connection; all that comes back until
    /// floatlb closes it.
    fn exchange(&self, request: &[u8]) -> String {
        let mut s = TcpStream::connect(self.lb.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        s.write_all(request).unwrap();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        String::from_utf8_lossy(&got).into_owned()
    }

    /// The access log has `line`, the timeout counter of `side` and `phase`
    /// is 1, and the backend's slot is free again.
    fn ended(&self, line: &str, side: &str, phase: &str) {
        log_line(&self.log, line);
        assert_eq!(timeouts(&self.lb, side, phase), 1.0);
        slot_released(&self.lb);
    }
}

/// floatlb with the misbehaving backend, `timeouts` in `[timeouts]`, an
/// access log of `{target} {status} {termination}` lines, and `extra` tables.
fn start(web: &Misbehaving, timeouts: &str, log: &Path, extra: &str) -> Floatlb {
    Floatlb::start(&format!(
        "[timeouts]\n{timeouts}\n\n[log]\naccess = \"custom\"\naccess-path = \"{}\"\nformat = \"{{target}} {{status}} {{termination}}\"\n\n[health]\nenabled = false\n\n[[backend]]\nname = \"web\"\naddress = \"{}\"\n\n{extra}",
        log.display(),
        web.addr
    ))
}

/// Waits (bounded) for a log line; all the lines.
fn log_line(log: &Path, want: &str) -> String {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.lines().any(|l| l == want) {
            return text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "no line {want:?} in the access log:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn timeouts(lb: &Floatlb, side: &str, phase: &str) -> f64 {
    let text = support::http_get(lb.admin, "/metrics").2;
    let series = format!("floatlb_timeouts_total{{phase=\"{phase}\",side=\"{side}\"}}");
    support::netns::metric(&text, &series).unwrap_or(0.0)
}

fn slot_released(lb: &Floatlb) {
    lb.wait_status("the backend's in-flight count back to 0", |s| {
        s.contains("\"in_flight\":0")
    });
}

#[test]
fn a_backend_that_stalls_inside_its_body_is_cut_at_the_server_timeout() {
    let case = Case::start("server = \"300ms\"", |_| String::new());
    let got = case.exchange(b"GET /stall HTTP/1.1\r\nHost: a\r\n\r\n");
    // RFC 9112 §8: the client sees an answer cut short of its length.
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
    assert!(got.ends_with("\r\n\r\n0123456789"), "{got}");
    case.ended("/stall 200 sD", "backend", "data");
}

#[test]
fn a_client_that_stops_reading_is_dropped_at_the_client_timeout() {
    let case = Case::start("client = \"300ms\"", |_| String::new());
    let mut s = TcpStream::connect(case.lb.addr).unwrap();
    s.write_all(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    // Nothing is read until floatlb has logged giving up on this client.
    case.ended("/big 200 cD", "client", "data");
    drop(s);
}

#[test]
fn a_slow_post_body_is_a_408() {
    let case = Case::start("server = \"300ms\"", |_| String::new());
    // 10 of 100 bytes, then nothing.
    let got =
        case.exchange(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n0123456789");
    assert!(got.starts_with("HTTP/1.1 408 "), "{got}");
    case.ended("/up 408 cD", "client", "data");
}

#[test]
fn a_slowloris_head_is_a_408_at_client_header() {
    let case = Case::start("client-header = \"300ms\"", |_| String::new());
    let mut s = TcpStream::connect(case.lb.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n")
        .unwrap();
    // A header line now and then, never the blank line.
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    for _ in 0..40 {
        if s.write_all(b"X-B: 2\r\n").is_err() {
            break;
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 408 "), "{got}");
    assert_eq!(timeouts(&case.lb, "client", "request"), 1.0);
}

#[test]
fn an_http2_stream_whose_backend_stalls_is_reset_at_the_server_timeout() {
    let port = support::free_port();
    let case = Case::start("server = \"300ms\"", |dir| {
        let (cert, key) = support::make_cert(dir, "a", &["a.test"], 2);
        format!(
            "[tls]\naddress = \"127.0.0.1:{port}\"\n[[tls.certificate]]\ncert = \"{}\"\nkey = \"{}\"\n",
            cert.display(),
            key.display()
        )
    });
    let resolve = format!("a.test:{port}:127.0.0.1");
    let out = Command::new("curl")
        .args(["-sk", "--http2", "--max-time", "10", "--resolve", &resolve])
        .arg(format!("https://a.test:{port}/stall"))
        .output()
        .expect("curl is missing: run vm-lab/install-deps");
    // RFC 9113 §8.1: a stream reset before its end is not a whole answer:
    // curl reports the stream's error (92) or a partial transfer (18).
    assert!(
        matches!(out.status.code(), Some(92 | 18)),
        "curl: {out:?}\n{}",
        case.lb.log()
    );
    assert_eq!(out.stdout, b"0123456789");
    // Recorded once the stream has ended, with what ended it.
    case.ended("/stall 200 sD", "backend", "data");
}

#[test]
fn the_request_deadline_bounds_the_whole_exchange() {
    // `[timeouts] request`: no answer head within it is a 504 ...
    let case = Case::start("request = \"400ms\"", |_| String::new());
    let got = case.exchange(b"GET /never HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    assert!(got.starts_with("HTTP/1.1 504 "), "{got}");
    assert!(got.contains("request's deadline"), "{got}");
    case.ended("/never 504 sH", "backend", "headers");
    // ... and an answer whose every piece comes in time, but not the whole,
    // is cut there.
    let got = case.exchange(b"GET /drip HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
    let body = got.split("\r\n\r\n").nth(1).unwrap_or("");
    assert!(body.len() < 100, "the whole body came: {got}");
    log_line(&case.log, "/drip 200 sD");
    slot_released(&case.lb);
}
