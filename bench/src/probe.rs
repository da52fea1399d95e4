//! HTTP availability probe: a GET on a fresh connection every `interval`,
//! each on its own thread with its own timeout, so a hung probe never delays
//! the next one. Bounded by duration and count. Each probe also records how long
//! its connection attempt took (`connect()` start to established or failed): a SYN
//! lost on the way shows as an attempt of about the client's initial RTO (1 s,
//! RFC 6298 §2.1) even when the request then succeeds.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::parse::Probe;

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn one(addr: SocketAddr, host: &str, path: &str, timeout: Duration) -> Probe {
    let start = unix_now();
    let began = Instant::now();
    let connected = TcpStream::connect_timeout(&addr, timeout);
    let connect_ms = Some(began.elapsed().as_secs_f64() * 1e3);
    let finish = |status: u16, error: String| Probe {
        start,
        end: start + began.elapsed().as_secs_f64(),
        status,
        error,
        connect_ms,
    };
    let mut s = match connected {
        Ok(s) => s,
        Err(e) => return finish(0, format!("connect: {e}")),
    };
    let left = timeout
        .saturating_sub(began.elapsed())
        .max(Duration::from_millis(1));
    let _ = s.set_read_timeout(Some(left));
    let _ = s.set_write_timeout(Some(left));
    let _ = s.set_nodelay(true);
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: floatlb-probe\r\nConnection: close\r\n\r\n");
    if let Err(e) = s.write_all(req.as_bytes()) {
        return finish(0, format!("write: {e}"));
    }
    // Read the whole response: a reset mid-body is a failure too.
    let mut buf = Vec::with_capacity(4096);
    match s.read_to_end(&mut buf) {
        Ok(_) => {}
        Err(e) => return finish(0, format!("read: {e}")),
    }
    let status = std::str::from_utf8(buf.get(9..12).unwrap_or(b""))
        .ok()
        .and_then(|c| c.parse().ok())
        .filter(|_| buf.starts_with(b"HTTP/1."))
        .unwrap_or(0);
    if status == 0 {
        return finish(0, "no HTTP response".into());
    }
    finish(status, String::new())
}

/// Runs probes and returns them in start order.
pub fn run(
    addr: SocketAddr,
    host: &str,
    path: &str,
    interval: Duration,
    duration: Duration,
    timeout: Duration,
) -> Vec<Probe> {
    let count = (duration.as_secs_f64() / interval.as_secs_f64()).ceil() as usize;
    let count = count.min(100_000);
    let (tx, rx) = mpsc::channel();
    let t0 = Instant::now();
    for i in 0..count {
        let due = t0 + interval * i as u32;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let (tx, host, path) = (tx.clone(), host.to_string(), path.to_string());
        std::thread::spawn(move || {
            let _ = tx.send(one(addr, &host, &path, timeout));
        });
    }
    drop(tx);
    let mut all: Vec<Probe> = rx.iter().collect();
    all.sort_by(|a, b| a.start.total_cmp(&b.start));
    all
}
