//! The request path: pick a backend, send the request, hand back the answer.
//!
//! [`exchange`] is the one retry loop for every request, with or without a
//! body, following HAProxy's `retries` + `option redispatch`: a request whose
//! connection failed before any byte was sent goes to another healthy backend;
//! an idempotent request whose connection closed before any answer byte is
//! sent again (on further pooled connections while those keep failing, then
//! once on another backend), but only while its whole body is still held here:
//! a body streamed from the client is never sent twice. Everything else that
//! fails becomes a 502/503/504 with a one-line reason, never a hang or a panic.
//! Not for: parsing or writing HTTP (`http1`, `h1.rs`, `upstream.rs`).

pub mod dispatch;
pub mod handover;
pub mod state;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use tokio::time::Sleep;

use crate::backend::upstream::{BodySource, Head, SendError, UpstreamBody};
use crate::backend::{h2, BackendState, Conn, ConnectError};
use crate::balance::{Candidate, RequestKey};
use crate::config::PoolSpec;
use crate::error::{Error, Kind, Phase, Retry, Side, Termination};
use crate::http1::request::Prepared;
use crate::proxy::state::{PoolLive, Shared, Snapshot};

/// A request, its head ready for a backend.
pub struct Outgoing<'a> {
    /// Request line, headers (hop-by-hop ones removed, forwarding ones added)
    /// and the blank line.
    pub head: &'a [u8],
    /// The request target, for the balancing key.
    pub target: &'a str,
    /// Without a Host header, each backend's address is sent as one.
    pub has_host: bool,
    pub idempotent: bool,
    pub head_request: bool,
    /// The request asks for a protocol switch (Upgrade): a 101 answer turns the
    /// connection into a tunnel.
    pub upgrade: bool,
    pub body: Body<'a>,
    /// A timer of the caller's for the server timeout, reset here, so that a
    /// request takes no timer of its own (None: one is made).
    pub timer: Option<Pin<&'a mut Sleep>>,
    /// The backend the client's sticky cookie names (its cookie id).
    pub sticky: Option<&'a str>,
}

impl<'a> Outgoing<'a> {
    /// A prepared request (from HTTP/1 or HTTP/2) with its body.
    pub fn of(req: &'a Prepared, body: Body<'a>, sticky: Option<&'a str>) -> Self {
        Outgoing {
            head: &req.out,
            target: req.target(),
            has_host: req.has_host,
            idempotent: req.idempotent,
            head_request: req.head_request,
            upgrade: req.upgrade,
            body,
            timer: None,
            sticky,
        }
    }
}

/// A request's body, framed for the backend.
pub enum Body<'a> {
    None,
    /// All of it, here: it can be sent again.
    Whole(&'a [Bytes]),
    /// What arrived with the head, and the rest as the client sends it.
    Streamed {
        first: &'a [Bytes],
        rest: &'a mut (dyn BodySource + Send),
    },
}

/// What a request got.
pub enum Answer {
    Backend {
        head: Head,
        body: UpstreamBody,
        backend: InFlight,
        /// The request went out whole; if not (the backend answered early), the
        /// client's connection ends after this answer.
        whole: bool,
    },
    /// A local error answer.
    Local(Failure),
    /// The client left, or broke its body, while it was being sent: nothing
    /// more can be said to it.
    ClientFailed(std::io::Error),
}

