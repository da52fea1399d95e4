//! The live configuration: one `ArcSwap` snapshot read once per request, and
//! the reload that replaces it.
//!
//! A reload either fully succeeds or changes nothing: the file is parsed and
//! validated, a changed listen address is bound, and only then is the new
//! snapshot stored. Backend state is carried over by name (see
//! [`crate::backend::reconcile`]); in-flight requests keep the snapshot they
//! started with.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::backend::resolve::Answers;
use crate::backend::{self, BackendState};
use crate::balance::{self, BackendMeta, Selection};
use crate::config::{Config, PoolSpec, Resolved};

/// Everything a request needs, consistent within itself.
pub struct Snapshot {
    pub config: Arc<Config>,
    /// Same order as `config.resolved.pools`.
    pub pools: Vec<PoolLive>,
    /// Every pool's backends, pool after pool (for health checks and the admin side).
    pub backends: Vec<Arc<BackendState>>,
    /// Requests each route matched (same order as the routes), kept across
    /// reloads by route name.
    pub route_hits: Vec<Arc<AtomicU64>>,
    /// The `[[limit]]` tables (same order as `config.resolved.limits`), kept
    /// across reloads by name while their definition is the same.
    pub limits: Vec<Arc<crate::access::track::Table>>,
    /// The addresses each backend name stands for (`config.resolved`'s
    /// pools hold one backend per address: `backend::resolve::expand`).
    pub answers: Arc<Answers>,
    /// The pools as the file gives them, names unresolved.
    pub file: Arc<Resolved>,
}

/// One pool's live backends and scheduler.
pub struct PoolLive {
    /// Same order as the pool's `backends`.
    pub backends: Vec<Arc<BackendState>>,
    pub selection: Box<dyn Selection>,
}

impl Snapshot {
    /// The snapshot of `config`; backend state, route counters,
    /// per-client tables and the addresses of backend names carry over from
    /// `previous` by name.
    pub fn build(config: Config, previous: Option<&Snapshot>) -> Self {
        let answers = previous.map(|p| p.answers.clone()).unwrap_or_default();
        Self::build_with(config, previous, answers, previous.is_some())
    }

    /// `previous` with its backend names standing for `answers`: a backend
    /// at an address new to a pool with health checks starts down when
    /// `start_down` (it takes requests once it passes a check); the others
    /// keep their state.
    pub fn with_answers(previous: &Snapshot, answers: Arc<Answers>, start_down: bool) -> Self {
        let mut config = (*previous.config).clone();
        config.resolved = previous.file.clone();
        Self::build_with(config, Some(previous), answers, start_down)
    }

