//! Interface facts and VIP add/remove over NETLINK_ROUTE, both families: the
//! one netlink client of floatlb (the VRRP instances, and the `[[anycast]]`
//! addresses, which carry a lifetime).
//!
//! RTM_NEWADDR / RTM_DELADDR with an ACK, built with netlink-packet-route and
//! sent on netlink-sys's blocking socket, rather than the async rtnetlink
//! crate: the VRRP instance runs on its own OS thread without a runtime, and
//! two message types do not justify a tokio dependency tree in this crate.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL,
    NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::address::{
    AddressAttribute, AddressHeaderFlags, AddressMessage, CacheInfo,
};
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

/// Whether `name` is up with carrier (IFF_UP and IFF_RUNNING), asked with
/// SIOCGIFFLAGS on `fd` (any socket of the namespace). An error (no such
/// interface) counts as down.
pub fn link_up(fd: std::os::fd::RawFd, name: &str) -> bool {
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = name.as_bytes();
    if bytes.len() >= req.ifr_name.len() {
        return false;
    }
    for (d, s) in req.ifr_name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: req is a valid ifreq for SIOCGIFFLAGS, which only writes ifr_flags.
    if unsafe { libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) } != 0 {
        return false;
    }
    let flags = unsafe { req.ifr_ifru.ifru_flags } as libc::c_int;
    flags & libc::IFF_UP != 0 && flags & libc::IFF_RUNNING != 0
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

/// How long the kernel keeps an address (`struct ifa_cacheinfo`): the
/// preferred and valid lifetimes, in whole seconds, as `ip addr ...
/// valid_lft N preferred_lft N` sets them. When the valid lifetime runs out
/// the kernel removes the address by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    /// Always at least 1 (the kernel refuses 0) and at least `preferred`.
    valid: u32,
    preferred: u32,
}

/// `ifa_valid` / `ifa_prefered` meaning "forever" (linux/if_addr.h
/// INFINITY_LIFE_TIME).
const INFINITY_LIFE_TIME: u32 = u32::MAX;

impl Lifetime {
    /// A permanent address: `valid_lft forever preferred_lft forever`.
    pub const FOREVER: Lifetime = Lifetime {
        valid: INFINITY_LIFE_TIME,
        preferred: INFINITY_LIFE_TIME,
    };

    /// Valid and preferred for `lease`, rounded up to whole seconds (the
    /// kernel counts lifetimes in seconds); a zero lease, or one too long
    /// for the kernel's 32 bits, is [`Lifetime::FOREVER`].
    pub fn lease(lease: Duration) -> Lifetime {
        let secs = lease.as_secs() + u64::from(lease.subsec_nanos() > 0);
        match u32::try_from(secs) {
            Ok(s) if s > 0 => Lifetime {
                valid: s,
                preferred: s,
            },
            _ => Lifetime::FOREVER,
        }
    }

    /// Valid for ever but preferred for none: `valid_lft forever preferred_lft 0`, which
    /// the kernel shows as `deprecated`. An IPv6 address in that state still receives (its
    /// sockets, its listeners) but is never picked as the source of a new connection
    /// (RFC 6724 §5 rule 3, avoid deprecated addresses, before rule 8's longest prefix):
    /// what a VIP lingering on the old master after a handover needs. Not a finite valid
    /// lifetime: the kernel then gives the prefix route of the address an expiry, and a
    /// prefix route the node's own address shares went unreachable with it (checked on
    /// Linux 6.18).
    pub const DEPRECATED: Lifetime = Lifetime {
        valid: INFINITY_LIFE_TIME,
        preferred: 0,
    };

