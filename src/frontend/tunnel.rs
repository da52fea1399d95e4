//! Upgraded connections: after a backend's 101 Switching Protocols (WebSocket,
//! RFC 6455, or any protocol an Upgrade names), the client's and the backend's
//! bytes are relayed both ways as they come, with nothing of HTTP left to parse.
//!
//! A tunnel ends when both sides have closed (each side's close is passed on as
//! a half-close, so a WebSocket close handshake completes end to end), when no
//! byte went either way for `[timeouts] tunnel` (HAProxy's `timeout tunnel`),
//! or when a drain or planned handover ends it ([`super::drain`]: after every
//! other client connection, at the latest half of `timeouts.handover` in),
//! with a FIN to both sides, never a reset. Not for: HTTP/2, CONNECT
//! (answered 405).

use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::backend::stream::Stream;
use crate::backend::upstream::poll_read_more;
use crate::net::ClientIo;
use crate::proxy::state::Shared;

/// Bytes read from one side at a time.
const READ_SIZE: usize = 16 * 1024;
/// How long a tunnel closed by a drain waits for both sides to close in turn.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Why a tunnel ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// Both sides closed.
    Closed,
    /// No byte either way for the tunnel timeout.
    Idle,
    /// A drain or handover closed it ([`super::drain`]).
    Drained,
    /// A side failed (reset, write error).
    Failed,
}

/// One direction: bytes read from one side, waiting to be written to the other.
#[derive(Default)]
struct Half {
    buf: BytesMut,
    /// Bytes written to the other side so far.
    moved: u64,
    /// The reading side closed.
    eof: bool,
    /// Its close was passed on (the writing side got a FIN).
    shut: bool,
}

enum Step {
    Moved,
    Done,
}

/// Relays `io` ⇄ `backend` until the tunnel ends. `from_client` holds client
/// bytes already read past the upgrade request (the new protocol's first bytes).
pub(crate) async fn relay(
    io: &mut ClientIo,
    from_client: BytesMut,
    mut backend: Stream,
    shared: &Shared,
    shutdown: &watch::Receiver<bool>,
    idle: Duration,
) -> End {
    let mut moved = Moved::default();
    relay_inner(
        io,
        from_client,
        &mut backend,
        shared,
        shutdown,
        idle,
        &mut moved,
    )
    .await
}

/// Bytes a tunnel moved each way (for a TCP listener's access log).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Moved {
    /// Written to the backend.
    pub from_client: u64,
    /// Written to the client.
    pub to_client: u64,
}

/// [`relay`], counting into `moved` the bytes each way.
pub(crate) async fn relay_counted(
    io: &mut ClientIo,
    from_client: BytesMut,
    mut backend: TcpStream,
    shared: &Shared,
    shutdown: &watch::Receiver<bool>,
    idle: Duration,
    moved: &mut Moved,
) -> End {
    relay_inner(io, from_client, &mut backend, shared, shutdown, idle, moved).await
}

async fn relay_inner<B: AsyncRead + AsyncWrite + Unpin>(
    io: &mut ClientIo,
    from_client: BytesMut,
    backend: &mut B,
    shared: &Shared,
    shutdown: &watch::Receiver<bool>,
    idle: Duration,
    moved: &mut Moved,
) -> End {
    shared.stats.tunnels_total.fetch_add(1, Ordering::Relaxed);
    shared.stats.tunnels_active.fetch_add(1, Ordering::Relaxed);
    let _active = TunnelGuard(shared);
    let mut up = Half {
        buf: from_client,
        ..Half::default()
    };
    let mut down = Half::default();
    let timer = tokio::time::sleep(idle);
    tokio::pin!(timer);
    let due = super::drain::tunnel_close_due(shared, shutdown);
    tokio::pin!(due);
    let end = loop {
        let pump = poll_fn(|cx| pump(cx, io, backend, &mut up, &mut down));
        tokio::select! {
            biased;
            step = pump => match step {
                Ok(Step::Done) => break End::Closed,
                Ok(Step::Moved) => timer.as_mut().reset(Instant::now() + idle),
                Err(e) => {
                    tracing::debug!(error = %e, "tunnel failed");
                    break End::Failed;
                }
            },
            () = &mut timer => break End::Idle,
            () = &mut due => {
                close_in_order(io, backend).await;
                break End::Drained;
            }
        }
    };
    moved.from_client = up.moved;
    moved.to_client = down.moved;
    end
}

