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
use crate::http1::fields::{is_hop_by_hop, is_name};
use crate::http1::response::content_length;

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
///
/// The prepared head is copied once into a shared buffer and every value,
/// the authority and the path are views of it; field names go through
/// `HeaderName`'s table of standard names, so a request's conversion
/// allocates only that buffer, the map and any non-standard names.
fn request_of(
    head: &[u8],
    scheme: &str,
    authority: &(dyn std::fmt::Display + Sync),
) -> Result<(http::Request<()>, bool), String> {
    // Not initialised first: the parser writes the fields it finds.
    let mut storage = [std::mem::MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_FIELDS];
    let mut r = httparse::Request::new(&mut []);
    let shared = Bytes::copy_from_slice(head);
    match httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut r,
        &shared,
        &mut storage,
    ) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err("request head not parseable".into()),
    }
    let method = http::Method::from_bytes(r.method.unwrap_or("GET").as_bytes())
        .map_err(|e| e.to_string())?;
    let path = r.path.unwrap_or("/");
    let mut host = None;
    let mut chunked = false;
    // One more for TE.
    let mut headers = HeaderMap::with_capacity(r.headers.len() + 1);
    for f in r.headers.iter() {
        let name = f.name.as_bytes();
        match name.len() {
            4 if is_name(name, b"host") => {
                host = Some(f.value);
                continue;
            }
            17 if is_name(name, b"transfer-encoding") => {
                // Only the last coding decides (RFC 9112 §6.1).
                chunked |= f
                    .value
                    .rsplit(|&b| b == b',')
                    .next()
                    .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
                continue;
            }
            // Connection-specific (RFC 9113 §8.2.2); TE is set below.
            2 | 7 | 10 | 16 if is_connection_specific(name) => continue,
            _ => {}
        }
        let (Ok(n), Ok(v)) = (
            name_of(name),
            HeaderValue::from_maybe_shared(shared.slice_ref(f.value)),
        ) else {
            continue;
        };
        headers.append(n, v);
    }
    let uri = if path.starts_with('/') {
        let authority = match host {
            Some(h) if !h.is_empty() => {
                http::uri::Authority::from_maybe_shared(shared.slice_ref(h))
            }
            _ => http::uri::Authority::try_from(authority.to_string()),
        }
        .map_err(|e| format!("authority: {e}"))?;
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(if scheme == "https" {
            http::uri::Scheme::HTTPS
        } else {
            http::uri::Scheme::HTTP
        });
        parts.authority = Some(authority);
        parts.path_and_query = Some(
            http::uri::PathAndQuery::from_maybe_shared(shared.slice_ref(path.as_bytes()))
                .map_err(|e| format!("path: {e}"))?,
        );
        http::Uri::from_parts(parts).map_err(|e| e.to_string())?
    } else {
        http::Uri::try_from(path).map_err(|e| e.to_string())?
    };
    // floatlb passes trailers on (gRPC servers refuse calls without this).
    headers.insert(http::header::TE, HeaderValue::from_static("trailers"));
    let mut req = http::Request::new(());
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = http::Version::HTTP_2;
    *req.headers_mut() = headers;
    Ok((req, chunked))
}

/// A field name as `HeaderName`: standard ones from `http`'s table, the
/// forwarding fields floatlb adds to every request as static names, others
/// copied.
fn name_of(name: &[u8]) -> Result<HeaderName, http::header::InvalidHeaderName> {
    match name.len() {
        15 if is_name(name, b"x-forwarded-for") => Ok(HeaderName::from_static("x-forwarded-for")),
        17 if is_name(name, b"x-forwarded-proto") => {
            Ok(HeaderName::from_static("x-forwarded-proto"))
        }
        _ => HeaderName::from_bytes(name),
    }
}

/// Connection, Keep-Alive, Proxy-Connection, Upgrade and TE: the fields
/// HTTP/2 has no room for (RFC 9113 §8.2.2). Trailer is not among them.
fn is_connection_specific(name: &[u8]) -> bool {
    is_hop_by_hop(name) && !is_name(name, b"trailer")
}

