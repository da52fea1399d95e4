//! The server name a TLS client asks for, read from its ClientHello without
//! terminating TLS (for passthrough routed by SNI): sans-IO, over the bytes
//! received so far, which may end anywhere in a record, and the ClientHello
//! may span several records (RFC 8446 §5.1). Records: RFC 8446 §5.1;
//! ClientHello: §4.1.2; the server_name extension: RFC 6066 §3.
//! Not for: terminating TLS (`crate::tls`, rustls), or choosing the pool.

/// The most ClientHello bytes (records' payloads) read before giving up:
/// a hello with post-quantum key shares is under 2 KiB; this leaves room.
pub const MAX_HELLO: usize = 16 * 1024;

/// What [`server_name`] made of the bytes so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sni {
    /// The ClientHello is not whole yet: read more.
    Incomplete,
    /// Not a TLS ClientHello, or a broken one.
    Invalid(&'static str),
    /// A whole ClientHello: its host name (lowercase, no trailing dot), if
    /// it sent the extension.
    Found(Option<String>),
}

const CONTENT_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0;
const NAME_TYPE_HOST_NAME: u8 = 0;

/// Reads the host name from the ClientHello at the start of `buf`.
pub fn server_name(buf: &[u8]) -> Sni {
    // §5.1: handshake records, each at most 2^14 bytes of payload; the
    // ClientHello's bytes are the records' payloads joined.
    let mut hello = Vec::new();
    let mut rest = buf;
    loop {
        if rest.len() < 5 {
            if !rest.is_empty() && rest[0] != CONTENT_HANDSHAKE {
                return Sni::Invalid("not a TLS handshake record");
            }
            return Sni::Incomplete;
        }
        if rest[0] != CONTENT_HANDSHAKE {
            return Sni::Invalid("not a TLS handshake record");
        }
        if rest[1] != 3 {
            return Sni::Invalid("not a TLS record version");
        }
        let n = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        if n == 0 || n > 1 << 14 {
            return Sni::Invalid("TLS record length out of range");
        }
        let Some(payload) = rest.get(5..5 + n) else {
            // Take what arrived of this record: the hello may be whole in it.
            hello.extend_from_slice(&rest[5..]);
            return match parse_hello(&hello) {
                Sni::Incomplete if hello.len() >= MAX_HELLO => {
                    Sni::Invalid("ClientHello too large")
                }
                other => other,
            };
        };
        hello.extend_from_slice(payload);
        rest = &rest[5 + n..];
        match parse_hello(&hello) {
            Sni::Incomplete if hello.len() >= MAX_HELLO => {
                return Sni::Invalid("ClientHello too large")
            }
            Sni::Incomplete => continue,
            other => return other,
        }
    }
}

/// A cursor over a ClientHello's bytes; running out means "need more" only
/// if the handshake message's own length says more is coming.
struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = (self.b.get(..n)?, self.b.get(n..)?);
        self.b = tail;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    /// A vector with a `len`-byte length prefix.
    fn vec(&mut self, len: usize) -> Option<&'a [u8]> {
        let n = match len {
            1 => usize::from(self.u8()?),
            _ => usize::from(self.u16()?),
        };
        self.take(n)
    }
}

/// §4: handshake type and 24-bit length, then §4.1.2's ClientHello.
fn parse_hello(hs: &[u8]) -> Sni {
    if hs.is_empty() {
        return Sni::Incomplete;
    }
    if hs[0] != HANDSHAKE_CLIENT_HELLO {
        return Sni::Invalid("first handshake message is not a ClientHello");
    }
    if hs.len() < 4 {
        return Sni::Incomplete;
    }
    let len = (usize::from(hs[1]) << 16) | (usize::from(hs[2]) << 8) | usize::from(hs[3]);
    if len > MAX_HELLO {
        return Sni::Invalid("ClientHello too large");
    }
    let Some(body) = hs.get(4..4 + len) else {
        return Sni::Incomplete;
    };
    match hello_body(body) {
        Some(sni) => sni,
        None => Sni::Invalid("malformed ClientHello"),
    }
}

/// legacy_version, random, legacy_session_id, cipher_suites,
/// legacy_compression_methods, extensions (§4.1.2); None if malformed.
fn hello_body(body: &[u8]) -> Option<Sni> {
    let mut r = Reader { b: body };
    r.take(2 + 32)?;
    let session_id = r.vec(1)?;
    if session_id.len() > 32 {
        return None;
    }
    r.vec(2)?;
    r.vec(1)?;
    if r.b.is_empty() {
        // No extensions (possible before TLS 1.3): no name.
        return Some(Sni::Found(None));
    }
    let mut exts = Reader { b: r.vec(2)? };
    while !exts.b.is_empty() {
        let kind = exts.u16()?;
        let data = exts.vec(2)?;
        if kind == EXT_SERVER_NAME {
            return host_name(data).map(Sni::Found);
        }
    }
    Some(Sni::Found(None))
}

