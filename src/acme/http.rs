//! A small blocking HTTPS client for the ACME server: one request per
//! connection (rustls `ClientConnection` over a std `TcpStream`), run on
//! the ACME thread; ACME traffic is a few requests a day.
//! Not for: the data path (never called from a worker's runtime).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// Where Debian keeps the system's trusted roots.
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Largest answer read (a certificate chain, a directory, an order).
const MAX_ANSWER: usize = 256 * 1024;
const TIMEOUT: Duration = Duration::from_secs(15);

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A client trusting `ca_file` (PEM), or the system's roots.
pub struct Client {
    config: Arc<rustls::ClientConfig>,
}

impl Client {
    pub fn new(ca_file: Option<&Path>) -> Result<Client, String> {
        let file = ca_file.unwrap_or(Path::new(SYSTEM_ROOTS));
        let pem =
            std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(&pem).flatten() {
            let _ = roots.add(c);
        }
        if roots.is_empty() {
            return Err(format!("{}: holds no usable certificate", file.display()));
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(Client {
            config: Arc::new(config),
        })
    }

    /// `method url`, with a JOSE body if given.
    pub fn request(&self, method: &str, url: &str, body: Option<&[u8]>) -> Result<Answer, String> {
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| format!("{url}: not an https:// URL"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let bad_port = || format!("{url}: bad port");
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(bad_port)?;
            match after.strip_prefix(':') {
                Some(p) => (h, p.parse::<u16>().map_err(|_| bad_port())?),
                None => (h, 443),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad_port())?),
                None => (authority, 443),
            }
        };
        let addr = (host, port)
            .to_socket_addrs()
            .map_err(|e| format!("{authority}: {e}"))?
            .next()
            .ok_or_else(|| format!("{authority}: no address"))?;
        let name = ServerName::try_from(host.to_string()).map_err(|e| format!("{host}: {e}"))?;
        let conn = rustls::ClientConnection::new(self.config.clone(), name)
            .map_err(|e| format!("{authority}: {e}"))?;
        let tcp = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| format!("{addr}: {e}"))?;
        let _ = tcp.set_read_timeout(Some(TIMEOUT));
        let _ = tcp.set_write_timeout(Some(TIMEOUT));
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: floatlb/{}\r\nAccept: application/json\r\nConnection: close\r\n",
            env!("CARGO_PKG_VERSION")
        );
        if let Some(b) = body {
            head.push_str(&format!(
                "Content-Type: application/jose+json\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(body.unwrap_or_default());
        tls.write_all(&out)
            .and_then(|()| tls.flush())
            .map_err(|e| format!("{url}: {e}"))?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            let n = match tls.read(&mut chunk) {
                Ok(n) => n,
                // A server that closes without close_notify: what came is judged.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
                Err(e) => return Err(format!("{url}: {e}")),
            };
            buf.extend_from_slice(&chunk[..n]);
            if let Some(a) = parse(&buf, n == 0)? {
                return Ok(a);
            }
            if n == 0 || buf.len() > MAX_ANSWER {
                return Err(format!("{url}: answer cut short or too large"));
            }
        }
    }
}

/// The answer in `buf` once whole (`Ok(None)`: not yet); `eof`: the server closed.
fn parse(buf: &[u8], eof: bool) -> Result<Option<Answer>, String> {
    let mut fields = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut fields);
    let n = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("not an HTTP answer: {e}")),
    };
    let headers: Vec<(String, String)> = resp
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).trim().to_string(),
            )
        })
        .collect();
    let status = resp.code.unwrap_or(0);
    let get = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    let rest = &buf[n..];
    let body = if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        dechunk(rest)
    } else if let Some(len) = get("content-length") {
        let len: usize = len.parse().map_err(|_| "bad Content-Length")?;
        rest.get(..len).map(<[u8]>::to_vec)
    } else if eof || status == 204 || status == 304 {
        Some(rest.to_vec())
    } else {
        None
    };
    Ok(body.map(|body| Answer {
        status,
        headers,
        body,
    }))
}

/// A whole chunked body (RFC 9112 §7.1), or `None` while it is not.
fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let end = b.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&b[..end]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        b = &b[end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_whole_only_when_framed() {
        let a = b"HTTP/1.1 201 Created\r\nLocation: /o/1\r\nContent-Length: 2\r\n\r\n{}";
        let got = parse(a, false).unwrap().unwrap();
        assert_eq!((got.status, got.header("location")), (201, Some("/o/1")));
        assert!(parse(&a[..a.len() - 1], false).unwrap().is_none());
        let c = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n";
        assert_eq!(parse(c, false).unwrap().unwrap().body, b"{}");
        assert!(parse(b"garbage\r\n\r\n", false).is_err());
    }
}
