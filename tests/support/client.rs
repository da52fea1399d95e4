//! The tests' one HTTP/1 answer reader: reads an answer off a stream and not
//! a byte more (the head a byte at a time, then the body by its framing,
//! RFC 9112 §6.3), so a pipelined answer behind it stays in the socket.
//! Requests are written by the tests themselves, byte for byte.
#![allow(dead_code)]

use std::io::{ErrorKind, Read};

/// How an answer's body ends (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body: an answer to HEAD, a 1xx, 204 or 304.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`, up to the last chunk and its trailers.
    Chunked,
    /// Neither: the body runs until the server closes.
    Close,
}

/// One answer as read off the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// The status line and header lines as sent (names in the server's case),
    /// without the blank line.
    pub head: String,
    /// Header fields, names lower-cased, values trimmed, in order.
    pub headers: Vec<(String, String)>,
    /// The content: the chunks' data for a chunked answer.
    pub body: Vec<u8>,
    pub framing: Framing,
    /// Trailer fields of a chunked answer (names lower-cased).
    pub trailers: Vec<(String, String)>,
}

impl Answer {
    /// The first field `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        super::header(&self.headers, name)
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// (status, headers, body as text): the shape `raw_request` returns.
    pub fn parts(self) -> (u16, Vec<(String, String)>, String) {
        let text = self.text();
        (self.status, self.headers, text)
    }
}

/// Reads one answer to a request other than HEAD.
pub fn read_answer(s: &mut impl Read) -> Result<Answer, String> {
    read_answer_to(s, "GET")
}

/// Reads one answer to a `method` request: no body after a HEAD's head.
/// An interim answer (1xx) is returned as it is; read again for the next.
pub fn read_answer_to(s: &mut impl Read, method: &str) -> Result<Answer, String> {
    let head = read_head(s)?;
    let (status, headers) = parse_head(&head);
    if status == 0 {
        return Err(format!("not an HTTP/1 answer: {head:?}"));
    }
    let field = |name: &str| super::header(&headers, name);
    let chunked = field("transfer-encoding").is_some_and(|te| {
        te.rsplit(',')
            .next()
            .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
    });
    let framing = if method.eq_ignore_ascii_case("HEAD")
        || (100..200).contains(&status)
        || status == 204
        || status == 304
    {
        Framing::Empty
    } else if chunked {
        Framing::Chunked
    } else if let Some(len) = field("content-length") {
        Framing::Length(
            len.parse()
                .map_err(|_| format!("bad content-length in {head:?}"))?,
        )
    } else {
        Framing::Close
    };
    let mut trailers = Vec::new();
    let body = match framing {
        Framing::Empty => Vec::new(),
        Framing::Length(n) => {
            let mut body = vec![0u8; n as usize];
            s.read_exact(&mut body)
                .map_err(|e| format!("body ({n} bytes): {e} after {head:?}"))?;
            body
        }
        Framing::Chunked => read_chunks(s, &mut trailers)
            .map_err(|e| format!("chunked body: {e} after {head:?}"))?,
        Framing::Close => {
            let mut body = Vec::new();
            s.read_to_end(&mut body)
                .map_err(|e| format!("body until close: {e} after {head:?}"))?;
            body
        }
    };
    Ok(Answer {
        status,
        head: head.trim_end_matches("\r\n").to_string(),
        headers,
        body,
        framing,
        trailers,
    })
}

/// Reads one head (up to and with the blank line), a byte at a time.
pub fn read_head(s: &mut impl Read) -> Result<String, String> {
    let mut head = Vec::new();
    let mut b = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(0) => return Err(format!("closed in the head: {:?}", lossy(&head))),
            Ok(_) => head.push(b[0]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("head: {e} after {:?}", lossy(&head))),
        }
    }
    Ok(lossy(&head))
}

/// Status and fields (names lower-cased) of a head's text; status 0 when the
/// first line is not a status line.
pub fn parse_head(head: &str) -> (u16, Vec<(String, String)>) {
    let mut lines = head.lines();
    let status = lines
        .next()
        .filter(|l| l.starts_with("HTTP/"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers)
}

/// An answer another client already read and decoded (`curl -i`'s output):
/// the head, and everything after it as the body.
pub fn parse_response(text: &str) -> (u16, Vec<(String, String)>, String) {
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
    let (status, headers) = parse_head(head);
    (status, headers, body.to_string())
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A line ending in CRLF, a byte at a time, without the CRLF.
fn read_line(s: &mut impl Read) -> Result<String, String> {
    let mut line = Vec::new();
    let mut b = [0u8];
    while !line.ends_with(b"\r\n") {
        match s.read(&mut b) {
            Ok(0) => return Err(format!("closed in a line: {:?}", lossy(&line))),
            Ok(_) => line.push(b[0]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("{e} after {:?}", lossy(&line))),
        }
    }
    line.truncate(line.len() - 2);
    Ok(lossy(&line))
}

/// The data of a chunked body (RFC 9112 §7.1); trailer fields into `trailers`.
fn read_chunks(s: &mut impl Read, trailers: &mut Vec<(String, String)>) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line = read_line(s)?;
        let size = line.split(';').next().unwrap_or("").trim();
        let size =
            usize::from_str_radix(size, 16).map_err(|_| format!("bad chunk size {line:?}"))?;
        if size == 0 {
            break;
        }
        let start = body.len();
        body.resize(start + size, 0);
        s.read_exact(&mut body[start..])
            .map_err(|e| format!("chunk of {size}: {e}"))?;
        let end = read_line(s)?;
        if !end.is_empty() {
            return Err(format!("chunk data longer than {size}: {end:?}"));
        }
    }
    loop {
        let line = read_line(s)?;
        if line.is_empty() {
            return Ok(body);
        }
        if let Some((k, v)) = line.split_once(':') {
            trailers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
}
