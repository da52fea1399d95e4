//! The `[tls]` listener's connections: the TLS handshake (rustls, with the
//! server config of the snapshot current at accept, so a reload's new
//! certificates serve new connections while open ones keep theirs), then
//! ALPN picks what is spoken: `h2` goes to [`super::h2`], anything else to
//! the one HTTP/1 engine ([`super::h1`]) over the TLS stream.
//! Not for: certificates and keys (`crate::tls`).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::{watch, OwnedSemaphorePermit};

use super::h1;
use crate::net::{ClientIo, TlsConn};
use crate::proxy::state::Shared;

/// Serves one connection accepted on the TLS listener.
pub(crate) async fn serve_connection(
    stream: std::net::TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
    permit: OwnedSemaphorePermit,
    listener: u16,
) {
    let server_config = {
        let snap = shared.live.load();
        snap.config
            .tls
            .as_ref()
            .and_then(|t| t.server_config_for(listener))
    };
    // A reload that removed [tls] leaves the listener without certificates.
    let Some(server_config) = server_config else {
        return;
    };
    let mut conn = h1::Conn::new(peer, shared, shutdown, permit, listener);
    let shared = &conn.shared;
    let _active = shared.stats.connection_opened();
    let _epoch = shared.handover.connection_opened();
    let Ok(tcp) = tokio::net::TcpStream::from_std(stream) else {
        return;
    };
    // The handshake is due as a request head is: within client-header.
    // Boxed, as the HTTP/2 serve below: the task is sized for its largest
    // state and kept that size for the connection's life, so futures that
    // are large (a session inline, h2's connection) but not what an idle
    // connection waits in are allocated only while they run.
    let handshake = TlsConn::accept(tcp, server_config);
    let handshake = Box::pin(tokio::time::timeout(conn.limits().client_header, handshake));
    let (tls, server_name) = match handshake.await {
        // Boxed at once: a session held inline would take room in every
        // later state of this task, moved out or not.
        Ok(Ok((tls, server_name))) => (Box::new(tls), server_name),
        Ok(Err(e)) => {
            shared
                .stats
                .tls_handshake_errors
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(client = %peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            shared
                .stats
                .tls_handshake_errors
                .fetch_add(1, Ordering::Relaxed);
            shared.stats.client_timeouts.fetch_add(1, Ordering::Relaxed);
            let (side, phase) = (crate::error::Side::Client, crate::error::Phase::Request);
            shared.stats.timed_out(side, phase);
            return;
        }
    };
    let (h2, resumed) = {
        let conn = tls.session();
        (
            conn.alpn_protocol() == Some(b"h2"),
            conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
        )
    };
    // RFC 8737 §3: a TLS-ALPN-01 validation ends with the handshake.
    if tls.session().alpn_protocol() == Some(crate::tls::managed::ACME_TLS_ALPN) {
        return;
    }
    conn.client_cert =
        crate::tls::client_auth::Identity::of(tls.session().peer_certificates()).map(Arc::new);
    // For a `send-proxy = "v2"` pool's TLVs, when the task carries the facts.
    let _ = crate::net::proxy_protocol::CLIENT.try_with(|c| {
        let session = tls.session();
        c.borrow_mut().tls = Some(crate::net::proxy_protocol::TlsFacts {
            version: session.protocol_version().map(|v| match v {
                rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
                rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2",
                _ => "TLS",
            }),
            alpn: session.alpn_protocol().map(<[u8]>::to_vec),
            server_name,
        });
    });
    shared.stats.tls_handshakes.fetch_add(1, Ordering::Relaxed);
    if resumed {
        shared.stats.tls_resumed.fetch_add(1, Ordering::Relaxed);
    }
    if h2 {
        let serve = super::h2::serve(*tls, peer, shared, &conn.shutdown, listener);
        Box::pin(serve).await;
    } else {
        let mut io = ClientIo::Tls(tls);
        h1::serve(&mut io, &conn, None).await;
        // A client that takes nothing for an idle period is gone.
        let finish = std::future::poll_fn(|cx| io.poll_finish(cx));
        let _ = tokio::time::timeout(conn.limits().idle, finish).await;
    }
}
