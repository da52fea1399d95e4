//! `proxy.toml`: the file format, its defaults and its validation.
//!
//! Loading never half-succeeds: a file either yields a complete [`Config`] or a
//! list of [`Problem`]s, each naming file, line, column and key path
//! (`backend[1].weight`), so `floatlb check` and a failed reload can say exactly
//! what to fix while the running config stays in place.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::balance::{Algorithm, BalanceOptions};

mod pools;
pub use pools::*;

/// Most `[[listen]]` entries (the worker inherits each as a descriptor).
pub const MAX_LISTENERS: usize = 16;
/// What `[[route]] listener` names the `[tls] address` listener by.
pub const TLS_LISTENER: &str = "tls";

impl Config {
    /// Every listener's name, by listener id: the `[[listen]]` entries in
    /// order, then the `[tls] address` listener if there is one.
    pub fn listener_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.listen.all.iter().map(Listen::name).collect();
        if self.tls.is_some() {
            v.push(TLS_LISTENER.into());
        }
        v
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// `[listen]`, or `[[listen]]` entries (the first one's `workers`,
    /// `maxconn` and `backlog` hold for all).
    pub listen: Listeners,
    #[serde(default)]
    pub balance: Balance,
    #[serde(rename = "backend", default)]
    pub backends: Vec<Backend>,
    #[serde(default)]
    pub health: Health,
    #[serde(default)]
    pub timeouts: Timeouts,
    #[serde(default)]
    pub proxy: ProxyOptions,
    #[serde(default)]
    pub admin: Option<Admin>,
    #[serde(rename = "vrrp", default)]
    pub vrrp: Vec<Vrrp>,
    /// `[[anycast]]`: VIPs announced by every healthy node (route health injection).
    #[serde(rename = "anycast", default)]
    pub anycast: Vec<Anycast>,
    #[serde(default)]
    pub log: Log,
    #[serde(default)]
    pub tls: Option<Tls>,
    /// `[[pool]]`: named groups of backends with their own balancing,
    /// checks and timeouts. Emptied once loaded: see `resolved`.
    #[serde(rename = "pool", default)]
    pub pools: Vec<Pool>,
    /// `[[route]]`: the pool (or answer) a request gets; first match in file
    /// order. Emptied once loaded: see `resolved`.
    #[serde(rename = "route", default)]
    pub routes: Vec<Route>,
    /// What the pools and routes come to (set when the file is loaded).
    #[serde(skip)]
    pub resolved: std::sync::Arc<Resolved>,
}

/// `[tls]`: the HTTPS listener (see `docs/configuration.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Tls {
    /// May be a VIP this node does not hold yet (bound with IP_FREEBIND). Read at start.
    pub address: SocketAddr,
    /// SNI picks one; the first is the default.
    #[serde(rename = "certificate", default)]
    pub certificates: Vec<TlsCertificate>,
    /// ALPN protocols offered, in order of preference.
    #[serde(default = "default_alpn")]
    pub alpn: Vec<String>,
    /// Cleartext requests on `[listen]` get a 308 to https.
    #[serde(default)]
    pub redirect_http: bool,
    /// Strict-Transport-Security max-age in seconds on HTTPS answers; 0 = none.
    #[serde(default)]
    pub hsts: u64,
    /// Session-ticket keys shared by the pair (HAProxy's tls-ticket-keys format).
    #[serde(default)]
    pub ticket_keys: Option<PathBuf>,
    /// What the files held when this config was loaded.
    #[serde(skip)]
    pub material: Option<std::sync::Arc<crate::tls::Material>>,
}

/// One `[[tls.certificate]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TlsCertificate {
    /// PEM chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// Names SNI picks this certificate for; each must be in the certificate.
    /// Empty: the certificate's own DNS names.
    #[serde(default)]
    pub names: Vec<String>,
}

fn default_alpn() -> Vec<String> {
    vec!["h2".into(), "http/1.1".into()]
}

impl Tls {
    /// Reads and checks the certificate and ticket-key files and builds the
    /// TLS server config; (key path, message) pairs for what is wrong.
    fn load(&mut self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.certificates.is_empty() {
            out.push((
                "tls".into(),
                "at least one [[tls.certificate]] is required".into(),
            ));
        }
        for (i, p) in self.alpn.iter().enumerate() {
            if !matches!(p.as_str(), "h2" | "http/1.1") {
                out.push((
                    format!("tls.alpn[{i}]"),
                    format!("unknown protocol {p:?} (h2 or http/1.1)"),
                ));
            }
        }
        let mut loaded = Vec::new();
        for (i, c) in self.certificates.iter().enumerate() {
            match crate::tls::load_pair(&c.cert, &c.key, &c.names) {
                Ok(l) => loaded.push(l),
                Err(e) => out.push((format!("tls.certificate[{i}]"), e)),
            }
        }
        let ticketer = match &self.ticket_keys {
            Some(f) => crate::tls::tickets::load(f),
            None => crate::tls::tickets::per_process(),
        };
        let ticketer = match ticketer {
            Ok(t) => Some(t),
            Err(e) => {
                out.push(("tls.ticket-keys".into(), e));
                None
            }
        };
        if let (true, Some(t)) = (out.is_empty(), ticketer) {
            let now = crate::tls::unix_now();
            match crate::tls::Material::new(&loaded, &self.alpn, t, now) {
                Ok(m) => self.material = Some(std::sync::Arc::new(m)),
                Err(e) => out.push(("tls".into(), e)),
            }
        }
        out
    }

    /// The loaded TLS server config (present once the config was loaded).
    pub fn material(&self) -> Option<&std::sync::Arc<crate::tls::Material>> {
        self.material.as_ref()
    }
}

