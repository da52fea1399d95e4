//! The sweep's markdown summary: medians with their spread per scenario and load point, every
//! lost request, idle-connection memory, and the ratios the targets are about: floatlb against
//! HAProxy, nginx and a baseline build, GET and POST points each on their own.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::stats;
use crate::sweep::{IdleRow, Row};

/// One scenario's runs at one load point.
pub type ByScenario<'a> = Vec<(String, Vec<&'a Row>)>;

/// Rows grouped by load point (in sweep order), then scenario (in sweep order).
pub fn group(rows: &[Row]) -> Vec<(String, ByScenario<'_>)> {
    let mut out: Vec<(String, ByScenario)> = Vec::new();
    for r in rows {
        let li = match out.iter().position(|(l, _)| *l == r.label) {
            Some(i) => i,
            None => {
                out.push((r.label.clone(), Vec::new()));
                out.len() - 1
            }
        };
        let by = &mut out[li].1;
        match by.iter_mut().find(|(s, _)| *s == r.scenario) {
            Some((_, v)) => v.push(r),
            None => by.push((r.scenario.clone(), vec![r])),
        }
    }
    // Scenario order: as first seen in round 1 rotated back (single first when present).
    for (_, by) in &mut out {
        by.sort_by_key(|(s, _)| scenario_rank(s));
    }
    out
}

/// Where a scenario goes in tables and legends: the bare server, then floatlb, HAProxy, nginx.
pub fn scenario_rank(s: &str) -> (usize, String) {
    let order = [
        "single",
        "floatlb-rr",
        "floatlb-lc",
        "baseline-rr",
        "haproxy-rr",
        "haproxy-lc",
        "nginx-rr",
        "nginx-lc",
        "haproxy-tcp",
    ];
    (
        order.iter().position(|o| *o == s).unwrap_or(order.len()),
        s.to_string(),
    )
}

pub fn median(rows: &[&Row], f: impl Fn(&Row) -> f64) -> f64 {
    let v: Vec<f64> = rows.iter().map(|r| f(r)).collect();
    stats::summarize(&v).map_or(0.0, |s| s.median)
}

fn spread(rows: &[&Row], f: impl Fn(&Row) -> f64, prec: usize) -> String {
    let v: Vec<f64> = rows.iter().map(|r| f(r)).collect();
    match stats::summarize(&v) {
        Some(s) if s.n > 1 => format!("{:.p$} ({:.p$}–{:.p$})", s.median, s.min, s.max, p = prec),
        Some(s) => format!("{:.p$}", s.median, p = prec),
        None => "-".into(),
    }
}

/// floatlb/peer ratios for one load point: (CPU per request, req/s, p99), and where the CPU
/// goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Ratio {
    pub load: String,
    /// A POST point (a request body to forward) rather than a GET.
    pub post: bool,
    pub pair: (String, String),
    pub cpu: f64,
    pub rps: f64,
    pub p99: f64,
    /// The balancers' user-space CPU per request (their own code, without the kernel's work).
    pub user: f64,
    /// The whole machine's CPU per request.
    pub machine: f64,
    /// The req/s ratio if floatlb's user-space CPU cost nothing and the machine stayed
    /// saturated: `rps * machine_ours / (machine_ours - user_ours)`.
    pub ceiling: f64,
}

pub fn ratios(rows: &[Row], ours: &str, theirs: &str) -> Vec<Ratio> {
    let mut out = Vec::new();
    for (load, by) in group(rows) {
        let get = |name: &str| by.iter().find(|(s, _)| s == name).map(|(_, v)| v.clone());
        let (Some(a), Some(b)) = (get(ours), get(theirs)) else {
            continue;
        };
        let q = |f: fn(&Row) -> f64| {
            let (x, y) = (median(&a, f), median(&b, f));
            if y > 0.0 {
                x / y
            } else {
                f64::NAN
            }
        };
        let rps = q(|r| r.rps);
        let (m, u) = (
            median(&a, |r| r.machine_us_per_req),
            median(&a, |r| r.lb_user_us_per_req),
        );
        out.push(Ratio {
            load,
            post: a[0].is_post(),
            pair: (ours.into(), theirs.into()),
            cpu: q(|r| r.lb_cpu_us_per_req),
            rps,
            p99: q(|r| r.p99_ms),
            user: q(|r| r.lb_user_us_per_req),
            machine: q(|r| r.machine_us_per_req),
            ceiling: if m > u && u > 0.0 {
                rps * m / (m - u)
            } else {
                f64::NAN
            },
        });
    }
    out
}