    fn cache_info(self) -> CacheInfo {
        let mut c = CacheInfo::default();
        c.ifa_preferred = self.preferred;
        c.ifa_valid = self.valid;
        c
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

    /// Adds `addr/prefix` with `lifetime`, or gives the address already there
    /// that lifetime (RTM_NEWADDR with NLM_F_CREATE | NLM_F_REPLACE and
    /// IFA_CACHEINFO, as `ip addr replace ... valid_lft N preferred_lft N`
    /// sends it): a lease is renewed by calling this again before it runs
    /// out. IPv6 addresses get IFA_F_NODAD, as in [`Netlink::add`].
    pub fn replace(
        &self,
        ifindex: u32,
        addr: IpAddr,
        prefix: u8,
        lifetime: Lifetime,
    ) -> io::Result<()> {
        let msg = RouteNetlinkMessage::NewAddress(address_message_with_lifetime(
            ifindex, addr, prefix, lifetime,
        ));
        self.request(msg, NLM_F_CREATE | NLM_F_REPLACE)
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
    pub(crate) fn request(&self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        self.socket.send(&request_bytes(msg, flags, seq), 0)?;
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

/// A request as it goes to the kernel: nlmsghdr (asking for an ACK), then `msg`.
fn request_bytes(msg: RouteNetlinkMessage, flags: u16, seq: u32) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    header.sequence_number = seq;
    let mut msg = NetlinkMessage::new(header, NetlinkPayload::from(msg));
    msg.finalize();
    let mut out = vec![0u8; msg.buffer_len()];
    msg.serialize(&mut out);
    out
}

/// [`address_message`] plus IFA_CACHEINFO: the lifetimes of `ip addr replace`.
fn address_message_with_lifetime(
    ifindex: u32,
    addr: IpAddr,
    prefix: u8,
    lifetime: Lifetime,
) -> AddressMessage {
    let mut m = address_message(ifindex, addr, prefix);
    m.attributes
        .push(AddressAttribute::CacheInfo(lifetime.cache_info()));
    m
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

    /// An address with a lifetime, byte for byte as the kernel reads it:
    /// nlmsghdr, struct ifaddrmsg, IFA_LOCAL and IFA_ADDRESS, then
    /// IFA_CACHEINFO carrying struct ifa_cacheinfo { u32 ifa_prefered;
    /// u32 ifa_valid; u32 cstamp; u32 tstamp; } (linux/if_addr.h), all in host
    /// byte order. Preferred and valid differ here so that swapping them shows.
    #[test]
    fn newaddr_with_a_lifetime_is_laid_out_as_the_kernel_reads_it() {
        const IFA_ADDRESS: u16 = 1;
        const IFA_LOCAL: u16 = 2;
        const IFA_CACHEINFO: u16 = 6;
        let lifetime = Lifetime {
            valid: 30,
            preferred: 10,
        };
        let addr: IpAddr = "198.18.0.100".parse().unwrap();
        let m = address_message_with_lifetime(7, addr, 32, lifetime);
        let got = request_bytes(
            RouteNetlinkMessage::NewAddress(m),
            NLM_F_CREATE | NLM_F_REPLACE,
            5,
        );

        let total = 16 + 8 + 2 * 8 + (4 + 16);
        let mut want = Vec::new();
        // struct nlmsghdr: length, type, flags, sequence, port id (0 = the kernel).
        want.extend((total as u32).to_ne_bytes());
        want.extend(libc::RTM_NEWADDR.to_ne_bytes());
        let flags =
            libc::NLM_F_REQUEST | libc::NLM_F_ACK | libc::NLM_F_CREATE | libc::NLM_F_REPLACE;
        want.extend((flags as u16).to_ne_bytes());
        want.extend(5u32.to_ne_bytes());
        want.extend(0u32.to_ne_bytes());
        // struct ifaddrmsg: family, prefix length, flags, scope (universe), index.
        want.extend([libc::AF_INET as u8, 32, 0, 0]);
        want.extend(7u32.to_ne_bytes());
        for kind in [IFA_LOCAL, IFA_ADDRESS] {
            want.extend(8u16.to_ne_bytes());
            want.extend(kind.to_ne_bytes());
            want.extend([198, 18, 0, 100]);
        }
        want.extend(20u16.to_ne_bytes());
        want.extend(IFA_CACHEINFO.to_ne_bytes());
        for field in [10u32, 30, 0, 0] {
            want.extend(field.to_ne_bytes());
        }
        assert_eq!(want.len(), total);
        assert_eq!(got, want);

        // And it parses back as what was meant.
        let back = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&got).unwrap();
        let NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewAddress(back)) = back.payload
        else {
            panic!("not an RTM_NEWADDR: {back:?}");
        };
        assert!(back
            .attributes
            .contains(&AddressAttribute::CacheInfo(lifetime.cache_info())));
    }

    /// A lease becomes whole seconds rounded up (the kernel's unit), so the
    /// address never goes before the lease does; zero means permanent.
    #[test]
    fn a_lease_is_whole_seconds_rounded_up() {
        let secs = |l: Lifetime| (l.preferred, l.valid);
        assert_eq!(secs(Lifetime::lease(Duration::from_secs(3))), (3, 3));
        assert_eq!(secs(Lifetime::lease(Duration::from_millis(2500))), (3, 3));
        assert_eq!(secs(Lifetime::lease(Duration::from_millis(500))), (1, 1));
        assert_eq!(Lifetime::lease(Duration::ZERO), Lifetime::FOREVER);
        assert_eq!(
            Lifetime::lease(Duration::from_secs(u64::from(u32::MAX) + 1)),
            Lifetime::FOREVER
        );
        assert_eq!(
            secs(Lifetime::FOREVER),
            (INFINITY_LIFE_TIME, INFINITY_LIFE_TIME)
        );
    }

    /// Set when this test binary runs itself again inside a network
    /// namespace of its own (`unshare --net`).
    const IN_NETNS: &str = "VRRP_ADDRESS_TEST_IN_NETNS";

    /// `ip -d addr show dev lo` in the current namespace.
    fn ip_addr_show() -> String {
        let out = std::process::Command::new("ip")
            .args(["-d", "addr", "show", "dev", "lo"])
            .output()
            .expect("running ip");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The lifetime of `addr` as `ip -d addr show` prints it, e.g.
    /// "valid_lft 30sec preferred_lft 30sec".
    fn lifetime_shown(addr: &str) -> Option<String> {
        let text = ip_addr_show();
        let mut lines = text.lines();
        lines.find(|l| l.contains(&format!(" {addr} ")))?;
        lines
            .next()
            .map(|l| l.trim().to_string())
            .filter(|l| l.starts_with("valid_lft"))
    }

    /// What the kernel makes of it: a lease is read back as the address's
    /// valid and preferred lifetime, a second call renews it, FOREVER makes
    /// it permanent, and remove takes it away. Needs root; runs in a network
    /// namespace of its own (on its `lo`), so the host's addresses are never
    /// touched.
    #[test]
    fn lifetime_reads_back_from_the_kernel() {
        const NAME: &str = "address::tests::lifetime_reads_back_from_the_kernel";
        if std::env::var_os(IN_NETNS).is_none() {
            let required = std::env::var("FLOATLB_REQUIRE_NETNS").as_deref() == Ok("1");
            // /proc/self belongs to the process's effective user.
            let euid = std::os::unix::fs::MetadataExt::uid(
                &std::fs::metadata("/proc/self").expect("/proc/self"),
            );
            if euid != 0 {
                assert!(!required, "{NAME} needs root (FLOATLB_REQUIRE_NETNS=1)");
                eprintln!("SKIPPED {NAME}: needs root for a network namespace");
                return;
            }
            let out = std::process::Command::new("unshare")
                .arg("--net")
                .arg(std::env::current_exe().unwrap())
                .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
                .env(IN_NETNS, "1")
                .output()
                .expect("running unshare");
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(out.status.success(), "in a new namespace:\n{text}");
            assert!(
                text.contains("1 passed"),
                "the inner test did not run:\n{text}"
            );
            return;
        }
        let lo = interface_index("lo").unwrap();
        let nl = Netlink::open().unwrap();
        let cases: [(&str, IpAddr, u8); 2] = [
            ("198.18.0.100/32", "198.18.0.100".parse().unwrap(), 32),
            ("2001:2::100/128", "2001:2::100".parse().unwrap(), 128),
        ];
        for (shown, addr, prefix) in cases {
            nl.replace(lo, addr, prefix, Lifetime::lease(Duration::from_secs(30)))
                .unwrap();
            let lft = lifetime_shown(shown).unwrap_or_else(|| panic!("{}", ip_addr_show()));
            // The kernel counts down from the moment of the call.
            assert!(
                lft == "valid_lft 30sec preferred_lft 30sec"
                    || lft == "valid_lft 29sec preferred_lft 29sec",
                "{shown}: {lft}"
            );
            // Renewal: the same address again, a new lifetime, no EEXIST.
            nl.replace(
                lo,
                addr,
                prefix,
                Lifetime::lease(Duration::from_millis(59_500)),
            )
            .unwrap();
            let lft = lifetime_shown(shown).unwrap();
            assert!(
                lft.starts_with("valid_lft 60sec") || lft.starts_with("valid_lft 59sec"),
                "{shown}: {lft}"
            );
            nl.replace(lo, addr, prefix, Lifetime::FOREVER).unwrap();
            assert_eq!(
                lifetime_shown(shown).as_deref(),
                Some("valid_lft forever preferred_lft forever"),
                "{shown}"
            );
            nl.remove(lo, addr, prefix).unwrap();
            assert!(lifetime_shown(shown).is_none(), "{}", ip_addr_show());
        }
        deprecated_ipv6_vip_is_never_a_source(&nl, lo);
    }

    /// The source `ip -6 route get dst` picks in this namespace.
    fn source_for(dst: &str) -> String {
        let out = std::process::Command::new("ip")
            .args(["-6", "route", "get", dst])
            .output()
            .expect("running ip");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut w = text.split_whitespace();
        w.find(|w| *w == "src");
        w.next().unwrap_or_default().to_string()
    }

    /// RFC 6724 §5 rule 3 (avoid deprecated addresses) comes before rule 8 (longest matching
    /// prefix): a VIP that would be the source for a destination near it (2001:2::100 for
    /// 2001:2::150, beside the node's own 2001:2::1) is not once it lingers deprecated
    /// (`preferred_lft 0`), still receives, and is preferred again at FOREVER.
    fn deprecated_ipv6_vip_is_never_a_source(nl: &Netlink, lo: u32) {
        let own: IpAddr = "2001:2::1".parse().unwrap();
        let vip: IpAddr = "2001:2::100".parse().unwrap();
        let up = std::process::Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status();
        assert!(up.is_ok_and(|s| s.success()), "ip link set lo up");
        nl.add(lo, own, 64).unwrap();
        nl.add(lo, vip, 64).unwrap();
        assert_eq!(
            source_for("2001:2::150"),
            "2001:2::100",
            "{}",
            ip_addr_show()
        );
        nl.replace(lo, vip, 64, Lifetime::DEPRECATED).unwrap();
        assert_eq!(
            lifetime_shown("2001:2::100/64").as_deref(),
            Some("valid_lft forever preferred_lft 0sec")
        );
        assert!(ip_addr_show().contains("deprecated"), "{}", ip_addr_show());
        assert_eq!(source_for("2001:2::150"), "2001:2::1", "{}", ip_addr_show());
        // Still this node's: a connection to it is accepted here.
        let l = std::net::TcpListener::bind("[2001:2::100]:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        assert_eq!(c.peer_addr().unwrap().ip(), vip);
        nl.replace(lo, vip, 64, Lifetime::FOREVER).unwrap();
        assert_eq!(
            source_for("2001:2::150"),
            "2001:2::100",
            "{}",
            ip_addr_show()
        );
        assert!(!ip_addr_show().contains("deprecated"), "{}", ip_addr_show());
        nl.remove(lo, vip, 64).unwrap();
        nl.remove(lo, own, 64).unwrap();
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
