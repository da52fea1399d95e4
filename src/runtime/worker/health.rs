//! Active health checks: an HTTP request per backend every `interval` (its
//! pool's `[health]`: method, path, Host, expected statuses, a text the body
//! must hold), off the request path, with HAProxy's `rise`/`fall` hysteresis.
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
    /// The body did not hold the expected text.
    Body,
}

impl std::fmt::Display for CheckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckError::Timeout => f.write_str("timed out"),
            CheckError::Connect(e) => write!(f, "connect: {e}"),
            CheckError::Io(e) => write!(f, "i/o: {e}"),
            CheckError::BadResponse => f.write_str("malformed HTTP response"),
            CheckError::Status(s) => write!(f, "status {s}"),
            CheckError::Body => f.write_str("body without the expected text"),
        }
    }
}

/// What a check sends and what passes.
#[derive(Debug, Clone)]
pub struct Probe {
    pub method: String,
    pub path: String,
    /// The Host field; None: the backend's address.
    pub host: Option<String>,
    /// Statuses that pass, as inclusive ranges.
    pub statuses: Vec<(u16, u16)>,
    /// Text the body must hold (in its first [`BODY_MAX`] bytes).
    pub body: Option<String>,
    /// A pool only TCP listeners use: a connect passes (HAProxy's `check`
    /// in `mode tcp`), nothing is sent but a PROXY header.
    pub connect_only: bool,
    /// The pool's `send-proxy`: a header naming no client (v1 UNKNOWN, v2
    /// LOCAL, which §2.2 of the PROXY protocol meant for health checks) first.
    pub send_proxy: Option<crate::net::proxy_protocol::Version>,
}

/// How much of an answer a check reads when it looks at the body.
const BODY_MAX: usize = 16 * 1024;

impl Probe {
    /// The probe a `[health]` table describes.
    pub fn of(h: &crate::config::Health) -> Probe {
        Probe {
            method: h.method.clone(),
            path: h.path.clone(),
            host: h.host.clone(),
            statuses: h.expected_statuses().unwrap_or_else(|_| vec![(200, 399)]),
            body: h.expect_body.clone(),
            connect_only: false,
            send_proxy: None,
        }
    }
}

/// One HTTP check: an expected status (and body text) within `timeout` passes.
pub async fn check(addr: SocketAddr, probe: &Probe, timeout: Duration) -> Result<u16, CheckError> {
    tokio::time::timeout(timeout, check_inner(addr, probe))
        .await
        .unwrap_or(Err(CheckError::Timeout))
}

async fn check_inner(addr: SocketAddr, probe: &Probe) -> Result<u16, CheckError> {
    let mut s = TcpStream::connect(addr)
        .await
        .map_err(|e| CheckError::Connect(e.to_string()))?;
    let _ = s.set_nodelay(true);
    if let Some(v) = probe.send_proxy {
        s.write_all(&crate::net::proxy_protocol::unknown(v))
            .await
            .map_err(|e| CheckError::Io(e.to_string()))?;
    }
    if probe.connect_only {
        return Ok(0);
    }
    probe_over(s, addr, probe).await
}

/// One check of `backend` over its pool's transport. A cleartext HTTP/1.1
/// pool is checked as [`check`] does; over TLS the probe goes in the TLS
/// session (SNI: the pool's `server-name`, else the probe's Host); an
/// HTTP/2 pool gets the probe as an HTTP/2 request.
pub async fn check_backend(
    backend: &BackendState,
    probe: &Probe,
    timeout: Duration,
) -> Result<u16, CheckError> {
    let t = backend.pool.transport();
    if (t.tls.is_none() && !t.multiplexed()) || probe.connect_only {
        return check(backend.address, probe, timeout).await;
    }
    let addr = backend.address;
    let checked = async {
        let sni = backend.pool.sni_for(
            &t,
            backend.dns_name(),
            probe.host.as_deref().map(str::as_bytes),
        );
        let s = backend
            .pool
            .connect(&t, sni.clone(), timeout)
            .await
            .map_err(|e| CheckError::Connect(e.to_string()))?;
        if !t.multiplexed() || (t.tls.is_some() && s.alpn() != Some(b"h2")) {
            return probe_over(s, addr, probe).await;
        }
        let session = crate::backend::h2::Session::handshake(s, sni)
            .await
            .map_err(CheckError::Io)?;
        let host = probe.host.clone().unwrap_or_else(|| addr.to_string());
        let head = format!(
            "{} {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: floatlb-health\r\n\r\n",
            probe.method, probe.path
        );
        let scheme = if t.tls.is_some() { "https" } else { "http" };
        let (head, mut body, _) = crate::backend::h2::send(
            session.lease(),
            head.as_bytes(),
            scheme,
            &host,
            crate::backend::h2::Payload::Whole(&[]),
            probe.method.eq_ignore_ascii_case("HEAD"),
            timeout,
        )
        .await
        .map_err(|e| CheckError::Io(e.to_string()))?;
        let mut text = Vec::new();
        if probe.body.is_some() {
            while text.len() < BODY_MAX {
                match std::future::poll_fn(|cx| body.poll_data(cx)).await {
                    Ok(Some(d)) => text.extend_from_slice(&d),
                    Ok(None) => break,
                    Err(e) => return Err(CheckError::Io(e.to_string())),
                }
            }
        }
        judge(head.status.as_u16(), &text, probe)
    };
    tokio::time::timeout(timeout, checked)
        .await
        .unwrap_or(Err(CheckError::Timeout))
}

