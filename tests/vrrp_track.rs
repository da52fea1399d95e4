//! keepalived parity in `[[vrrp]]`, with two real floatlb processes in network
//! namespaces: a track script and a tracked interface move the VIP, the
//! keepalived notify convention, and the RFC 5798 §7.3 virtual MAC keeping
//! the client's ARP entry across failovers. One lab and one pair of nodes
//! for the whole file (each step is a function with its own doc comment).
//! Needs root (see `support::netns::netns_available`).

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use support::netns::{http_from, netns_available, Lab};
use support::vrrp_lab::{has_link, holds_on, serial, KillOnDrop, V4};

const VMAC: &str = "00:00:5e:00:01:33";
const VIP: &str = "198.18.0.100";

/// (lb1 holds the VIP on its VMAC, lb2 does).
fn holders(lab: &Lab) -> (bool, bool) {
    (
        holds_on(lab, "lb1", "vrrp.51", VIP),
        holds_on(lab, "lb2", "vrrp.51", VIP),
    )
}

fn notify_script(dir: &Path) -> String {
    let script = dir.join("argv.sh");
    // Writes its arguments after the first (the output file) as one line.
    std::fs::write(
        &script,
        "#!/bin/sh\nout=$1\nshift\necho \"$*\" >> \"$out\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script.display().to_string()
}

/// The client's neighbour entry for the VIP stays the virtual MAC while
/// `pred` becomes true (sampled every few ms, with a request through the VIP
/// before and after).
fn wait_keeping_mac(lab: &Lab, what: &str, pred: impl Fn() -> bool) {
    let seen = std::cell::RefCell::new(Vec::<String>::new());
    lab.wait_for(what, Duration::from_secs(5), || {
        if let Some(m) = lab.neigh_mac("client", VIP) {
            if !seen.borrow().contains(&m) {
                seen.borrow_mut().push(m);
            }
        }
        pred()
    });
    // Tried for up to 3 s, as a client's TCP retransmits its SYN: right after
    // a takeover, a backup's VMAC may still have sent the bridge an IGMP report
    // that points the virtual MAC at it until the master's next advert
    // (docs/configuration.md, VMAC).
    let mut status = 0;
    for _ in 0..6 {
        status = http_from(lab, "client", V4.vip_addr(), "/").0;
        if status == 200 {
            break;
        }
    }
    assert_eq!(status, 200, "{what}: no answer through the VIP");
    assert_eq!(
        lab.neigh_mac("client", VIP).as_deref(),
        Some(VMAC),
        "{what}: client's entry"
    );
    assert_eq!(
        *seen.borrow(),
        [VMAC],
        "{what}: the client's ARP entry changed"
    );
}

#[test]
fn keepalived_parity() {
    if !netns_available("keepalived_parity") {
        return;
    }
    let _serial = serial();
    let (lab, web) = V4.lab();
    // The tracked link: a veth pair inside lb1, so it is not a second port on the VIP's
    // segment (which would answer ARP for the VIP with its own MAC).
    for args in [
        &[
            "ip", "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p",
        ][..],
        &["ip", "link", "set", "eth1p", "up"],
        &["ip", "link", "set", "eth1", "up"],
    ] {
        assert!(lab.exec("lb1").args(args).status().unwrap().success());
    }
    let dir = tempfile::tempdir().unwrap();
    let ok_file = dir.path().join("lb1-ok");
    std::fs::write(&ok_file, "").unwrap();
    let script = notify_script(dir.path());
    let out = |host: &str| dir.path().join(format!("{host}.notify"));
    let table = |host: &str, priority: u8, trackers: &str| {
        V4.table(
            priority,
            100,
            &format!(
                "name = \"VI_1\"\nuse-vmac = true\nnotify-keepalived = [\"{script}\", \"{}\"]\n{trackers}",
                out(host).display()
            ),
        )
    };
    let trackers = format!(
        "[[vrrp.track-script]]\nname = \"chk_file\"\ncommand = \"/usr/bin/test -e {}\"\ninterval = \"100ms\"\nweight = -60\n[[vrrp.track-interface]]\nname = \"eth1\"\nweight = -60\n",
        ok_file.display()
    );
    let capture = dir.path().join("capture.txt");
    let tcpdump = KillOnDrop(
        lab.exec("client")
            .args([
                "tcpdump",
                "--immediate-mode",
                "-i",
                "eth0",
                "-e",
                "-n",
                "-l",
                "vrrp or arp",
            ])
            .stdout(std::fs::File::create(&capture).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("tcpdump (apt-get install tcpdump)"),
    );
    std::thread::sleep(Duration::from_millis(300));
    let n1 = V4.start_node(&lab, "lb1", &[web.addr], &table("lb1", 150, &trackers));
    // lb2 starts once lb1 is master: started together, their Master_Down
    // timers (RFC 5798 §6.4.2) can fire within a few ms of each other and
    // lb2 would be master for a moment, an extra line in its notify file.
    lab.wait_for("lb1 master alone", Duration::from_secs(6), || {
        holds_on(&lab, "lb1", "vrrp.51", VIP)
    });
    let n2 = V4.start_node(&lab, "lb2", &[web.addr], &table("lb2", 100, ""));
    // lb2's VMAC sends IGMP reports for 224.0.0.18 as it starts (see
    // `vrrp::vmac`), which moves the virtual MAC on the switch until lb1's
    // next advert: wait those out (IGMPv3 repeats within 1 s).
    std::thread::sleep(Duration::from_millis(1500));
    let logs = || format!("lb1:\n{}\nlb2:\n{}", n1.log(), n2.log());
    let start = std::time::Instant::now();
    while holders(&lab) != (true, false) {
        assert!(
            start.elapsed() < Duration::from_secs(6),
            "lb1 does not hold the VIP on vrrp.51:\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let (status, _) = http_from(&lab, "client", V4.vip_addr(), "/");
    assert_eq!(status, 200, "{}", logs());
    assert_eq!(
        lab.neigh_mac("client", VIP).as_deref(),
        Some(VMAC),
        "{}",
        logs(),
    );

    track_script_moves_the_vip(&lab, &ok_file);
    track_interface_moves_the_vip(&lab);
    keepalived_notify_arguments(&out("lb1"), &out("lb2"));
    drop(tcpdump);
    adverts_and_garps_come_from_the_virtual_mac(&lab, &capture);

    n1.stop();
    assert!(
        !has_link(&lab, "lb1", "vrrp.51"),
        "VMAC left behind at stop"
    );
    n2.stop();
}

/// A track script with weight -60 failing lowers lb1 from 150 to 90 (the
/// arithmetic of keepalived's vrrp_track.c): lb2 (100) preempts (RFC 5798
/// §6.4.2, a lower-priority advert is discarded and Master_Down_Timer
/// fires), and lb1 takes the VIP back when the script passes again. The
/// client's ARP entry for the VIP stays the virtual MAC throughout (§7.3).
fn track_script_moves_the_vip(lab: &Lab, ok_file: &Path) {
    std::fs::remove_file(ok_file).unwrap();
    wait_keeping_mac(lab, "script fails: lb2 takes the VIP", || {
        holders(lab) == (false, true)
    });
    std::fs::write(ok_file, "").unwrap();
    wait_keeping_mac(lab, "script passes: lb1 takes it back", || {
        holders(lab) == (true, false)
    });
}

/// A tracked interface (eth1, weight -60) losing its link moves the VIP the
/// same way; its link back brings it back. The client's ARP entry again
/// never changes (§7.3).
fn track_interface_moves_the_vip(lab: &Lab) {
    lab.link_named("lb1", "eth1", false);
    wait_keeping_mac(lab, "eth1 down: lb2 takes the VIP", || {
        holders(lab) == (false, true)
    });
    lab.link_named("lb1", "eth1", true);
    wait_keeping_mac(lab, "eth1 up: lb1 takes it back", || {
        holders(lab) == (true, false)
    });
}

/// keepalived's `notify` convention: `INSTANCE <name> <STATE> <priority>`
/// with the effective priority (tracking applied).
fn keepalived_notify_arguments(lb1: &Path, lb2: &Path) {
    // Notify commands run asynchronously: give the last ones a moment.
    std::thread::sleep(Duration::from_millis(200));
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let (l1, l2) = (read(lb1), read(lb2));
    let lines = |t: &str| t.lines().map(str::to_string).collect::<Vec<_>>();
    assert_eq!(
        lines(&l1),
        [
            "INSTANCE VI_1 BACKUP 150",
            "INSTANCE VI_1 MASTER 150",
            "INSTANCE VI_1 BACKUP 90",
            "INSTANCE VI_1 MASTER 150",
            "INSTANCE VI_1 BACKUP 90",
            "INSTANCE VI_1 MASTER 150",
        ],
        "lb1"
    );
    assert_eq!(
        lines(&l2),
        [
            "INSTANCE VI_1 BACKUP 100",
            "INSTANCE VI_1 MASTER 100",
            "INSTANCE VI_1 BACKUP 100",
            "INSTANCE VI_1 MASTER 100",
            "INSTANCE VI_1 BACKUP 100",
        ],
        "lb2"
    );
}

/// RFC 5798 §7.3: adverts of both masters, and their gratuitous ARP, carry
/// the virtual MAC 00-00-5E-00-01-{VRID} as source (tcpdump on the client).
fn adverts_and_garps_come_from_the_virtual_mac(lab: &Lab, capture: &Path) {
    let text = std::fs::read_to_string(capture).unwrap();
    let from = |src_ip: &str| {
        text.lines()
            .filter(|l| l.contains(&format!("{src_ip} > 224.0.0.18")) && l.contains("VRRP"))
            .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string())
            .collect::<std::collections::BTreeSet<_>>()
    };
    for host in ["lb1", "lb2"] {
        let macs = from(&V4.host_ip(host).to_string());
        assert_eq!(
            macs.into_iter().collect::<Vec<_>>(),
            [VMAC],
            "{host}'s adverts (its own MAC is {}):\n{text}",
            lab.mac(host)
        );
    }
    let garp = format!("who-has {VIP} tell {VIP}");
    let garps: Vec<_> = text.lines().filter(|l| l.contains(&garp)).collect();
    assert!(!garps.is_empty(), "no gratuitous ARP:\n{text}");
    assert!(
        garps
            .iter()
            .all(|l| l.split_whitespace().nth(1) == Some(VMAC)),
        "{garps:#?}"
    );
}

/// RFC 5798 §7.3 for IPv6: the VMAC is 00-00-5E-00-02-{VRID}; the client's
/// neighbour entry for the VIP stays that MAC when the master stops and the
/// backup takes over, and adverts come from it.
#[test]
fn vmac_ipv6() {
    if !netns_available("vmac_ipv6") {
        return;
    }
    let _serial = serial();
    let f = support::vrrp_lab::V6;
    let vmac6 = "00:00:5e:00:02:3d";
    let (lab, web) = f.lab();
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("capture.txt");
    let tcpdump = KillOnDrop(
        lab.exec("client")
            .args([
                "tcpdump",
                "--immediate-mode",
                "-i",
                "eth0",
                "-e",
                "-n",
                "-l",
                "ip6",
            ])
            .stdout(std::fs::File::create(&capture).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("tcpdump (apt-get install tcpdump)"),
    );
    let holds = |host: &str| holds_on(&lab, host, "vrrp.61", f.vip());
    let n1 = f.start_node(
        &lab,
        "lb1",
        &[web.addr],
        &f.table(150, 100, "use-vmac = true\n"),
    );
    lab.wait_for("lb1 master", Duration::from_secs(6), || holds("lb1"));
    let n2 = f.start_node(
        &lab,
        "lb2",
        &[web.addr],
        &f.table(100, 100, "use-vmac = true\n"),
    );
    // A backup's VMAC sends MLD reports for ff02::12 when it starts (see
    // `vrrp::vmac`): a switch moves the virtual MAC to lb2's port until
    // lb1's next advert. Wait those out (MLDv2 repeats within 1 s).
    std::thread::sleep(Duration::from_millis(1500));
    let logs = || format!("lb1:\n{}\nlb2:\n{}", n1.log(), n2.log());
    // Tried for up to 3 s, as a client's TCP retransmits its SYN: a frame the
    // backup's VMAC interface sends from the virtual MAC after the wait above
    // (its reports may repeat) points the bridge at the backup until the
    // master's next advert. Failed once in CI: the SYN got no answer.
    let mut status = 0;
    for _ in 0..6 {
        status = http_from(&lab, "client", f.vip_addr(), "/").0;
        if status == 200 {
            break;
        }
    }
    assert_eq!(
        status,
        200,
        "{}\n{}",
        logs(),
        std::fs::read_to_string(&capture).unwrap()
    );
    assert_eq!(
        lab.neigh_mac("client", f.vip()).as_deref(),
        Some(vmac6),
        "{}",
        logs()
    );
    n1.stop();
    lab.wait_for("lb2 takes over", Duration::from_secs(5), || holds("lb2"));
    let (status, _) = http_from(&lab, "client", f.vip_addr(), "/");
    assert_eq!(status, 200, "{}", n2.log());
    assert_eq!(lab.neigh_mac("client", f.vip()).as_deref(), Some(vmac6));
    drop(tcpdump);
    let text = std::fs::read_to_string(&capture).unwrap();
    let sources: std::collections::BTreeSet<_> = text
        .lines()
        .filter(|l| l.contains("ff02::12"))
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(sources.into_iter().collect::<Vec<_>>(), [vmac6], "{text}");
    n2.stop();
    assert!(
        !has_link(&lab, "lb2", "vrrp.61"),
        "VMAC left behind at stop"
    );
}

/// keepalived 2.2.7 as the peer, both with VMAC (its `use_vmac`): a floatlb
/// track script without weight failing puts floatlb in FAULT (a priority-0
/// advert, RFC 5798 §6.4.3's shutdown path, so keepalived takes over within
/// Skew_Time), `notify-fault` runs, and the client's ARP entry for the VIP
/// stays the virtual MAC (§7.3) while keepalived holds it; the script passing
/// again brings floatlb back to BACKUP and, preempting, MASTER.
#[test]
fn fault_without_weight_hands_over_to_keepalived_with_vmac() {
    if !netns_available("fault_without_weight_hands_over_to_keepalived_with_vmac") {
        return;
    }
    let _serial = serial();
    let (lab, web) = V4.lab();
    let dir = tempfile::tempdir().unwrap();
    let ok_file = dir.path().join("ok");
    std::fs::write(&ok_file, "").unwrap();
    let script = notify_script(dir.path());
    let fault_out = dir.path().join("fault.out");
    let lb1 = V4.table(
        150,
        100,
        &format!(
            "use-vmac = true\nnotify-fault = [\"{script}\", \"{}\", \"lb1 fault\"]\n[[vrrp.track-script]]\nname = \"chk\"\ncommand = [\"/usr/bin/test\", \"-e\", \"{}\"]\ninterval = \"100ms\"\n",
            fault_out.display(),
            ok_file.display()
        ),
    );
    let n1 = V4.start_node(&lab, "lb1", &[web.addr], &lb1);
    lab.wait_for("lb1 master", Duration::from_secs(6), || {
        holds_on(&lab, "lb1", "vrrp.51", VIP)
    });
    // lb2 serves HTTP with a floatlb without [[vrrp]], keepalived moving its
    // VIP (the setup floatlb replaces); keepalived names its VMAC
    // vrrp.<VRID> too and puts the VIP on it.
    let _lb2_proxy = V4.start_node(&lab, "lb2", &[web.addr], "");
    // keepalived leaves arp_announce alone (floatlb sets 2 with use-vmac):
    // without it lb2's own ARP requests for the client would say "tell
    // <VIP>" from eth0's MAC and move the client's entry off the VMAC.
    assert!(lab
        .exec("lb2")
        .args(["sysctl", "-qw", "net.ipv4.conf.eth0.arp_announce=2"])
        .status()
        .unwrap()
        .success());
    let k = support::vrrp_lab::KeepalivedPeer::start(
        &lab,
        "lb2",
        &format!(
            "global_defs {{\n  vrrp_version 3\n  router_id lb2\n}}\nvrrp_instance VI_1 {{\n  state BACKUP\n  interface eth0\n  use_vmac\n  virtual_router_id 51\n  priority 100\n  advert_int 0.1\n  virtual_ipaddress {{\n    {}\n  }}\n}}\n",
            V4.vip_cidr()
        ),
    );
    let keepalived_holds = || holds_on(&lab, "lb2", "vrrp.51", VIP);
    lab.wait_for("keepalived's VMAC", Duration::from_secs(5), || {
        has_link(&lab, "lb2", "vrrp.51")
    });
    std::thread::sleep(Duration::from_millis(1500));
    let logs = || format!("lb1:\n{}\nkeepalived:\n{}", n1.log(), k.log());
    assert!(!keepalived_holds(), "{}", logs());
    let (status, _) = http_from(&lab, "client", V4.vip_addr(), "/");
    assert_eq!(status, 200, "{}", logs());
    assert_eq!(
        lab.neigh_mac("client", VIP).as_deref(),
        Some(VMAC),
        "{}",
        logs()
    );

    std::fs::remove_file(&ok_file).unwrap();
    wait_keeping_mac(&lab, "script fails: keepalived takes the VIP", || {
        keepalived_holds() && !holds_on(&lab, "lb1", "vrrp.51", VIP)
    });
    assert!(n1.log().contains("VRRP MASTER -> FAULT"), "{}", logs());
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        std::fs::read_to_string(&fault_out).unwrap_or_default(),
        "lb1 fault\n",
        "notify-fault"
    );
    std::fs::write(&ok_file, "").unwrap();
    wait_keeping_mac(&lab, "script passes: floatlb takes it back", || {
        holds_on(&lab, "lb1", "vrrp.51", VIP) && !keepalived_holds()
    });
    assert!(n1.log().contains("VRRP FAULT -> BACKUP"), "{}", logs());
}
