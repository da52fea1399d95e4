//! The published HTTP/2 denial-of-service attacks against the `[tls]`
//! listener, each sent by a raw-frame client (frames and HPACK built here,
//! over tokio-rustls): the offending connection is ended with the GOAWAY
//! code RFC 9113 names, the worker's peak memory stays within a stated bound,
//! and a second client (the h2 crate's) is served during and after the
//! attack. One floatlb, with the `[http2]` defaults, serves every test here.
//! docs/http2-defences.md is the table these tests stand behind.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::client::TlsStream;

use support::{backend_tables, free_port, make_cert, Floatlb, TestBackend};

/// How much the worker's peak resident memory may grow over all the attacks
/// of this file together (each is bounded by a limit of a few hundred KiB
/// per connection; buffering a 256 MiB answer would break it).
const RSS_BOUND_KIB: u64 = 64 << 10;

/// Frame types and flags (RFC 9113 §6).
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// Error codes (RFC 9113 §7).
const CANCEL: u32 = 0x8;
const REFUSED_STREAM: u32 = 0x7;
const FRAME_SIZE_ERROR: u32 = 0x6;
const ENHANCE_YOUR_CALM: u32 = 0xb;

/// SETTINGS_INITIAL_WINDOW_SIZE (RFC 9113 §6.5.2).
const INITIAL_WINDOW_SIZE: u16 = 0x4;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

struct Lab {
    lb: Floatlb,
    _backend: TestBackend,
    _dir: tempfile::TempDir,
    tls: SocketAddr,
    client: Arc<rustls::ClientConfig>,
    worker: u32,
    /// The worker's resident memory before any attack, KiB.
    rss_at_start: u64,
}

static LAB: OnceLock<Lab> = OnceLock::new();

/// The floatlb every test here shares; killed when the test binary exits.
fn lab() -> &'static Lab {
    LAB.get_or_init(|| {
        let lab = Lab::start("client = \"2s\"");
        extern "C" fn stop() {
            if let Some(lab) = LAB.get() {
                // SAFETY: signals to the processes this binary started.
                unsafe {
                    libc::kill(lab.lb.child.id() as i32, libc::SIGKILL);
                    libc::kill(lab.worker as i32, libc::SIGKILL);
                }
                // Never dropped: their temporary directories go here.
                let _ = std::fs::remove_dir_all(lab._dir.path());
                if let Some(dir) = lab.lb.config_path.parent() {
                    let _ = std::fs::remove_dir_all(dir);
                }
            }
        }
        // SAFETY: `stop` only reads a static that is set by then.
        unsafe { libc::atexit(stop) };
        lab
    })
}

impl Lab {
    /// floatlb with a `[tls]` listener, one backend, and `timeouts` keys.
    fn start(timeouts: &str) -> Lab {
        let backend = TestBackend::start("b1");
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = make_cert(dir.path(), "a", &["a.test"], 30);
        let tls: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let lb = Floatlb::start(&format!(
            "{}\n[tls]\naddress = \"{tls}\"\n[[tls.certificate]]\ncert = \"{}\"\nkey = \"{}\"\n\n[timeouts]\n{timeouts}\n",
            backend_tables(&[(&backend, 1)]),
            cert.display(),
            key.display()
        ));
        let client = support::tls_client::pinned_cert_config(
            b"h2",
            CertificateDer::from_pem_file(&cert).unwrap(),
        );
        let worker = lb.worker_pid();
        let rss_at_start = proc_status_kib(worker, "VmRSS:");
        Lab {
            lb,
            _backend: backend,
            _dir: dir,
            tls,
            client,
            worker,
            rss_at_start,
        }
    }
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The worker's peak memory has grown by less than [`RSS_BOUND_KIB`].
fn assert_memory_bounded(lab: &Lab) {
    let grown = proc_status_kib(lab.worker, "VmHWM:").saturating_sub(lab.rss_at_start);
    eprintln!("the worker's peak RSS is {grown} KiB over its RSS before the attacks");
    assert!(
        grown < RSS_BOUND_KIB,
        "the worker's peak RSS grew by {grown} KiB"
    );
}

fn run<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

async fn connect(lab: &Lab) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(lab.tls).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let connector = tokio_rustls::TlsConnector::from(lab.client.clone());
    connector
        .connect(ServerName::try_from("a.test").unwrap(), tcp)
        .await
        .unwrap()
}

