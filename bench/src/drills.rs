//! The drills CSV as a markdown table: one line per stack, drill and load, with the median and
//! the worst run of each figure (the worst is what a drill's target is about). The slowest
//! connection attempt and the attempts over 200 ms stand beside the failed requests: a SYN
//! lost during a failover fails nothing but stalls a client for its initial RTO (1 s).
//!
//! Files with the `tcp_stream` and `grpc_stream` columns get two more: how each run's
//! long-lived TCP connection and gRPC stream ended (survived, FIN, reset, a hang; the gRPC
//! status), counted over the runs.
//!
//! Not for a single session's figures: `bench summarize` prints those.

use crate::stats;

/// Rows of a drills CSV (header first) grouped by (stack, kind, load) in first-seen order, as a
/// markdown table. A load tool that printed no summary (ab gives up when connections are
/// refused) has `failed_requests` -1: such runs are counted apart, not in the median.
pub fn table(csv: &str) -> String {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    let (Some(stack), Some(kind), Some(load)) = (col("stack"), col("kind"), col("load")) else {
        return String::from("(no stack, kind and load columns)\n");
    };
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let mut groups: Vec<(String, String, String)> = Vec::new();
    for r in &rows {
        let key = (
            r.get(stack).unwrap_or(&"").to_string(),
            r.get(kind).unwrap_or(&"").to_string(),
            r.get(load).unwrap_or(&"").to_string(),
        );
        if !groups.contains(&key) {
            groups.push(key);
        }
    }
    let streams = col("tcp_stream").zip(col("grpc_stream"));
    let mut out = String::from(
        "| stack | drill | load | runs | HTTP downtime ms, median / worst | failed requests, median / worst | slowest probe ms, median / worst | slowest connect ms, median / worst | connects > 200 ms, median / worst | VIP moved (runs) | ICMP downtime ms, median |",
    );
    if streams.is_some() {
        out += " TCP connection held open (runs) | gRPC stream held open (runs) |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
    } else {
        out += "\n|---|---|---|---|---|---|---|---|---|---|---|\n";
    }
    for (s, k, l) in &groups {
        let mine: Vec<&Vec<&str>> = rows
            .iter()
            .filter(|r| {
                r.get(stack) == Some(&s.as_str())
                    && r.get(kind) == Some(&k.as_str())
                    && r.get(load) == Some(&l.as_str())
            })
            .collect();
        let values = |name: &str| -> Vec<f64> {
            col(name).map_or(Vec::new(), |i| {
                mine.iter()
                    .filter_map(|r| r.get(i)?.parse::<f64>().ok())
                    .filter(|v| *v >= 0.0)
                    .collect()
            })
        };
        let cell = |name: &str, digits: usize| match stats::summarize(&values(name)) {
            Some(x) => format!("{:.*} / {:.*}", digits, x.median, digits, x.max),
            None => "—".to_string(),
        };
        let gave_up = col("failed_requests").map_or(0, |i| {
            mine.iter()
                .filter(|r| r.get(i).and_then(|v| v.parse::<f64>().ok()) == Some(-1.0))
                .count()
        });
        let mut failed = cell("failed_requests", 0);
        if gave_up > 0 {
            failed += &format!(" ({gave_up} runs: {l} gave up)");
        }
        let moved = values("vip_moved").iter().filter(|v| **v > 0.0).count();
        let moved = if col("vip_moved").is_some() {
            format!("{moved} of {}", values("vip_moved").len())
        } else {
            "—".to_string()
        };
        let icmp = stats::summarize(&values("icmp_downtime_ms"))
            .map_or("—".to_string(), |x| format!("{:.1}", x.median));
        out += &format!(
            "| {s} | {k} | {l} | {} | {} | {failed} | {} | {} | {} | {moved} | {icmp} |",
            mine.len(),
            cell("http_downtime_ms", 1),
            cell("slowest_probe_ms", 1),
            cell("slowest_connect_ms", 1),
            cell("slow_connects", 0),
        );
        if let Some((tcp, grpc)) = streams {
            out += &format!(" {} | {} |", outcomes(&mine, tcp), outcomes(&mine, grpc));
        }
        out += "\n";
    }
    out
}

