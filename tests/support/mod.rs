//! Test helpers: small HTTP backends on 127.0.0.1, the real `floatlb` binary
//! under a temporary config, and the tests' one HTTP/1 answer reader
//! (`client`).
#![allow(dead_code)]

pub mod client;
pub mod netns;
pub mod peers;
pub mod tls_client;
pub mod vrrp_lab;

pub use client::{parse_response, read_answer, read_answer_to, read_head, Answer};

use std::convert::Infallible;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

type BoxBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// What a test backend saw.
#[derive(Default)]
pub struct Seen {
    /// Requests other than floatlb's health checks.
    pub requests: AtomicU64,
    pub health_checks: AtomicU64,
    pub last_headers: Mutex<Vec<(String, String)>>,
    /// The path and query of the last request.
    pub last_target: Mutex<String>,
}

/// A web server on 127.0.0.1 that names itself in `x-backend` and the body.
///
/// Paths: `/` (name), `/slow?ms=N`, `/upload` (POST, answers the byte count),
/// `/download?bytes=N`, `/headers` (request headers, one per line), `/login`
/// (sets a `JSESSIONID` cookie of its own).
pub struct TestBackend {
    pub name: String,
    pub addr: SocketAddr,
    pub seen: Arc<Seen>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl TestBackend {
    pub fn start(name: &str) -> Self {
        Self::start_with_delay(name, Duration::ZERO)
    }

    /// A backend on a given address (e.g. inside a test namespace).
    pub fn start_on(name: &str, addr: &str) -> Self {
        Self::start_full(name, Duration::ZERO, addr)
    }

    /// Every request waits `delay` before answering (a "stuck" server).
    pub fn start_with_delay(name: &str, delay: Duration) -> Self {
        Self::start_full(name, delay, "127.0.0.1:0")
    }

    fn start_full(name: &str, delay: Duration, bind: &str) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt.block_on(tokio::net::TcpListener::bind(bind)).unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let (n, s) = (name.to_string(), seen.clone());
        rt.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let (n, s) = (n.clone(), s.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| serve(req, n.clone(), s.clone(), delay));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        TestBackend {
            name: name.into(),
            addr,
            seen,
            runtime: Some(rt),
        }
    }

    pub fn requests(&self) -> u64 {
        self.seen.requests.load(Ordering::SeqCst)
    }

    /// Stops the server abruptly: listener closed, open connections dropped.
    pub fn kill(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for TestBackend {
    fn drop(&mut self) {
        self.kill();
    }
}

fn query(req: &Request<Incoming>, key: &str) -> Option<u64> {
    req.uri()
        .query()?
        .split('&')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))?
        .parse()
        .ok()
}

async fn serve(
    req: Request<Incoming>,
    name: String,
    seen: Arc<Seen>,
    delay: Duration,
) -> Result<Response<BoxBody>, Infallible> {
    let is_check = req
        .headers()
        .get("user-agent")
        .is_some_and(|v| v == "floatlb-health");
    if is_check {
        seen.health_checks.fetch_add(1, Ordering::SeqCst);
    } else {
        seen.requests.fetch_add(1, Ordering::SeqCst);
    }
    *seen.last_headers.lock().unwrap() = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    *seen.last_target.lock().unwrap() = req
        .uri()
        .path_and_query()
        .map_or("", |p| p.as_str())
        .to_string();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let path = req.uri().path().to_string();
    let body: BoxBody = match path.as_str() {
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(query(&req, "ms").unwrap_or(1000))).await;
            Full::new(Bytes::from(name.clone())).boxed()
        }
        "/upload" => {
            let mut body = req.into_body();
            let mut n = 0u64;
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(f) => n += f.data_ref().map_or(0, |d| d.len() as u64),
                    Err(_) => break,
                }
            }
            Full::new(Bytes::from(n.to_string())).boxed()
        }
        "/download" => {
            let total = query(&req, "bytes").unwrap_or(0);
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            let chunks = (0..total.div_ceil(chunk.len() as u64)).map(move |i| {
                let left = total - i * chunk.len() as u64;
                Ok::<_, Infallible>(Frame::data(
                    chunk.slice(..left.min(chunk.len() as u64) as usize),
                ))
            });
            let stream = futures_lite_iter(chunks);
            let mut resp = Response::new(StreamBody::new(stream).boxed());
            resp.headers_mut()
                .insert("x-backend", name.parse().unwrap());
            resp.headers_mut()
                .insert("content-length", total.to_string().parse().unwrap());
            return Ok(resp);
        }
        "/login" => {
            // An application's own session cookie (for sticky `prefix` mode).
            let mut resp = Response::new(Full::new(Bytes::from(name.clone())).boxed());
            let cookie = format!("JSESSIONID={name}-session; Path=/");
            resp.headers_mut()
                .insert("set-cookie", cookie.parse().unwrap());
            resp.headers_mut()
                .insert("x-backend", name.parse().unwrap());
            return Ok(resp);
        }
        "/headers" => {
            let text: String = req
                .headers()
                .iter()
                .map(|(k, v)| format!("{}: {}\n", k, v.to_str().unwrap_or("")))
                .collect();
            Full::new(Bytes::from(text)).boxed()
        }
        _ => Full::new(Bytes::from(name.clone())).boxed(),
    };
    let mut resp = Response::new(body);
    resp.headers_mut()
        .insert("x-backend", name.parse().unwrap());
    Ok(resp)
}

