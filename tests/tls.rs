//! The `[tls]` listener with real clients: curl over HTTP/1.1 and HTTP/2,
//! `openssl s_client` for SNI, ALPN, TLS versions and session resumption, a
//! small hyper HTTP/2 client for a stream reset, and `floatlb check` for bad
//! certificate files. Test certificates are made here with `openssl req`
//! (installed by `vm-lab/install-deps`, as curl is).

mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::{backend_tables, free_port, http_get, https_get, make_cert, Floatlb, TestBackend};

fn tool(name: &str) -> Command {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(found, "{name} is missing: run vm-lab/install-deps");
    Command::new(name)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A ticket-keys file of `n` random 80-byte keys.
fn ticket_keys(path: &Path, n: usize) {
    let mut lines = String::new();
    for _ in 0..n {
        let o = tool("openssl")
            .args(["rand", "-base64", "80"])
            .output()
            .unwrap();
        lines.push_str(&String::from_utf8_lossy(&o.stdout).replace('\n', ""));
        lines.push('\n');
    }
    std::fs::write(path, lines).unwrap();
}

struct Setup {
    dir: tempfile::TempDir,
    tls: SocketAddr,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        make_cert(dir.path(), "a", &["a.test", "*.a.test"], 90);
        make_cert(dir.path(), "b", &["b.test"], 90);
        let tls = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        Setup { dir, tls }
    }

    fn path(&self, f: &str) -> String {
        self.dir.path().join(f).display().to_string()
    }

    /// `[tls]` with certificates a (default) and b, plus `extra` keys.
    fn table(&self, extra: &str) -> String {
        format!(
            "[tls]\naddress = \"{}\"\n{extra}\n[[tls.certificate]]\ncert = \"{}\"\nkey = \"{}\"\n\n[[tls.certificate]]\ncert = \"{}\"\nkey = \"{}\"\n",
            self.tls,
            self.path("a.pem"),
            self.path("a.key"),
            self.path("b.pem"),
            self.path("b.key")
        )
    }
}

