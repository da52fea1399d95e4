//! Gratuitous ARP: tells the segment which MAC now answers for a VIP.
//!
//! Sent the way keepalived sends it — an ARP *request* with sender IP = target
//! IP = VIP, from the interface MAC to the broadcast address — because hosts
//! update an existing neighbour entry on requests more reliably than on
//! unsolicited replies. Frames are built by hand (42 bytes) and sent on an
//! AF_PACKET socket.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IP: u16 = 0x0800;

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

/// A packet socket bound to one interface for sending ARP frames.
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

    pub fn send_garp(&self, vip: Ipv4Addr) -> io::Result<()> {
        let frame = garp_frame(self.mac, vip);
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = ETH_P_ARP.to_be();
        addr.sll_ifindex = self.ifindex as i32;
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&[0xff; 6]);
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
}
