//! `[[pool]]` and `[[route]]`: named groups of backends, and the rules that
//! send each request to one of them (or answer it here). Also what the file's
//! pools and routes come to once checked ([`Resolved`]): the top-level
//! `[[backend]]` list becomes the pool `default`, each pool takes the
//! top-level `[balance]`, `[health]`, `[timeouts]` and `[proxy]` values it does
//! not set itself, and the routes' matchers become a [`route::Table`].

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use regex::Regex;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::backend::{backend_problems, Address, Backend, BackendTable, NamedBackend};
use super::balance::{balance_problems, Balance};
use super::health::{health_problems, Health};
use super::limit::{
    limit_rule, limit_tables, shared_table_problems, LimitKeys, LimitRule, LimitSpec, LimitTable,
    OverLimit, RateLimitConfig,
};
use super::listen::Listen;
use super::proxy::ProxyOptions;
use super::timeouts::Timeouts;
use super::transport::{default_max_streams, transport, BackendTls, Protocol, Transport};
use super::values::{opt_duration, parse_cidr, Problems};
use crate::access::{self, AddressRule, BasicAuth, CidrSet};
use crate::http1::edit::{self, FieldEdits};
use crate::route::{self, Condition as Cond, Host, Matchers, Test};

/// The name of the pool the top-level `[[backend]]` list makes.
pub const DEFAULT_POOL: &str = "default";

/// One `[[pool]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Pool {
    pub name: String,
    /// Short form: `"address:port"` or `"name:port"` strings, each named by
    /// what it says.
    #[serde(default)]
    pub backends: Vec<String>,
    /// `[[pool.backend]]` tables: name, address, weight, maxconn.
    #[serde(rename = "backend", default)]
    pub backend: Vec<BackendTable>,
    /// Absent: the top-level `[balance]`.
    #[serde(default)]
    pub balance: Option<Balance>,
    /// Absent: the top-level `[health]`.
    #[serde(default)]
    pub health: Option<Health>,
    #[serde(default)]
    pub timeouts: PoolTimeouts,
    /// Absent: `[proxy] retries`.
    #[serde(default)]
    pub retries: Option<u32>,
    /// Absent: `[proxy] redispatch`.
    #[serde(default)]
    pub redispatch: Option<bool>,
    /// With it, a backend's `maxconn` holds for every algorithm: further
    /// requests wait in the pool's queue this long at most, then get 503
    /// (HAProxy's `maxconn` + `timeout queue`).
    #[serde(default, deserialize_with = "opt_duration")]
    pub queue_timeout: Option<Duration>,
    /// Most requests waiting in the queue; 0 = no bound but `[listen] maxconn`.
    #[serde(default)]
    pub max_queue: u32,
    /// Sticky sessions by cookie (HAProxy's `cookie`).
    #[serde(default)]
    pub cookie: Option<StickyCookie>,
    /// Status → a file whose content answers floatlb's own errors of that status.
    #[serde(default)]
    pub error_pages: BTreeMap<String, PathBuf>,
    /// A PROXY protocol header ("v1" or "v2") at the start of each
    /// connection to a backend; such connections are not pooled.
    #[serde(default)]
    pub send_proxy: Option<crate::net::proxy_protocol::Version>,
    /// TLS to the backends: `tls = { ca = "...", server-name = "..." }`.
    #[serde(default)]
    pub tls: Option<BackendTls>,
    /// "http1" (default), "h2" (over tls) or "h2c".
    #[serde(default)]
    pub protocol: Protocol,
    /// HTTP/2: streams open at once on one connection to a backend.
    #[serde(default = "default_max_streams")]
    pub max_streams: u32,
}

/// `cookie = { name = "SRV", mode = "insert" }`: a client's later requests go
/// to the backend its cookie names, while that backend can take them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StickyCookie {
    pub name: String,
    #[serde(default)]
    pub mode: CookieMode,
    /// Attributes of an inserted cookie (RFC 6265 §4.1).
    #[serde(default = "default_cookie_attributes")]
    pub attributes: String,
}

fn default_cookie_attributes() -> String {
    "Path=/; HttpOnly".into()
}

/// How the backend is named in the cookie.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CookieMode {
    /// floatlb sets a cookie of its own, `name=<backend>`, when the client has
    /// none naming the backend that answered.
    #[default]
    Insert,
    /// The application's own cookie `name` carries the backend in front of
    /// its value (`<backend>~<value>`): added to its Set-Cookie, taken off the
    /// request's Cookie.
    Prefix,
}

/// A pool's own `connect` and `server` timeouts; absent ones are `[timeouts]`'s.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct PoolTimeouts {
    #[serde(deserialize_with = "opt_duration")]
    pub connect: Option<Duration>,
    #[serde(deserialize_with = "opt_duration")]
    pub server: Option<Duration>,
}

