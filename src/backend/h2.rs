//! HTTP/2 to backends (`protocol = "h2"` over TLS, `"h2c"` with prior
//! knowledge): a few multiplexed sessions per backend, each carrying up to
//! `max-streams` requests at once, on the h2 crate's client.
//!
//! A request arrives here in the one request form (a prepared HTTP/1 head and
//! its body pieces, framed for an HTTP/1 backend); it leaves as HTTP/2
//! pseudo-headers and DATA frames (RFC 9113 §8.3), with the connection-specific
//! fields dropped (§8.2.2) and a chunked body unframed. The answer comes back
//! as a [`Head`] like an HTTP/1 backend's, its body and trailers (gRPC's
//! `grpc-status`) read as the client takes them. A body still arriving when
//! the answer starts keeps flowing to the backend if the client's side can
//! hand it over ([`BodySource::detach`]): a streaming call is full duplex.
//!
//! Not for: pooling HTTP/1 connections (`crate::backend::Pool`) or the client
//! side's HTTP/2 (the `frontend` layer's `h2.rs`).

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use h2::client::SendRequest;
use h2::{RecvStream, SendStream};
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::backend::h2_body::{h2_io, Incoming, Slot};
use crate::backend::stream::Stream;
use crate::backend::upstream::{BodySource, Head, SendError, UpstreamBody};
use crate::http1::body::{decode, Chunk, Framing, Step};
use crate::http1::response::{parse_response, Parsed};

/// Most header fields read from a prepared request head.
const MAX_FIELDS: usize = 256;

/// One HTTP/2 connection to a backend.
#[derive(Debug)]
pub struct Session {
    send: SendRequest<Bytes>,
    open: Arc<AtomicU32>,
    /// When its last stream ended (ms since start, [`crate::backend::now_ms`]).
    idle_since: Arc<AtomicU64>,
    alive: Arc<AtomicBool>,
    /// The server name its TLS session was made for.
    pub sni: Option<Arc<str>>,
}

impl Session {
    /// Completes the HTTP/2 handshake on `stream` and starts the task that
    /// drives the connection.
    pub async fn handshake(stream: Stream, sni: Option<Arc<str>>) -> Result<Session, String> {
        let (send, conn) = h2::client::Builder::new()
            // A backend's answer may be large; the client side reads it at its pace.
            .initial_window_size(1 << 20)
            .initial_connection_window_size(4 << 20)
            .handshake::<_, Bytes>(stream)
            .await
            .map_err(|e| format!("HTTP/2 handshake failed: {e}"))?;
        let alive = Arc::new(AtomicBool::new(true));
        let gone = alive.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "HTTP/2 connection to a backend ended");
            }
            gone.store(false, Ordering::Release);
        });
        Ok(Session {
            send,
            open: Arc::default(),
            idle_since: Arc::new(AtomicU64::new(crate::backend::now_ms())),
            alive,
            sni,
        })
    }

    /// Whether it may carry another request for `sni`, below `max_streams`.
    pub fn usable(&self, sni: Option<&str>, max_streams: u32) -> bool {
        self.alive.load(Ordering::Acquire)
            && self.sni.as_deref() == sni
            && self.open.load(Ordering::Relaxed) < max_streams
    }

    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    /// How long it has had no stream open (zero while it has one).
    pub fn idle_for(&self) -> Duration {
        if self.open.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        let since = self.idle_since.load(Ordering::Relaxed);
        Duration::from_millis(crate::backend::now_ms().saturating_sub(since))
    }

    /// Streams open on it now.
    pub fn open_streams(&self) -> u32 {
        self.open.load(Ordering::Relaxed)
    }

    /// A stream slot on it, given back when the answer is done with.
    pub fn lease(&self) -> Lease {
        self.open.fetch_add(1, Ordering::Relaxed);
        Lease {
            send: self.send.clone(),
            slot: Slot {
                open: self.open.clone(),
                idle_since: self.idle_since.clone(),
            },
        }
    }
}

/// A request's claim on one session.
#[derive(Debug)]
pub struct Lease {
    send: SendRequest<Bytes>,
    slot: Slot,
}

/// A request's body as handed to [`send`].
pub enum Payload<'a> {
    Whole(&'a [Bytes]),
    Streamed {
        first: &'a [Bytes],
        rest: &'a mut (dyn BodySource + Send),
    },
}

/// A body framed for HTTP/1 (chunked, when the head says so) turned back
/// into its data.
struct Unframe {
    chunked: Option<(Framing, BytesMut)>,
}

