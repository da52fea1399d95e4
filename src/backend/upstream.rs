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
use http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, Interest, ReadBuf};

use crate::backend::stream::Stream;

use crate::error::{Error, Kind, Phase, Retry, Side};
use crate::http1::body::{decode, Framing, Step};
pub use crate::http1::response::Head;
use crate::http1::response::{parse_response, Parsed};

/// Largest response head accepted from a backend.
const MAX_HEAD: usize = 64 * 1024;

/// One keep-alive connection to a backend.
#[derive(Debug)]
pub struct Upstream {
    stream: Stream,
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

impl SendError {
    /// As the proxy reports it, for backend `backend` with server timeout
    /// `server`. [`SendError::Client`] is the client's: its caller answers
    /// it from the I/O error itself.
    pub fn error(&self, backend: &str, server: std::time::Duration) -> Error {
        let (side, phase, kind) = match self {
            SendError::NoResponse(_) => (Side::Backend, Phase::Headers, Kind::Closed),
            SendError::Malformed(_) => (Side::Backend, Phase::Headers, Kind::Malformed),
            SendError::Client(_) => (Side::Client, Phase::Body, Kind::Closed),
            SendError::ClientTimeout => (Side::Client, Phase::Body, Kind::Timeout),
            SendError::Timeout => (Side::Backend, Phase::Headers, Kind::Timeout),
        };
        let (status, reason) = match self {
            SendError::Timeout => (
                StatusCode::GATEWAY_TIMEOUT,
                format!("backend {backend} did not answer within {server:?}"),
            ),
            SendError::ClientTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                "request body not received in time".to_string(),
            ),
            SendError::Client(_) => (StatusCode::BAD_REQUEST, self.to_string()),
            _ => (
                StatusCode::BAD_GATEWAY,
                format!("backend {backend} failed: {self}"),
            ),
        };
        // A connection that closed before any answer byte may have taken the
        // request in, or not (a pooled one the backend had closed).
        let retry = match self {
            SendError::NoResponse(_) => Retry::IfIdempotent,
            _ => Retry::Never,
        };
        Error::new(side, phase, kind, status, reason).with_retry(retry)
    }
}

impl Upstream {
    pub fn new(stream: impl Into<Stream>) -> Self {
        Upstream {
            stream: stream.into(),
            buf: BytesMut::new(),
        }
    }

    /// The server name its TLS session was made for ([`Stream::sni`]).
    pub fn sni(&self) -> Option<&std::sync::Arc<str>> {
        self.stream.sni()
    }

    /// Whether an idle pooled connection may be used: the backend has not
    /// closed it (as far as the runtime has seen) and sent nothing unasked.
    pub fn looks_usable(&self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        let ready = self.stream.tcp().ready(Interest::READABLE);
        let mut ready = std::pin::pin!(ready);
        match ready.as_mut().poll(&mut cx) {
            Poll::Ready(Ok(r)) => !r.is_read_closed() && !r.is_error(),
            Poll::Ready(Err(_)) => false,
            Poll::Pending => true,
        }
    }

