//! Interface facts and VIP add/remove over NETLINK_ROUTE, both families.
//!
//! RTM_NEWADDR / RTM_DELADDR with an ACK, built with netlink-packet-route and
//! sent on netlink-sys's blocking socket, rather than the async rtnetlink
//! crate: the VRRP instance runs on its own OS thread without a runtime, and
//! two message types do not justify a tokio dependency tree in this crate.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressHeaderFlags, AddressMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

/// Index of a network interface, in the calling thread's namespace.
pub fn interface_index(name: &str) -> io::Result<u32> {
    let c = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in interface name"))?;
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no network interface named {name:?}"),
        ));
    }
    Ok(i)
}

/// MAC address of an interface (SIOCGIFHWADDR, namespace-correct unlike /sys).
pub fn interface_mac(name: &str) -> io::Result<[u8; 6]> {
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = name.as_bytes();
    if bytes.len() >= req.ifr_name.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface name too long",
        ));
    }
    for (d, s) in req.ifr_name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFHWADDR, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let data = unsafe { req.ifr_ifru.ifru_hwaddr.sa_data };
    let mut mac = [0u8; 6];
    for (m, d) in mac.iter_mut().zip(data.iter()) {
        *m = *d as u8;
    }
    Ok(mac)
}

/// IPv4 and IPv6 addresses on an interface (getifaddrs), in kernel order.
pub fn interface_addresses(name: &str) -> io::Result<Vec<IpAddr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        let ifa = unsafe { &*cur };
        let ifname = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) };
        if ifname.to_bytes() == name.as_bytes() && !ifa.ifa_addr.is_null() {
            let family = unsafe { (*ifa.ifa_addr).sa_family } as i32;
            if family == libc::AF_INET {
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                out.push(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)).into());
            } else if family == libc::AF_INET6 {
                let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                out.push(Ipv6Addr::from(sin6.sin6_addr.s6_addr).into());
            }
        }
        cur = ifa.ifa_next;
    }
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

/// The interface's primary IPv4 address: the first one that is not a VIP.
pub fn primary_ipv4(name: &str, vips: &[IpAddr]) -> io::Result<Ipv4Addr> {
    interface_addresses(name)?
        .into_iter()
        .find_map(|a| match a {
            IpAddr::V4(v4) if !vips.contains(&a) => Some(v4),
            _ => None,
        })
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("interface {name:?} has no IPv4 address of its own"),
            )
        })
}

/// Whether `a` is in fe80::/10.
pub fn is_link_local(a: &Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

/// The interface's own IPv6 link-local address, the source of IPv6 adverts
/// (RFC 5798 §5.1.2.1): the first fe80::/10 address that is not a VIP.
pub fn link_local_ipv6(name: &str, vips: &[IpAddr]) -> io::Result<Ipv6Addr> {
    interface_addresses(name)?
        .into_iter()
        .find_map(|a| match a {
            IpAddr::V6(v6) if is_link_local(&v6) && !vips.contains(&a) => Some(v6),
            _ => None,
        })
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "interface {name:?} has no IPv6 link-local address (is IPv6 disabled on it?)"
                ),
            )
        })
}

/// The address adverts of an instance with these VIPs come from: the
/// primary IPv4 address, or the link-local IPv6 address for IPv6 VIPs.
pub fn advert_source(name: &str, vips: &[IpAddr]) -> io::Result<IpAddr> {
    match vips.first() {
        Some(IpAddr::V6(_)) => link_local_ipv6(name, vips).map(IpAddr::V6),
        _ => primary_ipv4(name, vips).map(IpAddr::V4),
    }
}

/// A NETLINK_ROUTE socket for address changes.
pub struct Netlink {
    socket: netlink_sys::Socket,
    seq: AtomicU32,
}

impl Netlink {
    pub fn open() -> io::Result<Self> {
        let mut socket = netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&netlink_sys::SocketAddr::new(0, 0))?;
        // A kernel that never answers must not hang the VRRP thread.
        let tv = libc::timeval {
            tv_sec: 2,
            tv_usec: 0,
        };
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            );
        }
        Ok(Netlink {
            socket,
            seq: AtomicU32::new(1),
        })
    }

    /// Adds `addr/prefix` to the interface; already present is fine. An IPv6
    /// address is added with IFA_F_NODAD: the VIP must serve at once, not sit
    /// tentative for a second of duplicate address detection (VRRP decides
    /// who owns it).
    pub fn add(&self, ifindex: u32, addr: IpAddr, prefix: u8) -> io::Result<()> {
        let msg = RouteNetlinkMessage::NewAddress(address_message(ifindex, addr, prefix));
        match self.request(msg, NLM_F_CREATE | NLM_F_EXCL) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
            r => r,
        }
    }

    /// Removes `addr/prefix` from the interface; already absent is fine.
    pub fn remove(&self, ifindex: u32, addr: IpAddr, prefix: u8) -> io::Result<()> {
        let msg = RouteNetlinkMessage::DelAddress(address_message(ifindex, addr, prefix));
        match self.request(msg, 0) {
            Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => Ok(()),
            r => r,
        }
    }

    /// Sends one request and waits for its ACK (or error).
    fn request(&self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        header.sequence_number = seq;
        let mut msg = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        msg.finalize();
        let mut out = vec![0u8; msg.buffer_len()];
        msg.serialize(&mut out);
        self.socket.send(&out, 0)?;
        let mut buf = vec![0u8; 4096];
        loop {
            let n = self.socket.recv(&mut &mut buf[..], 0)?;
            let mut off = 0;
            while off < n {
                let Ok(reply) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[off..n])
                else {
                    break;
                };
                let len = reply.header.length as usize;
                if reply.header.sequence_number == seq {
                    if let NetlinkPayload::Error(e) = reply.payload {
                        return match e.code {
                            None => Ok(()),
                            Some(_) => Err(e.to_io()),
                        };
                    }
                }
                if len == 0 {
                    break;
                }
                off += (len + 3) & !3;
            }
        }
    }
}

