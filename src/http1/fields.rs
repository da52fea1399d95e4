//! Header-field rules of HTTP/1 that both sides apply (RFC 9110 §7.6, RFC 9112
//! §3.2): Connection tokens, hop-by-hop names, Host validation, idempotent
//! methods, and the client address as X-Forwarded-For text. Sans-IO and
//! allocation-free: called for every request and every answer.

/// The hop-by-hop fields every message loses on the way through (RFC 9110
/// §7.6.1), lower case; every name is 2, 7, 10, 16 or 17 bytes long.
#[cfg(test)]
const HOP_BY_HOP: [&[u8]; 7] = [
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"te",
    b"trailer",
    b"transfer-encoding",
    b"upgrade",
];

/// Whether `name` is `lower` (written in lower case) in any case. Four or
/// eight bytes at a time: a byte matches when it equals `lower`'s with the
/// case bit (0x20) set where `lower` has a letter, so only letters may
/// differ, and only in case. Inlined with a literal `lower`, its words and
/// masks are constants.
#[inline(always)]
pub fn is_name(name: &[u8], lower: &[u8]) -> bool {
    let n = lower.len();
    if name.len() != n {
        return false;
    }
    fn mask_of(lower: &[u8]) -> u64 {
        lower.iter().enumerate().fold(0, |m, (i, b)| {
            m | (u64::from(b.is_ascii_lowercase()) * 0x20) << (8 * i)
        })
    }
    let w8 = |s: &[u8], at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&s[at..at + 8]);
        u64::from_le_bytes(b)
    };
    let w4 = |s: &[u8], at: usize| {
        let mut b = [0u8; 4];
        b.copy_from_slice(&s[at..at + 4]);
        u64::from(u32::from_le_bytes(b))
    };
    let eq8 = |at: usize| w8(name, at) | mask_of(&lower[at..at + 8]) == w8(lower, at);
    let eq4 = |at: usize| w4(name, at) | mask_of(&lower[at..at + 4]) == w4(lower, at);
    match n {
        0..4 => name.eq_ignore_ascii_case(lower),
        4..8 => eq4(0) && eq4(n - 4),
        8..=16 => eq8(0) && eq8(n - 8),
        17..=24 => eq8(0) && eq8(8) && eq8(n - 8),
        _ => name.eq_ignore_ascii_case(lower),
    }
}

/// Whether a header name (in any case) is hop-by-hop (RFC 9110 §7.6.1):
/// Connection, Keep-Alive, Proxy-Connection, TE, Trailer, Transfer-Encoding,
/// Upgrade.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    match name.len() {
        2 => is_name(name, b"te"),
        7 => is_name(name, b"trailer") || is_name(name, b"upgrade"),
        10 => is_name(name, b"connection") || is_name(name, b"keep-alive"),
        16 => is_name(name, b"proxy-connection"),
        17 => is_name(name, b"transfer-encoding"),
        _ => false,
    }
}

/// Methods a request may be sent again with (RFC 9110 §9.2.2), when its
/// connection failed before any answer byte.
pub fn is_idempotent(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
    )
}

/// One token of a Connection header value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionToken<'a> {
    Close,
    KeepAlive,
    /// A header name: that header is hop-by-hop too.
    Name(&'a [u8]),
}

/// The tokens of a Connection header value (RFC 9110 §7.6.1), any case,
/// empty ones skipped.
pub fn connection_tokens(value: &[u8]) -> impl Iterator<Item = ConnectionToken<'_>> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
        .map(|t| {
            if t.eq_ignore_ascii_case(b"close") {
                ConnectionToken::Close
            } else if t.eq_ignore_ascii_case(b"keep-alive") {
                ConnectionToken::KeepAlive
            } else {
                ConnectionToken::Name(t)
            }
        })
}

/// The bytes of a reg-name (RFC 3986 §3.2.2: unreserved, pct-encoded's `%`,
/// sub-delims), one entry per byte value: a table, as every request's Host is
/// checked.
static REG_NAME: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'%'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
            );
        b += 1;
    }
    t
};

/// A Connection value that is one `close` or `keep-alive` and nothing else
/// (as most are), recognised without splitting it; None for any other.
pub fn sole_connection_token(value: &[u8]) -> Option<ConnectionToken<'static>> {
    match value.len() {
        10 if is_name(value, b"keep-alive") => Some(ConnectionToken::KeepAlive),
        5 if is_name(value, b"close") => Some(ConnectionToken::Close),
        _ => None,
    }
}