/// Sends `req` to a backend of pool `pool` (retrying as the module header
/// says) and returns the answer's head with its body still to be read.
pub async fn exchange(
    req: &mut Outgoing<'_>,
    shared: &Shared,
    peer: SocketAddr,
    snap: &Snapshot,
    pool: usize,
) -> Answer {
    let spec = &snap.config.resolved.pools[pool];
    let live = &snap.pools[pool];
    let key = RequestKey {
        client_ip: peer.ip(),
        path_and_query: req.target,
        value: hashed_value(spec, req.head),
    };
    let mut tried = Tried::default();
    let mut failed_connects = 0u32;
    let mut stale_conns = 0u32;
    let mut replayed = false;
    let mut last_error: Option<ConnectError> = None;
    let mut with_host = Vec::new();
    // The backend a sticky cookie names, while it can take requests.
    let mut sticky = req
        .sticky
        .and_then(|id| spec.backends.iter().position(|b| b.cookie_id() == id));
    let mut queued_until = None;
    loop {
        let limits = Limits::of(spec);
        if let Some(i) = sticky {
            // As HAProxy's DRAIN: a draining backend keeps its sticky clients.
            let b = &live.backends[i];
            let usable = b.is_up()
                && b.admin_state() != crate::backend::AdminState::Maint
                && b.weight_override().unwrap_or(spec.backends[i].weight) > 0;
            if !usable || tried.as_slice().contains(&i) {
                sticky = None;
            }
        }
        let picked = match sticky {
            Some(i) => live.backends[i]
                .has_room(limits.maxconn(&spec.backends[i]))
                .then_some(i),
            None => next_backend(spec, live, &key, &tried),
        };
        let Some(idx) = picked else {
            let Some(timeout) = spec
                .queue_timeout
                .filter(|_| sticky.is_some() || full(spec, live))
            else {
                return Answer::Local(unavailable(shared, peer, last_error));
            };
            // Every backend that may take the request is at its maxconn: wait for a slot.
            let queue = &live.backends[0].queue;
            if queued_until.is_none() {
                if spec.max_queue > 0 && queue.waiting.load(Ordering::Relaxed) >= spec.max_queue {
                    queue.refused_total.fetch_add(1, Ordering::Relaxed);
                    let reason = format!("the queue of pool {} is full", spec.name);
                    let e = Error::new(
                        Side::Proxy,
                        Phase::Queue,
                        Kind::Unavailable,
                        StatusCode::SERVICE_UNAVAILABLE,
                        reason,
                    );
                    return Answer::Local(fail(shared, peer, e));
                }
                queue.queued_total.fetch_add(1, Ordering::Relaxed);
            }
            let until = *queued_until.get_or_insert(tokio::time::Instant::now() + timeout);
            let room = || match sticky {
                Some(i) => live.backends[i].has_room(limits.maxconn(&spec.backends[i])),
                None => !full(spec, live),
            };
            if !queue.wait(until, room).await {
                queue.refused_total.fetch_add(1, Ordering::Relaxed);
                shared.stats.timed_out(Side::Backend, Phase::Queue);
                let reason = format!(
                    "no backend of pool {} had a free slot within {timeout:?} (queue-timeout)",
                    spec.name
                );
                let e = Error::new(
                    Side::Backend,
                    Phase::Queue,
                    Kind::Timeout,
                    StatusCode::SERVICE_UNAVAILABLE,
                    reason,
                );
                return Answer::Local(fail(shared, peer, e));
            }
            continue;
        };
        let backend = &live.backends[idx];
        let Some(in_flight) = InFlight::take(backend, limits.maxconn(&spec.backends[idx])) else {
            // Another request took the last slot first.
            continue;
        };
        // The pool's transport as this request's config has it.
        let transport = &spec.transport;
        let sni = match transport.tls {
            Some(_) => backend.pool.sni_for(
                transport,
                backend.dns_name(),
                crate::http1::fields::head_field(req.head, "host"),
            ),
            None => None,
        };
        let conn = backend.pool.checkout(&backend.stats, transport, sni);
        let (conn, reused) = match conn.await {
            Ok(c) => c,
            Err(e) => {
                drop(in_flight);
                failed_connects += 1;
                if matches!(e, ConnectError::Timeout(_)) {
                    shared.stats.timed_out(Side::Backend, Phase::Connect);
                }
                if !connect_failed(spec, backend, idx, &e, failed_connects, &mut tried) {
                    return Answer::Local(fail(shared, peer, e.error()));
                }
                last_error = Some(e);
                continue;
            }
        };
        if !reused {
            backend.record_connect(true, spec.health.passive_fall);
        }
        let head = if req.has_host {
            req.head
        } else {
            // Before the blank line that ends the head.
            with_host.clear();
            with_host.extend_from_slice(&req.head[..req.head.len() - 2]);
            with_host.extend_from_slice(b"host: ");
            with_host.extend_from_slice(backend.address.to_string().as_bytes());
            with_host.extend_from_slice(b"\r\n\r\n");
            &with_host[..]
        };
        backend.stats.requests.fetch_add(1, Ordering::Relaxed);
        let server = spec.server;
        let sent = match conn {
            Conn::H2(lease) => {
                let scheme = if transport.tls.is_some() {
                    "https"
                } else {
                    "http"
                };
                // Written out only if the head had no Host (it has one here).
                let authority = backend.address;
                let payload = match &mut req.body {
                    Body::Streamed { first, rest } => h2::Payload::Streamed {
                        first,
                        rest: &mut **rest,
                    },
                    Body::Whole(b) => h2::Payload::Whole(b),
                    Body::None => h2::Payload::Whole(&[]),
                };
                // Boxed (made in its box, never on this future's stack): HTTP/2 to
                // backends is the rarer path. `server` bounds each wait in it.
                let send = Box::pin(h2::send(
                    lease,
                    head,
                    scheme,
                    &authority,
                    payload,
                    req.head_request,
                    server,
                ));
                // Answered, failed and retried as an HTTP/1.1 exchange is (a
                // stream a pooled session's backend refused counts as a stale
                // connection's).
                send.await
            }
            Conn::H1(conn) => match &mut req.body {
                Body::Streamed { first, rest } => {
                    // Boxed: its state is large and rare; every connection's task would
                    // otherwise carry room for it while it idles.
                    Box::pin(conn.send_streaming(
                        head,
                        first,
                        &mut **rest,
                        req.head_request,
                        server,
                    ))
                    .await
                }
                body => {
                    let whole = match body {
                        Body::Whole(b) => *b,
                        _ => &[][..],
                    };
                    let sent = match req.timer.as_mut() {
                        Some(timer) => {
                            // `tokio::time::timeout` on a timer that already exists,
                            // moved only to an earlier deadline (as the connection's
                            // waits do): one that fires early is moved on then.
                            let mut timer = timer.as_mut();
                            let deadline = tokio::time::Instant::now() + server;
                            if timer.is_elapsed() || deadline < timer.deadline() {
                                timer.as_mut().reset(deadline);
                            }
                            let mut send = std::pin::pin!(conn.send(
                                head,
                                whole,
                                req.head_request,
                                req.upgrade
                            ));
                            std::future::poll_fn(|cx| {
                                if let Poll::Ready(out) = send.as_mut().poll(cx) {
                                    return Poll::Ready(Some(out));
                                }
                                loop {
                                    std::task::ready!(timer.as_mut().poll(cx));
                                    if timer.deadline() >= deadline {
                                        return Poll::Ready(None);
                                    }
                                    timer.as_mut().reset(deadline);
                                }
                            })
                            .await
                        }
                        None => {
                            let send = conn.send(head, whole, req.head_request, req.upgrade);
                            tokio::time::timeout(server, send).await.ok()
                        }
                    };
                    match sent {
                        Some(sent) => sent.map(|(head, body)| (head, body, true)),
                        None => Err(SendError::Timeout),
                    }
                }
            },
        };
        match sent {
            Ok((head, body, whole)) => {
                backend.stats.count_status(head.status.as_u16());
                return Answer::Backend {
                    head,
                    body,
                    backend: in_flight,
                    whole,
                };
            }
            Err(SendError::Client(e)) => return Answer::ClientFailed(e),
            Err(e) => {
                let error = e.error(&backend.name, server);
                if error.retry == Retry::IfIdempotent
                    && req.idempotent
                    && !matches!(req.body, Body::Streamed { .. })
                {
                    // On further pooled connections while those keep failing,
                    // then once more on another backend.
                    if reused && stale_conns < 8 {
                        stale_conns += 1;
                        continue;
                    }
                    if !replayed {
                        replayed = true;
                        backend.stats.retries.fetch_add(1, Ordering::Relaxed);
                        if spec.redispatch {
                            backend.stats.redispatches.fetch_add(1, Ordering::Relaxed);
                            tried.push(idx);
                        }
                        tracing::debug!(backend = %backend.name, error = %e, reused, "replaying idempotent request");
                        continue;
                    }
                }
                return Answer::Local(failed(shared, peer, backend, error));
            }
        }
    }
}

