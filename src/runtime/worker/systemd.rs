//! systemd's readiness protocol for `Type=notify` units (sd_notify(3)):
//! one datagram to `$NOTIFY_SOCKET` per state change. Written here rather
//! than pulled in as a crate: it is a single `sendto`. Without
//! `$NOTIFY_SOCKET` (not started by systemd) every call does nothing.

use std::os::unix::net::UnixDatagram;

/// Sends `state` ("READY=1", ...) to the service manager, if there is one.
/// Failures are logged, never fatal: the proxy serves either way.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send(&path, state) {
        tracing::warn!(error = %e, socket = ?path, "cannot notify the service manager");
    }
}

fn send(path: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt as _;
    let sock = UnixDatagram::unbound()?;
    let bytes = path.as_bytes();
    // A leading '@' names a socket in the abstract namespace.
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt as _;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        sock.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        sock.send_to(state.as_bytes(), path)?;
    }
    Ok(())
}

/// Listening: systemd considers the unit started.
pub fn ready() {
    notify("READY=1");
}

/// A reload begins; `ready` ends it. systemd 253 and later want the
/// CLOCK_MONOTONIC time of the start with it, to match it to `ExecReload`.
pub fn reloading() {
    notify(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()));
}

/// Draining before exit.
pub fn stopping() {
    notify("STOPPING=1");
}

fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}