/// A NETLINK_ROUTE socket that joins RTNLGRP_LINK: it becomes readable when
/// an interface changes (up, down, carrier), so the instance loop wakes at
/// once instead of at its next poll.
pub struct LinkEvents {
    socket: netlink_sys::Socket,
}

/// The multicast group of link changes (linux/rtnetlink.h: RTNLGRP_LINK = 1).
const RTNLGRP_LINK: u32 = 1;

impl LinkEvents {
    pub fn open() -> io::Result<Self> {
        let mut socket = netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_ROUTE)?;
        socket.bind(&netlink_sys::SocketAddr::new(0, 1 << (RTNLGRP_LINK - 1)))?;
        socket.set_non_blocking(true)?;
        Ok(LinkEvents { socket })
    }

    pub fn fd(&self) -> std::os::fd::RawFd {
        self.socket.as_raw_fd()
    }

    /// Reads every queued notification; whether one was about `ifindex`.
    /// (An overrun, ENOBUFS, counts as one: the caller looks at the link anyway.)
    pub fn drain(&self, ifindex: u32) -> bool {
        let mut ours = false;
        let mut buf = vec![0u8; 8192];
        for _ in 0..64 {
            let n = match self.socket.recv(&mut &mut buf[..], 0) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => return true,
            };
            ours |= link_changed(&buf[..n], ifindex);
        }
        ours
    }
}

/// Whether a datagram of rtnetlink messages holds an RTM_NEWLINK or
/// RTM_DELLINK for `ifindex`.
fn link_changed(datagram: &[u8], ifindex: u32) -> bool {
    let mut ours = false;
    let mut off = 0;
    while off < datagram.len() {
        let Ok(m) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&datagram[off..]) else {
            break;
        };
        if let NetlinkPayload::InnerMessage(
            RouteNetlinkMessage::NewLink(l) | RouteNetlinkMessage::DelLink(l),
        ) = &m.payload
        {
            ours |= l.header.index == ifindex;
        }
        let len = m.header.length as usize;
        if len == 0 {
            break;
        }
        off += (len + 3) & !3;
    }
    ours
}

/// The ifaddrmsg and attributes `ip addr add|del addr/prefix dev ifindex` sends.
fn address_message(ifindex: u32, addr: IpAddr, prefix: u8) -> AddressMessage {
    let mut m = AddressMessage::default();
    m.header.family = match addr {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    m.header.prefix_len = prefix;
    m.header.index = ifindex;
    if addr.is_ipv6() {
        m.header.flags = AddressHeaderFlags::Nodad;
    }
    m.attributes = vec![
        AddressAttribute::Local(addr),
        AddressAttribute::Address(addr),
    ];
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::{Emitable, NetlinkBuffer};

    fn serialized(payload: RouteNetlinkMessage) -> Vec<u8> {
        let mut msg = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(payload));
        msg.finalize();
        let mut out = vec![0u8; msg.buffer_len()];
        msg.serialize(&mut out);
        out
    }

    /// A link notification wakes the instance of that interface only; two
    /// messages in one datagram are both read.
    #[test]
    fn link_notifications_are_matched_by_index() {
        let mut link = netlink_packet_route::link::LinkMessage::default();
        link.header.index = 7;
        let mut other = link.clone();
        other.header.index = 9;
        let one = serialized(RouteNetlinkMessage::NewLink(link.clone()));
        assert!(link_changed(&one, 7));
        assert!(!link_changed(&one, 9));
        let mut two = serialized(RouteNetlinkMessage::NewLink(other));
        two.extend(serialized(RouteNetlinkMessage::DelLink(link)));
        assert!(link_changed(&two, 7) && link_changed(&two, 9));
        assert!(!link_changed(&two, 3));
        assert!(!link_changed(&[1, 2, 3], 7), "garbage is not a change");
    }

    /// What goes to the kernel for an IPv6 VIP: family AF_INET6, the prefix,
    /// IFA_F_NODAD in the header, and the address as IFA_LOCAL and IFA_ADDRESS
    /// (16 bytes each), as iproute2 sends it.
    #[test]
    fn ipv6_address_message_carries_nodad() {
        let m = address_message(7, "2001:2::100".parse().unwrap(), 64);
        let mut bytes = vec![0u8; m.buffer_len()];
        m.emit(&mut bytes);
        assert_eq!(bytes[0], libc::AF_INET6 as u8);
        assert_eq!(bytes[1], 64);
        assert_eq!(bytes[2], 0x02, "IFA_F_NODAD");
        assert_eq!(u32::from_ne_bytes(bytes[4..8].try_into().unwrap()), 7);
        assert_eq!(bytes.len(), 8 + 2 * 20);
        let v4 = address_message(7, "198.18.0.100".parse().unwrap(), 24);
        assert_eq!(
            v4.header.flags,
            AddressHeaderFlags::empty(),
            "IPv4 has no DAD"
        );
        // The whole request parses back as what was meant.
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK;
        let mut msg = NetlinkMessage::new(
            header,
            NetlinkPayload::from(RouteNetlinkMessage::NewAddress(m.clone())),
        );
        msg.finalize();
        let mut out = vec![0u8; msg.buffer_len()];
        msg.serialize(&mut out);
        assert!(NetlinkBuffer::new_checked(&out[..]).is_ok());
        let back = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&out).unwrap();
        assert_eq!(
            back.payload,
            NetlinkPayload::from(RouteNetlinkMessage::NewAddress(m))
        );
    }
}
