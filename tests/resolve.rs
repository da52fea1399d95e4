//! Backends given by name, resolved by a real DNS server the test runs:
//! dnsmasq on 127.0.0.1 (a port of its own) serving a hosts file that the
//! test rewrites (and signals dnsmasq to read again). The web servers sit on
//! 127.0.0.2 and 127.0.0.3, one port for both, so only the name's answer
//! tells floatlb where to go. Loopback only: no root needed.

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use floatlb::net::dns;
use support::{free_port, http_get, Floatlb, TestBackend};

/// dnsmasq answering for `.lab` from a hosts file, killed on drop.
struct Dnsmasq {
    child: Option<Child>,
    hosts: PathBuf,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Dnsmasq {
    /// Serves `records` ("ip name" lines) on `port` (0: a free one).
    fn start(records: &str, port: u16) -> Dnsmasq {
        let dir = tempfile::tempdir().unwrap();
        let hosts = dir.path().join("hosts");
        std::fs::write(&hosts, records).unwrap();
        let port = if port == 0 { free_port() } else { port };
        let mut d = Dnsmasq {
            child: None,
            hosts,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            _dir: dir,
        };
        d.spawn();
        d
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new("dnsmasq");
        cmd.args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            // Names under .lab are answered from the file alone: NXDOMAIN or
            // no records for the others, never REFUSED.
            "--local=/lab/",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--local-ttl=1",
            "--pid-file=",
            "--log-facility=-",
        ])
        .arg(format!("--port={}", self.addr.port()))
        .arg(format!("--addn-hosts={}", self.hosts.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        // As root dnsmasq would become nobody, who cannot read the test's file again.
        if unsafe { libc::geteuid() } == 0 {
            cmd.arg("--user=root");
        }
        self.child = Some(cmd.spawn().expect("dnsmasq (Debian package dnsmasq)"));
        let records = std::fs::read_to_string(&self.hosts).unwrap();
        self.wait_answers(&records);
    }

    /// Serves `records` from now on.
    fn set(&self, records: &str) {
        std::fs::write(&self.hosts, records).unwrap();
        let pid = self.child.as_ref().unwrap().id() as i32;
        unsafe { libc::kill(pid, libc::SIGHUP) };
        self.wait_answers(records);
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits until dnsmasq answers the first record's name with its address.
    fn wait_answers(&self, records: &str) {
        let (ip, name) = records.split_once(' ').unwrap();
        let want: std::net::IpAddr = ip.parse().unwrap();
        let name = name.lines().next().unwrap().trim();
        let start = Instant::now();
        loop {
            if ask(self.addr, name).contains(&want) {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "dnsmasq never answered {name} with {ip}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `name`'s A records as `server` gives them now (empty on no answer).
fn ask(server: SocketAddr, name: &str) -> Vec<std::net::IpAddr> {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let q = dns::query(0x4242, name, dns::Family::V4).unwrap();
    let _ = s.send_to(&q, server);
    let mut buf = [0u8; 512];
    let Ok(n) = s.recv(&mut buf) else {
        return Vec::new();
    };
    dns::parse(&buf[..n], 0x4242, name, dns::Family::V4)
        .map(|a| a.addresses.into_iter().map(|(ip, _)| ip).collect())
        .unwrap_or_default()
}

fn metric(lb: &Floatlb, series: &str) -> Option<f64> {
    support::netns::metric(&http_get(lb.admin, "/metrics").2, series)
}

fn wait_for(what: &str, lb: &Floatlb, ok: impl Fn() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "timed out waiting for {what}; log:\n{}",
            lb.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn config(dns: SocketAddr, port: u16) -> String {
    format!(
        "[resolver]\nnameservers = [\"{dns}\"]\n\n\
         [health]\ninterval = \"200ms\"\n\n\
         [[pool]]\nname = \"byname\"\nbackends = [\"web.lab:{port}\"]\n"
    )
}

/// The name moves from one web server to the other under load: floatlb
/// follows its TTL, the new address is checked before it takes requests, the
/// old one keeps them until then, and no request fails.
#[test]
fn a_name_moves_to_another_server_under_load_without_a_failed_request() {
    let port = free_port();
    let web1 = TestBackend::start_on("web1", &format!("127.0.0.2:{port}"));
    let web2 = TestBackend::start_on("web2", &format!("127.0.0.3:{port}"));
    let dns = Dnsmasq::start("127.0.0.2 web.lab\n", 0);
    let lb = Floatlb::start(&config(dns.addr, port));
    let (status, headers, _) = http_get(lb.addr, "/");
    assert_eq!(
        (status, support::header(&headers, "x-backend")),
        (200, Some("web1"))
    );
    let series = |s: &str| format!("{s}{{name=\"web.lab\",pool=\"byname\"}}");
    assert_eq!(
        metric(&lb, &series("floatlb_resolver_addresses")),
        Some(1.0)
    );

    let stop = Arc::new(AtomicBool::new(false));
    let load = support::load(lb.addr, 4, 200_000, Duration::from_secs(30), stop.clone());
    wait_for("load on web1", &lb, || web1.requests() > 200);
    let changed = Instant::now();
    dns.set("127.0.0.3 web.lab\n");
    wait_for("requests on web2", &lb, || web2.requests() > 0);
    // Shown, not asserted: how long the move took with a 1 s TTL.
    let moved_after = changed.elapsed();
    assert!(
        web2.seen.health_checks.load(Ordering::SeqCst) > 0,
        "web2 took a request before its check"
    );
    wait_for("web1 to leave the pool", &lb, || {
        metric(&lb, &series("floatlb_resolver_addresses")) == Some(1.0)
    });
    // Requests that started before the switch may still end on web1: count
    // from a moment later.
    let later = web2.requests() + 200;
    wait_for("more requests on web2", &lb, || web2.requests() > later);
    let web1_after = web1.requests();
    let later = web2.requests() + 500;
    wait_for("still more requests on web2", &lb, || {
        web2.requests() > later
    });
    stop.store(true, Ordering::SeqCst);
    let r = load.join().unwrap();
    assert!(
        r.failures.is_empty(),
        "{} failed: {:?}",
        r.failures.len(),
        &r.failures[..r.failures.len().min(5)]
    );
    assert_eq!(
        web1.requests(),
        web1_after,
        "web1 still gets requests after it left the answer"
    );
    assert!(r.ok > 1000, "{r:?}");
    eprintln!(
        "moved under load: {} requests, {} failed; web1 {}, web2 {}; web2's first request {moved_after:?} after the answer changed",
        r.ok,
        r.failures.len(),
        web1.requests(),
        web2.requests()
    );
    assert_eq!(
        metric(&lb, &series("floatlb_resolver_changes_total")),
        Some(2.0)
    );
    let log = lb.log();
    assert!(
        log.contains("backend name resolved to a new set of addresses"),
        "{log}"
    );
    let b = format!("floatlb_backend_up{{backend=\"web.lab:{port}@127.0.0.3\",pool=\"byname\"}}");
    assert_eq!(metric(&lb, &b), Some(1.0));
}

/// A name nobody answers for at start gives its pool no backend (503) and
/// is asked again until it resolves; once resolved, a resolver that stops
/// answering changes nothing: the last good set stays, and the failures are
/// logged and counted.
#[test]
fn resolution_failures_keep_the_last_good_set() {
    let port = free_port();
    let web1 = TestBackend::start_on("web1", &format!("127.0.0.2:{port}"));
    let dns_port = free_port();
    let dns_addr = SocketAddr::from(([127, 0, 0, 1], dns_port));
    let lb = Floatlb::start(&config(dns_addr, port));
    let (status, _, body) = http_get(lb.addr, "/");
    assert_eq!(status, 503, "{body}");
    assert!(
        lb.log().contains("its pools have no backend for it yet"),
        "{}",
        lb.log()
    );

    let mut dns = Dnsmasq::start("127.0.0.2 web.lab\n", dns_port);
    wait_for(
        "the name to resolve and web1 to pass its check",
        &lb,
        || http_get(lb.addr, "/").0 == 200,
    );
    assert!(web1.seen.health_checks.load(Ordering::SeqCst) > 0);

    dns.stop();
    let failures = "floatlb_resolver_failures_total{name=\"web.lab\",pool=\"byname\"}";
    let before = metric(&lb, failures).unwrap_or(0.0);
    wait_for("failed resolutions", &lb, || {
        metric(&lb, failures).unwrap_or(0.0) >= before + 2.0
    });
    for _ in 0..20 {
        let (status, headers, _) = http_get(lb.addr, "/");
        assert_eq!(
            (status, support::header(&headers, "x-backend")),
            (200, Some("web1"))
        );
    }
    assert!(
        lb.log().contains("keeping its last addresses"),
        "{}",
        lb.log()
    );
}

/// A new address of the name takes no request until its health check
/// passes: here nothing listens there at first, so it stays DOWN and every
/// request goes to the address the name had; once a server listens there,
/// its first passing check brings it in.
#[test]
fn a_new_address_takes_no_request_before_its_check_passes() {
    let port = free_port();
    let web1 = TestBackend::start_on("web1", &format!("127.0.0.2:{port}"));
    let dns = Dnsmasq::start("127.0.0.2 web.lab\n", 0);
    let lb = Floatlb::start(&config(dns.addr, port));
    assert_eq!(http_get(lb.addr, "/").0, 200);
    dns.set("127.0.0.2 web.lab\n127.0.0.3 web.lab\n");
    let up = format!("floatlb_backend_up{{backend=\"web.lab:{port}@127.0.0.3\",pool=\"byname\"}}");
    wait_for("the new address in the pool", &lb, || {
        metric(&lb, &up).is_some()
    });
    assert_eq!(metric(&lb, &up), Some(0.0), "a new address starts DOWN");
    let before = web1.requests();
    for _ in 0..30 {
        let (status, headers, _) = http_get(lb.addr, "/");
        assert_eq!(
            (status, support::header(&headers, "x-backend")),
            (200, Some("web1"))
        );
    }
    assert_eq!(web1.requests(), before + 30);
    let tried = format!("floatlb_backend_errors_total{{backend=\"web.lab:{port}@127.0.0.3\",kind=\"connect\",pool=\"byname\"}}");
    assert_eq!(
        metric(&lb, &tried).unwrap_or(0.0),
        0.0,
        "a request was sent to the unchecked address"
    );

    let web2 = TestBackend::start_on("web2", &format!("127.0.0.3:{port}"));
    wait_for("web2 to pass its check", &lb, || {
        metric(&lb, &up) == Some(1.0)
    });
    wait_for("requests on web2", &lb, || {
        http_get(lb.addr, "/");
        web2.requests() > 0
    });
    assert!(web2.seen.health_checks.load(Ordering::SeqCst) > 0);
}

/// A reload keeps the addresses a name resolved to and their backends'
/// state (here their request counters), and resolves a new name at once.
#[test]
fn a_reload_keeps_resolved_backends_and_resolves_new_names() {
    let port = free_port();
    let web1 = TestBackend::start_on("web1", &format!("127.0.0.2:{port}"));
    let api = TestBackend::start_on("api", &format!("127.0.0.3:{port}"));
    let dns = Dnsmasq::start("127.0.0.2 web.lab\n127.0.0.3 api.lab\n", 0);
    let lb = Floatlb::start(&config(dns.addr, port));
    for _ in 0..5 {
        assert_eq!(http_get(lb.addr, "/").0, 200);
    }
    let requests = format!(
        "floatlb_backend_requests_total{{backend=\"web.lab:{port}@127.0.0.2\",pool=\"byname\"}}"
    );
    assert_eq!(metric(&lb, &requests), Some(5.0));
    let more = format!(
        "{}\n[[pool]]\nname = \"api\"\nbackends = [\"api.lab:{port}\"]\n\n\
         [[route]]\npath-prefix = \"/api/\"\npool = \"api\"\n\n[[route]]\npool = \"byname\"\n",
        config(dns.addr, port)
    );
    lb.reload(&more);
    let reloaded = "floatlb_config_reloads_total{result=\"success\"}";
    wait_for("the reload", &lb, || metric(&lb, reloaded) == Some(1.0));
    let (status, headers, _) = http_get(lb.addr, "/");
    assert_eq!(
        (status, support::header(&headers, "x-backend")),
        (200, Some("web1"))
    );
    assert_eq!(
        metric(&lb, &requests),
        Some(6.0),
        "the backend's state was not kept"
    );
    wait_for("the new name's backend", &lb, || {
        http_get(lb.addr, "/api/x").0 == 200 && api.requests() > 0
    });
    assert!(web1.requests() >= 6);

    // The runtime API takes the address's backend by its name; what it
    // sets stays when the name's answer changes around it.
    let name = format!("web.lab:{port}@127.0.0.2");
    let (code, out, err) =
        support::floatlb_cmd("ctl", &lb.config_path, &["backend", "drain", &name]);
    assert_eq!(code, 0, "{out}{err}");
    let drained = format!(
        "floatlb_backend_admin_state{{backend=\"{name}\",pool=\"byname\",state=\"drain\"}}"
    );
    assert_eq!(metric(&lb, &drained), Some(1.0));
    dns.set("127.0.0.4 web.lab\n127.0.0.2 web.lab\n127.0.0.3 api.lab\n");
    let addresses = "floatlb_resolver_addresses{name=\"web.lab\",pool=\"byname\"}";
    wait_for("the name's second address", &lb, || {
        metric(&lb, addresses) == Some(2.0)
    });
    assert_eq!(
        metric(&lb, &drained),
        Some(1.0),
        "the drained address lost its state"
    );
}

/// RFC 1035 §4.2.1 and §4.2.2: an answer too long for a UDP message comes
/// truncated (TC) and is asked again over TCP. dnsmasq puts 30 of these 40
/// addresses in its UDP answer; floatlb must use all 40.
#[test]
fn a_truncated_answer_is_asked_again_over_tcp() {
    let records: String = (1..=40)
        .map(|i| format!("127.0.1.{i} many.lab\n"))
        .collect();
    let dns = Dnsmasq::start(&records, 0);
    let lb = Floatlb::start(&format!(
        "[resolver]\nnameservers = [\"{}\"]\nfamily = \"ipv4\"\n\n\
         [[pool]]\nname = \"many\"\nbackends = [\"many.lab:9\"]\n",
        dns.addr
    ));
    let series = "floatlb_resolver_addresses{name=\"many.lab\",pool=\"many\"}";
    assert_eq!(metric(&lb, series), Some(40.0), "{}", lb.log());
}

/// `floatlb check` takes a name without resolving it (this one resolves
/// nowhere) and refuses a bad name or port at its key, with its line.
#[test]
fn check_accepts_names_unresolved_and_refuses_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("proxy.toml");
    let text = "[listen]\naddress = \"127.0.0.1:8080\"\n\n[[pool]]\nname = \"p\"\n\
                backends = [\"198.18.0.11:80\", \"web3.invalid:80\"]\n";
    std::fs::write(&file, text).unwrap();
    let (code, out, err) = support::floatlb_cmd("check", &file, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("(2 backends in 1 pools"), "{out}");
    std::fs::write(&file, text.replace("web3.invalid:80", "web3..invalid:80")).unwrap();
    let (code, _, err) = support::floatlb_cmd("check", &file, &[]);
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains(":6:")
            && err.contains("pool[0].backends[1]: \"web3..invalid:80\" is not an address and port"),
        "{err}"
    );
    std::fs::write(&file, text.replace("web3.invalid:80", "web3.invalid:http")).unwrap();
    let (_, _, err) = support::floatlb_cmd("check", &file, &[]);
    assert!(
        err.contains(
            "pool[0].backends[1]: \"web3.invalid:http\": the port \"http\" is not a number"
        ),
        "{err}"
    );
}

/// A name that stops existing (NXDOMAIN) is an answer, not a failure: its
/// addresses stay for `hold`, then leave the pool (503 after that).
#[test]
fn a_name_that_goes_away_leaves_after_hold() {
    let port = free_port();
    let web1 = TestBackend::start_on("web1", &format!("127.0.0.2:{port}"));
    let dns = Dnsmasq::start("127.0.0.2 web.lab\n", 0);
    let lb = Floatlb::start(
        &config(dns.addr, port).replace("[resolver]\n", "[resolver]\nhold = \"2s\"\n"),
    );
    assert_eq!(http_get(lb.addr, "/").0, 200);
    let changes = "floatlb_resolver_changes_total{name=\"web.lab\",pool=\"byname\"}";
    assert_eq!(metric(&lb, changes), Some(1.0));
    dns.set("127.0.0.9 other.lab\n");
    wait_for("the empty answer", &lb, || {
        metric(&lb, changes) == Some(2.0)
    });
    let (status, headers, _) = http_get(lb.addr, "/");
    assert_eq!(
        (status, support::header(&headers, "x-backend")),
        (200, Some("web1")),
        "held"
    );
    wait_for("hold to pass", &lb, || http_get(lb.addr, "/").0 == 503);
    let failures = "floatlb_resolver_failures_total{name=\"web.lab\",pool=\"byname\"}";
    assert_eq!(metric(&lb, failures), Some(0.0), "NXDOMAIN is an answer");
    assert!(
        lb.log().contains("backend name has no addresses"),
        "{}",
        lb.log()
    );
    assert!(web1.requests() >= 2);
}

/// RFC 3596 §2.1: a name's AAAA records are asked beside its A records, and
/// an IPv6 address becomes a backend like any other.
#[test]
fn aaaa_records_give_ipv6_backends() {
    let port = free_port();
    let web6 = TestBackend::start_on("web6", &format!("[::1]:{port}"));
    let web4 = TestBackend::start_on("web4", &format!("127.0.0.2:{port}"));
    let dns = Dnsmasq::start("127.0.0.2 web.lab\n::1 web.lab\n", 0);
    let lb = Floatlb::start(&config(dns.addr, port));
    let series = "floatlb_resolver_addresses{name=\"web.lab\",pool=\"byname\"}";
    assert_eq!(metric(&lb, series), Some(2.0), "{}", lb.log());
    for _ in 0..10 {
        assert_eq!(http_get(lb.addr, "/").0, 200);
    }
    assert!(web6.requests() > 0 && web4.requests() > 0);
    let up = format!("floatlb_backend_up{{backend=\"web.lab:{port}@::1\",pool=\"byname\"}}");
    assert_eq!(metric(&lb, &up), Some(1.0));
}
