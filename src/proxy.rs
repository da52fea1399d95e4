//! The request path: pick a backend, forward the request, stream the answer.
//!
//! A request without a body is written and answered on its own task through
//! `upstream.rs`; one with a body goes through hyper's client, which streams it.
//!
//! Retries follow HAProxy's `retries` + `option redispatch`: a request whose
//! connection failed before any byte was sent goes to another healthy backend;
//! an idempotent, bodyless request whose connection closed before any response
//! byte is sent again (on further pooled connections while those keep failing,
//! then once on another backend). Everything else that fails becomes a
//! 502/503/504 with a one-line reason — never a hang or a panic.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;

use crate::backend::{BackendState, ConnectError, ReqBody};
use crate::balance::{Candidate, RequestKey};
use crate::live::{Shared, Snapshot};
use crate::server::ConnPhase;
use crate::upstream::{Head, SendError, UpstreamBody};

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Per-client-connection facts the request path needs.
#[derive(Clone)]
pub struct ConnCtx {
    pub shared: Arc<Shared>,
    pub peer: SocketAddr,
    pub phase: Arc<ConnPhase>,
}

/// Handles one client request; always produces a response.
pub async fn handle(
    req: Request<Incoming>,
    ctx: ConnCtx,
) -> Result<Response<RespBody>, Infallible> {
    ctx.phase.set_active();
    let started = std::time::Instant::now();
    let shared = &ctx.shared;
    shared.stats.requests.fetch_add(1, Ordering::Relaxed);
    let snap = shared.live.load_full();
    let resp = forward(req, &ctx, &snap).await;
    shared
        .metrics
        .duration
        .observe(started.elapsed().as_secs_f64());
    Ok(resp)
}

async fn forward(req: Request<Incoming>, ctx: &ConnCtx, snap: &Snapshot) -> Response<RespBody> {
    if ctx.phase.take_cl_and_te() {
        return bad_request(ctx, "both Content-Length and Transfer-Encoding");
    }
    if let Err(reason) = check_framing(req.headers()) {
        return bad_request(ctx, reason);
    }
    let hosts = req
        .headers()
        .get_all(header::HOST)
        .iter()
        .map(|v| v.as_bytes());
    if let Err(reason) = check_host(hosts, req.version() == Version::HTTP_10) {
        return bad_request(ctx, reason);
    }
    let cfg = &snap.config;
    let (mut parts, body) = req.into_parts();
    let client_http10 = parts.version == Version::HTTP_10;
    prepare_request_headers(
        &mut parts.headers,
        ctx.peer,
        cfg.proxy.x_forwarded_for,
        cfg.proxy.x_forwarded_proto,
    );
    if parts.uri.scheme().is_some() {
        // absolute-form from a proxy-style client: backends expect origin-form.
        if !parts.headers.contains_key(header::HOST) {
            if let Some(v) = parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            {
                parts.headers.insert(header::HOST, v);
            }
        }
        let pq = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        parts.uri = Uri::try_from(pq).unwrap_or_else(|_| Uri::from_static("/"));
    }
    parts.version = Version::HTTP_11;

    if body.is_end_stream() {
        drop(body);
        return forward_bodyless(parts, ctx, snap).await;
    }
    // A request with a body goes through hyper's client, which streams the body
    // to the backend; it is never sent twice.
    let uri = parts.uri.clone();
    let key = RequestKey {
        client_ip: ctx.peer.ip(),
        path_and_query: uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"),
    };
    let mut pending: Option<Request<ReqBody>> = Some(Request::from_parts(parts, body));

    let mut tried = Tried::default();
    let mut failed_connects = 0u32;
    let mut stale_conns = 0u32;
    let mut last_error: Option<ConnectError> = None;
    loop {
        let Some(idx) = next_backend(snap, &key, &tried) else {
            return unavailable(&ctx.shared, ctx.peer, last_error).response(ctx);
        };
        let backend = &snap.backends[idx];
        let in_flight = InFlight::new(backend.clone());
        let conn = match backend.pool.checkout(&backend.stats).await {
            Ok(c) => c,
            Err(e) => {
                drop(in_flight);
                failed_connects += 1;
                if !connect_failed(snap, idx, &e, failed_connects, &mut tried) {
                    return error_response(ctx, connect_status(&e), &e.to_string());
                }
                last_error = Some(e);
                continue;
            }
        };
        if !conn.reused {
            backend.record_connect(true, cfg.health.passive_fall);
        }
        let Some(mut req) = pending.take() else {
            return error_response(ctx, StatusCode::BAD_GATEWAY, "internal retry error");
        };
        if !req.headers().contains_key(header::HOST) {
            if let Ok(v) = HeaderValue::from_str(&backend.address.to_string()) {
                req.headers_mut().insert(header::HOST, v);
            }
        }
        let mut tx = conn.tx;
        backend.stats.requests.fetch_add(1, Ordering::Relaxed);
        let sent = tokio::time::timeout(cfg.timeouts.server, tx.try_send_request(req)).await;
        match sent {
            Err(_) => {
                return server_timeout(&ctx.shared, ctx.peer, backend, cfg.timeouts.server)
                    .response(ctx)
            }
            Ok(Ok(resp)) => {
                backend.stats.count_status(resp.status().as_u16());
                return backend_response(resp, tx, in_flight, ctx, client_http10);
            }
            Ok(Err(mut e)) => {
                if let Some(req) = e.take_message() {
                    // The pooled connection was gone before anything was written.
                    pending = Some(req);
                    stale_conns += 1;
                    if stale_conns <= 8 {
                        continue;
                    }
                }
                if e.error().is_user() {
                    // The client's body failed to parse (e.g. an invalid chunk
                    // size): the client's fault, and its connection is done.
                    return bad_request(ctx, "malformed request body");
                }
                return backend_failed(&ctx.shared, ctx.peer, backend, e.error()).response(ctx);
            }
        }
    }
}

