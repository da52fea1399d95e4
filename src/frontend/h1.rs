//! The client side of the one HTTP/1 engine: every request on a client
//! connection is read from its socket, sent through [`proxy::exchange`] and
//! answered here, requests with a body and upgrades included.
//!
//! The request head is parsed once ([`crate::http1::request`]), its fields are
//! copied to the backend head as they are (minus the hop-by-hop ones, plus the
//! forwarding ones), and the backend's answer head goes to the client the same
//! way, in one `sendmsg` with the body bytes that came with it. A request body
//! is streamed to the backend as it arrives (re-framed if chunked, with a 100
//! Continue first if the client asked for one), with bounded memory; a body
//! that came whole with its head is kept, so the request can be sent again if a
//! pooled connection turns out dead. A 101 to an Upgrade makes the connection a
//! tunnel ([`crate::frontend::tunnel`]).
//!
//! Errors: a malformed head gets 400 (431 too large, 414 target too long, 405
//! CONNECT) and the connection closes, with nothing sent to a backend; a slow
//! head 408; a backend failure 502/503/504 with a reason. What a request's
//! duration means, for the metrics and the access log alike: from its head
//! having arrived to the answer's head being ready to write.

use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::StatusCode;
use tokio::sync::{watch, OwnedSemaphorePermit};
use tokio::time::{Instant, Sleep};

use crate::backend::upstream::{BodySource, Head, UpstreamBody};
use crate::error::{Error, Kind, Phase, Side, Termination};
use crate::http1::answers::{self, CONTINUE_100};
use crate::http1::body::{budgeted, decode, frame, Chunk, Framing, Step};
use crate::http1::request::{prepare, BodyFraming, Forwarding, Parse, Prepared};
use crate::net::ClientIo;
use crate::proxy::dispatch::{answer_edits, dispatch, error_page, router, AnswerEdits};
use crate::proxy::handover::IDLE_CLOSE;
use crate::proxy::state::{Shared, Snapshot};
use crate::proxy::{self, Answer, Body, Failure, Outgoing};

/// How long a connection waits for its next request in its task before
/// [`serve`] hands it to the parking lot (`park.rs`): well above the gaps
/// between requests of a keep-alive client under load, so that busy
/// connections never pay for parking.
pub(crate) const PARK_AFTER: Duration = Duration::from_secs(1);
/// How much is read from a client at a time.
const READ_SIZE: usize = 4096;
/// The smallest answer body that is spliced (backend → pipe → client) rather
/// than copied: below it, making and closing the pipe costs more than the
/// copies it saves (swept: even at 128 KiB, 0.88× the CPU at 256 KiB;
/// docs/performance.md). Cleartext on both sides only.
const SPLICE_MIN: u64 = 128 * 1024;
/// How much one splice moves into the pipe (its default capacity).
const SPLICE_CHUNK: usize = 64 * 1024;
/// How much of a request body is read from a client at a time.
const BODY_READ_SIZE: usize = 64 * 1024;
/// A body up to this size that is all there when its head is read is sent
/// with the head and kept for a replay.
const WHOLE_BODY_MAX: usize = 256 * 1024;

pub(crate) struct Limits {
    pub client_header: Duration,
    pub idle: Duration,
}

/// One client connection's facts for its task's life, passed down by
/// reference: the connection's future then holds one pointer to them where
/// separate arguments would each be stored twice (as the async fn's argument
/// and as its local), on every idle connection.
pub(crate) struct Conn {
    pub peer: SocketAddr,
    pub shared: Arc<Shared>,
    pub shutdown: watch::Receiver<bool>,
    /// The connection's place under `maxconn`, given back when it ends.
    pub _permit: OwnedSemaphorePermit,
    /// The listener it came in on (its id, as routes name it).
    pub listener: u16,
    /// The client certificate the TLS handshake verified, if any.
    pub client_cert: Option<Arc<crate::tls::client_auth::Identity>>,
    /// Idle for [`PARK_AFTER`], [`serve`] returns [`Served::Parked`]
    /// (set where the connection's caller can park it: `park.rs`).
    pub park: bool,
}

impl Conn {
    pub(crate) fn new(
        peer: SocketAddr,
        shared: Arc<Shared>,
        shutdown: watch::Receiver<bool>,
        permit: OwnedSemaphorePermit,
        listener: u16,
    ) -> Conn {
        Conn {
            peer,
            shared,
            shutdown,
            _permit: permit,
            listener,
            client_cert: None,
            park: false,
        }
    }

    /// The limits of the configuration current now: read when a wait
    /// starts (not kept in the task), so a reload's timeouts apply to open
    /// connections from their next wait on.
    pub(crate) fn limits(&self) -> Limits {
        let snap = self.shared.live.load();
        let c = &snap.config;
        Limits {
            client_header: c.timeouts.client_header,
            idle: c.timeouts.idle,
        }
    }
}

/// How [`serve`] left a connection.
pub(crate) enum Served {
    /// Closed, timed out or drained: nothing more is read from it.
    Closed,
    /// Idle (nothing buffered) since the instant given, for
    /// [`PARK_AFTER`]: to be parked.
    Parked(Instant),
}

