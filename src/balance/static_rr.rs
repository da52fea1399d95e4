//! Weighted round-robin over the configured weights, fixed at load time
//! (HAProxy's `static-rr`).
//!
//! The smooth schedule is computed once; a pick is one atomic increment, so it
//! is lock-free. Weights changed at run time (slow start) are ignored — use
//! `round-robin` for those.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::{BackendMeta, Candidate, RequestKey, Selection};

pub struct StaticRr {
    schedule: Vec<usize>,
    cursor: AtomicUsize,
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Longest schedule kept; weights are scaled down past it.
const MAX_SCHEDULE: u64 = 4096;

impl StaticRr {
    pub fn new(backends: &[BackendMeta]) -> Self {
        let g = backends
            .iter()
            .map(|b| b.weight)
            .filter(|w| *w > 0)
            .fold(0, gcd)
            .max(1);
        let mut weights: Vec<u64> = backends.iter().map(|b| (b.weight / g) as u64).collect();
        let sum: u64 = weights.iter().sum();
        if sum > MAX_SCHEDULE {
            for w in weights.iter_mut().filter(|w| **w > 0) {
                *w = (*w * MAX_SCHEDULE / sum).max(1);
            }
        }
        // Smooth weighted round-robin, run once over the whole cycle.
        let total: i64 = weights.iter().sum::<u64>() as i64;
        let mut current = vec![0i64; weights.len()];
        let mut schedule = Vec::with_capacity(total as usize);
        for _ in 0..total {
            let mut best = 0;
            for i in 0..weights.len() {
                current[i] += weights[i] as i64;
                if current[i] > current[best] {
                    best = i;
                }
            }
            current[best] -= total;
            schedule.push(best);
        }
        StaticRr {
            schedule,
            cursor: AtomicUsize::new(0),
        }
    }
}

impl Selection for StaticRr {
    fn select(
        &self,
        backends: &[Candidate],
        _key: &RequestKey<'_>,
        exclude: &[usize],
    ) -> Option<usize> {
        let n = self.schedule.len();
        if n == 0 {
            return None;
        }
        for _ in 0..n {
            let slot = self.cursor.fetch_add(1, Ordering::Relaxed) % n;
            let i = self.schedule[slot];
            if backends
                .get(i)
                .is_some_and(|b| b.up && !exclude.contains(&i))
            {
                return Some(i);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{cands, key, metas};
    use super::*;

    #[test]
    fn follows_configured_weights() {
        let s = StaticRr::new(&metas(&[2, 1]));
        let b = cands(&[2, 1]);
        let seq: Vec<usize> = (0..6).map(|_| s.select(&b, &key(), &[]).unwrap()).collect();
        assert_eq!(seq, vec![0, 1, 0, 0, 1, 0]);
    }

    #[test]
    fn ignores_runtime_weight_but_honours_health() {
        let s = StaticRr::new(&metas(&[1, 1]));
        let mut b = cands(&[1, 100]);
        let seq: Vec<usize> = (0..4).map(|_| s.select(&b, &key(), &[]).unwrap()).collect();
        assert_eq!(seq, vec![0, 1, 0, 1]);
        b[0].up = false;
        assert!((0..4).all(|_| s.select(&b, &key(), &[]) == Some(1)));
        assert_eq!(s.select(&b, &key(), &[1]), None);
    }

    #[test]
    fn huge_weights_are_bounded_and_zero_weight_never_scheduled() {
        let s = StaticRr::new(&metas(&[256, 255, 0]));
        assert!(s.schedule.len() <= 4096 + 3);
        assert!(!s.schedule.contains(&2));
        assert_eq!(StaticRr::new(&[]).select(&[], &key(), &[]), None);
    }
}
