//! `[balance]`: the scheduler of the pool `default`, and of every `[[pool]]`
//! without a `balance` table of its own.
//!
//! Not for: the algorithms themselves (`src/balance/`).

use serde::Deserialize;

use super::values::Problems;
use crate::balance::{Algorithm, BalanceOptions};

/// `[balance]`: the scheduler. A key the file leaves out takes its value
/// from `Balance::default()`, the one statement of the defaults.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Balance {
    pub algorithm: Algorithm,
    /// Query parameter hashed by `url-param`.
    pub url_param: Option<String>,
    /// Request field hashed by `header` (HAProxy `balance hdr(name)`).
    pub header: Option<String>,
    /// Cookie hashed by `cookie`.
    pub cookie: Option<String>,
    /// Consistent hashing for the hash algorithms.
    pub consistent: bool,
    /// Draws for `random` (2 = power of two choices).
    pub draws: u32,
}

impl Default for Balance {
    fn default() -> Self {
        Balance {
            algorithm: Algorithm::RoundRobin,
            url_param: None,
            header: None,
            cookie: None,
            consistent: false,
            draws: 2,
        }
    }
}

impl Balance {
    pub fn options(&self) -> BalanceOptions {
        BalanceOptions {
            algorithm: self.algorithm,
            url_param: self.url_param.clone(),
            consistent: self.consistent,
            draws: self.draws,
        }
    }
}

/// Checks of a `[balance]` table at `at`.
pub(super) fn balance_problems(b: &Balance, at: &str) -> Problems {
    let mut out = Problems::new();
    if b.algorithm == Algorithm::UrlParam && b.url_param.as_deref().unwrap_or("").is_empty() {
        out.push((
            format!("{at}.url-param"),
            "algorithm \"url-param\" needs url-param = \"<name>\"".into(),
        ));
    }
    for (algorithm, key, value) in [
        (Algorithm::Header, "header", &b.header),
        (Algorithm::Cookie, "cookie", &b.cookie),
    ] {
        if b.algorithm == algorithm && value.as_deref().unwrap_or("").is_empty() {
            out.push((
                format!("{at}.{key}"),
                format!("algorithm \"{key}\" needs {key} = \"<name>\""),
            ));
        }
    }
    if b.draws == 0 || b.draws > 16 {
        out.push((format!("{at}.draws"), "must be in 1..=16".into()));
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{parse_str, GOOD};

    #[test]
    fn url_param_requires_name() {
        let text = format!("{GOOD}\n[balance]\nalgorithm = \"url-param\"\n");
        let err = parse_str(&text).unwrap_err();
        assert_eq!(err.problems()[0].path, "balance.url-param");
    }
}
