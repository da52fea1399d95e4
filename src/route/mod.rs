//! Routes: which `[[route]]` a request belongs to. Sans-IO: a request's
//! method, Host, target, fields and client address in, the index of the first
//! route (in file order) whose matchers all match out.
//!
//! A route's matchers are ANDed; the values of one matcher are ORed (`host =
//! ["a", "*.b"]` is either). `path`, `path-prefix` and `path-regex` together
//! form one path matcher. Host routes are found by a hash lookup of the
//! request's host and of each of its dot-suffixes (for `*.suffix`), and
//! host-less routes whose path matcher is prefixes only by walking the path
//! through a byte trie, so the cost of a pick grows with neither the number of
//! host routes nor that of prefix routes; the candidates these give are tried
//! in file order, merged with the other host-less routes. Also here: why a route did not
//! match (for `floatlb route`), and whether an earlier route covers every
//! request a later one could match (a shadowed rule, for `floatlb check`).
//! Not for: what a route does (config, proxy) or parsing HTTP (http1).

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use regex::Regex;

use crate::http1::request::Seen;

/// Longest host name looked up (DNS names are at most 253 bytes).
const MAX_HOST: usize = 255;

/// One host pattern, lower case, without a trailing dot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// `shop.example`.
    Exact(String),
    /// `*.shop.example`, kept as `.shop.example`: any name that ends with it
    /// (any depth of subdomain), not the bare `shop.example`.
    Suffix(String),
}

impl Host {
    /// Parses a `host` value: a name, or `*.` and a name.
    pub fn parse(s: &str) -> Result<Host, String> {
        let lower = s.trim().trim_end_matches('.').to_ascii_lowercase();
        let (name, wild) = match lower.strip_prefix("*.") {
            Some(rest) => (rest, true),
            None => (lower.as_str(), false),
        };
        let ok = !name.is_empty()
            && name.len() <= MAX_HOST - 2
            && name.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':' | b'[' | b']')
            })
            && !name.starts_with('.')
            && !name.contains("..");
        if !ok {
            return Err(format!(
                "{s:?} is not a host name (a name such as shop.example, or *.example for any subdomain)"
            ));
        }
        let bare = name.strip_prefix('[').and_then(|n| n.strip_suffix(']'));
        if bare.is_none() && (name.contains(':') || name.contains('[')) {
            return Err(format!(
                "{s:?}: a host pattern has no port (the request's port is not compared); an IPv6 address goes in brackets"
            ));
        }
        Ok(if wild {
            Host::Suffix(format!(".{name}"))
        } else {
            Host::Exact(name.to_string())
        })
    }

    fn matches(&self, host: &[u8]) -> bool {
        match self {
            Host::Exact(h) => host == h.as_bytes(),
            Host::Suffix(s) => host.len() > s.len() && host.ends_with(s.as_bytes()),
        }
    }

    /// Every host this one matches, the other matches too.
    fn covered_by(&self, other: &Host) -> bool {
        match (self, other) {
            (Host::Exact(a), b) => b.matches(a.as_bytes()),
            (Host::Suffix(a), Host::Suffix(b)) => a.ends_with(b.as_str()),
            (Host::Suffix(_), Host::Exact(_)) => false,
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Exact(h) => f.write_str(h),
            Host::Suffix(s) => write!(f, "*{s}"),
        }
    }
}

/// What a header or query condition asks of a value.
#[derive(Debug, Clone)]
pub enum Test {
    Present,
    Equals(String),
    Regex(Regex),
}

impl Test {
    fn accepts(&self, value: &[u8]) -> bool {
        match self {
            Test::Present => true,
            Test::Equals(v) => value == v.as_bytes(),
            Test::Regex(r) => std::str::from_utf8(value).is_ok_and(|v| r.is_match(v)),
        }
    }

