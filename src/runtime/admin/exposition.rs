//! `/metrics`: the Prometheus text exposition of everything the proxy counts
//! ([`ProxyStats`](crate::proxy::state::ProxyStats), each backend's
//! [`BackendStats`](crate::backend::BackendStats), the request histogram) and
//! what the daemon adds (VRRP, through [`AdminHooks`]).

use std::sync::atomic::Ordering;

use crate::observe::metrics::Families;
use crate::proxy::state::Shared;
use crate::runtime::admin::hooks::AdminHooks;

/// The whole exposition: proxy, backends, health, reloads, and what the hooks
/// add (VRRP).
pub fn render(shared: &Shared, extra: &dyn AdminHooks) -> String {
    let f = Families::new();
    let s = &shared.stats;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);

    f.gauge_vec(
        "floatlb_build_info",
        "Build information; the value is always 1.",
        &["version"],
        [(vec![env!("CARGO_PKG_VERSION")], 1)],
    );
    f.counter(
        "floatlb_requests_total",
        "Client requests received.",
        load(&s.requests),
    );
    f.counter(
        "floatlb_connections_total",
        "Client connections accepted.",
        load(&s.connections_total),
    );
    f.gauge(
        "floatlb_connections_active",
        "Client connections open now.",
        s.connections_active.load(Ordering::Relaxed),
    );
    f.gauge(
        "floatlb_tunnels_active",
        "Upgraded client connections (WebSocket) relaying bytes to a backend.",
        s.tunnels_active.load(Ordering::Relaxed),
    );
    f.counter(
        "floatlb_tunnels_total",
        "Client connections upgraded to a two-way tunnel (101 Switching Protocols).",
        load(&s.tunnels_total),
    );
    f.counter(
        "floatlb_tunnels_closed_by_drain_total",
        "Tunnels and TCP connections a drain or planned handover closed in order (a FIN to both sides).",
        load(&s.tunnels_closed_by_drain),
    );
    f.counter(
        "floatlb_grpc_calls_closed_by_drain_total",
        "gRPC calls on HTTP/2 a drain or planned handover ended in order, with grpc-status UNAVAILABLE in their trailers.",
        load(&s.grpc_calls_closed_by_drain),
    );
    f.counter(
        "floatlb_client_timeouts_total",
        "Client connections closed with 408 for a request head slower than client-header.",
        load(&s.client_timeouts),
    );
    f.counter_vec(
        "floatlb_peer_updates_total",
        "[peers]: per-client entries sent to the peers, and received from them and folded into a [[limit]] table.",
        &["direction"],
        [
            (vec!["sent"], load(&s.peer_updates_sent)),
            (vec!["received"], load(&s.peer_updates_received)),
        ],
    );
    f.counter_vec(
        "floatlb_peer_datagrams_dropped_total",
        "[peers]: datagrams dropped unread: malformed, bad_tag (another key, or altered), replayed, stale (over 30 s of clock skew), own.",
        &["reason"],
        crate::peers::Drop::ALL
            .iter()
            .zip(&s.peer_dropped)
            .map(|(d, n)| (vec![d.as_str()], load(n))),
    );
    f.counter(
        "floatlb_peer_send_errors_total",
        "[peers]: datagrams that could not be sent to a peer.",
        load(&s.peer_send_errors),
    );
    f.counter_vec(
        "floatlb_timeouts_total",
        "Waits that ran out, by the side waited on (client or backend) and the phase: request (head, TLS handshake), queue, connect, headers (the answer's head), data (a body, either way).",
        &["side", "phase"],
        crate::error::timeout_labels()
            .zip(&s.timeouts)
            .map(|((side, phase), n)| (vec![side.as_str(), phase.as_str()], load(n))),
    );
    f.counter_vec(
        "floatlb_errors_total",
        "Error responses floatlb produced, and failed accepts, by kind.",
        &["kind"],
        [
            (vec!["400"], load(&s.bad_requests)),
            (vec!["502"], load(&s.errors_502)),
            (vec!["503"], load(&s.errors_503)),
            (vec!["504"], load(&s.errors_504)),
            (vec!["other"], load(&s.errors_other)),
            (vec!["accept"], load(&s.accept_errors)),
        ],
    );
    f.counter_vec(
        "floatlb_refused_total",
        "Requests refused by a listener's or route's allow-from/deny-from lists (403) or basic auth (401), by reason.",
        &["reason"],
        crate::access::Refusal::ALL
            .iter()
            .map(|r| (vec![r.label()], load(&s.refused[r.index()]))),
    );
    f.counter_vec(
        "floatlb_config_reloads_total",
        "Configuration reloads by result.",
        &["result"],
        [
            (vec!["success"], load(&s.reloads_ok)),
            (vec!["failure"], load(&s.reloads_failed)),
        ],
    );
    f.gauge_f64(
        "floatlb_config_last_reload_success_timestamp_seconds",
        "Unix time of the last successful configuration load.",
        load(&s.last_reload_unix) as f64,
    );
    f.add(shared.metrics.duration.clone());
    f.counter_vec(
        "floatlb_tls_handshakes_total",
        "TLS handshakes on the [tls] listener by result (resumed ones are also counted as ok).",
        &["result"],
        [
            (vec!["ok"], load(&s.tls_handshakes)),
            (vec!["resumed"], load(&s.tls_resumed)),
            (vec!["failed"], load(&s.tls_handshake_errors)),
        ],
    );
    f.counter_vec(
        "floatlb_proxy_protocol_total",
        "Connections on accept-proxy listeners by PROXY header result: ok, untrusted (source not listed, closed), invalid (missing, broken or late, closed).",
        &["result"],
        [
            (vec!["ok"], load(&s.proxy_protocol[0])),
            (vec!["untrusted"], load(&s.proxy_protocol[1])),
            (vec!["invalid"], load(&s.proxy_protocol[2])),
        ],
    );
    f.counter(
        "floatlb_http2_requests_total",
        "Client requests that came as HTTP/2 streams (also in floatlb_requests_total).",
        load(&s.h2_requests),
    );
    let live = shared.live.load_full();
    if let Some(m) = live.config.tls.as_ref().and_then(|t| t.material()) {
        // ACME certificates too, as files in the state directory.
        let acme = crate::runtime::acme::expiry(live.config.tls.as_ref());
        let expiry: Vec<_> = m.expiry.iter().cloned().chain(acme).collect();
        let files: Vec<String> = expiry
            .iter()
            .map(|(_, f, _)| f.display().to_string())
            .collect();
        f.gauge_vec(
            "floatlb_tls_certificate_expiry_seconds",
            "Unix time at which each loaded certificate (its leaf) expires.",
            &["name", "file"],
            expiry
                .iter()
                .zip(&files)
                .map(|((name, _, at), file)| (vec![name.as_str(), file.as_str()], *at)),
        );
        let acme = crate::runtime::acme::status();
        if !acme.is_empty() {
            f.gauge_vec(
                "floatlb_acme_failures",
                "Failed ACME orders in a row for each [[tls.acme]] certificate (0: the last one succeeded).",
                &["name"],
                acme.iter()
                    .map(|a| (vec![a.names.first().map_or("", String::as_str)], i64::from(a.failures))),
            );
        }
    }
    if let Some(log) = &shared.access_log {
        f.counter(
            "floatlb_access_log_dropped_total",
            "Access log records dropped because the writer fell behind.",
            log.dropped.load(Ordering::Relaxed),
        );
    }

    let snap = shared.live.load_full();
    // Every series of a backend names its pool: one server may be in several.
    let backends: Vec<_> = snap
        .each_backend()
        .map(|(p, b, c)| (b, c, p.name.as_str()))
        .collect();
    let per = |get: &dyn Fn(&crate::backend::BackendStats) -> u64| {
        backends
            .iter()
            .map(|(b, _, p)| (vec![b.name.as_str(), *p], get(&b.stats)))
            .collect::<Vec<_>>()
    };
    f.gauge_vec(
        "floatlb_backend_up",
        "1 if the backend passes health checks.",
        &["backend", "pool"],
        backends
            .iter()
            .map(|(b, _, p)| (vec![b.name.as_str(), *p], b.is_up() as i64)),
    );
    f.gauge_vec(
        "floatlb_backend_weight",
        "Weight in effect: the configured one, or one set through the runtime API.",
        &["backend", "pool"],
        backends.iter().map(|(b, c, p)| {
            let w = b.weight_override().unwrap_or(c.weight);
            (vec![b.name.as_str(), *p], w as i64)
        }),
    );
    f.gauge_vec(
        "floatlb_backend_admin_state",
        "1 for the state an operator set through the runtime API (ready, drain, maint).",
        &["backend", "state", "pool"],
        backends.iter().flat_map(|(b, _, p)| {
            let now = b.admin_state();
            [
                crate::backend::AdminState::Ready,
                crate::backend::AdminState::Drain,
                crate::backend::AdminState::Maint,
            ]
            .into_iter()
            .map(move |s| (vec![b.name.as_str(), s.as_str(), *p], (s == now) as i64))
        }),
    );
    f.gauge_vec(
        "floatlb_backend_in_flight_requests",
        "Requests being served by the backend now.",
        &["backend", "pool"],
        backends.iter().map(|(b, _, p)| {
            (
                vec![b.name.as_str(), *p],
                b.in_flight.load(Ordering::Relaxed) as i64,
            )
        }),
    );
    f.gauge_vec(
        "floatlb_backend_idle_connections",
        "Idle keep-alive connections pooled for the backend.",
        &["backend", "pool"],
        backends
            .iter()
            .map(|(b, _, p)| (vec![b.name.as_str(), *p], b.pool.idle_count() as i64)),
    );
    f.counter_vec(
        "floatlb_backend_requests_total",
        "Requests sent to the backend (each attempt).",
        &["backend", "pool"],
        per(&|st| load(&st.requests)),
    );
    f.counter_vec(
        "floatlb_backend_connections_total",
        "Connections opened to the backend.",
        &["backend", "pool"],
        per(&|st| load(&st.connections_opened)),
    );
    let mut responses = Vec::new();
    for (b, _, p) in &backends {
        let st = &b.stats;
        for (class, a) in [
            ("1xx", &st.responses_1xx),
            ("2xx", &st.responses_2xx),
            ("3xx", &st.responses_3xx),
            ("4xx", &st.responses_4xx),
            ("5xx", &st.responses_5xx),
        ] {
            responses.push((vec![b.name.as_str(), class, *p], load(a)));
        }
    }
    f.counter_vec(
        "floatlb_backend_responses_total",
        "Responses from the backend by status class.",
        &["backend", "code", "pool"],
        responses,
    );
    let mut errors = Vec::new();
    for (b, _, p) in &backends {
        let st = &b.stats;
        for (kind, a) in [
            ("connect", &st.connect_errors),
            ("response", &st.response_errors),
            ("timeout", &st.timeouts),
        ] {
            errors.push((vec![b.name.as_str(), kind, *p], load(a)));
        }
    }
    f.counter_vec(
        "floatlb_backend_errors_total",
        "Failed attempts on the backend by kind.",
        &["backend", "kind", "pool"],
        errors,
    );
    f.counter_vec(
        "floatlb_backend_retries_total",
        "Attempts on the backend that were retried.",
        &["backend", "pool"],
        per(&|st| load(&st.retries)),
    );
    f.counter_vec(
        "floatlb_backend_redispatches_total",
        "Retries of the backend's failed attempts sent to another backend.",
        &["backend", "pool"],
        per(&|st| load(&st.redispatches)),
    );
    f.counter_vec(
        "floatlb_route_requests_total",
        "Requests each [[route]] matched.",
        &["route"],
        snap.config
            .resolved
            .routes
            .iter()
            .zip(&snap.route_hits)
            .map(|(r, n)| (vec![r.name.as_str()], load(n)))
            .collect::<Vec<_>>(),
    );
    let tables: Vec<_> = snap
        .config
        .resolved
        .limits
        .iter()
        .map(|spec| spec.name.as_str())
        .zip(&snap.limits)
        .collect();
    let mut limited = Vec::new();
    for (name, t) in &tables {
        for l in crate::access::track::Limit::ALL {
            limited.push((vec![*name, l.label()], load(&t.stats.limited[l.index()])));
        }
    }
    f.counter_vec(
        "floatlb_limited_total",
        "Requests answered 429 (and connections closed at accept) for a client over a limit, by [[limit]] table and rule.",
        &["table", "rule"],
        limited,
    );
    f.gauge_vec(
        "floatlb_limit_entries",
        "Clients a [[limit]] table tracks now (at most its size).",
        &["table"],
        tables.iter().map(|(n, t)| (vec![*n], t.len() as i64)),
    );
    f.counter_vec(
        "floatlb_limit_evicted_total",
        "Idle clients a full [[limit]] table dropped before their expiry to make room.",
        &["table"],
        tables
            .iter()
            .map(|(n, t)| (vec![*n], load(&t.stats.evicted)))
            .collect::<Vec<_>>(),
    );
    f.counter_vec(
        "floatlb_limit_untracked_total",
        "Requests and connections a full [[limit]] table could not track (every entry had a connection open): let through uncounted.",
        &["table"],
        tables
            .iter()
            .map(|(n, t)| (vec![*n], load(&t.stats.untracked)))
            .collect::<Vec<_>>(),
    );
    let pools: Vec<_> = snap
        .config
        .resolved
        .pools
        .iter()
        .zip(&snap.pools)
        .filter_map(|(spec, live)| Some((spec.name.as_str(), &live.backends.first()?.queue)))
        .collect();
    f.gauge_vec(
        "floatlb_pool_queued_requests",
        "Requests waiting in the pool's queue for a backend below its maxconn.",
        &["pool"],
        pools
            .iter()
            .map(|(p, q)| (vec![*p], q.waiting.load(Ordering::Relaxed) as i64)),
    );
    f.counter_vec(
        "floatlb_pool_queued_total",
        "Requests that waited in the pool's queue.",
        &["pool"],
        pools
            .iter()
            .map(|(p, q)| (vec![*p], load(&q.queued_total)))
            .collect::<Vec<_>>(),
    );
    f.counter_vec(
        "floatlb_pool_queue_refused_total",
        "Requests answered 503 by the pool's queue: its timeout passed, or it was full.",
        &["pool"],
        pools
            .iter()
            .map(|(p, q)| (vec![*p], load(&q.refused_total)))
            .collect::<Vec<_>>(),
    );
    let mut checks = Vec::new();
    for (b, _, p) in &backends {
        checks.push((
            vec![b.name.as_str(), "success", *p],
            load(&b.stats.checks_ok),
        ));
        checks.push((
            vec![b.name.as_str(), "failure", *p],
            load(&b.stats.checks_failed),
        ));
    }
    f.counter_vec(
        "floatlb_health_checks_total",
        "Active health checks by result.",
        &["backend", "result", "pool"],
        checks,
    );
    f.counter_vec(
        "floatlb_backend_down_transitions_total",
        "Times the backend was marked DOWN.",
        &["backend", "pool"],
        per(&|st| load(&st.went_down)),
    );
    // Each (pool, name) of a backend given by name, once.
    let mut names: Vec<(&str, &str)> = snap
        .file
        .names
        .iter()
        .filter_map(|n| Some((snap.file.pools.get(n.pool)?.name.as_str(), &*n.host)))
        .collect();
    names.sort();
    names.dedup();
    if !names.is_empty() {
        let counts: Vec<(u64, u64)> = names
            .iter()
            .map(|(_, h)| shared.resolver.counts(h))
            .collect();
        f.counter_vec(
            "floatlb_resolver_changes_total",
            "Answers that changed the addresses of a backend name (the first answer included).",
            &["pool", "name"],
            names
                .iter()
                .zip(&counts)
                .map(|((p, h), c)| (vec![*p, *h], c.0))
                .collect::<Vec<_>>(),
        );
        f.counter_vec(
            "floatlb_resolver_failures_total",
            "Resolutions of a backend name that got no answer (timeout, SERVFAIL, REFUSED, malformed); the last addresses stay.",
            &["pool", "name"],
            names
                .iter()
                .zip(&counts)
                .map(|((p, h), c)| (vec![*p, *h], c.1))
                .collect::<Vec<_>>(),
        );
        f.gauge_vec(
            "floatlb_resolver_addresses",
            "Addresses a backend name stands for in its pool now (leaving ones included).",
            &["pool", "name"],
            names.iter().map(|(p, h)| {
                let n = snap.answers.get(*h).map_or(0, |v| v.len());
                (vec![*p, *h], n as i64)
            }),
        );
    }
    process_fds(&f);
    extra.metrics(&f);
    let mut text = f.encode();
    if let Some(more) = extra.metrics_text() {
        text.push_str(&more);
    }
    text
}

/// `process_open_fds` and `process_max_fds`, with the names and meaning the
/// Prometheus client libraries give them, so the usual descriptor alert works.
fn process_fds(f: &Families) {
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        f.gauge(
            "process_open_fds",
            "Number of open file descriptors.",
            dir.count() as i64,
        );
    }
    if let Some(limit) = crate::runtime::process::open_files_limit() {
        f.gauge_f64(
            "process_max_fds",
            "Maximum number of open file descriptors (the soft limit).",
            limit as f64,
        );
    }
}
