//! Certificates floatlb obtains and renews itself (`[[tls.acme]]`, RFC
//! 8555), on both nodes of a pair: one thread per worker decides when each
//! certificate is due (none yet, a time the server's renewal information
//! suggests, RFC 9773, or else two thirds of its lifetime gone), and
//! orders it only while this node holds a VRRP virtual address (or has no
//! `[[vrrp]]`): a backup never orders while a master is alive. A new
//! certificate is served at once (`crate::tls::managed`), written to the
//! state directory (0700, files 0600) and sent to the peers
//! ([`pair`]), which serve and keep it too. A failed order keeps the old
//! certificate and is retried with back-off and jitter (longer when the
//! server says so, RFC 8555 §6.6 Retry-After, or on a rate limit).
//! Not for: the protocol itself (`crate::acme`: [`order`], JWS, the CSR)
//! or the handshake.

pub mod pair;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::acme::{ari, http, jws, order, x509};
use crate::config::{Acme, Config};
use crate::proxy::state::Shared;
use crate::tls::managed::{self, Managed};

/// The first retry after a failure; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: i64 = 10;
const MAX_BACKOFF: i64 = 6 * 3600;
/// A rate-limited order waits at least this long without a Retry-After.
const RATE_LIMIT_WAIT: i64 = 3600;
/// How often a master sends its certificates to the peers again (a peer
/// that was down when one was issued gets it this late at most).
const RESEND: i64 = 60;

/// What `floatlb ctl` and the status page say of one certificate.
#[derive(Debug, Clone, Default)]
pub struct Status {
    pub names: Vec<String>,
    /// notAfter of the certificate served, Unix seconds (0: none yet).
    pub not_after: i64,
    /// When it is due for renewal, Unix seconds.
    pub renew_at: i64,
    /// Where `renew_at` came from: `ari` (a time in the server's suggested
    /// window, RFC 9773) or `lifetime` (two thirds of it).
    pub renew_from: &'static str,
    /// Two thirds of the served certificate's lifetime, Unix seconds.
    pub lifetime_at: i64,
    /// The ARI CertID of the certificate served (RFC 9773 §4.1), if it has one.
    pub cert_id: Option<String>,
    /// The next RenewalInfo fetch, Unix seconds (0: at once).
    pub ari_next: i64,
    /// RenewalInfo fetches that failed in a row.
    pub ari_failures: u32,
    /// The last fetch's error, or the server's explanationURL.
    pub ari_note: Option<String>,
    /// Where it came from: `ordered`, `peer`, `state` (the state directory).
    pub source: String,
    /// The last failure, if the last attempt failed.
    pub last_error: Option<String>,
    /// Failed attempts in a row.
    pub failures: u32,
    /// The next attempt, Unix seconds (0: when due).
    pub next_try: i64,
    /// Orders made by this node.
    pub orders: u64,
}

fn statuses() -> &'static Mutex<HashMap<String, Status>> {
    static S: OnceLock<Mutex<HashMap<String, Status>>> = OnceLock::new();
    S.get_or_init(Default::default)
}

/// Each managed certificate's state, by its first name.
pub fn status() -> Vec<Status> {
    let mut v: Vec<Status> = statuses()
        .lock()
        .map(|m| m.values().cloned().collect())
        .unwrap_or_default();
    v.sort_by(|a, b| a.names.cmp(&b.names));
    v
}

/// (first name, file in the state directory, notAfter) of each managed
/// certificate served, for `floatlb_tls_certificate_expiry_seconds`.
pub fn expiry(tls: Option<&crate::config::Tls>) -> Vec<(String, PathBuf, i64)> {
    let Some(tls) = tls else {
        return Vec::new();
    };
    status()
        .into_iter()
        .filter(|s| s.not_after > 0)
        .map(|s| {
            let file = paths(&tls.acme_state, &s.names).0;
            (
                s.names.first().cloned().unwrap_or_default(),
                file,
                s.not_after,
            )
        })
        .collect()
}

