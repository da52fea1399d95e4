//! A small DNS message codec (RFC 1035 §4), enough to resolve backend names:
//! it builds an A or AAAA query and reads the answer to it — addresses with
//! their TTLs, the CNAME chain that led to them, the negative-caching TTL of
//! an empty answer (RFC 2308 §5), the truncation flag and the rcode.
//!
//! Sans-IO: bytes in, values out; sockets and timers live in
//! `runtime::worker::resolve`. Not for: a cache, search lists, EDNS, DNSSEC,
//! or any record type a backend address does not need. No input panics it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Record types this codec asks for or reads (RFC 1035 §3.2.2, RFC 3596 §2.1).
pub const TYPE_A: u16 = 1;
pub const TYPE_CNAME: u16 = 5;
pub const TYPE_SOA: u16 = 6;
pub const TYPE_AAAA: u16 = 28;
/// The Internet class (RFC 1035 §3.2.4).
pub const CLASS_IN: u16 = 1;

/// RFC 1035 §4.1.1 rcodes this codec names.
pub const RCODE_NOERROR: u8 = 0;
pub const RCODE_SERVFAIL: u8 = 2;
pub const RCODE_NXDOMAIN: u8 = 3;

/// Most names a CNAME chain may pass through before the answer is refused.
const MAX_CHAIN: usize = 16;
/// Most compression pointers followed while reading one name.
const MAX_POINTERS: usize = 32;
/// A name's most octets on the wire (RFC 1035 §2.3.4).
const MAX_NAME: usize = 255;

/// Which address family a query asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `A` records (IPv4).
    V4,
    /// `AAAA` records (IPv6).
    V6,
}

impl Family {
    /// The query type of the family.
    pub fn qtype(self) -> u16 {
        match self {
            Family::V4 => TYPE_A,
            Family::V6 => TYPE_AAAA,
        }
    }
}

/// Why a message could not be built or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    #[error("not a host name: {0}")]
    Name(String),
    #[error("message ends inside {0}")]
    Short(&'static str),
    #[error("not a response to our query (id or QR bit)")]
    NotOurs,
    #[error("response to another question")]
    Question,
    #[error("unsupported opcode {0}")]
    Opcode(u8),
    #[error("label type {0:#04x} is not a length or a pointer")]
    LabelType(u8),
    #[error("name longer than 255 octets, or too many compression pointers")]
    NameTooLong,
    #[error("{0} record with rdlength {1}")]
    Rdata(&'static str, u16),
    #[error("CNAME chain longer than {MAX_CHAIN} names, or a loop")]
    Chain,
}

/// What a response says about the name asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    /// RFC 1035 §4.1.1 RCODE.
    pub rcode: u8,
    /// TC: the server cut the message short; ask again over TCP.
    pub truncated: bool,
    /// The addresses of the name at the end of the CNAME chain, each with
    /// the least TTL along the chain to it (seconds).
    pub addresses: Vec<(IpAddr, u32)>,
    /// The names the chain passed through after the one asked for.
    pub cnames: Vec<String>,
    /// For an empty answer: how long it may be believed (RFC 2308 §5, the
    /// lesser of the SOA record's TTL and its MINIMUM field).
    pub negative_ttl: Option<u32>,
}