    fn build_with(
        mut config: Config,
        previous: Option<&Snapshot>,
        answers: Arc<Answers>,
        start_down: bool,
    ) -> Self {
        // A config taken from a snapshot holds its resolved addresses: start
        // again from the file's pools.
        let file = match previous {
            Some(p) if Arc::ptr_eq(&config.resolved, &p.config.resolved) => p.file.clone(),
            _ => config.resolved.clone(),
        };
        // The backends the names stand for, by pool, to tell new ones.
        let mut from_names = std::collections::HashSet::new();
        if !file.names.is_empty() {
            config.resolved = Arc::new(backend::resolve::expand(&file, &answers));
            for n in &file.names {
                for ip in answers.get(&n.host).into_iter().flatten() {
                    from_names
                        .insert((n.pool, backend::resolve::backend_at(&n.template, *ip).name));
                }
            }
        }
        let old_backends = previous.map_or(&[][..], |p| &p.backends[..]);
        let old_ptrs: std::collections::HashSet<*const BackendState> = if from_names.is_empty() {
            Default::default()
        } else {
            old_backends.iter().map(Arc::as_ptr).collect()
        };
        let settings = backend::PoolSettings::from_config(&config);
        let pools: Vec<PoolLive> = config
            .resolved
            .pools
            .iter()
            .enumerate()
            .map(|(p, spec)| {
                let metas: Vec<BackendMeta> = spec
                    .backends
                    .iter()
                    .map(|b| BackendMeta {
                        name: b.name.clone(),
                        weight: b.weight,
                    })
                    .collect();
                let backends = backend::reconcile(old_backends, spec, settings);
                let send_proxy = config.resolved.send_proxy.get(p).copied().flatten();
                for b in &backends {
                    b.pool.set_send_proxy(send_proxy);
                }
                if start_down && spec.health.enabled {
                    for (live, cfg) in backends.iter().zip(&spec.backends) {
                        let new = !old_ptrs.contains(&Arc::as_ptr(live));
                        if new && from_names.contains(&(p, cfg.name.clone())) {
                            live.start_down(spec.health.rise);
                        }
                    }
                }
                PoolLive {
                    backends,
                    selection: balance::build(&spec.balance.options(), &metas),
                }
            })
            .collect();
        let backends = pools
            .iter()
            .flat_map(|p| p.backends.iter().cloned())
            .collect();
        // By name, through a map: a reload of 10,000 routes looks each up once.
        let old_hits: std::collections::HashMap<&str, &Arc<AtomicU64>> = previous
            .map(|p| {
                let names = p.config.resolved.routes.iter().map(|r| r.name.as_str());
                names.zip(&p.route_hits).collect()
            })
            .unwrap_or_default();
        let route_hits = config
            .resolved
            .routes
            .iter()
            .map(|r| {
                old_hits
                    .get(r.name.as_str())
                    .map_or_else(Arc::default, |h| Arc::clone(h))
            })
            .collect();
        // With `[peers]`, header and cookie values are digested under seeds
        // both nodes derive from their shared key, so the tables agree.
        let seed = config
            .peers
            .as_ref()
            .and_then(|p| crate::config::read_key(&p.key_file).ok())
            .map(|k| k.seeds(b"floatlb [[limit]] header and cookie digest"));
        let limits = config
            .resolved
            .limits
            .iter()
            .map(|spec| {
                let kept = previous.and_then(|p| {
                    let old = &p.config.resolved.limits;
                    let i = old.iter().position(|o| o.same_table(spec))?;
                    p.limits
                        .get(i)
                        .filter(|t| t.shared_digest() == seed)
                        .cloned()
                });
                kept.unwrap_or_else(|| {
                    let t = crate::access::track::Table::new(spec.size, spec.expire, spec.period);
                    Arc::new(match seed {
                        Some(s) => t.with_shared_digest(s),
                        None => t,
                    })
                })
            })
            .collect();
        Snapshot {
            config: Arc::new(config),
            pools,
            backends,
            route_hits,
            limits,
            answers,
            file,
        }
    }

    /// Each backend with its pool and its configuration, pool after pool.
    pub fn each_backend(
        &self,
    ) -> impl Iterator<Item = (&PoolSpec, &Arc<BackendState>, &crate::config::Backend)> {
        self.config
            .resolved
            .pools
            .iter()
            .zip(&self.pools)
            .flat_map(|(spec, live)| {
                live.backends
                    .iter()
                    .zip(&spec.backends)
                    .map(move |(b, c)| (spec, b, c))
            })
    }

    /// The backend an operator names: `name`, or `pool:name` when several
    /// pools have one of that name.
    pub fn find_backend(&self, name: &str) -> Result<&Arc<BackendState>, String> {
        let (pool, name) = match name
            .split_once(':')
            .filter(|(p, _)| self.config.resolved.pool_index(p).is_some())
        {
            Some((p, n)) => (Some(p), n),
            None => (None, name),
        };
        let mut found = self
            .each_backend()
            .filter(|(s, b, _)| b.name == name && pool.is_none_or(|p| p == s.name));
        match (found.next(), found.next()) {
            (Some((_, b, _)), None) => Ok(b),
            (None, _) => Err(format!("no backend named {name:?}")),
            (Some((a, _, _)), Some((b, _, _))) => Err(format!(
                "pools {} and {} both have a backend named {name:?}: name it as pool:{name}",
                a.name, b.name
            )),
        }
    }

