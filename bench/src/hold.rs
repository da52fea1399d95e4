//! `bench hold`: opens many keep-alive client connections, sends one request on each, reads
//! the whole response, then keeps them all open and idle for a while, to measure what an idle
//! connection costs a proxy. With `--tls 1` the connections are HTTPS (HTTP/1.1 by ALPN), the
//! idle TLS connections of `vm-lab/lab sweep --tls`; with `--h2 1`, HTTP/2 over TLS (one GET on
//! stream 1 after the preface and SETTINGS).
//!
//! `bench idle` ([`idle`]) measures the three kinds (cleartext, TLS with HTTP/1.1, TLS with
//! HTTP/2) against floatlb, nginx and HAProxy on loopback, each balancer started fresh for each
//! kind and count: the growth of its processes' resident memory over the connections held.
//! Not here: the lab's namespaces and CPU caps (`sweep`), which the idle figure does not need.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};

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
    /// Sends `req` and reads a whole 200 answer; with `h2`, the HTTP/2 preface, SETTINGS and a
    /// GET for `/` on stream 1 instead.
    fn request(&mut self, req: &[u8], h2: Option<&str>, buf: &mut Vec<u8>) -> std::io::Result<()> {
        match (self, h2) {
            (Conn::Plain(s), _) => s.write_all(req).and_then(|()| read_response(s, buf)),
            (Conn::Tls(s), None) => s.write_all(req).and_then(|()| read_response(s, buf)),
            (Conn::Tls(s), Some(authority)) => h2_get(s, authority, buf).map(|()| false),
        }
        .map(|_| ())
    }
}

/// One HTTP/2 frame (RFC 9113 §4.1) appended to `out`.
fn h2_frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

/// The client preface, an empty SETTINGS and `GET https://authority/` on stream 1 (RFC 9113
/// §3.4, §6.5, §8.3.1); reads frames until the answer's END_STREAM, acknowledging the
/// server's SETTINGS. The answer must start with `:status 200` from the static table (RFC 7541
/// Appendix A, index 8), as every server here sends it.
fn h2_get(s: &mut (impl Read + Write), authority: &str, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    h2_frame(&mut out, 0x4, 0, 0, &[]);
    // :method GET, :scheme https, :path / (static indexes 2, 7, 4), then :authority as a
    // literal without indexing on static name 1 (RFC 7541 §6.2.2), no Huffman.
    let mut block = vec![0x82, 0x87, 0x84, 0x01, authority.len() as u8];
    block.extend_from_slice(authority.as_bytes());
    h2_frame(&mut out, 0x1, 0x5, 1, &block);
    s.write_all(&out)?;
    loop {
        let mut head = [0u8; 9];
        s.read_exact(&mut head)?;
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let (kind, flags) = (head[3], head[4]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        buf.resize(len, 0);
        s.read_exact(buf)?;
        match kind {
            0x4 if flags & 0x1 == 0 => {
                let mut ack = Vec::new();
                h2_frame(&mut ack, 0x4, 0x1, 0, &[]);
                s.write_all(&ack)?;
            }
            0x7 => return Err(bad("GOAWAY")),
            0x3 if stream == 1 => return Err(bad("RST_STREAM")),
            // HEADERS without padding or priority: the block starts the payload.
            0x1 if stream == 1 && flags & 0x28 == 0 && buf.first() != Some(&0x88) => {
                return Err(bad("not a 200 answer"))
            }
            0x0 | 0x1 if stream == 1 && flags & 0x1 != 0 => return Ok(()),
            _ => {}
        }
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

/// The client side of `--tls`: TLS 1.3 or 1.2, any certificate, ALPN `h2` (`h2`) or
/// `http/1.1`.
pub fn tls_config(h2: bool) -> Result<Arc<ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut c = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    c.alpn_protocols = vec![if h2 {
        b"h2".to_vec()
    } else {
        b"http/1.1".to_vec()
    }];
    Ok(Arc::new(c))
}

/// Opens `conns` connections, then sends one request on each; returns how many opened and
/// those that got their answer. With `tls`, over TLS (no SNI: the address is an IP); with
/// `h2` too, HTTP/2.
fn open(
    addr: SocketAddr,
    conns: u64,
    tls: Option<&Arc<ClientConfig>>,
    h2: bool,
) -> (u64, Vec<Conn>) {
    let authority = addr.ip().to_string();
    let req = format!("GET / HTTP/1.1\r\nHost: {authority}\r\n\r\n");
    // Each connection makes its request as soon as it is open: a TLS server may drop a
    // connection whose ClientHello is late (nginx closed a third of 2,000 opened first).
    let mut opened = 0;
    let mut buf = Vec::new();
    let mut held = Vec::new();
    let mut failed = 0;
    for _ in 0..conns {
        let s = match TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("bench hold: connect: {e}");
                break;
            }
        };
        opened += 1;
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let mut c = match tls {
            None => Conn::Plain(s),
            Some(cfg) => match ClientConnection::new(cfg.clone(), ServerName::from(addr.ip())) {
                Ok(t) => Conn::Tls(Box::new(StreamOwned::new(t, s))),
                Err(e) => {
                    eprintln!("bench hold: TLS: {e}");
                    continue;
                }
            },
        };
        let h2 = (h2 && tls.is_some()).then_some(authority.as_str());
        match c.request(req.as_bytes(), h2, &mut buf) {
            Ok(()) => held.push(c),
            Err(e) => {
                if failed == 0 {
                    eprintln!("bench hold: request {}: {e}", held.len() + 1);
                }
                failed += 1;
            }
        }
    }
    if failed > 1 {
        eprintln!("bench hold: {failed} requests failed");
    }
    (opened, held)
}

