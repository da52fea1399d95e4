//! `[listen]` or `[[listen]]`: the client-facing sockets, with the process-wide
//! `workers`, `maxconn` and `backlog` that the first entry carries.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

use super::values::Problems;

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
            if l.tls && !tls {
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
    use crate::config::tests::{parse_str, GOOD};

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
