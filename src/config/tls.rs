//! `[tls]`: the HTTPS listener's table, and the loading of the files it names
//! (certificates, keys, ticket keys) into `crate::tls` material.
//!
//! Not for: certificate selection (`src/tls/`) or the handshake
//! (`src/frontend/handshake.rs`); this file only reads the table and the files.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::values::Problems;

/// `[tls]`: the HTTPS listener (see `docs/configuration.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Tls {
    /// May be a VIP this node does not hold yet (bound with IP_FREEBIND). Read at start.
    pub address: SocketAddr,
    /// SNI picks one; the first is the default.
    #[serde(rename = "certificate", default)]
    pub certificates: Vec<TlsCertificate>,
    /// ALPN protocols offered, in order of preference.
    #[serde(default = "default_alpn")]
    pub alpn: Vec<String>,
    /// Cleartext requests on `[listen]` get a 308 to https.
    #[serde(default)]
    pub redirect_http: bool,
    /// Strict-Transport-Security max-age in seconds on HTTPS answers; 0 = none.
    #[serde(default)]
    pub hsts: u64,
    /// Session-ticket keys shared by the pair (HAProxy's tls-ticket-keys format).
    #[serde(default)]
    pub ticket_keys: Option<PathBuf>,
    /// A PEM bundle of the CAs client certificates must chain to; with it,
    /// the TLS listeners ask clients for a certificate (a `[[listen]]` may
    /// name its own, or set `client-auth = "none"`).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// `none`, `optional` or `required` (the default with `client-ca`); each
    /// TLS `[[listen]]`'s default.
    #[serde(default)]
    pub client_auth: Option<ClientAuth>,
    /// The field a verified client certificate's subject reaches backends in.
    #[serde(default)]
    pub client_subject_header: Option<String>,
    /// The field its SHA-256 fingerprint (hex) reaches backends in.
    #[serde(default)]
    pub client_fingerprint_header: Option<String>,
    /// Certificates floatlb obtains and renews itself (RFC 8555).
    #[serde(default)]
    pub acme: Vec<Acme>,
    /// Where the ACME account key and certificates are kept (mode 0700).
    #[serde(default = "default_acme_state")]
    pub acme_state: PathBuf,
    /// Staple OCSP responses fetched from each certificate's AIA responder.
    #[serde(default)]
    pub ocsp: bool,
    /// What the files held when this config was loaded.
    #[serde(skip)]
    pub material: Option<std::sync::Arc<crate::tls::Material>>,
    /// The server configs of TLS `[[listen]]` entries whose client-certificate
    /// policy differs from `[tls]`'s, by listener id.
    #[serde(skip)]
    pub listener_configs: Vec<(u16, std::sync::Arc<rustls::ServerConfig>)>,
}

type Verifier = std::sync::Arc<dyn rustls::server::danger::ClientCertVerifier>;

/// One `[[tls.acme]]`: a certificate obtained from an ACME server.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Acme {
    /// The server's directory URL (https).
    pub directory: String,
    /// `mailto:` addresses for the account.
    #[serde(default)]
    pub contact: Vec<String>,
    /// The names the certificate covers (DNS names, no wildcards).
    pub names: Vec<String>,
    /// `ecdsa-p256` or `ecdsa-p384`.
    #[serde(default = "default_key_type")]
    pub key_type: String,
    /// `http-01` and/or `tls-alpn-01`, in order of preference.
    #[serde(default = "default_challenges")]
    pub challenges: Vec<String>,
    /// PEM roots for the ACME server's own HTTPS certificate (default: the system's).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn default_key_type() -> String {
    "ecdsa-p256".into()
}

fn default_challenges() -> Vec<String> {
    vec!["http-01".into()]
}

fn default_acme_state() -> PathBuf {
    PathBuf::from("/var/lib/floatlb/acme")
}

impl Acme {
    /// The key type, if known.
    pub fn key(&self) -> Option<crate::acme::x509::KeyType> {
        match self.key_type.as_str() {
            "ecdsa-p256" => Some(crate::acme::x509::KeyType::P256),
            "ecdsa-p384" => Some(crate::acme::x509::KeyType::P384),
            _ => None,
        }
    }