/// Geometric mean of the finite, positive values.
pub fn geomean(v: impl Iterator<Item = f64>) -> f64 {
    let (s, n) = v
        .filter(|x| x.is_finite() && *x > 0.0)
        .fold((0.0, 0), |(s, n), x| (s + f64::ln(x), n + 1));
    if n == 0 {
        f64::NAN
    } else {
        (s / n as f64).exp()
    }
}

/// Geometric means of the per-point ratios: (CPU per request, req/s, p99).
fn mean_ratios(r: &[Ratio]) -> (f64, f64, f64) {
    (
        geomean(r.iter().map(|x| x.cpu)),
        geomean(r.iter().map(|x| x.rps)),
        geomean(r.iter().map(|x| x.p99)),
    )
}

/// The pairs compared, in the order their lines and table rows appear.
const PAIRS: [(&str, &str); 5] = [
    ("floatlb-rr", "haproxy-rr"),
    ("floatlb-lc", "haproxy-lc"),
    ("floatlb-rr", "nginx-rr"),
    ("floatlb-lc", "nginx-lc"),
    ("floatlb-rr", "baseline-rr"),
];

/// The limits one comparison line holds its ratios to; `None`: shown without a target.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Targets {
    /// CPU per request at most this.
    pub cpu: Option<f64>,
    /// req/s at least this.
    pub rps: Option<f64>,
    /// p99 at most this.
    pub p99: Option<f64>,
}

/// The targets of a pair's GET or POST points: against HAProxy, GET points keep the first
/// targets (CPU per request <= 0.85x, req/s >= 1.15x, p99 <= 1.00x) and POST points have the
/// CPU one; against nginx, POST points' CPU per request at most nginx's. A baseline build gets
/// none: two runs of one binary differ by about 5% here, so its figures are read, not judged.
pub fn targets(theirs: &str, post: bool) -> Targets {
    match (theirs.split('-').next().unwrap_or(""), post) {
        ("haproxy", false) => Targets {
            cpu: Some(0.85),
            rps: Some(1.15),
            p99: Some(1.0),
        },
        ("haproxy", true) => Targets {
            cpu: Some(0.85),
            ..Default::default()
        },
        ("nginx", true) => Targets {
            cpu: Some(1.0),
            ..Default::default()
        },
        _ => Targets::default(),
    }
}

fn class(post: bool) -> &'static str {
    if post {
        "POST"
    } else {
        "GET"
    }
}

/// " (target <= 0.85: met)", with the per-point ratios after it when given.
pub fn judged(v: f64, target: Option<f64>, at_most: bool, per_point: &str) -> String {
    let mut parts = Vec::new();
    if let Some(t) = target {
        let ok = if at_most { v <= t } else { v >= t };
        parts.push(format!(
            "target {} {t:.2}: {}",
            if at_most { "<=" } else { ">=" },
            if ok { "met" } else { "NOT met" }
        ));
    }
    if !per_point.is_empty() {
        parts.push(format!("per point: {per_point}"));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join("; "))
    }
}

/// One pair's line for its GET or its POST points: geometric means of the per-point ratios,
/// each against its target; POST lines list every point's CPU ratio, the figure their target
/// is about, as there are few of them.
pub fn compare_line(r: &[Ratio], t: Targets) -> Option<String> {
    compare_line_as(r, t, class(r.first()?.post))
}

/// `compare_line` with the class of its points named by the caller ("keep-alive GET", ...).
fn compare_line_as(r: &[Ratio], t: Targets, class: &str) -> Option<String> {
    let first = r.first()?;
    let (ours, theirs) = (&first.pair.0, &first.pair.1);
    let (cpu, rps, p99) = mean_ratios(r);
    let per_point = if first.post {
        r.iter()
            .map(|x| format!("{} {:.2}x", x.load, x.cpu))
            .collect::<Vec<_>>()
            .join(", ")
    } else {
        String::new()
    };
    let what = if theirs == "baseline-rr" {
        "this build against the baseline binary"
    } else {
        "geometric mean of per-point medians"
    };
    Some(format!(
        "{ours}/{theirs} {} over {} load point{} ({what}): CPU per request {cpu:.2}x{}, \
         req/s {rps:.2}x{}, p99 {p99:.2}x{}",
        class,
        r.len(),
        if r.len() == 1 { "" } else { "s" },
        judged(cpu, t.cpu, true, &per_point),
        judged(rps, t.rps, false, ""),
        judged(p99, t.p99, true, ""),
    ))
}

