//! One ACME conversation (RFC 8555 §7): the directory, nonces, the account,
//! an order for a certificate's names, each authorization's challenge
//! answered (HTTP-01 §8.3 or TLS-ALPN-01 RFC 8737 through
//! `crate::tls::managed`), the finalize with a CSR, the certificate's
//! download. Blocking; runs on the ACME thread.
//! Not for: when to order (`super`), or storing what comes back.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::http::{Answer, Client};
use super::jws::{b64, json_str, AccountKey};
use super::x509::{self, CertKey, KeyType};
use crate::tls::managed;

/// Why an order failed, and how long the server asked us to wait.
#[derive(Debug, Clone)]
pub struct Failure {
    pub message: String,
    /// From Retry-After, seconds.
    pub retry_after: Option<u64>,
    /// `urn:ietf:params:acme:error:rateLimited` (RFC 8555 §6.7).
    pub rate_limited: bool,
}

impl Failure {
    fn new(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            retry_after: None,
            rate_limited: false,
        }
    }
}

impl From<String> for Failure {
    fn from(s: String) -> Failure {
        Failure::new(s)
    }
}

/// The challenge types floatlb answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    Http01,
    TlsAlpn01,
}

impl Challenge {
    pub fn as_str(self) -> &'static str {
        match self {
            Challenge::Http01 => "http-01",
            Challenge::TlsAlpn01 => "tls-alpn-01",
        }
    }
}

/// What an order asks for.
pub struct Request<'a> {
    pub directory: &'a str,
    pub contact: &'a [String],
    pub names: &'a [String],
    pub key_type: KeyType,
    /// In order of preference.
    pub challenges: &'a [Challenge],
    /// The ARI CertID of the certificate this order replaces (RFC 9773
    /// §5); sent only when the directory offers `renewalInfo`.
    pub replaces: Option<&'a str>,
}

/// What a successful order gives.
pub struct Issued {
    /// The PEM chain, leaf first.
    pub chain_pem: String,
    pub key: CertKey,
}

struct Session<'a> {
    http: &'a Client,
    key: &'a AccountKey,
    new_nonce: String,
    nonce: Option<String>,
    kid: Option<String>,
}

fn json(a: &Answer) -> Result<Value, Failure> {
    serde_json::from_slice(&a.body).map_err(|e| Failure::new(format!("not JSON ({e})")))
}

/// An error answer as a [`Failure`]: the problem document's type and detail (RFC 7807).
fn problem(what: &str, a: &Answer) -> Failure {
    let doc: Value = serde_json::from_slice(&a.body).unwrap_or(Value::Null);
    let kind = doc["type"].as_str().unwrap_or("");
    let detail = doc["detail"].as_str().unwrap_or("");
    Failure {
        message: format!("{what}: HTTP {} {kind} {detail}", a.status),
        retry_after: a.header("retry-after").and_then(|v| v.parse().ok()),
        rate_limited: kind.ends_with(":rateLimited"),
    }
}

