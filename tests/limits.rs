//! Per-client limits (`[[limit]]` tables, `track`, `rate-limit`,
//! `max-connections`, `error-limit`, `over-limit`) with the real binary and
//! real clients: curl over HTTP/1.1 and HTTP/2 from two loopback addresses
//! (127.0.0.1 and 127.0.0.2, `--interface`), and raw connections held open.
//! One floatlb serves every check, in order; no check reads a clock.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use support::{floatlb_cmd, free_port, header, http_get, make_cert, Floatlb, TestBackend};

use support::curl_sik as curl;

/// The status of a GET of `path` on `lb` from `from`, with `more` curl arguments.
fn status_from(lb: SocketAddr, from: &str, path: &str, more: &[&str]) -> u16 {
    let mut args = vec!["--interface", from];
    args.extend(more);
    curl(&format!("http://{lb}{path}"), &args).0
}

fn metric(lb: &Floatlb, series: &str) -> f64 {
    let text = http_get(lb.admin, "/metrics").2;
    support::netns::metric(&text, series).unwrap_or_else(|| {
        let family = series.split('{').next().unwrap_or(series);
        let shown: Vec<&str> = text.lines().filter(|l| l.contains(family)).collect();
        panic!("no {series} in /metrics: {shown:#?}")
    })
}

