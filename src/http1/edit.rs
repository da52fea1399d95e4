//! Field edits a route asks for (set, add, remove), applied to a head that is
//! already written: the request head for the backend, or the answer head for
//! the client. Sans-IO. Only end-to-end fields may be named: the framing and
//! hop-by-hop ones are floatlb's to write ([`editable`]).

use super::fields::is_hop_by_hop;

/// Set, add and remove, by field name (RFC 9110 §5.1: names compare without case).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldEdits {
    /// Lower case.
    pub remove: Vec<String>,
    /// Replaces every line of that name (lower case name, value).
    pub set: Vec<(String, String)>,
    /// Appended after the lines already there (RFC 9110 §5.3: a field line of
    /// the same name adds to the list).
    pub add: Vec<(String, String)>,
}

impl FieldEdits {
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty() && self.add.is_empty()
    }

    fn drops(&self, name: &[u8]) -> bool {
        self.remove
            .iter()
            .chain(self.set.iter().map(|(n, _)| n))
            .any(|n| name.eq_ignore_ascii_case(n.as_bytes()))
    }

    /// Applies the edits to `head` (a start line, field lines, the blank line).
    pub fn apply(&self, head: &mut Vec<u8>) {
        if self.is_empty() {
            return;
        }
        let Some(first_end) = find_crlf(head, 0) else {
            return;
        };
        let mut out = Vec::with_capacity(head.len() + 64);
        out.extend_from_slice(&head[..first_end + 2]);
        let mut at = first_end + 2;
        while let Some(end) = find_crlf(head, at) {
            if end == at {
                break;
            }
            let line = &head[at..end];
            let name = line.split(|&b| b == b':').next().unwrap_or(line);
            if !self.drops(name) {
                out.extend_from_slice(&head[at..end + 2]);
            }
            at = end + 2;
        }
        for (name, value) in self.set.iter().chain(&self.add) {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        *head = out;
    }
}

/// Rewrites the value of cookie `name` with `f` in every `field` line of a
/// written head: among a Cookie line's pairs (RFC 6265 §5.4), or in a
/// Set-Cookie line's first pair (§4.1.1). Lines without it stay as they are.
pub fn map_cookie(head: &mut Vec<u8>, field: &str, name: &str, f: impl Fn(&[u8]) -> Vec<u8>) {
    let Some(first_end) = find_crlf(head, 0) else {
        return;
    };
    let mut out = Vec::with_capacity(head.len() + 32);
    out.extend_from_slice(&head[..first_end + 2]);
    let mut at = first_end + 2;
    while let Some(end) = find_crlf(head, at) {
        let line = &head[at..end];
        let colon = line.iter().position(|&b| b == b':');
        match colon.filter(|&c| line[..c].eq_ignore_ascii_case(field.as_bytes())) {
            Some(c) if end > at => {
                out.extend_from_slice(&line[..=c]);
                out.push(b' ');
                let value = line[c + 1..].trim_ascii();
                let pairs: Vec<&[u8]> = value.split(|&b| b == b';').collect();
                let last = if field.eq_ignore_ascii_case("set-cookie") {
                    1
                } else {
                    pairs.len()
                };
                for (i, pair) in pairs.iter().enumerate() {
                    if i > 0 {
                        out.push(b';');
                    }
                    let lead = pair.len() - pair.trim_ascii_start().len();
                    let p = pair.trim_ascii_start();
                    match p.iter().position(|&b| b == b'=') {
                        Some(eq) if i < last && p[..eq].trim_ascii() == name.as_bytes() => {
                            out.extend_from_slice(&pair[..lead]);
                            out.extend_from_slice(&p[..=eq]);
                            out.extend_from_slice(&f(p[eq + 1..].trim_ascii()));
                        }
                        _ => out.extend_from_slice(pair),
                    }
                }
                out.extend_from_slice(b"\r\n");
            }
            _ => out.extend_from_slice(&head[at..end + 2]),
        }
        if end == at {
            break;
        }
        at = end + 2;
    }
    *head = out;
}

fn find_crlf(b: &[u8], from: usize) -> Option<usize> {
    b.get(from..)?
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|i| i + from)
}

