//! A budget for the HTTP/2 frames that cost floatlb work but carry no
//! request: PING and SETTINGS (each asks for an answer) and RST_STREAM (each
//! cancels a stream floatlb may already be serving). The h2 crate answers
//! them one at a time without a limit; a client that sends more than its
//! budget is told GOAWAY(ENHANCE_YOUR_CALM) by [`super::h2`]. Counted on the
//! client's bytes as h2 reads them ([`Guarded`]), so nothing of h2 changes.
//!
//! Not for: the limits h2 enforces itself (`settings()` in `super::h2`).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// The client connection preface (RFC 9113 §3.4), before the first frame.
const PREFACE_LEN: usize = 24;
/// A frame's header (RFC 9113 §4.1).
const HEADER_LEN: usize = 9;
/// A connection may save up this many seconds' worth of its budget.
const BURST_SECS: u32 = 10;

/// The frames a client sends, followed through its byte stream (sans-IO:
/// bytes and the time in, over budget or not out).
#[derive(Debug)]
pub(crate) struct ControlFrames {
    /// Frames allowed per second.
    rate: u32,
    /// Frames that may be sent now.
    tokens: f64,
    refilled: Instant,
    /// Bytes to pass over (the preface, or a frame's payload) before the
    /// next frame header.
    skip: usize,
    head: [u8; HEADER_LEN],
    have: usize,
    over: bool,
}

impl ControlFrames {
    /// A budget of `rate` control frames per second, `BURST_SECS` of them
    /// at once.
    pub(crate) fn new(rate: u32, now: Instant) -> Self {
        ControlFrames {
            rate,
            tokens: f64::from(rate) * f64::from(BURST_SECS),
            refilled: now,
            skip: PREFACE_LEN,
            head: [0; HEADER_LEN],
            have: 0,
            over: false,
        }
    }

    /// Follows `data`, the next bytes from the client; true once the client
    /// has gone over its budget (and from then on).
    pub(crate) fn feed(&mut self, mut data: &[u8], now: Instant) -> bool {
        while !data.is_empty() && !self.over {
            if self.skip > 0 {
                let n = self.skip.min(data.len());
                self.skip -= n;
                data = &data[n..];
                continue;
            }
            let n = (HEADER_LEN - self.have).min(data.len());
            self.head[self.have..self.have + n].copy_from_slice(&data[..n]);
            self.have += n;
            data = &data[n..];
            if self.have < HEADER_LEN {
                break;
            }
            self.have = 0;
            let h = self.head;
            self.skip = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
            let ack = h[4] & 0x1 != 0;
            // RST_STREAM (0x3); SETTINGS (0x4) and PING (0x6) but not their ACKs.
            let control = match h[3] {
                0x3 => true,
                0x4 | 0x6 => !ack,
                _ => false,
            };
            if control && !self.take(now) {
                self.over = true;
            }
        }
        self.over
    }

    fn take(&mut self, now: Instant) -> bool {
        let cap = f64::from(self.rate) * f64::from(BURST_SECS);
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * f64::from(self.rate)).min(cap);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The connection's I/O as h2 uses it, with the client's bytes counted by
/// [`ControlFrames`]. Over budget, it gives h2 nothing more to read and
/// raises the flag [`Guarded::flag`] returns.
pub(crate) struct Guarded<T> {
    io: T,
    frames: ControlFrames,
    over: Arc<AtomicBool>,
}

impl<T> Guarded<T> {
    pub(crate) fn new(io: T, rate: u32) -> Self {
        Guarded {
            io,
            frames: ControlFrames::new(rate, Instant::now()),
            over: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Raised once the client has gone over its budget.
    pub(crate) fn flag(&self) -> Arc<AtomicBool> {
        self.over.clone()
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.over.load(Ordering::Relaxed) {
            // The connection's task ends the connection; nothing more is read.
            return Poll::Pending;
        }
        let before = buf.filled().len();
        let res = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = res {
            if this.frames.feed(&buf.filled()[before..], Instant::now()) {
                this.over.store(true, Ordering::Relaxed);
                // What this read brought is still h2's; the task is woken to
                // look at the flag.
                cx.waker().wake_by_ref();
            }
        }
        res
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    fn frame(kind: u8, flags: u8, id: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = len.to_be_bytes()[1..].to_vec();
        f.extend([kind, flags]);
        f.extend(id.to_be_bytes());
        f.extend(payload);
        f
    }

    #[test]
    fn pings_settings_and_resets_count_acks_and_others_do_not() {
        let now = Instant::now();
        let mut c = ControlFrames::new(1, now);
        let mut bytes = PREFACE.to_vec();
        // Budget 10 (1/s, 10 s saved): 9 control frames among others that
        // are not counted: a PING ACK, a SETTINGS ACK, HEADERS, DATA,
        // WINDOW_UPDATE, and a frame whose payload looks like a PING.
        bytes.extend(frame(0x4, 0, 0, &[0, 4, 0, 0, 0, 0]));
        for i in 0..4u8 {
            bytes.extend(frame(0x6, 0, 0, &[i; 8]));
            bytes.extend(frame(0x6, 0x1, 0, &[i; 8]));
            bytes.extend(frame(0x4, 0x1, 0, &[]));
            bytes.extend(frame(0x1, 0x5, 1 + 2 * u32::from(i), &[0x82, 0x87, 0x84]));
            bytes.extend(frame(0x0, 0, 1, &frame(0x6, 0, 0, &[0; 8])));
            bytes.extend(frame(0x8, 0, 0, &[0, 0, 1, 0]));
            bytes.extend(frame(0x3, 0, 1 + 2 * u32::from(i), &[0, 0, 0, 8]));
        }
        // Fed a byte at a time: frame headers split anywhere are followed.
        for b in &bytes {
            assert!(!c.feed(std::slice::from_ref(b), now));
        }
        assert!(!c.feed(&frame(0x6, 0, 0, &[9; 8]), now), "the 10th");
        assert!(c.feed(&frame(0x6, 0, 0, &[9; 8]), now), "the 11th");
        // Once over, it stays over.
        assert!(c.feed(&[], now + Duration::from_secs(60)));
    }

    #[test]
    fn the_budget_refills_at_its_rate_up_to_ten_seconds_worth() {
        let t0 = Instant::now();
        let mut c = ControlFrames::new(100, t0);
        assert!(!c.feed(PREFACE, t0));
        let ping = frame(0x6, 0, 0, &[0; 8]);
        let pings = |n: usize| ping.repeat(n);
        // 1000 at once (10 s saved), then 100 more a second later.
        assert!(!c.feed(&pings(1000), t0));
        let t1 = t0 + Duration::from_secs(1);
        assert!(!c.feed(&pings(100), t1));
        assert!(c.feed(&ping, t1));
        // A long quiet spell saves no more than 10 s worth.
        let mut c = ControlFrames::new(100, t0);
        let later = t0 + Duration::from_secs(3600);
        assert!(!c.feed(&[PREFACE, &pings(1000)].concat(), later));
        assert!(c.feed(&ping, later));
    }
}
