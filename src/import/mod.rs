//! `floatlb import`: HAProxy's `haproxy.cfg` and keepalived's `keepalived.conf` read and
//! written again as a `proxy.toml`, with every directive that could not be carried over
//! reported (`file:line: directive: reason`) and left as a `# not imported:` comment beside
//! what was made of its section.
//!
//! Sans-IO: text in, a TOML string and the list of problems out. The caller reads the files;
//! keepalived's `include` goes through a loader the caller passes. Not for: checking the
//! result (that is `floatlb check`, which the caller or the user runs on the output).

pub mod files;
mod haproxy;
mod keepalived;
mod toml_out;

use std::fmt;

pub use toml_out::quote;

/// One configuration file's text, with the name problems are reported under.
#[derive(Debug, Clone)]
pub struct Source {
    /// The path as the user named it (or as an `include` named it).
    pub name: String,
    /// The whole file.
    pub text: String,
}

/// A directive that was not imported, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file the directive is in.
    pub file: String,
    /// Its line, from 1.
    pub line: usize,
    /// The directive as written (its words joined by one space).
    pub directive: String,
    /// Why floatlb cannot express it.
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.file, self.line, self.directive, self.reason
        )
    }
}

/// What an import made: the `proxy.toml` text and the directives it could not map.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The configuration, comments included.
    pub toml: String,
    /// Every directive not imported, in the order of the files.
    pub problems: Vec<Problem>,
    /// Directives imported.
    pub mapped: usize,
}

/// Reads an `include`: `(pattern, including file)` to the files it names (a glob may name
/// several, or none). An error is a file that cannot be read.
pub type Loader<'a> = dyn FnMut(&str, &str) -> Result<Vec<Source>, String> + 'a;

/// The keys other parts of floatlb are still adding. Each is written only when its switch
/// is on, and otherwise reported as "not supported yet": switch one on (here, and nowhere
/// else) once `floatlb check` takes the key.
#[derive(Debug, Clone, Copy)]
pub struct Keys {
    /// pool `tls = { ca, server-name, cert, key, verify }`.
    pub pool_tls: bool,
    /// pool `protocol = "http1" | "h2" | "h2c"`.
    pub pool_protocol: bool,
    /// pool `send-proxy = "v1" | "v2"`.
    pub pool_send_proxy: bool,
    /// listener `accept-proxy = [cidr, ...]`.
    pub listen_accept_proxy: bool,
    /// listener `mode = "tcp"`.
    pub listen_mode_tcp: bool,
    /// `[[vrrp.track-script]]`.
    pub vrrp_track_script: bool,
    /// `[[vrrp.track-interface]]`.
    pub vrrp_track_interface: bool,
    /// `notify-master`, `notify-backup`, `notify-fault`, `notify-stop`.
    pub vrrp_notify_states: bool,
    /// `notify-keepalived` (keepalived's `notify`, called as TYPE NAME STATE PRIORITY).
    pub vrrp_notify_keepalived: bool,
    /// `use-vmac = true` (and `vmac-interface`).
    pub vrrp_use_vmac: bool,
    /// `[[vrrp]] name` (keepalived's instance name, for logs and notify arguments).
    pub vrrp_name: bool,
    /// Backend addresses by name (`name:port`) and the `[resolver]` table.
    pub backend_names: bool,
}

impl Keys {
    /// The keys this build's `floatlb check` takes.
    pub const CURRENT: Keys = Keys {
        pool_tls: true,
        pool_protocol: true,
        pool_send_proxy: true,
        listen_accept_proxy: true,
        listen_mode_tcp: true,
        vrrp_track_script: true,
        vrrp_track_interface: true,
        vrrp_notify_states: true,
        vrrp_notify_keepalived: true,
        vrrp_use_vmac: true,
        vrrp_name: true,
        backend_names: true,
    };

    /// None of the keys above: what a unit test of the "not supported yet" reports uses.
    #[cfg(test)]
    pub(crate) const NONE: Keys = Keys {
        pool_tls: false,
        pool_protocol: false,
        pool_send_proxy: false,
        listen_accept_proxy: false,
        listen_mode_tcp: false,
        vrrp_track_script: false,
        vrrp_track_interface: false,
        vrrp_notify_states: false,
        vrrp_notify_keepalived: false,
        vrrp_use_vmac: false,
        vrrp_name: false,
        backend_names: false,
    };
}

/// The reason given for a key that is not in this build yet.
pub(crate) const NOT_YET: &str = "not supported yet by this floatlb";

/// Imports `haproxy` (the files in the order HAProxy would read them, as `-f` given
/// several times) and `keepalived` (one file; its `include`s come through `load`).
pub fn import(
    haproxy: &[Source],
    keepalived: Option<&Source>,
    load: &mut Loader<'_>,
    keys: Keys,
) -> Imported {
    let mut out = toml_out::Doc::default();
    let mut problems = Vec::new();
    let mut mapped = 0;
    if !haproxy.is_empty() {
        let r = haproxy::import(haproxy, keys, &mut out);
        problems.extend(r.0);
        mapped += r.1;
    }
    if let Some(k) = keepalived {
        let r = keepalived::import(k, load, keys, &mut out);
        problems.extend(r.0);
        mapped += r.1;
    }
    let mut head = String::from("# Written by `floatlb import`");
    let names: Vec<&str> = haproxy
        .iter()
        .chain(keepalived)
        .map(|s| s.name.as_str())
        .collect();
    head.push_str(&format!(" from {}.\n", names.join(", ")));
    if haproxy.is_empty() {
        head.push_str("# keepalived.conf holds no proxy: add [listen] and a [[pool]], or import with --haproxy too.\n");
    }
    if problems.is_empty() {
        head.push_str("# Every directive was imported.\n");
    } else {
        head.push_str(&format!(
            "# {} directive(s) were not imported: see the `# not imported:` comments.\n",
            problems.len()
        ));
    }
    Imported {
        toml: out.render(&head),
        problems,
        mapped,
    }
}

/// A duration as floatlb writes it, from milliseconds.
pub(crate) fn ms_to_duration(ms: u64) -> String {
    if ms == 0 {
        "0s".into()
    } else if ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_use_the_largest_whole_unit() {
        assert_eq!(ms_to_duration(0), "0s");
        assert_eq!(ms_to_duration(1500), "1500ms");
        assert_eq!(ms_to_duration(30_000), "30s");
        assert_eq!(ms_to_duration(120_000), "2m");
        assert_eq!(ms_to_duration(4 * 3_600_000), "4h");
    }

    #[test]
    fn a_problem_reads_file_line_directive_reason() {
        let p = Problem {
            file: "haproxy.cfg".into(),
            line: 7,
            directive: "option dontlognull".into(),
            reason: "why".into(),
        };
        assert_eq!(p.to_string(), "haproxy.cfg:7: option dontlognull: why");
    }
}
