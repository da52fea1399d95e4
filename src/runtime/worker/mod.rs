//! The worker: builds the runtime, serves the listeners the supervisor passed
//! (see `supervisor`), runs health checks and the admin port, reports to the
//! supervisor's VRRP instances, and drives reload and shutdown.
//!
//! Signals: SIGHUP reloads `proxy.toml` (an invalid file is reported and the
//! running config stays); SIGTERM/SIGINT shut down: a VRRP master hands over
//! first (see `proxy::handover`) so a backup takes over in Skew_Time, then the
//! listener closes and in-flight requests drain (bounded by
//! `timeouts.drain`). SIGQUIT retires the worker after an upgrade: it stops
//! accepting (the new worker accepts on the same sockets) and drains.

pub mod anycast;
pub mod health;
pub mod peers;
pub mod reload;
pub mod resolve;
pub mod systemd;

use std::net::SocketAddr;
use std::os::fd::FromRawFd as _;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch, Semaphore};

use crate::config::Config;
use crate::frontend::accept;
use crate::net;
use crate::proxy::state::Shared;
use crate::runtime::admin;
use crate::runtime::admin::hooks::AdminHooks;
use crate::runtime::supervisor::control::{Inherited, Supervisor};
use crate::runtime::worker::anycast::Anycast;