impl Session<'_> {
    fn nonce(&mut self) -> Result<String, Failure> {
        if let Some(n) = self.nonce.take() {
            return Ok(n);
        }
        let a = self.http.request("HEAD", &self.new_nonce, None)?;
        a.header("replay-nonce")
            .map(str::to_string)
            .ok_or_else(|| Failure::new("newNonce gave no Replay-Nonce"))
    }

    /// A signed POST (`payload` None: POST-as-GET); a badNonce is retried
    /// with the fresh nonce the error carries (RFC 8555 §6.5).
    fn post(&mut self, what: &str, url: &str, payload: Option<&str>) -> Result<Answer, Failure> {
        for _ in 0..5 {
            let nonce = self.nonce()?;
            let body = self.key.sign(url, &nonce, self.kid.as_deref(), payload)?;
            let a = self.http.request("POST", url, Some(body.as_bytes()))?;
            self.nonce = a.header("replay-nonce").map(str::to_string);
            if a.status < 300 {
                return Ok(a);
            }
            let p = problem(what, &a);
            if !p.message.contains(":badNonce") {
                return Err(p);
            }
        }
        Err(Failure::new(format!(
            "{what}: the server kept refusing our nonces"
        )))
    }

    /// POST-as-GET `url` until `done` says its status is final, polling at
    /// most `within`.
    fn poll(&mut self, what: &str, url: &str, within: Duration) -> Result<Value, Failure> {
        let start = Instant::now();
        loop {
            let a = self.post(what, url, None)?;
            let v = json(&a)?;
            let status = v["status"].as_str().unwrap_or("");
            if !matches!(status, "pending" | "processing") {
                return Ok(v);
            }
            if start.elapsed() > within {
                return Err(Failure::new(format!(
                    "{what}: still {status} after {within:?}"
                )));
            }
            let wait = a
                .header("retry-after")
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(1)
                .clamp(1, 10);
            std::thread::sleep(Duration::from_secs(wait));
        }
    }
}

/// A challenge answered for as long as this lives.
enum Published {
    Http(String),
    Alpn(String),
}

impl Drop for Published {
    fn drop(&mut self) {
        match self {
            Published::Http(token) => managed::close_http01(token),
            Published::Alpn(name) => managed::close_alpn(name),
        }
    }
}

