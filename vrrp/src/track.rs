//! Tracking: the local service's health as the VRRP instance sees it.
//!
//! The proxy sets one flag ("I can serve": listener accepting and at least one
//! backend up); the instance reads it on every loop turn, which is an atomic
//! load, and feeds changes to the state machine.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A shared health flag; clones see the same value.
#[derive(Debug, Clone)]
pub struct TrackHandle(Arc<AtomicBool>);

impl TrackHandle {
    pub fn new(healthy: bool) -> Self {
        TrackHandle(Arc::new(AtomicBool::new(healthy)))
    }

    pub fn set(&self, healthy: bool) {
        if self.0.load(Ordering::Relaxed) != healthy {
            self.0.store(healthy, Ordering::Release);
        }
    }

    pub fn healthy(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

impl Default for TrackHandle {
    fn default() -> Self {
        Self::new(true)
    }
}