/// One `[[route]]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Route {
    /// Shown by `floatlb route`, in the access log and in metrics; default `route<N>`.
    pub name: Option<String>,
    pub host: OneOrMany,
    pub path: OneOrMany,
    pub path_prefix: OneOrMany,
    pub path_regex: Option<String>,
    pub method: OneOrMany,
    pub headers: Vec<ConditionConfig>,
    pub query: Vec<ConditionConfig>,
    pub source: OneOrMany,
    /// Listener names (`[[listen]] name`, or `tls` for `[tls] address`).
    pub listener: OneOrMany,
    /// Action: send to this pool.
    pub pool: Option<String>,
    /// Action: answer with a redirect.
    pub redirect: Option<RedirectConfig>,
    /// Action: answer with this status and body (a maintenance page).
    pub respond: Option<RespondConfig>,
    /// Action: refuse with this status.
    pub deny: Option<u16>,
    pub request_headers: EditsConfig,
    pub response_headers: EditsConfig,
    /// Taken off the front of the path before the backend gets it.
    pub strip_prefix: Option<String>,
    /// Replaces the `path-prefix` that matched.
    pub replace_prefix: Option<String>,
    pub error_pages: BTreeMap<String, PathBuf>,
    /// Client addresses or networks this route serves (CIDR); with any allow
    /// list, only they are (403 for the others).
    pub allow_from: Vec<String>,
    /// Client addresses or networks this route refuses (403); deny wins.
    pub deny_from: Vec<String>,
    /// A file of allowed addresses or networks, read at start and reload.
    pub allow_from_file: Option<PathBuf>,
    /// A file of refused addresses or networks, read at start and reload.
    pub deny_from_file: Option<PathBuf>,
    /// Ask for a user and password from an htpasswd file (401 without).
    pub auth_basic: Option<AuthBasicConfig>,
    /// `required`: 403 for a request without a verified client certificate.
    pub client_auth: Option<super::ClientAuth>,
    /// The `[[limit]]` table this route's clients are counted in.
    pub track: Option<String>,
    /// Most requests per client (a token bucket in the `track` table).
    pub rate_limit: Option<RateLimitConfig>,
    /// Most error answers (status 400 and over) per client over the table's period.
    pub error_limit: Option<u32>,
    /// What a client over a limit gets: "429" (default) or "tarpit".
    pub over_limit: OverLimit,
}

/// A route's `auth-basic = { realm = "staff", users = "/etc/floatlb/htpasswd" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AuthBasicConfig {
    /// What the browser's prompt names (RFC 7617 §2).
    #[serde(default = "default_realm")]
    pub realm: String,
    /// An htpasswd file of bcrypt entries (`htpasswd -B`), read at start and reload.
    pub users: PathBuf,
}

fn default_realm() -> String {
    "restricted".into()
}

/// A header or query condition: `equals`, `regex`, or neither (present).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConditionConfig {
    pub name: String,
    #[serde(default)]
    pub equals: Option<String>,
    #[serde(default)]
    pub regex: Option<String>,
}

/// `request-headers` / `response-headers`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct EditsConfig {
    pub set: Fields,
    pub add: Fields,
    pub remove: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RedirectConfig {
    /// A URL with `{scheme}`, `{host}`, `{path}`, `{query}` or `{uri}` in it.
    pub location: String,
    #[serde(default = "default_redirect_status")]
    pub status: u16,
}

fn default_redirect_status() -> u16 {
    302
}

/// A route's `respond`: a key left out takes its value from
/// `RespondConfig::default()`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct RespondConfig {
    pub status: u16,
    pub content_type: String,
    pub body: Option<String>,
    /// Read when the file is loaded (start and reload).
    pub file: Option<PathBuf>,
}

impl Default for RespondConfig {
    fn default() -> Self {
        RespondConfig {
            status: 200,
            content_type: crate::http1::answers::ERROR_CONTENT_TYPE.into(),
            body: None,
            file: None,
        }
    }
}

/// A string or a list of strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OneOrMany(pub Vec<String>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany(vec![v.to_string()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(OneOrMany(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// Field name → value, in the file's order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields(pub Vec<(String, String)>);

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Fields;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of field names and string values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, String>()? {
                    out.push((k, v));
                }
                Ok(Fields(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// A page that answers floatlb's own errors of one status.
#[derive(Debug, Clone)]
pub struct ErrorPage {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Bytes,
}

/// A pool as the proxy uses it: every value settled.
#[derive(Debug, Clone)]
pub struct PoolSpec {
    pub name: String,
    pub backends: Vec<Backend>,
    pub balance: Balance,
    pub health: Health,
    pub connect: Duration,
    pub server: Duration,
    pub retries: u32,
    pub redispatch: bool,
    pub error_pages: Vec<ErrorPage>,
    pub queue_timeout: Option<Duration>,
    pub max_queue: u32,
    pub cookie: Option<StickyCookie>,
    /// TLS and the protocol spoken to the backends.
    pub transport: Transport,
}

/// What a route does with the requests it matches.
#[derive(Debug, Clone)]
pub enum Action {
    /// Index into [`Resolved::pools`].
    Pool(usize),
    Redirect {
        location: String,
        status: StatusCode,
    },
    Respond {
        status: StatusCode,
        content_type: String,
        body: Bytes,
    },
    Deny(StatusCode),
}

/// A route as the proxy uses it (its matchers are in [`Resolved::table`]).
#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub name: String,
    pub action: Action,
    pub request: FieldEdits,
    pub response: FieldEdits,
    pub strip_prefix: Option<String>,
    pub replace_prefix: Option<String>,
    /// The `path-prefix` values (for `replace-prefix`).
    pub prefixes: Vec<String>,
    pub error_pages: Vec<ErrorPage>,
    /// Its `allow-from` / `deny-from` lists, if it has any.
    pub addresses: Option<AddressRule>,
    /// Its `auth-basic` users (shared by the snapshot's clones: one cache).
    pub auth: Option<Arc<BasicAuth>>,
    /// `client-auth = "required"`: only clients with a verified certificate.
    pub client_cert: bool,
    /// Its per-client limits, if it tracks a table.
    pub limit: Option<LimitRule>,
}

impl RouteSpec {
    /// The target the backend gets instead of `target`, if the route rewrites it.
    pub fn rewrite_target(&self, target: &str) -> Option<String> {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };
        let mut new = None;
        if let Some(to) = &self.replace_prefix {
            let matched = self
                .prefixes
                .iter()
                .filter(|p| path.starts_with(p.as_str()))
                .max_by_key(|p| p.len())?;
            new = Some(format!("{to}{}", &path[matched.len()..]));
        }
        if let Some(strip) = &self.strip_prefix {
            let p = new.as_deref().unwrap_or(path);
            if let Some(rest) = p.strip_prefix(strip.as_str()) {
                new = Some(if rest.starts_with('/') {
                    rest.to_string()
                } else {
                    format!("/{rest}")
                });
            }
        }
        let mut new = new?;
        if let Some(q) = query {
            new.push('?');
            new.push_str(q);
        }
        Some(new)
    }

    /// Whether the route changes anything in the request it forwards.
    pub fn edits_request(&self) -> bool {
        !self.request.is_empty() || self.strip_prefix.is_some() || self.replace_prefix.is_some()
    }
}

