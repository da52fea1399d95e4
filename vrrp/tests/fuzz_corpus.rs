//! Replays the `vrrp_decode` fuzz corpus (`fuzz/corpus/vrrp_decode`) on stable
//! with the fuzz target's own checks (`fuzz/checks/vrrp_decode.rs`): CI has no
//! nightly, so this is how the inputs the fuzzer found keep being tested.

#[path = "../../fuzz/checks/vrrp_decode.rs"]
mod check;
#[path = "../../fuzz/checks/corpus.rs"]
mod corpus;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use vrrp::packet::{build_ipv4, Advert, ChecksumMode, VRRP_GROUP};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/vrrp_decode")
}

#[test]
fn corpus_replays_cleanly() {
    let dir = corpus_dir();
    let files = corpus::files(&dir);

    let (mut datagrams, mut adverts, mut failed) = (0, 0, Vec::new());
    for path in &files {
        let data = std::fs::read(path).unwrap();
        match catch_unwind(AssertUnwindSafe(|| check::check(&data))) {
            Ok(out) => {
                datagrams += usize::from(out.ipv4);
                adverts += out.adverts;
            }
            Err(_) => failed.push(path.display().to_string()),
        }
    }
    println!(
        "replayed {} inputs from {}: {datagrams} parsed as IPv4, {adverts} decodes gave an advert",
        files.len(),
        dir.display()
    );
    assert!(failed.is_empty(), "checks failed on: {failed:#?}");
    // Without valid adverts only the error paths would be replayed.
    assert!(
        datagrams > 0 && adverts > 0,
        "corpus no longer reaches the success paths"
    );
}

/// Seeds for a fresh corpus: adverts from the encoder, as datagrams and as bare
/// messages, plus truncated copies; IPv6 adverts (16-byte addresses, the IPv6
/// pseudo-header) as bare messages, since a raw IPv6 socket delivers no header.
/// Run by hand (see fuzz/README.md):
/// `cargo test -p vrrp --test fuzz_corpus -- --ignored write_seeds`
#[test]
#[ignore = "writes files into fuzz/corpus/vrrp_decode"]
fn write_seeds() {
    let src = Ipv4Addr::new(198, 18, 0, 3);
    let vip = |i: u8| IpAddr::from(Ipv4Addr::new(198, 18, 0, 100 + i));
    let vip6 = |i: u16| IpAddr::from(Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x100 + i));
    let ll = IpAddr::from(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x100));
    let adverts = [
        (51, 150, 1, vec![vip(0)]),
        (1, 255, 100, vec![vip(0), vip(1), vip(2)]),
        (255, 0, 0x0fff, vec![]),
        (61, 150, 1, vec![ll, vip6(0)]),
        (2, 100, 100, vec![vip6(0), vip6(1)]),
    ];
    let dir = corpus_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let mut n = 0;
    for (vrid, priority, max_adver_int, addresses) in adverts {
        let v6 = addresses.iter().any(|a| a.is_ipv6());
        let a = Advert {
            vrid,
            priority,
            max_adver_int,
            addresses,
        };
        for mode in [ChecksumMode::Rfc5798, ChecksumMode::V2Compat] {
            let name = format!("seed-vrid{vrid}-{mode:?}");
            let mut seeds: Vec<(&str, Vec<u8>)> = Vec::new();
            if v6 {
                let (src6, dst6) = check::ADDRESS_PAIRS[3];
                let msg = a.encode(src6, dst6, mode);
                seeds.push(("v6-msg", msg.clone()));
                seeds.push(("v6-msg-cut", msg[..msg.len() - 1].to_vec()));
            } else {
                let msg = a.encode(src, VRRP_GROUP, mode);
                let dgram = build_ipv4(src, VRRP_GROUP, 255, &msg);
                seeds.push(("msg", msg.clone()));
                seeds.push(("ip", dgram.clone()));
                seeds.push(("msg-cut", msg[..msg.len() - 1].to_vec()));
                seeds.push(("ip-cut", dgram[..dgram.len() - 3].to_vec()));
                seeds.push(("ip-header-only", dgram[..20].to_vec()));
            }
            for (suffix, bytes) in seeds {
                std::fs::write(dir.join(format!("{name}-{suffix}")), bytes).unwrap();
                n += 1;
            }
        }
    }
    println!("wrote {n} seeds to {}", dir.display());
}
