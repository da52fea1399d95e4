//! `[[backend]]`: one web server, at the top level (the pool `default`) or
//! as a `[[pool.backend]]`, and the checks of a backend list.
//!
//! Not for: the live backend and its connections (`src/backend/`).

use std::collections::HashSet;
use std::net::SocketAddr;

use serde::Deserialize;

use super::values::Problems;

/// One `[[backend]]` web server.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Backend {
    /// Unique; state (health, counters) follows the name across reloads.
    pub name: String,
    pub address: SocketAddr,
    /// 0..=256; 0 takes no new requests (drain).
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Requests sent to it at once; 0 = unlimited. Used by `first`, and by
    /// every algorithm in a pool with a `queue-timeout` (further requests wait).
    #[serde(default)]
    pub maxconn: u32,
    /// The value a pool's sticky `cookie` names it by; default: its name.
    #[serde(default)]
    pub cookie: Option<String>,
}

// `name` and `address` are required, so the table has no `Default`: this is
// the one statement of `weight`'s default.
fn default_weight() -> u32 {
    1
}

impl Backend {
    /// A backend given by its address alone (a pool's short form
    /// `backends = ["address:port"]`): named by it, every other key at its
    /// default.
    pub(super) fn at(name: String, address: SocketAddr) -> Backend {
        Backend {
            name,
            address,
            weight: default_weight(),
            maxconn: 0,
            cookie: None,
        }
    }

    /// The value a sticky cookie names this backend by.
    pub fn cookie_id(&self) -> &str {
        self.cookie.as_deref().unwrap_or(&self.name)
    }
}

/// Checks of a backend list; paths relative to the list (`backend[1].weight`).
pub(super) fn backend_problems(backends: &[Backend]) -> Problems {
    let mut out = Problems::new();
    let mut names = HashSet::new();
    for (i, b) in backends.iter().enumerate() {
        if b.name.is_empty() {
            out.push((format!("backend[{i}].name"), "must not be empty".into()));
        } else if !names.insert(b.name.as_str()) {
            out.push((
                format!("backend[{i}].name"),
                format!("duplicate backend name {:?}", b.name),
            ));
        }
        if b.weight > 256 {
            out.push((
                format!("backend[{i}].weight"),
                format!("weight {} is out of range 0..=256", b.weight),
            ));
        }
        if b.address.port() == 0 {
            out.push((format!("backend[{i}].address"), "port must not be 0".into()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::config::tests::parse_str;

    /// A pool's short form `"address:port"` gets what a `[[pool.backend]]`
    /// table without those keys gets.
    #[test]
    fn a_short_form_backend_has_the_table_defaults() {
        let text = "[listen]\naddress = \"127.0.0.1:8080\"\n[[pool]]\nname = \"p\"\nbackends = [\"127.0.0.1:9001\"]\n[[pool.backend]]\nname = \"b\"\naddress = \"127.0.0.1:9002\"\n";
        let c = parse_str(text).unwrap();
        let b = &c.resolved.pools[0].backends;
        let (short, table) = (&b[0], &b[1]);
        assert_eq!(short.name, "127.0.0.1:9001");
        assert_eq!(
            (short.weight, short.maxconn, &short.cookie),
            (table.weight, table.maxconn, &table.cookie)
        );
    }
}
