//! The client side: listening socket, accept loop and per-connection timeouts.
//!
//! Timeouts follow HAProxy's split: `client-header` bounds the time to receive a
//! request head (slowloris → 408), `idle` bounds a keep-alive connection waiting
//! between requests. hyper's own `header_read_timeout` cannot tell the two apart,
//! so each connection carries a [`ConnPhase`] and a watchdog in its task.

use std::io::IoSlice;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use hyper::header::{HeaderValue, CONNECTION};
use hyper::service::service_fn;
use hyper::Version;
use hyper_util::rt::TokioIo;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

use crate::backend::now_ms;
use crate::h1;
use crate::handover::IDLE_CLOSE;
use crate::live::Shared;
use crate::proxy::{self, ConnCtx};

/// Binds a listening socket. IP_FREEBIND lets it bind a VIP this node does
/// not hold yet, so a backup is ready to serve the moment VRRP moves the VIP.
pub fn bind(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv4() {
        socket.set_freebind_v4(true)?;
    } else {
        socket.set_freebind_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    // Accepted sockets inherit TCP_NODELAY from the listener on Linux: one
    // setsockopt here instead of one per connection.
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog.min(i32::MAX as u32) as i32)?;
    // No immediate ACK for a request: the answer carries it (HAProxy does the
    // same for HTTP listeners). Accepted sockets inherit it; a connection that
    // waits for more of a request turns quick ACKs back on
    // ([`ClientIo::quickack`]), so a client's Nagle does not wait on us.
    // After listen(), which resets the listener's ACK state.
    set_quickack(socket.as_raw_fd(), false)?;
    TcpListener::from_std(socket.into())
}

const PHASE_HEAD: u8 = 0;
const PHASE_ACTIVE: u8 = 1;
const PHASE_IDLE: u8 = 2;

/// Where a client connection is in its request cycle, and since when.
#[derive(Debug)]
pub struct ConnPhase {
    phase: AtomicU8,
    since_ms: AtomicU64,
    /// The current request's raw head had both Content-Length and
    /// Transfer-Encoding (hyper drops the former before we see the headers).
    cl_and_te: AtomicBool,
    /// The connection's task, parked by [`PhaseIo`] until the answer is done.
    idle_waker: Mutex<Option<Waker>>,
    idle_waker_set: AtomicBool,
}

impl ConnPhase {
    /// A new connection waits for its first request head.
    pub fn new() -> Self {
        ConnPhase {
            phase: AtomicU8::new(PHASE_HEAD),
            since_ms: AtomicU64::new(now_ms()),
            cl_and_te: AtomicBool::new(false),
            idle_waker: Mutex::new(None),
            idle_waker_set: AtomicBool::new(false),
        }
    }
    /// Whether the request being handled had both framing headers (clears it).
    pub fn take_cl_and_te(&self) -> bool {
        self.cl_and_te.swap(false, Ordering::Relaxed)
    }
    pub fn set_active(&self) {
        self.phase.store(PHASE_ACTIVE, Ordering::Relaxed);
    }
    pub fn set_idle(&self) {
        self.since_ms.store(now_ms(), Ordering::Relaxed);
        self.phase.store(PHASE_IDLE, Ordering::Relaxed);
        if self.idle_waker_set.swap(false, Ordering::AcqRel) {
            let waker = self
                .idle_waker
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            if let Some(w) = waker {
                w.wake();
            }
        }
    }
    /// Wakes `waker` when the current answer is done ([`Self::set_idle`]).
    fn wake_when_idle(&self, waker: &Waker) {
        let mut slot = self.idle_waker.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *slot {
            Some(w) if w.will_wake(waker) => {}
            _ => *slot = Some(waker.clone()),
        }
        self.idle_waker_set.store(true, Ordering::Release);
    }
    /// Bytes arrived; returns true if they start a new request head.
    fn on_bytes_read(&self) -> bool {
        if self.phase.load(Ordering::Relaxed) == PHASE_IDLE {
            self.since_ms.store(now_ms(), Ordering::Relaxed);
            self.phase.store(PHASE_HEAD, Ordering::Relaxed);
            return true;
        }
        false
    }
    fn is_idle(&self) -> bool {
        self.phase.load(Ordering::Relaxed) == PHASE_IDLE
    }
    /// How long the connection has been idle between requests, if it is.
    fn idle_for(&self) -> Option<Duration> {
        (self.phase.load(Ordering::Relaxed) == PHASE_IDLE).then(|| {
            Duration::from_millis(now_ms().saturating_sub(self.since_ms.load(Ordering::Relaxed)))
        })
    }
    /// When this phase times out (ms since start), if it can.
    fn deadline(&self, client_header: Duration, idle: Duration) -> Option<(u8, u64)> {
        let phase = self.phase.load(Ordering::Relaxed);
        let since = self.since_ms.load(Ordering::Relaxed);
        match phase {
            PHASE_HEAD => Some((phase, since + client_header.as_millis() as u64)),
            PHASE_IDLE => Some((phase, since + idle.as_millis() as u64)),
            _ => None,
        }
    }
}

