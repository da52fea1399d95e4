//! The daemon around the proxy: the supervisor process (listening sockets,
//! VRRP instances, the worker's lifecycle and upgrades) and the worker's
//! start-up and shutdown, reload, health checks, handover, admin listener.

pub mod admin;
pub mod anycast;
pub mod api;
pub mod control;
pub mod ctl;
pub mod daemon;
pub mod exposition;
pub mod ha;
pub mod health;
pub mod hooks;
pub mod process;
pub mod reload;
pub mod supervisor;
pub mod systemd;
