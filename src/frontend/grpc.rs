//! What floatlb says to gRPC clients itself (gRPC's PROTOCOL-HTTP2.md): a
//! call is a POST with `content-type: application/grpc…`; its outcome is the
//! `grpc-status` and `grpc-message` trailers; `grpc-timeout` is its deadline.
//!
//! Not for: relaying calls, which are ordinary HTTP/2 streams with trailers
//! (`frontend::h2`, `backend::h2`).

use std::time::Duration;

use http::{HeaderMap, HeaderValue, StatusCode};

/// gRPC status codes floatlb answers with (grpc/doc/statuscodes.md).
pub const UNKNOWN: u8 = 2;
pub const DEADLINE_EXCEEDED: u8 = 4;
pub const PERMISSION_DENIED: u8 = 7;
pub const RESOURCE_EXHAUSTED: u8 = 8;
pub const UNIMPLEMENTED: u8 = 12;
pub const INTERNAL: u8 = 13;
pub const UNAVAILABLE: u8 = 14;
pub const UNAUTHENTICATED: u8 = 16;

/// Whether a request is a gRPC call.
pub fn is_call(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// The gRPC status of one of floatlb's own HTTP answers: gRPC's mapping of
/// HTTP statuses ("HTTP to gRPC Status Code Mapping"), except that floatlb's
/// 504 is always a deadline that ran out and its 429 a limit.
pub fn code_of(status: StatusCode) -> u8 {
    match status.as_u16() {
        400 => INTERNAL,
        401 => UNAUTHENTICATED,
        403 => PERMISSION_DENIED,
        404 => UNIMPLEMENTED,
        408 | 504 => DEADLINE_EXCEEDED,
        429 => RESOURCE_EXHAUSTED,
        502 | 503 => UNAVAILABLE,
        _ => UNKNOWN,
    }
}

/// `grpc-status` and `grpc-message` (percent-encoded, as the protocol asks).
pub fn status_fields(code: u8, message: &str) -> HeaderMap {
    let mut h = HeaderMap::with_capacity(2);
    h.insert("grpc-status", HeaderValue::from(u16::from(code)));
    let mut m = String::with_capacity(message.len());
    for b in message.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            m.push(b as char);
        } else {
            m.push_str(&format!("%{b:02X}"));
        }
    }
    if let Ok(v) = HeaderValue::from_str(&m) {
        h.insert("grpc-message", v);
    }
    h
}

/// The call's deadline from `grpc-timeout` (a positive integer of at most
/// 8 digits and a unit: H, M, S, m, u, n); None when absent or malformed.
pub fn timeout_of(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PROTOCOL-HTTP2.md, Requests: Timeout → "grpc-timeout" TimeoutValue TimeoutUnit,
    /// TimeoutValue at most 8 ASCII digits.
    #[test]
    fn grpc_timeout_values_and_units() {
        let t = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("grpc-timeout", HeaderValue::from_str(v).unwrap());
            timeout_of(&h)
        };
        assert_eq!(t("100m"), Some(Duration::from_millis(100)));
        assert_eq!(t("2S"), Some(Duration::from_secs(2)));
        assert_eq!(t("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(t("99999999n"), Some(Duration::from_nanos(99_999_999)));
        for bad in ["", "m", "123456789m", "10x", "-1S", "1.5S"] {
            assert_eq!(t(bad), None, "{bad:?}");
        }
    }

    /// PROTOCOL-HTTP2.md, Responses: Status-Message is percent-encoded.
    #[test]
    fn status_message_is_percent_encoded() {
        let h = status_fields(UNAVAILABLE, "no backend: 100% down\né");
        assert_eq!(h["grpc-status"], "14");
        assert_eq!(h["grpc-message"], "no backend: 100%25 down%0A%C3%A9");
        assert_eq!(code_of(StatusCode::GATEWAY_TIMEOUT), DEADLINE_EXCEEDED);
        assert_eq!(code_of(StatusCode::SERVICE_UNAVAILABLE), UNAVAILABLE);
    }
}
