//! `[[tls.acme]]` against pebble, RFC 8555's test server (Debian package
//! `pebble`), with `pebble-challtestsrv` as its DNS (every name is
//! 127.0.0.1): floatlb orders certificates through HTTP-01 and TLS-ALPN-01,
//! serves them, renews them, and curl verifies them with pebble's root.
//! pebble's own HTTPS certificate is made here with `openssl`.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::netns::{netns_available, Lab};
use support::vrrp_lab::{self, V4};
use support::{backend_tables, floatlb_cmd, free_port, Floatlb, TestBackend};

fn tool(name: &str) -> Command {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(found, "{name} is missing: run vm-lab/install-deps");
    Command::new(name)
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = tool("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Where pebble runs: its address, the address its DNS gives every name,
/// and the namespace host it runs in (none: this one).
struct Where<'a> {
    ip: &'a str,
    names_to: &'a str,
    /// The OCSP responder pebble names in the certificates it issues.
    ocsp: &'a str,
    lab: Option<(&'a Lab, &'a str)>,
}

/// pebble and pebble-challtestsrv, killed on drop.
struct Pebble {
    children: Vec<Child>,
    dir: PathBuf,
    pub directory: String,
    management: SocketAddr,
    ports: (u16, u16),
    /// The namespace pebble runs in, if any.
    ns: Option<String>,
}

impl Pebble {
    /// pebble validating HTTP-01 on `http_port` and TLS-ALPN-01 on
    /// `tls_port` of 127.0.0.1, issuing certificates valid `validity`
    /// seconds, refusing orders for `blocked` names.
    fn start(dir: &Path, http_port: u16, tls_port: u16, validity: u64, blocked: &[&str]) -> Pebble {
        Self::start_on(
            dir,
            (free_port(), free_port()),
            http_port,
            tls_port,
            validity,
            blocked,
        )
    }

    /// [`Pebble::start`] on given directory and management ports.
    fn start_on(
        dir: &Path,
        ports: (u16, u16),
        http_port: u16,
        tls_port: u16,
        validity: u64,
        blocked: &[&str],
    ) -> Pebble {
        let local = Where {
            ip: "127.0.0.1",
            names_to: "127.0.0.1",
            ocsp: "",
            lab: None,
        };
        Self::start_in(&local, dir, ports, http_port, tls_port, validity, blocked)
    }

    /// pebble listening on `at.ip`, its DNS answering `at.names_to` for
    /// every name, run inside `at.lab`'s host if given.
    fn start_in(
        at: &Where<'_>,
        dir: &Path,
        (listen, management): (u16, u16),
        http_port: u16,
        tls_port: u16,
        validity: u64,
        blocked: &[&str],
    ) -> Pebble {
        let ip = at.ip;
        let run = |name: &str| match at.lab {
            Some((lab, host)) => {
                let mut c = lab.exec(host);
                c.arg(name);
                c
            }
            None => tool(name),
        };
        // pebble's HTTPS certificate, from a CA of the test's.
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let mut a = vec!["req", "-x509", "-days", "2", "-subj", "/CN=pebble test CA"];
        a.extend(["-keyout", "pebble-ca.key", "-out", "pebble-ca.pem"]);
        a.extend(ec);
        openssl(dir, &a);
        let mut r = vec![
            "req",
            "-new",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "pebble.key",
        ];
        r.extend(["-out", "pebble.csr"]);
        r.extend(ec);
        openssl(dir, &r);
        std::fs::write(dir.join("pebble.ext"), format!("subjectAltName=IP:{ip}\n")).unwrap();
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "pebble.csr",
                "-CA",
                "pebble-ca.pem",
                "-CAkey",
                "pebble-ca.key",
                "-days",
                "2",
                "-extfile",
                "pebble.ext",
                "-out",
                "pebble.pem",
            ],
        );
        let dns = free_port();
        let blocked: Vec<String> = blocked.iter().map(|b| format!("\"{b}\"")).collect();
        let config = format!(
            r#"{{"pebble": {{"listenAddress": "{ip}:{listen}", "managementListenAddress": "{ip}:{management}",
"certificate": "{d}/pebble.pem", "privateKey": "{d}/pebble.key", "httpPort": {http_port}, "tlsPort": {tls_port},
"ocspResponderURL": "{ocsp}", "externalAccountBindingRequired": false, "certificateValidityPeriod": {validity},
"domainBlocklist": [{}]}}}}"#,
            blocked.join(","),
            ocsp = at.ocsp,
            d = dir.display()
        );
        std::fs::write(dir.join("pebble.json"), config).unwrap();
        let log = |name: &str| std::fs::File::create(dir.join(name)).unwrap();
        let dns_addr = format!("{ip}:{dns}");
        let challtest = run("pebble-challtestsrv")
            .args(["-defaultIPv4", at.names_to, "-defaultIPv6", ""])
            .args([
                "-dns01",
                &dns_addr,
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
            ])
            .args(["-management", &format!("{ip}:{}", free_port())])
            .stdout(log("challtestsrv.log"))
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut cmd = run("pebble");
        cmd.args(["-config", "pebble.json", "-dnsserver", &dns_addr])
            .current_dir(dir)
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(log("pebble.log"))
            .stderr(Stdio::null());
        let pebble = cmd.spawn().unwrap();
        let p = Pebble {
            children: vec![challtest, pebble],
            dir: dir.to_path_buf(),
            directory: format!("https://{ip}:{listen}/dir"),
            management: format!("{ip}:{management}").parse().unwrap(),
            ports: (listen, management),
            ns: at.lab.map(|(lab, host)| lab.ns(host)),
        };
        let start = Instant::now();
        while !p.log().contains("Listening on") {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "pebble did not start: {}",
                p.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        p
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pebble.log")).unwrap_or_default()
    }

    /// pebble's issuing root, for curl.
    fn root(&self) -> PathBuf {
        let path = self.dir.join("pebble-root.pem");
        let mut curl = match &self.ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "curl"]);
                c
            }
            None => tool("curl"),
        };
        let out = curl
            .args(["-sS", "--max-time", "10", "--cacert"])
            .arg(self.dir.join("pebble-ca.pem"))
            .arg(format!("https://{}/roots/0", self.management))
            .output()
            .unwrap();
        assert!(out.status.success(), "pebble's root: {out:?}");
        std::fs::write(&path, &out.stdout).unwrap();
        path
    }

    /// How many orders pebble has logged.
    fn orders(&self) -> usize {
        self.log().matches("Added order").count()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// curl to `name` on the TLS port, verifying with `root`: Ok(body) or Err.
fn curl_verified(tls_port: u16, name: &str, root: &Path) -> Result<String, String> {
    let out = tool("curl")
        .args(["-sS", "--max-time", "10", "--resolve"])
        .arg(format!("{name}:{tls_port}:127.0.0.1"))
        .arg("--cacert")
        .arg(root)
        .arg(format!("https://{name}:{tls_port}/"))
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The notAfter of what `name` is served with.
fn served_not_after(tls_port: u16, name: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect 127.0.0.1:{tls_port} -servername {name} </dev/null 2>/dev/null | openssl x509 -noout -enddate -serial"
        ))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn wait_for(what: &str, within: Duration, mut ok: impl FnMut() -> bool, log: impl Fn() -> String) {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < within,
            "{what} within {within:?}:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// RFC 8555 §7 with pebble: a certificate for a.test through HTTP-01
/// (§8.3, answered on the cleartext listener) and one for b.test through
/// TLS-ALPN-01 (RFC 8737, on the TLS listener), both served and verified
/// by curl with pebble's root; the state directory is 0700 with 0600
/// files; with a 30-second lifetime, each is renewed at two thirds of it
/// (pebble 2.4's directory has no `renewalInfo`, so this is RFC 9773's
/// absence path: no window, no `replaces` in the newOrder).
#[test]
fn http01_and_tls_alpn01_certificates_are_obtained_served_and_renewed() {
    let dir = tempfile::tempdir().unwrap();
    let (http_port, tls_port) = (free_port(), free_port());
    let pebble = Pebble::start(dir.path(), http_port, tls_port, 30, &[]);
    let b = TestBackend::start("b1");
    let state = dir.path().join("acme");
    let entry = |name: &str, challenge: &str| {
        format!(
            "[[tls.acme]]\ndirectory = \"{}\"\nca-file = \"{}\"\ncontact = [\"mailto:ops@example.test\"]\n\
             names = [\"{name}\"]\nchallenges = [\"{challenge}\"]\n",
            pebble.directory,
            dir.path().join("pebble-ca.pem").display()
        )
    };
    let body = format!(
        "{}\n[tls]\naddress = \"127.0.0.1:{tls_port}\"\nacme-state = \"{}\"\n{}{}",
        backend_tables(&[(&b, 1)]),
        state.display(),
        entry("a.test", "http-01"),
        entry("b.test", "tls-alpn-01"),
    );
    let lb = Floatlb::start_with_listeners(
        &body,
        &format!("[[listen]]\naddress = \"127.0.0.1:{http_port}\"\n"),
    );
    let root = pebble.root();
    let log = || format!("{}\n--- pebble ---\n{}", lb.log(), pebble.log());
    for name in ["a.test", "b.test"] {
        wait_for(
            &format!("a verified certificate for {name}"),
            Duration::from_secs(40),
            || curl_verified(tls_port, name, &root).is_ok(),
            log,
        );
    }
    assert_eq!(curl_verified(tls_port, "a.test", &root).unwrap(), "b1");
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&state), 0o700);
    for f in ["a.test.pem", "a.test.key", "b.test.key"] {
        assert_eq!(mode(&state.join(f)), 0o600, "{f}");
    }
    // `floatlb ctl certificates` and the expiry metric cover them.
    let (code, out, err) = floatlb_cmd("ctl", &lb.config_path, &["certificates"]);
    assert_eq!(code, 0, "{out}{err}");
    for name in ["a.test", "b.test"] {
        assert!(out.contains(&format!("acme {name}: expires in")), "{out}");
    }
    assert!(
        out.contains("from ordered, 1 order(s) by this node"),
        "{out}"
    );
    // pebble 2.4 offers no renewalInfo (RFC 9773): the renewal time is
    // two thirds of the lifetime, and ctl says so.
    assert!(out.contains("(lifetime)"), "{out}");
    assert!(!out.contains("(ari)"), "{out}");
    let metrics = support::http_get(lb.admin, "/metrics").2;
    assert!(
        metrics.contains("b.test.pem\",name=\"b.test\"} "),
        "{metrics}"
    );
    // Renewal at two thirds of 30 s: a new certificate, with no failure seen by clients.
    let first = served_not_after(tls_port, "a.test");
    let orders = pebble.orders();
    wait_for(
        "a renewed certificate",
        Duration::from_secs(40),
        || pebble.orders() >= orders + 2 && served_not_after(tls_port, "a.test") != first,
        log,
    );
    let mut failed = 0;
    for _ in 0..20 {
        if curl_verified(tls_port, "a.test", &root).is_err() {
            failed += 1;
        }
    }
    assert_eq!(failed, 0, "{}", log());
    // `floatlb ctl certificates --renew`: orders at once.
    let (orders, now) = (pebble.orders(), served_not_after(tls_port, "a.test"));
    let (code, out, err) = floatlb_cmd("ctl", &lb.config_path, &["certificates", "--renew"]);
    assert_eq!(code, 0, "{out}{err}");
    wait_for(
        "a renewal asked for by ctl",
        Duration::from_secs(10),
        || pebble.orders() >= orders + 2 && served_not_after(tls_port, "a.test") != now,
        log,
    );
}

