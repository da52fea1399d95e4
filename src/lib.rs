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
pub mod live;
pub mod metrics;
pub mod proxy;
pub mod server;
pub mod upstream;
