//! `[[listen]] mode = "tcp"` with real peers: a TCP echo service (a server
//! that speaks first, as SSH and SMTP do) relayed both ways with its
//! half-close, source hashing, connect retries, connect-only health checks
//! and a drain that closes open connections with a FIN; and TLS passthrough
//! to two nginx TLS servers chosen by the ClientHello's server name (RFC 6066
//! §3), told apart by the certificate `openssl s_client` receives.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::peers::{nginx, wait_port, Killed};
use support::{free_port, http_get, make_cert, Floatlb};

/// An echo server that greets each connection with `hello from {name}\n`,
/// then sends back what it gets until the client's FIN, then closes.
fn echo_server(name: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
                let _ = writeln!(s, "hello from {name}");
                let mut buf = [0u8; 16384];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn greeting(s: &TcpStream) -> String {
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    line.trim().to_string()
}

fn wait_log(path: &Path, what: &str) -> String {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(what) {
            return text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no {what:?} in the access log:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Backends of pools named starting with `pool` that are down now.
fn backends_down(lb: &Floatlb, pool: &str) -> usize {
    let label = format!("pool=\"{pool}");
    http_get(lb.admin, "/metrics")
        .2
        .lines()
        .filter(|l| l.starts_with("floatlb_backend_up") && l.contains(&label))
        .filter(|l| l.ends_with(" 0"))
        .count()
}

/// Bytes both ways with the backend speaking first, a 1 MiB round trip,
/// the client's half-close passed on (the backend's answer still arrives,
/// then its close); `source` hashing keeps a client on one backend; a dead
/// backend's failed connect is retried on another; a backend's `maxconn`
/// holds (no queue); the echo servers pass the
/// pool's connect-only checks (an HTTP check would fail them); one access
/// log line per connection with bytes both ways and its termination code;
/// and a drain closes an open connection with a FIN, not a reset.
#[test]
fn echo_through_a_tcp_listener() {
    let dir = tempfile::tempdir().unwrap();
    let (e1, e2) = (echo_server("e1"), echo_server("e2"));
    let dead = format!("127.0.0.1:{}", free_port());
    let (hashed, retried, single) = (free_port(), free_port(), free_port());
    let log = dir.path().join("access.log");
    let body = format!(
        "[health]\nenabled = false\n\n\
         [log]\naccess = \"custom\"\naccess-path = \"{}\"\nformat = \"{{method}} {{target}} {{bytes}} {{pool}} {{termination}}\"\n\n\
         [[pool]]\nname = \"echo\"\nbackends = [\"{e1}\", \"{e2}\"]\nbalance = {{ algorithm = \"source\" }}\nhealth = {{ interval = \"200ms\" }}\n\n\
         [[pool]]\nname = \"flaky\"\nbackends = [\"{dead}\", \"{e1}\"]\nretries = 2\nhealth = {{ enabled = false }}\n\n\
         [[pool]]\nname = \"single\"\nhealth = {{ enabled = false }}\n\
         [[pool.backend]]\nname = \"e2\"\naddress = \"{e2}\"\nmaxconn = 1\n\n\
         [[backend]]\nname = \"http\"\naddress = \"{e2}\"\n",
        log.display()
    );
    let listeners = format!(
        "[[listen]]\nname = \"echo\"\naddress = \"127.0.0.1:{hashed}\"\nmode = \"tcp\"\npool = \"echo\"\n\n\
         [[listen]]\nname = \"flaky\"\naddress = \"127.0.0.1:{retried}\"\nmode = \"tcp\"\npool = \"flaky\"\n\n\
         [[listen]]\nname = \"single\"\naddress = \"127.0.0.1:{single}\"\nmode = \"tcp\"\npool = \"single\"\n"
    );
    let lb = Floatlb::start_with_listeners(&body, &listeners);
    let echo: SocketAddr = format!("127.0.0.1:{hashed}").parse().unwrap();

    let mut s = connect(echo);
    let first = greeting(&s);
    assert!(first.starts_with("hello from e"), "{first}");
    let payload: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    let writer = {
        let mut w = s.try_clone().unwrap();
        let p = payload.clone();
        std::thread::spawn(move || {
            w.write_all(&p).unwrap();
            w.shutdown(std::net::Shutdown::Write).unwrap();
        })
    };
    let mut back = Vec::new();
    s.read_to_end(&mut back).unwrap();
    writer.join().unwrap();
    assert_eq!(back.len(), payload.len(), "echoed bytes");
    assert!(back == payload, "the echo differs");
    for _ in 0..3 {
        assert_eq!(
            greeting(&connect(echo)),
            first,
            "source hashing moved the client"
        );
    }
    let text = wait_log(&log, &format!("in={}", payload.len()));
    let line = text.lines().find(|l| l.contains("in=1048576")).unwrap();
    let to_client = first.len() + 1 + payload.len();
    assert_eq!(
        line,
        format!("TCP - in=1048576 {to_client} echo --"),
        "{text}"
    );

    let flaky: SocketAddr = format!("127.0.0.1:{retried}").parse().unwrap();
    for _ in 0..4 {
        assert_eq!(greeting(&connect(flaky)), "hello from e1");
    }
    // maxconn = 1: a second connection is closed (no queue), and the slot
    // is free again once the first has ended.
    let single: SocketAddr = format!("127.0.0.1:{single}").parse().unwrap();
    let held = connect(single);
    assert_eq!(greeting(&held), "hello from e2");
    let mut refused = connect(single);
    assert!(
        matches!(refused.read(&mut [0u8; 8]), Ok(0) | Err(_)),
        "over maxconn, served"
    );
    drop(held);
    let start = Instant::now();
    loop {
        let s = connect(single);
        let mut line = String::new();
        if BufReader::new(&s).read_line(&mut line).is_ok_and(|n| n > 0) {
            assert_eq!(line.trim(), "hello from e2");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the slot was not given back"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        backends_down(&lb, "echo"),
        0,
        "echo servers failed their checks:\n{}",
        lb.log()
    );

    // A drain: the open connection gets a FIN (EOF), not a reset.
    let mut open = connect(echo);
    assert_eq!(greeting(&open), first);
    lb.signal(libc::SIGTERM);
    let mut rest = Vec::new();
    match open.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) => panic!("the drain reset the connection: {e}\n{}", lb.log()),
    }
}

/// The subject of the certificate `openssl s_client` gets from `port` when
/// it asks for `name` (None: no SNI).
fn subject(port: u16, name: Option<&str>) -> String {
    let mut c = Command::new("openssl");
    c.args(["s_client", "-connect", &format!("127.0.0.1:{port}")]);
    match name {
        Some(n) => c.args(["-servername", n]),
        None => c.arg("-noservername"),
    };
    let out = c
        .stdin(Stdio::null())
        .output()
        .expect("openssl (vm-lab/install-deps installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix("subject="))
        .unwrap_or_else(|| panic!("no certificate for {name:?}: {text}"))
        .trim()
        .to_string()
}

/// RFC 6066 §3 read without terminating TLS (RFC 8446 §4.1.2): a TCP
/// listener with `sni` entries sends each ClientHello to the nginx of the
/// pool its server name picks (exact name, `*.suffix` at any depth, else the
/// default `pool`, also for a hello without a name); the certificate the
/// client receives is that nginx's own, and a request goes through end to
/// end. A client that is not TLS is closed (PR in the access log).
#[test]
fn tls_passthrough_by_server_name() {
    let dir = tempfile::tempdir().unwrap();
    make_cert(dir.path(), "a", &["a.example"], 30);
    make_cert(dir.path(), "b", &["b.example", "*.b.example"], 30);
    let (pa, pb, front) = (free_port(), free_port(), free_port());
    let server = |port: u16, site: &str| {
        format!(
            "server {{ listen 127.0.0.1:{port} ssl; ssl_certificate {d}/{site}.pem; ssl_certificate_key {d}/{site}.key; return 200 \"site {site}\\n\"; }}\n",
            d = dir.path().display()
        )
    };
    let _nginx = nginx(
        dir.path(),
        &format!("{}{}", server(pa, "a"), server(pb, "b")),
    );
    wait_port(pa);
    wait_port(pb);
    let log = dir.path().join("access.log");
    let body = format!(
        "[health]\nenabled = false\n\n\
         [log]\naccess = \"custom\"\naccess-path = \"{}\"\nformat = \"{{method}} {{target}} {{pool}} {{termination}}\"\n\n\
         [[pool]]\nname = \"site-a\"\nbackends = [\"127.0.0.1:{pa}\"]\nhealth = {{ interval = \"200ms\" }}\n\n\
         [[pool]]\nname = \"site-b\"\nbackends = [\"127.0.0.1:{pb}\"]\nhealth = {{ interval = \"200ms\" }}\n\n\
         [[backend]]\nname = \"unused\"\naddress = \"127.0.0.1:{pa}\"\n",
        log.display()
    );
    let listeners = format!(
        "[[listen]]\nname = \"passthrough\"\naddress = \"127.0.0.1:{front}\"\nmode = \"tcp\"\n\
         sni = {{ \"a.example\" = \"site-a\", \"*.b.example\" = \"site-b\" }}\npool = \"site-a\"\n"
    );
    let lb = Floatlb::start_with_listeners(&body, &listeners);
    for (name, cn) in [
        (Some("a.example"), "a.example"),
        (Some("x.b.example"), "b.example"),
        (Some("deep.x.B.example"), "b.example"),
        (Some("other.example"), "a.example"),
        (None, "a.example"),
    ] {
        let got = subject(front, name);
        assert!(got.ends_with(cn), "{name:?}: got {got}\n{}", lb.log());
    }
    let out = Command::new("curl")
        .args(["-sk", "--max-time", "10", "--resolve"])
        .arg(format!("www.b.example:{front}:127.0.0.1"))
        .arg(format!("https://www.b.example:{front}/"))
        .output()
        .expect("curl (vm-lab/install-deps installs it)");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "site b\n");
    wait_log(&log, "TCP www.b.example in=");

    let mut plain = connect(format!("127.0.0.1:{front}").parse().unwrap());
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 16];
    assert!(
        matches!(plain.read(&mut buf), Ok(0) | Err(_)),
        "plain text relayed"
    );
    wait_log(&log, "TCP - in=0 - PR");
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        backends_down(&lb, "site-"),
        0,
        "TLS backends failed their checks"
    );
}

