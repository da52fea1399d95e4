//! A client connection on the `[tls]` listener: rustls' unbuffered server
//! session (`rustls::unbuffered`) over the socket, with the buffers owned
//! here, so that an idle connection holds none of them (issue 34):
//!
//! - received records wait in a buffer taken from a small per-thread pool
//!   only while bytes are in it (a partial record kept across a wait moves
//!   to a buffer of its own size); decrypted bytes go straight into the
//!   reader's buffer, only what did not fit is kept;
//! - writes only encrypt: records wait in a pooled buffer and go to the
//!   socket at a flush, before a read waits, at the close, or when 64 KiB
//!   are waiting; the buffer goes back to the pool once sent;
//! - TLS 1.3's session tickets are not sent when the handshake ends but with
//!   the first answer (or before the first wait for the request): a resumed
//!   connection then makes one write for its tickets and its answer;
//! - [`Deferred`] (HTTP/2): a flush sends nothing; the connection's task sends
//!   everything once per wake-up ([`Deferred::poll_send`]), so the answers of
//!   the streams that finished together leave in one write instead of one
//!   each; its writes are kept as plaintext until then and sealed together,
//!   in as few records as they fit, instead of a record per write.
//!
//! Not for: certificates, keys and the server config (`crate::tls`).

use std::cell::RefCell;
use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll};

use bytes::BytesMut;
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncodeTlsData, EncryptError, UnbufferedStatus, WriteTraffic,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::tls::client_hello::{self, Sni};

/// Records (or deferred plaintext) that make a write send first.
const PLAIN_LIMIT: usize = 64 << 10;
/// The most plaintext in one record (RFC 8446 §5.1).
const RECORD: usize = 16 << 10;
/// A pooled buffer: 64 KiB of records and their headers and tags.
const BUF: usize = PLAIN_LIMIT + 4096;
/// The most received bytes held at once: a handshake message may take
/// 64 KiB (rustls' limit), spread over several records.
const RX_MAX: usize = 2 * BUF;
/// Buffers a thread keeps for the next connection that has bytes.
const POOL_MAX: usize = 8;

thread_local! {
    /// Spare buffers of `BUF` bytes, initialised once (reads and encryption
    /// write into them without zeroing them first).
    static POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    /// Where the pieces of a vectored write are joined into one record.
    static JOIN: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

fn take_buf() -> Vec<u8> {
    POOL.with(|p| p.borrow_mut().pop())
        .unwrap_or_else(|| vec![0; BUF])
}

/// Gives `buf` back (to the pool if it is a pool's size), leaving none.
fn give_buf(buf: &mut Vec<u8>) {
    let buf = std::mem::take(buf);
    if buf.len() == BUF {
        POOL.with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < POOL_MAX {
                p.push(buf);
            }
        });
    }
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Appends `e`'s record(s) to `tx[..*end]`, growing it if they do not fit.
fn encode(
    e: &mut EncodeTlsData<'_, ServerConnectionData>,
    tx: &mut Vec<u8>,
    end: &mut usize,
) -> io::Result<()> {
    if tx.is_empty() {
        *tx = take_buf();
    }
    loop {
        match e.encode(&mut tx[*end..]) {
            Ok(n) => {
                *end += n;
                return Ok(());
            }
            Err(EncodeError::InsufficientSize(s)) => tx.resize(*end + s.required_size, 0),
            Err(e) => return Err(io::Error::other(e)),
        }
    }
}

/// Encrypts `data` into records appended to `tx[..*end]` (`data` empty:
/// a close_notify alert), growing it if they do not fit.
fn encrypt(
    w: &mut WriteTraffic<'_, ServerConnectionData>,
    data: Option<&[u8]>,
    tx: &mut Vec<u8>,
    end: &mut usize,
) -> io::Result<()> {
    if tx.is_empty() {
        *tx = take_buf();
    }
    loop {
        let res = match data {
            Some(data) => w.encrypt(data, &mut tx[*end..]),
            None => w.queue_close_notify(&mut tx[*end..]),
        };
        match res {
            Ok(n) => {
                *end += n;
                return Ok(());
            }
            Err(EncryptError::InsufficientSize(s)) => tx.resize(*end + s.required_size, 0),
            Err(e) => return Err(io::Error::other(e)),
        }
    }
}

