//! `[timeouts]`, named as in HAProxy: connect, client header, idle, server,
//! tunnel, and the drain and handover limits.

use std::time::Duration;

use serde::Deserialize;

use super::values::{duration, opt_duration, Problems};

/// `[timeouts]`, named as in HAProxy. A key the file leaves out takes its
/// value from `Timeouts::default()`, the one statement of the defaults.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Timeouts {
    /// TCP connect to a backend.
    #[serde(deserialize_with = "duration")]
    pub connect: Duration,
    /// Receiving a complete request head from a client (slowloris guard).
    #[serde(deserialize_with = "duration")]
    pub client_header: Duration,
    /// Idle keep-alive client connection between requests.
    #[serde(deserialize_with = "duration")]
    pub idle: Duration,
    /// Waiting for the backend's response head, and for each piece of its
    /// body (HAProxy `timeout server`).
    #[serde(deserialize_with = "duration")]
    pub server: Duration,
    /// Waiting for a client to take each piece of its answer (HAProxy
    /// `timeout client`, for the sending side).
    #[serde(deserialize_with = "duration")]
    pub client: Duration,
    /// The whole request, from its head having arrived to its answer's
    /// end; none by default.
    #[serde(deserialize_with = "opt_duration")]
    pub request: Option<Duration>,
    /// Longest a shutdown waits for in-flight requests.
    #[serde(deserialize_with = "duration")]
    pub drain: Duration,
    /// Planned handover: longest wait for open keep-alive connections to close
    /// (each after its current response) before the VIP moves.
    #[serde(deserialize_with = "duration")]
    pub handover: Duration,
    /// Planned handover: how long the VIP stays configured here after the
    /// priority-0 advert, for packets sent before clients saw the new master.
    #[serde(deserialize_with = "duration")]
    pub vip_linger: Duration,
    /// Idle pooled backend connection lifetime; keep below the backends'
    /// keep-alive timeout (nginx: 75s).
    #[serde(deserialize_with = "duration")]
    pub pool_idle: Duration,
    /// An upgraded connection (WebSocket) with no byte either way for this
    /// long is closed (HAProxy `timeout tunnel`).
    #[serde(deserialize_with = "duration")]
    pub tunnel: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(2),
            client_header: Duration::from_secs(10),
            idle: Duration::from_secs(60),
            server: Duration::from_secs(30),
            client: Duration::from_secs(30),
            request: None,
            drain: Duration::from_secs(10),
            handover: Duration::from_secs(1),
            vip_linger: Duration::from_millis(500),
            pool_idle: Duration::from_secs(30),
            tunnel: Duration::from_secs(3600),
        }
    }
}

impl Timeouts {
    /// The timeouts that must not be zero.
    pub(super) fn problems(&self) -> Problems {
        let mut out = Problems::new();
        for (name, d) in [
            ("connect", self.connect),
            ("client-header", self.client_header),
            ("idle", self.idle),
            ("server", self.server),
            ("client", self.client),
            ("tunnel", self.tunnel),
        ] {
            if d.is_zero() {
                out.push((format!("timeouts.{name}"), "must be greater than 0".into()));
            }
        }
        if self.request.is_some_and(|d| d.is_zero()) {
            out.push(("timeouts.request".into(), "must be greater than 0".into()));
        }
        out
    }
}
