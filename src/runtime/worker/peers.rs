//! `[peers]`: this node's `[[limit]]` tables shared with the other nodes, so
//! that after a failover a client over its limit is still over it (HAProxy's
//! `peers` section does this for stick tables).
//!
//! Every `interval`, the clients seen since the last send go to each peer as
//! authenticated datagrams (`crate::peers`), and once a second those seen in
//! the last [`RECENT`] again, so that a datagram lost (UDP; an IPv6 address
//! still in duplicate address detection) costs at most a second; what a peer sends is folded into
//! the table of the same name (`access::track::Entry::merge`: the later
//! period, the larger counts, the later bucket state; open connections stay
//! each node's own). Times travel as ages, so the nodes' clocks need not
//! agree. A header's or cookie's value travels as its digest, under seeds
//! both nodes derive from the shared key (`proxy::state::Snapshot::build`).
//!
//! The socket is bound once, at start (`SO_REUSEPORT`, so an upgrade's new
//! worker binds beside the old one); a reload may change the peers, the key
//! file and the interval, not the address.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;

use crate::access::track::{Counts, Entry, Micros};
use crate::config::{Peers, TrackKey};
use crate::peers::{Drop, Key, Receiver, Sender, Update};
use crate::proxy::dispatch::clock;
use crate::proxy::state::{Shared, Snapshot};

/// What a peer's leaving or drained message (`crate::peers::Drained`, issue 35) is handed to.
pub type OnDrained = Arc<dyn Fn(crate::peers::Drained) + Send + Sync>;

/// Starts sharing if the config has `[peers]`; `drained` takes a peer's leaving or drained
/// message (on a blocking thread).
pub fn start(shared: &Arc<Shared>, drained: OnDrained) -> anyhow::Result<()> {
    let Some(cfg) = shared.live.load().config.peers.clone() else {
        return Ok(());
    };
    let socket = bind(cfg.address)?;
    tracing::info!(address = %cfg.address, peers = ?cfg.peers, "sharing [[limit]] tables with peers");
    tokio::spawn(run(socket, shared.clone(), cfg, drained));
    Ok(())
}

