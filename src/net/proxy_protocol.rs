//! The PROXY protocol, versions 1 and 2 (HAProxy's `doc/proxy-protocol.txt`):
//! a sans-IO codec. [`parse`] reads a header from the bytes received so far
//! and says "need more", "invalid" or how long the header was and what it
//! said; [`write_v1`] and [`write_v2`] make the header a backend gets (v2 with
//! the ALPN, authority and SSL TLVs). Not for: sockets, deadlines or which
//! sources are trusted (`frontend::accept`), nor sending (`backend`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The 12 bytes a v2 header starts with (§2.2).
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 header, CRLF included (§2.1: 107 characters).
pub const V1_MAX: usize = 107;
/// The longest v2 header accepted here: the 16 fixed bytes and what they
/// announce, bounded well below the format's 65535 (addresses and a few
/// TLVs take a few hundred bytes).
pub const V2_MAX: usize = 16 + 2048;

/// Which version a header was, or is to be written in (`send-proxy = "v1"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Version {
    V1,
    V2,
}

/// What a header said.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Header {
    /// The client (source) and the address it connected to (destination);
    /// None for v1 `UNKNOWN`, a v2 LOCAL command, or an address family this
    /// end cannot use (UNSPEC, UNIX): the connection's own addresses hold then.
    pub addresses: Option<(SocketAddr, SocketAddr)>,
    /// v2: the `PP2_TYPE_ALPN` TLV.
    pub alpn: Option<Vec<u8>>,
    /// v2: the `PP2_TYPE_AUTHORITY` TLV (the TLS server name).
    pub authority: Option<String>,
    /// v2: the `PP2_TYPE_SSL` TLV said the client spoke TLS.
    pub ssl: bool,
}

/// What [`parse`] made of the bytes so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A header may still come whole: read more.
    Incomplete,
    /// Not a PROXY header, or a broken one: close the connection (§2: the
    /// receiver must not guess).
    Invalid(&'static str),
    /// A header `len` bytes long; what follows it is the client's.
    Done { len: usize, header: Header },
}

/// Reads a v1 or v2 header (told apart by their first bytes) at the start of `buf`.
pub fn parse(buf: &[u8]) -> Parsed {
    const V1_START: &[u8] = b"PROXY ";
    if buf.len() < V1_START.len().min(V2_SIGNATURE.len()) {
        if V1_START.starts_with(buf) || V2_SIGNATURE.starts_with(buf) {
            return Parsed::Incomplete;
        }
        return Parsed::Invalid("not a PROXY protocol header");
    }
    if buf.starts_with(V1_START) {
        return parse_v1(buf);
    }
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] == V2_SIGNATURE[..n] {
        return parse_v2(buf);
    }
    Parsed::Invalid("not a PROXY protocol header")
}

/// §2.1: `PROXY TCP4|TCP6|UNKNOWN src dst sport dport\r\n`, one space
/// between fields, at most 107 bytes.
fn parse_v1(buf: &[u8]) -> Parsed {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(cr) = window.iter().position(|&b| b == b'\r') else {
        if buf.len() >= V1_MAX {
            return Parsed::Invalid("v1 header longer than 107 bytes");
        }
        if window.contains(&b'\n') {
            return Parsed::Invalid("v1 header ends without CR");
        }
        return Parsed::Incomplete;
    };
    match window.get(cr + 1) {
        None if buf.len() < V1_MAX => return Parsed::Incomplete,
        Some(b'\n') => {}
        _ => return Parsed::Invalid("v1 header: CR not followed by LF"),
    }
    let len = cr + 2;
    let Ok(line) = std::str::from_utf8(&buf[6..cr]) else {
        return Parsed::Invalid("v1 header is not ASCII");
    };
    let mut fields = line.split(' ');
    let family = fields.next().unwrap_or("");
    if family == "UNKNOWN" {
        // §2.1: the rest of the line up to the CRLF is ignored.
        return Parsed::Done {
            len,
            header: Header::default(),
        };
    }
    let want_v6 = match family {
        "TCP4" => false,
        "TCP6" => true,
        _ => return Parsed::Invalid("v1 header: protocol is not TCP4, TCP6 or UNKNOWN"),
    };
    let (Some(src), Some(dst), Some(sport), Some(dport), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Parsed::Invalid("v1 header: wrong number of fields");
    };
    let ip = |s: &str| -> Option<IpAddr> {
        if want_v6 {
            s.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
        } else {
            s.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
        }
    };
    let (Some(src), Some(dst)) = (ip(src), ip(dst)) else {
        return Parsed::Invalid("v1 header: address does not match its protocol");
    };
    let (Some(sport), Some(dport)) = (port(sport), port(dport)) else {
        return Parsed::Invalid("v1 header: port is not a number from 0 to 65535");
    };
    Parsed::Done {
        len,
        header: Header {
            addresses: Some((
                SocketAddr::new(unmapped(src), sport),
                SocketAddr::new(unmapped(dst), dport),
            )),
            ..Header::default()
        },
    }
}

