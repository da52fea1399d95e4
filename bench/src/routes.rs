//! The routes scenarios of a bound sweep (`vm-lab/lab sweep --routes`, issue 28): floatlb with
//! 1, 1,000 and 10,000 host routes (plus 100 path prefixes), HAProxy with a host map and nginx
//! with `server_name` blocks of the same sizes, every balancer's host capped alike. Here: the
//! ratios the targets are about (floatlb's CPU per request against its own 1-route figure and
//! against the better peer of the same size) and the markdown section with the lab's memory and
//! reload files. Not here: the configurations (the lab writes them) or any timing assertion.

use std::fmt::Write as _;

use crate::report::{self, Ratio, Targets};
use crate::sweep::Row;

/// The table sizes a routes sweep runs, as its scenario names spell them (`floatlb-r10k`), and
/// how many routes each has. `1b` is a second host with the 1-route configuration: the run's
/// own noise between two hosts that should measure alike; `10kh` (floatlb only) the 10,000 host
/// routes without the 100 path prefixes, to tell the table's size from the prefixes.
pub const SIZES: [(&str, u64); 5] = [
    ("1", 1),
    ("1b", 1),
    ("1k", 1_000),
    ("10kh", 10_000),
    ("10k", 10_100),
];

/// floatlb's CPU per request at 10,000 routes against its 1-route figure: at most this.
pub const FLAT_TARGET: f64 = 1.03;

/// (stack, size) of a routes scenario name: `nginx-r1k` is ("nginx", "1k").
pub fn parse(name: &str) -> Option<(&str, &str)> {
    let (stack, size) = name.split_once("-r")?;
    SIZES
        .iter()
        .any(|(s, _)| *s == size)
        .then_some((stack, size))
}

/// Whether a sweep's rows hold routes scenarios.
pub fn present(rows: &[Row]) -> bool {
    rows.iter().any(|r| parse(&r.scenario).is_some())
}

/// Per load point, the runs of the peer (HAProxy or nginx) with the lower median CPU per request
/// at this size, renamed `best-r<size>`. Capped alike, the lower CPU per request is also the
/// higher rate.
fn best_peer_rows(rows: &[Row], size: &str) -> Vec<Row> {
    let mut out = Vec::new();
    for (_, by) in report::group(rows) {
        let best = by
            .iter()
            .filter(|(s, _)| *s == format!("haproxy-r{size}") || *s == format!("nginx-r{size}"))
            .min_by(|a, b| {
                let cpu = |v: &[&Row]| report::median(v, |r| r.lb_cpu_us_per_req);
                cpu(&a.1).total_cmp(&cpu(&b.1))
            });
        if let Some((_, v)) = best {
            out.extend(v.iter().map(|r| Row {
                scenario: format!("best-r{size}"),
                ..(*r).clone()
            }));
        }
    }
    out
}

fn line(r: &[Ratio], what: &str, t: Targets) -> Option<String> {
    let first = r.first()?;
    let cpu = report::geomean(r.iter().map(|x| x.cpu));
    let rps = report::geomean(r.iter().map(|x| x.rps));
    let judged = match t.cpu {
        Some(max) => format!(
            " (target <= {max:.2}: {})",
            if cpu <= max { "met" } else { "NOT met" }
        ),
        None => String::new(),
    };
    Some(format!(
        "{}/{} {what} over {} load point{}: CPU per request {cpu:.3}x{judged}, req/s {rps:.3}x",
        first.pair.0,
        first.pair.1,
        r.len(),
        if r.len() == 1 { "" } else { "s" },
    ))
}

/// The routes lines: the A/A pair, floatlb's 1,000 and 10,000 routes against its 1 route,
/// each peer's the same way, and floatlb against the better peer at each size.
pub fn lines(rows: &[Row]) -> String {
    let mut s = String::new();
    let none = Targets::default();
    let flat = Targets {
        cpu: Some(FLAT_TARGET),
        ..Default::default()
    };
    let mut push = |l: Option<String>| {
        if let Some(l) = l {
            let _ = writeln!(s, "{l}");
        }
    };
    push(line(
        &report::ratios(rows, "floatlb-r1b", "floatlb-r1"),
        "(A/A: the 1-route configuration on two hosts, the run's own noise)",
        none,
    ));
    for stack in ["floatlb", "haproxy", "nginx"] {
        for (size, t) in [
            ("1k", none),
            ("10kh", none),
            ("10k", if stack == "floatlb" { flat } else { none }),
        ] {
            push(line(
                &report::ratios(rows, &format!("{stack}-r{size}"), &format!("{stack}-r1")),
                "(the same balancer with more routes)",
                t,
            ));
        }
    }
    for size in ["1", "1k", "10k"] {
        let ours = format!("floatlb-r{size}");
        let mut all: Vec<Row> = rows
            .iter()
            .filter(|r| r.scenario == ours)
            .cloned()
            .collect();
        all.extend(best_peer_rows(rows, size));
        let t = if size == "10k" {
            // "Less than the better peer": at most 1.00.
            Targets {
                cpu: Some(1.0),
                ..Default::default()
            }
        } else {
            none
        };
        push(line(
            &report::ratios(&all, &ours, &format!("best-r{size}")),
            "(the better of HAProxy and nginx per point, by CPU per request)",
            t,
        ));
    }
    s
}

