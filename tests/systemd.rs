//! systemd: the unit in `packaging/` passes `systemd-analyze verify`, and
//! `Type=notify` works: READY=1 once the listeners accept, RELOADING=1 (with
//! MONOTONIC_USEC) then READY=1 around a SIGHUP reload, STOPPING=1 on SIGTERM
//! (sd_notify(3)), and the system calls floatlb makes stay inside the unit's
//! `SystemCallFilter=`.

mod support;

use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::*;

const UNIT: &str = include_str!("../packaging/floatlb.service");

/// Whether `tool` runs; skips with a reason, or fails under FLOATLB_REQUIRE_NETNS=1
/// (CI installs it with install-deps).
fn tool_available(test: &str, tool: &str) -> bool {
    if Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        return true;
    }
    if std::env::var("FLOATLB_REQUIRE_NETNS").as_deref() == Ok("1") {
        panic!("{test}: needs {tool}, which is missing (FLOATLB_REQUIRE_NETNS=1)");
    }
    eprintln!("SKIPPED {test}: {tool} is not installed");
    false
}

/// The unit with its programs pointed at this build, so `verify` can check
/// that every Exec* line names an executable.
fn unit_for_this_build(dir: &Path) -> std::path::PathBuf {
    let unit = UNIT.replace("/usr/bin/floatlb", env!("CARGO_BIN_EXE_floatlb"));
    let path = dir.join("floatlb.service");
    std::fs::write(&path, unit).unwrap();
    path
}