/// `floatlb check` names an unknown pool of a TCP listener, `pool` on an
/// HTTP listener, and a route that names a TCP listener, at their keys.
#[test]
fn check_points_at_unknown_pools() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[[listen]]\naddress = \"127.0.0.1:8080\"\npool = \"web\"\n\n\
         [[listen]]\naddress = \"127.0.0.1:8443\"\nmode = \"tcp\"\n\
         sni = { \"a.example\" = \"nope\" }\npool = \"missing\"\n\n\
         [[pool]]\nname = \"web\"\nbackends = [\"127.0.0.1:9000\"]\n\n\
         [[route]]\nlistener = \"127.0.0.1:8443\"\npool = \"web\"\n",
    )
    .unwrap();
    let (code, out, err) = support::floatlb_cmd("check", &path, &[]);
    let text = format!("{out}{err}");
    assert_ne!(code, 0, "{text}");
    assert!(
        text.contains("listen[1].pool: no pool named \"missing\" (pools: web)"),
        "{text}"
    );
    assert!(text.contains("no pool named \"nope\""), "{text}");
    assert!(
        text.contains("listen[0].pool: pool and sni are for mode = \"tcp\""),
        "{text}"
    );
    assert!(
        text.contains("route[0].listener: listener \"127.0.0.1:8443\" is mode = \"tcp\""),
        "{text}"
    );
}

