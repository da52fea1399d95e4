//! When the handover steering (`net::steer`) passes packets on, decided from the VRRP
//! instances' state: the supervisor's side of issue 35's planned handover without a
//! dropped SYN.
//!
//! - **Backup**, and not just handed over: every VIP's entry names the master it hears, with
//!   no timeout (none once that master has missed two adverts: it may be dead). A backup gets no packets for the VIP, so the entry does nothing until the
//!   node takes over; then it is already there when the gratuitous ARP leaves, and the old
//!   master's flows are passed to it from the first packet (no gap while this loop wakes).
//! - **Takeover after a priority-0 advert** (a planned handover): the entry gets a timeout
//!   of `vip-linger` plus [`MARGIN`], as long as the old master keeps the VIP; the kernel
//!   removes it then, or this loop does as soon as the old master says it has drained (a
//!   `[peers]` datagram, relayed by the worker: `crate::peers::Drained`).
//! - **Takeover after silence** (the master died): the entry goes at once, so the dead
//!   node's flows are reset by this node, as without steering, instead of being sent into
//!   the void.
//! - Just stepped down (this node was master less than `vip-linger` plus `timeouts.handover`
//!   ago), INIT or FAULT: no entry. The old master serves its own late flows; it never passes
//!   them on.
//!
//! Not for the packets themselves (`net::steer`) nor for the old master's serving
//! (`proxy::handover`).

use std::net::IpAddr;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config;
use crate::net::steer::Steering;

use super::State;

/// How often the instances' state is read. Only the end of the forwarding after a node's
/// death waits for it; a planned takeover finds the entry in place.
const POLL: Duration = Duration::from_millis(20);

/// Added to `vip-linger` for the forwarding window: the new master takes over a Skew_Time
/// after the old one stepped down, and this loop notices within [`POLL`].
pub const MARGIN: Duration = Duration::from_millis(100);

#[derive(Clone, Copy, PartialEq, Debug)]
enum Entry {
    None,
    /// Backup: the master heard, no timeout.
    Standing(IpAddr),
    /// After a planned takeover: the old master, with a timeout.
    Timed(IpAddr),
}

struct Slot {
    vips: Vec<IpAddr>,
    was: vrrp::State,
    left_master: Option<Instant>,
    entry: Entry,
    /// When the current timed entry was armed.
    armed_at: Option<Instant>,
}

