//! A client's request head: parsed, checked against the rules a server and an
//! intermediary must apply (RFC 9112 §2–§7, RFC 9110 §7.2, §7.6, §7.8, §10.1.1),
//! and rewritten as the head the backend gets: the request line in HTTP/1.1,
//! the client's fields as sent minus the hop-by-hop ones (and those Connection
//! names), one framing field for the body, forwarding fields as configured.
//!
//! Sans-IO: bytes in, a [`Prepared`] request or the 4xx it deserves out. A
//! request that is refused here reaches no backend.

use std::net::SocketAddr;
use std::time::SystemTime;

use http::StatusCode;

use super::fields::{self, is_name, ConnectionToken, IpText};

/// Most fields in a request head.
pub const MAX_HEADERS: usize = 100;
/// Longest request target (hyper's `Uri` limit, kept for the same 414).
const MAX_TARGET: usize = u16::MAX as usize - 2;

/// How a request's body is framed (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    None,
    Length(u64),
    Chunked,
}

/// A request ready for a backend.
#[derive(Debug)]
pub struct Prepared {
    /// The head for the backend.
    pub out: Vec<u8>,
    /// Where the target is in `out`.
    target: (usize, usize),
    /// Length of the client's head.
    pub head_len: usize,
    pub has_host: bool,
    pub idempotent: bool,
    pub head_request: bool,
    /// Asks the backend for a protocol switch (WebSocket).
    pub upgrade: bool,
    pub http10: bool,
    /// The client keeps the connection open after the answer.
    pub keep_alive: bool,
    pub body: BodyFraming,
    /// `Expect: 100-continue`: the client waits for a 100 before its body.
    pub expect_continue: bool,
    /// What the access log needs, only when it is on.
    pub log: Option<LogFields>,
    /// What the router passed to [`prepare`] said of the request (the index
    /// of its route), or [`NO_ROUTE`].
    pub route: u32,
}

/// [`Prepared::route`] when the router found none.
pub const NO_ROUTE: u32 = u32::MAX;

/// What a router sees of a request that passed every check: its method, the
/// host it names (the target's authority, or its Host field, as sent), its
/// target in origin form, and all its fields as sent.
pub struct Seen<'a> {
    pub method: &'a str,
    pub host: Option<&'a [u8]>,
    pub target: &'a str,
    pub headers: &'a [httparse::Header<'a>],
}

impl Prepared {
    /// The Host the backend gets (the client's, or its absolute-form authority).
    pub fn host(&self) -> Option<&str> {
        let text = std::str::from_utf8(&self.out).ok()?;
        text.split("\r\n").skip(1).find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("host").then(|| value.trim())
        })
    }

    /// Applies a route's edits: `target` (a new path and query) replaces the
    /// one in the request line, then the field edits.
    pub fn rewrite(&mut self, target: Option<&str>, fields: &super::edit::FieldEdits) {
        if let Some(t) = target {
            let (start, end) = self.target;
            self.out.splice(start..end, t.bytes());
            self.target = (start, start + t.len());
        }
        fields.apply(&mut self.out);
    }

    /// The target as sent to the backend (origin-form, or `*`).
    pub fn target(&self) -> &str {
        // The target was checked to be visible ASCII.
        std::str::from_utf8(&self.out[self.target.0..self.target.1]).unwrap_or("/")
    }
}

#[derive(Debug)]
pub struct LogFields {
    pub at: SystemTime,
    pub method: http::Method,
    pub target: String,
    pub referer: Option<String>,
    pub user_agent: Option<String>,
}

/// What a backend head gets added, and whether the access log is on.
pub struct Forwarding {
    pub peer: SocketAddr,
    pub xff: bool,
    pub xfp: bool,
    /// RFC 7239 `Forwarded`.
    pub forwarded: bool,
    /// RFC 9110 §7.6.3 `Via`.
    pub via: bool,
    /// Largest body accepted (0: no limit); a larger Content-Length is a 413.
    pub max_body: u64,
    pub log: bool,
    /// The client came over TLS: X-Forwarded-Proto and Forwarded say https.
    pub https: bool,
}

