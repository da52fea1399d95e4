//! A TCP listener's relay through the kernel: bulk bytes move socket → pipe
//! → socket with `splice(2)`, never copied into user space; a read of at most
//! [`SMALL`] bytes (a request, a short answer) is copied through the stack
//! instead, which costs two syscalls where splicing costs three. One pipe per
//! direction, taken from a process-wide budget ([`PIPES_MAX`]) so the
//! descriptors stay inside the process's limit; a connection that finds the
//! budget spent is relayed by copying ([`super::tunnel`]) instead. The rules
//! are the tunnel's: each side's close passed on as a half-close, an idle
//! limit, and closed in order under a drain or planned handover
//! ([`super::drain`]). Not for: TLS or HTTP.

use std::future::poll_fn;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use super::tunnel::{End, Moved};
use crate::proxy::state::Shared;

/// Most pipes open at once (two descriptors each, two pipes per connection):
/// 2048 descriptors, a tenth of the 20000 the process may hold.
pub const PIPES_MAX: usize = 1024;
/// How much one splice moves at most (a pipe's default capacity).
const CHUNK: usize = 64 * 1024;
/// How much one copied read takes at most: a read this size or shorter
/// costs one `recv` and one `send`, and a short one shows the socket
/// drained, where a short splice does not (see [`pump_one`]).
const SMALL: usize = 16 * 1024;
/// How long a relay closed by a drain waits for both sides to close in turn.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

static PIPES_OPEN: AtomicUsize = AtomicUsize::new(0);

/// A pipe counted in the budget, closed and given back when dropped.
pub(crate) struct Pipe {
    pub(crate) read: OwnedFd,
    pub(crate) write: OwnedFd,
    /// Bytes in it, not yet moved on.
    pub(crate) held: usize,
}

