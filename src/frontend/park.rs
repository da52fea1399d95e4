//! The parking lot: cleartext HTTP/1 client connections idle between
//! requests for [`h1::PARK_AFTER`] leave their task. The socket leaves the
//! runtime's epoll set and waits, with the connection's state ([`Held`]),
//! in the lot: one thread per process with an epoll set of its own. Bytes
//! arriving on a parked connection give it a new task that resumes
//! [`h1::serve`]; the idle timeout, a drain and a planned handover's closing
//! end a parked connection from the lot, as the serve loop would have.
//!
//! What a parked connection no longer costs: its task (cell and serve
//! future) and its registration with the runtime; what it costs instead:
//! its slot here (216 bytes) and a deadline (24).
//!
//! Not for: TLS connections (measured, a parked one held more memory than
//! one in its task: docs/performance.md; parking one would also need its
//! close_notify sent from here, and its records all sent before it parks),
//! HTTP/2 (one task with its streams), tunnels, and connections whose task
//! carries PROXY protocol facts (a task-local).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use tokio::runtime::Handle;
use tokio::time::Instant;

use super::h1::{self, Conn, Served};
use crate::net::ClientIo;
use crate::proxy::dispatch::Connection;
use crate::proxy::handover::ConnGuard;
use crate::proxy::state::{ActiveConn, Shared};

/// The epoll data of the lot's eventfd.
const WAKE: u64 = u64::MAX;
/// Events taken per `epoll_wait`.
const EVENTS: usize = 256;

/// What keeps a connection open and counted: moved with it from its task
/// to the lot and back, so that a parked connection still holds its
/// `maxconn` permit and is counted as open (stats, the handover's epochs,
/// per-client limits).
pub(crate) struct Held {
    // Fields drop in order: both guards before `conn`, whose `Arc<Shared>`
    // keeps what they borrow alive.
    _epoch: ConnGuard<'static>,
    _active: ActiveConn<'static>,
    _counted: Option<Connection>,
    /// The connection's facts; its `shared` must not be replaced.
    pub conn: Conn,
}

impl Held {
    /// Counts `conn` as open until the returned value drops; `park` says
    /// whether it may be parked when idle.
    pub(crate) fn new(mut conn: Conn, counted: Option<Connection>, park: bool) -> Held {
        conn.park = park && lot().is_some();
        // SAFETY: `Shared` lives in an `Arc` whose pointee never moves, and
        // `conn` holds that Arc in this same value, dropped after the guards
        // (declaration order), so the borrow outlives neither.
        let shared: &'static Shared = unsafe { &*Arc::as_ptr(&conn.shared) };
        Held {
            _active: shared.stats.connection_opened(),
            _epoch: shared.handover.connection_opened(),
            _counted: counted,
            conn,
        }
    }

    /// Whether the connection is to close now: the worker drains, or a
    /// planned handover closes idle connections (they have been idle longer
    /// than `IDLE_CLOSE` by the time they are parked).
    fn closing(&self) -> bool {
        *self.conn.shutdown.borrow() || self.conn.shared.handover.closing()
    }
}

/// Serves HTTP/1 requests on a cleartext connection until it closes or is
/// parked; `idle_since` is when a resumed connection went idle.
///
/// A plain function returning an `async move` block, as `h1::serve`.
#[allow(clippy::manual_async_fn)] // on purpose: see above
pub(crate) fn run(
    mut io: ClientIo,
    held: Held,
    idle_since: Option<Instant>,
) -> impl Future<Output = ()> {
    async move {
        if let Served::Parked(since) = h1::serve(&mut io, &held.conn, idle_since).await {
            park(io, held, since);
        }
    }
}

/// A parked connection.
struct Entry {
    io: ClientIo,
    held: Held,
    /// When it went idle: its idle timeout counts from there.
    since: Instant,
    /// The runtime its next task runs on.
    handle: Handle,
}

struct Slot {
    generation: u32,
    entry: Option<Entry>,
}

#[derive(Default)]
struct Inner {
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Each parked connection's idle deadline, with its slot and generation
    /// (an entry whose connection has left is skipped when it comes up).
    deadlines: BinaryHeap<Reverse<(std::time::Instant, u32, u32)>>,
    parked: usize,
}

