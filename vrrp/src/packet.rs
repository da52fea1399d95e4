//! VRRPv3 advertisements for IPv4 and IPv6 (RFC 5798 §5): encode, decode, checksum.
//!
//! Decoding takes untrusted bytes and returns a [`PacketError`] for anything
//! malformed — never a panic. The address family of an advert is the family of
//! the IP packet that carried it (§5.2.9: IPv4 addresses are 4 bytes, IPv6 16),
//! so `decode` is given the packet's source and destination. The checksum is
//! verified both ways: over the IPv4 or IPv6 pseudo-header (RFC 5798 §5.2.8,
//! RFC 8200 §8.1; what keepalived sends) and over the message alone (the
//! VRRPv2 habit some routers kept, see RFC 9568).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IP protocol number of VRRP.
pub const IPPROTO_VRRP: u8 = 112;
/// The IPv4 multicast group adverts are sent to.
pub const VRRP_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// The IPv6 multicast group adverts are sent to (§5.1.2.2).
pub const VRRP_GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// Adverts must arrive with this TTL or IPv6 Hop Limit (§5.1.1.3, §5.1.2.3).
pub const VRRP_TTL: u8 = 255;
const VERSION: u8 = 3;
const TYPE_ADVERTISEMENT: u8 = 1;
const HEADER_LEN: usize = 8;
/// Largest advert interval: 12 bits of centiseconds.
pub const MAX_ADVER_INT_CS: u16 = 0x0fff;

/// An advertisement's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    pub vrid: u8,
    pub priority: u8,
    /// Max Advertise Interval in centiseconds (12 bits).
    pub max_adver_int: u16,
    /// The virtual addresses, all of the family of the packet that carries
    /// the advert (§5.2.9). For IPv6 the RFC wants the virtual router's
    /// link-local address first; keepalived only logs when it is not, and so
    /// does floatlb: the list is for troubleshooting, never for election.
    pub addresses: Vec<IpAddr>,
}

/// How the checksum is computed when sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChecksumMode {
    /// Over the IPv4 or IPv6 pseudo-header and the message (RFC 5798 §5.2.8).
    #[default]
    Rfc5798,
    /// Over the message only, as VRRPv2 did (keepalived's `v3_checksum_as_v2`).
    V2Compat,
}

/// Why received bytes are not a usable advertisement. `as_str` is a metrics label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("truncated packet ({0} bytes)")]
    Truncated(usize),
    #[error("not an IPv4 packet")]
    NotIpv4,
    #[error("bad IPv4 header length")]
    BadIpHeader,
    #[error("IP protocol {0} is not VRRP")]
    NotVrrp(u8),
    #[error("VRRP version {0}, expected 3")]
    BadVersion(u8),
    #[error("VRRP type {0}, expected 1 (advertisement)")]
    BadType(u8),
    #[error("address count {declared} does not match {present} addresses in the packet")]
    AddressCountMismatch { declared: usize, present: usize },
    #[error("bad checksum")]
    BadChecksum,
}

impl PacketError {
    pub fn as_str(&self) -> &'static str {
        match self {
            PacketError::Truncated(_) => "truncated",
            PacketError::NotIpv4 | PacketError::BadIpHeader => "bad_ip_header",
            PacketError::NotVrrp(_) => "not_vrrp",
            PacketError::BadVersion(_) => "bad_version",
            PacketError::BadType(_) => "bad_type",
            PacketError::AddressCountMismatch { .. } => "address_count_mismatch",
            PacketError::BadChecksum => "bad_checksum",
        }
    }
}

/// Which checksum variant a received advert carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumKind {
    PseudoHeader,
    MessageOnly,
}

