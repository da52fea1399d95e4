//! The old master's "drained" word to the new master after a planned handover (issue 35):
//! the new master passes the packets of flows it has no socket for back to the old master
//! (`net::steer`) until this datagram says the old one has none left, rather than until a
//! timeout. Sans-IO: the VIPs in, a datagram out, and back.
//!
//! It travels on the `[peers]` channel (the limit datagrams' UDP address), authenticated
//! with the same HMAC-SHA256 key, and names the VIPs the sender handed over:
//!
//! ```text
//! "FLBD" | version 1 | sender len | sender | sent unix ms u64 |
//! count u8 | count × (4 | 6, the address's 4 or 16 bytes) | HMAC-SHA256 tag (32)
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

/// The datagram saying that `sender` has drained, at `now_ms`, for `vips` (at most 255 are
/// carried; a pair has a handful).
pub fn seal_drained(key: &Key, sender: &str, now_ms: u64, vips: &[IpAddr]) -> Vec<u8> {
    let name = &sender.as_bytes()[..sender.len().min(64)];
    let vips = &vips[..vips.len().min(255)];
    let mut d = Vec::with_capacity(64 + vips.len() * 17);
    d.extend_from_slice(MAGIC);
    d.push(VERSION);
    d.push(name.len() as u8);
    d.extend_from_slice(name);
    d.extend_from_slice(&now_ms.to_be_bytes());
    d.push(vips.len() as u8);
    for vip in vips {
        match vip {
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
    let tag = hmac::sign(&key.0, &d);
    d.extend_from_slice(tag.as_ref());
    d
}

/// One authentic drained message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drained {
    pub sender: String,
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
        let count = r.u8()?;
        let mut vips = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let vip = match r.u8()? {
                4 => {
                    let b: [u8; 4] = r.bytes(4)?.try_into().map_err(|_| Drop::Malformed)?;
                    IpAddr::from(b)
                }
                6 => {
                    let b: [u8; 16] = r.bytes(16)?.try_into().map_err(|_| Drop::Malformed)?;
                    IpAddr::from(b)
                }
                _ => return Err(Drop::Malformed),
            };
            vips.push(vip);
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
        Ok(Drained { sender, vips })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: &str = "0123456789abcdef0123456789abcdef";

    fn key(text: &str) -> Key {
        Key::from_text(text).unwrap()
    }

    fn vips() -> Vec<IpAddr> {
        vec![
            "198.18.0.100".parse().unwrap(),
            "2001:2::100".parse().unwrap(),
        ]
    }

    #[test]
    fn a_drained_message_arrives_as_sent() {
        let d = seal_drained(&key(K), "lb1", 50_000, &vips());
        assert!(is_drained(&d));
        let got = DrainedReceiver::new("lb2")
            .open(&key(K), 50_010, &d)
            .unwrap();
        assert_eq!(
            got,
            Drained {
                sender: "lb1".into(),
                vips: vips()
            }
        );
        // The limit tables' receiver does not take it for one of its own.
        assert_eq!(
            super::super::Receiver::new("lb2").open(&key(K), 50_010, &d),
            Err(Drop::Malformed)
        );
    }

    #[test]
    fn what_is_not_authentic_fresh_new_and_a_peers_is_dropped() {
        let d = seal_drained(&key(K), "lb1", 60_000, &vips());
        let other = key("another key, 32 bytes or more ....");
        assert_eq!(
            DrainedReceiver::new("lb2").open(&other, 60_000, &d),
            Err(Drop::BadTag)
        );
        for i in 0..d.len() {
            let mut bad = d.clone();
            bad[i] ^= 0x01;
            assert!(DrainedReceiver::new("lb2")
                .open(&key(K), 60_000, &bad)
                .is_err());
        }
        for n in 0..d.len() {
            assert!(DrainedReceiver::new("lb2")
                .open(&key(K), 60_000, &d[..n])
                .is_err());
        }
        let mut rx = DrainedReceiver::new("lb2");
        assert!(rx.open(&key(K), 60_000, &d).is_ok());
        assert_eq!(rx.open(&key(K), 60_000, &d), Err(Drop::Replayed));
        let later = seal_drained(&key(K), "lb1", 60_001, &vips());
        assert!(rx.open(&key(K), 60_001, &later).is_ok());
        assert_eq!(
            DrainedReceiver::new("lb2").open(&key(K), 60_000 + MAX_SKEW_MS + 1, &d),
            Err(Drop::Stale)
        );
        assert_eq!(
            DrainedReceiver::new("lb1").open(&key(K), 60_000, &d),
            Err(Drop::OwnEcho)
        );
    }
}
