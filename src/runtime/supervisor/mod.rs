//! The supervisor: what `floatlb run` starts. It owns the listening sockets
//! and the VRRP instances and runs the proxy in a worker process (`floatlb
//! worker`, comm `floatlb-worker`) that inherits the sockets, as HAProxy's
//! master and nginx's master do.
//!
//! - A worker that dies (SIGKILL, abort, OOM kill) is replaced at once on the
//!   same sockets: connections in the accept queue wait for it instead of
//!   being reset, and the VIP stays. Three deaths within [`CRASH_WINDOW`]
//!   force FAULT (priority-0 advert, VIPs given up) until a worker has served
//!   for [`STABLE_AFTER`]; replacements then back off up to 30 s.
//! - Upgrade (`POST /admin/upgrade`, SIGUSR2): the binary floatlb was started
//!   from is started as a new worker on the same sockets; once it serves, the
//!   old one gets SIGQUIT and finishes what it has. A new worker that exits or
//!   does not serve within [`READY_TIMEOUT`] is killed, and the old one goes on.
//! - SIGHUP goes to the worker (it reloads and asks here for the `[[vrrp]]`
//!   part); SIGTERM/SIGINT go to the worker, which hands over and drains; the
//!   instances stop once no worker is left.
//!
//! Not for: serving anything. The supervisor's threads are the VRRP
//! instances' and one per worker's control socket; its loop is signals and
//! child exits.

pub mod control;
mod steer;
pub mod vrrp;

use std::collections::VecDeque;
use std::io::BufReader;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::config::{self, Config};
use crate::net;
use crate::observe::metrics::Families;
use crate::runtime::supervisor::control::Inherited;
use crate::runtime::supervisor::vrrp::Ha;

/// Deaths counted for the crash loop.
pub const CRASH_WINDOW: Duration = Duration::from_secs(10);
const CRASH_LOOP_DEATHS: usize = 3;
/// A worker that has served this long ends a crash loop.
pub const STABLE_AFTER: Duration = Duration::from_secs(10);
/// How long a new worker may take to serve.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What the control threads and the admin answers read.
struct Process {
    supervisor_pid: u32,
    worker_pid: AtomicU32,
    /// Worker starts after a death (not upgrades).
    restarts: AtomicU64,
    upgrades_ok: AtomicU64,
    upgrades_failed: AtomicU64,
    crash_loop: AtomicBool,
    /// The worker whose reports reach the VRRP instances.
    current: AtomicU64,
}

struct State {
    ha: Option<Ha>,
    /// The planned handover's packet steering (`net::steer`), when the kernel and `nft`
    /// offer it.
    steering: Option<Arc<crate::net::steer::Steering>>,
    /// To the steering thread: what peers said (leaving, drained).
    drained: Mutex<std::sync::mpsc::Sender<steer::Word>>,
    sockets: Mutex<Sockets>,
    /// The `[[vrrp]]` tables the instances run with.
    vrrp: Mutex<Vec<config::Vrrp>>,
    path: PathBuf,
    /// Session-ticket keys for workers without a ticket-keys file: one set
    /// for the supervisor's life, so tickets outlive a worker.
    ticket_keys: String,
    process: Process,
    events: mpsc::UnboundedSender<Event>,
}

enum Event {
    Ready(u64),
    Exited(u64, std::io::Result<ExitStatus>),
    Upgrade(Option<oneshot::Sender<Result<String, String>>>),
}

struct Worker {
    id: u64,
    pid: u32,
    ready: bool,
}

/// Runs the supervisor until SIGTERM/SIGINT and the last worker's exit.
pub fn run(config: Config, path: &Path, log: Option<String>) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the supervisor's runtime")?;
    // Workers are forked from this thread (the one `block_on` runs on), which
    // lives as long as the process: PR_SET_PDEATHSIG fires when the forking
    // thread exits, not the process.
    rt.block_on(supervise(config, path, log))
}

/// The sockets workers inherit, bound once here. A reload that moves an
/// address closes the old one here; the worker binds the new one itself (and
/// so does a worker started after that, until floatlb restarts).
struct Sockets {
    listen: Option<OwnedFd>,
    tls: Option<OwnedFd>,
    admin: Option<OwnedFd>,
    /// `[[listen]]` entries after the first.
    extra: Vec<Option<OwnedFd>>,
}

