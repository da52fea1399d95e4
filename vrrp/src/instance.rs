//! The I/O loop of one virtual router, on its own OS thread.
//!
//! A thin shell around [`Fsm`]: it waits in `ppoll` on the advert socket and an
//! eventfd (commands from other threads) until the nearest deadline, feeds what
//! happened to the state machine and carries out the actions — adverts, VIPs
//! over netlink, gratuitous ARP (IPv4) or unsolicited neighbour advertisement
//! (IPv6) bursts, notify commands, track scripts, the VMAC interface. One
//! instance is one address family. Deadlines are absolute
//! and the next advert is scheduled from the previous one, so adverts do not
//! drift; with `realtime` the thread runs `SCHED_FIFO` so a busy proxy on the
//! same machine cannot delay them.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::address::{self, LinkEvents, Netlink};
use crate::arp::ArpSender;
use crate::fsm::{Action, Fsm, FsmConfig, Input, State, Timer};
use crate::group::{Member, SyncGroup};
use crate::notify::{Notifier, NotifyCommands};
use crate::packet::{self, Advert, ChecksumMode};
use crate::socket::{Peers, Received, VrrpSocket};
use crate::track::{TrackHandle, TrackInterface, TrackScript, Tracker};
use crate::vmac::Vmac;
use crate::Error;

/// Everything one `[[vrrp]]` instance needs.
#[derive(Debug, Clone)]
pub struct InstanceConfig {
    /// For logs, notify scripts and metrics.
    pub name: String,
    pub interface: String,
    pub vrid: u8,
    pub priority: u8,
    pub advert_interval: Duration,
    /// All IPv4 or all IPv6 (one family per instance, as in keepalived).
    pub virtual_addresses: Vec<(IpAddr, u8)>,
    pub preempt: bool,
    pub preempt_delay: Duration,
    /// Empty = multicast to 224.0.0.18 or ff02::12.
    pub unicast_peers: Vec<IpAddr>,
    pub track_weight: Option<u8>,
    /// keepalived's `track_script`s (see `track::Tracker`).
    pub track_scripts: Vec<TrackScript>,
    /// keepalived's `track_interface`s: other links.
    pub track_interfaces: Vec<TrackInterface>,
    pub notify: Option<PathBuf>,
    /// keepalived's notify hooks and calling convention.
    pub notify_commands: NotifyCommands,
    /// Some(name): VIPs, adverts and announcements on a macvlan with the
    /// virtual MAC (RFC 5798 §7.3, see `vmac`) of that name.
    pub vmac: Option<String>,
    /// Gratuitous ARPs (IPv4) or unsolicited NAs (IPv6) per VIP on becoming
    /// master (keepalived: 5).
    pub garp_count: u32,
    pub garp_interval: Duration,
    pub garp_refresh: Option<Duration>,
    pub checksum_mode: ChecksumMode,
    pub check_ttl: bool,
    pub realtime: bool,
    /// Fail over together with the other instances of this group.
    pub sync_group: Option<SyncGroup>,
    /// Called on the VRRP thread at each state change, before the notify
    /// command: lets the embedding program sample what it has in flight.
    pub on_transition: Option<TransitionHook>,
}

/// A callback given (from, to) on every state change; it must be quick, as it
/// runs on the thread that sends adverts.
#[derive(Clone)]
pub struct TransitionHook(pub Arc<dyn Fn(State, State) + Send + Sync>);

impl std::fmt::Debug for TransitionHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TransitionHook")
    }
}

impl InstanceConfig {
    /// A config with keepalived-like defaults.
    pub fn new(
        name: &str,
        interface: &str,
        vrid: u8,
        priority: u8,
        vips: Vec<(IpAddr, u8)>,
    ) -> Self {
        InstanceConfig {
            name: name.into(),
            interface: interface.into(),
            vrid,
            priority,
            advert_interval: Duration::from_millis(100),
            virtual_addresses: vips,
            preempt: true,
            preempt_delay: Duration::ZERO,
            unicast_peers: Vec::new(),
            track_weight: None,
            track_scripts: Vec::new(),
            track_interfaces: Vec::new(),
            notify: None,
            notify_commands: NotifyCommands::default(),
            vmac: None,
            garp_count: 5,
            garp_interval: Duration::from_millis(1),
            garp_refresh: None,
            checksum_mode: ChecksumMode::Rfc5798,
            check_ttl: true,
            realtime: false,
            on_transition: None,
            sync_group: None,
        }
    }

    /// RFC 5798's limits ([`crate::rules`]), checked before the instance starts.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |e: crate::rules::RuleError| Error::Config {
            name: self.name.clone(),
            msg: e.to_string(),
        };
        use crate::rules;
        rules::vrid(u32::from(self.vrid)).map_err(bad)?;
        rules::priority(u32::from(self.priority)).map_err(bad)?;
        rules::advert_interval(self.advert_interval).map_err(bad)?;
        let Some(&(first, _)) = self.virtual_addresses.first() else {
            return Err(bad(rules::RuleError::NoAddress));
        };
        for &(addr, len) in &self.virtual_addresses {
            rules::virtual_address(Some(first), addr, len).map_err(bad)?;
        }
        for &peer in &self.unicast_peers {
            rules::unicast_peer(first, peer).map_err(bad)?;
        }
        let msg = |msg: String| Error::Config {
            name: self.name.clone(),
            msg,
        };
        for s in &self.track_scripts {
            if s.argv.first().is_none_or(|p| p.is_empty()) {
                return Err(msg(format!("track script {}: empty command", s.name)));
            }
            if s.interval.is_zero() || s.timeout.is_zero() {
                return Err(msg(format!(
                    "track script {}: interval and timeout must be above zero",
                    s.name
                )));
            }
        }
        Ok(())
    }
}