impl Default for ConnPhase {
    fn default() -> Self {
        Self::new()
    }
}

/// Finds the header names in a raw request head as it arrives, in pieces.
/// hyper resolves a request carrying both Content-Length and
/// Transfer-Encoding by dropping Content-Length; a front-end proxy must refuse
/// such a request instead (request smuggling), so the raw head is watched.
#[derive(Debug)]
struct HeadScan {
    in_head: bool,
    /// Bytes of the current line so far (only the first few matter).
    line: [u8; 24],
    line_len: usize,
    /// The current line's name is known (or it is too long to be one we look for):
    /// jump to the next line feed.
    skipping: bool,
    content_length: bool,
    transfer_encoding: bool,
    /// Some of the head has arrived.
    started: bool,
}

impl HeadScan {
    fn new() -> Self {
        HeadScan {
            in_head: true,
            line: [0; 24],
            line_len: 0,
            skipping: false,
            content_length: false,
            transfer_encoding: false,
            started: false,
        }
    }

    /// Feeds bytes; returns Some(both framing headers seen) when the head ends.
    /// Looks at each line's first bytes up to the colon and jumps over the rest, so the
    /// cost is a line-feed search per header, not work per byte.
    fn feed(&mut self, bytes: &[u8]) -> Option<bool> {
        if !self.in_head {
            return None;
        }
        self.started |= !bytes.is_empty();
        let mut i = 0;
        while i < bytes.len() {
            if self.skipping {
                i += bytes[i..].iter().position(|&b| b == b'\n')?;
            }
            let b = bytes[i];
            i += 1;
            if b == b'\n' {
                if self.line_len == 0 || (self.line_len == 1 && self.line[0] == b'\r') {
                    self.in_head = false;
                    return Some(self.content_length && self.transfer_encoding);
                }
                self.line_len = 0;
                self.skipping = false;
                continue;
            }
            if self.line_len == self.line.len() {
                self.skipping = true;
                continue;
            }
            self.line[self.line_len] = b.to_ascii_lowercase();
            self.line_len += 1;
            if b == b':' {
                self.skipping = true;
                match &self.line[..self.line_len - 1] {
                    b"content-length" => self.content_length = true,
                    b"transfer-encoding" => self.transfer_encoding = true,
                    _ => {}
                }
            }
        }
        None
    }
}

/// A client socket that tells its [`ConnPhase`] when a new request starts arriving.
struct PhaseIo {
    inner: ClientIo,
    /// Bytes the client side's own path read before handing over; read first.
    prefix: BytesMut,
    phase: Arc<ConnPhase>,
    scan: HeadScan,
    /// Quick ACKs were turned on for the current request.
    quick_acked: bool,
}

impl AsyncRead for PhaseIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            self.bytes_read(&buf.filled()[before..]);
            return Poll::Ready(Ok(()));
        }
        // Once a bodyless request's head is in, hyper keeps reading only to see
        // whether the client hangs up before its answer. On a socket not yet
        // registered that read would cost an epoll registration (and its removal
        // on close) for nothing a one-request connection needs: the task is woken
        // when the answer is done instead, and reads then. Like HAProxy without
        // `option abortonclose`, a client leaving is noticed when the answer is.
        if matches!(self.inner, ClientIo::Direct(_))
            && !self.scan.in_head
            && !self.scan.content_length
            && !self.scan.transfer_encoding
            && !self.phase.is_idle()
        {
            self.phase.wake_when_idle(cx.waker());
            return Poll::Pending;
        }
        let res = self.inner.poll_read(cx, buf);
        match res {
            Poll::Ready(Ok(())) => self.bytes_read(&buf.filled()[before..]),
            Poll::Pending => self.more_of_the_request_due(),
            _ => {}
        }
        res
    }
}

