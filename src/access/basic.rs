//! HTTP Basic authentication (RFC 7617) against an htpasswd file's bcrypt
//! entries: the file's parser, the `Authorization` field's reader, the
//! `WWW-Authenticate` challenge, and a bounded cache of credentials already
//! verified (bcrypt costs milliseconds by design; a client sends its
//! credentials with every request). Sans-IO: the file's text and the field's
//! bytes in; the caller reads the file and decides where the slow check runs.
//! Not for: which routes ask for it, or the 401 itself (`config`, `proxy`).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Mutex;

use base64::Engine;

use super::{LineError, Refusal};

/// Most verified credentials remembered per file; past it the cache starts
/// over (each entry is one user's current password, so a file of more users
/// than this only pays bcrypt more often).
pub const CACHE_ENTRIES: usize = 1024;

/// A hash of the same cost as `htpasswd -B`'s default (5), checked when the
/// user is unknown, so that an unknown user takes as long as a wrong password.
const DUMMY_HASH: &str = "$2y$05$M2lhfRxm8BHrEXQTDpi/DOwA/GRSj1axwPJQHzEIB6ws9hVqL3GK.";

/// One `auth-basic` realm's users, as loaded from its file, and the
/// credentials verified since.
pub struct BasicAuth {
    /// The challenge's realm (RFC 7617 §2).
    pub realm: String,
    /// User → bcrypt hash.
    users: HashMap<String, String>,
    /// SHA-256 of `user:password` pairs that verified against this file.
    verified: Mutex<HashSet<[u8; 32]>>,
}

impl fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicAuth")
            .field("realm", &self.realm)
            .field("users", &self.users.len())
            .finish()
    }
}

/// What a request's credentials come to.
pub enum Verdict<'a> {
    Pass,
    Refuse(Refusal),
    /// Not in the cache: bcrypt must decide ([`Pending::verify`]; slow).
    Verify(Pending<'a>),
}

/// Credentials to check with bcrypt.
pub struct Pending<'a> {
    auth: &'a BasicAuth,
    /// None: an unknown user (checked against a dummy hash, then refused).
    hash: Option<&'a str>,
    password: Vec<u8>,
    key: [u8; 32],
}

impl Pending<'_> {
    /// Runs bcrypt (milliseconds); remembers credentials that verify.
    pub fn verify(self) -> Result<(), Refusal> {
        let hash = self.hash.unwrap_or(DUMMY_HASH);
        let ok = bcrypt::verify(&self.password, hash).unwrap_or(false) && self.hash.is_some();
        if !ok {
            return Err(Refusal::BadCredentials);
        }
        if let Ok(mut v) = self.auth.verified.lock() {
            if v.len() >= CACHE_ENTRIES {
                v.clear();
            }
            v.insert(self.key);
        }
        Ok(())
    }
}

