//! Handing the traffic to the other node, and what clients' connections see on
//! a node in the namespace lab: SIGTERM's priority-0 advert, `POST
//! /admin/handover`, a WebSocket tunnel closed with a FIN on a planned
//! handover, a worker's death (the VIP stays) and a crash loop (it moves), and
//! requests written in pieces acknowledged at once; issue 35's steering (a late SYN served,
//! its flow passed back, the forwarding ended by the old master's drained message, and an
//! `[[anycast]]` node's scale-in). Needs root (see
//! `support::netns::netns_available`).

mod support;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::netns::{get_status_from, http_from, netns_available, Lab};
use support::vrrp_lab::{
    admin_metrics, admin_status, serial, start_node_env, start_node_listening, start_node_with,
    transitions, worker_pid_of, Family, KillOnDrop, Node, ADMIN, FAST_HEALTH, V4, V6,
};

/// RFC 5798 §6.4.2: lb1 leaves with a priority-0 advert, so the backup waits
/// only Skew_Time (≈61 ms) instead of Master_Down_Interval (≈361 ms); that
/// timing is the fsm's unit test on a paused clock. Here: the advert went out
/// and was heard, the VIP moved and the old master released it.
fn sigterm_hands_over_in_skew_time(f: Family) {
    let (lab, web) = f.lab();
    let (n1, _n2) = f.lb1_master_pair(&lab, &web);
    std::thread::sleep(Duration::from_millis(300));
    n1.signal(libc::SIGTERM);
    lab.wait_for("lb2 takes over", Duration::from_secs(3), || {
        f.has_vip(&lab, "lb2")
    });
    let status = admin_status(&lab, "lb2");
    assert!(
        status.contains("\"priority\":0,"),
        "lb2 did not hear lb1's priority-0 advert: {status}; lb1 log:\n{}",
        n1.log()
    );
    lab.wait_for("lb1 released the VIP", Duration::from_secs(2), || {
        !f.has_vip(&lab, "lb1")
    });
    assert_eq!(
        get_status_from(&lab, "client", f.vip_addr(), "/"),
        (200, "web1".into())
    );
}
both_families!(sigterm_hands_over_in_skew_time);