impl PhaseIo {
    /// Waiting for the rest of a request's head or for its body: ACK what
    /// came at once (quick ACKs, once per request), or a client whose Nagle
    /// holds the rest until then waits for our delayed ACK, 40 ms or more,
    /// as one that writes a head and then its body does. HAProxy does the same.
    fn more_of_the_request_due(&mut self) {
        let due = if self.scan.in_head {
            self.scan.started
        } else {
            self.scan.content_length || self.scan.transfer_encoding
        };
        if due && !self.quick_acked && !self.phase.is_idle() {
            self.quick_acked = true;
            self.inner.quickack();
        }
    }

    fn bytes_read(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if self.phase.on_bytes_read() {
            self.scan = HeadScan::new();
            self.quick_acked = false;
        }
        if let Some(both) = self.scan.feed(bytes) {
            self.phase.cl_and_te.store(both, Ordering::Relaxed);
        }
    }
}

impl AsyncWrite for PhaseIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let iov = [IoSlice::new(buf)];
        self.inner.poll_write(cx, &iov)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.inner.poll_write(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        true
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(self.inner.shutdown_write())
    }
}

/// A client socket read and written directly, and registered with the
/// runtime's epoll only once it would block (HAProxy's speculative I/O).
///
/// A request usually waits in the socket by the time it is accepted, and the
/// answer fits in the socket's send buffer: a connection that carries one
/// request and closes (HTTP/1.0, `ab` without `-k`) then never costs the two
/// `epoll_ctl` calls (add, and delete on close) a registered socket does. A
/// keep-alive connection registers the first time it waits for a request.
pub(crate) enum ClientIo {
    Direct(std::net::TcpStream),
    Polled(AsyncFd<std::net::TcpStream>),
    /// Only while switching from one to the other, or after registering failed.
    Closed,
}

impl ClientIo {
    /// Moves the socket into the runtime's epoll set; its first readiness
    /// event reports what is already pending, so nothing that arrived before
    /// is missed.
    fn register(&mut self) -> std::io::Result<()> {
        if let ClientIo::Direct(s) = std::mem::replace(self, ClientIo::Closed) {
            // SAFETY: the stream owns its descriptor and moves into the AsyncFd
            // with it, which closes it only when dropped.
            let polled = unsafe {
                AsyncFd::register_with_interest(s, Interest::READABLE | Interest::WRITABLE)
            };
            *self = ClientIo::Polled(polled.map_err(|e| e.into_parts().1)?);
        }
        Ok(())
    }

