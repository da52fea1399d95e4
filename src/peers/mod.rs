//! The pair's shared per-client counts, on the wire: what one node tells its
//! peers of its tracking tables, so that after a failover a client over its
//! limit is still over it (HAProxy's `peers` section does this for stick
//! tables). Sans-IO: batches of updates in, datagrams out, and back.
//!
//! A datagram carries updates (table, client, the sender's entry for it with
//! its times as ages, so that the two nodes' clocks need not agree) and ends
//! with an HMAC-SHA256 tag under the key both nodes
//! read from `[peers] key-file`. A receiver drops, and counts by reason, what
//! is not authentic (wrong tag), not for it (another protocol or version),
//! replayed (a sequence number already seen from that sender), stale (sent
//! too long ago), or its own. Nothing in a datagram is trusted before its tag
//! is checked; nothing panics on input.
//!
//! ```text
//! "FLBP" | version 1 | sender len | sender | seq u64 | sent unix ms u64 |
//! count u16 | count × (table len u8 | table | client id (16) |
//! requests now, before | errors now, before (4 × u32) |
//! period age | bucket ahead | last seen age (3 × u64 µs)) |
//! HMAC-SHA256 tag (32)
//! ```
//! Big-endian. A batch too large for one datagram is split.

mod drained;

use std::collections::HashMap;

use aws_lc_rs::hmac;

pub use drained::{is_drained, seal_drained, Drained, DrainedReceiver, Kind};

const MAGIC: &[u8; 4] = b"FLBP";
const VERSION: u8 = 1;
const TAG_LEN: usize = 32;
/// Largest datagram sent: under a 1500-byte MTU with IPv6 and UDP headers.
pub const MAX_DATAGRAM: usize = 1400;
/// Shortest key accepted from the key file.
pub const MIN_KEY_LEN: usize = 32;
/// How far a datagram's send time may be from the receiver's clock.
pub const MAX_SKEW_MS: u64 = 30_000;

/// One client's entry in one table, as the sender has it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub table: String,
    /// The client: its address as 16 bytes (IPv4 mapped into IPv6).
    pub id: [u8; 16],
    /// Requests in the current period and the one before.
    pub requests: (u32, u32),
    /// Error answers in the current period and the one before.
    pub errors: (u32, u32),
    /// Microseconds since the current period began.
    pub period_age: u64,
    /// Microseconds the token bucket runs ahead of now (0: full).
    pub bucket_ahead: u64,
    /// Microseconds since the client was last seen.
    pub seen_age: u64,
}

/// Bytes of an update after its table name.
const UPDATE_LEN: usize = 16 + 4 * 4 + 3 * 8;

/// What a receiver made of a datagram it dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    /// Not this protocol or version, or cut short.
    Malformed,
    /// The tag is wrong: another key, or altered on the way.
    BadTag,
    /// A sequence number already seen from this sender.
    Replayed,
    /// Sent longer ago (or later) than the receiver's clock allows.
    Stale,
    /// Sent by this node itself (a looped multicast, a misconfigured peer list).
    OwnEcho,
}

impl Drop {
    pub const ALL: [Drop; 5] = [
        Drop::Malformed,
        Drop::BadTag,
        Drop::Replayed,
        Drop::Stale,
        Drop::OwnEcho,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Drop::Malformed => "malformed",
            Drop::BadTag => "bad_tag",
            Drop::Replayed => "replayed",
            Drop::Stale => "stale",
            Drop::OwnEcho => "own",
        }
    }
}

/// The key both nodes share, from the key file's text.
pub struct Key(hmac::Key);

impl Key {
    /// The file's text, trimmed, is the key: at least [`MIN_KEY_LEN`] bytes
    /// (`openssl rand -base64 32` writes 44).
    pub fn from_text(text: &str) -> Result<Key, String> {
        let secret = text.trim();
        if secret.len() < MIN_KEY_LEN {
            return Err(format!(
                "the key is {} bytes; at least {MIN_KEY_LEN} are needed (openssl rand -base64 32)",
                secret.len()
            ));
        }
        Ok(Key(hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes())))
    }
}

impl Key {
    /// Four 64-bit seeds for `purpose`, the same on every node with this
    /// key (HMAC-SHA256 of the purpose).
    pub fn seeds(&self, purpose: &[u8]) -> [u64; 4] {
        let tag = hmac::sign(&self.0, purpose);
        let b = tag.as_ref();
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i * 8..i * 8 + 8]);
            u64::from_be_bytes(w)
        };
        [word(0), word(1), word(2), word(3)]
    }
}

/// The sending side: this node's name and the sequence of its datagrams.
pub struct Sender {
    name: String,
    seq: u64,
}

