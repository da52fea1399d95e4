//! What must hold for any bytes given to the HTTP/1 body decoder
//! (`floatlb::http1::body::decode`). Included with `#[path]` by the
//! `http1_chunked` fuzz target, by `checks/http1_request.rs` (for the body
//! after a request head) and by the stable replay (`tests/fuzz_corpus.rs`), so
//! CI checks every input the fuzzer kept against the same invariants. A broken
//! invariant panics.
//!
//! The decoder is fed from a socket, so it must not matter how the bytes were
//! cut into reads: the same input decoded whole and in pieces must give the
//! same body, stop at the same byte and reach the same verdict.

use bytes::BytesMut;
use floatlb::http1::body::{chunk_size_line, decode, Chunk, Framing, Step};

/// How a decode ended when the input ran out (or before).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// `Step::End`: the body is whole.
    Complete,
    /// `Step::NeedMore` with every input byte given.
    NeedMore,
    /// `Err`: the body's framing is broken.
    Error,
}

/// What one decode of an input gave.
#[derive(Debug)]
pub struct Decoded {
    pub body: Vec<u8>,
    /// The length of each `Step::Data`, in order.
    pub pieces: Vec<usize>,
    pub verdict: Verdict,
    pub error: Option<String>,
    /// Input bytes the decoder took out of its buffer; for `Complete`, where
    /// the body's framing ends (what follows is the next message's).
    pub consumed: usize,
}

/// What one input did, for the replay's figures (the fuzz target ignores it).
#[allow(dead_code)]
#[derive(Debug, Default, Clone, Copy)]
pub struct Outcome {
    pub complete: bool,
    pub need_more: bool,
    pub error: bool,
    /// Body bytes decoded.
    pub body: usize,
}

/// The `http1_chunked` target: the first byte's low 3 bits say how many of
/// the next bytes are piece sizes (each byte + 1, used in turn; none: one byte
/// at a time); the rest is a chunked body, decoded whole and in those pieces.
pub fn check(data: &[u8]) -> Outcome {
    let (pieces, wire) = split_input(data);
    let d = check_framing(Framing::Chunked(Chunk::Size), wire, &pieces);
    Outcome {
        complete: d.verdict == Verdict::Complete,
        need_more: d.verdict == Verdict::NeedMore,
        error: d.verdict == Verdict::Error,
        body: d.body.len(),
    }
}

/// Piece sizes and the wire bytes of an `http1_chunked` input.
pub fn split_input(data: &[u8]) -> (Vec<usize>, &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return (vec![1], data);
    };
    let k = usize::from(first & 7).min(rest.len());
    let pieces = if k == 0 {
        vec![1]
    } else {
        rest[..k].iter().map(|&b| usize::from(b) + 1).collect()
    };
    (pieces, &rest[k..])
}

/// Decodes `wire` under `framing` whole and fed in `pieces`, checks that both
/// agree and what each framing promises, and returns the whole decode.
pub fn check_framing(framing: Framing, wire: &[u8], pieces: &[usize]) -> Decoded {
    let whole = run(framing, wire, &[]);
    let cut = run(framing, wire, pieces);
    let show = || format!("{framing:?}, pieces {pieces:?}, wire {:?}", Shown(wire));
    assert_eq!(
        (whole.verdict, whole.consumed),
        (cut.verdict, cut.consumed),
        "whole ({:?}) and in pieces ({:?}) differ: {}",
        whole.error,
        cut.error,
        show()
    );
    assert!(whole.body == cut.body, "bodies differ: {}", show());

    match framing {
        Framing::Length(n) => {
            let len = usize::try_from(n).unwrap_or(usize::MAX).min(wire.len());
            assert_eq!(whole.body, &wire[..len], "{}", show());
            assert_eq!(whole.consumed, len, "{}", show());
            let want = if len as u64 == n {
                Verdict::Complete
            } else {
                Verdict::NeedMore
            };
            assert_eq!(whole.verdict, want, "{}", show());
        }
        Framing::Chunked(_) => {
            if whole.verdict == Verdict::Complete {
                check_complete_chunked(framing, wire, &whole, &show);
            }
        }
        Framing::Close | Framing::Tunnel => {}
    }
    whole
}

