//! ACME Renewal Information (RFC 9773): a certificate's ARI CertID (§4.1),
//! the RenewalInfo object and its suggested window (§4.2), the renewal time
//! picked in it, and how long to wait before asking again (§4.3,
//! Retry-After, bounded). Sans-IO apart from [`fetch`], which runs on the
//! ACME thread with the blocking client.
//! Not for: deciding whether this node may order, or the fallback to two
//! thirds of the lifetime (the runtime's `acme` service does both).

use serde_json::Value;

use super::http::Client;
use super::jws::b64;
use crate::tls::der;

/// The shortest wait between two fetches of one certificate's RenewalInfo
/// (RFC 9773 §4.3.2: "values under one minute could be treated as if they
/// were one minute").
pub const MIN_RECHECK: i64 = 60;
/// The longest (§4.3.2: "values over one day ... as if they were one day").
pub const MAX_RECHECK: i64 = 86400;
/// The wait after a long-term error, or with no usable Retry-After (§4.3.3).
pub const LONG_TERM_RECHECK: i64 = 6 * 3600;

/// id-ce-authorityKeyIdentifier, 2.5.29.35.
const AKI_OID: &[u8] = &[0x55, 0x1d, 0x23];

/// The ARI CertID of a leaf certificate (DER): base64url of its Authority
/// Key Identifier's keyIdentifier, ".", base64url of its serial number's
/// DER content octets, padding stripped (RFC 9773 §4.1).
pub fn cert_id(leaf: &[u8]) -> Result<String, String> {
    let t = der::tbs(leaf).ok_or("the certificate cannot be parsed")?;
    let (_, aki) = t
        .extensions
        .iter()
        .find(|(oid, _)| *oid == AKI_OID)
        .ok_or("the certificate has no Authority Key Identifier")?;
    // AuthorityKeyIdentifier ::= SEQUENCE { keyIdentifier [0] IMPLICIT OCTET STRING OPTIONAL, ... }
    let Some((0x30, mut fields, _)) = der::element(aki) else {
        return Err("a malformed Authority Key Identifier".into());
    };
    while !fields.is_empty() {
        let (tag, value, rest) =
            der::element(fields).ok_or("a malformed Authority Key Identifier")?;
        if tag == 0x80 {
            if value.is_empty() || t.serial.is_empty() {
                break;
            }
            return Ok(format!("{}.{}", b64(value), b64(t.serial)));
        }
        fields = rest;
    }
    Err("the Authority Key Identifier has no keyIdentifier".into())
}

/// A RenewalInfo object's suggested window (RFC 9773 §4.2), Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub start: i64,
    pub end: i64,
    /// `explanationURL`, for the operator.
    pub explanation: Option<String>,
}

/// Parses a RenewalInfo object; a window whose end is not after its start
/// is an error, as §4.2 asks ("treat one as though they failed to receive
/// any response").
pub fn parse(body: &[u8]) -> Result<Window, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("RenewalInfo is not JSON: {e}"))?;
    let time = |k: &str| {
        let s = v["suggestedWindow"][k]
            .as_str()
            .ok_or_else(|| format!("RenewalInfo has no suggestedWindow.{k}"))?;
        rfc3339(s).ok_or_else(|| format!("suggestedWindow.{k}: {s:?} is not an RFC 3339 time"))
    };
    let (start, end) = (time("start")?, time("end")?);
    if end <= start {
        return Err("suggestedWindow ends before it starts".into());
    }
    Ok(Window {
        start,
        end,
        explanation: v["explanationURL"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string),
    })
}

/// A time uniformly in `[start, end)` (RFC 9773 §4.2 step 2), from `random`.
/// It may be in the past: the caller renews at once then (step 3).
pub fn pick(w: &Window, random: u64) -> i64 {
    let width = (w.end - w.start).max(1) as u64;
    w.start + (random % width) as i64
}

/// Seconds until the next fetch from a Retry-After value (delta-seconds or
/// an IMF-fixdate, RFC 9110 §10.2.3), bounded to [`MIN_RECHECK`],
/// [`MAX_RECHECK`]; [`LONG_TERM_RECHECK`] when absent or invalid (§4.3.3).
pub fn recheck_after(retry_after: Option<&str>, now: i64) -> i64 {
    let Some(v) = retry_after.map(str::trim) else {
        return LONG_TERM_RECHECK;
    };
    let secs = if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        v.parse::<i64>().unwrap_or(MAX_RECHECK)
    } else {
        match imf_fixdate(v) {
            Some(t) => t - now,
            None => return LONG_TERM_RECHECK,
        }
    };
    secs.clamp(MIN_RECHECK, MAX_RECHECK)
}