/// The answer's head in the form an HTTP/1 backend's takes, written straight
/// from the h2 crate's fields (which has refused connection-specific ones,
/// RFC 9113 §8.2.2; any left are dropped here too), and how its body ends:
/// its Content-Length, none for HEAD, 204 and 304, else the stream's end.
fn head_of(resp: &http::response::Parts, head_request: bool) -> Result<(Head, Framing), String> {
    let status = resp.status;
    if status.is_informational() {
        return Err("backend sent an informational answer as its final one".into());
    }
    let mut length = None;
    for v in resp.headers.get_all(http::header::CONTENT_LENGTH) {
        let n = content_length(v.as_bytes()).ok_or("invalid Content-Length")?;
        if length.is_some_and(|l| l != n) {
            return Err("conflicting Content-Length".into());
        }
        length = Some(n);
    }
    let fields = resp
        .headers
        .iter()
        .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()))
        .filter(|(n, _)| !is_hop_by_hop(n));
    let head = Head::from_fields(status, resp.headers.len(), fields);
    let no_body = head_request
        || status == http::StatusCode::NO_CONTENT
        || status == http::StatusCode::NOT_MODIFIED;
    let framing = match length {
        _ if no_body => Framing::Length(0),
        Some(n) => Framing::Length(n),
        None => Framing::Close,
    };
    Ok((head, framing))
}

