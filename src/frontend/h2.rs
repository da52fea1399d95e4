//! HTTP/2 to clients (RFC 9113) on the TLS listener, on the h2 crate.
//! Each stream's HEADERS become the [`RequestHead`] the HTTP/1 engine's parser
//! also gives, checked and written for the backend by the same
//! [`crate::http1::request::prepare_head`] (hop-by-hop fields, forwarding
//! fields, limits, routing), then the same [`proxy::exchange`] (balancing,
//! retries, metrics),
//! to a backend over the HTTP/1.1 pool. A request body is streamed as its
//! DATA frames arrive (chunked to the backend when it has no length); the
//! answer's body is streamed back the same way, as the client's window allows.
//! The streams run inside the connection's task ([`StreamSet`]), and what
//! they wrote leaves once per wake-up ([`Deferred`]): the answers of the
//! streams that ended together share one write. A drain or handover sends
//! GOAWAY: streams under way finish, new ones go to another connection.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use http::header::{HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use tokio::sync::watch;

use super::grpc;
use super::h2_guard::Guarded;
use super::streams::StreamSet;
use crate::backend::upstream::{BodySource, UpstreamBody};
use crate::config::Http2;
use crate::error::{Error, Kind, Phase, Side, Termination};
use crate::http1::answers;
use crate::http1::body::budgeted;
use crate::http1::request::{prepare_head, BodyFraming, Forwarding, RequestHead, Version};
use crate::net::tls_stream::Deferred;
use crate::net::TlsConn;
use crate::proxy::dispatch::{answer_edits, dispatch, error_page, router};
use crate::proxy::state::{Shared, Snapshot};
use crate::proxy::{self, Answer, Body, Failure, InFlight, Outgoing};

/// h2's server with every limit stated: the `[http2]` table's, and the
/// ones it does not expose given here, so that a crate upgrade cannot move
/// them. docs/http2-defences.md names the attack each one answers. Not
/// settable: h2 ends a connection with GOAWAY(ENHANCE_YOUR_CALM) after 100
/// empty DATA frames, and after more CONTINUATION frames than
/// `max-header-list-size` needs (at least 5); it answers one PING and one
/// SETTINGS at a time, and reads nothing more until that answer is written.
fn settings(c: &Http2) -> h2::server::Builder {
    let mut b = h2::server::Builder::new();
    b.max_concurrent_streams(c.max_concurrent_streams)
        .max_header_list_size(c.max_header_list_size)
        .header_table_size(c.header_table_size)
        .max_frame_size(c.max_frame_size)
        .initial_window_size(c.initial_stream_window)
        .initial_connection_window_size(c.initial_connection_window)
        .max_send_buffer_size(c.max_send_buffer as usize)
        .max_pending_accept_reset_streams(c.max_pending_reset_streams as usize)
        .max_local_error_reset_streams(Some(c.max_error_resets as usize))
        // Streams floatlb reset, remembered so that the client's frames
        // still in flight for them are ignored rather than a connection
        // error (RFC 9113 §5.4.2): h2's own values.
        .max_concurrent_reset_streams(50)
        .reset_stream_duration(std::time::Duration::from_secs(1))
        // Bytes of per-frame overhead the client's small DATA frames may
        // make floatlb hold (h2's own rule: half the connection window).
        .data_frame_budget((c.initial_connection_window as usize / 2).max(25_600));
    b
}