/// A v1 port: decimal digits only, no leading zero (§2.1), at most 65535.
fn port(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if s.len() > 1 && s.starts_with('0') {
        return None;
    }
    s.parse().ok()
}

/// An IPv4 client behind an IPv6 sender is logged and hashed as itself.
fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

// §2.2 TLV types.
const PP2_TYPE_ALPN: u8 = 0x01;
const PP2_TYPE_AUTHORITY: u8 = 0x02;
const PP2_TYPE_SSL: u8 = 0x20;
const PP2_SUBTYPE_SSL_VERSION: u8 = 0x21;
const PP2_CLIENT_SSL: u8 = 0x01;

/// §2.2: the signature, version 2 and a command (LOCAL or PROXY), the family
/// and transport, the length of what follows, the addresses, then TLVs.
fn parse_v2(buf: &[u8]) -> Parsed {
    if buf.len() < 16 {
        return Parsed::Incomplete;
    }
    let ver_cmd = buf[12];
    if ver_cmd >> 4 != 2 {
        return Parsed::Invalid("v2 header: version is not 2");
    }
    let local = match ver_cmd & 0x0f {
        0 => true,
        1 => false,
        _ => return Parsed::Invalid("v2 header: command is neither LOCAL nor PROXY"),
    };
    let fam = buf[13];
    let rest_len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let len = 16 + rest_len;
    if len > V2_MAX {
        return Parsed::Invalid("v2 header longer than accepted");
    }
    if buf.len() < len {
        return Parsed::Incomplete;
    }
    let body = &buf[16..len];
    let (family, transport) = (fam >> 4, fam & 0x0f);
    if family > 3 || transport > 2 {
        return Parsed::Invalid("v2 header: unknown address family or transport");
    }
    let addr_len = match family {
        1 => 12,
        2 => 36,
        3 => 216,
        _ => 0,
    };
    if body.len() < addr_len {
        return Parsed::Invalid("v2 header: shorter than its addresses");
    }
    let (a, tlvs) = body.split_at(addr_len);
    let be16 = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
    // §2.2: with LOCAL, or an UNSPEC family, the receiver uses the
    // connection's own addresses; so it does for UNIX ones, which a TCP
    // peer cannot have. Only a stream transport is proxied here.
    let addresses = match family {
        _ if local => None,
        1 | 2 if transport != 1 => {
            return Parsed::Invalid("v2 header: transport is not STREAM");
        }
        1 => {
            let src = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            let dst = Ipv4Addr::new(a[4], a[5], a[6], a[7]);
            Some((
                SocketAddr::new(src.into(), be16(&a[8..])),
                SocketAddr::new(dst.into(), be16(&a[10..])),
            ))
        }
        2 => {
            let ip = |b: &[u8]| {
                let mut o = [0u8; 16];
                o.copy_from_slice(&b[..16]);
                unmapped(IpAddr::V6(Ipv6Addr::from(o)))
            };
            Some((
                SocketAddr::new(ip(&a[0..16]), be16(&a[32..])),
                SocketAddr::new(ip(&a[16..32]), be16(&a[34..])),
            ))
        }
        _ => None,
    };
    let mut header = Header {
        addresses,
        ..Header::default()
    };
    if let Err(why) = read_tlvs(tlvs, &mut header) {
        return Parsed::Invalid(why);
    }
    Parsed::Done { len, header }
}

