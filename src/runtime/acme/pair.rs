//! A certificate and its key from the node that ordered it to its peers:
//! one short TCP connection to each peer's `[peers] address` (the same
//! port as the limit-sharing datagrams, over TCP), carrying one bulk
//! message sealed under the pair's key (`crate::peers::seal_bulk`). The
//! receiver takes a certificate that expires later than the one it has.
//! Not for: the datagrams of the `[[limit]]` tables (`runtime::worker::peers`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::proxy::state::Shared;

/// How long a transfer may take.
const TIMEOUT: Duration = Duration::from_secs(5);

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Sends a certificate (PEM chain and key) for `names` to every peer;
/// the peers it reached.
pub fn send(shared: &Shared, names: &[String], chain_pem: &str, key_pem: &str) -> usize {
    let Some(peers) = shared.live.load().config.peers.clone() else {
        return 0;
    };
    let key = match crate::config::read_key(&peers.key_file) {
        Ok(k) => k,
        Err(e) => {
            tracing::warn!(error = %e, "ACME: cannot send the certificate to peers");
            return 0;
        }
    };
    let payload = serde_json::json!({ "names": names, "chain": chain_pem, "key": key_pem });
    let Ok(msg) = crate::peers::seal_bulk(
        &key,
        &peers.node_name(),
        unix_ms(),
        payload.to_string().as_bytes(),
    ) else {
        return 0;
    };
    let mut sent = 0;
    for peer in &peers.peers {
        match push(*peer, &msg) {
            Ok(()) => sent += 1,
            Err(e) => tracing::debug!(peer = %peer, error = %e, "ACME: peer not reached"),
        }
    }
    sent
}

fn push(peer: SocketAddr, msg: &[u8]) -> std::io::Result<()> {
    let mut s = TcpStream::connect_timeout(&peer, TIMEOUT)?;
    s.set_write_timeout(Some(TIMEOUT))?;
    s.set_read_timeout(Some(TIMEOUT))?;
    s.write_all(&(msg.len() as u32).to_be_bytes())?;
    s.write_all(msg)?;
    // The peer's one byte: it has read the message (taken or not).
    let mut ack = [0u8; 1];
    s.read_exact(&mut ack)
}

/// Listens on the `[peers] address` (TCP) for certificates from peers, on a
/// thread of its own; `take` gets (names, chain PEM, key PEM) of each
/// authentic one.
pub fn listen(shared: Arc<Shared>, take: impl Fn(Vec<String>, String, String) + Send + 'static) {
    let Some(cfg) = shared.live.load().config.peers.clone() else {
        return;
    };
    let listener = match bind(cfg.address) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(address = %cfg.address, error = %e, "ACME: cannot listen for peers' certificates");
            return;
        }
    };
    let spawned = std::thread::Builder::new()
        .name("acme-peers".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut s) = conn else {
                    continue;
                };
                let peers = match shared.live.load().config.peers.clone() {
                    Some(p) => p,
                    None => continue,
                };
                match receive(&mut s, &peers) {
                    Ok(Some((names, chain, key))) => take(names, chain, key),
                    Ok(None) => {}
                    Err(e) => tracing::warn!(error = %e, "ACME: a peer's certificate was refused"),
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "ACME: cannot start the peers' listener");
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    // An upgrade's new worker binds beside the old one, as the datagram socket does.
    s.set_reuse_port(true)?;
    s.set_reuse_address(true)?;
    let _ = s.set_freebind_v4(true);
    s.bind(&addr.into())?;
    s.listen(8)?;
    Ok(s.into())
}

type Received = Option<(Vec<String>, String, String)>;

fn receive(s: &mut TcpStream, peers: &crate::config::Peers) -> Result<Received, String> {
    let _ = s.set_read_timeout(Some(TIMEOUT));
    let _ = s.set_write_timeout(Some(TIMEOUT));
    // Only the configured peers may send.
    let from = s.peer_addr().map_err(|e| e.to_string())?;
    if !peers.peers.iter().any(|p| p.ip() == from.ip()) {
        return Err(format!("{from} is not a configured peer"));
    }
    let mut len = [0u8; 4];
    s.read_exact(&mut len).map_err(|e| e.to_string())?;
    let len = u32::from_be_bytes(len) as usize;
    if len > crate::peers::MAX_BULK {
        return Err(format!("{from}: a message of {len} bytes"));
    }
    let mut msg = vec![0u8; len];
    s.read_exact(&mut msg).map_err(|e| e.to_string())?;
    let _ = s.write_all(&[1]);
    let key = crate::config::read_key(&peers.key_file)?;
    let (sender, payload) = crate::peers::open_bulk(&key, &peers.node_name(), unix_ms(), &msg)
        .map_err(|d| format!("{from}: dropped ({})", d.as_str()))?;
    let v: Value = serde_json::from_slice(&payload).map_err(|e| format!("{sender}: {e}"))?;
    let names: Vec<String> = v["names"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|n| n.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let (Some(chain), Some(key)) = (v["chain"].as_str(), v["key"].as_str()) else {
        return Err(format!("{sender}: no certificate in the message"));
    };
    tracing::info!(peer = %sender, names = ?names, "ACME: a certificate came from the peer");
    Ok(Some((names, chain.to_string(), key.to_string())))
}
