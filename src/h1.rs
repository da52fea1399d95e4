//! The client side's own HTTP/1 path: requests without a body are read from
//! the client's socket, forwarded and answered here, without hyper's server.
//!
//! Most of what a load balancer carries is GET and HEAD. For those, hyper's
//! server parsed each request into a `HeaderMap` that the backend path then
//! wrote out again, and built another map from the backend's answer only to
//! encode it once more; its connection task also woke through several layers
//! for each request. Here the request head is parsed once (httparse), its
//! headers are copied to the backend head as they are (minus the hop-by-hop
//! ones, plus the forwarding ones), and the backend's answer head goes to the
//! client the same way, in one `sendmsg` with the body bytes that came with it.
//!
//! Anything unusual — a request with a body, `Expect`, `Upgrade`, CONNECT, a
//! target that is not origin-form, a Connection header naming many headers —
//! hands the connection, with every byte read so far, to hyper's server
//! (`server.rs`), which serves it from there on. Errors keep their meaning on
//! both paths: a malformed head gets 400 and the connection closes, an
//! oversized one 431, a slow one 408, a backend failure 502/503/504 with a
//! reason.

use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, SystemTime};

use bytes::{Buf, BytesMut};
use http::StatusCode;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::handover::IDLE_CLOSE;
use crate::live::Shared;
use crate::proxy::{self, Answer, Bodyless, ConnectionToken, Failure, IpText};
use crate::server::ClientIo;
use crate::upstream::{Head, UpstreamBody};

/// Most headers in a request head (hyper's limit too).
const MAX_HEADERS: usize = 100;
/// How much is read from a client at a time.
const READ_SIZE: usize = 4096;

/// How a connection left this path.
pub(crate) enum Next {
    Close,
    /// hyper's server takes over; these bytes (the request it is to handle
    /// first, and whatever followed) were already read.
    Hyper(BytesMut),
}

pub(crate) struct Limits {
    pub client_header: Duration,
    pub idle: Duration,
    pub max_head: usize,
}

