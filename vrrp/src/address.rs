//! Interface facts and VIP add/remove over NETLINK_ROUTE, both families.
//!
//! Hand-rolled, synchronous netlink (RTM_NEWADDR / RTM_DELADDR with an ACK)
//! rather than the async rtnetlink crate: the VRRP instance runs on its own OS
//! thread without a runtime, and two message types do not justify a tokio
//! dependency tree in this crate.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};

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
    fd: OwnedFd,
    seq: AtomicU32,
}

const NLMSG_HDRLEN: usize = 16;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
/// ifaddrmsg flag: no duplicate address detection (linux/if_addr.h).
const IFA_F_NODAD: u8 = 0x02;

impl Netlink {
    pub fn open() -> io::Result<Self> {
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let tv = libc::timeval {
            tv_sec: 2,
            tv_usec: 0,
        };
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            );
        }
        Ok(Netlink {
            fd,
            seq: AtomicU32::new(1),
        })
    }

    /// Adds `addr/prefix` to the interface; already present is fine. An IPv6
    /// address is added with IFA_F_NODAD: the VIP must serve at once, not sit
    /// tentative for a second of duplicate address detection (VRRP decides
    /// who owns it).
    pub fn add(&self, ifindex: u32, addr: IpAddr, prefix: u8) -> io::Result<()> {
        match self.request(
            libc::RTM_NEWADDR,
            libc::NLM_F_CREATE | libc::NLM_F_EXCL,
            ifindex,
            addr,
            prefix,
        ) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
            r => r,
        }
    }

    /// Removes `addr/prefix` from the interface; already absent is fine.
    pub fn remove(&self, ifindex: u32, addr: IpAddr, prefix: u8) -> io::Result<()> {
        match self.request(libc::RTM_DELADDR, 0, ifindex, addr, prefix) {
            Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => Ok(()),
            r => r,
        }
    }

    fn request(
        &self,
        kind: u16,
        flags: i32,
        ifindex: u32,
        addr: IpAddr,
        prefix: u8,
    ) -> io::Result<()> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let (family, octets, ifa_flags) = match addr {
            IpAddr::V4(a) => (libc::AF_INET, a.octets().to_vec(), 0u8),
            IpAddr::V6(a) => (libc::AF_INET6, a.octets().to_vec(), IFA_F_NODAD),
        };
        let attr_len = 4 + octets.len();
        let mut msg = Vec::with_capacity(64);
        let total = NLMSG_HDRLEN + 8 + 2 * attr_len;
        msg.extend_from_slice(&(total as u32).to_ne_bytes());
        msg.extend_from_slice(&kind.to_ne_bytes());
        msg.extend_from_slice(
            &((libc::NLM_F_REQUEST | libc::NLM_F_ACK | flags) as u16).to_ne_bytes(),
        );
        msg.extend_from_slice(&seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        // struct ifaddrmsg
        msg.push(family as u8);
        msg.push(prefix);
        msg.push(ifa_flags);
        msg.push(0); // scope: universe
        msg.extend_from_slice(&ifindex.to_ne_bytes());
        // 4-byte aligned as they are (8 and 20 bytes).
        for attr in [IFA_LOCAL, IFA_ADDRESS] {
            msg.extend_from_slice(&(attr_len as u16).to_ne_bytes());
            msg.extend_from_slice(&attr.to_ne_bytes());
            msg.extend_from_slice(&octets);
        }
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as u16;
        let rc = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = [0u8; 1024];
        loop {
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let n = n as usize;
            let mut off = 0;
            while off + NLMSG_HDRLEN <= n {
                let len =
                    u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap_or([0; 4])) as usize;
                let ty = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
                let rseq = u32::from_ne_bytes(buf[off + 8..off + 12].try_into().unwrap_or([0; 4]));
                if len < NLMSG_HDRLEN || off + len > n {
                    break;
                }
                if rseq == seq && ty == libc::NLMSG_ERROR as u16 && len >= NLMSG_HDRLEN + 4 {
                    let errno =
                        i32::from_ne_bytes(buf[off + 16..off + 20].try_into().unwrap_or([0; 4]));
                    return if errno == 0 {
                        Ok(())
                    } else {
                        Err(io::Error::from_raw_os_error(-errno))
                    };
                }
                off += (len + 3) & !3;
            }
        }
    }
}