impl Sockets {
    /// Closes each socket whose address the new config no longer has.
    fn close_moved(&mut self, cfg: &Config) {
        let extra_wanted = (1..=self.extra.len()).map(|i| cfg.listen.all.get(i).map(|l| l.address));
        let extras = self.extra.iter_mut().zip(extra_wanted);
        for (slot, want) in [
            (&mut self.listen, Some(cfg.listen.address)),
            (&mut self.tls, cfg.tls.as_ref().map(|t| t.address)),
            (&mut self.admin, cfg.admin.as_ref().map(|a| a.address)),
        ]
        .into_iter()
        .chain(extras)
        {
            let bound = slot
                .as_ref()
                .and_then(|fd| socket2::SockRef::from(fd).local_addr().ok())
                .and_then(|a| a.as_socket());
            if bound.is_some() && bound != want {
                tracing::info!(old = ?bound, new = ?want, "address moved by a reload: the supervisor closes the old socket");
                *slot = None;
            }
        }
    }

    fn inherited(&self, control: i32) -> Inherited {
        Inherited {
            listen: self.listen.as_ref().map(|f| f.as_raw_fd()),
            tls: self.tls.as_ref().map(|f| f.as_raw_fd()),
            admin: self.admin.as_ref().map(|f| f.as_raw_fd()),
            control: Some(control),
            extra: std::array::from_fn(|i| {
                self.extra
                    .get(i)
                    .and_then(|f| f.as_ref())
                    .map(|f| f.as_raw_fd())
            }),
        }
    }
}

fn bind_all(config: &Config) -> anyhow::Result<Sockets> {
    let listen = config.listen.address;
    let listen = net::bind_std(listen, config.listen.backlog)
        .with_context(|| format!("cannot listen on {listen}"))?;
    let tls = match &config.tls {
        Some(t) => Some(
            net::bind_std(t.address, config.listen.backlog)
                .with_context(|| format!("cannot listen on the TLS address {}", t.address))?,
        ),
        None => None,
    };
    let admin = match &config.admin {
        Some(a) => Some(
            std::net::TcpListener::bind(a.address)
                .with_context(|| format!("cannot listen on admin address {}", a.address))?,
        ),
        None => None,
    };
    let mut extra = Vec::new();
    for l in &config.listen.all[1..] {
        let s = net::bind_std(l.address, config.listen.backlog)
            .with_context(|| format!("cannot listen on {} ({})", l.address, l.name()))?;
        extra.push(Some(s.into()));
    }
    Ok(Sockets {
        listen: Some(listen.into()),
        tls: tls.map(Into::into),
        admin: admin.map(Into::into),
        extra,
    })
}