/// Moves what it can both ways without waiting; Done once both closes were passed on.
fn pump<B: AsyncRead + AsyncWrite + Unpin>(
    cx: &mut Context<'_>,
    io: &mut ClientIo,
    backend: &mut B,
    up: &mut Half,
    down: &mut Half,
) -> Poll<io::Result<Step>> {
    let mut moved = false;
    // Client to backend.
    loop {
        if !up.buf.is_empty() {
            match Pin::new(&mut *backend).poll_write(cx, &up.buf) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    up.buf.advance(n);
                    up.moved += n as u64;
                    moved = true;
                    continue;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => break,
            }
        }
        if up.eof {
            if !up.shut {
                match Pin::new(&mut *backend).poll_shutdown(cx) {
                    Poll::Ready(_) => {
                        up.shut = true;
                        moved = true;
                    }
                    Poll::Pending => {}
                }
            }
            break;
        }
        match io.poll_recv(cx, &mut up.buf, READ_SIZE) {
            Poll::Ready(Ok(0)) => up.eof = true,
            Poll::Ready(Ok(_)) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => {
                // What a TLS session to the backend holds goes out meanwhile.
                if let Poll::Ready(Err(e)) = Pin::new(&mut *backend).poll_flush(cx) {
                    return Poll::Ready(Err(e));
                }
                break;
            }
        }
        moved = true;
    }
    // Backend to client.
    loop {
        if !down.buf.is_empty() {
            match io.poll_write(cx, &[IoSlice::new(&down.buf)]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    down.buf.advance(n);
                    down.moved += n as u64;
                    moved = true;
                    continue;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => break,
            }
        }
        if down.eof {
            if !down.shut {
                let _ = io.shutdown_write();
                down.shut = true;
                moved = true;
            }
            break;
        }
        // What a TLS session holds goes out as the socket takes it.
        if let Poll::Ready(Err(e)) = io.poll_flush(cx) {
            return Poll::Ready(Err(e));
        }
        match poll_read_more(backend, &mut down.buf, READ_SIZE, cx) {
            Poll::Ready(Ok(0)) => down.eof = true,
            Poll::Ready(Ok(_)) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => break,
        }
        moved = true;
    }
    if up.shut && down.shut {
        Poll::Ready(Ok(Step::Done))
    } else if moved {
        Poll::Ready(Ok(Step::Moved))
    } else {
        Poll::Pending
    }
}

/// A FIN to both sides, then their closes (what they still send is dropped),
/// bounded by [`CLOSE_GRACE`]: closing with unread bytes would send a reset.
async fn close_in_order<B: AsyncRead + AsyncWrite + Unpin>(io: &mut ClientIo, backend: &mut B) {
    let _ = io.shutdown_write();
    let _ = poll_fn(|cx| Pin::new(&mut *backend).poll_shutdown(cx)).await;
    let (mut client_open, mut backend_open) = (true, true);
    let mut sink = BytesMut::new();
    let _ = tokio::time::timeout(
        CLOSE_GRACE,
        poll_fn(|cx| {
            while client_open {
                sink.clear();
                match io.poll_recv(cx, &mut sink, READ_SIZE) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => client_open = false,
                    Poll::Ready(Ok(_)) => {}
                    Poll::Pending => break,
                }
            }
            while backend_open {
                sink.clear();
                match poll_read_more(backend, &mut sink, READ_SIZE, cx) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => backend_open = false,
                    Poll::Ready(Ok(_)) => {}
                    Poll::Pending => break,
                }
            }
            if client_open || backend_open {
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        }),
    )
    .await;
}

struct TunnelGuard<'a>(&'a Shared);

impl Drop for TunnelGuard<'_> {
    fn drop(&mut self) {
        self.0.stats.tunnels_active.fetch_sub(1, Ordering::Relaxed);
    }
}
