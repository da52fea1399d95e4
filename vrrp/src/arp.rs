//! Announcing a VIP: tells the segment which MAC now answers for it.
//!
//! IPv4: gratuitous ARP, sent the way keepalived sends it — an ARP *request*
//! with sender IP = target IP = VIP, from the interface MAC to the broadcast
//! address — because hosts update an existing neighbour entry on requests more
//! reliably than on unsolicited replies.
//!
//! IPv6: an unsolicited Neighbor Advertisement (RFC 4861 §7.2.6) to all-nodes
//! ff02::1 with the Override flag, target = VIP and the interface MAC as
//! target link-layer address, Hop Limit 255 (§7.1.2 makes receivers drop any
//! other), which makes a host replace the MAC of an existing entry.
//!
//! Frames are written through pnet_packet's typed views (each field is
//! still checked byte by byte below) and sent on one AF_PACKET socket.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use pnet_base::MacAddr;
use pnet_packet::arp::{ArpHardwareTypes, ArpOperations, MutableArpPacket};
use pnet_packet::ethernet::{EtherType, EtherTypes, MutableEthernetPacket};
use pnet_packet::icmpv6::ndp::{
    MutableNeighborAdvertPacket, NdpOption, NdpOptionTypes, NeighborAdvertFlags,
};
use pnet_packet::icmpv6::{self, Icmpv6Code, Icmpv6Packet, Icmpv6Types};
use pnet_packet::ip::IpNextHeaderProtocols;
use pnet_packet::ipv6::MutableIpv6Packet;

/// ff02::1, all nodes.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// The Ethernet address IPv6 multicast to ff02::1 maps to (RFC 2464 §7).
const ALL_NODES_MAC: MacAddr = MacAddr(0x33, 0x33, 0, 0, 0, 1);
const ETHERNET_LEN: usize = 14;
const ARP_LEN: usize = 28;
const IPV6_LEN: usize = 40;
/// Neighbor Advertisement (24 bytes) with one Target Link-Layer Address option (8).
const NA_LEN: usize = 32;

fn mac_addr(m: [u8; 6]) -> MacAddr {
    MacAddr(m[0], m[1], m[2], m[3], m[4], m[5])
}

/// The Ethernet frame of a gratuitous ARP request for `vip`.
pub fn garp_frame(mac: [u8; 6], vip: Ipv4Addr) -> [u8; 42] {
    let mut f = [0u8; ETHERNET_LEN + ARP_LEN];
    let (eth, arp) = f.split_at_mut(ETHERNET_LEN);
    // The buffers are exactly the views' minimum sizes: `new` cannot fail.
    if let Some(mut e) = MutableEthernetPacket::new(eth) {
        e.set_destination(MacAddr::broadcast());
        e.set_source(mac_addr(mac));
        e.set_ethertype(EtherTypes::Arp);
    }
    if let Some(mut a) = MutableArpPacket::new(arp) {
        a.set_hardware_type(ArpHardwareTypes::Ethernet);
        a.set_protocol_type(EtherTypes::Ipv4);
        a.set_hw_addr_len(6);
        a.set_proto_addr_len(4);
        a.set_operation(ArpOperations::Request);
        a.set_sender_hw_addr(mac_addr(mac));
        a.set_sender_proto_addr(vip);
        a.set_target_hw_addr(MacAddr::zero());
        a.set_target_proto_addr(vip);
    }
    f
}

/// The Ethernet frame of an unsolicited Neighbor Advertisement for `vip`
/// (RFC 4861 §7.2.6): from the VIP to ff02::1, Hop Limit 255, Override set,
/// Solicited clear (§7.1.2 wants it clear to a multicast destination).
pub fn unsolicited_na_frame(mac: [u8; 6], vip: Ipv6Addr) -> [u8; 86] {
    let mut f = [0u8; ETHERNET_LEN + IPV6_LEN + NA_LEN];
    let (eth, rest) = f.split_at_mut(ETHERNET_LEN);
    let (ip, na) = rest.split_at_mut(IPV6_LEN);
    if let Some(mut e) = MutableEthernetPacket::new(eth) {
        e.set_destination(ALL_NODES_MAC);
        e.set_source(mac_addr(mac));
        e.set_ethertype(EtherTypes::Ipv6);
    }
    if let Some(mut p) = MutableIpv6Packet::new(ip) {
        p.set_version(6);
        p.set_payload_length(NA_LEN as u16);
        p.set_next_header(IpNextHeaderProtocols::Icmpv6);
        p.set_hop_limit(255);
        p.set_source(vip);
        p.set_destination(ALL_NODES);
    }
    if let Some(mut n) = MutableNeighborAdvertPacket::new(na) {
        n.set_icmpv6_type(Icmpv6Types::NeighborAdvert);
        n.set_icmpv6_code(Icmpv6Code(0));
        n.set_flags(NeighborAdvertFlags::Override);
        n.set_target_addr(vip);
        n.set_options(&[NdpOption {
            option_type: NdpOptionTypes::TargetLLAddr,
            length: 1, // in units of 8 bytes
            data: mac.to_vec(),
        }]);
    }
    // RFC 4443 §2.3: over the RFC 8200 §8.1 pseudo-header and the message.
    let sum = Icmpv6Packet::new(na).map(|p| icmpv6::checksum(&p, &vip, &ALL_NODES));
    if let (Some(sum), Some(mut n)) = (sum, MutableNeighborAdvertPacket::new(na)) {
        n.set_checksum(sum);
    }
    f
}

