//! The accept loop: each accepted client connection gets a task that serves
//! it ([`super::h1::serve`], or [`super::handshake::serve_connection`] on the TLS
//! listener); a reload that rebinds swaps the listener in.
//! Accept errors such as EMFILE back off instead of spinning. A listener
//! with `accept-proxy`, a TCP listener, or any listener while a pool has
//! `send-proxy`, takes the longer path ([`serve_special`]): the PROXY header
//! first, then the client it names is the connection's peer everywhere.

use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Semaphore, TryAcquireError};

use std::net::SocketAddr;

use tokio::sync::OwnedSemaphorePermit;

use super::h1;
use super::park::{self, Held};
use crate::net::proxy_protocol::{self, ClientFacts, Header, Parsed};
use crate::net::{accept_one, is_resource_exhaustion, poll_listener, ClientIo};
use crate::proxy::dispatch::{connected, Admitted, Connection};
use crate::proxy::state::Shared;

/// Serves one client connection until it closes, times out or is drained
/// (or is parked while idle, if `park`: [`super::park`]).
///
/// A plain function returning an `async move` block, not an `async fn`: the
/// block keeps each captured value once, where an `async fn` would also copy
/// its arguments into locals, in every connection's task.
#[allow(clippy::manual_async_fn)] // on purpose: see above
fn serve_connection(
    stream: std::net::TcpStream,
    conn: h1::Conn,
    counted: Option<Connection>,
    park: bool,
) -> impl Future<Output = ()> {
    async move {
        let held = Held::new(conn, counted, park);
        park::run(ClientIo::Direct(stream), held, None).await
    }
}

/// What a connection needs beyond the plain path, by the configuration
/// current when it was accepted.
#[derive(Debug, Clone, Copy)]
struct Special {
    /// The listener takes PROXY headers (`accept-proxy`).
    proxied: bool,
    /// A `mode = "tcp"` listener.
    tcp: bool,
    /// A pool sends PROXY headers: the connection's facts go with its task.
    facts: bool,
}

impl Special {
    fn of(shared: &Shared, listener: u16) -> Special {
        let snap = shared.live.load();
        let r = &snap.config.resolved;
        let id = usize::from(listener);
        Special {
            proxied: r.accept_proxy.get(id).is_some_and(Option::is_some),
            tcp: r.tcp.get(id).is_some_and(Option::is_some),
            facts: r.send_proxy.iter().any(Option::is_some),
        }
    }

    fn any(self) -> bool {
        self.proxied || self.tcp || self.facts
    }
}

/// A connection on a listener that takes PROXY headers, relays TCP, or
/// while a pool sends PROXY headers: the header read first (its client
/// then is the connection's for every check, log and header after), then
/// served as the listener says.
async fn serve_special(
    stream: std::net::TcpStream,
    mut peer: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
    permit: OwnedSemaphorePermit,
    kind: Listener,
    special: Special,
) {
    let Ok(mut local) = stream.local_addr() else {
        return;
    };
    // On a dual-stack [::] listener, an IPv4 client's own family, as its peer's.
    if let std::net::IpAddr::V6(v6) = local.ip() {
        if let Some(v4) = v6.to_ipv4_mapped() {
            local.set_ip(v4.into());
        }
    }
    let mut stream = stream;
    if special.proxied {
        let Some((s, header)) = proxy_header(stream, peer, &shared, kind.id).await else {
            return;
        };
        stream = s;
        if let Some((src, dst)) = header.addresses {
            (peer, local) = (src, dst);
        }
    }
    let counted = match connected(&shared, kind.id, peer.ip()) {
        Admitted::Counted(c) => Some(c),
        Admitted::Uncounted => None,
        Admitted::Refused => return,
    };
    if special.tcp {
        let _counted = counted;
        let _permit = permit;
        let client = super::tcp::Client {
            stream,
            peer,
            local,
        };
        return super::tcp::serve(client, shared, shutdown, kind.id).await;
    }
    let serve = async move {
        if kind.tls {
            let _counted = counted;
            super::handshake::serve_connection(stream, peer, shared, shutdown, permit, kind.id)
                .await
        } else {
            let conn = h1::Conn::new(peer, shared, shutdown, permit, kind.id);
            // A parked connection's next task would not carry the facts.
            serve_connection(stream, conn, counted, !special.facts).await
        }
    };
    if special.facts {
        let facts = ClientFacts {
            peer,
            local,
            tls: None,
        };
        proxy_protocol::CLIENT.scope(facts.into(), serve).await
    } else {
        serve.await
    }
}