impl Pipe {
    /// A pipe, if the budget has room and the kernel gives one.
    pub(crate) fn take() -> Option<Pipe> {
        if PIPES_OPEN.fetch_add(1, Ordering::Relaxed) >= PIPES_MAX {
            PIPES_OPEN.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: pipe2 writes two descriptors into `fds`.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if rc != 0 {
            PIPES_OPEN.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        // SAFETY: pipe2 succeeded: both descriptors are new and ours.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Some(Pipe {
            read,
            write,
            held: 0,
        })
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        PIPES_OPEN.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Two pipes for a connection, or None when the budget is spent.
pub(crate) struct Pipes(Pipe, Pipe);

impl Pipes {
    pub(crate) fn take() -> Option<Pipes> {
        let up = Pipe::take()?;
        let down = Pipe::take()?;
        Some(Pipes(up, down))
    }
}

/// One `splice` between two descriptors, non-blocking.
pub(crate) fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    loop {
        // SAFETY: splice only reads and writes the kernel objects behind the
        // descriptors; null offsets are for pipes and sockets.
        let n = unsafe {
            libc::splice(
                from,
                std::ptr::null_mut(),
                to,
                std::ptr::null_mut(),
                len,
                libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// One direction's state.
struct Half {
    pipe: Pipe,
    eof: bool,
    shut: bool,
    moved: u64,
    /// The last read filled its buffer: more is likely queued, so the next
    /// read splices ([`CHUNK`]) rather than copies ([`SMALL`]).
    bulk: bool,
}

impl Half {
    fn new(pipe: Pipe) -> Half {
        Half {
            pipe,
            eof: false,
            shut: false,
            moved: 0,
            bulk: false,
        }
    }
}

/// Moves what it can from `src` to `dst` without waiting; Ok(true) if
/// anything moved. Small reads are copied through a buffer on the stack and
/// sent at once (two syscalls); a read that fills it switches the direction
/// to splicing until a read comes back short.
fn pump_one(
    cx: &mut Context<'_>,
    src: &TcpStream,
    dst: &TcpStream,
    h: &mut Half,
) -> Poll<io::Result<bool>> {
    let mut moved = false;
    loop {
        if h.pipe.held > 0 {
            if dst.poll_write_ready(cx)?.is_pending() {
                break;
            }
            let (pipe, held) = (h.pipe.read.as_raw_fd(), h.pipe.held);
            match dst.try_io(Interest::WRITABLE, || splice(pipe, dst.as_raw_fd(), held)) {
                Ok(n) => {
                    h.pipe.held -= n;
                    h.moved += n as u64;
                    moved = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            continue;
        }
        if h.eof {
            if !h.shut {
                let _ = socket2::SockRef::from(dst).shutdown(std::net::Shutdown::Write);
                h.shut = true;
                moved = true;
            }
            break;
        }
        if src.poll_read_ready(cx)?.is_pending() {
            break;
        }
        if h.bulk {
            let pipe = h.pipe.write.as_raw_fd();
            match src.try_io(Interest::READABLE, || splice(src.as_raw_fd(), pipe, CHUNK)) {
                Ok(0) => h.eof = true,
                Ok(n) => {
                    h.pipe.held += n;
                    // A short splice may only mean the pipe ran out of slots
                    // (one per socket buffer), not that the socket is
                    // drained: the next read tries again, copying.
                    h.bulk = n == CHUNK;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    h.bulk = false;
                    continue;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
            moved = true;
            continue;
        }
        let mut buf = [MaybeUninit::<u8>::uninit(); SMALL];
        let mut got = 0;
        let read = src.try_io(Interest::READABLE, || {
            let n = socket2::SockRef::from(src).recv(&mut buf)?;
            got = n;
            if 0 < n && n < SMALL {
                // A short read from a TCP socket drained it: reporting
                // WouldBlock clears the readiness (only if no event came
                // since), so the next read waits for the next arrival rather
                // than failing with EAGAIN, as tokio's own reads do.
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(n)
        });
        match read {
            Ok(0) => h.eof = true,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Poll::Ready(Err(e)),
        }
        if got > 0 {
            // SAFETY: recv initialised the first `got` bytes of `buf`.
            let data = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), got) };
            forward(dst, data, h)?;
            h.bulk = got == SMALL;
        }
        moved = true;
    }
    Poll::Ready(Ok(moved))
}

/// Sends `data` to `dst` now; what the socket does not take waits in the
/// (empty) pipe, in order, for the pipe's next splice to `dst`.
fn forward(dst: &TcpStream, data: &[u8], h: &mut Half) -> io::Result<()> {
    let sent = match dst.try_write(data) {
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
        Err(e) => return Err(e),
    };
    h.moved += sent as u64;
    let rest = &data[sent..];
    if rest.is_empty() {
        return Ok(());
    }
    // SAFETY: write only reads `rest` and writes to the pipe we own.
    let n = unsafe { libc::write(h.pipe.write.as_raw_fd(), rest.as_ptr().cast(), rest.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    h.pipe.held += n as usize;
    if n as usize != rest.len() {
        // An empty pipe holds CHUNK bytes, more than SMALL: never short.
        return Err(io::Error::other("the relay's pipe took part of a read"));
    }
    Ok(())
}

/// Relays `client` ⇄ `backend` through `pipes` until the relay ends, as
/// [`super::tunnel::relay_counted`] does by copying; counts into `moved`.
pub(crate) async fn relay(
    client: &TcpStream,
    backend: &TcpStream,
    pipes: Pipes,
    shared: &Shared,
    shutdown: &watch::Receiver<bool>,
    idle: Duration,
    moved: &mut Moved,
) -> End {
    shared.stats.tunnels_total.fetch_add(1, Ordering::Relaxed);
    shared.stats.tunnels_active.fetch_add(1, Ordering::Relaxed);
    let _active = Active(shared);
    let Pipes(up_pipe, down_pipe) = pipes;
    let mut up = Half::new(up_pipe);
    let mut down = Half::new(down_pipe);
    let timer = tokio::time::sleep(idle);
    tokio::pin!(timer);
    let due = super::drain::tunnel_close_due(shared, shutdown);
    tokio::pin!(due);
    let end = loop {
        let pump = poll_fn(|cx| {
            let a = ready_or(pump_one(cx, client, backend, &mut up))?;
            let b = ready_or(pump_one(cx, backend, client, &mut down))?;
            if up.shut && down.shut {
                Poll::Ready(Ok::<bool, io::Error>(true))
            } else if a || b {
                Poll::Ready(Ok(false))
            } else {
                Poll::Pending
            }
        });
        tokio::select! {
            biased;
            step = pump => match step {
                Ok(true) => break End::Closed,
                Ok(false) => timer.as_mut().reset(Instant::now() + idle),
                Err(e) => {
                    tracing::debug!(error = %e, "TCP relay failed");
                    break End::Failed;
                }
            },
            () = &mut timer => break End::Idle,
            () = &mut due => {
                close_in_order(client, backend).await;
                break End::Drained;
            }
        }
    };
    moved.from_client = up.moved;
    moved.to_client = down.moved;
    end
}

/// A pump's result: an error ends the relay; Pending counts as nothing moved.
fn ready_or(p: Poll<io::Result<bool>>) -> Result<bool, io::Error> {
    match p {
        Poll::Ready(r) => r,
        Poll::Pending => Ok(false),
    }
}

/// A FIN to both sides, then their closes (what they still send is
/// dropped), bounded by [`CLOSE_GRACE`]: closing with unread bytes would
/// send a reset.
async fn close_in_order(client: &TcpStream, backend: &TcpStream) {
    for s in [client, backend] {
        let _ = socket2::SockRef::from(s).shutdown(std::net::Shutdown::Write);
    }
    let mut sink = vec![0u8; 16 * 1024];
    let (mut client_open, mut backend_open) = (true, true);
    let _ = tokio::time::timeout(
        CLOSE_GRACE,
        poll_fn(|cx| {
            for (s, open) in [(client, &mut client_open), (backend, &mut backend_open)] {
                while *open {
                    match s.poll_read_ready(cx) {
                        Poll::Pending => break,
                        Poll::Ready(Err(_)) => *open = false,
                        // A would-block read clears the readiness: the next
                        // look registers for the next arrival.
                        Poll::Ready(Ok(())) => match s.try_read(&mut sink) {
                            Ok(0) => *open = false,
                            Ok(_) => {}
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                            Err(_) => *open = false,
                        },
                    }
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

struct Active<'a>(&'a Shared);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.stats.tunnels_active.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The budget holds: past PIPES_MAX no pipe is given, and a dropped one
    /// is given back.
    #[test]
    fn pipe_budget() {
        let before = PIPES_OPEN.load(Ordering::Relaxed);
        let p = Pipe::take().expect("a pipe");
        assert_eq!(PIPES_OPEN.load(Ordering::Relaxed), before + 1);
        drop(p);
        assert_eq!(PIPES_OPEN.load(Ordering::Relaxed), before);
    }

    /// Bytes spliced socket → pipe → socket arrive whole.
    #[tokio::test]
    async fn splices_between_sockets() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        let l2 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = TcpStream::connect(l2.local_addr().unwrap()).await.unwrap();
        let (mut d, _) = l2.accept().await.unwrap();
        let payload: Vec<u8> = (0..300_000).map(|i| (i % 253) as u8).collect();
        let p = payload.clone();
        let writer = tokio::spawn(async move {
            a.write_all(&p).await.unwrap();
            a.shutdown().await.unwrap();
        });
        let mut h = Half::new(Pipe::take().unwrap());
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            d.read_to_end(&mut got).await.unwrap();
            got
        });
        poll_fn(|cx| match pump_one(cx, &b, &c, &mut h) {
            Poll::Ready(Ok(_)) if h.shut => Poll::Ready(()),
            Poll::Ready(Ok(_)) => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Poll::Ready(Err(e)) => panic!("{e}"),
            Poll::Pending => Poll::Pending,
        })
        .await;
        writer.await.unwrap();
        assert_eq!(reader.await.unwrap(), payload);
        assert_eq!(h.moved, payload.len() as u64);
    }

    /// Connected pairs: (a → b) and (c → d); the relay under test pumps b → c.
    async fn pairs() -> (TcpStream, TcpStream, TcpStream, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        let l2 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = TcpStream::connect(l2.local_addr().unwrap()).await.unwrap();
        let (d, _) = l2.accept().await.unwrap();
        (a, b, c, d)
    }

    /// Pumps `src` → `dst` until the half is shut, parked (no self-wake)
    /// whenever nothing moved: a readiness cleared while bytes were still
    /// queued would hang here.
    async fn pump_until_shut(src: TcpStream, dst: TcpStream, mut h: Half) -> Half {
        loop {
            let step = poll_fn(|cx| match pump_one(cx, &src, &dst, &mut h) {
                Poll::Ready(Ok(true)) => Poll::Ready(Ok(())),
                Poll::Ready(Ok(false)) => Poll::Pending,
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            });
            step.await.unwrap();
            if h.shut {
                return h;
            }
        }
    }

    /// Short messages, each answered before the next is sent (a request and
    /// its answer): every one arrives, with the pump waiting on readiness
    /// between them rather than polling.
    #[tokio::test]
    async fn small_reads_wait_for_readiness() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut a, b, c, mut d) = pairs().await;
        let pump = tokio::spawn(pump_until_shut(b, c, Half::new(Pipe::take().unwrap())));
        let mut got = [0u8; 64];
        for i in 0..50u32 {
            let msg = format!("line {i}\n");
            a.write_all(msg.as_bytes()).await.unwrap();
            let mut n = 0;
            while n < msg.len() {
                let r = tokio::time::timeout(Duration::from_secs(5), d.read(&mut got[n..]));
                n += r.await.expect("the relay stalled").unwrap();
            }
            assert_eq!(&got[..n], msg.as_bytes());
        }
        a.shutdown().await.unwrap();
        let h = tokio::time::timeout(Duration::from_secs(5), pump)
            .await
            .expect("EOF not passed on")
            .unwrap();
        assert!(!h.bulk);
        assert_eq!(d.read(&mut got).await.unwrap(), 0, "FIN passed on");
    }

    /// Many reads, small and full, into a receiver that takes its time
    /// behind small socket buffers: what a send does not take waits in the
    /// pipe, and the bytes arrive whole and in order.
    #[tokio::test]
    async fn copied_and_spliced_reads_keep_order() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut a, b, c, mut d) = pairs().await;
        // Fixed buffers (no autotuning) that fill while the reader waits.
        socket2::SockRef::from(&c)
            .set_send_buffer_size(32 * 1024)
            .unwrap();
        socket2::SockRef::from(&d)
            .set_recv_buffer_size(32 * 1024)
            .unwrap();
        let payload: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
        let p = payload.clone();
        let writer = tokio::spawn(async move {
            // Small writes first (copied), then one large one (spliced).
            for chunk in p[..600_000].chunks(700) {
                a.write_all(chunk).await.unwrap();
                tokio::task::yield_now().await;
            }
            a.write_all(&p[600_000..]).await.unwrap();
            a.shutdown().await.unwrap();
        });
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = vec![0u8; 3000];
            tokio::time::sleep(Duration::from_millis(100)).await;
            loop {
                let n = d.read(&mut buf).await.unwrap();
                if n == 0 {
                    return got;
                }
                got.extend_from_slice(&buf[..n]);
            }
        });
        let pump = pump_until_shut(b, c, Half::new(Pipe::take().unwrap()));
        let h = tokio::time::timeout(Duration::from_secs(20), pump)
            .await
            .expect("the relay stalled");
        writer.await.unwrap();
        let got = reader.await.unwrap();
        assert_eq!(got.len(), payload.len());
        assert!(got == payload, "bytes out of order");
        assert_eq!(h.moved, payload.len() as u64);
    }
}
