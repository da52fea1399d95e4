//! `bench hold`: opens many keep-alive client connections, sends one request on each, reads
//! the whole response, then keeps them all open and idle for a while, to measure what an idle
//! connection costs a proxy. With `--tls 1` the connections are HTTPS (HTTP/1.1 by ALPN), the
//! idle TLS connections of `vm-lab/lab sweep --tls`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};

/// Reads one HTTP/1.1 200 response with a Content-Length body; whether it said
/// `Connection: close`, or why it could not be read.
pub fn read_response(s: &mut impl Read, buf: &mut Vec<u8>) -> Result<bool, std::io::Error> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed by the server",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        if !head.starts_with("http/1.1 200") {
            return Err(bad("not a 200 answer"));
        }
        let Some(len) = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
        else {
            return Err(bad("no Content-Length"));
        };
        if buf.len() >= end + 4 + len {
            return Ok(head.lines().any(|l| {
                l.strip_prefix("connection:")
                    .is_some_and(|v| v.split(',').any(|t| t.trim() == "close"))
            }));
        }
    }
}

/// A held connection, cleartext or TLS.
enum Conn {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Conn {
    /// Sends `req` and reads a whole 200 answer.
    fn request(&mut self, req: &[u8], buf: &mut Vec<u8>) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.write_all(req).and_then(|()| read_response(s, buf)),
            Conn::Tls(s) => s.write_all(req).and_then(|()| read_response(s, buf)),
        }
        .map(|_| ())
    }
}

/// Accepts the server's certificate without checking it, as wrk and h2load do: the lab's is
/// self-signed and this is a load client, not a trust decision. The handshake's signatures are
/// still checked, so the server must hold the certificate's key.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
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
        verify_tls12_signature(
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
        verify_tls13_signature(
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

/// The client side of `--tls`: TLS 1.3 or 1.2, ALPN `http/1.1`, any certificate.
pub fn tls_config() -> Result<Arc<ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut c = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(c))
}

/// Opens `conns` connections, then sends one request on each and keeps those that got their
/// answer for `hold`; with `tls`, over TLS (no SNI: the address is an IP). Prints
/// "held N opened M" once they are all open. Returns (opened, held).
pub fn run(
    addr: SocketAddr,
    conns: u64,
    hold: Duration,
    tls: Option<Arc<ClientConfig>>,
) -> (u64, u64) {
    let req = format!("GET / HTTP/1.1\r\nHost: {}\r\n\r\n", addr.ip());
    let mut open = Vec::new();
    for _ in 0..conns {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
            Ok(s) => open.push(s),
            Err(e) => {
                eprintln!("bench hold: connect: {e}");
                break;
            }
        }
    }
    let opened = open.len() as u64;
    let mut buf = Vec::new();
    let mut held = Vec::new();
    for s in open {
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let mut c = match &tls {
            None => Conn::Plain(s),
            Some(cfg) => match ClientConnection::new(cfg.clone(), ServerName::from(addr.ip())) {
                Ok(t) => Conn::Tls(Box::new(StreamOwned::new(t, s))),
                Err(e) => {
                    eprintln!("bench hold: TLS: {e}");
                    continue;
                }
            },
        };
        match c.request(req.as_bytes(), &mut buf) {
            Ok(()) => held.push(c),
            Err(e) if held.is_empty() => eprintln!("bench hold: first request: {e}"),
            Err(_) => {}
        }
    }
    println!("held {} opened {opened}", held.len());
    std::thread::sleep(hold);
    (opened, held.len() as u64)
}
