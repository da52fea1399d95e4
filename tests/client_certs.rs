//! Client certificates on the `[tls]` listener (`client-ca`, `client-auth`,
//! `client-subject-header`, `client-fingerprint-header`) with real clients:
//! curl over HTTP/1.1 and HTTP/2 and `openssl s_client`. A CA, a client
//! certificate it signs and one from a stranger CA are made with `openssl`.

mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{backend_tables, floatlb_cmd, free_port, make_cert, Floatlb, TestBackend};

fn openssl(dir: &Path, args: &[&str]) {
    support::peers::openssl_in(Some(dir), args);
}

/// A CA `ca` and a client certificate `client` (subject `subject`) it signs.
fn ca_and_client(dir: &Path, ca: &str, client: &str, subject: &str) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
    let mut a = vec!["req", "-x509", "-days", "2", "-subj"];
    let ca_subj = format!("/CN={ca} test CA");
    a.extend([ca_subj.as_str(), "-keyout", &ca_key, "-out", &ca_pem]);
    a.extend(ec);
    openssl(dir, &a);
    let (csr, key, pem) = (
        format!("{client}.csr"),
        format!("{client}.key"),
        format!("{client}.pem"),
    );
    let mut r = vec![
        "req", "-new", "-subj", subject, "-keyout", &key, "-out", &csr,
    ];
    r.extend(ec);
    openssl(dir, &r);
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-days",
            "2",
            "-extfile",
            "client.ext",
            "-out",
            &pem,
        ],
    );
}

struct Site {
    dir: tempfile::TempDir,
    tls: SocketAddr,
    _backend: TestBackend,
    lb: Floatlb,
}

impl Site {
    /// floatlb with `[tls]` asking for client certificates in `mode`.
    fn start(mode: &str) -> Site {
        let dir = tempfile::tempdir().unwrap();
        make_cert(dir.path(), "server", &["a.test"], 2);
        ca_and_client(dir.path(), "ca", "alice", "/O=Example, Inc/CN=alice");
        ca_and_client(dir.path(), "stranger", "mallory", "/CN=mallory");
        let tls: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let b = TestBackend::start("b1");
        let p = |f: &str| dir.path().join(f).display().to_string();
        let lb = Floatlb::start(&format!(
            "{}\n[tls]\naddress = \"{tls}\"\nclient-ca = \"{}\"\nclient-auth = \"{mode}\"\n\
             client-subject-header = \"X-Client-Subject\"\n\
             client-fingerprint-header = \"X-Client-Fingerprint\"\n\
             [[tls.certificate]]\ncert = \"{}\"\nkey = \"{}\"\n",
            backend_tables(&[(&b, 1)]),
            p("ca.pem"),
            p("server.pem"),
            p("server.key"),
        ));
        Site {
            dir,
            tls,
            _backend: b,
            lb,
        }
    }

    fn path(&self, f: &str) -> String {
        self.dir.path().join(f).display().to_string()
    }

