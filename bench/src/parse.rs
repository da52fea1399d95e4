//! Parsers for what the load and probe tools print: wrk, ab, h2load, `openssl s_time`,
//! `ping -D`, and our own probe CSV. Each is tested on output recorded from the real tool.

/// The figures of one wrk run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Wrk {
    pub requests: u64,
    pub seconds: f64,
    pub requests_per_sec: f64,
    pub connect_errors: u64,
    pub read_errors: u64,
    pub write_errors: u64,
    pub timeouts: u64,
    pub non_2xx_3xx: u64,
    /// Bytes read per second ("Transfer/sec").
    pub bytes_per_sec: f64,
    /// Latency percentiles in ms from `--latency`: (percent, ms), e.g. (99.0, 2.1).
    pub latency_ms: Vec<(f64, f64)>,
}

impl Wrk {
    /// The latency at `pct` percent, if wrk printed it (run with `--latency`).
    pub fn percentile_ms(&self, pct: f64) -> Option<f64> {
        self.latency_ms
            .iter()
            .find(|(p, _)| (p - pct).abs() < 1e-9)
            .map(|x| x.1)
    }
}

impl Wrk {
    /// Requests that did not end in a 2xx/3xx response.
    pub fn failed(&self) -> u64 {
        self.connect_errors
            + self.read_errors
            + self.write_errors
            + self.timeouts
            + self.non_2xx_3xx
    }
}

fn num(s: &str) -> Option<f64> {
    s.trim().trim_end_matches(',').parse().ok()
}

/// Parses wrk's summary.
pub fn wrk(text: &str) -> Option<Wrk> {
    let mut w = Wrk::default();
    let mut seen = false;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line
            .strip_suffix("read")
            .and_then(|l| l.split_once(" requests in "))
        {
            // "42586 requests in 1.00s, 12.51MB "
            w.requests = num(rest.0)? as u64;
            w.seconds = wrk_duration(rest.1.split(',').next()?.trim())?;
            seen = true;
        } else if let Some(rest) = line.strip_prefix("Socket errors:") {
            for part in rest.split(',') {
                let mut it = part.split_whitespace();
                let (k, v) = (it.next()?, num(it.next()?)? as u64);
                match k {
                    "connect" => w.connect_errors = v,
                    "read" => w.read_errors = v,
                    "write" => w.write_errors = v,
                    "timeout" => w.timeouts = v,
                    _ => {}
                }
            }
        } else if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
            w.non_2xx_3xx = num(rest)? as u64;
        } else if let Some(rest) = line.strip_prefix("Requests/sec:") {
            w.requests_per_sec = num(rest)?;
        } else if let Some(rest) = line.strip_prefix("Transfer/sec:") {
            w.bytes_per_sec = wrk_bytes(rest.trim())?;
        } else if let Some((pct, t)) = line.split_once("% ").filter(|_| !seen) {
            // The "Latency Distribution" block: "99%    2.10ms".
            if let (Ok(p), Some(ms)) = (pct.parse::<f64>(), wrk_latency_ms(t.trim())) {
                w.latency_ms.push((p, ms));
            }
        }
    }
    seen.then_some(w)
}

/// wrk's byte counts: "25.55MB", "512.00KB", "1.20GB", "830.00B".
fn wrk_bytes(t: &str) -> Option<f64> {
    for (unit, scale) in [
        ("KB", 1024.0),
        ("MB", 1048576.0),
        ("GB", 1073741824.0),
        ("TB", 1099511627776.0),
    ] {
        if let Some(v) = t.strip_suffix(unit) {
            return Some(num(v)? * scale);
        }
    }
    num(t.strip_suffix('B')?)
}

/// wrk's latencies: "635.91us", "1.47ms", "2.00s", "1.00m" -> ms.
fn wrk_latency_ms(t: &str) -> Option<f64> {
    if let Some(v) = t.strip_suffix("us") {
        return Some(num(v)? / 1000.0);
    }
    if let Some(v) = t.strip_suffix("ms") {
        return num(v);
    }
    Some(wrk_duration(t)? * 1000.0)
}

/// wrk's run time: "1.00s", "1.00m", "1.00h" (its own units).
fn wrk_duration(t: &str) -> Option<f64> {
    if let Some(v) = t.strip_suffix("ms") {
        return Some(num(v)? / 1000.0);
    }
    let (v, unit) = t.split_at(t.len().checked_sub(1)?);
    let scale = match unit {
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return None,
    };
    Some(num(v)? * scale)
}