/// The pools and routes of a loaded file.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    pub pools: Vec<PoolSpec>,
    pub routes: Vec<RouteSpec>,
    pub table: route::Table,
    /// The pool of a request no route matches: `default` if the file has
    /// top-level backends, else the only pool of a file without routes.
    /// None: such a request gets a 404.
    pub fallback: Option<usize>,
    /// Each listener's address lists, by listener id (None: it has none).
    pub listeners: Vec<Option<AddressRule>>,
    /// The `[[limit]]` tables, in file order.
    pub limits: Vec<LimitSpec>,
    /// Each listener's per-client limits, by listener id (None: it tracks no table).
    pub listener_limits: Vec<Option<LimitRule>>,
    /// Each `mode = "tcp"` listener's pools, by listener id (None: HTTP).
    pub tcp: Vec<Option<super::listen::TcpRoute>>,
    /// Each listener's `accept-proxy` sources, by listener id (None: none).
    pub accept_proxy: Vec<Option<CidrSet>>,
    /// Each pool's `send-proxy`, by pool index.
    pub send_proxy: Vec<Option<crate::net::proxy_protocol::Version>>,
    /// Each pool's use, by pool index: only TCP listeners send to it (its
    /// health check is then a connect).
    pub tcp_only: Vec<bool>,
    /// Backends given by name, pool after pool: the pools' `backends` hold
    /// their addresses once resolved (`backend::resolve::expand`).
    pub names: Vec<NamedBackend>,
}

impl Resolved {
    pub fn pool_index(&self, name: &str) -> Option<usize> {
        self.pools.iter().position(|p| p.name == name)
    }

    /// The error page for `status` a request on `route` (or its pool) gets.
    pub fn error_page(
        &self,
        route: Option<usize>,
        pool: Option<usize>,
        status: u16,
    ) -> Option<&ErrorPage> {
        let on_route = route
            .and_then(|r| self.routes.get(r))
            .and_then(|r| r.error_pages.iter().find(|p| p.status == status));
        on_route.or_else(|| {
            pool.and_then(|p| self.pools.get(p))
                .and_then(|p| p.error_pages.iter().find(|e| e.status == status))
        })
    }
}

/// What the pools and routes are settled against: the rest of the file.
pub(super) struct Tables<'a> {
    /// The top-level `[[backend]]` list (the pool `default`).
    pub backends: &'a [BackendTable],
    pub balance: &'a Balance,
    pub health: &'a Health,
    pub timeouts: &'a Timeouts,
    pub proxy: &'a ProxyOptions,
    pub pools: &'a [Pool],
    pub routes: &'a [Route],
    /// Every listener's name, by listener id.
    pub listeners: Vec<String>,
    /// The `[[listen]]` entries (their ids come first, in order).
    pub listen: &'a [Listen],
    /// The `[[limit]]` tables.
    pub limits: &'a [LimitTable],
}

