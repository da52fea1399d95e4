//! Who holds the VIP, and when it moves: two real floatlb processes sharing a
//! VIP over VRRPv3 (RFC 5798) in network namespaces, over IPv4 and IPv6 —
//! election and link-loss failover with the neighbour entry moved, preemption,
//! a crash's stale VIP, health tracking, unicast peers, sync groups and a
//! reload of `[[vrrp]]`. Needs root (see `support::netns::netns_available`).

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::netns::{get_status_from, http_from, netns_available, Lab};
use support::vrrp_lab::{
    admin_metrics, admin_status, dropped, keep_addr_on_down, serial, wait_heard, Family, ADMIN, V4,
    V6,
};
use support::TestBackend;

/// RFC 5798: the higher priority becomes master (§6.4.2) and the pair settles
/// on one holder; cutting the master's link moves the VIP (§6.4.2
/// Master_Down_Timer) and the new master's gratuitous ARP (IPv4) or
/// unsolicited neighbour advertisement (IPv6: RFC 4861 §7.2.6, Override set)
/// moves the client's neighbour entry without any traffic from the client;
/// the old master, back, preempts. HTTP through the VIP works throughout and
/// X-Forwarded-For carries the client's address. IPv6 runs dual stack: an
/// IPv4 instance beside it with the same VRID, which RFC 5798 allows (one
/// virtual router per family), moves with it and its adverts never reach the
/// IPv6 instance.
fn higher_priority_wins_and_link_loss_fails_over(f: Family) {
    let (lab, web) = f.lab();
    let tables = |priority: u8| match f {
        V4 => V4.table(priority, 100, ""),
        V6 => {
            V4.table(priority, 100, "")
                + &V6
                    .table(priority, 100, "")
                    .replace("vrid = 61", "vrid = 51")
        }
    };
    // The family's instance (the second table when dual stack).
    let instance = match f {
        V4 => "vrrp0-51",
        V6 => "vrrp1-51",
    };
    let n1 = f.start_node(&lab, "lb1", &[web.addr], &tables(150));
    let n2 = f.start_node(&lab, "lb2", &[web.addr], &tables(100));
    lab.wait_for("lb1 holds the VIP", Duration::from_secs(6), || {
        f.holders(&lab) == (true, false)
    });
    wait_heard(&lab, "lb2");
    // Both stay settled: exactly one holder, of each family.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        (f.holders(&lab), V4.holders(&lab)),
        ((true, false), (true, false)),
        "lb1: {}\nlb2: {}",
        n1.log(),
        n2.log()
    );
    let m = admin_metrics(&lab, "lb2");
    assert_eq!(
        dropped(&m, instance, "wrong_family"),
        Some(0.0),
        "an advert of another family reached the {f:?} instance:\n{m}"
    );
    // The status page names the master by the address its adverts come from
    // (IPv6: the link-local one, §5.1.2.1).
    let (status, json) = http_from(&lab, "lb2", ADMIN.parse().unwrap(), "/status.json");
    assert_eq!(status, 200);
    let lb1 = f.advert_source(&lab, "lb1");
    assert!(
        json.contains(&format!("\"instance\":\"{instance}\",\"state\":\"BACKUP\""))
            && json.contains(&format!("\"last_peer_advert\":{{\"address\":\"{lb1}\"")),
        "{json}"
    );
    assert_eq!(
        get_status_from(&lab, "client", f.vip_addr(), "/"),
        (200, "web1".into()),
        "lb1: {}",
        n1.log()
    );
    let (status, headers) = http_from(&lab, "client", f.vip_addr(), "/headers");
    assert_eq!(status, 200);
    let client = f.host_ip("client");
    assert!(
        headers
            .to_ascii_lowercase()
            .contains(&format!("x-forwarded-for: {client}")),
        "{headers}"
    );
    assert_eq!(
        lab.neigh_mac("client", f.vip()).as_deref(),
        Some(lab.mac("lb1").as_str())
    );

    // Master_Down_Interval for priority 100 at 100 ms: 3×100 + (256−100)×100/256 ≈ 361 ms;
    // how long the takeover takes is the fsm's unit tests (paused clock) and bench's drills.
    lab.link("lb1", false);
    lab.wait_for("lb2 takes the VIP", Duration::from_secs(3), || {
        f.has_vip(&lab, "lb2")
    });
    lab.wait_for("lb2 takes the IPv4 VIP", Duration::from_secs(3), || {
        V4.has_vip(&lab, "lb2")
    });
    // Its gratuitous ARP / unsolicited NA moved the client's neighbour entry
    // without any traffic.
    let lb2_mac = lab.mac("lb2");
    lab.wait_for(
        "client neighbour entry moved by the GARP / unsolicited NA",
        Duration::from_secs(1),
        || lab.neigh_mac("client", f.vip()).as_deref() == Some(lb2_mac.as_str()),
    );
    assert_eq!(
        get_status_from(&lab, "client", f.vip_addr(), "/"),
        (200, "web1".into())
    );

    // lb1 returns: preempt (default) takes the VIP back.
    lab.link("lb1", true);
    lab.wait_for("lb1 preempts", Duration::from_secs(3), || {
        f.holders(&lab) == (true, false) && V4.holders(&lab) == (true, false)
    });
    assert_eq!(
        get_status_from(&lab, "client", f.vip_addr(), "/"),
        (200, "web1".into())
    );
}
both_families!(higher_priority_wins_and_link_loss_fails_over);

