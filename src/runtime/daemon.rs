//! The running daemon: builds the runtime, wires listener, health checks,
//! admin port, VRRP and signals together, and drives reload and shutdown.
//!
//! Signals: SIGHUP reloads `proxy.toml` (an invalid file is reported and the
//! running config stays); SIGTERM/SIGINT shut down: VRRP instances step down
//! first (priority-0 advert, VIPs removed) so a backup takes over in Skew_Time,
//! then the listener closes and in-flight requests drain (bounded by
//! `timeouts.drain`).

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
use crate::runtime::anycast::Anycast;
use crate::runtime::ha::Ha;
use crate::runtime::{admin, health, reload, systemd};

/// Runs floatlb with an already validated config until a shutdown signal.
pub fn run(config: Config, path: &Path) -> anyhow::Result<()> {
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
    rt.block_on(serve(config, path))
}

async fn serve(config: Config, path: &Path) -> anyhow::Result<()> {
    // Before anything is bound: a SIGHUP that finds no handler would kill us.
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let listen = config.listen.address;
    let listener = net::bind(listen, config.listen.backlog)
        .with_context(|| format!("cannot listen on {listen}"))?;
    let tls_listener = match &config.tls {
        Some(t) => Some(
            net::bind(t.address, config.listen.backlog)
                .with_context(|| format!("cannot listen on the TLS address {}", t.address))?,
        ),
        None => None,
    };
    let admin_listener = match &config.admin {
        Some(a) => Some(
            tokio::net::TcpListener::bind(a.address)
                .await
                .with_context(|| format!("cannot listen on admin address {}", a.address))?,
        ),
        None => None,
    };
    let access_log = crate::observe::access_log::AccessLog::start(
        config.log.access,
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
    let (rebind_tx, rebind_rx) = mpsc::channel(1);
    let limit = Arc::new(Semaphore::new(maxconn));

    tokio::spawn(health::supervise(shared.clone(), generation_rx));
    tokio::spawn(trim_memory());
    shared.stats.set_accepting(true);
    let accept = tokio::spawn(accept::accept_loop(
        listener,
        rebind_rx,
        shared.clone(),
        limit.clone(),
        shutdown_rx.clone(),
        accept::Listener::Plain,
    ));
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
            accept::Listener::Tls,
        ))
    });
    let config = shared.live.load().config.clone();
    let ha = Ha::start(&config, shared.clone())?.map(Arc::new);
    let anycast = Anycast::start(&config, shared.clone())?;
    let hooks: Arc<dyn admin::AdminHooks> = match (&ha, &anycast) {
        (Some(ha), _) => ha.hooks(),
        (None, Some(a)) => a.hooks(),
        (None, None) => Arc::new(admin::NoHooks),
    };
    let serve_admin = |l| tokio::spawn(admin::serve(l, shared.clone(), hooks.clone()));
    let mut admin_task = admin_listener.map(serve_admin);
    systemd::ready();

    loop {
        tokio::select! {
            _ = hup.recv() => {
                systemd::reloading();
                match reload::reload(&shared, ha.as_deref()) {
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
                    }
                    Err(e) => tracing::error!("reload failed, keeping the running configuration:\n{e}"),
                }
                systemd::ready();
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    systemd::stopping();

    if let Some(ha) = &ha {
        // Planned handover (see `handover`): clients leave their keep-alive
        // connections, the VIP moves to a backup, and the listener stays up
        // (holding back new SYNs) while the VIP lingers here.
        let h = ha.clone();
        if let Ok(Ok(msg)) = tokio::task::spawn_blocking(move || h.hand_over()).await {
            tracing::info!("{msg}");
            tokio::time::sleep(shared.live.load().config.timeouts.vip_linger).await;
        }
    }
    if let Some(a) = &anycast {
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
    let deadline = tokio::time::Instant::now() + drain;
    while shared.stats.connections_active.load(Ordering::Relaxed) > 0
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left = shared.stats.connections_active.load(Ordering::Relaxed);
    if left > 0 {
        tracing::warn!(
            connections = left,
            "drain timeout reached; closing remaining connections"
        );
    }
    if let Some(ha) = ha {
        // No-op adverts if already handed over; otherwise priority 0 now. VIPs removed.
        let _ = tokio::task::spawn_blocking(move || ha.shutdown()).await;
    }
    if let Some(a) = anycast {
        let _ = tokio::task::spawn_blocking(move || a.shutdown()).await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// glibc keeps what a burst allocated (about 15 KiB per client connection: hyper's buffers
/// and the connection's task) in its arenas after the connections close, so RSS would stay
/// at the burst's peak. Like HAProxy releasing its pools with malloc_trim, every 10 s the
/// free memory of every arena goes back to the kernel (on a blocking thread: with a large,
/// fragmented heap a trim takes a few milliseconds).
async fn trim_memory() {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            let took = tokio::task::spawn_blocking(|| {
                let t = std::time::Instant::now();
                // SAFETY: a plain glibc call; 0 = keep no extra padding at the heap top.
                let released = unsafe { libc::malloc_trim(0) } == 1;
                (released, t.elapsed())
            })
            .await;
            if let Ok((true, took)) = took {
                tracing::debug!(?took, "returned free heap memory to the kernel");
            }
        }
    }
}