/// Serves requests on `io` until it closes, times out, is drained, or meets a
/// request for hyper.
pub(crate) async fn serve(
    io: &mut ClientIo,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    limits: &Limits,
    shutdown: &watch::Receiver<bool>,
) -> Next {
    let mut buf = BytesMut::new();
    // One timer for the connection's life, moved to each wait's deadline.
    let timer = tokio::time::sleep(limits.client_header);
    tokio::pin!(timer);
    // The first head is due client-header after the accept; after an answer
    // the connection is idle until bytes arrive, then the next head is due.
    let mut head_deadline = Instant::now() + limits.client_header;
    let mut idle_since: Option<Instant> = None;
    // Created before the flags are read, so a change after that wakes it.
    let woken = shared.handover.woken();
    tokio::pin!(woken);
    let mut draining = *shutdown.borrow();
    let mut closing = shared.handover.closing();
    loop {
        let (req, snap) = loop {
            if !buf.is_empty() {
                // The request is prepared and forwarded with the same config.
                let snap = shared.live.load_full();
                let fwd = Forwarding {
                    peer,
                    xff: snap.config.proxy.x_forwarded_for,
                    xfp: snap.config.proxy.x_forwarded_proto,
                    log: shared.access_log.is_some(),
                };
                match prepare(&buf, &fwd) {
                    Parse::Ready(req) => break (req, snap),
                    Parse::Partial if buf.len() < limits.max_head => {
                        // The rest of the head is due: acknowledge at once,
                        // or a client holding it back for our ACK (Nagle)
                        // waits for the delayed one, 40 ms or more. Rare: a
                        // head usually arrives whole. Each time, as the
                        // kernel goes back to delaying ACKs on its own.
                        io.quickack();
                    }
                    Parse::Partial => {
                        let reason = "request head too large";
                        refuse(
                            io,
                            shared,
                            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                            reason,
                        )
                        .await;
                        return Next::Close;
                    }
                    Parse::Hyper => {
                        // A body is probably due, as above.
                        io.quickack();
                        return Next::Hyper(buf);
                    }
                    Parse::Bad(status, reason) => {
                        refuse(io, shared, status, reason).await;
                        return Next::Close;
                    }
                }
            }
            let res = match poll_fn(|cx| Poll::Ready(io.poll_recv(cx, &mut buf, READ_SIZE))).await {
                Poll::Ready(res) => res,
                Poll::Pending => {
                    // Nothing to read yet: wait for bytes, a deadline, a drain or a handover.
                    let idle = buf.is_empty() && idle_since.is_some();
                    let deadline = match idle_since {
                        Some(since) if idle => {
                            if draining || (closing && since.elapsed() >= IDLE_CLOSE) {
                                return Next::Close;
                            }
                            let mut at = since + limits.idle;
                            if closing {
                                at = at.min(since + IDLE_CLOSE);
                            }
                            at
                        }
                        _ => {
                            if draining && buf.is_empty() {
                                return Next::Close;
                            }
                            head_deadline
                        }
                    };
                    if buf.is_empty() {
                        // An idle connection holds no buffer.
                        buf = BytesMut::new();
                    }
                    timer.as_mut().reset(deadline);
                    tokio::select! {
                        biased;
                        res = poll_fn(|cx| io.poll_recv(cx, &mut buf, READ_SIZE)) => res,
                        () = &mut timer => {
                            if !idle {
                                shared.stats.client_timeouts.fetch_add(1, Ordering::Relaxed);
                                io.send_now(REQUEST_TIMEOUT_408);
                            }
                            return Next::Close;
                        }
                        () = &mut woken => {
                            woken.set(shared.handover.woken());
                            draining = *shutdown.borrow();
                            closing = shared.handover.closing();
                            continue;
                        }
                    }
                }
            };
            match res {
                Ok(0) | Err(_) => return Next::Close,
                Ok(_) => {
                    if idle_since.take().is_some() {
                        head_deadline = Instant::now() + limits.client_header;
                    }
                }
            }
        };
        buf.advance(req.head_len);

        let started = std::time::Instant::now();
        shared.stats.requests.fetch_add(1, Ordering::Relaxed);
        let bodyless = Bodyless {
            head: &req.out,
            target: req.target(),
            has_host: req.has_host,
            idempotent: req.idempotent,
            head_request: req.head_request,
            upgrade: req.upgrade,
        };
        let answer = proxy::exchange(&bodyless, shared, peer, &snap).await;
        let keep_alive = req.keep_alive && !shared.handover.closing() && !*shutdown.borrow();
        let mut tunnel = None;
        let (status, bytes, reusable) = match answer {
            Answer::Local(f) => write_local(io, &f, req.http10, keep_alive).await,
            Answer::Backend {
                head,
                mut body,
                backend,
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
                    let out = write_answer(io, &head, &mut body, req.http10, keep_alive).await;
                    backend.release(&mut body);
                    out
                }
            },
        };
        shared
            .metrics
            .duration
            .observe(started.elapsed().as_secs_f64());
        if let (Some(log), Some(fields)) = (&shared.access_log, req.log) {
            log.log(crate::access_log::Record {
                client: peer.ip(),
                at: fields.at,
                method: fields.method,
                target: fields.target,
                version: if req.http10 {
                    http::Version::HTTP_10
                } else {
                    http::Version::HTTP_11
                },
                status,
                bytes,
                referer: fields.referer,
                user_agent: fields.user_agent,
                duration: started.elapsed(),
            });
        }
        if let Some((stream, _in_flight)) = tunnel {
            let idle = snap.config.timeouts.tunnel;
            let from_client = std::mem::take(&mut buf);
            let end = crate::tunnel::relay(io, from_client, stream, shared, shutdown, idle).await;
            tracing::debug!(client = %peer, ?end, "tunnel ended");
            return Next::Close;
        }
        if !reusable {
            return Next::Close;
        }
        if buf.is_empty() {
            idle_since = Some(Instant::now());
        } else {
            // The next request is already arriving (pipelined): its head is due
            // client-header from now.
            idle_since = None;
            head_deadline = Instant::now() + limits.client_header;
        }
    }
}

