//! `[health]`: active and passive health checking of the pool `default`, and
//! of every `[[pool]]` without a `health` table of its own.
//!
//! Not for: running the checks (`src/runtime/worker/health.rs`).

use std::time::Duration;

use serde::Deserialize;

use super::values::{duration, Problems};
use crate::http1::edit;

/// `[health]`: active and passive health checking. A key the file leaves
/// out takes its value from `Health::default()`, the one statement of the
/// defaults.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Health {
    pub enabled: bool,
    pub path: String,
    #[serde(deserialize_with = "duration")]
    pub interval: Duration,
    #[serde(deserialize_with = "duration")]
    pub timeout: Duration,
    /// Consecutive successful checks that bring a down backend up.
    pub rise: u32,
    /// Consecutive failed checks that take an up backend down.
    pub fall: u32,
    /// Consecutive failed connects from live traffic that take a backend
    /// down before the next active check notices; 0 disables.
    pub passive_fall: u32,
    /// Ramp a recovered backend's weight up over this long; "0s" = off.
    #[serde(deserialize_with = "duration")]
    pub slow_start: Duration,
    /// The check's method (HAProxy `http-check send meth`).
    pub method: String,
    /// The check's Host field; absent: the backend's address and port.
    pub host: Option<String>,
    /// Statuses that pass: codes and ranges, comma-separated ("200-399", "200,204").
    pub expect_status: String,
    /// Text the answer's body must contain (its first 16 KiB) to pass.
    pub expect_body: Option<String>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            enabled: true,
            path: "/".into(),
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 3,
            passive_fall: 3,
            slow_start: Duration::ZERO,
            method: "GET".into(),
            host: None,
            expect_status: "200-399".into(),
            expect_body: None,
        }
    }
}

impl Health {
    /// `expect-status` as inclusive ranges.
    pub fn expected_statuses(&self) -> Result<Vec<(u16, u16)>, String> {
        let bad = || {
            format!(
                "{:?} is not a list of statuses and ranges such as \"200-399\" or \"200,204\"",
                self.expect_status
            )
        };
        let mut out = Vec::new();
        for part in self.expect_status.split(',') {
            let part = part.trim();
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            let (Ok(a), Ok(b)) = (a.trim().parse::<u16>(), b.trim().parse::<u16>()) else {
                return Err(bad());
            };
            if !(100..=599).contains(&a) || !(100..=599).contains(&b) || a > b {
                return Err(bad());
            }
            out.push((a, b));
        }
        Ok(out)
    }
}

/// Checks of a `[health]` table at `at`.
pub(super) fn health_problems(h: &Health, at: &str) -> Problems {
    let mut out = Problems::new();
    let mut p = |k: &str, m: &str| out.push((format!("{at}.{k}"), m.to_string()));
    if !h.path.starts_with('/') {
        p("path", "must start with '/'");
    }
    if h.interval.is_zero() {
        p("interval", "must be greater than 0");
    }
    if h.timeout.is_zero() {
        p("timeout", "must be greater than 0");
    }
    if h.rise == 0 {
        p("rise", "must be at least 1");
    }
    if h.fall == 0 {
        p("fall", "must be at least 1");
    }
    if h.method.is_empty() || !h.method.bytes().all(|b| b.is_ascii_uppercase()) {
        p(
            "method",
            "must be a method in capitals, such as GET, HEAD or OPTIONS",
        );
    }
    if h.host
        .as_deref()
        .is_some_and(|v| v.is_empty() || !edit::valid_value(v))
    {
        p("host", "must be a host name (and port)");
    }
    if let Err(e) = h.expected_statuses() {
        p("expect-status", &e);
    }
    out
}
