//! Backends given by name: what a DNS answer does to a name's set of
//! addresses (the TTL held within bounds, the last good set kept through
//! failures, addresses that leave kept until the new ones are up), and how a
//! name's addresses become backends of its pool ([`expand`]).
//!
//! Sans-IO: answers and the time in, the set to publish out. The queries
//! are `runtime::worker::resolve`'s, the message codec `net::dns`'s.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::{Backend, Resolved};

/// The addresses each name stands for now, as the pools use them.
pub type Answers = HashMap<Arc<str>, Vec<IpAddr>>;

/// The time to the next query for an answer of `ttl` seconds (None: the
/// answer had no TTL to give), held within `min..=max`.
pub fn clamp_ttl(ttl: Option<u32>, min: Duration, max: Duration) -> Duration {
    let ttl = ttl.map_or(min, |s| Duration::from_secs(u64::from(s)));
    ttl.clamp(min, max.max(min))
}

/// What an answer changed in a name's addresses.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Change {
    pub added: Vec<IpAddr>,
    pub removed: Vec<IpAddr>,
}

impl Change {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

/// One name's resolution state.
#[derive(Debug)]
pub struct NameState {
    /// The addresses of the last answer (sorted).
    current: Vec<IpAddr>,
    /// Addresses that left the answer, and when.
    leaving: Vec<(IpAddr, Instant)>,
    /// When to ask again.
    pub due: Instant,
    /// Failures in a row since the last answer.
    pub failures: u32,
    /// Whether an answer ever came.
    pub answered: bool,
}

impl NameState {
    /// A name not yet asked: due now.
    pub fn new(now: Instant) -> Self {
        NameState {
            current: Vec::new(),
            leaving: Vec::new(),
            due: now,
            failures: 0,
            answered: false,
        }
    }

    /// The addresses the pools use: the answer's, and those still leaving.
    pub fn published(&self) -> Vec<IpAddr> {
        let mut v = self.current.clone();
        v.extend(self.leaving.iter().map(|(a, _)| *a));
        v.sort();
        v.dedup();
        v
    }

    /// The addresses of the last answer.
    pub fn current(&self) -> &[IpAddr] {
        &self.current
    }

    /// Whether addresses that left the answer are still in the pools.
    pub fn has_leaving(&self) -> bool {
        !self.leaving.is_empty()
    }

    /// An answer came: `addresses` (maybe none: the name has no such
    /// records, or does not exist), good for `ttl`. An address that left is
    /// kept (see [`NameState::settle`]); one that comes back stops leaving.
    pub fn answer(&mut self, now: Instant, mut addresses: Vec<IpAddr>, next: Duration) -> Change {
        addresses.sort();
        addresses.dedup();
        let change = Change {
            added: diff(&addresses, &self.current),
            removed: diff(&self.current, &addresses),
        };
        self.leaving.retain(|(a, _)| !addresses.contains(a));
        self.leaving
            .extend(change.removed.iter().map(|a| (*a, now)));
        self.current = addresses;
        self.due = now + next;
        self.failures = 0;
        self.answered = true;
        change
    }

    /// No answer (timeout, a server's failure, a malformed reply): the set
    /// stays as it is; ask again after `retry`.
    pub fn failed(&mut self, now: Instant, retry: Duration) {
        self.failures = self.failures.saturating_add(1);
        self.due = now + retry;
    }

