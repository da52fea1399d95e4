//! floatlb: a high-availability HTTP/1.x load balancer with a built-in VRRPv3 peer.
//!
//! The modules form layers, lowest first; an import points down, never up
//! (`tests/layers.rs` checks it, `docs/architecture.md` draws it):
//!
//! 1. [`http1`], [`balance`], [`tls`], [`error`], [`peers`], [`import`]: sans-IO cores (HTTP/1 rules;
//!    scheduling algorithms; certificates, SNI and ticket keys for the TLS
//!    listener; the typed error of a request that failed; the pair's shared
//!    per-client counts on the wire; `floatlb import`'s HAProxy and keepalived readers).
//! 2. [`route`], [`access`], [`net`]: route matching (which `[[route]]` a
//!    request takes); who may use a listener or route (address lists, basic
//!    auth); sockets (listener, client I/O).
//! 3. [`config`]: the configuration, its pools and its route table.
//! 4. [`observe`]: metric families, the request histogram, the access log.
//! 5. [`backend`]: backend state, connection pools, HTTP/1 to a backend.
//! 6. [`proxy`]: shared state, pools, the request path with its retries and
//!    route actions, handover state.
//! 7. [`frontend`]: client connections: the accept loop, HTTP/1, tunnels, TLS
//!    handshakes and HTTP/2.
//! 8. [`runtime`]: the daemon: reload, health checks, VRRP, admin listener.
//!
//! The binary (`src/main.rs`) is a thin CLI over [`runtime::supervisor`] and
//! [`runtime::worker`], with `floatlb ctl` beside it (`src/ctl.rs`).

/// jemalloc rather than glibc's malloc: fewer bytes per idle connection and
/// fewer instructions per request (docs/performance.md, "Idle memory").
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read at its first allocation (`_RJEM_MALLOC_CONF` in the
/// environment still overrides them): a background thread gives freed pages
/// back to the kernel 1 s after they are freed, rather than at whichever later
/// allocation happens to purge (an idle process makes none), and gives them
/// back at once (`MADV_DONTNEED`) rather than as "muzzy" `MADV_FREE` pages,
/// which still count in the resident size. What this is for: the tasks of
/// connections that went idle and were parked (`frontend::park`) stop
/// counting. docs/performance.md, "Idle memory".
#[cfg(feature = "jemalloc")]
#[export_name = "_rjem_malloc_conf"]
pub static JEMALLOC_CONF: JemallocConf =
    JemallocConf(c"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0".as_ptr());

/// A C string pointer jemalloc reads as its `malloc_conf`.
#[cfg(feature = "jemalloc")]
#[repr(transparent)]
pub struct JemallocConf(*const std::ffi::c_char);

// SAFETY: it points to a static, immutable byte string.
#[cfg(feature = "jemalloc")]
unsafe impl Sync for JemallocConf {}

pub mod access;
pub mod acme;
pub mod backend;
pub mod balance;
pub mod config;
pub mod error;
pub mod frontend;
pub mod http1;
pub mod import;
pub mod net;
pub mod observe;
pub mod peers;
pub mod proxy;
pub mod route;
pub mod runtime;
pub mod tls;

/// Helpers the unit tests of several modules share.
#[cfg(test)]
pub(crate) mod test_util {
    /// A xorshift64 generator from `seed`: `rand(n)` is in `0..n`. Reproducible
    /// pseudo-random input for property tests without another dependency.
    pub(crate) fn xorshift(mut seed: u64) -> impl FnMut(u64) -> u64 {
        move |n| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        }
    }
}
