//! The same routing in three balancers (issue 28): one site list written as
//! HAProxy `acl` + `use_backend` rules, as nginx `server`/`location` blocks with
//! `map`s, and as floatlb `[[route]]` tables. The same requests (hosts, paths,
//! methods, headers, query strings) go through each, with curl, and every one
//! must reach the same pool in all of them, the pool the site list names.
//! The pools are one nginx on six ports, each answering `X-Pool: <pool>`.
//! Needs nginx, haproxy and curl (vm-lab/install-deps): skipped without them,
//! failing instead under FLOATLB_REQUIRE_NETNS=1 (CI).

mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{free_port, Floatlb};

const POOLS: [&str; 6] = ["www", "shop", "api", "static", "beta", "admin"];

/// How a rule looks at the path (the query is never part of it).
#[derive(Clone, Copy)]
enum PathMatch {
    Any,
    Exact(&'static str),
    Prefix(&'static str),
    /// The regex the balancers get, and a Rust function deciding it alike
    /// (the test has no regex engine of its own).
    Regex(&'static str, fn(&str) -> bool),
}

/// One rule of the site list; a request takes the first rule whose matchers all match.
struct Rule {
    name: &'static str,
    /// Exact names or `*.suffix` (any subdomain, not the suffix itself); empty = any host.
    hosts: &'static [&'static str],
    path: PathMatch,
    /// Empty = any method.
    methods: &'static [&'static str],
    /// A header that must be present (`None`) or equal a value.
    header: Option<(&'static str, Option<&'static str>)>,
    /// A query parameter that must equal a value.
    query: Option<(&'static str, &'static str)>,
    pool: &'static str,
}

const ANY: Rule = Rule {
    name: "",
    hosts: &[],
    path: PathMatch::Any,
    methods: &[],
    header: None,
    query: None,
    pool: "",
};

const SHOP_HOSTS: &[&str] = &["shop.example", "store.example"];

fn is_asset(path: &str) -> bool {
    [".css", ".js", ".png"].iter().any(|e| path.ends_with(e))
}

fn is_versioned(path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/v") else {
        return false;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0 && rest[digits..].starts_with('/')
}

/// The site list. On each host its rules run exact path, regexes, prefixes
/// (longest first), then the host's catch-all: the order in which nginx picks
/// a location (`=`, then the first matching `~`, then the longest prefix), so
/// nginx's most-specific choice and first-match order give the same answer.
/// Method, header and query conditions refine a rule after its host and path,
/// as nginx's `map`s do inside a location.
const SITE: &[Rule] = &[
    Rule {
        name: "api-v2",
        hosts: &["api.example"],
        query: Some(("v", "2")),
        pool: "beta",
        ..ANY
    },
    Rule {
        name: "api-write",
        hosts: &["api.example"],
        path: PathMatch::Prefix("/orders/"),
        methods: &["POST", "PUT", "DELETE"],
        pool: "admin",
        ..ANY
    },
    Rule {
        name: "api",
        hosts: &["api.example"],
        pool: "api",
        ..ANY
    },
    Rule {
        name: "shop-login",
        hosts: SHOP_HOSTS,
        path: PathMatch::Exact("/login"),
        methods: &["POST"],
        pool: "admin",
        ..ANY
    },
    Rule {
        name: "shop-assets",
        hosts: SHOP_HOSTS,
        path: PathMatch::Regex("[.](css|js|png)$", is_asset),
        pool: "static",
        ..ANY
    },
    Rule {
        name: "shop-cart-beta",
        hosts: SHOP_HOSTS,
        path: PathMatch::Prefix("/cart/"),
        header: Some(("x-env", Some("beta"))),
        pool: "beta",
        ..ANY
    },
    Rule {
        name: "shop",
        hosts: SHOP_HOSTS,
        pool: "shop",
        ..ANY
    },
    Rule {
        name: "wild-debug",
        hosts: &["*.example"],
        header: Some(("x-debug", None)),
        pool: "admin",
        ..ANY
    },
    Rule {
        name: "wild-versioned",
        hosts: &["*.example"],
        path: PathMatch::Regex("^/v[0-9]+/", is_versioned),
        pool: "api",
        ..ANY
    },
    Rule {
        name: "wild",
        hosts: &["*.example"],
        pool: "static",
        ..ANY
    },
    Rule {
        name: "default",
        pool: "www",
        ..ANY
    },
];

/// One request of the test set.
struct Req {
    method: &'static str,
    host: &'static str,
    /// Path and query, as sent.
    target: &'static str,
    headers: &'static [(&'static str, &'static str)],
}

impl Rule {
    fn matches(&self, r: &Req) -> bool {
        let host = r.host.split(':').next().unwrap().to_ascii_lowercase();
        let (path, query) = r.target.split_once('?').unwrap_or((r.target, ""));
        let host_ok = self.hosts.is_empty()
            || self.hosts.iter().any(|h| match h.strip_prefix("*.") {
                Some(suffix) => host.ends_with(&format!(".{suffix}")),
                None => host == *h,
            });
        let path_ok = match self.path {
            PathMatch::Any => true,
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) => path.starts_with(p),
            PathMatch::Regex(_, f) => f(path),
        };
        let method_ok = self.methods.is_empty() || self.methods.contains(&r.method);
        let header_ok = self.header.is_none_or(|(name, want)| {
            r.headers
                .iter()
                .any(|(k, v)| k.eq_ignore_ascii_case(name) && want.is_none_or(|w| *v == w))
        });
        let query_ok = self.query.is_none_or(|(name, want)| {
            query
                .split('&')
                .find_map(|kv| kv.split_once('=').filter(|(k, _)| *k == name))
                .is_some_and(|(_, v)| v == want)
        });
        host_ok && path_ok && method_ok && header_ok && query_ok
    }
}