/// Seconds as a short duration: `59s`, `12m`, `5h`, `30d`.
fn span(secs: i64) -> String {
    let (n, unit) = match secs.abs() {
        s if s < 120 => (s, "s"),
        s if s < 7200 => (s / 60, "m"),
        s if s < 172_800 => (s / 3600, "h"),
        s => (s / 86400, "d"),
    };
    if secs < 0 {
        format!("{n}{unit} ago")
    } else {
        format!("in {n}{unit}")
    }
}

/// What `floatlb ctl certificates` prints: each `[[tls.acme]]` certificate
/// and each stapled OCSP response, one line each.
pub fn report() -> String {
    let now = crate::tls::unix_now();
    let mut out = String::new();
    for s in status() {
        let expires = match s.not_after {
            0 => "none yet".to_string(),
            t => format!("expires {} ({t})", span(t - now)),
        };
        let renews = match (s.not_after, s.renew_at) {
            (0, _) => "to be ordered".to_string(),
            (_, t) if t <= now => format!("renewal due ({})", s.renew_from),
            (_, t) => format!("renews {} ({})", span(t - now), s.renew_from),
        };
        out.push_str(&format!(
            "acme {}: {expires}, {renews}, from {}, {} order(s) by this node",
            s.names.join(","),
            if s.source.is_empty() { "-" } else { &s.source },
            s.orders
        ));
        if let Some(e) = &s.last_error {
            out.push_str(&format!(
                ", {} failure(s), next try {}: {e}",
                s.failures,
                span(s.next_try - now)
            ));
        }
        if let Some(n) = &s.ari_note {
            out.push_str(&format!(", renewal info: {n}"));
        }
        out.push('\n');
    }
    for (url, stapled, error) in crate::tls::ocsp::states() {
        out.push_str(&format!(
            "ocsp {url}: {}",
            if stapled { "stapled" } else { "not stapled" }
        ));
        if let Some(e) = error {
            out.push_str(&format!(", last fetch failed: {e}"));
        }
        out.push('\n');
    }
    if out.is_empty() {
        out.push_str("no [[tls.acme]] certificate and no OCSP stapling\n");
    }
    out
}

/// Asks for a renewal of every managed certificate now (`floatlb ctl`).
pub fn renew_now() {
    if let Ok(mut m) = statuses().lock() {
        for s in m.values_mut() {
            s.renew_at = 0;
            s.next_try = 0;
        }
    }
}

/// Renewal time without renewal information (RFC 9773): two thirds of the
/// way from notBefore to notAfter.
pub fn renew_at(not_before: i64, not_after: i64) -> i64 {
    not_before + (not_after - not_before) * 2 / 3
}

/// The wait after the `failures`-th failure in a row (`random` for jitter:
/// up to a quarter more), never shorter than what the server asked.
pub fn backoff(failures: u32, random: u32, retry_after: Option<u64>, rate_limited: bool) -> i64 {
    let base = (FIRST_BACKOFF << failures.saturating_sub(1).min(20)).min(MAX_BACKOFF);
    let mut wait = base + i64::from(random) % (base / 4 + 1);
    if rate_limited {
        wait = wait.max(RATE_LIMIT_WAIT);
    }
    if let Some(r) = retry_after {
        wait = wait.max(r.min(7 * 86400) as i64);
    }
    wait
}

fn random_u64() -> u64 {
    (u64::from(random_u32()) << 32) | u64::from(random_u32())
}

/// The first retry of a RenewalInfo fetch after a temporary error; it
/// doubles for [`ARI_TRIES`] tries, then the error counts as long-term
/// (RFC 9773 §4.3.3).
const ARI_FIRST_RETRY: i64 = 60;
const ARI_TRIES: u32 = 4;