/// The next backend to try: one not tried yet if any is eligible. Excluding
/// every tried backend may leave none; then the same one may be tried again
/// (bounded by the callers' retry counters).
fn next_backend(snap: &Snapshot, key: &RequestKey<'_>, tried: &Tried) -> Option<usize> {
    pick(snap, key, tried.as_slice()).or_else(|| match tried.len {
        0 => None,
        _ => pick(snap, key, &[]),
    })
}

/// No backend left to try: the last connect error, or none healthy.
fn unavailable(shared: &Shared, peer: SocketAddr, last_error: Option<ConnectError>) -> Failure {
    match last_error {
        Some(e) => fail(shared, peer, connect_status(&e), &e.to_string()),
        None => fail(
            shared,
            peer,
            StatusCode::SERVICE_UNAVAILABLE,
            "no healthy backend",
        ),
    }
}

fn server_timeout(
    shared: &Shared,
    peer: SocketAddr,
    backend: &BackendState,
    after: Duration,
) -> Failure {
    backend.stats.timeouts.fetch_add(1, Ordering::Relaxed);
    backend.stats.count_status(504);
    let msg = format!("backend {} did not answer within {after:?}", backend.name);
    fail(shared, peer, StatusCode::GATEWAY_TIMEOUT, &msg)
}

fn backend_failed(
    shared: &Shared,
    peer: SocketAddr,
    backend: &BackendState,
    error: &dyn std::fmt::Display,
) -> Failure {
    backend
        .stats
        .response_errors
        .fetch_add(1, Ordering::Relaxed);
    backend.stats.count_status(502);
    let msg = format!("backend {} failed: {error}", backend.name);
    fail(shared, peer, StatusCode::BAD_GATEWAY, &msg)
}

/// A failed connect: counted, maybe the backend marked down. Returns whether
/// another attempt may follow (false past `retries`).
fn connect_failed(
    snap: &Snapshot,
    idx: usize,
    e: &ConnectError,
    failed_connects: u32,
    tried: &mut Tried,
) -> bool {
    let cfg = &snap.config;
    let backend = &snap.backends[idx];
    if backend.record_connect(false, cfg.health.passive_fall) {
        tracing::warn!(backend = %backend.name, error = %e, "backend marked DOWN after consecutive connect failures");
    } else {
        tracing::debug!(backend = %backend.name, error = %e, "connect failed");
    }
    if failed_connects > cfg.proxy.retries {
        return false;
    }
    backend.stats.retries.fetch_add(1, Ordering::Relaxed);
    if cfg.proxy.redispatch {
        backend.stats.redispatches.fetch_add(1, Ordering::Relaxed);
        tried.push(idx);
    }
    true
}

