//! `[[backend]]`: one web server, at the top level (the pool `default`) or
//! as a `[[pool.backend]]`, and the checks of a backend list; `[resolver]`:
//! how backends given by name are resolved.
//!
//! Not for: the live backend and its connections (`src/backend/`), nor the
//! resolution itself (`src/backend/resolve.rs`, `src/net/dns.rs`).

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::values::{duration, Problems};

/// One `[[backend]]` web server at one address: a literal one from the
/// file, or one address of a backend given by name (see [`NamedBackend`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// Unique; state (health, counters) follows the name across reloads.
    pub name: String,
    pub address: SocketAddr,
    /// 0..=256; 0 takes no new requests (drain).
    pub weight: u32,
    /// Requests sent to it at once; 0 = unlimited. Used by `first`, and by
    /// every algorithm in a pool with a `queue-timeout` (further requests wait).
    pub maxconn: u32,
    /// The value a pool's sticky `cookie` names it by; default: its name.
    pub cookie: Option<String>,
}

/// A `[[backend]]` table as written: its address may be a name.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BackendTable {
    pub name: String,
    /// `"198.18.0.11:80"`, `"[2001:2::11]:80"` or `"web3.lab:80"`.
    pub address: Address,
    #[serde(default = "default_weight")]
    pub weight: u32,
    #[serde(default)]
    pub maxconn: u32,
    #[serde(default)]
    pub cookie: Option<String>,
}

// `name` and `address` are required, so the table has no `Default`: this is
// the one statement of `weight`'s default.
fn default_weight() -> u32 {
    1
}

/// Where a backend is: an IP address and port, or a DNS name and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Ip(SocketAddr),
    Name { host: Arc<str>, port: u16 },
}

impl Address {
    /// Reads `ip:port`, `[ipv6]:port` or `name:port` (a host name as
    /// [`crate::net::dns::check_name`] takes it).
    pub fn parse(s: &str) -> Result<Address, String> {
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Ok(Address::Ip(a));
        }
        let example = "(e.g. 198.18.0.11:80 or web3.lab:80)";
        let Some((host, port)) = s.rsplit_once(':') else {
            return Err(format!("{s:?} is not an address and port {example}"));
        };
        if host.parse::<IpAddr>().is_ok() || host.starts_with('[') {
            return Err(format!("{s:?} is not an address and port {example}"));
        }
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{s:?}: the port {port:?} is not a number 0..=65535"))?;
        crate::net::dns::check_name(host)
            .map_err(|why| format!("{s:?} is not an address and port {example}: {why}"))?;
        Ok(Address::Name {
            host: host.to_ascii_lowercase().into(),
            port,
        })
    }

    pub fn port(&self) -> u16 {
        match self {
            Address::Ip(a) => a.port(),
            Address::Name { port, .. } => *port,
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Ip(a) => a.fmt(f),
            Address::Name { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Address::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A backend given by name: each address the name resolves to is a
/// [`Backend`] of the pool, named `<name>@<ip>` (see
/// `backend::resolve::expand`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedBackend {
    /// The pool's index in `Resolved::pools`.
    pub pool: usize,
    /// Its place in the pool's list as written (short forms first).
    pub at: usize,
    pub host: Arc<str>,
    /// Its keys; `address` holds the port, with an unspecified IP.
    pub template: Backend,
}

impl Backend {
    /// The value a sticky cookie names this backend by.
    pub fn cookie_id(&self) -> &str {
        self.cookie.as_deref().unwrap_or(&self.name)
    }
}

impl BackendTable {
    /// A pool's short form `"address:port"`: named by it, every other key at
    /// its default.
    pub(super) fn short(text: &str, address: Address) -> BackendTable {
        BackendTable {
            name: text.to_string(),
            address,
            weight: default_weight(),
            maxconn: 0,
            cookie: None,
        }
    }

    /// Splits a pool's list as written into its literal backends and those
    /// given by name (`pool`: the pool's index).
    pub(super) fn split(list: &[BackendTable], pool: usize) -> (Vec<Backend>, Vec<NamedBackend>) {
        let (mut literal, mut named) = (Vec::new(), Vec::new());
        for (at, t) in list.iter().enumerate() {
            let b = |address| Backend {
                name: t.name.clone(),
                address,
                weight: t.weight,
                maxconn: t.maxconn,
                cookie: t.cookie.clone(),
            };
            match &t.address {
                Address::Ip(a) => literal.push(b(*a)),
                Address::Name { host, port } => named.push(NamedBackend {
                    pool,
                    at,
                    host: host.clone(),
                    template: b(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), *port)),
                }),
            }
        }
        (literal, named)
    }
}

/// Checks of a backend list; paths relative to the list (`backend[1].weight`).
pub(super) fn backend_problems(backends: &[BackendTable]) -> Problems {
    let mut out = Problems::new();
    let mut names = HashSet::new();
    for (i, b) in backends.iter().enumerate() {
        if b.name.is_empty() {
            out.push((format!("backend[{i}].name"), "must not be empty".into()));
        } else if !names.insert(b.name.as_str()) {
            out.push((
                format!("backend[{i}].name"),
                format!("duplicate backend name {:?}", b.name),
            ));
        }
        if b.weight > 256 {
            out.push((
                format!("backend[{i}].weight"),
                format!("weight {} is out of range 0..=256", b.weight),
            ));
        }
        if b.address.port() == 0 {
            out.push((format!("backend[{i}].address"), "port must not be 0".into()));
        }
    }
    out
}