/// `[log]`: the access log (read at start).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Log {
    /// `off` (default), `common`, `combined`, `json` or `custom`.
    #[serde(default)]
    pub access: AccessFormat,
    /// A file to append to; absent = standard output.
    #[serde(default)]
    pub access_path: Option<PathBuf>,
    /// The line of `access = "custom"`: text with named fields in braces,
    /// e.g. "{client} {method} {target} {status} {route} {pool} {backend}".
    #[serde(default)]
    pub format: Option<String>,
}

/// A field of a custom access log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogField {
    Client,
    /// `23/Nov/2026:06:35:07 +0000`.
    Time,
    /// Unix seconds with microseconds.
    Timestamp,
    Method,
    Target,
    Version,
    Status,
    Bytes,
    Referer,
    UserAgent,
    DurationMs,
    Route,
    Pool,
    Backend,
}

/// `[log] format` parsed: text, and fields named in braces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogTemplate(pub Vec<Result<LogField, String>>);

impl LogTemplate {
    const FIELDS: [(&'static str, LogField); 14] = [
        ("client", LogField::Client),
        ("time", LogField::Time),
        ("timestamp", LogField::Timestamp),
        ("method", LogField::Method),
        ("target", LogField::Target),
        ("version", LogField::Version),
        ("status", LogField::Status),
        ("bytes", LogField::Bytes),
        ("referer", LogField::Referer),
        ("user_agent", LogField::UserAgent),
        ("duration_ms", LogField::DurationMs),
        ("route", LogField::Route),
        ("pool", LogField::Pool),
        ("backend", LogField::Backend),
    ];

    /// Parses "{client} {status}": `Ok` for a field, `Err` for literal text.
    pub fn parse(text: &str) -> Result<LogTemplate, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Err(rest[..open].to_string()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("a '{{' without its '}}' in {text:?}"))?;
            let name = &rest[open + 1..open + close];
            let field = Self::FIELDS
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, f)| *f)
                .ok_or_else(|| {
                    let known: Vec<&str> = Self::FIELDS.iter().map(|(n, _)| *n).collect();
                    format!("unknown field {{{name}}} (known: {})", known.join(", "))
                })?;
            parts.push(Ok(field));
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Err(rest.to_string()));
        }
        Ok(LogTemplate(parts))
    }
}

/// Access log line formats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AccessFormat {
    #[default]
    Off,
    /// NCSA common log format.
    Common,
    /// Common plus referer and user agent (Apache/nginx `combined`).
    Combined,
    /// One JSON object per line.
    Json,
    /// `[log] format`, with named fields (HAProxy `log-format`, nginx `log_format`).
    Custom,
}

/// `[listen]`, or each `[[listen]]`: a client-facing socket.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Listen {
    /// What `[[route]] listener` names it by; default: its address.
    #[serde(default)]
    pub name: Option<String>,
    /// May be a VIP this node does not hold yet (bound with IP_FREEBIND).
    pub address: SocketAddr,
    /// TLS with the `[tls]` certificates (HTTP/2 and HTTP/1.1 by ALPN).
    #[serde(default)]
    pub tls: bool,
    /// Runtime worker threads; default: number of cores. Read at start only.
    #[serde(default)]
    pub workers: Option<usize>,
    /// Most client connections served at once; further ones wait in the backlog.
    #[serde(default = "default_maxconn")]
    pub maxconn: usize,
    /// listen(2) backlog.
    #[serde(default = "default_backlog")]
    pub backlog: u32,
}

impl Listen {
    /// The name routes use for it.
    pub fn name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| self.address.to_string())
    }
}

/// The client-facing sockets: `[listen]` (one table) or `[[listen]]` (an
/// array of tables). Reads as the first one, whose `workers`, `maxconn` and
/// `backlog` hold for every listener.
#[derive(Debug, Clone)]
pub struct Listeners {
    pub all: Vec<Listen>,
}

impl std::ops::Deref for Listeners {
    type Target = Listen;
    fn deref(&self) -> &Listen {
        &self.all[0]
    }
}

impl<'de> Deserialize<'de> for Listeners {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Listeners;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a [listen] table or [[listen]] tables")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Listeners, A::Error> {
                let one = Listen::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(Listeners { all: vec![one] })
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Listeners, A::Error> {
                let mut all = Vec::new();
                while let Some(l) = seq.next_element::<Listen>()? {
                    all.push(l);
                }
                if all.is_empty() {
                    return Err(serde::de::Error::custom(
                        "at least one [[listen]] is required",
                    ));
                }
                Ok(Listeners { all })
            }
        }
        d.deserialize_any(V)
    }
}

fn default_maxconn() -> usize {
    // Each client connection may hold a backend connection too; stay inside a
    // 20000 fd limit with room for pools, health checks and the admin port.
    8000
}
fn default_backlog() -> u32 {
    4096
}

/// `[balance]`: the scheduler.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Balance {
    #[serde(default = "default_algorithm")]
    pub algorithm: Algorithm,
    /// Query parameter hashed by `url-param`.
    #[serde(default)]
    pub url_param: Option<String>,
    /// Request field hashed by `header` (HAProxy `balance hdr(name)`).
    #[serde(default)]
    pub header: Option<String>,
    /// Cookie hashed by `cookie`.
    #[serde(default)]
    pub cookie: Option<String>,
    /// Consistent hashing for the hash algorithms.
    #[serde(default)]
    pub consistent: bool,
    /// Draws for `random` (2 = power of two choices).
    #[serde(default = "default_draws")]
    pub draws: u32,
}

fn default_algorithm() -> Algorithm {
    Algorithm::RoundRobin
}
fn default_draws() -> u32 {
    2
}