    /// At least one backend passes its health checks.
    pub fn any_backend_up(&self) -> bool {
        self.backends.iter().any(|b| b.is_up())
    }
}

/// Process-wide counters (client side).
#[derive(Debug, Default)]
pub struct ProxyStats {
    pub requests: AtomicU64,
    pub connections_total: AtomicU64,
    pub connections_active: AtomicI64,
    pub accept_errors: AtomicU64,
    pub client_timeouts: AtomicU64,
    /// Every timeout, by side and phase (`crate::error::timeout_slot`).
    pub timeouts: [AtomicU64; crate::error::TIMEOUT_SLOTS],
    /// `[peers]`: client entries sent to the peers, and a peer's folded in.
    pub peer_updates_sent: AtomicU64,
    pub peer_updates_received: AtomicU64,
    pub peer_send_errors: AtomicU64,
    /// Peer datagrams dropped, by `crate::peers::Drop::ALL` index.
    pub peer_dropped: [AtomicU64; crate::peers::Drop::ALL.len()],
    /// Upgraded connections (WebSocket) relaying bytes now, and ever.
    pub tunnels_active: AtomicI64,
    pub tunnels_total: AtomicU64,
    /// Tunnels and TCP relays a drain or handover closed (`frontend::drain`).
    pub tunnels_closed_by_drain: AtomicU64,
    /// gRPC calls on HTTP/2 a drain or handover ended with `UNAVAILABLE`.
    pub grpc_calls_closed_by_drain: AtomicU64,
    /// Malformed requests answered 400 (by floatlb or by hyper's parser).
    pub bad_requests: AtomicU64,
    pub errors_502: AtomicU64,
    pub errors_503: AtomicU64,
    pub errors_504: AtomicU64,
    pub errors_other: AtomicU64,
    /// Clients refused by address lists or basic auth, by `access::Refusal` index.
    pub refused: [AtomicU64; crate::access::Refusal::ALL.len()],
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
    /// Unix seconds of the last successful (re)load.
    pub last_reload_unix: AtomicU64,
    /// TLS handshakes completed, of which resumed (ticket or session ID), and failed.
    pub tls_handshakes: AtomicU64,
    pub tls_resumed: AtomicU64,
    pub tls_handshake_errors: AtomicU64,
    /// HTTP/2 requests (streams), also counted in `requests`.
    pub h2_requests: AtomicU64,
    /// PROXY protocol headers on `accept-proxy` listeners, by
    /// `frontend::accept::PROXY_*` slot: taken, untrusted source, invalid.
    pub proxy_protocol: [AtomicU64; 3],
    accepting: AtomicBool,
}

/// Decrements the active connection gauge when dropped.
pub struct ActiveConn<'a>(&'a ProxyStats);