/// RFC 1071 Internet checksum over several byte slices taken as one stream.
pub(crate) fn internet_checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut odd: Option<u8> = None;
    for part in parts {
        for &b in *part {
            match odd.take() {
                Some(hi) => sum += u16::from_be_bytes([hi, b]) as u32,
                None => odd = Some(b),
            }
        }
    }
    if let Some(hi) = odd {
        sum += u16::from_be_bytes([hi, 0]) as u32;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The pseudo-header the §5.2.8 checksum covers: RFC 791's for IPv4 (src,
/// dst, zero, protocol, length) and RFC 8200 §8.1's for IPv6 (src, dst, 32-bit
/// upper-layer length, three zero bytes, next header). Mixed families (which no
/// socket delivers) are summed as IPv6 with the IPv4 address mapped.
fn pseudo_header(src: IpAddr, dst: IpAddr, len: usize) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut p = vec![0u8; 12];
            p[0..4].copy_from_slice(&s.octets());
            p[4..8].copy_from_slice(&d.octets());
            p[9] = IPPROTO_VRRP;
            p[10..12].copy_from_slice(&(len as u16).to_be_bytes());
            p
        }
        (s, d) => {
            let v6 = |a: IpAddr| match a {
                IpAddr::V4(a) => a.to_ipv6_mapped(),
                IpAddr::V6(a) => a,
            };
            let mut p = vec![0u8; 40];
            p[0..16].copy_from_slice(&v6(s).octets());
            p[16..32].copy_from_slice(&v6(d).octets());
            p[32..36].copy_from_slice(&(len as u32).to_be_bytes());
            p[39] = IPPROTO_VRRP;
            p
        }
    }
}

/// Bytes per address in an advert sent from `src` (§5.2.9).
pub fn address_len(src: IpAddr) -> usize {
    match src {
        IpAddr::V4(_) => 4,
        IpAddr::V6(_) => 16,
    }
}

impl Advert {
    /// The VRRP message (no IP header) as sent from `src` to `dst`. Only the
    /// addresses of `src`'s family are written (one family per advert, §5.2.9).
    pub fn encode(
        &self,
        src: impl Into<IpAddr>,
        dst: impl Into<IpAddr>,
        mode: ChecksumMode,
    ) -> Vec<u8> {
        let (src, dst) = (src.into(), dst.into());
        let addresses: Vec<&IpAddr> = self
            .addresses
            .iter()
            .filter(|a| a.is_ipv4() == src.is_ipv4())
            .take(255)
            .collect();
        let count = addresses.len();
        let mut msg = Vec::with_capacity(HEADER_LEN + address_len(src) * count);
        msg.push((VERSION << 4) | TYPE_ADVERTISEMENT);
        msg.push(self.vrid);
        msg.push(self.priority);
        msg.push(count as u8);
        msg.extend_from_slice(&(self.max_adver_int & MAX_ADVER_INT_CS).to_be_bytes());
        msg.extend_from_slice(&[0, 0]);
        for a in addresses {
            match a {
                IpAddr::V4(a) => msg.extend_from_slice(&a.octets()),
                IpAddr::V6(a) => msg.extend_from_slice(&a.octets()),
            }
        }
        let sum = match mode {
            ChecksumMode::Rfc5798 => {
                internet_checksum(&[&pseudo_header(src, dst, msg.len()), &msg])
            }
            ChecksumMode::V2Compat => internet_checksum(&[&msg]),
        };
        msg[6..8].copy_from_slice(&sum.to_be_bytes());
        msg
    }

    /// Decodes a VRRP message received from `src` sent to `dst`; the
    /// addresses in it are of `src`'s family.
    pub fn decode(
        msg: &[u8],
        src: impl Into<IpAddr>,
        dst: impl Into<IpAddr>,
    ) -> Result<(Advert, ChecksumKind), PacketError> {
        let (src, dst) = (src.into(), dst.into());
        let alen = address_len(src);
        if msg.len() < HEADER_LEN {
            return Err(PacketError::Truncated(msg.len()));
        }
        let version = msg[0] >> 4;
        if version != VERSION {
            return Err(PacketError::BadVersion(version));
        }
        let kind = msg[0] & 0x0f;
        if kind != TYPE_ADVERTISEMENT {
            return Err(PacketError::BadType(kind));
        }
        let declared = msg[3] as usize;
        let present = (msg.len() - HEADER_LEN) / alen;
        if msg.len() != HEADER_LEN + alen * declared {
            return Err(PacketError::AddressCountMismatch { declared, present });
        }
        let checksum = if internet_checksum(&[&pseudo_header(src, dst, msg.len()), msg]) == 0 {
            ChecksumKind::PseudoHeader
        } else if internet_checksum(&[msg]) == 0 {
            ChecksumKind::MessageOnly
        } else {
            return Err(PacketError::BadChecksum);
        };
        let addresses = msg[HEADER_LEN..]
            .chunks_exact(alen)
            .map(|c| match <[u8; 16]>::try_from(c) {
                Ok(b) => IpAddr::from(b),
                Err(_) => IpAddr::from([c[0], c[1], c[2], c[3]]),
            })
            .collect();
        Ok((
            Advert {
                vrid: msg[1],
                priority: msg[2],
                max_adver_int: u16::from_be_bytes([msg[4], msg[5]]) & MAX_ADVER_INT_CS,
                addresses,
            },
            checksum,
        ))
    }
}