/// Settles the file's pools and routes; (key path, message) for what is wrong.
pub(super) fn resolve(c: &Tables<'_>) -> (Resolved, Problems) {
    let mut out = Problems::new();
    let mut pools = Vec::new();
    let mut named_backends = Vec::new();
    if !c.backends.is_empty() {
        let (backends, named) = BackendTable::split(c.backends, 0);
        named_backends.extend(named);
        pools.push(PoolSpec {
            name: DEFAULT_POOL.into(),
            backends,
            balance: c.balance.clone(),
            health: c.health.clone(),
            connect: c.timeouts.connect,
            server: c.timeouts.server,
            retries: c.proxy.retries,
            redispatch: c.proxy.redispatch,
            error_pages: Vec::new(),
            queue_timeout: None,
            max_queue: 0,
            cookie: None,
            transport: Transport::default(),
        });
    }
    let mut names: HashSet<&str> = pools.iter().map(|_| DEFAULT_POOL).collect();
    for (i, p) in c.pools.iter().enumerate() {
        let at = |k: &str| format!("pool[{i}].{k}");
        if p.name.is_empty() {
            out.push((at("name"), "must not be empty".into()));
        } else if !names.insert(&p.name) {
            let why = if p.name == DEFAULT_POOL {
                "the name of the pool the top-level [[backend]] list makes".to_string()
            } else {
                format!("duplicate pool name {:?}", p.name)
            };
            out.push((at("name"), why));
        }
        // The list as written, short forms first; `short_at`: where each
        // short form that reads stands in `backends`.
        let (mut tables, mut short_at) = (Vec::new(), Vec::new());
        for (j, a) in p.backends.iter().enumerate() {
            match Address::parse(a) {
                Ok(address) => {
                    tables.push(BackendTable::short(a, address));
                    short_at.push(j);
                }
                Err(e) => out.push((format!("pool[{i}].backends[{j}]"), e)),
            }
        }
        tables.extend(p.backend.iter().cloned());
        if tables.is_empty() {
            out.push((
                at("backends"),
                "a pool needs at least one backend (backends = [\"address:port\"] or [[pool.backend]])".into(),
            ));
        }
        for (path, msg) in backend_problems(&tables) {
            let path = match path
                .strip_prefix("backend[")
                .and_then(|r| r.split_once(']'))
            {
                // Numbered within the pool's whole list: short forms first.
                Some((n, rest)) => match n.parse::<usize>() {
                    Ok(n) if n < short_at.len() => format!("pool[{i}].backends[{}]", short_at[n]),
                    Ok(n) => format!("pool[{i}].backend[{}]{rest}", n - short_at.len()),
                    Err(_) => format!("pool[{i}].{path}"),
                },
                None => format!("pool[{i}].{path}"),
            };
            out.push((path, msg));
        }
        let (backends, named) = BackendTable::split(&tables, pools.len());
        named_backends.extend(named);
        let balance = p.balance.clone().unwrap_or_else(|| c.balance.clone());
        if p.balance.is_some() {
            out.extend(balance_problems(&balance, &at("balance")));
        }
        let health = p.health.clone().unwrap_or_else(|| c.health.clone());
        if p.health.is_some() {
            out.extend(health_problems(&health, &at("health")));
        }
        if p.queue_timeout.is_some_and(|d| d.is_zero()) {
            out.push((at("queue-timeout"), "must be greater than 0".into()));
        }
        if let Some(c) = &p.cookie {
            out.extend(cookie_problems(c, &backends, i));
        }
        if p.send_proxy.is_some() && p.protocol != Protocol::Http1 {
            out.push((
                at("send-proxy"),
                "an HTTP/2 connection carries many clients' requests; send-proxy needs protocol = \"http1\"".into(),
            ));
        }
        for (k, d) in [
            ("connect", p.timeouts.connect),
            ("server", p.timeouts.server),
        ] {
            if d.is_some_and(|d| d.is_zero()) {
                out.push((
                    at(&format!("timeouts.{k}")),
                    "must be greater than 0".into(),
                ));
            }
        }
        pools.push(PoolSpec {
            name: p.name.clone(),
            backends,
            balance,
            health,
            connect: p.timeouts.connect.unwrap_or(c.timeouts.connect),
            server: p.timeouts.server.unwrap_or(c.timeouts.server),
            retries: p.retries.unwrap_or(c.proxy.retries),
            redispatch: p.redispatch.unwrap_or(c.proxy.redispatch),
            error_pages: error_pages(&p.error_pages, &at("error-pages"), &mut out),
            queue_timeout: p.queue_timeout,
            max_queue: p.max_queue,
            cookie: p.cookie.clone(),
            transport: transport(p.tls.as_ref(), p.protocol, p.max_streams, &at, &mut out),
        });
    }
    if pools.is_empty() {
        out.push((
            "backend".into(),
            "at least one [[backend]] or [[pool]] is required".into(),
        ));
    }
    // Pools TCP listeners name take no HTTP requests.
    let for_tcp: HashSet<&str> = c
        .listen
        .iter()
        .filter(|l| l.mode == super::listen::Mode::Tcp)
        .flat_map(|l| l.pool.iter().chain(l.sni.values()))
        .map(String::as_str)
        .collect();
    let http_pools = pools
        .iter()
        .filter(|p| !for_tcp.contains(p.name.as_str()))
        .count();
    if c.routes.is_empty() && http_pools > 1 {
        out.push((
            "pool".into(),
            format!(
                "{} pools and no [[route]]: every request would go to {:?}; add [[route]] rules that name the others",
                pools.len(),
                pools[0].name
            ),
        ));
    }
    let limits = limit_tables(c.limits, &mut out);
    let listeners = &c.listeners;
    let mut routes = Vec::new();
    let mut matchers = Vec::new();
    let mut route_names = HashSet::new();
    for (i, r) in c.routes.iter().enumerate() {
        let name = r.name.clone().unwrap_or_else(|| format!("route{i}"));
        if name.is_empty() || !route_names.insert(name.clone()) {
            out.push((
                format!("route[{i}].name"),
                format!("route names must be unique and not empty: {name:?}"),
            ));
        }
        let (mut spec, m) = route_spec(r, i, name, &pools, listeners, &mut out);
        let keys = LimitKeys {
            track: r.track.as_deref(),
            rate_limit: r.rate_limit.as_ref(),
            max_connections: None,
            error_limit: r.error_limit,
            over_limit: r.over_limit,
        };
        spec.limit = limit_rule(&keys, &limits, &|k| format!("route[{i}].{k}"), &mut out);
        for (id, l) in &m.listeners {
            let tcp = c.listen.get(usize::from(*id));
            if tcp.is_some_and(|t| t.mode == super::listen::Mode::Tcp) {
                out.push((
                    format!("route[{i}].listener"),
                    format!("listener {l:?} is mode = \"tcp\": no request comes through it"),
                ));
            }
        }
        routes.push(spec);
        matchers.push(m);
    }
    let table = route::Table::new(matchers);
    for (later, earlier) in table.shadowed() {
        out.push((
            format!("route[{later}]"),
            format!(
                "can never match: route {:?} (route[{earlier}]) comes first and matches every request this one would",
                routes[earlier].name
            ),
        ));
    }
    let fallback = if !c.backends.is_empty() || (c.routes.is_empty() && !pools.is_empty()) {
        Some(0)
    } else {
        None
    };
    // Each listener's address lists and limits, checked at its own keys
    // (the lists' problems reported before the limits', as each in turn).
    let mut limit_problems = Problems::new();
    let (listeners, listener_limits): (Vec<_>, Vec<Option<LimitRule>>) = (0..c.listeners.len())
        .map(|i| {
            let Some(l) = c.listen.get(i) else {
                return (None, None);
            };
            let at = |k: &str| match c.listen.len() {
                1 => format!("listen.{k}"),
                _ => format!("listen[{i}].{k}"),
            };
            let lists = ListKeys {
                allow: &l.allow_from,
                deny: &l.deny_from,
                allow_file: l.allow_from_file.as_deref(),
                deny_file: l.deny_from_file.as_deref(),
            };
            let limit = LimitKeys {
                track: l.track.as_deref(),
                rate_limit: l.rate_limit.as_ref(),
                max_connections: l.max_connections,
                error_limit: l.error_limit,
                over_limit: l.over_limit,
            };
            (
                address_rule(&lists, &at, &mut out),
                limit_rule(&limit, &limits, &at, &mut limit_problems),
            )
        })
        .unzip();
    out.extend(limit_problems);
    let mut rules = Vec::new();
    for (i, r) in listener_limits.iter().enumerate() {
        if let Some(r) = r {
            let at = match c.listen.len() {
                1 => "listen".to_string(),
                _ => format!("listen[{i}]"),
            };
            rules.push((at, *r, true));
        }
    }
    for (i, r) in routes.iter().enumerate() {
        if let Some(l) = r.limit {
            rules.push((format!("route[{i}]"), l, false));
        }
    }
    shared_table_problems(&rules, &limits, &mut out);
    let pool_names = pools
        .iter()
        .map(|p| p.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let pool_index = |n: &str| pools.iter().position(|p| p.name == n);
    let (tcp, accept_proxy) =
        super::listen::tcp_and_proxy(c.listen, &pool_index, &pool_names, &mut out);
    let mut send_proxy = vec![None; pools.len()];
    for p in c.pools {
        if let Some(i) = pool_index(&p.name) {
            send_proxy[i] = p.send_proxy;
        }
    }
    let mut tcp_only = vec![false; pools.len()];
    for t in tcp.iter().flatten() {
        let named = t.exact.iter().chain(&t.wildcard).map(|e| &e.1);
        for &i in t.default.iter().chain(named) {
            tcp_only[i] = true;
        }
    }
    for r in &routes {
        if let Action::Pool(i) = r.action {
            tcp_only[i] = false;
        }
    }
    let http_listener = c.listen.iter().any(|l| l.mode == super::listen::Mode::Http);
    if let Some(i) = fallback.filter(|_| http_listener) {
        tcp_only[i] = false;
    }
    let resolved = Resolved {
        tcp_only,
        tcp,
        accept_proxy,
        send_proxy,
        pools,
        routes,
        table,
        fallback,
        listeners,
        limits,
        listener_limits,
        names: named_backends,
    };
    (resolved, out)
}

/// The four address-list keys of a listener or a route.
struct ListKeys<'a> {
    allow: &'a [String],
    deny: &'a [String],
    allow_file: Option<&'a Path>,
    deny_file: Option<&'a Path>,
}