impl Drop for ActiveConn<'_> {
    fn drop(&mut self) {
        self.0.connections_active.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ProxyStats {
    /// Counts a timeout on `side` in `phase`.
    pub fn timed_out(&self, side: crate::error::Side, phase: crate::error::Phase) {
        self.timeouts[crate::error::timeout_slot(side, phase)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_opened(&self) -> ActiveConn<'_> {
        self.connections_total.fetch_add(1, Ordering::Relaxed);
        self.connections_active.fetch_add(1, Ordering::Relaxed);
        ActiveConn(self)
    }
    pub fn set_accepting(&self, v: bool) {
        if self.accepting.load(Ordering::Relaxed) != v {
            self.accepting.store(v, Ordering::Relaxed);
        }
    }
    /// The listener is bound and the accept loop runs.
    pub fn accepting(&self) -> bool {
        self.accepting.load(Ordering::Relaxed)
    }
}

/// State shared by every task of the proxy.
pub struct Shared {
    pub live: ArcSwap<Snapshot>,
    pub stats: ProxyStats,
    pub config_path: PathBuf,
    /// Planned-handover state (see `handover`).
    pub handover: crate::proxy::handover::Handover,
    /// Metrics the request path records itself (see `metrics`).
    pub metrics: crate::observe::metrics::RequestMetrics,
    /// `[log] access`, when on (set at start).
    pub access_log: Option<crate::observe::access_log::AccessLog>,
    /// Why the last reload failed (cleared by a successful one), for the runtime API.
    pub last_reload_error: std::sync::Mutex<Option<String>>,
    /// Counters of the backend names' resolutions.
    pub resolver: crate::backend::resolve::Stats,
}

impl Shared {
    /// Ends an admin handover (see `handover`) once `timeouts.vip-linger`
    /// has passed: clients that still reach this node are served until then,
    /// and what was in flight is done.
    pub fn finish_handover_later(self: &Arc<Self>) {
        let shared = self.clone();
        let linger = shared.live.load().config.timeouts.vip_linger;
        std::thread::spawn(move || {
            std::thread::sleep(linger + std::time::Duration::from_millis(100));
            shared.handover.finish();
        });
    }

    pub fn new(config: Config, config_path: &Path) -> Self {
        let stats = ProxyStats::default();
        stats.last_reload_unix.store(unix_now(), Ordering::Relaxed);
        Shared {
            live: ArcSwap::from_pointee(Snapshot::build(config, None)),
            stats,
            config_path: config_path.to_owned(),
            handover: Default::default(),
            metrics: Default::default(),
            access_log: None,
            last_reload_error: Default::default(),
            resolver: Default::default(),
        }
    }

    /// Whether this node can serve: listener accepting and a backend up.
    pub fn healthy(&self) -> bool {
        self.stats.accepting() && self.live.load().any_backend_up()
    }
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(health: bool) -> Snapshot {
        let text = format!(
            "[listen]\naddress = \"127.0.0.1:8080\"\n[health]\nenabled = {health}\n\
             [[pool]]\nname = \"p\"\nbackends = [\"198.18.0.11:80\", \"web.lab:80\"]\n"
        );
        let config = crate::config::parse(Path::new("t.toml"), &text).unwrap();
        Snapshot::build(config, None)
    }

    fn answers(ips: &[&str]) -> Arc<Answers> {
        let ips = ips.iter().map(|i| i.parse().unwrap()).collect();
        Arc::new([(Arc::<str>::from("web.lab"), ips)].into_iter().collect())
    }

    /// A name's new addresses become backends of its pool: DOWN until a
    /// check passes when the pool has checks; an address that stays keeps its
    /// state; the literal backend is untouched; a reload keeps them all.
    #[test]
    fn a_names_addresses_are_backends_that_keep_their_state() {
        let first = snapshot(true);
        assert_eq!(
            first.backends.len(),
            1,
            "unresolved: the literal backend only"
        );
        let one = Snapshot::with_answers(&first, answers(&["198.18.0.13"]), true);
        let names: Vec<&str> = one.backends.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["198.18.0.11:80", "web.lab:80@198.18.0.13"]);
        assert!(Arc::ptr_eq(&one.backends[0], &first.backends[0]));
        assert!(!one.backends[1].is_up(), "a new address starts DOWN");
        assert_eq!(one.backends[1].record_check(true, 2, 3), Some(true));
        let two = Snapshot::with_answers(&one, answers(&["198.18.0.13", "198.18.0.14"]), true);
        assert!(Arc::ptr_eq(&two.backends[1], &one.backends[1]));
        assert!(two.backends[1].is_up() && !two.backends[2].is_up());
        let reloaded = Snapshot::build((*two.config).clone(), Some(&two));
        assert_eq!(reloaded.backends.len(), 3);
        assert!(reloaded
            .backends
            .iter()
            .zip(&two.backends)
            .all(|(a, b)| Arc::ptr_eq(a, b)));
        // Without checks, or at start, a new address is UP at once.
        let unchecked = Snapshot::with_answers(&snapshot(false), answers(&["198.18.0.13"]), true);
        assert!(unchecked.backends[1].is_up());
        let at_start = Snapshot::with_answers(&snapshot(true), answers(&["198.18.0.13"]), false);
        assert!(at_start.backends[1].is_up());
    }
}
