//! `[[pool]]` and `[[route]]` with a real client (curl over HTTP/1.1): every
//! matcher and action, header and path edits, error pages, a pool's own
//! health checks, `floatlb check` and `floatlb route`, and a reload that
//! changes routes under load. HTTP/2 routing is in `tests/tls.rs`.

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use support::{floatlb_cmd, header, parse_response, Floatlb, TestBackend};

/// `curl -si` with `args` to `path` on `lb`, Host `host`: (status, headers, body).
fn curl(
    lb: SocketAddr,
    host: &str,
    path: &str,
    args: &[&str],
) -> (u16, Vec<(String, String)>, String) {
    let out = Command::new("curl")
        .args(["-si", "--http1.1", "--max-time", "10", "-H"])
        .arg(format!("Host: {host}"))
        .args(args)
        .arg(format!("http://{lb}{path}"))
        .output()
        .expect("curl (vm-lab/install-deps installs it)");
    assert!(out.status.success(), "curl {path}: {:?}", out);
    parse_response(&String::from_utf8_lossy(&out.stdout))
}

/// Which backend answered (its `x-backend`), or the status when floatlb did.
fn who(lb: SocketAddr, host: &str, path: &str, args: &[&str]) -> String {
    let (status, headers, _) = curl(lb, host, path, args);
    header(&headers, "x-backend").map_or(format!("{status}"), str::to_string)
}

fn pool(name: &str, b: &TestBackend) -> String {
    format!("[[pool]]\nname = \"{name}\"\nbackends = [\"{}\"]\n", b.addr)
}

/// The file issue 28 names as a contract (a copy; `shared/contracts/` beside
/// the checkout holds the original where there is one, and it must not drift).
const CONTRACT: &str = include_str!("data/routes-contract.toml");

