//! Address lists (`allow-from`, `deny-from`, inline or from a file) on
//! listeners and routes, and `auth-basic` on a route, with a real client:
//! curl over HTTP/1.1 and HTTP/2 from two loopback addresses (127.0.0.1 and
//! 127.0.0.2, `--interface`) and from ::1. One floatlb serves every check
//! of the first test, in order; the second runs `floatlb check` only.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::{floatlb_cmd, free_port, header, http_get, make_cert, Floatlb};
use support::{netns, TestBackend};

use support::curl_sik as curl;

/// The status of a plain GET of `path` on `lb` from `from`.
fn status_from(lb: SocketAddr, from: &str, path: &str) -> u16 {
    curl(&format!("http://{lb}{path}"), &["--interface", from]).0
}

fn metric(lb: &Floatlb, series: &str) -> f64 {
    netns::metric(&http_get(lb.admin, "/metrics").2, series).unwrap_or(0.0)
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

/// `htpasswd -B -b -c file user password` (Debian's apache2-utils).
fn htpasswd(file: &Path, user: &str, password: &str) {
    let out = Command::new("htpasswd")
        .args(["-B", "-b", "-c"])
        .arg(file)
        .args([user, password])
        .output()
        .expect("htpasswd (apache2-utils; vm-lab/install-deps installs it)");
    assert!(out.status.success(), "htpasswd: {out:?}");
}

/// base64 of `alice:s3cret` (RFC 7617 §2).
const ALICE: &str = "YWxpY2U6czNjcmV0";

#[test]
fn lists_and_basic_auth_refuse_and_ask_over_http1_and_http2() {
    let b = TestBackend::start("b");
    let dir = tempfile::tempdir().unwrap();
    make_cert(dir.path(), "a", &["a.test"], 90);
    let list = dir.path().join("office.lst");
    std::fs::write(&list, "# the office\n127.0.0.1   # the desk\n").unwrap();
    let users = dir.path().join("htpasswd");
    htpasswd(&users, "alice", "s3cret");
    let log = dir.path().join("access.log");
    let office: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let v6: SocketAddr = format!("[::1]:{}", free_port()).parse().unwrap();
    let tls_office: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let tls_port = free_port();
    let listeners = format!(
        "[[listen]]\nname = \"office\"\naddress = \"{office}\"\nallow-from = [\"127.0.0.0/8\"]\ndeny-from = [\"127.0.0.2\"]\n\n\
         [[listen]]\nname = \"v6\"\naddress = \"{v6}\"\ndeny-from = [\"2001:2::/48\"]\n\n\
         [[listen]]\nname = \"tls-office\"\naddress = \"{tls_office}\"\ntls = true\nallow-from = [\"127.0.0.1/32\"]\n"
    );
    let body = format!(
        "[log]\naccess = \"custom\"\naccess-path = \"{}\"\nformat = \"{{client}} {{status}} {{termination}} {{target}}\"\n\n\
         [tls]\naddress = \"127.0.0.1:{tls_port}\"\n[[tls.certificate]]\ncert = \"{}\"\nkey = \"{}\"\n\n\
         [[pool]]\nname = \"web\"\nbackends = [\"{}\"]\n\n\
         [[route]]\nname = \"file\"\npath-prefix = \"/file/\"\nallow-from-file = \"{}\"\npool = \"web\"\n\n\
         [[route]]\nname = \"staff\"\npath-prefix = \"/staff/\"\nauth-basic = {{ realm = \"staff\", users = \"{}\" }}\npool = \"web\"\n\n\
         [[route]]\nname = \"v6\"\npath-prefix = \"/v6/\"\nallow-from = [\"::1/128\"]\npool = \"web\"\n\n\
         [[route]]\nname = \"rest\"\npool = \"web\"\n",
        log.display(),
        dir.path().join("a.pem").display(),
        dir.path().join("a.key").display(),
        b.addr,
        list.display(),
        users.display(),
    );
    let lb = Floatlb::start_with_listeners(&body, &listeners);
    let main = lb.addr;

    // A listener without lists serves both addresses.
    assert_eq!(status_from(main, "127.0.0.1", "/"), 200);
    assert_eq!(status_from(main, "127.0.0.2", "/"), 200);
    // The office listener: its allow list holds 127/8, its deny list .2 (deny wins).
    assert_eq!(status_from(office, "127.0.0.1", "/"), 200);
    assert_eq!(status_from(office, "127.0.0.3", "/"), 200);
    let (status, _, text, _) = curl(&format!("http://{office}/"), &["--interface", "127.0.0.2"]);
    assert_eq!(status, 403, "{text}");
    assert!(
        text.contains("client 127.0.0.2 is in the deny-from list of this listener"),
        "{text}"
    );

    // A route's list from a file: only 127.0.0.1, on every listener.
    assert_eq!(status_from(main, "127.0.0.1", "/file/x"), 200);
    let (status, _, text, _) = curl(
        &format!("http://{main}/file/x"),
        &["--interface", "127.0.0.2"],
    );
    assert_eq!(status, 403, "{text}");
    assert!(
        text.contains("not in the allow-from list of route file"),
        "{text}"
    );

    // IPv6: the v6 route lets ::1 in, not 127.0.0.1.
    assert_eq!(status_from(v6, "::1", "/v6/a"), 200);
    assert_eq!(status_from(main, "127.0.0.1", "/v6/a"), 403);

    // Basic auth over HTTP/1.1: 401 with the challenge, wrong, right.
    let staff = format!("http://{main}/staff/x");
    let (status, h, _, _) = curl(&staff, &[]);
    assert_eq!(status, 401);
    assert_eq!(
        header(&h, "www-authenticate"),
        Some("Basic realm=\"staff\", charset=\"UTF-8\"")
    );
    let (status, h, _, _) = curl(&staff, &["-u", "alice:wrong"]);
    assert_eq!(status, 401);
    assert!(header(&h, "www-authenticate").is_some());
    assert_eq!(curl(&staff, &["-u", "bob:s3cret"]).0, 401);
    assert_eq!(curl(&staff, &["-u", "alice:s3cret"]).0, 200);
    // RFC 7617 §2 (RFC 9110 §11.1): the scheme's name is case-insensitive.
    let lower = format!("Authorization: bAsIc {ALICE}");
    assert_eq!(curl(&staff, &["-H", &lower]).0, 200);
    // The backend gets the Authorization field, as nginx passes it on.
    let seen = b.seen.last_headers.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|(n, v)| n == "authorization" && v.ends_with(ALICE)),
        "{seen:?}"
    );

    // The same over HTTP/2, on the [tls] listener and on the TLS office listener.
    let h2 = |port: u16, from: &str, path: &str, more: &[&str]| {
        let resolve = format!("a.test:{port}:127.0.0.1");
        let mut args = vec!["--http2", "--resolve", &resolve, "--interface", from];
        args.extend(more);
        let (status, h, text, raw) = curl(&format!("https://a.test:{port}{path}"), &args);
        assert!(raw.starts_with("HTTP/2 "), "{raw}");
        (status, h, text)
    };
    let (status, h, _) = h2(tls_port, "127.0.0.1", "/staff/x", &[]);
    assert_eq!(status, 401);
    assert_eq!(
        header(&h, "www-authenticate"),
        Some("Basic realm=\"staff\", charset=\"UTF-8\"")
    );
    assert_eq!(
        h2(tls_port, "127.0.0.1", "/staff/x", &["-u", "alice:nope"]).0,
        401
    );
    assert_eq!(
        h2(tls_port, "127.0.0.1", "/staff/x", &["-u", "alice:s3cret"]).0,
        200
    );
    assert_eq!(h2(tls_port, "127.0.0.2", "/file/x", &[]).0, 403);
    assert_eq!(h2(tls_office.port(), "127.0.0.1", "/", &[]).0, 200);
    let (status, _, text) = h2(tls_office.port(), "127.0.0.2", "/", &[]);
    assert_eq!(status, 403, "{text}");
    assert!(
        text.contains("not in the allow-from list of this listener"),
        "{text}"
    );

    // Every refusal is counted by its reason.
    assert_eq!(metric(&lb, "floatlb_refused_total{reason=\"denied\"}"), 1.0);
    assert_eq!(
        metric(&lb, "floatlb_refused_total{reason=\"not-allowed\"}"),
        4.0
    );
    assert_eq!(
        metric(&lb, "floatlb_refused_total{reason=\"no-credentials\"}"),
        2.0
    );
    assert_eq!(
        metric(&lb, "floatlb_refused_total{reason=\"bad-credentials\"}"),
        3.0
    );

    // The file changes and SIGHUP: the new list decides.
    std::fs::write(&list, "127.0.0.2\n").unwrap();
    lb.signal(libc::SIGHUP);
    wait_for("the reload", &lb, || {
        metric(&lb, "floatlb_config_reloads_total{result=\"success\"}") >= 1.0
    });
    assert_eq!(status_from(main, "127.0.0.2", "/file/x"), 200);
    assert_eq!(status_from(main, "127.0.0.1", "/file/x"), 403);
    // A bad line: the reload fails naming the file and line; the old list stays.
    std::fs::write(&list, "127.0.0.2\n127.0.0.300\n").unwrap();
    lb.signal(libc::SIGHUP);
    wait_for("the refused reload", &lb, || {
        metric(&lb, "floatlb_config_reloads_total{result=\"failure\"}") >= 1.0
    });
    let said = format!("{}:2: \"127.0.0.300\" is not", list.display());
    assert!(lb.log().contains(&said), "{}", lb.log());
    assert_eq!(status_from(main, "127.0.0.2", "/file/x"), 200);
    assert_eq!(status_from(main, "127.0.0.1", "/file/x"), 403);

    // The access log: each refusal with its client, status and termination PR.
    let start = Instant::now();
    while std::fs::read_to_string(&log).map_or(0, |t| t.lines().count()) < 24 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the access log: {:?}",
            std::fs::read_to_string(&log)
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    let text = std::fs::read_to_string(&log).unwrap();
    for line in [
        "127.0.0.2 403 PR /",
        "127.0.0.2 403 PR /file/x",
        "127.0.0.1 403 PR /v6/a",
        "::1 200 -- /v6/a",
        "127.0.0.1 401 PR /staff/x",
        "127.0.0.1 200 -- /staff/x",
        "127.0.0.1 403 PR /file/x",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
    let refusals = text.lines().filter(|l| l.contains(" PR ")).count();
    assert_eq!(refusals, 12, "{text}");
}

