//! A request's route acted on, the same for HTTP/1 and HTTP/2: the pool it
//! goes to (its request edited as the route says), or the answer floatlb
//! gives itself (a redirect, a page, a refusal, a 429 for a client over its
//! limits, or a 404 when no route matches); and the error pages of a route
//! or a pool for floatlb's own errors. Also the per-client tables' I/O edge:
//! their clock, a listener's connection count, a request's answer counted.
//! Not for: which route matches (`route`), the exchange with a backend (`exchange`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;

use crate::access::basic::Verdict;
use crate::access::track::{self, Key, Limit, Micros, Table};
use crate::access::Refusal;
use crate::backend::BackendState;
use crate::config::{
    Action, CookieMode, LimitRule, OverLimit, PoolSpec, RouteSpec, StickyCookie, TrackKey,
};
use crate::error::{Error, Kind, Phase, Side};
use crate::http1::edit::{map_cookie, FieldEdits};
use crate::http1::request::{Prepared, NO_ROUTE};
use crate::proxy::state::{Shared, Snapshot};
use crate::proxy::{fail, Failure};

/// Where a request goes.
pub struct Dispatch {
    /// Its route, if one matched.
    pub route: Option<usize>,
    /// Its pool, or the answer it gets here.
    pub to: Result<usize, Failure>,
    /// The backend the client's sticky cookie names (its cookie id).
    pub sticky: Option<String>,
    /// The tables the request was counted in.
    pub tracked: Tracked,
}

impl Dispatch {
    pub fn pool(&self) -> Option<usize> {
        self.to.as_ref().ok().copied()
    }
}

