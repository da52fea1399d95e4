//! The access log (`[log] access`): `common`, `combined`, `json` or `custom`
//! lines (named fields, `[log] format`), to a file or standard output.
//!
//! Off the request path: a request formats nothing; it pushes a small record
//! into a bounded channel; a dedicated thread formats and writes. When
//! the writer falls behind (a slow disk), records are dropped and counted
//! rather than letting a request wait.

use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::{AccessFormat, LogField, LogTemplate};

/// Records waiting for the writer before new ones are dropped.
const QUEUE: usize = 16_384;

/// One finished request.
pub struct Record {
    pub client: IpAddr,
    pub at: SystemTime,
    pub method: http::Method,
    pub target: String,
    pub version: http::Version,
    pub status: u16,
    /// Response body size when known (Content-Length).
    pub bytes: Option<u64>,
    pub referer: Option<String>,
    pub user_agent: Option<String>,
    pub duration: Duration,
    /// The route, pool and backend that served it, where there were.
    pub route: Option<String>,
    pub pool: Option<String>,
    pub backend: Option<String>,
    /// What ended it: `--`, or who and where (`crate::error::Error::termination`).
    pub termination: crate::error::Termination,
}

pub struct AccessLog {
    tx: SyncSender<Record>,
    pub dropped: AtomicU64,
}

impl AccessLog {
    /// Starts the writer thread; None when the log is off. `template` is
    /// the line of the custom format.
    pub fn start(
        format: AccessFormat,
        template: Option<LogTemplate>,
        path: Option<&Path>,
    ) -> std::io::Result<Option<AccessLog>> {
        if format == AccessFormat::Off {
            return Ok(None);
        }
        let out: Box<dyn Write + Send> = match path {
            Some(p) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            ),
            None => Box::new(std::io::stdout()),
        };
        let (tx, rx) = sync_channel::<Record>(QUEUE);
        std::thread::Builder::new()
            .name("floatlb-access-log".into())
            .spawn(move || {
                let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
                let mut line = String::with_capacity(512);
                let mut write = |r: Record, out: &mut std::io::BufWriter<_>| {
                    line.clear();
                    match &template {
                        Some(t) if format == AccessFormat::Custom => {
                            format_custom(t, &r, &mut line)
                        }
                        _ => format_record(format, &r, &mut line),
                    }
                    // Best effort: a failing disk must not stop the proxy.
                    let _ = out.write_all(line.as_bytes());
                };
                // Block for one record, write whatever else is queued, flush once.
                while let Ok(r) = rx.recv() {
                    write(r, &mut out);
                    while let Ok(r) = rx.try_recv() {
                        write(r, &mut out);
                    }
                    let _ = out.flush();
                }
            })?;
        Ok(Some(AccessLog {
            tx,
            dropped: AtomicU64::new(0),
        }))
    }

    /// Queues a record; never blocks.
    pub fn log(&self, r: Record) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(r) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Appends one line (with its newline) for `r` in `format`.
pub fn format_record(format: AccessFormat, r: &Record, out: &mut String) {
    use std::fmt::Write as _;
    let bytes = r.bytes.map_or("-".to_string(), |b| b.to_string());
    match format {
        AccessFormat::Off | AccessFormat::Custom => {}
        AccessFormat::Common | AccessFormat::Combined => {
            let _ = write!(
                out,
                "{} - - [{}] \"{} {} {:?}\" {} {}",
                r.client,
                clf_time(r.at),
                r.method,
                r.target,
                r.version,
                r.status,
                bytes
            );
            if format == AccessFormat::Combined {
                let _ = write!(
                    out,
                    " \"{}\" \"{}\"",
                    quoted(r.referer.as_deref().unwrap_or("-")),
                    quoted(r.user_agent.as_deref().unwrap_or("-"))
                );
            }
            out.push('\n');
        }
        AccessFormat::Json => {
            let secs =
                r.at.duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs_f64();
            let _ = writeln!(
                out,
                "{{\"time\":{secs:.6},\"client\":\"{}\",\"method\":{},\"target\":{},\"version\":\"{:?}\",\"status\":{},\"bytes\":{},\"referer\":{},\"user_agent\":{},\"duration_ms\":{:.3},\"route\":{},\"pool\":{},\"backend\":{},\"termination\":\"{}\"}}",
                r.client,
                crate::observe::json::json_str(r.method.as_str()),
                crate::observe::json::json_str(&r.target),
                r.version,
                r.status,
                r.bytes.map_or("null".to_string(), |b| b.to_string()),
                r.referer.as_deref().map_or("null".to_string(), crate::observe::json::json_str),
                r.user_agent.as_deref().map_or("null".to_string(), crate::observe::json::json_str),
                r.duration.as_secs_f64() * 1e3,
                json_or_null(&r.route),
                json_or_null(&r.pool),
                json_or_null(&r.backend),
                r.termination,
            );
        }
    }
}