    /// Runs `op` on the socket: at once while it is not registered (a
    /// would-block result registers it), and once registered when the runtime
    /// reports it ready for reading (or writing, if `write`). A would-block
    /// result clears that readiness, and so does a success `op` reports as
    /// having drained the socket.
    fn poll_op<T>(
        &mut self,
        cx: &mut Context<'_>,
        write: bool,
        mut op: impl FnMut(RawFd) -> std::io::Result<(T, bool)>,
    ) -> Poll<std::io::Result<T>> {
        loop {
            match self {
                ClientIo::Direct(s) => match op(s.as_raw_fd()) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => self.register()?,
                    res => return Poll::Ready(res.map(|(t, _)| t)),
                },
                ClientIo::Polled(a) => {
                    let mut guard = if write {
                        ready!(a.poll_write_ready(cx))?
                    } else {
                        ready!(a.poll_read_ready(cx))?
                    };
                    match op(a.as_raw_fd()) {
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => guard.clear_ready(),
                        res => {
                            if let Ok((_, true)) = res {
                                guard.clear_ready();
                            }
                            return Poll::Ready(res.map(|(t, _)| t));
                        }
                    }
                }
                ClientIo::Closed => {
                    return Poll::Ready(Err(std::io::ErrorKind::NotConnected.into()))
                }
            }
        }
    }

    fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.poll_op(cx, false, |fd| recv_into(fd, buf).map(|()| ((), false)))
    }

    pub(crate) fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.poll_op(cx, true, |fd| send_iov(fd, bufs).map(|n| (n, false)))
    }

    /// Acknowledges what arrived at once, and the next segments too while
    /// the kernel's heuristics allow: for a request still arriving.
    pub(crate) fn quickack(&self) {
        if let Some(fd) = self.fd() {
            let _ = set_quickack(fd, true);
        }
    }

    /// Reads into `buf`'s spare capacity (`want` bytes reserved; a socket
    /// that waits reserves nothing until it is readable, so an idle
    /// connection holds no buffer). A read that got less than it asked for
    /// emptied the socket: its readiness is then cleared, and the next read
    /// waits for epoll instead of failing with EAGAIN first (the runtime keeps
    /// readiness that arrives meanwhile).
    pub(crate) fn poll_recv(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        want: usize,
    ) -> Poll<std::io::Result<usize>> {
        self.poll_op(cx, false, |fd| {
            buf.reserve(want);
            recv_spare(fd, buf).map(|(n, asked)| (n, n > 0 && n < asked))
        })
    }

    fn fd(&self) -> Option<RawFd> {
        match self {
            ClientIo::Direct(s) => Some(s.as_raw_fd()),
            ClientIo::Polled(a) => Some(a.as_raw_fd()),
            ClientIo::Closed => None,
        }
    }

    /// Sends what fits now, ignoring errors: a last word before closing.
    pub(crate) fn send_now(&self, bytes: &[u8]) {
        let Some(fd) = self.fd() else { return };
        // SAFETY: fd is open while self is; send only reads `bytes`.
        unsafe {
            libc::send(
                fd,
                bytes.as_ptr().cast(),
                bytes.len(),
                libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
            );
        }
    }

    pub(crate) fn shutdown_write(&self) -> std::io::Result<()> {
        match self {
            ClientIo::Direct(s) => s.shutdown(std::net::Shutdown::Write),
            ClientIo::Polled(a) => a.get_ref().shutdown(std::net::Shutdown::Write),
            ClientIo::Closed => Ok(()),
        }
    }
}