/// Checks a host name as a backend address may give it (RFC 1123 §2.1 host
/// names; a final dot allowed): labels of 1 to 63 letters, digits, `-` or
/// `_`, not starting or ending with `-`, at most 253 characters, and a last
/// label that is not all digits (so a mistyped IPv4 address is not taken
/// for a name).
pub fn check_name(name: &str) -> Result<(), String> {
    let bare = name.strip_suffix('.').unwrap_or(name);
    if bare.is_empty() {
        return Err("empty name".into());
    }
    if bare.len() > 253 {
        return Err(format!("{} characters, more than 253", bare.len()));
    }
    for label in bare.split('.') {
        if label.is_empty() {
            return Err("an empty label (a leading dot, or two in a row)".into());
        }
        if label.len() > 63 {
            return Err(format!("label {label:?} is longer than 63 characters"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!(
                "label {label:?} has a character other than letters, digits, '-' and '_'"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label {label:?} starts or ends with '-'"));
        }
    }
    if bare
        .rsplit('.')
        .next()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("the last label is all digits (an IP address?)".into());
    }
    Ok(())
}

/// A standard query (RFC 1035 §4.1.1: QR=0, OPCODE=0, RD=1) for `name`'s
/// records of `family`, with one question (§4.1.2).
pub fn query(id: u16, name: &str, family: Family) -> Result<Vec<u8>, DnsError> {
    check_name(name).map_err(DnsError::Name)?;
    let bare = name.strip_suffix('.').unwrap_or(name);
    let mut m = Vec::with_capacity(18 + bare.len());
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&[0x01, 0x00]); // RD
    m.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // QD=1, AN=NS=AR=0
    for label in bare.split('.') {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&family.qtype().to_be_bytes());
    m.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(m)
}

/// Reads the response to [`query`]`(id, name, family)`.
pub fn parse(msg: &[u8], id: u16, name: &str, family: Family) -> Result<Answer, DnsError> {
    let mut r = Reader { msg, pos: 0 };
    let hid = r.u16("the header")?;
    let flags = r.u16("the header")?;
    let counts = [
        r.u16("the header")?,
        r.u16("the header")?,
        r.u16("the header")?,
        r.u16("the header")?,
    ];
    if hid != id || flags & 0x8000 == 0 {
        return Err(DnsError::NotOurs);
    }
    let opcode = ((flags >> 11) & 0xf) as u8;
    if opcode != 0 {
        return Err(DnsError::Opcode(opcode));
    }
    let mut answer = Answer {
        rcode: (flags & 0xf) as u8,
        truncated: flags & 0x0200 != 0,
        ..Answer::default()
    };
    let asked = lower(name.strip_suffix('.').unwrap_or(name));
    match counts[0] {
        // A server that could not read the question may leave it out.
        0 if answer.rcode != RCODE_NOERROR || answer.truncated => return Ok(answer),
        1 => {
            let (qname, qtype, qclass) =
                (r.name()?, r.u16("the question")?, r.u16("the question")?);
            if qname != asked || qtype != family.qtype() || qclass != CLASS_IN {
                return Err(DnsError::Question);
            }
        }
        _ => return Err(DnsError::Question),
    }
    // §4.1.3: answer records, then authority records.
    let mut cnames: Vec<(String, String, u32)> = Vec::new();
    let mut found: Vec<(String, IpAddr, u32)> = Vec::new();
    let mut negative = None;
    let records = usize::from(counts[1]) + usize::from(counts[2]);
    for i in 0..records {
        // A truncated message may stop anywhere: keep what came whole.
        let rr = match r.record() {
            Ok(rr) => rr,
            Err(DnsError::Short(_)) if answer.truncated => break,
            Err(e) => return Err(e),
        };
        if rr.class != CLASS_IN {
            continue;
        }
        let in_answer = i < usize::from(counts[1]);
        match (rr.rtype, in_answer) {
            (TYPE_A, true) => {
                let b: [u8; 4] = rr
                    .data
                    .try_into()
                    .map_err(|_| DnsError::Rdata("A", rr.len))?;
                found.push((rr.owner, IpAddr::V4(Ipv4Addr::from(b)), rr.ttl));
            }
            (TYPE_AAAA, true) => {
                let b: [u8; 16] = rr
                    .data
                    .try_into()
                    .map_err(|_| DnsError::Rdata("AAAA", rr.len))?;
                found.push((rr.owner, IpAddr::V6(Ipv6Addr::from(b)), rr.ttl));
            }
            (TYPE_CNAME, true) => {
                let mut at = Reader {
                    msg,
                    pos: rr.data_at,
                };
                let target = at.name()?;
                if at.pos != rr.data_at + rr.data.len() {
                    return Err(DnsError::Rdata("CNAME", rr.len));
                }
                cnames.push((rr.owner, target, rr.ttl));
            }
            (TYPE_SOA, false) => {
                let mut at = Reader {
                    msg,
                    pos: rr.data_at,
                };
                at.name()?;
                at.name()?;
                for _ in 0..4 {
                    at.u32("SOA")?;
                }
                let minimum = at.u32("SOA")?;
                if at.pos != rr.data_at + rr.data.len() {
                    return Err(DnsError::Rdata("SOA", rr.len));
                }
                negative = Some(rr.ttl.min(minimum));
            }
            _ => {}
        }
    }
    // §3.6.2: follow the aliases from the name asked for to the canonical one.
    let mut cur = asked;
    let mut chain_ttl = u32::MAX;
    while let Some((_, target, ttl)) = cnames.iter().find(|(owner, _, _)| *owner == cur) {
        if answer.cnames.len() == MAX_CHAIN || answer.cnames.contains(target) {
            return Err(DnsError::Chain);
        }
        chain_ttl = chain_ttl.min(*ttl);
        answer.cnames.push(target.clone());
        cur = target.clone();
    }
    for (owner, ip, ttl) in found {
        let right_family = ip.is_ipv4() == (family == Family::V4);
        if owner == cur && right_family && !answer.addresses.iter().any(|(a, _)| *a == ip) {
            answer.addresses.push((ip, ttl.min(chain_ttl)));
        }
    }
    if answer.addresses.is_empty() {
        answer.negative_ttl = negative;
    }
    Ok(answer)
}

/// Lower case: names compare without regard to case (RFC 1035 §2.3.3).
fn lower(s: &str) -> String {
    s.to_ascii_lowercase()
}

struct Record<'a> {
    owner: String,
    rtype: u16,
    class: u16,
    ttl: u32,
    len: u16,
    data: &'a [u8],
    data_at: usize,
}