/// Serves requests on `io` until it closes, times out, is drained or (if
/// `conn.park`) has been idle long enough to be parked. `idle_since`: a
/// parked connection resumed, idle since then (its idle timeout counts from
/// there); None for a new connection.
///
/// A plain function returning an `async move` block, as
/// `accept::serve_connection`: an `async fn` would keep its arguments twice.
#[allow(clippy::manual_async_fn)] // on purpose: see above
pub(crate) fn serve<'a>(
    io: &'a mut ClientIo,
    conn: &'a Conn,
    mut idle_since: Option<Instant>,
) -> impl Future<Output = Served> + 'a {
    async move {
        let mut buf = BytesMut::new();
        // One timer for the connection's life, moved to each wait's deadline.
        let timer = tokio::time::sleep(conn.limits().client_header);
        tokio::pin!(timer);
        // The first head is due client-header after the accept; after an answer
        // the connection is idle until bytes arrive, then the next head is due.
        let mut head_deadline = Instant::now() + conn.limits().client_header;
        // Created before the flags are read, so a change after that wakes it.
        let woken = conn.shared.handover.woken();
        tokio::pin!(woken);
        let mut draining = *conn.shutdown.borrow();
        let mut closing = conn.shared.handover.closing();
        loop {
            let (req, snap) = loop {
                if !buf.is_empty() {
                    // Decided in a block of its own, awaited after it: what the
                    // block holds (the parse, the snapshot) is gone by then
                    // instead of taking room in every connection's task.
                    let refused = {
                        // The request is prepared and forwarded with the same config.
                        let snap = conn.shared.live.load_full();
                        let fwd = Forwarding {
                            peer: conn.peer,
                            xff: snap.config.proxy.x_forwarded_for,
                            xfp: snap.config.proxy.x_forwarded_proto,
                            forwarded: snap.config.proxy.forwarded,
                            via: snap.config.proxy.via,
                            max_body: snap.config.proxy.max_body_size,
                            log: conn.shared.access_log.is_some(),
                            https: io.is_tls(),
                        };
                        let route = router(&snap, conn.peer, conn.listener);
                        let named = snap.config.tls.as_ref().and_then(|t| t.material());
                        let named = named.map(|m| &m.client_headers);
                        let id = conn.client_cert.as_deref();
                        let route = super::client_cert::route_as_sent(named, id, route);
                        match prepare(&buf, &fwd, route) {
                            Parse::Ready(req) => break (req, snap),
                            Parse::Partial if buf.len() < snap.config.proxy.max_header_size => {
                                // The rest of the head is due: acknowledge at once,
                                // or a client holding it back for our ACK (Nagle)
                                // waits for the delayed one, 40 ms or more. Rare: a
                                // head usually arrives whole. Each time, as the
                                // kernel goes back to delaying ACKs on its own.
                                io.quickack();
                                None
                            }
                            // RFC 9112 §3: a request line longer than we parse is a 414.
                            Parse::Partial if !buf.contains(&b'\n') => {
                                Some((StatusCode::URI_TOO_LONG, "request line too long"))
                            }
                            Parse::Partial => Some((
                                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                                "request head too large",
                            )),
                            Parse::Bad(status, reason) => Some((status, reason)),
                        }
                    };
                    if let Some((status, reason)) = refused {
                        Box::pin(refuse(io, &conn.shared, status, reason)).await;
                        return Served::Closed;
                    }
                }
                let res =
                    match poll_fn(|cx| Poll::Ready(io.poll_recv(cx, &mut buf, READ_SIZE))).await {
                        Poll::Ready(res) => res,
                        Poll::Pending => {
                            // Nothing to read yet: wait for bytes, a deadline, a drain or a handover.
                            let idle = buf.is_empty() && idle_since.is_some();
                            let deadline = match idle_since {
                                Some(since) if idle => {
                                    if draining || (closing && since.elapsed() >= IDLE_CLOSE) {
                                        return Served::Closed;
                                    }
                                    let mut at = since + conn.limits().idle;
                                    if closing {
                                        at = at.min(since + IDLE_CLOSE);
                                    } else if conn.park {
                                        if since.elapsed() >= PARK_AFTER {
                                            return Served::Parked(since);
                                        }
                                        at = at.min(since + PARK_AFTER);
                                    }
                                    at
                                }
                                _ => {
                                    if draining && buf.is_empty() {
                                        return Served::Closed;
                                    }
                                    head_deadline
                                }
                            };
                            if buf.is_empty() {
                                // An idle connection holds no buffer.
                                buf = BytesMut::new();
                            }
                            // The timer is moved only to an earlier deadline: one
                            // that fires early (left by a shorter wait, or by a
                            // request's server timeout) is moved on when it does.
                            // Moving a set timer takes it out of tokio's wheel and
                            // back in; most waits then move nothing.
                            if timer.is_elapsed() || deadline < timer.deadline() {
                                if timer.is_elapsed() && deadline <= timer.deadline() {
                                    // It fired at or after this deadline: time is up.
                                    if !idle {
                                        let stats = &conn.shared.stats;
                                        stats.client_timeouts.fetch_add(1, Ordering::Relaxed);
                                        stats.timed_out(Side::Client, Phase::Request);
                                        let text = answers::error_text(
                                            StatusCode::REQUEST_TIMEOUT,
                                            "request head not received",
                                        );
                                        io.send_now(&answers::local(
                                            StatusCode::REQUEST_TIMEOUT,
                                            &text,
                                            false,
                                            false,
                                        ));
                                    }
                                    return Served::Closed;
                                }
                                timer.as_mut().reset(deadline);
                            }
                            tokio::select! {
                                biased;
                                res = poll_fn(|cx| io.poll_recv(cx, &mut buf, READ_SIZE)) => res,
                                // Judged above, against the deadline of now.
                                () = &mut timer => continue,
                                () = &mut woken => {
                                    woken.set(conn.shared.handover.woken());
                                    draining = *conn.shutdown.borrow();
                                    closing = conn.shared.handover.closing();
                                    continue;
                                }
                            }
                        }
                    };
                match res {
                    Ok(0) | Err(_) => return Served::Closed,
                    Ok(_) => {
                        if idle_since.take().is_some() {
                            head_deadline = Instant::now() + conn.limits().client_header;
                        }
                    }
                }
            };
            buf.advance(req.head_len);

            // The request is answered in a future of its own, boxed: a connection
            // that waits for its next request then holds only what waiting takes.
            match Box::pin(answer(io, &mut buf, req, snap, conn, timer.as_mut())).await {
                After::Next => {}
                After::Close => return Served::Closed,
            }
            if buf.is_empty() {
                idle_since = Some(Instant::now());
            } else {
                // The next request is already arriving (pipelined): its head is due
                // client-header from now.
                idle_since = None;
                head_deadline = Instant::now() + conn.limits().client_header;
            }
        }
    }
}