/// A complete chunked body ends at its last byte, and re-framed as the proxy
/// sends it on (each decoded piece one chunk, then `0\r\n\r\n`) decodes to the
/// same body.
fn check_complete_chunked(
    framing: Framing,
    wire: &[u8],
    whole: &Decoded,
    show: &dyn Fn() -> String,
) {
    let end = whole.consumed;
    // The smallest complete body is "0\n\n"; each chunk adds its size line
    // and the line end after its data.
    assert!(whole.body.len() + 3 <= end, "{}", show());
    let exact = run(framing, &wire[..end], &[]);
    assert_eq!(exact.verdict, Verdict::Complete, "{}", show());
    assert_eq!(
        (&exact.body, exact.consumed),
        (&whole.body, end),
        "{}",
        show()
    );
    let short = run(framing, &wire[..end - 1], &[]);
    assert_ne!(
        short.verdict,
        Verdict::Complete,
        "complete without its last byte: {}",
        show()
    );

    let mut again = Vec::new();
    let mut at = 0;
    for &n in &whole.pieces {
        let mut line = [0u8; 18];
        let len = chunk_size_line(n, &mut line);
        again.extend_from_slice(&line[..len]);
        again.extend_from_slice(&whole.body[at..at + n]);
        again.extend_from_slice(b"\r\n");
        at += n;
    }
    again.extend_from_slice(b"0\r\n\r\n");
    let back = run(framing, &again, &[]);
    assert_eq!(
        (back.verdict, back.consumed),
        (Verdict::Complete, again.len()),
        "re-framed body does not decode ({:?}): {}",
        back.error,
        show()
    );
    assert!(
        back.body == whole.body,
        "re-framed body differs: {}",
        show()
    );
}

/// Decodes `wire` fed in `pieces` (sizes used in turn; empty: all at once),
/// checking every step.
pub fn run(framing: Framing, wire: &[u8], pieces: &[usize]) -> Decoded {
    let mut state = framing;
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let mut piece = 0;
    let mut feed = |buf: &mut BytesMut, fed: &mut usize| {
        let n = if pieces.is_empty() {
            wire.len()
        } else {
            let n = pieces[piece % pieces.len()].max(1);
            piece += 1;
            n
        };
        let end = fed.saturating_add(n).min(wire.len());
        buf.extend_from_slice(&wire[*fed..end]);
        *fed = end;
    };
    feed(&mut buf, &mut fed);
    let mut d = Decoded {
        body: Vec::new(),
        pieces: Vec::new(),
        verdict: Verdict::NeedMore,
        error: None,
        consumed: 0,
    };
    let show = |d: &Decoded| format!("{framing:?} at byte {} of {:?}", d.consumed, Shown(wire));
    // Each step takes a byte or ends the decode, and each feed adds one.
    for _ in 0..=2 * wire.len() + 2 {
        let before = buf.len();
        let step = decode(&mut state, &mut buf);
        assert!(buf.len() <= before, "decode grew its buffer: {}", show(&d));
        let took = before - buf.len();
        d.consumed += took;
        // Only ever from the front: what is left is the input's next bytes.
        assert!(
            buf[..] == wire[d.consumed..fed],
            "buffer is not the input's rest: {}",
            show(&d)
        );
        match step {
            Ok(Step::Data(data, last)) => {
                assert!(!data.is_empty(), "empty Data step: {}", show(&d));
                assert!(
                    data.len() <= took,
                    "{} data bytes from {took} consumed: {}",
                    data.len(),
                    show(&d)
                );
                // Body bytes pass unchanged: the last bytes taken.
                assert!(
                    data[..] == wire[d.consumed - data.len()..d.consumed],
                    "data are not the bytes consumed: {}",
                    show(&d)
                );
                d.body.extend_from_slice(&data);
                d.pieces.push(data.len());
                match framing {
                    Framing::Length(n) => {
                        assert_eq!(last, d.body.len() as u64 == n, "{}", show(&d))
                    }
                    _ => assert!(!last, "chunk data marked last: {}", show(&d)),
                }
            }
            Ok(Step::End) => {
                // Asked again, it stays ended and takes nothing (the next
                // request's bytes stay in the buffer).
                let left = buf.len();
                assert_eq!(decode(&mut state, &mut buf), Ok(Step::End), "{}", show(&d));
                assert_eq!(buf.len(), left, "took bytes after End: {}", show(&d));
                d.verdict = Verdict::Complete;
                return d;
            }
            Ok(Step::NeedMore) => {
                if fed == wire.len() {
                    d.verdict = Verdict::NeedMore;
                    return d;
                }
                feed(&mut buf, &mut fed);
            }
            Err(e) => {
                assert!(!e.trim().is_empty(), "empty error: {}", show(&d));
                d.verdict = Verdict::Error;
                d.error = Some(e);
                return d;
            }
        }
    }
    panic!("decode makes no progress: {}", show(&d));
}

/// Input bytes for a failure message: text where printable, cut when long.
pub struct Shown<'a>(pub &'a [u8]);

impl std::fmt::Debug for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const MAX: usize = 600;
        let text = String::from_utf8_lossy(&self.0[..self.0.len().min(MAX)]);
        write!(f, "{text:?}")?;
        if self.0.len() > MAX {
            write!(f, " (+{} more bytes)", self.0.len() - MAX)?;
        }
        Ok(())
    }
}