/// pebble refusing (its `domainBlocklist`: a rejectedIdentifier problem,
/// RFC 8555 §6.7): floatlb logs why, keeps serving the certificate it has,
/// backs off, and obtains a new one once pebble accepts again.
#[test]
fn a_refusing_server_keeps_the_old_certificate_and_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let (http_port, tls_port) = (free_port(), free_port());
    let pebble = Pebble::start(dir.path(), http_port, tls_port, 24, &[]);
    let ports = pebble.ports;
    let b = TestBackend::start("b1");
    let body = format!(
        "{}\n[tls]\naddress = \"127.0.0.1:{tls_port}\"\nacme-state = \"{}\"\n\
         [[tls.acme]]\ndirectory = \"{}\"\nca-file = \"{}\"\nnames = [\"a.test\"]\n",
        backend_tables(&[(&b, 1)]),
        dir.path().join("acme").display(),
        pebble.directory,
        dir.path().join("pebble-ca.pem").display()
    );
    let lb = Floatlb::start_with_listeners(
        &body,
        &format!("[[listen]]\naddress = \"127.0.0.1:{http_port}\"\n"),
    );
    let root = pebble.root();
    wait_for(
        "a first certificate",
        Duration::from_secs(30),
        || curl_verified(tls_port, "a.test", &root).is_ok(),
        || lb.log(),
    );
    let first = served_not_after(tls_port, "a.test");
    // pebble now refuses a.test: the renewal (at 16 s) fails and is retried later.
    drop(pebble);
    let pebble = Pebble::start_on(dir.path(), ports, http_port, tls_port, 24, &["a.test"]);
    wait_for(
        "a refused order logged",
        Duration::from_secs(30),
        || {
            lb.log()
                .contains("ACME: order failed; keeping the certificate served")
        },
        || lb.log(),
    );
    assert!(lb.log().contains("rejectedIdentifier"), "{}", lb.log());
    assert_eq!(
        served_not_after(tls_port, "a.test"),
        first,
        "the old certificate stays"
    );
    assert!(lb.log().contains("retry_in_s="), "{}", lb.log());
    // pebble accepts again: a retry gets a new certificate.
    drop(pebble);
    let pebble = Pebble::start_on(dir.path(), ports, http_port, tls_port, 24, &[]);
    wait_for(
        "a new certificate after pebble accepts again",
        Duration::from_secs(60),
        || served_not_after(tls_port, "a.test") != first,
        || format!("{}\n{}", lb.log(), pebble.log()),
    );
}