fn verify(unit: &Path) -> (bool, String) {
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(unit)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn unit_file_passes_systemd_analyze_verify() {
    if !tool_available("unit_file_passes_systemd_analyze_verify", "systemd-analyze") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (ok, stderr) = verify(&unit_for_this_build(dir.path()));
    // verify exits 0 on an unknown key and only says so: silence is the pass.
    assert!(
        ok && stderr.trim().is_empty(),
        "systemd-analyze verify:\n{stderr}"
    );

    // The check has teeth: a misspelt directive is reported.
    let bad = dir.path().join("bad.service");
    let text = std::fs::read_to_string(dir.path().join("floatlb.service")).unwrap();
    std::fs::write(&bad, text.replace("NoNewPrivileges=", "NoNewPrivilege=")).unwrap();
    let (_, stderr) = verify(&bad);
    assert!(stderr.contains("NoNewPrivilege"), "not reported: {stderr}");
}

#[test]
fn unit_grants_only_the_needed_capabilities() {
    let caps = |key: &str| -> Vec<&str> {
        let line = UNIT
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in the unit"));
        let mut v: Vec<&str> = line.split_whitespace().collect();
        v.sort();
        v
    };
    let needed = ["CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"];
    assert_eq!(caps("AmbientCapabilities="), needed);
    assert_eq!(caps("CapabilityBoundingSet="), needed);
    for line in [
        "Type=notify",
        "User=floatlb",
        "NoNewPrivileges=yes",
        "ExecStopPost=/usr/bin/floatlb release -c /etc/floatlb/proxy.toml",
        "ExecStartPre=/usr/bin/floatlb check -c /etc/floatlb/proxy.toml",
    ] {
        assert!(UNIT.lines().any(|l| l == line), "unit lacks {line}");
    }
}

/// A notify socket the test owns, and a floatlb that reports to it.
struct Notified {
    sock: UnixDatagram,
    child: std::process::Child,
    addr: SocketAddr,
    admin: SocketAddr,
    config: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Notified {
    fn start(body: &str) -> Notified {
        Self::start_at(body, false)
    }

    /// With `abstract_name`, the socket lives in the abstract namespace and
    /// NOTIFY_SOCKET names it with a leading '@', as sd_notify(3) allows.
    fn start_at(body: &str, abstract_name: bool) -> Notified {
        use std::os::linux::net::SocketAddrExt as _;
        let dir = tempfile::tempdir().unwrap();
        let (sock, sock_path) = if abstract_name {
            let name = format!("floatlb-test-{}", std::process::id());
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
            (
                UnixDatagram::bind_addr(&addr).unwrap(),
                std::path::PathBuf::from(format!("@{name}")),
            )
        } else {
            let path = dir.path().join("notify.sock");
            (UnixDatagram::bind(&path).unwrap(), path)
        };
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let config = dir.path().join("proxy.toml");
        std::fs::write(&config, Floatlb::render(addr, admin, body)).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_floatlb"))
            .args(["run", "-c"])
            .arg(&config)
            .args(["--log", "warn"])
            .env("NOTIFY_SOCKET", &sock_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Notified {
            sock,
            child,
            addr,
            admin,
            config,
            _dir: dir,
        }
    }

    /// The next notification (bounded wait).
    fn next(&self) -> String {
        let mut buf = [0u8; 512];
        let n = self
            .sock
            .recv(&mut buf)
            .expect("no notification within 10 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    fn signal(&self, sig: i32) {
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }
}

impl Drop for Notified {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn notify_ready_reloading_stopping() {
    let backend = TestBackend::start("web1");
    let body = backend_tables(&[(&backend, 1)]);
    let lb = Notified::start(&body);

    assert_eq!(lb.next(), "READY=1");
    // READY means both listeners accept already.
    TcpStream::connect(lb.addr).expect("READY=1 before the listener accepts");
    TcpStream::connect(lb.admin).expect("READY=1 before the admin listener accepts");
    assert_eq!(http_get(lb.addr, "/").0, 200);

    // A good reload: RELOADING=1 with the monotonic start time, then READY=1.
    lb.signal(libc::SIGHUP);
    let reloading = lb.next();
    let mut lines = reloading.lines();
    assert_eq!(lines.next(), Some("RELOADING=1"), "{reloading:?}");
    let usec: u64 = lines
        .next()
        .and_then(|l| l.strip_prefix("MONOTONIC_USEC="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {reloading:?}"));
    assert!(usec > 0);
    assert_eq!(lb.next(), "READY=1");

    // A refused reload ends the same way: the old config serves on.
    std::fs::write(&lb.config, "[listen]\naddress = 5\n").unwrap();
    lb.signal(libc::SIGHUP);
    assert!(lb.next().starts_with("RELOADING=1\n"));
    assert_eq!(lb.next(), "READY=1");
    assert_eq!(http_get(lb.addr, "/").0, 200);

    lb.signal(libc::SIGTERM);
    assert_eq!(lb.next(), "STOPPING=1");
    let mut lb = lb;
    let status = lb.child.wait().unwrap();
    assert!(status.success(), "floatlb exited with {status}");
}

#[test]
fn notify_socket_in_the_abstract_namespace() {
    let backend = TestBackend::start("web1");
    let lb = Notified::start_at(&backend_tables(&[(&backend, 1)]), true);
    assert_eq!(lb.next(), "READY=1");
    lb.signal(libc::SIGTERM);
    assert_eq!(lb.next(), "STOPPING=1");
}

#[test]
fn unreachable_notify_socket_is_not_fatal() {
    // Sending to a socket nobody listens on fails; floatlb logs it and serves.
    let backend = TestBackend::start("web1");
    let lb = Notified::start(&backend_tables(&[(&backend, 1)]));
    assert_eq!(lb.next(), "READY=1");
    std::fs::remove_file(lb._dir.path().join("notify.sock")).unwrap();
    lb.signal(libc::SIGHUP);
    let start = std::time::Instant::now();
    let reloaded = || {
        let m = http_get(lb.admin, "/metrics").2;
        support::netns::metric(&m, "floatlb_config_reloads_total{result=\"success\"}") == Some(1.0)
    };
    while !reloaded() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(reloaded(), "the reload did not complete");
    assert_eq!(http_get(lb.addr, "/").0, 200);
}

/// The syscalls a group such as `@system-service` allows, nested groups expanded
/// (`systemd-analyze syscall-filter`).
fn syscall_group(group: &str, out: &mut std::collections::BTreeSet<String>) {
    let text = Command::new("systemd-analyze")
        .args(["syscall-filter", group])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    let lines = text.lines().filter(|l| !l.trim_start().starts_with('#'));
    for word in lines.flat_map(str::split_whitespace) {
        if word == group {
            continue;
        }
        if word.starts_with('@') {
            syscall_group(word, out);
        } else if word
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            out.insert(word.to_string());
        }
    }
}

/// The unit's `SystemCallFilter=` only acts under systemd, which the tests do
/// not run under; so floatlb runs under strace through start-up, becoming VRRP
/// master, proxying, a runtime-API call, a reload with a VRRP change and a
/// graceful stop, then `check` and `release` (ExecStartPre, ExecStopPost), and
/// every system call made must be one the filter allows.
#[test]
fn syscalls_stay_inside_the_units_filter() {
    let test = "syscalls_stay_inside_the_units_filter";
    if !support::netns::netns_available(test)
        || !tool_available(test, "systemd-analyze")
        || !tool_available(test, "strace")
    {
        return;
    }
    // An allow list, then `~` lines taking groups out of it (systemd.exec(5)).
    let mut allowed = std::collections::BTreeSet::new();
    let mut denied = std::collections::BTreeSet::new();
    let filters: Vec<&str> = UNIT
        .lines()
        .filter_map(|l| l.strip_prefix("SystemCallFilter="))
        .collect();
    for f in &filters {
        let (set, groups) = match f.strip_prefix('~') {
            Some(g) => (&mut denied, g),
            None => (&mut allowed, *f),
        };
        for group in groups.split_whitespace() {
            syscall_group(group, set);
        }
    }
    assert!(denied.contains("chown"), "could not expand {filters:?}");
    let allowed: std::collections::BTreeSet<String> =
        allowed.difference(&denied).cloned().collect();
    let filter = filters.join(" ");
    assert!(allowed.contains("socket"), "could not expand {filter}");

    let mut lab = support::netns::Lab::new();
    lab.host("client", "198.18.0.2/24");
    lab.host("lb", "198.18.0.3/24");
    lab.host("web", "198.18.0.11/24");
    let web = lab.in_host("web", || TestBackend::start_on("web1", "198.18.0.11:80"));
    let dir = tempfile::tempdir().unwrap();
    let cfg = |priority: u32| {
        format!(
            "[listen]\naddress = \"0.0.0.0:80\"\nworkers = 2\n[health]\ninterval = \"100ms\"\n\
             [[backend]]\nname = \"web1\"\naddress = \"{}\"\n[admin]\naddress = \"127.0.0.1:9100\"\n\
             [log]\naccess = \"json\"\n[[vrrp]]\ninterface = \"eth0\"\nvrid = 51\npriority = {priority}\n\
             advert-interval = \"50ms\"\nvirtual-addresses = [\"198.18.0.100/24\"]\n",
            web.addr
        )
    };
    let config = dir.path().join("proxy.toml");
    std::fs::write(&config, cfg(150)).unwrap();
    let trace = dir.path().join("trace");
    let mut strace = lab
        .exec("lb")
        .args(["strace", "-f", "-qq", "-o"])
        .arg(&trace)
        .arg(env!("CARGO_BIN_EXE_floatlb"))
        .args(["run", "-c"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let vip: SocketAddr = "198.18.0.100:80".parse().unwrap();
    lab.wait_for("the VIP", Duration::from_secs(10), || {
        lab.has_addr("lb", "198.18.0.100")
    });
    assert_eq!(support::netns::http_from(&lab, "client", vip, "/").0, 200);
    std::fs::write(&config, cfg(140)).unwrap();
    let admin: SocketAddr = "127.0.0.1:9100".parse().unwrap();
    let post = |path: &'static str| {
        lab.in_host("lb", move || {
            raw_request(
                admin,
                &format!("POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
            )
            .0
        })
    };
    assert_eq!(post("/admin/backend/web1/weight/2"), 200);
    assert_eq!(post("/admin/reload"), 200);
    assert_eq!(support::netns::http_from(&lab, "client", vip, "/").0, 200);
    // SIGTERM to floatlb itself, strace's child.
    let children =
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", strace.id())).unwrap();
    let pid: i32 = children.split_whitespace().next().unwrap().parse().unwrap();
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let start = std::time::Instant::now();
    while strace.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "floatlb did not stop"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // The unit's ExecStartPre and ExecStopPost run under the same filter.
    let mut traces = vec![trace];
    for (n, command) in ["check", "release"].into_iter().enumerate() {
        let t = dir.path().join(format!("trace-{n}"));
        let status = lab
            .exec("lb")
            .args(["strace", "-f", "-qq", "-o"])
            .arg(&t)
            .arg(env!("CARGO_BIN_EXE_floatlb"))
            .args([command, "-c"])
            .arg(&config)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "floatlb {command} failed");
        traces.push(t);
    }
    let text: String = traces
        .iter()
        .map(|t| std::fs::read_to_string(t).unwrap())
        .collect();
    let mut used = std::collections::BTreeSet::new();
    for line in text.lines() {
        let call = line
            .split_once(' ')
            .map_or("", |(_, rest)| rest.trim_start());
        if let Some((name, _)) = call.split_once('(') {
            if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                used.insert(name.to_string());
            }
        }
    }
    assert!(
        used.contains("sendto") && used.contains("accept4"),
        "{used:?}"
    );
    let outside: Vec<_> = used.difference(&allowed).collect();
    assert!(
        outside.is_empty(),
        "floatlb made system calls that {filter} refuses: {outside:?}"
    );
}