impl Unframe {
    fn new(chunked: bool) -> Self {
        Unframe {
            chunked: chunked.then(|| (Framing::Chunked(Chunk::Size), BytesMut::new())),
        }
    }

    /// The data in `piece`, appended to `out`.
    fn push(&mut self, piece: Bytes, out: &mut BytesMut) -> io::Result<()> {
        let Some((framing, buf)) = self.chunked.as_mut() else {
            out.extend_from_slice(&piece);
            return Ok(());
        };
        buf.extend_from_slice(&piece);
        loop {
            match decode(framing, buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))? {
                Step::Data(d, _) => out.extend_from_slice(&d),
                Step::End | Step::NeedMore => return Ok(()),
            }
        }
    }
}

/// Moves what `pending` holds into the stream as flow control allows.
fn poll_flush_data(
    tx: &mut SendStream<Bytes>,
    pending: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<Result<(), h2::Error>> {
    while !pending.is_empty() {
        tx.reserve_capacity(pending.len());
        match ready!(tx.poll_capacity(cx)) {
            Some(Ok(0)) => continue,
            Some(Ok(n)) => {
                let n = n.min(pending.len());
                tx.send_data(pending.split_to(n).freeze(), false)?;
            }
            Some(Err(e)) => return Poll::Ready(Err(e)),
            None => return Poll::Ready(Err(h2::Error::from(h2::Reason::STREAM_CLOSED))),
        }
    }
    Poll::Ready(Ok(()))
}

/// The request's head as HTTP/2 wants it: `:authority` from Host (else
/// `authority`), connection-specific fields dropped (RFC 9113 §8.2.2).
/// Also whether its body is chunked.
fn request_of(
    head: &[u8],
    scheme: &str,
    authority: &str,
) -> Result<(http::Request<()>, bool), String> {
    let mut fields = vec![httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut r = httparse::Request::new(&mut fields);
    match r.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err("request head not parseable".into()),
    }
    let method = http::Method::from_bytes(r.method.unwrap_or("GET").as_bytes())
        .map_err(|e| e.to_string())?;
    let path = r.path.unwrap_or("/");
    let mut host = None;
    let mut chunked = false;
    let mut headers = HeaderMap::with_capacity(r.headers.len());
    for f in r.headers.iter() {
        let name = f.name.to_ascii_lowercase();
        match name.as_str() {
            "host" => {
                host = std::str::from_utf8(f.value).ok();
                continue;
            }
            "transfer-encoding" => {
                chunked |= f.value.eq_ignore_ascii_case(b"chunked")
                    || f.value.to_ascii_lowercase().ends_with(b"chunked");
                continue;
            }
            "connection" | "keep-alive" | "proxy-connection" | "upgrade" | "te" => continue,
            _ => {}
        }
        let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(f.value),
        ) else {
            continue;
        };
        headers.append(n, v);
    }
    let uri = if path.starts_with('/') {
        format!("{scheme}://{}{path}", host.unwrap_or(authority))
    } else {
        path.to_string()
    };
    let mut req = http::Request::builder()
        .method(method)
        .uri(uri)
        .version(http::Version::HTTP_2)
        .body(())
        .map_err(|e| e.to_string())?;
    // floatlb passes trailers on (gRPC servers refuse calls without this).
    headers.insert(http::header::TE, HeaderValue::from_static("trailers"));
    *req.headers_mut() = headers;
    Ok((req, chunked))
}

/// The answer's head in the form an HTTP/1 backend's takes.
fn head_of(resp: &http::response::Parts, head_request: bool) -> Result<(Head, Framing), String> {
    let mut raw = Vec::with_capacity(64 + resp.headers.len() * 32);
    raw.extend_from_slice(b"HTTP/1.1 ");
    raw.extend_from_slice(resp.status.as_str().as_bytes());
    raw.extend_from_slice(b" \r\n");
    for (name, value) in &resp.headers {
        raw.extend_from_slice(name.as_str().as_bytes());
        raw.extend_from_slice(b": ");
        raw.extend_from_slice(value.as_bytes());
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"\r\n");
    match parse_response(&raw, head_request, false)? {
        Some(Parsed::Head(mut head, n, framing, _)) => {
            let mut raw = Bytes::from(raw);
            head.attach(raw.split_to(n));
            Ok((head, framing))
        }
        _ => Err("backend sent an informational answer as its final one".into()),
    }
}