/// The next backend to try: one not tried yet if any is eligible. Excluding
/// every tried backend may leave none; then the same one may be tried again
/// (bounded by the callers' retry counters).
fn next_backend(
    spec: &PoolSpec,
    live: &PoolLive,
    key: &RequestKey<'_>,
    tried: &Tried,
) -> Option<usize> {
    pick(spec, live, key, tried.as_slice()).or_else(|| match tried.len {
        0 => None,
        _ => pick(spec, live, key, &[]),
    })
}

/// The `maxconn` that holds in a pool: every backend's with a queue, none
/// without (`first` reads it on its own).
#[derive(Clone, Copy)]
struct Limits {
    queueing: bool,
}

impl Limits {
    fn of(spec: &PoolSpec) -> Limits {
        Limits {
            queueing: spec.queue_timeout.is_some(),
        }
    }

    fn maxconn(self, b: &crate::config::Backend) -> u32 {
        if self.queueing {
            b.maxconn
        } else {
            0
        }
    }
}

/// Every backend that could take a request is at its maxconn (and one could).
fn full(spec: &PoolSpec, live: &PoolLive) -> bool {
    let mut any = false;
    for (b, c) in live.backends.iter().zip(&spec.backends) {
        if b.candidate(c, spec.health.slow_start).eligible() {
            if c.maxconn == 0 || b.has_room(c.maxconn) {
                return false;
            }
            any = true;
        }
    }
    any
}

