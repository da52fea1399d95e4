//! Random with N draws: pick `draws` backends at random by weight and keep the
//! least loaded (HAProxy's `random(2)`; "power of two choices").
//!
//! Two draws already avoid the herd behaviour of pure least-connection across
//! several load balancers while staying close to its balance. The generator is
//! a per-thread xorshift: no lock, no allocation.

use std::cell::Cell;

use super::least_conn::less_loaded;
use super::{Candidate, RequestKey, Selection};

pub struct Random {
    draws: u32,
}

impl Random {
    pub fn new(draws: u32) -> Self {
        Random {
            draws: draws.max(1),
        }
    }
}

thread_local! {
    static STATE: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    let local = 0u8;
    // Mix in a stack address so threads started in the same tick differ.
    super::hash::hash64(&(t ^ (&local as *const u8 as u64)).to_le_bytes()) | 1
}

/// xorshift64*.
fn next() -> u64 {
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    })
}

fn weighted_draw(backends: &[Candidate], exclude: &[usize], total: u64) -> Option<usize> {
    let mut r = next() % total;
    for (i, b) in backends.iter().enumerate() {
        if !b.eligible() || exclude.contains(&i) {
            continue;
        }
        if r < b.weight as u64 {
            return Some(i);
        }
        r -= b.weight as u64;
    }
    None
}

impl Selection for Random {
    fn select(
        &self,
        backends: &[Candidate],
        _key: &RequestKey<'_>,
        exclude: &[usize],
    ) -> Option<usize> {
        let total: u64 = backends
            .iter()
            .enumerate()
            .filter(|(i, b)| b.eligible() && !exclude.contains(i))
            .map(|(_, b)| b.weight as u64)
            .sum();
        if total == 0 {
            return None;
        }
        let mut best = weighted_draw(backends, exclude, total)?;
        for _ in 1..self.draws {
            if let Some(i) = weighted_draw(backends, exclude, total) {
                if less_loaded(&backends[i], &backends[best]) {
                    best = i;
                }
            }
        }
        Some(best)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{cands, key};
    use super::*;

    #[test]
    fn one_draw_follows_weights() {
        let r = Random::new(1);
        let b = cands(&[1, 2, 3]);
        let mut counts = [0u32; 3];
        for _ in 0..30_000 {
            counts[r.select(&b, &key(), &[]).unwrap()] += 1;
        }
        // Expected 5000 / 10000 / 15000.
        for (c, want) in counts.iter().zip([5000, 10000, 15000]) {
            assert!((*c as i64 - want).abs() < want / 10, "{counts:?}");
        }
    }

    #[test]
    fn two_draws_avoid_the_loaded_backend() {
        let r = Random::new(2);
        let mut b = cands(&[1, 1, 1]);
        b[0].in_flight = 100;
        let mut picked_loaded = 0;
        for _ in 0..3000 {
            if r.select(&b, &key(), &[]) == Some(0) {
                picked_loaded += 1;
            }
        }
        // Only when both draws hit backend 0: about 1/9 of the time.
        assert!(picked_loaded < 3000 / 9 + 150, "{picked_loaded}");
        assert!(picked_loaded > 3000 / 9 - 150, "{picked_loaded}");
    }

    #[test]
    fn nothing_eligible() {
        let r = Random::new(2);
        let mut b = cands(&[1, 0]);
        b[0].up = false;
        assert_eq!(r.select(&b, &key(), &[]), None);
        assert_eq!(r.select(&cands(&[1, 1]), &key(), &[0, 1]), None);
        assert_eq!(r.select(&[], &key(), &[]), None);
    }
}
