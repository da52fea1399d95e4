//! Scripted peers for the I/O layer's unit tests. The other end of a real
//! loopback connection follows a script (bytes it must read, bytes it
//! writes, pauses, a half-close, the end it must see) and reports the first
//! step that did not go as written. Pingora tests its HTTP sessions against
//! `tokio_test::io::Builder` mocks the same way; here the socket is real, so
//! the code under test makes its own reads and writes, short ones included.
//!
//! Every wait is bounded ([`STEP_LIMIT`]): a script that stalls fails its
//! test instead of hanging it; no test asserts how long a step took.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Longest wait for one step.
pub(crate) const STEP_LIMIT: Duration = Duration::from_secs(10);

/// One step of a peer's script.
#[derive(Debug, Clone)]
pub(crate) enum Step {
    /// Read exactly these bytes.
    Expect(&'static [u8]),
    /// Read a head (to its blank line): it must hold each of these lines
    /// (compared without regard to case); its status or request line first.
    Head(&'static [&'static str]),
    /// Write these bytes.
    Send(&'static [u8]),
    Pause(Duration),
    /// Shut down the writing half: the other side reads its end.
    CloseWrite,
    /// The other side closes: nothing more arrives.
    Eof,
    /// What arrives until the other side closes begins with this text.
    Rest(&'static str),
    /// Read whatever arrives until the other side closes.
    Drain,
}

/// A running script; [`Peer::done`] says how it went.
pub(crate) struct Peer(JoinHandle<Result<(), String>>);

impl Peer {
    /// The first step that failed, or Ok once all ran.
    pub(crate) async fn done(self) -> Result<(), String> {
        match tokio::time::timeout(STEP_LIMIT * 4, self.0).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Err(format!("script task failed: {e}")),
            Err(_) => Err("script did not finish".into()),
        }
    }
}

/// A connected pair on loopback: the code under test's end, and the peer
/// running `steps` on the other.
pub(crate) async fn pair(steps: Vec<Step>) -> (TcpStream, Peer) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let ours = TcpStream::connect(listener.local_addr().expect("addr"))
        .await
        .expect("connect");
    let (theirs, _) = listener.accept().await.expect("accept");
    (ours, Peer(tokio::spawn(run(theirs, steps))))
}

/// A listener whose first connection runs `steps` (a backend, for code that
/// connects by address); its address.
pub(crate) async fn listen(steps: Vec<Step>) -> (SocketAddr, Peer) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let (stream, _) = tokio::time::timeout(STEP_LIMIT, listener.accept())
            .await
            .map_err(|_| "no connection came".to_string())?
            .map_err(|e| format!("accept: {e}"))?;
        run(stream, steps).await
    });
    (addr, Peer(task))
}

async fn run(mut s: TcpStream, steps: Vec<Step>) -> Result<(), String> {
    for (i, step) in steps.into_iter().enumerate() {
        let fail = |what: String| format!("step {i} ({step:?}): {what}");
        match &step {
            Step::Expect(want) => {
                let mut got = vec![0; want.len()];
                let read = limit(s.read_exact(&mut got)).await.map_err(fail)?;
                let got_all = read.is_ok();
                if !got_all || got != *want {
                    let shown = String::from_utf8_lossy(&got).into_owned();
                    return Err(fail(format!("read {shown:?}")));
                }
            }
            Step::Head(lines) => {
                let head = limit(read_head(&mut s)).await.map_err(fail)??;
                let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
                let mut got = text.split("\r\n");
                let first = got.next().unwrap_or("");
                let rest: Vec<&str> = got.collect();
                for (n, want) in lines.iter().enumerate() {
                    let want = want.to_ascii_lowercase();
                    let found = if n == 0 {
                        first == want
                    } else {
                        rest.contains(&want.as_str())
                    };
                    if !found {
                        return Err(fail(format!("no {want:?} in {text:?}")));
                    }
                }
            }
            Step::Send(bytes) => {
                limit(s.write_all(bytes))
                    .await
                    .map_err(fail)?
                    .map_err(|e| fail(e.to_string()))?;
            }
            Step::Pause(d) => tokio::time::sleep(*d).await,
            Step::CloseWrite => {
                limit(s.shutdown())
                    .await
                    .map_err(fail)?
                    .map_err(|e| fail(e.to_string()))?;
            }
            Step::Rest(want) => {
                let mut rest = Vec::new();
                limit(s.read_to_end(&mut rest))
                    .await
                    .map_err(fail)?
                    .map_err(|e| fail(e.to_string()))?;
                if !rest.starts_with(want.as_bytes()) {
                    let shown = String::from_utf8_lossy(&rest).into_owned();
                    return Err(fail(format!("read {shown:?}")));
                }
            }
            Step::Drain => {
                let mut rest = Vec::new();
                limit(s.read_to_end(&mut rest))
                    .await
                    .map_err(fail)?
                    .map_err(|e| fail(e.to_string()))?;
            }
            Step::Eof => {
                let mut rest = Vec::new();
                match limit(s.read_to_end(&mut rest)).await.map_err(fail)? {
                    Ok(_) if rest.is_empty() => {}
                    // A reset after everything was read is an end too.
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
                    Ok(_) => {
                        let shown = String::from_utf8_lossy(&rest).into_owned();
                        return Err(fail(format!("more arrived: {shown:?}")));
                    }
                    Err(e) => return Err(fail(e.to_string())),
                }
            }
        }
    }
    Ok(())
}

async fn limit<F: std::future::Future>(what: F) -> Result<F::Output, String> {
    tokio::time::timeout(STEP_LIMIT, what)
        .await
        .map_err(|_| "timed out".to_string())
}

/// Bytes up to and including the blank line that ends a head.
async fn read_head(s: &mut TcpStream) -> Result<Vec<u8>, String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            Ok(_) => {
                let shown = String::from_utf8_lossy(&head).into_owned();
                return Err(format!("closed inside a head: {shown:?}"));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_script_reports_the_step_that_went_otherwise() {
        let (mut ours, peer) =
            pair(vec![Step::Expect(b"ping"), Step::Send(b"pong"), Step::Eof]).await;
        ours.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        ours.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"pong");
        drop(ours);
        peer.done().await.unwrap();

        // The test of the test: other bytes than the script's fail it, and
        // say which step.
        let (mut ours, peer) = pair(vec![Step::Expect(b"ping")]).await;
        ours.write_all(b"pang").await.unwrap();
        let e = peer.done().await.unwrap_err();
        assert!(e.starts_with("step 0"), "{e}");
        assert!(e.contains("pang"), "{e}");

        let (mut ours, peer) = pair(vec![Step::Head(&["HTTP/1.1 200 OK", "x-a: 1"])]).await;
        ours.write_all(b"HTTP/1.1 200 OK\r\nX-B: 1\r\n\r\n")
            .await
            .unwrap();
        let e = peer.done().await.unwrap_err();
        assert!(e.contains("no \"x-a: 1\""), "{e}");
    }
}
