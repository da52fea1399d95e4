//! A pool's transport to its backends: `tls = { ... }` (TLS, verified by
//! default) and `protocol` (HTTP/1.1, h2 over TLS, h2c), with `max-streams`
//! for HTTP/2. Read with the pool (`[[pool]]`); the TLS files are read when
//! the config is loaded, so a reload with a broken file keeps the old config.
//!
//! Not for: connecting (the `backend` layer) or the rustls configs
//! themselves (`crate::tls::client`).

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

use super::values::Problems;
use crate::tls::client::{Settings, TlsClient};

/// A pool's `tls` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BackendTls {
    /// PEM CA certificates the backends' certificates are verified against;
    /// absent: the system store.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Sent in SNI and verified; absent: the request's Host, else the backend's address.
    #[serde(default)]
    pub server_name: Option<String>,
    /// A client certificate chain (PEM) for backends that require one (mTLS).
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// Verify the backend's certificate (HAProxy's `verify required`); false
    /// is `verify none`.
    #[serde(default = "default_verify")]
    pub verify: bool,
}

fn default_verify() -> bool {
    true
}

/// What a pool speaks to its backends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// HTTP/1.1 (over TLS with `tls`).
    #[default]
    Http1,
    /// HTTP/2 over TLS, chosen by ALPN (a backend that only offers
    /// HTTP/1.1 is spoken to in HTTP/1.1).
    H2,
    /// HTTP/2 over cleartext TCP, with prior knowledge (RFC 9113 §3.3).
    H2c,
}

/// Streams open at once on one HTTP/2 connection to a backend, unless the
/// backend allows fewer (`max-streams`).
pub fn default_max_streams() -> u32 {
    100
}

/// A pool's transport, as the backends' connections use it.
#[derive(Debug, Clone, Default)]
pub struct Transport {
    pub tls: Option<Arc<TlsClient>>,
    pub protocol: Protocol,
    pub max_streams: u32,
}

impl Transport {
    /// Whether requests go over HTTP/2 sessions (h2c, or h2 over TLS).
    pub fn multiplexed(&self) -> bool {
        self.protocol != Protocol::Http1
    }
}

/// Settles a pool's transport keys; `at` makes a key path of the pool's.
pub(super) fn transport(
    tls: Option<&BackendTls>,
    protocol: Protocol,
    max_streams: u32,
    at: &dyn Fn(&str) -> String,
    out: &mut Problems,
) -> Transport {
    let tls = tls.and_then(|t| {
        let settings = Settings {
            ca: t.ca.as_deref(),
            server_name: t.server_name.as_deref(),
            cert: t.cert.as_deref(),
            key: t.key.as_deref(),
            verify: t.verify,
        };
        match TlsClient::load(&settings) {
            Ok(c) => Some(Arc::new(c)),
            Err(e) => {
                out.push((at("tls"), e));
                None
            }
        }
    });
    match protocol {
        Protocol::H2 if tls.is_none() && out.iter().all(|(p, _)| *p != at("tls")) => out.push((
            at("protocol"),
            "\"h2\" is HTTP/2 over TLS: add a tls table, or use \"h2c\" for cleartext".into(),
        )),
        Protocol::H2c if tls.is_some() => out.push((
            at("protocol"),
            "\"h2c\" is cleartext HTTP/2: with tls, use \"h2\"".into(),
        )),
        _ => {}
    }
    if max_streams == 0 {
        out.push((at("max-streams"), "must be at least 1".into()));
    }
    Transport {
        tls,
        protocol,
        max_streams: max_streams.max(1),
    }
}