/// Acts on the route `prepare` found for `req` (from a client at `peer` on
/// listener `listener`): refuses a client the listener's or the route's
/// lists or basic auth refuse, else edits the request for its pool, or makes
/// the answer the route gives.
pub fn dispatch(
    snap: &Snapshot,
    shared: &Shared,
    (peer, listener): (SocketAddr, u16),
    req: &mut Prepared,
    https: bool,
    verified_client: bool,
) -> Dispatch {
    let resolved = &snap.config.resolved;
    let on_listener = resolved
        .listeners
        .get(usize::from(listener))
        .and_then(Option::as_ref);
    if let Some(Err(why)) = on_listener.map(|rule| rule.check(peer.ip())) {
        return Dispatch {
            route: None,
            to: Err(refuse(shared, peer, why, "this listener")),
            sticky: None,
            tracked: Tracked::default(),
        };
    }
    let mut tracked = Tracked::default();
    let listener_limit = resolved
        .listener_limits
        .get(usize::from(listener))
        .and_then(Option::as_ref);
    if let Some(rule) = listener_limit {
        if let Some(f) = limited(snap, shared, peer, rule, req, &mut tracked, None) {
            return Dispatch {
                route: None,
                to: Err(f),
                sticky: None,
                tracked,
            };
        }
    }
    let Some(spec) = (req.route != NO_ROUTE)
        .then(|| resolved.routes.get(req.route as usize))
        .flatten()
    else {
        let to = match resolved.fallback {
            Some(pool) => Ok(pool),
            None => Err(fail(
                shared,
                peer,
                Error::new(
                    Side::Proxy,
                    Phase::Request,
                    Kind::Denied,
                    StatusCode::NOT_FOUND,
                    "no route matches this request",
                ),
            )),
        };
        let sticky = to
            .as_ref()
            .ok()
            .and_then(|&p| sticky_of(&resolved.pools[p], req));
        return Dispatch {
            route: None,
            to,
            sticky,
            tracked,
        };
    };
    let route = Some(req.route as usize);
    if let Some(hits) = snap.route_hits.get(req.route as usize) {
        hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    if let Some(mut f) = guard(snap, shared, peer, spec, req, &mut tracked, verified_client) {
        error_page(snap, route, None, &mut f);
        return Dispatch {
            route,
            to: Err(f),
            sticky: None,
            tracked,
        };
    }
    let to = match &spec.action {
        Action::Pool(pool) => {
            if spec.edits_request() {
                let target = spec.rewrite_target(req.target());
                req.rewrite(target.as_deref(), &spec.request);
            }
            Ok(*pool)
        }
        Action::Redirect { location, status } => {
            let host = req.host().unwrap_or("").to_string();
            let location = crate::config::fill_location(location, https, &host, req.target());
            let mut f = Failure::local(*status, Bytes::new(), String::new());
            f.location = Some(location);
            Err(f)
        }
        Action::Respond {
            status,
            content_type,
            body,
        } => Err(Failure::local(*status, body.clone(), content_type.clone())),
        Action::Deny(status) => Err(fail(
            shared,
            peer,
            Error::new(
                Side::Proxy,
                Phase::Request,
                Kind::Denied,
                *status,
                format!("denied by route {}", spec.name),
            ),
        )),
    };
    let sticky = to
        .as_ref()
        .ok()
        .and_then(|&p| sticky_of(&resolved.pools[p], req));
    let mut d = Dispatch {
        route,
        to,
        sticky,
        tracked,
    };
    if let Err(f) = &mut d.to {
        error_page(snap, route, None, f);
    }
    d
}

/// The route's address lists, its client-certificate requirement, its
/// per-client limits (before bcrypt, which they also guard), then its basic
/// auth: the answer to a client they refuse (403; 429 over a limit; 401
/// with a challenge for missing or wrong credentials).
fn guard(
    snap: &Snapshot,
    shared: &Shared,
    peer: SocketAddr,
    spec: &RouteSpec,
    req: &Prepared,
    tracked: &mut Tracked,
    verified_client: bool,
) -> Option<Failure> {
    if let Some(Err(why)) = spec.addresses.as_ref().map(|rule| rule.check(peer.ip())) {
        return Some(refuse(shared, peer, why, &format!("route {}", spec.name)));
    }
    if spec.client_cert && !verified_client {
        let why = format!("route {} requires a verified client certificate", spec.name);
        let e = Error::new(
            Side::Proxy,
            Phase::Request,
            Kind::Denied,
            StatusCode::FORBIDDEN,
            why,
        );
        return Some(fail(shared, peer, e));
    }
    if let Some(rule) = &spec.limit {
        if let Some(f) = limited(snap, shared, peer, rule, req, tracked, Some(&spec.name)) {
            return Some(f);
        }
    }
    let auth = spec.auth.as_ref()?;
    let field = crate::http1::fields::head_field(&req.out, "authorization");
    let verdict = match auth.check(field) {
        Verdict::Pass => Ok(()),
        Verdict::Refuse(why) => Err(why),
        Verdict::Verify(pending) => off_the_reactor(|| pending.verify()),
    };
    let why = verdict.err()?;
    let mut f = refuse(shared, peer, why, &format!("route {}", spec.name));
    f.challenge = Some(auth.challenge());
    Some(f)
}

/// A refusal by `whom`'s lists or auth, counted by its reason: 403, or 401
/// for credentials; termination `PR`.
fn refuse(shared: &Shared, peer: SocketAddr, why: Refusal, whom: &str) -> Failure {
    if let Some(n) = shared.stats.refused.get(why.index()) {
        n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    let ip = peer.ip();
    let (status, reason) = match why {
        Refusal::Denied => (
            StatusCode::FORBIDDEN,
            format!("client {ip} is in the deny-from list of {whom}"),
        ),
        Refusal::NotAllowed => (
            StatusCode::FORBIDDEN,
            format!("client {ip} is not in the allow-from list of {whom}"),
        ),
        Refusal::NoCredentials => (
            StatusCode::UNAUTHORIZED,
            format!("{whom} asks for a user and password"),
        ),
        Refusal::BadCredentials => (
            StatusCode::UNAUTHORIZED,
            format!("wrong user or password for {whom}"),
        ),
    };
    let e = Error::new(Side::Proxy, Phase::Request, Kind::Denied, status, reason);
    fail(shared, peer, e)
}

/// The per-client tables' clock: microseconds since the process first read
/// it (monotonic, so a wall-clock step neither frees nor locks out clients).
pub fn clock() -> Micros {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    EPOCH
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_micros() as Micros
}

/// The client a table tells `req` apart by: its address, or the value of the
/// table's header or cookie (None when the request has none: not tracked).
fn client_key(table: &Table, key: &TrackKey, peer: IpAddr, req: &Prepared) -> Option<Key> {
    match key {
        TrackKey::Address => Some(table.address(peer)),
        TrackKey::Header(h) => crate::http1::fields::head_field(&req.out, h).map(|v| table.text(v)),
        TrackKey::Cookie(c) => crate::http1::fields::cookie(&req.out, c).map(|v| table.text(v)),
    }
}

/// Counts `req` in `rule`'s table and holds it to the rule: the 429 (with
/// Retry-After, RFC 6585 §4) of a client over a limit, termination `PR`.
/// `route`: the rule's route (None: its listener's).
fn limited(
    snap: &Snapshot,
    shared: &Shared,
    peer: SocketAddr,
    rule: &LimitRule,
    req: &Prepared,
    tracked: &mut Tracked,
    route: Option<&str>,
) -> Option<Failure> {
    let table = snap.limits.get(rule.table)?;
    let spec = snap.config.resolved.limits.get(rule.table)?;
    let key = client_key(table, &spec.key, peer.ip(), req)?;
    tracked.add(rule.table, key);
    let track::Verdict::Limited { limit, retry_after } = table.request(key, clock(), &rule.rules)
    else {
        return None;
    };
    let what = match limit {
        Limit::Rate => "request rate",
        Limit::Errors => "error rate",
        Limit::Connections => "connections",
    };
    let whom = match route {
        Some(name) => format!("route {name}"),
        None => "this listener".into(),
    };
    let reason = format!(
        "client {} is over the {what} {whom} allows (limit {})",
        peer.ip(),
        spec.name
    );
    let e = Error::new(
        Side::Proxy,
        Phase::Request,
        Kind::Denied,
        StatusCode::TOO_MANY_REQUESTS,
        reason,
    );
    let mut f = fail(shared, peer, e);
    f.retry_after = Some(track::retry_after_secs(retry_after));
    if rule.over == OverLimit::Tarpit {
        f.hold = Some(spec.tarpit);
    }
    Some(f)
}

/// The tables a request was counted in (a listener's, a route's), so that
/// its answer can count as an error there. Packed (56 bytes): every
/// connection's task holds one while its request is answered.
#[derive(Debug, Clone, Copy)]
pub struct Tracked {
    /// Table indexes; `NONE` for an empty slot.
    tables: [u16; 2],
    keys: [Key; 2],
}

impl Default for Tracked {
    fn default() -> Self {
        Tracked {
            tables: [Tracked::NONE; 2],
            keys: [Key::default(); 2],
        }
    }
}

impl Tracked {
    const NONE: u16 = u16::MAX;

    fn add(&mut self, table: usize, key: Key) {
        if let Some(i) = self.tables.iter().position(|&t| t == Tracked::NONE) {
            self.tables[i] = u16::try_from(table).unwrap_or(Tracked::NONE);
            self.keys[i] = key;
        }
    }

    /// The request was answered `status`: 400 and over counts as an error
    /// (HAProxy's `http_err_rate` counts the 4xx; a 5xx is an error too).
    pub fn answered(&self, snap: &Snapshot, status: u16) {
        if status < 400 {
            return;
        }
        for (&table, &key) in self.tables.iter().zip(&self.keys) {
            if let Some(t) = snap.limits.get(usize::from(table)) {
                t.error(key, clock());
            }
        }
    }
}

/// A client connection counted in its listener's table, until dropped.
pub struct Connection {
    table: Arc<Table>,
    key: Key,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.table.close(self.key, clock());
    }
}

/// What becomes of a connection a listener accepted.
pub enum Admitted {
    /// Served, and counted in the listener's table until dropped.
    Counted(Connection),
    /// Served: its listener tracks no address-keyed table, or the table is full.
    Uncounted,
    /// Closed: the client has its `max-connections` open already.
    Refused,
}

/// A connection from `peer` accepted on listener `listener`: counted in the
/// listener's address-keyed table, if it tracks one, and held to its
/// `max-connections`.
pub fn connected(shared: &Shared, listener: u16, peer: IpAddr) -> Admitted {
    let snap = shared.live.load();
    let resolved = &snap.config.resolved;
    let Some(rule) = resolved
        .listener_limits
        .get(usize::from(listener))
        .and_then(Option::as_ref)
    else {
        return Admitted::Uncounted;
    };
    let (Some(table), Some(spec)) = (snap.limits.get(rule.table), resolved.limits.get(rule.table))
    else {
        return Admitted::Uncounted;
    };
    if spec.key != TrackKey::Address {
        return Admitted::Uncounted;
    }
    let key = table.address(peer);
    match table.connect(key, clock(), rule.max_connections) {
        track::Verdict::Pass => Admitted::Counted(Connection {
            table: table.clone(),
            key,
        }),
        track::Verdict::Untracked => Admitted::Uncounted,
        track::Verdict::Limited { .. } => {
            tracing::debug!(client = %peer, limit = %spec.name, "connection refused: max-connections");
            Admitted::Refused
        }
    }
}

/// `floatlb route`'s line for the limits `whom` holds its clients to (the
/// counts live in the running process: a 429 depends on them).
fn limits_line(whom: &str, rule: &LimitRule, snap: &Snapshot) -> String {
    let spec = &snap.config.resolved.limits[rule.table];
    let mut rules = Vec::new();
    if rule.rules.rate.is_some() {
        rules.push("rate-limit".to_string());
    }
    if rule.max_connections > 0 {
        rules.push(format!(
            "max-connections {}, closed at accept",
            rule.max_connections
        ));
    }
    if let Some(n) = rule.rules.errors {
        rules.push(format!("error-limit {n}"));
    }
    let over = match rule.over {
        OverLimit::Refuse => "429",
        OverLimit::Tarpit => "429 after a tarpit",
    };
    format!(
        "limits: {whom} tracks [[limit]] {:?} by {} ({}); a request over a limit: {over}",
        spec.name,
        crate::config::key_text(&spec.key),
        if rules.is_empty() {
            "counted only".to_string()
        } else {
            rules.join(", ")
        }
    )
}

/// Runs `f`, which holds the thread for milliseconds (bcrypt), letting the
/// runtime move this worker's other tasks to another thread meanwhile.
fn off_the_reactor<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Puts the error page of the request's route (else of its pool) for the
/// answer's status in place of its text, if there is one.
pub fn error_page(snap: &Snapshot, route: Option<usize>, pool: Option<usize>, f: &mut Failure) {
    if f.location.is_some() || !f.status.is_client_error() && !f.status.is_server_error() {
        return;
    }
    if let Some(page) = snap
        .config
        .resolved
        .error_page(route, pool, f.status.as_u16())
    {
        f.body = page.body.clone();
        f.content_type = page.content_type.into();
    }
}

/// The backend a request's sticky cookie names, for a pool with `cookie`;
/// in `prefix` mode the cookie loses the backend's part before the backend
/// gets it.
fn sticky_of(spec: &PoolSpec, req: &mut Prepared) -> Option<String> {
    let c = spec.cookie.as_ref()?;
    let value = crate::http1::fields::cookie(&req.out, &c.name)?;
    match c.mode {
        CookieMode::Insert => Some(String::from_utf8_lossy(value).into_owned()),
        CookieMode::Prefix => {
            let at = value.iter().position(|&b| b == b'~')?;
            let id = String::from_utf8_lossy(&value[..at]).into_owned();
            map_cookie(&mut req.out, "cookie", &c.name, |v| {
                v.iter()
                    .position(|&b| b == b'~')
                    .map_or(v, |i| &v[i + 1..])
                    .to_vec()
            });
            Some(id)
        }
    }
}

/// What floatlb changes in a backend's answer for the request's route and pool.
#[derive(Default)]
pub struct AnswerEdits<'a> {
    /// The route's `response-headers`.
    fields: Option<&'a FieldEdits>,
    /// The pool's sticky cookie, and the id of the backend that answered.
    cookie: Option<(&'a StickyCookie, &'a str)>,
    /// Insert mode: the client's cookie does not name that backend yet.
    insert: bool,
}