/// The PROXY header a connection from an `accept-proxy` source must start
/// with, read within client-header by peeking (nothing past it is taken
/// from the socket); None, the connection closed, counted and logged, for a
/// source not listed or a header missing, broken or late.
async fn proxy_header(
    stream: std::net::TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    listener: u16,
) -> Option<(std::net::TcpStream, Header)> {
    let (trusted, limit) = {
        let snap = shared.live.load();
        let c = &snap.config;
        let trusted = c
            .resolved
            .accept_proxy
            .get(usize::from(listener))
            .and_then(Option::as_ref)
            .is_some_and(|set| set.contains(peer.ip()));
        (trusted, c.timeouts.client_header)
    };
    let stats = &shared.stats.proxy_protocol;
    if !trusted {
        stats[PROXY_UNTRUSTED].fetch_add(1, Ordering::Relaxed);
        tracing::info!(client = %peer, "connection closed: not an accept-proxy source");
        return None;
    }
    let stream = tokio::net::TcpStream::from_std(stream).ok()?;
    let mut buf = vec![0u8; proxy_protocol::V2_MAX];
    let mut seen = 0usize;
    let read = async {
        loop {
            stream.readable().await?;
            let peeked = stream.try_io(Interest::READABLE, || {
                // SAFETY: recv writes at most buf.len() bytes into buf.
                let n = unsafe {
                    libc::recv(
                        stream.as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        libc::MSG_PEEK,
                    )
                };
                if n < 0 {
                    return Err(io::Error::last_os_error());
                }
                // Nothing new since the last look: wait for the next arrival.
                if n as usize == seen && n > 0 {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(n as usize)
            });
            let n = match peeked {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            };
            seen = n;
            match proxy_protocol::parse(&buf[..n]) {
                Parsed::Incomplete => continue,
                Parsed::Invalid(why) => {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, why))
                }
                Parsed::Done { len, header } => {
                    // The header's bytes are in the socket: take exactly them.
                    let mut taken = 0;
                    while taken < len {
                        let n = unsafe {
                            // SAFETY: as above, within buf.
                            libc::recv(stream.as_raw_fd(), buf.as_mut_ptr().cast(), len - taken, 0)
                        };
                        if n <= 0 {
                            return Err(io::Error::last_os_error());
                        }
                        taken += n as usize;
                    }
                    return Ok(header);
                }
            }
        }
    };
    let res = tokio::time::timeout(limit, read).await;
    match res {
        Ok(Ok(header)) => {
            stats[PROXY_OK].fetch_add(1, Ordering::Relaxed);
            let std = stream.into_std().ok()?;
            Some((std, header))
        }
        Ok(Err(e)) => {
            stats[PROXY_INVALID].fetch_add(1, Ordering::Relaxed);
            tracing::info!(client = %peer, error = %e, "connection closed: no valid PROXY protocol header");
            None
        }
        Err(_) => {
            stats[PROXY_INVALID].fetch_add(1, Ordering::Relaxed);
            shared
                .stats
                .timed_out(crate::error::Side::Client, crate::error::Phase::Request);
            tracing::info!(client = %peer, "connection closed: no PROXY protocol header within client-header");
            None
        }
    }
}

/// `ProxyStats::proxy_protocol` slots: headers taken, connections from a
/// source not listed, headers missing, broken or late.
pub const PROXY_OK: usize = 0;
pub const PROXY_UNTRUSTED: usize = 1;
pub const PROXY_INVALID: usize = 2;

/// Which listener a loop accepts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    /// A TLS handshake first (`[tls] address`, or `[[listen]] tls = true`).
    pub tls: bool,
    /// Its id, as routes name it (`Config::listener_names`).
    pub id: u16,
    pub role: Role,
}

/// What the planned handover knows a listener as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The first `[listen]`: a reload may rebind it.
    Primary,
    /// `[tls] address`.
    TlsAddress,
    /// A further `[[listen]]` entry.
    Extra,
}

