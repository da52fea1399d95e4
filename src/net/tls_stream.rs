//! A client connection on the `[tls]` listener: rustls' server session over
//! the socket, with the handshake and the sending driven here rather than by
//! a generic stream adapter, so that what leaves in one `writev` is chosen:
//!
//! - writes only encrypt into the session; records go to the socket at a
//!   flush, before a read waits, at the close, or when 64 KiB (rustls' buffer
//!   limit) are waiting;
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

use std::io::{self, BufRead, IoSlice, Read, Write};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll};

use bytes::BytesMut;
use rustls::ServerConnection;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Deferred plaintext that makes a write send first (rustls' own limit).
const PLAIN_LIMIT: usize = 64 << 10;

/// A TLS session and its socket.
pub(crate) struct TlsConn {
    sock: TcpStream,
    session: ServerConnection,
    /// The socket has reported its end.
    eof: bool,
    /// Flushes leave records waiting for [`Deferred::poll_send`].
    deferred: bool,
    /// Deferred: plaintext written since the last send, sealed when sent, so
    /// that what leaves together goes in as few records as fit (16 KiB each)
    /// rather than a record per write.
    plain: Vec<u8>,
    /// A send failed: every later read and write fails the same way.
    failed: Option<io::ErrorKind>,
}

impl std::fmt::Debug for TlsConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConn").finish_non_exhaustive()
    }
}

/// The socket as rustls reads and writes it: "would block" once the runtime
/// has been asked to wake the task. Through tokio's `poll_read`/`poll_write`,
/// which also take a short read or write as the end of the socket's
/// readiness, so the next try waits for epoll instead of failing first.
struct Sock<'a, 'b> {
    sock: &'a mut TcpStream,
    cx: &'a mut Context<'b>,
}

fn would_block<T>(p: Poll<io::Result<T>>) -> io::Result<T> {
    match p {
        Poll::Ready(res) => res,
        Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
    }
}

impl Read for Sock<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut rb = ReadBuf::new(buf);
        would_block(Pin::new(&mut *self.sock).poll_read(self.cx, &mut rb))?;
        Ok(rb.filled().len())
    }
}