    /// Lets leaving addresses go: all of them once `new_up` (an address of
    /// the answer takes requests in every pool of the name), each after
    /// `hold` at the latest. True when the published set shrank.
    pub fn settle(&mut self, now: Instant, new_up: bool, hold: Duration) -> bool {
        let before = self.leaving.len();
        self.leaving
            .retain(|(_, since)| !new_up && now.saturating_duration_since(*since) < hold);
        self.leaving.len() != before
    }
}

/// What is in `a` and not in `b`.
fn diff(a: &[IpAddr], b: &[IpAddr]) -> Vec<IpAddr> {
    a.iter().filter(|x| !b.contains(x)).copied().collect()
}

/// The backend one address of a named backend becomes: named
/// `<name>@<ip>`, its cookie (if set) `<cookie>@<ip>`, every other key the
/// named one's.
pub fn backend_at(template: &Backend, ip: IpAddr) -> Backend {
    Backend {
        name: format!("{}@{ip}", template.name),
        address: SocketAddr::new(ip, template.address.port()),
        weight: template.weight,
        maxconn: template.maxconn,
        cookie: template.cookie.as_ref().map(|c| format!("{c}@{ip}")),
    }
}

/// The pools of `file` (as loaded: literal backends only) with each named
/// backend replaced by one backend per address `answers` gives its name, in
/// the file's order. A name without addresses adds none.
pub fn expand(file: &Resolved, answers: &Answers) -> Resolved {
    let mut out = file.clone();
    for (p, pool) in out.pools.iter_mut().enumerate() {
        let named: Vec<_> = file.names.iter().filter(|n| n.pool == p).collect();
        if named.is_empty() {
            continue;
        }
        let mut literal = std::mem::take(&mut pool.backends).into_iter();
        let total = named.len() + literal.len();
        for at in 0..total {
            match named.iter().find(|n| n.at == at) {
                Some(n) => {
                    let ips = answers.get(&n.host).map_or(&[][..], |v| &v[..]);
                    pool.backends
                        .extend(ips.iter().map(|ip| backend_at(&n.template, *ip)));
                }
                None => pool.backends.extend(literal.next()),
            }
        }
    }
    out
}

/// Resolution counters per name, for `/metrics`.
#[derive(Debug, Default)]
pub struct Stats {
    names: Mutex<HashMap<Arc<str>, Arc<NameStats>>>,
}

/// One name's counters.
#[derive(Debug, Default)]
pub struct NameStats {
    /// Answers that changed the name's addresses.
    pub changes: AtomicU64,
    /// Resolutions that got no answer.
    pub failures: AtomicU64,
}

impl Stats {
    /// The counters of `host` (made on first use).
    pub fn of(&self, host: &Arc<str>) -> Arc<NameStats> {
        let mut m = self.names.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(host.clone()).or_default().clone()
    }

