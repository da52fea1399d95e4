//! Backends: live per-server state and the connection pool to each server.
//!
//! A [`BackendState`] outlives config reloads (it is matched by name), so health,
//! counters and pooled connections survive a SIGHUP. The pool holds the
//! request path's own connections ([`Upstream`]): one small mutex per backend,
//! and a failed connect leaves the request untouched so the proxy can
//! redispatch it to another server.

pub mod h2;
pub mod h2_body;
pub mod resolve;
pub mod stream;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::StatusCode;
use tokio::net::{TcpSocket, TcpStream};

use crate::backend::stream::Stream;
use crate::backend::upstream::Upstream;
use crate::balance::Candidate;
use crate::config;
use crate::error::{Error, Kind, Phase, Retry, Side};

/// Milliseconds since process start; cheap monotonic timestamps for atomics.
pub fn now_ms() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// Everything floatlb knows about one web server.
#[derive(Debug)]
pub struct BackendState {
    pub name: String,
    /// The pool it belongs to; the same name in another pool is another backend.
    pub pool_name: String,
    pub address: SocketAddr,
    up: AtomicBool,
    /// When the backend last came up (ms since start), for slow start; 0 = since boot.
    up_since_ms: AtomicU64,
    pub in_flight: AtomicU32,
    check_ok: AtomicU32,
    check_fail: AtomicU32,
    connect_fail: AtomicU32,
    pub stats: BackendStats,
    pub pool: Pool,
    /// What an operator set through the runtime API ([`AdminState`]); kept across
    /// reloads with the rest of this state.
    admin: AtomicU8,
    /// A weight set through the runtime API, overriding the configured one
    /// (`u32::MAX`: none).
    weight_override: AtomicU32,
    /// The queue of its pool (shared by the pool's backends, kept across reloads).
    pub queue: Arc<PoolQueue>,
}

/// Requests of one pool waiting for a backend below its `maxconn`
/// (HAProxy's backend queue): woken one at a time, first come first served,
/// as a request on one of the pool's backends ends.
#[derive(Debug, Default)]
pub struct PoolQueue {
    notify: tokio::sync::Notify,
    /// Requests waiting now.
    pub waiting: AtomicU32,
    /// Requests that waited, and those of them that gave up at the timeout
    /// or found the queue full.
    pub queued_total: AtomicU64,
    pub refused_total: AtomicU64,
}

impl PoolQueue {
    /// Wakes the first waiter, if any: a slot was given back.
    pub fn slot_freed(&self) {
        if self.waiting.load(Ordering::Acquire) > 0 {
            self.notify.notify_one();
        }
    }

    /// Waits until a slot may be free or `deadline`; false at the deadline.
    /// `room` is checked after the waiter is registered, so a slot freed in
    /// between is not missed.
    pub async fn wait(&self, deadline: tokio::time::Instant, room: impl Fn() -> bool) -> bool {
        self.waiting.fetch_add(1, Ordering::AcqRel);
        let notified = self.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let woken = room()
            || tokio::select! {
                () = notified => true,
                () = tokio::time::sleep_until(deadline) => false,
            };
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        woken
    }
}

/// A backend's state as an operator set it (HAProxy's READY, DRAIN, MAINT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminState {
    /// Takes requests as its health allows.
    Ready,
    /// Takes no new requests; those in flight finish. Health checks go on.
    Drain,
    /// Out: no new requests, no health checks.
    Maint,
}

impl AdminState {
    pub fn as_str(self) -> &'static str {
        match self {
            AdminState::Ready => "ready",
            AdminState::Drain => "drain",
            AdminState::Maint => "maint",
        }
    }
}

/// Monotonic counters, exported by the admin listener.
#[derive(Debug, Default)]
pub struct BackendStats {
    pub requests: AtomicU64,
    pub responses_1xx: AtomicU64,
    pub responses_2xx: AtomicU64,
    pub responses_3xx: AtomicU64,
    pub responses_4xx: AtomicU64,
    pub responses_5xx: AtomicU64,
    pub connect_errors: AtomicU64,
    pub response_errors: AtomicU64,
    pub timeouts: AtomicU64,
    pub retries: AtomicU64,
    pub redispatches: AtomicU64,
    pub checks_ok: AtomicU64,
    pub checks_failed: AtomicU64,
    pub went_down: AtomicU64,
    pub connections_opened: AtomicU64,
}

