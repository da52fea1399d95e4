//! The task that resolves backend names: it asks the `[resolver]` servers
//! for each name's A and AAAA records at start and again when the answer's
//! TTL runs out, and publishes a changed set of addresses as a new snapshot
//! (a reload of just those pools: addresses that stay keep their state).
//!
//! Not for: what an answer does to a name's set (`backend::resolve`), nor
//! the message format (`net::dns`). Names are asked as written: no search
//! list, no /etc/hosts.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::backend::resolve::{backend_at, clamp_ttl, Answers, NameState};
use crate::config::{ResolveFamily, Resolver};
use crate::net::dns::{self, Family};
use crate::proxy::state::{Shared, Snapshot};

/// How often leaving addresses are looked at while new ones come up.
const SETTLE_EVERY: Duration = Duration::from_millis(100);

/// The resolution state of every name the configuration holds.
pub struct Task {
    shared: Arc<Shared>,
    generation: Arc<watch::Sender<u64>>,
    names: HashMap<Arc<str>, NameState>,
}

/// Resolves every name once (so the pools start with their addresses, up
/// as literal ones are), then keeps them resolved in a task of their own.
/// Without names, nothing runs until a reload brings one.
pub async fn start(shared: Arc<Shared>, generation: Arc<watch::Sender<u64>>) {
    let mut task = Task {
        shared,
        generation,
        names: HashMap::new(),
    };
    if task.follow_config() {
        task.round(false).await;
    }
    tokio::spawn(task.run());
}

impl Task {
    async fn run(mut self) {
        let mut changed = self.generation.subscribe();
        loop {
            self.follow_config();
            self.round(true).await;
            let now = Instant::now();
            let mut wake = self
                .names
                .values()
                .map(|s| s.due)
                .min()
                .unwrap_or(now + Duration::from_secs(3600));
            if self.names.values().any(|s| s.has_leaving()) {
                wake = wake.min(now + SETTLE_EVERY);
            }
            tokio::select! {
                () = tokio::time::sleep_until(wake) => {}
                r = changed.changed() => if r.is_err() { return },
            }
            changed.borrow_and_update();
        }
    }

    /// Takes in the names the live configuration holds (a reload may add or
    /// drop some); true when there is any.
    fn follow_config(&mut self) -> bool {
        let snap = self.shared.live.load();
        let now = Instant::now();
        self.names
            .retain(|host, _| snap.file.names.iter().any(|n| n.host == *host));
        for n in &snap.file.names {
            self.names
                .entry(n.host.clone())
                .or_insert_with(|| NameState::new(now));
        }
        !self.names.is_empty()
    }

    /// Asks the names that are due, lets go of leaving addresses whose
    /// replacements are up, and publishes what changed.
    async fn round(&mut self, start_down: bool) {
        let cfg = self.shared.live.load().config.resolver.clone();
        let servers = servers(&cfg);
        let now = Instant::now();
        let mut asks = JoinSet::new();
        for (host, state) in &mut self.names {
            if state.due <= now {
                // Asked again after ttl-min at the latest, whatever comes of it.
                state.due = now + cfg.ttl_min;
                let (host, servers, timeout) = (host.clone(), servers.clone(), cfg.timeout);
                let family = cfg.family;
                asks.spawn(async move {
                    let r = resolve(&host, family, &servers, timeout).await;
                    (host, r)
                });
            }
        }
        while let Some(done) = asks.join_next().await {
            if let Ok((host, result)) = done {
                self.take(&host, result, &cfg);
            }
        }
        self.settle(&cfg);
        self.publish(start_down);
    }

