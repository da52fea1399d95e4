//! `[peers]`: the other nodes this one shares its `[[limit]]` tables with,
//! and the key that authenticates what they send each other.
//!
//! Not for: the wire format (`src/peers/`) or the socket
//! (`src/runtime/worker/peers.rs`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::values::{duration, Problems};

/// `[peers]`: where this node listens for its peers' updates (UDP), where
/// it sends its own, and the shared key file.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Peers {
    /// This node's UDP address for its peers' updates.
    pub address: SocketAddr,
    /// The other nodes' `[peers] address`es.
    pub peers: Vec<SocketAddr>,
    /// A file holding the key both nodes share: at least 32 bytes of text
    /// (`openssl rand -base64 32`).
    pub key_file: PathBuf,
    /// This node's name to its peers (default: its `address`, which no
    /// other node has; a host name may be shared, by containers or network
    /// namespaces of one host).
    #[serde(default)]
    pub name: Option<String>,
    /// How often the clients seen since the last send are sent.
    #[serde(default = "default_interval", deserialize_with = "duration")]
    pub interval: Duration,
}

fn default_interval() -> Duration {
    Duration::from_millis(100)
}

impl Peers {
    pub(super) fn problems(&self) -> Problems {
        let mut out = Problems::new();
        if let Err(e) = read_key(&self.key_file) {
            out.push(("peers.key-file".into(), e));
        }
        if self.peers.is_empty() {
            out.push(("peers.peers".into(), "names no peer".into()));
        }
        if self.peers.contains(&self.address) {
            out.push((
                "peers.peers".into(),
                format!("{} is this node's own address", self.address),
            ));
        }
        if self.interval < Duration::from_millis(10) || self.interval > Duration::from_secs(10) {
            out.push((
                "peers.interval".into(),
                "must be between 10ms and 10s".into(),
            ));
        }
        if self
            .name
            .as_ref()
            .is_some_and(|n| n.is_empty() || n.len() > 64)
        {
            out.push(("peers.name".into(), "must be 1 to 64 bytes".into()));
        }
        out
    }

    /// This node's name to its peers.
    pub fn node_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| self.address.to_string())
    }
}

/// The shared key, checked.
pub fn read_key(path: &Path) -> Result<crate::peers::Key, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    crate::peers::Key::from_text(&text).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(key_file: &Path, list: &[&str]) -> Peers {
        Peers {
            address: "198.18.0.1:7480".parse().unwrap(),
            peers: list.iter().map(|p| p.parse().unwrap()).collect(),
            key_file: key_file.to_path_buf(),
            name: None,
            interval: default_interval(),
        }
    }

    #[test]
    fn a_short_or_missing_key_and_an_empty_peer_list_are_problems_at_their_keys() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.key");
        std::fs::write(&good, "4q0V2yqgGGbW1nUpR6rjyGgOTmZ8H6fvl2nOf5xHCg4=\n").unwrap();
        assert!(peers(&good, &["198.18.0.2:7480"]).problems().is_empty());
        let short = dir.path().join("short.key");
        std::fs::write(&short, "abc\n").unwrap();
        let p = peers(&short, &["198.18.0.2:7480"]).problems();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].0, "peers.key-file");
        assert!(p[0].1.contains("at least 32"), "{}", p[0].1);
        let p = peers(&dir.path().join("none.key"), &[]).problems();
        let keys: Vec<&str> = p.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["peers.key-file", "peers.peers"]);
        let p = peers(&good, &["198.18.0.1:7480"]).problems();
        assert!(p[0].1.contains("own address"), "{p:?}");
    }
}
