//! What must hold for any bytes a client sends as requests
//! (`floatlb::http1::request::prepare`, then the body decoder on what follows
//! the head). Included with `#[path]` by the `http1_request` fuzz target and
//! by the stable replay of its corpus (`tests/fuzz_corpus.rs`), so CI checks
//! every input the fuzzer kept against the same invariants. A broken
//! invariant panics.
//!
//! A prepared head goes to a backend that may read it differently from
//! floatlb, so it must be one plain, unambiguous HTTP/1.1 request: the
//! client's method and target, the client's end-to-end fields unchanged and in
//! order, one Host, one framing field that matches the body floatlb will
//! send, one X-Forwarded-For and X-Forwarded-Proto, and no hop-by-hop field
//! but the ones floatlb writes itself.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use floatlb::http1::body::{Chunk, Framing};
use floatlb::http1::fields::{connection_tokens, is_hop_by_hop, ConnectionToken};
use floatlb::http1::request::{
    prepare, BodyFraming, Forwarding, Parse, Prepared, MAX_HEADERS, NO_ROUTE,
};

// The fuzz target uses only `check_framing` and `run`; the replay also `check`.
#[allow(dead_code)]
#[path = "http1_chunked.rs"]
pub mod chunked;

use chunked::{Shown, Verdict};

/// The client's address, as X-Forwarded-For must end.
pub const PEER: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 7), 40000));

/// The max-body-size the requests are prepared under: a larger
/// Content-Length is a 413.
pub const MAX_BODY: u64 = 1 << 20;

/// Requests read from one input, one after the other (pipelining).
const MAX_REQUESTS: usize = 8;

/// What one input did, for the replay's figures.
#[derive(Debug, Default, Clone, Copy)]
pub struct Outcome {
    /// Heads prepared for a backend.
    pub ready: usize,
    /// Inputs that ended in a refusal (4xx).
    pub bad: usize,
    /// Inputs that ended inside a head.
    pub partial: usize,
    /// Bodies decoded to their end: by Content-Length, chunked.
    pub length_bodies: usize,
    pub chunked_bodies: usize,
    /// Heads with an upgrade passed on.
    pub upgrades: usize,
}

/// Prepares each request of `data` in turn (with every forwarding field and
/// the access log on), checks each head, and decodes each body.
pub fn check(data: &[u8]) -> Outcome {
    let fwd = Forwarding {
        peer: PEER,
        xff: true,
        xfp: true,
        forwarded: true,
        via: true,
        max_body: MAX_BODY,
        log: true,
        https: false,
    };
    let mut out = Outcome::default();
    let mut rest = data;
    for _ in 0..MAX_REQUESTS {
        let p = match prepare(rest, &fwd, |_| NO_ROUTE) {
            Parse::Ready(p) => p,
            Parse::Partial => {
                out.partial += 1;
                break;
            }
            Parse::Bad(status, reason) => {
                assert!(
                    [400, 405, 413, 414, 431].contains(&status.as_u16()),
                    "{status} for {:?}",
                    Shown(rest)
                );
                assert!(!reason.trim().is_empty(), "{status} without a reason");
                out.bad += 1;
                break;
            }
        };
        out.ready += 1;
        check_prepared(rest, &p);
        check_head_alone(rest, &p, &fwd);
        if p.upgrade {
            // What follows a 101 is the new protocol's, relayed as bytes.
            out.upgrades += 1;
            break;
        }
        let after = &rest[p.head_len..];
        let framing = match p.body {
            BodyFraming::None => None,
            BodyFraming::Length(n) => Some(Framing::Length(n)),
            BodyFraming::Chunked => Some(Framing::Chunked(Chunk::Size)),
        };
        let used = match framing {
            None => 0,
            Some(framing) => {
                // Whole, and one byte at a time: the slowest client.
                let d = chunked::check_framing(framing, after, &[1]);
                if d.verdict != Verdict::Complete {
                    break;
                }
                match p.body {
                    BodyFraming::Chunked => out.chunked_bodies += 1,
                    _ => out.length_bodies += 1,
                }
                d.consumed
            }
        };
        rest = &after[used..];
        if rest.is_empty() {
            break;
        }
    }
    out
}

