//! Message body framing, both ways (RFC 9112 §6 and §7): Content-Length,
//! chunked coding with extensions and trailers, until the connection closes.
//! Sans-IO: bytes in, body pieces out; the request side (client uploads) and
//! the answer side (backend bodies) run the same decoder. Not for: head
//! parsing (`request`, `upstream`), sockets.

use bytes::{Buf, Bytes, BytesMut};

/// Longest chunk-size line (with extensions), and all trailers together.
pub const MAX_CHUNK_LINE: usize = 4096;
pub const MAX_TRAILERS: usize = 16 * 1024;

/// How a message's body ends (RFC 9112 §6.3): requests and answers alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Length(u64),
    Chunked(Chunk),
    /// Until the backend closes the connection.
    Close,
    /// 101 Switching Protocols: what follows is the new protocol's, relayed
    /// both ways as bytes.
    Tunnel,
}

/// Where a chunked decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one (bytes seen so far).
    Trailers(usize),
}

#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Body bytes, and whether they end the body.
    Data(Bytes, bool),
    End,
    NeedMore,
}

/// Takes the next body bytes out of `buf` as `framing` allows.
pub fn decode(framing: &mut Framing, buf: &mut BytesMut) -> Result<Step, String> {
    match framing {
        Framing::Length(0) => Ok(Step::End),
        Framing::Length(rest) => {
            if buf.is_empty() {
                return Ok(Step::NeedMore);
            }
            let n = (*rest).min(buf.len() as u64) as usize;
            *rest -= n as u64;
            Ok(Step::Data(buf.split_to(n).freeze(), *rest == 0))
        }
        // A tunnel's bytes are relayed by the client side, never decoded.
        Framing::Tunnel => Ok(Step::End),
        Framing::Close => {
            if buf.is_empty() {
                Ok(Step::NeedMore)
            } else {
                Ok(Step::Data(buf.split().freeze(), false))
            }
        }
        Framing::Chunked(state) => loop {
            match *state {
                Chunk::Size => {
                    let Some(eol) = buf.iter().position(|&b| b == b'\n') else {
                        if buf.len() > MAX_CHUNK_LINE {
                            return Err("chunk size line too long".into());
                        }
                        return Ok(Step::NeedMore);
                    };
                    if eol > MAX_CHUNK_LINE {
                        return Err("chunk size line too long".into());
                    }
                    let size = parse_chunk_size(&buf[..eol])?;
                    buf.advance(eol + 1);
                    *state = if size == 0 {
                        Chunk::Trailers(0)
                    } else {
                        Chunk::Data(size)
                    };
                }
                Chunk::Data(rest) => {
                    if buf.is_empty() {
                        return Ok(Step::NeedMore);
                    }
                    let n = rest.min(buf.len() as u64) as usize;
                    let data = buf.split_to(n).freeze();
                    *state = if rest == n as u64 {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(rest - n as u64)
                    };
                    return Ok(Step::Data(data, false));
                }
                Chunk::DataEnd => {
                    if buf.len() < 2 {
                        if buf.first().is_some_and(|&b| b != b'\r' && b != b'\n') {
                            return Err("chunk data not followed by CRLF".into());
                        }
                        if buf.first() == Some(&b'\n') {
                            buf.advance(1);
                            *state = Chunk::Size;
                            continue;
                        }
                        return Ok(Step::NeedMore);
                    }
                    match &buf[..2] {
                        b"\r\n" => buf.advance(2),
                        [b'\n', _] => buf.advance(1),
                        _ => return Err("chunk data not followed by CRLF".into()),
                    }
                    *state = Chunk::Size;
                }
                Chunk::Trailers(seen) => {
                    let Some(eol) = buf.iter().position(|&b| b == b'\n') else {
                        // A CR waiting for its LF may be the end of the trailers: the
                        // verdict must not depend on where a read ended.
                        let pending = buf.len() - usize::from(buf.last() == Some(&b'\r'));
                        if seen + pending > MAX_TRAILERS {
                            return Err("trailers too long".into());
                        }
                        return Ok(Step::NeedMore);
                    };
                    let line_empty = eol == 0 || (eol == 1 && buf[0] == b'\r');
                    buf.advance(eol + 1);
                    if line_empty {
                        *framing = Framing::Length(0);
                        return Ok(Step::End);
                    }
                    if seen + eol + 1 > MAX_TRAILERS {
                        return Err("trailers too long".into());
                    }
                    *state = Chunk::Trailers(seen + eol + 1);
                }
            }
        },
    }
}