impl Sender {
    /// `name` identifies this node to its peers (at most 64 bytes); `seq0`
    /// should grow across restarts (the start time in ms does), so that a
    /// peer does not take a restarted node's datagrams for replays.
    pub fn new(name: &str, seq0: u64) -> Sender {
        let mut name = name.to_string();
        while name.len() > 64 {
            name.pop();
        }
        Sender { name, seq: seq0 }
    }

    /// The datagrams that carry `updates`, each at most [`MAX_DATAGRAM`]
    /// bytes; an update whose table name is over 255 bytes is left out.
    pub fn seal(&mut self, key: &Key, now_ms: u64, updates: &[Update]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < updates.len() {
            self.seq += 1;
            let mut d = Vec::with_capacity(MAX_DATAGRAM);
            d.extend_from_slice(MAGIC);
            d.push(VERSION);
            d.push(self.name.len() as u8);
            d.extend_from_slice(self.name.as_bytes());
            d.extend_from_slice(&self.seq.to_be_bytes());
            d.extend_from_slice(&now_ms.to_be_bytes());
            let count_at = d.len();
            d.extend_from_slice(&[0, 0]);
            let mut count: u16 = 0;
            while i < updates.len() && count < u16::MAX {
                let u = &updates[i];
                let Ok(t) = u8::try_from(u.table.len()) else {
                    i += 1;
                    continue;
                };
                let size = 1 + usize::from(t) + UPDATE_LEN;
                if d.len() + size + TAG_LEN > MAX_DATAGRAM {
                    break;
                }
                d.push(t);
                d.extend_from_slice(u.table.as_bytes());
                d.extend_from_slice(&u.id);
                for n in [u.requests.0, u.requests.1, u.errors.0, u.errors.1] {
                    d.extend_from_slice(&n.to_be_bytes());
                }
                for n in [u.period_age, u.bucket_ahead, u.seen_age] {
                    d.extend_from_slice(&n.to_be_bytes());
                }
                count += 1;
                i += 1;
            }
            if count == 0 {
                // Nothing fitted (only oversized updates were left).
                self.seq -= 1;
                continue;
            }
            d[count_at..count_at + 2].copy_from_slice(&count.to_be_bytes());
            let tag = hmac::sign(&key.0, &d);
            d.extend_from_slice(tag.as_ref());
            out.push(d);
        }
        out
    }
}

/// The receiving side: the highest sequence number seen from each sender.
pub struct Receiver {
    me: String,
    seen: HashMap<String, u64>,
}

impl Receiver {
    /// `me`: this node's own sender name, whose datagrams are dropped.
    pub fn new(me: &str) -> Receiver {
        Receiver {
            me: me.to_string(),
            seen: HashMap::new(),
        }
    }

