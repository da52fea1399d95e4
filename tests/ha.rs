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
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_node(lab: &Lab, host: &str, backends: &[SocketAddr], vrrp: &str) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = String::from("[listen]\naddress = \"0.0.0.0:80\"\nworkers = 1\n[health]\ninterval = \"100ms\"\ntimeout = \"100ms\"\nrise = 1\nfall = 1\n");
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
    let advert = 100u64;
    let n1 = start_node(&lab, "lb1", &[web.addr], &vrrp_table(150, advert, ""));
    let n2 = start_node(&lab, "lb2", &[web.addr], &vrrp_table(100, advert, ""));
    lab.wait_for("lb1 holds the VIP", Duration::from_secs(5), || {
        holders(&lab) == (true, false)
    });
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

    // Master_Down_Interval for priority 100 at 100 ms: 3×100 + (256−100)×100/256 ≈ 361 ms.
    lab.link("lb1", false);
    let took = lab.wait_for("lb2 takes the VIP", Duration::from_secs(3), || {
        lab.has_addr("lb2", VIP)
    });
    assert!(
        took < Duration::from_millis(361 + 250),
        "takeover took {took:?}"
    );
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
    let n1 = start_node(&lab, "lb1", &[web.addr], &vrrp_table(150, 100, ""));
    let _n2 = start_node(&lab, "lb2", &[web.addr], &vrrp_table(100, 100, ""));
    lab.wait_for("lb1 master", Duration::from_secs(5), || {
        holders(&lab) == (true, false)
    });
    std::thread::sleep(Duration::from_millis(300));
    n1.signal(libc::SIGTERM);
    // Priority 0 advert: the backup waits only Skew_Time (≈61 ms), far below
    // Master_Down_Interval (≈361 ms).
    let took = lab.wait_for("lb2 takes over", Duration::from_secs(3), || {
        lab.has_addr("lb2", VIP)
    });
    assert!(
        took < Duration::from_millis(250),
        "graceful takeover took {took:?}; log:\n{}",
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
