//! What floatlb reads from a certificate's DER (RFC 5280 §4.1): a leaf's
//! notAfter and subjectAltName DNS names, a client certificate's subject
//! (RFC 4514 text), and what an OCSP request names (serial, issuer, issuer's
//! key, the AIA responder). A minimal, bounds-checked DER walk; anything
//! unexpected is `None`, never a panic. DER writing helpers for OCSP requests.

pub struct LeafInfo {
    pub not_before: i64,
    pub not_after: i64,
    pub dns_names: Vec<String>,
}

/// One DER element: (tag, contents, rest).
pub(crate) fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |a, &b| (a << 8) | b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
/// id-ce-subjectAltName, 2.5.29.17.
const SAN_OID: &[u8] = &[0x55, 0x1d, 0x11];

pub fn leaf_info(cert: &[u8]) -> Option<LeafInfo> {
    let (SEQUENCE, cert, _) = element(cert)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = element(cert)? else {
        return None;
    };
    let mut rest = tbs;
    // version [0] EXPLICIT, optional.
    if rest.first() == Some(&0xa0) {
        rest = element(rest)?.2;
    }
    // serialNumber, signature, issuer.
    for _ in 0..3 {
        rest = element(rest)?.2;
    }
    let (SEQUENCE, validity, after_validity) = element(rest)? else {
        return None;
    };
    let (tag, not_before, validity) = element(validity)?;
    let not_before = parse_time(tag, not_before)?;
    let (tag, not_after, _) = element(validity)?;
    let not_after = parse_time(tag, not_after)?;
    // subject, subjectPublicKeyInfo, then optional [1], [2], [3] extensions.
    let mut rest = element(element(after_validity)?.2)?.2;
    let mut dns_names = Vec::new();
    while !rest.is_empty() {
        let (tag, body, next) = element(rest)?;
        rest = next;
        if tag != 0xa3 {
            continue;
        }
        let (SEQUENCE, mut exts, _) = element(body)? else {
            return None;
        };
        while !exts.is_empty() {
            let (_, ext, next) = element(exts)?;
            exts = next;
            let (_, oid, mut fields) = element(ext)?;
            if oid != SAN_OID {
                continue;
            }
            // critical BOOLEAN DEFAULT FALSE, then the OCTET STRING.
            let (mut tag, mut value, after) = element(fields)?;
            if tag == 0x01 {
                fields = after;
                (tag, value, _) = element(fields)?;
            }
            if tag != 0x04 {
                return None;
            }
            let (SEQUENCE, mut names, _) = element(value)? else {
                return None;
            };
            while !names.is_empty() {
                let (tag, name, next) = element(names)?;
                names = next;
                // dNSName [2] IA5String.
                if tag == 0x82 {
                    if let Ok(s) = std::str::from_utf8(name) {
                        dns_names.push(s.to_string());
                    }
                }
            }
        }
    }
    Some(LeafInfo {
        not_before,
        not_after,
        dns_names,
    })
}

/// UTCTime (YYMMDDHHMMSSZ, RFC 5280 §4.1.2.5.1) or GeneralizedTime
/// (YYYYMMDDHHMMSSZ) to Unix seconds.
fn parse_time(tag: u8, s: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(s).ok()?.strip_suffix('Z')?;
    let (year, rest) = match tag {
        UTC_TIME if s.len() == 12 => {
            let yy: i64 = s[..2].parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &s[2..])
        }
        GENERALIZED_TIME if s.len() == 14 => (s[..4].parse().ok()?, &s[4..]),
        _ => return None,
    };
    if !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |i: usize| rest[i..i + 2].parse::<i64>().ok();
    let (month, day, h, m, sec) = (n(0)?, n(2)?, n(4)?, n(6)?, n(8)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86400 + h * 3600 + m * 60 + sec)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// The parts of a certificate's TBSCertificate other modules need.
pub struct Tbs<'a> {
    /// serialNumber's content octets.
    pub serial: &'a [u8],
    /// The issuer Name, whole (tag and length included).
    pub issuer: &'a [u8],
    /// The subject Name's contents (its RDNSequence).
    pub subject: &'a [u8],
    /// subjectPublicKey: the BIT STRING's bits (the unused-bits octet left out).
    pub public_key: &'a [u8],
    /// Each extension: (OID contents, extnValue contents).
    pub extensions: Vec<(&'a [u8], &'a [u8])>,
}

/// Length of the element at the head of `input`, tag and length included.
fn whole(input: &[u8]) -> Option<&[u8]> {
    let (_, _, rest) = element(input)?;
    Some(&input[..input.len() - rest.len()])
}

/// Splits a certificate's TBSCertificate into the parts of [`Tbs`].
pub fn tbs(cert: &[u8]) -> Option<Tbs<'_>> {
    let (SEQUENCE, cert, _) = element(cert)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = element(cert)? else {
        return None;
    };
    let mut rest = tbs;
    if rest.first() == Some(&0xa0) {
        rest = element(rest)?.2;
    }
    let (INTEGER, serial, r) = element(rest)? else {
        return None;
    };
    let r = element(r)?.2; // signature
    let issuer = whole(r)?;
    let r = element(r)?.2;
    let r = element(r)?.2; // validity
    let (SEQUENCE, subject, r) = element(r)? else {
        return None;
    };
    let (SEQUENCE, spki, mut r) = element(r)? else {
        return None;
    };
    let (_, _, spki) = element(spki)?;
    let (BIT_STRING, bits, _) = element(spki)? else {
        return None;
    };
    let public_key = bits.get(1..)?;
    let mut extensions = Vec::new();
    while !r.is_empty() {
        let (tag, body, next) = element(r)?;
        r = next;
        if tag != 0xa3 {
            continue;
        }
        let (SEQUENCE, mut exts, _) = element(body)? else {
            return None;
        };
        while !exts.is_empty() {
            let (_, ext, next) = element(exts)?;
            exts = next;
            let (_, oid, mut fields) = element(ext)?;
            let (mut tag, mut value, after) = element(fields)?;
            if tag == 0x01 {
                fields = after;
                (tag, value, _) = element(fields)?;
            }
            if tag != 0x04 {
                return None;
            }
            extensions.push((oid, value));
        }
    }
    Some(Tbs {
        serial,
        issuer,
        subject,
        public_key,
        extensions,
    })
}