/// Sends one request on a leased stream and waits for the answer's head,
/// sending the body meanwhile. No progress either way for `idle` ends it
/// ([`SendError::ClientTimeout`] while the client's bytes were awaited).
/// The flag says whether the request goes out whole (it may still be
/// flowing, handed over to a task of its own).
pub async fn send(
    mut lease: Lease,
    head: &[u8],
    scheme: &str,
    authority: &str,
    payload: Payload<'_>,
    head_request: bool,
    idle: Duration,
) -> Result<(Head, UpstreamBody, bool), SendError> {
    let (req, chunked) = request_of(head, scheme, authority).map_err(SendError::Malformed)?;
    let no_body = match &payload {
        Payload::Whole(b) => b.iter().all(|p| p.is_empty()),
        Payload::Streamed { .. } => false,
    };
    let no_response = |e: h2::Error| SendError::NoResponse(h2_io(e));
    std::future::poll_fn(|cx| lease.send.poll_ready(cx))
        .await
        .map_err(no_response)?;
    let (mut answer, mut tx) = lease.send.send_request(req, no_body).map_err(no_response)?;
    let mut unframe = Unframe::new(chunked);
    let mut pending = BytesMut::new();
    let (first, mut rest, whole_pieces): (&[Bytes], Option<&mut (dyn BodySource + Send)>, _) =
        match payload {
            Payload::Whole(b) => (&[][..], None, b),
            Payload::Streamed { first, rest } => (first, Some(rest), &[][..]),
        };
    for piece in first.iter().chain(whole_pieces) {
        unframe
            .push(piece.clone(), &mut pending)
            .map_err(SendError::Client)?;
    }
    let mut body_done = no_body || rest.is_none();
    let mut ended = no_body;
    let mut send_failed = false;
    let response = loop {
        let event = tokio::time::timeout(
            idle,
            std::future::poll_fn(|cx| {
                if let Poll::Ready(r) = std::pin::Pin::new(&mut answer).poll(cx) {
                    return Poll::Ready(Some(Event::Answer(r)));
                }
                let mut moved = false;
                while !ended && !send_failed {
                    match poll_flush_data(&mut tx, &mut pending, cx) {
                        Poll::Ready(Ok(())) => {}
                        // The backend refused or reset the stream: its answer says why.
                        Poll::Ready(Err(_)) => {
                            send_failed = true;
                            break;
                        }
                        Poll::Pending => break,
                    }
                    if body_done {
                        ended = true;
                        send_failed |= tx.send_data(Bytes::new(), true).is_err();
                        moved = true;
                        break;
                    }
                    let Some(src) = rest.as_mut() else { break };
                    match src.poll_piece(cx) {
                        Poll::Ready(Ok(Some(piece))) => {
                            if let Err(e) = unframe.push(piece, &mut pending) {
                                return Poll::Ready(Some(Event::Client(e)));
                            }
                        }
                        Poll::Ready(Ok(None)) => body_done = true,
                        Poll::Ready(Err(e)) => return Poll::Ready(Some(Event::Client(e))),
                        Poll::Pending => break,
                    }
                    moved = true;
                }
                if moved {
                    Poll::Ready(None)
                } else {
                    Poll::Pending
                }
            }),
        )
        .await;
        match event {
            Err(_) => {
                let awaiting_client = !body_done && pending.is_empty();
                return Err(if awaiting_client {
                    SendError::ClientTimeout
                } else {
                    SendError::Timeout
                });
            }
            Ok(None) => {}
            Ok(Some(Event::Client(e))) => {
                // A body broken by the client: the backend's stream is reset.
                tx.send_reset(h2::Reason::CANCEL);
                return Err(SendError::Client(e));
            }
            Ok(Some(Event::Answer(Ok(r)))) => break r,
            // Refused, reset or the connection lost before any answer: the
            // request may not have been processed (RFC 9113 §8.7).
            Ok(Some(Event::Answer(Err(e)))) if e.is_reset() || e.is_go_away() || e.is_io() => {
                return Err(SendError::NoResponse(h2_io(e)))
            }
            Ok(Some(Event::Answer(Err(e)))) => return Err(SendError::Malformed(e.to_string())),
        }
    };
    let (parts, recv) = response.into_parts();
    let (head, framing) = head_of(&parts, head_request).map_err(SendError::Malformed)?;
    // The answer started before the body was all sent: it keeps flowing if it can.
    let mut whole = ended && !send_failed;
    if !ended && !send_failed {
        let owned = match rest {
            Some(src) if !body_done => src.detach(),
            _ => None,
        };
        if body_done || owned.is_some() {
            tokio::spawn(pump(tx, pending, unframe, owned, idle));
            whole = true;
        } else {
            tx.send_reset(h2::Reason::CANCEL);
        }
    }
    let incoming = Incoming::new(recv, lease.slot);
    Ok((head, UpstreamBody::from_h2(incoming, framing), whole))
}