/// Serves HTTP/2 on a TLS connection until the client leaves or a drain,
/// handover or idle timeout has closed it gracefully.
pub(crate) async fn serve(
    tls: TlsConn,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    shutdown: &watch::Receiver<bool>,
    listener: u16,
) {
    let client_cert =
        crate::tls::client_auth::Identity::of(tls.session().peer_certificates()).map(Arc::new);
    let tls = Deferred::new(tls);
    let (idle_for, builder, rate) = {
        let snap = shared.live.load();
        let h2 = &snap.config.http2;
        let idle = snap.config.timeouts.idle;
        (idle, settings(h2), h2.control_frame_rate)
    };
    let io = Guarded::new(tls.clone(), rate);
    let flood = io.flag();
    // The client's preface and SETTINGS, due within an idle period.
    let handshake = builder.handshake::<_, Bytes>(io);
    tokio::pin!(handshake);
    let start = std::future::poll_fn(|cx| {
        let res = handshake.as_mut().poll(cx);
        send(&tls, cx);
        res
    });
    let mut conn = match tokio::time::timeout(idle_for, start).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::debug!(client = %peer, error = %e, "HTTP/2 handshake failed");
            return;
        }
        Err(_) => return,
    };
    // Set when the connection's gRPC calls are to end in order (`super::drain`).
    let ending = AtomicBool::new(false);
    let mut streams = StreamSet::new();
    let woken = shared.handover.woken();
    tokio::pin!(woken);
    let idle = tokio::time::sleep(idle_for);
    tokio::pin!(idle);
    let mut last = Instant::now();
    let mut going_away = false;
    let mut calmed = false;
    // When the calls still open are ended, once a drain or handover ends them.
    let mut end_calls_at: Option<tokio::time::Instant> = None;
    let res = std::future::poll_fn(|cx| {
        let res = loop {
            if streams.poll(cx) > 0 {
                last = Instant::now();
                streams.trim();
            }
            // Writes the frames the streams left, reads the client's.
            match conn.poll_accept(cx) {
                Poll::Ready(Some(Ok((mut req, respond)))) => {
                    if let Some(id) = &client_cert {
                        req.extensions_mut().insert(id.clone());
                    }
                    streams.push(stream(req, respond, (peer, listener), shared, &ending));
                    continue;
                }
                Poll::Ready(Some(Err(e))) => break Poll::Ready(Err(e)),
                Poll::Ready(None) => break Poll::Ready(Ok(())),
                Poll::Pending => {}
            }
            if flood.load(Ordering::Relaxed) && !calmed {
                tracing::debug!(client = %peer, "HTTP/2: over the control frame budget");
                conn.abrupt_shutdown(Reason::ENHANCE_YOUR_CALM);
                (calmed, going_away) = (true, true);
                let take = shared.live.load().config.timeouts.client;
                idle.as_mut().reset((Instant::now() + take).into());
                continue;
            }
            let mut check = false;
            if woken.as_mut().poll(cx).is_ready() {
                woken.set(shared.handover.woken());
                check = true;
            }
            if going_away {
                // A drain to exit, or a handover, ends the gRPC calls still
                // open with a status (`super::drain`); a retiring worker's
                // GOAWAY does not.
                if end_calls_at.is_none() && super::drain::ending(shared, shutdown) {
                    let at = super::drain::close_by(shared);
                    end_calls_at = Some(at);
                    if at < idle.deadline() {
                        idle.as_mut().reset(at);
                    }
                }
                // A client that takes nothing leaves the GOAWAY unsent: once
                // its streams are gone it has `timeouts.client` to take it (as
                // a stream has for its answer), then the connection is dropped.
                if idle.as_mut().poll(cx).is_ready() {
                    let now = tokio::time::Instant::now();
                    if end_calls_at.is_some_and(|at| now >= at) && !ending.load(Ordering::Relaxed) {
                        ending.store(true, Ordering::Relaxed);
                        streams.wake_all();
                    } else if streams.len() == 0 {
                        tracing::debug!(client = %peer, "HTTP/2: GOAWAY not taken, connection dropped");
                        break Poll::Ready(Ok(()));
                    }
                    let take = now + shared.live.load().config.timeouts.client;
                    // Not past the calls' end, if that is still to come.
                    let due = end_calls_at.filter(|_| !ending.load(Ordering::Relaxed));
                    idle.as_mut().reset(due.map_or(take, |e| e.min(take)));
                    continue;
                }
                break Poll::Pending;
            }
            if idle.as_mut().poll(cx).is_ready() {
                check = true;
            }
            if !check {
                break Poll::Pending;
            }
            let idle_for = shared.live.load().config.timeouts.idle;
            let busy = streams.len() > 0;
            let is_idle = !busy && last.elapsed() >= idle_for;
            if *shutdown.borrow() || shared.handover.closing() || is_idle {
                // GOAWAY: streams under way finish, the client opens no new one here.
                conn.graceful_shutdown();
                going_away = true;
                let take = shared.live.load().config.timeouts.client;
                idle.as_mut().reset((Instant::now() + take).into());
                continue;
            }
            // While a stream is answered, look again an idle period later.
            let at = if busy { Instant::now() } else { last } + idle_for;
            idle.as_mut().reset(at.into());
        };
        send(&tls, cx);
        res
    })
    .await;
    if let Err(e) = res {
        tracing::debug!(client = %peer, error = %e, "HTTP/2 connection ended");
    }
}

/// Sends what was written during this wake-up. A full socket wakes the task
/// again when it drains; a failed send fails h2's next read or write, so the
/// task is polled again at once.
fn send(tls: &Deferred, cx: &mut Context<'_>) {
    if let Poll::Ready(Err(e)) = tls.poll_send(cx) {
        tracing::debug!(error = %e, "HTTP/2: sending failed");
        cx.waker().wake_by_ref();
    }
}

/// Fields that are about one connection and have no place in HTTP/2 or in
/// the backend's HTTP/1.1 request (RFC 9113 §8.2.2).
fn connection_specific(name: &str) -> bool {
    matches!(
        name,
        "connection" | "keep-alive" | "proxy-connection" | "transfer-encoding" | "upgrade" | "te"
    )
}