impl Default for Balance {
    fn default() -> Self {
        Balance {
            algorithm: default_algorithm(),
            url_param: None,
            header: None,
            cookie: None,
            consistent: false,
            draws: default_draws(),
        }
    }
}

impl Balance {
    pub fn options(&self) -> BalanceOptions {
        BalanceOptions {
            algorithm: self.algorithm,
            url_param: self.url_param.clone(),
            consistent: self.consistent,
            draws: self.draws,
        }
    }
}

/// One `[[backend]]` web server.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Backend {
    /// Unique; state (health, counters) follows the name across reloads.
    pub name: String,
    pub address: SocketAddr,
    /// 0..=256; 0 takes no new requests (drain).
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Requests sent to it at once; 0 = unlimited. Used by `first`, and by
    /// every algorithm in a pool with a `queue-timeout` (further requests wait).
    #[serde(default)]
    pub maxconn: u32,
    /// The value a pool's sticky `cookie` names it by; default: its name.
    #[serde(default)]
    pub cookie: Option<String>,
}

impl Backend {
    /// The value a sticky cookie names this backend by.
    pub fn cookie_id(&self) -> &str {
        self.cookie.as_deref().unwrap_or(&self.name)
    }
}

fn default_weight() -> u32 {
    1
}

/// `[health]`: active and passive health checking.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Health {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "default_health_path")]
    pub path: String,
    #[serde(default = "default_health_interval", deserialize_with = "duration")]
    pub interval: Duration,
    #[serde(default = "default_health_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    /// Consecutive successful checks that bring a down backend up.
    #[serde(default = "default_rise")]
    pub rise: u32,
    /// Consecutive failed checks that take an up backend down.
    #[serde(default = "default_fall")]
    pub fall: u32,
    /// Consecutive failed connects from live traffic that take a backend
    /// down before the next active check notices; 0 disables.
    #[serde(default = "default_fall")]
    pub passive_fall: u32,
    /// Ramp a recovered backend's weight up over this long; "0s" = off.
    #[serde(default, deserialize_with = "duration")]
    pub slow_start: Duration,
    /// The check's method (HAProxy `http-check send meth`).
    #[serde(default = "default_health_method")]
    pub method: String,
    /// The check's Host field; absent: the backend's address and port.
    #[serde(default)]
    pub host: Option<String>,
    /// Statuses that pass: codes and ranges, comma-separated ("200-399", "200,204").
    #[serde(default = "default_expect_status")]
    pub expect_status: String,
    /// Text the answer's body must contain (its first 16 KiB) to pass.
    #[serde(default)]
    pub expect_body: Option<String>,
}

fn default_health_method() -> String {
    "GET".into()
}
fn default_expect_status() -> String {
    "200-399".into()
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

fn yes() -> bool {
    true
}
fn default_health_path() -> String {
    "/".into()
}
fn default_health_interval() -> Duration {
    Duration::from_secs(2)
}
fn default_health_timeout() -> Duration {
    Duration::from_secs(1)
}
fn default_rise() -> u32 {
    2
}
fn default_fall() -> u32 {
    3
}

impl Default for Health {
    fn default() -> Self {
        Health {
            enabled: true,
            path: default_health_path(),
            interval: default_health_interval(),
            timeout: default_health_timeout(),
            rise: default_rise(),
            fall: default_fall(),
            passive_fall: default_fall(),
            slow_start: Duration::ZERO,
            method: default_health_method(),
            host: None,
            expect_status: default_expect_status(),
            expect_body: None,
        }
    }
}

/// `[timeouts]`, named as in HAProxy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Timeouts {
    /// TCP connect to a backend.
    #[serde(default = "default_connect", deserialize_with = "duration")]
    pub connect: Duration,
    /// Receiving a complete request head from a client (slowloris guard).
    #[serde(default = "default_client_header", deserialize_with = "duration")]
    pub client_header: Duration,
    /// Idle keep-alive client connection between requests.
    #[serde(default = "default_idle", deserialize_with = "duration")]
    pub idle: Duration,
    /// Waiting for the backend's response head.
    #[serde(default = "default_server", deserialize_with = "duration")]
    pub server: Duration,
    /// Longest a shutdown waits for in-flight requests.
    #[serde(default = "default_drain", deserialize_with = "duration")]
    pub drain: Duration,
    /// Planned handover: longest wait for open keep-alive connections to close
    /// (each after its current response) before the VIP moves.
    #[serde(default = "default_handover", deserialize_with = "duration")]
    pub handover: Duration,
    /// Planned handover: how long the VIP stays configured here after the
    /// priority-0 advert, for packets sent before clients saw the new master.
    #[serde(default = "default_vip_linger", deserialize_with = "duration")]
    pub vip_linger: Duration,
    /// Idle pooled backend connection lifetime; keep below the backends'
    /// keep-alive timeout (nginx: 75s).
    #[serde(default = "default_pool_idle", deserialize_with = "duration")]
    pub pool_idle: Duration,
    /// An upgraded connection (WebSocket) with no byte either way for this
    /// long is closed (HAProxy `timeout tunnel`).
    #[serde(default = "default_tunnel", deserialize_with = "duration")]
    pub tunnel: Duration,
}

fn default_connect() -> Duration {
    Duration::from_secs(2)
}
fn default_client_header() -> Duration {
    Duration::from_secs(10)
}
fn default_idle() -> Duration {
    Duration::from_secs(60)
}
fn default_server() -> Duration {
    Duration::from_secs(30)
}
fn default_drain() -> Duration {
    Duration::from_secs(10)
}
fn default_handover() -> Duration {
    Duration::from_secs(1)
}
fn default_vip_linger() -> Duration {
    Duration::from_millis(500)
}
fn default_pool_idle() -> Duration {
    Duration::from_secs(30)
}
fn default_tunnel() -> Duration {
    Duration::from_secs(3600)
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: default_connect(),
            client_header: default_client_header(),
            idle: default_idle(),
            server: default_server(),
            drain: default_drain(),
            handover: default_handover(),
            vip_linger: default_vip_linger(),
            pool_idle: default_pool_idle(),
            tunnel: default_tunnel(),
        }
    }
}