#[test]
fn the_contract_copy_is_the_contract() {
    let shared = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/contracts/routes.toml"
    );
    match std::fs::read_to_string(shared) {
        Ok(text) => assert_eq!(
            text, CONTRACT,
            "tests/data/routes-contract.toml differs from {shared}"
        ),
        Err(e) => println!("skipped: {shared}: {e} (a checkout without shared/ beside it)"),
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("routes.toml");
    std::fs::write(&file, CONTRACT).unwrap();
    let (code, out, err) = floatlb_cmd("check", &file, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("3 backends in 3 pools, 3 routes"), "{out}");
    let (code, out, _) = floatlb_cmd("route", &file, &["GET", "http://shop.example/"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("matches") && out.contains("pool: shop"),
        "{out}"
    );
}

/// The contract file, with its addresses made the test's backends.
fn contract(shop: &TestBackend, api: &TestBackend, www: &TestBackend) -> String {
    let body = CONTRACT
        .split_once("[[pool]]")
        .map(|(_, rest)| format!("[[pool]]{rest}"))
        .unwrap();
    body.replace("198.18.0.11:80", &shop.addr.to_string())
        .replace("198.18.0.12:80", &api.addr.to_string())
        .replace("198.18.0.13:80", &www.addr.to_string())
}

#[test]
fn the_contract_file_routes_by_host_then_path_prefix_then_the_rest() {
    let (shop, api, www) = (
        TestBackend::start("shop"),
        TestBackend::start("api"),
        TestBackend::start("www"),
    );
    let lb = Floatlb::start(&contract(&shop, &api, &www));
    assert_eq!(who(lb.addr, "shop.example", "/", &[]), "shop");
    // The host route comes first, so the shop's /api/ stays the shop's.
    assert_eq!(who(lb.addr, "shop.example", "/api/x", &[]), "shop");
    assert_eq!(who(lb.addr, "www.example", "/api/cart?id=1", &[]), "api");
    // RFC 9110 §5.3: set replaces every line of the name (the client's included).
    curl(
        lb.addr,
        "www.example",
        "/api/headers",
        &["-H", "X-Route: forged"],
    );
    let headers = api.seen.last_headers.lock().unwrap().clone();
    let routes: Vec<_> = headers.iter().filter(|(n, _)| n == "x-route").collect();
    assert_eq!(
        routes,
        [&("x-route".to_string(), "api".to_string())],
        "{headers:?}"
    );
    assert_eq!(who(lb.addr, "www.example", "/", &[]), "www");
    assert_eq!(who(lb.addr, "other.example", "/apix", &[]), "www");

    let (code, out, err) = floatlb_cmd("route", &lb.config_path, &["GET", "http://shop.example/"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("route[0] \"route0\": matches") && out.contains("pool: shop"),
        "{out}"
    );
    let (_, out, _) = floatlb_cmd(
        "route",
        &lb.config_path,
        &["GET", "http://www.example/about"],
    );
    assert!(
        out.contains("route[0] \"route0\": no match: host www.example is not shop.example"),
        "{out}"
    );
    assert!(
        out.contains("route[1] \"route1\": no match: path /about is not prefix /api/"),
        "{out}"
    );
    assert!(
        out.contains("pool: www") && out.contains(&format!("backend: {}", www.addr)),
        "{out}"
    );
}

#[test]
fn every_matcher_with_a_real_client() {
    let names = [
        "exact", "wild", "regex", "method", "hdr", "present", "query", "source", "rest",
    ];
    let b: Vec<TestBackend> = names.iter().map(|n| TestBackend::start(n)).collect();
    let pools: String = names.iter().zip(&b).map(|(n, b)| pool(n, b)).collect();
    let routes = r#"
[[route]]
host = ["Shop.Example", "store.example"]
path = "/exact"
pool = "exact"

[[route]]
host = "*.example"
path-prefix = "/wild/"
pool = "wild"

[[route]]
path-regex = "^/v[0-9]+/"
pool = "regex"

[[route]]
method = ["PUT", "DELETE"]
pool = "method"

[[route]]
headers = [{ name = "X-Env", equals = "beta" }, { name = "User-Agent", regex = "^curl/" }]
pool = "hdr"

[[route]]
headers = [{ name = "x-debug" }]
pool = "present"

[[route]]
query = [{ name = "v", equals = "2" }]
pool = "query"

[[route]]
source = ["198.18.0.0/15"]
pool = "source"

[[route]]
pool = "rest"
"#;
    let lb = Floatlb::start(&format!("{pools}{routes}"));
    let a = lb.addr;
    let cases: &[(&str, &str, &[&str], &str)] = &[
        // RFC 9110 §4.2.3 / §7.2: the host compares without case or port.
        ("SHOP.example:80", "/exact", &[], "exact"),
        ("store.example", "/exact", &[], "exact"),
        ("store.example", "/exact/more", &[], "rest"),
        ("a.b.example", "/wild/x", &[], "wild"),
        ("example", "/wild/x", &[], "rest"),
        ("h", "/v12/users", &[], "regex"),
        ("h", "/v/users", &[], "rest"),
        // RFC 9110 §9.1: methods compare with case.
        ("h", "/", &["-X", "DELETE"], "method"),
        ("h", "/", &["-X", "delete"], "rest"),
        ("h", "/", &["-H", "X-Env: beta"], "hdr"),
        ("h", "/", &["-H", "X-Env: beta", "-A", "wget/1"], "rest"),
        ("h", "/", &["-H", "X-Env: alpha"], "rest"),
        ("h", "/", &["-H", "X-Debug: 1"], "present"),
        ("h", "/?a=1&v=2", &[], "query"),
        ("h", "/?v=20", &[], "rest"),
    ];
    for (host, path, args, want) in cases {
        assert_eq!(&who(a, host, path, args), want, "{host} {path} {args:?}");
    }
    // The client is 127.0.0.1, outside 198.18.0.0/15.
    assert_eq!(b[7].requests(), 0);
}

#[test]
fn redirect_respond_deny_rewrite_and_answer_edits() {
    let app = TestBackend::start("app");
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("maintenance.html");
    std::fs::write(&page, "<h1>back soon</h1>\n").unwrap();
    let body = format!(
        r#"{pool}
[[route]]
name = "old-site"
host = "old.example"
redirect = {{ location = "https://new.example{{uri}}", status = 301 }}

[[route]]
name = "maintenance"
path-prefix = "/shop/"
respond = {{ status = 503, content-type = "text/html; charset=utf-8", file = "{page}" }}

[[route]]
name = "admin"
path-prefix = "/admin"
deny = 403

[[route]]
name = "api"
path-prefix = "/api/v1/"
replace-prefix = "/v2/"
request-headers = {{ remove = ["X-Secret"], add = {{ "X-Via-Route" = "api" }} }}
response-headers = {{ set = {{ "Cache-Control" = "no-store" }}, add = {{ "X-Served-By" = "floatlb" }}, remove = ["X-Backend-Debug"] }}
pool = "app"

[[route]]
name = "static"
path-prefix = "/static"
strip-prefix = "/static"
pool = "app"
"#,
        pool = pool("app", &app),
        page = page.display()
    );
    let lb = Floatlb::start(&body);
    let a = lb.addr;
    // RFC 9110 §15.4.2 (301) and §10.2.2: Location is the new URI; the path and query kept.
    let (status, h, _) = curl(a, "old.example:8080", "/a/b?c=1", &[]);
    assert_eq!(status, 301);
    assert_eq!(header(&h, "location"), Some("https://new.example/a/b?c=1"));
    assert_eq!(app.requests(), 0);
    let (status, h, body) = curl(a, "h", "/shop/cart", &[]);
    assert_eq!((status, body.as_str()), (503, "<h1>back soon</h1>\n"));
    assert_eq!(header(&h, "content-type"), Some("text/html; charset=utf-8"));
    // RFC 9110 §9.3.2: HEAD gets the fields a GET would, and no content; the
    // connection stays usable (curl reuses it for the GET after it).
    let out = Command::new("curl")
        .args([
            "-s",
            "--http1.1",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{size_download} %{num_connects}\n",
        ])
        .args(["-I", "-H", "Host: h"])
        .arg(format!("http://{a}/shop/cart"))
        .args([
            "--next",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{size_download} %{num_connects}\n",
            "-H",
            "Host: h",
        ])
        .arg(format!("http://{a}/shop/cart"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "503 0 1\n503 19 0\n",
        "{out:?}"
    );
    let (status, _, body) = curl(a, "h", "/admin/users", &[]);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("denied by route admin"), "{body}");
    // A body sent to a route that answers itself is not read: the connection closes.
    let (status, h, _) = curl(a, "h", "/admin", &["--data-binary", "x=1"]);
    assert_eq!((status, header(&h, "connection")), (403, Some("close")));
    assert_eq!(app.requests(), 0);

    let (status, h, _) = curl(
        a,
        "h",
        "/api/v1/users?id=7",
        &["-H", "X-Secret: s", "-H", "X-Keep: k"],
    );
    assert_eq!(status, 200);
    assert_eq!(*app.seen.last_target.lock().unwrap(), "/v2/users?id=7");
    let seen = app.seen.last_headers.lock().unwrap().clone();
    assert!(!seen.iter().any(|(n, _)| n == "x-secret"), "{seen:?}");
    assert!(seen.contains(&("x-keep".into(), "k".into())), "{seen:?}");
    assert!(
        seen.contains(&("x-via-route".into(), "api".into())),
        "{seen:?}"
    );
    // RFC 9110 §5.3: the answer's edits, on the backend's own fields.
    assert_eq!(header(&h, "cache-control"), Some("no-store"));
    assert_eq!(header(&h, "x-served-by"), Some("floatlb"));
    assert_eq!(header(&h, "x-backend"), Some("app"));
    curl(a, "h", "/static/css/site.css", &[]);
    assert_eq!(*app.seen.last_target.lock().unwrap(), "/css/site.css");
    curl(a, "h", "/static", &[]);
    assert_eq!(*app.seen.last_target.lock().unwrap(), "/");
}

#[test]
fn no_route_is_a_404_and_error_pages_come_from_the_route_or_the_pool() {
    let live = TestBackend::start("live");
    let dir = tempfile::tempdir().unwrap();
    let (pool_page, route_page) = (dir.path().join("pool.html"), dir.path().join("route.txt"));
    std::fs::write(&pool_page, "<p>pool is down</p>").unwrap();
    std::fs::write(&route_page, "route is down").unwrap();
    // A port nothing listens on: the connect is refused.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let body = format!(
        r#"[health]
enabled = false

[[pool]]
name = "dead"
backends = ["{dead_addr}"]
retries = 0
error-pages = {{ 502 = "{pool_page}" }}

{live_pool}
[[route]]
host = "pool.example"
pool = "dead"

[[route]]
host = "route.example"
pool = "dead"
error-pages = {{ 502 = "{route_page}" }}

[[route]]
host = "live.example"
pool = "live"
"#,
        live_pool = pool("live", &live),
        pool_page = pool_page.display(),
        route_page = route_page.display()
    );
    let lb = Floatlb::start(&body);
    let (status, h, body) = curl(lb.addr, "pool.example", "/", &[]);
    assert_eq!((status, body.as_str()), (502, "<p>pool is down</p>"));
    assert_eq!(header(&h, "content-type"), Some("text/html; charset=utf-8"));
    let (status, _, body) = curl(lb.addr, "route.example", "/", &[]);
    assert_eq!((status, body.as_str()), (502, "route is down"));
    let (status, _, body) = curl(lb.addr, "nowhere.example", "/", &[]);
    assert_eq!(status, 404);
    assert!(body.contains("no route matches"), "{body}");
    assert_eq!(who(lb.addr, "live.example", "/", &[]), "live");
}

#[test]
fn a_pool_checks_its_backends_with_its_own_request() {
    let (good, bad) = (TestBackend::start("good"), TestBackend::start("bad"));
    // The test backends answer their name: a check that wants "good" fails on "bad".
    let body = format!(
        r#"[[pool]]
name = "app"
backends = ["{}", "{}"]
health = {{ path = "/healthz", host = "app.example", method = "GET", expect-status = "200", expect-body = "good", interval = "100ms", rise = 1, fall = 1 }}
"#,
        good.addr, bad.addr
    );
    let lb = Floatlb::start(&body);
    lb.wait_status("the backend without the text marked down", |s| {
        s.contains(&format!("\"address\":\"{}\",\"up\":false", bad.addr))
    });
    for _ in 0..6 {
        assert_eq!(who(lb.addr, "x", "/", &[]), "good");
    }
    let seen = bad.seen.last_headers.lock().unwrap().clone();
    assert!(
        seen.contains(&("host".into(), "app.example".into())),
        "{seen:?}"
    );
    assert!(
        bad.seen
            .health_checks
            .load(std::sync::atomic::Ordering::SeqCst)
            > 0
    );
}

#[test]
fn check_points_at_unknown_pools_duplicates_and_shadowed_routes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        r#"[listen]
address = "127.0.0.1:8080"

[[pool]]
name = "www"
backends = ["198.18.0.13:80"]

[[pool]]
name = "www"
backends = ["198.18.0.14:80"]

[[route]]
host = "*.example"
pool = "www"

[[route]]
host = "shop.example"
pool = "www"

[[route]]
path-prefix = "/api/"
pool = "api"
"#,
    )
    .unwrap();
    let (code, _, err) = floatlb_cmd("check", &file, &[]);
    assert_eq!(code, 1, "{err}");
    let f = file.display();
    // Several pools and no route: all but the first could never be reached.
    let unrouted = dir.path().join("unrouted.toml");
    std::fs::write(
        &unrouted,
        "[listen]\naddress = \"127.0.0.1:8080\"\n[[pool]]\nname = \"a\"\nbackends = [\"198.18.0.11:80\"]\n[[pool]]\nname = \"b\"\nbackends = [\"198.18.0.12:80\"]\n",
    )
    .unwrap();
    let (code, _, out) = floatlb_cmd("check", &unrouted, &[]);
    assert_eq!(code, 1);
    assert!(out.contains("2 pools and no [[route]]"), "{out}");
    for want in [
        format!("{f}:9:8: pool[1].name: duplicate pool name \"www\""),
        format!("{f}:16:1: route[1]: can never match: route \"route0\" (route[0]) comes first"),
        format!("{f}:22:8: route[2].pool: no pool named \"api\" (pools: www)"),
    ] {
        assert!(err.contains(&want), "missing {want:?} in:\n{err}");
    }
}

