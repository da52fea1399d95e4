//! The runtime API on the admin listener and `floatlb ctl`: draining a backend
//! under load loses nothing, maint and ready, weights, the bearer token, state
//! kept across reloads, and ctl's exit codes.

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use support::netns::metric;
use support::*;

/// `floatlb <command> -c <config> args...`: (exit code, stdout, stderr).
/// `floatlb ctl -c <lb's config> args...`.
fn ctl(lb: &Floatlb, args: &[&str]) -> (i32, String, String) {
    floatlb_cmd("ctl", &lb.config_path, args)
}

fn post(addr: SocketAddr, path: &str, auth: Option<&str>) -> (u16, Vec<(String, String)>, String) {
    let auth = auth.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    raw_request(
        addr,
        &format!("POST {path} HTTP/1.1\r\nHost: t\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"),
    )
}

/// GETs `n` requests on one keep-alive connection; the count per backend.
fn spread(lb: &Floatlb, n: usize) -> std::collections::HashMap<String, u64> {
    let mut c = KeepAlive::new(lb.addr);
    let mut by = std::collections::HashMap::new();
    for _ in 0..n {
        let (status, backend, _) = c.get("/").unwrap();
        assert_eq!(status, 200);
        *by.entry(backend).or_default() += 1;
    }
    by
}

fn two_backends(extra: &str) -> (TestBackend, TestBackend, Floatlb) {
    let a = TestBackend::start("a");
    let b = TestBackend::start("b");
    let lb = Floatlb::start(&format!(
        "{extra}[health]\ninterval = \"100ms\"\n{}",
        backend_tables(&[(&a, 1), (&b, 1)])
    ));
    (a, b, lb)
}

/// HAProxy's `set server ... state drain` under wrk -c50: the drained backend
/// gets no new request once the call returns, what it had in flight finishes,
/// and wrk sees no error.
#[test]
fn drain_under_wrk_loses_nothing_and_the_backend_gets_no_new_requests() {
    if Command::new("wrk").arg("--version").output().is_err() {
        assert!(
            std::env::var("FLOATLB_REQUIRE_NETNS").as_deref() != Ok("1"),
            "wrk is not installed (vm-lab/install-deps)"
        );
        eprintln!("SKIPPED drain_under_wrk_...: wrk is not installed (vm-lab/install-deps)");
        return;
    }
    let (a, b, lb) = two_backends("");
    let wrk = Command::new("wrk")
        .args(["-t1", "-c50", "-d3s", "--timeout", "2s"])
        .arg(format!("http://{}/", lb.addr))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    assert!(b.requests() > 0, "b served nothing before the drain");
    let (code, out, err) = ctl(&lb, &["backend", "drain", "b"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.trim(), "b: drain (was ready)");
    // Requests picked before the drain may still be on their way: settle first.
    std::thread::sleep(Duration::from_millis(500));
    let b_after = b.requests();
    let a_after = a.requests();
    let out = wrk.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        !text.contains("Socket errors") && !text.contains("Non-2xx"),
        "wrk saw failures:\n{text}"
    );
    assert_eq!(
        b.requests(),
        b_after,
        "the drained backend got new requests"
    );
    assert!(a.requests() > a_after, "the other backend stopped serving");
    let status = lb.status_json();
    assert!(
        status.contains("\"name\":\"b\",") && status.contains("\"admin\":\"drain\""),
        "{status}"
    );
    assert!(status.contains("\"in_flight\":0"), "{status}");
}

/// maint takes a backend out and stops its health checks; ready brings it back.
#[test]
fn maint_stops_checks_and_ready_brings_the_backend_back() {
    let (_a, b, lb) = two_backends("");
    let checks = || {
        metric(
            &http_get(lb.admin, "/metrics").2,
            "floatlb_health_checks_total{backend=\"b\",pool=\"default\",result=\"success\"}",
        )
        .unwrap()
    };
    lb.wait_status("b checked", |_| checks() > 0.0);
    let (code, out, _) = ctl(&lb, &["backend", "maint", "b"]);
    assert_eq!((code, out.trim()), (0, "b: maint (was ready)"));
    let before = b.requests();
    let by = spread(&lb, 20);
    assert_eq!(by.get("b"), None, "{by:?}");
    assert_eq!(b.requests(), before);
    let n = checks();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(checks(), n, "health checks went on in maintenance");
    let m = http_get(lb.admin, "/metrics").2;
    assert_eq!(
        metric(
            &m,
            "floatlb_backend_admin_state{backend=\"b\",pool=\"default\",state=\"maint\"}"
        ),
        Some(1.0),
        "{m}"
    );
    let (code, out, _) = ctl(&lb, &["backend", "ready", "b"]);
    assert_eq!((code, out.trim()), (0, "b: ready (was maint)"));
    let by = spread(&lb, 20);
    assert_eq!(by.get("b"), Some(&10), "{by:?}");
    lb.wait_status("checks again", |_| checks() > n);
}

