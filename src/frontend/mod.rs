//! The client side: accepting connections and speaking HTTP/1 on them.

pub mod accept;
pub mod h1;
pub mod tunnel;