    /// The challenge types, those known.
    pub fn challenge_types(&self) -> Vec<crate::acme::order::Challenge> {
        use crate::acme::order::Challenge;
        self.challenges
            .iter()
            .filter_map(|c| match c.as_str() {
                "http-01" => Some(Challenge::Http01),
                "tls-alpn-01" => Some(Challenge::TlsAlpn01),
                _ => None,
            })
            .collect()
    }

    fn problems(&self, at: &str, out: &mut Problems) {
        if !self.directory.starts_with("https://") {
            out.push((format!("{at}.directory"), "must be an https:// URL".into()));
        }
        if self.names.is_empty() {
            out.push((format!("{at}.names"), "names no certificate name".into()));
        }
        for (i, n) in self.names.iter().enumerate() {
            let ok = !n.is_empty()
                && n.len() <= 253
                && n.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            if !ok {
                out.push((
                    format!("{at}.names[{i}]"),
                    format!("{n:?} is not a DNS name (no wildcards: HTTP-01 and TLS-ALPN-01 cannot prove them)"),
                ));
            }
        }
        if self.key().is_none() {
            out.push((
                format!("{at}.key-type"),
                format!(
                    "unknown key type {:?} (ecdsa-p256 or ecdsa-p384)",
                    self.key_type
                ),
            ));
        }
        if self.challenges.is_empty() {
            out.push((format!("{at}.challenges"), "names no challenge type".into()));
        }
        for (i, c) in self.challenges.iter().enumerate() {
            if !matches!(c.as_str(), "http-01" | "tls-alpn-01") {
                out.push((
                    format!("{at}.challenges[{i}]"),
                    format!("unknown challenge type {c:?} (http-01 or tls-alpn-01)"),
                ));
            }
        }
        for (i, c) in self.contact.iter().enumerate() {
            if !c.starts_with("mailto:") {
                out.push((format!("{at}.contact[{i}]"), "must be a mailto: URL".into()));
            }
        }
        if let Some(f) = &self.ca_file {
            if let Err(e) = crate::acme::http::Client::new(Some(f)) {
                out.push((format!("{at}.ca-file"), e));
            }
        }
    }
}

/// `[tls] client-auth`, or a TLS `[[listen]]`'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientAuth {
    /// No certificate is asked for, even with a `client-ca`.
    None,
    Optional,
    Required,
}

/// A route's `client-auth`: whether it requires a verified client
/// certificate (`required`); whether one is asked for at all is the
/// listener's policy, so `none` and `optional` are problems here.
pub(super) fn route_client_auth(auth: Option<ClientAuth>, at: &str, out: &mut Problems) -> bool {
    match auth {
        None => false,
        Some(ClientAuth::Required) => true,
        Some(_) => {
            out.push((
                at.to_string(),
                "a route can only say \"required\" (whether a certificate is asked for is the listener's client-auth)".into(),
            ));
            false
        }
    }
}

/// Routes with `client-auth = "required"` in a file where no TLS listener
/// asks for a certificate: they could only ever answer 403.
pub(super) fn routes_without_certificates(c: &super::Config) -> Problems {
    let asks = c.tls.as_ref().is_some_and(|t| {
        let own = || client_policy(t.client_ca.as_deref(), t.client_auth);
        matches!(own(), Ok(Some(_)))
            || c.listen.all.iter().any(|l| {
                let ca = l.client_ca.as_deref().or(t.client_ca.as_deref());
                l.tls
                    && matches!(
                        client_policy(ca, l.client_auth.or(t.client_auth)),
                        Ok(Some(_))
                    )
            })
    });
    if asks {
        return Vec::new();
    }
    c.routes
        .iter()
        .enumerate()
        .filter(|(_, r)| r.client_auth == Some(ClientAuth::Required))
        .map(|(i, _)| {
            (
                format!("route[{i}].client-auth"),
                "no TLS listener asks for a client certificate (a client-ca and a client-auth other than \"none\"), so this route would refuse every request".into(),
            )
        })
        .collect()
}

