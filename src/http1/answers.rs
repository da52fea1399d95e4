//! The bytes of what floatlb writes to a client itself: its own answers (the
//! 4xx and 5xx it gives, each with a Date, RFC 9110 §6.6.1), the head of a
//! backend's answer as relayed, a 101's head, and a 100 Continue. Sans-IO.

use std::time::SystemTime;

use http::StatusCode;

use super::response::Head;

/// RFC 9110 §15.2.1, sent before reading a body the client holds back.
pub const CONTINUE_100: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
/// Every method but CONNECT is forwarded (RFC 9110 §9.1).
const ALLOW: &[u8] = b"allow: GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, PATCH\r\n";
/// The type of floatlb's own answers' one-line text.
pub const ERROR_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// The text of an answer floatlb gives itself: "502 Bad Gateway: <reason>".
pub fn error_text(status: StatusCode, reason: &str) -> String {
    format!(
        "{} {}: {}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        reason
    )
}

/// A whole answer of floatlb's own with `text` as its body.
pub fn local(status: StatusCode, text: &str, http10: bool, keep_alive: bool) -> Vec<u8> {
    let mut out = local_head(
        status,
        ERROR_CONTENT_TYPE,
        None,
        text.len(),
        http10,
        keep_alive,
    );
    out.extend_from_slice(text.as_bytes());
    out
}

