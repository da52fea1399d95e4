//! A client's request head: parsed ([`parse`], HTTP/1 only; `frontend/h2.rs`
//! gives an HTTP/2 stream's HEADERS in the same [`RequestHead`] form), checked
//! against the rules a server and an intermediary must apply (RFC 9112 §2–§7,
//! RFC 9110 §7.2, §7.6, §7.8, §10.1.1), and written as the head the backend
//! gets: the request line in HTTP/1.1, the client's fields as sent minus the
//! hop-by-hop ones (and those Connection names), one framing field for the
//! body, forwarding fields as configured. [`prepare_head`] is the one path
//! from either protocol's head to a [`Prepared`] request.
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

/// A request refused before any backend saw it: its status and reason.
pub type Refusal = (StatusCode, &'static str);

fn bad(reason: &'static str) -> Refusal {
    (StatusCode::BAD_REQUEST, reason)
}

/// The protocol a request arrived in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
    Http2,
}

/// A client's request head, as both front ends give it: HTTP/1 parsed from
/// the connection's bytes ([`parse`]), HTTP/2 from a stream's HEADERS frame
/// (`frontend/h2.rs`). [`prepare_head`] checks it and writes the backend's
/// head from it, the same for both.
pub struct RequestHead<'a> {
    pub method: &'a str,
    /// As sent: origin-form, absolute-form or `*` (HTTP/1); `:path` (HTTP/2).
    pub target: &'a str,
    /// HTTP/2's `:authority` when the stream has no Host field: it stands
    /// for the Host field an HTTP/1.1 request must carry (RFC 9113 §8.3.1).
    pub authority: Option<&'a str>,
    pub version: Version,
    pub fields: &'a [httparse::Header<'a>],
    /// The bytes `fields` point into (HTTP/1), so that lines sent in the form
    /// they would be written in are copied as they are; empty for HTTP/2.
    pub raw: &'a [u8],
    /// Length of the head in `raw`.
    pub len: usize,
    /// HTTP/2: DATA frames follow, a body with no framing field of its own
    /// unless Content-Length gives its length.
    pub body_follows: bool,
}

/// Parses an HTTP/1 request head from `buf` (RFC 9112 §2–§5), its fields
/// into `storage`. `Ok(None)`: the head is not complete yet.
#[inline]
pub fn parse<'b, 'h>(
    buf: &'b [u8],
    storage: &'h mut [std::mem::MaybeUninit<httparse::Header<'b>>],
) -> Result<Option<RequestHead<'h>>, Refusal>
where
    'b: 'h,
{
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, storage) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err((
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "too many headers",
            ))
        }
        Err(e) => return Err(bad(parse_error(e))),
    };
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(bad("incomplete request line"));
    };
    Ok(Some(RequestHead {
        method,
        target,
        authority: None,
        version: if version == 0 {
            Version::Http10
        } else {
            Version::Http11
        },
        fields: req.headers,
        raw: buf,
        len,
        body_follows: false,
    }))
}

/// What [`check`] found in a head that passed: everything the backend's head
/// is written from.
struct Checked<'a> {
    /// The target in origin form (or `*`).
    path: &'a str,
    /// The authority that replaces any Host field: absolute-form's (RFC 9112
    /// §3.2.2), or HTTP/2's `:authority`.
    authority: Option<&'a str>,
    /// The host the request names: the authority, or its Host field.
    host: Option<&'a [u8]>,
    has_host: bool,
    http10: bool,
    close: bool,
    keep_alive_token: bool,
    content_length: Option<u64>,
    body: BodyFraming,
    expect_continue: bool,
    /// Field names Connection lists (the first eight, then the rest).
    listed: [&'a [u8]; 8],
    n_listed: usize,
    listed_more: Vec<&'a [u8]>,
    forwarded_for: Option<&'a [u8]>,
    upgrade: Option<&'a [u8]>,
    /// The fields the backend does not get, one bit each.
    dropped: [bool; MAX_HEADERS],
}