/// The IP header facts the receive checks need. For IPv6 (whose raw sockets
/// deliver no header) they come from the socket: the sender's address, and
/// the destination and Hop Limit from IPV6_PKTINFO / IPV6_HOPLIMIT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpInfo {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IPv4 TTL or IPv6 Hop Limit.
    pub ttl: u8,
}

/// Splits a raw-socket datagram (IPv4 header included) into header facts and payload.
pub fn parse_ipv4(datagram: &[u8]) -> Result<(IpInfo, &[u8]), PacketError> {
    if datagram.len() < 20 {
        return Err(PacketError::Truncated(datagram.len()));
    }
    if datagram[0] >> 4 != 4 {
        return Err(PacketError::NotIpv4);
    }
    let ihl = (datagram[0] & 0x0f) as usize * 4;
    let total = u16::from_be_bytes([datagram[2], datagram[3]]) as usize;
    if ihl < 20 || ihl > datagram.len() {
        return Err(PacketError::BadIpHeader);
    }
    if datagram[9] != IPPROTO_VRRP {
        return Err(PacketError::NotVrrp(datagram[9]));
    }
    // Linux hands raw sockets the whole datagram; trust the shorter of the two lengths.
    let end = if total >= ihl && total <= datagram.len() {
        total
    } else {
        datagram.len()
    };
    let info = IpInfo {
        src: Ipv4Addr::new(datagram[12], datagram[13], datagram[14], datagram[15]).into(),
        dst: Ipv4Addr::new(datagram[16], datagram[17], datagram[18], datagram[19]).into(),
        ttl: datagram[8],
    };
    Ok((info, &datagram[ihl..end]))
}

