//! libFuzzer target: arbitrary UTF-8 into `floatlb::config::parse`; the checks
//! live in `checks/config_load.rs`, shared with the stable corpus replay in
//! `tests/fuzz_corpus.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks/config_load.rs"]
mod check;

fuzz_target!(|data: &[u8]| {
    // The loader takes `&str` (load() rejects non-UTF-8 before parse sees it).
    if let Ok(text) = std::str::from_utf8(data) {
        check::check(text);
    }
});
