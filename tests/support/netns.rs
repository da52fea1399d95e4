//! Network-namespace labs for tests that need root: hosts on one bridge,
//! addresses from 198.18.0.0/24, torn down on drop (also when a test panics).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Whether namespace tests can run. Prints why not; panics instead of
/// skipping when `FLOATLB_REQUIRE_NETNS=1`.
pub fn netns_available(test: &str) -> bool {
    let why = if unsafe { libc::geteuid() } != 0 {
        Some("not running as root".to_string())
    } else if !Command::new("ip")
        .args(["netns", "list"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        Some("`ip netns` is not usable".to_string())
    } else {
        None
    };
    match why {
        None => true,
        Some(why) if std::env::var("FLOATLB_REQUIRE_NETNS").as_deref() == Ok("1") => {
            panic!("{test}: needs network namespaces but {why} (FLOATLB_REQUIRE_NETNS=1)")
        }
        Some(why) => {
            eprintln!("SKIPPED {test}: needs network namespaces: {why}");
            false
        }
    }
}

fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("spawn");
    assert!(
        out.status.success(),
        "{} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn output(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("spawn");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A switch namespace with a bridge, and hosts attached to it by veth pairs.
pub struct Lab {
    pub prefix: String,
    hosts: Vec<String>,
}

impl Lab {
    /// A lab with a unique namespace prefix (`flt<pid>x<n>-`).
    pub fn new() -> Lab {
        static N: AtomicU32 = AtomicU32::new(0);
        let prefix = format!(
            "flt{}x{}-",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let lab = Lab {
            prefix,
            hosts: Vec::new(),
        };
        let sw = lab.ns("sw");
        run(&["ip", "netns", "add", &sw]);
        run(&["ip", "-n", &sw, "link", "add", "br0", "type", "bridge"]);
        run(&["ip", "-n", &sw, "link", "set", "br0", "up"]);
        lab
    }

    pub fn ns(&self, host: &str) -> String {
        format!("{}{host}", self.prefix)
    }

    /// Adds host `name` with `eth0` at `addr` (e.g. "198.18.0.3/24").
    pub fn host(&mut self, name: &str, addr: &str) -> String {
        let ns = self.ns(name);
        let sw = self.ns("sw");
        run(&["ip", "netns", "add", &ns]);
        self.hosts.push(ns.clone());
        let port = format!("v{}", self.hosts.len());
        run(&[
            "ip", "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &port,
            "netns", &sw,
        ]);
        run(&["ip", "-n", &sw, "link", "set", &port, "master", "br0", "up"]);
        run(&["ip", "-n", &ns, "addr", "add", addr, "dev", "eth0"]);
        run(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
        run(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        ns
    }

    /// Cuts or restores a host's link (like pulling a VM's cable).
    pub fn link(&self, host: &str, up: bool) {
        run(&[
            "ip",
            "-n",
            &self.ns(host),
            "link",
            "set",
            "eth0",
            if up { "up" } else { "down" },
        ]);
    }

    /// Bridge port isolation (`bridge link set ... isolated`): isolated hosts
    /// no longer reach each other but still reach every other host, like a
    /// cut between two nodes that leaves their client links up.
    pub fn isolate(&self, host: &str, on: bool) {
        let ns = self.ns(host);
        let i = self
            .hosts
            .iter()
            .position(|h| *h == ns)
            .unwrap_or_else(|| panic!("no host {host}"));
        let port = format!("v{}", i + 1);
        run(&[
            "bridge",
            "-n",
            &self.ns("sw"),
            "link",
            "set",
            "dev",
            &port,
            "isolated",
            if on { "on" } else { "off" },
        ]);
    }

    /// Whether `host` has `ip` configured on eth0.
    pub fn has_addr(&self, host: &str, ip: &str) -> bool {
        let out = output(&[
            "ip",
            "-n",
            &self.ns(host),
            "-4",
            "-o",
            "addr",
            "show",
            "dev",
            "eth0",
        ]);
        out.split_whitespace()
            .any(|w| w.split('/').next() == Some(ip))
    }

    /// Adds another address to a host's eth0; IPv6 without duplicate address
    /// detection, so it is usable at once.
    pub fn add_addr(&self, host: &str, addr: &str) {
        let ns = self.ns(host);
        let mut args = vec!["ip", "-n", &ns, "addr", "add", addr, "dev", "eth0"];
        if addr.contains(':') {
            args.push("nodad");
        }
        run(&args);
    }

    /// Gives a host a second link `ifname` on the same switch, with `addr`.
    pub fn extra_link(&mut self, host: &str, ifname: &str, addr: &str) {
        let ns = self.ns(host);
        let sw = self.ns("sw");
        let index = self.hosts.iter().position(|h| *h == ns).unwrap_or(0) + 1;
        let port = format!("x{index}{ifname}");
        run(&[
            "ip", "link", "add", ifname, "netns", &ns, "type", "veth", "peer", "name", &port,
            "netns", &sw,
        ]);
        run(&["ip", "-n", &sw, "link", "set", &port, "master", "br0", "up"]);
        run(&["ip", "-n", &ns, "addr", "add", addr, "dev", ifname]);
        run(&["ip", "-n", &ns, "link", "set", ifname, "up"]);
    }

    /// Cuts or restores one named link of a host.
    pub fn link_named(&self, host: &str, ifname: &str, up: bool) {
        run(&[
            "ip",
            "-n",
            &self.ns(host),
            "link",
            "set",
            ifname,
            if up { "up" } else { "down" },
        ]);
    }

    /// Whether `host` has IPv6 address `ip` on any interface.
    pub fn has_addr6(&self, host: &str, ip: &str) -> bool {
        let out = output(&["ip", "-n", &self.ns(host), "-6", "-o", "addr", "show"]);
        let want: Option<std::net::Ipv6Addr> = ip.parse().ok();
        out.split_whitespace()
            .any(|w| w.split('/').next().and_then(|a| a.parse().ok()) == want)
    }

    /// MAC of a host's eth0.
    pub fn mac(&self, host: &str) -> String {
        let out = output(&[
            "ip",
            "-n",
            &self.ns(host),
            "-o",
            "link",
            "show",
            "dev",
            "eth0",
        ]);
        let mut words = out.split_whitespace();
        words.find(|w| *w == "link/ether");
        words.next().unwrap_or("").to_string()
    }

    /// The client's neighbour entry for `ip`: the MAC it would send to.
    pub fn neigh_mac(&self, host: &str, ip: &str) -> Option<String> {
        let out = output(&["ip", "-n", &self.ns(host), "neigh", "show", ip]);
        let mut words = out.split_whitespace();
        words.find(|w| *w == "lladdr");
        words.next().map(str::to_string)
    }

    /// Polls until `pred` holds or `limit` passes; returns the time it took.
    pub fn wait_for(&self, what: &str, limit: Duration, pred: impl Fn() -> bool) -> Duration {
        let start = Instant::now();
        loop {
            if pred() {
                return start.elapsed();
            }
            if start.elapsed() > limit {
                panic!("{what}: not within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Runs `f` on a thread inside `host`'s network namespace.
    pub fn in_host<T: Send + 'static>(
        &self,
        host: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        let path = format!("/run/netns/{}", self.ns(host));
        std::thread::spawn(move || {
            enter(&path);
            f()
        })
        .join()
        .expect("thread in netns panicked")
    }

    /// `ip netns exec` prefix for a host.
    pub fn exec(&self, host: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(host)]);
        c
    }
}

/// Moves the calling thread into the network namespace at `path`.
pub fn enter(path: &str) {
    let f = std::fs::File::open(path).expect("open netns");
    use std::os::fd::AsRawFd;
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
}

impl Default for Lab {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let mut all = self.hosts.clone();
        all.push(self.ns("sw"));
        for ns in &all {
            let pids = output(&["ip", "netns", "pids", ns]);
            for pid in pids.split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        for ns in &all {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// One GET from inside a namespace on a fresh connection: the answer, or
/// None if it could not connect, send or read one.
fn get(lab: &Lab, host: &str, addr: SocketAddr, path: &str) -> Option<super::Answer> {
    let path = path.to_string();
    lab.in_host(host, move || {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let req = format!("GET {path} HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).ok()?;
        super::read_answer(&mut s).ok()
    })
}

/// One GET from inside a namespace: (status, X-Backend header); status 0 on any failure.
pub fn get_status_from(lab: &Lab, host: &str, addr: SocketAddr, path: &str) -> (u16, String) {
    match get(lab, host, addr, path) {
        Some(a) => (a.status, a.header("x-backend").unwrap_or("").to_string()),
        None => (0, String::new()),
    }
}

/// One GET from inside a namespace: (status, body); status 0 on failure.
pub fn http_from(lab: &Lab, host: &str, addr: SocketAddr, path: &str) -> (u16, String) {
    match get(lab, host, addr, path) {
        Some(a) => (a.status, a.text()),
        None => (0, String::new()),
    }
}

/// Value of one sample in a Prometheus text exposition, e.g.
/// `floatlb_vrrp_packets_dropped_total{instance="vrrp0-51",reason="bad_ttl"}`.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|v| v.trim().parse().ok())
}
