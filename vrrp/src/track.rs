//! Tracking: the local service's health as the VRRP instance sees it.
//!
//! The proxy sets one flag ("I can serve": listener accepting and at least one
//! backend up); the instance reads it on every loop turn, which is an atomic
//! load, and feeds changes to the state machine. A second flag forces FAULT
//! whatever the track-weight says: a supervisor whose proxy keeps crashing
//! uses it to give the VIP away and stay out of the election.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A shared health flag; clones see the same value.
#[derive(Debug, Clone)]
pub struct TrackHandle(Arc<Flags>);

#[derive(Debug)]
struct Flags {
    healthy: AtomicBool,
    fault: AtomicBool,
}

impl TrackHandle {
    pub fn new(healthy: bool) -> Self {
        TrackHandle(Arc::new(Flags {
            healthy: AtomicBool::new(healthy),
            fault: AtomicBool::new(false),
        }))
    }

    pub fn set(&self, healthy: bool) {
        if self.0.healthy.load(Ordering::Relaxed) != healthy {
            self.0.healthy.store(healthy, Ordering::Release);
        }
    }

    pub fn healthy(&self) -> bool {
        self.0.healthy.load(Ordering::Acquire)
    }

    /// Forces FAULT (priority-0 advert and VIPs removed if master) until cleared.
    pub fn set_fault(&self, on: bool) {
        self.0.fault.store(on, Ordering::Release);
    }

    pub fn fault(&self) -> bool {
        self.0.fault.load(Ordering::Acquire)
    }
}

impl Default for TrackHandle {
    fn default() -> Self {
        Self::new(true)
    }
}
