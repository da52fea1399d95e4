//! HTTP/1.1 to a backend, on the request's own task: the backend side of the
//! one HTTP/1 engine (the client side is `h1.rs`).
//!
//! A request's head (and its body, streamed from the client as it arrives,
//! [`BodySource`]) is written and the answer read right where the request is
//! handled, over pooled keep-alive connections: no task per backend connection
//! and no channels in between. The answer's body is streamed as it arrives
//! ([`UpstreamBody`]), framed by Content-Length, chunked coding or the
//! connection's end (RFC 9112 §6.3, [`crate::http1::body`]). A connection goes
//! back to the pool only when the request went out whole, its answer was read
//! exactly to its end and both sides meant to keep it open.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll, RawWaker, RawWakerVTable, Waker};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode, Version};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, Interest, ReadBuf};
use tokio::net::TcpStream;

use crate::http1::body::{decode, Chunk, Framing, Step};
use crate::http1::fields::{connection_tokens, is_hop_by_hop, ConnectionToken};

/// Largest response head accepted from a backend.
const MAX_HEAD: usize = 64 * 1024;
/// Most headers in a response head.
const MAX_HEADERS: usize = 100;

/// One keep-alive connection to a backend.
#[derive(Debug)]
pub struct Upstream {
    stream: TcpStream,
    buf: BytesMut,
}

/// Why an exchange failed.
#[derive(Debug)]
pub enum SendError {
    /// The connection failed before the backend sent any byte of an answer
    /// (a pooled connection the backend had closed, typically); the request
    /// may have reached it.
    NoResponse(io::Error),
    /// The backend answered with something that is not a valid HTTP/1.x head.
    Malformed(String),
    /// The client failed, left or sent a broken body while it was being sent.
    Client(io::Error),
    /// The client sent nothing of its body for the idle time.
    ClientTimeout,
    /// The backend took in and answered nothing for the idle time.
    Timeout,
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::NoResponse(error) => {
                write!(f, "connection closed before an answer: {error}")
            }
            SendError::Malformed(m) => write!(f, "invalid answer: {m}"),
            SendError::Client(e) => write!(f, "client failed inside the request body: {e}"),
            SendError::ClientTimeout => write!(f, "client sent nothing of its body in time"),
            SendError::Timeout => write!(f, "backend did not answer in time"),
        }
    }
}

impl Upstream {
    pub fn new(stream: TcpStream) -> Self {
        Upstream {
            stream,
            buf: BytesMut::new(),
        }
    }

    /// Whether an idle pooled connection may be used: the backend has not
    /// closed it (as far as the runtime has seen) and sent nothing unasked.
    pub fn looks_usable(&self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        let ready = self.stream.ready(Interest::READABLE);
        let mut ready = std::pin::pin!(ready);
        match ready.as_mut().poll(&mut cx) {
            Poll::Ready(Ok(r)) => !r.is_read_closed() && !r.is_error(),
            Poll::Ready(Err(_)) => false,
            Poll::Pending => true,
        }
    }

    /// Sends a request's head (request line, headers, blank line; the caller
    /// prepared it) with `body` (already framed for the backend; empty for a
    /// bodyless request), in one write, and reads the answer's head.
    /// With `upgrade`, the request asked for a protocol switch: a 101 answer
    /// makes the connection a tunnel ([`UpstreamBody::into_tunnel`]).
    pub async fn send(
        mut self,
        request_head: &[u8],
        body: &[u8],
        head_request: bool,
        upgrade: bool,
    ) -> Result<(Head, UpstreamBody), SendError> {
        if let Err(error) = self.write_head(request_head, body).await {
            return Err(SendError::NoResponse(error));
        }
        loop {
            if let Some((head, framing, keep_alive)) = self.parse_head(head_request, upgrade)? {
                return Ok(self.into_answer(head, framing, keep_alive));
            }
            std::future::poll_fn(|cx| self.poll_head_bytes(cx)).await?;
        }
    }