#[derive(Debug)]
pub enum Parse {
    Ready(Prepared),
    /// The head is not complete yet.
    Partial,
    /// Answer this and close: the connection's next bytes cannot be trusted.
    Bad(StatusCode, &'static str),
}

fn bad(reason: &'static str) -> Parse {
    Parse::Bad(StatusCode::BAD_REQUEST, reason)
}

/// Parses a request head from `buf` and prepares the backend's head. `route`
/// is asked which route the request takes (once it passed every check); its
/// answer is kept in [`Prepared::route`].
pub fn prepare(buf: &[u8], fwd: &Forwarding, route: impl FnOnce(&Seen<'_>) -> u32) -> Parse {
    // Not initialised first: the parser writes the fields it finds.
    let mut headers = [std::mem::MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let head_len = match req.parse_with_uninit_headers(buf, &mut headers) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parse::Partial,
        Err(httparse::Error::TooManyHeaders) => {
            return Parse::Bad(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "too many headers",
            )
        }
        Err(e) => return bad(parse_error(e)),
    };
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return bad("incomplete request line");
    };
    if method == "CONNECT" {
        // A reverse proxy opens no tunnels to where a client asks.
        return Parse::Bad(
            StatusCode::METHOD_NOT_ALLOWED,
            "CONNECT is not supported by this proxy",
        );
    }
    if target.len() > MAX_TARGET {
        return Parse::Bad(StatusCode::URI_TOO_LONG, "request target too long");
    }
    // RFC 9112 §3.2: origin-form, absolute-form, or `*` for OPTIONS.
    if !target.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return bad("invalid request target");
    }
    let (path, authority) = if target.starts_with('/') || (target == "*" && method == "OPTIONS") {
        (target, None)
    } else {
        match absolute_form(target) {
            Some((authority, path)) => (path, Some(authority)),
            None => return bad("invalid request target"),
        }
    };
    let http10 = version == 0;