/// An iterator as a stream that yields between items, so big bodies stream.
fn futures_lite_iter<I: Iterator + Unpin>(iter: I) -> IterStream<I> {
    IterStream(iter)
}

pub struct IterStream<I>(I);

impl<I: Iterator + Unpin> futures_core::Stream for IterStream<I> {
    type Item = I::Item;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<I::Item>> {
        std::task::Poll::Ready(self.0.next())
    }
}

/// `floatlb <command> -c <config> args...`: (exit code, stdout, stderr).
pub fn floatlb_cmd(
    command: &str,
    config: &std::path::Path,
    args: &[&str],
) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_floatlb"))
        .args([command, "-c"])
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

thread_local! {
    /// The binary `Floatlb::start_from` runs instead of the built one.
    static BINARY: std::cell::RefCell<Option<PathBuf>> = const { std::cell::RefCell::new(None) };
    /// `[[listen]]` tables `Floatlb::start_with_listeners` adds after the first.
    static LISTENERS: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// A running floatlb process with its own config file; killed on drop.
pub struct Floatlb {
    pub child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    /// Further `[[listen]]` tables (empty: the one `[listen]`).
    listeners: String,
    _dir: tempfile::TempDir,
}

/// A port for a process the test starts, which binds it later.
///
/// Taken below the kernel's ephemeral range (`ip_local_port_range`, 32768
/// and up by default), so no outgoing connection of a parallel test can hold
/// it by the time the process binds; a per-process counter keeps two tests of
/// one binary apart, and the pid spreads binaries that run at once.
pub fn free_port() -> u16 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let low = ephemeral_low().clamp(2048, 32768) as u64;
    let span = low - 1024;
    let seed = u64::from(std::process::id()) * 97;
    for _ in 0..span {
        let port = 1024 + (seed + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        if std::net::TcpListener::bind(("127.0.0.1", port as u16)).is_ok() {
            return port as u16;
        }
    }
    panic!("no free port below the ephemeral range");
}

fn ephemeral_low() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768)
}

/// `[[backend]]` tables for these backends, weight 1 unless given.
pub fn backend_tables(backends: &[(&TestBackend, u32)]) -> String {
    backends
        .iter()
        .map(|(b, w)| {
            format!(
                "[[backend]]\nname = \"{}\"\naddress = \"{}\"\nweight = {}\n",
                b.name, b.addr, w
            )
        })
        .collect()
}

impl Floatlb {
    /// Starts floatlb; `body` is the config without `[listen]` and `[admin]`.
    pub fn start(body: &str) -> Self {
        Self::start_limited(body, None)
    }

    /// Like `start`, with `ulimit -n` set to `nofile` for the process.
    pub fn start_limited(body: &str, nofile: Option<u64>) -> Self {
        Self::start_full(body, nofile, "127.0.0.1")
    }

    /// Like `start`, listening on `listen_ip` ("::1", "::" for dual stack);
    /// `addr` is then the address a client of that family connects to.
    pub fn start_listening_on(body: &str, listen_ip: &str) -> Self {
        Self::start_full(body, None, listen_ip)
    }