/// The policy of a TLS listener from its `client-ca` and `client-auth`
/// (each its own, else `[tls]`'s); `Err` when a mode needs a CA it lacks.
pub fn client_policy<'a>(
    ca: Option<&'a std::path::Path>,
    auth: Option<ClientAuth>,
) -> Result<crate::tls::client_auth::Policy<'a>, &'static str> {
    use crate::tls::client_auth::Mode;
    match (auth, ca) {
        (Some(ClientAuth::None), _) | (None, None) => Ok(None),
        (Some(_), None) => Err("needs a client-ca (on this listener or in [tls])"),
        (Some(ClientAuth::Optional), Some(ca)) => Ok(Some((Mode::Optional, ca))),
        (Some(ClientAuth::Required) | None, Some(ca)) => Ok(Some((Mode::Required, ca))),
    }
}

/// One `[[tls.certificate]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TlsCertificate {
    /// PEM chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// Names SNI picks this certificate for; each must be in the certificate.
    /// Empty: the certificate's own DNS names.
    #[serde(default)]
    pub names: Vec<String>,
}

// `address` is required, so the table has no `Default`: this is the one
// statement of `alpn`'s default.
fn default_alpn() -> Vec<String> {
    vec!["h2".into(), "http/1.1".into()]
}

impl Tls {
    /// Reads and checks the certificate and ticket-key files and builds the
    /// TLS server configs (`[tls]`'s, and one per TLS `[[listen]]` whose
    /// client-certificate policy differs); (key path, message) pairs for
    /// what is wrong.
    pub(super) fn load(&mut self, listeners: &[super::Listen]) -> Problems {
        let mut out = Vec::new();
        for (i, a) in self.acme.iter().enumerate() {
            a.problems(&format!("tls.acme[{i}]"), &mut out);
        }
        if !self.acme_state.is_absolute() {
            out.push(("tls.acme-state".into(), "must be an absolute path".into()));
        }
        if self.certificates.is_empty() && self.acme.is_empty() {
            out.push((
                "tls".into(),
                "at least one [[tls.certificate]] (or [[tls.acme]]) is required".into(),
            ));
        }
        for (i, p) in self.alpn.iter().enumerate() {
            if !matches!(p.as_str(), "h2" | "http/1.1") {
                out.push((
                    format!("tls.alpn[{i}]"),
                    format!("unknown protocol {p:?} (h2 or http/1.1)"),
                ));
            }
        }
        let mut loaded = Vec::new();
        for (i, c) in self.certificates.iter().enumerate() {
            match crate::tls::load_pair(&c.cert, &c.key, &c.names) {
                Ok(mut l) if self.ocsp => match crate::tls::ocsp::slot_for(&l.key) {
                    Ok(slot) => {
                        l.stapled = Some(slot);
                        loaded.push(l)
                    }
                    Err(e) => out.push((
                        format!("tls.certificate[{i}]"),
                        format!("{}: cannot staple OCSP: {e}", c.cert.display()),
                    )),
                },
                Ok(l) => loaded.push(l),
                Err(e) => out.push((format!("tls.certificate[{i}]"), e)),
            }
        }
        let (client, others, headers) = self.client_auth(listeners, &mut out);
        let ticketer = match &self.ticket_keys {
            Some(f) => crate::tls::tickets::load(f),
            None => crate::tls::tickets::per_process(),
        };
        let ticketer = match ticketer {
            Ok(t) => Some(t),
            Err(e) => {
                out.push(("tls.ticket-keys".into(), e));
                None
            }
        };
        if let (true, Some(t)) = (out.is_empty(), ticketer) {
            let now = crate::tls::unix_now();
            // RFC 8737 §6.2: TLS-ALPN-01 validations negotiate acme-tls/1.
            let mut alpn = self.alpn.clone();
            if self
                .acme
                .iter()
                .any(|a| a.challenges.iter().any(|c| c == "tls-alpn-01"))
            {
                alpn.push("acme-tls/1".into());
            }
            // Each policy's tickets resume under it only (see BoundTickets).
            let bound = |tag: Option<[u8; 8]>| match tag {
                Some(tag) => crate::tls::client_auth::BoundTickets::new(t.clone(), tag) as _,
                None => t.clone(),
            };
            let mut configs = Vec::new();
            for (id, verifier, tag) in others {
                match crate::tls::server_config_with(&loaded, &alpn, bound(tag), verifier) {
                    Ok(c) => configs.push((id, c)),
                    Err(e) => out.push(("tls".into(), e)),
                }
            }
            self.listener_configs = configs;
            match crate::tls::Material::new(&loaded, &alpn, bound(client.1), now, client.0) {
                Ok(mut m) => {
                    m.client_headers = headers;
                    self.material = Some(std::sync::Arc::new(m))
                }
                Err(e) => out.push(("tls".into(), e)),
            }
        }
        out
    }