#[test]
fn a_reload_under_load_changes_routes_and_keeps_backend_state() {
    let (a, b) = (TestBackend::start("a"), TestBackend::start("b"));
    let one = format!("{}\n[[route]]\npool = \"a\"\n", pool("a", &a));
    let two = format!(
        "{}{}\n[[route]]\nhost = \"b.example\"\npool = \"b\"\n\n[[route]]\npool = \"a\"\n",
        pool("a", &a),
        pool("b", &b)
    );
    let lb = Floatlb::start(&one);
    // An operator's drain on a backend of the unchanged pool survives the reloads.
    let (code, _, err) = floatlb_cmd(
        "ctl",
        &lb.config_path,
        &["backend", "weight", &a.addr.to_string(), "7"],
    );
    assert_eq!(code, 0, "{err}");
    let client = lb.addr;
    let load = std::thread::spawn(move || {
        let (mut ok, mut failed) = (0u32, Vec::new());
        let start = Instant::now();
        let mut conn = support::KeepAlive::new(client);
        while start.elapsed() < Duration::from_secs(3) && ok < 20_000 {
            match conn.get("/") {
                Ok((200, _, _)) => ok += 1,
                other => {
                    failed.push(format!("{other:?}"));
                    conn = support::KeepAlive::new(client);
                }
            }
        }
        (ok, failed)
    });
    for body in [&two, &one, &two] {
        std::thread::sleep(Duration::from_millis(500));
        lb.reload(body);
    }
    let (ok, failed) = load.join().unwrap();
    assert!(
        failed.is_empty(),
        "{} failed of {}: {:?}",
        failed.len(),
        ok,
        &failed[..failed.len().min(3)]
    );
    lb.wait_status("the last reload applied", |s| {
        s.contains(&format!("\"{}\"", b.addr))
    });
    assert_eq!(who(lb.addr, "b.example", "/", &[]), "b");
    assert_eq!(who(lb.addr, "a.example", "/", &[]), "a");
    let status = lb.status_json();
    assert!(
        status.contains(&format!(
            "\"address\":\"{}\",\"up\":true,\"admin\":\"ready\",\"weight\":7",
            a.addr
        )),
        "{status}"
    );
}