struct Reader<'a> {
    msg: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DnsError> {
        let end = self.pos.checked_add(n).ok_or(DnsError::Short(what))?;
        let b = self.msg.get(self.pos..end).ok_or(DnsError::Short(what))?;
        self.pos = end;
        Ok(b)
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, DnsError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DnsError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A resource record (RFC 1035 §4.1.3).
    fn record(&mut self) -> Result<Record<'a>, DnsError> {
        let owner = self.name()?;
        let rtype = self.u16("a record")?;
        let class = self.u16("a record")?;
        // RFC 2181 §8: a TTL with the top bit set is taken as zero.
        let ttl = Some(self.u32("a record")?)
            .filter(|t| *t < 1 << 31)
            .unwrap_or(0);
        let len = self.u16("a record")?;
        let data_at = self.pos;
        let data = self.take(usize::from(len), "a record's data")?;
        Ok(Record {
            owner,
            rtype,
            class,
            ttl,
            len,
            data,
            data_at,
        })
    }

    /// A domain name (RFC 1035 §3.1), with message compression (§4.1.4):
    /// lower case, labels joined by dots, no final dot. At most
    /// `MAX_POINTERS` pointers are followed and the name may not pass 255
    /// octets, so a pointer loop ends in an error.
    fn name(&mut self) -> Result<String, DnsError> {
        let mut out = String::new();
        let mut wire_len = 1;
        let mut pos = self.pos;
        let mut jumped = false;
        let mut pointers = 0;
        loop {
            let len = *self.msg.get(pos).ok_or(DnsError::Short("a name"))?;
            match len & 0xc0 {
                0x00 if len == 0 => {
                    if !jumped {
                        self.pos = pos + 1;
                    }
                    return Ok(out);
                }
                0x00 => {
                    let label = self
                        .msg
                        .get(pos + 1..pos + 1 + usize::from(len))
                        .ok_or(DnsError::Short("a name"))?;
                    wire_len += 1 + label.len();
                    if wire_len > MAX_NAME {
                        return Err(DnsError::NameTooLong);
                    }
                    if !out.is_empty() {
                        out.push('.');
                    }
                    // Octets outside printable ASCII are kept visible, escaped.
                    for &b in label {
                        match b {
                            b'!'..=b'~' if b != b'.' && b != b'\\' => {
                                out.push(b.to_ascii_lowercase() as char)
                            }
                            _ => out.push_str(&format!("\\{b:03}")),
                        }
                    }
                    pos += 1 + label.len();
                }
                0xc0 => {
                    let low = *self.msg.get(pos + 1).ok_or(DnsError::Short("a pointer"))?;
                    pointers += 1;
                    if pointers > MAX_POINTERS {
                        return Err(DnsError::NameTooLong);
                    }
                    if !jumped {
                        self.pos = pos + 2;
                        jumped = true;
                    }
                    pos = usize::from(u16::from_be_bytes([len & 0x3f, low]));
                }
                _ => return Err(DnsError::LabelType(len)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A response as a server would build it: header, the question of
    /// `query`, then the given records (already encoded).
    fn response(q: &[u8], flags: u16, an: u16, ns: u16, records: &[u8]) -> Vec<u8> {
        let mut m = q.to_vec();
        m[2..4].copy_from_slice(&flags.to_be_bytes());
        m[6..8].copy_from_slice(&an.to_be_bytes());
        m[8..10].copy_from_slice(&ns.to_be_bytes());
        m.extend_from_slice(records);
        m
    }

    /// One record: owner (wire form), type, TTL, rdata.
    fn rr(owner: &[u8], rtype: u16, ttl: u32, data: &[u8]) -> Vec<u8> {
        let mut v = owner.to_vec();
        v.extend_from_slice(&rtype.to_be_bytes());
        v.extend_from_slice(&CLASS_IN.to_be_bytes());
        v.extend_from_slice(&ttl.to_be_bytes());
        v.extend_from_slice(&(data.len() as u16).to_be_bytes());
        v.extend_from_slice(data);
        v
    }

    /// A pointer to the question's name (offset 12, RFC 1035 §4.1.4).
    const QNAME: &[u8] = &[0xc0, 12];
    const OK: u16 = 0x8180; // QR, RD, RA, NOERROR

    /// RFC 1035 §4.1.1 and §4.1.2: the header asks one recursive standard
    /// query; the question is the name's labels, QTYPE and QCLASS IN.
    #[test]
    fn a_query_is_a_header_and_one_question() {
        let q = query(0xbeef, "Web3.lab.", Family::V6).unwrap();
        assert_eq!(
            q,
            [
                0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 4, b'W', b'e', b'b', b'3', 3, b'l',
                b'a', b'b', 0, 0, 28, 0, 1
            ]
        );
        assert!(query(1, "a..b", Family::V4).is_err());
        assert!(query(1, &format!("{}.lab", "x".repeat(64)), Family::V4).is_err());
    }

    /// RFC 1035 §2.3.1 and RFC 1123 §2.1: what a backend's host name may be.
    #[test]
    fn host_names_are_checked() {
        for ok in [
            "web3.lab",
            "web3.lab.",
            "a-b.c_d.example",
            "localhost",
            "3com.net",
        ] {
            assert_eq!(check_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            ".",
            "-a.lab",
            "a-.lab",
            "a b.lab",
            "198.18.0.300",
            "a..lab",
            "é.lab",
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert!(check_name(&format!("{}ab", "a.".repeat(126))).is_err());
    }

    /// RFC 1035 §4.1.3 answer records, with compressed owner names (§4.1.4);
    /// a record of the other family or another owner is not an address of the name.
    #[test]
    fn addresses_and_ttls_are_read() {
        let q = query(7, "web3.lab", Family::V4).unwrap();
        let mut recs = rr(QNAME, TYPE_A, 30, &[198, 18, 0, 13]);
        recs.extend(rr(QNAME, TYPE_A, 10, &[198, 18, 0, 14]));
        recs.extend(rr(b"\x05other\x00", TYPE_A, 10, &[198, 18, 0, 99]));
        recs.extend(rr(
            QNAME,
            TYPE_AAAA,
            10,
            &[0x20, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        ));
        let a = parse(&response(&q, OK, 4, 0, &recs), 7, "WEB3.lab", Family::V4).unwrap();
        assert_eq!(
            a.addresses,
            [
                ("198.18.0.13".parse().unwrap(), 30),
                ("198.18.0.14".parse().unwrap(), 10)
            ]
        );
        assert_eq!((a.rcode, a.truncated, a.negative_ttl), (0, false, None));
    }

    /// RFC 1035 §3.6.2: an alias is followed to its canonical name, whose
    /// records answer; the least TTL along the chain bounds each address's.
    #[test]
    fn cname_chains_are_followed() {
        let q = query(9, "www.lab", Family::V4).unwrap();
        // www.lab → web.lab (at offset 12 + 13 + 10 + 2 + ...) → web3.lab
        let mut recs = rr(QNAME, TYPE_CNAME, 5, b"\x03web\x03lab\x00");
        let web_at = (q.len() + 12) as u8; // the CNAME's rdata
        recs.extend(rr(&[0xc0, web_at], TYPE_CNAME, 60, b"\x04web3\xc0\x10"));
        recs.extend(rr(b"\x04web3\x03lab\x00", TYPE_A, 60, &[198, 18, 0, 13]));
        let a = parse(&response(&q, OK, 3, 0, &recs), 9, "www.lab", Family::V4).unwrap();
        assert_eq!(a.cnames, ["web.lab", "web3.lab"]);
        assert_eq!(a.addresses, [("198.18.0.13".parse().unwrap(), 5)]);
        // An alias pointing back at the name asked for is a loop.
        let looped = rr(QNAME, TYPE_CNAME, 5, &[0xc0, 12]);
        assert_eq!(
            parse(&response(&q, OK, 1, 0, &looped), 9, "www.lab", Family::V4),
            Err(DnsError::Chain)
        );
    }

    /// RFC 1035 §4.1.4: a pointer that leads back to itself ends in an error,
    /// not a loop; label types 01 and 10 are refused.
    #[test]
    fn compression_loops_and_reserved_labels_are_errors() {
        let q = query(3, "a.lab", Family::V4).unwrap();
        let at = q.len() as u8;
        let self_pointer = rr(&[0xc0, at], TYPE_A, 1, &[1, 2, 3, 4]);
        assert_eq!(
            parse(
                &response(&q, OK, 1, 0, &self_pointer),
                3,
                "a.lab",
                Family::V4
            ),
            Err(DnsError::NameTooLong)
        );
        let reserved = rr(&[0x40, 0], TYPE_A, 1, &[1, 2, 3, 4]);
        assert_eq!(
            parse(&response(&q, OK, 1, 0, &reserved), 3, "a.lab", Family::V4),
            Err(DnsError::LabelType(0x40))
        );
    }

    /// RFC 1035 §4.1.1: the ID and QR bit tie a response to its query; the
    /// question must be ours; RCODE and TC are reported; RFC 2308 §5: an
    /// NXDOMAIN's SOA gives how long the empty answer holds.
    #[test]
    fn header_fields_and_negative_answers() {
        let q = query(5, "gone.lab", Family::V4).unwrap();
        let ok = response(&q, OK, 0, 0, &[]);
        assert_eq!(
            parse(&ok, 6, "gone.lab", Family::V4),
            Err(DnsError::NotOurs)
        );
        assert_eq!(parse(&q, 5, "gone.lab", Family::V4), Err(DnsError::NotOurs));
        assert_eq!(
            parse(&ok, 5, "other.lab", Family::V4),
            Err(DnsError::Question)
        );
        assert_eq!(
            parse(&ok, 5, "gone.lab", Family::V6),
            Err(DnsError::Question)
        );
        let soa_data = b"\x02ns\xc0\x11\x05admin\xc0\x11\x00\x00\x00\x01\x00\x00\x0e\x10\x00\x00\x0e\x10\x00\x09\x3a\x80\x00\x00\x00\x0f";
        let soa = rr(b"\x03lab\x00", TYPE_SOA, 600, soa_data);
        let nx = parse(&response(&q, 0x8183, 0, 1, &soa), 5, "gone.lab", Family::V4).unwrap();
        assert_eq!((nx.rcode, nx.negative_ttl), (RCODE_NXDOMAIN, Some(15)));
        let tc = parse(
            &response(&q, OK | 0x0200, 1, 0, &[0xc0]),
            5,
            "gone.lab",
            Family::V4,
        )
        .unwrap();
        assert!(tc.truncated && tc.addresses.is_empty());
        let fail = parse(&response(&q, 0x8182, 0, 0, &[]), 5, "gone.lab", Family::V4).unwrap();
        assert_eq!(fail.rcode, RCODE_SERVFAIL);
        // RFC 2181 §8: a TTL with its top bit set counts as 0.
        let big = rr(QNAME, TYPE_A, 0x8000_0000, &[1, 2, 3, 4]);
        let a = parse(&response(&q, OK, 1, 0, &big), 5, "gone.lab", Family::V4).unwrap();
        assert_eq!(a.addresses[0].1, 0);
        // An A record of 5 octets is malformed (RFC 1035 §3.4.1).
        let bad = rr(QNAME, TYPE_A, 1, &[1, 2, 3, 4, 5]);
        assert_eq!(
            parse(&response(&q, OK, 1, 0, &bad), 5, "gone.lab", Family::V4),
            Err(DnsError::Rdata("A", 5))
        );
    }

    /// No input panics the reader: every prefix and many mutations of a
    /// real answer, and random bytes, give an answer or an error.
    #[test]
    fn never_panics_on_any_input() {
        let q = query(11, "www.lab", Family::V4).unwrap();
        let mut recs = rr(QNAME, TYPE_CNAME, 5, b"\x04web3\xc0\x10");
        recs.extend(rr(b"\x04web3\x03lab\x00", TYPE_A, 60, &[198, 18, 0, 13]));
        let good = response(&q, OK, 2, 0, &recs);
        assert_eq!(
            parse(&good, 11, "www.lab", Family::V4)
                .unwrap()
                .addresses
                .len(),
            1
        );
        for n in 0..good.len() {
            let _ = parse(&good[..n], 11, "www.lab", Family::V4);
        }
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let mut m = good.clone();
            for _ in 0..1 + next() % 4 {
                let i = (next() as usize) % m.len();
                m[i] = next() as u8;
            }
            let _ = parse(&m, 11, "www.lab", Family::V4);
            let len = (next() % 300) as usize;
            let noise: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let _ = parse(
                &noise,
                u16::from_be_bytes([
                    noise.first().copied().unwrap_or(0),
                    noise.get(1).copied().unwrap_or(0),
                ]),
                "www.lab",
                Family::V4,
            );
        }
    }
}
