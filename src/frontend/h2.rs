//! HTTP/2 to clients (RFC 9113) on the TLS listener, through hyper's server.
//! Each stream becomes an HTTP/1.1 request head that goes through the same
//! preparation as a request read by the HTTP/1 engine
//! ([`crate::http1::request::prepare`]: hop-by-hop fields, forwarding fields,
//! limits), then the same [`proxy::exchange`] (balancing, retries, metrics),
//! to a backend over the HTTP/1.1 pool. A request body is streamed as its
//! DATA frames arrive (chunked to the backend when it has no length); the
//! answer's body is streamed back the same way. A drain or handover sends
//! GOAWAY (hyper's graceful shutdown): streams under way finish, new ones go
//! to another connection.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use tokio::sync::watch;

use super::h1::budgeted;
use crate::backend::upstream::{BodySource, UpstreamBody};
use crate::http1::answers;
use crate::http1::request::{prepare, BodyFraming, Forwarding, Parse};
use crate::net::tls::Deferred;
use crate::net::TlsConn;
use crate::proxy::state::Shared;
use crate::proxy::{self, Answer, Body, Failure, InFlight, Outgoing};

/// Streams at once on one connection (nginx's default is 128, HAProxy's 100).
const MAX_STREAMS: u32 = 128;

/// Streams being answered on a connection, and when the last one ended: a
/// connection with none for `timeouts.idle` is closed with GOAWAY, as an idle
/// HTTP/1 keep-alive connection is closed.
#[derive(Default)]
struct Activity {
    streams: AtomicUsize,
    /// Milliseconds from the connection's start to its last stream's start or end.
    last_ms: AtomicU64,
}

impl Activity {
    fn touch(&self, since: Instant) {
        self.last_ms
            .store(since.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

/// Serves HTTP/2 on a TLS connection until the client leaves or a drain,
/// handover or idle timeout has closed it gracefully.
pub(crate) async fn serve(
    tls: TlsConn,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    shutdown: &watch::Receiver<bool>,
) {
    let started = Instant::now();
    let activity = Arc::new(Activity::default());
    let (svc_shared, svc_activity) = (shared.clone(), activity.clone());
    let service = hyper::service::service_fn(move |req| {
        let (shared, activity) = (svc_shared.clone(), svc_activity.clone());
        async move {
            activity.streams.fetch_add(1, Ordering::Relaxed);
            activity.touch(started);
            let resp = handle(req, peer, &shared).await;
            activity.streams.fetch_sub(1, Ordering::Relaxed);
            activity.touch(started);
            Ok::<_, Infallible>(resp)
        }
    });
    let mut builder =
        hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS);
    let tls = Deferred::new(tls);
    let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(tls.clone()), service);
    tokio::pin!(conn);
    let woken = shared.handover.woken();
    tokio::pin!(woken);
    let mut going_away = false;
    let idle = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(idle);
    loop {
        let idle_for = shared.live.load().config.timeouts.idle;
        let last = started + Duration::from_millis(activity.last_ms.load(Ordering::Relaxed));
        let busy = activity.streams.load(Ordering::Relaxed) > 0;
        let is_idle = !busy && last.elapsed() >= idle_for;
        if !going_away && (*shutdown.borrow() || shared.handover.closing() || is_idle) {
            // GOAWAY: streams under way finish, the client opens no new one here.
            conn.as_mut().graceful_shutdown();
            going_away = true;
        }
        // While a stream is answered, look again an idle period later.
        let check_at = if busy { Instant::now() } else { last } + idle_for;
        idle.as_mut().reset(check_at.into());
        tokio::select! {
            res = std::future::poll_fn(|cx| pump(conn.as_mut(), &tls, cx)) => {
                if let Err(e) = res {
                    tracing::debug!(client = %peer, error = %e, "HTTP/2 connection ended");
                }
                return;
            }
            () = &mut woken, if !going_away => {
                woken.set(shared.handover.woken());
            }
            () = &mut idle, if !going_away => {}
        }
    }
}

/// Polls hyper's connection, then sends what it wrote meanwhile. hyper's
/// flushes send nothing ([`Deferred`]): the answers of every stream that
/// ended since the last wake-up leave in one write, instead of a write per
/// DATA frame. A full socket wakes this task again when it drains; a failed
/// send fails hyper's next read or write, so it is polled again at once.
fn pump<F: Future>(conn: Pin<&mut F>, tls: &Deferred, cx: &mut Context<'_>) -> Poll<F::Output> {
    let res = conn.poll(cx);
    if res.is_pending() {
        if let Poll::Ready(Err(e)) = tls.poll_send(cx) {
            tracing::debug!(error = %e, "HTTP/2: sending failed");
            cx.waker().wake_by_ref();
        }
    }
    res
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

/// One stream: prepared, exchanged, answered; counted and logged as the
/// HTTP/1 engine does.
async fn handle(req: Request<Incoming>, peer: SocketAddr, shared: &Shared) -> Response<H2Body> {
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
    let mut prepared = match prepare(&head, &fwd) {
        Parse::Ready(p) => p,
        Parse::Partial => {
            shared.stats.bad_requests.fetch_add(1, Ordering::Relaxed);
            let reason = "request head too large";
            return local(&Failure::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                reason,
            ));
        }
        Parse::Bad(status, reason) => {
            shared.stats.bad_requests.fetch_add(1, Ordering::Relaxed);
            return local(&Failure::new(status, reason));
        }
    };
    if fwd.via {
        // RFC 9110 §7.6.3: the protocol version received is 2, not the head's 1.1.
        via_http2(&mut prepared.out);
    }
    let started = std::time::Instant::now();
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
    };
    let answer = proxy::exchange(&mut outgoing, shared, peer, &snap).await;
    let took = started.elapsed();
    let hsts = cfg.tls.as_ref().map_or(0, |t| t.hsts);
    let (response, bytes) = match answer {
        Answer::Backend { head, .. } if head.status.is_informational() => {
            // Only a final answer ends an HTTP/2 stream (RFC 9113 §8.1); a 101 to
            // a request that asked for no upgrade is the backend's error.
            let reason = format!("backend answered {} to an HTTP/2 request", head.status);
            let f = proxy::fail(shared, peer, StatusCode::BAD_GATEWAY, &reason);
            (local(&f), Some(f.text.len() as u64))
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
            let len = body.exact_len();
            let first = body.take_buffered();
            let mut resp = Response::new(H2Body::Upstream {
                first,
                body,
                backend: Some(backend),
            });
            *resp.status_mut() = head.status;
            *resp.headers_mut() = headers;
            (resp, len)
        }
        Answer::Local(f) => (local(&f), Some(f.text.len() as u64)),
        Answer::ClientFailed(e) => {
            // A reset stream or a body over the limit: the stream is the client's to lose.
            let status = if e.kind() == io::ErrorKind::InvalidInput {
                StatusCode::PAYLOAD_TOO_LARGE
            } else {
                StatusCode::BAD_REQUEST
            };
            tracing::debug!(client = %peer, error = %e, "HTTP/2 request body failed");
            let f = proxy::fail(shared, peer, status, &e.to_string());
            (local(&f), Some(f.text.len() as u64))
        }
    };
    shared.metrics.duration.observe(took.as_secs_f64());
    if let (Some(log), Some(fields)) = (&shared.access_log, prepared.log) {
        log.log(crate::observe::access_log::Record {
            client: peer.ip(),
            at: fields.at,
            method: fields.method,
            target: fields.target,
            version: http::Version::HTTP_2,
            status: response.status().as_u16(),
            bytes,
            referer: fields.referer,
            user_agent: fields.user_agent,
            duration: took,
        });
    }
    response
}

