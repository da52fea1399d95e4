//! The VRRPv3 state machine of RFC 5798 §6.4, sans I/O.
//!
//! [`Fsm::handle`] takes an [`Input`] (a received advert with its IP facts, a
//! timer expiry, shutdown, a tracking change, a planned step-down) and the
//! current time, and returns the [`Action`]s to carry out, in order. It never
//! touches a socket or a clock, so every rule is a unit test on injected time.
//! Not for: encoding (see `packet`) or doing anything (see `instance`).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::packet::{Advert, IpInfo, VRRP_TTL};

/// Protocol state (§6.4), plus FAULT for tracking (keepalived's term).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Initialize,
    Backup,
    Master,
    /// The local service is unhealthy: no adverts, no VIPs.
    Fault,
}

impl State {
    /// The word notify scripts receive.
    pub fn as_str(&self) -> &'static str {
        match self {
            State::Initialize => "STOP",
            State::Backup => "BACKUP",
            State::Master => "MASTER",
            State::Fault => "FAULT",
        }
    }
}

/// The two timers of §6.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    Adver,
    MasterDown,
}

/// What the state machine reacts to.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    Startup,
    Advert {
        ip: IpInfo,
        advert: &'a Advert,
    },
    Timer(Timer),
    Shutdown,
    /// The tracked local service became healthy or unhealthy.
    Track {
        healthy: bool,
    },
    /// Planned handover: stop being master now and let a backup take over.
    StepDown,
    /// FAULT forced from outside, whatever the track-weight (a supervisor
    /// whose proxy keeps dying), or lifted.
    Fault {
        on: bool,
    },
    /// The interface lost or regained its link (keepalived: interface FAULT).
    Link {
        up: bool,
    },
    /// keepalived-style trackers (scripts, other links) changed: the
    /// priority offset and whether one forces FAULT (see `track::Tracking`).
    Tracking(crate::track::Tracking),
}

/// Why a received advert was not used. `as_str` is a metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    BadTtl,
    VridMismatch,
    OwnAdvert,
    /// Received while in INIT or FAULT.
    NotListening,
    /// An advert of the other address family: each family is its own
    /// virtual router (§5.2.9, and RFC 9568 §1).
    WrongFamily,
}

impl DropReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            DropReason::BadTtl => "bad_ttl",
            DropReason::VridMismatch => "vrid_mismatch",
            DropReason::OwnAdvert => "own_advert",
            DropReason::NotListening => "not_listening",
            DropReason::WrongFamily => "wrong_family",
        }
    }
}

/// Side effects for the runner, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    SendAdvert {
        priority: u8,
    },
    ArmTimer {
        timer: Timer,
        at: Instant,
    },
    CancelTimer(Timer),
    AddVips,
    RemoveVips,
    SendGarp,
    Transition {
        from: State,
        to: State,
    },
    Drop(DropReason),
    /// §7.1: the advert's address list differs from ours (logged, counted, still processed).
    AddressMismatch {
        from: IpAddr,
    },
    /// A higher-priority (or equal, higher-IP) master was accepted or discarded; for logs.
    Discarded {
        from: IpAddr,
        priority: u8,
    },
    /// We were master and gave the role up to another router's advert (§6.4.3).
    /// RFC-correct, but on a shared segment it is also what a rogue host
    /// claiming priority 254 achieves: logged loudly and counted.
    YieldedTo {
        from: IpAddr,
        priority: u8,
    },
    /// As backup: time since the previous advert of the same master (§6.4.2
    /// restarts Master_Down_Timer on each). The longest of these gaps says how
    /// close the backup came to a false failover: it takes over once a gap
    /// reaches Master_Down_Interval. Not reported across a state change, a
    /// change of master, or a priority-0 advert.
    AdvertGap(Duration),
}

/// Static parameters of one virtual router.
#[derive(Debug, Clone)]
pub struct FsmConfig {
    pub vrid: u8,
    /// Configured priority (1..=255).
    pub priority: u8,
    /// Advertisement_Interval (a multiple of 10 ms).
    pub advert_interval: Duration,
    pub preempt: bool,
    /// No preemption until this long after startup.
    pub preempt_delay: Duration,
    /// Our primary address: advert source and equal-priority tie-breaker; its
    /// family is the instance's. For IPv6 the interface's link-local address
    /// (§5.1.2.1).
    pub primary_ip: IpAddr,
    pub vips: Vec<IpAddr>,
    /// Lower priority by this while unhealthy; None = enter FAULT instead.
    pub track_weight: Option<u8>,
    /// Require TTL 255 (§7.1).
    pub check_ttl: bool,
    /// After a planned step-down, behave as non-preempting this long so the
    /// new master keeps the VIP.
    pub handover_hold: Duration,
}

/// One virtual router's protocol state.
#[derive(Debug)]
pub struct Fsm {
    cfg: FsmConfig,
    state: State,
    master_adver_interval: Duration,
    healthy: bool,
    link_up: bool,
    forced_fault: bool,
    tracking: crate::track::Tracking,
    started: Option<Instant>,
    hold_until: Option<Instant>,
    /// When the Adver timer is due; the next one is scheduled from this, not
    /// from when the runner woke, so adverts do not drift.
    adver_at: Option<Instant>,
    /// Last time a lower-priority master made us re-announce.
    reclaimed_at: Option<Instant>,
    /// As backup: the master whose adverts we follow and when its last one came.
    last_master_advert: Option<(IpAddr, Instant)>,
}

/// Least time between two re-announcements caused by lower-priority masters,
/// so a flood of them cannot turn into a flood of gratuitous ARP.
pub const RECLAIM_GAP: Duration = Duration::from_millis(100);