/// What one RenewalInfo fetch changes in a certificate's status (sans-IO:
/// `now`, `random` for the pick in the window). A window replaces the
/// renewal time unless the time already picked lies in it (so repeated
/// fetches of an unchanged window do not move it), and never later than
/// a ninth of the lifetime before expiry; no ARI, or no window
/// ever fetched, leaves two thirds of the lifetime (`lifetime_at`); a
/// failure keeps the last window fetched.
pub fn apply_ari(
    st: &mut Status,
    found: Result<ari::Found, ari::FetchError>,
    lifetime_at: i64,
    now: i64,
    random: u64,
) {
    match found {
        Ok(ari::Found::Window(w, recheck)) => {
            let kept = st.renew_from == "ari" && (w.start..w.end).contains(&st.renew_at);
            if !kept {
                st.renew_at = ari::pick(&w, random);
            }
            // A window reaching past expiry (a server's mistake) still
            // leaves a ninth of the lifetime to renew in.
            if st.not_after > lifetime_at {
                st.renew_at = st
                    .renew_at
                    .min(st.not_after - (st.not_after - lifetime_at) / 3);
            }
            st.renew_from = "ari";
            st.ari_next = now + recheck;
            st.ari_failures = 0;
            st.ari_note = w.explanation.map(|u| format!("see {u}"));
        }
        Ok(ari::Found::Unsupported) => {
            st.renew_at = lifetime_at;
            st.renew_from = "lifetime";
            st.ari_next = now + ari::LONG_TERM_RECHECK;
            st.ari_failures = 0;
            st.ari_note = None;
        }
        Err(e) => {
            st.ari_failures += 1;
            let wait = if e.temporary && st.ari_failures <= ARI_TRIES {
                ARI_FIRST_RETRY << (st.ari_failures - 1)
            } else {
                ari::LONG_TERM_RECHECK
            };
            st.ari_next = now + wait;
            st.ari_note = Some(format!("{} (next fetch {})", e.message, span(wait)));
            if st.renew_from != "ari" {
                st.renew_at = lifetime_at;
                st.renew_from = "lifetime";
            }
        }
    }
}

fn random_u32() -> u32 {
    use aws_lc_rs::rand::SecureRandom;
    let mut b = [0u8; 4];
    let _ = aws_lc_rs::rand::SystemRandom::new().fill(&mut b);
    u32::from_le_bytes(b)
}

/// Whether this node may order: it has no `[[vrrp]]`, or it holds one of
/// their virtual addresses now.
pub fn may_order(config: &Config) -> bool {
    if config.vrrp.is_empty() {
        return true;
    }
    let local = local_addresses();
    config.vrrp.iter().any(|v| {
        v.virtual_addresses.iter().any(|a| {
            let ip = a.split('/').next().unwrap_or("");
            ip.parse::<std::net::IpAddr>()
                .is_ok_and(|ip| local.contains(&ip))
        })
    })
}

/// The addresses on this node's interfaces.
fn local_addresses() -> Vec<std::net::IpAddr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return out;
    }
    let mut at = head;
    while !at.is_null() {
        // SAFETY: `at` is a node of the list getifaddrs returned.
        let ifa = unsafe { &*at };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: ifa_addr points at a sockaddr of the family it names.
            match i32::from(unsafe { (*ifa.ifa_addr).sa_family }) {
                libc::AF_INET => {
                    let sa = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                    out.push(std::net::Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr)).into());
                }
                libc::AF_INET6 => {
                    let sa = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                    out.push(std::net::Ipv6Addr::from(sa.sin6_addr.s6_addr).into());
                }
                _ => {}
            }
        }
        at = ifa.ifa_next;
    }
    // SAFETY: the list getifaddrs made.
    unsafe { libc::freeifaddrs(head) };
    out
}

/// Writes `data` to `path` (mode 0600) through a temporary file and a rename.
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The state directory, made with mode 0700 if missing (and tightened if looser).
fn state_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// A file name for a certificate's first name.
fn stem(names: &[String]) -> String {
    names
        .first()
        .map(|n| {
            n.replace(
                |c: char| !c.is_ascii_alphanumeric() && c != '.' && c != '-',
                "_",
            )
        })
        .unwrap_or_else(|| "unnamed".into())
}

fn paths(dir: &Path, names: &[String]) -> (PathBuf, PathBuf) {
    let s = stem(names);
    (dir.join(format!("{s}.pem")), dir.join(format!("{s}.key")))
}