/// `[proxy]`: request handling knobs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ProxyOptions {
    /// Extra attempts after a failed connect (HAProxy `retries`).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Retry on another backend rather than the same one (HAProxy `option redispatch`).
    #[serde(default = "yes")]
    pub redispatch: bool,
    #[serde(default = "yes")]
    pub x_forwarded_for: bool,
    #[serde(default = "yes")]
    pub x_forwarded_proto: bool,
    /// Add RFC 7239 `Forwarded: for=...;proto=http` (HAProxy `option forwarded`).
    #[serde(default)]
    pub forwarded: bool,
    /// Add RFC 9110 §7.6.3 `Via: 1.1 floatlb`.
    #[serde(default)]
    pub via: bool,
    /// Largest request body accepted, in bytes (nginx `client_max_body_size`);
    /// 0, the default, sets no limit. A larger one gets 413.
    #[serde(default)]
    pub max_body_size: u64,
    /// Largest request head accepted from a client, in bytes.
    #[serde(default = "default_max_header_size")]
    pub max_header_size: usize,
    /// Idle connections kept per backend.
    #[serde(default = "default_pool_size")]
    pub pool_max_idle: usize,
}

fn default_retries() -> u32 {
    3
}
fn default_max_header_size() -> usize {
    64 * 1024
}
fn default_pool_size() -> usize {
    // As many as the default maxconn: every connection that was busy at the
    // peak may stay for the next burst (HAProxy's pool-max-conn defaults to
    // unlimited). A smaller cap makes a busy proxy close and reopen backend
    // connections all the time; `timeouts.pool-idle` retires the unused ones.
    8000
}

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions {
            retries: default_retries(),
            redispatch: true,
            x_forwarded_for: true,
            x_forwarded_proto: true,
            forwarded: false,
            via: false,
            max_body_size: 0,
            max_header_size: default_max_header_size(),
            pool_max_idle: default_pool_size(),
        }
    }
}

/// `[admin]`: metrics and status listener.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Admin {
    pub address: SocketAddr,
    /// A file holding the bearer token that the runtime API's POST calls
    /// must carry (`Authorization: Bearer ...`); read at start and on reload.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

/// One `[[vrrp]]` instance (a VRID this node takes part in).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Vrrp {
    pub interface: String,
    pub vrid: u32,
    pub priority: u32,
    #[serde(default = "default_advert", deserialize_with = "duration")]
    pub advert_interval: Duration,
    pub virtual_addresses: Vec<String>,
    #[serde(default = "yes")]
    pub preempt: bool,
    #[serde(default, deserialize_with = "duration")]
    pub preempt_delay: Duration,
    #[serde(default)]
    pub unicast_peers: Vec<IpAddr>,
    /// Priority lowered by this much while the local proxy is unhealthy;
    /// absent = enter FAULT instead.
    #[serde(default)]
    pub track_weight: Option<u32>,
    #[serde(default)]
    pub notify: Option<PathBuf>,
    /// Gratuitous ARPs per VIP when becoming master.
    #[serde(default = "default_garp_count")]
    pub garp_count: u32,
    #[serde(default = "default_garp_interval", deserialize_with = "duration")]
    pub garp_interval: Duration,
    /// Re-announce VIPs periodically while master; "0s" = off.
    #[serde(default, deserialize_with = "duration")]
    pub garp_refresh: Duration,
    /// Send the VRRPv2-style checksum (no pseudo-header), for old peers.
    #[serde(default)]
    pub v2_checksum: bool,
    /// Run the instance thread with SCHED_FIFO.
    #[serde(default = "yes")]
    pub realtime: bool,
    /// Instances with the same group fail over together (keepalived's
    /// vrrp_sync_group): when one goes FAULT or BACKUP, the others follow.
    #[serde(default)]
    pub group: Option<String>,
}

fn default_advert() -> Duration {
    Duration::from_millis(100)
}
fn default_garp_count() -> u32 {
    5
}
fn default_garp_interval() -> Duration {
    Duration::from_millis(1)
}

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

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

/// One thing wrong with a config file, positioned for a human.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    /// Key path such as `backend[1].weight`; empty for syntax errors.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Why a config could not be loaded: every problem found.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", .0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

impl ConfigError {
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid(p) => p,
            ConfigError::Read { .. } => &[],
        }
    }
}

/// Reads and validates a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: path.to_owned(),
        source,
    })?;
    parse(path, &text)
}

/// Reads and validates a config file, except the `[tls]` files (certificates,
/// keys, ticket keys): for `floatlb release`, which must work while they are broken.
pub fn load_without_tls_files(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: path.to_owned(),
        source,
    })?;
    parse_with(path, &text, false)
}

/// Parses and validates config text; `file` only labels the messages.
pub fn parse(file: &Path, text: &str) -> Result<Config, ConfigError> {
    parse_with(file, text, true)
}

