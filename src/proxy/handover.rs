//! Planned handover that loses no request.
//!
//! When keepalived steps down (priority 0), the backup takes the VIP and
//! announces it with gratuitous ARP; from then on clients' packets for the
//! connections they hold to the old master reach the new master, which has no
//! such connection and answers with a reset. Under load every open keep-alive
//! connection fails once. floatlb avoids that by moving the clients off their
//! connections before the VIP moves, in a way HTTP clients treat as normal:
//!
//! 1. **Close after the current response.** Every response now carries
//!    `Connection: close`, so a keep-alive client reads its complete response
//!    and opens a new connection for the next request (wrk, ab -k, browsers
//!    and HTTP libraries all do this without an error). A connection that sits
//!    idle for [`IDLE_CLOSE`] is closed: nothing was in flight on it. New
//!    connections are still accepted and get one request each.
//! 2. **Wait** until every connection that was open when the handover began
//!    has closed, bounded by `timeouts.handover`.
//! 3. **Stop completing new handshakes without refusing them.** A classic BPF
//!    filter on the listening socket drops bare SYNs; handshakes already under
//!    way complete, and floatlb waits until their one request each is answered
//!    and every client connection is closed (same bound), so nothing is in
//!    flight when the VIP moves: a client still reading when its packets start
//!    reaching the new master would get a reset from it. A dropped SYN is retransmitted by the
//!    client's kernel after its initial RTO (1 s), by which time the VIP
//!    answers from the new master: the client sees a slow connect, not an
//!    error. A closed listener would answer with resets instead.
//! 4. **Hand the VIP over**: a priority-0 advert; a backup becomes master
//!    after its Skew_Time and sends gratuitous ARP. The VIP stays configured
//!    here for `timeouts.vip-linger`, so packets clients sent before the ARP
//!    update reached them still find the host that holds their connection.
//! 5. **Drain** what is still in flight; then (SIGTERM) exit, or (admin
//!    handover) release the VIP, lift the SYN filter and serve as a backup.
//!
//! With the packet steering (`net::steer`, set by [`Handover::set_steered`] when the
//! supervisor installed it) step 3 goes: no SYN is dropped and nothing waits for the
//! connections opened since step 1. The old master steps down after step 2 and keeps
//! serving whatever reaches it (late SYNs from clients that have not seen the gratuitous
//! ARP yet, one request each); the new master takes every new SYN and passes the packets of
//! the old master's flows back to it at L2 until the old master says it has drained
//! ([`Handover::wait_drained`], then the `[peers]` channel) or `vip-linger` has passed.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::futures::Notified;
use tokio::sync::{watch, Notify};

use crate::net::listener::{accept_queue, set_syn_filter};

/// An idle keep-alive connection is closed after this long once a handover began.
pub const IDLE_CLOSE: Duration = Duration::from_millis(100);

/// After a steered step-down, how long no new connection may arrive before the node counts
/// as drained: the new master's gratuitous ARP has reached the clients by then (it leaves a
/// Skew_Time after the step-down), so no late SYN is on its way here.
pub const DRAIN_QUIET: Duration = Duration::from_millis(250);

/// Handover state shared by the listener, the connections and the daemon.
pub struct Handover {
    /// Read once per request (an atomic load, no lock); `closing_tx` wakes idle connections.
    closing: AtomicBool,
    closing_tx: watch::Sender<bool>,
    /// Wakes client connections waiting for a request, so they look at
    /// `closing` (and at the shutdown flag) again: one registration per
    /// connection instead of one per wait.
    wake: Notify,
    /// Connections are counted per epoch (parity); a handover starts a new epoch
    /// and waits for the previous one's count to reach zero.
    epoch: AtomicU64,
    by_epoch: [AtomicUsize; 2],
    /// The listening socket, for the SYN filter (-1 before listening).
    listener_fd: AtomicI32,
    /// The `[tls]` listener's, held back with the cleartext one.
    tls_listener_fd: AtomicI32,
    /// Further `[[listen]]` entries' sockets, held back alike.
    extra_listener_fds: std::sync::Mutex<Vec<RawFd>>,
    running: AtomicBool,
    /// The new master passes this node's late flows back to it (`net::steer`): no SYN filter.
    steered: AtomicBool,
    /// When the last connection opened while closing (ms since `base`, plus one; 0: none).
    last_opened: AtomicU64,
    base: Instant,
}

impl Default for Handover {
    fn default() -> Self {
        Handover {
            closing: AtomicBool::new(false),
            closing_tx: watch::Sender::new(false),
            wake: Notify::new(),
            epoch: AtomicU64::new(0),
            by_epoch: [AtomicUsize::new(0), AtomicUsize::new(0)],
            listener_fd: AtomicI32::new(-1),
            tls_listener_fd: AtomicI32::new(-1),
            extra_listener_fds: Default::default(),
            running: AtomicBool::new(false),
            steered: AtomicBool::new(false),
            last_opened: AtomicU64::new(0),
            base: Instant::now(),
        }
    }
}

/// Held by a connection task for its lifetime.
pub struct ConnGuard<'a> {
    h: &'a Handover,
    slot: usize,
}