impl Inner {
    fn take(&mut self, idx: u32, generation: u32) -> Option<Entry> {
        let slot = self.slots.get_mut(idx as usize)?;
        if slot.generation != generation {
            return None;
        }
        let entry = slot.entry.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(idx);
        self.parked -= 1;
        Some(entry)
    }
}

struct Lot {
    epoll: OwnedFd,
    wake: OwnedFd,
    /// Set with a wake: look at every parked connection's drain and
    /// handover flags.
    recheck: AtomicBool,
    inner: Mutex<Inner>,
    /// The proxies whose drain and handover wake the lot.
    watched: Mutex<Vec<Weak<Shared>>>,
}

/// The process's lot, started on first use; None if the kernel refused
/// its epoll set, eventfd or thread (connections then stay in their tasks).
fn lot() -> Option<&'static Lot> {
    static LOT: OnceLock<Option<&'static Lot>> = OnceLock::new();
    *LOT.get_or_init(|| match Lot::start() {
        Ok(lot) => Some(lot),
        Err(e) => {
            tracing::warn!(error = %e, "cannot start the parking lot; idle connections keep their tasks");
            None
        }
    })
}

impl Lot {
    fn start() -> std::io::Result<&'static Lot> {
        // SAFETY: plain syscalls; each returned descriptor is owned once.
        let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epoll < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let epoll = unsafe { OwnedFd::from_raw_fd(epoll) };
        let wake = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if wake < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let wake = unsafe { OwnedFd::from_raw_fd(wake) };
        epoll_ctl(
            epoll.as_raw_fd(),
            libc::EPOLL_CTL_ADD,
            wake.as_raw_fd(),
            libc::EPOLLIN as u32,
            WAKE,
        )?;
        let lot: &'static Lot = Box::leak(Box::new(Lot {
            epoll,
            wake,
            recheck: AtomicBool::new(false),
            inner: Mutex::new(Inner::default()),
            watched: Mutex::new(Vec::new()),
        }));
        std::thread::Builder::new()
            .name("floatlb-park".into())
            .spawn(move || lot.run())?;
        Ok(lot)
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn kick(&self) {
        let one: u64 = 1;
        // SAFETY: write reads 8 bytes from `one`. A full counter (EAGAIN)
        // already wakes the thread.
        unsafe { libc::write(self.wake.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Makes sure a drain or handover of `shared` wakes the lot.
    fn watch(&self, shared: &Arc<Shared>) {
        let mut watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        watched.retain(|w| w.strong_count() > 0);
        if watched
            .iter()
            .any(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(shared)))
        {
            return;
        }
        watched.push(Arc::downgrade(shared));
        let weak = Arc::downgrade(shared);
        tokio::spawn(async move {
            loop {
                let Some(shared) = weak.upgrade() else { return };
                let woken = shared.handover.woken();
                tokio::pin!(woken);
                // Listening before the look the kick asks for: a change
                // after it wakes this loop again.
                woken.as_mut().enable();
                self_lot().recheck.store(true, Ordering::Release);
                self_lot().kick();
                woken.await;
            }
        });
    }

    fn run(&self) {
        let mut events: Vec<libc::epoll_event> =
            vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS];
        let mut resume = Vec::new();
        let mut close = Vec::new();
        loop {
            let timeout = {
                let inner = self.inner();
                match inner.deadlines.peek() {
                    Some(Reverse((at, _, _))) => {
                        let left = at.saturating_duration_since(std::time::Instant::now());
                        // Rounded up: waking before the deadline only waits again.
                        left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
                    }
                    None => -1,
                }
            };
            // SAFETY: epoll_wait writes at most EVENTS entries into `events`.
            let n = unsafe {
                libc::epoll_wait(
                    self.epoll.as_raw_fd(),
                    events.as_mut_ptr(),
                    EVENTS as i32,
                    timeout,
                )
            };
            let n = if n < 0 { 0 } else { n as usize };
            let mut recheck = false;
            {
                let mut inner = self.inner();
                for ev in &events[..n] {
                    let data = ev.u64;
                    if data == WAKE {
                        let mut count = 0u64;
                        // SAFETY: read writes 8 bytes into `count`.
                        unsafe {
                            libc::read(self.wake.as_raw_fd(), (&mut count as *mut u64).cast(), 8)
                        };
                        recheck |= self.recheck.swap(false, Ordering::AcqRel);
                        continue;
                    }
                    if let Some(e) = inner.take((data >> 32) as u32, data as u32) {
                        self.forget(&e);
                        resume.push(e);
                    }
                }
                let now = std::time::Instant::now();
                while let Some(&Reverse((at, idx, generation))) = inner.deadlines.peek() {
                    if at > now {
                        break;
                    }
                    inner.deadlines.pop();
                    if let Some(e) = inner.take(idx, generation) {
                        self.forget(&e);
                        close.push(e);
                    }
                }
                if recheck {
                    for idx in 0..inner.slots.len() {
                        let slot = &inner.slots[idx];
                        if slot.entry.as_ref().is_some_and(|e| e.held.closing()) {
                            let generation = slot.generation;
                            if let Some(e) = inner.take(idx as u32, generation) {
                                self.forget(&e);
                                close.push(e);
                            }
                        }
                    }
                }
                // Deadlines of connections that left are dropped now and then,
                // so a connection parked again and again leaves no trail.
                if inner.deadlines.len() > 2 * inner.parked + 64 {
                    let heap = std::mem::take(&mut inner.deadlines);
                    let kept = heap
                        .into_iter()
                        .filter(|Reverse((_, idx, generation))| {
                            inner.slots[*idx as usize].generation == *generation
                                && inner.slots[*idx as usize].entry.is_some()
                        })
                        .collect();
                    inner.deadlines = kept;
                }
            }
            for e in resume.drain(..) {
                let Entry {
                    io,
                    held,
                    since,
                    handle,
                } = e;
                handle.spawn(run(io, held, Some(since)));
            }
            // As the serve loop ends an idle connection: closed, nothing sent.
            close.clear();
        }
    }

    /// Takes a connection that leaves the lot out of its epoll set.
    fn forget(&self, e: &Entry) {
        if let Some(fd) = e.io.fd() {
            let _ = epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, 0, 0);
        }
    }
}