fn parse_with(file: &Path, text: &str, tls_files: bool) -> Result<Config, ConfigError> {
    let problem = |offset: Option<usize>, path: String, message: String| {
        let (line, column) = offset.map(|o| line_col(text, o)).unwrap_or((1, 1));
        Problem {
            file: file.to_owned(),
            line,
            column,
            path,
            message,
        }
    };
    let doc = match toml::de::DeTable::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            let p = problem(
                e.span().map(|s| s.start),
                String::new(),
                e.message().to_string(),
            );
            return Err(ConfigError::Invalid(vec![p]));
        }
    };
    let root = toml::de::DeValue::Table(doc.get_ref().clone());
    let de = toml::de::Deserializer::from(doc);
    let mut config: Config = match serde_path_to_error::deserialize(de) {
        Ok(c) => c,
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let offset = inner
                .span()
                .map(|s| s.start)
                .or_else(|| span_of(&root, &path));
            let path = if path == "." { String::new() } else { path };
            return Err(ConfigError::Invalid(vec![problem(
                offset,
                path,
                inner.message().to_string(),
            )]));
        }
    };
    let mut found = config.problems();
    let (resolved, more) = pools::resolve(&config);
    found.extend(more);
    config.resolved = std::sync::Arc::new(resolved);
    // The tables as written are not needed once settled: with 10,000 routes
    // they would hold several megabytes in each process for nothing.
    config.pools = Vec::new();
    config.routes = Vec::new();
    if let Some(tls) = config.tls.as_mut().filter(|_| tls_files) {
        found.extend(tls.load());
    }
    let problems: Vec<Problem> = found
        .into_iter()
        .map(|(path, msg)| problem(span_of(&root, &path), path, msg))
        .collect();
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid(problems))
    }
}

/// Byte offset of the value at a key path like `backend[1].weight`.
fn span_of(root: &toml::de::DeValue<'_>, path: &str) -> Option<usize> {
    let mut cur = root;
    let mut offset = None;
    for seg in path.split('.').filter(|s| !s.is_empty()) {
        let (key, index) = match seg.find('[') {
            Some(i) => (
                &seg[..i],
                seg[i + 1..].trim_end_matches(']').parse::<usize>().ok(),
            ),
            None => (seg, None),
        };
        let Some(next) = cur.get(key) else { break };
        offset = Some(next.span().start);
        cur = next.get_ref();
        if let Some(i) = index {
            let Some(next) = cur.get(i) else { break };
            offset = Some(next.span().start);
            cur = next.get_ref();
        }
    }
    offset
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

impl Config {
    /// Semantic checks serde cannot express; (key path, message) pairs.
    fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut p = |path: String, msg: String| out.push((path, msg));
        let mut names = std::collections::HashSet::new();
        let tls_name = self.tls.as_ref().map(|_| TLS_LISTENER.to_string());
        for (i, l) in self.listen.all.iter().enumerate() {
            let at = |k: &str| {
                if self.listen.all.len() == 1 {
                    format!("listen.{k}")
                } else {
                    format!("listen[{i}].{k}")
                }
            };
            if !names.insert(l.name()) || tls_name.as_deref() == Some(&l.name()) {
                p(
                    at("name"),
                    format!("two listeners are named {:?}", l.name()),
                );
            }
            if l.tls && self.tls.is_none() {
                p(
                    at("tls"),
                    "tls = true needs a [tls] table with its certificates".into(),
                );
            }
            if i > 0 {
                if l.workers.is_some()
                    || l.maxconn != default_maxconn()
                    || l.backlog != default_backlog()
                {
                    p(
                        at("address"),
                        "workers, maxconn and backlog are set on the first [[listen]] and hold for all".into(),
                    );
                }
                if self.listen.all[..i].iter().any(|o| o.address == l.address) {
                    p(at("address"), format!("{} is listed twice", l.address));
                }
            }
        }
        if self.listen.all.len() > crate::config::MAX_LISTENERS {
            p(
                "listen".into(),
                format!(
                    "at most {} [[listen]] entries",
                    crate::config::MAX_LISTENERS
                ),
            );
        }
        if self.listen.workers == Some(0) {
            p("listen.workers".into(), "must be at least 1".into());
        }
        if self.listen.maxconn == 0 {
            p("listen.maxconn".into(), "must be at least 1".into());
        }
        match (self.log.access, &self.log.format) {
            (AccessFormat::Custom, None) => p(
                "log.access".into(),
                "\"custom\" needs format = \"...\" with {field} names".into(),
            ),
            (AccessFormat::Custom, Some(f)) => {
                if let Err(e) = LogTemplate::parse(f) {
                    p("log.format".into(), e);
                }
            }
            (_, Some(_)) => p("log.format".into(), "is for access = \"custom\"".into()),
            _ => {}
        }
        for (path, msg) in backend_problems(&self.backends) {
            p(path, msg);
        }
        for (path, msg) in balance_problems(&self.balance, "balance") {
            p(path, msg);
        }
        for (path, msg) in health_problems(&self.health, "health") {
            p(path, msg);
        }
        for (name, d) in [
            ("connect", self.timeouts.connect),
            ("client-header", self.timeouts.client_header),
            ("idle", self.timeouts.idle),
            ("server", self.timeouts.server),
            ("tunnel", self.timeouts.tunnel),
        ] {
            if d.is_zero() {
                p(format!("timeouts.{name}"), "must be greater than 0".into());
            }
        }
        if self.proxy.max_header_size < 1024 {
            p(
                "proxy.max-header-size".into(),
                "must be at least 1024 bytes".into(),
            );
        }
        if let Some(a) = &self.admin {
            match &a.token_file {
                // The runtime API can drain backends and move the VIP.
                None if !a.address.ip().is_loopback() => p(
                    "admin.address".into(),
                    format!(
                        "{} is not a loopback address: set admin.token-file so the runtime API needs a token",
                        a.address
                    ),
                ),
                None => {}
                Some(f) => {
                    if let Err(e) = read_token(f) {
                        p("admin.token-file".into(), e);
                    }
                }
            }
        }
        let mut vrids = std::collections::HashSet::new();
        for (i, v) in self.vrrp.iter().enumerate() {
            for (path, msg) in v.problems() {
                p(format!("vrrp[{i}].{path}"), msg);
            }
            // Each address family has its own virtual routers (RFC 5798 §5.2.9).
            let ipv6 = v.vips().first().is_some_and(|(a, _)| a.is_ipv6());
            if !vrids.insert((v.interface.as_str(), v.vrid, ipv6)) {
                p(
                    format!("vrrp[{i}].vrid"),
                    format!(
                        "VRID {} is already used on {} for {}",
                        v.vrid,
                        v.interface,
                        if ipv6 { "IPv6" } else { "IPv4" }
                    ),
                );
            }
        }
        out.extend(self.anycast_problems());
        out
    }
}

