//! OCSP stapling (RFC 6960, RFC 6066 §8) for the listener's file
//! certificates (`[tls] ocsp = true`): each certificate gets a [`Slot`]
//! holding its key with the last good response; one thread fetches from
//! the responder its AIA names, refreshes halfway to `nextUpdate`, backs off
//! with jitter while the responder fails and keeps stapling the last good
//! response until its `nextUpdate`. Slots are shared across reloads by the
//! leaf's fingerprint, so a reload keeps the staple.
//! Not for: verifying the responder's signature (the client does that on
//! what is stapled), or OCSP for backends' certificates.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::sign::CertifiedKey;

use super::der::{self, element, write};

/// sha1 AlgorithmIdentifier (RFC 6960 §4.1.1's usual CertID hash).
const SHA1_ALG: &[u8] = &[
    0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00,
];
/// id-pkix-ocsp-basic, 1.3.6.1.5.5.7.48.1.1.
const BASIC_OID: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x01];
/// A response without nextUpdate is fetched again after this long.
const NO_NEXT_UPDATE_REFRESH: i64 = 3600;
/// The longest wait between failed fetches.
const MAX_BACKOFF: i64 = 600;
/// The largest response read.
const MAX_RESPONSE: usize = 64 * 1024;

/// One certificate's stapling state.
pub struct Slot {
    /// The responder's URL (http only).
    pub url: String,
    /// The DER OCSPRequest for this certificate.
    request: Vec<u8>,
    /// The CertID's serialNumber content, to find our SingleResponse.
    serial: Vec<u8>,
    /// The key handshakes get: the certificate with the response stapled.
    current: ArcSwap<CertifiedKey>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The stapled response and its nextUpdate (Unix seconds), if any.
    good: Option<(Arc<Vec<u8>>, Option<i64>)>,
    /// When to fetch next (Unix seconds); 0: at once.
    next_fetch: i64,
    failures: u32,
    /// The last fetch's failure, for the log and `floatlb ctl`.
    last_error: Option<String>,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Slot {
    /// The key for a handshake: with the last good response if it is current.
    pub fn key(&self) -> Arc<CertifiedKey> {
        ensure_started();
        self.current.load_full()
    }

    /// Whether a response is stapled now.
    pub fn stapled(&self) -> bool {
        self.current.load().ocsp.is_some()
    }

    /// Takes a new key for the same certificate (a reload), keeping the staple.
    fn rebase(&self, key: &Arc<CertifiedKey>) {
        let good = self.state.lock().ok().and_then(|s| s.good.clone());
        self.current
            .store(with_response(key, good.map(|(r, _)| r.as_ref().clone())));
    }
}

fn with_response(key: &CertifiedKey, ocsp: Option<Vec<u8>>) -> Arc<CertifiedKey> {
    let mut k = key.clone();
    k.ocsp = ocsp;
    Arc::new(k)
}

type Registry = Mutex<HashMap<[u8; 32], Weak<Slot>>>;

fn registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(Default::default)
}

/// The slot for `key` (chain leaf first, its issuer second): the one a
/// previous load made for the same leaf, or a new one. The error says why
/// the certificate cannot be stapled.
pub fn slot_for(key: &Arc<CertifiedKey>) -> Result<Arc<Slot>, String> {
    let leaf = key.cert.first().ok_or("no certificate")?;
    let fp: [u8; 32] = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, leaf)
        .as_ref()
        .try_into()
        .map_err(|_| "digest")?;
    let mut reg = registry().lock().map_err(|_| "OCSP registry poisoned")?;
    reg.retain(|_, w| w.strong_count() > 0);
    if let Some(slot) = reg.get(&fp).and_then(Weak::upgrade) {
        slot.rebase(key);
        return Ok(slot);
    }
    let t = der::tbs(leaf).ok_or("the certificate cannot be parsed")?;
    let url = der::ocsp_url(&t)
        .ok_or("the certificate names no OCSP responder (Authority Information Access)")?;
    if !url.starts_with("http://") {
        return Err(format!("OCSP responder {url:?}: only http:// is fetched"));
    }
    let issuer = key
        .cert
        .get(1)
        .ok_or("the chain holds no issuer certificate (OCSP names the issuer's key)")?;
    let it = der::tbs(issuer).ok_or("the issuer certificate cannot be parsed")?;
    let request = request(t.issuer, it.public_key, t.serial);
    let slot = Arc::new(Slot {
        url,
        request,
        serial: t.serial.to_vec(),
        current: ArcSwap::new(key.clone()),
        state: Mutex::new(State::default()),
    });
    reg.insert(fp, Arc::downgrade(&slot));
    Ok(slot)
}

