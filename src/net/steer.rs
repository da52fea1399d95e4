//! Packet steering for the planned handover: the new master takes every new SYN and passes
//! the packets of flows it has no part in to the old master at L2, so a client whose SYN
//! reached the old master just before the VIP moved keeps its connection (no reset) and no
//! SYN has to be dropped (no one-second stall).
//!
//! One nftables table in the `netdev` family, a base chain on each VRRP interface's ingress
//! hook (before the IP stack, so no `ip_forward` and no routing change). For TCP to a VIP and
//! a listener's port:
//! - a bare SYN records its flow (client address and port) in a set with a timeout, and goes
//!   up the stack: this node serves it;
//! - a packet of a recorded flow goes up the stack, and refreshes the record (so a node's
//!   own long flows stay recorded: what an `[[anycast]]` node that forwards for a leaving
//!   peer needs);
//! - anything else, while the VIP has an entry in the `prev` map, is sent at L2 to the
//!   address the entry names (`fwd ip to`, the neighbour table gives the MAC), with its TTL
//!   set to 2 (the forwarding takes one): a packet that arrives with TTL 1 was passed on by
//!   the peer and is never passed on again, so the two nodes cannot loop a packet.
//!
//! The map entry is the switch, and the kernel enforces its bound: [`Steering::arm`] with a
//! timeout (after a planned takeover) ends the forwarding by itself even if floatlb dies.
//! What decides when to arm is the supervisor's (`runtime::supervisor`); this module only
//! speaks to nftables, through the `nft` program. Not for the old master's side: it just
//! keeps serving (see `proxy::handover`).

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The table's name (one per network namespace).
pub const TABLE: &str = "floatlb_handover";

/// One VRRP interface and what arrives on it for this node's listeners.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub interface: String,
    pub vips: Vec<IpAddr>,
    pub ports: Vec<u16>,
}

/// The installed table.
#[derive(Debug)]
pub struct Steering {
    specs: Vec<Spec>,
}

/// The nftables script that (re)creates the table: flushed and filled in one transaction.
/// `mine_timeout` is how long a flow's SYN is remembered; it must outlast the forwarding
/// window that follows a takeover.
pub fn ruleset(specs: &[Spec], mine_timeout: Duration) -> String {
    let ms = mine_timeout.as_millis().max(1);
    let mut s = String::new();
    // `add` then `delete` removes an old table without failing when there is none.
    let _ = writeln!(s, "add table netdev {TABLE}\ndelete table netdev {TABLE}");
    let _ = writeln!(s, "table netdev {TABLE} {{");
    for (fam, addr) in [("4", "ipv4_addr"), ("6", "ipv6_addr")] {
        let _ = writeln!(
            s,
            "  set mine{fam} {{ type {addr} . inet_service; size 262144; flags dynamic,timeout; timeout {ms}ms; }}\n  \
             map prev{fam} {{ type {addr} : {addr}; flags timeout; }}"
        );
    }
    let _ = writeln!(s, "  counter forwarded {{ }}\n  counter guarded {{ }}");
    for (i, spec) in specs.iter().enumerate() {
        let ports = join(spec.ports.iter());
        let dev = quote(&spec.interface);
        let _ = writeln!(
            s,
            "  chain in{i} {{\n    type filter hook ingress device {dev} priority -100;"
        );
        let v4: Vec<&IpAddr> = spec.vips.iter().filter(|a| a.is_ipv4()).collect();
        let v6: Vec<&IpAddr> = spec.vips.iter().filter(|a| a.is_ipv6()).collect();
        if !v4.is_empty() && !ports.is_empty() {
            let _ = writeln!(
                s,
                "    ip daddr {{ {} }} tcp dport {{ {ports} }} jump vip4_{i}",
                join(v4.iter())
            );
        }
        if !v6.is_empty() && !ports.is_empty() {
            let _ = writeln!(
                s,
                "    ip6 daddr {{ {} }} tcp dport {{ {ports} }} jump vip6_{i}",
                join(v6.iter())
            );
        }
        let _ = writeln!(s, "  }}");
        for (fam, ip, ttl) in [("4", "ip", "ttl"), ("6", "ip6", "hoplimit")] {
            let _ = writeln!(
                s,
                "  chain vip{fam}_{i} {{\n    \
                 {ip} {ttl} 1 counter name guarded return\n    \
                 tcp flags & (syn|ack) == syn add @mine{fam} {{ {ip} saddr . tcp sport }} return\n    \
                 {ip} saddr . tcp sport @mine{fam} update @mine{fam} {{ {ip} saddr . tcp sport }} return\n    \
                 {ip} daddr @prev{fam} {ip} {ttl} set 2 counter name forwarded fwd {ip} to {ip} daddr map @prev{fam} device {dev}\n  }}"
            );
        }
    }
    s.push_str("}\n");
    s
}

fn join<T: std::fmt::Display>(items: impl Iterator<Item = T>) -> String {
    items.map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}

/// An interface name as an nft string (names cannot hold quotes; anything odd is refused).
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace(['"', '\\', '\n'], ""))
}

fn nft(script: &str) -> Result<(), String> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run nft: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| format!("cannot write to nft: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn fam(ip: &IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "4"
    } else {
        "6"
    }
}

/// Removes `vip`'s entry in one transaction whether or not it is there: adding an entry that
/// exists with the same target succeeds, so the delete always finds one (adding one with
/// another target would fail: hence the caller's `now`).
fn clear(vip: IpAddr, now: IpAddr) -> String {
    let f = fam(&vip);
    format!(
        "add element netdev {TABLE} prev{f} {{ {vip} : {now} }}\n\
         delete element netdev {TABLE} prev{f} {{ {vip} }}\n"
    )
}