impl BasicAuth {
    /// Parses an htpasswd file: `user:hash` lines, blank lines and `#`
    /// comments skipped; only bcrypt hashes (`$2y$`, `$2b$`, `$2a$`: what
    /// `htpasswd -B` writes), each user once.
    pub fn parse(realm: &str, text: &str) -> Result<BasicAuth, LineError> {
        let mut users = HashMap::new();
        let mut first_line: HashMap<String, usize> = HashMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let err = |message: String| LineError { line, message };
            let l = raw.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let Some((user, hash)) = l.split_once(':') else {
                return Err(err("not a user:hash line".into()));
            };
            if user.is_empty() {
                return Err(err("the user name is empty".into()));
            }
            if !is_bcrypt(hash) {
                return Err(err(format!(
                    "user {user:?}: not a bcrypt hash ($2y$...: write the file with htpasswd -B; \
                     MD5, SHA-1 and crypt entries are refused)"
                )));
            }
            if let Some(before) = first_line.insert(user.to_string(), line) {
                return Err(err(format!(
                    "user {user:?} is listed twice (line {before} too)"
                )));
            }
            users.insert(user.to_string(), hash.to_string());
        }
        Ok(BasicAuth {
            realm: realm.to_string(),
            users,
            verified: Mutex::new(HashSet::new()),
        })
    }

    pub fn users(&self) -> usize {
        self.users.len()
    }

    /// The `WWW-Authenticate` value of a 401 (RFC 7617 §2, §2.1).
    pub fn challenge(&self) -> String {
        format!("Basic realm=\"{}\", charset=\"UTF-8\"", self.realm)
    }

    /// Judges a request's `Authorization` field (None: it sent none).
    pub fn check<'a>(&'a self, authorization: Option<&[u8]>) -> Verdict<'a> {
        let Some(field) = authorization else {
            return Verdict::Refuse(Refusal::NoCredentials);
        };
        let Some((user, password)) = credentials(field) else {
            return Verdict::Refuse(Refusal::BadCredentials);
        };
        let key = cache_key(&user, &password);
        if self.verified.lock().is_ok_and(|v| v.contains(&key)) {
            return Verdict::Pass;
        }
        let hash = std::str::from_utf8(&user)
            .ok()
            .and_then(|u| self.users.get(u))
            .map(String::as_str);
        Verdict::Verify(Pending {
            auth: self,
            hash,
            password,
            key,
        })
    }
}

/// RFC 7617 §2: `Basic` (any case) then the base64 of `user-id ":" password`;
/// the user-id holds no colon, the password may. None when it is no such field.
pub fn credentials(field: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let field = field.trim_ascii();
    let (scheme, rest) = field.split_at(field.iter().position(|&b| b == b' ')?);
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim_ascii())
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    Some((decoded[..colon].to_vec(), decoded[colon + 1..].to_vec()))
}

fn cache_key(user: &[u8], password: &[u8]) -> [u8; 32] {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(user);
    ctx.update(b":");
    ctx.update(password);
    let mut key = [0u8; 32];
    key.copy_from_slice(ctx.finish().as_ref());
    key
}

