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
