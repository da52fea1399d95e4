//! RFC 5798's limits on an instance's settings, stated once: an instance
//! checks them before it starts ([`crate::InstanceConfig::validate`]), and a
//! configuration reader calls the same functions to point at the key that
//! breaks one. Sans-IO; the values come out typed where the packet has a
//! field for them.

use std::net::IpAddr;
use std::time::Duration;

/// A setting RFC 5798 does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// §5.2.3: one octet, 0 not a router.
    #[error("VRID {0} is out of range 1..=255")]
    Vrid(u32),
    /// §5.2.4: 0 is a master leaving, 255 the address owner.
    #[error("priority {0} is out of range 1..=255")]
    Priority(u32),
    /// §5.2.7: 12 bits of centiseconds.
    #[error("advert interval {0:?} is not a multiple of 10ms between 10ms and 40.95s (12 bits of centiseconds)")]
    AdvertInterval(Duration),
    #[error("at least one virtual address is required")]
    NoAddress,
    /// §5.2.9: an advert carries one family, so an instance has one.
    #[error("{addr} is not of the family of {first}: one instance per address family")]
    Family { addr: IpAddr, first: IpAddr },
    #[error("{addr}/{len}: prefix length over {max}")]
    PrefixLength { addr: IpAddr, len: u8, max: u8 },
    /// §5.1.2.1: IPv6 adverts come from the link-local address.
    #[error("{0}: IPv6 adverts come from the peer's link-local address (RFC 5798 §5.1.2.1); name its fe80:: address")]
    PeerNotLinkLocal(IpAddr),
}

/// The VRID as the packet carries it.
pub fn vrid(v: u32) -> Result<u8, RuleError> {
    u8::try_from(v)
        .ok()
        .filter(|&v| v > 0)
        .ok_or(RuleError::Vrid(v))
}

/// The priority as the packet carries it.
pub fn priority(p: u32) -> Result<u8, RuleError> {
    u8::try_from(p)
        .ok()
        .filter(|&p| p > 0)
        .ok_or(RuleError::Priority(p))
}

/// The advert interval in centiseconds, as the packet carries it.
pub fn advert_interval(d: Duration) -> Result<u16, RuleError> {
    let us = d.as_micros();
    if !(10_000..=40_950_000).contains(&us) || !us.is_multiple_of(10_000) {
        return Err(RuleError::AdvertInterval(d));
    }
    Ok((us / 10_000) as u16)
}

/// A virtual address after `first` (None: it is the first), with its prefix length.
pub fn virtual_address(first: Option<IpAddr>, addr: IpAddr, len: u8) -> Result<(), RuleError> {
    if let Some(first) = first.filter(|f| f.is_ipv4() != addr.is_ipv4()) {
        return Err(RuleError::Family { addr, first });
    }
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if len > max {
        return Err(RuleError::PrefixLength { addr, len, max });
    }
    Ok(())
}

/// A unicast peer of an instance whose first virtual address is `first`.
pub fn unicast_peer(first: IpAddr, peer: IpAddr) -> Result<(), RuleError> {
    match peer {
        _ if peer.is_ipv4() != first.is_ipv4() => Err(RuleError::Family { addr: peer, first }),
        // Adverts from any other address would be dropped as not from a peer,
        // and both nodes would become master.
        IpAddr::V6(p) if !crate::address::is_link_local(&p) => {
            Err(RuleError::PeerNotLinkLocal(peer))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 5798 §5.2.3, §5.2.4, §5.2.7: the fields' ranges.
    #[test]
    fn field_ranges() {
        assert_eq!(vrid(51), Ok(51));
        assert_eq!(vrid(0), Err(RuleError::Vrid(0)));
        assert_eq!(vrid(256), Err(RuleError::Vrid(256)));
        assert_eq!(priority(255), Ok(255));
        assert!(priority(0).is_err() && priority(300).is_err());
        assert_eq!(advert_interval(Duration::from_millis(100)), Ok(10));
        assert_eq!(advert_interval(Duration::from_millis(40_950)), Ok(4095));
        for bad in [5, 15, 40_960] {
            assert!(
                advert_interval(Duration::from_millis(bad)).is_err(),
                "{bad}"
            );
        }
    }

    /// RFC 5798 §5.2.9 and §5.1.2.1: one family; IPv6 peers by link-local address.
    #[test]
    fn addresses_and_peers() {
        let v4: IpAddr = "198.18.0.100".parse().unwrap();
        let v6: IpAddr = "2001:2::100".parse().unwrap();
        assert!(virtual_address(None, v4, 24).is_ok());
        assert!(matches!(
            virtual_address(Some(v4), v6, 64),
            Err(RuleError::Family { .. })
        ));
        assert!(virtual_address(None, v4, 33).is_err() && virtual_address(None, v6, 129).is_err());
        assert!(unicast_peer(v6, "fe80::4".parse().unwrap()).is_ok());
        assert!(matches!(
            unicast_peer(v6, "2001:2::4".parse().unwrap()),
            Err(RuleError::PeerNotLinkLocal(_))
        ));
        assert!(unicast_peer(v4, "2001:2::4".parse().unwrap()).is_err());
        assert!(unicast_peer(v4, "198.18.0.4".parse().unwrap()).is_ok());
    }
}
