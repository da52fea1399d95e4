//! floatlb nodes in a namespace lab (client .2, lb1 .3, lb2 .4, web .11 on
//! one switch) for the VRRP and handover tests, with the address family as a
//! parameter: a `Family` gives the VIP, the `[[vrrp]]` table, the lab and the
//! way adverts are sent by hand. Needs root (`netns::netns_available`).
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::{Child, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::netns::Lab;
use super::TestBackend;

/// The admin listener of every node, inside its namespace.
pub const ADMIN: &str = "127.0.0.1:9100";

/// Health checks every 100 ms, one failure or success to change state.
pub const FAST_HEALTH: &str =
    "[health]\ninterval = \"100ms\"\ntimeout = \"100ms\"\nrise = 1\nfall = 1\n";

/// The lab's hosts and the last part of their addresses in either family.
const HOSTS: [(&str, u8); 4] = [("client", 2), ("lb1", 3), ("lb2", 4), ("web", 11)];

/// Namespace tests run one at a time: they are timing-sensitive on 2 cores.
pub fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// IPv4 (198.18.0.0/24, RFC 2544) or IPv6 (2001:2::/64, RFC 5180): RFC 5798
/// runs one virtual router per family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

pub use Family::{V4, V6};

impl Family {
    /// The VIP the pair shares.
    pub fn vip(self) -> &'static str {
        match self {
            V4 => "198.18.0.100",
            V6 => "2001:2::100",
        }
    }

    /// The VIP with its prefix length, as in `virtual-addresses`.
    pub fn vip_cidr(self) -> String {
        match self {
            V4 => format!("{}/24", self.vip()),
            V6 => format!("{}/64", self.vip()),
        }
    }

    /// Port 80 on the VIP.
    pub fn vip_addr(self) -> SocketAddr {
        SocketAddr::new(self.vip().parse().unwrap(), 80)
    }

    /// The VRID of the family's one instance.
    pub fn vrid(self) -> u8 {
        match self {
            V4 => 51,
            V6 => 61,
        }
    }

    /// The instance's label in metrics and status (the node's first `[[vrrp]]`).
    pub fn instance(self) -> String {
        format!("vrrp0-{}", self.vrid())
    }

    /// One `[[vrrp]]` table on eth0 for the VIP; `extra` adds keys.
    pub fn table(self, priority: u8, advert_ms: u64, extra: &str) -> String {
        format!(
            "[[vrrp]]\ninterface = \"eth0\"\nvrid = {}\npriority = {priority}\nadvert-interval = \"{advert_ms}ms\"\nvirtual-addresses = [\"{}\"]\n{extra}",
            self.vrid(),
            self.vip_cidr()
        )
    }

    /// A host's address on eth0.
    pub fn host_ip(self, host: &str) -> IpAddr {
        let n = HOSTS
            .iter()
            .find(|(h, _)| *h == host)
            .unwrap_or_else(|| panic!("no host {host}"))
            .1;
        match self {
            V4 => Ipv4Addr::new(198, 18, 0, n).into(),
            // The same digits as the IPv4 host part: 2001:2::11 for .11.
            V6 => format!("2001:2::{n}").parse::<Ipv6Addr>().unwrap().into(),
        }
    }

    /// Where a host's adverts come from: its address (IPv4), its link-local
    /// address (IPv6, RFC 5798 §5.1.2.1). Also what `unicast-peers` names.
    pub fn advert_source(self, lab: &Lab, host: &str) -> IpAddr {
        match self {
            V4 => self.host_ip(host),
            V6 => link_local(lab, host).parse().unwrap(),
        }
    }

    /// The multicast group adverts go to (§5.1.1.2, §5.1.2.2).
    pub fn group(self) -> IpAddr {
        match self {
            V4 => vrrp::packet::VRRP_GROUP.into(),
            V6 => vrrp::packet::VRRP_GROUP_V6.into(),
        }
    }

    /// A fresh lab: client, lb1, lb2 and web with addresses of this family
    /// (IPv6 beside IPv4), and a web backend `web1` on port 80 of web's address.
    pub fn lab(self) -> (Lab, TestBackend) {
        let mut lab = Lab::new();
        for (host, n) in HOSTS {
            lab.host(host, &format!("198.18.0.{n}/24"));
            if self == V6 {
                lab.add_addr(host, &format!("2001:2::{n}/64"));
                // Linux flushes IPv6 addresses when a link is set down; a pulled
                // cable (what `Lab::link` stands for) keeps them.
                keep_addr_on_down(&lab, host, "eth0");
            }
        }
        let web = SocketAddr::new(self.host_ip("web"), 80);
        let web = lab.in_host("web", move || {
            TestBackend::start_on("web1", &web.to_string())
        });
        (lab, web)
    }

    /// A node listening on port 80 of every address of the family, with
    /// `FAST_HEALTH`, in front of `backends`.
    pub fn start_node(self, lab: &Lab, host: &str, backends: &[SocketAddr], vrrp: &str) -> Node {
        let listen = match self {
            V4 => "0.0.0.0:80",
            V6 => "[::]:80",
        };
        start_node_listening(lab, host, listen, FAST_HEALTH, backends, vrrp)
    }

    /// Whether `host` holds the VIP.
    pub fn has_vip(self, lab: &Lab, host: &str) -> bool {
        self.holds(lab, host, self.vip())
    }

    /// Whether `host` has `ip` (of this family) configured.
    pub fn holds(self, lab: &Lab, host: &str, ip: &str) -> bool {
        match self {
            V4 => lab.has_addr(host, ip),
            V6 => lab.has_addr6(host, ip),
        }
    }

    /// (lb1 holds the VIP, lb2 holds it).
    pub fn holders(self, lab: &Lab) -> (bool, bool) {
        (self.has_vip(lab, "lb1"), self.has_vip(lab, "lb2"))
    }

    /// lb1 (priority 150) and lb2 (priority 100), 100 ms adverts, in front of
    /// `web`; returns once lb1 alone holds the VIP.
    pub fn lb1_master_pair(self, lab: &Lab, web: &TestBackend) -> (Node, Node) {
        let n1 = self.start_node(lab, "lb1", &[web.addr], &self.table(150, 100, ""));
        let n2 = self.start_node(lab, "lb2", &[web.addr], &self.table(100, 100, ""));
        lab.wait_for("lb1 holds the VIP", Duration::from_secs(6), || {
            self.holders(lab) == (true, false)
        });
        wait_heard(lab, "lb2");
        (n1, n2)
    }

    /// Sends hand-made VRRP messages from `host` (source `src`) to `dst`,
    /// each with its TTL / Hop Limit: (hops, message).
    pub fn send_adverts(
        self,
        lab: &Lab,
        host: &str,
        src: IpAddr,
        dst: IpAddr,
        messages: Vec<(u8, Vec<u8>)>,
    ) {
        use socket2::{Domain, Protocol, SockAddr, Socket, Type};
        lab.in_host(host, move || match (src, dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(112))).unwrap();
                s.set_header_included_v4(true).unwrap();
                s.bind_device(Some(b"eth0")).unwrap();
                s.set_multicast_if_v4(&src).unwrap();
                let to = SockAddr::from(std::net::SocketAddrV4::new(dst, 0));
                for (ttl, msg) in messages {
                    let datagram = vrrp::packet::build_ipv4(src, dst, ttl, &msg);
                    s.send_to(&datagram, &to).unwrap();
                }
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                use std::net::SocketAddrV6;
                let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::from(112))).unwrap();
                s.bind_device(Some(b"eth0")).unwrap();
                let ifindex = vrrp::address::interface_index("eth0").unwrap();
                s.bind(&SocketAddrV6::new(src, 0, 0, ifindex).into())
                    .unwrap();
                s.set_multicast_if_v6(ifindex).unwrap();
                let to = SockAddr::from(SocketAddrV6::new(dst, 0, 0, ifindex));
                for (hops, msg) in messages {
                    s.set_multicast_hops_v6(hops.into()).unwrap();
                    s.set_unicast_hops_v6(hops.into()).unwrap();
                    s.send_to(&msg, &to).unwrap();
                }
            }
            _ => panic!("{src} and {dst} are of two families"),
        })
    }
}

