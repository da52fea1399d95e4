//! First available: the first backend in config order with a free slot below
//! its `maxconn` (HAProxy's `first`), so spare servers can be powered down.
//!
//! When every eligible backend is at its limit the least loaded one is used:
//! requests are never refused just for exceeding `maxconn`.

use super::least_conn::less_loaded;
use super::{Candidate, RequestKey, Selection};

pub struct First;

impl Selection for First {
    fn select(
        &self,
        backends: &[Candidate],
        _key: &RequestKey<'_>,
        exclude: &[usize],
    ) -> Option<usize> {
        let mut least: Option<usize> = None;
        for (i, b) in backends.iter().enumerate() {
            if !b.eligible() || exclude.contains(&i) {
                continue;
            }
            if b.maxconn == 0 || b.in_flight < b.maxconn {
                return Some(i);
            }
            if least.is_none_or(|j| less_loaded(b, &backends[j])) {
                least = Some(i);
            }
        }
        least
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{cands, key};
    use super::*;

    #[test]
    fn fills_in_order() {
        let mut b = cands(&[1, 1, 1]);
        for c in b.iter_mut() {
            c.maxconn = 2;
        }
        assert_eq!(First.select(&b, &key(), &[]), Some(0));
        b[0].in_flight = 2;
        assert_eq!(First.select(&b, &key(), &[]), Some(1));
        b[1].up = false;
        assert_eq!(First.select(&b, &key(), &[]), Some(2));
        assert_eq!(
            First.select(&b, &key(), &[2]),
            Some(0),
            "all full: least loaded"
        );
        b[2].in_flight = 2;
        b[0].in_flight = 5;
        assert_eq!(First.select(&b, &key(), &[]), Some(2));
        assert_eq!(First.select(&[], &key(), &[]), None);
    }
}