/// One non-blocking `recv` into the unfilled part of `buf`.
fn recv_into(fd: RawFd, buf: &mut ReadBuf<'_>) -> std::io::Result<()> {
    loop {
        // SAFETY: recv writes at most `dst.len()` bytes into `dst`, and only the
        // bytes it reports are marked initialised.
        let n = unsafe {
            let dst = buf.unfilled_mut();
            libc::recv(fd, dst.as_mut_ptr().cast(), dst.len(), 0)
        };
        if n >= 0 {
            let n = n as usize;
            unsafe { buf.assume_init(n) };
            buf.advance(n);
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// One non-blocking `recv` into `buf`'s spare capacity; returns the bytes
/// read and the bytes asked for.
fn recv_spare(fd: RawFd, buf: &mut BytesMut) -> std::io::Result<(usize, usize)> {
    let dst = buf.spare_capacity_mut();
    let asked = dst.len();
    loop {
        // SAFETY: recv writes at most `asked` bytes into the spare capacity,
        // and only the bytes it reports are then counted as the buffer's.
        let n = unsafe { libc::recv(fd, dst.as_mut_ptr().cast(), asked, 0) };
        if n >= 0 {
            unsafe { buf.set_len(buf.len() + n as usize) };
            return Ok((n as usize, asked));
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// One non-blocking `sendmsg` of `bufs`; a reset peer is an error, not SIGPIPE.
fn send_iov(fd: RawFd, bufs: &[IoSlice<'_>]) -> std::io::Result<usize> {
    // SAFETY: IoSlice is ABI-compatible with iovec, and msghdr only borrows
    // `bufs` for the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = bufs.len().min(libc::UIO_MAXIOV as usize) as _;
    loop {
        let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Turns TCP quick ACKs on or off (TCP_QUICKACK).
fn set_quickack(fd: RawFd, on: bool) -> std::io::Result<()> {
    let v: libc::c_int = on.into();
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from `v`.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Accepts one connection from a non-blocking listener: non-blocking and
/// close-on-exec in the same call, and the peer's address without a
/// `getpeername`.
fn accept_one(
    listener: &std::net::TcpListener,
) -> std::io::Result<(std::net::TcpStream, SocketAddr)> {
    // SAFETY: accept4 writes at most `len` bytes of address into `ss`.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let fd = loop {
        let fd = unsafe {
            libc::accept4(
                listener.as_raw_fd(),
                (&mut ss as *mut libc::sockaddr_storage).cast(),
                &mut len,
                libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            )
        };
        if fd >= 0 {
            break fd;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    // SAFETY: accept4 returned a new descriptor that nothing else owns.
    let stream = unsafe { std::net::TcpStream::from_raw_fd(fd) };
    let peer = sockaddr_to_std(&ss).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "unknown peer address family",
        )
    })?;
    Ok((stream, peer))
}

fn sockaddr_to_std(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match ss.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let a = unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::new(ip.into(), u16::from_be(a.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let a = unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// A listener polled by the runtime but accepted from with [`accept_one`].
fn poll_listener(l: TcpListener) -> std::io::Result<AsyncFd<std::net::TcpListener>> {
    // SAFETY: as for a client socket: the listener's descriptor moves with it.
    unsafe { AsyncFd::register_with_interest(l.into_std()?, Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
}

use crate::h1::REQUEST_TIMEOUT_408;

/// Serves one client connection until it closes, times out or is drained.
async fn serve_connection(
    stream: std::net::TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let fd = stream.as_raw_fd();
    let (max_buf, client_header, idle) = {
        let snap = shared.live.load();
        let c = &snap.config;
        (
            c.proxy.max_header_size.max(8192),
            c.timeouts.client_header,
            c.timeouts.idle,
        )
    };
    let _active = shared.stats.connection_opened();
    let _epoch = shared.handover.connection_opened();
    let mut io = ClientIo::Direct(stream);
    // Bodyless requests are served by the client side's own path; it hands
    // the connection to hyper's server for anything else.
    let limits = h1::Limits {
        client_header,
        idle,
        max_head: max_buf,
    };
    let prefix = match h1::serve(&mut io, peer, &shared, &limits, &shutdown).await {
        h1::Next::Close => return,
        h1::Next::Hyper(read) => read,
    };
    // Boxed: hyper's connection state is twice the size of the rest, and
    // every connection's task would otherwise carry (and move) room for it.
    Box::pin(serve_with_hyper(
        io,
        prefix,
        fd,
        peer,
        shared.clone(),
        shutdown,
        limits,
    ))
    .await;
}

/// Serves the rest of a connection with hyper's server, starting with the
/// bytes the client side's own path already read.
async fn serve_with_hyper(
    io: ClientIo,
    prefix: BytesMut,
    fd: RawFd,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    limits: h1::Limits,
) {
    let h1::Limits {
        client_header,
        idle,
        max_head: max_buf,
    } = limits;
    let phase = Arc::new(ConnPhase::new());
    let ctx = ConnCtx {
        shared: shared.clone(),
        peer,
        phase: phase.clone(),
    };
    let io = TokioIo::new(PhaseIo {
        inner: io,
        prefix,
        phase: phase.clone(),
        scan: HeadScan::new(),
        quick_acked: false,
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .half_close(false)
        .header_read_timeout(None)
        .max_buf_size(max_buf)
        .serve_connection(
            io,
            service_fn(move |req| {
                let ctx = ctx.clone();
                async move {
                    let version = req.version();
                    // Only with the access log on: what the log line needs of the request.
                    let logged = ctx.shared.access_log.as_ref().map(|_| {
                        let h = req.headers();
                        let text = |name| {
                            h.get(name)
                                .and_then(|v: &HeaderValue| v.to_str().ok())
                                .map(str::to_string)
                        };
                        (
                            std::time::SystemTime::now(),
                            std::time::Instant::now(),
                            req.method().clone(),
                            req.uri().to_string(),
                            text(hyper::header::REFERER),
                            text(hyper::header::USER_AGENT),
                        )
                    });
                    let mut resp = proxy::handle(req, ctx.clone()).await?;
                    if let (Some(log), Some((at, t0, method, target, referer, user_agent))) =
                        (&ctx.shared.access_log, logged)
                    {
                        log.log(crate::access_log::Record {
                            client: ctx.peer.ip(),
                            at,
                            method,
                            target,
                            version,
                            status: resp.status().as_u16(),
                            bytes: resp
                                .headers()
                                .get(hyper::header::CONTENT_LENGTH)
                                .and_then(|v| v.to_str().ok()?.parse().ok()),
                            referer,
                            user_agent,
                            duration: t0.elapsed(),
                        });
                    }
                    if ctx.shared.handover.closing() {
                        // Handover: this is the connection's last response; the client
                        // reads it whole and reconnects. Decided before hyper writes the
                        // head, so the head says so. For an HTTP/1.0 client hyper would
                        // append `keep-alive` to a 1.1 response; a 1.0 response without
                        // it makes hyper close instead.
                        resp.headers_mut()
                            .insert(CONNECTION, HeaderValue::from_static("close"));
                        if version == Version::HTTP_10 {
                            *resp.version_mut() = Version::HTTP_10;
                        }
                    }
                    Ok::<_, std::convert::Infallible>(resp)
                }
            }),
        );
    tokio::pin!(conn);

    let mut handover = shared.handover.subscribe();
    let mut closing = *handover.borrow();
    let mut draining = *shutdown.borrow();
    if draining {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        let deadline = phase.deadline(client_header, idle);
        let mut sleep_for = match deadline {
            Some((_, at)) => Duration::from_millis(at.saturating_sub(now_ms())),
            None => idle.max(Duration::from_secs(1)),
        };
        if closing && !draining {
            // Close a connection idle for IDLE_CLOSE: nothing is in flight on it.
            match phase.idle_for() {
                Some(d) if d >= IDLE_CLOSE => {
                    draining = true;
                    conn.as_mut().graceful_shutdown();
                }
                Some(d) => sleep_for = sleep_for.min(IDLE_CLOSE - d),
                None => sleep_for = sleep_for.min(IDLE_CLOSE),
            }
        }
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    if e.is_parse() || e.is_parse_too_large() {
                        // hyper answered 400/414/431 itself.
                        shared.stats.bad_requests.fetch_add(1, Ordering::Relaxed);
                    }
                    tracing::debug!(client = %peer, error = %e, "client connection error");
                }
                return;
            }
            _ = shutdown.changed(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            Ok(()) = handover.changed() => {
                closing = *handover.borrow_and_update();
            }
            _ = tokio::time::sleep(sleep_for) => {
                match phase.deadline(client_header, idle) {
                    Some((PHASE_HEAD, at)) if now_ms() >= at => {
                        shared.stats.client_timeouts.fetch_add(1, Ordering::Relaxed);
                        // hyper is waiting to read, not writing, so the socket is ours
                        // to answer on; dropping `conn` right after closes it.
                        // SAFETY: fd stays open while `conn` (which owns it) is alive.
                        unsafe {
                            libc::send(fd, REQUEST_TIMEOUT_408.as_ptr().cast(), REQUEST_TIMEOUT_408.len(), libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT);
                        }
                        return;
                    }
                    Some((PHASE_IDLE, at)) if now_ms() >= at => {
                        conn.as_mut().graceful_shutdown();
                        draining = true;
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Accepts client connections until shutdown; swaps in a new listener when a
/// reload rebinds. Accept errors such as EMFILE back off instead of spinning.
pub async fn accept_loop(
    listener: TcpListener,
    mut rebind: mpsc::Receiver<TcpListener>,
    shared: Arc<Shared>,
    limit: Arc<Semaphore>,
    shutdown: watch::Receiver<bool>,
) {
    let mut stop = shutdown.clone();
    let mut listener = match poll_listener(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "cannot poll the listening socket");
            return;
        }
    };
    shared.handover.set_listener_fd(listener.as_raw_fd());
    let mut backoff = Duration::from_millis(10);
    let mut last_warn: Option<tokio::time::Instant> = None;
    loop {
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = stop.changed() => return,
        };
        let accepted = tokio::select! {
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
                            shared.handover.set_listener_fd(new.as_raw_fd());
                            listener = new;
                        }
                        Err(e) => tracing::error!(error = %e, "cannot poll the new listening socket; keeping the old one"),
                    }
                }
                continue;
            }
            _ = stop.changed() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(10);
                shared.stats.set_accepting(true);
                tokio::spawn(serve_connection(
                    stream,
                    peer,
                    shared.clone(),
                    shutdown.clone(),
                    permit,
                ));
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

fn is_resource_exhaustion(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) | Some(libc::ENOMEM)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_deadlines() {
        let p = ConnPhase::new();
        let h = Duration::from_secs(10);
        let i = Duration::from_secs(60);
        let (ph, at) = p.deadline(h, i).unwrap();
        assert_eq!(ph, PHASE_HEAD);
        assert!(at >= 10_000);
        p.set_active();
        assert!(
            p.deadline(h, i).is_none(),
            "no client timeout while a request is in flight"
        );
        p.set_idle();
        assert_eq!(p.deadline(h, i).unwrap().0, PHASE_IDLE);
        p.on_bytes_read();
        assert_eq!(p.deadline(h, i).unwrap().0, PHASE_HEAD);
    }

    #[test]
    fn head_scan_finds_both_framing_headers_across_reads() {
        let mut s = HeadScan::new();
        assert_eq!(s.feed(b"POST / HTTP/1.1\r\nContent-Len"), None);
        assert_eq!(s.feed(b"gth: 5\r\nTransfer-Encoding: chunked\r\n"), None);
        assert_eq!(s.feed(b"\r\n0\r\n\r\n"), Some(true));
        assert_eq!(
            s.feed(b"Content-Length: 1\r\n\r\n"),
            None,
            "body bytes are not scanned"
        );
        let mut s = HeadScan::new();
        assert_eq!(
            s.feed(b"GET / HTTP/1.1\r\nX-Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Some(false)
        );
        let mut s = HeadScan::new();
        assert_eq!(
            s.feed(b"GET / HTTP/1.1\nContent-Length: 0\n\n"),
            Some(false)
        );
        // Long lines (past the 24 bytes kept) and a value holding a colon and a
        // header-like text are skipped whole; one byte at a time gives the same answer.
        let head = b"GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:b HTTP/1.1\r\nX-Very-Long-Header-Name-Here: Transfer-Encoding: x\r\nReferer: http://x/content-length:1\r\ncontent-LENGTH: 3\r\ntransfer-encoding:chunked\r\n\r\n";
        let mut s = HeadScan::new();
        assert_eq!(s.feed(head), Some(true));
        let mut s = HeadScan::new();
        let mut got = None;
        for b in head.iter() {
            if let Some(x) = s.feed(std::slice::from_ref(b)) {
                got = Some(x);
            }
        }
        assert_eq!(got, Some(true));
        let mut s = HeadScan::new();
        assert_eq!(
            s.feed(b"GET / HTTP/1.1\r\nX: content-length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Some(false)
        );
    }

    #[test]
    fn exhaustion_errors() {
        assert!(is_resource_exhaustion(&std::io::Error::from_raw_os_error(
            libc::EMFILE
        )));
        assert!(!is_resource_exhaustion(&std::io::Error::from_raw_os_error(
            libc::ECONNABORTED
        )));
    }

    #[tokio::test]
    async fn binds_address_not_on_host() {
        // 198.18.255.254 is not configured here; FREEBIND lets the bind succeed.
        let l = bind("198.18.255.254:0".parse().unwrap(), 16).expect("freebind");
        assert_eq!(l.local_addr().unwrap().ip().to_string(), "198.18.255.254");
    }

    #[tokio::test]
    async fn accepted_sockets_inherit_nodelay_from_the_listener() {
        let l = bind("127.0.0.1:0".parse().unwrap(), 16).unwrap();
        let _client = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().await.unwrap();
        assert!(s.nodelay().unwrap(), "answers would wait for Nagle");
    }

    fn quickack_on(fd: RawFd) -> bool {
        let mut v: libc::c_int = -1;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `v`.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_QUICKACK,
                (&mut v as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
        v != 0
    }

    /// Accepted sockets start with delayed ACKs (the answer carries the
    /// request's ACK), and a connection waiting for more of a request can
    /// turn quick ACKs back on.
    #[tokio::test]
    async fn accepted_sockets_delay_acks_until_more_is_due() {
        let l = bind("127.0.0.1:0".parse().unwrap(), 16).unwrap();
        let _client = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().await.unwrap();
        let io = ClientIo::Direct(s.into_std().unwrap());
        let fd = io.fd().unwrap();
        assert!(!quickack_on(fd), "the request would be acknowledged alone");
        io.quickack();
        assert!(quickack_on(fd));
    }
}