/// `curl` in a thread: the answer's (status, body) when it comes.
fn curl_later(lb: SocketAddr, path: &'static str) -> std::thread::JoinHandle<(u16, String)> {
    std::thread::spawn(move || {
        let (status, _, body) = curl(lb, "h", path, &[]);
        (status, body)
    })
}

/// Waits (bounded) until `f` holds.
fn wait_for(what: &str, f: impl Fn() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn metric(lb: &Floatlb, series: &str) -> f64 {
    support::netns::metric(&support::http_get(lb.admin, "/metrics").2, series).unwrap_or(0.0)
}

#[test]
fn a_backend_at_its_maxconn_queues_requests_then_503_at_the_queue_timeout() {
    let slow = TestBackend::start("slow");
    let table = |name: &str, timeout: &str, max_queue: u32| {
        format!(
            "[[pool]]\nname = \"{name}\"\nqueue-timeout = \"{timeout}\"\nmax-queue = {max_queue}\n[[pool.backend]]\nname = \"s\"\naddress = \"{}\"\nmaxconn = 1\n",
            slow.addr
        )
    };
    let body = format!(
        "{}{}[[route]]\npath-prefix = \"/held\"\nstrip-prefix = \"/held\"\npool = \"held\"\n\n[[route]]\npool = \"short\"\nstrip-prefix = \"/short\"\n",
        table("held", "10s", 1),
        table("short", "200ms", 0)
    );
    let lb = Floatlb::start(&body);
    // Held: the second request waits for the first to end, then is served.
    let first = curl_later(lb.addr, "/held/slow?ms=800");
    wait_for("the first request at the backend", || slow.requests() == 1);
    let second = curl_later(lb.addr, "/held/");
    wait_for("the second request queued", || {
        metric(&lb, "floatlb_pool_queued_requests{pool=\"held\"}") == 1.0
    });
    assert_eq!(
        slow.requests(),
        1,
        "maxconn 1: the queued request is not at the backend"
    );
    // max-queue = 1: a third finds the queue full.
    let (status, _, text) = curl(lb.addr, "h", "/held/", &[]);
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("the queue of pool held is full"), "{text}");
    assert_eq!(first.join().unwrap().0, 200);
    assert_eq!(second.join().unwrap(), (200, "slow".to_string()));
    assert_eq!(metric(&lb, "floatlb_pool_queued_total{pool=\"held\"}"), 1.0);
    // Short: the queued request gives up at queue-timeout with a 503 and its reason.
    let busy = curl_later(lb.addr, "/short/slow?ms=1500");
    wait_for("the backend busy again", || slow.requests() == 3);
    let (status, _, text) = curl(lb.addr, "h", "/short/", &[]);
    assert_eq!(status, 503, "{text}");
    assert!(
        text.contains("no backend of pool short had a free slot within 200ms"),
        "{text}"
    );
    assert_eq!(busy.join().unwrap().0, 200);
    assert_eq!(
        metric(&lb, "floatlb_pool_queue_refused_total{pool=\"short\"}"),
        1.0
    );
}

