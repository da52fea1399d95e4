//! End-to-end behaviour of the proxy: the real binary in front of in-test
//! backends on 127.0.0.1.

mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;

fn count_backends(addr: SocketAddr, n: usize, path: &str) -> HashMap<String, u64> {
    let mut c = KeepAlive::new(addr);
    let mut m = HashMap::new();
    for _ in 0..n {
        let (status, b, _) = c.get(path).expect("request");
        assert_eq!(status, 200);
        *m.entry(b).or_insert(0) += 1;
    }
    m
}

#[test]
fn round_robin_spreads_by_weight() {
    let (a, b, c) = (
        TestBackend::start("a"),
        TestBackend::start("b"),
        TestBackend::start("c"),
    );
    let lb = Floatlb::start(&backend_tables(&[(&a, 3), (&b, 1), (&c, 1)]));
    let m = count_backends(lb.addr, 500, "/");
    assert_eq!((m["a"], m["b"], m["c"]), (300, 100, 100), "{m:?}");
}

#[test]
fn static_rr_and_first() {
    let (a, b) = (TestBackend::start("a"), TestBackend::start("b"));
    let lb = Floatlb::start(&format!(
        "[balance]\nalgorithm = \"static-rr\"\n{}",
        backend_tables(&[(&a, 1), (&b, 1)])
    ));
    let m = count_backends(lb.addr, 100, "/");
    assert_eq!((m["a"], m["b"]), (50, 50), "{m:?}");
    drop(lb);
    let lb = Floatlb::start(&format!(
        "[balance]\nalgorithm = \"first\"\n{}",
        backend_tables(&[(&a, 1), (&b, 1)])
    ));
    let m = count_backends(lb.addr, 50, "/");
    assert_eq!(
        m.get("a"),
        Some(&50),
        "first always picks the first free backend: {m:?}"
    );
}

#[test]
fn least_conn_avoids_stuck_backend() {
    let stuck = TestBackend::start_with_delay("stuck", Duration::from_secs(3));
    let fast = TestBackend::start("fast");
    let lb = Floatlb::start(&format!(
        "[balance]\nalgorithm = \"least-conn\"\n{}",
        backend_tables(&[(&stuck, 1), (&fast, 1)])
    ));
    // Park two requests on whichever backend they land on; the stuck one keeps them.
    let addr = lb.addr;
    let parked: Vec<_> = (0..2)
        .map(|_| std::thread::spawn(move || http_get(addr, "/")))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let m = count_backends(lb.addr, 40, "/");
    assert_eq!(
        m.get("fast"),
        Some(&40),
        "new work must go to the backend that is not stuck: {m:?}"
    );
    for p in parked {
        p.join().unwrap();
    }
}

#[test]
fn uri_hash_is_sticky_and_spreads() {
    let bs: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|n| TestBackend::start(n))
        .collect();
    let tables = backend_tables(&bs.iter().map(|b| (b, 1)).collect::<Vec<_>>());
    for consistent in [false, true] {
        let lb = Floatlb::start(&format!(
            "[balance]\nalgorithm = \"uri\"\nconsistent = {consistent}\n{tables}"
        ));
        let mut seen = HashMap::new();
        let mut c = KeepAlive::new(lb.addr);
        for i in 0..60 {
            let path = format!("/item/{}", i % 20);
            let (_, b, _) = c.get(&path).unwrap();
            let first = seen.entry(path.clone()).or_insert_with(|| b.clone());
            assert_eq!(*first, b, "{path} moved between backends");
        }
        let distinct: std::collections::HashSet<_> = seen.values().collect();
        assert!(
            distinct.len() >= 2,
            "20 URIs all hashed to one backend: {seen:?}"
        );
    }
}

#[test]
fn url_param_sticky_and_falls_back_to_round_robin() {
    let (a, b) = (TestBackend::start("a"), TestBackend::start("b"));
    let lb = Floatlb::start(&format!(
        "[balance]\nalgorithm = \"url-param\"\nurl-param = \"user\"\n{}",
        backend_tables(&[(&a, 1), (&b, 1)])
    ));
    let m = count_backends(lb.addr, 20, "/?user=alice&x=1");
    assert_eq!(m.len(), 1, "same user must stick: {m:?}");
    let m = count_backends(lb.addr, 20, "/?other=1");
    assert_eq!(
        (m["a"], m["b"]),
        (10, 10),
        "absent parameter falls back to round-robin: {m:?}"
    );
}

#[test]
fn source_hash_sticks_per_client_ip() {
    let bs: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|n| TestBackend::start(n))
        .collect();
    let lb = Floatlb::start(&format!(
        "[balance]\nalgorithm = \"source\"\n{}",
        backend_tables(&bs.iter().map(|b| (b, 1)).collect::<Vec<_>>())
    ));
    let mut per_ip = HashMap::new();
    for i in 1..=12u8 {
        let local: SocketAddr = format!("127.0.0.{i}:0").parse().unwrap();
        for _ in 0..3 {
            let s =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            s.bind(&local.into()).unwrap();
            s.connect(&lb.addr.into()).unwrap();
            let mut s: TcpStream = s.into();
            s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                .unwrap();
            let answer = read_answer(&mut s).unwrap();
            let b = answer.header("x-backend").unwrap().to_string();
            let first = per_ip.entry(i).or_insert_with(|| b.clone());
            assert_eq!(*first, b, "client 127.0.0.{i} moved");
        }
    }
    let distinct: std::collections::HashSet<_> = per_ip.values().collect();
    assert!(
        distinct.len() >= 2,
        "12 client IPs all on one backend: {per_ip:?}"
    );
}

#[test]
fn random_two_choices_uses_all_backends() {
    let bs: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|n| TestBackend::start(n))
        .collect();
    let lb = Floatlb::start(&format!(
        "[balance]\nalgorithm = \"random\"\ndraws = 2\n{}",
        backend_tables(&bs.iter().map(|b| (b, 1)).collect::<Vec<_>>())
    ));
    let m = count_backends(lb.addr, 300, "/");
    for n in ["a", "b", "c"] {
        assert!(m.get(n).copied().unwrap_or(0) > 30, "{n} starved: {m:?}");
    }
}