/// The newOrder payload (RFC 8555 §7.4), with RFC 9773 §5's `replaces`.
fn new_order_payload(ids: &[String], replaces: Option<&str>) -> String {
    match replaces {
        Some(r) => format!(
            r#"{{"identifiers":[{}],"replaces":{}}}"#,
            ids.join(","),
            json_str(r)
        ),
        None => format!(r#"{{"identifiers":[{}]}}"#, ids.join(",")),
    }
}

/// Runs one order to its certificate.
pub fn obtain(http: &Client, key: &AccountKey, req: &Request<'_>) -> Result<Issued, Failure> {
    let dir = http.request("GET", req.directory, None)?;
    if dir.status != 200 {
        return Err(problem("directory", &dir));
    }
    let dir = json(&dir)?;
    let url = |k: &str| {
        dir[k]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| Failure::new(format!("the directory has no {k}")))
    };
    let mut s = Session {
        http,
        key,
        new_nonce: url("newNonce")?,
        nonce: None,
        kid: None,
    };
    // RFC 8555 §7.3: an account for this key (the existing one if there is).
    let contact: Vec<String> = req.contact.iter().map(|c| json_str(c)).collect();
    let payload = format!(
        r#"{{"termsOfServiceAgreed":true,"contact":[{}]}}"#,
        contact.join(",")
    );
    let acct = s.post("newAccount", &url("newAccount")?, Some(&payload))?;
    s.kid = Some(
        acct.header("location")
            .ok_or_else(|| Failure::new("newAccount gave no Location"))?
            .to_string(),
    );
    // §7.4: the order.
    let ids: Vec<String> = req
        .names
        .iter()
        .map(|n| format!(r#"{{"type":"dns","value":{}}}"#, json_str(n)))
        .collect();
    let new_order = url("newOrder")?;
    let replaces = req
        .replaces
        .filter(|_| super::ari::renewal_info_url(&dir).is_some());
    let a = match s.post(
        "newOrder",
        &new_order,
        Some(&new_order_payload(&ids, replaces)),
    ) {
        // RFC 9773 §5: a server may refuse a predecessor already replaced
        // (alreadyReplaced) or issued to another account (the pair's other
        // node ordered it with its own account key): neither is a reason to
        // stay without a certificate. A rate limit stays a rate limit.
        Err(f) if replaces.is_some() && !f.rate_limited => {
            tracing::info!(replaces, error = %f.message, "ACME: newOrder refused `replaces`; ordering without it");
            s.post("newOrder", &new_order, Some(&new_order_payload(&ids, None)))?
        }
        other => other?,
    };
    let order_url = a
        .header("location")
        .ok_or_else(|| Failure::new("newOrder gave no Location"))?
        .to_string();
    let order = json(&a)?;
    let authzs: Vec<String> = order["authorizations"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let finalize = order["finalize"]
        .as_str()
        .ok_or_else(|| Failure::new("the order has no finalize URL"))?
        .to_string();
    let thumbprint = key.thumbprint();
    // §7.5: each authorization, by the first challenge type we take.
    for authz_url in &authzs {
        let authz = json(&s.post("authorization", authz_url, None)?)?;
        if authz["status"] == "valid" {
            continue;
        }
        let name = authz["identifier"]["value"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let offered = authz["challenges"].as_array().cloned().unwrap_or_default();
        let picked = req.challenges.iter().find_map(|want| {
            offered
                .iter()
                .find(|c| c["type"] == want.as_str())
                .map(|c| (*want, c.clone()))
        });
        let Some((kind, ch)) = picked else {
            return Err(Failure::new(format!(
                "{name}: the server offers none of the configured challenge types"
            )));
        };
        let token = ch["token"].as_str().unwrap_or("").to_string();
        let ch_url = ch["url"].as_str().unwrap_or("").to_string();
        if token.is_empty()
            || !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(Failure::new(format!(
                "{name}: a challenge token that is not base64url"
            )));
        }
        let key_authorization = format!("{token}.{thumbprint}");
        let _published = match kind {
            Challenge::Http01 => {
                managed::open_http01(&token, &key_authorization);
                Published::Http(token.clone())
            }
            Challenge::TlsAlpn01 => {
                let cert = x509::alpn_challenge_cert(&name, &key_authorization)?;
                managed::open_alpn(&name, cert);
                Published::Alpn(name.clone())
            }
        };
        tracing::info!(name = %name, challenge = kind.as_str(), "ACME: answering a challenge");
        s.post("challenge", &ch_url, Some("{}"))?;
        let done = s.poll("authorization", authz_url, Duration::from_secs(90))?;
        if done["status"] != "valid" {
            let why = done["challenges"]
                .as_array()
                .and_then(|l| l.iter().find_map(|c| c["error"]["detail"].as_str()))
                .unwrap_or("no detail");
            return Err(Failure::new(format!(
                "{name}: {} validation failed: {why}",
                kind.as_str()
            )));
        }
    }
    // §7.4: finalize with a CSR for a new key, then the certificate.
    let cert_key = CertKey::generate(req.key_type)?;
    let csr = x509::csr(&cert_key, req.names)?;
    let payload = format!(r#"{{"csr":"{}"}}"#, b64(&csr));
    s.post("finalize", &finalize, Some(&payload))?;
    let order = s.poll("order", &order_url, Duration::from_secs(90))?;
    if order["status"] != "valid" {
        return Err(Failure::new(format!(
            "the order ended {}: {}",
            order["status"], order["error"]["detail"]
        )));
    }
    let cert_url = order["certificate"]
        .as_str()
        .ok_or_else(|| Failure::new("a valid order without a certificate URL"))?
        .to_string();
    let a = s.post("certificate", &cert_url, None)?;
    let chain_pem =
        String::from_utf8(a.body).map_err(|_| Failure::new("the certificate is not PEM"))?;
    Ok(Issued {
        chain_pem,
        key: cert_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_order_names_the_certificate_it_replaces() {
        // RFC 9773 §5's example: the predecessor's CertID in `replaces`.
        let ids = vec![r#"{"type":"dns","value":"acme.example.com"}"#.to_string()];
        let with: Value = serde_json::from_str(&new_order_payload(
            &ids,
            Some("aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"),
        ))
        .unwrap();
        assert_eq!(with["replaces"], "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE");
        assert_eq!(with["identifiers"][0]["value"], "acme.example.com");
        let without: Value = serde_json::from_str(&new_order_payload(&ids, None)).unwrap();
        assert!(without.get("replaces").is_none());
    }
}