/// A weight set at run time changes the spread as round-robin says (3:1 over
/// 400 requests), and `weight <name> config` returns to the file's.
#[test]
fn weight_changes_the_spread_and_config_restores_it() {
    let (_a, _b, lb) = two_backends("");
    let (code, out, _) = ctl(&lb, &["backend", "weight", "a", "3"]);
    assert_eq!((code, out.trim()), (0, "a: weight 3"));
    let by = spread(&lb, 400);
    assert_eq!((by["a"], by["b"]), (300, 100), "{by:?}");
    assert!(lb
        .status_json()
        .contains("\"weight\":3,\"weight_set\":true"));
    let (code, _, _) = ctl(&lb, &["backend", "weight", "a", "config"]);
    assert_eq!(code, 0);
    let by = spread(&lb, 400);
    assert_eq!((by["a"], by["b"]), (200, 200), "{by:?}");
    let (code, _, err) = ctl(&lb, &["backend", "weight", "a", "257"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("400") && err.contains("0..=256"), "{err}");
}

/// With `[admin] token-file`, every runtime call needs the token (RFC 6750
/// bearer): none or a wrong one gets 401 with WWW-Authenticate; ctl reads the
/// token from the same file. Read-only pages stay open; GET on the API is 405.
#[test]
fn the_token_is_required_where_configured() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    // The body continues the [admin] table the test config starts with.
    let (_a, _b, lb) = two_backends(&format!(
        "token-file = {:?}\n",
        token_file.display().to_string()
    ));
    for auth in [None, Some("wrong"), Some("s3cret-toke")] {
        let (status, headers, _) = post(lb.admin, "/admin/backend/b/drain", auth);
        assert_eq!(status, 401, "{auth:?}");
        assert_eq!(header(&headers, "www-authenticate"), Some("Bearer"));
    }
    assert!(
        lb.status_json().contains("\"admin\":\"ready\""),
        "a refused call changed state"
    );
    let (status, _, body) = post(lb.admin, "/admin/backend/b/drain", Some("s3cret-token"));
    assert_eq!((status, body.trim()), (200, "b: drain (was ready)"));
    let (code, out, err) = ctl(&lb, &["backend", "ready", "b"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(http_get(lb.admin, "/status.json").0, 200);
    let (status, headers, _) = raw_request(
        lb.admin,
        "GET /admin/reload HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 405);
    assert_eq!(header(&headers, "allow"), Some("POST"));
}

/// State set at run time is kept across a reload; ctl reload answers 0, or 1
/// with the file:line:col of a refused file (which changes nothing).
#[test]
fn runtime_state_survives_reload_and_ctl_reports_a_refused_file() {
    let (a, b, lb) = two_backends("");
    assert_eq!(ctl(&lb, &["backend", "drain", "b"]).0, 0);
    let (code, out, err) = ctl(&lb, &["reload"]);
    assert_eq!((code, out.trim()), (0, "configuration reloaded"), "{err}");
    let status = lb.status_json();
    assert!(
        status.contains("\"admin\":\"drain\""),
        "drain lost on reload: {status}"
    );
    let good = std::fs::read_to_string(&lb.config_path).unwrap();
    std::fs::write(
        &lb.config_path,
        format!(
            "{good}\n[[backend]]\nname = \"c\"\nweight = 999\naddress = \"{}\"\n",
            a.addr
        ),
    )
    .unwrap();
    let (code, _, err) = ctl(&lb, &["reload"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("422") && err.contains("weight") && err.contains(":"),
        "{err}"
    );
    assert!(!lb.status_json().contains("\"name\":\"c\""));
    drop(b);
}

/// ctl's exit codes: 0 done, 1 refused by floatlb, 2 usage, 3 unreachable.
#[test]
fn ctl_exit_codes_say_what_happened() {
    let (_a, _b, lb) = two_backends("");
    let (code, out, _) = ctl(&lb, &["status"]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with('{') && out.contains("\"backends\""),
        "{out}"
    );
    let (code, _, err) = ctl(&lb, &["backend", "drain", "nosuch"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("404") && err.contains("no backend named \"nosuch\""),
        "{err}"
    );
    let (code, _, _) = ctl(&lb, &["backend", "drain"]);
    assert_eq!(code, 2, "a missing name is a usage error");
    // The same config with the admin listener's port nobody listens on.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("proxy.toml");
    let text = std::fs::read_to_string(&lb.config_path)
        .unwrap()
        .replace(&lb.admin.to_string(), "127.0.0.1:1");
    std::fs::write(&cfg, text).unwrap();
    let (code, _, err) = floatlb_cmd("ctl", &cfg, &["status"]);
    assert_eq!(code, 3, "{err}");
}

/// An admin listener on a non-loopback address without a token is refused by
/// `floatlb check` (the runtime API can drain backends and move the VIP).
#[test]
fn check_refuses_an_open_admin_listener_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("proxy.toml");
    std::fs::write(
        &cfg,
        "[listen]\naddress = \"127.0.0.1:8080\"\n[admin]\naddress = \"0.0.0.0:9100\"\n[[backend]]\nname = \"a\"\naddress = \"127.0.0.1:8081\"\n",
    )
    .unwrap();
    let (code, _, err) = floatlb_cmd("check", &cfg, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("admin.address") && err.contains("token-file"),
        "{err}"
    );
    let token = dir.path().join("t");
    std::fs::write(&token, "x\n").unwrap();
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "address = \"0.0.0.0:9100\"",
        &format!(
            "address = \"0.0.0.0:9100\"\ntoken-file = {:?}",
            token.display().to_string()
        ),
    );
    std::fs::write(&cfg, text).unwrap();
    let (code, _, err) = floatlb_cmd("check", &cfg, &[]);
    assert_eq!(code, 0, "{err}");
}

/// `[admin] address` on reload: a new address is bound before the reload is
/// accepted and the old one is let go; an address that cannot be bound refuses
/// the reload with the reason, and the old listener keeps serving.
#[test]
fn admin_address_change_rebinds_or_is_refused() {
    let (a, b, lb) = two_backends("");
    let body = format!(
        "[health]\ninterval = \"100ms\"\n{}",
        backend_tables(&[(&a, 1), (&b, 1)])
    );
    let moved: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    std::fs::write(&lb.config_path, Floatlb::render(lb.addr, moved, &body)).unwrap();
    // Asked on the old address; answered there once the new one is bound.
    let (status, _, text) = post(lb.admin, "/admin/reload", None);
    assert_eq!(status, 200, "{text}");
    assert_eq!(http_get(moved, "/healthz").0, 200);
    let start = std::time::Instant::now();
    while std::net::TcpStream::connect(lb.admin).is_ok() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the old admin address still accepts"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // ctl follows the file, so it finds the moved listener.
    let (code, out, _) = ctl(&lb, &["status"]);
    assert_eq!(code, 0);
    assert!(out.contains("\"backends\""), "{out}");

    // An address someone else holds: refused, nothing changes.
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = squatter.local_addr().unwrap();
    std::fs::write(&lb.config_path, Floatlb::render(lb.addr, taken, &body)).unwrap();
    let (status, _, text) = post(moved, "/admin/reload", None);
    assert_eq!(status, 422, "{text}");
    assert!(
        text.contains(&format!("[admin] address: cannot listen on {taken}")),
        "{text}"
    );
    assert_eq!(http_get(moved, "/healthz").0, 200);
    assert_eq!(http_get(lb.addr, "/").0, 200);
}

/// `[[vrrp]]` on a node that runs none: adding an instance needs a restart,
/// so the reload is refused with that reason and the old config serves on.
#[test]
fn adding_a_vrrp_instance_on_reload_is_refused() {
    let (a, b, lb) = two_backends("");
    let body = format!(
        "[health]\ninterval = \"100ms\"\n{}[[vrrp]]\ninterface = \"lo\"\nvrid = 51\npriority = 100\nvirtual-addresses = [\"198.18.0.100/32\"]\n",
        backend_tables(&[(&a, 1), (&b, 1)])
    );
    std::fs::write(&lb.config_path, Floatlb::render(lb.addr, lb.admin, &body)).unwrap();
    let (status, _, text) = post(lb.admin, "/admin/reload", None);
    assert_eq!(status, 422, "{text}");
    assert!(
        text.contains("[[vrrp]]: instances changed ([] -> [lo VRID 51])")
            && text.contains("needs a restart"),
        "{text}"
    );
    assert!(
        !lb.status_json().contains("\"vrrp\""),
        "{}",
        lb.status_json()
    );
    assert_eq!(http_get(lb.addr, "/").0, 200);
}

/// `[listen] workers` is read at start: a reload says so instead of
/// pretending to apply it, and goes through for the rest.
#[test]
fn workers_change_is_logged_as_taking_effect_at_restart() {
    let (_a, _b, lb) = two_backends("");
    let cfg = std::fs::read_to_string(&lb.config_path).unwrap();
    std::fs::write(&lb.config_path, cfg.replace("workers = 2", "workers = 1")).unwrap();
    let (status, _, text) = post(lb.admin, "/admin/reload", None);
    assert_eq!(status, 200, "{text}");
    assert!(
        lb.log()
            .contains("listen.workers changed: it takes effect at the next restart"),
        "{}",
        lb.log()
    );
}