/// The rule the site list picks for `r`.
fn expected(r: &Req) -> &'static Rule {
    SITE.iter().find(|rule| rule.matches(r)).unwrap()
}

// Hosts with ports and in capitals (matching ignores both), subdomains one and
// two levels deep, a name that only ends like one (`xapi.example`), and the bare
// suffix, which `*.example` does not match. No trailing dot: HAProxy compares
// the name as sent, nginx drops the dot.
const HOSTS: &[&str] = &[
    "api.example",
    "API.Example:8080",
    "xapi.example",
    "shop.example",
    "store.example:80",
    "www.shop.example",
    "a.b.example",
    "example",
    "other.test",
];

// No `%`, `//`, `.` segments or repeated query names: nginx matches locations on
// the normalized path and would see those differently (by design, not a routing
// rule), and `$arg_v` takes the first `v` with its name compared case-blind.
const TARGETS: &[&str] = &[
    "/",
    "/login",
    "/login/",
    "/orders",
    "/orders/7",
    "/orders/7?v=2",
    "/orders?x=1&v=2",
    "/cart",
    "/cart/item?v=20",
    "/cart/style.css",
    "/img/logo.png?v=2",
    "/v2/items",
    "/v10",
    "/vx/items",
];

// Header values are never empty and hold no comma: nginx cannot tell an empty
// header from a missing one, and HAProxy's `hdr()` splits values at commas.
type Variant = (&'static str, &'static [(&'static str, &'static str)]);
const VARIANTS: &[Variant] = &[
    ("GET", &[]),
    ("HEAD", &[]),
    ("POST", &[]),
    ("PUT", &[("x-env", "beta")]),
    ("DELETE", &[("X-Debug", "1")]),
    ("GET", &[("X-ENV", "beta")]),
    ("GET", &[("x-env", "Beta"), ("x-debug", "yes")]),
];

/// Every host × target × variant (9 × 14 × 7 = 882 distinct requests), in a fixed order.
fn requests() -> Vec<Req> {
    let mut out = Vec::new();
    for host in HOSTS {
        for target in TARGETS {
            for (method, headers) in VARIANTS {
                out.push(Req {
                    method,
                    host,
                    target,
                    headers,
                });
            }
        }
    }
    out
}