/// The rule the lists make (None when none is set); `at` makes a key's path.
/// A file's bad line is reported as `file:line: why` at the file's key.
fn address_rule(
    k: &ListKeys<'_>,
    at: &dyn Fn(&str) -> String,
    out: &mut Problems,
) -> Option<AddressRule> {
    let mut nets = |inline: &[String], key: &str, file: Option<&Path>| {
        let mut v = Vec::new();
        for (j, s) in inline.iter().enumerate() {
            match access::parse_net(s.trim()) {
                Ok(n) => v.push(n),
                Err(e) => out.push((format!("{}[{j}]", at(key)), e)),
            }
        }
        if let Some(f) = file {
            let key = format!("{}-file", at(key));
            match std::fs::read_to_string(f) {
                Ok(text) => match access::parse_list(&text) {
                    Ok(more) => v.extend(more),
                    Err(e) => out.push((key, format!("{}:{}: {}", f.display(), e.line, e.message))),
                },
                Err(e) => out.push((key, format!("cannot read {}: {e}", f.display()))),
            }
        }
        // An allow list set but empty (an empty file) lets nobody in.
        let set = !inline.is_empty() || file.is_some();
        set.then(|| CidrSet::new(&v))
    };
    let allow = nets(k.allow, "allow-from", k.allow_file);
    let deny = nets(k.deny, "deny-from", k.deny_file).unwrap_or_default();
    let rule = AddressRule { allow, deny };
    (!rule.is_empty()).then_some(rule)
}

/// A route's `auth-basic`: its htpasswd file read and checked.
fn auth_basic(a: &AuthBasicConfig, at: &str, out: &mut Problems) -> Option<Arc<BasicAuth>> {
    // RFC 7617 §2: the realm is a quoted-string; kept to what needs no escape.
    if a.realm
        .chars()
        .any(|c| c == '"' || c == '\\' || c.is_control())
    {
        out.push((
            format!("{at}.realm"),
            format!(
                "{:?}: no quotes, backslashes or control characters",
                a.realm
            ),
        ));
    }
    let file = &a.users;
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            out.push((
                format!("{at}.users"),
                format!("cannot read {}: {e}", file.display()),
            ));
            return None;
        }
    };
    match BasicAuth::parse(&a.realm, &text) {
        Ok(users) if users.users() == 0 => {
            out.push((
                format!("{at}.users"),
                format!(
                    "{}: no user (htpasswd -B -c {} NAME adds one)",
                    file.display(),
                    file.display()
                ),
            ));
            None
        }
        Ok(users) => Some(Arc::new(users)),
        Err(e) => {
            out.push((
                format!("{at}.users"),
                format!("{}:{}: {}", file.display(), e.line, e.message),
            ));
            None
        }
    }
}