/// `$2y$NN$` and 53 characters of bcrypt's base64 (22 of salt, 31 of hash).
fn is_bcrypt(h: &str) -> bool {
    let b = h.as_bytes();
    b.len() == 60
        && matches!(&b[..4], b"$2y$" | b"$2b$" | b"$2a$")
        && b[4..6].iter().all(u8::is_ascii_digit)
        && (4..=31).contains(&((b[4] - b'0') * 10 + (b[5] - b'0')))
        && b[6] == b'$'
        && b[7..]
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'.' || c == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    // `htpasswd -nbB alice s3cret`.
    const ALICE: &str = "alice:$2y$05$EU9Tl0YZ5ZgqTo.ykBAmB.HFbdXOp8QzRVI9yPrJ1YGPBibiGX23y";

    fn basic(user_pass: &str) -> Vec<u8> {
        let b64 = base64::engine::general_purpose::STANDARD.encode(user_pass);
        format!("Basic {b64}").into_bytes()
    }

    fn hashed(user: &str, password: &str) -> String {
        format!("{user}:{}", bcrypt::hash(password, 4).unwrap())
    }

    fn run(a: &BasicAuth, field: Option<&[u8]>) -> Result<(), Refusal> {
        match a.check(field) {
            Verdict::Pass => Ok(()),
            Verdict::Refuse(r) => Err(r),
            Verdict::Verify(p) => p.verify(),
        }
    }

    #[test]
    fn htpasswd_lines_comments_and_blank_lines() {
        let text = format!(
            "# staff\n\n{}\n  {}  \n",
            hashed("alice", "x"),
            hashed("bob", "y")
        );
        let a = BasicAuth::parse("staff", &text).unwrap();
        assert_eq!(a.users(), 2);
        assert_eq!(a.challenge(), "Basic realm=\"staff\", charset=\"UTF-8\"");
    }

    #[test]
    fn malformed_lines_are_named_by_number() {
        let good = hashed("alice", "x");
        let cases = [
            (format!("{good}\n\nbob\n"), 3, "user:hash"),
            (format!("{good}\n:{}\n", &good[6..]), 2, "empty"),
            ("# md5\nbob:$apr1$abc$def\n".to_string(), 2, "bcrypt"),
            (
                "bob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n".to_string(),
                1,
                "bcrypt",
            ),
            (format!("{good}\n{good}\n"), 2, "twice (line 1"),
            (format!("{}\n", &good[..good.len() - 1]), 1, "bcrypt"),
        ];
        for (text, line, says) in cases {
            let e = BasicAuth::parse("r", &text).unwrap_err();
            assert_eq!(e.line, line, "{e}: {text}");
            assert!(e.to_string().contains(says), "{e}");
        }
    }

    /// RFC 7617 §2: the scheme is case-insensitive; the user-id ends at the
    /// first colon, the password may hold more.
    #[test]
    fn authorization_fields_read() {
        assert_eq!(
            credentials(&basic("alice:s3:cret")),
            Some((b"alice".to_vec(), b"s3:cret".to_vec()))
        );
        let b64 = base64::engine::general_purpose::STANDARD.encode("a:b");
        assert!(credentials(format!("bAsIc   {b64} ").as_bytes()).is_some());
        // RFC 7617 §2's example.
        assert_eq!(
            credentials(b"Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
            Some((b"Aladdin".to_vec(), b"open sesame".to_vec()))
        );
        assert_eq!(credentials(format!("Bearer {b64}").as_bytes()), None);
        assert_eq!(credentials(b"Basic !!!"), None);
        assert_eq!(credentials(&basic("no-colon")), None);
        assert_eq!(credentials(b"Basic"), None);
    }

    #[test]
    fn right_wrong_missing_and_unknown() {
        let a = BasicAuth::parse("r", &format!("{ALICE}\n{}\n", hashed("bob", "pa:ss w"))).unwrap();
        assert_eq!(run(&a, Some(&basic("alice:s3cret"))), Ok(()));
        assert_eq!(run(&a, Some(&basic("bob:pa:ss w"))), Ok(()));
        assert_eq!(run(&a, None), Err(Refusal::NoCredentials));
        assert_eq!(
            run(&a, Some(&basic("alice:wrong"))),
            Err(Refusal::BadCredentials)
        );
        assert_eq!(
            run(&a, Some(&basic("carol:s3cret"))),
            Err(Refusal::BadCredentials)
        );
        assert_eq!(run(&a, Some(b"Digest x")), Err(Refusal::BadCredentials));
    }

    /// Verified credentials skip bcrypt; wrong ones never enter the cache.
    #[test]
    fn verified_credentials_are_cached_and_bounded() {
        let a = BasicAuth::parse("r", ALICE).unwrap();
        assert!(matches!(
            a.check(Some(&basic("alice:s3cret"))),
            Verdict::Verify(_)
        ));
        assert_eq!(run(&a, Some(&basic("alice:s3cret"))), Ok(()));
        assert!(matches!(
            a.check(Some(&basic("alice:s3cret"))),
            Verdict::Pass
        ));
        assert_eq!(
            run(&a, Some(&basic("alice:nope"))),
            Err(Refusal::BadCredentials)
        );
        assert!(matches!(
            a.check(Some(&basic("alice:nope"))),
            Verdict::Verify(_)
        ));
        // The bound: a full cache starts over.
        {
            let mut v = a.verified.lock().unwrap();
            for i in 0..CACHE_ENTRIES as u32 - 1 {
                v.insert(cache_key(&i.to_be_bytes(), b""));
            }
            assert_eq!(v.len(), CACHE_ENTRIES);
        }
        let a2 = BasicAuth::parse("r", &format!("{ALICE}\n{}", hashed("bob", "pw"))).unwrap();
        *a2.verified.lock().unwrap() = a.verified.lock().unwrap().clone();
        assert_eq!(run(&a2, Some(&basic("bob:pw"))), Ok(()));
        assert_eq!(
            a2.verified.lock().unwrap().len(),
            1,
            "cleared, then the new entry"
        );
    }
}
