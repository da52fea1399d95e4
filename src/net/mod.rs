//! Client sockets: the listening socket, the accept loop, and [`ClientIo`],
//! a client connection read and written directly until it would block, or
//! through a TLS session ([`tls_stream`]). What is said on a connection is `h1.rs`'s.

pub mod dns;
pub mod listener;
pub mod proxy_protocol;
#[cfg(test)]
pub(crate) mod script;
pub mod steer;
pub(crate) mod tls_stream;

use std::io::IoSlice;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::task::{ready, Context, Poll};

use bytes::BytesMut;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::net::TcpListener;

pub(crate) use tls_stream::TlsConn;

/// Binds a listening socket. IP_FREEBIND lets it bind a VIP this node does
/// not hold yet, so a backup is ready to serve the moment VRRP moves the VIP.
pub fn bind(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    TcpListener::from_std(bind_std(addr, backlog)?)
}

/// [`bind`] without a runtime: for the supervisor, whose workers inherit it.
pub fn bind_std(addr: SocketAddr, backlog: u32) -> std::io::Result<std::net::TcpListener> {
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
    Ok(socket.into())
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
    /// A connection on the `[tls]` listener, after its handshake: plaintext
    /// in and out through rustls. Boxed: the session state is large.
    Tls(Box<TlsConn>),
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
                ClientIo::Tls(_) | ClientIo::Closed => {
                    return Poll::Ready(Err(std::io::ErrorKind::NotConnected.into()))
                }
            }
        }
    }

    pub(crate) fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        if let ClientIo::Tls(t) = self {
            // Encrypted into the session; sent at [`Self::poll_flush`], so a
            // head and its body (and TLS 1.3's tickets before them) leave in
            // one write.
            return t.poll_write_plain(cx, bufs);
        }
        self.poll_op(cx, true, |fd| send_iov(fd, bufs).map(|n| (n, false)))
    }

    /// Writes with `op` (given the socket, it returns how many bytes it
    /// sent) once the socket is writable: for bytes that do not pass through
    /// user space (`splice(2)` from a pipe). Cleartext connections only.
    pub(crate) fn poll_write_with(
        &mut self,
        cx: &mut Context<'_>,
        mut op: impl FnMut(RawFd) -> std::io::Result<usize>,
    ) -> Poll<std::io::Result<usize>> {
        self.poll_op(cx, true, |fd| op(fd).map(|n| (n, false)))
    }

    /// Sends what a TLS session still holds; nothing to do on a plain socket,
    /// whose writes go straight to the kernel.
    pub(crate) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self {
            ClientIo::Tls(t) => t.poll_send(cx),
            _ => Poll::Ready(Ok(())),
        }
    }

    /// Whether this is a connection on the TLS listener.
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self, ClientIo::Tls(_))
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
        if let ClientIo::Tls(t) = self {
            return t.poll_recv(cx, buf, want);
        }
        self.poll_op(cx, false, |fd| {
            buf.reserve(want);
            recv_spare(fd, buf).map(|(n, asked)| (n, n > 0 && n < asked))
        })
    }

    /// The socket's descriptor, while there is one.
    pub(crate) fn fd(&self) -> Option<RawFd> {
        match self {
            ClientIo::Direct(s) => Some(s.as_raw_fd()),
            ClientIo::Polled(a) => Some(a.as_raw_fd()),
            ClientIo::Tls(t) => Some(t.socket().as_raw_fd()),
            ClientIo::Closed => None,
        }
    }

    /// Sends what fits now, ignoring errors: a last word before closing.
    pub(crate) fn send_now(&mut self, bytes: &[u8]) {
        if let ClientIo::Tls(t) = self {
            t.write_now(bytes);
            return;
        }
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

    /// Before a close: a TLS connection sends what it holds (an answer's
    /// last piece) and its close_notify (RFC 8446 §6.1), in one write; the
    /// close sends the FIN, so no `shutdown` is needed.
    pub(crate) fn poll_finish(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self {
            ClientIo::Tls(t) => t.poll_close_notify(cx),
            _ => Poll::Ready(Ok(())),
        }
    }

    /// Ends our side: a TLS connection sends its close_notify first (RFC 8446
    /// §6.1), as far as the socket takes it now.
    pub(crate) fn shutdown_write(&mut self) -> std::io::Result<()> {
        match self {
            ClientIo::Direct(s) => s.shutdown(std::net::Shutdown::Write),
            ClientIo::Polled(a) => a.get_ref().shutdown(std::net::Shutdown::Write),
            ClientIo::Tls(t) => {
                t.close_notify_now();
                socket2::SockRef::from(t.socket()).shutdown(std::net::Shutdown::Write)
            }
            ClientIo::Closed => Ok(()),
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
pub(crate) fn accept_one(
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
            // An IPv4 client of a dual-stack [::] listener: its own address,
            // so X-Forwarded-For, the access log and hashing see 198.18.0.2,
            // not ::ffff:198.18.0.2.
            if let Some(v4) = ip.to_ipv4_mapped() {
                return Some(SocketAddr::new(v4.into(), u16::from_be(a.sin6_port)));
            }
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
pub(crate) fn poll_listener(l: TcpListener) -> std::io::Result<AsyncFd<std::net::TcpListener>> {
    // SAFETY: as for a client socket: the listener's descriptor moves with it.
    unsafe { AsyncFd::register_with_interest(l.into_std()?, Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
}

pub(crate) fn is_resource_exhaustion(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) | Some(libc::ENOMEM)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