/// `[resolver]`: how backends given by name are resolved. Each name is
/// asked again when its answer's TTL runs out, the TTL held within
/// `ttl-min..=ttl-max`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Resolver {
    /// DNS servers, asked in order: `"ip"` (port 53) or `"ip:port"`.
    /// Empty: the `nameserver` lines of /etc/resolv.conf.
    pub nameservers: Vec<String>,
    /// Least time between two resolutions of a name (also the retry after a failure).
    #[serde(deserialize_with = "duration")]
    pub ttl_min: Duration,
    /// Most time between two resolutions of a name.
    #[serde(deserialize_with = "duration")]
    pub ttl_max: Duration,
    /// How long one server is given to answer one query.
    #[serde(deserialize_with = "duration")]
    pub timeout: Duration,
    /// How long an address that left a name's answer stays in its pool at
    /// most, while the new addresses pass their first check.
    #[serde(deserialize_with = "duration")]
    pub hold: Duration,
    /// The records asked for: both families, or one.
    pub family: ResolveFamily,
}

/// `[resolver] family`: which address records a name is asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResolveFamily {
    /// A and AAAA; both must be answered.
    #[default]
    Any,
    /// A only.
    Ipv4,
    /// AAAA only.
    Ipv6,
}

impl Default for Resolver {
    fn default() -> Self {
        Resolver {
            nameservers: Vec::new(),
            ttl_min: Duration::from_secs(1),
            ttl_max: Duration::from_secs(300),
            timeout: Duration::from_secs(2),
            hold: Duration::from_secs(30),
            family: ResolveFamily::default(),
        }
    }
}

impl Resolver {
    /// The configured servers (bad entries left out: `problems` names them).
    pub fn servers(&self) -> Vec<SocketAddr> {
        self.nameservers
            .iter()
            .filter_map(|s| parse_nameserver(s).ok())
            .collect()
    }

    pub(super) fn problems(&self) -> Problems {
        let mut out = Problems::new();
        for (i, s) in self.nameservers.iter().enumerate() {
            if let Err(e) = parse_nameserver(s) {
                out.push((format!("resolver.nameservers[{i}]"), e));
            }
        }
        for (k, d) in [("ttl-min", self.ttl_min), ("timeout", self.timeout)] {
            if d.is_zero() {
                out.push((format!("resolver.{k}"), "must be greater than 0".into()));
            }
        }
        if self.ttl_max < self.ttl_min {
            out.push((
                "resolver.ttl-max".into(),
                format!(
                    "{:?} is less than ttl-min ({:?})",
                    self.ttl_max, self.ttl_min
                ),
            ));
        }
        out
    }
}

/// `"198.18.0.53"` (port 53), `"198.18.0.53:5353"`, `"2001:2::53"` or
/// `"[2001:2::53]:5353"`.
pub fn parse_nameserver(s: &str) -> Result<SocketAddr, String> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    s.parse::<SocketAddr>()
        .map_err(|_| format!("{s:?} is not an IP address, or an address and port"))
}

#[cfg(test)]
mod tests {
    use crate::config::tests::parse_str;

    /// `[resolver]`'s checks, each at its key and line.
    #[test]
    fn resolver_values_are_checked() {
        let text = "[listen]\naddress = \"127.0.0.1:8080\"\n[[backend]]\nname = \"w\"\naddress = \"web.lab:80\"\n\
                    [resolver]\nnameservers = [\"198.18.0.53\", \"[2001:2::53]:5353\", \"ns.lab\"]\n\
                    ttl-min = \"10s\"\nttl-max = \"5s\"\ntimeout = \"0s\"\n";
        let err = parse_str(text).unwrap_err();
        let got: Vec<(&str, usize)> = err
            .problems()
            .iter()
            .map(|p| (p.path.as_str(), p.line))
            .collect();
        assert_eq!(
            got,
            [
                ("resolver.nameservers[2]", 7),
                ("resolver.timeout", 10),
                ("resolver.ttl-max", 9)
            ],
            "{err}"
        );
        let good = text
            .replace(", \"ns.lab\"", "")
            .replace("\"5s\"", "\"60s\"")
            .replace("\"0s\"", "\"1s\"");
        let c = parse_str(&good).unwrap();
        assert_eq!(
            c.resolver.servers(),
            [
                "198.18.0.53:53".parse::<std::net::SocketAddr>().unwrap(),
                "[2001:2::53]:5353".parse().unwrap()
            ]
        );
        let family = good.replace("ttl-min", "family = \"ipv4\"\nttl-min");
        assert_eq!(
            parse_str(&family).unwrap().resolver.family,
            super::ResolveFamily::Ipv4
        );
    }

    /// A pool's short form `"address:port"` gets what a `[[pool.backend]]`
    /// table without those keys gets.
    #[test]
    fn a_short_form_backend_has_the_table_defaults() {
        let text = "[listen]\naddress = \"127.0.0.1:8080\"\n[[pool]]\nname = \"p\"\nbackends = [\"127.0.0.1:9001\"]\n[[pool.backend]]\nname = \"b\"\naddress = \"127.0.0.1:9002\"\n";
        let c = parse_str(text).unwrap();
        let b = &c.resolved.pools[0].backends;
        let (short, table) = (&b[0], &b[1]);
        assert_eq!(short.name, "127.0.0.1:9001");
        assert_eq!(
            (short.weight, short.maxconn, &short.cookie),
            (table.weight, table.maxconn, &table.cookie)
        );
    }
}
