//! A backend's answer head (RFC 9112 §4, §6.3; RFC 9110 §7.6.1, §15.2):
//! parsed, its body's framing decided, its fields sorted into those passed on
//! and the hop-by-hop ones. Sans-IO: bytes in, a [`Head`] (spans into those
//! bytes) and a [`Framing`] out.

use bytes::Bytes;
use http::{StatusCode, Version};

use super::body::{Chunk, Framing};
use super::fields::{
    connection_tokens, is_hop_by_hop, is_name, sole_connection_token, ConnectionToken,
};

/// Most fields in an answer head.
const MAX_HEADERS: usize = 100;

#[derive(Debug)]
pub enum Parsed {
    /// A 1xx answer of this many bytes to skip.
    Informational(usize),
    /// The final head, its length, how its body ends and whether the
    /// connection stays open after it.
    Head(Head, usize, Framing, bool),
}

/// An answer's head as the backend sent it, with the headers to pass on:
/// hop-by-hop headers (and those Connection names) are left out, and so is
/// Content-Length when Transfer-Encoding overrides it.
#[derive(Debug)]
pub struct Head {
    /// The head's bytes; the spans below point into them.
    raw: Bytes,
    pub status: StatusCode,
    pub version: Version,
    /// The backend sent a Date header (a proxy adds one otherwise, RFC 9110 §6.6.1).
    pub has_date: bool,
    reason: (u32, u32),
    /// (name start, name end, value start, value end) of each header kept.
    fields: Vec<[u32; 4]>,
}

impl Head {
    /// The reason phrase as sent (may be empty).
    pub fn reason(&self) -> &[u8] {
        &self.raw[self.reason.0 as usize..self.reason.1 as usize]
    }

    /// The headers to pass on, in the order sent, as (name, value).
    pub fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.fields.iter().map(|f| {
            (
                &self.raw[f[0] as usize..f[1] as usize],
                &self.raw[f[2] as usize..f[3] as usize],
            )
        })
    }

    /// Appends the status line in the client's version and the fields passed
    /// on, as `name: value` lines. What the backend sent in exactly that form
    /// (the usual case) is copied as it is, each run of such lines at once.
    pub fn write_start(&self, out: &mut Vec<u8>, http10: bool) {
        let raw = &self.raw[..];
        let version: &[u8] = if http10 { b"HTTP/1.0 " } else { b"HTTP/1.1 " };
        let (rs, re) = (self.reason.0 as usize, self.reason.1 as usize);
        // The status line is kept as it is when it is as it would be written.
        let mut runs = super::fields::LineRuns::starting(0..0);
        if raw.starts_with(version)
            && raw.get(9..12) == Some(self.status.as_str().as_bytes())
            && raw.get(12) == Some(&b' ')
            && (rs == 13 || (rs, re) == (0, 0) && raw.get(13..15) == Some(b"\r\n"))
            && raw.get(13 + re.saturating_sub(rs)..15 + re.saturating_sub(rs)) == Some(b"\r\n")
        {
            runs = super::fields::LineRuns::starting(0..15 + re.saturating_sub(rs));
        } else {
            out.extend_from_slice(version);
            out.extend_from_slice(self.status.as_str().as_bytes());
            out.push(b' ');
            out.extend_from_slice(self.reason());
            out.extend_from_slice(b"\r\n");
        }
        for f in &self.fields {
            let [ns, ne, vs, ve] = f.map(|x| x as usize);
            if runs.take(out, raw, (ns, ne), (vs, ve)) {
                continue;
            }
            runs.flush(out, raw);
            out.extend_from_slice(&raw[ns..ne]);
            out.extend_from_slice(b": ");
            out.extend_from_slice(&raw[vs..ve]);
            out.extend_from_slice(b"\r\n");
        }
        runs.flush(out, raw);
    }

    /// A head from fields already parsed (an HTTP/2 answer's, about `count`
    /// of them), written out as an HTTP/1.1 head with no reason phrase,
    /// every field kept as given: the caller has left out what must not pass
    /// (RFC 9113 §8.2.2). Its lines are in the form [`Self::write_start`]
    /// copies in one run.
    pub fn from_fields<'a>(
        status: StatusCode,
        count: usize,
        fields: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    ) -> Head {
        // Room for `count` typical fields, so that it is seldom grown.
        let mut raw = Vec::with_capacity(16 + 48 * count);
        raw.extend_from_slice(b"HTTP/1.1 ");
        raw.extend_from_slice(status.as_str().as_bytes());
        raw.extend_from_slice(b" \r\n");
        let mut spans = Vec::with_capacity(count);
        let mut has_date = false;
        for (name, value) in fields {
            has_date |= is_name(name, b"date");
            let ns = raw.len() as u32;
            raw.extend_from_slice(name);
            raw.extend_from_slice(b": ");
            raw.extend_from_slice(value);
            raw.extend_from_slice(b"\r\n");
            let ne = ns + name.len() as u32;
            spans.push([ns, ne, ne + 2, ne + 2 + value.len() as u32]);
        }
        Head {
            raw: Bytes::from(raw),
            status,
            version: Version::HTTP_11,
            has_date,
            reason: (0, 0),
            fields: spans,
        }
    }

    /// Attaches the head's bytes (what [`parse_response`] read, `len` bytes).
    pub fn attach(&mut self, raw: Bytes) {
        self.raw = raw;
    }

    /// The head as an `http` response (tests compare with it).
    #[cfg(test)]
    pub fn to_response(&self) -> http::Response<()> {
        let mut map = http::HeaderMap::with_capacity(self.fields.len());
        for (name, value) in self.fields() {
            // httparse checked both, so these conversions do not fail.
            if let (Ok(n), Ok(v)) = (
                http::HeaderName::from_bytes(name),
                http::HeaderValue::from_bytes(value),
            ) {
                map.append(n, v);
            }
        }
        let mut resp = http::Response::new(());
        *resp.status_mut() = self.status;
        *resp.version_mut() = self.version;
        *resp.headers_mut() = map;
        resp
    }
}