fn route_spec(
    r: &Route,
    i: usize,
    name: String,
    pools: &[PoolSpec],
    listeners: &[String],
    out: &mut Problems,
) -> (RouteSpec, Matchers) {
    let at = |k: &str| format!("route[{i}].{k}");
    let mut m = Matchers::default();
    for (j, h) in r.host.0.iter().enumerate() {
        match Host::parse(h) {
            Ok(h) => m.hosts.push(h),
            Err(e) => out.push((format!("route[{i}].host[{j}]"), e)),
        }
    }
    for (key, list) in [("path", &r.path.0), ("path-prefix", &r.path_prefix.0)] {
        for p in list {
            if !p.starts_with('/') {
                out.push((at(key), format!("{p:?} must start with '/'")));
            }
        }
    }
    m.paths = r.path.0.clone();
    m.path_prefixes = r.path_prefix.0.clone();
    if let Some(re) = &r.path_regex {
        match Regex::new(re) {
            Ok(re) => m.path_regex = Some(re),
            Err(e) => out.push((at("path-regex"), format!("invalid regex: {e}"))),
        }
    }
    for meth in &r.method.0 {
        if meth.is_empty()
            || !meth
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        {
            out.push((
                at("method"),
                format!("{meth:?} is not a method (RFC 9110 §9.1: a token)"),
            ));
        }
    }
    m.methods = r.method.0.clone();
    m.headers = conditions(&r.headers, &at("headers"), true, out);
    m.query = conditions(&r.query, &at("query"), false, out);
    for (j, s) in r.source.0.iter().enumerate() {
        match parse_cidr(s) {
            Ok(n) => m.sources.push(n),
            Err(e) => out.push((format!("route[{i}].source[{j}]"), e)),
        }
    }
    for (j, l) in r.listener.0.iter().enumerate() {
        match listeners.iter().position(|n| n == l) {
            Some(id) => m.listeners.push((id as u16, l.clone())),
            None => out.push((
                format!("route[{i}].listener[{j}]"),
                format!(
                    "no listener named {l:?} (listeners: {})",
                    listeners.join(", ")
                ),
            )),
        }
    }
    let actions = [
        r.pool.is_some(),
        r.redirect.is_some(),
        r.respond.is_some(),
        r.deny.is_some(),
    ];
    let action = match actions.iter().filter(|&&a| a).count() {
        0 => {
            out.push((
                format!("route[{i}]"),
                "a route needs one action: pool, redirect, respond or deny".into(),
            ));
            Action::Deny(StatusCode::NOT_FOUND)
        }
        1 => action(r, i, pools, out),
        _ => {
            out.push((
                format!("route[{i}]"),
                "a route has one action: pool, redirect, respond or deny, not several".into(),
            ));
            Action::Deny(StatusCode::NOT_FOUND)
        }
    };
    if r.replace_prefix.is_some() && r.path_prefix.0.is_empty() {
        out.push((
            at("replace-prefix"),
            "replaces the path-prefix that matched: set path-prefix too".into(),
        ));
    }
    for (k, v) in [
        ("strip-prefix", &r.strip_prefix),
        ("replace-prefix", &r.replace_prefix),
    ] {
        if let Some(v) = v {
            if !v.starts_with('/') || !v.bytes().all(|b| (0x21..0x7f).contains(&b)) {
                out.push((
                    at(k),
                    format!("{v:?} must start with '/' and hold visible ASCII only"),
                ));
            }
        }
    }
    let spec = RouteSpec {
        name,
        action,
        request: edits(&r.request_headers, &at("request-headers"), out),
        response: edits(&r.response_headers, &at("response-headers"), out),
        strip_prefix: r.strip_prefix.clone(),
        replace_prefix: r.replace_prefix.clone(),
        prefixes: r.path_prefix.0.clone(),
        error_pages: error_pages(&r.error_pages, &at("error-pages"), out),
        addresses: address_rule(
            &ListKeys {
                allow: &r.allow_from,
                deny: &r.deny_from,
                allow_file: r.allow_from_file.as_deref(),
                deny_file: r.deny_from_file.as_deref(),
            },
            &at,
            out,
        ),
        auth: r
            .auth_basic
            .as_ref()
            .and_then(|a| auth_basic(a, &at("auth-basic"), out)),
        client_cert: super::tls::route_client_auth(r.client_auth, &at("client-auth"), out),
        limit: None,
    };
    (spec, m)
}

fn action(r: &Route, i: usize, pools: &[PoolSpec], out: &mut Problems) -> Action {
    let at = |k: &str| format!("route[{i}].{k}");
    let fallback = Action::Deny(StatusCode::NOT_FOUND);
    if let Some(p) = &r.pool {
        return match pools.iter().position(|x| &x.name == p) {
            Some(i) => Action::Pool(i),
            None => {
                let mut known: Vec<&str> = pools.iter().map(|p| p.name.as_str()).collect();
                known.dedup();
                out.push((
                    at("pool"),
                    format!("no pool named {p:?} (pools: {})", known.join(", ")),
                ));
                fallback
            }
        };
    }
    if let Some(rd) = &r.redirect {
        // RFC 9110 §15.4: the redirect statuses a Location goes with.
        if ![301, 302, 303, 307, 308].contains(&rd.status) {
            out.push((
                at("redirect.status"),
                format!(
                    "{} is not a redirect status (301, 302, 303, 307 or 308)",
                    rd.status
                ),
            ));
            return fallback;
        }
        if let Err(e) = check_template(&rd.location) {
            out.push((at("redirect.location"), e));
            return fallback;
        }
        return Action::Redirect {
            location: rd.location.clone(),
            status: StatusCode::from_u16(rd.status).unwrap_or(StatusCode::FOUND),
        };
    }
    if let Some(rs) = &r.respond {
        let Some(status) = StatusCode::from_u16(rs.status)
            .ok()
            .filter(|s| s.as_u16() >= 200)
        else {
            out.push((
                at("respond.status"),
                format!("{} is not a final status (200..=599)", rs.status),
            ));
            return fallback;
        };
        if !edit::valid_value(&rs.content_type) {
            out.push((at("respond.content-type"), "not a valid field value".into()));
        }
        let body = match (&rs.body, &rs.file) {
            (Some(_), Some(_)) => {
                out.push((at("respond"), "body and file exclude each other".into()));
                Bytes::new()
            }
            (Some(b), None) => Bytes::from(b.clone()),
            (None, Some(f)) => match std::fs::read(f) {
                Ok(b) => Bytes::from(b),
                Err(e) => {
                    out.push((
                        at("respond.file"),
                        format!("cannot read {}: {e}", f.display()),
                    ));
                    Bytes::new()
                }
            },
            (None, None) => Bytes::new(),
        };
        return Action::Respond {
            status,
            content_type: rs.content_type.clone(),
            body,
        };
    }
    let deny = r.deny.unwrap_or(403);
    match StatusCode::from_u16(deny)
        .ok()
        .filter(|s| s.as_u16() >= 400)
    {
        Some(s) => Action::Deny(s),
        None => {
            out.push((
                at("deny"),
                format!("{deny} is not an error status (400..=599)"),
            ));
            fallback
        }
    }
}

/// The placeholders a redirect's location may hold.
const PLACEHOLDERS: [&str; 5] = ["scheme", "host", "path", "query", "uri"];

