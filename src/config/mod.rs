//! `proxy.toml`: the file format, its loading and its validation.
//!
//! Loading never half-succeeds: a file either yields a complete [`Config`] or a
//! list of [`Problem`]s, each naming file, line, column and key path
//! (`backend[1].weight`), so `floatlb check` and a failed reload can say exactly
//! what to fix while the running config stays in place.
//!
//! Each table has its file, with its keys, its defaults (stated once: a
//! table's `Default` read by `#[serde(default)]`, or, where the table has
//! required keys, one function per defaulted key) and its checks:
//! `listen.rs`, `tls.rs`, `log.rs`, `balance.rs`, `backend.rs`, `health.rs`,
//! `timeouts.rs`, `proxy.rs`, `http2.rs`, `admin.rs`, `peers.rs`, `vrrp.rs`, `anycast.rs`,
//! `limit.rs` (`[[limit]]` and the keys that use it), and `pools.rs` (`[[pool]]`, `[[route]]` and what they resolve to); `values.rs`
//! holds the value forms they share. None of them imports this file (only
//! their tests load text through it).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

mod admin;
mod anycast;
mod backend;
mod balance;
mod health;
mod http2;
mod limit;
mod listen;
mod log;
mod peers;
mod pools;
mod proxy;
mod timeouts;
mod tls;
mod transport;
mod values;
mod vrrp;

// `self::`: `vrrp` alone would also name the vrrp crate.
pub use self::vrrp::*;
pub use admin::*;
pub use anycast::*;
pub use backend::*;
pub use balance::*;
pub use health::*;
pub use http2::*;
pub use limit::*;
pub use listen::*;
pub use log::*;
pub use peers::*;
pub use pools::*;
pub use proxy::*;
pub use timeouts::*;
pub use tls::*;
pub use transport::{BackendTls, Protocol, Transport};
pub use values::*;

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
    pub backends: Vec<BackendTable>,
    /// `[resolver]`: how backends given by name are resolved.
    #[serde(default)]
    pub resolver: Resolver,
    #[serde(default)]
    pub health: Health,
    #[serde(default)]
    pub timeouts: Timeouts,
    #[serde(default)]
    pub proxy: ProxyOptions,
    /// `[http2]`: the limits HTTP/2 clients are held to.
    #[serde(default)]
    pub http2: Http2,
    #[serde(default)]
    pub admin: Option<Admin>,
    #[serde(rename = "vrrp", default)]
    pub vrrp: Vec<Vrrp>,
    /// `[peers]`: the nodes this one shares its `[[limit]]` tables with.
    #[serde(default)]
    pub peers: Option<Peers>,
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
    /// `[[limit]]`: per-client tables that listeners and routes `track`.
    #[serde(rename = "limit", default)]
    pub limits: Vec<LimitTable>,
    /// What the pools and routes come to (set when the file is loaded).
    #[serde(skip)]
    pub resolved: std::sync::Arc<Resolved>,
}

