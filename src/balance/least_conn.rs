//! Least connections: the backend with the fewest in-flight requests relative
//! to its weight (HAProxy's `leastconn`).
//!
//! Loads are compared exactly by cross-multiplication. Ties rotate — the scan
//! starts at a moving offset — so idle backends share new work instead of the
//! first one taking it all.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Candidate, RequestKey, Selection};

pub struct LeastConn {
    offset: AtomicUsize,
}

impl LeastConn {
    pub fn new() -> Self {
        LeastConn {
            offset: AtomicUsize::new(0),
        }
    }
}

impl Default for LeastConn {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether `a` is less loaded than `b` (in-flight / weight).
pub(super) fn less_loaded(a: &Candidate, b: &Candidate) -> bool {
    (a.in_flight as u64) * (b.weight as u64) < (b.in_flight as u64) * (a.weight as u64)
}

impl Selection for LeastConn {
    fn select(
        &self,
        backends: &[Candidate],
        _key: &RequestKey<'_>,
        exclude: &[usize],
    ) -> Option<usize> {
        let n = backends.len();
        if n == 0 {
            return None;
        }
        let start = self.offset.fetch_add(1, Ordering::Relaxed) % n;
        let mut best: Option<usize> = None;
        for k in 0..n {
            let i = (start + k) % n;
            let b = &backends[i];
            if !b.eligible() || exclude.contains(&i) {
                continue;
            }
            if best.is_none_or(|j| less_loaded(b, &backends[j])) {
                best = Some(i);
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{cands, key};
    use super::*;

    #[test]
    fn ties_rotate() {
        let lc = LeastConn::new();
        let b = cands(&[1, 1, 1]);
        let mut counts = [0; 3];
        for _ in 0..30 {
            counts[lc.select(&b, &key(), &[]).unwrap()] += 1;
        }
        assert_eq!(counts, [10, 10, 10]);
    }

    #[test]
    fn avoids_the_stuck_backend() {
        let lc = LeastConn::new();
        let mut b = cands(&[1, 1]);
        b[0].in_flight = 50;
        b[1].in_flight = 3;
        assert!((0..20).all(|_| lc.select(&b, &key(), &[]) == Some(1)));
        assert_eq!(lc.select(&b, &key(), &[1]), Some(0));
    }

    #[test]
    fn weight_scales_capacity() {
        let lc = LeastConn::new();
        let mut b = cands(&[2, 1]);
        b[0].in_flight = 3;
        b[1].in_flight = 2;
        // 3/2 < 2/1: the heavier backend still has room.
        assert!((0..5).all(|_| lc.select(&b, &key(), &[]) == Some(0)));
        b[0].in_flight = 5;
        assert!((0..5).all(|_| lc.select(&b, &key(), &[]) == Some(1)));
    }

    #[test]
    fn nothing_eligible() {
        let lc = LeastConn::new();
        let mut b = cands(&[0, 1]);
        b[1].up = false;
        assert_eq!(lc.select(&b, &key(), &[]), None);
        assert_eq!(lc.select(&[], &key(), &[]), None);
    }
}