pub(crate) const REQUEST_TIMEOUT_408: &[u8] = b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain\r\ncontent-length: 46\r\nconnection: close\r\n\r\n408 Request Timeout: request head not received";

/// A request this path serves, its backend head prepared.
#[derive(Debug)]
struct Prepared {
    /// The head for the backend.
    out: Vec<u8>,
    /// Where the target is in `out`.
    target: (usize, usize),
    /// Length of the client's head.
    head_len: usize,
    has_host: bool,
    idempotent: bool,
    head_request: bool,
    /// Asks the backend for a protocol switch (WebSocket).
    upgrade: bool,
    http10: bool,
    /// The client keeps the connection open after the answer.
    keep_alive: bool,
    /// What the access log needs, only when it is on.
    log: Option<LogFields>,
}

impl Prepared {
    fn target(&self) -> &str {
        // The target was checked to be visible ASCII.
        std::str::from_utf8(&self.out[self.target.0..self.target.1]).unwrap_or("/")
    }
}

#[derive(Debug)]
struct LogFields {
    at: SystemTime,
    method: http::Method,
    target: String,
    referer: Option<String>,
    user_agent: Option<String>,
}

/// What a backend head gets added, and whether the access log is on.
struct Forwarding {
    peer: SocketAddr,
    xff: bool,
    xfp: bool,
    log: bool,
}