#[test]
fn killing_a_backend_under_load_loses_nothing() {
    let a = TestBackend::start("a");
    let mut b = TestBackend::start("b");
    let c = TestBackend::start("c");
    let lb = Floatlb::start(&format!(
        "[health]\ninterval = \"200ms\"\ntimeout = \"200ms\"\n{}",
        backend_tables(&[(&a, 1), (&b, 1), (&c, 1)])
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let run = load(lb.addr, 8, 5000, Duration::from_secs(20), stop.clone());
    std::thread::sleep(Duration::from_millis(700));
    let before = b.requests();
    b.kill();
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let r = run.join().unwrap();
    assert!(before > 0, "b got no traffic before the kill");
    assert!(r.ok > 500, "too little load to mean anything: {}", r.ok);
    assert!(
        r.failures.is_empty(),
        "{} failed requests, e.g. {:?}",
        r.failures.len(),
        &r.failures[..r.failures.len().min(5)]
    );
}

#[test]
fn reload_under_load_adds_and_removes_backends() {
    let a = TestBackend::start("a");
    let b = TestBackend::start("b");
    let c = TestBackend::start("c");
    let lb = Floatlb::start(&backend_tables(&[(&a, 1), (&b, 1)]));
    let stop = Arc::new(AtomicBool::new(false));
    let run = load(lb.addr, 6, 5000, Duration::from_secs(20), stop.clone());
    std::thread::sleep(Duration::from_millis(500));
    lb.reload(&backend_tables(&[(&a, 1), (&c, 1)]));
    lb.wait_status("backend c after reload", |s| {
        s.contains("\"name\":\"c\"") && !s.contains("\"name\":\"b\"")
    });
    std::thread::sleep(Duration::from_millis(200));
    let b_after_reload = b.requests();
    std::thread::sleep(Duration::from_millis(700));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let r = run.join().unwrap();
    assert!(
        r.failures.is_empty(),
        "{} failed: {:?}",
        r.failures.len(),
        &r.failures[..r.failures.len().min(5)]
    );
    assert!(c.requests() > 0, "added backend got no traffic");
    assert_eq!(
        b.requests(),
        b_after_reload,
        "removed backend still got traffic"
    );
    assert!(lb.log().contains("configuration reloaded"));
}

#[test]
fn invalid_reload_keeps_serving_and_names_the_line() {
    let a = TestBackend::start("a");
    let lb = Floatlb::start(&backend_tables(&[(&a, 1)]));
    let bad = format!("{}\n[health]\nrise = \"two\"\n", backend_tables(&[(&a, 1)]));
    lb.reload(&bad);
    let start = Instant::now();
    while !lb.log().contains("reload failed") && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = lb.log();
    assert!(log.contains("reload failed"), "{log}");
    assert!(
        log.contains("health.rise"),
        "error should name the key: {log}"
    );
    assert!(
        log.contains("proxy.toml:14:"),
        "error should name the line: {log}"
    );
    let (status, _, body) = http_get(lb.addr, "/");
    assert_eq!((status, body.as_str()), (200, "a"));
}

#[test]
fn all_backends_down_gives_503_with_reason() {
    let mut a = TestBackend::start("a");
    let lb = Floatlb::start(&format!(
        "[health]\ninterval = \"100ms\"\ntimeout = \"100ms\"\nfall = 1\n{}",
        backend_tables(&[(&a, 1)])
    ));
    assert_eq!(http_get(lb.addr, "/").0, 200);
    a.kill();
    lb.wait_status("backend down", |s| s.contains("\"up\":false"));
    let (status, _, body) = http_get(lb.addr, "/");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no healthy backend"), "{body}");
}

#[test]
fn dead_backend_before_health_check_gives_502_with_reason() {
    let mut a = TestBackend::start("a");
    let lb = Floatlb::start(&format!(
        "[health]\nenabled = false\n[proxy]\nretries = 1\n{}",
        backend_tables(&[(&a, 1)])
    ));
    a.kill();
    std::thread::sleep(Duration::from_millis(100));
    let (status, _, body) = http_get(lb.addr, "/");
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("connect to"), "{body}");
}

#[test]
fn slow_backend_gives_504() {
    let a = TestBackend::start("a");
    let lb = Floatlb::start(&format!(
        "[timeouts]\nserver = \"300ms\"\n{}",
        backend_tables(&[(&a, 1)])
    ));
    // A 504 (not the backend's 200 after 3 s) shows the server timeout fired.
    let (status, _, body) = http_get(lb.addr, "/slow?ms=3000");
    assert_eq!(status, 504, "{body}");
    assert!(body.contains("did not answer"), "{body}");
}

#[test]
fn http10_client_and_forwarded_headers() {
    let a = TestBackend::start("a");
    let lb = Floatlb::start(&backend_tables(&[(&a, 1)]));
    // ab without -k: HTTP/1.0, no Host, connection closes after the response.
    let (status, headers, body) = raw_request(lb.addr, "GET /headers HTTP/1.0\r\n\r\n");
    assert_eq!(status, 200);
    assert!(
        header(&headers, "transfer-encoding").is_none(),
        "no chunked to a 1.0 client"
    );
    assert!(body.contains("x-forwarded-for: 127.0.0.1"), "{body}");
    assert!(body.contains("x-forwarded-proto: http"), "{body}");
    assert!(
        body.contains("host: "),
        "backend must get a Host header: {body}"
    );
    // Hop-by-hop headers (and those Connection names) stop at the proxy; Host is kept.
    let (status, _, body) = raw_request(
        lb.addr,
        "GET /headers HTTP/1.1\r\nHost: shop.example\r\nConnection: close, X-Hop\r\nX-Hop: secret\r\nX-End: kept\r\n\r\n",
    );
    assert_eq!(status, 200);
    assert!(body.contains("host: shop.example"), "{body}");
    assert!(body.contains("x-end: kept"), "{body}");
    assert!(!body.contains("x-hop"), "{body}");
}

#[test]
fn expect_100_continue() {
    let a = TestBackend::start("a");
    let lb = Floatlb::start(&backend_tables(&[(&a, 1)]));
    let mut s = TcpStream::connect(lb.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")
        .unwrap();
    let interim = read_answer(&mut s).unwrap();
    assert!(
        interim.head.starts_with("HTTP/1.1 100 Continue"),
        "{:?}",
        interim.head
    );
    s.write_all(b"hello").unwrap();
    let answer = read_answer(&mut s).unwrap();
    assert_eq!(
        (answer.status, answer.text().as_str()),
        (200, "5"),
        "{answer:?}"
    );
}

#[test]
fn malformed_request_is_400_and_not_forwarded() {
    let a = TestBackend::start("a");
    let lb = Floatlb::start(&backend_tables(&[(&a, 1)]));
    // A coding other than plain chunked would be dropped by de-chunking: refuse it.
    let (status, _, body) = raw_request(
        lb.addr,
        "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    );
    assert_eq!(status, 400, "{body}");
    let (status, _, _) = raw_request(
        lb.addr,
        "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    );
    assert_eq!(status, 400);
    let (status, _, _) = raw_request(lb.addr, "GET / HTTP/1.1\r\nHost : t\r\n\r\n");
    assert_eq!(status, 400, "space before colon");
    let (status, _, _) = raw_request(lb.addr, "GET / HTTP/1.1\r\nHost: t\r\nX: a\r\n b\r\n\r\n");
    assert_eq!(status, 400, "obs-fold");
    let (status, _, _) = raw_request(lb.addr, "GARBAGE\r\n\r\n");
    assert_eq!(status, 400);
    assert_eq!(a.requests(), 0, "nothing may reach the backend");
}

#[test]
fn slow_headers_get_408() {
    let a = TestBackend::start("a");
    let lb = Floatlb::start(&format!(
        "[timeouts]\nclient-header = \"300ms\"\n{}",
        backend_tables(&[(&a, 1)])
    ));
    let mut s = TcpStream::connect(lb.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n").unwrap();
    // The 408 comes from the client-header timer (the read would give up at 5 s).
    let answer = read_answer(&mut s);
    assert!(
        answer
            .as_ref()
            .is_ok_and(|a| a.head.starts_with("HTTP/1.1 408")),
        "{answer:?}"
    );
    assert_eq!(a.requests(), 0);
}

#[test]
fn idle_keepalive_outlives_client_header_timeout() {
    let a = TestBackend::start("a");
    let lb = Floatlb::start(&format!(
        "[timeouts]\nclient-header = \"200ms\"\nidle = \"2s\"\n{}",
        backend_tables(&[(&a, 1)])
    ));
    let mut c = KeepAlive::new(lb.addr);
    assert_eq!(c.get("/").unwrap().0, 200);
    std::thread::sleep(Duration::from_millis(600));
    // Same connection still open: idle (2s) applies between requests, not client-header.
    assert_eq!(c.get("/").unwrap().0, 200);
    let conns = lb.status_json();
    assert!(conns.contains("\"connections_active\":1"), "{conns}");
}

/// A connection's one timer serves its waits and its requests' server
/// timeouts, moved only to earlier deadlines: each deadline must still hold
/// on a connection that has served requests (a 504 on the second request, a
/// 408 on a head after an answer, and an idle wait that outlives a server
/// timeout set before it).
#[test]
fn deadlines_hold_on_a_connection_that_served_requests() {
    let a = TestBackend::start("a");
    let lb = Floatlb::start(&format!(
        "[timeouts]\nserver = \"300ms\"\nclient-header = \"300ms\"\nidle = \"3s\"\n{}",
        backend_tables(&[(&a, 1)])
    ));
    let mut c = KeepAlive::new(lb.addr);
    assert_eq!(c.get("/").unwrap().0, 200);
    // Past the first request's server timeout: the idle connection stays.
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(c.get("/").unwrap().0, 200);
    // The second request's server timeout is earlier than the idle deadline
    // (a 504, not the backend's 200 after 3 s).
    let (status, _, body) = c.get("/slow?ms=3000").unwrap();
    assert_eq!(status, 504, "{body:?}");

    // A head cut short after an answer gets its 408 at client-header.
    let mut s = TcpStream::connect(lb.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n")
        .unwrap();
    let first = read_answer(&mut s);
    assert!(
        first
            .as_ref()
            .is_ok_and(|a| a.head.starts_with("HTTP/1.1 200")),
        "{first:?}"
    );
    let second = read_answer(&mut s);
    assert!(
        second
            .as_ref()
            .is_ok_and(|a| a.head.starts_with("HTTP/1.1 408")),
        "{second:?}"
    );
}

#[test]
fn large_bodies_stream_with_bounded_memory() {
    let a = TestBackend::start("a");
    let lb = Floatlb::start(&backend_tables(&[(&a, 1)]));
    const SIZE: u64 = 64 * 1024 * 1024;
    // Upload: 64 MiB chunked, never held whole by the proxy.
    let mut s = TcpStream::connect(lb.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
        .unwrap();
    let chunk = vec![b'u'; 256 * 1024];
    let head = format!("{:x}\r\n", chunk.len());
    for _ in 0..(SIZE / chunk.len() as u64) {
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(&chunk).unwrap();
        s.write_all(b"\r\n").unwrap();
    }
    s.write_all(b"0\r\n\r\n").unwrap();
    let answer = read_answer(&mut s).unwrap();
    assert_eq!(
        (answer.status, answer.text()),
        (200, SIZE.to_string()),
        "{answer:?}"
    );
    // Download: 64 MiB read slowly at first so backpressure has to hold.
    let mut s = TcpStream::connect(lb.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(
        format!("GET /download?bytes={SIZE} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let answer = read_answer(&mut s).unwrap();
    assert_eq!(
        (answer.status, answer.body.len() as u64),
        (200, SIZE),
        "{}",
        answer.head
    );
    let peak = lb.peak_rss_kib();
    assert!(
        peak < 40 * 1024,
        "peak RSS {peak} KiB: a 64 MiB body was buffered"
    );
}

#[test]
fn sigterm_drains_in_flight_requests_and_exits_zero() {
    let a = TestBackend::start("a");
    let mut lb = Floatlb::start(&backend_tables(&[(&a, 1)]));
    let addr = lb.addr;
    let slow = std::thread::spawn(move || http_get(addr, "/slow?ms=700"));
    std::thread::sleep(Duration::from_millis(200));
    lb.signal(libc::SIGTERM);
    let (status, _, body) = slow.join().unwrap();
    assert_eq!(
        (status, body.as_str()),
        (200, "a"),
        "in-flight request must finish"
    );
    let start = Instant::now();
    let code = loop {
        if let Some(s) = lb.child.try_wait().unwrap() {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(code.success(), "{code:?}");
    assert!(TcpStream::connect(addr).is_err(), "listener must be closed");
}

#[test]
fn check_reports_every_problem_with_position() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[listen]\naddress = \"127.0.0.1:80\"\n[[backend]]\nname = \"a\"\naddress = \"127.0.0.1:81\"\nweight = 999\n[[backend]]\nname = \"a\"\naddress = \"127.0.0.1:82\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_floatlb"))
        .args(["check", "-c"])
        .arg(&bad)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("bad.toml:6:10: backend[0].weight: weight 999 is out of range 0..=256"),
        "{err}"
    );
    assert!(
        err.contains("bad.toml:8:8: backend[1].name: duplicate backend name"),
        "{err}"
    );
    let good = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("proxy.toml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_floatlb"))
        .args(["check", "-c"])
        .arg(&good)
        .output()
        .unwrap();
    // The example config names eth0 for VRRP; hosts without eth0 report exactly that.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() || err.contains("no network interface named \"eth0\""),
        "{err}"
    );
}

/// Checks a whole exposition with the reference parser (Python's
/// prometheus_client, installed by vm-lab/install-deps): a malformed line fails.
fn parse_exposition(text: &str) -> usize {
    let mut child = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys\nfrom prometheus_client.parser import text_string_to_metric_families as p\nprint(len(list(p(sys.stdin.read()))))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (vm-lab/install-deps installs prometheus-client)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client rejected the exposition (pip install prometheus-client?): {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[test]
fn metrics_count_known_traffic_and_parse() {
    let a = TestBackend::start("a");
    let b = TestBackend::start("b");
    let lb = Floatlb::start(&format!(
        "[health]\nenabled = false\n{}",
        backend_tables(&[(&a, 1), (&b, 1)])
    ));
    for _ in 0..20 {
        assert_eq!(http_get(lb.addr, "/").0, 200);
    }
    // One malformed request: answered 400 by floatlb, never forwarded.
    let (status, _, _) = raw_request(
        lb.addr,
        "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    );
    assert_eq!(status, 400);
    let (status, headers, text) = http_get(lb.admin, "/metrics");
    assert_eq!(status, 200);
    assert!(header(&headers, "content-type").is_some_and(|v| v.starts_with("text/plain")));
    let m = |series: &str| {
        netns::metric(&text, series).unwrap_or_else(|| panic!("no {series} in:\n{text}"))
    };
    // The 400 came from the HTTP parser, before a request existed.
    assert_eq!(m("floatlb_requests_total"), 20.0);
    assert_eq!(m("floatlb_request_duration_seconds_count"), 20.0);
    assert_eq!(m("floatlb_errors_total{kind=\"400\"}"), 1.0);
    for name in ["a", "b"] {
        let ok = m(&format!(
            "floatlb_backend_responses_total{{backend=\"{name}\",code=\"2xx\",pool=\"default\"}}"
        ));
        assert_eq!(ok, 10.0, "round-robin: 10 each");
        assert_eq!(
            m(&format!(
                "floatlb_backend_requests_total{{backend=\"{name}\",pool=\"default\"}}"
            )),
            10.0
        );
        assert_eq!(
            m(&format!(
                "floatlb_backend_up{{backend=\"{name}\",pool=\"default\"}}"
            )),
            1.0
        );
    }
    assert_eq!(a.requests() + b.requests(), 20, "the 400 was not forwarded");
    assert!(m("floatlb_connections_total") >= 21.0);
    assert_eq!(
        m("floatlb_build_info{version=\"0.1.0\"}"),
        1.0,
        "build info"
    );
    // Descriptor use against the limit (the FloatlbFileDescriptorsNearLimit alert).
    assert!(m("process_open_fds") >= 3.0);
    assert!(m("process_max_fds") >= m("process_open_fds"));
    let families = parse_exposition(&text);
    assert!(families >= 20, "only {families} families parsed");
    // Every series the Grafana dashboard queries exists (VRRP: tests/vrrp_adverts.rs;
    // route series, exported when there are routes: tests/routes.rs).
    for name in dashboard_metric_names() {
        if !name.starts_with("floatlb_vrrp_") && !name.starts_with("floatlb_route_") {
            assert!(
                text.lines().any(|l| l.starts_with(&name)),
                "dashboard queries {name}, which /metrics does not export"
            );
        }
    }
}

#[test]
fn access_log_writes_one_json_line_per_request() {
    let a = TestBackend::start("a");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let lb = Floatlb::start(&format!(
        "[log]\naccess = \"json\"\naccess-path = \"{}\"\n[health]\nenabled = false\n{}",
        path.display(),
        backend_tables(&[(&a, 1)])
    ));
    for p in ["/one", "/two?x=1", "/three"] {
        assert_eq!(http_get(lb.addr, p).0, 200);
    }
    let start = Instant::now();
    let text = loop {
        let t = std::fs::read_to_string(&path).unwrap_or_default();
        if t.lines().count() >= 3 || start.elapsed() > Duration::from_secs(3) {
            break t;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    // Two workers write their own lines: the order across them is not the requests'.
    let two = lines
        .iter()
        .find(|l| l.contains("\"method\":\"GET\",\"target\":\"/two?x=1\""))
        .unwrap_or_else(|| panic!("no line for /two?x=1: {text}"));
    assert!(
        two.contains("\"status\":200") && two.contains("\"client\":\"127.0.0.1\""),
        "{two}"
    );
    // Every line is a JSON document.
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import json,sys\nfor l in open(sys.argv[1]): json.loads(l)",
        ])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn smuggling_vectors_get_400_close_and_reach_no_backend() {
    let a = TestBackend::start("a");
    let lb = Floatlb::start(&format!(
        "[health]\nenabled = false\n{}",
        backend_tables(&[(&a, 1)])
    ));
    let vectors: &[(&str, &str)] = &[
        (
            "CL and TE",
            "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n",
        ),
        (
            "TE and CL",
            "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        ),
        (
            "differing duplicate CL",
            "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        ),
        (
            "TE not exactly chunked",
            "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        ),
        (
            "TE xchunked",
            "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "invalid chunk size",
            "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        ),
        (
            "obs-fold",
            "GET / HTTP/1.1\r\nHost: t\r\nX: a\r\n b\r\n\r\n",
        ),
        ("space before colon", "GET / HTTP/1.1\r\nHost : t\r\n\r\n"),
        ("bare CR", "GET / HTTP/1.1\r\nHost: t\rX: y\r\n\r\n"),
        ("NUL in header", "GET / HTTP/1.1\r\nHost: t\r\nX: a\0b\r\n\r\n"),
    ];
    let mut failures = Vec::new();
    for (name, req) in vectors {
        let before = a.requests();
        let mut s = TcpStream::connect(lb.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut out = Vec::new();
        // read_to_end returns only when floatlb closes the connection.
        let res = s.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out);
        if res.is_err() {
            failures.push(format!("{name}: connection not closed: {res:?} {text:?}"));
        } else if !text.starts_with("HTTP/1.1 400") || text.matches("HTTP/1.1 ").count() != 1 {
            failures.push(format!("{name}: not one 400: {text:?}"));
        }
        if a.requests() != before {
            failures.push(format!("{name}: reached the backend"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// A backend that answers every connection with `response` (raw bytes) and closes.
fn raw_backend(response: &'static [u8]) -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = s.read(&mut buf);
                let _ = s.write_all(response);
            });
        }
    });
    addr
}

fn raw_backend_table(addr: SocketAddr) -> String {
    format!("[health]\nenabled = false\n[[backend]]\nname = \"raw\"\naddress = \"{addr}\"\n")
}

#[test]
fn malformed_backend_response_is_502() {
    let b = raw_backend(b"HTTP/1.1 2OO NOT OK\r\nContent-Length: x\r\n\r\nhello");
    let lb = Floatlb::start(&raw_backend_table(b));
    let (status, _, body) = http_get(lb.addr, "/");
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("backend raw failed"), "{body}");
}

#[test]
fn backend_closing_mid_body_aborts_the_client_connection() {
    // Declared 100000 bytes, sends 11, closes.
    let b = raw_backend(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nhello world");
    let lb = Floatlb::start(&raw_backend_table(b));
    let mut s = TcpStream::connect(lb.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut out = Vec::new();
    let res = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let body = text.split_once("\r\n\r\n").unwrap().1;
    assert!(res.is_ok() || res.as_ref().unwrap_err().kind() == std::io::ErrorKind::ConnectionReset);
    assert!(
        body.len() < 100_000,
        "the connection ended early: a client can tell"
    );

    // Chunked: the terminating chunk must not be invented.
    let b = raw_backend(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
    let lb = Floatlb::start(&raw_backend_table(b));
    let mut s = TcpStream::connect(lb.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        !text.ends_with("0\r\n\r\n"),
        "a truncated body was presented as complete: {text:?}"
    );
}

#[test]
fn fd_exhaustion_keeps_serving_and_recovers() {
    let a = TestBackend::start("a");
    // 64 descriptors: a handful go to the runtime, listeners and the backend pool.
    let lb = Floatlb::start_limited(
        &format!("[health]\nenabled = false\n{}", backend_tables(&[(&a, 1)])),
        Some(64),
    );
    let mut existing = KeepAlive::new(lb.addr);
    assert_eq!(existing.get("/").unwrap().0, 200);
    // Flood: far more connections than descriptors.
    let flood: Vec<TcpStream> = (0..200)
        .filter_map(|_| TcpStream::connect_timeout(&lb.addr, Duration::from_millis(200)).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // An existing connection keeps being served during the flood.
    for _ in 0..5 {
        assert_eq!(
            existing.get("/").unwrap().0,
            200,
            "existing connection starved"
        );
    }
    std::thread::sleep(Duration::from_secs(1));
    drop(flood);
    // Once the flood is gone, new connections are served again.
    let start = Instant::now();
    loop {
        if http_get(lb.addr, "/").0 == 200 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no recovery:\n{}",
            lb.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        lb.log().contains("out of resources"),
        "EMFILE was not hit:\n{}",
        lb.log()
    );
    // The accept loop backs off (10 ms doubling to 500 ms) instead of spinning: a handful
    // of failed accepts per second of flood, where a spinning loop makes thousands.
    let failed = support::netns::metric(
        &http_get(lb.admin, "/metrics").2,
        "floatlb_errors_total{kind=\"accept\"}",
    )
    .expect("accept errors are counted");
    assert!(
        (1.0..200.0).contains(&failed),
        "{failed} failed accepts: the accept loop spins under EMFILE"
    );
}

/// `floatlb check` on a corpus of broken files (tests/data/broken): exit 1 and
/// exactly one message each, naming file, line, column and key.
#[test]
fn check_gives_one_clear_message_per_broken_file() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "unknown-key.toml",
            "3:1: listen.worker",
            "unknown field `worker`",
        ),
        (
            "bad-duration.toml",
            "7:11: timeouts.connect",
            "unknown unit \"parsecs\"",
        ),
        (
            "weight-range.toml",
            "6:10: backend[0].weight",
            "out of range 0..=256",
        ),
        (
            "duplicate-backend.toml",
            "7:8: backend[1].name",
            "duplicate backend name",
        ),
        (
            "bad-address.toml",
            "5:11: backend[0].address",
            "is not an address and port",
        ),
        ("syntax.toml", "2:26:", "invalid basic string"),
        (
            "unknown-algorithm.toml",
            "4:13: balance.algorithm",
            "unknown variant `fastest`",
        ),
        (
            "vrid-range.toml",
            "8:8: vrrp[0].vrid",
            "out of range 1..=255",
        ),
        (
            "advert-too-short.toml",
            "10:19: vrrp[0].advert-interval",
            "between 10ms and 40.95s",
        ),
        (
            "bad-vip.toml",
            "10:22: vrrp[0].virtual-addresses[0]",
            "not an IPv4 or IPv6 address",
        ),
        (
            "url-param-without-name.toml",
            "3:1: balance.url-param",
            "needs url-param",
        ),
        (
            "bad-log-format.toml",
            "7:10: log.access",
            "unknown variant `verbose`",
        ),
    ];
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/broken");
    let files = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(files, cases.len(), "every file in the corpus has a case");
    for (file, at, fragment) in cases {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_floatlb"))
            .args(["check", "-c", file])
            .current_dir(&dir)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{file}: {err}");
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{file}: one message: {err}");
        assert!(
            lines[0].starts_with(&format!("{file}:{at}")) && lines[0].contains(fragment),
            "{file}: {err}"
        );
    }
}

#[test]
fn broken_reload_under_load_loses_nothing_and_keeps_serving() {
    let a = TestBackend::start("a");
    let b = TestBackend::start("b");
    let lb = Floatlb::start(&backend_tables(&[(&a, 1), (&b, 1)]));
    let stop = Arc::new(AtomicBool::new(false));
    let run = load(lb.addr, 6, 5000, Duration::from_secs(20), stop.clone());
    std::thread::sleep(Duration::from_millis(300));
    // Drops backend b, but the file is broken: nothing may change.
    lb.reload(&format!(
        "{}\n[timeouts]\nconnect = \"fast\"\n",
        backend_tables(&[(&a, 1)])
    ));
    let start = Instant::now();
    while !lb.log().contains("reload failed") && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let b_at_reload = b.requests();
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let r = run.join().unwrap();
    assert!(
        r.failures.is_empty(),
        "{} failed: {:?}",
        r.failures.len(),
        &r.failures[..r.failures.len().min(5)]
    );
    assert!(r.ok > 100, "load did not run: {}", r.ok);
    let log = lb.log();
    assert!(
        log.contains("timeouts.connect"),
        "the error names the key: {log}"
    );
    assert!(
        b.requests() > b_at_reload,
        "the old config (with b) kept serving"
    );
}

#[test]
fn client_aborting_mid_upload_leaks_nothing() {
    let a = TestBackend::start("a");
    let lb = Floatlb::start(&format!(
        "[health]\nenabled = false\n{}",
        backend_tables(&[(&a, 1)])
    ));
    let fds = || {
        std::fs::read_dir(format!("/proc/{}/fd", lb.child.id()))
            .unwrap()
            .count()
    };
    // Warm up the pool so the baseline includes a backend connection.
    assert_eq!(http_get(lb.addr, "/").0, 200);
    std::thread::sleep(Duration::from_millis(200));
    let baseline = fds();
    for _ in 0..20 {
        let mut s = TcpStream::connect(lb.addr).unwrap();
        s.write_all(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 10000000\r\n\r\n")
            .unwrap();
        s.write_all(&vec![b'x'; 100_000]).unwrap();
        drop(s); // gone mid-body
    }
    // Everything unwinds: no request in flight, no half-used connection pooled,
    // descriptors back to the baseline.
    let start = Instant::now();
    loop {
        let status = lb.status_json();
        let settled = status.contains("\"in_flight\":0")
            && status.contains("\"connections_active\":0")
            && fds() <= baseline;
        if settled {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "did not settle: fds {} (baseline {baseline}), {status}",
            fds()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(http_get(lb.addr, "/").0, 200, "still serving");
}

/// Reads one response from a keep-alive socket, and not a byte more: a
/// pipelined answer behind it may already be in the socket.
fn read_one_response(s: &mut TcpStream) -> Result<(u16, String), String> {
    read_answer(s).map(|a| (a.status, a.text()))
}

/// Client sockets are read and written directly and only join epoll once they
/// would block; while a bodyless request is in flight the connection's task is
/// not woken by the socket at all. A keep-alive client must still get every
/// answer promptly (the task is woken when each answer is done), a one-request
/// HTTP/1.0 connection its whole answer, and a pipelined second request its own.
#[test]
fn directly_read_client_sockets_answer_every_request() {
    // The backend answers after the proxy has gone back to waiting on the client.
    let a = TestBackend::start_with_delay("a", Duration::from_millis(5));
    let lb = Floatlb::start(&backend_tables(&[(&a, 1)]));
    let addr = lb.addr;
    let clients: Vec<_> = (0..16)
        .map(|_| {
            std::thread::spawn(move || -> Result<(), String> {
                let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
                s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                for i in 0..5 {
                    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
                    match read_one_response(&mut s) {
                        Ok((200, body)) if body == "a" => {}
                        other => return Err(format!("request {i}: {other:?}")),
                    }
                }
                Ok(())
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap().expect("keep-alive client");
    }
    let (status, headers, body) = raw_request(lb.addr, "GET / HTTP/1.0\r\n\r\n");
    assert_eq!((status, body.as_str()), (200, "a"));
    assert_eq!(header(&headers, "content-length"), Some("1"));
    let mut s = TcpStream::connect(lb.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.write_all(b"GET /1 HTTP/1.1\r\nHost: t\r\n\r\nGET /2 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    for i in 1..=2 {
        assert_eq!(
            read_one_response(&mut s),
            Ok((200, "a".to_string())),
            "pipelined {i}"
        );
    }
    assert_eq!(a.requests(), 16 * 5 + 3);
}

/// A keep-alive backend that answers each request head with the next of
/// `answers` (in turn), closing after each answer when `close_after` is set.
/// Returns its address and the number of connections it accepted.
fn scripted_backend(
    answers: &'static [&'static [u8]],
    close_after: bool,
) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let next = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            count.fetch_add(1, Ordering::SeqCst);
            let next = next.clone();
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut pending = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        pending.drain(..end + 4);
                        let i = next.fetch_add(1, Ordering::SeqCst) % answers.len();
                        if s.write_all(answers[i]).is_err() || close_after {
                            return;
                        }
                    }
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => pending.extend_from_slice(&buf[..n]),
                    }
                }
            });
        }
    });
    (addr, accepted)
}

/// Bodyless requests are answered on the request's own task (`upstream.rs`):
/// every way an answer's body can end must be read exactly, so that one
/// backend connection carries them all in turn.
#[test]
fn bodyless_answers_of_every_framing_share_one_backend_connection() {
    static ANSWERS: [&[u8]; 5] = [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nX-T: 1\r\n\r\n",
        b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhints",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1500\r\nX-Head: yes\r\n\r\n",
        b"HTTP/1.1 304 Not Modified\r\nETag: \"e\"\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\n1.0",
    ];
    let (addr, accepted) = scripted_backend(&ANSWERS, false);
    let lb = Floatlb::start(&raw_backend_table(addr));
    let mut s = TcpStream::connect(lb.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut ask = |req: &str| {
        s.write_all(req.as_bytes()).unwrap();
        // Each answer read to the end its framing promises, and no further.
        let method = req.split(' ').next().unwrap();
        let a = read_answer_to(&mut s, method).expect("answer");
        (a.status, a.head.clone(), a.text())
    };
    let (status, head, body) = ask("GET /chunked HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    assert!(
        body.contains("hello") && body.contains(" world"),
        "{body:?}"
    );
    let (status, _, body) = ask("GET /hints HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!((status, body.as_str()), (200, "hints"));
    let (status, head, body) = ask("HEAD / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!((status, body.as_str()), (200, ""));
    // Header names keep the backend's case; they are case-insensitive.
    let lower = head.to_ascii_lowercase();
    assert!(
        lower.contains("content-length: 1500") && lower.contains("x-head: yes"),
        "{head}"
    );
    let (status, _, body) = ask("GET /cached HTTP/1.1\r\nHost: t\r\nIf-None-Match: \"e\"\r\n\r\n");
    assert_eq!((status, body.as_str()), (304, ""));
    let (status, _, body) = ask("GET /old HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!((status, body.as_str()), (200, "1.0"));
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "every answer was read to its end, so the connection was reused"
    );
}

/// A backend that closes each keep-alive connection right after answering (as
/// one with a short keep-alive timeout does): a closed pooled connection is
/// not used, and a request that meets one anyway is sent again.
#[test]
fn closed_pooled_connections_do_not_fail_bodyless_requests() {
    static ANSWERS: [&[u8]; 1] = [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"];
    let (addr, accepted) = scripted_backend(&ANSWERS, true);
    let lb = Floatlb::start(&raw_backend_table(addr));
    let mut c = KeepAlive::new(lb.addr);
    for i in 0..10 {
        assert_eq!(c.get("/").map(|r| r.0), Ok(200), "paced request {i}");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Back to back: the close may not have been seen yet when the next request goes out.
    for i in 0..30 {
        assert_eq!(c.get("/").map(|r| r.0), Ok(200), "request {i}");
    }
    // Not idempotent, so never sent twice: it must not meet a closed connection.
    std::thread::sleep(Duration::from_millis(20));
    let (status, _, body) = raw_request(
        lb.addr,
        "POST /form HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!((status, body.as_str()), (200, "ok"));
    assert!(accepted.load(std::sync::atomic::Ordering::SeqCst) >= 41);
}

/// Reads one answer whose body is chunked; returns its head and decoded body.
fn read_chunked_response(s: &mut TcpStream) -> Result<(String, String), String> {
    let a = read_answer(s)?;
    if a.framing != support::client::Framing::Chunked {
        return Err(format!("not chunked: {a:?}"));
    }
    Ok((a.head.clone(), a.text()))
}

/// An answer without a length (the backend closes to end it) reaches an
/// HTTP/1.1 client chunked, on a connection that stays open; a chunked answer
/// reaches an HTTP/1.0 client without chunks, ended by the close.
#[test]
fn answers_without_a_length_are_chunked_for_http11_and_closed_for_http10() {
    static ANSWERS: [&[u8]; 2] = [
        b"HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\nuntil the close",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    ];
    let (addr, _) = scripted_backend(&ANSWERS, true);
    let lb = Floatlb::start(&raw_backend_table(addr));
    let mut s = TcpStream::connect(lb.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /1 HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let (head, body) = read_chunked_response(&mut s).expect("chunked answer");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("transfer-encoding: chunked"), "{head}");
    assert!(
        lower.contains("x-a: 1") && !lower.contains("connection: close"),
        "{head}"
    );
    // The backend sent no Date: the proxy adds one (RFC 9110 §6.6.1).
    assert!(lower.contains("\r\ndate: "), "{head}");
    assert_eq!(body, "until the close");

    let (status, headers, body) = raw_request(lb.addr, "GET /2 HTTP/1.0\r\nHost: t\r\n\r\n");
    assert_eq!((status, body.as_str()), (200, "hello world"));
    assert!(
        header(&headers, "transfer-encoding").is_none(),
        "{headers:?}"
    );

    // The first connection is still open for the next request.
    s.write_all(b"GET /3 HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let (_, body) = read_chunked_response(&mut s).expect("same connection");
    assert_eq!(body, "until the close");
}

/// Segments the socket has received, from TCP_INFO.
fn segments_in(s: &TcpStream) -> u32 {
    use std::os::fd::AsRawFd;
    // SAFETY: tcp_info is plain data; getsockopt writes at most `len` bytes.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    info.tcpi_segs_in
}

/// A request gets no ACK of its own: the answer carries it (delayed ACKs,
/// as HAProxy sets for HTTP). Before its close, a one-request client then
/// receives three segments: the SYN-ACK, the answer, the FIN. Counted on the
/// client socket (TCP_INFO) for an HTTP/1.0 request, one with `Connection:
/// close`, and a refused one; best of five each, since a delayed ACK that
/// fires on a slow machine adds one.
#[test]
fn the_answer_carries_the_requests_ack() {
    let a = TestBackend::start("a");
    let lb = Floatlb::start(&backend_tables(&[(&a, 1)]));
    for (request, answer) in [
        ("GET / HTTP/1.0\r\n\r\n", "HTTP/1.0 200"),
        (
            "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            "HTTP/1.1 200",
        ),
        ("GET / HTTP/1.1\r\nHost : t\r\n\r\n", "HTTP/1.1 400"),
    ] {
        let mut best = u32::MAX;
        for _ in 0..5 {
            let mut s = TcpStream::connect(lb.addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(request.as_bytes()).unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).expect("the answer, then the close");
            let text = String::from_utf8_lossy(&got);
            assert!(text.starts_with(answer), "{request:?}: {text:?}");
            best = best.min(segments_in(&s));
        }
        assert_eq!(
            best, 3,
            "{request:?}: segments the client received (SYN-ACK, answer, FIN)"
        );
    }
}

/// A request with a body, and a bodyless one pipelined behind it in the same
/// write: the body is read exactly to its end, and both are answered, in
/// order, on the same keep-alive connection.
#[test]
fn a_request_with_a_body_and_a_pipelined_one_are_answered_in_order() {
    let a = TestBackend::start("a");
    let lb = Floatlb::start(&backend_tables(&[(&a, 1)]));
    let mut s = TcpStream::connect(lb.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(read_one_response(&mut s), Ok((200, "a".to_string())));
    s.write_all(
        b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhelloGET /headers HTTP/1.1\r\nHost: t\r\nX-Next: 2\r\n\r\n",
    )
    .unwrap();
    assert_eq!(read_one_response(&mut s), Ok((200, "5".to_string())));
    let (status, body) = read_one_response(&mut s).expect("pipelined after the body");
    assert_eq!(status, 200);
    assert!(body.contains("x-next: 2"), "{body}");
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(read_one_response(&mut s), Ok((200, "a".to_string())));
    assert_eq!(a.requests(), 4);
}

/// RFC 9110 §15.5.14 with `[proxy] max-body-size`: a Content-Length over the
/// limit is a 413 before any backend is contacted; a chunked body that grows
/// past it is cut off and answered 413; one within it passes.
#[test]
fn bodies_over_max_body_size_get_413() {
    let a = TestBackend::start("a");
    let lb = Floatlb::start(&format!(
        "[proxy]\nmax-body-size = 100\n{}",
        backend_tables(&[(&a, 1)])
    ));
    let send = |req: &[u8]| -> Answer {
        let mut s = TcpStream::connect(lb.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(req).unwrap();
        read_answer(&mut s).unwrap_or_else(|e| panic!("{e}"))
    };
    let out = send(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 101\r\n\r\n");
    assert!(out.head.starts_with("HTTP/1.1 413"), "{out:?}");
    assert_eq!(a.requests(), 0, "a refused body reached the backend");
    let chunk = format!("{:x}\r\n{}\r\n", 60, "x".repeat(60));
    let over = format!(
        "POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{chunk}{chunk}0\r\n\r\n"
    );
    let out = send(over.as_bytes());
    assert!(out.head.starts_with("HTTP/1.1 413"), "{out:?}");
    let within = format!(
        "POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{chunk}0\r\n\r\n"
    );
    let out = send(within.as_bytes());
    assert!(
        out.head.starts_with("HTTP/1.1 200") && out.text() == "60",
        "{out:?}"
    );
}

/// A request whose body was never read (no backend could take it) gets its
/// answer and the connection closes: the unread body bytes must not be taken
/// for the next request (RFC 9112 §9.3: the server closes when it cannot
/// read the message to its end).
#[test]
fn an_unread_body_ends_the_connection_after_the_answer() {
    let dead =
        TcpStream::connect_timeout(&"127.0.0.1:1".parse().unwrap(), Duration::from_millis(100));
    assert!(dead.is_err(), "port 1 answers here");
    let lb = Floatlb::start(
        "[health]\nenabled = false\n[proxy]\nretries = 0\n[[backend]]\nname = \"dead\"\naddress = \"127.0.0.1:1\"\n",
    );
    let mut s = TcpStream::connect(lb.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // The body is held back: it looks like a request of its own.
    let smuggled = b"GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n";
    s.write_all(
        format!(
            "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            smuggled.len()
        )
        .as_bytes(),
    )
    .unwrap();
    let head = read_head(&mut s).unwrap();
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    let _ = s.write_all(smuggled);
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    let rest = String::from_utf8_lossy(&rest);
    assert!(
        !rest.contains("HTTP/1.1 "),
        "the body was served as a request: {rest}"
    );
}

/// IPv6 end to end on loopback: a client on [::1], a backend on [::1]
/// (health-checked over IPv6), X-Forwarded-For and the access log carry the
/// client's IPv6 address as text (RFC 7239 §6 allows a bare IPv6 address in
/// X-Forwarded-For's de-facto form, without brackets), and the status page
/// shows the backend's address in brackets with its port.
#[test]
fn ipv6_clients_and_backends() {
    let a = TestBackend::start_on("a6", "[::1]:0");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let lb = Floatlb::start_listening_on(
        &format!(
            "[log]\naccess = \"json\"\naccess-path = \"{}\"\n[health]\ninterval = \"100ms\"\n{}",
            path.display(),
            backend_tables(&[(&a, 1)])
        ),
        "::1",
    );
    assert!(lb.addr.is_ipv6());
    let start = Instant::now();
    while a
        .seen
        .health_checks
        .load(std::sync::atomic::Ordering::SeqCst)
        == 0
    {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no health check reached the IPv6 backend: {}",
            lb.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, _, body) = http_get(lb.addr, "/headers");
    assert_eq!(status, 200, "{}", lb.log());
    assert!(
        body.to_ascii_lowercase().contains("x-forwarded-for: ::1"),
        "{body}"
    );
    let json = lb.status_json();
    assert!(
        json.contains(&format!("\"address\":\"{}\",\"up\":true", a.addr)),
        "{json}"
    );
    let start = Instant::now();
    let text = loop {
        let t = std::fs::read_to_string(&path).unwrap_or_default();
        if !t.is_empty() || start.elapsed() > Duration::from_secs(3) {
            break t;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(text.contains("\"client\":\"::1\""), "{text}");
}

/// A dual-stack listener ([::]) serves both families; an IPv4 client is
/// named by its IPv4 address, not the IPv4-mapped IPv6 form the socket
/// reports (::ffff:127.0.0.1), in X-Forwarded-For and the access log alike.
#[test]
fn dual_stack_listener_names_ipv4_clients_by_their_ipv4_address() {
    let a = TestBackend::start("a");
    let lb = Floatlb::start_listening_on(
        &format!("[health]\nenabled = false\n{}", backend_tables(&[(&a, 1)])),
        "::",
    );
    let (status, _, body) = http_get(lb.addr, "/headers");
    assert_eq!(status, 200);
    assert!(
        body.to_ascii_lowercase().contains("x-forwarded-for: ::1"),
        "{body}"
    );
    let v4: SocketAddr = format!("127.0.0.1:{}", lb.addr.port()).parse().unwrap();
    let (status, _, body) = http_get(v4, "/headers");
    assert_eq!(status, 200);
    let lower = body.to_ascii_lowercase();
    assert!(lower.contains("x-forwarded-for: 127.0.0.1"), "{body}");
    assert!(!lower.contains("::ffff:"), "{body}");
}