#[test]
fn sticky_cookies_insert_and_prefix_keep_a_client_on_its_backend_across_a_reload() {
    let (b1, b2) = (TestBackend::start("b1"), TestBackend::start("b2"));
    let pool = |name: &str, cookie: &str| {
        format!(
            "[[pool]]\nname = \"{name}\"\ncookie = {cookie}\n[[pool.backend]]\nname = \"b1\"\naddress = \"{}\"\ncookie = \"one\"\n[[pool.backend]]\nname = \"b2\"\naddress = \"{}\"\ncookie = \"two\"\n",
            b1.addr, b2.addr
        )
    };
    let body = format!(
        "{}{}[[route]]\nhost = \"app.example\"\npool = \"app\"\n\n[[route]]\npool = \"java\"\n",
        pool("app", "{ name = \"SRV\" }"),
        pool("java", "{ name = \"JSESSIONID\", mode = \"prefix\" }")
    );
    let lb = Floatlb::start(&body);
    // Insert (RFC 6265 §4.1): the first answer names its backend in a cookie of floatlb's.
    let (_, h, _) = curl(lb.addr, "app.example", "/", &[]);
    let (who_first, set) = (
        header(&h, "x-backend").unwrap().to_string(),
        header(&h, "set-cookie"),
    );
    let id = if who_first == "b1" { "one" } else { "two" };
    assert_eq!(set, Some(format!("SRV={id}; Path=/; HttpOnly").as_str()));
    let with_cookie = format!("Cookie: theme=dark; SRV={id}");
    let sticky_to = |n: usize| {
        for _ in 0..n {
            let (_, h, _) = curl(lb.addr, "app.example", "/", &["-H", &with_cookie]);
            assert_eq!(header(&h, "x-backend"), Some(who_first.as_str()));
            assert_eq!(
                header(&h, "set-cookie"),
                None,
                "the cookie names it already"
            );
        }
    };
    sticky_to(6);
    // A reload that adds a route in front: the pool and its backends are unchanged.
    let added = body.replacen(
        "[[route]]\n",
        "[[route]]\nhost = \"new.example\"\npool = \"java\"\n\n[[route]]\n",
        1,
    );
    lb.reload(&added);
    wait_for("the reload", || {
        metric(&lb, "floatlb_config_reloads_total{result=\"success\"}") == 1.0
    });
    sticky_to(6);
    // A cookie naming no backend of the pool: scheduled, and a cookie set.
    let (_, h, _) = curl(lb.addr, "app.example", "/", &["-H", "Cookie: SRV=three"]);
    assert!(
        header(&h, "set-cookie").is_some_and(|c| c.starts_with("SRV=")),
        "{h:?}"
    );

    // Prefix: the application's own cookie carries the backend, and loses it on the way in.
    let (_, h, _) = curl(lb.addr, "h", "/login", &[]);
    let who = header(&h, "x-backend").unwrap().to_string();
    let id = if who == "b1" { "one" } else { "two" };
    let cookie = header(&h, "set-cookie").unwrap().to_string();
    assert_eq!(cookie, format!("JSESSIONID={id}~{who}-session; Path=/"));
    for _ in 0..4 {
        let sent = format!("Cookie: JSESSIONID={id}~{who}-session");
        let (_, h, body) = curl(lb.addr, "h", "/headers", &["-H", &sent]);
        assert_eq!(header(&h, "x-backend"), Some(who.as_str()));
        assert!(
            body.contains(&format!("cookie: JSESSIONID={who}-session\n")),
            "{body}"
        );
    }
}