#[derive(Debug)]
enum Parse {
    Ready(Prepared),
    Partial,
    /// A request hyper's server handles.
    Hyper,
    Bad(StatusCode, &'static str),
}

/// Parses a request head from `buf` and, if this path serves it, prepares the
/// backend's head: the request line in HTTP/1.1, the client's headers as sent
/// except the hop-by-hop ones (and those Connection names), X-Forwarded-For
/// and X-Forwarded-Proto as configured.
fn prepare(buf: &[u8], fwd: &Forwarding) -> Parse {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parse::Partial,
        Err(httparse::Error::TooManyHeaders) => {
            return Parse::Bad(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "too many headers",
            )
        }
        Err(e) => return Parse::Bad(StatusCode::BAD_REQUEST, parse_error(e)),
    };
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Parse::Bad(StatusCode::BAD_REQUEST, "incomplete request line");
    };
    if method == "CONNECT" {
        // A reverse proxy opens no tunnels to where a client asks.
        return Parse::Bad(
            StatusCode::METHOD_NOT_ALLOWED,
            "CONNECT is not supported by this proxy",
        );
    }
    // hyper answers a target longer than a `Uri` holds with 414.
    if target.len() > u16::MAX as usize - 2
        || !target.starts_with('/')
        || !target.bytes().all(|b| (0x21..0x7f).contains(&b))
    {
        return Parse::Hyper;
    }
    let mut has_host = false;
    let mut close = false;
    let mut keep_alive_token = false;
    let mut zero_length = false;
    let mut listed: [&[u8]; 8] = [b""; 8];
    let mut n_listed = 0;
    let mut forwarded_for: Option<&[u8]> = None;
    let mut upgrade_value: Option<&[u8]> = None;
    let mut upgrade_token = false;
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        match name.len() {
            4 if name.eq_ignore_ascii_case(b"host") => has_host = true,
            6 if name.eq_ignore_ascii_case(b"expect") => return Parse::Hyper,
            7 if name.eq_ignore_ascii_case(b"upgrade") => {
                if upgrade_value.is_some() {
                    return Parse::Bad(StatusCode::BAD_REQUEST, "more than one Upgrade header");
                }
                upgrade_value = Some(h.value);
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => return Parse::Hyper,
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                // A body, or a length given twice: hyper's path and its checks.
                if zero_length || h.value.trim_ascii() != b"0" {
                    return Parse::Hyper;
                }
                zero_length = true;
            }
            10 if name.eq_ignore_ascii_case(b"connection") => {
                for token in proxy::connection_tokens(h.value) {
                    match token {
                        ConnectionToken::Close => close = true,
                        ConnectionToken::KeepAlive => keep_alive_token = true,
                        ConnectionToken::Name(name) if name.eq_ignore_ascii_case(b"upgrade") => {
                            upgrade_token = true
                        }
                        ConnectionToken::Name(_) if n_listed == listed.len() => {
                            return Parse::Hyper
                        }
                        ConnectionToken::Name(name) => {
                            listed[n_listed] = name;
                            n_listed += 1;
                        }
                    }
                }
            }
            15 if name.eq_ignore_ascii_case(b"x-forwarded-for") => {
                forwarded_for = forwarded_for.or(Some(h.value));
            }
            _ => {}
        }
    }
    let http10 = version == 0;
    let hosts = req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("host"));
    if let Err(reason) = proxy::check_host(hosts.map(|h| h.value), http10) {
        return Parse::Bad(StatusCode::BAD_REQUEST, reason);
    }
    // RFC 9110 §7.8: Upgrade counts only when Connection lists it, and never
    // in HTTP/1.0; otherwise it is dropped as hop-by-hop.
    let upgrade = upgrade_value.filter(|_| upgrade_token && !http10);
    let (xff, xfp) = (fwd.xff, fwd.xfp);
    let mut out = Vec::with_capacity(head_len + 80);
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    let target_at = (out.len(), out.len() + target.len());
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        if proxy::is_hop_by_hop(name)
            || listed[..n_listed]
                .iter()
                .any(|l| l.eq_ignore_ascii_case(name))
            || (xff && name.eq_ignore_ascii_case(b"x-forwarded-for"))
            || (xfp && name.eq_ignore_ascii_case(b"x-forwarded-proto"))
        {
            continue;
        }
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    if xff {
        // Appended to the first value the client sent, as the hyper path does.
        out.extend_from_slice(b"x-forwarded-for: ");
        if let Some(prev) = forwarded_for {
            out.extend_from_slice(prev);
            out.extend_from_slice(b", ");
        }
        let mut ip = IpText::default();
        ip.write(fwd.peer.ip());
        out.extend_from_slice(ip.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if xfp {
        out.extend_from_slice(b"x-forwarded-proto: http\r\n");
    }
    if let Some(protocols) = upgrade {
        out.extend_from_slice(b"upgrade: ");
        out.extend_from_slice(protocols);
        out.extend_from_slice(b"\r\nconnection: upgrade\r\n");
    }
    // A bodyless request whose method normally has a body says so.
    if matches!(method, "POST" | "PUT" | "PATCH") && !zero_length {
        out.extend_from_slice(b"content-length: 0\r\n");
    }
    out.extend_from_slice(b"\r\n");
    let log = fwd.log.then(|| {
        let text = |wanted: &str| {
            req.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(wanted))
                .map(|h| String::from_utf8_lossy(h.value).into_owned())
        };
        LogFields {
            at: SystemTime::now(),
            method: http::Method::from_bytes(method.as_bytes()).unwrap_or_default(),
            target: target.to_string(),
            referer: text("referer"),
            user_agent: text("user-agent"),
        }
    });
    Parse::Ready(Prepared {
        out,
        target: target_at,
        head_len,
        has_host,
        idempotent: matches!(
            method,
            "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
        ),
        head_request: method == "HEAD",
        upgrade: upgrade.is_some(),
        http10,
        keep_alive: if http10 {
            keep_alive_token && !close
        } else {
            !close
        },
        log,
    })
}

fn parse_error(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid token in the request line",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "invalid HTTP version",
    }
}

/// Answers a request that cannot be served and is the connection's last:
/// counted as a bad request, `Connection: close`.
async fn refuse(io: &mut ClientIo, shared: &Shared, status: StatusCode, reason: &str) {
    shared.stats.bad_requests.fetch_add(1, Ordering::Relaxed);
    write_local(io, &Failure::new(status, reason), false, false).await;
}