/// RFC 9112 §3.2: a server MUST answer 400 to an HTTP/1.1 request without a
/// Host header, and to any request with more than one Host line or a Host value
/// that is not `uri-host [ ":" port ]` (RFC 3986 §3.2.2; empty is allowed).
pub fn check_host<'a>(
    mut values: impl Iterator<Item = &'a [u8]>,
    http10: bool,
) -> Result<(), &'static str> {
    let Some(value) = values.next() else {
        return if http10 {
            Ok(())
        } else {
            Err("missing Host header")
        };
    };
    if values.next().is_some() {
        return Err("more than one Host header");
    }
    let value = value.trim_ascii();
    let port = match value.strip_prefix(b"[") {
        Some(rest) => {
            let Some(end) = rest.iter().position(|&b| b == b']') else {
                return Err("invalid Host header");
            };
            let literal = &rest[..end];
            if literal.is_empty()
                || !literal
                    .iter()
                    .all(|&b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'))
            {
                return Err("invalid Host header");
            }
            match &rest[end + 1..] {
                [] => None,
                [b':', port @ ..] => Some(port),
                _ => return Err("invalid Host header"),
            }
        }
        None => {
            // One pass: the reg-name's bytes up to the first colon, then the port.
            let mut end = value.len();
            for (i, &b) in value.iter().enumerate() {
                if b == b':' {
                    end = i;
                    break;
                }
                if !REG_NAME[usize::from(b)] {
                    return Err("invalid Host header");
                }
            }
            value.get(end + 1..)
        }
    };
    if !port.is_none_or(|p| p.iter().all(u8::is_ascii_digit)) {
        return Err("invalid Host header");
    }
    Ok(())
}

/// The value of the first `name` field (lower case) in a written head (a
/// start line, `name: value` lines, the blank line), trimmed.
pub fn head_field<'a>(head: &'a [u8], name: &'a str) -> Option<&'a [u8]> {
    head_fields(head, name).next()
}

/// Every `name` field's value (lower case `name`) in a written head, trimmed.
pub fn head_fields<'a>(head: &'a [u8], name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
    head.split(|&b| b == b'\n').skip(1).filter_map(move |line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|&b| b == b':')?;
        line[..colon]
            .eq_ignore_ascii_case(name.as_bytes())
            .then(|| line[colon + 1..].trim_ascii())
    })
}

/// The value of cookie `name` among a head's Cookie fields (RFC 6265 §5.4:
/// `name=value` pairs separated by `; `), if the client sent it.
pub fn cookie<'a>(head: &'a [u8], name: &str) -> Option<&'a [u8]> {
    head_fields(head, "cookie").find_map(|v| {
        v.split(|&b| b == b';').find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|&b| b == b'=')?;
            (pair[..eq].trim_ascii() == name.as_bytes()).then(|| pair[eq + 1..].trim_ascii())
        })
    })
}

/// Each byte value in decimal (its digits, how many): an IPv4 address is
/// written from this table, four lookups.
static DECIMAL: [([u8; 3], u8); 256] = {
    let mut t = [([0u8; 3], 0u8); 256];
    let mut v = 0;
    while v < 256 {
        let b = v as u8;
        t[v] = if b >= 100 {
            ([b'0' + b / 100, b'0' + b / 10 % 10, b'0' + b % 10], 3)
        } else if b >= 10 {
            ([b'0' + b / 10, b'0' + b % 10, 0], 2)
        } else {
            ([b'0' + b, 0, 0], 1)
        };
        v += 1;
    }
    t
};

/// An address as text, written without the formatting machinery: the
/// X-Forwarded-For value is built for every request.
pub struct IpText {
    buf: [u8; 48],
    len: usize,
}

impl Default for IpText {
    fn default() -> Self {
        IpText {
            buf: [0; 48],
            len: 0,
        }
    }
}