/// Opens `conns` connections, then sends one request on each and keeps those that got their
/// answer for `hold`; with `tls`, over TLS (no SNI: the address is an IP), HTTP/2 with `h2`.
/// Prints "held N opened M" once they are all open. Returns (opened, held).
pub fn run(
    addr: SocketAddr,
    conns: u64,
    hold: Duration,
    tls: Option<Arc<ClientConfig>>,
    h2: bool,
) -> (u64, u64) {
    let (opened, held) = open(addr, conns, tls.as_ref(), h2);
    println!("held {} opened {opened}", held.len());
    std::thread::sleep(hold);
    (opened, held.len() as u64)
}

/// What an idle connection speaks.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    /// HTTP/1.1 keep-alive in cleartext.
    Plain,
    /// TLS with HTTP/1.1 by ALPN.
    Tls,
    /// TLS with HTTP/2 by ALPN.
    H2,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Plain => "cleartext",
            Kind::Tls => "tls-http1",
            Kind::H2 => "tls-h2",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        [Kind::Plain, Kind::Tls, Kind::H2]
            .into_iter()
            .find(|k| k.name() == s)
    }
}

/// What `bench idle` measures: which balancers, kinds and counts.
pub struct Idle {
    /// The floatlb binary.
    pub floatlb: PathBuf,
    /// `floatlb`, `nginx`, `haproxy`, in the order they run.
    pub balancers: Vec<String>,
    pub kinds: Vec<Kind>,
    /// Connections held at once, one fresh start of every balancer per count and kind.
    pub counts: Vec<u64>,
    /// How long the connections sit idle, all open, before the memory is read: what an
    /// idle connection costs once the balancer has settled, not in the second after its
    /// request (floatlb parks an HTTP/1 connection after 1 s idle, and an allocator
    /// gives freed pages back after a delay: jemalloc's decay is about 10 s).
    pub settle: Duration,
}

/// One balancer, one kind, one count: its processes' RSS once warm and while the
/// connections are held.
#[derive(Debug, Clone, PartialEq)]
pub struct IdleRow {
    pub kind: Kind,
    pub balancer: String,
    pub conns: u64,
    pub rss_before_kib: u64,
    pub rss_during_kib: u64,
}

impl IdleRow {
    pub fn bytes_per_conn(&self) -> f64 {
        if self.conns == 0 {
            return 0.0;
        }
        (self.rss_during_kib as f64 - self.rss_before_kib as f64) * 1024.0 / self.conns as f64
    }

