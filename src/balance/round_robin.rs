//! Smooth weighted round-robin (nginx's algorithm), dynamic.
//!
//! Each pick adds every eligible backend's current weight to its running score
//! and takes the highest, then subtracts the total. Weights are read on every
//! pick, so slow start and health changes take effect at once, and heavy
//! backends are interleaved rather than served in bursts.

use std::sync::Mutex;

use super::{Candidate, RequestKey, Selection};

/// Smooth weighted round-robin over the weights of each call.
pub struct RoundRobin {
    current: Mutex<Vec<i64>>,
}

impl RoundRobin {
    pub fn new(n: usize) -> Self {
        RoundRobin {
            current: Mutex::new(vec![0; n]),
        }
    }

    /// The pick itself, shared with algorithms that fall back to round-robin.
    pub fn pick(&self, backends: &[Candidate], exclude: &[usize]) -> Option<usize> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.len() != backends.len() {
            current.resize(backends.len(), 0);
        }
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for (i, b) in backends.iter().enumerate() {
            if !b.eligible() || exclude.contains(&i) {
                continue;
            }
            let w = b.weight as i64;
            current[i] += w;
            total += w;
            if best.is_none_or(|j| current[i] > current[j]) {
                best = Some(i);
            }
        }
        let i = best?;
        current[i] -= total;
        Some(i)
    }
}

impl Selection for RoundRobin {
    fn select(
        &self,
        backends: &[Candidate],
        _key: &RequestKey<'_>,
        exclude: &[usize],
    ) -> Option<usize> {
        self.pick(backends, exclude)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{cands, key};
    use super::*;

    #[test]
    fn nginx_smooth_sequence_for_5_1_1() {
        let rr = RoundRobin::new(3);
        let b = cands(&[5, 1, 1]);
        let seq: Vec<usize> = (0..7)
            .map(|_| rr.select(&b, &key(), &[]).unwrap())
            .collect();
        assert_eq!(seq, vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn equal_weights_rotate() {
        let rr = RoundRobin::new(3);
        let b = cands(&[1, 1, 1]);
        let seq: Vec<usize> = (0..6)
            .map(|_| rr.select(&b, &key(), &[]).unwrap())
            .collect();
        assert_eq!(seq, vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn skips_down_zero_weight_and_excluded() {
        let rr = RoundRobin::new(4);
        let mut b = cands(&[1, 1, 0, 1]);
        b[1].up = false;
        for _ in 0..10 {
            let i = rr.select(&b, &key(), &[3]).unwrap();
            assert_eq!(i, 0);
        }
        assert_eq!(rr.select(&b, &key(), &[0, 3]), None);
        assert_eq!(rr.select(&[], &key(), &[]), None);
    }

    #[test]
    fn weight_change_takes_effect_and_length_change_is_safe() {
        let rr = RoundRobin::new(2);
        let mut counts = [0; 2];
        for _ in 0..100 {
            counts[rr.select(&cands(&[1, 3]), &key(), &[]).unwrap()] += 1;
        }
        assert_eq!(counts, [25, 75]);
        let mut counts = [0; 3];
        for _ in 0..90 {
            counts[rr.select(&cands(&[1, 1, 1]), &key(), &[]).unwrap()] += 1;
        }
        assert_eq!(counts, [30, 30, 30]);
    }
}