    /// curl to /headers as `who` (a client certificate's file stem, or none):
    /// Ok(what the backend saw) or Err(curl's exit code and message).
    fn curl(&self, who: Option<&str>, args: &[&str]) -> Result<String, String> {
        let resolve = format!("a.test:{}:127.0.0.1", self.tls.port());
        let mut c = Command::new("curl");
        c.args(["-sS", "--max-time", "10", "--resolve", &resolve])
            .args(["--cacert", &self.path("server.pem")])
            .args(args);
        if let Some(who) = who {
            c.args(["--cert", &self.path(&format!("{who}.pem"))])
                .args(["--key", &self.path(&format!("{who}.key"))]);
        }
        let out = c
            .arg(format!("https://a.test:{}/headers", self.tls.port()))
            .output()
            .expect("curl (vm-lab/install-deps installs it)");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).to_lowercase())
        } else {
            Err(format!(
                "exit {:?}: {}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// `openssl s_client` without a client certificate, sending one request.
    fn s_client(&self, args: &[&str]) -> String {
        let mut child = Command::new("openssl")
            .args(["s_client", "-connect", &self.tls.to_string(), "-quiet"])
            .args(["-servername", "a.test"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("openssl (vm-lab/install-deps installs it)");
        let mut stdin = child.stdin.take().unwrap();
        let _ =
            stdin.write_all(b"GET /headers HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n");
        std::thread::sleep(Duration::from_millis(500));
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// The SHA-256 fingerprint `openssl x509` gives, as floatlb writes it.
    fn fingerprint(&self, who: &str) -> String {
        let out = Command::new("openssl")
            .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
            .arg(self.path(&format!("{who}.pem")))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let hex = text.trim().split('=').nth(1).unwrap_or_default();
        hex.replace(':', "").to_lowercase()
    }
}

/// RFC 8446 §4.4.2.4: a server that requires a certificate aborts a
/// handshake without one with `certificate_required`, and one that does not
/// chain to its CAs with `unknown_ca` (RFC 8446 §6.2); a verified client's
/// subject (RFC 4514) and SHA-256 fingerprint reach the backend in the
/// configured fields, replacing the ones the client forged.
#[test]
fn required_mode_refuses_without_a_valid_certificate_and_names_the_client() {
    let s = Site::start("required");
    let e = s.curl(None, &[]).unwrap_err();
    assert!(!e.is_empty(), "served without a certificate");
    let out = s.s_client(&[]);
    assert!(
        out.contains("alert certificate required"),
        "no certificate_required alert: {out}"
    );
    let out = s.s_client(&[
        "-cert",
        &s.path("mallory.pem"),
        "-key",
        &s.path("mallory.key"),
    ]);
    assert!(
        out.contains("alert unknown ca"),
        "no unknown_ca alert: {out}"
    );
    assert!(s.curl(Some("mallory"), &[]).is_err());

    let forged = [
        "-H",
        "X-Client-Subject: CN=admin",
        "-H",
        "X-Client-Fingerprint: 00",
    ];
    for version in ["--http1.1", "--http2"] {
        let mut args = vec![version];
        args.extend(forged);
        let seen = s.curl(Some("alice"), &args).unwrap();
        assert!(
            seen.contains("x-client-subject: cn=alice,o=example\\, inc"),
            "{version}: {seen}"
        );
        let fp = format!("x-client-fingerprint: {}", s.fingerprint("alice"));
        assert!(seen.contains(&fp), "{version}: {seen}");
        assert!(
            !seen.contains("cn=admin"),
            "{version}: forged subject passed: {seen}"
        );
        assert_eq!(seen.matches("x-client-fingerprint").count(), 1, "{seen}");
    }
    drop(s.lb);
}

/// `optional`: a client without a certificate is served, and a subject it
/// forges never reaches the backend; one with a certificate is named; one
/// with a certificate from another CA is still refused (RFC 8446 §6.2
/// `unknown_ca`).
#[test]
fn optional_mode_serves_without_a_certificate_and_strips_forged_fields() {
    let s = Site::start("optional");
    for version in ["--http1.1", "--http2"] {
        let seen = s
            .curl(None, &[version, "-H", "X-Client-Subject: CN=admin"])
            .unwrap();
        assert!(!seen.contains("x-client-subject"), "{version}: {seen}");
        let seen = s.curl(Some("alice"), &[version]).unwrap();
        assert!(
            seen.contains("x-client-subject: cn=alice"),
            "{version}: {seen}"
        );
    }
    let out = s.s_client(&[]);
    assert!(out.contains("HTTP/1.1 200"), "{out}");
    assert!(s.curl(Some("mallory"), &[]).is_err());
}

/// `floatlb check` names the key of a client-certificate setting that
/// cannot work.
#[test]
fn check_refuses_client_settings_without_a_ca_and_a_bad_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = make_cert(dir.path(), "server", &["a.test"], 2);
    let file = dir.path().join("proxy.toml");
    let write = |extra: &str| {
        let text = format!(
            "[listen]\naddress = \"127.0.0.1:{}\"\n[[backend]]\nname = \"b\"\naddress = \"127.0.0.1:9\"\n\
             [tls]\naddress = \"127.0.0.1:{}\"\n{extra}\n[[tls.certificate]]\ncert = \"{}\"\nkey = \"{}\"\n",
            free_port(),
            free_port(),
            cert.display(),
            key.display()
        );
        std::fs::write(&file, text).unwrap();
    };
    write("client-auth = \"optional\"\nclient-subject-header = \"Connection\"");
    let (code, out, err) = floatlb_cmd("check", &file, &[]);
    let all = format!("{out}{err}");
    assert_ne!(code, 0, "{all}");
    assert!(all.contains("tls.client-auth"), "{all}");
    assert!(all.contains("needs tls.client-ca"), "{all}");
    assert!(all.contains("tls.client-subject-header"), "{all}");
    write(&format!("client-ca = \"{}\"", key.display()));
    let (code, out, err) = floatlb_cmd("check", &file, &[]);
    let all = format!("{out}{err}");
    assert_ne!(code, 0, "{all}");
    assert!(all.contains("tls.client-ca"), "{all}");
    assert!(all.contains("holds no certificate"), "{all}");
}

/// A route that matches on the subject field sees the field as the backend
/// gets it: a forged `X-Client-Subject` from a client without a certificate
/// does not reach the route for that subject; alice's certificate does. So
/// a route on the field, then a deny, require a certificate for one path.
#[test]
fn routes_match_the_verified_subject_not_a_forged_one() {
    let dir = tempfile::tempdir().unwrap();
    make_cert(dir.path(), "server", &["a.test"], 2);
    ca_and_client(dir.path(), "ca", "alice", "/CN=alice");
    let tls: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (public, staff) = (TestBackend::start("public"), TestBackend::start("staff"));
    let p = |f: &str| dir.path().join(f).display().to_string();
    let _lb = Floatlb::start(&format!(
        "[[backend]]\nname = \"public\"\naddress = \"{}\"\n\
         [[pool]]\nname = \"staff\"\nbackends = [\"{}\"]\n\
         [[route]]\nname = \"staff\"\nheaders = [{{ name = \"X-Client-Subject\", equals = \"CN=alice\" }}]\npool = \"staff\"\n\
         [[route]]\nname = \"staff-only\"\npath-prefix = \"/staff\"\ndeny = 403\n\
         [tls]\naddress = \"{tls}\"\nclient-ca = \"{}\"\nclient-auth = \"optional\"\n\
         client-subject-header = \"X-Client-Subject\"\n\
         [[tls.certificate]]\ncert = \"{}\"\nkey = \"{}\"\n",
        public.addr,
        staff.addr,
        p("ca.pem"),
        p("server.pem"),
        p("server.key"),
    ));
    let site = |who: Option<&str>, args: &[&str]| {
        let resolve = format!("a.test:{}:127.0.0.1", tls.port());
        let mut c = Command::new("curl");
        c.args(["-sS", "--max-time", "10", "--resolve", &resolve])
            .args(["--cacert", &p("server.pem")])
            .args(args);
        if let Some(who) = who {
            c.args(["--cert", &p(&format!("{who}.pem"))])
                .args(["--key", &p(&format!("{who}.key"))]);
        }
        let out = c
            .arg(format!("https://a.test:{}/", tls.port()))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // A site for certificate holders only: the route with the field first, then a deny.
    let status = |who: Option<&str>| {
        let resolve = format!("a.test:{}:127.0.0.1", tls.port());
        let mut c = Command::new("curl");
        c.args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--resolve",
            &resolve,
        ])
        .args([
            "--cacert",
            &p("server.pem"),
            "-H",
            "X-Client-Subject: CN=alice",
        ]);
        if let Some(who) = who {
            c.args(["--cert", &p(&format!("{who}.pem"))])
                .args(["--key", &p(&format!("{who}.key"))]);
        }
        let out = c
            .arg(format!("https://a.test:{}/staff", tls.port()))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(status(None), "403");
    assert_eq!(status(Some("alice")), "200");
    for version in ["--http1.1", "--http2"] {
        let forged = site(None, &[version, "-H", "X-Client-Subject: CN=alice"]);
        assert_eq!(forged, "public", "{version}: a forged subject was routed");
        assert_eq!(site(Some("alice"), &[version]), "staff", "{version}");
    }
}

/// `openssl s_client` to `addr` (SNI a.test) sending one request; `args`
/// add a certificate or a session file. Its whole output, handshake
/// details included.
fn s_client_to(addr: SocketAddr, args: &[&str]) -> String {
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-servername",
            "a.test",
        ])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl (vm-lab/install-deps installs it)");
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(b"GET /headers HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n");
    // Long enough for the answer and TLS 1.3's tickets after it.
    std::thread::sleep(Duration::from_millis(500));
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Each TLS listener has its own client-certificate policy, as HAProxy's
/// `verify` and `ca-file` on each `bind` and nginx's `ssl_verify_client`
/// per `server`: `[tls] address` requires a certificate from one CA, a
/// `[[listen]] tls = true` with `client-auth = "none"` asks for none
/// (RFC 8446 §4.3.2: no CertificateRequest, so no CA names), and another
/// with its own `client-ca` and `optional` serves clients without one and
/// verifies against its own CA only. A TLS 1.3 ticket from the listener
/// that asks for nothing does not resume a session without a certificate
/// on the one that requires one (RFC 8446 §4.6.1: a server may refuse a
/// ticket and fall back to a full handshake).
#[test]
fn each_tls_listener_has_its_own_client_certificate_policy() {
    let dir = tempfile::tempdir().unwrap();
    make_cert(dir.path(), "server", &["a.test"], 2);
    ca_and_client(dir.path(), "ca", "alice", "/CN=alice");
    ca_and_client(dir.path(), "partners", "bob", "/CN=bob");
    let p = |f: &str| dir.path().join(f).display().to_string();
    let at = || -> SocketAddr { format!("127.0.0.1:{}", free_port()).parse().unwrap() };
    let (strict, open, partners) = (at(), at(), at());
    let b = TestBackend::start("b1");
    let _lb = Floatlb::start_with_listeners(
        &format!(
            "{}\n[tls]\naddress = \"{strict}\"\nclient-ca = \"{}\"\nclient-auth = \"required\"\n\
             client-subject-header = \"X-Client-Subject\"\n\
             [[tls.certificate]]\ncert = \"{}\"\nkey = \"{}\"\n",
            backend_tables(&[(&b, 1)]),
            p("ca.pem"),
            p("server.pem"),
            p("server.key"),
        ),
        &format!(
            "[[listen]]\nname = \"open\"\naddress = \"{open}\"\ntls = true\nclient-auth = \"none\"\n\
             [[listen]]\nname = \"partners\"\naddress = \"{partners}\"\ntls = true\n\
             client-ca = \"{}\"\nclient-auth = \"optional\"\n",
            p("partners.pem"),
        ),
    );
    let curl = |addr: SocketAddr, who: Option<&str>| -> Result<String, String> {
        let resolve = format!("a.test:{}:127.0.0.1", addr.port());
        let mut c = Command::new("curl");
        c.args(["-sS", "--max-time", "10", "--resolve", &resolve])
            .args(["--cacert", &p("server.pem")]);
        if let Some(who) = who {
            c.args(["--cert", &p(&format!("{who}.pem"))])
                .args(["--key", &p(&format!("{who}.key"))]);
        }
        let out = c
            .arg(format!("https://a.test:{}/headers", addr.port()))
            .output()
            .expect("curl (vm-lab/install-deps installs it)");
        match out.status.success() {
            true => Ok(String::from_utf8_lossy(&out.stdout).to_lowercase()),
            false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
        }
    };
    // [tls] address: required, against ca.pem.
    let out = s_client_to(strict, &[]);
    assert!(out.contains("alert certificate required"), "{out}");
    assert!(
        curl(strict, Some("bob")).is_err(),
        "bob's CA is not trusted there"
    );
    let seen = curl(strict, Some("alice")).unwrap();
    assert!(seen.contains("x-client-subject: cn=alice"), "{seen}");
    // "open": no certificate asked for, so none is sent or named.
    let out = s_client_to(open, &["-cert", &p("alice.pem"), "-key", &p("alice.key")]);
    assert!(out.contains("No client certificate CA names sent"), "{out}");
    assert!(out.contains("HTTP/1.1 200"), "{out}");
    let seen = curl(open, Some("alice")).unwrap();
    assert!(!seen.contains("x-client-subject"), "{seen}");
    // "partners": optional, against its own CA.
    let out = s_client_to(partners, &[]);
    assert!(
        out.contains("Acceptable client certificate CA names"),
        "{out}"
    );
    assert!(out.contains("CN = partners test CA"), "{out}");
    assert!(out.contains("HTTP/1.1 200"), "{out}");
    let seen = curl(partners, Some("bob")).unwrap();
    assert!(seen.contains("x-client-subject: cn=bob"), "{seen}");
    assert!(
        curl(partners, Some("alice")).is_err(),
        "alice's CA is not trusted there"
    );
    // A ticket from "open" does not open the strict listener.
    let sess = p("open.sess");
    let out = s_client_to(open, &["-sess_out", &sess]);
    assert!(out.contains("HTTP/1.1 200"), "{out}");
    let out = s_client_to(strict, &["-sess_in", &sess]);
    assert!(
        !out.contains("HTTP/1.1 200"),
        "resumed without a certificate: {out}"
    );
    assert!(out.contains("alert certificate required"), "{out}");
    // While a ticket from the strict listener (alice's) resumes there.
    let cert = ["-cert", &p("alice.pem"), "-key", &p("alice.key")];
    let mut args = cert.to_vec();
    args.extend(["-sess_out", &sess]);
    assert!(s_client_to(strict, &args).contains("HTTP/1.1 200"));
    let out = s_client_to(strict, &["-sess_in", &sess]);
    assert!(out.contains("Reused, TLSv1.3"), "{out}");
    assert!(out.contains("HTTP/1.1 200"), "{out}");
}

/// A route with `client-auth = "required"` on a listener where certificates
/// are optional answers 403 to a request without a verified certificate
/// (as nginx's `ssl_verify_client optional` with a 403 on
/// `$ssl_client_verify`, or HAProxy's `http-request deny unless
/// { ssl_c_used }`), over HTTP/1.1 and HTTP/2, while the other routes serve
/// anyone; a forged subject field does not count as a certificate. After
/// the handshake, HTTP/2 forbids asking for a certificate (RFC 9113
/// §9.2.3), so a route answers in HTTP. `floatlb check` refuses a route
/// that says `optional`.
#[test]
fn a_route_can_require_a_verified_certificate() {
    let dir = tempfile::tempdir().unwrap();
    make_cert(dir.path(), "server", &["a.test"], 2);
    ca_and_client(dir.path(), "ca", "alice", "/CN=alice");
    let tls: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (public, staff) = (TestBackend::start("public"), TestBackend::start("staff"));
    let p = |f: &str| dir.path().join(f).display().to_string();
    let body = |mode: &str| {
        format!(
            "[[backend]]\nname = \"public\"\naddress = \"{}\"\n\
             [[pool]]\nname = \"staff\"\nbackends = [\"{}\"]\n\
             [[route]]\nname = \"staff\"\npath-prefix = \"/staff\"\nclient-auth = \"{mode}\"\npool = \"staff\"\n\
             [tls]\naddress = \"{tls}\"\nclient-ca = \"{}\"\nclient-auth = \"optional\"\n\
             client-subject-header = \"X-Client-Subject\"\n\
             [[tls.certificate]]\ncert = \"{}\"\nkey = \"{}\"\n",
            public.addr,
            staff.addr,
            p("ca.pem"),
            p("server.pem"),
            p("server.key"),
        )
    };
    let lb = Floatlb::start(&body("required"));
    let get = |who: Option<&str>, version: &str, path: &str| {
        let resolve = format!("a.test:{}:127.0.0.1", tls.port());
        let mut c = Command::new("curl");
        c.args(["-s", "-o", "-", "-w", " %{http_code}", "--max-time", "10"])
            .args(["--resolve", &resolve, "--cacert", &p("server.pem"), version])
            .args(["-H", "X-Client-Subject: CN=alice"]);
        if let Some(who) = who {
            c.args(["--cert", &p(&format!("{who}.pem"))])
                .args(["--key", &p(&format!("{who}.key"))]);
        }
        let out = c
            .arg(format!("https://a.test:{}{path}", tls.port()))
            .output()
            .expect("curl (vm-lab/install-deps installs it)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for version in ["--http1.1", "--http2"] {
        let refused = get(None, version, "/staff/x");
        assert!(refused.ends_with(" 403"), "{version}: {refused}");
        assert!(
            get(Some("alice"), version, "/staff/x").ends_with("staff 200"),
            "{version}"
        );
        assert!(get(None, version, "/").ends_with("public 200"), "{version}");
    }
    // `floatlb route` says so; `floatlb check` refuses "optional" on a route.
    let (_, out, err) = floatlb_cmd("route", &lb.config_path, &["GET", "https://a.test/staff/x"]);
    assert!(out.contains("client-auth: required"), "{out}{err}");
    let file = dir.path().join("bad.toml");
    let text = std::fs::read_to_string(&lb.config_path).unwrap();
    std::fs::write(
        &file,
        text.replace("client-auth = \"required\"", "client-auth = \"optional\""),
    )
    .unwrap();
    let (code, out, err) = floatlb_cmd("check", &file, &[]);
    let all = format!("{out}{err}");
    assert_ne!(code, 0, "{all}");
    assert!(all.contains("route[0].client-auth"), "{all}");
    assert!(all.contains("a route can only say \"required\""), "{all}");
}
