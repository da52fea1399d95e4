//! `bench flows`: keeps many keep-alive connections busy (one request on each every few
//! milliseconds) and reports, per connection, its client port and how it ended. With ECMP in
//! front of several balancers, a connection that the router moves to another node gets a reset
//! from that node: joined with each node's socket list taken before an event, this tells the
//! flows a drill broke on the nodes that stayed up from those of the node that left.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::hold::read_response;

/// How one connection ended.
pub struct Flow {
    pub port: u16,
    pub ok: u64,
    /// The server closed it after an answer with `Connection: close` (a planned
    /// handover): not a failure, the client would reconnect.
    pub closed: bool,
    /// Milliseconds from the start to the first failure, and what it was.
    pub failed: Option<(f64, String)>,
}

/// Opens `conns` connections to `addr`, then for `secs` sends a GET on each every
/// `interval`; a connection stops at its first failure (it is not reopened).
pub fn run(addr: SocketAddr, conns: u64, interval: Duration, secs: Duration) -> Vec<Flow> {
    let t0 = Instant::now();
    let threads: Vec<_> = (0..conns)
        .map(|_| {
            std::thread::spawn(move || {
                let req = format!("GET / HTTP/1.1\r\nHost: {}\r\n\r\n", addr.ip());
                let mut s = match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                    Ok(s) => s,
                    Err(e) => {
                        return Flow {
                            port: 0,
                            ok: 0,
                            closed: false,
                            failed: Some((0.0, format!("connect: {e}"))),
                        }
                    }
                };
                let port = s.local_addr().map_or(0, |a| a.port());
                let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
                let _ = s.set_nodelay(true);
                let mut buf = Vec::new();
                let mut ok = 0;
                let mut closed = false;
                while t0.elapsed() < secs && !closed {
                    let res = s
                        .write_all(req.as_bytes())
                        .map_err(|e| e.to_string())
                        .and_then(|()| read_response(&mut s, &mut buf).map_err(|e| e.to_string()));
                    match res {
                        Err(e) => {
                            let at = t0.elapsed().as_secs_f64() * 1e3;
                            return Flow {
                                port,
                                ok,
                                closed: false,
                                failed: Some((at, e)),
                            };
                        }
                        Ok(close) => closed = close,
                    }
                    ok += 1;
                    std::thread::sleep(interval);
                }
                Flow {
                    port,
                    ok,
                    closed,
                    failed: None,
                }
            })
        })
        .collect();
    threads.into_iter().filter_map(|t| t.join().ok()).collect()
}
