//! The daemon around the proxy: start-up and shutdown, reload, health checks,
//! the VRRP instances and planned handover, the admin listener.

pub mod admin;
pub mod anycast;
pub mod api;
pub mod ctl;
pub mod daemon;
pub mod exposition;
pub mod ha;
pub mod health;
pub mod reload;
pub mod systemd;
