//! A TLS connection that went idle and gave its buffers back (issue 34:
//! no read buffer while waiting for the next request, the session boxed out
//! of the connection's task) serves its next request correctly, over
//! HTTP/1.1 and HTTP/2, when that request arrives in several TLS records
//! (RFC 8446 §5.1: records are not aligned with anything above them), in
//! separate reads, and with a body larger than one record; over TLS 1.2 as
//! over TLS 1.3; after a KeyUpdate (RFC 8446 §4.6.3) that came while idle;
//! with an answer far larger than the buffers (1 MB); and that a
//! close_notify after idle is answered with one (RFC 8446 §6.1).
//!
//! The client is rustls driven by hand, so that each record is written and
//! sent on its own; HTTP/2 frames are written here too (RFC 9113 §4.1), the
//! answer's status read from its first HPACK byte.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};
use support::tls_client::{any_cert_config, any_cert_config_for};
use support::{backend_tables, free_port, make_cert, Floatlb, TestBackend};

/// Long enough for the connection to have waited in its idle state.
const IDLE: Duration = Duration::from_millis(300);

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// floatlb with a `[tls]` listener in front of one test backend.
struct Setup {
    _backend: TestBackend,
    _lb: Floatlb,
    _dir: tempfile::TempDir,
    tls: SocketAddr,
}

impl Setup {
    fn new() -> Setup {
        let backend = TestBackend::start("b1");
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = make_cert(dir.path(), "a", &["a.test"], 2);
        let tls: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let lb = Floatlb::start(&format!(
            "{}\n[tls]\naddress = \"{tls}\"\n\n[[tls.certificate]]\ncert = \"{}\"\nkey = \"{}\"\n",
            backend_tables(&[(&backend, 1)]),
            cert.display(),
            key.display()
        ));
        Setup {
            _backend: backend,
            _lb: lb,
            _dir: dir,
            tls,
        }
    }

    fn connect(&self, alpn: &[u8]) -> Tls {
        self.connect_with(any_cert_config(alpn), alpn)
    }

    fn connect_with(&self, config: std::sync::Arc<rustls::ClientConfig>, alpn: &[u8]) -> Tls {
        let name = ServerName::try_from("a.test").unwrap();
        let conn = ClientConnection::new(config, name).unwrap();
        let mut tcp = None;
        for _ in 0..100 {
            if let Ok(s) = TcpStream::connect(self.tls) {
                tcp = Some(s);
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let tcp = tcp.expect("the TLS listener never accepted");
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        tcp.set_nodelay(true).unwrap();
        let mut s = StreamOwned::new(conn, tcp);
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock).unwrap();
        }
        let got = s.conn.alpn_protocol().map(<[u8]>::to_vec);
        assert_eq!(got.as_deref(), Some(alpn), "ALPN");
        s
    }
}

/// `bytes` in one TLS record per piece (`cuts` are where pieces end), each
/// sent on its own and a moment apart, so the server reads them apart.
fn send_in_records(s: &mut Tls, bytes: &[u8], cuts: &[usize]) {
    let mut start = 0;
    for &end in cuts.iter().chain([bytes.len()].iter()) {
        // One write call is one record (up to 16 KiB of plaintext).
        let mut piece = &bytes[start..end];
        while !piece.is_empty() {
            let n = s.conn.writer().write(piece).unwrap();
            piece = &piece[n..];
            while s.conn.wants_write() {
                s.conn.write_tls(&mut s.sock).unwrap();
            }
        }
        start = end;
        std::thread::sleep(Duration::from_millis(60));
    }
}

/// The connection's first request, answered by web1, before it goes idle.
fn first_request(s: &mut Tls) {
    s.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .unwrap();
    assert_eq!(h1_answer(s), (200, "b1".to_string()));
}

/// RFC 9112 §2.1: one whole HTTP/1.1 answer (status, body).
fn h1_answer(s: &mut Tls) -> (u16, String) {
    let a = support::client::read_answer(s).unwrap();
    (a.status, String::from_utf8_lossy(&a.body).into_owned())
}