    /// Sends a request whose body is still arriving from the client: the head
    /// with the body's first bytes (`first`), then what `source` gives, while
    /// the answer is watched for. A backend may answer before the body is
    /// whole (a 413, a redirect): the answer is returned at once and the rest
    /// of the body is not sent; the returned flag says whether the request
    /// went out whole (if not, neither connection can carry another request).
    /// No progress either way for `idle` ends it: [`SendError::ClientTimeout`]
    /// while the client's bytes were awaited, [`SendError::Timeout`] otherwise.
    pub async fn send_streaming(
        mut self,
        request_head: &[u8],
        first: &[u8],
        source: &mut (dyn BodySource + Send),
        head_request: bool,
        idle: std::time::Duration,
    ) -> Result<(Head, UpstreamBody, bool), SendError> {
        if let Err(error) = self.write_head(request_head, first).await {
            return Err(SendError::NoResponse(error));
        }
        let mut out = Bytes::new();
        let mut body_done = false;
        let mut write_error: Option<io::Error> = None;
        loop {
            let event = tokio::time::timeout(
                idle,
                std::future::poll_fn(|cx| {
                    // The answer first: once it starts, the body stops.
                    loop {
                        match self.parse_head(head_request, false) {
                            Ok(Some(answer)) => return Poll::Ready(Ok(Some(answer))),
                            Ok(None) => {}
                            Err(e) => return Poll::Ready(Err(e)),
                        }
                        match self.poll_head_bytes(cx) {
                            Poll::Ready(Ok(())) => {}
                            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                            Poll::Pending => break,
                        }
                    }
                    let mut moved = false;
                    while write_error.is_none() {
                        if !out.is_empty() {
                            match Pin::new(&mut self.stream).poll_write(cx, &out) {
                                Poll::Ready(Ok(0)) => {
                                    write_error = Some(io::ErrorKind::WriteZero.into())
                                }
                                Poll::Ready(Ok(n)) => out.advance(n),
                                // The backend may have answered and closed: read on.
                                Poll::Ready(Err(e)) => write_error = Some(e),
                                Poll::Pending => break,
                            }
                            moved = true;
                            continue;
                        }
                        if body_done {
                            break;
                        }
                        match source.poll_piece(cx) {
                            Poll::Ready(Ok(Some(piece))) => out = piece,
                            Poll::Ready(Ok(None)) => body_done = true,
                            Poll::Ready(Err(e)) => return Poll::Ready(Err(SendError::Client(e))),
                            Poll::Pending => break,
                        }
                        moved = true;
                    }
                    if moved {
                        Poll::Ready(Ok(None))
                    } else {
                        Poll::Pending
                    }
                }),
            )
            .await;
            match event {
                Err(_) => {
                    let awaiting_client = write_error.is_none() && !body_done && out.is_empty();
                    return Err(if awaiting_client {
                        SendError::ClientTimeout
                    } else {
                        SendError::Timeout
                    });
                }
                Ok(Ok(None)) => {}
                Ok(Ok(Some((head, framing, keep_alive)))) => {
                    let whole = body_done && out.is_empty() && write_error.is_none();
                    let (head, body) = self.into_answer(head, framing, keep_alive && whole);
                    return Ok((head, body, whole));
                }
                Ok(Err(SendError::NoResponse(e))) => {
                    return Err(SendError::NoResponse(write_error.unwrap_or(e)))
                }
                Ok(Err(e)) => return Err(e),
            }
        }
    }

    async fn write_head(&mut self, head: &[u8], body: &[u8]) -> io::Result<()> {
        if body.is_empty() {
            return self.stream.write_all(head).await;
        }
        let mut parts = [io::IoSlice::new(head), io::IoSlice::new(body)];
        let mut parts = &mut parts[..];
        while !parts.is_empty() {
            let n = self.stream.write_vectored(parts).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            io::IoSlice::advance_slices(&mut parts, n);
        }
        Ok(())
    }

    /// The answer's final head if it is all in the buffer (1xx answers other
    /// than an asked-for 101 are skipped).
    fn parse_head(
        &mut self,
        head_request: bool,
        upgrade: bool,
    ) -> Result<Option<(Head, Framing, bool)>, SendError> {
        loop {
            match parse_response(&self.buf, head_request, upgrade)? {
                Some(Parsed::Informational(n)) => self.buf.advance(n),
                Some(Parsed::Head(mut head, n, framing, keep_alive)) => {
                    head.raw = self.buf.split_to(n).freeze();
                    return Ok(Some((head, framing, keep_alive)));
                }
                None if self.buf.len() > MAX_HEAD => {
                    return Err(SendError::Malformed(format!(
                        "response head longer than {MAX_HEAD} bytes"
                    )))
                }
                None => return Ok(None),
            }
        }
    }