/// `preempt = false`: a higher priority that comes later leaves the current
/// master in place (RFC 5798 §6.4.3, Preempt_Mode False).
fn nopreempt_keeps_the_current_master(f: Family) {
    let (lab, web) = f.lab();
    let n2 = f.start_node(
        &lab,
        "lb2",
        &[web.addr],
        &f.table(100, 100, "preempt = false\n"),
    );
    lab.wait_for("lb2 alone becomes master", Duration::from_secs(6), || {
        f.has_vip(&lab, "lb2")
    });
    let n1 = f.start_node(
        &lab,
        "lb1",
        &[web.addr],
        &f.table(150, 100, "preempt = false\n"),
    );
    lab.wait_for("lb1 runs as backup", Duration::from_secs(6), || {
        admin_status(&lab, "lb1").contains("\"state\":\"BACKUP\"")
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        f.holders(&lab),
        (false, true),
        "lb1 must not preempt\nlb1: {}\nlb2: {}",
        n1.log(),
        n2.log()
    );
}
both_families!(nopreempt_keeps_the_current_master);

/// A crash (SIGKILL) leaves the VIP on the interface; `floatlb release`
/// removes it, and so does a restart before the node runs as a backup.
fn crash_leaves_the_vip_and_release_or_restart_removes_it(f: Family) {
    let (lab, web) = f.lab();
    let table = f.table(150, 100, "");
    let n1 = f.start_node(&lab, "lb1", &[web.addr], &table);
    lab.wait_for("lb1 master", Duration::from_secs(6), || {
        f.has_vip(&lab, "lb1")
    });
    let config = n1.config_path();
    n1.signal(libc::SIGKILL);
    std::thread::sleep(Duration::from_millis(200));
    assert!(f.has_vip(&lab, "lb1"), "SIGKILL cannot remove the VIP");
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
        stdout.contains(&format!("removed {} on eth0", f.vip_cidr())),
        "{stdout}"
    );
    assert!(!f.has_vip(&lab, "lb1"), "release removed the VIP");

    // A restart cleans up too: crash again, then start a backup-priority node there while
    // lb2 is master; the stale VIP must go before the new node runs as a backup.
    let n1 = f.start_node(&lab, "lb1", &[web.addr], &table);
    lab.wait_for("lb1 master again", Duration::from_secs(6), || {
        f.has_vip(&lab, "lb1")
    });
    n1.signal(libc::SIGKILL);
    let _n2 = f.start_node(&lab, "lb2", &[web.addr], &f.table(200, 100, ""));
    lab.wait_for("lb2 master", Duration::from_secs(6), || {
        f.has_vip(&lab, "lb2")
    });
    assert!(
        f.has_vip(&lab, "lb1"),
        "stale VIP still on the crashed node"
    );
    let _n1 = f.start_node(&lab, "lb1", &[web.addr], &table);
    lab.wait_for(
        "restart removes the stale VIP",
        Duration::from_secs(6),
        || !f.has_vip(&lab, "lb1"),
    );
    assert_eq!(f.holders(&lab), (false, true));
}
both_families!(crash_leaves_the_vip_and_release_or_restart_removes_it);

