//! ACME (RFC 8555) as a protocol: the client's HTTPS requests ([`http`]), JWS
//! signing ([`jws`]), orders, authorizations and challenges ([`order`]), and
//! the CSR and the TLS-ALPN-01 certificate ([`x509`]), and renewal
//! information (RFC 9773, [`ari`]). Sans-IO apart from the blocking HTTPS
//! client.
//!
//! Not for: deciding when to order, the pair, the state directory (the
//! runtime's `acme` service) or serving certificates (`crate::tls::managed`).

pub mod ari;
pub mod http;
pub mod jws;
pub mod order;
pub mod x509;
