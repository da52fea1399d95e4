//! When the connections that need not end by themselves — upgraded tunnels
//! (WebSocket), TCP relays and gRPC calls on HTTP/2 — are ended in order by
//! floatlb: when the process drains to exit (`SIGTERM`), or when a planned
//! handover moves the VIP (or an anycast route) away. Each closes after every
//! other client connection has finished, and at the latest half of
//! `[timeouts] handover` into it, so that the close completes while the
//! node's packets still reach it (before the VIP moves, or while the new
//! master still passes the old flows back). A worker retiring after an
//! upgrade in place does neither: its tunnels and streams run on until its
//! own drain.
//!
//! Not for: keep-alive connections between requests (`proxy::handover`
//! closes those after their current answer).

use tokio::sync::watch;
use tokio::time::Instant;

use crate::proxy::state::Shared;

/// Whether long-lived connections are to be ended now (see the module).
pub(crate) fn ending(shared: &Shared, shutdown: &watch::Receiver<bool>) -> bool {
    *shutdown.borrow() || shared.handover.moving()
}

/// The latest instant a long-lived connection that learned of [`ending`]
/// now waits before closing in order: half of `timeouts.handover`, the
/// handover's wait for open connections.
pub(crate) fn close_by(shared: &Shared) -> Instant {
    Instant::now() + shared.live.load().config.timeouts.handover / 2
}