/// Builds an IPv4 datagram around a VRRP message (for tests and injectors).
pub fn build_ipv4(src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, payload: &[u8]) -> Vec<u8> {
    let total = 20 + payload.len();
    let mut ip = vec![0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    ip[8] = ttl;
    ip[9] = IPPROTO_VRRP;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let sum = internet_checksum(&[&ip]);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    ip.extend_from_slice(payload);
    ip
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);

    fn advert() -> Advert {
        Advert {
            vrid: 51,
            priority: 150,
            max_adver_int: 1,
            addresses: vec![Ipv4Addr::new(198, 18, 0, 100).into()],
        }
    }

    /// RFC 5798 §5.1/§5.2: version 3, type 1, then VRID, priority, count,
    /// 4 reserved bits + 12-bit Max Adver Int, checksum, addresses.
    #[test]
    fn wire_layout() {
        let msg = advert().encode(SRC, VRRP_GROUP, ChecksumMode::Rfc5798);
        assert_eq!(msg.len(), 12);
        assert_eq!(&msg[..6], &[0x31, 51, 150, 1, 0x00, 0x01]);
        assert_eq!(&msg[8..], &[198, 18, 0, 100]);
    }

    /// §5.2.8: the checksum covers the pseudo-header, so it binds the source
    /// address (interop with keepalived is tested in tests/vrrp_adverts.rs).
    #[test]
    fn checksum_covers_pseudo_header() {
        let msg = advert().encode(SRC, VRRP_GROUP, ChecksumMode::Rfc5798);
        let (a, kind) = Advert::decode(&msg, SRC, VRRP_GROUP).unwrap();
        assert_eq!(a, advert());
        assert_eq!(kind, ChecksumKind::PseudoHeader);
        // The same bytes from a different source fail the pseudo-header sum.
        let other = Ipv4Addr::new(198, 18, 0, 9);
        assert_eq!(
            Advert::decode(&msg, other, VRRP_GROUP),
            Err(PacketError::BadChecksum)
        );
    }

    /// RFC 9568 notes implementations that omit the pseudo-header: accepted, and labelled.
    #[test]
    fn v2_style_checksum_is_accepted() {
        let msg = advert().encode(SRC, VRRP_GROUP, ChecksumMode::V2Compat);
        let (_, kind) = Advert::decode(&msg, SRC, VRRP_GROUP).unwrap();
        assert_eq!(kind, ChecksumKind::MessageOnly);
    }

    #[test]
    fn rejects_malformed() {
        let good = advert().encode(SRC, VRRP_GROUP, ChecksumMode::Rfc5798);
        assert_eq!(
            Advert::decode(&good[..7], SRC, VRRP_GROUP),
            Err(PacketError::Truncated(7))
        );
        let mut v2 = good.clone();
        v2[0] = 0x21;
        assert_eq!(
            Advert::decode(&v2, SRC, VRRP_GROUP),
            Err(PacketError::BadVersion(2))
        );
        let mut t = good.clone();
        t[0] = 0x32;
        assert_eq!(
            Advert::decode(&t, SRC, VRRP_GROUP),
            Err(PacketError::BadType(2))
        );
        let mut lie = good.clone();
        lie[3] = 3;
        assert!(matches!(
            Advert::decode(&lie, SRC, VRRP_GROUP),
            Err(PacketError::AddressCountMismatch {
                declared: 3,
                present: 1
            })
        ));
        let mut flipped = good;
        flipped[2] ^= 1;
        assert_eq!(
            Advert::decode(&flipped, SRC, VRRP_GROUP),
            Err(PacketError::BadChecksum)
        );
    }

    #[test]
    fn ipv4_header_honours_ihl_and_reads_ttl() {
        let msg = advert().encode(SRC, VRRP_GROUP, ChecksumMode::Rfc5798);
        let mut dgram = build_ipv4(SRC, VRRP_GROUP, 255, &msg);
        let (info, payload) = parse_ipv4(&dgram).unwrap();
        assert_eq!(
            info,
            IpInfo {
                src: SRC.into(),
                dst: VRRP_GROUP.into(),
                ttl: 255
            }
        );
        assert_eq!(payload, &msg[..]);
        // With 4 bytes of IP options (IHL 6) the payload still starts right.
        dgram.splice(20..20, [1, 1, 1, 1]);
        dgram[0] = 0x46;
        let total = dgram.len() as u16;
        dgram[2..4].copy_from_slice(&total.to_be_bytes());
        assert_eq!(parse_ipv4(&dgram).unwrap().1, &msg[..]);
        dgram[9] = 6;
        assert_eq!(parse_ipv4(&dgram), Err(PacketError::NotVrrp(6)));
    }

    const SRC6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 3);

    fn advert_v6() -> Advert {
        Advert {
            vrid: 61,
            priority: 150,
            max_adver_int: 1,
            addresses: vec!["fe80::100".parse().unwrap(), "2001:2::100".parse().unwrap()],
        }
    }

    /// §5.2.9: in an IPv6 advert each address is 16 bytes, and Count IPvX
    /// Addrs counts them; the fixed header is the same as for IPv4 (§5.1).
    #[test]
    fn ipv6_wire_layout() {
        let msg = advert_v6().encode(SRC6, VRRP_GROUP_V6, ChecksumMode::Rfc5798);
        assert_eq!(msg.len(), 8 + 2 * 16);
        assert_eq!(&msg[..6], &[0x31, 61, 150, 2, 0x00, 0x01]);
        assert_eq!(
            msg[8..24],
            "fe80::100".parse::<Ipv6Addr>().unwrap().octets()
        );
        assert_eq!(
            msg[24..40],
            "2001:2::100".parse::<Ipv6Addr>().unwrap().octets()
        );
    }

    /// §5.2.9: one address family per advert: the IPv4 addresses of a mixed
    /// list are not written into an IPv6 advert.
    #[test]
    fn ipv6_advert_carries_ipv6_addresses_only() {
        let mut a = advert_v6();
        a.addresses.push(Ipv4Addr::new(198, 18, 0, 100).into());
        let msg = a.encode(SRC6, VRRP_GROUP_V6, ChecksumMode::Rfc5798);
        assert_eq!(msg[3], 2);
        let (back, _) = Advert::decode(&msg, SRC6, VRRP_GROUP_V6).unwrap();
        assert_eq!(back, advert_v6());
    }

    /// §5.2.8 with RFC 8200 §8.1: the IPv6 checksum covers a pseudo-header of
    /// source, destination, 32-bit length, three zero bytes and next header
    /// 112. Summed here from the definition, independently of the encoder.
    #[test]
    fn ipv6_checksum_is_over_the_rfc8200_pseudo_header() {
        let msg = advert_v6().encode(SRC6, VRRP_GROUP_V6, ChecksumMode::Rfc5798);
        let mut whole = Vec::new();
        whole.extend_from_slice(&SRC6.octets());
        whole.extend_from_slice(&VRRP_GROUP_V6.octets());
        whole.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        whole.extend_from_slice(&[0, 0, 0, 112]);
        whole.extend_from_slice(&msg);
        let mut sum: u32 = whole
            .chunks(2)
            .map(|c| u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0)))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        assert_eq!(
            sum, 0xffff,
            "a correct checksum makes the whole sum all ones"
        );
        let (_, kind) = Advert::decode(&msg, SRC6, VRRP_GROUP_V6).unwrap();
        assert_eq!(kind, ChecksumKind::PseudoHeader);
        // §7.1: another sender's address fails the sum.
        let other: Ipv6Addr = "fe80::9".parse().unwrap();
        assert_eq!(
            Advert::decode(&msg, other, VRRP_GROUP_V6),
            Err(PacketError::BadChecksum)
        );
    }

    /// §7.1: "MUST verify that the received packet contains the complete VRRP
    /// packet (including fixed fields, and IPvX address(es))": an IPv4-sized
    /// address list in an IPv6 packet is short.
    #[test]
    fn ipv6_count_is_checked_against_16_byte_addresses() {
        let v4 = advert().encode(SRC, VRRP_GROUP, ChecksumMode::Rfc5798);
        assert_eq!(
            Advert::decode(&v4, SRC6, VRRP_GROUP_V6),
            Err(PacketError::AddressCountMismatch {
                declared: 1,
                present: 0
            })
        );
    }

    proptest! {
        #[test]
        fn round_trip_v6(vrid in any::<u8>(), priority in any::<u8>(), int in 0u16..=0x0fff,
                         addrs in proptest::collection::vec(any::<u128>(), 0..20), v2 in any::<bool>(),
                         src in any::<u128>()) {
            let a = Advert { vrid, priority, max_adver_int: int, addresses: addrs.into_iter().map(|a| IpAddr::from(Ipv6Addr::from(a))).collect() };
            let mode = if v2 { ChecksumMode::V2Compat } else { ChecksumMode::Rfc5798 };
            let src = Ipv6Addr::from(src);
            let msg = a.encode(src, VRRP_GROUP_V6, mode);
            let (b, _) = Advert::decode(&msg, src, VRRP_GROUP_V6).unwrap();
            prop_assert_eq!(a, b);
        }

        #[test]
        fn decode_v6_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400), s in any::<u128>(), d in any::<u128>()) {
            let _ = Advert::decode(&bytes, Ipv6Addr::from(s), Ipv6Addr::from(d));
            let _ = Advert::decode(&bytes, Ipv6Addr::from(s), Ipv4Addr::from(d as u32));
        }

        #[test]
        fn round_trip(vrid in any::<u8>(), priority in any::<u8>(), int in 0u16..=0x0fff,
                      addrs in proptest::collection::vec(any::<u32>(), 0..20), v2 in any::<bool>()) {
            let a = Advert { vrid, priority, max_adver_int: int, addresses: addrs.into_iter().map(|a| IpAddr::from(Ipv4Addr::from(a))).collect() };
            let mode = if v2 { ChecksumMode::V2Compat } else { ChecksumMode::Rfc5798 };
            let msg = a.encode(SRC, VRRP_GROUP, mode);
            let (b, _) = Advert::decode(&msg, SRC, VRRP_GROUP).unwrap();
            prop_assert_eq!(a, b);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), s in any::<u32>(), d in any::<u32>()) {
            let _ = Advert::decode(&bytes, Ipv4Addr::from(s), Ipv4Addr::from(d));
            if let Ok((_, payload)) = parse_ipv4(&bytes) {
                let _ = Advert::decode(payload, Ipv4Addr::from(s), Ipv4Addr::from(d));
            }
        }
    }
}