    /// The updates of an authentic, fresh datagram from a peer, with its
    /// sender's name; or why it was dropped.
    pub fn open(
        &mut self,
        key: &Key,
        now_ms: u64,
        d: &[u8],
    ) -> Result<(String, Vec<Update>), Drop> {
        if d.len() < MAGIC.len() + 2 + TAG_LEN || &d[..4] != MAGIC || d[4] != VERSION {
            return Err(Drop::Malformed);
        }
        let (body, tag) = d.split_at(d.len() - TAG_LEN);
        // Checked before anything else is read from the datagram.
        hmac::verify(&key.0, body, tag).map_err(|_| Drop::BadTag)?;
        let mut r = Reader { b: body, at: 5 };
        let name_len = usize::from(r.u8()?);
        let name = String::from_utf8(r.bytes(name_len)?.to_vec()).map_err(|_| Drop::Malformed)?;
        let seq = r.u64()?;
        let sent = r.u64()?;
        let count = r.u16()?;
        let mut updates = Vec::with_capacity(usize::from(count).min(256));
        for _ in 0..count {
            let t = usize::from(r.u8()?);
            let table = String::from_utf8(r.bytes(t)?.to_vec()).map_err(|_| Drop::Malformed)?;
            let mut id = [0u8; 16];
            id.copy_from_slice(r.bytes(16)?);
            let requests = (r.u32()?, r.u32()?);
            let errors = (r.u32()?, r.u32()?);
            updates.push(Update {
                table,
                id,
                requests,
                errors,
                period_age: r.u64()?,
                bucket_ahead: r.u64()?,
                seen_age: r.u64()?,
            });
        }
        if r.at != body.len() {
            return Err(Drop::Malformed);
        }
        if name == self.me {
            return Err(Drop::OwnEcho);
        }
        if now_ms.abs_diff(sent) > MAX_SKEW_MS {
            return Err(Drop::Stale);
        }
        let last = self.seen.entry(name.clone()).or_insert(0);
        if seq <= *last {
            return Err(Drop::Replayed);
        }
        *last = seq;
        Ok((name, updates))
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], Drop> {
        let end = self.at.checked_add(n).ok_or(Drop::Malformed)?;
        let out = self.b.get(self.at..end).ok_or(Drop::Malformed)?;
        self.at = end;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, Drop> {
        Ok(self.bytes(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, Drop> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, Drop> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, Drop> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
}

/// The bulk message (a certificate and its key, the runtime's `acme/pair.rs`): too
/// large for a datagram, so it goes over a short TCP connection, sealed
/// with AES-256-GCM under a key both nodes derive from the shared key
/// (confidential, for the private key it carries, and authentic):
///
/// ```text
/// "FLBA" | version 1 | sender len | sender | sent unix ms u64 |
/// nonce (12) | AES-256-GCM(payload) with the bytes before the nonce as AAD
/// ```
const BULK_MAGIC: &[u8; 4] = b"FLBA";
/// The largest bulk message accepted.
pub const MAX_BULK: usize = 256 * 1024;

fn bulk_key(key: &Key) -> aws_lc_rs::aead::LessSafeKey {
    let seeds = key.seeds(b"floatlb bulk transfer v1");
    let mut raw = [0u8; 32];
    for (i, w) in seeds.iter().enumerate() {
        raw[i * 8..i * 8 + 8].copy_from_slice(&w.to_be_bytes());
    }
    let unbound = aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, &raw)
        .expect("a 32-byte AES-256 key");
    aws_lc_rs::aead::LessSafeKey::new(unbound)
}

/// Seals `payload` from `sender` at `now_ms` as a bulk message.
pub fn seal_bulk(key: &Key, sender: &str, now_ms: u64, payload: &[u8]) -> Result<Vec<u8>, String> {
    use aws_lc_rs::rand::SecureRandom;
    let name = &sender.as_bytes()[..sender.len().min(255)];
    let mut out = Vec::with_capacity(payload.len() + 64);
    out.extend_from_slice(BULK_MAGIC);
    out.push(VERSION);
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.extend_from_slice(&now_ms.to_be_bytes());
    let mut nonce = [0u8; 12];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| "no randomness")?;
    let aad = aws_lc_rs::aead::Aad::from(out.clone());
    let mut sealed = payload.to_vec();
    bulk_key(key)
        .seal_in_place_append_tag(
            aws_lc_rs::aead::Nonce::assume_unique_for_key(nonce),
            aad,
            &mut sealed,
        )
        .map_err(|_| "sealing failed")?;
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Opens a bulk message at `now_ms` for node `me`: the sender and the payload.
pub fn open_bulk(key: &Key, me: &str, now_ms: u64, msg: &[u8]) -> Result<(String, Vec<u8>), Drop> {
    if msg.len() > MAX_BULK || msg.len() < 4 + 2 || &msg[..4] != BULK_MAGIC || msg[4] != VERSION {
        return Err(Drop::Malformed);
    }
    let n = msg[5] as usize;
    let head_len = 6 + n + 8;
    if msg.len() < head_len + 12 + 16 {
        return Err(Drop::Malformed);
    }
    let sender = String::from_utf8_lossy(&msg[6..6 + n]).into_owned();
    let mut sent = [0u8; 8];
    sent.copy_from_slice(&msg[6 + n..head_len]);
    let sent = u64::from_be_bytes(sent);
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(&msg[head_len..head_len + 12]);
    let aad = aws_lc_rs::aead::Aad::from(&msg[..head_len]);
    let mut body = msg[head_len + 12..].to_vec();
    let plain = bulk_key(key)
        .open_in_place(
            aws_lc_rs::aead::Nonce::assume_unique_for_key(nonce),
            aad,
            &mut body,
        )
        .map_err(|_| Drop::BadTag)?;
    let plain = plain.to_vec();
    if sender == me {
        return Err(Drop::OwnEcho);
    }
    if sent.abs_diff(now_ms) > MAX_SKEW_MS {
        return Err(Drop::Stale);
    }
    Ok((sender, plain))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> Key {
        Key::from_text(text).unwrap()
    }

    const K: &str = "0123456789abcdef0123456789abcdef";

    fn update(i: u32) -> Update {
        let mut id = [0u8; 16];
        id[10..].copy_from_slice(&[0xff, 0xff, 198, 18, (i >> 8) as u8, i as u8]);
        Update {
            table: "per-ip".into(),
            id,
            requests: (i * 3, i),
            errors: (i, 0),
            period_age: u64::from(i) * 1000,
            bucket_ahead: 5,
            seen_age: 7,
        }
    }

    #[test]
    fn updates_arrive_as_sent_split_over_datagrams() {
        let updates: Vec<Update> = (0..500).map(update).collect();
        let mut tx = Sender::new("lb1", 1000);
        let datagrams = tx.seal(&key(K), 5_000, &updates);
        assert!(datagrams.len() > 1, "500 updates need several datagrams");
        assert!(datagrams.iter().all(|d| d.len() <= MAX_DATAGRAM));
        let mut rx = Receiver::new("lb2");
        let mut got = Vec::new();
        for d in &datagrams {
            let (from, u) = rx.open(&key(K), 5_010, d).unwrap();
            assert_eq!(from, "lb1");
            got.extend(u);
        }
        assert_eq!(got, updates);
    }

    #[test]
    fn what_is_not_authentic_fresh_and_a_peers_is_dropped_with_its_reason() {
        let mut tx = Sender::new("lb1", 0);
        let d = tx.seal(&key(K), 60_000, &[update(1)]).remove(0);
        // Another key.
        let other = key("another key, 32 bytes or more ....");
        assert_eq!(
            Receiver::new("lb2").open(&other, 60_000, &d),
            Err(Drop::BadTag)
        );
        // Any byte changed on the way.
        for i in 0..d.len() {
            let mut bad = d.clone();
            bad[i] ^= 0x01;
            let got = Receiver::new("lb2").open(&key(K), 60_000, &bad);
            assert!(
                matches!(got, Err(Drop::BadTag | Drop::Malformed)),
                "byte {i}: {got:?}"
            );
        }
        // Cut short, or any prefix of it.
        for n in 0..d.len() {
            let got = Receiver::new("lb2").open(&key(K), 60_000, &d[..n]);
            assert!(got.is_err(), "prefix of {n} bytes accepted");
        }
        // The same datagram twice: a replay.
        let mut rx = Receiver::new("lb2");
        assert!(rx.open(&key(K), 60_000, &d).is_ok());
        assert_eq!(rx.open(&key(K), 60_000, &d), Err(Drop::Replayed));
        // Sent more than MAX_SKEW_MS ago.
        assert_eq!(
            Receiver::new("lb2").open(&key(K), 60_000 + MAX_SKEW_MS + 1, &d),
            Err(Drop::Stale)
        );
        // Its own.
        assert_eq!(
            Receiver::new("lb1").open(&key(K), 60_000, &d),
            Err(Drop::OwnEcho)
        );
    }

    #[test]
    fn a_short_key_is_refused() {
        assert!(Key::from_text("  too short \n").is_err());
        assert!(Key::from_text(K).is_ok());
    }

    #[test]
    fn oversized_updates_are_left_out_not_sent_broken() {
        let mut big = update(1);
        big.table = "t".repeat(300);
        let mut tx = Sender::new("lb1", 0);
        let out = tx.seal(&key(K), 1, &[big, update(2)]);
        assert_eq!(out.len(), 1);
        let (_, got) = Receiver::new("lb2").open(&key(K), 1, &out[0]).unwrap();
        assert_eq!(got, vec![update(2)]);
        assert!(tx.seal(&key(K), 1, &[]).is_empty());
    }

    #[test]
    fn bulk_messages_are_sealed_and_checked() {
        let k = Key::from_text("0123456789abcdef0123456789abcdef").unwrap();
        let other = Key::from_text("x123456789abcdef0123456789abcdef").unwrap();
        let msg = seal_bulk(&k, "lb1", 1_000_000, b"secret key").unwrap();
        assert!(
            !msg.windows(6).any(|w| w == b"secret"),
            "the payload travels sealed"
        );
        assert_eq!(
            open_bulk(&k, "lb2", 1_000_000, &msg).unwrap(),
            ("lb1".into(), b"secret key".to_vec())
        );
        assert_eq!(open_bulk(&other, "lb2", 1_000_000, &msg), Err(Drop::BadTag));
        assert_eq!(open_bulk(&k, "lb1", 1_000_000, &msg), Err(Drop::OwnEcho));
        assert_eq!(
            open_bulk(&k, "lb2", 1_000_000 + MAX_SKEW_MS + 1, &msg),
            Err(Drop::Stale)
        );
        let mut bad = msg.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(open_bulk(&k, "lb2", 1_000_000, &bad), Err(Drop::BadTag));
        assert_eq!(
            open_bulk(&k, "lb2", 1_000_000, &msg[..10]),
            Err(Drop::Malformed)
        );
    }
}