/// The runtime API's bearer token from `[admin] token-file`: the file's first
/// line, which must not be empty.
pub fn read_token(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim();
    if token.is_empty() {
        return Err(format!("{} holds no token", path.display()));
    }
    Ok(token.to_string())
}

impl Vrrp {
    fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.interface.is_empty() {
            out.push(("interface".into(), "must not be empty".into()));
        } else if vrrp::address::interface_index(&self.interface).is_err() {
            out.push((
                "interface".into(),
                format!(
                    "no network interface named {:?} on this host",
                    self.interface
                ),
            ));
        }
        // RFC 5798's limits are the vrrp crate's (vrrp::rules); here they get
        // the key that breaks them.
        use vrrp::rules::{self, RuleError};
        if let Err(e) = rules::vrid(self.vrid) {
            out.push(("vrid".into(), e.to_string()));
        }
        if let Err(e) = rules::priority(self.priority) {
            out.push(("priority".into(), e.to_string()));
        }
        if let Err(e) = rules::advert_interval(self.advert_interval) {
            out.push(("advert-interval".into(), e.to_string()));
        }
        if self.virtual_addresses.is_empty() {
            out.push(("virtual-addresses".into(), RuleError::NoAddress.to_string()));
        }
        // One address family per instance (as keepalived): the first address decides it.
        let mut family: Option<IpAddr> = None;
        for (j, a) in self.virtual_addresses.iter().enumerate() {
            let at = format!("virtual-addresses[{j}]");
            match parse_cidr(a) {
                Err(e) => out.push((at, e)),
                Ok((ip, len)) => match rules::virtual_address(family, ip, len) {
                    Err(e @ RuleError::Family { .. }) => out.push((
                        at,
                        format!("{e}: an instance has one address family; put IPv4 and IPv6 VIPs in two [[vrrp]] tables (with the same group to fail over together)"),
                    )),
                    Err(e) => out.push((at, e.to_string())),
                    Ok(()) => family = family.or(Some(ip)),
                },
            }
        }
        if let Some(first) = family {
            for (j, peer) in self.unicast_peers.iter().enumerate() {
                if let Err(e) = rules::unicast_peer(first, *peer) {
                    out.push((format!("unicast-peers[{j}]"), e.to_string()));
                }
            }
        }
        if self.group.as_deref() == Some("") {
            out.push(("group".into(), "must not be empty".into()));
        }
        if let Some(w) = self.track_weight {
            if !(1..=254).contains(&w) {
                out.push(("track-weight".into(), "must be in 1..=254".into()));
            }
        }
        if self.garp_count > 100 {
            out.push(("garp-count".into(), "must be at most 100".into()));
        }
        out
    }

    /// The VIPs as (address, prefix length).
    pub fn vips(&self) -> Vec<(IpAddr, u8)> {
        self.virtual_addresses
            .iter()
            .filter_map(|a| parse_cidr(a).ok())
            .collect()
    }
}

/// One `[[anycast]]` VIP: kept as a /32 on `interface` while this node can
/// serve, for the node's routing daemon (BIRD `protocol direct`) to announce.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Anycast {
    /// The VIP, a bare IPv4 address (announced as a /32).
    pub address: String,
    /// The interface the routing daemon exports routes from (a dummy, or lo).
    pub interface: String,
    /// The address is added with this valid lifetime and renewed while the node
    /// serves, so a floatlb that dies without cleaning up (SIGKILL, OOM) stops
    /// being announced within it. "0s" = a permanent address.
    #[serde(default = "default_anycast_lease", deserialize_with = "duration")]
    pub lease: Duration,
    /// How long the node must be able to serve before it announces (again),
    /// so a flapping backend does not make the route flap.
    #[serde(default, deserialize_with = "duration")]
    pub announce_delay: Duration,
}

fn default_anycast_lease() -> Duration {
    Duration::from_secs(3)
}

impl Anycast {
    /// The VIP, once validated.
    pub fn vip(&self) -> Option<Ipv4Addr> {
        self.address.parse().ok()
    }
}