/// Labels of every reason a received packet is dropped.
pub const DROP_REASONS: [&str; 13] = [
    "truncated",
    "bad_ip_header",
    "not_vrrp",
    "bad_version",
    "bad_type",
    "address_count_mismatch",
    "bad_checksum",
    "bad_ttl",
    "vrid_mismatch",
    "own_advert",
    "not_listening",
    "not_a_peer",
    "wrong_family",
];

/// The last advert seen from another router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAdvert {
    pub src: IpAddr,
    pub priority: u8,
    pub interval: Duration,
    pub at: Instant,
}

/// Counters of one instance (atomics; read from any thread).
#[derive(Debug, Default)]
pub struct Stats {
    pub adverts_sent: AtomicU64,
    pub adverts_received: AtomicU64,
    pub send_errors: AtomicU64,
    pub transitions: AtomicU64,
    pub became_master: AtomicU64,
    pub garps_sent: AtomicU64,
    pub address_mismatches: AtomicU64,
    /// Times this node gave up MASTER to another router's advert.
    pub yielded: AtomicU64,
    /// Priority currently advertised (tracking applied).
    pub priority: AtomicU8,
    /// As backup: time between consecutive adverts of the master.
    pub advert_gaps: crate::histogram::Histogram,
    drops: [AtomicU64; DROP_REASONS.len()],
    last_peer: Mutex<Option<PeerAdvert>>,
}