pub fn parse_response(
    buf: &[u8],
    head_request: bool,
    upgrade: bool,
) -> Result<Option<Parsed>, String> {
    // Not initialised first: the parser writes the fields it finds.
    let mut headers = [std::mem::MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
    let mut r = httparse::Response::new(&mut []);
    let n = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut r,
        buf,
        &mut headers,
    ) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let code = r.code.unwrap_or(0);
    let status = StatusCode::from_u16(code).map_err(|_| format!("status {code}"))?;
    let switched = status == StatusCode::SWITCHING_PROTOCOLS;
    if switched && !upgrade {
        return Err("unrequested protocol switch".into());
    }
    if status.is_informational() && !switched {
        return Ok(Some(Parsed::Informational(n)));
    }
    let version = if r.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut has_te = false;
    let mut close = false;
    let mut keep_alive = false;
    let mut names_listed = false;
    let mut has_date = false;
    let base = buf.as_ptr() as usize;
    let at = |s: &[u8]| (s.as_ptr() as usize - base) as u32;
    // One pass: each field is sorted by its name (its length first) and kept
    // unless hop-by-hop; the rare heads whose other fields depend on the
    // whole head (a Connection list, Transfer-Encoding, a 101) are sorted
    // again below.
    let mut fields = Vec::with_capacity(r.headers.len());
    for h in r.headers.iter() {
        let name = h.name.as_bytes();
        let hop = match name.len() {
            4 if is_name(name, b"date") => {
                has_date = true;
                false
            }
            14 if is_name(name, b"content-length") => {
                let v =
                    content_length(h.value).ok_or_else(|| "invalid Content-Length".to_string())?;
                if length.is_some_and(|l| l != v) {
                    return Err("conflicting Content-Length".into());
                }
                length = Some(v);
                false
            }
            17 if is_name(name, b"transfer-encoding") => {
                has_te = true;
                // Only the last coding decides; `chunked` anywhere else is invalid.
                chunked = h
                    .value
                    .rsplit(|&b| b == b',')
                    .next()
                    .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
                true
            }
            10 if is_name(name, b"connection") => {
                match sole_connection_token(h.value) {
                    Some(ConnectionToken::Close) => close = true,
                    Some(ConnectionToken::KeepAlive) => keep_alive = true,
                    _ => {
                        for token in connection_tokens(h.value) {
                            match token {
                                ConnectionToken::Close => close = true,
                                ConnectionToken::KeepAlive => keep_alive = true,
                                ConnectionToken::Name(_) => names_listed = true,
                            }
                        }
                    }
                }
                true
            }
            _ => is_hop_by_hop(name),
        };
        if !hop {
            let (ns, vs) = (at(name), at(h.value));
            fields.push([ns, ns + name.len() as u32, vs, vs + h.value.len() as u32]);
        }
    }
    let mut reusable = match version {
        Version::HTTP_10 => keep_alive && !close,
        _ => !close,
    };
    let no_body =
        head_request || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    let framing = if switched {
        // RFC 9110 §15.2.2: the connection now speaks the protocol named in
        // Upgrade; nothing of it is HTTP's to frame.
        reusable = false;
        Framing::Tunnel
    } else if no_body {
        Framing::Length(0)
    } else if has_te {
        // Transfer-Encoding overrides Content-Length, and such an answer may be
        // a smuggling attempt: read it, then close the connection.
        if length.is_some() {
            reusable = false;
        }
        if chunked {
            Framing::Chunked(Chunk::Size)
        } else {
            reusable = false;
            Framing::Close
        }
    } else if let Some(l) = length {
        Framing::Length(l)
    } else {
        reusable = false;
        Framing::Close
    };
    if switched || has_te || names_listed {
        fields.clear();
        for h in r.headers.iter() {
            let name = h.name.as_bytes();
            // A 101 keeps its Upgrade (the protocol switched to) for the client.
            let kept_upgrade = switched && is_name(name, b"upgrade");
            if !kept_upgrade
                && (is_hop_by_hop(name)
                    || (has_te && is_name(name, b"content-length"))
                    || (names_listed && listed_in_connection(r.headers, name)))
            {
                continue;
            }
            let (ns, vs) = (at(name), at(h.value));
            fields.push([ns, ns + name.len() as u32, vs, vs + h.value.len() as u32]);
        }
    }
    let reason = r.reason.map_or((0, 0), |t| {
        let s = at(t.as_bytes());
        (s, s + t.len() as u32)
    });
    let head = Head {
        raw: Bytes::new(),
        status,
        version,
        has_date,
        reason,
        fields,
    };
    Ok(Some(Parsed::Head(head, n, framing, reusable)))
}

