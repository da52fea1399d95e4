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

use super::values::{duration, opt_duration, parse_cidr, Problems};

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
    /// keepalived's `notify_master`: run on entering MASTER.
    #[serde(default)]
    pub notify_master: Option<CommandLine>,
    /// keepalived's `notify_backup`: run on entering BACKUP.
    #[serde(default)]
    pub notify_backup: Option<CommandLine>,
    /// keepalived's `notify_fault`: run on entering FAULT.
    #[serde(default)]
    pub notify_fault: Option<CommandLine>,
    /// keepalived's `notify_stop`: run when the instance stops.
    #[serde(default)]
    pub notify_stop: Option<CommandLine>,
    /// keepalived's `notify`: run on every transition with `INSTANCE <name>
    /// <STATE> <priority>` (or `GROUP <group> <STATE> 0`) appended.
    #[serde(default)]
    pub notify_keepalived: Option<CommandLine>,
    /// The instance's name in logs, metrics and notify arguments
    /// (keepalived's `vrrp_instance NAME`); default `vrrp<index>-<vrid>`.
    #[serde(default)]
    pub name: Option<String>,
    /// keepalived's `track_script`s.
    #[serde(default)]
    pub track_script: Vec<TrackScript>,
    /// keepalived's `track_interface`s.
    #[serde(default)]
    pub track_interface: Vec<TrackInterface>,
    /// RFC 5798 §7.3 virtual MAC on a macvlan.
    #[serde(default)]
    pub use_vmac: bool,
    /// The macvlan's name; default `vrrp.<vrid>`.
    #[serde(default)]
    pub vmac_interface: Option<String>,
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

/// A command: a string split on whitespace, or an array of program and
/// arguments. Run without a shell either way.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum CommandLine {
    Line(String),
    Argv(Vec<String>),
}

impl CommandLine {
    /// Program and arguments.
    pub fn argv(&self) -> Vec<String> {
        match self {
            CommandLine::Line(l) => l.split_whitespace().map(String::from).collect(),
            CommandLine::Argv(v) => v.clone(),
        }
    }

    /// What is wrong with it, if anything.
    fn problem(&self) -> Option<String> {
        let argv = self.argv();
        let Some(program) = argv.first().filter(|p| !p.is_empty()) else {
            return Some("must name a program".into());
        };
        let path = std::path::Path::new(program);
        if path.is_absolute() && !path.exists() {
            return Some(format!("{program} does not exist on this host"));
        }
        None
    }
}

/// One `[[vrrp.track-script]]` (keepalived's `vrrp_script` tracked by the
/// instance).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TrackScript {
    pub name: String,
    pub command: CommandLine,
    #[serde(default = "default_script_interval", deserialize_with = "duration")]
    pub interval: Duration,
    /// Default: the interval.
    #[serde(default, deserialize_with = "opt_duration")]
    pub timeout: Option<Duration>,
    #[serde(default = "one")]
    pub rise: u32,
    #[serde(default = "one")]
    pub fall: u32,
    /// -254..=254; absent (or 0) = FAULT while failing.
    #[serde(default)]
    pub weight: Option<i32>,
}

/// One `[[vrrp.track-interface]]` (keepalived's `track_interface`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TrackInterface {
    pub name: String,
    /// -254..=254; absent (or 0) = FAULT while the link is down.
    #[serde(default)]
    pub weight: Option<i32>,
}

fn default_script_interval() -> Duration {
    Duration::from_secs(2)
}
fn one() -> u32 {
    1
}