async fn supervise(config: Config, path: &Path, log: Option<String>) -> anyhow::Result<()> {
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut usr2 = signal(SignalKind::user_defined2())?;
    let sockets = bind_all(&config)?;
    // The path, not /proc/self/exe: a package upgrade replaces the file, and
    // the upgrade must start the new one.
    let exe = std::env::current_exe().context("cannot find floatlb's own binary")?;
    // Before the instances start: a node is ready (listeners bound, steering in place)
    // before it can announce itself as master.
    if !config.anycast.is_empty() && config.peers.is_none() {
        tracing::info!("[[anycast]] without [peers]: no handover steering, a node that leaves holds back new SYNs (docs/anycast.md)");
    }
    let steering = (!config.vrrp.is_empty() || steer::for_anycast(&config))
        .then(|| install_steering(&config))
        .flatten()
        .map(Arc::new);
    let ha = Ha::start(&config)?;
    let (drained, drained_rx) = std::sync::mpsc::channel();
    let (events, mut rx) = mpsc::unbounded_channel();
    let state = Arc::new(State {
        ha,
        steering: steering.clone(),
        drained: Mutex::new(drained),
        sockets: Mutex::new(sockets),
        vrrp: Mutex::new(config.vrrp.clone()),
        path: path.to_path_buf(),
        ticket_keys: crate::tls::tickets::generate().map_err(anyhow::Error::msg)?,
        process: Process {
            supervisor_pid: std::process::id(),
            worker_pid: AtomicU32::new(0),
            restarts: AtomicU64::new(0),
            upgrades_ok: AtomicU64::new(0),
            upgrades_failed: AtomicU64::new(0),
            crash_loop: AtomicBool::new(false),
            current: AtomicU64::new(0),
        },
        events,
    });
    let spawner = Spawner {
        exe,
        path: path.to_path_buf(),
        log,
        state: state.clone(),
        next_id: 1,
    };
    let mut sup = Loop {
        spawner,
        current: None,
        pending: None,
        retiring: Vec::new(),
        deaths: VecDeque::new(),
        backoff: Duration::ZERO,
        respawn_at: None,
        stable_at: None,
        ever_ready: false,
        hup_pending: false,
        stopping: None,
        drain_bound: config.timeouts.handover
            + config.timeouts.vip_linger
            + config.timeouts.drain
            + Duration::from_secs(5),
    };
    if let Some(s) = steering.clone().filter(|_| config.vrrp.is_empty()) {
        steer::spawn_anycast(s, drained_rx, config.timeouts.vip_linger)
            .context("cannot start the handover steering thread")?;
    } else if let Some(s) = steering {
        let t = &config.timeouts;
        steer::spawn(
            state.clone(),
            s,
            drained_rx,
            &config.vrrp,
            t.vip_linger,
            t.handover,
        )
        .context("cannot start the handover steering thread")?;
    }
    let first = sup.spawner.spawn().context("cannot start the worker")?;
    sup.set_current(first);
    let far = || Instant::now() + Duration::from_secs(86400);
    let result = loop {
        let respawn_at = sup.respawn_at.unwrap_or_else(far);
        let stable_at = sup.stable_at.unwrap_or_else(far);
        let pending_at = sup.pending.as_ref().map_or_else(far, |p| p.deadline);
        let stop_at = sup.stopping.unwrap_or_else(far);
        tokio::select! {
            Some(ev) = rx.recv() => {
                if let Some(done) = sup.on_event(ev) {
                    break done;
                }
            }
            _ = hup.recv() => sup.reload(),
            _ = term.recv() => if sup.stop() { break Ok(()) },
            _ = int.recv() => if sup.stop() { break Ok(()) },
            _ = usr2.recv() => sup.upgrade(None),
            _ = tokio::time::sleep_until(respawn_at), if sup.respawn_at.is_some() => {
                sup.respawn_at = None;
                sup.respawn();
            }
            _ = tokio::time::sleep_until(stable_at), if sup.stable_at.is_some() => {
                sup.stable_at = None;
                sup.backoff = Duration::ZERO;
                if state.process.crash_loop.swap(false, Ordering::AcqRel) {
                    tracing::warn!("the worker has served for {STABLE_AFTER:?}: FAULT lifted");
                    if let Some(ha) = &state.ha {
                        ha.set_fault(false);
                    }
                }
            }
            _ = tokio::time::sleep_until(pending_at), if sup.pending.is_some() => sup.upgrade_timed_out(),
            _ = tokio::time::sleep_until(stop_at), if sup.stopping.is_some() => {
                for pid in sup.pids() {
                    tracing::warn!(pid, "worker still running after the drain bound: killing it");
                    kill(pid, libc::SIGKILL);
                }
                sup.stopping = Some(far());
            }
        }
    };
    if let Some(ha) = &state.ha {
        ha.shutdown();
    }
    if let Some(s) = &state.steering {
        s.remove();
    }
    tracing::info!("supervisor stopped");
    result
}

/// The steering table for every `[[vrrp]]` interface, its VIPs and the listeners' ports; None
/// (with the reason logged) where the kernel or `nft` cannot do it: planned handovers then hold
/// back new SYNs as before.
fn install_steering(config: &Config) -> Option<crate::net::steer::Steering> {
    use crate::net::steer::{Spec, Steering};
    let mut ports: Vec<u16> = std::iter::once(config.listen.address.port())
        .chain(config.tls.iter().map(|t| t.address.port()))
        .chain(config.listen.all.iter().map(|l| l.address.port()))
        .collect();
    ports.sort_unstable();
    ports.dedup();
    if steer::for_anycast(config) {
        // A leaving anycast node takes its passed-back packets through a local route.
        if let Err(e) = crate::net::steer::ip_usable() {
            tracing::warn!("handover steering unavailable (an [[anycast]] node needs `ip` for its local route while it drains: {e}): a planned handover holds back new SYNs, and clients whose SYN it drops wait 1 s");
            return None;
        }
    }
    let mut specs: Vec<Spec> = steer::anycast_specs(config, &ports);
    for v in &config.vrrp {
        let vips = v.vips().into_iter().map(|(a, _)| a);
        match specs.iter_mut().find(|s| s.interface == v.interface) {
            Some(s) => s.vips.extend(vips),
            None => specs.push(Spec {
                interface: v.interface.clone(),
                vips: vips.collect(),
                ports: ports.clone(),
            }),
        }
    }
    // Remembered flows outlast the forwarding window that follows a takeover.
    let mut remember = config.timeouts.vip_linger + steer::MARGIN + Duration::from_secs(1);
    if config.vrrp.is_empty() {
        // An anycast node forwards while its own flows run: it must still know them then.
        remember = remember.max(config.timeouts.idle + Duration::from_secs(1));
    }
    match Steering::install(specs, remember) {
        Ok(s) => {
            tracing::info!(
                "handover steering ready (nftables table {}): a planned handover drops no SYN",
                crate::net::steer::TABLE
            );
            Some(s)
        }
        Err(e) => {
            tracing::warn!("handover steering unavailable ({e}): a planned handover holds back new SYNs, and clients whose SYN it drops wait 1 s");
            None
        }
    }
}

