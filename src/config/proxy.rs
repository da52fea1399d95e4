//! `[proxy]`: request handling knobs (retries, forwarding fields, size
//! limits, the backend connection pool).
//!
//! Not for: the proxying itself (`src/proxy/`).

use serde::Deserialize;

use super::listen::default_maxconn;
use super::values::Problems;

/// `[proxy]`: request handling knobs. A key the file leaves out takes its
/// value from `ProxyOptions::default()`, the one statement of the defaults.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ProxyOptions {
    /// Extra attempts after a failed connect (HAProxy `retries`).
    pub retries: u32,
    /// Retry on another backend rather than the same one (HAProxy `option redispatch`).
    pub redispatch: bool,
    pub x_forwarded_for: bool,
    pub x_forwarded_proto: bool,
    /// Add RFC 7239 `Forwarded: for=...;proto=http` (HAProxy `option forwarded`).
    pub forwarded: bool,
    /// Add RFC 9110 §7.6.3 `Via: 1.1 floatlb`.
    pub via: bool,
    /// Largest request body accepted, in bytes (nginx `client_max_body_size`);
    /// 0, the default, sets no limit. A larger one gets 413.
    pub max_body_size: u64,
    /// Largest request head accepted from a client, in bytes.
    pub max_header_size: usize,
    /// Idle connections kept per backend.
    pub pool_max_idle: usize,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions {
            retries: 3,
            redispatch: true,
            x_forwarded_for: true,
            x_forwarded_proto: true,
            forwarded: false,
            via: false,
            max_body_size: 0,
            max_header_size: 64 * 1024,
            // As many as the default maxconn: every connection that was busy
            // at the peak may stay for the next burst (HAProxy's pool-max-conn
            // defaults to unlimited). A smaller cap makes a busy proxy close
            // and reopen backend connections all the time; `timeouts.pool-idle`
            // retires the unused ones.
            pool_max_idle: default_maxconn(),
        }
    }
}

impl ProxyOptions {
    pub(super) fn problems(&self) -> Problems {
        let mut out = Problems::new();
        if self.max_header_size < 1024 {
            out.push((
                "proxy.max-header-size".into(),
                "must be at least 1024 bytes".into(),
            ));
        }
        out
    }
}