/// Sends one request on a leased stream and waits for the answer's head,
/// sending the body meanwhile. No progress either way for `idle` ends it
/// ([`SendError::ClientTimeout`] while the client's bytes were awaited).
/// The flag says whether the request goes out whole (it may still be
/// flowing, handed over to a task of its own). `authority` is written out
/// only for a head without a Host field.
pub async fn send(
    mut lease: Lease,
    head: &[u8],
    scheme: &str,
    authority: &(dyn std::fmt::Display + Sync),
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
        let (req, chunked) = request_of(head, "http", &"198.18.0.12:50051").unwrap();
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
            &"198.18.0.12:443",
        )
        .unwrap();
        assert!(!chunked);
        assert_eq!(req.uri().to_string(), "https://198.18.0.12:443/x");
        assert_eq!(req.headers().get("te").unwrap(), "trailers");
    }

    /// RFC 9113 §8.2.2 and §8.3.1 on a head with many fields in mixed case:
    /// every other field arrives once, in order, lower-cased (§8.2.1), its
    /// value as sent, including obs-text bytes (RFC 9110 §5.5); two Cookie
    /// lines stay two fields with every crumb (§8.2.3 allows, but does not
    /// require, splitting them further); Trailer is not connection-specific
    /// and is kept; TE other than "trailers" is not sent (§8.2.2).
    #[test]
    fn a_head_with_many_fields_keeps_each_but_the_connection_specific() {
        let mut head =
            b"GET /a/b?c=d&e HTTP/1.1\r\nUser-Agent: t/1\r\nHOST: Api.Example:8443\r\n".to_vec();
        for i in 0..60 {
            head.extend_from_slice(format!("X-Field-{i}: value {i}\r\n").as_bytes());
        }
        head.extend_from_slice(
            b"Cookie: a=1; b=2\r\nKeep-Alive: 5\r\nProxy-Connection: x\r\nUpgrade: h2c\r\n",
        );
        head.extend_from_slice(b"Cookie: c=3\r\nTE: gzip, trailers\r\nTrailer: grpc-status\r\n");
        head.extend_from_slice(b"X-Name: caf\xe9 \x80\xff\r\nX-Forwarded-For: 198.18.0.1\r\n\r\n");
        let (req, chunked) = request_of(&head, "https", &"198.18.0.12:443").unwrap();
        assert!(!chunked);
        assert_eq!(req.method(), http::Method::GET);
        assert_eq!(req.version(), http::Version::HTTP_2);
        assert_eq!(req.uri().scheme_str(), Some("https"));
        assert_eq!(req.uri().authority().unwrap().as_str(), "Api.Example:8443");
        assert_eq!(req.uri().path_and_query().unwrap().as_str(), "/a/b?c=d&e");
        let h = req.headers();
        let names: Vec<&str> = h.keys().map(|n| n.as_str()).collect();
        for gone in [
            "host",
            "keep-alive",
            "proxy-connection",
            "upgrade",
            "connection",
        ] {
            assert!(!names.contains(&gone), "{gone} sent");
        }
        for i in 0..60 {
            let v = h.get(format!("x-field-{i}")).unwrap();
            assert_eq!(v.as_bytes(), format!("value {i}").as_bytes());
        }
        let cookies: Vec<&[u8]> = h.get_all("cookie").iter().map(|v| v.as_bytes()).collect();
        assert_eq!(cookies, [&b"a=1; b=2"[..], b"c=3"]);
        assert_eq!(h.get_all("te").iter().count(), 1);
        assert_eq!(h.get("te").unwrap(), "trailers");
        assert_eq!(h.get("trailer").unwrap(), "grpc-status");
        assert_eq!(h.get("x-name").unwrap().as_bytes(), b"caf\xe9 \x80\xff");
        assert_eq!(h.get("user-agent").unwrap(), "t/1");
        assert_eq!(h.get("x-forwarded-for").unwrap(), "198.18.0.1");
        // 60 numbered fields, user-agent, two cookies, te, trailer, x-name, x-forwarded-for.
        assert_eq!(h.len(), 60 + 7);
        // An empty Host stands for none (RFC 9110 §7.2): the authority given is used.
        let (req, _) = request_of(
            b"GET / HTTP/1.1\r\nHost:\r\n\r\n",
            "http",
            &"198.18.0.12:80",
        )
        .unwrap();
        assert_eq!(req.uri().to_string(), "http://198.18.0.12:80/");
        // A chunked body's framing is read from the last coding (RFC 9112 §6.1).
        let (_, chunked) = request_of(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n",
            "http",
            &"a",
        )
        .unwrap();
        assert!(chunked);
        assert!(request_of(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", "http", &"a").is_err());
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

    /// The head written from an HTTP/2 answer's fields: each field once, in
    /// the map's order, values as sent (obs-text too), Date noticed, the
    /// status line with no reason; written to an HTTP/1.1 client unchanged.
    /// No Content-Length: the stream's end ends the body (RFC 9113 §8.1.1);
    /// 204 and 304 have none (RFC 9110 §6.4.1).
    #[test]
    fn an_answer_head_is_written_from_the_fields() {
        let resp = http::Response::builder()
            .status(404)
            .header("date", "Mon, 07 Dec 2026 06:00:00 GMT")
            .header("set-cookie", "a=1")
            .header("set-cookie", "b=2")
            .header("x-name", HeaderValue::from_bytes(b"caf\xe9").unwrap())
            .body(())
            .unwrap();
        let (parts, ()) = resp.into_parts();
        let (head, framing) = head_of(&parts, false).unwrap();
        assert_eq!(framing, Framing::Close);
        assert!(head.has_date);
        let fields: Vec<(&[u8], &[u8])> = head.fields().collect();
        assert_eq!(
            fields,
            [
                (&b"date"[..], &b"Mon, 07 Dec 2026 06:00:00 GMT"[..]),
                (b"set-cookie", b"a=1"),
                (b"set-cookie", b"b=2"),
                (b"x-name", b"caf\xe9"),
            ]
        );
        let mut out = Vec::new();
        head.write_start(&mut out, false);
        assert_eq!(
            out,
            b"HTTP/1.1 404 \r\ndate: Mon, 07 Dec 2026 06:00:00 GMT\r\nset-cookie: a=1\r\nset-cookie: b=2\r\nx-name: caf\xe9\r\n"
        );
        for status in [204, 304] {
            let resp = http::Response::builder().status(status).body(()).unwrap();
            let (parts, ()) = resp.into_parts();
            assert_eq!(head_of(&parts, false).unwrap().1, Framing::Length(0));
        }
        let resp = http::Response::builder()
            .status(200)
            .header("content-length", "5")
            .header("content-length", "6")
            .body(())
            .unwrap();
        assert!(head_of(&resp.into_parts().0, false).is_err());
        let resp = http::Response::builder().status(103).body(()).unwrap();
        assert!(head_of(&resp.into_parts().0, false).is_err());
    }
}