/// The head of an answer of floatlb's own: its body's type and length, and a
/// Location for a redirect (RFC 9110 §10.2.2).
pub fn local_head(
    status: StatusCode,
    content_type: &str,
    location: Option<&str>,
    len: usize,
    http10: bool,
    keep_alive: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(160 + location.map_or(0, str::len));
    let reason = status.canonical_reason().unwrap_or("");
    status_line(&mut out, http10, status, reason.as_bytes());
    if let Some(l) = location {
        out.extend_from_slice(b"location: ");
        out.extend_from_slice(l.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if len > 0 {
        out.extend_from_slice(b"content-type: ");
        out.extend_from_slice(content_type.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"cache-control: no-store\r\n");
    if status == StatusCode::METHOD_NOT_ALLOWED {
        // RFC 9110 §15.5.6: a 405 names what is allowed; floatlb refuses CONNECT only.
        out.extend_from_slice(ALLOW);
    }
    date_header(&mut out);
    out.extend_from_slice(b"content-length: ");
    out.extend_from_slice(len.to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    connection_header(&mut out, http10, keep_alive);
    out.extend_from_slice(b"\r\n");
    out
}

/// A backend's answer head as the client gets it: the status line in the
/// client's version, the fields passed on, a Date if the backend sent none,
/// `transfer-encoding: chunked` when the body is re-framed, the connection's fate.
pub fn relayed_head(head: &Head, http10: bool, chunked: bool, keep_alive: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    relayed_head_into(&mut out, head, http10, chunked, keep_alive);
    out
}

/// [`relayed_head`], appended to `out` (a buffer used again).
pub fn relayed_head_into(
    out: &mut Vec<u8>,
    head: &Head,
    http10: bool,
    chunked: bool,
    keep_alive: bool,
) {
    head.write_start(out, http10);
    if !head.has_date {
        date_header(out);
    }
    if chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    connection_header(out, http10, keep_alive);
    out.extend_from_slice(b"\r\n");
}

/// A 101 Switching Protocols as the backend sent it (its Upgrade kept, RFC
/// 9110 §7.8), with `connection: upgrade`.
pub fn switched_head(head: &Head) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    head.write_start(&mut out, false);
    out.extend_from_slice(b"connection: upgrade\r\n\r\n");
    out
}

/// A 308 Permanent Redirect to `location` (RFC 9110 §15.4.9: the method and
/// body are kept on the new request), for a cleartext request sent to https.
pub fn redirect(location: &str, http10: bool, keep_alive: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(160 + location.len());
    status_line(
        &mut out,
        http10,
        StatusCode::PERMANENT_REDIRECT,
        b"Permanent Redirect",
    );
    out.extend_from_slice(b"location: ");
    out.extend_from_slice(location.as_bytes());
    out.extend_from_slice(b"\r\ncontent-length: 0\r\n");
    date_header(&mut out);
    connection_header(&mut out, http10, keep_alive);
    out.extend_from_slice(b"\r\n");
    out
}

/// Where a cleartext request goes on the TLS listener: `host` (the request's
/// Host, its port dropped) with `tls_port` unless 443, then the target.
pub fn https_location(host: &str, tls_port: u16, target: &str) -> String {
    let name = match host.rfind(':') {
        // A port after the name, or after a bracketed IPv6 literal.
        Some(i) if !host[i..].contains(']') => &host[..i],
        _ => host,
    };
    let target = if target.starts_with('/') { target } else { "/" };
    if tls_port == 443 {
        format!("https://{name}{target}")
    } else {
        format!("https://{name}:{tls_port}{target}")
    }
}

/// The Strict-Transport-Security field (RFC 6797 §6.1) for `max_age` seconds.
pub fn hsts_field(max_age: u64) -> Vec<u8> {
    format!("strict-transport-security: max-age={max_age}\r\n").into_bytes()
}

/// The status line in the client's version.
fn status_line(out: &mut Vec<u8>, http10: bool, status: StatusCode, reason: &[u8]) {
    out.extend_from_slice(if http10 { b"HTTP/1.0 " } else { b"HTTP/1.1 " });
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason);
    out.extend_from_slice(b"\r\n");
}

fn connection_header(out: &mut Vec<u8>, http10: bool, keep_alive: bool) {
    match (http10, keep_alive) {
        (false, false) => out.extend_from_slice(b"connection: close\r\n"),
        (true, true) => out.extend_from_slice(b"connection: keep-alive\r\n"),
        _ => {}
    }
}

/// Appends a Date header with the current time.
fn date_header(out: &mut Vec<u8>) {
    with_date(|text| {
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(text.as_bytes());
        out.extend_from_slice(b"\r\n");
    });
}

/// The current time as a Date field's value (for HTTP/2's answers).
pub fn date_value() -> http::HeaderValue {
    with_date(|text| {
        http::HeaderValue::from_str(text).unwrap_or(http::HeaderValue::from_static(""))
    })
}

/// The current time in HTTP's format, formatted once a second.
fn with_date<R>(f: impl FnOnce(&str) -> R) -> R {
    thread_local! {
        static DATE: std::cell::RefCell<(u64, String)> = const {
            std::cell::RefCell::new((u64::MAX, String::new()))
        };
    }
    let now = SystemTime::now();
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with_borrow_mut(|(at, text)| {
        if *at != secs {
            *at = secs;
            *text = httpdate::fmt_http_date(now);
        }
        f(text)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn cleartext_requests_go_to_the_https_listener() {
        assert_eq!(
            https_location("a.test:8080", 443, "/x?y"),
            "https://a.test/x?y"
        );
        assert_eq!(https_location("a.test", 8443, "/"), "https://a.test:8443/");
        assert_eq!(
            https_location("[2001:2::1]:80", 443, "/"),
            "https://[2001:2::1]/"
        );
        assert_eq!(
            https_location("[2001:2::1]", 443, "*"),
            "https://[2001:2::1]/"
        );
        let r = redirect("https://a.test/", false, true);
        assert!(r.starts_with(b"HTTP/1.1 308 Permanent Redirect\r\nlocation: https://a.test/\r\n"));
    }

    use super::*;
    use crate::http1::response::{parse_response, Parsed};

    fn head(text: &str) -> Head {
        let Ok(Some(Parsed::Head(mut h, n, _, _))) = parse_response(text.as_bytes(), false, true)
        else {
            panic!("{text:?}")
        };
        h.attach(bytes::Bytes::copy_from_slice(&text.as_bytes()[..n]));
        h
    }

    /// RFC 9110 §6.6.1: a proxy's own answers and relayed ones without a Date get one.
    #[test]
    fn local_answers_have_a_date_a_length_and_say_how_the_connection_ends() {
        let text = error_text(StatusCode::BAD_GATEWAY, "backend web1 failed");
        assert_eq!(text, "502 Bad Gateway: backend web1 failed\n");
        let out = String::from_utf8(local(StatusCode::BAD_GATEWAY, &text, false, false)).unwrap();
        assert!(out.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{out}");
        assert!(out.contains("\r\ndate: "), "{out}");
        assert!(out.contains(&format!("content-length: {}\r\n", text.len())));
        assert!(out.contains("connection: close\r\n") && out.ends_with(&text));
        // HTTP/1.0 keeps the connection only when told.
        let out = String::from_utf8(local(StatusCode::NOT_FOUND, "x", true, true)).unwrap();
        assert!(out.starts_with("HTTP/1.0 404 ") && out.contains("connection: keep-alive\r\n"));
        let out = String::from_utf8(local(StatusCode::NOT_FOUND, "x", true, false)).unwrap();
        assert!(!out.contains("connection:") && !out.contains("allow:"));
        let out = String::from_utf8(local(StatusCode::METHOD_NOT_ALLOWED, "x", false, false));
        assert!(out.unwrap().contains("\r\nallow: GET, HEAD, POST"));
    }

    #[test]
    fn relayed_heads_keep_the_backends_fields_and_add_what_is_missing() {
        let h = head("HTTP/1.1 200 Fine\r\nX-A: 1\r\nConnection: keep-alive\r\n\r\n");
        let out = String::from_utf8(relayed_head(&h, false, true, true)).unwrap();
        assert!(
            out.starts_with("HTTP/1.1 200 Fine\r\nX-A: 1\r\ndate: "),
            "{out}"
        );
        assert!(out.ends_with("transfer-encoding: chunked\r\n\r\n"), "{out}");
        let h = head(
            "HTTP/1.1 200 OK\r\nDate: Mon, 30 Nov 2026 12:00:00 GMT\r\nContent-Length: 0\r\n\r\n",
        );
        let out = String::from_utf8(relayed_head(&h, true, false, false)).unwrap();
        assert_eq!(out.matches("ate: ").count(), 1, "{out}");
        assert!(out.starts_with("HTTP/1.0 200 OK\r\n"));
        let h = head(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        );
        let out = String::from_utf8(switched_head(&h)).unwrap();
        assert_eq!(
            out,
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nconnection: upgrade\r\n\r\n"
        );
    }
}
