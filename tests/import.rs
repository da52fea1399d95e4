//! `floatlb import` run as a user runs it, over the files in `tests/data/import/` (written
//! here; they use the directives HAProxy and keepalived users write): the output must pass
//! `floatlb check`, carry the pools, routes and VRRP instances the files describe, and every
//! directive that was not imported must be reported with its file and line, on standard
//! error and as a comment in the output. Exit codes: 0 all imported, 1 unreadable, 2 partial.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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
            "haproxy.cfg:56: server shop3 backup:",
            "haproxy.cfg:75: server beta1 beta.internal:80:",
            "haproxy.cfg:81: listen db: mode tcp",
            "keepalived.conf:3: router_id lb1:",
            "keepalived.conf:31: authentication { ... }: VRRPv3 (RFC 5798) has no authentication",
            "keepalived.conf:40: 198.18.0.101/24 label lo:1:",
            "keepalived.conf:64: smtp_alert:",
            "keepalived.conf:69: virtual_server 198.18.0.100 80 { ... }: LVS",
        ],
    );
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
