//! What an ACME client writes in DER: the certificate's key (ECDSA P-256 or
//! P-384, PKCS#8), its certificate signing request (PKCS#10, RFC 2986, the
//! names in a subjectAltName extension request, RFC 8555 §7.4), and the
//! self-signed TLS-ALPN-01 challenge certificate (RFC 8737 §3). Sans-IO.
//! Not for: reading certificates (`crate::tls::der`).

use std::sync::Arc;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{
    EcdsaKeyPair, EcdsaSigningAlgorithm, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING,
    ECDSA_P384_SHA384_ASN1_SIGNING,
};
use base64::Engine;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;

use crate::tls::der::write;

/// The certificate key's type (`[[tls.acme]] key-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    P256,
    P384,
}

impl KeyType {
    fn alg(self) -> &'static EcdsaSigningAlgorithm {
        match self {
            KeyType::P256 => &ECDSA_P256_SHA256_ASN1_SIGNING,
            KeyType::P384 => &ECDSA_P384_SHA384_ASN1_SIGNING,
        }
    }

    /// namedCurve OID (RFC 5480 §2.1.1.1), whole.
    fn curve(self) -> &'static [u8] {
        match self {
            KeyType::P256 => &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
            KeyType::P384 => &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22],
        }
    }

    /// ecdsa-with-SHA256 / SHA384 AlgorithmIdentifier (RFC 5758 §3.2), whole.
    fn sig_alg(self) -> Vec<u8> {
        let oid: &[u8] = match self {
            KeyType::P256 => &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02],
            KeyType::P384 => &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03],
        };
        write(0x30, &write(0x06, oid))
    }
}

/// An ECDSA key for a certificate.
pub struct CertKey {
    pub kind: KeyType,
    pair: EcdsaKeyPair,
    /// PKCS#8 DER.
    pub pkcs8: Vec<u8>,
}

impl CertKey {
    pub fn generate(kind: KeyType) -> Result<CertKey, String> {
        let doc = EcdsaKeyPair::generate_pkcs8(kind.alg(), &SystemRandom::new())
            .map_err(|_| "cannot generate a key")?;
        let pair = EcdsaKeyPair::from_pkcs8(kind.alg(), doc.as_ref()).map_err(|e| e.to_string())?;
        Ok(CertKey {
            kind,
            pair,
            pkcs8: doc.as_ref().to_vec(),
        })
    }

    /// subjectPublicKeyInfo, whole (RFC 5480 §2).
    fn spki(&self) -> Vec<u8> {
        let mut alg = write(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]);
        alg.extend_from_slice(self.kind.curve());
        let mut bits = vec![0];
        bits.extend_from_slice(self.pair.public_key().as_ref());
        let mut spki = write(0x30, &alg);
        spki.extend(write(0x03, &bits));
        write(0x30, &spki)
    }

    /// `tbs` signed: SEQUENCE { tbs, algorithm, BIT STRING signature }.
    fn signed(&self, tbs: Vec<u8>) -> Result<Vec<u8>, String> {
        let sig = self
            .pair
            .sign(&SystemRandom::new(), &tbs)
            .map_err(|_| "signing failed")?;
        let mut bits = vec![0];
        bits.extend_from_slice(sig.as_ref());
        let mut body = tbs;
        body.extend(self.kind.sig_alg());
        body.extend(write(0x03, &bits));
        Ok(write(0x30, &body))
    }

    /// The key as a PEM `PRIVATE KEY`.
    pub fn pem(&self) -> String {
        pem("PRIVATE KEY", &self.pkcs8)
    }

    /// A rustls key for `chain`.
    pub fn certified(
        &self,
        chain: Vec<CertificateDer<'static>>,
    ) -> Result<Arc<CertifiedKey>, String> {
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.pkcs8.clone()));
        let signing = rustls::crypto::aws_lc_rs::sign::any_supported_type(&der)
            .map_err(|e| format!("key: {e}"))?;
        Ok(Arc::new(CertifiedKey::new(chain, signing)))
    }
}

/// PEM text of `der` under `label` (RFC 7468).
pub fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A Name with one CN.
fn cn_name(cn: &str) -> Vec<u8> {
    let mut atv = write(0x06, &[0x55, 0x04, 0x03]);
    atv.extend(write(0x0c, cn.as_bytes()));
    write(0x30, &write(0x31, &write(0x30, &atv)))
}

