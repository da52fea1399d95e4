//! Two real floatlb processes sharing a VIP over VRRPv3, in network namespaces.
//! Needs root (see `support::netns::netns_available`).

mod support;

use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use support::netns::{get_status_from, netns_available, Lab};
use support::TestBackend;

const VIP: &str = "198.18.0.100";

// Namespace tests run one at a time: they are timing-sensitive on 2 cores.
static SERIAL: Mutex<()> = Mutex::new(());

struct Node {
    child: Child,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Node {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
    fn signal(&self, sig: i32) {
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }
    /// SIGTERM and wait for exit (bounded).
    fn stop(mut self) {
        self.signal(libc::SIGTERM);
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("floatlb did not exit after SIGTERM:\n{}", self.log());
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_node(lab: &Lab, host: &str, backends: &[SocketAddr], vrrp: &str) -> Node {
    let health = "[health]\ninterval = \"100ms\"\ntimeout = \"100ms\"\nrise = 1\nfall = 1\n";
    start_node_with(lab, host, health, backends, vrrp)
}

fn start_node_with(
    lab: &Lab,
    host: &str,
    health: &str,
    backends: &[SocketAddr],
    vrrp: &str,
) -> Node {
    start_node_listening(lab, host, "0.0.0.0:80", health, backends, vrrp)
}

fn start_node_listening(
    lab: &Lab,
    host: &str,
    listen: &str,
    health: &str,
    backends: &[SocketAddr],
    vrrp: &str,
) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = format!("[listen]\naddress = \"{listen}\"\nworkers = 1\n{health}");
    for (i, b) in backends.iter().enumerate() {
        cfg += &format!("[[backend]]\nname = \"web{}\"\naddress = \"{b}\"\n", i + 1);
    }
    cfg += "[admin]\naddress = \"127.0.0.1:9100\"\n";
    cfg += vrrp;
    let path = dir.path().join("proxy.toml");
    std::fs::write(&path, cfg).unwrap();
    let log = dir.path().join("floatlb.log");
    let child = lab
        .exec(host)
        .arg(env!("CARGO_BIN_EXE_floatlb"))
        .args(["run", "-c"])
        .arg(&path)
        .args(["--log", "info"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    Node {
        child,
        log,
        _dir: dir,
    }
}

fn vrrp_table(priority: u8, advert_ms: u64, extra: &str) -> String {
    format!(
        "[[vrrp]]\ninterface = \"eth0\"\nvrid = 51\npriority = {priority}\nadvert-interval = \"{advert_ms}ms\"\nvirtual-addresses = [\"{VIP}/24\"]\n{extra}"
    )
}

/// client .2, lb1 .3, lb2 .4, web .11; returns the lab and the web backend.
fn lab() -> (Lab, TestBackend) {
    let mut lab = Lab::new();
    lab.host("client", "198.18.0.2/24");
    lab.host("lb1", "198.18.0.3/24");
    lab.host("lb2", "198.18.0.4/24");
    lab.host("web", "198.18.0.11/24");
    let web = lab.in_host("web", || TestBackend::start_on("web1", "198.18.0.11:80"));
    (lab, web)
}

/// lb1 (priority 150) and lb2 (priority 100), 100 ms adverts, in front of `web`;
/// returns once lb1 alone holds the VIP.
fn lb1_master_pair(lab: &Lab, web: &TestBackend) -> (Node, Node) {
    let n1 = start_node(lab, "lb1", &[web.addr], &vrrp_table(150, 100, ""));
    let n2 = start_node(lab, "lb2", &[web.addr], &vrrp_table(100, 100, ""));
    lab.wait_for("lb1 holds the VIP", Duration::from_secs(5), || {
        holders(lab) == (true, false)
    });
    (n1, n2)
}

fn vip() -> SocketAddr {
    format!("{VIP}:80").parse().unwrap()
}

fn holders(lab: &Lab) -> (bool, bool) {
    (lab.has_addr("lb1", VIP), lab.has_addr("lb2", VIP))
}

#[test]
fn higher_priority_wins_and_link_loss_fails_over_with_garp() {
    if !netns_available("higher_priority_wins_and_link_loss_fails_over_with_garp") {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (lab, web) = lab();
    let (n1, n2) = lb1_master_pair(&lab, &web);
    // Both stay settled: exactly one holder.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        holders(&lab),
        (true, false),
        "lb1: {}\nlb2: {}",
        n1.log(),
        n2.log()
    );
    assert_eq!(
        get_status_from(&lab, "client", vip(), "/"),
        (200, "web1".into())
    );
    assert_eq!(
        lab.neigh_mac("client", VIP).as_deref(),
        Some(lab.mac("lb1").as_str())
    );

    // Master_Down_Interval for priority 100 at 100 ms: 3×100 + (256−100)×100/256 ≈ 361 ms;
    // how long the takeover takes is the fsm's unit tests (paused clock) and bench's drills.
    lab.link("lb1", false);
    lab.wait_for("lb2 takes the VIP", Duration::from_secs(3), || {
        lab.has_addr("lb2", VIP)
    });
    // Its gratuitous ARP moved the client's neighbour entry without any traffic.
    let lb2_mac = lab.mac("lb2");
    lab.wait_for(
        "client ARP cache updated by GARP",
        Duration::from_secs(1),
        || lab.neigh_mac("client", VIP).as_deref() == Some(lb2_mac.as_str()),
    );
    assert_eq!(
        get_status_from(&lab, "client", vip(), "/"),
        (200, "web1".into())
    );

    // lb1 returns: preempt (default) takes the VIP back.
    lab.link("lb1", true);
    lab.wait_for("lb1 preempts", Duration::from_secs(3), || {
        holders(&lab) == (true, false)
    });
    assert_eq!(
        get_status_from(&lab, "client", vip(), "/"),
        (200, "web1".into())
    );
}

#[test]
fn nopreempt_keeps_the_current_master() {
    if !netns_available("nopreempt_keeps_the_current_master") {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (lab, web) = lab();
    let n2 = start_node(
        &lab,
        "lb2",
        &[web.addr],
        &vrrp_table(100, 100, "preempt = false\n"),
    );
    lab.wait_for("lb2 alone becomes master", Duration::from_secs(5), || {
        lab.has_addr("lb2", VIP)
    });
    let n1 = start_node(
        &lab,
        "lb1",
        &[web.addr],
        &vrrp_table(150, 100, "preempt = false\n"),
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        holders(&lab),
        (false, true),
        "lb1 must not preempt\nlb1: {}\nlb2: {}",
        n1.log(),
        n2.log()
    );
}

#[test]
fn sigterm_hands_over_in_skew_time() {
    if !netns_available("sigterm_hands_over_in_skew_time") {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (lab, web) = lab();
    let (n1, _n2) = lb1_master_pair(&lab, &web);
    std::thread::sleep(Duration::from_millis(300));
    n1.signal(libc::SIGTERM);
    // RFC 5798 §6.4.2: lb1 leaves with a priority-0 advert, so the backup waits only
    // Skew_Time (≈61 ms) instead of Master_Down_Interval (≈361 ms); that timing is the
    // fsm's unit test on a paused clock. Here: the advert went out and was heard.
    lab.wait_for("lb2 takes over", Duration::from_secs(3), || {
        lab.has_addr("lb2", VIP)
    });
    let status = support::netns::http_from(
        &lab,
        "lb2",
        "127.0.0.1:9100".parse().unwrap(),
        "/status.json",
    )
    .1;
    assert!(
        status.contains("\"priority\":0,"),
        "lb2 did not hear lb1's priority-0 advert: {status}; lb1 log:\n{}",
        n1.log()
    );
    lab.wait_for("lb1 released the VIP", Duration::from_secs(2), || {
        !lab.has_addr("lb1", VIP)
    });
    assert_eq!(
        get_status_from(&lab, "client", vip(), "/"),
        (200, "web1".into())
    );
}

/// `POST /admin/handover` (on a one-worker node: the runtime is single-threaded, so the
/// blocking handover must not run on it): the VIP moves to the backup, the old master keeps
/// running, and a second handover from it is refused because it is no longer master.
#[test]
fn admin_handover_moves_the_vip_and_keeps_the_node_running() {
    if !netns_available("admin_handover_moves_the_vip_and_keeps_the_node_running") {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (lab, web) = lab();
    let (n1, _n2) = lb1_master_pair(&lab, &web);
    let post = || {
        let out = lab
            .exec("lb1")
            .args([
                "curl",
                "-s",
                "-m",
                "10",
                "-X",
                "POST",
                "-w",
                "\n%{http_code}",
            ])
            .arg("http://127.0.0.1:9100/admin/handover")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    // A keep-alive client that got its answer and sits idle: the handover
    // must close its connection (after IDLE_CLOSE) rather than wait for it.
    let mut idle = lab
        .exec("client")
        .args(["bash", "-c"])
        .arg(format!(
            "exec 3<>/dev/tcp/{VIP}/80; printf 'GET / HTTP/1.1\\r\\nHost: t\\r\\n\\r\\n' >&3; cat <&3 > /dev/null"
        ))
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        idle.try_wait().unwrap().is_none(),
        "the idle client left early"
    );
    let first = post();
    assert!(
        first.ends_with("\n200"),
        "handover: {first:?}; log:\n{}",
        n1.log()
    );
    assert!(first.contains("(0 still open)"), "{first}");
    let idle = std::sync::Mutex::new(idle);
    lab.wait_for("the idle connection closed", Duration::from_secs(2), || {
        idle.lock().unwrap().try_wait().unwrap().is_some()
    });
    lab.wait_for("lb2 takes over", Duration::from_secs(3), || {
        lab.has_addr("lb2", VIP)
    });
    lab.wait_for("lb1 released the VIP", Duration::from_secs(3), || {
        !lab.has_addr("lb1", VIP)
    });
    assert_eq!(
        get_status_from(&lab, "client", vip(), "/"),
        (200, "web1".into())
    );
    let second = post();
    assert!(second.ends_with("\n409"), "second handover: {second:?}");
    // Still running, and its admin listener still answers.
    assert!(
        admin_metrics(&lab, "lb1").contains("floatlb_vrrp_state"),
        "{}",
        n1.log()
    );
}

#[test]
fn crash_leaves_the_vip_and_release_or_restart_removes_it() {
    if !netns_available("crash_leaves_the_vip_and_release_or_restart_removes_it") {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (lab, web) = lab();
    let table = vrrp_table(150, 100, "");
    let n1 = start_node(&lab, "lb1", &[web.addr], &table);
    lab.wait_for("lb1 master", Duration::from_secs(5), || {
        lab.has_addr("lb1", VIP)
    });
    let config = n1._dir.path().join("proxy.toml");
    n1.signal(libc::SIGKILL);
    std::thread::sleep(Duration::from_millis(200));
    assert!(lab.has_addr("lb1", VIP), "SIGKILL cannot remove the VIP");
    let out = lab
        .exec("lb1")
        .arg(env!("CARGO_BIN_EXE_floatlb"))
        .args(["release", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("removed {VIP}/24 on eth0")),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!lab.has_addr("lb1", VIP), "release removed the VIP");

    // A restart cleans up too: crash again, then start a backup-priority node there while
    // lb2 is master; the stale VIP must go before the new node runs as a backup.
    let n1 = start_node(&lab, "lb1", &[web.addr], &table);
    lab.wait_for("lb1 master again", Duration::from_secs(5), || {
        lab.has_addr("lb1", VIP)
    });
    n1.signal(libc::SIGKILL);
    let _n2 = start_node(&lab, "lb2", &[web.addr], &vrrp_table(200, 100, ""));
    lab.wait_for("lb2 master", Duration::from_secs(5), || {
        lab.has_addr("lb2", VIP)
    });
    assert!(
        lab.has_addr("lb1", VIP),
        "stale VIP still on the crashed node"
    );
    let _n1 = start_node(&lab, "lb1", &[web.addr], &table);
    lab.wait_for(
        "restart removes the stale VIP",
        Duration::from_secs(5),
        || !lab.has_addr("lb1", VIP),
    );
    assert_eq!(holders(&lab), (false, true));
}

#[test]
fn unhealthy_proxy_lowers_priority_and_hands_over() {
    if !netns_available("unhealthy_proxy_lowers_priority_and_hands_over") {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (lab, web) = lab();
    // lb1's only backend is a port nothing listens on: its proxy cannot serve.
    let dead: SocketAddr = "198.18.0.11:81".parse().unwrap();
    let n1 = start_node(
        &lab,
        "lb1",
        &[dead],
        &vrrp_table(150, 100, "track-weight = 60\n"),
    );
    let _n2 = start_node(&lab, "lb2", &[web.addr], &vrrp_table(100, 100, ""));
    // 150 − 60 = 90 < 100: lb2 must end up master and stay there.
    lab.wait_for("lb2 master", Duration::from_secs(5), || {
        holders(&lab) == (false, true)
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(holders(&lab), (false, true), "lb1: {}", n1.log());
    assert_eq!(
        get_status_from(&lab, "client", vip(), "/"),
        (200, "web1".into())
    );
}

#[test]
fn unhealthy_proxy_without_track_weight_enters_fault() {
    if !netns_available("unhealthy_proxy_without_track_weight_enters_fault") {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (lab, _web) = lab();
    let dead: SocketAddr = "198.18.0.11:81".parse().unwrap();
    let n1 = start_node(&lab, "lb1", &[dead], &vrrp_table(150, 100, ""));
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !lab.has_addr("lb1", VIP),
        "a node that cannot serve must not hold the VIP: {}",
        n1.log()
    );
    assert!(n1.log().contains("FAULT"), "{}", n1.log());
}

/// Sends raw IPv4 datagrams (header included) from `host` to `dst`.
fn inject(
    lab: &Lab,
    host: &str,
    dst: std::net::Ipv4Addr,
    src: std::net::Ipv4Addr,
    datagrams: Vec<Vec<u8>>,
) {
    lab.in_host(host, move || {
        let s = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::RAW,
            Some(socket2::Protocol::from(112)),
        )
        .unwrap();
        s.set_header_included_v4(true).unwrap();
        s.bind_device(Some(b"eth0")).unwrap();
        s.set_multicast_if_v4(&src).unwrap();
        let to = socket2::SockAddr::from(std::net::SocketAddrV4::new(dst, 0));
        for d in datagrams {
            s.send_to(&d, &to).unwrap();
        }
    });
}

fn admin_metrics(lab: &Lab, host: &str) -> String {
    support::netns::http_from(lab, host, "127.0.0.1:9100".parse().unwrap(), "/metrics").1
}

#[test]
fn master_reclaims_the_vip_after_a_lower_priority_master_appears() {
    if !netns_available("master_reclaims_the_vip_after_a_lower_priority_master_appears") {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    use std::net::Ipv4Addr;
    use vrrp::packet::{build_ipv4, Advert, ChecksumMode, VRRP_GROUP};
    let (lab, web) = lab();
    let _n1 = start_node(&lab, "lb1", &[web.addr], &vrrp_table(150, 100, ""));
    lab.wait_for("lb1 master", Duration::from_secs(5), || {
        lab.has_addr("lb1", VIP)
    });
    // A backup that stalled took over for a moment: its GARP moved the client
    // to its MAC, and its advert (priority 100) reaches the real master.
    // lb1's own burst of GARPs may still be in the client's receive backlog on
    // a loaded machine (CI once saw it overwrite the entry set here): let it
    // land, then set the entry until it reads back.
    std::thread::sleep(Duration::from_millis(300));
    let lb2_mac = lab.mac("lb2");
    lab.wait_for("client ARP on lb2", Duration::from_secs(3), || {
        let status = std::process::Command::new("ip")
            .args([
                "-n",
                &lab.ns("client"),
                "neigh",
                "replace",
                VIP,
                "lladdr",
                &lb2_mac,
            ])
            .args(["dev", "eth0", "nud", "stale"])
            .status()
            .unwrap();
        assert!(status.success());
        lab.neigh_mac("client", VIP).as_deref() == Some(lb2_mac.as_str())
    });
    let lb2_ip = Ipv4Addr::new(198, 18, 0, 4);
    let advert = Advert {
        vrid: 51,
        priority: 100,
        max_adver_int: 10,
        addresses: vec![VIP.parse().unwrap()],
    }
    .encode(lb2_ip, VRRP_GROUP, ChecksumMode::Rfc5798);
    inject(
        &lab,
        "lb2",
        VRRP_GROUP,
        lb2_ip,
        vec![build_ipv4(lb2_ip, VRRP_GROUP, 255, &advert)],
    );
    let lb1_mac = lab.mac("lb1");
    lab.wait_for("client ARP back on lb1", Duration::from_millis(500), || {
        lab.neigh_mac("client", VIP).as_deref() == Some(lb1_mac.as_str())
    });
    assert!(lab.has_addr("lb1", VIP), "lb1 stays master");
}

#[test]
fn rogue_priority_254_flood_is_obeyed_logged_and_counted() {
    if !netns_available("rogue_priority_254_flood_is_obeyed_logged_and_counted") {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    use std::net::Ipv4Addr;
    use vrrp::packet::{build_ipv4, Advert, ChecksumMode, VRRP_GROUP};
    let (lab, web) = lab();
    let n1 = start_node(&lab, "lb1", &[web.addr], &vrrp_table(150, 100, ""));
    lab.wait_for("lb1 master", Duration::from_secs(5), || {
        lab.has_addr("lb1", VIP)
    });
    let rogue = Ipv4Addr::new(198, 18, 0, 2);
    let advert = Advert {
        vrid: 51,
        priority: 254,
        max_adver_int: 10,
        addresses: vec![VIP.parse().unwrap()],
    }
    .encode(rogue, VRRP_GROUP, ChecksumMode::Rfc5798);
    // A bounded flood: 200 adverts within about a second.
    for _ in 0..20 {
        let burst = (0..10)
            .map(|_| build_ipv4(rogue, VRRP_GROUP, 255, &advert))
            .collect();
        inject(&lab, "client", VRRP_GROUP, rogue, burst);
        std::thread::sleep(Duration::from_millis(50));
    }
    // RFC 5798: a higher priority wins, so lb1 is backup while the flood lasts...
    assert!(
        !lab.has_addr("lb1", VIP),
        "lb1 kept the VIP against priority 254"
    );
    let m = admin_metrics(&lab, "lb1");
    assert_eq!(
        support::netns::metric(&m, "floatlb_vrrp_yielded_total{instance=\"vrrp0-51\"}"),
        Some(1.0),
        "{m}"
    );
    assert!(
        n1.log().contains("gave up MASTER") && n1.log().contains("198.18.0.2"),
        "not logged:\n{}",
        n1.log()
    );
    // ...and master again once it stops (Master_Down_Interval, learned 100 ms).
    lab.wait_for("lb1 master again", Duration::from_secs(3), || {
        lab.has_addr("lb1", VIP)
    });
}

#[test]
fn malformed_and_wrong_ttl_adverts_are_dropped_and_counted() {
    if !netns_available("malformed_and_wrong_ttl_adverts_are_dropped_and_counted") {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    use std::net::Ipv4Addr;
    use vrrp::packet::{build_ipv4, Advert, ChecksumMode, VRRP_GROUP};
    let (lab, web) = lab();
    let n1 = start_node(&lab, "lb1", &[web.addr], &vrrp_table(150, 100, ""));
    lab.wait_for("lb1 master", Duration::from_secs(5), || {
        lab.has_addr("lb1", VIP)
    });
    let rogue = Ipv4Addr::new(198, 18, 0, 2);
    let vip: Ipv4Addr = VIP.parse().unwrap();
    let advert = |vrid: u8, priority: u8| Advert {
        vrid,
        priority,
        max_adver_int: 10,
        addresses: vec![vip.into()],
    };
    let good = advert(51, 254).encode(rogue, VRRP_GROUP, ChecksumMode::Rfc5798);
    let mut bad_sum = good.clone();
    bad_sum[6] ^= 0xff;
    let mut v2 = good.clone();
    v2[0] = 0x21;
    let mut count_lie = good.clone();
    count_lie[3] = 4;
    let other_vrid = advert(52, 254).encode(rogue, VRRP_GROUP, ChecksumMode::Rfc5798);
    let packets = vec![
        build_ipv4(rogue, VRRP_GROUP, 64, &good), // priority 254, would win, but TTL 64
        build_ipv4(rogue, VRRP_GROUP, 255, &bad_sum),
        build_ipv4(rogue, VRRP_GROUP, 255, &v2),
        build_ipv4(rogue, VRRP_GROUP, 255, &count_lie),
        build_ipv4(rogue, VRRP_GROUP, 255, &good[..5]),
        build_ipv4(rogue, VRRP_GROUP, 255, &other_vrid),
    ];
    inject(&lab, "client", VRRP_GROUP, rogue, packets);
    std::thread::sleep(Duration::from_millis(300));
    let m = admin_metrics(&lab, "lb1");
    // Every VRRP series the Grafana dashboard queries exists.
    for name in support::dashboard_metric_names() {
        if name.starts_with("floatlb_vrrp_") {
            assert!(
                m.lines().any(|l| l.starts_with(&name)),
                "dashboard queries {name}"
            );
        }
    }
    let dropped = |reason: &str| {
        support::netns::metric(
            &m,
            &format!(
                "floatlb_vrrp_packets_dropped_total{{instance=\"vrrp0-51\",reason=\"{reason}\"}}"
            ),
        )
    };
    for reason in [
        "bad_ttl",
        "bad_checksum",
        "bad_version",
        "address_count_mismatch",
        "truncated",
        "vrid_mismatch",
    ] {
        assert_eq!(dropped(reason), Some(1.0), "{reason}:\n{m}");
    }
    assert!(
        lab.has_addr("lb1", VIP),
        "a dropped advert must not move the VIP: {}",
        n1.log()
    );
    assert_eq!(
        support::netns::metric(&m, "floatlb_vrrp_transitions_total{instance=\"vrrp0-51\"}"),
        Some(2.0),
        "{m}"
    );
}

#[test]
fn unicast_peers_fail_over_and_ignore_strangers() {
    if !netns_available("unicast_peers_fail_over_and_ignore_strangers") {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    use std::net::Ipv4Addr;
    use vrrp::packet::{build_ipv4, Advert, ChecksumMode};
    let (lab, web) = lab();
    let n1 = start_node(
        &lab,
        "lb1",
        &[web.addr],
        &vrrp_table(150, 100, "unicast-peers = [\"198.18.0.4\"]\n"),
    );
    let n2 = start_node(
        &lab,
        "lb2",
        &[web.addr],
        &vrrp_table(100, 100, "unicast-peers = [\"198.18.0.3\"]\n"),
    );
    lab.wait_for("lb1 master", Duration::from_secs(5), || {
        holders(&lab) == (true, false)
    });
    // A stranger claiming priority 254 straight at lb1 is not a peer.
    let stranger = Ipv4Addr::new(198, 18, 0, 2);
    let lb1 = Ipv4Addr::new(198, 18, 0, 3);
    let vip: Ipv4Addr = VIP.parse().unwrap();
    let msg = Advert {
        vrid: 51,
        priority: 254,
        max_adver_int: 10,
        addresses: vec![vip.into()],
    }
    .encode(stranger, lb1, ChecksumMode::Rfc5798);
    inject(
        &lab,
        "client",
        lb1,
        stranger,
        vec![build_ipv4(stranger, lb1, 255, &msg)],
    );
    std::thread::sleep(Duration::from_millis(300));
    let m = admin_metrics(&lab, "lb1");
    assert_eq!(
        support::netns::metric(
            &m,
            "floatlb_vrrp_packets_dropped_total{instance=\"vrrp0-51\",reason=\"not_a_peer\"}"
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        holders(&lab),
        (true, false),
        "lb1: {}\nlb2: {}",
        n1.log(),
        n2.log()
    );
    lab.link("lb1", false);
    lab.wait_for(
        "lb2 takes over over unicast",
        Duration::from_secs(3),
        || lab.has_addr("lb2", VIP),
    );
    lab.link("lb1", true);
    lab.wait_for("lb1 preempts over unicast", Duration::from_secs(3), || {
        holders(&lab) == (true, false)
    });
}

struct Keepalived {
    child: Child,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Keepalived {
    fn start(lab: &Lab, host: &str, priority: u8) -> Keepalived {
        Self::start_instance(lab, host, priority, 51, &format!("{VIP}/24"))
    }

    /// keepalived with one `vrrp_instance` of `vrid` for `vip` (either family).
    fn start_instance(lab: &Lab, host: &str, priority: u8, vrid: u8, vip: &str) -> Keepalived {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("keepalived.conf");
        std::fs::write(
            &conf,
            format!(
                "global_defs {{\n  vrrp_version 3\n  router_id {host}\n}}\nvrrp_instance VI_{vrid} {{\n  state BACKUP\n  interface eth0\n  virtual_router_id {vrid}\n  priority {priority}\n  advert_int 0.1\n  virtual_ipaddress {{\n    {vip}\n  }}\n}}\n"
            ),
        )
        .unwrap();
        let log = dir.path().join("keepalived.log");
        let p = |f: &str| dir.path().join(f);
        let child = lab
            .exec(host)
            .args(["keepalived", "-n", "-l", "-D", "-P", "-f"])
            .arg(&conf)
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
        Keepalived {
            child,
            log,
            _dir: dir,
        }
    }
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
    fn entered(&self, state: &str) -> usize {
        self.log()
            .matches(&format!("Entering {state} STATE"))
            .count()
    }
}

impl Drop for Keepalived {
    fn drop(&mut self) {
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

fn assert_no_complaints(k: &Keepalived) {
    let log = k.log();
    for word in ["checksum", "mismatch", "invalid", "Invalid", "TTL", "bogus"] {
        assert!(
            !log.contains(word),
            "keepalived complained ({word}):\n{log}"
        );
    }
}

#[test]
fn interop_with_keepalived_both_ways() {
    if !netns_available("interop_with_keepalived_both_ways") {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (lab, web) = lab();

    // floatlb master (150), keepalived backup (100).
    let n1 = start_node(&lab, "lb1", &[web.addr], &vrrp_table(150, 100, ""));
    lab.wait_for("floatlb master", Duration::from_secs(5), || {
        lab.has_addr("lb1", VIP)
    });
    let k = Keepalived::start(&lab, "lb2", 100);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(holders(&lab), (true, false), "keepalived:\n{}", k.log());
    assert_eq!(
        k.entered("MASTER"),
        0,
        "keepalived must stay backup:\n{}",
        k.log()
    );
    lab.link("lb1", false);
    lab.wait_for("keepalived takes over", Duration::from_secs(3), || {
        lab.has_addr("lb2", VIP)
    });
    lab.link("lb1", true);
    lab.wait_for(
        "floatlb preempts keepalived",
        Duration::from_secs(3),
        || holders(&lab) == (true, false),
    );
    assert_eq!(
        get_status_from(&lab, "client", vip(), "/"),
        (200, "web1".into())
    );
    assert_no_complaints(&k);
    drop(k);
    n1.stop();
    lab.wait_for("VIP released", Duration::from_secs(3), || {
        holders(&lab) == (false, false)
    });

    // keepalived master (150), floatlb backup (100).
    let k = Keepalived::start(&lab, "lb1", 150);
    lab.wait_for("keepalived master", Duration::from_secs(5), || {
        lab.has_addr("lb1", VIP)
    });
    let n2 = start_node(&lab, "lb2", &[web.addr], &vrrp_table(100, 100, ""));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(holders(&lab), (true, false), "floatlb:\n{}", n2.log());
    let m = admin_metrics(&lab, "lb2");
    assert_eq!(
        support::netns::metric(&m, "floatlb_vrrp_transitions_total{instance=\"vrrp0-51\"}"),
        Some(1.0),
        "floatlb must stay backup (INIT -> BACKUP only):\n{m}"
    );
    assert_eq!(
        support::netns::metric(
            &m,
            "floatlb_vrrp_packets_dropped_total{instance=\"vrrp0-51\",reason=\"bad_checksum\"}"
        ),
        Some(0.0)
    );
    lab.link("lb1", false);
    lab.wait_for(
        "floatlb takes over from keepalived",
        Duration::from_secs(3),
        || lab.has_addr("lb2", VIP),
    );
    assert_eq!(
        get_status_from(&lab, "client", vip(), "/"),
        (200, "web1".into())
    );
    lab.link("lb1", true);
    lab.wait_for(
        "keepalived preempts floatlb",
        Duration::from_secs(3),
        || holders(&lab) == (true, false),
    );
    assert_no_complaints(&k);
}

/// A minimal WebDriver client: one HTTP/1.1 request per call to chromedriver
/// on 127.0.0.1 (inside the host's namespace), returning the response body.
fn webdriver(lab: &Lab, host: &str, port: u16, method: &str, path: &str, body: &str) -> String {
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    lab.in_host(host, move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("chromedriver");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        // chromedriver keeps the connection open: read the head, then Content-Length bytes.
        let mut buf = Vec::new();
        let mut chunk = [0u8; 65536];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = s.read(&mut chunk).unwrap_or(0);
            if n == 0 {
                return String::new();
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + len {
            let n = s.read(&mut chunk).unwrap_or(0);
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8_lossy(&buf[head_end..]).into_owned()
    })
}

/// The string value of `"key":"..."` in a JSON text (enough for WebDriver replies).
fn json_field(text: &str, key: &str) -> Option<String> {
    let start = text.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let end = start + text[start..].find('"')?;
    Some(text[start..end].to_string())
}

struct KillOnDrop(Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn status_page_renders_and_updates_live_in_chromium() {
    if !netns_available("status_page_renders_and_updates_live_in_chromium") {
        return;
    }
    let browser = ["/usr/bin/chromium", "/usr/bin/chromedriver"];
    if let Some(missing) = browser.iter().find(|p| !std::path::Path::new(p).exists()) {
        if std::env::var("FLOATLB_REQUIRE_NETNS").as_deref() == Ok("1") {
            panic!("{missing} is missing: run vm-lab/install-deps (FLOATLB_REQUIRE_NETNS=1)");
        }
        eprintln!("SKIPPED status_page_renders_and_updates_live_in_chromium: {missing} is missing");
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (lab, web) = lab();
    let _n1 = start_node(&lab, "lb1", &[web.addr], &vrrp_table(150, 100, ""));
    lab.wait_for("lb1 master", Duration::from_secs(5), || {
        lab.has_addr("lb1", VIP)
    });
    let port = 9515;
    let _driver = KillOnDrop(
        lab.exec("lb1")
            .args(["/usr/bin/chromedriver", &format!("--port={port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    lab.wait_for("chromedriver", Duration::from_secs(10), || {
        lab.in_host("lb1", move || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
    });
    let caps = r#"{"capabilities":{"alwaysMatch":{"goog:chromeOptions":{"binary":"/usr/bin/chromium","args":["--headless=new","--no-sandbox","--disable-gpu","--disable-dev-shm-usage","--disable-background-networking","--disable-component-update","--window-size=1000,700"]}}}}"#;
    let reply = webdriver(&lab, "lb1", port, "POST", "/session", caps);
    let session = json_field(&reply, "sessionId").unwrap_or_else(|| panic!("no session: {reply}"));
    let base = format!("/session/{session}");
    webdriver(
        &lab,
        "lb1",
        port,
        "POST",
        &format!("{base}/url"),
        r#"{"url":"http://127.0.0.1:9100/status"}"#,
    );
    let source = || webdriver(&lab, "lb1", port, "GET", &format!("{base}/source"), "");
    let wait_source = |what: &str, pred: &dyn Fn(&str) -> bool| {
        let start = std::time::Instant::now();
        loop {
            let s = source();
            if pred(&s) {
                return s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "page never showed {what}: status.json {:?}\n{s}",
                support::netns::http_from(
                    &lab,
                    "lb1",
                    "127.0.0.1:9100".parse().unwrap(),
                    "/status.json"
                )
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_source("web1 UP and the MASTER role", &|s| {
        s.contains(r#"data-backend=\"web1\""#)
            && s.contains(r#"class=\"health UP\""#)
            && s.contains(r#"class=\"role MASTER\""#)
    });
    // The backend's host drops off the network: the same page (no reload)
    // shows it DOWN once health checks fail.
    lab.link("web", false);
    // No healthy backend and no track-weight: the instance goes to FAULT.
    wait_source("web1 DOWN and the FAULT role", &|s| {
        s.contains(r#"class=\"health DOWN\""#) && s.contains(r#"class=\"role FAULT\""#)
    });
    // Keep the latest screenshot beside the bench results.
    let shot = webdriver(&lab, "lb1", port, "GET", &format!("{base}/screenshot"), "");
    let b64 = json_field(&shot, "value").expect("screenshot");
    let mut dec = std::process::Command::new("base64")
        .arg("-d")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        dec.stdin.take().unwrap().write_all(b64.as_bytes()).unwrap();
    }
    let png = dec.wait_with_output().unwrap().stdout;
    assert!(png.starts_with(b"\x89PNG"), "screenshot is not a PNG");
    // Into the build's scratch folder, not the checkout: the tests leave the tree as they
    // found it. `bench/results/status-page.png` is a copy of one taken this way.
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let _ = std::fs::create_dir_all(dir);
    std::fs::write(dir.join("status-page.png"), png).unwrap();
    webdriver(&lab, "lb1", port, "DELETE", &base, "");
}

/// Delayed ACKs the kernel sent from `host`'s namespace (TcpExt DelayedACKs): each is a
/// delayed-ACK timer that fired because nothing else carried the ACK in time.
fn delayed_acks(lab: &Lab, host: &str) -> u64 {
    let out = lab
        .exec(host)
        .args(["cat", "/proc/net/netstat"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut tcp_ext = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (tcp_ext.next().unwrap(), tcp_ext.next().unwrap());
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "DelayedACKs")
        .and_then(|(_, v)| v.parse().ok())
        .expect("TcpExt DelayedACKs")
}

/// Reads one answer (head byte by byte, then Content-Length bytes); returns the status.
fn read_answer(s: &mut std::net::TcpStream) -> u16 {
    use std::io::Read;
    let mut head = Vec::new();
    let mut b = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut b).unwrap(), 1, "closed mid-head: {head:?}");
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    head[9..12].parse().unwrap()
}

/// With delayed ACKs on client sockets (the answer carries the request's ACK), a request
/// that arrives in pieces must still be acknowledged at once: a client whose Nagle holds
/// the next piece until the first is acknowledged would otherwise wait for the delayed-ACK
/// timer (at least 40 ms) on every such request. Counted, not timed: the delayed ACKs the
/// balancer's namespace sends while a Nagle client writes (a) a head in two pieces on new
/// connections and (b) keep-alive POSTs with the body written after the head, against the
/// same requests written whole. 100 ms between requests lets every armed timer fire, so a
/// regression adds one per request (8), and only a stall in most requests could pass for one.
#[test]
fn requests_in_pieces_are_acknowledged_at_once() {
    if !netns_available("requests_in_pieces_are_acknowledged_at_once") {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (lab, web) = lab();
    let _n = start_node_with(&lab, "lb1", "[health]\nenabled = false\n", &[web.addr], "");
    let lb: SocketAddr = "198.18.0.3:80".parse().unwrap();
    lab.wait_for("lb1 serves", Duration::from_secs(5), || {
        support::netns::http_from(&lab, "client", lb, "/").0 == 200
    });
    const N: usize = 8;
    let count = |pieces: bool, keep_alive: bool| -> u64 {
        let before = delayed_acks(&lab, "lb1");
        lab.in_host("client", move || {
            use std::io::Write;
            let connect = || {
                let s = std::net::TcpStream::connect(lb).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                assert!(!s.nodelay().unwrap(), "the client must use Nagle");
                s
            };
            let mut kept = keep_alive.then(connect);
            for _ in 0..N {
                let (head, body): (&[u8], &[u8]) = if keep_alive {
                    (
                        b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\n",
                        b"hello",
                    )
                } else {
                    (
                        b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                        b"",
                    )
                };
                let mut fresh = None;
                let s = match kept.as_mut() {
                    Some(s) => s,
                    None => fresh.insert(connect()),
                };
                if pieces {
                    // (a) splits the head; (b) writes the body after the head.
                    let cut = if keep_alive { head.len() } else { 10 };
                    s.write_all(&head[..cut]).unwrap();
                    s.write_all(&[&head[cut..], body].concat()).unwrap();
                } else {
                    s.write_all(&[head, body].concat()).unwrap();
                }
                assert_eq!(read_answer(s), 200);
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        delayed_acks(&lab, "lb1") - before
    };
    for keep_alive in [false, true] {
        let whole = count(false, keep_alive);
        let pieces = count(true, keep_alive);
        assert!(
            pieces <= whole + 2,
            "{} requests in pieces cost {pieces} delayed ACKs, written whole {whole}: \
             the balancer waits for its delayed-ACK timer before the next piece can come",
            if keep_alive {
                "keep-alive POST"
            } else {
                "one-request"
            }
        );
    }
}

/// A planned handover with a WebSocket client connected through the VIP: the
/// tunnel is closed in order (a FIN, after every other connection finished),
/// not reset, the node exits cleanly and the backup serves new WebSockets.
/// The echo server is Debian's python3-websockets in the web namespace.
#[test]
fn graceful_handover_closes_a_websocket_tunnel_with_a_fin() {
    if !netns_available("graceful_handover_closes_a_websocket_tunnel_with_a_fin") {
        return;
    }
    let python = "/usr/bin/python3";
    let has_ws = std::process::Command::new(python)
        .args(["-c", "import websockets"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_ws {
        let why = "python3-websockets is not installed (vm-lab/install-deps)";
        assert!(
            std::env::var("FLOATLB_REQUIRE_NETNS").as_deref() != Ok("1"),
            "{why}"
        );
        eprintln!("SKIPPED graceful_handover_closes_a_websocket_tunnel_with_a_fin: {why}");
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (lab, _web) = lab();
    let script = format!("{}/tests/support/ws.py", env!("CARGO_MANIFEST_DIR"));
    let mut server = lab
        .exec("web")
        .args([python, &script, "server", "8080", "198.18.0.11"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "listening");
    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _server = Kill(server);
    let ws: SocketAddr = "198.18.0.11:8080".parse().unwrap();
    // A drain bound far past the exit wait below: only closing the tunnel lets lb1 exit.
    let no_health = "[health]\nenabled = false\n[timeouts]\ndrain = \"60s\"\n";
    let mut n1 = start_node_with(&lab, "lb1", no_health, &[ws], &vrrp_table(150, 100, ""));
    let _n2 = start_node_with(&lab, "lb2", no_health, &[ws], &vrrp_table(100, 100, ""));
    lab.wait_for("lb1 holds the VIP", Duration::from_secs(5), || {
        holders(&lab) == (true, false)
    });
    // RFC 6455 §4.1 opening handshake and one masked frame, echoed.
    let open = || -> std::net::TcpStream {
        let mut s = std::net::TcpStream::connect(vip()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        support::websocket_handshake(&mut s);
        support::websocket_echo_hi(&mut s);
        s
    };
    let mut tunnel = lab.in_host("client", open);
    n1.signal(libc::SIGTERM);
    let read = lab.in_host("client", move || {
        let mut rest = Vec::new();
        std::io::Read::read_to_end(&mut tunnel, &mut rest)
    });
    assert!(
        read.is_ok(),
        "the tunnel was reset, not closed: {read:?}\n{}",
        n1.log()
    );
    lab.wait_for("lb2 takes the VIP", Duration::from_secs(5), || {
        lab.has_addr("lb2", VIP)
    });
    let start = std::time::Instant::now();
    let code = loop {
        if let Some(code) = n1.child.try_wait().unwrap() {
            break code;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "lb1 did not exit:\n{}",
            n1.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(code.success(), "{code:?}\n{}", n1.log());
    // The backup serves new WebSockets through the VIP.
    drop(lab.in_host("client", open));
}

fn admin_status(lab: &Lab, host: &str) -> String {
    support::netns::http_from(lab, host, "127.0.0.1:9100".parse().unwrap(), "/status.json").1
}

/// Rewrites a node's `[[vrrp]]` table (`from` -> `to`), sends SIGHUP and
/// waits (bounded) until the node logs that the reload was applied or refused.
fn reload_vrrp(node: &Node, from: &str, to: &str) -> bool {
    let path = node._dir.path().join("proxy.toml");
    let cfg = std::fs::read_to_string(&path).unwrap();
    assert!(cfg.contains(from), "{cfg}");
    std::fs::write(&path, cfg.replace(from, to)).unwrap();
    let count = |log: &str| {
        (
            log.matches("configuration reloaded").count(),
            log.matches("reload failed").count(),
        )
    };
    let before = count(&node.log());
    node.signal(libc::SIGHUP);
    let start = std::time::Instant::now();
    loop {
        let now = count(&node.log());
        if now.0 > before.0 {
            return true;
        }
        if now.1 > before.1 {
            return false;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no reload:\n{}",
            node.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGHUP with a new `[[vrrp]]` priority and advert interval: the master
/// keeps the VIP and its role (no transition), and its adverts carry the new
/// values at once (RFC 5798 §6.4.3), as the backup's view of them shows; a
/// VRID change needs a restart and is refused with the VIP kept; VIPs and
/// peers change live; a priority under the backup's lets the preempting
/// backup take over (§6.4.2).
#[test]
fn reload_changes_vrrp_priority_and_interval_and_keeps_the_vip() {
    if !netns_available("reload_changes_vrrp_priority_and_interval_and_keeps_the_vip") {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (lab, web) = lab();
    let (n1, n2) = lb1_master_pair(&lab, &web);
    let transitions = |host: &str| {
        let s = admin_status(&lab, host);
        let i = s.find("\"transitions\":").expect("transitions") + 14;
        s[i..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .to_string()
    };
    let before = transitions("lb1");

    let (old, new) = (vrrp_table(150, 100, ""), vrrp_table(140, 50, ""));
    assert!(reload_vrrp(&n1, &old, &new), "{}", n1.log());
    let seen =
        "\"last_peer_advert\":{\"address\":\"198.18.0.3\",\"priority\":140,\"interval_ms\":50,";
    let start = std::time::Instant::now();
    while !admin_status(&lab, "lb2").contains(seen) {
        assert_eq!(
            holders(&lab),
            (true, false),
            "the VIP moved during the reload"
        );
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "lb2 never saw the new advert: {}",
            admin_status(&lab, "lb2")
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Settled on the new values: still one holder, no state change on lb1.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(holders(&lab), (true, false));
    assert_eq!(transitions("lb1"), before, "lb1 changed state");
    assert!(admin_status(&lab, "lb1").contains("\"state\":\"MASTER\",\"priority\":140"));
    assert_eq!(get_status_from(&lab, "client", vip(), "/").0, 200);

    // Another VRID is another instance: refused, the running one untouched.
    let other = new.replace("vrid = 51", "vrid = 52");
    assert!(
        !reload_vrrp(&n1, &new, &other),
        "a VRID change was accepted"
    );
    assert!(n1.log().contains("needs a restart"), "{}", n1.log());
    assert_eq!(holders(&lab), (true, false));
    assert!(admin_status(&lab, "lb1").contains("\"priority\":140"));

    // A second VIP comes up on the master, and goes again, the first staying.
    let two = new.replace(
        &format!("[\"{VIP}/24\"]"),
        &format!("[\"{VIP}/24\", \"198.18.0.101/24\"]"),
    );
    assert!(reload_vrrp(&n1, &other, &two), "{}", n1.log());
    assert!(lab.has_addr("lb1", "198.18.0.101") && lab.has_addr("lb1", VIP));
    assert!(reload_vrrp(&n1, &two, &new), "{}", n1.log());
    assert!(!lab.has_addr("lb1", "198.18.0.101") && lab.has_addr("lb1", VIP));
    assert_eq!(transitions("lb1"), before, "lb1 changed state");

    // New peers reopen the advert socket: unicast to a host that is not there,
    // lb2 hears nothing and takes the VIP as well; back to multicast, lb2 hears
    // the higher priority and yields (§6.4.3), lb1 never having left MASTER.
    let nobody = vrrp_table(140, 50, "unicast-peers = [\"198.18.0.9\"]\n");
    assert!(reload_vrrp(&n1, &new, &nobody), "{}", n1.log());
    lab.wait_for("lb2 misses lb1's adverts", Duration::from_secs(5), || {
        holders(&lab) == (true, true)
    });
    assert!(reload_vrrp(&n1, &nobody, &new), "{}", n1.log());
    lab.wait_for("lb2 hears lb1 again", Duration::from_secs(5), || {
        holders(&lab) == (true, false)
    });
    assert_eq!(transitions("lb1"), before, "lb1 changed state");

    // Under the backup's 100: lb2 (preempt) discards lb1's adverts and takes over.
    assert!(
        reload_vrrp(&n1, &new, &vrrp_table(90, 50, "")),
        "{}",
        n1.log()
    );
    lab.wait_for("lb2 preempts", Duration::from_secs(5), || {
        holders(&lab) == (false, true)
    });
    drop(n2);
}

// ---- IPv6 (RFC 5798 over IPv6; addresses from 2001:2::/48) ----

const VIP6: &str = "2001:2::100";

/// The IPv4 lab plus 2001:2::/64 beside it (client ::2, lb1 ::3, lb2 ::4,
/// web ::11); the web backend listens on its IPv6 address.
fn lab6() -> (Lab, TestBackend) {
    let mut lab = Lab::new();
    for (host, n) in [("client", 2), ("lb1", 3), ("lb2", 4), ("web", 11)] {
        lab.host(host, &format!("198.18.0.{n}/24"));
        lab.add_addr(host, &format!("2001:2::{n}/64"));
        // Linux flushes IPv6 addresses when a link is set down; a pulled
        // cable (what `Lab::link` stands for) keeps them.
        let ok = lab
            .exec(host)
            .args(["sysctl", "-qw", "net.ipv6.conf.eth0.keep_addr_on_down=1"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "sysctl keep_addr_on_down in {host}");
    }
    let web = lab.in_host("web", || TestBackend::start_on("web1", "[2001:2::11]:80"));
    (lab, web)
}

fn vrrp_table6(priority: u8, advert_ms: u64, extra: &str) -> String {
    format!(
        "[[vrrp]]\ninterface = \"eth0\"\nvrid = 61\npriority = {priority}\nadvert-interval = \"{advert_ms}ms\"\nvirtual-addresses = [\"{VIP6}/64\"]\n{extra}"
    )
}

fn start_node6(lab: &Lab, host: &str, backends: &[SocketAddr], vrrp: &str) -> Node {
    let health = "[health]\ninterval = \"100ms\"\ntimeout = \"100ms\"\nrise = 1\nfall = 1\n";
    start_node_listening(lab, host, "[::]:80", health, backends, vrrp)
}

fn vip6() -> SocketAddr {
    format!("[{VIP6}]:80").parse().unwrap()
}

fn holders6(lab: &Lab) -> (bool, bool) {
    (lab.has_addr6("lb1", VIP6), lab.has_addr6("lb2", VIP6))
}

/// RFC 5798 over IPv6: the higher priority becomes master (§6.4.2), the pair
/// settles on one holder; cutting the master's link moves the VIP (§6.4.2
/// Master_Down_Timer) and the new master's unsolicited neighbour
/// advertisement (RFC 4861 §7.2.6, Override set) moves the client's
/// neighbour entry without any traffic from the client; HTTP over IPv6 to an
/// IPv6 backend works before and after, and X-Forwarded-For carries the
/// client's IPv6 address.
#[test]
fn ipv6_pair_elects_one_master_and_link_loss_moves_vip_and_neighbour_entry() {
    if !netns_available("ipv6_pair_elects_one_master_and_link_loss_moves_vip_and_neighbour_entry") {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (lab, web) = lab6();
    // Dual stack: the IPv4 instance beside it uses the same VRID, which RFC
    // 5798 allows (one virtual router per family).
    let dual = |priority: u8| {
        vrrp_table(priority, 100, "")
            + &vrrp_table6(priority, 100, "").replace("vrid = 61", "vrid = 51")
    };
    let n1 = start_node6(&lab, "lb1", &[web.addr], &dual(150));
    let n2 = start_node6(&lab, "lb2", &[web.addr], &dual(100));
    lab.wait_for("lb1 holds the IPv6 VIP", Duration::from_secs(6), || {
        holders6(&lab) == (true, false)
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        (holders6(&lab), holders(&lab)),
        ((true, false), (true, false)),
        "lb1: {}\nlb2: {}",
        n1.log(),
        n2.log()
    );
    let m = admin_metrics(&lab, "lb2");
    assert_eq!(
        support::netns::metric(
            &m,
            "floatlb_vrrp_packets_dropped_total{instance=\"vrrp1-51\",reason=\"wrong_family\"}"
        ),
        Some(0.0),
        "an IPv4 advert reached the IPv6 instance:\n{m}"
    );
    // The status page names the IPv6 master by its link-local address.
    let admin: SocketAddr = "127.0.0.1:9100".parse().unwrap();
    let (status, json) = support::netns::http_from(&lab, "lb2", admin, "/status.json");
    assert_eq!(status, 200);
    assert!(
        json.contains("\"instance\":\"vrrp1-51\",\"state\":\"BACKUP\"")
            && json.contains("\"last_peer_advert\":{\"address\":\"fe80::"),
        "{json}"
    );
    assert_eq!(
        get_status_from(&lab, "client", vip6(), "/"),
        (200, "web1".into()),
        "lb1: {}",
        n1.log()
    );
    let (status, headers) = support::netns::http_from(&lab, "client", vip6(), "/headers");
    assert_eq!(status, 200);
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("x-forwarded-for: 2001:2::2"),
        "{headers}"
    );
    assert_eq!(
        lab.neigh_mac("client", VIP6).as_deref(),
        Some(lab.mac("lb1").as_str())
    );

    lab.link("lb1", false);
    lab.wait_for("lb2 takes the IPv6 VIP", Duration::from_secs(3), || {
        lab.has_addr6("lb2", VIP6)
    });
    lab.wait_for("lb2 takes the IPv4 VIP", Duration::from_secs(3), || {
        lab.has_addr("lb2", VIP)
    });
    let lb2_mac = lab.mac("lb2");
    lab.wait_for(
        "client neighbour entry moved by the unsolicited NA",
        Duration::from_secs(1),
        || lab.neigh_mac("client", VIP6).as_deref() == Some(lb2_mac.as_str()),
    );
    assert_eq!(
        get_status_from(&lab, "client", vip6(), "/"),
        (200, "web1".into())
    );
    lab.link("lb1", true);
    lab.wait_for("lb1 preempts over IPv6", Duration::from_secs(3), || {
        holders6(&lab) == (true, false) && holders(&lab) == (true, false)
    });
}

/// tshark (Wireshark's dissectors, an implementation independent of ours)
/// reads floatlb's IPv6 adverts as VRRPv3 (RFC 5798 §5.1: version 3, type 1)
/// from the link-local address (§5.1.2.1) to ff02::12 (§5.1.2.2) with Hop
/// Limit 255 (§5.1.2.3) and a good checksum over the IPv6 pseudo-header
/// (§5.2.8); and the VIP's unsolicited neighbour advertisement as ICMPv6 136
/// with Override set and a good checksum (RFC 4861 §7.2.6, §4.4).
#[test]
fn tshark_decodes_ipv6_adverts_and_neighbour_advertisements() {
    if !netns_available("tshark_decodes_ipv6_adverts_and_neighbour_advertisements") {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (lab, web) = lab6();
    let capture = lab
        .exec("client")
        .args([
            "tshark",
            "-n",
            "-l",
            "-i",
            "eth0",
            "-a",
            "duration:5",
            "-f",
            "ip6",
            "-Y",
            "vrrp or icmpv6.type == 136",
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-e",
            "ipv6.src",
            "-e",
            "ipv6.dst",
            "-e",
            "ipv6.hlim",
            "-e",
            "vrrp.version",
            "-e",
            "vrrp.type",
            "-e",
            "vrrp.virt_rtr_id",
            "-e",
            "vrrp.prio",
            "-e",
            "vrrp.ipv6_addr",
            "-e",
            "vrrp.checksum.status",
            "-e",
            "icmpv6.type",
            "-e",
            "icmpv6.nd.na.flag.o",
            "-e",
            "icmpv6.nd.na.target_address",
            "-e",
            "icmpv6.checksum.status",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("tshark (vm-lab/install-deps installs it)");
    // tshark needs a moment before it captures.
    std::thread::sleep(Duration::from_millis(1500));
    let n1 = start_node6(&lab, "lb1", &[web.addr], &vrrp_table6(150, 100, ""));
    let out = capture.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split('|').collect()).collect();
    let lb1_ll = rows
        .iter()
        .find(|r| r.len() > 12 && r[3] == "3")
        .map(|r| r[0].to_string())
        .unwrap_or_else(|| panic!("no VRRP advert captured:\n{text}\nlb1: {}", n1.log()));
    assert!(
        lb1_ll.starts_with("fe80:"),
        "source {lb1_ll} is not link-local"
    );
    let adverts: Vec<_> = rows
        .iter()
        .filter(|r| r.len() > 12 && r[3] == "3")
        .collect();
    assert!(adverts.len() >= 5, "{text}");
    for r in &adverts {
        assert_eq!(
            &r[..8],
            &[
                lb1_ll.as_str(),
                "ff02::12",
                "255",
                "3",
                "1",
                "61",
                "150",
                VIP6
            ][..],
            "{text}"
        );
        // Wireshark's checksum status: 1 = good (0 = bad, 2 = unverified).
        assert_eq!(r[8], "1", "VRRP checksum not good: {text}");
    }
    let nas: Vec<_> = rows
        .iter()
        .filter(|r| r.len() > 12 && r[9] == "136")
        .collect();
    assert!(!nas.is_empty(), "no unsolicited NA captured:\n{text}");
    for r in &nas {
        assert_eq!(&r[..3], &[VIP6, "ff02::1", "255"][..], "{text}");
        assert!(matches!(r[10], "1" | "True"), "Override flag: {text}");
        assert_eq!(r[11], VIP6, "{text}");
        assert_eq!(r[12], "1", "ICMPv6 checksum not good: {text}");
    }
}

/// floatlb and keepalived 2.2.7 (`vrrp_version 3`) form one IPv6 virtual
/// router, both ways round: neither complains about the other's adverts
/// (checksum over the IPv6 pseudo-header, §5.2.8; address list, §5.2.9), the
/// backup stays backup while the master advertises, and takes the VIP when
/// the master's link is cut.
#[test]
fn interop_with_keepalived_over_ipv6_both_ways() {
    if !netns_available("interop_with_keepalived_over_ipv6_both_ways") {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (lab, web) = lab6();
    let kvip = format!("{VIP6}/64");

    // floatlb master (150), keepalived backup (100).
    let n1 = start_node6(&lab, "lb1", &[web.addr], &vrrp_table6(150, 100, ""));
    lab.wait_for("floatlb master", Duration::from_secs(6), || {
        lab.has_addr6("lb1", VIP6)
    });
    let k = Keepalived::start_instance(&lab, "lb2", 100, 61, &kvip);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(holders6(&lab), (true, false), "keepalived:\n{}", k.log());
    assert_eq!(
        k.entered("MASTER"),
        0,
        "keepalived must stay backup:\n{}",
        k.log()
    );
    lab.link("lb1", false);
    lab.wait_for("keepalived takes over", Duration::from_secs(3), || {
        lab.has_addr6("lb2", VIP6)
    });
    lab.link("lb1", true);
    lab.wait_for(
        "floatlb preempts keepalived",
        Duration::from_secs(4),
        || holders6(&lab) == (true, false),
    );
    assert_eq!(
        get_status_from(&lab, "client", vip6(), "/"),
        (200, "web1".into()),
        "lb1: {}",
        n1.log()
    );
    assert_no_complaints(&k);
    drop(k);
    n1.stop();
    lab.wait_for("VIP released", Duration::from_secs(3), || {
        holders6(&lab) == (false, false)
    });

    // keepalived master (150), floatlb backup (100).
    let k = Keepalived::start_instance(&lab, "lb1", 150, 61, &kvip);
    lab.wait_for("keepalived master", Duration::from_secs(6), || {
        lab.has_addr6("lb1", VIP6)
    });
    let n2 = start_node6(&lab, "lb2", &[web.addr], &vrrp_table6(100, 100, ""));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(holders6(&lab), (true, false), "floatlb:\n{}", n2.log());
    let m = admin_metrics(&lab, "lb2");
    assert_eq!(
        support::netns::metric(&m, "floatlb_vrrp_transitions_total{instance=\"vrrp0-61\"}"),
        Some(1.0),
        "floatlb must stay backup (INIT -> BACKUP only):\n{m}"
    );
    for reason in [
        "bad_checksum",
        "bad_ttl",
        "address_count_mismatch",
        "wrong_family",
    ] {
        assert_eq!(
            support::netns::metric(
                &m,
                &format!("floatlb_vrrp_packets_dropped_total{{instance=\"vrrp0-61\",reason=\"{reason}\"}}")
            ),
            Some(0.0),
            "{reason}:\n{m}"
        );
    }
    assert!(
        support::netns::metric(
            &m,
            "floatlb_vrrp_adverts_received_total{instance=\"vrrp0-61\"}"
        )
        .is_some_and(|n| n > 5.0),
        "{m}"
    );
    lab.link("lb1", false);
    lab.wait_for(
        "floatlb takes over from keepalived",
        Duration::from_secs(3),
        || lab.has_addr6("lb2", VIP6),
    );
    assert_eq!(
        get_status_from(&lab, "client", vip6(), "/"),
        (200, "web1".into())
    );
    lab.link("lb1", true);
    lab.wait_for(
        "keepalived preempts floatlb",
        Duration::from_secs(4),
        || holders6(&lab) == (true, false),
    );
    assert_no_complaints(&k);
}

const VIP6_ETH1: &str = "2001:2:1::100";

/// `lab()` plus an eth1 on lb1 and lb2 (2001:2:1::/64) for the IPv6 instance
/// of a sync group.
fn group_lab() -> (Lab, TestBackend) {
    let (mut lab, web) = lab();
    for (host, n) in [("lb1", 3), ("lb2", 4)] {
        lab.extra_link(host, "eth1", &format!("2001:2:1::{n}/64"));
        let ok = lab
            .exec(host)
            .args(["sysctl", "-qw", "net.ipv6.conf.eth1.keep_addr_on_down=1"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok);
    }
    (lab, web)
}

/// An IPv4 instance on eth0 and an IPv6 one on eth1, both in group "web".
fn group_tables(prio4: u8, prio6: u8) -> String {
    let v4 = vrrp_table(prio4, 100, "group = \"web\"\n");
    format!(
        "{v4}[[vrrp]]\ninterface = \"eth1\"\nvrid = 61\npriority = {prio6}\nadvert-interval = \"100ms\"\nvirtual-addresses = [\"{VIP6_ETH1}/64\"]\ngroup = \"web\"\n"
    )
}

fn holds_both(lab: &Lab, host: &str) -> bool {
    lab.has_addr(host, VIP) && lab.has_addr6(host, VIP6_ETH1)
}

fn holds_none(lab: &Lab, host: &str) -> bool {
    !lab.has_addr(host, VIP) && !lab.has_addr6(host, VIP6_ETH1)
}

/// A sync group (keepalived's vrrp_sync_group) moves both families together:
/// each node runs an IPv4 instance on eth0 and an IPv6 instance on eth1 in
/// group "web". Cutting only lb1's eth1 faults its IPv6 instance; its IPv4
/// instance follows into FAULT although eth0 is fine, so lb2 holds both VIPs.
/// When eth1 returns, lb1 takes both back.
#[test]
fn sync_group_moves_both_families_when_one_instance_faults() {
    if !netns_available("sync_group_moves_both_families_when_one_instance_faults") {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (lab, web) = group_lab();
    let n1 = start_node(&lab, "lb1", &[web.addr], &group_tables(150, 150));
    let _n2 = start_node(&lab, "lb2", &[web.addr], &group_tables(100, 100));
    lab.wait_for("lb1 holds both VIPs", Duration::from_secs(6), || {
        holds_both(&lab, "lb1") && holds_none(&lab, "lb2")
    });

    lab.link_named("lb1", "eth1", false);
    lab.wait_for("lb2 holds both VIPs", Duration::from_secs(3), || {
        holds_both(&lab, "lb2")
    });
    lab.wait_for(
        "lb1 released the IPv4 VIP too",
        Duration::from_secs(1),
        || !lab.has_addr("lb1", VIP),
    );
    assert!(
        n1.log().contains("following sync group"),
        "lb1: {}",
        n1.log()
    );
    assert_eq!(
        get_status_from(&lab, "client", vip(), "/"),
        (200, "web1".into())
    );

    lab.link_named("lb1", "eth1", true);
    lab.wait_for("lb1 takes both back", Duration::from_secs(4), || {
        holds_both(&lab, "lb1") && holds_none(&lab, "lb2")
    });
}

/// The other half of a sync group: a member that loses the election
/// (§6.4.3, a higher-priority advert) takes its group with it. lb2 holds both
/// VIPs; lb1 joins with a higher IPv4 priority (150 > 100) but a lower IPv6
/// one (150 < 200). lb2's IPv4 instance yields, so its IPv6 instance steps
/// down too, and both families end on lb1 instead of being split.
#[test]
fn sync_group_follows_a_member_that_yields() {
    if !netns_available("sync_group_follows_a_member_that_yields") {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (lab, web) = group_lab();
    let n2 = start_node(&lab, "lb2", &[web.addr], &group_tables(100, 200));
    lab.wait_for("lb2 holds both VIPs", Duration::from_secs(6), || {
        holds_both(&lab, "lb2")
    });
    let _n1 = start_node(&lab, "lb1", &[web.addr], &group_tables(150, 150));
    lab.wait_for("both families move to lb1", Duration::from_secs(6), || {
        holds_both(&lab, "lb1") && holds_none(&lab, "lb2")
    });
    assert!(
        n2.log().contains("another member gave up MASTER"),
        "lb2: {}",
        n2.log()
    );
}

/// A crash (SIGKILL) leaves an IPv6 VIP on the interface as it does an IPv4
/// one; `floatlb release` removes it, and so does a restart before the node
/// runs as a backup.
#[test]
fn ipv6_stale_vip_is_removed_by_release_and_by_restart() {
    if !netns_available("ipv6_stale_vip_is_removed_by_release_and_by_restart") {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (lab, web) = lab6();
    let table = vrrp_table6(150, 100, "");
    let n1 = start_node6(&lab, "lb1", &[web.addr], &table);
    lab.wait_for("lb1 master", Duration::from_secs(6), || {
        lab.has_addr6("lb1", VIP6)
    });
    let config = n1._dir.path().join("proxy.toml");
    n1.signal(libc::SIGKILL);
    std::thread::sleep(Duration::from_millis(200));
    assert!(lab.has_addr6("lb1", VIP6), "SIGKILL cannot remove the VIP");
    let out = lab
        .exec("lb1")
        .arg(env!("CARGO_BIN_EXE_floatlb"))
        .args(["release", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("removed {VIP6}/64 on eth0")),
        "{stdout}"
    );
    assert!(!lab.has_addr6("lb1", VIP6), "release removed the VIP");

    let n1 = start_node6(&lab, "lb1", &[web.addr], &table);
    lab.wait_for("lb1 master again", Duration::from_secs(6), || {
        lab.has_addr6("lb1", VIP6)
    });
    n1.signal(libc::SIGKILL);
    let _n2 = start_node6(&lab, "lb2", &[web.addr], &vrrp_table6(200, 100, ""));
    lab.wait_for("lb2 master", Duration::from_secs(6), || {
        lab.has_addr6("lb2", VIP6)
    });
    assert!(
        lab.has_addr6("lb1", VIP6),
        "stale VIP still on the crashed node"
    );
    let _n1 = start_node6(&lab, "lb1", &[web.addr], &table);
    lab.wait_for(
        "restart removes the stale VIP",
        Duration::from_secs(6),
        || !lab.has_addr6("lb1", VIP6),
    );
    assert_eq!(holders6(&lab), (false, true));
}

/// The link-local address of a host's eth0.
/// The host's link-local address, once duplicate address detection is done
/// with it (a tentative address cannot be bound or sent from).
fn link_local(lab: &Lab, host: &str) -> String {
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

/// Unicast IPv6 adverts (for segments without multicast): each node names
/// the other's link-local address, which is where IPv6 adverts come from
/// (RFC 5798 §5.1.2.1); the pair elects one master and fails over.
#[test]
fn ipv6_unicast_peers_by_link_local_address() {
    if !netns_available("ipv6_unicast_peers_by_link_local_address") {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (lab, web) = lab6();
    // The link-local addresses exist once duplicate address detection is done.
    let (ll1, ll2) = (link_local(&lab, "lb1"), link_local(&lab, "lb2"));
    let peer = |p: &str| format!("unicast-peers = [\"{p}\"]\n");
    let n1 = start_node6(
        &lab,
        "lb1",
        &[web.addr],
        &vrrp_table6(150, 100, &peer(&ll2)),
    );
    let n2 = start_node6(
        &lab,
        "lb2",
        &[web.addr],
        &vrrp_table6(100, 100, &peer(&ll1)),
    );
    lab.wait_for("lb1 holds the IPv6 VIP", Duration::from_secs(6), || {
        holders6(&lab) == (true, false)
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        holders6(&lab),
        (true, false),
        "lb1: {}\nlb2: {}",
        n1.log(),
        n2.log()
    );
    lab.link("lb1", false);
    lab.wait_for(
        "lb2 takes over over unicast",
        Duration::from_secs(3),
        || lab.has_addr6("lb2", VIP6),
    );
    lab.link("lb1", true);
    lab.wait_for("lb1 preempts over unicast", Duration::from_secs(4), || {
        holders6(&lab) == (true, false)
    });
}

/// The receive checks of RFC 5798 §7.1 over IPv6, on the real socket path
/// (Hop Limit and destination from IPV6_HOPLIMIT / IPV6_PKTINFO): a
/// winning advert with Hop Limit 64, a bad checksum over the IPv6
/// pseudo-header, version 2, a count that does not match the 16-byte
/// addresses, and another VRID are each dropped and counted, and the master
/// keeps the VIP.
#[test]
fn ipv6_malformed_and_wrong_hop_limit_adverts_are_dropped_and_counted() {
    if !netns_available("ipv6_malformed_and_wrong_hop_limit_adverts_are_dropped_and_counted") {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    use std::net::{IpAddr, Ipv6Addr, SocketAddrV6};
    use vrrp::packet::{Advert, ChecksumMode, VRRP_GROUP_V6};
    let (lab, web) = lab6();
    let n1 = start_node6(&lab, "lb1", &[web.addr], &vrrp_table6(150, 100, ""));
    lab.wait_for("lb1 master", Duration::from_secs(6), || {
        lab.has_addr6("lb1", VIP6)
    });
    let rogue: Ipv6Addr = link_local(&lab, "client").parse().unwrap();
    let advert = |vrid: u8, priority: u8| Advert {
        vrid,
        priority,
        max_adver_int: 10,
        addresses: vec![IpAddr::V6(VIP6.parse().unwrap())],
    };
    let good = advert(61, 254).encode(rogue, VRRP_GROUP_V6, ChecksumMode::Rfc5798);
    let mut bad_sum = good.clone();
    bad_sum[6] ^= 0xff;
    let mut v2 = good.clone();
    v2[0] = 0x21;
    let mut count_lie = good.clone();
    count_lie[3] = 2;
    let other_vrid = advert(62, 254).encode(rogue, VRRP_GROUP_V6, ChecksumMode::Rfc5798);
    // (hop limit, message)
    let packets = vec![
        (64, good), // priority 254 would win, but it crossed a router
        (255, bad_sum),
        (255, v2),
        (255, count_lie),
        (255, other_vrid),
    ];
    let path = format!("/run/netns/{}", lab.ns("client"));
    std::thread::spawn(move || {
        support::netns::enter(&path);
        let s = socket2::Socket::new(
            socket2::Domain::IPV6,
            socket2::Type::RAW,
            Some(socket2::Protocol::from(112)),
        )
        .unwrap();
        s.bind_device(Some(b"eth0")).unwrap();
        let ifindex = vrrp::address::interface_index("eth0").unwrap();
        s.bind(&SocketAddrV6::new(rogue, 0, 0, ifindex).into())
            .unwrap();
        s.set_multicast_if_v6(ifindex).unwrap();
        let to = socket2::SockAddr::from(SocketAddrV6::new(VRRP_GROUP_V6, 0, 0, ifindex));
        for (hops, msg) in packets {
            s.set_multicast_hops_v6(hops).unwrap();
            s.send_to(&msg, &to).unwrap();
        }
    })
    .join()
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let m = admin_metrics(&lab, "lb1");
    for reason in [
        "bad_ttl",
        "bad_checksum",
        "bad_version",
        "address_count_mismatch",
        "vrid_mismatch",
    ] {
        let series = format!(
            "floatlb_vrrp_packets_dropped_total{{instance=\"vrrp0-61\",reason=\"{reason}\"}}"
        );
        assert_eq!(
            support::netns::metric(&m, &series),
            Some(1.0),
            "{reason}:\n{m}"
        );
    }
    assert!(
        lab.has_addr6("lb1", VIP6),
        "a dropped advert must not move the VIP: {}",
        n1.log()
    );
    assert_eq!(
        support::netns::metric(&m, "floatlb_vrrp_transitions_total{instance=\"vrrp0-61\"}"),
        Some(2.0),
        "{m}"
    );
}

fn worker_pid_of(lab: &Lab, host: &str) -> u32 {
    let s = admin_status(lab, host);
    s.split("\"worker_pid\":")
        .nth(1)
        .and_then(|r| r.split([',', '}']).next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no worker_pid in {s}"))
}

/// The VRRP instances live in the supervisor, so a killed worker leaves the
/// VIP where it is: no transition on either node, and the replacement serves
/// through the VIP. A worker that keeps dying (three deaths within 10 s)
/// forces FAULT: a priority-0 advert (RFC 5798 §6.4.3: the master leaving
/// sends Priority = 0) lets lb2 take over in Skew_Time, whatever a
/// track-weight would say. Once a worker has served for 10 s the FAULT
/// lifts and lb1, higher and preempting, takes the VIP back (§6.4.2).
#[test]
fn worker_death_keeps_the_vip_and_a_crash_loop_hands_it_over() {
    let name = "worker_death_keeps_the_vip_and_a_crash_loop_hands_it_over";
    if !netns_available(name) {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (lab, web) = lab();
    let (n1, _n2) = lb1_master_pair(&lab, &web);
    let transitions = |h: &str| {
        support::netns::metric(
            &admin_metrics(&lab, h),
            "floatlb_vrrp_transitions_total{instance=\"vrrp0-51\"}",
        )
    };
    let before = (transitions("lb1"), transitions("lb2"));
    let kill_worker = |pid: u32| {
        // SAFETY: a signal to the worker of a floatlb this test started.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    };
    let first = worker_pid_of(&lab, "lb1");
    kill_worker(first);
    lab.wait_for("a new worker on lb1", Duration::from_secs(5), || {
        worker_pid_of(&lab, "lb1") != first
    });
    // Three advert intervals and more: a backup that missed adverts would have taken over.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(holders(&lab), (true, false), "{}", n1.log());
    assert_eq!((transitions("lb1"), transitions("lb2")), before);
    assert_eq!(support::netns::http_from(&lab, "client", vip(), "/").0, 200);

    for _ in 0..2 {
        let pid = worker_pid_of(&lab, "lb1");
        kill_worker(pid);
        lab.wait_for(
            "the next worker or the crash loop",
            Duration::from_secs(5),
            || {
                let s = admin_status(&lab, "lb1");
                !s.contains(&format!("\"worker_pid\":{pid},")) || s.contains("\"crash_loop\":true")
            },
        );
    }
    lab.wait_for("lb2 takes over", Duration::from_secs(5), || {
        holders(&lab) == (false, true)
    });
    let s = admin_status(&lab, "lb1");
    assert!(
        s.contains("\"crash_loop\":true") && s.contains("\"state\":\"FAULT\""),
        "{s}"
    );
    assert!(
        n1.log().contains("FAULT forced by the supervisor"),
        "{}",
        n1.log()
    );
    lab.wait_for("lb1 back as master", Duration::from_secs(20), || {
        holders(&lab) == (true, false)
    });
    assert!(admin_status(&lab, "lb1").contains("\"crash_loop\":false"));
}
