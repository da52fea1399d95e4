//! `[[anycast]]`: VIPs announced by every healthy node (route health
//! injection), as the file states them.
//!
//! Not for: keeping the addresses and announcing them (`src/runtime/worker/anycast.rs`).

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use serde::Deserialize;

use super::values::{duration, Problems};

/// One `[[anycast]]` VIP: kept as a /32 on `interface` while this node can
/// serve, for the node's routing daemon (BIRD `protocol direct`) to announce.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Anycast {
    /// The VIP, a bare IPv4 address (announced as a /32).
    pub address: String,
    /// The interface the routing daemon exports routes from (a dummy, or lo).
    pub interface: String,
    /// The address is added with this valid lifetime and renewed while the node
    /// serves, so a floatlb that dies without cleaning up (SIGKILL, OOM) stops
    /// being announced within it. "0s" = a permanent address.
    #[serde(default = "default_anycast_lease", deserialize_with = "duration")]
    pub lease: Duration,
    /// How long the node must be able to serve before it announces (again),
    /// so a flapping backend does not make the route flap.
    #[serde(default, deserialize_with = "duration")]
    pub announce_delay: Duration,
}

// `address` and `interface` are required, so the table has no `Default`:
// this is the one statement of `lease`'s default.
fn default_anycast_lease() -> Duration {
    Duration::from_secs(3)
}

impl Anycast {
    /// The VIP, once validated.
    pub fn vip(&self) -> Option<Ipv4Addr> {
        self.address.parse().ok()
    }
}

/// Checks of the `[[anycast]]` tables; `with_vrrp`: whether the file has
/// `[[vrrp]]` tables, `listen`: the (first) listener's address.
pub(super) fn anycast_problems(list: &[Anycast], with_vrrp: bool, listen: IpAddr) -> Problems {
    let mut out = Vec::new();
    if !list.is_empty() && with_vrrp {
        out.push((
            "anycast".into(),
            "[[anycast]] and [[vrrp]] exclude each other: a VIP is either moved between two nodes by VRRP or announced by every healthy node".into(),
        ));
    }
    let mut seen = HashSet::new();
    for (i, a) in list.iter().enumerate() {
        match a.address.parse::<Ipv4Addr>() {
            Err(_) => out.push((
                format!("anycast[{i}].address"),
                format!(
                    "{:?} is not an IPv4 address (write the bare address; it is announced as a /32)",
                    a.address
                ),
            )),
            Ok(ip) => {
                if ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() || ip.is_broadcast() {
                    out.push((
                        format!("anycast[{i}].address"),
                        format!("{ip} cannot be announced"),
                    ));
                }
                if !seen.insert(ip) {
                    out.push((
                        format!("anycast[{i}].address"),
                        format!("{ip} is listed twice"),
                    ));
                }
                let l = listen;
                if !l.is_unspecified() && l != IpAddr::V4(ip) {
                    out.push((
                        format!("anycast[{i}].address"),
                        format!(
                            "the listener is bound to {l}, so nothing would answer on {ip}: listen on 0.0.0.0 or on the anycast address"
                        ),
                    ));
                }
            }
        }
        if a.interface.is_empty() {
            out.push((
                format!("anycast[{i}].interface"),
                "must not be empty".into(),
            ));
        } else if vrrp::address::interface_index(&a.interface).is_err() {
            out.push((
                format!("anycast[{i}].interface"),
                format!(
                    "no network interface named {:?} on this host (use lo, or create one first, e.g. `ip link add {} type dummy`)",
                    a.interface, a.interface
                ),
            ));
        }
        if !a.lease.is_zero() && a.lease < Duration::from_millis(500) {
            out.push((
                format!("anycast[{i}].lease"),
                "must be \"0s\" (permanent) or at least 500ms".into(),
            ));
        }
        if a.lease.as_secs() > u32::MAX as u64 / 2 {
            out.push((format!("anycast[{i}].lease"), "too long".into()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::tests::{parse_str, GOOD};

    #[test]
    fn anycast_checked_with_positions() {
        let text = format!(
            "{GOOD}\n[[anycast]]\naddress = \"198.18.0.300\"\ninterface = \"no-such-if0\"\nlease = \"10ms\"\n"
        );
        let err = parse_str(&text).unwrap_err();
        let found: Vec<_> = err
            .problems()
            .iter()
            .map(|p| (p.path.as_str(), p.line))
            .collect();
        for want in [
            ("anycast[0].address", 13),
            ("anycast[0].interface", 14),
            ("anycast[0].lease", 15),
        ] {
            assert!(found.contains(&want), "missing {want:?}: {err}");
        }
        let any = GOOD.replace("127.0.0.1:8080", "0.0.0.0:8080");
        let table = "\n[[anycast]]\naddress = \"198.18.0.100\"\ninterface = \"lo\"\n";
        let ok = parse_str(&format!("{any}{table}")).unwrap();
        assert_eq!(ok.anycast[0].vip(), Some("198.18.0.100".parse().unwrap()));
        assert_eq!(ok.anycast[0].lease, Duration::from_secs(3));
        let vrrp = "[[vrrp]]\ninterface = \"lo\"\nvrid = 1\npriority = 100\nvirtual-addresses = [\"198.18.0.101/24\"]\n";
        let err = parse_str(&format!("{any}{table}{vrrp}")).unwrap_err();
        assert!(err.problems().iter().any(|p| p.path == "anycast"), "{err}");
        // GOOD listens on 127.0.0.1: nothing would answer on the VIP.
        let err = parse_str(&format!("{GOOD}{table}")).unwrap_err();
        assert_eq!(err.problems()[0].path, "anycast[0].address", "{err}");
        assert_eq!(err.problems()[0].line, 13, "{err}");
    }
}
