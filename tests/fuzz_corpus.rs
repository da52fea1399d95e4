//! Replays the fuzz corpora of the floatlb crate on stable with each fuzz
//! target's own checks (`fuzz/checks/<target>.rs`): CI has no nightly, so this
//! is how the inputs the fuzzer found keep being tested.
//!
//! - `fuzz/corpus/config_load` (`checks/config_load.rs`)
//! - `fuzz/corpus/http1_request` (`checks/http1_request.rs`)
//! - `fuzz/corpus/http1_chunked` (`checks/http1_chunked.rs`)

#[path = "../fuzz/checks/config_load.rs"]
mod config_load;
#[path = "../fuzz/checks/corpus.rs"]
mod corpus;
// Includes `checks/http1_chunked.rs` as `http1_request::chunked`.
#[path = "../fuzz/checks/http1_request.rs"]
mod http1_request;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use http1_request::chunked as http1_chunked;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

/// Runs `check` on every file of `dir` (which must hold some); fails the test
/// with the list of files that broke a check (each one's panic message is
/// printed above it), else returns each file's result.
fn replay<T>(dir: &Path, check: impl Fn(&[u8]) -> T) -> Vec<T> {
    let (results, failed) = run_all(dir, check);
    assert!(failed.is_empty(), "checks failed on: {failed:#?}");
    results
}

/// Each file's result, and the files that broke a check.
fn run_all<T>(dir: &Path, check: impl Fn(&[u8]) -> T) -> (Vec<T>, Vec<String>) {
    let files = corpus::files(dir);
    let mut results = Vec::with_capacity(files.len());
    let mut failed = Vec::new();
    for path in &files {
        let data = std::fs::read(path).unwrap();
        match catch_unwind(AssertUnwindSafe(|| check(&data))) {
            Ok(r) => results.push(r),
            Err(_) => failed.push(path.display().to_string()),
        }
    }
    (results, failed)
}

#[test]
fn config_load_corpus_replays_cleanly() {
    let dir = corpus_dir("config_load");
    // As in the fuzz target: the loader only ever sees UTF-8.
    let results = replay(&dir, |data| {
        std::str::from_utf8(data).ok().map(config_load::check)
    });
    let loaded = results.iter().filter(|r| **r == Some(true)).count();
    let not_utf8 = results.iter().filter(|r| r.is_none()).count();
    println!(
        "replayed {} inputs from {}: {loaded} loaded, {} rejected, {not_utf8} skipped (not UTF-8)",
        results.len(),
        dir.display(),
        results.len() - loaded - not_utf8
    );
    // Without a config that loads only the error paths would be replayed.
    assert!(loaded > 0, "corpus no longer holds a config that loads");
}

#[test]
fn http1_request_corpus_replays_cleanly() {
    let dir = corpus_dir("http1_request");
    let results = replay(&dir, http1_request::check);
    let sum = |f: fn(&http1_request::Outcome) -> usize| results.iter().map(f).sum::<usize>();
    let (ready, bad, partial) = (sum(|o| o.ready), sum(|o| o.bad), sum(|o| o.partial));
    let (length, chunked, upgrades) = (
        sum(|o| o.length_bodies),
        sum(|o| o.chunked_bodies),
        sum(|o| o.upgrades),
    );
    println!(
        "replayed {} inputs from {}: {ready} heads prepared, {bad} refused, {partial} partial; \
         bodies decoded: {length} by length, {chunked} chunked; {upgrades} upgrades",
        results.len(),
        dir.display()
    );
    // Each path the checks cover must still be reached.
    assert!(
        ready > 0 && bad > 0 && partial > 0 && length > 0 && chunked > 0 && upgrades > 0,
        "corpus no longer reaches every path"
    );
    assert!(
        results.iter().any(|o| o.ready > 1),
        "corpus no longer holds pipelined requests"
    );
}