fn curl(tls: SocketAddr, args: &[&str], path: &str) -> String {
    let resolve = format!("a.test:{}:127.0.0.1", tls.port());
    let out = tool("curl")
        .args(["-sk", "--max-time", "10", "--resolve", &resolve])
        .args(args)
        .arg(format!("https://a.test:{}{path}", tls.port()))
        .output()
        .unwrap();
    assert!(out.status.success(), "curl {args:?} {path}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `openssl s_client` with `args`; stdin closes at once unless `hold`.
fn s_client(tls: SocketAddr, args: &[&str]) -> String {
    let mut child = tool("openssl")
        .args(["s_client", "-connect", &tls.to_string()])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A moment for a TLS 1.3 ticket, which comes after the handshake, then Q to quit.
    std::thread::sleep(Duration::from_millis(300));
    let _ = child.stdin.take().unwrap().write_all(b"Q\n");
    let out = child.wait_with_output().unwrap();
    text(&out)
}

fn metrics(lb: &Floatlb) -> String {
    http_get(lb.admin, "/metrics").2
}

fn metric(lb: &Floatlb, series: &str) -> f64 {
    support::netns::metric(&metrics(lb), series).unwrap_or(0.0)
}

#[test]
fn curl_over_http1_and_http2_reaches_the_backend_as_https() {
    let b = TestBackend::start("b1");
    let s = Setup::new();
    let lb = Floatlb::start(&format!(
        "{}\n{}",
        backend_tables(&[(&b, 1)]),
        s.table("hsts = 600")
    ));
    for (args, version) in [(&["--http1.1"][..], "1.1"), (&["--http2"][..], "2")] {
        let mut a = args.to_vec();
        a.extend(["-D", "-", "-w", "\nversion=%{http_version}"]);
        let out = curl(s.tls, &a, "/headers");
        assert!(out.contains(&format!("version={version}")), "{out}");
        // What the backend saw: X-Forwarded-Proto says the client came over TLS.
        assert!(out.contains("x-forwarded-proto: https"), "{out}");
        assert!(out.contains("host: a.test:"), "{out}");
        // RFC 6797 §6.1: HSTS on answers over TLS.
        assert!(
            out.to_lowercase()
                .contains("strict-transport-security: max-age=600"),
            "{out}"
        );
    }
    assert_eq!(metric(&lb, "floatlb_http2_requests_total"), 1.0);
    // The certificates' notAfter, for alerting: about 90 days from now.
    let m = metrics(&lb);
    let expiry = m
        .lines()
        .find(|l| {
            l.starts_with("floatlb_tls_certificate_expiry_seconds{")
                && l.contains("name=\"a.test\"")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("{m}"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (expiry - now - 90.0 * 86400.0).abs() < 2.0 * 86400.0,
        "{expiry} {now}"
    );
    assert!(metric(&lb, "floatlb_tls_handshakes_total{result=\"ok\"}") >= 2.0);
    // The cleartext listener still speaks HTTP, with X-Forwarded-Proto http.
    let (status, _, body) = http_get(lb.addr, "/headers");
    assert_eq!(status, 200);
    assert!(body.contains("x-forwarded-proto: http\n"), "{body}");
}

#[test]
fn redirect_http_sends_cleartext_requests_to_https() {
    let b = TestBackend::start("b1");
    let s = Setup::new();
    let lb = Floatlb::start(&format!(
        "{}\n{}",
        backend_tables(&[(&b, 1)]),
        s.table("redirect-http = true")
    ));
    let (status, headers, _) = support::raw_request(
        lb.addr,
        "GET /x?y=1 HTTP/1.1\r\nHost: a.test:8080\r\nConnection: close\r\n\r\n",
    );
    // RFC 9110 §15.4.9: 308 keeps the method; Location names the TLS port.
    assert_eq!(status, 308);
    let want = format!("https://a.test:{}/x?y=1", s.tls.port());
    assert_eq!(support::header(&headers, "location"), Some(want.as_str()));
    assert_eq!(b.requests(), 0, "a redirected request reaches no backend");
}

#[test]
fn openssl_s_client_sni_alpn_and_versions() {
    let b = TestBackend::start("b1");
    let s = Setup::new();
    let _lb = Floatlb::start(&format!("{}\n{}", backend_tables(&[(&b, 1)]), s.table("")));
    // RFC 6066 §3: the server name picks the certificate; none: the first.
    let out = s_client(s.tls, &["-servername", "b.test"]);
    assert!(out.contains("subject=CN = b.test"), "{out}");
    let out = s_client(s.tls, &["-servername", "www.a.test"]);
    assert!(out.contains("subject=CN = a.test"), "{out}");
    let out = s_client(s.tls, &["-noservername"]);
    assert!(out.contains("subject=CN = a.test"), "{out}");
    // RFC 7301 §3.2: the server picks from the client's list.
    let out = s_client(s.tls, &["-alpn", "h2,http/1.1"]);
    assert!(out.contains("ALPN protocol: h2"), "{out}");
    let out = s_client(s.tls, &["-alpn", "http/1.1"]);
    assert!(out.contains("ALPN protocol: http/1.1"), "{out}");
    for (flag, version) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let out = s_client(s.tls, &[flag]);
        assert!(out.contains(&format!("Protocol  : {version}")), "{out}");
    }
    // Nothing older than TLS 1.2 (RFC 8996).
    let out = s_client(s.tls, &["-tls1_1"]);
    assert!(out.contains("alert handshake failure"), "{out}");
}

#[test]
fn http2_post_and_many_streams_on_one_connection_spread_over_backends() {
    let (b1, b2) = (TestBackend::start("b1"), TestBackend::start("b2"));
    let s = Setup::new();
    let lb = Floatlb::start(&format!(
        "{}\n{}",
        backend_tables(&[(&b1, 1), (&b2, 1)]),
        s.table("")
    ));
    // A body larger than one read, streamed as DATA frames.
    let upload = s.dir.path().join("upload.bin");
    std::fs::write(&upload, vec![b'z'; 300_000]).unwrap();
    let data = format!("@{}", upload.display());
    let out = curl(s.tls, &["--http2", "--data-binary", &data], "/upload");
    assert_eq!(out, "300000");
    // RFC 9113 §5: streams multiplexed on one connection.
    let before = metric(&lb, "floatlb_tls_handshakes_total{result=\"ok\"}");
    let url = format!("https://a.test:{}/", s.tls.port());
    let resolve = format!("a.test:{}:127.0.0.1", s.tls.port());
    let mut cmd = tool("curl");
    cmd.args(["-sk", "--http2", "--max-time", "20", "--resolve", &resolve])
        .args(["-Z", "--parallel-max", "20"])
        .args(["-w", "%{http_code} %{http_version}\n", "-o", "/dev/null"]);
    for _ in 0..20 {
        cmd.arg(&url);
    }
    let out = cmd.output().unwrap();
    let t = String::from_utf8_lossy(&out.stdout);
    // Bodies go to stdout too, between the -w lines.
    assert_eq!(t.matches("200 2\n").count(), 20, "{}", text(&out));
    let handshakes = metric(&lb, "floatlb_tls_handshakes_total{result=\"ok\"}") - before;
    assert_eq!(handshakes, 1.0, "one TLS connection carried the 20 streams");
    assert!(
        b1.requests() >= 5 && b2.requests() >= 5,
        "{} {}",
        b1.requests(),
        b2.requests()
    );
}

#[test]
fn check_names_the_file_and_the_problem() {
    let s = Setup::new();
    make_cert(s.dir.path(), "soon", &["soon.test"], 3);
    let check = |table: String| {
        let cfg = s.dir.path().join("check.toml");
        let body = format!(
            "[listen]\naddress = \"127.0.0.1:1\"\n[[backend]]\nname = \"b\"\naddress = \"127.0.0.1:2\"\n{table}"
        );
        std::fs::write(&cfg, body).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_floatlb"))
            .args(["check", "-c"])
            .arg(&cfg)
            .output()
            .unwrap();
        (out.status.success(), text(&out))
    };
    let one = |cert: &str, key: &str, names: &str| {
        format!(
            "[tls]\naddress = \"{}\"\n[[tls.certificate]]\ncert = \"{}\"\nkey = \"{}\"\n{names}",
            s.tls,
            s.path(cert),
            s.path(key)
        )
    };
    let (ok, out) = check(one("b.pem", "a.key", ""));
    assert!(!ok);
    assert!(
        out.contains("a.key: the key does not match the certificate"),
        "{out}"
    );
    assert!(
        out.contains("check.toml:"),
        "the config position is named: {out}"
    );
    let (ok, out) = check(one("a.pem", "missing.key", ""));
    assert!(!ok);
    assert!(
        out.contains("cannot read") && out.contains("missing.key"),
        "{out}"
    );
    let (ok, out) = check(one("a.pem", "a.key", "names = [\"c.test\"]"));
    assert!(!ok);
    assert!(
        out.contains("a.pem: the certificate is not valid for \"c.test\""),
        "{out}"
    );
    std::fs::write(s.dir.path().join("junk.pem"), "not a certificate").unwrap();
    let (ok, out) = check(one("junk.pem", "a.key", ""));
    assert!(!ok);
    assert!(out.contains("junk.pem"), "{out}");
    let (ok, out) = check(one("a.pem", "a.key", "names = [\"x.a.test\"]"));
    assert!(ok, "{out}");
    let (ok, out) = check(one("soon.pem", "soon.key", ""));
    assert!(ok, "expiring soon is a warning: {out}");
    assert!(
        out.contains("warning:") && out.contains("soon.pem") && out.contains("expires in"),
        "{out}"
    );
}

#[test]
fn reload_swaps_the_certificate_and_keeps_open_connections() {
    let b = TestBackend::start("b1");
    let s = Setup::new();
    let body = format!("{}\n{}", backend_tables(&[(&b, 1)]), s.table(""));
    let lb = Floatlb::start(&body);
    let mut open = client::Conn::open(s.tls, "a.test");
    assert_eq!(open.get("/"), "b1");
    assert!(s_client(s.tls, &["-servername", "a.test"]).contains("subject=CN = a.test"));
    // A new certificate for the same names, with another CN so it shows.
    make_cert(s.dir.path(), "a", &["new.a.test", "a.test", "*.a.test"], 90);
    lb.reload(&body);
    let start = Instant::now();
    while metric(&lb, "floatlb_config_reloads_total{result=\"success\"}") < 1.0 {
        assert!(start.elapsed() < Duration::from_secs(10), "{}", lb.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = s_client(s.tls, &["-servername", "a.test"]);
    assert!(out.contains("subject=CN = new.a.test"), "{out}");
    // The connection opened before the reload still serves.
    assert_eq!(open.get("/"), "b1");
    // A bad new key: the reload fails naming the file, the running certificate stays.
    std::fs::write(s.dir.path().join("a.key"), "garbage").unwrap();
    lb.reload(&body);
    let start = Instant::now();
    while metric(&lb, "floatlb_config_reloads_total{result=\"failure\"}") < 1.0 {
        assert!(start.elapsed() < Duration::from_secs(10), "{}", lb.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(lb.log().contains("a.key"), "{}", lb.log());
    let out = s_client(s.tls, &["-servername", "a.test"]);
    assert!(out.contains("subject=CN = new.a.test"), "{out}");
    assert_eq!(open.get("/"), "b1");
}

#[test]
fn a_session_resumes_on_the_other_node_with_the_shared_ticket_keys() {
    let b = TestBackend::start("b1");
    let s = Setup::new();
    ticket_keys(&s.dir.path().join("tickets"), 3);
    let keys = format!("ticket-keys = \"{}\"", s.path("tickets"));
    let lb1 = Floatlb::start(&format!(
        "{}\n{}",
        backend_tables(&[(&b, 1)]),
        s.table(&keys)
    ));
    let s2 = Setup {
        dir: tempfile::tempdir().unwrap(),
        tls: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
    };
    // The second node: the same certificates and ticket keys, its own port.
    let table2 = s
        .table(&keys)
        .replace(&s.tls.to_string(), &s2.tls.to_string());
    let lb2 = Floatlb::start(&format!("{}\n{}", backend_tables(&[(&b, 1)]), table2));
    for version in ["-tls1_2", "-tls1_3"] {
        let sess = s.dir.path().join("session");
        let _ = std::fs::remove_file(&sess);
        let sess_arg = sess.display().to_string();
        let out = s_client(
            s.tls,
            &[version, "-servername", "a.test", "-sess_out", &sess_arg],
        );
        assert!(out.contains("New,"), "{out}");
        // RFC 5077 / RFC 8446 §2.2: the ticket opens on the other node.
        let out = s_client(
            s2.tls,
            &[version, "-servername", "a.test", "-sess_in", &sess_arg],
        );
        assert!(out.contains("Reused,"), "{version}: {out}");
    }
    assert_eq!(
        metric(&lb2, "floatlb_tls_handshakes_total{result=\"resumed\"}"),
        2.0
    );
    // Rotation: a session from before, a new key appended and SIGHUP; the
    // old key still decrypts, so the session resumes after the reload.
    let sess = s.dir.path().join("before-rotation");
    let sess_arg = sess.display().to_string();
    s_client(
        s.tls,
        &["-tls1_3", "-servername", "a.test", "-sess_out", &sess_arg],
    );
    let keys_file = s.dir.path().join("tickets");
    let mut keys_text = std::fs::read_to_string(&keys_file).unwrap();
    ticket_keys(&s.dir.path().join("new-key"), 1);
    keys_text.push_str(&std::fs::read_to_string(s.dir.path().join("new-key")).unwrap());
    std::fs::write(&keys_file, keys_text).unwrap();
    lb2.signal(libc::SIGHUP);
    let start = Instant::now();
    while metric(&lb2, "floatlb_config_reloads_total{result=\"success\"}") < 1.0 {
        assert!(start.elapsed() < Duration::from_secs(10), "{}", lb2.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = s_client(
        s2.tls,
        &["-tls1_3", "-servername", "a.test", "-sess_in", &sess_arg],
    );
    assert!(out.contains("Reused,"), "after rotation: {out}");
    drop(lb1);
    drop(lb2);
    // Without the shared file each node has its own keys: no resumption across.
    let lb1 = Floatlb::start(&format!("{}\n{}", backend_tables(&[(&b, 1)]), s.table("")));
    let table2 = s.table("").replace(&s.tls.to_string(), &s2.tls.to_string());
    let lb2 = Floatlb::start(&format!("{}\n{}", backend_tables(&[(&b, 1)]), table2));
    let sess = s.dir.path().join("session2");
    let sess_arg = sess.display().to_string();
    s_client(
        s.tls,
        &["-tls1_3", "-servername", "a.test", "-sess_out", &sess_arg],
    );
    let out = s_client(
        s2.tls,
        &["-tls1_3", "-servername", "a.test", "-sess_in", &sess_arg],
    );
    assert!(out.contains("New,"), "{out}");
    drop((lb1, lb2));
}

#[test]
fn a_stream_reset_by_the_client_leaves_the_others_alone() {
    let b = TestBackend::start("b1");
    let s = Setup::new();
    let lb = Floatlb::start(&format!("{}\n{}", backend_tables(&[(&b, 1)]), s.table("")));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut h2 = client::H2::open(s.tls).await;
        let slow = h2.send("/slow?ms=3000");
        // Dropped before its answer: RST_STREAM(CANCEL) (RFC 9113 §8.7).
        let _ = tokio::time::timeout(Duration::from_millis(300), slow).await;
        for _ in 0..5 {
            assert_eq!(h2.send("/").await, (200, "b1".to_string()));
        }
        // The same connection carried them: the reset ended only its stream.
        assert!(!h2.1.is_finished(), "the connection ended");
    });
    assert_eq!(metric(&lb, "floatlb_http2_requests_total"), 6.0);
}

#[test]
fn a_drain_sends_goaway_and_lets_open_streams_finish() {
    let b = TestBackend::start("b1");
    let s = Setup::new();
    let mut lb = Floatlb::start(&format!("{}\n{}", backend_tables(&[(&b, 1)]), s.table("")));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut h2 = client::H2::open(s.tls).await;
        assert_eq!(h2.send("/").await, (200, "b1".to_string()));
        let slow = tokio::spawn(h2.send("/slow?ms=1500"));
        tokio::time::sleep(Duration::from_millis(300)).await;
        lb.signal(libc::SIGTERM);
        // RFC 9113 §6.8: after GOAWAY the stream under way still completes...
        let answer = tokio::time::timeout(Duration::from_secs(10), slow).await;
        assert_eq!(answer.unwrap().unwrap(), (200, "b1".to_string()));
        // ...and then the server closes the connection cleanly.
        let closed = tokio::time::timeout(Duration::from_secs(10), &mut h2.1).await;
        assert!(matches!(closed, Ok(Ok(Ok(())))), "{closed:?}");
    });
    let start = Instant::now();
    while lb.child.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "floatlb did not stop"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(lb.log().contains("stopped"), "{}", lb.log());
}

#[test]
fn an_idle_http2_connection_is_closed_with_goaway() {
    let b = TestBackend::start("b1");
    let s = Setup::new();
    let _lb = Floatlb::start(&format!(
        "{}\n[timeouts]\nidle = \"300ms\"\n\n{}",
        backend_tables(&[(&b, 1)]),
        s.table("")
    ));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut h2 = client::H2::open(s.tls).await;
        // A stream longer than the idle timeout is not cut by it.
        assert_eq!(h2.send("/slow?ms=600").await, (200, "b1".to_string()));
        let closed = tokio::time::timeout(Duration::from_secs(5), &mut h2.1).await;
        assert!(matches!(closed, Ok(Ok(Ok(())))), "{closed:?}");
    });
}

/// A TLS client that accepts any certificate (the tests check names with
/// s_client), over HTTP/1.1 or HTTP/2.
mod client {
    use std::io::Write;
    use std::net::SocketAddr;
    use std::sync::Arc;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty};
    use rustls::pki_types::ServerName;

    fn config(alpn: &[u8]) -> Arc<rustls::ClientConfig> {
        crate::support::tls_client::any_cert_config(alpn)
    }

    /// A blocking HTTP/1.1 keep-alive connection over TLS.
    pub struct Conn(rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>);

    impl Conn {
        pub fn open(addr: SocketAddr, sni: &str) -> Conn {
            let name = ServerName::try_from(sni.to_string()).unwrap();
            let conn = rustls::ClientConnection::new(config(b"http/1.1"), name).unwrap();
            let tcp = std::net::TcpStream::connect(addr).unwrap();
            tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))
                .unwrap();
            Conn(rustls::StreamOwned::new(conn, tcp))
        }

        /// GET `path`; the body.
        pub fn get(&mut self, path: &str) -> String {
            write!(self.0, "GET {path} HTTP/1.1\r\nHost: a.test\r\n\r\n").unwrap();
            self.0.flush().unwrap();
            let answer = crate::support::read_answer(&mut self.0).unwrap();
            String::from_utf8(answer.body).unwrap()
        }
    }

    /// An HTTP/2 connection over TLS (hyper's client).
    pub struct H2(
        hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
        /// The connection's task: ends when the server closes it.
        pub tokio::task::JoinHandle<Result<(), hyper::Error>>,
    );

    impl H2 {
        pub async fn open(addr: SocketAddr) -> H2 {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let connector = tokio_rustls::TlsConnector::from(config(b"h2"));
            let name = ServerName::try_from("a.test").unwrap();
            let tls = connector.connect(name, tcp).await.unwrap();
            let (send, conn) = hyper::client::conn::http2::handshake(
                hyper_util::rt::TokioExecutor::new(),
                hyper_util::rt::TokioIo::new(tls),
            )
            .await
            .unwrap();
            let task = tokio::spawn(conn);
            H2(send, task)
        }

        /// GET `path`: (status, body).
        pub fn send(
            &mut self,
            path: &str,
        ) -> impl std::future::Future<Output = (u16, String)> + 'static {
            let req = http::Request::get(format!("https://a.test{path}"))
                .body(Empty::new())
                .unwrap();
            let resp = self.0.send_request(req);
            async move {
                let resp = resp.await.unwrap();
                let status = resp.status().as_u16();
                let body = resp.into_body().collect().await.unwrap().to_bytes();
                (status, String::from_utf8_lossy(&body).into_owned())
            }
        }
    }
}

