//! Raw IP protocol 112 sockets for adverts, multicast or unicast.
//!
//! Two sockets: the receiver is unbound (a raw socket bound to a unicast
//! address would not see 224.0.0.18), joined to the group on one interface with
//! `IP_MULTICAST_ALL` off; the sender is bound to the primary address so adverts
//! never leave with a VIP as source. TTL is 255 both ways (§5.1.1.3).

use std::io;
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, RawFd};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::packet::{IPPROTO_VRRP, VRRP_GROUP, VRRP_TTL};

/// Where adverts go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peers {
    Multicast,
    /// Unicast to these peers; adverts from anyone else are dropped.
    Unicast(Vec<Ipv4Addr>),
}

pub struct VrrpSocket {
    rx: Socket,
    tx: Socket,
    peers: Peers,
}

impl VrrpSocket {
    pub fn open(
        interface: &str,
        ifindex: u32,
        primary: Ipv4Addr,
        peers: Peers,
    ) -> io::Result<Self> {
        let proto = Some(Protocol::from(IPPROTO_VRRP as i32));
        let rx = Socket::new(Domain::IPV4, Type::RAW, proto)?;
        rx.bind_device(Some(interface.as_bytes()))?;
        rx.set_multicast_all_v4(false)?;
        if peers == Peers::Multicast {
            rx.join_multicast_v4_n(
                &VRRP_GROUP,
                &socket2::InterfaceIndexOrAddress::Index(ifindex),
            )?;
        }
        rx.set_nonblocking(true)?;

        let tx = Socket::new(Domain::IPV4, Type::RAW, proto)?;
        tx.bind_device(Some(interface.as_bytes()))?;
        tx.bind(&SockAddr::from(SocketAddrV4::new(primary, 0)))?;
        tx.set_multicast_if_v4(&primary)?;
        tx.set_multicast_ttl_v4(VRRP_TTL as u32)?;
        tx.set_multicast_loop_v4(false)?;
        tx.set_ttl_v4(VRRP_TTL as u32)?;
        // The sender never reads; don't let it queue what it would receive.
        let _ = tx.set_recv_buffer_size(256);
        let _ = tx.shutdown(std::net::Shutdown::Read);
        Ok(VrrpSocket { rx, tx, peers })
    }

    pub fn peers(&self) -> &Peers {
        &self.peers
    }

    /// Sends one VRRP message (no IP header) to the group or each peer.
    pub fn send(&self, msg_for: impl Fn(Ipv4Addr) -> Vec<u8>) -> io::Result<()> {
        match &self.peers {
            Peers::Multicast => {
                self.tx.send_to(
                    &msg_for(VRRP_GROUP),
                    &SockAddr::from(SocketAddrV4::new(VRRP_GROUP, 0)),
                )?;
            }
            Peers::Unicast(list) => {
                let mut last = Ok(0);
                for p in list {
                    last = self
                        .tx
                        .send_to(&msg_for(*p), &SockAddr::from(SocketAddrV4::new(*p, 0)));
                }
                last?;
            }
        }
        Ok(())
    }

    /// One datagram (IPv4 header included), or WouldBlock.
    pub fn recv<'a>(&self, buf: &'a mut [u8]) -> io::Result<&'a [u8]> {
        // SAFETY: recv only writes initialised bytes into the prefix it reports.
        let uninit = unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) };
        let n = self.rx.recv(uninit)?;
        Ok(&buf[..n])
    }

    pub fn rx_fd(&self) -> RawFd {
        self.rx.as_raw_fd()
    }
}
