//! `[[listen]] mode = "tcp"`: each client connection is relayed byte for byte
//! to a backend of its pool ([`super::tunnel`]), nothing of HTTP read. With
//! `sni` entries the ClientHello is read first (bounded in size by
//! [`crate::tls::client_hello::MAX_HELLO`] and in time by `client-header`),
//! without terminating TLS, to pick the pool by server name; the bytes read
//! go to the backend first. The pool's balancing picks the backend with the
//! client's address as the request key; a failed connect tries another
//! backend up to the pool's `retries`; a backend's `maxconn` holds. The
//! bytes go through the kernel ([`super::splice`]) while its pipe budget
//! lasts, else through the copying tunnel. One access log line per
//! connection. Not for: HTTP (`h1`), TLS termination.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::BytesMut;
use http::StatusCode;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

use super::tunnel::{self, End, Moved};
use crate::backend::{BackendState, ConnectError};
use crate::balance::{Candidate, RequestKey};
use crate::error::{Error, Kind, Phase, Side, Termination};
use crate::net::proxy_protocol;
use crate::net::ClientIo;
use crate::proxy::state::Shared;
use crate::tls::client_hello::{self, Sni};

/// How much of a ClientHello is read at a time.
const READ_SIZE: usize = 4096;

/// A client connection on a TCP listener.
pub(crate) struct Client {
    pub stream: std::net::TcpStream,
    /// The client (as a PROXY header gave it, if the listener takes one).
    pub peer: SocketAddr,
    /// The address it connected to.
    pub local: SocketAddr,
}

/// Serves one connection on TCP listener `listener` until it ends.
pub(crate) async fn serve(
    client: Client,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
    listener: u16,
) {
    let _active = shared.stats.connection_opened();
    let _epoch = shared.handover.connection_opened();
    let (start, at) = (Instant::now(), SystemTime::now());
    let peer = client.peer;
    let mut io = ClientIo::Direct(client.stream);
    let mut line = Line {
        peer,
        at,
        sni: None,
        pool: None,
        backend: None,
        moved: Moved::default(),
        termination: Termination::NORMAL,
    };
    let mut first = BytesMut::new();
    let (route, client_header, tunnel, allowed) = {
        let snap = shared.live.load();
        let c = &snap.config;
        let id = usize::from(listener);
        let route = c.resolved.tcp.get(id).cloned().flatten();
        // The listener's address lists hold at accept: there are no requests.
        let allowed = match c.resolved.listeners.get(id).and_then(Option::as_ref) {
            Some(rule) => rule.check(peer.ip()),
            None => Ok(()),
        };
        (route, c.timeouts.client_header, c.timeouts.tunnel, allowed)
    };
    // A reload made the listener an HTTP one: this connection is not ours.
    let Some(route) = route else { return };
    if let Err(why) = allowed {
        shared.stats.refused[why.index()].fetch_add(1, Ordering::Relaxed);
        line.termination = refused("refused by the listener's address lists").termination();
        return line.log(&shared, start);
    }
    if route.reads_sni() {
        match read_hello(&mut io, &mut first, client_header).await {
            Ok(name) => line.sni = name,
            Err(e) => {
                if e.kind == Kind::Timeout {
                    shared.stats.timed_out(Side::Client, Phase::Request);
                }
                tracing::debug!(client = %peer, error = %e, "TCP listener: no ClientHello");
                line.termination = e.termination();
                return line.log(&shared, start);
            }
        }
    }
    let Some(pool) = route.pool_for(line.sni.as_deref()) else {
        let e = refused("no pool for this server name");
        line.termination = e.termination();
        return line.log(&shared, start);
    };
    let (backend, stream) = match connect(&shared, pool, &client.local, peer, &mut line).await {
        Ok(b) => b,
        Err(e) => {
            tracing::debug!(client = %peer, error = %e, "TCP listener: no backend");
            line.termination = e.termination();
            return line.log(&shared, start);
        }
    };
    let end = match super::splice::Pipes::take() {
        Some(pipes) => {
            spliced(
                io,
                first,
                stream,
                pipes,
                &shared,
                &shutdown,
                tunnel,
                &mut line.moved,
            )
            .await
        }
        // The pipe budget is spent: copied through user space.
        None => {
            tunnel::relay_counted(
                &mut io,
                first,
                stream,
                &shared,
                &shutdown,
                tunnel,
                &mut line.moved,
            )
            .await
        }
    };
    drop(backend);
    line.termination = match end {
        End::Closed => Termination::NORMAL,
        End::Idle => {
            shared.stats.timed_out(Side::Client, Phase::Body);
            ended(Side::Client, Kind::Timeout, "idle for [timeouts] tunnel").termination()
        }
        End::Drained => ended(Side::Proxy, Kind::Denied, "closed by a drain").termination(),
        End::Failed => ended(Side::Client, Kind::Closed, "a side failed").termination(),
    };
    line.log(&shared, start);
}