/// What a fetch found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// The server has no `renewalInfo` in its directory.
    Unsupported,
    /// The window, and seconds until the next fetch.
    Window(Window, i64),
}

/// Why a fetch failed, and seconds until the next one (§4.3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchError {
    pub message: String,
    /// Temporary (a 5xx, a timeout): retried sooner, with back-off.
    pub temporary: bool,
}

/// The `renewalInfo` URL of a directory object, if it has one.
pub fn renewal_info_url(directory: &Value) -> Option<&str> {
    directory["renewalInfo"].as_str()
}

/// Fetches the directory and, if it offers ARI, the certificate's
/// RenewalInfo with an unauthenticated GET (§4.1); `now` for an
/// IMF-fixdate Retry-After.
pub fn fetch(http: &Client, directory: &str, cert_id: &str, now: i64) -> Result<Found, FetchError> {
    let fail = |message: String, temporary: bool| FetchError { message, temporary };
    let dir = http
        .request("GET", directory, None)
        .map_err(|e| fail(format!("directory: {e}"), true))?;
    if dir.status != 200 {
        return Err(fail(
            format!("directory: HTTP {}", dir.status),
            dir.status >= 500,
        ));
    }
    let dir: Value = serde_json::from_slice(&dir.body)
        .map_err(|e| fail(format!("directory is not JSON: {e}"), false))?;
    let Some(base) = renewal_info_url(&dir) else {
        return Ok(Found::Unsupported);
    };
    let url = format!("{}/{cert_id}", base.trim_end_matches('/'));
    let a = http
        .request("GET", &url, None)
        .map_err(|e| fail(format!("renewalInfo: {e}"), true))?;
    if a.status != 200 {
        return Err(fail(
            format!("renewalInfo: HTTP {}", a.status),
            a.status >= 500,
        ));
    }
    let w = parse(&a.body).map_err(|e| fail(e, false))?;
    Ok(Found::Window(
        w,
        recheck_after(a.header("retry-after"), now),
    ))
}

/// Unix seconds of an RFC 3339 date-time (`2025-01-02T04:00:00Z`, with
/// optional fractional seconds and a numeric offset).
pub fn rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        rest = &frac[n..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let t = rest.get(1..)?.as_bytes();
            if t.len() != 5 || t[2] != b':' {
                return None;
            }
            let oh = num_at(t, 0)?;
            let om = num_at(t, 3)?;
            sign * (oh * 3600 + om * 60)
        }
    };
    Some(der::days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - offset)
}

fn num_at(b: &[u8], at: usize) -> Option<i64> {
    let (x, y) = (*b.get(at)?, *b.get(at + 1)?);
    (x.is_ascii_digit() && y.is_ascii_digit()).then(|| i64::from((x - b'0') * 10 + (y - b'0')))
}