/// The hex size at the start of a chunk-size line (extensions ignored).
pub fn parse_chunk_size(line: &[u8]) -> Result<u64, String> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let hex = line.split(|&b| b == b';').next().unwrap_or(&[]);
    let hex = hex.trim_ascii_end();
    if hex.is_empty() || hex.len() > 15 {
        return Err(format!(
            "invalid chunk size {:?}",
            String::from_utf8_lossy(hex)
        ));
    }
    let mut size = 0u64;
    for &b in hex {
        let d = (b as char)
            .to_digit(16)
            .ok_or_else(|| format!("invalid chunk size {:?}", String::from_utf8_lossy(hex)))?;
        size = size * 16 + d as u64;
    }
    Ok(size)
}

/// Writes `n` in hex and CRLF into `out` (a chunk-size line); returns its length.
pub fn chunk_size_line(mut n: usize, out: &mut [u8; 18]) -> usize {
    let mut digits = [0u8; 16];
    let mut len = 0;
    loop {
        digits[len] = b"0123456789abcdef"[n & 15];
        len += 1;
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    for i in 0..len {
        out[i] = digits[len - 1 - i];
    }
    out[len] = b'\r';
    out[len + 1] = b'\n';
    len + 2
}

/// Counts a piece of a request body against what is left of max-body-size
/// and frames it for the backend; over the limit, an InvalidInput error.
pub fn budgeted(budget: &mut u64, data: Bytes, chunked: bool) -> std::io::Result<Bytes> {
    *budget = budget.checked_sub(data.len() as u64).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "request body larger than max-body-size",
        )
    })?;
    Ok(frame(data, chunked))
}

