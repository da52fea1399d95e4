//! `[[limit]]`: the per-client tables (HAProxy's stick tables), and the keys
//! a listener or a route holds its clients to them with: `track`,
//! `rate-limit`, `max-connections` (listeners), `error-limit`, `over-limit`.
//! Not for: the tables themselves (`access::track`) or the 429 (`proxy`).

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;

use super::values::{duration, Problems};
use crate::access::track::{Rate, Rules};

/// One `[[limit]]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LimitTable {
    /// What `track` names it by.
    pub name: String,
    /// What a client is: `address`, `header:<name>` or `cookie:<name>`.
    #[serde(default = "default_key")]
    pub key: String,
    /// Most clients tracked at once; a full table evicts its longest-idle ones.
    #[serde(default = "default_size")]
    pub size: usize,
    /// A client with no connection open and nothing sent for this long is forgotten.
    #[serde(default = "default_expire", deserialize_with = "duration")]
    pub expire: Duration,
    /// The sliding window of the request and error rates (`error-limit`).
    #[serde(default = "default_period", deserialize_with = "duration")]
    pub period: Duration,
    /// How long `over-limit = "tarpit"` holds a limited request before its 429.
    #[serde(default = "default_tarpit", deserialize_with = "duration")]
    pub tarpit: Duration,
}

// `name` is required, so the table has no `Default`: its defaults are these
// functions, each the one statement of its key's value.
fn default_key() -> String {
    "address".into()
}
fn default_size() -> usize {
    100_000
}
fn default_expire() -> Duration {
    Duration::from_secs(60)
}
fn default_period() -> Duration {
    Duration::from_secs(10)
}
fn default_tarpit() -> Duration {
    Duration::from_secs(5)
}

/// Most entries a table may hold (about 100 bytes each).
pub const MAX_TABLE_SIZE: usize = 10_000_000;
/// Longest `tarpit`: each held request keeps its connection.
pub const MAX_TARPIT: Duration = Duration::from_secs(60);

/// What a table's clients are told apart by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackKey {
    /// The client's address (IPv4 and IPv4-mapped IPv6 are one client).
    Address,
    /// A request header's value (lower-case name); requests without it are not tracked.
    Header(String),
    /// A request cookie's value; requests without it are not tracked.
    Cookie(String),
}

/// A table as the proxy uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitSpec {
    pub name: String,
    pub key: TrackKey,
    pub size: usize,
    pub expire: Duration,
    pub period: Duration,
    pub tarpit: Duration,
}

impl LimitSpec {
    /// Whether a reload may keep the table's entries: everything they
    /// depend on is the same.
    pub fn same_table(&self, other: &LimitSpec) -> bool {
        (&self.name, &self.key, self.size, self.expire, self.period)
            == (
                &other.name,
                &other.key,
                other.size,
                other.expire,
                other.period,
            )
    }
}

/// `rate-limit = { requests = 100, per = "10s", burst = 20 }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RateLimitConfig {
    pub requests: u32,
    #[serde(default = "default_per", deserialize_with = "duration")]
    pub per: Duration,
    #[serde(default)]
    pub burst: u32,
}

fn default_per() -> Duration {
    Duration::from_secs(1)
}

/// What a client over a limit gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum OverLimit {
    /// 429 Too Many Requests with Retry-After, at once.
    #[default]
    #[serde(rename = "429")]
    Refuse,
    /// The same 429, after the table's `tarpit` delay.
    #[serde(rename = "tarpit")]
    Tarpit,
}

/// A listener's or a route's limit keys, as written.
pub(super) struct LimitKeys<'a> {
    pub track: Option<&'a str>,
    pub rate_limit: Option<&'a RateLimitConfig>,
    /// Listeners only.
    pub max_connections: Option<u32>,
    pub error_limit: Option<u32>,
    pub over_limit: OverLimit,
}

/// A listener's or a route's limits, settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitRule {
    /// Index into `Resolved::limits`.
    pub table: usize,
    pub rules: Rules,
    /// Most connections per client (0: no limit).
    pub max_connections: u32,
    pub over: OverLimit,
}

/// The `[[limit]]` tables, checked; (key path, message) for what is wrong.
pub(super) fn limit_tables(tables: &[LimitTable], out: &mut Problems) -> Vec<LimitSpec> {
    let mut seen = HashMap::new();
    tables
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let at = |k: &str| format!("limit[{i}].{k}");
            if t.name.is_empty() {
                out.push((at("name"), "must not be empty".into()));
            } else if let Some(j) = seen.insert(t.name.as_str(), i) {
                out.push((
                    at("name"),
                    format!("limit[{j}] is named {:?} too", t.name),
                ));
            }
            let key = match track_key(&t.key) {
                Ok(k) => k,
                Err(e) => {
                    out.push((at("key"), e));
                    TrackKey::Address
                }
            };
            if t.size == 0 || t.size > MAX_TABLE_SIZE {
                out.push((
                    at("size"),
                    format!("must be 1 to {MAX_TABLE_SIZE} (about 100 bytes a client)"),
                ));
            }
            for (k, d) in [("expire", t.expire), ("period", t.period)] {
                if d.is_zero() {
                    out.push((at(k), "must be greater than 0".into()));
                }
            }
            if t.expire < t.period {
                out.push((
                    at("expire"),
                    format!(
                        "{:?} is shorter than period ({:?}): a client would be forgotten inside its own window",
                        t.expire, t.period
                    ),
                ));
            }
            if t.tarpit > MAX_TARPIT {
                out.push((at("tarpit"), format!("at most {MAX_TARPIT:?}")));
            }
            LimitSpec {
                name: t.name.clone(),
                key,
                size: t.size,
                expire: t.expire,
                period: t.period,
                tarpit: t.tarpit,
            }
        })
        .collect()
}