/// Accepts client connections until shutdown; swaps in a new listener when a
/// reload rebinds. Accept errors such as EMFILE back off instead of spinning.
pub async fn accept_loop(
    listener: TcpListener,
    mut rebind: mpsc::Receiver<TcpListener>,
    shared: Arc<Shared>,
    limit: Arc<Semaphore>,
    shutdown: watch::Receiver<bool>,
    kind: Listener,
) {
    let mut stop = shutdown.clone();
    let mut listener = match poll_listener(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "cannot poll the listening socket");
            return;
        }
    };
    // The handover holds back new SYNs on every listener.
    match kind.role {
        Role::Primary => shared.handover.set_listener_fd(listener.as_raw_fd()),
        Role::TlsAddress => shared.handover.set_tls_listener_fd(listener.as_raw_fd()),
        Role::Extra => shared.handover.add_extra_listener_fd(listener.as_raw_fd()),
    }
    let mut backoff = Duration::from_millis(10);
    let mut last_warn: Option<tokio::time::Instant> = None;
    // Accepts made in a row without waiting: the connections' tasks run after
    // this many at the latest.
    const ACCEPT_BATCH: u32 = 16;
    let mut in_row = 0u32;
    loop {
        // While connections wait and permits are free, a permit and an accept
        // are taken without building the futures the waits below need (two
        // selects, a watch and a semaphore waiter per connection otherwise).
        let permit = match limit.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(TryAcquireError::Closed) => return,
            Err(TryAcquireError::NoPermits) => tokio::select! {
                p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
                _ = stop.changed() => return,
            },
        };
        if stop.has_changed().unwrap_or(true) {
            return;
        }
        let fast = if in_row < ACCEPT_BATCH {
            listener.try_io(Interest::READABLE, accept_one)
        } else {
            Err(io::ErrorKind::WouldBlock.into())
        };
        let accepted = match fast {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if in_row >= ACCEPT_BATCH {
                    tokio::task::yield_now().await;
                }
                in_row = 0;
                tokio::select! {
                ready = listener.readable() => match ready {
                    Ok(mut guard) => match guard.try_io(|l| accept_one(l.get_ref())) {
                        Ok(res) => res,
                        Err(_would_block) => continue,
                    },
                    Err(e) => Err(e),
                },
                new = rebind.recv() => {
                    if let Some(new) = new {
                        match poll_listener(new) {
                            Ok(new) => {
                                tracing::info!(address = ?new.get_ref().local_addr().ok(), "listening on new address");
                                if kind.role == Role::Primary {
                                    shared.handover.set_listener_fd(new.as_raw_fd());
                                }
                                listener = new;
                            }
                            Err(e) => tracing::error!(error = %e, "cannot poll the new listening socket; keeping the old one"),
                        }
                    }
                    continue;
                }
                _ = stop.changed() => return,
                    }
            }
            res => {
                in_row += 1;
                res
            }
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(10);
                shared.stats.set_accepting(true);
                let special = Special::of(&shared, kind.id);
                if special.any() {
                    let serve = serve_special(
                        stream,
                        peer,
                        shared.clone(),
                        shutdown.clone(),
                        permit,
                        kind,
                        special,
                    );
                    tokio::spawn(serve);
                    continue;
                }
                // A client at its listener's max-connections is closed here,
                // before a TLS handshake or a request costs anything.
                let counted = match connected(&shared, kind.id, peer.ip()) {
                    Admitted::Counted(c) => Some(c),
                    Admitted::Uncounted => None,
                    Admitted::Refused => {
                        drop(stream);
                        continue;
                    }
                };
                let (shared, shutdown) = (shared.clone(), shutdown.clone());
                match (kind.tls, counted) {
                    (true, None) => {
                        tokio::spawn(super::handshake::serve_connection(
                            stream, peer, shared, shutdown, permit, kind.id,
                        ));
                    }
                    (true, Some(counted)) => {
                        let serve = super::handshake::serve_connection(
                            stream, peer, shared, shutdown, permit, kind.id,
                        );
                        tokio::spawn(async move {
                            let _counted = counted;
                            serve.await
                        });
                    }
                    (false, counted) => {
                        tokio::spawn(serve_connection(
                            stream,
                            h1::Conn::new(peer, shared, shutdown, permit, kind.id),
                            counted,
                            true,
                        ));
                    }
                }
            }
            Err(e) => {
                shared.stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                if is_resource_exhaustion(&e) {
                    if last_warn.is_none_or(|t| t.elapsed() > Duration::from_secs(1)) {
                        tracing::warn!(error = %e, backoff_ms = backoff.as_millis() as u64, "accept failed: out of resources; backing off");
                        last_warn = Some(tokio::time::Instant::now());
                    }
                    drop(permit);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                } else {
                    tracing::debug!(error = %e, "accept failed");
                }
            }
        }
    }
}