    /// Every value this test accepts, `other` accepts too.
    fn covered_by(&self, other: &Test) -> bool {
        match (self, other) {
            (_, Test::Present) => true,
            (Test::Equals(a), t) => t.accepts(a.as_bytes()),
            (Test::Regex(a), Test::Regex(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

/// A request field (or query parameter) that must be there, and what its value must be.
#[derive(Debug, Clone)]
pub struct Condition {
    /// Lower case for a header; as written for a query parameter.
    pub name: String,
    pub test: Test,
}

/// The matchers of one route; empty ones match everything.
#[derive(Debug, Clone, Default)]
pub struct Matchers {
    pub hosts: Vec<Host>,
    pub paths: Vec<String>,
    pub path_prefixes: Vec<String>,
    pub path_regex: Option<Regex>,
    pub methods: Vec<String>,
    pub headers: Vec<Condition>,
    pub query: Vec<Condition>,
    /// Client address ranges (address, prefix length).
    pub sources: Vec<(IpAddr, u8)>,
    /// Listeners the request must have come in on (id, name).
    pub listeners: Vec<(u16, String)>,
}

/// The first matcher a request failed, for `floatlb route`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    Host,
    Path,
    Method,
    Header(usize),
    Query(usize),
    Source,
    Listener,
}

/// A request as routes see it.
pub struct Request<'a> {
    pub seen: &'a Seen<'a>,
    pub peer: IpAddr,
    /// The id of the listener it came in on.
    pub listener: u16,
}

impl Request<'_> {
    fn path(&self) -> &str {
        let t = self.seen.target;
        t.split_once('?').map_or(t, |(p, _)| p)
    }

    fn query(&self) -> &str {
        self.seen.target.split_once('?').map_or("", |(_, q)| q)
    }
}

impl Matchers {
    fn has_path(&self) -> bool {
        !self.paths.is_empty() || !self.path_prefixes.is_empty() || self.path_regex.is_some()
    }

    /// The first matcher `req` fails, or None when the route matches.
    /// `host` is the request's host, normalised ([`normalise_host`]).
    pub fn first_miss(&self, req: &Request<'_>, host: Option<&[u8]>) -> Option<Miss> {
        if !self.hosts.is_empty() && !host.is_some_and(|h| self.hosts.iter().any(|p| p.matches(h)))
        {
            return Some(Miss::Host);
        }
        if self.has_path() {
            let path = req.path();
            let hit = self.paths.iter().any(|p| p == path)
                || self
                    .path_prefixes
                    .iter()
                    .any(|p| path.starts_with(p.as_str()))
                || self.path_regex.as_ref().is_some_and(|r| r.is_match(path));
            if !hit {
                return Some(Miss::Path);
            }
        }
        if !self.methods.is_empty() && !self.methods.iter().any(|m| m == req.seen.method) {
            return Some(Miss::Method);
        }
        for (i, c) in self.headers.iter().enumerate() {
            let hit = req
                .seen
                .headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case(&c.name))
                .any(|h| c.test.accepts(h.value.trim_ascii()));
            if !hit {
                return Some(Miss::Header(i));
            }
        }
        if !self.query.is_empty() {
            let query = req.query();
            for (i, c) in self.query.iter().enumerate() {
                let hit = query
                    .split('&')
                    .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
                    .filter(|(k, _)| *k == c.name)
                    .any(|(_, v)| c.test.accepts(v.as_bytes()));
                if !hit {
                    return Some(Miss::Query(i));
                }
            }
        }
        if !self.sources.is_empty()
            && !self
                .sources
                .iter()
                .any(|&(net, len)| in_net(req.peer, net, len))
        {
            return Some(Miss::Source);
        }
        if !self.listeners.is_empty() && !self.listeners.iter().any(|(id, _)| *id == req.listener) {
            return Some(Miss::Listener);
        }
        None
    }

    /// Says why a request failed `miss`, for a person.
    pub fn explain(&self, miss: Miss, req: &Request<'_>, host: Option<&[u8]>) -> String {
        let list = |v: &mut dyn Iterator<Item = String>| v.collect::<Vec<_>>().join(", ");
        match miss {
            Miss::Host => format!(
                "host {} is not {}",
                host.map_or("(none)".into(), |h| String::from_utf8_lossy(h).into_owned()),
                list(&mut self.hosts.iter().map(|h| h.to_string()))
            ),
            Miss::Path => {
                let mut alts: Vec<String> = self.paths.iter().map(|p| format!("= {p}")).collect();
                alts.extend(self.path_prefixes.iter().map(|p| format!("prefix {p}")));
                alts.extend(
                    self.path_regex
                        .iter()
                        .map(|r| format!("regex {}", r.as_str())),
                );
                format!("path {} is not {}", req.path(), alts.join(", "))
            }
            Miss::Method => format!(
                "method {} is not {}",
                req.seen.method,
                list(&mut self.methods.iter().cloned())
            ),
            Miss::Header(i) => format!("header {}", describe(&self.headers[i])),
            Miss::Query(i) => format!("query parameter {}", describe(&self.query[i])),
            Miss::Source => format!(
                "client {} is not in {}",
                req.peer,
                list(&mut self.sources.iter().map(|(a, l)| format!("{a}/{l}")))
            ),
            Miss::Listener => format!(
                "it came in on listener {} (not {})",
                req.listener,
                list(&mut self.listeners.iter().map(|(id, n)| format!("{n} ({id})")))
            ),
        }
    }

    /// Every request `later` matches, `self` matches too: a route with
    /// `self`'s matchers placed before `later` leaves it nothing. Judged
    /// conservatively: true only when it can be shown.
    pub fn covers(&self, later: &Matchers) -> bool {
        let hosts = self.hosts.is_empty()
            || (!later.hosts.is_empty()
                && later
                    .hosts
                    .iter()
                    .all(|b| self.hosts.iter().any(|a| b.covered_by(a))));
        let paths = !self.has_path()
            || (later.has_path()
                && later.path_regex.as_ref().is_none_or(|r| {
                    self.path_regex
                        .as_ref()
                        .is_some_and(|a| a.as_str() == r.as_str())
                })
                && later.paths.iter().all(|p| {
                    self.paths.contains(p)
                        || self.path_prefixes.iter().any(|q| p.starts_with(q.as_str()))
                        || self.path_regex.as_ref().is_some_and(|r| r.is_match(p))
                })
                && later
                    .path_prefixes
                    .iter()
                    .all(|p| self.path_prefixes.iter().any(|q| p.starts_with(q.as_str()))));
        let methods = self.methods.is_empty()
            || (!later.methods.is_empty()
                && later.methods.iter().all(|m| self.methods.contains(m)));
        let conditions = |mine: &[Condition], theirs: &[Condition]| {
            mine.iter().all(|a| {
                theirs
                    .iter()
                    .any(|b| a.name == b.name && b.test.covered_by(&a.test))
            })
        };
        let sources = self.sources.is_empty()
            || (!later.sources.is_empty()
                && later.sources.iter().all(|&(b, bl)| {
                    self.sources
                        .iter()
                        .any(|&(a, al)| al <= bl && in_net(b, a, al))
                }));
        let listeners = self.listeners.is_empty()
            || (!later.listeners.is_empty()
                && later.listeners.iter().all(|l| self.listeners.contains(l)));
        hosts
            && paths
            && listeners
            && methods
            && conditions(&self.headers, &later.headers)
            && conditions(&self.query, &later.query)
            && sources
    }
}

fn describe(c: &Condition) -> String {
    match &c.test {
        Test::Present => format!("{} is absent", c.name),
        Test::Equals(v) => format!("{} is not {v:?}", c.name),
        Test::Regex(r) => format!("{} does not match {}", c.name, r.as_str()),
    }
}

/// Whether `ip` is in `net`/`len` (an IPv4-mapped IPv6 client counts as IPv4).
pub fn in_net(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// The host a request names, as routes compare it: lower case, without its
/// port or a trailing dot, written into `buf`. None when there is none (or it
/// is longer than any host name).
pub fn normalise_host<'b>(raw: Option<&[u8]>, buf: &'b mut [u8; MAX_HOST]) -> Option<&'b [u8]> {
    let raw = raw?.trim_ascii();
    let name = if raw.starts_with(b"[") {
        // An IPv6 literal keeps its brackets; a port follows the `]`.
        let end = raw
            .iter()
            .position(|&b| b == b']')
            .map_or(raw.len(), |i| i + 1);
        &raw[..end]
    } else {
        let end = raw.iter().position(|&b| b == b':').unwrap_or(raw.len());
        &raw[..end]
    };
    let name = name.strip_suffix(b".").unwrap_or(name);
    if name.is_empty() || name.len() > MAX_HOST {
        return None;
    }
    let out = &mut buf[..name.len()];
    for (o, b) in out.iter_mut().zip(name) {
        *o = b.to_ascii_lowercase();
    }
    Some(out)
}