    /// Reads more of an answer's head.
    fn poll_head_bytes(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        let before = self.buf.len();
        Poll::Ready(
            match ready!(poll_read_more(&mut self.stream, &mut self.buf, 4096, cx)) {
                Ok(0) if before == 0 => {
                    Err(SendError::NoResponse(io::ErrorKind::UnexpectedEof.into()))
                }
                Ok(0) => Err(SendError::Malformed(
                    "connection closed inside the response head".into(),
                )),
                Ok(_) => Ok(()),
                Err(error) if before == 0 => Err(SendError::NoResponse(error)),
                Err(e) => Err(SendError::Malformed(format!("read failed: {e}"))),
            },
        )
    }

    fn into_answer(self, head: Head, framing: Framing, keep_alive: bool) -> (Head, UpstreamBody) {
        let body = UpstreamBody {
            conn: Some(self),
            framing,
            keep_alive,
            // An empty body is complete before it is read; a tunnel has no
            // body to read here.
            done: matches!(framing, Framing::Length(0) | Framing::Tunnel),
            failed: None,
        };
        (head, body)
    }
}

/// Where a request's body comes from while it is sent to a backend (the
/// client side reads it from the client's socket).
pub trait BodySource {
    /// The next piece, already framed for the backend; Ok(None) once the body
    /// is whole. An error is the client's (it left, or sent a broken body).
    fn poll_piece(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Bytes>>>;
}

pub(crate) fn poll_read_more(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    want: usize,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    buf.reserve(want);
    let dst = buf.spare_capacity_mut();
    let mut rb = ReadBuf::uninit(dst);
    ready!(Pin::new(stream).poll_read(cx, &mut rb))?;
    let n = rb.filled().len();
    // SAFETY: poll_read initialised the first `n` bytes of the spare capacity.
    unsafe { buf.set_len(buf.len() + n) };
    Poll::Ready(Ok(n))
}

/// The request head bytes: request line, headers, blank line. A bodyless
/// request whose method normally carries a body says so with a zero length.
pub fn encode_request(method: &Method, target: &str, headers: &HeaderMap) -> Vec<u8> {
    let mut size = method.as_str().len() + target.len() + 16;
    for (k, v) in headers {
        size += k.as_str().len() + v.len() + 4;
    }
    let mut out = Vec::with_capacity(size + 24);
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (k, v) in headers {
        out.extend_from_slice(k.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if matches!(*method, Method::POST | Method::PUT | Method::PATCH)
        && !headers.contains_key(header::CONTENT_LENGTH)
    {
        out.extend_from_slice(b"content-length: 0\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[derive(Debug)]
enum Parsed {
    /// A 1xx answer of this many bytes to skip.
    Informational(usize),
    /// The final head, its length, how its body ends and whether the
    /// connection stays open after it.
    Head(Head, usize, Framing, bool),
}

/// An answer's head as the backend sent it, with the headers to pass on:
/// hop-by-hop headers (and those Connection names) are left out, and so is
/// Content-Length when Transfer-Encoding overrides it.
#[derive(Debug)]
pub struct Head {
    /// The head's bytes; the spans below point into them.
    raw: Bytes,
    pub status: StatusCode,
    pub version: Version,
    /// The backend sent a Date header (a proxy adds one otherwise, RFC 9110 §6.6.1).
    pub has_date: bool,
    reason: (u32, u32),
    /// (name start, name end, value start, value end) of each header kept.
    fields: Vec<[u32; 4]>,
}

impl Head {
    /// The reason phrase as sent (may be empty).
    pub fn reason(&self) -> &[u8] {
        &self.raw[self.reason.0 as usize..self.reason.1 as usize]
    }

    /// The headers to pass on, in the order sent, as (name, value).
    pub fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.fields.iter().map(|f| {
            (
                &self.raw[f[0] as usize..f[1] as usize],
                &self.raw[f[2] as usize..f[3] as usize],
            )
        })
    }

    /// The head as an `http` response, for hyper's server.
    pub fn to_response(&self) -> Response<()> {
        let mut map = HeaderMap::with_capacity(self.fields.len());
        for (name, value) in self.fields() {
            // httparse checked both, so these conversions do not fail.
            if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
                map.append(n, v);
            }
        }
        let mut resp = Response::new(());
        *resp.status_mut() = self.status;
        *resp.version_mut() = self.version;
        *resp.headers_mut() = map;
        resp
    }
}

fn parse_response(
    buf: &[u8],
    head_request: bool,
    upgrade: bool,
) -> Result<Option<Parsed>, SendError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut r = httparse::Response::new(&mut headers);
    let n = match r.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(SendError::Malformed(e.to_string())),
    };
    let code = r.code.unwrap_or(0);
    let status =
        StatusCode::from_u16(code).map_err(|_| SendError::Malformed(format!("status {code}")))?;
    let switched = status == StatusCode::SWITCHING_PROTOCOLS;
    if switched && !upgrade {
        return Err(SendError::Malformed("unrequested protocol switch".into()));
    }
    if status.is_informational() && !switched {
        return Ok(Some(Parsed::Informational(n)));
    }
    let version = if r.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut has_te = false;
    let mut close = false;
    let mut keep_alive = false;
    let mut names_listed = false;
    let mut has_date = false;
    for h in r.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"date") {
            has_date = true;
        } else if name.eq_ignore_ascii_case(b"content-length") {
            let v = std::str::from_utf8(h.value)
                .ok()
                .map(str::trim)
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| SendError::Malformed("invalid Content-Length".into()))?;
            if length.is_some_and(|l| l != v) {
                return Err(SendError::Malformed("conflicting Content-Length".into()));
            }
            length = Some(v);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            has_te = true;
            // Only the last coding decides; `chunked` anywhere else is invalid.
            chunked = h
                .value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in connection_tokens(h.value) {
                match token {
                    ConnectionToken::Close => close = true,
                    ConnectionToken::KeepAlive => keep_alive = true,
                    ConnectionToken::Name(_) => names_listed = true,
                }
            }
        }
    }
    let mut reusable = match version {
        Version::HTTP_10 => keep_alive && !close,
        _ => !close,
    };
    let no_body =
        head_request || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    let framing = if switched {
        // RFC 9110 §15.2.2: the connection now speaks the protocol named in
        // Upgrade; nothing of it is HTTP's to frame.
        reusable = false;
        Framing::Tunnel
    } else if no_body {
        Framing::Length(0)
    } else if has_te {
        // Transfer-Encoding overrides Content-Length, and such an answer may be
        // a smuggling attempt: read it, then close the connection.
        if length.is_some() {
            reusable = false;
        }
        if chunked {
            Framing::Chunked(Chunk::Size)
        } else {
            reusable = false;
            Framing::Close
        }
    } else if let Some(l) = length {
        Framing::Length(l)
    } else {
        reusable = false;
        Framing::Close
    };
    let base = buf.as_ptr() as usize;
    let at = |s: &[u8]| (s.as_ptr() as usize - base) as u32;
    let mut fields = Vec::with_capacity(r.headers.len());
    for h in r.headers.iter() {
        let name = h.name.as_bytes();
        // A 101 keeps its Upgrade (the protocol switched to) for the client.
        let kept_upgrade = switched && name.eq_ignore_ascii_case(b"upgrade");
        if !kept_upgrade
            && (is_hop_by_hop(name)
                || (has_te && name.eq_ignore_ascii_case(b"content-length"))
                || (names_listed && listed_in_connection(r.headers, name)))
        {
            continue;
        }
        let (ns, vs) = (at(name), at(h.value));
        fields.push([ns, ns + name.len() as u32, vs, vs + h.value.len() as u32]);
    }
    let reason = r.reason.map_or((0, 0), |t| {
        let s = at(t.as_bytes());
        (s, s + t.len() as u32)
    });
    let head = Head {
        raw: Bytes::new(),
        status,
        version,
        has_date,
        reason,
        fields,
    };
    Ok(Some(Parsed::Head(head, n, framing, reusable)))
}