/// keepalived's weight range.
fn weight_problem(w: Option<i32>) -> Option<String> {
    w.filter(|w| !(-254..=254).contains(w))
        .map(|_| "must be in -254..=254 (absent or 0: FAULT while failing)".into())
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
        if self.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
            out.push(("name".into(), "must not be empty".into()));
        }
        for (key, cmd) in [
            ("notify-master", &self.notify_master),
            ("notify-backup", &self.notify_backup),
            ("notify-fault", &self.notify_fault),
            ("notify-stop", &self.notify_stop),
            ("notify-keepalived", &self.notify_keepalived),
        ] {
            if let Some(p) = cmd.as_ref().and_then(CommandLine::problem) {
                out.push((key.into(), p));
            }
        }
        let mut names = HashSet::new();
        for (j, t) in self.track_script.iter().enumerate() {
            let at = |k: &str| format!("track-script[{j}].{k}");
            if t.name.is_empty() {
                out.push((at("name"), "must not be empty".into()));
            } else if !names.insert(t.name.as_str()) {
                out.push((
                    at("name"),
                    format!("track script {:?} is listed twice", t.name),
                ));
            }
            if let Some(p) = t.command.problem() {
                out.push((at("command"), p));
            }
            if t.interval < Duration::from_millis(10) {
                out.push((at("interval"), "must be at least 10ms".into()));
            }
            if t.timeout.is_some_and(|d| d.is_zero()) {
                out.push((at("timeout"), "must be above zero".into()));
            }
            if t.rise == 0 {
                out.push((at("rise"), "must be at least 1".into()));
            }
            if t.fall == 0 {
                out.push((at("fall"), "must be at least 1".into()));
            }
            if let Some(p) = weight_problem(t.weight) {
                out.push((at("weight"), p));
            }
        }
        for (j, t) in self.track_interface.iter().enumerate() {
            let at = |k: &str| format!("track-interface[{j}].{k}");
            if t.name.is_empty() {
                out.push((at("name"), "must not be empty".into()));
            } else if vrrp::address::interface_index(&t.name).is_err() {
                out.push((
                    at("name"),
                    format!("no network interface named {:?} on this host", t.name),
                ));
            }
            if let Some(p) = weight_problem(t.weight) {
                out.push((at("weight"), p));
            }
        }
        if let Some(n) = &self.vmac_interface {
            if !self.use_vmac {
                out.push((
                    "vmac-interface".into(),
                    "names the VMAC interface, so it needs use-vmac = true".into(),
                ));
            }
            if n.is_empty() || n.len() > 15 || n.contains(['/', ' ']) || n == "." || n == ".." {
                out.push((
                    "vmac-interface".into(),
                    "must be a valid interface name (1 to 15 characters, no '/' or space)".into(),
                ));
            }
        }
        out
    }

    /// The `[[vrrp.track-script]]` tables for the vrrp crate.
    pub fn track_scripts(&self) -> Vec<vrrp::TrackScript> {
        self.track_script
            .iter()
            .map(|t| vrrp::TrackScript {
                name: t.name.clone(),
                argv: t.command.argv(),
                interval: t.interval,
                timeout: t.timeout.unwrap_or(t.interval),
                rise: t.rise,
                fall: t.fall,
                weight: t.weight,
            })
            .collect()
    }

    /// The `[[vrrp.track-interface]]` tables for the vrrp crate.
    pub fn track_interfaces(&self) -> Vec<vrrp::TrackInterface> {
        self.track_interface
            .iter()
            .map(|t| vrrp::TrackInterface {
                name: t.name.clone(),
                weight: t.weight,
            })
            .collect()
    }

    /// The keepalived notify hooks for the vrrp crate.
    pub fn notify_commands(&self) -> vrrp::NotifyCommands {
        let argv = |c: &Option<CommandLine>| c.as_ref().map(CommandLine::argv);
        vrrp::NotifyCommands {
            master: argv(&self.notify_master),
            backup: argv(&self.notify_backup),
            fault: argv(&self.notify_fault),
            stop: argv(&self.notify_stop),
            keepalived: argv(&self.notify_keepalived),
        }
    }

    /// The VMAC interface's name when `use-vmac` is on.
    pub fn vmac(&self) -> Option<String> {
        self.use_vmac.then(|| {
            self.vmac_interface
                .clone()
                .unwrap_or_else(|| vrrp::vmac::default_name(self.vrid as u8))
        })
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
    use std::time::Duration;

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

    /// keepalived parity keys: track scripts and interfaces, notify hooks,
    /// VMAC; bad values point at their key.
    #[test]
    fn keepalived_keys_parse_and_are_checked() {
        let text = format!(
            "{GOOD}\n[[vrrp]]\nname = \"VI_1\"\ninterface = \"lo\"\nvrid = 51\npriority = 100\nvirtual-addresses = [\"198.18.0.100/24\"]\nnotify-keepalived = \"/bin/echo k\"\nnotify-master = [\"/bin/echo\", \"to master\"]\nuse-vmac = true\n[[vrrp.track-script]]\nname = \"chk\"\ncommand = \"/bin/true --quiet\"\nweight = -60\nrise = 2\n[[vrrp.track-interface]]\nname = \"lo\"\n"
        );
        let c = parse_str(&text).unwrap();
        let v = &c.vrrp[0];
        let s = &v.track_scripts()[0];
        assert_eq!(s.argv, ["/bin/true", "--quiet"]);
        assert_eq!(
            (s.interval, s.timeout),
            (Duration::from_secs(2), Duration::from_secs(2))
        );
        assert_eq!((s.rise, s.fall, s.weight), (2, 1, Some(-60)));
        assert_eq!(v.track_interfaces()[0].weight, None);
        let n = v.notify_commands();
        assert_eq!(n.master.unwrap(), ["/bin/echo", "to master"]);
        assert_eq!(n.keepalived.unwrap(), ["/bin/echo", "k"]);
        assert_eq!(v.vmac().as_deref(), Some("vrrp.51"));
        assert_eq!(v.name.as_deref(), Some("VI_1"));

        let bad = format!(
            "{GOOD}\n[[vrrp]]\ninterface = \"lo\"\nvrid = 51\npriority = 100\nvirtual-addresses = [\"198.18.0.100/24\"]\nvmac-interface = \"vmac-with-a-far-too-long-name\"\nnotify-fault = \"\"\n[[vrrp.track-script]]\nname = \"chk\"\ncommand = \"/nonexistent/check\"\nweight = 300\nfall = 0\n[[vrrp.track-interface]]\nname = \"nosuch0\"\nweight = -255\n"
        );
        let err = parse_str(&bad).unwrap_err();
        let paths: Vec<_> = err.problems().iter().map(|p| p.path.as_str()).collect();
        for want in [
            "vrrp[0].vmac-interface",
            "vrrp[0].notify-fault",
            "vrrp[0].track-script[0].command",
            "vrrp[0].track-script[0].weight",
            "vrrp[0].track-script[0].fall",
            "vrrp[0].track-interface[0].name",
            "vrrp[0].track-interface[0].weight",
        ] {
            assert!(paths.contains(&want), "missing {want}: {err}");
        }
    }
}