fn kill(pid: u32, sig: libc::c_int) {
    crate::runtime::process::signal(pid, sig);
}

struct Spawner {
    exe: PathBuf,
    path: PathBuf,
    log: Option<String>,
    state: Arc<State>,
    next_id: u64,
}

impl Spawner {
    /// Starts a worker on the sockets, with its control thread and a task
    /// that reports its exit.
    fn spawn(&mut self) -> std::io::Result<Worker> {
        let id = self.next_id;
        self.next_id += 1;
        let (ours, theirs) = UnixStream::pair()?;
        // Held until the fork is done: a reload must not close one meanwhile.
        let sockets = self.state.sockets.lock().unwrap_or_else(|e| e.into_inner());
        let fds = sockets.inherited(theirs.as_raw_fd());
        let mut cmd = tokio::process::Command::new(&self.exe);
        cmd.arg("worker").arg("--config").arg(&self.path);
        if let Some(l) = &self.log {
            cmd.arg("--log").arg(l);
        }
        cmd.env(control::FDS_ENV, fds.render());
        let parent = std::process::id() as libc::pid_t;
        let inherit: Vec<i32> = fds.all().collect();
        // SAFETY: only async-signal-safe calls (prctl, getppid, fcntl) between
        // fork and exec, and no allocation: `inherit` was collected before.
        unsafe {
            cmd.pre_exec(move || {
                crate::runtime::process::die_with_parent(parent)?;
                for fd in &inherit {
                    crate::runtime::process::keep_across_exec(*fd)?;
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn()?;
        drop(sockets);
        drop(theirs);
        let pid = child.id().unwrap_or(0);
        let events = self.state.events.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            let _ = events.send(Event::Exited(id, status));
        });
        let state = self.state.clone();
        std::thread::Builder::new()
            .name(format!("floatlb-ctl-{id}"))
            .spawn(move || serve_control(ours, id, &state))?;
        tracing::info!(pid, worker = id, "worker started");
        Ok(Worker {
            id,
            pid,
            ready: false,
        })
    }
}

struct Pending {
    worker: Worker,
    deadline: Instant,
    reply: Option<oneshot::Sender<Result<String, String>>>,
}

struct Loop {
    spawner: Spawner,
    current: Option<Worker>,
    pending: Option<Pending>,
    retiring: Vec<Worker>,
    deaths: VecDeque<Instant>,
    backoff: Duration,
    respawn_at: Option<Instant>,
    stable_at: Option<Instant>,
    ever_ready: bool,
    /// A SIGHUP came while the worker was starting.
    hup_pending: bool,
    /// Set by SIGTERM: when to give up waiting for workers.
    stopping: Option<Instant>,
    drain_bound: Duration,
}

impl Loop {
    fn process(&self) -> &Process {
        &self.spawner.state.process
    }

    fn set_current(&mut self, w: Worker) {
        self.process().worker_pid.store(w.pid, Ordering::Relaxed);
        self.process().current.store(w.id, Ordering::Release);
        self.current = Some(w);
    }

    fn pids(&self) -> Vec<u32> {
        self.current
            .iter()
            .chain(self.pending.as_ref().map(|p| &p.worker))
            .chain(&self.retiring)
            .map(|w| w.pid)
            .collect()
    }

    /// SIGHUP to the worker; one that is still starting gets it once it
    /// serves (before, its handler may not be there and HUP would kill it).
    fn reload(&mut self) {
        match &self.current {
            Some(w) if w.ready => kill(w.pid, libc::SIGHUP),
            _ => self.hup_pending = true,
        }
    }

    fn signal_current(&self, sig: libc::c_int) {
        if let Some(w) = &self.current {
            kill(w.pid, sig);
        }
    }

    /// Begins the stop; true when no worker is left to wait for.
    fn stop(&mut self) -> bool {
        if self.stopping.is_some() {
            return self.pids().is_empty();
        }
        tracing::info!("stopping: the worker hands over and drains");
        self.stopping = Some(Instant::now() + self.drain_bound);
        self.respawn_at = None;
        if let Some(p) = self.pending.take() {
            kill(p.worker.pid, libc::SIGKILL);
            self.retiring.push(p.worker);
            if let Some(r) = p.reply {
                let _ = r.send(Err("floatlb is stopping".into()));
            }
        }
        self.signal_current(libc::SIGTERM);
        self.pids().is_empty()
    }

    /// Some(result) when the supervisor is done.
    fn on_event(&mut self, ev: Event) -> Option<anyhow::Result<()>> {
        match ev {
            Event::Ready(id) => self.on_ready(id),
            Event::Upgrade(reply) => self.upgrade(reply),
            Event::Exited(id, status) => return self.on_exit(id, status),
        }
        None
    }

    fn on_ready(&mut self, id: u64) {
        if let Some(w) = self.current.as_mut().filter(|w| w.id == id) {
            w.ready = true;
            self.ever_ready = true;
            tracing::info!(pid = w.pid, "worker serving");
            if std::mem::take(&mut self.hup_pending) {
                kill(w.pid, libc::SIGHUP);
            }
            self.stable_at = Some(Instant::now() + STABLE_AFTER);
            return;
        }
        if self.pending.as_ref().is_some_and(|p| p.worker.id == id) {
            let p = self.pending.take().expect("checked above");
            let new_pid = p.worker.pid;
            let old = self.current.take();
            self.set_current(Worker {
                ready: true,
                ..p.worker
            });
            self.stable_at = Some(Instant::now() + STABLE_AFTER);
            self.process().upgrades_ok.fetch_add(1, Ordering::Relaxed);
            let msg = match old {
                Some(old) => {
                    // The old worker stops accepting and finishes what it has.
                    kill(old.pid, libc::SIGQUIT);
                    let m = format!(
                        "upgraded: worker {new_pid} serves; worker {} finishes its connections and exits",
                        old.pid
                    );
                    self.retiring.push(old);
                    m
                }
                None => format!("upgraded: worker {new_pid} serves"),
            };
            tracing::info!("{msg}");
            if let Some(r) = p.reply {
                let _ = r.send(Ok(msg));
            }
        }
    }

    fn upgrade(&mut self, reply: Option<oneshot::Sender<Result<String, String>>>) {
        let refuse = if self.stopping.is_some() {
            Some("floatlb is stopping")
        } else if self.pending.is_some() {
            Some("an upgrade is already in progress")
        } else {
            None
        };
        if let Some(why) = refuse {
            tracing::warn!("upgrade refused: {why}");
            if let Some(r) = reply {
                let _ = r.send(Err(why.into()));
            }
            return;
        }
        tracing::info!(binary = %self.spawner.exe.display(), "upgrade: starting a new worker");
        match self.spawner.spawn() {
            Ok(worker) => {
                self.pending = Some(Pending {
                    worker,
                    deadline: Instant::now() + READY_TIMEOUT,
                    reply,
                })
            }
            Err(e) => self.upgrade_failed(
                reply,
                format!("cannot start {}: {e}", self.spawner.exe.display()),
            ),
        }
    }

    fn upgrade_failed(
        &mut self,
        reply: Option<oneshot::Sender<Result<String, String>>>,
        why: String,
    ) {
        self.process()
            .upgrades_failed
            .fetch_add(1, Ordering::Relaxed);
        let old = self.current.as_ref().map_or(0, |w| w.pid);
        let msg = format!("upgrade failed: {why}; worker {old} goes on serving");
        tracing::error!("{msg}");
        if let Some(r) = reply {
            let _ = r.send(Err(msg));
        }
    }

    fn upgrade_timed_out(&mut self) {
        if let Some(p) = self.pending.take() {
            kill(p.worker.pid, libc::SIGKILL);
            let why = format!(
                "the new worker {} did not serve within {READY_TIMEOUT:?} (killed)",
                p.worker.pid
            );
            self.retiring.push(p.worker);
            self.upgrade_failed(p.reply, why);
        }
    }

    fn on_exit(
        &mut self,
        id: u64,
        status: std::io::Result<ExitStatus>,
    ) -> Option<anyhow::Result<()>> {
        let how = match &status {
            Ok(s) => s.to_string(),
            Err(e) => format!("unknown status ({e})"),
        };
        if let Some(i) = self.retiring.iter().position(|w| w.id == id) {
            let w = self.retiring.remove(i);
            tracing::info!(pid = w.pid, "retired worker exited ({how})");
        } else if self.pending.as_ref().is_some_and(|p| p.worker.id == id) {
            let p = self.pending.take().expect("checked above");
            let why = format!(
                "the new worker {} exited ({how}) before it served",
                p.worker.pid
            );
            self.upgrade_failed(p.reply, why);
        } else if self.current.as_ref().is_some_and(|w| w.id == id) {
            let w = self.current.take().expect("checked above");
            self.process().worker_pid.store(0, Ordering::Relaxed);
            if self.stopping.is_none() {
                if !self.ever_ready {
                    return Some(Err(anyhow::anyhow!(
                        "the worker exited ({how}) before it served; see its error above"
                    )));
                }
                self.on_death(&w, &how);
            }
        }
        if self.stopping.is_some() && self.pids().is_empty() {
            return Some(Ok(()));
        }
        None
    }

    fn on_death(&mut self, w: &Worker, how: &str) {
        let now = Instant::now();
        self.stable_at = None;
        self.deaths.push_back(now);
        while self.deaths.front().is_some_and(|t| now - *t > CRASH_WINDOW) {
            self.deaths.pop_front();
        }
        if self.deaths.len() >= CRASH_LOOP_DEATHS {
            self.backoff = (self.backoff * 2).clamp(Duration::from_secs(1), MAX_BACKOFF);
            let state = &self.spawner.state;
            if !state.process.crash_loop.swap(true, Ordering::AcqRel) {
                tracing::error!(
                    pid = w.pid,
                    deaths = self.deaths.len(),
                    "worker died ({how}): {} deaths within {CRASH_WINDOW:?}; FAULT: VIPs handed over until a worker serves for {STABLE_AFTER:?}",
                    self.deaths.len()
                );
                if let Some(ha) = &state.ha {
                    ha.set_fault(true);
                }
            } else {
                tracing::error!(
                    pid = w.pid,
                    "worker died ({how}) again; next start in {:?}",
                    self.backoff
                );
            }
            self.respawn_at = Some(now + self.backoff);
        } else {
            tracing::error!(
                pid = w.pid,
                "worker died ({how}); starting another on the same sockets"
            );
            self.respawn();
        }
    }

    fn respawn(&mut self) {
        match self.spawner.spawn() {
            Ok(w) => {
                self.process().restarts.fetch_add(1, Ordering::Relaxed);
                self.set_current(w);
            }
            Err(e) => {
                self.backoff = (self.backoff * 2).clamp(Duration::from_secs(1), MAX_BACKOFF);
                tracing::error!(error = %e, "cannot start a worker; trying again in {:?}", self.backoff);
                self.respawn_at = Some(Instant::now() + self.backoff);
            }
        }
    }
}

/// Answers one worker's calls until its end of the socket closes.
fn serve_control(stream: UnixStream, id: u64, state: &State) {
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e, "control socket");
            return;
        }
    };
    let mut reader = BufReader::new(stream);
    while let Ok(Some((seq, request))) = control::read_request(&mut reader) {
        let answer = answer(&request, id, state);
        if control::write_answer(&mut writer, seq, &answer).is_err() {
            break;
        }
    }
}