/// The ratio lines printed at the end of a sweep and kept in the summary: GET points first,
/// then POST points, each pair on its own line.
pub fn ratio_lines(rows: &[Row]) -> String {
    let mut s = String::new();
    let all: Vec<Vec<Ratio>> = PAIRS
        .iter()
        .map(|(ours, theirs)| ratios(rows, ours, theirs))
        .collect();
    for post in [false, true] {
        for r in &all {
            let r: Vec<Ratio> = r.iter().filter(|x| x.post == post).cloned().collect();
            let Some((ours, theirs)) = r.first().map(|x| (&x.pair.0, &x.pair.1)) else {
                continue;
            };
            if let Some(line) = compare_line(&r, targets(theirs, post)) {
                let _ = writeln!(s, "{line}");
            }
            if !theirs.starts_with("haproxy") {
                continue;
            }
            let user = geomean(r.iter().map(|x| x.user));
            let machine = geomean(r.iter().map(|x| x.machine));
            let ceiling = geomean(r.iter().map(|x| x.ceiling));
            if ceiling.is_finite() {
                let _ = writeln!(
                    s,
                    "{ours}/{theirs} {}, where the CPU goes: user-space CPU per request {user:.2}x, \
                     the whole machine's CPU per request {machine:.2}x; req/s if floatlb's own code \
                     cost nothing on a saturated machine: at most {ceiling:.2}x",
                    class(post)
                );
            }
        }
    }
    s
}

/// The setup key a CPU-bound sweep writes; its value says the quota.
pub const BOUND_KEY: &str = "LB CPU bound";

/// Per load point, the runs of the faster (median req/s) of HAProxy and nginx with this
/// scheduler (`rr` or `lc`), renamed `best-<sched>`: the peer a bound sweep's targets are about.
pub fn best_peer_rows(rows: &[Row], sched: &str) -> Vec<Row> {
    let mut out = Vec::new();
    for (_, by) in group(rows) {
        let best = by
            .iter()
            .filter(|(s, _)| *s == format!("haproxy-{sched}") || *s == format!("nginx-{sched}"))
            .max_by(|a, b| median(&a.1, |r| r.rps).total_cmp(&median(&b.1, |r| r.rps)));
        if let Some((_, v)) = best {
            out.extend(v.iter().map(|r| Row {
                scenario: format!("best-{sched}"),
                ..(*r).clone()
            }));
        }
    }
    out
}

/// The lines of a sweep whose balancer hosts were CPU-capped alike, where req/s is the
/// balancer's own: floatlb against the better peer per point (req/s at least 1.2x on
/// keep-alive points and 1.15x on one-request connections, CPU per request at most 0.8x, p99
/// at most 1.0x), and keep-alive GET req/s against HAProxy in `mode tcp`, the L4 floor (at
/// least 0.95x).
pub fn bound_lines(rows: &[Row]) -> String {
    let mut s = String::new();
    // A run of a few 100 ms periods spends the cap's burst before the kernel throttles it:
    // only the points every scenario ran for long enough are the balancers' own figures.
    let short: Vec<&str> = labels(rows)
        .into_iter()
        .filter(|l| !held_by_cap(rows, l))
        .collect();
    let held = |load: &str| !short.contains(&load);
    for sched in ["rr", "lc"] {
        let ours = format!("floatlb-{sched}");
        let mut all: Vec<Row> = rows
            .iter()
            .filter(|r| r.scenario == ours)
            .cloned()
            .collect();
        all.extend(best_peer_rows(rows, sched));
        let r = ratios(&all, &ours, &format!("best-{sched}"));
        // (class, POST points, keep-alive points or either, req/s target)
        let classes = [
            ("keep-alive GET", false, Some(true), 1.2),
            ("one-request-per-connection GET", false, Some(false), 1.15),
            ("POST", true, None, 1.2),
        ];
        for (name, post, ka, rps) in classes {
            let part: Vec<Ratio> = r
                .iter()
                .filter(|x| x.post == post && ka.is_none_or(|k| keepalive(rows, &x.load) == k))
                .filter(|x| held(&x.load))
                .cloned()
                .collect();
            let t = Targets {
                cpu: Some(0.8),
                rps: Some(rps),
                p99: Some(1.0),
            };
            if let Some(line) = compare_line_as(&part, t, name) {
                let _ = writeln!(s, "{line}");
            }
        }
    }
    let floor: Vec<Ratio> = ratios(rows, "floatlb-rr", "haproxy-tcp")
        .into_iter()
        .filter(|x| !x.post && keepalive(rows, &x.load) && held(&x.load))
        .collect();
    let t = Targets {
        rps: Some(0.95),
        ..Default::default()
    };
    if let Some(line) = compare_line_as(&floor, t, "keep-alive GET (against the L4 floor)") {
        let _ = writeln!(s, "{line}");
    }
    if !short.is_empty() {
        let _ = writeln!(
            s,
            "left out of these lines, shorter than {HELD_SECONDS} s for some balancer (the cap \
             does not hold a run that short): {}",
            short.join(", ")
        );
    }
    s
}