/// The edits of a backend's answer to a request of `route` in `pool` that
/// `backend` answered, the client's sticky cookie naming `sticky`.
pub fn answer_edits<'a>(
    snap: &'a Snapshot,
    route: Option<usize>,
    pool: Option<usize>,
    sticky: Option<&str>,
    backend: &BackendState,
) -> AnswerEdits<'a> {
    let resolved = &snap.config.resolved;
    let fields = route
        .and_then(|r| resolved.routes.get(r))
        .map(|r| &r.response)
        .filter(|e| !e.is_empty());
    let cookie = pool.and_then(|p| resolved.pools.get(p)).and_then(|spec| {
        let c = spec.cookie.as_ref()?;
        let b = spec.backends.iter().find(|b| b.name == backend.name)?;
        Some((c, b.cookie_id()))
    });
    let insert = cookie.is_some_and(|(c, id)| c.mode == CookieMode::Insert && sticky != Some(id));
    AnswerEdits {
        fields,
        cookie,
        insert,
    }
}

impl AnswerEdits<'_> {
    pub fn is_empty(&self) -> bool {
        self.fields.is_none() && self.cookie.is_none()
    }

    /// Applies them to an HTTP/1 answer head.
    pub fn apply(&self, head: &mut Vec<u8>) {
        if let Some(e) = self.fields {
            e.apply(head);
        }
        match self.cookie {
            Some((c, id)) if self.insert => FieldEdits {
                add: vec![("set-cookie".into(), inserted(c, id))],
                ..FieldEdits::default()
            }
            .apply(head),
            Some((c, id)) if c.mode == CookieMode::Prefix => {
                map_cookie(head, "set-cookie", &c.name, |v| {
                    [id.as_bytes(), b"~", v].concat()
                })
            }
            _ => {}
        }
    }

    /// Applies them to an HTTP/2 answer's fields (RFC 9110 §5.3).
    pub fn apply_map(&self, headers: &mut http::HeaderMap) {
        use http::header::{HeaderName, HeaderValue, SET_COOKIE};
        if let Some(e) = self.fields {
            for name in e.remove.iter().chain(e.set.iter().map(|(n, _)| n)) {
                if let Ok(n) = HeaderName::from_bytes(name.as_bytes()) {
                    headers.remove(n);
                }
            }
            for (name, value) in e.set.iter().chain(&e.add) {
                if let (Ok(n), Ok(v)) = (
                    HeaderName::from_bytes(name.as_bytes()),
                    HeaderValue::from_str(value),
                ) {
                    headers.append(n, v);
                }
            }
        }
        match self.cookie {
            Some((c, id)) if self.insert => {
                if let Ok(v) = HeaderValue::from_str(&inserted(c, id)) {
                    headers.append(SET_COOKIE, v);
                }
            }
            Some((c, id)) if c.mode == CookieMode::Prefix => {
                let old: Vec<HeaderValue> = headers.get_all(SET_COOKIE).iter().cloned().collect();
                headers.remove(SET_COOKIE);
                for v in old {
                    let text = v.as_bytes();
                    let name = text
                        .split(|&b| b == b'=')
                        .next()
                        .unwrap_or(b"")
                        .trim_ascii();
                    let new = if name == c.name.as_bytes() {
                        let eq = text.iter().position(|&b| b == b'=').unwrap_or(0);
                        let value: Vec<u8> =
                            [&text[..=eq], id.as_bytes(), b"~", &text[eq + 1..]].concat();
                        HeaderValue::from_bytes(&value).unwrap_or(v)
                    } else {
                        v
                    };
                    headers.append(SET_COOKIE, new);
                }
            }
            _ => {}
        }
    }
}

