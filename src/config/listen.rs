//! `[listen]` or `[[listen]]`: the client-facing sockets, with the process-wide
//! `workers`, `maxconn` and `backlog` that the first entry carries.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

use super::values::Problems;
use crate::access::CidrSet;

/// Most `[[listen]]` entries (the worker inherits each as a descriptor).
pub const MAX_LISTENERS: usize = 16;
/// What `[[route]] listener` names the `[tls] address` listener by.
pub const TLS_LISTENER: &str = "tls";

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
    /// With `tls`: the CAs client certificates must chain to here (default: `[tls] client-ca`).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// With `tls`: `none`, `optional` or `required` (default: `[tls] client-auth`).
    #[serde(default)]
    pub client_auth: Option<super::ClientAuth>,
    /// Runtime worker threads; default: number of cores. Read at start only.
    #[serde(default)]
    pub workers: Option<usize>,
    /// Most client connections served at once; further ones wait in the backlog.
    #[serde(default = "default_maxconn")]
    pub maxconn: usize,
    /// listen(2) backlog.
    #[serde(default = "default_backlog")]
    pub backlog: u32,
    /// Client addresses or networks served here (CIDR); with any allow list
    /// (this or `allow-from-file`), only they are. Checked per request: 403.
    #[serde(default)]
    pub allow_from: Vec<String>,
    /// Client addresses or networks refused here (403); deny wins over allow.
    #[serde(default)]
    pub deny_from: Vec<String>,
    /// A file of allowed addresses or networks, one a line (`#` comments),
    /// read at start and at every reload.
    #[serde(default)]
    pub allow_from_file: Option<PathBuf>,
    /// A file of refused addresses or networks, as `allow-from-file`.
    #[serde(default)]
    pub deny_from_file: Option<PathBuf>,
    /// The `[[limit]]` table this listener's clients are counted in.
    #[serde(default)]
    pub track: Option<String>,
    /// Most requests per client (a token bucket in the `track` table).
    #[serde(default)]
    pub rate_limit: Option<super::RateLimitConfig>,
    /// Most connections open at once per client address; more are closed at accept.
    #[serde(default)]
    pub max_connections: Option<u32>,
    /// Most error answers (status 400 and over) per client over the table's period.
    #[serde(default)]
    pub error_limit: Option<u32>,
    /// What a client over a limit gets: "429" (default) or "tarpit".
    #[serde(default)]
    pub over_limit: super::OverLimit,
    /// "http" (default) or "tcp": bytes relayed both ways to a backend of
    /// `pool` (or of the pool `sni` names), nothing of HTTP read.
    #[serde(default)]
    pub mode: Mode,
    /// `mode = "tcp"`: the pool its connections go to (with `sni`: the one
    /// for a name no entry matches, or no name).
    #[serde(default)]
    pub pool: Option<String>,
    /// `mode = "tcp"`: TLS passthrough routed by the ClientHello's server
    /// name: `"name" = "pool"`, `"*.suffix" = "pool"`.
    #[serde(default)]
    pub sni: BTreeMap<String, String>,
    /// Sources (CIDR) that must start each connection with a PROXY protocol
    /// header (v1 or v2); a connection from any other source is closed.
    #[serde(default)]
    pub accept_proxy: Vec<String>,
}

/// What a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Http,
    Tcp,
}

/// A `mode = "tcp"` listener's pools, settled: which pool a connection goes to.
#[derive(Debug, Clone, Default)]
pub struct TcpRoute {
    /// `pool`: for a name no `sni` entry matches, or a hello without one.
    pub default: Option<usize>,
    /// `sni` entries without a wildcard (lowercase name, pool).
    pub exact: Vec<(String, usize)>,
    /// `sni` entries `*.suffix`, as (`.suffix`, pool), longest first.
    pub wildcard: Vec<(String, usize)>,
}

impl TcpRoute {
    /// Whether the ClientHello is read to choose the pool.
    pub fn reads_sni(&self) -> bool {
        !self.exact.is_empty() || !self.wildcard.is_empty()
    }

