//! VMAC: the virtual router's own MAC address (RFC 5798 §7.3), on a macvlan.
//!
//! With `use-vmac` an instance creates, on its interface, a macvlan (mode
//! private, as keepalived's `use_vmac`) whose MAC is 00-00-5E-00-01-{VRID}
//! (IPv4) or 00-00-5E-00-02-{VRID} (IPv6). The VIPs go on it, and adverts and
//! gratuitous ARP / unsolicited NA leave from it, so every master answers
//! with the same MAC and clients' neighbour caches never change on failover.
//! The macvlan exists from start to stop, on backups too (without addresses
//! it has no address); it gets no SLAAC link-local address
//! (IN6_ADDR_GEN_MODE_NONE) and sends no router solicitations; an IPv4
//! one has IPv6 off altogether. What a backup's VMAC still sends: the
//! IGMP/MLD reports of the VRRP group it listens on, which a learning
//! switch sees (the master's next advert moves the MAC back).
//!
//! keepalived's sysctls (keepalived/vrrp/vrrp_if_config.c) are set too: on
//! the parent `arp_ignore=1` and `arp_filter=1`, so the parent does not
//! answer ARP for the VIP with its own MAC (restored at stop); on the
//! macvlan `arp_ignore=1`, `accept_local=1`, `rp_filter=0`. And one more on
//! the parent, `arp_announce=2`: replies to clients leave through the
//! parent's route, and without it the parent's ARP requests for a client
//! would say "tell <VIP>" from the parent's MAC, which moves the client's
//! entry for the VIP off the virtual MAC.
//! Not for: deciding when addresses move (the instance and `fsm`).

use std::io;
use std::net::IpAddr;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::link::{
    AfSpecInet6, AfSpecUnspec, In6AddrGenMode, InfoData, InfoKind, InfoMacVlan, LinkAttribute,
    LinkFlags, LinkInfo, LinkMessage, MacVlanMode,
};
use netlink_packet_route::RouteNetlinkMessage;

use crate::address::{self, Netlink};

/// RFC 5798 §7.3: 00-00-5E-00-01-{VRID} for IPv4, 00-00-5E-00-02-{VRID}
/// for IPv6.
pub fn virtual_mac(vrid: u8, ipv6: bool) -> [u8; 6] {
    [0x00, 0x00, 0x5e, 0x00, if ipv6 { 0x02 } else { 0x01 }, vrid]
}

/// keepalived's default name for the macvlan: `vrrp.<VRID>`.
pub fn default_name(vrid: u8) -> String {
    format!("vrrp.{vrid}")
}

/// A VMAC interface this instance created; removed on drop.
pub struct Vmac {
    pub name: String,
    pub ifindex: u32,
    pub mac: [u8; 6],
    parent: String,
    /// The parent's sysctls as they were: (key, value) to put back.
    restore: Vec<(&'static str, String)>,
}

fn sysctl_path(family: &str, ifname: &str, key: &str) -> String {
    format!("/proc/sys/net/{family}/conf/{ifname}/{key}")
}

fn set_sysctl(family: &str, ifname: &str, key: &str, value: &str) -> io::Result<()> {
    std::fs::write(sysctl_path(family, ifname, key), value).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("setting net.{family}.conf.{ifname}.{key}={value}: {e}"),
        )
    })
}

fn link_message(ifindex: u32) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = ifindex;
    m
}