/// What `header` and `cookie` hash in this pool: the value in the request's head.
pub(crate) fn hashed_value<'a>(spec: &'a PoolSpec, head: &'a [u8]) -> Option<&'a [u8]> {
    let b = &spec.balance;
    match b.algorithm {
        crate::balance::Algorithm::Header => {
            crate::http1::fields::head_field(head, b.header.as_deref()?)
        }
        crate::balance::Algorithm::Cookie => {
            crate::http1::fields::cookie(head, b.cookie.as_deref()?)
        }
        _ => None,
    }
}

/// No backend left to try: the last connect error, or none healthy.
fn unavailable(shared: &Shared, peer: SocketAddr, last_error: Option<ConnectError>) -> Failure {
    let e = match last_error {
        Some(e) => e.error(),
        None => Error::new(
            Side::Backend,
            Phase::Connect,
            Kind::Unavailable,
            StatusCode::SERVICE_UNAVAILABLE,
            "no healthy backend",
        ),
    };
    fail(shared, peer, e)
}

/// An exchange with `backend` that failed: counted against it (a timeout,
/// or an error answered 502), or against the client's timeouts.
fn failed(shared: &Shared, peer: SocketAddr, backend: &BackendState, e: Error) -> Failure {
    if e.kind == Kind::Timeout {
        shared.stats.timed_out(e.side, e.phase);
    }
    match (e.side, e.kind) {
        (Side::Client, Kind::Timeout) => {
            shared.stats.client_timeouts.fetch_add(1, Ordering::Relaxed);
        }
        (Side::Client, _) => {}
        (_, Kind::Timeout) => {
            backend.stats.timeouts.fetch_add(1, Ordering::Relaxed);
            backend.stats.count_status(e.status.as_u16());
        }
        _ => {
            backend
                .stats
                .response_errors
                .fetch_add(1, Ordering::Relaxed);
            backend.stats.count_status(e.status.as_u16());
        }
    }
    fail(shared, peer, e)
}

/// A failed connect: counted, maybe the backend marked down. Returns whether
/// another attempt may follow (false past `retries`).
fn connect_failed(
    spec: &PoolSpec,
    backend: &BackendState,
    idx: usize,
    e: &ConnectError,
    failed_connects: u32,
    tried: &mut Tried,
) -> bool {
    if backend.record_connect(false, spec.health.passive_fall) {
        tracing::warn!(backend = %backend.name, error = %e, "backend marked DOWN after consecutive connect failures");
    } else {
        tracing::debug!(backend = %backend.name, error = %e, "connect failed");
    }
    if failed_connects > spec.retries {
        return false;
    }
    backend.stats.retries.fetch_add(1, Ordering::Relaxed);
    if spec.redispatch {
        backend.stats.redispatches.fetch_add(1, Ordering::Relaxed);
        tried.push(idx);
    }
    true
}

fn pick(
    spec: &PoolSpec,
    live: &PoolLive,
    key: &RequestKey<'_>,
    exclude: &[usize],
) -> Option<usize> {
    let slow_start = spec.health.slow_start;
    let n = live.backends.len();
    const STACK: usize = 32;
    if n <= STACK {
        let mut buf = [Candidate {
            weight: 0,
            in_flight: 0,
            up: false,
            maxconn: 0,
        }; STACK];
        for (i, (b, c)) in live.backends.iter().zip(&spec.backends).enumerate() {
            buf[i] = candidate(spec, b, c, slow_start);
        }
        live.selection.select(&buf[..n], key, exclude)
    } else {
        let v: Vec<Candidate> = live
            .backends
            .iter()
            .zip(&spec.backends)
            .map(|(b, c)| candidate(spec, b, c, slow_start))
            .collect();
        live.selection.select(&v, key, exclude)
    }
}