#[test]
fn a_pool_hashes_a_header_or_a_cookie() {
    let (b1, b2) = (TestBackend::start("b1"), TestBackend::start("b2"));
    let pool = |name: &str, balance: &str| {
        format!(
            "[[pool]]\nname = \"{name}\"\nbackends = [\"{}\", \"{}\"]\nbalance = {balance}\n",
            b1.addr, b2.addr
        )
    };
    let body = format!(
        "{}{}[[route]]\nhost = \"hdr.example\"\npool = \"hdr\"\n\n[[route]]\npool = \"ck\"\n",
        pool("hdr", "{ algorithm = \"header\", header = \"X-User\" }"),
        pool("ck", "{ algorithm = \"cookie\", cookie = \"uid\" }")
    );
    let lb = Floatlb::start(&body);
    for (host, field) in [("hdr.example", "X-User: "), ("other", "Cookie: a=b; uid=")] {
        let mut backends = std::collections::HashSet::new();
        for user in 0..12 {
            let h = format!("{field}user{user}");
            let first = who(lb.addr, host, "/", &["-H", &h]);
            for _ in 0..3 {
                assert_eq!(who(lb.addr, host, "/", &["-H", &h]), first, "{h}");
            }
            backends.insert(first);
        }
        assert_eq!(
            backends.len(),
            2,
            "{field}: the users spread over both backends"
        );
    }
}

