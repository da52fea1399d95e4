//! Session-ticket keys. With `[tls] ticket-keys`, the keys come from a file
//! the pair shares, so a ticket one node issued resumes on the other after a
//! failover; without it, keys the supervisor makes once and hands to each
//! worker it starts (see [`generate`], [`adopt`]), so a worker restart or an
//! upgrade in place keeps tickets valid (a reload keeps them too).
//!
//! The file follows HAProxy's `tls-ticket-keys`: one key per line, base64 of
//! 48 bytes (16 name, 16 HMAC, 16 AES: AES-128-GCM here) or 80 bytes (16, 32,
//! 32: AES-256-GCM); blank lines and `#` comments are skipped. As in HAProxy
//! the penultimate key encrypts (the last one if there is only one) and every
//! key decrypts, so rotation is: append a new key, drop the oldest, SIGHUP
//! each node; a node that has the new file already decrypts what the other
//! still encrypts with the old key. The HMAC part is not used: the AEAD
//! authenticates. A ticket is name (16) || nonce (12) || sealed state.

use std::sync::{Arc, OnceLock};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use rustls::server::ProducesTickets;

/// How long a ticket is offered for (a hint to clients; rotate keys to end it).
const LIFETIME_SECS: u32 = 12 * 3600;
const NAME_LEN: usize = 16;

struct Key {
    name: [u8; NAME_LEN],
    aead: LessSafeKey,
}

/// Tickets sealed with the keys of a ticket-keys file.
pub struct FileTicketer {
    keys: Vec<Key>,
    encrypt_with: usize,
    rng: SystemRandom,
}

impl std::fmt::Debug for FileTicketer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileTicketer")
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

/// Parses a ticket-keys file's text; the error says which line is wrong.
pub fn parse(text: &str) -> Result<FileTicketer, String> {
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let raw = base64_decode(line).ok_or_else(|| format!("line {}: not base64", i + 1))?;
        let (alg, secret) = match raw.len() {
            48 => (&AES_128_GCM, &raw[32..48]),
            80 => (&AES_256_GCM, &raw[48..80]),
            n => {
                return Err(format!(
                    "line {}: a key is 48 or 80 bytes, this one is {n}",
                    i + 1
                ))
            }
        };
        let mut name = [0u8; NAME_LEN];
        name.copy_from_slice(&raw[..NAME_LEN]);
        let unbound =
            UnboundKey::new(alg, secret).map_err(|_| format!("line {}: bad key", i + 1))?;
        keys.push(Key {
            name,
            aead: LessSafeKey::new(unbound),
        });
    }
    if keys.is_empty() {
        return Err("holds no key".into());
    }
    if keys
        .windows(2)
        .any(|w| w[0].aead.algorithm() != w[1].aead.algorithm())
    {
        return Err("mixes 48- and 80-byte keys".into());
    }
    // The penultimate key; with a single key, that one.
    let encrypt_with = keys.len().saturating_sub(2);
    Ok(FileTicketer {
        keys,
        encrypt_with,
        rng: SystemRandom::new(),
    })
}

impl ProducesTickets for FileTicketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        LIFETIME_SECS
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let key = &self.keys[self.encrypt_with];
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        let mut sealed = plain.to_vec();
        key.aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(key.name),
                &mut sealed,
            )
            .ok()?;
        let mut out = Vec::with_capacity(NAME_LEN + NONCE_LEN + sealed.len());
        out.extend_from_slice(&key.name);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Some(out)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        if cipher.len() < NAME_LEN + NONCE_LEN {
            return None;
        }
        let (name, rest) = cipher.split_at(NAME_LEN);
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let key = self.keys.iter().find(|k| k.name[..] == *name)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = sealed.to_vec();
        let plain = key
            .aead
            .open_in_place(nonce, Aad::from(key.name), &mut buf)
            .ok()?;
        Some(plain.to_vec())
    }
}

/// Reads a ticket-keys file; the error names the file.
pub fn load(path: &std::path::Path) -> Result<Arc<dyn ProducesTickets>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let t = parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Arc::new(t))
}

/// Keys for a config without a ticket-keys file: set once per process, by
/// [`adopt`] (the supervisor's keys) or else made here.
static KEYS: OnceLock<Arc<dyn ProducesTickets>> = OnceLock::new();

/// This process's ticket keys, for a config without a ticket-keys file: made
/// once, so a reload does not invalidate the tickets already issued.
pub fn per_process() -> Result<Arc<dyn ProducesTickets>, String> {
    if let Some(k) = KEYS.get() {
        return Ok(k.clone());
    }
    let k = rustls::crypto::aws_lc_rs::Ticketer::new()
        .map_err(|e| format!("cannot make session-ticket keys: {e}"))?;
    Ok(KEYS.get_or_init(|| k).clone())
}