/// What [`TlsConn::process`] got to.
enum Step {
    /// An application-data record: this many of its bytes went to the
    /// reader (the rest is held for its next read).
    Data(usize),
    /// Nothing more comes of the bytes received so far.
    NeedInput,
    /// The client's close_notify (RFC 8446 §6.1).
    PeerClosed,
}

/// A TLS session and its socket.
pub(crate) struct TlsConn {
    sock: TcpStream,
    session: UnbufferedServerConnection,
    /// Received bytes the session has not taken yet: `rx[rx_start..rx_end]`.
    /// No buffer while there are none.
    rx: Vec<u8>,
    rx_start: usize,
    rx_end: usize,
    /// Decrypted bytes the reader had no room for yet, from `held_start`.
    held: Vec<u8>,
    held_start: usize,
    /// Records to send: `tx[tx_start..tx_end]`. No buffer while there are none.
    tx: Vec<u8>,
    tx_start: usize,
    tx_end: usize,
    /// The socket has reported its end.
    eof: bool,
    /// The client's close_notify has come: no more data after `held`.
    peer_closed: bool,
    /// Flushes leave records waiting for [`Deferred::poll_send`].
    deferred: bool,
    /// Deferred: plaintext written since the last send, sealed when sent, so
    /// that what leaves together goes in as few records as fit (16 KiB each)
    /// rather than a record per write.
    plain: Vec<u8>,
    /// A send failed: every later read and write fails the same way.
    failed: Option<io::ErrorKind>,
    /// close_notify has been sealed.
    close_sent: bool,
}

impl std::fmt::Debug for TlsConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConn").finish_non_exhaustive()
    }
}

impl Drop for TlsConn {
    fn drop(&mut self) {
        give_buf(&mut self.rx);
        give_buf(&mut self.tx);
    }
}

