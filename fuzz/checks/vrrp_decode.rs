//! What must hold for any bytes given to the VRRP decoders. Included with
//! `#[path]` by the `vrrp_decode` fuzz target and by the stable replay of its
//! corpus (`vrrp/tests/fuzz_corpus.rs`), so CI checks every input the fuzzer
//! kept against the same invariants. A broken invariant panics.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use vrrp::packet::{
    address_len, build_ipv4, parse_ipv4, Advert, ChecksumKind, ChecksumMode, PacketError,
    MAX_ADVER_INT_CS, VRRP_GROUP, VRRP_GROUP_V6,
};

const fn v4(a: Ipv4Addr) -> IpAddr {
    IpAddr::V4(a)
}
const fn v6(a: Ipv6Addr) -> IpAddr {
    IpAddr::V6(a)
}

/// (source, destination) pairs for decoding the raw bytes as a VRRP message:
/// multicast from a lab host, unicast between peers, and the extremes; then
/// the same for IPv6 (link-local source to ff02::12, unicast in 2001:2::/48),
/// where the addresses in the message are 16 bytes each.
pub const ADDRESS_PAIRS: [(IpAddr, IpAddr); 6] = [
    (v4(Ipv4Addr::new(198, 18, 0, 3)), v4(VRRP_GROUP)),
    (
        v4(Ipv4Addr::new(198, 18, 0, 4)),
        v4(Ipv4Addr::new(198, 18, 0, 3)),
    ),
    (v4(Ipv4Addr::UNSPECIFIED), v4(Ipv4Addr::BROADCAST)),
    (
        v6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 3)),
        v6(VRRP_GROUP_V6),
    ),
    (
        v6(Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 4)),
        v6(Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 3)),
    ),
    (
        v6(Ipv6Addr::UNSPECIFIED),
        v6(Ipv6Addr::new(
            0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff,
        )),
    ),
];

const MODES: [ChecksumMode; 2] = [ChecksumMode::Rfc5798, ChecksumMode::V2Compat];

/// What one input did, so a replay can tell whether its corpus still reaches
/// the success paths.
#[derive(Debug, Default, Clone, Copy)]
pub struct Outcome {
    /// `parse_ipv4` accepted the bytes as a datagram.
    pub ipv4: bool,
    /// Decodes (of the datagram's payload and of the raw bytes under each
    /// address pair) that yielded an advert.
    pub adverts: usize,
}

/// Runs the input through `parse_ipv4` and `Advert::decode` and checks the results.
pub fn check(data: &[u8]) -> Outcome {
    let mut out = Outcome::default();
    match parse_ipv4(data) {
        Ok((info, payload)) => {
            out.ipv4 = true;
            check_datagram(data, info, payload);
            out.adverts += usize::from(check_message(payload, info.src, info.dst));
        }
        Err(e) => {
            assert!(!e.to_string().is_empty() && !e.as_str().is_empty());
            if let PacketError::Truncated(n) = e {
                assert!(
                    n == data.len() && n < 20,
                    "Truncated({n}) for {} bytes",
                    data.len()
                );
            }
        }
    }
    for (src, dst) in ADDRESS_PAIRS {
        out.adverts += usize::from(check_message(data, src, dst));
    }
    out
}

/// The header facts come from the header, the payload is the bytes after
/// IHL, and wrapping the payload again gives the same result.
fn check_datagram(data: &[u8], info: vrrp::packet::IpInfo, payload: &[u8]) {
    let ihl = usize::from(data[0] & 0x0f) * 4;
    assert!(data[0] >> 4 == 4 && ihl >= 20);
    assert!(ihl + payload.len() <= data.len());
    assert_eq!(
        payload.as_ptr(),
        data[ihl..].as_ptr(),
        "payload does not start at IHL"
    );
    let (IpAddr::V4(src), IpAddr::V4(dst)) = (info.src, info.dst) else {
        panic!("parse_ipv4 gave IPv6 addresses: {info:?}");
    };
    assert_eq!(src.octets(), data[12..16]);
    assert_eq!(dst.octets(), data[16..20]);
    assert_eq!(info.ttl, data[8]);
    if 20 + payload.len() <= usize::from(u16::MAX) {
        let again = build_ipv4(src, dst, info.ttl, payload);
        assert_eq!(parse_ipv4(&again), Ok((info, payload)));
    }
}

/// Decodes `msg` as sent from `src` to `dst`; an advert that decodes must
/// re-encode to the same bytes and round-trip under both checksum modes.
/// Returns whether it decoded.
fn check_message(msg: &[u8], src: IpAddr, dst: IpAddr) -> bool {
    let alen = address_len(src);
    let (advert, kind) = match Advert::decode(msg, src, dst) {
        Ok(ok) => ok,
        Err(e) => {
            assert!(!e.to_string().is_empty() && !e.as_str().is_empty());
            match e {
                PacketError::Truncated(n) => assert!(n == msg.len() && n < 8),
                PacketError::AddressCountMismatch { declared, present } => {
                    assert_eq!(declared, usize::from(msg[3]));
                    assert_eq!(present, (msg.len() - 8) / alen);
                    assert_ne!(msg.len(), 8 + alen * declared);
                }
                _ => {}
            }
            return false;
        }
    };
    assert_eq!(msg.len(), 8 + alen * advert.addresses.len());
    assert!(advert
        .addresses
        .iter()
        .all(|a| a.is_ipv4() == src.is_ipv4()));
    assert!(advert.max_adver_int <= MAX_ADVER_INT_CS);

    // Nothing is lost: re-encoding in the mode the decoder recognised gives
    // the original bytes, save the 4 reserved bits (sent as 0, RFC 5798
    // §5.2.5) and the checksum they change, and 0xffff, the other one's-
    // complement spelling of a zero sum, which the encoder writes as 0x0000.
    let mode = match kind {
        ChecksumKind::PseudoHeader => ChecksumMode::Rfc5798,
        ChecksumKind::MessageOnly => ChecksumMode::V2Compat,
    };
    let again = advert.encode(src, dst, mode);
    let mut expect = msg.to_vec();
    expect[4] &= 0x0f;
    if msg[4] & 0xf0 != 0 {
        expect[6..8].copy_from_slice(&again[6..8]);
    } else if expect[6..8] == [0xff, 0xff] {
        expect[6..8].copy_from_slice(&[0, 0]);
    }
    assert_eq!(
        again, expect,
        "re-encoding {advert:?} ({kind:?}) changed the bytes"
    );

    for mode in MODES {
        let bytes = advert.encode(src, dst, mode);
        let (back, back_kind) = Advert::decode(&bytes, src, dst)
            .unwrap_or_else(|e| panic!("{advert:?} encoded with {mode:?} does not decode: {e}"));
        assert_eq!(back, advert, "round trip with {mode:?}");
        let want = match mode {
            ChecksumMode::Rfc5798 => ChecksumKind::PseudoHeader,
            // Where the pseudo-header sums to zero both encodings are the same
            // bytes and the decoder rightly reports the RFC 5798 form.
            ChecksumMode::V2Compat if bytes == advert.encode(src, dst, ChecksumMode::Rfc5798) => {
                ChecksumKind::PseudoHeader
            }
            ChecksumMode::V2Compat => ChecksumKind::MessageOnly,
        };
        assert_eq!(
            back_kind, want,
            "checksum kind after encoding with {mode:?}"
        );
    }
    true
}
