//! Certificate material for the `[tls]` listener: PEM certificates and keys
//! read and checked (the key matches, the names are covered, the expiry is
//! known), the SNI lookup that picks one, the session-ticket keys, and the
//! rustls server config built from them. Sans-IO apart from reading files.
//! Not for: handshakes or what is spoken after them (`frontend::handshake`).

pub mod client;
pub mod client_auth;
pub mod client_hello;
pub(crate) mod der;
pub mod managed;
pub mod ocsp;
pub mod tickets;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

/// A certificate chain with its key, checked.
#[derive(Debug)]
pub struct Loaded {
    pub key: Arc<CertifiedKey>,
    /// The names SNI picks it for: the configured ones, else the
    /// certificate's DNS names (lowercase; `*.` wildcards allowed).
    pub names: Vec<String>,
    /// notAfter of the leaf, Unix seconds.
    pub not_after: i64,
    pub cert_file: PathBuf,
    /// With `[tls] ocsp`: the key with its stapled OCSP response.
    pub stapled: Option<Arc<ocsp::Slot>>,
}

/// Reads `cert` (PEM chain, leaf first) and `key` (PEM private key) and checks
/// them: both readable and parseable, the key belongs to the leaf, and each of
/// `names` is covered by the leaf's subjectAltName DNS names. The error names
/// the file and the problem.
pub fn load_pair(cert: &Path, key: &Path, names: &[String]) -> Result<Loaded, String> {
    let pem = std::fs::read(cert).map_err(|e| format!("cannot read {}: {e}", cert.display()))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: not a PEM certificate chain: {e}", cert.display()))?;
    let Some(leaf) = chain.first() else {
        return Err(format!("{}: holds no certificate", cert.display()));
    };
    let info = der::leaf_info(leaf)
        .ok_or_else(|| format!("{}: the certificate cannot be parsed", cert.display()))?;
    let pem = std::fs::read(key).map_err(|e| format!("cannot read {}: {e}", key.display()))?;
    let der = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| format!("{}: no PEM private key: {e}", key.display()))?;
    let signing = rustls::crypto::aws_lc_rs::sign::any_supported_type(&der).map_err(|e| {
        format!(
            "{}: unsupported private key (RSA, ECDSA P-256/P-384 or Ed25519): {e}",
            key.display()
        )
    })?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|_| {
        format!(
            "{}: the key does not match the certificate {}",
            key.display(),
            cert.display()
        )
    })?;
    let mut own: Vec<String> = info.dns_names.iter().map(|n| n.to_lowercase()).collect();
    own.dedup();
    for n in names {
        if !own.iter().any(|pattern| name_matches(pattern, n)) {
            return Err(format!(
                "{}: the certificate is not valid for {n:?} (it names {})",
                cert.display(),
                if own.is_empty() {
                    "no DNS name".to_string()
                } else {
                    own.join(", ")
                }
            ));
        }
    }
    let names = if names.is_empty() {
        own
    } else {
        names.iter().map(|n| n.to_lowercase()).collect()
    };
    Ok(Loaded {
        key: Arc::new(certified),
        names,
        not_after: info.not_after,
        cert_file: cert.to_owned(),
        stapled: None,
    })
}

/// Whether `pattern` (a DNS name, maybe `*.` + domain) covers `name`; a
/// wildcard stands for exactly one label (RFC 6125 §6.4.3).
pub fn name_matches(pattern: &str, name: &str) -> bool {
    let name = name.trim_end_matches('.');
    if pattern.eq_ignore_ascii_case(name) {
        return true;
    }
    match (pattern.strip_prefix("*."), name.split_once('.')) {
        (Some(domain), Some((label, rest))) => {
            !label.is_empty() && domain.eq_ignore_ascii_case(rest)
        }
        _ => false,
    }
}

/// Picks a certificate by the ClientHello's server name; the first is the
/// default (no SNI, or a name none covers).
#[derive(Debug)]
pub struct SniResolver {
    certs: Vec<(Vec<String>, Key)>,
}

/// A certificate as the resolver holds it: fixed, or with a staple that changes.
#[derive(Debug)]
enum Key {
    Fixed(Arc<CertifiedKey>),
    Stapled(Arc<ocsp::Slot>),
}

impl Key {
    fn get(&self) -> Arc<CertifiedKey> {
        match self {
            Key::Fixed(k) => k.clone(),
            Key::Stapled(s) => s.key(),
        }
    }
}

impl SniResolver {
    pub fn new(loaded: &[Loaded]) -> Self {
        SniResolver {
            certs: loaded
                .iter()
                .map(|l| {
                    let key = match &l.stapled {
                        Some(s) => Key::Stapled(s.clone()),
                        None => Key::Fixed(l.key.clone()),
                    };
                    (l.names.clone(), key)
                })
                .collect(),
        }
    }