    let (xff, xfp) = (fwd.xff, fwd.xfp);
    let mut hosts = 0;
    let mut host_values: [Option<&[u8]>; 2] = [None, None];
    let mut close = false;
    let mut keep_alive_token = false;
    let mut content_length: Option<u64> = None;
    let mut te_lines = 0;
    let mut te_chunked = false;
    let mut expect_continue = false;
    let mut listed: [&[u8]; 8] = [b""; 8];
    let mut n_listed = 0;
    let mut listed_more: Vec<&[u8]> = Vec::new();
    let mut forwarded_for: Option<&[u8]> = None;
    let mut upgrade_value: Option<&[u8]> = None;
    let mut upgrade_token = false;
    // The fields the backend does not get, one bit each, decided in the same
    // pass by the name (its length first): hop-by-hop ones, the framing and
    // Expect fields, the forwarding fields floatlb writes itself, a Host the
    // target's authority replaces. Those a Connection header names are left
    // out when the head is written (a Connection line may come after them).
    let mut dropped = [false; MAX_HEADERS];
    for (i, h) in req.headers.iter().enumerate() {
        let name = h.name.as_bytes();
        let drop = match name.len() {
            2 => is_name(name, b"te"),
            4 if is_name(name, b"host") => {
                if hosts < 2 {
                    host_values[hosts] = Some(h.value);
                }
                hosts += 1;
                authority.is_some()
            }
            6 if is_name(name, b"expect") => {
                // RFC 9110 §10.1.1: only 100-continue is defined; others are dropped.
                expect_continue |= h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
                true
            }
            7 if is_name(name, b"upgrade") => {
                if upgrade_value.is_some() {
                    return bad("more than one Upgrade header");
                }
                upgrade_value = Some(h.value);
                true
            }
            7 => is_name(name, b"trailer"),
            17 if is_name(name, b"transfer-encoding") => {
                te_lines += 1;
                te_chunked = h.value.trim_ascii().eq_ignore_ascii_case(b"chunked");
                true
            }
            17 => xfp && is_name(name, b"x-forwarded-proto"),
            14 if is_name(name, b"content-length") => {
                // RFC 9112 §6.3: digits only; lines that disagree are a smuggling attempt.
                let v = h.value.trim_ascii();
                if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
                    return bad("invalid Content-Length");
                }
                let n = v.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
                if content_length.is_some_and(|c| c != n) {
                    return bad("conflicting Content-Length values");
                }
                content_length = Some(n);
                true
            }
            10 if is_name(name, b"connection") => {
                match fields::sole_connection_token(h.value) {
                    Some(ConnectionToken::Close) => close = true,
                    Some(ConnectionToken::KeepAlive) => keep_alive_token = true,
                    _ => {
                        for token in fields::connection_tokens(h.value) {
                            match token {
                                ConnectionToken::Close => close = true,
                                ConnectionToken::KeepAlive => keep_alive_token = true,
                                ConnectionToken::Name(name) if is_name(name, b"upgrade") => {
                                    upgrade_token = true
                                }
                                ConnectionToken::Name(name) if n_listed == listed.len() => {
                                    listed_more.push(name)
                                }
                                ConnectionToken::Name(name) => {
                                    listed[n_listed] = name;
                                    n_listed += 1;
                                }
                            }
                        }
                    }
                }
                true
            }
            10 => is_name(name, b"keep-alive"),
            15 if is_name(name, b"x-forwarded-for") => {
                forwarded_for = forwarded_for.or(Some(h.value));
                xff
            }
            16 => is_name(name, b"proxy-connection"),
            _ => false,
        };
        dropped[i] = drop;
    }
    // RFC 9112 §6.1 and §6.3: the body's framing must be unambiguous.
    if let (Some(n), max) = (content_length, fwd.max_body) {
        if max > 0 && n > max {
            return Parse::Bad(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body larger than max-body-size",
            );
        }
    }
    let body = if te_lines > 0 {
        if http10 {
            return bad("Transfer-Encoding in an HTTP/1.0 request");
        }
        if te_lines > 1 {
            return bad("repeated Transfer-Encoding");
        }
        if !te_chunked {
            return bad("unsupported Transfer-Encoding");
        }
        if content_length.is_some() {
            return bad("both Content-Length and Transfer-Encoding");
        }
        BodyFraming::Chunked
    } else {
        match content_length {
            Some(n) if n > 0 => BodyFraming::Length(n),
            _ => BodyFraming::None,
        }
    };
    // RFC 9112 §3.2: one valid Host, required in HTTP/1.1.
    if let Err(reason) = fields::check_host(host_values.into_iter().flatten(), http10) {
        return bad(reason);
    }
    // RFC 9110 §7.8: Upgrade counts only when Connection lists it, never in
    // HTTP/1.0, and here only on a request without a body.
    let upgrade = upgrade_value.filter(|_| upgrade_token && !http10 && body == BodyFraming::None);
    let route = route(&Seen {
        method,
        host: authority.map(str::as_bytes).or(host_values[0]),
        target: path,
        headers: &*req.headers,
    });
    let listed_name = |name: &[u8]| {
        listed[..n_listed]
            .iter()
            .chain(listed_more.iter())
            .any(|l| l.eq_ignore_ascii_case(name))
    };

    // Room for the answer's head too: the buffer is used again for it.
    let mut out = Vec::with_capacity((head_len + 80).max(512));
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    let target_at = (out.len(), out.len() + path.len());
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let any_listed = n_listed > 0;
    let base = buf.as_ptr() as usize;
    // The run of the client's lines to copy next, as they are: a line already
    // in the `name: value` form it would be written in.
    let mut run = 0..0;
    for (i, h) in req.headers.iter().enumerate() {
        let name = h.name.as_bytes();
        // Host stays whatever Connection names (RFC 9110 §7.6.1: a connection
        // option never names a field meant for every recipient).
        if dropped[i] || (any_listed && listed_name(name) && !is_name(name, b"host")) {
            continue;
        }
        let ns = name.as_ptr() as usize - base;
        let ne = ns + name.len();
        let vs = h.value.as_ptr() as usize - base;
        let ve = vs + h.value.len();
        if vs == ne + 2 && buf.get(ne..vs) == Some(b": ") && buf.get(ve..ve + 2) == Some(b"\r\n") {
            if run.end == ns && !run.is_empty() {
                run.end = ve + 2;
            } else {
                out.extend_from_slice(&buf[run]);
                run = ns..ve + 2;
            }
            continue;
        }
        out.extend_from_slice(&buf[run]);
        run = 0..0;
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(&buf[run]);
    if let Some(authority) = authority {
        // RFC 9112 §3.2.2: the target's authority replaces any Host sent.
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(authority.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if xff {
        // Appended to the first value the client sent.
        out.extend_from_slice(b"x-forwarded-for: ");
        if let Some(prev) = forwarded_for {
            out.extend_from_slice(prev);
            out.extend_from_slice(b", ");
        }
        let mut ip = IpText::default();
        ip.write(fwd.peer.ip());
        out.extend_from_slice(ip.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if xfp {
        out.extend_from_slice(if fwd.https {
            b"x-forwarded-proto: https\r\n"
        } else {
            b"x-forwarded-proto: http\r\n"
        });
    }
    if fwd.forwarded {
        // RFC 7239 §4, §6: an IPv6 node is bracketed and quoted. Appended as its
        // own line: the client's lines pass on before it, as with X-Forwarded-For.
        let mut ip = IpText::default();
        ip.write(fwd.peer.ip());
        out.extend_from_slice(b"forwarded: for=");
        if fwd.peer.is_ipv6() {
            out.extend_from_slice(b"\"[");
            out.extend_from_slice(ip.as_bytes());
            out.extend_from_slice(b"]\"");
        } else {
            out.extend_from_slice(ip.as_bytes());
        }
        out.extend_from_slice(if fwd.https {
            b";proto=https\r\n"
        } else {
            b";proto=http\r\n"
        });
    }
    if fwd.via {
        // The version the client's message was received in.
        out.extend_from_slice(if http10 {
            b"via: 1.0 floatlb\r\n"
        } else {
            b"via: 1.1 floatlb\r\n"
        });
    }
    match body {
        BodyFraming::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(n.to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        BodyFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        // A bodyless request whose method normally has a body says so.
        BodyFraming::None
            if content_length.is_some() || matches!(method, "POST" | "PUT" | "PATCH") =>
        {
            out.extend_from_slice(b"content-length: 0\r\n")
        }
        BodyFraming::None => {}
    }
    if let Some(protocols) = upgrade {
        out.extend_from_slice(b"upgrade: ");
        out.extend_from_slice(protocols);
        out.extend_from_slice(b"\r\nconnection: upgrade\r\n");
    }
    out.extend_from_slice(b"\r\n");
    let log = fwd.log.then(|| {
        let text = |wanted: &str| {
            req.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(wanted))
                .map(|h| String::from_utf8_lossy(h.value).into_owned())
        };
        LogFields {
            at: SystemTime::now(),
            method: http::Method::from_bytes(method.as_bytes()).unwrap_or_default(),
            target: target.to_string(),
            referer: text("referer"),
            user_agent: text("user-agent"),
        }
    });
    Parse::Ready(Prepared {
        out,
        target: target_at,
        head_len,
        has_host: hosts > 0 || authority.is_some(),
        idempotent: fields::is_idempotent(method),
        head_request: method == "HEAD",
        upgrade: upgrade.is_some(),
        http10,
        keep_alive: if http10 {
            keep_alive_token && !close
        } else {
            !close
        },
        body,
        // RFC 9110 §10.1.1: a 100 is never sent to an HTTP/1.0 client.
        expect_continue: expect_continue && !http10 && body != BodyFraming::None,
        log,
        route,
    })
}

/// `http://authority/path?query` → (authority, path-and-query); the path is
/// `/` when absent (RFC 9112 §3.2.2).
fn absolute_form(target: &str) -> Option<(&str, &str)> {
    let scheme_end = target.find("://")?;
    let scheme = &target[..scheme_end];
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return None;
    }
    let rest = &target[scheme_end + 3..];
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    fields::check_host(std::iter::once(authority.as_bytes()), false).ok()?;
    match path.as_bytes().first() {
        Some(b'/') => Some((authority, path)),
        // "http://h?q" has an empty path: `/?q`... which needs an allocation;
        // refused instead (no client sends it).
        Some(_) => None,
        None => Some((authority, "/")),
    }
}

fn parse_error(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid token in the request line",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "invalid HTTP version",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prep(buf: &[u8], f: &Forwarding) -> Parse {
        prepare(buf, f, |_| NO_ROUTE)
    }

    fn fwd(xff: bool, xfp: bool) -> Forwarding {
        Forwarding {
            peer: "198.18.0.7:40000".parse().unwrap(),
            xff,
            xfp,
            forwarded: false,
            via: false,
            max_body: 0,
            log: false,
            https: false,
        }
    }

    fn ready(head: &str, f: &Forwarding) -> Prepared {
        match prep(head.as_bytes(), f) {
            Parse::Ready(p) => p,
            other => panic!("{head:?}: {other:?}"),
        }
    }

    #[test]
    fn backend_heads_keep_the_clients_headers_minus_hop_by_hop() {
        let head = "GET /a?b=1 HTTP/1.1\r\nHost: shop\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nX-Forwarded-For: 198.18.0.1\r\nX-Forwarded-For: 198.18.0.2\r\nX-Forwarded-Proto: https\r\nAccept: */*\r\n\r\nNEXT";
        let p = ready(head, &fwd(true, true));
        assert_eq!(
            String::from_utf8(p.out.clone()).unwrap(),
            "GET /a?b=1 HTTP/1.1\r\nHost: shop\r\nAccept: */*\r\nx-forwarded-for: 198.18.0.1, 198.18.0.7\r\nx-forwarded-proto: http\r\n\r\n"
        );
        assert_eq!(p.target(), "/a?b=1");
        assert_eq!(
            p.head_len,
            head.len() - "NEXT".len(),
            "a pipelined request stays"
        );
        assert!(p.has_host && p.keep_alive && p.idempotent && !p.http10);
        // Forwarding headers off: the client's pass as they are.
        let p = ready(
            "GET / HTTP/1.0\r\nX-Forwarded-For: 198.18.0.1\r\n\r\n",
            &fwd(false, false),
        );
        assert_eq!(
            String::from_utf8(p.out).unwrap(),
            "GET / HTTP/1.1\r\nX-Forwarded-For: 198.18.0.1\r\n\r\n"
        );
        assert!(!p.has_host, "HTTP/1.0 may leave Host out");
        // A bodyless POST says so; a zero length is kept as sent.
        let p = ready("POST /x HTTP/1.1\r\nHost: h\r\n\r\n", &fwd(false, false));
        assert!(String::from_utf8(p.out)
            .unwrap()
            .ends_with("content-length: 0\r\n\r\n"));
        assert!(!p.idempotent);
        let p = ready(
            "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
            &fwd(false, false),
        );
        assert_eq!(
            String::from_utf8(p.out).unwrap(),
            "POST /x HTTP/1.1\r\nHost: h\r\ncontent-length: 0\r\n\r\n"
        );
    }

    #[test]
    fn keep_alive_follows_each_version() {
        let f = fwd(false, false);
        assert!(!ready("GET / HTTP/1.0\r\n\r\n", &f).keep_alive);
        let p = ready("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", &f);
        assert!(p.keep_alive && p.http10);
        assert!(!ready("GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", &f).keep_alive);
        assert!(ready("HEAD / HTTP/1.1\r\nHost: t\r\n\r\n", &f).head_request);
    }

    /// Random heads built from pieces that matter (hop-by-hop names in any
    /// case, Connection lists, forwarding headers, lengths, odd bytes): the
    /// parse never panics, and every head it prepares is one complete, valid
    /// request with the same method and target, no hop-by-hop header, nothing
    /// the Connection header named, and exactly one X-Forwarded-For.
    #[test]
    fn prepared_heads_are_valid_requests_for_any_input() {
        let mut next = crate::test_util::xorshift(0x2545_f491_4f6c_dd1d);
        let mut rand = move |n: usize| next(n as u64) as usize;
        const METHODS: [&str; 6] = ["GET", "HEAD", "POST", "DELETE", "PATCH", "G\x01T"];
        const TARGETS: [&str; 5] = ["/", "/a?b=c", "/x%20y", "*", "http://h/"];
        const NAMES: [&str; 14] = [
            "Host",
            "connection",
            "Keep-Alive",
            "TE",
            "Trailer",
            "Upgrade",
            "Proxy-Connection",
            "X-Forwarded-For",
            "x-forwarded-proto",
            "Content-Length",
            "X-Hop",
            "x-hop",
            "Accept",
            "Bad Name",
        ];
        const VALUES: [&str; 8] = [
            "close",
            "keep-alive, X-Hop",
            "198.18.0.1",
            "0",
            "5",
            "a\x00b",
            "t",
            "x, , y",
        ];
        let (mut ready, mut bad) = (0, 0);
        for _ in 0..5000 {
            let method = METHODS[rand(METHODS.len())];
            let target = TARGETS[rand(TARGETS.len())];
            // Host first, as clients send it (another may follow: that is a 400).
            let mut head = format!("{method} {target} HTTP/1.{}\r\nHost: t\r\n", rand(2));
            for _ in 0..rand(8) {
                let name = NAMES[rand(NAMES.len())];
                let value = VALUES[rand(VALUES.len())];
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            head.push_str("\r\n");
            let mut bytes = head.into_bytes();
            if rand(10) == 0 {
                let at = rand(bytes.len());
                bytes[at] = rand(256) as u8;
            }
            let p = match prep(&bytes, &fwd(true, true)) {
                Parse::Ready(p) => p,
                _ => {
                    bad += 1;
                    continue;
                }
            };
            ready += 1;
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS + 4];
            let mut out = httparse::Request::new(&mut headers);
            let text = String::from_utf8_lossy(&bytes).to_string();
            assert_eq!(
                out.parse(&p.out),
                Ok(httparse::Status::Complete(p.out.len())),
                "{text:?}"
            );
            let mut input = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut input);
            req.parse(&bytes).unwrap();
            assert_eq!(out.method, req.method, "{text:?}");
            if req.path.is_some_and(|t| t.starts_with('/')) {
                assert_eq!(out.path, req.path, "{text:?}");
            } else {
                // absolute-form becomes origin-form.
                assert_eq!(out.path, Some("/"), "{text:?}");
            }
            assert_eq!(out.path, Some(p.target()), "{text:?}");
            let names: Vec<String> = out
                .headers
                .iter()
                .map(|h| h.name.to_ascii_lowercase())
                .collect();
            // Exactly one Host, and at most one framing field.
            let count = |n: &str| names.iter().filter(|h| *h == n).count();
            let hosts = count("host");
            assert!(hosts == 1 || (p.http10 && hosts == 0), "{text:?}");
            assert!(
                count("content-length") + count("transfer-encoding") <= 1,
                "{text:?}"
            );
            let hop_listed = req.headers.iter().any(|h| {
                h.name.eq_ignore_ascii_case("connection")
                    && fields::connection_tokens(h.value)
                        .any(|t| t == ConnectionToken::Name(b"X-Hop"))
            });
            for n in &names {
                let framing = n == "transfer-encoding" && p.body == BodyFraming::Chunked;
                assert!(
                    framing || !fields::is_hop_by_hop(n.as_bytes()),
                    "{n} in {text:?}"
                );
                assert!(n != "x-hop" || !hop_listed, "{text:?}");
            }
            let xff = names.iter().filter(|n| *n == "x-forwarded-for").count();
            assert_eq!(xff, 1, "{text:?}");
        }
        assert!(ready > 1000 && bad > 50, "{ready} {bad}");
    }

    #[test]
    fn unusual_requests_are_served_and_broken_ones_are_refused() {
        let f = fwd(true, true);
        for head in [
            "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
            "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n\r\n",
            "GET http://shop/ HTTP/1.1\r\nHost: shop\r\n\r\n",
            "OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: t\r\nConnection: a, b, c, d, e, f, g, h, i\r\n\r\n",
        ] {
            assert!(
                matches!(prep(head.as_bytes(), &f), Parse::Ready(_)),
                "{head:?}"
            );
        }
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(70_000));
        assert!(matches!(
            prep(long.as_bytes(), &f),
            Parse::Bad(StatusCode::URI_TOO_LONG, _)
        ));
        assert!(matches!(
            prep(b"GET / HTTP/1.1\r\nHost: t", &f),
            Parse::Partial
        ));
        for head in [
            "GET / HTTP/1.1\r\nHost : t\r\n\r\n",
            "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
            "GET / HTTP/1.1\r\nX: a\0b\r\n\r\n",
            "GARBAGE\r\n\r\n",
            "GET / HTTP/2.0\r\n\r\n",
            "GET /caf\u{e9} HTTP/1.1\r\nHost: t\r\n\r\n",
            "GET * HTTP/1.1\r\nHost: t\r\n\r\n",
            "GET shop/x HTTP/1.1\r\nHost: t\r\n\r\n",
            "GET ftp://shop/ HTTP/1.1\r\nHost: t\r\n\r\n",
            "GET http://user@shop/ HTTP/1.1\r\nHost: t\r\n\r\n",
        ] {
            assert!(
                matches!(
                    prep(head.as_bytes(), &f),
                    Parse::Bad(StatusCode::BAD_REQUEST, _)
                ),
                "{head:?}"
            );
        }
        let many = format!(
            "GET / HTTP/1.1\r\n{}\r\n",
            "X: 1\r\n".repeat(MAX_HEADERS + 1)
        );
        assert!(matches!(
            prep(many.as_bytes(), &f),
            Parse::Bad(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, _)
        ));
    }

    /// RFC 9112 §3.2: 400 for an HTTP/1.1 request without Host, for more than
    /// one Host line, and for a Host value that is not uri-host[:port].
    #[test]
    fn host_is_required_once_and_valid() {
        let f = fwd(false, false);
        for head in [
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GET / HTTP/1.0\r\nHost: a\r\nhost: a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: shop/x\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: user@shop\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: shop:80x\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: [2001:2::1\r\n\r\n",
        ] {
            assert!(
                matches!(
                    prep(head.as_bytes(), &f),
                    Parse::Bad(StatusCode::BAD_REQUEST, _)
                ),
                "{head:?}"
            );
        }
        for host in [
            "shop",
            "shop:8080",
            "198.18.0.1:80",
            "[2001:2::1]:443",
            "",
            "a-b.c_d~e",
        ] {
            let head = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
            assert!(ready(&head, &f).has_host, "{host:?}");
        }
        // HTTP/1.0 may leave it out; each backend's address is sent instead.
        assert!(!ready("GET / HTTP/1.0\r\n\r\n", &f).has_host);
    }

    /// RFC 9110 §7.8: Upgrade is passed on (with `Connection: upgrade`) only when
    /// the client's Connection lists it, and never for HTTP/1.0; CONNECT is 405.
    #[test]
    fn upgrade_requests_keep_their_upgrade_and_connect_is_refused() {
        let f = fwd(false, false);
        let p = ready(
            "GET /chat HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n",
            &f,
        );
        assert!(p.upgrade);
        assert_eq!(
            String::from_utf8(p.out).unwrap(),
            "GET /chat HTTP/1.1\r\nHost: t\r\nSec-WebSocket-Version: 13\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n"
        );
        for head in [
            "GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n\r\n",
            "GET / HTTP/1.0\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        ] {
            let p = ready(head, &f);
            assert!(!p.upgrade, "{head:?}");
            assert!(!String::from_utf8(p.out)
                .unwrap()
                .to_ascii_lowercase()
                .contains("upgrade"));
        }
        assert!(matches!(
            prep(b"GET / HTTP/1.1\r\nHost: t\r\nUpgrade: a\r\nUpgrade: b\r\nConnection: upgrade\r\n\r\n", &f),
            Parse::Bad(StatusCode::BAD_REQUEST, _)
        ));
        assert!(matches!(
            prep(b"CONNECT shop:443 HTTP/1.1\r\nHost: shop:443\r\n\r\n", &f),
            Parse::Bad(StatusCode::METHOD_NOT_ALLOWED, _)
        ));
    }

    /// RFC 9112 §6.1 and §6.3: one framing for the body, Content-Length
    /// digits only and agreeing, Transfer-Encoding exactly `chunked`, once, not
    /// with Content-Length and not in HTTP/1.0; the backend gets one framing field.
    #[test]
    fn body_framing_is_unambiguous() {
        let f = fwd(false, false);
        let p = ready(
            "POST /u HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            &f,
        );
        assert_eq!(p.body, BodyFraming::Length(5));
        assert_eq!(
            String::from_utf8(p.out).unwrap(),
            "POST /u HTTP/1.1\r\nHost: t\r\ncontent-length: 5\r\n\r\n"
        );
        let p = ready(
            "POST /u HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: Chunked\r\n\r\n",
            &f,
        );
        assert_eq!(p.body, BodyFraming::Chunked);
        assert!(!p.idempotent);
        assert_eq!(
            String::from_utf8(p.out).unwrap(),
            "POST /u HTTP/1.1\r\nHost: t\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        for (head, why) in [
            ("Content-Length: 5\r\nTransfer-Encoding: chunked", "both"),
            ("Transfer-Encoding: chunked\r\nContent-Length: 5", "both"),
            ("Content-Length: 1\r\nContent-Length: 2", "conflicting"),
            ("Content-Length: 1, 1", "invalid"),
            ("Content-Length: +1", "invalid"),
            ("Content-Length: 99999999999999999999", "invalid"),
            ("Transfer-Encoding: chunked, identity", "unsupported"),
            ("Transfer-Encoding: gzip", "unsupported"),
            ("Transfer-Encoding: xchunked", "unsupported"),
            (
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
                "repeated",
            ),
        ] {
            let text = format!("POST / HTTP/1.1\r\nHost: t\r\n{head}\r\n\r\n");
            match prep(text.as_bytes(), &f) {
                Parse::Bad(StatusCode::BAD_REQUEST, reason) => {
                    assert!(reason.contains(why), "{head:?}: {reason}")
                }
                other => panic!("{head:?}: {other:?}"),
            }
        }
        assert!(matches!(
            prep(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", &f),
            Parse::Bad(StatusCode::BAD_REQUEST, _)
        ));
    }

    /// RFC 9112 §3.2.2: an absolute-form target becomes origin-form and its
    /// authority the Host; RFC 9110 §10.1.1: Expect is answered here, not passed on.
    #[test]
    fn absolute_form_and_expect() {
        let f = fwd(false, false);
        let p = ready("GET http://Shop:8080 HTTP/1.1\r\nHost: other\r\n\r\n", &f);
        assert_eq!(
            String::from_utf8(p.out.clone()).unwrap(),
            "GET / HTTP/1.1\r\nhost: Shop:8080\r\n\r\n"
        );
        assert_eq!(p.target(), "/");
        let p = ready("GET https://shop/a?b HTTP/1.1\r\nHost: shop\r\n\r\n", &f);
        assert_eq!(p.target(), "/a?b");
        let p = ready(
            "PUT /u HTTP/1.1\r\nHost: t\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n",
            &f,
        );
        assert!(p.expect_continue);
        assert!(!String::from_utf8(p.out)
            .unwrap()
            .to_ascii_lowercase()
            .contains("expect"));
        // Not to HTTP/1.0 clients, and not without a body.
        let p = ready(
            "PUT /u HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
            &f,
        );
        assert!(!p.expect_continue);
        let p = ready(
            "GET / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n\r\n",
            &f,
        );
        assert!(!p.expect_continue);
    }

    /// RFC 7239 §4 Forwarded and RFC 9110 §7.6.3 Via, when configured; RFC 9110
    /// §15.5.14: a body over max-body-size is refused before any backend sees it.
    #[test]
    fn forwarded_via_and_body_limit() {
        let mut f = fwd(false, false);
        f.forwarded = true;
        f.via = true;
        let p = ready(
            "GET / HTTP/1.1\r\nHost: t\r\nForwarded: for=198.18.0.1\r\nVia: 1.1 cdn\r\n\r\n",
            &f,
        );
        assert_eq!(
            String::from_utf8(p.out).unwrap(),
            "GET / HTTP/1.1\r\nHost: t\r\nForwarded: for=198.18.0.1\r\nVia: 1.1 cdn\r\nforwarded: for=198.18.0.7;proto=http\r\nvia: 1.1 floatlb\r\n\r\n"
        );
        f.peer = "[2001:2::7]:40000".parse().unwrap();
        let p = ready("GET / HTTP/1.0\r\n\r\n", &f);
        let out = String::from_utf8(p.out).unwrap();
        assert!(
            out.contains("forwarded: for=\"[2001:2::7]\";proto=http\r\n"),
            "{out}"
        );
        assert!(out.contains("via: 1.0 floatlb\r\n"), "{out}");
        f.max_body = 10;
        assert!(matches!(
            prep(
                b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\n",
                &f
            ),
            Parse::Bad(StatusCode::PAYLOAD_TOO_LARGE, _)
        ));
        assert!(matches!(
            prep(
                b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n",
                &f
            ),
            Parse::Ready(_)
        ));
    }

    /// Found by the fuzzer: a Connection header naming Host must not strip it.
    #[test]
    fn connection_cannot_name_host_away() {
        let p = ready(
            "GET / HTTP/1.1\r\nHost: t\r\nConnection: host, x\r\nX: 1\r\n\r\n",
            &fwd(false, false),
        );
        assert_eq!(
            String::from_utf8(p.out).unwrap(),
            "GET / HTTP/1.1\r\nHost: t\r\n\r\n"
        );
    }
}