// ---- The well-behaved client: the h2 crate's. ----

/// GET `path` on a connection of its own, with `extra` fields: (status, body bytes).
async fn get(lab: &Lab, path: &str, extra: &[(&str, String)]) -> (u16, usize) {
    let (mut send, conn) = h2::client::handshake(connect(lab).await).await.unwrap();
    tokio::spawn(conn);
    let mut req = http::Request::get(format!("https://a.test{path}"));
    for (name, value) in extra {
        req = req.header(*name, value);
    }
    let (resp, _) = send.send_request(req.body(()).unwrap(), true).unwrap();
    let resp = resp.await.unwrap();
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut n = 0;
    while let Some(data) = body.data().await {
        let data = data.unwrap();
        n += data.len();
        let _ = body.flow_control().release_capacity(data.len());
    }
    (status, n)
}

/// Requests from another client while an attack runs, each answered.
async fn served_meanwhile(lab: &Lab) {
    for _ in 0..5 {
        let answer = timeout(Duration::from_secs(10), get(lab, "/", &[])).await;
        assert_eq!(answer.expect("no answer in 10 s"), (200, 2));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---- The attacker: frames and HPACK by hand. ----

fn frame(kind: u8, flags: u8, id: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    f.extend([kind, flags]);
    f.extend(id.to_be_bytes());
    f.extend(payload);
    f
}

fn settings(pairs: &[(u16, u32)]) -> Vec<u8> {
    let payload: Vec<u8> = pairs
        .iter()
        .flat_map(|(id, v)| [&id.to_be_bytes()[..], &v.to_be_bytes()[..]].concat())
        .collect();
    frame(SETTINGS, 0, 0, &payload)
}

/// An HPACK integer with an `bits`-bit prefix (RFC 7541 §5.1).
fn int(out: &mut Vec<u8>, first: u8, bits: u8, mut v: usize) {
    let max = (1usize << bits) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

/// An HPACK string literal, without Huffman coding (RFC 7541 §5.2).
fn string(out: &mut Vec<u8>, s: &[u8]) {
    int(out, 0x00, 7, s.len());
    out.extend(s);
}

/// A request's header block (RFC 7541 Appendix A indices): `:method`
/// GET (2) or POST (3), `:scheme` https (7), then `:path` (4) and
/// `:authority` (1) as literals without indexing.
fn request(post: bool, path: &str) -> Vec<u8> {
    let mut b = vec![if post { 0x83 } else { 0x82 }, 0x87];
    int(&mut b, 0x00, 4, 4);
    string(&mut b, path.as_bytes());
    int(&mut b, 0x00, 4, 1);
    string(&mut b, b"a.test");
    b
}

/// A field as a literal without indexing, with a new name (RFC 7541 §6.2.2).
fn field(b: &mut Vec<u8>, name: &str, value: &[u8]) {
    b.push(0x00);
    string(b, name.as_bytes());
    string(b, value);
}

/// What the attacker saw of the server before the connection ended.
#[derive(Debug, Default)]
struct Seen {
    /// GOAWAY's error code and debug data.
    goaway: Option<(u32, String)>,
    /// RST_STREAM frames: (stream, error code).
    resets: Vec<(u32, u32)>,
    /// Streams answered with HEADERS.
    answered: Vec<u32>,
    /// DATA payload bytes received.
    data: usize,
    /// The server closed the connection (within the watch).
    closed: bool,
}

/// Reads the server's frames until it closes the connection, `enough`
/// says so, or `within` has passed.
async fn watch(
    rd: &mut ReadHalf<TlsStream<TcpStream>>,
    within: Duration,
    enough: fn(&Seen) -> bool,
) -> Seen {
    let mut seen = Seen::default();
    let mut buf = Vec::new();
    let end = tokio::time::Instant::now() + within;
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        while buf.len() >= 9 {
            let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]) as usize;
            if buf.len() < 9 + len {
                break;
            }
            let (kind, id) = (buf[3], u32::from_be_bytes(buf[5..9].try_into().unwrap()));
            let p = &buf[9..9 + len];
            match kind {
                GOAWAY => {
                    let code = u32::from_be_bytes(p[4..8].try_into().unwrap());
                    let debug = String::from_utf8_lossy(&p[8..]).into_owned();
                    seen.goaway.get_or_insert((code, debug));
                }
                RST_STREAM => seen
                    .resets
                    .push((id, u32::from_be_bytes(p[..4].try_into().unwrap()))),
                HEADERS => seen.answered.push(id),
                DATA => seen.data += len,
                _ => {}
            }
            buf.drain(..9 + len);
        }
        if enough(&seen) {
            return seen;
        }
        match tokio::time::timeout_at(end, rd.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            // The end, a reset, or TLS without close_notify: closed.
            Ok(_) => {
                seen.closed = true;
                return seen;
            }
            Err(_) => return seen,
        }
    }
}