fn self_lot() -> &'static Lot {
    lot().expect("the lot is running: a connection was parked in it")
}

fn epoll_ctl(
    epoll: RawFd,
    op: libc::c_int,
    fd: RawFd,
    events: u32,
    data: u64,
) -> std::io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: data };
    // SAFETY: epoll_ctl reads `ev` only.
    if unsafe { libc::epoll_ctl(epoll, op, fd, &mut ev) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Parks an idle connection (its task then ends); one that cannot be
/// parked closes as an idle one would.
fn park(io: ClientIo, held: Held, since: Instant) {
    let Some(lot) = lot() else { return };
    // Out of the runtime's epoll set: a parked cleartext socket costs it nothing.
    let io = match io {
        ClientIo::Polled(a) => ClientIo::Direct(a.into_inner()),
        other => other,
    };
    let Some(fd) = io.fd() else { return };
    lot.watch(&held.conn.shared);
    let deadline = since.into_std() + held.conn.limits().idle;
    let closing = held.closing();
    let mut inner = lot.inner();
    let idx = match inner.free.pop() {
        Some(idx) => idx,
        None => {
            inner.slots.push(Slot {
                generation: 0,
                entry: None,
            });
            (inner.slots.len() - 1) as u32
        }
    };
    let generation = inner.slots[idx as usize].generation;
    let earliest = inner.deadlines.peek().map(|Reverse((at, _, _))| *at);
    inner.slots[idx as usize].entry = Some(Entry {
        io,
        held,
        since,
        handle: Handle::current(),
    });
    inner.parked += 1;
    inner.deadlines.push(Reverse((deadline, idx, generation)));
    let events = (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLONESHOT) as u32;
    let data = (u64::from(idx) << 32) | u64::from(generation);
    if epoll_ctl(lot.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, events, data).is_err() {
        // Closed here, as the idle connection it is.
        let e = inner.take(idx, generation);
        drop(inner);
        drop(e);
        return;
    }
    drop(inner);
    if closing {
        // Flags set before the lot could see this connection.
        lot.recheck.store(true, Ordering::Release);
        lot.kick();
    } else if earliest.is_none_or(|at| deadline < at) {
        lot.kick();
    }
}