/// The Set-Cookie value floatlb inserts: `name=id; attributes`.
fn inserted(c: &StickyCookie, id: &str) -> String {
    if c.attributes.is_empty() {
        format!("{}={id}", c.name)
    } else {
        format!("{}={id}; {}", c.name, c.attributes)
    }
}

/// The router `prepare` asks: the index of the first route `seen` matches
/// in `snap` (for a client at `peer` on listener `listener`), or [`NO_ROUTE`].
pub fn router(
    snap: &Snapshot,
    peer: SocketAddr,
    listener: u16,
) -> impl FnOnce(&crate::http1::request::Seen<'_>) -> u32 + '_ {
    move |seen| {
        let table = &snap.config.resolved.table;
        if table.is_empty() {
            return NO_ROUTE;
        }
        let req = crate::route::Request {
            seen,
            peer: peer.ip(),
            listener,
        };
        table.pick(&req).map_or(NO_ROUTE, |i| i as u32)
    }
}

/// `floatlb route`: which route a request would take in `snap` and why each
/// earlier one does not match, then what the route does: its pool and the
/// backend the pool's scheduler would pick now, or the answer it gives.
pub fn explain(
    snap: &Snapshot,
    method: &str,
    url: &str,
    headers: &[(String, String)],
    peer: std::net::IpAddr,
    listener: u16,
) -> Result<Vec<String>, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let https = uri.scheme_str() == Some("https");
    let authority = uri.authority().map(|a| a.as_str().to_string());
    let target = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let fields: Vec<httparse::Header<'_>> = headers
        .iter()
        .map(|(n, v)| httparse::Header {
            name: n,
            value: v.as_bytes(),
        })
        .collect();
    let host_field = fields
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("host"))
        .map(|h| h.value);
    let host = authority.as_deref().map(str::as_bytes).or(host_field);
    let host_text = host.map_or(String::new(), |h| String::from_utf8_lossy(h).into_owned());
    let seen = crate::http1::request::Seen {
        method,
        host,
        target: &target,
        headers: &fields,
    };
    let resolved = &snap.config.resolved;
    let mut out = Vec::new();
    let on_listener = resolved
        .listeners
        .get(usize::from(listener))
        .and_then(Option::as_ref);
    if let Some(Err(why)) = on_listener.map(|rule| rule.check(peer)) {
        out.push(format!(
            "answer: 403 from the listener's address lists (client {peer}: {})",
            why.label()
        ));
        return Ok(out);
    }
    let listener_limit = resolved
        .listener_limits
        .get(usize::from(listener))
        .and_then(Option::as_ref);
    if let Some(rule) = listener_limit {
        out.push(limits_line("the listener", rule, snap));
    }
    let trace = resolved.table.trace(&crate::route::Request {
        seen: &seen,
        peer,
        listener,
    });
    let mut matched = None;
    for (i, why) in trace {
        let name = &resolved.routes[i].name;
        match why {
            Some(why) => out.push(format!("route[{i}] {name:?}: no match: {why}")),
            None => {
                out.push(format!("route[{i}] {name:?}: matches"));
                matched = Some(i);
            }
        }
    }
    if let Some(r) = matched.map(|i| &resolved.routes[i]) {
        if let Some(Err(why)) = r.addresses.as_ref().map(|rule| rule.check(peer)) {
            out.push(format!(
                "answer: 403 from the route's address lists (client {peer}: {})",
                why.label()
            ));
            return Ok(out);
        }
        if r.client_cert {
            out.push("client-auth: required: 403 without a verified client certificate".into());
        }
        if let Some(rule) = &r.limit {
            out.push(limits_line("the route", rule, snap));
        }
        if let Some(a) = &r.auth {
            out.push(format!(
                "auth-basic: realm {:?}, {} users: 401 without a valid user and password",
                a.realm,
                a.users()
            ));
        }
    }
    let pool = match matched.map(|i| &resolved.routes[i]) {
        None => match resolved.fallback {
            Some(p) => {
                out.push(format!(
                    "no route matches: the fallback pool {:?}",
                    resolved.pools[p].name
                ));
                p
            }
            None => {
                out.push("no route matches: 404".into());
                return Ok(out);
            }
        },
        Some(r) => match &r.action {
            Action::Pool(p) => {
                if let Some(t) = r.rewrite_target(&target) {
                    out.push(format!("target rewritten: {t}"));
                }
                *p
            }
            Action::Redirect { location, status } => {
                let to = crate::config::fill_location(location, https, &host_text, &target);
                out.push(format!("answer: {} redirect to {to}", status.as_u16()));
                return Ok(out);
            }
            Action::Respond { status, body, .. } => {
                out.push(format!(
                    "answer: {} with a {}-byte body",
                    status.as_u16(),
                    body.len()
                ));
                return Ok(out);
            }
            Action::Deny(status) => {
                out.push(format!("answer: {} (denied)", status.as_u16()));
                return Ok(out);
            }
        },
    };
    let spec = &resolved.pools[pool];
    out.push(format!("pool: {}", spec.name));
    // The fields as a head, for the schedulers that hash one (`header`, `cookie`).
    let mut head = format!("{method} {target} HTTP/1.1\r\n");
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let key = crate::balance::RequestKey {
        client_ip: peer,
        path_and_query: &target,
        value: super::hashed_value(spec, head.as_bytes()),
    };
    match super::pick_now(snap, pool, &key) {
        Some(b) => out.push(format!(
            "backend: {} ({})",
            spec.backends[b].name, spec.backends[b].address
        )),
        None => out.push("backend: none eligible".into()),
    }
    Ok(out)
}