const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
/// id-pe-authorityInfoAccess, 1.3.6.1.5.5.7.1.1.
const AIA_OID: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x01];
/// id-ad-ocsp, 1.3.6.1.5.5.7.48.1.
pub(crate) const OCSP_OID: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01];

/// The first OCSP responder URI in the certificate's Authority Information
/// Access extension (RFC 5280 §4.2.2.1).
pub fn ocsp_url(t: &Tbs<'_>) -> Option<String> {
    let (_, aia) = t.extensions.iter().find(|(oid, _)| *oid == AIA_OID)?;
    let (SEQUENCE, mut list, _) = element(aia)? else {
        return None;
    };
    while !list.is_empty() {
        let (_, desc, next) = element(list)?;
        list = next;
        let (_, method, loc) = element(desc)?;
        let (tag, uri, _) = element(loc)?;
        // uniformResourceIdentifier [6] IA5String.
        if method == OCSP_OID && tag == 0x86 {
            return std::str::from_utf8(uri).ok().map(str::to_string);
        }
    }
    None
}

/// The short names RFC 4514 §3 gives, plus emailAddress as OpenSSL writes it.
fn attribute_name(oid: &[u8]) -> Option<&'static str> {
    Some(match oid {
        [0x55, 0x04, 0x03] => "CN",
        [0x55, 0x04, 0x06] => "C",
        [0x55, 0x04, 0x07] => "L",
        [0x55, 0x04, 0x08] => "ST",
        [0x55, 0x04, 0x09] => "STREET",
        [0x55, 0x04, 0x0a] => "O",
        [0x55, 0x04, 0x0b] => "OU",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19] => "DC",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01] => "UID",
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01] => "emailAddress",
        _ => return None,
    })
}

/// A dotted OID from its content octets.
fn dotted(oid: &[u8]) -> String {
    let mut out = String::new();
    let mut v: u64 = 0;
    for &b in oid {
        v = (v << 7).wrapping_add(u64::from(b & 0x7f));
        if b & 0x80 == 0 {
            if out.is_empty() {
                let (a, b) = if v < 80 {
                    (v / 40, v % 40)
                } else {
                    (2, v - 80)
                };
                out = format!("{a}.{b}");
            } else {
                out.push_str(&format!(".{v}"));
            }
            v = 0;
        }
    }
    out
}

/// The subject as RFC 4514 text: RDNs last first, comma-separated, with
/// `\`-escapes; bytes outside printable ASCII are written `\XX`, so the
/// text is always a valid header field value.
pub fn subject_text(rdns: &[u8]) -> Option<String> {
    let mut parts = Vec::new();
    let mut rest = rdns;
    while !rest.is_empty() {
        let (0x31, mut set, next) = element(rest)? else {
            return None;
        };
        rest = next;
        let mut rdn = Vec::new();
        while !set.is_empty() {
            let (SEQUENCE, atv, next) = element(set)? else {
                return None;
            };
            set = next;
            let (0x06, oid, encoded) = element(atv)? else {
                return None;
            };
            let (tag, value, _) = element(encoded)?;
            let mut text = match attribute_name(oid) {
                Some(n) => format!("{n}="),
                None => format!("{}=", dotted(oid)),
            };
            // String types are written as text; anything else as #hex (§2.4).
            if matches!(tag, 0x0c | 0x13 | 0x14 | 0x16 | 0x1a | 0x1e) {
                let last = value.len().saturating_sub(1);
                for (i, &b) in value.iter().enumerate() {
                    let special = matches!(b, b'"' | b'+' | b',' | b';' | b'<' | b'>' | b'\\')
                        || (i == 0 && matches!(b, b'#' | b' '))
                        || (i == last && b == b' ');
                    if !(0x20..0x7f).contains(&b) {
                        text.push_str(&format!("\\{b:02X}"));
                    } else {
                        if special {
                            text.push('\\');
                        }
                        text.push(b as char);
                    }
                }
            } else {
                text.push('#');
                for b in whole(encoded)? {
                    text.push_str(&format!("{b:02x}"));
                }
            }
            rdn.push(text);
        }
        parts.push(rdn.join("+"));
    }
    parts.reverse();
    Some(parts.join(","))
}

/// Writes a DER element: `tag`, the length, then `contents`.
pub fn write(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = contents.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes = n.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(contents);
    out
}

/// UTCTime or GeneralizedTime contents at the head of an element, as Unix seconds.
pub(crate) fn time(tag: u8, s: &[u8]) -> Option<i64> {
    parse_time(tag, s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time(UTC_TIME, b"700101000000Z"), Some(0));
        assert_eq!(parse_time(UTC_TIME, b"491231235959Z"), Some(2524607999));
        assert_eq!(
            parse_time(GENERALIZED_TIME, b"20260301120000Z"),
            Some(1772366400)
        );
        assert_eq!(parse_time(UTC_TIME, b"7001010000Z"), None);
    }

    #[test]
    fn garbage_is_none() {
        assert!(leaf_info(b"").is_none());
        assert!(leaf_info(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_none());
        assert!(leaf_info(&[0x30, 0x03, 0x30, 0x01]).is_none());
    }
}
