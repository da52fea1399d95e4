//! SIGHUP (and `floatlb reload`): the config file is read again and, if it is
//! valid, swapped in as a new snapshot; a new listen address is bound first.
//! A bad file changes nothing and says why (file:line:col).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::config;
use crate::proxy::state::{unix_now, Shared, Snapshot};

/// What a successful reload changed that the caller must act on.
pub struct Reloaded {
    /// A listener bound to the new `[listen] address`, if it changed.
    pub new_listener: Option<TcpListener>,
    pub maxconn: usize,
}

/// Why a reload was refused; the running config is untouched.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Re-reads the config file and swaps it in if valid.
pub fn reload(shared: &Shared) -> Result<Reloaded, ReloadError> {
    let result = try_reload(shared);
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

fn try_reload(shared: &Shared) -> Result<Reloaded, ReloadError> {
    let cfg = config::load(&shared.config_path)?;
    let old = shared.live.load_full();
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
    let maxconn = cfg.listen.maxconn;
    shared
        .live
        .store(Arc::new(Snapshot::build(cfg, &old.backends)));
    Ok(Reloaded {
        new_listener,
        maxconn,
    })
}