fn answer(request: &str, id: u64, state: &State) -> Result<String, String> {
    let (verb, args) = request.split_once(' ').unwrap_or((request, ""));
    let no_vrrp = || "this node runs no VRRP instance".to_string();
    match verb {
        "ready" => {
            let _ = state.events.send(Event::Ready(id));
            Ok(String::new())
        }
        "report" => {
            let (healthy, in_flight) = args.split_once(' ').ok_or("report: two numbers")?;
            let in_flight = in_flight.parse().map_err(|_| "report: bad count")?;
            // Only the worker that serves speaks for the node: a retiring one
            // stops accepting, a new one is not serving yet.
            if state.process.current.load(Ordering::Acquire) == id {
                if let Some(ha) = &state.ha {
                    ha.report(healthy == "1", in_flight);
                }
            }
            Ok(String::new())
        }
        "master" => Ok(if state.ha.as_ref().is_some_and(Ha::is_master) {
            "1".into()
        } else {
            "0".into()
        }),
        "steering" => Ok(if state.steering.is_some() { "1" } else { "0" }.into()),
        "drained" | "leaving" => {
            let word = steer::Word::parse(verb, args)?;
            let tx = state.drained.lock().unwrap_or_else(|e| e.into_inner());
            tx.send(word)
                .map_err(|_| "no handover steering here".to_string())?;
            Ok(String::new())
        }
        "step-down" => {
            let ms: u64 = args.parse().map_err(|_| "step-down: milliseconds")?;
            let ha = state.ha.as_ref().ok_or_else(no_vrrp)?;
            Ok(ha.step_down(Duration::from_millis(ms)))
        }
        "reconfigure" => reconfigure(state),
        "ticket-keys" => Ok(state.ticket_keys.clone()),
        "status" => Ok(status_json(state)),
        "metrics" => Ok(metrics(state)),
        "upgrade" => {
            let (tx, rx) = oneshot::channel();
            state
                .events
                .send(Event::Upgrade(Some(tx)))
                .map_err(|_| "the supervisor is stopping")?;
            rx.blocking_recv()
                .unwrap_or_else(|_| Err("the supervisor dropped the upgrade".into()))
        }
        other => Err(format!("unknown call {other:?}")),
    }
}