/// A backend as its pool's scheduler sees it: with a queue, one at its
/// maxconn cannot be picked.
fn candidate(
    spec: &PoolSpec,
    b: &BackendState,
    c: &crate::config::Backend,
    slow_start: Duration,
) -> Candidate {
    let mut cand = b.candidate(c, slow_start);
    if spec.queue_timeout.is_some() && c.maxconn > 0 && cand.in_flight >= c.maxconn {
        cand.up = false;
    }
    cand
}

/// The backend of pool `pool` a request with `key` would get now (for
/// `floatlb route`; a real pick may differ as load and health change).
pub fn pick_now(snap: &Snapshot, pool: usize, key: &RequestKey<'_>) -> Option<usize> {
    pick(
        &snap.config.resolved.pools[pool],
        &snap.pools[pool],
        key,
        &[],
    )
}

/// Backends already tried for one request.
#[derive(Default)]
struct Tried {
    idx: [usize; 16],
    len: usize,
}

impl Tried {
    fn push(&mut self, i: usize) {
        if self.len < self.idx.len() && !self.as_slice().contains(&i) {
            self.idx[self.len] = i;
            self.len += 1;
        }
    }
    fn as_slice(&self) -> &[usize] {
        &self.idx[..self.len]
    }
}

/// An answer of floatlb's own: an error with its one-line text, or what a
/// route answers itself (a redirect, a page).
pub struct Failure {
    pub status: StatusCode,
    pub body: Bytes,
    pub content_type: std::borrow::Cow<'static, str>,
    /// A redirect's target.
    pub location: Option<String>,
    /// The `WWW-Authenticate` of a 401 (RFC 9110 §11.6.1).
    pub challenge: Option<String>,
    /// The `Retry-After` of a 429, in seconds (RFC 6585 §4, RFC 9110 §10.2.3).
    pub retry_after: Option<u64>,
    /// How long the answer is held back first (a tarpit).
    pub hold: Option<Duration>,
    /// What the access log says ended the request.
    pub termination: Termination,
}

impl Failure {
    /// The answer to `e`: "502 Bad Gateway: <reason>".
    pub fn of(e: &Error) -> Self {
        let text = crate::http1::answers::error_text(e.status, &e.reason);
        Failure {
            status: e.status,
            body: Bytes::from(text),
            content_type: crate::http1::answers::ERROR_CONTENT_TYPE.into(),
            location: None,
            challenge: None,
            retry_after: None,
            hold: None,
            termination: e.termination(),
        }
    }

    /// A route's own answer (a redirect, a page): termination `LR`.
    pub fn local(status: StatusCode, body: Bytes, content_type: String) -> Self {
        let e = Error::new(Side::Proxy, Phase::Request, Kind::Answered, status, "");
        Failure {
            status,
            body,
            content_type: content_type.into(),
            location: None,
            challenge: None,
            retry_after: None,
            hold: None,
            termination: e.termination(),
        }
    }
}