/// Whether a Connection header among `headers` names `name` (RFC 9110 §7.6.1).
fn listed_in_connection(headers: &[httparse::Header<'_>], name: &[u8]) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .flat_map(|h| connection_tokens(h.value))
        .any(|t| matches!(t, ConnectionToken::Name(n) if n.eq_ignore_ascii_case(name)))
}

/// An answer's body, read from the backend as the client takes it.
#[derive(Debug)]
pub struct UpstreamBody {
    conn: Option<Upstream>,
    framing: Framing,
    keep_alive: bool,
    done: bool,
    /// A failure found after some of the body was handed on; reported on the
    /// next poll, so that what came before it reaches the client first.
    failed: Option<io::Error>,
}

impl UpstreamBody {
    /// The connection, if the body was read exactly to its end and it may be
    /// used again.
    pub fn take_reusable(&mut self) -> Option<Upstream> {
        if !(self.done && self.keep_alive) {
            return None;
        }
        let mut conn = self.conn.take().filter(|c| c.buf.is_empty())?;
        // A large body's read buffer is not kept while the connection idles.
        if conn.buf.capacity() > 16 * 1024 {
            conn.buf = BytesMut::new();
        }
        Some(conn)
    }

    /// The next piece of the body: Ok(Some(data)), Ok(None) at its end.
    pub fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Bytes>>> {
        if let Some(e) = self.failed.take() {
            return Poll::Ready(Err(e));
        }
        loop {
            if self.done {
                return Poll::Ready(Ok(None));
            }
            let Some(conn) = self.conn.as_mut() else {
                return Poll::Ready(Ok(None));
            };
            match decode(&mut self.framing, &mut conn.buf) {
                Err(e) => return self.fail(io::Error::new(io::ErrorKind::InvalidData, e), cx),
                Ok(Step::Data(d, end)) => {
                    self.done = end;
                    return Poll::Ready(Ok(Some(d)));
                }
                Ok(Step::End) => {
                    self.done = true;
                    return Poll::Ready(Ok(None));
                }
                Ok(Step::NeedMore) => {}
            }
            let want = match self.framing {
                Framing::Length(n) => (n.min(64 * 1024) as usize).max(4096),
                _ => 16 * 1024,
            };
            let n = match ready!(poll_read_more(&mut conn.stream, &mut conn.buf, want, cx)) {
                Ok(n) => n,
                Err(e) => return self.fail(e, cx),
            };
            if n == 0 {
                if self.framing == Framing::Close {
                    self.done = true;
                    self.keep_alive = false;
                    return Poll::Ready(Ok(None));
                }
                let e = io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "backend closed the connection inside the body",
                );
                return self.fail(e, cx);
            }
        }
    }

    /// Drops the connection and reports `e` on the next poll: hyper writes out
    /// what it holds of the answer when a body is pending, and aborts the
    /// client's connection when it errors.
    fn fail(&mut self, e: io::Error, cx: &mut Context<'_>) -> Poll<io::Result<Option<Bytes>>> {
        self.conn = None;
        self.failed = Some(e);
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    pub fn is_end_stream(&self) -> bool {
        self.done
    }

    /// Body bytes that arrived with the head, without waiting for more. A
    /// framing error found here is reported by the next [`Self::poll_data`].
    pub fn take_buffered(&mut self) -> Option<Bytes> {
        if self.done || self.failed.is_some() {
            return None;
        }
        let conn = self.conn.as_mut()?;
        match decode(&mut self.framing, &mut conn.buf) {
            Ok(Step::Data(d, end)) => {
                self.done = end;
                Some(d)
            }
            Ok(Step::End) => {
                self.done = true;
                None
            }
            Ok(Step::NeedMore) => None,
            Err(e) => {
                self.conn = None;
                self.failed = Some(io::Error::new(io::ErrorKind::InvalidData, e));
                None
            }
        }
    }

    /// After a 101 to an upgrade request: the backend connection and the bytes
    /// of the new protocol that came with the head.
    pub fn into_tunnel(&mut self) -> Option<(TcpStream, BytesMut)> {
        if self.framing != Framing::Tunnel {
            return None;
        }
        let conn = self.conn.take()?;
        Some((conn.stream, conn.buf))
    }

    /// The exact length when Content-Length (or the lack of a body) gives it.
    pub fn exact_len(&self) -> Option<u64> {
        match self.framing {
            Framing::Length(n) => Some(n),
            _ => None,
        }
    }
}

fn noop_waker() -> Waker {
    const VTABLE: RawWakerVTable = RawWakerVTable::new(|_| RAW, |_| {}, |_| {}, |_| {});
    const RAW: RawWaker = RawWaker::new(std::ptr::null(), &VTABLE);
    // SAFETY: every function of the vtable ignores the (null) data pointer.
    unsafe { Waker::from_raw(RAW) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str, head_request: bool) -> (Response<()>, usize, Framing, bool) {
        match parse_response(text.as_bytes(), head_request, false) {
            Ok(Some(Parsed::Head(mut h, n, f, k))) => {
                h.raw = Bytes::copy_from_slice(&text.as_bytes()[..n]);
                (h.to_response(), n, f, k)
            }
            other => panic!("{text:?}: {other:?}"),
        }
    }

    fn malformed(text: &str) -> String {
        match parse_response(text.as_bytes(), false, false) {
            Err(SendError::Malformed(m)) => m,
            other => panic!("{text:?} accepted: {other:?}"),
        }
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let (r, n, f, keep) = head(
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: y\r\n\r\nhello",
            false,
        );
        assert_eq!(
            (r.status(), n, f, keep),
            (StatusCode::OK, 44, Framing::Length(5), true)
        );
        assert_eq!(r.headers()["x"], "y");
        let (_, _, f, keep) = head(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            false,
        );
        assert_eq!((f, keep), (Framing::Chunked(Chunk::Size), true));
        // Both: chunked wins, Content-Length goes, the connection is not reused.
        let (r, _, f, keep) = head(
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
        );
        assert_eq!((f, keep), (Framing::Chunked(Chunk::Size), false));
        assert!(!r.headers().contains_key(header::CONTENT_LENGTH));
        let (_, _, f, keep) = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false);
        assert_eq!((f, keep), (Framing::Close, false));
        let (_, _, f, keep) = head("HTTP/1.1 200 OK\r\nServer: x\r\n\r\n", false);
        assert_eq!((f, keep), (Framing::Close, false));
        // No body whatever the headers say: HEAD, 204, 304.
        let (_, _, f, _) = head("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", true);
        assert_eq!(f, Framing::Length(0));
        let (_, _, f, keep) = head("HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n", false);
        assert_eq!((f, keep), (Framing::Length(0), true));
        let (_, _, f, _) = head("HTTP/1.1 204 No Content\r\n\r\n", false);
        assert_eq!(f, Framing::Length(0));
        // Keep-alive rules of each version.
        let (_, _, _, keep) = head(
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            false,
        );
        assert!(!keep);
        let (r, _, _, keep) = head("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false);
        assert_eq!((r.version(), keep), (Version::HTTP_10, false));
        let (_, _, _, keep) = head(
            "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n",
            false,
        );
        assert!(keep);
        // Informational answers are skipped; a protocol switch was never asked for.
        let hints = "HTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n";
        let n = match parse_response(format!("{hints}HTTP/1.1 200").as_bytes(), false, false) {
            Ok(Some(Parsed::Informational(n))) => n,
            other => panic!("{other:?}"),
        };
        assert_eq!(n, hints.len());
        assert!(malformed("HTTP/1.1 101 Switching Protocols\r\n\r\n").contains("switch"));
        assert!(matches!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Le", false, false),
            Ok(None)
        ));
    }

    #[test]
    fn answer_heads_lose_hop_by_hop_headers() {
        let text = "HTTP/1.1 299 Fine Here\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nX-End: 2\r\nContent-Length: 0\r\n\r\n";
        let Ok(Some(Parsed::Head(mut h, n, _, keep))) =
            parse_response(text.as_bytes(), false, false)
        else {
            panic!("not a head")
        };
        h.raw = Bytes::copy_from_slice(&text.as_bytes()[..n]);
        assert!(keep && !h.has_date);
        assert_eq!(h.reason(), b"Fine Here");
        let fields: Vec<_> = h.fields().collect();
        assert_eq!(
            fields,
            [(&b"X-End"[..], &b"2"[..]), (b"Content-Length", b"0")]
        );
    }

    #[test]
    fn malformed_heads_are_refused() {
        assert!(
            malformed("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
                .contains("conflicting")
        );
        assert!(malformed("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n").contains("invalid"));
        assert!(malformed("HTTP/1.1 200 OK\r\nContent-Length: 1 2\r\n\r\n").contains("invalid"));
        assert!(malformed("HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n").contains("invalid"));
        malformed("HTTP/9.9 200 OK\r\n\r\n");
        malformed("garbage\r\n\r\n");
        malformed("HTTP/1.1 2000 OK\r\n\r\n");
        // Same Content-Length twice is one length.
        let (_, _, f, _) = head(
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n",
            false,
        );
        assert_eq!(f, Framing::Length(2));
    }

    #[test]
    fn request_heads() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("example"));
        h.append("x-a", HeaderValue::from_static("1"));
        h.append("x-a", HeaderValue::from_static("2"));
        let out = encode_request(&Method::GET, "/p?q=1", &h);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET /p?q=1 HTTP/1.1\r\nhost: example\r\nx-a: 1\r\nx-a: 2\r\n\r\n"
        );
        let out = encode_request(&Method::POST, "/", &HeaderMap::new());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST / HTTP/1.1\r\ncontent-length: 0\r\n\r\n"
        );
    }
}