/// A stream's fields as a request head's (RFC 9113 §8.2): the
/// connection-specific ones left out (the h2 crate refuses them already), the
/// cookie fields joined again into `cookie` (RFC 9113 §8.2.3).
fn fields<'a>(headers: &'a http::HeaderMap, cookie: &'a mut Vec<u8>) -> Vec<httparse::Header<'a>> {
    let mut cookies = headers.get_all(http::header::COOKIE).iter();
    if let (Some(first), Some(_)) = (cookies.next(), cookies.next()) {
        cookie.extend_from_slice(first.as_bytes());
        for more in headers.get_all(http::header::COOKIE).iter().skip(1) {
            cookie.extend_from_slice(b"; ");
            cookie.extend_from_slice(more.as_bytes());
        }
    }
    let cookie: &'a [u8] = cookie;
    let mut out = Vec::with_capacity(headers.len());
    let mut cookie_sent = false;
    for (name, value) in headers {
        let n = name.as_str();
        if connection_specific(n) {
            continue;
        }
        let value = if name == http::header::COOKIE && !cookie.is_empty() {
            if std::mem::replace(&mut cookie_sent, true) {
                continue;
            }
            cookie
        } else {
            value.as_bytes()
        };
        out.push(httparse::Header { name: n, value });
    }
    out
}

/// A stream's request as the head [`prepare_head`] takes: `:path` as the
/// target, `:authority` standing for a Host field when there is none.
fn request_head<'a>(
    parts: &'a http::request::Parts,
    fields: &'a [httparse::Header<'a>],
    body_follows: bool,
) -> RequestHead<'a> {
    let target = parts.uri.path_and_query().map_or("", |p| p.as_str());
    let has_host = parts.headers.contains_key(http::header::HOST);
    RequestHead {
        method: parts.method.as_str(),
        target: if target.is_empty() { "/" } else { target },
        authority: parts
            .uri
            .authority()
            .filter(|_| !has_host)
            .map(|a| a.as_str()),
        version: Version::Http2,
        fields,
        raw: &[],
        len: 0,
        body_follows,
    }
}

/// One stream, from its request to the last byte of its answer. A stream the
/// client resets before its answer stops there (its exchange is dropped). A
/// gRPC call whose answer has started ends with `UNAVAILABLE` in its trailers
/// once `ending` is set (`super::drain`): a status the client can act on,
/// sent while the connection still closes in order.
async fn stream(
    req: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    (peer, listener): (SocketAddr, u16),
    shared: &Shared,
    ending: &AtomicBool,
) {
    // `[timeouts] request`: the whole stream, from its HEADERS to its end.
    // A gRPC call's own deadline (`grpc-timeout`) too, the sooner of the two.
    let deadline = {
        let t = shared.live.load().config.timeouts.request;
        let now = tokio::time::Instant::now();
        let call = grpc::timeout_of(req.headers()).map(|d| now + d);
        let request = t.map(|d| now + d);
        request.into_iter().chain(call).min()
    };
    let work = handle(req, (peer, listener), shared, deadline);
    tokio::pin!(work);
    let answered = std::future::poll_fn(|cx| match work.as_mut().poll(cx) {
        Poll::Ready(a) => Poll::Ready(Some(a)),
        Poll::Pending => match respond.poll_reset(cx) {
            Poll::Ready(_) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        },
    })
    .await;
    let Some((head, mut reply, record)) = answered else {
        tracing::debug!(client = %peer, "HTTP/2 stream reset by the client");
        return;
    };
    // The request is recorded once its answer has ended, with what ended it.
    let finish = |ended: Option<(Side, Kind)>| {
        if let Some(Record { snap, mut done }) = record {
            if let Some((side, kind)) = ended {
                let e = Error::new(side, Phase::Body, kind, StatusCode::BAD_GATEWAY, "");
                done.termination = e.termination();
            }
            proxy::finished(shared, &snap, done);
        }
    };
    let end = reply.is_end_stream();
    let mut tx = match respond.send_response(head, end) {
        Ok(tx) => tx,
        Err(e) => {
            tracing::debug!(client = %peer, error = %e, "HTTP/2 answer not sent");
            finish(Some((Side::Client, Kind::Closed)));
            return;
        }
    };
    if end {
        finish(None);
        return;
    }
    // Each wait inside the body is bounded as on HTTP/1: `server` for the
    // backend's next piece, `client` for the client's window to take it.
    let (client, server) = {
        let t = &shared.live.load().config.timeouts;
        (t.client, reply.server().unwrap_or(t.server))
    };
    let mut waiting = None;
    let (mut moved, mut seen) = (0u64, u64::MAX);
    let stall = tokio::time::sleep(server);
    tokio::pin!(stall);
    let grpc = reply.is_grpc();
    let piped = std::future::poll_fn(|cx| {
        if grpc && ending.load(Ordering::Relaxed) {
            return Poll::Ready(Piped::Ending);
        }
        let res = reply.poll_pipe(&mut tx, &mut waiting, &mut moved, cx);
        if let Poll::Ready(r) = res {
            return Poll::Ready(Piped::Done(r));
        }
        if moved != seen {
            seen = moved;
            let limit = if waiting.is_some() { client } else { server };
            let at = tokio::time::Instant::now() + limit;
            stall.as_mut().reset(deadline.map_or(at, |end| end.min(at)));
        }
        stall.as_mut().poll(cx).map(|()| Piped::Stalled)
    });
    match piped.await {
        Piped::Done(Ok(())) => finish(None),
        Piped::Done(Err(side)) => finish(Some((side, Kind::Closed))),
        Piped::Ending => {
            // A piece the client's window held back would leave a message cut
            // short before the status: reset instead, as on a stall.
            let status = grpc::status_fields(grpc::UNAVAILABLE, DRAINED_CALL);
            if !(waiting.is_none() && tx.send_trailers(status).is_ok()) {
                tx.send_reset(Reason::CANCEL);
            }
            shared
                .stats
                .grpc_calls_closed_by_drain
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(client = %peer, "HTTP/2: gRPC call ended by a drain or handover");
            finish(Some((Side::Proxy, Kind::Denied)));
        }
        Piped::Stalled => {
            // A piece waiting means the client's window was awaited.
            let side = if waiting.is_some() {
                Side::Client
            } else {
                Side::Backend
            };
            shared.stats.timed_out(side, Phase::Body);
            tracing::debug!(client = %peer, side = side.as_str(), "HTTP/2 answer body timed out");
            let past_deadline = deadline.is_some_and(|d| tokio::time::Instant::now() >= d);
            let code = match past_deadline {
                true => grpc::DEADLINE_EXCEEDED,
                false => grpc::UNAVAILABLE,
            };
            let status = grpc::status_fields(code, "the answer stalled past a timeout");
            if !(reply.is_grpc() && waiting.is_none() && tx.send_trailers(status).is_ok()) {
                tx.send_reset(Reason::CANCEL);
            }
            finish(Some((side, Kind::Timeout)));
        }
    }
}