/// Counts and logs a local error answer, and writes its text.
pub fn fail(shared: &Shared, peer: SocketAddr, e: Error) -> Failure {
    let counter = match e.status.as_u16() {
        400 => &shared.stats.bad_requests,
        502 => &shared.stats.errors_502,
        503 => &shared.stats.errors_503,
        504 => &shared.stats.errors_504,
        _ => &shared.stats.errors_other,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(
        status = e.status.as_u16(),
        reason = %e.reason,
        side = ?e.side,
        phase = ?e.phase,
        client = %peer,
        "error response"
    );
    Failure::of(&e)
}

/// `exchange` (or any wait for an answer), ended at the request's deadline
/// (`[timeouts] request`) if it has one: 504, the backend's slot let go.
/// The exchange is polled where it is pinned (not moved), and the timer is
/// made only for a request with a deadline.
pub async fn by_deadline<F: Future>(
    deadline: Option<tokio::time::Instant>,
    shared: &Shared,
    peer: SocketAddr,
    mut exchange: Pin<&mut F>,
    answered: impl FnOnce(Answer) -> F::Output,
) -> F::Output {
    let Some(at) = deadline else {
        return exchange.await;
    };
    let mut timer = Box::pin(tokio::time::sleep_until(at));
    let done = std::future::poll_fn(|cx| match exchange.as_mut().poll(cx) {
        Poll::Ready(out) => Poll::Ready(Some(out)),
        Poll::Pending => timer.as_mut().poll(cx).map(|()| None),
    })
    .await;
    if let Some(out) = done {
        return out;
    }
    let e = Error::new(
        Side::Backend,
        Phase::Headers,
        Kind::Timeout,
        StatusCode::GATEWAY_TIMEOUT,
        "no answer within the request's deadline (timeouts.request)",
    );
    shared.stats.timed_out(e.side, e.phase);
    answered(Answer::Local(fail(shared, peer, e)))
}

/// A request body the client broke or left (`Answer::ClientFailed`), as an
/// error: its chunk framing broken (400), over max-body-size (413), or the
/// client gone.
pub fn client_body_error(e: &std::io::Error) -> Error {
    let (kind, status, reason) = match e.kind() {
        std::io::ErrorKind::InvalidData => (
            Kind::Malformed,
            StatusCode::BAD_REQUEST,
            "malformed request body".to_string(),
        ),
        std::io::ErrorKind::InvalidInput => {
            (Kind::TooLarge, StatusCode::PAYLOAD_TOO_LARGE, e.to_string())
        }
        _ => (Kind::Closed, StatusCode::BAD_REQUEST, e.to_string()),
    };
    Error::new(Side::Client, Phase::Body, kind, status, reason)
}

/// A finished request, as the metrics and the access log record it.
pub struct Finished {
    pub peer: SocketAddr,
    /// What the access log needs (None when it is off).
    pub log: Option<crate::http1::request::LogFields>,
    pub version: http::Version,
    pub status: u16,
    /// The answer's body size, when known.
    pub bytes: Option<u64>,
    /// From the request's head having arrived to the answer's head being
    /// ready to write: what a request's duration means, for both.
    pub took: Duration,
    pub route: Option<usize>,
    pub pool: Option<usize>,
    /// The backend that answered.
    pub backend: Option<String>,
    /// What ended the request ([`Termination::NORMAL`]: its answer).
    pub termination: Termination,
    /// The per-client tables it was counted in (its status may be an error there).
    pub tracked: dispatch::Tracked,
}

/// The one place a finished request is recorded, for HTTP/1 and HTTP/2
/// alike: its duration in the histogram, an error answer in the per-client
/// tables it was counted in, its access-log record.
pub fn finished(shared: &Shared, snap: &Snapshot, f: Finished) {
    shared.metrics.duration.observe(f.took.as_secs_f64());
    f.tracked.answered(snap, f.status);
    if let (Some(log), Some(fields)) = (&shared.access_log, f.log) {
        let resolved = &snap.config.resolved;
        log.log(crate::observe::access_log::Record {
            client: f.peer.ip(),
            at: fields.at,
            method: fields.method,
            target: fields.target,
            version: f.version,
            status: f.status,
            bytes: f.bytes,
            referer: fields.referer,
            user_agent: fields.user_agent,
            duration: f.took,
            route: f
                .route
                .and_then(|r| resolved.routes.get(r))
                .map(|r| r.name.clone()),
            pool: f
                .pool
                .and_then(|p| resolved.pools.get(p))
                .map(|p| p.name.clone()),
            backend: f.backend,
            termination: f.termination,
        });
    }
}

/// Counts a request against a backend's in-flight load until dropped.
pub struct InFlight(Arc<BackendState>);

impl InFlight {
    /// A slot on `b`, if it is below `maxconn` (0: no limit).
    fn take(b: &Arc<BackendState>, maxconn: u32) -> Option<Self> {
        b.take_slot(maxconn).then(|| InFlight(b.clone()))
    }

    /// The backend the request went to.
    pub fn backend(&self) -> &BackendState {
        &self.0
    }
}

impl InFlight {
    /// Gives the answer's connection back to the backend's pool if it was
    /// read to its end and may be used again.
    pub fn release(&self, body: &mut UpstreamBody) {
        if let Some(conn) = body.take_reusable() {
            self.0.pool.checkin_upstream(conn);
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.give_slot();
    }
}
