//! An HTTP/2 backend's answer body, as the client side reads it: DATA as it
//! arrives (its flow-control window given back as it is taken), then the
//! trailers. It holds the request's stream slot on its session.
//!
//! Not for: sending requests or keeping sessions (`h2.rs`).

use std::io;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use h2::RecvStream;
use http::HeaderMap;

/// One open stream counted on a session; given back on drop.
#[derive(Debug)]
pub struct Slot {
    pub(crate) open: Arc<AtomicU32>,
    /// When the session's last stream ended (ms since start).
    pub(crate) idle_since: Arc<AtomicU64>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.open.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.idle_since
                .store(crate::backend::now_ms(), Ordering::Relaxed);
        }
    }
}

/// An HTTP/2 backend's answer body: DATA as it arrives, then the trailers.
#[derive(Debug)]
pub struct Incoming {
    recv: RecvStream,
    data_done: bool,
    pub(crate) trailers: Option<HeaderMap>,
    _slot: Slot,
}

impl Incoming {
    pub(crate) fn new(recv: RecvStream, slot: Slot) -> Self {
        Incoming {
            recv,
            data_done: false,
            trailers: None,
            _slot: slot,
        }
    }

    /// The answer ended with its head.
    pub fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }

    /// DATA already received, taken without waiting, and whether the stream
    /// ended with it (no trailers follow). Trailers are left for
    /// [`Self::poll_data`], and so is being woken: the caller polls that next
    /// unless the stream ended here. With it, an answer's head and its first
    /// DATA go to the client in one write.
    pub fn take_ready(&mut self) -> io::Result<(Option<Bytes>, bool)> {
        if self.data_done {
            return Ok((None, false));
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        loop {
            match self.recv.poll_data(&mut cx) {
                Poll::Ready(Some(Ok(d))) => {
                    let _ = self.recv.flow_control().release_capacity(d.len());
                    if d.is_empty() {
                        continue;
                    }
                    let ended = self.recv.is_end_stream();
                    self.data_done = ended;
                    return Ok((Some(d), ended));
                }
                Poll::Ready(Some(Err(e))) => return Err(h2_io(e)),
                Poll::Ready(None) => {
                    self.data_done = true;
                    return Ok((None, false));
                }
                Poll::Pending => return Ok((None, false)),
            }
        }
    }

    /// The next DATA; Ok(None) once the stream ended (its trailers read).
    pub fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Bytes>>> {
        while !self.data_done {
            match ready!(self.recv.poll_data(cx)) {
                Some(Ok(d)) => {
                    // The backend may send more as soon as this is taken.
                    let _ = self.recv.flow_control().release_capacity(d.len());
                    if !d.is_empty() {
                        return Poll::Ready(Ok(Some(d)));
                    }
                }
                Some(Err(e)) => return Poll::Ready(Err(h2_io(e))),
                None => self.data_done = true,
            }
        }
        match ready!(self.recv.poll_trailers(cx)) {
            Ok(t) => {
                self.trailers = t;
                Poll::Ready(Ok(None))
            }
            Err(e) => Poll::Ready(Err(h2_io(e))),
        }
    }
}

/// An h2 error as an I/O error (its own, when it was one).
pub(crate) fn h2_io(e: h2::Error) -> io::Error {
    if e.is_io() {
        if let Some(io) = e.into_io() {
            return io;
        }
        return io::Error::other("HTTP/2 connection failed");
    }
    io::Error::other(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer from an in-memory HTTP/2 server: HEADERS, one DATA, then
    /// trailers if given (RFC 9113 §8.1), the client's stream as [`Incoming`].
    async fn answer(trailers: Option<HeaderMap>) -> Incoming {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move {
            let mut conn = h2::server::handshake(server_io).await.unwrap();
            let (_, mut respond) = conn.accept().await.unwrap().unwrap();
            let head = http::Response::new(());
            let mut tx = respond.send_response(head, false).unwrap();
            tx.send_data(Bytes::from_static(b"hello"), trailers.is_none())
                .unwrap();
            if let Some(t) = trailers {
                tx.send_trailers(t).unwrap();
            }
            // Serves until the client goes.
            while conn.accept().await.is_some() {}
        });
        let (mut send, conn) = h2::client::handshake(client_io).await.unwrap();
        tokio::spawn(conn);
        let (answer, _) = send.send_request(http::Request::new(()), true).unwrap();
        let recv = answer.await.unwrap().into_body();
        let slot = Slot {
            open: Arc::new(AtomicU32::new(1)),
            idle_since: Arc::default(),
        };
        Incoming::new(recv, slot)
    }

    /// [`Incoming::take_ready`] once the connection's task has read the DATA.
    async fn take_when_received(incoming: &mut Incoming) -> (Option<Bytes>, bool) {
        for _ in 0..1000 {
            let (data, ended) = incoming.take_ready().unwrap();
            if data.is_some() || ended {
                return (data, ended);
            }
            tokio::task::yield_now().await;
        }
        panic!("no DATA received");
    }

    /// DATA already received goes with the head, and an answer that ended
    /// with it is done; trailers (gRPC's status) are never taken there, so a
    /// stream that has them is read on to the end by `poll_data`.
    #[tokio::test]
    async fn received_data_is_taken_without_waiting_and_trailers_are_left() {
        let mut incoming = answer(None).await;
        let (data, ended) = take_when_received(&mut incoming).await;
        assert_eq!(data.as_deref(), Some(&b"hello"[..]));
        assert!(ended);

        let mut t = HeaderMap::new();
        t.insert("grpc-status", http::HeaderValue::from_static("0"));
        let mut incoming = answer(Some(t)).await;
        let (data, ended) = take_when_received(&mut incoming).await;
        assert_eq!(data.as_deref(), Some(&b"hello"[..]));
        assert!(!ended);
        let end = std::future::poll_fn(|cx| incoming.poll_data(cx)).await;
        assert!(matches!(end, Ok(None)));
        assert_eq!(incoming.trailers.unwrap()["grpc-status"], "0");
    }
}
