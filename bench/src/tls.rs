//! The TLS sweep's summary (`vm-lab/lab sweep --tls`): floatlb, HAProxy and nginx terminating
//! TLS with one certificate under four loads (`sweep::TlsKind`). Here: the table of rates and
//! CPU per request, the ratios issue 18's targets are about (every rate at least 1.10x the
//! better of HAProxy and nginx at that load, CPU per request at most 0.85x HAProxy's), both from
//! the medians and target wording of `report`, and the idle TLS connections' memory. Not here:
//! running the loads (`sweep`) or holding the connections (`hold`).

use std::fmt::Write as _;

use crate::report;
use crate::sweep::{IdleRow, Load, Row, TlsKind};

/// floatlb's rate at each TLS load against the better peer's: at least this.
pub const RPS_TARGET: f64 = 1.10;
/// floatlb's CPU per request (or handshake) against HAProxy's: at most this.
pub const CPU_TARGET: f64 = 0.85;

/// A TLS load's row in the table and its ratio line.
pub fn title(kind: TlsKind) -> &'static str {
    match kind {
        TlsKind::KeepAlive => "HTTPS keep-alive, wrk -c50: requests/s",
        TlsKind::Resumed => {
            "a new connection per request, session resumed (wrk -c50, Connection: close): per second"
        }
        TlsKind::Full => "full handshakes, 8 x openssl s_time -new: per second",
        TlsKind::H2 => "HTTP/2, h2load -c50 -m10: requests/s",
    }
}

/// Whether a row is a TLS point.
pub fn is_tls(r: &Row) -> bool {
    TlsKind::of_label(&r.label).is_some()
}

/// A row of the `tls-runs.csv` the lab wrote before the TLS sweep moved into the bench
/// (`round,scenario,load,requests,seconds,rps,lb_cpu_us_per_req`), so that `bench report`
/// still reads those folders.
pub fn old_row(line: &str) -> Option<Row> {
    let f: Vec<&str> = line.split(',').collect();
    let [round, scenario, load, requests, seconds, rps, cpu] = f[..] else {
        return None;
    };
    let kind = TlsKind::from_name(load)?;
    let secs: f64 = seconds.parse().ok()?;
    let l = Load::Tls {
        kind,
        c: kind.clients(),
        secs: secs as u64,
    };
    Some(Row {
        round: round.parse().ok()?,
        scenario: scenario.into(),
        tool: l.tool().into(),
        concurrency: l.concurrency(),
        keepalive: l.keepalive(),
        label: l.label(),
        seconds: secs,
        ok: requests.parse().ok()?,
        rps: rps.parse().ok()?,
        lb_cpu_us_per_req: cpu.parse().ok()?,
        method: "GET".into(),
        ..Default::default()
    })
}

/// The floatlb scenarios of the rows with the peers they are judged against: `floatlb-rr`
/// with HAProxy's and nginx's `-rr` scenarios, `-lc` alike.
fn pairs(rows: &[Row]) -> Vec<(String, [String; 2])> {
    ["rr", "lc"]
        .iter()
        .map(|s| {
            (
                format!("floatlb-{s}"),
                [format!("haproxy-{s}"), format!("nginx-{s}")],
            )
        })
        .filter(|(ours, _)| rows.iter().any(|r| r.scenario == *ours))
        .collect()
}

/// Per TLS load (in sweep order) and floatlb scenario: its rate against the better peer's at
/// that load, and its CPU per request against HAProxy's, each judged against its target.
/// Lines start with the load's title; a floatlb scenario other than `floatlb-rr` is named.
pub fn lines(rows: &[Row]) -> String {
    let mut s = String::new();
    for (ours, peers) in pairs(rows) {
        for (load, by) in report::group(rows) {
            let Some(kind) = TlsKind::of_label(&load) else {
                continue;
            };
            let runs = |name: &str| by.iter().find(|(s, _)| s == name).map(|(_, v)| v);
            let rps = |v: &Vec<&Row>| report::median(v, |r| r.rps);
            let Some(mine) = runs(&ours) else {
                continue;
            };
            let Some((best, theirs)) = peers
                .iter()
                .filter_map(|p| runs(p).map(|v| (p, v)))
                .filter(|(_, v)| rps(v) > 0.0)
                .max_by(|a, b| rps(a.1).total_cmp(&rps(b.1)))
            else {
                continue;
            };
            let r = rps(mine) / rps(theirs);
            let _ = write!(
                s,
                "{}{}: {r:.2}x {best}{}",
                if ours == "floatlb-rr" {
                    String::new()
                } else {
                    format!("{ours}, ")
                },
                title(kind),
                report::judged(r, Some(RPS_TARGET), false, "")
            );
            let cpu = |v: &Vec<&Row>| report::median(v, |r| r.lb_cpu_us_per_req);
            if let Some(h) = runs(&peers[0]).filter(|h| cpu(h) > 0.0) {
                let c = cpu(mine) / cpu(h);
                let _ = write!(
                    s,
                    "; CPU per request {c:.2}x {}{}",
                    peers[0],
                    report::judged(c, Some(CPU_TARGET), true, "")
                );
            }
            s.push('\n');
        }
    }
    s
}

