//! Client certificates on the TLS listeners (`[tls] client-ca`,
//! `client-auth`): the rustls verifier that checks them against the
//! operator's CA file, the identity read from a verified one (its RFC 4514
//! subject and SHA-256 fingerprint), and the header names the operator
//! chose to pass that identity to backends under (the edits themselves are
//! the client side's, `frontend/client_cert.rs`).
//! Not for: the handshake itself (`frontend::handshake`) or routing.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

/// Whether a client must present a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A certificate is asked for; a client without one is served, one with
    /// a bad one is refused in the handshake.
    Optional,
    /// A client without a valid certificate is refused in the handshake.
    Required,
}

/// Reads the PEM CA bundle `ca` and builds the verifier for `mode`. The
/// handshake of a client whose certificate is missing (when required) or
/// does not chain to one of these CAs ends with a TLS alert
/// (`certificate_required`, `unknown_ca`, `bad_certificate`, ...).
pub fn verifier(
    ca: &Path,
    mode: Mode,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let pem = std::fs::read(ca).map_err(|e| format!("cannot read {}: {e}", ca.display()))?;
    let mut roots = RootCertStore::empty();
    let mut n = 0;
    for c in CertificateDer::pem_slice_iter(&pem) {
        let c = c.map_err(|e| format!("{}: not a PEM certificate: {e}", ca.display()))?;
        roots
            .add(c)
            .map_err(|e| format!("{}: unusable CA certificate: {e}", ca.display()))?;
        n += 1;
    }
    if n == 0 {
        return Err(format!("{}: holds no certificate", ca.display()));
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    let builder = match mode {
        Mode::Optional => builder.allow_unauthenticated(),
        Mode::Required => builder,
    };
    builder
        .build()
        .map_err(|e| format!("{}: {e}", ca.display()))
}

/// A verified client certificate, as backends are told of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The leaf's subject, RFC 4514 text (`CN=alice,O=Example`).
    pub subject: String,
    /// SHA-256 of the leaf's DER, lowercase hex.
    pub fingerprint: String,
}

impl Identity {
    /// The identity of a chain the handshake verified (leaf first); `None`
    /// without one.
    pub fn of(chain: Option<&[CertificateDer<'_>]>) -> Option<Identity> {
        let leaf = chain?.first()?;
        let subject = super::der::tbs(leaf)
            .and_then(|t| super::der::subject_text(t.subject))
            .unwrap_or_default();
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, leaf);
        Some(Identity {
            subject,
            fingerprint: hex(digest.as_ref()),
        })
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The header names backends learn a client's certificate under; the same
/// fields from clients are removed, on every listener.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    /// Lower case.
    pub subject: Option<String>,
    /// Lower case.
    pub fingerprint: Option<String>,
}

impl Headers {
    pub fn is_empty(&self) -> bool {
        self.subject.is_none() && self.fingerprint.is_none()
    }

    /// The header names, lower case.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.subject
            .iter()
            .chain(&self.fingerprint)
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn subject_text_follows_rfc4514() {
        // RFC 4514 §2.1: the last RDN first; §2.4: `,` `+` `"` `\` `<` `>` `;`
        // escaped, and a leading space or `#`; bytes outside ASCII as \XX.
        fn atv(oid: &[u8], value: &[u8]) -> Vec<u8> {
            let mut v = super::super::der::write(0x06, oid);
            v.extend(super::super::der::write(0x0c, value));
            super::super::der::write(0x31, &super::super::der::write(0x30, &v))
        }
        let mut rdns = atv(&[0x55, 0x04, 0x0a], b"Example, Inc");
        rdns.extend(atv(&[0x55, 0x04, 0x03], " al\u{e9}\r\n".as_bytes()));
        assert_eq!(
            super::super::der::subject_text(&rdns).unwrap(),
            "CN=\\ al\\C3\\A9\\0D\\0A,O=Example\\, Inc"
        );
        assert!(super::super::der::subject_text(&[0x31, 0x05, 0x30]).is_none());
    }
}