/// The PROXY protocol on a TCP listener, both ways (HAProxy's
/// `doc/proxy-protocol.txt` §2.1 and §2.2): a client at 127.0.0.5 goes
/// through HAProxy `send-proxy-v2` (connecting from 127.0.0.3) to a floatlb
/// TCP listener with `accept-proxy`, whose pool sends a v1 header to an
/// HAProxy `accept-proxy` frontend answering with the client it was told:
/// the client's own address arrives at the end of the chain, and floatlb's
/// access log names it.
#[test]
fn proxy_protocol_through_a_tcp_listener() {
    let dir = tempfile::tempdir().unwrap();
    let (front, l4, answer) = (free_port(), free_port(), free_port());
    let cfg = format!(
        "defaults\n  timeout connect 2s\n  timeout client 10s\n  timeout server 10s\n\
         listen front\n  mode tcp\n  bind 127.0.0.1:{front}\n  server flb 127.0.0.1:{l4} send-proxy-v2 source 127.0.0.3\n\
         frontend answer\n  mode http\n  bind 127.0.0.1:{answer} accept-proxy\n\
         \x20 http-request return status 200 content-type text/plain lf-string \"client=%ci\"\n"
    );
    let path = dir.path().join("haproxy.cfg");
    std::fs::write(&path, cfg).unwrap();
    let _h = Killed(
        Command::new("haproxy")
            .args(["-db", "-f", path.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy (vm-lab/install-deps installs it)"),
    );
    wait_port(front);
    wait_port(answer);
    let log = dir.path().join("access.log");
    let body = format!(
        "[health]\nenabled = false\n\n\
         [log]\naccess = \"custom\"\naccess-path = \"{}\"\nformat = \"{{client}} {{method}} {{pool}} {{termination}}\"\n\n\
         [[pool]]\nname = \"answer\"\nbackends = [\"127.0.0.1:{answer}\"]\nsend-proxy = \"v1\"\n\n\
         [[backend]]\nname = \"unused\"\naddress = \"127.0.0.1:{answer}\"\n",
        log.display()
    );
    let listeners = format!(
        "[[listen]]\nname = \"l4\"\naddress = \"127.0.0.1:{l4}\"\nmode = \"tcp\"\npool = \"answer\"\n\
         accept-proxy = [\"127.0.0.3\"]\n"
    );
    let lb = Floatlb::start_with_listeners(&body, &listeners);
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&"127.0.0.5:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    let to: SocketAddr = format!("127.0.0.1:{front}").parse().unwrap();
    sock.connect(&to.into()).unwrap();
    let mut s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    assert!(text.ends_with("client=127.0.0.5"), "{text}\n{}", lb.log());
    // The line is written when both sides have closed.
    drop(s);
    wait_log(&log, "127.0.0.5 TCP answer --");
}

/// A drain with another client connection still open (an HTTP request
/// whose backend never answers) closes a TCP listener's connection anyway,
/// in order: half of `[timeouts] handover` before the drain ends, rather
/// than leaving it to be dropped with the process. The relay's close comes
/// while the HTTP request is still open.
#[test]
fn a_drain_closes_tcp_connections_in_order_before_the_others_end() {
    // Accepts and reads, never answers: the HTTP request stays open.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in silent.incoming().flatten() {
            held.push(s);
        }
    });
    let (lb, mut open) = echo_listener(&format!(
        "[timeouts]\nhandover = \"2s\"\ndrain = \"2s\"\nserver = \"30s\"\n\n\
         [[backend]]\nname = \"silent\"\naddress = \"{silent_addr}\"\n"
    ));

    let http_done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut req = TcpStream::connect(lb.addr).unwrap();
    req.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    req.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let done = http_done.clone();
    let waiter = std::thread::spawn(move || {
        let _ = req.read(&mut [0u8; 1024]);
        done.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    // The request has reached the silent backend before the drain starts.
    let start = Instant::now();
    while lb_metric(&lb, "floatlb_backend_in_flight_requests") < 1.0 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the request never reached its backend"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    lb.signal(libc::SIGTERM);
    let mut rest = Vec::new();
    if let Err(e) = open.read_to_end(&mut rest) {
        panic!(
            "the drain reset the connection (or never closed it): {e}\n{}",
            lb.log()
        );
    }
    assert!(
        !http_done.load(std::sync::atomic::Ordering::SeqCst),
        "the TCP connection was closed only after the HTTP request ended:\n{}",
        lb.log()
    );
    drop(lb);
    let _ = waiter.join();
}

/// floatlb with a TCP listener in front of an echo server `e1` (pool "echo",
/// health checks off), `more` after; returns it with a connection through
/// the listener that has had its greeting.
fn echo_listener(more: &str) -> (Floatlb, TcpStream) {
    let echo = echo_server("e1");
    let port = free_port();
    let body = format!(
        "[health]\nenabled = false\n\n[[pool]]\nname = \"echo\"\nbackends = [\"{echo}\"]\n\n{more}"
    );
    let listeners =
        format!("[[listen]]\nname = \"echo\"\naddress = \"127.0.0.1:{port}\"\nmode = \"tcp\"\npool = \"echo\"\n");
    let lb = Floatlb::start_with_listeners(&body, &listeners);
    let open = connect(format!("127.0.0.1:{port}").parse().unwrap());
    assert_eq!(greeting(&open), "hello from e1");
    (lb, open)
}

/// An upgrade in place does not close a TCP connection: the retiring worker
/// keeps relaying it while it waits `[timeouts] handover` for its connections
/// (past the half-way point where a planned handover closes it), then its
/// own drain closes it in order, with a FIN.
#[test]
fn an_upgrade_leaves_tcp_connections_to_the_retiring_workers_drain() {
    let (lb, mut open) = echo_listener("[timeouts]\nhandover = \"3s\"\ndrain = \"2s\"\n");
    let (code, out, err) = support::floatlb_cmd("ctl", &lb.config_path, &["upgrade"]);
    assert_eq!(code, 0, "{out}{err}\n{}", lb.log());
    // Past half of `handover` into the retire: still relayed.
    std::thread::sleep(Duration::from_millis(1800));
    open.write_all(b"ping\n").unwrap();
    let mut back = [0u8; 5];
    if let Err(e) = open.read_exact(&mut back) {
        panic!("the upgrade closed the TCP connection: {e}\n{}", lb.log());
    }
    assert_eq!(&back, b"ping\n");
    // The retiring worker's drain closes it in order.
    let mut rest = Vec::new();
    if let Err(e) = open.read_to_end(&mut rest) {
        panic!(
            "the retiring worker reset the connection (or never closed it): {e}\n{}",
            lb.log()
        );
    }
}

/// The sum of a metric's samples on `/metrics`.
fn lb_metric(lb: &Floatlb, name: &str) -> f64 {
    http_get(lb.admin, "/metrics")
        .2
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
