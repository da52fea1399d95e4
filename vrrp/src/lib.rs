//! VRRPv3 (RFC 5798) for IPv4 and IPv6: a sans-IO state machine and the Linux I/O
//! around it, so a process can share a floating IP with its peers (including
//! keepalived).
//!
//! One module per concern, like keepalived's `vrrp/`: [`packet`] (codec),
//! [`fsm`] (state machine), [`socket`] (raw protocol-112 sockets), [`arp`]
//! (gratuitous ARP, unsolicited neighbour advertisements), [`address`]
//! (interfaces and VIPs over netlink), [`track`] (health of the local
//! service), [`group`] (sync groups that fail over together), [`notify`]
//! (transition commands), [`vmac`] (the virtual MAC's macvlan, §7.3), [`rules`] (RFC 5798's limits on the settings, once), [`histogram`] (advert gaps as a backup sees them)
//! and [`instance`] (the thread that ties them together).

pub mod address;
pub mod arp;
pub mod fsm;
pub mod group;
pub mod histogram;
pub mod instance;
pub mod notify;
pub mod packet;
pub mod rules;
pub mod socket;
pub mod track;
pub mod vmac;

pub use fsm::State;
pub use group::SyncGroup;
pub use instance::{
    spawn, Instance, InstanceConfig, PeerAdvert, Stats, TransitionHook, DROP_REASONS,
};
pub use notify::NotifyCommands;
pub use packet::ChecksumMode;
pub use track::{TrackHandle, TrackInterface, TrackScript};

/// Why a VRRP instance could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("VRRP instance {name}: {msg}")]
    Config { name: String, msg: String },
    #[error("VRID {vrid} on {interface}: {what}: {source}")]
    Io {
        vrid: u8,
        interface: String,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}