/// Why a field may not be edited, if it may not: the framing fields and the
/// hop-by-hop ones (RFC 9110 §7.6.1) are written by floatlb from the message
/// itself, and an edit of them would desynchronise the two sides.
pub fn editable(name: &str) -> Result<(), String> {
    let lower = name.to_ascii_lowercase();
    if name.is_empty() || !name.bytes().all(is_tchar) {
        return Err(format!(
            "{name:?} is not a field name (RFC 9110 §5.1: a token)"
        ));
    }
    if is_hop_by_hop(lower.as_bytes()) || lower == "content-length" {
        return Err(format!(
            "{name} frames the message or is hop-by-hop: floatlb writes it"
        ));
    }
    Ok(())
}

/// Whether a field value may be written as it is (RFC 9110 §5.5: visible
/// characters, spaces and tabs; no line breaks).
pub fn valid_value(v: &str) -> bool {
    v.bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80)
        && v.trim() == v
}

/// RFC 9110 §5.6.2.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edits() -> FieldEdits {
        FieldEdits {
            remove: vec!["x-secret".into()],
            set: vec![("x-route".into(), "api".into())],
            add: vec![("cache-control".into(), "no-store".into())],
        }
    }

    /// RFC 9110 §5.3: set replaces every line of its name; add appends a line
    /// after those already there; remove takes every line of its name.
    #[test]
    fn set_add_remove_on_a_written_head() {
        let mut head = b"GET /a HTTP/1.1\r\nHost: h\r\nX-Route: old\r\nx-route: older\r\nX-SECRET: 1\r\nCache-Control: max-age=1\r\n\r\n".to_vec();
        edits().apply(&mut head);
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "GET /a HTTP/1.1\r\nHost: h\r\nCache-Control: max-age=1\r\nx-route: api\r\ncache-control: no-store\r\n\r\n"
        );
        let mut answer = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        edits().apply(&mut answer);
        assert_eq!(
            answer,
            b"HTTP/1.1 200 OK\r\nx-route: api\r\ncache-control: no-store\r\n\r\n"
        );
        let mut same = b"HTTP/1.1 204 No Content\r\nA: b\r\n\r\n".to_vec();
        FieldEdits::default().apply(&mut same);
        assert_eq!(same, b"HTTP/1.1 204 No Content\r\nA: b\r\n\r\n");
    }

    /// RFC 6265 §4.1.1 and §5.4: the value of one cookie changes, the other
    /// pairs and a Set-Cookie's attributes stay.
    #[test]
    fn a_cookie_value_is_rewritten_in_place() {
        let mut req = b"GET / HTTP/1.1\r\nCookie: a=1; SID=web2~abc; b=2\r\nX: y\r\n\r\n".to_vec();
        map_cookie(&mut req, "cookie", "SID", |v| {
            v.splitn(2, |&b| b == b'~').last().unwrap().to_vec()
        });
        assert_eq!(
            req,
            b"GET / HTTP/1.1\r\nCookie: a=1; SID=abc; b=2\r\nX: y\r\n\r\n"
        );
        let mut answer =
            b"HTTP/1.1 200 OK\r\nSet-Cookie: SID=abc; Path=/; SID=x\r\nset-cookie: other=1\r\n\r\n"
                .to_vec();
        map_cookie(&mut answer, "set-cookie", "SID", |v| [b"web2~", v].concat());
        assert_eq!(
            answer,
            b"HTTP/1.1 200 OK\r\nSet-Cookie: SID=web2~abc; Path=/; SID=x\r\nset-cookie: other=1\r\n\r\n"
        );
    }

    #[test]
    fn framing_and_hop_by_hop_fields_are_not_editable() {
        for n in [
            "Content-Length",
            "transfer-encoding",
            "Connection",
            "Upgrade",
            "TE",
        ] {
            assert!(editable(n).is_err(), "{n}");
        }
        assert!(editable("bad name").is_err());
        assert!(editable("X-Route").is_ok() && editable("host").is_ok());
        assert!(valid_value("a b\tc") && !valid_value("a\r\nb: c") && !valid_value(" a"));
    }
}
