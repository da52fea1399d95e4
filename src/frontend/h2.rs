//! HTTP/2 to clients (RFC 9113) on the TLS listener, on the h2 crate.
//! Each stream becomes an HTTP/1.1 request head that goes through the same
//! preparation as a request read by the HTTP/1 engine
//! ([`crate::http1::request::prepare`]: hop-by-hop fields, forwarding fields,
//! limits), then the same [`proxy::exchange`] (balancing, retries, metrics),
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
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use http::header::{HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use tokio::sync::watch;

use super::streams::StreamSet;
use crate::backend::upstream::{BodySource, UpstreamBody};
use crate::http1::answers;
use crate::http1::body::budgeted;
use crate::http1::request::{prepare, BodyFraming, Forwarding, Parse};
use crate::net::tls_stream::Deferred;
use crate::net::TlsConn;
use crate::proxy::dispatch::{answer_edits, dispatch, error_page, router};
use crate::proxy::state::Shared;
use crate::proxy::{self, Answer, Body, Failure, InFlight, Outgoing};

/// Streams at once on one connection (nginx's default is 128, HAProxy's 100).
const MAX_STREAMS: u32 = 128;

/// The h2 settings hyper's server used before this module drove h2 itself:
/// windows of 1 MiB for a request body, 16 KiB frames, a 16 KiB header list,
/// and at most 400 KiB of answer buffered per stream.
fn settings() -> h2::server::Builder {
    let mut b = h2::server::Builder::new();
    b.initial_window_size(1 << 20)
        .initial_connection_window_size(1 << 20)
        .max_frame_size(16 << 10)
        .max_header_list_size(16 << 10)
        .max_local_error_reset_streams(Some(1024))
        .max_send_buffer_size(400 << 10)
        .max_concurrent_streams(MAX_STREAMS);
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
    let tls = Deferred::new(tls);
    let idle_for = shared.live.load().config.timeouts.idle;
    // The client's preface and SETTINGS, due within an idle period.
    let handshake = settings().handshake::<_, Bytes>(tls.clone());
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
    let mut streams = StreamSet::new();
    let woken = shared.handover.woken();
    tokio::pin!(woken);
    let idle = tokio::time::sleep(idle_for);
    tokio::pin!(idle);
    let mut last = Instant::now();
    let mut going_away = false;
    let res = std::future::poll_fn(|cx| {
        let res = loop {
            if streams.poll(cx) > 0 {
                last = Instant::now();
                streams.trim();
            }
            // Writes the frames the streams left, reads the client's.
            match conn.poll_accept(cx) {
                Poll::Ready(Some(Ok((req, respond)))) => {
                    streams.push(stream(req, respond, (peer, listener), shared));
                    continue;
                }
                Poll::Ready(Some(Err(e))) => break Poll::Ready(Err(e)),
                Poll::Ready(None) => break Poll::Ready(Ok(())),
                Poll::Pending => {}
            }
            if going_away {
                break Poll::Pending;
            }
            let mut check = false;
            if woken.as_mut().poll(cx).is_ready() {
                woken.set(shared.handover.woken());
                check = true;
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

/// The stream's request as an HTTP/1.1 head: request line, Host from
/// `:authority`, the fields (cookies joined again, RFC 9113 §8.2.3) and, for
/// a body of unknown length, chunked framing.
fn http1_head(parts: &http::request::Parts, has_body: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    out.extend_from_slice(if target.is_empty() {
        b"/"
    } else {
        target.as_bytes()
    });
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if let Some(a) = parts.uri.authority() {
        if !parts.headers.contains_key(http::header::HOST) {
            out.extend_from_slice(b"host: ");
            out.extend_from_slice(a.as_str().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    let mut cookies: Vec<&[u8]> = Vec::new();
    for (name, value) in &parts.headers {
        let n = name.as_str();
        if connection_specific(n) {
            continue;
        }
        if name == http::header::COOKIE {
            cookies.push(value.as_bytes());
            continue;
        }
        out.extend_from_slice(n.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !cookies.is_empty() {
        out.extend_from_slice(b"cookie: ");
        out.extend_from_slice(&cookies.join(&b"; "[..]));
        out.extend_from_slice(b"\r\n");
    }
    if has_body && !parts.headers.contains_key(http::header::CONTENT_LENGTH) {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// One stream, from its request to the last byte of its answer. A stream the
/// client resets before its answer stops there (its exchange is dropped).
async fn stream(
    req: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    (peer, listener): (SocketAddr, u16),
    shared: &Shared,
) {
    let work = handle(req, (peer, listener), shared);
    tokio::pin!(work);
    let answered = std::future::poll_fn(|cx| match work.as_mut().poll(cx) {
        Poll::Ready(a) => Poll::Ready(Some(a)),
        Poll::Pending => match respond.poll_reset(cx) {
            Poll::Ready(_) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        },
    })
    .await;
    let Some((head, mut reply)) = answered else {
        tracing::debug!(client = %peer, "HTTP/2 stream reset by the client");
        return;
    };
    let end = reply.is_end_stream();
    let mut tx = match respond.send_response(head, end) {
        Ok(tx) => tx,
        Err(e) => {
            tracing::debug!(client = %peer, error = %e, "HTTP/2 answer not sent");
            return;
        }
    };
    if end {
        return;
    }
    let mut waiting = None;
    let piped = std::future::poll_fn(|cx| reply.poll_pipe(&mut tx, &mut waiting, cx));
    if let Err(e) = piped.await {
        tracing::debug!(client = %peer, error = %e, "HTTP/2 answer body failed");
    }
}

/// One stream's request: prepared, exchanged; counted and logged as the
/// HTTP/1 engine does. Returns the answer's head and its body to send.
async fn handle(
    req: Request<RecvStream>,
    (peer, listener): (SocketAddr, u16),
    shared: &Shared,
) -> (Response<()>, Reply) {
    let snap = shared.live.load_full();
    let cfg = &snap.config;
    let (parts, incoming) = req.into_parts();
    let has_body = !incoming.is_end_stream();
    let head = http1_head(&parts, has_body);
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
    let mut prepared = match prepare(&head, &fwd, router(&snap, peer, listener)) {
        Parse::Ready(p) => p,
        Parse::Partial => {
            shared.stats.bad_requests.fetch_add(1, Ordering::Relaxed);
            let reason = "request head too large";
            let f = Failure::new(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, reason);
            return local(&f, false);
        }
        Parse::Bad(status, reason) => {
            shared.stats.bad_requests.fetch_add(1, Ordering::Relaxed);
            return local(&Failure::new(status, reason), false);
        }
    };
    if fwd.via {
        // RFC 9110 §7.6.3: the protocol version received is 2, not the head's 1.1.
        via_http2(&mut prepared.out);
    }
    let started = std::time::Instant::now();
    let routed = dispatch(&snap, shared, peer, &mut prepared, true);
    let (route, pool) = (routed.route, routed.pool());
    let pool_index = match routed.to {
        Ok(p) => p,
        Err(f) => {
            // The route answers: the request's body (if any) is not read; the
            // stream's end resets what the client still sends.
            let response = local(&f, prepared.head_request);
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
            };
            proxy::finished(shared, &snap, done);
            return response;
        }
    };
    let mut source = StreamBody {
        incoming,
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
    let mut outgoing = Outgoing {
        head: &prepared.out,
        target: prepared.target(),
        has_host: prepared.has_host,
        idempotent: prepared.idempotent,
        head_request: prepared.head_request,
        // HTTP/2 has no Upgrade (RFC 9113 §8.6).
        upgrade: false,
        body,
        timer: None,
        sticky: routed.sticky.as_deref(),
    };
    let mut answer = proxy::exchange(&mut outgoing, shared, peer, &snap, pool_index).await;
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
    let ((response, reply), bytes) = match answer {
        Answer::Backend { head, .. } if head.status.is_informational() => {
            // Only a final answer ends an HTTP/2 stream (RFC 9113 §8.1); a 101 to
            // a request that asked for no upgrade is the backend's error.
            let reason = format!("backend answered {} to an HTTP/2 request", head.status);
            let f = proxy::fail(shared, peer, StatusCode::BAD_GATEWAY, &reason);
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
            };
            ((resp, reply), len)
        }
        Answer::Local(f) => (local(&f, prepared.head_request), Some(f.body.len() as u64)),
        Answer::ClientFailed(e) => {
            // A reset stream or a body over the limit: the stream is the client's to lose.
            let status = if e.kind() == io::ErrorKind::InvalidInput {
                StatusCode::PAYLOAD_TOO_LARGE
            } else {
                StatusCode::BAD_REQUEST
            };
            tracing::debug!(client = %peer, error = %e, "HTTP/2 request body failed");
            let f = proxy::fail(shared, peer, status, &e.to_string());
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
    };
    proxy::finished(shared, &snap, done);
    (response, reply)
}

/// Rewrites the Via line `prepare` added for an HTTP/1.1 head to say HTTP/2.
fn via_http2(out: &mut Vec<u8>) {
    const OURS: &[u8] = b"\r\nvia: 1.1 floatlb\r\n";
    if let Some(i) = out.windows(OURS.len()).rposition(|w| w == OURS) {
        out.splice(i..i + OURS.len(), b"\r\nvia: 2 floatlb\r\n".iter().copied());
    }
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

/// A stream's request body as the backend takes it.
struct StreamBody {
    incoming: RecvStream,
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
            match ready!(self.incoming.poll_data(cx)) {
                Some(Ok(data)) => {
                    // The client may send more as soon as this is taken.
                    let _ = self.incoming.flow_control().release_capacity(data.len());
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
}

/// A stream's answer body: a local text, or a backend's body as it arrives.
enum Reply {
    Full(Option<Bytes>),
    Upstream {
        first: Option<Bytes>,
        body: UpstreamBody,
        /// Held while the body is relayed; gives the connection back at its end.
        backend: Option<InFlight>,
    },
}

impl Reply {
    /// Nothing to send after the head. A backend whose body was read whole is
    /// given back here.
    fn is_end_stream(&mut self) -> bool {
        match self {
            Reply::Full(b) => b.as_ref().is_none_or(|b| b.is_empty()),
            Reply::Upstream {
                first,
                body,
                backend,
            } => {
                release_at_end(body, backend);
                first.as_ref().is_none_or(|b| b.is_empty()) && body.is_end_stream()
            }
        }
    }

    /// The next piece of the body, and whether it is the last.
    fn poll_piece(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<(Bytes, bool)>> {
        match self {
            Reply::Full(b) => Poll::Ready(Ok((b.take().unwrap_or_default(), true))),
            Reply::Upstream {
                first,
                body,
                backend,
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
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), h2::Error>> {
        loop {
            if waiting.is_some() {
                while tx.capacity() == 0 {
                    match ready!(tx.poll_capacity(cx)) {
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return Poll::Ready(Err(e)),
                        None => return Poll::Ready(Err(Reason::STREAM_CLOSED.into())),
                    }
                }
                if let Some(data) = waiting.take() {
                    tx.send_data(data, false)?;
                }
            }
            if let Poll::Ready(reason) = tx.poll_reset(cx)? {
                return Poll::Ready(Err(reason.into()));
            }
            match ready!(self.poll_piece(cx)) {
                Ok((data, true)) => return Poll::Ready(tx.send_data(data, true)),
                Ok((data, false)) if data.is_empty() => {}
                Ok((data, false)) => {
                    tx.reserve_capacity(1);
                    *waiting = Some(data);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "HTTP/2: the backend's body failed");
                    tx.send_reset(Reason::INTERNAL_ERROR);
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }
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

    #[test]
    fn a_stream_becomes_an_http1_head() {
        let req = Request::builder()
            .method("POST")
            .uri("https://a.test/up?x=1")
            .header("cookie", "a=1")
            .header("cookie", "b=2")
            .header("te", "trailers")
            .header("content-type", "text/plain")
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        let head = String::from_utf8(http1_head(&parts, true)).unwrap();
        assert!(
            head.starts_with("POST /up?x=1 HTTP/1.1\r\nhost: a.test\r\n"),
            "{head}"
        );
        // RFC 9113 §8.2.3: cookie fields are joined with "; " for HTTP/1.1.
        assert!(head.contains("cookie: a=1; b=2\r\n"), "{head}");
        // RFC 9113 §8.2.2: connection-specific fields are not passed on.
        assert!(!head.contains("te:"), "{head}");
        assert!(
            head.ends_with("transfer-encoding: chunked\r\n\r\n"),
            "{head}"
        );
    }

    #[test]
    fn via_names_http2() {
        // RFC 9110 §7.6.3: Via names the protocol version floatlb received.
        let mut out = b"GET / HTTP/1.1\r\nvia: 1.1 cdn\r\nvia: 1.1 floatlb\r\n\r\n".to_vec();
        via_http2(&mut out);
        let want = b"GET / HTTP/1.1\r\nvia: 1.1 cdn\r\nvia: 2 floatlb\r\n\r\n";
        assert_eq!(out, want.to_vec());
    }
}
