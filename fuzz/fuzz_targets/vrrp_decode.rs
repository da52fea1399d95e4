//! libFuzzer target: arbitrary bytes into the VRRP decoders (`parse_ipv4`,
//! `Advert::decode`); the checks live in `checks/vrrp_decode.rs`, shared with
//! the stable corpus replay in `vrrp/tests/fuzz_corpus.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks/vrrp_decode.rs"]
mod check;

fuzz_target!(|data: &[u8]| {
    check::check(data);
});
