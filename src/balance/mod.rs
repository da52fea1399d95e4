//! Request scheduling: which backend gets the next request.
//!
//! Every algorithm implements [`Selection`], a pure choice over a snapshot of
//! backends ([`Candidate`]) and a request key. Algorithms never do I/O; the
//! proxy builds the snapshot from live backend state on each pick. One file per
//! algorithm, in the words HAProxy uses (`roundrobin`, `static-rr`,
//! `leastconn`, `source`, `uri`, `url_param`, `hdr`, `cookie` hashing,
//! `random(draws)`, `first`).

use std::net::IpAddr;

mod first;
mod hash;
mod least_conn;
mod random;
mod round_robin;
mod static_rr;

pub use hash::HashKind;

/// Which scheduler a `[balance]` table selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    /// Smooth weighted round-robin; honours weights changed at run time (slow start).
    RoundRobin,
    /// Weighted round-robin over the configured weights, fixed at load time.
    StaticRr,
    /// Fewest in-flight requests relative to weight; ties rotate.
    LeastConn,
    /// Hash of the client IP address.
    Source,
    /// Hash of the request path (and query).
    Uri,
    /// Hash of a query parameter's value; round-robin when it is absent.
    UrlParam,
    /// Hash of a request field's value (`header`); round-robin when it is absent.
    Header,
    /// Hash of a cookie's value (`cookie`); round-robin when it is absent.
    Cookie,
    /// Best of `draws` weighted random picks by in-flight load (power of two choices).
    Random,
    /// First backend (in config order) with a free slot below its `maxconn`.
    First,
}

/// Options of the `[balance]` table besides the algorithm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceOptions {
    pub algorithm: Algorithm,
    /// Query parameter name for `url-param`.
    pub url_param: Option<String>,
    /// Consistent hashing (a ring) instead of map-based hashing for the hash kinds.
    pub consistent: bool,
    /// Number of random draws for `random` (2 = power of two choices).
    pub draws: u32,
}

impl Default for BalanceOptions {
    fn default() -> Self {
        BalanceOptions {
            algorithm: Algorithm::RoundRobin,
            url_param: None,
            consistent: false,
            draws: 2,
        }
    }
}

/// One backend as a scheduler sees it at the moment of a pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Effective weight (slow start applied). 0 means "do not pick".
    pub weight: u32,
    /// Requests currently in flight to this backend.
    pub in_flight: u32,
    /// Passes health checks.
    pub up: bool,
    /// Per-backend connection limit, 0 = unlimited (used by `first`).
    pub maxconn: u32,
}

impl Candidate {
    /// Whether this backend may receive a request at all.
    pub fn eligible(&self) -> bool {
        self.up && self.weight > 0
    }
}

/// What a request offers to hash-based schedulers.
#[derive(Debug, Clone, Copy)]
pub struct RequestKey<'a> {
    pub client_ip: IpAddr,
    /// Path and query of the request URI, e.g. `/a/b?x=1`.
    pub path_and_query: &'a str,
    /// The value `header` or `cookie` hashes: the request field's or the
    /// cookie's the pool names, if the request has it.
    pub value: Option<&'a [u8]>,
}

/// A scheduling algorithm.
///
/// `select` returns the index of the chosen backend in `backends`, skipping
/// every backend that is not [`Candidate::eligible`] or whose index is in
/// `exclude` (backends already tried for this request). `None` means no
/// backend can take the request.
pub trait Selection: Send + Sync {
    fn select(
        &self,
        backends: &[Candidate],
        key: &RequestKey<'_>,
        exclude: &[usize],
    ) -> Option<usize>;
}

/// Static facts about one backend that some algorithms precompute from.
#[derive(Debug, Clone)]
pub struct BackendMeta {
    pub name: String,
    /// Configured weight (0..=256).
    pub weight: u32,
}

/// Builds the scheduler for a config snapshot.
pub fn build(opts: &BalanceOptions, backends: &[BackendMeta]) -> Box<dyn Selection> {
    match opts.algorithm {
        Algorithm::RoundRobin => Box::new(round_robin::RoundRobin::new(backends.len())),
        Algorithm::StaticRr => Box::new(static_rr::StaticRr::new(backends)),
        Algorithm::LeastConn => Box::new(least_conn::LeastConn::new()),
        Algorithm::Source => Box::new(hash::Hash::new(HashKind::Source, opts.consistent, backends)),
        Algorithm::Uri => Box::new(hash::Hash::new(HashKind::Uri, opts.consistent, backends)),
        Algorithm::UrlParam => Box::new(hash::Hash::new(
            HashKind::UrlParam(opts.url_param.clone().unwrap_or_default()),
            opts.consistent,
            backends,
        )),
        Algorithm::Header | Algorithm::Cookie => {
            Box::new(hash::Hash::new(HashKind::Value, opts.consistent, backends))
        }
        Algorithm::Random => Box::new(random::Random::new(opts.draws.max(1))),
        Algorithm::First => Box::new(first::First),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Up backends with these weights and no load.
    pub fn cands(weights: &[u32]) -> Vec<Candidate> {
        weights
            .iter()
            .map(|&weight| Candidate {
                weight,
                in_flight: 0,
                up: true,
                maxconn: 0,
            })
            .collect()
    }

    pub fn metas(weights: &[u32]) -> Vec<BackendMeta> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| BackendMeta {
                name: format!("b{i}"),
                weight,
            })
            .collect()
    }

    pub fn key() -> RequestKey<'static> {
        RequestKey {
            client_ip: std::net::IpAddr::from([198, 18, 0, 2]),
            path_and_query: "/",
            value: None,
        }
    }
}