/// `POST /admin/handover` (on a one-worker node: the runtime is single-threaded, so the
/// blocking handover must not run on it): the VIP moves to the backup, the old master keeps
/// running, and a second handover from it is refused because it is no longer master.
fn admin_handover_moves_the_vip_and_keeps_the_node_running(f: Family) {
    let (lab, web) = f.lab();
    let (n1, _n2) = f.lb1_master_pair(&lab, &web);
    let post = || {
        let out = lab
            .exec("lb1")
            .args(["curl", "-s", "-m", "10", "-X", "POST"])
            .args(["-w", "\n%{http_code}"])
            .arg(format!("http://{ADMIN}/admin/handover"))
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
            "exec 3<>/dev/tcp/{}/80; printf 'GET / HTTP/1.1\\r\\nHost: t\\r\\n\\r\\n' >&3; cat <&3 > /dev/null",
            f.vip()
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
        f.has_vip(&lab, "lb2")
    });
    lab.wait_for("lb1 released the VIP", Duration::from_secs(3), || {
        !f.has_vip(&lab, "lb1")
    });
    assert_eq!(
        get_status_from(&lab, "client", f.vip_addr(), "/"),
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
both_families!(admin_handover_moves_the_vip_and_keeps_the_node_running);

/// The VRRP instances live in the supervisor, so a killed worker leaves the
/// VIP where it is: no transition on either node, and the replacement serves
/// through the VIP. A worker that keeps dying (three deaths within 10 s)
/// forces FAULT: a priority-0 advert (RFC 5798 §6.4.3: the master leaving
/// sends Priority = 0) lets lb2 take over in Skew_Time, whatever a
/// track-weight would say. Once a worker has served for 10 s the FAULT
/// lifts and lb1, higher and preempting, takes the VIP back (§6.4.2).
fn worker_death_keeps_the_vip_and_a_crash_loop_hands_it_over(f: Family) {
    let (lab, web) = f.lab();
    let (n1, _n2) = f.lb1_master_pair(&lab, &web);
    let transitions = |h: &str| transitions(&admin_metrics(&lab, h), &f.instance());
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
    assert_eq!(f.holders(&lab), (true, false), "{}", n1.log());
    assert_eq!((transitions("lb1"), transitions("lb2")), before);
    assert_eq!(http_from(&lab, "client", f.vip_addr(), "/").0, 200);

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
        f.holders(&lab) == (false, true)
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
        f.holders(&lab) == (true, false)
    });
    assert!(admin_status(&lab, "lb1").contains("\"crash_loop\":false"));
}
ipv4_only!(worker_death_keeps_the_vip_and_a_crash_loop_hands_it_over);

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
    let _g = serial();
    let f = V4;
    let (lab, _web) = f.lab();
    let script = format!("{}/tests/support/ws.py", env!("CARGO_MANIFEST_DIR"));
    let web = f.host_ip("web").to_string();
    let mut server = lab
        .exec("web")
        .args([python, &script, "server", "8080", &web])
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
    let _server = KillOnDrop(server);
    let ws = SocketAddr::new(f.host_ip("web"), 8080);
    // A drain bound far past the exit wait below: only closing the tunnel lets lb1 exit.
    let no_health = "[health]\nenabled = false\n[timeouts]\ndrain = \"60s\"\n";
    let mut n1 = start_node_with(&lab, "lb1", no_health, &[ws], &f.table(150, 100, ""));
    let _n2 = start_node_with(&lab, "lb2", no_health, &[ws], &f.table(100, 100, ""));
    lab.wait_for("lb1 holds the VIP", Duration::from_secs(5), || {
        f.holders(&lab) == (true, false)
    });
    // RFC 6455 §4.1 opening handshake and one masked frame, echoed.
    let vip = f.vip_addr();
    let open = move || -> std::net::TcpStream {
        let mut s = std::net::TcpStream::connect(vip).unwrap();
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
        f.has_vip(&lab, "lb2")
    });
    let code = n1.wait_exit(Duration::from_secs(10));
    assert!(
        code.is_some_and(|c| c.success()),
        "lb1 did not exit cleanly: {code:?}\n{}",
        n1.log()
    );
    // The backup serves new WebSockets through the VIP.
    drop(lab.in_host("client", open));
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
    let _g = serial();
    let (lab, web) = V4.lab();
    let _n = start_node_with(&lab, "lb1", "[health]\nenabled = false\n", &[web.addr], "");
    let lb = SocketAddr::new(V4.host_ip("lb1"), 80);
    lab.wait_for("lb1 serves", Duration::from_secs(5), || {
        http_from(&lab, "client", lb, "/").0 == 200
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
                let answer = support::read_answer(s).unwrap();
                assert_eq!(answer.status, 200);
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

// ---- issue 35: a planned handover that drops no SYN (src/net/steer.rs) -----------------------

/// The steering's figures on `host`: (packets passed on, packets guarded, the `prev`
/// entries), from its nftables table.
fn steering(lab: &Lab, host: &str, f: Family) -> (u64, u64, String) {
    let nft = |args: &[&str]| {
        let out = lab.exec(host).arg("nft").args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let packets = |name: &str| {
        let text = nft(&["list", "counter", "netdev", "floatlb_handover", name]);
        let mut w = text.split_whitespace();
        w.find(|w| *w == "packets");
        w.next().and_then(|n| n.parse().ok()).unwrap_or(0)
    };
    let map = if f == V4 { "prev4" } else { "prev6" };
    let entries = nft(&["list", "map", "netdev", "floatlb_handover", map]);
    let entries = entries
        .split_once("elements = {")
        .map_or(String::new(), |(_, e)| {
            e.split('}').next().unwrap_or("").trim().to_string()
        });
    (packets("forwarded"), packets("guarded"), entries)
}

/// `POST /admin/handover` to `host`'s admin listener: what it answered (curl failing
/// fails the test).
fn admin_handover(lab: &Lab, host: &str) -> String {
    let out = lab
        .exec(host)
        .args(["curl", "-s", "-m", "10", "-X", "POST"])
        .arg(format!("http://{ADMIN}/admin/handover"))
        .output()
        .unwrap();
    assert!(out.status.success(), "curl to {host}'s admin listener");
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Whether `nft` is here; the tests below need it (vm-lab/install-deps installs it).
fn nft_available(test: &str) -> bool {
    let ok = Command::new("nft")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("FLOATLB_REQUIRE_NETNS").as_deref() != Ok("1"),
            "{test}: nft (Debian nftables) is missing"
        );
        eprintln!("skipping {test}: nft (Debian nftables) is missing");
    }
    ok
}

/// A pair with the steering installed and a 3 s `vip-linger` (the window in which the new
/// master passes the old master's flows back): lb1 master, lb2's entry naming lb1.
fn steered_pair(f: Family, lab: &Lab, web: &support::TestBackend) -> (Node, Node) {
    let tables = format!("{FAST_HEALTH}[timeouts]\nvip-linger = \"3s\"\n");
    steered_pair_with(f, lab, web, [tables.clone(), tables])
}

/// [`steered_pair`] with lb1's and lb2's tables before `[[backend]]` given whole.
fn steered_pair_with(
    f: Family,
    lab: &Lab,
    web: &support::TestBackend,
    tables: [String; 2],
) -> (Node, Node) {
    let listen = if f == V4 { "0.0.0.0:80" } else { "[::]:80" };
    let n1 = start_node_listening(
        lab,
        "lb1",
        listen,
        &tables[0],
        &[web.addr],
        &f.table(150, 100, ""),
    );
    let n2 = start_node_listening(
        lab,
        "lb2",
        listen,
        &tables[1],
        &[web.addr],
        &f.table(100, 100, ""),
    );
    lab.wait_for("lb1 holds the VIP", Duration::from_secs(6), || {
        f.holders(lab) == (true, false)
    });
    let lb1 = f.advert_source(lab, "lb1").to_string();
    lab.wait_for("lb2's steering names lb1", Duration::from_secs(5), || {
        steering(lab, "lb2", f).2.contains(&lb1)
    });
    assert!(n1.log().contains("handover steering ready"), "{}", n1.log());
    (n1, n2)
}

/// A client connection driven step by step from a thread in the client's namespace.
struct Flow {
    go: std::sync::mpsc::Sender<()>,
    done: std::thread::JoinHandle<Result<String, String>>,
}

/// Connects to the VIP and sends the first half of a request; the second half and the read
/// wait for [`Flow::finish`].
fn open_flow(lab: &Lab, f: Family) -> Flow {
    use std::io::{Read, Write};
    let path = format!("/run/netns/{}", lab.ns("client"));
    let addr = f.vip_addr();
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let (ready_tx, ready) = std::sync::mpsc::channel::<Result<(), String>>();
    let done = std::thread::spawn(move || {
        support::netns::enter(&path);
        let mut s = match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            Ok(s) => s,
            Err(e) => {
                let _ = ready_tx.send(Err(format!("connect: {e}")));
                return Err(format!("connect: {e}"));
            }
        };
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let sent = s.write_all(b"GET / HTTP/1.1\r\nHost: steer.test\r\n");
        let _ = ready_tx.send(sent.map_err(|e| e.to_string()));
        let _ = wait.recv();
        s.write_all(b"Connection: close\r\n\r\n")
            .map_err(|e| format!("write: {e}"))?;
        let mut answer = String::new();
        s.read_to_string(&mut answer)
            .map_err(|e| format!("read: {e}"))?;
        Ok(answer)
    });
    ready
        .recv()
        .unwrap()
        .expect("the first half of the request");
    Flow { go, done }
}

impl Flow {
    fn finish(self) -> Result<String, String> {
        let _ = self.go.send(());
        self.done.join().unwrap()
    }
}

/// Points the client's neighbour entry for the VIP at `host`: a client that has (or has not
/// yet) seen the new master's gratuitous ARP.
fn client_sends_to(lab: &Lab, f: Family, host: &str) {
    let st = lab
        .exec("client")
        .args(["ip", "neigh", "replace", f.vip(), "lladdr", &lab.mac(host)])
        .args(["dev", "eth0", "nud", "permanent"])
        .status()
        .unwrap();
    assert!(st.success());
}

/// SYNs (without ACK) from the client to the VIP's port 80 in a capture.
fn syns_in(capture: &str) -> usize {
    capture.lines().filter(|l| l.contains("Flags [S]")).count()
}

/// Issue 35, a planned handover with the steering (`POST /admin/handover`): a client that
/// has not seen the gratuitous ARP yet sends its SYN to the old master after the step-down;
/// the old master answers it (no SYN dropped: tcpdump sees one SYN, no retransmission).
/// Then the client's ARP moves and the rest of its request reaches the new master, which
/// has no socket for the flow and passes it to the old one: the answer comes back whole.
/// Once `vip-linger` has passed, the new master's entry is gone and nothing more is passed
/// on. IPv6 too: the VIP lingering on the old master is deprecated there (RFC 6724 §5 rule 3:
/// never a new connection's source) and still receives the late flow.
fn a_late_syn_is_served_by_the_old_master_and_its_flow_completes(f: Family) {
    if !nft_available("a_late_syn_is_served_by_the_old_master_and_its_flow_completes") {
        return;
    }
    let (lab, web) = f.lab();
    let (n1, _n2) = steered_pair(f, &lab, &web);
    client_sends_to(&lab, f, "lb1");
    let mut capture = KillOnDrop(
        lab.exec("client")
            .args(["tcpdump", "-l", "-n", "-i", "eth0", "tcp", "port", "80"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(300));
    let said = admin_handover(&lab, "lb1");
    assert!(said.contains("new SYNs served"), "{said}\n{}", n1.log());
    lab.wait_for("lb2 takes over", Duration::from_secs(3), || {
        f.has_vip(&lab, "lb2")
    });
    // The SYN goes to the old master, which still holds the VIP for vip-linger.
    let flow = open_flow(&lab, f);
    if f == V6 {
        assert!(
            vip_line(&lab, "lb1", f).contains("deprecated"),
            "the lingering IPv6 VIP is deprecated: {}",
            vip_line(&lab, "lb1", f)
        );
    }
    client_sends_to(&lab, f, "lb2");
    lab.wait_for(
        "lb2 passes lb1's flows back for a while",
        Duration::from_secs(2),
        || {
            let entry = steering(&lab, "lb2", f).2;
            entry.contains("timeout") && entry.contains(&f.advert_source(&lab, "lb1").to_string())
        },
    );
    let (before, _, _) = steering(&lab, "lb2", f);
    let answer = flow.finish().expect("the late flow completes");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("web1"), "{answer}");
    let (after, _, _) = steering(&lab, "lb2", f);
    assert!(
        after > before,
        "lb2 passed the flow's packets to lb1 ({before} -> {after})"
    );
    // A new connection now goes to lb2 and is served there.
    assert_eq!(http_from(&lab, "client", f.vip_addr(), "/").0, 200);
    // The forwarding ends by itself (the kernel removes the entry after vip-linger + margin).
    lab.wait_for("lb2's entry expires", Duration::from_secs(6), || {
        steering(&lab, "lb2", f).2.is_empty()
    });
    let _ = capture.0.kill();
    let mut text = String::new();
    use std::io::Read;
    capture
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(
        syns_in(&text),
        2,
        "one SYN per connection, none sent again:\n{text}"
    );
}
both_families!(a_late_syn_is_served_by_the_old_master_and_its_flow_completes);

/// `host`'s line for the VIP in `ip addr show dev eth0`, with its flags.
fn vip_line(lab: &Lab, host: &str, f: Family) -> String {
    let out = lab
        .exec(host)
        .args(["ip", "addr", "show", "dev", "eth0"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let at = format!(" {}/", f.vip());
    text.lines()
        .find(|l| l.contains(&at))
        .unwrap_or_default()
        .to_string()
}

/// `[peers]` for `host` (port 7480 of its address, the other node its peer) with the pair's
/// key file, and a 20 s `vip-linger`: far longer than the drain takes, so an entry that
/// ends before it ended on the old master's message.
fn drain_tables(f: Family, key: &std::path::Path) -> [String; 2] {
    let table = |me: &str, other: &str| {
        format!(
            "{FAST_HEALTH}[timeouts]\nvip-linger = \"20s\"\n[peers]\naddress = \"{}\"\npeers = [\"{}\"]\nkey-file = \"{}\"\n",
            SocketAddr::new(f.host_ip(me), 7480),
            SocketAddr::new(f.host_ip(other), 7480),
            key.display()
        )
    };
    [table("lb1", "lb2"), table("lb2", "lb1")]
}

/// Issue 35: the forwarding stops when the old master has drained, not at its timeout.
/// A late flow on lb1 completes through lb2's forwarding; once it is closed and no new
/// connection came for a moment, lb1 says so over `[peers]` and lb2 removes its entry at
/// once, while lb1 still holds the lingering VIP (20 s) and lb2's entry had 20.1 s to run.
/// Then a stray packet for no flow that reaches lb2 is no longer passed on (nft counter).
fn the_forwarding_stops_when_the_old_master_has_drained(f: Family) {
    if !nft_available("the_forwarding_stops_when_the_old_master_has_drained") {
        return;
    }
    let (lab, web) = f.lab();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("peers.key");
    std::fs::write(&key, "0123456789abcdef0123456789abcdef-handover-test\n").unwrap();
    let (n1, n2) = steered_pair_with(f, &lab, &web, drain_tables(f, &key));
    client_sends_to(&lab, f, "lb1");
    let said = admin_handover(&lab, "lb1");
    assert!(said.contains("new SYNs served"), "{said}\n{}", n1.log());
    lab.wait_for("lb2 takes over", Duration::from_secs(3), || {
        f.has_vip(&lab, "lb2")
    });
    let flow = open_flow(&lab, f);
    client_sends_to(&lab, f, "lb2");
    lab.wait_for(
        "lb2 passes lb1's flows back",
        Duration::from_secs(2),
        || steering(&lab, "lb2", f).2.contains("timeout"),
    );
    let answer = flow.finish().expect("the late flow completes");
    assert!(answer.contains("web1"), "{answer}");
    let (passed, _, _) = steering(&lab, "lb2", f);
    assert!(passed > 0, "lb2 passed the late flow's packets to lb1");
    lab.wait_for(
        "lb2's entry ends on lb1's drained message",
        Duration::from_secs(5),
        || steering(&lab, "lb2", f).2.is_empty(),
    );
    let log = n2.log();
    let drained = log
        .lines()
        .find(|l| l.contains("the old master has drained"));
    assert!(drained.is_some(), "{log}");
    eprintln!("{}", drained.unwrap_or_default());
    assert!(n1.log().contains("told the peers"), "{}", n1.log());
    assert!(f.has_vip(&lab, "lb1"), "lb1 still lingers with the VIP");
    // Stray ACKs for no flow reach lb2: it answers them itself now.
    let st = lab
        .exec("client")
        .args([
            "hping3",
            "-q",
            "-c",
            "3",
            "-i",
            "u20000",
            "-A",
            "-p",
            "80",
            f.vip(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(st.is_ok_and(|s| s.success()), "hping3");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        steering(&lab, "lb2", f).0,
        passed,
        "nothing passed on after the drain"
    );
    assert_eq!(http_from(&lab, "client", f.vip_addr(), "/").0, 200);
}
ipv4_only!(the_forwarding_stops_when_the_old_master_has_drained);

/// Issue 35: a packet is passed on at most once. With both nodes' entries pointing at each
/// other (set by hand: no VRRP state gives that), stray ACKs for no flow reach lb2, which
/// passes them to lb1 with TTL 1; lb1 never passes a TTL-1 packet on (its guard counts them)
/// and answers them itself (a reset): no loop.
fn a_packet_is_passed_on_at_most_once(f: Family) {
    if !nft_available("a_packet_is_passed_on_at_most_once") {
        return;
    }
    let (lab, web) = f.lab();
    let (_n1, _n2) = steered_pair(f, &lab, &web);
    let map = if f == V4 { "prev4" } else { "prev6" };
    // lb2 is not master here, but its table is the same: point it at lb1 and lb1 at lb2.
    for (host, to) in [("lb1", "lb2"), ("lb2", "lb1")] {
        let to = f.advert_source(&lab, to);
        let st = lab
            .exec(host)
            .args(["nft", "add", "element", "netdev", "floatlb_handover", map])
            .arg(format!("{{ {} : {to} }}", f.vip()))
            .status()
            .unwrap();
        assert!(st.success());
    }
    client_sends_to(&lab, f, "lb2");
    let st = lab
        .exec("client")
        .args([
            "hping3",
            "-q",
            "-c",
            "3",
            "-i",
            "u20000",
            "-A",
            "-p",
            "80",
            f.vip(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(st.is_ok_and(|s| s.success()), "hping3");
    std::thread::sleep(Duration::from_millis(300));
    let (fwd2, _, _) = steering(&lab, "lb2", f);
    let (fwd1, guarded1, _) = steering(&lab, "lb1", f);
    assert_eq!(fwd2, 3, "lb2 passed each stray ACK on once");
    assert_eq!(guarded1, 3, "lb1 kept each one");
    assert_eq!(fwd1, 0, "lb1 passed nothing back");
}
ipv4_only!(a_packet_is_passed_on_at_most_once);

/// Issue 35: the new master dies in the middle of a planned handover (SIGKILL while it
/// passes lb1's flows back). lb1 takes the VIP again after Master_Down_Interval, as after
/// any death: one master, and it passes nothing on (a takeover after silence arms no
/// entry), so no packet goes round.
fn a_crash_mid_handover_leaves_one_master_and_no_forwarding(f: Family) {
    if !nft_available("a_crash_mid_handover_leaves_one_master_and_no_forwarding") {
        return;
    }
    let (lab, web) = f.lab();
    let (n1, n2) = steered_pair(f, &lab, &web);
    admin_handover(&lab, "lb1");
    lab.wait_for("lb2 takes over", Duration::from_secs(3), || {
        f.has_vip(&lab, "lb2")
    });
    lab.wait_for(
        "lb2 passes lb1's flows back",
        Duration::from_secs(2),
        || steering(&lab, "lb2", f).2.contains("timeout"),
    );
    drop(n2);
    lab.wait_for("lb1 is master again", Duration::from_secs(5), || {
        f.has_vip(&lab, "lb1") && admin_status(&lab, "lb1").contains("\"state\":\"MASTER\"")
    });
    std::thread::sleep(Duration::from_millis(300));
    let (fwd, _, entry) = steering(&lab, "lb1", f);
    assert!(entry.is_empty(), "lb1 passes nothing on: {entry:?}");
    assert_eq!(fwd, 0);
    // A client that took lb1's gratuitous ARP (one that took lb2's within the last second
    // keeps lb2's MAC for its neighbour locktime: that is ARP's, with or without steering).
    client_sends_to(&lab, f, "lb1");
    let answer = http_from(&lab, "client", f.vip_addr(), "/");
    assert_eq!(answer.0, 200, "{answer:?}\n{}", n1.log());
}
ipv4_only!(a_crash_mid_handover_leaves_one_master_and_no_forwarding);

/// Issue 35: a takeover after silence (the master's link cut) arms nothing. lb2's entry
/// named lb1 while it was backup; once lb2 is master without having heard a priority-0
/// advert, the entry is gone, so lb1's flows get lb2's reset instead of going to a dead node.
fn a_takeover_after_a_death_passes_nothing_on(f: Family) {
    if !nft_available("a_takeover_after_a_death_passes_nothing_on") {
        return;
    }
    let (lab, web) = f.lab();
    let (_n1, _n2) = steered_pair(f, &lab, &web);
    lab.link("lb1", false);
    lab.wait_for("lb2 takes over", Duration::from_secs(3), || {
        f.has_vip(&lab, "lb2")
    });
    lab.wait_for("lb2's entry is gone", Duration::from_secs(2), || {
        steering(&lab, "lb2", f).2.is_empty()
    });
    client_sends_to(&lab, f, "lb2");
    assert_eq!(http_from(&lab, "client", f.vip_addr(), "/").0, 200);
    assert_eq!(steering(&lab, "lb2", f).0, 0, "lb2 passed nothing on");
}
ipv4_only!(a_takeover_after_a_death_passes_nothing_on);

/// Issue 35: the old master dies in the middle of a planned handover (every process of
/// lb1 killed while lb2 passes lb1's flows back). lb2 stays the one master, a packet it
/// passes on goes nowhere (lb1 is gone) and never comes back (no loop: lb2 keeps no
/// passed-on packet), its entry still expires by itself, and new connections are served.
fn a_crash_of_the_old_master_mid_handover_leaves_one_master(f: Family) {
    if !nft_available("a_crash_of_the_old_master_mid_handover_leaves_one_master") {
        return;
    }
    let (lab, web) = f.lab();
    let (_n1, _n2) = steered_pair(f, &lab, &web);
    client_sends_to(&lab, f, "lb1");
    admin_handover(&lab, "lb1");
    lab.wait_for("lb2 takes over", Duration::from_secs(3), || {
        f.has_vip(&lab, "lb2")
    });
    // A late flow on lb1, then lb1 dies with everything it runs.
    let flow = open_flow(&lab, f);
    let pids = Command::new("ip")
        .args(["netns", "pids", &lab.ns("lb1")])
        .output()
        .unwrap();
    for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
        if let Ok(pid) = pid.parse::<i32>() {
            // SAFETY: a signal to a process in this test's own lb1 namespace.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    client_sends_to(&lab, f, "lb2");
    let answer = flow.finish();
    assert!(
        !matches!(&answer, Ok(a) if a.starts_with("HTTP/1.1 200")),
        "a flow whose node died cannot complete: {answer:?}"
    );
    let (forwarded, guarded, _) = steering(&lab, "lb2", f);
    assert!(forwarded > 0, "lb2 passed the late flow's packets to lb1");
    assert_eq!(guarded, 0, "nothing came back to lb2");
    assert!(f.holders(&lab).1, "lb2 is still master");
    assert!(admin_status(&lab, "lb2").contains("\"state\":\"MASTER\""));
    lab.wait_for("lb2's entry expires", Duration::from_secs(6), || {
        steering(&lab, "lb2", f).2.is_empty()
    });
    assert_eq!(http_from(&lab, "client", f.vip_addr(), "/").0, 200);
}
ipv4_only!(a_crash_of_the_old_master_mid_handover_leaves_one_master);

/// Whether `host` has the (IPv4) VIP on lo, as `[[anycast]]` keeps it.
fn vip_on_lo(lab: &Lab, host: &str) -> bool {
    let out = lab
        .exec(host)
        .args(["ip", "-4", "-o", "addr", "show", "dev", "lo"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains(&format!(" {}/32", V4.vip()))
}

/// `[[anycast]]` (the VIP on lo, 20 s `vip-linger`) and `[peers]` with the other node.
/// The `[peers]` key file the anycast tests' nodes share, in `dir`.
fn anycast_key(dir: &std::path::Path) -> std::path::PathBuf {
    let key = dir.join("peers.key");
    std::fs::write(&key, "0123456789abcdef0123456789abcdef-anycast-test\n").unwrap();
    key
}

fn anycast_tables(key: &std::path::Path) -> [String; 2] {
    let table = |me: &str, other: &str| {
        format!(
            "{FAST_HEALTH}[timeouts]\nvip-linger = \"20s\"\n[peers]\naddress = \"{}\"\npeers = [\"{}\"]\nkey-file = \"{}\"\n[[anycast]]\naddress = \"{}\"\ninterface = \"lo\"\n",
            SocketAddr::new(V4.host_ip(me), 7480),
            SocketAddr::new(V4.host_ip(other), 7480),
            key.display(),
            V4.vip()
        )
    };
    [table("lb1", "lb2"), table("lb2", "lb1")]
}

/// Issue 35, `[[anycast]]` scale-in with the steering: lb2 leaves (`POST /admin/handover`),
/// says so over `[peers]`, and lb1 points the VIP at lb2. A client SYN that still reaches lb2
/// after it removed the VIP is served there (its local route); the flow's next packets reach
/// lb1 (as when the router's hash moves it), which has no record of the flow and passes them
/// to lb2: the answer comes back whole. Once lb2 has drained, lb1's entry is gone long before
/// its 20.1 s timeout. (The router's part is in `tests/anycast.rs` and the anycast drill.)
#[test]
fn anycast_a_leaving_nodes_late_flow_completes_through_a_peer() {
    let name = "anycast_a_leaving_nodes_late_flow_completes_through_a_peer";
    if !netns_available(name) || !nft_available(name) {
        return;
    }
    let _g = serial();
    let f = V4;
    let (lab, web) = f.lab();
    let dir = tempfile::tempdir().unwrap();
    let key = anycast_key(dir.path());
    let [t1, t2] = anycast_tables(&key);
    let n1 = start_node_listening(&lab, "lb1", "0.0.0.0:80", &t1, &[web.addr], "");
    let n2 = start_node_listening(&lab, "lb2", "0.0.0.0:80", &t2, &[web.addr], "");
    lab.wait_for("both nodes hold the VIP", Duration::from_secs(6), || {
        vip_on_lo(&lab, "lb1") && vip_on_lo(&lab, "lb2")
    });
    assert!(n1.log().contains("handover steering ready"), "{}", n1.log());
    let said = admin_handover(&lab, "lb2");
    assert!(said.contains("new SYNs served"), "{said}\n{}", n2.log());
    let lb2 = f.host_ip("lb2").to_string();
    lab.wait_for(
        "lb1 passes lb2's flows back",
        Duration::from_secs(2),
        || steering(&lab, "lb1", f).2.contains(&lb2),
    );
    assert!(!vip_on_lo(&lab, "lb2"), "lb2 withdrew the VIP");
    client_sends_to(&lab, f, "lb2");
    let flow = open_flow(&lab, f);
    client_sends_to(&lab, f, "lb1");
    let answer = flow.finish().expect("the late flow completes");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let (passed, _, _) = steering(&lab, "lb1", f);
    assert!(passed > 0, "lb1 passed the flow's packets to lb2");
    eprintln!("lb1 passed {passed} packets of the late flow to lb2");
    lab.wait_for(
        "lb1's entry ends on lb2's drained message",
        Duration::from_secs(5),
        || steering(&lab, "lb1", f).2.is_empty(),
    );
    assert!(
        n1.log().contains("the leaving peer has drained"),
        "{}",
        n1.log()
    );
    assert_eq!(http_from(&lab, "client", f.vip_addr(), "/").0, 200);
}

/// Issue 35: the kernel facilities the steering uses are checked at start. An `[[anycast]]`
/// node that cannot run `ip` (the local route it takes its passed-back packets through while
/// it drains) says so and does not steer: its planned handover holds back new SYNs, as
/// without `nft`, instead of withdrawing into packets it could not take.
#[test]
fn an_anycast_node_without_ip_says_so_and_holds_syns_back() {
    let name = "an_anycast_node_without_ip_says_so_and_holds_syns_back";
    if !netns_available(name) || !nft_available(name) {
        return;
    }
    let _g = serial();
    let (lab, web) = V4.lab();
    let dir = tempfile::tempdir().unwrap();
    let key = anycast_key(dir.path());
    // A PATH with nft and nothing else.
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let nft = ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("nft_available found nft");
    std::os::unix::fs::symlink(nft, bin.join("nft")).unwrap();
    let path = format!("PATH={}", bin.display());
    let [_, t2] = anycast_tables(&key);
    let n2 = start_node_env(&lab, "lb2", "0.0.0.0:80", &t2, &[web.addr], "", &[&path]);
    lab.wait_for("lb2 holds the VIP", Duration::from_secs(6), || {
        vip_on_lo(&lab, "lb2")
    });
    let log = n2.log();
    assert!(
        log.contains("needs `ip`") && !log.contains("handover steering ready"),
        "{log}"
    );
    let said = admin_handover(&lab, "lb2");
    assert!(said.contains("new SYNs held back"), "{said}\n{}", n2.log());
}
