//! libFuzzer target: arbitrary bytes into the chunked body decoder
//! (`floatlb::http1::body::decode`), whole and in pieces whose sizes come from
//! the input's first bytes; the checks live in `checks/http1_chunked.rs`,
//! shared with the stable corpus replay in `tests/fuzz_corpus.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks/http1_chunked.rs"]
mod check;

fuzz_target!(|data: &[u8]| {
    check::check(data);
});