    /// Like `start`, with the first listener as a `[[listen]]` table and
    /// `listeners` (more `[[listen]]` tables) after it.
    pub fn start_with_listeners(body: &str, listeners: &str) -> Self {
        LISTENERS.with(|l| *l.borrow_mut() = listeners.to_string());
        let lb = Self::start(body);
        LISTENERS.with(|l| l.borrow_mut().clear());
        lb
    }

    /// Like `start`, run from `binary` (a copy of floatlb's, for upgrades).
    pub fn start_from(body: &str, binary: &std::path::Path) -> Self {
        BINARY.with(|b| *b.borrow_mut() = Some(binary.to_path_buf()));
        let lb = Self::start(body);
        BINARY.with(|b| *b.borrow_mut() = None);
        lb
    }

    /// The worker's pid, from `/status.json`.
    pub fn worker_pid(&self) -> u32 {
        let s = self.status_json();
        s.split("\"worker_pid\":")
            .nth(1)
            .and_then(|r| r.split([',', '}']).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no worker_pid in {s}"))
    }

    fn start_full(body: &str, nofile: Option<u64>, listen_ip: &str) -> Self {
        // A port taken between `free_port` and floatlb's bind (by something
        // outside these tests) is the only reason to try again.
        for _ in 0..3 {
            let mut lb = Self::spawn(body, nofile, listen_ip);
            match lb.wait_listening() {
                Ok(()) => return lb,
                Err(log) if log.contains("Address already in use") => continue,
                Err(log) => panic!("floatlb did not start listening; log:\n{log}"),
            }
        }
        panic!("floatlb found its ports taken three times in a row");
    }

    fn spawn(body: &str, nofile: Option<u64>, listen_ip: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let admin_port = free_port();
        let listen_ip: std::net::IpAddr = listen_ip.parse().unwrap();
        let listen = SocketAddr::new(listen_ip, port);
        // A client of the wildcard connects to the loopback of its family.
        let addr = match listen_ip {
            std::net::IpAddr::V6(a) if a.is_unspecified() => {
                SocketAddr::new(std::net::Ipv6Addr::LOCALHOST.into(), port)
            }
            _ => listen,
        };
        let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
        let config_path = dir.path().join("proxy.toml");
        let listeners = LISTENERS.with(|l| l.borrow().clone());
        std::fs::write(
            &config_path,
            Self::render_all(listen, admin, &listeners, body),
        )
        .unwrap();
        let log_path = dir.path().join("floatlb.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let binary = BINARY
            .with(|b| b.borrow().clone())
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_floatlb").into());
        let mut cmd = match nofile {
            None => Command::new(binary),
            Some(n) => {
                let mut c = Command::new("sh");
                c.args(["-c", &format!("ulimit -n {n} && exec \"$0\" \"$@\"")])
                    .arg(env!("CARGO_BIN_EXE_floatlb"));
                c
            }
        };
        let child = cmd
            .args(["run", "-c"])
            .arg(&config_path)
            .args(["--log", "info"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn floatlb");
        Floatlb {
            child,
            addr,
            admin,
            config_path,
            log_path,
            listeners,
            _dir: dir,
        }
    }

    pub fn render(addr: SocketAddr, admin: SocketAddr, body: &str) -> String {
        Self::render_all(addr, admin, "", body)
    }

    fn render_all(addr: SocketAddr, admin: SocketAddr, listeners: &str, body: &str) -> String {
        let table = if listeners.is_empty() {
            "[listen]"
        } else {
            "[[listen]]"
        };
        // Without further listeners, the text is what it always was (tests name its lines).
        let listeners = if listeners.is_empty() {
            String::new()
        } else {
            format!("{listeners}\n")
        };
        format!("{table}\naddress = \"{addr}\"\nworkers = 2\n\n{listeners}[admin]\naddress = \"{admin}\"\n\n{body}")
    }

    /// Waits until both listeners accept; the log when floatlb exits or
    /// does not get there within 10 s.
    fn wait_listening(&mut self) -> Result<(), String> {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            // The supervisor binds the sockets before its worker serves them:
            // a connect alone would succeed early, so wait for the worker too.
            if self.log().contains("worker serving")
                && TcpStream::connect(self.admin).is_ok()
                && TcpStream::connect(self.addr).is_ok()
            {
                return Ok(());
            }
            if let Ok(Some(_)) = self.child.try_wait() {
                return Err(self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(self.log())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Rewrites the config (same listen/admin addresses) and sends SIGHUP.
    pub fn reload(&self, body: &str) {
        let text = Self::render_all(self.addr, self.admin, &self.listeners, body);
        std::fs::write(&self.config_path, text).unwrap();
        self.signal(libc::SIGHUP);
    }

    pub fn signal(&self, sig: i32) {
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// Peak resident memory (VmHWM) in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    pub fn status_json(&self) -> String {
        http_get(self.admin, "/status.json").2
    }

    /// Waits (bounded) until `/status.json` satisfies `pred`.
    pub fn wait_status(&self, what: &str, pred: impl Fn(&str) -> bool) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if pred(&self.status_json()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!(
            "timed out waiting for {what}; status: {}\nlog:\n{}",
            self.status_json(),
            self.log()
        );
    }
}

impl Drop for Floatlb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request on a fresh connection: (status, headers, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, Vec<(String, String)>, String) {
    raw_request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"),
    )
}

/// Sends raw bytes on a fresh connection and reads one answer (by its
/// framing, `client::read_answer_to`): status 0 and the error as the body
/// when no answer comes.
pub fn raw_request(addr: SocketAddr, req: &str) -> (u16, Vec<(String, String)>, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let method = req.split(' ').next().unwrap_or("");
    match read_answer_to(&mut s, method) {
        Ok(answer) => answer.parts(),
        Err(e) => (0, Vec::new(), e),
    }
}

pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A keep-alive HTTP/1.1 client over one connection (hyper), reconnecting when closed.
pub struct KeepAlive {
    addr: SocketAddr,
    rt: tokio::runtime::Runtime,
    tx: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
}

impl KeepAlive {
    pub fn new(addr: SocketAddr) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        KeepAlive { addr, rt, tx: None }
    }

    /// GET `path`: Ok((status, x-backend, body)) or Err(description).
    pub fn get(&mut self, path: &str) -> Result<(u16, String, Bytes), String> {
        let addr = self.addr;
        let mut tx = self.tx.take();
        let path = path.to_string();
        let (res, tx) = self.rt.block_on(async move {
            if tx.as_ref().is_none_or(|t| t.is_closed()) {
                let stream = match tokio::net::TcpStream::connect(addr).await {
                    Ok(s) => s,
                    Err(e) => return (Err(format!("connect: {e}")), None),
                };
                let (t, conn) =
                    match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
                        Ok(x) => x,
                        Err(e) => return (Err(format!("handshake: {e}")), None),
                    };
                tokio::spawn(conn);
                tx = Some(t);
            }
            let mut t = tx.unwrap();
            if t.ready().await.is_err() {
                return (Err("connection closed".into()), None);
            }
            let req = Request::get(path.as_str())
                .header("host", "test")
                .body(Full::new(Bytes::new()))
                .unwrap();
            let fut = tokio::time::timeout(Duration::from_secs(10), t.send_request(req));
            let resp = match fut.await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => return (Err(format!("request: {e}")), None),
                Err(_) => return (Err("timeout".into()), None),
            };
            let status = resp.status().as_u16();
            let backend = resp
                .headers()
                .get("x-backend")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let body = match resp.into_body().collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => return (Err(format!("body: {e}")), None),
            };
            (Ok((status, backend, body)), Some(t))
        });
        self.tx = tx;
        res
    }
}

/// Runs `clients` keep-alive clients, each doing up to `max_requests` GETs
/// until `stop` is set or `limit` passes. Returns (ok, failures with reasons, per-backend counts).
pub fn load(
    addr: SocketAddr,
    clients: usize,
    max_requests: usize,
    limit: Duration,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<LoadResult> {
    std::thread::spawn(move || {
        let handles: Vec<_> = (0..clients)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut r = LoadResult::default();
                    let mut c = KeepAlive::new(addr);
                    let start = Instant::now();
                    for _ in 0..max_requests {
                        if stop.load(Ordering::SeqCst) || start.elapsed() > limit {
                            break;
                        }
                        match c.get("/") {
                            Ok((200, b, _)) => {
                                r.ok += 1;
                                *r.by_backend.entry(b).or_default() += 1;
                            }
                            Ok((s, _, body)) => r
                                .failures
                                .push(format!("status {s}: {}", String::from_utf8_lossy(&body))),
                            Err(e) => r.failures.push(e),
                        }
                    }
                    r
                })
            })
            .collect();
        let mut total = LoadResult::default();
        for h in handles {
            let r = h.join().unwrap();
            total.ok += r.ok;
            total.failures.extend(r.failures);
            for (k, v) in r.by_backend {
                *total.by_backend.entry(k).or_default() += v;
            }
        }
        total
    })
}