/// Frames `data` for the backend: as it is, or as one chunk.
pub fn frame(data: Bytes, chunked: bool) -> Bytes {
    if !chunked || data.is_empty() {
        return data;
    }
    let mut size = [0u8; 18];
    let n = chunk_size_line(data.len(), &mut size);
    let mut out = BytesMut::with_capacity(n + data.len() + 2);
    out.extend_from_slice(&size[..n]);
    out.extend_from_slice(&data);
    out.extend_from_slice(b"\r\n");
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9112 §7.1: a piece re-framed as one chunk; max-body-size counted
    /// over the pieces, the one past it refused.
    #[test]
    fn pieces_framed_and_counted_against_the_budget() {
        assert_eq!(
            &frame(Bytes::from_static(b"hello"), true)[..],
            b"5\r\nhello\r\n"
        );
        assert_eq!(&frame(Bytes::from_static(b"hello"), false)[..], b"hello");
        assert!(
            frame(Bytes::new(), true).is_empty(),
            "no empty chunk: that one ends the body"
        );
        let mut budget = 8;
        assert!(budgeted(&mut budget, Bytes::from_static(b"12345"), false).is_ok());
        let over = budgeted(&mut budget, Bytes::from_static(b"6789"), false).unwrap_err();
        assert_eq!(over.kind(), std::io::ErrorKind::InvalidInput);
    }

    /// Decodes `wire` fed in pieces of `step` bytes; returns the body and what is left.
    fn decode_all(wire: &[u8], step: usize) -> Result<(Vec<u8>, Vec<u8>), String> {
        let mut framing = Framing::Chunked(Chunk::Size);
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut fed = 0;
        loop {
            match decode(&mut framing, &mut buf)? {
                Step::Data(d, _) => body.extend_from_slice(&d),
                Step::End => return Ok((body, buf.to_vec())),
                Step::NeedMore => {
                    if fed >= wire.len() {
                        return Err("incomplete".into());
                    }
                    let end = (fed + step).min(wire.len());
                    buf.extend_from_slice(&wire[fed..end]);
                    fed = end;
                }
            }
        }
    }

    #[test]
    fn chunked_bodies_decode_in_any_pieces() {
        let wire =
            b"5\r\nhello\r\n1;ext=1\r\n \r\nA\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";
        for step in [1, 2, 3, 7, 100] {
            let (body, rest) = decode_all(wire, step).unwrap();
            assert_eq!(body, b"hello 0123456789", "step {step}");
            // Bytes after the body are left for the next answer (and stop reuse).
            assert!(b"NEXT".starts_with(&rest), "step {step}: {rest:?}");
        }
        assert_eq!(decode_all(b"0\r\n\r\n", 1).unwrap().0, b"");
        assert_eq!(decode_all(b"3\nabc\n0\n\n", 2).unwrap().0, b"abc");
    }

    /// Random bodies, chunked at random sizes with random extensions and
    /// trailers, then fed in random pieces, decode to exactly the body, and a
    /// truncated copy never decodes as complete.
    #[test]
    fn chunked_round_trip_with_random_chunks_and_pieces() {
        let mut rand = crate::test_util::xorshift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..300 {
            let body: Vec<u8> = (0..rand(3000)).map(|i| (i % 251) as u8).collect();
            let mut wire = Vec::new();
            let mut at = 0;
            while at < body.len() {
                let n = (1 + rand(700) as usize).min(body.len() - at);
                wire.extend_from_slice(format!("{n:x}").as_bytes());
                if rand(3) == 0 {
                    wire.extend_from_slice(b";name=value");
                }
                wire.extend_from_slice(b"\r\n");
                wire.extend_from_slice(&body[at..at + n]);
                wire.extend_from_slice(b"\r\n");
                at += n;
            }
            wire.extend_from_slice(b"0\r\n");
            for t in 0..rand(3) {
                wire.extend_from_slice(format!("X-T{t}: v\r\n").as_bytes());
            }
            wire.extend_from_slice(b"\r\n");
            let step = 1 + rand(64) as usize;
            let (got, rest) = decode_all(&wire, step).unwrap();
            assert_eq!(got, body, "step {step}");
            assert!(rest.is_empty());
            let cut = rand(wire.len() as u64) as usize;
            assert!(
                decode_all(&wire[..cut], step).is_err(),
                "cut at {cut} of {}",
                wire.len()
            );
        }
    }

    #[test]
    fn broken_chunked_bodies_are_errors() {
        assert!(decode_all(b"zz\r\n", 4).unwrap_err().contains("chunk size"));
        assert!(decode_all(b"\r\n", 4).unwrap_err().contains("chunk size"));
        assert!(decode_all(b"ffffffffffffffff\r\n", 64)
            .unwrap_err()
            .contains("chunk size"));
        assert!(decode_all(b"3\r\nabcX\r\n", 4)
            .unwrap_err()
            .contains("CRLF"));
        let long = vec![b'1'; MAX_CHUNK_LINE + 10];
        assert!(decode_all(&long, 64).unwrap_err().contains("too long"));
        let mut trailers = b"0\r\n".to_vec();
        for _ in 0..2000 {
            trailers.extend_from_slice(b"X-T: 1234567890\r\n");
        }
        assert!(decode_all(&trailers, 512).unwrap_err().contains("trailers"));
        assert_eq!(decode_all(b"5\r\nhel", 2).unwrap_err(), "incomplete");
    }

    #[test]
    fn length_and_close_framing() {
        let mut f = Framing::Length(5);
        let mut buf = BytesMut::from(&b"hel"[..]);
        assert_eq!(
            decode(&mut f, &mut buf),
            Ok(Step::Data(Bytes::from_static(b"hel"), false))
        );
        assert_eq!(decode(&mut f, &mut buf), Ok(Step::NeedMore));
        buf.extend_from_slice(b"loEXTRA");
        assert_eq!(
            decode(&mut f, &mut buf),
            Ok(Step::Data(Bytes::from_static(b"lo"), true))
        );
        assert_eq!(&buf[..], b"EXTRA");
        assert_eq!(decode(&mut f, &mut buf), Ok(Step::End));
        let mut f = Framing::Close;
        let mut buf = BytesMut::from(&b"abc"[..]);
        assert_eq!(
            decode(&mut f, &mut buf),
            Ok(Step::Data(Bytes::from_static(b"abc"), false))
        );
        assert_eq!(decode(&mut f, &mut buf), Ok(Step::NeedMore));
    }

    #[test]
    fn chunk_sizes_are_hex() {
        for n in [1usize, 9, 10, 15, 16, 255, 1500, 65536, usize::MAX] {
            let mut out = [0u8; 18];
            let len = chunk_size_line(n, &mut out);
            assert_eq!(&out[..len], format!("{n:x}\r\n").as_bytes());
        }
    }
}