#[test]
fn the_access_log_names_route_pool_and_backend_in_a_custom_format() {
    let (shop, www) = (TestBackend::start("shop"), TestBackend::start("www"));
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let body = format!(
        "[log]\naccess = \"custom\"\naccess-path = \"{}\"\nformat = \"{{method}} {{target}} {{status}} route={{route}} pool={{pool}} backend={{backend}} {{termination}}\"\n\n{}{}[[pool]]\nname = \"dead\"\nbackends = [\"127.0.0.1:{}\"]\n\n[[route]]\nname = \"shop\"\nhost = \"shop.example\"\npool = \"shop\"\n\n[[route]]\nname = \"gone\"\npath = \"/gone\"\ndeny = 410\n\n[[route]]\nname = \"down\"\npath = \"/down\"\npool = \"dead\"\n\n[[route]]\nname = \"rest\"\npool = \"www\"\n",
        log.display(),
        pool("shop", &shop),
        pool("www", &www),
        support::free_port()
    );
    let lb = Floatlb::start(&body);
    curl(lb.addr, "shop.example", "/cart?id=1", &[]);
    curl(lb.addr, "x", "/gone", &[]);
    curl(lb.addr, "x", "/", &[]);
    curl(lb.addr, "x", "/down", &[]);
    wait_for("four log lines", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.lines().count() == 4)
    });
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[..3],
        [
            format!(
                "GET /cart?id=1 200 route=shop pool=shop backend={} --",
                shop.addr
            )
            .as_str(),
            // The termination code: floatlb refused it in the request phase.
            "GET /gone 410 route=gone pool=- backend=- PR",
            format!("GET / 200 route=rest pool=www backend={} --", www.addr).as_str(),
        ]
    );
    // A backend that refuses connections: 502, or 503 once its health check
    // has marked it down; either way the backend side at connect.
    let (down_status, down_rest) = lines[3]["GET /down ".len()..].split_at(3);
    assert!(matches!(down_status, "502" | "503"), "{}", lines[3]);
    assert_eq!(down_rest, " route=down pool=dead backend=- SC");
    assert_eq!(
        metric(&lb, "floatlb_route_requests_total{route=\"shop\"}"),
        1.0
    );
    assert_eq!(
        metric(&lb, "floatlb_route_requests_total{route=\"gone\"}"),
        1.0
    );
    // The dashboard's route and pool panels query series that exist.
    let text = support::http_get(lb.admin, "/metrics").2;
    for name in support::dashboard_metric_names() {
        if name.starts_with("floatlb_route_") || name.starts_with("floatlb_pool_") {
            assert!(text.lines().any(|l| l.starts_with(&name)), "{name}");
        }
    }
}