/// Tells each peer `kind` for `vips` (blocking; three copies, a few ms apart: a datagram
/// may be lost, a repeat is dropped). How many datagrams went out; 0 without `[peers]`.
pub fn tell(shared: &Shared, kind: crate::peers::Kind, vips: &[std::net::IpAddr]) -> usize {
    let Some(cfg) = shared.live.load().config.peers.clone() else {
        return 0;
    };
    let key = match crate::config::read_key(&cfg.key_file) {
        Ok(k) => k,
        Err(e) => {
            tracing::warn!(error = %e, "cannot tell the peers about the handover");
            return 0;
        }
    };
    let at = cfg.address.ip();
    let d = crate::peers::seal_drained(&key, &cfg.node_name(), unix_ms(), kind, at, vips);
    let mut told = 0;
    for peer in &cfg.peers {
        let local: SocketAddr = if peer.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let Ok(s) = std::net::UdpSocket::bind(local) else {
            continue;
        };
        for _ in 0..3 {
            if s.send_to(&d, peer).is_ok() {
                told += 1;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    told
}

/// After a steered planned handover (issue 35), on a thread of its own: waits until this
/// node has drained (`proxy::handover::Handover::wait_drained`, bounded by `vip-linger`),
/// tells each peer, so the node that passes this node's flows back stops at once, then runs
/// `then` once `vip-linger` is over too (a late SYN that still comes is served until then).
/// Without `[peers]` nothing is sent, and the forwarding ends on its timeout.
pub fn tell_drained_later(
    shared: Arc<Shared>,
    vips: Vec<std::net::IpAddr>,
    then: Option<Box<dyn FnOnce() + Send>>,
) {
    let spawned = std::thread::Builder::new()
        .name("floatlb-drained".into())
        .spawn(move || {
            let linger = shared.live.load().config.timeouts.vip_linger;
            let t0 = std::time::Instant::now();
            let open = shared
                .handover
                .wait_drained(crate::proxy::handover::DRAIN_QUIET, linger);
            let told = tell(&shared, crate::peers::Kind::Drained, &vips);
            tracing::info!(
                open,
                told,
                "drained after {:.0} ms of serving late flows: told the peers",
                t0.elapsed().as_secs_f64() * 1e3
            );
            if let Some(then) = then {
                std::thread::sleep(linger.saturating_sub(t0.elapsed()));
                then();
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the drained thread");
    }
}

fn bind(addr: SocketAddr) -> anyhow::Result<UdpSocket> {
    use anyhow::Context as _;
    let s = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())
        .with_context(|| format!("[peers] address {addr}"))?;
    Ok(UdpSocket::from_std(s.into())?)
}

/// How often the recently seen clients are sent again.
const REFRESH: Micros = 1_000_000;
/// Which clients count as recently seen.
pub const RECENT: Micros = 10_000_000;

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

async fn run(socket: UdpSocket, shared: Arc<Shared>, first: Peers, drained: OnDrained) {
    let name = first.node_name();
    // Sequence numbers grow across restarts: a peer does not take a
    // restarted node's datagrams for replays.
    let mut sender = Sender::new(&name, unix_ms() * 1000);
    let mut receiver = Receiver::new(&name);
    let mut drained_rx = crate::peers::DrainedReceiver::new(&name);
    let mut cfg = first;
    let mut key: Option<Key> = crate::config::read_key(&cfg.key_file).ok();
    let mut snap = shared.live.load_full();
    let mut tick = tokio::time::interval(cfg.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut since, mut refreshed): (Micros, Micros) = (0, 0);
    let mut buf = vec![0u8; 2048];
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let now_snap = shared.live.load_full();
                if !Arc::ptr_eq(&now_snap, &snap) {
                    // A reload: new peers, key or interval (not the address).
                    snap = now_snap;
                    let Some(new) = snap.config.peers.clone() else {
                        tracing::info!("[peers] removed: no longer sharing");
                        return;
                    };
                    key = crate::config::read_key(&new.key_file).ok();
                    if new.interval != cfg.interval {
                        tick = tokio::time::interval(new.interval);
                    }
                    cfg = new;
                }
                let Some(key) = &key else { continue };
                let now = clock();
                let from = if now.saturating_sub(refreshed) >= REFRESH {
                    refreshed = now;
                    since.min(now.saturating_sub(RECENT))
                } else {
                    since
                };
                let updates = collect(&snap, from, now);
                since = now;
                if updates.is_empty() {
                    continue;
                }
                let stats = &shared.stats;
                for d in sender.seal(key, unix_ms(), &updates) {
                    for peer in &cfg.peers {
                        if let Err(e) = socket.send_to(&d, peer).await {
                            tracing::debug!(%peer, error = %e, "sending to a peer failed");
                            stats.peer_send_errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                stats.peer_updates_sent.fetch_add(updates.len() as u64, Ordering::Relaxed);
            }
            got = socket.recv_from(&mut buf) => {
                let Ok((n, from)) = got else { continue };
                let Some(key) = &key else { continue };
                let opened = if crate::peers::is_drained(&buf[..n]) {
                    drained_rx.open(key, unix_ms(), &buf[..n]).map(|d| {
                        tracing::info!(peer = %d.sender, kind = ?d.kind, vips = ?d.vips, "handover steering: a peer's word");
                        let f = drained.clone();
                        tokio::task::spawn_blocking(move || f(d));
                        (String::new(), Vec::new())
                    })
                } else {
                    receiver.open(key, unix_ms(), &buf[..n])
                };
                match opened {
                    Ok((_, updates)) => {
                        let merged = merge(&snap, &updates, clock());
                        let stats = &shared.stats;
                        stats.peer_updates_received.fetch_add(merged, Ordering::Relaxed);
                    }
                    Err(why) => {
                        tracing::debug!(%from, reason = why.as_str(), "peer datagram dropped");
                        let i = Drop::ALL.iter().position(|&d| d == why).unwrap_or(0);
                        shared.stats.peer_dropped[i].fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }
}

/// The address-keyed tables' entries seen since `since`, as updates.
fn collect(snap: &Snapshot, since: Micros, now: Micros) -> Vec<Update> {
    let mut out = Vec::new();
    for (spec, table) in snap.config.resolved.limits.iter().zip(&snap.limits) {
        if spec.key != TrackKey::Address && table.shared_digest().is_none() {
            continue;
        }
        table.each(|k, e| {
            if e.last_seen < since {
                return;
            }
            out.push(Update {
                table: spec.name.clone(),
                id: k.id(),
                requests: (e.requests.curr, e.requests.prev),
                errors: (e.errors.curr, e.errors.prev),
                period_age: now.saturating_sub(e.period_start),
                bucket_ahead: e.tat.saturating_sub(now),
                seen_age: now.saturating_sub(e.last_seen),
            });
        });
    }
    out
}

/// Folds a peer's updates into the tables of the same names; how many were.
fn merge(snap: &Snapshot, updates: &[Update], now: Micros) -> u64 {
    let mut merged = 0;
    for u in updates {
        let Some(i) = snap
            .config
            .resolved
            .limits
            .iter()
            .position(|s| s.name == u.table)
        else {
            continue;
        };
        let table = &snap.limits[i];
        if snap.config.resolved.limits[i].key != TrackKey::Address
            && table.shared_digest().is_none()
        {
            continue;
        }
        let period = table.period();
        // On this node's clock, and its grid of periods.
        let began = now.saturating_sub(u.period_age);
        let theirs = Entry {
            conn_cur: 0,
            requests: Counts {
                curr: u.requests.0,
                prev: u.requests.1,
            },
            errors: Counts {
                curr: u.errors.0,
                prev: u.errors.1,
            },
            period_start: began - began % period.max(1),
            last_seen: now.saturating_sub(u.seen_age),
            tat: now.saturating_add(
                u.bucket_ahead
                    .min(Duration::from_secs(86_400).as_micros() as u64),
            ),
        };
        table.merge(table.key_of(u.id), &theirs, now);
        merged += 1;
    }
    merged
}