#[test]
fn an_idle_http1_connection_serves_a_request_split_over_tls_records() {
    let setup = Setup::new();
    let mut s = setup.connect(b"http/1.1");
    first_request(&mut s);
    std::thread::sleep(IDLE);
    // The next head in three records, cut mid-word and mid-field.
    let head = b"GET /headers HTTP/1.1\r\nHost: a.test\r\nX-Split: three-records\r\n\r\n";
    send_in_records(&mut s, head, &[7, 30]);
    let (status, body) = h1_answer(&mut s);
    assert_eq!(status, 200);
    assert!(body.contains("x-split: three-records"), "{body}");
    std::thread::sleep(IDLE);
    // A body larger than a record (16 KiB), its head in a record of its own.
    let body = vec![b'x'; 40_000];
    let mut req = format!(
        "POST /upload HTTP/1.1\r\nHost: a.test\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    let head_len = req.len();
    req.extend_from_slice(&body);
    send_in_records(&mut s, &req, &[head_len, head_len + 100]);
    assert_eq!(h1_answer(&mut s), (200, "40000".to_string()));
    std::thread::sleep(IDLE);
    first_request(&mut s);
}

/// RFC 9113 §4.1: a frame header and its payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    f.extend_from_slice(&[kind, flags]);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A string literal without Huffman coding (RFC 7541 §5.2).
fn literal(out: &mut Vec<u8>, s: &str) {
    assert!(s.len() < 127);
    out.push(s.len() as u8);
    out.extend_from_slice(s.as_bytes());
}

/// A request's header block: `method` and `path` (RFC 9113 §8.3.1), then
/// `fields` as literals without indexing (RFC 7541 §6.2.2).
fn header_block(post: bool, path: &str, fields: &[(&str, &str)]) -> Vec<u8> {
    // :method GET or POST, :scheme https (static indexes 2, 3, 7).
    let mut b = vec![if post { 0x83 } else { 0x82 }, 0x87];
    // :path (name index 4) and :authority (name index 1).
    b.push(0x04);
    literal(&mut b, path);
    b.push(0x01);
    literal(&mut b, "a.test");
    for (name, value) in fields {
        b.push(0x00);
        literal(&mut b, name);
        literal(&mut b, value);
    }
    b
}

/// Reads frames until `stream` ends: the first byte of its answer's header
/// block (0x88 is `:status 200`, RFC 7541 Appendix A) and its body. Answers
/// the server's SETTINGS (RFC 9113 §6.5.3) and returns the flow-control
/// credit it used (§6.9).
fn h2_answer(s: &mut Tls, stream: u32) -> (u8, String) {
    let (mut status, mut body) = (0, Vec::new());
    loop {
        let mut head = [0u8; 9];
        s.read_exact(&mut head).unwrap();
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let (kind, flags) = (head[3], head[4]);
        let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        s.read_exact(&mut payload).unwrap();
        match kind {
            0x4 if flags & 0x1 == 0 => s.write_all(&frame(0x4, 0x1, 0, &[])).unwrap(),
            0x7 => panic!("GOAWAY: {payload:?}"),
            0x3 if id == stream => panic!("RST_STREAM: {payload:?}"),
            0x1 if id == stream => status = payload[0],
            0x0 if id == stream => {
                body.extend_from_slice(&payload);
                if len > 0 {
                    let credit = (len as u32).to_be_bytes();
                    let mut up = frame(0x8, 0, 0, &credit);
                    up.extend(frame(0x8, 0, stream, &credit));
                    s.write_all(&up).unwrap();
                }
            }
            _ => {}
        }
        if id == stream && (kind == 0x0 || kind == 0x1) && flags & 0x1 != 0 {
            return (status, String::from_utf8_lossy(&body).into_owned());
        }
    }
}

#[test]
fn an_idle_http2_connection_serves_a_request_split_over_tls_records() {
    let setup = Setup::new();
    let mut s = setup.connect(b"h2");
    let mut start = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    start.extend(frame(0x4, 0, 0, &[]));
    // HEADERS with END_STREAM and END_HEADERS.
    start.extend(frame(0x1, 0x5, 1, &header_block(false, "/", &[])));
    s.write_all(&start).unwrap();
    assert_eq!(h2_answer(&mut s, 1), (0x88, "b1".to_string()));
    std::thread::sleep(IDLE);
    // The next request's HEADERS frame in three records: its frame header
    // cut in two, its header block in another.
    let req = frame(
        0x1,
        0x5,
        3,
        &header_block(false, "/headers", &[("x-split", "three-records")]),
    );
    send_in_records(&mut s, &req, &[4, 12]);
    let (status, body) = h2_answer(&mut s, 3);
    assert_eq!(status, 0x88);
    assert!(body.contains("x-split: three-records"), "{body}");
    std::thread::sleep(IDLE);
    // A POST whose 16,384-byte DATA frame (the largest the default
    // SETTINGS_MAX_FRAME_SIZE allows) spans two records with its header.
    let mut req = frame(
        0x1,
        0x4,
        5,
        &header_block(true, "/upload", &[("content-length", "16384")]),
    );
    let head_len = req.len();
    req.extend(frame(0x0, 0x1, 5, &[b'y'; 16_384]));
    send_in_records(&mut s, &req, &[head_len]);
    assert_eq!(h2_answer(&mut s, 5), (0x88, "16384".to_string()));
    std::thread::sleep(IDLE);
    s.write_all(&frame(0x1, 0x5, 7, &header_block(false, "/", &[])))
        .unwrap();
    assert_eq!(h2_answer(&mut s, 7), (0x88, "b1".to_string()));
}

/// RFC 8446 §5.1 over TLS 1.2 (RFC 5246 §6.2): an idle connection that
/// negotiated TLS 1.2 takes its next request in three records.
#[test]
fn an_idle_tls12_connection_serves_a_request_split_over_tls_records() {
    let setup = Setup::new();
    let config = any_cert_config_for(b"http/1.1", &[&rustls::version::TLS12]);
    let mut s = setup.connect_with(config, b"http/1.1");
    assert_eq!(
        s.conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    first_request(&mut s);
    std::thread::sleep(IDLE);
    let head = b"GET /headers HTTP/1.1\r\nHost: a.test\r\nX-Split: tls12\r\n\r\n";
    send_in_records(&mut s, head, &[5, 25]);
    let (status, body) = h1_answer(&mut s);
    assert_eq!(status, 200);
    assert!(body.contains("x-split: tls12"), "{body}");
}

/// RFC 8446 §4.6.3: a KeyUpdate (update_requested) sent on its own while the
/// connection is idle; the requests after it, under the client's new keys,
/// can only be read if the server took them (the server's own KeyUpdate in
/// answer is not seen by this client: rustls takes it silently).
#[test]
fn a_key_update_while_idle_is_taken_and_the_next_request_served() {
    let setup = Setup::new();
    let mut s = setup.connect(b"http/1.1");
    first_request(&mut s);
    std::thread::sleep(IDLE);
    s.conn.refresh_traffic_keys().unwrap();
    while s.conn.wants_write() {
        s.conn.write_tls(&mut s.sock).unwrap();
    }
    std::thread::sleep(IDLE);
    for n in 0..3 {
        let head = format!("GET /headers HTTP/1.1\r\nHost: a.test\r\nX-After: {n}\r\n\r\n");
        send_in_records(&mut s, head.as_bytes(), &[10]);
        let (status, body) = h1_answer(&mut s);
        assert_eq!(status, 200);
        assert!(body.contains(&format!("x-after: {n}")), "{body}");
    }
}

/// An answer of 1 MB after idle (larger than the 64 KiB of records the
/// connection holds before sending): every byte arrives, in order.
#[test]
fn an_idle_connection_sends_a_large_answer_whole() {
    let setup = Setup::new();
    let mut s = setup.connect(b"http/1.1");
    first_request(&mut s);
    std::thread::sleep(IDLE);
    s.write_all(b"GET /download?bytes=1000000 HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .unwrap();
    let a = support::client::read_answer(&mut s).unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(a.body.len(), 1_000_000);
    assert!(a.body.iter().all(|&b| b == b'x'));
    // And the connection goes on.
    std::thread::sleep(IDLE);
    first_request(&mut s);
}

/// RFC 8446 §6.1: a close_notify that comes while the connection is idle is
/// answered with the server's own, so the client sees a clean end (rustls
/// reports an end without close_notify as an error).
#[test]
fn a_close_notify_while_idle_is_answered_with_close_notify() {
    let setup = Setup::new();
    let mut s = setup.connect(b"http/1.1");
    first_request(&mut s);
    std::thread::sleep(IDLE);
    s.conn.send_close_notify();
    while s.conn.wants_write() {
        s.conn.write_tls(&mut s.sock).unwrap();
    }
    let mut rest = Vec::new();
    s.read_to_end(&mut rest)
        .expect("the server's close_notify, then the end");
    assert!(rest.is_empty(), "{rest:?}");
}