/// The `[[vrrp]]` part of a reload, from the same file the worker read.
fn reconfigure(state: &State) -> Result<String, String> {
    let cfg = config::load(&state.path).map_err(|e| e.to_string())?;
    let mut running = state.vrrp.lock().unwrap_or_else(|e| e.into_inner());
    let changed = match &state.ha {
        Some(ha) => ha.reconfigure(&running, &cfg.vrrp)?,
        None => {
            Ha::check_same_instances(&[], &cfg.vrrp)?;
            Vec::new()
        }
    };
    state
        .sockets
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .close_moved(&cfg);
    *running = cfg.vrrp;
    Ok(changed.join(", "))
}

fn status_json(state: &State) -> String {
    let p = &state.process;
    let mut out = format!(
        "\"process\":{{\"supervisor_pid\":{},\"worker_pid\":{},\"worker_restarts\":{},\"upgrades\":{},\"upgrades_failed\":{},\"crash_loop\":{}}}",
        p.supervisor_pid,
        p.worker_pid.load(Ordering::Relaxed),
        p.restarts.load(Ordering::Relaxed),
        p.upgrades_ok.load(Ordering::Relaxed),
        p.upgrades_failed.load(Ordering::Relaxed),
        p.crash_loop.load(Ordering::Relaxed),
    );
    if let Some(ha) = &state.ha {
        out.push(',');
        out.push_str(&ha.status_json());
    }
    out
}

fn metrics(state: &State) -> String {
    let f = Families::new();
    let p = &state.process;
    f.counter(
        "floatlb_worker_restarts_total",
        "Workers started by the supervisor after the previous one died.",
        p.restarts.load(Ordering::Relaxed),
    );
    f.gauge(
        "floatlb_worker_pid",
        "Process id of the worker serving now (0 while none is).",
        i64::from(p.worker_pid.load(Ordering::Relaxed)),
    );
    f.counter_vec(
        "floatlb_upgrades_total",
        "Binary upgrades in place, by result.",
        &["result"],
        [
            (vec!["ok"], p.upgrades_ok.load(Ordering::Relaxed)),
            (vec!["failed"], p.upgrades_failed.load(Ordering::Relaxed)),
        ],
    );
    f.gauge(
        "floatlb_worker_crash_loop",
        "1 while workers keep dying and the VRRP instances are held in FAULT.",
        i64::from(p.crash_loop.load(Ordering::Relaxed)),
    );
    if let Some(ha) = &state.ha {
        ha.metrics(&f);
    }
    f.encode()
}