    /// Sends a request's head (request line, headers, blank line; the caller
    /// prepared it) with `body` (pieces already framed for the backend; none for a
    /// bodyless request), in one write, and reads the answer's head.
    /// With `upgrade`, the request asked for a protocol switch: a 101 answer
    /// makes the connection a tunnel ([`UpstreamBody::into_tunnel`]).
    pub async fn send(
        mut self,
        request_head: &[u8],
        body: &[Bytes],
        head_request: bool,
        upgrade: bool,
    ) -> Result<(Head, UpstreamBody), SendError> {
        if let Err(error) = self.write_head(request_head, body).await {
            return Err(SendError::NoResponse(error));
        }
        // A TLS session may hold the last record until flushed.
        if let Err(error) = self.stream.flush().await {
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
        first: &[Bytes],
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
                            let _ = Pin::new(&mut self.stream).poll_flush(cx);
                            break;
                        }
                        match source.poll_piece(cx) {
                            Poll::Ready(Ok(Some(piece))) => out = piece,
                            Poll::Ready(Ok(None)) => body_done = true,
                            Poll::Ready(Err(e)) => return Poll::Ready(Err(SendError::Client(e))),
                            Poll::Pending => {
                                // What a TLS session holds goes out while the client is awaited.
                                let _ = Pin::new(&mut self.stream).poll_flush(cx);
                                break;
                            }
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

    /// Writes the head and the body pieces that go with it, in one `writev`
    /// when the socket takes them.
    async fn write_head(&mut self, head: &[u8], body: &[Bytes]) -> io::Result<()> {
        if body.is_empty() {
            return self.stream.write_all(head).await;
        }
        let mut parts: Vec<io::IoSlice<'_>> = Vec::with_capacity(body.len() + 1);
        parts.push(io::IoSlice::new(head));
        parts.extend(body.iter().map(|b| io::IoSlice::new(b)));
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
            if self.buf.is_empty() {
                // Nothing of the answer yet (a request was just sent).
                return Ok(None);
            }
            match parse_response(&self.buf, head_request, upgrade).map_err(SendError::Malformed)? {
                Some(Parsed::Informational(n)) => self.buf.advance(n),
                Some(Parsed::Head(mut head, n, framing, keep_alive)) => {
                    head.attach(self.buf.split_to(n).freeze());
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
            h2: None,
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

    /// The rest of the body as a source of its own, if it can outlive the
    /// request's borrow (an HTTP/2 client's stream): an HTTP/2 backend that
    /// answers before the body is whole keeps receiving it, as a streaming
    /// call (gRPC) needs. None: the body stops at the answer.
    fn detach(&mut self) -> Option<Box<dyn BodySource + Send>> {
        None
    }
}

pub(crate) fn poll_read_more<S: AsyncRead + Unpin>(
    stream: &mut S,
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

/// An answer's body, read from the backend as the client takes it.
#[derive(Debug)]
pub struct UpstreamBody {
    conn: Option<Upstream>,
    /// An answer from an HTTP/2 backend (`conn` is then None).
    h2: Option<Box<crate::backend::h2_body::Incoming>>,
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
        if let Some(h2) = self.h2.as_mut() {
            if self.done {
                return Poll::Ready(Ok(None));
            }
            let piece = ready!(h2.poll_data(cx));
            self.done = matches!(piece, Ok(None));
            return Poll::Ready(piece);
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
        if let Some(h2) = self.h2.as_mut() {
            // An HTTP/2 answer's first DATA usually came in the head's read.
            return match h2.take_ready() {
                Ok((data, ended)) => {
                    self.done = ended;
                    data
                }
                Err(e) => {
                    self.failed = Some(e);
                    None
                }
            };
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
    pub fn into_tunnel(&mut self) -> Option<(Stream, BytesMut)> {
        if self.framing != Framing::Tunnel {
            return None;
        }
        let conn = self.conn.take()?;
        Some((conn.stream, conn.buf))
    }

    /// An HTTP/2 backend's answer, framed by `framing` (its Content-Length,
    /// or [`Framing::Close`] when it has none).
    pub(crate) fn from_h2(incoming: crate::backend::h2_body::Incoming, framing: Framing) -> Self {
        UpstreamBody {
            conn: None,
            // A HEADERS frame that ended the stream (gRPC's trailers-only
            // answer) has no body to wait for.
            done: matches!(framing, Framing::Length(0)) || incoming.is_end_stream(),
            framing,
            keep_alive: false,
            failed: None,
            h2: Some(Box::new(incoming)),
        }
    }

    /// The trailer fields that ended the body (an HTTP/2 backend's, e.g.
    /// gRPC's `grpc-status`), once it has ended.
    pub fn take_trailers(&mut self) -> Option<http::HeaderMap> {
        self.h2.as_mut().and_then(|h| h.trailers.take())
    }

    /// Whether the answer came from an HTTP/2 backend (it may end in trailers).
    pub fn is_h2(&self) -> bool {
        self.h2.is_some()
    }

    /// The bytes of the body still to come, when they may be moved by the
    /// caller straight off the socket ([`Self::poll_move`]): a cleartext
    /// HTTP/1 answer framed by Content-Length with nothing of it buffered.
    pub(crate) fn movable(&self) -> Option<u64> {
        if self.done || self.failed.is_some() || self.h2.is_some() {
            return None;
        }
        let conn = self.conn.as_ref()?;
        match (&self.framing, &conn.stream) {
            (Framing::Length(n), Stream::Plain(_)) if conn.buf.is_empty() => Some(*n),
            _ => None,
        }
    }

    /// Moves body bytes off the backend's socket with `op` (given the socket
    /// and the most it may take, it returns how many it took, 0 at the
    /// socket's end), once the socket is readable; the bytes count against
    /// the body's length. A close before the end is an error, and the
    /// connection is not used again. Only while [`Self::movable`] says so.
    pub(crate) fn poll_move(
        &mut self,
        cx: &mut Context<'_>,
        mut op: impl FnMut(std::os::fd::RawFd, usize) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        use std::os::fd::AsRawFd;
        let (Some(conn), Framing::Length(left)) = (self.conn.as_mut(), self.framing) else {
            return Poll::Ready(Err(io::ErrorKind::InvalidInput.into()));
        };
        let Stream::Plain(tcp) = &conn.stream else {
            return Poll::Ready(Err(io::ErrorKind::InvalidInput.into()));
        };
        let max = usize::try_from(left).unwrap_or(usize::MAX);
        let moved = loop {
            if let Err(e) = ready!(tcp.poll_read_ready(cx)) {
                break Err(e);
            }
            match tcp.try_io(Interest::READABLE, || op(tcp.as_raw_fd(), max)) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => break other,
            }
        };
        match moved {
            Ok(0) => {
                self.conn = None;
                self.keep_alive = false;
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "backend closed the connection inside the body",
                )))
            }
            Ok(n) => {
                let left = left - n as u64;
                self.framing = Framing::Length(left);
                self.done = left == 0;
                Poll::Ready(Ok(n))
            }
            Err(e) => {
                self.conn = None;
                self.keep_alive = false;
                Poll::Ready(Err(e))
            }
        }
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
    use std::collections::VecDeque;
    use std::time::Duration;

    use super::*;
    use crate::error::{Phase, Side};
    use crate::net::script::{pair, Step};

    const GET: &[u8] = b"GET / HTTP/1.1\r\nhost: a\r\n\r\n";

    async fn body_of(body: &mut UpstreamBody) -> io::Result<Vec<u8>> {
        let mut all = Vec::new();
        while let Some(piece) = std::future::poll_fn(|cx| body.poll_data(cx)).await? {
            all.extend_from_slice(&piece);
        }
        Ok(all)
    }

    #[tokio::test]
    async fn answers_framed_by_length_or_chunks_keep_the_connection() {
        // RFC 9112 §6.3: a body ends at its Content-Length, or at the last
        // chunk; then (§9.3) the connection carries the next request.
        let (stream, peer) = pair(vec![
            Step::Expect(GET),
            Step::Send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel"),
            Step::Pause(Duration::from_millis(20)),
            Step::Send(b"lo"),
            Step::Expect(GET),
            Step::Send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"),
            Step::Pause(Duration::from_millis(20)),
            Step::Send(b"3\r\ndef\r\n0\r\n\r\n"),
            Step::Expect(GET),
            Step::Send(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx"),
        ])
        .await;
        let conn = Upstream::new(stream);
        let (head, mut body) = conn.send(GET, &[], false, false).await.unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(body_of(&mut body).await.unwrap(), b"hello");
        let conn = body
            .take_reusable()
            .expect("a body read to its end frees the connection");

        let (_, mut body) = conn.send(GET, &[], false, false).await.unwrap();
        assert_eq!(body_of(&mut body).await.unwrap(), b"abcdef");
        let conn = body.take_reusable().expect("so does a last chunk");

        let (_, mut body) = conn.send(GET, &[], false, false).await.unwrap();
        assert_eq!(body_of(&mut body).await.unwrap(), b"x");
        assert!(
            body.take_reusable().is_none(),
            "RFC 9112 §9.6: close means close"
        );
        peer.done().await.unwrap();
    }

    #[tokio::test]
    async fn a_body_cut_short_is_an_error_not_its_end() {
        // RFC 9112 §8: a message whose connection closes before its length
        // is incomplete; the client must not take it for whole.
        let (stream, peer) = pair(vec![
            Step::Expect(GET),
            Step::Send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabcd"),
        ])
        .await;
        let (_, mut body) = Upstream::new(stream)
            .send(GET, &[], false, false)
            .await
            .unwrap();
        peer.done().await.unwrap();
        let mut got = Vec::new();
        let end = loop {
            match std::future::poll_fn(|cx| body.poll_data(cx)).await {
                Ok(Some(piece)) => got.extend_from_slice(&piece),
                other => break other,
            }
        };
        assert_eq!(got, b"abcd", "what came is passed on first");
        assert_eq!(end.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        assert!(body.take_reusable().is_none());
    }

    #[tokio::test]
    async fn no_answer_may_be_retried_a_broken_one_may_not() {
        // Closed before any answer byte: the request may not have reached
        // the backend, so an idempotent one may go again (RFC 9110 §9.2.2).
        let (stream, peer) = pair(vec![Step::Expect(GET)]).await;
        let e = Upstream::new(stream)
            .send(GET, &[], false, false)
            .await
            .unwrap_err();
        peer.done().await.unwrap();
        assert!(matches!(e, SendError::NoResponse(_)), "{e}");
        let error = e.error("web1", Duration::from_secs(1));
        assert_eq!(error.retry, Retry::IfIdempotent);
        assert_eq!((error.side, error.phase), (Side::Backend, Phase::Headers));
        assert_eq!(error.termination().as_str(), "SH");
        assert_eq!(error.status, StatusCode::BAD_GATEWAY);

        // RFC 9112 §4: a status line that is not one is a 502, never retried.
        let (stream, peer) = pair(vec![
            Step::Expect(GET),
            Step::Send(b"HTTP/1.1 2x0 OK\r\n\r\n"),
        ])
        .await;
        let e = Upstream::new(stream)
            .send(GET, &[], false, false)
            .await
            .unwrap_err();
        peer.done().await.unwrap();
        assert!(matches!(e, SendError::Malformed(_)), "{e}");
        let error = e.error("web1", Duration::from_secs(1));
        assert_eq!(error.retry, Retry::Never);
        assert!(error
            .reason
            .starts_with("backend web1 failed: invalid answer"));
    }

    /// A request body that arrives in `pieces`, then (with `stall`) never ends.
    struct Pieces {
        pieces: VecDeque<&'static [u8]>,
        stall: bool,
    }

    impl BodySource for Pieces {
        fn poll_piece(&mut self, _: &mut Context<'_>) -> Poll<io::Result<Option<Bytes>>> {
            match self.pieces.pop_front() {
                Some(p) => Poll::Ready(Ok(Some(Bytes::from_static(p)))),
                None if self.stall => Poll::Pending,
                None => Poll::Ready(Ok(None)),
            }
        }
    }

    const POST: &[u8] = b"POST /up HTTP/1.1\r\nhost: a\r\ncontent-length: 6\r\n\r\n";

    #[tokio::test]
    async fn a_streamed_body_goes_out_whole_or_stops_at_an_early_answer() {
        let (stream, peer) = pair(vec![
            Step::Expect(POST),
            Step::Expect(b"abcdef"),
            Step::Send(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"),
        ])
        .await;
        let mut source = Pieces {
            pieces: VecDeque::from([&b"abc"[..], &b"def"[..]]),
            stall: false,
        };
        let idle = Duration::from_secs(5);
        let (head, _, whole) = Upstream::new(stream)
            .send_streaming(POST, &[], &mut source, false, idle)
            .await
            .unwrap();
        peer.done().await.unwrap();
        assert_eq!((head.status.as_u16(), whole), (201, true));

        // RFC 9110 §15.5.14: a backend may refuse a body before it is whole;
        // the answer comes back at once, and neither connection is reused.
        let (stream, peer) = pair(vec![
            Step::Expect(POST),
            Step::Expect(b"abc"),
            Step::Send(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n\r\n"),
        ])
        .await;
        let mut source = Pieces {
            pieces: VecDeque::from([&b"abc"[..]]),
            stall: true,
        };
        let (head, mut body, whole) = Upstream::new(stream)
            .send_streaming(POST, &[], &mut source, false, idle)
            .await
            .unwrap();
        peer.done().await.unwrap();
        assert_eq!((head.status.as_u16(), whole), (413, false));
        assert!(body.take_reusable().is_none());
    }

    #[tokio::test]
    async fn a_client_that_stops_sending_its_body_is_the_clients_timeout() {
        // The backend waits for the rest until the connection is given up.
        let (stream, peer) = pair(vec![Step::Expect(POST), Step::Expect(b"abc"), Step::Eof]).await;
        let mut source = Pieces {
            pieces: VecDeque::from([&b"abc"[..]]),
            stall: true,
        };
        let e = Upstream::new(stream)
            .send_streaming(POST, &[], &mut source, false, Duration::from_millis(100))
            .await
            .unwrap_err();
        peer.done().await.unwrap();
        assert!(matches!(e, SendError::ClientTimeout), "{e}");
        let error = e.error("web1", Duration::from_secs(1));
        assert_eq!(error.termination().as_str(), "cD");
        assert_eq!(error.status, StatusCode::REQUEST_TIMEOUT);
    }
}
