//! `bench hold`: opens many keep-alive client connections, sends one request on each, reads
//! the whole response, then keeps them all open and idle for a while, to measure what an idle
//! connection costs a proxy.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Reads one HTTP/1.1 response with a Content-Length body. False on anything else.
fn read_ok(s: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    read_response(s, buf).is_ok()
}

/// Reads one HTTP/1.1 200 response with a Content-Length body; whether it said
/// `Connection: close`, or why it could not be read.
pub fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> Result<bool, std::io::Error> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed by the server",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        if !head.starts_with("http/1.1 200") {
            return Err(bad("not a 200 answer"));
        }
        let Some(len) = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
        else {
            return Err(bad("no Content-Length"));
        };
        if buf.len() >= end + 4 + len {
            return Ok(head.lines().any(|l| {
                l.strip_prefix("connection:")
                    .is_some_and(|v| v.split(',').any(|t| t.trim() == "close"))
            }));
        }
    }
}

/// Returns (connections opened, connections that got their response and are still open).
pub fn run(addr: SocketAddr, conns: u64, hold: Duration) -> (u64, Vec<TcpStream>) {
    let req = format!("GET / HTTP/1.1\r\nHost: {}\r\n\r\n", addr.ip());
    let mut open = Vec::new();
    for _ in 0..conns {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
            Ok(s) => open.push(s),
            Err(e) => {
                eprintln!("bench hold: connect: {e}");
                break;
            }
        }
    }
    let opened = open.len() as u64;
    let mut buf = Vec::new();
    let mut held = Vec::new();
    for mut s in open {
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        if s.write_all(req.as_bytes()).is_ok() && read_ok(&mut s, &mut buf) {
            held.push(s);
        }
    }
    println!("held {} opened {opened}", held.len());
    std::thread::sleep(hold);
    (opened, held)
}