impl BackendStats {
    pub fn count_status(&self, status: u16) {
        let c = match status {
            100..=199 => &self.responses_1xx,
            200..=299 => &self.responses_2xx,
            300..=399 => &self.responses_3xx,
            400..=499 => &self.responses_4xx,
            _ => &self.responses_5xx,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

impl BackendState {
    pub fn new(cfg: &config::Backend, pool_name: &str, pool: PoolSettings) -> Self {
        Self::in_queue(cfg, pool_name, pool, Arc::default())
    }

    fn in_queue(
        cfg: &config::Backend,
        pool_name: &str,
        pool: PoolSettings,
        queue: Arc<PoolQueue>,
    ) -> Self {
        BackendState {
            name: cfg.name.clone(),
            pool_name: pool_name.to_string(),
            address: cfg.address,
            up: AtomicBool::new(true),
            up_since_ms: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
            check_ok: AtomicU32::new(0),
            check_fail: AtomicU32::new(0),
            connect_fail: AtomicU32::new(0),
            stats: BackendStats::default(),
            pool: Pool::new(cfg.address, pool),
            admin: AtomicU8::new(0),
            weight_override: AtomicU32::new(u32::MAX),
            queue,
        }
    }

    /// Takes a request slot if the backend is below `maxconn` (0: no limit).
    pub fn take_slot(&self, maxconn: u32) -> bool {
        if maxconn == 0 {
            self.in_flight.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < maxconn).then_some(n + 1)
            })
            .is_ok()
    }

    /// Whether a request may be sent now under `maxconn` (0: no limit).
    pub fn has_room(&self, maxconn: u32) -> bool {
        maxconn == 0 || self.in_flight.load(Ordering::Relaxed) < maxconn
    }

    /// Gives a request slot back and wakes a queued request of the pool.
    pub fn give_slot(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.queue.slot_freed();
    }

    pub fn admin_state(&self) -> AdminState {
        match self.admin.load(Ordering::Relaxed) {
            0 => AdminState::Ready,
            1 => AdminState::Drain,
            _ => AdminState::Maint,
        }
    }

    pub fn set_admin_state(&self, s: AdminState) {
        let v = match s {
            AdminState::Ready => 0,
            AdminState::Drain => 1,
            AdminState::Maint => 2,
        };
        self.admin.store(v, Ordering::Relaxed);
        if s != AdminState::Ready {
            // Idle connections to a backend being taken out are not kept.
            self.pool.clear();
        }
    }

    /// The weight set through the runtime API, if any.
    pub fn weight_override(&self) -> Option<u32> {
        Some(self.weight_override.load(Ordering::Relaxed)).filter(|&w| w != u32::MAX)
    }

    pub fn set_weight_override(&self, w: Option<u32>) {
        self.weight_override
            .store(w.unwrap_or(u32::MAX), Ordering::Relaxed);
    }

    /// The DNS name this backend's address was resolved from (its name is
    /// `name:port@address`, `crate::backend::resolve`), if it was.
    pub fn dns_name(&self) -> Option<&str> {
        let (named, _) = self.name.split_once('@')?;
        let host = named.rsplit_once(':').map_or(named, |(h, _)| h);
        (host.parse::<std::net::IpAddr>().is_err() && !host.is_empty()).then_some(host)
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Holds a new backend (an address a name newly resolved to) out of
    /// traffic until it passes a check: down, and up on its next passing one.
    pub fn start_down(&self, rise: u32) {
        self.up.store(false, Ordering::Relaxed);
        self.check_ok
            .store(rise.saturating_sub(1), Ordering::Relaxed);
    }

    /// The scheduler's view: weight after slow start, load, health.
    pub fn candidate(&self, cfg: &config::Backend, slow_start: Duration) -> Candidate {
        let mut weight = self.weight_override().unwrap_or(cfg.weight);
        if !slow_start.is_zero() && weight > 0 {
            let since = self.up_since_ms.load(Ordering::Relaxed);
            if since > 0 {
                let elapsed = now_ms().saturating_sub(since);
                let ramp = slow_start.as_millis() as u64;
                if elapsed < ramp {
                    weight = ((weight as u64 * elapsed / ramp) as u32).max(1);
                }
            }
        }
        Candidate {
            weight,
            in_flight: self.in_flight.load(Ordering::Relaxed),
            up: self.is_up() && self.admin_state() == AdminState::Ready,
            maxconn: cfg.maxconn,
        }
    }

    /// Records an active health check result; returns Some(new_up) on a transition.
    pub fn record_check(&self, ok: bool, rise: u32, fall: u32) -> Option<bool> {
        if ok {
            self.stats.checks_ok.fetch_add(1, Ordering::Relaxed);
            self.check_fail.store(0, Ordering::Relaxed);
            let n = self.check_ok.fetch_add(1, Ordering::Relaxed) + 1;
            if !self.is_up() && n >= rise {
                return self.set_up(true).then_some(true);
            }
        } else {
            self.stats.checks_failed.fetch_add(1, Ordering::Relaxed);
            self.check_ok.store(0, Ordering::Relaxed);
            let n = self.check_fail.fetch_add(1, Ordering::Relaxed) + 1;
            if self.is_up() && n >= fall {
                return self.set_up(false).then_some(false);
            }
        }
        None
    }

    /// Records the outcome of a connect from live traffic. Returns true when
    /// this failure took the backend down (passive health).
    pub fn record_connect(&self, ok: bool, passive_fall: u32) -> bool {
        if ok {
            if self.connect_fail.load(Ordering::Relaxed) != 0 {
                self.connect_fail.store(0, Ordering::Relaxed);
            }
            return false;
        }
        self.stats.connect_errors.fetch_add(1, Ordering::Relaxed);
        let n = self.connect_fail.fetch_add(1, Ordering::Relaxed) + 1;
        if passive_fall > 0 && n >= passive_fall && self.set_up(false) {
            // Active checks must now see `rise` successes to bring it back.
            self.check_ok.store(0, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// Returns true if the state changed.
    fn set_up(&self, up: bool) -> bool {
        let was = self.up.swap(up, Ordering::AcqRel);
        if was == up {
            return false;
        }
        if up {
            self.up_since_ms.store(now_ms().max(1), Ordering::Relaxed);
            self.connect_fail.store(0, Ordering::Relaxed);
        } else {
            self.stats.went_down.fetch_add(1, Ordering::Relaxed);
            self.pool.clear();
        }
        true
    }
}

/// Pool tuning shared by every backend.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    pub max_idle: usize,
    pub idle_timeout: Duration,
    pub connect_timeout: Duration,
}

impl PoolSettings {
    /// The settings of the file (a pool's own connect timeout is applied by
    /// [`reconcile`]).
    pub fn from_config(c: &config::Config) -> Self {
        PoolSettings {
            max_idle: c.proxy.pool_max_idle,
            idle_timeout: c.timeouts.pool_idle,
            connect_timeout: c.timeouts.connect,
        }
    }
}

/// Keep-alive connections to one backend ([`Upstream`]), most recently used
/// first, up to `max_idle`.
#[derive(Debug)]
pub struct Pool {
    address: SocketAddr,
    idle_upstream: Mutex<Vec<IdleUpstream>>,
    settings: Mutex<PoolSettings>,
    /// TLS and the protocol: the pool's `tls` and `protocol` keys.
    transport: Mutex<config::Transport>,
    /// HTTP/2 sessions (`protocol = "h2"` or `"h2c"`).
    sessions: Mutex<Vec<h2::Session>>,
    /// `send-proxy`: 0 none, 1 v1, 2 v2 (a header per connection, which is
    /// then never pooled: it names one client).
    send_proxy: AtomicU8,
    /// A new HTTP/2 session is being opened; requests that find no room
    /// wait for it (`dialed`) rather than each opening its own.
    dialing: AtomicBool,
    dialed: tokio::sync::Notify,
}

/// Ends a session's opening, successful or not: the waiters look again.
struct Dialing<'a>(&'a Pool);

impl Drop for Dialing<'_> {
    fn drop(&mut self) {
        self.0.dialing.store(false, Ordering::Release);
        self.0.dialed.notify_waiters();
    }
}

/// A connection (or a stream of one) for one request.
#[derive(Debug)]
pub enum Conn {
    H1(Upstream),
    H2(h2::Lease),
}

#[derive(Debug)]
struct IdleUpstream {
    conn: Upstream,
    since: Instant,
}

/// Why a new connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect to {0} timed out")]
    Timeout(SocketAddr),
    #[error("connect to {0} failed: {1}")]
    Io(SocketAddr, std::io::Error),
    /// The TLS handshake (a certificate that does not verify, typically) or
    /// the HTTP/2 one failed.
    #[error("handshake with {0} failed: {1}")]
    Handshake(SocketAddr, String),
}

impl ConnectError {
    /// As the proxy reports it: nothing was sent, so another backend may be
    /// tried.
    pub fn error(&self) -> Error {
        let (kind, status) = match self {
            ConnectError::Timeout(_) => (Kind::Timeout, StatusCode::GATEWAY_TIMEOUT),
            ConnectError::Io(..) => (Kind::Closed, StatusCode::BAD_GATEWAY),
            ConnectError::Handshake(..) => (Kind::Malformed, StatusCode::BAD_GATEWAY),
        };
        Error::new(
            Side::Backend,
            Phase::Connect,
            kind,
            status,
            self.to_string(),
        )
        .with_retry(Retry::Safe)
    }
}

impl Pool {
    pub fn new(address: SocketAddr, settings: PoolSettings) -> Self {
        Pool {
            address,
            idle_upstream: Mutex::new(Vec::new()),
            settings: Mutex::new(settings),
            transport: Mutex::new(config::Transport::default()),
            sessions: Mutex::new(Vec::new()),
            dialing: AtomicBool::new(false),
            dialed: tokio::sync::Notify::new(),
            send_proxy: AtomicU8::new(0),
        }
    }

