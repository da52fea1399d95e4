//! The backends scenarios of a bound sweep (`vm-lab/lab sweep --backends`, issue 30): the
//! client speaks cleartext HTTP/1.1 to every balancer and the hop to the web servers differs:
//! TLS verified against the lab's CA (`*-betls`), HTTP/2 over TLS (`*-beh2`) or a TCP relay
//! (`*-tcp`). Here: floatlb's ratios against the peer doing the same (CPU per request at most
//! the peer's is the target) and the summary's section. Not here: the configurations (the lab
//! writes them) or any timing assertion.

use std::fmt::Write as _;

use crate::report::{self, Ratio};
use crate::sweep::Row;

/// (floatlb's scenario, the peer's, what the pair measures), in the summary's order.
pub const PAIRS: [(&str, &str, &str); 4] = [
    (
        "floatlb-betls",
        "haproxy-betls",
        "TLS to backends (verified, keep-alive)",
    ),
    (
        "floatlb-betls",
        "nginx-betls",
        "TLS to backends (verified, keep-alive)",
    ),
    (
        "floatlb-beh2",
        "haproxy-beh2",
        "HTTP/2 over TLS to backends",
    ),
    ("floatlb-tcp", "haproxy-tcp", "TCP mode (L4 relay)"),
];

/// floatlb's CPU per request against the peer's: at most this (issue 30, "at most the peer's").
pub const CPU_TARGET: f64 = 1.0;

/// Whether a sweep's rows hold backends scenarios.
pub fn present(rows: &[Row]) -> bool {
    rows.iter().any(|r| {
        r.scenario.ends_with("-betls")
            || r.scenario.ends_with("-beh2")
            || r.scenario == "floatlb-tcp"
    })
}

fn line(r: &[Ratio], what: &str) -> Option<String> {
    let first = r.first()?;
    let cpu = report::geomean(r.iter().map(|x| x.cpu));
    let rps = report::geomean(r.iter().map(|x| x.rps));
    let p99 = report::geomean(r.iter().map(|x| x.p99));
    Some(format!(
        "{}/{} {what} over {} load point{}: CPU per request {cpu:.3}x (target <= {CPU_TARGET:.2}: {}), req/s {rps:.3}x, p99 {p99:.2}x",
        first.pair.0,
        first.pair.1,
        r.len(),
        if r.len() == 1 { "" } else { "s" },
        if cpu <= CPU_TARGET { "met" } else { "NOT met" },
    ))
}

/// One line per pair present in the rows.
pub fn lines(rows: &[Row]) -> String {
    let mut s = String::new();
    for (ours, theirs, what) in PAIRS {
        if let Some(l) = line(&report::ratios(rows, ours, theirs), &format!("({what})")) {
            let _ = writeln!(s, "{l}");
        }
    }
    s
}

/// The summary's backends section: the lines, then a table per load point.
pub fn markdown(rows: &[Row]) -> String {
    let mut s = String::from("\n## Backends over TLS, HTTP/2 and TCP\n\n");
    for l in lines(rows).lines() {
        let _ = writeln!(s, "- {l}");
    }
    let rank = |sc: &str| {
        PAIRS
            .iter()
            .flat_map(|(a, b, _)| [*a, *b])
            .position(|x| x == sc)
    };
    for (load, by) in report::group(rows) {
        let _ = writeln!(
            s,
            "\n{load}, medians (min–max) over rounds:\n\n\
             | scenario | req/s | LB µs/req | LB user µs/req | p99 ms | lost |\n\
             |---|---|---|---|---|---|"
        );
        let mut by: Vec<_> = by.iter().filter(|(sc, _)| rank(sc).is_some()).collect();
        by.sort_by_key(|(sc, _)| rank(sc));
        for (sc, v) in by {
            let range = |f: fn(&Row) -> f64| {
                v.iter().fold((f64::MAX, 0.0f64), |(lo, hi), r| {
                    (lo.min(f(r)), hi.max(f(r)))
                })
            };
            let (lo, hi) = range(|r| r.rps);
            let (clo, chi) = range(|r| r.lb_cpu_us_per_req);
            let _ = writeln!(
                s,
                "| {sc} | {:.0} ({lo:.0}–{hi:.0}) | {:.2} ({clo:.2}–{chi:.2}) | {:.2} | {:.2} | {} |",
                report::median(v, |r| r.rps),
                report::median(v, |r| r.lb_cpu_us_per_req),
                report::median(v, |r| r.lb_user_us_per_req),
                report::median(v, |r| r.p99_ms),
                v.iter().map(|r| r.lost).sum::<u64>(),
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(round: u32, sc: &str, rps: f64, us: f64) -> Row {
        Row {
            round,
            scenario: sc.into(),
            label: "wrk -c 50 -d 5s".into(),
            keepalive: true,
            seconds: 5.0,
            rps,
            lb_cpu_us_per_req: us,
            p99_ms: 1.0,
            ..Default::default()
        }
    }

    /// Each floatlb scenario is judged against the peer doing the same hop; a pair whose
    /// peer did not run has no line.
    #[test]
    fn pairs_are_judged_against_the_same_hop() {
        let mut rows = Vec::new();
        for round in 1..=3 {
            rows.extend([
                row(round, "floatlb-betls", 8000.0, 30.0),
                row(round, "haproxy-betls", 6000.0, 40.0),
                row(round, "floatlb-tcp", 12000.0, 20.0),
                row(round, "haproxy-tcp", 13000.0, 19.0),
            ]);
        }
        assert!(present(&rows));
        let l = lines(&rows);
        assert!(
            l.contains("floatlb-betls/haproxy-betls (TLS to backends (verified, keep-alive)) over 1 load point: CPU per request 0.750x (target <= 1.00: met), req/s 1.333x"),
            "{l}"
        );
        assert!(
            l.contains("floatlb-tcp/haproxy-tcp (TCP mode (L4 relay)) over 1 load point: CPU per request 1.053x (target <= 1.00: NOT met)"),
            "{l}"
        );
        assert!(!l.contains("nginx-betls") && !l.contains("beh2"), "{l}");
        let md = markdown(&rows);
        assert!(
            md.contains(
                "| floatlb-betls | 8000 (8000–8000) | 30.00 (30.00–30.00) | 0.00 | 1.00 | 0 |"
            ),
            "{md}"
        );
        assert!(!present(&[row(1, "haproxy-tcp", 1.0, 1.0)]));
    }
}