/// `floatlb check` names the key of each bad `[[tls.acme]]` setting.
#[test]
fn check_refuses_bad_acme_tables() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("proxy.toml");
    std::fs::write(
        &file,
        format!(
            "[listen]\naddress = \"127.0.0.1:{}\"\n[[backend]]\nname = \"b\"\naddress = \"127.0.0.1:9\"\n\
             [tls]\naddress = \"127.0.0.1:{}\"\nacme-state = \"relative\"\n\
             [[tls.acme]]\ndirectory = \"http://ca.test/dir\"\nnames = [\"*.a.test\"]\nkey-type = \"rsa\"\n\
             challenges = [\"dns-01\"]\ncontact = [\"ops@example.test\"]\n",
            free_port(),
            free_port()
        ),
    )
    .unwrap();
    let (code, out, err) = floatlb_cmd("check", &file, &[]);
    let all = format!("{out}{err}");
    assert_ne!(code, 0, "{all}");
    for key in [
        "tls.acme[0].directory",
        "tls.acme[0].names[0]",
        "tls.acme[0].key-type",
        "tls.acme[0].challenges[0]",
        "tls.acme[0].contact[0]",
        "tls.acme-state",
    ] {
        assert!(all.contains(key), "{key}: {all}");
    }
}

/// The pair (★): lb1 holds the VIP and orders through HTTP-01 on it; the
/// certificate and key reach lb2 over `[peers]`, which never orders while
/// lb1 is master. lb1's link goes: lb2 takes the VIP and serves a valid
/// certificate at once, and pebble sees no order from it; when the
/// certificate is due (two thirds of 30 s), lb2, now master, renews it
/// under wrk -c50 (a handshake per request) with no failed request.
#[test]
fn the_master_orders_and_the_backup_serves_its_certificate_after_a_failover() {
    if !netns_available("the_master_orders_and_the_backup_serves_its_certificate_after_a_failover")
    {
        return;
    }
    let _serial = vrrp_lab::serial();
    let f = V4;
    let (lab, web) = f.lab();
    let dir = tempfile::tempdir().unwrap();
    let at = Where {
        ip: "198.18.0.2",
        names_to: f.vip(),
        ocsp: "",
        lab: Some((&lab, "client")),
    };
    let pebble = Pebble::start_in(&at, dir.path(), (14000, 15000), 80, 443, 30, &[]);
    let key = dir.path().join("peers.key");
    std::fs::write(&key, "4q0V2yqgGGbW1nUpR6rjyGgOTmZ8H6fvl2nOf5xHCg4=\n").unwrap();
    let tables = |me: &str, peer: &str, priority: u8| {
        format!(
            "[tls]\naddress = \"0.0.0.0:443\"\nacme-state = \"{}\"\n\
             [[tls.acme]]\ndirectory = \"{}\"\nca-file = \"{}\"\nnames = [\"vip.test\"]\n\n\
             [peers]\naddress = \"{}:7480\"\npeers = [\"{}:7480\"]\nkey-file = \"{}\"\n\n{}",
            dir.path().join(format!("state-{me}")).display(),
            pebble.directory,
            dir.path().join("pebble-ca.pem").display(),
            f.host_ip(me),
            f.host_ip(peer),
            key.display(),
            f.table(priority, 100, "")
        )
    };
    // Health checks that a CPU busy with handshakes does not fail (the
    // lab's 100 ms ones would, and a 503 is not what this test is about).
    let health = "[health]\ninterval = \"1s\"\ntimeout = \"2s\"\nrise = 1\nfall = 3\n";
    let node = |host: &str, tables: String| {
        vrrp_lab::start_node_listening(&lab, host, "0.0.0.0:80", health, &[web.addr], &tables)
    };
    let n1 = node("lb1", tables("lb1", "lb2", 150));
    let n2 = node("lb2", tables("lb2", "lb1", 100));
    let logs = || {
        format!(
            "lb1:\n{}\nlb2:\n{}\npebble:\n{}",
            n1.log(),
            n2.log(),
            pebble.log()
        )
    };
    lab.wait_for("lb1 holds the VIP", Duration::from_secs(6), || {
        f.holders(&lab) == (true, false)
    });
    wait_for(
        "lb2 to serve the certificate lb1 obtained",
        Duration::from_secs(30),
        || n2.log().contains("source=\"peer\"") || n2.log().contains("source=peer"),
        logs,
    );
    let root = pebble.root();
    let curl = |host: &str| {
        let out = lab
            .exec(host)
            .args(["curl", "-sS", "--max-time", "5", "--resolve"])
            .arg(format!("vip.test:443:{}", f.vip()))
            .arg("--cacert")
            .arg(&root)
            .arg("https://vip.test/")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    assert_eq!(curl("client"), (true, "web1".to_string()), "{}", logs());
    let orders = pebble.orders();
    assert!(
        !n2.log().contains("ACME: ordering"),
        "the backup ordered: {}",
        logs()
    );

    lab.link("lb1", false);
    lab.wait_for("lb2 takes the VIP", Duration::from_secs(6), || {
        f.has_vip(&lab, "lb2")
    });
    assert_eq!(curl("client"), (true, "web1".to_string()), "{}", logs());
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        pebble.orders(),
        orders,
        "a new order after the failover: {}",
        logs()
    );
    assert!(!n2.log().contains("ACME: ordering"), "{}", logs());

    // lb2, master now, renews at two thirds of the lifetime, under load.
    let wrk = lab
        .exec("client")
        .args(["wrk", "-t2", "-c50", "-d25s", "--timeout", "5s"])
        // A new connection (a full handshake) per request: the renewal is
        // picked up by handshakes in flight when it lands.
        .args(["-H", "Connection: close"])
        .arg(format!("https://{}/", f.vip()))
        .output()
        .expect("wrk (vm-lab/install-deps installs it)");
    let report = String::from_utf8_lossy(&wrk.stdout).into_owned();
    eprintln!("wrk -c50 across lb2's renewal:\n{report}");
    assert!(
        n2.log().contains("ACME: certificate obtained"),
        "no renewal by lb2: {}",
        logs()
    );
    assert!(pebble.orders() > orders, "{}", logs());
    assert!(report.contains("requests in"), "{report}");
    assert!(!report.contains("Non-2xx"), "{report}\n{}", logs());
    assert!(!report.contains("Socket errors"), "{report}");
    assert_eq!(curl("client"), (true, "web1".to_string()), "{}", logs());
    lab.link("lb1", true);
}