impl Vmac {
    /// Creates `name` on `parent` with the virtual MAC of `vrid` and brings
    /// it up. A macvlan of that name with that MAC, left by a crash, is
    /// replaced; any other interface of that name is an error.
    /// `ipv6`: an IPv6 instance's VMAC (00-00-5E-00-02-{VRID}); the
    /// instance puts the parent's link-local address on it while master
    /// ([`Vmac::link_local`]).
    pub fn create(
        netlink: &Netlink,
        parent: &str,
        name: &str,
        vrid: u8,
        ipv6: bool,
    ) -> io::Result<Vmac> {
        let mac = virtual_mac(vrid, ipv6);
        let parent_index = address::interface_index(parent)?;
        if let Ok(old) = address::interface_index(name) {
            if address::interface_mac(name).ok() != Some(mac) {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("interface {name:?} exists and is not this instance's VMAC; name another with vmac-interface"),
                ));
            }
            tracing::warn!(
                interface = name,
                "removing a VMAC interface left behind by a previous run"
            );
            netlink.request(RouteNetlinkMessage::DelLink(link_message(old)), 0)?;
        }
        let mut m = link_message(0);
        m.attributes = vec![
            LinkAttribute::IfName(name.into()),
            LinkAttribute::Link(parent_index),
            LinkAttribute::Address(mac.to_vec()),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::MacVlan),
                LinkInfo::Data(InfoData::MacVlan(vec![InfoMacVlan::Mode(
                    MacVlanMode::Private,
                )])),
            ]),
        ];
        netlink.request(RouteNetlinkMessage::NewLink(m), NLM_F_CREATE | NLM_F_EXCL)?;
        let ifindex = address::interface_index(name)?;
        let mut vmac = Vmac {
            name: name.into(),
            ifindex,
            mac,
            parent: parent.into(),
            restore: Vec::new(),
        };
        // The kernel ignores IFLA_AF_SPEC on creation, and it must be set
        // before the link is up or a SLAAC address appears (keepalived's order).
        let mut gen = link_message(ifindex);
        gen.attributes = vec![LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(
            vec![AfSpecInet6::AddrGenMode(In6AddrGenMode::None)],
        )])];
        netlink.request(RouteNetlinkMessage::SetLink(gen), 0)?;
        if ipv6 {
            // A backup's VMAC must stay silent: no router solicitations.
            set_sysctl("ipv6", name, "accept_ra", "0")?;
            set_sysctl("ipv6", name, "router_solicitations", "0")?;
        } else {
            set_sysctl("ipv6", name, "disable_ipv6", "1")?;
        }
        for (key, value) in [
            ("arp_ignore", "1"),
            ("accept_local", "1"),
            ("rp_filter", "0"),
        ] {
            set_sysctl("ipv4", name, key, value)?;
        }
        for (key, want) in [
            ("arp_ignore", "1"),
            ("arp_filter", "1"),
            ("arp_announce", "2"),
        ] {
            let old = std::fs::read_to_string(sysctl_path("ipv4", parent, key))?;
            if old.trim() != want {
                set_sysctl("ipv4", parent, key, want)?;
                vmac.restore.push((key, old.trim().to_string()));
            }
        }
        let mut up = link_message(ifindex);
        up.header.flags = LinkFlags::Up;
        up.header.change_mask = LinkFlags::Up;
        netlink.request(RouteNetlinkMessage::SetLink(up), 0)?;
        tracing::info!(interface = name, parent, mac = %format_mac(mac), "VMAC interface created");
        Ok(vmac)
    }

    /// Puts the parent's link-local address `ll` on the VMAC (`on`) or takes
    /// it off: an IPv6 master's adverts leave from the VMAC with that source
    /// (RFC 5798 §5.1.2.1), while a backup's VMAC has no address, so it
    /// joins no solicited-node group and says nothing a switch would learn
    /// the virtual MAC from.
    pub fn link_local(&self, netlink: &Netlink, ll: IpAddr, on: bool) -> io::Result<()> {
        if on {
            netlink.add(self.ifindex, ll, 64)
        } else {
            netlink.remove(self.ifindex, ll, 64)
        }
    }

    /// Deletes the macvlan (its addresses go with it) and puts the
    /// parent's sysctls back.
    pub fn remove(&mut self) {
        if self.ifindex == 0 {
            return;
        }
        match Netlink::open()
            .and_then(|n| n.request(RouteNetlinkMessage::DelLink(link_message(self.ifindex)), 0))
        {
            Ok(()) => tracing::info!(interface = %self.name, "VMAC interface removed"),
            Err(e) => {
                tracing::error!(interface = %self.name, error = %e, "could not remove the VMAC interface")
            }
        }
        self.ifindex = 0;
        for (key, value) in self.restore.drain(..) {
            let _ = set_sysctl("ipv4", &self.parent, key, &value);
        }
    }
}

impl Drop for Vmac {
    fn drop(&mut self) {
        self.remove();
    }
}

/// 00:00:5e:00:01:33
pub fn format_mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 5798 §7.3: "The virtual router MAC address associated with a
    /// virtual router is an IEEE 802 MAC Address in the following format:
    /// IPv4 case: 00-00-5E-00-01-{VRID} ... IPv6 case: 00-00-5E-00-02-{VRID}".
    #[test]
    fn virtual_mac_per_family() {
        assert_eq!(virtual_mac(51, false), [0, 0, 0x5e, 0, 1, 51]);
        assert_eq!(virtual_mac(255, true), [0, 0, 0x5e, 0, 2, 255]);
        assert_eq!(format_mac(virtual_mac(51, false)), "00:00:5e:00:01:33");
        assert_eq!(default_name(51), "vrrp.51");
    }

    /// RFC 5798 §7.3 (the source MAC of adverts and announcements is the
    /// virtual MAC): a gratuitous ARP built for the VMAC carries it as
    /// Ethernet source and ARP sender, an unsolicited NA as source and
    /// target link-layer address.
    #[test]
    fn announcements_come_from_the_virtual_mac() {
        let mac = virtual_mac(51, false);
        let f = crate::arp::garp_frame(mac, "198.18.0.100".parse().unwrap());
        assert_eq!(&f[6..12], &mac);
        assert_eq!(&f[22..28], &mac);
        let mac6 = virtual_mac(61, true);
        let f = crate::arp::unsolicited_na_frame(mac6, "2001:2::100".parse().unwrap());
        assert_eq!(&f[6..12], &mac6);
        assert_eq!(&f[f.len() - 6..], &mac6);
    }
}
