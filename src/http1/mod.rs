//! HTTP/1 rules in one place, sans-IO (bytes in, decisions and bytes out; no
//! sockets, no runtime), for the client side and the backend side alike.

pub mod answers;
pub mod body;
pub mod edit;
pub mod fields;
pub mod request;
pub mod response;