/// The head is read from its own bytes alone: what follows it (a body, the
/// next request) changes nothing, and one byte fewer is not a head yet.
fn check_head_alone(input: &[u8], p: &Prepared, fwd: &Forwarding) {
    let head = &input[..p.head_len];
    match prepare(head, fwd, |_| NO_ROUTE) {
        Parse::Ready(q) => {
            assert!(
                q.out == p.out && q.head_len == p.head_len && q.body == p.body,
                "the bytes after the head changed it: {:?}",
                Shown(input)
            );
        }
        other => panic!("the head alone gives {other:?}: {:?}", Shown(input)),
    }
    assert!(
        matches!(
            prepare(&head[..head.len() - 1], fwd, |_| NO_ROUTE),
            Parse::Partial
        ),
        "a head without its last byte is not Partial: {:?}",
        Shown(input)
    );
}

/// Fields floatlb writes at the end of the backend's head.
const ADDED: [&str; 9] = [
    "host",
    "x-forwarded-for",
    "x-forwarded-proto",
    "forwarded",
    "via",
    "content-length",
    "transfer-encoding",
    "upgrade",
    "connection",
];

fn check_prepared(input: &[u8], p: &Prepared) {
    let show = || format!("{:?}\n  prepared {:?}", Shown(input), Shown(&p.out));
    assert!(
        p.head_len > 0 && p.head_len <= input.len(),
        "head_len {} of {}: {}",
        p.head_len,
        input.len(),
        show()
    );

    // The client's head, as floatlb read it.
    let mut in_headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut in_headers);
    assert_eq!(
        req.parse(input),
        Ok(httparse::Status::Complete(p.head_len)),
        "{}",
        show()
    );
    let (method, target, version) = (req.method.unwrap(), req.path.unwrap(), req.version.unwrap());

    // The backend's head: one complete HTTP/1.1 request, nothing after it.
    let mut out_headers = [httparse::EMPTY_HEADER; MAX_HEADERS + ADDED.len()];
    let mut out = httparse::Request::new(&mut out_headers);
    assert_eq!(
        out.parse(&p.out),
        Ok(httparse::Status::Complete(p.out.len())),
        "prepared head does not parse: {}",
        show()
    );
    assert_eq!(out.version, Some(1), "{}", show());
    assert_eq!(out.method, Some(method), "method changed: {}", show());
    let out_target = out.path.unwrap();
    assert_eq!(out_target, p.target(), "{}", show());
    let absolute = !(target.starts_with('/') || target == "*");
    // http://authority[/path]: the authority becomes the Host, the path (or
    // "/") the target.
    let authority = absolute.then(|| {
        let rest = target.split_once("://").map_or("", |(_, rest)| rest);
        let (authority, path) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
        let path = if path.is_empty() { "/" } else { path };
        assert_eq!(
            out_target,
            path,
            "target {target:?} became {out_target:?}: {}",
            show()
        );
        authority
    });
    if !absolute {
        assert_eq!(out_target, target, "target changed: {}", show());
    }

    // The flags agree with the head.
    assert_eq!(p.http10, version == 0, "{}", show());
    assert_eq!(p.head_request, method == "HEAD", "{}", show());
    assert!(p.has_host || p.http10, "HTTP/1.1 without Host: {}", show());
    assert!(
        !p.upgrade || (!p.http10 && p.body == BodyFraming::None),
        "{}",
        show()
    );
    assert!(
        !p.expect_continue || (!p.http10 && p.body != BodyFraming::None),
        "{}",
        show()
    );
    let log = p.log.as_ref().expect("log fields asked for");
    assert_eq!(log.target, target, "{}", show());

    // The fields: the client's end-to-end ones first, unchanged and in order.
    let listed: Vec<Vec<u8>> = req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .flat_map(|h| connection_tokens(h.value))
        .filter_map(|t| match t {
            ConnectionToken::Name(n) => Some(n.to_ascii_lowercase()),
            _ => None,
        })
        .collect();
    let kept: Vec<(String, &[u8])> = req
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), h.value))
        .filter(|(n, _)| {
            // Host stays whatever Connection names (RFC 9110 §7.6.1).
            let dropped = is_hop_by_hop(n.as_bytes())
                || (listed.iter().any(|l| l == n.as_bytes()) && n != "host")
                || matches!(
                    n.as_str(),
                    "content-length" | "expect" | "x-forwarded-for" | "x-forwarded-proto"
                )
                || (absolute && n == "host");
            !dropped
        })
        .collect();
    let sent: Vec<(String, &[u8])> = out
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), h.value))
        .collect();
    let passed = sent.len().min(kept.len());
    assert!(
        sent[..passed] == kept[..],
        "the client's end-to-end fields did not pass as sent: {}",
        show()
    );
    for (name, _) in &sent[passed..] {
        assert!(ADDED.contains(&name.as_str()), "{name} added: {}", show());
    }
    for name in &listed {
        let n = std::str::from_utf8(name).unwrap_or("");
        assert!(
            ADDED.contains(&n) || !sent.iter().any(|(s, _)| s.as_bytes() == &name[..]),
            "{n}, which Connection lists, was passed on: {}",
            show()
        );
    }

    let values = |name: &str| -> Vec<&[u8]> {
        sent.iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| *v)
            .collect()
    };
    // No hop-by-hop field but the framing and the upgrade floatlb writes.
    for (name, value) in &sent {
        if !is_hop_by_hop(name.as_bytes()) {
            continue;
        }
        let ours = match name.as_str() {
            "transfer-encoding" => p.body == BodyFraming::Chunked && *value == b"chunked",
            "upgrade" => p.upgrade,
            "connection" => p.upgrade && *value == b"upgrade",
            _ => false,
        };
        assert!(ours, "hop-by-hop {name} passed on: {}", show());
    }

    // One framing field, the one for the body floatlb sends.
    let cl = values("content-length");
    let te = values("transfer-encoding");
    assert!(cl.len() + te.len() <= 1, "CL and TE: {}", show());
    match p.body {
        BodyFraming::None => {
            assert!(te.is_empty() && cl.iter().all(|v| *v == b"0"), "{}", show())
        }
        BodyFraming::Length(n) => {
            assert!(n > 0, "{}", show());
            assert_eq!(cl, [n.to_string().as_bytes()], "{}", show());
        }
        BodyFraming::Chunked => assert_eq!(te, [b"chunked"], "{}", show()),
    }
    let upgrade = usize::from(p.upgrade);
    assert_eq!(values("upgrade").len(), upgrade, "{}", show());
    assert_eq!(values("connection").len(), upgrade, "{}", show());

    // Exactly one Host, unless HTTP/1.0 without one; an absolute-form
    // target's authority replaces the client's Host.
    let hosts = values("host");
    assert_eq!(
        hosts.len(),
        usize::from(p.has_host),
        "{} Host fields (has_host {}): {}",
        hosts.len(),
        p.has_host,
        show()
    );
    if let Some(authority) = authority {
        assert_eq!(hosts, [authority.as_bytes()], "{}", show());
    }

    // Exactly one of each forwarding field, the client's address last.
    let xff = values("x-forwarded-for");
    assert_eq!(xff.len(), 1, "X-Forwarded-For: {}", show());
    let peer = PEER.ip().to_string();
    let first = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("x-forwarded-for"))
        .map(|h| h.value);
    let want = match first {
        Some(prev) => [prev, b", ", peer.as_bytes()].concat(),
        None => peer.clone().into_bytes(),
    };
    assert!(xff[0] == want, "X-Forwarded-For: {}", show());
    assert_eq!(values("x-forwarded-proto"), [b"http"], "{}", show());
    // Forwarded and Via: the client's pass on, floatlb's one comes after them.
    let ours = |name: &str| -> Vec<&[u8]> {
        sent[passed..]
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| *v)
            .collect()
    };
    let forwarded = format!("for={peer};proto=http");
    assert_eq!(ours("forwarded"), [forwarded.as_bytes()], "{}", show());
    let via: &[u8] = if p.http10 {
        b"1.0 floatlb"
    } else {
        b"1.1 floatlb"
    };
    assert_eq!(ours("via"), [via], "{}", show());
    if let BodyFraming::Length(n) = p.body {
        assert!(n <= MAX_BODY, "{}", show());
    }
    assert!(values("expect").is_empty(), "Expect passed on: {}", show());
}