    fn take(
        &mut self,
        host: &Arc<str>,
        result: Result<(Vec<IpAddr>, Option<u32>), String>,
        cfg: &Resolver,
    ) {
        let Some(state) = self.names.get_mut(host) else {
            return;
        };
        let stats = self.shared.resolver.of(host);
        let now = Instant::now();
        match result {
            Ok((addresses, ttl)) => {
                let (failed_before, first) = (state.failures, !state.answered);
                let next = clamp_ttl(ttl, cfg.ttl_min, cfg.ttl_max);
                let change = state.answer(now, addresses, next);
                if failed_before > 0 {
                    tracing::info!(name = %host, failures = failed_before, "backend name resolves again");
                }
                if !change.is_empty() {
                    stats.changes.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        name = %host,
                        added = ?change.added,
                        removed = ?change.removed,
                        next_in = ?next,
                        "backend name resolved to a new set of addresses"
                    );
                    if state.current().is_empty() {
                        tracing::warn!(name = %host, hold = ?cfg.hold, "backend name has no addresses: its backends leave their pools after hold");
                    }
                } else if first && state.current().is_empty() {
                    tracing::warn!(name = %host, "backend name has no addresses (NXDOMAIN or no records): its pools have no backend for it yet, asking again on its TTL");
                }
            }
            Err(why) => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                state.failed(now, cfg.ttl_min);
                if state.failures == 1 {
                    if state.answered {
                        tracing::warn!(name = %host, reason = %why, kept = state.published().len(), "cannot resolve backend name: keeping its last addresses, trying again");
                    } else {
                        tracing::warn!(name = %host, reason = %why, "cannot resolve backend name: its pools have no backend for it yet, trying again");
                    }
                }
            }
        }
    }

    /// Leaving addresses go once an address of the new answer is up in
    /// every pool of the name (or after `hold`).
    fn settle(&mut self, cfg: &Resolver) {
        let snap = self.shared.live.load();
        let now = Instant::now();
        for (host, state) in self.names.iter_mut().filter(|(_, s)| s.has_leaving()) {
            let new_up = !state.current().is_empty()
                && snap.file.names.iter().filter(|n| n.host == *host).all(|n| {
                    let Some(pool) = snap.pools.get(n.pool) else {
                        return true;
                    };
                    state.current().iter().any(|ip| {
                        let name = backend_at(&n.template, *ip).name;
                        pool.backends.iter().any(|b| b.name == name && b.is_up())
                    })
                });
            if state.settle(now, new_up, cfg.hold) {
                tracing::info!(name = %host, now = ?state.published(), "addresses that left the backend name's answer leave its pools");
            }
        }
    }

    /// Stores a snapshot with the names' current sets if they differ from
    /// the live one's (a reload in between is kept: compare and swap).
    fn publish(&self, start_down: bool) {
        let want: Answers = self
            .names
            .iter()
            .filter(|(_, s)| s.answered)
            .map(|(h, s)| (h.clone(), s.published()))
            .filter(|(_, v)| !v.is_empty())
            .collect();
        if *self.shared.live.load().answers == want {
            return;
        }
        let want = Arc::new(want);
        self.shared
            .live
            .rcu(|cur| Arc::new(Snapshot::with_answers(cur, want.clone(), start_down)));
        self.generation.send_modify(|g| *g += 1);
    }
}

/// The servers to ask: `[resolver] nameservers`, else /etc/resolv.conf's,
/// else the local host (as the C library does).
fn servers(cfg: &Resolver) -> Vec<SocketAddr> {
    let mut v = cfg.servers();
    if v.is_empty() {
        v = std::fs::read_to_string("/etc/resolv.conf")
            .map(|t| resolv_conf(&t))
            .unwrap_or_default();
    }
    if v.is_empty() {
        v.push(SocketAddr::from(([127, 0, 0, 1], 53)));
    }
    v
}