fn json_or_null(v: &Option<String>) -> String {
    v.as_deref()
        .map_or("null".to_string(), crate::observe::json::json_str)
}

/// Appends one line of the custom format for `r`; an absent value is `-`,
/// and text from the request is quoted as in `combined`.
pub fn format_custom(t: &LogTemplate, r: &Record, out: &mut String) {
    use std::fmt::Write as _;
    let or_dash = |v: &Option<String>| quoted(v.as_deref().unwrap_or("-"));
    for part in &t.0 {
        let _ = match part {
            Err(text) => write!(out, "{text}"),
            Ok(LogField::Client) => write!(out, "{}", r.client),
            Ok(LogField::Time) => write!(out, "{}", clf_time(r.at)),
            Ok(LogField::Timestamp) => write!(
                out,
                "{:.6}",
                r.at.duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs_f64()
            ),
            Ok(LogField::Method) => write!(out, "{}", r.method),
            Ok(LogField::Target) => write!(out, "{}", quoted(&r.target)),
            Ok(LogField::Version) => write!(out, "{:?}", r.version),
            Ok(LogField::Status) => write!(out, "{}", r.status),
            Ok(LogField::Bytes) => match r.bytes {
                Some(b) => write!(out, "{b}"),
                None => write!(out, "-"),
            },
            Ok(LogField::Referer) => write!(out, "{}", or_dash(&r.referer)),
            Ok(LogField::UserAgent) => write!(out, "{}", or_dash(&r.user_agent)),
            Ok(LogField::DurationMs) => write!(out, "{:.3}", r.duration.as_secs_f64() * 1e3),
            Ok(LogField::Route) => write!(out, "{}", or_dash(&r.route)),
            Ok(LogField::Pool) => write!(out, "{}", or_dash(&r.pool)),
            Ok(LogField::Backend) => write!(out, "{}", or_dash(&r.backend)),
            Ok(LogField::Termination) => write!(out, "{}", r.termination),
        };
    }
    out.push('\n');
}

/// Escapes `"` and `\` and replaces control bytes, so a header cannot forge lines.
fn quoted(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '"' => "\\\"".to_string(),
            '\\' => "\\\\".to_string(),
            c if c.is_control() => "?".to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// `23/Nov/2026:06:35:00 +0000` (UTC).
fn clf_time(t: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    format!(
        "{d:02}/{}/{y}:{:02}:{:02}:{:02} +0000",
        MONTHS[(m - 1) as usize],
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// Days since 1970-01-01 to (year, month 1..=12, day 1..=31), proleptic Gregorian
/// (Howard Hinnant's civil_from_days).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        Record {
            client: "198.18.0.2".parse().unwrap(),
            // 2026-11-23T06:35:07Z
            at: UNIX_EPOCH + Duration::from_secs(1_795_415_707),
            method: http::Method::GET,
            target: "/a?b=1".into(),
            version: http::Version::HTTP_11,
            status: 200,
            bytes: Some(1500),
            referer: None,
            user_agent: Some("wrk \"x\"".into()),
            duration: Duration::from_micros(1500),
            route: Some("api".into()),
            pool: Some("api".into()),
            backend: None,
            termination: crate::error::Termination::NORMAL,
        }
    }

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(clf_time(record().at), "23/Nov/2026:06:35:07 +0000");
    }

    #[test]
    fn formats() {
        let mut s = String::new();
        format_record(AccessFormat::Common, &record(), &mut s);
        assert_eq!(
            s,
            "198.18.0.2 - - [23/Nov/2026:06:35:07 +0000] \"GET /a?b=1 HTTP/1.1\" 200 1500\n"
        );
        s.clear();
        format_record(AccessFormat::Combined, &record(), &mut s);
        assert!(s.ends_with(" 200 1500 \"-\" \"wrk \\\"x\\\"\"\n"), "{s}");
        s.clear();
        format_record(AccessFormat::Json, &record(), &mut s);
        assert!(s.starts_with("{\"time\":1795415707.000000,\"client\":\"198.18.0.2\",\"method\":\"GET\",\"target\":\"/a?b=1\",\"version\":\"HTTP/1.1\",\"status\":200,\"bytes\":1500,\"referer\":null,\"user_agent\":\"wrk \\\"x\\\"\",\"duration_ms\":1.500,\"route\":\"api\",\"pool\":\"api\",\"backend\":null,\"termination\":\"--\"}"), "{s}");
        s.clear();
        let t = LogTemplate::parse(
            "{client} {method} {target} {status} route={route} {pool} {backend} {user_agent} {termination}",
        )
        .unwrap();
        format_custom(&t, &record(), &mut s);
        assert_eq!(
            s,
            "198.18.0.2 GET /a?b=1 200 route=api api - wrk \\\"x\\\" --\n"
        );
        assert!(LogTemplate::parse("{nope}")
            .unwrap_err()
            .contains("unknown field {nope}"));
        assert!(LogTemplate::parse("{client").is_err());
    }
}
