//! Backends as they are in production (issue 30): TLS to nginx (verified,
//! with and without a required client certificate), HTTP/2 to nginx over TLS
//! and as h2c, and gRPC calls (unary, bidirectional streaming, a backend
//! killed mid-stream) from Python's grpcio through floatlb to a grpcio server.
//! Real peers on loopback; certificates made with `openssl`.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use support::peers::{make_ca, make_leaf, nginx, wait_port, Killed};
use support::{curl_sik, free_port, Floatlb};

fn python() -> Command {
    // Debian's python3 sees python3-grpcio; a pyenv shim on PATH may not.
    let mut c = Command::new("/usr/bin/python3");
    c.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/support/grpc_echo.py"
    ));
    c
}

/// A gRPC echo server on loopback; returns it with its port.
fn grpc_server() -> (Killed, u16) {
    let port = free_port();
    let mut child = python()
        .args(["server", &port.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3 with python3-grpcio (vm-lab/install-deps)");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "listening", "grpc server did not start");
    (Killed(child), port)
}

/// TLS to backends: verified against the pool's CA under its `server-name`
/// (RFC 8446 §4.4.2, RFC 6125), a client certificate sent for mTLS, and a
/// backend whose certificate does not verify refused with a reason.
#[test]
fn tls_backends_are_verified_and_get_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (web_cert, web_key) = make_leaf(d, "backend-ca", "web1.lab", "serverAuth");
    let (client_cert, client_key) = make_leaf(d, "client-ca", "floatlb-client", "clientAuth");
    make_ca(d, "other-ca");
    let (open_port, mtls_port) = (free_port(), free_port());
    let servers = format!(
        "server {{ listen 127.0.0.1:{open_port} ssl; ssl_certificate {wc}; ssl_certificate_key {wk};\n\
           location / {{ return 200 \"web1 sni=$ssl_server_name proto=$ssl_protocol\\n\"; }} }}\n\
         server {{ listen 127.0.0.1:{mtls_port} ssl; ssl_certificate {wc}; ssl_certificate_key {wk};\n\
           ssl_client_certificate {cca}; ssl_verify_client on;\n\
           location / {{ return 200 \"mtls client=$ssl_client_s_dn\\n\"; }} }}\n",
        wc = web_cert.display(),
        wk = web_key.display(),
        cca = d.join("client-ca.pem").display(),
    );
    let _nginx = nginx(d, &servers);
    wait_port(open_port);
    wait_port(mtls_port);
    let ca = d.join("backend-ca.pem");
    let other = d.join("other-ca.pem");
    let pool = |name: &str, port: u16, tls: &str| {
        format!("[[pool]]\nname = \"{name}\"\nbackends = [\"127.0.0.1:{port}\"]\ntls = {{ {tls} }}\nhealth = {{ enabled = false }}\n")
    };
    let route = |prefix: &str, pool: &str| {
        format!("[[route]]\npath-prefix = \"/{prefix}\"\npool = \"{pool}\"\n")
    };
    let named = format!("ca = \"{}\", server-name = \"web1.lab\"", ca.display());
    let body = [
        pool("secure", open_port, &named),
        pool(
            "mtls",
            mtls_port,
            &format!(
                "{named}, cert = \"{}\", key = \"{}\"",
                client_cert.display(),
                client_key.display()
            ),
        ),
        pool("nocert", mtls_port, &named),
        pool(
            "wrongca",
            open_port,
            &format!("ca = \"{}\", server-name = \"web1.lab\"", other.display()),
        ),
        pool("noverify", open_port, "verify = false"),
        route("secure", "secure"),
        route("mtls", "mtls"),
        route("nocert", "nocert"),
        route("wrongca", "wrongca"),
        route("noverify", "noverify"),
    ]
    .concat();
    let lb = Floatlb::start(&body);
    let url = |p: &str| format!("http://{}/{p}", lb.addr);
    let (status, _, text, _) = curl_sik(&url("secure"), &[]);
    assert_eq!(status, 200, "{text}");
    assert!(text.starts_with("web1 sni=web1.lab proto=TLSv1."), "{text}");
    // Keep-alive to the backend: a second request reuses the pooled session.
    let (status, _, _, _) = curl_sik(&url("secure"), &[]);
    assert_eq!(status, 200);
    let (status, _, text, _) = curl_sik(&url("mtls"), &[]);
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("client=CN=floatlb-client"), "{text}");
    // Without a certificate, nginx refuses the request itself (400).
    let (status, _, text, _) = curl_sik(&url("nocert"), &[]);
    assert_eq!(status, 400, "{text}");
    // A certificate no configured CA signed: 502, and why.
    let (status, _, text, _) = curl_sik(&url("wrongca"), &[]);
    assert_eq!(status, 502, "{text}");
    assert!(
        text.contains("handshake") && text.contains("certificate"),
        "{text}"
    );
    // verify = false (HAProxy's `verify none`) takes it; no SNI for an address.
    let (status, _, text, _) = curl_sik(&url("noverify"), &[]);
    assert_eq!(status, 200, "{text}");
    assert!(text.starts_with("web1 sni= "), "{text}");
}

