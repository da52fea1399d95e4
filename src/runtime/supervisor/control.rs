//! The control socket between the supervisor and a worker: a Unix stream
//! socketpair made for each worker, on which the worker asks and the
//! supervisor answers. One request per line (`<seq> verb [args]`), one answer
//! per request: `ok <seq> <len>\n` or `err <seq> <len>\n` and `len` bytes; the
//! sequence number lets a caller whose wait timed out skip the late answer.
//! The supervisor speaks to a worker only with signals (HUP reload, TERM
//! stop, QUIT retire).
//!
//! Not for: the process lifecycle (see `supervisor`) or what a verb does
//! there; this is the wire and the worker's side of it.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::sync::Mutex;
use std::time::Duration;

/// A call the supervisor did not answer in time or could not be reached for.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// How long an upgrade may take: the new worker's start, bounded by the
/// supervisor's own wait for it (see `supervisor::READY_TIMEOUT`).
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(20);

/// The environment variable that hands a worker its inherited descriptors:
/// `listen=3,tls=4,admin=5,control=6` (absent names: none).
pub const FDS_ENV: &str = "FLOATLB_WORKER_FDS";

/// Writes one answer.
pub fn write_answer(
    w: &mut impl Write,
    seq: u64,
    answer: &Result<String, String>,
) -> std::io::Result<()> {
    let (tag, body) = match answer {
        Ok(b) => ("ok", b),
        Err(b) => ("err", b),
    };
    write!(w, "{tag} {seq} {}\n{body}", body.len())?;
    w.flush()
}

/// An answer: its sequence number and what it says.
type Answer = (u64, Result<String, String>);

/// Reads one answer; an `Err` is an I/O or framing failure.
fn read_answer(r: &mut impl BufRead) -> Result<Answer, std::io::Error> {
    let mut head = String::new();
    if r.read_line(&mut head)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "bad control answer");
    let mut parts = head.trim_end().splitn(3, ' ');
    let (tag, seq, len) = match (parts.next(), parts.next(), parts.next()) {
        (Some(t), Some(s), Some(l)) => (t, s, l),
        _ => return Err(bad()),
    };
    let seq: u64 = seq.parse().map_err(|_| bad())?;
    let len: usize = len.parse().map_err(|_| bad())?;
    if len > 16 << 20 {
        return Err(bad());
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    let body = String::from_utf8(body).map_err(|_| bad())?;
    match tag {
        "ok" => Ok((seq, Ok(body))),
        "err" => Ok((seq, Err(body))),
        _ => Err(bad()),
    }
}

/// Reads one request: its sequence number and line (`verb [args]`); None at
/// end of stream. A line without a number is answered as number 0.
pub fn read_request(r: &mut impl BufRead) -> std::io::Result<Option<(u64, String)>> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let line = line.trim_end();
    Ok(Some(match line.split_once(' ') {
        Some((n, rest)) if n.parse::<u64>().is_ok() => (n.parse().unwrap_or(0), rest.to_string()),
        _ => (0, line.to_string()),
    }))
}

/// The worker's end: calls into the supervisor. Calls are short and
/// synchronous; from async code, make them on a blocking thread.
pub struct Supervisor {
    conn: Mutex<(BufReader<UnixStream>, u64)>,
}

impl Supervisor {
    pub fn new(stream: UnixStream) -> Self {
        Supervisor {
            conn: Mutex::new((BufReader::new(stream), 0)),
        }
    }

    fn call_within(&self, request: &str, timeout: Duration) -> Result<String, String> {
        let mut guard = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let (conn, seq) = &mut *guard;
        *seq += 1;
        let mine = *seq;
        let io = (|| -> std::io::Result<Result<String, String>> {
            conn.get_ref().set_read_timeout(Some(timeout))?;
            conn.get_mut()
                .write_all(format!("{mine} {request}\n").as_bytes())?;
            loop {
                // Answers to earlier calls that timed out come first: skip them.
                let (seq, answer) = read_answer(conn)?;
                if seq == mine {
                    return Ok(answer);
                }
            }
        })();
        match io {
            Ok(answer) => answer,
            Err(e) => Err(format!("the supervisor did not answer {request:?}: {e}")),
        }
    }

