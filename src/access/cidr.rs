//! A set of client address ranges (CIDR, IPv4 and IPv6) with a lookup in
//! O(log n): the ranges are kept as sorted, merged intervals per family, and
//! an address is found by a binary search. Sans-IO: text in, yes/no out.
//! Not for: what a match means (allow or deny: `super::AddressRule`).

use std::net::IpAddr;

/// Address ranges, both families; an IPv4-mapped IPv6 client
/// (`::ffff:198.18.0.7`) is looked up as the IPv4 address it carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CidrSet {
    /// Disjoint, non-adjacent `(first, last)` intervals, sorted.
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl CidrSet {
    /// The set of `nets` (address, prefix length); bits past the prefix are
    /// ignored (`198.18.0.7/15` is `198.18.0.0/15`, as nginx reads it).
    pub fn new(nets: &[(IpAddr, u8)]) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for &(addr, len) in nets {
            match unmap(addr, len) {
                (IpAddr::V4(a), len) => {
                    let len = u32::from(len.min(32));
                    let host = u32::MAX.checked_shr(len).unwrap_or(0);
                    let first = u32::from(a) & !host;
                    v4.push((first, first | host));
                }
                (IpAddr::V6(a), len) => {
                    let len = u32::from(len.min(128));
                    let host = u128::MAX.checked_shr(len).unwrap_or(0);
                    let first = u128::from(a) & !host;
                    v6.push((first, first | host));
                }
            }
        }
        CidrSet {
            v4: merged(v4),
            v6: merged(v6),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// Whether `ip` is in one of the ranges.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match unmap(ip, 128) {
            (IpAddr::V4(a), _) => find(&self.v4, u32::from(a)),
            (IpAddr::V6(a), _) => find(&self.v6, u128::from(a)),
        }
    }

    /// How many disjoint intervals the set holds (for tests and logs).
    pub fn intervals(&self) -> usize {
        self.v4.len() + self.v6.len()
    }
}

/// An IPv4-mapped IPv6 address (and a network inside `::ffff:0:0/96`) as IPv4.
fn unmap(ip: IpAddr, len: u8) -> (IpAddr, u8) {
    match ip {
        IpAddr::V6(v6) if len >= 96 => match v6.to_ipv4_mapped() {
            Some(v4) => (IpAddr::V4(v4), len - 96),
            None => (ip, len),
        },
        _ => (ip, len),
    }
}

/// Sorts and merges overlapping or touching intervals.
fn merged<T: Copy + Ord + num::One>(mut v: Vec<(T, T)>) -> Vec<(T, T)> {
    v.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(v.len());
    for (first, last) in v {
        match out.last_mut() {
            Some(prev) if first <= prev.1 || prev.1.checked_next() == Some(first) => {
                prev.1 = prev.1.max(last);
            }
            _ => out.push((first, last)),
        }
    }
    out.shrink_to_fit();
    out
}

fn find<T: Copy + Ord>(v: &[(T, T)], x: T) -> bool {
    // The last interval starting at or before x.
    let i = v.partition_point(|&(first, _)| first <= x);
    i > 0 && x <= v[i - 1].1
}