    /// The pool for a server name: an exact entry first, then the longest
    /// matching `*.suffix` (which matches names of any depth under it), then `pool`.
    pub fn pool_for(&self, name: Option<&str>) -> Option<usize> {
        let Some(name) = name else {
            return self.default;
        };
        if let Some((_, p)) = self.exact.iter().find(|(n, _)| n == name) {
            return Some(*p);
        }
        self.wildcard
            .iter()
            .find(|(suffix, _)| name.len() > suffix.len() && name.ends_with(suffix.as_str()))
            .map(|(_, p)| *p)
            .or(self.default)
    }
}

// `address` is required, so the table has no `Default`: its defaults are
// these functions, each the one statement of its key's value.
pub(super) fn default_maxconn() -> usize {
    // Each client connection may hold a backend connection too; stay inside a
    // 20000 fd limit with room for pools, health checks and the admin port.
    8000
}
fn default_backlog() -> u32 {
    4096
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

/// Each `[[listen]]`'s TCP pools (None: an HTTP listener) and PROXY
/// protocol sources (None: it takes none), by listener id; `pool_index`
/// finds a pool by name. Problems at the keys that name them.
pub(super) fn tcp_and_proxy(
    listen: &[Listen],
    pool_index: &dyn Fn(&str) -> Option<usize>,
    pools: &str,
    out: &mut Problems,
) -> (Vec<Option<TcpRoute>>, Vec<Option<CidrSet>>) {
    let mut tcp = Vec::new();
    let mut proxy = Vec::new();
    for (i, l) in listen.iter().enumerate() {
        let at = |k: &str| match listen.len() {
            1 => format!("listen.{k}"),
            _ => format!("listen[{i}].{k}"),
        };
        let mut nets = Vec::new();
        for (j, s) in l.accept_proxy.iter().enumerate() {
            match crate::access::parse_net(s.trim()) {
                Ok(n) => nets.push(n),
                Err(e) => out.push((format!("{}[{j}]", at("accept-proxy")), e)),
            }
        }
        proxy.push((!l.accept_proxy.is_empty()).then(|| CidrSet::new(&nets)));
        if l.mode != Mode::Tcp {
            tcp.push(None);
            continue;
        }
        let find = |name: &str, key: String, out: &mut Problems| match pool_index(name) {
            Some(p) => Some(p),
            None => {
                out.push((key, format!("no pool named {name:?} (pools: {pools})")));
                None
            }
        };
        let mut route = TcpRoute {
            default: l.pool.as_deref().and_then(|n| find(n, at("pool"), out)),
            ..TcpRoute::default()
        };
        for (name, pool) in &l.sni {
            let key = format!("{}.{:?}", at("sni"), name);
            let lower = name.trim_end_matches('.').to_ascii_lowercase();
            let (wild, bare) = match lower.strip_prefix("*.") {
                Some(rest) => (true, rest),
                None => (false, lower.as_str()),
            };
            if bare.is_empty()
                || !bare
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.' || c == b'_')
            {
                out.push((key, format!("{name:?} is not a server name or *.suffix")));
                continue;
            }
            let Some(p) = find(pool, key, out) else {
                continue;
            };
            if wild {
                route.wildcard.push((format!(".{bare}"), p));
            } else {
                route.exact.push((bare.to_string(), p));
            }
        }
        route.wildcard.sort_by_key(|w| std::cmp::Reverse(w.0.len()));
        tcp.push(Some(route));
    }
    (tcp, proxy)
}

impl Listeners {
    /// Every listener's name, by listener id: the `[[listen]]` entries in
    /// order, then the `[tls] address` listener if there is one.
    pub(super) fn names(&self, tls: bool) -> Vec<String> {
        let mut v: Vec<String> = self.all.iter().map(Listen::name).collect();
        if tls {
            v.push(TLS_LISTENER.into());
        }
        v
    }

    /// Checks of the listeners; `tls`: whether the file has a `[tls]` table.
    pub(super) fn problems(&self, tls: bool) -> Problems {
        let mut out = Problems::new();
        let mut p = |path: String, msg: String| out.push((path, msg));
        let mut names = HashSet::new();
        let tls_name = tls.then(|| TLS_LISTENER.to_string());
        for (i, l) in self.all.iter().enumerate() {
            let at = |k: &str| {
                if self.all.len() == 1 {
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
            if !l.tls && (l.client_ca.is_some() || l.client_auth.is_some()) {
                let key = if l.client_auth.is_some() {
                    "client-auth"
                } else {
                    "client-ca"
                };
                p(
                    at(key),
                    "client certificates are asked for on a TLS listener only (tls = true)".into(),
                );
            }
            if l.tls && !tls {
                p(
                    at("tls"),
                    "tls = true needs a [tls] table with its certificates".into(),
                );
            }
            if l.mode == Mode::Tcp {
                if l.tls {
                    p(at("tls"), "mode = \"tcp\" relays bytes and terminates no TLS: use sni for TLS passthrough".into());
                }
                if l.pool.is_none() && l.sni.is_empty() {
                    p(
                        at("pool"),
                        "mode = \"tcp\" needs a pool (or sni entries)".into(),
                    );
                }
                if l.track.is_some() && (l.rate_limit.is_some() || l.error_limit.is_some()) {
                    p(
                        at("rate-limit"),
                        "a TCP listener has no requests: only max-connections applies".into(),
                    );
                }
            } else if l.pool.is_some() || !l.sni.is_empty() {
                let key = if l.pool.is_some() { "pool" } else { "sni" };
                p(at(key), "pool and sni are for mode = \"tcp\"; an HTTP listener's requests go by [[route]]".into());
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
                if self.all[..i].iter().any(|o| o.address == l.address) {
                    p(at("address"), format!("{} is listed twice", l.address));
                }
            }
        }
        if self.all.len() > MAX_LISTENERS {
            p(
                "listen".into(),
                format!("at most {MAX_LISTENERS} [[listen]] entries"),
            );
        }
        if self.workers == Some(0) {
            p("listen.workers".into(), "must be at least 1".into());
        }
        if self.maxconn == 0 {
            p("listen.maxconn".into(), "must be at least 1".into());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::TcpRoute;
    use crate::config::tests::{parse_str, GOOD};

    /// An exact name first, then the longest `*.suffix` (any depth under
    /// it, not the suffix itself), then the default; a hello without a name
    /// gets the default.
    #[test]
    fn sni_picks_exact_then_longest_wildcard_then_default() {
        let r = TcpRoute {
            default: Some(0),
            exact: vec![("a.example".into(), 1), ("x.b.example".into(), 4)],
            wildcard: vec![(".x.b.example".into(), 3), (".b.example".into(), 2)],
        };
        assert_eq!(r.pool_for(Some("a.example")), Some(1));
        assert_eq!(r.pool_for(Some("x.b.example")), Some(4));
        assert_eq!(r.pool_for(Some("y.x.b.example")), Some(3));
        assert_eq!(r.pool_for(Some("deep.y.b.example")), Some(2));
        assert_eq!(r.pool_for(Some("b.example")), Some(0));
        assert_eq!(r.pool_for(Some("zb.example")), Some(0));
        assert_eq!(r.pool_for(None), Some(0));
        assert!(r.reads_sni());
    }

    #[test]
    fn tcp_listeners_name_pools_and_proxy_sources() {
        let text = GOOD.replace(
            "[listen]\naddress = \"127.0.0.1:8080\"\n",
            "[[listen]]\naddress = \"127.0.0.1:8080\"\naccept-proxy = [\"198.18.0.0/24\"]\n\
             [[listen]]\naddress = \"127.0.0.1:8443\"\nmode = \"tcp\"\npool = \"default\"\n\
             sni = { \"*.B.example\" = \"default\" }\n",
        );
        let c = parse_str(&text).unwrap();
        let r = &c.resolved;
        assert!(r.tcp[0].is_none());
        let t = r.tcp[1].as_ref().unwrap();
        assert_eq!(t.wildcard, vec![(".b.example".to_string(), 0)]);
        assert!(r.accept_proxy[0]
            .as_ref()
            .unwrap()
            .contains("198.18.0.9".parse().unwrap()));
        assert!(r.accept_proxy[1].is_none());
        let bad = text
            .replace("198.18.0.0/24", "198.18.0.0/99")
            .replace("sni = { \"*.B.example\"", "tls = true\nsni = { \"*.\"");
        let err = parse_str(&bad).unwrap_err();
        let paths: Vec<_> = err.problems().iter().map(|p| p.path.as_str()).collect();
        assert!(paths.contains(&"listen[0].accept-proxy[0]"), "{err}");
        assert!(paths.contains(&"listen[1].tls"), "{err}");
        assert!(
            paths.iter().any(|p| p.starts_with("listen[1].sni")),
            "{err}"
        );
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
}
