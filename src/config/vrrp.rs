//! `[[vrrp]]`: the VRRP instances this node takes part in, as the file
//! states them. RFC 5798's limits are the vrrp crate's (`vrrp::rules`); here
//! they are mapped to the key that breaks them, for file:line:col messages.
//!
//! Not for: running the instances (the vrrp crate, `src/runtime/supervisor/vrrp.rs`).

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::values::{duration, parse_cidr, Problems};

/// One `[[vrrp]]` instance (a VRID this node takes part in).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Vrrp {
    pub interface: String,
    pub vrid: u32,
    pub priority: u32,
    #[serde(default = "default_advert", deserialize_with = "duration")]
    pub advert_interval: Duration,
    pub virtual_addresses: Vec<String>,
    #[serde(default = "yes")]
    pub preempt: bool,
    #[serde(default, deserialize_with = "duration")]
    pub preempt_delay: Duration,
    #[serde(default)]
    pub unicast_peers: Vec<IpAddr>,
    /// Priority lowered by this much while the local proxy is unhealthy;
    /// absent = enter FAULT instead.
    #[serde(default)]
    pub track_weight: Option<u32>,
    #[serde(default)]
    pub notify: Option<PathBuf>,
    /// Gratuitous ARPs per VIP when becoming master.
    #[serde(default = "default_garp_count")]
    pub garp_count: u32,
    #[serde(default = "default_garp_interval", deserialize_with = "duration")]
    pub garp_interval: Duration,
    /// Re-announce VIPs periodically while master; "0s" = off.
    #[serde(default, deserialize_with = "duration")]
    pub garp_refresh: Duration,
    /// Send the VRRPv2-style checksum (no pseudo-header), for old peers.
    #[serde(default)]
    pub v2_checksum: bool,
    /// Run the instance thread with SCHED_FIFO.
    #[serde(default = "yes")]
    pub realtime: bool,
    /// Instances with the same group fail over together (keepalived's
    /// vrrp_sync_group): when one goes FAULT or BACKUP, the others follow.
    #[serde(default)]
    pub group: Option<String>,
}

// `interface`, `vrid`, `priority` and `virtual-addresses` are required, so
// the table has no `Default`: these functions are the one statement of each
// key's default.
fn default_advert() -> Duration {
    Duration::from_millis(100)
}
fn default_garp_count() -> u32 {
    5
}
fn default_garp_interval() -> Duration {
    Duration::from_millis(1)
}
fn yes() -> bool {
    true
}

/// Checks of every `[[vrrp]]` instance, and that no two share a VRID on one
/// interface for one address family.
pub(super) fn vrrp_problems(list: &[Vrrp]) -> Problems {
    let mut out = Problems::new();
    let mut vrids = HashSet::new();
    for (i, v) in list.iter().enumerate() {
        for (path, msg) in v.problems() {
            out.push((format!("vrrp[{i}].{path}"), msg));
        }
        // Each address family has its own virtual routers (RFC 5798 §5.2.9).
        let ipv6 = v.vips().first().is_some_and(|(a, _)| a.is_ipv6());
        if !vrids.insert((v.interface.as_str(), v.vrid, ipv6)) {
            out.push((
                format!("vrrp[{i}].vrid"),
                format!(
                    "VRID {} is already used on {} for {}",
                    v.vrid,
                    v.interface,
                    if ipv6 { "IPv6" } else { "IPv4" }
                ),
            ));
        }
    }
    out
}