impl Config {
    /// Every listener's name, by listener id: the `[[listen]]` entries in
    /// order, then the `[tls] address` listener if there is one.
    pub fn listener_names(&self) -> Vec<String> {
        self.listen.names(self.tls.is_some())
    }
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
    let (resolved, more) = pools::resolve(&config.tables());
    found.extend(more);
    found.extend(tls::routes_without_certificates(&config));
    config.resolved = std::sync::Arc::new(resolved);
    // The tables as written are not needed once settled: with 10,000 routes
    // they would hold several megabytes in each process for nothing.
    config.pools = Vec::new();
    config.routes = Vec::new();
    if let Some(tls) = config.tls.as_mut().filter(|_| tls_files) {
        found.extend(tls.load(&config.listen.all));
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
    fn problems(&self) -> Problems {
        let mut out = self.listen.problems(self.tls.is_some());
        out.extend(self.log.problems());
        out.extend(backend_problems(&self.backends));
        out.extend(self.resolver.problems());
        out.extend(balance_problems(&self.balance, "balance"));
        out.extend(health_problems(&self.health, "health"));
        out.extend(self.timeouts.problems());
        out.extend(self.proxy.problems());
        out.extend(self.http2.problems());
        if let Some(a) = &self.admin {
            out.extend(a.problems());
        }
        if let Some(p) = &self.peers {
            out.extend(p.problems());
        }
        out.extend(vrrp_problems(&self.vrrp));
        out.extend(anycast_problems(
            &self.anycast,
            !self.vrrp.is_empty(),
            self.listen.address.ip(),
        ));
        out
    }

    /// The tables the pools and routes are settled against.
    fn tables(&self) -> pools::Tables<'_> {
        pools::Tables {
            backends: &self.backends,
            balance: &self.balance,
            health: &self.health,
            timeouts: &self.timeouts,
            proxy: &self.proxy,
            pools: &self.pools,
            routes: &self.routes,
            listeners: self.listener_names(),
            listen: &self.listen.all,
            limits: &self.limits,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::balance::Algorithm;

    /// A file with only the required tables: every other key at its default.
    pub(super) const GOOD: &str = r#"
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

    pub(super) fn parse_str(s: &str) -> Result<Config, ConfigError> {
        parse(Path::new("t.toml"), s)
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

    /// Each table without required keys is the same whether the file leaves
    /// it out, writes it empty, or the code asks for its `Default`: a key
    /// whose serde default disagreed with the table's `Default` fails here.
    #[test]
    fn a_missing_key_takes_the_tables_default() {
        let absent = parse_str(GOOD).unwrap();
        let empty = parse_str(&format!(
            "{GOOD}[balance]\n[health]\n[timeouts]\n[proxy]\n[http2]\n[log]\n"
        ))
        .unwrap();
        for c in [&absent, &empty] {
            assert_eq!(c.balance, Balance::default());
            assert_eq!(c.health, Health::default());
            assert_eq!(c.timeouts, Timeouts::default());
            assert_eq!(c.proxy, ProxyOptions::default());
            assert_eq!(c.http2, Http2::default());
            assert_eq!(c.log, Log::default());
        }
        assert_eq!(
            toml::from_str::<RespondConfig>("").unwrap(),
            RespondConfig::default()
        );
        assert_eq!(
            toml::from_str::<PoolTimeouts>("").unwrap(),
            PoolTimeouts::default()
        );
        assert_eq!(
            toml::from_str::<EditsConfig>("").unwrap(),
            EditsConfig::default()
        );
        // A pool's own `[pool.balance]` / `[pool.health]`, written empty, is
        // the same as the top-level default.
        let pool = parse_str(
            "[listen]\naddress = \"127.0.0.1:8080\"\n[[pool]]\nname = \"p\"\nbackends = [\"127.0.0.1:9001\"]\n[pool.balance]\n[pool.health]\n",
        )
        .unwrap();
        let p = &pool.resolved.pools[0];
        assert_eq!(p.balance, Balance::default());
        assert_eq!(p.health, Health::default());
        assert_eq!(p.connect, Timeouts::default().connect);
        assert_eq!(p.retries, ProxyOptions::default().retries);
    }

    /// Every default `docs/configuration.md` gives as a value (`8000`,
    /// `` `2s` ``, `` `true` ``) is what a file without the key gets: the
    /// key written with the documented value loads the same tables as the
    /// key left out.
    #[test]
    fn documented_defaults_are_the_defaults() {
        let docs = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/docs/configuration.md"
        ))
        .unwrap();
        let listen = "[listen]\naddress = \"0.0.0.0:8080\"\n";
        let backend = "[[backend]]\nname = \"a\"\naddress = \"127.0.0.1:9001\"\n";
        // The file around each section's keys; `{}` is where the key goes.
        let around = |section: &str| -> Option<String> {
            Some(match section {
                "[listen]" => format!("{listen}{{}}{backend}"),
                "[[backend]]" => format!("{listen}{backend}{{}}"),
                "[balance]" | "[health]" | "[timeouts]" | "[proxy]" | "[http2]" | "[log]"
                | "[resolver]" => {
                    format!("{listen}{backend}{section}\n{{}}")
                }
                "[tls]" => format!(
                    "{listen}{backend}[tls]\naddress = \"127.0.0.1:8443\"\n{{}}[[tls.certificate]]\ncert = \"c.pem\"\nkey = \"c.key\"\n"
                ),
                "[[vrrp]]" => format!(
                    "{listen}{backend}[[vrrp]]\ninterface = \"lo\"\nvrid = 51\npriority = 100\nvirtual-addresses = [\"198.18.0.100/24\"]\n{{}}"
                ),
                "[[anycast]]" => format!(
                    "{listen}{backend}[[anycast]]\naddress = \"198.18.0.100\"\ninterface = \"lo\"\n{{}}"
                ),
                _ => return None,
            })
        };
        let tables = |text: &str| {
            let c = parse_with(Path::new("t.toml"), text, false)
                .unwrap_or_else(|e| panic!("{e}\n{text}"));
            format!(
                "{:?}",
                (
                    &c.listen,
                    &c.backends,
                    &c.balance,
                    &c.health,
                    &c.timeouts,
                    &c.proxy,
                    &c.http2,
                    &c.tls,
                    &c.log,
                    &c.vrrp,
                    &c.anycast,
                    &c.resolver
                )
            )
        };
        let mut section = None;
        let mut in_keys = false;
        let mut checked = Vec::new();
        for line in docs.lines() {
            if let Some(h) = line.strip_prefix("## ") {
                section = h.split('`').nth(1).and_then(around);
                continue;
            }
            if line.starts_with("| key | default |") {
                in_keys = true;
                continue;
            }
            if !line.starts_with('|') {
                in_keys = false;
            }
            let Some(file) = section.as_ref().filter(|_| in_keys) else {
                continue;
            };
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let (Some(key), Some(default)) = (cells.get(1), cells.get(2)) else {
                continue;
            };
            let Some(key) = key.strip_prefix('`').and_then(|k| k.strip_suffix('`')) else {
                continue;
            };
            // "0 (none)": the value before its gloss.
            let default = default.split(" (").next().unwrap();
            let bare = default.trim_matches('`');
            let value = if bare.parse::<i64>().is_ok()
                || ["true", "false"].contains(&bare)
                || bare.starts_with(['[', '"'])
            {
                bare.to_string()
            } else if default.starts_with('`') && default.ends_with('`') && !bare.contains(' ') {
                format!("{bare:?}")
            } else {
                continue; // "required", "none", "its `name`", ...
            };
            let with = file.replace("{}", &format!("{key} = {value}\n"));
            let without = file.replace("{}", "");
            assert_eq!(
                tables(&with),
                tables(&without),
                "docs/configuration.md says {key} defaults to {default}"
            );
            checked.push(key.to_string());
        }
        assert!(checked.len() >= 50, "only {checked:?}");
    }
}