impl Checked<'_> {
    fn listed(&self, name: &[u8]) -> bool {
        self.listed[..self.n_listed]
            .iter()
            .chain(self.listed_more.iter())
            .any(|l| l.eq_ignore_ascii_case(name))
    }
}

/// Applies the rules a server and an intermediary must (RFC 9112 §3, §6;
/// RFC 9110 §7.2, §7.6.1, §7.8, §10.1.1) to a parsed head, in one pass over
/// its fields.
#[inline(always)]
fn check<'a>(head: &RequestHead<'a>, fwd: &Forwarding) -> Result<Checked<'a>, Refusal> {
    let (method, target) = (head.method, head.target);
    if method == "CONNECT" {
        // A reverse proxy opens no tunnels to where a client asks.
        return Err((
            StatusCode::METHOD_NOT_ALLOWED,
            "CONNECT is not supported by this proxy",
        ));
    }
    if target.len() > MAX_TARGET {
        return Err((StatusCode::URI_TOO_LONG, "request target too long"));
    }
    if head.fields.len() > MAX_HEADERS {
        return Err((
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "too many headers",
        ));
    }
    // RFC 9112 §3.2: origin-form, absolute-form, or `*` for OPTIONS.
    if !target.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return Err(bad("invalid request target"));
    }
    let (path, authority) = if target.starts_with('/') || (target == "*" && method == "OPTIONS") {
        (target, head.authority)
    } else if head.version == Version::Http2 {
        return Err(bad("invalid request target"));
    } else {
        match absolute_form(target) {
            Some((authority, path)) => (path, Some(authority)),
            None => return Err(bad("invalid request target")),
        }
    };
    let http10 = head.version == Version::Http10;

    let (xff, xfp) = (fwd.xff, fwd.xfp);
    let mut c = Checked {
        path,
        authority,
        host: None,
        has_host: authority.is_some(),
        http10,
        close: false,
        keep_alive_token: false,
        content_length: None,
        body: BodyFraming::None,
        expect_continue: false,
        listed: [b""; 8],
        n_listed: 0,
        listed_more: Vec::new(),
        forwarded_for: None,
        upgrade: None,
        dropped: [false; MAX_HEADERS],
    };
    let mut hosts = 0;
    let mut host_values: [Option<&[u8]>; 2] = [None, None];
    if head.version == Version::Http2 {
        // `:authority` is the Host field an HTTP/1.1 backend is sent.
        if let Some(a) = authority {
            host_values[0] = Some(a.as_bytes());
            hosts = 1;
        }
    }
    let mut te_lines = 0;
    let mut te_chunked = false;
    let mut expect_continue = false;
    let mut upgrade_token = false;
    // The fields the backend does not get, decided in the same pass by the
    // name (its length first): hop-by-hop ones, the framing and Expect
    // fields, the forwarding fields floatlb writes itself, a Host the
    // target's authority replaces. Those a Connection header names are left
    // out when the head is written (a Connection line may come after them).
    for (i, h) in head.fields.iter().enumerate() {
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
                if c.upgrade.is_some() {
                    return Err(bad("more than one Upgrade header"));
                }
                c.upgrade = Some(h.value);
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
                    return Err(bad("invalid Content-Length"));
                }
                let n = v.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
                if c.content_length.is_some_and(|c| c != n) {
                    return Err(bad("conflicting Content-Length values"));
                }
                c.content_length = Some(n);
                true
            }
            10 if is_name(name, b"connection") => {
                match fields::sole_connection_token(h.value) {
                    Some(ConnectionToken::Close) => c.close = true,
                    Some(ConnectionToken::KeepAlive) => c.keep_alive_token = true,
                    _ => {
                        for token in fields::connection_tokens(h.value) {
                            match token {
                                ConnectionToken::Close => c.close = true,
                                ConnectionToken::KeepAlive => c.keep_alive_token = true,
                                ConnectionToken::Name(name) if is_name(name, b"upgrade") => {
                                    upgrade_token = true
                                }
                                ConnectionToken::Name(name) if c.n_listed == c.listed.len() => {
                                    c.listed_more.push(name)
                                }
                                ConnectionToken::Name(name) => {
                                    c.listed[c.n_listed] = name;
                                    c.n_listed += 1;
                                }
                            }
                        }
                    }
                }
                true
            }
            10 => is_name(name, b"keep-alive"),
            15 if is_name(name, b"x-forwarded-for") => {
                c.forwarded_for = c.forwarded_for.or(Some(h.value));
                xff
            }
            16 => is_name(name, b"proxy-connection"),
            _ => false,
        };
        c.dropped[i] = drop;
    }
    // RFC 9112 §6.1 and §6.3: the body's framing must be unambiguous.
    if let (Some(n), max) = (c.content_length, fwd.max_body) {
        if max > 0 && n > max {
            return Err((
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body larger than max-body-size",
            ));
        }
    }
    c.body = if te_lines > 0 {
        if http10 {
            return Err(bad("Transfer-Encoding in an HTTP/1.0 request"));
        }
        if te_lines > 1 {
            return Err(bad("repeated Transfer-Encoding"));
        }
        if !te_chunked {
            return Err(bad("unsupported Transfer-Encoding"));
        }
        if c.content_length.is_some() {
            return Err(bad("both Content-Length and Transfer-Encoding"));
        }
        BodyFraming::Chunked
    } else {
        match c.content_length {
            Some(n) if n > 0 => BodyFraming::Length(n),
            // HTTP/2 DATA frames of no announced length: chunked for HTTP/1.1.
            None if head.body_follows => BodyFraming::Chunked,
            _ => BodyFraming::None,
        }
    };
    // RFC 9112 §3.2: one valid Host, required in HTTP/1.1.
    if let Err(reason) = fields::check_host(host_values.into_iter().flatten(), http10) {
        return Err(bad(reason));
    }
    c.host = authority.map(str::as_bytes).or(host_values[0]);
    c.has_host |= hosts > 0;
    // RFC 9110 §7.8: Upgrade counts only when Connection lists it, never in
    // HTTP/1.0, and here only on a request without a body.
    c.upgrade = c
        .upgrade
        .filter(|_| upgrade_token && !http10 && c.body == BodyFraming::None);
    // RFC 9110 §10.1.1: a 100 is never sent to an HTTP/1.0 client.
    c.expect_continue = expect_continue && !http10 && c.body != BodyFraming::None;
    Ok(c)
}