/// The client's status line and connection header for an answer.
fn status_line(out: &mut Vec<u8>, http10: bool, status: StatusCode, reason: &[u8]) {
    out.extend_from_slice(if http10 { b"HTTP/1.0 " } else { b"HTTP/1.1 " });
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason);
    out.extend_from_slice(b"\r\n");
}

fn connection_header(out: &mut Vec<u8>, http10: bool, keep_alive: bool) {
    match (http10, keep_alive) {
        (false, false) => out.extend_from_slice(b"connection: close\r\n"),
        (true, true) => out.extend_from_slice(b"connection: keep-alive\r\n"),
        _ => {}
    }
}

/// Appends a Date header with the current time, formatted once a second.
fn date_header(out: &mut Vec<u8>) {
    thread_local! {
        static DATE: std::cell::RefCell<(u64, String)> = const {
            std::cell::RefCell::new((u64::MAX, String::new()))
        };
    }
    let now = SystemTime::now();
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with_borrow_mut(|(at, text)| {
        if *at != secs {
            *at = secs;
            *text = httpdate::fmt_http_date(now);
        }
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(text.as_bytes());
        out.extend_from_slice(b"\r\n");
    });
}

/// Writes a local answer. Returns (status, body length, connection reusable).
async fn write_local(
    io: &mut ClientIo,
    f: &Failure,
    http10: bool,
    keep_alive: bool,
) -> (u16, Option<u64>, bool) {
    let mut out = Vec::with_capacity(160 + f.text.len());
    let reason = f.status.canonical_reason().unwrap_or("");
    status_line(&mut out, http10, f.status, reason.as_bytes());
    out.extend_from_slice(b"content-type: ");
    out.extend_from_slice(proxy::ERROR_CONTENT_TYPE.as_bytes());
    out.extend_from_slice(b"\r\ncache-control: no-store\r\n");
    date_header(&mut out);
    out.extend_from_slice(b"content-length: ");
    out.extend_from_slice(f.text.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    connection_header(&mut out, http10, keep_alive);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(f.text.as_bytes());
    let ok = write_all(io, &mut [IoSlice::new(&out)]).await.is_ok();
    (
        f.status.as_u16(),
        Some(f.text.len() as u64),
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
    head: &Head,
    body: &mut UpstreamBody,
    http10: bool,
    keep_alive: bool,
) -> (u16, Option<u64>, bool) {
    let length = body.exact_len();
    let (chunked, keep_alive) = match length {
        Some(_) => (false, keep_alive),
        None if keep_alive && !http10 => (true, true),
        None => (false, false),
    };
    let mut out = Vec::with_capacity(512);
    status_line(&mut out, http10, head.status, head.reason());
    for (name, value) in head.fields() {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    if !head.has_date {
        date_header(&mut out);
    }
    if chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    connection_header(&mut out, http10, keep_alive);
    out.extend_from_slice(b"\r\n");
    let status = head.status.as_u16();
    // The head goes out with the body bytes that came with it.
    let first = body.take_buffered().unwrap_or_default();
    if write_piece(io, &out, &first, chunked, body.is_end_stream())
        .await
        .is_err()
    {
        return (status, length, false);
    }
    while !body.is_end_stream() {
        match poll_fn(|cx| body.poll_data(cx)).await {
            Ok(Some(data)) => {
                let end = body.is_end_stream();
                if write_piece(io, b"", &data, chunked, end).await.is_err() {
                    return (status, length, false);
                }
            }
            Ok(None) => {
                // The body ended with the backend's close.
                if chunked && write_piece(io, b"", b"", true, true).await.is_err() {
                    return (status, length, false);
                }
                break;
            }
            Err(e) => {
                tracing::debug!(error = %e, "backend failed inside the answer body");
                return (status, length, false);
            }
        }
    }
    (status, length, keep_alive)
}

/// Writes a 101 Switching Protocols as the backend sent it (its Upgrade kept,
/// RFC 9110 §7.8), then the new protocol's bytes that came with it.
async fn write_switch(io: &mut ClientIo, head: &Head, from_backend: &[u8]) -> io::Result<()> {
    let mut out = Vec::with_capacity(256);
    status_line(&mut out, false, head.status, head.reason());
    for (name, value) in head.fields() {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"connection: upgrade\r\n\r\n");
    write_all(io, &mut [IoSlice::new(&out), IoSlice::new(from_backend)]).await
}

/// Writes `head` (may be empty) and `data`, chunk-framed if `chunked`, with
/// the last chunk if `last`.
async fn write_piece(
    io: &mut ClientIo,
    head: &[u8],
    data: &[u8],
    chunked: bool,
    last: bool,
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
    write_all(io, &mut parts).await
}

async fn write_all(io: &mut ClientIo, mut parts: &mut [IoSlice<'_>]) -> io::Result<()> {
    IoSlice::advance_slices(&mut parts, 0);
    while !parts.is_empty() {
        let n = poll_fn(|cx| io.poll_write(cx, parts)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut parts, n);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fwd(xff: bool, xfp: bool) -> Forwarding {
        Forwarding {
            peer: "198.18.0.7:40000".parse().unwrap(),
            xff,
            xfp,
            log: false,
        }
    }

    fn ready(head: &str, f: &Forwarding) -> Prepared {
        match prepare(head.as_bytes(), f) {
            Parse::Ready(p) => p,
            other => panic!("{head:?}: {other:?}"),
        }
    }

    #[test]
    fn backend_heads_keep_the_clients_headers_minus_hop_by_hop() {
        let head = "GET /a?b=1 HTTP/1.1\r\nHost: shop\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nX-Forwarded-For: 198.18.0.1\r\nX-Forwarded-For: 198.18.0.2\r\nX-Forwarded-Proto: https\r\nAccept: */*\r\n\r\nNEXT";
        let p = ready(head, &fwd(true, true));
        assert_eq!(
            String::from_utf8(p.out.clone()).unwrap(),
            "GET /a?b=1 HTTP/1.1\r\nHost: shop\r\nAccept: */*\r\nx-forwarded-for: 198.18.0.1, 198.18.0.7\r\nx-forwarded-proto: http\r\n\r\n"
        );
        assert_eq!(p.target(), "/a?b=1");
        assert_eq!(
            p.head_len,
            head.len() - "NEXT".len(),
            "a pipelined request stays"
        );
        assert!(p.has_host && p.keep_alive && p.idempotent && !p.http10);
        // Forwarding headers off: the client's pass as they are.
        let p = ready(
            "GET / HTTP/1.0\r\nX-Forwarded-For: 198.18.0.1\r\n\r\n",
            &fwd(false, false),
        );
        assert_eq!(
            String::from_utf8(p.out).unwrap(),
            "GET / HTTP/1.1\r\nX-Forwarded-For: 198.18.0.1\r\n\r\n"
        );
        assert!(!p.has_host, "HTTP/1.0 may leave Host out");
        // A bodyless POST says so; a zero length is kept as sent.
        let p = ready("POST /x HTTP/1.1\r\nHost: h\r\n\r\n", &fwd(false, false));
        assert!(String::from_utf8(p.out)
            .unwrap()
            .ends_with("content-length: 0\r\n\r\n"));
        assert!(!p.idempotent);
        let p = ready(
            "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
            &fwd(false, false),
        );
        assert_eq!(
            String::from_utf8(p.out).unwrap(),
            "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn keep_alive_follows_each_version() {
        let f = fwd(false, false);
        assert!(!ready("GET / HTTP/1.0\r\n\r\n", &f).keep_alive);
        let p = ready("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", &f);
        assert!(p.keep_alive && p.http10);
        assert!(!ready("GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", &f).keep_alive);
        assert!(ready("HEAD / HTTP/1.1\r\nHost: t\r\n\r\n", &f).head_request);
    }

    /// Random heads built from pieces that matter (hop-by-hop names in any
    /// case, Connection lists, forwarding headers, lengths, odd bytes): the
    /// parse never panics, and every head it prepares is one complete, valid
    /// request with the same method and target, no hop-by-hop header, nothing
    /// the Connection header named, and exactly one X-Forwarded-For.
    #[test]
    fn prepared_heads_are_valid_requests_for_any_input() {
        let mut next = crate::test_util::xorshift(0x2545_f491_4f6c_dd1d);
        let mut rand = move |n: usize| next(n as u64) as usize;
        const METHODS: [&str; 6] = ["GET", "HEAD", "POST", "DELETE", "PATCH", "G\x01T"];
        const TARGETS: [&str; 5] = ["/", "/a?b=c", "/x%20y", "*", "http://h/"];
        const NAMES: [&str; 14] = [
            "Host",
            "connection",
            "Keep-Alive",
            "TE",
            "Trailer",
            "Upgrade",
            "Proxy-Connection",
            "X-Forwarded-For",
            "x-forwarded-proto",
            "Content-Length",
            "X-Hop",
            "x-hop",
            "Accept",
            "Bad Name",
        ];
        const VALUES: [&str; 8] = [
            "close",
            "keep-alive, X-Hop",
            "198.18.0.1",
            "0",
            "5",
            "a\x00b",
            "t",
            "x, , y",
        ];
        let (mut ready, mut hyper, mut bad) = (0, 0, 0);
        for _ in 0..5000 {
            let method = METHODS[rand(METHODS.len())];
            let target = TARGETS[rand(TARGETS.len())];
            // Host first, as clients send it (another may follow: that is a 400).
            let mut head = format!("{method} {target} HTTP/1.{}\r\nHost: t\r\n", rand(2));
            for _ in 0..rand(8) {
                let name = NAMES[rand(NAMES.len())];
                let value = VALUES[rand(VALUES.len())];
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            head.push_str("\r\n");
            let mut bytes = head.into_bytes();
            if rand(10) == 0 {
                let at = rand(bytes.len());
                bytes[at] = rand(256) as u8;
            }
            let p = match prepare(&bytes, &fwd(true, true)) {
                Parse::Ready(p) => p,
                Parse::Hyper => {
                    hyper += 1;
                    continue;
                }
                _ => {
                    bad += 1;
                    continue;
                }
            };
            ready += 1;
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS + 4];
            let mut out = httparse::Request::new(&mut headers);
            let text = String::from_utf8_lossy(&bytes).to_string();
            assert_eq!(
                out.parse(&p.out),
                Ok(httparse::Status::Complete(p.out.len())),
                "{text:?}"
            );
            let mut input = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut input);
            req.parse(&bytes).unwrap();
            assert_eq!(out.method, req.method, "{text:?}");
            assert_eq!(out.path, req.path, "{text:?}");
            assert_eq!(out.path, Some(p.target()), "{text:?}");
            let names: Vec<String> = out
                .headers
                .iter()
                .map(|h| h.name.to_ascii_lowercase())
                .collect();
            let hop_listed = req.headers.iter().any(|h| {
                h.name.eq_ignore_ascii_case("connection")
                    && proxy::connection_tokens(h.value)
                        .any(|t| t == ConnectionToken::Name(b"X-Hop"))
            });
            for n in &names {
                assert!(!proxy::is_hop_by_hop(n.as_bytes()), "{n} in {text:?}");
                assert!(n != "x-hop" || !hop_listed, "{text:?}");
            }
            let xff = names.iter().filter(|n| *n == "x-forwarded-for").count();
            assert_eq!(xff, 1, "{text:?}");
        }
        assert!(
            ready > 500 && hyper > 500 && bad > 50,
            "{ready} {hyper} {bad}"
        );
    }

    #[test]
    fn unusual_requests_go_to_hyper_and_broken_ones_are_refused() {
        let f = fwd(true, true);
        for head in [
            "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
            "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n\r\n",
            "GET http://shop/ HTTP/1.1\r\nHost: shop\r\n\r\n",
            "OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n",
            "GET /caf\u{e9} HTTP/1.1\r\nHost: t\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: t\r\nConnection: a, b, c, d, e, f, g, h, i\r\n\r\n",
        ] {
            assert!(
                matches!(prepare(head.as_bytes(), &f), Parse::Hyper),
                "{head:?}"
            );
        }
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(70_000));
        assert!(matches!(prepare(long.as_bytes(), &f), Parse::Hyper));
        assert!(matches!(
            prepare(b"GET / HTTP/1.1\r\nHost: t", &f),
            Parse::Partial
        ));
        for head in [
            "GET / HTTP/1.1\r\nHost : t\r\n\r\n",
            "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
            "GET / HTTP/1.1\r\nX: a\0b\r\n\r\n",
            "GARBAGE\r\n\r\n",
            "GET / HTTP/2.0\r\n\r\n",
        ] {
            assert!(
                matches!(
                    prepare(head.as_bytes(), &f),
                    Parse::Bad(StatusCode::BAD_REQUEST, _)
                ),
                "{head:?}"
            );
        }
        let many = format!(
            "GET / HTTP/1.1\r\n{}\r\n",
            "X: 1\r\n".repeat(MAX_HEADERS + 1)
        );
        assert!(matches!(
            prepare(many.as_bytes(), &f),
            Parse::Bad(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, _)
        ));
    }

    /// RFC 9112 §3.2: 400 for an HTTP/1.1 request without Host, for more than
    /// one Host line, and for a Host value that is not uri-host[:port].
    #[test]
    fn host_is_required_once_and_valid() {
        let f = fwd(false, false);
        for head in [
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GET / HTTP/1.0\r\nHost: a\r\nhost: a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: shop/x\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: user@shop\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: shop:80x\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: [2001:2::1\r\n\r\n",
        ] {
            assert!(
                matches!(
                    prepare(head.as_bytes(), &f),
                    Parse::Bad(StatusCode::BAD_REQUEST, _)
                ),
                "{head:?}"
            );
        }
        for host in [
            "shop",
            "shop:8080",
            "198.18.0.1:80",
            "[2001:2::1]:443",
            "",
            "a-b.c_d~e",
        ] {
            let head = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
            assert!(ready(&head, &f).has_host, "{host:?}");
        }
        // HTTP/1.0 may leave it out; each backend's address is sent instead.
        assert!(!ready("GET / HTTP/1.0\r\n\r\n", &f).has_host);
    }

    /// RFC 9110 §7.8: Upgrade is passed on (with `Connection: upgrade`) only when
    /// the client's Connection lists it, and never for HTTP/1.0; CONNECT is 405.
    #[test]
    fn upgrade_requests_keep_their_upgrade_and_connect_is_refused() {
        let f = fwd(false, false);
        let p = ready(
            "GET /chat HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n",
            &f,
        );
        assert!(p.upgrade);
        assert_eq!(
            String::from_utf8(p.out).unwrap(),
            "GET /chat HTTP/1.1\r\nHost: t\r\nSec-WebSocket-Version: 13\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n"
        );
        for head in [
            "GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n\r\n",
            "GET / HTTP/1.0\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        ] {
            let p = ready(head, &f);
            assert!(!p.upgrade, "{head:?}");
            assert!(!String::from_utf8(p.out)
                .unwrap()
                .to_ascii_lowercase()
                .contains("upgrade"));
        }
        assert!(matches!(
            prepare(b"GET / HTTP/1.1\r\nHost: t\r\nUpgrade: a\r\nUpgrade: b\r\nConnection: upgrade\r\n\r\n", &f),
            Parse::Bad(StatusCode::BAD_REQUEST, _)
        ));
        assert!(matches!(
            prepare(b"CONNECT shop:443 HTTP/1.1\r\nHost: shop:443\r\n\r\n", &f),
            Parse::Bad(StatusCode::METHOD_NOT_ALLOWED, _)
        ));
    }
}