impl IpText {
    pub fn write(&mut self, ip: std::net::IpAddr) {
        match ip {
            std::net::IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        self.push(b'.');
                    }
                    // Three bytes copied whatever the length (no call to
                    // memcpy; at most 15 of the 48 are ever used).
                    let (digits, n) = DECIMAL[usize::from(octet)];
                    self.buf[self.len..self.len + 3].copy_from_slice(&digits);
                    self.len += usize::from(n);
                }
            }
            std::net::IpAddr::V6(v6) => {
                use std::io::Write;
                let mut cur = std::io::Cursor::new(&mut self.buf[..]);
                // 45 bytes at most ("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255").
                let _ = write!(cur, "{v6}");
                self.len = cur.position() as usize;
            }
        }
    }
    fn push(&mut self, b: u8) {
        self.buf[self.len] = b;
        self.len += 1;
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// The lines of a received head that are already in the `name: value\r\n`
/// form they would be written in, copied to the head being written as runs
/// of bytes: one copy per run of such lines instead of four per line. Shared
/// by the request's writer and the relayed answer's.
pub(crate) struct LineRuns(std::ops::Range<usize>);

impl LineRuns {
    /// Starting with `first` of `raw` (a start line kept as it is), or `0..0`.
    #[inline]
    pub fn starting(first: std::ops::Range<usize>) -> Self {
        LineRuns(first)
    }

    /// Takes the field at these offsets of `raw` (name `ns..ne`, value
    /// `vs..ve`) into the current run if its line is as it would be written;
    /// false if not (then [`Self::flush`] and write it).
    #[inline]
    pub fn take(
        &mut self,
        out: &mut Vec<u8>,
        raw: &[u8],
        name: (usize, usize),
        value: (usize, usize),
    ) -> bool {
        let ((ns, ne), (vs, ve)) = (name, value);
        if vs != ne + 2 || raw.get(ne..vs) != Some(b": ") || raw.get(ve..ve + 2) != Some(b"\r\n") {
            return false;
        }
        if self.0.end == ns && !self.0.is_empty() {
            self.0.end = ve + 2;
        } else {
            self.flush(out, raw);
            self.0 = ns..ve + 2;
        }
        true
    }

    /// Copies the current run.
    #[inline]
    pub fn flush(&mut self, out: &mut Vec<u8>, raw: &[u8]) {
        out.extend_from_slice(&raw[std::mem::replace(&mut self.0, 0..0)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_header_tokens() {
        use ConnectionToken::*;
        let tokens: Vec<_> = connection_tokens(b" Keep-Alive, ,x-Hop ,CLOSE,").collect();
        assert_eq!(tokens, [KeepAlive, Name(b"x-Hop"), Close]);
        assert_eq!(connection_tokens(b"").count(), 0);
        assert_eq!(sole_connection_token(b"Keep-Alive"), Some(KeepAlive));
        assert_eq!(sole_connection_token(b"CLOSE"), Some(Close));
        assert_eq!(sole_connection_token(b"close, x"), None);
    }

    #[test]
    fn names_match_in_any_case_and_nothing_else() {
        let names: [&[u8]; 8] = [
            b"te",
            b"host",
            b"expect",
            b"connection",
            b"content-length",
            b"x-forwarded-for",
            b"transfer-encoding",
            b"a-name-of-twenty-four-b",
        ];
        let mut next = crate::test_util::xorshift(0x9e37_79b9_7f4a_7c15);
        for lower in names {
            assert!(is_name(lower, lower));
            assert!(is_name(&lower.to_ascii_uppercase(), lower));
            // Any one byte changed: equal only if it is the same letter in the other case.
            for i in 0..lower.len() {
                for b in 0..=255u8 {
                    let mut other = lower.to_vec();
                    other[i] = b;
                    assert_eq!(
                        is_name(&other, lower),
                        other.eq_ignore_ascii_case(lower),
                        "{:?} {:?}",
                        other,
                        lower
                    );
                }
            }
            for _ in 0..200 {
                let other: Vec<u8> = (0..lower.len()).map(|_| next(256) as u8).collect();
                assert_eq!(is_name(&other, lower), other.eq_ignore_ascii_case(lower));
            }
            assert!(!is_name(&lower[1..], lower));
        }
    }

    #[test]
    fn hop_by_hop_name_lengths_are_the_ones_checked() {
        for name in HOP_BY_HOP {
            assert!(
                matches!(name.len(), 2 | 7 | 10 | 16 | 17),
                "{name:?} would be skipped"
            );
            assert!(is_hop_by_hop(&name.to_ascii_uppercase()));
        }
        assert!(!is_hop_by_hop(b"content-length"));
    }

    #[test]
    fn addresses_are_written_like_display() {
        let cases = [
            "0.0.0.0",
            "9.10.99.100",
            "198.18.0.2",
            "255.255.255.255",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:198.18.0.2",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ];
        for text in cases {
            let ip: std::net::IpAddr = text.parse().unwrap();
            let mut t = IpText::default();
            t.write(ip);
            assert_eq!(t.as_bytes(), ip.to_string().as_bytes(), "{text}");
        }
        for n in [0u32, 1, 9, 10, 99, 100, 199, 200, 255, 0x0a0b0c0d, u32::MAX] {
            let ip = std::net::IpAddr::V4(n.into());
            let mut t = IpText::default();
            t.write(ip);
            assert_eq!(t.as_bytes(), ip.to_string().as_bytes());
        }
    }

    #[test]
    fn idempotency() {
        assert!(is_idempotent("GET") && is_idempotent("PUT") && is_idempotent("DELETE"));
        assert!(!is_idempotent("POST") && !is_idempotent("PATCH") && !is_idempotent("get"));
    }

    #[test]
    fn fields_and_cookies_of_a_written_head() {
        let head = b"GET / HTTP/1.1\r\nHost: h\r\nX-User:  bob \r\nCookie: a=1; SRV=web2\r\ncookie: b=2\r\n\r\n";
        assert_eq!(head_field(head, "x-user"), Some(&b"bob"[..]));
        assert_eq!(head_field(head, "x-none"), None);
        assert_eq!(cookie(head, "SRV"), Some(&b"web2"[..]));
        assert_eq!(cookie(head, "b"), Some(&b"2"[..]));
        // RFC 6265 §4.2.2: cookie names are case-sensitive.
        assert_eq!(cookie(head, "srv"), None);
        assert_eq!(cookie(b"GET / HTTP/1.1\r\n\r\n", "a"), None);
    }
}