/// The `nameserver` lines of a resolv.conf (resolv.conf(5)); a scoped IPv6
/// address (`fe80::1%eth0`) is left out.
fn resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.split_whitespace().next()?.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// A name's addresses of the families asked for and the least TTL among
/// them (or the empty answer's negative TTL). Each query must be answered
/// (NOERROR or NXDOMAIN) by some server, else the resolution failed.
async fn resolve(
    host: &str,
    family: ResolveFamily,
    servers: &[SocketAddr],
    timeout: Duration,
) -> Result<(Vec<IpAddr>, Option<u32>), String> {
    let none = || async { Ok(dns::Answer::default()) };
    let (v4, v6) = match family {
        ResolveFamily::Any => {
            tokio::join!(
                ask(host, Family::V4, servers, timeout),
                ask(host, Family::V6, servers, timeout)
            )
        }
        ResolveFamily::Ipv4 => (ask(host, Family::V4, servers, timeout).await, none().await),
        ResolveFamily::Ipv6 => (none().await, ask(host, Family::V6, servers, timeout).await),
    };
    let (v4, v6) = (v4?, v6?);
    let addresses: Vec<(IpAddr, u32)> = v4.addresses.into_iter().chain(v6.addresses).collect();
    let ttl = match addresses.iter().map(|(_, t)| *t).min() {
        Some(t) => Some(t),
        None => v4.negative_ttl.into_iter().chain(v6.negative_ttl).min(),
    };
    Ok((addresses.into_iter().map(|(a, _)| a).collect(), ttl))
}

/// One query, to each server in turn until one answers it.
async fn ask(
    host: &str,
    family: Family,
    servers: &[SocketAddr],
    timeout: Duration,
) -> Result<dns::Answer, String> {
    let mut why = String::from("no server to ask");
    for &server in servers {
        let id = query_id();
        let query = dns::query(id, host, family).map_err(|e| e.to_string())?;
        let mut got = tokio::time::timeout(timeout, udp(server, &query, id, host, family)).await;
        if matches!(&got, Ok(Ok(a)) if a.truncated) {
            // RFC 1035 §4.2.2: the whole answer over TCP.
            got = tokio::time::timeout(timeout, tcp(server, &query, id, host, family)).await;
        }
        match got {
            Err(_) => why = format!("{server}: no answer within {timeout:?}"),
            Ok(Err(e)) => why = format!("{server}: {e}"),
            Ok(Ok(a)) if a.rcode == dns::RCODE_NOERROR || a.rcode == dns::RCODE_NXDOMAIN => {
                return Ok(a)
            }
            Ok(Ok(a)) => why = format!("{server}: rcode {}", a.rcode),
        }
    }
    Err(why)
}

async fn udp(
    server: SocketAddr,
    query: &[u8],
    id: u16,
    host: &str,
    family: Family,
) -> Result<dns::Answer, String> {
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => ([0, 0, 0, 0], 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let io = |e: std::io::Error| e.to_string();
    let sock = UdpSocket::bind(local).await.map_err(io)?;
    sock.connect(server).await.map_err(io)?;
    sock.send(query).await.map_err(io)?;
    let mut buf = vec![0u8; 4096];
    loop {
        let n = sock.recv(&mut buf).await.map_err(io)?;
        match dns::parse(&buf[..n], id, host, family) {
            // Not the reply to this query (a late one to an earlier query): wait on.
            Err(dns::DnsError::NotOurs) => continue,
            r => return r.map_err(|e| e.to_string()),
        }
    }
}

async fn tcp(
    server: SocketAddr,
    query: &[u8],
    id: u16,
    host: &str,
    family: Family,
) -> Result<dns::Answer, String> {
    let io = |e: std::io::Error| e.to_string();
    let mut s = TcpStream::connect(server).await.map_err(io)?;
    let mut framed = (query.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    s.write_all(&framed).await.map_err(io)?;
    let len = s.read_u16().await.map_err(io)?;
    let mut msg = vec![0u8; usize::from(len)];
    s.read_exact(&mut msg).await.map_err(io)?;
    dns::parse(&msg, id, host, family).map_err(|e| e.to_string())
}

/// A query ID an off-path sender cannot guess (RFC 5452 §4.3), from the
/// standard library's randomly keyed hasher.
fn query_id() -> u16 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish() as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_nameservers() {
        let text = "# generated\nsearch lab\nnameserver 198.18.0.53\nnameserver  2001:2::53 \nnameserver fe80::1%eth0\noptions ndots:2\n";
        assert_eq!(
            resolv_conf(text),
            [
                "198.18.0.53:53".parse::<SocketAddr>().unwrap(),
                "[2001:2::53]:53".parse().unwrap()
            ]
        );
    }
}