/// Every route's matchers, and the index that finds host routes by hash.
#[derive(Debug, Clone, Default)]
pub struct Table {
    routes: Vec<Matchers>,
    /// Exact host → routes naming it, in file order.
    exact: HashMap<Box<[u8]>, Vec<u32>>,
    /// `.suffix` → routes naming `*.suffix`, in file order.
    suffix: HashMap<Box<[u8]>, Vec<u32>>,
    /// Routes without a host matcher, in file order, but those `prefixes` finds.
    any_host: Vec<u32>,
    /// Routes without a host matcher whose path matcher is prefixes only,
    /// found by walking the request's path.
    prefixes: PrefixTree,
}

/// Path prefixes as a byte trie: walking a path visits every prefix of it
/// that a route names, in as many steps as the path is long, however many
/// prefixes there are.
#[derive(Debug, Clone, Default)]
struct PrefixTree {
    nodes: Vec<Node>,
}

#[derive(Debug, Clone, Default)]
struct Node {
    /// (byte, child node), sorted by byte.
    next: Vec<(u8, u32)>,
    /// Routes whose prefix ends here, in file order.
    routes: Vec<u32>,
}

impl PrefixTree {
    fn insert(&mut self, prefix: &[u8], route: u32) {
        if self.nodes.is_empty() {
            self.nodes.push(Node::default());
        }
        let mut at = 0usize;
        for &b in prefix {
            at = match self.nodes[at].next.binary_search_by_key(&b, |e| e.0) {
                Ok(i) => self.nodes[at].next[i].1 as usize,
                Err(i) => {
                    let child = self.nodes.len() as u32;
                    self.nodes[at].next.insert(i, (b, child));
                    self.nodes.push(Node::default());
                    child as usize
                }
            };
        }
        let routes = &mut self.nodes[at].routes;
        if routes.last() != Some(&route) {
            routes.push(route);
        }
    }