/// A request without a body, its head ready for a backend.
pub struct Bodyless<'a> {
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
}

/// What a bodyless request got: a backend's answer, or a local error answer.
pub enum Answer {
    Backend {
        head: Head,
        body: UpstreamBody,
        backend: InFlight,
    },
    Local(Failure),
}

/// A request written and answered on this task through an [`Upstream`]
/// connection (see `upstream.rs`), with the same retries as [`forward`]: a
/// failed connect goes to another backend; an idempotent request whose
/// connection closed before any answer byte is sent again (on another pooled
/// connection while those keep failing, which is a backend that closed them;
/// then once more elsewhere).
pub async fn exchange(
    req: &Bodyless<'_>,
    shared: &Shared,
    peer: SocketAddr,
    snap: &Snapshot,
) -> Answer {
    let cfg = &snap.config;
    let key = RequestKey {
        client_ip: peer.ip(),
        path_and_query: req.target,
    };
    let mut tried = Tried::default();
    let mut failed_connects = 0u32;
    let mut stale_conns = 0u32;
    let mut replayed = false;
    let mut last_error: Option<ConnectError> = None;
    let mut with_host = Vec::new();
    loop {
        let Some(idx) = next_backend(snap, &key, &tried) else {
            return Answer::Local(unavailable(shared, peer, last_error));
        };
        let backend = &snap.backends[idx];
        let in_flight = InFlight::new(backend.clone());
        let (conn, reused) = match backend.pool.checkout_upstream(&backend.stats).await {
            Ok(c) => c,
            Err(e) => {
                drop(in_flight);
                failed_connects += 1;
                if !connect_failed(snap, idx, &e, failed_connects, &mut tried) {
                    let f = fail(shared, peer, connect_status(&e), &e.to_string());
                    return Answer::Local(f);
                }
                last_error = Some(e);
                continue;
            }
        };
        if !reused {
            backend.record_connect(true, cfg.health.passive_fall);
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
        let sent = tokio::time::timeout(
            cfg.timeouts.server,
            conn.send(head, req.head_request, req.upgrade),
        )
        .await;
        match sent {
            Err(_) => {
                return Answer::Local(server_timeout(shared, peer, backend, cfg.timeouts.server))
            }
            Ok(Ok((head, body))) => {
                backend.stats.count_status(head.status.as_u16());
                return Answer::Backend {
                    head,
                    body,
                    backend: in_flight,
                };
            }
            Ok(Err(SendError::NoResponse(error))) if req.idempotent => {
                if reused && stale_conns < 8 {
                    stale_conns += 1;
                    continue;
                }
                if !replayed {
                    replayed = true;
                    backend.stats.retries.fetch_add(1, Ordering::Relaxed);
                    if cfg.proxy.redispatch {
                        backend.stats.redispatches.fetch_add(1, Ordering::Relaxed);
                        tried.push(idx);
                    }
                    tracing::debug!(backend = %backend.name, %error, reused, "replaying idempotent request");
                    continue;
                }
                return Answer::Local(backend_failed(shared, peer, backend, &error));
            }
            Ok(Err(e)) => return Answer::Local(backend_failed(shared, peer, backend, &e)),
        }
    }
}

/// A bodyless request that came through hyper's server (the client side's
/// own path hands it the unusual ones): [`exchange`], answered through hyper.
async fn forward_bodyless(
    parts: http::request::Parts,
    ctx: &ConnCtx,
    snap: &Snapshot,
) -> Response<RespBody> {
    let target = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let head = crate::upstream::encode_request(&parts.method, target, &parts.headers);
    let req = Bodyless {
        head: &head,
        target,
        has_host: parts.headers.contains_key(header::HOST),
        idempotent: is_idempotent(&parts.method),
        head_request: parts.method == Method::HEAD,
        upgrade: false,
    };
    match exchange(&req, &ctx.shared, ctx.peer, snap).await {
        Answer::Backend {
            head,
            body,
            backend,
        } => {
            let (parts, ()) = head.to_response().into_parts();
            Response::from_parts(
                parts,
                RespBody {
                    inner: Inner::Upstream { body, backend },
                    _phase: PhaseGuard(ctx.phase.clone()),
                },
            )
        }
        Answer::Local(f) => f.response(ctx),
    }
}

/// Refuses requests whose body framing two HTTP parsers could read
/// differently (request smuggling, RFC 9112 §6.3): hyper tolerates some of
/// these, a backend might resolve them the other way.
fn check_framing(h: &HeaderMap) -> Result<(), &'static str> {
    let te = h.get_all(header::TRANSFER_ENCODING);
    let mut te_count = 0;
    for v in te.iter() {
        te_count += 1;
        if !v.as_bytes().eq_ignore_ascii_case(b"chunked") {
            return Err("unsupported Transfer-Encoding");
        }
    }
    if te_count > 1 {
        return Err("repeated Transfer-Encoding");
    }
    let mut cl = h.get_all(header::CONTENT_LENGTH).iter();
    if let Some(first) = cl.next() {
        if te_count > 0 {
            return Err("both Content-Length and Transfer-Encoding");
        }
        if cl.any(|v| v != first) {
            return Err("conflicting Content-Length values");
        }
    }
    Ok(())
}