/// Parses a PEM chain and key into what the listener serves, checking that
/// the key matches and that every name is covered: (managed, notBefore).
pub fn parse(names: &[String], chain_pem: &str, key_pem: &str) -> Result<(Managed, i64), String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("not a PEM chain: {e}"))?;
    let leaf = chain.first().ok_or("an empty chain")?;
    let info = crate::tls::der::leaf_info(leaf).ok_or("the certificate cannot be parsed")?;
    for n in names {
        if !info
            .dns_names
            .iter()
            .any(|p| crate::tls::name_matches(p, n))
        {
            return Err(format!("the certificate does not cover {n}"));
        }
    }
    let der = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| format!("key: {e}"))?;
    let signing = rustls::crypto::aws_lc_rs::sign::any_supported_type(&der)
        .map_err(|e| format!("key: {e}"))?;
    let key = rustls::sign::CertifiedKey::new(chain, signing);
    key.keys_match()
        .map_err(|_| "the key does not match the certificate")?;
    Ok((
        Managed {
            names: names.iter().map(|n| n.to_ascii_lowercase()).collect(),
            key: Arc::new(key),
            not_after: info.not_after,
            stapled: None,
        },
        info.not_before,
    ))
}

/// Serves a certificate, keeps it in the state directory and records its
/// status; `false` if it is not newer than the one served.
fn take(
    tls: &crate::config::Tls,
    names: &[String],
    chain_pem: &str,
    key_pem: &str,
    source: &str,
) -> Result<bool, String> {
    let dir = tls.acme_state.as_path();
    let (mut m, not_before) = parse(names, chain_pem, key_pem)?;
    let key = names.join(",");
    let mut all = statuses().lock().map_err(|_| "status lock")?;
    let st = all.entry(key).or_insert_with(|| Status {
        names: names.to_vec(),
        ..Status::default()
    });
    if m.not_after <= st.not_after {
        return Ok(false);
    }
    if source != "state" {
        state_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let (cert_path, key_path) = paths(dir, names);
        write_private(&key_path, key_pem.as_bytes())
            .and_then(|()| write_private(&cert_path, chain_pem.as_bytes()))
            .map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    st.not_after = m.not_after;
    st.renew_at = renew_at(not_before, m.not_after);
    st.lifetime_at = st.renew_at;
    st.renew_from = "lifetime";
    // RFC 9773 §4.3: renewal information is fetched right after issuance.
    st.cert_id = m.key.cert.first().and_then(|c| ari::cert_id(c).ok());
    st.ari_next = 0;
    st.ari_failures = 0;
    st.ari_note = None;
    st.source = source.into();
    if tls.ocsp {
        match crate::tls::ocsp::slot_for(&m.key) {
            Ok(slot) => m.stapled = Some(slot),
            Err(e) => tracing::warn!(names = ?names, error = %e, "ACME: cannot staple OCSP"),
        }
    }
    managed::install(m);
    tracing::info!(names = ?names, not_after = st.not_after, renew_at = st.renew_at, source, "ACME: serving a certificate");
    Ok(true)
}

/// Starts the ACME thread if the config has a `[tls]` table (a reload may
/// add `[[tls.acme]]` later); it starts the peers' listener when it first
/// sees a `[[tls.acme]]`.
pub fn start(shared: &Arc<Shared>) {
    if shared.live.load().config.tls.is_none() {
        return;
    }
    let shared = shared.clone();
    let spawned = std::thread::Builder::new()
        .name("acme".into())
        .spawn(move || run(shared));
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "ACME: cannot start its thread");
    }
}

/// Takes the certificates peers send, on a thread of its own.
fn listen_to_peers(shared: &Arc<Shared>) {
    let sh = shared.clone();
    pair::listen(shared.clone(), move |names, chain, key| {
        let snap = sh.live.load_full();
        let Some(tls) = snap.config.tls.as_ref() else {
            return;
        };
        // Only a certificate this node's own [[tls.acme]] asks for.
        if !tls.acme.iter().any(|a| a.names == names) {
            tracing::warn!(names = ?names, "ACME: the peer sent a certificate no [[tls.acme]] here names; ignored");
            return;
        }
        match take(tls, &names, &chain, &key, "peer") {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!(names = ?names, "ACME: the peer's certificate is not newer")
            }
            Err(e) => {
                tracing::warn!(names = ?names, error = %e, "ACME: the peer's certificate was refused")
            }
        }
    });
}