/// IPv6 addresses stay on `ifname` while its link is down.
pub fn keep_addr_on_down(lab: &Lab, host: &str, ifname: &str) {
    let ok = lab
        .exec(host)
        .args([
            "sysctl",
            "-qw",
            &format!("net.ipv6.conf.{ifname}.keep_addr_on_down=1"),
        ])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "sysctl keep_addr_on_down in {host}");
}

/// The host's link-local address, once duplicate address detection is done
/// with it (a tentative address cannot be bound or sent from).
pub fn link_local(lab: &Lab, host: &str) -> String {
    let start = std::time::Instant::now();
    loop {
        let out = lab
            .exec(host)
            .args([
                "ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "link",
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let line = text.lines().find(|l| l.contains(" fe80:"));
        if let Some(line) = line.filter(|l| !l.contains("tentative")) {
            return line
                .split_whitespace()
                .find(|w| w.starts_with("fe80:"))
                .and_then(|w| w.split('/').next())
                .expect("the line has a fe80: address")
                .to_string();
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no usable link-local address on {host}: {text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A floatlb process in a lab host; killed on drop.
pub struct Node {
    child: Child,
    log: std::path::PathBuf,
    dir: tempfile::TempDir,
}

impl Node {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn config_path(&self) -> std::path::PathBuf {
        self.dir.path().join("proxy.toml")
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: a signal to a floatlb this test started.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// SIGTERM and wait for exit (bounded).
    pub fn stop(mut self) {
        self.signal(libc::SIGTERM);
        if self.wait_exit(Duration::from_secs(5)).is_none() {
            panic!("floatlb did not exit after SIGTERM:\n{}", self.log());
        }
    }

    /// How the process exited, if it does within `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let start = std::time::Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if start.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Rewrites the node's config (`from` -> `to`), sends SIGHUP and waits
    /// (bounded) until the node logs that the reload was applied (true) or
    /// refused (false).
    pub fn reload_replacing(&self, from: &str, to: &str) -> bool {
        let path = self.config_path();
        let cfg = std::fs::read_to_string(&path).unwrap();
        assert!(cfg.contains(from), "{cfg}");
        std::fs::write(&path, cfg.replace(from, to)).unwrap();
        let count = |log: &str| {
            (
                log.matches("configuration reloaded").count(),
                log.matches("reload failed").count(),
            )
        };
        let before = count(&self.log());
        self.signal(libc::SIGHUP);
        let start = std::time::Instant::now();
        loop {
            let now = count(&self.log());
            if now.0 > before.0 {
                return true;
            }
            if now.1 > before.1 {
                return false;
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "no reload:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A node with one worker listening on `listen`, `health` (a `[health]`
/// table, maybe with more tables), a backend `web<n>` per address, the admin
/// listener on `ADMIN` and `vrrp` (tables, maybe none).
pub fn start_node_listening(
    lab: &Lab,
    host: &str,
    listen: &str,
    health: &str,
    backends: &[SocketAddr],
    vrrp: &str,
) -> Node {
    start_node_env(lab, host, listen, health, backends, vrrp, &[])
}

/// [`start_node_listening`] with `env` (`NAME=value` each) in floatlb's environment.
pub fn start_node_env(
    lab: &Lab,
    host: &str,
    listen: &str,
    health: &str,
    backends: &[SocketAddr],
    vrrp: &str,
    env: &[&str],
) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = format!("[listen]\naddress = \"{listen}\"\nworkers = 1\n{health}");
    for (i, b) in backends.iter().enumerate() {
        cfg += &format!("[[backend]]\nname = \"web{}\"\naddress = \"{b}\"\n", i + 1);
    }
    cfg += &format!("[admin]\naddress = \"{ADMIN}\"\n");
    cfg += vrrp;
    let path = dir.path().join("proxy.toml");
    std::fs::write(&path, cfg).unwrap();
    let log = dir.path().join("floatlb.log");
    let mut cmd = lab.exec(host);
    if !env.is_empty() {
        // `ip netns exec` keeps its own PATH to find `env`; floatlb gets these.
        cmd.arg("env").args(env);
    }
    let child = cmd
        .arg(env!("CARGO_BIN_EXE_floatlb"))
        .args(["run", "-c"])
        .arg(&path)
        .args(["--log", "info"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    Node { child, log, dir }
}

/// An IPv4 node on 0.0.0.0:80 with `health` (and more tables) in front of `backends`.
pub fn start_node_with(
    lab: &Lab,
    host: &str,
    health: &str,
    backends: &[SocketAddr],
    vrrp: &str,
) -> Node {
    start_node_listening(lab, host, "0.0.0.0:80", health, backends, vrrp)
}

/// `GET /metrics` from a node's admin listener.
pub fn admin_metrics(lab: &Lab, host: &str) -> String {
    super::netns::http_from(lab, host, ADMIN.parse().unwrap(), "/metrics").1
}

/// Waits (at most 6 s) until every VRRP instance of `host` has heard a peer's
/// advert. An IPv6 instance starts only once its link-local address is out of
/// duplicate address detection (1-2 s after the link came up, RFC 4862
/// §5.4), so the peer that holds the VIP may have been master for a second
/// before this one listens.
pub fn wait_heard(lab: &Lab, host: &str) {
    lab.wait_for(
        &format!("every instance of {host} heard its peer"),
        Duration::from_secs(6),
        || {
            let s = admin_status(lab, host);
            s.contains("\"last_peer_advert\":{") && !s.contains("\"last_peer_advert\":null")
        },
    );
}

/// `GET /status.json` from a node's admin listener.
pub fn admin_status(lab: &Lab, host: &str) -> String {
    super::netns::http_from(lab, host, ADMIN.parse().unwrap(), "/status.json").1
}

/// `floatlb_vrrp_packets_dropped_total` of `instance` for `reason`.
pub fn dropped(metrics: &str, instance: &str, reason: &str) -> Option<f64> {
    super::netns::metric(
        metrics,
        &format!(
            "floatlb_vrrp_packets_dropped_total{{instance=\"{instance}\",reason=\"{reason}\"}}"
        ),
    )
}

/// `floatlb_vrrp_transitions_total` of `instance`.
pub fn transitions(metrics: &str, instance: &str) -> Option<f64> {
    super::netns::metric(
        metrics,
        &format!("floatlb_vrrp_transitions_total{{instance=\"{instance}\"}}"),
    )
}

/// The worker's pid from a node's `/status.json`.
pub fn worker_pid_of(lab: &Lab, host: &str) -> u32 {
    let s = admin_status(lab, host);
    s.split("\"worker_pid\":")
        .nth(1)
        .and_then(|r| r.split([',', '}']).next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no worker_pid in {s}"))
}

/// A child process killed on drop (a capture, a browser driver, a server).
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Two `#[test]`s for a behaviour `fn(Family)`, `<name>::ipv4` and
/// `<name>::ipv6`; each skips (or fails under `FLOATLB_REQUIRE_NETNS=1`)
/// without namespaces, and runs alone (`serial`).
#[macro_export]
macro_rules! both_families {
    ($body:ident) => {
        mod $body {
            $crate::family_test!($body, ipv4, V4);
            $crate::family_test!($body, ipv6, V6);
        }
    };
}

/// Only the IPv4 `#[test]` of a behaviour `fn(Family)`, `<name>::ipv4`.
#[macro_export]
macro_rules! ipv4_only {
    ($body:ident) => {
        mod $body {
            $crate::family_test!($body, ipv4, V4);
        }
    };
}

/// One family's `#[test]`, inside the behaviour's module.
#[macro_export]
macro_rules! family_test {
    ($body:ident, $test:ident, $family:ident) => {
        #[test]
        fn $test() {
            let name = concat!(stringify!($body), "::", stringify!($test));
            if $crate::support::netns::netns_available(name) {
                let _serial = $crate::support::vrrp_lab::serial();
                super::$body($crate::support::vrrp_lab::Family::$family);
            }
        }
    };
}

/// Whether `host` has `ip` on interface `dev` (a VMAC interface, say).
pub fn holds_on(lab: &Lab, host: &str, dev: &str, ip: &str) -> bool {
    let out = lab
        .exec(host)
        .args(["ip", "-o", "addr", "show", "dev", dev])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.split_whitespace()
        .any(|w| w.split('/').next() == Some(ip))
}

/// Whether interface `dev` exists in `host`.
pub fn has_link(lab: &Lab, host: &str, dev: &str) -> bool {
    lab.exec(host)
        .args(["ip", "link", "show", "dev", dev])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// keepalived in a lab host running `conf` (a whole keepalived.conf), as a
/// VRRP peer; SIGTERM on drop (SIGKILL if it lingers).
pub struct KeepalivedPeer {
    child: Child,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl KeepalivedPeer {
    pub fn start(lab: &Lab, host: &str, conf: &str) -> KeepalivedPeer {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keepalived.conf");
        std::fs::write(&path, conf).unwrap();
        let log = dir.path().join("keepalived.log");
        let p = |f: &str| dir.path().join(f);
        let child = lab
            .exec(host)
            .args(["keepalived", "-n", "-l", "-D", "-P", "-f"])
            .arg(&path)
            .arg("-p")
            .arg(p("k.pid"))
            .arg("-r")
            .arg(p("v.pid"))
            .arg("-c")
            .arg(p("c.pid"))
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("keepalived (apt-get install keepalived)");
        KeepalivedPeer {
            child,
            log,
            _dir: dir,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for KeepalivedPeer {
    fn drop(&mut self) {
        // SAFETY: a signal to a keepalived this test started.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_secs(3) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