impl Stats {
    pub fn count_drop(&self, reason: &str) {
        if let Some(i) = DROP_REASONS.iter().position(|r| *r == reason) {
            self.drops[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Drops so far for one reason label.
    pub fn drops(&self, reason: &str) -> u64 {
        DROP_REASONS
            .iter()
            .position(|r| *r == reason)
            .map_or(0, |i| self.drops[i].load(Ordering::Relaxed))
    }

    /// Every drop reason with its count.
    pub fn all_drops(&self) -> Vec<(&'static str, u64)> {
        DROP_REASONS
            .iter()
            .zip(&self.drops)
            .map(|(r, c)| (*r, c.load(Ordering::Relaxed)))
            .collect()
    }

    pub fn last_peer(&self) -> Option<PeerAdvert> {
        *self.last_peer.lock().unwrap_or_else(|e| e.into_inner())
    }
}

enum Command {
    /// Step down; keep the VIPs on the interface this long (see `Instance::step_down`).
    StepDown(Duration, mpsc::Sender<()>),
    Shutdown(mpsc::Sender<()>),
    /// A reload's new parameters (see `Instance::reconfigure`).
    Reconfigure(Box<InstanceConfig>, mpsc::Sender<Result<(), Error>>),
}

struct Shared {
    state: AtomicU8,
    stats: Stats,
}

fn state_from(v: u8) -> State {
    match v {
        1 => State::Backup,
        2 => State::Master,
        3 => State::Fault,
        _ => State::Initialize,
    }
}

fn state_to(s: State) -> u8 {
    match s {
        State::Initialize => 0,
        State::Backup => 1,
        State::Master => 2,
        State::Fault => 3,
    }
}

/// A running virtual router. Dropping it shuts it down.
pub struct Instance {
    name: String,
    shared: Arc<Shared>,
    commands: mpsc::Sender<Command>,
    wake: Arc<OwnedFd>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Instance {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn state(&self) -> State {
        state_from(self.shared.state.load(Ordering::Acquire))
    }

    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    fn command(&self, make: impl FnOnce(mpsc::Sender<()>) -> Command) -> bool {
        let (tx, rx) = mpsc::channel();
        if self.commands.send(make(tx)).is_err() {
            return false;
        }
        wake(&self.wake);
        rx.recv_timeout(Duration::from_secs(5)).is_ok()
    }

    /// Planned handover: if master, send priority 0 and become backup, so a
    /// backup takes over within its Skew_Time. The VIPs stay on the interface
    /// for `linger` (unless this node becomes master again): packets that
    /// clients sent before the new master's gratuitous ARP reached them still
    /// land on a host that has the address and the connection. Returns once
    /// the advert is sent.
    pub fn step_down(&self, linger: Duration) {
        self.command(|done| Command::StepDown(linger, done));
    }

    /// Applies a reload's parameters without leaving the current role, so a
    /// master keeps its VIPs: priority, advert interval, preemption,
    /// track-weight, VIPs (added or removed on a master, with gratuitous ARP),
    /// unicast peers (the advert socket is reopened), notify, gratuitous ARP
    /// settings, checksum mode, realtime. The interface and VRID name the
    /// instance and cannot change. On an error nothing was changed.
    pub fn reconfigure(&self, cfg: InstanceConfig) -> Result<(), Error> {
        cfg.validate()?;
        let (tx, rx) = mpsc::channel();
        let name = self.name.clone();
        let gone = || Error::Config {
            name: name.clone(),
            msg: "the VRRP thread did not answer".into(),
        };
        self.commands
            .send(Command::Reconfigure(Box::new(cfg), tx))
            .map_err(|_| gone())?;
        wake(&self.wake);
        rx.recv_timeout(Duration::from_secs(5))
            .map_err(|_| gone())?
    }

    /// Priority-0 advert if master, VIPs removed, notify STOP, thread joined.
    pub fn shutdown(&self) {
        self.command(Command::Shutdown);
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn wake(fd: &OwnedFd) {
    let one: u64 = 1;
    unsafe {
        libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8);
    }
}

/// Starts a virtual router on its own thread, in the caller's network namespace.
pub fn spawn(cfg: InstanceConfig, track: TrackHandle) -> Result<Instance, Error> {
    cfg.validate()?;
    // Said up front: without CAP_NET_ADMIN a node would become master and
    // fail to add its VIPs, which shows only in the log.
    for (bit, cap, why) in [
        (
            12,
            "CAP_NET_ADMIN",
            "to add and remove the virtual addresses",
        ),
        (13, "CAP_NET_RAW", "for the VRRP and gratuitous ARP sockets"),
    ] {
        if !has_capability(bit) {
            return Err(Error::Config {
                name: cfg.name.clone(),
                msg: format!(
                    "needs {cap} {why}: run as root or grant it (systemd: AmbientCapabilities={cap})"
                ),
            });
        }
    }
    let io_err = |what: &'static str| {
        let (vrid, interface) = (cfg.vrid, cfg.interface.clone());
        move |source: io::Error| Error::Io {
            vrid,
            interface,
            what,
            source,
        }
    };
    let ifindex = address::interface_index(&cfg.interface).map_err(io_err("interface"))?;
    let mac = address::interface_mac(&cfg.interface).map_err(io_err("reading MAC address"))?;
    let vips: Vec<IpAddr> = cfg.virtual_addresses.iter().map(|(a, _)| *a).collect();
    let primary =
        address::advert_source(&cfg.interface, &vips).map_err(io_err("primary address"))?;
    if let Some(IpAddr::V6(first)) = vips.first() {
        if !address::is_link_local(first) {
            // §5.2.9 wants the virtual router's link-local address first;
            // keepalived only logs this outside strict mode, and so do we.
            tracing::info!(instance = %cfg.name, "the first IPv6 virtual address is not link-local (RFC 5798 §5.2.9 asks for it; peers only compare lists)");
        }
    }
    let netlink = Netlink::open().map_err(io_err("opening netlink socket"))?;
    let vmac = match &cfg.vmac {
        Some(name) => Some(
            Vmac::create(&netlink, &cfg.interface, name, cfg.vrid, primary.is_ipv6())
                .map_err(io_err("creating the VMAC interface"))?,
        ),
        None => None,
    };
    let peers = peers_of(&cfg);
    let socket = open_socket(
        &cfg.interface,
        ifindex,
        primary,
        peers,
        advert_via(vmac.as_ref(), &cfg),
    )
    .map_err(io_err("opening VRRP socket"))?;
    let (vip_ifindex, announce_mac) = vmac.as_ref().map_or((ifindex, mac), |v| (v.ifindex, v.mac));
    let arp = ArpSender::open(vip_ifindex, announce_mac).map_err(io_err("opening ARP socket"))?;
    // Without it, link changes are still seen at the next poll (TRACK_POLL).
    let link_events = LinkEvents::open()
        .inspect_err(|e| tracing::warn!(error = %e, "no netlink link events; polling the link"))
        .ok();

    // A crash may have left our VIPs behind; a backup must not answer for them.
    let present = address::interface_addresses(&cfg.interface).unwrap_or_default();
    for (vip, prefix) in &cfg.virtual_addresses {
        if present.contains(vip) {
            tracing::warn!(instance = %cfg.name, %vip, "removing VIP left behind by a previous run");
            netlink
                .remove(ifindex, *vip, *prefix)
                .map_err(io_err("removing stale VIP"))?;
        }
    }

    let efd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if efd < 0 {
        return Err(io_err("eventfd")(io::Error::last_os_error()));
    }
    let wake_fd = Arc::new(unsafe { OwnedFd::from_raw_fd(efd) });
    let shared = Arc::new(Shared {
        state: AtomicU8::new(0),
        stats: Stats::default(),
    });
    let (tx, rx) = mpsc::channel();
    let fsm_cfg = fsm_config(&cfg, primary);
    tracing::info!(instance = %cfg.name, interface = %cfg.interface, vrid = cfg.vrid, priority = cfg.priority,
        primary = %primary, advert_interval = ?cfg.advert_interval, "VRRP instance starting");
    let member = cfg.sync_group.as_ref().map(SyncGroup::join);
    let tracker = Tracker::new(
        &cfg.name,
        &cfg.track_scripts,
        &cfg.track_interfaces,
        Instant::now(),
    );
    let runner = Runner {
        member,
        link_events,
        fsm: Fsm::new(fsm_cfg),
        notifier: Notifier::new(cfg.notify.clone(), cfg.notify_commands.clone()),
        tracker,
        vmac,
        vip_ifindex,
        cfg,
        ifindex,
        primary,
        socket,
        arp,
        netlink,
        shared: shared.clone(),
        track,
        timers: [None, None],
        garp_left: 0,
        garp_at: None,
        refresh_at: None,
        last_warn: None,
        linger: None,
        vips_remove_at: None,
    };
    let name = runner.cfg.name.clone();
    let wake2 = wake_fd.clone();
    let thread = std::thread::Builder::new()
        .name(format!("vrrp-{}", runner.cfg.vrid))
        .spawn(move || runner.run(rx, wake2))
        .map_err(|e| Error::Io {
            vrid: 0,
            interface: String::new(),
            what: "spawning thread",
            source: e,
        })?;
    Ok(Instance {
        name,
        shared,
        commands: tx,
        wake: wake_fd,
        thread: Mutex::new(Some(thread)),
    })
}

/// Whether capability `bit` (linux/capability.h) is in this thread's
/// effective set. If the set cannot be read, assume yes and let the calls
/// that need it report.
fn has_capability(bit: u32) -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/thread-self/status") else {
        return true;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_none_or(|eff| eff & (1 << bit) != 0)
}

fn fsm_config(cfg: &InstanceConfig, primary: IpAddr) -> FsmConfig {
    FsmConfig {
        vrid: cfg.vrid,
        priority: cfg.priority,
        advert_interval: cfg.advert_interval,
        preempt: cfg.preempt,
        preempt_delay: cfg.preempt_delay,
        primary_ip: primary,
        vips: cfg.virtual_addresses.iter().map(|(a, _)| *a).collect(),
        track_weight: cfg.track_weight,
        check_ttl: cfg.check_ttl,
        handover_hold: Duration::from_secs(60),
    }
}

/// The VMAC adverts leave from: with multicast only. Unicast adverts are
/// routed, and the macvlan has no address of its own to route from, so they
/// leave from the interface (keepalived requires `vmac_xmit_base` there).
fn advert_via<'a>(vmac: Option<&'a Vmac>, cfg: &InstanceConfig) -> Option<(&'a str, u32)> {
    vmac.filter(|_| cfg.unicast_peers.is_empty())
        .map(|v| (v.name.as_str(), v.ifindex))
}

fn peers_of(cfg: &InstanceConfig) -> Peers {
    if cfg.unicast_peers.is_empty() {
        Peers::Multicast
    } else {
        Peers::Unicast(cfg.unicast_peers.clone())
    }
}

/// SCHED_FIFO 50 for the calling thread, or back to SCHED_OTHER. Without
/// CAP_SYS_NICE this needs RLIMIT_RTPRIO >= 50 (systemd: LimitRTPRIO=50);
/// failing that the thread stays as it is and says so.
fn set_realtime(name: &str, on: bool) {
    let (policy, prio) = if on {
        // Reset on fork: track scripts and notify commands started from this
        // thread must not inherit real-time priority.
        (libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK, 50)
    } else {
        (libc::SCHED_OTHER, 0)
    };
    let param = libc::sched_param {
        sched_priority: prio,
    };
    // SAFETY: 0 = this thread; param outlives the call.
    if unsafe { libc::sched_setscheduler(0, policy, &param) } != 0 {
        tracing::warn!(instance = %name, error = %io::Error::last_os_error(),
            "could not switch the VRRP thread to SCHED_FIFO; adverts may be delayed under load");
    }
}

/// Opens the advert sockets. A link-local address still in duplicate address
/// detection (an interface that just came up) cannot be bound yet: wait for
/// it, at most 3 s.
fn open_socket(
    interface: &str,
    ifindex: u32,
    primary: IpAddr,
    peers: Peers,
    via: Option<(&str, u32)>,
) -> io::Result<VrrpSocket> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match VrrpSocket::open(interface, ifindex, primary, peers.clone(), via) {
            Err(e)
                if e.raw_os_error() == Some(libc::EADDRNOTAVAIL)
                    && primary.is_ipv6()
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            r => return r,
        }
    }
}