impl Fsm {
    pub fn new(cfg: FsmConfig) -> Self {
        let mai = cfg.advert_interval;
        Fsm {
            cfg,
            state: State::Initialize,
            master_adver_interval: mai,
            healthy: true,
            link_up: true,
            forced_fault: false,
            tracking: crate::track::Tracking::default(),
            started: None,
            hold_until: None,
            adver_at: None,
            reclaimed_at: None,
            last_master_advert: None,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn config(&self) -> &FsmConfig {
        &self.cfg
    }

    /// Priority we advertise now (tracking applied): the proxy's own
    /// track-weight, then keepalived's arithmetic for the trackers
    /// (`track::effective_priority`: 1..=254, an owner's 255 untouched).
    pub fn priority(&self) -> u8 {
        let base = match (self.healthy, self.cfg.track_weight) {
            (false, Some(w)) => self.cfg.priority.saturating_sub(w).clamp(1, 254),
            _ => self.cfg.priority,
        };
        crate::track::effective_priority(base, self.tracking.delta)
    }

    /// Interval learned from the current master (§6.1 Master_Adver_Interval).
    pub fn master_adver_interval(&self) -> Duration {
        self.master_adver_interval
    }

    /// §6.1: Skew_Time = ((256 − Priority) × Master_Adver_Interval) / 256.
    pub fn skew_time(&self) -> Duration {
        self.master_adver_interval * (256 - self.priority() as u32) / 256
    }

    /// §6.1: Master_Down_Interval = 3 × Master_Adver_Interval + Skew_Time.
    pub fn master_down_interval(&self) -> Duration {
        self.master_adver_interval * 3 + self.skew_time()
    }

    /// Max Adver Int for our adverts, in centiseconds.
    pub fn advert_interval_cs(&self) -> u16 {
        (self.cfg.advert_interval.as_millis() / 10).clamp(1, 0x0fff) as u16
    }

    fn preempt_active(&self, now: Instant) -> bool {
        self.cfg.preempt
            && self
                .started
                .is_none_or(|s| now >= s + self.cfg.preempt_delay)
            && self.hold_until.is_none_or(|h| now >= h)
    }

    /// Applies one input at time `now`.
    pub fn handle(&mut self, now: Instant, input: Input<'_>) -> Vec<Action> {
        let mut out = Vec::new();
        match input {
            Input::Startup => self.on_startup(now, &mut out),
            Input::Advert { ip, advert } => self.on_advert(now, ip, advert, &mut out),
            Input::Timer(t) => self.on_timer(now, t, &mut out),
            Input::Shutdown => self.on_shutdown(&mut out),
            Input::Track { healthy } => self.on_track(now, healthy, &mut out),
            Input::Link { up } => self.on_link(now, up, &mut out),
            Input::StepDown => self.on_step_down(now, &mut out),
            Input::Fault { on } => self.on_forced_fault(now, on, &mut out),
            Input::Tracking(t) => self.on_tracking(now, t, &mut out),
        }
        out
    }

    fn transition(&mut self, to: State, out: &mut Vec<Action>) {
        let from = self.state;
        self.state = to;
        self.last_master_advert = None;
        out.push(Action::Transition { from, to });
    }

    fn become_master(&mut self, now: Instant, out: &mut Vec<Action>) {
        out.push(Action::CancelTimer(Timer::MasterDown));
        out.push(Action::AddVips);
        out.push(Action::SendAdvert {
            priority: self.priority(),
        });
        out.push(Action::SendGarp);
        let at = now + self.cfg.advert_interval;
        self.adver_at = Some(at);
        out.push(Action::ArmTimer {
            timer: Timer::Adver,
            at,
        });
        self.transition(State::Master, out);
    }

    fn become_backup(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.state == State::Master {
            out.push(Action::CancelTimer(Timer::Adver));
            out.push(Action::RemoveVips);
            self.adver_at = None;
        }
        out.push(Action::ArmTimer {
            timer: Timer::MasterDown,
            at: now + self.master_down_interval(),
        });
        self.transition(State::Backup, out);
    }

    fn on_startup(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.state != State::Initialize {
            return;
        }
        self.started = Some(now);
        if self.faulted() {
            self.transition(State::Fault, out);
        } else if self.cfg.priority == 255 {
            // §6.4.1: the address owner goes straight to Master.
            self.become_master(now, out);
        } else {
            self.master_adver_interval = self.cfg.advert_interval;
            self.become_backup(now, out);
        }
    }

    fn on_timer(&mut self, now: Instant, timer: Timer, out: &mut Vec<Action>) {
        match (self.state, timer) {
            (State::Backup, Timer::MasterDown) => self.become_master(now, out),
            (State::Master, Timer::Adver) => {
                out.push(Action::SendAdvert {
                    priority: self.priority(),
                });
                let interval = self.cfg.advert_interval;
                let mut at = self.adver_at.unwrap_or(now) + interval;
                // Late by more than an interval: skip ahead instead of bursting.
                while at <= now {
                    at += interval;
                }
                self.adver_at = Some(at);
                out.push(Action::ArmTimer {
                    timer: Timer::Adver,
                    at,
                });
            }
            _ => {}
        }
    }

    fn on_advert(&mut self, now: Instant, ip: IpInfo, adv: &Advert, out: &mut Vec<Action>) {
        if ip.src.is_ipv4() != self.cfg.primary_ip.is_ipv4() {
            out.push(Action::Drop(DropReason::WrongFamily));
            return;
        }
        if self.cfg.check_ttl && ip.ttl != VRRP_TTL {
            out.push(Action::Drop(DropReason::BadTtl));
            return;
        }
        if adv.vrid != self.cfg.vrid {
            out.push(Action::Drop(DropReason::VridMismatch));
            return;
        }
        if ip.src == self.cfg.primary_ip {
            out.push(Action::Drop(DropReason::OwnAdvert));
            return;
        }
        if matches!(self.state, State::Initialize | State::Fault) {
            out.push(Action::Drop(DropReason::NotListening));
            return;
        }
        if !same_addresses(&adv.addresses, &self.cfg.vips) {
            out.push(Action::AddressMismatch { from: ip.src });
        }
        let mine = self.priority();
        let learned = Duration::from_millis(10 * adv.max_adver_int.max(1) as u64);
        match self.state {
            State::Backup => {
                if adv.priority == 0 {
                    // §6.4.2: the master is leaving: take over after Skew_Time only.
                    self.last_master_advert = None;
                    out.push(Action::ArmTimer {
                        timer: Timer::MasterDown,
                        at: now + self.skew_time(),
                    });
                } else if !self.preempt_active(now) || adv.priority >= mine {
                    self.master_adver_interval = learned;
                    if let Some((src, at)) = self.last_master_advert {
                        if src == ip.src {
                            out.push(Action::AdvertGap(now.saturating_duration_since(at)));
                        }
                    }
                    self.last_master_advert = Some((ip.src, now));
                    out.push(Action::ArmTimer {
                        timer: Timer::MasterDown,
                        at: now + self.master_down_interval(),
                    });
                } else {
                    out.push(Action::Discarded {
                        from: ip.src,
                        priority: adv.priority,
                    });
                }
            }
            State::Master => {
                if adv.priority == 0 {
                    // §6.4.3: answer a leaving peer at once so backups see us.
                    out.push(Action::SendAdvert { priority: mine });
                    let at = now + self.cfg.advert_interval;
                    self.adver_at = Some(at);
                    out.push(Action::ArmTimer {
                        timer: Timer::Adver,
                        at,
                    });
                } else if adv.priority > mine
                    || (adv.priority == mine && ip.src > self.cfg.primary_ip)
                {
                    self.master_adver_interval = learned;
                    out.push(Action::YieldedTo {
                        from: ip.src,
                        priority: adv.priority,
                    });
                    self.become_backup(now, out);
                } else {
                    out.push(Action::Discarded {
                        from: ip.src,
                        priority: adv.priority,
                    });
                    // Beyond §6.4.3 (keepalived: garp_lower_prio): a lower-priority
                    // router believes it is master, so it has just sent gratuitous ARP
                    // for our VIPs, and it will release them as soon as it hears us.
                    // Clients would be left pointing at a host without the address.
                    // Answer now and re-announce, at most once per RECLAIM_GAP.
                    if self.reclaimed_at.is_none_or(|t| now >= t + RECLAIM_GAP) {
                        self.reclaimed_at = Some(now);
                        out.push(Action::SendAdvert { priority: mine });
                        out.push(Action::SendGarp);
                    }
                }
            }
            State::Initialize | State::Fault => {}
        }
    }

    fn on_shutdown(&mut self, out: &mut Vec<Action>) {
        match self.state {
            State::Master => {
                // §6.4.3: send an advert with priority 0 on shutdown.
                out.push(Action::CancelTimer(Timer::Adver));
                out.push(Action::SendAdvert { priority: 0 });
                out.push(Action::RemoveVips);
            }
            State::Backup => out.push(Action::CancelTimer(Timer::MasterDown)),
            State::Fault | State::Initialize => {}
        }
        self.adver_at = None;
        if self.state != State::Initialize {
            self.transition(State::Initialize, out);
        }
    }

    /// FAULT: the link is down, or the tracked service is unhealthy and no
    /// track-weight says to merely lower the priority.
    fn faulted(&self) -> bool {
        !self.link_up
            || self.forced_fault
            || self.tracking.fault
            || (!self.healthy && self.cfg.track_weight.is_none())
    }

    fn on_tracking(&mut self, now: Instant, t: crate::track::Tracking, out: &mut Vec<Action>) {
        if t == self.tracking {
            return;
        }
        let was = self.faulted();
        let before = self.priority();
        self.tracking = t;
        if self.state == State::Master && !self.faulted() && self.priority() != before {
            // §6.4.3: a master's adverts carry its priority; backups learn a
            // lower one now, so (with preemption, §6.4.2) one that outranks
            // it takes over when its Master_Down_Timer fires.
            out.push(Action::SendAdvert {
                priority: self.priority(),
            });
        }
        self.update_fault(now, was, out);
    }

    fn on_forced_fault(&mut self, now: Instant, on: bool, out: &mut Vec<Action>) {
        if on == self.forced_fault {
            return;
        }
        let was = self.faulted();
        self.forced_fault = on;
        self.update_fault(now, was, out);
    }

    fn on_track(&mut self, now: Instant, healthy: bool, out: &mut Vec<Action>) {
        if healthy == self.healthy {
            return;
        }
        let was = self.faulted();
        self.healthy = healthy;
        if self.cfg.track_weight.is_some() && self.state == State::Master {
            // Tell backups the new priority now rather than at the next tick.
            out.push(Action::SendAdvert {
                priority: self.priority(),
            });
        }
        self.update_fault(now, was, out);
    }

    fn on_link(&mut self, now: Instant, up: bool, out: &mut Vec<Action>) {
        if up == self.link_up {
            return;
        }
        let was = self.faulted();
        self.link_up = up;
        self.update_fault(now, was, out);
    }

    fn update_fault(&mut self, now: Instant, was: bool, out: &mut Vec<Action>) {
        match (was, self.faulted(), self.state) {
            (false, true, State::Master) => {
                out.push(Action::CancelTimer(Timer::Adver));
                out.push(Action::SendAdvert { priority: 0 });
                out.push(Action::RemoveVips);
                self.adver_at = None;
                self.transition(State::Fault, out);
            }
            (false, true, State::Backup) => {
                out.push(Action::CancelTimer(Timer::MasterDown));
                self.transition(State::Fault, out);
            }
            (true, false, State::Fault) => {
                self.master_adver_interval = self.cfg.advert_interval;
                self.become_backup(now, out);
            }
            _ => {}
        }
    }

    fn on_step_down(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.state != State::Master {
            return;
        }
        out.push(Action::CancelTimer(Timer::Adver));
        out.push(Action::SendAdvert { priority: 0 });
        out.push(Action::RemoveVips);
        self.adver_at = None;
        self.hold_until = Some(now + self.cfg.handover_hold);
        out.push(Action::ArmTimer {
            timer: Timer::MasterDown,
            at: now + self.master_down_interval(),
        });
        self.transition(State::Backup, out);
    }

    /// A reload: new parameters for the same virtual router (same VRID and
    /// primary address). The role is kept, so a master keeps its VIPs while
    /// only its priority or interval change. A master announces the new values
    /// at once (§6.4.3 adverts carry the master's priority and Max Adver Int;
    /// backups learn Master_Adver_Interval from them, §6.4.2); a backup's new
    /// priority counts from the next advert on (Skew_Time, §6.1), and with
    /// preemption a backup that now outranks the master discards its adverts
    /// and takes over when Master_Down_Timer fires (§6.4.2).
    pub fn reconfigure(&mut self, now: Instant, cfg: FsmConfig) -> Vec<Action> {
        let mut out = Vec::new();
        let was = self.faulted();
        let vips_changed = !same_addresses(&cfg.vips, &self.cfg.vips);
        self.cfg = cfg;
        if self.state == State::Master {
            if vips_changed {
                out.push(Action::AddVips);
                out.push(Action::SendGarp);
            }
            out.push(Action::SendAdvert {
                priority: self.priority(),
            });
            let at = now + self.cfg.advert_interval;
            self.adver_at = Some(at);
            out.push(Action::ArmTimer {
                timer: Timer::Adver,
                at,
            });
        }
        // A track-weight set or removed changes whether poor health means FAULT.
        self.update_fault(now, was, &mut out);
        out
    }
}

fn same_addresses(a: &[IpAddr], b: &[IpAddr]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.contains(x))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const ME: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 3));
    const LOWER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));
    const HIGHER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 4));
    const VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 100));

    fn cfg(priority: u8) -> FsmConfig {
        FsmConfig {
            vrid: 51,
            priority,
            advert_interval: Duration::from_millis(100),
            preempt: true,
            preempt_delay: Duration::ZERO,
            primary_ip: ME,
            vips: vec![VIP],
            track_weight: None,
            check_ttl: true,
            handover_hold: Duration::from_secs(30),
        }
    }

    fn adv(priority: u8, int_cs: u16) -> Advert {
        Advert {
            vrid: 51,
            priority,
            max_adver_int: int_cs,
            addresses: vec![VIP],
        }
    }

    fn from(src: IpAddr) -> IpInfo {
        IpInfo {
            src,
            dst: crate::packet::VRRP_GROUP.into(),
            ttl: 255,
        }
    }

    fn armed(actions: &[Action], timer: Timer) -> Option<Instant> {
        actions.iter().rev().find_map(|a| match a {
            Action::ArmTimer { timer: t, at } if *t == timer => Some(*at),
            _ => None,
        })
    }

    fn backup(priority: u8, t0: Instant) -> Fsm {
        let mut f = Fsm::new(cfg(priority));
        f.handle(t0, Input::Startup);
        assert_eq!(f.state(), State::Backup);
        f
    }

    /// A master of priority 150 whose tracking has a weight of 60.
    fn weighted_master(t0: Instant) -> Fsm {
        let mut c = cfg(150);
        c.track_weight = Some(60);
        let mut f = Fsm::new(c);
        f.handle(t0, Input::Startup);
        f.handle(t0, Input::Timer(Timer::MasterDown));
        assert_eq!(f.state(), State::Master);
        f
    }

    fn master(priority: u8, t0: Instant) -> Fsm {
        let mut f = backup(priority, t0);
        f.handle(t0, Input::Timer(Timer::MasterDown));
        assert_eq!(f.state(), State::Master);
        f
    }

    /// §6.1: Skew_Time = ((256 - Priority) * Master_Adver_Interval) / 256;
    /// Master_Down_Interval = (3 * Master_Adver_Interval) + Skew_time.
    #[test]
    fn timer_formulas() {
        let f = Fsm::new(cfg(100));
        assert_eq!(f.skew_time(), Duration::from_nanos(60_937_500)); // 156*100ms/256
        assert_eq!(f.master_down_interval(), Duration::from_nanos(360_937_500));
        let f = Fsm::new(cfg(254));
        assert_eq!(f.skew_time(), Duration::from_nanos(781_250));
    }

    /// §6.4.1: "If the Priority = 255 ... Send an ADVERTISEMENT ... Broadcast a
    /// gratuitous ARP ... transition to the {Master} state".
    #[test]
    fn owner_becomes_master_at_startup() {
        let t0 = Instant::now();
        let mut f = Fsm::new(cfg(255));
        let a = f.handle(t0, Input::Startup);
        assert_eq!(f.state(), State::Master);
        let add = a.iter().position(|x| *x == Action::AddVips).unwrap();
        let send = a
            .iter()
            .position(|x| *x == Action::SendAdvert { priority: 255 })
            .unwrap();
        let garp = a.iter().position(|x| *x == Action::SendGarp).unwrap();
        assert!(
            add < send && send < garp,
            "VIPs are up before they are announced: {a:?}"
        );
        assert_eq!(
            armed(&a, Timer::Adver),
            Some(t0 + Duration::from_millis(100))
        );
    }

    /// §6.4.1: otherwise "Set Master_Adver_Interval to Advertisement_Interval ...
    /// Start the Master_Down_Timer with Master_Down_Interval ... {Backup}".
    #[test]
    fn non_owner_starts_as_backup() {
        let t0 = Instant::now();
        let mut f = Fsm::new(cfg(100));
        let a = f.handle(t0, Input::Startup);
        assert_eq!(f.state(), State::Backup);
        assert_eq!(
            armed(&a, Timer::MasterDown),
            Some(t0 + f.master_down_interval())
        );
        assert!(!a.contains(&Action::AddVips));
    }

    /// §6.4.2: "If the Master_Down_Timer fires: Send an ADVERTISEMENT, Broadcast
    /// a gratuitous ARP ..., transition to the {Master} state".
    #[test]
    fn master_down_timer_makes_master() {
        let t0 = Instant::now();
        let mut f = backup(100, t0);
        let a = f.handle(
            t0 + f.master_down_interval(),
            Input::Timer(Timer::MasterDown),
        );
        assert_eq!(f.state(), State::Master);
        assert!(a.contains(&Action::SendGarp) && a.contains(&Action::AddVips));
    }

    /// §6.4.2: "If the Priority in the ADVERTISEMENT is zero, then: Set the
    /// Master_Down_Timer to Skew_Time".
    #[test]
    fn priority_zero_advert_backup_waits_skew_time() {
        let t0 = Instant::now();
        let mut f = backup(100, t0);
        let now = t0 + Duration::from_millis(50);
        let a = f.handle(
            now,
            Input::Advert {
                ip: from(HIGHER_IP),
                advert: &adv(0, 10),
            },
        );
        assert_eq!(armed(&a, Timer::MasterDown), Some(now + f.skew_time()));
    }

    /// §6.4.2: "If Preempt_Mode is False, or if the Priority in the ADVERTISEMENT
    /// is greater than or equal to the local Priority: Set Master_Adver_Interval
    /// to Adver Interval contained in the ADVERTISEMENT, Recompute the
    /// Master_Down_Interval, Reset the Master_Down_Timer".
    #[test]
    fn backup_learns_master_interval() {
        let t0 = Instant::now();
        let mut f = backup(100, t0);
        let a = f.handle(
            t0,
            Input::Advert {
                ip: from(HIGHER_IP),
                advert: &adv(150, 1),
            },
        );
        assert_eq!(f.master_adver_interval(), Duration::from_millis(10));
        // 3 × 10 ms + 156 × 10 ms / 256
        assert_eq!(
            armed(&a, Timer::MasterDown),
            Some(t0 + Duration::from_nanos(36_093_750))
        );
    }

    /// §6.4.2: "Else (Priority less than local Priority and Preempt_Mode True):
    /// Discard the ADVERTISEMENT" — the timer keeps running, so we preempt.
    #[test]
    fn preempt_discards_lower_priority() {
        let t0 = Instant::now();
        let mut f = backup(150, t0);
        let a = f.handle(
            t0,
            Input::Advert {
                ip: from(HIGHER_IP),
                advert: &adv(100, 10),
            },
        );
        assert!(armed(&a, Timer::MasterDown).is_none());
        assert!(matches!(a[..], [Action::Discarded { priority: 100, .. }]));
    }

    /// §6.4.2 with Preempt_Mode False: a lower-priority master is accepted.
    #[test]
    fn nopreempt_accepts_lower_priority_master() {
        let t0 = Instant::now();
        let mut c = cfg(150);
        c.preempt = false;
        let mut f = Fsm::new(c);
        f.handle(t0, Input::Startup);
        let a = f.handle(
            t0,
            Input::Advert {
                ip: from(HIGHER_IP),
                advert: &adv(100, 10),
            },
        );
        assert!(armed(&a, Timer::MasterDown).is_some());
    }

    /// keepalived's preempt_delay: no preemption until the delay after startup.
    #[test]
    fn preempt_delay_defers_preemption() {
        let t0 = Instant::now();
        let mut c = cfg(150);
        c.preempt_delay = Duration::from_secs(5);
        let mut f = Fsm::new(c);
        f.handle(t0, Input::Startup);
        let early = f.handle(
            t0 + Duration::from_secs(1),
            Input::Advert {
                ip: from(HIGHER_IP),
                advert: &adv(100, 10),
            },
        );
        assert!(
            armed(&early, Timer::MasterDown).is_some(),
            "within the delay: follow the master"
        );
        let late = f.handle(
            t0 + Duration::from_secs(6),
            Input::Advert {
                ip: from(HIGHER_IP),
                advert: &adv(100, 10),
            },
        );
        assert!(
            armed(&late, Timer::MasterDown).is_none(),
            "after the delay: discard and preempt"
        );
    }

    /// §6.4.3: "If the Adver_Timer fires: Send an ADVERTISEMENT, Reset the
    /// Adver_Timer to Advertisement_Interval" — from the schedule, not the wake-up.
    #[test]
    fn adver_timer_does_not_drift() {
        let t0 = Instant::now();
        let mut f = master(150, t0);
        let due = t0 + Duration::from_millis(100);
        let a = f.handle(due + Duration::from_millis(3), Input::Timer(Timer::Adver));
        assert_eq!(a[0], Action::SendAdvert { priority: 150 });
        assert_eq!(
            armed(&a, Timer::Adver),
            Some(t0 + Duration::from_millis(200))
        );
        // Woken 250 ms late: skip ahead, no burst.
        let a = f.handle(t0 + Duration::from_millis(450), Input::Timer(Timer::Adver));
        assert_eq!(
            armed(&a, Timer::Adver),
            Some(t0 + Duration::from_millis(500))
        );
    }

    /// §6.4.3: "If the Priority in the ADVERTISEMENT is zero, then: Send an
    /// ADVERTISEMENT, Reset the Adver_Timer".
    #[test]
    fn master_answers_priority_zero() {
        let t0 = Instant::now();
        let mut f = master(150, t0);
        let now = t0 + Duration::from_millis(30);
        let a = f.handle(
            now,
            Input::Advert {
                ip: from(HIGHER_IP),
                advert: &adv(0, 10),
            },
        );
        assert_eq!(a[0], Action::SendAdvert { priority: 150 });
        assert_eq!(
            armed(&a, Timer::Adver),
            Some(now + Duration::from_millis(100))
        );
        assert_eq!(f.state(), State::Master);
    }

    /// §6.4.3: "If the Priority in the ADVERTISEMENT is greater than the local
    /// Priority, or ... equal ... and the primary IPvX Address of the sender is
    /// greater than the local primary IPvX Address: ... transition to {Backup}".
    #[test]
    fn master_yields_to_higher_priority_or_higher_ip_on_tie() {
        let t0 = Instant::now();
        let mut f = master(150, t0);
        let a = f.handle(
            t0,
            Input::Advert {
                ip: from(LOWER_IP),
                advert: &adv(150, 10),
            },
        );
        assert_eq!(f.state(), State::Master, "tie, lower IP: keep");
        assert!(matches!(a[0], Action::Discarded { .. }));
        assert!(!a.iter().any(|x| matches!(x, Action::RemoveVips)));
        f.handle(
            t0,
            Input::Advert {
                ip: from(LOWER_IP),
                advert: &adv(100, 10),
            },
        );
        assert_eq!(f.state(), State::Master, "lower priority: keep");
        let a = f.handle(
            t0,
            Input::Advert {
                ip: from(HIGHER_IP),
                advert: &adv(150, 5),
            },
        );
        assert_eq!(f.state(), State::Backup, "tie, higher IP: yield");
        assert!(a.contains(&Action::RemoveVips) && a.contains(&Action::CancelTimer(Timer::Adver)));
        assert_eq!(f.master_adver_interval(), Duration::from_millis(50));
        let mut f = master(150, t0);
        f.handle(
            t0,
            Input::Advert {
                ip: from(LOWER_IP),
                advert: &adv(200, 10),
            },
        );
        assert_eq!(f.state(), State::Backup, "higher priority: yield");
    }

    /// §6.4.3: "If a Shutdown event is received: Cancel the Adver_Timer, Send an
    /// ADVERTISEMENT with Priority = 0, Transition to the {Initialize} state".
    #[test]
    fn shutdown_sends_priority_zero() {
        let t0 = Instant::now();
        let mut f = master(150, t0);
        let a = f.handle(t0, Input::Shutdown);
        assert_eq!(
            &a[..3],
            &[
                Action::CancelTimer(Timer::Adver),
                Action::SendAdvert { priority: 0 },
                Action::RemoveVips
            ]
        );
        assert_eq!(f.state(), State::Initialize);
        let mut b = backup(100, t0);
        let a = b.handle(t0, Input::Shutdown);
        assert_eq!(a[0], Action::CancelTimer(Timer::MasterDown));
        assert!(!a.iter().any(|x| matches!(x, Action::SendAdvert { .. })));
    }

    /// §7.1: "MUST verify that the IP TTL is 255"; VRID must match (§7.1 bullet 6).
    #[test]
    fn receive_checks_drop() {
        let t0 = Instant::now();
        let mut f = backup(100, t0);
        let mut ip = from(HIGHER_IP);
        ip.ttl = 64;
        assert_eq!(
            f.handle(
                t0,
                Input::Advert {
                    ip,
                    advert: &adv(200, 10)
                }
            ),
            vec![Action::Drop(DropReason::BadTtl)]
        );
        let mut other = adv(200, 10);
        other.vrid = 52;
        assert_eq!(
            f.handle(
                t0,
                Input::Advert {
                    ip: from(HIGHER_IP),
                    advert: &other
                }
            ),
            vec![Action::Drop(DropReason::VridMismatch)]
        );
        assert_eq!(
            f.handle(
                t0,
                Input::Advert {
                    ip: from(ME),
                    advert: &adv(200, 10)
                }
            ),
            vec![Action::Drop(DropReason::OwnAdvert)]
        );
    }

    /// §7.1: "MAY verify that the IPvX Address(es) ... matches ... If the above
    /// check fails, the receiver SHOULD log the event ..." — and still process it.
    #[test]
    fn address_mismatch_is_reported_and_processed() {
        let t0 = Instant::now();
        let mut f = backup(100, t0);
        let mut a = adv(200, 10);
        a.addresses = vec![Ipv4Addr::new(198, 18, 0, 101).into()];
        let out = f.handle(
            t0,
            Input::Advert {
                ip: from(HIGHER_IP),
                advert: &a,
            },
        );
        assert_eq!(out[0], Action::AddressMismatch { from: HIGHER_IP });
        assert!(armed(&out, Timer::MasterDown).is_some());
    }

    #[test]
    fn tracking_without_weight_enters_fault_and_recovers() {
        let t0 = Instant::now();
        let mut f = master(150, t0);
        let a = f.handle(t0, Input::Track { healthy: false });
        assert_eq!(f.state(), State::Fault);
        assert!(a.contains(&Action::SendAdvert { priority: 0 }) && a.contains(&Action::RemoveVips));
        assert_eq!(
            f.handle(
                t0,
                Input::Advert {
                    ip: from(HIGHER_IP),
                    advert: &adv(100, 10)
                }
            ),
            vec![Action::Drop(DropReason::NotListening)]
        );
        assert!(
            f.handle(t0, Input::Timer(Timer::Adver)).is_empty(),
            "no adverts in FAULT"
        );
        let a = f.handle(t0, Input::Track { healthy: true });
        assert_eq!(f.state(), State::Backup);
        assert!(armed(&a, Timer::MasterDown).is_some());
    }

    #[test]
    fn forced_fault_overrides_track_weight_and_recovers() {
        // keepalived's FAULT (§6.4 leaves local failure policy to the
        // implementation): a master forced into FAULT sends priority 0 so a
        // backup takes over in Skew_Time (§6.4.3), removes its VIPs and stays
        // out of the election even though its track-weight would only lower
        // the priority; lifting it returns to Backup (§6.4.2 entry).
        let t0 = Instant::now();
        let mut f = weighted_master(t0);
        let a = f.handle(t0, Input::Fault { on: true });
        assert_eq!(f.state(), State::Fault);
        assert!(a.contains(&Action::SendAdvert { priority: 0 }) && a.contains(&Action::RemoveVips));
        assert!(
            f.handle(t0, Input::Fault { on: true }).is_empty(),
            "idempotent"
        );
        let a = f.handle(t0, Input::Fault { on: false });
        assert_eq!(f.state(), State::Backup);
        assert!(armed(&a, Timer::MasterDown).is_some());
    }

    #[test]
    fn tracking_with_weight_lowers_priority() {
        let t0 = Instant::now();
        let mut c = cfg(150);
        c.track_weight = Some(60);
        let mut f = Fsm::new(c);
        f.handle(t0, Input::Startup);
        f.handle(t0, Input::Timer(Timer::MasterDown));
        let a = f.handle(t0, Input::Track { healthy: false });
        assert_eq!(f.priority(), 90);
        assert_eq!(a, vec![Action::SendAdvert { priority: 90 }]);
        // A priority-100 peer now wins.
        f.handle(
            t0,
            Input::Advert {
                ip: from(LOWER_IP),
                advert: &adv(100, 10),
            },
        );
        assert_eq!(f.state(), State::Backup);
    }

    #[test]
    fn master_reannounces_when_a_lower_priority_master_appears() {
        // A backup that missed our adverts (a stall) became master and sent GARP.
        let t0 = Instant::now();
        let mut f = master(150, t0);
        let a = f.handle(
            t0,
            Input::Advert {
                ip: from(LOWER_IP),
                advert: &adv(100, 10),
            },
        );
        assert_eq!(f.state(), State::Master);
        assert!(a.contains(&Action::SendAdvert { priority: 150 }), "{a:?}");
        assert!(a.contains(&Action::SendGarp), "{a:?}");
        // Rate-limited: a second one within RECLAIM_GAP is only discarded.
        let a = f.handle(
            t0 + RECLAIM_GAP / 2,
            Input::Advert {
                ip: from(LOWER_IP),
                advert: &adv(100, 10),
            },
        );
        assert!(!a.contains(&Action::SendGarp), "{a:?}");
        let a = f.handle(
            t0 + RECLAIM_GAP,
            Input::Advert {
                ip: from(LOWER_IP),
                advert: &adv(100, 10),
            },
        );
        assert!(a.contains(&Action::SendGarp), "{a:?}");
    }

    #[test]
    fn link_down_is_fault_even_with_track_weight() {
        // keepalived's interface tracking: no link, no VIP, whatever the weights say.
        let t0 = Instant::now();
        let mut f = weighted_master(t0);
        let a = f.handle(t0, Input::Link { up: false });
        assert_eq!(f.state(), State::Fault);
        assert!(a.contains(&Action::RemoveVips));
        // Unhealthy while the link is down: still FAULT; link back: BACKUP (weighted).
        f.handle(t0, Input::Track { healthy: false });
        assert_eq!(f.state(), State::Fault);
        let a = f.handle(t0, Input::Link { up: true });
        assert_eq!(f.state(), State::Backup);
        assert_eq!(f.priority(), 90);
        assert!(armed(&a, Timer::MasterDown).is_some());
    }

    #[test]
    fn unhealthy_at_startup_without_weight_is_fault() {
        let mut f = Fsm::new(cfg(150));
        f.handle(Instant::now(), Input::Track { healthy: false });
        f.handle(Instant::now(), Input::Startup);
        assert_eq!(f.state(), State::Fault);
    }

    #[test]
    fn step_down_hands_over_and_holds_preemption() {
        let t0 = Instant::now();
        let mut f = master(150, t0);
        let a = f.handle(t0, Input::StepDown);
        assert_eq!(f.state(), State::Backup);
        assert!(a.contains(&Action::SendAdvert { priority: 0 }) && a.contains(&Action::RemoveVips));
        // The new, lower-priority master is followed, not preempted, during the hold.
        let a = f.handle(
            t0 + Duration::from_millis(100),
            Input::Advert {
                ip: from(HIGHER_IP),
                advert: &adv(100, 10),
            },
        );
        assert!(armed(&a, Timer::MasterDown).is_some());
        // After the hold, preemption resumes.
        let a = f.handle(
            t0 + Duration::from_secs(31),
            Input::Advert {
                ip: from(HIGHER_IP),
                advert: &adv(100, 10),
            },
        );
        assert!(armed(&a, Timer::MasterDown).is_none());
        // Stepping down when not master does nothing.
        assert!(f.handle(t0, Input::StepDown).is_empty());
    }

    fn gaps(a: &[Action]) -> Vec<Duration> {
        a.iter()
            .filter_map(|a| match a {
                Action::AdvertGap(d) => Some(*d),
                _ => None,
            })
            .collect()
    }

    /// §6.4.2: a backup restarts Master_Down_Timer on each advert from the
    /// master; the time between two of them is the margin left before a false
    /// failover, so it is reported.
    #[test]
    fn backup_reports_the_gap_between_a_masters_adverts() {
        let t0 = Instant::now();
        let mut f = backup(100, t0);
        let hear = |f: &mut Fsm, ms: u64, src: IpAddr, prio: u8| {
            f.handle(
                t0 + Duration::from_millis(ms),
                Input::Advert {
                    ip: from(src),
                    advert: &adv(prio, 10),
                },
            )
        };
        // The first advert has nothing before it.
        assert!(gaps(&hear(&mut f, 10, HIGHER_IP, 200)).is_empty());
        assert_eq!(
            gaps(&hear(&mut f, 110, HIGHER_IP, 200)),
            [Duration::from_millis(100)]
        );
        // A late advert: the gap is what it was, however close to Master_Down_Interval.
        assert_eq!(
            gaps(&hear(&mut f, 360, HIGHER_IP, 200)),
            [Duration::from_millis(250)]
        );
        // Another router's advert starts a new series instead of a gap across masters.
        assert!(gaps(&hear(&mut f, 370, LOWER_IP, 200)).is_empty());
        assert_eq!(
            gaps(&hear(&mut f, 470, LOWER_IP, 200)),
            [Duration::from_millis(100)]
        );
        // §6.4.2: priority 0 means the master leaves; no gap across that.
        assert!(gaps(&hear(&mut f, 480, LOWER_IP, 0)).is_empty());
        assert!(gaps(&hear(&mut f, 490, LOWER_IP, 200)).is_empty());
        // A lower-priority advert that a preempting backup discards is no gap either.
        assert!(gaps(&hear(&mut f, 500, LOWER_IP, 50)).is_empty());
    }

    /// Gaps are a backup's view only: a master (which sends the adverts) and a
    /// backup that was master a moment ago report none across the change.
    #[test]
    fn advert_gaps_do_not_span_a_state_change() {
        let t0 = Instant::now();
        let mut f = backup(100, t0);
        let hear = |f: &mut Fsm, ms: u64, prio: u8| {
            f.handle(
                t0 + Duration::from_millis(ms),
                Input::Advert {
                    ip: from(HIGHER_IP),
                    advert: &adv(prio, 10),
                },
            )
        };
        hear(&mut f, 0, 200);
        // §6.4.2: Master_Down_Timer fires: we become master.
        f.handle(
            t0 + Duration::from_millis(400),
            Input::Timer(Timer::MasterDown),
        );
        assert_eq!(f.state(), State::Master);
        // §6.4.3: a higher-priority advert makes us backup again ...
        let a = hear(&mut f, 500, 200);
        assert_eq!(f.state(), State::Backup);
        assert!(gaps(&a).is_empty());
        // ... and the next advert is the first of a new series.
        assert!(gaps(&hear(&mut f, 600, 200)).is_empty());
        assert_eq!(gaps(&hear(&mut f, 700, 200)), [Duration::from_millis(100)]);
    }

    /// Reload of a master (§6.4.3): a new priority and advert interval are
    /// announced at once in an advert, the VIPs stay (no RemoveVips, no
    /// transition), and the next Adver timer uses the new interval.
    #[test]
    fn reconfigured_master_keeps_vips_and_announces_new_values() {
        let t0 = Instant::now();
        let mut f = master(150, t0);
        let mut c = cfg(120);
        c.advert_interval = Duration::from_millis(200);
        let a = f.reconfigure(t0, c);
        assert_eq!(f.state(), State::Master);
        assert!(a.contains(&Action::SendAdvert { priority: 120 }), "{a:?}");
        assert!(!a
            .iter()
            .any(|x| matches!(x, Action::RemoveVips | Action::Transition { .. })));
        assert_eq!(
            armed(&a, Timer::Adver),
            Some(t0 + Duration::from_millis(200))
        );
        assert_eq!(f.advert_interval_cs(), 20);
        let a = f.handle(t0 + Duration::from_millis(200), Input::Timer(Timer::Adver));
        assert_eq!(
            armed(&a, Timer::Adver),
            Some(t0 + Duration::from_millis(400))
        );
    }

    /// A master whose VIP list grows adds and announces them (§6.4.3 gratuitous
    /// ARP for each VIP on taking them), without leaving MASTER.
    #[test]
    fn reconfigured_master_adds_new_vips() {
        let t0 = Instant::now();
        let mut f = master(150, t0);
        let mut c = cfg(150);
        c.vips.push(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 101)));
        let a = f.reconfigure(t0, c);
        assert!(
            a.contains(&Action::AddVips) && a.contains(&Action::SendGarp),
            "{a:?}"
        );
        assert_eq!(f.state(), State::Master);
    }

    /// §6.4.2: a backup reloaded to outrank the master, with Preempt_Mode,
    /// discards the master's lower-priority adverts and becomes master when
    /// Master_Down_Timer fires; its new priority sets Skew_Time (§6.1).
    #[test]
    fn reconfigured_backup_with_higher_priority_preempts() {
        let t0 = Instant::now();
        let mut f = backup(100, t0);
        f.handle(
            t0,
            Input::Advert {
                ip: from(HIGHER_IP),
                advert: &adv(150, 10),
            },
        );
        let a = f.reconfigure(t0, cfg(200));
        assert!(a.is_empty(), "a backup announces nothing: {a:?}");
        assert_eq!(f.skew_time(), Duration::from_nanos(21_875_000)); // 56*100ms/256
        let a = f.handle(
            t0,
            Input::Advert {
                ip: from(HIGHER_IP),
                advert: &adv(150, 10),
            },
        );
        assert!(
            matches!(a[..], [Action::Discarded { priority: 150, .. }]),
            "{a:?}"
        );
        f.handle(t0 + Duration::from_secs(1), Input::Timer(Timer::MasterDown));
        assert_eq!(f.state(), State::Master);
    }

    /// Removing track-weight on reload while the service is unhealthy means
    /// FAULT now, as it would have at startup (priority-0 advert, VIPs off).
    #[test]
    fn reconfigure_without_track_weight_enters_fault_when_unhealthy() {
        let t0 = Instant::now();
        let mut c = cfg(150);
        c.track_weight = Some(60);
        let mut f = Fsm::new(c);
        f.handle(t0, Input::Startup);
        f.handle(t0, Input::Timer(Timer::MasterDown));
        f.handle(t0, Input::Track { healthy: false });
        assert_eq!((f.state(), f.priority()), (State::Master, 90));
        let a = f.reconfigure(t0, cfg(150));
        assert_eq!(f.state(), State::Fault);
        assert!(a.contains(&Action::RemoveVips), "{a:?}");
    }

    // IPv6: the same machine, one instance per family (RFC 5798 §1/§5.2.9).

    fn ll(last: u16) -> IpAddr {
        IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, last))
    }

    fn vip6() -> IpAddr {
        "2001:2::100".parse().unwrap()
    }

    fn backup6(priority: u8, t0: Instant) -> Fsm {
        let mut c = cfg(priority);
        c.primary_ip = ll(3);
        c.vips = vec![vip6()];
        let mut f = Fsm::new(c);
        f.handle(t0, Input::Startup);
        f
    }

    fn adv6(priority: u8) -> Advert {
        Advert {
            vrid: 51,
            priority,
            max_adver_int: 10,
            addresses: vec![vip6()],
        }
    }

    fn from6(src: IpAddr, hop_limit: u8) -> IpInfo {
        IpInfo {
            src,
            dst: crate::packet::VRRP_GROUP_V6.into(),
            ttl: hop_limit,
        }
    }

    /// §7.1: "MUST verify that the IPv6 Hop Limit is 255" — one that went
    /// through a router is dropped.
    #[test]
    fn ipv6_hop_limit_must_be_255() {
        let t0 = Instant::now();
        let mut f = backup6(100, t0);
        let a = f.handle(
            t0,
            Input::Advert {
                ip: from6(ll(4), 254),
                advert: &adv6(200),
            },
        );
        assert_eq!(a, vec![Action::Drop(DropReason::BadTtl)]);
        let a = f.handle(
            t0,
            Input::Advert {
                ip: from6(ll(4), 255),
                advert: &adv6(200),
            },
        );
        assert!(armed(&a, Timer::MasterDown).is_some());
    }

    /// §5.2.9 / RFC 9568 §1: "the Virtual Routers in each of the IPv4 and IPv6
    /// address families are independent of one another": an IPv6 instance
    /// drops an IPv4 advert of the same VRID, and the reverse.
    #[test]
    fn other_family_adverts_are_dropped() {
        let t0 = Instant::now();
        let mut f6 = backup6(100, t0);
        let a = f6.handle(
            t0,
            Input::Advert {
                ip: from(HIGHER_IP),
                advert: &adv(200, 10),
            },
        );
        assert_eq!(a, vec![Action::Drop(DropReason::WrongFamily)]);
        let mut f4 = backup(100, t0);
        let a = f4.handle(
            t0,
            Input::Advert {
                ip: from6(ll(4), 255),
                advert: &adv6(200),
            },
        );
        assert_eq!(a, vec![Action::Drop(DropReason::WrongFamily)]);
    }

    /// §6.4.3 for IPv6: on equal priority the greater primary (link-local)
    /// address wins, compared as 128-bit numbers; §6.4.2: a backup takes the
    /// learned Master_Adver_Interval from an IPv6 advert as from an IPv4 one.
    #[test]
    fn ipv6_tie_break_and_learning() {
        let t0 = Instant::now();
        let mut f = backup6(150, t0);
        f.handle(t0, Input::Timer(Timer::MasterDown));
        assert_eq!(f.state(), State::Master);
        let a = f.handle(
            t0,
            Input::Advert {
                ip: from6(ll(2), 255),
                advert: &adv6(150),
            },
        );
        assert_eq!(f.state(), State::Master, "tie, lower link-local: keep");
        assert!(matches!(a[0], Action::Discarded { .. }));
        let a = f.handle(
            t0,
            Input::Advert {
                ip: from6(ll(0x1_00), 255),
                advert: &adv6(150),
            },
        );
        assert_eq!(f.state(), State::Backup, "tie, higher link-local: yield");
        assert!(a.contains(&Action::RemoveVips));
        assert_eq!(f.master_adver_interval(), Duration::from_millis(100));
        // Our own advert, looped back, is never a peer's.
        let a = f.handle(
            t0,
            Input::Advert {
                ip: from6(ll(3), 255),
                advert: &adv6(150),
            },
        );
        assert_eq!(a, vec![Action::Drop(DropReason::OwnAdvert)]);
    }

    fn tracking(delta: i32, fault: bool) -> Input<'static> {
        Input::Tracking(crate::track::Tracking { delta, fault })
    }

    /// §6.4.3: a master's adverts carry its priority. A track script with
    /// weight -60 failing on a priority-150 master lowers it to 90 and the
    /// next advert says so at once; passing again restores 150.
    #[test]
    fn tracking_delta_changes_the_advertised_priority() {
        let t0 = Instant::now();
        let mut f = master(150, t0);
        let a = f.handle(t0, tracking(-60, false));
        assert_eq!(a, vec![Action::SendAdvert { priority: 90 }]);
        assert_eq!(f.state(), State::Master, "a weight lowers, never faults");
        let a = f.handle(t0, Input::Timer(Timer::Adver));
        assert_eq!(a[0], Action::SendAdvert { priority: 90 });
        let a = f.handle(t0, tracking(0, false));
        assert_eq!(a, vec![Action::SendAdvert { priority: 150 }]);
        assert!(
            f.handle(t0, tracking(0, false)).is_empty(),
            "no change, no advert"
        );
    }

    /// §6.4.2: with preemption, a backup whose tracking lifts it above the
    /// master discards the master's adverts and takes over when
    /// Master_Down_Timer fires.
    #[test]
    fn tracking_lifts_a_backup_above_the_master() {
        let t0 = Instant::now();
        let mut f = backup(100, t0);
        f.handle(t0, tracking(60, false));
        assert_eq!(f.priority(), 160);
        let advert = adv(150, 10);
        let a = f.handle(
            t0,
            Input::Advert {
                ip: from(HIGHER_IP),
                advert: &advert,
            },
        );
        assert!(
            matches!(a[..], [Action::Discarded { priority: 150, .. }]),
            "{a:?}"
        );
        f.handle(t0, Input::Timer(Timer::MasterDown));
        assert_eq!(f.state(), State::Master);
    }

    /// A tracker without weight failing is FAULT (keepalived's semantics on
    /// top of §6.4.3's shutdown path: a priority-0 advert so a backup takes
    /// over within Skew_Time, VIPs removed); recovering goes to BACKUP.
    #[test]
    fn tracking_fault_leaves_master_and_comes_back_as_backup() {
        let t0 = Instant::now();
        let mut f = master(150, t0);
        let a = f.handle(t0, tracking(0, true));
        assert!(a.contains(&Action::SendAdvert { priority: 0 }), "{a:?}");
        assert!(a.contains(&Action::RemoveVips));
        assert_eq!(f.state(), State::Fault);
        f.handle(t0, tracking(-10, true));
        assert_eq!(f.state(), State::Fault);
        f.handle(t0, tracking(-10, false));
        assert_eq!(f.state(), State::Backup);
        assert_eq!(f.priority(), 140);
    }

    /// §6.4.1: priority 255 is the address owner; keepalived never changes
    /// an owner's priority by tracking.
    #[test]
    fn tracking_leaves_the_owner_at_255() {
        let t0 = Instant::now();
        let mut f = Fsm::new(cfg(255));
        f.handle(t0, Input::Startup);
        let a = f.handle(t0, tracking(-100, false));
        assert!(a.is_empty(), "{a:?}");
        assert_eq!(f.priority(), 255);
    }
}
