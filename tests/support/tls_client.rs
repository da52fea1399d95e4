//! A rustls client config for tests that talk TLS to floatlb's listener with
//! a self-signed test certificate: encrypted, the handshake's signatures
//! checked, the certificate itself taken as it is (or only the one pinned).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// Takes any certificate, or only `pinned` when set (`openssl req -x509`
/// makes a CA, which webpki does not take as a server's certificate).
#[derive(Debug)]
struct AnyCert(
    Arc<rustls::crypto::CryptoProvider>,
    Option<CertificateDer<'static>>,
);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        cert: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.1 {
            Some(pinned) if pinned.as_ref() != cert.as_ref() => {
                Err(rustls::Error::General("not the test's certificate".into()))
            }
            _ => Ok(ServerCertVerified::assertion()),
        }
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A client config offering `alpn` that takes any server certificate.
pub fn any_cert_config(alpn: &[u8]) -> Arc<rustls::ClientConfig> {
    any_cert_config_for(alpn, rustls::DEFAULT_VERSIONS)
}

/// [`any_cert_config`] offering only `versions` (TLS 1.2 alone, say).
#[allow(dead_code)]
pub fn any_cert_config_for(
    alpn: &[u8],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    config(alpn, versions, None)
}

/// A client config offering `alpn` that takes only the certificate `pinned`.
#[allow(dead_code)]
pub fn pinned_cert_config(
    alpn: &[u8],
    pinned: CertificateDer<'static>,
) -> Arc<rustls::ClientConfig> {
    config(alpn, rustls::DEFAULT_VERSIONS, Some(pinned))
}

fn config(
    alpn: &[u8],
    versions: &[&'static rustls::SupportedProtocolVersion],
    pinned: Option<CertificateDer<'static>>,
) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider, pinned)))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(cfg)
}