/// What a connection does once a request is answered.
enum After {
    /// Wait for the next request.
    Next,
    Close,
}

/// Sends one request (its head parsed, its body still in `buf` or the
/// socket) and writes the answer; a tunnel after a 101 runs to its end here.
async fn answer(
    io: &mut ClientIo,
    buf: &mut BytesMut,
    mut req: Prepared,
    snap: Arc<Snapshot>,
    conn: &Conn,
    mut timer: Pin<&mut Sleep>,
) -> After {
    let (peer, shared, shutdown) = (conn.peer, &conn.shared, &conn.shutdown);
    if !io.is_tls() {
        // RFC 8555 §8.3: an ACME HTTP-01 validation, before redirects and routes.
        if let Some(answer) = crate::tls::managed::http01_answer(req.target()) {
            let out = answers::local(StatusCode::OK, &answer, req.http10, false);
            let _ = write_all(io, &mut [IoSlice::new(&out)]).await;
            return After::Close;
        }
        if let Some(tls) = snap.config.tls.as_ref().filter(|t| t.redirect_http) {
            // A body is not read: the connection ends after the redirect.
            let keep_alive = req.keep_alive && req.body == BodyFraming::None;
            let location =
                answers::https_location(req.host().unwrap_or(""), tls.address.port(), req.target());
            let out = answers::redirect(&location, req.http10, keep_alive);
            shared.stats.requests.fetch_add(1, Ordering::Relaxed);
            if write_all(io, &mut [IoSlice::new(&out)]).await.is_err() || !keep_alive {
                if req.body != BodyFraming::None {
                    Box::pin(linger(io)).await;
                }
                return After::Close;
            }
            return After::Next;
        }
    }
    let hsts = match &snap.config.tls {
        Some(t) if io.is_tls() => t.hsts,
        _ => 0,
    };

    let started = std::time::Instant::now();
    let deadline = snap.config.timeouts.request.map(|d| Instant::now() + d);
    shared.stats.requests.fetch_add(1, Ordering::Relaxed);
    if let Some(m) = snap.config.tls.as_ref().and_then(|t| t.material()) {
        // The client's own fields of these names never reach a backend.
        if !m.client_headers.is_empty() {
            let id = conn.client_cert.as_deref();
            super::client_cert::edits(&m.client_headers, id).apply(&mut req.out);
        }
    }
    let verified = conn.client_cert.is_some();
    let routed = dispatch(
        &snap,
        shared,
        (peer, conn.listener),
        &mut req,
        io.is_tls(),
        verified,
    );
    let (route, pool) = (routed.route, routed.pool());
    let sticky = routed.sticky;
    let tracked = routed.tracked;
    let (mut answer, body_read) = match routed.to {
        // An answer of the route's own: a body is not read, and the
        // connection ends after the answer.
        Err(f) => (Answer::Local(f), req.body == BodyFraming::None),
        Ok(pool) if req.body == BodyFraming::None => {
            let mut outgoing = Outgoing::of(&req, Body::None, sticky.as_deref());
            // The connection's timer, idle while its request is answered.
            outgoing.timer = Some(timer.as_mut());
            let exchange =
                std::pin::pin!(proxy::exchange(&mut outgoing, shared, peer, &snap, pool));
            let answer = proxy::by_deadline(deadline, shared, peer, exchange, |a| a).await;
            (answer, true)
        }
        Ok(pool) => {
            // Boxed: a body's state is large and rare; every connection's task
            // would otherwise carry room for it while it idles.
            let to = (pool, sticky.as_deref());
            let answered = {
                let mut exchange =
                    Box::pin(exchange_with_body(io, buf, &req, shared, peer, &snap, to));
                // Cut at the deadline, the body is not whole: the connection ends.
                let cut = |a| Ok((a, false));
                proxy::by_deadline(deadline, shared, peer, exchange.as_mut(), cut).await
            };
            match answered {
                Ok(answered) => answered,
                Err(status) => {
                    let reason = if status == StatusCode::PAYLOAD_TOO_LARGE {
                        "request body larger than max-body-size"
                    } else {
                        "malformed request body"
                    };
                    Box::pin(refuse(io, shared, status, reason)).await;
                    return After::Close;
                }
            }
        }
    };
    if let (Answer::Local(f), Some(_)) = (&mut answer, pool) {
        error_page(&snap, route, pool, f);
    }
    // The answer's head is ready: the request's duration, as metrics and log mean it.
    let took = started.elapsed();
    // A body not read to its end (the answer came first, or none could be
    // sent) leaves bytes that are no request: the connection ends after the answer.
    let keep_alive =
        req.keep_alive && body_read && !shared.handover.closing() && !*shutdown.borrow();
    let mut tunnel = None;
    let mut served_by = None;
    let mut termination = Termination::NORMAL;
    let (status, bytes, reusable) = match answer {
        Answer::Local(f) => {
            termination = f.termination;
            if let Some(hold) = f.hold {
                // A tarpit: the client over its limit waits for its 429.
                tokio::time::sleep(hold).await;
            }
            write_local(io, &f, req.http10, keep_alive, req.head_request).await
        }
        Answer::ClientFailed(e) => {
            let error = proxy::client_body_error(&e);
            termination = error.termination();
            if error.kind == Kind::Closed {
                // The client left mid-upload: nobody to answer (logged as nginx's 499).
                tracing::debug!(client = %peer, error = %e, "client left inside its request body");
                (499, None, false)
            } else {
                // A broken body (chunk framing), or one over max-body-size: the
                // backend got a cut request.
                tracing::debug!(client = %peer, error = %e, "request body refused");
                let f = proxy::fail(shared, peer, error);
                write_local(io, &f, req.http10, false, req.head_request).await
            }
        }
        Answer::Backend {
            head,
            mut body,
            backend,
            whole,
        } => match body.into_tunnel() {
            // 101 to an upgrade request: the connection changes protocol.
            Some((stream, from_backend)) => {
                let ok = write_switch(io, &head, &from_backend).await.is_ok();
                if ok {
                    // The backend's in-flight count holds while the tunnel lasts.
                    tunnel = Some((stream, backend));
                }
                (head.status.as_u16(), None, false)
            }
            None => {
                // An answer before the request's end: the client's connection
                // holds the rest of a body nobody reads; it ends here.
                let keep_alive = keep_alive && whole;
                // The request's head buffer, sent by now, takes the answer's.
                let mut out = std::mem::take(&mut req.out);
                out.clear();
                let server = pool.map_or(snap.config.timeouts.server, |p| {
                    snap.config.resolved.pools[p].server
                });
                let extra = Extra {
                    hsts,
                    edits: answer_edits(&snap, route, pool, sticky.as_deref(), backend.backend()),
                    deadlines: Deadlines {
                        timer: timer.as_mut(),
                        client: snap.config.timeouts.client,
                        server,
                        end: deadline,
                        stats: &shared.stats,
                    },
                };
                if shared.access_log.is_some() {
                    served_by = Some(backend.backend().name.clone());
                }
                let (status, bytes, reusable, ended) =
                    write_answer(io, out, &head, &mut body, req.http10, keep_alive, extra).await;
                if ended != Termination::NORMAL {
                    termination = ended;
                }
                backend.release(&mut body);
                (status, bytes, reusable)
            }
        },
    };
    proxy::finished(
        shared,
        &snap,
        proxy::Finished {
            peer,
            log: req.log,
            version: if req.http10 {
                http::Version::HTTP_10
            } else {
                http::Version::HTTP_11
            },
            status,
            bytes,
            took,
            route,
            pool,
            backend: served_by,
            termination,
            tracked,
        },
    );
    if let Some((stream, _in_flight)) = tunnel {
        let idle = snap.config.timeouts.tunnel;
        let from_client = std::mem::take(buf);
        // Boxed, as the streaming send: rare, and large.
        let end = Box::pin(super::tunnel::relay(
            io,
            from_client,
            stream,
            shared,
            shutdown,
            idle,
        ))
        .await;
        tracing::debug!(client = %peer, ?end, "tunnel ended");
        return After::Close;
    }
    if !reusable {
        if !body_read {
            Box::pin(linger(io)).await;
        }
        return After::Close;
    }
    After::Next
}