/// A proxy with no healthy backend lowers its priority by `track-weight`
/// (150 − 60 = 90 < 100): the backup becomes master and stays there.
fn unhealthy_proxy_lowers_priority_and_hands_over(f: Family) {
    let (lab, web) = f.lab();
    // lb1's only backend is a port nothing listens on: its proxy cannot serve.
    let dead = SocketAddr::new(f.host_ip("web"), 81);
    let n1 = f.start_node(
        &lab,
        "lb1",
        &[dead],
        &f.table(150, 100, "track-weight = 60\n"),
    );
    let _n2 = f.start_node(&lab, "lb2", &[web.addr], &f.table(100, 100, ""));
    lab.wait_for("lb2 master", Duration::from_secs(6), || {
        f.holders(&lab) == (false, true)
    });
    lab.wait_for("lb1 runs as backup", Duration::from_secs(6), || {
        admin_status(&lab, "lb1").contains("\"state\":\"BACKUP\"")
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(f.holders(&lab), (false, true), "lb1: {}", n1.log());
    assert_eq!(
        get_status_from(&lab, "client", f.vip_addr(), "/"),
        (200, "web1".into())
    );
}
both_families!(unhealthy_proxy_lowers_priority_and_hands_over);

/// Without `track-weight`, a proxy that cannot serve goes to FAULT and never
/// holds the VIP.
fn unhealthy_proxy_without_track_weight_enters_fault(f: Family) {
    let (lab, _web) = f.lab();
    let dead = SocketAddr::new(f.host_ip("web"), 81);
    let n1 = f.start_node(&lab, "lb1", &[dead], &f.table(150, 100, ""));
    // Bounded, not slept: an IPv6 instance starts once its link-local
    // address has left duplicate address detection.
    lab.wait_for("lb1 enters FAULT", Duration::from_secs(6), || {
        n1.log().contains("FAULT")
    });
    // Well past Master_Down_Interval (≈341 ms), by when a node in the
    // election would hold the VIP.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !f.has_vip(&lab, "lb1"),
        "a node that cannot serve must not hold the VIP: {}",
        n1.log()
    );
    assert!(n1.log().contains("FAULT"), "{}", n1.log());
}
both_families!(unhealthy_proxy_without_track_weight_enters_fault);

/// Unicast adverts (for segments without multicast): each node names the
/// other by the address its adverts come from (IPv6: the link-local one,
/// RFC 5798 §5.1.2.1); the pair elects one master and fails over, and an
/// advert from a host that is not a peer is dropped and counted.
fn unicast_peers_fail_over_and_ignore_strangers(f: Family) {
    let (lab, web) = f.lab();
    // IPv6 link-local addresses exist once duplicate address detection is done.
    let peer = |host: &str| format!("unicast-peers = [\"{}\"]\n", f.advert_source(&lab, host));
    let n1 = f.start_node(&lab, "lb1", &[web.addr], &f.table(150, 100, &peer("lb2")));
    let n2 = f.start_node(&lab, "lb2", &[web.addr], &f.table(100, 100, &peer("lb1")));
    lab.wait_for("lb1 master", Duration::from_secs(6), || {
        f.holders(&lab) == (true, false)
    });
    // A stranger claiming priority 254 straight at lb1 is not a peer.
    let stranger = f.advert_source(&lab, "client");
    let lb1 = f.advert_source(&lab, "lb1");
    let msg = vrrp::packet::Advert {
        vrid: f.vrid(),
        priority: 254,
        max_adver_int: 10,
        addresses: vec![f.vip().parse().unwrap()],
    }
    .encode(stranger, lb1, vrrp::packet::ChecksumMode::Rfc5798);
    f.send_adverts(&lab, "client", stranger, lb1, vec![(255, msg)]);
    std::thread::sleep(Duration::from_millis(500));
    let m = admin_metrics(&lab, "lb1");
    assert_eq!(dropped(&m, &f.instance(), "not_a_peer"), Some(1.0), "{m}");
    assert_eq!(
        f.holders(&lab),
        (true, false),
        "lb1: {}\nlb2: {}",
        n1.log(),
        n2.log()
    );
    lab.link("lb1", false);
    lab.wait_for(
        "lb2 takes over over unicast",
        Duration::from_secs(3),
        || f.has_vip(&lab, "lb2"),
    );
    lab.link("lb1", true);
    lab.wait_for("lb1 preempts over unicast", Duration::from_secs(4), || {
        f.holders(&lab) == (true, false)
    });
}
both_families!(unicast_peers_fail_over_and_ignore_strangers);

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
    let _g = serial();
    let vip = V4.vip();
    let (lab, web) = V4.lab();
    let (n1, n2) = V4.lb1_master_pair(&lab, &web);
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

    let (old, new) = (V4.table(150, 100, ""), V4.table(140, 50, ""));
    assert!(n1.reload_replacing(&old, &new), "{}", n1.log());
    let seen =
        "\"last_peer_advert\":{\"address\":\"198.18.0.3\",\"priority\":140,\"interval_ms\":50,";
    let start = std::time::Instant::now();
    while !admin_status(&lab, "lb2").contains(seen) {
        assert_eq!(
            V4.holders(&lab),
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
    assert_eq!(V4.holders(&lab), (true, false));
    assert_eq!(transitions("lb1"), before, "lb1 changed state");
    assert!(admin_status(&lab, "lb1").contains("\"state\":\"MASTER\",\"priority\":140"));
    assert_eq!(get_status_from(&lab, "client", V4.vip_addr(), "/").0, 200);

    // Another VRID is another instance: refused, the running one untouched.
    let other = new.replace("vrid = 51", "vrid = 52");
    assert!(
        !n1.reload_replacing(&new, &other),
        "a VRID change was accepted"
    );
    assert!(n1.log().contains("needs a restart"), "{}", n1.log());
    assert_eq!(V4.holders(&lab), (true, false));
    assert!(admin_status(&lab, "lb1").contains("\"priority\":140"));

    // A second VIP comes up on the master, and goes again, the first staying.
    let two = new.replace(
        &format!("[\"{vip}/24\"]"),
        &format!("[\"{vip}/24\", \"198.18.0.101/24\"]"),
    );
    assert!(n1.reload_replacing(&other, &two), "{}", n1.log());
    assert!(lab.has_addr("lb1", "198.18.0.101") && lab.has_addr("lb1", vip));
    assert!(n1.reload_replacing(&two, &new), "{}", n1.log());
    assert!(!lab.has_addr("lb1", "198.18.0.101") && lab.has_addr("lb1", vip));
    assert_eq!(transitions("lb1"), before, "lb1 changed state");

    // New peers reopen the advert socket: unicast to a host that is not there,
    // lb2 hears nothing and takes the VIP as well; back to multicast, lb2 hears
    // the higher priority and yields (§6.4.3), lb1 never having left MASTER.
    let nobody = V4.table(140, 50, "unicast-peers = [\"198.18.0.9\"]\n");
    assert!(n1.reload_replacing(&new, &nobody), "{}", n1.log());
    lab.wait_for("lb2 misses lb1's adverts", Duration::from_secs(5), || {
        V4.holders(&lab) == (true, true)
    });
    assert!(n1.reload_replacing(&nobody, &new), "{}", n1.log());
    lab.wait_for("lb2 hears lb1 again", Duration::from_secs(5), || {
        V4.holders(&lab) == (true, false)
    });
    assert_eq!(transitions("lb1"), before, "lb1 changed state");

    // Under the backup's 100: lb2 (preempt) discards lb1's adverts and takes over.
    assert!(
        n1.reload_replacing(&new, &V4.table(90, 50, "")),
        "{}",
        n1.log()
    );
    lab.wait_for("lb2 preempts", Duration::from_secs(5), || {
        V4.holders(&lab) == (false, true)
    });
    drop(n2);
}

/// The IPv6 VIP of the sync-group tests, on eth1.
const VIP6_ETH1: &str = "2001:2:1::100";

/// The IPv4 lab plus an eth1 on lb1 and lb2 (2001:2:1::/64) for the IPv6
/// instance of a sync group.
fn group_lab() -> (Lab, TestBackend) {
    let (mut lab, web) = V4.lab();
    for (host, n) in [("lb1", 3), ("lb2", 4)] {
        lab.extra_link(host, "eth1", &format!("2001:2:1::{n}/64"));
        keep_addr_on_down(&lab, host, "eth1");
    }
    (lab, web)
}

/// An IPv4 instance on eth0 and an IPv6 one on eth1, both in group "web".
fn group_tables(prio4: u8, prio6: u8) -> String {
    let v4 = V4.table(prio4, 100, "group = \"web\"\n");
    format!(
        "{v4}[[vrrp]]\ninterface = \"eth1\"\nvrid = 61\npriority = {prio6}\nadvert-interval = \"100ms\"\nvirtual-addresses = [\"{VIP6_ETH1}/64\"]\ngroup = \"web\"\n"
    )
}

fn holds_both(lab: &Lab, host: &str) -> bool {
    V4.has_vip(lab, host) && lab.has_addr6(host, VIP6_ETH1)
}

fn holds_none(lab: &Lab, host: &str) -> bool {
    !V4.has_vip(lab, host) && !lab.has_addr6(host, VIP6_ETH1)
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
    let _g = serial();
    let (lab, web) = group_lab();
    let n1 = V4.start_node(&lab, "lb1", &[web.addr], &group_tables(150, 150));
    let _n2 = V4.start_node(&lab, "lb2", &[web.addr], &group_tables(100, 100));
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
        || !V4.has_vip(&lab, "lb1"),
    );
    assert!(
        n1.log().contains("following sync group"),
        "lb1: {}",
        n1.log()
    );
    assert_eq!(
        get_status_from(&lab, "client", V4.vip_addr(), "/"),
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
    let _g = serial();
    let (lab, web) = group_lab();
    let n2 = V4.start_node(&lab, "lb2", &[web.addr], &group_tables(100, 200));
    lab.wait_for("lb2 holds both VIPs", Duration::from_secs(6), || {
        holds_both(&lab, "lb2")
    });
    let _n1 = V4.start_node(&lab, "lb1", &[web.addr], &group_tables(150, 150));
    lab.wait_for("both families move to lb1", Duration::from_secs(6), || {
        holds_both(&lab, "lb1") && holds_none(&lab, "lb2")
    });
    assert!(
        n2.log().contains("another member gave up MASTER"),
        "lb2: {}",
        n2.log()
    );
}

/// Issue 29 item 3 through the VIP: both nodes share their per-client table
/// over `[peers]`. A client sends twice its allowance to the master (half
/// refused, 429), the master's link goes, and the same client's requests to
/// the new master are still refused: its count came along, where a fresh
/// table would let another allowance through.
fn a_client_over_its_limit_stays_over_it_after_a_failover(f: Family) {
    let (lab, web) = f.lab();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("peers.key");
    std::fs::write(&key, "4q0V2yqgGGbW1nUpR6rjyGgOTmZ8H6fvl2nOf5xHCg4=\n").unwrap();
    let shared = |me: &str, peer: &str| {
        let (me, peer) = (f.host_ip(me), f.host_ip(peer));
        format!(
            "[peers]\naddress = \"{}\"\npeers = [\"{}\"]\nkey-file = \"{}\"\ninterval = \"20ms\"\n\n\
             [[limit]]\nname = \"per-ip\"\nexpire = \"10m\"\n\n\
             [[route]]\nname = \"all\"\ntrack = \"per-ip\"\nrate-limit = {{ requests = 10, per = \"10m\" }}\npool = \"default\"\n\n",
            SocketAddr::new(me, 7480),
            SocketAddr::new(peer, 7480),
            key.display()
        )
    };
    let n1 = f.start_node(
        &lab,
        "lb1",
        &[web.addr],
        &(shared("lb1", "lb2") + &f.table(150, 100, "")),
    );
    let n2 = f.start_node(
        &lab,
        "lb2",
        &[web.addr],
        &(shared("lb2", "lb1") + &f.table(100, 100, "")),
    );
    lab.wait_for("lb1 holds the VIP", Duration::from_secs(6), || {
        f.holders(&lab) == (true, false)
    });
    let refused = |n: usize| {
        (0..n)
            .filter(|_| {
                let (status, _) = http_from(&lab, "client", f.vip_addr(), "/");
                assert!(matches!(status, 200 | 429), "{status}");
                status == 429
            })
            .count()
    };
    let count = |host: &str, direction: &str| {
        let series = format!("floatlb_peer_updates_total{{direction=\"{direction}\"}}");
        support::netns::metric(&admin_metrics(&lab, host), &series).unwrap_or(0.0)
    };
    // Twice the allowance: the second half refused.
    assert_eq!(refused(20), 10, "lb1: {}", n1.log());
    // Any update lb2 takes from here has the client's bucket as its ten
    // allowed requests left it (the refused ones draw nothing); lb1 sends
    // what changed, and the recently seen clients again every second.
    assert_eq!(refused(1), 1);
    let before = count("lb2", "received");
    lab.wait_for("lb2 to hear of the client", Duration::from_secs(5), || {
        count("lb2", "received") > before
    });
    lab.link("lb1", false);
    lab.wait_for("lb2 takes the VIP", Duration::from_secs(6), || {
        f.has_vip(&lab, "lb2")
    });
    // A fresh table would let ten through; lb2 refuses them all (the bucket
    // refills one request a minute).
    let after = refused(10);
    assert!(
        after >= 9,
        "{after} of 10 refused after the failover\nlb2: {}",
        n2.log()
    );
    lab.link("lb1", true);
}
both_families!(a_client_over_its_limit_stays_over_it_after_a_failover);
