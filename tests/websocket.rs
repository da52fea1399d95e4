//! WebSocket through floatlb with a real client and server (Debian's
//! python3-websockets, `tests/support/ws.py`): the upgrade is relayed (RFC 9110
//! §7.8, RFC 6455 §4), messages pass both ways unchanged, the close handshake
//! completes end to end, and a tunnel ends at `[timeouts] tunnel` or, on a
//! drain, after every other connection with a FIN (not a reset).

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

const PYTHON: &str = "/usr/bin/python3";

fn ws_script() -> String {
    format!("{}/tests/support/ws.py", env!("CARGO_MANIFEST_DIR"))
}

/// Whether Debian's python3 with websockets is here; skips (or fails under
/// `FLOATLB_REQUIRE_NETNS=1`, as CI runs) with the reason when not.
fn websockets_available(test: &str) -> bool {
    let ok = Command::new(PYTHON)
        .args(["-c", "import websockets"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let why = "python3-websockets is not installed (vm-lab/install-deps)";
        if std::env::var("FLOATLB_REQUIRE_NETNS").as_deref() == Ok("1") {
            panic!("{test}: {why}");
        }
        eprintln!("SKIPPED {test}: {why}");
    }
    ok
}

/// The echo server, on a port of its own; killed (by its pid) on drop.
struct EchoServer {
    child: Child,
    addr: SocketAddr,
}

impl EchoServer {
    fn start() -> Self {
        let port = free_port();
        let mut child = Command::new(PYTHON)
            .args([&ws_script(), "server", &port.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the WebSocket echo server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "listening");
        EchoServer {
            child,
            addr: format!("127.0.0.1:{port}").parse().unwrap(),
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lb_for(ws: &EchoServer, extra: &str) -> Floatlb {
    Floatlb::start(&format!(
        "{extra}[health]\nenabled = false\n[[backend]]\nname = \"ws\"\naddress = \"{}\"\n",
        ws.addr
    ))
}

/// Runs ws.py as a client; returns its one line of output.
fn client(args: &[&str]) -> String {
    let out = Command::new(PYTHON)
        .arg(ws_script())
        .args(args)
        .output()
        .expect("run the WebSocket client");
    assert!(
        out.status.success(),
        "ws.py {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn websocket_messages_echo_both_ways_and_close_cleanly() {
    if !websockets_available("websocket_messages_echo_both_ways_and_close_cleanly") {
        return;
    }
    let ws = EchoServer::start();
    let lb = lb_for(&ws, "");
    let url = format!("ws://{}/chat", lb.addr);
    // RFC 6455 §7: the close handshake ran end to end, 1000 = normal closure.
    assert_eq!(
        client(&["echo", &url, "1000"]),
        "echoed 1000 1000 close=1000"
    );
    let m = http_get(lb.admin, "/metrics").2;
    assert_eq!(
        support::netns::metric(&m, "floatlb_tunnels_total"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        support::netns::metric(&m, "floatlb_tunnels_active"),
        Some(0.0),
        "{m}"
    );
}

#[test]
fn an_idle_tunnel_is_closed_at_the_tunnel_timeout_and_not_before() {
    if !websockets_available("an_idle_tunnel_is_closed_at_the_tunnel_timeout_and_not_before") {
        return;
    }
    let ws = EchoServer::start();
    // The default (1h) keeps a silent tunnel open; the client waits 1 s.
    let lb = lb_for(&ws, "");
    assert_eq!(
        client(&["idle", &format!("ws://{}/", lb.addr), "1"]),
        "open"
    );
    drop(lb);
    // `tunnel = 300ms`: floatlb ends it; the client waits up to 10 s.
    let lb = lb_for(&ws, "[timeouts]\ntunnel = \"300ms\"\n");
    assert_eq!(
        client(&["idle", &format!("ws://{}/", lb.addr), "10"]),
        "ended"
    );
}

/// Opens a WebSocket by hand (RFC 6455 §4.1) and returns the socket after the 101.
fn raw_upgrade(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    websocket_handshake(&mut s);
    s
}

#[test]
fn a_drain_closes_tunnels_last_with_a_fin() {
    if !websockets_available("a_drain_closes_tunnels_last_with_a_fin") {
        return;
    }
    let ws = EchoServer::start();
    // A drain bound far beyond the wait below: only closing the tunnel lets floatlb exit.
    let mut lb = lb_for(&ws, "[timeouts]\ndrain = \"60s\"\n");
    let mut tunnel = raw_upgrade(lb.addr);
    websocket_echo_hi(&mut tunnel);
    lb.signal(libc::SIGTERM);
    let mut rest = Vec::new();
    let read = tunnel.read_to_end(&mut rest);
    assert!(
        read.is_ok(),
        "the tunnel was reset, not closed: {read:?}\n{}",
        lb.log()
    );
    let start = Instant::now();
    let code = loop {
        if let Some(code) = lb.child.try_wait().unwrap() {
            break code;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "floatlb kept draining with only a tunnel open:\n{}",
            lb.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(code.success(), "{code:?}");
}

/// RFC 9110 §7.8: Upgrade is hop-by-hop unless Connection lists it; without
/// that, the request is an ordinary one (the echo server refuses a plain GET).
#[test]
fn upgrade_without_the_connection_option_is_not_relayed() {
    if !websockets_available("upgrade_without_the_connection_option_is_not_relayed") {
        return;
    }
    let ws = EchoServer::start();
    let lb = lb_for(&ws, "");
    let mut s = TcpStream::connect(lb.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(
        b"GET /chat HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: close\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let answer = read_answer(&mut s).unwrap();
    assert!(answer.head.starts_with("HTTP/1.1 "), "{answer:?}");
    assert_ne!(answer.status, 101, "{answer:?}");
}

#[test]
fn websocket_over_the_tls_listener_echoes_and_closes_cleanly() {
    if !websockets_available("websocket_over_the_tls_listener_echoes_and_closes_cleanly") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = make_cert(dir.path(), "ws", &["ws.test"], 2);
    let tls: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let ws = EchoServer::start();
    let _lb = lb_for(
        &ws,
        &format!(
            "[tls]\naddress = \"{tls}\"\n[[tls.certificate]]\ncert = \"{}\"\nkey = \"{}\"\n\n",
            cert.display(),
            key.display()
        ),
    );
    // The tunnel relays through rustls both ways (RFC 6455 §4 over TLS: wss).
    let url = format!("wss://{tls}/chat");
    assert_eq!(client(&["echo", &url, "300"]), "echoed 300 300 close=1000");
}