/// How a stream's answer body ended.
enum Piped {
    /// Sent whole, or a side failed.
    Done(Result<(), Side>),
    /// A wait passed its timeout.
    Stalled,
    /// A gRPC call ended by a drain or handover.
    Ending,
}

/// The `grpc-message` of a call ended by a drain or handover.
const DRAINED_CALL: &str = "floatlb: this node is shutting down or handing over; call again";

/// A request to record once its stream has ended (see `proxy::finished`).
struct Record {
    snap: Arc<Snapshot>,
    done: proxy::Finished,
}

/// One stream's request: prepared, exchanged; counted and logged as the
/// HTTP/1 engine does. Returns the answer's head and its body to send.
async fn handle(
    req: Request<RecvStream>,
    (peer, listener): (SocketAddr, u16),
    shared: &Shared,
    deadline: Option<tokio::time::Instant>,
) -> (Response<()>, Reply, Option<Record>) {
    let snap = shared.live.load_full();
    let cfg = &snap.config;
    let (parts, incoming) = req.into_parts();
    let has_body = !incoming.is_end_stream();
    // A gRPC call gets floatlb's own failures as gRPC statuses.
    let grpc = grpc::is_call(&parts.headers);
    let local = |f: &Failure, head_request: bool| match grpc {
        true => grpc_local(f),
        false => local(f, head_request),
    };
    let mut cookie = Vec::new();
    let fields = fields(&parts.headers, &mut cookie);
    let head = request_head(&parts, &fields, has_body);
    let fwd = Forwarding {
        peer,
        xff: cfg.proxy.x_forwarded_for,
        xfp: cfg.proxy.x_forwarded_proto,
        forwarded: cfg.proxy.forwarded,
        via: cfg.proxy.via,
        max_body: cfg.proxy.max_body_size,
        log: shared.access_log.is_some(),
        https: true,
    };
    shared.stats.requests.fetch_add(1, Ordering::Relaxed);
    shared.stats.h2_requests.fetch_add(1, Ordering::Relaxed);
    let route = router(&snap, peer, listener);
    let named = cfg.tls.as_ref().and_then(|t| t.material());
    let id = parts
        .extensions
        .get::<Arc<crate::tls::client_auth::Identity>>();
    let route = super::client_cert::route_as_sent(
        named.map(|m| &m.client_headers),
        id.map(|i| &**i),
        route,
    );
    let mut prepared = match prepare_head(&head, &fwd, route) {
        Ok(p) => p,
        Err((status, reason)) => {
            shared.stats.bad_requests.fetch_add(1, Ordering::Relaxed);
            let (response, reply) = local(&Failure::of(&Error::refused(status, reason)), false);
            return (response, reply, None);
        }
    };
    if let Some(m) = cfg.tls.as_ref().and_then(|t| t.material()) {
        // The client's own fields of these names never reach a backend.
        if !m.client_headers.is_empty() {
            let id = parts
                .extensions
                .get::<Arc<crate::tls::client_auth::Identity>>();
            super::client_cert::edits(&m.client_headers, id.map(|i| &**i)).apply(&mut prepared.out);
        }
    }
    let started = std::time::Instant::now();
    let verified = parts
        .extensions
        .get::<Arc<crate::tls::client_auth::Identity>>()
        .is_some();
    let routed = dispatch(
        &snap,
        shared,
        (peer, listener),
        &mut prepared,
        true,
        verified,
    );
    let (route, pool) = (routed.route, routed.pool());
    let tracked = routed.tracked;
    let pool_index = match routed.to {
        Ok(p) => p,
        Err(f) => {
            if let Some(hold) = f.hold {
                // A tarpit: the client over its limit waits for its 429.
                tokio::time::sleep(hold).await;
            }
            // The route answers: the request's body (if any) is not read; the
            // stream's end resets what the client still sends.
            let (response, reply) = local(&f, prepared.head_request);
            let done = proxy::Finished {
                peer,
                log: prepared.log.take(),
                version: http::Version::HTTP_2,
                status: f.status.as_u16(),
                bytes: Some(f.body.len() as u64),
                took: started.elapsed(),
                route,
                pool,
                backend: None,
                termination: f.termination,
                tracked,
            };
            return (response, reply, Some(Record { snap, done }));
        }
    };
    let mut source = StreamBody {
        incoming: Some(incoming),
        chunked: prepared.body == BodyFraming::Chunked,
        budget: match cfg.proxy.max_body_size {
            0 => u64::MAX,
            n => n,
        },
        ended: false,
    };
    let body = if has_body {
        Body::Streamed {
            first: &[],
            rest: &mut source,
        }
    } else {
        Body::None
    };
    // HTTP/2 has no Upgrade (RFC 9113 §8.6): `prepared.upgrade` is false.
    let mut outgoing = Outgoing::of(&prepared, body, routed.sticky.as_deref());
    let mut answer = {
        let exchange = std::pin::pin!(proxy::exchange(
            &mut outgoing,
            shared,
            peer,
            &snap,
            pool_index
        ));
        proxy::by_deadline(deadline, shared, peer, exchange, |a| a).await
    };
    if let Answer::Local(f) = &mut answer {
        error_page(&snap, route, pool, f);
    }
    let took = started.elapsed();
    let hsts = cfg.tls.as_ref().map_or(0, |t| t.hsts);
    let served_by = match &answer {
        Answer::Backend { backend, .. } if shared.access_log.is_some() => {
            Some(backend.backend().name.clone())
        }
        _ => None,
    };
    let mut termination = Termination::NORMAL;
    let ((response, reply), bytes) = match answer {
        Answer::Backend { head, .. } if head.status.is_informational() => {
            // Only a final answer ends an HTTP/2 stream (RFC 9113 §8.1); a 101 to
            // a request that asked for no upgrade is the backend's error.
            let reason = format!("backend answered {} to an HTTP/2 request", head.status);
            let e = Error::new(
                Side::Backend,
                Phase::Headers,
                Kind::Malformed,
                StatusCode::BAD_GATEWAY,
                reason,
            );
            let f = proxy::fail(shared, peer, e);
            termination = f.termination;
            (local(&f, prepared.head_request), Some(f.body.len() as u64))
        }
        Answer::Backend {
            head,
            mut body,
            backend,
            ..
        } => {
            // The map sized once for the head's fields (and HSTS), filled in place.
            let fields = head.fields();
            let mut headers = http::HeaderMap::with_capacity(fields.size_hint().0 + 1);
            for (name, value) in fields {
                let (Ok(name), Ok(value)) =
                    (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
                else {
                    continue;
                };
                if !connection_specific(name.as_str()) {
                    headers.append(name, value);
                }
            }
            if hsts > 0 {
                if let Ok(v) = HeaderValue::try_from(format!("max-age={hsts}")) {
                    headers.append(http::header::STRICT_TRANSPORT_SECURITY, v);
                }
            }
            if !headers.contains_key(http::header::DATE) {
                headers.insert(http::header::DATE, answers::date_value());
            }
            let edits = answer_edits(
                &snap,
                route,
                pool,
                routed.sticky.as_deref(),
                backend.backend(),
            );
            if !edits.is_empty() {
                edits.apply_map(&mut headers);
            }
            let len = body.exact_len();
            if let Some(n) = len.filter(|&n| n > 0) {
                headers
                    .entry(http::header::CONTENT_LENGTH)
                    .or_insert_with(|| HeaderValue::from(n));
            }
            let first = body.take_buffered();
            let mut resp = Response::new(());
            *resp.status_mut() = head.status;
            *resp.headers_mut() = headers;
            let reply = Reply::Upstream {
                first,
                body,
                backend: Some(backend),
                server: cfg.resolved.pools[pool_index].server,
                grpc,
            };
            ((resp, reply), len)
        }
        Answer::Local(f) => {
            termination = f.termination;
            (local(&f, prepared.head_request), Some(f.body.len() as u64))
        }
        Answer::ClientFailed(e) => {
            // A reset stream or a body over the limit: the stream is the client's to lose.
            tracing::debug!(client = %peer, error = %e, "HTTP/2 request body failed");
            let f = proxy::fail(shared, peer, proxy::client_body_error(&e));
            termination = f.termination;
            (local(&f, prepared.head_request), Some(f.body.len() as u64))
        }
    };
    let done = proxy::Finished {
        peer,
        log: prepared.log,
        version: http::Version::HTTP_2,
        status: response.status().as_u16(),
        bytes,
        took,
        route,
        pool,
        backend: served_by,
        termination,
        tracked,
    };
    (response, reply, Some(Record { snap, done }))
}

/// A local answer: its text or page, not sent to a HEAD request (RFC 9110
/// §9.3.2).
fn local(f: &Failure, head_request: bool) -> (Response<()>, Reply) {
    let mut resp = Response::new(());
    *resp.status_mut() = f.status;
    let headers = resp.headers_mut();
    if !f.body.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&f.content_type) {
            headers.insert(http::header::CONTENT_TYPE, v);
        }
    }
    if let Some(v) = f
        .location
        .as_deref()
        .and_then(|l| HeaderValue::from_str(l).ok())
    {
        headers.insert(http::header::LOCATION, v);
    }
    if let Some(v) = f
        .challenge
        .as_deref()
        .and_then(|c| HeaderValue::from_str(c).ok())
    {
        headers.insert(http::header::WWW_AUTHENTICATE, v);
    }
    if let Some(secs) = f.retry_after {
        headers.insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
    }
    headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    headers.insert(
        http::header::CONTENT_LENGTH,
        HeaderValue::from(f.body.len()),
    );
    headers.insert(http::header::DATE, answers::date_value());
    let body = (!head_request).then(|| f.body.clone());
    (resp, Reply::Full(body))
}

