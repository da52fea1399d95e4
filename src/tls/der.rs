//! The two things read from a leaf certificate's DER (RFC 5280 §4.1): its
//! notAfter and its subjectAltName DNS names. A minimal, bounds-checked DER
//! walk; anything unexpected is `None`, never a panic.

pub struct LeafInfo {
    pub not_after: i64,
    pub dns_names: Vec<String>,
}

/// One DER element: (tag, contents, rest).
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
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
    let (_, _, validity) = element(validity)?;
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
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
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