    fn call(&self, request: &str) -> Result<String, String> {
        self.call_within(request, CALL_TIMEOUT)
    }

    /// Listeners are served: the supervisor may retire an older worker.
    pub fn ready(&self) -> Result<(), String> {
        self.call("ready").map(drop)
    }

    /// Tracking for the VRRP instances: can this worker serve, and what is in flight.
    pub fn report(&self, healthy: bool, in_flight: u64) -> Result<(), String> {
        self.call(&format!("report {} {in_flight}", u8::from(healthy)))
            .map(drop)
    }

    /// Whether any VRRP instance is master.
    pub fn is_master(&self) -> bool {
        self.call("master").is_ok_and(|a| a == "1")
    }

    /// Whether this node's supervisor steers packets for the planned handover
    /// (`net::steer`): then the old master serves late SYNs instead of dropping them.
    pub fn steering(&self) -> bool {
        self.call("steering").is_ok_and(|a| a == "1")
    }

    /// What a peer said for the handover steering (`crate::peers::Drained`): the
    /// supervisor arms (leaving) or ends (drained) the passing of packets to it.
    pub fn peer_said(&self, word: &crate::peers::Drained) -> Result<String, String> {
        let verb = match word.kind {
            crate::peers::Kind::Drained => "drained",
            crate::peers::Kind::Leaving => "leaving",
        };
        let vips: Vec<String> = word.vips.iter().map(|v| v.to_string()).collect();
        self.call(&format!("{verb} {} {}", word.at, vips.join(" ")))
    }

    /// Priority-0 adverts from every master instance; VIPs kept for `linger`.
    pub fn step_down(&self, linger: Duration) -> String {
        self.call(&format!("step-down {}", linger.as_millis()))
            .unwrap_or_else(|e| e)
    }

    /// A reload's `[[vrrp]]` part: the supervisor reads the same file and
    /// reconfigures its instances, or says why not (nothing changed then).
    pub fn reconfigure(&self) -> Result<String, String> {
        self.call("reconfigure")
    }

    /// `/status.json` members: `"process":{...}` and, with VRRP, `"vrrp":[...]`.
    pub fn status_json(&self) -> Option<String> {
        self.call("status").ok()
    }

    /// The supervisor's metric families, in the text exposition format.
    pub fn metrics_text(&self) -> Option<String> {
        self.call("metrics").ok()
    }

    /// The session-ticket keys the supervisor made for its workers.
    pub fn ticket_keys(&self) -> Result<String, String> {
        self.call("ticket-keys")
    }

    /// Starts the binary floatlb was started from as a new worker on the
    /// same listeners; this worker is retired once the new one serves.
    pub fn upgrade(&self) -> Result<String, String> {
        self.call_within("upgrade", UPGRADE_TIMEOUT)
    }
}

/// Further `[[listen]]` sockets a worker can inherit (`listen1=`...).
pub const EXTRA_LISTENERS: usize = crate::config::MAX_LISTENERS - 1;

/// The descriptors a worker inherits, from [`FDS_ENV`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Inherited {
    pub listen: Option<i32>,
    pub tls: Option<i32>,
    pub admin: Option<i32>,
    pub control: Option<i32>,
    /// `[[listen]]` entries after the first, by their place (`listenN`, N from 1).
    pub extra: [Option<i32>; EXTRA_LISTENERS],
}

