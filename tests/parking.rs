//! Idle cleartext HTTP/1 connections parked out of their task (issue 34,
//! `src/frontend/park.rs`): after a second idle the connection's socket sits
//! in the parking lot's epoll set instead of the runtime's (checked in
//! `/proc`), and then serves its next request correctly, one split over
//! several writes included (RFC 9112 §2.1: a message is a byte stream,
//! however it arrives); is closed at the idle timeout; and is closed at
//! once by a SIGTERM drain and by a binary upgrade's retiring worker, whose
//! open connections are closed as in a planned handover. TLS connections
//! are not parked, and serve on after the same idle spell.

mod support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};
use support::tls_client::any_cert_config;
use support::{backend_tables, free_port, make_cert, Floatlb, TestBackend};

/// Longer than the lot's PARK_AFTER (1 s).
const PARKED: Duration = Duration::from_millis(1600);

/// The socket inodes of `/proc/net/tcp{,6}` lines with this local port:
/// the listener's (state 0A) and the connection's from `client_port`.
fn inodes(port: u16, client_port: u16) -> (Option<String>, Option<String>) {
    let (mut listener, mut conn) = (None, None);
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let port_of = |a: &str| u16::from_str_radix(a.rsplit(':').next().unwrap(), 16).unwrap();
            if f.len() < 10 || port_of(f[1]) != port {
                continue;
            }
            if f[3] == "0A" {
                listener = Some(f[9].to_string());
            } else if port_of(f[2]) == client_port {
                conn = Some(f[9].to_string());
            }
        }
    }
    (listener, conn)
}

/// For each epoll descriptor of `pid`, the descriptors it watches.
fn epoll_sets(pid: u32) -> Vec<BTreeSet<String>> {
    let mut sets = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
        let e = e.unwrap();
        let Ok(target) = std::fs::read_link(e.path()) else {
            continue;
        };
        if target.to_string_lossy() != "anon_inode:[eventpoll]" {
            continue;
        }
        let fd = e.file_name().to_string_lossy().into_owned();
        let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).unwrap_or_default();
        let set = info
            .lines()
            .filter_map(|l| l.strip_prefix("tfd:"))
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect();
        sets.push(set);
    }
    sets
}

/// The worker's descriptor for a socket inode.
fn fd_of(pid: u32, inode: &str) -> Option<String> {
    let want = format!("socket:[{inode}]");
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(Result::ok)
        .find(|e| std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy() == want))
        .map(|e| e.file_name().to_string_lossy().into_owned())
}

/// Whether the worker watches the connection from `client_port` in an epoll
/// set other than the runtime's (the one that holds the listener): parked.
fn parked(lb: &Floatlb, port: u16, client_port: u16) -> bool {
    let pid = lb.worker_pid();
    let (Some(listener), Some(conn)) = inodes(port, client_port) else {
        panic!("no socket for port {port} / client {client_port}");
    };
    let listener = fd_of(pid, &listener).expect("the worker's listener");
    let conn = fd_of(pid, &conn).expect("the worker's end of the connection");
    epoll_sets(pid)
        .iter()
        .any(|set| set.contains(&conn) && !set.contains(&listener))
}

fn start(idle: &str, backend: &TestBackend) -> Floatlb {
    Floatlb::start(&format!(
        "[timeouts]\nidle = \"{idle}\"\ndrain = \"30s\"\nhandover = \"30s\"\n{}",
        backend_tables(&[(backend, 1)])
    ))
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

fn get(s: &mut TcpStream) -> (u16, String) {
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    let a = support::read_answer(s).unwrap();
    (a.status, String::from_utf8_lossy(&a.body).into_owned())
}

/// Reads until the server closes; how long that took.
fn closed_within(s: &mut impl Read, bound: Duration) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return start.elapsed(),
            Ok(_) => {}
            Err(e) => panic!("not a clean close after {:?}: {e}", start.elapsed()),
        }
        assert!(start.elapsed() < bound, "still open after {bound:?}");
    }
}

