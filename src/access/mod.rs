//! Who may use a listener or a route: client address lists (`allow-from`,
//! `deny-from`, inline or from a file; [`cidr`]) and HTTP Basic
//! authentication against an htpasswd file ([`basic`]). Sans-IO: the lists'
//! and files' text in, a verdict per request out.
//! Not for: reading the files, or answering 403/401 (`config`, `proxy`).

pub mod basic;
pub mod cidr;
pub mod track;

use std::fmt;
use std::net::IpAddr;

pub use basic::BasicAuth;
pub use cidr::CidrSet;

/// Why a client was refused: the `reason` label of `floatlb_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its address is in a `deny-from` list.
    Denied,
    /// A listener or route has an allow list, and its address is in none.
    NotAllowed,
    /// A route asks for credentials and the request sent none.
    NoCredentials,
    /// It sent credentials that are not a known user's with the right password.
    BadCredentials,
}

impl Refusal {
    pub const ALL: [Refusal; 4] = [
        Refusal::Denied,
        Refusal::NotAllowed,
        Refusal::NoCredentials,
        Refusal::BadCredentials,
    ];

    /// The metric's label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Denied => "denied",
            Refusal::NotAllowed => "not-allowed",
            Refusal::NoCredentials => "no-credentials",
            Refusal::BadCredentials => "bad-credentials",
        }
    }

    /// Its place in [`Refusal::ALL`] (an index into a counter array).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A listener's or a route's address lists. Deny wins: a client in a deny
/// range is refused whatever the allow list says; with an allow list (even an
/// empty one, from an empty file), only clients in it pass; without one,
/// every client not denied passes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressRule {
    pub allow: Option<CidrSet>,
    pub deny: CidrSet,
}

impl AddressRule {
    /// Whether a list is set at all (a rule with none is not kept).
    pub fn is_empty(&self) -> bool {
        self.allow.is_none() && self.deny.is_empty()
    }

    pub fn check(&self, ip: IpAddr) -> Result<(), Refusal> {
        if self.deny.contains(ip) {
            return Err(Refusal::Denied);
        }
        match &self.allow {
            Some(allow) if !allow.contains(ip) => Err(Refusal::NotAllowed),
            _ => Ok(()),
        }
    }
}

/// A line of a list or htpasswd file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// 1-based.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Parses `198.18.0.0/15` or `2001:2::/48`; a bare address is one host
/// (/32 or /128).
pub fn parse_net(s: &str) -> Result<(IpAddr, u8), String> {
    let (a, len) = match s.split_once('/') {
        Some((a, l)) => match l.parse::<u8>() {
            Ok(l) => (a, Some(l)),
            Err(_) => return Err(format!("bad prefix length in {s:?}")),
        },
        None => (s, None),
    };
    let addr: IpAddr = a
        .parse()
        .map_err(|_| format!("{s:?} is not an IPv4 or IPv6 address or network"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    match len {
        Some(l) if l > max => Err(format!("prefix length in {s:?} is over {max}")),
        l => Ok((addr, l.unwrap_or(max))),
    }
}

/// Parses an address list file: one address or network per line; `#` starts
/// a comment (a whole line or the rest of one); blank lines are skipped.
pub fn parse_list(text: &str) -> Result<Vec<(IpAddr, u8)>, LineError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let entry = raw.split('#').next().unwrap_or("").trim();
        if entry.is_empty() {
            continue;
        }
        out.push(parse_net(entry).map_err(|message| LineError {
            line: i + 1,
            message,
        })?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(v: &[&str]) -> CidrSet {
        let parsed: Vec<_> = v.iter().map(|n| parse_net(n).unwrap()).collect();
        CidrSet::new(&parsed)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn deny_wins_over_allow() {
        let r = AddressRule {
            allow: Some(nets(&["198.18.0.0/15"])),
            deny: nets(&["198.18.0.66"]),
        };
        assert_eq!(r.check(ip("198.18.0.7")), Ok(()));
        assert_eq!(r.check(ip("198.18.0.66")), Err(Refusal::Denied));
        assert_eq!(r.check(ip("203.0.113.1")), Err(Refusal::NotAllowed));
        let deny_only = AddressRule {
            allow: None,
            deny: nets(&["2001:2::/48"]),
        };
        assert_eq!(deny_only.check(ip("2001:2::1")), Err(Refusal::Denied));
        assert_eq!(deny_only.check(ip("::1")), Ok(()));
        // An empty allow list (an empty file) lets nobody in.
        let nobody = AddressRule {
            allow: Some(CidrSet::default()),
            deny: CidrSet::default(),
        };
        assert!(!nobody.is_empty());
        assert_eq!(nobody.check(ip("127.0.0.1")), Err(Refusal::NotAllowed));
        assert!(AddressRule::default().is_empty());
    }

    #[test]
    fn list_files_with_comments_and_a_bad_line() {
        let text = "# office\n198.18.0.0/15   # lab\n\n  2001:2::/48\n127.0.0.1\n";
        let v = parse_list(text).unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(v[2], (ip("127.0.0.1"), 32));
        let e = parse_list("127.0.0.1\n# x\n198.18.0.0/33\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("over 32"), "{e}");
        let e = parse_list("\n\nnot-an-address\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 3: \"not-an-address\" is not an IPv4 or IPv6 address or network"
        );
        assert!(parse_net("::1/x").is_err());
        assert_eq!(parse_net("::1").unwrap(), (ip("::1"), 128));
    }

    #[test]
    fn labels_index_their_place() {
        for (i, r) in Refusal::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "{}", r.label());
        }
    }
}