/// docs/certificates.md: its `proxy.toml` passes `floatlb check` and its
/// Caddyfile `caddy adapt` (Debian's caddy, the comparison's anchor), with
/// the CA file both name made here.
#[test]
fn the_caddy_comparison_in_the_docs_is_accepted_by_both() {
    let dir = tempfile::tempdir().unwrap();
    openssl(
        dir.path(),
        &[
            "req",
            "-x509",
            "-days",
            "2",
            "-subj",
            "/CN=staff CA",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
    );
    let ca = dir.path().join("ca.pem").display().to_string();
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/certificates.md"))
        .unwrap();
    let block = |lang: &str| {
        let start = doc.find(&format!("```{lang}\n")).expect(lang) + lang.len() + 4;
        doc[start..start + doc[start..].find("```").unwrap()].to_string()
    };
    let toml = dir.path().join("proxy.toml");
    std::fs::write(
        &toml,
        block("toml").replace("/etc/floatlb/staff-ca.pem", &ca),
    )
    .unwrap();
    let (code, out, err) = floatlb_cmd("check", &toml, &[]);
    assert_eq!(code, 0, "{out}{err}");
    let caddyfile = dir.path().join("Caddyfile");
    std::fs::write(
        &caddyfile,
        block("caddyfile").replace("/etc/caddy/staff-ca.pem", &ca),
    )
    .unwrap();
    let out = tool("caddy")
        .args(["adapt", "--adapter", "caddyfile", "--config"])
        .arg(&caddyfile)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// OCSP stapling (RFC 6066 §8) of an ACME certificate: pebble names a
/// responder in what it issues, `openssl ocsp` answers for pebble's
/// intermediate, and `openssl s_client -status` gets a good response
/// stapled to the certificate floatlb obtained.
#[test]
fn an_acme_certificate_gets_its_ocsp_response_stapled() {
    let dir = tempfile::tempdir().unwrap();
    let (http_port, tls_port, ocsp_port) = (free_port(), free_port(), free_port());
    let url = format!("http://127.0.0.1:{ocsp_port}/");
    let at = Where {
        ip: "127.0.0.1",
        names_to: "127.0.0.1",
        ocsp: &url,
        lab: None,
    };
    let ports = (free_port(), free_port());
    let pebble = Pebble::start_in(&at, dir.path(), ports, http_port, tls_port, 3600, &[]);
    let b = TestBackend::start("b1");
    let state = dir.path().join("acme");
    let body = format!(
        "{}\n[tls]\naddress = \"127.0.0.1:{tls_port}\"\nacme-state = \"{}\"\nocsp = true\n\
         [[tls.acme]]\ndirectory = \"{}\"\nca-file = \"{}\"\nnames = [\"a.test\"]\n",
        backend_tables(&[(&b, 1)]),
        state.display(),
        pebble.directory,
        dir.path().join("pebble-ca.pem").display()
    );
    let lb = Floatlb::start_with_listeners(
        &body,
        &format!("[[listen]]\naddress = \"127.0.0.1:{http_port}\"\n"),
    );
    wait_for(
        "a certificate",
        Duration::from_secs(30),
        || state.join("a.test.pem").exists(),
        || lb.log(),
    );
    // The responder: pebble's intermediate signs for the issued serial.
    let get = |path: &str, file: &str| {
        let out = tool("curl")
            .args(["-sS", "--max-time", "10", "--cacert"])
            .arg(dir.path().join("pebble-ca.pem"))
            .arg(format!("https://{}{path}", pebble.management))
            .output()
            .unwrap();
        assert!(out.status.success(), "{path}: {out:?}");
        std::fs::write(dir.path().join(file), &out.stdout).unwrap();
    };
    get("/intermediates/0", "inter.pem");
    get("/intermediate-keys/0", "inter.key");
    let serial = tool("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(state.join("a.test.pem"))
        .output()
        .unwrap();
    let serial = String::from_utf8_lossy(&serial.stdout);
    let serial = serial.trim().trim_start_matches("serial=");
    std::fs::write(
        dir.path().join("index.txt"),
        format!("V\t301231235959Z\t\t{serial}\tunknown\t/CN=a.test\n"),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("ocsp.log")).unwrap();
    let mut responder = tool("openssl")
        .current_dir(dir.path())
        .args([
            "ocsp",
            "-index",
            "index.txt",
            "-port",
            &ocsp_port.to_string(),
        ])
        .args([
            "-rsigner",
            "inter.pem",
            "-rkey",
            "inter.key",
            "-CA",
            "inter.pem",
        ])
        .args(["-ndays", "1", "-ignore_err"])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let stapled = || {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "openssl s_client -connect 127.0.0.1:{tls_port} -servername a.test -status </dev/null 2>&1"
            ))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains("OCSP Response Status: successful") && text.contains("Cert Status: good")
    };
    // The first handshake starts the fetching; the staple follows.
    let start = Instant::now();
    let mut ok = stapled();
    while !ok && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(300));
        ok = stapled();
    }
    let _ = responder.kill();
    let _ = responder.wait();
    assert!(
        ok,
        "no good response stapled:\n{}\n{}",
        lb.log(),
        std::fs::read_to_string(dir.path().join("ocsp.log")).unwrap_or_default()
    );
    let (_, out, _) = floatlb_cmd("ctl", &lb.config_path, &["certificates"]);
    assert!(out.contains(&format!("ocsp {url}: stapled")), "{out}");
}
