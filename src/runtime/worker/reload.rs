//! SIGHUP (and `floatlb ctl reload`): the config file is read again and, if
//! it is valid, swapped in as a new snapshot. What can fail comes first — a
//! new listen or admin address is bound, the `[[vrrp]]` instances take their
//! new parameters — so a refused reload changes nothing and says why
//! (file:line:col, or the section and reason). docs/configuration.md has the
//! table of what each section does on reload.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::config;
use crate::proxy::state::{unix_now, Shared, Snapshot};
use crate::runtime::supervisor::control::Supervisor;

/// What a successful reload changed that the caller must act on.
pub struct Reloaded {
    /// A listener bound to the new `[listen] address`, if it changed.
    pub new_listener: Option<TcpListener>,
    /// `[admin]` moved, appeared or went: the listener to serve from now on.
    pub new_admin: Option<Option<TcpListener>>,
    pub maxconn: usize,
}

/// Why a reload was refused; the running config is untouched.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("[admin] address: cannot listen on {address}: {source}")]
    AdminBind {
        address: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("[[vrrp]]: {0}")]
    Vrrp(String),
    #[error("[[listen]]: the entries after the first (and a listener's tls) change only at a restart; the running configuration stays")]
    Listeners,
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Re-reads the config file and swaps it in if valid.
pub fn reload(shared: &Shared, sup: &Supervisor) -> Result<Reloaded, ReloadError> {
    let result = try_reload(shared, sup);
    match &result {
        Ok(_) => {
            *shared
                .last_reload_error
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = None;
            shared.stats.reloads_ok.fetch_add(1, Ordering::Relaxed);
            shared
                .stats
                .last_reload_unix
                .store(unix_now(), Ordering::Relaxed);
        }
        Err(e) => {
            *shared
                .last_reload_error
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
            shared.stats.reloads_failed.fetch_add(1, Ordering::Relaxed);
        }
    }
    result
}

fn try_reload(shared: &Shared, sup: &Supervisor) -> Result<Reloaded, ReloadError> {
    let cfg = config::load(&shared.config_path)?;
    let old = shared.live.load_full();
    // Routes name listeners by their place among the sockets the worker
    // holds: a file that moves them would route by the wrong socket.
    if listeners_changed(&cfg, &old.config) {
        return Err(ReloadError::Listeners);
    }
    let new_listener = if cfg.listen.address != old.config.listen.address {
        let l = crate::net::bind(cfg.listen.address, cfg.listen.backlog).map_err(|source| {
            ReloadError::Bind {
                address: cfg.listen.address,
                source,
            }
        })?;
        Some(l)
    } else {
        None
    };
    let old_admin = old.config.admin.as_ref().map(|a| a.address);
    let new_admin = match cfg.admin.as_ref().map(|a| a.address) {
        a if a == old_admin => None,
        None => Some(None),
        Some(address) => {
            let l =
                bind_admin(address).map_err(|source| ReloadError::AdminBind { address, source })?;
            Some(Some(l))
        }
    };
    // Last, as it is the one step with effects outside this process: the
    // supervisor reads the same file for its VRRP instances.
    let changed = sup.reconfigure().map_err(ReloadError::Vrrp)?;
    if !changed.is_empty() {
        tracing::info!(instances = %changed, "VRRP instances reconfigured");
    }
    for (what, changed) in [
        (
            "listen.workers",
            cfg.listen.workers != old.config.listen.workers,
        ),
        (
            "log",
            cfg.log.access != old.config.log.access
                || cfg.log.access_path != old.config.log.access_path
                || cfg.log.format != old.config.log.format,
        ),
    ] {
        if changed {
            tracing::warn!("{what} changed: it takes effect at the next restart");
        }
    }
    let maxconn = cfg.listen.maxconn;
    shared
        .live
        .store(Arc::new(Snapshot::build(cfg, Some(&old))));
    Ok(Reloaded {
        new_listener,
        new_admin,
        maxconn,
    })
}

fn bind_admin(address: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let l = std::net::TcpListener::bind(address)?;
    l.set_nonblocking(true)?;
    TcpListener::from_std(l)
}

/// Whether the listeners a reload cannot move (each `[[listen]]` after the
/// first, and whether a listener speaks TLS) differ.
fn listeners_changed(new: &crate::config::Config, old: &crate::config::Config) -> bool {
    let key = |c: &crate::config::Config| {
        let rest: Vec<_> = c.listen.all[1..]
            .iter()
            .map(|l| (l.address, l.tls))
            .collect();
        (c.listen.tls, rest)
    };
    key(new) != key(old)
}