/// RFC 9112 §2.1: a parked cleartext connection's next request, arriving
/// in three writes, is answered; the connection then goes on as before.
#[test]
fn a_parked_connection_serves_its_next_request_split_over_writes() {
    let b = TestBackend::start("b1");
    let lb = start("60s", &b);
    let mut s = connect(lb.addr);
    let me = s.local_addr().unwrap().port();
    assert_eq!(get(&mut s), (200, "b1".to_string()));
    std::thread::sleep(Duration::from_millis(300));
    assert!(!parked(&lb, lb.addr.port(), me), "parked before PARK_AFTER");
    std::thread::sleep(PARKED);
    assert!(
        parked(&lb, lb.addr.port(), me),
        "not parked after 1.9 s idle"
    );
    for piece in ["GE", "T / HTTP/1.1\r\nHo", "st: a\r\n\r\n"] {
        s.write_all(piece.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    let a = support::read_answer(&mut s).unwrap();
    assert_eq!((a.status, a.text()), (200, "b1".to_string()));
    assert_eq!(get(&mut s), (200, "b1".to_string()));
    assert!(!parked(&lb, lb.addr.port(), me), "busy again, still parked");
}

/// A parked connection is closed at `timeouts.idle`, counted from when it
/// went idle, not from when it was parked.
#[test]
fn a_parked_connection_is_closed_at_the_idle_timeout() {
    let b = TestBackend::start("b1");
    let lb = start("3s", &b);
    let mut s = connect(lb.addr);
    let me = s.local_addr().unwrap().port();
    assert_eq!(get(&mut s), (200, "b1".to_string()));
    let idle = Instant::now();
    std::thread::sleep(PARKED);
    assert!(parked(&lb, lb.addr.port(), me), "not parked");
    closed_within(&mut s, Duration::from_secs(8));
    let after = idle.elapsed();
    assert!(
        after >= Duration::from_millis(2900),
        "closed after {after:?}, before the idle timeout"
    );
}

/// SIGTERM: a parked connection is closed at once (as the serve loop closes
/// an idle one on a drain), so the worker exits without waiting for
/// `timeouts.drain` (30 s here).
#[test]
fn sigterm_closes_a_parked_connection_at_once() {
    let b = TestBackend::start("b1");
    let mut lb = start("60s", &b);
    let mut s = connect(lb.addr);
    let me = s.local_addr().unwrap().port();
    assert_eq!(get(&mut s), (200, "b1".to_string()));
    std::thread::sleep(PARKED);
    assert!(parked(&lb, lb.addr.port(), me), "not parked");
    lb.signal(libc::SIGTERM);
    closed_within(&mut s, Duration::from_secs(5));
    let start = Instant::now();
    let code = loop {
        if let Some(c) = lb.child.try_wait().unwrap() {
            break c;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "did not exit\n{}",
            lb.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(code.success(), "{code:?}");
}

/// A binary upgrade (SIGUSR2): the retiring worker closes its idle
/// connections as in a planned handover, parked ones included, without
/// waiting for `timeouts.handover` (30 s here).
#[test]
fn an_upgrade_closes_a_parked_connection_at_once() {
    let b = TestBackend::start("b1");
    let lb = start("60s", &b);
    let old = lb.worker_pid();
    let mut s = connect(lb.addr);
    let me = s.local_addr().unwrap().port();
    assert_eq!(get(&mut s), (200, "b1".to_string()));
    std::thread::sleep(PARKED);
    assert!(parked(&lb, lb.addr.port(), me), "not parked");
    lb.signal(libc::SIGUSR2);
    closed_within(&mut s, Duration::from_secs(5));
    assert_ne!(lb.worker_pid(), old, "no new worker\n{}", lb.log());
    assert_eq!(get(&mut connect(lb.addr)), (200, "b1".to_string()));
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

fn tls_setup(idle: &str, backend: &TestBackend) -> (Floatlb, SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = make_cert(dir.path(), "a", &["a.test"], 2);
    let tls: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let lb = Floatlb::start(&format!(
        "[timeouts]\nidle = \"{idle}\"\n{}\n[tls]\naddress = \"{tls}\"\n\n[[tls.certificate]]\ncert = \"{}\"\nkey = \"{}\"\n",
        backend_tables(&[(backend, 1)]),
        cert.display(),
        key.display()
    ));
    (lb, tls, dir)
}

fn tls_connect(addr: SocketAddr) -> Tls {
    let name = ServerName::try_from("a.test").unwrap();
    let conn = ClientConnection::new(any_cert_config(b"http/1.1"), name).unwrap();
    let tcp = (0..100)
        .find_map(|_| {
            TcpStream::connect(addr)
                .inspect_err(|_| std::thread::sleep(Duration::from_millis(50)))
                .ok()
        })
        .expect("the TLS listener never accepted");
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.set_nodelay(true).unwrap();
    let mut s = StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock).unwrap();
    }
    s
}

/// RFC 8446 §5.1: a TLS connection is not parked (it would hold more
/// memory parked than in its task: docs/performance.md), and serves its
/// next request after the same idle spell, in three records sent apart.
#[test]
fn an_idle_tls_connection_stays_in_its_task_and_serves_a_request_split_over_records() {
    let b = TestBackend::start("b1");
    let (lb, addr, _dir) = tls_setup("60s", &b);
    let mut s = tls_connect(addr);
    let me = s.sock.local_addr().unwrap().port();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .unwrap();
    let a = support::read_answer(&mut s).unwrap();
    assert_eq!((a.status, a.text()), (200, "b1".to_string()));
    std::thread::sleep(PARKED);
    assert!(!parked(&lb, addr.port(), me), "a TLS connection was parked");
    for piece in ["GET / HT", "TP/1.1\r\nHost: a.", "test\r\n\r\n"] {
        s.conn.writer().write_all(piece.as_bytes()).unwrap();
        while s.conn.wants_write() {
            s.conn.write_tls(&mut s.sock).unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let a = support::read_answer(&mut s).unwrap();
    assert_eq!((a.status, a.text()), (200, "b1".to_string()));
}