struct Runner {
    cfg: InstanceConfig,
    member: Option<Member>,
    link_events: Option<LinkEvents>,
    fsm: Fsm,
    notifier: Notifier,
    tracker: Tracker,
    /// Our VMAC interface, if `use-vmac`: removed when the runner ends.
    vmac: Option<Vmac>,
    /// Where the VIPs go: the interface, or the VMAC.
    vip_ifindex: u32,
    ifindex: u32,
    primary: IpAddr,
    socket: VrrpSocket,
    arp: ArpSender,
    netlink: Netlink,
    shared: Arc<Shared>,
    track: TrackHandle,
    /// Deadlines of Timer::Adver and Timer::MasterDown.
    timers: [Option<Instant>; 2],
    garp_left: u32,
    garp_at: Option<Instant>,
    refresh_at: Option<Instant>,
    last_warn: Option<Instant>,
    /// Set while applying a step-down: RemoveVips is deferred by this much.
    linger: Option<Duration>,
    /// When lingering VIPs are due to be removed.
    vips_remove_at: Option<Instant>,
}

fn timer_index(t: Timer) -> usize {
    match t {
        Timer::Adver => 0,
        Timer::MasterDown => 1,
    }
}

/// How often tracked health is looked at when nothing else wakes the loop.
const TRACK_POLL: Duration = Duration::from_millis(20);

