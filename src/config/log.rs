//! `[log]`: the access log's format and file, and the custom line's template
//! (`{client} {status} ...`) parsed once at load.
//!
//! Not for: writing the lines (`src/observe/access_log.rs`).

use std::path::PathBuf;

use serde::Deserialize;

use super::values::Problems;

/// `[log]`: the access log (read at start).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Log {
    /// `off` (default), `common`, `combined`, `json` or `custom`.
    pub access: AccessFormat,
    /// A file to append to; absent = standard output.
    pub access_path: Option<PathBuf>,
    /// The line of `access = "custom"`: text with named fields in braces,
    /// e.g. "{client} {method} {target} {status} {route} {pool} {backend}".
    pub format: Option<String>,
}

impl Log {
    /// Checks that `format` goes with `access = "custom"` and parses.
    pub(super) fn problems(&self) -> Problems {
        let mut out = Problems::new();
        match (self.access, &self.format) {
            (AccessFormat::Custom, None) => out.push((
                "log.access".into(),
                "\"custom\" needs format = \"...\" with {field} names".into(),
            )),
            (AccessFormat::Custom, Some(f)) => {
                if let Err(e) = LogTemplate::parse(f) {
                    out.push(("log.format".into(), e));
                }
            }
            (_, Some(_)) => out.push(("log.format".into(), "is for access = \"custom\"".into())),
            _ => {}
        }
        out
    }
}

/// A field of a custom access log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogField {
    Client,
    /// `23/Nov/2026:06:35:07 +0000`.
    Time,
    /// Unix seconds with microseconds.
    Timestamp,
    Method,
    Target,
    Version,
    Status,
    Bytes,
    Referer,
    UserAgent,
    DurationMs,
    Route,
    Pool,
    Backend,
    /// Who ended the request and where: `--`, or e.g. `SC`, `sH`, `PR`
    /// (`crate::error::Termination`).
    Termination,
}

/// `[log] format` parsed: text, and fields named in braces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogTemplate(pub Vec<Result<LogField, String>>);

impl LogTemplate {
    const FIELDS: [(&'static str, LogField); 15] = [
        ("client", LogField::Client),
        ("time", LogField::Time),
        ("timestamp", LogField::Timestamp),
        ("method", LogField::Method),
        ("target", LogField::Target),
        ("version", LogField::Version),
        ("status", LogField::Status),
        ("bytes", LogField::Bytes),
        ("referer", LogField::Referer),
        ("user_agent", LogField::UserAgent),
        ("duration_ms", LogField::DurationMs),
        ("route", LogField::Route),
        ("pool", LogField::Pool),
        ("backend", LogField::Backend),
        ("termination", LogField::Termination),
    ];

    /// Parses "{client} {status}": `Ok` for a field, `Err` for literal text.
    pub fn parse(text: &str) -> Result<LogTemplate, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Err(rest[..open].to_string()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("a '{{' without its '}}' in {text:?}"))?;
            let name = &rest[open + 1..open + close];
            let field = Self::FIELDS
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, f)| *f)
                .ok_or_else(|| {
                    let known: Vec<&str> = Self::FIELDS.iter().map(|(n, _)| *n).collect();
                    format!("unknown field {{{name}}} (known: {})", known.join(", "))
                })?;
            parts.push(Ok(field));
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Err(rest.to_string()));
        }
        Ok(LogTemplate(parts))
    }
}

/// Access log line formats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AccessFormat {
    #[default]
    Off,
    /// NCSA common log format.
    Common,
    /// Common plus referer and user agent (Apache/nginx `combined`).
    Combined,
    /// One JSON object per line.
    Json,
    /// `[log] format`, with named fields (HAProxy `log-format`, nginx `log_format`).
    Custom,
}