    /// Calls `f` with the routes of every prefix of `path`, shortest first.
    fn walk<'a>(&'a self, path: &[u8], mut f: impl FnMut(&'a [u32]) -> bool) -> bool {
        let Some(mut node) = self.nodes.first() else {
            return true;
        };
        if !node.routes.is_empty() && !f(&node.routes) {
            return false;
        }
        for &b in path {
            match node.next.binary_search_by_key(&b, |e| e.0) {
                Ok(i) => node = &self.nodes[node.next[i].1 as usize],
                Err(_) => break,
            }
            if !node.routes.is_empty() && !f(&node.routes) {
                return false;
            }
        }
        true
    }
}

impl Table {
    pub fn new(routes: Vec<Matchers>) -> Table {
        let mut t = Table {
            routes,
            ..Table::default()
        };
        for (i, m) in t.routes.iter().enumerate() {
            let i = i as u32;
            let prefixes_only =
                !m.path_prefixes.is_empty() && m.paths.is_empty() && m.path_regex.is_none();
            if m.hosts.is_empty() && prefixes_only {
                for p in &m.path_prefixes {
                    t.prefixes.insert(p.as_bytes(), i);
                }
            } else if m.hosts.is_empty() {
                t.any_host.push(i);
            }
            for h in &m.hosts {
                let (map, key) = match h {
                    Host::Exact(h) => (&mut t.exact, h),
                    Host::Suffix(s) => (&mut t.suffix, s),
                };
                let list = map.entry(key.as_bytes().into()).or_default();
                if list.last() != Some(&i) {
                    list.push(i);
                }
            }
        }
        t
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    pub fn matchers(&self, i: usize) -> &Matchers {
        &self.routes[i]
    }

    /// The first route `req` matches.
    pub fn pick(&self, req: &Request<'_>) -> Option<usize> {
        let mut buf = [0u8; MAX_HOST];
        let host = normalise_host(req.seen.host, &mut buf);
        // The candidate lists, each in file order: merged as they are walked.
        let mut lists: [&[u32]; 16] = [&[]; 16];
        let mut n = 0;
        lists[n] = &self.any_host;
        n += 1;
        let path = req.path().as_bytes();
        let room = self.prefixes.walk(path, |l| {
            if n == lists.len() {
                return false;
            }
            lists[n] = l;
            n += 1;
            true
        });
        if !room {
            // More matching prefixes than room: walk every route in order.
            return self.pick_slowly(req, host);
        }
        if let Some(h) = host {
            if let Some(l) = self.exact.get(h) {
                lists[n] = l;
                n += 1;
            }
            if !self.suffix.is_empty() {
                for (i, _) in h.iter().enumerate().filter(|(_, &b)| b == b'.') {
                    if let Some(l) = self.suffix.get(&h[i..]) {
                        if n == lists.len() {
                            // More matching suffixes than room: walk them all in order.
                            return self.pick_slowly(req, host);
                        }
                        lists[n] = l;
                        n += 1;
                    }
                }
            }
        }
        let lists = &mut lists[..n];
        loop {
            let next = lists.iter().filter_map(|l| l.first()).min().copied()?;
            for l in lists.iter_mut() {
                if l.first() == Some(&next) {
                    *l = &l[1..];
                }
            }
            if self.routes[next as usize].first_miss(req, host).is_none() {
                return Some(next as usize);
            }
        }
    }

    fn pick_slowly(&self, req: &Request<'_>, host: Option<&[u8]>) -> Option<usize> {
        self.routes
            .iter()
            .position(|m| m.first_miss(req, host).is_none())
    }

    /// Each route up to the one `req` matches: its index and, for those that
    /// did not match, why. Every route is tried (no index), for `floatlb route`.
    pub fn trace(&self, req: &Request<'_>) -> Vec<(usize, Option<String>)> {
        let mut buf = [0u8; MAX_HOST];
        let host = normalise_host(req.seen.host, &mut buf);
        let mut out = Vec::new();
        for (i, m) in self.routes.iter().enumerate() {
            match m.first_miss(req, host) {
                None => {
                    out.push((i, None));
                    break;
                }
                Some(miss) => out.push((i, Some(m.explain(miss, req, host)))),
            }
        }
        out
    }

    /// Routes that can never match: (later, earlier) pairs where the earlier
    /// route covers every request of the later one.
    pub fn shadowed(&self) -> Vec<(usize, usize)> {
        // Only a route without hosts, or one naming a host (or a suffix) of
        // the later route's, can cover it: those are looked up, not every
        // earlier route, so 10,000 host routes are checked in a moment.
        let hostless: Vec<u32> = (0..self.routes.len() as u32)
            .filter(|&i| self.routes[i as usize].hosts.is_empty())
            .collect();
        let mut out = Vec::new();
        let mut candidates: Vec<u32> = Vec::new();
        for (j, later) in self.routes.iter().enumerate() {
            candidates.clear();
            fn before(l: &[u32], j: usize) -> impl Iterator<Item = u32> + '_ {
                l.iter().copied().take_while(move |&i| (i as usize) < j)
            }
            candidates.extend(before(&hostless, j));
            for h in &later.hosts {
                let name = match h {
                    Host::Exact(n) => {
                        if let Some(l) = self.exact.get(n.as_bytes()) {
                            candidates.extend(before(l, j));
                        }
                        n.as_str()
                    }
                    Host::Suffix(s) => s.as_str(),
                };
                // Wildcards that end the name (or the later wildcard's suffix).
                for (i, _) in name.char_indices().filter(|&(_, c)| c == '.') {
                    if let Some(l) = self.suffix.get(&name.as_bytes()[i..]) {
                        candidates.extend(before(l, j));
                    }
                }
            }
            candidates.sort_unstable();
            candidates.dedup();
            if let Some(&i) = candidates
                .iter()
                .find(|&&i| self.routes[i as usize].covers(later))
            {
                out.push((j, i as usize));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(s: &str) -> Host {
        Host::parse(s).unwrap()
    }

    fn seen<'a>(
        method: &'a str,
        host: &'a str,
        target: &'a str,
        headers: &'a [httparse::Header<'a>],
    ) -> Seen<'a> {
        Seen {
            method,
            host: (!host.is_empty()).then_some(host.as_bytes()),
            target,
            headers,
        }
    }

