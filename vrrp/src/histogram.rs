//! A fixed-bucket histogram of durations on atomics, for what the VRRP thread
//! measures and another thread exports (the advert gaps a backup sees).
//! Not for: exposition formats; the embedding program turns a
//! [`Snapshot`] into whatever its metrics library wants.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds in seconds of the advert-gap buckets: around 0.5×..3× of the
/// advert intervals people use (10 ms, 100 ms, 1 s), up to the 40.95 s maximum
/// interval, so the bucket a gap lands in shows how near Master_Down_Interval
/// (about 3× the interval) it came.
pub const ADVERT_GAP_BOUNDS: [f64; 22] = [
    0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5, 0.75, 1.0,
    1.5, 2.0, 3.0, 5.0, 10.0, 40.0,
];

/// Counts per bucket (not cumulative), the sum and the count; lock-free.
#[derive(Debug, Default)]
pub struct Histogram {
    /// One per bound, plus one for values above the last bound.
    counts: [AtomicU64; ADVERT_GAP_BOUNDS.len() + 1],
    sum_micros: AtomicU64,
}

/// A consistent-enough copy for one scrape: cumulative counts per bound.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// (upper bound in seconds, observations ≤ bound), in bound order.
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum_seconds: f64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = ADVERT_GAP_BOUNDS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(ADVERT_GAP_BOUNDS.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(us, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut acc = 0;
        let mut buckets = Vec::with_capacity(ADVERT_GAP_BOUNDS.len());
        for (b, c) in ADVERT_GAP_BOUNDS.iter().zip(&self.counts) {
            acc += c.load(Ordering::Relaxed);
            buckets.push((*b, acc));
        }
        let count = acc + self.counts[ADVERT_GAP_BOUNDS.len()].load(Ordering::Relaxed);
        Snapshot {
            buckets,
            count,
            sum_seconds: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let h = Histogram::default();
        h.observe(Duration::from_millis(10)); // on a bound: that bucket (le is ≤)
        h.observe(Duration::from_millis(11));
        h.observe(Duration::from_millis(290)); // a 100 ms master, nearly 3 intervals late
        h.observe(Duration::from_secs(60)); // above every bound: only in +Inf
        let s = h.snapshot();
        assert_eq!(s.count, 4);
        let le = |b: f64| s.buckets.iter().find(|(x, _)| *x == b).unwrap().1;
        assert_eq!(le(0.005), 0);
        assert_eq!(le(0.01), 1);
        assert_eq!(le(0.015), 2);
        assert_eq!(le(0.25), 2);
        assert_eq!(le(0.3), 3);
        assert_eq!(le(40.0), 3);
        assert!((s.sum_seconds - 60.311).abs() < 1e-9);
        // Cumulative: never decreasing.
        assert!(s.buckets.windows(2).all(|w| w[0].1 <= w[1].1));
    }
}