/// The TLS sweep's summary: setup, the table of medians, the ratio lines, lost requests, the
/// idle TLS connections and every load point.
pub fn markdown(rows: &[Row], idle: &[IdleRow], setup: &[(String, String)]) -> String {
    let mut s = String::from("# TLS sweep\n\n");
    for (k, v) in setup {
        let _ = writeln!(s, "- {k}: {v}");
    }
    let rounds = rows.iter().map(|r| r.round).max().unwrap_or(0);
    let _ = writeln!(
        s,
        "- rounds: {rounds}; medians over rounds; \"LB\" is the balancer's host, its CPU summed \
         over every process in its namespace from /proc (schedstat)\n"
    );
    let mut scenarios: Vec<&str> = Vec::new();
    for r in rows {
        if !scenarios.contains(&r.scenario.as_str()) {
            scenarios.push(&r.scenario);
        }
    }
    scenarios.sort_by_key(|s| report::scenario_rank(s));
    let _ = writeln!(s, "| load | {} |", scenarios.join(" | "));
    let _ = writeln!(s, "|---|{}", "---|".repeat(scenarios.len()));
    for (load, by) in report::group(rows) {
        let Some(kind) = TlsKind::of_label(&load) else {
            continue;
        };
        let cells: Vec<String> = scenarios
            .iter()
            .map(|sc| match by.iter().find(|(s, _)| s == sc) {
                Some((_, v)) => format!(
                    "{:.0} ({:.1} µs)",
                    report::median(v, |r| r.rps),
                    report::median(v, |r| r.lb_cpu_us_per_req)
                ),
                None => "-".into(),
            })
            .collect();
        let _ = writeln!(s, "| {} | {} |", title(kind), cells.join(" | "));
    }
    s += "\nEach cell: rate (LB host CPU per request or handshake).\n";
    let l = lines(rows);
    if !l.is_empty() {
        s += "\n## floatlb against the better peer at each load\n\n";
        for line in l.lines() {
            let _ = writeln!(s, "- {line}");
        }
    }
    s += &report::lost_section(rows);
    if !idle.is_empty() {
        s += "\n## Idle TLS connections (held idle, each after one request)\n\n\
              The LB host's resident memory (all its processes) before and while they are held; \
              kernel socket memory is not included.\n\n";
        s += &report::idle_table(idle);
    }
    s += &report::every_point_section(rows);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::tls_plan;

    /// The rows of a TLS sweep the lab ran on 2026-11-30 (bench/results/2026-11-30-tls3), as
    /// its former tls-runs.csv holds them.
    const RUNS_2026_11_30: &str = include_str!("../tests/data/tls-runs.csv");

    fn old_rows() -> Vec<Row> {
        RUNS_2026_11_30
            .lines()
            .skip(1)
            .filter_map(old_row)
            .collect()
    }

    /// The lines and table of that sweep's tls-summary.md, written then by the lab's Python
    /// report, come out the same from the shared medians.
    #[test]
    fn the_lines_and_table_match_the_former_report() {
        let rows = old_rows();
        assert_eq!(rows.len(), 36);
        assert_eq!(
            lines(&rows),
            "HTTPS keep-alive, wrk -c50: requests/s: 1.25x nginx-rr (target >= 1.10: met); \
             CPU per request 0.74x haproxy-rr (target <= 0.85: met)\n\
             a new connection per request, session resumed (wrk -c50, Connection: close): per \
             second: 0.88x nginx-rr (target >= 1.10: NOT met); CPU per request 0.41x haproxy-rr \
             (target <= 0.85: met)\n\
             full handshakes, 8 x openssl s_time -new: per second: 1.71x nginx-rr (target >= \
             1.10: met); CPU per request 0.48x haproxy-rr (target <= 0.85: met)\n\
             HTTP/2, h2load -c50 -m10: requests/s: 1.23x haproxy-rr (target >= 1.10: met); CPU \
             per request 0.81x haproxy-rr (target <= 0.85: met)\n"
        );
        let md = markdown(&rows, &[], &[]);
        for row in [
            "| load | floatlb-rr | haproxy-rr | nginx-rr |",
            "| HTTPS keep-alive, wrk -c50: requests/s | 8814 (28.6 µs) | 6579 (38.8 µs) | 7053 (36.2 µs) |",
            "| full handshakes, 8 x openssl s_time -new: per second | 1048 (260.1 µs) | 542 (537.6 µs) | 614 (470.4 µs) |",
            "| HTTP/2, h2load -c50 -m10: requests/s | 10196 (24.9 µs) | 8281 (30.6 µs) | 5756 (44.1 µs) |",
        ] {
            assert!(md.contains(row), "{row}\n{md}");
        }
        assert!(md.contains("None: every request"), "{md}");
    }

    #[test]
    fn labels_name_the_kind_and_old_rows_get_the_same() {
        let plan = tls_plan(5);
        let labels: Vec<String> = plan.iter().map(Load::label).collect();
        assert_eq!(
            labels,
            [
                "TLS keepalive wrk -c 50 -d 5s",
                "TLS resumed wrk -c 50 -d 5s close",
                "TLS full s_time -new x8 -time 5s",
                "TLS h2 h2load -c 50 -m 10 -D 5s",
            ]
        );
        for (l, k) in labels.iter().zip(TlsKind::ALL) {
            assert_eq!(TlsKind::of_label(l), Some(k));
        }
        assert_eq!(TlsKind::of_label("wrk -c 50 -d 5s"), None);
        assert_eq!(TlsKind::of_label("TLS nothing"), None);
        let old = old_rows();
        assert_eq!(old[0].label, labels[0]);
        assert_eq!(old[9].label, labels[3]);
        assert!(old.iter().all(is_tls));
        // Resumed and full handshakes make a connection per request.
        assert_eq!(
            plan.iter().map(Load::keepalive).collect::<Vec<_>>(),
            [true, false, false, true]
        );
        assert_eq!(old_row("1,floatlb-rr,keepalive,5,x,1,1"), None);
        assert_eq!(old_row("1,floatlb-rr,quic,5,5,1,1"), None);
    }

    /// Without HAProxy there is no CPU clause; a peer with no rate is no "better peer"; a
    /// least-connection floatlb is judged against the least-connection peers and named.
    #[test]
    fn peers_missing_or_idle() {
        let row = |sc: &str, kind: TlsKind, rps: f64, us: f64| Row {
            round: 1,
            scenario: sc.into(),
            label: Load::Tls {
                kind,
                c: kind.clients(),
                secs: 5,
            }
            .label(),
            rps,
            lb_cpu_us_per_req: us,
            ..Default::default()
        };
        let rows = vec![
            row("floatlb-rr", TlsKind::KeepAlive, 1100.0, 20.0),
            row("nginx-rr", TlsKind::KeepAlive, 1000.0, 25.0),
            row("floatlb-lc", TlsKind::H2, 900.0, 20.0),
            row("haproxy-lc", TlsKind::H2, 1000.0, 40.0),
            row("nginx-lc", TlsKind::H2, 0.0, 0.0),
        ];
        assert_eq!(
            lines(&rows),
            "HTTPS keep-alive, wrk -c50: requests/s: 1.10x nginx-rr (target >= 1.10: met)\n\
             floatlb-lc, HTTP/2, h2load -c50 -m10: requests/s: 0.90x haproxy-lc (target >= \
             1.10: NOT met); CPU per request 0.50x haproxy-lc (target <= 0.85: met)\n"
        );
        let md = markdown(&rows, &[], &[]);
        assert!(
            md.contains("| load | floatlb-rr | floatlb-lc | haproxy-lc | nginx-rr | nginx-lc |"),
            "{md}"
        );
        assert!(md.contains("| HTTP/2, h2load -c50 -m10: requests/s | - | 900 (20.0 µs) |"));
    }
}