impl Vrrp {
    /// One instance's checks; paths relative to the instance (`vrid`).
    fn problems(&self) -> Problems {
        let mut out = Problems::new();
        if self.interface.is_empty() {
            out.push(("interface".into(), "must not be empty".into()));
        } else if vrrp::address::interface_index(&self.interface).is_err() {
            out.push((
                "interface".into(),
                format!(
                    "no network interface named {:?} on this host",
                    self.interface
                ),
            ));
        }
        // RFC 5798's limits are the vrrp crate's (vrrp::rules); here they get
        // the key that breaks them.
        use vrrp::rules::{self, RuleError};
        if let Err(e) = rules::vrid(self.vrid) {
            out.push(("vrid".into(), e.to_string()));
        }
        if let Err(e) = rules::priority(self.priority) {
            out.push(("priority".into(), e.to_string()));
        }
        if let Err(e) = rules::advert_interval(self.advert_interval) {
            out.push(("advert-interval".into(), e.to_string()));
        }
        if self.virtual_addresses.is_empty() {
            out.push(("virtual-addresses".into(), RuleError::NoAddress.to_string()));
        }
        // One address family per instance (as keepalived): the first address decides it.
        let mut family: Option<IpAddr> = None;
        for (j, a) in self.virtual_addresses.iter().enumerate() {
            let at = format!("virtual-addresses[{j}]");
            match parse_cidr(a) {
                Err(e) => out.push((at, e)),
                Ok((ip, len)) => match rules::virtual_address(family, ip, len) {
                    Err(e @ RuleError::Family { .. }) => out.push((
                        at,
                        format!("{e}: an instance has one address family; put IPv4 and IPv6 VIPs in two [[vrrp]] tables (with the same group to fail over together)"),
                    )),
                    Err(e) => out.push((at, e.to_string())),
                    Ok(()) => family = family.or(Some(ip)),
                },
            }
        }
        if let Some(first) = family {
            for (j, peer) in self.unicast_peers.iter().enumerate() {
                if let Err(e) = rules::unicast_peer(first, *peer) {
                    out.push((format!("unicast-peers[{j}]"), e.to_string()));
                }
            }
        }
        if self.group.as_deref() == Some("") {
            out.push(("group".into(), "must not be empty".into()));
        }
        if let Some(w) = self.track_weight {
            if !(1..=254).contains(&w) {
                out.push(("track-weight".into(), "must be in 1..=254".into()));
            }
        }
        if self.garp_count > 100 {
            out.push(("garp-count".into(), "must be at most 100".into()));
        }
        out
    }

    /// The VIPs as (address, prefix length).
    pub fn vips(&self) -> Vec<(IpAddr, u8)> {
        self.virtual_addresses
            .iter()
            .filter_map(|a| parse_cidr(a).ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{parse_str, GOOD};

    #[test]
    fn vrrp_ranges_checked() {
        let text = format!(
            "{GOOD}\n[[vrrp]]\ninterface = \"lo\"\nvrid = 300\npriority = 0\nadvert-interval = \"15ms\"\nvirtual-addresses = [\"198.18.0.300/24\"]\n"
        );
        let err = parse_str(&text).unwrap_err();
        let paths: Vec<_> = err.problems().iter().map(|p| p.path.as_str()).collect();
        for want in [
            "vrrp[0].vrid",
            "vrrp[0].priority",
            "vrrp[0].advert-interval",
            "vrrp[0].virtual-addresses[0]",
        ] {
            assert!(paths.contains(&want), "missing {want}: {err}");
        }
    }

    /// One address family per instance (RFC 5798 §5.2.9): an IPv6 VIP after
    /// an IPv4 one, or a peer of the other family, is a check error that
    /// points at the offending entry.
    #[test]
    fn vrrp_families_do_not_mix() {
        let text = format!(
            "{GOOD}\n[[vrrp]]\ninterface = \"lo\"\nvrid = 51\npriority = 100\nvirtual-addresses = [\"198.18.0.100/24\", \"2001:2::100/64\"]\nunicast-peers = [\"2001:2::4\"]\ngroup = \"web\"\n"
        );
        let err = parse_str(&text).unwrap_err();
        let p = err
            .problems()
            .iter()
            .find(|p| p.path == "vrrp[0].virtual-addresses[1]")
            .unwrap_or_else(|| panic!("{err}"));
        assert!(p.message.contains("one address family"), "{err}");
        let vline = text
            .lines()
            .position(|l| l.starts_with("virtual-addresses"))
            .unwrap()
            + 1;
        assert_eq!(p.line, vline, "{err}");
        assert!(err
            .problems()
            .iter()
            .any(|p| p.path == "vrrp[0].unicast-peers[0]"));
        let global_peer = format!(
            "{GOOD}\n[[vrrp]]\ninterface = \"lo\"\nvrid = 51\npriority = 100\nvirtual-addresses = [\"2001:2::100/64\"]\nunicast-peers = [\"fe80::4\", \"2001:2::4\"]\n"
        );
        let err = parse_str(&global_peer).unwrap_err();
        let paths: Vec<_> = err.problems().iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["vrrp[0].unicast-peers[1]"], "{err}");
        assert!(err.to_string().contains("link-local"), "{err}");
        let ok = format!(
            "{GOOD}\n[[vrrp]]\ninterface = \"lo\"\nvrid = 51\npriority = 100\nvirtual-addresses = [\"198.18.0.100/24\"]\ngroup = \"web\"\n[[vrrp]]\ninterface = \"lo\"\nvrid = 51\npriority = 100\nvirtual-addresses = [\"fe80::100/64\", \"2001:2::100/64\"]\ngroup = \"web\"\n"
        );
        let c = parse_str(&ok).unwrap();
        assert_eq!(c.vrrp[1].vips()[1], ("2001:2::100".parse().unwrap(), 64));
        assert_eq!(c.vrrp[1].group.as_deref(), Some("web"));
    }
}