/// A gRPC call's failure found here, as gRPC reports it: a trailers-only
/// answer (status 200, `grpc-status`, `grpc-message`), so that the client
/// sees a status rather than an HTTP error (gRPC's PROTOCOL-HTTP2.md).
fn grpc_local(f: &Failure) -> (Response<()>, Reply) {
    let mut resp = Response::new(());
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    let text = String::from_utf8_lossy(&f.body);
    h.extend(grpc::status_fields(grpc::code_of(f.status), text.trim()));
    (resp, Reply::Full(None))
}

/// A stream's request body as the backend takes it.
struct StreamBody {
    /// None once handed over ([`BodySource::detach`]).
    incoming: Option<RecvStream>,
    chunked: bool,
    /// Body bytes still allowed (max-body-size).
    budget: u64,
    ended: bool,
}

impl BodySource for StreamBody {
    fn poll_piece(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Bytes>>> {
        loop {
            if self.ended {
                if self.chunked {
                    // The last chunk, once.
                    self.chunked = false;
                    return Poll::Ready(Ok(Some(Bytes::from_static(b"0\r\n\r\n"))));
                }
                return Poll::Ready(Ok(None));
            }
            let Some(incoming) = self.incoming.as_mut() else {
                return Poll::Ready(Ok(None));
            };
            match ready!(incoming.poll_data(cx)) {
                Some(Ok(data)) => {
                    // The client may send more as soon as this is taken.
                    let _ = incoming.flow_control().release_capacity(data.len());
                    if data.is_empty() {
                        continue;
                    }
                    return Poll::Ready(budgeted(&mut self.budget, data, self.chunked).map(Some));
                }
                // RST_STREAM(NO_ERROR) is a client that wants no more (RFC 9113 §8.1).
                Some(Err(e)) if e.reason() == Some(Reason::NO_ERROR) => self.ended = true,
                // RST_STREAM from the client, or the connection went.
                Some(Err(e)) => return Poll::Ready(Err(io::Error::other(e))),
                // Trailers are not passed on.
                None => self.ended = true,
            }
        }
    }

    fn detach(&mut self) -> Option<Box<dyn BodySource + Send>> {
        let incoming = self.incoming.take()?;
        Some(Box::new(StreamBody {
            incoming: Some(incoming),
            chunked: self.chunked,
            budget: self.budget,
            ended: self.ended,
        }))
    }
}

/// A stream's answer body: a local text, or a backend's body as it arrives.
enum Reply {
    Full(Option<Bytes>),
    Upstream {
        first: Option<Bytes>,
        body: UpstreamBody,
        /// Held while the body is relayed; gives the connection back at its end.
        backend: Option<InFlight>,
        /// The pool's `server` timeout, for each wait on the body.
        server: std::time::Duration,
        /// A gRPC call: a failure in the body ends it with a gRPC status.
        grpc: bool,
    },
}

impl Reply {
    /// The server timeout of the pool the body comes from.
    fn server(&self) -> Option<std::time::Duration> {
        match self {
            Reply::Full(_) => None,
            Reply::Upstream { server, .. } => Some(*server),
        }
    }

