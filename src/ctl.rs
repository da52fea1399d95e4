//! `floatlb ctl`: the runtime API from the command line. Reads the admin
//! address and token from the same configuration file the daemon runs with,
//! makes one HTTP/1.1 call on the admin listener and reports it in a way a
//! script can use: the answer's text on stdout (2xx) or stderr, and an exit
//! code ([`Outcome::code`]).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use floatlb::config::Admin;

/// How a call ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx: done. Exit 0.
    Done(String),
    /// floatlb answered but refused (unknown backend, bad value, handover in
    /// progress, a reload it rejected): the status and its text. Exit 1.
    Refused(u16, String),
    /// No answer (not running, wrong address, no `[admin]`). Exit 3.
    Unreachable(String),
}

impl Outcome {
    pub fn code(&self) -> u8 {
        match self {
            Outcome::Done(_) => 0,
            Outcome::Refused(..) => 1,
            Outcome::Unreachable(_) => 3,
        }
    }
}

/// The `[admin]` table of a configuration file. Only that table is read: a
/// `reload` is often asked for just after the rest of the file was edited, and
/// must reach floatlb so that it can say what is wrong with it.
pub fn admin_of(path: &std::path::Path) -> Result<Admin, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let admin = table
        .get("admin")
        .ok_or_else(|| format!("{}: no [admin] listener is configured", path.display()))?;
    admin
        .clone()
        .try_into()
        .map_err(|e| format!("{}: [admin]: {e}", path.display()))
}

/// Calls `method path` on the admin listener, with its token if one is set.
pub fn call(admin: &Admin, method: &str, path: &str) -> Outcome {
    let token = match admin.token_file.as_deref().map(floatlb::config::read_token) {
        None => None,
        Some(Ok(t)) => Some(t),
        Some(Err(e)) => return Outcome::Unreachable(e),
    };
    let mut s = match TcpStream::connect_timeout(&admin.address, Duration::from_secs(2)) {
        Ok(s) => s,
        Err(e) => {
            return Outcome::Unreachable(format!("cannot reach floatlb at {}: {e}", admin.address))
        }
    };
    // A handover waits for clients to move; a reload for the file to be read.
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let auth = token.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {}\r\n{auth}content-length: 0\r\nconnection: close\r\n\r\n",
        admin.address
    );
    let mut out = Vec::new();
    if let Err(e) = s
        .write_all(req.as_bytes())
        .and_then(|_| s.read_to_end(&mut out))
    {
        return Outcome::Unreachable(format!("{}: {e}", admin.address));
    }
    let text = String::from_utf8_lossy(&out);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return Outcome::Unreachable(format!("{}: no HTTP answer", admin.address));
    };
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if (200..300).contains(&status) {
        Outcome::Done(body.to_string())
    } else {
        Outcome::Refused(status, body.to_string())
    }
}
