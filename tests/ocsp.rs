//! OCSP stapling (`[tls] ocsp = true`) against a real responder: `openssl
//! ocsp` run by the test for a CA made with `openssl`, and `openssl s_client
//! -status` as the client. The responder's answers are valid for one minute,
//! so floatlb fetches again within the test; with the responder stopped, the
//! last good response is still stapled.

mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{backend_tables, floatlb_cmd, free_port, make_cert, Floatlb, TestBackend};

fn openssl(dir: &Path, args: &[&str]) -> String {
    support::peers::openssl_in(Some(dir), args)
}

/// A CA and a server certificate for a.test naming `responder` in its AIA;
/// `chain.pem` is the leaf then the CA; `index.txt` says the leaf is valid.
fn pki(dir: &Path, responder: &str) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut a = vec!["req", "-x509", "-days", "2", "-subj", "/CN=OCSP test CA"];
    a.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
    a.extend(ec);
    openssl(dir, &a);
    let mut r = vec!["req", "-new", "-subj", "/CN=a.test", "-keyout", "leaf.key"];
    r.extend(["-out", "leaf.csr"]);
    r.extend(ec);
    openssl(dir, &r);
    std::fs::write(
        dir.join("leaf.ext"),
        format!("subjectAltName=DNS:a.test\nauthorityInfoAccess=OCSP;URI:http://{responder}/\n"),
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-days", "2",
            "-extfile", "leaf.ext", "-out", "leaf.pem",
        ],
    );
    let chain = std::fs::read_to_string(dir.join("leaf.pem")).unwrap()
        + &std::fs::read_to_string(dir.join("ca.pem")).unwrap();
    std::fs::write(dir.join("chain.pem"), chain).unwrap();
    let serial = openssl(dir, &["x509", "-noout", "-serial", "-in", "leaf.pem"]);
    let serial = serial.trim().trim_start_matches("serial=");
    // The index `openssl ca` keeps: V(alid), expiry, no revocation, serial, file, subject.
    std::fs::write(
        dir.join("index.txt"),
        format!("V\t301231235959Z\t\t{serial}\tunknown\t/CN=a.test\n"),
    )
    .unwrap();
}

/// `openssl ocsp` answering for the CA on `port`, each answer valid one minute.
struct Responder(Child);

impl Responder {
    fn start(dir: &Path, port: u16) -> Responder {
        let log = std::fs::File::create(dir.join("responder.log")).unwrap();
        let child = Command::new("openssl")
            .current_dir(dir)
            .args(["ocsp", "-index", "index.txt", "-port", &port.to_string()])
            .args(["-rsigner", "ca.pem", "-rkey", "ca.key", "-CA", "ca.pem"])
            .args(["-nmin", "1", "-ignore_err"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("openssl (vm-lab/install-deps installs it)");
        // Not probed with a connect: openssl ocsp 3.0 hangs on a connection
        // closed without a request.
        let start = Instant::now();
        let ready = || {
            std::fs::read_to_string(dir.join("responder.log"))
                .unwrap_or_default()
                .contains("waiting for OCSP client connections")
        };
        while !ready() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "openssl ocsp did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Responder(child)
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `openssl s_client -status`: its output.
fn s_client_status(tls: SocketAddr, ca: &Path) -> String {
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &tls.to_string(),
            "-servername",
            "a.test",
        ])
        .args(["-status", "-CAfile"])
        .arg(ca)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let _ = child.stdin.take().unwrap().write_all(b"Q\n");
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stapled_good(out: &str) -> bool {
    out.contains("OCSP Response Status: successful") && out.contains("Cert Status: good")
}

/// RFC 6066 §8 / RFC 8446 §4.4.2.1: a client that asks for status gets the
/// responder's good response stapled; it is fetched again before its
/// nextUpdate, and while the responder is down the last good one is stapled.
#[test]
fn a_good_response_is_stapled_and_outlives_the_responder() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    pki(dir.path(), &format!("127.0.0.1:{port}"));
    let responder = Responder::start(dir.path(), port);
    let b = TestBackend::start("b1");
    let tls: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let p = |f: &str| dir.path().join(f).display().to_string();
    let lb = Floatlb::start(&format!(
        "{}\n[tls]\naddress = \"{tls}\"\nocsp = true\n[[tls.certificate]]\ncert = \"{}\"\nkey = \"{}\"\n",
        backend_tables(&[(&b, 1)]),
        p("chain.pem"),
        p("leaf.key"),
    ));
    // The first handshake starts the fetching; a staple follows within seconds.
    let start = Instant::now();
    let mut out = s_client_status(tls, &dir.path().join("ca.pem"));
    while !stapled_good(&out) && start.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(300));
        out = s_client_status(tls, &dir.path().join("ca.pem"));
    }
    assert!(
        stapled_good(&out),
        "no good response stapled: {out}\n{}",
        lb.log()
    );
    assert!(out.contains("Verify return code: 0 (ok)"), "{out}");

    // The responder goes; the next fetch (halfway to a one-minute nextUpdate) fails.
    drop(responder);
    let start = Instant::now();
    while !lb.log().contains("OCSP: fetch failed") && start.elapsed() < Duration::from_secs(50) {
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        lb.log().contains("keeping the last good response"),
        "{}",
        lb.log()
    );
    let out = s_client_status(tls, &dir.path().join("ca.pem"));
    assert!(stapled_good(&out), "the cached response is gone: {out}");
}

/// `floatlb check` refuses `ocsp = true` for a certificate that names no
/// responder, with the certificate's key path.
#[test]
fn check_refuses_ocsp_for_a_certificate_without_a_responder() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = make_cert(dir.path(), "a", &["a.test"], 2);
    let file = dir.path().join("proxy.toml");
    std::fs::write(
        &file,
        format!(
            "[listen]\naddress = \"127.0.0.1:{}\"\n[[backend]]\nname = \"b\"\naddress = \"127.0.0.1:9\"\n\
             [tls]\naddress = \"127.0.0.1:{}\"\nocsp = true\n[[tls.certificate]]\ncert = \"{}\"\nkey = \"{}\"\n",
            free_port(),
            free_port(),
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let (code, out, err) = floatlb_cmd("check", &file, &[]);
    let all = format!("{out}{err}");
    assert_ne!(code, 0, "{all}");
    assert!(all.contains("tls.certificate[0]"), "{all}");
    assert!(all.contains("names no OCSP responder"), "{all}");
}