fn bad_request(ctx: &ConnCtx, reason: &str) -> Response<RespBody> {
    let mut resp = error_response(ctx, StatusCode::BAD_REQUEST, reason);
    // The rest of this connection's bytes cannot be trusted.
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

fn connect_status(e: &ConnectError) -> StatusCode {
    match e {
        ConnectError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::BAD_GATEWAY,
    }
}

fn pick(snap: &Snapshot, key: &RequestKey<'_>, exclude: &[usize]) -> Option<usize> {
    let slow_start = snap.config.health.slow_start;
    let n = snap.backends.len();
    const STACK: usize = 32;
    if n <= STACK {
        let mut buf = [Candidate {
            weight: 0,
            in_flight: 0,
            up: false,
            maxconn: 0,
        }; STACK];
        for (i, b) in snap.backends.iter().enumerate() {
            buf[i] = b.candidate(&snap.config.backends[i], slow_start);
        }
        snap.selection.select(&buf[..n], key, exclude)
    } else {
        let v: Vec<Candidate> = snap
            .backends
            .iter()
            .zip(&snap.config.backends)
            .map(|(b, c)| b.candidate(c, slow_start))
            .collect();
        snap.selection.select(&v, key, exclude)
    }
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

fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// The hop-by-hop headers every message loses (RFC 9110 §7.6.1). Their name
/// lengths (2, 7, 10, 16, 17) are listed again in [`strip_hop_by_hop`].
static HOP_BY_HOP: [&HeaderName; 7] = [
    &header::CONNECTION,
    &KEEP_ALIVE,
    &PROXY_CONNECTION,
    &header::TE,
    &header::TRAILER,
    &header::TRANSFER_ENCODING,
    &header::UPGRADE,
];

/// One token of a Connection header value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionToken<'a> {
    Close,
    KeepAlive,
    /// A header name: that header is hop-by-hop too.
    Name(&'a [u8]),
}

/// The tokens of a Connection header value (RFC 9110 §7.6.1), any case,
/// empty ones skipped.
pub fn connection_tokens(value: &[u8]) -> impl Iterator<Item = ConnectionToken<'_>> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
        .map(|t| {
            if t.eq_ignore_ascii_case(b"close") {
                ConnectionToken::Close
            } else if t.eq_ignore_ascii_case(b"keep-alive") {
                ConnectionToken::KeepAlive
            } else {
                ConnectionToken::Name(t)
            }
        })
}

/// RFC 9112 §3.2: a server MUST answer 400 to an HTTP/1.1 request without a
/// Host header, and to any request with more than one Host line or a Host value
/// that is not `uri-host [ ":" port ]` (RFC 3986 §3.2.2; empty is allowed).
pub fn check_host<'a>(
    mut values: impl Iterator<Item = &'a [u8]>,
    http10: bool,
) -> Result<(), &'static str> {
    let Some(value) = values.next() else {
        return if http10 {
            Ok(())
        } else {
            Err("missing Host header")
        };
    };
    if values.next().is_some() {
        return Err("more than one Host header");
    }
    let value = value.trim_ascii();
    let (host, port) = match value.strip_prefix(b"[") {
        Some(rest) => {
            let Some(end) = rest.iter().position(|&b| b == b']') else {
                return Err("invalid Host header");
            };
            let literal = &rest[..end];
            if literal.is_empty()
                || !literal
                    .iter()
                    .all(|&b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'))
            {
                return Err("invalid Host header");
            }
            match &rest[end + 1..] {
                [] => (&b""[..], None),
                [b':', port @ ..] => (&b""[..], Some(port)),
                _ => return Err("invalid Host header"),
            }
        }
        None => match value.iter().position(|&b| b == b':') {
            Some(i) => (&value[..i], Some(&value[i + 1..])),
            None => (value, None),
        },
    };
    let reg_name_ok = host.iter().all(|&b| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'%'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
            )
    });
    if !reg_name_ok || !port.is_none_or(|p| p.iter().all(u8::is_ascii_digit)) {
        return Err("invalid Host header");
    }
    Ok(())
}