    fn pick(
        t: &Table,
        method: &str,
        host: &str,
        target: &str,
        headers: &[httparse::Header<'_>],
    ) -> Option<usize> {
        let s = seen(method, host, target, headers);
        let req = Request {
            seen: &s,
            peer: "198.18.0.7".parse().unwrap(),
            listener: 0,
        };
        let fast = t.pick(&req);
        // The index finds what trying every route in order finds.
        let slow = t
            .trace(&req)
            .last()
            .filter(|(_, why)| why.is_none())
            .map(|(i, _)| *i);
        assert_eq!(fast, slow, "{method} {host} {target}");
        fast
    }

    fn hosts(v: &[&str]) -> Matchers {
        Matchers {
            hosts: v.iter().map(|h| host(h)).collect(),
            ..Matchers::default()
        }
    }

    fn prefix(p: &str) -> Matchers {
        Matchers {
            path_prefixes: vec![p.into()],
            ..Matchers::default()
        }
    }

    #[test]
    fn host_patterns() {
        assert_eq!(host("Shop.Example."), Host::Exact("shop.example".into()));
        assert_eq!(host("*.example"), Host::Suffix(".example".into()));
        assert!(Host::parse("").is_err());
        assert!(Host::parse("a b").is_err());
        assert!(Host::parse("*.").is_err());
        assert!(Host::parse("a..b").is_err());
        assert!(Host::parse("shop.example:8080")
            .unwrap_err()
            .contains("no port"));
        assert!(Host::parse("[2001:2::1]").is_ok());
        let s = host("*.example");
        assert!(s.matches(b"a.example") && s.matches(b"a.b.example"));
        assert!(!s.matches(b"example") && !s.matches(b"aexample"));
    }

    /// RFC 9110 §4.2.3: the host compares without case, and without the
    /// port or a trailing dot (§7.2: Host is `uri-host [ ":" port ]`).
    #[test]
    fn host_normalised_before_lookup() {
        let t = Table::new(vec![hosts(&["shop.example"]), hosts(&["[2001:2::1]"])]);
        for h in [
            "shop.example",
            "SHOP.Example",
            "shop.example:8080",
            "shop.example.",
        ] {
            assert_eq!(pick(&t, "GET", h, "/", &[]), Some(0), "{h}");
        }
        assert_eq!(pick(&t, "GET", "[2001:2::1]:80", "/", &[]), Some(1));
        assert_eq!(pick(&t, "GET", "shop.example.org", "/", &[]), None);
        assert_eq!(pick(&t, "GET", "", "/", &[]), None);
    }

    #[test]
    fn first_match_in_file_order_across_index_lists() {
        let t = Table::new(vec![
            prefix("/api/"),
            hosts(&["*.example"]),
            hosts(&["shop.example"]),
            Matchers::default(),
        ]);
        assert_eq!(pick(&t, "GET", "shop.example", "/api/x", &[]), Some(0));
        assert_eq!(pick(&t, "GET", "shop.example", "/", &[]), Some(1));
        assert_eq!(pick(&t, "GET", "a.b.example", "/", &[]), Some(1));
        assert_eq!(pick(&t, "GET", "example", "/", &[]), Some(3));
        assert_eq!(pick(&t, "GET", "other", "/api", &[]), Some(3));
        // The catch-all comes after every host route.
        let t = Table::new(vec![hosts(&["a"]), Matchers::default(), hosts(&["b"])]);
        assert_eq!(pick(&t, "GET", "b", "/", &[]), Some(1));
        assert_eq!(pick(&t, "GET", "a", "/", &[]), Some(0));
    }

    #[test]
    fn paths_methods_headers_query_sources() {
        let t = Table::new(vec![
            Matchers {
                paths: vec!["/exact".into()],
                path_regex: Some(Regex::new("^/v[0-9]+/").unwrap()),
                ..Matchers::default()
            },
            Matchers {
                methods: vec!["POST".into(), "PUT".into()],
                ..Matchers::default()
            },
            Matchers {
                headers: vec![
                    Condition {
                        name: "x-env".into(),
                        test: Test::Equals("beta".into()),
                    },
                    Condition {
                        name: "x-debug".into(),
                        test: Test::Present,
                    },
                ],
                ..Matchers::default()
            },
            Matchers {
                query: vec![Condition {
                    name: "v".into(),
                    test: Test::Regex(Regex::new("^[23]$").unwrap()),
                }],
                ..Matchers::default()
            },
            Matchers {
                sources: vec![("198.18.0.0".parse().unwrap(), 24)],
                ..Matchers::default()
            },
        ]);
        assert_eq!(pick(&t, "GET", "h", "/exact?x=1", &[]), Some(0));
        assert_eq!(pick(&t, "GET", "h", "/v2/x", &[]), Some(0));
        assert_eq!(pick(&t, "PUT", "h", "/exactly", &[]), Some(1));
        // RFC 9110 §9.1: methods are case-sensitive.
        assert_eq!(pick(&t, "post", "h", "/q?v=3", &[]), Some(3));
        let both = [
            httparse::Header {
                name: "X-Env",
                value: b" beta ",
            },
            httparse::Header {
                name: "x-debug",
                value: b"",
            },
        ];
        assert_eq!(pick(&t, "GET", "h", "/", &both), Some(2));
        assert_eq!(pick(&t, "GET", "h", "/", &both[..1]), Some(4));
        assert_eq!(pick(&t, "GET", "h", "/?a=1&v=2", &[]), Some(3));
        assert_eq!(pick(&t, "GET", "h", "/?v=4", &[]), Some(4));
        let s = seen("GET", "h", "/", &[]);
        let far = Request {
            seen: &s,
            peer: "198.19.0.7".parse().unwrap(),
            listener: 0,
        };
        assert_eq!(t.pick(&far), None);
        let mapped = Request {
            seen: &s,
            peer: "::ffff:198.18.0.9".parse().unwrap(),
            listener: 0,
        };
        assert_eq!(t.pick(&mapped), Some(4));
    }

    #[test]
    fn trace_says_why_each_earlier_route_missed() {
        let t = Table::new(vec![
            hosts(&["shop.example"]),
            prefix("/api/"),
            Matchers::default(),
        ]);
        let s = seen("GET", "www.example", "/", &[]);
        let req = Request {
            seen: &s,
            peer: "198.18.0.7".parse().unwrap(),
            listener: 0,
        };
        let tr = t.trace(&req);
        assert_eq!(tr.len(), 3);
        assert_eq!(
            tr[0].1.as_deref(),
            Some("host www.example is not shop.example")
        );
        assert_eq!(tr[1].1.as_deref(), Some("path / is not prefix /api/"));
        assert_eq!(tr[2], (2, None));
    }

    #[test]
    fn shadowed_routes_found_and_only_those() {
        let m = |v: Vec<Matchers>| Table::new(v).shadowed();
        // A catch-all shadows everything after it.
        assert_eq!(m(vec![Matchers::default(), hosts(&["a"])]), [(1, 0)]);
        // A wildcard covers a subdomain, not the bare name.
        assert_eq!(
            m(vec![hosts(&["*.example"]), hosts(&["a.example"])]),
            [(1, 0)]
        );
        assert_eq!(
            m(vec![hosts(&["*.example"]), hosts(&["*.b.example"])]),
            [(1, 0)]
        );
        assert!(m(vec![hosts(&["*.example"]), hosts(&["example"])]).is_empty());
        // A shorter prefix covers a longer one; not the other way round.
        assert_eq!(m(vec![prefix("/api"), prefix("/api/v2")]), [(1, 0)]);
        assert!(m(vec![prefix("/api/v2"), prefix("/api")]).is_empty());
        // An extra matcher on the later route narrows it: still covered.
        let mut narrower = hosts(&["a"]);
        narrower.methods = vec!["GET".into()];
        assert_eq!(m(vec![hosts(&["a"]), narrower.clone()]), [(1, 0)]);
        // An extra matcher on the earlier one: not covered.
        assert!(m(vec![narrower, hosts(&["a"])]).is_empty());
        // Header conditions: present covers equals; equals does not cover present.
        let hdr = |t: Test| Matchers {
            headers: vec![Condition {
                name: "x".into(),
                test: t,
            }],
            ..Matchers::default()
        };
        assert_eq!(
            m(vec![hdr(Test::Present), hdr(Test::Equals("1".into()))]),
            [(1, 0)]
        );
        assert!(m(vec![hdr(Test::Equals("1".into())), hdr(Test::Present)]).is_empty());
        // Sources: a wider range covers a narrower one.
        let src = |a: &str, l| Matchers {
            sources: vec![(a.parse().unwrap(), l)],
            ..Matchers::default()
        };
        assert_eq!(
            m(vec![src("198.18.0.0", 15), src("198.19.1.0", 24)]),
            [(1, 0)]
        );
        assert!(m(vec![src("198.19.1.0", 24), src("198.18.0.0", 15)]).is_empty());
    }

    #[test]
    fn listeners_restrict_a_route_to_what_came_in_on_them() {
        let admin = Matchers {
            listeners: vec![(1, "office".into())],
            ..Matchers::default()
        };
        let t = Table::new(vec![admin.clone(), hosts(&["a"])]);
        let s = seen("GET", "a", "/", &[]);
        let on = |listener| {
            t.pick(&Request {
                seen: &s,
                peer: "198.18.0.7".parse().unwrap(),
                listener,
            })
        };
        assert_eq!(on(1), Some(0));
        assert_eq!(on(0), Some(1));
        // A listener matcher narrows: a host route after it is not shadowed.
        assert!(t.shadowed().is_empty());
        assert_eq!(
            Table::new(vec![Matchers::default(), admin]).shadowed(),
            [(1, 0)]
        );
    }

    /// Prefix routes found by the trie interleave with the other lists in
    /// file order, and the order still decides among nested prefixes.
    #[test]
    fn prefix_routes_come_from_the_tree_in_file_order() {
        let mut with_method = prefix("/api/");
        with_method.methods = vec!["POST".into()];
        let t = Table::new(vec![
            with_method,
            prefix("/api/v2/"),
            hosts(&["shop.example"]),
            prefix("/api/"),
            Matchers {
                path_prefixes: vec!["/static/".into()],
                paths: vec!["/favicon.ico".into()],
                ..Matchers::default()
            },
            prefix("/"),
        ]);
        assert_eq!(pick(&t, "POST", "h", "/api/v2/x", &[]), Some(0));
        assert_eq!(pick(&t, "GET", "h", "/api/v2/x", &[]), Some(1));
        assert_eq!(pick(&t, "GET", "shop.example", "/api/x", &[]), Some(2));
        assert_eq!(pick(&t, "GET", "h", "/api/x?y=/static/", &[]), Some(3));
        assert_eq!(pick(&t, "GET", "h", "/favicon.ico", &[]), Some(4));
        assert_eq!(pick(&t, "GET", "h", "/static/a.css", &[]), Some(4));
        assert_eq!(pick(&t, "GET", "h", "/other", &[]), Some(5));
        // Many prefixes of one path: more lists than room, the same answer.
        let deep: Vec<Matchers> = (1..40).map(|n| prefix(&"/a".repeat(n))).rev().collect();
        let t = Table::new(deep);
        assert_eq!(pick(&t, "GET", "h", &"/a".repeat(45), &[]), Some(0));
        assert_eq!(pick(&t, "GET", "h", "/a/a", &[]), Some(37));
    }

    /// The indexed search finds what comparing every pair finds.
    #[test]
    fn shadow_search_agrees_with_every_pair() {
        let routes = vec![
            hosts(&["a.example"]),
            prefix("/api/"),
            hosts(&["*.example"]),
            hosts(&["b.example", "a.example"]),
            hosts(&["*.b.example"]),
            prefix("/api/v1/"),
            hosts(&["c.b.example"]),
            Matchers::default(),
            hosts(&["z"]),
        ];
        let t = Table::new(routes.clone());
        let every: Vec<(usize, usize)> = (0..routes.len())
            .filter_map(|j| {
                (0..j)
                    .find(|&i| routes[i].covers(&routes[j]))
                    .map(|i| (j, i))
            })
            .collect();
        assert_eq!(t.shadowed(), every);
        assert_eq!(every, [(3, 2), (4, 2), (5, 1), (6, 2), (8, 7)]);
    }

    #[test]
    fn many_suffixes_fall_back_to_order() {
        let mut routes: Vec<Matchers> = (0..10)
            .map(|i| hosts(&[&format!("*.{}", "x.".repeat(i) + "example")]))
            .collect();
        routes.push(Matchers::default());
        let t = Table::new(routes);
        let deep = format!("a.{}example", "x.".repeat(12));
        assert_eq!(pick(&t, "GET", &deep, "/", &[]), Some(0));
    }

    #[test]
    fn ipv4_and_ipv6_ranges() {
        assert!(in_net(
            "198.18.3.4".parse().unwrap(),
            "198.18.0.0".parse().unwrap(),
            15
        ));
        assert!(!in_net(
            "198.20.0.1".parse().unwrap(),
            "198.18.0.0".parse().unwrap(),
            15
        ));
        assert!(in_net(
            "2001:2::5".parse().unwrap(),
            "2001:2::".parse().unwrap(),
            48
        ));
        assert!(!in_net(
            "2001:3::5".parse().unwrap(),
            "2001:2::".parse().unwrap(),
            48
        ));
        assert!(in_net(
            "203.0.113.1".parse().unwrap(),
            "0.0.0.0".parse().unwrap(),
            0
        ));
    }
}