/// What a wait in [`send`] ends with.
enum Event {
    Answer(Result<http::Response<RecvStream>, h2::Error>),
    /// The client broke or left its body.
    Client(io::Error),
}

/// The rest of a request body, sent after the answer started.
async fn pump(
    mut tx: SendStream<Bytes>,
    mut pending: BytesMut,
    mut unframe: Unframe,
    mut rest: Option<Box<dyn BodySource + Send>>,
    idle: Duration,
) {
    loop {
        let step = tokio::time::timeout(
            idle,
            std::future::poll_fn(|cx| {
                ready!(poll_flush_data(&mut tx, &mut pending, cx)).map_err(h2_io)?;
                let Some(src) = rest.as_mut() else {
                    return Poll::Ready(Ok(false));
                };
                match ready!(src.poll_piece(cx)) {
                    Ok(Some(piece)) => {
                        unframe.push(piece, &mut pending)?;
                        Poll::Ready(Ok::<_, io::Error>(true))
                    }
                    Ok(None) => Poll::Ready(Ok(false)),
                    Err(e) => Poll::Ready(Err(e)),
                }
            }),
        )
        .await;
        match step {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => {
                let _ = tx.send_data(Bytes::new(), true);
                return;
            }
            Ok(Err(_)) | Err(_) => {
                tx.send_reset(h2::Reason::CANCEL);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9113 §8.2.2: connection-specific fields are not sent in HTTP/2;
    /// TE is kept only as "trailers" (gRPC sends it). §8.3.1: the Host
    /// becomes `:authority`.
    #[test]
    fn a_prepared_head_becomes_an_http2_request() {
        let head = b"POST /svc/Echo HTTP/1.1\r\nHost: api.example\r\nConnection: keep-alive\r\nTE: trailers\r\nTransfer-Encoding: chunked\r\nContent-Type: application/grpc\r\n\r\n";
        let (req, chunked) = request_of(head, "http", "198.18.0.12:50051").unwrap();
        assert!(chunked);
        assert_eq!(req.uri().to_string(), "http://api.example/svc/Echo");
        assert_eq!(req.method(), http::Method::POST);
        let h = req.headers();
        assert!(h.get("connection").is_none() && h.get("transfer-encoding").is_none());
        assert!(h.get("host").is_none());
        assert_eq!(h.get("te").unwrap(), "trailers");
        assert_eq!(h.get("content-type").unwrap(), "application/grpc");
        // Without a Host, the backend's address is the authority; TE is
        // always "trailers", which floatlb takes.
        let (req, chunked) = request_of(
            b"GET /x HTTP/1.1\r\nTE: gzip\r\n\r\n",
            "https",
            "198.18.0.12:443",
        )
        .unwrap();
        assert!(!chunked);
        assert_eq!(req.uri().to_string(), "https://198.18.0.12:443/x");
        assert_eq!(req.headers().get("te").unwrap(), "trailers");
    }

    /// A chunked body (RFC 9112 §7.1) is sent as its data alone.
    #[test]
    fn a_chunked_body_is_unframed_across_pieces() {
        let mut u = Unframe::new(true);
        let mut out = BytesMut::new();
        for piece in ["5\r\nhel", "lo\r\n3\r\n", "abc\r\n0\r\n\r\n"] {
            u.push(Bytes::from(piece), &mut out).unwrap();
        }
        assert_eq!(&out[..], b"helloabc");
        let mut u = Unframe::new(true);
        assert!(u.push(Bytes::from("zz\r\n"), &mut out).is_err());
        let mut u = Unframe::new(false);
        let mut out = BytesMut::new();
        u.push(Bytes::from("as is"), &mut out).unwrap();
        assert_eq!(&out[..], b"as is");
    }

    #[test]
    fn an_answer_head_reads_like_an_http1_one() {
        let resp = http::Response::builder()
            .status(200)
            .header("content-type", "application/grpc")
            .header("content-length", "12")
            .body(())
            .unwrap();
        let (parts, ()) = resp.into_parts();
        let (head, framing) = head_of(&parts, false).unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(framing, Framing::Length(12));
        assert!(head
            .fields()
            .any(|(n, v)| n == b"content-type" && v == b"application/grpc"));
        let (_, framing) = head_of(&parts, true).unwrap();
        assert_eq!(framing, Framing::Length(0));
    }
}