/// The probe's HTTP/1.1 request over a connection made for it.
async fn probe_over<S>(mut s: S, addr: SocketAddr, probe: &Probe) -> Result<u16, CheckError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let host = probe.host.clone().unwrap_or_else(|| addr.to_string());
    let req = format!(
        "{} {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: floatlb-health\r\nConnection: close\r\n\r\n",
        probe.method, probe.path
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| CheckError::Io(e.to_string()))?;
    // The status line; with a body to look for, up to BODY_MAX bytes or the close.
    let want = if probe.body.is_some() { BODY_MAX } else { 12 };
    let mut buf = vec![0u8; want.max(64)];
    let mut n = 0;
    while n < want {
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
    let body_at = buf[..n]
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(n, |i| i + 4);
    judge(status, &buf[body_at..n], probe)
}

/// Whether an answer's status (and the start of its body) pass the probe.
fn judge(status: u16, body: &[u8], probe: &Probe) -> Result<u16, CheckError> {
    if !probe
        .statuses
        .iter()
        .any(|&(a, b)| (a..=b).contains(&status))
    {
        return Err(CheckError::Status(status));
    }
    if let Some(text) = &probe.body {
        let found = body
            .windows(text.len().max(1))
            .any(|w| w == text.as_bytes());
        if !found {
            return Err(CheckError::Body);
        }
    }
    Ok(status)
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
        let (h, connect_only, send_proxy) = {
            // The backend's pool's checks, as the config current now says.
            let snap = shared.live.load();
            let r = &snap.config.resolved;
            match r.pools.iter().position(|p| p.name == backend.pool_name) {
                Some(i) => (
                    r.pools[i].health.clone(),
                    r.tcp_only.get(i).copied().unwrap_or(false),
                    r.send_proxy.get(i).copied().flatten(),
                ),
                None => (snap.config.health.clone(), false, None),
            }
        };
        // A backend in maintenance is not checked (HAProxy's MAINT).
        if !h.enabled || backend.admin_state() == crate::backend::AdminState::Maint {
            tokio::time::sleep(h.interval).await;
            continue;
        }
        let probe = Probe {
            connect_only,
            send_proxy,
            ..Probe::of(&h)
        };
        let result = check_backend(&backend, &probe, h.timeout).await;
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
        let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            for (status, body) in [
                ("200 OK", ""),
                ("500 Internal Server Error", ""),
                ("204 No Content", ""),
                ("200 OK", "all good"),
                ("200 OK", "degraded"),
            ] {
                let (mut s, _) = l.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).await.unwrap();
                let _ = seen_tx.send(String::from_utf8_lossy(&buf[..n]).into_owned());
                let resp = format!(
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                s.write_all(resp.as_bytes()).await.unwrap();
            }
        });
        let t = Duration::from_secs(2);
        let mut probe = Probe::of(&crate::config::Health::default());
        assert_eq!(check(addr, &probe, t).await, Ok(200));
        assert!(seen
            .recv()
            .await
            .unwrap()
            .starts_with(&format!("GET / HTTP/1.1\r\nHost: {addr}\r\n")));
        assert_eq!(check(addr, &probe, t).await, Err(CheckError::Status(500)));
        seen.recv().await;
        // A pool's own check: method, path, Host, statuses, body text.
        probe.method = "HEAD".into();
        probe.path = "/healthz".into();
        probe.host = Some("shop.example".into());
        probe.statuses = vec![(200, 200)];
        assert_eq!(check(addr, &probe, t).await, Err(CheckError::Status(204)));
        assert!(seen
            .recv()
            .await
            .unwrap()
            .starts_with("HEAD /healthz HTTP/1.1\r\nHost: shop.example\r\n"));
        probe.method = "GET".into();
        probe.body = Some("good".into());
        assert_eq!(check(addr, &probe, t).await, Ok(200));
        assert_eq!(check(addr, &probe, t).await, Err(CheckError::Body));
        // Nothing listens there any more.
        assert!(matches!(
            check(addr, &probe, t).await,
            Err(CheckError::Connect(_))
        ));
    }
}
