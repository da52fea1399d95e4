//! What must hold for any text given to the config loader. Included with
//! `#[path]` by the `config_load` fuzz target and by the stable replay of its
//! corpus (`tests/fuzz_corpus.rs`), so CI checks every input the fuzzer kept
//! against the same invariants. A broken invariant panics.

use std::path::Path;

use floatlb::config::{parse, Config, ConfigError};

/// The name the loader is told; every problem must carry it.
pub const FILE: &str = "fuzz.toml";

/// Parses `text`; returns whether it loaded. Either way the result must be
/// usable: a config that passed validation, or problems a user can act on.
pub fn check(text: &str) -> bool {
    match parse(Path::new(FILE), text) {
        Ok(config) => {
            check_valid(&config);
            true
        }
        Err(e) => {
            check_error(text, &e);
            false
        }
    }
}

/// Each problem is non-empty, names the file, and points at a real line and
/// column of `text`; the error shows every problem.
fn check_error(text: &str, err: &ConfigError) {
    let shown = err.to_string();
    assert!(!shown.trim().is_empty(), "empty error for {text:?}");
    let ConfigError::Invalid(problems) = err else {
        panic!("parse() returned a read error: {err}");
    };
    assert!(
        !problems.is_empty(),
        "Invalid with no problems for {text:?}"
    );
    let lines: Vec<&str> = text.split('\n').collect();
    for p in problems {
        assert!(!p.message.trim().is_empty(), "empty message: {p:?}");
        assert_eq!(p.file, Path::new(FILE));
        assert!(
            (1..=lines.len()).contains(&p.line),
            "line {} outside 1..={}: {p}",
            p.line,
            lines.len()
        );
        let width = lines[p.line - 1].chars().count();
        assert!(
            (1..=width + 1).contains(&p.column),
            "column {} outside 1..={}: {p}",
            p.column,
            width + 1
        );
        let one = p.to_string();
        assert!(
            one.starts_with(&format!("{FILE}:{}:{}: ", p.line, p.column)),
            "{one:?} does not start with file:line:column"
        );
        assert!(shown.contains(&one), "{shown:?} leaves out {one:?}");
    }
}

/// A config that loads keeps the promises validation makes to the daemon.
fn check_valid(c: &Config) {
    assert!(c.listen.maxconn >= 1 && c.listen.workers != Some(0));
    assert!(!c.backends.is_empty());
    let mut names = std::collections::HashSet::new();
    for b in &c.backends {
        assert!(!b.name.is_empty() && names.insert(b.name.as_str()), "{b:?}");
        assert!(b.weight <= 256 && b.address.port() != 0, "{b:?}");
    }
    assert!((1..=16).contains(&c.balance.draws));
    assert!(c.health.path.starts_with('/'));
    assert!(!c.health.interval.is_zero() && !c.health.timeout.is_zero());
    assert!(c.health.rise >= 1 && c.health.fall >= 1);
    assert!(c.proxy.max_header_size >= 1024);
    for v in &c.vrrp {
        assert!(
            (1..=255).contains(&v.vrid) && (1..=255).contains(&v.priority),
            "{v:?}"
        );
        assert!(!v.virtual_addresses.is_empty());
        assert_eq!(v.vips().len(), v.virtual_addresses.len(), "{v:?}");
        let cs = v.advert_interval.as_millis() / 10;
        assert!((1..=4095).contains(&cs), "{v:?}");
    }
}