/// Without a ticket-keys file the keys are the supervisor's, made once and
/// handed to each worker: a TLS 1.3 session (RFC 8446 §2.2) made before an
/// upgrade in place resumes on the new worker, and after the worker is
/// killed and replaced. A second floatlb has keys of its own: no resumption.
#[test]
fn sessions_resume_across_an_upgrade_and_a_worker_restart_without_a_ticket_file() {
    let b = TestBackend::start("b1");
    let s = Setup::new();
    let lb = Floatlb::start(&format!("{}\n{}", backend_tables(&[(&b, 1)]), s.table("")));
    let sess = s.dir.path().join("session");
    let sess_arg = sess.display().to_string();
    let out = s_client(
        s.tls,
        &["-tls1_3", "-servername", "a.test", "-sess_out", &sess_arg],
    );
    assert!(out.contains("New,"), "{out}");
    let resume = |tls: SocketAddr| {
        s_client(
            tls,
            &["-tls1_3", "-servername", "a.test", "-sess_in", &sess_arg],
        )
    };
    let first = lb.worker_pid();
    let (code, out, err) = support::floatlb_cmd("ctl", &lb.config_path, &["upgrade"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_ne!(lb.worker_pid(), first);
    let out = resume(s.tls);
    assert!(out.contains("Reused,"), "after the upgrade: {out}");
    let second = lb.worker_pid();
    // SAFETY: a signal to the worker of the floatlb this test started.
    unsafe { libc::kill(second as i32, libc::SIGKILL) };
    lb.wait_status("a new worker", |st| {
        !st.contains(&format!("\"worker_pid\":{second},"))
    });
    let out = resume(s.tls);
    assert!(out.contains("Reused,"), "after the restart: {out}");
    let other = Setup {
        dir: tempfile::tempdir().unwrap(),
        tls: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
    };
    let table = s
        .table("")
        .replace(&s.tls.to_string(), &other.tls.to_string());
    let _lb2 = Floatlb::start(&format!("{}\n{}", backend_tables(&[(&b, 1)]), table));
    let out = resume(other.tls);
    assert!(!out.contains("Reused,") && out.contains("New,"), "{out}");
}

/// Issue 28: an HTTP/2 stream routes by `:authority` exactly as an HTTP/1
/// request by Host (RFC 9113 §8.3.1: `:authority` stands in for Host), with
/// the route's field edits on both sides; curl and h2load as the clients.
#[test]
fn http2_streams_route_by_authority_as_http1_requests_by_host() {
    let (shop, api, www) = (
        TestBackend::start("shop"),
        TestBackend::start("api"),
        TestBackend::start("www"),
    );
    let s = Setup::new();
    let pools: String = [("shop", &shop), ("api", &api), ("www", &www)]
        .iter()
        .map(|(n, b)| format!("[[pool]]\nname = \"{n}\"\nbackends = [\"{}\"]\n", b.addr))
        .collect();
    let routes = r#"
[[route]]
host = "shop.a.test"
pool = "shop"

[[route]]
path-prefix = "/api/"
pool = "api"
request-headers = { set = { "X-Route" = "api" } }
response-headers = { add = { "X-Routed" = "api" } }

[[route]]
path-prefix = "/maint/"
respond = { status = 503, body = "back soon" }

[[route]]
pool = "www"
"#;
    let _lb = Floatlb::start(&format!("{pools}{routes}\n{}", s.table("")));
    // RFC 9110 §9.3.2 over HTTP/2: a HEAD gets the page's fields, no DATA.
    let (status, h, body) = https_get(s.tls.port(), "a.test", "/maint/x", &["--http2", "-I"]);
    assert_eq!((status, body.as_str()), (503, ""));
    assert_eq!(support::header(&h, "content-length"), Some("9"));
    let (status, _, body) = https_get(s.tls.port(), "a.test", "/maint/x", &["--http2"]);
    assert_eq!((status, body.as_str()), (503, "back soon"));
    let get = |host: &str, path: &str, version: &str| {
        let (status, headers, _) = https_get(s.tls.port(), host, path, &[version]);
        assert_eq!(status, 200, "{host}{path} {version}");
        headers
            .iter()
            .map(|(n, v)| format!("{}: {}\n", n.to_lowercase(), v.to_lowercase()))
            .collect::<String>()
    };
    for version in ["--http2", "--http1.1"] {
        assert!(
            get("shop.a.test", "/api/x", version).contains("x-backend: shop"),
            "{version}"
        );
        let api_answer = get("x.a.test", "/api/x", version);
        assert!(
            api_answer.contains("x-backend: api"),
            "{version}: {api_answer}"
        );
        assert!(
            api_answer.contains("x-routed: api"),
            "{version}: {api_answer}"
        );
        assert!(
            get("a.test", "/", version).contains("x-backend: www"),
            "{version}"
        );
    }
    let seen = api.seen.last_headers.lock().unwrap().clone();
    assert!(seen.contains(&("x-route".into(), "api".into())), "{seen:?}");
    // h2load: 200 streams on 2 connections, all to the shop by their authority.
    let before = shop.requests();
    let out = tool("h2load")
        .args(["-n", "200", "-c", "2", "-m", "10"])
        .arg(format!("https://127.0.0.1:{}/", s.tls.port()))
        .args(["-H", ":authority: shop.a.test"])
        .output()
        .unwrap();
    let t = text(&out);
    assert!(t.contains("200 succeeded"), "{t}");
    assert_eq!(shop.requests() - before, 200, "{t}");
}