fn wait_for(what: &str, lb: &Floatlb, ok: impl Fn() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}; log:\n{}",
            lb.log()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A keep-alive connection from 127.0.0.1 that has had one answer (so
/// floatlb has accepted and counted it).
fn held_connection(to: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(to).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    let answer = support::read_answer_to(&mut s, "GET").expect("an answer");
    assert_eq!(answer.parts().0, 200);
    s
}

/// The config (without the first `[[listen]]` and `[admin]`), with the
/// `per-ip` table's `size`: a reload with another size starts it over.
fn config(b: &TestBackend, dir: &std::path::Path, tls_port: u16, size: u32) -> String {
    format!(
        "[log]\naccess = \"custom\"\naccess-path = \"{log}\"\nformat = \"{{client}} {{status}} {{termination}} {{target}}\"\n\n\
         [tls]\naddress = \"127.0.0.1:{tls_port}\"\n[[tls.certificate]]\ncert = \"{cert}\"\nkey = \"{key}\"\n\n\
         [[limit]]\nname = \"per-ip\"\nsize = {size}\nexpire = \"120s\"\n\n\
         [[limit]]\nname = \"conns\"\n\n\
         [[limit]]\nname = \"h2\"\nexpire = \"120s\"\n\n\
         [[limit]]\nname = \"per-key\"\nkey = \"header:X-Api-Key\"\nexpire = \"120s\"\n\n\
         [[limit]]\nname = \"errs\"\n\n\
         [[limit]]\nname = \"slow\"\nexpire = \"120s\"\ntarpit = \"200ms\"\n\n\
         [[pool]]\nname = \"web\"\nbackends = [\"{backend}\"]\n\n\
         [[route]]\nname = \"api\"\npath-prefix = \"/api/\"\ntrack = \"per-key\"\nrate-limit = {{ requests = 3, per = \"60s\" }}\npool = \"web\"\n\n\
         [[route]]\nname = \"missing\"\npath-prefix = \"/missing/\"\ntrack = \"errs\"\nerror-limit = 2\nrespond = {{ status = 404, body = \"none here\" }}\n\n\
         [[route]]\nname = \"tarpit\"\npath-prefix = \"/tarpit/\"\ntrack = \"slow\"\nrate-limit = {{ requests = 1, per = \"60s\" }}\nover-limit = \"tarpit\"\npool = \"web\"\n\n\
         [[route]]\nname = \"rest\"\npool = \"web\"\n",
        log = dir.join("access.log").display(),
        cert = dir.join("a.pem").display(),
        key = dir.join("a.key").display(),
        backend = b.addr,
    )
}

#[test]
fn clients_over_their_limits_get_429_with_retry_after_and_others_are_served() {
    let b = TestBackend::start("b");
    let dir = tempfile::tempdir().unwrap();
    make_cert(dir.path(), "a", &["a.test"], 90);
    let limited: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let conns: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let h2_port = free_port();
    let listeners = format!(
        "[[listen]]\nname = \"limited\"\naddress = \"{limited}\"\ntrack = \"per-ip\"\nrate-limit = {{ requests = 5, per = \"60s\" }}\n\n\
         [[listen]]\nname = \"conns\"\naddress = \"{conns}\"\ntrack = \"conns\"\nmax-connections = 3\n\n\
         [[listen]]\nname = \"h2\"\naddress = \"127.0.0.1:{h2_port}\"\ntls = true\ntrack = \"h2\"\nrate-limit = {{ requests = 2, per = \"60s\" }}\n"
    );
    let tls_port = free_port();
    let lb = Floatlb::start_with_listeners(&config(&b, dir.path(), tls_port, 1000), &listeners);

    // Five requests a minute from 127.0.0.1: the sixth is refused, with
    // the seconds until its next one (RFC 6585 §4).
    for _ in 0..5 {
        assert_eq!(status_from(limited, "127.0.0.1", "/", &[]), 200);
    }
    let (status, h, text, _) = curl(&format!("http://{limited}/"), &["--interface", "127.0.0.1"]);
    assert_eq!(status, 429, "{text}");
    let wait: u64 = header(&h, "retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=12).contains(&wait), "Retry-After: {wait}");
    assert!(
        text.contains(
            "client 127.0.0.1 is over the request rate this listener allows (limit per-ip)"
        ),
        "{text}"
    );
    // Another client is counted apart, and the first listener has no limit.
    for _ in 0..5 {
        assert_eq!(status_from(limited, "127.0.0.2", "/", &[]), 200);
    }
    assert_eq!(status_from(limited, "127.0.0.2", "/", &[]), 429);
    assert_eq!(status_from(lb.addr, "127.0.0.1", "/", &[]), 200);
    assert_eq!(
        metric(
            &lb,
            "floatlb_limited_total{rule=\"rate-limit\",table=\"per-ip\"}"
        ),
        2.0
    );
    assert_eq!(metric(&lb, "floatlb_limit_entries{table=\"per-ip\"}"), 2.0);

    // Keyed by a header: one key's requests, whatever the address; a request
    // without the header is not tracked.
    for from in ["127.0.0.1", "127.0.0.2", "127.0.0.1"] {
        assert_eq!(
            status_from(lb.addr, from, "/api/x", &["-H", "X-Api-Key: k1"]),
            200
        );
    }
    assert_eq!(
        status_from(lb.addr, "127.0.0.2", "/api/x", &["-H", "X-Api-Key: k1"]),
        429
    );
    assert_eq!(
        status_from(lb.addr, "127.0.0.1", "/api/x", &["-H", "X-Api-Key: k2"]),
        200
    );
    for _ in 0..5 {
        assert_eq!(status_from(lb.addr, "127.0.0.1", "/api/x", &[]), 200);
    }
    assert_eq!(metric(&lb, "floatlb_limit_entries{table=\"per-key\"}"), 2.0);

    // An error limit: two error answers in the window are allowed, the
    // third one puts the client over.
    for _ in 0..3 {
        assert_eq!(status_from(lb.addr, "127.0.0.1", "/missing/x", &[]), 404);
    }
    let (status, h, text, _) = curl(&format!("http://{}/missing/x", lb.addr), &[]);
    assert_eq!(status, 429, "{text}");
    assert!(header(&h, "retry-after").is_some());
    assert!(
        text.contains("over the error rate route missing allows"),
        "{text}"
    );
    assert_eq!(status_from(lb.addr, "127.0.0.2", "/missing/x", &[]), 404);

    // A tarpit: the same 429, once the table's tarpit delay has passed.
    assert_eq!(status_from(lb.addr, "127.0.0.1", "/tarpit/x", &[]), 200);
    let (status, h, _, _) = curl(&format!("http://{}/tarpit/x", lb.addr), &[]);
    assert_eq!(status, 429);
    assert!(header(&h, "retry-after").is_some());

    // At most three connections per client address: the fourth is closed at
    // accept, while another address is served; one closing frees a place.
    let mut held: Vec<TcpStream> = (0..3).map(|_| held_connection(conns)).collect();
    let mut fourth = TcpStream::connect(conns).unwrap();
    fourth
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = fourth.write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n");
    let mut buf = [0u8; 64];
    let got = fourth.read(&mut buf).unwrap_or(0);
    assert_eq!(got, 0, "{:?}", String::from_utf8_lossy(&buf[..got]));
    assert_eq!(status_from(conns, "127.0.0.2", "/", &[]), 200);
    assert_eq!(
        metric(
            &lb,
            "floatlb_limited_total{rule=\"max-connections\",table=\"conns\"}"
        ),
        1.0
    );
    held.pop();
    wait_for("a freed place", &lb, || {
        let mut s = TcpStream::connect(conns).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        support::read_answer_to(&mut s, "GET").is_ok_and(|a| a.parts().0 == 200)
    });
    drop(held);

    // HTTP/2 is held to the same rules: two requests a minute on the TLS listener.
    let h2 = |from: &str| {
        let resolve = format!("a.test:{h2_port}:127.0.0.1");
        let args = ["--http2", "--resolve", &resolve, "--interface", from];
        let (status, h, text, raw) = curl(&format!("https://a.test:{h2_port}/"), &args);
        assert!(raw.starts_with("HTTP/2 "), "{raw}");
        (status, h, text)
    };
    assert_eq!(h2("127.0.0.1").0, 200);
    assert_eq!(h2("127.0.0.1").0, 200);
    let (status, h, text) = h2("127.0.0.1");
    assert_eq!(status, 429, "{text}");
    let wait: u64 = header(&h, "retry-after").unwrap().parse().unwrap();
    assert!((1..=30).contains(&wait), "Retry-After: {wait}");
    assert_eq!(h2("127.0.0.2").0, 200);

    // A reload that keeps the table's definition keeps its counts...
    let mut body = config(&b, dir.path(), tls_port, 1000);
    body.push_str("\n[[route]]\nname = \"later\"\npath = \"/later\"\npool = \"web\"\n");
    // (the new route must come before `rest`, which matches everything)
    let body = body.replacen(
        "[[route]]\nname = \"rest\"\npool = \"web\"\n\n[[route]]\nname = \"later\"\npath = \"/later\"\npool = \"web\"\n",
        "[[route]]\nname = \"later\"\npath = \"/later\"\npool = \"web\"\n\n[[route]]\nname = \"rest\"\npool = \"web\"\n",
        1,
    );
    lb.reload(&body);
    wait_for("the reload", &lb, || {
        metric(&lb, "floatlb_config_reloads_total{result=\"success\"}") >= 1.0
    });
    assert_eq!(status_from(limited, "127.0.0.1", "/", &[]), 429);
    assert_eq!(metric(&lb, "floatlb_limit_entries{table=\"per-ip\"}"), 2.0);
    // ...and one that changes it starts it over.
    lb.reload(&config(&b, dir.path(), tls_port, 2000));
    wait_for("the second reload", &lb, || {
        metric(&lb, "floatlb_config_reloads_total{result=\"success\"}") >= 2.0
    });
    assert_eq!(status_from(limited, "127.0.0.1", "/", &[]), 200);
    assert_eq!(metric(&lb, "floatlb_limit_entries{table=\"per-ip\"}"), 1.0);

    // The access log: each 429 with termination PR.
    let log = dir.path().join("access.log");
    let start = Instant::now();
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.lines().filter(|l| l.contains(" 429 ")).count() >= 7 {
            break text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the access log:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(25));
    };
    for line in [
        "127.0.0.1 429 PR /",
        "127.0.0.2 429 PR /",
        "127.0.0.2 429 PR /api/x",
        "127.0.0.1 429 PR /missing/x",
        "127.0.0.1 429 PR /tarpit/x",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
    assert!(
        text.lines()
            .all(|l| !l.contains(" 429 ") || l.contains(" PR ")),
        "{text}"
    );
}

/// `floatlb route` names the tables a request is counted in and the rules;
/// `floatlb check` refuses a rule that cannot hold, at its key.
#[test]
fn route_names_the_limits_and_check_refuses_what_cannot_hold() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("proxy.toml");
    let write = |route_keys: &str| {
        std::fs::write(
            &file,
            format!(
                "[listen]\naddress = \"127.0.0.1:8080\"\ntrack = \"per-ip\"\nmax-connections = 50\n\
                 rate-limit = {{ requests = 100, per = \"10s\", burst = 20 }}\n\n\
                 [[limit]]\nname = \"per-ip\"\n\n\
                 [[limit]]\nname = \"per-key\"\nkey = \"header:X-Api-Key\"\nexpire = \"5m\"\n\n\
                 [[backend]]\nname = \"a\"\naddress = \"127.0.0.1:9001\"\n\n\
                 [[route]]\nname = \"api\"\npath-prefix = \"/api/\"\n{route_keys}\npool = \"default\"\n"
            ),
        )
        .unwrap();
    };
    write("track = \"per-key\"\nerror-limit = 50\nover-limit = \"tarpit\"");
    let (code, out, err) = floatlb_cmd("route", &file, &["GET", "http://x/api/a"]);
    assert_eq!(code, 0, "{err}");
    for line in [
        "limits: the listener tracks [[limit]] \"per-ip\" by address (rate-limit, max-connections 50, closed at accept); a request over a limit: 429",
        "limits: the route tracks [[limit]] \"per-key\" by header:x-api-key (error-limit 50); a request over a limit: 429 after a tarpit",
    ] {
        assert!(out.lines().any(|l| l == line), "no {line:?} in\n{out}");
    }
    // The route's bucket would refill in 2 minutes; the table forgets after 1.
    write("track = \"per-key\"\nrate-limit = { requests = 1, per = \"10m\" }");
    let (code, _, err) = floatlb_cmd("check", &file, &[]);
    assert_ne!(code, 0);
    assert!(
        err.contains("route[0].rate-limit: limit \"per-key\" forgets a client after 300s, before its bucket fills again (600s): raise its expire"),
        "{err}"
    );
}

/// Issue 29 item 3: two nodes share a `[[limit]]` table over `[peers]`. A
/// client limited on one is limited on the other at its first request (as
/// after a failover); another client is not; a datagram under another key is
/// dropped, counted, and changes nothing.
#[test]
fn peers_share_a_table_and_refuse_what_another_key_signed() {
    let web = TestBackend::start("web");
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("peers.key");
    std::fs::write(&key_file, "4q0V2yqgGGbW1nUpR6rjyGgOTmZ8H6fvl2nOf5xHCg4=\n").unwrap();
    let (pa, pb) = (free_port(), free_port());
    let node = |name: &str, me: u16, peer: u16| {
        format!(
            "[peers]\naddress = \"127.0.0.1:{me}\"\npeers = [\"127.0.0.1:{peer}\"]\nkey-file = \"{}\"\nname = \"{name}\"\ninterval = \"20ms\"\n\n\
             [[limit]]\nname = \"per-ip\"\nexpire = \"120s\"\n\n\
             [[limit]]\nname = \"per-key\"\nkey = \"header:X-Api-Key\"\nexpire = \"120s\"\n\n\
             [[pool]]\nname = \"web\"\nbackends = [\"{}\"]\n\n\
             [[route]]\nname = \"api\"\npath-prefix = \"/api/\"\ntrack = \"per-key\"\nrate-limit = {{ requests = 2, per = \"60s\" }}\npool = \"web\"\n\n\
             [[route]]\nname = \"all\"\ntrack = \"per-ip\"\nrate-limit = {{ requests = 3, per = \"60s\" }}\npool = \"web\"\n",
            key_file.display(),
            web.addr
        )
    };
    let a = Floatlb::start(&node("a", pa, pb));
    let b = Floatlb::start(&node("b", pb, pa));
    // An API key used up on a, from 127.0.0.2.
    let key = ["-H", "X-Api-Key: k1"];
    for _ in 0..2 {
        assert_eq!(status_from(a.addr, "127.0.0.2", "/api/x", &key), 200);
    }
    assert_eq!(status_from(a.addr, "127.0.0.2", "/api/x", &key), 429);
    for _ in 0..3 {
        assert_eq!(status_from(a.addr, "127.0.0.1", "/", &[]), 200);
    }
    // Any update b takes from here has the client's bucket as three
    // requests left it (the fourth, refused, draws nothing); a sends what
    // changed, and the recently seen clients again every second.
    assert_eq!(status_from(a.addr, "127.0.0.1", "/", &[]), 429);
    let received = "floatlb_peer_updates_total{direction=\"received\"}";
    let before = metric(&b, received);
    wait_for("b to hear of the client", &b, || {
        metric(&b, received) > before
    });
    // The client's first request to the other node: its bucket came along.
    let (status, headers, _, raw) = curl(
        &format!("http://{}/", b.addr),
        &["--interface", "127.0.0.1"],
    );
    assert_eq!(status, 429, "{raw}");
    assert!(header(&headers, "retry-after").is_some(), "{raw}");
    // The API key too, whatever the address: a header's digest is the same
    // on both nodes (its seeds come from the shared key).
    assert_eq!(status_from(b.addr, "127.0.0.1", "/api/x", &key), 429);
    assert_eq!(
        status_from(b.addr, "127.0.0.1", "/api/x", &["-H", "X-Api-Key: k2"]),
        200
    );
    assert_eq!(status_from(b.addr, "127.0.0.2", "/", &[]), 200);

    // A forged update under another key, claiming 127.0.0.2 is over its
    // limit: dropped unread, counted, and 127.0.0.2 is still served.
    let forged = floatlb::peers::Key::from_text("not the shared key, but long enough").unwrap();
    let mut id = [0u8; 16];
    id[10..].copy_from_slice(&[0xff, 0xff, 127, 0, 0, 2]);
    let update = floatlb::peers::Update {
        table: "per-ip".into(),
        id,
        requests: (1000, 1000),
        errors: (0, 0),
        period_age: 0,
        bucket_ahead: 3_600_000_000,
        seen_age: 0,
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let datagrams =
        floatlb::peers::Sender::new("mallory", now_ms * 1000).seal(&forged, now_ms, &[update]);
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.send_to(&datagrams[0], ("127.0.0.1", pb)).unwrap();
    let bad = "floatlb_peer_datagrams_dropped_total{reason=\"bad_tag\"}";
    wait_for("b to drop the forged datagram", &b, || {
        metric(&b, bad) >= 1.0
    });
    assert_eq!(status_from(b.addr, "127.0.0.2", "/", &[]), 200);
}
