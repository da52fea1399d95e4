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
//! - **`[[anycast]]`** (with `[peers]`): no VRRP state; a peer about to withdraw its route
//!   says it is leaving (`crate::peers::Kind::Leaving`), and every other node points the
//!   VIPs' entries at that peer's `[peers]` address for `vip-linger` plus [`MARGIN`], or
//!   until the peer says it has drained. The router's ECMP then moves the leaving node's
//!   flows to the others, which pass them back to it.
//!
//! Not for the packets themselves (`net::steer`) nor for the old master's serving
//! (`proxy::handover`).

use std::net::IpAddr;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{self, Config};
use crate::net::steer::{Spec, Steering};

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

/// What a peer said, relayed by the worker (`crate::peers::Drained`).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Word {
    /// The peer at this address has no connection left on these VIPs.
    Drained(IpAddr, Vec<IpAddr>),
    /// The peer at this address is about to stop receiving these VIPs' new flows.
    Leaving(IpAddr, Vec<IpAddr>),
}

impl Word {
    /// A control call's verb (`drained`, `leaving`) and arguments (the peer's address, then
    /// the VIPs).
    pub(super) fn parse(verb: &str, args: &str) -> Result<Word, String> {
        let mut addrs = args.split_whitespace().map(|a| {
            a.parse::<IpAddr>()
                .map_err(|_| format!("{verb}: {a:?} is not an address"))
        });
        let at = addrs
            .next()
            .ok_or_else(|| format!("{verb}: no address"))??;
        let vips = addrs.collect::<Result<Vec<_>, _>>()?;
        match verb {
            "drained" => Ok(Word::Drained(at, vips)),
            "leaving" => Ok(Word::Leaving(at, vips)),
            _ => Err(format!("{verb}: not a steering word")),
        }
    }
}

/// Whether an `[[anycast]]` node steers: it has anycast VIPs and `[peers]` to hear the
/// others' leaving and drained messages on.
pub(super) fn for_anycast(config: &Config) -> bool {
    !config.anycast.is_empty() && config.peers.is_some()
}

/// The table's specs for an `[[anycast]]` node: its VIPs and ports on every interface that
/// is up here except loopback and the VIPs' own (the router's packets come in there).
pub(super) fn anycast_specs(config: &Config, ports: &[u16]) -> Vec<Spec> {
    if !for_anycast(config) {
        return Vec::new();
    }
    let vips: Vec<IpAddr> = config
        .anycast
        .iter()
        .filter_map(|a| a.vip().map(IpAddr::V4))
        .collect();
    let own: Vec<&str> = config
        .anycast
        .iter()
        .map(|a| a.interface.as_str())
        .collect();
    interfaces_up()
        .into_iter()
        .filter(|i| i != "lo" && !own.contains(&i.as_str()))
        .map(|interface| Spec {
            interface,
            vips: vips.clone(),
            ports: ports.to_vec(),
        })
        .collect()
}

/// The names of the interfaces that are up, in this namespace.
fn interfaces_up() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/sys/class/net") else {
        return Vec::new();
    };
    let mut out: Vec<String> = dir
        .filter_map(|e| e.ok())
        .filter(|e| {
            std::fs::read_to_string(e.path().join("operstate"))
                .is_ok_and(|s| s.trim() == "up" || s.trim() == "unknown")
        })
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    out.sort();
    out
}

/// An `[[anycast]]` node's loop: arms an entry for a leaving peer, ends it when the peer has
/// drained (or the kernel does, after `linger` + [`MARGIN`]).
pub(super) fn spawn_anycast(
    steering: Arc<Steering>,
    words: Receiver<Word>,
    linger: Duration,
) -> std::io::Result<()> {
    let ours: Vec<IpAddr> = steering
        .specs()
        .iter()
        .flat_map(|s| s.vips.clone())
        .collect();
    std::thread::Builder::new()
        .name("floatlb-steer".into())
        .spawn(move || {
            // Each VIP's entry as last set (the kernel may have let it expire since).
            let mut now: std::collections::HashMap<IpAddr, (IpAddr, Instant)> =
                Default::default();
            while let Ok(word) = words.recv() {
                match word {
                    Word::Leaving(at, vips) => {
                        for vip in vips.into_iter().filter(|v| ours.contains(v)) {
                            let was = now.get(&vip).map(|e| e.0);
                            match steering.arm(vip, at, Some(linger + MARGIN), was) {
                                Ok(()) => {
                                    now.insert(vip, (at, Instant::now()));
                                    tracing::info!(%vip, peer = %at, "a peer is leaving: passing its flows back to it for at most {:?}", linger + MARGIN);
                                }
                                Err(e) => tracing::warn!(%vip, "handover steering: {e}"),
                            }
                        }
                    }
                    Word::Drained(at, vips) => {
                        for vip in vips {
                            let Some(&(to, since)) = now.get(&vip).filter(|e| e.0 == at) else {
                                continue;
                            };
                            match steering.disarm(vip, to) {
                                Ok(()) => {
                                    now.remove(&vip);
                                    tracing::info!(%vip, peer = %at, "the leaving peer has drained: no more passing its flows back ({:.0} ms after it left)", since.elapsed().as_secs_f64() * 1e3);
                                }
                                Err(e) => tracing::warn!(%vip, "handover steering: {e}"),
                            }
                        }
                    }
                }
            }
        })
        .map(drop)
}

/// Runs the loop on a thread of its own for the supervisor's life.
pub(super) fn spawn(
    state: Arc<State>,
    steering: Arc<Steering>,
    drained: Receiver<Word>,
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
                Ok(Word::Leaving(..)) => {}
                Ok(Word::Drained(_, vips)) => {
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
    fn words_from_the_control_call() {
        let at: IpAddr = "198.18.2.11".parse().unwrap();
        let vip: IpAddr = "198.18.0.100".parse().unwrap();
        assert_eq!(
            Word::parse("leaving", "198.18.2.11 198.18.0.100"),
            Ok(Word::Leaving(at, vec![vip]))
        );
        assert_eq!(
            Word::parse("drained", "198.18.2.11"),
            Ok(Word::Drained(at, vec![]))
        );
        assert!(Word::parse("drained", "").is_err());
        assert!(Word::parse("leaving", "198.18.2.11 nope").is_err());
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