#[derive(Default, Debug)]
pub struct LoadResult {
    pub ok: u64,
    pub failures: Vec<String>,
    pub by_backend: std::collections::HashMap<String, u64>,
}

/// Metric names the Grafana dashboard in `grafana/` queries.
pub fn dashboard_metric_names() -> Vec<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/grafana/floatlb-dashboard.json"
    );
    let json = std::fs::read_to_string(path).unwrap();
    let mut names: Vec<String> = json
        .match_indices("floatlb_")
        .map(|(i, _)| {
            json[i..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
                .collect()
        })
        .collect();
    names.sort();
    names.dedup();
    assert!(names.len() >= 10, "{names:?}");
    names
}

/// The opening handshake of a WebSocket (RFC 6455 §4.1) on `s`, with §1.3's
/// example key; returns the 101's head, lower-cased, after checking its
/// Upgrade, Connection and Sec-WebSocket-Accept.
pub fn websocket_handshake(s: &mut std::net::TcpStream) -> String {
    use std::io::Write;
    s.write_all(
        b"GET /chat HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let head = read_head(s).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    assert!(head.contains("connection: upgrade"), "{head}");
    // RFC 6455 §1.3's example key gives this accept value.
    assert!(
        head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    head
}

/// One masked text frame "hi" (RFC 6455 §5.2) and its unmasked echo.
pub fn websocket_echo_hi(s: &mut std::net::TcpStream) {
    use std::io::{Read, Write};
    s.write_all(&[0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2])
        .unwrap();
    let mut echo = [0u8; 4];
    s.read_exact(&mut echo).unwrap();
    assert_eq!(echo, [0x81, 2, b'h', b'i']);
}

/// A self-signed ECDSA P-256 certificate for `names` (the first is the CN),
/// valid `days`, made with `openssl req`: (cert, key) paths in `dir`, named
/// after `file`.
pub fn make_cert(
    dir: &std::path::Path,
    file: &str,
    names: &[&str],
    days: u32,
) -> (PathBuf, PathBuf) {
    let (cert, key) = (
        dir.join(format!("{file}.pem")),
        dir.join(format!("{file}.key")),
    );
    let san: Vec<String> = names.iter().map(|n| format!("DNS:{n}")).collect();
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", &days.to_string(), "-subj"])
        .arg(format!("/CN={}", names[0]))
        .arg("-addext")
        .arg(format!("subjectAltName={}", san.join(",")))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl is missing: run vm-lab/install-deps");
    assert!(
        out.status.success(),
        "openssl req: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// `curl -sik` with `args` to `url`: (status, headers, body, the raw output).
pub fn curl_sik(url: &str, args: &[&str]) -> (u16, Vec<(String, String)>, String, String) {
    let out = Command::new("curl")
        .args(["-sik", "--max-time", "10"])
        .args(args)
        .arg(url)
        .output()
        .expect("curl (vm-lab/install-deps installs it)");
    assert!(out.status.success(), "curl {args:?} {url}: {out:?}");
    let raw = String::from_utf8_lossy(&out.stdout).into_owned();
    let (status, headers, body) = parse_response(&raw);
    (status, headers, body, raw)
}

/// `curl -sk -i` over HTTPS to `host` (resolved to 127.0.0.1) on `port`,
/// with `args` (e.g. `--http2`): (status, headers, body).
pub fn https_get(
    port: u16,
    host: &str,
    path: &str,
    args: &[&str],
) -> (u16, Vec<(String, String)>, String) {
    let resolve = format!("{host}:{port}:127.0.0.1");
    let out = Command::new("curl")
        .args(["-sk", "-i", "--max-time", "10", "--resolve", &resolve])
        .args(args)
        .arg(format!("https://{host}:{port}{path}"))
        .output()
        .expect("curl is missing: run vm-lab/install-deps");
    assert!(out.status.success(), "curl {host}{path}: {out:?}");
    parse_response(&String::from_utf8_lossy(&out.stdout))
}