    /// The server config a connection accepted on listener `id` gets: its
    /// own (a `[[listen]]` with a client-certificate policy of its own),
    /// else `[tls]`'s.
    pub fn server_config_for(&self, id: u16) -> Option<std::sync::Arc<rustls::ServerConfig>> {
        match self.listener_configs.iter().find(|(l, _)| *l == id) {
            Some((_, c)) => Some(c.clone()),
            None => self.material().map(|m| m.server_config.clone()),
        }
    }

    /// The client-certificate verifiers: `[tls]`'s, and (listener id,
    /// verifier) for each TLS `[[listen]]` whose policy differs, each with
    /// the tag its tickets are bound to (`None`: no listener asks for a
    /// certificate, tickets stay as they are); and the fields backends learn
    /// the identity in. Problems go to `out`.
    #[allow(clippy::type_complexity)]
    fn client_auth<'a>(
        &'a self,
        listeners: &'a [super::Listen],
        out: &mut Problems,
    ) -> (
        (Option<Verifier>, Option<[u8; 8]>),
        Vec<(u16, Option<Verifier>, Option<[u8; 8]>)>,
        crate::tls::client_auth::Headers,
    ) {
        use crate::tls::client_auth::{self, Headers};
        let mut headers = Headers::default();
        for (key, name, slot) in [
            (
                "client-subject-header",
                &self.client_subject_header,
                &mut headers.subject,
            ),
            (
                "client-fingerprint-header",
                &self.client_fingerprint_header,
                &mut headers.fingerprint,
            ),
        ] {
            if let Some(n) = name {
                match crate::http1::edit::editable(n) {
                    Ok(()) => *slot = Some(n.to_ascii_lowercase()),
                    Err(why) => out.push((format!("tls.{key}"), why)),
                }
            }
        }
        let own = match client_policy(self.client_ca.as_deref(), self.client_auth) {
            Ok(p) => p,
            Err(_) => {
                out.push(("tls.client-auth".into(), "needs tls.client-ca".into()));
                None
            }
        };
        // Each TLS [[listen]]'s policy, where it differs from [tls]'s.
        let mut others = Vec::new();
        for (i, l) in listeners.iter().enumerate() {
            if !l.tls {
                continue;
            }
            let at = |k: &str| {
                if listeners.len() == 1 {
                    format!("listen.{k}")
                } else {
                    format!("listen[{i}].{k}")
                }
            };
            let ca = l.client_ca.as_deref().or(self.client_ca.as_deref());
            match client_policy(ca, l.client_auth.or(self.client_auth)) {
                Ok(p) if p == own => {}
                Ok(p) => others.push((i as u16, p, at("client-ca"))),
                Err(e) => out.push((at("client-auth"), e.into())),
            }
        }
        let any = own.is_some() || others.iter().any(|(_, p, _)| p.is_some());
        if !any {
            for (key, set) in [
                ("client-subject-header", headers.subject.is_some()),
                ("client-fingerprint-header", headers.fingerprint.is_some()),
            ] {
                if set {
                    out.push((format!("tls.{key}"), "needs tls.client-ca".into()));
                }
            }
            return ((None, None), Vec::new(), Headers::default());
        }
        // One verifier per policy (a CA file read once however many
        // listeners name it).
        let mut made: Vec<(client_auth::Policy<'_>, Option<Verifier>)> = Vec::new();
        let mut verifier = |p: client_auth::Policy<'a>, key: &str, out: &mut Problems| {
            let (mode, ca) = p?;
            if let Some((_, v)) = made.iter().find(|(q, _)| *q == p) {
                return v.clone();
            }
            let v = match client_auth::verifier(ca, mode, crate::tls::provider()) {
                Ok(v) => Some(v),
                Err(e) => {
                    out.push((key.to_string(), e));
                    None
                }
            };
            made.push((p, v.clone()));
            v
        };
        let tls = (
            verifier(own, "tls.client-ca", out),
            Some(client_auth::policy_tag(own)),
        );
        let others = others
            .into_iter()
            .map(|(id, p, key)| (id, verifier(p, &key, out), Some(client_auth::policy_tag(p))))
            .collect();
        (tls, others, headers)
    }

    /// The loaded TLS server config (present once the config was loaded).
    pub fn material(&self) -> Option<&std::sync::Arc<crate::tls::Material>> {
        self.material.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::parse_with;
    use crate::config::tests::{parse_str, GOOD};
    use crate::tls::client_auth::Mode;

    #[test]
    fn a_listener_policy_falls_back_to_tls_and_none_turns_it_off() {
        use super::{client_policy, ClientAuth};
        let ca = Path::new("/etc/ca.pem");
        assert_eq!(
            client_policy(Some(ca), None),
            Ok(Some((Mode::Required, ca)))
        );
        assert_eq!(
            client_policy(Some(ca), Some(ClientAuth::Optional)),
            Ok(Some((Mode::Optional, ca)))
        );
        assert_eq!(client_policy(Some(ca), Some(ClientAuth::None)), Ok(None));
        assert_eq!(client_policy(None, None), Ok(None));
        assert!(client_policy(None, Some(ClientAuth::Required)).is_err());
    }

    #[test]
    fn a_route_requiring_a_certificate_needs_a_listener_asking_for_one() {
        let route = "[[route]]\nname = \"staff\"\nclient-auth = \"required\"\ndeny = 403\n";
        let e = parse_with(Path::new("t.toml"), &format!("{GOOD}{route}"), false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("route[0].client-auth: no TLS listener asks"),
            "{e}"
        );
        let tls = "[tls]\naddress = \"127.0.0.1:8443\"\nclient-ca = \"/etc/ca.pem\"\n\
                   [[tls.certificate]]\ncert = \"c.pem\"\nkey = \"c.key\"\n";
        let text = format!("{GOOD}{route}{tls}");
        assert!(parse_with(Path::new("t.toml"), &text, false).is_ok());
        let off = text.replace("client-ca = ", "client-auth = \"none\"\nclient-ca = ");
        assert!(parse_with(Path::new("t.toml"), &off, false).is_err());
    }

    #[test]
    fn listener_client_settings_are_checked_with_their_key() {
        let listen = |extra: &str| {
            format!(
                "[[listen]]\naddress = \"127.0.0.1:8080\"\nclient-auth = \"optional\"\n\
                 [[listen]]\naddress = \"127.0.0.1:8081\"\ntls = true\n{extra}\n\
                 [[backend]]\nname = \"a\"\naddress = \"127.0.0.1:9001\"\n\
                 [tls]\naddress = \"127.0.0.1:8443\"\n\
                 [[tls.certificate]]\ncert = \"/nonexistent/c.pem\"\nkey = \"/nonexistent/c.key\"\n"
            )
        };
        let e = parse_str(&listen("client-auth = \"required\""))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(
                "listen[0].client-auth: client certificates are asked for on a TLS listener only"
            ),
            "{e}"
        );
        assert!(
            e.contains("listen[1].client-auth: needs a client-ca"),
            "{e}"
        );
        let e = parse_str(&listen("client-ca = \"/nonexistent/ca.pem\""))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("listen[1].client-ca: cannot read /nonexistent/ca.pem"),
            "{e}"
        );
    }

    #[test]
    fn tls_files_are_checked_except_for_release() {
        let text = format!(
            "{GOOD}[tls]\naddress = \"127.0.0.1:8443\"\nalpn = [\"h3\"]\n[[tls.certificate]]\ncert = \"/nonexistent/c.pem\"\nkey = \"/nonexistent/c.key\"\n"
        );
        let e = parse_str(&text).unwrap_err().to_string();
        assert!(
            e.contains("tls.certificate[0]: cannot read /nonexistent/c.pem"),
            "{e}"
        );
        assert!(e.contains("tls.alpn[0]: unknown protocol \"h3\""), "{e}");
        let c = parse_with(Path::new("t.toml"), &text.replace("h3", "h2"), false).unwrap();
        assert!(c.tls.unwrap().material().is_none());
        let e = parse_str(&format!("{GOOD}[tls]\naddress = \"127.0.0.1:8443\"\n")).unwrap_err();
        assert!(
            e.to_string().contains("at least one [[tls.certificate]]"),
            "{e}"
        );
    }
}
