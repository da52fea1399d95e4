//! `bench anycast`: the figures of one `vm-lab/anycast drill` run that are not the load's or the
//! probes' own (`bench analyze` gives those): each node's share of the run's requests and the
//! largest deviation from an even share, which node the busy flows (`bench flows`) were on
//! before the event and which of them broke, and how long the failed probes lasted. Not here:
//! reading the nodes' counters or the sockets (the lab script does, with curl and ss).

use std::collections::HashMap;

use crate::parse::Probe;

/// The requests each node served during the run, from its `floatlb_requests_total` before and
/// after. A counter that could not be read after counts as nothing served; one that could not
/// be read before, as 0 then.
pub fn served(before: &[Option<u64>], after: &[Option<u64>]) -> Vec<u64> {
    (0..before.len().max(after.len()))
        .map(|i| {
            let b = before.get(i).copied().flatten().unwrap_or(0);
            after
                .get(i)
                .copied()
                .flatten()
                .map_or(0, |a| a.saturating_sub(b))
        })
        .collect()
}

/// Each node's share of the requests; empty when no node served any.
pub fn shares(served: &[u64]) -> Vec<f64> {
    let total: u64 = served.iter().sum();
    if total == 0 {
        return Vec::new();
    }
    served.iter().map(|&n| n as f64 / total as f64).collect()
}

/// The largest distance of a node's share from an even one (1/k), in percent of the even
/// share: 0 when the spread is perfect, 100 when a node of two served everything.
pub fn max_share_dev_pct(shares: &[f64]) -> f64 {
    let k = shares.len() as f64;
    shares
        .iter()
        .map(|s| ((s - 1.0 / k) * k * 100.0).abs())
        .fold(0.0, f64::max)
}

/// What happened to the busy flows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Flows {
    pub flows: u64,
    /// Flows that were on the node that left (crash, scale-in) before the event.
    pub on_gone: u64,
    pub on_gone_failed: u64,
    /// Flows on any other node (or on none seen) that failed: the ones an event elsewhere
    /// should not touch.
    pub on_stayed_failed: u64,
}

/// `owners`: "port lbN" lines (the node holding each client port before the event);
/// `flows_csv`: `bench flows`' output (`port,requests,failed_ms,...`, failed_ms empty for a
/// flow that never failed); `gone`: the node that left.
pub fn flows(owners: &str, flows_csv: &str, gone: &str) -> Flows {
    let owner: HashMap<&str, &str> = owners
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?, it.next()?))
        })
        .collect();
    let mut f = Flows::default();
    for l in flows_csv.lines().skip(1) {
        let cells: Vec<&str> = l.split(',').collect();
        let Some(port) = cells.first().filter(|p| !p.is_empty()) else {
            continue;
        };
        let failed = cells.get(2).is_some_and(|c| !c.is_empty());
        f.flows += 1;
        if owner.get(port) == Some(&gone) {
            f.on_gone += 1;
            f.on_gone_failed += u64::from(failed);
        } else {
            f.on_stayed_failed += u64::from(failed);
        }
    }
    f
}

/// From the first failed probe's start to the last one's, in ms: how long the clients of the
/// node that left saw failures. 0 when none failed.
pub fn failed_probe_span_ms(probes: &[Probe]) -> f64 {
    let mut failed = probes.iter().filter(|p| !p.ok()).map(|p| p.start);
    match (failed.next(), failed.next_back()) {
        (Some(first), Some(last)) => (last - first) * 1000.0,
        _ => 0.0,
    }
}

/// A comma-separated list of counters, where an empty cell is one that could not be read.
pub fn counters(list: &str) -> Vec<Option<u64>> {
    list.split(',').map(|c| c.trim().parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    #[test]
    fn shares_of_what_each_node_served_in_the_run() {
        let before = counters("1000,2000,,500");
        let after = counters("1300,2300,300,");
        // The third node's counter was unreadable before (0), the fourth's after (nothing).
        let n = served(&before, &after);
        assert_eq!(n, [300, 300, 300, 0]);
        let s = shares(&n[..3]);
        assert_eq!(s, [1.0 / 3.0; 3]);
        assert_eq!(max_share_dev_pct(&s), 0.0);
        // 0.4 of the requests where a third was due: 20% over.
        let s = shares(&[400, 300, 300]);
        assert!((max_share_dev_pct(&s) - 20.0).abs() < 1e-9);
        // One node of two served all: 100% off.
        assert!((max_share_dev_pct(&shares(&[0, 10])) - 100.0).abs() < 1e-9);
        // Nothing served: no shares, no deviation.
        assert!(shares(&[0, 0, 0]).is_empty());
        assert_eq!(max_share_dev_pct(&[]), 0.0);
        // A counter that went backwards (the node restarted) served nothing counted.
        assert_eq!(served(&counters("50"), &counters("10")), [0]);
    }

    #[test]
    fn flows_by_the_node_they_were_on() {
        let owners = "40001 lb1\n40002 lb3\n40003 lb3\n40004 lb2\n";
        let csv = "port,requests,failed_ms,error,closed_by_server\n\
                   40001,120,,,0\n\
                   40002,30,1503.2,read: connection reset by peer,1\n\
                   40003,31,,,0\n\
                   40004,50,2001.0,timed out after 1 s,0\n\
                   40005,10,1600.0,connect: refused,0\n";
        let f = flows(owners, csv, "lb3");
        assert_eq!(
            f,
            Flows {
                flows: 5,
                on_gone: 2,
                on_gone_failed: 1,
                // 40004 on lb2, and 40005 that no node held when the owners were read.
                on_stayed_failed: 2,
            }
        );
        // No owners seen at all: every flow counts as elsewhere.
        assert_eq!(flows("", csv, "lb3").on_gone, 0);
        assert_eq!(flows(owners, "port,requests\n", "lb3"), Flows::default());
    }

    #[test]
    fn failed_probes_span_from_first_to_last() {
        let csv = "start,end,status,error\n\
                   100.000,100.001,200,\n\
                   100.005,101.005,0,timeout\n\
                   100.010,100.011,200,\n\
                   100.250,100.260,503,\n\
                   100.300,100.301,200,\n";
        let p = parse::probes(csv);
        assert!((failed_probe_span_ms(&p) - 245.0).abs() < 1e-6);
        assert_eq!(failed_probe_span_ms(&p[..1]), 0.0);
        assert_eq!(failed_probe_span_ms(&p[..2]), 0.0);
    }
}