/// §2.2.1-2.2.7: type, 16-bit length, value; unknown types are skipped.
fn read_tlvs(mut tlvs: &[u8], header: &mut Header) -> Result<(), &'static str> {
    while !tlvs.is_empty() {
        if tlvs.len() < 3 {
            return Err("v2 header: truncated TLV");
        }
        let (kind, n) = (tlvs[0], usize::from(u16::from_be_bytes([tlvs[1], tlvs[2]])));
        let Some(value) = tlvs.get(3..3 + n) else {
            return Err("v2 header: TLV longer than the header");
        };
        match kind {
            PP2_TYPE_ALPN => header.alpn = Some(value.to_vec()),
            PP2_TYPE_AUTHORITY => {
                let Ok(s) = std::str::from_utf8(value) else {
                    return Err("v2 header: authority TLV is not UTF-8");
                };
                header.authority = Some(s.to_string());
            }
            PP2_TYPE_SSL => {
                // client (1 byte), verify (4 bytes), then sub-TLVs (§2.2.5).
                if value.len() < 5 {
                    return Err("v2 header: SSL TLV shorter than 5 bytes");
                }
                header.ssl = value[0] & PP2_CLIENT_SSL != 0;
                let mut inner = Header::default();
                read_tlvs(&value[5..], &mut inner)?;
            }
            _ => {}
        }
        tlvs = &tlvs[3 + n..];
    }
    Ok(())
}

/// What a v2 header says of the client's TLS session (§2.2.5, §2.2.1, §2.2.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFacts {
    /// e.g. `TLSv1.3`, as `PP2_SUBTYPE_SSL_VERSION`.
    pub version: Option<&'static str>,
    /// The protocol ALPN chose (`PP2_TYPE_ALPN`).
    pub alpn: Option<Vec<u8>>,
    /// The server name the client asked for (`PP2_TYPE_AUTHORITY`).
    pub server_name: Option<String>,
}

/// Both addresses in one family: an IPv4 one beside an IPv6 one is written
/// as IPv4-mapped IPv6 (§2.1 and §2.2 want one family for both).
fn same_family(src: SocketAddr, dst: SocketAddr) -> (SocketAddr, SocketAddr) {
    let v6 = |a: SocketAddr| match a.ip() {
        IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), a.port()),
        IpAddr::V6(_) => a,
    };
    if src.is_ipv4() == dst.is_ipv4() {
        (src, dst)
    } else {
        (v6(src), v6(dst))
    }
}

/// Appends a v1 header (§2.1) for a client at `src` that connected to `dst`.
pub fn write_v1(src: SocketAddr, dst: SocketAddr, out: &mut Vec<u8>) {
    use std::io::Write as _;
    let (src, dst) = same_family(src, dst);
    let family = if src.is_ipv4() { "TCP4" } else { "TCP6" };
    let _ = write!(
        out,
        "PROXY {family} {} {} {} {}\r\n",
        src.ip(),
        dst.ip(),
        src.port(),
        dst.port()
    );
}

/// Appends a v2 PROXY-command header (§2.2) for a client at `src` that
/// connected to `dst`, with the TLS facts as TLVs if it spoke TLS.
pub fn write_v2(src: SocketAddr, dst: SocketAddr, tls: Option<&TlsFacts>, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&V2_SIGNATURE);
    out.push(0x21); // version 2, PROXY
    let (src, dst) = same_family(src, dst);
    match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            out.push(0x11); // INET, STREAM
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&s.ip().octets());
            out.extend_from_slice(&d.ip().octets());
        }
        (s, d) => {
            out.push(0x21); // INET6, STREAM
            out.extend_from_slice(&[0, 0]);
            let v6 = |a: SocketAddr| match a.ip() {
                IpAddr::V6(v6) => v6.octets(),
                IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            };
            out.extend_from_slice(&v6(s));
            out.extend_from_slice(&v6(d));
        }
    }
    out.extend_from_slice(&src.port().to_be_bytes());
    out.extend_from_slice(&dst.port().to_be_bytes());
    if let Some(tls) = tls {
        let tlv = |out: &mut Vec<u8>, kind: u8, value: &[u8]| {
            // Values here are a name or a protocol id: far below 64 KiB.
            let n = value.len().min(usize::from(u16::MAX));
            out.push(kind);
            out.extend_from_slice(&(n as u16).to_be_bytes());
            out.extend_from_slice(&value[..n]);
        };
        if let Some(alpn) = &tls.alpn {
            tlv(out, PP2_TYPE_ALPN, alpn);
        }
        if let Some(name) = &tls.server_name {
            tlv(out, PP2_TYPE_AUTHORITY, name.as_bytes());
        }
        let mut ssl = vec![PP2_CLIENT_SSL, 0, 0, 0, 0];
        if let Some(v) = tls.version {
            tlv(&mut ssl, PP2_SUBTYPE_SSL_VERSION, v.as_bytes());
        }
        tlv(out, PP2_TYPE_SSL, &ssl);
    }
    let rest = (out.len() - start - 16).min(usize::from(u16::MAX)) as u16;
    out[start + 14..start + 16].copy_from_slice(&rest.to_be_bytes());
}