/// A packet socket bound to one interface for sending ARP and NA frames.
pub struct ArpSender {
    fd: OwnedFd,
    ifindex: u32,
    mac: [u8; 6],
}

impl ArpSender {
    pub fn open(ifindex: u32, mac: [u8; 6]) -> io::Result<Self> {
        // Protocol 0: this socket only sends.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(ArpSender {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            ifindex,
            mac,
        })
    }

    /// Gratuitous ARP for an IPv4 VIP, unsolicited NA for an IPv6 one.
    pub fn announce(&self, vip: IpAddr) -> io::Result<()> {
        match vip {
            IpAddr::V4(v) => self.send_frame(&garp_frame(self.mac, v), EtherTypes::Arp),
            IpAddr::V6(v) => self.send_frame(&unsolicited_na_frame(self.mac, v), EtherTypes::Ipv6),
        }
    }

    pub fn send_garp(&self, vip: Ipv4Addr) -> io::Result<()> {
        self.send_frame(&garp_frame(self.mac, vip), EtherTypes::Arp)
    }

    fn send_frame(&self, frame: &[u8], ethertype: EtherType) -> io::Result<()> {
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = ethertype.0.to_be();
        addr.sll_ifindex = self.ifindex as i32;
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&frame[..6]);
        let rc = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_layout() {
        let mac = [2, 0, 0, 0, 0, 3];
        let vip = Ipv4Addr::new(198, 18, 0, 100);
        let f = garp_frame(mac, vip);
        assert_eq!(&f[0..6], &[0xff; 6]);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(&f[20..22], &[0, 1], "an ARP request, as keepalived sends");
        assert_eq!(&f[22..28], &mac);
        assert_eq!(&f[28..32], &vip.octets(), "sender IP = VIP");
        assert_eq!(&f[32..38], &[0; 6]);
        assert_eq!(&f[38..42], &vip.octets(), "target IP = VIP");
    }

    /// RFC 4861 §7.2.6 / §4.4 / §7.1.2 and RFC 2464 §7, field by field.
    #[test]
    fn unsolicited_na_layout() {
        let mac = [2, 0, 0, 0, 0, 3];
        let vip: Ipv6Addr = "2001:2::100".parse().unwrap();
        let f = unsolicited_na_frame(mac, vip);
        assert_eq!(&f[0..6], &[0x33, 0x33, 0, 0, 0, 1], "RFC 2464 §7: ff02::1");
        assert_eq!(&f[6..12], &mac);
        assert_eq!(&f[12..14], &[0x86, 0xdd]);
        assert_eq!(f[14] >> 4, 6);
        assert_eq!(&f[18..20], &[0, 32], "payload: NA + one option");
        assert_eq!(f[20], 58, "next header ICMPv6");
        assert_eq!(
            f[21], 255,
            "§7.1.2: receivers drop a Hop Limit other than 255"
        );
        assert_eq!(&f[22..38], &vip.octets());
        assert_eq!(&f[38..54], &ALL_NODES.octets());
        assert_eq!(f[54], 136, "Neighbor Advertisement");
        assert_eq!(f[55], 0, "code 0");
        assert_eq!(
            f[58], 0x20,
            "§4.4: Override set, Router and Solicited clear"
        );
        assert_eq!(&f[62..78], &vip.octets(), "target = VIP");
        assert_eq!(
            &f[78..80],
            &[2, 1],
            "§4.6.1: target link-layer address, 8 bytes"
        );
        assert_eq!(&f[80..86], &mac);
        // RFC 4443 §2.3: summing pseudo-header and message gives all ones.
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&f[22..54]);
        pseudo.extend_from_slice(&[0, 0, 0, 32, 0, 0, 0, 58]);
        assert_eq!(crate::packet::internet_checksum(&[&pseudo, &f[54..]]), 0);
    }
}