    /// Nothing to send after the head. A backend whose body was read whole is
    /// given back here.
    fn is_end_stream(&mut self) -> bool {
        match self {
            Reply::Full(b) => b.as_ref().is_none_or(|b| b.is_empty()),
            Reply::Upstream {
                first,
                body,
                backend,
                ..
            } => {
                release_at_end(body, backend);
                first.as_ref().is_none_or(|b| b.is_empty()) && body.is_end_stream()
            }
        }
    }

    /// The trailers that ended a backend's body, if it sent any.
    fn take_trailers(&mut self) -> Option<http::HeaderMap> {
        match self {
            Reply::Upstream { body, .. } => body.take_trailers(),
            Reply::Full(_) => None,
        }
    }

    fn is_grpc(&self) -> bool {
        matches!(self, Reply::Upstream { grpc: true, .. })
    }

    /// The next piece of the body, and whether it is the last.
    fn poll_piece(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<(Bytes, bool)>> {
        match self {
            Reply::Full(b) => Poll::Ready(Ok((b.take().unwrap_or_default(), true))),
            Reply::Upstream {
                first,
                body,
                backend,
                ..
            } => {
                if let Some(b) = first.take().filter(|b| !b.is_empty()) {
                    release_at_end(body, backend);
                    return Poll::Ready(Ok((b, body.is_end_stream())));
                }
                if body.is_end_stream() {
                    release_at_end(body, backend);
                    return Poll::Ready(Ok((Bytes::new(), true)));
                }
                match ready!(body.poll_data(cx)) {
                    Ok(Some(data)) => {
                        release_at_end(body, backend);
                        Poll::Ready(Ok((data, body.is_end_stream())))
                    }
                    Ok(None) => {
                        *backend = None;
                        Poll::Ready(Ok((Bytes::new(), true)))
                    }
                    Err(e) => {
                        *backend = None;
                        Poll::Ready(Err(e))
                    }
                }
            }
        }
    }

    /// Sends the body. The last piece goes at once; before any other, the
    /// stream waits for some of the client's window (as hyper's server did),
    /// so at most one piece waits in h2 while the backend is read on.
    fn poll_pipe(
        &mut self,
        tx: &mut SendStream<Bytes>,
        waiting: &mut Option<Bytes>,
        moved: &mut u64,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), Side>> {
        loop {
            if waiting.is_some() {
                while tx.capacity() == 0 {
                    match ready!(tx.poll_capacity(cx)) {
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return Poll::Ready(Err(client_gone(e))),
                        None => return Poll::Ready(Err(Side::Client)),
                    }
                }
                if let Some(data) = waiting.take() {
                    *moved += 1;
                    tx.send_data(data, false).map_err(client_gone)?;
                }
            }
            if let Poll::Ready(reason) = tx.poll_reset(cx).map_err(client_gone)? {
                return Poll::Ready(Err(client_gone(reason.into())));
            }
            match ready!(self.poll_piece(cx)) {
                Ok((data, true)) => {
                    // An HTTP/2 backend's trailers (gRPC's status) end the stream.
                    let sent = match self.take_trailers() {
                        Some(t) => if data.is_empty() {
                            Ok(())
                        } else {
                            tx.send_data(data, false)
                        }
                        .and_then(|()| tx.send_trailers(t)),
                        None => tx.send_data(data, true),
                    };
                    return Poll::Ready(sent.map_err(client_gone));
                }
                Ok((data, false)) if data.is_empty() => {}
                Ok((data, false)) => {
                    *moved += 1;
                    tx.reserve_capacity(1);
                    *waiting = Some(data);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "HTTP/2: the backend's body failed");
                    if self.is_grpc() {
                        // The call ends with a status the client can act on.
                        let why = format!("backend failed inside the answer: {e}");
                        let status = grpc::status_fields(grpc::UNAVAILABLE, &why);
                        if tx.send_trailers(status).is_ok() {
                            return Poll::Ready(Err(Side::Backend));
                        }
                    }
                    tx.send_reset(Reason::INTERNAL_ERROR);
                    return Poll::Ready(Err(Side::Backend));
                }
            }
        }
    }
}

/// The client's side of a stream failed (reset, gone): logged, `Side::Client`.
fn client_gone(e: h2::Error) -> Side {
    tracing::debug!(error = %e, "HTTP/2: the answer's stream ended early");
    Side::Client
}

/// Once the backend's body was read to its end, its connection goes back to
/// the pool and the backend's in-flight count drops.
fn release_at_end(body: &mut UpstreamBody, backend: &mut Option<InFlight>) {
    if body.is_end_stream() {
        if let Some(b) = backend.take() {
            b.release(body);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::request::NO_ROUTE;

    fn fwd(via: bool) -> Forwarding {
        Forwarding {
            peer: "198.18.0.7:40000".parse().unwrap(),
            xff: false,
            xfp: false,
            forwarded: false,
            via,
            max_body: 0,
            log: false,
            https: true,
        }
    }

    fn backend_head(req: Request<()>, body_follows: bool, via: bool) -> Result<String, String> {
        let (parts, ()) = req.into_parts();
        let mut cookie = Vec::new();
        let fields = fields(&parts.headers, &mut cookie);
        let head = request_head(&parts, &fields, body_follows);
        match prepare_head(&head, &fwd(via), |_| NO_ROUTE) {
            Ok(p) => Ok(String::from_utf8(p.out).unwrap()),
            Err((status, reason)) => Err(format!("{status} {reason}")),
        }
    }

    #[test]
    fn a_stream_becomes_the_same_backend_head_as_http1() {
        let req = Request::builder()
            .method("POST")
            .uri("https://a.test/up?x=1")
            .header("cookie", "a=1")
            .header("cookie", "b=2")
            .header("te", "trailers")
            .header("content-type", "text/plain")
            .body(())
            .unwrap();
        let head = backend_head(req, true, false).unwrap();
        // RFC 9113 §8.3.1: `:authority` becomes the Host field; RFC 9113
        // §8.2.3: cookie fields are joined with "; " for HTTP/1.1; §8.2.2:
        // TE (connection-specific) is not passed on; a body of unknown length
        // is chunked.
        assert_eq!(
            head,
            "POST /up?x=1 HTTP/1.1\r\ncookie: a=1; b=2\r\ncontent-type: text/plain\r\n\
             host: a.test\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        // A Host field the client sent is kept; `:authority` adds none.
        let req = Request::builder()
            .uri("https://a.test/")
            .header("host", "b.test")
            .body(())
            .unwrap();
        let head = backend_head(req, false, false).unwrap();
        assert_eq!(head, "GET / HTTP/1.1\r\nhost: b.test\r\n\r\n");
        // A body with a length keeps it, and is not chunked.
        let req = Request::builder()
            .method("PUT")
            .uri("https://a.test/x")
            .header("content-length", "5")
            .body(())
            .unwrap();
        let head = backend_head(req, true, false).unwrap();
        assert!(
            head.ends_with("host: a.test\r\ncontent-length: 5\r\n\r\n"),
            "{head}"
        );
    }

    #[test]
    fn a_stream_is_checked_as_an_http1_request_is() {
        // RFC 9112 §3.2 as for HTTP/1.1: a request with no authority at all
        // names no host.
        let req = Request::builder().uri("/").body(()).unwrap();
        assert_eq!(
            backend_head(req, false, false).unwrap_err(),
            "400 Bad Request missing Host header"
        );
        let req = Request::builder()
            .uri("https://a.test/")
            .header("content-length", "x1")
            .body(())
            .unwrap();
        assert_eq!(
            backend_head(req, true, false).unwrap_err(),
            "400 Bad Request invalid Content-Length"
        );
    }

    #[test]
    fn via_names_http2() {
        // RFC 9110 §7.6.3: Via names the protocol version floatlb received.
        let req = Request::builder()
            .uri("https://a.test/")
            .header("via", "1.1 cdn")
            .body(())
            .unwrap();
        let head = backend_head(req, false, true).unwrap();
        assert_eq!(
            head,
            "GET / HTTP/1.1\r\nvia: 1.1 cdn\r\nhost: a.test\r\nvia: 2 floatlb\r\n\r\n"
        );
    }
}