/// How long every balancer's run at a point must last (median over rounds) for a bound
/// sweep to judge it: ten of the cap's 100 ms periods.
pub const HELD_SECONDS: f64 = 1.0;

/// Whether every balancer (not the bare web server) ran at `load` for at least
/// [`HELD_SECONDS`], so that its cap, not its burst, set its rate.
fn held_by_cap(rows: &[Row], load: &str) -> bool {
    let mut by: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
    for r in rows
        .iter()
        .filter(|r| r.label == load && r.scenario != "single")
    {
        by.entry(r.scenario.as_str()).or_default().push(r);
    }
    by.values()
        .all(|v| median(v, |r| r.seconds) >= HELD_SECONDS)
}

/// The load points' labels, in the order they first appear.
fn labels(rows: &[Row]) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for r in rows {
        if !out.contains(&r.label.as_str()) {
            out.push(&r.label);
        }
    }
    out
}

/// Whether the points labelled `load` reuse connections.
fn keepalive(rows: &[Row], load: &str) -> bool {
    rows.iter().any(|r| r.label == load && r.keepalive)
}

pub fn markdown(
    rows: &[Row],
    idle: &[IdleRow],
    setup: &[(String, String)],
    plots: &[String],
) -> String {
    let mut s = String::from("# floatlb load sweep\n\n");
    for (k, v) in setup {
        let _ = writeln!(s, "- {k}: {v}");
    }
    let rounds = rows.iter().map(|r| r.round).max().unwrap_or(0);
    let _ = writeln!(
        s,
        "- rounds: {rounds}; scenarios interleaved within each load point, order rotated every round\n\
         - figures are medians over rounds, (min–max) when there is more than one round; \
         \"LB\" is the balancer's host (for `single`, the web server itself), its CPU summed over \
         every process in its namespace from /proc (schedstat), 100% = one core; \
         \"LB user\" is the part of it in user space (the balancer's own code; the rest is the \
         kernel's TCP/IP work, including softirq time that ran on the balancer's time); \
         \"machine\" is the whole machine's busy CPU time per request, every host and the kernel \
         (/proc/stat). When the machine is saturated, req/s is its cores over that figure, so a \
         balancer's saving moves req/s only in proportion to its share of it.\n"
    );
    s += "## Ratios\n\n";
    if setup.iter().any(|(k, _)| k == BOUND_KEY) {
        let b = bound_lines(rows);
        if !b.is_empty() {
            s += "Against the better of HAProxy and nginx per load point, every balancer's host capped alike:\n\n";
            for l in b.lines() {
                let _ = writeln!(s, "- {l}");
            }
            s += "\nEach pair on its own:\n\n";
        }
    }
    let r = ratio_lines(rows);
    if r.is_empty() {
        s += "(no floatlb/HAProxy, floatlb/nginx or floatlb/baseline pair in this sweep)\n";
    }
    for l in r.lines() {
        let _ = writeln!(s, "- {l}");
    }
    s += "\n| load | pair | CPU/req | req/s | p99 |\n|---|---|---|---|---|\n";
    for (ours, theirs) in PAIRS {
        for x in ratios(rows, ours, theirs) {
            let _ = writeln!(
                s,
                "| {} | {}/{} | {:.2} | {:.2} | {:.2} |",
                x.load, x.pair.0, x.pair.1, x.cpu, x.rps, x.p99
            );
        }
    }
    s += &lost_section(rows);
    if !idle.is_empty() {
        s += "\n## Idle keep-alive connections\n\n\
              Each connection sent one request and then sat idle; the LB host's resident memory \
              (all its processes) is read before and while they are held. Kernel socket memory is \
              not included.\n\n";
        s += &idle_table(idle);
    }
    if !plots.is_empty() {
        s += "\n## Plots\n\n";
        for p in plots {
            let _ = writeln!(s, "![{p}]({p})\n");
        }
    }
    s += &every_point_section(rows);
    s
}