/// A Content-Length value: digits only (RFC 9112 §6.3), white space around
/// them allowed, at most `u64::MAX`.
pub(crate) fn content_length(value: &[u8]) -> Option<u64> {
    let v = value.trim_ascii();
    if v.is_empty() {
        return None;
    }
    v.iter().try_fold(0u64, |n, &d| {
        if !d.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Whether a Connection header among `headers` names `name` (RFC 9110 §7.6.1).
fn listed_in_connection(headers: &[httparse::Header<'_>], name: &[u8]) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .flat_map(|h| connection_tokens(h.value))
        .any(|t| matches!(t, ConnectionToken::Name(n) if n.eq_ignore_ascii_case(name)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header;

    fn head(text: &str, head_request: bool) -> (http::Response<()>, usize, Framing, bool) {
        match parse_response(text.as_bytes(), head_request, false) {
            Ok(Some(Parsed::Head(mut h, n, f, k))) => {
                h.attach(Bytes::copy_from_slice(&text.as_bytes()[..n]));
                (h.to_response(), n, f, k)
            }
            other => panic!("{text:?}: {other:?}"),
        }
    }

    fn malformed(text: &str) -> String {
        match parse_response(text.as_bytes(), false, false) {
            Err(m) => m,
            other => panic!("{text:?} accepted: {other:?}"),
        }
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let (r, n, f, keep) = head(
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: y\r\n\r\nhello",
            false,
        );
        assert_eq!(
            (r.status(), n, f, keep),
            (StatusCode::OK, 44, Framing::Length(5), true)
        );
        assert_eq!(r.headers()["x"], "y");
        let (_, _, f, keep) = head(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            false,
        );
        assert_eq!((f, keep), (Framing::Chunked(Chunk::Size), true));
        // Both: chunked wins, Content-Length goes, the connection is not reused.
        let (r, _, f, keep) = head(
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
        );
        assert_eq!((f, keep), (Framing::Chunked(Chunk::Size), false));
        assert!(!r.headers().contains_key(header::CONTENT_LENGTH));
        let (_, _, f, keep) = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false);
        assert_eq!((f, keep), (Framing::Close, false));
        let (_, _, f, keep) = head("HTTP/1.1 200 OK\r\nServer: x\r\n\r\n", false);
        assert_eq!((f, keep), (Framing::Close, false));
        // No body whatever the headers say: HEAD, 204, 304.
        let (_, _, f, _) = head("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", true);
        assert_eq!(f, Framing::Length(0));
        let (_, _, f, keep) = head("HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n", false);
        assert_eq!((f, keep), (Framing::Length(0), true));
        let (_, _, f, _) = head("HTTP/1.1 204 No Content\r\n\r\n", false);
        assert_eq!(f, Framing::Length(0));
        // Keep-alive rules of each version.
        let (_, _, _, keep) = head(
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            false,
        );
        assert!(!keep);
        let (r, _, _, keep) = head("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false);
        assert_eq!((r.version(), keep), (Version::HTTP_10, false));
        let (_, _, _, keep) = head(
            "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n",
            false,
        );
        assert!(keep);
        // Informational answers are skipped; a protocol switch was never asked for.
        let hints = "HTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n";
        let n = match parse_response(format!("{hints}HTTP/1.1 200").as_bytes(), false, false) {
            Ok(Some(Parsed::Informational(n))) => n,
            other => panic!("{other:?}"),
        };
        assert_eq!(n, hints.len());
        assert!(malformed("HTTP/1.1 101 Switching Protocols\r\n\r\n").contains("switch"));
        assert!(matches!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Le", false, false),
            Ok(None)
        ));
    }

    #[test]
    fn answer_heads_lose_hop_by_hop_headers() {
        let text = "HTTP/1.1 299 Fine Here\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nX-End: 2\r\nContent-Length: 0\r\n\r\n";
        let Ok(Some(Parsed::Head(mut h, n, _, keep))) =
            parse_response(text.as_bytes(), false, false)
        else {
            panic!("not a head")
        };
        h.attach(Bytes::copy_from_slice(&text.as_bytes()[..n]));
        assert!(keep && !h.has_date);
        assert_eq!(h.reason(), b"Fine Here");
        let fields: Vec<_> = h.fields().collect();
        assert_eq!(
            fields,
            [(&b"X-End"[..], &b"2"[..]), (b"Content-Length", b"0")]
        );
    }

    #[test]
    fn malformed_heads_are_refused() {
        assert!(
            malformed("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
                .contains("conflicting")
        );
        assert!(malformed("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n").contains("invalid"));
        assert!(malformed("HTTP/1.1 200 OK\r\nContent-Length: 1 2\r\n\r\n").contains("invalid"));
        assert!(malformed("HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n").contains("invalid"));
        malformed("HTTP/9.9 200 OK\r\n\r\n");
        malformed("garbage\r\n\r\n");
        malformed("HTTP/1.1 2000 OK\r\n\r\n");
        // Same Content-Length twice is one length.
        let (_, _, f, _) = head(
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n",
            false,
        );
        assert_eq!(f, Framing::Length(2));
    }
}