impl Drop for ConnGuard<'_> {
    fn drop(&mut self) {
        self.h.by_epoch[self.slot].fetch_sub(1, Ordering::AcqRel);
    }
}

impl Handover {
    /// Whether responses should close their connection.
    pub fn closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }

    /// Whether a planned handover is under way: the VIP (or the anycast
    /// route) moves away, so connections that would not end by themselves
    /// are ended in order (`frontend::drain`). Not so for a worker retiring
    /// after an upgrade ([`Self::close_connections`]).
    pub fn moving(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.closing_tx.subscribe()
    }

    fn set_closing(&self, on: bool) {
        self.closing.store(on, Ordering::Release);
        self.closing_tx.send_replace(on);
        self.wake_connections();
    }

    /// Completes when [`Self::wake_connections`] is called after this was
    /// created (whether or not it was polled by then).
    pub fn woken(&self) -> Notified<'_> {
        self.wake.notified()
    }

    /// Wakes every waiting client connection: a handover began or ended, or
    /// the proxy is shutting down.
    pub fn wake_connections(&self) {
        self.wake.notify_waiters();
    }

    pub fn connection_opened(&self) -> ConnGuard<'_> {
        let slot = (self.epoch.load(Ordering::Acquire) & 1) as usize;
        self.by_epoch[slot].fetch_add(1, Ordering::AcqRel);
        if self.closing() {
            self.last_opened.store(
                self.base.elapsed().as_millis() as u64 + 1,
                Ordering::Relaxed,
            );
        }
        ConnGuard { h: self, slot }
    }

    /// Client connections open now.
    fn open(&self) -> usize {
        self.by_epoch
            .iter()
            .map(|c| c.load(Ordering::Acquire))
            .sum()
    }

    pub fn set_listener_fd(&self, fd: RawFd) {
        self.listener_fd.store(fd, Ordering::Release);
    }

    /// The `[tls]` listener, whose new SYNs are held back too.
    pub fn set_tls_listener_fd(&self, fd: RawFd) {
        self.tls_listener_fd.store(fd, Ordering::Release);
    }

    /// A further `[[listen]]` socket, whose new SYNs are held back too.
    pub fn add_extra_listener_fd(&self, fd: RawFd) {
        self.extra_listener_fds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(fd);
    }

    /// Whether the pair steers packets for the handover (`net::steer`): then step 3 drops
    /// no SYN and the node steps down as soon as its keep-alive connections are closed.
    pub fn set_steered(&self, on: bool) {
        self.steered.store(on, Ordering::Release);
    }

    /// Whether the handover is steered ([`Self::set_steered`]).
    pub fn steered(&self) -> bool {
        self.steered.load(Ordering::Acquire)
    }

    /// Runs steps 1–4 of the sequence above, calling `step_down` for step 4
    /// (it must send the priority-0 adverts and return). Blocking; returns a
    /// report for logs and the admin response, or an error if a handover is
    /// already running.
    pub fn hand_over(
        &self,
        wait_bound: Duration,
        step_down: impl FnOnce() -> String,
    ) -> Result<String, String> {
        if self.running.swap(true, Ordering::AcqRel) {
            return Err("a handover is already in progress".into());
        }
        let t0 = Instant::now();
        // 1. New epoch; everything from now on closes after one response.
        let old = (self.epoch.fetch_add(1, Ordering::AcqRel) & 1) as usize;
        self.set_closing(true);
        // 2. Wait for the connections that were open to finish.
        let deadline = t0 + wait_bound;
        while self.by_epoch[old].load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let left = self.by_epoch[old].load(Ordering::Acquire);
        let waited = t0.elapsed();
        if self.steered.load(Ordering::Acquire) {
            // 3 and 4: the new master takes the new SYNs, and passes the packets of the
            // connections still open here back to this node: step down now, serve on.
            let open = self.open();
            let vrrp = step_down();
            let msg = format!(
                "handover: keep-alive connections closed in {:.1} ms ({left} still open), new SYNs served \
                 (steered: the new master passes this node's flows back), {open} connections open at \
                 step-down after {:.1} ms, {vrrp}",
                waited.as_secs_f64() * 1e3,
                t0.elapsed().as_secs_f64() * 1e3,
            );
            tracing::info!("{msg}");
            return Ok(msg);
        }
        // 3. Drop new SYNs; let handshakes already under way complete.
        let fd = self.listener_fd.load(Ordering::Acquire);
        let filtered = fd >= 0 && set_syn_filter(fd, true).is_ok();
        let tls_fd = self.tls_listener_fd.load(Ordering::Acquire);
        if tls_fd >= 0 && set_syn_filter(tls_fd, true).is_err() {
            tracing::warn!("could not attach the SYN filter to the TLS listener");
        }
        let extras = self
            .extra_listener_fds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for fd in extras {
            if set_syn_filter(fd, true).is_err() {
                tracing::warn!(fd, "could not attach the SYN filter to a [[listen]] socket");
            }
        }
        if !filtered {
            tracing::warn!("could not attach the SYN filter; connections opened during the handover may be reset");
        }
        std::thread::sleep(HANDSHAKE_GRACE);
        // ... and let the connections opened since (one request each) finish, so
        // nothing is in flight when the clients' packets start going elsewhere.
        // A handshake that completed before the filter but is not accepted yet (a busy
        // runtime) is in no count: wait for the accept queue too.
        let deadline = deadline.max(Instant::now() + HANDSHAKE_GRACE);
        while (self.open() > 0 || accept_queue(fd) > 0) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let open_at_step_down = self.open();
        // 4. Priority 0.
        let vrrp = step_down();
        let msg = format!(
            "handover: keep-alive connections closed in {:.1} ms ({left} still open), new SYNs {}, \
             {open_at_step_down} connections open at step-down after {:.1} ms, {vrrp}",
            waited.as_secs_f64() * 1e3,
            if filtered { "held back" } else { "NOT held back" },
            t0.elapsed().as_secs_f64() * 1e3,
        );
        tracing::info!("{msg}");
        Ok(msg)
    }

    /// After a steered step-down: blocks until this node has drained (no client connection
    /// open, and none opened for `quiet`: clients that had not seen the new master's
    /// gratuitous ARP have, so no late SYN is still coming) or `bound` (`vip-linger`) has
    /// passed since the call. Returns the connections still open (0: drained).
    pub fn wait_drained(&self, quiet: Duration, bound: Duration) -> usize {
        let t0 = Instant::now();
        let deadline = t0 + bound;
        loop {
            let last = match self.last_opened.load(Ordering::Relaxed) {
                0 => t0,
                ms => (self.base + Duration::from_millis(ms - 1)).max(t0),
            };
            let open = self.open();
            if open == 0 && last.elapsed() >= quiet {
                return 0;
            }
            if Instant::now() >= deadline {
                return open;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Step 1 alone, for a worker retiring after an upgrade: every
    /// connection closes after its current answer (GOAWAY on HTTP/2), an idle
    /// one after [`IDLE_CLOSE`]. The listening socket is the new worker's now,
    /// so no SYN filter and no VIP move.
    pub fn close_connections(&self) {
        self.set_closing(true);
    }

    /// Ends an admin handover: the node serves again (as a backup).
    pub fn finish(&self) {
        let extras = self
            .extra_listener_fds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let main = [&self.listener_fd, &self.tls_listener_fd].map(|f| f.load(Ordering::Acquire));
        for fd in main.into_iter().chain(extras) {
            if fd >= 0 {
                let _ = set_syn_filter(fd, false);
            }
        }
        self.set_closing(false);
        self.running.store(false, Ordering::Release);
    }
}

/// Time for handshakes whose SYN-ACK is already out to complete (a few RTTs on
/// a LAN) before the VIP moves.
const HANDSHAKE_GRACE: Duration = Duration::from_millis(3);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drained_means_no_connection_and_none_new_for_the_quiet_time() {
        let h = Handover::default();
        h.set_closing(true);
        let quiet = Duration::from_millis(40);
        let late = h.connection_opened();
        let open = std::thread::scope(|s| {
            let j = s.spawn(|| h.wait_drained(quiet, Duration::from_secs(5)));
            std::thread::sleep(Duration::from_millis(60));
            assert!(!j.is_finished(), "drained with a connection open");
            drop(late);
            // Another late SYN served just after: the quiet time starts again.
            drop(h.connection_opened());
            j.join().unwrap()
        });
        assert_eq!(open, 0);
        // Bounded: a connection that stays open ends the wait at the bound, counted.
        let _stuck = h.connection_opened();
        assert_eq!(h.wait_drained(quiet, Duration::from_millis(20)), 1);
    }

    #[test]
    fn handover_waits_for_old_then_all_connections() {
        let h = Handover::default();
        let old = h.connection_opened();
        let stepped = AtomicBool::new(false);
        // Taken before the thread starts: the sleeps below count from here.
        let t0 = Instant::now();
        let t = std::thread::scope(|s| {
            let j = s.spawn(|| {
                h.hand_over(Duration::from_secs(5), || {
                    stepped.store(true, Ordering::SeqCst);
                    "stepped down".into()
                })
                .unwrap();
                t0.elapsed()
            });
            std::thread::sleep(Duration::from_millis(50));
            assert!(h.closing(), "responses close their connections at once");
            // A connection opened during the handover (one request, then closed).
            let new = h.connection_opened();
            drop(old);
            std::thread::sleep(Duration::from_millis(50));
            assert!(
                !stepped.load(Ordering::SeqCst),
                "stepped down while a connection was still open"
            );
            drop(new);
            j.join().unwrap()
        });
        assert!(stepped.load(Ordering::SeqCst));
        assert!(
            t >= Duration::from_millis(100) && t < Duration::from_secs(4),
            "stepped down at {t:?}: not when the last connection closed"
        );
        assert!(
            h.hand_over(Duration::ZERO, String::new).is_err(),
            "second handover refused while running"
        );
        h.finish();
        assert!(!h.closing());
        assert!(h.hand_over(Duration::ZERO, String::new).is_ok());
    }
}