impl TlsConn {
    /// Runs the server side of a handshake on `sock`; the server name the
    /// client asked for (SNI, RFC 6066 §3) beside the connection, so that
    /// the connection, boxed for its life, does not carry it.
    pub(crate) async fn accept(
        sock: TcpStream,
        config: Arc<rustls::ServerConfig>,
    ) -> io::Result<(TlsConn, Option<String>)> {
        let session = UnbufferedServerConnection::new(config).map_err(io::Error::other)?;
        let mut tls = TlsConn {
            sock,
            session,
            rx: Vec::new(),
            rx_start: 0,
            rx_end: 0,
            held: Vec::new(),
            held_start: 0,
            tx: Vec::new(),
            tx_start: 0,
            tx_end: 0,
            eof: false,
            peer_closed: false,
            deferred: false,
            plain: Vec::new(),
            failed: None,
            close_sent: false,
        };
        let mut hello = Sni::Incomplete;
        std::future::poll_fn(|cx| tls.poll_handshake(cx, &mut hello)).await?;
        let server_name = match hello {
            Sni::Found(name) => name,
            _ => None,
        };
        Ok((tls, server_name))
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>, hello: &mut Sni) -> Poll<io::Result<()>> {
        loop {
            if *hello == Sni::Incomplete {
                // The session takes the ClientHello's bytes only once it is
                // whole: until then they are all still at the front.
                *hello = client_hello::server_name(&self.rx[..self.rx_end]);
            }
            // Records decrypted here (the request after the client's
            // Finished) are held for the first read.
            while let Step::Data(_) = self.process(&mut |_| 0)? {}
            if !self.session.is_handshaking() {
                break;
            }
            if self.peer_closed {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the client closed during the TLS handshake",
                )));
            }
            ready!(self.poll_send(cx))?;
            if self.eof {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the client left during the TLS handshake",
                )));
            }
            ready!(self.poll_read_sock(cx))?;
        }
        // TLS 1.2's last flight is due before the client may speak; TLS 1.3's
        // tickets can wait for the answer.
        if self.session.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_3) {
            ready!(self.poll_send(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    /// The session, for what the handshake settled (ALPN, resumption).
    pub(crate) fn session(&self) -> &UnbufferedServerConnection {
        &self.session
    }

    pub(crate) fn socket(&self) -> &TcpStream {
        &self.sock
    }

    /// Runs the session over the received bytes until it has a record's
    /// plaintext (given to `sink`, which returns how much it took; the rest
    /// is held) or can do nothing more without input. Records the session
    /// has to send are queued in `tx`.
    fn process(&mut self, sink: &mut dyn FnMut(&[u8]) -> usize) -> io::Result<Step> {
        loop {
            let TlsConn {
                session,
                rx,
                rx_start,
                rx_end,
                held,
                held_start,
                tx,
                tx_end,
                ..
            } = self;
            let UnbufferedStatus { discard, state } =
                session.process_tls_records(&mut rx[*rx_start..*rx_end]);
            let step = match state {
                Err(e) => {
                    *rx_start += discard;
                    return Err(self.fatal(e));
                }
                Ok(ConnectionState::ReadTraffic(mut records)) => {
                    let mut n = 0;
                    while let Some(record) = records.next_record() {
                        let payload = record.map_err(tls_error)?.payload;
                        let took = if held.is_empty() { sink(payload) } else { 0 };
                        n += took;
                        if took < payload.len() {
                            if held.is_empty() {
                                *held_start = 0;
                            }
                            held.extend_from_slice(&payload[took..]);
                        }
                    }
                    Some(Step::Data(n))
                }
                Ok(ConnectionState::EncodeTlsData(mut e)) => {
                    encode(&mut e, tx, tx_end)?;
                    None
                }
                // Sent at the next poll_send: the records are in `tx`.
                Ok(ConnectionState::TransmitTlsData(t)) => {
                    t.done();
                    None
                }
                Ok(ConnectionState::BlockedHandshake) | Ok(ConnectionState::WriteTraffic(_)) => {
                    Some(Step::NeedInput)
                }
                Ok(ConnectionState::PeerClosed) | Ok(ConnectionState::Closed) => {
                    Some(Step::PeerClosed)
                }
                // The server config accepts no early data.
                Ok(other) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("TLS: unexpected state {other:?}"),
                    ))
                }
            };
            self.discard(discard);
            if let Some(step) = step {
                if let Step::PeerClosed = step {
                    self.peer_closed = true;
                }
                return Ok(step);
            }
        }
    }

    /// `n` received bytes taken by the session; the buffer goes back once
    /// none are left.
    fn discard(&mut self, n: usize) {
        self.rx_start += n;
        if self.rx_start == self.rx_end {
            self.rx_start = 0;
            self.rx_end = 0;
            give_buf(&mut self.rx);
        }
    }

    /// Runs the session until it lets application data be written, then
    /// seals `data` (`None`: a close_notify) into `tx`. Records received
    /// meanwhile are held for the reader. Each turn takes a record, a
    /// record to send or a state that ends the loop, so it ends.
    fn seal(&mut self, data: Option<&[u8]>) -> io::Result<()> {
        loop {
            let TlsConn {
                session,
                rx,
                rx_start,
                rx_end,
                held,
                held_start,
                tx,
                tx_end,
                ..
            } = self;
            let UnbufferedStatus { discard, state } =
                session.process_tls_records(&mut rx[*rx_start..*rx_end]);
            let mut done = false;
            match state {
                Err(e) => {
                    *rx_start += discard;
                    return Err(self.fatal(e));
                }
                Ok(ConnectionState::WriteTraffic(mut w)) => {
                    encrypt(&mut w, data, tx, tx_end)?;
                    done = true;
                }
                Ok(ConnectionState::ReadTraffic(mut records)) => {
                    while let Some(record) = records.next_record() {
                        if held.is_empty() {
                            *held_start = 0;
                        }
                        held.extend_from_slice(record.map_err(tls_error)?.payload);
                    }
                }
                Ok(ConnectionState::EncodeTlsData(mut e)) => encode(&mut e, tx, tx_end)?,
                Ok(ConnectionState::TransmitTlsData(t)) => t.done(),
                Ok(ConnectionState::PeerClosed) => self.peer_closed = true,
                Ok(ConnectionState::Closed) => {
                    self.discard(discard);
                    return Err(io::ErrorKind::BrokenPipe.into());
                }
                Ok(other) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("TLS: cannot write in state {other:?}"),
                    ))
                }
            }
            self.discard(discard);
            if done {
                return Ok(());
            }
        }
    }

    /// The alert rustls queued for `e`, sent as far as the socket takes it
    /// now; `e` as an I/O error.
    fn fatal(&mut self, e: rustls::Error) -> io::Error {
        for _ in 0..4 {
            let TlsConn {
                session,
                rx,
                rx_start,
                rx_end,
                tx,
                tx_end,
                ..
            } = self;
            let status = session.process_tls_records(&mut rx[*rx_start..*rx_end]);
            match status.state {
                Ok(ConnectionState::EncodeTlsData(mut enc)) => {
                    if encode(&mut enc, tx, tx_end).is_err() {
                        break;
                    }
                }
                Ok(ConnectionState::TransmitTlsData(t)) => t.done(),
                _ => break,
            }
        }
        self.send_now();
        tls_error(e)
    }

    /// Reads from the socket once into `rx`. What waits to be sent goes
    /// first when the read would wait (unless deferred: then the
    /// connection's task sends it at the end of this wake-up).
    fn poll_read_sock(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.rx.len() < BUF {
            // None, or a partial record kept in a buffer of its size.
            let kept = self.rx_end - self.rx_start;
            let mut buf = if kept < BUF {
                take_buf()
            } else {
                vec![0; RX_MAX]
            };
            buf[..kept].copy_from_slice(&self.rx[self.rx_start..self.rx_end]);
            self.rx_start = 0;
            self.rx_end = kept;
            self.rx = buf;
        }
        if self.rx_end == self.rx.len() {
            if self.rx_start > 0 {
                self.rx.copy_within(self.rx_start..self.rx_end, 0);
                self.rx_end -= self.rx_start;
                self.rx_start = 0;
            } else if self.rx.len() < RX_MAX {
                self.rx.resize(RX_MAX, 0);
            } else {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "TLS: a record or handshake message too large to hold",
                )));
            }
        }
        loop {
            let mut rb = ReadBuf::new(&mut self.rx[self.rx_end..]);
            match Pin::new(&mut self.sock).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => {
                    let n = rb.filled().len();
                    if n == 0 {
                        self.eof = true;
                    }
                    self.rx_end += n;
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    self.release_rx();
                    if !self.deferred && self.tx_end > self.tx_start {
                        // Pending here only means the socket is full; the read
                        // waits either way, and a writable socket wakes us too.
                        if let Poll::Ready(Err(e)) = self.poll_send(cx) {
                            return Poll::Ready(Err(e));
                        }
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    /// Before a wait: the pooled (or grown) buffer back, a partial record
    /// moved to one of its own size.
    fn release_rx(&mut self) {
        if self.rx.len() < BUF {
            return;
        }
        let kept = self.rx_end - self.rx_start;
        let mut buf = std::mem::take(&mut self.rx);
        if kept > 0 {
            self.rx = buf[self.rx_start..self.rx_end].to_vec();
        }
        self.rx_start = 0;
        self.rx_end = kept;
        give_buf(&mut buf);
    }

    /// Sends every record waiting; pending while the socket is full.
    pub(crate) fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let res = self.poll_send_inner(cx);
        if let Poll::Ready(Err(e)) = &res {
            self.failed = Some(e.kind());
        }
        res
    }

    fn poll_send_inner(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(kind) = self.failed {
            return Poll::Ready(Err(kind.into()));
        }
        loop {
            while self.tx_start < self.tx_end {
                let pending = &self.tx[self.tx_start..self.tx_end];
                match ready!(Pin::new(&mut self.sock).poll_write(cx, pending)) {
                    Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Ok(n) => self.tx_start += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
            // All sent: an idle connection holds no send buffer.
            self.tx_start = 0;
            self.tx_end = 0;
            if self.plain.is_empty() {
                give_buf(&mut self.tx);
                return Poll::Ready(Ok(()));
            }
            self.seal_plain()?;
        }
    }

    /// Seals the deferred plaintext into records (at most `PLAIN_LIMIT`
    /// bytes of it wait: they fit a pooled buffer).
    fn seal_plain(&mut self) -> io::Result<()> {
        let plain = std::mem::take(&mut self.plain);
        let res = self.seal(Some(&plain));
        // Given back: an idle connection holds no buffer.
        drop(plain);
        res
    }

    /// Sends what the socket takes now, without waiting: a last word.
    pub(crate) fn send_now(&mut self) {
        if !self.plain.is_empty() {
            let _ = self.seal_plain();
        }
        // Straight to the socket: tokio's try_write would not try a socket
        // whose readiness it has not seen yet.
        while self.tx_start < self.tx_end {
            let pending = IoSlice::new(&self.tx[self.tx_start..self.tx_end]);
            match super::send_iov(self.sock.as_raw_fd(), &[pending]) {
                Ok(n) if n > 0 => self.tx_start += n,
                _ => break,
            }
        }
    }

    /// Hands out held plaintext: how much went into `sink`.
    fn take_held(&mut self, sink: impl FnOnce(&[u8]) -> usize) -> usize {
        let n = sink(&self.held[self.held_start..]);
        self.held_start += n;
        if self.held_start == self.held.len() {
            self.held = Vec::new();
            self.held_start = 0;
        }
        n
    }

    /// Runs the read side until `sink` took some plaintext (Ok(n > 0)) or
    /// the client's close_notify came (Ok(0)).
    fn poll_plain(
        &mut self,
        cx: &mut Context<'_>,
        sink: &mut dyn FnMut(&[u8]) -> usize,
    ) -> Poll<io::Result<usize>> {
        if let Some(kind) = self.failed {
            return Poll::Ready(Err(kind.into()));
        }
        if !self.held.is_empty() {
            return Poll::Ready(Ok(self.take_held(|d| sink(d))));
        }
        loop {
            if self.peer_closed {
                return Poll::Ready(Ok(0));
            }
            if self.rx_end > self.rx_start {
                match self.process(sink)? {
                    Step::Data(0) if !self.held.is_empty() => {
                        return Poll::Ready(Ok(self.take_held(|d| sink(d))))
                    }
                    // An empty record (RFC 8446 §5.4 allows them).
                    Step::Data(0) => continue,
                    Step::Data(n) => return Poll::Ready(Ok(n)),
                    Step::PeerClosed => return Poll::Ready(Ok(0)),
                    Step::NeedInput => {}
                }
            }
            if self.eof {
                // A close without close_notify (RFC 8446 §6.1: truncation).
                return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
            }
            ready!(self.poll_read_sock(cx))?;
        }
    }

    /// Decrypted bytes into `buf`; 0 at the client's close_notify.
    pub(crate) fn poll_read_plain(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // Copied into what `buf` has left, without first zeroing all of it
        // (`initialize_unfilled`).
        let mut sink = |data: &[u8]| {
            let n = data.len().min(buf.remaining());
            buf.put_slice(&data[..n]);
            n
        };
        ready!(self.poll_plain(cx, &mut sink))?;
        Poll::Ready(Ok(()))
    }

    /// Decrypted bytes appended to `buf`, `want` bytes reserved only once
    /// there are some: a connection waiting for its next request holds no
    /// read buffer. 0 at the client's close_notify.
    pub(crate) fn poll_recv(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        want: usize,
    ) -> Poll<io::Result<usize>> {
        let mut sink = |data: &[u8]| {
            buf.reserve(want);
            let n = data.len().min(buf.capacity() - buf.len());
            buf.extend_from_slice(&data[..n]);
            n
        };
        self.poll_plain(cx, &mut sink)
    }

    /// Encrypts `bufs` (pieces that fit one record are joined into one);
    /// sends first only when 64 KiB of records are waiting.
    pub(crate) fn poll_write_plain(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Some(kind) = self.failed {
            return Poll::Ready(Err(kind.into()));
        }
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total == 0 {
            return Poll::Ready(Ok(0));
        }
        if self.deferred {
            if !self.plain.is_empty() && self.plain.len() + total > PLAIN_LIMIT {
                ready!(self.poll_send(cx))?;
            }
            let room = PLAIN_LIMIT - self.plain.len();
            if self.plain.capacity() == 0 {
                self.plain.reserve(total.min(room));
            }
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(room - n);
                self.plain.extend_from_slice(&b[..take]);
                n += take;
            }
            return Poll::Ready(Ok(n));
        }
        if self.tx_end > 0 && self.tx_end + total.min(RECORD) > PLAIN_LIMIT {
            ready!(self.poll_send(cx))?;
        }
        if total <= RECORD && bufs.len() > 1 {
            let res = JOIN.with(|join| {
                let mut join = join.borrow_mut();
                join.clear();
                for b in bufs {
                    join.extend_from_slice(b);
                }
                self.seal(Some(&join))
            });
            return Poll::Ready(res.map(|()| total));
        }
        let mut n = 0;
        for b in bufs.iter().filter(|b| !b.is_empty()) {
            let room = PLAIN_LIMIT.saturating_sub(self.tx_end);
            let take = b.len().min(room);
            if take == 0 {
                break;
            }
            self.seal(Some(&b[..take]))?;
            n += take;
            if take < b.len() {
                break;
            }
        }
        Poll::Ready(Ok(n))
    }

    /// Encrypts `bytes` and sends what the socket takes now: a last word.
    pub(crate) fn write_now(&mut self, bytes: &[u8]) {
        if !self.plain.is_empty() {
            let _ = self.seal_plain();
        }
        let _ = self.seal(Some(bytes));
        self.send_now();
    }

    /// close_notify (RFC 8446 §6.1) after what the session holds, all sent.
    pub(crate) fn poll_close_notify(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // After the plaintext still deferred; queued once.
        if !self.plain.is_empty() {
            ready!(self.poll_send(cx))?;
        }
        if !self.close_sent {
            self.close_sent = true;
            self.seal(None)?;
        }
        self.poll_send(cx)
    }

    /// close_notify (RFC 8446 §6.1), sent as far as the socket takes it now.
    pub(crate) fn close_notify_now(&mut self) {
        if !self.plain.is_empty() {
            let _ = self.seal_plain();
        }
        if !self.close_sent {
            self.close_sent = true;
            let _ = self.seal(None);
        }
        self.send_now();
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.get_mut().poll_read_plain(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_plain(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_plain(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.deferred {
            return Poll::Ready(Ok(()));
        }
        this.poll_send(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_close_notify(cx))?;
        match socket2::SockRef::from(&this.sock).shutdown(std::net::Shutdown::Write) {
            Err(e) if e.kind() != io::ErrorKind::NotConnected => Poll::Ready(Err(e)),
            _ => Poll::Ready(Ok(())),
        }
    }
}

/// A TLS connection whose flushes wait for its task's [`Deferred::poll_send`]
/// (HTTP/2: h2's connection owns one handle, the task that polls it the
/// other). Both are used from that one task, so the lock is never contended.
#[derive(Clone)]
pub(crate) struct Deferred(Arc<Mutex<TlsConn>>);

impl Deferred {
    pub(crate) fn new(mut tls: TlsConn) -> Deferred {
        tls.deferred = true;
        Deferred(Arc::new(Mutex::new(tls)))
    }

    fn lock(&self) -> MutexGuard<'_, TlsConn> {
        // A panic while locked leaves a session that is closed anyway.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends everything written since the last call.
    pub(crate) fn poll_send(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.lock().poll_send(cx)
    }
}

impl AsyncRead for Deferred {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.lock().poll_read_plain(cx, buf)
    }
}

impl AsyncWrite for Deferred {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.lock().poll_write_plain(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.lock().poll_write_plain(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.lock()).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::path::Path;
    use std::process::Command;

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    fn openssl(dir: &Path, args: &[&str]) {
        let out = Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .expect("openssl is missing: run vm-lab/install-deps");
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    }

    /// A test CA and a leaf for `a.test` it signed; the server config with
    /// the leaf and `alpn`, and a client config that trusts the CA and
    /// offers `offer`.
    fn configs(
        dir: &Path,
        alpn: &[&str],
        offer: &[&str],
    ) -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=test-ca"];
        ca.extend(ec);
        ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
        openssl(dir, &ca);
        let mut csr = vec!["req", "-subj", "/CN=a.test", "-keyout", "leaf.key"];
        csr.extend(ec);
        csr.extend(["-out", "leaf.csr"]);
        openssl(dir, &csr);
        std::fs::write(dir.join("san.ext"), "subjectAltName=DNS:a.test\n").unwrap();
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "leaf.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "san.ext",
                "-out",
                "leaf.pem",
            ],
        );
        let loaded =
            crate::tls::load_pair(&dir.join("leaf.pem"), &dir.join("leaf.key"), &[]).unwrap();
        let alpn: Vec<String> = alpn.iter().map(|p| p.to_string()).collect();
        let ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().unwrap();
        let server = crate::tls::server_config(&[loaded], &alpn, ticketer).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        let ca = CertificateDer::from_pem_file(dir.join("ca.pem")).unwrap();
        roots.add(ca).unwrap();
        let mut client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        client.alpn_protocols = offer.iter().map(|p| p.as_bytes().to_vec()).collect();
        (server, Arc::new(client))
    }

    /// A tokio-rustls client's session to `addr` as `a.test`.
    async fn connect(
        addr: std::net::SocketAddr,
        client: Arc<rustls::ClientConfig>,
    ) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("a.test").unwrap();
        tokio_rustls::TlsConnector::from(client)
            .connect(name, tcp)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_session_carries_plaintext_both_ways_and_ends_with_close_notify() {
        let dir = tempfile::tempdir().unwrap();
        let (server, client) = configs(dir.path(), &["h2", "http/1.1"], &["http/1.1"]);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // A request of 200 KiB: more than the 64 KiB of plaintext a write
        // may hold before it must send.
        let request: Vec<u8> = (0..200 * 1024).map(|i| (i % 251) as u8).collect();
        let sent = request.clone();
        let peer = tokio::spawn(async move {
            let mut tls = connect(addr, client).await;
            tls.write_all(&sent).await.unwrap();
            tls.flush().await.unwrap();
            let mut answer = Vec::new();
            // A clean end: the server's close_notify, not a cut connection.
            tls.read_to_end(&mut answer).await.unwrap();
            answer
        });
        let (sock, _) = listener.accept().await.unwrap();
        let (mut conn, _) = TlsConn::accept(sock, server).await.unwrap();
        // RFC 7301 §3.2: the server's first protocol the client offered.
        assert_eq!(conn.session().alpn_protocol(), Some(&b"http/1.1"[..]));
        let mut got = vec![0u8; request.len()];
        conn.read_exact(&mut got).await.unwrap();
        assert!(got == request, "the request arrived whole and in order");
        conn.write_all(b"pong").await.unwrap();
        conn.flush().await.unwrap();
        conn.shutdown().await.unwrap();
        assert_eq!(peer.await.unwrap(), b"pong");
    }

    /// RFC 8446 §5.1: records arrive cut anywhere. The client's flights
    /// and its request come 16 bytes at a time, so the session is handed
    /// partial records (kept across waits) throughout; the server name is
    /// read from the ClientHello once it is whole (RFC 6066 §3).
    #[tokio::test]
    async fn a_handshake_and_request_trickled_in_small_pieces_complete() {
        async fn trickle(tcp: &mut tokio::net::TcpStream, bytes: &[u8]) {
            for piece in bytes.chunks(16) {
                tcp.write_all(piece).await.unwrap();
                tokio::time::sleep(std::time::Duration::from_micros(200)).await;
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let (server, client) = configs(dir.path(), &["http/1.1"], &["http/1.1"]);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = tokio::spawn(async move {
            let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            tcp.set_nodelay(true).unwrap();
            let name = ServerName::try_from("a.test").unwrap();
            let mut conn = rustls::ClientConnection::new(client, name).unwrap();
            let mut buf = vec![0u8; 64 << 10];
            loop {
                let mut out = Vec::new();
                while conn.wants_write() {
                    conn.write_tls(&mut out).unwrap();
                }
                trickle(&mut tcp, &out).await;
                if !conn.is_handshaking() {
                    break;
                }
                let n = tcp.read(&mut buf).await.unwrap();
                assert!(n > 0, "the server left during the handshake");
                conn.read_tls(&mut &buf[..n]).unwrap();
                conn.process_new_packets().unwrap();
            }
            conn.writer().write_all(b"ping").unwrap();
            let mut out = Vec::new();
            while conn.wants_write() {
                conn.write_tls(&mut out).unwrap();
            }
            trickle(&mut tcp, &out).await;
            let mut answer = Vec::new();
            while answer.len() < 4 {
                let n = tcp.read(&mut buf).await.unwrap();
                assert!(n > 0, "the server left before answering");
                conn.read_tls(&mut &buf[..n]).unwrap();
                conn.process_new_packets().unwrap();
                let mut plain = [0u8; 16];
                while let Ok(k) = conn.reader().read(&mut plain) {
                    if k == 0 {
                        break;
                    }
                    answer.extend_from_slice(&plain[..k]);
                }
            }
            answer
        });
        let (sock, _) = listener.accept().await.unwrap();
        let (mut conn, server_name) = TlsConn::accept(sock, server).await.unwrap();
        assert_eq!(server_name.as_deref(), Some("a.test"));
        let mut got = [0u8; 4];
        conn.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        // Nothing left in hand once the request is read: no buffers.
        assert!(conn.rx.is_empty() && conn.held.is_empty(), "buffers kept");
        conn.write_all(b"pong").await.unwrap();
        conn.flush().await.unwrap();
        assert!(conn.tx.is_empty(), "send buffer kept after the flush");
        assert_eq!(peer.await.unwrap(), b"pong");
    }

    /// RFC 8446 §5.1: a record may carry a single byte. 300 of them arrive
    /// together; the server reads one and answers before reading on, so the
    /// answer is sealed with 299 records still unread: they are kept, in
    /// order, for the reads after it.
    #[tokio::test]
    async fn records_unread_when_the_answer_is_written_are_kept_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (server, client) = configs(dir.path(), &["http/1.1"], &["http/1.1"]);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let request: Vec<u8> = (0..300u32).map(|i| b'a' + (i % 26) as u8).collect();
        let sent = request.clone();
        let peer = tokio::spawn(async move {
            let mut tls = connect(addr, client).await;
            // One record per byte, flushed together.
            for b in &sent {
                tls.get_mut().1.writer().write_all(&[*b]).unwrap();
            }
            tls.flush().await.unwrap();
            let mut answer = [0u8; 4];
            tls.read_exact(&mut answer).await.unwrap();
            tls.shutdown().await.unwrap();
            answer
        });
        let (sock, _) = listener.accept().await.unwrap();
        let (mut conn, _) = TlsConn::accept(sock, server).await.unwrap();
        let mut got = vec![0u8; 1];
        conn.read_exact(&mut got).await.unwrap();
        // Let every record arrive before the answer is sealed.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        conn.write_all(b"pong").await.unwrap();
        conn.flush().await.unwrap();
        let mut rest = vec![0u8; request.len() - 1];
        conn.read_exact(&mut rest).await.unwrap();
        got.extend_from_slice(&rest);
        assert!(got == request, "the request's bytes in order");
        assert_eq!(&peer.await.unwrap(), b"pong");
    }

    #[tokio::test]
    async fn a_client_that_leaves_during_the_handshake_is_an_error_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let (server, _) = configs(dir.path(), &["http/1.1"], &[]);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = tokio::spawn(async move {
            let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            // Half a ClientHello's record header, then gone.
            tcp.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
        });
        let (sock, _) = listener.accept().await.unwrap();
        peer.await.unwrap();
        let e = TlsConn::accept(sock, server).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
    }
}