/// Three random AES-256 keys in the ticket-keys file format: what a
/// supervisor hands its workers.
pub fn generate() -> Result<String, String> {
    let mut raw = [0u8; 3 * 80];
    SystemRandom::new()
        .fill(&mut raw)
        .map_err(|_| "no randomness for session-ticket keys".to_string())?;
    Ok(raw.chunks(80).map(|k| base64_encode(k) + "\n").collect())
}

/// Makes `text` (the ticket-keys format) this process's keys, before any
/// config is loaded. Refused if keys were made already.
pub fn adopt(text: &str) -> Result<(), String> {
    let t: Arc<dyn ProducesTickets> = Arc::new(parse(text)?);
    KEYS.set(t)
        .map_err(|_| "session-ticket keys were made already".to_string())
}

/// Standard base64 (RFC 4648 §4) with padding.
fn base64_encode(raw: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(raw.len().div_ceil(3) * 4);
    for c in raw.chunks(3) {
        let n = c.iter().fold(0u32, |a, &b| (a << 8) | b as u32) << (8 * (3 - c.len()));
        for i in 0..4 {
            if i <= c.len() {
                s.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// Standard base64 (RFC 4648 §4), padding optional.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(fill: u8, len: usize) -> String {
        let raw: Vec<u8> = (0..len).map(|i| fill.wrapping_add(i as u8)).collect();
        base64_encode(&raw)
    }

    #[test]
    fn base64_round_trips_with_rfc4648_vectors() {
        // RFC 4648 §10.
        for (raw, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(raw.as_bytes()), enc);
            assert_eq!(base64_decode(enc).unwrap(), raw.as_bytes());
        }
    }

    #[test]
    fn generated_keys_parse_and_seal_tickets_another_process_opens() {
        let text = generate().unwrap();
        assert_eq!(text.lines().count(), 3);
        assert_ne!(text, generate().unwrap());
        let (a, b) = (parse(&text).unwrap(), parse(&text).unwrap());
        let t = a.encrypt(b"state").unwrap();
        assert_eq!(b.decrypt(&t).unwrap(), b"state");
    }

    #[test]
    fn a_ticket_from_one_node_opens_on_the_other() {
        let file = format!("{}\n{}\n", key(1, 80), key(100, 80));
        let a = parse(&file).unwrap();
        let b = parse(&file).unwrap();
        let t = a.encrypt(b"session state").unwrap();
        assert_eq!(b.decrypt(&t).unwrap(), b"session state");
    }

    #[test]
    fn penultimate_key_encrypts_and_rotation_keeps_old_tickets() {
        let (k1, k2, k3) = (key(1, 48), key(60, 48), key(120, 48));
        let old = parse(&format!("{k1}\n{k2}\n")).unwrap();
        let t = old.encrypt(b"x").unwrap();
        assert_eq!(&t[..16], &old.keys[0].name, "penultimate key encrypts");
        let new = parse(&format!("{k1}\n{k2}\n{k3}\n")).unwrap();
        assert_eq!(new.decrypt(&t).unwrap(), b"x");
        let t2 = new.encrypt(b"y").unwrap();
        assert_eq!(&t2[..16], &new.keys[1].name);
        assert_eq!(
            old.decrypt(&t2).unwrap(),
            b"y",
            "the node not yet reloaded opens it"
        );
    }

    #[test]
    fn tampered_or_unknown_tickets_do_not_open() {
        let a = parse(&key(1, 80)).unwrap();
        let mut t = a.encrypt(b"state").unwrap();
        let last = t.len() - 1;
        t[last] ^= 1;
        assert!(a.decrypt(&t).is_none());
        assert!(a.decrypt(&[0; 10]).is_none());
        let other = parse(&key(9, 80)).unwrap();
        assert!(other.decrypt(&a.encrypt(b"s").unwrap()).is_none());
    }

    #[test]
    fn bad_files_say_which_line() {
        assert_eq!(parse("# only a comment\n").unwrap_err(), "holds no key");
        assert!(parse("\n!!!\n").unwrap_err().starts_with("line 2"));
        assert!(parse(&key(1, 20)).unwrap_err().contains("48 or 80"));
        assert!(parse(&format!("{}\n{}", key(1, 48), key(2, 80)))
            .unwrap_err()
            .contains("mixes"));
    }
}