/// The worker's end of the control socket, from the descriptors the
/// supervisor passed; they are closed on exec from here on.
pub fn connect(fds: &Inherited) -> anyhow::Result<Supervisor> {
    let control = fds
        .control
        .context("no control socket: a worker is started by `floatlb run`")?;
    for fd in fds.all() {
        // Ours alone from here: not inherited by anything this worker starts.
        // SAFETY: fcntl on a descriptor the supervisor passed us.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    // SAFETY: the supervisor made this socket for this worker alone.
    let stream = unsafe { std::os::unix::net::UnixStream::from_raw_fd(control) };
    Ok(Supervisor::new(stream))
}

/// Runs the worker with an already validated config until a shutdown signal,
/// on the descriptors the supervisor passed.
pub fn run(config: Config, path: &Path, fds: Inherited, sup: Supervisor) -> anyhow::Result<()> {
    crate::runtime::process::set_name(c"floatlb-worker");
    let workers = config.listen.workers.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    // One worker: a current-thread runtime. Its run queue is plain FIFO (the multi-thread
    // scheduler's LIFO slot lets a busy chain of tasks jump ahead of connections that have
    // been waiting, which shows as tail latency under many connections) and it skips the
    // work-stealing bookkeeping a single worker has no use for.
    let mut builder = if workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    let rt = builder
        .thread_name("floatlb-worker")
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(serve(config, path, fds, Arc::new(sup)))
}

/// The socket the supervisor bound for `want`; or, when a reload has moved
/// the address since the supervisor started, a new one bound here.
fn take_listener(
    fd: Option<i32>,
    want: SocketAddr,
    backlog: u32,
    what: &str,
) -> anyhow::Result<tokio::net::TcpListener> {
    if let Some(fd) = fd {
        // SAFETY: the supervisor passed this listening socket for us to own.
        let l = unsafe { std::net::TcpListener::from_raw_fd(fd) };
        if l.local_addr().is_ok_and(|a| a == want) {
            l.set_nonblocking(true)?;
            return Ok(tokio::net::TcpListener::from_std(l)?);
        }
        tracing::info!(address = %want, "{what} moved by a reload: binding it in the worker");
    }
    net::bind(want, backlog).with_context(|| format!("cannot listen on {what} {want}"))
}

async fn serve(
    config: Config,
    path: &Path,
    fds: Inherited,
    sup: Arc<Supervisor>,
) -> anyhow::Result<()> {
    // Before anything is served: a signal that finds no handler would kill us.
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut quit = signal(SignalKind::quit())?;
    let listen = config.listen.address;
    let listener = take_listener(fds.listen, listen, config.listen.backlog, "the address")?;
    let tls_listener = match &config.tls {
        Some(t) => Some(take_listener(
            fds.tls,
            t.address,
            config.listen.backlog,
            "the TLS address",
        )?),
        None => None,
    };
    let admin_listener = match &config.admin {
        Some(a) => Some(take_listener(fds.admin, a.address, 128, "admin address")?),
        None => None,
    };
    let mut extra_listeners = Vec::new();
    for (i, l) in config.listen.all.iter().enumerate().skip(1) {
        let fd = fds.extra.get(i - 1).copied().flatten();
        let what = format!("the address of [[listen]] {}", l.name());
        extra_listeners.push((
            i as u16,
            l.tls,
            take_listener(fd, l.address, config.listen.backlog, &what)?,
        ));
    }
    let primary_tls = config.listen.tls;
    let tls_id = config.listen.all.len() as u16;
    let template = config
        .log
        .format
        .as_deref()
        .and_then(|f| crate::config::LogTemplate::parse(f).ok());
    let access_log = crate::observe::access_log::AccessLog::start(
        config.log.access,
        template,
        config.log.access_path.as_deref(),
    )
    .with_context(|| format!("cannot open the access log {:?}", config.log.access_path))?;
    let mut maxconn = config.listen.maxconn;
    let mut shared = Shared::new(config, path);
    shared.access_log = access_log;
    let shared = Arc::new(shared);
    tracing::info!(address = %listen, backends = shared.live.load().backends.len(), "floatlb listening");

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (generation_tx, generation_rx) = watch::channel(0u64);
    // Bumped by reloads and by the resolver's new snapshots (the health
    // checks follow the backends of each).
    let generation_tx = Arc::new(generation_tx);
    let (rebind_tx, rebind_rx) = mpsc::channel(1);
    let limit = Arc::new(Semaphore::new(maxconn));

    // Backend names resolved before the first request (bounded by
    // [resolver] timeout per server), then on their TTL.
    resolve::start(shared.clone(), generation_tx.clone()).await;
    tokio::spawn(health::supervise(shared.clone(), generation_rx));
    // jemalloc hands freed pages back by itself (its dirty-page decay).
    #[cfg(not(feature = "jemalloc"))]
    tokio::spawn(trim_memory());
    shared.stats.set_accepting(true);
    let accept = tokio::spawn(accept::accept_loop(
        listener,
        rebind_rx,
        shared.clone(),
        limit.clone(),
        shutdown_rx.clone(),
        accept::Listener {
            tls: primary_tls,
            id: 0,
            role: accept::Role::Primary,
        },
    ));
    // Further [[listen]] entries: read at start, as the [tls] address is.
    let mut extra_rebinds = Vec::new();
    let mut extra_accepts = Vec::new();
    for (id, tls, l) in extra_listeners {
        tracing::info!(address = ?l.local_addr().ok(), tls, "floatlb listening ([[listen]])");
        let (tx, rx) = mpsc::channel(1);
        extra_rebinds.push(tx);
        extra_accepts.push(tokio::spawn(accept::accept_loop(
            l,
            rx,
            shared.clone(),
            limit.clone(),
            shutdown_rx.clone(),
            accept::Listener {
                tls,
                id,
                role: accept::Role::Extra,
            },
        )));
    }
    // The TLS listener's address is read at start; a reload swaps its certificates.
    let (_tls_rebind_tx, tls_rebind_rx) = mpsc::channel(1);
    let tls_accept = tls_listener.map(|l| {
        tracing::info!(address = ?l.local_addr().ok(), "floatlb listening for TLS");
        tokio::spawn(accept::accept_loop(
            l,
            tls_rebind_rx,
            shared.clone(),
            limit.clone(),
            shutdown_rx.clone(),
            accept::Listener {
                tls: true,
                id: tls_id,
                role: accept::Role::TlsAddress,
            },
        ))
    });
    let config = shared.live.load().config.clone();
    let vrrp = !config.vrrp.is_empty();
    if vrrp {
        report_health(shared.clone(), sup.clone());
    }
    let anycast = Anycast::start(&config, shared.clone())?;
    if anycast.is_some() && config.peers.is_some() {
        // Peers pass this node's flows back while it leaves (issue 35): no SYN filter then.
        shared.handover.set_steered(sup.steering());
    }
    peers::start(&shared, {
        let sup = sup.clone();
        Arc::new(move |word| {
            if let Err(e) = sup.peer_said(&word) {
                tracing::warn!("the peer's {:?} message: {e}", word.kind);
            }
        })
    })?;
    crate::runtime::acme::start(&shared);
    // `POST /admin/reload` asks this loop, which reloads as on SIGHUP.
    let (reload_tx, mut reload_rx) = mpsc::channel(4);
    let hooks: Arc<dyn AdminHooks> = Arc::new(WorkerHooks {
        sup: sup.clone(),
        shared: shared.clone(),
        vrrp,
        anycast: anycast.as_ref().map(|a| a.hooks()),
        reload: reload_tx,
    });
    let serve_admin = |l| tokio::spawn(admin::serve(l, shared.clone(), hooks.clone()));
    let mut admin_task = admin_listener.map(serve_admin);
    systemd::ready();
    {
        let sup = sup.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || sup.ready()).await {
            tracing::warn!("{e}");
        }
    }

    let retire = loop {
        let asked = tokio::select! {
            _ = hup.recv() => None,
            Some(reply) = reload_rx.recv() => Some(reply),
            _ = term.recv() => break false,
            _ = int.recv() => break false,
            _ = quit.recv() => break true,
        };
        {
            {
                systemd::reloading();
                let (sh, sp) = (shared.clone(), sup.clone());
                let result = tokio::task::spawn_blocking(move || reload::reload(&sh, &sp))
                    .await
                    .context("the reload task failed")?;
                let result = match result {
                    Ok(r) => {
                        tracing::info!(file = %path.display(), "configuration reloaded");
                        generation_tx.send_modify(|g| *g += 1);
                        if let Some(l) = r.new_listener {
                            let _ = rebind_tx.send(l).await;
                        }
                        if let Some(l) = r.new_admin {
                            // The old accept loop stops; its open connections finish.
                            if let Some(t) = admin_task.take() {
                                t.abort();
                            }
                            admin_task = l.map(serve_admin);
                        }
                        if r.maxconn > maxconn {
                            limit.add_permits(r.maxconn - maxconn);
                        } else if r.maxconn < maxconn {
                            limit.forget_permits(maxconn - r.maxconn);
                        }
                        maxconn = r.maxconn;
                        Ok(())
                    }
                    Err(e) => {
                        tracing::error!("reload failed, keeping the running configuration:\n{e}");
                        Err(e.to_string())
                    }
                };
                if let Some(reply) = asked {
                    let _ = reply.send(result);
                }
                systemd::ready();
            }
        }
    };
    if retire {
        // A new worker accepts on the same sockets: stop accepting here, and
        // let clients leave their connections between requests (as in a
        // handover) rather than closing idle ones under a request in flight.
        tracing::info!("retiring: a new worker serves; finishing open connections");
        for t in [Some(&accept), tls_accept.as_ref(), admin_task.as_ref()]
            .into_iter()
            .flatten()
            .chain(&extra_accepts)
        {
            t.abort();
        }
        shared.handover.close_connections();
        let bound = shared.live.load().config.timeouts.handover;
        let left = connections_closed_within(&shared, bound).await;
        if left > 0 {
            tracing::warn!(
                connections = left,
                "retiring: connections still open after timeouts.handover"
            );
        }
    } else {
        systemd::stopping();
    }

    if vrrp && !retire {
        // Planned handover (see `handover`): clients leave their keep-alive
        // connections, the VIP moves to a backup, and the listener stays up
        // (holding back new SYNs) while the VIP lingers here.
        let (sh, sp) = (shared.clone(), sup.clone());
        if let Ok(Ok(msg)) = tokio::task::spawn_blocking(move || hand_over(&sh, &sp)).await {
            tracing::info!("{msg}");
            tokio::time::sleep(shared.live.load().config.timeouts.vip_linger).await;
        }
    }
    if let Some(a) = anycast.as_ref().filter(|_| !retire) {
        // The same handover for an anycast node: clients leave their
        // connections, then the route is withdrawn; new SYNs stay held back
        // while the router hears of it (their retransmission finds another node).
        let a2 = a.clone();
        if let Ok(Ok(msg)) = tokio::task::spawn_blocking(move || a2.hand_over()).await {
            tracing::info!("{msg}");
            tokio::time::sleep(shared.live.load().config.timeouts.vip_linger).await;
        }
    }
    let drain = shared.live.load().config.timeouts.drain;
    tracing::info!(drain_timeout = ?drain, "shutting down: closing listener, draining connections");
    shared.stats.set_accepting(false);
    let _ = shutdown_tx.send(true);
    shared.handover.wake_connections();
    let _ = accept.await;
    if let Some(a) = tls_accept {
        let _ = a.await;
    }
    let left = connections_closed_within(&shared, drain).await;
    if left > 0 {
        tracing::warn!(
            connections = left,
            "drain timeout reached; closing remaining connections"
        );
    }
    // The VRRP instances stop in the supervisor once this worker has exited.
    if let Some(a) = anycast.filter(|_| !retire) {
        let _ = tokio::task::spawn_blocking(move || a.shutdown()).await;
    }
    admin::finish_answers().await;
    tracing::info!("stopped");
    Ok(())
}