/// The relay through the kernel ([`super::splice`]): the bytes already
/// read from the client (a ClientHello) go to the backend first.
#[allow(clippy::too_many_arguments)] // one call site; the relay's own arguments
async fn spliced(
    io: ClientIo,
    first: BytesMut,
    mut backend: TcpStream,
    pipes: super::splice::Pipes,
    shared: &Shared,
    shutdown: &watch::Receiver<bool>,
    idle: Duration,
    moved: &mut Moved,
) -> End {
    let client = match io {
        ClientIo::Direct(s) => TcpStream::from_std(s),
        ClientIo::Polled(a) => TcpStream::from_std(a.into_inner()),
        _ => return End::Failed,
    };
    let Ok(client) = client else {
        return End::Failed;
    };
    if !first.is_empty() && backend.write_all(&first).await.is_err() {
        return End::Failed;
    }
    let end = super::splice::relay(&client, &backend, pipes, shared, shutdown, idle, moved).await;
    moved.from_client += first.len() as u64;
    end
}

/// Reads until the ClientHello is whole: its server name, if it has one.
async fn read_hello(
    io: &mut ClientIo,
    buf: &mut BytesMut,
    limit: Duration,
) -> Result<Option<String>, Error> {
    let read = async {
        loop {
            match client_hello::server_name(buf) {
                Sni::Found(name) => return Ok(name),
                Sni::Invalid(why) => {
                    return Err(Error::new(
                        Side::Client,
                        Phase::Request,
                        Kind::Malformed,
                        StatusCode::BAD_REQUEST,
                        why,
                    ))
                }
                Sni::Incomplete => {}
            }
            match poll_fn(|cx| io.poll_recv(cx, buf, READ_SIZE)).await {
                Ok(0) | Err(_) => {
                    return Err(ended(
                        Side::Client,
                        Kind::Closed,
                        "closed before its ClientHello",
                    ))
                }
                Ok(_) => {}
            }
        }
    };
    match tokio::time::timeout(limit, read).await {
        Ok(res) => res,
        Err(_) => Err(Error::new(
            Side::Client,
            Phase::Request,
            Kind::Timeout,
            StatusCode::REQUEST_TIMEOUT,
            "no ClientHello within client-header",
        )),
    }
}