    /// The certificate for `sni`.
    pub fn pick(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        if let Some(sni) = sni {
            // Exact names first, so a wildcard does not shadow a name of its own.
            for exact in [true, false] {
                for (names, key) in &self.certs {
                    let hit = names.iter().any(|p| {
                        if exact {
                            p.eq_ignore_ascii_case(sni)
                        } else {
                            name_matches(p, sni)
                        }
                    });
                    if hit {
                        return Some(key.get());
                    }
                }
            }
        }
        self.certs.first().map(|(_, k)| k.get())
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // RFC 8737 §3: a TLS-ALPN-01 validation gets its challenge certificate.
        if let Some(mut offered) = hello.alpn() {
            if offered.any(|p| p == managed::ACME_TLS_ALPN) {
                return managed::alpn_answer(hello.server_name());
            }
        }
        if let Some(k) = hello.server_name().and_then(managed::pick) {
            return Some(k);
        }
        self.pick(hello.server_name()).or_else(managed::first)
    }
}

/// The suites (AEAD only, ECDHE only: what Mozilla's "intermediate" profile
/// allows) in the order the server picks from: AES-128-GCM first in each
/// version, as in Mozilla's lists. OpenSSL clients list AES-256-GCM first,
/// whose TLS 1.3 suite runs its key schedule on SHA-384; SHA-256 runs on the
/// CPU's SHA extensions, SHA-512 has none (with ring on an AMD CPU, following
/// the client's order cost a resumed handshake 12% of its CPU: see
/// docs/performance.md).
fn cipher_suites() -> Vec<rustls::SupportedCipherSuite> {
    use rustls::crypto::aws_lc_rs::cipher_suite as cs;
    vec![
        cs::TLS13_AES_128_GCM_SHA256,
        cs::TLS13_AES_256_GCM_SHA384,
        cs::TLS13_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ]
}

/// The provider the listeners' configs use: aws-lc-rs with [`cipher_suites`].
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::CryptoProvider {
        cipher_suites: cipher_suites(),
        ..rustls::crypto::aws_lc_rs::default_provider()
    })
}

/// The rustls server config: TLS 1.3 and 1.2 with [`cipher_suites`] in the
/// server's order, the SNI resolver, `alpn` in order, and session tickets
/// from `ticketer`.
pub fn server_config(
    loaded: &[Loaded],
    alpn: &[String],
    ticketer: Arc<dyn rustls::server::ProducesTickets>,
) -> Result<Arc<ServerConfig>, String> {
    server_config_with(loaded, alpn, ticketer, None)
}

/// [`server_config`], with client certificates checked by `client` if given.
pub fn server_config_with(
    loaded: &[Loaded],
    alpn: &[String],
    ticketer: Arc<dyn rustls::server::ProducesTickets>,
    client: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
) -> Result<Arc<ServerConfig>, String> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS versions: {e}"))?;
    let builder = match client {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder.with_cert_resolver(Arc::new(SniResolver::new(loaded)));
    cfg.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    // Every suite offered is strong; the cheapest one wins.
    cfg.ignore_client_order = true;
    cfg.ticketer = ticketer;
    // Session IDs (TLS 1.2 without tickets) stay per process.
    cfg.session_storage = rustls::server::ServerSessionMemoryCache::new(4096);
    Ok(Arc::new(cfg))
}

/// Everything the TLS listener needs from one load of the config.
pub struct Material {
    pub server_config: Arc<ServerConfig>,
    /// (a name for the metric, certificate file, notAfter Unix seconds).
    pub expiry: Vec<(String, PathBuf, i64)>,
    /// Things `floatlb check` should say but that do not stop a load.
    pub warnings: Vec<String>,
    /// The fields a client certificate's identity is passed in (`[tls]
    /// client-subject-header`, `client-fingerprint-header`).
    pub client_headers: client_auth::Headers,
}

impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Material")
            .field("expiry", &self.expiry)
            .field("warnings", &self.warnings)
            .finish_non_exhaustive()
    }
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Warn this long before a certificate expires.
pub const EXPIRY_WARNING_SECS: i64 = 14 * 86400;

impl Material {
    /// Builds the server config from checked certificates; `now` is Unix seconds.
    pub fn new(
        loaded: &[Loaded],
        alpn: &[String],
        ticketer: Arc<dyn rustls::server::ProducesTickets>,
        now: i64,
        client: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
    ) -> Result<Material, String> {
        let server_config = server_config_with(loaded, alpn, ticketer, client)?;
        let mut warnings = Vec::new();
        let mut expiry = Vec::new();
        for l in loaded {
            let name = l
                .names
                .first()
                .cloned()
                .unwrap_or_else(|| l.cert_file.display().to_string());
            let left = l.not_after - now;
            if left <= 0 {
                warnings.push(format!(
                    "{}: the certificate for {name} has expired",
                    l.cert_file.display()
                ));
            } else if left < EXPIRY_WARNING_SECS {
                warnings.push(format!(
                    "{}: the certificate for {name} expires in {} days",
                    l.cert_file.display(),
                    left / 86400
                ));
            }
            expiry.push((name, l.cert_file.clone(), l.not_after));
        }
        Ok(Material {
            server_config,
            expiry,
            warnings,
            client_headers: client_auth::Headers::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_cover_one_label() {
        // RFC 6125 §6.4.3: the wildcard is the whole left-most label.
        assert!(name_matches("*.example.test", "a.example.test"));
        assert!(!name_matches("*.example.test", "a.b.example.test"));
        assert!(!name_matches("*.example.test", "example.test"));
        assert!(name_matches("Example.TEST", "example.test."));
        assert!(!name_matches("a.example.test", "b.example.test"));
    }
}