/// The values of column `i` over `rows`, each with its count, in first-seen order
/// (`fin 2, rst 1`); empty values (a stack that held no stream) are left out, "—" if all are.
fn outcomes(rows: &[&Vec<&str>], i: usize) -> String {
    let mut seen: Vec<(&str, usize)> = Vec::new();
    for v in rows
        .iter()
        .filter_map(|r| r.get(i))
        .filter(|v| !v.is_empty())
    {
        match seen.iter_mut().find(|(s, _)| s == v) {
            Some((_, n)) => *n += 1,
            None => seen.push((v, 1)),
        }
    }
    if seen.is_empty() {
        return "—".to_string();
    }
    seen.iter()
        .map(|(v, n)| format!("{v} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_medians_worst_and_runs_that_gave_up() {
        let csv = "session,stack,kind,advert,load,run,icmp_downtime_ms,http_downtime_ms,failed_probes,probes,requests,failed_requests,vip_holder,slowest_probe_ms,vip_moved,slowest_connect_ms,slow_connects
s1,floatlb,upgrade,10ms,wrk,1,10.0,12.0,0,800,100,0,lb1,30.0,0,1.0,0
s2,floatlb,upgrade,10ms,wrk,1,20.0,14.0,0,800,100,0,lb1,50.0,0,2.0,0
s3,floatlb,upgrade,10ms,wrk,1,30.0,40.0,0,800,100,2,lb1,90.0,1,1003.0,4
s1,haproxy-keepalived,crash-worker,10ms,ab,1,10.0,2950.0,590,800,0,-1,lb1,50.0,0,1001.0,7
s2,haproxy-keepalived,crash-worker,10ms,ab,1,10.0,2900.0,590,800,700,900,lb1,60.0,0,,
";
        let t = table(csv);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert_eq!(
            lines[2],
            "| floatlb | upgrade | wrk | 3 | 14.0 / 40.0 | 0 / 2 | 50.0 / 90.0 | 2.0 / 1003.0 | 0 / 4 | 1 of 3 | 20.0 |"
        );
        assert_eq!(
            lines[3],
            "| haproxy-keepalived | crash-worker | ab | 2 | 2925.0 / 2950.0 | 900 / 900 (1 runs: ab gave up) | 55.0 / 60.0 | 1001.0 / 1001.0 | 7 / 7 | 0 of 2 | 10.0 |"
        );
        // An older CSV without the columns still gives a table.
        let old = "session,stack,kind,advert,load,run,icmp_downtime_ms,http_downtime_ms,failed_probes,probes,requests,failed_requests,vip_holder\ns,floatlb,crash,10ms,wrk,1,1.0,2.0,0,1,1,3,lb2\n";
        assert!(
            table(old).contains(
                "| floatlb | crash | wrk | 1 | 2.0 / 2.0 | 3 / 3 | — | — | — | — | 1.0 |"
            ),
            "{}",
            table(old)
        );
    }

    /// The stream columns: each run's outcome counted; a stack without them shows "—"; an
    /// older file (no such columns) keeps the table as it was.
    #[test]
    fn stream_outcomes_counted_per_group() {
        let csv = "session,stack,kind,advert,load,run,icmp_downtime_ms,http_downtime_ms,failed_probes,probes,requests,failed_requests,vip_holder,slowest_probe_ms,vip_moved,slowest_connect_ms,slow_connects,tcp_stream,grpc_stream
s1,floatlb,graceful,10ms,none,1,10.0,12.0,0,800,,,lb2,30.0,1,1.0,0,fin,OK
s1,floatlb,graceful,10ms,none,2,10.0,12.0,0,800,,,lb2,30.0,1,1.0,0,fin,UNAVAILABLE
s1,floatlb,graceful,10ms,none,3,10.0,12.0,0,800,,,lb2,30.0,1,1.0,0,survived,OK
s2,haproxy-keepalived,graceful,10ms,none,1,10.0,12.0,0,800,,,lb2,30.0,1,1.0,0,,
";
        let t = table(csv);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert!(
            lines[0]
                .ends_with("| TCP connection held open (runs) | gRPC stream held open (runs) |"),
            "{t}"
        );
        assert_eq!(lines[1].matches("---").count(), 13, "{t}");
        assert!(
            lines[2].ends_with("| fin 2, survived 1 | OK 2, UNAVAILABLE 1 |"),
            "{t}"
        );
        assert!(lines[3].ends_with("| 10.0 | — | — |"), "{t}");
        let old = "session,stack,kind,advert,load,run,icmp_downtime_ms,http_downtime_ms,failed_probes,probes,requests,failed_requests,vip_holder\ns,floatlb,crash,10ms,wrk,1,1.0,2.0,0,1,1,3,lb2\n";
        assert!(!table(old).contains("TCP connection"));
    }
}
