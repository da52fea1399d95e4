//! Raw IP protocol 112 sockets for adverts, multicast or unicast, IPv4 or IPv6.
//!
//! Two sockets: the receiver is unbound (a raw socket bound to a unicast
//! address would not see the group), joined to the group on one interface with
//! `IP_MULTICAST_ALL`/`IPV6_MULTICAST_ALL` off; the sender is bound to the
//! primary address so adverts never leave with a VIP as source. TTL / Hop
//! Limit is 255 both ways (§5.1.1.3, §5.1.2.3).
//!
//! IPv6 differs in three ways: the sender is bound to the interface's
//! link-local address (§5.1.2.1) and sends to ff02::12; a raw IPv6 socket
//! delivers no IP header, so the destination and Hop Limit come from
//! IPV6_PKTINFO and IPV6_HOPLIMIT control messages; and the kernel leaves the
//! VRRP checksum alone (IPV6_CHECKSUM is not set), so the codec computes and
//! checks it like for IPv4 — which also lets a bad checksum be counted.
//!
//! With a VMAC (RFC 5798 §7.3, see `vmac`) both are bound to the macvlan
//! instead, so adverts leave with the virtual MAC as source. Receiving there
//! is not a choice: a multicast frame whose source MAC is a local private
//! macvlan's (a peer's advert from the same virtual MAC) is handed to that
//! macvlan only, never to the parent (keepalived receives there too).

use std::io;
use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::packet::{IpInfo, IPPROTO_VRRP, VRRP_GROUP, VRRP_GROUP_V6, VRRP_TTL};

/// Where adverts go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peers {
    Multicast,
    /// Unicast to these peers; adverts from anyone else are dropped.
    Unicast(Vec<IpAddr>),
}

/// One received datagram.
pub enum Received<'a> {
    /// IPv4: the whole datagram, header included (see `packet::parse_ipv4`).
    V4(&'a [u8]),
    /// IPv6: the header facts from the socket, and the VRRP message.
    V6(IpInfo, &'a [u8]),
}

pub struct VrrpSocket {
    rx: Socket,
    tx: Socket,
    peers: Peers,
    primary: IpAddr,
    /// Where adverts leave: the interface, or its VMAC.
    tx_ifindex: u32,
}

fn set_int(fd: RawFd, level: i32, name: i32, v: i32) -> io::Result<()> {
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&v as *const i32).cast(),
            std::mem::size_of::<i32>() as u32,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl VrrpSocket {
    /// Opens the pair for `primary`'s family: an IPv4 address of the
    /// interface, or its IPv6 link-local address. `via`: the VMAC interface
    /// (name, index) adverts leave from and arrive on, if any.
    pub fn open(
        interface: &str,
        ifindex: u32,
        primary: IpAddr,
        peers: Peers,
        via: Option<(&str, u32)>,
    ) -> io::Result<Self> {
        let (tx_name, tx_ifindex) = via.unwrap_or((interface, ifindex));
        let proto = Some(Protocol::from(IPPROTO_VRRP as i32));
        let multicast = peers == Peers::Multicast;
        let (rx, tx) = match primary {
            IpAddr::V4(primary) => {
                let rx = Socket::new(Domain::IPV4, Type::RAW, proto)?;
                rx.bind_device(Some(tx_name.as_bytes()))?;
                rx.set_multicast_all_v4(false)?;
                if multicast {
                    rx.join_multicast_v4_n(
                        &VRRP_GROUP,
                        &socket2::InterfaceIndexOrAddress::Index(tx_ifindex),
                    )?;
                }
                let tx = Socket::new(Domain::IPV4, Type::RAW, proto)?;
                tx.bind_device(Some(tx_name.as_bytes()))?;
                tx.bind(&SockAddr::from(SocketAddrV4::new(primary, 0)))?;
                if via.is_some() {
                    // The primary address is on the parent: name the VMAC by index.
                    multicast_if_index_v4(tx.as_raw_fd(), tx_ifindex)?;
                } else {
                    tx.set_multicast_if_v4(&primary)?;
                }
                tx.set_multicast_ttl_v4(VRRP_TTL as u32)?;
                tx.set_multicast_loop_v4(false)?;
                tx.set_ttl_v4(VRRP_TTL as u32)?;
                (rx, tx)
            }
            IpAddr::V6(primary) => {
                let rx = Socket::new(Domain::IPV6, Type::RAW, proto)?;
                rx.bind_device(Some(tx_name.as_bytes()))?;
                rx.set_multicast_all_v6(false)?;
                if multicast {
                    rx.join_multicast_v6(&VRRP_GROUP_V6, tx_ifindex)?;
                }
                rx.set_recv_hoplimit_v6(true)?;
                set_int(
                    rx.as_raw_fd(),
                    libc::IPPROTO_IPV6,
                    libc::IPV6_RECVPKTINFO,
                    1,
                )?;
                let tx = Socket::new(Domain::IPV6, Type::RAW, proto)?;
                tx.bind_device(Some(tx_name.as_bytes()))?;
                if via.is_some() {
                    // A backup's VMAC has no address; the link-local source
                    // is put on it when it becomes master (see `vmac`).
                    tx.set_freebind_v6(true)?;
                }
                tx.bind(&SockAddr::from(SocketAddrV6::new(
                    primary, 0, 0, tx_ifindex,
                )))?;
                tx.set_multicast_if_v6(tx_ifindex)?;
                tx.set_multicast_hops_v6(VRRP_TTL as u32)?;
                tx.set_multicast_loop_v6(false)?;
                tx.set_unicast_hops_v6(VRRP_TTL as u32)?;
                (rx, tx)
            }
        };
        rx.set_nonblocking(true)?;
        // The sender never reads; don't let it queue what it would receive.
        let _ = tx.set_recv_buffer_size(256);
        let _ = tx.shutdown(std::net::Shutdown::Read);
        Ok(VrrpSocket {
            rx,
            tx,
            peers,
            primary,
            tx_ifindex,
        })
    }

    pub fn peers(&self) -> &Peers {
        &self.peers
    }

    fn dest(&self, to: IpAddr) -> SockAddr {
        match to {
            IpAddr::V4(a) => SockAddr::from(SocketAddrV4::new(a, 0)),
            // Link-local and multicast destinations need the interface.
            IpAddr::V6(a) => SockAddr::from(SocketAddrV6::new(a, 0, 0, self.tx_ifindex)),
        }
    }

    /// Sends one VRRP message (no IP header) to the group or each peer.
    pub fn send(&self, msg_for: impl Fn(IpAddr) -> Vec<u8>) -> io::Result<()> {
        match &self.peers {
            Peers::Multicast => {
                let group = match self.primary {
                    IpAddr::V4(_) => IpAddr::V4(VRRP_GROUP),
                    IpAddr::V6(_) => IpAddr::V6(VRRP_GROUP_V6),
                };
                self.tx.send_to(&msg_for(group), &self.dest(group))?;
            }
            Peers::Unicast(list) => {
                let mut last = Ok(0);
                for p in list {
                    last = self.tx.send_to(&msg_for(*p), &self.dest(*p));
                }
                last?;
            }
        }
        Ok(())
    }

    /// One datagram, or WouldBlock.
    pub fn recv<'a>(&self, buf: &'a mut [u8]) -> io::Result<Received<'a>> {
        if self.primary.is_ipv4() {
            // SAFETY: recv only writes initialised bytes into the prefix it reports.
            let uninit = unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) };
            let n = self.rx.recv(uninit)?;
            return Ok(Received::V4(&buf[..n]));
        }
        let (n, info) = recv_v6(self.rx.as_raw_fd(), buf)?;
        Ok(Received::V6(info, &buf[..n]))
    }

    pub fn rx_fd(&self) -> RawFd {
        self.rx.as_raw_fd()
    }
}