/// The figures of one ab run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ab {
    pub complete: u64,
    pub failed: u64,
    pub non_2xx: u64,
    pub requests_per_sec: f64,
    /// "Time taken for tests", seconds.
    pub seconds: f64,
    /// "Transfer rate", KiB/s received.
    pub kib_per_sec: f64,
}

pub fn ab(text: &str) -> Option<Ab> {
    let mut a = Ab::default();
    let mut seen = false;
    for line in text.lines() {
        let field = |prefix: &str| {
            line.strip_prefix(prefix)
                .and_then(|r| r.split_whitespace().next())
                .and_then(num)
        };
        if let Some(v) = field("Complete requests:") {
            a.complete = v as u64;
            seen = true;
        } else if let Some(v) = field("Failed requests:") {
            a.failed = v as u64;
        } else if let Some(v) = field("Non-2xx responses:") {
            a.non_2xx = v as u64;
        } else if let Some(v) = field("Requests per second:") {
            a.requests_per_sec = v;
        } else if let Some(v) = field("Time taken for tests:") {
            a.seconds = v;
        } else if let Some(v) = field("Transfer rate:") {
            a.kib_per_sec = v;
        }
    }
    seen.then_some(a)
}

/// The percentile table ab writes with `-e file`: "Percentage served,Time in ms" then
/// "0,0.075" ... "100,0.936". Returns ms by percent, index 0..=100.
pub fn ab_percentiles(csv: &str) -> Option<Vec<f64>> {
    let mut out = Vec::with_capacity(101);
    for (i, line) in csv.lines().skip(1).enumerate() {
        let (p, ms) = line.split_once(',')?;
        if p.trim().parse::<usize>().ok()? != i {
            return None;
        }
        out.push(num(ms)?);
    }
    (out.len() == 101).then_some(out)
}

/// Reply times (unix seconds) from `ping -D` output.
pub fn ping_replies(text: &str) -> Vec<f64> {
    text.lines()
        .filter(|l| l.contains(" bytes from "))
        .filter_map(|l| {
            l.strip_prefix('[')?
                .split_once(']')
                .and_then(|(t, _)| t.parse().ok())
        })
        .collect()
}

/// One HTTP probe as written by `bench probe`.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// Unix seconds when the probe started.
    pub start: f64,
    pub end: f64,
    /// HTTP status, 0 if no response.
    pub status: u16,
    pub error: String,
    /// How long its connection attempt took, in ms (`None` in files from before the column).
    pub connect_ms: Option<f64>,
}

impl Probe {
    pub fn ok(&self) -> bool {
        (200..400).contains(&self.status)
    }
    pub fn to_csv(&self) -> String {
        let connect = self.connect_ms.map_or(String::new(), |c| format!("{c:.3}"));
        format!(
            "{:.6},{:.6},{},{},{connect}",
            self.start,
            self.end,
            self.status,
            self.error.replace(',', ";")
        )
    }
}

pub fn probes(csv: &str) -> Vec<Probe> {
    csv.lines()
        .filter(|l| !l.starts_with("start"))
        .filter_map(|l| {
            // The error has its commas replaced, so the connect time can follow it.
            let mut f = l.splitn(5, ',');
            Some(Probe {
                start: f.next()?.parse().ok()?,
                end: f.next()?.parse().ok()?,
                status: f.next()?.parse().ok()?,
                error: f.next().unwrap_or("").to_string(),
                connect_ms: f.next().and_then(|c| c.parse().ok()),
            })
        })
        .collect()
}

/// The slowest probe, start to end (failed ones too: a probe that timed out took its
/// timeout), in ms; 0 without probes.
pub fn slowest_probe_ms(probes: &[Probe]) -> f64 {
    probes
        .iter()
        .map(|p| (p.end - p.start) * 1000.0)
        .fold(0.0, f64::max)
}

/// The slowest probe that started at or after `since` (Unix seconds), in ms; 0 without one.
/// With `since` the moment a new master announced itself, what is left is what a client that
/// came after the takeover waited: a SYN lost to a dead node before it is not counted.
pub fn slowest_probe_since_ms(probes: &[Probe], since: f64) -> f64 {
    let after: Vec<Probe> = probes
        .iter()
        .filter(|p| p.start >= since)
        .cloned()
        .collect();
    slowest_probe_ms(&after)
}