/// The DER OCSPRequest (RFC 6960 §4.1.1) for one certificate: its issuer's
/// Name (whole), the issuer's public key bits, its serial number.
pub fn request(issuer_name: &[u8], issuer_key: &[u8], serial: &[u8]) -> Vec<u8> {
    let sha1 = |b: &[u8]| {
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, b)
            .as_ref()
            .to_vec()
    };
    let mut cert_id = SHA1_ALG.to_vec();
    cert_id.extend(write(0x04, &sha1(issuer_name)));
    cert_id.extend(write(0x04, &sha1(issuer_key)));
    cert_id.extend(write(0x02, serial));
    let req = write(0x30, &write(0x30, &cert_id));
    let list = write(0x30, &req);
    write(0x30, &write(0x30, &list))
}

/// What a response says of one certificate.
#[derive(Debug, PartialEq, Eq)]
pub struct Verdict {
    pub this_update: i64,
    pub next_update: Option<i64>,
}

/// Checks a DER OCSPResponse (RFC 6960 §4.2.1) for the certificate with
/// `serial`: successful, a basic response, a SingleResponse for it saying
/// good, current at `now`. The error says what is wrong.
pub fn check_response(resp: &[u8], serial: &[u8], now: i64) -> Result<Verdict, String> {
    let bad = || "malformed OCSP response".to_string();
    let (0x30, body, _) = element(resp).ok_or_else(bad)? else {
        return Err(bad());
    };
    let (0x0a, status, rest) = element(body).ok_or_else(bad)? else {
        return Err(bad());
    };
    if status != [0] {
        let why = match status.first() {
            Some(1) => "malformedRequest",
            Some(2) => "internalError",
            Some(3) => "tryLater",
            Some(5) => "sigRequired",
            Some(6) => "unauthorized",
            _ => "unknown status",
        };
        return Err(format!("the responder answered {why}"));
    }
    let (0xa0, bytes, _) = element(rest).ok_or_else(bad)? else {
        return Err(bad());
    };
    let (0x30, bytes, _) = element(bytes).ok_or_else(bad)? else {
        return Err(bad());
    };
    let (0x06, oid, rest) = element(bytes).ok_or_else(bad)? else {
        return Err(bad());
    };
    if oid != BASIC_OID {
        return Err("not a basic OCSP response".into());
    }
    let (0x04, basic, _) = element(rest).ok_or_else(bad)? else {
        return Err(bad());
    };
    let (0x30, basic, _) = element(basic).ok_or_else(bad)? else {
        return Err(bad());
    };
    let (0x30, mut data, _) = element(basic).ok_or_else(bad)? else {
        return Err(bad());
    };
    if data.first() == Some(&0xa0) {
        data = element(data).ok_or_else(bad)?.2;
    }
    // responderID, producedAt, then the responses.
    data = element(data).ok_or_else(bad)?.2;
    data = element(data).ok_or_else(bad)?.2;
    let (0x30, mut responses, _) = element(data).ok_or_else(bad)? else {
        return Err(bad());
    };
    while !responses.is_empty() {
        let (_, single, next) = element(responses).ok_or_else(bad)?;
        responses = next;
        let (0x30, cert_id, rest) = element(single).ok_or_else(bad)? else {
            return Err(bad());
        };
        let mut id = cert_id;
        for _ in 0..3 {
            id = element(id).ok_or_else(bad)?.2;
        }
        let (0x02, their_serial, _) = element(id).ok_or_else(bad)? else {
            return Err(bad());
        };
        if their_serial != serial {
            continue;
        }
        let (status, _, rest) = element(rest).ok_or_else(bad)?;
        match status {
            0x80 => {}
            0xa1 => return Err("the responder says the certificate is revoked".into()),
            _ => return Err("the responder does not know the certificate".into()),
        }
        let (tag, t, rest) = element(rest).ok_or_else(bad)?;
        let this_update = der::time(tag, t).ok_or_else(bad)?;
        let next_update = match element(rest) {
            Some((0xa0, n, _)) => {
                let (tag, t, _) = element(n).ok_or_else(bad)?;
                Some(der::time(tag, t).ok_or_else(bad)?)
            }
            _ => None,
        };
        // RFC 6960 §4.2.2.1: a response from the future or past nextUpdate is not current.
        if this_update > now + 300 {
            return Err("the response's thisUpdate is in the future".into());
        }
        if next_update.is_some_and(|n| n <= now) {
            return Err("the response is past its nextUpdate".into());
        }
        return Ok(Verdict {
            this_update,
            next_update,
        });
    }
    Err("the response is not about this certificate".into())
}