/// IP_MULTICAST_IF with an interface index (struct ip_mreqn).
fn multicast_if_index_v4(fd: RawFd, ifindex: u32) -> io::Result<()> {
    let mreqn = libc::ip_mreqn {
        imr_multiaddr: libc::in_addr { s_addr: 0 },
        imr_address: libc::in_addr { s_addr: 0 },
        imr_ifindex: ifindex as i32,
    };
    // SAFETY: mreqn lives across the call and its size is passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_MULTICAST_IF,
            (&mreqn as *const libc::ip_mreqn).cast(),
            std::mem::size_of::<libc::ip_mreqn>() as u32,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// recvmsg on a raw IPv6 socket: the message, its sender, and the destination
/// and Hop Limit from the control messages. A missing Hop Limit reads as 0, so
/// the §7.1 check drops the advert rather than trusting it.
fn recv_v6(fd: RawFd, buf: &mut [u8]) -> io::Result<(usize, IpInfo)> {
    let mut name: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // Room for IPV6_PKTINFO and IPV6_HOPLIMIT, u64-aligned.
    let mut control = [0u64; 16];
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut name as *mut libc::sockaddr_in6).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in6>() as u32;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut info = IpInfo {
        src: IpAddr::V6(Ipv6Addr::from(name.sin6_addr.s6_addr)),
        dst: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        ttl: 0,
    };
    // SAFETY: the CMSG_* walk stays inside msg_controllen, which the kernel set.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            let data = libc::CMSG_DATA(c);
            match ((*c).cmsg_level, (*c).cmsg_type) {
                (libc::IPPROTO_IPV6, libc::IPV6_HOPLIMIT) => {
                    let v = std::ptr::read_unaligned(data.cast::<i32>());
                    info.ttl = u8::try_from(v).unwrap_or(0);
                }
                (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) => {
                    let p = std::ptr::read_unaligned(data.cast::<libc::in6_pktinfo>());
                    info.dst = IpAddr::V6(Ipv6Addr::from(p.ipi6_addr.s6_addr));
                }
                _ => {}
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok((n as usize, info))
}