/// A subjectAltName extension with `names` as dNSNames, whole.
fn san(names: &[String]) -> Vec<u8> {
    let list: Vec<u8> = names
        .iter()
        .flat_map(|n| write(0x82, n.as_bytes()))
        .collect();
    let mut ext = write(0x06, &[0x55, 0x1d, 0x11]);
    ext.extend(write(0x04, &write(0x30, &list)));
    write(0x30, &ext)
}

/// The DER CSR for `names` (the first is also the CN), signed by `key`.
pub fn csr(key: &CertKey, names: &[String]) -> Result<Vec<u8>, String> {
    let first = names.first().ok_or("no name")?;
    // extensionRequest (PKCS#9, 1.2.840.113549.1.9.14) with the SAN.
    let mut attr = write(
        0x06,
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x0e],
    );
    attr.extend(write(0x31, &write(0x30, &san(names))));
    let mut info = write(0x02, &[0]);
    info.extend(cn_name(first));
    info.extend(key.spki());
    info.extend(write(0xa0, &write(0x30, &attr)));
    key.signed(write(0x30, &info))
}

/// The TLS-ALPN-01 certificate for `name` (RFC 8737 §3): self-signed, the
/// name in its subjectAltName, and the critical acmeIdentifier extension
/// holding SHA-256 of the key authorization.
pub fn alpn_challenge_cert(
    name: &str,
    key_authorization: &str,
) -> Result<Arc<CertifiedKey>, String> {
    let key = CertKey::generate(KeyType::P256)?;
    let mut serial = [0u8; 8];
    SystemRandom::new()
        .fill(&mut serial)
        .map_err(|_| "no randomness")?;
    serial[0] &= 0x7f;
    serial[0] |= 0x01;
    let digest =
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key_authorization.as_bytes());
    // id-pe-acmeIdentifier, 1.3.6.1.5.5.7.1.31, critical.
    let mut acme = write(0x06, &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x1f]);
    acme.extend([0x01, 0x01, 0xff]);
    acme.extend(write(0x04, &write(0x04, digest.as_ref())));
    let mut exts = san(&[name.to_string()]);
    exts.extend(write(0x30, &acme));
    let mut validity = write(0x17, b"250101000000Z");
    validity.extend(write(0x17, b"491231235959Z"));
    let mut tbs = vec![0xa0, 0x03, 0x02, 0x01, 0x02];
    tbs.extend(write(0x02, &serial));
    tbs.extend(key.kind.sig_alg());
    tbs.extend(cn_name(name));
    tbs.extend(write(0x30, &validity));
    tbs.extend(cn_name(name));
    tbs.extend(key.spki());
    tbs.extend(write(0xa3, &write(0x30, &exts)));
    let cert = key.signed(write(0x30, &tbs))?;
    key.certified(vec![CertificateDer::from(cert)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csr_and_challenge_cert_parse() {
        // RFC 2986 §4; RFC 8737 §3: the SAN names exactly the identifier.
        let k = CertKey::generate(KeyType::P256).unwrap();
        let der = csr(&k, &["a.test".into(), "b.test".into()]).unwrap();
        assert_eq!(der[0], 0x30);
        assert!(crate::tls::der::element(&der).is_some_and(|(_, _, rest)| rest.is_empty()));
        let c = alpn_challenge_cert("a.test", "tok.thumb").unwrap();
        let info = crate::tls::der::leaf_info(&c.cert[0]).unwrap();
        assert_eq!(info.dns_names, vec!["a.test".to_string()]);
        // The acmeIdentifier extension (critical: webpki would refuse the
        // certificate, which only the ACME server's validator reads) holds
        // an OCTET STRING of SHA-256 of the key authorization.
        let t = crate::tls::der::tbs(&c.cert[0]).unwrap();
        let (_, value) = t
            .extensions
            .iter()
            .find(|(oid, _)| *oid == [0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x1f])
            .unwrap();
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b"tok.thumb");
        assert_eq!(value[..2], [0x04, 0x20]);
        assert_eq!(&value[2..], digest.as_ref());
        let k = CertKey::generate(KeyType::P384).unwrap();
        assert!(k.pem().starts_with("-----BEGIN PRIVATE KEY-----\n"));
    }
}
