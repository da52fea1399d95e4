//! The daemon around the proxy, one room per process:
//! - [`supervisor`]: the supervisor process: listening sockets, the `[[vrrp]]`
//!   instances, the worker's lifecycle and upgrades, the control socket;
//! - [`worker`]: the worker process: start-up and shutdown, reload, health
//!   checks, anycast, systemd notifications;
//! - [`admin`]: the admin listener the worker serves: runtime API, `/metrics`,
//!   the status page;
//! - [`process`]: the calls both make on processes.
//!
//! `floatlb ctl`, the client of the runtime API, sits beside `main.rs`.

pub mod acme;
pub mod admin;
pub mod process;
pub mod supervisor;
pub mod worker;
