//! libFuzzer target: arbitrary bytes as what a client sends, into
//! `floatlb::http1::request::prepare` and, after each head, the body decoder;
//! the checks live in `checks/http1_request.rs`, shared with the stable corpus
//! replay in `tests/fuzz_corpus.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks/http1_request.rs"]
mod check;

fuzz_target!(|data: &[u8]| {
    check::check(data);
});
