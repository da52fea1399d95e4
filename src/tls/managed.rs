//! Certificates floatlb obtains itself (ACME, the runtime's `acme` service) and the answers
//! to the ACME server's challenges, in one process-wide store the TLS
//! listener reads: the SNI resolver asks it before the file certificates,
//! a TLS-ALPN-01 handshake (RFC 8737) gets its challenge certificate, and
//! the cleartext listener answers HTTP-01 (RFC 8555 §8.3) from it.
//! Not for: obtaining certificates (the runtime's `acme` service) or file certificates.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwap;
use rustls::sign::CertifiedKey;

/// A certificate obtained by ACME, served for its names.
#[derive(Debug, Clone)]
pub struct Managed {
    /// Lower case.
    pub names: Vec<String>,
    pub key: Arc<CertifiedKey>,
    /// notAfter of the leaf, Unix seconds.
    pub not_after: i64,
    /// With `[tls] ocsp`: the key with its stapled OCSP response.
    pub stapled: Option<Arc<super::ocsp::Slot>>,
}

impl Managed {
    /// The key a handshake gets (with the staple, if any).
    fn get(&self) -> Arc<CertifiedKey> {
        match &self.stapled {
            Some(s) => s.key(),
            None => self.key.clone(),
        }
    }
}

#[derive(Default)]
struct Store {
    certs: ArcSwap<Vec<Managed>>,
    /// HTTP-01: token → key authorization.
    http01: Mutex<HashMap<String, String>>,
    /// TLS-ALPN-01: name → the challenge certificate.
    alpn: Mutex<HashMap<String, Arc<CertifiedKey>>>,
    /// Whether any challenge is open (read on every cleartext request).
    open: AtomicBool,
}

fn store() -> &'static Store {
    static S: OnceLock<Store> = OnceLock::new();
    S.get_or_init(Store::default)
}

/// Serves `m` from now on, in place of an earlier one with the same first name.
pub fn install(m: Managed) {
    let s = store();
    let mut list: Vec<Managed> = s.certs.load().as_ref().clone();
    list.retain(|o| o.names.first() != m.names.first());
    list.push(m);
    s.certs.store(Arc::new(list));
}

/// The managed certificates served now.
pub fn all() -> Arc<Vec<Managed>> {
    store().certs.load_full()
}

/// The managed certificate for `sni`, exact names before wildcards.
pub fn pick(sni: &str) -> Option<Arc<CertifiedKey>> {
    let list = store().certs.load();
    if list.is_empty() {
        return None;
    }
    for exact in [true, false] {
        for m in list.iter() {
            let hit = m.names.iter().any(|p| {
                if exact {
                    p.eq_ignore_ascii_case(sni)
                } else {
                    super::name_matches(p, sni)
                }
            });
            if hit {
                return Some(m.get());
            }
        }
    }
    None
}

/// Any managed certificate, for a handshake without SNI when there is no file one.
pub fn first() -> Option<Arc<CertifiedKey>> {
    store().certs.load().first().map(Managed::get)
}

fn reopen(s: &Store) {
    let open = s.http01.lock().map(|m| !m.is_empty()).unwrap_or(false)
        || s.alpn.lock().map(|m| !m.is_empty()).unwrap_or(false);
    s.open.store(open, Ordering::Release);
}

/// HTTP-01: answers `token` with `key_authorization` until [`close_http01`].
pub fn open_http01(token: &str, key_authorization: &str) {
    let s = store();
    if let Ok(mut m) = s.http01.lock() {
        m.insert(token.to_string(), key_authorization.to_string());
    }
    reopen(s);
}

pub fn close_http01(token: &str) {
    let s = store();
    if let Ok(mut m) = s.http01.lock() {
        m.remove(token);
    }
    reopen(s);
}

/// The prefix of HTTP-01 paths (RFC 8555 §8.3).
pub const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";

/// The key authorization for a request target under [`HTTP01_PREFIX`], if
/// a challenge for that token is open. Cheap when none is.
pub fn http01_answer(target: &str) -> Option<String> {
    let s = store();
    if !s.open.load(Ordering::Acquire) {
        return None;
    }
    let token = target.strip_prefix(HTTP01_PREFIX)?;
    s.http01.lock().ok()?.get(token).cloned()
}

/// TLS-ALPN-01: `cert` answers handshakes for `name` that offer only
/// `acme-tls/1`, until [`close_alpn`].
pub fn open_alpn(name: &str, cert: Arc<CertifiedKey>) {
    let s = store();
    if let Ok(mut m) = s.alpn.lock() {
        m.insert(name.to_ascii_lowercase(), cert);
    }
    reopen(s);
}

pub fn close_alpn(name: &str) {
    let s = store();
    if let Ok(mut m) = s.alpn.lock() {
        m.remove(&name.to_ascii_lowercase());
    }
    reopen(s);
}

/// The ALPN protocol of TLS-ALPN-01 (RFC 8737 §6.2).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The challenge certificate for a ClientHello offering `acme-tls/1` for `sni`.
pub fn alpn_answer(sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
    let s = store();
    if !s.open.load(Ordering::Acquire) {
        return None;
    }
    s.alpn.lock().ok()?.get(&sni?.to_ascii_lowercase()).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http01_answers_only_open_tokens() {
        // RFC 8555 §8.3: the token's key authorization at the well-known path.
        assert_eq!(http01_answer("/.well-known/acme-challenge/t1"), None);
        open_http01("t1", "t1.thumb");
        assert_eq!(
            http01_answer("/.well-known/acme-challenge/t1").as_deref(),
            Some("t1.thumb")
        );
        assert_eq!(http01_answer("/.well-known/acme-challenge/t2"), None);
        assert_eq!(http01_answer("/t1"), None);
        close_http01("t1");
        assert_eq!(http01_answer("/.well-known/acme-challenge/t1"), None);
    }
}
