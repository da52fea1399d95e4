//! Active/active floatlb nodes behind an ECMP router, each announcing the VIP over BGP
//! through its own BIRD while floatlb keeps the VIP on lo (`[[anycast]]`). The topology is
//! the lab's own (`vm-lab/anycast up`, under a unique prefix, torn down on drop), with this
//! build's floatlb. Needs root, BIRD, nginx and wrk (see `support::netns::netns_available`).

mod support;

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use support::netns::netns_available;

const VIP: &str = "198.18.0.100";

// Namespace tests run one at a time: they are timing-sensitive on 2 cores.
static SERIAL: Mutex<()> = Mutex::new(());

/// The lab's script with this test's prefix and binary.
fn script(prefix: &str) -> Command {
    let mut c = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/vm-lab/anycast"));
    c.env("ANYCAST_PREFIX", prefix)
        .env("FLOATLB_BIN", env!("CARGO_BIN_EXE_floatlb"));
    c
}

/// Whether the routing daemon and the web server the lab needs are installed; like
/// missing namespaces, their absence skips the test, or fails it under
/// `FLOATLB_REQUIRE_NETNS=1` (CI installs them with `vm-lab/install-deps`).
fn tools_available(test: &str) -> bool {
    let missing: Vec<&str> = ["bird", "birdc", "nginx", "wrk", "curl", "chrt"]
        .into_iter()
        .filter(|b| {
            !Command::new("sh")
                .args(["-c", &format!("PATH=$PATH:/usr/sbin:/sbin command -v {b}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var("FLOATLB_REQUIRE_NETNS").as_deref() == Ok("1") {
        panic!("{test}: needs {missing:?} (run vm-lab/install-deps) (FLOATLB_REQUIRE_NETNS=1)");
    }
    eprintln!("SKIPPED {test}: needs {missing:?} (run vm-lab/install-deps)");
    false
}

/// A running anycast lab; `vm-lab/anycast down` on drop.
struct Anycast {
    prefix: String,
}

impl Anycast {
    fn up(lbs: u32) -> Anycast {
        static N: AtomicU32 = AtomicU32::new(0);
        let prefix = format!(
            "fat{}x{}-",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let lab = Anycast { prefix };
        let out = script(&lab.prefix)
            .args(["up", "--lbs", &lbs.to_string(), "--webs", "2"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "anycast up failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        lab
    }

    fn ns(&self, host: &str) -> String {
        format!("{}{host}", self.prefix)
    }

    fn exec(&self, host: &str, args: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns(host)])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The router's next hops for the VIP (BIRD's merged route: `merge paths`, RFC 4271
    /// §9.1.2 decision among equal routes; the kernel protocol installs them all).
    fn next_hops(&self) -> Vec<String> {
        let out = self.exec(
            "router",
            &[
                "ip",
                "-4",
                "route",
                "show",
                "table",
                "100",
                &format!("{VIP}/32"),
            ],
        );
        let mut hops: Vec<String> = out
            .split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .filter(|w| w[0] == "via")
            .map(|w| w[1].to_string())
            .collect();
        hops.sort();
        hops
    }

    /// Members of the resilient nexthop group the router forwards with.
    fn group(&self) -> String {
        self.exec("router", &["ip", "nexthop", "show", "id", "1000"])
    }

    fn status(&self, lb: &str) -> String {
        self.exec(
            lb,
            &["curl", "-s", "-m", "2", "http://127.0.0.1:9100/status.json"],
        )
    }

    fn metrics(&self, lb: &str) -> String {
        self.exec(
            lb,
            &["curl", "-s", "-m", "2", "http://127.0.0.1:9100/metrics"],
        )
    }

    fn vip_on_lo(&self, lb: &str) -> bool {
        self.exec(lb, &["ip", "-4", "-o", "addr", "show", "dev", "lo"])
            .contains(&format!(" {VIP}/32 "))
    }

    /// floatlb's pid in `lb` (the lab started it; this test owns the lab).
    fn floatlb_pid(&self, lb: &str) -> Option<i32> {
        let out = Command::new("ip")
            .args(["netns", "pids", &self.ns(lb)])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
            .find(|p| {
                std::fs::read_to_string(format!("/proc/{p}/comm"))
                    .is_ok_and(|c| c.trim() == "floatlb")
            })
    }

    fn wait_for(&self, what: &str, limit: Duration, pred: impl Fn() -> bool) {
        let t0 = Instant::now();
        while !pred() {
            if t0.elapsed() > limit {
                panic!(
                    "{what}: not within {limit:?}; router next hops {:?}\n{}",
                    self.next_hops(),
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn logs(&self) -> String {
        let dir = format!("/run/floatlb-anycast/{}", self.prefix);
        let mut out = String::new();
        for f in ["lb1/floatlb.log", "lb3/floatlb.log", "router/ecmp.log"] {
            let text = std::fs::read_to_string(format!("{dir}/{f}")).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            out += &format!("--- {f}\n");
            for l in tail.into_iter().rev() {
                out += l;
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Anycast {
    fn drop(&mut self) {
        let _ = script(&self.prefix).arg("down").output();
    }
}

#[test]
fn three_nodes_announce_and_a_node_without_backends_withdraws() {
    let name = "three_nodes_announce_and_a_node_without_backends_withdraws";
    if !netns_available(name) || !tools_available(name) {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Anycast::up(3);
    let all = ["198.18.2.11", "198.18.2.12", "198.18.2.13"];
    lab.wait_for("three next hops", Duration::from_secs(20), || {
        lab.next_hops() == all
    });
    // The kernel forwards with the resilient group that mirrors them.
    assert!(
        lab.group().contains("group 111/112/113 type resilient"),
        "{}",
        lab.group()
    );
    for lb in ["lb1", "lb2", "lb3"] {
        let s = lab.status(lb);
        assert!(
            s.contains("\"anycast\":[{\"address\":\"198.18.0.100\",\"interface\":\"lo\",\"announced\":true,\"reason\":\"serving\""),
            "{lb}: {s}"
        );
        assert!(
            support::netns::metric(
                &lab.metrics(lb),
                "floatlb_anycast_announced{address=\"198.18.0.100\"}"
            ) == Some(1.0),
            "{lb} metric"
        );
    }
    // lb1 loses every backend (its path to both web servers is cut, as by a broken
    // switch port): it withdraws, the others stay.
    for web in ["198.18.2.21", "198.18.2.22"] {
        lab.exec("lb1", &["ip", "route", "add", "prohibit", web]);
    }
    lab.wait_for("lb1's route withdrawn", Duration::from_secs(10), || {
        lab.next_hops() == ["198.18.2.12", "198.18.2.13"]
    });
    assert!(!lab.vip_on_lo("lb1"));
    let s = lab.status("lb1");
    assert!(
        s.contains("\"announced\":false,\"reason\":\"no backend up\""),
        "{s}"
    );
    lab.wait_for("the group follows", Duration::from_secs(5), || {
        lab.group().contains("group 112/113 type")
    });
    // Clients are served by the two others, whatever port their flow hashes on.
    for i in 0..30 {
        let code = lab.exec(
            "client",
            &[
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-m",
                "2",
                "-w",
                "%{http_code}",
                &format!("http://{VIP}/"),
            ],
        );
        assert_eq!(code, "200", "request {i}");
    }
    // Backends back: announced again.
    for web in ["198.18.2.21", "198.18.2.22"] {
        lab.exec("lb1", &["ip", "route", "del", "prohibit", web]);
    }
    lab.wait_for("lb1 announces again", Duration::from_secs(10), || {
        lab.next_hops() == all
    });
}

/// wrk's summary: (requests, socket errors + non-2xx answers).
fn wrk_result(text: &str) -> (u64, u64) {
    let mut requests = 0;
    let mut failed = 0;
    for l in text.lines() {
        let l = l.trim();
        if let Some(n) = l
            .split(" requests in")
            .next()
            .filter(|_| l.contains(" requests in"))
        {
            requests = n.trim().parse().unwrap_or(0);
        }
        if let Some(rest) = l.strip_prefix("Socket errors:") {
            failed += rest
                .split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                .sum::<u64>();
        }
        if let Some(rest) = l.strip_prefix("Non-2xx or 3xx responses:") {
            failed += rest.trim().parse::<u64>().unwrap_or(0);
        }
    }
    (requests, failed)
}

#[test]
fn sigterm_under_load_withdraws_and_loses_no_request() {
    let name = "sigterm_under_load_withdraws_and_loses_no_request";
    if !netns_available(name) || !tools_available(name) {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Anycast::up(3);
    lab.wait_for("three next hops", Duration::from_secs(20), || {
        lab.next_hops().len() == 3
    });
    // Bounded load: 4 s of wrk -c50 (keep-alive) through the router.
    let wrk = Command::new("ip")
        .args(["netns", "exec", &lab.ns("client")])
        .args(["wrk", "-t1", "-c50", "-d4s", "--timeout", "3s"])
        .arg(format!("http://{VIP}/"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    let pid = lab.floatlb_pid("lb3").expect("floatlb runs on lb3");
    // SAFETY: a signal to a process this test's lab started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let out = wrk.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let (requests, failed) = wrk_result(&text);
    assert!(requests > 100, "wrk made too few requests:\n{text}");
    // The planned removal closes keep-alive connections after their answer
    // (RFC 9112 §9.6 `Connection: close`), holds back new SYNs, then withdraws:
    // no client sees an error.
    assert_eq!(failed, 0, "failed requests:\n{text}\n{}", lab.logs());
    lab.wait_for("lb3 withdrawn", Duration::from_secs(5), || {
        lab.next_hops() == ["198.18.2.11", "198.18.2.12"]
    });
    lab.wait_for("lb3's floatlb exited", Duration::from_secs(10), || {
        lab.floatlb_pid("lb3").is_none()
    });
    assert!(!lab.vip_on_lo("lb3"), "the VIP stayed on lb3's lo");
    let log = std::fs::read_to_string(format!(
        "/run/floatlb-anycast/{}/lb3/floatlb.log",
        lab.prefix
    ))
    .unwrap_or_default();
    assert!(
        log.contains("handover: keep-alive connections closed") && log.contains("withdrawn"),
        "{log}"
    );
}

/// `POST /admin/handover` withdraws and keeps the node running (a second one is refused,
/// `/admin/resume` announces again); a floatlb killed with SIGKILL, which cannot clean
/// up, is withdrawn when its address's lease runs out.
#[test]
fn admin_handover_resume_and_a_killed_floatlb_expires() {
    let name = "admin_handover_resume_and_a_killed_floatlb_expires";
    if !netns_available(name) || !tools_available(name) {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Anycast::up(2);
    let both = ["198.18.2.11", "198.18.2.12"];
    lab.wait_for("two next hops", Duration::from_secs(20), || {
        lab.next_hops() == both
    });
    let post = |lb: &str, call: &str| {
        lab.exec(
            lb,
            &[
                "curl",
                "-s",
                "-m",
                "10",
                "-X",
                "POST",
                "-w",
                "\n%{http_code}",
                &format!("http://127.0.0.1:9100/admin/{call}"),
            ],
        )
    };
    let first = post("lb2", "handover");
    assert!(first.ends_with("\n200"), "{first}");
    assert!(first.contains("198.18.0.100/32 on lo withdrawn"), "{first}");
    lab.wait_for("lb2 withdrawn", Duration::from_secs(5), || {
        lab.next_hops() == ["198.18.2.11"]
    });
    assert!(
        lab.status("lb2").contains("\"reason\":\"handed over\""),
        "{}",
        lab.status("lb2")
    );
    assert!(post("lb2", "handover").ends_with("\n409"));
    // Still healthy and withdrawn: the hand-over holds until resumed.
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(lab.next_hops(), ["198.18.2.11"]);
    let resumed = post("lb2", "resume");
    assert!(resumed.ends_with("\n200"), "{resumed}");
    lab.wait_for("lb2 announces again", Duration::from_secs(10), || {
        lab.next_hops() == both
    });
    assert!(post("lb2", "resume").ends_with("\n409"));

    // SIGKILL: nothing removes the address but its 3 s lease.
    let pid = lab.floatlb_pid("lb1").expect("floatlb runs on lb1");
    let t0 = Instant::now();
    // SAFETY: a signal to a process this test's lab started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        lab.vip_on_lo("lb1"),
        "the address went before its lease ran out"
    );
    lab.wait_for("lb1's lease runs out", Duration::from_secs(6), || {
        lab.next_hops() == ["198.18.2.12"]
    });
    assert!(!lab.vip_on_lo("lb1"));
    assert!(t0.elapsed() < Duration::from_secs(6));
}

#[test]
fn wrk_summary_is_read() {
    let text = "  100 requests in 4.00s, 1.2MB read\n  Socket errors: connect 1, read 2, write 0, timeout 3\n  Non-2xx or 3xx responses: 4\n";
    assert_eq!(wrk_result(text), (100, 10));
    assert_eq!(wrk_result("  7 requests in 1.00s, 1KB read\n"), (7, 0));
}
