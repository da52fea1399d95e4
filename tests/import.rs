//! `floatlb import` run as a user runs it, over the files in `tests/data/import/` (written
//! here; they use the directives HAProxy and keepalived users write): the output must pass
//! `floatlb check`, carry the pools, routes and VRRP instances the files describe, and every
//! directive that was not imported must be reported with its file and line, on standard
//! error and as a comment in the output. Exit codes: 0 all imported, 1 unreadable, 2 partial.
//! Then the lab's own anchor pair (the HAProxy and keepalived files `vm-lab/lab` writes)
//! is run, imported, and the floatlb pair started in its place must give the same answers.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::Duration;

use support::netns::{get_status_from, netns_available, Lab};
use support::vrrp_lab::{serial, V4};
use support::TestBackend;

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/import")
}

/// A copy of the data folder (relative paths in the files resolve there), with the TLS
/// certificate `haproxy.cfg`'s `crt site.pem` names, made with `openssl req`.
fn workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&data(), dir.path());
    let d = dir.path();
    let o = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args([
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
            "-days",
            "30",
            "-subj",
            "/CN=shop.example",
        ])
        .args(["-addext", "subjectAltName=DNS:shop.example"])
        .current_dir(d)
        .output()
        .expect("openssl is missing: run vm-lab/install-deps");
    assert!(o.status.success(), "{}", text(&o));
    let pem = [
        std::fs::read(d.join("cert.pem")).unwrap(),
        std::fs::read(d.join("key.pem")).unwrap(),
    ]
    .concat();
    std::fs::write(d.join("site.pem"), pem).unwrap();
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn floatlb(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_floatlb"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

/// `floatlb check` on `file` in `dir` passes.
fn assert_checks(dir: &Path, file: &str) {
    let o = floatlb(dir, &["check", "-c", file]);
    let toml = std::fs::read_to_string(dir.join(file)).unwrap();
    assert!(
        o.status.success(),
        "floatlb check refused the import:\n{}\n{toml}",
        text(&o)
    );
}

/// Each `file:line: directive` is among the problems on standard error and in the output.
fn assert_reported(stderr: &str, toml: &str, expected: &[&str]) {
    for e in expected {
        assert!(
            stderr.lines().any(|l| l.starts_with(e)),
            "{e:?} not reported on stderr:\n{stderr}"
        );
        assert!(
            toml.lines()
                .any(|l| l.starts_with(&format!("# not imported: {e}"))),
            "{e:?} not left as a comment in the output:\n{toml}"
        );
    }
}

/// The two files together: listeners, TLS, pools, routes from acl + use_backend, VRRP
/// from the instances (the included file's too), and each directive floatlb cannot express
/// reported at its line.
#[test]
fn haproxy_and_keepalived_files_import_into_a_file_check_accepts() {
    let dir = workdir();
    let d = dir.path();
    let o = floatlb(
        d,
        &[
            "import",
            "--haproxy",
            "haproxy.cfg",
            "--keepalived",
            "keepalived.conf",
            "-o",
            "out.toml",
        ],
    );
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(
        o.status.code(),
        Some(2),
        "directives were left out: exit 2\n{stderr}"
    );
    assert_checks(d, "out.toml");
    let toml = std::fs::read_to_string(d.join("out.toml")).unwrap();
    for want in [
        // bind lines, the first ssl one as [tls], the https redirect
        "address = \"198.18.0.100:80\"\nmaxconn = 5000",
        "[tls]\naddress = \"198.18.0.100:443\"\nalpn = [\"h2\", \"http/1.1\"]\nredirect-http = true",
        "cert = \"site.pem\"\nkey = \"site.pem\"",
        // defaults' timeouts, forwardfor, httplog
        "[timeouts]\nclient = \"20s\"\nclient-header = \"8s\"\nidle = \"30s\"",
        "x-forwarded-for = true",
        "access = \"combined\"",
        // backends with their balance, checks, cookie, queue
        "name = \"shop\"\nbalance = { algorithm = \"least-conn\" }\nhealth = { method = \"GET\", path = \"/healthz\", expect-status = \"200\"",
        "cookie = { name = \"SRV\", attributes = \"HttpOnly\" }",
        "queue-timeout = \"4s\"",
        "name = \"shop1\"\nweight = 10\nmaxconn = 200\ncookie = \"s1\"\naddress = \"198.18.1.11:80\"",
        "balance = { algorithm = \"uri\", consistent = true }",
        "health = { method = \"HEAD\", path = \"/ping\", host = \"api.example\", expect-body = \"pong\"",
        // acl + use_backend, || as two routes, monitor-uri, deny, redirect, header edits
        "host = [\"api.example\"]\npath-prefix = [\"/v1/\"]\nlistener = [\"www\", \"tls\"]\npool = \"api\"",
        "host = [\"shop.example\", \"store.example\"]\npath-regex = \"(?:\\\\.css|\\\\.js|\\\\.png)$\"",
        "host = [\"api.example\"]\npath-regex = \"(?:\\\\.css|\\\\.js|\\\\.png)$\"",
        "path = [\"/haproxy-alive\"]\nlistener = [\"www\", \"tls\"]\nrespond = { status = 200 }",
        "path-prefix = [\"/private/\"]\nlistener = [\"www\", \"tls\"]\ndeny = 403",
        "redirect = { location = \"https://shop.example/\", status = 302 }",
        "request-headers = { set = { X-Site = \"www\" }, remove = [\"X-Debug\"] }",
        "response-headers = { set = { X-Frame-Options = \"DENY\", Cache-Control = \"max-age=3600\" } }",
        "error-pages = { 503 = \"errors/503.http\" }",
        // keepalived: instances, sync group, tracking, notify, the included file's
        // instance split by family (two VMACs)
        "name = \"WEB_4\"\ninterface = \"lo\"\nvrid = 51\npriority = 150\nadvert-interval = \"100ms\"\npreempt-delay = \"5s\"\nunicast-peers = [\"198.18.0.2\"]\nnotify-master = \"/usr/bin/logger -t keepalived became master\"\nnotify-keepalived = \"/usr/bin/logger -t keepalived\"\ngarp-count = 3\ngroup = \"web\"\nvirtual-addresses = [\"198.18.0.100/24\", \"198.18.0.101/24\"]",
        "[[vrrp.track-script]]\nname = \"chk_proxy\"\ncommand = \"/usr/bin/curl -sf http://127.0.0.1/healthz\"\ninterval = \"2s\"\ntimeout = \"1s\"\nrise = 2\nfall = 3\nweight = -30",
        "[[vrrp.track-interface]]\nname = \"lo\"\nweight = 20",
        "vrid = 52\npriority = 150\nadvert-interval = \"1s\"\npreempt = false\nnotify-backup = \"/usr/bin/logger -t keepalived became backup\"\ngroup = \"web\"\nvirtual-addresses = [\"2001:2::100/64\"]",
        "name = \"API\"\ninterface = \"lo\"\nvrid = 61\npriority = 100\nuse-vmac = true\ngroup = \"API\"\nvirtual-addresses = [\"198.18.0.110/24\"]",
        "name = \"API-v6\"\ninterface = \"lo\"\nvrid = 61\npriority = 100\nuse-vmac = true\ngroup = \"API\"\nvirtual-addresses = [\"2001:2::110/64\"]\nvmac-interface = \"vrrp6.61\"",
    ] {
        assert!(toml.contains(want), "missing {want:?} in\n{toml}");
    }
    assert_reported(
        &stderr,
        &toml,
        &[
            "haproxy.cfg:4: daemon:",
            "haproxy.cfg:11: option dontlognull:",
            "haproxy.cfg:34: http-request deny deny_status 403 if { path_beg /admin/ } !office: a negated ACL",
            "haproxy.cfg:40: http-request add-header X-Id %[uuid]:",
            "haproxy.cfg:57: server shop3 backup:",
            "keepalived.conf:3: router_id lb1:",
            "keepalived.conf:31: authentication { ... }: VRRPv3 (RFC 5798) has no authentication",
            "keepalived.conf:40: 198.18.0.101/24 label lo:1:",
            "keepalived.conf:64: smtp_alert:",
            "keepalived.conf:69: virtual_server 198.18.0.100 80 { ... }: LVS",
        ],
    );
    // The keys other parts of floatlb add: written when this build's check takes them,
    // reported as not supported yet otherwise.
    let keys = floatlb::import::Keys::CURRENT;
    if keys.pool_tls && keys.pool_send_proxy {
        assert!(
            toml.contains("send-proxy = \"v2\"\ntls = { verify = true, ca = \"cert.pem\", server-name = \"secure.example\" }"),
            "{toml}"
        );
        assert_reported(
            &stderr,
            &toml,
            &["haproxy.cfg:72: server api1 (ssl, send-proxy, proto h2): floatlb sets TLS"],
        );
    } else {
        assert_reported(
            &stderr,
            &toml,
            &[
                "haproxy.cfg:72: server api1 ssl: TLS to backends: not supported yet",
                "haproxy.cfg:73: server api2 send-proxy-v2: PROXY protocol to backends: not supported yet",
                "haproxy.cfg:88: server sec1 send-proxy-v2:",
            ],
        );
    }
    if keys.listen_mode_tcp {
        for want in [
            "name = \"db\"\naddress = \"198.18.0.100:5432\"\nmode = \"tcp\"\npool = \"db\"",
            "name = \"tls-passthrough\"\naddress = \"198.18.0.100:8443\"\nmode = \"tcp\"\npool = \"secure-tcp\"\nsni = { \"secure.example\" = \"secure-tcp\" }",
        ] {
            assert!(toml.contains(want), "missing {want:?} in\n{toml}");
        }
    } else {
        assert_reported(
            &stderr,
            &toml,
            &[
                "haproxy.cfg:82: listen db: mode tcp",
                "haproxy.cfg:91: frontend tls-passthrough: mode tcp",
            ],
        );
    }
    if keys.backend_names {
        assert!(
            toml.contains("name = \"beta1\"\naddress = \"beta.internal:80\""),
            "{toml}"
        );
    } else {
        assert_reported(
            &stderr,
            &toml,
            &["haproxy.cfg:76: server beta1 beta.internal:80:"],
        );
    }
    // Problems from the included file carry its name.
    assert!(
        stderr.contains("keepalived.d/api.conf:11: unicast_src_ip 198.18.0.1:"),
        "{stderr}"
    );
    // Every problem line is file:line: directive: reason, and the count adds up.
    let problems: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("floatlb import:"))
        .collect();
    for p in &problems {
        let mut parts = p.splitn(3, ':');
        let (file, line) = (parts.next().unwrap(), parts.next().unwrap());
        assert!(file.ends_with(".cfg") || file.ends_with(".conf"), "{p}");
        assert!(line.parse::<usize>().is_ok(), "{p}");
    }
    let summary = stderr.lines().last().unwrap();
    assert!(
        summary.ends_with(&format!(", {} not imported", problems.len())),
        "{summary}"
    );
    assert_eq!(
        toml.matches("\n# not imported: ").count(),
        problems.len(),
        "one comment per problem:\n{toml}"
    );
}