/// The slowest connection attempt in ms (a probe without its own connect time counts its whole
/// time), and how many attempts took longer than `over_ms`: a SYN lost on the way costs the
/// client its initial RTO (1 s).
pub fn slow_connects(probes: &[Probe], over_ms: f64) -> (f64, usize) {
    let times = probes
        .iter()
        .map(|p| p.connect_ms.unwrap_or((p.end - p.start) * 1000.0));
    times.fold((0.0, 0), |(worst, n), t| {
        (f64::max(worst, t), n + usize::from(t > over_ms))
    })
}

/// Longest gap between consecutive times, in ms; also counting the edges of
/// the window [from, to] so an outage that never ends is not hidden.
pub fn longest_gap_ms(times: &[f64], from: f64, to: f64) -> f64 {
    let mut prev = from;
    let mut worst: f64 = 0.0;
    for &t in times {
        worst = worst.max(t - prev);
        prev = t;
    }
    worst = worst.max(to - prev);
    worst * 1000.0
}

/// Times (unix seconds) and priorities of VRRP adverts sent by `src`, from
/// `tcpdump -tt -n` output.
pub fn vrrp_adverts(text: &str, src: &str) -> Vec<(f64, u8)> {
    let from = format!(" IP {src} > ");
    text.lines()
        .filter(|l| l.contains(&from) && l.contains("VRRP"))
        .filter_map(|l| {
            let t = l.split_whitespace().next()?.parse().ok()?;
            let prio = l
                .split(", ")
                .find_map(|f| f.strip_prefix("prio "))?
                .parse()
                .ok()?;
            Some((t, prio))
        })
        .collect()
}

/// Largest interval between consecutive adverts, in ms (0 with fewer than two).
pub fn max_interval_ms(times: &[f64]) -> f64 {
    times
        .windows(2)
        .map(|w| (w[1] - w[0]) * 1000.0)
        .fold(0.0, f64::max)
}

/// The figures of one h2load run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct H2load {
    /// "requests: N total, N started, N done, N succeeded, N failed, N errored, N timeout".
    pub total: u64,
    pub succeeded: u64,
    /// Every request that did not succeed, errored and timed-out ones included.
    pub failed: u64,
    /// Streams reset or cut with their connection, among them those still open when a timed
    /// run (`-D`) stops ("Process Request Failure").
    pub errored: u64,
    pub timeout: u64,
    /// "finished in 5.00s, 9834.60 req/s, 1.20MB/s".
    pub seconds: f64,
    pub requests_per_sec: f64,
    pub bytes_per_sec: f64,
}

/// Parses h2load's summary.
pub fn h2load(text: &str) -> Option<H2load> {
    let mut h = H2load::default();
    let (mut finished, mut counted) = (false, false);
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("finished in ") {
            let mut it = rest.split(", ");
            h.seconds = wrk_duration(it.next()?)?;
            h.requests_per_sec = num(it.next()?.strip_suffix(" req/s")?)?;
            // h2load's units are wrk's: "6.20MB/s".
            h.bytes_per_sec = it
                .next()
                .and_then(|b| wrk_bytes(b.strip_suffix("/s")?))
                .unwrap_or(0.0);
            finished = true;
        } else if let Some(rest) = line.strip_prefix("requests:") {
            for part in rest.split(',') {
                let mut it = part.split_whitespace();
                let (v, k) = (num(it.next()?)? as u64, it.next()?);
                match k {
                    "total" => h.total = v,
                    "succeeded" => h.succeeded = v,
                    "failed" => h.failed = v,
                    "errored" => h.errored = v,
                    "timeout" => h.timeout = v,
                    _ => {}
                }
            }
            counted = true;
        }
    }
    (finished && counted).then_some(h)
}