/// Opens a connection as a client would (preface, SETTINGS with `own`
/// values, the ACK of the server's), then sends `writes` 10 ms apart (each
/// allowed 2 s), reading the server's frames meanwhile for up to `within`.
async fn attack(lab: &Lab, own: &[(u16, u32)], writes: Vec<Vec<u8>>, within: Duration) -> Seen {
    let (mut rd, mut wr): (_, WriteHalf<_>) = tokio::io::split(connect(lab).await);
    let opening = [PREFACE, &settings(own), &frame(SETTINGS, ACK, 0, &[])].concat();
    wr.write_all(&opening).await.unwrap();
    let send = async move {
        for w in writes {
            match timeout(Duration::from_secs(2), wr.write_all(&w)).await {
                Ok(Ok(())) => {}
                // Closed by the server, or it reads no more.
                _ => break,
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        wr
    };
    let (seen, _wr) = tokio::join!(watch(&mut rd, within, |_| false), send);
    seen
}

/// The connection ended with GOAWAY(`code`) carrying one of `debug` (any
/// if none is given), and was closed.
fn assert_goaway(seen: &Seen, code: u32, debug: &[&str]) {
    let (got, data) = seen
        .goaway
        .clone()
        .unwrap_or_else(|| panic!("no GOAWAY: {seen:?}"));
    assert_eq!(
        got, code,
        "GOAWAY({got}, {data:?}); wanted {code} {debug:?}"
    );
    assert!(
        debug.is_empty() || debug.contains(&data.as_str()),
        "{data:?}"
    );
    assert!(seen.closed, "the connection stayed open after GOAWAY");
}

// ---- The attacks. ----

/// CVE-2023-44487 (rapid reset): streams opened and reset at once by the
/// client never count as concurrent (RFC 9113 §5.1.2), so only a count of
/// them bounds the work. Over `max-pending-reset-streams` (20) of them
/// waiting: GOAWAY(ENHANCE_YOUR_CALM).
#[test]
fn rapid_reset_ends_the_connection() {
    let lab = lab();
    let writes = (0..20u32)
        .map(|w| {
            (0..100u32)
                .flat_map(|i| {
                    let id = 1 + 2 * (w * 100 + i);
                    let headers =
                        frame(HEADERS, END_STREAM | END_HEADERS, id, &request(false, "/"));
                    [headers, frame(RST_STREAM, 0, id, &CANCEL.to_be_bytes())].concat()
                })
                .collect()
        })
        .collect();
    run(async {
        let (seen, ()) = tokio::join!(
            attack(lab, &[], writes, Duration::from_secs(10)),
            served_meanwhile(lab)
        );
        // h2's count of waiting resets, or floatlb's of RST_STREAM frames.
        assert_goaway(&seen, ENHANCE_YOUR_CALM, &["too_many_resets", ""]);
        assert_eq!(get(lab, "/", &[]).await, (200, 2));
    });
    assert_memory_bounded(lab);
}

/// The CONTINUATION flood (VU#421644, 2024; RFC 9113 §6.10): a header block
/// that never ends. More CONTINUATION frames than `max-header-list-size`
/// needs (at least 5): GOAWAY(ENHANCE_YOUR_CALM), before the block is
/// decoded or held whole.
#[test]
fn a_continuation_flood_ends_the_connection() {
    let lab = lab();
    let mut writes = vec![frame(HEADERS, END_STREAM, 1, &request(false, "/"))];
    for _ in 0..100 {
        let mut block = Vec::new();
        field(&mut block, "x-flood", b"continuation");
        writes.push(frame(CONTINUATION, 0, 1, &block).repeat(10));
    }
    run(async {
        let (seen, ()) = tokio::join!(
            attack(lab, &[], writes, Duration::from_secs(10)),
            served_meanwhile(lab)
        );
        assert_goaway(&seen, ENHANCE_YOUR_CALM, &["too_many_continuations"]);
        assert!(seen.answered.is_empty(), "{seen:?}");
    });
    assert_memory_bounded(lab);
}

/// An HPACK bomb (CVE-2016-6581; RFC 7541 §7.3, RFC 9113 §10.5.1): one
/// 4000-byte field put in the dynamic table, then referred to by its
/// one-byte index 2000 times, 8 MB of header list from a 6 KB block. Over
/// four times `max-header-list-size` decoded: GOAWAY(ENHANCE_YOUR_CALM).
#[test]
fn an_hpack_bomb_ends_the_connection() {
    let lab = lab();
    let mut block = request(false, "/");
    // Literal with incremental indexing, new name (RFC 7541 §6.2.1): entry 62.
    block.push(0x40);
    string(&mut block, b"x-bomb");
    string(&mut block, &[b'a'; 4000]);
    block.extend([0x80 | 62; 2000]);
    let writes = vec![frame(HEADERS, END_STREAM | END_HEADERS, 1, &block)];
    run(async {
        let (seen, ()) = tokio::join!(
            attack(lab, &[], writes, Duration::from_secs(10)),
            served_meanwhile(lab)
        );
        assert_goaway(&seen, ENHANCE_YOUR_CALM, &["header_list_way_too_large"]);
    });
    assert_memory_bounded(lab);
}

/// A header list over `max-header-list-size` (16 KiB) but not abusive is
/// refused on its stream with 431 (RFC 6585 §5, RFC 9113 §10.5.1); the
/// connection and other requests go on.
#[test]
fn a_header_list_over_the_limit_gets_431() {
    let lab = lab();
    run(async {
        let big = [("x-big", "b".repeat(20_000))];
        assert_eq!(get(lab, "/", &big).await.0, 431);
        let fits = [("x-fits", "f".repeat(8_000))];
        assert_eq!(get(lab, "/", &fits).await, (200, 2));
    });
}

/// A SETTINGS flood (CVE-2019-9515): each SETTINGS asks for an ACK. Over
/// `control-frame-rate` (100 a second, 1000 at once):
/// GOAWAY(ENHANCE_YOUR_CALM), floatlb's own count.
#[test]
fn a_settings_flood_ends_the_connection() {
    let lab = lab();
    let writes = vec![frame(SETTINGS, 0, 0, &[]).repeat(500); 40];
    run(async {
        let (seen, ()) = tokio::join!(
            attack(lab, &[], writes, Duration::from_secs(10)),
            served_meanwhile(lab)
        );
        assert_goaway(&seen, ENHANCE_YOUR_CALM, &[""]);
    });
    assert_memory_bounded(lab);
}

/// A PING flood (CVE-2019-9512): each PING asks for a PING ACK. Over
/// `control-frame-rate`: GOAWAY(ENHANCE_YOUR_CALM), floatlb's own count.
#[test]
fn a_ping_flood_ends_the_connection() {
    let lab = lab();
    let writes = vec![frame(PING, 0, 0, b"floodxxx").repeat(500); 40];
    run(async {
        let (seen, ()) = tokio::join!(
            attack(lab, &[], writes, Duration::from_secs(10)),
            served_meanwhile(lab)
        );
        assert_goaway(&seen, ENHANCE_YOUR_CALM, &[""]);
    });
    assert_memory_bounded(lab);
}

/// Stream exhaustion (RFC 9113 §5.1.2): streams beyond
/// `max-concurrent-streams` (128) are refused with
/// RST_STREAM(REFUSED_STREAM); past `max-error-resets` (1024) refusals,
/// GOAWAY(ENHANCE_YOUR_CALM).
#[test]
fn streams_over_the_limit_are_refused_and_then_the_connection_ended() {
    let lab = lab();
    let slow = |id: u32| {
        frame(
            HEADERS,
            END_STREAM | END_HEADERS,
            id,
            &request(false, "/slow?ms=3000"),
        )
    };
    let writes = (0..13u32)
        .map(|w| {
            (0..100u32)
                .flat_map(|i| slow(1 + 2 * (w * 100 + i)))
                .collect()
        })
        .collect();
    run(async {
        let (seen, ()) = tokio::join!(
            attack(lab, &[], writes, Duration::from_secs(10)),
            served_meanwhile(lab)
        );
        let refused = seen
            .resets
            .iter()
            .filter(|(_, code)| *code == REFUSED_STREAM)
            .count();
        assert!(refused > 0 && refused <= 1024, "{refused} refused");
        assert_goaway(&seen, ENHANCE_YOUR_CALM, &["too_many_internal_resets"]);
    });
    assert_memory_bounded(lab);
}

/// An empty DATA flood (CVE-2019-9518): frames without payload cost work
/// but no flow control. Past 100 on a connection (h2's fixed count):
/// GOAWAY(ENHANCE_YOUR_CALM).
#[test]
fn an_empty_data_flood_ends_the_connection() {
    let lab = lab();
    let writes = vec![
        frame(HEADERS, END_HEADERS, 1, &request(true, "/upload")),
        frame(DATA, 0, 1, &[]).repeat(1000),
    ];
    run(async {
        let (seen, ()) = tokio::join!(
            attack(lab, &[], writes, Duration::from_secs(10)),
            served_meanwhile(lab)
        );
        assert_goaway(&seen, ENHANCE_YOUR_CALM, &["too_many_data_frames"]);
    });
    assert_memory_bounded(lab);
}

/// A frame larger than SETTINGS_MAX_FRAME_SIZE (16384): a connection error
/// FRAME_SIZE_ERROR (RFC 9113 §4.2).
#[test]
fn a_frame_over_max_frame_size_ends_the_connection() {
    let lab = lab();
    let writes = vec![frame(HEADERS, END_HEADERS, 1, &vec![0; 20_000])];
    run(async {
        let seen = attack(lab, &[], writes, Duration::from_secs(10)).await;
        assert_goaway(&seen, FRAME_SIZE_ERROR, &[]);
    });
}

/// A zero window (CVE-2019-9517, "internal data buffering"): the client
/// asks for 256 MiB and never opens its window (SETTINGS_INITIAL_WINDOW_SIZE
/// 0, no WINDOW_UPDATE). floatlb sends the answer's head and no byte of its
/// body, reads no more of the backend's body than one piece and
/// `max-send-buffer` (400 KiB), serves others meanwhile, and resets the
/// stream, RST_STREAM(CANCEL), once the client has taken nothing for
/// `timeouts.client` (2 s here), which lets the backend go.
#[test]
fn a_zero_window_is_bounded_and_its_stream_reset_at_the_client_timeout() {
    let lab = lab();
    let get = frame(
        HEADERS,
        END_STREAM | END_HEADERS,
        1,
        &request(false, "/download?bytes=268435456"),
    );
    run(async {
        let (mut rd, mut wr) = tokio::io::split(connect(lab).await);
        let opening = [
            PREFACE,
            &settings(&[(INITIAL_WINDOW_SIZE, 0)]),
            &frame(SETTINGS, ACK, 0, &[]),
            &get,
        ]
        .concat();
        wr.write_all(&opening).await.unwrap();
        let watched = watch(&mut rd, Duration::from_secs(10), |s| !s.resets.is_empty());
        let (seen, ()) = tokio::join!(watched, served_meanwhile(lab));
        assert_eq!(seen.answered, [1], "{seen:?}");
        assert_eq!(seen.data, 0, "{seen:?}");
        assert_eq!(seen.resets, [(1, CANCEL)], "{seen:?}");
        assert!(!seen.closed, "{seen:?}");
        drop(wr);
    });
    assert_memory_bounded(lab);
}

/// A client that asks for answers and reads nothing: its streams are
/// reset at `timeouts.client`, but the resets and the GOAWAY sent after an
/// idle period cannot leave a full socket. `timeouts.client` later the
/// connection is dropped (floatlb's own bound, in `serve`): the server's
/// socket for it stops being ESTABLISHED while the client still reads
/// nothing.
#[test]
fn a_client_that_reads_nothing_is_dropped_after_its_goaway() {
    let lab = Lab::start("client = \"1s\"\nidle = \"1s\"");
    run(async {
        let tls = connect(&lab).await;
        let port = tls.get_ref().0.local_addr().unwrap().port();
        let (_rd, mut wr) = tokio::io::split(tls);
        // The largest windows (RFC 9113 §6.9.1), so the answers fill the socket.
        let mut opening = [
            PREFACE,
            &settings(&[(INITIAL_WINDOW_SIZE, (1 << 31) - 1)]),
            &frame(SETTINGS, ACK, 0, &[]),
            &frame(
                WINDOW_UPDATE,
                0,
                0,
                &((1u32 << 31) - 1 - 65_535).to_be_bytes(),
            ),
        ]
        .concat();
        for i in 0..20 {
            let get = request(false, "/download?bytes=50000000");
            opening.extend(frame(HEADERS, END_STREAM | END_HEADERS, 1 + 2 * i, &get));
        }
        wr.write_all(&opening).await.unwrap();
        let established = || server_socket_established(lab.tls.port(), port);
        assert!(
            established(),
            "no ESTABLISHED socket of floatlb's for port {port}"
        );
        // Up once the answers have filled the socket, then gone within 20 s.
        let mut gone = false;
        for _ in 0..400 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if !established() {
                gone = true;
                break;
            }
        }
        assert!(
            gone,
            "floatlb still holds the connection of a client that reads nothing"
        );
        drop(wr);
    });
}

/// Whether floatlb's socket from `local` to the client's `remote` port is
/// ESTABLISHED (state 01 in /proc/net/tcp).
fn server_socket_established(local: u16, remote: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let port = |addr: &str| u16::from_str_radix(addr.rsplit(':').next().unwrap_or(""), 16).ok();
    table.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 3 && port(f[1]) == Some(local) && port(f[2]) == Some(remote) && f[3] == "01"
    })
}