/// Whether a header name (in any case) is one of [`HOP_BY_HOP`].
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    matches!(name.len(), 2 | 7 | 10 | 16 | 17)
        && HOP_BY_HOP
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h.as_str().as_bytes()))
}

/// Removes hop-by-hop headers (RFC 9110 §7.6.1), including those the
/// Connection header names.
///
/// On the request path for every request and response, so it looks before it
/// touches: one pass over the names finds which are present (usually only
/// Connection), and the Connection value is only split into names to remove when
/// it holds more than `close` / `keep-alive`.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    let mut present = 0u8;
    for name in h.keys() {
        // Only names of these lengths can be hop-by-hop: most are passed over
        // without a comparison.
        if matches!(name.as_str().len(), 2 | 7 | 10 | 16 | 17) {
            if let Some(i) = HOP_BY_HOP.iter().position(|hop| *hop == name) {
                present |= 1 << i;
            }
        }
    }
    if present == 0 {
        return;
    }
    if present & 1 != 0 {
        let is_extra = |t: &str| {
            !t.is_empty()
                && !t.eq_ignore_ascii_case("close")
                && !t.eq_ignore_ascii_case("keep-alive")
        };
        let listed = h.get_all(header::CONNECTION).iter().any(|v| {
            v.to_str()
                .is_ok_and(|s| s.split(',').map(str::trim).any(is_extra))
        });
        if listed {
            let names: Vec<HeaderName> = h
                .get_all(header::CONNECTION)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|s| s.split(','))
                .map(str::trim)
                .filter(|t| is_extra(t))
                .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
                .collect();
            for name in names {
                h.remove(name);
            }
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            h.remove(*name);
        }
    }
}

fn prepare_request_headers(h: &mut HeaderMap, peer: SocketAddr, xff: bool, xfp: bool) {
    strip_hop_by_hop(h);
    // We answer 100-continue to the client ourselves (hyper does when the body
    // is first read) and stream the body on; the backend need not see it.
    h.remove(header::EXPECT);
    if xff {
        let mut ip = IpText::default();
        ip.write(peer.ip());
        let value = match h.get(&X_FORWARDED_FOR) {
            Some(prev) => {
                let mut v = Vec::with_capacity(prev.len() + 2 + ip.len);
                v.extend_from_slice(prev.as_bytes());
                v.extend_from_slice(b", ");
                v.extend_from_slice(ip.as_bytes());
                HeaderValue::from_bytes(&v)
            }
            None => HeaderValue::from_bytes(ip.as_bytes()),
        };
        if let Ok(v) = value {
            h.insert(X_FORWARDED_FOR.clone(), v);
        }
    }
    if xfp {
        h.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
    }
}

/// An address as text, written without the formatting machinery: the
/// X-Forwarded-For value is built for every request.
pub(crate) struct IpText {
    buf: [u8; 48],
    len: usize,
}

impl Default for IpText {
    fn default() -> Self {
        IpText {
            buf: [0; 48],
            len: 0,
        }
    }
}

impl IpText {
    pub(crate) fn write(&mut self, ip: std::net::IpAddr) {
        match ip {
            std::net::IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        self.push(b'.');
                    }
                    if octet >= 100 {
                        self.push(b'0' + octet / 100);
                    }
                    if octet >= 10 {
                        self.push(b'0' + octet / 10 % 10);
                    }
                    self.push(b'0' + octet % 10);
                }
            }
            std::net::IpAddr::V6(v6) => {
                use std::io::Write;
                let mut cur = std::io::Cursor::new(&mut self.buf[..]);
                // 45 bytes at most ("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255").
                let _ = write!(cur, "{v6}");
                self.len = cur.position() as usize;
            }
        }
    }
    fn push(&mut self, b: u8) {
        self.buf[self.len] = b;
        self.len += 1;
    }
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