fn run(shared: Arc<Shared>) {
    let mut loaded: std::collections::HashSet<String> = Default::default();
    let mut last_sent: HashMap<String, i64> = HashMap::new();
    let mut listening = false;
    loop {
        let snap = shared.live.load_full();
        let Some(tls) = snap.config.tls.as_ref() else {
            std::thread::sleep(Duration::from_secs(1));
            continue;
        };
        if !listening && !tls.acme.is_empty() {
            listen_to_peers(&shared);
            listening = true;
        }
        let dir = tls.acme_state.clone();
        for entry in &tls.acme {
            let key = entry.names.join(",");
            if loaded.insert(key.clone()) {
                load_from_state(tls, entry);
            }
            let now = crate::tls::unix_now();
            let (due, waiting) = statuses()
                .lock()
                .map(|m| {
                    m.get(&key).map_or((true, false), |s| {
                        (s.not_after == 0 || now >= s.renew_at, now < s.next_try)
                    })
                })
                .unwrap_or((false, true));
            let master = may_order(&snap.config);
            if due && !waiting && master {
                attempt(&shared, tls, entry);
                last_sent.insert(key.clone(), now);
            } else if master && !due && ari_due(&key, now) {
                check_renewal_info(entry, &key, now);
            } else if master && now - last_sent.get(&key).copied().unwrap_or(0) >= RESEND {
                // A master tells the peers what it serves, now and then.
                last_sent.insert(key.clone(), now);
                let (cert_path, key_path) = paths(&dir, &entry.names);
                if let (Ok(c), Ok(k)) = (
                    std::fs::read_to_string(cert_path),
                    std::fs::read_to_string(key_path),
                ) {
                    pair::send(&shared, &entry.names, &c, &k);
                }
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Whether the served certificate's RenewalInfo is to be fetched now: it has
/// a CertID, has not expired (RFC 9773 §4.3: never after), and its next
/// fetch is due.
fn ari_due(key: &str, now: i64) -> bool {
    statuses()
        .lock()
        .ok()
        .and_then(|m| {
            m.get(key)
                .map(|s| s.cert_id.is_some() && now < s.not_after && now >= s.ari_next)
        })
        .unwrap_or(false)
}

/// Fetches the served certificate's RenewalInfo and sets its renewal time.
fn check_renewal_info(entry: &Acme, key: &str, now: i64) {
    let Some((cert_id, lifetime_at)) = statuses().lock().ok().and_then(|m| {
        let s = m.get(key)?;
        Some((s.cert_id.clone()?, s.lifetime_at))
    }) else {
        return;
    };
    let found = http::Client::new(entry.ca_file.as_deref())
        .map_err(|message| ari::FetchError {
            message,
            temporary: false,
        })
        .and_then(|http| ari::fetch(&http, &entry.directory, &cert_id, now));
    let Ok(mut m) = statuses().lock() else {
        return;
    };
    let Some(st) = m.get_mut(key) else {
        return;
    };
    // The certificate was replaced while we asked (§4.3: not after that).
    if st.cert_id.as_deref() != Some(cert_id.as_str()) {
        return;
    }
    match &found {
        Err(e) => {
            tracing::warn!(names = ?entry.names, error = %e.message, "ACME: renewal information unavailable")
        }
        Ok(ari::Found::Unsupported) => {
            tracing::debug!(names = ?entry.names, "ACME: the server offers no renewal information (RFC 9773); two thirds of the lifetime")
        }
        Ok(ari::Found::Window(..)) => {}
    }
    let was = (st.renew_at, st.renew_from);
    apply_ari(st, found, lifetime_at, now, random_u64());
    if (st.renew_at, st.renew_from) != was {
        tracing::info!(names = ?entry.names, renew_at = st.renew_at, from = st.renew_from, cert_id = %cert_id, "ACME: renewal time set");
    }
}

/// Serves what the state directory holds for `entry`, if anything.
fn load_from_state(tls: &crate::config::Tls, entry: &Acme) {
    let (cert_path, key_path) = paths(&tls.acme_state, &entry.names);
    let (Ok(c), Ok(k)) = (
        std::fs::read_to_string(&cert_path),
        std::fs::read_to_string(&key_path),
    ) else {
        return;
    };
    if let Err(e) = take(tls, &entry.names, &c, &k, "state") {
        tracing::warn!(file = %cert_path.display(), error = %e, "ACME: the kept certificate is not usable");
    }
}

/// The account key for `directory` from the state directory, made and kept if missing.
fn account_key(dir: &Path, directory: &str) -> Result<jws::AccountKey, String> {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, directory.as_bytes());
    let file = dir.join(format!(
        "account-{}.key",
        &crate::tls::client_auth::hex(digest.as_ref())[..16]
    ));
    if let Ok(pem) = std::fs::read(&file) {
        let der = rustls::pki_types::PrivatePkcs8KeyDer::from_pem_slice(&pem)
            .map_err(|e| format!("{}: {e}", file.display()))?;
        return jws::AccountKey::from_pkcs8(der.secret_pkcs8_der());
    }
    let key = jws::AccountKey::generate()?;
    state_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    write_private(&file, x509::pem("PRIVATE KEY", &key.pkcs8).as_bytes())
        .map_err(|e| format!("{}: {e}", file.display()))?;
    Ok(key)
}

/// One order for `entry`, and what follows from it.
fn attempt(shared: &Shared, tls: &crate::config::Tls, entry: &Acme) {
    let dir = tls.acme_state.as_path();
    let key = entry.names.join(",");
    // RFC 9773 §5: the order names the certificate it replaces.
    let replaces = statuses()
        .lock()
        .ok()
        .and_then(|m| m.get(&key).and_then(|s| s.cert_id.clone()));
    let result = (|| -> Result<(String, String), order::Failure> {
        let http = http::Client::new(entry.ca_file.as_deref())?;
        let account = account_key(dir, &entry.directory)?;
        let req = order::Request {
            directory: &entry.directory,
            contact: &entry.contact,
            names: &entry.names,
            key_type: entry.key().unwrap_or(x509::KeyType::P256),
            challenges: &entry.challenge_types(),
            replaces: replaces.as_deref(),
        };
        if let Ok(mut m) = statuses().lock() {
            let st = m.entry(key.clone()).or_insert_with(|| Status {
                names: entry.names.clone(),
                ..Status::default()
            });
            st.orders += 1;
        }
        tracing::info!(names = ?entry.names, directory = %entry.directory, "ACME: ordering a certificate");
        let issued = order::obtain(&http, &account, &req)?;
        Ok((issued.chain_pem, issued.key.pem()))
    })();
    let now = crate::tls::unix_now();
    match result {
        Ok((chain, key_pem)) => match take(tls, &entry.names, &chain, &key_pem, "ordered") {
            Ok(_) => {
                let n = pair::send(shared, &entry.names, &chain, &key_pem);
                tracing::info!(names = ?entry.names, peers = n, "ACME: certificate obtained");
                if let Ok(mut m) = statuses().lock() {
                    if let Some(st) = m.get_mut(&key) {
                        st.failures = 0;
                        st.last_error = None;
                        st.next_try = 0;
                    }
                }
            }
            Err(e) => fail(
                &key,
                entry,
                now,
                order::Failure {
                    message: e,
                    retry_after: None,
                    rate_limited: false,
                },
            ),
        },
        Err(f) => fail(&key, entry, now, f),
    }
}

fn fail(key: &str, entry: &Acme, now: i64, f: order::Failure) {
    let Ok(mut m) = statuses().lock() else {
        return;
    };
    let st = m.entry(key.to_string()).or_insert_with(|| Status {
        names: entry.names.clone(),
        ..Status::default()
    });
    st.failures += 1;
    let wait = backoff(st.failures, random_u32(), f.retry_after, f.rate_limited);
    st.next_try = now + wait;
    tracing::warn!(names = ?entry.names, error = %f.message, retry_in_s = wait, rate_limited = f.rate_limited, "ACME: order failed; keeping the certificate served");
    st.last_error = Some(f.message);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_at_two_thirds_and_backoff_with_jitter() {
        assert_eq!(renew_at(0, 90 * 86400), 60 * 86400);
        assert_eq!(backoff(1, 0, None, false), 10);
        assert_eq!(backoff(2, 0, None, false), 20);
        assert!(backoff(40, u32::MAX, None, false) <= MAX_BACKOFF * 5 / 4);
        assert!(backoff(1, 7, None, false) <= 12);
        // RFC 8555 §6.6: Retry-After is honoured; a rate limit waits longer.
        assert_eq!(backoff(1, 0, Some(120), false), 120);
        assert_eq!(backoff(1, 0, None, true), RATE_LIMIT_WAIT);
    }

    fn window(start: i64, end: i64) -> ari::Window {
        ari::Window {
            start,
            end,
            explanation: None,
        }
    }

    #[test]
    fn renewal_time_follows_the_suggested_window() {
        // RFC 9773 §4.2: a time in the window; §4.3.2: the next fetch after Retry-After.
        let mut st = Status {
            renew_at: 600,
            renew_from: "lifetime",
            ..Status::default()
        };
        apply_ari(
            &mut st,
            Ok(ari::Found::Window(window(400, 500), 3600)),
            600,
            100,
            7,
        );
        assert_eq!(
            (st.renew_at, st.renew_from, st.ari_next),
            (407, "ari", 3700)
        );
        // The same window again keeps the time picked.
        apply_ari(
            &mut st,
            Ok(ari::Found::Window(window(400, 500), 3600)),
            600,
            200,
            99,
        );
        assert_eq!(st.renew_at, 407);
        // A window moved earlier (a revocation coming) moves it.
        apply_ari(
            &mut st,
            Ok(ari::Found::Window(window(250, 260), 60)),
            600,
            200,
            3,
        );
        assert_eq!(st.renew_at, 253);
        // §4.2 step 3: a window already in the past means renew now.
        apply_ari(
            &mut st,
            Ok(ari::Found::Window(window(10, 20), 60)),
            600,
            300,
            0,
        );
        assert!(st.renew_at <= 300);
        // A window past expiry (900 here, lifetime 0..900) is cut to a
        // ninth of the lifetime before it.
        st.not_after = 900;
        let late = ari::Found::Window(window(950, 990), 60);
        apply_ari(&mut st, Ok(late), 600, 300, 0);
        assert_eq!(st.renew_at, 800);
    }

    #[test]
    fn without_renewal_information_two_thirds_of_the_lifetime() {
        let mut st = Status::default();
        // The server has no renewalInfo (pebble 2.4): the lifetime rule,
        // and the directory is asked again after six hours.
        apply_ari(&mut st, Ok(ari::Found::Unsupported), 600, 100, 7);
        assert_eq!((st.renew_at, st.renew_from), (600, "lifetime"));
        assert_eq!(st.ari_next, 100 + ari::LONG_TERM_RECHECK);
        // §4.3.3: temporary errors back off, then count as long-term.
        let temporary = || {
            Err(ari::FetchError {
                message: "HTTP 503".into(),
                temporary: true,
            })
        };
        let mut waits = Vec::new();
        for _ in 0..6 {
            apply_ari(&mut st, temporary(), 600, 0, 0);
            waits.push(st.ari_next);
        }
        assert_eq!(
            waits,
            [
                60,
                120,
                240,
                480,
                ari::LONG_TERM_RECHECK,
                ari::LONG_TERM_RECHECK
            ]
        );
        assert_eq!((st.renew_at, st.renew_from), (600, "lifetime"));
        // A failure after a window keeps the window's time.
        apply_ari(
            &mut st,
            Ok(ari::Found::Window(window(400, 500), 60)),
            600,
            0,
            0,
        );
        let long_term = Err(ari::FetchError {
            message: "HTTP 404".into(),
            temporary: false,
        });
        apply_ari(&mut st, long_term, 600, 0, 0);
        assert_eq!((st.renew_at, st.renew_from), (400, "ari"));
        assert_eq!(st.ari_next, ari::LONG_TERM_RECHECK);
        assert!(st.ari_note.as_deref().unwrap().starts_with("HTTP 404"));
    }

    #[test]
    fn file_names_stay_in_the_directory() {
        assert_eq!(stem(&["../x/a.test".into()]), ".._x_a.test");
        assert_eq!(stem(&["a.test".into()]), "a.test");
    }
}