/// The one step `merged` needs of u32 and u128.
mod num {
    pub trait One: Sized {
        fn checked_next(self) -> Option<Self>;
    }
    impl One for u32 {
        fn checked_next(self) -> Option<Self> {
            self.checked_add(1)
        }
    }
    impl One for u128 {
        fn checked_next(self) -> Option<Self> {
            self.checked_add(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(nets: &[&str]) -> CidrSet {
        let parsed: Vec<(IpAddr, u8)> = nets
            .iter()
            .map(|n| match n.split_once('/') {
                Some((a, l)) => (a.parse().unwrap(), l.parse().unwrap()),
                None => {
                    let a: IpAddr = n.parse().unwrap();
                    (a, if a.is_ipv4() { 32 } else { 128 })
                }
            })
            .collect();
        CidrSet::new(&parsed)
    }

    fn has(s: &CidrSet, ip: &str) -> bool {
        s.contains(ip.parse().unwrap())
    }

    #[test]
    fn ipv4_ranges_edges_included() {
        let s = set(&["198.18.0.0/15", "127.0.0.1"]);
        assert!(has(&s, "198.18.0.0") && has(&s, "198.19.255.255"));
        assert!(!has(&s, "198.17.255.255") && !has(&s, "198.20.0.0"));
        assert!(has(&s, "127.0.0.1") && !has(&s, "127.0.0.2"));
        assert!(!has(&s, "2001:2::1"), "families stay apart");
    }

    #[test]
    fn ipv6_ranges_and_loopback() {
        let s = set(&["2001:2::/48", "::1"]);
        assert!(has(&s, "2001:2::5") && has(&s, "2001:2:0:ffff::1"));
        assert!(!has(&s, "2001:2:1::1") && !has(&s, "2001:3::"));
        assert!(has(&s, "::1") && !has(&s, "::2"));
        assert!(!has(&s, "127.0.0.1"));
    }

    /// A client on a dual-stack socket shows as `::ffff:a.b.c.d`.
    #[test]
    fn ipv4_mapped_clients_and_networks_are_ipv4() {
        let s = set(&["198.18.0.0/24"]);
        assert!(has(&s, "::ffff:198.18.0.9"));
        assert!(!has(&s, "::ffff:198.18.1.9"));
        let m = set(&["::ffff:198.18.0.0/120"]);
        assert!(has(&m, "198.18.0.200") && !has(&m, "198.18.1.1"));
    }

    #[test]
    fn host_bits_are_ignored_and_the_whole_space_works() {
        assert_eq!(set(&["198.18.0.7/15"]), set(&["198.18.0.0/15"]));
        let all = set(&["0.0.0.0/0", "::/0"]);
        for ip in ["0.0.0.0", "255.255.255.255", "::", "ffff::1"] {
            assert!(has(&all, ip), "{ip}");
        }
        assert_eq!(all.intervals(), 2);
        assert!(CidrSet::default().is_empty() && !has(&CidrSet::default(), "1.2.3.4"));
    }

    #[test]
    fn overlapping_and_adjacent_ranges_merge() {
        let s = set(&[
            "10.0.1.0/24",
            "10.0.0.0/24",
            "10.0.0.128/25",
            "10.0.3.0/24",
            "255.255.255.255",
            "255.255.255.254",
        ]);
        // 10.0.0.0-10.0.1.255, 10.0.3.0/24, and the last two addresses.
        assert_eq!(s.intervals(), 3);
        assert!(has(&s, "10.0.1.200") && !has(&s, "10.0.2.1") && has(&s, "10.0.3.1"));
        assert!(has(&s, "255.255.255.255"));
    }

    /// The binary search agrees with testing every network, on random input.
    #[test]
    fn lookup_agrees_with_a_linear_scan() {
        let mut rand = crate::test_util::xorshift(0x5eed);
        let ten = |r: u64| std::net::Ipv4Addr::from(0x0a00_0000 | r as u32);
        let nets: Vec<(std::net::Ipv4Addr, u8)> = (0..300)
            .map(|_| (ten(rand(1 << 24)), 12 + rand(21) as u8))
            .collect();
        let as_ip: Vec<(IpAddr, u8)> = nets.iter().map(|&(a, l)| (a.into(), l)).collect();
        let s = CidrSet::new(&as_ip);
        for _ in 0..5000 {
            let ip = ten(rand(1 << 24));
            let slow = nets.iter().any(|&(n, l)| {
                let mask = u32::MAX << (32 - u32::from(l));
                u32::from(ip) & mask == u32::from(n) & mask
            });
            assert_eq!(s.contains(ip.into()), slow, "{ip}");
        }
    }
}
