//! Client certificates on the TLS listeners (`[tls] client-ca`,
//! `client-auth`, and each `[[listen]]`'s own): the rustls verifier that
//! checks them against the operator's CA file, session tickets bound to a
//! listener's policy (so a session resumed on a listener that requires a
//! certificate had one verified under that policy), the identity read from
//! a verified one (its RFC 4514 subject and SHA-256 fingerprint), and the
//! header names the operator chose to pass that identity to backends under
//! (the edits themselves are the client side's, `frontend/client_cert.rs`).
//! Not for: the handshake itself (`frontend::handshake`) or routing.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

/// Whether a client must present a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

/// A listener's client-certificate policy: `None` asks for no certificate.
pub type Policy<'a> = Option<(Mode, &'a Path)>;

/// Eight bytes naming a policy: its mode, CA file name and contents.
pub fn policy_tag(policy: Policy<'_>) -> [u8; 8] {
    let mut input = Vec::new();
    match policy {
        None => input.extend_from_slice(b"none"),
        Some((mode, ca)) => {
            input.extend_from_slice(match mode {
                Mode::Optional => b"optional\0",
                Mode::Required => b"required\0",
            });
            input.extend_from_slice(ca.as_os_str().as_encoded_bytes());
            input.push(0);
            input.extend(std::fs::read(ca).unwrap_or_default());
        }
    }
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &input);
    let mut tag = [0u8; 8];
    tag.copy_from_slice(&d.as_ref()[..8]);
    tag
}

/// Session tickets that resume only under the policy they were issued
/// under. rustls restores a resumed session's client certificate from the
/// ticket and asks for none: without this, a ticket from a listener that
/// asks for no certificate would open a session, without one, on a listener
/// that requires one (the listeners share the ticket keys, and the pair
/// shares them too).
#[derive(Debug)]
pub struct BoundTickets {
    inner: Arc<dyn rustls::server::ProducesTickets>,
    tag: [u8; 8],
}

impl BoundTickets {
    pub fn new(inner: Arc<dyn rustls::server::ProducesTickets>, tag: [u8; 8]) -> Arc<Self> {
        Arc::new(BoundTickets { inner, tag })
    }
}

impl rustls::server::ProducesTickets for BoundTickets {
    fn enabled(&self) -> bool {
        self.inner.enabled()
    }

    fn lifetime(&self) -> u32 {
        self.inner.lifetime()
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let mut tagged = Vec::with_capacity(self.tag.len() + plain.len());
        tagged.extend_from_slice(&self.tag);
        tagged.extend_from_slice(plain);
        self.inner.encrypt(&tagged)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        let plain = self.inner.decrypt(cipher)?;
        plain.strip_prefix(&self.tag[..]).map(<[u8]>::to_vec)
    }
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
    use std::sync::Arc;

    use rustls::server::ProducesTickets;

    #[test]
    fn tickets_resume_only_under_their_policy() {
        let keys = crate::tls::tickets::per_process().unwrap();
        let ca = std::path::Path::new("/nonexistent/ca.pem");
        let open = super::BoundTickets::new(keys.clone(), super::policy_tag(None));
        let strict = super::BoundTickets::new(
            keys.clone(),
            super::policy_tag(Some((super::Mode::Required, ca))),
        );
        let lax = super::policy_tag(Some((super::Mode::Optional, ca)));
        assert_ne!(lax, super::policy_tag(Some((super::Mode::Required, ca))));
        let t = open.encrypt(b"session").unwrap();
        assert_eq!(open.decrypt(&t).as_deref(), Some(&b"session"[..]));
        assert_eq!(strict.decrypt(&t), None);
        let t = strict.encrypt(b"session").unwrap();
        assert_eq!(strict.decrypt(&t).as_deref(), Some(&b"session"[..]));
        assert_eq!(open.decrypt(&t), None);
        let _: Arc<dyn ProducesTickets> = strict;
    }

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