/// Every lost request, summed over rounds per scenario and load point.
pub fn lost_section(rows: &[Row]) -> String {
    let mut s = String::from("\n## Lost requests\n\n");
    let lost: BTreeMap<(String, String), u64> =
        rows.iter()
            .filter(|r| r.lost > 0)
            .fold(BTreeMap::new(), |mut m, r| {
                *m.entry((r.scenario.clone(), r.label.clone())).or_default() += r.lost;
                m
            });
    if lost.is_empty() {
        s += "None: every request of every run got a whole 2xx response.\n";
    } else {
        s += "| scenario | load | lost (all rounds) |\n|---|---|---|\n";
        for ((sc, l), n) in &lost {
            let _ = writeln!(s, "| {sc} | {l} | {n} |");
        }
    }
    s
}

/// The idle-connection memory table, one row per scenario.
pub fn idle_table(idle: &[IdleRow]) -> String {
    let mut s = String::from(
        "| scenario | connections held | RSS before (KiB) | RSS while held (KiB) | bytes per connection |\n|---|---|---|---|---|\n",
    );
    for r in idle {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.0} |",
            r.scenario,
            r.conns,
            r.rss_before_kib,
            r.rss_during_kib,
            r.bytes_per_conn()
        );
    }
    s
}

/// Every load point's medians (with their spread) per scenario.
pub fn every_point_section(rows: &[Row]) -> String {
    let mut s = String::from(
        "\n## Every load point\n\n\
          | load | scenario | req/s | MB/s | lost | p50 ms | p90 ms | p99 ms | LB CPU % | LB µs/req | LB user µs/req | machine µs/req | client CPU % | webs CPU % | LB peak RSS MiB | LB net MB/s |\n\
          |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for (load, by) in group(rows) {
        for (sc, v) in by {
            let _ = writeln!(
                s,
                "| {load} | {sc} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {:.0} | {:.0} | {:.0} | {:.1} | {:.1} |",
                spread(&v, |r| r.rps, 0),
                spread(&v, |r| r.mb_per_s, 1),
                v.iter().map(|r| r.lost).sum::<u64>(),
                spread(&v, |r| r.p50_ms, 2),
                spread(&v, |r| r.p90_ms, 2),
                spread(&v, |r| r.p99_ms, 2),
                spread(&v, |r| r.cpu_lb_pct, 0),
                spread(&v, |r| r.lb_cpu_us_per_req, 1),
                median(&v, |r| r.lb_user_us_per_req),
                median(&v, |r| r.machine_us_per_req),
                median(&v, |r| r.cpu_client_pct),
                median(&v, |r| r.cpu_webs_pct),
                v.iter().map(|r| r.lb_peak_rss_kib).max().unwrap_or(0) as f64 / 1024.0,
                median(&v, |r| r.lb_net_mb_per_s),
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(round: u32, sc: &str, label: &str, rps: f64, us: f64, p99: f64, lost: u64) -> Row {
        Row {
            round,
            scenario: sc.into(),
            label: label.into(),
            rps,
            lb_cpu_us_per_req: us,
            p99_ms: p99,
            lost,
            ..Default::default()
        }
    }

    /// A bound sweep compares floatlb with whichever peer was faster at each point (nginx on
    /// the keep-alive point here, HAProxy on the one-request point), keep-alive and
    /// one-request points apart, and keep-alive GETs with the L4 floor.
    #[test]
    fn a_bound_sweep_is_judged_against_the_better_peer_per_point() {
        let ka = |sc: &str, rps: f64, us: f64| Row {
            keepalive: true,
            seconds: 5.0,
            ..row(1, sc, "wrk -c 50", rps, us, 1.0, 0)
        };
        let one = |sc: &str, rps: f64, us: f64| Row {
            seconds: 1.5,
            ..row(1, sc, "ab -n 10000 -c 10", rps, us, 2.0, 0)
        };
        // A keep-alive point over in 0.2 s: the cap never held it, and nginx's burst
        // would make floatlb look 0.5x; it must not reach the lines.
        let short = |sc: &str, rps: f64, seconds: f64| Row {
            keepalive: true,
            seconds,
            ..row(1, sc, "ab -n 2000 -c 10 -k", rps, 30.0, 1.0, 0)
        };
        let rows = vec![
            ka("floatlb-rr", 12000.0, 20.0),
            ka("haproxy-rr", 8000.0, 30.0),
            ka("nginx-rr", 10000.0, 25.0),
            ka("haproxy-tcp", 15000.0, 16.0),
            one("floatlb-rr", 6000.0, 40.0),
            one("haproxy-rr", 5000.0, 50.0),
            one("nginx-rr", 4000.0, 60.0),
            short("floatlb-rr", 10000.0, 0.2),
            short("haproxy-rr", 8000.0, 0.25),
            short("nginx-rr", 20000.0, 0.1),
            short("haproxy-tcp", 20000.0, 0.1),
            // The bare web server is not capped: its short run does not matter.
            Row {
                seconds: 0.1,
                ..ka("single", 40000.0, 10.0)
            },
        ];
        let best = best_peer_rows(&rows, "rr");
        assert_eq!(best.len(), 3);
        assert_eq!(
            (best[0].rps, best[1].rps, best[2].rps),
            (10000.0, 5000.0, 20000.0)
        );
        let lines = bound_lines(&rows);
        assert!(
            lines.contains(
                "floatlb-rr/best-rr keep-alive GET over 1 load point (geometric mean of \
                 per-point medians): CPU per request 0.80x (target <= 0.80: met), req/s 1.20x \
                 (target >= 1.20: met)"
            ),
            "{lines}"
        );
        assert!(
            lines.contains(
                "floatlb-rr/best-rr one-request-per-connection GET over 1 load point \
                 (geometric mean of per-point medians): CPU per request 0.80x (target <= 0.80: \
                 met), req/s 1.20x (target >= 1.15: met)"
            ),
            "{lines}"
        );
        assert!(
            lines.contains("floatlb-rr/haproxy-tcp keep-alive GET (against the L4 floor) over 1 load point (geometric mean of per-point medians): CPU per request 1.25x, req/s 0.80x (target >= 0.95: NOT met)"),
            "{lines}"
        );
        assert!(
            lines.contains("left out of these lines, shorter than 1 s for some balancer (the cap does not hold a run that short): ab -n 2000 -c 10 -k"),
            "{lines}"
        );
        // No least-connection scenarios, no POST points: no lines for them.
        assert_eq!(lines.lines().count(), 4, "{lines}");
        let setup = [(BOUND_KEY.to_string(), "25%".to_string())];
        assert!(markdown(&rows, &[], &setup, &[]).contains("- floatlb-rr/best-rr keep-alive GET"));
        assert!(!markdown(&rows, &[], &[], &[]).contains("best-rr"));
    }

    /// A baseline build in the same sweep gets its own line, without targets.
    #[test]
    fn a_baseline_build_gets_its_ratio_line() {
        let rows = vec![
            row(1, "floatlb-rr", "wrk -c 50", 12000.0, 20.0, 1.0, 0),
            row(1, "baseline-rr", "wrk -c 50", 10000.0, 25.0, 2.0, 0),
        ];
        let lines = ratio_lines(&rows);
        assert!(
            lines.contains(
                "floatlb-rr/baseline-rr GET over 1 load point (this build against the baseline \
                 binary): CPU per request 0.80x, req/s 1.20x, p99 0.50x"
            ),
            "{lines}"
        );
        assert!(!lines.contains("target"), "{lines}");
    }

    /// The user/kernel split and the whole machine's CPU give the req/s a balancer could reach
    /// if its own code cost nothing; sweeps recorded without them print no such line.
    #[test]
    fn where_the_cpu_goes_bounds_the_req_s_ratio() {
        let with = |sc: &str, rps: f64, user: f64, machine: f64| Row {
            lb_user_us_per_req: user,
            machine_us_per_req: machine,
            ..row(1, sc, "ab -n 1000 -c 100", rps, 40.0, 1.0, 0)
        };
        let rows = vec![
            with("floatlb-rr", 11000.0, 10.0, 100.0),
            with("haproxy-rr", 10000.0, 20.0, 110.0),
        ];
        let r = ratios(&rows, "floatlb-rr", "haproxy-rr");
        assert_eq!((r[0].user, r[0].machine), (0.5, 100.0 / 110.0));
        // 1.1 x 100 / (100 - 10)
        assert!((r[0].ceiling - 1.1 * 100.0 / 90.0).abs() < 1e-9);
        let lines = ratio_lines(&rows);
        assert!(
            lines.contains(
                "floatlb-rr/haproxy-rr GET, where the CPU goes: user-space CPU per request 0.50x, \
                 the whole machine's CPU per request 0.91x; req/s if floatlb's own code cost \
                 nothing on a saturated machine: at most 1.22x"
            ),
            "{lines}"
        );
        let md = markdown(&rows, &[], &[], &[]);
        assert!(
            md.contains("| ab -n 1000 -c 100 | floatlb-rr | 11000 | 0.0 | 0 | 0.00 | 0.00 | 1.00 | 0 | 40.0 | 10.0 | 100 |"),
            "{md}"
        );
    }

    #[test]
    fn ratios_use_medians_per_load_point() {
        let rows = vec![
            row(1, "haproxy-rr", "wrk -c 50", 10000.0, 25.0, 2.0, 0),
            row(1, "floatlb-rr", "wrk -c 50", 12000.0, 20.0, 1.0, 0),
            row(2, "floatlb-rr", "wrk -c 50", 11000.0, 22.0, 1.0, 0),
            row(2, "haproxy-rr", "wrk -c 50", 10000.0, 25.0, 2.0, 0),
            row(3, "floatlb-rr", "wrk -c 50", 999999.0, 1.0, 1.0, 0),
            row(3, "haproxy-rr", "wrk -c 50", 10000.0, 25.0, 2.0, 0),
            row(1, "haproxy-rr", "ab -n 1000 -c 10", 5000.0, 30.0, 4.0, 0),
            row(1, "floatlb-rr", "ab -n 1000 -c 10", 4000.0, 33.0, 5.0, 7),
        ];
        let r = ratios(&rows, "floatlb-rr", "haproxy-rr");
        assert_eq!(r.len(), 2);
        // Medians: floatlb 12000 req/s, 20 us; HAProxy 10000, 25.
        assert_eq!(
            (r[0].load.as_str(), r[0].rps, r[0].cpu, r[0].p99),
            ("wrk -c 50", 1.2, 0.8, 0.5)
        );
        assert!((r[1].cpu - 1.1).abs() < 1e-9);
        let lines = ratio_lines(&rows);
        assert!(
            lines.contains("floatlb-rr/haproxy-rr GET over 2 load points"),
            "{lines}"
        );
        // geomean(0.8, 1.1) = 0.938: over 0.85.
        assert!(
            lines.contains("CPU per request 0.94x (target <= 0.85: NOT met)"),
            "{lines}"
        );
        assert!(!lines.contains("where the CPU goes"), "{lines}");
        let md = markdown(&rows, &[], &[], &[]);
        assert!(md.contains("| floatlb-rr | ab -n 1000 -c 10 | 7 |"), "{md}");
        assert!(
            md.contains("| wrk -c 50 | floatlb-rr | 12000 (11000–999999) |"),
            "{md}"
        );
    }

    fn post(round: u32, sc: &str, body: u64, rps: f64, us: f64) -> Row {
        Row {
            method: "POST".into(),
            body_bytes: body,
            ..row(
                round,
                sc,
                &format!("wrk -c 50 -d 5s POST {}", crate::sweep::size_label(body)),
                rps,
                us,
                1.0,
                0,
            )
        }
    }

    /// GET and POST points get a line each per pair, GET first; a POST point never moves the
    /// GET mean. POST lines hold CPU per request to 0.85x HAProxy's and to nginx's, and list
    /// every point's ratio; nginx's GET line has no target.
    #[test]
    fn get_and_post_points_are_compared_apart() {
        let rows = vec![
            row(1, "floatlb-rr", "wrk -c 50 -d 5s", 12000.0, 20.0, 1.0, 0),
            row(1, "haproxy-rr", "wrk -c 50 -d 5s", 10000.0, 25.0, 2.0, 0),
            row(1, "nginx-rr", "wrk -c 50 -d 5s", 11000.0, 19.0, 1.0, 0),
            post(1, "floatlb-rr", 1024, 9000.0, 32.4),
            post(1, "haproxy-rr", 1024, 8000.0, 40.0),
            post(1, "nginx-rr", 1024, 8000.0, 36.0),
            post(1, "floatlb-rr", 65536, 3000.0, 100.0),
            post(1, "haproxy-rr", 65536, 3000.0, 100.0),
            post(1, "nginx-rr", 65536, 3000.0, 125.0),
        ];
        let r = ratios(&rows, "floatlb-rr", "haproxy-rr");
        assert_eq!(
            r.iter().map(|x| x.post).collect::<Vec<_>>(),
            [false, true, true]
        );
        let lines = ratio_lines(&rows);
        let want = [
            "floatlb-rr/haproxy-rr GET over 1 load point (geometric mean of per-point medians): \
             CPU per request 0.80x (target <= 0.85: met), req/s 1.20x (target >= 1.15: met), \
             p99 0.50x (target <= 1.00: met)",
            "floatlb-rr/nginx-rr GET over 1 load point (geometric mean of per-point medians): \
             CPU per request 1.05x, req/s 1.09x, p99 1.00x",
            // geomean(0.81, 1.00) = 0.90
            "floatlb-rr/haproxy-rr POST over 2 load points (geometric mean of per-point \
             medians): CPU per request 0.90x (target <= 0.85: NOT met; per point: \
             wrk -c 50 -d 5s POST 1k 0.81x, wrk -c 50 -d 5s POST 64k 1.00x), req/s 1.06x, p99 1.00x",
            // geomean(0.90, 0.80) = 0.85
            "floatlb-rr/nginx-rr POST over 2 load points (geometric mean of per-point \
             medians): CPU per request 0.85x (target <= 1.00: met; per point: \
             wrk -c 50 -d 5s POST 1k 0.90x, wrk -c 50 -d 5s POST 64k 0.80x), req/s 1.06x, p99 1.00x",
        ];
        assert_eq!(lines.lines().collect::<Vec<_>>(), want, "{lines}");
        let md = markdown(&rows, &[], &[], &[]);
        assert!(
            md.contains("| wrk -c 50 -d 5s POST 64k | floatlb-rr/nginx-rr | 0.80 | 1.00 | 1.00 |"),
            "{md}"
        );
    }

    #[test]
    fn targets_per_peer_and_method() {
        let t = targets("haproxy-lc", true);
        assert_eq!((t.cpu, t.rps, t.p99), (Some(0.85), None, None));
        let t = targets("haproxy-rr", false);
        assert_eq!((t.cpu, t.rps, t.p99), (Some(0.85), Some(1.15), Some(1.0)));
        assert_eq!(targets("nginx-lc", true).cpu, Some(1.0));
        assert_eq!(targets("nginx-rr", false), Targets::default());
        assert_eq!(targets("baseline-rr", true), Targets::default());
        assert_eq!(
            judged(0.86, Some(0.85), true, ""),
            " (target <= 0.85: NOT met)"
        );
        assert_eq!(
            judged(1.15, Some(1.15), false, ""),
            " (target >= 1.15: met)"
        );
        assert_eq!(judged(1.0, None, true, "a 1.00x"), " (per point: a 1.00x)");
        assert_eq!(judged(1.0, None, true, ""), "");
        assert_eq!(compare_line(&[], Targets::default()), None);
    }

    #[test]
    fn no_losses_and_no_pair_are_said_plainly() {
        let rows = vec![row(1, "nginx-rr", "wrk -c 50", 1.0, 1.0, 1.0, 0)];
        let md = markdown(&rows, &[], &[], &[]);
        assert!(md.contains("None: every request"));
        assert!(md.contains("(no floatlb/HAProxy, floatlb/nginx or floatlb/baseline pair"));
        assert!(geomean([f64::NAN, 0.0].into_iter()).is_nan());
    }
}