    /// (changes, failures) of `host`; zeros for a name never resolved.
    pub fn counts(&self, host: &str) -> (u64, u64) {
        let m = self.names.lock().unwrap_or_else(|e| e.into_inner());
        m.get(host).map_or((0, 0), |s| {
            (
                s.changes.load(Ordering::Relaxed),
                s.failures.load(Ordering::Relaxed),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<crate::config::Config, crate::config::ConfigError> {
        crate::config::parse(std::path::Path::new("t.toml"), text)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A TTL of 0 (dnsmasq's default for local names) or none is asked again
    /// after ttl-min; a day-long one after ttl-max.
    #[test]
    fn ttl_is_held_within_its_bounds() {
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(300));
        assert_eq!(clamp_ttl(Some(0), min, max), min);
        assert_eq!(clamp_ttl(None, min, max), min);
        assert_eq!(clamp_ttl(Some(30), min, max), Duration::from_secs(30));
        assert_eq!(clamp_ttl(Some(86_400), min, max), max);
        assert_eq!(clamp_ttl(Some(u32::MAX), min, max), max);
    }

    /// Failures keep the set; a change keeps leaving addresses until a new
    /// one is up, or for `hold`; an address that comes back stops leaving.
    #[test]
    fn the_last_good_set_is_kept_and_leaving_addresses_wait() {
        let hold = Duration::from_secs(30);
        let t0 = Instant::now();
        let mut s = NameState::new(t0);
        let c = s.answer(
            t0,
            vec![ip("198.18.0.13"), ip("198.18.0.13")],
            Duration::from_secs(5),
        );
        assert_eq!(c.added, [ip("198.18.0.13")]);
        assert_eq!(s.due, t0 + Duration::from_secs(5));
        s.failed(t0, Duration::from_secs(1));
        s.failed(t0, Duration::from_secs(1));
        assert_eq!((s.failures, s.published()), (2, vec![ip("198.18.0.13")]));
        // The name moves to .14: .13 stays until .14 is up.
        let c = s.answer(t0, vec![ip("198.18.0.14")], Duration::from_secs(5));
        assert_eq!(
            (c.added, c.removed),
            (vec![ip("198.18.0.14")], vec![ip("198.18.0.13")])
        );
        assert_eq!(s.published(), [ip("198.18.0.13"), ip("198.18.0.14")]);
        assert!(!s.settle(t0 + Duration::from_secs(1), false, hold));
        assert!(s.settle(t0 + Duration::from_secs(1), true, hold));
        assert_eq!(s.published(), [ip("198.18.0.14")]);
        // An empty answer: the set goes after `hold`, not at once.
        s.answer(t0, vec![], Duration::from_secs(5));
        assert!(!s.settle(t0 + hold / 2, false, hold));
        assert_eq!(s.published(), [ip("198.18.0.14")]);
        // Back before hold ran out: not leaving any more.
        let c = s.answer(
            t0 + hold / 2,
            vec![ip("198.18.0.14")],
            Duration::from_secs(5),
        );
        assert_eq!(c.added, [ip("198.18.0.14")]);
        assert!(!s.has_leaving());
        s.answer(t0 + hold, vec![], Duration::from_secs(5));
        assert!(s.settle(t0 + hold * 2, false, hold));
        assert!(s.published().is_empty());
    }

    /// Each named backend becomes one backend per address, in the file's
    /// place; literal backends stay as written.
    #[test]
    fn names_expand_in_place() {
        let text = "[listen]\naddress = \"127.0.0.1:8080\"\n[[pool]]\nname = \"p\"\n\
                    backends = [\"198.18.0.11:80\", \"web.lab:8080\"]\n\
                    [[pool.backend]]\nname = \"last\"\naddress = \"198.18.0.12:80\"\n\
                    [[pool.backend]]\nname = \"b\"\naddress = \"B.lab:81\"\ncookie = \"s\"\nweight = 3\n";
        let c = parse_str(text).unwrap();
        let r = &c.resolved;
        assert_eq!(
            r.pools[0].backends.len(),
            2,
            "literal backends only until resolved"
        );
        let mut answers = Answers::new();
        answers.insert("web.lab".into(), vec![ip("198.18.0.21"), ip("2001:2::21")]);
        let e = expand(r, &answers);
        let names: Vec<(&str, String)> = e.pools[0]
            .backends
            .iter()
            .map(|b| (b.name.as_str(), b.address.to_string()))
            .collect();
        assert_eq!(
            names,
            [
                ("198.18.0.11:80", "198.18.0.11:80".into()),
                ("web.lab:8080@198.18.0.21", "198.18.0.21:8080".into()),
                ("web.lab:8080@2001:2::21", "[2001:2::21]:8080".into()),
                ("last", "198.18.0.12:80".into()),
            ]
        );
        answers.insert("b.lab".into(), vec![ip("198.18.0.31")]);
        let e = expand(r, &answers);
        let b = e.pools[0].backends.last().unwrap();
        assert_eq!(
            (b.name.as_str(), b.cookie.as_deref(), b.weight),
            ("b@198.18.0.31", Some("s@198.18.0.31"), 3)
        );
    }

    /// `floatlb check` takes names without resolving them and refuses a bad
    /// name or port at its key.
    #[test]
    fn names_are_checked_not_resolved() {
        let ok = "[listen]\naddress = \"127.0.0.1:8080\"\n[[backend]]\nname = \"w\"\naddress = \"no-such-name.invalid:80\"\n";
        assert_eq!(parse_str(ok).unwrap().resolved.names.len(), 1);
        let bad = "[listen]\naddress = \"127.0.0.1:8080\"\n[[pool]]\nname = \"p\"\nbackends = [\"web_.lab:80\", \"-web.lab:80\", \"web.lab:99999\", \"web.lab:0\"]\n";
        let err = parse_str(bad).unwrap_err();
        let paths: Vec<&str> = err.problems().iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "pool[0].backends[1]",
                "pool[0].backends[2]",
                "pool[0].backends[3]"
            ],
            "{err}"
        );
        let table = "[listen]\naddress = \"127.0.0.1:8080\"\n[[pool]]\nname = \"p\"\n[[pool.backend]]\nname = \"w\"\naddress = \"web..lab:80\"\n";
        let err = parse_str(table).unwrap_err();
        assert_eq!(
            err.problems()[0].path,
            "pool[0].backend[0].address",
            "{err}"
        );
        assert_eq!(err.problems()[0].line, 7, "{err}");
    }
}
