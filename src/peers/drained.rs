//! What a node that hands its traffic over tells its peers for the handover steering
//! (issue 35, `net::steer`): **leaving** (an `[[anycast]]` node about to withdraw its route:
//! the others pass the packets of flows they have no socket for to it, at the address the
//! message names) and **drained** (the old master or the leaving node has no client
//! connection left: the others stop passing packets to it at once, rather than on a
//! timeout). Sans-IO: the VIPs in, a datagram out, and back.
//!
//! It travels on the `[peers]` channel (the limit datagrams' UDP address), authenticated
//! with the same HMAC-SHA256 key, and names the sender's `[peers]` address and its VIPs:
//!
//! ```text
//! "FLBD" | version 1 | sender len | sender | sent unix ms u64 | kind u8 (0 drained,
//! 1 leaving) | at | count u8 | count × address | HMAC-SHA256 tag (32)
//! address: 4 | 6, then the address's 4 or 16 bytes
//! ```
//! A receiver drops what [`super::Receiver`] would (not authentic, its own, stale) and a
//! message not newer than the last one it took from that sender (a replay). Not for the
//! limit tables' updates (`super::Sender`).

use std::collections::HashMap;
use std::net::IpAddr;

use aws_lc_rs::hmac;

use super::{Drop, Key, MAX_SKEW_MS, TAG_LEN, VERSION};

const MAGIC: &[u8; 4] = b"FLBD";

/// Whether `d` is a drained datagram (by its magic; nothing is checked yet).
pub fn is_drained(d: &[u8]) -> bool {
    d.starts_with(MAGIC)
}

/// What the sender says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// It has no client connection left on these VIPs: stop passing packets to it.
    Drained,
    /// It is about to stop receiving these VIPs' new flows: pass it the packets of flows
    /// you have no socket for.
    Leaving,
}

/// The datagram saying `kind` from `sender` (reachable at `at`), at `now_ms`, for `vips` (at
/// most 255 are carried; a node has a handful).
pub fn seal_drained(
    key: &Key,
    sender: &str,
    now_ms: u64,
    kind: Kind,
    at: IpAddr,
    vips: &[IpAddr],
) -> Vec<u8> {
    let name = &sender.as_bytes()[..sender.len().min(64)];
    let vips = &vips[..vips.len().min(255)];
    let mut d = Vec::with_capacity(64 + vips.len() * 17);
    d.extend_from_slice(MAGIC);
    d.push(VERSION);
    d.push(name.len() as u8);
    d.extend_from_slice(name);
    d.extend_from_slice(&now_ms.to_be_bytes());
    d.push(match kind {
        Kind::Drained => 0,
        Kind::Leaving => 1,
    });
    push_addr(&mut d, at);
    d.push(vips.len() as u8);
    for &vip in vips {
        push_addr(&mut d, vip);
    }
    let tag = hmac::sign(&key.0, &d);
    d.extend_from_slice(tag.as_ref());
    d
}

fn push_addr(d: &mut Vec<u8>, a: IpAddr) {
    match a {
        IpAddr::V4(a) => {
            d.push(4);
            d.extend_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            d.push(6);
            d.extend_from_slice(&a.octets());
        }
    }
}

fn read_addr(r: &mut super::Reader<'_>) -> Result<IpAddr, Drop> {
    Ok(match r.u8()? {
        4 => {
            let b: [u8; 4] = r.bytes(4)?.try_into().map_err(|_| Drop::Malformed)?;
            IpAddr::from(b)
        }
        6 => {
            let b: [u8; 16] = r.bytes(16)?.try_into().map_err(|_| Drop::Malformed)?;
            IpAddr::from(b)
        }
        _ => return Err(Drop::Malformed),
    })
}

/// One authentic message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drained {
    pub sender: String,
    pub kind: Kind,
    /// The sender's `[peers]` address: where packets are passed to.
    pub at: IpAddr,
    pub vips: Vec<IpAddr>,
}

/// The receiving side: the send time last taken from each sender.
pub struct DrainedReceiver {
    me: String,
    seen: HashMap<String, u64>,
}

impl DrainedReceiver {
    /// `me`: this node's own sender name, whose messages are dropped.
    pub fn new(me: &str) -> DrainedReceiver {
        DrainedReceiver {
            me: me.to_string(),
            seen: HashMap::new(),
        }
    }

