//! Socket options on a listening socket that the planned handover uses: a
//! filter that drops new SYNs (and lets everything else pass), and the count
//! of connections waiting in its accept queue (TCP_INFO).

use std::os::fd::RawFd;

/// Attaches (or detaches) a classic BPF program to a TCP listening socket that
/// drops segments with SYN set and ACK clear: new connection attempts are
/// silently ignored (the client retransmits), while the final ACKs of
/// handshakes in progress and everything else pass. For TCP the filter sees
/// the segment from the TCP header on; byte 13 holds the flags.
pub fn set_syn_filter(fd: RawFd, on: bool) -> std::io::Result<()> {
    const SYN: u32 = 0x02;
    const ACK: u32 = 0x10;
    let prog = [
        bpf(libc::BPF_LD | libc::BPF_B | libc::BPF_ABS, 0, 0, 13),
        bpf(libc::BPF_ALU | libc::BPF_AND | libc::BPF_K, 0, 0, SYN | ACK),
        bpf(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, 0, 1, SYN),
        bpf(libc::BPF_RET | libc::BPF_K, 0, 0, 0),
        bpf(libc::BPF_RET | libc::BPF_K, 0, 0, u32::MAX),
    ];
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    let zero: libc::c_int = 0;
    let (opt, val, len) = if on {
        (
            libc::SO_ATTACH_FILTER,
            (&fprog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>(),
        )
    } else {
        (
            libc::SO_DETACH_FILTER,
            (&zero as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>(),
        )
    };
    // SAFETY: `val` points at `fprog` (which points at `prog`) or `zero`, all alive for
    // the call; the kernel copies the program.
    let rc = unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, opt, val, len as libc::socklen_t) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn bpf(code: u32, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

/// Connections waiting in a listening socket's accept queue (TCP_INFO's
/// `tcpi_unacked` on a listener); 0 when it cannot be read.
pub fn accept_queue(fd: RawFd) -> u32 {
    if fd < 0 {
        return 0;
    }
    // SAFETY: tcp_info is plain data; the kernel writes at most `len` bytes into it.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` and `len` are valid for the call.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        info.tcpi_unacked
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    #[test]
    fn syn_filter_ignores_new_connections_and_lifts() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        // An established connection keeps working under the filter.
        let mut before = TcpStream::connect(addr).unwrap();
        let (mut served, _) = l.accept().unwrap();
        set_syn_filter(l.as_raw_fd(), true).unwrap();
        // A new SYN is dropped, not refused: the connect times out.
        let err = TcpStream::connect_timeout(&addr, Duration::from_millis(300)).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
        use std::io::{Read, Write};
        before.write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        served.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping");
        set_syn_filter(l.as_raw_fd(), false).unwrap();
        TcpStream::connect_timeout(&addr, Duration::from_millis(1000))
            .expect("connects once the filter is lifted");
    }

    #[test]
    fn accept_queue_counts_connections_not_yet_accepted() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        assert_eq!(accept_queue(l.as_raw_fd()), 0);
        let _c1 = TcpStream::connect(addr).unwrap();
        let _c2 = TcpStream::connect(addr).unwrap();
        assert_eq!(accept_queue(l.as_raw_fd()), 2);
        let _ = l.accept().unwrap();
        assert_eq!(accept_queue(l.as_raw_fd()), 1);
        assert_eq!(accept_queue(-1), 0);
    }
}