/// A header in `version` for a client at `src` that connected to `dst`.
pub fn write(
    version: Version,
    src: SocketAddr,
    dst: SocketAddr,
    tls: Option<&TlsFacts>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    match version {
        Version::V1 => write_v1(src, dst, &mut out),
        Version::V2 => write_v2(src, dst, tls, &mut out),
    }
    out
}

/// A header that names no client (v1 `UNKNOWN`, v2 LOCAL): the receiver
/// uses the connection's own addresses (§2.1, §2.2).
pub fn unknown(version: Version) -> Vec<u8> {
    match version {
        Version::V1 => b"PROXY UNKNOWN\r\n".to_vec(),
        Version::V2 => {
            let mut out = V2_SIGNATURE.to_vec();
            out.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
            out
        }
    }
}

/// The client side of a connection, as a header sent to a backend tells it.
#[derive(Debug, Clone)]
pub struct ClientFacts {
    /// The client (the PROXY header's source, if the listener takes one).
    pub peer: SocketAddr,
    /// The address it connected to (the header's destination, if any).
    pub local: SocketAddr,
    /// Its TLS session, on a TLS listener after the handshake.
    pub tls: Option<TlsFacts>,
}

tokio::task_local! {
    /// The client connection whose task this is, for a `send-proxy` pool's
    /// header: the exchange path carries only the peer's address, and a
    /// backend connection is made in the client connection's task. Set by
    /// the client side while the configuration has a `send-proxy` pool.
    pub static CLIENT: std::cell::RefCell<ClientFacts>;
}

