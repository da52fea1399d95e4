//! `bench soak`: the memory figures of `vm-lab/lab drill soak` from its sampler CSV (one row per
//! LB host every 30 s): per host, the mean RSS over the first and the last 5 minutes of the load
//! and the least-squares slope over the whole load and over its second half, the figures that
//! tell a leak from a working set that levels off. Not here: the sampling (the lab's shell loop
//! reads /proc) or any judgement of the slope.

use std::fmt::Write as _;

use crate::stats;

/// One RSS reading of one host.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub elapsed_s: f64,
    pub host: String,
    pub rss_kib: f64,
}

/// Rows of the sampler's CSV (`elapsed_s,time,host,fds,rss_kib,...`); a row without a number
/// for RSS (`-`: no floatlb process on the host then) is left out.
pub fn samples(csv: &str) -> Vec<Sample> {
    csv.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            Some(Sample {
                elapsed_s: f.first()?.parse().ok()?,
                host: f.get(2)?.to_string(),
                rss_kib: f.get(4)?.parse().ok()?,
            })
        })
        .collect()
}

/// One host's memory over the soak.
#[derive(Debug, Clone, PartialEq)]
pub struct HostMemory {
    pub host: String,
    /// Mean RSS over the samples of the first 5 minutes; 0 without any.
    pub first5_kib: f64,
    /// Mean RSS over the samples of the load's last 5 minutes; 0 without any.
    pub last5_kib: f64,
    /// KiB per minute, over every sample of the load.
    pub slope_kib_per_min: f64,
    /// KiB per minute, over the samples of the load's second half.
    pub second_half_slope_kib_per_min: f64,
    pub samples: usize,
}

impl HostMemory {
    /// The line the soak drill prints per host.
    pub fn line(&self) -> String {
        format!(
            "{} rss_first5min_kib={:.0} rss_last5min_kib={:.0} slope_kib_per_min={:.1} slope_second_half_kib_per_min={:.1} samples={}",
            self.host,
            self.first5_kib,
            self.last5_kib,
            self.slope_kib_per_min,
            self.second_half_slope_kib_per_min,
            self.samples
        )
    }
}

/// Per host (sorted by name), the figures over the samples taken while the load ran
/// (`elapsed_s <= load_s`); the sampler goes on through the settling after it.
pub fn memory(samples: &[Sample], load_s: f64) -> Vec<HostMemory> {
    let mut hosts: Vec<&str> = samples.iter().map(|s| s.host.as_str()).collect();
    hosts.sort_unstable();
    hosts.dedup();
    let mean = |v: Vec<f64>| stats::summarize(&v).map_or(0.0, |s| s.mean);
    hosts
        .into_iter()
        .map(|h| {
            let load: Vec<&Sample> = samples
                .iter()
                .filter(|s| s.host == h && s.elapsed_s <= load_s)
                .collect();
            let points = |from: f64| -> Vec<(f64, f64)> {
                load.iter()
                    .filter(|s| s.elapsed_s >= from)
                    .map(|s| (s.elapsed_s / 60.0, s.rss_kib))
                    .collect()
            };
            let rss = |keep: &dyn Fn(f64) -> bool| -> Vec<f64> {
                load.iter()
                    .filter(|s| keep(s.elapsed_s))
                    .map(|s| s.rss_kib)
                    .collect()
            };
            HostMemory {
                host: h.to_string(),
                first5_kib: mean(rss(&|t| t <= 300.0)),
                last5_kib: mean(rss(&|t| t >= load_s - 300.0)),
                slope_kib_per_min: stats::slope(&points(f64::NEG_INFINITY)),
                second_half_slope_kib_per_min: stats::slope(&points(load_s / 2.0)),
                samples: load.len(),
            }
        })
        .filter(|m| m.samples > 0)
        .collect()
}

/// The soak's memory lines, one per host.
pub fn lines(csv: &str, load_s: f64) -> String {
    let mut s = String::new();
    for m in memory(&samples(csv), load_s) {
        let _ = writeln!(s, "{}", m.line());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 20-minute soak sampled every 30 s: lb1 grows 10 KiB a minute for the first half and
    /// then stays flat, lb2 stays flat throughout, and the sampler went on 45 s past the load.
    fn csv() -> String {
        let mut s = String::from("elapsed_s,time,host,fds,rss_kib,worker_fds,worker_rss_kib\n");
        for t in (0..=1245).step_by(30) {
            let grown = (t.min(600) as f64 / 60.0) * 10.0;
            let _ = writeln!(s, "{t},00:00:00,lb1,23,{},-,-", 20_000.0 + grown);
            let rss = if t == 60 {
                "-".to_string()
            } else {
                "30000".into()
            };
            let _ = writeln!(s, "{t},00:00:00,lb2,23,{rss},-,-");
        }
        // Past the load: a drop that must not move the figures.
        s += "1260,00:21:00,lb1,23,1000,-,-\n";
        s
    }

    #[test]
    fn first_and_last_five_minutes_and_slopes_per_host() {
        let m = memory(&samples(&csv()), 1200.0);
        assert_eq!(m.len(), 2);
        let (lb1, lb2) = (&m[0], &m[1]);
        assert_eq!((lb1.host.as_str(), lb2.host.as_str()), ("lb1", "lb2"));
        // 0..1200 s every 30 s: 41 samples; lb2 lost the one with no floatlb.
        assert_eq!((lb1.samples, lb2.samples), (41, 40));
        // First 5 min: 0..300 s, 11 samples growing 0..50 KiB: mean 25 above the start.
        assert!((lb1.first5_kib - 20_025.0).abs() < 1e-9, "{lb1:?}");
        // Last 5 min (900..1200 s): flat at 100 KiB above the start.
        assert!((lb1.last5_kib - 20_100.0).abs() < 1e-9, "{lb1:?}");
        // Second half (600 s on) is flat; the whole load slopes up, less than 10 a minute.
        assert!(lb1.second_half_slope_kib_per_min.abs() < 1e-9, "{lb1:?}");
        assert!(
            lb1.slope_kib_per_min > 3.0 && lb1.slope_kib_per_min < 10.0,
            "{lb1:?}"
        );
        assert_eq!((lb2.first5_kib, lb2.slope_kib_per_min), (30_000.0, 0.0));
        assert_eq!(
            lb2.line(),
            "lb2 rss_first5min_kib=30000 rss_last5min_kib=30000 slope_kib_per_min=0.0 slope_second_half_kib_per_min=0.0 samples=40"
        );
    }

    #[test]
    fn a_steady_leak_shows_as_its_rate() {
        let mut s = String::from("elapsed_s,time,host,fds,rss_kib\n");
        for t in (0..=600).step_by(30) {
            let _ = writeln!(s, "{t},x,lb1,20,{}", 1000 + t / 30 * 6);
        }
        // 6 KiB every 30 s: 12 KiB a minute, over the whole load and its second half.
        let out = lines(&s, 600.0);
        assert_eq!(
            out,
            "lb1 rss_first5min_kib=1030 rss_last5min_kib=1090 slope_kib_per_min=12.0 slope_second_half_kib_per_min=12.0 samples=21\n"
        );
        // No samples inside the load, or none at all: no line.
        assert_eq!(lines(&s, -1.0), "");
        assert_eq!(lines("elapsed_s,time,host,fds,rss_kib\n", 600.0), "");
    }
}