/// Waits until every client connection has closed or `bound` has passed;
/// returns how many are still open.
async fn connections_closed_within(shared: &Shared, bound: Duration) -> u64 {
    let open = || {
        shared
            .stats
            .connections_active
            .load(Ordering::Relaxed)
            .max(0) as u64
    };
    let deadline = tokio::time::Instant::now() + bound;
    while open() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    open()
}

/// Requests being served by backends now, over the live backend set.
fn requests_in_flight(shared: &Shared) -> u64 {
    shared
        .live
        .load()
        .backends
        .iter()
        .map(|b| u64::from(b.in_flight.load(Ordering::Relaxed)))
        .sum()
}

/// Tells the supervisor's VRRP instances, every 50 ms, whether this worker
/// can serve. The proxy's health changes on health-check and accept
/// timescales; 50 ms is well inside any advert interval's detection budget.
/// On a thread of its own: a busy runtime must not hold the report back.
fn report_health(shared: Arc<Shared>, sup: Arc<Supervisor>) {
    let spawned = std::thread::Builder::new()
        .name("floatlb-track".into())
        .spawn(move || loop {
            if let Err(e) = sup.report(shared.healthy(), requests_in_flight(&shared)) {
                tracing::error!("{e}; no more health reports");
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the health report thread");
    }
}

/// The planned handover (see `proxy::handover`): connections moved off, then
/// the supervisor's VIPs handed over. Blocking; the caller finishes it.
fn hand_over(shared: &Arc<Shared>, sup: &Supervisor) -> Result<String, String> {
    if !sup.is_master() {
        return Err("not master: nothing to hand over".into());
    }
    let t = shared.live.load().config.timeouts.clone();
    let steered = sup.steering();
    shared.handover.set_steered(steered);
    let msg = shared
        .handover
        .hand_over(t.handover, || sup.step_down(t.vip_linger))?;
    if steered {
        let vrrp = &shared.live.load().config.vrrp;
        let vips = vrrp.iter().flat_map(|v| v.vips()).map(|(a, _)| a).collect();
        peers::tell_drained_later(shared.clone(), vips, None);
    }
    Ok(msg)
}

/// What the worker adds to its admin listener: the supervisor's state, the
/// VRRP handover through it, the anycast calls, the upgrade.
struct WorkerHooks {
    sup: Arc<Supervisor>,
    shared: Arc<Shared>,
    vrrp: bool,
    anycast: Option<Arc<dyn AdminHooks>>,
    /// The worker's main loop, which reloads when asked here.
    reload: mpsc::Sender<tokio::sync::oneshot::Sender<Result<(), String>>>,
}

impl AdminHooks for WorkerHooks {
    fn reload(&self) -> Result<String, String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.reload
            .blocking_send(tx)
            .map_err(|_| "the worker is stopping".to_string())?;
        match rx.blocking_recv() {
            Ok(Ok(())) => Ok("configuration reloaded".into()),
            Ok(Err(why)) => Err(format!(
                "reload refused, the running configuration stays:\n{why}"
            )),
            Err(_) => Err("the worker stopped before the reload finished".into()),
        }
    }

    fn metrics(&self, f: &crate::observe::metrics::Families) {
        if let Some(a) = &self.anycast {
            a.metrics(f);
        }
    }

    fn metrics_text(&self) -> Option<String> {
        self.sup.metrics_text()
    }

    fn status_json(&self) -> Option<String> {
        let mut parts: Vec<String> = self.sup.status_json().into_iter().collect();
        parts.extend(self.anycast.as_ref().and_then(|a| a.status_json()));
        (!parts.is_empty()).then(|| parts.join(","))
    }

    fn handover(&self) -> Result<String, String> {
        if !self.vrrp {
            return match &self.anycast {
                Some(a) => a.handover(),
                None => Err("this node runs no VRRP instance".into()),
            };
        }
        let msg = hand_over(&self.shared, &self.sup)?;
        // Serve again, as a backup.
        self.shared.finish_handover_later();
        Ok(msg)
    }

    fn resume(&self) -> Result<String, String> {
        match &self.anycast {
            Some(a) => a.resume(),
            None => Err("this node has no [[anycast]] VIP".into()),
        }
    }

    fn upgrade(&self) -> Result<String, String> {
        self.sup.upgrade()
    }
}

/// Built without jemalloc (`--no-default-features`): glibc keeps what a burst allocated (about 15 KiB per client connection: hyper's buffers
/// and the connection's task) in its arenas after the connections close, so RSS would stay
/// at the burst's peak. Like HAProxy releasing its pools with malloc_trim, every 10 s the
/// free memory of every arena goes back to the kernel (on a blocking thread: with a large,
/// fragmented heap a trim takes a few milliseconds).
#[cfg(not(feature = "jemalloc"))]
async fn trim_memory() {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            let took = tokio::task::spawn_blocking(|| {
                let t = std::time::Instant::now();
                let released = crate::runtime::process::trim_heap();
                (released, t.elapsed())
            })
            .await;
            if let Ok((true, took)) = took {
                tracing::debug!(?took, "returned free heap memory to the kernel");
            }
        }
    }
}