/// The header in `version` for the client connection whose task this is;
/// [`unknown`] outside one.
pub fn header_for_this_client(version: Version) -> Vec<u8> {
    CLIENT
        .try_with(|c| {
            let c = c.borrow();
            write(version, c.peer, c.local, c.tls.as_ref())
        })
        .unwrap_or_else(|_| unknown(version))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn done(buf: &[u8]) -> (usize, Header) {
        match parse(buf) {
            Parsed::Done { len, header } => (len, header),
            other => panic!("{other:?} for {buf:?}"),
        }
    }

    /// §2.1: the human-readable header, TCP4 and TCP6, and what follows the
    /// CRLF is the client's.
    #[test]
    fn v1_tcp4_and_tcp6() {
        let buf = b"PROXY TCP4 198.18.0.2 198.18.0.1 56324 443\r\nGET /";
        let (len, h) = done(buf);
        assert_eq!(&buf[len..], b"GET /");
        assert_eq!(
            h.addresses,
            Some((sa("198.18.0.2:56324"), sa("198.18.0.1:443")))
        );
        let (_, h) = done(b"PROXY TCP6 2001:2::2 2001:2::1 4000 80\r\n");
        assert_eq!(
            h.addresses,
            Some((sa("[2001:2::2]:4000"), sa("[2001:2::1]:80")))
        );
    }

    /// §2.1: "UNKNOWN" keeps the connection's own addresses and the rest of
    /// the line is ignored.
    #[test]
    fn v1_unknown_keeps_real_addresses() {
        let (len, h) = done(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\nX");
        assert_eq!(len, 35);
        assert_eq!(h.addresses, None);
        assert_eq!(done(b"PROXY UNKNOWN\r\n").1.addresses, None);
    }

    /// §2.1: the receiver waits for the CRLF up to 107 bytes, then gives up;
    /// single spaces only, address matching its protocol, ports 0-65535
    /// without leading zeroes.
    #[test]
    fn v1_partial_and_invalid() {
        let full = b"PROXY TCP4 198.18.0.2 198.18.0.1 56324 443\r\n";
        for n in 0..full.len() {
            assert_eq!(parse(&full[..n]), Parsed::Incomplete, "{n} bytes");
        }
        let long = [b"PROXY UNKNOWN ".as_slice(), &[b'a'; 100]].concat();
        assert!(matches!(parse(&long), Parsed::Invalid(_)));
        for bad in [
            "PROXY TCP4 198.18.0.2 198.18.0.1 56324 443\n",
            "PROXY TCP4 198.18.0.2  198.18.0.1 56324 443\r\n",
            "PROXY TCP4 2001:2::2 198.18.0.1 56324 443\r\n",
            "PROXY TCP6 198.18.0.2 198.18.0.1 56324 443\r\n",
            "PROXY TCP4 198.18.0.2 198.18.0.1 65536 443\r\n",
            "PROXY TCP4 198.18.0.2 198.18.0.1 080 443\r\n",
            "PROXY TCP4 198.18.0.2 198.18.0.1 80\r\n",
            "PROXY TCP4 198.18.0.2 198.18.0.1 80 443 9\r\n",
            "PROXY UDP4 198.18.0.2 198.18.0.1 80 443\r\n",
            "PROXY TCP4 198.18.0.2 198.18.0.1 80 443\rX",
            "GET / HTTP/1.1\r\n",
        ] {
            assert!(
                matches!(parse(bad.as_bytes()), Parsed::Invalid(_)),
                "{bad:?}"
            );
        }
    }

    /// §2.1 and §2.2: what is written reads back the same, in both families
    /// (a mixed pair as IPv4-mapped IPv6, read back as IPv4).
    #[test]
    fn written_headers_read_back() {
        for (src, dst) in [
            (sa("198.18.0.2:40000"), sa("198.18.0.1:80")),
            (sa("[2001:2::2]:40000"), sa("[2001:2::1]:443")),
        ] {
            for v in [Version::V1, Version::V2] {
                let mut b = write(v, src, dst, None);
                let n = b.len();
                b.extend_from_slice(b"rest");
                let (len, h) = done(&b);
                assert_eq!(len, n);
                assert_eq!(h.addresses, Some((src, dst)), "{v:?}");
            }
        }
        let mixed = write(Version::V1, sa("198.18.0.2:1"), sa("[2001:2::1]:2"), None);
        assert!(mixed.starts_with(b"PROXY TCP6 ::ffff:198.18.0.2 "));
        assert_eq!(
            done(&mixed).1.addresses,
            Some((sa("198.18.0.2:1"), sa("[2001:2::1]:2")))
        );
    }

    /// §2.2: the binary header's fixed part, byte by byte.
    #[test]
    fn v2_layout() {
        let b = write(
            Version::V2,
            sa("198.18.0.2:40000"),
            sa("198.18.0.1:80"),
            None,
        );
        assert_eq!(&b[..12], &V2_SIGNATURE);
        assert_eq!(b[12], 0x21, "version 2, command PROXY");
        assert_eq!(b[13], 0x11, "AF_INET, STREAM");
        assert_eq!(u16::from_be_bytes([b[14], b[15]]), 12);
        assert_eq!(&b[16..20], &[198, 18, 0, 2]);
        assert_eq!(&b[24..26], &40000u16.to_be_bytes());
        assert_eq!(b.len(), 28);
    }

    /// §2.2.1, §2.2.2, §2.2.5: ALPN, authority and the SSL TLV (client
    /// bit set, verify 0, a version sub-TLV) are written and read back.
    #[test]
    fn v2_tls_tlvs() {
        let tls = TlsFacts {
            version: Some("TLSv1.3"),
            alpn: Some(b"h2".to_vec()),
            server_name: Some("a.example".into()),
        };
        let b = write(
            Version::V2,
            sa("198.18.0.2:40000"),
            sa("198.18.0.1:443"),
            Some(&tls),
        );
        let (len, h) = done(&b);
        assert_eq!(len, b.len());
        assert_eq!(h.alpn.as_deref(), Some(&b"h2"[..]));
        assert_eq!(h.authority.as_deref(), Some("a.example"));
        assert!(h.ssl);
        let ssl = b.windows(7).position(|w| w == b"TLSv1.3").unwrap();
        assert_eq!(b[ssl - 3], PP2_SUBTYPE_SSL_VERSION);
    }

    /// §2.1 and §2.2: a connection made outside a client's task names no
    /// client (UNKNOWN, LOCAL); inside one, its facts.
    #[tokio::test]
    async fn header_for_the_task_client() {
        assert_eq!(header_for_this_client(Version::V1), b"PROXY UNKNOWN\r\n");
        assert_eq!(done(&unknown(Version::V2)), (16, Header::default()));
        let facts = ClientFacts {
            peer: sa("198.18.0.9:5000"),
            local: sa("198.18.0.1:443"),
            tls: None,
        };
        let h = CLIENT
            .scope(facts.into(), async { header_for_this_client(Version::V1) })
            .await;
        assert_eq!(h, b"PROXY TCP4 198.18.0.9 198.18.0.1 5000 443\r\n");
    }

    /// §2.2: LOCAL (health checks of the sender) and UNSPEC keep the
    /// connection's own addresses; the length covers TLVs a receiver skips.
    #[test]
    fn v2_local_unspec_and_unknown_tlvs() {
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
        assert_eq!(done(&local), (16, Header::default()));
        let mut b = write(Version::V2, sa("198.18.0.2:1"), sa("198.18.0.1:2"), None);
        b.extend_from_slice(&[0x04, 0x00, 0x02, 0xAA, 0xBB]); // PP2_TYPE_NOOP
        let n = (b.len() - 16) as u16;
        b[14..16].copy_from_slice(&n.to_be_bytes());
        let (len, h) = done(&b);
        assert_eq!(len, b.len());
        assert_eq!(h.addresses.unwrap().0, sa("198.18.0.2:1"));
        let mut unspec = V2_SIGNATURE.to_vec();
        unspec.extend_from_slice(&[0x21, 0x00, 0x00, 0x00]);
        assert_eq!(done(&unspec).1.addresses, None);
    }

    /// §2.2: a header arriving a byte at a time needs more until whole;
    /// wrong version or command, a TLV past the end, or too short for its
    /// family is invalid.
    #[test]
    fn v2_partial_and_invalid() {
        let b = write(
            Version::V2,
            sa("[2001:2::2]:40000"),
            sa("[2001:2::1]:80"),
            None,
        );
        for n in 0..b.len() {
            assert_eq!(parse(&b[..n]), Parsed::Incomplete, "{n} bytes");
        }
        let mut bad = b.clone();
        bad[12] = 0x11;
        assert!(matches!(parse(&bad), Parsed::Invalid(_)), "version 1");
        let mut bad = b.clone();
        bad[12] = 0x22;
        assert!(matches!(parse(&bad), Parsed::Invalid(_)), "command 2");
        let mut bad = b.clone();
        bad[13] = 0x22;
        assert!(matches!(parse(&bad), Parsed::Invalid(_)), "DGRAM");
        let mut bad = b.clone();
        bad.extend_from_slice(&[0x01, 0x00, 0x09, b'h']);
        let n = (bad.len() - 16) as u16;
        bad[14..16].copy_from_slice(&n.to_be_bytes());
        assert!(matches!(parse(&bad), Parsed::Invalid(_)), "TLV past end");
        let mut short = b[..16].to_vec();
        short[14..16].copy_from_slice(&4u16.to_be_bytes());
        short.extend_from_slice(&[0; 4]);
        assert!(matches!(parse(&short), Parsed::Invalid(_)), "short");
        let mut huge = b[..16].to_vec();
        huge[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
        assert!(matches!(parse(&huge), Parsed::Invalid(_)), "over V2_MAX");
    }

    /// Any bytes at all: parse returns, never panics, and a Done length is
    /// within the input (a seeded xorshift stands in for a fuzzer, over
    /// mutations of valid headers and over noise).
    #[test]
    fn parse_never_panics() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let seeds = [
            write(Version::V1, sa("198.18.0.2:1"), sa("198.18.0.1:2"), None),
            write(
                Version::V2,
                sa("[2001:2::2]:1"),
                sa("[2001:2::1]:2"),
                Some(&TlsFacts {
                    version: Some("TLSv1.2"),
                    alpn: Some(b"http/1.1".to_vec()),
                    server_name: Some("b.example".into()),
                }),
            ),
        ];
        for i in 0..20_000 {
            let mut b = seeds[i % 2].clone();
            for _ in 0..(next() % 4) {
                let at = (next() as usize) % b.len();
                b[at] = next() as u8;
            }
            b.truncate((next() as usize) % (b.len() + 1));
            if i % 5 == 0 {
                b = (0..next() % 300).map(|_| next() as u8).collect();
            }
            if let Parsed::Done { len, .. } = parse(&b) {
                assert!(len <= b.len());
            }
        }
    }
}