fn backend_response(
    resp: Response<Incoming>,
    tx: SendRequest<ReqBody>,
    in_flight: InFlight,
    ctx: &ConnCtx,
    _client_http10: bool,
) -> Response<RespBody> {
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let done = Done {
        backend: in_flight,
        tx: Some(tx),
        complete: body.is_end_stream(),
    };
    Response::from_parts(
        parts,
        RespBody {
            inner: Inner::Backend { body, done },
            _phase: PhaseGuard(ctx.phase.clone()),
        },
    )
}

/// A local error answer: its status and its one-line text body.
pub struct Failure {
    pub status: StatusCode,
    pub text: String,
}

impl Failure {
    /// The answer's text: "502 Bad Gateway: <reason>".
    pub fn new(status: StatusCode, reason: &str) -> Self {
        let text = format!(
            "{} {}: {}\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            reason
        );
        Failure { status, text }
    }

    fn response(self, ctx: &ConnCtx) -> Response<RespBody> {
        let mut resp = Response::new(RespBody {
            inner: Inner::Full(Some(Bytes::from(self.text))),
            _phase: PhaseGuard(ctx.phase.clone()),
        });
        *resp.status_mut() = self.status;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(ERROR_CONTENT_TYPE),
        );
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        resp
    }
}

pub const ERROR_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// Counts and logs a local error answer, and writes its text.
pub fn fail(shared: &Shared, peer: SocketAddr, status: StatusCode, reason: &str) -> Failure {
    let counter = match status.as_u16() {
        400 => &shared.stats.bad_requests,
        502 => &shared.stats.errors_502,
        503 => &shared.stats.errors_503,
        504 => &shared.stats.errors_504,
        _ => &shared.stats.errors_other,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(status = status.as_u16(), reason, client = %peer, "error response");
    Failure::new(status, reason)
}

fn error_response(ctx: &ConnCtx, status: StatusCode, reason: &str) -> Response<RespBody> {
    fail(&ctx.shared, ctx.peer, status, reason).response(ctx)
}

/// Counts a request against a backend's in-flight load until dropped.
pub struct InFlight(Arc<BackendState>);

impl InFlight {
    fn new(b: Arc<BackendState>) -> Self {
        b.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(b)
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
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Marks the client connection idle again once the response is finished.
struct PhaseGuard(Arc<ConnPhase>);

impl Drop for PhaseGuard {
    fn drop(&mut self) {
        self.0.set_idle();
    }
}

/// Returns the backend connection to the pool if (and only if) the response
/// body was read to its end; a half-read connection is closed instead.
struct Done {
    backend: InFlight,
    tx: Option<SendRequest<ReqBody>>,
    complete: bool,
}

impl Drop for Done {
    fn drop(&mut self) {
        if self.complete {
            if let Some(tx) = self.tx.take() {
                self.backend.0.pool.checkin(tx);
            }
        }
    }
}

/// Response body sent to clients: a backend's stream or a short local answer.
pub struct RespBody {
    inner: Inner,
    _phase: PhaseGuard,
}

enum Inner {
    Backend {
        body: Incoming,
        done: Done,
    },
    /// A bodyless request's answer; the connection goes back to the backend's
    /// pool once the body has been read to its end.
    Upstream {
        body: UpstreamBody,
        backend: InFlight,
    },
    Full(Option<Bytes>),
}

impl Drop for RespBody {
    fn drop(&mut self) {
        if let Inner::Upstream { body, backend } = &mut self.inner {
            backend.release(body);
        }
    }
}

impl Body for RespBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match &mut self.inner {
            Inner::Backend { body, done } => {
                let res = Pin::new(&mut *body).poll_frame(cx);
                match &res {
                    Poll::Ready(None) => done.complete = true,
                    Poll::Ready(Some(Ok(_))) if body.is_end_stream() => done.complete = true,
                    _ => {}
                }
                res.map_err(Into::into)
            }
            Inner::Upstream { body, .. } => match body.poll_data(cx) {
                Poll::Ready(Ok(Some(data))) => Poll::Ready(Some(Ok(Frame::data(data)))),
                Poll::Ready(Ok(None)) => Poll::Ready(None),
                Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e.into()))),
                Poll::Pending => Poll::Pending,
            },
            Inner::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Backend { body, .. } => body.is_end_stream(),
            Inner::Upstream { body, .. } => body.is_end_stream(),
            Inner::Full(d) => d.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Backend { body, .. } => body.size_hint(),
            Inner::Upstream { body, .. } => match body.exact_len() {
                Some(n) => SizeHint::with_exact(n),
                None => SizeHint::default(),
            },
            Inner::Full(Some(d)) => SizeHint::with_exact(d.len() as u64),
            Inner::Full(None) => SizeHint::with_exact(0),
        }
    }
}