impl Config {
    fn anycast_problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if !self.anycast.is_empty() && !self.vrrp.is_empty() {
            out.push((
                "anycast".into(),
                "[[anycast]] and [[vrrp]] exclude each other: a VIP is either moved between two nodes by VRRP or announced by every healthy node".into(),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, a) in self.anycast.iter().enumerate() {
            match a.address.parse::<Ipv4Addr>() {
                Err(_) => out.push((
                    format!("anycast[{i}].address"),
                    format!(
                        "{:?} is not an IPv4 address (write the bare address; it is announced as a /32)",
                        a.address
                    ),
                )),
                Ok(ip) => {
                    if ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() || ip.is_broadcast() {
                        out.push((
                            format!("anycast[{i}].address"),
                            format!("{ip} cannot be announced"),
                        ));
                    }
                    if !seen.insert(ip) {
                        out.push((
                            format!("anycast[{i}].address"),
                            format!("{ip} is listed twice"),
                        ));
                    }
                    let l = self.listen.address.ip();
                    if !l.is_unspecified() && l != std::net::IpAddr::V4(ip) {
                        out.push((
                            format!("anycast[{i}].address"),
                            format!(
                                "the listener is bound to {l}, so nothing would answer on {ip}: listen on 0.0.0.0 or on the anycast address"
                            ),
                        ));
                    }
                }
            }
            if a.interface.is_empty() {
                out.push((
                    format!("anycast[{i}].interface"),
                    "must not be empty".into(),
                ));
            } else if vrrp::address::interface_index(&a.interface).is_err() {
                out.push((
                    format!("anycast[{i}].interface"),
                    format!(
                        "no network interface named {:?} on this host (use lo, or create one first, e.g. `ip link add {} type dummy`)",
                        a.interface, a.interface
                    ),
                ));
            }
            if !a.lease.is_zero() && a.lease < Duration::from_millis(500) {
                out.push((
                    format!("anycast[{i}].lease"),
                    "must be \"0s\" (permanent) or at least 500ms".into(),
                ));
            }
            if a.lease.as_secs() > u32::MAX as u64 / 2 {
                out.push((format!("anycast[{i}].lease"), "too long".into()));
            }
        }
        out
    }
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

    const GOOD: &str = r#"
[listen]
address = "127.0.0.1:8080"
[[backend]]
name = "a"
address = "127.0.0.1:9001"
[[backend]]
name = "b"
address = "127.0.0.1:9002"
weight = 3
"#;

    fn parse_str(s: &str) -> Result<Config, ConfigError> {
        parse(Path::new("t.toml"), s)
    }

    #[test]
    fn tls_files_are_checked_except_for_release() {
        let text = format!(
            "{GOOD}[tls]\naddress = \"127.0.0.1:8443\"\nalpn = [\"h3\"]\n[[tls.certificate]]\ncert = \"/nonexistent/c.pem\"\nkey = \"/nonexistent/c.key\"\n"
        );
        let e = parse_str(&text).unwrap_err().to_string();
        assert!(
            e.contains("tls.certificate[0]: cannot read /nonexistent/c.pem"),
            "{e}"
        );
        assert!(e.contains("tls.alpn[0]: unknown protocol \"h3\""), "{e}");
        let c = parse_with(Path::new("t.toml"), &text.replace("h3", "h2"), false).unwrap();
        assert!(c.tls.unwrap().material().is_none());
        let e = parse_str(&format!("{GOOD}[tls]\naddress = \"127.0.0.1:8443\"\n")).unwrap_err();
        assert!(
            e.to_string().contains("at least one [[tls.certificate]]"),
            "{e}"
        );
    }

    #[test]
    fn parses_minimal_with_defaults() {
        let c = parse_str(GOOD).unwrap();
        assert_eq!(c.backends.len(), 2);
        assert_eq!(c.backends[1].weight, 3);
        assert_eq!(c.health.rise, 2);
        assert_eq!(c.timeouts.connect, Duration::from_secs(2));
        assert_eq!(c.balance.algorithm, Algorithm::RoundRobin);
    }

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
    fn syntax_error_has_line_and_column() {
        let err = parse_str("[listen]\naddress = \"127.0.0.1:80\"\nworkers = = 2\n").unwrap_err();
        let p = &err.problems()[0];
        assert_eq!(p.line, 3, "{err}");
        assert!(p.column > 1);
    }

    #[test]
    fn type_error_names_key_path_and_line() {
        let text = GOOD.replace("weight = 3", "weight = \"heavy\"");
        let err = parse_str(&text).unwrap_err();
        let p = &err.problems()[0];
        assert_eq!(p.path, "backend[1].weight", "{err}");
        assert_eq!(p.line, 10, "{err}");
    }

    #[test]
    fn unknown_key_is_rejected() {
        let text = GOOD.replace("weight = 3", "wieght = 3");
        let err = parse_str(&text).unwrap_err();
        assert!(err.to_string().contains("wieght"), "{err}");
        assert_eq!(err.problems()[0].line, 10);
    }

    #[test]
    fn bad_duration_is_positioned() {
        let text = format!("{GOOD}\n[health]\ninterval = \"soon\"\n");
        let err = parse_str(&text).unwrap_err();
        let p = &err.problems()[0];
        assert_eq!(p.path, "health.interval");
        assert!(p.message.contains("invalid duration"), "{err}");
        assert_eq!(p.line, 13);
    }

    #[test]
    fn every_semantic_problem_is_reported() {
        let text = GOOD
            .replace("weight = 3", "weight = 300")
            .replace("name = \"b\"", "name = \"a\"");
        let err = parse_str(&text).unwrap_err();
        let paths: Vec<_> = err
            .problems()
            .iter()
            .map(|p| (p.path.as_str(), p.line))
            .collect();
        assert!(paths.contains(&("backend[1].weight", 10)), "{err}");
        assert!(paths.contains(&("backend[1].name", 8)), "{err}");
    }

    #[test]
    fn vrrp_ranges_checked() {
        let text = format!(
            "{GOOD}\n[[vrrp]]\ninterface = \"lo\"\nvrid = 300\npriority = 0\nadvert-interval = \"15ms\"\nvirtual-addresses = [\"198.18.0.300/24\"]\n"
        );
        let err = parse_str(&text).unwrap_err();
        let paths: Vec<_> = err.problems().iter().map(|p| p.path.as_str()).collect();
        for want in [
            "vrrp[0].vrid",
            "vrrp[0].priority",
            "vrrp[0].advert-interval",
            "vrrp[0].virtual-addresses[0]",
        ] {
            assert!(paths.contains(&want), "missing {want}: {err}");
        }
    }

    #[test]
    fn listen_is_one_table_or_an_array_of_them() {
        let many = GOOD.replace(
            "[listen]\naddress = \"127.0.0.1:8080\"\n",
            "[[listen]]\naddress = \"127.0.0.1:8080\"\nworkers = 2\n[[listen]]\nname = \"admin-site\"\naddress = \"127.0.0.1:8081\"\n",
        );
        let c = parse_str(&many).unwrap();
        assert_eq!(c.listen.all.len(), 2);
        assert_eq!(c.listen.workers, Some(2), "the first entry's");
        assert_eq!(c.listen.all[1].name(), "admin-site");
        assert_eq!(c.listen.all[0].name(), "127.0.0.1:8080");
        let bad = many.replace("name = \"admin-site\"\n", "workers = 4\ntls = true\n");
        let err = parse_str(&bad).unwrap_err();
        let paths: Vec<_> = err
            .problems()
            .iter()
            .map(|p| (p.path.as_str(), p.line))
            .collect();
        assert!(paths.contains(&("listen[1].address", 8)), "{err}");
        assert!(paths.contains(&("listen[1].tls", 7)), "{err}");
        let typo = GOOD.replace(
            "address = \"127.0.0.1:8080\"",
            "address = \"127.0.0.1:8080\"\nworkers = \"two\"",
        );
        let err = parse_str(&typo).unwrap_err();
        assert_eq!(err.problems()[0].path, "listen.workers", "{err}");
    }

    #[test]
    fn url_param_requires_name() {
        let text = format!("{GOOD}\n[balance]\nalgorithm = \"url-param\"\n");
        let err = parse_str(&text).unwrap_err();
        assert_eq!(err.problems()[0].path, "balance.url-param");
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

    /// One address family per instance (RFC 5798 §5.2.9): an IPv6 VIP after
    /// an IPv4 one, or a peer of the other family, is a check error that
    /// points at the offending entry.
    #[test]
    fn vrrp_families_do_not_mix() {
        let text = format!(
            "{GOOD}\n[[vrrp]]\ninterface = \"lo\"\nvrid = 51\npriority = 100\nvirtual-addresses = [\"198.18.0.100/24\", \"2001:2::100/64\"]\nunicast-peers = [\"2001:2::4\"]\ngroup = \"web\"\n"
        );
        let err = parse_str(&text).unwrap_err();
        let p = err
            .problems()
            .iter()
            .find(|p| p.path == "vrrp[0].virtual-addresses[1]")
            .unwrap_or_else(|| panic!("{err}"));
        assert!(p.message.contains("one address family"), "{err}");
        let vline = text
            .lines()
            .position(|l| l.starts_with("virtual-addresses"))
            .unwrap()
            + 1;
        assert_eq!(p.line, vline, "{err}");
        assert!(err
            .problems()
            .iter()
            .any(|p| p.path == "vrrp[0].unicast-peers[0]"));
        let global_peer = format!(
            "{GOOD}\n[[vrrp]]\ninterface = \"lo\"\nvrid = 51\npriority = 100\nvirtual-addresses = [\"2001:2::100/64\"]\nunicast-peers = [\"fe80::4\", \"2001:2::4\"]\n"
        );
        let err = parse_str(&global_peer).unwrap_err();
        let paths: Vec<_> = err.problems().iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["vrrp[0].unicast-peers[1]"], "{err}");
        assert!(err.to_string().contains("link-local"), "{err}");
        let ok = format!(
            "{GOOD}\n[[vrrp]]\ninterface = \"lo\"\nvrid = 51\npriority = 100\nvirtual-addresses = [\"198.18.0.100/24\"]\ngroup = \"web\"\n[[vrrp]]\ninterface = \"lo\"\nvrid = 51\npriority = 100\nvirtual-addresses = [\"fe80::100/64\", \"2001:2::100/64\"]\ngroup = \"web\"\n"
        );
        let c = parse_str(&ok).unwrap();
        assert_eq!(c.vrrp[1].vips()[1], ("2001:2::100".parse().unwrap(), 64));
        assert_eq!(c.vrrp[1].group.as_deref(), Some("web"));
    }

    #[test]
    fn anycast_checked_with_positions() {
        let text = format!(
            "{GOOD}\n[[anycast]]\naddress = \"198.18.0.300\"\ninterface = \"no-such-if0\"\nlease = \"10ms\"\n"
        );
        let err = parse_str(&text).unwrap_err();
        let found: Vec<_> = err
            .problems()
            .iter()
            .map(|p| (p.path.as_str(), p.line))
            .collect();
        for want in [
            ("anycast[0].address", 13),
            ("anycast[0].interface", 14),
            ("anycast[0].lease", 15),
        ] {
            assert!(found.contains(&want), "missing {want:?}: {err}");
        }
        let any = GOOD.replace("127.0.0.1:8080", "0.0.0.0:8080");
        let table = "\n[[anycast]]\naddress = \"198.18.0.100\"\ninterface = \"lo\"\n";
        let ok = parse_str(&format!("{any}{table}")).unwrap();
        assert_eq!(ok.anycast[0].vip(), Some("198.18.0.100".parse().unwrap()));
        assert_eq!(ok.anycast[0].lease, Duration::from_secs(3));
        let vrrp = "[[vrrp]]\ninterface = \"lo\"\nvrid = 1\npriority = 100\nvirtual-addresses = [\"198.18.0.101/24\"]\n";
        let err = parse_str(&format!("{any}{table}{vrrp}")).unwrap_err();
        assert!(err.problems().iter().any(|p| p.path == "anycast"), "{err}");
        // GOOD listens on 127.0.0.1: nothing would answer on the VIP.
        let err = parse_str(&format!("{GOOD}{table}")).unwrap_err();
        assert_eq!(err.problems()[0].path, "anycast[0].address", "{err}");
        assert_eq!(err.problems()[0].line, 13, "{err}");
    }
}