    /// The message in `d` if it is authentic, fresh and a peer's; or why it was dropped.
    pub fn open(&mut self, key: &Key, now_ms: u64, d: &[u8]) -> Result<Drained, Drop> {
        if d.len() < MAGIC.len() + 2 + TAG_LEN || !is_drained(d) || d[4] != VERSION {
            return Err(Drop::Malformed);
        }
        let (body, tag) = d.split_at(d.len() - TAG_LEN);
        hmac::verify(&key.0, body, tag).map_err(|_| Drop::BadTag)?;
        let mut r = super::Reader { b: body, at: 5 };
        let n = usize::from(r.u8()?);
        let sender = String::from_utf8(r.bytes(n)?.to_vec()).map_err(|_| Drop::Malformed)?;
        let sent = r.u64()?;
        let kind = match r.u8()? {
            0 => Kind::Drained,
            1 => Kind::Leaving,
            _ => return Err(Drop::Malformed),
        };
        let at = read_addr(&mut r)?;
        let count = r.u8()?;
        let mut vips = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            vips.push(read_addr(&mut r)?);
        }
        if r.at != body.len() {
            return Err(Drop::Malformed);
        }
        if sender == self.me {
            return Err(Drop::OwnEcho);
        }
        if now_ms.abs_diff(sent) > MAX_SKEW_MS {
            return Err(Drop::Stale);
        }
        let last = self.seen.entry(sender.clone()).or_insert(0);
        if sent <= *last {
            return Err(Drop::Replayed);
        }
        *last = sent;
        Ok(Drained {
            sender,
            kind,
            at,
            vips,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: &str = "0123456789abcdef0123456789abcdef";

    fn key(text: &str) -> Key {
        Key::from_text(text).unwrap()
    }

    fn at() -> IpAddr {
        "2001:2::3".parse().unwrap()
    }

    fn vips() -> Vec<IpAddr> {
        vec![
            "198.18.0.100".parse().unwrap(),
            "2001:2::100".parse().unwrap(),
        ]
    }

    fn seal(sent: u64, kind: Kind) -> Vec<u8> {
        seal_drained(&key(K), "lb1", sent, kind, at(), &vips())
    }

    #[test]
    fn each_kind_arrives_as_sent() {
        for (sent, kind) in [(50_000, Kind::Leaving), (50_001, Kind::Drained)] {
            let d = seal(sent, kind);
            assert!(is_drained(&d));
            let got = DrainedReceiver::new("lb2").open(&key(K), 50_010, &d);
            let want = Drained {
                sender: "lb1".into(),
                kind,
                at: at(),
                vips: vips(),
            };
            assert_eq!(got, Ok(want));
            // The limit tables' receiver does not take it for one of its own.
            assert_eq!(
                super::super::Receiver::new("lb2").open(&key(K), 50_010, &d),
                Err(Drop::Malformed)
            );
        }
    }

    #[test]
    fn what_is_not_authentic_fresh_new_and_a_peers_is_dropped() {
        let d = seal(60_000, Kind::Drained);
        let other = key("another key, 32 bytes or more ....");
        let open = |k: &Key, me: &str, now: u64, d: &[u8]| DrainedReceiver::new(me).open(k, now, d);
        assert_eq!(open(&other, "lb2", 60_000, &d), Err(Drop::BadTag));
        for i in 0..d.len() {
            let mut bad = d.clone();
            bad[i] ^= 0x01;
            assert!(open(&key(K), "lb2", 60_000, &bad).is_err(), "byte {i}");
        }
        for n in 0..d.len() {
            assert!(open(&key(K), "lb2", 60_000, &d[..n]).is_err(), "{n} bytes");
        }
        let mut rx = DrainedReceiver::new("lb2");
        assert!(rx.open(&key(K), 60_000, &d).is_ok());
        assert_eq!(rx.open(&key(K), 60_000, &d), Err(Drop::Replayed));
        assert!(rx
            .open(&key(K), 60_001, &seal(60_001, Kind::Drained))
            .is_ok());
        assert_eq!(
            open(&key(K), "lb2", 60_000 + MAX_SKEW_MS + 1, &d),
            Err(Drop::Stale)
        );
        assert_eq!(open(&key(K), "lb1", 60_000, &d), Err(Drop::OwnEcho));
    }
}