fn check_template(t: &str) -> Result<(), String> {
    if t.is_empty() || !edit::valid_value(t) {
        return Err("must be a URL (visible characters, no spaces at either end)".into());
    }
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            return Err(format!("{t:?}: a '{{' without its '}}'"));
        };
        let name = &rest[open + 1..open + close];
        if !PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "unknown placeholder {{{name}}} (known: {{scheme}}, {{host}}, {{path}}, {{query}}, {{uri}})"
            ));
        }
        rest = &rest[open + close + 1..];
    }
    Ok(())
}

/// Fills a redirect's location: `{host}` without its port, `{query}` without
/// its `?`, `{uri}` the path and the query as sent.
pub fn fill_location(template: &str, https: bool, host: &str, target: &str) -> String {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let host = match host.rfind(':') {
        Some(i) if !host[i..].contains(']') => &host[..i],
        _ => host,
    };
    let mut out = String::with_capacity(template.len() + target.len() + host.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').map_or(rest.len(), |c| open + c);
        match &rest[open + 1..close] {
            "scheme" => out.push_str(if https { "https" } else { "http" }),
            "host" => out.push_str(host),
            "path" => out.push_str(path),
            "query" => out.push_str(query),
            "uri" => out.push_str(target),
            _ => {}
        }
        rest = rest.get(close + 1..).unwrap_or("");
    }
    out.push_str(rest);
    out
}

fn conditions(list: &[ConditionConfig], at: &str, header: bool, out: &mut Problems) -> Vec<Cond> {
    let mut v = Vec::new();
    for (j, c) in list.iter().enumerate() {
        let here = format!("{at}[{j}]");
        if c.name.is_empty() {
            out.push((format!("{here}.name"), "must not be empty".into()));
            continue;
        }
        let test = match (&c.equals, &c.regex) {
            (Some(_), Some(_)) => {
                out.push((here, "equals and regex exclude each other".into()));
                continue;
            }
            (Some(e), None) => Test::Equals(e.clone()),
            (None, Some(r)) => match Regex::new(r) {
                Ok(r) => Test::Regex(r),
                Err(e) => {
                    out.push((format!("{here}.regex"), format!("invalid regex: {e}")));
                    continue;
                }
            },
            (None, None) => Test::Present,
        };
        let name = if header {
            c.name.to_ascii_lowercase()
        } else {
            c.name.clone()
        };
        v.push(Cond { name, test });
    }
    v
}

fn edits(e: &EditsConfig, at: &str, out: &mut Problems) -> FieldEdits {
    let mut check = |key: &str, name: &str, value: Option<&str>| {
        if let Err(why) = edit::editable(name) {
            out.push((format!("{at}.{key}"), why));
        }
        if value.is_some_and(|v| !edit::valid_value(v)) {
            out.push((
                format!("{at}.{key}"),
                format!("the value for {name} is not a valid field value (RFC 9110 §5.5)"),
            ));
        }
    };
    for (n, v) in &e.set.0 {
        check("set", n, Some(v));
    }
    for (n, v) in &e.add.0 {
        check("add", n, Some(v));
    }
    for n in &e.remove {
        check("remove", n, None);
    }
    let lower = |v: &[(String, String)]| {
        v.iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
            .collect()
    };
    FieldEdits {
        remove: e.remove.iter().map(|n| n.to_ascii_lowercase()).collect(),
        set: lower(&e.set.0),
        add: lower(&e.add.0),
    }
}

fn error_pages(pages: &BTreeMap<String, PathBuf>, at: &str, out: &mut Problems) -> Vec<ErrorPage> {
    let mut v = Vec::new();
    for (status, file) in pages {
        let here = format!("{at}.{status}");
        let Some(code) = status
            .parse::<u16>()
            .ok()
            .filter(|s| (400..=599).contains(s))
        else {
            out.push((
                here,
                format!("{status:?} is not an error status (400..=599)"),
            ));
            continue;
        };
        match std::fs::read(file) {
            Ok(body) => v.push(ErrorPage {
                status: code,
                content_type: content_type_of(file),
                body: Bytes::from(body),
            }),
            Err(e) => out.push((here, format!("cannot read {}: {e}", file.display()))),
        }
    }
    v
}

fn content_type_of(file: &Path) -> &'static str {
    match file.extension().and_then(|e| e.to_str()) {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("json") => "application/json",
        _ => crate::http1::answers::ERROR_CONTENT_TYPE,
    }
}