#[test]
fn http1_chunked_corpus_replays_cleanly() {
    let dir = corpus_dir("http1_chunked");
    let results = replay(&dir, http1_chunked::check);
    let count = |f: fn(&http1_chunked::Outcome) -> bool| results.iter().filter(|o| f(o)).count();
    let (complete, need_more, error) = (
        count(|o| o.complete),
        count(|o| o.need_more),
        count(|o| o.error),
    );
    println!(
        "replayed {} inputs from {}: {complete} complete, {need_more} need more, {error} errors",
        results.len(),
        dir.display()
    );
    assert!(
        complete > 0 && need_more > 0 && error > 0,
        "corpus no longer reaches every verdict"
    );
    assert!(
        results.iter().any(|o| o.complete && o.body > 0),
        "corpus no longer holds a complete body with data"
    );
}

/// The hand-written seeds of `fuzz/corpus/http1_request` and
/// `fuzz/corpus/http1_chunked`. Run by hand (see fuzz/README.md):
/// `cargo test --test fuzz_corpus -- --ignored write_http1_seeds`
#[test]
#[ignore = "writes files into fuzz/corpus/http1_request and fuzz/corpus/http1_chunked"]
fn write_http1_seeds() {
    const H: &str = "Host: t\r\n";
    let post = |fields: &str, body: &str| format!("POST /u HTTP/1.1\r\n{H}{fields}\r\n{body}");
    let chunked = |body: &str| post("Transfer-Encoding: chunked\r\n", body);
    let requests: Vec<(&str, String)> = vec![
        ("get", format!("GET / HTTP/1.1\r\n{H}\r\n")),
        ("get-http10-no-host", "GET /a?b=1 HTTP/1.0\r\n\r\n".into()),
        ("get-leading-crlf", format!("\r\n\r\nGET / HTTP/1.1\r\n{H}\r\n")),
        ("get-bare-lf", "GET / HTTP/1.1\nHost: t\nAccept: */*\n\n".into()),
        ("get-partial", format!("GET / HTTP/1.1\r\n{H}Accept: */*\r\n")),
        ("get-host-ipv6", "GET / HTTP/1.1\r\nHost: [2001:db8::1]:8080\r\n\r\n".into()),
        ("bad-host-missing", "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n".into()),
        ("bad-host-twice", format!("GET / HTTP/1.1\r\n{H}Host: u\r\n\r\n")),
        ("bad-connect", "CONNECT shop:443 HTTP/1.1\r\nHost: shop:443\r\n\r\n".into()),
        (
            "bad-too-many-headers",
            format!("GET / HTTP/1.1\r\n{H}{}\r\n", "X: 1\r\n".repeat(100)),
        ),
        ("bad-obs-fold", format!("GET / HTTP/1.1\r\n{H}X: a\r\n b\r\n\r\n")),
        ("bad-bare-cr", format!("GET / HTTP/1.1\r\n{H}X: a\rb\r\n\r\n")),
        ("bad-nul", format!("GET / HTTP/1.1\r\n{H}X: a\0b\r\n\r\n")),
        ("bad-space-before-colon", "GET / HTTP/1.1\r\nHost : t\r\n\r\n".into()),
        ("hop-by-hop", format!("GET / HTTP/1.1\r\n{H}Connection: keep-alive, X-Hop, te\r\nX-Hop: 1\r\nTE: trailers\r\nKeep-Alive: 5\r\nProxy-Connection: keep-alive\r\nTrailer: X-T\r\nUpgrade: h2c\r\nx-hop: 2\r\nAccept: */*\r\n\r\n")),
        ("forwarded-fields", format!("GET / HTTP/1.1\r\n{H}X-Forwarded-For: 198.18.0.1\r\nX-Forwarded-For: 198.18.0.2\r\nX-Forwarded-Proto: https\r\nConnection: X-Forwarded-For\r\n\r\n")),
        ("absolute-form", "GET http://Shop:8080/a?b HTTP/1.1\r\nHost: other\r\n\r\n".into()),
        ("absolute-form-no-path-no-host", "GET https://shop HTTP/1.1\r\n\r\n".into()),
        ("absolute-form-http10", "GET http://[2001:db8::1]/x HTTP/1.0\r\n\r\n".into()),
        ("bad-absolute-form-userinfo", format!("GET http://user@shop/ HTTP/1.1\r\n{H}\r\n")),
        ("bad-absolute-form-query-only", format!("GET http://shop?q HTTP/1.1\r\n{H}\r\n")),
        ("options-star", format!("OPTIONS * HTTP/1.1\r\n{H}\r\n")),
        ("upgrade-websocket", format!("GET /chat HTTP/1.1\r\n{H}Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n\x01\x05hello")),
        ("upgrade-not-listed", format!("GET / HTTP/1.1\r\n{H}Upgrade: websocket\r\n\r\n")),
        ("upgrade-with-body", post("Upgrade: websocket\r\nConnection: upgrade\r\nContent-Length: 3\r\n", "abc")),
        ("expect-100-continue", format!("PUT /u HTTP/1.1\r\n{H}Expect: 100-Continue\r\nContent-Length: 3\r\n\r\nabc")),
        ("expect-http10", "PUT /u HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc".into()),
        ("post-no-body", post("", "")),
        ("post-length", post("Content-Length: 5\r\n", "hello")),
        ("post-length-zero", post("Content-Length: 000\r\n", "")),
        ("post-length-short", post("Content-Length: 10\r\n", "hello")),
        ("post-length-twice-same", post("Content-Length: 5\r\ncontent-length: 5\r\n", "hello")),
        ("post-chunked", chunked("5;name=value\r\nhello\r\n1\r\n \r\n0\r\nX-Trailer: 1\r\n\r\n")),
        ("post-chunked-bare-lf", chunked("3\nabc\n0\n\n")),
        ("post-chunked-bad-size", chunked("zz\r\nhello\r\n0\r\n\r\n")),
        ("post-chunked-huge-size", chunked("fffffffffffffff\r\nabc")),
        ("post-chunked-too-huge-size", chunked("10000000000000000\r\nabc")),
        ("smuggle-cl-te", post("Content-Length: 6\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\nG")),
        ("smuggle-te-cl", post("Transfer-Encoding: chunked\r\nContent-Length: 6\r\n", "0\r\n\r\nG")),
        ("smuggle-cl-differ", post("Content-Length: 5\r\nContent-Length: 6\r\n", "hello!")),
        ("smuggle-cl-list", post("Content-Length: 5, 5\r\n", "hello")),
        ("smuggle-cl-plus", post("Content-Length: +5\r\n", "hello")),
        ("smuggle-te-chunked-identity", post("Transfer-Encoding: chunked, identity\r\n", "0\r\n\r\n")),
        ("smuggle-te-xchunked", post("Transfer-Encoding: xchunked\r\n", "0\r\n\r\n")),
        ("smuggle-te-twice", post("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n")),
        ("smuggle-te-http10", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".into()),
        ("smuggle-te-space-name", post("Transfer-Encoding : chunked\r\n", "0\r\n\r\n")),
        ("smuggle-te-obs-fold", post("Transfer-Encoding:\r\n chunked\r\n", "0\r\n\r\n")),
        (
            "pipelined",
            format!(
                "GET /1 HTTP/1.1\r\n{H}\r\n{}{}GET /4 HTTP/1.1\r\n{H}Connection: close\r\n\r\n",
                post("Content-Length: 3\r\n", "abc"),
                chunked("3\r\nabc\r\n0\r\n\r\n"),
            ),
        ),
        (
            "pipelined-http10-keep-alive",
            "GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nHEAD /b HTTP/1.0\r\n\r\n".into(),
        ),
    ];
    // http1_chunked inputs: piece sizes (each 1..=256, at most 7; none: one
    // byte at a time), then the wire bytes.
    let seed = |pieces: &[usize], wire: &[u8]| {
        let mut s = vec![pieces.len() as u8];
        s.extend(pieces.iter().map(|&n| (n - 1) as u8));
        s.extend_from_slice(wire);
        s
    };
    let long_line = format!("1;{}\r\nx\r\n0\r\n\r\n", "e".repeat(4200));
    let limit_line = format!("1;{}\nx\r\n0\r\n\r\n", "e".repeat(4094));
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("empty", seed(&[], b"")),
        ("last-chunk-only", seed(&[], b"0\r\n\r\n")),
        ("one-chunk", seed(&[], b"5\r\nhello\r\n0\r\n\r\n")),
        (
            "one-chunk-pieces",
            seed(&[3, 7], b"5\r\nhello\r\n0\r\n\r\n"),
        ),
        (
            "chunks-hex-sizes",
            seed(
                &[2],
                b"A\r\n0123456789\r\na\r\nabcdefghij\r\n0005\r\nhello\r\n0\r\n\r\n",
            ),
        ),
        (
            "extensions",
            seed(
                &[4],
                b"5;a=b;c=\"q;x\"\r\nhello\r\n5 ; x\r\nworld\r\n0;last\r\n\r\n",
            ),
        ),
        (
            "trailers",
            seed(&[1], b"3\r\nabc\r\n0\r\nX-T: 1\r\nY: 2\r\n\r\n"),
        ),
        ("trailer-obs-fold", seed(&[1], b"0\r\nX-T: 1\r\n 2\r\n\r\n")),
        ("bare-lf", seed(&[1], b"3\nabc\n0\n\n")),
        (
            "mixed-line-ends",
            seed(&[2, 1], b"3\r\nabc\n4\nabcd\r\n0\n\r\n"),
        ),
        (
            "next-request-after",
            seed(&[5], b"2\r\nhi\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n"),
        ),
        ("truncated-in-data", seed(&[1], b"5\r\nhel")),
        ("truncated-after-data", seed(&[1], b"5\r\nhello\r")),
        ("truncated-in-trailers", seed(&[1], b"0\r\nX-T: 1\r\n")),
        ("bad-size-letters", seed(&[1], b"zz\r\nhello\r\n0\r\n\r\n")),
        ("bad-size-empty", seed(&[], b"\r\nhello\r\n0\r\n\r\n")),
        ("bad-size-negative", seed(&[], b"-1\r\nhello\r\n0\r\n\r\n")),
        ("bad-size-0x", seed(&[], b"0x5\r\nhello\r\n0\r\n\r\n")),
        (
            "bad-size-leading-space",
            seed(&[], b" 5\r\nhello\r\n0\r\n\r\n"),
        ),
        (
            "size-trailing-space",
            seed(&[], b"5 \t\r\nhello\r\n0\r\n\r\n"),
        ),
        ("size-bare-cr", seed(&[], b"5\r\r\nhello\r\n0\r\n\r\n")),
        ("size-nul", seed(&[], b"5\0\r\nhello\r\n0\r\n\r\n")),
        (
            "extension-nul-cr",
            seed(&[], b"5;\0a\rb\r\nhello\r\n0\r\n\r\n"),
        ),
        ("bad-data-end", seed(&[2], b"3\r\nabcX\r\n0\r\n\r\n")),
        ("bad-data-end-cr", seed(&[1], b"3\r\nabc\rX0\r\n\r\n")),
        ("huge-size", seed(&[1], b"fffffffffffffff\r\nabc")),
        ("too-huge-size", seed(&[1], b"ffffffffffffffff\r\nabc")),
        (
            "too-many-zeros",
            seed(&[], b"0000000000000005\r\nhello\r\n0\r\n\r\n"),
        ),
        (
            "size-line-at-limit",
            seed(&[256, 100], limit_line.as_bytes()),
        ),
        ("size-line-too-long", seed(&[256], long_line.as_bytes())),
    ];
    for (target, seeds) in [
        (
            "http1_request",
            requests
                .into_iter()
                .map(|(n, s)| (n, s.into_bytes()))
                .collect::<Vec<_>>(),
        ),
        ("http1_chunked", bodies),
    ] {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in &seeds {
            std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
        }
        println!("wrote {} seeds to {}", seeds.len(), dir.display());
    }
}
