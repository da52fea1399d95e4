//! TLS towards backends: the rustls client configs of a pool's `tls` table
//! (the CA to verify against, or the system store; a client certificate for
//! mTLS; session resumption), read once when the config is loaded.
//!
//! Not for: the connection itself (the `backend` layer's `stream.rs`) or the listener's
//! server side (the rest of `crate::tls`).

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// Where Debian (and most distributions) keep the system's trusted roots.
pub const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Sessions to backends remembered for resumption, per pool.
const RESUMPTION_CACHE: usize = 256;

/// What a pool's `tls` table comes to: one client config per ALPN offer.
#[derive(Debug)]
pub struct TlsClient {
    /// ALPN `http/1.1` only.
    pub http1: Arc<ClientConfig>,
    /// ALPN `h2`, then `http/1.1` (a backend that does not speak h2 is
    /// spoken to in HTTP/1.1).
    pub h2: Arc<ClientConfig>,
    /// The name sent in SNI and verified; None: the request's Host, or the
    /// backend's address.
    pub server_name: Option<ServerName<'static>>,
}

/// What [`TlsClient::load`] needs from the table.
pub struct Settings<'a> {
    pub ca: Option<&'a Path>,
    pub server_name: Option<&'a str>,
    pub cert: Option<&'a Path>,
    pub key: Option<&'a Path>,
    pub verify: bool,
}

impl TlsClient {
    /// Reads the files the table names and builds the configs; the error
    /// names the file and what is wrong with it.
    pub fn load(s: &Settings<'_>) -> Result<TlsClient, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let builder = if s.verify {
            let ca = s.ca.unwrap_or(Path::new(SYSTEM_ROOTS));
            builder.with_root_certificates(roots(ca)?)
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
        };
        let mut config = match (s.cert, s.key) {
            (Some(cert), Some(key)) => {
                let chain = read_chain(cert)?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| format!("{}: not a PEM private key: {e}", key.display()))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("{}: {e}", cert.display()))?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => return Err("cert and key go together".into()),
        };
        config.resumption = rustls::client::Resumption::in_memory_sessions(RESUMPTION_CACHE);
        let server_name = match s.server_name {
            Some(n) => Some(
                ServerName::try_from(n.to_string())
                    .map_err(|_| format!("server-name {n:?} is not a DNS name or address"))?,
            ),
            None => None,
        };
        let mut http1 = config.clone();
        http1.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsClient {
            http1: Arc::new(http1),
            h2: Arc::new(config),
            server_name,
        })
    }
}

fn read_chain(file: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: not PEM certificates: {e}", file.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: holds no certificate", file.display()));
    }
    Ok(chain)
}

fn roots(file: &Path) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    let (added, _ignored) = store.add_parsable_certificates(read_chain(file)?);
    if added == 0 {
        return Err(format!(
            "{}: holds no usable CA certificate",
            file.display()
        ));
    }
    Ok(store)
}

/// `verify = false` (HAProxy's `verify none`): any certificate is taken; the
/// handshake's signatures are still checked, so the session is the backend's.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_empty_files_are_named() {
        let s = |ca| Settings {
            ca: Some(ca),
            server_name: None,
            cert: None,
            key: None,
            verify: true,
        };
        let e = TlsClient::load(&s(Path::new("/nonexistent/ca.pem"))).unwrap_err();
        assert!(e.contains("cannot read /nonexistent/ca.pem"), "{e}");
        let empty = tempfile::NamedTempFile::new().unwrap();
        let e = TlsClient::load(&s(empty.path())).unwrap_err();
        assert!(e.contains("holds no certificate"), "{e}");
        // Not verifying needs no CA file at all.
        let none = Settings {
            verify: false,
            ..s(Path::new("/nonexistent/ca.pem"))
        };
        let c = TlsClient::load(&none).unwrap();
        assert_eq!(c.h2.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
        assert_eq!(c.http1.alpn_protocols, [b"http/1.1".to_vec()]);
    }
}