/// Checks of a pool's sticky `cookie` and of the ids it names backends by.
fn cookie_problems(c: &StickyCookie, backends: &[Backend], pool: usize) -> Problems {
    let mut out = Problems::new();
    // RFC 6265 §4.1.1: a name is a token; a value holds cookie-octets (here
    // without `~`, the prefix mode's separator).
    let token = !c.name.is_empty()
        && c.name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
    if !token {
        out.push((
            format!("pool[{pool}].cookie.name"),
            format!(
                "{:?} is not a cookie name (RFC 6265 §4.1.1: a token)",
                c.name
            ),
        ));
    }
    if !edit::valid_value(&c.attributes) {
        out.push((
            format!("pool[{pool}].cookie.attributes"),
            "not a valid field value".into(),
        ));
    }
    for b in backends {
        let id = b.cookie_id();
        if id.is_empty()
            || !id
                .bytes()
                .all(|x| x.is_ascii_graphic() && !b"\",;\\~".contains(&x))
        {
            out.push((
                format!("pool[{pool}].cookie"),
                format!("backend {:?}: {id:?} cannot be a cookie value: give it cookie = \"<letters and digits>\"", b.name),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(prefixes: &[&str], strip: Option<&str>, replace: Option<&str>) -> RouteSpec {
        RouteSpec {
            name: "r".into(),
            action: Action::Deny(StatusCode::FORBIDDEN),
            request: FieldEdits::default(),
            response: FieldEdits::default(),
            strip_prefix: strip.map(Into::into),
            replace_prefix: replace.map(Into::into),
            prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
            error_pages: Vec::new(),
            addresses: None,
            auth: None,
            client_cert: false,
            limit: None,
        }
    }

    #[test]
    fn sticky_cookie_names_and_ids_are_checked() {
        let b = |name: &str, cookie: Option<&str>| Backend {
            name: name.into(),
            address: "198.18.0.11:80".parse().unwrap(),
            weight: 1,
            maxconn: 0,
            cookie: cookie.map(Into::into),
        };
        let c = |name: &str| StickyCookie {
            name: name.into(),
            mode: CookieMode::Insert,
            attributes: default_cookie_attributes(),
        };
        assert!(cookie_problems(
            &c("SRV"),
            &[b("198.18.0.11:80", None), b("x", Some("s1"))],
            0
        )
        .is_empty());
        let bad = cookie_problems(&c("a b"), &[b("x", Some("a;b")), b("y~z", None)], 2);
        let paths: Vec<&str> = bad.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            ["pool[2].cookie.name", "pool[2].cookie", "pool[2].cookie"],
            "{bad:?}"
        );
    }

    /// The lists and the htpasswd file are read with the file; a bad line
    /// of either is a problem at its key, naming the file and the line.
    #[test]
    fn address_lists_and_auth_basic_are_read_with_their_files() {
        use crate::config::tests::parse_str;
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("office.lst");
        let users = dir.path().join("htpasswd");
        std::fs::write(&list, "# office\n198.18.0.0/15 # lab\n").unwrap();
        let hash = bcrypt::hash("pw", 4).unwrap();
        std::fs::write(&users, format!("alice:{hash}\n")).unwrap();
        let text = format!(
            "[listen]\naddress = \"127.0.0.1:8080\"\ndeny-from = [\"198.18.0.66\", \"2001:2::/48\"]\n\
             [[pool]]\nname = \"p\"\nbackends = [\"127.0.0.1:9001\"]\n\
             [[route]]\nname = \"staff\"\npath-prefix = \"/staff/\"\npool = \"p\"\n\
             allow-from-file = \"{}\"\nauth-basic = {{ realm = \"staff\", users = \"{}\" }}\n\
             [[route]]\npool = \"p\"\n",
            list.display(),
            users.display()
        );
        let c = parse_str(&text).unwrap();
        let r = &c.resolved;
        let on_listener = r.listeners[0].as_ref().unwrap();
        assert_eq!(
            on_listener.check("198.18.0.66".parse().unwrap()),
            Err(access::Refusal::Denied)
        );
        assert_eq!(on_listener.check("198.18.0.7".parse().unwrap()), Ok(()));
        let staff = r.routes[0].addresses.as_ref().unwrap();
        assert_eq!(staff.check("198.19.1.1".parse().unwrap()), Ok(()));
        assert_eq!(
            staff.check("127.0.0.1".parse().unwrap()),
            Err(access::Refusal::NotAllowed)
        );
        let auth = r.routes[0].auth.as_ref().unwrap();
        assert_eq!((auth.realm.as_str(), auth.users()), ("staff", 1));
        assert!(r.routes[1].addresses.is_none() && r.routes[1].auth.is_none());

        std::fs::write(&list, "198.18.0.0/15\nnope\n").unwrap();
        std::fs::write(&users, "alice\n").unwrap();
        let bad = text.replace("\"198.18.0.66\"", "\"198.18.0.666\"");
        let err = parse_str(&bad).unwrap_err();
        let got: Vec<(&str, usize)> = err
            .problems()
            .iter()
            .map(|p| (p.path.as_str(), p.line))
            .collect();
        assert_eq!(
            got,
            [
                ("route[0].allow-from-file", 11),
                ("route[0].auth-basic.users", 12),
                ("listen.deny-from[0]", 3)
            ],
            "{err}"
        );
        let msgs = err.to_string();
        assert!(
            msgs.contains(&format!("{}:2: \"nope\" is not", list.display())),
            "{msgs}"
        );
        assert!(
            msgs.contains(&format!("{}:1: not a user:hash line", users.display())),
            "{msgs}"
        );
        std::fs::remove_file(&users).unwrap();
        let err = parse_str(&text).unwrap_err();
        assert!(err.to_string().contains("cannot read"), "{err}");
        let quote = text.replace("realm = \"staff\"", "realm = 'st\"aff'");
        assert!(parse_str(&quote)
            .unwrap_err()
            .to_string()
            .contains("auth-basic.realm"));
    }

    #[test]
    fn path_rewrites_keep_the_query() {
        let s = spec(&[], Some("/api"), None);
        assert_eq!(
            s.rewrite_target("/api/users?id=1").as_deref(),
            Some("/users?id=1")
        );
        assert_eq!(s.rewrite_target("/api").as_deref(), Some("/"));
        assert_eq!(s.rewrite_target("/other"), None);
        let r = spec(&["/old/", "/old/deep/"], None, Some("/new/"));
        assert_eq!(
            r.rewrite_target("/old/deep/x?q").as_deref(),
            Some("/new/x?q")
        );
        assert_eq!(r.rewrite_target("/old/a").as_deref(), Some("/new/a"));
    }

    #[test]
    fn locations_filled_from_the_request() {
        let t = "https://{host}{uri}";
        assert_eq!(
            fill_location(t, false, "shop.example:8080", "/a?b=1"),
            "https://shop.example/a?b=1"
        );
        assert_eq!(
            fill_location(
                "{scheme}://new.example{path}?from={query}",
                true,
                "h",
                "/p?x"
            ),
            "https://new.example/p?from=x"
        );
        assert_eq!(
            fill_location("https://[2001:2::1]/", false, "[2001:2::1]:80", "/"),
            "https://[2001:2::1]/"
        );
        assert!(check_template("https://{host}{nope}")
            .unwrap_err()
            .contains("{nope}"));
        assert!(check_template("https://{host").is_err());
    }
}