    pub const CSV_HEAD: &'static str =
        "kind,balancer,connections,rss_before_kib,rss_during_kib,bytes_per_connection";

    pub fn to_csv(&self) -> String {
        format!(
            "{},{},{},{},{},{:.0}",
            self.kind.name(),
            self.balancer,
            self.conns,
            self.rss_before_kib,
            self.rss_during_kib,
            self.bytes_per_conn()
        )
    }
}

/// A process this run started, killed (SIGTERM, then SIGKILL after 3 s) when dropped.
struct Started(Child);

impl Drop for Started {
    fn drop(&mut self) {
        let pid = self.0.id() as libc::pid_t;
        // SAFETY: a signal to our own child, which has not been reaped yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        for _ in 0..30 {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The resident memory of `pid` and every process below it, in KiB.
fn tree_rss_kib(pid: u32) -> u64 {
    let mut parent = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        // pid (comm) state ppid ...: comm may hold spaces and parentheses.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if let Some(pp) = ppid {
            parent.push((p, pp));
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let p = tree[i];
        tree.extend(parent.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    tree.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
        .filter_map(|s| crate::sample::status_kib(&s, "VmRSS"))
        .sum()
}

fn run_tool(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().with_context(|| format!("{cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// A balancer's configuration in `dir`, listening on `plain` and `tls` (both kinds at once)
/// in front of the web server on `web`, and the command that runs it in the foreground.
/// Idle timeouts of 10 minutes: opening 9,000 TLS connections one after another can take
/// longer than a minute, and the first ones must still be open when the memory is read.
fn balancer(
    name: &str,
    floatlb: &Path,
    dir: &Path,
    (plain, tls, web): (u16, u16, u16),
) -> Result<Command> {
    let (cert, key, both) = (
        dir.join("cert.pem"),
        dir.join("key.pem"),
        dir.join("both.pem"),
    );
    let (cert, key, both) = (cert.display(), key.display(), both.display());
    let d = dir.display();
    Ok(match name {
        "floatlb" => {
            let conf = dir.join("floatlb.toml");
            std::fs::write(
                &conf,
                format!(
                    "[listen]\naddress = \"127.0.0.1:{plain}\"\nworkers = 1\nmaxconn = 19000\n\n\
                     [health]\nenabled = false\n\n[timeouts]\nidle = \"600s\"\n\n\
                     [[backend]]\nname = \"web\"\naddress = \"127.0.0.1:{web}\"\n\n\
                     [tls]\naddress = \"127.0.0.1:{tls}\"\n\n\
                     [[tls.certificate]]\ncert = \"{cert}\"\nkey = \"{key}\"\n"
                ),
            )?;
            let mut c = Command::new(floatlb);
            c.arg("run").arg("-c").arg(conf);
            c
        }
        "nginx" => {
            let conf = dir.join("nginx-lb.conf");
            std::fs::write(
                &conf,
                format!(
                    "worker_processes 1;\ndaemon off;\nmaster_process off;\n\
                     worker_rlimit_nofile 20000;\npid {d}/nginx-lb.pid;\n\
                     error_log {d}/nginx-lb.log;\nevents {{ worker_connections 40000; }}\n\
                     http {{\n    access_log off;\n    keepalive_requests 1000000;\n\
                     keepalive_timeout 600s;\n\
                     upstream be {{ server 127.0.0.1:{web}; keepalive 512; }}\n\
                     server {{\n        listen 127.0.0.1:{plain} backlog=16384;\n\
                     listen 127.0.0.1:{tls} ssl http2 backlog=16384;\n\
                     ssl_certificate {cert};\n        ssl_certificate_key {key};\n\
                     ssl_session_cache shared:SSL:10m;\n        ssl_session_timeout 10m;\n\
                     location / {{ proxy_pass http://be; proxy_http_version 1.1; \
                     proxy_set_header Connection \"\"; }}\n    }}\n}}\n"
                ),
            )?;
            let mut c = Command::new("nginx");
            c.arg("-c").arg(conf);
            c
        }
        "haproxy" => {
            // HAProxy wants two descriptors per connection up front (client and server):
            // 9,900 is the most the 20,000 allowed here give it.
            let conf = dir.join("haproxy.cfg");
            std::fs::write(
                &conf,
                format!(
                    "global\n    maxconn 9900\n    nbthread 1\n\n\
                     defaults\n    mode http\n    maxconn 9900\n    timeout connect 2s\n\
                     timeout client 600s\n    timeout server 30s\n    timeout http-request 10s\n\
                     timeout http-keep-alive 600s\n    option http-keep-alive\n\
                     http-reuse always\n\n\
                     frontend fe\n    bind 127.0.0.1:{plain}\n\
                     bind 127.0.0.1:{tls} ssl crt {both} alpn h2,http/1.1\n\
                     default_backend be\n\n\
                     backend be\n    server web 127.0.0.1:{web}\n"
                ),
            )?;
            let mut c = Command::new("haproxy");
            c.arg("-db").arg("-f").arg(conf);
            c
        }
        other => bail!("--balancers: floatlb, nginx or haproxy, not {other:?}"),
    })
}

/// Raises this process's descriptor limit to its hard limit (the balancers it starts
/// inherit it): each held connection is a descriptor here and one in the balancer.
fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
    lim.rlim_cur
}

/// Runs `bench idle`: a web server (nginx, a 1.5 KB page) on loopback, then for every count,
/// kind and balancer in turn, the balancer started fresh, warmed by one request of that kind,
/// its RSS read, `count` connections opened and given one request each, its RSS read again a
/// second later while they are held; then they close and the balancer stops.
pub fn idle(cfg: &Idle) -> Result<Vec<IdleRow>> {
    let nofile = raise_nofile();
    if let Some(max) = cfg.counts.iter().max() {
        if max + 64 > nofile {
            bail!(
                "{max} connections need {max} descriptors here and {max} in the balancer; \
                 the limit is {nofile} (NOTES.md: the hard limit cannot be raised)"
            );
        }
    }
    let dir = std::env::temp_dir().join(format!("bench-idle-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    struct Remove(PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _remove = Remove(dir.clone());
    run_tool(
        Command::new("openssl")
            .current_dir(&dir)
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:P-256", "-nodes", "-days", "2"])
            .args(["-subj", "/CN=lab", "-keyout", "key.pem", "-out", "cert.pem"]),
    )?;
    let mut both = std::fs::read(dir.join("cert.pem"))?;
    both.extend(std::fs::read(dir.join("key.pem"))?);
    std::fs::write(dir.join("both.pem"), both)?;
    std::fs::create_dir_all(dir.join("www"))?;
    std::fs::write(dir.join("www/index.html"), "x".repeat(1500))?;
    let web = free_port()?;
    let d = dir.display();
    std::fs::write(
        dir.join("web.conf"),
        format!(
            "worker_processes 1;\ndaemon off;\nmaster_process off;\npid {d}/web.pid;\n\
             error_log {d}/web.log;\nevents {{ worker_connections 1024; }}\n\
             http {{ access_log off; keepalive_requests 1000000; \
             server {{ listen 127.0.0.1:{web}; root {d}/www; }} }}\n"
        ),
    )?;
    let _web = Started(
        Command::new("nginx")
            .arg("-c")
            .arg(dir.join("web.conf"))
            .stdout(Stdio::null())
            .spawn()
            .context("nginx (vm-lab/install-deps)")?,
    );
    let h1 = tls_config(false)?;
    let h2 = tls_config(true)?;
    let mut rows = Vec::new();
    for &count in &cfg.counts {
        for &kind in &cfg.kinds {
            for name in &cfg.balancers {
                let (plain, tls) = (free_port()?, free_port()?);
                let mut cmd = balancer(name, &cfg.floatlb, &dir, (plain, tls, web))?;
                let child = cmd
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .with_context(|| format!("{cmd:?}"))?;
                let lb = Started(child);
                let pid = lb.0.id();
                let (port, client) = match kind {
                    Kind::Plain => (plain, None),
                    Kind::Tls => (tls, Some(&h1)),
                    Kind::H2 => (tls, Some(&h2)),
                };
                let addr = SocketAddr::from(([127, 0, 0, 1], port));
                let warm = (0..100).any(|_| {
                    std::thread::sleep(Duration::from_millis(100));
                    TcpStream::connect(addr).is_ok()
                        && open(addr, 1, client, kind == Kind::H2).1.len() == 1
                });
                if !warm {
                    bail!("{name} did not answer a {} request on {addr}", kind.name());
                }
                std::thread::sleep(Duration::from_millis(500));
                let before = tree_rss_kib(pid);
                let (_, held) = open(addr, count, client, kind == Kind::H2);
                std::thread::sleep(cfg.settle);
                let during = tree_rss_kib(pid);
                let row = IdleRow {
                    kind,
                    balancer: name.clone(),
                    conns: held.len() as u64,
                    rss_before_kib: before,
                    rss_during_kib: during,
                };
                eprintln!(
                    "bench idle: {:<9} {:<8} {:>6} held: RSS {} -> {} KiB = {:.0} bytes/connection",
                    kind.name(),
                    name,
                    row.conns,
                    before,
                    during,
                    row.bytes_per_conn()
                );
                rows.push(row);
                drop(held);
                drop(lb);
            }
        }
    }
    Ok(rows)
}

/// The rows as a markdown table: KB per idle connection, a column per balancer.
pub fn idle_markdown(rows: &[IdleRow]) -> String {
    let mut balancers: Vec<&str> = Vec::new();
    let mut lines: Vec<(Kind, u64)> = Vec::new();
    for r in rows {
        if !balancers.contains(&r.balancer.as_str()) {
            balancers.push(&r.balancer);
        }
        if !lines.contains(&(r.kind, r.conns_rounded())) {
            lines.push((r.kind, r.conns_rounded()));
        }
    }
    let mut s = format!(
        "| KB per idle connection | {} |\n|---|",
        balancers.join(" | ")
    );
    s += &"---|".repeat(balancers.len());
    s.push('\n');
    for (kind, n) in lines {
        s += &format!("| {} ({n} held) |", kind.name());
        for b in &balancers {
            match rows
                .iter()
                .find(|r| r.kind == kind && r.conns_rounded() == n && r.balancer == *b)
            {
                Some(r) => s += &format!(" {:.2} |", r.bytes_per_conn() / 1000.0),
                None => s += " |",
            }
        }
        s.push('\n');
    }
    s
}

impl IdleRow {
    /// The count asked for, as far as the rows tell: held connections rounded to a hundred
    /// (a few may fail to connect at the largest counts).
    fn conns_rounded(&self) -> u64 {
        (self.conns + 50) / 100 * 100
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_rows_make_a_table_per_kind_and_count() {
        let row = |kind, balancer: &str, conns, during| IdleRow {
            kind,
            balancer: balancer.into(),
            conns,
            rss_before_kib: 1000,
            rss_during_kib: during,
        };
        let rows = [
            row(Kind::Plain, "floatlb", 2000, 2000),
            row(Kind::Plain, "nginx", 1999, 3000),
            row(Kind::H2, "floatlb", 2000, 11000),
        ];
        assert_eq!(rows[0].bytes_per_conn(), 512.0);
        assert_eq!(rows[0].to_csv(), "cleartext,floatlb,2000,1000,2000,512");
        let md = idle_markdown(&rows);
        assert!(
            md.contains("| cleartext (2000 held) | 0.51 | 1.02 |"),
            "{md}"
        );
        assert!(md.contains("| tls-h2 (2000 held) | 5.12 | |"), "{md}");
        assert_eq!(Kind::parse("tls-h2"), Some(Kind::H2));
        assert_eq!(Kind::parse("h3"), None);
    }

    #[test]
    fn an_h2_frame_has_its_nine_byte_header() {
        let mut out = Vec::new();
        h2_frame(&mut out, 0x1, 0x5, 1, b"abc");
        assert_eq!(out, [0, 0, 3, 1, 5, 0, 0, 0, 1, b'a', b'b', b'c']);
    }
}
