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
//! Frames are built by hand (42 and 86 bytes; each field is a layout test
//! below) and sent on one AF_PACKET socket.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::packet::internet_checksum;

const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const IPPROTO_ICMPV6: u8 = 58;
const ND_NEIGHBOR_ADVERT: u8 = 136;
/// Override flag of a Neighbor Advertisement (RFC 4861 §4.4).
const NA_FLAG_OVERRIDE: u8 = 0x20;
/// Target Link-Layer Address option (RFC 4861 §4.6.1).
const ND_OPT_TARGET_LL_ADDR: u8 = 2;
/// ff02::1, all nodes.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// The Ethernet address IPv6 multicast to ff02::1 maps to (RFC 2464 §7).
const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];

/// The Ethernet frame of a gratuitous ARP request for `vip`.
pub fn garp_frame(mac: [u8; 6], vip: Ipv4Addr) -> [u8; 42] {
    let mut f = [0u8; 42];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    f[14..16].copy_from_slice(&1u16.to_be_bytes()); // hardware: Ethernet
    f[16..18].copy_from_slice(&ETH_P_IP.to_be_bytes());
    f[18] = 6;
    f[19] = 4;
    f[20..22].copy_from_slice(&1u16.to_be_bytes()); // request
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&vip.octets());
    // target MAC stays zero
    f[38..42].copy_from_slice(&vip.octets());
    f
}

/// The Ethernet frame of an unsolicited Neighbor Advertisement for `vip`
/// (RFC 4861 §7.2.6): from the VIP to ff02::1, Hop Limit 255, Override set,
/// Solicited clear (§7.1.2 wants it clear to a multicast destination).
pub fn unsolicited_na_frame(mac: [u8; 6], vip: Ipv6Addr) -> [u8; 86] {
    let mut f = [0u8; 86];
    f[0..6].copy_from_slice(&ALL_NODES_MAC);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_IPV6.to_be_bytes());
    let ip = &mut f[14..54];
    ip[0] = 0x60;
    ip[4..6].copy_from_slice(&32u16.to_be_bytes()); // payload length
    ip[6] = IPPROTO_ICMPV6;
    ip[7] = 255;
    ip[8..24].copy_from_slice(&vip.octets());
    ip[24..40].copy_from_slice(&ALL_NODES.octets());
    let na = &mut f[54..86];
    na[0] = ND_NEIGHBOR_ADVERT;
    na[4] = NA_FLAG_OVERRIDE;
    na[8..24].copy_from_slice(&vip.octets());
    na[24] = ND_OPT_TARGET_LL_ADDR;
    na[25] = 1; // length in units of 8 bytes
    na[26..32].copy_from_slice(&mac);
    // RFC 4443 §2.3: the ICMPv6 checksum covers the RFC 8200 §8.1 pseudo-header.
    let mut pseudo = [0u8; 40];
    pseudo[0..16].copy_from_slice(&vip.octets());
    pseudo[16..32].copy_from_slice(&ALL_NODES.octets());
    pseudo[32..36].copy_from_slice(&32u32.to_be_bytes());
    pseudo[39] = IPPROTO_ICMPV6;
    let sum = internet_checksum(&[&pseudo, &f[54..86]]);
    f[56..58].copy_from_slice(&sum.to_be_bytes());
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
            IpAddr::V4(v) => self.send_frame(&garp_frame(self.mac, v), ETH_P_ARP),
            IpAddr::V6(v) => self.send_frame(&unsolicited_na_frame(self.mac, v), ETH_P_IPV6),
        }
    }

    pub fn send_garp(&self, vip: Ipv4Addr) -> io::Result<()> {
        self.send_frame(&garp_frame(self.mac, vip), ETH_P_ARP)
    }

    fn send_frame(&self, frame: &[u8], ethertype: u16) -> io::Result<()> {
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = ethertype.to_be();
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
        assert_eq!(internet_checksum(&[&pseudo, &f[54..]]), 0);
    }
}