/// `floatlb check` names a pool's TLS file problem and an h2 pool without TLS.
#[test]
fn check_names_backend_tls_problems() {
    let text = "[listen]\naddress = \"127.0.0.1:8080\"\n[[pool]]\nname = \"secure\"\nbackends = [\"198.18.0.11:8443\"]\ntls = { ca = \"/nonexistent/backend-ca.pem\", server-name = \"web1.lab\" }\n[[pool]]\nname = \"grpc\"\nbackends = [\"198.18.0.12:50051\"]\nprotocol = \"h2\"\n[[route]]\npool = \"secure\"\n[[route]]\npath-prefix = \"/g\"\npool = \"grpc\"\n";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("proxy.toml");
    std::fs::write(&file, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_floatlb"))
        .args(["check", "-c"])
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("pool[0].tls") && err.contains("cannot read /nonexistent/backend-ca.pem"),
        "{err}"
    );
    assert!(
        err.contains("pool[1].protocol") && err.contains("HTTP/2 over TLS"),
        "{err}"
    );
}

/// HTTP/2 to backends: nginx over TLS chosen by ALPN (RFC 9113 §3.2) and as
/// h2c with prior knowledge (§3.3), from an HTTP/1.1 client.
#[test]
fn http1_clients_reach_http2_backends_over_tls_and_h2c() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (web_cert, web_key) = make_leaf(d, "backend-ca", "web2.lab", "serverAuth");
    let (tls_port, h2c_port) = (free_port(), free_port());
    let servers = format!(
        "server {{ listen 127.0.0.1:{tls_port} ssl http2; ssl_certificate {wc}; ssl_certificate_key {wk};\n\
           location / {{ return 200 \"proto=$server_protocol host=$host\\n\"; }} }}\n\
         server {{ listen 127.0.0.1:{h2c_port} http2;\n\
           location / {{ return 200 \"proto=$server_protocol host=$host\\n\"; }} }}\n",
        wc = web_cert.display(),
        wk = web_key.display(),
    );
    let _nginx = nginx(d, &servers);
    wait_port(tls_port);
    wait_port(h2c_port);
    let body = format!(
        "[[pool]]\nname = \"h2\"\nbackends = [\"127.0.0.1:{tls_port}\"]\nprotocol = \"h2\"\n\
         tls = {{ ca = \"{ca}\", server-name = \"web2.lab\" }}\n\
         [[pool]]\nname = \"h2c\"\nbackends = [\"127.0.0.1:{h2c_port}\"]\nprotocol = \"h2c\"\n\
         [[pool]]\nname = \"burst\"\nbackends = [\"127.0.0.1:{h2c_port}\"]\nprotocol = \"h2c\"\n\
         [[route]]\npath-prefix = \"/tls\"\npool = \"h2\"\n\
         [[route]]\npath-prefix = \"/burst\"\npool = \"burst\"\n[[route]]\npool = \"h2c\"\n",
        ca = d.join("backend-ca.pem").display()
    );
    let lb = Floatlb::start(&body);
    for (path, n) in [("tls", 3), ("plain", 3)] {
        for _ in 0..n {
            let (status, _, text, _) = curl_sik(
                &format!("http://{}/{path}", lb.addr),
                &["-H", "Host: app.example"],
            );
            assert_eq!(status, 200, "{path}: {text}");
            assert_eq!(text.trim(), "proto=HTTP/2.0 host=app.example", "{path}");
        }
    }
    // A POST body (sent chunked by curl) arrives whole as DATA.
    let (status, _, _, _) = curl_sik(
        &format!("http://{}/plain", lb.addr),
        &["-H", "Transfer-Encoding: chunked", "--data-binary", "hello"],
    );
    assert_eq!(status, 200);
    // A burst of requests at once to a pool with no session yet shares the
    // one the first opens (RFC 9113 §9.1: one connection per origin), rather
    // than each request opening its own.
    let url = format!("http://{}/burst", lb.addr);
    let burst: Vec<_> = (0..16)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || curl_sik(&url, &[]).0)
        })
        .collect();
    for t in burst {
        assert_eq!(t.join().unwrap(), 200);
    }
    let metrics = support::http_get(lb.admin, "/metrics").2;
    let opened = metrics
        .lines()
        .find(|l| {
            l.starts_with("floatlb_backend_connections_total")
                && l.contains(&format!("backend=\"127.0.0.1:{h2c_port}\""))
                && l.contains("pool=\"burst\"")
        })
        .unwrap_or_else(|| panic!("no connection count for the h2c backend: {metrics}"));
    assert!(
        opened.ends_with(" 1"),
        "one HTTP/2 connection for the burst: {opened}"
    );
}

