//! Value forms that several tables share: durations ("500ms", "2s") and
//! addresses with a prefix length ("198.18.0.100/24"), plus the (key path,
//! message) form every table's checks report in.
//!
//! A leaf: the table files import from here, never the other way round.

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// What a table's checks return: (key path such as `backend[1].weight`,
/// message) pairs, which `mod.rs` turns into positioned problems.
pub(super) type Problems = Vec<(String, String)>;

/// Parses "500ms", "2s", "1m", "1.5s", "250us", "1h".
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("invalid duration {s:?}: missing unit (use ms, s, m or h)"))?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| {
        format!("invalid duration {s:?}: expected a number followed by ms, s, m or h")
    })?;
    let secs = match unit.trim() {
        "us" | "µs" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        other => {
            return Err(format!(
                "invalid duration {s:?}: unknown unit {other:?} (use ms, s, m or h)"
            ))
        }
    };
    if !secs.is_finite() || secs > 365.0 * 86400.0 {
        return Err(format!("invalid duration {s:?}: too large"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `deserialize_with` for a duration key.
pub(super) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

/// `deserialize_with` for a duration key whose absence means "not set".
pub(super) fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// Parses "198.18.0.100/24" or "2001:2::100/64" (a bare address means /32
/// or /128).
pub fn parse_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let (a, len) = match s.split_once('/') {
        Some((a, l)) => (
            a,
            Some(
                l.parse::<u8>()
                    .map_err(|_| format!("bad prefix length in {s:?}"))?,
            ),
        ),
        None => (s, None),
    };
    let addr: IpAddr = a
        .parse()
        .map_err(|_| format!("{s:?} is not an IPv4 or IPv6 address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = len.unwrap_or(max);
    if len > max {
        return Err(format!("prefix length in {s:?} is over {max}"));
    }
    Ok((addr, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert!(parse_duration("5").unwrap_err().contains("missing unit"));
        assert!(parse_duration("5 parsecs")
            .unwrap_err()
            .contains("unknown unit"));
        assert!(parse_duration("ms").is_err());
    }

    #[test]
    fn cidr() {
        assert_eq!(
            parse_cidr("198.18.0.100/24").unwrap(),
            ("198.18.0.100".parse().unwrap(), 24)
        );
        assert_eq!(parse_cidr("198.18.0.100").unwrap().1, 32);
        assert!(parse_cidr("198.18.0.100/33").is_err());
        assert_eq!(
            parse_cidr("2001:2::100/64").unwrap(),
            ("2001:2::100".parse().unwrap(), 64)
        );
        assert_eq!(parse_cidr("2001:2::100").unwrap().1, 128);
        assert!(parse_cidr("2001:2::100/129").is_err());
    }
}