impl Write for Sock<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        would_block(Pin::new(&mut *self.sock).poll_write(self.cx, buf))
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        would_block(Pin::new(&mut *self.sock).poll_write_vectored(self.cx, bufs))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl TlsConn {
    /// Runs the server side of a handshake on `sock`.
    pub(crate) async fn accept(
        sock: TcpStream,
        config: Arc<rustls::ServerConfig>,
    ) -> io::Result<TlsConn> {
        let session = ServerConnection::new(config).map_err(io::Error::other)?;
        let mut tls = TlsConn {
            sock,
            session,
            eof: false,
            deferred: false,
            plain: Vec::new(),
            failed: None,
        };
        std::future::poll_fn(|cx| tls.poll_handshake(cx)).await?;
        Ok(tls)
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.session.is_handshaking() {
            ready!(self.poll_send(cx))?;
            if self.eof {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the client left during the TLS handshake",
                )));
            }
            ready!(self.poll_fill(cx))?;
        }
        // TLS 1.2's last flight is due before the client may speak; TLS 1.3's
        // tickets can wait for the answer.
        if self.session.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_3) {
            ready!(self.poll_send(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    /// The session, for what the handshake settled (ALPN, resumption).
    pub(crate) fn session(&self) -> &ServerConnection {
        &self.session
    }

    pub(crate) fn socket(&self) -> &TcpStream {
        &self.sock
    }

    /// Reads records from the socket once and decrypts them. What the session
    /// has to send goes first when the read would wait (unless deferred: then
    /// the connection's task sends it at the end of this wake-up).
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let mut sock = Sock {
                sock: &mut self.sock,
                cx,
            };
            match self.session.read_tls(&mut sock) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !self.deferred && self.session.wants_write() {
                        // Pending here only means the socket is full; the read
                        // waits either way, and a writable socket wakes us too.
                        if let Poll::Ready(Err(e)) = self.poll_send(cx) {
                            return Poll::Ready(Err(e));
                        }
                    }
                    return Poll::Pending;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        if let Err(e) = self.session.process_new_packets() {
            // The alert rustls queued, as far as the socket takes it now.
            self.send_now();
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
        }
        Poll::Ready(Ok(()))
    }

    /// Sends every record the session holds; pending while the socket is full.
    pub(crate) fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let res = self.poll_send_inner(cx);
        if let Poll::Ready(Err(e)) = &res {
            self.failed = Some(e.kind());
        }
        res
    }

    /// Seals the deferred plaintext into records, as far as rustls' buffer
    /// takes it.
    fn seal_plain(&mut self) -> io::Result<()> {
        let mut sealed = 0;
        while sealed < self.plain.len() {
            match self.session.writer().write(&self.plain[sealed..])? {
                0 => break,
                n => sealed += n,
            }
        }
        if sealed == self.plain.len() {
            // Given back: an idle connection holds no buffer.
            self.plain = Vec::new();
        } else {
            self.plain.drain(..sealed);
        }
        Ok(())
    }

    fn poll_send_inner(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(kind) = self.failed {
            return Poll::Ready(Err(kind.into()));
        }
        loop {
            if !self.plain.is_empty() {
                self.seal_plain()?;
            }
            if !self.session.wants_write() {
                break;
            }
            let mut sock = Sock {
                sock: &mut self.sock,
                cx,
            };
            match self.session.write_tls(&mut sock) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Sends what the socket takes now, without waiting: a last word.
    pub(crate) fn send_now(&mut self) {
        // Straight to the socket: tokio's try_write would not try a socket
        // whose readiness it has not seen yet.
        struct Now<'a>(&'a TcpStream);
        impl Write for Now<'_> {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                super::send_iov(self.0.as_raw_fd(), &[IoSlice::new(buf)])
            }
            fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
                super::send_iov(self.0.as_raw_fd(), bufs)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let _ = self.seal_plain();
        while self.session.wants_write() {
            match self.session.write_tls(&mut Now(&self.sock)) {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
    }

    /// Decrypted bytes into `buf`; 0 at the client's close_notify.
    pub(crate) fn poll_read_plain(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(kind) = self.failed {
            return Poll::Ready(Err(kind.into()));
        }
        loop {
            // Copied out of the session's buffer into what `buf` has left,
            // without first zeroing all of it (`initialize_unfilled`).
            let mut reader = self.session.reader();
            match reader.fill_buf() {
                Ok(data) => {
                    let n = data.len().min(buf.remaining());
                    buf.put_slice(&data[..n]);
                    reader.consume(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.eof {
                        // rustls reports a close without close_notify itself;
                        // this only guards against reading the socket again.
                        return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
                    }
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
            ready!(self.poll_fill(cx))?;
        }
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
        if let Some(kind) = self.failed {
            return Poll::Ready(Err(kind.into()));
        }
        loop {
            let mut reader = self.session.reader();
            match reader.fill_buf() {
                Ok(data) => {
                    buf.reserve(want);
                    let n = data.len().min(buf.capacity() - buf.len());
                    buf.extend_from_slice(&data[..n]);
                    reader.consume(n);
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.eof {
                        return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
                    }
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
            ready!(self.poll_fill(cx))?;
        }
    }

    /// Encrypts `bufs` (one record for all of them, up to 16 KiB); sends
    /// only when rustls' buffer is full.
    pub(crate) fn poll_write_plain(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Some(kind) = self.failed {
            return Poll::Ready(Err(kind.into()));
        }
        if bufs.iter().all(|b| b.is_empty()) {
            return Poll::Ready(Ok(0));
        }
        if self.deferred {
            if self.plain.len() >= PLAIN_LIMIT {
                ready!(self.poll_send(cx))?;
            }
            if self.plain.capacity() == 0 {
                self.plain.reserve(16 << 10);
            }
            let mut n = 0;
            for b in bufs {
                self.plain.extend_from_slice(b);
                n += b.len();
            }
            return Poll::Ready(Ok(n));
        }
        loop {
            let n = self.session.writer().write_vectored(bufs)?;
            if n > 0 {
                return Poll::Ready(Ok(n));
            }
            ready!(self.poll_send(cx))?;
        }
    }

    /// Encrypts `bytes` and sends what the socket takes now: a last word.
    pub(crate) fn write_now(&mut self, bytes: &[u8]) {
        let _ = self.seal_plain();
        let _ = self.session.writer().write_all(bytes);
        self.send_now();
    }

    /// close_notify (RFC 8446 §6.1) after what the session holds, all sent.
    pub(crate) fn poll_close_notify(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // After the plaintext still deferred; queued once: rustls ignores a second call.
        if !self.plain.is_empty() {
            ready!(self.poll_send(cx))?;
        }
        self.session.send_close_notify();
        self.poll_send(cx)
    }

    /// close_notify (RFC 8446 §6.1), sent as far as the socket takes it now.
    pub(crate) fn close_notify_now(&mut self) {
        let _ = self.seal_plain();
        self.session.send_close_notify();
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
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let connector = tokio_rustls::TlsConnector::from(client);
            let name = ServerName::try_from("a.test").unwrap();
            let mut tls = connector.connect(name, tcp).await.unwrap();
            tls.write_all(&sent).await.unwrap();
            tls.flush().await.unwrap();
            let mut answer = Vec::new();
            // A clean end: the server's close_notify, not a cut connection.
            tls.read_to_end(&mut answer).await.unwrap();
            answer
        });
        let (sock, _) = listener.accept().await.unwrap();
        let mut conn = TlsConn::accept(sock, server).await.unwrap();
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