/// Runs the loop on a thread of its own for the supervisor's life.
pub(super) fn spawn(
    state: Arc<State>,
    steering: Arc<Steering>,
    drained: Receiver<Vec<IpAddr>>,
    vrrp: &[config::Vrrp],
    linger: Duration,
    handover: Duration,
) -> std::io::Result<()> {
    let mut slots: Vec<Slot> = vrrp
        .iter()
        .map(|v| Slot {
            vips: v.vips().into_iter().map(|(a, _)| a).collect(),
            was: vrrp::State::Initialize,
            left_master: None,
            entry: Entry::None,
            armed_at: None,
        })
        .collect();
    std::thread::Builder::new()
        .name("floatlb-steer".into())
        .spawn(move || loop {
            let Some(ha) = &state.ha else { return };
            for (inst, slot) in ha.instances().iter().zip(slots.iter_mut()) {
                let want = decide(
                    slot,
                    inst.state(),
                    inst.stats().last_peer(),
                    linger,
                    handover,
                );
                apply(&steering, slot, want, linger);
            }
            match drained.recv_timeout(POLL) {
                Ok(vips) => {
                    for slot in slots.iter_mut() {
                        if let Some(took) = ends_on_drained(slot, &vips) {
                            apply(&steering, slot, Entry::None, linger);
                            tracing::info!(
                                ?vips,
                                "the old master has drained: no more passing its flows back ({:.0} ms after the takeover)",
                                took.as_secs_f64() * 1e3
                            );
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                // The supervisor's state (and the sender in it) is gone: so is the node.
                Err(RecvTimeoutError::Disconnected) => std::thread::sleep(POLL),
            }
        })
        .map(drop)
}

/// Whether the old master's drained message for `vips` ends the slot's forwarding (a timed
/// entry, after a planned takeover, for one of the slot's VIPs); how long it ran.
fn ends_on_drained(slot: &Slot, vips: &[IpAddr]) -> Option<Duration> {
    let Entry::Timed(_) = slot.entry else {
        return None;
    };
    slot.vips
        .iter()
        .any(|v| vips.contains(v))
        .then(|| slot.armed_at.map_or(Duration::ZERO, |t| t.elapsed()))
}

/// The entry an instance's VIPs should have now; updates the slot's memory of the state.
fn decide(
    slot: &mut Slot,
    now: vrrp::State,
    peer: Option<vrrp::PeerAdvert>,
    linger: Duration,
    handover: Duration,
) -> Entry {
    let was = std::mem::replace(&mut slot.was, now);
    match now {
        vrrp::State::Master if was != vrrp::State::Master => match peer {
            Some(p) if p.priority == 0 => Entry::Timed(p.src),
            _ => Entry::None,
        },
        // Whatever was decided at the takeover stands (the kernel ends a timed entry).
        vrrp::State::Master => slot.entry,
        vrrp::State::Backup => {
            if was == vrrp::State::Master {
                slot.left_master = Some(Instant::now());
            }
            let settled = slot
                .left_master
                .is_none_or(|t| t.elapsed() > linger + handover);
            match peer {
                // A master that missed two adverts may be dead: this node may take over
                // after silence, and must not pass its flows to it then.
                Some(p) if p.at.elapsed() > 2 * p.interval => Entry::None,
                Some(p) if settled && p.priority > 0 => Entry::Standing(p.src),
                // The master is stepping down: the entry stays for the takeover to come.
                Some(_) if settled => slot.entry,
                _ => Entry::None,
            }
        }
        _ => Entry::None,
    }
}

fn apply(steering: &Steering, slot: &mut Slot, want: Entry, linger: Duration) {
    if want == slot.entry {
        return;
    }
    let now = match slot.entry {
        Entry::None => None,
        Entry::Standing(to) | Entry::Timed(to) => Some(to),
    };
    for &vip in &slot.vips {
        let done = match (want, now) {
            (Entry::None, None) => Ok(()),
            (Entry::None, Some(now)) => steering.disarm(vip, now),
            (Entry::Standing(to), _) => steering.arm(vip, to, None, now),
            (Entry::Timed(to), _) => steering.arm(vip, to, Some(linger + MARGIN), now),
        };
        match done {
            Ok(()) => tracing::debug!(%vip, entry = ?want, "handover steering"),
            Err(e) => tracing::warn!(%vip, "handover steering: {e}"),
        }
    }
    slot.armed_at = matches!(want, Entry::Timed(_)).then(Instant::now);
    if matches!(want, Entry::Timed(_)) {
        tracing::info!(entry = ?want, "planned takeover: passing the old master's flows back to it for {:?}", linger + MARGIN);
    }
    slot.entry = want;
}

#[cfg(test)]
mod tests {
    use super::*;
    use vrrp::State::{Backup, Master};

    fn slot() -> Slot {
        Slot {
            vips: vec![],
            was: vrrp::State::Initialize,
            left_master: None,
            entry: Entry::None,
            armed_at: None,
        }
    }

    fn peer(priority: u8) -> Option<vrrp::PeerAdvert> {
        Some(vrrp::PeerAdvert {
            src: "198.18.0.3".parse().unwrap(),
            priority,
            interval: Duration::from_millis(10),
            at: Instant::now(),
        })
    }

    const L: Duration = Duration::from_millis(500);

    #[test]
    fn a_backup_points_at_its_master_and_a_planned_takeover_times_it() {
        let mut s = slot();
        let old = "198.18.0.3".parse().unwrap();
        assert_eq!(decide(&mut s, Backup, None, L, L), Entry::None);
        assert_eq!(
            decide(&mut s, Backup, peer(150), L, L),
            Entry::Standing(old)
        );
        s.entry = Entry::Standing(old);
        // The old master's priority-0 advert keeps the entry for the takeover.
        assert_eq!(decide(&mut s, Backup, peer(0), L, L), Entry::Standing(old));
        assert_eq!(decide(&mut s, Master, peer(0), L, L), Entry::Timed(old));
        s.entry = Entry::Timed(old);
        assert_eq!(decide(&mut s, Master, peer(0), L, L), Entry::Timed(old));
    }

    #[test]
    fn the_old_masters_drained_message_ends_only_a_timed_entry_for_its_vips() {
        let old: IpAddr = "198.18.0.3".parse().unwrap();
        let vip: IpAddr = "198.18.0.100".parse().unwrap();
        let other: IpAddr = "198.18.0.200".parse().unwrap();
        let mut s = slot();
        s.vips = vec![vip];
        s.entry = Entry::Standing(old);
        assert_eq!(
            ends_on_drained(&s, &[vip]),
            None,
            "a backup keeps its entry"
        );
        s.entry = Entry::Timed(old);
        s.armed_at = Some(Instant::now());
        assert_eq!(ends_on_drained(&s, &[other]), None, "another VIP's");
        assert!(ends_on_drained(&s, &[other, vip]).is_some());
        // Once ended, the master keeps no entry: the takeover's decision is not made again.
        s.was = Master;
        s.entry = Entry::None;
        assert_eq!(decide(&mut s, Master, peer(0), L, L), Entry::None);
    }

    #[test]
    fn a_silent_master_loses_its_entry_before_the_takeover() {
        let mut s = slot();
        let mut p = peer(150);
        assert!(matches!(
            decide(&mut s, Backup, p, L, L),
            Entry::Standing(_)
        ));
        s.entry = decide(&mut s, Backup, p, L, L);
        if let Some(p) = p.as_mut() {
            p.at = Instant::now() - Duration::from_millis(25);
        }
        assert_eq!(decide(&mut s, Backup, p, L, L), Entry::None);
    }

    #[test]
    fn a_takeover_after_silence_passes_nothing_on() {
        let mut s = slot();
        decide(&mut s, Backup, peer(150), L, L);
        s.entry = Entry::Standing("198.18.0.3".parse().unwrap());
        assert_eq!(decide(&mut s, Master, peer(150), L, L), Entry::None);
    }

    #[test]
    fn a_node_that_just_stepped_down_passes_nothing_on() {
        let mut s = slot();
        s.was = Master;
        assert_eq!(decide(&mut s, Backup, peer(100), L, L), Entry::None);
        assert!(s.left_master.is_some());
        // Later, settled: it points at the new master like any backup.
        s.left_master = Some(Instant::now() - 3 * L);
        assert_eq!(
            decide(&mut s, Backup, peer(100), L, L),
            Entry::Standing("198.18.0.3".parse().unwrap())
        );
    }
}