fn track_key(s: &str) -> Result<TrackKey, String> {
    let bad = || format!("{s:?}: use \"address\", \"header:<name>\" or \"cookie:<name>\"");
    if s == "address" {
        return Ok(TrackKey::Address);
    }
    let (kind, name) = s.split_once(':').ok_or_else(bad)?;
    let name = name.trim();
    let token = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    match kind {
        "header" if token => Ok(TrackKey::Header(name.to_ascii_lowercase())),
        "cookie" if token => Ok(TrackKey::Cookie(name.to_string())),
        "header" | "cookie" => Err(format!("{name:?} is not a {kind} name")),
        _ => Err(bad()),
    }
}

/// A listener's or route's limit keys settled against the tables (None
/// without `track`); `at` makes a key's path.
pub(super) fn limit_rule(
    k: &LimitKeys<'_>,
    tables: &[LimitSpec],
    at: &dyn Fn(&str) -> String,
    out: &mut Problems,
) -> Option<LimitRule> {
    let Some(name) = k.track else {
        for (key, set) in [
            ("rate-limit", k.rate_limit.is_some()),
            ("max-connections", k.max_connections.is_some()),
            ("error-limit", k.error_limit.is_some()),
        ] {
            if set {
                out.push((
                    at(key),
                    "counts in a table: name one with track = \"<[[limit]] name>\"".into(),
                ));
            }
        }
        return None;
    };
    let Some(table) = tables.iter().position(|t| t.name == name) else {
        let known: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
        out.push((
            at("track"),
            format!(
                "no [[limit]] named {name:?} (limits: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
        ));
        return None;
    };
    let spec = &tables[table];
    let rate = k.rate_limit.and_then(|r| {
        if r.requests == 0 {
            out.push((at("rate-limit.requests"), "must be at least 1".into()));
            return None;
        }
        if r.per.is_zero() {
            out.push((at("rate-limit.per"), "must be greater than 0".into()));
            return None;
        }
        // A client forgotten before its bucket is full again would start
        // over early: its limit would not hold.
        let fill = r.per.mul_f64(f64::from(r.requests) + f64::from(r.burst)) / r.requests;
        if spec.expire < fill {
            out.push((
                at("rate-limit"),
                format!(
                    "limit {:?} forgets a client after {:?}, before its bucket fills again ({fill:?}): raise its expire",
                    spec.name, spec.expire
                ),
            ));
        }
        Some(Rate::new(r.requests, r.per, r.burst))
    });
    if k.max_connections.is_some() && spec.key != TrackKey::Address {
        out.push((
            at("max-connections"),
            format!(
                "connections are counted by client address: limit {:?} is keyed by {:?}",
                spec.name,
                key_text(&spec.key)
            ),
        ));
    }
    if k.max_connections == Some(0) || k.error_limit == Some(0) {
        let key = if k.max_connections == Some(0) {
            "max-connections"
        } else {
            "error-limit"
        };
        out.push((at(key), "must be at least 1".into()));
    }
    Some(LimitRule {
        table,
        rules: Rules {
            rate,
            errors: k.error_limit,
        },
        max_connections: k.max_connections.unwrap_or(0),
        over: k.over_limit,
    })
}

/// `key` as the file writes it.
pub fn key_text(k: &TrackKey) -> String {
    match k {
        TrackKey::Address => "address".into(),
        TrackKey::Header(h) => format!("header:{h}"),
        TrackKey::Cookie(c) => format!("cookie:{c}"),
    }
}

/// Rules that share a table share each client's bucket: their `rate-limit`
/// must refill it alike, and a request is counted once, so a route does not
/// track a table a listener tracks. `rules` are (key path, rule).
pub(super) fn shared_table_problems(
    rules: &[(String, LimitRule, bool)],
    tables: &[LimitSpec],
    out: &mut Problems,
) {
    let mut rate_of: HashMap<usize, (&str, Rate)> = HashMap::new();
    for (at, r, _) in rules {
        let Some(rate) = r.rules.rate else { continue };
        match rate_of.get(&r.table) {
            Some((first, other)) if !other.same_refill(&rate) => out.push((
                format!("{at}.rate-limit"),
                format!(
                    "limit {:?} keeps one bucket per client, and {first} refills it at another rate: use the same requests and per (burst may differ), or another table",
                    tables[r.table].name
                ),
            )),
            Some(_) => {}
            None => {
                rate_of.insert(r.table, (at, rate));
            }
        }
    }
    for (at, r, _) in rules.iter().filter(|(_, _, on_listener)| !on_listener) {
        if let Some((l, _, _)) = rules.iter().find(|(_, o, l)| *l && o.table == r.table) {
            out.push((
                format!("{at}.track"),
                format!(
                    "{l} tracks limit {:?} already: a request would count twice; give the route its own [[limit]]",
                    tables[r.table].name
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{parse_str, GOOD};

    fn problems(extra: &str) -> String {
        match parse_str(&format!("{GOOD}{extra}")) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_table_and_its_rules_with_their_defaults() {
        let text = GOOD.replace(
            "address = \"127.0.0.1:8080\"",
            "address = \"127.0.0.1:8080\"\ntrack = \"per-ip\"\nmax-connections = 20\nrate-limit = { requests = 100, per = \"10s\", burst = 20 }",
        );
        let c = parse_str(&format!(
            "{text}[[limit]]\nname = \"per-ip\"\n[[limit]]\nname = \"per-key\"\nkey = \"header:X-Api-Key\"\nsize = 1000\nexpire = \"5m\"\n[[route]]\npath-prefix = \"/api\"\npool = \"default\"\ntrack = \"per-key\"\nerror-limit = 50\nover-limit = \"tarpit\"\n"
        ))
        .unwrap();
        let r = &c.resolved;
        assert_eq!(r.limits.len(), 2);
        let t = &r.limits[0];
        assert_eq!(t.key, super::TrackKey::Address);
        assert_eq!(
            (
                t.size,
                t.expire.as_secs(),
                t.period.as_secs(),
                t.tarpit.as_secs()
            ),
            (100_000, 60, 10, 5)
        );
        assert_eq!(r.limits[1].key, super::TrackKey::Header("x-api-key".into()));
        let l = r.listener_limits[0].unwrap();
        assert_eq!((l.table, l.max_connections), (0, 20));
        assert!(l.rules.rate.is_some());
        assert_eq!(l.over, super::OverLimit::Refuse);
        let route = r.routes[0].limit.unwrap();
        assert_eq!((route.table, route.rules.errors), (1, Some(50)));
        assert_eq!(route.over, super::OverLimit::Tarpit);
    }

    #[test]
    fn what_cannot_work_is_named() {
        let route = |keys: &str| {
            format!("[[limit]]\nname = \"t\"\n[[limit]]\nname = \"h\"\nkey = \"cookie:sid\"\n[[route]]\npath = \"/\"\npool = \"default\"\n{keys}\n")
        };
        let e = problems(&route("rate-limit = { requests = 5 }"));
        assert!(e.contains("route[0].rate-limit: counts in a table"), "{e}");
        let e = problems(&route("track = \"nope\""));
        assert!(
            e.contains("no [[limit]] named \"nope\" (limits: t, h)"),
            "{e}"
        );
        let e = problems(&route("track = \"t\"\nrate-limit = { requests = 0 }"));
        assert!(e.contains("rate-limit.requests: must be at least 1"), "{e}");
        let e = problems(&route(
            "track = \"t\"\nrate-limit = { requests = 1, per = \"2m\" }",
        ));
        assert!(e.contains("before its bucket fills again"), "{e}");
        let e = problems(&route("track = \"t\"\nover-limit = \"drop\""));
        assert!(e.contains("over-limit"), "{e}");
        let e = problems("[[limit]]\nname = \"x\"\nkey = \"ip\"\nexpire = \"1s\"\n");
        assert!(e.contains("limit[0].key: \"ip\": use \"address\""), "{e}");
        assert!(e.contains("limit[0].expire"), "{e}");
        let e = problems("[[limit]]\nname = \"x\"\nsize = 0\n[[limit]]\nname = \"x\"\n");
        assert!(e.contains("limit[0].size"), "{e}");
        assert!(
            e.contains("limit[1].name: limit[0] is named \"x\" too"),
            "{e}"
        );
        // Connections are counted by address, on listeners only.
        let listen = |keys: &str| {
            GOOD.replace(
                "address = \"127.0.0.1:8080\"",
                &format!("address = \"127.0.0.1:8080\"\n{keys}"),
            ) + "[[limit]]\nname = \"h\"\nkey = \"cookie:sid\"\n[[limit]]\nname = \"t\"\n"
        };
        let e = parse_str(&listen("track = \"h\"\nmax-connections = 3"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("listen.max-connections: connections are counted by client address"),
            "{e}"
        );
        let e = problems(&route("track = \"t\"\nmax-connections = 3"));
        assert!(e.contains("max-connections"), "{e}");
        // One bucket per client: one refill rate per table; one count per request.
        let e = parse_str(&format!(
            "{}[[route]]\npath = \"/\"\npool = \"default\"\ntrack = \"t\"\nrate-limit = {{ requests = 5, per = \"1s\" }}\n",
            listen("track = \"t\"\nrate-limit = { requests = 10, per = \"1s\" }")
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("route[0].rate-limit: limit \"t\" keeps one bucket"),
            "{e}"
        );
        assert!(
            e.contains("route[0].track: listen tracks limit \"t\" already"),
            "{e}"
        );
    }
}
