//! floatlb: a high-availability HTTP/1.x load balancer with a built-in VRRPv3 peer.
//!
//! The binary (`src/main.rs`) is a thin CLI over [`daemon`]; the modules are
//! public so integration tests and the bench can reach them.

pub mod access_log;
pub mod admin;
pub mod backend;
pub mod balance;
pub mod config;
pub mod daemon;
pub mod h1;
pub mod ha;
pub mod handover;
pub mod health;
pub mod http1;
pub mod live;
pub mod metrics;
pub mod proxy;
pub mod server;
pub mod tunnel;
pub mod upstream;

/// Helpers the unit tests of several modules share.
#[cfg(test)]
pub(crate) mod test_util {
    /// A xorshift64 generator from `seed`: `rand(n)` is in `0..n`. Reproducible
    /// pseudo-random input for property tests without another dependency.
    pub(crate) fn xorshift(mut seed: u64) -> impl FnMut(u64) -> u64 {
        move |n| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        }
    }
}