/// A local answer, for the admin listener and tests.
pub fn local_response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<RespBody> {
    let mut resp = Response::new(RespBody {
        inner: Inner::Full(Some(body.into())),
        _phase: PhaseGuard(Arc::new(ConnPhase::new())),
    });
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::HOST, HeaderValue::from_static("example"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key(header::HOST));

        // A name listed in a second Connection header, and the plain keep-alive case.
        let mut h = HeaderMap::new();
        h.append(header::CONNECTION, HeaderValue::from_static("close"));
        h.append(header::CONNECTION, HeaderValue::from_static(" x-a , ,"));
        h.insert("x-a", HeaderValue::from_static("1"));
        h.insert("x-b", HeaderValue::from_static("2"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-b"]);
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("Keep-Alive"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn connection_header_tokens() {
        use ConnectionToken::*;
        let tokens: Vec<_> = connection_tokens(b" Keep-Alive, ,x-Hop ,CLOSE,").collect();
        assert_eq!(tokens, [KeepAlive, Name(b"x-Hop"), Close]);
        assert_eq!(connection_tokens(b"").count(), 0);
    }

    #[test]
    fn hop_by_hop_name_lengths_are_the_ones_checked() {
        for name in HOP_BY_HOP {
            assert!(
                matches!(name.as_str().len(), 2 | 7 | 10 | 16 | 17),
                "{name} would be skipped"
            );
        }
    }

    #[test]
    fn forwarded_headers_append() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("198.18.0.9"));
        h.insert(header::EXPECT, HeaderValue::from_static("100-continue"));
        prepare_request_headers(&mut h, "198.18.0.2:5555".parse().unwrap(), true, true);
        assert_eq!(h["x-forwarded-for"], "198.18.0.9, 198.18.0.2");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert!(!h.contains_key(header::EXPECT));
        let mut h = HeaderMap::new();
        prepare_request_headers(&mut h, "198.18.0.2:5555".parse().unwrap(), false, false);
        assert!(h.is_empty());
    }

    #[test]
    fn addresses_are_written_like_display() {
        let cases = [
            "0.0.0.0",
            "9.10.99.100",
            "198.18.0.2",
            "255.255.255.255",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:198.18.0.2",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ];
        for text in cases {
            let ip: std::net::IpAddr = text.parse().unwrap();
            let mut t = IpText::default();
            t.write(ip);
            assert_eq!(t.as_bytes(), ip.to_string().as_bytes(), "{text}");
        }
        for n in [0u32, 1, 9, 10, 99, 100, 199, 200, 255, 0x0a0b0c0d, u32::MAX] {
            let ip = std::net::IpAddr::V4(n.into());
            let mut t = IpText::default();
            t.write(ip);
            assert_eq!(t.as_bytes(), ip.to_string().as_bytes());
        }
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        let mut h = HeaderMap::new();
        assert!(check_framing(&h).is_ok());
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        assert!(check_framing(&h).is_ok());
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("3"));
        assert_eq!(
            check_framing(&h),
            Err("both Content-Length and Transfer-Encoding")
        );
        let mut h = HeaderMap::new();
        h.append(header::CONTENT_LENGTH, HeaderValue::from_static("3"));
        h.append(header::CONTENT_LENGTH, HeaderValue::from_static("4"));
        assert_eq!(check_framing(&h), Err("conflicting Content-Length values"));
        let mut h = HeaderMap::new();
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("gzip, chunked"),
        );
        assert!(check_framing(&h).is_err());
    }

    #[test]
    fn idempotency() {
        assert!(is_idempotent(&Method::GET));
        assert!(is_idempotent(&Method::PUT));
        assert!(!is_idempotent(&Method::POST));
        assert!(!is_idempotent(&Method::PATCH));
    }
}
