//! `[admin]`: the metrics, status and runtime API listener, and its bearer
//! token file.
//!
//! Not for: serving them (`src/runtime/admin/`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::values::Problems;

/// `[admin]`: metrics and status listener.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Admin {
    pub address: SocketAddr,
    /// A file holding the bearer token that the runtime API's POST calls
    /// must carry (`Authorization: Bearer ...`); read at start and on reload.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

impl Admin {
    pub(super) fn problems(&self) -> Problems {
        let mut out = Problems::new();
        match &self.token_file {
            // The runtime API can drain backends and move the VIP.
            None if !self.address.ip().is_loopback() => out.push((
                "admin.address".into(),
                format!(
                    "{} is not a loopback address: set admin.token-file so the runtime API needs a token",
                    self.address
                ),
            )),
            None => {}
            Some(f) => {
                if let Err(e) = read_token(f) {
                    out.push(("admin.token-file".into(), e));
                }
            }
        }
        out
    }
}

/// The runtime API's bearer token from `[admin] token-file`: the file's first
/// line, which must not be empty.
pub fn read_token(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim();
    if token.is_empty() {
        return Err(format!("{} holds no token", path.display()));
    }
    Ok(token.to_string())
}