/// Rewrites the Via line `prepare` added for an HTTP/1.1 head to say HTTP/2.
fn via_http2(out: &mut Vec<u8>) {
    const OURS: &[u8] = b"\r\nvia: 1.1 floatlb\r\n";
    if let Some(i) = out.windows(OURS.len()).rposition(|w| w == OURS) {
        out.splice(i..i + OURS.len(), b"\r\nvia: 2 floatlb\r\n".iter().copied());
    }
}

/// A local answer: its one-line text.
fn local(f: &Failure) -> Response<H2Body> {
    let mut resp = Response::new(H2Body::Full(Some(Bytes::from(f.text.clone()))));
    *resp.status_mut() = f.status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(answers::ERROR_CONTENT_TYPE),
    );
    resp
}

/// A stream's request body as the backend takes it.
struct StreamBody {
    incoming: Incoming,
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
            match ready!(Pin::new(&mut self.incoming).poll_frame(cx)) {
                Some(Ok(f)) => {
                    // Trailers are not passed on.
                    let Ok(data) = f.into_data() else { continue };
                    if data.is_empty() {
                        continue;
                    }
                    return Poll::Ready(budgeted(&mut self.budget, data, self.chunked).map(Some));
                }
                // RST_STREAM from the client, or the connection went.
                Some(Err(e)) => return Poll::Ready(Err(io::Error::other(e))),
                None => self.ended = true,
            }
        }
    }
}

/// A stream's answer body: a local text, or a backend's body as it arrives.
pub(crate) enum H2Body {
    Full(Option<Bytes>),
    Upstream {
        first: Option<Bytes>,
        body: UpstreamBody,
        /// Held while the body is relayed; gives the connection back at its end.
        backend: Option<InFlight>,
    },
}

impl hyper::body::Body for H2Body {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            H2Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            H2Body::Upstream {
                first,
                body,
                backend,
            } => {
                if let Some(b) = first.take().filter(|b| !b.is_empty()) {
                    release_at_end(body, backend);
                    return Poll::Ready(Some(Ok(Frame::data(b))));
                }
                if body.is_end_stream() {
                    release_at_end(body, backend);
                    return Poll::Ready(None);
                }
                match ready!(body.poll_data(cx)) {
                    Ok(Some(data)) => {
                        release_at_end(body, backend);
                        Poll::Ready(Some(Ok(Frame::data(data))))
                    }
                    Ok(None) => {
                        *backend = None;
                        Poll::Ready(None)
                    }
                    Err(e) => {
                        *backend = None;
                        Poll::Ready(Some(Err(e)))
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            H2Body::Full(b) => b.is_none(),
            H2Body::Upstream { first, body, .. } => {
                first.as_ref().is_none_or(|b| b.is_empty()) && body.is_end_stream()
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            H2Body::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            H2Body::Full(None) => SizeHint::with_exact(0),
            H2Body::Upstream { body, .. } => match body.exact_len() {
                Some(n) => SizeHint::with_exact(n),
                None => SizeHint::default(),
            },
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
