//! What the proxy tells its operators, at the level the request path records
//! it: metric families and the request histogram, the JSON access log.

pub mod access_log;
pub mod json;
pub mod metrics;
