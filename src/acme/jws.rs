//! The ACME account key and the JWS requests signed with it (RFC 8555 §6.2,
//! RFC 7515 flattened JSON, ES256), its JWK and thumbprint (RFC 7638) for
//! key authorizations. Sans-IO.
//! Not for: the certificate's own key (`super::x509`).

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::Engine;

/// base64url without padding (RFC 7515 §2).
pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An ES256 account key.
pub struct AccountKey {
    pair: EcdsaKeyPair,
    /// PKCS#8 DER, as kept in the state directory.
    pub pkcs8: Vec<u8>,
}

impl AccountKey {
    pub fn generate() -> Result<AccountKey, String> {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| "cannot generate a P-256 key")?;
        Self::from_pkcs8(doc.as_ref())
    }

    pub fn from_pkcs8(der: &[u8]) -> Result<AccountKey, String> {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
            .map_err(|e| format!("not a P-256 PKCS#8 key: {e}"))?;
        Ok(AccountKey {
            pair,
            pkcs8: der.to_vec(),
        })
    }

    /// The public JWK, members in RFC 7638's order (so it is also the
    /// thumbprint's input).
    pub fn jwk(&self) -> String {
        let point = self.pair.public_key().as_ref();
        // Uncompressed: 0x04 | X (32) | Y (32).
        let (x, y) = point[1..].split_at(32);
        format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            b64(x),
            b64(y)
        )
    }

    /// RFC 7638 thumbprint, base64url.
    pub fn thumbprint(&self) -> String {
        b64(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, self.jwk().as_bytes()).as_ref())
    }

    /// A JWS for `url` carrying `payload` (`None`: POST-as-GET, RFC 8555
    /// §6.3), identified by `kid` or, before there is an account, the JWK.
    pub fn sign(
        &self,
        url: &str,
        nonce: &str,
        kid: Option<&str>,
        payload: Option<&str>,
    ) -> Result<String, String> {
        let who = match kid {
            Some(k) => format!(r#""kid":{}"#, json_str(k)),
            None => format!(r#""jwk":{}"#, self.jwk()),
        };
        let protected = format!(
            r#"{{"alg":"ES256",{who},"nonce":{},"url":{}}}"#,
            json_str(nonce),
            json_str(url)
        );
        let protected = b64(protected.as_bytes());
        let payload = payload.map(|p| b64(p.as_bytes())).unwrap_or_default();
        let input = format!("{protected}.{payload}");
        let sig = self
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .map_err(|_| "signing failed")?;
        Ok(format!(
            r#"{{"protected":"{protected}","payload":"{payload}","signature":"{}"}}"#,
            b64(sig.as_ref())
        ))
    }
}

/// A JSON string literal.
pub fn json_str(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jws_is_flattened_json_with_a_verifiable_es256_signature() {
        // RFC 7515 §7.2.2 flattened syntax; RFC 8555 §6.2: alg, nonce, url, jwk|kid.
        let k = AccountKey::generate().unwrap();
        let jws = k
            .sign("https://ca/new-acct", "n1", None, Some("{}"))
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&jws).unwrap();
        let protected = v["protected"].as_str().unwrap();
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(protected)
            .unwrap();
        let header: serde_json::Value = serde_json::from_slice(&header).unwrap();
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["url"], "https://ca/new-acct");
        assert_eq!(header["jwk"]["crv"], "P-256");
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(v["signature"].as_str().unwrap())
            .unwrap();
        let msg = format!("{protected}.{}", v["payload"].as_str().unwrap());
        let public = aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
            k.pair.public_key().as_ref(),
        );
        public.verify(msg.as_bytes(), &sig).unwrap();
        // RFC 7638 §3: 43 base64url characters of SHA-256.
        assert_eq!(k.thumbprint().len(), 43);
        let again = AccountKey::from_pkcs8(&k.pkcs8).unwrap();
        assert_eq!(again.thumbprint(), k.thumbprint());
    }
}