/// RFC 6066 §3: a ServerNameList; the host_name entry (at most one) is
/// ASCII DNS name without a trailing dot; returned in lowercase.
fn host_name(data: &[u8]) -> Option<Option<String>> {
    let mut r = Reader { b: data };
    let mut list = Reader { b: r.vec(2)? };
    while !list.b.is_empty() {
        let kind = list.u8()?;
        let name = list.vec(2)?;
        if kind != NAME_TYPE_HOST_NAME {
            continue;
        }
        if name.is_empty()
            || !name
                .iter()
                .all(|&c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.' || c == b'_')
        {
            return None;
        }
        let s = std::str::from_utf8(name).ok()?;
        return Some(Some(s.trim_end_matches('.').to_ascii_lowercase()));
    }
    Some(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello as rustls sends it (TLS 1.3 and 1.2 offered), with `sni`.
    fn rustls_hello(sni: &str) -> Vec<u8> {
        use std::sync::Arc;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(sni.to_string()).unwrap();
        let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let mut out = Vec::new();
        conn.write_tls(&mut out).unwrap();
        out
    }

    /// RFC 6066 §3 in a real client's ClientHello (§4.1.2): found, lowercase.
    #[test]
    fn reads_the_name_a_real_client_sends() {
        let hello = rustls_hello("A.Example");
        assert_eq!(server_name(&hello), Sni::Found(Some("a.example".into())));
    }

    /// RFC 8446 §5.1: a record may arrive in pieces; until the ClientHello
    /// is whole the answer is "need more", never a guess.
    #[test]
    fn partial_records_need_more() {
        let hello = rustls_hello("b.example");
        for n in 0..hello.len() {
            assert_eq!(server_name(&hello[..n]), Sni::Incomplete, "{n} bytes");
        }
    }

    /// RFC 8446 §5.1: a ClientHello split over several handshake records
    /// (a record boundary anywhere in it) reads the same.
    #[test]
    fn hello_split_over_records() {
        let hello = rustls_hello("c.example");
        let payload = &hello[5..];
        for cut in [1, 40, payload.len() / 2, payload.len() - 1] {
            let mut b = Vec::new();
            for part in [&payload[..cut], &payload[cut..]] {
                b.extend_from_slice(&[22, 3, 1]);
                b.extend_from_slice(&(part.len() as u16).to_be_bytes());
                b.extend_from_slice(part);
            }
            assert_eq!(server_name(&b), Sni::Found(Some("c.example".into())));
        }
    }

    /// A hand-made hello: no extension at all, or extensions without
    /// server_name, is found with no name (RFC 6066 §3: the extension is optional).
    #[test]
    fn no_server_name() {
        let mut body = vec![3, 3];
        body.extend_from_slice(&[0; 32]);
        body.extend_from_slice(&[0, 0, 2, 0x13, 0x01, 1, 0]);
        let wrap = |body: &[u8]| {
            let mut hs = vec![1, 0, (body.len() >> 8) as u8, body.len() as u8];
            hs.extend_from_slice(body);
            let mut rec = vec![22, 3, 1, (hs.len() >> 8) as u8, hs.len() as u8];
            rec.extend_from_slice(&hs);
            rec
        };
        assert_eq!(server_name(&wrap(&body)), Sni::Found(None));
        body.extend_from_slice(&[0, 4, 0, 0x2b, 0, 0]);
        assert_eq!(server_name(&wrap(&body)), Sni::Found(None));
    }

    /// Not TLS (an HTTP request), another record type, a handshake that is
    /// not a ClientHello, or a bad name: invalid.
    #[test]
    fn not_a_client_hello() {
        assert!(matches!(
            server_name(b"GET / HTTP/1.1\r\n"),
            Sni::Invalid(_)
        ));
        assert!(matches!(
            server_name(&[21, 3, 3, 0, 2, 2, 40]),
            Sni::Invalid(_)
        ));
        assert!(matches!(
            server_name(&[22, 3, 3, 0, 4, 2, 0, 0, 0]),
            Sni::Invalid(_)
        ));
        let mut hello = rustls_hello("d.example");
        let at = hello.windows(9).position(|w| w == b"d.example").unwrap();
        hello[at] = b' ';
        assert!(matches!(server_name(&hello), Sni::Invalid(_)));
        let mut huge = vec![22, 3, 1, 0x40, 0x00, 1, 0x01, 0, 0];
        huge.resize(5 + 0x4000, 0);
        assert!(matches!(server_name(&huge), Sni::Invalid(_)));
    }

    /// Any bytes: returns, never panics (mutations of a real hello and noise,
    /// from a seeded xorshift).
    #[test]
    fn never_panics() {
        let seed = rustls_hello("e.example");
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for i in 0..5_000 {
            let mut b = seed.clone();
            for _ in 0..(next() % 6) {
                let at = (next() as usize) % b.len();
                b[at] = next() as u8;
            }
            b.truncate((next() as usize) % (b.len() + 1));
            if i % 4 == 0 {
                b = (0..next() % 600).map(|_| next() as u8).collect();
                if let Some(f) = b.first_mut() {
                    *f = 22;
                }
            }
            let _ = server_name(&b);
        }
    }
}