/// `--haproxy DIR` reads the folder's `*.cfg` in name order, as `haproxy -f DIR`: the
/// `defaults` of the first file hold for the second's proxies. Everything maps: exit 0,
/// and the output goes to standard output without `-o`.
#[test]
fn a_folder_is_read_in_name_order_and_a_full_import_exits_0() {
    let dir = workdir();
    let d = dir.path();
    let o = floatlb(d, &["import", "--haproxy", "haproxy.d"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let toml = String::from_utf8(o.stdout).unwrap();
    std::fs::write(d.join("dir.toml"), &toml).unwrap();
    assert_checks(d, "dir.toml");
    for want in [
        "address = \"0.0.0.0:8080\"",
        "connect = \"2s\"",
        "host = [\"blog.example\"]\npool = \"blog\"",
        "name = \"www\"\nbalance = { algorithm = \"source\" }",
        "name = \"site-2\"\npool = \"www\"",
        "x-forwarded-for = true",
    ] {
        assert!(toml.contains(want), "missing {want:?} in\n{toml}");
    }
    assert!(!toml.contains("# not imported"), "{toml}");
}

/// The pool `floatlb route`'s reasoning ends on for one request to the file's snapshot.
fn pool_for(
    snap: &floatlb::proxy::state::Snapshot,
    method: &str,
    host: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> String {
    let mut fields = vec![("Host".to_string(), host.to_string())];
    fields.extend(headers.iter().map(|(n, v)| (n.to_string(), v.to_string())));
    let lines = floatlb::proxy::dispatch::explain(
        snap,
        method,
        target,
        &fields,
        "198.18.0.9".parse().unwrap(),
        0,
    )
    .unwrap();
    lines
        .iter()
        .find_map(|l| l.strip_prefix("pool: "))
        .unwrap_or_else(|| panic!("no pool for {method} {host}{target}: {lines:?}"))
        .to_string()
}

/// The site list `tests/routes_peers.rs` sends through HAProxy, nginx and floatlb (its
/// HAProxy form, `routes.cfg`) is imported and must route every request of a grid of
/// hosts (ports, capitals, subdomains, look-alikes), paths, methods, queries and headers
/// to the pool floatlb's hand-written form (`routes.toml`) does: ACL host, path, regex,
/// method, query and header matchers, ANDed conditions and first-match order.
#[test]
fn the_routes_test_site_list_imported_routes_as_written_by_hand() {
    let dir = workdir();
    let d = dir.path();
    let o = floatlb(
        d,
        &["import", "--haproxy", "routes.cfg", "-o", "imported.toml"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let load = |f: &str| {
        let cfg = floatlb::config::load_without_tls_files(&d.join(f)).unwrap();
        floatlb::proxy::state::Snapshot::build(cfg, None)
    };
    let (imported, by_hand) = (load("imported.toml"), load("routes.toml"));
    let hosts = [
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
    let targets = [
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
    let variants: [(&str, &[(&str, &str)]); 7] = [
        ("GET", &[]),
        ("HEAD", &[]),
        ("POST", &[]),
        ("PUT", &[("x-env", "beta")]),
        ("DELETE", &[("X-Debug", "1")]),
        ("GET", &[("X-ENV", "beta")]),
        ("GET", &[("x-env", "Beta"), ("x-debug", "yes")]),
    ];
    let mut pools = std::collections::BTreeMap::new();
    for host in hosts {
        for target in targets {
            for (method, headers) in variants {
                let want = pool_for(&by_hand, method, host, target, headers);
                let got = pool_for(&imported, method, host, target, headers);
                assert_eq!(got, want, "{method} {host}{target} {headers:?}");
                *pools.entry(want).or_insert(0) += 1;
            }
        }
    }
    // Every pool is reached: the grid tells the rules apart.
    assert_eq!(pools.len(), 6, "{pools:?}");
}

/// A file that cannot be read: exit 1, nothing written.
#[test]
fn an_unreadable_file_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let o = floatlb(
        dir.path(),
        &[
            "import",
            "--keepalived",
            "nonexistent.conf",
            "-o",
            "out.toml",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("nonexistent.conf"), "{}", text(&o));
    assert!(!dir.path().join("out.toml").exists());
}

/// The anchor pair's files for `lb` as `vm-lab/lab` writes them (`haproxy_config`,
/// `keepalived_config`; `--webs 2 --workers 1 --advert 100ms`, the lab's 198.18.0.0/24).
fn lab_anchor_files(lb: &str, priority: u8) -> (String, String) {
    let mut h =
        String::from("global\n    maxconn 8000\n    nbthread 1\n\ndefaults\n    mode http\n");
    h += "    timeout connect 2s\n    timeout client 60s\n    timeout server 30s\n";
    h += "    timeout http-request 10s\n    timeout http-keep-alive 60s\n";
    h += "    option http-keep-alive\n    option forwardfor\n    retries 3\n    option redispatch\n\n";
    h += "frontend fe\n    bind 0.0.0.0:80\n    default_backend be\n\nbackend be\n    balance roundrobin\n    option httpchk GET /\n";
    for i in 1..=2 {
        h += &format!(
            "    server web{i} 198.18.0.{}:80 check inter 1s fall 3 rise 2\n",
            10 + i
        );
    }
    let k = format!(
        "global_defs {{\n    vrrp_version 3\n    router_id {lb}\n}}\nvrrp_instance VI_51 {{\n    state BACKUP\n    interface eth0\n    virtual_router_id 51\n    priority {priority}\n    advert_int 0.1\n    virtual_ipaddress {{\n        198.18.0.100/24\n    }}\n}}\n"
    );
    (h, k)
}

/// A process in a lab host, stopped with SIGTERM on drop (keepalived and floatlb take
/// their VIP away on the way out), then killed if it lingers.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        // SAFETY: a signal to a process this test started.
        unsafe {
            libc::kill(self.0.id() as i32, libc::SIGTERM);
        }
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_in(lab: &Lab, host: &str, args: &[&str], log: &Path) -> Proc {
    let child = lab
        .exec(host)
        .args(args)
        .stdout(std::fs::File::create(log).unwrap())
        .stderr(std::fs::File::create(log.with_extension("err")).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e} (vm-lab/install-deps installs it)", args[0]));
    Proc(child)
}

/// What the client sees of a pair: which lb holds the VIP, the backends of 20 requests
/// through it, and the same after lb1's link is cut (the node-down drill).
#[derive(Debug, PartialEq)]
struct Seen {
    holder: (bool, bool),
    answers: Vec<(u16, String)>,
    holder_after_drill: (bool, bool),
    answers_after_drill: Vec<(u16, String)>,
}

fn observe(lab: &Lab, what: &str) -> Seen {
    let vip = V4.vip_addr();
    let requests = || -> Vec<(u16, String)> {
        let mut a: Vec<(u16, String)> = (0..20)
            .map(|_| get_status_from(lab, "client", vip, "/"))
            .collect();
        a.sort();
        a
    };
    lab.wait_for(
        &format!("{what}: lb1 holds the VIP"),
        Duration::from_secs(10),
        || V4.holders(lab) == (true, false),
    );
    lab.wait_for(
        &format!("{what}: both backends answer through the VIP"),
        Duration::from_secs(10),
        || {
            let a = requests();
            a.iter().all(|(s, _)| *s == 200) && a.iter().any(|(_, b)| b == "web2")
        },
    );
    let holder = V4.holders(lab);
    let answers = requests();
    lab.link("lb1", false);
    lab.wait_for(
        &format!("{what}: lb2 takes the VIP"),
        Duration::from_secs(10),
        || V4.has_vip(lab, "lb2"),
    );
    lab.wait_for(
        &format!("{what}: answers through lb2"),
        Duration::from_secs(10),
        || get_status_from(lab, "client", vip, "/").0 == 200,
    );
    let holder_after_drill = (false, V4.has_vip(lab, "lb2"));
    let answers_after_drill = requests();
    lab.link("lb1", true);
    Seen {
        holder,
        answers,
        holder_after_drill,
        answers_after_drill,
    }
}

/// The lab's anchor pair (HAProxy 2.6 + keepalived 2.2.7, lb1 priority 150, lb2 100) is
/// run and watched; its files are imported, and floatlb started in its place with the
/// imported files must show the same: lb1 holding the VIP, the same round-robin answers
/// over both web servers, and after lb1's link is cut, lb2 holding the VIP and answering
/// the same way. RFC 5798 §6.4.2: the backup with the highest priority takes over once the
/// master's adverts stop. What the import cannot map is known and reported.
#[test]
fn the_lab_anchor_pair_imported_behaves_the_same() {
    if !netns_available("the_lab_anchor_pair_imported_behaves_the_same") {
        return;
    }
    let _serial = serial();
    let (lab, _web1) = V4.lab();
    lab.add_addr("web", "198.18.0.12/24");
    let _web2 = lab.in_host("web", || TestBackend::start_on("web2", "198.18.0.12:80"));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (lb, prio) in [("lb1", 150), ("lb2", 100)] {
        let (h, k) = lab_anchor_files(lb, prio);
        std::fs::write(d.join(format!("{lb}-haproxy.cfg")), h).unwrap();
        std::fs::write(d.join(format!("{lb}-keepalived.conf")), k).unwrap();
    }
    let anchors = {
        let mut procs = Vec::new();
        for lb in ["lb1", "lb2"] {
            let cfg = d.join(format!("{lb}-haproxy.cfg"));
            let conf = d.join(format!("{lb}-keepalived.conf"));
            procs.push(spawn_in(
                &lab,
                lb,
                &["haproxy", "-db", "-f", cfg.to_str().unwrap()],
                &d.join(format!("{lb}-haproxy.log")),
            ));
            let pid = |n: &str| {
                d.join(format!("{lb}-{n}.pid"))
                    .to_string_lossy()
                    .to_string()
            };
            procs.push(spawn_in(
                &lab,
                lb,
                &[
                    "keepalived",
                    "-n",
                    "-l",
                    "-D",
                    "-f",
                    conf.to_str().unwrap(),
                    "-p",
                    &pid("k"),
                    "-r",
                    &pid("v"),
                    "-c",
                    &pid("c"),
                ],
                &d.join(format!("{lb}-keepalived.log")),
            ));
        }
        let seen = observe(&lab, "HAProxy + keepalived");
        drop(procs);
        seen
    };
    lab.wait_for(
        "the anchors let the VIP go",
        Duration::from_secs(10),
        || V4.holders(&lab) == (false, false),
    );
    let mut nodes = Vec::new();
    for lb in ["lb1", "lb2"] {
        let toml = format!("{lb}.toml");
        let o = floatlb(
            d,
            &[
                "import",
                "--haproxy",
                &format!("{lb}-haproxy.cfg"),
                "--keepalived",
                &format!("{lb}-keepalived.conf"),
                "-o",
                &toml,
            ],
        );
        let stderr = String::from_utf8_lossy(&o.stderr).to_string();
        assert_eq!(o.status.code(), Some(2), "{stderr}");
        let problems: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.starts_with("floatlb import:"))
            .map(|l| l.split(": ").nth(1).unwrap_or(l))
            .collect();
        assert_eq!(
            problems,
            ["option http-keep-alive", &format!("router_id {lb}")],
            "{stderr}"
        );
        let check = lab
            .exec(lb)
            .arg(env!("CARGO_BIN_EXE_floatlb"))
            .args(["check", "-c"])
            .arg(d.join(&toml))
            .output()
            .unwrap();
        assert!(check.status.success(), "{}", text(&check));
        let toml = d.join(&toml);
        nodes.push(spawn_in(
            &lab,
            lb,
            &[
                env!("CARGO_BIN_EXE_floatlb"),
                "run",
                "-c",
                toml.to_str().unwrap(),
            ],
            &d.join(format!("{lb}-floatlb.log")),
        ));
    }
    let imported = observe(&lab, "floatlb from the imported files");
    drop(nodes);
    assert_eq!(
        imported, anchors,
        "the imported pair differs from the anchors"
    );
    // Round-robin over both web servers, through either node.
    for a in [&anchors.answers, &anchors.answers_after_drill] {
        assert_eq!(a.iter().filter(|(_, b)| b == "web1").count(), 10, "{a:?}");
        assert_eq!(a.iter().filter(|(_, b)| b == "web2").count(), 10, "{a:?}");
    }
}