/// Issue 28: several listeners, cleartext and TLS, each serving the routes
/// that name it (`listener`), with curl on each.
#[test]
fn several_listeners_each_serve_the_routes_that_name_them() {
    let (public, office) = (TestBackend::start("public"), TestBackend::start("office"));
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = support::make_cert(dir.path(), "c", &["a.test"], 2);
    let (office_port, secure_port, tls_port) = (
        support::free_port(),
        support::free_port(),
        support::free_port(),
    );
    // Floatlb::start writes the first [listen]; the further listeners are
    // [[listen]] tables, so the file is written here whole.
    let body = format!(
        r#"[tls]
address = "127.0.0.1:{tls_port}"
[[tls.certificate]]
cert = "{cert}"
key = "{key}"

{pools}
[[route]]
listener = ["office", "secure"]
pool = "office"

[[route]]
pool = "public"
"#,
        cert = cert.display(),
        key = key.display(),
        pools = pool("public", &public) + &pool("office", &office)
    );
    let lb = Floatlb::start_with_listeners(
        &body,
        &format!(
            "[[listen]]\nname = \"office\"\naddress = \"127.0.0.1:{office_port}\"\n\n[[listen]]\nname = \"secure\"\naddress = \"127.0.0.1:{secure_port}\"\ntls = true\n"
        ),
    );
    assert_eq!(who(lb.addr, "h", "/", &[]), "public");
    let office_addr: SocketAddr = format!("127.0.0.1:{office_port}").parse().unwrap();
    assert_eq!(who(office_addr, "h", "/", &[]), "office");
    let https = |port: u16, version: &str| {
        let (_, h, _) = support::https_get(port, "a.test", "/", &[version]);
        header(&h, "x-backend").unwrap_or("-").to_string()
    };
    // A [[listen]] with tls = true: TLS with the [tls] certificates, HTTP/2 by ALPN.
    assert_eq!(https(secure_port, "--http2"), "office");
    assert_eq!(https(secure_port, "--http1.1"), "office");
    // The [tls] address listener is named "tls": not in the route's list.
    assert_eq!(https(tls_port, "--http2"), "public");
    let (code, out, _) = floatlb_cmd(
        "route",
        &lb.config_path,
        &["--listener", "tls", "GET", "http://a.test/"],
    );
    assert_eq!(code, 0);
    assert!(
        out.contains("no match: it came in on listener 3 (not office (1), secure (2))"),
        "{out}"
    );
    assert!(out.contains("pool: public"), "{out}");
    // Routes name listeners by their place among the sockets held since the
    // start: a reload that changes them is refused, and the old file stays.
    let text = std::fs::read_to_string(&lb.config_path).unwrap();
    std::fs::write(&lb.config_path, text.replace("tls = true\n", "")).unwrap();
    lb.signal(libc::SIGHUP);
    wait_for("the refused reload", || {
        metric(&lb, "floatlb_config_reloads_total{result=\"failure\"}") == 1.0
    });
    assert!(
        lb.log().contains("change only at a restart"),
        "{}",
        lb.log()
    );
    assert_eq!(https(secure_port, "--http2"), "office");
}

/// The queue is the pool's: a slot freed on any of its backends serves the
/// request waiting first (HAProxy's backend queue), not only a slot on the
/// backend it would have picked.
#[test]
fn a_slot_freed_on_any_backend_of_the_pool_serves_the_queued_request() {
    let (b1, b2) = (TestBackend::start("b1"), TestBackend::start("b2"));
    let body = format!(
        "[[pool]]\nname = \"p\"\nqueue-timeout = \"10s\"\nbalance = {{ algorithm = \"first\" }}\n[[pool.backend]]\nname = \"b1\"\naddress = \"{}\"\nmaxconn = 1\n[[pool.backend]]\nname = \"b2\"\naddress = \"{}\"\nmaxconn = 1\n",
        b1.addr, b2.addr
    );
    let lb = Floatlb::start(&body);
    // `first`: the long request takes b1, the short one b2.
    let long = curl_later(lb.addr, "/slow?ms=3000");
    wait_for("b1 busy", || b1.requests() == 1);
    let short = curl_later(lb.addr, "/slow?ms=300");
    wait_for("b2 busy", || b2.requests() == 1);
    let (status, h, _) = curl(lb.addr, "h", "/", &[]);
    assert_eq!(status, 200);
    assert_eq!(
        header(&h, "x-backend"),
        Some("b2"),
        "served by the backend that freed first"
    );
    assert_eq!(short.join().unwrap().0, 200);
    assert_eq!(long.join().unwrap().0, 200);
    assert_eq!(metric(&lb, "floatlb_pool_queued_total{pool=\"p\"}"), 1.0);
}