/// When to fetch again after a good response: halfway to nextUpdate, at
/// least a minute from now, and a minute before it at most.
pub fn refresh_at(now: i64, v: &Verdict) -> i64 {
    match v.next_update {
        Some(n) => (now + (n - now) / 2).clamp(now + 60.min((n - now) / 2), n.max(now + 1)),
        None => now + NO_NEXT_UPDATE_REFRESH,
    }
}

/// The wait after the `failures`-th failure in a row: 10 s doubling to
/// [`MAX_BACKOFF`], plus up to a quarter more (jitter, so a pair or a fleet
/// does not ask in step).
pub fn backoff(failures: u32, random: u32) -> i64 {
    let base = (10i64 << failures.saturating_sub(1).min(6)).min(MAX_BACKOFF);
    base + i64::from(random) % (base / 4 + 1)
}

fn random_u32() -> u32 {
    use aws_lc_rs::rand::SecureRandom;
    let mut b = [0u8; 4];
    let _ = aws_lc_rs::rand::SystemRandom::new().fill(&mut b);
    u32::from_le_bytes(b)
}

/// Starts the fetching thread once per process (the first handshake that
/// picks a stapled certificate does: `floatlb check` never fetches).
fn ensure_started() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        let spawned = std::thread::Builder::new().name("ocsp".into()).spawn(run);
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "OCSP: cannot start the fetching thread");
        }
    });
}

