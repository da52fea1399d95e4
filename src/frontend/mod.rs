//! The client side: accepting connections and speaking HTTP/1 on them, or,
//! on the TLS listener, HTTP/1 or HTTP/2 after the handshake.

pub mod accept;
pub mod h1;
pub mod h2;
mod h2_guard;
pub mod handshake;
mod streams;
pub mod tunnel;