/// A connection to a backend of pool `pool` (its slot taken), with the
/// pool's PROXY header sent if it has `send-proxy`; another backend after a
/// failed connect, up to `retries`.
async fn connect(
    shared: &Shared,
    pool: usize,
    local: &SocketAddr,
    peer: SocketAddr,
    line: &mut Line,
) -> Result<(Slot, TcpStream), Error> {
    let mut tried: Vec<usize> = Vec::new();
    let mut failed = 0u32;
    loop {
        let (backend, connect_timeout, retries, passive_fall, send_proxy) = {
            let snap = shared.live.load();
            let resolved = &snap.config.resolved;
            let (Some(spec), Some(live)) = (resolved.pools.get(pool), snap.pools.get(pool)) else {
                return Err(ended(Side::Proxy, Kind::Unavailable, "the pool is gone"));
            };
            line.pool = Some(spec.name.clone());
            let key = RequestKey {
                client_ip: peer.ip(),
                path_and_query: "",
                value: None,
            };
            let slow_start = spec.health.slow_start;
            let cands: Vec<Candidate> = live
                .backends
                .iter()
                .zip(&spec.backends)
                .map(|(b, c)| {
                    let mut cand = b.candidate(c, slow_start);
                    if c.maxconn > 0 && cand.in_flight >= c.maxconn {
                        cand.up = false;
                    }
                    cand
                })
                .collect();
            let picked = live.selection.select(&cands, &key, &tried).or_else(|| {
                // Every backend tried: the same one may be tried again.
                (!tried.is_empty())
                    .then(|| live.selection.select(&cands, &key, &[]))
                    .flatten()
            });
            let Some(i) = picked else {
                return Err(Error::new(
                    Side::Backend,
                    Phase::Connect,
                    Kind::Unavailable,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no backend up with a free slot",
                ));
            };
            let b = live.backends[i].clone();
            if !b.take_slot(spec.backends[i].maxconn) {
                // Another connection took the last slot first.
                continue;
            }
            tried.push(i);
            let send = resolved.send_proxy.get(pool).copied().flatten();
            (
                b,
                spec.connect,
                spec.retries,
                spec.health.passive_fall,
                send,
            )
        };
        line.backend = Some(backend.name.clone());
        let addr = backend.address;
        match connect_one(addr, connect_timeout).await {
            Ok(mut stream) => {
                let backend = Slot(backend);
                backend.0.record_connect(true, passive_fall);
                let stats = &backend.0.stats;
                stats.connections_opened.fetch_add(1, Ordering::Relaxed);
                stats.requests.fetch_add(1, Ordering::Relaxed);
                if let Some(v) = send_proxy {
                    // The client's TLS, if any, is not ours: no TLS TLVs.
                    let header = proxy_protocol::write(v, peer, *local, None);
                    if let Err(e) = stream.write_all(&header).await {
                        return Err(ConnectError::Io(addr, e).error());
                    }
                }
                return Ok((backend, stream));
            }
            Err(e) => {
                backend.give_slot();
                backend.stats.connect_errors.fetch_add(1, Ordering::Relaxed);
                if matches!(e, ConnectError::Timeout(_)) {
                    shared.stats.timed_out(Side::Backend, Phase::Connect);
                }
                if backend.record_connect(false, passive_fall) {
                    tracing::warn!(backend = %backend.name, error = %e, "backend marked DOWN after consecutive connect failures");
                }
                failed += 1;
                if failed > retries {
                    return Err(e.error());
                }
                backend.stats.retries.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// One TCP connect to `addr` within `timeout`.
async fn connect_one(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, ConnectError> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|e| ConnectError::Io(addr, e))?;
    socket
        .set_nodelay(true)
        .map_err(|e| ConnectError::Io(addr, e))?;
    match tokio::time::timeout(timeout, socket.connect(addr)).await {
        Err(_) => Err(ConnectError::Timeout(addr)),
        Ok(Err(e)) => Err(ConnectError::Io(addr, e)),
        Ok(Ok(s)) => Ok(s),
    }
}

/// A connection's place under its backend's `maxconn`, given back when dropped.
struct Slot(Arc<BackendState>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.give_slot();
    }
}

fn ended(side: Side, kind: Kind, why: &'static str) -> Error {
    Error::new(side, Phase::Body, kind, StatusCode::BAD_GATEWAY, why)
}

fn refused(why: &'static str) -> Error {
    Error::new(
        Side::Proxy,
        Phase::Request,
        Kind::Denied,
        StatusCode::FORBIDDEN,
        why,
    )
}

/// What the access log says of a TCP connection.
struct Line {
    peer: SocketAddr,
    at: SystemTime,
    sni: Option<String>,
    pool: Option<String>,
    backend: Option<String>,
    moved: Moved,
    termination: Termination,
}

impl Line {
    /// One line: method `TCP`, target the server name (or `-`) and the
    /// bytes from the client (`in=N`), bytes the bytes sent to the client,
    /// status 0; duration from accept to close.
    fn log(self, shared: &Shared, start: Instant) {
        let Some(log) = &shared.access_log else {
            return;
        };
        let target = format!(
            "{} in={}",
            self.sni.as_deref().unwrap_or("-"),
            self.moved.from_client
        );
        log.log(crate::observe::access_log::Record {
            client: self.peer.ip(),
            at: self.at,
            method: http::Method::from_bytes(b"TCP").unwrap_or(http::Method::CONNECT),
            target,
            version: http::Version::HTTP_11,
            status: 0,
            bytes: Some(self.moved.to_client),
            referer: None,
            user_agent: None,
            duration: start.elapsed(),
            route: None,
            pool: self.pool,
            backend: self.backend,
            termination: self.termination,
        });
    }
}