fn run() {
    loop {
        let slots: Vec<Arc<Slot>> = match registry().lock() {
            Ok(reg) => reg.values().filter_map(Weak::upgrade).collect(),
            Err(_) => return,
        };
        for slot in slots {
            let now = super::unix_now();
            let due = slot
                .state
                .lock()
                .map(|s| s.next_fetch <= now)
                .unwrap_or(false);
            if due {
                refresh(&slot, now);
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// One fetch for `slot`, and what follows from it.
fn refresh(slot: &Slot, now: i64) {
    let got = fetch(&slot.url, &slot.request)
        .and_then(|resp| check_response(&resp, &slot.serial, now).map(|v| (resp, v)));
    let Ok(mut st) = slot.state.lock() else {
        return;
    };
    match got {
        Ok((resp, v)) => {
            tracing::info!(responder = %slot.url, next_update = ?v.next_update, "OCSP: stapling a good response");
            st.next_fetch = refresh_at(now, &v);
            st.failures = 0;
            st.last_error = None;
            st.good = Some((Arc::new(resp.clone()), v.next_update));
            let key = slot.current.load_full();
            slot.current.store(with_response(&key, Some(resp)));
        }
        Err(e) => {
            st.failures += 1;
            st.next_fetch = now + backoff(st.failures, random_u32());
            tracing::warn!(responder = %slot.url, error = %e, retry_in_s = st.next_fetch - now, "OCSP: fetch failed; keeping the last good response");
            st.last_error = Some(e);
            // A response past its nextUpdate is no longer stapled.
            if let Some((_, Some(next))) = st.good {
                if next <= now {
                    st.good = None;
                    let key = slot.current.load_full();
                    slot.current.store(with_response(&key, None));
                }
            }
        }
    }
}

/// POSTs `request` to the http:// `url` (RFC 6960 Appendix A.1) and returns
/// the body of a 200 answer.
fn fetch(url: &str, request: &[u8]) -> Result<Vec<u8>, String> {
    let rest = url.strip_prefix("http://").ok_or("not an http:// URL")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let with_port = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| format!("{authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("{authority}: no address"))?;
    let timeout = Duration::from_secs(5);
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("{addr}: {e}"))?;
    let _ = s.set_read_timeout(Some(timeout));
    let _ = s.set_write_timeout(Some(timeout));
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/ocsp-request\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        request.len()
    );
    s.write_all(head.as_bytes())
        .and_then(|()| s.write_all(request))
        .map_err(|e| format!("{addr}: {e}"))?;
    // Read until the body is whole: a responder may keep the connection open.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).map_err(|e| format!("{addr}: {e}"))?;
        buf.extend_from_slice(&chunk[..n]);
        if let Some(body) = whole_answer(&buf, n == 0).map_err(|e| format!("{addr}: {e}"))? {
            return Ok(body);
        }
        if n == 0 || buf.len() > MAX_RESPONSE + 4096 {
            return Err(format!("{addr}: answer cut short or too large"));
        }
    }
}

/// The body of a 200 answer in `buf` once it is whole (`Ok(None)`: not yet);
/// `eof`: the responder has closed.
fn whole_answer(buf: &[u8], eof: bool) -> Result<Option<Vec<u8>>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let n = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("not an HTTP answer: {e}")),
    };
    if resp.code != Some(200) {
        return Err(format!("HTTP status {}", resp.code.unwrap_or(0)));
    }
    let field = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    let body = &buf[n..];
    let got = if field("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case(b"chunked")) {
        dechunk(body)
    } else if let Some(len) = field("content-length") {
        let len: usize = std::str::from_utf8(len)
            .ok()
            .and_then(|l| l.trim().parse().ok())
            .ok_or("bad Content-Length")?;
        body.get(..len).map(<[u8]>::to_vec)
    } else if eof {
        Some(body.to_vec())
    } else {
        None
    };
    match got {
        Some(b) if b.is_empty() || b.len() > MAX_RESPONSE => Err("empty or too large body".into()),
        other => Ok(other),
    }
}

/// A chunked body (RFC 9112 §7.1) as its bytes; `None` if malformed.
fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = b.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&b[..line_end]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        b = &b[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

/// Each stapled certificate's state, for `floatlb ctl` and the log: (responder, stapled, last error).
pub fn states() -> Vec<(String, bool, Option<String>)> {
    let Ok(reg) = registry().lock() else {
        return Vec::new();
    };
    reg.values()
        .filter_map(Weak::upgrade)
        .map(|s| {
            let err = s.state.lock().ok().and_then(|st| st.last_error.clone());
            (s.url.clone(), s.stapled(), err)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_halfway_and_back_off_with_jitter() {
        let v = Verdict {
            this_update: 0,
            next_update: Some(1000),
        };
        assert_eq!(refresh_at(0, &v), 500);
        let v = Verdict {
            this_update: 0,
            next_update: None,
        };
        assert_eq!(refresh_at(0, &v), NO_NEXT_UPDATE_REFRESH);
        assert_eq!(backoff(1, 0), 10);
        assert_eq!(backoff(2, 0), 20);
        assert!((600..=750).contains(&backoff(30, u32::MAX)));
        assert!(backoff(1, 7) <= 12);
    }

    #[test]
    fn garbage_responses_are_errors() {
        // RFC 6960 §4.2.1: responseStatus tryLater (3) carries no response.
        let try_later = [0x30, 0x03, 0x0a, 0x01, 0x03];
        let e = check_response(&try_later, &[1], 0).unwrap_err();
        assert!(e.contains("tryLater"), "{e}");
        for bytes in [&b""[..], &[0x30, 0x80], &[0x30, 0x03, 0x0a, 0x01, 0x00]] {
            assert!(check_response(bytes, &[1], 0).is_err());
        }
        assert_eq!(dechunk(b"3\r\nabc\r\n0\r\n\r\n").unwrap(), b"abc");
        assert!(dechunk(b"ff\r\nabc").is_none());
    }
}