/// Each pool a `server` of one nginx on its own port, naming itself in `X-Pool`.
fn pools_nginx(dir: &Path, ports: &BTreeMap<&str, u16>) -> String {
    let mut servers = String::new();
    for (pool, port) in ports {
        writeln!(
            servers,
            "    server {{ listen 127.0.0.1:{port}; add_header X-Pool {pool} always; \
             return 200 \"{pool}\\n\"; }}"
        )
        .unwrap();
    }
    nginx_main(dir, "pools", &servers)
}

/// The frame around an nginx `http` block: foreground, one process, everything
/// it writes inside `dir`.
fn nginx_main(dir: &Path, name: &str, http: &str) -> String {
    let d = dir.display();
    format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/{name}.pid;\n\
         error_log stderr warn;\nevents {{ worker_connections 256; }}\nhttp {{\n\
         \x20   access_log off;\n\
         \x20   client_body_temp_path {d}/{name}-body;\n\
         \x20   proxy_temp_path {d}/{name}-proxy;\n\
         \x20   fastcgi_temp_path {d}/{name}-fastcgi;\n\
         \x20   uwsgi_temp_path {d}/{name}-uwsgi;\n\
         \x20   scgi_temp_path {d}/{name}-scgi;\n{http}}}\n"
    )
}