/// floatlb on a TLS listener (certificate for `grpc.test`, its CA at `ca`) in
/// front of a grpcio server through an `h2c` pool, with `more` before.
struct GrpcFront {
    server: Killed,
    lb: Floatlb,
    tls: String,
    ca: std::path::PathBuf,
}

fn grpc_front(d: &std::path::Path, more: &str) -> GrpcFront {
    let (cert, key) = make_leaf(d, "front-ca", "grpc.test", "serverAuth");
    let (server, grpc_port) = grpc_server();
    let tls = format!("127.0.0.1:{}", free_port());
    let body = format!(
        "{more}[tls]\naddress = \"{tls}\"\n[[tls.certificate]]\ncert = \"{}\"\nkey = \"{}\"\n\
         [[pool]]\nname = \"grpc\"\nbackends = [\"127.0.0.1:{grpc_port}\"]\nprotocol = \"h2c\"\n\
         health = {{ enabled = false }}\n",
        cert.display(),
        key.display(),
    );
    GrpcFront {
        server,
        lb: Floatlb::start(&body),
        tls,
        ca: d.join("front-ca.pem"),
    }
}

/// Calls `/echo.Echo/Slow` through floatlb at `tls`; after its third message,
/// runs `event`; returns how the call ended ("status <CODE> <details>").
fn slow_call(tls: &str, ca: &std::path::Path, event: impl FnOnce()) -> String {
    let mut slow = python()
        .args(["slow", tls, ca.to_str().unwrap(), "grpc.test"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(slow.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ticks 3");
    event();
    let ended = lines.next().unwrap().unwrap();
    let _ = slow.wait();
    ended
}

/// gRPC end to end (gRPC's PROTOCOL-HTTP2.md over RFC 9113 §8.1): a unary
/// call with its trailers, a bidirectional stream whose messages cross while
/// both sides are open, floatlb's own failure as `grpc-status`, and a backend
/// killed mid-stream ending the call with a status, not a hang.
#[test]
fn grpc_calls_stream_both_ways_and_end_with_a_status() {
    let dir = tempfile::tempdir().unwrap();
    // Every field bound: one left to `..` would be dropped (killed) here.
    let GrpcFront {
        server,
        lb: _lb,
        tls,
        ca,
    } = grpc_front(dir.path(), "");
    let run = |mode: &str| {
        let out = python()
            .args([mode, &tls, ca.to_str().unwrap(), "grpc.test"])
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let out = run("client");
    assert!(
        out.contains("unary echo:hi trailer=grpc-echo"),
        "trailers pass: {out}"
    );
    assert!(out.contains("chat re:m0,re:m1,re:m2,re:m3,re:m4"), "{out}");
    // A backend killed mid-stream: the client gets a status, not a hang.
    let ended = slow_call(&tls, &ca, || drop(server));
    assert!(ended.starts_with("status "), "{ended}");
    assert!(
        !ended.contains("DEADLINE_EXCEEDED") && !ended.contains(" OK"),
        "the call must end when the backend goes: {ended}"
    );
    // floatlb's own failure (no backend answers): UNAVAILABLE with the reason.
    let out = run("unary");
    assert!(out.starts_with("status UNAVAILABLE"), "{out}");
}

/// A drain to exit ends a gRPC call still streaming with a status in its
/// trailers (gRPC's PROTOCOL-HTTP2.md: `grpc-status` 14 UNAVAILABLE, which
/// the client may retry elsewhere), after the GOAWAY (RFC 9113 §6.8) and
/// half of `timeouts.handover` before the drain ends: not left to the
/// drain's end, where the connection would be dropped under it.
#[test]
fn a_drain_ends_a_streaming_grpc_call_with_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let GrpcFront {
        server: _server,
        lb,
        tls,
        ca,
    } = grpc_front(
        dir.path(),
        "[timeouts]\nhandover = \"2s\"\ndrain = \"2s\"\n",
    );
    let ended = slow_call(&tls, &ca, || lb.signal(libc::SIGTERM));
    assert!(
        ended.starts_with("status UNAVAILABLE floatlb: this node is shutting down"),
        "the drain must end the call with its own status, not drop the connection: {ended}\n{}",
        lb.log()
    );
}
