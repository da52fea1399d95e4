//! The client side: accepting connections (a PROXY protocol header first on
//! `accept-proxy` listeners) and speaking HTTP/1 on them, or, on the TLS
//! listener, HTTP/1 or HTTP/2 after the handshake; or, on a `mode = "tcp"`
//! listener, relaying bytes to a backend (`tcp`).

pub mod accept;
mod client_cert;
mod drain;
mod grpc;
pub mod h1;
pub mod h2;
mod h2_guard;
pub mod handshake;
pub(crate) mod park;
mod splice;
mod streams;
pub mod tcp;
pub mod tunnel;