/// `floatlb check` names a bad list file's line and a missing htpasswd file.
#[test]
fn check_names_the_bad_line_of_a_list_and_a_missing_users_file() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("deny.lst");
    std::fs::write(&list, "# bad actors\n198.18.0.0/15\n2001:2::/129\n").unwrap();
    let file = dir.path().join("proxy.toml");
    std::fs::write(
        &file,
        format!(
            "[listen]\naddress = \"127.0.0.1:8080\"\ndeny-from-file = \"{}\"\n\n\
             [[backend]]\nname = \"a\"\naddress = \"127.0.0.1:9001\"\n\n\
             [[route]]\nauth-basic = {{ users = \"{}\" }}\npool = \"default\"\n",
            list.display(),
            dir.path().join("none").display()
        ),
    )
    .unwrap();
    let (code, out, err) = floatlb_cmd("check", &file, &[]);
    assert_ne!(code, 0, "{out}");
    assert!(
        err.contains(&format!(
            "proxy.toml:3:18: listen.deny-from-file: {}:3: prefix length in \"2001:2::/129\" is over 128",
            list.display()
        )),
        "{err}"
    );
    assert!(
        err.contains("route[0].auth-basic.users: cannot read"),
        "{err}"
    );
}

/// `floatlb route` says which list refuses a client, and that a route asks
/// for credentials.
#[test]
fn route_explains_refusals_and_the_realm() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("htpasswd");
    htpasswd(&users, "alice", "s3cret");
    let file = dir.path().join("proxy.toml");
    std::fs::write(
        &file,
        format!(
            "[listen]\naddress = \"127.0.0.1:8080\"\nallow-from = [\"198.18.0.0/15\"]\n\n\
             [[backend]]\nname = \"a\"\naddress = \"127.0.0.1:9001\"\n\n\
             [[route]]\nname = \"staff\"\npath-prefix = \"/staff/\"\ndeny-from = [\"198.18.0.66\"]\n\
             auth-basic = {{ realm = \"staff\", users = \"{}\" }}\npool = \"default\"\n",
            users.display()
        ),
    )
    .unwrap();
    let route = |source: &str, url: &str| {
        let (code, out, err) = floatlb_cmd("route", &file, &["GET", url, "--source", source]);
        assert_eq!(code, 0, "{err}");
        out
    };
    let out = route("198.20.0.1", "http://x/");
    assert!(
        out.contains(
            "answer: 403 from the listener's address lists (client 198.20.0.1: not-allowed)"
        ),
        "{out}"
    );
    let out = route("198.18.0.66", "http://x/staff/");
    assert!(
        out.contains("answer: 403 from the route's address lists (client 198.18.0.66: denied)"),
        "{out}"
    );
    let out = route("198.18.0.7", "http://x/staff/");
    assert!(
        out.contains("auth-basic: realm \"staff\", 1 users: 401 without a valid user and password")
            && out.contains("pool: default"),
        "{out}"
    );
}