/// Sends a request with a body: what arrived with the head, then (unless the
/// client waits for a 100) whatever else is already there; a body that fits a
/// few reads goes out with its head in one write and can be sent again if need
/// be, a longer one is streamed as the client sends it. Returns the answer and
/// whether the body was read to its end; a framing error (or a chunked body
/// over max-body-size) found before anything was sent is the status to refuse with.
async fn exchange_with_body(
    io: &mut ClientIo,
    buf: &mut BytesMut,
    req: &Prepared,
    shared: &Shared,
    peer: SocketAddr,
    snap: &Snapshot,
    (pool, sticky): (usize, Option<&str>),
) -> Result<(Answer, bool), StatusCode> {
    let mut framing = match req.body {
        BodyFraming::Chunked => Framing::Chunked(Chunk::Size),
        BodyFraming::Length(n) => Framing::Length(n),
        BodyFraming::None => Framing::Length(0),
    };
    let chunked = req.body == BodyFraming::Chunked;
    let mut first: Vec<Bytes> = Vec::new();
    // A chunked body's size is known only as it comes: max-body-size is counted.
    let mut budget = match snap.config.proxy.max_body_size {
        0 => u64::MAX,
        max => max,
    };
    let mut whole = false;
    for attempt in 0..3 {
        whole = take_buffered(&mut framing, buf, chunked, &mut first, &mut budget)?;
        let first_len = first.iter().map(Bytes::len).sum::<usize>();
        if whole || req.expect_continue || attempt == 2 || first_len >= WHOLE_BODY_MAX {
            break;
        }
        let want = match framing {
            Framing::Length(n) => (n as usize).min(BODY_READ_SIZE),
            _ => BODY_READ_SIZE,
        };
        match poll_fn(|cx| Poll::Ready(io.poll_recv(cx, buf, want))).await {
            Poll::Ready(Ok(n)) if n > 0 => {}
            _ => break,
        }
    }
    if !whole {
        // More body is due: acknowledge at once, as for a head in pieces.
        io.quickack();
    }
    let mut rest = ClientBody {
        io,
        buf,
        framing,
        chunked,
        budget,
        continue_sent: if req.expect_continue { Some(0) } else { None },
        finished: false,
    };
    let body = if whole {
        Body::Whole(&first)
    } else {
        Body::Streamed {
            first: &first,
            rest: &mut rest,
        }
    };
    let mut outgoing = Outgoing::of(req, body, sticky);
    let answer = proxy::exchange(&mut outgoing, shared, peer, snap, pool).await;
    Ok((answer, whole || rest.finished))
}