/// Frames a well-behaved client sends stay within every budget: a few
/// PINGs and SETTINGS, resets of streams it gave up, many streams one after
/// another.
#[test]
fn an_ordinary_client_is_not_taken_for_an_attacker() {
    let lab = lab();
    let (mut writes, mut id) = (Vec::new(), 1u32);
    for i in 0..150u32 {
        let mut w = frame(HEADERS, END_STREAM | END_HEADERS, id, &request(false, "/"));
        if i % 10 == 0 {
            w.extend(frame(PING, 0, 0, &u64::from(i).to_be_bytes()));
            w.extend(settings(&[(INITIAL_WINDOW_SIZE, 1 << 20)]));
            // A stream given up as soon as asked for.
            w.extend(frame(
                HEADERS,
                END_STREAM | END_HEADERS,
                id + 2,
                &request(false, "/slow?ms=100"),
            ));
            w.extend(frame(RST_STREAM, 0, id + 2, &CANCEL.to_be_bytes()));
            id += 2;
        }
        writes.push(w);
        id += 2;
    }
    run(async {
        let seen = attack(lab, &[], writes, Duration::from_secs(3)).await;
        assert!(seen.goaway.is_none() && !seen.closed, "{seen:?}");
        assert!(seen.answered.len() >= 150, "{}", seen.answered.len());
    });
}
