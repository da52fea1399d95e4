//! Installing floatlb leaves the host as found: the .deb from
//! `packaging/build-deb` passes lintian, installs, runs as the `floatlb` user
//! with only the unit's capabilities (VRRP elects, the VIP appears, the
//! listener answers through a real backend), says which one is missing and
//! exits without any of them, and is purged again; and `vm-lab/install-deps`
//! leaves an nginx it did not start running. Needs root (see
//! `support::netns::netns_available`).

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use support::netns::{get_status_from, netns_available, Lab};
use support::TestBackend;

const UNIT: &str = include_str!("../packaging/floatlb.service");
const VIP: &str = "198.18.0.100";

// dpkg takes one package operation at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Builds the .deb around this test's floatlb binary (a release build would
/// take minutes on CI; the package's layout and scripts are the same).
fn build_deb(out: &Path) -> PathBuf {
    let o = run(Command::new(root().join("packaging/build-deb"))
        .args(["--binary", env!("CARGO_BIN_EXE_floatlb"), "--out"])
        .arg(out));
    PathBuf::from(String::from_utf8_lossy(&o.stdout).trim())
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Skips with a reason, or fails under FLOATLB_REQUIRE_NETNS=1 (CI).
fn required(test: &str, why: &str) -> bool {
    if std::env::var("FLOATLB_REQUIRE_NETNS").as_deref() == Ok("1") {
        panic!("{test}: {why} (FLOATLB_REQUIRE_NETNS=1)");
    }
    eprintln!("SKIPPED {test}: {why}");
    false
}

#[test]
fn deb_passes_lintian() {
    if !have("lintian") || !have("dpkg-deb") {
        required("deb_passes_lintian", "lintian or dpkg-deb is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let deb = build_deb(dir.path());
    let out = Command::new("lintian").arg(&deb).output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    // Errors and warnings fail; informational tags (I:) are allowed.
    let bad: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("E:") || l.starts_with("W:"))
        .collect();
    assert!(bad.is_empty(), "lintian:\n{report}");

    let listing =
        String::from_utf8_lossy(&run(Command::new("dpkg-deb").arg("-c").arg(&deb)).stdout)
            .into_owned();
    for path in [
        "./usr/bin/floatlb",
        "./etc/floatlb/proxy.toml",
        "./lib/systemd/system/floatlb.service",
        "./usr/share/man/man1/floatlb.1.gz",
        "./usr/share/man/man1/floatlb-ctl.1.gz",
        "./usr/share/bash-completion/completions/floatlb",
        "./usr/share/zsh/vendor-completions/_floatlb",
        "./usr/share/fish/vendor_completions.d/floatlb.fish",
    ] {
        assert!(
            listing.lines().any(|l| l.ends_with(path)),
            "{path} not in the package:\n{listing}"
        );
    }
    let control = run(Command::new("dpkg-deb")
        .arg("-I")
        .arg(&deb)
        .arg("conffiles"));
    assert_eq!(
        String::from_utf8_lossy(&control.stdout).trim(),
        "/etc/floatlb/proxy.toml"
    );
}

#[test]
fn packaged_example_config_is_valid_and_holds_no_vip() {
    let example = root().join("packaging/proxy.toml");
    let out = run(Command::new(env!("CARGO_BIN_EXE_floatlb"))
        .args(["check", "-c"])
        .arg(&example));
    // A package must not start moving addresses on a NIC the moment it is enabled.
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("0 VRRP instances"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The installed package: purged on drop, and the `floatlb` user removed if
/// the package created it, so the host is left as found (even on a panic).
struct Installed {
    created_user: bool,
}

impl Installed {
    fn install(deb: &Path) -> Installed {
        let user_before = user_exists();
        // apt waits for the dpkg lock where a bare `dpkg -i` would fail at once.
        run(Command::new("apt-get")
            .args(["install", "-y", "-qq", "-o", "DPkg::Lock::Timeout=120"])
            .arg(deb)
            .env("DEBIAN_FRONTEND", "noninteractive"));
        Installed {
            created_user: !user_before && user_exists(),
        }
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("apt-get")
            .args([
                "purge",
                "-y",
                "-qq",
                "-o",
                "DPkg::Lock::Timeout=120",
                "floatlb",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status();
        if self.created_user {
            // Also removes the user's group.
            let _ = Command::new("userdel").arg("floatlb").status();
        }
    }
}

fn user_exists() -> bool {
    Command::new("getent")
        .args(["passwd", "floatlb"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn package_installed() -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f", "${Status}", "floatlb"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

/// The unit's `AmbientCapabilities=` in setpriv's spelling, without `drop`.
fn unit_caps(drop: Option<&str>) -> String {
    UNIT.lines()
        .find_map(|l| l.strip_prefix("AmbientCapabilities="))
        .expect("AmbientCapabilities in the unit")
        .split_whitespace()
        .filter(|c| Some(*c) != drop)
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect::<Vec<_>>()
        .join(",")
}

/// /usr/bin/floatlb in `host`'s namespace as the floatlb user, with `caps`
/// (setpriv list) as its inheritable, ambient and bounding sets, as the unit
/// starts it.
struct Node {
    child: Child,
    log: PathBuf,
    dir: tempfile::TempDir,
}

/// `floatlb SUBCOMMAND -c` (the installed binary) as the `floatlb` user with
/// only `caps` as its inheritable, ambient and bounding sets, as the unit runs it;
/// the config path comes next.
fn as_floatlb<'a>(cmd: &'a mut Command, caps: &str, subcommand: &str) -> &'a mut Command {
    cmd.args([
        "setpriv",
        "--reuid",
        "floatlb",
        "--regid",
        "floatlb",
        "--init-groups",
    ])
    .args(["--inh-caps", &format!("-all,{caps}")])
    .args(["--ambient-caps", &format!("-all,{caps}")])
    .args(["--bounding-set", &format!("-all,{caps}")])
    .args(["--no-new-privs", "--", "/usr/bin/floatlb", subcommand, "-c"])
}

fn start_packaged(lab: &Lab, host: &str, web: SocketAddr, priority: u8, caps: &str) -> Node {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    // The service reads its config as floatlb.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = format!(
        "[listen]\naddress = \"0.0.0.0:80\"\nworkers = 1\n\
         [health]\ninterval = \"100ms\"\ntimeout = \"100ms\"\nrise = 1\nfall = 1\n\
         [[backend]]\nname = \"web1\"\naddress = \"{web}\"\n\
         [admin]\naddress = \"127.0.0.1:9100\"\n\
         [[vrrp]]\ninterface = \"eth0\"\nvrid = 51\npriority = {priority}\n\
         advert-interval = \"100ms\"\nvirtual-addresses = [\"{VIP}/24\"]\n"
    );
    let path = dir.path().join("proxy.toml");
    std::fs::write(&path, cfg).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let log = dir.path().join("floatlb.log");
    let child = as_floatlb(&mut lab.exec(host), caps, "run")
        .arg(&path)
        .args(["--log", "info"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    Node { child, log, dir }
}

impl Node {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
    /// The process's `/proc/<pid>/status` line starting with `key`.
    fn status(&self, key: &str) -> String {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap_or("")
            .to_string()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn uid_of(user: &str) -> String {
    let o = run(Command::new("id").args(["-u", user]));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn installed_deb_runs_as_floatlb_with_only_the_unit_capabilities() {
    let test = "installed_deb_runs_as_floatlb_with_only_the_unit_capabilities";
    if !netns_available(test) {
        return;
    }
    for tool in ["dpkg-deb", "apt-get", "setpriv"] {
        if !have(tool) {
            required(test, &format!("{tool} is not installed"));
            return;
        }
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if package_installed() {
        // Installing over it and purging would not leave the host as found.
        eprintln!("SKIPPED {test}: a floatlb package is already installed on this machine");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let deb = build_deb(dir.path());
    let _installed = Installed::install(&deb);
    assert!(user_exists(), "postinst did not create the floatlb user");
    let meta = std::fs::metadata("/etc/floatlb/proxy.toml").unwrap();
    use std::os::unix::fs::MetadataExt as _;
    assert_eq!(meta.mode() & 0o777, 0o640, "conffile mode");
    run(Command::new("/usr/bin/floatlb").args(["check", "-c", "/etc/floatlb/proxy.toml"]));

    let mut lab = Lab::new();
    lab.host("client", "198.18.0.2/24");
    lab.host("lb1", "198.18.0.3/24");
    lab.host("lb2", "198.18.0.4/24");
    lab.host("web", "198.18.0.11/24");
    let web = lab.in_host("web", || TestBackend::start_on("web1", "198.18.0.11:80"));
    let caps = unit_caps(None);

    // Each of the three is needed: without it floatlb says which and why, and exits 1.
    for (missing, says) in [
        (
            "CAP_NET_RAW",
            "needs CAP_NET_RAW for the VRRP and gratuitous ARP sockets",
        ),
        (
            "CAP_NET_ADMIN",
            "needs CAP_NET_ADMIN to add and remove the virtual addresses",
        ),
        (
            "CAP_NET_BIND_SERVICE",
            "cannot listen on 0.0.0.0:80: Permission denied",
        ),
    ] {
        let mut bare = start_packaged(&lab, "lb2", web.addr, 100, &unit_caps(Some(missing)));
        let start = Instant::now();
        let status = loop {
            if let Some(s) = bare.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "floatlb without {missing} kept running:\n{}",
                bare.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let log = bare.log();
        assert_eq!(status.code(), Some(1), "without {missing}: {log}");
        assert!(log.contains(says), "without {missing}: {log}");
        assert!(!log.contains("panicked"), "{log}");
        assert!(!lab.has_addr("lb2", VIP));
    }

    let n1 = start_packaged(&lab, "lb1", web.addr, 150, &caps);
    let n2 = start_packaged(&lab, "lb2", web.addr, 100, &caps);
    lab.wait_for("lb1 holds the VIP", Duration::from_secs(10), || {
        lab.has_addr("lb1", VIP) && !lab.has_addr("lb2", VIP)
    });
    let floatlb_uid = uid_of("floatlb");
    for n in [&n1, &n2] {
        let uid = n.status("Uid:");
        assert!(
            uid.split_whitespace().skip(1).all(|u| u == floatlb_uid),
            "not running as floatlb: {uid}"
        );
        // CAP_NET_BIND_SERVICE (10), CAP_NET_ADMIN (12), CAP_NET_RAW (13) and nothing else.
        assert_eq!(
            n.status("CapEff:"),
            "CapEff:\t0000000000003400",
            "{}",
            n.log()
        );
        assert_eq!(n.status("CapBnd:"), "CapBnd:\t0000000000003400");
    }
    let vip: SocketAddr = format!("{VIP}:80").parse().unwrap();
    let (status, backend) = get_status_from(&lab, "client", vip, "/");
    assert_eq!((status, backend.as_str()), (200, "web1"), "{}", n1.log());

    // The unit's ExecStopPost, as floatlb: a crash (SIGKILL) left the VIP; release removes it.
    let mut n1 = n1;
    n1.child.kill().unwrap();
    n1.child.wait().unwrap();
    let config = n1.dir.path().join("proxy.toml");
    let out = run(as_floatlb(&mut lab.exec("lb1"), &caps, "release").arg(&config));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("removed {VIP}/24 on eth0")),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    lab.wait_for("lb2 takes the VIP over", Duration::from_secs(10), || {
        lab.has_addr("lb2", VIP) && !lab.has_addr("lb1", VIP)
    });
    drop(n2);
}

/// The body of a 200 answer to `GET /`, or None.
fn body_of(addr: SocketAddr) -> Option<String> {
    std::net::TcpStream::connect(addr).ok()?;
    match support::http_get(addr, "/") {
        (200, _, body) => Some(body),
        _ => None,
    }
}

/// An nginx this test starts (own prefix, config, pid file, loopback port),
/// standing for a site a server already runs. Killed by its pid on drop.
struct UnrelatedNginx {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl UnrelatedNginx {
    fn start() -> UnrelatedNginx {
        let dir = tempfile::tempdir().unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", support::free_port())
            .parse()
            .unwrap();
        let d = dir.path().display();
        let conf = format!(
            "pid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\n\
             access_log off;\nclient_body_temp_path {d}/body;\nproxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\nuwsgi_temp_path {d}/uwsgi;\nscgi_temp_path {d}/scgi;\n\
             server {{ listen {addr}; location / {{ return 200 \"unrelated site\\n\"; }} }}\n}}\n"
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new("nginx")
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf_path)
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nginx");
        let n = UnrelatedNginx {
            child,
            addr,
            _dir: dir,
        };
        let start = Instant::now();
        while body_of(n.addr).is_none() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "nginx did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        n
    }
}

impl Drop for UnrelatedNginx {
    fn drop(&mut self) {
        // SIGQUIT is nginx's graceful stop; then make sure.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGQUIT) };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn install_deps_leaves_an_unrelated_nginx_running() {
    let test = "install_deps_leaves_an_unrelated_nginx_running";
    // install-deps installs packages: root only, like the namespace tests.
    if !netns_available(test) {
        return;
    }
    if !have("nginx") {
        required(
            test,
            "nginx is not installed (vm-lab/install-deps installs it)",
        );
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut nginx = UnrelatedNginx::start();
    // Through apt even though everything is installed, as on a machine that lacks one tool.
    let out = run(Command::new("timeout")
        .arg("600")
        .arg(root().join("vm-lab/install-deps"))
        .env("FLOATLB_INSTALL_DEPS_FORCE", "1"));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("install-deps: installed"),
        "install-deps did not go through apt: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        nginx.child.try_wait().unwrap().is_none(),
        "install-deps stopped an nginx it did not start"
    );
    assert_eq!(
        body_of(nginx.addr).as_deref(),
        Some("unrelated site\n"),
        "the unrelated nginx no longer serves"
    );
}