/// Moves the request body bytes already in `buf` into `out`, framed for the
/// backend. Returns whether the body is whole; a framing error is the
/// client's, found before anything reaches a backend.
fn take_buffered(
    framing: &mut Framing,
    buf: &mut BytesMut,
    chunked: bool,
    out: &mut Vec<Bytes>,
    budget: &mut u64,
) -> Result<bool, StatusCode> {
    loop {
        match decode(framing, buf) {
            Ok(Step::Data(data, end)) => {
                *budget = budget
                    .checked_sub(data.len() as u64)
                    .ok_or(StatusCode::PAYLOAD_TOO_LARGE)?;
                out.push(frame(data, chunked));
                if end {
                    return Ok(true);
                }
            }
            Ok(Step::End) => {
                if chunked {
                    out.push(Bytes::from_static(b"0\r\n\r\n"));
                }
                return Ok(true);
            }
            Ok(Step::NeedMore) => return Ok(false),
            Err(_) => return Err(StatusCode::BAD_REQUEST),
        }
    }
}

/// The rest of a request body, read from the client as the backend takes it.
struct ClientBody<'a> {
    io: &'a mut ClientIo,
    buf: &'a mut BytesMut,
    framing: Framing,
    chunked: bool,
    /// Body bytes still allowed (max-body-size).
    budget: u64,
    /// Bytes of a 100 Continue written so far, while one is owed (RFC 9110
    /// §10.1.1: sent before the server reads a body the client holds back).
    continue_sent: Option<usize>,
    /// The body was read to its end.
    finished: bool,
}