impl Steering {
    /// Installs the table (replacing one a previous run left). An error says why (no `nft`
    /// program, or a kernel without nftables' netdev family, `fwd` or dynamic sets): the
    /// caller then keeps the handover that holds back new SYNs.
    pub fn install(specs: Vec<Spec>, mine_timeout: Duration) -> Result<Steering, String> {
        nft(&ruleset(&specs, mine_timeout))?;
        Ok(Steering { specs })
    }

    /// Sends the packets of flows this node has no part in, for `vip`, to `to` (the old
    /// master), for `timeout` (the kernel removes the entry then) or until [`Self::disarm`].
    /// `now` is the entry's target as the caller last set it (the kernel may have let a timed
    /// one expire since). Addresses of another family than the VIP's are refused.
    pub fn arm(
        &self,
        vip: IpAddr,
        to: IpAddr,
        timeout: Option<Duration>,
        now: Option<IpAddr>,
    ) -> Result<(), String> {
        if vip.is_ipv4() != to.is_ipv4() {
            return Err(format!(
                "cannot steer {vip} to {to}: another address family"
            ));
        }
        let t = timeout.map_or(String::new(), |t| {
            format!(" timeout {}ms", t.as_millis().max(1))
        });
        nft(&format!(
            "{}add element netdev {TABLE} prev{} {{ {vip}{t} : {to} }}\n",
            clear(vip, now.unwrap_or(to)),
            fam(&vip)
        ))
    }

    /// Stops passing packets for `vip` on; `now` as for [`Self::arm`].
    pub fn disarm(&self, vip: IpAddr, now: IpAddr) -> Result<(), String> {
        nft(&clear(vip, now))
    }

    /// What the table covers.
    pub fn specs(&self) -> &[Spec] {
        &self.specs
    }

    /// Removes the table.
    pub fn remove(&self) {
        let _ = nft(&format!(
            "add table netdev {TABLE}\ndelete table netdev {TABLE}\n"
        ));
    }
}

/// Whether `ip` (iproute2) runs, which [`accept_locally`] needs: checked at start, so that
/// a node that could not take its passed-back packets does not steer at all.
pub fn ip_usable() -> Result<(), String> {
    let out = Command::new("ip")
        .arg("-V")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    match out.success() {
        true => Ok(()),
        false => Err(format!("ip -V: {out}")),
    }
}

/// While `on`, packets to `vip` are this node's even without the address: a `local` route
/// of its own in table `local` (`ip route add local VIP dev lo table local proto static
/// metric 1`). An `[[anycast]]` node withdraws its route by removing the VIP, and still has
/// to take the packets its peers pass back to it until it has drained; listeners on the
/// wildcard address take them. Its metric sets it beside the address's own route (metric
/// 0), never over it: added before the address goes, there is no moment without one, and
/// removing it leaves the address's route if the VIP came back meanwhile.
pub fn accept_locally(vip: IpAddr, on: bool) -> Result<(), String> {
    let prefix = if vip.is_ipv4() { 32 } else { 128 };
    let out = Command::new("ip")
        .args([if vip.is_ipv4() { "-4" } else { "-6" }, "route"])
        .arg(if on { "add" } else { "del" })
        .args(["local", &format!("{vip}/{prefix}"), "dev", "lo"])
        .args(["table", "local", "proto", "static", "metric", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    let why = String::from_utf8_lossy(&out.stderr);
    // Already there (on), or already gone (off).
    if out.status.success() || why.contains("File exists") || why.contains("No such process") {
        Ok(())
    } else {
        Err(format!("ip route: {}", why.trim()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruleset_covers_each_interface_family_and_port() {
        let specs = [Spec {
            interface: "eth0".into(),
            vips: vec![
                "198.18.0.100".parse().unwrap(),
                "2001:2::100".parse().unwrap(),
            ],
            ports: vec![80, 443],
        }];
        let r = ruleset(&specs, Duration::from_millis(1500));
        assert!(
            r.contains("type filter hook ingress device \"eth0\" priority -100;"),
            "{r}"
        );
        assert!(
            r.contains("ip daddr { 198.18.0.100 } tcp dport { 80, 443 } jump vip4_0"),
            "{r}"
        );
        assert!(
            r.contains("ip6 daddr { 2001:2::100 } tcp dport { 80, 443 } jump vip6_0"),
            "{r}"
        );
        assert!(r.contains("timeout 1500ms;"), "{r}");
        // The loop guard comes before anything that could forward.
        let guard = r.find("ip ttl 1 counter name guarded return").unwrap();
        let fwd = r.find("fwd ip to ip daddr map @prev4").unwrap();
        assert!(guard < fwd, "{r}");
        assert!(r.contains("ip ttl set 2 counter name forwarded fwd"), "{r}");
        assert!(
            r.contains("ip saddr . tcp sport @mine4 update @mine4 { ip saddr . tcp sport } return"),
            "a known flow refreshes its record: {r}"
        );
        assert!(r.contains("ip6 hoplimit set 2"), "{r}");
        // A node with only IPv4 VIPs has no IPv6 jump.
        let only4 = [Spec {
            vips: vec!["198.18.0.100".parse().unwrap()],
            ..specs[0].clone()
        }];
        assert!(!ruleset(&only4, Duration::from_secs(1)).contains("ip6 daddr {"));
    }

    #[test]
    fn interface_names_cannot_break_out_of_the_string() {
        assert_eq!(quote("eth0\"; flush ruleset"), "\"eth0; flush ruleset\"");
    }
}