/// Connections made by `openssl s_time` clients, summed over every client whose output is in
/// `text`: each prints "N connections in T real seconds, B bytes read per connection" (and a
/// line of user-time figures, not counted). None when no client printed its count.
pub fn s_time_connections(text: &str) -> Option<u64> {
    let counts: Vec<u64> = text
        .lines()
        .filter(|l| l.contains(" real seconds"))
        .filter_map(|l| l.split_once(" connections in ")?.0.trim().parse().ok())
        .collect();
    (!counts.is_empty()).then(|| counts.iter().sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRK_OK: &str = include_str!("../tests/data/wrk_ok.txt");
    const WRK_NON2XX: &str = include_str!("../tests/data/wrk_non2xx.txt");
    const WRK_ERRORS: &str = include_str!("../tests/data/wrk_errors.txt");
    const AB_OK: &str = include_str!("../tests/data/ab_ok.txt");
    const AB_KEEPALIVE: &str = include_str!("../tests/data/ab_keepalive.txt");
    const AB_PERCENTILES: &str = include_str!("../tests/data/ab_percentiles.csv");
    const WRK_LATENCY: &str = include_str!("../tests/data/wrk_latency.txt");
    const PING_OK: &str = include_str!("../tests/data/ping_ok.txt");
    const TCPDUMP_VRRP: &str = include_str!("../tests/data/tcpdump_vrrp.txt");
    const H2LOAD: &str = include_str!("../tests/data/h2load.txt");
    const S_TIME_NEW: &str = include_str!("../tests/data/s_time_new.txt");

    #[test]
    fn h2load_timed_run() {
        let h = h2load(H2LOAD).unwrap();
        assert_eq!(
            (h.total, h.succeeded, h.failed, h.errored, h.timeout),
            (4022, 4000, 22, 22, 0)
        );
        assert_eq!((h.seconds, h.requests_per_sec), (1.0, 4000.0));
        assert!((h.bytes_per_sec - 6.20 * 1048576.0).abs() < 1.0);
        // Cut before its summary (killed at the time limit): no figures.
        let cut = &H2LOAD[..H2LOAD.find("finished in").unwrap()];
        assert_eq!(h2load(cut), None);
    }

    #[test]
    fn s_time_sums_every_client() {
        assert_eq!(s_time_connections(S_TIME_NEW), Some(1546));
        // Eight clients' outputs one after the other, as the TLS sweep collects them.
        assert_eq!(s_time_connections(&S_TIME_NEW.repeat(8)), Some(8 * 1546));
        assert_eq!(
            s_time_connections("connect: Connection refused\nconnect error\n"),
            None
        );
    }

    #[test]
    fn wrk_minutes() {
        // A 60 s run prints "1.00m".
        let text = WRK_OK.replace(" requests in 1.10s,", " requests in 1.00m,");
        let w = wrk(&text).unwrap();
        assert_eq!(w.seconds, 60.0);
        assert_eq!(wrk_duration("500.00ms"), Some(0.5));
        assert_eq!(wrk_duration("2x"), None);
    }

    #[test]
    fn vrrp_adverts_from_tcpdump() {
        let a = vrrp_adverts(TCPDUMP_VRRP, "198.18.0.3");
        assert_eq!(a.len(), 20);
        assert!(a.iter().all(|&(_, p)| p == 150));
        assert!(vrrp_adverts(TCPDUMP_VRRP, "198.18.0.4").is_empty());
        let times: Vec<f64> = a.iter().map(|x| x.0).collect();
        let gap = max_interval_ms(&times);
        assert!((gap - 10.052).abs() < 0.01, "{gap}");
        assert_eq!(max_interval_ms(&times[..1]), 0.0);
    }

    #[test]
    fn wrk_clean_run() {
        let w = wrk(WRK_OK).unwrap();
        assert_eq!(w.requests, 36349);
        assert_eq!(w.seconds, 1.10);
        assert_eq!(w.requests_per_sec, 33044.79);
        assert_eq!(w.failed(), 0);
    }

    #[test]
    fn wrk_non_2xx() {
        let w = wrk(WRK_NON2XX).unwrap();
        assert_eq!(w.non_2xx_3xx, 42586);
        assert_eq!(w.failed(), 42586);
    }

    #[test]
    fn wrk_socket_errors() {
        let w = wrk(WRK_ERRORS).unwrap();
        assert_eq!(
            (w.connect_errors, w.read_errors, w.write_errors, w.timeouts),
            (0, 16, 67726, 0)
        );
        assert_eq!(w.requests, 23805);
    }

    #[test]
    fn wrk_latency_distribution_and_transfer() {
        let w = wrk(WRK_LATENCY).unwrap();
        assert_eq!(w.requests, 15475);
        assert_eq!(
            w.latency_ms,
            vec![(50.0, 1.47), (75.0, 1.57), (90.0, 1.64), (99.0, 2.10)]
        );
        assert_eq!(w.percentile_ms(99.0), Some(2.10));
        assert_eq!(w.percentile_ms(95.0), None);
        assert!((w.bytes_per_sec - 25.55 * 1048576.0).abs() < 1.0);
        // Without --latency there is no table.
        assert!(wrk(WRK_OK).unwrap().latency_ms.is_empty());
        assert_eq!(wrk_latency_ms("635.91us"), Some(0.63591));
        assert_eq!(wrk_latency_ms("2.00s"), Some(2000.0));
        assert_eq!(wrk_bytes("830.00B"), Some(830.0));
        assert_eq!(wrk_bytes("1.5XB"), None);
    }

    #[test]
    fn ab_keepalive_run_and_percentiles() {
        let a = ab(AB_KEEPALIVE).unwrap();
        assert_eq!((a.complete, a.failed, a.non_2xx), (2000, 0, 0));
        assert_eq!(a.seconds, 0.093);
        assert_eq!(a.kib_per_sec, 36605.96);
        let p = ab_percentiles(AB_PERCENTILES).unwrap();
        assert_eq!((p[0], p[50], p[99], p[100]), (0.075, 0.457, 0.643, 0.936));
        assert!(p.windows(2).all(|w| w[1] >= w[0]));
        // A table cut short is rejected, not read as zeros.
        let short: String = AB_PERCENTILES
            .lines()
            .take(60)
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(ab_percentiles(&short), None);
    }

    #[test]
    fn wrk_garbage() {
        assert_eq!(
            wrk("unable to connect to 198.18.0.100:80 Connection refused"),
            None
        );
    }

    #[test]
    fn ab_run() {
        let a = ab(AB_OK).unwrap();
        assert_eq!((a.complete, a.failed, a.non_2xx), (200, 0, 0));
        assert!(a.requests_per_sec > 1000.0);
    }

    #[test]
    fn ping_timestamps() {
        let r = ping_replies(PING_OK);
        assert_eq!(r.len(), 20);
        assert!(r.windows(2).all(|w| w[1] > w[0]));
        // 5 ms apart: no gap over 20 ms on loopback.
        assert!(longest_gap_ms(&r, r[0], r[19]) < 20.0);
    }

    #[test]
    fn gaps_include_the_edges() {
        let t = [10.0, 10.005, 10.010, 10.250, 10.255];
        assert!((longest_gap_ms(&t, 10.0, 10.255) - 240.0).abs() < 1e-6);
        // Nothing after 10.010 until the window closes at 11.0.
        assert!((longest_gap_ms(&t[..3], 10.0, 11.0) - 990.0).abs() < 1e-6);
    }

    #[test]
    fn slowest_probe_counts_failed_ones() {
        let p = probes("start,end,status,error\n10.0,10.004,200,\n10.005,10.125,0,read: reset\n10.010,10.013,200,\n");
        assert!((slowest_probe_ms(&p) - 120.0).abs() < 1e-6);
        assert_eq!(slowest_probe_ms(&[]), 0.0);
    }

    #[test]
    fn slowest_since_leaves_out_probes_started_before() {
        // The 1 s probe started before the takeover at 10.5; the slowest after it took 30 ms.
        let p =
            probes("start,end,status,error\n10.0,11.0,200,\n10.6,10.63,200,\n10.7,10.71,200,\n");
        assert!((slowest_probe_since_ms(&p, 10.5) - 30.0).abs() < 1e-6);
        assert!((slowest_probe_since_ms(&p, 0.0) - 1000.0).abs() < 1e-6);
        assert_eq!(slowest_probe_since_ms(&p, 11.0), 0.0);
    }

    #[test]
    fn slow_connects_counts_attempts_over_the_bound() {
        // Old files (no connect column) count the whole probe.
        let p = probes("start,end,status,error,connect_ms\n10.0,11.01,200,,1003.5\n10.005,10.3,200,,0.4\n10.01,10.25,0,read: reset\n10.02,10.021,200,,0.2\n");
        let (worst, n) = slow_connects(&p, 200.0);
        assert!((worst - 1003.5).abs() < 1e-6, "{worst}");
        assert_eq!(n, 2, "the 1003.5 ms attempt and the old-style 240 ms probe");
        assert_eq!(slow_connects(&[], 200.0), (0.0, 0));
    }

    #[test]
    fn probe_csv_round_trip() {
        let p = Probe {
            start: 1.5,
            end: 1.6,
            status: 200,
            error: String::new(),
            connect_ms: Some(0.25),
        };
        let q = Probe {
            start: 2.0,
            end: 3.0,
            status: 0,
            error: "connect: refused, twice".into(),
            connect_ms: None,
        };
        let csv = format!("start,end,status,error\n{}\n{}\n", p.to_csv(), q.to_csv());
        let back = probes(&csv);
        assert_eq!(back[0], p);
        assert_eq!(back[1].error, "connect: refused; twice");
        assert!(back[0].ok() && !back[1].ok());
    }
}
