//! Active health checks: an HTTP GET per backend every `interval`, off the
//! request path, with HAProxy's `rise`/`fall` hysteresis.
//!
//! One task per backend; a supervisor starts and stops them as reloads add and
//! remove backends. Passive checks (failed connects from live traffic) live in
//! [`crate::backend::BackendState::record_connect`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::backend::BackendState;
use crate::proxy::state::Shared;

/// Why a check failed, for logs.
#[derive(Debug, PartialEq, Eq)]
pub enum CheckError {
    Timeout,
    Connect(String),
    Io(String),
    BadResponse,
    Status(u16),
}

impl std::fmt::Display for CheckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckError::Timeout => f.write_str("timed out"),
            CheckError::Connect(e) => write!(f, "connect: {e}"),
            CheckError::Io(e) => write!(f, "i/o: {e}"),
            CheckError::BadResponse => f.write_str("malformed HTTP response"),
            CheckError::Status(s) => write!(f, "status {s}"),
        }
    }
}

/// One HTTP check: 2xx or 3xx within `timeout` passes.
pub async fn check(addr: SocketAddr, path: &str, timeout: Duration) -> Result<u16, CheckError> {
    tokio::time::timeout(timeout, check_inner(addr, path))
        .await
        .unwrap_or(Err(CheckError::Timeout))
}

async fn check_inner(addr: SocketAddr, path: &str) -> Result<u16, CheckError> {
    let mut s = TcpStream::connect(addr)
        .await
        .map_err(|e| CheckError::Connect(e.to_string()))?;
    let _ = s.set_nodelay(true);
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: floatlb-health\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| CheckError::Io(e.to_string()))?;
    let mut buf = [0u8; 64];
    let mut n = 0;
    while n < 12 {
        let r = s
            .read(&mut buf[n..])
            .await
            .map_err(|e| CheckError::Io(e.to_string()))?;
        if r == 0 {
            break;
        }
        n += r;
    }
    let status = parse_status_line(&buf[..n]).ok_or(CheckError::BadResponse)?;
    if (200..400).contains(&status) {
        Ok(status)
    } else {
        Err(CheckError::Status(status))
    }
}

/// Status code from the start of an HTTP/1.x response.
fn parse_status_line(b: &[u8]) -> Option<u16> {
    if b.len() < 12 || !b.starts_with(b"HTTP/1.") || b[8] != b' ' {
        return None;
    }
    std::str::from_utf8(&b[9..12]).ok()?.parse().ok()
}

async fn run_checks(shared: Arc<Shared>, backend: Arc<BackendState>) {
    loop {
        let h = shared.live.load().config.health.clone();
        // A backend in maintenance is not checked (HAProxy's MAINT).
        if !h.enabled || backend.admin_state() == crate::backend::AdminState::Maint {
            tokio::time::sleep(h.interval).await;
            continue;
        }
        let result = check(backend.address, &h.path, h.timeout).await;
        let ok = result.is_ok();
        match backend.record_check(ok, h.rise, h.fall) {
            Some(true) => {
                tracing::info!(backend = %backend.name, "backend is UP (health check passed {} times)", h.rise)
            }
            Some(false) => {
                let why = result.err().map(|e| e.to_string()).unwrap_or_default();
                tracing::warn!(backend = %backend.name, reason = %why, "backend is DOWN (health check failed {} times)", h.fall)
            }
            None => {}
        }
        backend.pool.evict_expired();
        tokio::time::sleep(h.interval).await;
    }
}

/// Keeps one check task per live backend, following reloads.
pub async fn supervise(shared: Arc<Shared>, mut changed: tokio::sync::watch::Receiver<u64>) {
    let mut tasks: HashMap<usize, (Arc<BackendState>, JoinHandle<()>)> = HashMap::new();
    loop {
        let snap = shared.live.load_full();
        let live: Vec<usize> = snap
            .backends
            .iter()
            .map(|b| Arc::as_ptr(b) as usize)
            .collect();
        tasks.retain(|key, (_, task)| {
            let keep = live.contains(key);
            if !keep {
                task.abort();
            }
            keep
        });
        for b in &snap.backends {
            let key = Arc::as_ptr(b) as usize;
            tasks.entry(key).or_insert_with(|| {
                (
                    b.clone(),
                    tokio::spawn(run_checks(shared.clone(), b.clone())),
                )
            });
        }
        drop(snap);
        if changed.changed().await.is_err() {
            for (_, (_, t)) in tasks.drain() {
                t.abort();
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(parse_status_line(b"HTTP/1.0 503 Service"), Some(503));
        assert_eq!(parse_status_line(b"SSH-2.0-OpenSSH_9\r\n"), None);
        assert_eq!(parse_status_line(b"HTTP/1.1 2"), None);
    }

    #[tokio::test]
    async fn check_against_listener() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            for status in ["200 OK", "500 Internal Server Error"] {
                let (mut s, _) = l.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let resp = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
                s.write_all(resp.as_bytes()).await.unwrap();
            }
        });
        assert_eq!(check(addr, "/", Duration::from_secs(2)).await, Ok(200));
        assert_eq!(
            check(addr, "/", Duration::from_secs(2)).await,
            Err(CheckError::Status(500))
        );
        // Nothing listens there any more.
        assert!(matches!(
            check(addr, "/", Duration::from_secs(2)).await,
            Err(CheckError::Connect(_))
        ));
    }
}