/// Parses a request head from `buf` and prepares the backend's head. `route`
/// is asked which route the request takes (once it passed every check); its
/// answer is kept in [`Prepared::route`].
pub fn prepare(buf: &[u8], fwd: &Forwarding, route: impl FnOnce(&Seen<'_>) -> u32) -> Parse {
    // Not initialised first: the parser writes the fields it finds.
    let mut storage = [std::mem::MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
    match parse(buf, &mut storage) {
        Ok(Some(head)) => match prepare_head(&head, fwd, route) {
            Ok(p) => Parse::Ready(p),
            Err((status, reason)) => Parse::Bad(status, reason),
        },
        Ok(None) => Parse::Partial,
        Err((status, reason)) => Parse::Bad(status, reason),
    }
}

/// Checks a head (HTTP/1 or HTTP/2), asks `route` which route it takes and
/// writes the backend's HTTP/1.1 head: the one path from a client's request
/// to what the proxy sends.
#[inline]
pub fn prepare_head(
    head: &RequestHead<'_>,
    fwd: &Forwarding,
    route: impl FnOnce(&Seen<'_>) -> u32,
) -> Result<Prepared, Refusal> {
    let c = check(head, fwd)?;
    let route = route(&Seen {
        method: head.method,
        host: c.host,
        target: c.path,
        headers: head.fields,
    });
    Ok(write(head, &c, fwd, route))
}

/// Writes the backend's head: the request line in HTTP/1.1, the client's
/// fields as sent minus those dropped (and those Connection names), then
/// Host from an authority, the forwarding fields, one framing field and the
/// upgrade.
#[inline(always)]
fn write(head: &RequestHead<'_>, c: &Checked<'_>, fwd: &Forwarding, route: u32) -> Prepared {
    let (method, path, raw) = (head.method, c.path, head.raw);
    // Room for the answer's head too: the buffer is used again for it.
    let mut out = Vec::with_capacity((head.len + 80).max(512));
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    let target_at = (out.len(), out.len() + path.len());
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let any_listed = c.n_listed > 0;
    let base = raw.as_ptr() as usize;
    let mut runs = fields::LineRuns::starting(0..0);
    for (i, h) in head.fields.iter().enumerate() {
        let name = h.name.as_bytes();
        // Host stays whatever Connection names (RFC 9110 §7.6.1: a connection
        // option never names a field meant for every recipient).
        if c.dropped[i] || (any_listed && c.listed(name) && !is_name(name, b"host")) {
            continue;
        }
        // Offsets in `raw`; a field from elsewhere (HTTP/2) wraps past its end.
        let ns = (name.as_ptr() as usize).wrapping_sub(base);
        let vs = (h.value.as_ptr() as usize).wrapping_sub(base);
        if ns < raw.len()
            && vs < raw.len()
            && runs.take(
                &mut out,
                raw,
                (ns, ns + name.len()),
                (vs, vs + h.value.len()),
            )
        {
            continue;
        }
        runs.flush(&mut out, raw);
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    runs.flush(&mut out, raw);
    if let Some(authority) = c.authority {
        // RFC 9112 §3.2.2: the target's authority replaces any Host sent;
        // RFC 9113 §8.3.1: `:authority` becomes the Host field.
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(authority.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if fwd.xff {
        // Appended to the first value the client sent.
        out.extend_from_slice(b"x-forwarded-for: ");
        if let Some(prev) = c.forwarded_for {
            out.extend_from_slice(prev);
            out.extend_from_slice(b", ");
        }
        let mut ip = IpText::default();
        ip.write(fwd.peer.ip());
        out.extend_from_slice(ip.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if fwd.xfp {
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
        // RFC 9110 §7.6.3: the version the client's message was received in.
        out.extend_from_slice(match head.version {
            Version::Http10 => b"via: 1.0 floatlb\r\n",
            Version::Http11 => b"via: 1.1 floatlb\r\n",
            Version::Http2 => b"via: 2 floatlb\r\n",
        });
    }
    match c.body {
        BodyFraming::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(n.to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        BodyFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        // A bodyless request whose method normally has a body says so.
        BodyFraming::None
            if c.content_length.is_some() || matches!(method, "POST" | "PUT" | "PATCH") =>
        {
            out.extend_from_slice(b"content-length: 0\r\n")
        }
        BodyFraming::None => {}
    }
    if let Some(protocols) = c.upgrade {
        out.extend_from_slice(b"upgrade: ");
        out.extend_from_slice(protocols);
        out.extend_from_slice(b"\r\nconnection: upgrade\r\n");
    }
    out.extend_from_slice(b"\r\n");
    let log = fwd.log.then(|| {
        let text = |wanted: &str| {
            head.fields
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(wanted))
                .map(|h| String::from_utf8_lossy(h.value).into_owned())
        };
        LogFields {
            at: SystemTime::now(),
            method: http::Method::from_bytes(method.as_bytes()).unwrap_or_default(),
            target: head.target.to_string(),
            referer: text("referer"),
            user_agent: text("user-agent"),
        }
    });
    Prepared {
        out,
        target: target_at,
        head_len: head.len,
        has_host: c.has_host,
        idempotent: fields::is_idempotent(method),
        head_request: method == "HEAD",
        upgrade: c.upgrade.is_some(),
        http10: c.http10,
        keep_alive: if c.http10 {
            c.keep_alive_token && !c.close
        } else {
            !c.close
        },
        body: c.body,
        expect_continue: c.expect_continue,
        log,
        route,
    }
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