/// Unix seconds of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`, RFC 9110 §5.6.7).
fn imf_fixdate(s: &str) -> Option<i64> {
    let parts: Vec<&str> = s.split(' ').collect();
    let [_, day, month, year, time, "GMT"] = parts[..] else {
        return None;
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let mo = MONTHS.iter().position(|m| *m == month)? as i64 + 1;
    let d: i64 = day.parse().ok()?;
    let y: i64 = year.parse().ok()?;
    let t = time.as_bytes();
    if t.len() != 8 || t[2] != b':' || t[5] != b':' {
        return None;
    }
    let (h, mi, sec) = (num_at(t, 0)?, num_at(t, 3)?, num_at(t, 6)?);
    if !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    Some(der::days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    /// RFC 9773 Appendix A.
    const EXAMPLE: &str = "-----BEGIN CERTIFICATE-----
MIIBQzCB66ADAgECAgUAh2VDITAKBggqhkjOPQQDAjAVMRMwEQYDVQQDEwpFeGFt
cGxlIENBMCIYDzAwMDEwMTAxMDAwMDAwWhgPMDAwMTAxMDEwMDAwMDBaMBYxFDAS
BgNVBAMTC2V4YW1wbGUuY29tMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEeBZu
7cbpAYNXZLbbh8rNIzuOoqOOtmxA1v7cRm//AwyMwWxyHz4zfwmBhcSrf47NUAFf
qzLQ2PPQxdTXREYEnKMjMCEwHwYDVR0jBBgwFoAUaYhba4dGQEHhs3uEe6CuLN4B
yNQwCgYIKoZIzj0EAwIDRwAwRAIge09+S5TZAlw5tgtiVvuERV6cT4mfutXIlwTb
+FYN/8oCIClDsqBklhB9KAelFiYt9+6FDj3z4KGVelYM5MdsO3pK
-----END CERTIFICATE-----
";

    #[test]
    fn cert_id_of_the_rfc_example() {
        // RFC 9773 §4.1: keyIdentifier 69:88:5B:...:D4 and serial
        // 00:87:65:43:21 (leading zero kept) give this CertID.
        let c = CertificateDer::from_pem_slice(EXAMPLE.as_bytes()).unwrap();
        assert_eq!(cert_id(&c).unwrap(), "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE");
        // A certificate without an AKI (self-signed, as a challenge
        // certificate) has no CertID.
        let own = crate::acme::x509::alpn_challenge_cert("a.test", "t.k").unwrap();
        assert!(cert_id(&own.cert[0]).is_err());
        assert!(cert_id(b"\x30\x03\x02\x01").is_err());
    }

    #[test]
    fn the_rfc_renewal_info_example_parses() {
        // RFC 9773 §4.2's example RenewalInfo object.
        let body = br#"{
  "suggestedWindow": {
    "start": "2025-01-02T04:00:00Z",
    "end": "2025-01-03T04:00:00Z"
  },
  "explanationURL": "https://acme.example.com/docs/ari"
}"#;
        let w = parse(body).unwrap();
        assert_eq!(w.start, 1_735_790_400);
        assert_eq!(w.end, w.start + 86400);
        assert_eq!(
            w.explanation.as_deref(),
            Some("https://acme.example.com/docs/ari")
        );
        // §4.2: end not after start is invalid; so is a missing window.
        let bad =
            br#"{"suggestedWindow":{"start":"2025-01-03T04:00:00Z","end":"2025-01-03T04:00:00Z"}}"#;
        assert!(parse(bad).is_err());
        assert!(parse(br#"{"explanationURL":"x"}"#).is_err());
        assert!(parse(b"not json").is_err());
        assert!(parse(
            br#"{"suggestedWindow":{"start":"yesterday","end":"2025-01-03T04:00:00Z"}}"#
        )
        .is_err());
    }

    #[test]
    fn rfc3339_times() {
        assert_eq!(rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(rfc3339("1970-01-01T01:00:00.250+01:00"), Some(0));
        assert_eq!(rfc3339("1970-01-01T00:00:00-00:30"), Some(1800));
        for bad in [
            "1970-01-01",
            "1970-13-01T00:00:00Z",
            "1970-01-01T00:00:00",
            "1970-01-01T00:00:00.Z",
            "１９70-01-01T00:00:00Z",
        ] {
            assert_eq!(rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_renewal_time_is_uniform_in_the_window() {
        // RFC 9773 §4.2 step 2: a uniform random time within the window.
        let w = Window {
            start: 1000,
            end: 1010,
            explanation: None,
        };
        let mut seen = [0u32; 10];
        for r in 0..1000u64 {
            let t = pick(&w, r.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            assert!((1000..1010).contains(&t));
            seen[(t - 1000) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| (50..=150).contains(&n)), "{seen:?}");
        // Step 3: a window already in the past gives a time in the past,
        // which the caller takes as "renew now".
        assert!(pick(&w, u64::MAX) < 2000);
    }

    #[test]
    fn retry_after_is_bounded() {
        // RFC 9773 §4.3.2: under a minute counts as a minute, over a day as
        // a day; §4.3.3: absent or invalid is a long-term error (six hours).
        assert_eq!(recheck_after(Some("21600"), 0), 21600);
        assert_eq!(recheck_after(Some("5"), 0), MIN_RECHECK);
        assert_eq!(recheck_after(Some("999999999999999999999"), 0), MAX_RECHECK);
        assert_eq!(recheck_after(Some("604800"), 0), MAX_RECHECK);
        assert_eq!(recheck_after(None, 0), LONG_TERM_RECHECK);
        assert_eq!(recheck_after(Some("soon"), 0), LONG_TERM_RECHECK);
        assert_eq!(recheck_after(Some("-3"), 0), LONG_TERM_RECHECK);
        // RFC 9110 §10.2.3: an HTTP-date is the time to come back at.
        let at = imf_fixdate("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(at, 784_111_777);
        assert_eq!(
            recheck_after(Some("Sun, 06 Nov 1994 08:49:37 GMT"), at - 7200),
            7200
        );
        assert_eq!(
            recheck_after(Some("Sun, 06 Nov 1994 08:49:37 GMT"), at + 10),
            MIN_RECHECK
        );
    }
}
