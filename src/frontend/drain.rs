//! When the connections that need not end by themselves — upgraded tunnels
//! (WebSocket), TCP relays and gRPC calls on HTTP/2 — are ended in order by
//! floatlb (a FIN; a gRPC status in trailers), and not dropped or reset:
//! - a planned handover moves the VIP (or an anycast route) away: half of
//!   `[timeouts] handover` in, so that the close completes while the node's
//!   packets still reach it (before the VIP moves, or while the new master
//!   still passes the old flows back);
//! - the process drains to exit (`SIGTERM` without a VRRP handover, or a
//!   worker retiring after an upgrade in place once it has waited
//!   `handover` for its other connections): half of `handover` before
//!   `[timeouts] drain` ends, so they run as long as the drain allows (as
//!   HAProxy keeps them until `hard-stop-after`) and still end in order.
//!
//! Tunnels and relays also close as soon as no other client connection is
//! left. Not for: keep-alive connections between requests
//! (`proxy::handover` closes those after their current answer).

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::proxy::state::Shared;

/// How often a draining tunnel or relay looks whether it is the last kind of
/// connection left.
const POLL: Duration = Duration::from_millis(20);

/// Whether long-lived connections are to be ended now (see the module).
pub(crate) fn ending(shared: &Shared, shutdown: &watch::Receiver<bool>) -> bool {
    *shutdown.borrow() || shared.handover.moving()
}

/// The latest instant a long-lived connection that learned of [`ending`]
/// now waits before closing in order (see the module).
pub(crate) fn close_by(shared: &Shared) -> Instant {
    let t = &shared.live.load().config.timeouts;
    let margin = t.handover / 2;
    Instant::now()
        + match shared.handover.moving() {
            true => margin,
            false => t.drain.saturating_sub(margin),
        }
}

/// Completes when a tunnel or TCP relay is to be closed in order: once
/// [`ending`], when no client connection but tunnels and relays is left, or
/// at [`close_by`], whichever comes first. Counts it as closed by a drain.
pub(crate) async fn tunnel_close_due(shared: &Shared, shutdown: &watch::Receiver<bool>) {
    // An instant, not a poll: no stream of wake-ups can put it off.
    let mut deadline = None;
    loop {
        // Made before the flags are read: a wake-up in between is not missed.
        let woken = shared.handover.woken();
        if deadline.is_none() && ending(shared, shutdown) {
            deadline = Some(close_by(shared));
        }
        match deadline {
            None => woken.await,
            Some(at) => {
                let others = shared.stats.connections_active.load(Ordering::Relaxed)
                    - shared.stats.tunnels_active.load(Ordering::Relaxed);
                if others <= 0 || Instant::now() >= at {
                    shared
                        .stats
                        .tunnels_closed_by_drain
                        .fetch_add(1, Ordering::Relaxed);
                    return;
                }
                let poll =
                    tokio::time::sleep(POLL.min(at.saturating_duration_since(Instant::now())));
                poll.await;
            }
        }
    }
}