    /// The pool's `send-proxy` (set at each load and reload).
    pub fn set_send_proxy(&self, v: Option<crate::net::proxy_protocol::Version>) {
        use crate::net::proxy_protocol::Version;
        let n = match v {
            None => 0,
            Some(Version::V1) => 1,
            Some(Version::V2) => 2,
        };
        self.send_proxy.store(n, Ordering::Relaxed);
    }

    /// The pool's transport (a reload may change it: then no pooled
    /// connection or session of the old one is used again).
    pub fn set_transport(&self, t: &config::Transport) {
        let mut cur = self.transport.lock().unwrap_or_else(|e| e.into_inner());
        let same_tls = match (&cur.tls, &t.tls) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        if !(same_tls && cur.protocol == t.protocol) {
            self.clear();
        }
        *cur = t.clone();
    }

    pub fn transport(&self) -> config::Transport {
        self.transport
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_settings(&self, s: PoolSettings) {
        *self.settings.lock().unwrap_or_else(|e| e.into_inner()) = s;
    }

    fn settings(&self) -> PoolSettings {
        *self.settings.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of idle pooled connections.
    pub fn idle_count(&self) -> usize {
        self.idle_upstream
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Drops the idle connections and the HTTP/2 sessions (their open
    /// streams finish: each request holds its own handle).
    pub fn clear(&self) {
        let drained: Vec<IdleUpstream> =
            std::mem::take(&mut *self.idle_upstream.lock().unwrap_or_else(|e| e.into_inner()));
        drop(drained);
        let sessions: Vec<h2::Session> =
            std::mem::take(&mut *self.sessions.lock().unwrap_or_else(|e| e.into_inner()));
        drop(sessions);
    }

    /// The server name a request's TLS session uses: the pool's
    /// `server-name`, else the DNS name the backend was given by (`dns`),
    /// else the request's Host (`host`, without its port), else none (the
    /// backend's address is verified).
    pub fn sni_for(
        &self,
        transport: &config::Transport,
        dns: Option<&str>,
        host: Option<&[u8]>,
    ) -> Option<Arc<str>> {
        let tls = transport.tls.as_ref()?;
        if let Some(n) = &tls.server_name {
            return Some(Arc::from(n.to_str().as_ref()));
        }
        if let Some(name) = dns {
            return Some(Arc::from(name));
        }
        let host = std::str::from_utf8(host?).ok()?.trim();
        let name = match host.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default(),
            None => host.split(':').next().unwrap_or_default(),
        };
        (!name.is_empty()).then(|| Arc::from(name.to_ascii_lowercase()))
    }

    /// A connection (or HTTP/2 stream) for a request whose TLS session uses
    /// `sni` ([`Self::sni_for`]): pooled if one is usable, else new. The flag
    /// says whether it was pooled.
    /// `transport` is the pool's, as the request's config snapshot has it.
    pub async fn checkout(
        &self,
        stats: &BackendStats,
        transport: &config::Transport,
        sni: Option<Arc<str>>,
    ) -> Result<(Conn, bool), ConnectError> {
        if !transport.multiplexed() {
            return self
                .checkout_upstream(stats, transport, sni)
                .await
                .map(|(c, reused)| (Conn::H1(c), reused));
        }
        // Boxed: the HTTP/1 path's future stays as small as it was.
        Box::pin(self.checkout_h2(stats, transport, sni)).await
    }

    /// A stream on the least busy live session made for `sni` with room.
    fn lease(&self, transport: &config::Transport, sni: Option<&str>) -> Option<h2::Lease> {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|s| s.is_alive());
        sessions
            .iter()
            .filter(|s| s.usable(sni, transport.max_streams))
            .min_by_key(|s| s.open_streams())
            .map(|s| s.lease())
    }

    /// [`Self::checkout`] for an HTTP/2 pool: a stream on a session with room,
    /// else a new session (or an HTTP/1.1 connection, if ALPN chose it).
    async fn checkout_h2(
        &self,
        stats: &BackendStats,
        transport: &config::Transport,
        sni: Option<Arc<str>>,
    ) -> Result<(Conn, bool), ConnectError> {
        if let Some(lease) = self.lease(transport, sni.as_deref()) {
            return Ok((Conn::H2(lease), true));
        }
        let settings = self.settings();
        // One session opened at a time per backend: a burst of requests shares
        // it instead of each opening its own. A waiter that finds no room after
        // one connect timeout opens its own.
        let _dialing = if self.dialing.swap(true, Ordering::AcqRel) {
            let dialed = self.dialed.notified();
            tokio::pin!(dialed);
            dialed.as_mut().enable();
            if let Some(lease) = self.lease(transport, sni.as_deref()) {
                return Ok((Conn::H2(lease), true));
            }
            let _ = tokio::time::timeout(settings.connect_timeout, dialed).await;
            if let Some(lease) = self.lease(transport, sni.as_deref()) {
                return Ok((Conn::H2(lease), true));
            }
            None
        } else {
            Some(Dialing(self))
        };
        let stream = self
            .connect(transport, sni.clone(), settings.connect_timeout)
            .await?;
        stats.connections_opened.fetch_add(1, Ordering::Relaxed);
        // Over TLS, ALPN decides: a backend that chose HTTP/1.1 is spoken to in it.
        if transport.tls.is_some() && stream.alpn() != Some(b"h2") {
            return Ok((Conn::H1(Upstream::new(stream)), false));
        }
        let session = tokio::time::timeout(
            settings.connect_timeout,
            h2::Session::handshake(stream, sni),
        )
        .await
        .map_err(|_| ConnectError::Timeout(self.address))?
        .map_err(|e| ConnectError::Handshake(self.address, e))?;
        let lease = session.lease();
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(session);
        Ok((Conn::H2(lease), false))
    }

    /// A new connection as the pool's transport says: TCP, then TLS (with
    /// `sni`, the h2 ALPN offer for HTTP/2 pools), within `timeout` in all.
    pub async fn connect(
        &self,
        transport: &config::Transport,
        sni: Option<Arc<str>>,
        timeout: Duration,
    ) -> Result<Stream, ConnectError> {
        let addr = self.address;
        let started = tokio::time::Instant::now();
        let tcp = self.connect_stream(timeout).await?;
        let Some(tls) = transport.tls.as_ref() else {
            return Ok(Stream::Plain(tcp));
        };
        let config = if transport.multiplexed() {
            tls.h2.clone()
        } else {
            tls.http1.clone()
        };
        let name = match sni.as_deref() {
            Some(n) => rustls::pki_types::ServerName::try_from(n.to_string()).map_err(|_| {
                ConnectError::Handshake(addr, format!("{n:?} is not a server name"))
            })?,
            None => rustls::pki_types::ServerName::IpAddress(addr.ip().into()),
        };
        let connector = tokio_rustls::TlsConnector::from(config);
        let left = timeout.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, connector.connect(name, tcp)).await {
            Err(_) => Err(ConnectError::Timeout(addr)),
            Ok(Err(e)) => Err(ConnectError::Handshake(addr, e.to_string())),
            Ok(Ok(session)) => Ok(Stream::Tls(Box::new(stream::Tls { session, sni }))),
        }
    }

    /// A connection for a request: a pooled one the backend has not closed,
    /// else a new one. The flag says whether it came from the pool.
    async fn checkout_upstream(
        &self,
        stats: &BackendStats,
        transport: &config::Transport,
        sni: Option<Arc<str>>,
    ) -> Result<(Upstream, bool), ConnectError> {
        let settings = self.settings();
        loop {
            let idle = {
                let mut list = self.idle_upstream.lock().unwrap_or_else(|e| e.into_inner());
                // Most recently used first, among those made for the same name.
                list.iter()
                    .rposition(|c| c.conn.sni() == sni.as_ref())
                    .map(|i| list.remove(i))
            };
            let Some(idle) = idle else { break };
            if idle.since.elapsed() < settings.idle_timeout && idle.conn.looks_usable() {
                return Ok((idle.conn, true));
            }
        }
        let stream = if transport.tls.is_some() {
            // Boxed: a handshake's state would make every request's future larger.
            Box::pin(self.connect(transport, sni.clone(), settings.connect_timeout)).await?
        } else {
            Stream::Plain(self.connect_stream(settings.connect_timeout).await?)
        };
        stats.connections_opened.fetch_add(1, Ordering::Relaxed);
        let up = Upstream::new(stream);
        Ok((up, false))
    }

    /// Returns a connection whose answer was read exactly to its end.
    pub fn checkin_upstream(&self, conn: Upstream) {
        if self.send_proxy.load(Ordering::Relaxed) != 0 {
            return;
        }
        let max = self.settings().max_idle;
        let mut idle = self.idle_upstream.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < max {
            idle.push(IdleUpstream {
                conn,
                since: Instant::now(),
            });
        }
    }

    async fn connect_stream(&self, timeout: Duration) -> Result<TcpStream, ConnectError> {
        let addr = self.address;
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(|e| ConnectError::Io(addr, e))?;
        socket
            .set_nodelay(true)
            .map_err(|e| ConnectError::Io(addr, e))?;
        let mut s = match tokio::time::timeout(timeout, socket.connect(addr)).await {
            Err(_) => return Err(ConnectError::Timeout(addr)),
            Ok(Err(e)) => return Err(ConnectError::Io(addr, e)),
            Ok(Ok(s)) => s,
        };
        // `send-proxy`: the client of the task this connection is made in.
        use crate::net::proxy_protocol::{header_for_this_client, Version};
        let version = match self.send_proxy.load(Ordering::Relaxed) {
            1 => Some(Version::V1),
            2 => Some(Version::V2),
            _ => None,
        };
        if let Some(v) = version {
            use tokio::io::AsyncWriteExt;
            let header = header_for_this_client(v);
            s.write_all(&header)
                .await
                .map_err(|e| ConnectError::Io(addr, e))?;
        }
        Ok(s)
    }

    /// Drops idle connections past their lifetime; run periodically.
    pub fn evict_expired(&self) {
        let timeout = self.settings().idle_timeout;
        let mut idle = self.idle_upstream.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain(|c| c.since.elapsed() < timeout && c.conn.looks_usable());
        drop(idle);
        // An HTTP/2 session with no stream open for as long goes too.
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|s| s.is_alive() && s.idle_for() < timeout);
    }
}

/// Carries one pool's live backend state across a reload: reuse by pool,
/// name and address; create the rest.
pub fn reconcile(
    old: &[Arc<BackendState>],
    pool: &config::PoolSpec,
    settings: PoolSettings,
) -> Vec<Arc<BackendState>> {
    let settings = PoolSettings {
        connect_timeout: pool.connect,
        ..settings
    };
    // One queue for the pool: its backends' own, if the pool had any.
    let queue = old
        .iter()
        .find(|o| o.pool_name == pool.name)
        .map_or_else(Arc::default, |o| o.queue.clone());
    pool.backends
        .iter()
        .map(|b| {
            match old
                .iter()
                .find(|o| o.pool_name == pool.name && o.name == b.name && o.address == b.address)
            {
                Some(o) => {
                    o.pool.set_settings(settings);
                    o.pool.set_transport(&pool.transport);
                    o.clone()
                }
                None => {
                    let state = BackendState::in_queue(b, &pool.name, settings, queue.clone());
                    state.pool.set_transport(&pool.transport);
                    Arc::new(state)
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend() -> BackendState {
        let cfg = config::Backend {
            name: "a".into(),
            address: "127.0.0.1:1".parse().unwrap(),
            weight: 10,
            maxconn: 0,
            cookie: None,
        };
        BackendState::new(
            &cfg,
            "default",
            PoolSettings {
                max_idle: 4,
                idle_timeout: Duration::from_secs(1),
                connect_timeout: Duration::from_secs(1),
            },
        )
    }

    /// A pool's backends wait in one queue, kept when a reload adds one.
    #[test]
    fn a_pools_backends_share_one_queue_across_reloads() {
        let spec = |names: &[&str]| config::PoolSpec {
            name: "p".into(),
            backends: names
                .iter()
                .enumerate()
                .map(|(i, n)| config::Backend {
                    name: n.to_string(),
                    address: format!("127.0.0.1:{}", 1000 + i).parse().unwrap(),
                    weight: 1,
                    maxconn: 1,
                    cookie: None,
                })
                .collect(),
            balance: config::Balance::default(),
            health: config::Health::default(),
            connect: Duration::from_secs(1),
            server: Duration::from_secs(1),
            retries: 0,
            redispatch: true,
            error_pages: Vec::new(),
            queue_timeout: Some(Duration::from_secs(1)),
            max_queue: 0,
            cookie: None,
            transport: config::Transport::default(),
        };
        let settings = PoolSettings {
            max_idle: 1,
            idle_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
        };
        let first = reconcile(&[], &spec(&["a", "b"]), settings);
        assert!(Arc::ptr_eq(&first[0].queue, &first[1].queue));
        let second = reconcile(&first, &spec(&["a", "b", "c"]), settings);
        assert!(Arc::ptr_eq(&second[2].queue, &first[0].queue));
        // Another pool's backends wait elsewhere.
        let other = reconcile(
            &first,
            &config::PoolSpec {
                name: "q".into(),
                ..spec(&["a"])
            },
            settings,
        );
        assert!(!Arc::ptr_eq(&other[0].queue, &first[0].queue));
    }

    #[test]
    fn fall_and_rise_counts() {
        let b = backend();
        assert!(b.is_up());
        assert_eq!(b.record_check(false, 2, 3), None);
        assert_eq!(b.record_check(false, 2, 3), None);
        assert_eq!(b.record_check(false, 2, 3), Some(false));
        assert!(!b.is_up());
        assert_eq!(b.record_check(true, 2, 3), None);
        assert_eq!(
            b.record_check(false, 2, 3),
            None,
            "a failure resets the rise count"
        );
        assert_eq!(b.record_check(true, 2, 3), None);
        assert_eq!(b.record_check(true, 2, 3), Some(true));
        assert!(b.is_up());
    }

    #[test]
    fn passive_failures_take_backend_down() {
        let b = backend();
        assert!(!b.record_connect(false, 3));
        assert!(!b.record_connect(true, 3), "a success resets the count");
        assert!(!b.record_connect(false, 3));
        assert!(!b.record_connect(false, 3));
        assert!(b.record_connect(false, 3));
        assert!(!b.is_up());
        // passive_fall = 0 disables.
        let b = backend();
        for _ in 0..10 {
            assert!(!b.record_connect(false, 0));
        }
        assert!(b.is_up());
    }

    #[test]
    fn slow_start_ramps_weight() {
        let b = backend();
        let cfg = config::Backend {
            name: "a".into(),
            address: "127.0.0.1:1".parse().unwrap(),
            weight: 10,
            maxconn: 0,
            cookie: None,
        };
        // Up since boot: full weight.
        assert_eq!(b.candidate(&cfg, Duration::from_secs(60)).weight, 10);
        b.set_up(false);
        b.set_up(true);
        let w = b.candidate(&cfg, Duration::from_secs(60)).weight;
        assert_eq!(w, 1, "just recovered: minimum weight");
        assert_eq!(
            b.candidate(&cfg, Duration::ZERO).weight,
            10,
            "slow start off"
        );
    }
}
