//! The accept loop: each accepted client connection gets a task that serves
//! it ([`super::h1::serve`], or [`super::handshake::serve_connection`] on the TLS
//! listener); a reload that rebinds swaps the listener in.
//! Accept errors such as EMFILE back off instead of spinning.

use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Semaphore, TryAcquireError};

use super::h1;
use crate::net::{accept_one, is_resource_exhaustion, poll_listener, ClientIo};
use crate::proxy::dispatch::{connected, Admitted, Connection};
use crate::proxy::state::Shared;

/// Serves one client connection until it closes, times out or is drained.
///
/// A plain function returning an `async move` block, not an `async fn`: the
/// block keeps each captured value once, where an `async fn` would also copy
/// its arguments into locals, in every connection's task.
#[allow(clippy::manual_async_fn)] // on purpose: see above
fn serve_connection(
    stream: std::net::TcpStream,
    conn: h1::Conn,
    counted: Option<Connection>,
) -> impl Future<Output = ()> {
    async move {
        let _counted = counted;
        let _active = conn.shared.stats.connection_opened();
        let _epoch = conn.shared.handover.connection_opened();
        let mut io = ClientIo::Direct(stream);
        h1::serve(&mut io, &conn).await;
    }
}

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
