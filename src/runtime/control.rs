//! The control socket between the supervisor and a worker: a Unix stream
//! socketpair made for each worker, on which the worker asks and the
//! supervisor answers. One request per line (`verb [args]`), one answer per
//! request: `ok <len>\n` or `err <len>\n` and `len` bytes. The supervisor
//! speaks to a worker only with signals (HUP reload, TERM stop, QUIT retire).
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
pub fn write_answer(w: &mut impl Write, answer: &Result<String, String>) -> std::io::Result<()> {
    let (tag, body) = match answer {
        Ok(b) => ("ok", b),
        Err(b) => ("err", b),
    };
    write!(w, "{tag} {}\n{body}", body.len())?;
    w.flush()
}

/// Reads one answer; `Err(Err(_))` is an I/O or framing failure.
fn read_answer(r: &mut impl BufRead) -> Result<Result<String, String>, std::io::Error> {
    let mut head = String::new();
    if r.read_line(&mut head)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "bad control answer");
    let (tag, len) = head.trim_end().split_once(' ').ok_or_else(bad)?;
    let len: usize = len.parse().map_err(|_| bad())?;
    if len > 16 << 20 {
        return Err(bad());
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    let body = String::from_utf8(body).map_err(|_| bad())?;
    match tag {
        "ok" => Ok(Ok(body)),
        "err" => Ok(Err(body)),
        _ => Err(bad()),
    }
}

/// Reads one request line (without its newline); None at end of stream.
pub fn read_request(r: &mut impl BufRead) -> std::io::Result<Option<String>> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    Ok(Some(line.trim_end().to_string()))
}

/// The worker's end: calls into the supervisor. Calls are short and
/// synchronous; from async code, make them on a blocking thread.
pub struct Supervisor {
    conn: Mutex<BufReader<UnixStream>>,
}

impl Supervisor {
    pub fn new(stream: UnixStream) -> Self {
        Supervisor {
            conn: Mutex::new(BufReader::new(stream)),
        }
    }

    fn call_within(&self, request: &str, timeout: Duration) -> Result<String, String> {
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let io = (|| {
            conn.get_ref().set_read_timeout(Some(timeout))?;
            let mut line = request.to_string();
            line.push('\n');
            conn.get_mut().write_all(line.as_bytes())?;
            read_answer(&mut *conn)
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

    /// Starts the binary floatlb was started from as a new worker on the
    /// same listeners; this worker is retired once the new one serves.
    pub fn upgrade(&self) -> Result<String, String> {
        self.call_within("upgrade", UPGRADE_TIMEOUT)
    }
}

/// The descriptors a worker inherits, from [`FDS_ENV`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Inherited {
    pub listen: Option<i32>,
    pub tls: Option<i32>,
    pub admin: Option<i32>,
    pub control: Option<i32>,
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
            let slot = match name {
                "listen" => &mut out.listen,
                "tls" => &mut out.tls,
                "admin" => &mut out.admin,
                "control" => &mut out.control,
                _ => return Err(format!("{FDS_ENV}: unknown name {name:?}")),
            };
            *slot = Some(fd);
        }
        Ok(out)
    }

    pub fn render(&self) -> String {
        [
            ("listen", self.listen),
            ("tls", self.tls),
            ("admin", self.admin),
            ("control", self.control),
        ]
        .iter()
        .filter_map(|(n, fd)| fd.map(|fd| format!("{n}={fd}")))
        .collect::<Vec<_>>()
        .join(",")
    }

    pub fn all(&self) -> impl Iterator<Item = i32> {
        [self.listen, self.tls, self.admin, self.control]
            .into_iter()
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
            write_answer(&mut buf, &a).unwrap();
            buf.extend_from_slice(b"ok 0\n");
            let mut r = std::io::Cursor::new(buf);
            assert_eq!(read_answer(&mut r).unwrap(), a);
            assert_eq!(read_answer(&mut r).unwrap(), Ok(String::new()));
            assert!(read_answer(&mut r).is_err(), "end of stream");
        }
        for bad in ["maybe 1\nx", "ok x\n", "ok 5\nab", "ok 99999999999\n"] {
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
                control: Some(6)
            }
        );
        assert_eq!(Inherited::parse(&i.render()).unwrap(), i);
        assert_eq!(i.all().collect::<Vec<_>>(), vec![3, 5, 6]);
        for bad in ["listen", "listen=x", "listen=1", "web=4"] {
            assert!(Inherited::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_call_reaches_the_other_end_and_returns_its_answer() {
        let (a, b) = UnixStream::pair().unwrap();
        let server = std::thread::spawn(move || {
            let mut r = BufReader::new(b.try_clone().unwrap());
            let mut w = b;
            while let Some(req) = read_request(&mut r).unwrap() {
                let ans = match req.as_str() {
                    "master" => Ok("1".to_string()),
                    other => Err(format!("unknown {other}")),
                };
                write_answer(&mut w, &ans).unwrap();
            }
        });
        let s = Supervisor::new(a);
        assert!(s.is_master());
        assert_eq!(s.call("nope"), Err("unknown nope".into()));
        drop(s);
        server.join().unwrap();
    }
}