impl Runner {
    fn run(mut self, commands: mpsc::Receiver<Command>, wake_fd: Arc<OwnedFd>) {
        if self.cfg.realtime {
            set_realtime(&self.cfg.name, true);
        }
        let mut healthy = self.track.healthy();
        let mut forced_fault = false;
        let mut own_link_up = self.link_up();
        if let Some(m) = &self.member {
            m.set_own_fault(!own_link_up);
        }
        // What the state machine is told: our link, and our group's.
        let mut link_up = own_link_up && !self.group_faulted();
        let now = Instant::now();
        if !healthy {
            let a = self.fsm.handle(now, Input::Track { healthy });
            self.apply(now, a);
        }
        if !link_up {
            tracing::warn!(instance = %self.cfg.name, interface = %self.cfg.interface, "interface has no link");
            let a = self.fsm.handle(now, Input::Link { up: false });
            self.apply(now, a);
        }
        // Startup waits for every track script's first result (keepalived
        // keeps an instance in INIT until then), so a failing script never
        // makes a node master for a moment.
        let mut started = false;
        let mut tracking = crate::track::Tracking::default();
        let mut buf = vec![0u8; 2048];
        loop {
            let now = Instant::now();
            let fd = self.socket.rx_fd();
            let tracker_changed = self.tracker.poll(now, |name| address::link_up(fd, name));
            if tracker_changed || !started {
                let t = self.tracker.tracking();
                if t != tracking && self.tracker.ready() {
                    tracking = t;
                    tracing::info!(instance = %self.cfg.name, delta = t.delta, fault = t.fault, "tracking changed");
                    let a = self.fsm.handle(now, Input::Tracking(t));
                    self.apply(now, a);
                }
            }
            if !started && self.tracker.ready() {
                started = true;
                let a = self.fsm.handle(now, Input::Startup);
                self.apply(now, a);
            }
            let next = [
                self.timers[0],
                self.timers[1],
                self.garp_at,
                self.refresh_at,
                self.vips_remove_at,
                self.tracker.next_deadline(),
                Some(now + TRACK_POLL),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(now + TRACK_POLL);
            let (rx_ready, wake_ready) = self.wait(next.saturating_duration_since(now), &wake_fd);
            let now = Instant::now();
            if wake_ready {
                let mut v = 0u64;
                unsafe {
                    libc::read(wake_fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8);
                }
                while let Ok(cmd) = commands.try_recv() {
                    match cmd {
                        Command::StepDown(linger, done) => {
                            let a = self.fsm.handle(now, Input::StepDown);
                            self.linger = Some(linger);
                            self.apply(now, a);
                            self.linger = None;
                            let _ = done.send(());
                        }
                        Command::Shutdown(done) => {
                            self.tracker.stop();
                            let a = self.fsm.handle(now, Input::Shutdown);
                            self.apply(now, a);
                            if self.vips_remove_at.is_some() {
                                self.remove_vips();
                            }
                            if let Some(mut v) = self.vmac.take() {
                                v.remove();
                            }
                            tracing::info!(instance = %self.cfg.name, "VRRP instance stopped");
                            let _ = done.send(());
                            return;
                        }
                        Command::Reconfigure(cfg, done) => {
                            let _ = done.send(self.reconfigure(now, *cfg));
                        }
                    }
                }
            }
            if rx_ready {
                self.receive(now, &mut buf);
            }
            let h = self.track.healthy();
            if h != healthy {
                healthy = h;
                tracing::info!(instance = %self.cfg.name, healthy, "tracked service health changed");
                let a = self.fsm.handle(now, Input::Track { healthy });
                self.apply(now, a);
            }
            let f = self.track.fault();
            if f != forced_fault {
                forced_fault = f;
                tracing::warn!(instance = %self.cfg.name, fault = f, "FAULT forced by the supervisor");
                let a = self.fsm.handle(now, Input::Fault { on: f });
                self.apply(now, a);
            }
            let up = self.link_up();
            let own_changed = up != own_link_up;
            if own_changed {
                own_link_up = up;
                tracing::warn!(instance = %self.cfg.name, interface = %self.cfg.interface, up, "interface link changed");
                if let Some(m) = &self.member {
                    m.set_own_fault(!up);
                }
            }
            let group_faulted = self.group_faulted();
            let up = own_link_up && !group_faulted;
            if up != link_up {
                link_up = up;
                if !own_changed {
                    tracing::warn!(instance = %self.cfg.name, group = self.group_name(), faulted = group_faulted,
                        "following sync group: another member {}", if group_faulted { "has a fault" } else { "recovered" });
                }
                let a = self.fsm.handle(now, Input::Link { up });
                self.apply(now, a);
            }
            if self
                .member
                .as_mut()
                .is_some_and(|m| m.take_others_yielded())
                && self.fsm.state() == State::Master
            {
                tracing::warn!(instance = %self.cfg.name, group = self.group_name(),
                    "following sync group: another member gave up MASTER, stepping down");
                let a = self.fsm.handle(now, Input::StepDown);
                self.apply(now, a);
            }
            for t in [Timer::MasterDown, Timer::Adver] {
                let i = timer_index(t);
                if self.timers[i].is_some_and(|at| at <= now) {
                    self.timers[i] = None;
                    let a = self.fsm.handle(now, Input::Timer(t));
                    self.apply(now, a);
                }
            }
            if self.vips_remove_at.is_some_and(|at| at <= now) {
                self.remove_vips();
            }
            self.garps(now);
            self.notifier.reap();
        }
    }

    /// See `Instance::reconfigure`. What can fail (the new socket) comes first.
    fn reconfigure(&mut self, now: Instant, new: InstanceConfig) -> Result<(), Error> {
        if new.interface != self.cfg.interface || new.vrid != self.cfg.vrid {
            return Err(Error::Config {
                name: self.cfg.name.clone(),
                msg: format!(
                    "interface and VRID name the instance ({} VRID {}); changing them needs a restart",
                    self.cfg.interface, self.cfg.vrid
                ),
            });
        }
        if new.vmac != self.cfg.vmac {
            return Err(Error::Config {
                name: self.cfg.name.clone(),
                msg: "use-vmac and vmac-interface cannot change on reload; restart to change them"
                    .into(),
            });
        }
        if new.unicast_peers != self.cfg.unicast_peers {
            let via = advert_via(self.vmac.as_ref(), &new);
            self.socket = open_socket(
                &new.interface,
                self.ifindex,
                self.primary,
                peers_of(&new),
                via,
            )
            .map_err(|source| Error::Io {
                vrid: new.vrid,
                interface: new.interface.clone(),
                what: "reopening VRRP socket for new peers",
                source,
            })?;
        }
        if self.fsm.state() == State::Master {
            for (vip, prefix) in &self.cfg.virtual_addresses {
                if !new.virtual_addresses.iter().any(|(a, _)| a == vip) {
                    if let Err(e) = self.netlink.remove(self.vip_ifindex, *vip, *prefix) {
                        tracing::error!(instance = %self.cfg.name, %vip, error = %e, "could not remove VIP");
                    }
                }
            }
        }
        if new.track_scripts != self.cfg.track_scripts
            || new.track_interfaces != self.cfg.track_interfaces
        {
            // Counting starts over; until a new script reports it counts for nothing.
            self.tracker = Tracker::new(&new.name, &new.track_scripts, &new.track_interfaces, now);
        }
        if new.realtime != self.cfg.realtime {
            set_realtime(&new.name, new.realtime);
        }
        self.notifier
            .set_commands(new.notify.clone(), new.notify_commands.clone());
        if new.garp_refresh != self.cfg.garp_refresh && self.fsm.state() == State::Master {
            self.refresh_at = new.garp_refresh.map(|r| now + r);
        }
        tracing::info!(instance = %new.name, priority = new.priority, advert_interval = ?new.advert_interval,
            state = self.fsm.state().as_str(), "VRRP instance reconfigured");
        let fsm_cfg = fsm_config(&new, self.primary);
        self.cfg = new;
        let a = self.fsm.reconfigure(now, fsm_cfg);
        self.apply(now, a);
        Ok(())
    }

    fn group_faulted(&self) -> bool {
        self.member.as_ref().is_some_and(Member::others_faulted)
    }

    fn group_name(&self) -> &str {
        self.member.as_ref().map_or("", Member::group_name)
    }

    /// Whether the interface is up with carrier (IFF_UP and IFF_RUNNING), asked with
    /// SIOCGIFFLAGS on our own socket so the answer is for this thread's namespace.
    /// An error (interface gone) counts as down.
    fn link_up(&self) -> bool {
        address::link_up(self.socket.rx_fd(), &self.cfg.interface)
    }

    /// ppoll on the socket and the eventfd with nanosecond timeout.
    fn wait(&self, timeout: Duration, wake_fd: &OwnedFd) -> (bool, bool) {
        let mut fds = [
            libc::pollfd {
                fd: self.socket.rx_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: wake_fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.link_events.as_ref().map_or(-1, LinkEvents::fd),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let ts = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        let n = unsafe { libc::ppoll(fds.as_mut_ptr(), 3, &ts, std::ptr::null()) };
        if n <= 0 {
            return (false, false);
        }
        if fds[2].revents & libc::POLLIN != 0 {
            // The loop looks at the link on every turn; reading the
            // notifications only keeps them from waking it again.
            if let Some(ev) = &self.link_events {
                ev.drain(self.ifindex);
            }
        }
        (
            fds[0].revents & libc::POLLIN != 0,
            fds[1].revents & libc::POLLIN != 0,
        )
    }

    fn receive(&mut self, now: Instant, buf: &mut [u8]) {
        // Bounded: a flood cannot keep the loop from its timers.
        for _ in 0..64 {
            let parsed = match self.socket.recv(buf) {
                Ok(Received::V4(dgram)) => {
                    packet::parse_ipv4(dgram).map(|(ip, payload)| (ip, payload.to_vec()))
                }
                Ok(Received::V6(ip, payload)) => Ok((ip, payload.to_vec())),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::debug!(error = %e, "VRRP receive error");
                    return;
                }
            };
            let stats = &self.shared.stats;
            let (ip, payload) = match parsed {
                Ok(x) => x,
                Err(e) => {
                    stats.count_drop(e.as_str());
                    continue;
                }
            };
            if let Peers::Unicast(peers) = self.socket.peers() {
                if !peers.contains(&ip.src) {
                    stats.count_drop("not_a_peer");
                    self.warn_rate_limited(
                        now,
                        &format!(
                            "dropped advert from {}, not a configured unicast peer",
                            ip.src
                        ),
                    );
                    continue;
                }
            }
            let advert = match Advert::decode(&payload, ip.src, ip.dst) {
                Ok((a, _)) => a,
                Err(e) => {
                    stats.count_drop(e.as_str());
                    continue;
                }
            };
            stats.adverts_received.fetch_add(1, Ordering::Relaxed);
            if advert.vrid == self.cfg.vrid && ip.src != self.primary {
                *stats.last_peer.lock().unwrap_or_else(|e| e.into_inner()) = Some(PeerAdvert {
                    src: ip.src,
                    priority: advert.priority,
                    interval: Duration::from_millis(10 * advert.max_adver_int as u64),
                    at: now,
                });
            }
            let a = self.fsm.handle(
                now,
                Input::Advert {
                    ip,
                    advert: &advert,
                },
            );
            self.apply(now, a);
        }
    }

    fn warn_rate_limited(&mut self, now: Instant, msg: &str) {
        if self
            .last_warn
            .is_none_or(|t| now.duration_since(t) > Duration::from_secs(5))
        {
            self.last_warn = Some(now);
            tracing::warn!(instance = %self.cfg.name, "{msg}");
        }
    }

    fn send_advert(&mut self, now: Instant, priority: u8) {
        let advert = Advert {
            vrid: self.cfg.vrid,
            priority,
            max_adver_int: self.fsm.advert_interval_cs(),
            addresses: self.cfg.virtual_addresses.iter().map(|(a, _)| *a).collect(),
        };
        let (src, mode) = (self.primary, self.cfg.checksum_mode);
        match self.socket.send(|dst| advert.encode(src, dst, mode)) {
            Ok(()) => {
                self.shared
                    .stats
                    .adverts_sent
                    .fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.shared
                    .stats
                    .send_errors
                    .fetch_add(1, Ordering::Relaxed);
                self.warn_rate_limited(now, &format!("sending advert failed: {e}"));
            }
        }
    }

    fn send_garp_round(&mut self) {
        for (vip, _) in &self.cfg.virtual_addresses {
            match self.arp.announce(*vip) {
                Ok(()) => {
                    self.shared.stats.garps_sent.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => tracing::debug!(%vip, error = %e, "announcing the VIP failed"),
            }
        }
    }

    fn remove_vips(&mut self) {
        self.vips_remove_at = None;
        for (vip, prefix) in self.cfg.virtual_addresses.clone() {
            if let Err(e) = self.netlink.remove(self.vip_ifindex, vip, prefix) {
                tracing::error!(instance = %self.cfg.name, %vip, error = %e, "could not remove VIP");
            }
        }
        self.vmac_link_local(false);
    }

    /// While the VIPs linger after a step-down, the IPv6 ones stay to receive the clients'
    /// late packets but are never picked as the source of a new connection (a backend
    /// connection from the VIP would have its answers go to the new master):
    /// `preferred_lft 0` (`address::Lifetime::DEPRECATED`).
    fn deprecate_ipv6_vips(&self) {
        let life = address::Lifetime::DEPRECATED;
        for (vip, prefix) in self.cfg.virtual_addresses.clone() {
            if vip.is_ipv6() {
                if let Err(e) = self.netlink.replace(self.vip_ifindex, vip, prefix, life) {
                    tracing::warn!(instance = %self.cfg.name, %vip, error = %e, "could not deprecate the lingering VIP");
                }
            }
        }
    }

    /// An IPv6 VMAC carries the advert source only while master (see `vmac`).
    fn vmac_link_local(&self, on: bool) {
        if let (Some(v), IpAddr::V6(_)) = (&self.vmac, self.primary) {
            if let Err(e) = v.link_local(&self.netlink, self.primary, on) {
                tracing::error!(instance = %self.cfg.name, error = %e, "could not move the link-local address on the VMAC");
            }
        }
    }

    fn garps(&mut self, now: Instant) {
        if self.garp_left > 0 && self.garp_at.is_some_and(|t| t <= now) {
            self.send_garp_round();
            self.garp_left -= 1;
            self.garp_at = (self.garp_left > 0).then(|| now + self.cfg.garp_interval);
        }
        if let (Some(at), Some(every)) = (self.refresh_at, self.cfg.garp_refresh) {
            if at <= now && self.fsm.state() == State::Master {
                self.send_garp_round();
                self.refresh_at = Some(at + every);
            }
        }
    }

    fn apply(&mut self, now: Instant, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::SendAdvert { priority } => self.send_advert(now, priority),
                Action::ArmTimer { timer, at } => self.timers[timer_index(timer)] = Some(at),
                Action::CancelTimer(timer) => self.timers[timer_index(timer)] = None,
                Action::AddVips => {
                    self.vips_remove_at = None;
                    self.vmac_link_local(true);
                    for (vip, prefix) in self.cfg.virtual_addresses.clone() {
                        // An IPv6 VIP still lingering here (deprecated) is made preferred again.
                        let added = match vip {
                            IpAddr::V6(_) => self.netlink.replace(
                                self.vip_ifindex,
                                vip,
                                prefix,
                                address::Lifetime::FOREVER,
                            ),
                            IpAddr::V4(_) => self.netlink.add(self.vip_ifindex, vip, prefix),
                        };
                        if let Err(e) = added {
                            tracing::error!(instance = %self.cfg.name, %vip, error = %e, "could not add VIP");
                        }
                    }
                }
                Action::RemoveVips => {
                    match self.linger {
                        Some(l) if !l.is_zero() => {
                            self.vips_remove_at = Some(now + l);
                            self.deprecate_ipv6_vips();
                        }
                        _ => self.remove_vips(),
                    }
                    self.garp_left = 0;
                    self.garp_at = None;
                    self.refresh_at = None;
                }
                Action::SendGarp => {
                    self.send_garp_round();
                    self.garp_left = self.cfg.garp_count.saturating_sub(1);
                    self.garp_at = (self.garp_left > 0).then(|| now + self.cfg.garp_interval);
                    self.refresh_at = self.cfg.garp_refresh.map(|r| now + r);
                }
                Action::Transition { from, to } => {
                    self.shared.state.store(state_to(to), Ordering::Release);
                    let stats = &self.shared.stats;
                    stats.transitions.fetch_add(1, Ordering::Relaxed);
                    if to == State::Master {
                        stats.became_master.fetch_add(1, Ordering::Relaxed);
                    }
                    tracing::info!(instance = %self.cfg.name, vrid = self.cfg.vrid, priority = self.fsm.priority(),
                        "VRRP {} -> {}", from.as_str(), to.as_str());
                    if let Some(hook) = &self.cfg.on_transition {
                        (hook.0)(from, to);
                    }
                    let priority = self.fsm.priority();
                    self.notifier.notify(&self.cfg.name, to, priority);
                    if let Some(m) = &self.member {
                        if m.entered(to) {
                            let group = m.group_name().to_string();
                            self.notifier.notify_group(&group, to);
                        }
                    }
                }
                Action::Drop(reason) => self.shared.stats.count_drop(reason.as_str()),
                Action::AdvertGap(gap) => self.shared.stats.advert_gaps.observe(gap),
                Action::AddressMismatch { from } => {
                    self.shared
                        .stats
                        .address_mismatches
                        .fetch_add(1, Ordering::Relaxed);
                    self.warn_rate_limited(
                        now,
                        &format!("advert from {from} lists different virtual addresses than ours"),
                    );
                }
                Action::Discarded { from, priority } => {
                    tracing::trace!(%from, priority, "advert discarded");
                }
                Action::YieldedTo { from, priority } => {
                    self.shared.stats.yielded.fetch_add(1, Ordering::Relaxed);
                    if let Some(m) = &mut self.member {
                        m.yielded();
                    }
                    tracing::warn!(instance = %self.cfg.name, %from, priority,
                        our_priority = self.fsm.priority(),
                        "gave up MASTER to a higher-priority advert; if {from} is not one of our routers, a host on this segment is claiming the VIP");
                }
            }
            self.shared
                .stats
                .priority
                .store(self.fsm.priority(), Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(vips: &[(&str, u8)]) -> InstanceConfig {
        let vips = vips.iter().map(|(a, p)| (a.parse().unwrap(), *p)).collect();
        InstanceConfig::new("t", "eth0", 51, 100, vips)
    }

    /// RFC 5798 §5.2.9: an advert carries one family, so an instance has one:
    /// mixed VIPs, or peers of the other family, are refused; prefixes are
    /// bounded by the family (32 or 128).
    #[test]
    fn one_address_family_per_instance() {
        assert!(cfg(&[("2001:2::100", 64), ("fe80::100", 64)])
            .validate()
            .is_ok());
        let mixed = cfg(&[("198.18.0.100", 24), ("2001:2::100", 64)]).validate();
        assert!(
            matches!(&mixed, Err(Error::Config { msg, .. }) if msg.contains("one instance per address family")),
            "{mixed:?}"
        );
        let mut peers = cfg(&[("2001:2::100", 64)]);
        peers.unicast_peers = vec!["198.18.0.4".parse().unwrap()];
        assert!(peers.validate().is_err());
        assert!(cfg(&[("2001:2::100", 128)]).validate().is_ok());
        assert!(cfg(&[("2001:2::100", 129)]).validate().is_err());
        assert!(cfg(&[("198.18.0.100", 33)]).validate().is_err());
    }

    /// A realtime VRRP thread's children (track scripts, notify commands) run
    /// at normal priority: a busy script must not starve the machine.
    #[test]
    fn children_of_the_realtime_thread_are_not_realtime() {
        let out = std::thread::spawn(|| {
            set_realtime("t", true);
            std::process::Command::new("sh")
                .args(["-c", "chrt -p $$"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        })
        .join()
        .unwrap();
        let Ok(out) = out else { return }; // no sh or chrt here: nothing to check
        assert!(!out.contains("SCHED_FIFO"), "{out}");
    }
}