/// The summary's routes section: the lines, a table per load point, and the lab's memory
/// and reload files (`routes-memory.tsv`, `routes-reload.tsv`) when given.
pub fn markdown(rows: &[Row], memory_tsv: Option<&str>, reload_tsv: Option<&str>) -> String {
    let mut s = String::from("\n## Routes\n\n");
    for l in lines(rows).lines() {
        let _ = writeln!(s, "- {l}");
    }
    for (load, by) in report::group(rows) {
        let _ = writeln!(
            s,
            "\n{load}, medians (min–max) over rounds:\n\n\
             | scenario | routes | req/s | LB µs/req | LB user µs/req | CPU/req against its 1-route | lost |\n\
             |---|---|---|---|---|---|---|"
        );
        // floatlb, HAProxy, nginx, each from its smallest table up.
        let order = |sc: &str| {
            parse(sc).map(|(stack, size)| {
                let st = ["floatlb", "haproxy", "nginx"]
                    .iter()
                    .position(|x| *x == stack);
                (st, SIZES.iter().position(|(s, _)| *s == size))
            })
        };
        let mut by: Vec<_> = by.iter().filter(|(sc, _)| order(sc).is_some()).collect();
        by.sort_by_key(|(sc, _)| order(sc));
        for (sc, v) in &by {
            let Some((stack, size)) = parse(sc) else {
                continue;
            };
            let n = SIZES.iter().find(|(s, _)| *s == size).map_or(0, |x| x.1);
            let cpu = report::median(v, |r| r.lb_cpu_us_per_req);
            let base = by
                .iter()
                .find(|(s, _)| *s == format!("{stack}-r1"))
                .map(|(_, b)| report::median(b, |r| r.lb_cpu_us_per_req));
            let (lo, hi) = v.iter().fold((f64::MAX, 0.0f64), |(lo, hi), r| {
                (lo.min(r.rps), hi.max(r.rps))
            });
            let (clo, chi) = v.iter().fold((f64::MAX, 0.0f64), |(lo, hi), r| {
                (lo.min(r.lb_cpu_us_per_req), hi.max(r.lb_cpu_us_per_req))
            });
            let _ = writeln!(
                s,
                "| {sc} | {n} | {:.0} ({lo:.0}–{hi:.0}) | {cpu:.2} ({clo:.2}–{chi:.2}) | {:.2} | {} | {} |",
                report::median(v, |r| r.rps),
                report::median(v, |r| r.lb_user_us_per_req),
                base.filter(|b| *b > 0.0)
                    .map_or("-".into(), |b| format!("{:.3}x", cpu / b)),
                v.iter().map(|r| r.lost).sum::<u64>(),
            );
        }
    }
    if let Some(t) = memory_tsv {
        s += "\nMemory: every process of the balancer's host, idle, after its health checks settled \
              and before any load (RSS, and PSS, which shares a page among the processes mapping \
              it); per route = (the 10,000-route figure − the 1-route one) / 10,000.\n\n";
        s += &tsv_table(t);
    }
    if let Some(t) = reload_tsv {
        s +=
            "\nReload of the 10,000-route configuration (one host route added) under `wrk -c 50`, \
              the balancer's host still capped: the load's failed requests, and the time from the \
              signal to the new route's first answer (polled every 20 ms).\n\n";
        s += &tsv_table(t);
    }
    s
}

/// A tab-separated file with a header line as a markdown table.
fn tsv_table(t: &str) -> String {
    let mut s = String::new();
    for (i, l) in t.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let cells: Vec<&str> = l.split('\t').collect();
        let _ = writeln!(s, "| {} |", cells.join(" | "));
        if i == 0 {
            let _ = writeln!(s, "|{}", "---|".repeat(cells.len()));
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

    #[test]
    fn names_parse_into_stack_and_size() {
        assert_eq!(parse("floatlb-r10k"), Some(("floatlb", "10k")));
        assert_eq!(parse("nginx-r1b"), Some(("nginx", "1b")));
        assert_eq!(parse("floatlb-rr"), None);
        assert_eq!(parse("haproxy-r5"), None);
    }

    /// floatlb's 10,000 routes are judged against its own 1 route (<= 1.03x) and against the
    /// better peer of that size, the one with the lower CPU per request (nginx here).
    #[test]
    fn floatlb_is_judged_against_itself_and_the_better_peer() {
        let mut rows = Vec::new();
        for round in 1..=3 {
            rows.extend([
                row(round, "floatlb-r1", 10000.0, 25.0),
                row(round, "floatlb-r1b", 10100.0, 25.5),
                row(round, "floatlb-r1k", 9900.0, 25.2),
                row(round, "floatlb-r10k", 9500.0, 26.0),
                row(round, "haproxy-r1", 8000.0, 31.0),
                row(round, "haproxy-r10k", 7800.0, 32.0),
                row(round, "nginx-r1", 9000.0, 28.0),
                row(round, "nginx-r10k", 8500.0, 29.0),
            ]);
        }
        let l = lines(&rows);
        assert!(
            l.contains("floatlb-r10k/floatlb-r1 (the same balancer with more routes) over 1 load point: CPU per request 1.040x (target <= 1.03: NOT met)"),
            "{l}"
        );
        assert!(
            l.contains("floatlb-r10k/best-r10k (the better of HAProxy and nginx per point, by CPU per request) over 1 load point: CPU per request 0.897x (target <= 1.00: met)"),
            "{l}"
        );
        assert!(l.contains("floatlb-r1b/floatlb-r1 (A/A"), "{l}");
        assert!(l.contains("nginx-r10k/nginx-r1 "), "{l}");
        // No HAProxy 1k run in this sweep: no line for it.
        assert!(!l.contains("haproxy-r1k"), "{l}");
        let md = markdown(&rows, Some("scenario\trss_kib\nfloatlb-r1\t9000\n"), None);
        assert!(
            md.contains("| floatlb-r10k | 10100 | 9500 (9500–9500) | 26.00 (26.00–26.00) | 0.00 | 1.040x | 0 |"),
            "{md}"
        );
        assert!(
            md.contains("| scenario | rss_kib |\n|---|---|\n| floatlb-r1 | 9000 |"),
            "{md}"
        );
    }
}