impl BodySource for ClientBody<'_> {
    fn poll_piece(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Bytes>>> {
        loop {
            match decode(&mut self.framing, self.buf) {
                Ok(Step::Data(data, _)) => {
                    return Poll::Ready(budgeted(&mut self.budget, data, self.chunked).map(Some));
                }
                Ok(Step::End) if self.chunked => {
                    // The last chunk, once: the framing is then done (Length(0)).
                    self.chunked = false;
                    return Poll::Ready(Ok(Some(Bytes::from_static(b"0\r\n\r\n"))));
                }
                Ok(Step::End) => {
                    self.finished = true;
                    return Poll::Ready(Ok(None));
                }
                Ok(Step::NeedMore) => {}
                Err(e) => return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e))),
            }
            if let Some(sent) = self.continue_sent {
                let rest = [IoSlice::new(&CONTINUE_100[sent..])];
                let n = ready!(self.io.poll_write(cx, &rest))?;
                self.continue_sent = Some(sent + n).filter(|&s| s < CONTINUE_100.len());
                continue;
            }
            match ready!(self.io.poll_recv(cx, self.buf, BODY_READ_SIZE)) {
                Ok(0) => {
                    let e = io::Error::new(io::ErrorKind::UnexpectedEof, "closed inside the body");
                    return Poll::Ready(Err(e));
                }
                Ok(_) => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

/// Answers a request that cannot be served and is the connection's last
/// (callers box it: the connection's task keeps no room for a rare path):
/// counted as a bad request, `Connection: close`.
async fn refuse(io: &mut ClientIo, shared: &Shared, status: StatusCode, reason: &'static str) {
    shared.stats.bad_requests.fetch_add(1, Ordering::Relaxed);
    let f = Failure::of(&Error::refused(status, reason));
    write_local(io, &f, false, false, false).await;
    linger(io).await;
}

/// How long a connection closed with a request still arriving is read and dropped.
const LINGER: Duration = Duration::from_secs(2);

/// Ends a connection whose client may still be sending (a refused head, a body
/// nobody read): our side is shut first and what comes is dropped for up to
/// [`LINGER`], so the close does not become a reset that could destroy the
/// answer in the client's receive buffer (nginx's lingering close).
async fn linger(io: &mut ClientIo) {
    // An answer's unflushed last piece goes first.
    let _ = poll_fn(|cx| io.poll_flush(cx)).await;
    if io.shutdown_write().is_err() {
        return;
    }
    let mut sink = BytesMut::new();
    let drain = async {
        loop {
            sink.clear();
            match poll_fn(|cx| io.poll_recv(cx, &mut sink, BODY_READ_SIZE)).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// Writes a local answer; its body only if the request was no HEAD (RFC 9110
/// §9.3.2: the same fields as for GET, no content). Returns (status, body
/// length, connection reusable).
async fn write_local(
    io: &mut ClientIo,
    f: &Failure,
    http10: bool,
    keep_alive: bool,
    head_request: bool,
) -> (u16, Option<u64>, bool) {
    let mut out = answers::local_head(
        f.status,
        &f.content_type,
        f.location.as_deref(),
        f.body.len(),
        http10,
        keep_alive,
    );
    if let Some(c) = &f.challenge {
        crate::http1::edit::FieldEdits {
            add: vec![("www-authenticate".into(), c.clone())],
            ..Default::default()
        }
        .apply(&mut out);
    }
    if let Some(secs) = f.retry_after {
        crate::http1::edit::FieldEdits {
            add: vec![("retry-after".into(), secs.to_string())],
            ..Default::default()
        }
        .apply(&mut out);
    }
    let body: &[u8] = if head_request { b"" } else { &f.body };
    let ok = write_all(io, &mut [IoSlice::new(&out), IoSlice::new(body)])
        .await
        .is_ok();
    (
        f.status.as_u16(),
        Some(f.body.len() as u64),
        ok && keep_alive,
    )
}

/// Writes a backend's answer: its head as the client's, then its body as it
/// arrives. A body without a length goes chunked to an HTTP/1.1 client that
/// keeps its connection, and until the close otherwise. A backend failing
/// mid-body ends the client's connection, so the client sees the answer cut.
/// Returns (status, body length if known, connection reusable).
async fn write_answer(
    io: &mut ClientIo,
    mut out: Vec<u8>,
    head: &Head,
    body: &mut UpstreamBody,
    http10: bool,
    keep_alive: bool,
    extra: Extra<'_>,
) -> (u16, Option<u64>, bool, Termination) {
    let Extra {
        hsts,
        edits,
        mut deadlines,
    } = extra;
    let length = body.exact_len();
    let (chunked, keep_alive) = match length {
        Some(_) => (false, keep_alive),
        None if keep_alive && !http10 => (true, true),
        None => (false, false),
    };
    answers::relayed_head_into(&mut out, head, http10, chunked, keep_alive);
    if hsts > 0 {
        // Before the blank line that ends the head.
        let end = out.len() - 2;
        out.splice(end..end, answers::hsts_field(hsts));
    }
    if !edits.is_empty() {
        edits.apply(&mut out);
    }
    let status = head.status.as_u16();
    // The head goes out with the body bytes that came with it.
    let first = body.take_buffered().unwrap_or_default();
    // The last piece of an answer that ends its connection is not flushed:
    // the close sends it (TLS: with its close_notify, in one write).
    let flush = |last: bool| keep_alive || !last;
    let end = body.is_end_stream();
    // Each write must finish within `client`, each wait for the body's next
    // piece within `server`: a client that does not read, a backend that
    // stalls, ends the answer and its connection (HAProxy's `cD`, `sD`).
    let written = {
        let write = std::pin::pin!(write_piece(io, &out, &first, chunked, end, flush(end)));
        deadlines.within(deadlines.client, write).await
    };
    match written {
        Some(Ok(())) => {}
        Some(Err(_)) => return (status, length, false, client_left()),
        None => return (status, length, false, deadlines.expired(Side::Client)),
    }
    // A large cleartext body goes backend → pipe → client without being
    // copied through user space.
    let spliced = match body.movable() {
        Some(n) if n >= SPLICE_MIN && !chunked && !io.is_tls() => {
            super::splice::Pipe::take().map(|pipe| (pipe, n))
        }
        _ => None,
    };
    if let Some((mut pipe, _)) = spliced {
        if let Err(t) = splice_body(io, body, &mut pipe, &mut deadlines).await {
            return (status, length, false, t);
        }
    }
    while !body.is_end_stream() {
        let read = std::pin::pin!(poll_fn(|cx| body.poll_data(cx)));
        let piece = deadlines.within(deadlines.server, read).await;
        let Some(piece) = piece else {
            return (status, length, false, deadlines.expired(Side::Backend));
        };
        let written = match piece {
            Ok(Some(data)) => {
                let end = body.is_end_stream();
                let write = std::pin::pin!(write_piece(io, b"", &data, chunked, end, flush(end)));
                deadlines.within(deadlines.client, write).await
            }
            Ok(None) => {
                // The body ended with the backend's close.
                if chunked {
                    let write = std::pin::pin!(write_piece(io, b"", b"", true, true, true));
                    match deadlines.within(deadlines.client, write).await {
                        Some(Ok(())) => {}
                        Some(Err(_)) => return (status, length, false, client_left()),
                        None => return (status, length, false, deadlines.expired(Side::Client)),
                    }
                }
                break;
            }
            Err(e) => {
                return (status, length, false, backend_broke(&e));
            }
        };
        match written {
            Some(Ok(())) => {}
            Some(Err(_)) => return (status, length, false, client_left()),
            None => return (status, length, false, deadlines.expired(Side::Client)),
        }
    }
    (status, length, keep_alive, Termination::NORMAL)
}

/// Moves the rest of a Content-Length body from the backend's socket to the
/// client's through `pipe` with `splice(2)`, under the same deadlines as
/// [`write_answer`]'s copies: each wait for the backend within `server`,
/// each for the client within `client`. Err is how the answer ended early.
async fn splice_body(
    io: &mut ClientIo,
    body: &mut UpstreamBody,
    pipe: &mut super::splice::Pipe,
    deadlines: &mut Deadlines<'_>,
) -> Result<(), Termination> {
    use super::splice::splice;
    use std::os::fd::AsRawFd;
    let (pipe_in, pipe_out) = (pipe.write.as_raw_fd(), pipe.read.as_raw_fd());
    loop {
        if pipe.held == 0 {
            if body.is_end_stream() {
                return Ok(());
            }
            let fill = poll_fn(|cx| {
                body.poll_move(cx, |fd, max| splice(fd, pipe_in, max.min(SPLICE_CHUNK)))
            });
            match deadlines
                .within(deadlines.server, std::pin::pin!(fill))
                .await
            {
                Some(Ok(n)) => pipe.held = n,
                Some(Err(e)) => return Err(backend_broke(&e)),
                None => return Err(deadlines.expired(Side::Backend)),
            }
        }
        let held = pipe.held;
        let drain = poll_fn(|cx| io.poll_write_with(cx, |fd| splice(pipe_out, fd, held)));
        match deadlines
            .within(deadlines.client, std::pin::pin!(drain))
            .await
        {
            Some(Ok(0)) | Some(Err(_)) => return Err(client_left()),
            Some(Ok(n)) => pipe.held -= n,
            None => return Err(deadlines.expired(Side::Client)),
        }
    }
}

/// The termination of an answer whose backend failed inside its body (`SD`).
fn backend_broke(e: &io::Error) -> Termination {
    tracing::debug!(error = %e, "backend failed inside the answer body");
    let e = Error::new(
        Side::Backend,
        Phase::Body,
        Kind::Closed,
        StatusCode::BAD_GATEWAY,
        "",
    );
    e.termination()
}

/// The termination of an answer its client stopped taking (`CD`).
fn client_left() -> Termination {
    let e = Error::new(
        Side::Client,
        Phase::Body,
        Kind::Closed,
        StatusCode::BAD_REQUEST,
        "",
    );
    e.termination()
}

/// The waits of an answer being relayed, on the connection's one timer.
struct Deadlines<'a> {
    timer: Pin<&'a mut Sleep>,
    client: Duration,
    server: Duration,
    /// The request's own deadline (`[timeouts] request`), if any: no wait
    /// runs past it.
    end: Option<Instant>,
    stats: &'a crate::proxy::state::ProxyStats,
}

impl Deadlines<'_> {
    /// Waits for `op`, at most `limit` once it has to wait: the timer is
    /// moved only when `op` is not ready at once, so an answer that flows
    /// costs no timer operation.
    async fn within<F: Future>(
        &mut self,
        limit: Duration,
        mut op: Pin<&mut F>,
    ) -> Option<F::Output> {
        let mut armed = false;
        let end = self.end;
        let timer = &mut self.timer;
        poll_fn(|cx| {
            if let Poll::Ready(v) = op.as_mut().poll(cx) {
                return Poll::Ready(Some(v));
            }
            if !armed {
                let at = Instant::now() + limit;
                timer.as_mut().reset(end.map_or(at, |end| end.min(at)));
                armed = true;
            }
            timer.as_mut().poll(cx).map(|()| None)
        })
        .await
    }

    /// A wait on `side` ran out inside the body: counted; its termination.
    fn expired(&self, side: Side) -> Termination {
        self.stats.timed_out(side, Phase::Body);
        tracing::debug!(side = side.as_str(), "answer relay timed out");
        let e = Error::new(
            side,
            Phase::Body,
            Kind::Timeout,
            StatusCode::GATEWAY_TIMEOUT,
            "",
        );
        e.termination()
    }
}

/// What floatlb adds to a backend's answer head (HSTS on TLS, the route's
/// edits), and the deadlines of its relay.
struct Extra<'a> {
    hsts: u64,
    edits: AnswerEdits<'a>,
    deadlines: Deadlines<'a>,
}

/// Writes a 101's head, then the new protocol's bytes that came with it.
async fn write_switch(io: &mut ClientIo, head: &Head, from_backend: &[u8]) -> io::Result<()> {
    let out = answers::switched_head(head);
    write_all(io, &mut [IoSlice::new(&out), IoSlice::new(from_backend)]).await
}

/// Writes `head` (may be empty) and `data`, chunk-framed if `chunked`, with
/// the last chunk if `last`; flushed if `flush`.
async fn write_piece(
    io: &mut ClientIo,
    head: &[u8],
    data: &[u8],
    chunked: bool,
    last: bool,
    flush: bool,
) -> io::Result<()> {
    let mut size = [0u8; 18];
    let size_len = if chunked && !data.is_empty() {
        crate::http1::body::chunk_size_line(data.len(), &mut size)
    } else {
        0
    };
    let (crlf, end): (&[u8], &[u8]) = match (chunked, !data.is_empty(), last) {
        (false, ..) => (b"", b""),
        (true, true, true) => (b"\r\n", b"0\r\n\r\n"),
        (true, true, false) => (b"\r\n", b""),
        (true, false, true) => (b"", b"0\r\n\r\n"),
        (true, false, false) => (b"", b""),
    };
    let mut parts = [
        IoSlice::new(head),
        IoSlice::new(&size[..size_len]),
        IoSlice::new(data),
        IoSlice::new(crlf),
        IoSlice::new(end),
    ];
    write_then(io, &mut parts, flush).await
}

async fn write_all(io: &mut ClientIo, parts: &mut [IoSlice<'_>]) -> io::Result<()> {
    write_then(io, parts, true).await
}

async fn write_then(
    io: &mut ClientIo,
    mut parts: &mut [IoSlice<'_>],
    flush: bool,
) -> io::Result<()> {
    IoSlice::advance_slices(&mut parts, 0);
    while !parts.is_empty() {
        let n = poll_fn(|cx| io.poll_write(cx, parts)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut parts, n);
    }
    if !flush {
        return Ok(());
    }
    // What a TLS session still holds goes out before the next read waits.
    poll_fn(|cx| io.poll_flush(cx)).await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::net::script::{listen, pair, Peer, Step};

    /// Serves the connection whose client follows `client`, with a proxy
    /// whose one backend is at `backend`, until it closes; then how the
    /// client's script went.
    async fn serve_scripted(backend: SocketAddr, client: Vec<Step>) -> Result<(), String> {
        serve_with(backend, "", client).await.0
    }

    /// As [`serve_scripted`], with `timeouts` (lines of `[timeouts]`); the
    /// proxy's shared state is returned for its counters.
    async fn serve_with(
        backend: SocketAddr,
        timeouts: &str,
        client: Vec<Step>,
    ) -> (Result<(), String>, Arc<Shared>) {
        let text = format!(
            "[listen]\naddress = \"127.0.0.1:0\"\n[health]\nenabled = false\n\
             [proxy]\nx-forwarded-for = false\n[timeouts]\n{timeouts}\n\
             [[backend]]\nname = \"web\"\naddress = \"{backend}\"\n"
        );
        let path = std::path::Path::new("test.toml");
        let config = crate::config::parse(path, &text).expect("config");
        let shared = Arc::new(Shared::new(config, path));
        let (_stop, shutdown) = watch::channel(false);
        let permit = Arc::new(tokio::sync::Semaphore::new(1))
            .acquire_owned()
            .await
            .unwrap();
        let (ours, peer) = pair(client).await;
        let conn = Conn::new(
            ours.peer_addr().unwrap(),
            shared.clone(),
            shutdown,
            permit,
            0,
        );
        let mut io = ClientIo::Direct(ours.into_std().unwrap());
        let served =
            tokio::time::timeout(Duration::from_secs(30), serve(&mut io, &conn, None)).await;
        drop(io);
        let out = match served {
            Ok(_) => peer.done().await,
            Err(_) => Err("the connection was not closed".to_string()),
        };
        (out, shared)
    }

    fn timeouts_of(shared: &Shared, side: Side, phase: Phase) -> u64 {
        shared.stats.timeouts[crate::error::timeout_slot(side, phase)].load(Ordering::Relaxed)
    }

    fn in_flight(shared: &Shared) -> u32 {
        let snap = shared.live.load();
        snap.pools[0].backends[0].in_flight.load(Ordering::Relaxed)
    }

    #[tokio::test]
    async fn a_backend_that_stalls_inside_its_body_is_cut_at_the_server_timeout() {
        // Issue 29: `server` bounds every wait on a backend, the body's too.
        let (backend, web) = listen(vec![
            Step::Head(&["GET / HTTP/1.1"]),
            Step::Send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789"),
            // Then nothing, until floatlb gives up on it.
            Step::Eof,
        ])
        .await;
        let client = vec![
            Step::Send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
            Step::Head(&["HTTP/1.1 200 OK", "content-length: 100"]),
            Step::Expect(b"0123456789"),
            // RFC 9112 §8: cut short, never passed on as whole.
            Step::Eof,
        ];
        let (out, shared) = serve_with(backend, "server = \"200ms\"", client).await;
        out.unwrap();
        backend_done(web).await;
        assert_eq!(timeouts_of(&shared, Side::Backend, Phase::Body), 1);
        assert_eq!(in_flight(&shared), 0, "the backend's slot is let go");
    }

    #[tokio::test]
    async fn a_client_that_stops_reading_is_dropped_at_the_client_timeout() {
        // A large answer the client never reads: floatlb's writes stop once
        // the sockets' buffers are full, and `client` ends it.
        let mut answer = b"HTTP/1.1 200 OK\r\nContent-Length: 33554432\r\n\r\n".to_vec();
        answer.resize(answer.len() + (32 << 20), b'x');
        let answer: &'static [u8] = Box::leak(answer.into_boxed_slice());
        // The backend's own send fails once floatlb lets go of it: its
        // script's outcome is not what is tested.
        let (backend, _web) =
            listen(vec![Step::Head(&["GET / HTTP/1.1"]), Step::Send(answer)]).await;
        let client = vec![
            Step::Send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
            // Reads nothing for ten times the timeout, then what is left.
            Step::Pause(Duration::from_secs(2)),
            Step::Drain,
        ];
        let (out, shared) = serve_with(backend, "client = \"200ms\"", client).await;
        out.unwrap();
        assert_eq!(timeouts_of(&shared, Side::Client, Phase::Body), 1);
        assert_eq!(in_flight(&shared), 0, "the backend's slot is let go");
    }

    async fn backend_done(peer: Peer) {
        peer.done().await.expect("backend script");
    }

    #[tokio::test]
    async fn a_request_in_pieces_goes_out_once_whole_and_the_next_reuses_both_connections() {
        // The backend accepts one connection: the second request must come
        // on it (RFC 9112 §9.3, persistence), as the first answer was whole.
        let (backend, web) = listen(vec![
            Step::Head(&["GET /a HTTP/1.1", "host: shop"]),
            Step::Send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
            Step::Head(&["GET /b HTTP/1.1", "host: shop"]),
            Step::Send(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nyes"),
        ])
        .await;
        let client = vec![
            Step::Send(b"GET /a HTTP/1.1\r\nHo"),
            Step::Pause(Duration::from_millis(30)),
            Step::Send(b"st: shop\r\n\r\n"),
            Step::Head(&["HTTP/1.1 200 OK", "content-length: 2"]),
            Step::Expect(b"ok"),
            Step::Send(b"GET /b HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n"),
            // RFC 9112 §9.6: the answer to a request that closes says so.
            Step::Head(&["HTTP/1.1 200 OK", "connection: close"]),
            Step::Expect(b"yes"),
            Step::Eof,
        ];
        serve_scripted(backend, client).await.unwrap();
        backend_done(web).await;
    }

    #[tokio::test]
    async fn a_malformed_request_is_refused_with_its_reason_and_reaches_no_backend() {
        // RFC 9112 §6.3: an invalid Content-Length is unrecoverable: 400, close.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let backend = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let client = vec![
            Step::Send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n\r\n"),
            Step::Head(&["HTTP/1.1 400 Bad Request", "connection: close"]),
            Step::Expect(b"400 Bad Request: invalid Content-Length\n"),
            Step::CloseWrite,
            Step::Eof,
        ];
        serve_scripted(backend, client).await.unwrap();
        assert_eq!(
            listener.accept().unwrap_err().kind(),
            io::ErrorKind::WouldBlock,
            "the backend was not connected to"
        );
    }

    #[tokio::test]
    async fn an_answer_cut_short_by_its_backend_ends_the_clients_connection() {
        // RFC 9112 §8: the client must see the message is incomplete; the
        // connection ends where the backend's did, nothing is made up.
        let (backend, web) = listen(vec![
            Step::Head(&["GET / HTTP/1.1"]),
            Step::Send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabcd"),
        ])
        .await;
        let client = vec![
            Step::Send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
            Step::Head(&["HTTP/1.1 200 OK", "content-length: 10"]),
            Step::Expect(b"abcd"),
            Step::Eof,
        ];
        serve_scripted(backend, client).await.unwrap();
        backend_done(web).await;
    }

    #[tokio::test]
    async fn a_backend_that_refuses_connections_is_a_502_with_its_reason() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let backend = listener.local_addr().unwrap();
        drop(listener);
        let client = vec![
            Step::Send(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"),
            Step::Head(&["HTTP/1.1 502 Bad Gateway", "connection: close"]),
            Step::Rest("502 Bad Gateway: connect to 127.0.0.1:"),
        ];
        serve_scripted(backend, client).await.unwrap();
    }
}