impl Inherited {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut out = Inherited::default();
        for item in s.split(',').filter(|i| !i.is_empty()) {
            let (name, fd) = item
                .split_once('=')
                .ok_or_else(|| format!("{FDS_ENV}: {item:?} is not name=fd"))?;
            let fd: i32 = fd
                .parse()
                .ok()
                .filter(|fd| *fd > 2)
                .ok_or_else(|| format!("{FDS_ENV}: {item:?}: not a descriptor above 2"))?;
            let extra = name
                .strip_prefix("listen")
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|n| (1..=EXTRA_LISTENERS).contains(n));
            let slot = match (name, extra) {
                ("listen", _) => &mut out.listen,
                ("tls", _) => &mut out.tls,
                ("admin", _) => &mut out.admin,
                ("control", _) => &mut out.control,
                (_, Some(n)) => &mut out.extra[n - 1],
                _ => return Err(format!("{FDS_ENV}: unknown name {name:?}")),
            };
            *slot = Some(fd);
        }
        Ok(out)
    }

    pub fn render(&self) -> String {
        let named = [
            ("listen", self.listen),
            ("tls", self.tls),
            ("admin", self.admin),
            ("control", self.control),
        ]
        .into_iter()
        .filter_map(|(n, fd)| fd.map(|fd| format!("{n}={fd}")));
        let extra = self
            .extra
            .iter()
            .enumerate()
            .filter_map(|(i, fd)| fd.map(|fd| format!("listen{}={fd}", i + 1)));
        named.chain(extra).collect::<Vec<_>>().join(",")
    }

    pub fn all(&self) -> impl Iterator<Item = i32> + '_ {
        [self.listen, self.tls, self.admin, self.control]
            .into_iter()
            .chain(self.extra)
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_round_trip_and_bad_frames_are_errors() {
        for a in [Ok(String::new()), Ok("1".into()), Err("no\nVRRP".into())] {
            let mut buf = Vec::new();
            write_answer(&mut buf, 7, &a).unwrap();
            buf.extend_from_slice(b"ok 8 0\n");
            let mut r = std::io::Cursor::new(buf);
            assert_eq!(read_answer(&mut r).unwrap(), (7, a));
            assert_eq!(read_answer(&mut r).unwrap(), (8, Ok(String::new())));
            assert!(read_answer(&mut r).is_err(), "end of stream");
        }
        for bad in [
            "maybe 1 1\nx",
            "ok x 1\n",
            "ok 1 5\nab",
            "ok 1 99999999999\n",
            "ok 5\n",
        ] {
            assert!(
                read_answer(&mut std::io::Cursor::new(bad)).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn inherited_descriptors_parse_and_render() {
        let i = Inherited::parse("listen=3,admin=5,control=6").unwrap();
        assert_eq!(
            i,
            Inherited {
                listen: Some(3),
                tls: None,
                admin: Some(5),
                control: Some(6),
                extra: [None; EXTRA_LISTENERS],
            }
        );
        assert_eq!(Inherited::parse(&i.render()).unwrap(), i);
        assert_eq!(i.all().collect::<Vec<_>>(), vec![3, 5, 6]);
        let more = Inherited::parse("listen=3,listen2=9,control=6,listen1=8").unwrap();
        assert_eq!((more.extra[0], more.extra[1]), (Some(8), Some(9)));
        assert_eq!(Inherited::parse(&more.render()).unwrap(), more);
        assert_eq!(more.all().collect::<Vec<_>>(), vec![3, 6, 8, 9]);
        for bad in [
            "listen",
            "listen=x",
            "listen=1",
            "web=4",
            "listen0=7",
            "listen16=7",
        ] {
            assert!(Inherited::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_call_reaches_the_other_end_and_returns_its_answer() {
        let (a, b) = UnixStream::pair().unwrap();
        let server = std::thread::spawn(move || {
            let mut r = BufReader::new(b.try_clone().unwrap());
            let mut w = b;
            while let Some((seq, req)) = read_request(&mut r).unwrap() {
                let ans = match req.as_str() {
                    "master" => Ok("1".to_string()),
                    "slow" => {
                        std::thread::sleep(Duration::from_millis(300));
                        Ok("late".to_string())
                    }
                    other => Err(format!("unknown {other}")),
                };
                write_answer(&mut w, seq, &ans).unwrap();
            }
        });
        let s = Supervisor::new(a);
        assert!(s.is_master());
        assert_eq!(s.call("nope"), Err("unknown nope".into()));
        // A call that gave up: its late answer is not taken for the next one's.
        assert!(s.call_within("slow", Duration::from_millis(50)).is_err());
        assert!(s.is_master());
        drop(s);
        server.join().unwrap();
    }
}
