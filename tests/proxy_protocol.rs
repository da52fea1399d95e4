//! The PROXY protocol (HAProxy's `doc/proxy-protocol.txt`) with HAProxy as
//! the peer both ways: HAProxy `send-proxy` (v1, §2.1) and `send-proxy-v2`
//! (§2.2) to a floatlb `accept-proxy` listener, and floatlb `send-proxy` v1
//! and v2 to an HAProxy `bind ... accept-proxy` frontend that answers with
//! the client address it was told (`%ci`). Clients connect from their own
//! loopback addresses (127.0.0.5, 127.0.0.6) so the address a header carries
//! differs from the connection's.

mod support;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::peers::{wait_port, Killed};
use support::{backend_tables, free_port, http_get, make_cert, read_answer, Floatlb, TestBackend};

fn haproxy(dir: &Path, cfg: &str) -> Killed {
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, cfg).unwrap();
    let child = Command::new("haproxy")
        .args(["-db", "-f", path.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("haproxy (vm-lab/install-deps installs it)");
    Killed(child)
}

/// A connection to `to` from the loopback address `from`.
fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let src: IpAddr = from.parse().unwrap();
    s.bind(&SocketAddr::new(src, 0).into()).unwrap();
    s.connect_timeout(&to.into(), Duration::from_secs(5))
        .unwrap();
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// One GET from `from` to `to`: (status, body).
fn get_from(from: &str, to: SocketAddr, path: &str) -> (u16, String) {
    let mut s = connect_from(from, to);
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: site\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let a = read_answer(&mut s).unwrap();
    (a.status, a.text())
}

/// Whether the connection is closed without a byte of answer.
fn closed_unanswered(mut s: TcpStream) -> bool {
    let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: site\r\n\r\n");
    let mut buf = [0u8; 64];
    matches!(s.read(&mut buf), Ok(0) | Err(_))
}

fn metric(lb: &Floatlb, series: &str) -> u64 {
    let text = http_get(lb.admin, "/metrics").2;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

/// §2.1 and §2.2 as received: HAProxy (`mode tcp`, connecting from
/// 127.0.0.3) puts a v1 and a v2 header before a client's bytes; floatlb's
/// backend sees the client (127.0.0.5) in X-Forwarded-For, the access log
/// names it, and a route's `source` matcher takes it. A connection from a
/// source not in `accept-proxy`, and one from a listed source without a
/// header, are closed unanswered and counted.
#[test]
fn haproxy_sends_the_client_to_an_accept_proxy_listener() {
    let dir = tempfile::tempdir().unwrap();
    let web = TestBackend::start("web");
    let (flb_port, v1_port, v2_port) = (free_port(), free_port(), free_port());
    let log = dir.path().join("access.log");
    let body = format!(
        "{}\n[log]\naccess = \"custom\"\naccess-path = \"{}\"\nformat = \"{{client}} {{target}} {{status}}\"\n\n\
         [[route]]\nname = \"five\"\npath = \"/who\"\nsource = \"127.0.0.5\"\nrespond = {{ status = 200, body = \"route source matched\" }}\n",
        backend_tables(&[(&web, 1)]),
        log.display()
    );
    let listeners = format!(
        "[[listen]]\nname = \"behind-l4\"\naddress = \"127.0.0.1:{flb_port}\"\naccept-proxy = [\"127.0.0.3/32\"]\n"
    );
    let lb = Floatlb::start_with_listeners(&body, &listeners);
    let _h = haproxy(
        dir.path(),
        &format!(
            "defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 10s\n  timeout server 10s\n\
             listen v1\n  bind 127.0.0.1:{v1_port}\n  server flb 127.0.0.1:{flb_port} send-proxy source 127.0.0.3\n\
             listen v2\n  bind 127.0.0.1:{v2_port}\n  server flb 127.0.0.1:{flb_port} send-proxy-v2 source 127.0.0.3\n"
        ),
    );
    wait_port(v1_port);
    wait_port(v2_port);
    for port in [v1_port, v2_port] {
        let to: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let (status, text) = get_from("127.0.0.5", to, "/headers");
        assert_eq!(status, 200, "{text}\n{}", lb.log());
        assert!(
            text.to_lowercase().contains("x-forwarded-for: 127.0.0.5"),
            "the backend saw {text}"
        );
        let (status, text) = get_from("127.0.0.5", to, "/who");
        assert_eq!((status, text.as_str()), (200, "route source matched"));
        let (_, text) = get_from("127.0.0.6", to, "/who");
        assert!(
            text.contains("web"),
            "127.0.0.6 is not the route's source: {text}"
        );
    }
    let start = Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("127.0.0.6 /who 200")
    {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "access log: {:?}",
            std::fs::read_to_string(&log)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("127.0.0.5 /headers 200"), "{logged}");
    assert!(
        !logged.contains("127.0.0.3"),
        "the L4 balancer's address was logged: {logged}"
    );
    // Six requests, and the port probes' connections HAProxy passed on.
    assert!(metric(&lb, "floatlb_proxy_protocol_total{result=\"ok\"}") >= 6);

    let flb: SocketAddr = format!("127.0.0.1:{flb_port}").parse().unwrap();
    assert!(
        closed_unanswered(connect_from("127.0.0.1", flb)),
        "untrusted source served"
    );
    assert!(
        closed_unanswered(connect_from("127.0.0.3", flb)),
        "no header, served"
    );
    assert_eq!(
        metric(&lb, "floatlb_proxy_protocol_total{result=\"untrusted\"}"),
        1
    );
    assert_eq!(
        metric(&lb, "floatlb_proxy_protocol_total{result=\"invalid\"}"),
        1
    );
}

/// §2.1 and §2.2 as sent: floatlb pools with `send-proxy = "v1"` and
/// `"v2"` in front of HAProxy `accept-proxy` frontends, which answer with
/// the client address the header gave them. Two clients one after the other
/// each see their own address (a connection that carried a header is not
/// reused for another client), and health checks pass through the
/// `accept-proxy` bind (they send v1 UNKNOWN / v2 LOCAL).
#[test]
fn floatlb_sends_the_client_to_haproxy_accept_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let (h1, h2) = (free_port(), free_port());
    let _h = haproxy(
        dir.path(),
        &format!(
            "defaults\n  mode http\n  timeout connect 2s\n  timeout client 10s\n  timeout server 10s\n\
             frontend pp1\n  bind 127.0.0.1:{h1} accept-proxy\n  http-request return status 200 content-type text/plain lf-string \"client=%ci\"\n\
             frontend pp2\n  bind 127.0.0.1:{h2} accept-proxy\n  http-request return status 200 content-type text/plain lf-string \"client=%ci\"\n"
        ),
    );
    wait_port(h1);
    wait_port(h2);
    let body = format!(
        "[health]\ninterval = \"200ms\"\n\n\
         [[pool]]\nname = \"pp1\"\nbackends = [\"127.0.0.1:{h1}\"]\nsend-proxy = \"v1\"\n\n\
         [[pool]]\nname = \"pp2\"\nbackends = [\"127.0.0.1:{h2}\"]\nsend-proxy = \"v2\"\n\n\
         [[route]]\npath-prefix = \"/v1\"\npool = \"pp1\"\n\n\
         [[route]]\npath-prefix = \"/v2\"\npool = \"pp2\"\n"
    );
    let lb = Floatlb::start(&body);
    // Checks pass through accept-proxy: the backends stay (or come) up.
    std::thread::sleep(Duration::from_millis(700));
    for path in ["/v1", "/v2"] {
        for from in ["127.0.0.5", "127.0.0.6", "127.0.0.5"] {
            let (status, text) = get_from(from, lb.addr, path);
            assert_eq!(
                (status, text.trim()),
                (200, format!("client={from}").as_str()),
                "{path} from {from}\n{}",
                lb.log()
            );
        }
    }
    let down = http_get(lb.admin, "/metrics")
        .2
        .lines()
        .filter(|l| l.starts_with("floatlb_backend_up") && l.ends_with(" 0"))
        .count();
    assert_eq!(down, 0, "a backend failed its checks:\n{}", lb.log());
}

/// §2.2.2 (PP2_TYPE_AUTHORITY) as sent: a client of floatlb's TLS listener
/// asking for `a.example` reaches an HAProxy `accept-proxy` frontend through
/// a `send-proxy = "v2"` pool, and HAProxy reads the client's address and the
/// server name from the header (HAProxy 2.6 has no fetch for the ALPN and
/// SSL TLVs; the unit tests check their bytes).
#[test]
fn v2_carries_the_clients_tls_facts() {
    let dir = tempfile::tempdir().unwrap();
    make_cert(dir.path(), "a", &["a.example"], 30);
    let hp = free_port();
    let _h = haproxy(
        dir.path(),
        &format!(
            "defaults\n  mode http\n  timeout connect 2s\n  timeout client 10s\n  timeout server 10s\n\
             frontend pp2\n  bind 127.0.0.1:{hp} accept-proxy\n  http-request return status 200 content-type text/plain \
             lf-string \"client=%ci authority=%[fc_pp_authority]\"\n"
        ),
    );
    wait_port(hp);
    let tls = free_port();
    let d = dir.path().display();
    let body = format!(
        "[tls]\naddress = \"127.0.0.1:{tls}\"\n[[tls.certificate]]\ncert = \"{d}/a.pem\"\nkey = \"{d}/a.key\"\n\n\
         [[pool]]\nname = \"pp2\"\nbackends = [\"127.0.0.1:{hp}\"]\nsend-proxy = \"v2\"\n"
    );
    let lb = Floatlb::start(&body);
    wait_port(tls);
    let out = Command::new("curl")
        .args([
            "-sk",
            "--max-time",
            "10",
            "--interface",
            "127.0.0.5",
            "--resolve",
        ])
        .arg(format!("a.example:{tls}:127.0.0.1"))
        .arg(format!("https://a.example:{tls}/"))
        .output()
        .expect("curl (vm-lab/install-deps installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.trim(),
        "client=127.0.0.5 authority=a.example",
        "{}",
        lb.log()
    );
}