/// The site list for nginx: a `server` per host group, a `location` per path
/// rule, and a chain of `map`s inside a location for the method, header and
/// query rules, earlier rules first (each map's `default` is the next rule).
/// Map keys are regexes where a plain string would compare case-blind. A
/// prefix location ending in `/` answers its bare form (`/orders`) with a 301
/// to `/orders/` when it proxies; an exact location for the bare form, as
/// nginx's documentation advises, routes it as the other balancers do.
const NGINX_SITE: &str = r#"
    upstream www    { server 127.0.0.1:@www@; }
    upstream shop   { server 127.0.0.1:@shop@; }
    upstream api    { server 127.0.0.1:@api@; }
    upstream static { server 127.0.0.1:@static@; }
    upstream beta   { server 127.0.0.1:@beta@; }
    upstream admin  { server 127.0.0.1:@admin@; }

    # api.example: api-v2, then api-write on /orders/, then api.
    map $request_method $api_orders_write { "~^(POST|PUT|DELETE)$" admin; default api; }
    map $arg_v $api_orders { "~^2$" beta; default $api_orders_write; }
    map $arg_v $api_root   { "~^2$" beta; default api; }
    server {
        listen 127.0.0.1:@lb@;
        server_name api.example;
        location /orders/       { proxy_pass http://$api_orders; }
        location = /orders      { proxy_pass http://$api_root; }
        location /              { proxy_pass http://$api_root; }
    }

    # shop.example, store.example: shop-login (= /login), shop-assets (~),
    # shop-cart-beta (/cart/), shop.
    map $request_method $shop_login { "~^POST$" admin; default shop; }
    map $http_x_env $shop_cart { "~^beta$" beta; default shop; }
    server {
        listen 127.0.0.1:@lb@;
        server_name shop.example store.example;
        location = /login              { proxy_pass http://$shop_login; }
        location ~ "[.](css|js|png)$"  { proxy_pass http://static; }
        location /cart/                { proxy_pass http://$shop_cart; }
        location = /cart               { proxy_pass http://shop; }
        location /                     { proxy_pass http://shop; }
    }

    # *.example: wild-debug (in both locations, as it comes first), wild-versioned, wild.
    map $http_x_debug $wild_versioned { "" api; default admin; }
    map $http_x_debug $wild_root      { "" static; default admin; }
    server {
        listen 127.0.0.1:@lb@;
        server_name *.example;
        location ~ "^/v[0-9]+/" { proxy_pass http://$wild_versioned; }
        location /              { proxy_pass http://$wild_root; }
    }

    # Any other host: default.
    server {
        listen 127.0.0.1:@lb@ default_server;
        server_name _;
        location / { proxy_pass http://www; }
    }
"#;

/// The site list for HAProxy: one `acl` per matcher, the rules as `use_backend`
/// lines in the site list's order (HAProxy takes the first that holds).
const HAPROXY: &str = r#"
global
    maxconn 256

defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s

frontend routes
    bind 127.0.0.1:@lb@
    # The Host header without its port; -i: names compare case-blind.
    acl host_api   req.hdr(host),field(1,:) -i api.example
    acl host_shop  req.hdr(host),field(1,:) -i shop.example store.example
    acl host_wild  req.hdr(host),field(1,:) -i -m end .example
    acl v2         url_param(v) -m str 2
    acl orders     path_beg /orders/
    acl write      method POST PUT DELETE
    acl login      path /login
    acl post       method POST
    acl assets     path_reg [.](css|js|png)$
    acl cart       path_beg /cart/
    # fhdr: the whole value (hdr would split it at commas).
    acl env_beta   req.fhdr(x-env) -m str beta
    acl debug      req.fhdr(x-debug) -m found
    acl versioned  path_reg ^/v[0-9]+/
    use_backend beta   if host_api v2
    use_backend admin  if host_api orders write
    use_backend api    if host_api
    use_backend admin  if host_shop login post
    use_backend static if host_shop assets
    use_backend beta   if host_shop cart env_beta
    use_backend shop   if host_shop
    use_backend admin  if host_wild debug
    use_backend api    if host_wild versioned
    use_backend static if host_wild
    default_backend www

backend www
    server www 127.0.0.1:@www@
backend shop
    server shop 127.0.0.1:@shop@
backend api
    server api 127.0.0.1:@api@
backend static
    server static 127.0.0.1:@static@
backend beta
    server beta 127.0.0.1:@beta@
backend admin
    server admin 127.0.0.1:@admin@
"#;

fn fill(template: &str, lb: u16, ports: &BTreeMap<&str, u16>) -> String {
    let mut s = template.replace("@lb@", &lb.to_string());
    for (pool, port) in ports {
        s = s.replace(&format!("@{pool}@"), &port.to_string());
    }
    s
}

/// The site list for floatlb, written from `SITE` itself: floatlb's rules are
/// first-match in file order, like the list.
fn floatlb_site(ports: &BTreeMap<&str, u16>) -> String {
    let list = |xs: &[&str]| format!("{xs:?}");
    let mut s = String::new();
    for (pool, port) in ports {
        writeln!(
            s,
            "[[pool]]\nname = {pool:?}\nbackends = [\"127.0.0.1:{port}\"]\n"
        )
        .unwrap();
    }
    for rule in SITE {
        writeln!(s, "[[route]]\nname = {:?}", rule.name).unwrap();
        if !rule.hosts.is_empty() {
            writeln!(s, "host = {}", list(rule.hosts)).unwrap();
        }
        match rule.path {
            PathMatch::Any => {}
            PathMatch::Exact(p) => writeln!(s, "path = {p:?}").unwrap(),
            PathMatch::Prefix(p) => writeln!(s, "path-prefix = {p:?}").unwrap(),
            PathMatch::Regex(re, _) => writeln!(s, "path-regex = {re:?}").unwrap(),
        }
        if !rule.methods.is_empty() {
            writeln!(s, "method = {}", list(rule.methods)).unwrap();
        }
        match rule.header {
            None => {}
            Some((name, None)) => writeln!(s, "headers = [{{ name = {name:?} }}]").unwrap(),
            Some((name, Some(v))) => {
                writeln!(s, "headers = [{{ name = {name:?}, equals = {v:?} }}]").unwrap()
            }
        }
        if let Some((name, v)) = rule.query {
            writeln!(s, "query = [{{ name = {name:?}, equals = {v:?} }}]").unwrap();
        }
        writeln!(s, "pool = {:?}\n", rule.pool).unwrap();
    }
    s
}

/// The full path of `tool`, if it is installed.
fn which(tool: &str) -> Option<String> {
    let out = Command::new("sh")
        .args([
            "-c",
            &format!("PATH=$PATH:/usr/sbin:/sbin command -v {tool}"),
        ])
        .output()
        .ok()?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !path.is_empty()).then_some(path)
}

/// A peer balancer or the pools' web server, started by the test; killed on drop.
struct Peer {
    child: Child,
    log: PathBuf,
}

impl Peer {
    /// Spawns `cmd` with its output in `log` and waits (10 s at most) until
    /// every port in `ports` accepts.
    fn start(cmd: &mut Command, log: PathBuf, ports: &[u16]) -> Peer {
        let out = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let mut peer = Peer { child, log };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if ports
                .iter()
                .all(|p| TcpStream::connect(("127.0.0.1", *p)).is_ok())
            {
                return peer;
            }
            if let Ok(Some(status)) = peer.child.try_wait() {
                panic!("{cmd:?} exited ({status}):\n{}", peer.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "{cmd:?} is not listening on {ports:?} after 10 s:\n{}",
            peer.log()
        );
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `reqs` through the balancer on `port` with one curl (one keep-alive
/// connection); for each, (status, the `X-Pool` that answered).
fn send_all(curl: &str, dir: &Path, name: &str, port: u16, reqs: &[Req]) -> Vec<(u16, String)> {
    let ops: Vec<String> = reqs
        .iter()
        .map(|r| {
            let mut op = format!(
                "url = \"http://127.0.0.1:{port}{}\"\nheader = \"Host: {}\"\n",
                r.target, r.host
            );
            for (k, v) in r.headers {
                writeln!(op, "header = \"{k}: {v}\"").unwrap();
            }
            match r.method {
                "GET" => {}
                "HEAD" => op.push_str("head\n"),
                m => writeln!(op, "request = \"{m}\"").unwrap(),
            }
            op + "output = \"/dev/null\"\nmax-time = 5\nsilent\n\
                  write-out = \"%{http_code} %header{x-pool}\\n\"\n"
        })
        .collect();
    let script = dir.join(format!("{name}.curl"));
    std::fs::write(&script, ops.join("next\n")).unwrap();
    let out_path = dir.join(format!("{name}.out"));
    let mut child = Command::new(curl)
        .arg("-K")
        .arg(&script)
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{name}: curl did not finish {} requests in 30 s",
                reqs.len()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = std::fs::read_to_string(&out_path).unwrap();
    let answers: Vec<(u16, String)> = out
        .lines()
        .map(|l| {
            let (code, pool) = l.split_once(' ').unwrap_or((l, ""));
            (code.parse().unwrap_or(0), pool.trim().to_string())
        })
        .collect();
    assert_eq!(answers.len(), reqs.len(), "{name}: curl wrote\n{out}");
    answers
}

fn describe(r: &Req) -> String {
    let headers: Vec<String> = r.headers.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    format!(
        "{} {} (Host: {}) [{}]",
        r.method,
        r.target,
        r.host,
        headers.join(", ")
    )
}

#[test]
fn same_routing_in_three_balancers() {
    let test = "same_routing_in_three_balancers";
    let tools: Vec<(&str, Option<String>)> = ["nginx", "haproxy", "curl"]
        .into_iter()
        .map(|t| (t, which(t)))
        .collect();
    let missing: Vec<&str> = tools
        .iter()
        .filter(|t| t.1.is_none())
        .map(|t| t.0)
        .collect();
    if !missing.is_empty() {
        let why = format!("needs {missing:?} (run vm-lab/install-deps)");
        if std::env::var("FLOATLB_REQUIRE_NETNS").as_deref() == Ok("1") {
            panic!("{test}: {why} (FLOATLB_REQUIRE_NETNS=1)");
        }
        eprintln!("SKIPPED {test}: {why}");
        return;
    }
    let [nginx, haproxy, curl] = [0, 1, 2].map(|i| tools[i].1.clone().unwrap());

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ports: BTreeMap<&str, u16> = POOLS.iter().map(|p| (*p, free_port())).collect();
    let pool_ports: Vec<u16> = ports.values().copied().collect();

    std::fs::write(d.join("pools.conf"), pools_nginx(d, &ports)).unwrap();
    let _pools = Peer::start(
        Command::new(&nginx)
            .arg("-c")
            .arg(d.join("pools.conf"))
            .arg("-p")
            .arg(d)
            .args(["-e", "stderr"]),
        d.join("pools.log"),
        &pool_ports,
    );

    let nginx_port = free_port();
    let nginx_conf = nginx_main(d, "lb", &fill(NGINX_SITE, nginx_port, &ports));
    std::fs::write(d.join("lb.conf"), nginx_conf).unwrap();
    let _nginx = Peer::start(
        Command::new(&nginx)
            .arg("-c")
            .arg(d.join("lb.conf"))
            .arg("-p")
            .arg(d)
            .args(["-e", "stderr"]),
        d.join("lb.log"),
        &[nginx_port],
    );

    let haproxy_port = free_port();
    std::fs::write(d.join("haproxy.cfg"), fill(HAPROXY, haproxy_port, &ports)).unwrap();
    let _haproxy = Peer::start(
        Command::new(&haproxy)
            .arg("-f")
            .arg(d.join("haproxy.cfg"))
            .arg("-db"),
        d.join("haproxy.log"),
        &[haproxy_port],
    );

    let site = floatlb_site(&ports);
    std::fs::write(d.join("floatlb.toml"), &site).unwrap();
    let floatlb = Floatlb::start(&site);

    let balancers = [
        ("haproxy", haproxy_port),
        ("nginx", nginx_port),
        ("floatlb", floatlb.addr.port()),
    ];

    let reqs = requests();
    assert!(reqs.len() >= 200, "{}", reqs.len());
    let answers: Vec<Vec<(u16, String)>> = balancers
        .iter()
        .map(|(name, port)| send_all(&curl, d, name, *port, &reqs))
        .collect();

    let mut wrong = Vec::new();
    let mut by_pool: BTreeMap<&str, usize> = BTreeMap::new();
    let mut by_rule: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, r) in reqs.iter().enumerate() {
        let rule = expected(r);
        *by_pool.entry(rule.pool).or_default() += 1;
        *by_rule.entry(rule.name).or_default() += 1;
        let got: Vec<String> = balancers
            .iter()
            .zip(&answers)
            .map(|((name, _), a)| format!("{name} {} {}", a[i].0, a[i].1))
            .collect();
        if answers.iter().any(|a| a[i] != (200, rule.pool.to_string())) {
            wrong.push(format!(
                "{}: site list says {} ({}); {}",
                describe(r),
                rule.pool,
                rule.name,
                got.join(", ")
            ));
        }
    }

    // Pool -> requests, as the site list counts them and as each balancer answered.
    let names = balancers.map(|b| b.0);
    println!("{} requests through {names:?}", reqs.len());
    println!("| pool | site list | {} |", names.join(" | "));
    println!("|---|---|{}", "---|".repeat(names.len()));
    for (pool, n) in &by_pool {
        let got: Vec<String> = answers
            .iter()
            .map(|a| a.iter().filter(|(_, p)| p == pool).count().to_string())
            .collect();
        println!("| {pool} | {n} | {} |", got.join(" | "));
    }
    println!("| rule | requests |\n|---|---|");
    for rule in SITE {
        println!(
            "| {} | {} |",
            rule.name,
            by_rule.get(rule.name).unwrap_or(&0)
        );
    }
    assert!(
        wrong.is_empty(),
        "{} of {} requests went elsewhere:\n{}",
        wrong.len(),
        reqs.len(),
        wrong.join("\n")
    );
    // Every rule decided some requests, so each matcher was put to the test.
    for rule in SITE {
        assert!(
            by_rule.contains_key(rule.name),
            "no request reached rule {}",
            rule.name
        );
    }
}
